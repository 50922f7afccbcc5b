/* SPDX-License-Identifier: MIT */
/*
 * route_feed.c - GET /changes: the change feed, in WAL order, read by each worker from the
 * shared WAL ring (l3kv/walfeed.h), and older than the ring from the retained WAL segments
 * through the writer process (feedlog.c's channel). Workers never open the WAL files, and
 * the write path does nothing for the feed: a worker with watchers looks at the ring every
 * FEED_TICK_MS (one timer per worker, only while it has watchers; FEED_TICK_REPLICATED_MS
 * with replicated durability, where writers wait for a replica's next poll), and again as
 * soon as a stream's previous chunk has been written if it stopped at a bound (FEED_OUT_CAP,
 * FEED_TICK_SLOTS) rather than at the end: a stream that keeps up gets one chunk per tick.
 * The worker decodes each ring record once for all its watchers (the window, next_change),
 * and streams with no prefix and no documents share each change's text: the first to send
 * it formats it into the window's text (FEED_CACHE_TEXT_BYTES), the others copy it.
 *
 * Cursor: 32 hex digits, the ring's epoch (its creation time, top bit CURSOR_MARK set) then
 * the ring position after the change (fixed width, so along one feed the cursor strictly
 * increases, also as text; epochs are wall-clock times, so also across restarts). A cursor
 * the ring no longer holds (overwritten, or of an earlier run) is read through the writer
 * while the retained segments hold it (storage.changes_retention_bytes), else 410
 * cursor_expired, as is one without the mark (an older version's format); a malformed one,
 * one ahead of the ring or not on a slot boundary is 400. With no retention one cursor of
 * the previous run survives a graceful restart: its final position (feedstat.h, the feed
 * position file), which stands for this ring's position 0. A graceful stop ends each SSE
 * stream with `event: progress` at the position it reached.
 *
 * The writer's channel: one non-blocking connection per worker in its event loop, one
 * question in flight (fill_log asks, on_log_read applies the answer and turns the watcher
 * that asked; the others wait their turn). A watcher that has not answered its request yet
 * (unanswered: its first read goes to the writer) gets its status from that first answer
 * (begin), so an expired or damaged range is a 410, not a reset. No answer within
 * FEED_LOG_TIMEOUT_MS breaks the connection: 503 feed_unavailable, or a reset.
 *
 * Watchers: one per request, in the request's pool (h2o freeing the request - connection
 * gone - unlinks it). A stream stages at most FEED_OUT_CAP bytes of events (one event more
 * when a single document is larger) and reads on from the ring only once its previous
 * chunk was written, so memory per watcher is bounded; a watcher whose position the ring
 * overwrites while it waits for a slow client gets `event: reset` with that cursor and
 * the stream ends (the writers never wait for it). Durability: in fsync mode, or with
 * durable_only=true, only changes below the durable position are sent.
 * Limits: FEED_MAX_WATCHERS per worker; per watcher and turn FEED_TICK_SLOTS ring reads of
 * FEED_CALL_SLOTS slots at most.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/error.h"
#include "l3kv/walfeed.h"
#include "auth.h"
#include "replica.h"
#include "route_feed.h"

#define FEED_TICK_MS 5u
#define FEED_TICK_REPLICATED_MS 1u
#define FEED_OUT_CAP (64u * 1024u)
#define FEED_TICK_SLOTS 8192u /* ring reads per watcher per turn */
#define FEED_CALL_SLOTS 256u  /* slots one read steps over at most (pads, aborted, pieces) */
#define FEED_MAX_WATCHERS 20000u
#define FEED_DEFAULT_HEARTBEAT 15000u
#define FEED_DEFAULT_TIMEOUT 25000u
#define FEED_MAX_MS 3600000u
#define FEED_DEFAULT_LIMIT 1000u
#define FEED_MAX_LIMIT 10000u
#define CURSOR_LEN 32u
#define CURSOR_MARK (UINT64_C(1) << 63) /* set in the first word: the cursor format with retention */
#define FEED_LOG_BYTES (64u * 1024u)    /* answer body asked from the writer per turn */
#define FEED_LOG_TIMEOUT_MS 5000u       /* the writer not answering in this time: 503 / reset */
#define FEED_CACHE_EVENTS 8192u
#define FEED_CACHE_KEY_BYTES (1024u * 1024u)
#define FEED_CACHE_TEXT_BYTES (4u * 1024u * 1024u) /* formatted events shared by the streams */

typedef enum { FEED_LONGPOLL, FEED_SSE, FEED_CONTINUOUS } feed_mode_t;

struct l3_feed;

typedef struct watcher {
    h2o_generator_t gen; /* first: the generator callbacks find the watcher from it */
    struct watcher *prev, *next;
    struct l3_feed *f;
    h2o_req_t *req;
    uint64_t t0;
    feed_mode_t mode;
    bool linked, include_docs, durable_only, sending, finishing, ended;
    bool head;       /* HEAD request */
    bool nowait;     /* long poll with timeout=0 (or HEAD): answer after the first read */
    bool unanswered; /* no status sent yet: waits for the writer's first answer (begin) */
    bool log_ready;  /* the writer's answer has been applied: fill returns log_rc once */
    bool backlog;    /* the last fill stopped at a bound, not at the end of what is there */
    int log_rc;
    const char *prefix;
    size_t plen;
    uint64_t pos;            /* next ring position to read */
    uint32_t cnext;          /* the window entry after the last one this watcher took (a hint) */
    uint64_t epoch;          /* the ring instance pos belongs to (an older run's while from_log) */
    bool from_log;           /* pos is older than the ring holds: read through the writer */
    uint64_t max, count;     /* changes to deliver (0 = no limit) and delivered */
    uint64_t staged;         /* changes in out, counted as sent once handed to h2o */
    uint64_t hb_ms, next_hb; /* heartbeat period, next heartbeat (h2o_now) */
    uint64_t deadline;       /* long poll: answer empty at this time */
    l3_buf_t out, sent;      /* staged events / the chunk h2o is writing */
} watcher_t;

/* the text forms a window entry can have cached: SSE, NDJSON (streams without documents) */
enum { TEXT_SSE, TEXT_NDJSON, TEXT_FORMS };

typedef struct {
    uint64_t from, end, lsn;
    uint32_t koff, klen;
    uint32_t toff[TEXT_FORMS], tlen[TEXT_FORMS]; /* its text in l3_feed_t.ctext (tlen 0: none yet) */
    uint8_t op, flags;
} feed_cev_t;

