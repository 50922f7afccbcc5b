/* SPDX-License-Identifier: MIT */
/*
 * route_batch.c - POST /batch: several single-key operations in one request, optionally as
 * one transaction (docs/api.md, "Batches and transactions").
 *
 * Runs in: workers (HTTP requests), on the event loop thread like every route.
 * Forms:
 *  {"ops":[op, ...]} -> {"results":[result, ...]}: each operation runs on its own, through
 *    the single-key calls (the store's l3_store_* and route_arr.c's core), in order; a
 *    failed one has its own status and error and does not stop the others.
 *  {"atomic":true,"compare":[...],"success":[...],"failure":[...]} ->
 *    {"succeeded":bool,"results":[...]}: one store transaction (l3_store_txn_*, txn.c) over
 *    every key named anywhere in it; when every compare holds the success operations run,
 *    otherwise the failure ones, and their changes are committed as one unit (one WAL group,
 *    contiguous in the change feed). A write that fails aborts the whole transaction:
 *    nothing changes and the reply is 409 transaction_aborted naming it.
 * Operations: the op table below (get, put, delete, patch, set, incr, append, insert, pop,
 * remove, and expire, which is refused for now); add a row to add one. The body is parsed
 * by the document parser (numbers and strings kept exactly, its depth limit applies) and
 * each value handed on is its JSON text.
 * Access: the route needs the read or the write scope; a batch with a write operation (in
 * any branch) needs write (routes.c decides the first, l3_scope_require the second).
 * Bounds: server.max_body_bytes for the body and for the results (a read whose document
 * would pass it gets its own 413); server.max_batch_ops operations and compares; a
 * transaction's keys, undo bytes and WAL group as txn.c and the WAL allow (413 beyond).
 * Durability: a reply with at least one applied write waits like a single write
 * (l3_http_respond_write): the last record's ticket covers every earlier one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "l3kv/error.h"
#include "route.h"
#include "scope.h"

#define BATCH_DEFAULT_OPS 1000u
#define BATCH_DETAIL 256u

typedef struct batch batch_t;

typedef struct {
    const char *name;
    bool write;
    void (*run)(batch_t *b, uint32_t op, h2o_iovec_t key);
} op_def_t;

struct batch {
    l3_rq_t *rq;
    l3_store_t *st;
    const uint8_t *body; /* the parsed request */
    l3_store_txn_t *txn; /* atomic: the transaction */
    l3_buf_t out;        /* the results, comma separated */
    size_t nres;
    bool wrote;       /* a write was applied (non-atomic) or queued (atomic) */
    long failed;      /* atomic: index of the write that failed, -1 = none */
    uint64_t max_out; /* server.max_body_bytes */
};

/* ---------------------------------------------------------------- the parsed body */

static bool member(const uint8_t *d, uint32_t obj, const char *name, uint32_t *ret)
{
    return l3_doc_obj_find(d, obj, name, strlen(name), ret) == 0;
}

static bool member_of(const uint8_t *d, uint32_t obj, const char *name, l3_doc_type_t type, l3_doc_val_t *v)
{
    uint32_t s;
    if (!member(d, obj, name, &s))
        return false;
    l3_doc_val(d, s, v);
    return v->type == type;
}

static h2o_iovec_t str_member(const uint8_t *d, uint32_t obj, const char *name)
{
    l3_doc_val_t v;
    if (!member_of(d, obj, name, L3_DOC_STRING, &v))
        return h2o_iovec_init(NULL, 0);
    return h2o_iovec_init(v.str.ptr, v.str.len);
}

/* A value of the body as JSON text, in the request pool ({NULL,0} without memory). */
static h2o_iovec_t json_of(batch_t *b, uint32_t slot)
{
    l3_buf_t t = {0};
    if (l3_doc_to_json(b->body, slot, &t) != 0) {
        free(t.ptr);
        return h2o_iovec_init(NULL, 0);
    }
    l3_http_adopt(b->rq->req, t.ptr);
    return h2o_iovec_init(t.ptr, t.len);
}

/* ---------------------------------------------------------------- results */

static void res_open(batch_t *b, int status)
{
    char head[32];
    int n = snprintf(head, sizeof head, "%s{\"status\":%d", b->nres++ ? "," : "", status);
    (void)l3_http_buf_cat(&b->out, head, (size_t)n);
}

