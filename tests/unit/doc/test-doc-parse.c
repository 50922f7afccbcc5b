/* SPDX-License-Identifier: MIT */
/*
 * test-doc-parse.c - JSON text -> document -> JSON text: l3_doc_from_json, l3_doc_check_json,
 * l3_doc_to_json, l3_buf_reserve. Every syntax error class with its byte offset, depth
 * limits (default, configured, hard cap), numbers kept exactly, minimal escaping and
 * shortest round-trip doubles on output. Single-threaded; no files.
 */
#include <dirent.h>
#include <sys/mman.h>
#include <unistd.h>
#include <float.h>
#include <jansson.h>
#include <math.h>

#include "dt.h"

/* ------------------------------------------------------------------ rejected input */

typedef struct {
    const char *name;
    const char *json;
    size_t len; /* 0: strlen */
    int rc;
    size_t lo, hi; /* accepted range of err.offset */
} bad_case_t;

#define B(name, json, lo, hi) {name, json, sizeof(json) - 1, L3_ESYNTAX, lo, hi}

static const bad_case_t bad[] = {
    B("empty", "", 0, 0),
    B("only whitespace", "  \n ", 0, 4),
    B("trailing comma in array", "[1,2,]", 5, 5),
    B("trailing comma in object", "{\"a\":1,}", 7, 7),
    B("trailing comma nested", "{\"a\":[1,],\"b\":2}", 8, 8),
    B("leading comma", "[,1]", 1, 1),
    B("double comma", "[1,,2]", 3, 3),
    B("missing comma", "[1 2]", 3, 3),
    B("missing colon", "{\"a\" 1}", 5, 5),
    B("unquoted key", "{a:1}", 1, 1),
    B("single quotes", "['a']", 1, 1),
    B("non-string key", "{1:2}", 1, 1),
    B("invalid escape \\x", "\"\\x41\"", 1, 2),
    B("invalid escape \\a", "[\"ab\\a\"]", 4, 5),
    B("invalid escape \\U", "\"\\U0041\"", 1, 2),
    B("short \\u", "\"\\u12\"", 1, 5),
    B("bad hex in \\u", "\"\\u12g4\"", 1, 5),
    B("lone high surrogate", "\"\\ud800\"", 1, 7),
    B("lone high surrogate then text", "\"\\uD834abc\"", 1, 8),
    B("lone low surrogate", "\"\\udc00\"", 1, 7),
    B("high surrogate then non-low", "\"\\ud800\\u0041\"", 1, 13),
    B("two high surrogates", "\"\\ud800\\ud800\"", 1, 13),
    B("overlong NUL C0 80", "\"\xc0\x80\"", 1, 2),
    B("overlong slash C1 AF", "\"\xc1\xaf\"", 1, 2),
    B("overlong 3-byte E0 80 AF", "\"\xe0\x80\xaf\"", 1, 3),
    B("overlong 4-byte F0 80 80 AF", "\"\xf0\x80\x80\xaf\"", 1, 4),
    B("UTF-8 encoded surrogate ED A0 80", "\"\xed\xa0\x80\"", 1, 3),
    B("UTF-8 encoded low surrogate ED BF BF", "\"\xed\xbf\xbf\"", 1, 3),
    B("above U+10FFFF F4 90 80 80", "\"\xf4\x90\x80\x80\"", 1, 4),
    B("F5 lead byte", "\"\xf5\x80\x80\x80\"", 1, 1),
    B("FF byte", "\"a\xff\"", 2, 2),
    B("lone continuation byte", "\"\x80\"", 1, 1),
    B("truncated 2-byte", "\"\xc3\"", 1, 2),
    B("truncated 3-byte", "\"\xe2\x82\"", 1, 3),
    B("truncated 4-byte", "\"\xf0\x9f\x98\"", 1, 4),
    B("truncated at end of input", "\"\xe2\x82", 1, 3),
    B("invalid UTF-8 in key", "{\"\xc0\x80\":1}", 2, 3),
    B("raw tab in string", "\"a\tb\"", 2, 2),
    B("raw newline in string", "[\"a\nb\"]", 3, 3),
    B("raw 0x01 in string", "\"\x01\"", 1, 1),
    B("raw 0x1f in key", "{\"\x1f\":1}", 2, 2),
    B("leading zero", "01", 0, 1),
    B("leading zeros in array", "[00]", 1, 2),
    B("negative leading zero", "-01", 0, 2),
    B("plus sign", "+1", 0, 0),
    B("leading dot", ".5", 0, 0),
    B("trailing dot", "1.", 1, 2),
    B("dot then exponent", "1.e5", 1, 2),
    B("lone minus", "-", 0, 1),
    B("minus space", "- 1", 0, 1),
    B("exponent without digits", "1e", 1, 2),
    B("exponent sign without digits", "1e+", 1, 3),
    B("hex number", "0x10", 1, 1),
    B("NaN", "NaN", 0, 0),
    B("Infinity", "Infinity", 0, 0),
    B("-Infinity", "-Infinity", 0, 1),
    B("nan lower", "[nan]", 1, 1),
    B("bad literal tru", "tru", 0, 3),
    B("bad literal nul", "[nul]", 1, 4),
    B("literal True", "True", 0, 0),
    B("literal nullx", "nullx", 4, 4),
    B("unterminated string", "\"abc", 0, 4),
    B("unterminated string after escape", "\"abc\\", 0, 5),
    B("unterminated array", "[1,2", 1, 4),
    B("unterminated array after comma", "[1,", 1, 3),
    B("unterminated object", "{\"a\":1", 1, 6),
    B("unterminated object after colon", "{\"a\":", 1, 5),
    B("unterminated nested", "[[[]]", 1, 5),
    B("mismatched bracket", "[1}", 2, 2),
    B("mismatched brace", "{\"a\":1]", 6, 6),
    B("trailing garbage after number", "1 x", 2, 2),
    B("trailing garbage after object", "{} {}", 3, 3),
    B("trailing garbage after string", "\"a\"b", 3, 3),
    B("trailing comma at top", "1,", 1, 1),
    B("comment", "[1 /* c */]", 3, 3),
    B("line comment", "// c\n1", 0, 0),
    B("raw DEL is fine but NUL is not", "\"a\x7f\"\x00", 4, 4),
};

