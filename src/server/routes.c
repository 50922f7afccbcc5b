/* SPDX-License-Identifier: MIT */
/*
 * routes.c - the REST API: HTTP request -> store/document call -> HTTP response.
 *
 * Runs in worker processes, on the event loop thread; every handler answers
 * synchronously (h2o 2.2.5 hands us the complete body) and never blocks except on a
 * document lock for the duration of one mutation. Responses always carry Content-Length
 * (except 204/304), HEAD gets the GET headers without a body, every document read or
 * write carries an ETag equal to the document's LSN ("version"). Errors are JSON
 * {"error","detail"} with the status chosen by errmap.c, and the store guarantees that a
 * failed call changed nothing.
 *
 * Received bytes are counted here per request (the request as HTTP/1 text: request line,
 * headers, body); sent bytes are counted exactly per connection in worker.c.
 *
 * Handler time (metrics) is measured from entry into l3_srv_on_req to the moment the
 * response is handed to h2o (h2o_start_response), i.e. parsing, routing, the store call and
 * serialisation, without socket I/O.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <h2o.h>

#include "errmap.h"
#include "l3kv-config.h"
#include "l3kv/wal.h"
#include "server.h"

#define CT_JSON "application/json"
#define CT_BIN "application/vnd.l3kv.doc"
#define ALLOW_DOC "GET, HEAD, PUT, DELETE, POST, PATCH"
#define ALLOW_RO "GET, HEAD"
#define MAX_PATH_BYTES 8192u
#define LIST_DEFAULT_LIMIT 100u
#define LIST_MAX_LIMIT 10000u
#define INLINE_COPY_MAX 16384u /* responses up to this size are copied into the request pool */

/* Request being handled (one thread per process, handlers answer synchronously). */
static struct {
    uint64_t t0;
    l3_obs_route_t route;
    int head;
} cur;

/* Reused serialisation buffer (large results are handed over to the request instead). */
static l3_buf_t jbuf;

/* ---------------------------------------------------------------- helpers */

static bool ieq(h2o_iovec_t v, const char *lit, size_t n)
{
    return v.len == n && h2o_lcstris(v.base, v.len, lit, n);
}

static bool method_is(const h2o_req_t *req, const char *m, size_t n)
{
    return h2o_memis(req->method.base, req->method.len, m, n);
}
#define METHOD(req, lit) method_is(req, H2O_STRLIT(lit))

static h2o_iovec_t header(h2o_req_t *req, const h2o_token_t *tok)
{
    ssize_t i = h2o_find_header(&req->headers, tok, -1);
    return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

/* Media type of a Content-Type value, lower-cased, without parameters and spaces. */
static h2o_iovec_t media_type(h2o_req_t *req, h2o_iovec_t v)
{
    size_t n = 0;
    while (n < v.len && v.base[n] != ';')
        n++;
    while (n > 0 && (v.base[n - 1] == ' ' || v.base[n - 1] == '\t'))
        n--;
    size_t s = 0;
    while (s < n && (v.base[s] == ' ' || v.base[s] == '\t'))
        s++;
    char *p = h2o_mem_alloc_pool(&req->pool, n - s + 1);
    for (size_t i = s; i < n; i++)
        p[i - s] = h2o_tolower(v.base[i]);
    p[n - s] = '\0';
    return h2o_iovec_init(p, n - s);
}

static bool contains_ci(h2o_iovec_t hay, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= hay.len; i++)
        if (h2o_lcstris(hay.base + i, n, needle, n))
            return true;
    return false;
}

static void free_holder(void *p)
{
    free(*(void **)p);
}

/* Hand a malloc'd buffer to the request: freed when the request is done. */
static void adopt(h2o_req_t *req, void *buf)
{
    void **holder = h2o_mem_alloc_shared(&req->pool, sizeof(void *), free_holder);
    *holder = buf;
}

static void add_header(h2o_req_t *req, const h2o_token_t *tok, const char *v, size_t len)
{
    h2o_add_header(&req->pool, &req->res.headers, tok, NULL, v, len);
}

static void add_etag(h2o_req_t *req, uint64_t lsn)
{
    char *p = h2o_mem_alloc_pool(&req->pool, 24);
    int n = snprintf(p, 24, "\"%" PRIu64 "\"", lsn);
    add_header(req, H2O_TOKEN_ETAG, p, (size_t)n);
}

static void send_response(h2o_req_t *req, int status, const char *ctype, h2o_iovec_t body, int head)
{
    static h2o_generator_t gen = {NULL, NULL};
    req->res.status = status;
    req->res.reason = l3_srv_reason(status);
    if (status != 204 && status != 304)
        req->res.content_length = body.len;
    if (ctype != NULL)
        add_header(req, H2O_TOKEN_CONTENT_TYPE, ctype, strlen(ctype));
    h2o_start_response(req, &gen);
    bool nobody = head || status == 204 || status == 304;
    h2o_send(req, &body, nobody ? 0 : 1, H2O_SEND_STATE_FINAL);
}

static void record(h2o_req_t *req, int status)
{
    uint64_t ns = l3_now_ns() - cur.t0;
    l3_obs_record(l3_srv_env.obs, cur.route, status, ns);
    /* received bytes: the request as HTTP/1 text (request line, headers, body) */
    size_t rx = req->method.len + req->path.len + 13 + req->authority.len + 8 + req->entity.len;
    for (size_t i = 0; i < req->headers.size; i++)
        rx += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    l3_obs_add(&l3_srv_env.obs->os_bytes_rx, rx);
}

