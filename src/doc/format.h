/* SPDX-License-Identifier: MIT */
/*
 * format.h - byte layout of an L3KV document (internal to src/doc).
 *
 * All integers little endian (the format is defined for little-endian hosts; the
 * header magic reads differently on a big-endian one, so verify() refuses it).
 * All offsets are uint32 byte offsets from the start of the buffer, multiples of 8;
 * offset 0 means "none". A document is at most 4 GiB - 8.
 *
 * Header (32 bytes) and root slot (16 bytes):
 *   off size field
 *     0    4 dh_magic    0x4344334c: the bytes 'L' '3' 'D' 'C'
 *     4    2 dh_version  L3_DOC_FORMAT_VERSION
 *     6    2 dh_flags    bit 0 SEALED: dh_crc is valid (set by l3_doc_seal, cleared by any change)
 *     8    4 dh_used     bytes in use, multiple of 8, >= 48
 *    12    4 dh_garbage  bytes inside dh_used no live value references
 *    16    8 dh_lsn      LSN of the last change (kept by the store)
 *    24    4 dh_seed     seed of the member-name hash
 *    28    4 dh_crc      CRC-32C of bytes [0, dh_used) with dh_flags and dh_crc read as 0
 *    32   16 root slot
 *    48      nodes, strings, keys: appended in any order
 *
 * Slot (16 bytes): where a value lives. Scalars are stored in the slot itself, so
 * overwriting an int, double or bool is one aligned 8-byte store.
 *     0    8 val   INT: int64; DOUBLE: IEEE bits; BOOL: 0/1; NULL: 0;
 *                  STRING/BIGNUM: offset of a string block; OBJECT/ARRAY: offset of the node
 *     8    1 type  l3_doc_type_t (0..7); 0x80 = deleted member (object entries only)
 *     9    7 (zero)
 *
 * Object entry (32 bytes) = a slot plus the member name; entries are kept in insertion
 * order, deleted ones stay as tombstones until the next rewrite of the array:
 *     0    8 val   as in a slot
 *     8    1 type  as in a slot
 *     9    3 (zero)
 *    12    4 hash  hash of the name under dh_seed
 *    16    4 klen  name length in bytes (any bytes, NUL included)
 *    20   12 name  the name itself if klen <= 12, else: uint32 offset of the name bytes
 *
 * Object node (24 bytes): count (live members), n (entries used, tombstones included),
 *   cap (entries allocated at eoff), eoff, hcap (hash slots, 0 or a power of two > cap),
 *   hoff. The hash table is an open-addressing (linear probing) array of uint32 entry
 *   index + 1 (0 = empty) at hoff; objects with cap <= 8 have none and are scanned.
 * Array node (16 bytes): count, cap, ioff (cap slots of 16 bytes), zero.
 * String block: uint32 cap, uint32 len, then cap bytes (len used), padded to 8. BIGNUM
 *   uses the same block holding the number's JSON text.
 * Name bytes (klen > 12): klen bytes padded to 8.
 */
#ifndef L3KV_DOC_FORMAT_H
#define L3KV_DOC_FORMAT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "l3kv/base.h"
#include "l3kv/doc.h"

#define L3_DOC_MAGIC 0x4344334cu /* "L3DC" */
#define L3_DOC_FORMAT_VERSION 1u
#define L3_DOC_FLAG_SEALED 0x1u
#define DOC_DATA_OFF 48u
#define DOC_MAX_SIZE 0xFFFFFFF8u
#define T_DELETED 0x80u
#define KEY_INLINE_MAX 12u
#define HASH_MIN_CAP 8u /* objects with more entries than this get a hash table */
#define L3_DOC_MAX_PROBE 256u /* longest displacement verify() accepts in a hash table */

typedef struct {
    uint32_t dh_magic;
    uint16_t dh_version;
    uint16_t dh_flags;
    uint32_t dh_used;
    uint32_t dh_garbage;
    uint64_t dh_lsn;
    uint32_t dh_seed;
    uint32_t dh_crc;
} dhdr_t;

typedef struct {
    uint64_t val;
    uint8_t type;
    uint8_t pad[7];
} dslot_t;

