/* SPDX-License-Identifier: MIT */
/*
 * route.h - the route handlers routes.c's table points at, one family per file:
 * route_kv.c (/kv/{key}), route_list.c (/kv/), route_admin.c (health, metrics,
 * dashboard, checkpoint), route_backup.c (/admin/backup). A handler is reached only with a method its table
 * entry allows; it answers the request and returns 0.
 */
#ifndef L3KV_SRV_ROUTE_H
#define L3KV_SRV_ROUTE_H

#include "http.h"

#define L3_ALLOW_DOC "GET, HEAD, PUT, DELETE, POST, PATCH"
#define L3_ALLOW_RO "GET, HEAD"
/* Longest ttl a request may give (?ttl=, batch "ttl"), in seconds: ten years. */
#define L3_TTL_MAX_S 315360000u
#define L3_TTL_MAX_TEXT "315360000"

/* A ttl of s seconds as a deadline (l3_store_now_ms units): false when s is out of range. */
static inline bool l3_route_ttl_deadline(int64_t s, uint64_t *ret_deadline)
{
    if (s < 1 || s > (int64_t)L3_TTL_MAX_S)
        return false;
    *ret_deadline = l3_store_now_ms() + (uint64_t)s * 1000u;
    return true;
}

/** /kv/{key}: GET, HEAD, PUT, DELETE, POST (?op=), PATCH. raw: the path after "/kv/",
 *  not decoded. */
int l3_route_kv(l3_rq_t *rq, h2o_iovec_t raw);
/** Is op one of route_arr.c's (append, insert, pop, remove, set)? */
int l3_route_arr_is_op(l3_q_str_t op);
/** POST /kv/{key}?op=append|insert|pop|remove|set (route_arr.c); if_match: the client's
 *  If-Match resolved to a version, 0 = none. Answers the request, returns 0. */
int l3_route_arr(l3_rq_t *rq, h2o_iovec_t key, const l3_query_t *q, uint64_t if_match);
/* ---- route_arr.c's core, shared with POST /batch (route_batch.c) */
typedef enum { L3_ARR_APPEND, L3_ARR_INSERT, L3_ARR_POP, L3_ARR_REMOVE, L3_ARR_SET } l3_arr_op_t;

typedef struct {
    l3_arr_op_t op;
    l3_buf_t ptr;      /* the field as a JSON Pointer */
    uint8_t *vals;     /* "[" val "]" parsed: the values to add (NULL for pop, remove) */
    uint32_t vslot;    /* the array in vals holding them */
    uint32_t nvals;    /* its length */
    int64_t index;     /* insert, pop */
    bool has_index;    /* index given */
    bool parents;      /* set: create_parents */
    uint64_t if_match; /* the client's, 0 = none */
} l3_arr_req_t;

/** The outcome: rc < 0 a store/doc code (with e), else status != 0 an error reply
 *  (error, detail), else success: value (the JSON text to return) and version. */
typedef struct {
    int rc;
    int status;
    const char *error;
    char detail[160];
    l3_doc_error_t e;
    l3_buf_t value;
    uint64_t version;
} l3_arr_res_t;

/** Build the request: op (append|insert|pop|remove|set), field (dotted or pointer), val (JSON
 *  text, NULL when absent), multi, index (base NULL = none), create_parents. 0, or -1 with
 *  res set. Free with l3_arr_free in every case. */
int l3_arr_req_init(l3_arr_req_t *r, l3_q_str_t op, l3_q_str_t field, const l3_q_str_t *val, bool multi,
                    l3_q_str_t index, bool parents, l3_arr_res_t *res);
/** Run it on key: in txn when not NULL (its view is the snapshot), else on the store
 *  with If-Match retries. Fills res. */
void l3_arr_run(l3_store_t *st, l3_store_txn_t *txn, h2o_iovec_t key, const l3_arr_req_t *r,
                l3_arr_res_t *res);
void l3_arr_free(l3_arr_req_t *r, l3_arr_res_t *res);

/** POST /batch: several operations in one request, optionally one transaction (route_batch.c). */
int l3_route_batch(l3_rq_t *rq, h2o_iovec_t unused);

/** /kv/ and /kv: key listing (?prefix, limit, cursor). */
int l3_route_list(l3_rq_t *rq, h2o_iovec_t unused);
/** /kv/health. */
int l3_route_health(l3_rq_t *rq, h2o_iovec_t unused);
/** /kv/metrics: the legacy text metrics. */
int l3_route_metrics_text(l3_rq_t *rq, h2o_iovec_t unused);
/** /metrics: JSON metrics. */
int l3_route_metrics(l3_rq_t *rq, h2o_iovec_t unused);
/** /dashboard. */
int l3_route_dashboard(l3_rq_t *rq, h2o_iovec_t unused);
/** POST /admin/checkpoint. */
int l3_route_checkpoint(l3_rq_t *rq, h2o_iovec_t unused);
/** POST /admin/promote: a replica becomes a primary (replica.h). */
int l3_route_promote(l3_rq_t *rq, h2o_iovec_t unused);
/** A replica refuses a write: 1 when the 403 read_only was sent, else 0. */
int l3_route_read_only(l3_rq_t *rq);
/** GET /admin/backup: the whole store streamed as a snapshot file (route_backup.c). */
int l3_route_backup(l3_rq_t *rq, h2o_iovec_t unused);

#endif