static void res_close(batch_t *b, uint64_t version)
{
    char tail[40];
    int n = snprintf(tail, sizeof tail, ",\"version\":%" PRIu64 "}", version);
    (void)l3_http_buf_cat(&b->out, tail, (size_t)n);
}

/* {"status":s,<name>:<json>,"version":v}; name NULL: without the value */
static void res_ok(batch_t *b, int status, const char *name, const char *json, size_t len, uint64_t version)
{
    res_open(b, status);
    if (name != NULL) {
        (void)l3_http_buf_cat(&b->out, ",\"", 2);
        (void)l3_http_buf_cat(&b->out, name, strlen(name));
        (void)l3_http_buf_cat(&b->out, "\":", 2);
        (void)l3_http_buf_cat(&b->out, json, len);
    }
    res_close(b, version);
}

static void res_err(batch_t *b, bool write, int status, const char *error, const char *detail)
{
    if (write && b->txn != NULL && b->failed < 0)
        b->failed = (long)b->nres;
    res_open(b, status);
    (void)l3_http_buf_cat(&b->out, ",\"error\":", 9);
    (void)l3_http_buf_str(&b->out, error, strlen(error));
    (void)l3_http_buf_cat(&b->out, ",\"detail\":", 10);
    (void)l3_http_buf_str(&b->out, detail, strlen(detail));
    (void)l3_http_buf_cat(&b->out, "}", 1);
}

static void res_rc(batch_t *b, bool write, int rc, const l3_doc_error_t *err)
{
    const char *error;
    char detail[BATCH_DETAIL];
    int status = l3_http_describe_rc(b->rq->env, rc, write ? L3_CTX_WRITE : L3_CTX_READ, err, &error, detail,
                                     sizeof detail);
    if (rc == L3_ESYNTAX && err != NULL && err->msg != NULL && err->offset == 0 && write)
        error = "invalid_patch"; /* as PATCH answers a JSON Patch of the wrong shape */
    res_err(b, write, status, error, detail);
}

static void res_written(batch_t *b, int status, uint64_t version)
{
    b->wrote = true;
    res_ok(b, status, NULL, NULL, 0, version);
}

/* ---------------------------------------------------------------- operations */

static uint64_t if_match_of(const batch_t *b, uint32_t op)
{
    l3_doc_val_t v;
    return member_of(b->body, op, "version", L3_DOC_INT, &v) && v.i > 0 ? (uint64_t)v.i : 0;
}

static bool is_reserved(h2o_iovec_t key)
{
    return h2o_memis(key.base, key.len, H2O_STRLIT("health")) ||
           h2o_memis(key.base, key.len, H2O_STRLIT("metrics"));
}

static void run_get(batch_t *b, uint32_t op, h2o_iovec_t key)
{
    h2o_iovec_t f = str_member(b->body, op, "field");
    l3_buf_t t = {0};
    uint64_t lsn = 0;
    int rc;
    if (b->txn != NULL) {
        const uint8_t *doc;
        uint32_t slot = L3_DOC_ROOT;
        rc = l3_store_txn_get(b->txn, key.base, key.len, &doc, &lsn);
        if (rc == 0 && f.base != NULL)
            rc = l3_doc_lookup(doc, f.base, f.len, L3_DOC_PATH_AUTO, &slot);
        if (rc == 0)
            rc = l3_doc_to_json(doc, slot, &t);
    } else {
        rc = l3_store_get_json(b->st, key.base, key.len, f.base, f.len, 0, &t, &lsn);
    }
    if (rc == 0 && b->out.len + t.len > b->max_out)
        res_err(b, false, 413, "too_large",
                "the batch's results would pass server.max_body_bytes; read this "
                "document on its own");
    else if (rc == 0)
        res_ok(b, 200, "doc", t.ptr, t.len, lsn);
    else
        res_rc(b, false, rc, NULL);
    free(t.ptr);
}

/* The operation's "ttl" (seconds) as a deadline: 0 and *ret (0 when absent and not
 * required), or -1 after recording a 400. */