static void respond(h2o_req_t *req, int status, const char *ctype, h2o_iovec_t body)
{
    record(req, status);
    send_response(req, status, ctype, body, cur.head);
}

/* ---------------------------------------------------------------- durable replies
 *
 * With storage.durability = "fsync" a successful write is answered only once the WAL
 * writer has made its record durable. The reply is prepared at once and parked in a FIFO
 * (in the request's pool, so h2o freeing the request - stream reset, connection gone -
 * unlinks it through the dispose callback); the worker's WAL eventfd, armed with the
 * newest ticket, wakes the loop when the durable position advances, and every parked reply
 * whose ticket is covered is sent. If the WAL fails (fdatasync error, disk full) the parked
 * writes are answered 503: the change is in memory but was not kept. Handler time is
 * recorded when the reply is parked (it excludes the wait). */

typedef struct pending {
    struct pending *prev, *next;
    h2o_req_t *req;
    uint64_t ticket;
    int status, head;
    const char *ctype;
    h2o_iovec_t body;
} pending_t;

static pending_t parked = {.prev = &parked, .next = &parked};
static size_t nparked;

static void unpark(pending_t *p)
{
    if (p->next == NULL)
        return;
    p->prev->next = p->next;
    p->next->prev = p->prev;
    p->next = p->prev = NULL;
    nparked--;
}

static void pending_dispose(void *obj)
{
    unpark(obj);
}

size_t l3_srv_durable_pending(void)
{
    return nparked;
}

static void respond_write(h2o_req_t *req, int status, const char *ctype, h2o_iovec_t body)
{
    l3_srv_t *srv = l3_srv_env.srv;
    if (srv->wal_ring == NULL || !srv->wal_wait) {
        respond(req, status, ctype, body);
        return;
    }
    uint64_t ticket = l3_wal_last_ticket();
    int rc = l3_wal_notify_arm(srv->wal_ring, l3_srv_env.slot, ticket);
    if (rc == 1) {
        respond(req, status, ctype, body);
        return;
    }
    if (rc < 0) {
        char *eb = h2o_mem_alloc_pool(&req->pool, 256);
        size_t n = l3_srv_err_json(eb, 256, "not_durable", "the write-ahead log cannot make changes durable");
        add_header(req, H2O_TOKEN_RETRY_AFTER, H2O_STRLIT("1"));
        respond(req, 503, "application/json", h2o_iovec_init(eb, n));
        return;
    }
    record(req, status);
    pending_t *p = h2o_mem_alloc_shared(&req->pool, sizeof(*p), pending_dispose);
    *p = (pending_t){.req = req, .ticket = ticket, .status = status, .head = cur.head, .ctype = ctype, .body = body};
    p->prev = parked.prev;
    p->next = &parked;
    parked.prev->next = p;
    parked.prev = p;
    nparked++;
}

void l3_srv_durable_poll(void)
{
    l3_srv_t *srv = l3_srv_env.srv;
    if (srv->wal_ring == NULL)
        return;
    l3_wal_notify_ack(srv->wal_ring, l3_srv_env.slot);
    for (;;) {
        uint64_t durable = l3_wal_durable_ticket(srv->wal_ring);
        int err = l3_wal_ring_error(srv->wal_ring);
        while (parked.next != &parked && (parked.next->ticket <= durable || err != 0)) {
            pending_t *p = parked.next;
            unpark(p);
            if (p->ticket <= durable) {
                send_response(p->req, p->status, p->ctype, p->body, p->head);
            } else {
                char *eb = h2o_mem_alloc_pool(&p->req->pool, 256);
                size_t n = l3_srv_err_json(eb, 256, "not_durable", "the write-ahead log failed before the change was durable");
                add_header(p->req, H2O_TOKEN_RETRY_AFTER, H2O_STRLIT("1"));
                l3_obs_add(&l3_srv_env.obs->os_err5xx, 1);
                send_response(p->req, 503, "application/json", h2o_iovec_init(eb, n), p->head);
            }
        }
        if (parked.next == &parked)
            return;
        /* re-arm for the newest parked ticket; 1 = became durable meanwhile: go round again */
        if (l3_wal_notify_arm(srv->wal_ring, l3_srv_env.slot, parked.prev->ticket) != 1)
            return;
    }
}

static void respond_static(h2o_req_t *req, int status, const char *ctype, const char *body)
{
    respond(req, status, ctype, h2o_iovec_init(body, strlen(body)));
}

