/* SPDX-License-Identifier: MIT */
/*
 * route_kv.c - /kv/{key}: read, write, delete, scalar ops and patches of one document.
 *
 * Every document read or write carries an ETag equal to the document's LSN ("version").
 * Conditional writes (If-Match) are checked here against the current version and again by
 * the store under the document lock; the store guarantees that a failed call changed
 * nothing. Successful writes are answered through l3_http_respond_write (durable.c in
 * fsync mode).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/error.h"
#include "l3kv/json.h"
#include "route.h"

/* Resolve If-Match into the store's if_match argument. Returns 0 (ok, *ret set), or
 * answers the request (412/404) and returns 1. */
static int resolve_if_match(l3_rq_t *rq, h2o_iovec_t key, uint64_t *ret)
{
    *ret = 0;
    h2o_iovec_t im = l3_http_header(rq->req, H2O_TOKEN_IF_MATCH);
    if (im.base == NULL)
        return 0;
    uint64_t lsn = 0, t = l3_now_ns();
    int rc = l3_store_get_lsn(rq->env->store, key.base, key.len, &lsn);
    l3_http_doc_done(rq, t);
    if (rc == -ENOENT) {
        l3_http_fail(rq, 412, "precondition_failed", "If-Match given but the document does not exist");
        return 1;
    }
    if (rc < 0) {
        l3_http_fail_rc(rq, rc, L3_CTX_WRITE, NULL);
        return 1;
    }
    if (!l3_q_etag_matches(im.base, im.len, lsn, true)) {
        l3_http_add_etag(rq->req, lsn);
        l3_http_fail(rq, 412, "precondition_failed", "If-Match does not match the current version %" PRIu64,
                     lsn);
        return 1;
    }
    *ret = lsn; /* the store re-checks it under the document lock */
    return 0;
}

static bool q_is(l3_q_str_t v, const char *lit)
{
    return v.base != NULL && v.len == strlen(lit) && memcmp(v.base, lit, v.len) == 0;
}

/* ?ttl=<seconds> into a deadline (l3_store_now_ms units): 0 and *ret set (0 when absent and
 * not required), or -1 after answering 400. */
static int parse_ttl(l3_rq_t *rq, const l3_query_t *q, bool required, uint64_t *ret_deadline)
{
    uint64_t s;
    *ret_deadline = 0;
    if (q->ttl.base == NULL && !required)
        return 0;
    if (q->ttl.base == NULL || !l3_q_u64(q->ttl.base, q->ttl.len, &s) || s > (uint64_t)L3_TTL_MAX_S ||
        !l3_route_ttl_deadline((int64_t)s, ret_deadline))
        return l3_http_fail(rq, 400, "bad_ttl", "ttl must be a whole number of seconds, 1 .. %u",
                            (unsigned)L3_TTL_MAX_S),
               -1;
    return 0;
}

/* L3KV-TTL: the seconds left before the key expires (rounded up), when it has a deadline. */
static void add_ttl_header(h2o_req_t *req, uint64_t expire_ms)
{
    if (expire_ms == 0)
        return;
    uint64_t now = l3_store_now_ms();
    uint64_t left = expire_ms > now ? (expire_ms - now + 999u) / 1000u : 0;
    char *p = h2o_mem_alloc_pool(&req->pool, 24);
    size_t n = l3_http_u64_dec(p, left);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("l3kv-ttl"), 0, NULL, p, n);
}

