/* SPDX-License-Identifier: MIT */
/*
 * test-doc-lite3.c - one test per known weakness of the Lite3 format that L3KV's format
 * must not have: key order (insertion, not hash), integers beyond int64 and numbers that
 * do not round-trip as double (kept exactly), "\u0000" inside keys (length-delimited),
 * nesting (>= 512), entry count (no ~2M cap: 200k here, 10M with --entries 10000000 in
 * the 'slow' suite), longer-string overwrite (garbage counted and compacted; 1M updates
 * stay bounded), same-length overwrite (never grows the buffer).
 * Single-threaded; no files.
 */
#include "dtop.h"

/* Weakness 1: key order follows hashes. Ours: insertion order. */
static void test_key_order(void)
{
    uint64_t seed = t_seed();
    enum { N = 2000 };
    static char keys[N][24];
    size_t cap = N * 40 + 16, n = 0;
    char *json = malloc(cap);
    json[n++] = '{';
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "%016" PRIx64, t_rand(&seed));
        n += (size_t)snprintf(json + n, cap - n, "%s\"%s\":%d", i ? "," : "", keys[i], i);
    }
    json[n++] = '}';
    json[n] = 0;
    l3_doc_t d;
    dt_parse(&d, json);
    DT_CHECK_JSON(d.buf, json);
    /* iteration order too */
    uint32_t pos = 0, klen, slot;
    const char *key;
    int i = 0;
    while (l3_doc_obj_next(d.buf, L3_DOC_ROOT, &pos, &key, &klen, &slot) == 1) {
        if (i < N && (klen != 16 || memcmp(key, keys[i], 16) != 0)) {
            CHECK(0);
            break;
        }
        i++;
    }
    CHECK_EQ_INT(i, N);
    /* keys added later go after, in the order they were added; updates keep their place */
    CHECK_EQ_INT(dt_set_int(&d, "/zzz", 1), 0);
    CHECK_EQ_INT(dt_set_int(&d, "/aaa", 2), 0);
    char path[32];
    snprintf(path, sizeof(path), "/%s", keys[0]);
    CHECK_EQ_INT(dt_set_json(&d, path, "[\"updated\"]"), 0);
    char *out = dt_json(d.buf, L3_DOC_ROOT);
    size_t ol = strlen(out);
    const char *tail = ",\"zzz\":1,\"aaa\":2}";
    CHECK(ol > strlen(tail) && strcmp(out + ol - strlen(tail), tail) == 0);
    char head[128];
    snprintf(head, sizeof(head), "{\"%s\":[\"updated\"],\"%s\":1", keys[0], keys[1]);
    CHECK(strncmp(out, head, strlen(head)) == 0);
    free(out);
    l3_doc_heap_free(&d);
    free(json);
    /* a small readable case */
    dt_parse(&d, "{\"b\":1,\"a\":2,\"c\":3,\"B\":4,\"0\":5}");
    DT_CHECK_JSON(d.buf, "{\"b\":1,\"a\":2,\"c\":3,\"B\":4,\"0\":5}");
    l3_doc_heap_free(&d);
}

