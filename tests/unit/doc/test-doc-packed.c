/* SPDX-License-Identifier: MIT */
/*
 * test-doc-packed.c - the packed form of small documents (src/doc/packed.h).
 *
 * Layout: the 92-byte sample document packs into 112 bytes, byte for byte as packed.h
 * describes it; every scalar kind reads back; ints take the narrowest width.
 * Bounds: an object of 64 members packs and one of 65 does not (nor an array of 257, nor a
 * document past 4 KiB); the deepest allowed nesting packs, verifies and serialises.
 * Read only: every change of a packed document is refused (-EINVAL), its full form
 * (l3_doc_unpack, l3_doc_heap_adopt_any) takes it.
 * Direct: l3_doc_pack_json writes the same bytes as l3_doc_pack of the parsed text, across
 * the encoding's boundaries (two-byte counts and lengths, escapes that shorten a string past
 * one), and gives up where the full form must decide (duplicate names, bounds, bad text).
 * Hostile bytes: every single-byte change and every truncation of a set of packed documents
 * is either refused by verify() or reads without fault (the ASan build runs this), and
 * hand-made documents with each kind of damage are refused with a message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dt.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"
#include "packed.h"
#include "t.h"

#define SAMPLE "{\"id\":123456,\"name\":\"user123456\",\"email\":\"u123456@example.com\",\"tags\":[\"a\",\"b\"],\"score\":456}"

/* Pack JSON text into p (L3_DOC_PACK_MAX_BYTES); returns pack's result. */
static int pack_json(const char *json, uint8_t *p, size_t *ret_len)
{
    l3_doc_t d;
    dt_parse(&d, json);
    int rc = l3_doc_pack(d.buf, p, L3_DOC_PACK_MAX_BYTES, ret_len);
    l3_doc_heap_free(&d);
    return rc;
}

static void test_sample_layout(void)
{
    _Alignas(8) uint8_t p[L3_DOC_PACK_MAX_BYTES];
    size_t len = 0;
    CHECK_EQ_INT(pack_json(SAMPLE, p, &len), 0);
    CHECK_EQ_INT(len, 112);
    DT_CHECK_VERIFY(p);
    DT_CHECK_JSON(p, SAMPLE);
    /* the root object: tag, count 5, size; then "id" as an int32 */
    CHECK_EQ_INT(p[32], PT_OBJECT);
    CHECK_EQ_INT(p[33], 5);
    CHECK_EQ_INT(32 + 4 + l3_doc__rd_u16(p + 34), 108); /* the members end the value */
    CHECK_EQ_INT(p[36], 2);
    CHECK(memcmp(p + 37, "id", 2) == 0);
    CHECK_EQ_INT(p[39], PT_I32);
    CHECK_EQ_INT(p[44], 4);
    CHECK(memcmp(p + 45, "name", 4) == 0);
    CHECK_EQ_INT(p[49], PT_SHORT | 10);
    for (size_t z = 108; z < 112; z++)
        CHECK_EQ_INT(p[z], 0);
    DT_CHECK_PATH(p, "tags.1", "\"b\"");
    DT_CHECK_PATH(p, "/score", "456");
    uint32_t slot;
    CHECK_EQ_INT(l3_doc_lookup(p, "missing", 7, L3_DOC_PATH_AUTO, &slot), L3_ENOTFOUND);
    CHECK_EQ_INT(l3_doc_lookup(p, "tags.2", 6, L3_DOC_PATH_AUTO, &slot), L3_ENOTFOUND);
    CHECK_EQ_INT(l3_doc_lookup(p, "id.x", 4, L3_DOC_PATH_AUTO, &slot), L3_ENOTFOUND);
    l3_doc_breakdown_t b;
    l3_doc_breakdown(p, &b);
    CHECK_EQ_INT(b.other, 0);
    CHECK_EQ_INT(b.str_bytes, 31);
    CHECK_EQ_INT(b.p_names, 20);
}