static void test_bad(void)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const bad_case_t *c = &bad[i];
        uint8_t *buf = (uint8_t *)"untouched";
        size_t len = 12345;
        l3_doc_error_t err = {.offset = 999999, .msg = NULL};
        int rc = l3_doc_from_json(c->json, c->len, NULL, &buf, &len, &err);
        l3_doc_error_t err2 = {.offset = 999999, .msg = NULL};
        int rc2 = l3_doc_check_json(c->json, c->len, NULL, &err2);
        bool ok = rc == c->rc && err.offset >= c->lo && err.offset <= c->hi && err.msg && err.msg[0];
        bool ok2 = rc2 == c->rc && err2.offset == err.offset && err2.msg && err2.msg[0];
        if (!ok || !ok2)
            fprintf(stderr, "bad case '%s': from_json rc=%d offset=%zu msg=%s; check_json rc=%d offset=%zu "
                            "(want rc=%d offset in [%zu,%zu])\n",
                    c->name, rc, err.offset, err.msg ? err.msg : "(null)", rc2, err2.offset, c->rc, c->lo, c->hi);
        CHECK(ok);
        CHECK(ok2);
        if (rc == 0)
            free(buf);
    }
}

/* Every accepted input in this list must parse, verify and serialise to `out`. */
typedef struct {
    const char *in;
    size_t inlen;
    const char *out;
    size_t outlen;
} good_case_t;

#define G(in, out) {in, sizeof(in) - 1, out, sizeof(out) - 1}

