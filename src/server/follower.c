/* SPDX-License-Identifier: MIT */
/*
 * follower.c - the replication follower: a supervisor role process of a replica that copies
 * the primary's documents into this node's arena through this node's store, so every change
 * it applies is logged in this node's own WAL (by its writer) like a client's write.
 *
 * Bootstrap (no saved position, or the primary no longer retains it): take the primary's
 * feed head (GET /changes?since=now&timeout=0), download GET /admin/backup into
 * <data_dir>/replica.boot, verify it whole and load it (each document written anew, so it
 * gets a new local LSN), delete the local keys the backup did not rewrite (LSN at or below
 * the last local LSN before the load), then follow from the head taken first. Changes
 * between that head and the backup are applied again: each change carries the document
 * as the primary has it when the change is sent (include_docs), or its deletion, so
 * applying a change twice or late converges to the primary's state (docs/scale-out.md).
 *
 * Following: long polls GET /changes?since=<cursor>&include_docs=true&timeout=1000 with up
 * to replication.batch changes an answer; each change is applied under the replication
 * block's lock while the node is still a replica (a promotion takes that lock). The answer
 * is parsed with the document parser (one buffer; strings, numbers and nesting exactly as
 * the primary wrote them); an answer nested deeper than the parser's limit (a document at
 * the nesting limit inside the answer's own three levels) is fetched again change by
 * change without documents, each document then read with GET /kv/<key> in its binary form.
 *
 * Resume: the state file (replica.h) holds the cursor after the last change applied; it is
 * written at most every SAVE_MS and only after this node's WAL made every applied change
 * durable, so after a crash the follower resumes at or before what it holds (applying
 * again is harmless, above). A graceful stop saves it last. Lag (/metrics): the primary's
 * last LSN (X-L3KV-Last-Version of each feed answer) minus the LSN of the last change
 * applied, and the time since the replica was last caught up.
 *
 * Limits: an answer is at most 2 x storage.max_document_bytes + 1 MiB (beyond: an error,
 * retried); a backup download is bounded by the disk; every request has a connect timeout
 * (CONNECT_MS) and a stall timeout, and is cancelled at once by a stop or a promotion.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "l3kv/base.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"
#include "l3kv/store.h"
#include "l3kv/wal.h"
#include "l3kv/walfeed.h"
#include "log.h"
#include "replica.h"

#define CONNECT_MS 5000L
#define POLL_WAIT_MS 1000u /* the long poll's timeout= on the primary */
#define POLL_TIMEOUT_MS 30000L
#define STALL_S 60L /* a transfer without a byte for this long is given up */
#define SAVE_MS 200u
#define DURABLE_WAIT_MS 10000
#define KEYS_BATCH 256u
#define NEED_BOOTSTRAP 1

typedef struct {
    l3_srv_t *srv;
    l3_repl_t *r;
    l3_store_t *st;
    l3_wal_ring_t *ring;
    const char *primary;
    CURL *h;
    struct curl_slist *hdrs, *bin_hdrs;
    l3_buf_t body;
    size_t body_max;
    bool too_big;
    FILE *sink;            /* the backup download, instead of body */
    uint64_t last_version; /* X-L3KV-Last-Version of the answer */
    bool replicated;       /* X-L3KV-Durability: replicated (the primary's writes wait for our ack) */
    char acked[L3_REPL_CURSOR_LEN + 1]; /* the cursor up to which our WAL holds every change ("" none) */
    l3_repl_state_t state;              /* the position reached (saved lazily) */
    uint64_t saved_ms;                  /* when the state file was last written */
    bool dirty;                         /* applied since */
    uint64_t warned_ms;                 /* rate limit of "primary unreachable" lines */
    uint64_t apply_warned_ms;           /* rate limit of "cannot apply" lines (a change retried for good) */
} fl_t;

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static bool following(const fl_t *f)
{
    return !stop_flag && atomic_load(&f->r->rp_role) == L3_REPL_REPLICA;
}