typedef struct {
    uint64_t val;
    uint8_t type;
    uint8_t pad[3];
    uint32_t hash;
    uint32_t klen;
    union {
        uint32_t koff;
        uint8_t kin[12];
    };
} dentry_t;

typedef struct {
    uint32_t count, n, cap, eoff, hcap, hoff;
} dobj_t;

typedef struct {
    uint32_t count, cap, ioff, zero;
} darr_t;

typedef struct {
    uint32_t cap, len;
} dstr_t;

_Static_assert(sizeof(dhdr_t) == 32, "header is 32 bytes");
_Static_assert(sizeof(dslot_t) == 16, "slot is 16 bytes");
_Static_assert(sizeof(dentry_t) == 32, "entry is 32 bytes");
_Static_assert(offsetof(dentry_t, type) == offsetof(dslot_t, type), "entry starts with a slot");
_Static_assert(offsetof(dentry_t, kin) == 20, "inline name at 20");
_Static_assert(sizeof(dobj_t) == 24, "object node is 24 bytes");
_Static_assert(sizeof(darr_t) == 16, "array node is 16 bytes");
_Static_assert(L3_DOC_ROOT == sizeof(dhdr_t), "root slot follows the header");

#define AT(buf, off, T) ((T *)(void *)((buf) + (off)))
#define HDR(buf) AT(buf, 0, dhdr_t)

static inline uint32_t a8(uint64_t x)
{
    return (uint32_t)((x + 7) & ~(uint64_t)7);
}

/* Seeded 32-bit hash of a member name: multiply-xorshift over 8-byte words with a
 * murmur3 finaliser. Not cryptographic; the per-document random seed keeps crafted
 * names from colliding on purpose. */
static inline uint32_t l3_doc__hash(uint32_t seed, const void *key, size_t len)
{
    const uint8_t *k = key;
    uint64_t h = ((uint64_t)seed + 0x9E3779B97F4A7C15ull) ^ ((uint64_t)len * 0xC2B2AE3D27D4EB4Full);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, k, 8);
        h = (h ^ w) * 0x9FB21C651E98DF25ull;
        h ^= h >> 32;
        k += 8;
        len -= 8;
    }
    if (len >= 4) {
        /* two overlapping 4-byte loads cover 4..7 bytes without a byte loop */
        uint32_t a, b;
        memcpy(&a, k, 4);
        memcpy(&b, k + len - 4, 4);
        h = (h ^ ((uint64_t)a << 32 | b)) * 0x9FB21C651E98DF25ull;
    } else if (len) {
        uint64_t w = (uint64_t)k[0] << 16 | (uint64_t)k[len >> 1] << 8 | k[len - 1];
        h = (h ^ w) * 0x9FB21C651E98DF25ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return (uint32_t)h;
}

static inline const uint8_t *l3_doc__ekey(const uint8_t *buf, const dentry_t *e)
{
    return e->klen <= KEY_INLINE_MAX ? e->kin : buf + e->koff;
}

static inline uint32_t l3_doc__pow2_atleast(uint64_t x)
{
    uint64_t p = 16;
    while (p < x)
        p <<= 1;
    return (uint32_t)p;
}

/* Hash slots for an entries array of capacity cap (0 = scan). */
static inline uint32_t l3_doc__hcap_for(uint32_t cap)
{
    return cap > HASH_MIN_CAP ? l3_doc__pow2_atleast((uint64_t)cap * 2) : 0;
}

/* Process-wide hash seed for new documents (random per process). */
uint32_t l3_doc__seed(void);
/* Shortest round-trip text of a finite double into out (>= 32 bytes); returns length. */
size_t l3_doc__fmt_double(double d, char *out);
/* Is [p, p+len) valid UTF-8 (no overlongs, surrogates or values above U+10FFFF)? */
bool l3_doc__utf8_valid(const uint8_t *p, size_t len);
/* Bytes a stored value occupies outside its slot (allocated capacity included). */
uint64_t l3_doc__storage_size(const uint8_t *buf, uint64_t val, uint8_t type);

#endif
