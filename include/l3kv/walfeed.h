/* SPDX-License-Identifier: MIT */
/*
 * l3kv/walfeed.h - reading the WAL ring as a change feed, without touching the WAL files
 * and without any work on the write path: a reader follows ring positions on its own.
 *
 * Records stay in the ring after the writer consumed them until producers reuse the space,
 * so the ring holds a bounded history behind its head. A reader copies what it needs from
 * a slot and then checks that no producer can have started to overwrite it (the rule is in
 * src/wal/feed.c); an overrun reader gets -ESTALE and never sees torn bytes as a change.
 *
 * Positions are ring byte positions (64 bits, never wrap) of slot boundaries; an epoch
 * (the ring's creation time) tells positions of different rings apart, so a position from
 * before a restart is refused instead of read in the new ring.
 */
#ifndef L3KV_WALFEED_H
#define L3KV_WALFEED_H

#include <stddef.h>
#include <stdint.h>

#include "l3kv/wal.h"

/** One change read from the ring. */
typedef struct {
    uint8_t op;    /* L3_WALOP_PUT .. L3_WALOP_PATCH (the original op of a split record) */
    uint8_t flags; /* the record's L3_WAL_RF_* (L3_WAL_RF_INCR: a SET written by incr) */
    uint64_t lsn;  /* the document's new LSN */
    uint32_t klen; /* key length; the key is copied into the caller's buffer */
    uint64_t end;  /* ring position after the change: its cursor */
} l3_wal_feed_ev_t;

typedef struct {
    uint64_t epoch;   /* identity of this ring instance (never 0) */
    uint64_t head;    /* every slot below is reserved */
    uint64_t durable; /* every slot below is in an fdatasync'd file (or aborted) */
    uint64_t oldest;  /* no position below this can still be read */
} l3_wal_feed_bounds_t;

void l3_wal_feed_bounds(const l3_wal_ring_t *r, l3_wal_feed_bounds_t *ret);

/**
 * Read the next change at or after position pos, below limit (head, or durable for a
 * durable-only reader). Pads, aborted slots and the pieces of a split record before its
 * final one are stepped over. Returns 1 with *ev filled and the key in key[0..klen) (cap
 * must be at least L3_STORE_KEY_MAX; longer keys are refused as -EBADMSG); 0 when there is
 * nothing (more) yet, with *ret_pos the position to resume from (it may have advanced over
 * skipped slots); -ESTALE when pos has been overwritten (or is older than the ring);
 * -EBADMSG when pos is not a slot boundary of this ring. Reads at most max_slots slots.
 */
int l3_wal_feed_next(const l3_wal_ring_t *r, uint64_t pos, uint64_t limit, unsigned max_slots,
                     l3_wal_feed_ev_t *ev, uint8_t *key, size_t cap, uint64_t *ret_pos);

/** Has pos been (or can it be at any moment) overwritten? 1 yes, 0 still readable. */
int l3_wal_feed_overrun(const l3_wal_ring_t *r, uint64_t pos);

/* ---------------------------------------------------------------- retained segments
 * Changes older than the ring holds are served by the writer from the segments a
 * checkpoint retained (opts.retain_bytes), over a unix socket (opts.feed_sock): a worker
 * sends a cursor and gets the changes after it. The protocol and the writer's position
 * map are described in src/wal/feedlog.c. The writer answers one request per connection at
 * a time; a worker keeps one non-blocking connection in its event loop (encode, decode). */

#define L3_WAL_LOG_VERSION 1u
#define L3_WAL_LOG_BODY_MAX (256u * 1024u) /* largest answer body */
#define L3_WAL_LOG_REQ_MAX (40u + 16384u)  /* largest request: header and key prefix */

typedef struct {
    uint64_t epoch, pos; /* the cursor: ring epoch, ring position */
    const void *prefix;  /* only keys that start with it (plen bytes, at most 16384) */
    uint32_t plen;
    uint32_t max_events; /* at most this many changes */
    uint32_t max_bytes;  /* answer body bytes, at most L3_WAL_LOG_BODY_MAX */
    int durable_only;    /* only changes below the durable position */
} l3_wal_log_req_t;

typedef struct {
    int status;                    /* 0; -ESTALE: not retained (or a gap in the retained log);
                                      L3_ECORRUPT: a retained segment failed its checks; -errno */
    uint32_t count;                /* changes in body */
    uint64_t next_epoch, next_pos; /* the cursor to go on from */
    const uint8_t *body;
    size_t body_len;
} l3_wal_log_reply_t;

typedef struct {
    uint64_t epoch, end, lsn; /* (epoch, end) is the change's cursor */
    uint32_t klen;
    uint8_t op, flags;  /* as l3_wal_feed_ev_t */
    const uint8_t *key; /* into the reply buffer */
} l3_wal_log_ev_t;

/** Connect to the writer's channel: a socket, or -errno (-ENOENT: no writer serves it). */
int l3_wal_log_connect(const char *sock_path);
/** The bytes of request q into out (cap >= L3_WAL_LOG_REQ_MAX): their count, or -EINVAL. */
int l3_wal_log_encode(const l3_wal_log_req_t *q, uint8_t *out, size_t cap);
/** The answer at the start of buf[0, len) to a request of q->max_bytes = max_bytes: 0 with
 *  *ret (pointing into buf) and *ret_used its length; 1 when incomplete (read more);
 *  -EPROTO when malformed or damaged (close the connection). */
int l3_wal_log_decode(const uint8_t *buf, size_t len, uint32_t max_bytes, l3_wal_log_reply_t *ret,
                      size_t *ret_used);
/** The next change of an answer from *off: 1, 0 at the end, -EBADMSG. */
int l3_wal_log_next(const l3_wal_log_reply_t *rep, size_t *off, l3_wal_log_ev_t *ev);

#endif
