/* SPDX-License-Identifier: MIT */
/*
 * routes.c - the route table and the dispatcher: HTTP request -> route handler.
 *
 * Runs in worker processes, on the event loop thread; every handler answers
 * synchronously (h2o 2.2.5 hands us the complete body) and never blocks except on a
 * document lock for the duration of one mutation. The table is matched in order against
 * the raw request path (query cut off, nothing decoded or folded): exact paths first, then
 * the "/kv/" prefix whose raw remainder route_kv.c decodes into the key. An entry names the
 * methods it takes; other methods get 405 with its Allow list, and on a reserved name
 * (health, metrics under /kv/) a write method gets 400 reserved_key, so no document can
 * shadow them.
 *
 * Access control is decided here (scope.c), once, for every route: each entry names the scope its
 * read methods and its write methods need (0 = none: the dashboard's static page, which
 * holds no data and must load in a browser that has no token yet), and maybe a second scope
 * that also lets its read methods in (`replicate`: what a replica reads from its primary).
 * Order of refusals:
 * 414, 400 token_in_query (a ?token= or ?access_token= parameter: tokens travel only in
 * the Authorization header), 404, then auth.c's verdict (403 protected_mode, 401, 403
 * forbidden), then 400 reserved_key and 405. A loopback peer whose request carries an
 * X-Forwarded-For naming any other address (a local reverse proxy) is not loopback.
 */
#include <string.h>

#include "auth.h"
#include "framing.h"
#include "route.h"
#include "route_feed.h"
#include "routes.h"
#include "scope.h"

#define M_READ 1u  /* GET, HEAD */
#define M_WRITE 2u /* PUT, DELETE, POST, PATCH */
#define M_POST 4u  /* POST only */

typedef int (*route_fn)(l3_rq_t *rq, h2o_iovec_t rest);

typedef struct {
    const char *name;
    const char *path;
    size_t len;           /* of path */
    bool prefix;          /* path is a prefix; the rest (non-empty) is passed on */
    unsigned methods;     /* M_* */
    bool reserved;        /* a document name: write methods are 400 reserved_key */
    l3_obs_route_t route; /* metrics route set before the method check */
    const char *allow;
    route_fn fn;
    unsigned scope_r, scope_w; /* L3_SCOPE_* needed by read / write methods (0 = none) */
    bool either;               /* scope_r or scope_w lets a request in (the handler decides) */
    unsigned alt_r;            /* another scope that lets read methods in (replicate: what a replica reads) */
} route_t;

