/* SPDX-License-Identifier: MIT */
/*
 * test-doc-verify.c - l3_doc_verify on hostile input. For a set of small documents (fresh
 * and after mutations, so with garbage and appended nodes): the original verifies; every
 * truncation is rejected; every byte at every offset is flipped (several masks) and verify
 * must either reject it or accept a buffer that every other function can then handle
 * (dt_exercise: reads, to_json, stats, compaction, writes on a copy). Meant to run under
 * ASan/UBSan (the 'unit' suite does in CI), with exact-size allocations so an over-read
 * is caught. Also random bytes behind a valid header. Single-threaded; no files.
 */
#include "dtex.h"
#include "dtop.h"

static unsigned long accepted_mutants, rejected_mutants;
static char mutant_desc[128]; /* what the current mutant is, for failure messages */

static void check_err(int rc, const l3_doc_error_t *err, size_t len)
{
    CHECK_EQ_INT(rc, L3_ECORRUPT);
    CHECK(err->msg != NULL);
    CHECK(err->offset <= len);
}

static void verify_buffer(const uint8_t *src, size_t len)
{
    uint8_t *b = NULL;
    if (posix_memalign((void **)&b, 8, len ? len : 8) != 0)
        exit(T_HARNESS_ERROR);
    memcpy(b, src, len);
    l3_doc_error_t err = {0};
    int rc = l3_doc_verify(b, len, &err);
    if (rc == 0) {
        accepted_mutants++;
        int bad = dt_exercise(b, len);
        if (bad) {
            fprintf(stderr, "  ^ on a mutant of %zu bytes accepted by verify: %s\n", len, mutant_desc);
            CHECK_EQ_INT(bad, 0);
        }
    } else {
        rejected_mutants++;
        if (err.offset > len)
            fprintf(stderr, "verify error offset %zu beyond the %zu-byte buffer (%s) on %s\n", err.offset, len,
                    err.msg ? err.msg : "?", mutant_desc);
        check_err(rc, &err, len);
        CHECK_EQ_INT(l3_doc_verify(b, len, NULL), rc); /* err is optional */
    }
    free(b);
}

static void torture(const uint8_t *doc, size_t size, int full)
{
    snprintf(mutant_desc, sizeof(mutant_desc), "the original");
    DT_CHECK_VERIFY(doc);
    CHECK_EQ_INT(dt_exercise(doc, size), 0);
    /* truncation at every length */
    for (size_t len = 0; len < size; len++) {
        uint8_t *b = NULL;
        if (posix_memalign((void **)&b, 8, len ? len : 8) != 0)
            exit(T_HARNESS_ERROR);
        memcpy(b, doc, len);
        l3_doc_error_t err = {0};
        int rc = l3_doc_verify(b, len, &err);
        if (rc == 0)
            fprintf(stderr, "verify accepted a %zu-byte doc truncated to %zu\n", size, len);
        check_err(rc, &err, len);
        free(b);
    }
    /* byte flips */
    static const uint8_t masks[] = {0x01, 0x80, 0xff, 0x04, 0x10, 0x40};
    size_t nmask = full ? sizeof(masks) : 3;
    uint8_t *m = malloc(size);
    for (size_t off = 0; off < size; off++) {
        for (size_t k = 0; k < nmask; k++) {
            memcpy(m, doc, size);
            m[off] ^= masks[k];
            snprintf(mutant_desc, sizeof(mutant_desc), "byte %zu ^= 0x%02x", off, masks[k]);
            verify_buffer(m, size);
        }
        memcpy(m, doc, size);
        m[off] = 0;
        snprintf(mutant_desc, sizeof(mutant_desc), "byte %zu = 0", off);
        verify_buffer(m, size);
    }
    /* 16-bit and 32-bit little-endian increments/decrements at every 4-byte offset
     * (off-by-one offsets and lengths are the classic way past a bounds check) */
    for (size_t off = 0; off + 4 <= size; off += 4) {
        for (int delta = -8; delta <= 8; delta += 1) {
            if (delta == 0 || (!full && delta % 4 != 1))
                continue;
            memcpy(m, doc, size);
            uint32_t w;
            memcpy(&w, m + off, 4);
            w += (uint32_t)delta;
            memcpy(m + off, &w, 4);
            snprintf(mutant_desc, sizeof(mutant_desc), "u32 at %zu += %d", off, delta);
            verify_buffer(m, size);
        }
    }
    free(m);
}

