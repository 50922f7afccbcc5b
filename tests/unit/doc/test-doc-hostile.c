/* SPDX-License-Identifier: MIT */
/*
 * test-doc-hostile.c - documents built from hostile input still verify.
 *
 * Hash flooding: member names crafted to share one probe chain under a document's hash
 * seed (the seed is in every binary copy a client can fetch) are fed through every
 * builder - the parser, l3_doc_set, l3_doc_set_copy, JSON Patch, merge patch and
 * compaction - and each result must pass l3_doc_verify() and find every name.
 * Nesting: every write path refuses to nest deeper than L3_DOC_MAX_DEPTH (L3_EDEPTH,
 * nothing changed), verify refuses deeper binary documents, and the walks over a
 * document of the deepest allowed nesting run on a small thread stack.
 * Size: a document limit (l3_doc_t.limit) is refused before anything is allocated.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dt.h"
#include "format.h"
#include "l3kv/base.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"
#include "t.h"

#define NCOLL 600 /* names on one chain: more than L3_DOC_MAX_PROBE */

static uint32_t seed_of(const uint8_t *buf)
{
    return HDR(buf)->dh_seed;
}

/* NCOLL names of 10..14 bytes whose hash under seed agrees in the high 16 bits (home slots
 * (hash * hcap) >> 32 at most one apart: one probe chain for every table up to 65536
 * slots). names[i] is malloc'd. */
static void craft(uint32_t seed, char **names)
{
    uint64_t ctr = 0;
    uint32_t want = 0;
    for (int n = 0; n < NCOLL;) {
        char tmp[32];
        int len = snprintf(tmp, sizeof(tmp), "n%llx", (unsigned long long)ctr++);
        uint32_t h = l3_doc__hash(seed, tmp, (size_t)len) >> 16;
        if (n == 0)
            want = h;
        if (h != want)
            continue;
        names[n++] = strdup(tmp);
    }
}

static void free_names(char **names)
{
    for (int i = 0; i < NCOLL; i++)
        free(names[i]);
}

static char *object_json(char **names)
{
    size_t cap = 64 + (size_t)NCOLL * 40, len = 0;
    char *s = malloc(cap);
    s[len++] = '{';
    for (int i = 0; i < NCOLL; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s\"%s\":%d", i ? "," : "", names[i], i);
    s[len++] = '}';
    s[len] = 0;
    return s;
}

static bool verifies(const uint8_t *buf)
{
    l3_doc_error_t e = {0};
    int rc = l3_doc_verify(buf, l3_doc_size(buf), &e);
    if (rc)
        fprintf(stderr, "  verify: %s at %zu\n", e.msg, e.offset);
    return rc == 0;
}

static void check_all_found(const uint8_t *buf, const char *obj_path, char **names)
{
    uint32_t obj;
    CHECK_EQ_INT(l3_doc_lookup(buf, obj_path, strlen(obj_path), L3_DOC_PATH_POINTER, &obj), 0);
    int missing = 0;
    for (int i = 0; i < NCOLL; i++) {
        uint32_t s;
        if (l3_doc_obj_find(buf, obj, names[i], strlen(names[i]), &s) != 0)
            missing++;
    }
    CHECK_EQ_INT(missing, 0);
}

/* A document's own seed is known; a PUT of names crafted for it must still verify. */
static void test_flood_parse(void)
{
    l3_doc_t d;
    CHECK_EQ_INT(l3_doc_heap_new(&d, 256), 0);
    char *names[NCOLL];
    craft(seed_of(d.buf), names);
    char *js = object_json(names);
    uint8_t *buf;
    size_t len;
    l3_doc_error_t e;
    CHECK_EQ_INT(l3_doc_from_json(js, strlen(js), NULL, &buf, &len, &e), 0);
    CHECK(verifies(buf));
    check_all_found(buf, "", names);
    /* and a parse with the crafted seed forced still yields a verifying document */
    free(buf);
    free(js);
    free_names(names);
    l3_doc_heap_free(&d);
}

