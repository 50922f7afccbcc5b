/* SPDX-License-Identifier: MIT */
/*
 * http.c - request/response helpers and error replies shared by the route handlers.
 *
 * Responses always carry Content-Length (except 204/304) and HEAD gets the GET headers
 * without a body. Errors are JSON {"error","detail"} with the status errmap.c chooses.
 *
 * Received bytes are counted here per request (the request as HTTP/1 text: request line,
 * headers, body); sent bytes are counted exactly per connection in worker.c. Handler time
 * is measured from entry into the dispatcher to the moment the response is handed to h2o
 * (h2o_start_response): parsing, routing, the store call and serialisation, without
 * socket I/O. End-to-end time runs from the same start to the moment the response is
 * handed to h2o, so it equals the handler time except for replies parked until their WAL
 * record is durable (fsync mode), whose end-to-end time durable.c records when it sends
 * them. Stages (document routes only): the store calls the handler timed with
 * l3_http_doc_done, minus the serialisation the store reported, the serialisation, and the
 * handler time.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "http.h"
#include "l3kv/json.h"
#include "l3kv/wal.h"
#include "log.h"

#define INLINE_COPY_MAX 16384u /* responses up to this size are copied into the request pool */

bool l3_http_ieq(h2o_iovec_t v, const char *lit, size_t n)
{
    return v.len == n && h2o_lcstris(v.base, v.len, lit, n);
}

bool l3_http_method(const h2o_req_t *req, const char *m, size_t n)
{
    return h2o_memis(req->method.base, req->method.len, m, n);
}

