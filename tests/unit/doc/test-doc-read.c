/* SPDX-License-Identifier: MIT */
/*
 * test-doc-read.c - reading a document: l3_doc_lookup (JSON Pointer with ~0/~1 escapes,
 * dotted form, auto), l3_doc_get, l3_doc_val, l3_doc_obj_find, l3_doc_arr_at,
 * l3_doc_obj_next, l3_doc_size/garbage/lsn, l3_doc_init, l3_doc_stats, l3_doc_breakdown.
 * Single-threaded; no files.
 */
#include "dt.h"

static const char *DOC = "{\"a\":{\"b\":[10,{\"c\":\"deep\"},true]},"
                         "\"a/b\":1,\"m~n\":2,\"~1\":3,\"\":4,\"x.y\":5,\" \":6,"
                         "\"arr\":[null,false,1.5,\"s\",[],{}],"
                         "\"num\":7,\"big\":123456789012345678901234567890,"
                         "\"u\":\"\\u00e9\\u0000z\",\"10\":\"ten\"}";

static void lookup_expect(const uint8_t *buf, const char *path, int syntax, const char *expect)
{
    uint32_t slot = 0;
    int rc = l3_doc_lookup(buf, path, strlen(path), syntax, &slot);
    if (rc != 0) {
        fprintf(stderr, "lookup '%s' (syntax %d): rc %d\n", path, syntax, rc);
        CHECK(0);
        return;
    }
    char *out = dt_json(buf, slot);
    if (strcmp(out, expect) != 0)
        fprintf(stderr, "lookup '%s' (syntax %d): '%s' want '%s'\n", path, syntax, out, expect);
    CHECK_EQ_STR(out, expect);
    free(out);
}

static void lookup_fail(const uint8_t *buf, const char *path, int syntax, int want1, int want2)
{
    uint32_t slot = 12345;
    int rc = l3_doc_lookup(buf, path, strlen(path), syntax, &slot);
    if (rc != want1 && rc != want2)
        fprintf(stderr, "lookup '%s' (syntax %d): rc %d want %d/%d\n", path, syntax, rc, want1, want2);
    CHECK(rc == want1 || rc == want2);
    l3_doc_val_t v;
    int rc2 = l3_doc_get(buf, path, strlen(path), syntax, &v);
    CHECK_EQ_INT(rc2, rc);
}