static int ttl_of(batch_t *b, uint32_t op, bool required, uint64_t *ret)
{
    uint32_t s;
    l3_doc_val_t v;
    *ret = 0;
    if (!member(b->body, op, "ttl", &s) && !required)
        return 0;
    if (!member_of(b->body, op, "ttl", L3_DOC_INT, &v) || !l3_route_ttl_deadline(v.i, ret)) {
        res_err(b, true, 400, "bad_ttl", "\"ttl\" must be a whole number of seconds, 1 .. " L3_TTL_MAX_TEXT);
        return -1;
    }
    return 0;
}

static void run_put(batch_t *b, uint32_t op, h2o_iovec_t key)
{
    uint32_t ds;
    uint64_t deadline;
    if (!member(b->body, op, "doc", &ds))
        return res_err(b, true, 400, "bad_op", "put needs \"doc\" (the document)");
    if (ttl_of(b, op, false, &deadline) != 0)
        return;
    h2o_iovec_t j = json_of(b, ds);
    if (j.base == NULL)
        return res_rc(b, true, -ENOMEM, NULL);
    uint64_t lsn = 0, im = if_match_of(b, op);
    l3_doc_error_t err = {0, NULL};
    int rc =
        b->txn != NULL
            ? l3_store_txn_put_json_ttl(b->txn, key.base, key.len, j.base, j.len, im, deadline, &lsn, &err)
            : l3_store_put_json_ttl(b->st, key.base, key.len, j.base, j.len, im, deadline, &lsn, &err);
    if (rc < 0)
        return res_rc(b, true, rc, &err);
    res_written(b, 200, lsn);
}

static void run_delete(batch_t *b, uint32_t op, h2o_iovec_t key)
{
    uint64_t lsn = 0, im = if_match_of(b, op);
    int rc = b->txn != NULL ? l3_store_txn_delete(b->txn, key.base, key.len, im, &lsn)
                            : l3_store_delete(b->st, key.base, key.len, im, &lsn);
    if (rc < 0)
        return res_rc(b, true, rc, NULL);
    res_written(b, 200, lsn);
}

static void run_patch(batch_t *b, uint32_t op, h2o_iovec_t key)
{
    uint32_t ps;
    bool merge = member(b->body, op, "merge", &ps);
    if (!merge && !member(b->body, op, "json_patch", &ps))
        return res_err(b, true, 400, "bad_op",
                       "patch needs \"merge\" (a merge patch) or \"json_patch\" (an array)");
    h2o_iovec_t j = json_of(b, ps);
    if (j.base == NULL)
        return res_rc(b, true, -ENOMEM, NULL);
    uint64_t lsn = 0, im = if_match_of(b, op);
    l3_doc_error_t err = {0, NULL};
    l3_store_txn_t *t = b->txn;
    int rc = merge ? (t ? l3_store_txn_merge_patch(t, key.base, key.len, j.base, j.len, im, &lsn, &err)
                        : l3_store_merge_patch(b->st, key.base, key.len, j.base, j.len, im, &lsn, &err))
                   : (t ? l3_store_txn_json_patch(t, key.base, key.len, j.base, j.len, im, &lsn, &err)
                        : l3_store_json_patch(b->st, key.base, key.len, j.base, j.len, im, &lsn, &err));
    if (rc < 0)
        return res_rc(b, true, rc, &err);
    res_written(b, rc == 1 ? 201 : 200, lsn);
}

static void run_incr(batch_t *b, uint32_t op, h2o_iovec_t key)
{
    h2o_iovec_t f = str_member(b->body, op, "field");
    l3_doc_val_t by = {.i = 1};
    uint32_t s;
    if (f.base == NULL)
        return res_err(b, true, 400, "bad_path", "incr needs \"field\" (dotted path or JSON Pointer)");
    if (member(b->body, op, "by", &s) && (l3_doc_val(b->body, s, &by), by.type != L3_DOC_INT))
        return res_err(b, true, 400, "bad_value", "by must be a 64-bit integer");
    int64_t nv = 0;
    uint64_t lsn = 0;
    int rc = b->txn != NULL ? l3_store_txn_incr(b->txn, key.base, key.len, f.base, f.len, 0, by.i, &nv, &lsn)
                            : l3_store_incr(b->st, key.base, key.len, f.base, f.len, 0, by.i, &nv, &lsn);
    if (rc < 0)
        return res_rc(b, true, rc, NULL);
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRId64, nv);
    b->wrote = true;
    res_ok(b, 200, "value", num, (size_t)n, lsn);
}

