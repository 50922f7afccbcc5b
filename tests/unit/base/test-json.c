/* SPDX-License-Identifier: MIT */
/*
 * test-json.c - the shared JSON string escaper and UTF-8 validator (l3kv/json.h):
 * the escaping policy byte class by byte class, trusted and checked input giving the
 * same output on valid UTF-8, the bounded form never splitting a character, and the
 * validator against the RFC 3629 edge cases.
 */
#include "l3kv/json.h"
#include "t.h"

static const char *esc(const char *s, size_t n, unsigned flags)
{
    static char out[1024];
    char *e = l3_json_escape(out, s, n, flags);
    *e = '\0';
    return out;
}
#define ESC(lit) esc(lit, sizeof(lit) - 1, 0)

static void test_policy(void)
{
    CHECK_EQ_STR(ESC("plain"), "plain");
    CHECK_EQ_STR(ESC("a\"b\\c"), "a\\\"b\\\\c");
    CHECK_EQ_STR(ESC("\b\f\n\r\t"), "\\b\\f\\n\\r\\t");
    CHECK_EQ_STR(ESC("\x01\x1f"), "\\u0001\\u001f");
    CHECK_EQ_STR(esc("a\0b", 3, 0), "a\\u0000b");
    CHECK_EQ_STR(ESC("\x7f"), "\x7f");
    CHECK_EQ_STR(ESC("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    CHECK_EQ_STR(ESC("\xff"), "\\u00ff");
    CHECK_EQ_STR(ESC("\xc3"), "\\u00c3");                                  /* truncated sequence */
    CHECK_EQ_STR(ESC("\xc0\xaf"), "\\u00c0\\u00af");                       /* overlong */
    CHECK_EQ_STR(ESC("\xed\xa0\x80"), "\\u00ed\\u00a0\\u0080");            /* surrogate */
    CHECK_EQ_STR(ESC("\xf4\x90\x80\x80"), "\\u00f4\\u0090\\u0080\\u0080"); /* > U+10FFFF */
    /* long runs take the 16-byte path: the same policy */
    CHECK_EQ_STR(ESC("0123456789abcdef0123456789abcdef\"\xff"),
                 "0123456789abcdef0123456789abcdef\\\"\\u00ff");
    CHECK_EQ_STR(ESC("0123456789abcde\xc3\xa9"
                     "0123456789abcdef"),
                 "0123456789abcde\xc3\xa9"
                 "0123456789abcdef");
}

static void test_trusted_same(void)
{
    uint64_t st = t_seed();
    static const char *pieces[] = {
        "a", "\"", "\\", "\n", "\x01", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "0123456789abcdef"};
    for (int round = 0; round < 2000; round++) {
        char in[160];
        size_t n = 0;
        while (n < 120) {
            const char *p = pieces[t_rand(&st) % (sizeof(pieces) / sizeof(pieces[0]))];
            memcpy(in + n, p, strlen(p));
            n += strlen(p);
        }
        CHECK(l3_utf8_valid(in, n));
        char a[1024], b[1024];
        char *ea = l3_json_escape(a, in, n, 0), *eb = l3_json_escape(b, in, n, L3_JSON_TRUSTED);
        CHECK(ea - a == eb - b && memcmp(a, b, (size_t)(ea - a)) == 0);
        /* the bounded form gives a prefix that ends on a character boundary */
        size_t cap = t_rand(&st) % 200;
        char c[1024];
        size_t w = l3_json_escape_n(c, cap, in, n);
        CHECK(w <= cap && memcmp(a, c, w) == 0);
        CHECK(w == (size_t)(ea - a) || w + 6 > cap);
        CHECK(l3_utf8_valid(c, w));
    }
}

static void test_bounded(void)
{
    char out[16];
    CHECK_EQ_INT(l3_json_escape_n(out, 3, "ab\"", 3), 2); /* the escape does not fit */
    CHECK_EQ_INT(l3_json_escape_n(out, 4, "ab\"", 3), 4);
    CHECK_EQ_INT(l3_json_escape_n(out, 2, "a\xc3\xa9", 3), 1); /* never half a character */
    CHECK_EQ_INT(l3_json_escape_n(out, 6, "\xff", 1), 6);
    CHECK_EQ_INT(l3_json_escape_n(out, 5, "\xff", 1), 0);
}

static void test_validator(void)
{
#define V(lit) l3_utf8_valid(lit, sizeof(lit) - 1)
    CHECK(V(""));
    CHECK(V("ascii \x01\x7f"));
    CHECK(V("\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"));
    CHECK(!V("\x80"));
    CHECK(!V("\xc1\xbf"));
    CHECK(!V("\xe0\x9f\xbf"));
    CHECK(!V("\xed\xa0\x80"));
    CHECK(!V("\xf0\x8f\xbf\xbf"));
    CHECK(!V("\xf4\x90\x80\x80"));
    CHECK(!V("\xf5\x80\x80\x80"));
    CHECK(!V("abcdefgh\xe2\x82"));
#undef V
}

int main(void)
{
    test_policy();
    test_trusted_same();
    test_bounded();
    test_validator();
    return t_done();
}
