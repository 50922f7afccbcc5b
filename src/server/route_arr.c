/* SPDX-License-Identifier: MIT */
/*
 * route_arr.c - the array and path operations of POST /kv/{key}: op=append, insert, pop,
 * remove and set (any JSON value, create_parents=true). docs/api.md has the API.
 *
 * Runs in: workers (HTTP requests).
 * How: each request reads a snapshot of the document (l3_store_get_bin, with its version),
 * works out the one JSON Patch (RFC 6902) that performs it, applies that patch to the
 * snapshot (the errors and the reply's value come from there), then hands it to
 * l3_store_json_patch with If-Match set to the snapshot's version. The store applies and
 * logs it exactly like a PATCH (WAL record L3_WALOP_PATCH, change feed op "patch"), so
 * recovery replays the same change. Another writer between the read and the patch makes
 * the store refuse (stale version): the request starts over, at most ARR_TRIES times, then
 * answers 503 overloaded. With a client If-Match there is no retry (412).
 * Invariants:
 *  A1 the patch text embeds values only as the document layer prints them (canonical
 *     JSON, parsed from val first), and the path only as an escaped JSON string: no
 *     client text can add patch operations
 *  A2 a refused request changes nothing (the store applies the patch atomically)
 * Bounds: val and field come from the request target (at most 8 KiB); the snapshot is one
 * copy of the document (storage.max_document_bytes); ARR_TRIES attempts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/error.h"
#include "route.h"
#include "send.h"

#define ARR_TRIES 8

typedef enum { A_APPEND, A_INSERT, A_POP, A_REMOVE, A_SET } arr_op_t;

typedef struct {
    arr_op_t op;
    l3_buf_t ptr;      /* the field as a JSON Pointer */
    uint8_t *vals;     /* "[" val "]" parsed: the values to add (NULL for pop, remove) */
    uint32_t vslot;    /* the array in vals holding them */
    uint32_t nvals;    /* its length */
    int64_t index;     /* insert, pop */
    bool has_index;    /* ?index= given */
    bool parents;      /* set: create_parents=true */
    uint64_t if_match; /* the client's, 0 = none */
} arr_req_t;

static bool q_eq(l3_q_str_t v, const char *lit)
{
    return v.base != NULL && v.len == strlen(lit) && memcmp(v.base, lit, v.len) == 0;
}

static bool q_true(l3_q_str_t v)
{
    return q_eq(v, "true") || q_eq(v, "1");
}

int l3_route_arr_is_op(l3_q_str_t op)
{
    return q_eq(op, "append") || q_eq(op, "insert") || q_eq(op, "pop") || q_eq(op, "remove") ||
           q_eq(op, "set");
}

/* The field as a JSON Pointer: verbatim when it starts with '/', else each dotted segment
 * escaped (~ as ~0, / as ~1). 0, L3_EPATH (empty, or an empty dotted segment), -ENOMEM. */
static int to_pointer(const char *f, size_t n, l3_buf_t *out)
{
    if (n == 0)
        return L3_EPATH;
    if (f[0] == '/')
        return l3_http_buf_cat(out, f, n);
    size_t i = 0;
    while (i <= n) {
        size_t e = i;
        while (e < n && f[e] != '.')
            e++;
        if (e == i)
            return L3_EPATH;
        if (l3_doc_ptr_push(out, f + i, e - i) != 0)
            return -ENOMEM;
        i = e + 1;
    }
    return 0;
}

/* Parse val as "[" val "]" into r->vals: one value, or with multi=true one array whose
 * elements are the values. 0, or -1 after answering 400. */
