/* SPDX-License-Identifier: MIT */
/*
 * test-doc-compact.c - garbage accounting and compaction: l3_doc_garbage,
 * l3_doc_should_compact, l3_doc_compact_bound, l3_doc_compact, l3_doc_heap_maybe_compact,
 * l3_doc_heap_new/adopt/grow/free. Content must survive compaction unchanged (JSON, key
 * order, LSN, slots found by path) while garbage drops to zero. Single-threaded; no files.
 */
#include "dtop.h"

static char *compact_check(const uint8_t *buf, size_t *ret_len)
{
    size_t bound = l3_doc_compact_bound(buf);
    size_t used = l3_doc_size(buf), garbage = l3_doc_garbage(buf);
    uint8_t *dst = dt_aligned_copy(buf, 0, bound);
    memset(dst, 0xee, bound);
    size_t len = 0;
    CHECK_EQ_INT(l3_doc_compact(buf, dst, bound, &len), 0);
    CHECK(len <= bound);
    CHECK_EQ_INT(l3_doc_size(dst), len);
    CHECK_EQ_INT(l3_doc_garbage(dst), 0);
    CHECK(len <= used - garbage + 64); /* garbage really went away */
    CHECK_EQ_INT(l3_doc_verify(dst, len, NULL), 0);
    CHECK(l3_doc_lsn(dst) == l3_doc_lsn(buf));
    CHECK(!l3_doc_should_compact(dst));
    char *a = dt_json(buf, L3_DOC_ROOT), *b = dt_json(dst, L3_DOC_ROOT);
    CHECK_EQ_STR(a, b); /* byte-identical, key order included */
    free(a);
    free(b);
    l3_doc_stats_t s1, s2;
    l3_doc_stats(buf, &s1);
    l3_doc_stats(dst, &s2);
    CHECK_EQ_INT(s1.objects, s2.objects);
    CHECK_EQ_INT(s1.arrays, s2.arrays);
    CHECK_EQ_INT(s1.scalars, s2.scalars);
    CHECK_EQ_INT(s1.max_depth, s2.max_depth);
    CHECK_EQ_INT(s2.garbage, 0);
    /* too small a destination: -ENOBUFS, not an overflow */
    if (len > 64) {
        uint8_t *tiny = dt_aligned_copy(buf, 0, 64);
        size_t tl = 0;
        CHECK_EQ_INT(l3_doc_compact(buf, tiny, 64, &tl), -ENOBUFS);
        free(tiny);
    }
    if (ret_len)
        *ret_len = len;
    return (char *)dst;
}

static void test_garbage_and_compact(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"keep\":\"k\",\"s\":\"short\",\"list\":[1,2,3],\"obj\":{\"x\":1}}");
    CHECK_EQ_INT(l3_doc_garbage(d.buf), 0);
    l3_doc_set_lsn(&d, 777);
    char big[300];
    memset(big, 'B', sizeof(big));
    size_t g0 = l3_doc_garbage(d.buf);
    /* a longer string is appended: old bytes become garbage */
    CHECK_EQ_INT(dt_apply(&d, &OPSET("/s", 0, ((l3_doc_scalar_t){.type = L3_DOC_STRING, .str = {big, 100}})), NULL),
                 0);
    size_t g1 = l3_doc_garbage(d.buf);
    CHECK(g1 > g0);
    CHECK_EQ_INT(dt_apply(&d, &OPSET("/s", 0, ((l3_doc_scalar_t){.type = L3_DOC_STRING, .str = {big, 300}})), NULL),
                 0);
    size_t g2 = l3_doc_garbage(d.buf);
    CHECK(g2 >= g1 + 100); /* the 100-byte string is garbage now */
    /* replacing a container: the whole subtree is garbage */
    CHECK_EQ_INT(dt_apply(&d, &OPSET("/obj", 0, SNULL), NULL), 0);
    CHECK(l3_doc_garbage(d.buf) > g2);
    CHECK_EQ_INT(dt_apply(&d, &OPDEL("/list", 0), NULL), 0);
    CHECK(l3_doc_garbage(d.buf) > g2);
    CHECK(l3_doc_garbage(d.buf) < l3_doc_size(d.buf));
    size_t len;
    uint8_t *c = (uint8_t *)compact_check(d.buf, &len);
    CHECK(len < l3_doc_size(d.buf));
    CHECK_EQ_INT(l3_doc_lsn(c), 777);
    /* the compacted copy is a normal document: it can be changed further */
    l3_doc_t dc;
    l3_doc_heap_adopt(&dc, c, len);
    dc.undo = NULL;
    CHECK_EQ_INT(dt_apply(&dc, &OPSET("/new", 0, SINT(5)), NULL), 0);
    char want[512];
    snprintf(want, sizeof(want), "{\"keep\":\"k\",\"s\":\"%.300s\",\"obj\":null,\"new\":5}", big);
    DT_CHECK_JSON(dc.buf, want);
    l3_doc_heap_free(&dc);
    l3_doc_heap_free(&d);

    /* compaction of documents with no garbage keeps them intact as well */
    static const char *docs[] = {"null", "[]", "{}", "\"x\"", "[1,[2,[3,[4]]],{\"a\":{\"b\":{}}}]",
                                 "{\"z\":1,\"y\":2,\"x\":[true,false,null,1.25,\"s\",123456789012345678901234]}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        dt_parse(&d, docs[i]);
        free(compact_check(d.buf, NULL));
        l3_doc_heap_free(&d);
    }
}

