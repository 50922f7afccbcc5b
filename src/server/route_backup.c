/* SPDX-License-Identifier: MIT */
/*
 * route_backup.c - GET /admin/backup: an online backup of the whole store, streamed as a
 * snapshot file (format in l3kv/wal.h: header, one PUT entry per document, trailer, every
 * part checksummed), so `l3kv-inspect wal FILE` verifies it and `l3kv --restore FILE`
 * installs it as the snapshot of an empty data directory.
 *
 * Runs in a worker process, on the event loop thread, like every handler; it never touches
 * a WAL file (S4) and reads the arena only through the store's locked calls. The body is
 * produced piece by piece with an h2o generator: each time h2o asks for more (on_proceed),
 * up to BACKUP_CHUNK bytes of entries are encoded into the one buffer the stream owns, so a
 * backup of any size holds about BACKUP_CHUNK bytes (plus the largest document) in memory
 * and the loop is never blocked longer than one chunk's worth of copies. ?rate_mib=N caps
 * the stream at N MiB/s (a piece waits on a timer until the bytes sent fit the rate), so a
 * large backup takes a bounded share of a worker's time next to the requests it serves
 * (default BACKUP_DEFAULT_RATE; 0 = as fast as the client reads).
 * Every piece after the first is produced from a timer (0 ms without a rate), never inline
 * from h2o's proceed callback; and one stream produces pieces for at most BACKUP_PASS_NS per
 * loop iteration (a 0 ms timeout re-linked from its callback runs again in the same pass),
 * then yields BACKUP_YIELD_MS: the loop serves its other connections between pieces.
 *
 * Consistency, the checkpoint's rule (walsetup.c): the header's sn_lsn is the store's last
 * LSN when the backup starts (also sent as X-L3KV-Backup-LSN); every document is copied under
 * its stripe lock (S8), so each entry is a complete document carrying its own LSN. A document
 * not written while the backup streams is in it exactly as it was at sn_lsn; one written
 * meanwhile is in it at some state between sn_lsn and the end (or, created meanwhile, may be
 * missing; deleted meanwhile, may still be there). The backup plus the records after sn_lsn
 * (the change feed) therefore gives the exact state, as recovery gives it from a checkpoint
 * and the WAL (S6: records already reflected are skipped by their LSN). sn_wal_seq is 1: a
 * restored directory starts without segments, so every segment its writer creates counts.
 *
 * Invariants: B1 the stream's bytes are a snapshot file or a truncated one (a store error
 * mid-stream aborts the connection, never ends it with a trailer), so a backup that was
 * cut short is refused by the verification; B2 memory per stream is bounded by
 * BACKUP_CHUNK + one encoded document (storage.max_document_bytes) + one key batch.
 */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/store.h"
#include "l3kv/wal.h"
#include "query.h"
#include "route.h"

#define BACKUP_CHUNK (64u << 10) /* bytes of entries per piece sent */
#define BACKUP_KEYS 256u         /* keys listed per l3_store_keys call */
#define BACKUP_TICK_MS 2u        /* a throttled stream looks again after this long */
#define BACKUP_MAX_RATE 65536u   /* ?rate_mib= upper bound (MiB/s) */
#define BACKUP_DEFAULT_RATE 32u  /* MiB/s without ?rate_mib= (docs/api.md, /admin/backup) */
#define BACKUP_PASS_NS 500000u   /* pieces one stream produces per loop iteration, at most this long */
#define BACKUP_YIELD_MS 1u       /* then the next piece waits this long (the loop polls meanwhile) */

typedef struct {
    h2o_generator_t gen; /* first: the callbacks find the stream from it */
    h2o_req_t *req;
    l3_wal_snap_enc_t enc;
    l3_store_t *st;
    uint64_t cursor; /* l3_store_keys position; 0 again when the listing is complete */
    bool listed;     /* the listing started */
    bool ended;      /* the final piece went out or the client is gone */
    uint8_t *buf;    /* the piece being sent */
    size_t cap, len;
    char *keys; /* the current key batch: [u32 klen][key] back to back */
    size_t klen_total, kpos, kcap;
    uint64_t rate; /* ?rate_mib= in bytes per second, 0 = as fast as the client reads */
    uint64_t t_start_ns, sent;
    h2o_loop_t *loop;
    h2o_timeout_entry_t ent; /* linked to one of the worker's backup timeouts */
    uint64_t pass_now;       /* h2o_now of the loop iteration the last piece was produced in */
    uint64_t pass_ns;        /* l3_now_ns when that iteration's first piece was */
} backup_t;

/*
 * The timeouts every backup stream of this worker links its entry to, made once per loop and
 * never disposed: now (0 ms, the next piece on the loop's next timer pass) and wait
 * (BACKUP_TICK_MS, a throttled stream looks again). A timeout owned by the request would be
 * freed with it while h2o's timer pass may still be walking that timeout (a piece sent from
 * on_tick can end the request), and its removal would shift the loop's list of timeouts
 * under that walk.
 */
static struct {
    h2o_loop_t *loop;
    h2o_timeout_t now, wait, yield;
} tmos;