static int on_get(l3_rq_t *rq, h2o_iovec_t key, const l3_query_t *q)
{
    h2o_req_t *req = rq->req;
    l3_store_t *st = rq->env->store;
    h2o_iovec_t inm = l3_http_header(req, H2O_TOKEN_IF_NONE_MATCH);
    if (inm.base != NULL) {
        uint64_t lsn, t = l3_now_ns();
        int rc = l3_store_get_lsn(st, key.base, key.len, &lsn);
        l3_http_doc_done(rq, t);
        if (rc == 0 && l3_q_etag_matches(inm.base, inm.len, lsn, true)) {
            l3_http_add_etag(req, lsn);
            l3_http_respond(rq, 304, NULL, h2o_iovec_init(NULL, 0));
            return 0;
        }
    }
    h2o_iovec_t accept = l3_http_header(req, H2O_TOKEN_ACCEPT);
    if (!q->has_field && accept.base != NULL && l3_q_contains_ci(accept.base, accept.len, L3_CT_BIN)) {
        uint8_t *buf;
        size_t len;
        uint64_t lsn, exp = 0, t = l3_now_ns();
        int rc = l3_store_get_bin_exp(st, key.base, key.len, &buf, &len, &lsn, &exp);
        l3_http_doc_done(rq, t);
        if (rc < 0)
            return l3_http_fail_rc(rq, rc, L3_CTX_READ, NULL);
        l3_http_adopt(req, buf);
        l3_http_add_etag(req, lsn);
        add_ttl_header(req, exp);
        l3_http_respond(rq, 200, L3_CT_BIN, h2o_iovec_init(buf, len));
        return 0;
    }
    uint64_t lsn = 0, t = l3_now_ns(), ser_ns = 0, exp = 0;
    rq->env->jbuf.len = 0;
    int rc = l3_store_get_json_exp(st, key.base, key.len, q->has_field ? q->field.base : NULL,
                                   q->has_field ? q->field.len : 0, 0, &rq->env->jbuf, &lsn, &ser_ns, &exp);
    l3_http_doc_done(rq, t);
    rq->ser_ns += ser_ns;
    rq->ser_timed = rc == 0;
    if (rc < 0)
        return l3_http_fail_rc(rq, rc, L3_CTX_READ, NULL);
    l3_http_add_etag(req, lsn);
    add_ttl_header(req, exp);
    l3_http_respond_jbuf(rq, 200, L3_CT_JSON);
    return 0;
}

static int ok_version(l3_rq_t *rq, int status, uint64_t lsn)
{
    static const char head[] = "{\"ok\":true,\"version\":";
    char *p = h2o_mem_alloc_pool(&rq->req->pool, 48);
    memcpy(p, head, sizeof(head) - 1);
    size_t n = sizeof(head) - 1 + l3_http_u64_dec(p + sizeof(head) - 1, lsn);
    p[n++] = '}';
    p[n++] = '\n';
    l3_http_add_etag(rq->req, lsn);
    l3_http_respond_write(rq, status, L3_CT_JSON, h2o_iovec_init(p, n));
    return 0;
}

/* Answer {"value":<json>,"version":n}. */
static int ok_value(l3_rq_t *rq, const char *json, size_t jlen, uint64_t lsn)
{
    static const char head[] = "{\"value\":", mid[] = ",\"version\":";
    char *p = h2o_mem_alloc_pool(&rq->req->pool, jlen + 64), *o = p;
    o = mempcpy(o, head, sizeof(head) - 1);
    o = mempcpy(o, json, jlen);
    o = mempcpy(o, mid, sizeof(mid) - 1);
    o += l3_http_u64_dec(o, lsn);
    *o++ = '}';
    *o++ = '\n';
    l3_http_add_etag(rq->req, lsn);
    l3_http_respond_write(rq, 200, L3_CT_JSON, h2o_iovec_init(p, (size_t)(o - p)));
    return 0;
}

/* Read the body: 411 without one, 413 above the limit. Returns 1 when answered. */
static int need_body(l3_rq_t *rq)
{
    h2o_req_t *req = rq->req;
    if (req->entity.base == NULL) {
        l3_http_fail(rq, 411, "length_required", "a request body is required");
        return 1;
    }
    if (req->entity.len > rq->env->max_body_bytes) {
        l3_http_fail(rq, 413, "too_large", "body of %zu bytes exceeds server.max_body_bytes (%" PRIu64 ")",
                     req->entity.len, rq->env->max_body_bytes);
        return 1;
    }
    return 0;
}