static uint8_t *doc_of(const char *json, size_t *ret_size)
{
    l3_doc_t d;
    dt_parse(&d, json);
    *ret_size = l3_doc_size(d.buf);
    return d.buf;
}

static void test_corruption(void)
{
    static const char *docs[] = {
        "null",
        "{}",
        "[]",
        "\"str\\u0000ing \xc3\xa9\"",
        "12345678901234567890123",
        "{\"a\":1,\"b\":[true,null,2.5,\"x\"],\"c\":{\"d\":\"e\"}}",
        "[1,[2,[3,[4,{\"k\":\"v\"}]]],-9223372036854775808,1e400]",
        "{\"k\\u0000\":\"\",\"\":{},\"long key with spaces\":[[],{}]}",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        size_t size;
        uint8_t *doc = doc_of(docs[i], &size);
        torture(doc, size, 1);
        free(doc);
    }
    /* documents that went through mutations: appended nodes, garbage, deleted members */
    l3_doc_t d;
    dt_parse(&d, "{\"a\":\"x\",\"b\":[1,2,3],\"c\":{\"d\":1}}");
    CHECK_EQ_INT(dt_set_str(&d, "/a", "a much longer string than before", 32), 0);
    CHECK_EQ_INT(dt_set_json(&d, "/b/1", "{\"new\":[null]}"), 0);
    CHECK_EQ_INT(dt_del(&d, "/c"), 0);
    CHECK_EQ_INT(dt_set_int(&d, "/e", 5), 0);
    l3_doc_set_lsn(&d, 12345);
    CHECK(l3_doc_garbage(d.buf) > 0);
    torture(d.buf, l3_doc_size(d.buf), 1);
    l3_doc_heap_free(&d);
    /* a bigger one, with fewer masks */
    size_t n = 0;
    char json[4096];
    n += (size_t)snprintf(json + n, sizeof(json) - n, "{");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "%s\"key%d\":%s", i ? "," : "", i,
                              i % 4 == 0   ? "[1,2]"
                              : i % 4 == 1 ? "\"value\""
                              : i % 4 == 2 ? "{\"x\":null}"
                                           : "3.25");
    snprintf(json + n, sizeof(json) - n, "}");
    size_t size;
    uint8_t *doc = doc_of(json, &size);
    torture(doc, size, 0);
    free(doc);
    /* a hashed object (entry table + order array) with tombstones, then grown */
    dt_parse(&d, "{\"h0\":0,\"h1\":1,\"h2\":2,\"h3\":3,\"h4\":4,\"h5\":5,\"h6\":6,\"h7\":7,\"h8\":8,"
                 "\"a long member name 9\":9}");
    CHECK_EQ_INT(dt_del(&d, "/h3"), 0);
    CHECK_EQ_INT(dt_del(&d, "/a long member name 9"), 0);
    CHECK_EQ_INT(dt_set_int(&d, "/h3", 33), 0); /* re-added after its tombstone */
    torture(d.buf, l3_doc_size(d.buf), 0);
    for (int i = 10; i < 24; i++) {
        char k[16];
        snprintf(k, sizeof(k), "/g%d", i);
        CHECK_EQ_INT(dt_set_int(&d, k, i), 0);
    }
    CHECK_EQ_INT(dt_del(&d, "/g12"), 0);
    torture(d.buf, l3_doc_size(d.buf), 0);
    l3_doc_heap_free(&d);
}

/* A sealed document carries a CRC-32C: every single-byte change outside the flags word
 * must be rejected. Any change through the API unseals, and the result verifies again. */
