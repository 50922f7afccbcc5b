/* SPDX-License-Identifier: MIT */
/*
 * test-server.c - the server's pure parts: query and integer parsing, ETag matching,
 * the decimal writer of versions, media types, which route a path reaches, and the JSON error bodies.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "errmap.h"
#include "framing.h"
#include "l3kv/error.h"
#include "query.h"
#include "routes.h"
#include "t.h"

static bool qeq(l3_q_str_t v, const char *s)
{
    return v.base != NULL && v.len == strlen(s) && memcmp(v.base, s, v.len) == 0;
}

static void test_query(void)
{
    char out[128];
    l3_query_t q;
    const char *s = "op=set_str&field=a.b&val=h%C3%A9llo+w&x=1&limit=5&cursor=&prefix=p%2Fq";
    CHECK_EQ_INT(l3_q_parse(s, strlen(s), out, &q), 0);
    CHECK(qeq(q.op, "set_str"));
    CHECK(q.has_field && qeq(q.field, "a.b"));
    CHECK(q.has_val && qeq(q.val, "h\xc3\xa9llo w"));
    CHECK(qeq(q.limit, "5"));
    CHECK(q.cursor.base != NULL && q.cursor.len == 0);
    CHECK(qeq(q.prefix, "p/q"));
    s = "path=%2Fx&value=";
    CHECK_EQ_INT(l3_q_parse(s, strlen(s), out, &q), 0);
    CHECK(qeq(q.field, "/x") && q.has_val && q.val.len == 0);
    s = "val";
    CHECK_EQ_INT(l3_q_parse(s, strlen(s), out, &q), 0);
    CHECK(q.has_val && q.val.len == 0);
    CHECK_EQ_INT(l3_q_parse("", 0, out, &q), 0);
    CHECK(!q.has_val && q.op.base == NULL);
    const char *bad[] = {"val=%", "val=%4", "val=%zz", "op=a&val=%g0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(l3_q_parse(bad[i], strlen(bad[i]), out, &q), -1);
    s = "val=%41";
    CHECK_EQ_INT(l3_q_parse(s, strlen(s), out, &q), 0);
    CHECK(qeq(q.val, "A"));
}

static void test_key_decode(void)
{
    char out[64];
#define D(lit) l3_q_path_decode(lit, sizeof(lit) - 1, out)
    CHECK_EQ_INT(D("a%2Fb"), 3);
    CHECK(memcmp(out, "a/b", 3) == 0);
    CHECK_EQ_INT(D("tmp%2F..%2Fvictim"), 13);
    CHECK(memcmp(out, "tmp/../victim", 13) == 0); /* no dot-segment folding */
    CHECK_EQ_INT(D("a+b"), 3);
    CHECK(memcmp(out, "a+b", 3) == 0); /* '+' is not a space in a path */
    CHECK_EQ_INT(D("%2541"), 3);
    CHECK(memcmp(out, "%41", 3) == 0); /* decoded exactly once */
    CHECK_EQ_INT(D("%"), -1);
    CHECK_EQ_INT(D("%4"), -1);
    CHECK_EQ_INT(D("%zz"), -1);
    CHECK_EQ_INT(D(""), 0);
#undef D
    CHECK(l3_q_key_valid("caf\xc3\xa9", 5));
    CHECK(l3_q_key_valid("a/../b", 6));
    CHECK(!l3_q_key_valid("a\0b", 3));
    CHECK(!l3_q_key_valid("a\nb", 3));
    CHECK(!l3_q_key_valid("a\x7f", 2));
    CHECK(!l3_q_key_valid("\xff", 1));
}

static void test_numbers(void)
{
    uint64_t u;
    int64_t i;
    CHECK(l3_q_u64("0", 1, &u) && u == 0);
    CHECK(l3_q_u64("18446744073709551615", 20, &u) && u == UINT64_MAX);
    CHECK(!l3_q_u64("18446744073709551616", 20, &u));
    CHECK(!l3_q_u64("", 0, &u));
    CHECK(!l3_q_u64("-1", 2, &u));
    CHECK(!l3_q_u64("1a", 2, &u));
    CHECK(l3_q_i64("-9223372036854775808", 20, &i) && i == INT64_MIN);
    CHECK(l3_q_i64("9223372036854775807", 19, &i) && i == INT64_MAX);
    CHECK(!l3_q_i64("9223372036854775808", 19, &i));
    CHECK(l3_q_i64("42", 2, &i) && i == 42);
    CHECK(!l3_q_i64("+1", 2, &i));
    CHECK(!l3_q_i64(" 1", 2, &i));
    CHECK(!l3_q_i64("1 ", 2, &i));
    CHECK(!l3_q_i64("", 0, &i));
    CHECK(!l3_q_i64("-", 1, &i));
    CHECK(!l3_q_i64("007", 3, &i));
    CHECK(!l3_q_i64("-01", 3, &i));
    CHECK(l3_q_i64("-0", 2, &i) && i == 0);
    CHECK(l3_q_i64("0", 1, &i) && i == 0);
    CHECK(!l3_q_i64("1e3", 3, &i));
    double d;
#define DB(lit) l3_q_double(lit, sizeof(lit) - 1, &d)
    CHECK(DB("2.50") && d == 2.5);
    CHECK(DB("-1E2") && d == -100.0);
    CHECK(DB("1e-2") && d == 0.01);
    CHECK(DB("0") && d == 0.0);
    CHECK(!DB("+1.5"));
    CHECK(!DB(".5"));
    CHECK(!DB("5."));
    CHECK(!DB("01.5"));
    CHECK(!DB("0x1p3"));
    CHECK(!DB("1e"));
    CHECK(!DB("1e999"));
    CHECK(!DB("inf"));
    CHECK(!DB("nan"));
    CHECK(!DB(" 1"));
    CHECK(!DB(""));
#undef DB
}

