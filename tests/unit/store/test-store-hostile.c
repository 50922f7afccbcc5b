/* SPDX-License-Identifier: MIT */
/*
 * test-store-hostile.c - hostile writes through the store API: whatever a write path
 * accepts verifies, and what it refuses changes nothing.
 *
 * Member names crafted for a stored document's hash seed (read from its binary copy, as
 * a client can) go in through l3_store_set and l3_store_json_patch; nesting past
 * L3_DOC_MAX_DEPTH through JSON Patch is refused with L3_EDEPTH; a document limit
 * (max_doc_bytes) is refused with L3_EDOCSIZE on every path that grows a document.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "l3kv/base.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"
#include "l3kv/store.h"
#include "sth.h"
#include "t.h"

#define NCOLL 300

static uint32_t stored_seed(l3_store_t *st, const char *key)
{
    uint8_t *b;
    size_t len;
    uint32_t seed = 0;
    if (l3_store_get_bin(st, key, strlen(key), &b, &len, NULL) == 0) {
        seed = HDR(b)->dh_seed;
        free(b);
    }
    return seed;
}

static bool stored_verifies(l3_store_t *st, const char *key)
{
    uint8_t *b;
    size_t len;
    if (l3_store_get_bin(st, key, strlen(key), &b, &len, NULL) != 0)
        return false;
    l3_doc_error_t e = {0};
    int rc = l3_doc_verify(b, len, &e);
    if (rc)
        fprintf(stderr, "  verify: %s at %zu\n", e.msg, e.offset);
    free(b);
    return rc == 0;
}

static void craft(uint32_t seed, char names[][24])
{
    uint64_t ctr = 0;
    uint32_t want = 0;
    for (int n = 0; n < NCOLL;) {
        char tmp[24];
        int len = snprintf(tmp, sizeof(tmp), "m%llx", (unsigned long long)ctr++);
        uint32_t h = l3_doc__hash(seed, tmp, (size_t)len) & 0xFFFFu;
        if (n == 0)
            want = h;
        if (h == want)
            memcpy(names[n++], tmp, (size_t)len + 1);
    }
}

static void test_flood(void)
{
    l3_store_t *st = sth_create(64 << 20, 16, 0);
    CHECK_EQ_INT(l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL), 0);
    static char names[NCOLL][24];
    /* set paths, one member per call */
    CHECK_EQ_INT(sth_put(st, "s", "{\"o\":{}}"), 0);
    craft(stored_seed(st, "s"), names);
    for (int i = 0; i < NCOLL; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/o/%s", names[i]);
        l3_doc_scalar_t v = {.type = L3_DOC_INT, .i = i};
        CHECK_EQ_INT(l3_store_set(st, "s", 1, path, strlen(path), L3_DOC_SET_PATH_POINTER, &v, 0, NULL), 0);
    }
    CHECK(stored_verifies(st, "s"));
    /* JSON Patch, all at once */
    CHECK_EQ_INT(sth_put(st, "p", "{\"o\":{}}"), 0);
    craft(stored_seed(st, "p"), names);
    size_t cap = 64 + (size_t)NCOLL * 64, len = 0;
    char *p = malloc(cap);
    p[len++] = '[';
    for (int i = 0; i < NCOLL; i++)
        len += (size_t)snprintf(p + len, cap - len, "%s{\"op\":\"add\",\"path\":\"/o/%s\",\"value\":%d}",
                                i ? "," : "", names[i], i);
    p[len++] = ']';
    p[len] = 0;
    CHECK_EQ_INT(l3_store_json_patch(st, "p", 1, p, len, 0, NULL, NULL), 0);
    CHECK(stored_verifies(st, "p"));
    free(p);
    sth_destroy(st);
}