static const good_case_t good[] = {
    G("null", "null"),
    G("true", "true"),
    G("false", "false"),
    G(" \t\r\n0 \t\r\n", "0"),
    G("[]", "[]"),
    G("{}", "{}"),
    G("[ 1 , 2 ,3 ]", "[1,2,3]"),
    G("{ \"a\" : [ ] , \"b\" : { } }", "{\"a\":[],\"b\":{}}"),
    G("\"\"", "\"\""),
    G("\"a\\/b\"", "\"a/b\""),
    G("\"\\u0041\\u00e9\\u20ac\\ud83d\\ude00\"", "\"A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""),
    G("\"\\uD83D\\uDE00\"", "\"\xf0\x9f\x98\x80\""),
    G("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xef\xbf\xbf\"",
      "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xef\xbf\xbf\""),
    G("\"\\b\\f\\n\\r\\t\\\"\\\\\"", "\"\\b\\f\\n\\r\\t\\\"\\\\\""),
    G("\"\\u0000\\u0001\\u001f\\u007f\"", "\"\\u0000\\u0001\\u001f\x7f\""),
    G("\"\x7f\"", "\"\x7f\""),
    G("{\"a\":1,\"b\":2,\"a\":3}", "{\"a\":3,\"b\":2}"),
    G("{\"z\":1,\"a\":2,\"m\":3}", "{\"z\":1,\"a\":2,\"m\":3}"),
    G("{\"a\":{\"x\":1},\"a\":[2]}", "{\"a\":[2]}"),
    G("[1.5,-2.25,1e2,1E-2,0.5e1]", "[1.5,-2.25,100,0.01,5]"),
    G("9223372036854775807", "9223372036854775807"),
    G("-9223372036854775808", "-9223372036854775808"),
};

static void test_good(void)
{
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const good_case_t *c = &good[i];
        uint8_t *buf = NULL;
        size_t len = 0;
        l3_doc_error_t err = {0};
        int rc = l3_doc_from_json(c->in, c->inlen, NULL, &buf, &len, &err);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(l3_doc_check_json(c->in, c->inlen, NULL, &err), 0);
        if (rc != 0) {
            fprintf(stderr, "good case %zu rejected at %zu: %s\n", i, err.offset, err.msg);
            continue;
        }
        CHECK(len >= l3_doc_size(buf));
        CHECK_EQ_INT((uintptr_t)buf % 8, 0);
        CHECK_EQ_INT(l3_doc_verify(buf, len, NULL), 0);
        CHECK_EQ_INT(l3_doc_lsn(buf), 0);
        size_t olen = 0;
        char *out = dt_json_len(buf, L3_DOC_ROOT, &olen);
        /* Numbers only need the same exact value; everything else is compared byte for byte. */
        bool same = dt_json_numeq(out, olen, c->out, c->outlen);
        if (!same)
            fprintf(stderr, "good case %zu: got '%s' want '%.*s'\n", i, out, (int)c->outlen, c->out);
        CHECK(same);
        free(out);
        free(buf);
    }
}

/* ------------------------------------------------------------------ numbers */

typedef struct {
    const char *text;
    l3_doc_type_t type; /* expected, or L3_DOC_TYPE_MAX: DOUBLE or BIGNUM both fine */
} num_case_t;

static const num_case_t nums[] = {
    {"0", L3_DOC_INT},
    {"-1", L3_DOC_INT},
    {"9223372036854775807", L3_DOC_INT},
    {"-9223372036854775808", L3_DOC_INT},
    {"9223372036854775808", L3_DOC_TYPE_MAX},
    {"-9223372036854775809", L3_DOC_BIGNUM},
    {"18446744073709551616", L3_DOC_TYPE_MAX},
    {"12345678901234567890123", L3_DOC_BIGNUM},
    {"-12345678901234567890123456789012345678901234567890", L3_DOC_BIGNUM},
    {"0.1000000000000000055511151231257827", L3_DOC_BIGNUM},
    {"0.10000000000000001", L3_DOC_TYPE_MAX},
    {"1e400", L3_DOC_BIGNUM},
    {"-1E+400", L3_DOC_BIGNUM},
    {"1e-400", L3_DOC_BIGNUM},
    {"2.4703282292062328e-324", L3_DOC_BIGNUM},
    {"123456789.123456789123456789", L3_DOC_BIGNUM},
    {"0.1", L3_DOC_DOUBLE},
    {"1.5", L3_DOC_DOUBLE},
    {"-2.5e-3", L3_DOC_DOUBLE},
    {"1.7976931348623157e308", L3_DOC_DOUBLE},
    {"5e-324", L3_DOC_DOUBLE},
    {"3.141592653589793", L3_DOC_DOUBLE},
    {"1.0", L3_DOC_TYPE_MAX},
    {"100e-2", L3_DOC_TYPE_MAX},
    {"0.30000000000000004", L3_DOC_DOUBLE},
    {"1e22", L3_DOC_TYPE_MAX},
    {"123e-20", L3_DOC_TYPE_MAX},
};