static void test_scalars(void)
{
    static const char *docs[] = {
        "null", "true", "false", "0", "-1", "127", "-128", "128", "-129", "32767", "32768", "-2147483648",
        "2147483648", "-9223372036854775808", "9223372036854775807", "1.5", "-0.0", "1e300",
        "123456789012345678901234567890", "\"\"", "\"x\"",
        "\"0123456789012345678901234567890123456789012345678901234567890123\"", /* 64: no short tag */
        "{}", "[]", "[[],{},[[]]]", "{\"\":{\"\":[]}}", "{\"a\\u0000b\":\"\\u0000\",\"\\u00e9\":\"\\ud83d\\ude00\"}",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        _Alignas(8) uint8_t p[L3_DOC_PACK_MAX_BYTES];
        size_t len;
        CHECK_EQ_INT(pack_json(docs[i], p, &len), 0);
        DT_CHECK_VERIFY(p);
        l3_doc_t d;
        dt_parse(&d, docs[i]);
        char *a = dt_json(d.buf, L3_DOC_ROOT), *b = dt_json(p, L3_DOC_ROOT);
        CHECK_EQ_STR(b, a);
        l3_doc_val_t va, vb;
        l3_doc_val(d.buf, L3_DOC_ROOT, &va);
        l3_doc_val(p, L3_DOC_ROOT, &vb);
        CHECK_EQ_INT(vb.type, va.type);
        if (va.type == L3_DOC_INT)
            CHECK(va.i == vb.i);
        free(a);
        free(b);
        l3_doc_heap_free(&d);
    }
    /* narrowest width: 40 bytes (header + tag + payload, padded) for every int below 2^31 */
    _Alignas(8) uint8_t p[L3_DOC_PACK_MAX_BYTES];
    size_t len;
    CHECK_EQ_INT(pack_json("-5", p, &len), 0);
    CHECK_EQ_INT(p[32], PT_I8);
    CHECK_EQ_INT(pack_json("40000", p, &len), 0);
    CHECK_EQ_INT(p[32], PT_I32);
    CHECK_EQ_INT(pack_json("4000000000", p, &len), 0);
    CHECK_EQ_INT(p[32], PT_I64);
    CHECK_EQ_INT(len, 48);
}

/* {"k0":0,...} with n members, or [0,...] with n elements. */
static char *wide(unsigned n, bool object)
{
    char *s = malloc(16 * (size_t)n + 4), *o = s;
    *o++ = object ? '{' : '[';
    for (unsigned i = 0; i < n; i++)
        o += object ? sprintf(o, "%s\"k%u\":0", i ? "," : "", i) : sprintf(o, "%s0", i ? "," : "");
    *o++ = object ? '}' : ']';
    *o = 0;
    return s;
}

static void test_bounds(void)
{
    _Alignas(8) uint8_t p[L3_DOC_PACK_MAX_BYTES];
    size_t len;
    char *s = wide(L3_DOC_PACKED_MEMBERS, true);
    CHECK_EQ_INT(pack_json(s, p, &len), 0);
    DT_CHECK_VERIFY(p);
    DT_CHECK_PATH(p, "k63", "0");
    free(s);
    s = wide(L3_DOC_PACKED_MEMBERS + 1, true);
    CHECK_EQ_INT(pack_json(s, p, &len), L3_ETOOBIG);
    free(s);
    s = wide(L3_DOC_PACKED_ITEMS, false);
    CHECK_EQ_INT(pack_json(s, p, &len), 0);
    DT_CHECK_VERIFY(p);
    free(s);
    s = wide(L3_DOC_PACKED_ITEMS + 1, false);
    CHECK_EQ_INT(pack_json(s, p, &len), L3_ETOOBIG);
    free(s);
    /* past 4 KiB: a string of 5000 bytes */
    s = malloc(5004);
    s[0] = '"';
    memset(s + 1, 'x', 5000);
    strcpy(s + 5001, "\"");
    CHECK_EQ_INT(pack_json(s, p, &len), L3_ETOOBIG);
    free(s);
    /* too small a destination */
    l3_doc_t d;
    dt_parse(&d, SAMPLE);
    CHECK_EQ_INT(l3_doc_pack(d.buf, p, 100, &len), L3_ETOOBIG);
    l3_doc_heap_free(&d);
    /* the deepest nesting: L3_DOC_MAX_DEPTH arrays */
    s = malloc(2 * L3_DOC_MAX_DEPTH + 1);
    memset(s, '[', L3_DOC_MAX_DEPTH);
    memset(s + L3_DOC_MAX_DEPTH, ']', L3_DOC_MAX_DEPTH);
    s[2 * L3_DOC_MAX_DEPTH] = 0;
    CHECK_EQ_INT(pack_json(s, p, &len), 0);
    DT_CHECK_VERIFY(p);
    DT_CHECK_JSON(p, s);
    l3_doc_stats_t st;
    l3_doc_stats(p, &st);
    CHECK_EQ_INT(st.arrays, L3_DOC_MAX_DEPTH);
    free(s);
}

