/* SPDX-License-Identifier: MIT */
/*
 * test-wal-record.c - record and segment header codecs: byte layout against wal.h, CRC
 * against an independent bitwise CRC-32C, round trips, every single-bit corruption, stale
 * salt, truncation, hostile lengths.
 */
#include "l3kv/error.h"
#include "walt.h"

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

static void test_layout(void)
{
    uint8_t buf[256];
    memset(buf, 0xAA, sizeof buf);
    l3_wal_rec_t rec = {.op = L3_WALOP_SET,
                        .lsn = 0x0102030405060708ull,
                        .key = "abc",
                        .klen = 3,
                        .payload = "hello",
                        .plen = 5};
    int64_t n = l3_wal_rec_encode(buf, sizeof buf, &rec, 0x1122334455667788ull);
    /* 32 header + 8 key/payload -> 40, aligned 40, + 8 salt = 48 */
    CHECK_EQ_INT(n, 48);
    CHECK_EQ_INT(l3_wal_rec_size(3, 5), 48);
    CHECK_EQ_INT(ld32(buf), 48);
    CHECK_EQ_INT(buf[8], 0x4C);
    CHECK_EQ_INT(buf[9], 0x57);
    CHECK_EQ_INT(buf[10], L3_WALOP_SET);
    CHECK_EQ_INT(buf[11], 0);
    CHECK_EQ_INT(ld32(buf + 12), 3);
    CHECK_EQ_INT(ld32(buf + 16), 5);
    CHECK_EQ_INT(ld32(buf + 20), 0);
    CHECK(ld64(buf + 24) == 0x0102030405060708ull);
    CHECK(memcmp(buf + 32, "abchello", 8) == 0);
    CHECK(ld64(buf + 40) == 0x1122334455667788ull);
    CHECK_EQ_INT(ld32(buf + 4), walt_crc32c(buf + 8, 40));
    CHECK_EQ_INT(buf[48], 0xAA); /* nothing written past the record */

    /* padding is zero */
    rec.plen = 4;
    n = l3_wal_rec_encode(buf, sizeof buf, &rec, 7);
    CHECK_EQ_INT(n, 48);
    CHECK_EQ_INT(buf[39], 0);
    CHECK_EQ_INT(ld32(buf + 4), walt_crc32c(buf + 8, 40));

    /* empty key and payload: the minimum */
    l3_wal_rec_t del = {.op = L3_WALOP_DELETE, .lsn = 9};
    CHECK_EQ_INT(l3_wal_rec_encode(buf, sizeof buf, &del, 1), L3_WAL_REC_MIN);
    /* too small a buffer, bad op */
    CHECK_EQ_INT(l3_wal_rec_encode(buf, 47, &rec, 1), -EMSGSIZE);
    l3_wal_rec_t bad = rec;
    bad.op = L3_WALOP_MAX;
    CHECK_EQ_INT(l3_wal_rec_encode(buf, sizeof buf, &bad, 1), -EINVAL);
    bad.op = L3_WALOP_NONE;
    CHECK_EQ_INT(l3_wal_rec_encode(buf, sizeof buf, &bad, 1), -EINVAL);
}

static void test_roundtrip(uint64_t *seed)
{
    static uint8_t key[300], pay[5000], buf[6000];
    for (int it = 0; it < 2000; it++) {
        uint32_t klen = (uint32_t)(t_rand(seed) % 300), plen = (uint32_t)(t_rand(seed) % 5000);
        for (uint32_t i = 0; i < klen; i++)
            key[i] = (uint8_t)t_rand(seed);
        for (uint32_t i = 0; i < plen; i++)
            pay[i] = (uint8_t)t_rand(seed);
        uint64_t salt = t_rand(seed), lsn = t_rand(seed);
        uint8_t op = (uint8_t)(1 + t_rand(seed) % (L3_WALOP_MAX - 1));
        l3_wal_rec_t rec = {.op = op, .lsn = lsn, .key = key, .klen = klen, .payload = pay, .plen = plen};
        int64_t n = l3_wal_rec_encode(buf, sizeof buf, &rec, salt);
        CHECK(n > 0 && n % 8 == 0 && (uint64_t)n == l3_wal_rec_size(klen, plen));
        CHECK((uint64_t)n - 8 - 32 - klen - plen < 8);
        l3_wal_rec_t out;
        CHECK_EQ_INT(l3_wal_rec_decode(buf, sizeof buf, salt, &out), n);
        CHECK(out.op == op && out.lsn == lsn && out.klen == klen && out.plen == plen);
        CHECK(memcmp(out.key, key, klen) == 0 && memcmp(out.payload, pay, plen) == 0);
        CHECK_EQ_INT(l3_wal_rec_decode(buf, sizeof buf, salt ^ 1, &out), -ESTALE);
        CHECK_EQ_INT(l3_wal_rec_decode(buf, (size_t)n - 1, salt, &out), -EBADMSG);
    }
}

