/* SPDX-License-Identifier: MIT */
/*
 * format.h - byte layout of an L3KV document (internal to src/doc).
 *
 * All integers little endian (the format is defined for little-endian hosts; the
 * header magic reads differently on a big-endian one, so verify() refuses it).
 * All offsets are uint32 byte offsets from the start of the buffer, multiples of 8;
 * offset 0 means "none". A document is at most 4 GiB - 8.
 *
 * The full form, dh_version 3 (version 2 differed only in hashed tables: a power of two
 * >= 2 cap slots, home hash & (hcap - 1), probe bound 256; it is read through
 * l3_doc_upgrade()). Format version 4 adds the packed form of small documents, dh_version 4,
 * with the same header and its own layout after it (packed.h).
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
 * Object entry (32 bytes) = a slot plus the member name:
 *     0    8 val   as in a slot
 *     8    1 type  as in a slot; T_DELETED = tombstone, T_EMPTY = free table slot
 *     9    3 (zero)
 *    12    4 hash  hash of the name under dh_seed
 *    16    4 klen  name length in bytes (any bytes, NUL included)
 *    20   12 name  the name itself if klen <= 12, else: uint32 offset of the name bytes
 *
 * Object node (24 bytes): count (live members), n (members ever added since the last
 *   rewrite, tombstones included), cap (most members before the next rewrite), eoff,
 *   hcap, ooff. Two shapes:
 *   - small (hcap == 0, cap <= 8): eoff holds cap entries in insertion order, n used,
 *     scanned on lookup; ooff is 0.
 *   - hashed (hcap = cap + cap/4 + 1, any size: load < 0.8, one slot always free): eoff
 *     holds hcap entries placed by linear probing from home (hash * hcap) >> 32, at most
 *     L3_DOC_MAX_PROBE (512) slots past it, wrapping at hcap - the table *is* the entry storage, so a lookup
 * is one cache miss for names up to 12 bytes; free slots have type T_EMPTY. ooff holds cap uint32 table
 * positions in insertion order (n used), for iteration. Deleting a member leaves a tombstone (type T_DELETED)
 * in place and in the order array; tombstones are dropped when the object is next rewritten (growth,
 * compaction). Array node (16 bytes): count, cap, ioff (cap slots of 16 bytes), zero. String block: uint32
 * cap, uint32 len, then cap bytes (len used), padded to 8. BIGNUM uses the same block holding the number's
 * JSON text. Name bytes (klen > 12): klen bytes padded to 8.
 */
#ifndef L3KV_DOC_FORMAT_H
#define L3KV_DOC_FORMAT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "l3kv/base.h"
#include "l3kv/doc.h"

#define L3_DOC_MAGIC 0x4344334cu /* "L3DC" */
#define L3_DOC_FORMAT_VERSION 3u
#define L3_DOC_FORMAT_V2 2u /* previous version: verified by its own rules and rebuilt (l3_doc_upgrade) */
#define L3_DOC_FLAG_SEALED 0x1u
#define DOC_DATA_OFF 48u
#define DOC_MAX_SIZE 0xFFFFFFF8u
#define T_DELETED 0x80u
#define T_EMPTY 0x81u /* free slot of a hashed object's entry table */
#define KEY_INLINE_MAX 12u
#define HASH_MIN_CAP 8u       /* objects with more entries than this get a hash table */
#define L3_DOC_MAX_PROBE 512u /* longest displacement verify() accepts and any writer builds */

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
    uint32_t count, n, cap, eoff, hcap, ooff;
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
 * murmur3 finaliser. Not cryptographic, and the seed is no secret (every binary copy of a
 * document carries it): a fresh random seed per document keeps names crafted for another
 * document useless, and the probe bound below (with a rebuild under a new seed when a
 * writer would pass it) keeps names crafted for this one from costing more than
 * L3_DOC_MAX_PROBE probes. */
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

/* Table slots for an object of capacity cap (0 = small, scanned): cap + cap/4 + 1, so the
 * load stays below 0.8 and at least one slot is always free. Any size, not a power of two. */
static inline uint32_t l3_doc__hcap_for(uint32_t cap)
{
    return cap > HASH_MIN_CAP ? cap + cap / 4 + 1 : 0;
}

/* Home slot of a hash in a table of hcap slots: multiply-shift range reduction (the high
 * 32 bits of hash * hcap), uniform over [0, hcap) for any hcap. */
static inline uint32_t l3_doc__home(uint32_t hash, uint32_t hcap)
{
    return (uint32_t)(((uint64_t)hash * hcap) >> 32);
}

/* The probe after slot h (linear probing, wrapping at hcap). */
static inline uint32_t l3_doc__probe_next(uint32_t h, uint32_t hcap)
{
    return h + 1 == hcap ? 0 : h + 1;
}