static void test_numbers(void)
{
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        const num_case_t *c = &nums[i];
        l3_doc_t d;
        dt_parse(&d, c->text);
        l3_doc_val_t v;
        l3_doc_val(d.buf, L3_DOC_ROOT, &v);
        bool tok = c->type == L3_DOC_TYPE_MAX ? (v.type == L3_DOC_INT || v.type == L3_DOC_DOUBLE ||
                                                  v.type == L3_DOC_BIGNUM)
                                               : v.type == c->type;
        if (!tok)
            fprintf(stderr, "number '%s': type %d want %d\n", c->text, v.type, c->type);
        CHECK(tok);
        if (v.type == L3_DOC_INT) {
            char t[32];
            snprintf(t, sizeof(t), "%" PRId64, v.i);
            CHECK(dt_dec_equal(c->text, strlen(c->text), t, strlen(t)));
        }
        size_t olen;
        char *out = dt_json_len(d.buf, L3_DOC_ROOT, &olen);
        bool exact = dt_dec_equal(out, olen, c->text, strlen(c->text));
        if (!exact)
            fprintf(stderr, "number '%s' came back as '%s' (value changed)\n", c->text, out);
        CHECK(exact);
        if (v.type == L3_DOC_BIGNUM)
            CHECK(dt_dec_equal(v.str.ptr, v.str.len, c->text, strlen(c->text)));
        if (v.type == L3_DOC_DOUBLE)
            CHECK(v.d == strtod(c->text, NULL));
        free(out);
        l3_doc_heap_free(&d);
    }
    /* int values through the API */
    l3_doc_t d;
    dt_parse(&d, "[9223372036854775807,-9223372036854775808,-0,0.0,-0.0]");
    l3_doc_val_t v;
    CHECK_EQ_INT(l3_doc_get(d.buf, "/0", 2, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_INT && v.i == INT64_MAX);
    CHECK_EQ_INT(l3_doc_get(d.buf, "/1", 2, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_INT && v.i == INT64_MIN);
    CHECK_EQ_INT(l3_doc_get(d.buf, "/2", 2, L3_DOC_PATH_POINTER, &v), 0);
    CHECK((v.type == L3_DOC_INT && v.i == 0) || (v.type == L3_DOC_DOUBLE && v.d == 0.0) ||
          (v.type == L3_DOC_BIGNUM && v.str.len == 2));
    CHECK_EQ_INT(l3_doc_get(d.buf, "/4", 2, L3_DOC_PATH_POINTER, &v), 0);
    CHECK(v.type == L3_DOC_DOUBLE && v.d == 0.0 && signbit(v.d));
    char *out = dt_json(d.buf, L3_DOC_ROOT);
    /* -0.0 must keep its sign: "-0" or "-0.0" or "-0e0" all parse back as negative zero */
    CHECK(strstr(out, ",0.0,-0") != NULL || strstr(out, ",0,-0") != NULL || strstr(out, ",0e0,-0") != NULL);
    free(out);
    l3_doc_heap_free(&d);
}

/* Smallest number of significant digits that round-trips v. */
static int shortest_digits(double v)
{
    char tmp[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof(tmp), "%.*e", p - 1, v);
        if (strtod(tmp, NULL) == v)
            return p;
    }
    return 17;
}

static int sig_digits(const char *s)
{
    dt_dec_t x = dt_dec_parse(s, strlen(s));
    return x.ok ? (int)(x.nd ? x.nd : 1) : -1;
}