static void test_depth(void)
{
    l3_store_t *st = sth_create(64 << 20, 16, 0);
    CHECK_EQ_INT(l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL), 0);
    char *js = malloc(2 * 600 + 64);
    size_t n = 0;
    for (int i = 0; i < 500; i++)
        js[n++] = '[';
    for (int i = 0; i < 500; i++)
        js[n++] = ']';
    js[n] = 0;
    CHECK_EQ_INT(sth_put(st, "d", js), 0);
    char *before = sth_json(st, "d");
    /* copy the document under its own deepest array: 1000 levels */
    char *patch = malloc(4096);
    n = (size_t)sprintf(patch, "[{\"op\":\"copy\",\"from\":\"\",\"path\":\"");
    for (int i = 0; i < 499; i++)
        n += (size_t)sprintf(patch + n, "/0");
    sprintf(patch + n, "/0\"}]");
    l3_doc_error_t e = {0};
    CHECK_EQ_INT(l3_store_json_patch(st, "d", 1, patch, strlen(patch), 0, NULL, &e), L3_EDEPTH);
    char *after = sth_json(st, "d");
    CHECK_EQ_STR(after, before);
    CHECK(stored_verifies(st, "d"));
    /* set paths: an empty array at the limit, then one more */
    char path[2048];
    n = 0;
    for (int i = 0; i < 499; i++)
        n += (size_t)sprintf(path + n, "/0");
    l3_doc_scalar_t arr = {.type = L3_DOC_ARRAY};
    int rc = 0, levels = 500;
    while (rc == 0) {
        sprintf(path + n, "/0");
        rc = l3_store_set(st, "d", 1, path, strlen(path), L3_DOC_SET_PATH_POINTER, &arr, 0, NULL);
        if (rc == 0) {
            levels++;
            n += 2;
        }
    }
    CHECK_EQ_INT(rc, L3_EDEPTH);
    CHECK_EQ_INT(levels, L3_DOC_MAX_DEPTH);
    CHECK(stored_verifies(st, "d"));
    free(after);
    free(before);
    free(patch);
    free(js);
    sth_destroy(st);
}

/* A store whose documents are limited to 64 KiB. */
static l3_store_t *limited_store(void)
{
    static int seq;
    char name[64];
    snprintf(name, sizeof(name), "test.h.%ld.%d", (long)getpid(), seq++);
    l3_store_opts_t o = {.name = name,
                         .arena_bytes = 64 << 20,
                         .wal_ring_bytes = 64 << 10,
                         .max_procs = 8,
                         .obs_bytes = 4096,
                         .nstripes = 16,
                         .replace = true,
                         .max_doc_bytes = 64 << 10};
    l3_store_t *st;
    int rc = l3_store_create(&o, &st);
    if (rc < 0)
        exit(rc == -ENOTSUP ? T_SKIP : T_HARNESS_ERROR);
    CHECK_EQ_INT(l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL), 0);
    return st;
}

/* WAL hook: every record replayed at once into the mirror store ctx. */
static int mirror_hook(void *ctx, const l3_wal_rec_t *rec)
{
    CHECK_EQ_INT(l3_store_replay(ctx, rec), 0);
    return 0;
}

