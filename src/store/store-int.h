/* SPDX-License-Identifier: MIT */
/*
 * store-int.h - internals shared by the files of src/store (not installed).
 *
 * The handle (struct l3_store) is process local. Everything it points at is inside the
 * shared arena and addressed by offsets (layout.h); AT() turns an offset into a pointer
 * for this process's mapping only.
 */
#ifndef L3KV_STORE_INT_H
#define L3KV_STORE_INT_H

#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "l3kv/base.h"
#include "l3kv/error.h"
#include "l3kv/layout.h"
#include "l3kv/store.h"

struct l3_store {
    uint8_t *base;        /* start of this process's mapping */
    size_t size;          /* bytes mapped */
    l3_arena_hdr_t *hdr;  /* == base */
    l3_alloc_hdr_t *al;   /* allocator header */
    l3_stripe_t *stripes; /* stripe array */
    uint32_t smask;       /* nstripes - 1 */
    uint32_t timeout_ms;  /* lock timeout */
    size_t max_doc;       /* largest document a request may store (l3_store_opts_t.max_doc_bytes) */
    bool readonly;        /* PROT_READ attachment: inspection only */
    bool created;         /* this handle formatted the arena */
    bool borrowed;        /* mapping owned by another handle (l3_store_clone) */
    int slot;             /* process slot, -1 when unregistered */
    uint64_t gen;         /* fork generation the slot belongs to */
    l3_proc_slot_t *ps;   /* our slot */
    uint8_t *undo;        /* our undo area */
    l3_wal_hook_fn hook;
    void *hook_ctx;
    l3_wal_group_hook_fn ghook; /* multi-key transactions (txn.c) */
    void *ghook_ctx;
    l3_wal_probe_fn probe;
    void *probe_ctx;
    /* undo-overflow escape: the document layer's undo callback jumps back here when
     * the undo area is full, after which the mutation is redone on a private copy */
    sigjmp_buf jb;
    volatile int jb_armed;
    char name[64];
};

#define AT(st, off, T) ((T *)(void *)((st)->base + (off)))
#define OFF(st, p) ((uint64_t)((const uint8_t *)(p) - (st)->base))

/* Internal return code: the undo area overflowed (never returned to callers). */
#define L3_STORE__EUNDO (-32100)

/* ---- the arena's fixed regions (layout.h), addressed from the header */
static inline l3_proc_slot_t *l3_store__slot(const l3_store_t *st, uint32_t i)
{
    return AT(st, st->hdr->ah_off_procs + (uint64_t)i * L3_PROC_SLOT_BYTES, l3_proc_slot_t);
}

static inline uint8_t *l3_store__undo_area(const l3_store_t *st, uint32_t i)
{
    return st->base + st->hdr->ah_off_undo + (uint64_t)i * st->hdr->ah_undo_bytes;
}

/* entry i of the tail list of undo area ua (layout.h, "process slot") */
static inline uint64_t *l3_store__tail_at(const l3_store_t *st, uint8_t *ua, uint32_t i)
{
    return (uint64_t *)(void *)(ua + st->hdr->ah_undo_bytes - 8ull * ((uint64_t)i + 1));
}

/* ---- arena.c */
extern uint64_t l3_store__fork_gen;
int l3_store__check_registered(const l3_store_t *st);
bool l3_store__pid_alive(int32_t pid);

/* ---- lock.c: robust locks, the allocator lock and record */
int l3_store__lock_init(l3_lock_t *lk);
/* lock with the store's timeout; *ret_dead: the holder died (EOWNERDEAD, caller repairs) */
int l3_store__lock_raw(l3_store_t *st, l3_lock_t *lk, bool *ret_dead);
int l3_store__alloc_lock(l3_store_t *st);
void l3_store__alloc_unlock(l3_store_t *st);
/* allocator-section write: log the old 8-byte word in our au record, then store */
void l3_store__aw(l3_store_t *st, uint64_t *p, uint64_t v);
void l3_store__aw32(l3_store_t *st, uint32_t *p, uint32_t v);

/* ---- tx.c: stripe locks, transaction record, repair */
int l3_store__stripe_lock(l3_store_t *st, uint32_t s);
void l3_store__stripe_unlock(l3_store_t *st, uint32_t s);
/* transaction (stripe-section) physical undo: log len old bytes at p before overwriting */
int l3_store__tlog(l3_store_t *st, const void *p, size_t len);
void l3_store__tw64(l3_store_t *st, uint64_t *p, uint64_t v);
void l3_store__tw32(l3_store_t *st, uint32_t *p, uint32_t v);
void l3_store__tx_begin(l3_store_t *st, uint32_t s);
void l3_store__tx_commit(l3_store_t *st);
void l3_store__tx_rollback(l3_store_t *st);
/* undo the physical entries logged so far (keeps allocations), used after an undo overflow */
void l3_store__tx_undo_phys(l3_store_t *st);
void l3_store__tx_defer_free(l3_store_t *st, uint64_t payload);
void l3_store__doc_undo_cb(void *ctx, const void *addr, size_t len);
int l3_store__reap_slot(l3_store_t *st, uint32_t i);
/* multi-key transactions (txn.c): lock the stripes s[0..n) (ascending, distinct; L7),
 * listing each in the tail first; 0, or the lock's error with nothing held */
int l3_store__multi_lock(l3_store_t *st, const uint32_t *s, size_t n);
/* unlock every listed stripe (reverse order) and end the multi record */
void l3_store__multi_unlock(l3_store_t *st);
/* begin the transaction record over every listed stripe (after l3_store__multi_lock) */
void l3_store__tx_begin_multi(l3_store_t *st);
/* bytes of the undo area neither the physical log nor the tail list uses */
static inline uint64_t l3_store__undo_free(const l3_store_t *st)
{
    const l3_proc_slot_t *ps = st->ps;
    uint64_t used = ps->tx_used + 8ull * ps->tx_ntail;
    return used < st->hdr->ah_undo_bytes ? st->hdr->ah_undo_bytes - used : 0;
}