/* PUT's body format from Content-Type: 0 JSON, 1 binary, -1 refused (answered). */
static int put_format(l3_rq_t *rq)
{
    h2o_iovec_t ct = l3_http_header(rq->req, H2O_TOKEN_CONTENT_TYPE);
    if (ct.base == NULL || (ct.len == 16 && memcmp(ct.base, "application/json", 16) == 0))
        return 0; /* the common spelling, without the media type's copy */
    h2o_iovec_t mt = l3_http_media_type(rq->req, ct);
    if (l3_http_ieq(mt, H2O_STRLIT(L3_CT_BIN)))
        return 1;
    if (l3_http_ieq(mt, H2O_STRLIT("application/json")) || l3_http_ieq(mt, H2O_STRLIT("text/plain")) ||
        l3_http_ieq(mt, H2O_STRLIT("application/x-www-form-urlencoded")) || mt.len == 0 ||
        (mt.len > 5 && memcmp(mt.base + mt.len - 5, "+json", 5) == 0))
        return 0;
    l3_http_fail(rq, 415, "unsupported_media_type", "PUT takes application/json or " L3_CT_BIN ", not %.*s",
                 (int)L3_MIN(mt.len, 100), mt.base);
    return -1;
}

static int on_put(l3_rq_t *rq, h2o_iovec_t key, const l3_query_t *q)
{
    h2o_req_t *req = rq->req;
    l3_store_t *st = rq->env->store;
    uint64_t deadline;
    if (need_body(rq) || parse_ttl(rq, q, false, &deadline) != 0)
        return 0;
    int bin = put_format(rq);
    if (bin < 0)
        return 0;
    uint64_t if_match;
    if (resolve_if_match(rq, key, &if_match))
        return 0;
    h2o_iovec_t inm = l3_http_header(req, H2O_TOKEN_IF_NONE_MATCH);
    if (inm.base != NULL) {
        if (if_match != 0 || inm.len != 1 || inm.base[0] != '*')
            return l3_http_fail(rq, 400, "bad_value",
                                "PUT takes If-None-Match: * alone (create only), not with If-Match");
        if_match = L3_STORE_IF_ABSENT;
    }
    uint64_t lsn = 0;
    l3_doc_error_t err = {0, NULL};
    int rc;
    uint64_t t = l3_now_ns();
    if (bin) {
        const uint8_t *doc = (const uint8_t *)req->entity.base;
        if (((uintptr_t)doc & 7) != 0 && req->entity.len > 0) { /* the format wants 8-byte alignment */
            uint8_t *copy = malloc(req->entity.len);
            if (copy == NULL)
                return l3_http_fail_rc(rq, -ENOMEM, L3_CTX_WRITE, NULL);
            memcpy(copy, doc, req->entity.len);
            rc = l3_store_put_bin_ttl(st, key.base, key.len, copy, req->entity.len, if_match, deadline, &lsn,
                                      &err);
            free(copy);
        } else {
            rc = l3_store_put_bin_ttl(st, key.base, key.len, doc, req->entity.len, if_match, deadline, &lsn,
                                      &err);
        }
    } else {
        rc = l3_store_put_json_ttl(st, key.base, key.len, req->entity.base, req->entity.len, if_match,
                                   deadline, &lsn, &err);
    }
    l3_http_doc_done(rq, t);
    if (rc == -EEXIST)
        return l3_http_fail(rq, 412, "precondition_failed", "If-None-Match: * given but the document exists");
    if (rc < 0)
        return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, &err);
    add_ttl_header(req, deadline);
    return ok_version(rq, 200, lsn);
}

/* POST ?op=expire&ttl=<s> (set the deadline) or ?op=persist (remove it). */
static int on_expire(l3_rq_t *rq, h2o_iovec_t key, const l3_query_t *q)
{
    uint64_t deadline = 0, if_match, lsn = 0;
    if (q_is(q->op, "expire") && parse_ttl(rq, q, true, &deadline) != 0)
        return 0;
    if (resolve_if_match(rq, key, &if_match))
        return 0;
    uint64_t t = l3_now_ns();
    int rc = l3_store_expire(rq->env->store, key.base, key.len, deadline, if_match, &lsn);
    l3_http_doc_done(rq, t);
    if (rc < 0)
        return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, NULL);
    add_ttl_header(rq->req, deadline);
    return ok_version(rq, 200, lsn);
}