/* set, append, insert, pop, remove: route_arr.c's core, fed from the operation's fields */
static void run_arr(batch_t *b, uint32_t op, h2o_iovec_t key)
{
    const uint8_t *d = b->body;
    h2o_iovec_t name = str_member(d, op, "op"), f = str_member(d, op, "field");
    uint32_t vs, is;
    bool multi = member(d, op, "values", &vs);
    l3_q_str_t val = {NULL, 0}, index = {NULL, 0};
    if (multi || member(d, op, "value", &vs)) {
        h2o_iovec_t j = json_of(b, vs);
        if (j.base == NULL)
            return res_rc(b, true, -ENOMEM, NULL);
        val = (l3_q_str_t){j.base, j.len};
    }
    if (member(d, op, "index", &is)) {
        h2o_iovec_t j = json_of(b, is);
        index = (l3_q_str_t){j.base != NULL ? j.base : "", j.len};
    }
    l3_doc_val_t cp;
    l3_arr_req_t r;
    l3_arr_res_t res;
    if (l3_arr_req_init(&r, (l3_q_str_t){name.base, name.len}, (l3_q_str_t){f.base, f.len},
                        val.base != NULL ? &val : NULL, multi, index,
                        member_of(d, op, "create_parents", L3_DOC_BOOL, &cp) && cp.b, &res) == 0) {
        r.if_match = if_match_of(b, op);
        l3_arr_run(b->st, b->txn, key, &r, &res);
    }
    if (res.rc < 0)
        res_rc(b, true, res.rc, &res.e);
    else if (res.status != 0)
        res_err(b, true, res.status, res.error, res.detail);
    else {
        b->wrote = true;
        res_ok(b, 200, "value", res.value.ptr, res.value.len, res.version);
    }
    l3_arr_free(&r, &res);
}

/* expire ("ttl" seconds) or persist (no deadline): the single-key ?op=expire / ?op=persist. */
static void run_expire(batch_t *b, uint32_t op, h2o_iovec_t key)
{
    h2o_iovec_t name = str_member(b->body, op, "op");
    uint64_t deadline = 0, lsn = 0, im = if_match_of(b, op);
    if (h2o_memis(name.base, name.len, H2O_STRLIT("expire")) && ttl_of(b, op, true, &deadline) != 0)
        return;
    int rc = b->txn != NULL ? l3_store_txn_expire(b->txn, key.base, key.len, deadline, im, &lsn)
                            : l3_store_expire(b->st, key.base, key.len, deadline, im, &lsn);
    if (rc < 0)
        return res_rc(b, true, rc, NULL);
    res_written(b, 200, lsn);
}

/* The operations a batch knows: one row each. */
static const op_def_t op_table[] = {
    {"get", false, run_get},    {"put", true, run_put},       {"delete", true, run_delete},
    {"patch", true, run_patch}, {"set", true, run_arr},       {"incr", true, run_incr},
    {"append", true, run_arr},  {"insert", true, run_arr},    {"pop", true, run_arr},
    {"remove", true, run_arr},  {"expire", true, run_expire}, {"persist", true, run_expire},
};

static const op_def_t *op_find(h2o_iovec_t name)
{
    for (size_t i = 0; i < L3_ARRAY_SIZE(op_table); i++)
        if (h2o_memis(name.base, name.len, op_table[i].name, strlen(op_table[i].name)))
            return &op_table[i];
    return NULL;
}

/* ---------------------------------------------------------------- validation */

typedef struct {
    uint32_t list[3]; /* atomic: compare, success, failure; else ops */
    uint32_t count[3];
    bool has[3];
    bool atomic, writes;
    size_t total;
} shape_t;

/* The key of an operation or compare: a valid key string, or {NULL,0}. */
static h2o_iovec_t key_of(const uint8_t *d, uint32_t obj)
{
    h2o_iovec_t k = str_member(d, obj, "key");
    if (k.base == NULL || k.len == 0 || k.len > L3_STORE_KEY_MAX || !l3_q_key_valid(k.base, k.len))
        return h2o_iovec_init(NULL, 0);
    return k;
}

/* Check every element of the array at list; ops = operations, else compares. NULL, or
 * what is wrong (detail into why). */