static int fail_with(h2o_req_t *req, int status, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_with(h2o_req_t *req, int status, const char *error, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    size_t cap = 640;
    char *body = h2o_mem_alloc_pool(&req->pool, cap);
    size_t n = l3_srv_err_json(body, cap, error, detail);
    if (status == 503)
        add_header(req, H2O_TOKEN_RETRY_AFTER, H2O_STRLIT("1"));
    respond(req, status, CT_JSON, h2o_iovec_init(body, n));
    return 0;
}

static int fail_405(h2o_req_t *req, const char *allow)
{
    add_header(req, H2O_TOKEN_ALLOW, allow, strlen(allow));
    return fail_with(req, 405, "method_not_allowed", "method %.*s is not allowed here; allowed: %s",
                     (int)L3_MIN(req->method.len, 32), req->method.base, allow);
}

/* Map a store/doc error; err (may be NULL) adds the byte offset for syntax errors. */
static int fail_rc(h2o_req_t *req, int rc, l3_srv_errctx_t ctx, const l3_doc_error_t *err)
{
    l3_srv_errinfo_t ei;
    l3_srv_errmap(rc, ctx, &ei);
    if ((rc == L3_ESYNTAX || rc == L3_EDEPTH) && err != NULL)
        return fail_with(req, ei.status, ei.error, "invalid JSON at byte offset %zu: %s", err->offset,
                         err->msg ? err->msg : l3_strerror(rc));
    if (rc == L3_ECORRUPT && err != NULL)
        return fail_with(req, ei.status, ei.error, "document failed verification at byte offset %zu: %s",
                         err->offset, err->msg ? err->msg : "corrupt");
    if (rc == L3_ETYPE && err != NULL && err->msg != NULL)
        return fail_with(req, ei.status, strcmp(err->msg, "test failed") == 0 ? "test_failed" : ei.error, "%s",
                         err->msg);
    if (rc == -EMSGSIZE)
        return fail_with(req, ei.status, ei.error, "the change does not fit the write-ahead log's ring");
    if (rc == -ENOSPC && l3_srv_env.srv->wal_ring != NULL && l3_wal_ring_error(l3_srv_env.srv->wal_ring) == -ENOSPC)
        return fail_with(req, 507, "disk_full",
                         "the write-ahead log's disk is full; writes are refused until space returns, reads "
                         "still work");
    if (ei.status == 500)
        L3_LOG(L3_LOG_ERROR, "unexpected error %d (%s) for %.*s", rc, l3_strerror(rc), (int)L3_MIN(req->path.len, 200),
               req->path.base);
    if (rc == -ENOENT)
        return fail_with(req, ei.status, ei.error, "no document under this key");
    return fail_with(req, ei.status, ei.error, "%s", l3_strerror(rc));
}

/* Append s (len bytes, valid UTF-8) as a JSON string literal. */
static int buf_json_str(l3_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (l3_buf_reserve(b, len * 6 + 2) != 0)
        return -ENOMEM;
    char *o = b->ptr + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            *o++ = '\\';
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->ptr);
    return 0;
}

static int buf_cat(l3_buf_t *b, const char *s, size_t len)
{
    if (l3_buf_reserve(b, len) != 0)
        return -ENOMEM;
    memcpy(b->ptr + b->len, s, len);
    b->len += len;
    return 0;
}

/* Send the JSON in jbuf: small bodies are copied into the pool, big ones handed over. */
static void respond_jbuf(h2o_req_t *req, int status, const char *ctype)
{
    h2o_iovec_t body;
    if (jbuf.len <= INLINE_COPY_MAX) {
        body.base = h2o_mem_alloc_pool(&req->pool, jbuf.len ? jbuf.len : 1);
        memcpy(body.base, jbuf.ptr, jbuf.len);
        body.len = jbuf.len;
        if (jbuf.cap > (1u << 20)) { /* do not keep a huge buffer around */
            free(jbuf.ptr);
            jbuf = (l3_buf_t){0};
        }
    } else {
        body = h2o_iovec_init(jbuf.ptr, jbuf.len);
        adopt(req, jbuf.ptr);
        jbuf = (l3_buf_t){0};
    }
    respond(req, status, ctype, body);
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += len;
    }
    return true;
}

/* ---------------------------------------------------------------- query string */

