/* SPDX-License-Identifier: MIT */
/*
 * routes.h - the REST API as one h2o handler: a static route table and its dispatcher.
 * The routes' environment travels with the handler (l3_routes_handler_t), so nothing in
 * the route files reads process globals.
 */
#ifndef L3KV_SRV_ROUTES_H
#define L3KV_SRV_ROUTES_H

#include <h2o.h>

#include "http.h"

/** Request targets longer than this are refused with 414. */
#define L3_ROUTES_MAX_PATH_BYTES 8192u

typedef struct {
    h2o_handler_t super;
    l3_route_env_t env; /* filled by the worker after fork */
} l3_routes_handler_t;

/** Attach the API handler to a path configuration (before fork). */
l3_routes_handler_t *l3_routes_register(h2o_pathconf_t *pc);

/** The h2o on_req callback (exposed for tests and the fuzz target). */
int l3_routes_on_req(h2o_handler_t *self, h2o_req_t *req);

/** Which table entry a request path (no query) and method reach: its index, or -1 for
 *  none (404). *ret_rest is the part after a prefix entry's path (the key). */
int l3_routes_match(const char *path, size_t len, h2o_iovec_t *ret_rest);
/** A table entry's name ("kv", "list", "health", "metrics_text", "metrics", "dashboard",
 *  "checkpoint", "backup", "batch", "changes"), or NULL past the end. */
const char *l3_routes_name(int idx);

#endif