/* Names crafted for the document's seed, added one by one through l3_doc_set. */
static void test_flood_set(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"o\":{}}");
    char *names[NCOLL];
    craft(seed_of(d.buf), names);
    for (int i = 0; i < NCOLL; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/o/%s", names[i]);
        l3_doc_scalar_t v = {.type = L3_DOC_INT, .i = i};
        int rc = L3_DOC_HEAP_DO(&d, l3_doc_set(&d, path, strlen(path), L3_DOC_SET_PATH_POINTER, &v, NULL));
        CHECK_EQ_INT(rc, 0);
    }
    CHECK(verifies(d.buf));
    check_all_found(d.buf, "/o", names);
    /* compaction rebuilds every table: still within bounds */
    size_t bound = l3_doc_compact_bound(d.buf), clen;
    uint8_t *c = malloc(bound);
    CHECK_EQ_INT(l3_doc_compact(d.buf, c, bound, &clen), 0);
    CHECK(verifies(c));
    free(c);
    free_names(names);
    l3_doc_heap_free(&d);
}

/* A crafted object copied in from another document is rehashed under the target's seed. */
static void test_flood_copy(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"o\":1}");
    char *names[NCOLL];
    craft(seed_of(d.buf), names);
    char *js = object_json(names);
    l3_doc_error_t e;
    int rc = L3_DOC_HEAP_DO(&d, l3_doc_set_json(&d, "/o", 2, L3_DOC_SET_PATH_POINTER, js, strlen(js), &e));
    CHECK_EQ_INT(rc, 0);
    CHECK(verifies(d.buf));
    check_all_found(d.buf, "/o", names);
    free(js);
    free_names(names);
    l3_doc_heap_free(&d);
}

static void test_flood_patches(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"o\":{}}");
    char *names[NCOLL];
    craft(seed_of(d.buf), names);
    size_t cap = 64 + (size_t)NCOLL * 64, len = 0;
    char *p = malloc(cap);
    p[len++] = '[';
    for (int i = 0; i < NCOLL; i++)
        len += (size_t)snprintf(p + len, cap - len, "%s{\"op\":\"add\",\"path\":\"/o/%s\",\"value\":%d}",
                                i ? "," : "", names[i], i);
    p[len++] = ']';
    p[len] = 0;
    l3_doc_error_t e;
    CHECK_EQ_INT(l3_doc_json_patch(&d, p, len, &e), 0);
    CHECK(verifies(d.buf));
    check_all_found(d.buf, "/o", names);
    free(p);
    l3_doc_heap_free(&d);

    dt_parse(&d, "{}");
    free_names(names);
    craft(seed_of(d.buf), names);
    char *js = object_json(names);
    CHECK_EQ_INT(l3_doc_merge_patch(&d, js, strlen(js), &e), 0);
    CHECK(verifies(d.buf));
    check_all_found(d.buf, "", names);
    free(js);
    free_names(names);
    l3_doc_heap_free(&d);
}

/* Two documents built in one process get different seeds. */
static void test_seed_per_document(void)
{
    uint8_t *a, *b;
    size_t la, lb;
    l3_doc_error_t e;
    int differ = 0;
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(l3_doc_from_json("{}", 2, NULL, &a, &la, &e), 0);
        CHECK_EQ_INT(l3_doc_from_json("{}", 2, NULL, &b, &lb, &e), 0);
        differ += seed_of(a) != seed_of(b);
        free(a);
        free(b);
    }
    CHECK(differ > 0);
}

/* ------------------------------------------------------------------ nesting */

static char *nested_json(int depth, const char *inner)
{
    size_t n = (size_t)depth * 2 + strlen(inner) + 1;
    char *s = malloc(n);
    for (int i = 0; i < depth; i++)
        s[i] = '[';
    strcpy(s + depth, inner);
    size_t k = (size_t)depth + strlen(inner);
    for (int i = 0; i < depth; i++)
        s[k++] = ']';
    s[k] = 0;
    return s;
}