static void test_sealed(void)
{
    l3_doc_t d;
    dt_parse(&d, "{\"a\":1,\"b\":[true,null,2.5,\"x\"],\"c\":{\"d\":\"e\"},\"n\":123456789012345678901234}");
    CHECK_EQ_INT(dt_set_str(&d, "/c/d", "longer than before", 18), 0);
    l3_doc_seal(d.buf);
    size_t size = l3_doc_size(d.buf);
    DT_CHECK_VERIFY(d.buf);
    uint8_t *m = malloc(size);
    unsigned long accepted = 0;
    for (size_t off = 0; off < size; off++) {
        if (off == 6 || off == 7) /* dh_flags: clearing SEALED legitimately turns the check off */
            continue;
        for (int bit = 0; bit < 8; bit++) {
            memcpy(m, d.buf, size);
            m[off] ^= (uint8_t)(1u << bit);
            if (l3_doc_verify(m, size, NULL) == 0) {
                accepted++;
                if (accepted < 5)
                    fprintf(stderr, "sealed doc: flip of bit %d at offset %zu accepted\n", bit, off);
            }
        }
    }
    CHECK_EQ_INT(accepted, 0);
    free(m);
    /* a change unseals; the result verifies */
    CHECK_EQ_INT(dt_set_int(&d, "/a", 2), 0);
    DT_CHECK_VERIFY(d.buf);
    CHECK_EQ_INT(dt_set_str(&d, "/b/3", "y", 1), 0);
    DT_CHECK_VERIFY(d.buf);
    l3_doc_set_lsn(&d, 5);
    DT_CHECK_VERIFY(d.buf);
    /* sealing again, then the fast int path */
    l3_doc_seal(d.buf);
    uint32_t slot;
    CHECK_EQ_INT(l3_doc_lookup(d.buf, "/a", 2, L3_DOC_PATH_POINTER, &slot), 0);
    CHECK_EQ_INT(l3_doc_slot_set_int(&d, slot, 3), 0);
    DT_CHECK_VERIFY(d.buf);
    l3_doc_seal(d.buf);
    int64_t nv;
    CHECK_EQ_INT(l3_doc_incr(&d, "/a", 2, 0, 1, &nv), 0);
    DT_CHECK_VERIFY(d.buf);
    DT_CHECK_JSON(d.buf, "{\"a\":4,\"b\":[true,null,2.5,\"y\"],\"c\":{\"d\":\"longer than before\"},"
                         "\"n\":123456789012345678901234}");
    l3_doc_heap_free(&d);
}

static void test_random_bytes(void)
{
    uint64_t seed = t_seed();
    size_t size;
    uint8_t *doc = doc_of("{\"a\":[1,2,{\"b\":\"c\"}],\"d\":\"eeeeeeeeeeeeeeeeeeeeee\"}", &size);
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)(t_rand(&seed) % 256);
        uint8_t *b = malloc(len + 1);
        for (size_t k = 0; k < len; k++)
            b[k] = (uint8_t)t_rand(&seed);
        int mode = i % 4;
        if (mode >= 1) /* keep the header so the walk gets past the first checks */
            memcpy(b, doc, len < 32 ? len : 32);
        if (mode == 2) /* the real doc with a random tail of random bytes overwritten */
            memcpy(b, doc, len < size ? len : size);
        if (mode == 3 && len >= size) { /* the real doc with a few random bytes changed */
            memcpy(b, doc, size);
            len = size;
            for (int k = 0; k < 3; k++)
                b[t_rand(&seed) % size] = (uint8_t)t_rand(&seed);
        }
        snprintf(mutant_desc, sizeof(mutant_desc), "random bytes, case %d (mode %d)", i, mode);
        verify_buffer(b, len);
        free(b);
    }
    free(doc);
}

int main(void)
{
    test_corruption();
    test_sealed();
    test_random_bytes();
    fprintf(stderr, "mutants: %lu accepted by verify (and exercised), %lu rejected\n", accepted_mutants,
            rejected_mutants);
    CHECK(rejected_mutants > 0);
    return t_done();
}
