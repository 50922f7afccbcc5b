/* SPDX-License-Identifier: MIT */
/*
 * route_admin.c - operational routes: /kv/health, /kv/metrics (legacy text), /metrics
 * (JSON), /dashboard and POST /admin/checkpoint (asks the supervisor through the
 * environment's request_checkpoint: the worker sends it SIGRTMIN and it forks the
 * checkpointer at its next tick). /metrics shows process ids ("pid", "writer_pid") only
 * to a request holding the admin scope; others see null there (and the Prometheus form
 * leaves the l3kv_worker_pid and l3kv_wal_writer_pid families out).
 *
 * /metrics answers JSON unless the client asks for the Prometheus text format 0.0.4:
 * ?format=prometheus (format=json forces JSON; any other value is 400 bad_request), or,
 * without format=, an Accept header that rates text/plain or application/openmetrics-text
 * strictly above application/json (as Prometheus's scraper does: its header lists
 * openmetrics and text/plain, and JSON only through a low-weighted wildcard).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv-config.h"
#include "l3kv/wal.h"
#include <openssl/evp.h>

#include "auth.h"
#include "replica.h"
#include "route.h"
#include "route_feed.h"

int l3_route_health(l3_rq_t *rq, h2o_iovec_t unused)
{
    (void)unused;
    rq->route = L3_OBS_R_HEALTH;
    l3_http_respond_static(rq, 200, L3_CT_JSON, "{\"status\":\"ok\"}\n");
    return 0;
}

static void respond_metrics(l3_rq_t *rq, char *out, size_t len, const char *ctype)
{
    l3_http_adopt(rq->req, out);
    l3_http_add_header(rq->req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    l3_http_respond(rq, 200, ctype, h2o_iovec_init(out, len));
}

int l3_route_metrics_text(l3_rq_t *rq, h2o_iovec_t unused)
{
    (void)unused;
    rq->route = L3_OBS_R_METRICS;
    char *out = NULL;
    size_t len = 0;
    int rc = l3_obs_render_text(rq->env->obs_all, &out, &len);
    if (rc < 0)
        return l3_http_fail_rc(rq, rc, L3_CTX_READ, NULL);
    respond_metrics(rq, out, len, "text/plain; charset=utf-8");
    return 0;
}

/* The store's figures as the JSON object /metrics shows under "store" (and, when figs is
 * not NULL, as the Prometheus rendering takes them); false without a store. */
static bool store_json(l3_store_t *st, char *extra, size_t cap, l3_obs_store_figs_t *figs)
{
    l3_store_stats_t s;
    if (st == NULL || l3_store_stats(st, &s) != 0)
        return false;
    if (figs != NULL)
        *figs = (l3_obs_store_figs_t){.keys = s.keys,
                                      .doc_bytes = s.doc_bytes,
                                      .heap_bytes = s.heap_bytes,
                                      .used_bytes = s.used_bytes,
                                      .free_bytes = s.free_bytes,
                                      .largest_free = s.largest_free,
                                      .last_lsn = s.last_lsn,
                                      .fragmentation = s.fragmentation};
    snprintf(extra, cap,
             "{\"keys\":%" PRIu64 ",\"doc_bytes\":%" PRIu64 ",\"heap_bytes\":%" PRIu64
             ",\"used_bytes\":%" PRIu64 ",\"free_bytes\":%" PRIu64 ",\"largest_free\":%" PRIu64
             ",\"fragmentation\":%.4f,\"last_lsn\":%" PRIu64 ",\"repairs\":%" PRIu64 ",\"rollbacks\":%" PRIu64
             ",\"grows\":%" PRIu64 ",\"unpacks\":%" PRIu64 ",\"compactions\":%" PRIu64 ",\"expired\":%" PRIu64
             ",\"procs\":%u}",
             s.keys, s.doc_bytes, s.heap_bytes, s.used_bytes, s.free_bytes, s.largest_free, s.fragmentation,
             s.last_lsn, s.repairs, s.rollbacks, s.grows, s.unpacks, s.compactions, s.expired, s.procs);
    return true;
}

/* A copy of the rendered metrics with the value of every "pid" / "writer_pid" member
 * replaced by null (NULL on ENOMEM). "\"pid\":0" (7 bytes) becomes 10, so the copy needs
 * less than twice the input. The rendered JSON holds no user strings, so the member
 * names match only those keys. */
static char *hide_pids(const char *s, size_t len, size_t *ret_len)
{
    static const char *const keys[] = {"\"pid\":", "\"writer_pid\":"};
    char *d = malloc(2 * len + 1);
    if (d == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t klen = 0;
        for (unsigned k = 0; k < 2 && klen == 0; k++) {
            size_t n = strlen(keys[k]);
            if (len - i >= n && memcmp(s + i, keys[k], n) == 0)
                klen = n;
        }
        if (klen == 0) {
            d[o++] = s[i++];
            continue;
        }
        memcpy(d + o, s + i, klen);
        o += klen;
        i += klen;
        size_t j = i;
        while (j < len && (s[j] == '-' || (s[j] >= '0' && s[j] <= '9')))
            j++;
        if (j > i) {
            memcpy(d + o, "null", 4);
            o += 4;
            i = j;
        }
    }
    *ret_len = o;
    return d;
}