static void test_pointer(const uint8_t *buf)
{
    const int P = L3_DOC_PATH_POINTER;
    char *all = dt_json(buf, L3_DOC_ROOT);
    lookup_expect(buf, "", P, all);
    free(all);
    lookup_expect(buf, "/a/b/0", P, "10");
    lookup_expect(buf, "/a/b/1/c", P, "\"deep\"");
    lookup_expect(buf, "/a/b/2", P, "true");
    lookup_expect(buf, "/a~1b", P, "1");
    lookup_expect(buf, "/m~0n", P, "2");
    lookup_expect(buf, "/~01", P, "3"); /* ~01 is "~1", not "/" */
    lookup_expect(buf, "/", P, "4");
    lookup_expect(buf, "/x.y", P, "5");
    lookup_expect(buf, "/ ", P, "6");
    lookup_expect(buf, "/arr/0", P, "null");
    lookup_expect(buf, "/arr/5", P, "{}");
    lookup_expect(buf, "/10", P, "\"ten\""); /* an object key that looks like an index */
    lookup_expect(buf, "/big", P, "123456789012345678901234567890");
    lookup_fail(buf, "/nope", P, L3_ENOTFOUND, L3_ENOTFOUND);
    lookup_fail(buf, "/a/nope", P, L3_ENOTFOUND, L3_ENOTFOUND);
    lookup_fail(buf, "/arr/6", P, L3_ENOTFOUND, L3_ENOTFOUND);
    lookup_fail(buf, "/arr/-", P, L3_ENOTFOUND, L3_EPATH);
    lookup_fail(buf, "/arr/01", P, L3_ENOTFOUND, L3_EPATH);
    lookup_fail(buf, "/arr/-1", P, L3_ENOTFOUND, L3_EPATH);
    lookup_fail(buf, "/arr/1x", P, L3_ENOTFOUND, L3_EPATH);
    lookup_fail(buf, "/arr/", P, L3_ENOTFOUND, L3_EPATH);
    lookup_fail(buf, "/arr/99999999999999999999999", P, L3_ENOTFOUND, L3_EPATH);
    lookup_fail(buf, "/num/x", P, L3_ENOTFOUND, L3_ETYPE);
    lookup_fail(buf, "/a/b/0/x", P, L3_ENOTFOUND, L3_ETYPE);
    lookup_fail(buf, "/m~2n", P, L3_EPATH, L3_EPATH);
    lookup_fail(buf, "/m~", P, L3_EPATH, L3_EPATH);
    lookup_fail(buf, "/~", P, L3_EPATH, L3_EPATH);
    lookup_fail(buf, "a", P, L3_EPATH, L3_EPATH);
    lookup_fail(buf, "a/b", P, L3_EPATH, L3_EPATH);
    lookup_expect(buf, "/a/b", P, "[10,{\"c\":\"deep\"},true]"); /* a -> b, not the key "a/b" */
    /* keys with NUL and non-ASCII bytes: the path is length-delimited */
    uint8_t pkey[] = "/u";
    uint32_t slot;
    CHECK_EQ_INT(l3_doc_lookup(buf, (const char *)pkey, 2, P, &slot), 0);
    l3_doc_val_t v;
    l3_doc_val(buf, slot, &v);
    CHECK(v.type == L3_DOC_STRING && v.str.len == 4 && memcmp(v.str.ptr, "\xc3\xa9\0z", 4) == 0);
    CHECK_EQ_INT(v.slot, slot);
}

static void test_dotted(const uint8_t *buf)
{
    const int D = L3_DOC_PATH_DOTTED, A = L3_DOC_PATH_AUTO;
    lookup_expect(buf, "a.b.0", D, "10");
    lookup_expect(buf, "a.b.1.c", D, "\"deep\"");
    lookup_expect(buf, "arr.3", D, "\"s\"");
    lookup_expect(buf, "a/b", D, "1"); /* '/' is an ordinary key character in the dotted form */
    lookup_expect(buf, "m~n", D, "2"); /* and so is '~' */
    lookup_expect(buf, "num", D, "7");
    lookup_expect(buf, "10", D, "\"ten\"");
    lookup_fail(buf, "a.nope", D, L3_ENOTFOUND, L3_ENOTFOUND);
    lookup_fail(buf, "arr.9", D, L3_ENOTFOUND, L3_ENOTFOUND);
    lookup_fail(buf, "num.x", D, L3_ENOTFOUND, L3_ETYPE);
    /* a malformed path is EPATH even where an earlier segment is missing */
    lookup_fail(buf, "a..b", D, L3_EPATH, L3_EPATH);
    lookup_fail(buf, "nope..b", D, L3_EPATH, L3_EPATH);
    lookup_fail(buf, "nope.b.", D, L3_EPATH, L3_EPATH);
    lookup_fail(buf, "num.x..y", D, L3_EPATH, L3_EPATH);
    lookup_fail(buf, ".a", D, L3_EPATH, L3_EPATH);
    lookup_fail(buf, "/nope/m~2n", L3_DOC_PATH_POINTER, L3_EPATH, L3_EPATH);
    /* auto: '/' first means pointer, otherwise dotted */
    lookup_expect(buf, "/a/b/0", A, "10");
    lookup_expect(buf, "a.b.0", A, "10");
    lookup_expect(buf, "a/b", A, "1");
    lookup_expect(buf, "/m~0n", A, "2");
    char *all = dt_json(buf, L3_DOC_ROOT);
    lookup_expect(buf, "", A, all);
    lookup_expect(buf, "", D, all);
    free(all);
    /* dotted on a non-container root */
    l3_doc_t d;
    dt_parse(&d, "42");
    lookup_fail(d.buf, "a", D, L3_ENOTFOUND, L3_ETYPE);
    lookup_fail(d.buf, "/0", L3_DOC_PATH_POINTER, L3_ENOTFOUND, L3_ETYPE);
    lookup_expect(d.buf, "", A, "42");
    l3_doc_heap_free(&d);
}