static void test_shortest_doubles(void)
{
    static const double vals[] = {0.1, 0.2, 0.3, 1.5, 1e21, 1e22, 1e-7, 123.456, 5e-324, DBL_MAX, DBL_MIN,
                                  2.2250738585072009e-308, 1.0 / 3.0, 2.0 / 3.0, -1e300, 9007199254740993.0,
                                  4.35, 0.000001, 1234567890123.4567, 6.02214076e23};
    uint64_t seed = t_seed();
    for (int i = 0; i < 2000; i++) {
        double v;
        if (i < (int)(sizeof(vals) / sizeof(vals[0]))) {
            v = vals[i];
        } else {
            uint64_t bits = t_rand(&seed);
            memcpy(&v, &bits, 8);
            if (!isfinite(v) || v == floor(v)) /* integral doubles may legitimately print as ints */
                continue;
        }
        l3_doc_t d = {0};
        CHECK_EQ_INT(l3_doc_heap_new(&d, 64), 0);
        l3_doc_scalar_t s = {.type = L3_DOC_DOUBLE, .d = v};
        CHECK_EQ_INT(L3_DOC_HEAP_DO(&d, l3_doc_set(&d, "", 0, 0, &s, NULL)), 0);
        char *out = dt_json(d.buf, L3_DOC_ROOT);
        char *end = NULL;
        double back = strtod(out, &end);
        bool ok = *end == '\0' && back == v && sig_digits(out) == shortest_digits(v) &&
                  l3_doc_check_json(out, strlen(out), NULL, NULL) == 0;
        if (!ok)
            fprintf(stderr, "double %.17g printed as '%s' (want %d significant digits)\n", v, out,
                    shortest_digits(v));
        CHECK(ok);
        free(out);
        l3_doc_heap_free(&d);
    }
}

/* ------------------------------------------------------------------ strings out */

static size_t minimal_escaped_len(const unsigned char *s, size_t n)
{
    size_t len = 2;
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
            len += 2;
        else if (c < 0x20)
            len += 6;
        else
            len += 1;
    }
    return len;
}

static void test_escaping(void)
{
    unsigned char all[256 + 16];
    size_t n = 0;
    for (unsigned c = 0; c < 0x80; c++)
        all[n++] = (unsigned char)c;
    const char *multi = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80/\xe2\x80\xa8\xe2\x80\xa9";
    memcpy(all + n, multi, strlen(multi));
    n += strlen(multi);
    l3_doc_t d = {0};
    CHECK_EQ_INT(l3_doc_heap_new(&d, 64), 0);
    CHECK_EQ_INT(dt_set_str(&d, "", (const char *)all, n), 0);
    size_t olen;
    char *out = dt_json_len(d.buf, L3_DOC_ROOT, &olen);
    CHECK_EQ_INT(olen, minimal_escaped_len(all, n));
    CHECK(strstr(out, "\\/") == NULL);
    CHECK(strstr(out, "\\u00") != NULL); /* controls escaped */
    /* parse back: the same bytes */
    l3_doc_t d2;
    dt_parse(&d2, out);
    l3_doc_val_t v;
    l3_doc_val(d2.buf, L3_DOC_ROOT, &v);
    CHECK(v.type == L3_DOC_STRING && v.str.len == n && memcmp(v.str.ptr, all, n) == 0);
    free(out);
    l3_doc_heap_free(&d2);
    l3_doc_heap_free(&d);
}

/* ------------------------------------------------------------------ depth */

/* depth nested arrays or objects: [[...[]...]] or {"a":{"a":...{}...}} */
static char *nested(size_t depth, int objects)
{
    char *s = malloc(depth * 6 + 8);
    size_t n = 0;
    for (size_t i = 0; i + 1 < depth; i++) {
        if (objects) {
            memcpy(s + n, "{\"a\":", 5);
            n += 5;
        } else {
            s[n++] = '[';
        }
    }
    s[n++] = objects ? '{' : '[';
    for (size_t i = 0; i < depth; i++)
        s[n++] = objects ? '}' : ']';
    s[n] = '\0';
    return s;
}

static int parse_depth(size_t depth, int objects, unsigned max, l3_doc_error_t *err, uint8_t **ret)
{
    char *s = nested(depth, objects);
    l3_doc_parse_opts_t o = {.max_depth = max};
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = l3_doc_from_json(s, strlen(s), &o, &buf, &len, err);
    int rc2 = l3_doc_check_json(s, strlen(s), &o, NULL);
    CHECK_EQ_INT(rc, rc2);
    if (rc == 0) {
        CHECK_EQ_INT(l3_doc_verify(buf, len, NULL), 0);
        char *out = dt_json(buf, L3_DOC_ROOT);
        CHECK_EQ_STR(out, s);
        free(out);
        l3_doc_stats_t st;
        l3_doc_stats(buf, &st);
        CHECK(st.max_depth + 1 >= depth && st.max_depth <= depth);
        if (ret)
            *ret = buf;
        else
            free(buf);
    }
    free(s);
    return rc;
}

