/* SPDX-License-Identifier: MIT */
/*
 * http.h - what every route handler shares: the routes' environment, the request being
 * handled, response helpers and the JSON error replies (statuses from errmap.c).
 */
#ifndef L3KV_SRV_HTTP_H
#define L3KV_SRV_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>

#include "durable.h"
#include "errmap.h"
#include "l3kv/base.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"
#include "l3kv/store.h"
#include "feedstat.h"
#include "obs.h"
#include "query.h"
#include "send.h"

/**
 * The routes' environment: one per worker process, carried by the h2o handler
 * (routes.h). Filled by the worker after fork; the route handlers read it, nothing else.
 */
typedef struct l3_route_env {
    l3_store_t *store;
    const l3_obs_t *obs_all; /* every slot's metrics (for /metrics) */
    l3_obs_slot_t *obs;      /* this worker's slot */
    void *wal_ring;          /* l3_wal_ring_t * or NULL */
    uint64_t max_body_bytes; /* server.max_body_bytes */
    uint32_t max_batch_ops;  /* server.max_batch_ops (0: the default, 1000) */
    /* Is this connection beyond the worker's connection limit? (NULL = no limit) */
    bool (*over_limit)(const void *h2o_conn);
    /* Connections waiting in the listening sockets' accept queues (for /metrics). */
    uint64_t (*accept_queue)(const void *arg);
    const void *accept_arg;
    /* The connection closes after this response: drain what the client still sends so
     * it reads the response instead of a reset (NULL = no lingering close). */
    void (*linger)(void *h2o_conn);
    /* The subject of the connection's verified TLS client certificate, NULL without one
     * (NULL function: no client certificates). */
    const char *(*cert_subject)(void *h2o_conn);
    /* Ask the supervisor for a checkpoint: 0 or -errno (NULL = not available). */
    int (*request_checkpoint)(void);
    l3_durable_t durable;              /* fsync-mode parked replies */
    l3_buf_t jbuf;                     /* reused serialisation buffer */
    struct l3_feed *feed;              /* this worker's change-feed watchers (route_feed.c), lazily made */
    const l3_feed_stats_t *feed_stats; /* every worker's feed counters (feedstat.h) or NULL */
    l3_feed_slot_stats_t *feed_slot;   /* this worker's block of them, or NULL */
    const char *feed_sock;             /* the WAL writer's channel for retained segments, or NULL */
    struct l3_repl_block *repl;        /* the replication block (replica.h) or NULL */
    const char *primary;               /* replication.primary, or NULL */
    const char *data_dir;              /* storage.data_dir */
} l3_route_env_t;

/** The request being handled (on the stack of the dispatcher; handlers answer synchronously). */
typedef struct {
    h2o_req_t *req;
    l3_route_env_t *env;
    uint64_t t0;          /* entry into the dispatcher (handler time) */
    l3_obs_route_t route; /* metrics route */
    int head;             /* HEAD: GET headers, no body */
    unsigned scopes;      /* L3_SCOPE_* the request holds (auth.c) */
    const char *who;      /* the token's name, "-" without one (never the token) */
    bool parked;          /* the reply waits for durability: end-to-end time recorded later */
    bool doc_timed;       /* a document operation was timed (doc_ns) */
    bool ser_timed;       /* a serialisation was timed (ser_ns) */
    uint64_t doc_ns;      /* time in store calls, serialisation included (l3_http_doc_done) */
    uint64_t ser_ns;      /* of which JSON serialisation */
} l3_rq_t;

bool l3_http_method(const h2o_req_t *req, const char *m, size_t n);
#define L3_METHOD(req, lit) l3_http_method(req, H2O_STRLIT(lit))
/** Case-insensitive equality with a literal. */
bool l3_http_ieq(h2o_iovec_t v, const char *lit, size_t n);
/** First value of a request header, {NULL,0} when absent. */
h2o_iovec_t l3_http_header(h2o_req_t *req, const h2o_token_t *tok);
/** Media type of a Content-Type value (lower-case, no parameters), in the request pool. */
h2o_iovec_t l3_http_media_type(h2o_req_t *req, h2o_iovec_t v);
/** Parse the request's query string (values in the request pool). 0 or -1 (malformed escape). */
int l3_http_query(h2o_req_t *req, l3_query_t *q);

/** Write v in decimal to out (room for 20 characters, no NUL); returns the length. */
size_t l3_http_u64_dec(char *out, uint64_t v);
/** Write v in decimal, with a '-' when negative, to out (room for 20 characters); the length. */
size_t l3_http_i64_dec(char *out, int64_t v);
void l3_http_add_etag(h2o_req_t *req, uint64_t lsn);
/** Hand a malloc'd buffer to the request: freed when the request is done. */
void l3_http_adopt(h2o_req_t *req, void *buf);

/** Add the time since t_start (an l3_now_ns value) to the request's document operation. */
void l3_http_doc_done(l3_rq_t *rq, uint64_t t_start);
/** Record the request in the metrics (handler time, status, received bytes; end-to-end
 *  time too unless rq->parked; the stages of a document route). */
void l3_http_record(l3_rq_t *rq, int status);
/** Record and send. */
void l3_http_respond(l3_rq_t *rq, int status, const char *ctype, h2o_iovec_t body);
void l3_http_respond_static(l3_rq_t *rq, int status, const char *ctype, const char *body);
/** Send the JSON in env->jbuf: small bodies are copied into the pool, big ones handed over. */
void l3_http_respond_jbuf(l3_rq_t *rq, int status, const char *ctype);
/** Answer a successful write: at once, or once durable in fsync mode (durable.c). */
void l3_http_respond_write(l3_rq_t *rq, int status, const char *ctype, h2o_iovec_t body);

/** Answer {"error":error,"detail":printf(fmt)} with status (503 adds Retry-After). Returns 0. */
int l3_http_fail(l3_rq_t *rq, int status, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** 405 with an Allow header. Returns 0. */
int l3_http_fail_405(l3_rq_t *rq, const char *allow);
/** Answer a store/doc error code through errmap; err (may be NULL) adds the byte offset of
 *  syntax errors and the document layer's message. Returns 0. */
int l3_http_fail_rc(l3_rq_t *rq, int rc, l3_srv_errctx_t ctx, const l3_doc_error_t *err);
/** What l3_http_fail_rc would answer, without answering: the status; *ret_error the error
 *  name, detail[0..cap) the detail text. */
int l3_http_describe_rc(const l3_route_env_t *env, int rc, l3_srv_errctx_t ctx, const l3_doc_error_t *err,
                        const char **ret_error, char *detail, size_t cap);

/** Append s[0..len) as a JSON string literal (l3_json_escape). 0 or -ENOMEM. */
int l3_http_buf_str(l3_buf_t *b, const char *s, size_t len);
/** Append raw bytes. 0 or -ENOMEM. */
int l3_http_buf_cat(l3_buf_t *b, const char *s, size_t len);

#endif