static void tmos_init(h2o_loop_t *loop)
{
    if (tmos.loop == loop)
        return;
    h2o_timeout_init(loop, &tmos.now, 0);
    h2o_timeout_init(loop, &tmos.wait, BACKUP_TICK_MS);
    h2o_timeout_init(loop, &tmos.yield, BACKUP_YIELD_MS);
    tmos.loop = loop;
}

typedef struct {
    backup_t *b;
    int rc;
} batch_ctx_t;

static int grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    uint8_t *n = realloc(*p, need);
    if (n == NULL)
        return -ENOMEM;
    *p = n;
    *cap = need;
    return 0;
}

static int add_key(void *ctx, const void *key, size_t klen, uint64_t lsn)
{
    (void)lsn;
    batch_ctx_t *c = ctx;
    backup_t *b = c->b;
    uint32_t k = (uint32_t)klen;
    if ((c->rc = grow((uint8_t **)&b->keys, &b->kcap, b->klen_total + sizeof k + klen)) < 0)
        return 1;
    memcpy(b->keys + b->klen_total, &k, sizeof k);
    memcpy(b->keys + b->klen_total + sizeof k, key, klen);
    b->klen_total += sizeof k + klen;
    return 0;
}

/* The next key batch: 1 when there is one, 0 at the end of the listing, < 0 error. */
static int next_batch(backup_t *b)
{
    b->klen_total = b->kpos = 0;
    if (b->listed && b->cursor == 0)
        return 0;
    b->listed = true;
    batch_ctx_t c = {.b = b};
    int rc = l3_store_keys(b->st, NULL, 0, &b->cursor, BACKUP_KEYS, add_key, &c);
    if (rc < 0 || c.rc < 0)
        return rc < 0 ? rc : c.rc;
    return b->klen_total > 0 || b->cursor != 0 ? 1 : 0;
}

/* Encode the document of one key into the piece (a key deleted since it was listed is
 * skipped). 0 or < 0. */
static int add_doc(backup_t *b, const char *key, uint32_t klen)
{
    uint8_t *doc;
    size_t len;
    uint64_t lsn, exp = 0;
    unsigned flags = 0;
    int rc = l3_store_get_bin_exp(b->st, key, klen, &doc, &len, &lsn, &exp);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if (exp != 0) { /* the deadline follows the document (L3_WAL_RF_EXPIRY, wal.h) */
        uint8_t *d2 = realloc(doc, len + 8);
        if (d2 == NULL) {
            free(doc);
            return -ENOMEM;
        }
        doc = d2;
        l3_wal_put_deadline(doc + len, exp);
        len += 8;
        flags = L3_WAL_RF_EXPIRY;
    }
    uint64_t size = l3_wal_rec_size(klen, (uint32_t)len);
    rc = size > L3_WAL_REC_MAX ? -EMSGSIZE : grow(&b->buf, &b->cap, b->len + (size_t)size);
    int64_t n = rc < 0 ? rc
                       : l3_wal_snap_enc_add(&b->enc, b->buf + b->len, b->cap - b->len, key, klen, doc,
                                             (uint32_t)len, lsn, flags);
    free(doc);
    if (n < 0)
        return (int)n;
    b->len += (size_t)n;
    return 0;
}

/* Fill the piece with entries up to BACKUP_CHUNK bytes: 1 more to come, 0 the listing is
 * done (the trailer was appended), < 0 error. */
static int fill(backup_t *b)
{
    while (b->len < BACKUP_CHUNK) {
        if (b->kpos >= b->klen_total) {
            int rc = next_batch(b);
            if (rc < 0)
                return rc;
            if (rc == 0) {
                int g = grow(&b->buf, &b->cap, b->len + L3_WAL_SNAP_TRAILER);
                if (g < 0)
                    return g;
                l3_wal_snap_enc_trailer(&b->enc, b->buf + b->len);
                b->len += L3_WAL_SNAP_TRAILER;
                return 0;
            }
            continue;
        }
        uint32_t klen;
        memcpy(&klen, b->keys + b->kpos, sizeof klen);
        const char *key = b->keys + b->kpos + sizeof klen;
        b->kpos += sizeof klen + klen;
        int rc = add_doc(b, key, klen);
        if (rc < 0)
            return rc;
    }
    return 1;
}

