/* SPDX-License-Identifier: MIT */
/*
 * durable.c - durable replies.
 *
 * With storage.durability = "fsync" a successful write is answered only once the WAL
 * writer has made its record durable. The reply is prepared at once and parked in a FIFO
 * (in the request's pool, so h2o freeing the request - stream reset, connection gone -
 * unlinks it through the dispose callback); the worker's WAL eventfd, armed with the
 * newest ticket, wakes the loop when the durable position advances, and every parked reply
 * whose ticket is covered is sent. If the WAL fails (fdatasync error, disk full) the parked
 * writes are answered 503 durability_unknown: the change was applied in memory and its
 * record may still reach the disk once the WAL recovers (a restart may or may not show
 * it), so the reply must not claim that nothing changed. Handler time is recorded by the
 * caller when the reply is parked (it excludes the wait); the end-to-end time (from the
 * request's receipt, the wait included) is recorded here when the reply, or its 503, is
 * handed to h2o.
 *
 * With "replicated" the reply waits instead until a replica acknowledged a ring position at
 * or past its ticket (GET /changes?ack=, route_feed.c; the ticket is the record's end in the
 * ring, the feed's cursor the change's end: the same coordinate), or answers 503
 * replication_timeout after storage.replication_timeout_ms: the change is applied and in
 * this node's WAL, only not known to be on a replica.
 *
 * Tickets: l3_wal_last_ticket() is the ticket of the newest record this process appended;
 * it is read here and nowhere else in the server.
 */
#include <string.h>

#include <h2o.h>

#include "durable.h"
#include "errmap.h"
#include "l3kv/base.h"
#include "l3kv/wal.h"
#include "send.h"

#define ACK_TICK_MS 1u /* replicated: how often parked replies look at the acknowledged position */

void l3_durable_init(l3_durable_t *d, void *ring, bool wait, uint32_t slot, l3_obs_slot_t *obs)
{
    d->parked.prev = d->parked.next = &d->parked;
    d->nparked = 0;
    d->ring = ring;
    d->wait = wait;
    d->slot = slot;
    d->obs = obs;
}

static void unpark(l3_durable_reply_t *p)
{
    if (p->next == NULL)
        return;
    p->prev->next = p->next;
    p->next->prev = p->prev;
    p->next = p->prev = NULL;
    p->owner->nparked--;
}

static void reply_dispose(void *obj)
{
    unpark(obj);
}

size_t l3_durable_pending(const l3_durable_t *d)
{
    return d->nparked;
}

static void on_ack_tick(h2o_timeout_entry_t *e)
{
    l3_durable_poll(H2O_STRUCT_FROM_MEMBER(l3_durable_t, ack_ent, e));
}

void l3_durable_set_replicated(l3_durable_t *d, h2o_loop_t *loop, const _Atomic uint64_t *ack,
                               uint32_t timeout_ms)
{
    d->ack = ack;
    d->ack_timeout_ms = timeout_ms;
    d->loop = loop;
    h2o_timeout_init(loop, &d->ack_tmo, ACK_TICK_MS);
    d->ack_ent.cb = on_ack_tick;
}

/* replicated: 1 when a replica holds the ticket already, 0 to wait (the tick armed), < 0 the
 * local WAL failed */
static int ack_arm(l3_durable_t *d, uint64_t ticket)
{
    int err = l3_wal_ring_error(d->ring);
    if (err != 0)
        return err;
    if (atomic_load(d->ack) >= ticket)
        return 1;
    if (!h2o_timeout_is_linked(&d->ack_ent))
        h2o_timeout_link(d->loop, &d->ack_tmo, &d->ack_ent);
    return 0;
}

int l3_durable_park(l3_durable_t *d, h2o_req_t *req, int status, int head, const char *ctype,
                    const char *body, size_t body_len, uint64_t t0, l3_obs_route_t route)
{
    if (d->ring == NULL || (!d->wait && d->ack == NULL))
        return 1;
    uint64_t ticket = l3_wal_last_ticket();
    int rc = d->ack != NULL ? ack_arm(d, ticket) : l3_wal_notify_arm(d->ring, d->slot, ticket);
    if (rc != 0)
        return rc; /* 1: durable (acknowledged) already; < 0: the WAL failed */
    l3_durable_reply_t *p = h2o_mem_alloc_shared(&req->pool, sizeof(*p), reply_dispose);
    *p = (l3_durable_reply_t){.owner = d,
                              .req = req,
                              .ticket = ticket,
                              .t0 = t0,
                              .deadline = d->ack != NULL ? h2o_now(d->loop) + d->ack_timeout_ms : 0,
                              .status = status,
                              .route = route,
                              .head = head,
                              .ctype = ctype,
                              .body = body,
                              .body_len = body_len};
    p->prev = d->parked.prev;
    p->next = &d->parked;
    d->parked.prev->next = p;
    d->parked.prev = p;
    d->nparked++;
    return 0;
}