typedef struct {
    h2o_iovec_t op, field, val, prefix, limit, cursor;
    bool has_field, has_val;
} query_t;

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decode (and '+' -> ' ') into pool memory. -1 on a malformed escape. */
static int qdecode(h2o_req_t *req, const char *s, size_t n, h2o_iovec_t *ret)
{
    char *o = h2o_mem_alloc_pool(&req->pool, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
                return -1;
            o[k++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            o[k++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    o[k] = '\0';
    *ret = h2o_iovec_init(o, k);
    return 0;
}

static int parse_query(h2o_req_t *req, query_t *q)
{
    memset(q, 0, sizeof(*q));
    if (req->query_at == SIZE_MAX)
        return 0;
    const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        if (amp == NULL)
            amp = end;
        const char *eq = memchr(p, '=', (size_t)(amp - p));
        const char *kend = eq ? eq : amp;
        h2o_iovec_t k = h2o_iovec_init(p, (size_t)(kend - p)), v;
        if (qdecode(req, eq ? eq + 1 : amp, eq ? (size_t)(amp - eq - 1) : 0, &v) != 0)
            return -1;
        if (h2o_memis(k.base, k.len, H2O_STRLIT("op")))
            q->op = v;
        else if (h2o_memis(k.base, k.len, H2O_STRLIT("field")) || h2o_memis(k.base, k.len, H2O_STRLIT("path"))) {
            q->field = v;
            q->has_field = true;
        } else if (h2o_memis(k.base, k.len, H2O_STRLIT("val")) || h2o_memis(k.base, k.len, H2O_STRLIT("value"))) {
            q->val = v;
            q->has_val = true;
        } else if (h2o_memis(k.base, k.len, H2O_STRLIT("prefix")))
            q->prefix = v;
        else if (h2o_memis(k.base, k.len, H2O_STRLIT("limit")))
            q->limit = v;
        else if (h2o_memis(k.base, k.len, H2O_STRLIT("cursor")))
            q->cursor = v;
        p = amp + 1;
    }
    return 0;
}

static bool parse_i64(h2o_iovec_t v, int64_t *ret)
{
    if (v.len == 0 || v.len > 20)
        return false;
    char tmp[24];
    memcpy(tmp, v.base, v.len);
    tmp[v.len] = '\0';
    char *end;
    errno = 0;
    long long x = strtoll(tmp, &end, 10);
    if (errno != 0 || *end != '\0' || !(tmp[0] == '-' || (tmp[0] >= '0' && tmp[0] <= '9')))
        return false;
    *ret = x;
    return true;
}

static bool parse_u64(h2o_iovec_t v, uint64_t *ret)
{
    if (v.len == 0 || v.len > 20)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return false;
        unsigned d = (unsigned)(v.base[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *ret = x;
    return true;
}

/* ---------------------------------------------------------------- conditional requests */

/* Parse an If-Match / If-None-Match list: returns 1 when `lsn` matches one entry (or "*"
 * and the document exists), 0 otherwise. Weak tags (W/"n") compare like strong ones. */
static int etag_matches(h2o_iovec_t v, uint64_t lsn, bool exists)
{
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.base[i] == ' ' || v.base[i] == '\t' || v.base[i] == ','))
            i++;
        if (i >= v.len)
            break;
        if (v.base[i] == '*') {
            if (exists)
                return 1;
            i++;
            continue;
        }
        if (v.len - i >= 2 && v.base[i] == 'W' && v.base[i + 1] == '/')
            i += 2;
        bool quoted = i < v.len && v.base[i] == '"';
        if (quoted)
            i++;
        size_t s = i;
        while (i < v.len && v.base[i] >= '0' && v.base[i] <= '9')
            i++;
        uint64_t n;
        if (exists && parse_u64(h2o_iovec_init(v.base + s, i - s), &n) && n == lsn &&
            (!quoted || (i < v.len && v.base[i] == '"')))
            return 1;
        while (i < v.len && v.base[i] != ',')
            i++;
    }
    return 0;
}

/* Resolve If-Match into the store's if_match argument. Returns 0 (ok, *ret set), or
 * answers the request (412/404) and returns 1. */
static int resolve_if_match(h2o_req_t *req, h2o_iovec_t key, uint64_t *ret)
{
    *ret = 0;
    h2o_iovec_t im = header(req, H2O_TOKEN_IF_MATCH);
    if (im.base == NULL)
        return 0;
    uint64_t lsn = 0;
    int rc = l3_store_get_lsn(l3_srv_env.store, key.base, key.len, &lsn);
    if (rc == -ENOENT) {
        fail_with(req, 412, "precondition_failed", "If-Match given but the document does not exist");
        return 1;
    }
    if (rc < 0) {
        fail_rc(req, rc, L3_CTX_WRITE, NULL);
        return 1;
    }
    if (!etag_matches(im, lsn, true)) {
        add_etag(req, lsn);
        fail_with(req, 412, "precondition_failed", "If-Match does not match the current version %" PRIu64, lsn);
        return 1;
    }
    *ret = lsn; /* the store re-checks it under the document lock */
    return 0;
}

/* ---------------------------------------------------------------- /kv/{key} */

static int on_get(h2o_req_t *req, h2o_iovec_t key, const query_t *q)
{
    l3_store_t *st = l3_srv_env.store;
    h2o_iovec_t inm = header(req, H2O_TOKEN_IF_NONE_MATCH);
    if (inm.base != NULL) {
        uint64_t lsn;
        int rc = l3_store_get_lsn(st, key.base, key.len, &lsn);
        if (rc == 0 && etag_matches(inm, lsn, true)) {
            add_etag(req, lsn);
            respond(req, 304, NULL, h2o_iovec_init(NULL, 0));
            return 0;
        }
    }
    h2o_iovec_t accept = header(req, H2O_TOKEN_ACCEPT);
    if (!q->has_field && accept.base != NULL && contains_ci(accept, CT_BIN)) {
        uint8_t *buf;
        size_t len;
        uint64_t lsn;
        int rc = l3_store_get_bin(st, key.base, key.len, &buf, &len, &lsn);
        if (rc < 0)
            return fail_rc(req, rc, L3_CTX_READ, NULL);
        adopt(req, buf);
        add_etag(req, lsn);
        respond(req, 200, CT_BIN, h2o_iovec_init(buf, len));
        return 0;
    }
    uint64_t lsn = 0;
    jbuf.len = 0;
    int rc = l3_store_get_json(st, key.base, key.len, q->has_field ? q->field.base : NULL,
                               q->has_field ? q->field.len : 0, 0, &jbuf, &lsn);
    if (rc < 0)
        return fail_rc(req, rc, L3_CTX_READ, NULL);
    add_etag(req, lsn);
    respond_jbuf(req, 200, CT_JSON);
    return 0;
}

static int ok_version(h2o_req_t *req, int status, uint64_t lsn)
{
    char *p = h2o_mem_alloc_pool(&req->pool, 48);
    int n = snprintf(p, 48, "{\"ok\":true,\"version\":%" PRIu64 "}\n", lsn);
    add_etag(req, lsn);
    respond_write(req, status, CT_JSON, h2o_iovec_init(p, (size_t)n));
    return 0;
}

/* Read the body: 411 without one, 413 above the limit. Returns 1 when answered. */
static int need_body(h2o_req_t *req)
{
    if (req->entity.base == NULL) {
        fail_with(req, 411, "length_required", "a request body is required");
        return 1;
    }
    if (req->entity.len > l3_srv_env.srv->cfg.server.max_body_bytes) {
        fail_with(req, 413, "too_large", "body of %zu bytes exceeds server.max_body_bytes (%" PRIu64 ")",
                  req->entity.len, l3_srv_env.srv->cfg.server.max_body_bytes);
        return 1;
    }
    return 0;
}

static int on_put(h2o_req_t *req, h2o_iovec_t key)
{
    if (need_body(req))
        return 0;
    h2o_iovec_t ct = header(req, H2O_TOKEN_CONTENT_TYPE);
    bool bin = false;
    if (ct.base != NULL) {
        h2o_iovec_t mt = media_type(req, ct);
        if (ieq(mt, H2O_STRLIT(CT_BIN)))
            bin = true;
        else if (!(ieq(mt, H2O_STRLIT("application/json")) || ieq(mt, H2O_STRLIT("text/plain")) ||
                   ieq(mt, H2O_STRLIT("application/x-www-form-urlencoded")) || mt.len == 0 ||
                   (mt.len > 5 && memcmp(mt.base + mt.len - 5, "+json", 5) == 0)))
            return fail_with(req, 415, "unsupported_media_type",
                             "PUT takes application/json or " CT_BIN ", not %.*s", (int)L3_MIN(mt.len, 100), mt.base);
    }
    uint64_t if_match;
    if (resolve_if_match(req, key, &if_match))
        return 0;
    uint64_t lsn = 0;
    l3_doc_error_t err = {0, NULL};
    int rc;
    if (bin) {
        const uint8_t *doc = (const uint8_t *)req->entity.base;
        if (((uintptr_t)doc & 7) != 0 && req->entity.len > 0) { /* the format wants 8-byte alignment */
            uint8_t *copy = malloc(req->entity.len);
            if (copy == NULL)
                return fail_rc(req, -ENOMEM, L3_CTX_WRITE, NULL);
            memcpy(copy, doc, req->entity.len);
            rc = l3_store_put_bin(l3_srv_env.store, key.base, key.len, copy, req->entity.len, if_match, &lsn, &err);
            free(copy);
        } else {
            rc = l3_store_put_bin(l3_srv_env.store, key.base, key.len, doc, req->entity.len, if_match, &lsn, &err);
        }
    } else {
        rc = l3_store_put_json(l3_srv_env.store, key.base, key.len, req->entity.base, req->entity.len, if_match,
                               &lsn, &err);
    }
    if (rc < 0)
        return fail_rc(req, rc, L3_CTX_WRITE, &err);
    return ok_version(req, 200, lsn);
}

static int on_delete(h2o_req_t *req, h2o_iovec_t key)
{
    uint64_t if_match, lsn = 0;
    if (resolve_if_match(req, key, &if_match))
        return 0;
    int rc = l3_store_delete(l3_srv_env.store, key.base, key.len, if_match, &lsn);
    if (rc < 0)
        return fail_rc(req, rc, L3_CTX_WRITE, NULL);
    return ok_version(req, 200, lsn);
}

/* Answer {"value":<json>,"version":n}. */
static int ok_value(h2o_req_t *req, const char *json, size_t jlen, uint64_t lsn)
{
    size_t cap = jlen + 64;
    char *p = h2o_mem_alloc_pool(&req->pool, cap);
    int n = snprintf(p, cap, "{\"value\":%.*s,\"version\":%" PRIu64 "}\n", (int)jlen, json, lsn);
    add_etag(req, lsn);
    respond_write(req, 200, CT_JSON, h2o_iovec_init(p, (size_t)n));
    return 0;
}

static int on_post(h2o_req_t *req, h2o_iovec_t key, const query_t *q)
{
    l3_store_t *st = l3_srv_env.store;
    if (q->op.base == NULL)
        return fail_with(req, 400, "bad_op", "missing ?op= (set_int, set_double, set_str, set_bool, set_null, incr)");
    if (!q->has_field)
        return fail_with(req, 400, "bad_path", "missing ?field= (dotted path or JSON Pointer)");
    const char *path = q->field.base;
    size_t plen = q->field.len;
    uint64_t if_match, lsn = 0;
    h2o_iovec_t op = q->op;
    int rc;
    l3_doc_scalar_t v;
    unsigned flags = L3_DOC_SET_SAME_TYPE;
    char numbuf[40];

    if (h2o_memis(op.base, op.len, H2O_STRLIT("incr"))) {
        int64_t delta = 1, nv = 0;
        if (q->has_val && !parse_i64(q->val, &delta))
            return fail_with(req, 400, "bad_value", "val must be a 64-bit integer");
        if (resolve_if_match(req, key, &if_match))
            return 0;
        /* the store's incr takes no If-Match: with one, the check above is advisory under races */
        rc = l3_store_incr(st, key.base, key.len, path, plen, 0, delta, &nv, &lsn);
        if (rc < 0)
            return fail_rc(req, rc, L3_CTX_WRITE, NULL);
        int n = snprintf(numbuf, sizeof(numbuf), "%" PRId64, nv);
        return ok_value(req, numbuf, (size_t)n, lsn);
    }
    if (h2o_memis(op.base, op.len, H2O_STRLIT("set_int"))) {
        if (!q->has_val || !parse_i64(q->val, &v.i))
            return fail_with(req, 400, "bad_value", "val must be a 64-bit integer");
        v.type = L3_DOC_INT;
        if (resolve_if_match(req, key, &if_match))
            return 0;
        if (if_match == 0) {
            rc = l3_store_set_int(st, key.base, key.len, path, plen, 0, v.i, &lsn); /* fast path */
            if (rc != L3_ENOTFOUND) {
                if (rc < 0)
                    return fail_rc(req, rc, L3_CTX_WRITE, NULL);
                return ok_value(req, q->val.base, q->val.len, lsn);
            }
        }
    } else if (h2o_memis(op.base, op.len, H2O_STRLIT("set_double"))) {
        char tmp[64];
        char *end;
        if (!q->has_val || q->val.len == 0 || q->val.len >= sizeof(tmp))
            return fail_with(req, 400, "bad_value", "val must be a finite number");
        memcpy(tmp, q->val.base, q->val.len);
        tmp[q->val.len] = '\0';
        v.d = strtod(tmp, &end);
        if (*end != '\0' || !(v.d - v.d == 0) || tmp[0] == ' ')
            return fail_with(req, 400, "bad_value", "val must be a finite number");
        v.type = L3_DOC_DOUBLE;
    } else if (h2o_memis(op.base, op.len, H2O_STRLIT("set_str"))) {
        if (!q->has_val)
            return fail_with(req, 400, "bad_value", "missing val");
        if (!utf8_valid((const unsigned char *)q->val.base, q->val.len))
            return fail_with(req, 400, "bad_value", "val is not valid UTF-8");
        v.type = L3_DOC_STRING;
        v.str.ptr = q->val.base;
        v.str.len = q->val.len;
    } else if (h2o_memis(op.base, op.len, H2O_STRLIT("set_bool"))) {
        v.type = L3_DOC_BOOL;
        if (q->has_val && (h2o_memis(q->val.base, q->val.len, H2O_STRLIT("true")) ||
                           h2o_memis(q->val.base, q->val.len, H2O_STRLIT("1"))))
            v.b = true;
        else if (q->has_val && (h2o_memis(q->val.base, q->val.len, H2O_STRLIT("false")) ||
                                h2o_memis(q->val.base, q->val.len, H2O_STRLIT("0"))))
            v.b = false;
        else
            return fail_with(req, 400, "bad_value", "val must be true or false");
    } else if (h2o_memis(op.base, op.len, H2O_STRLIT("set_null"))) {
        v.type = L3_DOC_NULL;
        flags = 0;
    } else {
        return fail_with(req, 400, "bad_op", "unknown op '%.*s'", (int)L3_MIN(op.len, 64), op.base);
    }
    if (v.type != L3_DOC_INT && resolve_if_match(req, key, &if_match))
        return 0;
    rc = l3_store_set(st, key.base, key.len, path, plen, flags, &v, if_match, &lsn);
    if (rc == L3_ETYPE && v.type == L3_DOC_DOUBLE) {
        /* set_double may replace any number (an int becomes a double); other types conflict */
        l3_buf_t cur_val = {0};
        int r2 = l3_store_get_json(st, key.base, key.len, path, plen, 0, &cur_val, NULL);
        bool number = r2 == 0 && cur_val.len > 0 &&
                      (cur_val.ptr[0] == '-' || (cur_val.ptr[0] >= '0' && cur_val.ptr[0] <= '9'));
        free(cur_val.ptr);
        if (number)
            rc = l3_store_set(st, key.base, key.len, path, plen, 0, &v, if_match, &lsn);
    }
    if (rc < 0)
        return fail_rc(req, rc, L3_CTX_WRITE, NULL);
    /* echo the stored value */
    l3_buf_t out = {0};
    int n;
    switch (v.type) {
    case L3_DOC_INT:
        n = snprintf(numbuf, sizeof(numbuf), "%" PRId64, v.i);
        return ok_value(req, numbuf, (size_t)n, lsn);
    case L3_DOC_DOUBLE:
        n = snprintf(numbuf, sizeof(numbuf), "%.17g", v.d);
        return ok_value(req, numbuf, (size_t)n, lsn);
    case L3_DOC_BOOL:
        return v.b ? ok_value(req, H2O_STRLIT("true"), lsn) : ok_value(req, H2O_STRLIT("false"), lsn);
    case L3_DOC_NULL:
        return ok_value(req, H2O_STRLIT("null"), lsn);
    default:
        if (buf_json_str(&out, v.str.ptr, v.str.len) != 0)
            return fail_rc(req, -ENOMEM, L3_CTX_WRITE, NULL);
        adopt(req, out.ptr);
        return ok_value(req, out.ptr, out.len, lsn);
    }
}

static int on_patch(h2o_req_t *req, h2o_iovec_t key)
{
    if (need_body(req))
        return 0;
    h2o_iovec_t ct = header(req, H2O_TOKEN_CONTENT_TYPE);
    h2o_iovec_t mt = ct.base ? media_type(req, ct) : h2o_iovec_init(H2O_STRLIT(""));
    bool merge;
    if (ieq(mt, H2O_STRLIT("application/merge-patch+json")) || ieq(mt, H2O_STRLIT("application/json")))
        merge = true;
    else if (ieq(mt, H2O_STRLIT("application/json-patch+json")))
        merge = false;
    else
        return fail_with(req, 415, "unsupported_media_type",
                         "PATCH takes application/merge-patch+json or application/json-patch+json, not '%.*s'",
                         (int)L3_MIN(mt.len, 100), mt.base);
    uint64_t if_match, lsn = 0;
    if (resolve_if_match(req, key, &if_match))
        return 0;
    l3_doc_error_t err = {0, NULL};
    int rc = merge ? l3_store_merge_patch(l3_srv_env.store, key.base, key.len, req->entity.base, req->entity.len,
                                          if_match, &lsn, &err)
                   : l3_store_json_patch(l3_srv_env.store, key.base, key.len, req->entity.base, req->entity.len,
                                         if_match, &lsn, &err);
    if (rc < 0) {
        if (rc == L3_ESYNTAX && err.msg != NULL && err.offset == 0 && !merge)
            return fail_with(req, 400, "invalid_patch", "%s", err.msg);
        return fail_rc(req, rc, L3_CTX_WRITE, &err);
    }
    return ok_version(req, rc == 1 ? 201 : 200, lsn);
}

/* ---------------------------------------------------------------- listing */

typedef struct {
    l3_buf_t *b;
    size_t n;
    int rc;
} list_ctx_t;

static int list_one(void *vctx, const void *key, size_t klen, uint64_t lsn)
{
    list_ctx_t *c = vctx;
    if ((c->n++ && buf_cat(c->b, ",", 1) != 0) || buf_json_str(c->b, key, klen) != 0) {
        c->rc = -ENOMEM;
        return 1;
    }
    return 0;
}

static int on_list(h2o_req_t *req, const query_t *q)
{
    uint64_t limit = LIST_DEFAULT_LIMIT, cursor = 0;
    if (q->limit.base != NULL && (!parse_u64(q->limit, &limit) || limit == 0 || limit > LIST_MAX_LIMIT))
        return fail_with(req, 400, "bad_value", "limit must be 1..%u", LIST_MAX_LIMIT);
    if (q->cursor.base != NULL && q->cursor.len > 0 && !parse_u64(q->cursor, &cursor))
        return fail_with(req, 400, "bad_value", "cursor must be a value returned by a previous listing");
    jbuf.len = 0;
    list_ctx_t c = {.b = &jbuf};
    if (buf_cat(&jbuf, H2O_STRLIT("{\"keys\":[")) != 0)
        return fail_rc(req, -ENOMEM, L3_CTX_READ, NULL);
    int rc = l3_store_keys(l3_srv_env.store, q->prefix.base, q->prefix.len, &cursor, (size_t)limit, list_one, &c);
    if (rc < 0 || c.rc < 0)
        return fail_rc(req, rc < 0 ? rc : c.rc, L3_CTX_READ, NULL);
    char tail[64];
    int n = cursor ? snprintf(tail, sizeof(tail), "],\"count\":%zu,\"cursor\":\"%" PRIu64 "\"}\n", c.n, cursor)
                   : snprintf(tail, sizeof(tail), "],\"count\":%zu,\"cursor\":null}\n", c.n);
    if (buf_cat(&jbuf, tail, (size_t)n) != 0)
        return fail_rc(req, -ENOMEM, L3_CTX_READ, NULL);
    respond_jbuf(req, 200, CT_JSON);
    return 0;
}

/* ---------------------------------------------------------------- metrics, health */

static int on_metrics(h2o_req_t *req, bool text)
{
    char *out = NULL, extra[768];
    size_t len = 0;
    int rc;
    if (text) {
        rc = l3_obs_render_text(&l3_srv_env.srv->obs, &out, &len);
    } else {
        l3_store_stats_t s;
        const char *ex = NULL;
        if (l3_srv_env.store != NULL && l3_store_stats(l3_srv_env.store, &s) == 0) {
            snprintf(extra, sizeof(extra),
                     "{\"keys\":%" PRIu64 ",\"doc_bytes\":%" PRIu64 ",\"heap_bytes\":%" PRIu64 ",\"used_bytes\":%" PRIu64
                     ",\"free_bytes\":%" PRIu64 ",\"largest_free\":%" PRIu64 ",\"fragmentation\":%.4f,\"last_lsn\":%" PRIu64
                     ",\"repairs\":%" PRIu64 ",\"rollbacks\":%" PRIu64 ",\"grows\":%" PRIu64 ",\"compactions\":%" PRIu64
                     ",\"procs\":%u}",
                     s.keys, s.doc_bytes, s.heap_bytes, s.used_bytes, s.free_bytes, s.largest_free, s.fragmentation,
                     s.last_lsn, s.repairs, s.rollbacks, s.grows, s.compactions, s.procs);
            ex = extra;
        }
        l3_obs_wal_t ow, *owp = NULL;
        if (l3_srv_env.srv->wal_ring != NULL) {
            l3_wal_stats_t ws;
            l3_wal_ring_stats(l3_srv_env.srv->wal_ring, &ws);
            ow = (l3_obs_wal_t){.head = ws.head, .tail = ws.tail, .durable = ws.durable, .records = ws.records,
                                .aborted = ws.aborted, .bytes = ws.bytes, .fsyncs = ws.fsyncs, .batches = ws.batches,
                                .write_errors = ws.write_errors, .seg_seq = ws.seg_seq, .seg_off = ws.seg_off,
                                .disk_bytes = ws.disk_bytes, .error = ws.error, .failstop = ws.failstop,
                                .writer_pid = ws.writer_pid};
            owp = &ow;
        }
        rc = l3_obs_render_json(&l3_srv_env.srv->obs, L3KV_VERSION, l3_srv_accept_queue(l3_srv_env.srv), ex, owp,
                                &out, &len);
    }
    if (rc < 0)
        return fail_rc(req, rc, L3_CTX_READ, NULL);
    adopt(req, out);
    add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    respond(req, 200, text ? "text/plain; charset=utf-8" : CT_JSON, h2o_iovec_init(out, len));
    return 0;
}

static bool is_reserved(h2o_iovec_t key)
{
    return h2o_memis(key.base, key.len, H2O_STRLIT("health")) || h2o_memis(key.base, key.len, H2O_STRLIT("metrics"));
}

/* ---------------------------------------------------------------- dispatch */

static int route_kv(h2o_req_t *req, h2o_iovec_t key)
{
    bool get = METHOD(req, "GET") || cur.head;
    bool write = METHOD(req, "PUT") || METHOD(req, "DELETE") || METHOD(req, "POST") || METHOD(req, "PATCH");
    if (is_reserved(key)) {
        if (write)
            return fail_with(req, 400, "reserved_key", "'%.*s' is a reserved name; documents cannot be written under it",
                             (int)key.len, key.base);
        if (!get)
            return fail_405(req, ALLOW_RO);
        if (key.base[0] == 'h') {
            cur.route = L3_OBS_R_HEALTH;
            respond_static(req, 200, CT_JSON, "{\"status\":\"ok\"}\n");
            return 0;
        }
        cur.route = L3_OBS_R_METRICS;
        return on_metrics(req, true);
    }
    if (!get && !write) {
        add_header(req, H2O_TOKEN_ALLOW, H2O_STRLIT(ALLOW_DOC));
        return fail_with(req, 405, "method_not_allowed", "allowed: " ALLOW_DOC);
    }
    if (key.len > L3_STORE_KEY_MAX)
        return fail_with(req, 414, "key_too_long", "key of %zu bytes; the limit is %u", key.len, L3_STORE_KEY_MAX);
    if (!utf8_valid((const unsigned char *)key.base, key.len))
        return fail_with(req, 400, "bad_key", "key is not valid UTF-8");
    if (*l3_srv_env.active > l3_srv_env.max_active && l3_srv_conn_over_limit(req->conn))
        return fail_with(req, 503, "overloaded", "too many open connections on this worker");
    query_t q;
    if (parse_query(req, &q) != 0)
        return fail_with(req, 400, "bad_query", "malformed percent-escape in the query string");
    if (get) {
        cur.route = L3_OBS_R_GET;
        return on_get(req, key, &q);
    }
    if (METHOD(req, "PUT")) {
        cur.route = L3_OBS_R_PUT;
        return on_put(req, key);
    }
    if (METHOD(req, "DELETE")) {
        cur.route = L3_OBS_R_DELETE;
        return on_delete(req, key);
    }
    if (METHOD(req, "POST")) {
        cur.route = L3_OBS_R_POST;
        return on_post(req, key, &q);
    }
    cur.route = L3_OBS_R_PATCH;
    return on_patch(req, key);
}

/* Runs when h2o frees the request (response complete or connection gone). */
static void on_req_done(void *unused)
{
    l3_obs_slot_t *s = l3_srv_env.obs;
    __atomic_store_n(&s->os_inflight, __atomic_load_n(&s->os_inflight, __ATOMIC_RELAXED) - 1, __ATOMIC_RELAXED);
}

int l3_srv_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    cur.t0 = l3_now_ns();
    /* in-flight gauge for the autoscaler: +1 now, -1 when the request's pool is released */
    l3_obs_slot_t *os = l3_srv_env.obs;
    __atomic_store_n(&os->os_inflight, __atomic_load_n(&os->os_inflight, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    (void)h2o_mem_alloc_shared(&req->pool, 1, on_req_done);
    cur.route = L3_OBS_R_OTHER;
    cur.head = METHOD(req, "HEAD");
    h2o_iovec_t p = req->path_normalized;
    bool get = METHOD(req, "GET") || cur.head;

    if (req->path.len > MAX_PATH_BYTES)
        return fail_with(req, 414, "uri_too_long", "request target of %zu bytes; the limit is %u", req->path.len,
                         MAX_PATH_BYTES);
    if (p.len >= 4 && memcmp(p.base, "/kv/", 4) == 0 && p.len > 4)
        return route_kv(req, h2o_iovec_init(p.base + 4, p.len - 4));
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/kv/")) || h2o_memis(p.base, p.len, H2O_STRLIT("/kv"))) {
        cur.route = L3_OBS_R_LIST;
        if (!get)
            return fail_405(req, ALLOW_RO);
        query_t q;
        if (parse_query(req, &q) != 0)
            return fail_with(req, 400, "bad_query", "malformed percent-escape in the query string");
        return on_list(req, &q);
    }
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/metrics"))) {
        cur.route = L3_OBS_R_METRICS;
        if (!get)
            return fail_405(req, ALLOW_RO);
        return on_metrics(req, false);
    }
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/admin/checkpoint"))) {
        /* on-demand checkpoint: the supervisor forks the checkpointer at its next tick */
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")))
            return fail_405(req, "POST");
        if (kill(getppid(), SIGRTMIN) != 0)
            return fail_with(req, 503, "unavailable", "cannot reach the supervisor: %s", strerror(errno));
        respond_static(req, 202, CT_JSON, "{\"ok\":true,\"detail\":\"checkpoint requested\"}");
        return 0;
    }
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/dashboard")) || h2o_memis(p.base, p.len, H2O_STRLIT("/dashboard/"))) {
        if (!get)
            return fail_405(req, ALLOW_RO);
        size_t len;
        const char *html = l3_obs_dashboard_html(&len);
        respond(req, 200, "text/html; charset=utf-8", h2o_iovec_init(html, len));
        return 0;
    }
    return fail_with(req, 404, "not_found", "no route for %.*s", (int)L3_MIN(p.len, 200), p.base);
}