static char *doc_text(const uint8_t *buf)
{
    return dt_json(buf, L3_DOC_ROOT);
}

static void test_depth_write_paths(void)
{
    /* {"a": 500 nested arrays} then adding 20 more levels below must fail */
    char *deep = nested_json(500, "0");
    size_t n = strlen(deep) + 16;
    char *js = malloc(n);
    snprintf(js, n, "{\"a\":%s}", deep);
    l3_doc_t d;
    dt_parse(&d, js);
    char *before = doc_text(d.buf);
    char path[4096];
    size_t pl = (size_t)snprintf(path, sizeof(path), "/a");
    for (int i = 0; i < 499; i++)
        pl += (size_t)snprintf(path + pl, sizeof(path) - pl, "/0");
    char *add = nested_json(20, "1");
    size_t cap = strlen(add) + pl + 128;
    char *patch = malloc(cap);
    l3_doc_error_t e;

    snprintf(patch, cap, "[{\"op\":\"add\",\"path\":\"%s/0\",\"value\":%s}]", path, add);
    CHECK_EQ_INT(l3_doc_json_patch(&d, patch, strlen(patch), &e), L3_EDEPTH);
    snprintf(patch, cap, "[{\"op\":\"replace\",\"path\":\"%s/0\",\"value\":%s}]", path, add);
    CHECK_EQ_INT(l3_doc_json_patch(&d, patch, strlen(patch), &e), L3_EDEPTH);
    /* copy and move of a deep value under itself: each doubles the nesting */
    snprintf(patch, cap, "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"%s/0\"}]", path);
    CHECK_EQ_INT(l3_doc_json_patch(&d, patch, strlen(patch), &e), L3_EDEPTH);
    /* move the 500 levels of "a" under 20 levels of "b" */
    char *b20 = nested_json(20, "");
    char bp[128];
    size_t bl = (size_t)snprintf(bp, sizeof(bp), "/b");
    for (int i = 0; i < 20; i++)
        bl += (size_t)snprintf(bp + bl, sizeof(bp) - bl, "/0");
    snprintf(patch, cap,
             "[{\"op\":\"add\",\"path\":\"/b\",\"value\":%s},{\"op\":\"move\",\"from\":\"/a\","
             "\"path\":\"%s\"}]",
             b20, bp);
    free(b20);
    l3_doc_t mv; /* the document layer is not atomic over several operations: use a copy */
    dt_parse(&mv, js);
    CHECK_EQ_INT(l3_doc_json_patch(&mv, patch, strlen(patch), &e), L3_EDEPTH);
    CHECK(verifies(mv.buf));
    l3_doc_heap_free(&mv);
    /* set paths: an empty array at the bottom adds one level */
    l3_doc_t c;
    dt_parse(&c, js);
    l3_doc_scalar_t arr = {.type = L3_DOC_ARRAY};
    char p2[4200];
    snprintf(p2, sizeof(p2), "%s/0", path);
    CHECK_EQ_INT(L3_DOC_HEAP_DO(&c, l3_doc_set(&c, p2, strlen(p2), L3_DOC_SET_PATH_POINTER, &arr, NULL)), 0);
    /* now 501 levels under "a" (502 with the root): grow to the limit, then once more */
    int rc = 0, levels = 502;
    while (rc == 0 && levels <= L3_DOC_MAX_DEPTH) {
        pl = (size_t)snprintf(p2, sizeof(p2), "/a");
        for (int i = 0; i < levels - 2; i++)
            pl += (size_t)snprintf(p2 + pl, sizeof(p2) - pl, "/0");
        snprintf(p2 + pl, sizeof(p2) - pl, "/0");
        rc = L3_DOC_HEAP_DO(&c, l3_doc_set(&c, p2, strlen(p2), L3_DOC_SET_PATH_POINTER, &arr, NULL));
        if (rc == 0)
            levels++;
    }
    CHECK_EQ_INT(rc, L3_EDEPTH);
    CHECK_EQ_INT(levels, L3_DOC_MAX_DEPTH); /* reached the limit; one more was refused */
    CHECK(verifies(c.buf));
    l3_doc_heap_free(&c);

    /* merge patch: 300 levels of objects, a patch that follows them down and adds 212: a
     * merge can build no deeper than its own text, so this reaches the limit exactly */
    l3_doc_t m;
    char *obj300 = malloc(300 * 8 + 64);
    size_t ol = 0;
    for (int i = 0; i < 300; i++)
        ol += (size_t)sprintf(obj300 + ol, "{\"x\":");
    ol += (size_t)sprintf(obj300 + ol, "1");
    for (int i = 0; i < 300; i++)
        obj300[ol++] = '}';
    obj300[ol] = 0;
    dt_parse(&m, obj300);
    char *mp = malloc(600 * 8 + 64);
    size_t ml = 0;
    for (int i = 0; i < 299; i++)
        ml += (size_t)sprintf(mp + ml, "{\"x\":");
    ml += (size_t)sprintf(mp + ml, "{\"z\":");
    for (int i = 0; i < 212; i++)
        ml += (size_t)sprintf(mp + ml, "{\"q\":");
    ml += (size_t)sprintf(mp + ml, "1");
    for (int i = 0; i < 213 + 299; i++)
        mp[ml++] = '}';
    mp[ml] = 0;
    CHECK_EQ_INT(l3_doc_merge_patch(&m, mp, ml, &e), 0);
    CHECK(verifies(m.buf));
    l3_doc_stats_t mst;
    l3_doc_stats(m.buf, &mst);
    CHECK_EQ_INT(mst.max_depth, L3_DOC_MAX_DEPTH);
    free(obj300);
    l3_doc_heap_free(&m);

    char *after = doc_text(d.buf);
    CHECK_EQ_STR(after, before);
    CHECK(verifies(d.buf));
    free(after);
    free(before);
    free(mp);
    free(patch);
    free(add);
    free(js);
    free(deep);
    l3_doc_heap_free(&d);
}

