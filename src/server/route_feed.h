/* SPDX-License-Identifier: MIT */
/*
 * route_feed.h - GET /changes: the change feed (longpoll, SSE, NDJSON) read from the WAL
 * ring by the worker (route_feed.c; the ring reader is l3kv/walfeed.h).
 */
#ifndef L3KV_SRV_ROUTE_FEED_H
#define L3KV_SRV_ROUTE_FEED_H

#include "http.h"

/** GET /changes. */
int l3_route_changes(l3_rq_t *rq, h2o_iovec_t unused);

/** The feed's figures for /metrics: 0, or -ENOENT without a WAL (no feed). */
int l3_feed_metrics(const l3_route_env_t *env, l3_obs_changes_t *ret);

/** Graceful stop: answer every parked long poll and end every stream (nothing is lost:
 *  each client holds the cursor of the last change it got). */
void l3_feed_shutdown(l3_route_env_t *env);

#endif
