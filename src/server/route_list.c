/* SPDX-License-Identifier: MIT */
/*
 * route_list.c - /kv/: the key listing, in pages of at most LIST_MAX_LIMIT keys with an
 * opaque cursor (the store's iteration position).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "route.h"

#define LIST_DEFAULT_LIMIT 100u
#define LIST_MAX_LIMIT 10000u

typedef struct {
    l3_buf_t *b;
    size_t n;
    int rc;
} list_ctx_t;

static int list_one(void *vctx, const void *key, size_t klen, uint64_t lsn)
{
    (void)lsn;
    list_ctx_t *c = vctx;
    if ((c->n++ && l3_http_buf_cat(c->b, ",", 1) != 0) || l3_http_buf_str(c->b, key, klen) != 0) {
        c->rc = -ENOMEM;
        return 1;
    }
    return 0;
}

int l3_route_list(l3_rq_t *rq, h2o_iovec_t unused)
{
    (void)unused;
    l3_query_t q;
    if (l3_http_query(rq->req, &q) != 0)
        return l3_http_fail(rq, 400, "bad_query", "malformed percent-escape in the query string");
    uint64_t limit = LIST_DEFAULT_LIMIT, cursor = 0;
    if (q.limit.base != NULL &&
        (!l3_q_u64(q.limit.base, q.limit.len, &limit) || limit == 0 || limit > LIST_MAX_LIMIT))
        return l3_http_fail(rq, 400, "bad_value", "limit must be 1..%u", LIST_MAX_LIMIT);
    if (q.cursor.base != NULL && q.cursor.len > 0 && !l3_q_u64(q.cursor.base, q.cursor.len, &cursor))
        return l3_http_fail(rq, 400, "bad_value", "cursor must be a value returned by a previous listing");
    l3_buf_t *jb = &rq->env->jbuf;
    jb->len = 0;
    list_ctx_t c = {.b = jb};
    if (l3_http_buf_cat(jb, H2O_STRLIT("{\"keys\":[")) != 0)
        return l3_http_fail_rc(rq, -ENOMEM, L3_CTX_READ, NULL);
    uint64_t t = l3_now_ns(); /* the document operation: the walk, the keys' JSON written as it goes */
    int rc = l3_store_keys(rq->env->store, q.prefix.base, q.prefix.len, &cursor, (size_t)limit, list_one, &c);
    l3_http_doc_done(rq, t);
    if (rc < 0 || c.rc < 0)
        return l3_http_fail_rc(rq, rc < 0 ? rc : c.rc, L3_CTX_READ, NULL);
    char tail[64];
    int n = cursor
                ? snprintf(tail, sizeof(tail), "],\"count\":%zu,\"cursor\":\"%" PRIu64 "\"}\n", c.n, cursor)
                : snprintf(tail, sizeof(tail), "],\"count\":%zu,\"cursor\":null}\n", c.n);
    if (l3_http_buf_cat(jb, tail, (size_t)n) != 0)
        return l3_http_fail_rc(rq, -ENOMEM, L3_CTX_READ, NULL);
    l3_http_respond_jbuf(rq, 200, L3_CT_JSON);
    return 0;
}
