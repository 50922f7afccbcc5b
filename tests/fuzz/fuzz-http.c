/* SPDX-License-Identifier: MIT */
/*
 * fuzz-http.c - libFuzzer target for the HTTP request path, without sockets.
 *
 * The input is the raw bytes of one HTTP/1 request. They go through the server's own
 * framing guard (phr_parse_request in src/server/framing.c, which calls libh2o's parser),
 * then a fake h2o_req_t is built from the parse - method, raw target, query, headers - and
 * the body is framed as libh2o would (Content-Length, or the strict chunked decoder), and
 * the request is handed to the route dispatcher (l3_routes_on_req) over a real store in
 * shared memory. The response is captured by a final output stream; the request's pool is
 * then cleared, so every allocation a handler adopted must be released (leaks are findings
 * under ASan). Properties checked: every response has a status in 100..599, and every
 * error response (>= 400) has a JSON body {"error", "detail"}.
 *
 * The store lives for the whole run (documents written by one input are seen by later
 * ones); it is created on the first input and unlinked at exit. No checkpoint requests
 * reach a supervisor (the environment has none).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <h2o.h>
#include <jansson.h>

#include "framing.h"
#include "l3kv/store.h"
#include "routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
                      size_t *path_len, int *minor_version, l3_framing_header_t *headers, size_t *num_headers,
                      size_t last_len);
struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};
ssize_t phr_decode_chunked(struct phr_chunked_decoder *d, char *buf, size_t *bufsz);

#define FUZZ_MAX_INPUT (256u << 10)

static l3_routes_handler_t handler;
static l3_store_t *store;
static void *obs_mem;
static l3_obs_t obs;
static h2o_pathconf_t fuzz_pathconf;

typedef struct {
    h2o_ostream_t super;
    int status;
    size_t len;
    char body[4096];
    bool final;
} capture_t;

static void capture_send(h2o_ostream_t *os, h2o_req_t *req, h2o_iovec_t *bufs, size_t n, h2o_send_state_t st)
{
    capture_t *c = (capture_t *)os;
    c->status = req->res.status;
    for (size_t i = 0; i < n; i++) {
        size_t take = L3_MIN(bufs[i].len, sizeof(c->body) - 1 - c->len);
        memcpy(c->body + c->len, bufs[i].base, take);
        c->len += take;
    }
    c->final = !h2o_send_state_is_in_progress(st);
}

static void cleanup(void)
{
    if (store != NULL) {
        l3_store_unlink(store);
        l3_store_close(store);
    }
    free(obs_mem);
}

static void init(void)
{
    char name[64];
    snprintf(name, sizeof(name), "fuzz-http.%ld", (long)getpid());
    l3_store_opts_t o = {.name = name,
                         .arena_bytes = 64 << 20,
                         .max_procs = 4,
                         .nstripes = 4,
                         .lock_timeout_ms = 1000,
                         .replace = true};
    if (l3_store_create(&o, &store) != 0)
        abort();
    size_t len = l3_obs_region_size(1);
    obs_mem = calloc(1, len);
    if (obs_mem == NULL || l3_obs_format(obs_mem, len, 1, 0) != 0 || l3_obs_attach(&obs, obs_mem, len) != 0)
        abort();
    handler.env = (l3_route_env_t){
        .store = store, .obs_all = &obs, .obs = l3_obs_slot(&obs, 0), .max_body_bytes = 1 << 20};
    l3_durable_init(&handler.env.durable, NULL, false, 0, handler.env.obs);
    atexit(cleanup);
}

/* The body after a head of hlen bytes, framed as libh2o frames it. false: refused. */
static bool frame_body(h2o_req_t *req, const l3_framing_header_t *h, size_t nh, char *rest, size_t rlen)
{
    for (size_t i = 0; i < nh; i++) {
        if (h[i].name_len == 17 && h2o_lcstris(h[i].name, 17, H2O_STRLIT("transfer-encoding"))) {
            struct phr_chunked_decoder d = {.consume_trailer = 1};
            size_t n = rlen;
            if (phr_decode_chunked(&d, rest, &n) < 0)
                return false;
            req->entity = h2o_iovec_init(rest, n);
            return true;
        }
        if (h[i].name_len == 14 && h2o_lcstris(h[i].name, 14, H2O_STRLIT("content-length"))) {
            size_t cl = h2o_strtosize(h[i].value, h[i].value_len);
            if (cl == SIZE_MAX)
                return false;
            req->entity = h2o_iovec_init(rest, L3_MIN(cl, rlen));
        }
    }
    return true;
}

static void check_response(const capture_t *c)
{
    if (getenv("FUZZ_HTTP_VERBOSE") != NULL) /* replay aid: print each answer */
        fprintf(stderr, "%d %.*s\n", c->status, (int)L3_MIN(c->len, 160), c->body);
    if (c->status < 100 || c->status > 599 || !c->final)
        abort();
    if (c->status < 400 || c->len == 0)
        return;
    json_error_t e;
    json_t *j = json_loadb(c->body, c->len, 0, &e);
    if (j == NULL || !json_is_string(json_object_get(j, "error")) ||
        !json_is_string(json_object_get(j, "detail")))
        abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (store == NULL)
        init();
    if (size > FUZZ_MAX_INPUT)
        return 0;
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    const char *method, *path;
    size_t mlen, plen, nh = 64;
    int minor;
    l3_framing_header_t h[64];
    int r = phr_parse_request(buf, size, &method, &mlen, &path, &plen, &minor, h, &nh, 0);
    if (r <= 0)
        goto out;
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    h2o_mem_init_pool(&req.pool);
    req.pathconf = &fuzz_pathconf;
    req.method = req.input.method = h2o_iovec_init(method, mlen);
    req.path = req.input.path = h2o_iovec_init(path, plen);
    req.path_normalized = h2o_url_normalize_path(&req.pool, path, plen, &req.query_at, &req.norm_indexes);
    req.version = 0x100 | (minor != 0);
    req.res.content_length = SIZE_MAX;
    for (size_t i = 0; i < nh; i++) {
        if (h[i].name == NULL)
            continue;
        h2o_strtolower((char *)h[i].name, h[i].name_len);
        h2o_add_header_by_str(&req.pool, &req.headers, h[i].name, h[i].name_len, 1, NULL, h[i].value,
                              h[i].value_len);
    }
    capture_t *cap = h2o_mem_alloc_pool(&req.pool, sizeof(*cap));
    memset(cap, 0, sizeof(*cap));
    cap->super.do_send = capture_send;
    req._ostr_top = &cap->super;
    if (frame_body(&req, h, nh, buf + r, size - (size_t)r)) {
        if (l3_routes_on_req(&handler.super, &req) != 0)
            abort(); /* the dispatcher answers every request */
        check_response(cap);
    }
    h2o_mem_clear_pool(&req.pool);
out:
    free(buf);
    return 0;
}