static void test_depth(void)
{
    l3_doc_error_t err;
    for (int obj = 0; obj <= 1; obj++) {
        CHECK_EQ_INT(parse_depth(511, obj, 0, &err, NULL), 0);
        CHECK_EQ_INT(parse_depth(512, obj, 0, &err, NULL), 0);
        memset(&err, 0, sizeof(err));
        CHECK_EQ_INT(parse_depth(514, obj, 0, &err, NULL), L3_EDEPTH);
        size_t per = obj ? 5 : 1;
        CHECK(err.offset >= 511 * per && err.offset <= 514 * per);
        CHECK(err.msg != NULL);
        CHECK_EQ_INT(parse_depth(100000, obj, 0, &err, NULL), L3_EDEPTH);
        /* configurable */
        CHECK_EQ_INT(parse_depth(10, obj, 10, &err, NULL), 0);
        CHECK_EQ_INT(parse_depth(12, obj, 10, &err, NULL), L3_EDEPTH);
        CHECK_EQ_INT(parse_depth(1, obj, 1, &err, NULL), 0);
        CHECK_EQ_INT(parse_depth(3, obj, 1, &err, NULL), L3_EDEPTH);
        /* one limit: a parse may ask for less, never more */
        CHECK_EQ_INT(parse_depth(2000, obj, 2000, &err, NULL), L3_EDEPTH);
        /* capped at the hard maximum */
        CHECK_EQ_INT(parse_depth(L3_DOC_HARD_MAX_DEPTH, obj, 100000, &err, NULL), 0);
        CHECK_EQ_INT(parse_depth(L3_DOC_HARD_MAX_DEPTH + 2, obj, 100000, &err, NULL), L3_EDEPTH);
    }
    /* deep path through a deep document */
    uint8_t *buf = NULL;
    CHECK_EQ_INT(parse_depth(L3_DOC_MAX_DEPTH, 1, 1000, &err, &buf), 0);
    if (buf) {
        char path[L3_DOC_MAX_DEPTH * 2 + 1];
        for (int i = 0; i < L3_DOC_MAX_DEPTH - 1; i++)
            memcpy(path + 2 * i, "/a", 2);
        uint32_t slot;
        CHECK_EQ_INT(l3_doc_lookup(buf, path, 2 * (L3_DOC_MAX_DEPTH - 1), L3_DOC_PATH_POINTER, &slot), 0);
        char *out = dt_json(buf, slot);
        CHECK_EQ_STR(out, "{}");
        free(out);
        free(buf);
    }
    /* the depth limit counts arrays and objects alike, and scalars at the bottom are fine */
    CHECK_EQ_INT(l3_doc_check_json("[[[1]]]", 7, &(l3_doc_parse_opts_t){.max_depth = 3}, NULL), 0);
}

/* ------------------------------------------------------------------ misc API */

static void test_buf_and_append(void)
{
    l3_buf_t b = {0};
    CHECK_EQ_INT(l3_buf_reserve(&b, 10), 0);
    CHECK(b.cap >= 10 && b.ptr != NULL && b.len == 0);
    memcpy(b.ptr, "prefix:", 7);
    b.len = 7;
    CHECK_EQ_INT(l3_buf_reserve(&b, 100000), 0);
    CHECK(b.cap >= b.len + 100000);
    CHECK(memcmp(b.ptr, "prefix:", 7) == 0);
    l3_doc_t d;
    dt_parse(&d, "{\"k\":[1,\"two\",null]}");
    CHECK_EQ_INT(l3_doc_to_json(d.buf, L3_DOC_ROOT, &b), 0);
    CHECK_EQ_INT(l3_buf_reserve(&b, 1), 0);
    b.ptr[b.len] = 0;
    CHECK_EQ_STR(b.ptr, "prefix:{\"k\":[1,\"two\",null]}");
    free(b.ptr);
    l3_doc_heap_free(&d);

    /* a large document serialises through many reserves */
    size_t n = 20000;
    char *big = malloc(n * 12 + 16);
    size_t pos = 0;
    big[pos++] = '[';
    for (size_t i = 0; i < n; i++)
        pos += (size_t)sprintf(big + pos, "%s\"s%zu\"", i ? "," : "", i);
    big[pos++] = ']';
    big[pos] = 0;
    dt_parse(&d, big);
    DT_CHECK_JSON(d.buf, big);
    l3_doc_heap_free(&d);
    free(big);
}

