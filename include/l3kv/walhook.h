/* SPDX-License-Identifier: MIT */
/*
 * l3kv/walhook.h - the contract between the store (which mutates documents) and the WAL
 * (which makes mutations durable). The store calls the hook while it still holds the
 * document's lock, after the mutation is applied in memory and before it is visible as
 * committed; a non-zero return makes the store roll the mutation back and return that
 * code, so WAL order equals apply order per key (S3 in docs/invariants.md).
 *
 * The payload is opaque to the WAL: the store encodes it (l3_store_encode_*) and decodes
 * it again on replay (l3_store_replay). The WAL only frames, checksums and orders it.
 */
#ifndef L3KV_WALHOOK_H
#define L3KV_WALHOOK_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    L3_WALOP_NONE = 0,
    L3_WALOP_PUT = 1,    /* payload: the complete binary document */
    L3_WALOP_DELETE = 2, /* payload: empty */
    L3_WALOP_SET = 3,    /* payload: store-encoded path + scalar (set_int/str/..., incr result) */
    L3_WALOP_MERGE = 4,  /* payload: merge patch JSON text */
    L3_WALOP_PATCH = 5,  /* payload: JSON Patch text */
    L3_WALOP_FRAG = 6,   /* WAL-internal: one piece of a record too large for one ring slot
                            (docs/wal.md 1.1); never passed to a hook or replay callback */
    L3_WALOP_EXPIRE = 7, /* payload: u64 LE deadline, ms since the Unix epoch; 0 = persist */
    L3_WALOP_MAX
} l3_walop_t;

/* Record flags (wr_flags): what the feed reports beyond the op, and transaction groups. */
#define L3_WAL_RF_INCR 0x01u    /* an L3_WALOP_SET written by incr (the payload holds the result) */
#define L3_WAL_RF_TX 0x02u      /* one record of a transaction group (docs/wal.md 1.2): set by the */
#define L3_WAL_RF_TXFIRST 0x04u /* group hook on every record, with TXFIRST on the first one and */
#define L3_WAL_RF_TXLAST 0x08u  /* TXLAST on the last; replay applies a group whole or not at all */
#define L3_WAL_RF_EXPIRY                                                                                     \
    0x10u                       /* a PUT that also sets the key's deadline: the payload's last 8             \
                                   bytes are the deadline (u64 LE, ms since the Unix epoch) */
#define L3_WAL_RF_EXPIRED 0x20u /* a DELETE of a key whose deadline had passed (feed: "expire") */
#define L3_WAL_RF_MASK 0x3Fu    /* every defined flag */

/* The deadline field of an EXPIRE payload or of an RF_EXPIRY PUT's trailer (u64 LE). */
static inline void l3_wal_put_deadline(void *p, uint64_t ms)
{
    uint8_t *b = (uint8_t *)p;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(ms >> (8 * i));
}
static inline uint64_t l3_wal_get_deadline(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

/* The record's op as the change feed and the tools name it (docs/api.md, "Change feed"):
 * a SET written by incr is "incr", a DELETE of an expired key "expire", an EXPIRE record
 * (deadline set or removed) "ttl". */
static inline const char *l3_walop_name(unsigned op, unsigned flags)
{
    switch (op) {
    case L3_WALOP_PUT:
        return "put";
    case L3_WALOP_DELETE:
        return flags & L3_WAL_RF_EXPIRED ? "expire" : "delete";
    case L3_WALOP_SET:
        return flags & L3_WAL_RF_INCR ? "incr" : "set";
    case L3_WALOP_MERGE:
        return "merge";
    case L3_WALOP_PATCH:
        return "patch";
    case L3_WALOP_FRAG:
        return "frag";
    case L3_WALOP_EXPIRE:
        return "ttl";
    default:
        return "unknown";
    }
}

/* A record op that changes a document (not NONE, not the WAL-internal FRAG). */
static inline int l3_walop_is_change(unsigned op)
{
    return op >= L3_WALOP_PUT && op < L3_WALOP_MAX && op != L3_WALOP_FRAG;
}

typedef struct {
    uint8_t op;    /* l3_walop_t */
    uint8_t flags; /* L3_WAL_RF_* (0 for most records) */
    uint64_t lsn;  /* the new version of the document; global, strictly increasing */
    const void *key;
    uint32_t klen;
    const void *payload;
    uint32_t plen;
} l3_wal_rec_t;

/**
 * Called under the document lock. Return 0 when the record is in the WAL ring (or the
 * configured durability level is otherwise satisfied for "buffered"), or a negative code:
 * -EAGAIN (ring full after a bounded wait: the caller answers 503), -ENOSPC / -EIO (the WAL
 * cannot keep writes: 507 / 503). Must not block for long.
 */
typedef int (*l3_wal_hook_fn)(void *ctx, const l3_wal_rec_t *rec);

/**
 * A multi-key transaction's records, called once under all of its document locks after
 * every change is applied in memory. The records go to the WAL as one group: contiguous
 * in the log (no other record between them), the last one published last, so the group is
 * durable, replayed and reported by the change feed whole or not at all. The WAL may refuse
 * a group as a whole (-EMSGSIZE when it is larger than the ring allows); otherwise the
 * same codes as l3_wal_hook_fn. The LSN of recs[n-1] identifies the call for the WAL probe.
 */
typedef int (*l3_wal_group_hook_fn)(void *ctx, const l3_wal_rec_t *recs, size_t n);

#endif
