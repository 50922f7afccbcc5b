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
 * Bounds: val and field come from the request target (at most 8 KiB), or from a POST /batch
 * operation (at most server.max_body_bytes); the snapshot is one copy of the document
 * (storage.max_document_bytes); ARR_TRIES attempts.
 * POST /batch (route_batch.c) runs the same code: l3_arr_req_init builds the request from
 * an operation's fields, l3_arr_run plans and applies it - on the store as here, or inside
 * a transaction, whose view is the snapshot and needs no retry.
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

typedef l3_arr_req_t arr_req_t;

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

static int req_fail(l3_arr_res_t *res, int status, const char *error, const char *detail)
{
    res->status = status;
    res->error = error;
    snprintf(res->detail, sizeof res->detail, "%s", detail);
    return -1;
}

/* Parse val as "[" val "]" into r->vals: one value, or with multi one array whose elements
 * are the values. 0, or -1 with res set. */
static int parse_vals(l3_q_str_t val, bool multi, arr_req_t *r, l3_arr_res_t *res)
{
    size_t n = val.len + 2;
    char *w = malloc(n);
    if (w == NULL)
        return res->rc = -ENOMEM, -1;
    w[0] = '[';
    memcpy(w + 1, val.base, val.len);
    w[n - 1] = ']';
    size_t len;
    l3_doc_error_t e = {0, NULL};
    int rc = l3_doc_from_json(w, n, NULL, &r->vals, &len, &e);
    free(w);
    if (rc == L3_EDEPTH)
        return req_fail(res, 400, "too_deep", "val nests deeper than the document limit");
    if (rc == -ENOMEM)
        return res->rc = rc, -1;
    l3_doc_val_t v;
    if (rc == 0)
        l3_doc_val(r->vals, L3_DOC_ROOT, &v);
    if (rc != 0 || v.count != 1)
        return req_fail(res, 400, "bad_value", "val must be one JSON value");
    r->vslot = L3_DOC_ROOT;
    r->nvals = 1;
    if (r->op != L3_ARR_SET && multi) { /* set takes one value, whatever multi says */
        (void)l3_doc_arr_at(r->vals, L3_DOC_ROOT, 0, &r->vslot);
        l3_doc_val(r->vals, r->vslot, &v);
        if (v.type != L3_DOC_ARRAY || v.count == 0)
            return req_fail(res, 400, "bad_value", "with multi=true, val must be a non-empty JSON array");
        r->nvals = v.count;
    }
    return 0;
}

int l3_arr_req_init(arr_req_t *r, l3_q_str_t op, l3_q_str_t field, const l3_q_str_t *val, bool multi,
                    l3_q_str_t index, bool parents, l3_arr_res_t *res)
{
    memset(r, 0, sizeof(*r));
    memset(res, 0, sizeof(*res));
    r->op = q_eq(op, "append")   ? L3_ARR_APPEND
            : q_eq(op, "insert") ? L3_ARR_INSERT
            : q_eq(op, "pop")    ? L3_ARR_POP
            : q_eq(op, "remove") ? L3_ARR_REMOVE
                                 : L3_ARR_SET;
    int rc = field.base != NULL ? to_pointer(field.base, field.len, &r->ptr) : L3_EPATH;
    if (rc == -ENOMEM)
        return res->rc = rc, -1;
    if (rc != 0)
        return req_fail(res, 400, "bad_path",
                        "field must name a value inside the document (no empty segment)");
    r->has_index = index.base != NULL;
    if (r->has_index && !l3_q_i64(index.base, index.len, &r->index))
        return req_fail(res, 400, "bad_value", "index must be an integer");
    if (r->op == L3_ARR_INSERT && !r->has_index)
        return req_fail(res, 400, "bad_value", "insert needs ?index=");
    r->parents = r->op == L3_ARR_SET && parents;
    if (r->op == L3_ARR_POP || r->op == L3_ARR_REMOVE)
        return 0;
    if (val == NULL)
        return req_fail(res, 400, "bad_value", "missing val (a JSON value)");
    return parse_vals(*val, multi, r, res);
}