static void test_etag(void)
{
#define M(s, lsn, ex) l3_q_etag_matches(s, strlen(s), lsn, ex)
    CHECK_EQ_INT(M("\"5\"", 5, true), 1);
    CHECK_EQ_INT(M("\"5\"", 6, true), 0);
    CHECK_EQ_INT(M("\"5\"", 5, false), 0);
    CHECK_EQ_INT(M("W/\"5\"", 5, true), 1);
    CHECK_EQ_INT(M("5", 5, true), 1);
    CHECK_EQ_INT(M("\"4\", \"5\"", 5, true), 1);
    CHECK_EQ_INT(M("\"4\",\"6\"", 5, true), 0);
    CHECK_EQ_INT(M("*", 1, true), 1);
    CHECK_EQ_INT(M("*", 1, false), 0);
    CHECK_EQ_INT(M("\"5", 5, true), 0);
    CHECK_EQ_INT(M("\"55\"", 5, true), 0);
    CHECK_EQ_INT(M("", 5, true), 0);
    CHECK_EQ_INT(M(",,, ,", 5, true), 0);
#undef M
}

static void test_u64_dec(void)
{
    static const uint64_t vals[] = {0, 7, 9, 10, 99, 100, 12345, 4294967296ULL, UINT64_MAX};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        char got[24], want[24];
        size_t n = l3_http_u64_dec(got, vals[i]);
        got[n] = 0;
        snprintf(want, sizeof(want), "%" PRIu64, vals[i]);
        CHECK_EQ_STR(got, want);
    }
    static const int64_t ivals[] = {0, 1, -1, 9, -10, 123456789, -4294967296LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof(ivals) / sizeof(ivals[0]); i++) {
        char got[24], want[24];
        size_t n = l3_http_i64_dec(got, ivals[i]);
        CHECK(n <= 20);
        got[n] = 0;
        snprintf(want, sizeof(want), "%" PRId64, ivals[i]);
        CHECK_EQ_STR(got, want);
    }
}

static void test_media_type(void)
{
    char out[64];
    const char *v = "  Application/JSON ; charset=utf-8";
    size_t n = l3_q_media_type(v, strlen(v), out);
    CHECK(n == 16 && memcmp(out, "application/json", 16) == 0);
    CHECK_EQ_INT(l3_q_media_type(" ; x", 4, out), 0);
    CHECK(l3_q_contains_ci("text/html, Application/Vnd.L3kv.Doc", 36, "application/vnd.l3kv.doc"));
    CHECK(!l3_q_contains_ci("application/json", 16, "application/vnd.l3kv.doc"));
}

static const char *route_of(const char *path, const char **rest)
{
    h2o_iovec_t r;
    const char *name = l3_routes_name(l3_routes_match(path, strlen(path), &r));
    static char buf[256];
    snprintf(buf, sizeof(buf), "%.*s", (int)r.len, r.base ? r.base : "");
    *rest = buf;
    return name ? name : "none";
}