/* A binary document of nested one-element arrays, built by hand. */
static uint8_t *chain_doc(int depth, size_t *ret_len)
{
    size_t len = DOC_DATA_OFF + (size_t)depth * 32;
    uint8_t *b = aligned_alloc(8, len);
    memset(b, 0, len);
    dhdr_t *h = HDR(b);
    h->dh_magic = L3_DOC_MAGIC;
    h->dh_version = L3_DOC_FORMAT_VERSION;
    h->dh_used = (uint32_t)len;
    dslot_t *root = AT(b, L3_DOC_ROOT, dslot_t);
    root->type = L3_DOC_ARRAY;
    root->val = DOC_DATA_OFF;
    for (int i = 0; i < depth; i++) {
        uint32_t off = DOC_DATA_OFF + (uint32_t)i * 32;
        darr_t *a = AT(b, off, darr_t);
        a->count = a->cap = 1;
        a->ioff = off + 16;
        dslot_t *s = AT(b, off + 16, dslot_t);
        if (i + 1 < depth) {
            s->type = L3_DOC_ARRAY;
            s->val = off + 32;
        } else {
            s->type = L3_DOC_INT;
            s->val = 7;
        }
    }
    *ret_len = len;
    return b;
}

static void test_depth_verify(void)
{
    size_t len;
    uint8_t *b = chain_doc(L3_DOC_MAX_DEPTH, &len);
    CHECK(verifies(b));
    free(b);
    b = chain_doc(L3_DOC_MAX_DEPTH + 1, &len);
    CHECK_EQ_INT(l3_doc_verify(b, len, NULL), L3_ECORRUPT);
    free(b);
    b = chain_doc(100000, &len);
    CHECK_EQ_INT(l3_doc_verify(b, len, NULL), L3_ECORRUPT);
    free(b);
}

