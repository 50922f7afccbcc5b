/* SPDX-License-Identifier: MIT */
/*
 * siphash.c - SipHash-2-4 (Aumasson & Bernstein), the keyed hash of the store's key
 * index: with a random per-instance key, crafted keys cannot force collisions.
 * Pure function; any process.
 */
#include <string.h>

#include "l3kv/base.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                             \
    do {                                                                                                     \
        v0 += v1;                                                                                            \
        v1 = ROTL(v1, 13);                                                                                   \
        v1 ^= v0;                                                                                            \
        v0 = ROTL(v0, 32);                                                                                   \
        v2 += v3;                                                                                            \
        v3 = ROTL(v3, 16);                                                                                   \
        v3 ^= v2;                                                                                            \
        v0 += v3;                                                                                            \
        v3 = ROTL(v3, 21);                                                                                   \
        v3 ^= v0;                                                                                            \
        v2 += v1;                                                                                            \
        v1 = ROTL(v1, 17);                                                                                   \
        v1 ^= v2;                                                                                            \
        v2 = ROTL(v2, 32);                                                                                   \
    } while (0)

uint64_t l3_siphash(const uint8_t key[16], const void *buf, size_t len)
{
    const uint8_t *in = buf;
    uint64_t k0, k1;
    memcpy(&k0, key, 8);
    memcpy(&k1, key + 8, 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = ((uint64_t)len) << 56;
    const uint8_t *end = in + len - (len % 8);
    for (; in != end; in += 8) {
        uint64_t m;
        memcpy(&m, in, 8);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t t = 0;
    switch (len & 7) {
    case 7:
        t |= ((uint64_t)in[6]) << 48;
        /* fallthrough */
    case 6:
        t |= ((uint64_t)in[5]) << 40;
        /* fallthrough */
    case 5:
        t |= ((uint64_t)in[4]) << 32;
        /* fallthrough */
    case 4:
        t |= ((uint64_t)in[3]) << 24;
        /* fallthrough */
    case 3:
        t |= ((uint64_t)in[2]) << 16;
        /* fallthrough */
    case 2:
        t |= ((uint64_t)in[1]) << 8;
        /* fallthrough */
    case 1:
        t |= ((uint64_t)in[0]);
        break;
    default:
        break;
    }
    b |= t;
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}