static void test_routing(void)
{
    const char *rest;
    CHECK_EQ_STR(route_of("/kv/a", &rest), "kv");
    CHECK_EQ_STR(rest, "a");
    CHECK_EQ_STR(route_of("/kv/a/b", &rest), "kv");
    CHECK_EQ_STR(rest, "a/b");
    CHECK_EQ_STR(route_of("/kv/", &rest), "list");
    CHECK_EQ_STR(route_of("/kv", &rest), "list");
    CHECK_EQ_STR(route_of("/kv/health", &rest), "health");
    CHECK_EQ_STR(route_of("/kv/metrics", &rest), "metrics_text");
    CHECK_EQ_STR(route_of("/kv/healthy", &rest), "kv");
    CHECK_EQ_STR(route_of("/kv/health/", &rest), "kv");
    CHECK_EQ_STR(route_of("/metrics", &rest), "metrics");
    CHECK_EQ_STR(route_of("/metrics/", &rest), "none");
    CHECK_EQ_STR(route_of("/dashboard", &rest), "dashboard");
    CHECK_EQ_STR(route_of("/dashboard/", &rest), "dashboard");
    CHECK_EQ_STR(route_of("/admin/checkpoint", &rest), "checkpoint");
    CHECK_EQ_STR(route_of("/admin/backup", &rest), "backup");
    CHECK_EQ_STR(route_of("/kvx", &rest), "none");
    /* routing sees the raw path: encoded or dotted spellings do not reach other routes */
    CHECK_EQ_STR(route_of("/kv/a%2Fb%2F..%2F..%2F..%2Fmetrics", &rest), "kv");
    CHECK_EQ_STR(rest, "a%2Fb%2F..%2F..%2F..%2Fmetrics");
    CHECK_EQ_STR(route_of("/kv/../metrics", &rest), "kv");
    CHECK_EQ_STR(route_of("/kv/%68ealth", &rest), "kv");
    CHECK_EQ_STR(route_of("/%6Detrics", &rest), "none");
    CHECK_EQ_STR(route_of("/kv/x/../../metrics", &rest), "kv");
    CHECK_EQ_STR(route_of("/", &rest), "none");
    CHECK_EQ_STR(route_of("", &rest), "none");
    CHECK(l3_routes_name(-1) == NULL);
}

struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};
ssize_t phr_decode_chunked(struct phr_chunked_decoder *d, char *buf, size_t *bufsz);

/* Decode s in pieces of `step` bytes (0 = at once): the result code, the body in out. */
static ssize_t unchunk(const char *s, size_t step, char *out, size_t *out_len)
{
    struct phr_chunked_decoder d = {.consume_trailer = 1};
    size_t n = strlen(s), off = 0;
    *out_len = 0;
    ssize_t r = -2;
    while (off < n && r == -2) {
        char buf[256];
        size_t piece = step == 0 ? n - off : L3_MIN(step, n - off);
        memcpy(buf, s + off, piece);
        off += piece;
        size_t sz = piece;
        r = phr_decode_chunked(&d, buf, &sz);
        memcpy(out + *out_len, buf, sz);
        *out_len += sz;
    }
    return r < 0 ? r : r + (ssize_t)(n - off);
}

static void test_framing(void)
{
    l3_framing_header_t h[3];
#define H(i, n, v) (h[i] = (l3_framing_header_t){n, strlen(n), v, strlen(v)})
    H(0, "Content-Length", "2"), H(1, "Transfer-Encoding", "chunked");
    CHECK_EQ_INT(l3_framing_check(h, 2), L3_FRAMING_CL_AND_TE);
    H(0, "content-length", "2"), H(1, "CONTENT-LENGTH", "40");
    CHECK_EQ_INT(l3_framing_check(h, 2), L3_FRAMING_CL_CONFLICT);
    H(1, "Content-Length", "2");
    CHECK_EQ_INT(l3_framing_check(h, 2), L3_FRAMING_OK);
    H(0, "Transfer-Encoding", "gzip"), H(1, "Transfer-Encoding", "chunked");
    CHECK_EQ_INT(l3_framing_check(h, 2), L3_FRAMING_TE_REPEATED);
    H(0, "Host", "x"), h[1] = (l3_framing_header_t){NULL, 0, "folded", 6};
    CHECK_EQ_INT(l3_framing_check(h, 2), L3_FRAMING_SYNTAX);
    CHECK_EQ_INT(l3_framing_check(h, 1), L3_FRAMING_OK);
#undef H
    char out[256];
    size_t ol;
    for (size_t step = 0; step < 4; step++) {
        CHECK_EQ_INT(unchunk("2\r\n{}\r\n0\r\n\r\nNEXT", step, out, &ol), 4);
        CHECK(ol == 2 && memcmp(out, "{}", 2) == 0);
        CHECK_EQ_INT(unchunk("2;a=b\r\n{}\r\n3 ; x\r\nabc\r\n0\r\nT: v\r\n\r\n", step, out, &ol), 0);
        CHECK(ol == 5 && memcmp(out, "{}abc", 5) == 0);
        CHECK_EQ_INT(unchunk("A\r\n0123456789\r\n0\r\n\r\n", step, out, &ol), 0);
        CHECK_EQ_INT(unchunk("0x2\r\n{}\r\n0\r\n\r\n", step, out, &ol), -1);
        CHECK_EQ_INT(unchunk("2x\r\n{}\r\n0\r\n\r\n", step, out, &ol), -1);
        CHECK_EQ_INT(unchunk("2 z\r\n{}\r\n0\r\n\r\n", step, out, &ol), -1);
        CHECK_EQ_INT(unchunk(" 2\r\n{}\r\n0\r\n\r\n", step, out, &ol), -1);
        CHECK_EQ_INT(unchunk("2\n{}\r\n0\r\n\r\n", step, out, &ol), -1);
        CHECK_EQ_INT(unchunk("2\r\n{}XX0\r\n\r\n", step, out, &ol), -1);
        CHECK_EQ_INT(unchunk("2;\x01\r\n{}\r\n0\r\n\r\n", step, out, &ol), -1);
        CHECK_EQ_INT(unchunk("1000000000000000\r\n", step, out, &ol), -1);
        CHECK_EQ_INT(unchunk("2\r\n{", step, out, &ol), -2);
    }
}