static bool check_list(const uint8_t *d, uint32_t list, bool ops, const char *what, shape_t *sh, char *why,
                       size_t cap)
{
    l3_doc_val_t a, e;
    l3_doc_val(d, list, &a);
    for (uint32_t i = 0; i < a.count; i++) {
        uint32_t s;
        (void)l3_doc_arr_at(d, list, i, &s);
        l3_doc_val(d, s, &e);
        const char *bad = NULL;
        if (e.type != L3_DOC_OBJECT)
            bad = "is not an object";
        else if (key_of(d, s).base == NULL)
            bad = "needs \"key\": a key of 1 to 1024 bytes of UTF-8 without control characters";
        else if (ops) {
            const op_def_t *def = op_find(str_member(d, s, "op"));
            if (def == NULL)
                bad =
                    "needs \"op\": get, put, delete, patch, set, incr, append, insert, pop, remove or expire";
            else
                sh->writes |= def->write;
        } else {
            l3_doc_val_t v;
            uint32_t x;
            bool ver = member_of(d, s, "version", L3_DOC_INT, &v) && v.i >= 0;
            bool ex = member_of(d, s, "exists", L3_DOC_BOOL, &v);
            bool eq = str_member(d, s, "field").base != NULL && member(d, s, "equals", &x);
            if (ver + ex + eq != 1)
                bad = "needs one of \"version\" (an integer), \"exists\" (a boolean), or \"field\" with "
                      "\"equals\"";
        }
        if (bad != NULL) {
            snprintf(why, cap, "%s[%" PRIu32 "] %s", what, i, bad);
            return false;
        }
    }
    return true;
}

/* The body's shape: 0, or answered (400, 413). */
static int check_shape(batch_t *b, shape_t *sh)
{
    static const char *const names[3] = {"compare", "success", "failure"};
    const uint8_t *d = b->body;
    l3_doc_val_t v;
    char why[200];
    memset(sh, 0, sizeof(*sh));
    l3_doc_val(d, L3_DOC_ROOT, &v);
    if (v.type != L3_DOC_OBJECT)
        return l3_http_fail(b->rq, 400, "bad_batch", "the body must be a JSON object"), 1;
    sh->atomic = member_of(d, L3_DOC_ROOT, "atomic", L3_DOC_BOOL, &v) && v.b;
    for (int i = 0; i < (sh->atomic ? 3 : 1); i++) {
        const char *name = sh->atomic ? names[i] : "ops";
        if (!member(d, L3_DOC_ROOT, name, &sh->list[i]))
            continue;
        l3_doc_val(d, sh->list[i], &v);
        if (v.type != L3_DOC_ARRAY)
            return l3_http_fail(b->rq, 400, "bad_batch", "\"%s\" must be an array", name), 1;
        sh->has[i] = true;
        sh->count[i] = v.count;
        sh->total += v.count;
    }
    if (!sh->atomic && !sh->has[0])
        return l3_http_fail(b->rq, 400, "bad_batch", "the body needs \"ops\" (or \"atomic\": true)"), 1;
    uint32_t max = b->rq->env->max_batch_ops ? b->rq->env->max_batch_ops : BATCH_DEFAULT_OPS;
    if (sh->total > max)
        return l3_http_fail(b->rq, 413, "too_large",
                            "%zu operations and compares; server.max_batch_ops is %" PRIu32, sh->total, max),
               1;
    for (int i = 0; i < 3; i++)
        if (sh->has[i] && !check_list(d, sh->list[i], !sh->atomic || i > 0, sh->atomic ? names[i] : "ops", sh,
                                      why, sizeof why))
            return l3_http_fail(b->rq, 400, "bad_batch", "%s", why), 1;
    return 0;
}

/* ---------------------------------------------------------------- running */

static void run_list(batch_t *b, uint32_t list, bool stop_at_failure)
{
    l3_doc_val_t a;
    l3_doc_val(b->body, list, &a);
    for (uint32_t i = 0; i < a.count && !(stop_at_failure && b->failed >= 0); i++) {
        uint32_t s;
        (void)l3_doc_arr_at(b->body, list, i, &s);
        const op_def_t *def = op_find(str_member(b->body, s, "op"));
        h2o_iovec_t key = key_of(b->body, s);
        if (def->write && is_reserved(key))
            res_err(b, true, 400, "reserved_key", "a reserved name; documents cannot be written under it");
        else
            def->run(b, s, key);
    }
}

/* Is two values of (possibly different) documents the same JSON value? Bounded by the
 * documents' depth limit. */