static int on_delete(l3_rq_t *rq, h2o_iovec_t key)
{
    uint64_t if_match, lsn = 0;
    if (resolve_if_match(rq, key, &if_match))
        return 0;
    uint64_t t = l3_now_ns();
    int rc = l3_store_delete(rq->env->store, key.base, key.len, if_match, &lsn);
    l3_http_doc_done(rq, t);
    if (rc < 0)
        return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, NULL);
    return ok_version(rq, 200, lsn);
}

static int on_incr(l3_rq_t *rq, h2o_iovec_t key, const l3_query_t *q)
{
    int64_t delta = 1, nv = 0;
    uint64_t if_match, lsn = 0;
    char numbuf[40];
    if (q->has_val && !l3_q_i64(q->val.base, q->val.len, &delta))
        return l3_http_fail(rq, 400, "bad_value", "val must be a 64-bit integer in JSON's grammar");
    if (resolve_if_match(rq, key, &if_match))
        return 0;
    /* the store's incr takes no If-Match: with one, the check above is advisory under races */
    uint64_t t = l3_now_ns();
    int rc =
        l3_store_incr(rq->env->store, key.base, key.len, q->field.base, q->field.len, 0, delta, &nv, &lsn);
    l3_http_doc_done(rq, t);
    if (rc < 0)
        return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, NULL);
    return ok_value(rq, numbuf, l3_http_i64_dec(numbuf, nv), lsn);
}

/* The scalar a set_* op stores, from ?op= and ?val=. 0, or -1 after answering 400. */
static int parse_scalar(l3_rq_t *rq, const l3_query_t *q, l3_doc_scalar_t *v, unsigned *flags)
{
    *flags = L3_DOC_SET_SAME_TYPE;
    if (q_is(q->op, "set_int")) {
        if (!q->has_val || !l3_q_i64(q->val.base, q->val.len, &v->i))
            return l3_http_fail(rq, 400, "bad_value", "val must be a 64-bit integer in JSON's grammar"), -1;
        v->type = L3_DOC_INT;
    } else if (q_is(q->op, "set_double")) {
        if (!q->has_val || !l3_q_double(q->val.base, q->val.len, &v->d))
            return l3_http_fail(rq, 400, "bad_value", "val must be a finite number in JSON's grammar"), -1;
        v->type = L3_DOC_DOUBLE;
    } else if (q_is(q->op, "set_str")) {
        if (!q->has_val)
            return l3_http_fail(rq, 400, "bad_value", "missing val"), -1;
        if (!l3_utf8_valid(q->val.base, q->val.len))
            return l3_http_fail(rq, 400, "bad_value", "val is not valid UTF-8"), -1;
        v->type = L3_DOC_STRING;
        v->str.ptr = q->val.base;
        v->str.len = q->val.len;
    } else if (q_is(q->op, "set_bool")) {
        v->type = L3_DOC_BOOL;
        if (q_is(q->val, "true") || q_is(q->val, "1"))
            v->b = true;
        else if (q_is(q->val, "false") || q_is(q->val, "0"))
            v->b = false;
        else
            return l3_http_fail(rq, 400, "bad_value", "val must be true or false"), -1;
    } else if (q_is(q->op, "set_null")) {
        v->type = L3_DOC_NULL;
        *flags = 0;
    } else {
        return l3_http_fail(rq, 400, "bad_op", "unknown op '%.*s'", (int)L3_MIN(q->op.len, 64), q->op.base),
               -1;
    }
    return 0;
}

/* Is the value at path a number (of any representation)? */
static bool is_number(l3_store_t *st, h2o_iovec_t key, const l3_query_t *q)
{
    uint8_t *buf;
    size_t len;
    uint64_t lsn;
    if (l3_store_get_bin(st, key.base, key.len, &buf, &len, &lsn) != 0)
        return false;
    l3_doc_val_t val;
    bool number = l3_doc_get(buf, q->field.base, q->field.len, L3_DOC_PATH_AUTO, &val) == 0 &&
                  (val.type == L3_DOC_INT || val.type == L3_DOC_DOUBLE || val.type == L3_DOC_BIGNUM);
    free(buf);
    return number;
}