h2o_iovec_t l3_http_header(h2o_req_t *req, const h2o_token_t *tok)
{
    ssize_t i = h2o_find_header(&req->headers, tok, -1);
    return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

h2o_iovec_t l3_http_media_type(h2o_req_t *req, h2o_iovec_t v)
{
    char *p = h2o_mem_alloc_pool(&req->pool, v.len + 1);
    size_t n = l3_q_media_type(v.base, v.len, p);
    p[n] = '\0';
    return h2o_iovec_init(p, n);
}

int l3_http_query(h2o_req_t *req, l3_query_t *q)
{
    if (req->query_at == SIZE_MAX) {
        memset(q, 0, sizeof(*q));
        return 0;
    }
    const char *s = req->path.base + req->query_at + 1;
    size_t n = req->path.len - req->query_at - 1;
    char *out = h2o_mem_alloc_pool(&req->pool, n + 1);
    return l3_q_parse(s, n, out, q);
}

static void free_holder(void *p)
{
    free(*(void **)p);
}

void l3_http_adopt(h2o_req_t *req, void *buf)
{
    void **holder = h2o_mem_alloc_shared(&req->pool, sizeof(void *), free_holder);
    *holder = buf;
}

size_t l3_http_u64_dec(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t l3_http_i64_dec(char *out, int64_t v)
{
    if (v >= 0)
        return l3_http_u64_dec(out, (uint64_t)v);
    out[0] = '-';
    return 1 + l3_http_u64_dec(out + 1, -(uint64_t)v); /* INT64_MIN: 2^63, no overflow */
}

void l3_http_add_etag(h2o_req_t *req, uint64_t lsn)
{
    char *p = h2o_mem_alloc_pool(&req->pool, 24);
    p[0] = '"';
    size_t n = 1 + l3_http_u64_dec(p + 1, lsn);
    p[n++] = '"';
    l3_http_add_header(req, H2O_TOKEN_ETAG, p, n);
}

void l3_http_doc_done(l3_rq_t *rq, uint64_t t_start)
{
    rq->doc_ns += l3_now_ns() - t_start;
    rq->doc_timed = true;
}

static void record_stages(l3_rq_t *rq, uint64_t handler_ns)
{
    l3_obs_slot_t *s = rq->env->obs;
    if ((unsigned)rq->route > L3_OBS_R_LIST)
        return; /* health, metrics, other: not document routes */
    if (rq->doc_timed)
        l3_obs_record_stage(s, L3_OBS_S_DOCOP, rq->doc_ns > rq->ser_ns ? rq->doc_ns - rq->ser_ns : 0);
    if (rq->ser_timed)
        l3_obs_record_stage(s, L3_OBS_S_SERIALIZE, rq->ser_ns);
    l3_obs_record_stage(s, L3_OBS_S_HANDLER, handler_ns);
}

void l3_http_record(l3_rq_t *rq, int status)
{
    h2o_req_t *req = rq->req;
    uint64_t ns = l3_now_ns() - rq->t0;
    l3_obs_record(rq->env->obs, rq->route, status, ns);
    if (!rq->parked)
        l3_obs_record_e2e(rq->env->obs, rq->route, ns);
    record_stages(rq, ns);
    /* received bytes: the request as HTTP/1 text: "M P HTTP/1.1\r\n", "Host: A\r\n", the
     * headers ("N: V\r\n"), "\r\n", the body, and its "Content-Length: n\r\n", which h2o
     * keeps out of the header list (exact for an HTTP/1 request framed by Content-Length) */
    size_t rx = req->method.len + 1 + req->path.len + 11 + 6 + req->authority.len + 2 + 2 + req->entity.len;
    for (size_t i = 0; i < req->headers.size; i++)
        rx += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    if (req->entity.base != NULL && h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_LENGTH, -1) < 0) {
        size_t digits = 1;
        for (size_t n = req->entity.len; n >= 10; n /= 10)
            digits++;
        rx += 16 + digits + 2;
    }
    l3_obs_add(&rq->env->obs->os_bytes_rx, rx);
}

void l3_http_respond(l3_rq_t *rq, int status, const char *ctype, h2o_iovec_t body)
{
    l3_http_record(rq, status);
    if (l3_access_enabled())
        l3_access_write(rq->req, rq->who != NULL ? rq->who : "-", status, rq->head ? 0 : body.len,
                        l3_now_ns() - rq->t0);
    l3_http_send(rq->req, status, ctype, body, rq->head);
}

void l3_http_respond_static(l3_rq_t *rq, int status, const char *ctype, const char *body)
{
    l3_http_respond(rq, status, ctype, h2o_iovec_init(body, strlen(body)));
}

void l3_http_respond_jbuf(l3_rq_t *rq, int status, const char *ctype)
{
    l3_buf_t *jb = &rq->env->jbuf;
    h2o_iovec_t body;
    if (jb->len <= INLINE_COPY_MAX) {
        body.base = h2o_mem_alloc_pool(&rq->req->pool, jb->len ? jb->len : 1);
        memcpy(body.base, jb->ptr, jb->len);
        body.len = jb->len;
        if (jb->cap > (1u << 20)) { /* do not keep a huge buffer around */
            free(jb->ptr);
            *jb = (l3_buf_t){0};
        }
    } else {
        body = h2o_iovec_init(jb->ptr, jb->len);
        l3_http_adopt(rq->req, jb->ptr);
        *jb = (l3_buf_t){0};
    }
    l3_http_respond(rq, status, ctype, body);
}

void l3_http_respond_write(l3_rq_t *rq, int status, const char *ctype, h2o_iovec_t body)
{
    int rc = l3_durable_park(&rq->env->durable, rq->req, status, rq->head, ctype, body.base, body.len, rq->t0,
                             rq->route);
    if (rc == 1) {
        l3_http_respond(rq, status, ctype, body);
    } else if (rc < 0) {
        l3_http_respond(rq, 503, L3_CT_JSON, l3_durable_unknown_reply(rq->req));
    } else {
        rq->parked = true;
        l3_http_record(rq, status); /* parked: handler time excludes the wait */
        if (l3_access_enabled())
            l3_access_write(rq->req, rq->who != NULL ? rq->who : "-", status, rq->head ? 0 : body.len,
                            l3_now_ns() - rq->t0);
    }
}

int l3_http_fail(l3_rq_t *rq, int status, const char *error, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    size_t cap = 640;
    char *body = h2o_mem_alloc_pool(&rq->req->pool, cap);
    size_t n = l3_srv_err_json(body, cap, error, detail);
    if (status == 503)
        l3_http_add_header(rq->req, H2O_TOKEN_RETRY_AFTER, H2O_STRLIT("1"));
    l3_http_respond(rq, status, L3_CT_JSON, h2o_iovec_init(body, n));
    return 0;
}

int l3_http_fail_405(l3_rq_t *rq, const char *allow)
{
    h2o_req_t *req = rq->req;
    l3_http_add_header(req, H2O_TOKEN_ALLOW, allow, strlen(allow));
    return l3_http_fail(rq, 405, "method_not_allowed", "method %.*s is not allowed here; allowed: %s",
                        (int)L3_MIN(req->method.len, 32), req->method.base, allow);
}

int l3_http_describe_rc(const l3_route_env_t *env, int rc, l3_srv_errctx_t ctx, const l3_doc_error_t *err,
                        const char **ret_error, char *detail, size_t cap)
{
    l3_srv_errinfo_t ei;
    l3_srv_errarg_t arg = {.msg = err != NULL ? err->msg : NULL,
                           .wal_error = env->wal_ring != NULL ? l3_wal_ring_error(env->wal_ring) : 0};
    l3_srv_errmap(rc, ctx, &arg, &ei);
    *ret_error = ei.error;
    if ((rc == L3_ESYNTAX || rc == L3_EDEPTH) && err != NULL)
        snprintf(detail, cap, "invalid JSON at byte offset %zu: %s", err->offset,
                 err->msg ? err->msg : l3_strerror(rc));
    else if (rc == L3_ECORRUPT && err != NULL)
        snprintf(detail, cap, "document failed verification at byte offset %zu: %s", err->offset,
                 err->msg ? err->msg : "corrupt");
    else if (rc == L3_ETYPE && err != NULL && err->msg != NULL)
        snprintf(detail, cap, "%s", err->msg);
    else
        snprintf(detail, cap, "%s", ei.detail != NULL ? ei.detail : l3_strerror(rc));
    return ei.status;
}

int l3_http_fail_rc(l3_rq_t *rq, int rc, l3_srv_errctx_t ctx, const l3_doc_error_t *err)
{
    const char *error;
    char detail[512];
    int status = l3_http_describe_rc(rq->env, rc, ctx, err, &error, detail, sizeof detail);
    if (status == 500)
        L3_LOG(L3_LOG_ERROR, "unexpected error %d (%s) for %.*s", rc, l3_strerror(rc),
               (int)L3_MIN(rq->req->path.len, 200), rq->req->path.base);
    return l3_http_fail(rq, status, error, "%s", detail);
}

int l3_http_buf_str(l3_buf_t *b, const char *s, size_t len)
{
    if (l3_buf_reserve(b, L3_JSON_ESCAPED_MAX(len) + 2) != 0)
        return -ENOMEM;
    char *o = b->ptr + b->len;
    *o++ = '"';
    o = l3_json_escape(o, s, len, 0);
    *o++ = '"';
    b->len = (size_t)(o - b->ptr);
    return 0;
}

int l3_http_buf_cat(l3_buf_t *b, const char *s, size_t len)
{
    if (l3_buf_reserve(b, len) != 0)
        return -ENOMEM;
    memcpy(b->ptr + b->len, s, len);
    b->len += len;
    return 0;
}
