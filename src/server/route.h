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

/** /kv/{key}: GET, HEAD, PUT, DELETE, POST (?op=), PATCH. raw: the path after "/kv/",
 *  not decoded. */
int l3_route_kv(l3_rq_t *rq, h2o_iovec_t raw);
/** Is op one of route_arr.c's (append, insert, pop, remove, set)? */
int l3_route_arr_is_op(l3_q_str_t op);
/** POST /kv/{key}?op=append|insert|pop|remove|set (route_arr.c); if_match: the client's
 *  If-Match resolved to a version, 0 = none. Answers the request, returns 0. */
int l3_route_arr(l3_rq_t *rq, h2o_iovec_t key, const l3_query_t *q, uint64_t if_match);
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
/** GET /admin/backup: the whole store streamed as a snapshot file (route_backup.c). */
int l3_route_backup(l3_rq_t *rq, h2o_iovec_t unused);

#endif