/* Every walk over the deepest document allowed (verify, emit, compaction, statistics,
 * copy) on a 256 KiB thread stack; the parser, whose recursion is bounded by the same
 * limit, and the patch comparison run on the main stack. */
typedef struct {
    const uint8_t *buf;
    size_t len;
    const char *js;
    int ok;
} deep_t;

static void *deep_walks(void *arg)
{
    deep_t *t = arg;
    l3_doc_error_t e;
    t->ok = 0;
    if (l3_doc_verify(t->buf, t->len, &e) != 0)
        return NULL;
    l3_buf_t o = {0};
    if (l3_doc_to_json(t->buf, L3_DOC_ROOT, &o) != 0)
        return NULL;
    bool same = o.len == strlen(t->js) - 2 && memcmp(o.ptr, t->js + 1, o.len) == 0;
    free(o.ptr);
    size_t bound = l3_doc_compact_bound(t->buf), clen;
    uint8_t *c = malloc(bound);
    int crc = l3_doc_compact(t->buf, c, bound, &clen);
    l3_doc_stats_t stt;
    l3_doc_stats(t->buf, &stt);
    /* copy the innermost array's contents over the root: a copy of depth 512 */
    l3_doc_t d;
    CHECK_EQ_INT(l3_doc_heap_new(&d, 256), 0);
    int src = L3_DOC_HEAP_DO(&d, l3_doc_set_copy(&d, "", 0, 0, t->buf, L3_DOC_ROOT, NULL));
    bool copied = src == 0 && l3_doc_verify(d.buf, l3_doc_size(d.buf), NULL) == 0;
    l3_doc_heap_free(&d);
    t->ok = same && crc == 0 && stt.max_depth == L3_DOC_MAX_DEPTH && copied && verifies(c);
    if (!t->ok)
        fprintf(stderr, "  deep walks: same %d compact %d depth %zu copy %d\n", same, crc, stt.max_depth,
                src);
    free(c);
    return NULL;
}

static void test_depth_small_stack(void)
{
    char *js = nested_json(L3_DOC_MAX_DEPTH, "{\"k\":\"v\"}");
    /* the innermost object adds a level: drop one array */
    js[0] = ' ';
    js[strlen(js) - 1] = ' ';
    uint8_t *buf;
    size_t len;
    l3_doc_error_t e;
    CHECK_EQ_INT(l3_doc_from_json(js, strlen(js), NULL, &buf, &len, &e), 0);
    deep_t t = {.buf = buf, .len = len, .js = js};
    pthread_attr_t at;
    pthread_t th;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 << 10);
    CHECK_EQ_INT(pthread_create(&th, &at, deep_walks, &t), 0);
    pthread_join(th, NULL);
    pthread_attr_destroy(&at);
    CHECK(t.ok);
    /* test (the comparison) on a deep value: the patch's array and object take two levels */
    l3_doc_t d;
    l3_doc_heap_adopt(&d, buf, len);
    size_t pcap = strlen(js) + 256;
    char *p = malloc(pcap);
    snprintf(p, pcap, "[{\"op\":\"test\",\"path\":\"/0/0\",\"value\":%.*s}]", (int)(strlen(js) - 6), js + 3);
    CHECK_EQ_INT(l3_doc_json_patch(&d, p, strlen(p), &e), 0);
    free(p);
    l3_doc_heap_free(&d);
    free(js);
}

/* ------------------------------------------------------------------ size limit */