static void test_read_only(void)
{
    _Alignas(8) uint8_t p[L3_DOC_PACK_MAX_BYTES];
    size_t len;
    CHECK_EQ_INT(pack_json(SAMPLE, p, &len), 0);
    uint8_t *copy = malloc(len);
    memcpy(copy, p, len);
    l3_doc_t d;
    l3_doc_heap_adopt(&d, copy, len);
    uint32_t slot;
    CHECK_EQ_INT(l3_doc_lookup(d.buf, "score", 5, L3_DOC_PATH_AUTO, &slot), 0);
    CHECK_EQ_INT(l3_doc_slot_set_int(&d, slot, 1), -EINVAL);
    CHECK_EQ_INT(dt_set_int(&d, "score", 1), -EINVAL);
    CHECK_EQ_INT(dt_del(&d, "score"), -EINVAL);
    CHECK_EQ_INT(l3_doc_incr(&d, "score", 5, 0, 1, NULL), -EINVAL);
    CHECK_EQ_INT(l3_doc_merge_patch(&d, "{\"a\":1}", 7, NULL), -EINVAL);
    CHECK_EQ_INT(l3_doc_json_patch(&d, "[]", 2, NULL), -EINVAL);
    CHECK(memcmp(d.buf, p, len) == 0);
    /* its full form takes the change */
    CHECK_EQ_INT(l3_doc_heap_adopt_any(&d, d.buf, len), 0);
    CHECK(!l3_doc_is_packed(d.buf));
    CHECK_EQ_INT(L3_DOC_HEAP_DO(&d, l3_doc_incr(&d, "score", 5, 0, 1, NULL)), 0);
    DT_CHECK_PATH(d.buf, "score", "457");
    DT_CHECK_VERIFY(d.buf);
    CHECK_EQ_INT(l3_doc_pack(p, p, sizeof(p), &len), -EINVAL); /* packed already */
    l3_doc_heap_free(&d);
}

/* Read every value of a document verify() accepted (serialise, look up, iterate). */
static void read_all(const uint8_t *buf)
{
    l3_buf_t b = {0};
    CHECK_EQ_INT(l3_doc_to_json(buf, L3_DOC_ROOT, &b), 0);
    free(b.ptr);
    l3_doc_stats_t st;
    l3_doc_stats(buf, &st);
    l3_doc_breakdown_t bd;
    l3_doc_breakdown(buf, &bd);
    uint32_t pos = 0, klen, slot;
    const char *key;
    while (l3_doc_obj_next(buf, L3_DOC_ROOT, &pos, &key, &klen, &slot) == 1) {
        uint32_t s2;
        CHECK_EQ_INT(l3_doc_obj_find(buf, L3_DOC_ROOT, key, klen, &s2), 0);
    }
    uint32_t s3;
    (void)l3_doc_arr_at(buf, L3_DOC_ROOT, 1, &s3);
    uint8_t *u;
    size_t ulen;
    if (l3_doc_unpack(buf, &u, &ulen) == 0) {
        DT_CHECK_VERIFY(u);
        free(u);
    }
}