/* Weakness 2: integers beyond int64 silently become doubles. Ours: exact. */
static void test_exact_numbers(void)
{
    static const char *in = "{\"a\":12345678901234567890123,\"b\":0.1000000000000000055511151231257827,"
                            "\"c\":1e400,\"d\":-98765432109876543210,\"e\":18446744073709551615,"
                            "\"f\":9223372036854775808,\"g\":[1.00000000000000000001,-1e-400]}";
    l3_doc_t d;
    dt_parse(&d, in);
    char *out = dt_json(d.buf, L3_DOC_ROOT);
    CHECK_EQ_STR(out, in); /* kept as the same text, not merely the same value */
    free(out);
    l3_doc_val_t v;
    CHECK_EQ_INT(l3_doc_get(d.buf, "a", 1, L3_DOC_PATH_DOTTED, &v), 0);
    CHECK_EQ_INT(v.type, L3_DOC_BIGNUM);
    CHECK(v.str.len == 23 && memcmp(v.str.ptr, "12345678901234567890123", 23) == 0);
    CHECK_EQ_INT(l3_doc_get(d.buf, "b", 1, L3_DOC_PATH_DOTTED, &v), 0);
    CHECK_EQ_INT(v.type, L3_DOC_BIGNUM);
    CHECK_EQ_INT(l3_doc_get(d.buf, "c", 1, L3_DOC_PATH_DOTTED, &v), 0);
    CHECK_EQ_INT(v.type, L3_DOC_BIGNUM);
    /* also when set through the API, and after a compaction */
    CHECK_EQ_INT(dt_apply(&d, &OPSET("/h", 0, SBIG("-0.000000000000000000000000000000000000001234567890123456789")),
                          NULL),
                 0);
    CHECK_EQ_INT(dt_apply(&d, &OPJSON("/i", 0, "[340282366920938463463374607431768211456]"), NULL), 0);
    DT_CHECK_PATH(d.buf, "/h", "-0.000000000000000000000000000000000000001234567890123456789");
    DT_CHECK_PATH(d.buf, "/i/0", "340282366920938463463374607431768211456");
    size_t bound = l3_doc_compact_bound(d.buf), len;
    uint8_t *c = dt_aligned_copy(d.buf, 0, bound);
    CHECK_EQ_INT(l3_doc_compact(d.buf, c, bound, &len), 0);
    DT_CHECK_PATH(c, "/a", "12345678901234567890123");
    DT_CHECK_PATH(c, "/b", "0.1000000000000000055511151231257827");
    DT_CHECK_PATH(c, "/c", "1e400");
    free(c);
    l3_doc_heap_free(&d);
}

/* Weakness 3: "\u0000" inside a key truncates it. Ours: keys are length-delimited. */
static void test_nul_in_keys(void)
{
    static const char *in = "{\"a\\u0000b\":1,\"a\":2,\"a\\u0000c\":3,\"\\u0000\":4,\"a\\u0000\":5}";
    l3_doc_t d;
    dt_parse(&d, in);
    DT_CHECK_JSON(d.buf, in);
    l3_doc_val_t v;
    l3_doc_val(d.buf, L3_DOC_ROOT, &v);
    CHECK_EQ_INT(v.count, 5);
    static const struct {
        const char *k;
        size_t len;
        int64_t val;
    } want[] = {{"a\0b", 3, 1}, {"a", 1, 2}, {"a\0c", 3, 3}, {"\0", 1, 4}, {"a\0", 2, 5}};
    for (size_t i = 0; i < 5; i++) {
        uint32_t s;
        CHECK_EQ_INT(l3_doc_obj_find(d.buf, L3_DOC_ROOT, want[i].k, want[i].len, &s), 0);
        l3_doc_val(d.buf, s, &v);
        CHECK(v.type == L3_DOC_INT && v.i == want[i].val);
    }
    uint32_t pos = 0, klen, slot;
    const char *key;
    for (size_t i = 0; i < 5; i++) {
        CHECK_EQ_INT(l3_doc_obj_next(d.buf, L3_DOC_ROOT, &pos, &key, &klen, &slot), 1);
        CHECK(klen == want[i].len && memcmp(key, want[i].k, klen) == 0);
    }
    /* update through a pointer containing NUL */
    dt_op_t op = OPSET("/a\0b", 0, SINT(10));
    op.plen = 4;
    CHECK_EQ_INT(dt_apply(&d, &op, NULL), 0);
    op = OPSET("/a\0d", 0, SINT(11));
    op.plen = 4;
    CHECK_EQ_INT(dt_apply(&d, &op, NULL), 0);
    DT_CHECK_JSON(d.buf, "{\"a\\u0000b\":10,\"a\":2,\"a\\u0000c\":3,\"\\u0000\":4,\"a\\u0000\":5,\"a\\u0000d\":11}");
    /* duplicate detection is length-aware as well */
    l3_doc_heap_free(&d);
    dt_parse(&d, "{\"k\\u0000\":1,\"k\":2,\"k\\u0000\":3}");
    DT_CHECK_JSON(d.buf, "{\"k\\u0000\":3,\"k\":2}");
    l3_doc_heap_free(&d);
}