void l3_arr_free(arr_req_t *r, l3_arr_res_t *res)
{
    free(r->ptr.ptr);
    free(r->vals);
    free(res->value.ptr);
    memset(r, 0, sizeof(*r));
    res->value = (l3_buf_t){0};
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
    if (r->op == L3_ARR_REMOVE) {
        if (found != 0)
            return plan_fail(pl, 404, "path_not_found", "field names nothing in the document");
        rc = l3_doc_to_json(doc, slot, &pl->reply);
        if (rc == 0)
            rc = add_op(&pl->patch, "remove", P, n, "");
        return rc == 0 ? l3_http_buf_cat(&pl->patch, "}]", 2) : rc;
    }
    if (r->op == L3_ARR_SET) {
        rc = r->parents && found != 0 ? add_parents(&pl->patch, doc, &r->ptr) : 0;
        if (rc == 0)
            rc = add_op(&pl->patch, found == 0 ? "replace" : "add", P, n, "");
        if (rc == 0)
            rc = add_value(&pl->patch, r, 0);
        return rc == 0 ? l3_http_buf_cat(&pl->patch, "]", 1) : rc;
    }
    if (target_array(pl, doc, slot, found, &count) != 0)
        return 0;
    if (r->op == L3_ARR_POP) {
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
    if (r->op == L3_ARR_INSERT && (r->index < 0 || (uint64_t)r->index > count))
        return plan_fail(pl, 409, "path_not_found", "insert index out of range (0 to the array's length)");
    for (uint32_t k = 0; k < r->nvals && rc == 0; k++) {
        if (r->op == L3_ARR_APPEND)
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

/* Apply the plan to the snapshot (heap copy, adopted and freed here): the errors a patch
 * gives, and for append/insert/set the new value at the target into pl->reply. */
static int dry_run(const arr_req_t *r, uint8_t *doc, size_t len, arr_plan_t *pl, l3_doc_error_t *e)
{
    l3_doc_t hd = {0};
    int rc = l3_doc_heap_adopt_any(&hd, doc, len);
    if (rc == 0)
        rc = l3_doc_json_patch(&hd, pl->patch.ptr, pl->patch.len, e);
    uint32_t slot;
    if (rc == 0 && r->op != L3_ARR_POP && r->op != L3_ARR_REMOVE) {
        rc = l3_doc_lookup(hd.buf, r->ptr.ptr, r->ptr.len, L3_DOC_PATH_POINTER, &slot);
        if (rc == 0)
            rc = l3_doc_to_json(hd.buf, slot, &pl->reply);
    }
    l3_doc_heap_free(&hd);
    return rc;
}

/* One attempt: snapshot, plan, dry run, store (or transaction). 0 = res filled, 1 = stale,
 * retry. Nothing is sent: the caller answers from res. */
static int attempt(l3_store_t *st, l3_store_txn_t *txn, h2o_iovec_t key, const arr_req_t *r, bool last,
                   l3_arr_res_t *res)
{
    uint8_t *doc = NULL;
    size_t len = 0;
    uint64_t lsn = 0, nlsn = 0;
    arr_plan_t pl = {0};
    int rc;
    if (txn != NULL) {
        const uint8_t *view;
        rc = l3_store_txn_get(txn, key.base, key.len, &view, &lsn);
        if (rc == 0) {
            len = l3_doc_size(view);
            if ((doc = malloc(len ? len : 1)) == NULL)
                rc = -ENOMEM;
            else
                memcpy(doc, view, len);
        }
    } else {
        rc = l3_store_get_bin(st, key.base, key.len, &doc, &len, &lsn);
    }
    if (rc < 0)
        return res->rc = rc, 0;
    rc = plan(r, doc, &pl);
    if (rc == 0 && pl.err_status == 0)
        rc = dry_run(r, doc, len, &pl, &res->e);
    else
        free(doc);
    if (rc == 0 && pl.err_status == 0) {
        uint64_t im = r->if_match ? r->if_match : lsn;
        rc = txn != NULL
                 ? l3_store_txn_json_patch(txn, key.base, key.len, pl.patch.ptr, pl.patch.len, im, &nlsn,
                                           &res->e)
                 : l3_store_json_patch(st, key.base, key.len, pl.patch.ptr, pl.patch.len, im, &nlsn, &res->e);
    }
    if (rc == -ESTALE && r->if_match == 0 && txn == NULL && !last) {
        plan_free(&pl);
        return 1;
    }
    if (rc == -ESTALE && r->if_match == 0 && txn == NULL)
        req_fail(res, 503, "overloaded", "the document kept changing during the operation; retry");
    else if (rc < 0)
        res->rc = rc;
    else if (pl.err_status != 0)
        req_fail(res, pl.err_status, pl.err_error, pl.err_detail);
    else {
        res->value = pl.reply;
        pl.reply = (l3_buf_t){0};
        res->version = nlsn;
    }
    plan_free(&pl);
    return 0;
}

void l3_arr_run(l3_store_t *st, l3_store_txn_t *txn, h2o_iovec_t key, const arr_req_t *r, l3_arr_res_t *res)
{
    for (unsigned i = 0; i < ARR_TRIES && attempt(st, txn, key, r, i + 1 == ARR_TRIES, res) == 1; i++)
        ;
}

int l3_route_arr(l3_rq_t *rq, h2o_iovec_t key, const l3_query_t *q, uint64_t if_match)
{
    arr_req_t r;
    l3_arr_res_t res;
    if (l3_arr_req_init(&r, q->op, q->field, q->has_val ? &q->val : NULL, q_true(q->multi), q->index,
                        q_true(q->create_parents), &res) == 0) {
        r.if_match = if_match;
        uint64_t t = l3_now_ns();
        l3_arr_run(rq->env->store, NULL, key, &r, &res);
        l3_http_doc_done(rq, t);
    }
    if (res.rc < 0) {
        l3_http_fail_rc(rq, res.rc, L3_CTX_WRITE, &res.e);
    } else if (res.status != 0) {
        l3_http_fail(rq, res.status, res.error, "%s", res.detail);
    } else {
        size_t cap = res.value.len + 64;
        char *p = h2o_mem_alloc_pool(&rq->req->pool, cap);
        int n = snprintf(p, cap, "{\"value\":%.*s,\"version\":%" PRIu64 "}\n", (int)res.value.len,
                         res.value.ptr, res.version);
        l3_http_add_etag(rq->req, res.version);
        l3_http_respond_write(rq, 200, L3_CT_JSON, h2o_iovec_init(p, (size_t)n));
    }
    l3_arr_free(&r, &res);
    return 0;
}