static void test_should_compact(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"s\":\"\",\"pad\":[]}");
    char val[1000];
    memset(val, 'x', sizeof(val));
    bool saw_true = false;
    for (int i = 1; i <= 200; i++) {
        l3_doc_scalar_t s = {.type = L3_DOC_STRING, .str = {val, (size_t)(i * 5 % 1000)}};
        int rc;
        while ((rc = l3_doc_set(&d, "/s", 2, 0, &s, NULL)) == -ENOBUFS)
            CHECK_EQ_INT(l3_doc_heap_grow(&d), 0);
        CHECK_EQ_INT(rc, 0);
        size_t used = l3_doc_size(d.buf), g = l3_doc_garbage(d.buf);
        bool want_true = g * 4 > used + 8 && g >= 4096 + 8;
        bool want_false = g * 4 + 8 < used || g + 8 < 4096;
        bool got = l3_doc_should_compact(d.buf);
        if (want_true)
            CHECK(got);
        if (want_false)
            CHECK(!got);
        if (got) {
            saw_true = true;
            /* maybe_compact drops the garbage and keeps content */
            char *before = dt_json(d.buf, L3_DOC_ROOT);
            CHECK_EQ_INT(l3_doc_heap_maybe_compact(&d), 0);
            CHECK_EQ_INT(l3_doc_garbage(d.buf), 0);
            CHECK(!l3_doc_should_compact(d.buf));
            DT_CHECK_JSON(d.buf, before);
            DT_CHECK_VERIFY(d.buf);
            free(before);
        } else {
            uint8_t *b = d.buf;
            size_t used0 = l3_doc_size(d.buf);
            CHECK_EQ_INT(l3_doc_heap_maybe_compact(&d), 0);
            CHECK(d.buf == b && l3_doc_size(d.buf) == used0);
        }
    }
    CHECK(saw_true);
    l3_doc_heap_free(&d);
}

static void test_heap_helpers(void)
{
    l3_doc_t d = {0};
    CHECK_EQ_INT(l3_doc_heap_new(&d, 100000), 0);
    CHECK(d.cap >= 100000);
    CHECK_EQ_INT((uintptr_t)d.buf % 8, 0);
    DT_CHECK_JSON(d.buf, "null");
    d.need = d.cap + 1;
    size_t cap0 = d.cap;
    CHECK_EQ_INT(l3_doc_heap_grow(&d), 0);
    CHECK(d.cap >= 2 * cap0); /* at least doubling */
    CHECK_EQ_INT((uintptr_t)d.buf % 8, 0);
    d.need = d.cap * 3;
    size_t want = d.need;
    CHECK_EQ_INT(l3_doc_heap_grow(&d), 0);
    CHECK(d.cap >= want);
    DT_CHECK_JSON(d.buf, "null");
    DT_CHECK_VERIFY(d.buf);
    l3_doc_heap_free(&d);
}

/* L3_DOC_HEAP_DO on a document that is overwritten with ever-changing sizes stays bounded. */
static void test_bounded_churn(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"id\":1,\"name\":\"n\",\"tags\":[\"a\",\"b\"],\"nested\":{\"v\":\"x\"}}");
    char val[512];
    memset(val, 'q', sizeof(val));
    size_t max_used = 0, max_cap = 0;
    uint64_t seed = 7;
    for (int i = 0; i < 100000; i++) {
        size_t len = (size_t)(t_rand(&seed) % 512);
        l3_doc_scalar_t s = {.type = L3_DOC_STRING, .str = {val, len}};
        const char *path = (i & 1) ? "/name" : "/nested/v";
        CHECK_EQ_INT(L3_DOC_HEAP_DO(&d, l3_doc_set(&d, path, strlen(path), 0, &s, NULL)), 0);
        if (i % 7 == 0) {
            l3_doc_error_t err;
            const char *j = "[\"a\",\"b\",{\"c\":[1,2,3]}]";
            CHECK_EQ_INT(L3_DOC_HEAP_DO(&d, l3_doc_set_json(&d, "/tags", 5, 0, j, strlen(j), &err)), 0);
        }
        size_t used = l3_doc_size(d.buf);
        if (used > max_used)
            max_used = used;
        if (d.cap > max_cap)
            max_cap = d.cap;
    }
    fprintf(stderr, "churn: max used %zu, max cap %zu, final used %zu garbage %zu\n", max_used, max_cap,
            l3_doc_size(d.buf), l3_doc_garbage(d.buf));
    CHECK(max_used < 32 * 1024);
    CHECK(max_cap < 256 * 1024);
    DT_CHECK_VERIFY(d.buf);
    l3_doc_heap_free(&d);
}