typedef struct l3_feed {
    watcher_t list; /* list head */
    size_t n;
    h2o_loop_t *loop;
    h2o_timeout_t tmo;
    h2o_timeout_entry_t ent;
    l3_route_env_t *env;
    uint64_t events, resets, started;
    /* the writer's feed channel: one connection, one question in flight */
    h2o_socket_t *lsock;
    bool lbusy;           /* a question is in flight */
    watcher_t *lq;        /* who asked it (NULL: gone meanwhile, the answer is dropped) */
    uint32_t lq_max;      /* its max_bytes */
    uint64_t lq_deadline; /* h2o_now after which the writer is taken as not answering */
    uint64_t lconn_since; /* h2o_now of the first failed connect of a run of them (0: none) */
    uint8_t lreq[L3_WAL_LOG_REQ_MAX];
    uint8_t key[L3_STORE_KEY_MAX];
    /* the decoded window (next_change) */
    bool cvalid;
    size_t ncev, ckeys_len;
    uint64_t cfrom, cend;
    feed_cev_t cev[FEED_CACHE_EVENTS];
    uint8_t ckeys[FEED_CACHE_KEY_BYTES];
    /* the window's events as the streams send them, formatted by the first watcher that
     * sends one and copied by the others (their cursors carry ctext_epoch) */
    l3_buf_t ctext;
    uint64_t ctext_epoch;
} l3_feed_t;