static int parse_vals(l3_rq_t *rq, const l3_query_t *q, arr_req_t *r)
{
    if (!q->has_val)
        return l3_http_fail(rq, 400, "bad_value", "missing val (a JSON value)"), -1;
    size_t n = q->val.len + 2;
    char *w = malloc(n);
    if (w == NULL)
        return l3_http_fail_rc(rq, -ENOMEM, L3_CTX_WRITE, NULL), -1;
    w[0] = '[';
    memcpy(w + 1, q->val.base, q->val.len);
    w[n - 1] = ']';
    size_t len;
    l3_doc_error_t e = {0, NULL};
    int rc = l3_doc_from_json(w, n, NULL, &r->vals, &len, &e);
    free(w);
    if (rc == L3_EDEPTH)
        return l3_http_fail(rq, 400, "too_deep", "val nests deeper than the document limit"), -1;
    if (rc == -ENOMEM)
        return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, NULL), -1;
    l3_doc_val_t v;
    if (rc == 0)
        l3_doc_val(r->vals, L3_DOC_ROOT, &v);
    if (rc != 0 || v.count != 1)
        return l3_http_fail(rq, 400, "bad_value", "val must be one JSON value"), -1;
    r->vslot = L3_DOC_ROOT;
    r->nvals = 1;
    if (r->op != A_SET && q_true(q->multi)) { /* set takes one value, whatever multi says */
        (void)l3_doc_arr_at(r->vals, L3_DOC_ROOT, 0, &r->vslot);
        l3_doc_val(r->vals, r->vslot, &v);
        if (v.type != L3_DOC_ARRAY || v.count == 0)
            return l3_http_fail(rq, 400, "bad_value", "with multi=true, val must be a non-empty JSON array"),
                   -1;
        r->nvals = v.count;
    }
    return 0;
}

/* Read the query into r. 0, or -1 after answering 400. */
static int parse_req(l3_rq_t *rq, const l3_query_t *q, arr_req_t *r)
{
    r->op = q_eq(q->op, "append")   ? A_APPEND
            : q_eq(q->op, "insert") ? A_INSERT
            : q_eq(q->op, "pop")    ? A_POP
            : q_eq(q->op, "remove") ? A_REMOVE
                                    : A_SET;
    int rc = to_pointer(q->field.base, q->field.len, &r->ptr);
    if (rc == -ENOMEM)
        return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, NULL), -1;
    if (rc != 0)
        return l3_http_fail(rq, 400, "bad_path",
                            "field must name a value inside the document (no empty segment)"),
               -1;
    r->has_index = q->index.base != NULL;
    if (r->has_index && !l3_q_i64(q->index.base, q->index.len, &r->index))
        return l3_http_fail(rq, 400, "bad_value", "index must be an integer"), -1;
    if (r->op == A_INSERT && !r->has_index)
        return l3_http_fail(rq, 400, "bad_value", "insert needs ?index="), -1;
    r->parents = r->op == A_SET && q_true(q->create_parents);
    if (r->op == A_POP || r->op == A_REMOVE)
        return 0;
    return parse_vals(rq, q, r);
}

/* Append `{"op":"<op>","path":"<ptr><suffix>"` to the patch (the caller closes it). */
static int add_op(l3_buf_t *p, const char *op, const char *ptr, size_t plen, const char *suffix)
{
    size_t n = strlen(suffix);
    int rc = l3_http_buf_cat(p, p->len > 1 ? ",{\"op\":\"" : "{\"op\":\"", p->len > 1 ? 8 : 7);
    if (rc == 0)
        rc = l3_http_buf_cat(p, op, strlen(op));
    if (rc == 0)
        rc = l3_http_buf_cat(p, "\",\"path\":", 9);
    char *full = malloc(plen + n + 1);
    if (full == NULL)
        return -ENOMEM;
    memcpy(full, ptr, plen);
    memcpy(full + plen, suffix, n);
    if (rc == 0)
        rc = l3_http_buf_str(p, full, plen + n);
    free(full);
    return rc;
}

/* Append `,"value":<the i-th value>}` and close the operation. */
static int add_value(l3_buf_t *p, const arr_req_t *r, uint32_t i)
{
    uint32_t slot = 0;
    (void)l3_doc_arr_at(r->vals, r->vslot, r->vslot == L3_DOC_ROOT ? 0 : i, &slot);
    int rc = l3_http_buf_cat(p, ",\"value\":", 9);
    if (rc == 0)
        rc = l3_doc_to_json(r->vals, slot, p);
    return rc == 0 ? l3_http_buf_cat(p, "}", 1) : rc;
}