/* Weakness 4: nesting capped at 32. Ours: >= 512 by default, configurable. */
static void test_nesting(void)
{
    for (int depth = 32; depth <= 512; depth += 480) {
        size_t n = 0;
        char *s = malloc((size_t)depth * 8 + 16);
        for (int i = 0; i < depth; i++)
            n += (size_t)sprintf(s + n, i % 2 ? "[" : "{\"k\":");
        n += (size_t)sprintf(s + n, "\"bottom\"");
        for (int i = depth - 1; i >= 0; i--)
            s[n++] = i % 2 ? ']' : '}';
        s[n] = 0;
        l3_doc_t d;
        dt_parse(&d, s);
        DT_CHECK_VERIFY(d.buf);
        DT_CHECK_JSON(d.buf, s);
        /* change the bottom value through the full path */
        char *path = malloc((size_t)depth * 3 + 1);
        size_t pl = 0;
        for (int i = 0; i < depth; i++)
            pl += (size_t)sprintf(path + pl, i % 2 ? "/0" : "/k");
        CHECK_EQ_INT(dt_apply(&d, &OPSET(path, 0, SSTR("changed")), NULL), 0);
        DT_CHECK_PATH(d.buf, path, "\"changed\"");
        free(path);
        free(s);
        l3_doc_heap_free(&d);
    }
}