/* A full container of a document past a third of its limit: doubling its table in
 * appended space would pass the limit (L3_EDOCSIZE, grow_node set, nothing changed), a
 * compaction that gives it room takes the change; heap (L3_DOC_HEAP_DO) and planned. */
static void test_growth_near_limit(void)
{
    enum { N = 10000 };
    for (int arr = 0; arr < 2; arr++) {
        char *js = malloc(N * 24 + 16);
        size_t n = (size_t)sprintf(js, arr ? "[" : "{");
        for (int i = 0; i < N; i++)
            n += (size_t)(arr ? sprintf(js + n, "%s%d", i ? "," : "", i)
                              : sprintf(js + n, "%s\"m%d\":%d", i ? "," : "", i, i));
        n += (size_t)sprintf(js + n, arr ? "]" : "}");
        l3_doc_t d;
        dt_parse(&d, js);
        free(js);
        d.limit = arr ? 3 * l3_doc_size(d.buf) / 2 : 5 * l3_doc_size(d.buf) / 2;
        const char *path = arr ? "/-" : "/new";
        l3_doc_scalar_t v = {.type = L3_DOC_INT, .i = 7};
        size_t before = l3_doc_size(d.buf);
        CHECK_EQ_INT(l3_doc_set(&d, path, strlen(path), L3_DOC_SET_PATH_POINTER, &v, NULL), L3_EDOCSIZE);
        CHECK(d.grow_node != 0);
        CHECK_EQ_INT(l3_doc_size(d.buf), before); /* refused: nothing changed */
        /* the plan for a buffer the caller owns */
        l3_doc_t plan;
        size_t need = l3_doc_compact_plan(d.buf, &d, &plan);
        CHECK(need > 0 && need <= d.limit);
        CHECK_EQ_INT(plan.grow_node, d.grow_node);
        uint8_t *dst = dt_aligned_copy(d.buf, 0, d.limit);
        size_t len = 0;
        CHECK_EQ_INT(l3_doc_compact_planned(d.buf, &plan, false, dst, need - 1, &len), -ENOBUFS);
        CHECK_EQ_INT(l3_doc_compact_planned(d.buf, &plan, false, dst, d.limit, &len), 0);
        CHECK(len <= need);
        l3_doc_t c = {.buf = dst, .cap = d.limit, .limit = d.limit};
        CHECK_EQ_INT(l3_doc_set(&c, path, strlen(path), L3_DOC_SET_PATH_POINTER, &v, NULL), 0);
        DT_CHECK_VERIFY(c.buf);
        free(dst);
        /* the heap document: the same change through L3_DOC_HEAP_DO, then many more */
        int added = 0;
        for (int i = 0; i < 2000; i++) {
            char p2[32];
            snprintf(p2, sizeof p2, arr ? "/-" : "/new%d", i);
            int rc = L3_DOC_HEAP_DO(&d, l3_doc_set(&d, p2, strlen(p2), L3_DOC_SET_PATH_POINTER, &v, NULL));
            CHECK(rc == 0 || rc == L3_EDOCSIZE);
            if (rc)
                break;
            added++;
            CHECK(l3_doc_size(d.buf) <= d.limit);
        }
        CHECK(added >= 100);
        DT_CHECK_VERIFY(d.buf);
        l3_doc_val_t root;
        l3_doc_val(d.buf, L3_DOC_ROOT, &root);
        CHECK_EQ_INT(root.count, N + added);
        fprintf(stderr, "growth near the limit (%s): %d more, %zu of %zu bytes\n", arr ? "array" : "object", added,
                l3_doc_size(d.buf), d.limit);
        l3_doc_heap_free(&d);
    }
}

int main(void)
{
    test_garbage_and_compact();
    test_should_compact();
    test_heap_helpers();
    test_bounded_churn();
    test_growth_near_limit();
    return t_done();
}