static void test_errors_null_err(void)
{
    /* err is optional for check_json and verify */
    CHECK_EQ_INT(l3_doc_check_json("[", 1, NULL, NULL), L3_ESYNTAX);
    /* input is length-delimited, not NUL-terminated */
    uint8_t *buf = NULL;
    size_t len = 0;
    l3_doc_error_t err;
    CHECK_EQ_INT(l3_doc_from_json("[1]xxxx", 3, NULL, &buf, &len, &err), 0);
    free(buf);
    CHECK_EQ_INT(l3_doc_from_json("\"a\\u0000b\"", 10, NULL, &buf, &len, &err), 0);
    l3_doc_val_t v;
    l3_doc_val(buf, L3_DOC_ROOT, &v);
    CHECK(v.type == L3_DOC_STRING && v.str.len == 3 && memcmp(v.str.ptr, "a\0b", 3) == 0);
    free(buf);
    CHECK(l3_strerror(L3_ESYNTAX) != NULL);
}

/* ------------------------------------------------------------------ input bounds */

/*
 * The parser must never read past json+len: inputs are not NUL-terminated (HTTP bodies,
 * mmap'd files). Each input is placed at the very end of a page followed by an
 * inaccessible page, so an over-read crashes this test in every build, not only under ASan.
 * (Found by fuzz-json: a number ending exactly at the end of the input, "[0.1,1.52,25e-324",
 * made norm_decimal() in parse.c run strtol() past the buffer.) Run as the separate test
 * doc-parse-input-bounds (--input-bounds) so a crash here does not hide the other checks.
 */
static char *guard_base;
static size_t guard_page;