/* Echo the stored scalar: {"value":v,"version":n}. */
static int echo_scalar(l3_rq_t *rq, const l3_doc_scalar_t *v, uint64_t lsn)
{
    char numbuf[40];
    int n;
    l3_buf_t out = {0};
    switch (v->type) {
    case L3_DOC_INT:
        return ok_value(rq, numbuf, l3_http_i64_dec(numbuf, v->i), lsn);
    case L3_DOC_DOUBLE:
        n = snprintf(numbuf, sizeof(numbuf), "%.17g", v->d);
        return ok_value(rq, numbuf, (size_t)n, lsn);
    case L3_DOC_BOOL:
        return v->b ? ok_value(rq, H2O_STRLIT("true"), lsn) : ok_value(rq, H2O_STRLIT("false"), lsn);
    case L3_DOC_NULL:
        return ok_value(rq, H2O_STRLIT("null"), lsn);
    default:
        if (l3_http_buf_str(&out, v->str.ptr, v->str.len) != 0)
            return l3_http_fail_rc(rq, -ENOMEM, L3_CTX_WRITE, NULL);
        l3_http_adopt(rq->req, out.ptr);
        return ok_value(rq, out.ptr, out.len, lsn);
    }
}

static int on_post(l3_rq_t *rq, h2o_iovec_t key, const l3_query_t *q)
{
    l3_store_t *st = rq->env->store;
    if (q->op.base == NULL)
        return l3_http_fail(rq, 400, "bad_op",
                            "missing ?op= (set_int, set_double, set_str, set_bool, set_null, incr, set, "
                            "append, insert, pop, remove, expire, persist)");
    if (q_is(q->op, "expire") || q_is(q->op, "persist"))
        return on_expire(rq, key, q);
    if (!q->has_field)
        return l3_http_fail(rq, 400, "bad_path", "missing ?field= (dotted path or JSON Pointer)");
    if (l3_route_arr_is_op(q->op)) {
        uint64_t im;
        return resolve_if_match(rq, key, &im) ? 0 : l3_route_arr(rq, key, q, im);
    }
    if (q_is(q->op, "incr"))
        return on_incr(rq, key, q);
    const char *path = q->field.base;
    size_t plen = q->field.len;
    uint64_t if_match, lsn = 0;
    l3_doc_scalar_t v;
    unsigned flags;
    int rc;
    if (parse_scalar(rq, q, &v, &flags) != 0)
        return 0;
    if (resolve_if_match(rq, key, &if_match))
        return 0;
    uint64_t t = l3_now_ns();
    if (v.type == L3_DOC_INT && if_match == 0) {
        rc = l3_store_set_int(st, key.base, key.len, path, plen, 0, v.i, &lsn); /* fast path */
        if (rc != L3_ENOTFOUND) {
            l3_http_doc_done(rq, t);
            if (rc < 0)
                return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, NULL);
            return echo_scalar(rq, &v, lsn);
        }
    }
    rc = l3_store_set(st, key.base, key.len, path, plen, flags, &v, if_match, &lsn);
    /* set_double may replace any number (an int becomes a double); other types conflict */
    if (rc == L3_ETYPE && v.type == L3_DOC_DOUBLE && is_number(st, key, q))
        rc = l3_store_set(st, key.base, key.len, path, plen, 0, &v, if_match, &lsn);
    l3_http_doc_done(rq, t);
    if (rc < 0)
        return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, NULL);
    return echo_scalar(rq, &v, lsn);
}