static void test_find_at_val(const uint8_t *buf)
{
    uint32_t a, b, s;
    CHECK_EQ_INT(l3_doc_obj_find(buf, L3_DOC_ROOT, "a", 1, &a), 0);
    CHECK_EQ_INT(l3_doc_obj_find(buf, a, "b", 1, &b), 0);
    l3_doc_val_t v;
    l3_doc_val(buf, b, &v);
    CHECK_EQ_INT(v.type, L3_DOC_ARRAY);
    CHECK_EQ_INT(v.count, 3);
    CHECK_EQ_INT(v.slot, b);
    CHECK_EQ_INT(l3_doc_arr_at(buf, b, 0, &s), 0);
    l3_doc_val(buf, s, &v);
    CHECK(v.type == L3_DOC_INT && v.i == 10);
    CHECK_EQ_INT(l3_doc_arr_at(buf, b, 2, &s), 0);
    l3_doc_val(buf, s, &v);
    CHECK(v.type == L3_DOC_BOOL && v.b == true);
    CHECK_EQ_INT(l3_doc_arr_at(buf, b, 3, &s), L3_ENOTFOUND);
    CHECK_EQ_INT(l3_doc_arr_at(buf, b, UINT64_MAX, &s), L3_ENOTFOUND);
    CHECK_EQ_INT(l3_doc_arr_at(buf, a, 0, &s), L3_ETYPE);
    CHECK_EQ_INT(l3_doc_obj_find(buf, b, "x", 1, &s), L3_ETYPE);
    CHECK_EQ_INT(l3_doc_obj_find(buf, a, "x", 1, &s), L3_ENOTFOUND);
    CHECK_EQ_INT(l3_doc_obj_find(buf, a, "bb", 2, &s), L3_ENOTFOUND);
    CHECK_EQ_INT(l3_doc_obj_find(buf, a, "", 0, &s), L3_ENOTFOUND);
    CHECK_EQ_INT(l3_doc_obj_find(buf, L3_DOC_ROOT, "", 0, &s), 0);
    l3_doc_val(buf, s, &v);
    CHECK(v.type == L3_DOC_INT && v.i == 4);
    CHECK_EQ_INT(l3_doc_obj_find(buf, L3_DOC_ROOT, "a/b", 3, &s), 0);
    /* key compare is by length too: "a" must not match "a/b" or "" */
    CHECK_EQ_INT(l3_doc_obj_find(buf, L3_DOC_ROOT, "a/b/", 4, &s), L3_ENOTFOUND);

    l3_doc_val(buf, L3_DOC_ROOT, &v);
    CHECK_EQ_INT(v.type, L3_DOC_OBJECT);
    CHECK_EQ_INT(v.count, 12);
    CHECK_EQ_INT(l3_doc_get(buf, "/arr", 4, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_ARRAY && v.count == 6);
    CHECK_EQ_INT(l3_doc_get(buf, "/arr/1", 6, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_BOOL && v.b == false);
    CHECK_EQ_INT(l3_doc_get(buf, "/arr/0", 6, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_NULL);
    CHECK_EQ_INT(l3_doc_get(buf, "/arr/2", 6, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_DOUBLE && v.d == 1.5);
    CHECK_EQ_INT(l3_doc_get(buf, "/arr/3", 6, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_STRING && v.str.len == 1 && v.str.ptr[0] == 's');
    CHECK_EQ_INT(l3_doc_get(buf, "/arr/4", 6, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_ARRAY && v.count == 0);
    CHECK_EQ_INT(l3_doc_get(buf, "/arr/5", 6, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_OBJECT && v.count == 0);
    CHECK_EQ_INT(l3_doc_get(buf, "/big", 4, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_BIGNUM && v.str.len == 30 &&
          memcmp(v.str.ptr, "123456789012345678901234567890", 30) == 0);
    CHECK_EQ_INT(l3_doc_get(buf, "num", 3, L3_DOC_PATH_DOTTED, &v), 0);
    CHECK(v.type == L3_DOC_INT && v.i == 7);
}

static void test_obj_next(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"z\":1,\"a\":2,\"m\":{\"q\":0},\"k\\u0000\":4}");
    static const char *keys[] = {"z", "a", "m", "k"};
    static const uint32_t klens[] = {1, 1, 1, 2};
    uint32_t pos = 0, klen, slot;
    const char *key;
    int n = 0, rc;
    while ((rc = l3_doc_obj_next(d.buf, L3_DOC_ROOT, &pos, &key, &klen, &slot)) == 1) {
        CHECK(n < 4);
        if (n >= 4)
            break;
        CHECK_EQ_INT(klen, klens[n]);
        CHECK(memcmp(key, keys[n], klens[n]) == 0);
        uint32_t s2;
        CHECK_EQ_INT(l3_doc_obj_find(d.buf, L3_DOC_ROOT, key, klen, &s2), 0);
        CHECK_EQ_INT(s2, slot);
        n++;
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(n, 4);
    /* again at the end: still 0 */
    CHECK_EQ_INT(l3_doc_obj_next(d.buf, L3_DOC_ROOT, &pos, &key, &klen, &slot), 0);
    /* empty object, non-object */
    uint32_t m;
    CHECK_EQ_INT(l3_doc_obj_find(d.buf, L3_DOC_ROOT, "m", 1, &m), 0);
    pos = 0;
    CHECK_EQ_INT(l3_doc_obj_next(d.buf, m, &pos, &key, &klen, &slot), 1);
    CHECK_EQ_INT(l3_doc_obj_next(d.buf, m, &pos, &key, &klen, &slot), 0);
    uint32_t z;
    CHECK_EQ_INT(l3_doc_obj_find(d.buf, L3_DOC_ROOT, "z", 1, &z), 0);
    pos = 0;
    CHECK_EQ_INT(l3_doc_obj_next(d.buf, z, &pos, &key, &klen, &slot), L3_ETYPE);
    /* deleted members are skipped, re-added ones come last */
    CHECK_EQ_INT(dt_del(&d, "/a"), 0);
    CHECK_EQ_INT(dt_set_int(&d, "/a", 9), 0);
    CHECK_EQ_INT(dt_del(&d, "/m"), 0);
    pos = 0;
    const char *order[] = {"z", "k", "a"};
    n = 0;
    while ((rc = l3_doc_obj_next(d.buf, L3_DOC_ROOT, &pos, &key, &klen, &slot)) == 1) {
        if (n < 3)
            CHECK(key[0] == order[n][0]);
        n++;
    }
    CHECK_EQ_INT(n, 3);
    l3_doc_heap_free(&d);

    dt_parse(&d, "{}");
    pos = 0;
    CHECK_EQ_INT(l3_doc_obj_next(d.buf, L3_DOC_ROOT, &pos, &key, &klen, &slot), 0);
    l3_doc_heap_free(&d);
}

static void test_init_and_header(void)
{
    l3_doc_t d = {0};
    CHECK_EQ_INT(l3_doc_heap_new(&d, 0), 0);
    CHECK(d.buf != NULL && d.cap >= l3_doc_size(d.buf));
    DT_CHECK_JSON(d.buf, "null");
    DT_CHECK_VERIFY(d.buf);
    CHECK_EQ_INT(l3_doc_garbage(d.buf), 0);
    CHECK_EQ_INT(l3_doc_lsn(d.buf), 0);
    l3_doc_set_lsn(&d, 0x123456789abcdefULL);
    CHECK(l3_doc_lsn(d.buf) == 0x123456789abcdefULL);
    DT_CHECK_VERIFY(d.buf);
    l3_doc_heap_free(&d);

    /* init into a caller buffer: too small -> -ENOBUFS with need; large enough -> 0 */
    static _Alignas(8) uint8_t small[8];
    l3_doc_t c = {.buf = small, .cap = sizeof(small)};
    CHECK_EQ_INT(l3_doc_init(&c), -ENOBUFS);
    CHECK(c.need > sizeof(small));
    size_t need = c.need;
    uint8_t *big = aligned_alloc(8, (need + 7) / 8 * 8);
    memset(big, 0xa5, need);
    c.buf = big;
    c.cap = need;
    CHECK_EQ_INT(l3_doc_init(&c), 0);
    CHECK(l3_doc_size(big) <= need);
    CHECK(l3_doc_size(big) >= L3_DOC_ROOT);
    CHECK_EQ_INT(l3_doc_verify(big, need, NULL), 0);
    DT_CHECK_JSON(big, "null");
    free(big);
}

static void test_stats(void)
{
    l3_doc_t d;
    l3_doc_stats_t st;
    dt_parse(&d, "{\"a\":[1,2,{\"b\":\"x\"}],\"c\":null,\"d\":{}}");
    l3_doc_stats(d.buf, &st);
    CHECK_EQ_INT(st.objects, 3);
    CHECK_EQ_INT(st.arrays, 1);
    CHECK_EQ_INT(st.scalars, 4);
    CHECK(st.max_depth == 2 || st.max_depth == 3);
    CHECK_EQ_INT(st.used, l3_doc_size(d.buf));
    CHECK_EQ_INT(st.garbage, l3_doc_garbage(d.buf));
    l3_doc_heap_free(&d);

    dt_parse(&d, "[[[]]]");
    l3_doc_stats(d.buf, &st);
    CHECK_EQ_INT(st.arrays, 3);
    CHECK_EQ_INT(st.objects, 0);
    CHECK_EQ_INT(st.scalars, 0);
    CHECK_EQ_INT(st.max_depth, 2);
    l3_doc_heap_free(&d);

    dt_parse(&d, "\"s\"");
    l3_doc_stats(d.buf, &st);
    CHECK_EQ_INT(st.arrays + st.objects, 0);
    CHECK_EQ_INT(st.scalars, 1);
    CHECK_EQ_INT(st.max_depth, 0);
    CHECK_EQ_INT(st.garbage, 0);
    l3_doc_heap_free(&d);

    /* after deleting, the counts follow */
    dt_parse(&d, "{\"a\":[1,2,3],\"b\":{\"c\":[true]}}");
    CHECK_EQ_INT(dt_del(&d, "/b"), 0);
    l3_doc_stats(d.buf, &st);
    CHECK_EQ_INT(st.objects, 1);
    CHECK_EQ_INT(st.arrays, 1);
    CHECK_EQ_INT(st.scalars, 3);
    CHECK_EQ_INT(st.used, l3_doc_size(d.buf));
    CHECK_EQ_INT(st.garbage, l3_doc_garbage(d.buf));
    l3_doc_heap_free(&d);
}

/* Sum of every part of a breakdown but `other` and `used`. */
static size_t breakdown_sum(const l3_doc_breakdown_t *b)
{
    return b->header + b->root + b->obj_nodes + b->entries + b->entry_slack + b->order + b->arr_nodes +
           b->items + b->item_slack + b->str_heads + b->str_bytes + b->str_pad + b->names + b->name_pad +
           b->garbage;
}

/* Expected values below come from the documented layout (src/doc/format.h): header 32,
 * slot 16, object node 24, entry 32 (names up to 12 bytes inline), array node 16, string
 * block 8 + text padded to 8, objects of more than 8 members hashed in a power-of-two table
 * of at least twice their capacity (minimum 16) plus a uint32 order array padded to 8. */
static void test_breakdown(void)
{
    l3_doc_t d;
    l3_doc_breakdown_t b;
    /* small object, a 20-byte name, strings of 5, 1 and 2 bytes, an array of 2 */
    dt_parse(&d, "{\"id\":1,\"a_member_name_longer\":\"hello\",\"t\":[\"a\",\"bc\"],\"n\":null}");
    l3_doc_breakdown(d.buf, &b);
    CHECK_EQ_INT(b.header, 32);
    CHECK_EQ_INT(b.root, 16);
    CHECK_EQ_INT(b.obj_nodes, 24);
    CHECK_EQ_INT(b.entries, 4 * 32);
    CHECK_EQ_INT(b.entry_slack, 0);
    CHECK_EQ_INT(b.order, 0);
    CHECK_EQ_INT(b.arr_nodes, 16);
    CHECK_EQ_INT(b.items, 2 * 16);
    CHECK_EQ_INT(b.item_slack, 0);
    CHECK_EQ_INT(b.str_heads, 3 * 8);
    CHECK_EQ_INT(b.str_bytes, 5 + 1 + 2);
    CHECK_EQ_INT(b.str_pad, 3 + 7 + 6);
    CHECK_EQ_INT(b.names, 20);
    CHECK_EQ_INT(b.name_pad, 4);
    CHECK_EQ_INT(b.garbage, 0);
    CHECK_EQ_INT(b.other, 0);
    CHECK_EQ_INT(b.used, l3_doc_size(d.buf));
    CHECK_EQ_INT(breakdown_sum(&b), l3_doc_size(d.buf));
    CHECK_EQ_INT(l3_doc_size(d.buf), 32 + 16 + 24 + 128 + 16 + 32 + 24 + 8 + 16 + 20 + 4);

    /* a deleted member leaves a tombstone: its entry moves to entry_slack */
    CHECK_EQ_INT(dt_del(&d, "/n"), 0);
    l3_doc_breakdown(d.buf, &b);
    CHECK_EQ_INT(b.entries, 3 * 32);
    CHECK_EQ_INT(b.entry_slack, 32);
    CHECK_EQ_INT(b.garbage, l3_doc_garbage(d.buf));
    CHECK_EQ_INT(b.other, 0);
    CHECK_EQ_INT(breakdown_sum(&b), l3_doc_size(d.buf));
    l3_doc_heap_free(&d);

    /* 9 members: hashed, table of 9 + 9/4 + 1 = 12 entries (load < 0.8), order array of 9
     * uint32 padded to 40 */
    dt_parse(&d, "{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8}");
    l3_doc_breakdown(d.buf, &b);
    CHECK_EQ_INT(b.obj_nodes, 24);
    CHECK_EQ_INT(b.entries, 9 * 32);
    CHECK_EQ_INT(b.entry_slack, (12 - 9) * 32);
    CHECK_EQ_INT(b.order, 40);
    CHECK_EQ_INT(b.str_heads + b.str_bytes + b.str_pad + b.names + b.arr_nodes + b.items, 0);
    CHECK_EQ_INT(b.other, 0);
    CHECK_EQ_INT(breakdown_sum(&b), l3_doc_size(d.buf));
    CHECK_EQ_INT(l3_doc_size(d.buf), 48 + 24 + 12 * 32 + 40);
    l3_doc_heap_free(&d);
}

int main(void)
{
    l3_doc_t d;
    dt_parse(&d, DOC);
    DT_CHECK_VERIFY(d.buf);
    test_pointer(d.buf);
    test_dotted(d.buf);
    test_find_at_val(d.buf);
    l3_doc_heap_free(&d);
    test_obj_next();
    test_init_and_header();
    test_stats();
    test_breakdown();
    return t_done();
}
