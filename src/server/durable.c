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

int l3_durable_park(l3_durable_t *d, h2o_req_t *req, int status, int head, const char *ctype,
                    const char *body, size_t body_len, uint64_t t0, l3_obs_route_t route)
{
    if (d->ring == NULL || !d->wait)
        return 1;
    uint64_t ticket = l3_wal_last_ticket();
    int rc = l3_wal_notify_arm(d->ring, d->slot, ticket);
    if (rc != 0)
        return rc; /* 1: durable already; < 0: the WAL failed */
    l3_durable_reply_t *p = h2o_mem_alloc_shared(&req->pool, sizeof(*p), reply_dispose);
    *p = (l3_durable_reply_t){.owner = d,
                              .req = req,
                              .ticket = ticket,
                              .t0 = t0,
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

void l3_durable_poll(l3_durable_t *d)
{
    if (d->ring == NULL)
        return;
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