static void test_errors(void)
{
    l3_srv_errinfo_t ei;
    l3_srv_errmap(L3_ENOTFOUND, L3_CTX_READ, NULL, &ei);
    CHECK(ei.status == 404 && strcmp(ei.error, "path_not_found") == 0);
    l3_srv_errmap(L3_ENOTFOUND, L3_CTX_WRITE, NULL, &ei);
    CHECK(ei.status == 409);
    l3_srv_errmap(-ENOSPC, L3_CTX_WRITE, NULL, &ei);
    CHECK(ei.status == 507 && strcmp(ei.error, "arena_full") == 0);
    l3_srv_errmap(-ENOSPC, L3_CTX_WRITE, &(l3_srv_errarg_t){.wal_error = -ENOSPC}, &ei);
    CHECK(ei.status == 507 && strcmp(ei.error, "disk_full") == 0 && ei.detail != NULL);
    l3_srv_errmap(L3_ETYPE, L3_CTX_WRITE, &(l3_srv_errarg_t){.msg = "test failed"}, &ei);
    CHECK(ei.status == 409 && strcmp(ei.error, "test_failed") == 0);
    l3_srv_errmap(L3_ETYPE, L3_CTX_WRITE, &(l3_srv_errarg_t){.msg = "not a number"}, &ei);
    CHECK(strcmp(ei.error, "type_conflict") == 0);
    l3_srv_errmap(-12345, L3_CTX_READ, NULL, &ei);
    CHECK(ei.status == 500 && strcmp(ei.error, "internal") == 0 &&
          strcmp(ei.reason, "Internal Server Error") == 0);
    l3_srv_errmap(-ENOENT, L3_CTX_READ, NULL, &ei);
    CHECK(ei.status == 404 && strcmp(ei.detail, "no document under this key") == 0);
    l3_srv_errmap(-ETIMEDOUT, L3_CTX_WRITE, NULL, &ei); /* a lock timeout says so */
    CHECK(ei.status == 503 && strcmp(ei.error, "overloaded") == 0 && ei.detail != NULL &&
          strstr(ei.detail, "storage.lock_timeout_ms") != NULL);

    char buf[128];
    size_t n = l3_srv_err_json(buf, sizeof(buf), "bad_key", "a \"q\" \\ \x01");
    CHECK_EQ_STR(buf, "{\"error\":\"bad_key\",\"detail\":\"a \\\"q\\\" \\\\ \\u0001\"}\n");
    CHECK_EQ_INT(n, strlen(buf));
    n = l3_srv_err_json(buf, sizeof(buf), "x", "caf\xc3\xa9 \xff");
    CHECK_EQ_STR(buf,
                 "{\"error\":\"x\",\"detail\":\"caf\xc3\xa9 \\u00ff\"}\n"); /* UTF-8 kept, bad byte escaped */
    n = l3_srv_err_json(buf, sizeof(buf), "x", NULL);
    CHECK_EQ_STR(buf, "{\"error\":\"x\",\"detail\":\"\"}\n");
    /* truncation keeps the body well-formed */
    char longd[400];
    memset(longd, '"', sizeof(longd) - 1);
    longd[sizeof(longd) - 1] = '\0';
    n = l3_srv_err_json(buf, sizeof(buf), "x", longd);
    CHECK(n < sizeof(buf) && n > 4 && strcmp(buf + n - 3, "\"}\n") == 0 && buf[n - 4] == '"' &&
          buf[n - 5] == '\\');
    CHECK_EQ_INT(l3_srv_err_json(buf, 10, "x", "y"), 0);
}

int main(void)
{
    test_query();
    test_key_decode();
    test_numbers();
    test_etag();
    test_u64_dec();
    test_media_type();
    test_routing();
    test_framing();
    test_errors();
    return t_done();
}