static void test_size_limit(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"s\":\"0123456789012345678901234567890123456789\"}");
    d.limit = 4096;
    char *before = doc_text(d.buf);
    /* copy "" into itself: doubles per operation */
    char patch[2048];
    size_t n = (size_t)snprintf(patch, sizeof(patch), "[");
    for (int i = 0; i < 19; i++)
        n += (size_t)snprintf(patch + n, sizeof(patch) - n,
                              "%s{\"op\":\"copy\",\"from\":\"\",\"path\":\"/c%d\"}", i ? "," : "", i);
    snprintf(patch + n, sizeof(patch) - n, "]");
    l3_doc_error_t e;
    l3_doc_t w;
    dt_parse(&w, before);
    w.limit = 4096;
    CHECK_EQ_INT(l3_doc_json_patch(&w, patch, strlen(patch), &e), L3_EDOCSIZE);
    CHECK(l3_doc_size(w.buf) <= 4096);
    CHECK(w.cap <= 4096 * 2);
    l3_doc_heap_free(&w);
    /* a set that would pass the limit changes nothing */
    char big[5000];
    memset(big, 'x', sizeof(big));
    l3_doc_scalar_t v = {.type = L3_DOC_STRING, .str = {big, sizeof(big)}};
    CHECK_EQ_INT(L3_DOC_HEAP_DO(&d, l3_doc_set(&d, "/t", 2, L3_DOC_SET_PATH_POINTER, &v, NULL)), L3_EDOCSIZE);
    char *after = doc_text(d.buf);
    CHECK_EQ_STR(after, before);
    free(after);
    /* the parser honours the limit too */
    uint8_t *buf;
    size_t len;
    char js[6000];
    snprintf(js, sizeof(js), "\"%.*s\"", 5000, big);
    l3_doc_parse_opts_t o = {.max_bytes = 4096};
    CHECK_EQ_INT(l3_doc_from_json(js, strlen(js), &o, &buf, &len, &e), L3_EDOCSIZE);
    o.max_bytes = 8192;
    CHECK_EQ_INT(l3_doc_from_json(js, strlen(js), &o, &buf, &len, &e), 0);
    free(buf);
    free(before);
    l3_doc_heap_free(&d);
}

/* JSON has no NaN or infinity: no set stores one (verify would refuse the document). */
static void test_nonfinite(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"x\":1.5,\"a\":[]}");
    l3_doc_scalar_t v = {.type = L3_DOC_DOUBLE, .d = __builtin_nan("")};
    CHECK_EQ_INT(L3_DOC_HEAP_DO(&d, l3_doc_set(&d, "x", 1, 0, &v, NULL)), L3_ERANGE);
    v.d = __builtin_inf();
    CHECK_EQ_INT(L3_DOC_HEAP_DO(&d, l3_doc_set(&d, "/a/-", 4, L3_DOC_SET_PATH_POINTER, &v, NULL)), L3_ERANGE);
    CHECK_EQ_INT(L3_DOC_HEAP_DO(&d, l3_doc_set(&d, "y", 1, 0, &v, NULL)), L3_ERANGE);
    CHECK(verifies(d.buf));
    l3_doc_heap_free(&d);
}

static const struct {
    const char *name;
    void (*fn)(void);
} cases[] = {
    {"nonfinite", test_nonfinite},
    {"flood_parse", test_flood_parse},
    {"flood_set", test_flood_set},
    {"flood_copy", test_flood_copy},
    {"flood_patches", test_flood_patches},
    {"seed_per_document", test_seed_per_document},
    {"depth_write_paths", test_depth_write_paths},
    {"depth_verify", test_depth_verify},
    {"depth_small_stack", test_depth_small_stack},
    {"size_limit", test_size_limit},
};

int main(int argc, char **argv)
{
    for (size_t i = 0; i < L3_ARRAY_SIZE(cases); i++) {
        bool run_it = argc < 2;
        for (int a = 1; a < argc && !run_it; a++)
            run_it = strncmp(cases[i].name, argv[a], strlen(argv[a])) == 0;
        if (!run_it)
            continue;
        int before = t_failures;
        cases[i].fn();
        printf("%s %s\n", t_failures == before ? "ok  " : "FAIL", cases[i].name);
    }
    return t_done();
}
