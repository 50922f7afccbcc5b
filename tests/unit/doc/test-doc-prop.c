/* SPDX-License-Identifier: MIT */
/*
 * test-doc-prop.c - property tests of the document format against jansson as an
 * independent oracle (fixed seed, see t_seed; --cases N scales every part):
 *   1. round trip: random JSON values built with jansson -> json_dumps -> l3_doc_from_json
 *      -> verify -> l3_doc_to_json -> json_loads, equal to the original (numbers by exact
 *      value, ints stay ints, object key order preserved); to_json is idempotent;
 *   2. random JSON Pointer and dotted lookups, compared with the jansson subtree;
 *   3. random mutation sequences (set scalar, set_json subtree, delete, incr, array insert
 *      and append) applied to a document (through L3_DOC_HEAP_DO, so growth and automatic
 *      compaction run too) and to a jansson tree, compared after every step;
 *   4. the packed form of every document of part 1 that packs: verifies, serialises to the
 *      same bytes as the full form, answers the lookups of part 2, iterates the root's
 *      members in the same order, and unpacks to a full form that serialises the same.
 * jansson cannot load NUL bytes inside object keys, so generated keys have none; NUL in
 * keys is covered by test-doc-lite3. Single-threaded; no files.
 */
#include <jansson.h>
#include <math.h>

#include "dt.h"

static uint64_t rng;

static uint64_t rnd(uint64_t n)
{
    return n ? t_rand(&rng) % n : 0;
}

/* ------------------------------------------------------------------ generators */