/* Weakness 5: ~2M entries per object/array, after which data becomes unreadable. Ours: no cap. */
static void test_many_entries(size_t n)
{
    l3_doc_t d = {0};
    CHECK_EQ_INT(l3_doc_heap_new(&d, 1 << 20), 0);
    l3_doc_error_t err;
    CHECK_EQ_INT(L3_DOC_HEAP_DO(&d, l3_doc_set_json(&d, "", 0, 0, "{\"o\":{},\"a\":[]}", 15, &err)), 0);
    uint32_t o, a;
    char key[32];
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof(key), "/o/k%zu", i);
        l3_doc_scalar_t s = SINT((int64_t)i * 3);
        /* grow only: compaction has its own test (test_insert_compaction_amortized) */
        int rc, rc2;
        while ((rc = l3_doc_set(&d, key, (size_t)kl, 0, &s, NULL)) == -ENOBUFS && l3_doc_heap_grow(&d) == 0)
            ;
        while ((rc2 = l3_doc_set(&d, "/a/-", 4, 0, &s, NULL)) == -ENOBUFS && l3_doc_heap_grow(&d) == 0)
            ;
        rc |= rc2;
        if (rc != 0 && bad++ < 5)
            fprintf(stderr, "entry %zu: rc %d\n", i, rc);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(l3_doc_lookup(d.buf, "/o", 2, L3_DOC_PATH_POINTER, &o), 0);
    CHECK_EQ_INT(l3_doc_lookup(d.buf, "/a", 2, L3_DOC_PATH_POINTER, &a), 0);
    l3_doc_val_t v;
    l3_doc_val(d.buf, o, &v);
    CHECK_EQ_INT(v.count, n);
    l3_doc_val(d.buf, a, &v);
    CHECK_EQ_INT(v.count, n);
    /* every entry readable by key and by index */
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof(key), "k%zu", i);
        uint32_t s1, s2;
        l3_doc_val_t v1, v2;
        if (l3_doc_obj_find(d.buf, o, key, (size_t)kl, &s1) != 0 || l3_doc_arr_at(d.buf, a, i, &s2) != 0) {
            bad++;
            continue;
        }
        l3_doc_val(d.buf, s1, &v1);
        l3_doc_val(d.buf, s2, &v2);
        if (v1.type != L3_DOC_INT || v1.i != (int64_t)i * 3 || v2.type != L3_DOC_INT || v2.i != (int64_t)i * 3)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* insertion order through iteration */
    uint32_t pos = 0, klen, slot;
    const char *k;
    size_t i = 0;
    bad = 0;
    while (l3_doc_obj_next(d.buf, o, &pos, &k, &klen, &slot) == 1) {
        int kl = snprintf(key, sizeof(key), "k%zu", i);
        if ((int)klen != kl || memcmp(k, key, klen) != 0)
            bad++;
        i++;
    }
    CHECK_EQ_INT(i, n);
    CHECK_EQ_INT(bad, 0);
    /* the whole thing verifies, compacts and serialises */
    DT_CHECK_VERIFY(d.buf);
    l3_doc_stats_t st;
    l3_doc_stats(d.buf, &st);
    CHECK_EQ_INT(st.scalars, 2 * n);
    size_t jl;
    char *json = dt_json_len(d.buf, L3_DOC_ROOT, &jl);
    CHECK(strncmp(json, "{\"o\":{\"k0\":0,\"k1\":3,", 20) == 0);
    char tail[64];
    snprintf(tail, sizeof(tail), ",%zu]}", (n - 1) * 3);
    CHECK(jl > strlen(tail) && strcmp(json + jl - strlen(tail), tail) == 0);
    fprintf(stderr, "%zu entries: document %zu bytes, JSON %zu bytes\n", n, l3_doc_size(d.buf), jl);
    free(json);
    /* delete up to 10000 keys spread over the object; the others are still readable */
    size_t step = n / 10000 > 2 ? n / 10000 : 2, deleted = 0;
    for (size_t j = 0; j < n; j += step) {
        int kl = snprintf(key, sizeof(key), "/o/k%zu", j);
        int rc;
        while ((rc = l3_doc_delete(&d, key, (size_t)kl, 0)) == -ENOBUFS && l3_doc_heap_grow(&d) == 0)
            ;
        if (rc != 0 && bad++ < 5)
            fprintf(stderr, "delete %s failed\n", key);
        deleted++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(l3_doc_lookup(d.buf, "/o", 2, L3_DOC_PATH_POINTER, &o), 0);
    l3_doc_val(d.buf, o, &v);
    CHECK_EQ_INT(v.count, n - deleted);
    for (size_t j = 0; j < n; j++) {
        int kl = snprintf(key, sizeof(key), "k%zu", j);
        uint32_t s1;
        int rc = l3_doc_obj_find(d.buf, o, key, (size_t)kl, &s1);
        if (rc != (j % step == 0 ? L3_ENOTFOUND : 0))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    l3_doc_heap_free(&d);
}

/*
 * Growing an object (or array) one member at a time through L3_DOC_HEAP_DO must stay
 * amortised O(1): compaction must not run on (nearly) every insert. A compaction that
 * trims an entry array to its count makes the next insert regrow it, which is garbage
 * again above the threshold, so every insert would rewrite the whole document (O(n^2)).
 */
static void test_insert_compaction_amortized(void)
{
    for (int arr = 0; arr <= 3; arr++) {
        /* 0/1: an object/array at the root; 2/3: nested one level down */
        static const char *docs[] = {"{}", "[]", "{\"o\":{}}", "{\"o\":[]}"};
        l3_doc_t d;
        dt_parse(&d, docs[arr]);
        unsigned compactions = 0;
        char key[32];
        enum { N = 20000 };
        for (int i = 0; i < N; i++) {
            const char *pre = arr >= 2 ? "/o" : "";
            int kl = arr % 2 ? snprintf(key, sizeof(key), "%s/-", pre) : snprintf(key, sizeof(key), "%s/k%d", pre, i);
            l3_doc_scalar_t s = SINT(i);
            int rc;
            while ((rc = l3_doc_set(&d, key, (size_t)kl, 0, &s, NULL)) == -ENOBUFS && l3_doc_heap_grow(&d) == 0)
                ;
            CHECK_EQ_INT(rc, 0);
            if (l3_doc_should_compact(d.buf)) {
                compactions++;
                CHECK_EQ_INT(l3_doc_heap_maybe_compact(&d), 0);
            }
            if (compactions > 200)
                break;
        }
        fprintf(stderr, "%s: %d members one by one: %u compactions%s\n", docs[arr], N, compactions,
                compactions > 200 ? " (stopped early)" : "");
        CHECK(compactions <= 64);
        l3_doc_heap_free(&d);
    }
}

/* Weakness 6: a string overwritten with a longer one leaks the old bytes forever. */
static void test_longer_overwrite(unsigned long updates)
{
    l3_doc_t d;
    dt_parse(&d, "{\"a\":\"x\",\"b\":\"y\"}");
    size_t used0 = l3_doc_size(d.buf);
    char v[64];
    memset(v, 'z', sizeof(v));
    CHECK_EQ_INT(dt_apply(&d, &OPSET("/a", 0, ((l3_doc_scalar_t){.type = L3_DOC_STRING, .str = {v, 40}})), NULL), 0);
    CHECK(l3_doc_garbage(d.buf) > 0);
    CHECK(l3_doc_size(d.buf) > used0);
    size_t bound = l3_doc_compact_bound(d.buf), len;
    uint8_t *c = dt_aligned_copy(d.buf, 0, bound);
    CHECK_EQ_INT(l3_doc_compact(d.buf, c, bound, &len), 0);
    CHECK_EQ_INT(l3_doc_garbage(c), 0);
    CHECK(len < l3_doc_size(d.buf));
    free(c);
    /* updated a million times, always longer than the slot, the document stays bounded */
    size_t max_used = 0, max_cap = 0;
    for (unsigned long i = 0; i < updates; i++) {
        size_t l = 1 + i % 64;
        l3_doc_scalar_t s = {.type = L3_DOC_STRING, .str = {v, l}};
        const char *p = (i & 1) ? "/a" : "/b";
        if (L3_DOC_HEAP_DO(&d, l3_doc_set(&d, p, 2, 0, &s, NULL)) != 0) {
            CHECK(0);
            break;
        }
        if (l3_doc_size(d.buf) > max_used)
            max_used = l3_doc_size(d.buf);
        if (d.cap > max_cap)
            max_cap = d.cap;
    }
    fprintf(stderr, "%lu longer-string updates: max used %zu, max cap %zu\n", updates, max_used, max_cap);
    CHECK(max_used < 16 * 1024);
    CHECK(max_cap < 128 * 1024);
    DT_CHECK_VERIFY(d.buf);
    l3_doc_heap_free(&d);
}

/* Weakness 7: an "in-place" same-length overwrite can still grow the buffer. Ours: never. */
static void test_same_length_overwrite(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"s\":\"abcdef\",\"i\":1,\"f\":1.5,\"b\":true,\"n\":null,\"arr\":[\"xy\",2],"
                 "\"o\":{\"deep\":\"0123456789abcdef0123456789\"}}");
    size_t used = l3_doc_size(d.buf), garbage = l3_doc_garbage(d.buf);
    /* run on an exact-capacity buffer: growing would have to return -ENOBUFS */
    l3_doc_t c = {.buf = dt_aligned_copy(d.buf, used, used), .cap = used};
    l3_doc_scalar_t s;
    for (int round = 0; round < 1000; round++) {
        char str[32];
        snprintf(str, sizeof(str), "%06d", round);
        s = (l3_doc_scalar_t){.type = L3_DOC_STRING, .str = {str, 6}};
        CHECK_EQ_INT(l3_doc_set(&c, "/s", 2, 0, &s, NULL), 0);
        s = (l3_doc_scalar_t){.type = L3_DOC_STRING, .str = {str, 2}};
        CHECK_EQ_INT(l3_doc_set(&c, "/arr/0", 6, 0, &s, NULL), 0);
        snprintf(str, sizeof(str), "%026d", round);
        s = (l3_doc_scalar_t){.type = L3_DOC_STRING, .str = {str, 26}};
        CHECK_EQ_INT(l3_doc_set(&c, "o.deep", 6, 0, &s, NULL), 0);
        CHECK_EQ_INT(l3_doc_set(&c, "/i", 2, 0, &SINT(round * 1000000007LL), NULL), 0);
        CHECK_EQ_INT(l3_doc_set(&c, "/arr/1", 6, 0, &SINT(-round), NULL), 0);
        CHECK_EQ_INT(l3_doc_set(&c, "/f", 2, 0, &SDBL(round / 7.0), NULL), 0);
        CHECK_EQ_INT(l3_doc_set(&c, "/b", 2, 0, &SBOOL(round & 1), NULL), 0);
        CHECK_EQ_INT(l3_doc_set(&c, "/n", 2, 0, &SNULL, NULL), 0);
        if (l3_doc_size(c.buf) != used || l3_doc_garbage(c.buf) != garbage) {
            CHECK(0);
            fprintf(stderr, "same-length overwrite grew the document: %zu -> %zu (garbage %zu -> %zu)\n", used,
                    l3_doc_size(c.buf), garbage, l3_doc_garbage(c.buf));
            break;
        }
    }
    DT_CHECK_JSON(c.buf, "{\"s\":\"000999\",\"i\":999000006993,\"f\":142.71428571428572,\"b\":true,\"n\":null,"
                         "\"arr\":[\"00\",-999],\"o\":{\"deep\":\"00000000000000000000000999\"}}");
    /* a shorter string fits its slot too */
    s = (l3_doc_scalar_t){.type = L3_DOC_STRING, .str = {"ab", 2}};
    CHECK_EQ_INT(l3_doc_set(&c, "/s", 2, 0, &s, NULL), 0);
    CHECK_EQ_INT(l3_doc_size(c.buf), used);
    /* and a following same-length-as-original write still fits (the slot keeps its size) */
    s = (l3_doc_scalar_t){.type = L3_DOC_STRING, .str = {"ABCDEF", 6}};
    CHECK_EQ_INT(l3_doc_set(&c, "/s", 2, 0, &s, NULL), 0);
    CHECK_EQ_INT(l3_doc_size(c.buf), used);
    DT_CHECK_VERIFY(c.buf);
    DT_CHECK_PATH(c.buf, "/s", "\"ABCDEF\"");
    free(c.buf);
    /* same-length overwrites are journaled like everything else */
    CHECK_EQ_INT(dt_apply(&d, &OPSET("/s", 0, SSTR("fedcba")), NULL), 0);
    CHECK_EQ_INT(l3_doc_size(d.buf), used);
    l3_doc_heap_free(&d);
}

int main(int argc, char **argv)
{
    size_t entries = 200000;
    unsigned long updates = 1000000;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--entries") == 0)
            entries = strtoull(argv[i + 1], NULL, 0);
        if (strcmp(argv[i], "--updates") == 0)
            updates = strtoul(argv[i + 1], NULL, 0);
    }
    if (entries > 1000000) { /* the slow run does only the big one */
        test_many_entries(entries);
        return t_done();
    }
    test_key_order();
    test_exact_numbers();
    test_nul_in_keys();
    test_nesting();
    test_insert_compaction_amortized();
    test_many_entries(entries);
    test_longer_overwrite(updates);
    test_same_length_overwrite();
    return t_done();
}