static void test_hostile_bytes(void)
{
    static const char *docs[] = {
        SAMPLE,
        "{\"a\":{\"b\":[1,2.5,{\"c\":\"d\"},null,true,false]},\"e\":123456789012345678901234567890,\"f\":\"\\u00e9\"}",
        "[[[[[]]]],{\"x\":{\"y\":{}}},\"0123456789012345678901234567890123456789012345678901234567890123456789\"]",
    };
    unsigned accepted = 0, refused = 0;
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        _Alignas(8) uint8_t p[L3_DOC_PACK_MAX_BYTES], m[L3_DOC_PACK_MAX_BYTES];
        size_t len;
        CHECK_EQ_INT(pack_json(docs[i], p, &len), 0);
        for (size_t at = 0; at < len; at++) {
            for (unsigned x = 1; x < 256; x += (x < 8 ? 1 : 37)) {
                memcpy(m, p, len);
                m[at] ^= (uint8_t)x;
                l3_doc_error_t e = {0};
                if (l3_doc_verify(m, len, &e) == 0) {
                    accepted++;
                    read_all(m);
                } else {
                    refused++;
                    CHECK(e.msg != NULL);
                }
            }
        }
        for (size_t cut = 0; cut < len; cut++)
            CHECK(l3_doc_verify(p, cut, NULL) != 0);
    }
    fprintf(stderr, "hostile bytes: %u changed documents refused, %u accepted and read\n", refused, accepted);
    CHECK(refused > 0 && accepted > 0); /* text bytes may change into other valid text */
}

/* A packed document from raw value bytes (header filled in, padded). */
static size_t raw(uint8_t *p, const void *value, size_t n)
{
    memset(p, 0, L3_DOC_PACK_MAX_BYTES);
    uint32_t magic = 0x4344334cu, used = (uint32_t)((32 + n + 7) & ~(size_t)7);
    uint16_t version = L3_DOC_PACKED_VERSION;
    used = used < 40 ? 40 : used;
    memcpy(p, &magic, 4);
    memcpy(p + 4, &version, 2);
    memcpy(p + 8, &used, 4);
    memcpy(p + 32, value, n);
    return used;
}

static void test_damage_refused(void)
{
    static const struct {
        const char *what;
        const char *bytes;
        size_t n;
    } bad[] = {
        {"unknown tag", "\x0c", 1},
        {"string past the end", "\x7f" "ab", 3},
        {"long length", "\x08\xff\xff\xff\xff\xff\x01", 7},
        {"bad UTF-8", "\x42\xc3\x28", 3},
        {"bad number text", "\x09\x02" "1.", 4},
        {"NaN", "\x07\x00\x00\x00\x00\x00\x00\xf8\x7f", 9},
        {"duplicate name", "\x0a\x02\x06\x00" "\x01" "a\x00" "\x01" "a\x00", 10},
        {"size too big", "\x0b\x01\x09\x00\x00", 5},
        {"size too small", "\x0b\x02\x01\x00\x00\x00", 6},
        {"count too large", "\x0b\x02\x01\x00\x00", 5},
        {"padding not zero", "\x00\x01", 2},
        {"too many members", "\x0a\x41\x00\x00", 4},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        _Alignas(8) uint8_t p[L3_DOC_PACK_MAX_BYTES];
        size_t used = raw(p, bad[i].bytes, bad[i].n);
        l3_doc_error_t e = {0};
        int rc = l3_doc_verify(p, used, &e);
        if (rc != L3_ECORRUPT)
            fprintf(stderr, "%s: accepted\n", bad[i].what);
        CHECK_EQ_INT(rc, L3_ECORRUPT);
        CHECK(e.msg != NULL);
    }
    /* a well-formed one by hand is accepted: {"a":[true]} */
    _Alignas(8) uint8_t p[L3_DOC_PACK_MAX_BYTES];
    size_t used = raw(p, "\x0a\x01\x07\x00\x01" "a\x0b\x01\x01\x00\x02", 11);
    DT_CHECK_VERIFY(p);
    DT_CHECK_JSON(p, "{\"a\":[true]}");
    CHECK_EQ_INT(used, 48);
    /* a seed, garbage or a used size past 4 KiB are refused */
    p[24] = 1;
    CHECK_EQ_INT(l3_doc_verify(p, 40, NULL), L3_ECORRUPT);
}