/* Format version 2 (read only, to rebuild it into the current version): tables of a power of
 * two >= 2 cap (at least 16) slots, home slot hash & (hcap - 1), probe bound 256. */
#define L3_DOC_V2_MAX_PROBE 256u
static inline uint32_t l3_doc__v2_hcap_for(uint32_t cap)
{
    if (cap <= HASH_MIN_CAP)
        return 0;
    uint64_t p = 16;
    while (p < (uint64_t)cap * 2)
        p <<= 1;
    return (uint32_t)p;
}

/* Bytes of an object's node plus entry storage (and order array) for cap members. */
static inline uint64_t l3_doc__obj_bytes(uint32_t cap)
{
    uint32_t hcap = l3_doc__hcap_for(cap);
    if (!hcap)
        return 24 + (uint64_t)cap * 32;
    return 24 + (uint64_t)hcap * 32 + (((uint64_t)cap * 4 + 7) & ~(uint64_t)7);
}

/* Empty a hashed object's entry table of hcap slots. */
static inline void l3_doc__table_clear(dentry_t *tab, uint32_t hcap)
{
    memset(tab, 0, (size_t)hcap * sizeof(dentry_t));
    for (uint32_t i = 0; i < hcap; i++)
        tab[i].type = T_EMPTY;
}

/* First free slot on the probe path of hash, or UINT32_MAX when it lies more than
 * L3_DOC_MAX_PROBE slots past the home slot: the writer must then give up (L3_EREHASH)
 * rather than build a table verify() refuses. */
static inline uint32_t l3_doc__table_free_slot(const dentry_t *tab, uint32_t hcap, uint32_t hash)
{
    uint32_t h = l3_doc__home(hash, hcap);
    for (uint32_t dist = 0; dist <= L3_DOC_MAX_PROBE; dist++, h = l3_doc__probe_next(h, hcap))
        if (tab[h].type == T_EMPTY)
            return h;
    return UINT32_MAX;
}

/* Lay out an empty object of capacity cap: node t, entry storage (and order array) at
 * store, l3_doc__obj_bytes(cap) - 24 bytes, which this fills. */
static inline void l3_doc__obj_layout(uint8_t *buf, dobj_t *t, uint32_t store, uint32_t cap)
{
    uint32_t hcap = l3_doc__hcap_for(cap);
    t->count = t->n = 0;
    t->cap = cap;
    t->hcap = hcap;
    t->eoff = cap ? store : 0;
    t->ooff = 0;
    if (hcap) {
        l3_doc__table_clear((dentry_t *)(void *)(buf + store), hcap);
        t->ooff = store + hcap * 32u;
        memset(buf + t->ooff, 0, ((size_t)cap * 4 + 7) & ~(size_t)7);
    } else if (cap) {
        memset(buf + store, 0, (size_t)cap * 32);
    }
}

/* Add a member known not to be present (n < cap) as the last one; no journaling, for
 * objects being built. Returns the entry's offset, or 0 (nothing written) when the probe
 * bound would be passed. */
static inline uint32_t l3_doc__obj_put(uint8_t *buf, dobj_t *t, const dentry_t *e)
{
    dentry_t *tab = (dentry_t *)(void *)(buf + t->eoff);
    uint32_t pos = t->n;
    if (t->hcap) {
        pos = l3_doc__table_free_slot(tab, t->hcap, e->hash);
        if (pos == UINT32_MAX)
            return 0;
        ((uint32_t *)(void *)(buf + t->ooff))[t->n] = pos;
    }
    tab[pos] = *e;
    t->n++;
    t->count++;
    return t->eoff + pos * 32u;
}

/* Byte offset of the i-th member (insertion order, i < n) of object o. */
static inline uint32_t l3_doc__nth_off(const uint8_t *buf, const dobj_t *o, uint32_t i)
{
    uint32_t pos = o->hcap ? ((const uint32_t *)(const void *)(buf + o->ooff))[i] : i;
    return o->eoff + pos * 32u;
}

static inline const dentry_t *l3_doc__nth(const uint8_t *buf, const dobj_t *o, uint32_t i)
{
    return (const dentry_t *)(const void *)(buf + l3_doc__nth_off(buf, o, i));
}

/* ------------------------------------------------------------------ walking a verified document
 *
 * Every walk over a document's values (emit, copy, sizes, statistics) runs on this explicit
 * stack of L3_DOC_MAX_DEPTH frames, never on recursion: depth is bounded by verify() and
 * by every writer, and a walk that meets a deeper value stops with W_DEEP instead of
 * overflowing. Events come in document order: W_OPEN / W_CLOSE around a container's
 * members, W_SCALAR for the rest; `e` is the member's entry inside an object (NULL for
 * array elements and the root), `first` says whether it is its container's first. */