static bool same_value(const uint8_t *x, uint32_t xs, const uint8_t *y, uint32_t ys, unsigned depth)
{
    l3_doc_val_t a, c;
    l3_doc_val(x, xs, &a);
    l3_doc_val(y, ys, &c);
    bool an = a.type == L3_DOC_INT || a.type == L3_DOC_DOUBLE,
         cn = c.type == L3_DOC_INT || c.type == L3_DOC_DOUBLE;
    if (an && cn)
        return (a.type == L3_DOC_INT ? (double)a.i : a.d) == (c.type == L3_DOC_INT ? (double)c.i : c.d) &&
               (a.type != L3_DOC_INT || c.type != L3_DOC_INT || a.i == c.i);
    if (a.type != c.type || depth > L3_DOC_MAX_DEPTH)
        return false;
    switch (a.type) {
    case L3_DOC_NULL:
        return true;
    case L3_DOC_BOOL:
        return a.b == c.b;
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM:
        return a.str.len == c.str.len && memcmp(a.str.ptr, c.str.ptr, a.str.len) == 0;
    case L3_DOC_ARRAY:
        if (a.count != c.count)
            return false;
        for (uint32_t i = 0; i < a.count; i++) {
            uint32_t p, q;
            (void)l3_doc_arr_at(x, xs, i, &p);
            (void)l3_doc_arr_at(y, ys, i, &q);
            if (!same_value(x, p, y, q, depth + 1))
                return false;
        }
        return true;
    case L3_DOC_OBJECT: {
        if (a.count != c.count)
            return false;
        uint32_t pos = 0, klen, p, q;
        const char *k;
        while (l3_doc_obj_next(x, xs, &pos, &k, &klen, &p) == 1)
            if (l3_doc_obj_find(y, ys, k, klen, &q) != 0 || !same_value(x, p, y, q, depth + 1))
                return false;
        return true;
    }
    default:
        return false;
    }
}

/* Does every compare hold (in the transaction's view)? */
static bool compares_hold(batch_t *b, uint32_t list)
{
    l3_doc_val_t a, v;
    l3_doc_val(b->body, list, &a);
    for (uint32_t i = 0; i < a.count; i++) {
        uint32_t s, eq, slot;
        (void)l3_doc_arr_at(b->body, list, i, &s);
        h2o_iovec_t key = key_of(b->body, s);
        const uint8_t *doc = NULL;
        uint64_t lsn = 0;
        bool exists = l3_store_txn_get(b->txn, key.base, key.len, &doc, &lsn) == 0;
        bool ok;
        if (member_of(b->body, s, "version", L3_DOC_INT, &v))
            ok = exists ? lsn == (uint64_t)v.i : v.i == 0;
        else if (member_of(b->body, s, "exists", L3_DOC_BOOL, &v))
            ok = exists == v.b;
        else {
            h2o_iovec_t f = str_member(b->body, s, "field");
            ok = exists && member(b->body, s, "equals", &eq) &&
                 l3_doc_lookup(doc, f.base, f.len, L3_DOC_PATH_AUTO, &slot) == 0 &&
                 same_value(doc, slot, b->body, eq, 0);
        }
        if (!ok)
            return false;
    }
    return true;
}

/* Every key the transaction names, into the request pool. */
static size_t collect_keys(batch_t *b, const shape_t *sh, const void **kp, size_t *kl)
{
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        if (!sh->has[i])
            continue;
        for (uint32_t j = 0; j < sh->count[i]; j++) {
            uint32_t s;
            (void)l3_doc_arr_at(b->body, sh->list[i], j, &s);
            h2o_iovec_t k = key_of(b->body, s);
            kp[n] = k.base;
            kl[n++] = k.len;
        }
    }
    return n;
}