/* The q weight (0..1000) of one media range's parameters p[0..n) (after its ';'). */
static unsigned accept_q(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if ((p[i] != 'q' && p[i] != 'Q') || p[i + 1] != '=' || (i > 0 && p[i - 1] != ';' && p[i - 1] != ' '))
            continue;
        unsigned q = 0, scale = 1000, j = i + 2;
        if (j < n && p[j] == '1')
            return 1000;
        for (j += 2; j < n && j < i + 7 && p[j] >= '0' && p[j] <= '9'; j++) /* "0.xyz" */
            q += (unsigned)(p[j] - '0') * (scale /= 10);
        return q;
    }
    return 1000;
}

/* Does the Accept header rate the Prometheus text (text/plain, application/openmetrics-text)
 * strictly above JSON (application/json, application/ *, * / *)? At most 32 ranges are read. */
static bool accept_prefers_text(h2o_iovec_t v)
{
    unsigned qtext = 0, qjson = 0;
    const char *p = v.base, *end = v.base + v.len;
    for (unsigned n = 0; p < end && n < 32; n++) {
        const char *c = memchr(p, ',', (size_t)(end - p)), *e = c != NULL ? c : end;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        const char *semi = e > p ? memchr(p, ';', (size_t)(e - p)) : NULL, *te = semi != NULL ? semi : e;
        while (te > p && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        h2o_iovec_t mt = h2o_iovec_init(p, (size_t)(te - p));
        unsigned q = semi != NULL ? accept_q(semi + 1, (size_t)(e - semi - 1)) : 1000;
        if (l3_http_ieq(mt, H2O_STRLIT("text/plain")) ||
            l3_http_ieq(mt, H2O_STRLIT("application/openmetrics-text")))
            qtext = q > qtext ? q : qtext;
        else if (l3_http_ieq(mt, H2O_STRLIT("application/json")) ||
                 l3_http_ieq(mt, H2O_STRLIT("application/*")) || l3_http_ieq(mt, H2O_STRLIT("*/*")))
            qjson = q > qjson ? q : qjson;
        p = e + 1;
    }
    return qtext > qjson;
}

/* 1: Prometheus text, 0: JSON, -1: a bad format= value (answered 400). */
static int wants_prometheus(l3_rq_t *rq)
{
    h2o_req_t *req = rq->req;
    if (req->query_at != SIZE_MAX) {
        const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
        l3_q_str_t k, v;
        while (l3_q_next(&q, end, &k, &v)) {
            if (v.base == NULL || k.len != 6 || memcmp(k.base, "format", 6) != 0)
                continue;
            h2o_iovec_t f = h2o_iovec_init(v.base, v.len);
            if (l3_http_ieq(f, H2O_STRLIT("prometheus")))
                return 1;
            if (l3_http_ieq(f, H2O_STRLIT("json")))
                return 0;
            l3_http_fail(rq, 400, "bad_request", "format must be 'json' or 'prometheus', not '%.*s'",
                         (int)L3_MIN(f.len, 32), f.base);
            return -1;
        }
    }
    h2o_iovec_t acc = l3_http_header(req, H2O_TOKEN_ACCEPT);
    return acc.base != NULL && accept_prefers_text(acc) ? 1 : 0;
}

#define L3_CT_PROM "text/plain; version=0.0.4; charset=utf-8"

/* The replication figures (replica.h), NULL without the block. */
static l3_obs_repl_t *repl_metrics(const l3_route_env_t *env, l3_obs_repl_t *o)
{
    const l3_repl_t *r = env->repl;
    if (r == NULL)
        return NULL;
    uint32_t role = atomic_load(&r->rp_role);
    uint64_t pv = atomic_load(&r->rp_primary_version), av = atomic_load(&r->rp_applied_version);
    uint64_t since = atomic_load(&r->rp_behind_since_ms), now = l3_store_now_ms();
    *o = (l3_obs_repl_t){.role = l3_repl_role_name(role),
                         .state = l3_repl_state_name(atomic_load(&r->rp_state)),
                         .primary = env->primary,
                         .lag_records = role == L3_REPL_REPLICA && pv > av ? pv - av : 0,
                         .lag_ms = role == L3_REPL_REPLICA && since != 0 && now > since ? now - since : 0,
                         .bootstraps_total = atomic_load(&r->rp_bootstraps),
                         .applied_total = atomic_load(&r->rp_applied_total)};
    return o;
}

int l3_route_metrics(l3_rq_t *rq, h2o_iovec_t unused)
{
    (void)unused;
    l3_route_env_t *env = rq->env;
    int prom = wants_prometheus(rq);
    if (prom < 0)
        return 0;
    char *out = NULL, extra[768];
    size_t len = 0;
    l3_obs_store_figs_t figs;
    const char *ex = store_json(env->store, extra, sizeof(extra), &figs) ? extra : NULL;
    l3_wal_stats_t ws, *wsp = NULL;
    if (env->wal_ring != NULL) {
        l3_wal_ring_stats(env->wal_ring, &ws);
        wsp = &ws;
    }
    l3_obs_changes_t ch, *chp = l3_feed_metrics(env, &ch) == 0 ? &ch : NULL;
    uint64_t aq = env->accept_queue != NULL ? env->accept_queue(env->accept_arg) : 0;
    bool admin = (rq->scopes & L3_SCOPE_ADMIN) != 0;
    l3_obs_repl_t rp, *rpp = repl_metrics(env, &rp);
    int rc = prom ? l3_obs_render_prom(env->obs_all, L3KV_VERSION, aq, ex != NULL ? &figs : NULL, wsp, chp,
                                       rpp, admin, &out, &len)
                  : l3_obs_render_json(env->obs_all, L3KV_VERSION, aq, ex, wsp, chp, rpp, &out, &len);
    if (rc < 0)
        return l3_http_fail_rc(rq, rc, L3_CTX_READ, NULL);
    if (!prom && !admin) {
        char *hid = hide_pids(out, len, &len);
        free(out);
        if (hid == NULL)
            return l3_http_fail_rc(rq, -ENOMEM, L3_CTX_READ, NULL);
        out = hid;
    }
    l3_http_add_header(rq->req, H2O_TOKEN_VARY, H2O_STRLIT("Accept"));
    respond_metrics(rq, out, len, prom ? L3_CT_PROM : L3_CT_JSON);
    return 0;
}

/* "'sha256-<base64>'" of the text between open tag `tag` and the next `close`; false
 * when the page has no such element. */
static bool element_hash(const char *html, size_t len, const char *tag, const char *close, char *out,
                         size_t cap)
{
    const char *b = memmem(html, len, tag, strlen(tag));
    if (b == NULL)
        return false;
    b += strlen(tag);
    const char *e = memmem(b, len - (size_t)(b - html), close, strlen(close));
    unsigned char md[32];
    unsigned int mdlen = 0;
    unsigned char b64[48];
    if (e == NULL || EVP_Digest(b, (size_t)(e - b), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return false;
    EVP_EncodeBlock(b64, md, 32);
    return (size_t)snprintf(out, cap, "'sha256-%s'", (const char *)b64) < cap;
}

/* The dashboard's Content-Security-Policy: nothing but its own script and style (by hash)
 * and fetches to this origin. Computed once per process from the static page. */
static const char *dashboard_csp(const char *html, size_t len)
{
    static char csp[512];
    if (csp[0] == '\0') {
        char sh[64] = "'none'", st[64] = "'none'";
        element_hash(html, len, "<script>", "</script>", sh, sizeof(sh));
        element_hash(html, len, "<style>", "</style>", st, sizeof(st));
        snprintf(csp, sizeof(csp),
                 "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; img-src data:; "
                 "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                 sh, st);
    }
    return csp;
}

int l3_route_dashboard(l3_rq_t *rq, h2o_iovec_t unused)
{
    (void)unused;
    size_t len;
    const char *html = l3_obs_dashboard_html(&len);
    const char *csp = dashboard_csp(html, len);
    h2o_req_t *req = rq->req;
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL, csp,
                          strlen(csp));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0, NULL,
                          H2O_STRLIT("DENY"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0, NULL,
                          H2O_STRLIT("no-referrer"));
    l3_http_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    l3_http_respond(rq, 200, "text/html; charset=utf-8", h2o_iovec_init(html, len));
    return 0;
}

int l3_route_read_only(l3_rq_t *rq)
{
    if (!l3_repl_read_only(rq->env->repl))
        return 0;
    l3_http_fail(rq, 403, "read_only", "this node is a read replica of %s: send writes there",
                 rq->env->primary != NULL ? rq->env->primary : "its primary");
    return 1;
}

int l3_route_promote(l3_rq_t *rq, h2o_iovec_t unused)
{
    (void)unused;
    int rc = l3_repl_promote(rq->env->repl, rq->env->data_dir);
    if (rc == 1)
        return l3_http_fail(rq, 409, "not_replica", "this node is a primary already");
    if (rc < 0)
        return l3_http_fail(rq, 500, "promoted_not_saved",
                            "promoted for this run, but the state file could not be written (%s): a restart "
                            "with the same configuration follows the primary again",
                            strerror(-rc));
    l3_http_respond_static(
        rq, 200, L3_CT_JSON,
        "{\"ok\":true,\"role\":\"promoted\",\"detail\":\"the primary is no longer followed; "
        "writes are accepted\"}");
    return 0;
}

int l3_route_checkpoint(l3_rq_t *rq, h2o_iovec_t unused)
{
    (void)unused;
    int rc = rq->env->request_checkpoint != NULL ? rq->env->request_checkpoint() : -ENOSYS;
    if (rc < 0)
        return l3_http_fail(rq, 503, "unavailable", "cannot reach the supervisor: %s", strerror(-rc));
    l3_http_respond_static(rq, 202, L3_CT_JSON, "{\"ok\":true,\"detail\":\"checkpoint requested\"}");
    return 0;
}