static size_t put_utf8(char *p, uint32_t cp)
{
    if (cp < 0x80) {
        p[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        p[0] = (char)(0xc0 | (cp >> 6));
        p[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        p[0] = (char)(0xe0 | (cp >> 12));
        p[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        p[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    p[0] = (char)(0xf0 | (cp >> 18));
    p[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    p[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    p[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static uint32_t gen_cp(int key)
{
    static const char special[] = "\"\\/~.-0 ";
    switch (rnd(10)) {
    case 0:
        return key ? (uint32_t)(1 + rnd(31)) : (uint32_t)rnd(32); /* controls; NUL only in values */
    case 1:
        return (uint32_t)(unsigned char)special[rnd(sizeof(special) - 1)];
    case 2:
        return (uint32_t)(0x80 + rnd(0x800 - 0x80));
    case 3: {
        uint32_t c = (uint32_t)(0x800 + rnd(0x10000 - 0x800));
        return (c >= 0xd800 && c < 0xe000) ? 0xfffd : c;
    }
    case 4:
        return (uint32_t)(0x10000 + rnd(0x110000 - 0x10000));
    default:
        return (uint32_t)('a' + rnd(26));
    }
}

static size_t gen_str(char *out, size_t maxcp, int key)
{
    size_t n = rnd(4) == 0 ? rnd(maxcp + 1) : rnd(8), len = 0;
    if (rnd(20) == 0)
        n = 20 + rnd(300); /* past any inline limit */
    for (size_t i = 0; i < n; i++)
        len += put_utf8(out + len, gen_cp(key));
    return len;
}

static json_t *gen_scalar(void)
{
    char s[4 * 400];
    switch (rnd(8)) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(rnd(2));
    case 2: {
        static const json_int_t edge[] = {0, 1, -1, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1,
                                          9007199254740993LL, -9007199254740993LL, 4294967296LL};
        if (rnd(4) == 0)
            return json_integer(edge[rnd(sizeof(edge) / sizeof(edge[0]))]);
        return json_integer((json_int_t)(t_rand(&rng) >> rnd(64)) * (rnd(2) ? 1 : -1));
    }
    case 3:
    case 4: {
        double d;
        static const double nice[] = {0.1, 0.5, -1.5, 1e300, -1e-300, 5e-324, 1.7976931348623157e308, 3.0,
                                      -0.0, 123456.789, 1e21, 2.5e-8};
        if (rnd(3) == 0) {
            d = nice[rnd(sizeof(nice) / sizeof(nice[0]))];
        } else if (rnd(2)) {
            d = (double)(int64_t)(t_rand(&rng) >> rnd(64)) / (double)(1 + rnd(1000000));
        } else {
            uint64_t bits = t_rand(&rng);
            memcpy(&d, &bits, 8);
            if (!isfinite(d))
                d = 1.25;
        }
        return json_real(d);
    }
    default: {
        size_t len = gen_str(s, 40, 0);
        return json_stringn(s, len);
    }
    }
}

static json_t *gen_value(int depth)
{
    if (depth <= 0 || rnd(3) != 0)
        return gen_scalar();
    if (rnd(2)) {
        json_t *a = json_array();
        size_t n = rnd(6);
        if (rnd(15) == 0)
            n = 20 + rnd(60);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, gen_value(depth - 1));
        return a;
    }
    json_t *o = json_object();
    size_t n = rnd(6);
    if (rnd(15) == 0)
        n = 20 + rnd(60);
    char k[4 * 400];
    for (size_t i = 0; i < n; i++) {
        size_t kl = gen_str(k, 12, 1);
        json_object_setn_new(o, k, kl, gen_value(depth - 1));
    }
    return o;
}

/* ------------------------------------------------------------------ comparison */

/* Equal as JSON values: numbers by exact value (an int must stay an int), strings by bytes,
 * arrays element-wise, objects member-wise in the same order. */
static bool same(const json_t *a, const json_t *b)
{
    if (json_is_integer(a)) {
        return json_is_integer(b) && json_integer_value(a) == json_integer_value(b);
    }
    if (json_is_real(a)) {
        double x = json_real_value(a);
        if (json_is_real(b))
            return json_real_value(b) == x;
        if (json_is_integer(b)) /* an integral double may come back spelled as an int */
            return x == floor(x) && fabs(x) < 9.2e18 && (json_int_t)x == json_integer_value(b);
        return false;
    }
    if (json_typeof(a) != json_typeof(b))
        return false;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return false;
        void *ia = json_object_iter((json_t *)a), *ib = json_object_iter((json_t *)b);
        while (ia && ib) {
            size_t la = json_object_iter_key_len(ia), lb = json_object_iter_key_len(ib);
            if (la != lb || memcmp(json_object_iter_key(ia), json_object_iter_key(ib), la) != 0)
                return false;
            if (!same(json_object_iter_value(ia), json_object_iter_value(ib)))
                return false;
            ia = json_object_iter_next((json_t *)a, ia);
            ib = json_object_iter_next((json_t *)b, ib);
        }
        return !ia && !ib;
    }
    default:
        return true;
    }
}

/* Print where two values first differ (for failure messages). */
static void explain(const json_t *a, const json_t *b, const char *at)
{
    char sub[512];
    if (json_is_array(a) && json_is_array(b) && json_array_size(a) == json_array_size(b)) {
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same(json_array_get(a, i), json_array_get(b, i))) {
                snprintf(sub, sizeof(sub), "%s/%zu", at, i);
                explain(json_array_get(a, i), json_array_get(b, i), sub);
                return;
            }
    }
    if (json_is_object(a) && json_is_object(b) && json_object_size(a) == json_object_size(b)) {
        void *ia = json_object_iter((json_t *)a), *ib = json_object_iter((json_t *)b);
        for (; ia && ib; ia = json_object_iter_next((json_t *)a, ia), ib = json_object_iter_next((json_t *)b, ib)) {
            size_t la = json_object_iter_key_len(ia), lb = json_object_iter_key_len(ib);
            if (la != lb || memcmp(json_object_iter_key(ia), json_object_iter_key(ib), la) != 0) {
                fprintf(stderr, "  first difference at %s: key order/names differ ('%.*s' vs '%.*s')\n", at, (int)la,
                        json_object_iter_key(ia), (int)lb, json_object_iter_key(ib));
                return;
            }
            if (!same(json_object_iter_value(ia), json_object_iter_value(ib))) {
                snprintf(sub, sizeof(sub), "%s/%.*s", at, (int)(la < 40 ? la : 40), json_object_iter_key(ia));
                explain(json_object_iter_value(ia), json_object_iter_value(ib), sub);
                return;
            }
        }
    }
    char *x = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY), *y = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
    fprintf(stderr, "  first difference at %s: want %.200s (type %d), got %.200s (type %d)\n", at, x, json_typeof(a),
            y, json_typeof(b));
    free(x);
    free(y);
}

static json_t *doc_to_jansson(const uint8_t *buf, uint32_t slot, char **ret_text)
{
    size_t len;
    char *text = dt_json_len(buf, slot, &len);
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v)
        fprintf(stderr, "jansson rejects to_json output: %s at %d: %.300s\n", je.text, je.position, text);
    if (ret_text)
        *ret_text = text;
    else
        free(text);
    return v;
}

static char *dumps(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* ------------------------------------------------------------------ 1. round trip */

static void check_roundtrip(json_t *v)
{
    char *text = dumps(v);
    uint8_t *buf = NULL;
    size_t len = 0;
    l3_doc_error_t err = {0};
    int rc = l3_doc_from_json(text, strlen(text), NULL, &buf, &len, &err);
    if (rc != 0) {
        fprintf(stderr, "from_json rejects jansson output (%d at %zu: %s): %.300s\n", rc, err.offset, err.msg, text);
        CHECK(0);
        free(text);
        return;
    }
    CHECK_EQ_INT(l3_doc_check_json(text, strlen(text), NULL, NULL), 0);
    CHECK_EQ_INT(l3_doc_verify(buf, len, NULL), 0);
    char *out = NULL;
    json_t *back = doc_to_jansson(buf, L3_DOC_ROOT, &out);
    bool ok = back && same(v, back);
    if (!ok) {
        fprintf(stderr, "round trip differs:\n  in  %.400s\n  out %.400s\n", text, out);
        if (back)
            explain(v, back, "");
    }
    CHECK(ok);
    /* to_json of the re-parsed output is byte-identical (idempotence) */
    uint8_t *b2 = NULL;
    size_t l2;
    CHECK_EQ_INT(l3_doc_from_json(out, strlen(out), NULL, &b2, &l2, &err), 0);
    if (b2) {
        char *out2 = dt_json(b2, L3_DOC_ROOT);
        CHECK_EQ_STR(out2, out);
        free(out2);
        free(b2);
    }
    json_decref(back);
    free(out);
    free(buf);
    free(text);
}

/* ------------------------------------------------------------------ paths */

typedef struct {
    char p[8192];
    size_t len;
    char dot[8192];
    size_t dlen;
    bool dot_ok; /* the dotted form can name this path (no '.' in tokens, none empty) */
} path_t;

static void path_init(path_t *p)
{
    p->len = p->dlen = 0;
    p->dot_ok = true;
}

static void path_push(path_t *p, const char *tok, size_t n)
{
    if (p->len + 2 * n + 2 >= sizeof(p->p) || p->dlen + n + 2 >= sizeof(p->dot)) {
        p->dot_ok = false;
        return;
    }
    p->p[p->len++] = '/';
    for (size_t i = 0; i < n; i++) {
        if (tok[i] == '~' || tok[i] == '/') {
            p->p[p->len++] = '~';
            p->p[p->len++] = tok[i] == '~' ? '0' : '1';
        } else {
            p->p[p->len++] = tok[i];
        }
    }
    if (n == 0 || memchr(tok, '.', n) || (p->dlen == 0 && tok[0] == '/'))
        p->dot_ok = false;
    if (p->dlen)
        p->dot[p->dlen++] = '.';
    memcpy(p->dot + p->dlen, tok, n);
    p->dlen += n;
}

static void path_push_idx(path_t *p, size_t i)
{
    char t[32];
    int n = snprintf(t, sizeof(t), "%zu", i);
    path_push(p, t, (size_t)n);
}

/* Walk from v to a random descendant (or v itself); *ret_parent/ret_key/ret_idx describe
 * the last step (parent NULL at the root). */
typedef struct {
    json_t *node, *parent;
    const char *key;
    size_t klen, idx;
    path_t path;
} pick_t;

static void pick(json_t *root, pick_t *pk, int want_container)
{
    pk->node = root;
    pk->parent = NULL;
    path_init(&pk->path);
    for (;;) {
        json_t *n = pk->node;
        size_t size = json_is_array(n) ? json_array_size(n) : json_is_object(n) ? json_object_size(n) : 0;
        if (size == 0 || rnd(3) == 0)
            break;
        size_t i = rnd(size);
        json_t *child;
        const char *key = NULL;
        size_t klen = 0;
        if (json_is_array(n)) {
            child = json_array_get(n, i);
        } else {
            void *it = json_object_iter(n);
            while (i--)
                it = json_object_iter_next(n, it);
            child = json_object_iter_value(it);
            key = json_object_iter_key(it);
            klen = json_object_iter_key_len(it);
        }
        if (want_container && !json_is_array(child) && !json_is_object(child))
            break;
        if (key) {
            pk->key = key;
            pk->klen = klen;
            path_push(&pk->path, key, klen);
        } else {
            pk->key = NULL;
            pk->idx = i;
            path_push_idx(&pk->path, i);
        }
        pk->parent = n;
        pk->node = child;
    }
}

/* ------------------------------------------------------------------ 2. lookups */

static void check_lookups(json_t *v, const uint8_t *buf)
{
    for (int k = 0; k < 8; k++) {
        pick_t pk;
        pick(v, &pk, 0);
        uint32_t slot;
        int rc = l3_doc_lookup(buf, pk.path.p, pk.path.len, L3_DOC_PATH_POINTER, &slot);
        CHECK_EQ_INT(rc, 0);
        if (rc == 0) {
            json_t *got = doc_to_jansson(buf, slot, NULL);
            bool ok = got && same(pk.node, got);
            if (!ok) {
                fprintf(stderr, "lookup '%.*s' gives a different value\n", (int)pk.path.len, pk.path.p);
                if (got)
                    explain(pk.node, got, pk.path.p);
            }
            CHECK(ok);
            json_decref(got);
            l3_doc_val_t val;
            CHECK_EQ_INT(l3_doc_get(buf, pk.path.p, pk.path.len, L3_DOC_PATH_POINTER, &val), 0);
            CHECK_EQ_INT(val.slot, slot);
        }
        if (pk.path.dot_ok) {
            uint32_t s2;
            rc = l3_doc_lookup(buf, pk.path.dot, pk.path.dlen, L3_DOC_PATH_DOTTED, &s2);
            CHECK_EQ_INT(rc, 0);
            if (rc == 0)
                CHECK_EQ_INT(s2, slot);
        }
        /* one step past an existing container into something absent */
        if (json_is_object(pk.node)) {
            path_t p = pk.path;
            char key[64];
            int kl;
            do
                kl = snprintf(key, sizeof(key), "absent-%u", (unsigned)rnd(1000));
            while (json_object_getn(pk.node, key, (size_t)kl));
            path_push(&p, key, (size_t)kl);
            CHECK_EQ_INT(l3_doc_lookup(buf, p.p, p.len, L3_DOC_PATH_POINTER, &slot), L3_ENOTFOUND);
        } else if (json_is_array(pk.node)) {
            path_t p = pk.path;
            path_push_idx(&p, json_array_size(pk.node) + rnd(3));
            CHECK_EQ_INT(l3_doc_lookup(buf, p.p, p.len, L3_DOC_PATH_POINTER, &slot), L3_ENOTFOUND);
        }
    }
}

/* ------------------------------------------------------------------ 4. the packed form */

static unsigned long packed_cases, direct_cases;

/* l3_doc_pack_json of the text gives the bytes l3_doc_pack gave (rc, p, plen) of its full form. */
static void check_direct(const char *text, int rc, const uint8_t *p, size_t plen)
{
    _Alignas(8) uint8_t q[L3_DOC_PACK_MAX_BYTES];
    size_t qlen = 0;
    int dr = l3_doc_pack_json(text, strlen(text), NULL, q, sizeof(q), &qlen);
    if (rc == 0) {
        /* jansson writes no duplicate names: the direct packer must not give up */
        CHECK_EQ_INT(dr, 0);
        if (dr == 0) {
            CHECK_EQ_INT(qlen, plen);
            CHECK(qlen == plen && memcmp(q, p, plen) == 0);
            direct_cases++;
        }
    } else if (dr == 0) {
        /* l3_doc_pack reserves a value's largest encoding: it may give up a few bytes early */
        CHECK(qlen > L3_DOC_PACK_MAX_BYTES - 64);
    }
}

/* Members of the object at slot in both forms, in order: the same names, values that print the same. */
static void check_same_members(const uint8_t *full, const uint8_t *packed)
{
    l3_doc_val_t v;
    l3_doc_val(full, L3_DOC_ROOT, &v);
    if (v.type != L3_DOC_OBJECT)
        return;
    uint32_t pa = 0, pb = 0, sa, sb, ka, kb;
    const char *na, *nb;
    int ra, rb;
    while ((ra = l3_doc_obj_next(full, L3_DOC_ROOT, &pa, &na, &ka, &sa)) ==
           (rb = l3_doc_obj_next(packed, L3_DOC_ROOT, &pb, &nb, &kb, &sb))) {
        if (ra != 1)
            return;
        CHECK(ka == kb && memcmp(na, nb, ka) == 0);
        char *ja = dt_json(full, sa), *jb = dt_json(packed, sb);
        CHECK_EQ_STR(jb, ja);
        free(ja);
        free(jb);
    }
    CHECK_EQ_INT(rb, ra);
}

static void check_packed(json_t *v, const char *text, const uint8_t *full)
{
    _Alignas(8) uint8_t p[L3_DOC_PACK_MAX_BYTES];
    size_t plen;
    int rc = l3_doc_pack(full, p, sizeof(p), &plen);
    check_direct(text, rc, p, plen);
    if (rc == L3_ETOOBIG)
        return; /* too big (or a container too large) for the packed form */
    CHECK(l3_doc_size(full) <= 32 * plen + 64); /* L3_DOC_PACK_FULL_BOUND holds */
    CHECK_EQ_INT(rc, 0);
    if (rc)
        return;
    packed_cases++;
    CHECK(l3_doc_is_packed(p) && plen <= l3_doc_size(full) && plen == l3_doc_size(p));
    DT_CHECK_VERIFY(p);
    char *a = dt_json(full, L3_DOC_ROOT), *b = dt_json(p, L3_DOC_ROOT);
    CHECK_EQ_STR(b, a);
    check_lookups(v, p);
    check_same_members(full, p);
    uint8_t *u = NULL;
    size_t ulen;
    CHECK_EQ_INT(l3_doc_unpack(p, &u, &ulen), 0);
    if (u) {
        CHECK(!l3_doc_is_packed(u));
        DT_CHECK_VERIFY(u);
        char *c = dt_json(u, L3_DOC_ROOT);
        CHECK_EQ_STR(c, a);
        free(c);
        free(u);
    }
    free(a);
    free(b);
}

/* ------------------------------------------------------------------ 3. mutations */

static int mutate(l3_doc_t *d, json_t *model, char *desc, size_t dcap)
{
    pick_t pk;
    pick(model, &pk, 1);
    json_t *c = pk.node; /* a container, or the root scalar */
    int op = (int)rnd(6);
    unsigned fl = L3_DOC_SET_PATH_POINTER;
    path_t p = pk.path;
    if (!json_is_object(c) && !json_is_array(c)) {
        /* the root is a scalar: replace it */
        json_t *nv = gen_value(3);
        char *t = dumps(nv);
        l3_doc_error_t err;
        snprintf(desc, dcap, "set_json '' %.100s", t);
        int rc = L3_DOC_HEAP_DO(d, l3_doc_set_json(d, "", 0, 0, t, strlen(t), &err));
        free(t);
        CHECK_EQ_INT(rc, 0);
        json_object_clear(model);
        json_decref(nv);
        return -1; /* caller replaces the model */
    }
    size_t size = json_is_array(c) ? json_array_size(c) : json_object_size(c);
    /* choose the target member */
    size_t idx = 0;
    const char *key = NULL;
    size_t klen = 0;
    char kbuf[4 * 400];
    bool exists;
    if (json_is_array(c)) {
        idx = rnd(size + 1);
        exists = idx < size;
        if (!exists && rnd(2)) {
            path_push(&p, "-", 1);
        } else {
            path_push_idx(&p, idx);
        }
    } else {
        if (size && rnd(2)) {
            size_t i = rnd(size);
            void *it = json_object_iter(c);
            while (i--)
                it = json_object_iter_next(c, it);
            key = json_object_iter_key(it);
            klen = json_object_iter_key_len(it);
            exists = true;
        } else {
            klen = gen_str(kbuf, 10, 1);
            key = kbuf;
            exists = json_object_getn(c, key, klen) != NULL;
        }
        path_push(&p, key, klen);
    }
    json_t *cur = !exists ? NULL : json_is_array(c) ? json_array_get(c, idx) : json_object_getn(c, key, klen);
    int rc = 0, want = 0;
    json_t *nv = NULL;
    bool insert = false;
    switch (op) {
    case 0:
    case 1: { /* set a scalar / set_json a subtree */
        nv = op == 0 ? gen_scalar() : gen_value(3);
        char *t = dumps(nv);
        snprintf(desc, dcap, "set%s '%.*s' %.100s", op ? "_json" : "", (int)p.len, p.p, t);
        if (op == 0 && !json_is_object(nv) && !json_is_array(nv) && !json_is_real(nv) && !json_is_integer(nv)) {
            l3_doc_scalar_t s = {.type = L3_DOC_NULL};
            if (json_is_boolean(nv)) {
                s.type = L3_DOC_BOOL;
                s.b = json_is_true(nv);
            } else if (json_is_string(nv)) {
                s.type = L3_DOC_STRING;
                s.str.ptr = json_string_value(nv);
                s.str.len = json_string_length(nv);
            }
            rc = L3_DOC_HEAP_DO(d, l3_doc_set(d, p.p, p.len, fl, &s, NULL));
        } else if (op == 0 && json_is_integer(nv)) {
            l3_doc_scalar_t s = {.type = L3_DOC_INT, .i = json_integer_value(nv)};
            rc = L3_DOC_HEAP_DO(d, l3_doc_set(d, p.p, p.len, fl, &s, NULL));
        } else if (op == 0 && json_is_real(nv)) {
            l3_doc_scalar_t s = {.type = L3_DOC_DOUBLE, .d = json_real_value(nv)};
            rc = L3_DOC_HEAP_DO(d, l3_doc_set(d, p.p, p.len, fl, &s, NULL));
        } else {
            l3_doc_error_t err;
            rc = L3_DOC_HEAP_DO(d, l3_doc_set_json(d, p.p, p.len, fl, t, strlen(t), &err));
        }
        free(t);
        break;
    }
    case 2: /* delete */
        snprintf(desc, dcap, "delete '%.*s'", (int)p.len, p.p);
        want = exists ? 0 : L3_ENOTFOUND;
        rc = L3_DOC_HEAP_DO(d, l3_doc_delete(d, p.p, p.len, fl));
        if (rc == 0 && exists) {
            if (json_is_array(c))
                json_array_remove(c, idx);
            else
                json_object_deln(c, key, klen);
        }
        break;
    case 3: { /* incr */
        int64_t delta = (int64_t)(t_rand(&rng) >> rnd(64)) * (rnd(2) ? 1 : -1), nvv = 0;
        snprintf(desc, dcap, "incr '%.*s' %" PRId64, (int)p.len, p.p, delta);
        rc = L3_DOC_HEAP_DO(d, l3_doc_incr(d, p.p, p.len, fl | L3_DOC_SET_NO_CREATE, delta, &nvv));
        if (!exists) {
            want = L3_ENOTFOUND;
        } else if (!json_is_integer(cur)) {
            want = L3_ETYPE;
        } else {
            int64_t old = json_integer_value(cur), sum;
            if (__builtin_add_overflow(old, delta, &sum)) {
                want = L3_ERANGE;
            } else {
                want = 0;
                CHECK(rc != 0 || nvv == sum);
                json_integer_set(cur, sum);
            }
        }
        break;
    }
    default: /* array insert / object set with the INSERT flag */
        nv = gen_value(2);
        insert = json_is_array(c);
        {
            char *t = dumps(nv);
            l3_doc_error_t err;
            snprintf(desc, dcap, "insert '%.*s' %.100s", (int)p.len, p.p, t);
            rc = L3_DOC_HEAP_DO(d, l3_doc_set_json(d, p.p, p.len, fl | L3_DOC_SET_INSERT, t, strlen(t), &err));
            free(t);
        }
        break;
    }
    if (nv) {
        want = 0;
        if (rc == 0) {
            if (json_is_array(c)) {
                if (insert || idx == size)
                    json_array_insert(c, idx, nv);
                else
                    json_array_set(c, idx, nv);
            } else {
                json_object_setn(c, key, klen, nv);
            }
        }
        json_decref(nv);
    }
    if (rc != want)
        fprintf(stderr, "%s: rc %d, want %d\n", desc, rc, want);
    CHECK_EQ_INT(rc, want);
    return 0;
}

static unsigned long undo_checked;

static void run_sequence(int steps)
{
    json_t *model = json_object();
    json_object_set_new(model, "seed", gen_value(4));
    char *t = dumps(model);
    l3_doc_t d;
    dt_parse(&d, t);
    free(t);
    char desc[512];
    for (int s = 0; s < steps; s++) {
        int fails = t_failures;
        /* journal the change: unless the buffer moved (grown by realloc to a new place, or
         * compacted - maybe_compact allocates before it frees, so the address changes), the
         * recorded old bytes applied in reverse must give back the document as it was */
        if (d.cap < l3_doc_size(d.buf) + 64 * 1024) {
            d.need = l3_doc_size(d.buf) + 128 * 1024;
            CHECK_EQ_INT(l3_doc_heap_grow(&d), 0);
        }
        dt_undo_t u = {0};
        size_t mark = 0;
        uint8_t *snap = dt_undo_begin(&u, &d, &mark);
        int mr = mutate(&d, model, desc, sizeof(desc));
        d.undo = NULL;
        d.undo_ctx = NULL;
        if (d.buf == u.base) {
            undo_checked++;
            if (!dt_undo_restores(&u, &d, snap, mark)) {
                fprintf(stderr, "undo journal of '%s' does not restore the document\n", desc);
                CHECK(0);
            }
        }
        free(snap);
        dt_undo_reset(&u);
        if (mr < 0) {
            json_decref(model);
            model = doc_to_jansson(d.buf, L3_DOC_ROOT, NULL);
            if (!json_is_object(model) && !json_is_array(model)) {
                json_decref(model);
                break;
            }
            continue;
        }
        json_t *got = doc_to_jansson(d.buf, L3_DOC_ROOT, NULL);
        bool ok = got && same(model, got);
        if (!ok) {
            char *m = dumps(model), *g = got ? dumps(got) : NULL;
            fprintf(stderr, "after step %d (%s) the document differs:\n  model %.600s\n  doc   %.600s\n", s, desc, m,
                    g ? g : "(invalid)");
            free(m);
            free(g);
            if (got)
                explain(model, got, "");
        }
        CHECK(ok);
        json_decref(got);
        if (s % 8 == 0 || !ok || t_failures != fails) {
            l3_doc_error_t err = {0};
            int vr = l3_doc_verify(d.buf, l3_doc_size(d.buf), &err);
            if (vr)
                fprintf(stderr, "after %s: verify %d at %zu: %s\n", desc, vr, err.offset, err.msg);
            CHECK_EQ_INT(vr, 0);
        }
        if (t_failures != fails)
            break; /* one report per sequence is enough */
    }
    json_decref(model);
    l3_doc_heap_free(&d);
}

int main(int argc, char **argv)
{
    long cases = 3000;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--cases") == 0)
            cases = strtol(argv[i + 1], NULL, 0);
    rng = t_seed();
    for (long i = 0; i < cases && t_failures < 20; i++) {
        json_t *v = gen_value(1 + (int)rnd(5));
        check_roundtrip(v);
        char *text = dumps(v);
        l3_doc_t d;
        dt_parse(&d, text);
        check_lookups(v, d.buf);
        check_packed(v, text, d.buf);
        l3_doc_heap_free(&d);
        free(text);
        json_decref(v);
    }
    for (long i = 0; i < cases / 10 && t_failures < 20; i++)
        run_sequence(40);
    fprintf(stderr, "undo journal checked on %lu mutations\n", undo_checked);
    CHECK(undo_checked > (unsigned long)cases);
    fprintf(stderr, "packed form checked on %lu of %ld documents\n", packed_cases, cases);
    CHECK(packed_cases > (unsigned long)cases / 4);
    fprintf(stderr, "direct packing (l3_doc_pack_json) agreed on %lu documents\n", direct_cases);
    CHECK_EQ_INT(direct_cases, packed_cases);
    return t_done();
}