/* The atomic form. 0 with the results in b->out, or answered. */
static int run_atomic(batch_t *b, const shape_t *sh, bool *ret_succeeded)
{
    const void **kp = h2o_mem_alloc_pool(&b->rq->req->pool, (sh->total + 1) * sizeof(void *));
    size_t *kl = h2o_mem_alloc_pool(&b->rq->req->pool, (sh->total + 1) * sizeof(size_t));
    size_t n = collect_keys(b, sh, kp, kl);
    if (n == 0) { /* nothing to lock: the compares hold vacuously, no operation runs */
        *ret_succeeded = true;
        return 0;
    }
    int rc = l3_store_txn_begin(b->st, kp, kl, n, (size_t)b->max_out * 4, &b->txn);
    if (rc < 0)
        return l3_http_fail_rc(b->rq, rc, L3_CTX_WRITE, NULL), 1;
    bool ok = !sh->has[0] || compares_hold(b, sh->list[0]);
    *ret_succeeded = ok;
    if (sh->has[ok ? 1 : 2])
        run_list(b, sh->list[ok ? 1 : 2], true);
    if (b->failed >= 0) {
        l3_store_txn_abort(b->txn);
        b->txn = NULL;
        b->wrote = false;
        return 0;
    }
    rc = l3_store_txn_commit(b->txn);
    b->txn = NULL;
    if (rc < 0) {
        b->wrote = false;
        return l3_http_fail_rc(b->rq, rc, L3_CTX_WRITE, NULL), 1;
    }
    return 0;
}

/* Answer with the results: {"results":[...]} or the atomic forms. */
static int reply(batch_t *b, const shape_t *sh, bool succeeded)
{
    l3_buf_t body = {0};
    char head[160];
    int status = 200, n;
    if (b->failed >= 0)
        n = snprintf(
            head, sizeof head,
            "{\"error\":\"transaction_aborted\",\"detail\":\"operation %ld of %s failed; nothing was "
            "changed\",\"failed\":%ld,\"succeeded\":%s,\"results\":[",
            b->failed, succeeded ? "success" : "failure", b->failed, succeeded ? "true" : "false");
    else if (sh->atomic)
        n = snprintf(head, sizeof head, "{\"succeeded\":%s,\"results\":[", succeeded ? "true" : "false");
    else
        n = snprintf(head, sizeof head, "{\"results\":[");
    if (b->failed >= 0)
        status = 409;
    if (l3_http_buf_cat(&body, head, (size_t)n) != 0 || l3_http_buf_cat(&body, b->out.ptr, b->out.len) != 0 ||
        l3_http_buf_cat(&body, "]}\n", 3) != 0) {
        free(body.ptr);
        return l3_http_fail_rc(b->rq, -ENOMEM, L3_CTX_WRITE, NULL);
    }
    l3_http_adopt(b->rq->req, body.ptr);
    h2o_iovec_t v = h2o_iovec_init(body.ptr, body.len);
    if (b->wrote)
        l3_http_respond_write(b->rq, status, L3_CT_JSON, v);
    else
        l3_http_respond(b->rq, status, L3_CT_JSON, v);
    return 0;
}

int l3_route_batch(l3_rq_t *rq, h2o_iovec_t unused)
{
    (void)unused;
    h2o_req_t *req = rq->req;
    if (req->entity.base == NULL)
        return l3_http_fail(rq, 411, "length_required", "a request body is required");
    if (req->entity.len > rq->env->max_body_bytes)
        return l3_http_fail(rq, 413, "too_large",
                            "body of %zu bytes exceeds server.max_body_bytes (%" PRIu64 ")", req->entity.len,
                            rq->env->max_body_bytes);
    batch_t b = {.rq = rq, .st = rq->env->store, .failed = -1, .max_out = rq->env->max_body_bytes};
    uint8_t *body;
    size_t blen;
    l3_doc_error_t err = {0, NULL};
    int rc = l3_doc_from_json(req->entity.base, req->entity.len, NULL, &body, &blen, &err);
    if (rc < 0)
        return l3_http_fail_rc(rq, rc, L3_CTX_WRITE, &err);
    l3_http_adopt(req, body);
    b.body = body;
    shape_t sh;
    if (check_shape(&b, &sh) != 0)
        return 0;
    if (l3_scope_require(rq, sh.writes ? L3_SCOPE_WRITE : L3_SCOPE_READ) != 0 ||
        (sh.writes && l3_route_read_only(rq)))
        return 0;
    bool succeeded = false;
    uint64_t t = l3_now_ns();
    if (sh.atomic)
        rc = run_atomic(&b, &sh, &succeeded);
    else
        run_list(&b, sh.list[0], false);
    l3_http_doc_done(rq, t);
    if (rc == 0)
        reply(&b, &sh, succeeded);
    free(b.out.ptr);
    return 0;
}