/* v as 16 lower-case hex digits */
static void hex16(char *out, uint64_t v)
{
    static const char hex[16] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

/* 32 lower-case hex digits (epoch with the mark, position) and a NUL: every event carries
 * one, so no printf */
static void fmt_cursor(char *out, uint64_t epoch, uint64_t pos)
{
    hex16(out, epoch | CURSOR_MARK);
    hex16(out + 16, pos);
    out[CURSOR_LEN] = '\0';
}

/* 0 ok, 1 a cursor of the format without the mark (an older version's), -1 malformed */
static int parse_cursor(const char *s, size_t n, uint64_t *ret_epoch, uint64_t *ret_pos)
{
    if (n != CURSOR_LEN)
        return -1;
    uint64_t v[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return -1;
        v[i / 16] = v[i / 16] << 4 | d;
    }
    *ret_epoch = v[0] & ~CURSOR_MARK;
    *ret_pos = v[1];
    return v[0] & CURSOR_MARK ? 0 : 1;
}

/* ------------------------------------------------------------------ events */

static int cat(l3_buf_t *b, const char *s, size_t n)
{
    return l3_http_buf_cat(b, s, n);
}

static int cats(l3_buf_t *b, const char *s)
{
    return cat(b, s, strlen(s));
}

/* a string literal, its length known at compile time */
#define CATL(b, lit) cat((b), "" lit, sizeof(lit) - 1)

/* {"key":..,"op":..,"version":..[,"cursor":..][,"doc":..]} */
static int event_json(l3_feed_t *f, watcher_t *w, const l3_wal_feed_ev_t *ev, const char *cursor,
                      bool with_cursor)
{
    l3_buf_t *b = &w->out;
    char num[24];
    if (CATL(b, "{\"key\":") != 0 || l3_http_buf_str(b, (const char *)f->key, ev->klen) != 0 ||
        CATL(b, ",\"op\":\"") != 0 || cats(b, l3_walop_name(ev->op, ev->flags)) != 0 ||
        CATL(b, "\",\"version\":") != 0 || cat(b, num, l3_http_u64_dec(num, ev->lsn)) != 0)
        return -ENOMEM;
    if (with_cursor &&
        (CATL(b, ",\"cursor\":\"") != 0 || cat(b, cursor, CURSOR_LEN) != 0 || CATL(b, "\"") != 0))
        return -ENOMEM;
    if (w->include_docs) {
        if (CATL(b, ",\"doc\":") != 0)
            return -ENOMEM;
        size_t mark = b->len;
        int rc = ev->op == L3_WALOP_DELETE
                     ? -ENOENT
                     : l3_store_get_json(f->env->store, f->key, ev->klen, NULL, 0, 0, b, NULL);
        if (rc < 0) {
            b->len = mark;
            if (rc != -ENOENT && rc != L3_ENOTFOUND)
                return rc;
            if (CATL(b, "null") != 0)
                return -ENOMEM;
        }
    }
    return CATL(b, "}");
}

static int event_text(l3_feed_t *f, watcher_t *w, const l3_wal_feed_ev_t *ev, uint64_t epoch)
{
    char cur[CURSOR_LEN + 1];
    fmt_cursor(cur, epoch, ev->end);
    l3_buf_t *b = &w->out;
    int rc;
    switch (w->mode) {
    case FEED_SSE:
        if (CATL(b, "id: ") != 0 || cat(b, cur, CURSOR_LEN) != 0 || CATL(b, "\nevent: change\ndata: ") != 0)
            return -ENOMEM;
        rc = event_json(f, w, ev, cur, false);
        return rc < 0 ? rc : CATL(b, "\n\n");
    case FEED_CONTINUOUS:
        rc = event_json(f, w, ev, cur, true);
        return rc < 0 ? rc : CATL(b, "\n");
    case FEED_LONGPOLL:
    default:
        if (w->count > 0 && CATL(b, ",") != 0)
            return -ENOMEM;
        return event_json(f, w, ev, cur, true);
    }
}

/* The window text form (TEXT_SSE, TEXT_NDJSON) w can share for window entry idx of epoch,
 * or -1: not in the window, a long poll, documents included, or the window's text is of
 * another epoch. */
static int text_form(const l3_feed_t *f, const watcher_t *w, int idx, uint64_t epoch)
{
    if (idx < 0 || w->include_docs || w->mode == FEED_LONGPOLL ||
        (f->ctext.len != 0 && f->ctext_epoch != epoch))
        return -1;
    return w->mode == FEED_SSE ? TEXT_SSE : TEXT_NDJSON;
}

/* Stage one change (the key in f->key) in w->out and count it; on failure w->out is as it
 * was. idx is the change's entry in the decoded window (-1: not in it): a stream without
 * documents copies the text another stream formatted for it, or formats it and keeps it
 * there, so N watchers of one worker format each change once. */
static int add_event(l3_feed_t *f, watcher_t *w, const l3_wal_feed_ev_t *ev, uint64_t epoch, int idx)
{
    int form = text_form(f, w, idx, epoch);
    feed_cev_t *c = form >= 0 ? &f->cev[idx] : NULL;
    size_t mark = w->out.len;
    int rc = c != NULL && c->tlen[form] != 0 ? cat(&w->out, f->ctext.ptr + c->toff[form], c->tlen[form])
                                             : event_text(f, w, ev, epoch);
    if (rc < 0) {
        w->out.len = mark;
        return rc;
    }
    size_t n = w->out.len - mark;
    if (c != NULL && c->tlen[form] == 0 && f->ctext.len + n <= FEED_CACHE_TEXT_BYTES &&
        cat(&f->ctext, w->out.ptr + mark, n) == 0) {
        c->toff[form] = (uint32_t)(f->ctext.len - n);
        c->tlen[form] = (uint32_t)n;
        f->ctext_epoch = epoch;
    }
    w->count++;
    w->staged++;
    return 0;
}

/* The worker's decoded window of the ring, shared by its watchers: most of them sit at the
 * same position, so each record is read from the ring once, not once per watcher. An entry
 * is a copy validated when it was read; a published record never changes, so it stays
 * true. Events [0, ncev) are consecutive changes: event i was found reading from
 * cev[i].from and ends at cev[i].end; cfrom is the end of the last one, and the slots in
 * [cfrom, cend) hold no change. Full: the next watcher at the end starts a new window. */
static int cache_find(const l3_feed_t *f, const watcher_t *w, uint64_t pos)
{
    /* a watcher mostly takes the window's entries one after another; the hint is checked
     * against pos (entries start at distinct positions), so a stale one only costs the search */
    if (w->cnext < f->ncev && f->cev[w->cnext].from == pos)
        return (int)w->cnext;
    size_t lo = 0, hi = f->ncev;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->cev[mid].from < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < f->ncev && f->cev[lo].from == pos ? (int)lo : -1;
}

/* The next change at w->pos below limit: 1 (*ret_ev, key in *ret_key, *ret_idx its window
 * entry or -1), 0 none yet, < 0 as l3_wal_feed_next. Advances w->pos. */
static int next_change(l3_feed_t *f, watcher_t *w, uint64_t limit, feed_cev_t *ret_ev,
                       const uint8_t **ret_key, int *ret_idx)
{
    int i = cache_find(f, w, w->pos);
    *ret_idx = i;
    if (i >= 0) {
        if (f->cev[i].end > limit)
            return 0;
        *ret_ev = f->cev[i];
        *ret_key = f->ckeys + f->cev[i].koff;
        w->pos = f->cev[i].end;
        w->cnext = (uint32_t)i + 1;
        return 1;
    }
    bool at_end = f->cvalid && (w->pos == f->cfrom || w->pos == f->cend);
    if (at_end && f->cend > w->pos && f->cend <= limit)
        w->pos = f->cend; /* [cfrom, cend) is known to hold no change */
    if (!at_end || f->ncev == FEED_CACHE_EVENTS || f->ckeys_len + L3_STORE_KEY_MAX > sizeof f->ckeys) {
        if (!f->cvalid || at_end) { /* start a new window here */
            f->cvalid = true;
            f->ncev = 0;
            f->ckeys_len = 0;
            f->ctext.len = 0;
            f->cfrom = f->cend = w->pos;
            at_end = true;
        }
    }
    l3_wal_feed_ev_t ev;
    uint64_t from = w->pos, np;
    uint8_t *kb = at_end ? f->ckeys + f->ckeys_len : f->key;
    int rc =
        l3_wal_feed_next(f->env->wal_ring, w->pos, limit, FEED_CALL_SLOTS, &ev, kb, L3_STORE_KEY_MAX, &np);
    if (rc < 0)
        return rc;
    w->pos = np;
    if (at_end && from == f->cend) {
        if (rc == 1) {
            f->cev[f->ncev] = (feed_cev_t){.from = f->cfrom,
                                           .end = ev.end,
                                           .lsn = ev.lsn,
                                           .koff = (uint32_t)f->ckeys_len,
                                           .klen = ev.klen,
                                           .op = ev.op,
                                           .flags = ev.flags};
            *ret_idx = (int)f->ncev;
            w->cnext = (uint32_t)f->ncev + 1;
            f->ncev++;
            f->ckeys_len += ev.klen;
            f->cfrom = f->cend = ev.end;
        } else {
            f->cend = np;
        }
    }
    if (rc == 0)
        return 0;
    *ret_ev = (feed_cev_t){
        .from = from, .end = ev.end, .lsn = ev.lsn, .klen = ev.klen, .op = ev.op, .flags = ev.flags};
    *ret_key = kb;
    return 1;
}

static void turn(watcher_t *w, uint64_t now);
static void begin(watcher_t *w);

/* The change at window entry idx (just taken by next_change, w->pos after it) and the ones
 * after it, as far as their text is cached and contiguous, staged with one copy: a stream
 * with no prefix and no documents that keeps up costs one memcpy per tick, not one
 * formatting per change. false: not for this watcher or not cached (the caller stages it). */
static bool take_run(l3_feed_t *f, watcher_t *w, int idx, uint64_t limit, int *added)
{
    int form = text_form(f, w, idx, w->epoch);
    if (form < 0 || w->plen != 0 || f->cev[idx].tlen[form] == 0) /* a cached text: ctext is of w's epoch */
        return false;
    const feed_cev_t *c = f->cev;
    size_t i = (size_t)idx, j = i + 1;
    uint64_t from = c[i].toff[form], to = from + c[i].tlen[form];
    uint64_t room = w->max == 0 ? UINT64_MAX : w->max - w->count;
    while (j < f->ncev && j - i < room && c[j].tlen[form] != 0 && c[j].toff[form] == to &&
           c[j].end <= limit && w->out.len + (to - from) + c[j].tlen[form] <= FEED_OUT_CAP)
        to += c[j++].tlen[form];
    if (cat(&w->out, f->ctext.ptr + from, (size_t)(to - from)) != 0)
        return false; /* the caller's own staging reports it */
    w->pos = c[j - 1].end;
    w->cnext = (uint32_t)j;
    w->count += j - i;
    w->staged += j - i;
    *added = 1;
    return true;
}

/* w at the back of f's watcher list (w is in no list) */
static void list_append(l3_feed_t *f, watcher_t *w)
{
    w->prev = f->list.prev;
    w->next = &f->list;
    f->list.prev->next = w;
    f->list.prev = w;
}

/* The channel is broken (closed, a damaged answer, no answer in time): the watcher whose
 * question was in flight gets -EPIPE; the next question connects again. */
static void log_broken(l3_feed_t *f)
{
    if (f->lsock != NULL)
        h2o_socket_close(f->lsock);
    f->lsock = NULL;
    watcher_t *w = f->lbusy ? f->lq : NULL;
    f->lbusy = false;
    f->lq = NULL;
    if (w != NULL) {
        w->log_rc = -EPIPE;
        w->log_ready = true;
        turn(w, h2o_now(f->loop));
    }
}

/* Apply one answer to w: its events into w->out, its cursor into w's position; back to the
 * ring once w->pos is readable there. As fill, and -EPIPE (a wrong answer), -ESTALE,
 * L3_ECORRUPT (a retained segment failed its checks). */
static int log_apply(l3_feed_t *f, watcher_t *w, const l3_wal_log_reply_t *rep)
{
    if (rep->status < 0)
        return rep->status == -ESTALE || rep->status == L3_ECORRUPT ? rep->status : -EPIPE;
    int rc, added = 0;
    size_t off = 0;
    l3_wal_log_ev_t le;
    while ((rc = l3_wal_log_next(rep, &off, &le)) == 1) {
        /* along the feed cursors only grow; the answer is checked, not trusted */
        if (le.klen > L3_STORE_KEY_MAX || le.epoch < w->epoch || (le.epoch == w->epoch && le.end <= w->pos))
            return -EPIPE;
        memcpy(f->key, le.key, le.klen);
        l3_wal_feed_ev_t ev = {.op = le.op, .flags = le.flags, .lsn = le.lsn, .klen = le.klen, .end = le.end};
        if ((rc = add_event(f, w, &ev, le.epoch, -1)) < 0)
            return rc;
        w->epoch = le.epoch;
        w->pos = le.end;
        added = 1;
    }
    if (rc < 0 || rep->next_epoch < w->epoch || (rep->next_epoch == w->epoch && rep->next_pos < w->pos))
        return -EPIPE;
    w->epoch = rep->next_epoch;
    w->pos = rep->next_pos;
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(f->env->wal_ring, &b);
    if (w->epoch == b.epoch && w->pos <= b.head && !l3_wal_feed_overrun(f->env->wal_ring, w->pos))
        w->from_log = false;
    return added;
}

static void on_log_read(h2o_socket_t *sock, const char *err)
{
    l3_feed_t *f = sock->data;
    if (err != NULL || !f->lbusy)
        return log_broken(f); /* closed, or bytes nobody asked for */
    l3_wal_log_reply_t rep;
    size_t used = 0;
    int rc =
        l3_wal_log_decode((const uint8_t *)sock->input->bytes, sock->input->size, f->lq_max, &rep, &used);
    if (rc == 1)
        return; /* more to come */
    if (rc < 0)
        return log_broken(f);
    watcher_t *w = f->lq;
    f->lbusy = false;
    f->lq = NULL;
    if (w != NULL) {
        w->log_rc = log_apply(f, w, &rep);
        w->log_ready = true;
    }
    h2o_buffer_consume(&sock->input, used);
    if (w == NULL)
        return;
    if (w->linked) { /* to the back of the list: the next question is another watcher's */
        w->prev->next = w->next;
        w->next->prev = w->prev;
        list_append(f, w);
    }
    turn(w, h2o_now(f->loop));
}

static void on_log_written(h2o_socket_t *sock, const char *err)
{
    if (err != NULL)
        log_broken(sock->data);
}

/* The writer's socket is not there or not listening: a writer that is still starting (its
 * socket comes after its setup, and a worker may serve before that) or restarting. Ask again
 * at the next turns for FEED_LOG_TIMEOUT_MS, then -EPIPE. */
static int connect_failed(l3_feed_t *f, int rc)
{
    uint64_t now = h2o_now(f->loop);
    if (rc != -ENOENT && rc != -ECONNREFUSED) {
        f->lconn_since = 0;
        return -EPIPE;
    }
    if (f->lconn_since == 0)
        f->lconn_since = now;
    if (now - f->lconn_since < FEED_LOG_TIMEOUT_MS)
        return -EINPROGRESS;
    f->lconn_since = 0;
    return -EPIPE;
}

/* Older changes than the ring holds, from the retained segments through the writer: ask
 * (when no other question is in flight), and -EINPROGRESS until the answer is applied
 * (on_log_read; fill then returns its result). -EPIPE when the writer cannot be reached. */
static int fill_log(l3_feed_t *f, watcher_t *w)
{
    if (f->lbusy || w->out.len >= FEED_OUT_CAP || (w->max != 0 && w->count >= w->max))
        return f->lbusy ? -EINPROGRESS : 0;
    l3_wal_log_req_t q = {.epoch = w->epoch,
                          .pos = w->pos,
                          .prefix = w->prefix,
                          .plen = (uint32_t)w->plen,
                          .max_events = (uint32_t)(w->max != 0 ? w->max - w->count : FEED_MAX_LIMIT),
                          .max_bytes = FEED_LOG_BYTES,
                          .durable_only = w->durable_only};
    int n = l3_wal_log_encode(&q, f->lreq, sizeof f->lreq);
    if (n < 0)
        return n;
    if (f->lsock == NULL) {
        int fd = l3_wal_log_connect(f->env->feed_sock);
        if (fd < 0)
            return connect_failed(f, fd);
        f->lconn_since = 0;
        f->lsock = h2o_evloop_socket_create(f->loop, fd, 0);
        f->lsock->data = f;
        h2o_socket_read_start(f->lsock, on_log_read);
    }
    f->lbusy = true;
    f->lq = w;
    f->lq_max = q.max_bytes;
    f->lq_deadline = h2o_now(f->loop) + FEED_LOG_TIMEOUT_MS;
    h2o_iovec_t iov = h2o_iovec_init(f->lreq, (size_t)n);
    h2o_socket_write(f->lsock, &iov, 1, on_log_written);
    return -EINPROGRESS;
}

/* Read from the ring into w->out. 1 when something was added, 0 nothing, -ESTALE
 * (overrun), -EBADMSG (position not in this ring), -ENOMEM; from the writer while
 * w->from_log (fill_log). */
static int fill(l3_feed_t *f, watcher_t *w)
{
    if (w->log_ready) {
        w->log_ready = false;
        return w->log_rc;
    }
    if (w->from_log)
        return fill_log(f, w);
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(f->env->wal_ring, &b);
    uint64_t limit = w->durable_only ? b.durable : b.head;
    int added = 0;
    unsigned budget = FEED_TICK_SLOTS;
    w->backlog = true;
    while (w->out.len < FEED_OUT_CAP && (w->max == 0 || w->count < w->max) && budget > 0) {
        feed_cev_t ce;
        const uint8_t *key;
        int idx;
        int rc = next_change(f, w, limit, &ce, &key, &idx);
        if (rc < 0)
            return rc;
        budget--; /* so a turn looks at FEED_TICK_SLOTS x FEED_CALL_SLOTS slots at most */
        if (rc == 0) {
            w->backlog = false;
            break;
        }
        if (w->plen != 0 && (ce.klen < w->plen || memcmp(key, w->prefix, w->plen) != 0))
            continue;
        if (take_run(f, w, idx, limit, &added))
            continue;
        if (key != f->key)
            memcpy(f->key, key, ce.klen);
        l3_wal_feed_ev_t ev = {.op = ce.op, .flags = ce.flags, .lsn = ce.lsn, .klen = ce.klen, .end = ce.end};
        if ((rc = add_event(f, w, &ev, w->epoch, idx)) < 0)
            return rc;
        added = 1;
    }
    return added;
}

/* ------------------------------------------------------------------ watcher lifetime */

/* the shared counters (feedstat.h) of this worker's slot */
static void stat_add(l3_feed_t *f, size_t field, int64_t d)
{
    l3_feed_slot_stats_t *s = f->env->feed_slot;
    if (s != NULL)
        __atomic_add_fetch((int64_t *)(void *)((char *)s + field), d, __ATOMIC_RELAXED);
}
#define STAT_ADD(f, field, d) stat_add((f), offsetof(l3_feed_slot_stats_t, field), (int64_t)(d))

/* the staged changes were handed to h2o */
static void count_sent(watcher_t *w)
{
    w->f->events += w->staged;
    STAT_ADD(w->f, fs_events_total, w->staged);
    w->staged = 0;
}

static void unlink_watcher(watcher_t *w)
{
    if (!w->linked)
        return;
    STAT_ADD(w->f, fs_watchers, -1);
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->linked = false;
    w->f->n--;
    if (w->f->n == 0 && h2o_timeout_is_linked(&w->f->ent))
        h2o_timeout_unlink(&w->f->ent);
}

static void watcher_dispose(void *p)
{
    watcher_t *w = p;
    if (w->f->lq == w)
        w->f->lq = NULL; /* its answer, when it comes, is dropped */
    unlink_watcher(w);
    free(w->out.ptr);
    free(w->sent.ptr);
}

static void record(watcher_t *w, int status)
{
    l3_rq_t rq = {.req = w->req, .env = w->f->env, .t0 = w->t0, .route = L3_OBS_R_OTHER};
    l3_http_record(&rq, status);
}

/* long poll: answer with what is staged (maybe nothing) */
static void longpoll_answer(watcher_t *w)
{
    char cur[CURSOR_LEN + 1], tail[96];
    fmt_cursor(cur, w->epoch, w->pos);
    int n = snprintf(tail, sizeof tail, "],\"cursor\":\"%s\"}\n", cur);
    l3_buf_t *b = &w->sent;
    b->len = 0;
    if (cats(b, "{\"changes\":[") != 0 || cat(b, w->out.ptr ? w->out.ptr : "", w->out.len) != 0 ||
        cat(b, tail, (size_t)n) != 0) {
        unlink_watcher(w);
        w->ended = true;
        l3_rq_t rq = {.req = w->req, .env = w->f->env, .t0 = w->t0, .route = L3_OBS_R_OTHER};
        l3_http_fail_rc(&rq, -ENOMEM, L3_CTX_READ, NULL);
        return;
    }
    unlink_watcher(w);
    w->ended = true;
    count_sent(w);
    record(w, 200);
    /* the primary's newest version: a replica's lag in records (follower.c) */
    char *lv = h2o_mem_alloc_pool(&w->req->pool, 24);
    int lvn = snprintf(lv, 24, "%" PRIu64, l3_store_last_lsn(w->f->env->store));
    h2o_add_header_by_str(&w->req->pool, &w->req->res.headers, H2O_STRLIT("x-l3kv-last-version"), 0, NULL, lv,
                          (size_t)lvn);
    if (w->f->env->durable.ack != NULL) /* writes wait for a replica's ?ack= */
        h2o_add_header_by_str(&w->req->pool, &w->req->res.headers, H2O_STRLIT("x-l3kv-durability"), 0, NULL,
                              H2O_STRLIT("replicated"));
    l3_http_send(w->req, 200, L3_CT_JSON, h2o_iovec_init(b->ptr, b->len), 0);
}

/* streams: hand the staged bytes to h2o unless a chunk is in flight */
static void flush(watcher_t *w)
{
    if (w->sending || w->ended)
        return;
    bool final = w->finishing || (w->max != 0 && w->count >= w->max);
    if (w->out.len == 0 && !final)
        return;
    l3_buf_t t = w->sent;
    w->sent = w->out;
    w->out = t;
    w->out.len = 0;
    count_sent(w);
    h2o_iovec_t iov = h2o_iovec_init(w->sent.ptr, w->sent.len);
    w->sending = true;
    if (final) {
        unlink_watcher(w);
        w->ended = true;
    }
    h2o_send(w->req, &iov, iov.len ? 1 : 0, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

/* stage the reset event that ends a stream: its position is gone from the ring */
static void prep_reset(watcher_t *w)
{
    char cur[CURSOR_LEN + 1];
    fmt_cursor(cur, w->epoch, w->pos);
    w->out.len = 0; /* staged events after pos are dropped: the client resumes from pos */
    w->staged = 0;
    if (w->mode == FEED_SSE)
        (void)(cats(&w->out, "event: reset\ndata: {\"cursor\":\"") || cats(&w->out, cur) ||
               cats(&w->out, "\"}\n\n"));
    else
        (void)(cats(&w->out, "{\"reset\":true,\"cursor\":\"") || cats(&w->out, cur) ||
               cats(&w->out, "\"}\n"));
    w->finishing = true;
    w->f->resets++;
    STAT_ADD(w->f, fs_resets_total, 1);
}

/* SSE: stage `event: progress` with the position reached */
static void progress(watcher_t *w)
{
    char cur[CURSOR_LEN + 1];
    fmt_cursor(cur, w->epoch, w->pos);
    (void)(cats(&w->out, "event: progress\ndata: {\"cursor\":\"") || cats(&w->out, cur) ||
           cats(&w->out, "\"}\n\n"));
}

static void heartbeat(watcher_t *w, uint64_t now)
{
    if (w->hb_ms == 0 || now < w->next_hb)
        return;
    w->next_hb = now + w->hb_ms;
    if (w->mode == FEED_CONTINUOUS) {
        (void)cats(&w->out, "\n");
        return;
    }
    (void)cats(&w->out, ": heartbeat\n\n");
    progress(w);
}

/* one turn for one watcher */
static void turn(watcher_t *w, uint64_t now)
{
    l3_feed_t *f = w->f;
    if (w->ended)
        return;
    if (w->unanswered) {
        begin(w);
        return;
    }
    if (w->mode == FEED_LONGPOLL) {
        int rc = fill(f, w);
        if (rc == -EINPROGRESS)
            rc = 0; /* the writer's answer comes later */
        if (rc != 0 || now >= w->deadline || w->finishing)
            longpoll_answer(w); /* an overrun ends it with what it has; the next request gets 410 */
        return;
    }
    if (w->sending) {
        /* a slow client: once the ring overwrote its position it can never catch up */
        if (!w->finishing && l3_wal_feed_overrun(f->env->wal_ring, w->pos))
            prep_reset(w); /* sent when the chunk in flight is written */
        return;
    }
    if (w->finishing) {
        flush(w);
        return;
    }
    int rc = fill(f, w);
    if (rc < 0 && rc != -ENOMEM && rc != -EINPROGRESS) {
        prep_reset(w);
        flush(w);
        return;
    }
    heartbeat(w, now);
    flush(w);
}

static void on_tick(h2o_timeout_entry_t *e)
{
    l3_feed_t *f = H2O_STRUCT_FROM_MEMBER(l3_feed_t, ent, e);
    uint64_t now = h2o_now(f->loop);
    if (f->lbusy && now >= f->lq_deadline)
        log_broken(f);
    /* turn() may unlink w (the answer or the final chunk): take next first */
    for (watcher_t *w = f->list.next, *nx; w != &f->list; w = nx) {
        nx = w->next;
        turn(w, now);
    }
    if (f->n > 0 && !h2o_timeout_is_linked(&f->ent))
        h2o_timeout_link(f->loop, &f->tmo, &f->ent);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    watcher_t *w = (watcher_t *)g;
    w->sending = false;
    w->sent.len = 0;
    if (w->ended)
        return;
    /* a stream that has caught up waits for the tick, so its changes go out in one chunk
     * per tick instead of one small write (and one wake-up of its client) per loop pass */
    if (w->backlog || w->finishing || w->from_log)
        turn(w, h2o_now(w->f->loop));
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    watcher_t *w = (watcher_t *)g;
    w->ended = true;
    unlink_watcher(w);
}

static l3_feed_t *feed_get(l3_route_env_t *env, h2o_loop_t *loop)
{
    if (env->feed == NULL) {
        l3_feed_t *f = calloc(1, sizeof *f);
        if (f == NULL)
            return NULL;
        f->list.next = f->list.prev = &f->list;
        f->loop = loop;
        f->env = env;
        /* replicated durability: writers wait for a replica's next poll, so look sooner */
        h2o_timeout_init(loop, &f->tmo, env->durable.ack != NULL ? FEED_TICK_REPLICATED_MS : FEED_TICK_MS);
        f->ent.cb = on_tick;
        env->feed = f;
    }
    return env->feed;
}

int l3_feed_metrics(const l3_route_env_t *env, l3_obs_changes_t *ret)
{
    memset(ret, 0, sizeof *ret);
    if (env->wal_ring == NULL)
        return -ENOENT;
    l3_feed_totals_t t;
    l3_feed_stats_totals(env->feed_stats, &t);
    ret->watchers = t.watchers;
    ret->events_sent_total = t.events_sent;
    ret->resets_total = t.resets;
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(env->wal_ring, &b);
    uint64_t e = b.epoch, p = b.oldest;
    const l3_wal_retain_info_t *ri = env->feed_stats != NULL ? &env->feed_stats->fh_retain : NULL;
    if (ri != NULL && env->feed_sock != NULL) {
        uint64_t re = __atomic_load_n(&ri->oldest_epoch, __ATOMIC_ACQUIRE);
        uint64_t rp = __atomic_load_n(&ri->oldest_pos, __ATOMIC_RELAXED);
        if (re != 0 && (re < e || (re == e && rp < p))) /* the retained segments reach further back */
            e = re, p = rp;
        ret->retained_bytes = __atomic_load_n(&ri->retained_bytes, __ATOMIC_RELAXED);
    }
    fmt_cursor(ret->oldest_cursor, e, p);
    return 0;
}

void l3_feed_shutdown(l3_route_env_t *env)
{
    l3_feed_t *f = env->feed;
    if (f == NULL)
        return;
    for (watcher_t *w = f->list.next, *nx; w != &f->list; w = nx) {
        nx = w->next;
        if (w->unanswered) {
            unlink_watcher(w);
            w->ended = true;
            l3_rq_t rq = {.req = w->req, .env = env, .t0 = w->t0, .route = L3_OBS_R_OTHER};
            l3_http_fail(&rq, 503, "feed_unavailable", "the server is stopping; retry the cursor later");
            continue;
        }
        if (w->mode == FEED_SSE && !w->sending && !w->finishing && !w->from_log && fill(f, w) >= 0)
            progress(w); /* its cursor resumes after a restart when nothing was written since */
        w->finishing = true;
        if (!w->sending)
            turn(w, h2o_now(f->loop));
    }
}

/* ------------------------------------------------------------------ the request */

typedef struct {
    l3_q_str_t since, prefix, include_docs, feed, heartbeat, timeout, limit, durable_only, ack;
} feed_query_t;

/* Split the query into the feed's parameters (values decoded into the request pool). */
static int feed_query(h2o_req_t *req, feed_query_t *q)
{
    memset(q, 0, sizeof *q);
    if (req->query_at == SIZE_MAX)
        return 0;
    const char *s = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *e = amp ? amp : end, *eq = memchr(s, '=', (size_t)(e - s));
        const char *v = eq ? eq + 1 : e;
        size_t nlen = (size_t)((eq ? eq : e) - s), vlen = (size_t)(e - v);
        char *buf = h2o_mem_alloc_pool(&req->pool, vlen + 1);
        for (size_t i = 0; i < vlen; i++)
            buf[i] = v[i] == '+' ? ' ' : v[i];
        long dl = l3_q_path_decode(buf, vlen, buf);
        if (dl < 0)
            return -1;
        l3_q_str_t val = {buf, (size_t)dl};
#define P(name)                                                                                              \
    if (nlen == sizeof(#name) - 1 && memcmp(s, #name, nlen) == 0)                                            \
        q->name = val;
        P(since)
        P(prefix)
        P(include_docs)
        P(feed)
        P(heartbeat)
        P(timeout)
        P(limit)
        P(durable_only)
        P(ack)
#undef P
        s = e + 1;
    }
    return 0;
}

static bool is_lit(l3_q_str_t v, const char *lit)
{
    return v.base != NULL && v.len == strlen(lit) && memcmp(v.base, lit, v.len) == 0;
}

/* absent -> def; "true"/"false" -> 1/0; else -1 */
static int q_bool(l3_q_str_t v, int def)
{
    if (v.base == NULL)
        return def;
    return is_lit(v, "true") ? 1 : is_lit(v, "false") ? 0 : -1;
}

static int q_ms(l3_q_str_t v, uint64_t def, uint64_t *ret)
{
    *ret = def;
    return v.base == NULL || (l3_q_u64(v.base, v.len, ret) && *ret <= FEED_MAX_MS) ? 0 : -1;
}

/* A watcher's parameters, from the query string and the headers. */
typedef struct {
    feed_mode_t mode;
    int docs, donly;
    uint64_t hb, tmo, limit;
    l3_q_str_t prefix, since;
} feed_params_t;

/* ?ack=<cursor>: a replica holds every change up to it durably (replicated durability,
 * durable.c). Taken from a token with scope replicate or admin only (a reader must not
 * release other clients' writes); a cursor of an earlier run is ignored. 0, or -1 answered. */
static int take_ack(l3_rq_t *rq, l3_q_str_t v)
{
    uint64_t epoch, pos;
    if (parse_cursor(v.base, v.len, &epoch, &pos) != 0 || pos % 16 != 0)
        return (l3_http_fail(rq, 400, "bad_value", "ack must be a cursor this feed returned"), -1);
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(rq->env->wal_ring, &b);
    if (epoch != b.epoch || (rq->scopes & (L3_SCOPE_REPLICATE | L3_SCOPE_ADMIN)) == 0)
        return 0;
    l3_repl_ack(rq->env->repl, pos <= b.head ? pos : b.head);
    if (rq->env->durable.ack != NULL)
        l3_durable_poll(&rq->env->durable); /* this worker's own parked replies at once */
    return 0;
}

/* Read and check the parameters. 0, or -1 when the request was answered with an error. */
static int feed_params(l3_rq_t *rq, feed_params_t *p)
{
    h2o_req_t *req = rq->req;
    feed_query_t q;
    if (feed_query(req, &q) != 0)
        return (l3_http_fail(rq, 400, "bad_query", "malformed percent-escape in the query string"),
                -1); /* answered */
    p->mode = FEED_LONGPOLL;
    if (q.feed.base == NULL) {
        h2o_iovec_t acc = l3_http_header(req, H2O_TOKEN_ACCEPT);
        if (acc.base != NULL && l3_q_contains_ci(acc.base, acc.len, "text/event-stream"))
            p->mode = FEED_SSE;
    } else if (is_lit(q.feed, "sse") || is_lit(q.feed, "eventsource")) {
        p->mode = FEED_SSE;
    } else if (is_lit(q.feed, "continuous")) {
        p->mode = FEED_CONTINUOUS;
    } else if (!is_lit(q.feed, "longpoll")) {
        return (l3_http_fail(rq, 400, "bad_value", "feed must be longpoll, sse or continuous"),
                -1); /* answered */
    }
    p->docs = q_bool(q.include_docs, 0);
    p->donly = q_bool(q.durable_only, 0);
    if (p->docs < 0 || p->donly < 0)
        return (l3_http_fail(rq, 400, "bad_value", "include_docs and durable_only take true or false"),
                -1); /* answered */
    p->limit = p->mode == FEED_LONGPOLL ? FEED_DEFAULT_LIMIT : 0;
    if (q_ms(q.heartbeat, FEED_DEFAULT_HEARTBEAT, &p->hb) != 0 || p->hb == 0)
        return (l3_http_fail(rq, 400, "bad_value", "heartbeat must be 1..%u ms", FEED_MAX_MS),
                -1); /* answered */
    if (q_ms(q.timeout, FEED_DEFAULT_TIMEOUT, &p->tmo) != 0)
        return (l3_http_fail(rq, 400, "bad_value", "timeout must be 0..%u ms", FEED_MAX_MS),
                -1); /* answered */
    if (q.limit.base != NULL &&
        (!l3_q_u64(q.limit.base, q.limit.len, &p->limit) || p->limit == 0 || p->limit > FEED_MAX_LIMIT))
        return (l3_http_fail(rq, 400, "bad_value", "limit must be 1..%u", FEED_MAX_LIMIT), -1); /* answered */
    if (q.prefix.base != NULL && q.prefix.len > L3_STORE_KEY_MAX)
        return (l3_http_fail(rq, 400, "bad_value", "prefix longer than %u bytes", L3_STORE_KEY_MAX),
                -1); /* answered */
    if (q.ack.base != NULL && take_ack(rq, q.ack) != 0)
        return -1; /* answered */
    p->prefix = q.prefix;
    p->since = q.since;
    if (p->since.base == NULL) {
        ssize_t hi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
        if (hi >= 0)
            p->since = (l3_q_str_t){req->headers.entries[hi].value.base, req->headers.entries[hi].value.len};
    }
    return 0;
}

/* Where a watcher starts. */
typedef struct {
    uint64_t epoch, pos;
    bool from_log;
} feed_origin_t;

static int expired(l3_rq_t *rq, const char *why)
{
    return (l3_http_fail(rq, 410, "cursor_expired",
                         "%s; list the documents and follow the feed from since=now", why),
            -1); /* answered */
}

/* The position a watcher starts at: the head for "now" or no cursor, else the cursor's (in
 * the ring, or through the writer when the ring no longer holds it and the log is retained).
 * 0, or -1 when the request was answered (400 bad_cursor, 410 cursor_expired). */
static int feed_start(l3_rq_t *rq, l3_q_str_t since, feed_origin_t *o)
{
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(rq->env->wal_ring, &b);
    *o = (feed_origin_t){.epoch = b.epoch, .pos = b.head};
    if (since.base == NULL || is_lit(since, "now"))
        return 0;
    uint64_t epoch, pos;
    int fmt = parse_cursor(since.base, since.len, &epoch, &pos);
    if (fmt < 0 || pos % 16 != 0)
        return (l3_http_fail(rq, 400, "bad_cursor", "since must be \"now\" or a cursor this feed returned"),
                -1); /* answered */
    if (fmt == 1)
        return expired(rq, "the cursor is of a format older versions of the server returned");
    uint64_t pe, pend;
    if (epoch != b.epoch && l3_feed_stats_prev(rq->env->feed_stats, &pe, &pend) == 1 && epoch == pe &&
        pos == pend)
        epoch = b.epoch, pos = 0; /* the final cursor of the previous run: this ring's start */
    bool logged = rq->env->feed_sock != NULL;
    if (epoch > b.epoch || (epoch == b.epoch && pos > b.head))
        return (l3_http_fail(rq, 400, "bad_cursor", "the cursor is not one this feed returned"),
                -1); /* answered */
    if (epoch != b.epoch && !logged)
        return expired(rq, "the cursor is from before the server restarted and the log is not retained "
                           "('storage.changes_retention_bytes' 0)");
    bool old = epoch != b.epoch || (pos < b.head && l3_wal_feed_overrun(rq->env->wal_ring, pos));
    if (old && !logged)
        return expired(rq, "the changes after this cursor are no longer retained");
    *o = (feed_origin_t){.epoch = epoch, .pos = pos, .from_log = old};
    return 0;
}

/* Answer the status of a watcher whose first read failed with rc. */
static void first_fail(l3_rq_t *rq, int rc)
{
    if (rc == -ESTALE)
        expired(rq, "the changes after this cursor are no longer retained");
    else if (rc == L3_ECORRUPT)
        expired(rq, "a retained WAL segment after this cursor failed its checks (the server log names it), "
                    "so its changes cannot be sent");
    else if (rc == -EBADMSG)
        l3_http_fail(rq, 400, "bad_cursor", "the cursor is not one this feed returned");
    else if (rc == -EPIPE)
        l3_http_fail(rq, 503, "feed_unavailable",
                     "the WAL writer does not answer for the retained log; retry the cursor later");
    else
        l3_http_fail_rc(rq, rc, L3_CTX_READ, NULL);
}

/* A new watcher in the request's pool, not yet linked into its worker's feed. */
static watcher_t *watcher_new(l3_rq_t *rq, l3_feed_t *f, const feed_params_t *p, const feed_origin_t *o)
{
    h2o_req_t *req = rq->req;
    watcher_t *w = h2o_mem_alloc_shared(&req->pool, sizeof *w, watcher_dispose);
    memset(w, 0, sizeof *w);
    w->gen.proceed = on_proceed;
    w->gen.stop = on_stop;
    w->f = f;
    w->req = req;
    w->t0 = rq->t0;
    w->mode = p->mode;
    w->include_docs = p->docs == 1;
    w->durable_only = p->donly == 1 || rq->env->durable.wait;
    w->prefix = p->prefix.base;
    w->plen = p->prefix.base ? p->prefix.len : 0;
    w->pos = o->pos;
    w->epoch = o->epoch;
    w->from_log = o->from_log;
    w->max = p->limit;
    w->hb_ms = p->hb;
    uint64_t now = h2o_now(f->loop);
    w->next_hb = now + p->hb;
    w->deadline = now + p->tmo;
    w->head = rq->head;
    w->nowait = p->tmo == 0 || rq->head;
    return w;
}

/* SSE / NDJSON: the response head and a first chunk go at once. 1 when done (HEAD). */
static int stream_start(l3_rq_t *rq, watcher_t *w)
{
    h2o_req_t *req = rq->req;
    req->res.status = 200;
    req->res.reason = "OK";
    const char *ct = w->mode == FEED_SSE ? "text/event-stream" : "application/x-ndjson";
    l3_http_add_header(req, H2O_TOKEN_CONTENT_TYPE, ct, strlen(ct));
    l3_http_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-cache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL,
                          H2O_STRLIT("no"));
    record(w, 200);
    h2o_start_response(req, &w->gen);
    if (rq->head) {
        w->ended = true;
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return 1;
    }
    /* a first chunk at once, so that the headers leave now (and proxies see a stream) */
    if (w->mode == FEED_SSE)
        (void)cats(&w->out, ": l3kv change feed\n\n");
    else
        (void)cats(&w->out, "\n");
    return 0;
}

/* The first read of a linked watcher decides its status: an expired or damaged range is an
 * HTTP status, not a reset. A read through the writer waits for its answer: the watcher
 * stays unanswered and turn() calls this again. Long poll: the answer at once when there
 * are changes or no wait was asked. Streams: the response head and a first chunk. */
static void begin(watcher_t *w)
{
    int rc = fill(w->f, w);
    w->unanswered = rc == -EINPROGRESS;
    if (w->unanswered)
        return;
    l3_rq_t rq = {.req = w->req, .env = w->f->env, .t0 = w->t0, .route = L3_OBS_R_OTHER, .head = w->head};
    if (rc < 0) {
        unlink_watcher(w);
        w->ended = true;
        first_fail(&rq, rc);
        return;
    }
    if (w->mode == FEED_LONGPOLL) {
        if (rc > 0 || w->nowait)
            longpoll_answer(w);
        return;
    }
    if (stream_start(&rq, w) != 0) {
        unlink_watcher(w);
        return;
    }
    turn(w, h2o_now(w->f->loop));
}

int l3_route_changes(l3_rq_t *rq, h2o_iovec_t unused)
{
    (void)unused;
    h2o_req_t *req = rq->req;
    if (rq->env->wal_ring == NULL)
        return l3_http_fail(rq, 503, "feed_unavailable",
                            "this server runs without a WAL, so there is no feed");
    feed_params_t p;
    feed_origin_t o;
    if (feed_params(rq, &p) < 0 || feed_start(rq, p.since, &o) < 0)
        return 0;
    l3_feed_t *f = feed_get(rq->env, req->conn->ctx->loop);
    if (f == NULL)
        return l3_http_fail_rc(rq, -ENOMEM, L3_CTX_READ, NULL);
    if (f->n >= FEED_MAX_WATCHERS)
        return l3_http_fail(rq, 503, "too_many_watchers", "this worker serves %u watchers already",
                            FEED_MAX_WATCHERS);
    watcher_t *w = watcher_new(rq, f, &p, &o);
    f->started++;
    list_append(f, w);
    w->linked = true;
    f->n++;
    STAT_ADD(f, fs_watchers, 1);
    if (!h2o_timeout_is_linked(&f->ent))
        h2o_timeout_link(f->loop, &f->tmo, &f->ent);
    begin(w);
    return 0;
}