h2o_iovec_t l3_durable_unknown_reply(struct st_h2o_req_t *req)
{
    char *eb = h2o_mem_alloc_pool(&req->pool, 256);
    size_t n =
        l3_srv_err_json(eb, 256, L3_ERR_DURABILITY_UNKNOWN,
                        "the change was applied but the write-ahead log failed before it was durable; it "
                        "may or may not be kept: read the document to learn its state");
    l3_http_add_header(req, H2O_TOKEN_RETRY_AFTER, H2O_STRLIT("1"));
    return h2o_iovec_init(eb, n);
}

static void send_failed(l3_durable_t *d, l3_durable_reply_t *p)
{
    h2o_iovec_t body = l3_durable_unknown_reply(p->req);
    l3_obs_add(&d->obs->os_err5xx, 1);
    l3_http_send(p->req, 503, L3_CT_JSON, body, p->head);
}

static void send_timeout(l3_durable_t *d, l3_durable_reply_t *p)
{
    char *eb = h2o_mem_alloc_pool(&p->req->pool, 400);
    size_t n =
        l3_srv_err_json(eb, 400, L3_ERR_REPLICATION_TIMEOUT,
                        "the change was applied and logged on this node, but no replica acknowledged it "
                        "within storage.replication_timeout_ms: it is not known to be on a replica (it "
                        "is lost if this node is lost before a replica copies it); read the document to "
                        "learn its state");
    l3_http_add_header(p->req, H2O_TOKEN_RETRY_AFTER, H2O_STRLIT("1"));
    l3_obs_add(&d->obs->os_err5xx, 1);
    l3_http_send(p->req, 503, L3_CT_JSON, h2o_iovec_init(eb, n), p->head);
}

/* replicated: answer what a replica acknowledged, then what waited too long (both in
 * ticket order, which is also deadline order) */
static void poll_acked(l3_durable_t *d)
{
    uint64_t acked = atomic_load(d->ack), now = h2o_now(d->loop);
    int err = l3_wal_ring_error(d->ring);
    while (d->parked.next != &d->parked) {
        l3_durable_reply_t *p = d->parked.next;
        bool ok = p->ticket <= acked;
        if (!ok && err == 0 && now < p->deadline)
            break;
        unpark(p);
        l3_obs_record_e2e(d->obs, p->route, l3_now_ns() - p->t0);
        if (ok)
            l3_http_send(p->req, p->status, p->ctype, h2o_iovec_init(p->body, p->body_len), p->head);
        else if (err != 0)
            send_failed(d, p);
        else
            send_timeout(d, p);
    }
    if (d->parked.next != &d->parked && !h2o_timeout_is_linked(&d->ack_ent))
        h2o_timeout_link(d->loop, &d->ack_tmo, &d->ack_ent);
}

void l3_durable_poll(l3_durable_t *d)
{
    if (d->ring == NULL)
        return;
    if (d->ack != NULL) {
        poll_acked(d);
        return;
    }
    l3_wal_notify_ack(d->ring, d->slot);
    for (;;) {
        uint64_t durable = l3_wal_durable_ticket(d->ring);
        int err = l3_wal_ring_error(d->ring);
        while (d->parked.next != &d->parked && (d->parked.next->ticket <= durable || err != 0)) {
            l3_durable_reply_t *p = d->parked.next;
            unpark(p);
            l3_obs_record_e2e(d->obs, p->route, l3_now_ns() - p->t0);
            if (p->ticket <= durable)
                l3_http_send(p->req, p->status, p->ctype, h2o_iovec_init(p->body, p->body_len), p->head);
            else
                send_failed(d, p);
        }
        if (d->parked.next == &d->parked)
            return;
        /* re-arm for the newest parked ticket; 1 = became durable meanwhile: go round again */
        if (l3_wal_notify_arm(d->ring, d->slot, d->parked.prev->ticket) != 1)
            return;
    }
}