static const char *guarded(const char *text, size_t len)
{
    if (!guard_base) {
        guard_page = (size_t)sysconf(_SC_PAGESIZE);
        guard_base = mmap(NULL, 2 * guard_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (guard_base == MAP_FAILED || mprotect(guard_base + guard_page, guard_page, PROT_NONE) != 0)
            exit(T_HARNESS_ERROR);
    }
    if (len > guard_page)
        exit(T_HARNESS_ERROR);
    char *p = guard_base + guard_page - len;
    memcpy(p, text, len);
    return p;
}

static void parse_guarded(const char *text, size_t len)
{
    const char *g = guarded(text, len);
    uint8_t *buf = NULL;
    size_t blen = 0;
    l3_doc_error_t err;
    int rc = l3_doc_from_json(g, len, NULL, &buf, &blen, &err);
    CHECK_EQ_INT(l3_doc_check_json(g, len, NULL, &err), rc);
    if (rc == 0)
        free(buf);
}

static void test_input_bounds(void)
{
    static const char *ends[] = {
        "25e-324", "[0.1,1.52,25e-324", "1.5e3", "-1.5E+3", "0.1e1", "1e400", "1.25", "-0.5", "123",
        "-", "1.", "1e", "1e+", "\"abc", "\"\\u12", "\"\\ud800", "\"\\ud800\\u", "tru", "nul", "fals",
        "[1,2", "{\"a\":1", "{\"a\"", "\"\xe2\x82", "\"\xf0\x9f\x98", "12345678901234567890123",
        "0.1000000000000000055511151231257827", "[1e5", "{\"k\":2.5e-7",
    };
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
        parse_guarded(ends[i], strlen(ends[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        parse_guarded(bad[i].json, bad[i].len);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        parse_guarded(good[i].in, good[i].inlen);
    /* every prefix of a document full of numbers */
    const char *doc = "{\"a\":[0,-0,1.5,-2.5e-3,1E+2,123456789012345678901234567890,1e400,0.1],\"b\":\"\\u00e9\"}";
    for (size_t n = 0; n <= strlen(doc); n++)
        parse_guarded(doc, n);
}

/* ------------------------------------------------------------------ data files */

static char *slurp(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    size_t r;
    while ((r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            p = realloc(p, cap *= 2);
    }
    fclose(f);
    *ret_len = n;
    return p;
}

/* dir/valid/ *.json: parse, verify, serialise, parse again: same bytes; and the text must be
 * the same JSON as the input by jansson's reading. dir/invalid/ *.json: rejected by both
 * from_json and check_json, with the same offset inside the input. */
static int test_files(const char *dir)
{
    static const char *sub[] = {"valid", "invalid"};
    int files = 0;
    for (int k = 0; k < 2; k++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, sub[k]);
        DIR *dp = opendir(path);
        if (!dp) {
            fprintf(stderr, "cannot open %s\n", path);
            return T_HARNESS_ERROR;
        }
        struct dirent *de;
        while ((de = readdir(dp)) != NULL) {
            size_t nl = strlen(de->d_name);
            if (nl < 5 || strcmp(de->d_name + nl - 5, ".json") != 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s/%s", dir, sub[k], de->d_name);
            size_t len;
            char *json = slurp(path, &len);
            CHECK(json != NULL);
            if (!json)
                continue;
            files++;
            uint8_t *buf = NULL;
            size_t blen = 0;
            l3_doc_error_t err = {0}, err2 = {0};
            int rc = l3_doc_from_json(json, len, NULL, &buf, &blen, &err);
            int rc2 = l3_doc_check_json(json, len, NULL, &err2);
            if (k == 0) {
                if (rc != 0)
                    fprintf(stderr, "%s: rejected at %zu: %s\n", path, err.offset, err.msg);
                CHECK_EQ_INT(rc, 0);
                CHECK_EQ_INT(rc2, 0);
                if (rc == 0) {
                    CHECK_EQ_INT(l3_doc_verify(buf, blen, NULL), 0);
                    size_t ol;
                    char *out = dt_json_len(buf, L3_DOC_ROOT, &ol);
                    uint8_t *b2 = NULL;
                    size_t l2;
                    CHECK_EQ_INT(l3_doc_from_json(out, ol, NULL, &b2, &l2, &err), 0);
                    if (b2) {
                        size_t ol2;
                        char *out2 = dt_json_len(b2, L3_DOC_ROOT, &ol2);
                        CHECK(ol == ol2 && memcmp(out, out2, ol) == 0);
                        free(out2);
                        free(b2);
                    }
                    /* jansson agrees it is the same JSON (when jansson can represent it) */
                    json_error_t je;
                    json_t *a = json_loadb(json, len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &je);
                    json_t *b = json_loadb(out, ol, JSON_ALLOW_NUL | JSON_DECODE_ANY, &je);
                    if (a) {
                        CHECK(b != NULL && json_equal(a, b));
                        if (!(b && json_equal(a, b)))
                            fprintf(stderr, "%s: jansson sees a different value after the round trip: %.300s\n",
                                    path, out);
                    }
                    json_decref(a);
                    json_decref(b);
                    free(out);
                    free(buf);
                }
            } else {
                if (rc == 0)
                    fprintf(stderr, "%s: accepted but is invalid\n", path);
                CHECK(rc == L3_ESYNTAX || rc == L3_EDEPTH);
                CHECK_EQ_INT(rc2, rc);
                CHECK(err.offset <= len && err.offset == err2.offset && err.msg != NULL);
                if (rc == 0)
                    free(buf);
            }
            free(json);
        }
        closedir(dp);
    }
    CHECK(files > 10);
    fprintf(stderr, "%d data files\n", files);
    return t_done();
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--files") == 0)
        return test_files(argv[2]);
    if (argc == 2 && strcmp(argv[1], "--input-bounds") == 0) {
        test_input_bounds();
        return t_done();
    }
    test_bad();
    test_good();
    test_numbers();
    test_shortest_doubles();
    test_escaping();
    test_depth();
    test_buf_and_append();
    test_errors_null_err();
    return t_done();
}