enum { L3_W_END = 0, L3_W_SCALAR, L3_W_OPEN, L3_W_CLOSE, L3_W_DEEP };

typedef struct {
    uint32_t node; /* object or array node */
    uint32_t i;    /* next member (insertion index) or element */
    uint8_t type;
    bool any; /* a member was reported */
} l3_doc__wframe_t;

typedef struct {
    const uint8_t *buf;
    uint64_t root_val;
    uint8_t root_type;
    bool started;
    unsigned depth; /* open containers */
    l3_doc__wframe_t f[L3_DOC_MAX_DEPTH];
} l3_doc__walk_t;

typedef struct {
    int ev;
    uint64_t val;
    uint8_t type;
    bool first;
    const dentry_t *e;
    uint32_t where; /* offset of the value's slot or entry (0 for the root given by value) */
} l3_doc__wstep_t;

static inline void l3_doc__walk_begin(l3_doc__walk_t *w, const uint8_t *buf, uint64_t val, uint8_t type)
{
    w->buf = buf;
    w->root_val = val;
    w->root_type = type;
    w->started = false;
    w->depth = 0;
}

static inline int l3_doc__walk_value(l3_doc__walk_t *w, l3_doc__wstep_t *s, uint64_t val, uint8_t type)
{
    s->val = val;
    s->type = type;
    if (type == L3_DOC_OBJECT || type == L3_DOC_ARRAY) {
        if (w->depth >= L3_DOC_MAX_DEPTH)
            return s->ev = L3_W_DEEP;
        l3_doc__wframe_t *f = &w->f[w->depth++];
        f->node = (uint32_t)val;
        f->i = 0;
        f->type = type;
        f->any = false;
        return s->ev = L3_W_OPEN;
    }
    return s->ev = L3_W_SCALAR;
}

static inline int l3_doc__walk_next(l3_doc__walk_t *w, l3_doc__wstep_t *s)
{
    const uint8_t *buf = w->buf;
    s->e = NULL;
    if (!w->started) {
        w->started = true;
        s->first = true;
        s->where = 0;
        return l3_doc__walk_value(w, s, w->root_val, w->root_type);
    }
    if (w->depth == 0)
        return s->ev = L3_W_END;
    l3_doc__wframe_t *f = &w->f[w->depth - 1];
    if (f->type == L3_DOC_ARRAY) {
        const darr_t *a = AT(buf, f->node, const darr_t);
        if (f->i < a->count) {
            uint32_t so = a->ioff + f->i++ * (uint32_t)sizeof(dslot_t);
            const dslot_t *it = AT(buf, so, const dslot_t);
            s->first = !f->any;
            f->any = true;
            s->where = so;
            return l3_doc__walk_value(w, s, it->val, it->type);
        }
    } else {
        const dobj_t *o = AT(buf, f->node, const dobj_t);
        while (f->i < o->n) {
            /* a hashed object's members sit in table order: fetch a few ahead of the
             * insertion-order walk so the cache misses overlap */
            if (o->hcap && f->i + 16 < o->n)
                __builtin_prefetch(l3_doc__nth(buf, o, f->i + 16));
            uint32_t eo = l3_doc__nth_off(buf, o, f->i++);
            const dentry_t *e = AT(buf, eo, const dentry_t);
            if (e->type == T_DELETED)
                continue;
            s->first = !f->any;
            f->any = true;
            s->e = e;
            s->where = eo;
            return l3_doc__walk_value(w, s, e->val, e->type);
        }
    }
    w->depth--;
    s->val = f->node;
    s->type = f->type;
    return s->ev = L3_W_CLOSE;
}

/* Hash seed for a new document: fresh random bits every call (a per-thread pool refilled
 * from getrandom, and after a fork). */
uint32_t l3_doc__seed(void);
/* Shortest round-trip text of a finite double into out (>= 32 bytes); returns length. */
size_t l3_doc__fmt_double(double d, char *out);
/* Is [s, s+len) a JSON number (RFC 8259 grammar)? */
bool l3_doc__number_valid(const char *s, size_t len);
/* Is [p, p+len) valid UTF-8 (no overlongs, surrogates or values above U+10FFFF)? */
bool l3_doc__utf8_valid(const uint8_t *p, size_t len);
/* Walk a value and add up its storage outside its slot (measure.c): alloc = allocated
 * capacities, else what a copy appends (keep = containers keep their capacity);
 * *ret_depth (may be NULL) gets its nesting depth. */
uint64_t l3_doc__measure(const uint8_t *buf, uint64_t val, uint8_t type, bool alloc, bool keep,
                         unsigned *ret_depth);
/* Bytes a stored value occupies outside its slot (allocated capacity included). */
uint64_t l3_doc__storage_size(const uint8_t *buf, uint64_t val, uint8_t type);

#endif