static int on_patch(l3_rq_t *rq, h2o_iovec_t key)
{
    h2o_req_t *req = rq->req;
    if (need_body(rq))
        return 0;
    h2o_iovec_t ct = l3_http_header(req, H2O_TOKEN_CONTENT_TYPE);
    h2o_iovec_t mt = ct.base ? l3_http_media_type(req, ct) : h2o_iovec_init(H2O_STRLIT(""));
    bool merge;
    if (l3_http_ieq(mt, H2O_STRLIT("application/merge-patch+json")) ||
        l3_http_ieq(mt, H2O_STRLIT("application/json")))
        merge = true;
    else if (l3_http_ieq(mt, H2O_STRLIT("application/json-patch+json")))
        merge = false;
    else
        return l3_http_fail(
            rq, 415, "unsupported_media_type",
            "PATCH takes application/merge-patch+json or application/json-patch+json, not '%.*s'",
            (int)L3_MIN(mt.len, 100), mt.base);
    uint64_t if_match, lsn = 0;
    if (resolve_if_match(rq, key, &if_match))
        return 0;
    l3_doc_error_t err = {0, NULL};
    l3_store_t *st = rq->env->store;
    uint64_t t = l3_now_ns();
    int rc = merge ? l3_store_merge_patch(st, key.base, key.len, req->entity.base, req->entity.len, if_match,
                                          &lsn, &err)
                   : l3_store_json_patch(st, key.base, key.len, req->entity.base, req->entity.len, if_match,
                                         &lsn, &err);
    l3_http_doc_done(rq, t);
    if (rc < 0) {
        if (rc == L3_ESYNTAX && err.msg != NULL && err.offset == 0 && !merge)
            return l3_http_fail(rq, 400, "invalid_patch", "%s", err.msg);
        if (rc == L3_EDEPTH && err.msg != NULL && !merge) /* the text, or an operation's result */
            return l3_http_fail(rq, 400, "too_deep", "patch at byte offset %zu: %s", err.offset, err.msg);
        return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, &err);
    }
    return ok_version(rq, rc == 1 ? 201 : 200, lsn);
}

static bool is_reserved(h2o_iovec_t key)
{
    return h2o_memis(key.base, key.len, H2O_STRLIT("health")) ||
           h2o_memis(key.base, key.len, H2O_STRLIT("metrics"));
}

/* The key: the raw path after /kv/, percent-decoded exactly once (docs/api.md, "Keys"). */
int l3_route_kv(l3_rq_t *rq, h2o_iovec_t raw)
{
    h2o_req_t *req = rq->req;
    h2o_iovec_t key = raw;
    if (memchr(raw.base, '%', raw.len) != NULL) { /* no escape: the raw bytes are the key */
        char *kb = h2o_mem_alloc_pool(&req->pool, raw.len + 1);
        long kl = l3_q_path_decode(raw.base, raw.len, kb);
        if (kl < 0)
            return l3_http_fail(rq, 400, "bad_key", "malformed percent-escape in the key");
        key = h2o_iovec_init(kb, (size_t)kl);
    }
    if (key.len > L3_STORE_KEY_MAX)
        return l3_http_fail(rq, 414, "key_too_long", "key of %zu bytes; the limit is %u", key.len,
                            L3_STORE_KEY_MAX);
    if (!l3_q_key_valid(key.base, key.len))
        return l3_http_fail(rq, 400, "bad_key", "a key is valid UTF-8 without control characters");
    if (is_reserved(key)) /* spelt with escapes: the plain spelling routes to the reserved name */
        return l3_http_fail(rq, 400, "reserved_key", "'%.*s' is a reserved name", (int)key.len, key.base);
    if (rq->env->over_limit != NULL && rq->env->over_limit(req->conn))
        return l3_http_fail(rq, 503, "overloaded", "too many open connections on this worker");
    l3_query_t q;
    if (l3_http_query(req, &q) != 0)
        return l3_http_fail(rq, 400, "bad_query", "malformed percent-escape in the query string");
    if (L3_METHOD(req, "GET") || rq->head) {
        rq->route = L3_OBS_R_GET;
        return on_get(rq, key, &q);
    }
    if (L3_METHOD(req, "PUT")) {
        rq->route = L3_OBS_R_PUT;
        return on_put(rq, key, &q);
    }
    if (L3_METHOD(req, "DELETE")) {
        rq->route = L3_OBS_R_DELETE;
        return on_delete(rq, key);
    }
    if (L3_METHOD(req, "POST")) {
        rq->route = L3_OBS_R_POST;
        return on_post(rq, key, &q);
    }
    rq->route = L3_OBS_R_PATCH;
    return on_patch(rq, key);
}
