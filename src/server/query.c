/* SPDX-License-Identifier: MIT */
/*
 * query.c - query string, integer, entity-tag and media-type parsing on byte ranges.
 *
 * Pure functions (no allocation, no libh2o): the caller supplies the output memory. Every
 * loop is bounded by the length of its input.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/json.h"
#include "query.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool is(l3_q_str_t k, const char *lit)
{
    size_t n = strlen(lit);
    return k.len == n && memcmp(k.base, lit, n) == 0;
}

/* Percent-decode (and '+' -> ' ') s[0..n) into o. -1 on a malformed escape. */
static int qdecode(const char *s, size_t n, char *o, l3_q_str_t *ret)
{
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
    ret->base = o;
    ret->len = k;
    return 0;
}

long l3_q_path_decode(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[k++] = s[i];
            continue;
        }
        int hi, lo;
        if (n - i < 3 || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
            return -1;
        out[k++] = (char)(hi << 4 | lo);
        i += 2;
    }
    return (long)k;
}

bool l3_q_key_valid(const char *key, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return false;
    return l3_utf8_valid(key, n);
}

bool l3_q_next(const char **s, const char *end, l3_q_str_t *name, l3_q_str_t *value)
{
    const char *p = *s;
    if (p >= end)
        return false;
    const char *amp = memchr(p, '&', (size_t)(end - p));
    if (amp == NULL)
        amp = end;
    const char *eq = memchr(p, '=', (size_t)(amp - p));
    *name = (l3_q_str_t){p, (size_t)((eq ? eq : amp) - p)};
    *value = eq ? (l3_q_str_t){eq + 1, (size_t)(amp - eq - 1)} : (l3_q_str_t){NULL, 0};
    *s = amp + 1;
    return true;
}

int l3_q_parse(const char *s, size_t n, char *out, l3_query_t *q)
{
    memset(q, 0, sizeof(*q));
    const char *p = s, *end = s + n;
    l3_q_str_t k, raw, v;
    while (true) {
        const char *at = p;
        if (!l3_q_next(&p, end, &k, &raw))
            break;
        char *o = out + (at - s); /* a value decodes into no more bytes than it occupies */
        if (qdecode(raw.base ? raw.base : k.base + k.len, raw.len, o, &v) != 0)
            return -1;
        if (is(k, "op"))
            q->op = v;
        else if (is(k, "field") || is(k, "path")) {
            q->field = v;
            q->has_field = true;
        } else if (is(k, "val") || is(k, "value")) {
            q->val = v;
            q->has_val = true;
        } else if (is(k, "prefix"))
            q->prefix = v;
        else if (is(k, "limit"))
            q->limit = v;
        else if (is(k, "cursor"))
            q->cursor = v;
        else if (is(k, "index"))
            q->index = v;
        else if (is(k, "multi"))
            q->multi = v;
        else if (is(k, "create_parents"))
            q->create_parents = v;
        else if (is(k, "ttl"))
            q->ttl = v;
    }
    return 0;
}

/* Length of the JSON number (RFC 8259 section 6) at the start of s[0..n), integer part only
 * when int_only; 0 when s does not start with one. */
static size_t json_number_len(const char *s, size_t n, bool int_only)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
        return 0;
    if (s[i++] != '0')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    if (int_only)
        return i;
    if (i < n && s[i] == '.') {
        size_t d = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    return i;
}

bool l3_q_i64(const char *s, size_t n, int64_t *ret)
{
    if (n == 0 || n > 20 || json_number_len(s, n, true) != n)
        return false;
    char tmp[24];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    long long x = strtoll(tmp, NULL, 10);
    if (errno != 0)
        return false;
    *ret = x;
    return true;
}

bool l3_q_double(const char *s, size_t n, double *ret)
{
    char tmp[64];
    if (n == 0 || n >= sizeof(tmp) || json_number_len(s, n, false) != n)
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    double d = strtod(tmp, NULL);
    if (!(d - d == 0)) /* inf, nan */
        return false;
    *ret = d;
    return true;
}

bool l3_q_u64(const char *s, size_t n, uint64_t *ret)
{
    if (n == 0 || n > 20)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *ret = x;
    return true;
}

int l3_q_etag_matches(const char *v, size_t len, uint64_t lsn, bool exists)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i >= len)
            break;
        if (v[i] == '*') {
            if (exists)
                return 1;
            i++;
            continue;
        }
        if (len - i >= 2 && v[i] == 'W' && v[i + 1] == '/')
            i += 2;
        bool quoted = i < len && v[i] == '"';
        if (quoted)
            i++;
        size_t s = i;
        while (i < len && v[i] >= '0' && v[i] <= '9')
            i++;
        uint64_t n;
        if (exists && l3_q_u64(v + s, i - s, &n) && n == lsn && (!quoted || (i < len && v[i] == '"')))
            return 1;
        while (i < len && v[i] != ',')
            i++;
    }
    return 0;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

size_t l3_q_media_type(const char *v, size_t len, char *out)
{
    size_t n = 0;
    while (n < len && v[n] != ';')
        n++;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    size_t s = 0;
    while (s < n && (v[s] == ' ' || v[s] == '\t'))
        s++;
    for (size_t i = s; i < n; i++)
        out[i - s] = lower(v[i]);
    return n - s;
}

bool l3_q_contains_ci(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        size_t k = 0;
        while (k < n && lower(hay[i + k]) == lower(needle[k]))
            k++;
        if (k == n)
            return true;
    }
    return false;
}