#define R(lit) lit, sizeof(lit) - 1
static const route_t routes[] = {
    {"health", R("/kv/health"), false, M_READ, true, L3_OBS_R_OTHER, L3_ALLOW_RO, l3_route_health,
     L3_SCOPE_HEALTH, L3_SCOPE_WRITE},
    {"metrics_text", R("/kv/metrics"), false, M_READ, true, L3_OBS_R_OTHER, L3_ALLOW_RO,
     l3_route_metrics_text, L3_SCOPE_MONITOR, L3_SCOPE_WRITE},
    {"list", R("/kv/"), false, M_READ, false, L3_OBS_R_LIST, L3_ALLOW_RO, l3_route_list, L3_SCOPE_READ,
     L3_SCOPE_WRITE, false, L3_SCOPE_REPLICATE},
    {"list", R("/kv"), false, M_READ, false, L3_OBS_R_LIST, L3_ALLOW_RO, l3_route_list, L3_SCOPE_READ,
     L3_SCOPE_WRITE, false, L3_SCOPE_REPLICATE},
    {"kv", R("/kv/"), true, M_READ | M_WRITE, false, L3_OBS_R_OTHER, L3_ALLOW_DOC, l3_route_kv, L3_SCOPE_READ,
     L3_SCOPE_WRITE, false, L3_SCOPE_REPLICATE},
    {"metrics", R("/metrics"), false, M_READ, false, L3_OBS_R_METRICS, L3_ALLOW_RO, l3_route_metrics,
     L3_SCOPE_MONITOR, L3_SCOPE_MONITOR},
    {"checkpoint", R("/admin/checkpoint"), false, M_POST, false, L3_OBS_R_OTHER, "POST", l3_route_checkpoint,
     L3_SCOPE_ADMIN, L3_SCOPE_ADMIN},
    {"promote", R("/admin/promote"), false, M_POST, false, L3_OBS_R_OTHER, "POST", l3_route_promote,
     L3_SCOPE_ADMIN, L3_SCOPE_ADMIN},
    {"backup", R("/admin/backup"), false, M_READ, false, L3_OBS_R_OTHER, L3_ALLOW_RO, l3_route_backup,
     L3_SCOPE_ADMIN, L3_SCOPE_ADMIN, false, L3_SCOPE_REPLICATE},
    {"batch", R("/batch"), false, M_POST, false, L3_OBS_R_OTHER, "POST", l3_route_batch, L3_SCOPE_READ,
     L3_SCOPE_WRITE, true},
    {"changes", R("/changes"), false, M_READ, false, L3_OBS_R_OTHER, L3_ALLOW_RO, l3_route_changes,
     L3_SCOPE_READ, L3_SCOPE_READ, false, L3_SCOPE_REPLICATE},
    {"dashboard", R("/dashboard"), false, M_READ, false, L3_OBS_R_OTHER, L3_ALLOW_RO, l3_route_dashboard, 0,
     0},
    {"dashboard", R("/dashboard/"), false, M_READ, false, L3_OBS_R_OTHER, L3_ALLOW_RO, l3_route_dashboard, 0,
     0},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

int l3_routes_match(const char *path, size_t len, h2o_iovec_t *ret_rest)
{
    *ret_rest = h2o_iovec_init(NULL, 0);
    for (size_t i = 0; i < NROUTES; i++) {
        size_t n = routes[i].len;
        if (len < n || memcmp(path, routes[i].path, n) != 0)
            continue;
        if (!routes[i].prefix && len == n)
            return (int)i;
        if (routes[i].prefix && len > n) {
            *ret_rest = h2o_iovec_init(path + n, len - n);
            return (int)i;
        }
    }
    return -1;
}

const char *l3_routes_name(int idx)
{
    return idx >= 0 && (size_t)idx < NROUTES ? routes[idx].name : NULL;
}

static unsigned method_class(const h2o_req_t *req)
{
    if (L3_METHOD(req, "GET") || L3_METHOD(req, "HEAD"))
        return M_READ;
    if (L3_METHOD(req, "POST"))
        return M_WRITE | M_POST;
    if (L3_METHOD(req, "PUT") || L3_METHOD(req, "DELETE") || L3_METHOD(req, "PATCH"))
        return M_WRITE;
    return 0;
}

/* Does the raw query string carry a token parameter (token=, access_token=, any case)? */
static bool token_in_query(const h2o_req_t *req)
{
    if (req->query_at == SIZE_MAX)
        return false;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    l3_q_str_t k, v;
    while (l3_q_next(&q, end, &k, &v))
        if (h2o_lcstris(k.base, k.len, H2O_STRLIT("token")) ||
            h2o_lcstris(k.base, k.len, H2O_STRLIT("access_token")))
            return true;
    return false;
}

/* The access decision for route r and method class m: 0 to go on, 1 when a refusal was sent.
 * An `either` route lets the read or the write scope in; its handler asks for the one the
 * request needs (l3_scope_require). */
static int check_access(l3_rq_t *rq, const route_t *r, unsigned m)
{
    if (r->alt_r != 0 && !(m & M_WRITE) && l3_scope_decide(rq, r->alt_r, false) == 0)
        return 0;
    if (r->either && l3_scope_decide(rq, r->scope_r, false) == 0)
        return 0;
    return l3_scope_decide(rq, (m & M_WRITE) ? r->scope_w : r->scope_r, true);
}

/* Runs when h2o frees the request (response complete or connection gone). */
static void on_req_done(void *p)
{
    l3_obs_slot_t *s = *(l3_obs_slot_t **)p;
    __atomic_store_n(&s->os_inflight, __atomic_load_n(&s->os_inflight, __ATOMIC_RELAXED) - 1,
                     __ATOMIC_RELAXED);
}

static int dispatch(l3_rq_t *rq)
{
    h2o_req_t *req = rq->req;
    const char *error, *detail;
    if (l3_framing_refused(req, &error, &detail)) { /* framing.c: a refused HTTP/1 head */
        req->http1_is_persistent = 0;               /* Connection: close, nothing more is parsed */
        if (rq->env->linger != NULL)
            rq->env->linger(req->conn);
        return l3_http_fail(rq, 400, error, "%s", detail);
    }
    /* the raw request target without its query: never h2o's normalised path, which decodes
     * %2F and folds dot segments, so that "/kv/a%2F..%2F..%2Fmetrics" would reach /metrics */
    h2o_iovec_t p = h2o_iovec_init(req->path.base, req->query_at != SIZE_MAX ? req->query_at : req->path.len),
                rest;
    if (req->path.len > L3_ROUTES_MAX_PATH_BYTES)
        return l3_http_fail(rq, 414, "uri_too_long", "request target of %zu bytes; the limit is %u",
                            req->path.len, L3_ROUTES_MAX_PATH_BYTES);
    if (token_in_query(req)) /* refused before anything else looks at it; never logged */
        return l3_http_fail(rq, 400, "token_in_query",
                            "tokens are accepted only in the Authorization: Bearer header, never in the URL");
    int i = l3_routes_match(p.base, p.len, &rest);
    if (i < 0)
        return l3_http_fail(rq, 404, "not_found", "no route for %.*s", (int)L3_MIN(p.len, 200), p.base);
    const route_t *r = &routes[i];
    unsigned m = method_class(req);
    rq->route = r->route;
    if (check_access(rq, r, m) != 0)
        return 0;
    if (r->reserved && (m & M_WRITE))
        return l3_http_fail(rq, 400, "reserved_key",
                            "'%.*s' is a reserved name; documents cannot be written under it",
                            (int)(p.len - 4), p.base + 4);
    if ((m & r->methods) == 0)
        return l3_http_fail_405(rq, r->allow);
    if (r->fn == l3_route_kv && (m & M_WRITE) && l3_route_read_only(rq))
        return 0; /* a replica (POST /batch decides by its operations) */
    return r->fn(rq, rest);
}

int l3_routes_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    l3_route_env_t *env = &((l3_routes_handler_t *)self)->env;
    l3_rq_t rq = {.req = req, .env = env, .t0 = l3_now_ns(), .route = L3_OBS_R_OTHER, .who = "-"};
    /* in-flight gauge for the autoscaler: +1 now, -1 when the request's pool is released */
    l3_obs_slot_t *os = env->obs;
    __atomic_store_n(&os->os_inflight, __atomic_load_n(&os->os_inflight, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
    l3_obs_slot_t **done = h2o_mem_alloc_shared(&req->pool, sizeof(*done), on_req_done);
    *done = os;
    rq.head = L3_METHOD(req, "HEAD");
    return dispatch(&rq);
}

l3_routes_handler_t *l3_routes_register(h2o_pathconf_t *pc)
{
    l3_routes_handler_t *h = (l3_routes_handler_t *)h2o_create_handler(pc, sizeof(*h));
    memset(&h->env, 0, sizeof(h->env));
    h->super.on_req = l3_routes_on_req;
    return h;
}
