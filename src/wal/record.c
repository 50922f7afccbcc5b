/* SPDX-License-Identifier: MIT */
/*
 * record.c - the WAL record and segment header codecs (formats drawn in l3kv/wal.h).
 * Pure functions on caller buffers; any process (producers under the document lock, the
 * writer, recovery, the inspector). Decoding treats the bytes as untrusted: every length is
 * checked without overflow before it is used.
 * Invariants: E1 an encoded record is 8-aligned and its size is l3_wal_rec_size(klen, plen);
 * E2 wr_crc covers bytes [8, wr_len) including the salt trailer; E3 padding bytes are zero.
 */
#include <errno.h>
#include <string.h>

#include "l3kv/error.h"
#include "wal-int.h"

uint32_t l3_wal__rec_fill(uint8_t *p, uint32_t size, const l3_wal_rec_t *rec)
{
    uint32_t body = L3_WAL_REC_HDR + rec->klen + rec->plen;
    l3_wal__st32(p, size);
    l3_wal__st32(p + 4, 0);
    p[8] = (uint8_t)(L3_WAL_REC_MAGIC & 0xff);
    p[9] = (uint8_t)(L3_WAL_REC_MAGIC >> 8);
    p[10] = rec->op;
    p[11] = rec->flags & L3_WAL_RF_MASK;
    l3_wal__st32(p + 12, rec->klen);
    l3_wal__st32(p + 16, rec->plen);
    l3_wal__st32(p + 20, 0);
    l3_wal__st64(p + 24, rec->lsn);
    if (rec->klen)
        memcpy(p + L3_WAL_REC_HDR, rec->key, rec->klen);
    if (rec->plen)
        memcpy(p + L3_WAL_REC_HDR + rec->klen, rec->payload, rec->plen);
    memset(p + body, 0, size - body); /* padding and the salt slot */
    uint32_t crc = l3_crc32c(0, p + 8, size - 16);
    l3_wal__st32(p + 4, crc);
    return crc;
}

int64_t l3_wal_rec_encode(void *buf, size_t cap, const l3_wal_rec_t *rec, uint64_t salt)
{
    if (rec->op == L3_WALOP_NONE || rec->op >= L3_WALOP_MAX)
        return -EINVAL;
    uint64_t size = l3_wal_rec_size(rec->klen, rec->plen);
    if (size > L3_WAL_REC_MAX || size > cap)
        return -EMSGSIZE;
    uint8_t *p = buf;
    l3_wal__rec_fill(p, (uint32_t)size, rec);
    l3_wal__rec_seal(p, (uint32_t)size, salt);
    return (int64_t)size;
}

int64_t l3_wal_rec_decode(const void *buf, size_t avail, uint64_t salt, l3_wal_rec_t *ret_rec)
{
    const uint8_t *p = buf;
    if (avail < 8)
        return -ENODATA;
    uint32_t len = l3_wal__ld32(p);
    if (len == 0)
        return -ENODATA;
    if (len < L3_WAL_REC_MIN || (len & 7u) || len > L3_WAL_REC_MAX || len > avail)
        return -EBADMSG;
    uint32_t klen = l3_wal__ld32(p + 12), plen = l3_wal__ld32(p + 16);
    uint16_t magic = (uint16_t)(p[8] | (p[9] << 8));
    uint8_t op = p[10];
    if (magic != L3_WAL_REC_MAGIC || op == L3_WALOP_NONE || op >= L3_WALOP_MAX ||
        (p[11] & ~L3_WAL_RF_MASK) != 0 || l3_wal__ld32(p + 20) != 0)
        return -EBADMSG;
    /* len == rec_size(klen, plen), computed in 64 bits so huge fields cannot wrap */
    if ((uint64_t)klen + plen > len || l3_wal_rec_size(klen, plen) != len)
        return -EBADMSG;
    if (l3_crc32c(0, p + 8, len - 8) != l3_wal__ld32(p + 4))
        return L3_ECORRUPT;
    if (l3_wal__ld64(p + len - 8) != salt)
        return -ESTALE;
    if (ret_rec) {
        ret_rec->op = op;
        ret_rec->flags = p[11];
        ret_rec->lsn = l3_wal__ld64(p + 24);
        ret_rec->klen = klen;
        ret_rec->plen = plen;
        ret_rec->key = p + L3_WAL_REC_HDR;
        ret_rec->payload = p + L3_WAL_REC_HDR + klen;
    }
    return len;
}

void l3_wal_seg_hdr_encode(void *buf64, const l3_wal_seg_hdr_t *h)
{
    uint8_t *p = buf64;
    memset(p, 0, L3_WAL_SEG_HDR);
    memcpy(p, L3_WAL_SEG_MAGIC, 8);
    l3_wal__st32(p + 8, L3_WAL_SEG_VERSION);
    l3_wal__st32(p + 12, L3_WAL_SEG_HDR);
    l3_wal__st64(p + 16, h->salt);
    l3_wal__st64(p + 24, h->seq);
    l3_wal__st64(p + 32, h->ctime_ns);
    l3_wal__st64(p + 40, h->ring_pos);
    l3_wal__st32(p + 60, l3_crc32c(0, p, 60));
}

int l3_wal_seg_hdr_decode(const void *buf, size_t avail, l3_wal_seg_hdr_t *ret_h)
{
    const uint8_t *p = buf;
    if (avail < L3_WAL_SEG_HDR)
        return -EBADMSG;
    if (memcmp(p, L3_WAL_SEG_MAGIC, 8) != 0 || l3_wal__ld32(p + 8) > L3_WAL_SEG_VERSION ||
        l3_wal__ld32(p + 8) < L3_WAL_SEG_VERSION_MIN || l3_wal__ld32(p + 12) != L3_WAL_SEG_HDR)
        return -EBADMSG;
    if (l3_crc32c(0, p, 60) != l3_wal__ld32(p + 60))
        return L3_ECORRUPT;
    if (ret_h) {
        ret_h->salt = l3_wal__ld64(p + 16);
        ret_h->seq = l3_wal__ld64(p + 24);
        ret_h->ctime_ns = l3_wal__ld64(p + 32);
        ret_h->ring_pos = l3_wal__ld64(p + 40);
    }
    return 0;
}