static void nap(unsigned ms)
{
    for (unsigned t = 0; t < ms && !stop_flag; t += 20) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------------------ HTTP (libcurl) */

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    fl_t *f = arg;
    size_t len = sz * n;
    if (f->sink != NULL)
        return fwrite(p, 1, len, f->sink);
    if (f->body.len + len > f->body_max) {
        f->too_big = true;
        return 0;
    }
    if (l3_buf_reserve(&f->body, len + 1) != 0)
        return 0;
    memcpy(f->body.ptr + f->body.len, p, len);
    f->body.len += len;
    f->body.ptr[f->body.len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    fl_t *f = arg;
    size_t len = sz * n;
    static const char name[] = "x-l3kv-last-version:", dur[] = "x-l3kv-durability:";
    if (len > sizeof name && strncasecmp(p, name, sizeof name - 1) == 0)
        f->last_version = strtoull(p + sizeof name - 1, NULL, 10);
    if (len > sizeof dur && strncasecmp(p, dur, sizeof dur - 1) == 0)
        f->replicated = memmem(p, len, "replicated", 10) != NULL;
    return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return following(arg) ? 0 : 1; /* a stop or a promotion cancels the transfer */
}

/* GET primary + path: the HTTP status, or -EPIPE (no answer: logged by the caller) or
 * -ECANCELED (stopping). The body is in f->body (or written to sink). */
static long http_get(fl_t *f, const char *path, long timeout_ms, bool binary, FILE *sink)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", f->primary, path);
    f->body.len = 0;
    f->too_big = false;
    f->sink = sink;
    f->last_version = 0;
    f->replicated = false;
    curl_easy_setopt(f->h, CURLOPT_URL, url);
    curl_easy_setopt(f->h, CURLOPT_HTTPHEADER, binary ? f->bin_hdrs : f->hdrs);
    curl_easy_setopt(f->h, CURLOPT_TIMEOUT_MS, timeout_ms);
    CURLcode c = curl_easy_perform(f->h);
    f->sink = NULL;
    if (c == CURLE_ABORTED_BY_CALLBACK || stop_flag)
        return -ECANCELED;
    if (c != CURLE_OK) {
        uint64_t t = l3_store_now_ms();
        if (t - f->warned_ms >= 10000) {
            f->warned_ms = t;
            L3_LOG(L3_LOG_WARN, "replication: GET %s: %s", url,
                   f->too_big ? "answer too large" : curl_easy_strerror(c));
        }
        return -EPIPE;
    }
    long code = 0;
    curl_easy_getinfo(f->h, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

static void http_fail(fl_t *f, const char *what, long code)
{
    uint64_t t = l3_store_now_ms();
    if (code == -EPIPE || t - f->warned_ms < 10000)
        return;
    f->warned_ms = t;
    L3_LOG(L3_LOG_WARN, "replication: %s: the primary answered %ld: %.*s", what, code,
           (int)L3_MIN(f->body.len, 300), f->body.ptr ? f->body.ptr : "");
}

/* Read the token file: the bearer token is its first line. */
static int http_init(fl_t *f)
{
    const l3_srv_config_t *c = &f->srv->cfg;
    char auth[600] = "";
    if (c->replication.token_file != NULL) {
        FILE *tf = fopen(c->replication.token_file, "re");
        char tok[512] = "";
        if (tf == NULL || fgets(tok, sizeof tok, tf) == NULL) {
            L3_LOG(L3_LOG_ERROR, "replication: cannot read the token from %s", c->replication.token_file);
            if (tf != NULL)
                fclose(tf);
            return -EINVAL;
        }
        fclose(tf);
        tok[strcspn(tok, "\r\n \t")] = '\0';
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || (f->h = curl_easy_init()) == NULL)
        return -ENOMEM;
    if (auth[0] != '\0') {
        f->hdrs = curl_slist_append(f->hdrs, auth);
        f->bin_hdrs = curl_slist_append(f->bin_hdrs, auth);
    }
    f->hdrs = curl_slist_append(f->hdrs, "Accept: application/json");
    f->bin_hdrs = curl_slist_append(f->bin_hdrs, "Accept: application/vnd.l3kv.doc");
    if (f->hdrs == NULL || f->bin_hdrs == NULL)
        return -ENOMEM;
    curl_easy_setopt(f->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(f->h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_MS);
    curl_easy_setopt(f->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(f->h, CURLOPT_LOW_SPEED_TIME, STALL_S);
    curl_easy_setopt(f->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(f->h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(f->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(f->h, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(f->h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(f->h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(f->h, CURLOPT_XFERINFODATA, f);
    curl_easy_setopt(f->h, CURLOPT_PROTOCOLS_STR, "http,https");
    f->body_max = (size_t)L3_MIN(c->storage.max_document_bytes * 2 + (1u << 20), (uint64_t)SIZE_MAX / 2);
    return 0;
}

/* ------------------------------------------------------------------ the saved position */

/* Wait until this node's WAL holds every change applied so far: the position reached is
 * then what the next request acknowledges (?ack=). */
static int make_durable(fl_t *f)
{
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(f->ring, &b);
    int rc = l3_wal_wait_durable(f->ring, b.head, DURABLE_WAIT_MS);
    if (rc == 0 && f->state.have_cursor)
        memcpy(f->acked, f->state.cursor, sizeof f->acked);
    return rc;
}

/* Write the state file once this node's WAL holds every change applied so far. */
static int save_durable(fl_t *f)
{
    if (!f->state.have_cursor)
        return 0;
    int rc = make_durable(f);
    if (rc < 0)
        return rc;
    l3_repl_lock(f->r);
    if (atomic_load(&f->r->rp_role) == L3_REPL_REPLICA)
        rc = l3_repl_state_save(f->srv->cfg.storage.data_dir, f->primary, &f->state);
    l3_repl_unlock(f->r);
    if (rc < 0)
        L3_LOG(L3_LOG_ERROR, "replication: cannot save the position (%s): a restart repeats more",
               strerror(-rc));
    f->saved_ms = l3_store_now_ms();
    f->dirty = false;
    return rc;
}

static void set_cursor(fl_t *f, const char *c, size_t len)
{
    if (len != L3_REPL_CURSOR_LEN)
        return;
    memcpy(f->state.cursor, c, L3_REPL_CURSOR_LEN);
    f->state.cursor[L3_REPL_CURSOR_LEN] = '\0';
    f->state.have_cursor = true;
    f->dirty = true;
}

/* ------------------------------------------------------------------ applying */

/* One change under the block's lock, while still a replica: the document's JSON text, or
 * NULL for a deletion; or a binary document (bin). */
static int apply_doc(fl_t *f, const char *key, size_t klen, const char *json, size_t jlen, const uint8_t *bin,
                     size_t blen)
{
    l3_repl_lock(f->r);
    if (atomic_load(&f->r->rp_role) != L3_REPL_REPLICA) {
        l3_repl_unlock(f->r);
        return -ECANCELED;
    }
    l3_doc_error_t e = {0};
    int rc;
    if (bin != NULL)
        rc = l3_store_put_bin(f->st, key, klen, bin, blen, 0, NULL, &e);
    else if (json != NULL)
        rc = l3_store_put_json(f->st, key, klen, json, jlen, 0, NULL, &e);
    else
        rc = l3_store_delete(f->st, key, klen, 0, NULL);
    l3_repl_unlock(f->r);
    if (rc == -ENOENT || rc == L3_ENOTFOUND)
        rc = 0;
    uint64_t t = l3_store_now_ms();
    if (rc < 0 && rc != -ECANCELED && t - f->apply_warned_ms >= 10000) { /* retried: one line per 10 s */
        f->apply_warned_ms = t;
        L3_LOG(L3_LOG_ERROR, "replication: cannot apply the change of key '%.*s': %s (retried)",
               (int)L3_MIN(klen, 200), key, l3_strerror(rc));
    }
    return rc;
}

static bool val_str(const uint8_t *buf, uint32_t obj, const char *name, const char **ret, uint32_t *ret_len)
{
    uint32_t s;
    l3_doc_val_t v;
    if (l3_doc_obj_find(buf, obj, name, strlen(name), &s) != 0)
        return false;
    l3_doc_val(buf, s, &v);
    if (v.type != L3_DOC_STRING)
        return false;
    *ret = v.str.ptr;
    *ret_len = v.str.len;
    return true;
}

/* GET /kv/<key> in binary form, for a change whose document did not fit the answer. */
static int apply_fetched(fl_t *f, const char *key, uint32_t klen)
{
    char *esc = curl_easy_escape(f->h, key, (int)klen);
    if (esc == NULL)
        return -ENOMEM;
    char path[3 * 1024 + 64];
    snprintf(path, sizeof path, "/kv/%s", esc);
    curl_free(esc);
    long code = http_get(f, path, POLL_TIMEOUT_MS, true, NULL);
    if (code == 404)
        return apply_doc(f, key, klen, NULL, 0, NULL, 0);
    if (code != 200) {
        http_fail(f, "GET /kv/<key>", code);
        return code < 0 ? (int)code : -EPIPE;
    }
    uint8_t *copy = malloc(f->body.len ? f->body.len : 1); /* aligned for the reader */
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, f->body.ptr, f->body.len);
    int rc = apply_doc(f, key, klen, NULL, 0, copy, f->body.len);
    free(copy);
    return rc;
}

/* One element of "changes": apply it and advance the position. */
static int apply_change(fl_t *f, const uint8_t *buf, uint32_t ch, bool fetch, l3_buf_t *jb)
{
    const char *key, *op, *cur;
    uint32_t klen, oplen, clen, ds;
    l3_doc_val_t v;
    if (!val_str(buf, ch, "key", &key, &klen) || !val_str(buf, ch, "op", &op, &oplen) ||
        !val_str(buf, ch, "cursor", &cur, &clen))
        return -EBADMSG;
    bool del = (oplen == 6 && memcmp(op, "delete", 6) == 0) || (oplen == 6 && memcmp(op, "expire", 6) == 0);
    int rc;
    char kcopy[L3_STORE_KEY_MAX];
    if (klen > sizeof kcopy)
        return -EBADMSG;
    memcpy(kcopy, key, klen); /* buf's strings stay valid, but apply_fetched reuses the body */
    if (del) {
        rc = apply_doc(f, kcopy, klen, NULL, 0, NULL, 0);
    } else if (fetch) {
        rc = apply_fetched(f, kcopy, klen);
    } else {
        if (l3_doc_obj_find(buf, ch, "doc", 3, &ds) != 0)
            return -EBADMSG;
        l3_doc_val(buf, ds, &v);
        jb->len = 0;
        if (v.type != L3_DOC_NULL && (rc = l3_doc_to_json(buf, ds, jb)) < 0)
            return rc;
        rc = apply_doc(f, kcopy, klen, v.type == L3_DOC_NULL ? NULL : jb->ptr, jb->len, NULL, 0);
    }
    if (rc < 0)
        return rc;
    uint64_t ver = 0;
    if (l3_doc_obj_find(buf, ch, "version", 7, &ds) == 0) {
        l3_doc_val(buf, ds, &v);
        if (v.type == L3_DOC_INT && v.i > 0)
            ver = (uint64_t)v.i;
    }
    atomic_fetch_add(&f->r->rp_applied_total, 1);
    if (ver != 0)
        atomic_store(&f->r->rp_applied_version, ver);
    set_cursor(f, cur, clen);
    return 0;
}

/* After an answer: version is its X-L3KV-Last-Version (0: none), empty whether it had no change. */
static void note_lag(fl_t *f, uint64_t version, bool empty)
{
    l3_repl_t *r = f->r;
    if (version != 0)
        atomic_store(&r->rp_primary_version, version);
    uint64_t pv = atomic_load(&r->rp_primary_version), av = atomic_load(&r->rp_applied_version);
    if (empty && pv > av) /* nothing left to send: the primary's head is reached */
        atomic_store(&r->rp_applied_version, av = pv);
    if (pv > av) {
        if (atomic_load(&r->rp_behind_since_ms) == 0)
            atomic_store(&r->rp_behind_since_ms, l3_store_now_ms());
    } else {
        atomic_store(&r->rp_behind_since_ms, 0);
    }
}

/* One long poll: 0 applied (or nothing came), NEED_BOOTSTRAP (410), < 0 retry later. */
static int poll_once(fl_t *f, bool fetch)
{
    char path[256];
    int n0 =
        snprintf(path, sizeof path, "/changes?since=%s&include_docs=%s&timeout=%u&limit=%u", f->state.cursor,
                 fetch ? "false" : "true", POLL_WAIT_MS, fetch ? 100u : f->srv->cfg.replication.batch);
    if (f->acked[0] != '\0')
        snprintf(path + n0, sizeof path - (size_t)n0, "&ack=%s", f->acked);
    long code = http_get(f, path, POLL_TIMEOUT_MS, false, NULL);
    if (code == 410)
        return NEED_BOOTSTRAP;
    if (code != 200) {
        http_fail(f, "GET /changes", code);
        return code < 0 ? (int)code : -EPIPE;
    }
    /* this answer's headers: apply_fetched's requests below replace f's */
    uint64_t answer_version = f->last_version;
    bool replicated = f->replicated;
    uint8_t *buf = NULL;
    size_t blen = 0;
    l3_doc_error_t e = {0};
    l3_doc_parse_opts_t po = {.max_bytes = f->body_max * 4};
    int rc = l3_doc_from_json(f->body.ptr, f->body.len, &po, &buf, &blen, &e);
    if (rc == L3_EDEPTH && !fetch)
        return poll_once(f, true); /* a document at the nesting limit: the same range without documents */
    uint32_t root = 0, arr, ch;
    const char *cur;
    uint32_t clen;
    if (rc == 0 &&
        (l3_doc_lookup(buf, "", 0, L3_DOC_PATH_POINTER, &root) != 0 ||
         l3_doc_obj_find(buf, root, "changes", 7, &arr) != 0 || !val_str(buf, root, "cursor", &cur, &clen)))
        rc = -EBADMSG;
    l3_buf_t jb = {0};
    uint64_t n = 0;
    for (uint64_t i = 0; rc == 0 && l3_doc_arr_at(buf, arr, i, &ch) == 0; i++, n++)
        rc = apply_change(f, buf, ch, fetch, &jb);
    if (rc == 0) /* the answer's cursor also covers what the primary skipped */
        set_cursor(f, cur, clen);
    free(jb.ptr);
    free(buf);
    if (rc < 0) {
        if (rc == -EBADMSG || rc == L3_ESYNTAX || rc == L3_EDEPTH) /* the answer itself */
            http_fail(f, "GET /changes: an answer that is not a change list", 200);
        return rc;
    }
    note_lag(f, answer_version, n == 0);
    if (n != 0 && replicated && make_durable(f) < 0) /* the primary's writes wait for the next ?ack= */
        L3_LOG(L3_LOG_WARN, "replication: the WAL did not make the applied changes durable in time");
    atomic_store(&f->r->rp_state, L3_REPL_S_FOLLOWING);
    if (f->dirty && l3_store_now_ms() - f->saved_ms >= SAVE_MS)
        (void)save_durable(f);
    return 0;
}

/* ------------------------------------------------------------------ bootstrap */

static int boot_put(void *ctx, const l3_wal_rec_t *rec)
{
    fl_t *f = ctx;
    if (!following(f))
        return -ECANCELED;
    uint32_t dlen = rec->plen;
    if (rec->flags & L3_WAL_RF_EXPIRY) { /* the deadline is not copied: the primary's expiry is */
        if (dlen < 8)
            return L3_ECORRUPT;
        dlen -= 8;
        if (l3_wal_get_deadline((const uint8_t *)rec->payload + dlen) <= l3_store_now_ms())
            return 0; /* expired already: the primary's sweep deletes it */
    }
    uint8_t *copy = malloc(dlen ? dlen : 1);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, rec->payload, dlen);
    uint8_t *up = NULL;
    int rc = l3_doc_verify_upgrade(copy, dlen, &up, NULL);
    if (rc == 0)
        rc = apply_doc(f, rec->key, rec->klen, NULL, 0, up ? up : copy, up ? l3_doc_size(up) : dlen);
    free(up);
    free(copy);
    return rc;
}

typedef struct {
    uint64_t below; /* keys with an LSN at or below it were not in the backup */
    char keys[KEYS_BATCH][L3_STORE_KEY_MAX];
    uint32_t klen[KEYS_BATCH];
    size_t n;
} stale_t;

static int stale_key(void *ctx, const void *key, size_t klen, uint64_t lsn)
{
    stale_t *s = ctx;
    if (lsn <= s->below && s->n < KEYS_BATCH && klen <= L3_STORE_KEY_MAX) {
        memcpy(s->keys[s->n], key, klen);
        s->klen[s->n++] = (uint32_t)klen;
    }
    return 0;
}

/* Delete the local keys the backup did not write (a node that held data before). */
static int drop_stale(fl_t *f, uint64_t below)
{
    stale_t *s = malloc(sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->below = below;
    uint64_t cursor = 0, dropped = 0;
    int rc = 0;
    do {
        s->n = 0;
        rc = l3_store_keys(f->st, NULL, 0, &cursor, KEYS_BATCH, stale_key, s);
        for (size_t i = 0; rc >= 0 && i < s->n; i++, dropped++)
            rc = apply_doc(f, s->keys[i], s->klen[i], NULL, 0, NULL, 0);
    } while (rc >= 0 && cursor != 0);
    free(s);
    if (dropped != 0)
        L3_LOG(L3_LOG_INFO, "replication: %" PRIu64 " local keys the primary does not hold were deleted",
               dropped);
    return rc < 0 ? rc : 0;
}

static int head_cursor(fl_t *f, char *out)
{
    long code = http_get(f, "/changes?since=now&timeout=0", POLL_TIMEOUT_MS, false, NULL);
    if (code != 200) {
        http_fail(f, "GET /changes?since=now", code);
        return code < 0 ? (int)code : -EPIPE;
    }
    /* parsed like every feed answer (poll_once), not searched for */
    uint8_t *buf = NULL;
    size_t blen = 0;
    uint32_t root, clen;
    const char *cur;
    l3_doc_parse_opts_t po = {.max_bytes = f->body_max * 4};
    int rc = l3_doc_from_json(f->body.ptr, f->body.len, &po, &buf, &blen, NULL);
    if (rc == 0 && (l3_doc_lookup(buf, "", 0, L3_DOC_PATH_POINTER, &root) != 0 ||
                    !val_str(buf, root, "cursor", &cur, &clen) || clen != L3_REPL_CURSOR_LEN ||
                    strspn(cur, "0123456789abcdef") < L3_REPL_CURSOR_LEN))
        rc = -EBADMSG;
    if (rc == 0) {
        memcpy(out, cur, L3_REPL_CURSOR_LEN);
        out[L3_REPL_CURSOR_LEN] = '\0';
    }
    free(buf);
    return rc < 0 ? rc : 0;
}

static int bootstrap(fl_t *f)
{
    atomic_store(&f->r->rp_state, L3_REPL_S_BOOTSTRAPPING);
    char head[L3_REPL_CURSOR_LEN + 1], path[4200];
    int rc = head_cursor(f, head);
    if (rc < 0)
        return rc;
    atomic_fetch_add(&f->r->rp_bootstraps, 1);
    L3_LOG(L3_LOG_INFO, "replication: bootstrapping from a backup of %s", f->primary);
    snprintf(path, sizeof path, "%s/replica.boot", f->srv->cfg.storage.data_dir);
    FILE *out = fopen(path, "wbe");
    if (out == NULL)
        return -errno;
    long code = http_get(f, "/admin/backup", 0, false, out);
    if (fclose(out) != 0 && code == 200)
        code = -EIO;
    uint64_t below = l3_store_last_lsn(f->st);
    l3_wal_snap_info_t info = {0};
    uint64_t t0 = l3_store_now_ms();
    if (code == 200)
        rc = l3_wal_snapshot_load(path, boot_put, f, &info);
    else
        rc = code < 0 ? (int)code : -EPIPE;
    if (code != 200 && code > 0)
        L3_LOG(L3_LOG_WARN, "replication: GET /admin/backup: the primary answered %ld", code);
    (void)unlink(path);
    if (rc == 0)
        rc = drop_stale(f, below);
    if (rc < 0) {
        if (rc != -ECANCELED)
            L3_LOG(L3_LOG_ERROR, "replication: bootstrap failed: %s (retried)", l3_strerror(rc));
        return rc;
    }
    L3_LOG(L3_LOG_INFO,
           "replication: bootstrap loaded %" PRIu64 " documents in %" PRIu64 " ms; following from %s",
           info.count, l3_store_now_ms() - t0, head);
    memcpy(f->state.cursor, head, sizeof head);
    f->state.have_cursor = true;
    f->dirty = true;
    return save_durable(f);
}

/* ------------------------------------------------------------------ the role */

static void follow(fl_t *f)
{
    bool boot = !f->state.have_cursor;
    while (following(f)) {
        l3_store_proc_heartbeat(f->st);
        int rc = boot ? bootstrap(f) : poll_once(f, false);
        if (rc == NEED_BOOTSTRAP) {
            L3_LOG(L3_LOG_WARN, "replication: the primary no longer retains position %s: bootstrapping again",
                   f->state.cursor);
            boot = true;
            continue;
        }
        if (rc == 0) {
            boot = false;
            continue;
        }
        if (rc != -ECANCELED) {
            atomic_store(&f->r->rp_state, L3_REPL_S_CONNECTING);
            nap(f->srv->cfg.replication.retry_ms);
        }
    }
}

int l3_srv_follower_main(l3_srv_t *srv, void *arg)
{
    fl_t f0 = {.srv = srv,
               .r = arg,
               .st = srv->store,
               .ring = srv->wal_ring,
               .primary = srv->cfg.replication.primary};
    fl_t *f = &f0;
    l3_stop_signals_install(on_stop, NULL, NULL);
    int rc = l3_store_proc_register(f->st, L3_STORE_ROLE_WORKER, NULL);
    if (rc < 0) {
        L3_LOG(L3_LOG_ERROR, "replication: cannot register in the store: %s", l3_strerror(rc));
        return 1;
    }
    if ((rc = http_init(f)) == 0) {
        (void)l3_repl_state_load(srv->cfg.storage.data_dir, f->primary, &f->state);
        f->state.promoted = false;
        follow(f);
        if (f->dirty)
            (void)save_durable(f);
    }
    if (atomic_load(&f->r->rp_role) != L3_REPL_REPLICA)
        atomic_store(&f->r->rp_state, L3_REPL_S_STOPPED);
    while (!stop_flag) /* promoted: nothing more to do until the server stops */
        nap(1000);
    curl_slist_free_all(f->hdrs);
    curl_slist_free_all(f->bin_hdrs);
    if (f->h != NULL)
        curl_easy_cleanup(f->h);
    free(f->body.ptr);
    l3_store_proc_unregister(f->st);
    return rc < 0 ? 1 : 0;
}

/* ------------------------------------------------------------------ setup (supervisor) */

static const l3_srv_role_t follower_role = {
    .name = "replication follower",
    .main = l3_srv_follower_main,
};

static l3_repl_t *block_create(void)
{
    l3_repl_t *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        return NULL;
    memset(r, 0, sizeof *r);
    r->rp_magic = L3_REPL_MAGIC;
    r->rp_version = 1;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    int rc = pthread_mutex_init(&r->rp_mu, &a);
    pthread_mutexattr_destroy(&a);
    if (rc != 0) {
        munmap(r, sizeof *r);
        errno = rc;
        return NULL;
    }
    return r;
}

int l3_srv_replica_setup(l3_srv_t *srv)
{
    l3_repl_t *r = block_create();
    if (r == NULL) {
        L3_LOG(L3_LOG_ERROR, "replication: cannot map the replication block: %s", strerror(errno));
        return -ENOMEM;
    }
    srv->repl = r;
    char *primary = srv->cfg.replication.primary;
    size_t plen = primary != NULL ? strlen(primary) : 0;
    if (plen > 0 && primary[plen - 1] == '/')
        primary[plen - 1] = '\0'; /* paths are appended to it */
    l3_repl_state_t st;
    int have = l3_repl_state_load(srv->cfg.storage.data_dir, primary, &st);
    if (primary == NULL) {
        atomic_store(&r->rp_role, have == 1 && st.promoted ? L3_REPL_PROMOTED : L3_REPL_PRIMARY);
        return 0;
    }
    if (have == 1 && st.promoted) {
        atomic_store(&r->rp_role, L3_REPL_PROMOTED);
        atomic_store(&r->rp_state, L3_REPL_S_STOPPED);
        L3_LOG(L3_LOG_WARN,
               "replication: this node was promoted; 'replication.primary' (%s) is not followed (remove "
               "%s/replica.state to make it a replica again)",
               primary, srv->cfg.storage.data_dir);
        return 0;
    }
    if (srv->wal_ring == NULL) {
        L3_LOG(L3_LOG_ERROR, "replication: a replica needs its own WAL");
        return -EINVAL;
    }
    atomic_store(&r->rp_role, L3_REPL_REPLICA);
    L3_LOG(L3_LOG_INFO, "replication: read replica of %s (%s)", primary,
           have == 1 && st.have_cursor ? "resuming from its saved position" : "a full copy first");
    return l3_srv_add_role(srv, &follower_role, r);
}