static void test_size(void)
{
    l3_store_t *st = limited_store(), *mirror = limited_store();
    l3_store_set_wal_hook(st, mirror_hook, mirror);
    int rc;
    CHECK_EQ_INT(sth_put(st, "k", "{\"s\":\"0123456789012345678901234567890123456789\"}"), 0);
    char *before = sth_json(st, "k");
    /* 19 copies of "" would double it 19 times */
    char patch[2048];
    size_t n = (size_t)snprintf(patch, sizeof(patch), "[");
    for (int i = 0; i < 19; i++)
        n += (size_t)snprintf(patch + n, sizeof(patch) - n, "%s{\"op\":\"copy\",\"from\":\"\",\"path\":\"/c%d\"}",
                              i ? "," : "", i);
    snprintf(patch + n, sizeof(patch) - n, "]");
    CHECK_EQ_INT(l3_store_json_patch(st, "k", 1, patch, strlen(patch), 0, NULL, NULL), L3_EDOCSIZE);
    char *after = sth_json(st, "k");
    CHECK_EQ_STR(after, before);
    free(after);
    /* merge patch and set of a value beyond the limit */
    size_t big = 70 << 10;
    char *s = malloc(big + 64);
    n = (size_t)sprintf(s, "{\"t\":\"");
    memset(s + n, 'x', big);
    n += big;
    sprintf(s + n, "\"}");
    CHECK_EQ_INT(l3_store_merge_patch(st, "k", 1, s, strlen(s), 0, NULL, NULL), L3_EDOCSIZE);
    l3_doc_scalar_t v = {.type = L3_DOC_STRING, .str = {s + 6, big}};
    CHECK_EQ_INT(l3_store_set(st, "k", 1, "t", 1, 0, &v, 0, NULL), L3_EDOCSIZE);
    CHECK_EQ_INT(l3_store_put_json(st, "k", 1, s, strlen(s), 0, NULL, NULL), L3_EDOCSIZE);
    after = sth_json(st, "k");
    CHECK_EQ_STR(after, before);
    free(after);
    /* binary PUT of a document above the limit */
    uint8_t *b;
    size_t blen;
    l3_doc_error_t e;
    CHECK_EQ_INT(l3_doc_from_json(s, strlen(s), NULL, &b, &blen, &e), 0);
    CHECK_EQ_INT(l3_store_put_bin(st, "k", 1, b, blen, 0, NULL, &e), L3_EDOCSIZE);
    free(b);
    /* just below the limit is fine */
    v.str.len = (60 << 10);
    CHECK_EQ_INT(l3_store_set(st, "k", 1, "t", 1, 0, &v, 0, NULL), 0);
    CHECK(stored_verifies(st, "k"));
    /* an object of 1000 members (two thirds of the limit): doubling its full table in
     * appended space would pass the limit; a compacted copy with room takes new members,
     * set in place and by JSON Patch, until the document itself is at the limit */
    n = (size_t)sprintf(s, "{");
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(s + n, "%s\"m%d\":%d", i ? "," : "", i, i);
    sprintf(s + n, "}");
    for (int patch_path = 0; patch_path < 2; patch_path++) {
        const char *key = patch_path ? "h" : "g";
        CHECK_EQ_INT(l3_store_put_json(st, key, 1, s, strlen(s), 0, NULL, NULL), 0);
        int added = 0;
        rc = 0;
        for (int i = 0; i < 4000 && rc == 0; i++) {
            char member[32], op[96];
            snprintf(member, sizeof member, "new%d", i);
            l3_doc_scalar_t one = {.type = L3_DOC_INT, .i = i};
            if (!patch_path) /* in place in the arena */
                rc = l3_store_set(st, key, 1, member, strlen(member), 0, &one, 0, NULL);
            else /* on a private copy (L3_DOC_HEAP_DO) */
                rc = l3_store_json_patch(
                    st, key, 1, op,
                    (size_t)snprintf(op, sizeof op, "[{\"op\":\"add\",\"path\":\"/%s\",\"value\":%d}]", member, i),
                    0, NULL, NULL);
            CHECK(rc == 0 || rc == L3_EDOCSIZE);
            added += rc == 0;
        }
        CHECK(added >= 100); /* before: none */
        CHECK(stored_verifies(st, key));
        char *g = sth_json(st, key);
        CHECK(g != NULL && strstr(g, "\"new0\":0") != NULL && strstr(g, "\"m999\":999") != NULL);
        /* replay builds what the live changes built: the same document, within the limit */
        char *m = sth_json(mirror, key);
        CHECK(m != NULL && g != NULL && strcmp(m, g) == 0);
        uint8_t *b1, *b2;
        size_t l1, l2;
        CHECK_EQ_INT(l3_store_get_bin(st, key, 1, &b1, &l1, NULL), 0);
        CHECK_EQ_INT(l3_store_get_bin(mirror, key, 1, &b2, &l2, NULL), 0);
        CHECK_EQ_INT(l2, l1);
        CHECK(l2 <= 64 << 10);
        free(b1);
        free(b2);
        free(m);
        free(g);
    }
    free(s);
    free(before);
    sth_destroy(st);
    sth_destroy(mirror);
}

static const struct {
    const char *name;
    void (*fn)(void);
} cases[] = {
    {"flood", test_flood},
    {"depth", test_depth},
    {"size", test_size},
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