/* every single-bit flip of a record is detected (never decoded as valid) */
static void test_bitflips(void)
{
    uint8_t buf[128];
    l3_wal_rec_t rec = {
        .op = L3_WALOP_PUT, .lsn = 77, .key = "key-1", .klen = 5, .payload = "{\"a\":1}", .plen = 7};
    int64_t n = l3_wal_rec_encode(buf, sizeof buf, &rec, 0xfeed);
    CHECK(n > 0);
    int corrupt = 0, badmsg = 0, stale = 0;
    for (int64_t i = 0; i < n * 8; i++) {
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        l3_wal_rec_t out;
        int64_t rc = l3_wal_rec_decode(buf, sizeof buf, 0xfeed, &out);
        CHECK(rc < 0);
        corrupt += rc == L3_ECORRUPT;
        badmsg += rc == -EBADMSG || rc == -ENODATA;
        stale += rc == -ESTALE;
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    CHECK(corrupt > 0 && badmsg > 0);
    CHECK_EQ_INT(stale, 0); /* a salt flip breaks the CRC first */
    CHECK_EQ_INT(l3_wal_rec_decode(buf, sizeof buf, 0xfeed, NULL), n);
}

static void test_hostile(void)
{
    uint8_t buf[128];
    memset(buf, 0, sizeof buf);
    CHECK_EQ_INT(l3_wal_rec_decode(buf, sizeof buf, 0, NULL), -ENODATA); /* zero length: end */
    CHECK_EQ_INT(l3_wal_rec_decode(buf, 4, 0, NULL), -ENODATA);
    l3_wal_rec_t rec = {.op = L3_WALOP_PUT, .lsn = 1, .key = "k", .klen = 1, .payload = "v", .plen = 1};
    int64_t n = l3_wal_rec_encode(buf, sizeof buf, &rec, 5);
    CHECK_EQ_INT(n, 48);
    uint8_t copy[128];
    /* huge klen/plen that would overflow 32-bit arithmetic */
    memcpy(copy, buf, sizeof copy);
    copy[12] = copy[13] = copy[14] = copy[15] = 0xff;
    CHECK_EQ_INT(l3_wal_rec_decode(copy, sizeof copy, 5, NULL), -EBADMSG);
    memcpy(copy, buf, sizeof copy);
    copy[16] = copy[17] = copy[18] = copy[19] = 0xff;
    CHECK_EQ_INT(l3_wal_rec_decode(copy, sizeof copy, 5, NULL), -EBADMSG);
    /* length not a multiple of 8, too small, larger than available */
    memcpy(copy, buf, sizeof copy);
    copy[0] = 44;
    CHECK_EQ_INT(l3_wal_rec_decode(copy, sizeof copy, 5, NULL), -EBADMSG);
    copy[0] = 32;
    CHECK_EQ_INT(l3_wal_rec_decode(copy, sizeof copy, 5, NULL), -EBADMSG);
    copy[0] = 0;
    copy[1] = 1; /* 256 > 128 available */
    CHECK_EQ_INT(l3_wal_rec_decode(copy, sizeof copy, 5, NULL), -EBADMSG);
    /* consistent length but wrong klen/plen split still needs len == size(klen, plen) */
    memcpy(copy, buf, sizeof copy);
    copy[16] = 9; /* plen 9 -> size 56 != 48 */
    CHECK_EQ_INT(l3_wal_rec_decode(copy, sizeof copy, 5, NULL), -EBADMSG);
}

static void test_seg_hdr(void)
{
    uint8_t h[64];
    l3_wal_seg_hdr_t in = {.salt = 0xdeadbeefcafef00dull, .seq = 42, .ctime_ns = 123456789, .ring_pos = 4096};
    l3_wal_seg_hdr_encode(h, &in);
    CHECK(memcmp(h, "L3KVWAL1", 8) == 0);
    CHECK_EQ_INT(ld32(h + 8), 4);
    CHECK_EQ_INT(ld32(h + 12), 64);
    CHECK(ld64(h + 16) == in.salt);
    CHECK(ld64(h + 24) == 42);
    CHECK_EQ_INT(ld32(h + 60), walt_crc32c(h, 60));
    l3_wal_seg_hdr_t out;
    CHECK_EQ_INT(l3_wal_seg_hdr_decode(h, 64, &out), 0);
    CHECK(out.salt == in.salt && out.seq == 42 && out.ctime_ns == 123456789 && out.ring_pos == 4096);
    CHECK_EQ_INT(l3_wal_seg_hdr_decode(h, 63, &out), -EBADMSG);
    h[20] ^= 1;
    CHECK_EQ_INT(l3_wal_seg_hdr_decode(h, 64, &out), L3_ECORRUPT);
    h[20] ^= 1;
    h[0] = 'X';
    CHECK_EQ_INT(l3_wal_seg_hdr_decode(h, 64, &out), -EBADMSG);
    /* version 1 to 3 files (same layout, fewer ops and flags) are still read; 0 and 5 are not */
    for (uint32_t v = 0; v < 6; v++) {
        l3_wal_seg_hdr_encode(h, &in);
        h[8] = (uint8_t)v;
        h[60] = h[61] = h[62] = h[63] = 0;
        uint32_t crc = walt_crc32c(h, 60);
        memcpy(h + 60, &crc, 4);
        CHECK_EQ_INT(l3_wal_seg_hdr_decode(h, 64, &out), v >= 1 && v <= 4 ? 0 : -EBADMSG);
    }
}

/* wr_flags: L3_WAL_RF_INCR round-trips (the op stays SET); undefined bits are refused */
static void test_flags(void)
{
    uint8_t buf[128];
    l3_wal_rec_t in = {.op = L3_WALOP_SET,
                       .flags = L3_WAL_RF_INCR,
                       .lsn = 9,
                       .key = "k",
                       .klen = 1,
                       .payload = "pp",
                       .plen = 2};
    int64_t n = l3_wal_rec_encode(buf, sizeof buf, &in, 77);
    CHECK(n > 0);
    CHECK_EQ_INT(buf[11], L3_WAL_RF_INCR);
    l3_wal_rec_t out;
    CHECK_EQ_INT(l3_wal_rec_decode(buf, (size_t)n, 77, &out), n);
    CHECK_EQ_INT(out.op, L3_WALOP_SET);
    CHECK_EQ_INT(out.flags, L3_WAL_RF_INCR);
    in.flags = 0;
    n = l3_wal_rec_encode(buf, sizeof buf, &in, 77);
    CHECK_EQ_INT(l3_wal_rec_decode(buf, (size_t)n, 77, &out), n);
    CHECK_EQ_INT(out.flags, 0);
    in.flags = L3_WAL_RF_TX | L3_WAL_RF_TXLAST; /* the group flags round-trip too */
    n = l3_wal_rec_encode(buf, sizeof buf, &in, 77);
    CHECK_EQ_INT(l3_wal_rec_decode(buf, (size_t)n, 77, &out), n);
    CHECK_EQ_INT(out.flags, L3_WAL_RF_TX | L3_WAL_RF_TXLAST);
    in.flags = L3_WAL_RF_EXPIRED; /* so do the expiry flags */
    n = l3_wal_rec_encode(buf, sizeof buf, &in, 77);
    CHECK_EQ_INT(l3_wal_rec_decode(buf, (size_t)n, 77, &out), n);
    CHECK_EQ_INT(out.flags, L3_WAL_RF_EXPIRED);
    in.flags = 0x40; /* not defined: the encoder drops it, a decoder refuses it */
    n = l3_wal_rec_encode(buf, sizeof buf, &in, 77);
    CHECK_EQ_INT(buf[11], 0);
    buf[11] = 0x40;
    uint32_t crc = walt_crc32c(buf + 8, (size_t)n - 8);
    memcpy(buf + 4, &crc, 4);
    CHECK_EQ_INT(l3_wal_rec_decode(buf, (size_t)n, 77, &out), -EBADMSG);
}

int main(void)
{
    uint64_t seed = t_seed();
    CHECK_EQ_INT(walt_crc32c("123456789", 9), 0xE3069283u);
    test_layout();
    test_roundtrip(&seed);
    test_bitflips();
    test_hostile();
    test_flags();
    test_seg_hdr();
    return t_done();
}