static void send_piece(backup_t *b)
{
    int rc = fill(b);
    if (rc < 0) {
        /* B1: cut the stream short, never a trailer after a gap */
        b->ended = true;
        h2o_send(b->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    h2o_iovec_t iov = h2o_iovec_init(b->buf, b->len);
    if (rc == 0)
        b->ended = true;
    h2o_send(b->req, &iov, 1, rc == 0 ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

/* May the next piece go now? With a rate, not before the bytes sent so far (the last
 * piece, b->len, included) fit it. */
static bool due(const backup_t *b)
{
    if (b->rate == 0)
        return true;
    return l3_now_ns() >= b->t_start_ns + (uint64_t)((double)(b->sent + b->len) * 1e9 / (double)b->rate);
}

/* The timer: the next piece is produced from the loop's timer pass, never inline from
 * h2o's proceed callback (which a fast reader on loopback would call back to back without
 * returning to the loop), so the worker's other connections get their turn between pieces. */
static void on_tick(h2o_timeout_entry_t *e)
{
    backup_t *b = (backup_t *)((char *)e - offsetof(backup_t, ent));
    if (b->ended)
        return;
    if (!due(b)) {
        h2o_timeout_link(b->loop, &tmos.wait, &b->ent);
        return;
    }
    uint64_t now = h2o_now(b->loop);
    if (b->pass_now != now) {
        b->pass_now = now;
        b->pass_ns = l3_now_ns();
    }
    b->sent += b->len;
    b->len = 0;
    send_piece(b);
}

/* The timeout for the next piece: a 0 ms timeout re-linked from its own callback runs again
 * in the same timer pass (h2o's loop time does not advance within an iteration), so a
 * stream whose client reads as fast as pieces are made would keep the worker from polling
 * its other connections; past BACKUP_PASS_NS in one iteration the next piece yields. */
static h2o_timeout_t *next_timeout(const backup_t *b)
{
    if (!due(b))
        return &tmos.wait;
    if (b->pass_now == h2o_now(b->loop) && l3_now_ns() - b->pass_ns >= BACKUP_PASS_NS)
        return &tmos.yield;
    return &tmos.now;
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    backup_t *b = (backup_t *)g;
    if (!b->ended && !h2o_timeout_is_linked(&b->ent))
        h2o_timeout_link(b->loop, next_timeout(b), &b->ent);
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    backup_t *b = (backup_t *)g;
    b->ended = true;
    if (h2o_timeout_is_linked(&b->ent))
        h2o_timeout_unlink(&b->ent);
}

static void backup_dispose(void *p)
{
    backup_t *b = p;
    if (h2o_timeout_is_linked(&b->ent))
        h2o_timeout_unlink(&b->ent);
    free(b->buf);
    free(b->keys);
}

/* ?rate_mib=N (0..BACKUP_MAX_RATE MiB/s, 0 = unthrottled; default BACKUP_DEFAULT_RATE):
 * 0 and *ret = bytes/s (0 = none), -1 malformed. */
static int parse_rate(h2o_req_t *req, uint64_t *ret)
{
    *ret = (uint64_t)BACKUP_DEFAULT_RATE << 20;
    if (req->query_at == SIZE_MAX)
        return 0;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    l3_q_str_t k, v;
    while (l3_q_next(&q, end, &k, &v)) {
        if (k.len != 8 || memcmp(k.base, "rate_mib", 8) != 0)
            continue;
        uint64_t mib;
        if (v.base == NULL || !l3_q_u64(v.base, v.len, &mib) || mib > BACKUP_MAX_RATE)
            return -1;
        *ret = mib << 20;
    }
    return 0;
}

int l3_route_backup(l3_rq_t *rq, h2o_iovec_t unused)
{
    (void)unused;
    h2o_req_t *req = rq->req;
    uint64_t rate;
    if (parse_rate(req, &rate) < 0)
        return l3_http_fail(rq, 400, "bad_value", "rate_mib must be 0..%u (MiB/s, 0 = unthrottled)",
                            BACKUP_MAX_RATE);
    if (req->conn == NULL || req->conn->ctx == NULL) /* a request replayed without a connection */
        return l3_http_fail(rq, 503, "unavailable", "a backup streams only on a client connection");
    backup_t *b = h2o_mem_alloc_shared(&req->pool, sizeof *b, backup_dispose);
    memset(b, 0, sizeof *b);
    b->rate = rate;
    b->t_start_ns = l3_now_ns();
    b->loop = req->conn->ctx->loop;
    tmos_init(b->loop);
    b->ent.cb = on_tick;
    b->gen.proceed = on_proceed;
    b->gen.stop = on_stop;
    b->req = req;
    b->st = rq->env->store;
    uint64_t lsn = l3_store_last_lsn(b->st);
    if (grow(&b->buf, &b->cap, BACKUP_CHUNK + L3_WAL_SNAP_HDR) < 0)
        return l3_http_fail_rc(rq, -ENOMEM, L3_CTX_READ, NULL);
    l3_wal_snap_enc_header(&b->enc, 1, lsn, b->buf);
    b->len = L3_WAL_SNAP_HDR;
    char *v = h2o_mem_alloc_pool(&req->pool, 64);
    int vn = snprintf(v, 64, "%" PRIu64, lsn);
    char *cd = h2o_mem_alloc_pool(&req->pool, 96);
    int cn = snprintf(cd, 96, "attachment; filename=\"l3kv-backup-lsn%" PRIu64 ".snap\"", lsn);
    req->res.status = 200;
    req->res.reason = "OK";
    l3_http_add_header(req, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("application/octet-stream"));
    l3_http_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    l3_http_add_header(req, H2O_TOKEN_CONTENT_DISPOSITION, cd, (size_t)cn);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-l3kv-backup-lsn"), 0, NULL, v,
                          (size_t)vn);
    l3_http_record(rq, 200);
    h2o_start_response(req, &b->gen);
    if (rq->head) {
        b->ended = true;
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return 0;
    }
    send_piece(b);
    return 0;
}