/* set with create_parents: an "add" of {} for every missing proper prefix of the path. */
static int add_parents(l3_buf_t *p, const uint8_t *doc, const l3_buf_t *ptr)
{
    uint32_t slot;
    for (size_t i = 1; i < ptr->len; i++) {
        if (ptr->ptr[i] != '/')
            continue;
        if (l3_doc_lookup(doc, ptr->ptr, i, L3_DOC_PATH_POINTER, &slot) == 0)
            continue;
        int rc = add_op(p, "add", ptr->ptr, i, "");
        if (rc == 0)
            rc = l3_http_buf_cat(p, ",\"value\":{}}", 12);
        if (rc != 0)
            return rc;
    }
    return 0;
}

typedef struct {
    l3_buf_t patch;
    l3_buf_t reply; /* pop, remove: the value taken out */
    const char *err_error, *err_detail;
    int err_status; /* nonzero: answer this, not the patch */
    char detail[96];
} arr_plan_t;

static int plan_fail(arr_plan_t *pl, int status, const char *error, const char *detail)
{
    pl->err_status = status;
    pl->err_error = error;
    pl->err_detail = detail;
    return 0;
}

/* The array at the target for append/insert/pop: its length, or plan_fail. */
static int target_array(arr_plan_t *pl, const uint8_t *doc, uint32_t slot, int found, uint32_t *count)
{
    if (found != 0)
        return plan_fail(pl, 404, "path_not_found", "field names nothing in the document"), 1;
    l3_doc_val_t v;
    l3_doc_val(doc, slot, &v);
    if (v.type != L3_DOC_ARRAY)
        return plan_fail(pl, 409, "type_conflict", "field does not name an array"), 1;
    *count = v.count;
    return 0;
}

/* Work out the patch for r on the snapshot doc. 0 (maybe with pl->err_status) or < 0. */
static int plan(const arr_req_t *r, const uint8_t *doc, arr_plan_t *pl)
{
    uint32_t slot = 0, count = 0, elem;
    int found = l3_doc_lookup(doc, r->ptr.ptr, r->ptr.len, L3_DOC_PATH_POINTER, &slot);
    const char *P = r->ptr.ptr;
    size_t n = r->ptr.len;
    char sfx[32];
    int rc = l3_http_buf_cat(&pl->patch, "[", 1);
    if (rc != 0)
        return rc;
    if (r->op == A_REMOVE) {
        if (found != 0)
            return plan_fail(pl, 404, "path_not_found", "field names nothing in the document");
        rc = l3_doc_to_json(doc, slot, &pl->reply);
        if (rc == 0)
            rc = add_op(&pl->patch, "remove", P, n, "");
        return rc == 0 ? l3_http_buf_cat(&pl->patch, "}]", 2) : rc;
    }
    if (r->op == A_SET) {
        rc = r->parents && found != 0 ? add_parents(&pl->patch, doc, &r->ptr) : 0;
        if (rc == 0)
            rc = add_op(&pl->patch, found == 0 ? "replace" : "add", P, n, "");
        if (rc == 0)
            rc = add_value(&pl->patch, r, 0);
        return rc == 0 ? l3_http_buf_cat(&pl->patch, "]", 1) : rc;
    }
    if (target_array(pl, doc, slot, found, &count) != 0)
        return 0;
    if (r->op == A_POP) {
        int64_t i = r->has_index ? r->index : -1;
        if (i < 0)
            i += count;
        if (i < 0 || (uint64_t)i >= count)
            return plan_fail(pl, 409, "path_not_found", "index out of range (or the array is empty)");
        (void)l3_doc_arr_at(doc, slot, (uint64_t)i, &elem);
        rc = l3_doc_to_json(doc, elem, &pl->reply);
        snprintf(sfx, sizeof(sfx), "/%" PRId64, i);
        if (rc == 0)
            rc = add_op(&pl->patch, "remove", P, n, sfx);
        return rc == 0 ? l3_http_buf_cat(&pl->patch, "}]", 2) : rc;
    }
    if (r->op == A_INSERT && (r->index < 0 || (uint64_t)r->index > count))
        return plan_fail(pl, 409, "path_not_found", "insert index out of range (0 to the array's length)");
    for (uint32_t k = 0; k < r->nvals && rc == 0; k++) {
        if (r->op == A_APPEND)
            snprintf(sfx, sizeof(sfx), "/-");
        else
            snprintf(sfx, sizeof(sfx), "/%" PRId64, r->index + (int64_t)k);
        rc = add_op(&pl->patch, "add", P, n, sfx);
        if (rc == 0)
            rc = add_value(&pl->patch, r, k);
    }
    return rc == 0 ? l3_http_buf_cat(&pl->patch, "]", 1) : rc;
}

