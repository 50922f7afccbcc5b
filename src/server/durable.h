/* SPDX-License-Identifier: MIT */
/*
 * durable.h - reply parking: a successful write is answered only once the WAL writer has
 * made its record durable ("fsync"), or once a replica acknowledged it ("replicated").
 * The only reader of the WAL ticket in the server.
 */
#ifndef L3KV_SRV_DURABLE_H
#define L3KV_SRV_DURABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "obs.h"

struct st_h2o_req_t;

struct l3_durable;

/** A parked reply (in the request's pool). */
typedef struct l3_durable_reply {
    struct l3_durable_reply *prev, *next;
    struct l3_durable *owner;
    struct st_h2o_req_t *req;
    uint64_t ticket;
    uint64_t t0;       /* when the request was received (l3_now_ns): end-to-end time */
    uint64_t deadline; /* replicated: h2o_now after which it is answered 503 replication_timeout */
    int status, head;
    l3_obs_route_t route;
    const char *ctype;
    const char *body;
    size_t body_len;
} l3_durable_reply_t;

/** One worker's parked replies; l3_durable_init before use. */
typedef struct l3_durable {
    l3_durable_reply_t parked; /* list head */
    size_t nparked;
    void *ring;         /* l3_wal_ring_t * or NULL (no WAL) */
    uint32_t slot;      /* this worker's eventfd slot */
    bool wait;          /* storage.durability = "fsync" */
    l3_obs_slot_t *obs; /* for the 5xx count of replies failed late and end-to-end times */
    /* storage.durability = "replicated" (l3_durable_set_replicated): a reply waits until a
     * replica acknowledged its record (*ack, a ring position) or ack_timeout_ms passed;
     * looked at every ACK_TICK_MS while replies are parked, and at once when an
     * acknowledgement reaches this worker (l3_durable_poll) */
    const _Atomic uint64_t *ack;
    uint32_t ack_timeout_ms;
    h2o_loop_t *loop;
    h2o_timeout_t ack_tmo;
    h2o_timeout_entry_t ack_ent;
} l3_durable_t;

void l3_durable_init(l3_durable_t *d, void *ring, bool wait, uint32_t slot, l3_obs_slot_t *obs);

/** Switch d to replicated durability: ack is the shared acknowledged position. */
void l3_durable_set_replicated(l3_durable_t *d, h2o_loop_t *loop, const _Atomic uint64_t *ack,
                               uint32_t timeout_ms);

/**
 * Park a prepared reply until the newest WAL ticket is durable. Returns 1 when the reply
 * must be sent now (no waiting configured, or already durable), 0 when it was parked, or
 * -errno when the WAL cannot make changes durable (the caller answers 503).
 */
int l3_durable_park(l3_durable_t *d, struct st_h2o_req_t *req, int status, int head, const char *ctype,
                    const char *body, size_t body_len, uint64_t t0, l3_obs_route_t route);

/** Error name of a write whose outcome is not known: applied in memory, its WAL record
 *  neither known durable nor known lost (docs/api.md). */
#define L3_ERR_DURABILITY_UNKNOWN "durability_unknown"
/** Error name of a write no replica acknowledged in time (replicated durability). */
#define L3_ERR_REPLICATION_TIMEOUT "replication_timeout"

/** The 503 durability_unknown reply's body (in the request's pool), with Retry-After added
 *  to the response headers; the caller sends it with status 503. */
struct st_h2o_iovec_t l3_durable_unknown_reply(struct st_h2o_req_t *req);

/** The WAL notification eventfd became readable (or a periodic check): send the replies
 *  whose records are now durable, fail them all if the WAL failed. */
void l3_durable_poll(l3_durable_t *d);

/** Replies waiting for durability. */
size_t l3_durable_pending(const l3_durable_t *d);

#endif