/* ---- alloc.c (caller holds no allocator lock; these take it) */
void l3_store__alloc_format(l3_store_t *st, uint64_t heap_off, uint64_t heap_bytes);
/* allocate >= bytes; *ret_payload = 16-aligned payload offset; recorded in the tx */
int l3_store__alloc(l3_store_t *st, uint64_t bytes, uint64_t *ret_payload, uint64_t *ret_cap);
/* free a block allocated by the current transaction right away */
void l3_store__free_now(l3_store_t *st, uint64_t payload);
/* under the allocator lock: free a block (allocator-logged), no tx bookkeeping */
void l3_store__free_locked(l3_store_t *st, uint64_t payload);
uint64_t l3_store__block_cap(const l3_store_t *st, uint64_t payload);
uint32_t l3_store__bin_of(uint64_t sz);

/* ---- index.c (caller holds the stripe lock and an active transaction) */
uint64_t l3_store__hash(const l3_store_t *st, const void *key, size_t klen);
/* find: returns entry offset (0 = none), *ret_pos its table position */
uint64_t l3_store__ix_find(l3_store_t *st, l3_stripe_t *sp, uint64_t h, const void *key, size_t klen,
                           uint32_t *ret_pos);
/* index a new entry; *ret_pos gets its slot */
int l3_store__ix_insert(l3_store_t *st, l3_stripe_t *sp, uint64_t h, uint64_t entry, uint32_t *ret_pos);
void l3_store__ix_remove(l3_store_t *st, l3_stripe_t *sp, uint32_t pos);

/* ---- ops.c: one key's state under its stripe lock */
typedef struct {
    uint64_t h;
    uint32_t s;
    bool tx;
    l3_stripe_t *sp;
    uint64_t entry; /* 0 = key absent */
    uint32_t pos;
    l3_ix_entry_t *ent;
    uint8_t *doc;
    int64_t dkeys;  /* change of ah_keys at commit */
    int64_t dbytes; /* change of ah_doc_bytes at commit */
} opctx_t;          /* an operation on one key (ops.c, txn.c) */

/* 0, -ENAMETOOLONG, -EINVAL */
int l3_store__key_ok(const void *key, size_t klen);
/* the next LSN (replay_lsn != 0: that one, raising the floor) */
uint64_t l3_store__next_lsn(l3_store_t *st, uint64_t replay_lsn);
/* the document of a PUT's JSON body in *ret_doc: packed when it packs (parsed straight into
 * that form, in `small`, L3_DOC_PACK_MAX_BYTES 8-aligned bytes of the caller's), else the
 * full form under the document limit, malloc'd (free it when it is not `small`).
 * 0, or the parser's error (*err) */
int l3_store__parse_put(const l3_store_t *st, const char *json, size_t jlen, uint8_t *small,
                        uint8_t **ret_doc, size_t *ret_len, l3_doc_error_t *err);
/* store a complete document (verified, len bytes) under c's key: a new block, published
 * over the old one or inserted with a new entry; inside the caller's transaction */
int l3_store__store_doc(l3_store_t *st, opctx_t *c, const void *key, size_t klen, const uint8_t *buf,
                        size_t len, uint64_t lsn);
/* set or clear (0) the deadline of c's entry, inside the caller's transaction */
void l3_store__set_deadline(l3_store_t *st, opctx_t *c, uint64_t expire_ms);
/* remove the key, with a logged record, if its deadline has passed at now_ms: 1 removed,
 * 0 not (absent or live), < 0 error (e.g. the WAL refused the record) */
int l3_store__reap_key(l3_store_t *st, const void *key, size_t klen, uint64_t now_ms);
/* SET payload (store.h l3_store_encode_set): the length; written only when it fits cap */
size_t l3_store__enc_set(uint8_t *dst, size_t cap, const char *path, size_t plen, unsigned flags,
                         const l3_doc_scalar_t *v);

/* ---- ops.c: lock-free, verified copy of a document (read-only handles) */
int l3_store__ro_copy(l3_store_t *st, const void *key, size_t klen, uint8_t **ret_buf, size_t *ret_len,
                      uint64_t *ret_lsn, uint64_t *ret_expire_ms);

/* Has the deadline expire_ms (0: none) passed at now_ms? The one test of expiry (O6). */
static inline bool l3_store__expired(uint64_t expire_ms, uint64_t now_ms)
{
    return expire_ms != 0 && expire_ms <= now_ms;
}

/* Bytes of a key's block before its document: the entry and the key, padded to 8. */
static inline uint64_t l3_store__prefix(uint32_t klen)
{
    return ((uint64_t)L3_IX_ENTRY_HDR + klen + 7u) & ~(uint64_t)7u;
}

/* A key's document capacity: its block's payload size less the entry and key before it
 * (the block header precedes the payload; 0 when the block is too small: corrupt). */
static inline uint64_t l3_store__doc_cap(const l3_store_t *st, const l3_ix_entry_t *ent)
{
    uint64_t h, pre = l3_store__prefix(ent->ie_klen);
    memcpy(&h, (const uint8_t *)ent - L3_BLOCK_HDR, sizeof h);
    uint64_t payload = (h & ~(uint64_t)L3_BLOCK_FLAGS) - L3_BLOCK_HDR;
    (void)st;
    return payload > pre ? payload - pre : 0;
}

static inline void l3_store__fence(void)
{
    /* order log writes before the overwrite they protect, as seen by a later repairer */
    atomic_thread_fence(memory_order_release);
}

#endif