static void plan_free(arr_plan_t *pl)
{
    free(pl->patch.ptr);
    free(pl->reply.ptr);
    memset(pl, 0, sizeof(*pl));
}

static int reply(l3_rq_t *rq, const l3_buf_t *v, uint64_t lsn)
{
    size_t cap = v->len + 64;
    char *p = h2o_mem_alloc_pool(&rq->req->pool, cap);
    int n = snprintf(p, cap, "{\"value\":%.*s,\"version\":%" PRIu64 "}\n", (int)v->len, v->ptr, lsn);
    l3_http_add_etag(rq->req, lsn);
    l3_http_respond_write(rq, 200, L3_CT_JSON, h2o_iovec_init(p, (size_t)n));
    return 0;
}

/* Apply the plan to the snapshot (heap copy, adopted and freed here): the errors a patch
 * gives, and for append/insert/set the new value at the target into pl->reply. */
static int dry_run(const arr_req_t *r, uint8_t *doc, size_t len, arr_plan_t *pl, l3_doc_error_t *e)
{
    l3_doc_t hd = {0};
    l3_doc_heap_adopt(&hd, doc, len);
    int rc = l3_doc_json_patch(&hd, pl->patch.ptr, pl->patch.len, e);
    uint32_t slot;
    if (rc == 0 && r->op != A_POP && r->op != A_REMOVE) {
        rc = l3_doc_lookup(hd.buf, r->ptr.ptr, r->ptr.len, L3_DOC_PATH_POINTER, &slot);
        if (rc == 0)
            rc = l3_doc_to_json(hd.buf, slot, &pl->reply);
    }
    l3_doc_heap_free(&hd);
    return rc;
}

/* One attempt: snapshot, plan, dry run, store. 0 = answered, 1 = stale, retry. */
static int attempt(l3_rq_t *rq, h2o_iovec_t key, const arr_req_t *r, bool last)
{
    l3_store_t *st = rq->env->store;
    uint8_t *doc;
    size_t len;
    uint64_t lsn, nlsn = 0, t = l3_now_ns();
    l3_doc_error_t e = {0, NULL};
    arr_plan_t pl = {0};
    int rc = l3_store_get_bin(st, key.base, key.len, &doc, &len, &lsn);
    l3_http_doc_done(rq, t);
    if (rc < 0)
        return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, NULL);
    rc = plan(r, doc, &pl);
    if (rc == 0 && pl.err_status == 0)
        rc = dry_run(r, doc, len, &pl, &e);
    else
        free(doc);
    if (rc == 0 && pl.err_status == 0) {
        t = l3_now_ns();
        rc = l3_store_json_patch(st, key.base, key.len, pl.patch.ptr, pl.patch.len,
                                 r->if_match ? r->if_match : lsn, &nlsn, &e);
        l3_http_doc_done(rq, t);
    }
    if (rc == -ESTALE && r->if_match == 0 && !last) {
        plan_free(&pl);
        return 1;
    }
    if (rc == -ESTALE && r->if_match == 0)
        l3_http_fail(rq, 503, "overloaded", "the document kept changing during the operation; retry");
    else if (rc < 0)
        l3_http_fail_rc(rq, rc, L3_CTX_WRITE, &e);
    else if (pl.err_status != 0)
        l3_http_fail(rq, pl.err_status, pl.err_error, "%s", pl.err_detail);
    else
        reply(rq, &pl.reply, nlsn);
    plan_free(&pl);
    return 0;
}

int l3_route_arr(l3_rq_t *rq, h2o_iovec_t key, const l3_query_t *q, uint64_t if_match)
{
    arr_req_t r = {0};
    r.if_match = if_match;
    if (parse_req(rq, q, &r) == 0)
        for (unsigned i = 0; i < ARR_TRIES && attempt(rq, key, &r, i + 1 == ARR_TRIES) == 1; i++)
            ;
    free(r.ptr.ptr);
    free(r.vals);
    return 0;
}