/* The direct packer agrees with pack(parse(json)) on json (both must pack). */
static void same_direct(const char *json)
{
    _Alignas(8) uint8_t a[L3_DOC_PACK_MAX_BYTES], b[L3_DOC_PACK_MAX_BYTES];
    size_t al = 0, bl = 0;
    CHECK_EQ_INT(pack_json(json, a, &al), 0);
    int rc = l3_doc_pack_json(json, strlen(json), NULL, b, sizeof(b), &bl);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(bl, al);
    if (rc == 0 && bl == al && memcmp(a, b, al) != 0)
        fprintf(stderr, "direct packing differs for %.80s\n", json);
    CHECK(bl == al && memcmp(a, b, al) == 0);
}

static void test_direct(void)
{
    same_direct(SAMPLE);
    for (unsigned n = 126; n <= 130; n++) { /* one- and two-byte element counts */
        char *s = wide(n, false);
        same_direct(s);
        free(s);
    }
    char *s = wide(L3_DOC_PACKED_ITEMS, false);
    same_direct(s);
    free(s);
    /* escapes that shorten a string below 64 bytes and names below 128 (one-byte headers) */
    char buf[1024], *o = buf;
    o += sprintf(o, "{\"");
    for (int i = 0; i < 120; i++)
        *o++ = 'n';
    o += sprintf(o, "\\u0041\\u0042\":\"");
    for (int i = 0; i < 58; i++)
        *o++ = 's';
    o += sprintf(o, "\\u0041\\u0042\\u0043\",\""); /* raw 76, decoded 61 */
    for (int i = 0; i < 125; i++)
        *o++ = 'm';
    o += sprintf(o, "\\u00e9\":[\"\\ud83d\\ude00\",\"x\\\"y\",-0.0,1e400,123456789012345678901234567890,-9223372036854775808]}");
    same_direct(buf);
    same_direct("[[[[[]]]],{},[{}],{\"a\":{\"b\":{}}}]");
    same_direct("\"\"");
    same_direct("  7  ");
    /* where it gives up: a duplicate name, a 65-member object, 257 elements, bad text, a limit */
    _Alignas(8) uint8_t q[L3_DOC_PACK_MAX_BYTES];
    size_t ql;
    CHECK(l3_doc_pack_json("{\"a\":1,\"b\":2,\"a\":3}", 19, NULL, q, sizeof(q), &ql) < 0);
    s = wide(L3_DOC_PACKED_MEMBERS + 1, true);
    CHECK(l3_doc_pack_json(s, strlen(s), NULL, q, sizeof(q), &ql) < 0);
    free(s);
    s = wide(L3_DOC_PACKED_ITEMS + 1, false);
    CHECK(l3_doc_pack_json(s, strlen(s), NULL, q, sizeof(q), &ql) < 0);
    free(s);
    CHECK(l3_doc_pack_json("{\"a\":}", 6, NULL, q, sizeof(q), &ql) < 0);
    CHECK(l3_doc_pack_json("[1,]", 4, NULL, q, sizeof(q), &ql) < 0);
    CHECK(l3_doc_pack_json("\"\\ud800\"", 8, NULL, q, sizeof(q), &ql) < 0);
    l3_doc_parse_opts_t small = {.max_bytes = 1024};
    CHECK(l3_doc_pack_json("[]", 2, &small, q, sizeof(q), &ql) < 0);
    l3_doc_parse_opts_t shallow = {.max_depth = 2};
    CHECK(l3_doc_pack_json("[[[]]]", 6, &shallow, q, sizeof(q), &ql) < 0);
    CHECK_EQ_INT(l3_doc_pack_json("[[]]", 4, &shallow, q, sizeof(q), &ql), 0);
}

int main(void)
{
    test_sample_layout();
    test_scalars();
    test_bounds();
    test_read_only();
    test_direct();
    test_hostile_bytes();
    test_damage_refused();
    return t_done();
}
