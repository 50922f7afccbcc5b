/* SPDX-License-Identifier: MIT */
/*
 * parse.c - JSON text -> document, in one pass, with no intermediate tree.
 *
 * Owns: l3_doc_from_json, l3_doc_check_json. Runs in any process; no shared state.
 *
 * Values are appended to the output buffer as they are read. Members of the objects
 * and arrays still open wait on a scratch stack (32-byte entries / 16-byte slots); when
 * a container closes, its node, entry array and hash table are written out and its
 * scratch frame is popped. So memory is the output plus the open containers' direct
 * members - never a tree.
 *
 * Strictness (RFC 8259): no trailing commas, no comments, no leading zeros, no "+1",
 * ".5", "1.", NaN or Infinity; strings must be valid UTF-8 (no overlongs, no encoded
 * surrogates, nothing above U+10FFFF) with no raw control characters; \u escapes must
 * pair surrogates. Duplicate names: last value wins, at the first name's position.
 * Numbers: int64 when they fit; doubles when the double prints back as the same decimal
 * value; anything else (huge integers, excess precision, out of range) is kept as
 * exact decimal text (BIGNUM).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/error.h"
#include "packed.h"
#include "l3kv/json.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Pending members a small document needs (32 entries) without a heap block of its own */
#define SCR_LOCAL_BYTES 1024u

typedef struct {
    const char *start, *p, *end;
    uint8_t *buf; /* output; NULL when only checking */
    size_t used, cap;
    size_t max_bytes;   /* largest output allowed (L3_EDOCSIZE beyond) */
    uint8_t *scr;       /* scratch stack of pending members: scr_local, or the heap once it outgrows it */
    uint8_t *scr_local; /* SCR_LOCAL_BYTES on the caller's stack (not zeroed: only written before read) */
    size_t scr_len, scr_cap;
    unsigned depth, max_depth;
    uint32_t seed;
    uint64_t garbage; /* bytes lost to duplicate names */
    bool packed;      /* writing the packed form (l3_doc_pack_json) into buf, cap bytes */
    int rc;
    const char *msg;
    size_t err_off;
} parser_t;

/* cold, like the full form's object builder below (noinline): both stay out of the packed
 * path's code, which a small PUT runs with cold caches */
__attribute__((cold)) static int fail(parser_t *ps, const char *at, int rc, const char *msg)
{
    if (ps->rc == 0) {
        ps->rc = rc;
        ps->msg = msg;
        ps->err_off = (size_t)(at - ps->start);
    }
    return rc;
}

/* ------------------------------------------------------------------ output buffer */

static int out_reserve(parser_t *ps, size_t extra)
{
    if (ps->used + extra <= ps->cap)
        return 0;
    if (ps->packed) /* the caller's fixed buffer: it does not pack */
        return fail(ps, ps->p, L3_ETOOBIG, "larger than the packed form holds");
    size_t need = ps->used + extra;
    if (need > DOC_MAX_SIZE)
        return fail(ps, ps->p, L3_ETOOBIG, "document exceeds 4 GiB");
    if (need > ps->max_bytes)
        return fail(ps, ps->p, L3_EDOCSIZE, "document exceeds the size limit");
    size_t ncap = ps->cap * 2;
    if (ncap < need)
        ncap = need;
    if (ncap > ps->max_bytes)
        ncap = ps->max_bytes;
    uint8_t *nb = realloc(ps->buf, ncap);
    if (!nb)
        return fail(ps, ps->p, -ENOMEM, "out of memory");
    ps->buf = nb;
    ps->cap = ncap;
    return 0;
}

/* Append n bytes (n multiple of 8) and return their offset; caller reserved. */
static inline uint32_t out_alloc(parser_t *ps, size_t n)
{
    uint32_t off = (uint32_t)ps->used;
    ps->used += n;
    return off;
}

static int scr_reserve(parser_t *ps, size_t extra)
{
    if (ps->scr_len + extra <= ps->scr_cap)
        return 0;
    if (ps->scr == NULL) {
        ps->scr = ps->scr_local;
        ps->scr_cap = SCR_LOCAL_BYTES;
        if (ps->scr_len + extra <= ps->scr_cap)
            return 0;
    }
    size_t ncap = ps->scr_cap * 2;
    while (ncap < ps->scr_len + extra)
        ncap *= 2;
    bool local = ps->scr == ps->scr_local;
    uint8_t *n = realloc(local ? NULL : ps->scr, ncap);
    if (!n)
        return fail(ps, ps->p, -ENOMEM, "out of memory");
    if (local)
        memcpy(n, ps->scr_local, ps->scr_len);
    ps->scr = n;
    ps->scr_cap = ncap;
    return 0;
}

/* Append one entry or slot (n bytes) to the scratch stack of the open containers. */
static int scr_push(parser_t *ps, const void *item, size_t n)
{
    if (scr_reserve(ps, n))
        return ps->rc;
    memcpy(ps->scr + ps->scr_len, item, n);
    ps->scr_len += n;
    return 0;
}

/* The index after the run of decimal digits starting at i. */
static inline size_t digits_end(const char *s, size_t i, size_t len)
{
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

/* Is [s, s+len) a JSON number (RFC 8259: -?int frac? exp?)? The text of a bignum. */
bool l3_doc__number_valid(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && s[i] == '-')
        i++;
    if (i >= len || s[i] < '0' || s[i] > '9')
        return false;
    i = s[i] == '0' ? i + 1 : digits_end(s, i, len);
    if (i < len && s[i] == '.') {
        size_t st = i + 1;
        if ((i = digits_end(s, st, len)) == st)
            return false;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t st = i;
        if ((i = digits_end(s, st, len)) == st)
            return false;
    }
    return i == len;
}

/* ------------------------------------------------------------------ lexing helpers */

static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

bool l3_doc__utf8_valid(const uint8_t *p, size_t len)
{
    return l3_utf8_valid(p, len); /* the shared validator, l3kv/json.h */
}

static inline int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int read_hex4(const char *p, const char *end, unsigned *ret)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *ret = v;
    return 0;
}

/*
 * Scan a string body starting after the opening quote. Finds the closing quote and
 * reports whether the body is "clean" (no escapes, pure ASCII) so it can be copied
 * verbatim. Rejects raw control characters. Returns the closing quote or NULL.
 */
static const char *scan_string(parser_t *ps, const char *p, bool *ret_clean)
{
    const char *end = ps->end;
    bool clean = true;
    for (;;) {
#if defined(__SSE2__)
        while (end - p >= 16) {
            __m128i c = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i m = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(c, _mm_set1_epi8('"')), _mm_cmpeq_epi8(c, _mm_set1_epi8('\\'))),
                _mm_cmplt_epi8(c, _mm_set1_epi8(0x20)));
            unsigned mask = (unsigned)_mm_movemask_epi8(m);
            if (mask == 0) {
                p += 16;
                continue;
            }
            p += __builtin_ctz(mask);
            break;
        }
#endif
        while (p < end) {
            unsigned char c = (unsigned char)*p;
            if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
                break;
            p++;
        }
        if (p >= end) {
            fail(ps, p, L3_ESYNTAX, "unterminated string");
            return NULL;
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *ret_clean = clean;
            return p;
        }
        if (c == '\\') {
            clean = false;
            if (end - p < 2) {
                fail(ps, p, L3_ESYNTAX, "unterminated string");
                return NULL;
            }
            p += 2;
            continue;
        }
        if (c < 0x20) {
            fail(ps, p, L3_ESYNTAX, "control character in string");
            return NULL;
        }
        /* >= 0x80: validated during the copy */
        clean = false;
        p++;
    }
}

/* Decode a string body [p, q) into dst (room for q - p bytes). Returns length or -1. */
static long decode_string(parser_t *ps, const char *p, const char *q, uint8_t *dst)
{
    uint8_t *o = dst;
    while (p < q) {
        unsigned char c = (unsigned char)*p;
        if (c == '\\') {
            char e = p[1];
            p += 2;
            switch (e) {
            case '"':
                *o++ = '"';
                break;
            case '\\':
                *o++ = '\\';
                break;
            case '/':
                *o++ = '/';
                break;
            case 'b':
                *o++ = '\b';
                break;
            case 'f':
                *o++ = '\f';
                break;
            case 'n':
                *o++ = '\n';
                break;
            case 'r':
                *o++ = '\r';
                break;
            case 't':
                *o++ = '\t';
                break;
            case 'u': {
                unsigned u;
                if (read_hex4(p, q, &u) < 0) {
                    fail(ps, p - 2, L3_ESYNTAX, "invalid \\u escape");
                    return -1;
                }
                p += 4;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    unsigned lo;
                    if (q - p < 6 || p[0] != '\\' || p[1] != 'u' || read_hex4(p + 2, q, &lo) < 0 ||
                        lo < 0xDC00 || lo > 0xDFFF) {
                        fail(ps, p - 6, L3_ESYNTAX, "lone surrogate in \\u escape");
                        return -1;
                    }
                    p += 6;
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    fail(ps, p - 6, L3_ESYNTAX, "lone surrogate in \\u escape");
                    return -1;
                }
                if (u < 0x80) {
                    *o++ = (uint8_t)u;
                } else if (u < 0x800) {
                    *o++ = (uint8_t)(0xC0 | (u >> 6));
                    *o++ = (uint8_t)(0x80 | (u & 0x3F));
                } else if (u < 0x10000) {
                    *o++ = (uint8_t)(0xE0 | (u >> 12));
                    *o++ = (uint8_t)(0x80 | ((u >> 6) & 0x3F));
                    *o++ = (uint8_t)(0x80 | (u & 0x3F));
                } else {
                    *o++ = (uint8_t)(0xF0 | (u >> 18));
                    *o++ = (uint8_t)(0x80 | ((u >> 12) & 0x3F));
                    *o++ = (uint8_t)(0x80 | ((u >> 6) & 0x3F));
                    *o++ = (uint8_t)(0x80 | (u & 0x3F));
                }
                break;
            }
            default:
                fail(ps, p - 2, L3_ESYNTAX, "invalid escape");
                return -1;
            }
        } else if (c >= 0x80) {
            int n = (int)l3_utf8_seq((const uint8_t *)p, (size_t)(q - p));
            if (!n) {
                fail(ps, p, L3_ESYNTAX, "invalid UTF-8");
                return -1;
            }
            memcpy(o, p, (size_t)n);
            o += n;
            p += n;
        } else {
            /* copy a run of plain bytes */
            const char *r = p + 1;
            while (r < q && *r != '\\' && (unsigned char)*r < 0x80)
                r++;
            memcpy(o, p, (size_t)(r - p));
            o += r - p;
            p = r;
        }
    }
    return o - dst;
}

/* ------------------------------------------------------------------ numbers */

static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Normalise decimal text to (significant digits, exponent): value = 0.DIGITS * 10^exp. */
static int norm_decimal(const char *s, size_t len, char *digits, size_t cap, long *ret_exp)
{
    size_t nd = 0;
    long exp = 0;
    bool seen_point = false, started = false;
    size_t i = 0;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    for (; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            seen_point = true;
            continue;
        }
        if (c == 'e' || c == 'E') {
            /* the text is not NUL terminated: read the exponent within len */
            size_t j = i + 1;
            bool eneg = false;
            if (j < len && (s[j] == '+' || s[j] == '-'))
                eneg = s[j++] == '-';
            long e = 0;
            for (; j < len && s[j] >= '0' && s[j] <= '9'; j++)
                if (e < 100000000)
                    e = e * 10 + (s[j] - '0');
            exp += eneg ? -e : e;
            break;
        }
        if (c == '0' && !started) {
            if (seen_point)
                exp--;
            continue;
        }
        started = true;
        if (nd < cap)
            digits[nd++] = c;
        if (!seen_point)
            exp++;
    }
    while (nd > 0 && digits[nd - 1] == '0')
        nd--;
    *ret_exp = nd ? exp : 0;
    return (int)nd;
}

/* Does the double print back (shortest form) as the same decimal value as the text? */
static bool double_exact(const char *s, size_t len, double d)
{
    char a[800], b[40], buf[40];
    long ea, eb;
    size_t n = l3_doc__fmt_double(d, buf);
    int na = norm_decimal(s, len, a, sizeof(a), &ea);
    if (na > 17)
        return false;
    int nb = norm_decimal(buf, n, b, sizeof(b), &eb);
    return na == nb && ea == eb && memcmp(a, b, (size_t)na) == 0;
}

/* The double a number's text stands for, when it round-trips exactly (value = m *
 * 10^(e10 + exp), nd digits in m, no dropped non-zero digit). */
static bool number_double(const char *s, size_t tlen, bool neg, uint64_t m, int nd, int e10, long exp,
                          double *ret)
{
    /* strip trailing zeros to count significant digits */
    while (m != 0 && m % 10 == 0) {
        m /= 10;
        e10++;
        nd--;
    }
    long e = (long)e10 + exp;
    double d = 0.0;
    bool have = false;
    if (m == 0) {
        have = true;
    } else if (m <= (1ull << 53) && e >= -22 && e <= 22) {
        d = e < 0 ? (double)m / p10[-e] : (double)m * p10[e];
        have = true;
    }
    if (!have) {
        char tmp[128];
        if (tlen < sizeof(tmp)) {
            /* strtod on the magnitude: the sign is applied below like the fast path */
            size_t skip = neg ? 1 : 0;
            memcpy(tmp, s + skip, tlen - skip);
            tmp[tlen - skip] = 0;
            d = strtod(tmp, NULL);
            have = true;
        }
    }
    if (!have || !isfinite(d) || (m != 0 && d == 0.0))
        return false;
    bool exact = (nd <= 15 && fabs(d) >= 2.2250738585072014e-308) || m == 0 || double_exact(s, tlen, d);
    if (!exact)
        return false;
    *ret = neg ? -d : d;
    return true;
}

/* A number kept as its text (BIGNUM): a string block when building. Returns p. */
static const char *number_bignum(parser_t *ps, const char *s, size_t tlen, const char *p, uint64_t *ret_val,
                                 uint8_t *ret_type)
{
    /* BIGNUM: keep the text (integers beyond int64 always land here, so they print as integers) */
    *ret_type = L3_DOC_BIGNUM;
    if (ps->packed) {
        if (tlen > L3_DOC_PACKED_MAX || out_reserve(ps, l3_doc__text_head_len(false, (uint32_t)tlen) + tlen))
            return fail(ps, s, L3_ETOOBIG, "larger than the packed form holds"), NULL;
        ps->used = (size_t)(l3_doc__put_text_head(ps->buf + ps->used, false, (uint32_t)tlen) - ps->buf);
        memcpy(ps->buf + ps->used, s, tlen);
        ps->used += tlen;
        *ret_val = 0;
    } else if (ps->buf) {
        if (tlen > UINT32_MAX - 16 || out_reserve(ps, 8 + a8(tlen)))
            return fail(ps, s, L3_ETOOBIG, "number too long"), NULL;
        uint32_t off = out_alloc(ps, 8 + a8(tlen));
        dstr_t *str = AT(ps->buf, off, dstr_t);
        str->cap = a8(tlen);
        str->len = (uint32_t)tlen;
        memcpy(str + 1, s, tlen);
        memset((uint8_t *)(str + 1) + tlen, 0, a8(tlen) - tlen);
        *ret_val = off;
    } else {
        *ret_val = 0;
    }
    return p;
}

/*
 * Parse a number at p. Sets the value and its type; for BIGNUM writes a string block (when
 * building). Returns the end of the number or NULL.
 */
static const char *parse_number(parser_t *ps, const char *p, uint64_t *ret_val, uint8_t *ret_type)
{
    const char *s = p, *end = ps->end;
    bool neg = false;
    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= end || (unsigned)(*p - '0') > 9) {
        fail(ps, s, L3_ESYNTAX, "invalid number");
        return NULL;
    }
    uint64_t m = 0;
    int nd = 0;  /* digits accumulated in m (leading zeros excluded) */
    int e10 = 0; /* value = m * 10^e10 (ignoring dropped digits) */
    bool dropped_nz = false;
    bool is_int = true;
    if (*p == '0') {
        p++;
        if (p < end && (unsigned)(*p - '0') <= 9) {
            fail(ps, s, L3_ESYNTAX, "leading zero in number");
            return NULL;
        }
    } else {
        while (p < end && (unsigned)(*p - '0') <= 9) {
            if (nd < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                nd++;
            } else {
                e10++;
                if (*p != '0')
                    dropped_nz = true;
            }
            p++;
        }
    }
    if (p < end && *p == '.') {
        is_int = false;
        p++;
        if (p >= end || (unsigned)(*p - '0') > 9) {
            fail(ps, p, L3_ESYNTAX, "digit expected after decimal point");
            return NULL;
        }
        while (p < end && (unsigned)(*p - '0') <= 9) {
            if (m == 0 && *p == '0') {
                e10--;
            } else if (nd < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                nd++;
                e10--;
            } else if (*p != '0') {
                dropped_nz = true;
            }
            p++;
        }
    }
    long exp = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_int = false;
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end || (unsigned)(*p - '0') > 9) {
            fail(ps, p, L3_ESYNTAX, "digit expected in exponent");
            return NULL;
        }
        while (p < end && (unsigned)(*p - '0') <= 9) {
            if (exp < 100000000)
                exp = exp * 10 + (*p - '0');
            p++;
        }
        if (eneg)
            exp = -exp;
    }
    size_t tlen = (size_t)(p - s);

    if (is_int && !dropped_nz && e10 == 0) {
        if (!neg && m <= (uint64_t)INT64_MAX) {
            *ret_val = m;
            *ret_type = L3_DOC_INT;
            return p;
        }
        if (neg && m <= (uint64_t)INT64_MAX + 1) {
            *ret_val = (uint64_t)0 - m;
            *ret_type = L3_DOC_INT;
            return p;
        }
    }
    double d;
    if (!is_int && !dropped_nz && number_double(s, tlen, neg, m, nd, e10, exp, &d)) {
        memcpy(ret_val, &d, 8);
        *ret_type = L3_DOC_DOUBLE;
        return p;
    }
    return number_bignum(ps, s, tlen, p, ret_val, ret_type);
}

/* ------------------------------------------------------------------ packed output
 *
 * l3_doc_pack_json writes the packed form (packed.h) as it reads, into a fixed buffer: a
 * value's bytes follow its tag at once, a container's count and size are filled in at its
 * close. Whatever the packed form cannot hold (more than L3_DOC_PACKED_MAX bytes, or
 * members or elements than its bounds, or a duplicate name, whose "last value wins at the
 * first position" the full form's builder applies) fails the attempt; so does any error,
 * and the caller then parses with l3_doc_from_json, which reports it. */

/* A string body [p+1, q) (clean: copied as is) as packed text: a member name (var length,
 * bytes) or a string value (short tag, or tag and var length, then the bytes). Its header
 * is sized for the raw length and moved down when decoding shortened it. *ret_name gets the
 * offset of the decoded bytes and *ret_n their length. */
static int pk_text(parser_t *ps, const char *p, const char *q, bool clean, bool name, uint32_t *ret_name,
                   uint32_t *ret_n)
{
    size_t raw = (size_t)(q - (p + 1));
    if (raw > L3_DOC_PACKED_MAX)
        return fail(ps, p, L3_ETOOBIG, "larger than the packed form holds");
    uint32_t hdr = name ? l3_doc__var_len((uint32_t)raw) : l3_doc__text_head_len(true, (uint32_t)raw);
    if (out_reserve(ps, hdr + raw))
        return ps->rc;
    uint8_t *dst = ps->buf + ps->used + hdr;
    long n = (long)raw;
    if (clean)
        memcpy(dst, p + 1, raw);
    else if ((n = decode_string(ps, p + 1, q, dst)) < 0)
        return ps->rc;
    uint32_t len = (uint32_t)n, h2 = name ? l3_doc__var_len(len) : l3_doc__text_head_len(true, len);
    uint8_t *at = ps->buf + ps->used;
    if (h2 < hdr)
        memmove(at + h2, dst, len);
    if (name)
        l3_doc__put_var(at, len);
    else
        l3_doc__put_text_head(at, true, len);
    *ret_name = (uint32_t)ps->used + h2;
    *ret_n = len;
    ps->used += h2 + len;
    return 0;
}

/* A scalar the token parser left as a value (null, bool, int, double). */
static int pk_scalar(parser_t *ps, uint64_t val, uint8_t type)
{
    if (out_reserve(ps, 9))
        return ps->rc;
    ps->used = (size_t)(l3_doc__put_scalar(ps->buf + ps->used, val, type) - ps->buf);
    return 0;
}

/* Open a packed container: tag, a one-byte count and the size, filled in by pk_close. */
static int pk_open(parser_t *ps, uint8_t tag, uint32_t *ret_body)
{
    if (out_reserve(ps, 4))
        return ps->rc;
    ps->buf[ps->used] = tag;
    ps->used += 4;
    *ret_body = (uint32_t)ps->used;
    return 0;
}

static int pk_close(parser_t *ps, uint32_t body, uint32_t count)
{
    if (count >= 0x80) { /* a two-byte count (at most L3_DOC_PACKED_ITEMS): the members move up one */
        if (out_reserve(ps, 1))
            return ps->rc;
        memmove(ps->buf + body + 1, ps->buf + body, ps->used - body);
        ps->used++;
        body++;
        l3_doc__put_var(ps->buf + body - 4, count);
    } else {
        ps->buf[body - 3] = (uint8_t)count;
    }
    uint32_t size = (uint32_t)ps->used - body;
    l3_doc__put_u16(ps->buf + body - 2, size);
    return 0;
}

/* ------------------------------------------------------------------ values */

static const char *parse_value(parser_t *ps, const char *p, uint64_t *ret_val, uint8_t *ret_type);

/* Parse a string at p (the opening quote). As a value: string block. As a name: entry name. */
static const char *parse_string_value(parser_t *ps, const char *p, uint64_t *ret_val)
{
    bool clean;
    const char *q = scan_string(ps, p + 1, &clean);
    if (!q)
        return NULL;
    size_t raw = (size_t)(q - (p + 1));
    if (ps->packed) {
        uint32_t at, n;
        *ret_val = 0;
        return pk_text(ps, p, q, clean, false, &at, &n) ? NULL : q + 1;
    }
    if (!ps->buf) {
        if (!clean) {
            uint8_t small[256];
            uint8_t *tmp = raw <= sizeof(small) ? small : malloc(raw);
            if (!tmp)
                return fail(ps, p, -ENOMEM, "out of memory"), NULL;
            long n = decode_string(ps, p + 1, q, tmp);
            if (tmp != small)
                free(tmp);
            if (n < 0)
                return NULL;
        }
        *ret_val = 0;
        return q + 1;
    }
    if (raw > UINT32_MAX - 16 || out_reserve(ps, 8 + a8(raw)))
        return fail(ps, p, L3_ETOOBIG, "string too long"), NULL;
    uint32_t off = (uint32_t)ps->used;
    dstr_t *str = AT(ps->buf, off, dstr_t);
    uint8_t *dst = (uint8_t *)(str + 1);
    long n;
    if (clean) {
        memcpy(dst, p + 1, raw);
        n = (long)raw;
    } else {
        n = decode_string(ps, p + 1, q, dst);
        if (n < 0)
            return NULL;
    }
    uint32_t cap = a8((uint64_t)n);
    memset(dst + n, 0, cap - (size_t)n);
    str->cap = cap;
    str->len = (uint32_t)n;
    ps->used += 8 + cap;
    *ret_val = off;
    return q + 1;
}

/* Parse a member name into the entry e (inline or appended name bytes). */
static const char *parse_name(parser_t *ps, const char *p, dentry_t *e)
{
    bool clean;
    const char *q = scan_string(ps, p + 1, &clean);
    if (!q)
        return NULL;
    size_t raw = (size_t)(q - (p + 1));
    if (ps->packed) { /* e->koff, e->klen: where the name went */
        memset(e, 0, sizeof(*e));
        return pk_text(ps, p, q, clean, true, &e->koff, &e->klen) ? NULL : q + 1;
    }
    uint8_t small[KEY_INLINE_MAX + 8];
    uint8_t *dst;
    uint32_t off = 0;
    if (!ps->buf) {
        if (!clean) {
            uint8_t *tmp = malloc(raw ? raw : 1);
            if (!tmp)
                return fail(ps, p, -ENOMEM, "out of memory"), NULL;
            long n = decode_string(ps, p + 1, q, tmp);
            free(tmp);
            if (n < 0)
                return NULL;
        }
        return q + 1;
    }
    if (raw <= KEY_INLINE_MAX) {
        dst = small;
    } else {
        if (raw > UINT32_MAX - 16 || out_reserve(ps, a8(raw)))
            return fail(ps, p, L3_ETOOBIG, "name too long"), NULL;
        off = (uint32_t)ps->used;
        dst = ps->buf + off;
    }
    long n;
    if (clean) {
        memcpy(dst, p + 1, raw);
        n = (long)raw;
    } else {
        n = decode_string(ps, p + 1, q, dst);
        if (n < 0)
            return NULL;
    }
    memset(e, 0, sizeof(*e));
    e->klen = (uint32_t)n;
    if ((size_t)n <= KEY_INLINE_MAX) {
        memcpy(e->kin, dst, (size_t)n);
    } else {
        /* raw > 12 here, the bytes are at off */
        memset(dst + n, 0, a8((uint64_t)n) - (size_t)n);
        ps->used += a8((uint64_t)n);
        e->koff = off;
    }
    e->hash = l3_doc__hash(ps->seed, l3_doc__ekey(ps->buf, e), (size_t)n);
    return q + 1;
}

__attribute__((noinline)) static int finish_object(parser_t *ps, size_t base, const char *at,
                                                   uint64_t *ret_val)
{
    dentry_t *ents = (dentry_t *)(void *)(ps->scr + base);
    size_t n = (ps->scr_len - base) / sizeof(dentry_t);
    if (!ps->buf) {
        ps->scr_len = base;
        *ret_val = 0;
        return 0;
    }
    /* duplicate names: last value wins at the first position */
    size_t live = n;
    if (n > 1) {
        if (n <= HASH_MIN_CAP) {
            for (size_t i = 1; i < n; i++) {
                for (size_t j = 0; j < i; j++) {
                    if (ents[j].type != T_DELETED && ents[j].hash == ents[i].hash &&
                        ents[j].klen == ents[i].klen &&
                        memcmp(l3_doc__ekey(ps->buf, &ents[j]), l3_doc__ekey(ps->buf, &ents[i]),
                               ents[i].klen) == 0) {
                        ps->garbage += l3_doc__storage_size(ps->buf, ents[j].val, ents[j].type);
                        if (ents[i].klen > KEY_INLINE_MAX)
                            ps->garbage += a8(ents[i].klen);
                        ents[j].val = ents[i].val;
                        ents[j].type = ents[i].type;
                        ents[i].type = T_DELETED;
                        live--;
                        break;
                    }
                }
            }
        }
    }
    size_t bytes = (size_t)l3_doc__obj_bytes((uint32_t)live);
    if (out_reserve(ps, bytes))
        return ps->rc;
    ents = (dentry_t *)(void *)(ps->scr + base);
    uint32_t off = out_alloc(ps, bytes);
    dobj_t *o = AT(ps->buf, off, dobj_t);
    l3_doc__obj_layout(ps->buf, o, off + (uint32_t)sizeof(dobj_t), (uint32_t)live);
    if (o->hcap) {
        dentry_t *tab = AT(ps->buf, o->eoff, dentry_t);
        uint32_t *ord = AT(ps->buf, o->ooff, uint32_t);
        uint32_t hcap = o->hcap;
        for (size_t i = 0; i < n; i++) {
            dentry_t *e = &ents[i];
            if (e->type == T_DELETED)
                continue;
            const uint8_t *k = l3_doc__ekey(ps->buf, e);
            uint32_t h = l3_doc__home(e->hash, hcap), dist = 0;
            bool dup = false;
            while (tab[h].type != T_EMPTY) {
                /* past the probe bound: names crafted against this seed (or very bad
                 * luck): the whole parse is redone under a fresh one */
                if (dist++ == L3_DOC_MAX_PROBE)
                    return fail(ps, at, L3_EREHASH, "member name hash chain too long");
                dentry_t *x = &tab[h];
                if (x->hash == e->hash && x->klen == e->klen &&
                    memcmp(l3_doc__ekey(ps->buf, x), k, e->klen) == 0) {
                    /* duplicate name: the last value wins, at the first position */
                    ps->garbage += l3_doc__storage_size(ps->buf, x->val, x->type);
                    if (e->klen > KEY_INLINE_MAX)
                        ps->garbage += a8(e->klen);
                    x->val = e->val;
                    x->type = e->type;
                    dup = true;
                    break;
                }
                h = l3_doc__probe_next(h, hcap);
            }
            if (dup)
                continue;
            /* late duplicates leave the tail of the order array as unused capacity */
            tab[h] = *e;
            ord[o->n++] = h;
        }
        o->count = o->n;
    } else {
        for (size_t i = 0; i < n; i++)
            if (ents[i].type != T_DELETED)
                l3_doc__obj_put(ps->buf, o, &ents[i]);
    }
    ps->scr_len = base;
    *ret_val = off;
    return 0;
}

/* After a member or element: ',' goes on to the next one (a trailing comma before
 * `close` is an error), `close` ends the container (*ret_end). Returns the position after
 * the separator, or NULL on a syntax error. */
static const char *after_member(parser_t *ps, const char *p, char close, bool *ret_end)
{
    p = skip_ws(p, ps->end);
    if (p < ps->end && *p == ',') {
        p = skip_ws(p + 1, ps->end);
        if (p < ps->end && *p == close)
            return fail(ps, p, L3_ESYNTAX, "trailing comma"), NULL;
        *ret_end = false;
        return p;
    }
    if (p < ps->end && *p == close) {
        *ret_end = true;
        return p + 1;
    }
    if (p >= ps->end)
        return fail(ps, p, L3_ESYNTAX, "unexpected end of input"), NULL;
    return fail(ps, p, L3_ESYNTAX, close == '}' ? "',' or '}' expected" : "',' or ']' expected"), NULL;
}

static const char *parse_object(parser_t *ps, const char *p, uint64_t *ret_val)
{
    const char *open = p;
    if (++ps->depth > ps->max_depth)
        return fail(ps, p, L3_EDEPTH, "nesting too deep"), NULL;
    size_t base = ps->scr_len;
    uint32_t body = 0, count = 0;
    if (ps->packed && pk_open(ps, PT_OBJECT, &body))
        return NULL;
    p = skip_ws(p + 1, ps->end);
    if (p < ps->end && *p == '}') {
        p++;
        goto done;
    }
    for (;;) {
        if (p >= ps->end || *p != '"')
            return fail(ps, p, L3_ESYNTAX, p >= ps->end ? "unexpected end of input" : "member name expected"),
                   NULL;
        dentry_t e;
        p = parse_name(ps, p, &e);
        if (!p)
            return NULL;
        if (ps->packed &&
            (++count > L3_DOC_PACKED_MEMBERS ||
             l3_doc__p_named(ps->buf, body, e.koff - l3_doc__var_len(e.klen), ps->buf + e.koff, e.klen)))
            return fail(ps, p, L3_ETOOBIG, "does not pack"), NULL;
        p = skip_ws(p, ps->end);
        if (p >= ps->end || *p != ':')
            return fail(ps, p, L3_ESYNTAX, "':' expected"), NULL;
        p = skip_ws(p + 1, ps->end);
        uint64_t v;
        uint8_t t;
        p = parse_value(ps, p, &v, &t);
        if (!p)
            return NULL;
        if (ps->buf && !ps->packed) {
            e.val = v;
            e.type = t;
            if (scr_push(ps, &e, sizeof(e)))
                return NULL;
        }
        bool end;
        p = after_member(ps, p, '}', &end);
        if (!p)
            return NULL;
        if (end)
            break;
    }
done:
    if (ps->packed ? pk_close(ps, body, count) : finish_object(ps, base, open, ret_val))
        return NULL;
    ps->depth--;
    return p;
}

static const char *parse_array(parser_t *ps, const char *p, uint64_t *ret_val)
{
    if (++ps->depth > ps->max_depth)
        return fail(ps, p, L3_EDEPTH, "nesting too deep"), NULL;
    size_t base = ps->scr_len;
    uint32_t body = 0, count = 0;
    if (ps->packed && pk_open(ps, PT_ARRAY, &body))
        return NULL;
    p = skip_ws(p + 1, ps->end);
    if (p < ps->end && *p == ']') {
        p++;
        goto done;
    }
    for (;;) {
        uint64_t v;
        uint8_t t;
        if (ps->packed && ++count > L3_DOC_PACKED_ITEMS)
            return fail(ps, p, L3_ETOOBIG, "does not pack"), NULL;
        p = parse_value(ps, p, &v, &t);
        if (!p)
            return NULL;
        if (ps->buf && !ps->packed) {
            dslot_t s = {.val = v, .type = t};
            if (scr_push(ps, &s, sizeof(s)))
                return NULL;
        }
        bool end;
        p = after_member(ps, p, ']', &end);
        if (!p)
            return NULL;
        if (end)
            break;
    }
done:
    if (ps->packed) {
        if (pk_close(ps, body, count))
            return NULL;
        *ret_val = 0;
    } else if (ps->buf) {
        size_t n = (ps->scr_len - base) / sizeof(dslot_t);
        size_t bytes = sizeof(darr_t) + n * sizeof(dslot_t);
        if (out_reserve(ps, bytes))
            return NULL;
        uint32_t off = out_alloc(ps, bytes);
        darr_t *a = AT(ps->buf, off, darr_t);
        a->count = a->cap = (uint32_t)n;
        a->ioff = n ? off + (uint32_t)sizeof(darr_t) : 0;
        a->zero = 0;
        if (n)
            memcpy(a + 1, ps->scr + base, n * sizeof(dslot_t));
        ps->scr_len = base;
        *ret_val = off;
    } else {
        *ret_val = 0;
    }
    ps->depth--;
    return p;
}

/* One value of any kind (the token decides). */
static const char *parse_token(parser_t *ps, const char *p, uint64_t *ret_val, uint8_t *ret_type)
{
    const char *end = ps->end;
    if (p >= end)
        return fail(ps, p, L3_ESYNTAX, "unexpected end of input"), NULL;
    switch (*p) {
    case '"':
        *ret_type = L3_DOC_STRING;
        return parse_string_value(ps, p, ret_val);
    case '{':
        *ret_type = L3_DOC_OBJECT;
        return parse_object(ps, p, ret_val);
    case '[':
        *ret_type = L3_DOC_ARRAY;
        return parse_array(ps, p, ret_val);
    case 't':
        if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
            *ret_type = L3_DOC_BOOL;
            *ret_val = 1;
            return p + 4;
        }
        break;
    case 'f':
        if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
            *ret_type = L3_DOC_BOOL;
            *ret_val = 0;
            return p + 5;
        }
        break;
    case 'n':
        if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
            *ret_type = L3_DOC_NULL;
            *ret_val = 0;
            return p + 4;
        }
        break;
    default:
        if (*p == '-' || (unsigned)(*p - '0') <= 9)
            return parse_number(ps, p, ret_val, ret_type);
        break;
    }
    return fail(ps, p, L3_ESYNTAX, "unexpected character"), NULL;
}

/* A value; in the packed form the scalars the token parser returns are written here. */
static const char *parse_value(parser_t *ps, const char *p, uint64_t *ret_val, uint8_t *ret_type)
{
    p = parse_token(ps, p, ret_val, ret_type);
    if (p && ps->packed && *ret_type <= L3_DOC_DOUBLE && pk_scalar(ps, *ret_val, *ret_type))
        return NULL;
    return p;
}

static int run(parser_t *ps, const l3_doc_parse_opts_t *opts, l3_doc_error_t *err)
{
    unsigned md = opts && opts->max_depth ? opts->max_depth : L3_DOC_MAX_DEPTH;
    ps->max_depth = md > L3_DOC_MAX_DEPTH ? L3_DOC_MAX_DEPTH : md;
    const char *p = skip_ws(ps->start, ps->end);
    uint64_t v = 0;
    uint8_t t = 0;
    p = parse_value(ps, p, &v, &t);
    if (p) {
        p = skip_ws(p, ps->end);
        if (p != ps->end)
            fail(ps, p, L3_ESYNTAX, "trailing characters after the JSON value");
    }
    if (ps->scr != ps->scr_local)
        free(ps->scr);
    ps->scr = NULL;
    if (ps->rc) {
        if (err) {
            err->offset = ps->err_off;
            err->msg = ps->msg;
        }
        return ps->rc;
    }
    if (ps->packed) {
        uint32_t used = l3_doc__p_finish(ps->buf, (uint32_t)ps->used, ps->cap);
        if (used == 0)
            return L3_ETOOBIG;
        ps->used = used;
    } else if (ps->buf) {
        dslot_t *root = AT(ps->buf, L3_DOC_ROOT, dslot_t);
        memset(root, 0, sizeof(*root));
        root->val = v;
        root->type = t;
        dhdr_t *h = HDR(ps->buf);
        h->dh_used = (uint32_t)ps->used;
        h->dh_garbage = (uint32_t)ps->garbage;
    }
    return 0;
}

/* One parse under the given seed. */
static int parse_seeded(const char *json, size_t len, const l3_doc_parse_opts_t *opts, uint32_t seed,
                        uint8_t **ret_buf, size_t *ret_len, l3_doc_error_t *err)
{
    _Alignas(16) uint8_t scr_local[SCR_LOCAL_BYTES];
    parser_t ps = {.start = json, .p = json, .end = json + len, .seed = seed, .scr_local = scr_local};
    ps.max_bytes = opts && opts->max_bytes && opts->max_bytes < DOC_MAX_SIZE ? opts->max_bytes : DOC_MAX_SIZE;
    if (ps.max_bytes < DOC_DATA_OFF) {
        if (err) {
            err->offset = 0;
            err->msg = "document exceeds the size limit";
        }
        return L3_EDOCSIZE;
    }
    /* First guess of the binary size: small documents take about 4x their text (fixed
     * header, 32-byte entries), large ones under 2x; a guess that fits saves the realloc. */
    ps.cap = len < 4096 ? 4 * len + 256 : len + len / 4 + 128;
    if (ps.cap > ps.max_bytes)
        ps.cap = ps.max_bytes;
    ps.buf = malloc(ps.cap);
    if (!ps.buf) {
        if (err) {
            err->offset = 0;
            err->msg = "out of memory";
        }
        return -ENOMEM;
    }
    dhdr_t *h = HDR(ps.buf);
    memset(ps.buf, 0, DOC_DATA_OFF);
    h->dh_magic = L3_DOC_MAGIC;
    h->dh_version = L3_DOC_FORMAT_VERSION;
    h->dh_seed = ps.seed;
    ps.used = DOC_DATA_OFF;
    int rc = run(&ps, opts, err);
    if (rc) {
        free(ps.buf);
        return rc;
    }
    *ret_buf = ps.buf;
    *ret_len = ps.used;
    return 0;
}

int l3_doc_from_json(const char *json, size_t len, const l3_doc_parse_opts_t *opts, uint8_t **ret_buf,
                     size_t *ret_len, l3_doc_error_t *err)
{
    /* every document gets a fresh seed; a hash chain past the probe bound under it (which
     * no one can aim at: the seed is drawn here) is answered with another */
    int rc = L3_EREHASH;
    for (int tries = 0; tries < 4 && rc == L3_EREHASH; tries++)
        rc = parse_seeded(json, len, opts, l3_doc__seed(), ret_buf, ret_len, err);
    return rc == L3_EREHASH ? -EAGAIN : rc;
}

int l3_doc_pack_json(const char *json, size_t len, const l3_doc_parse_opts_t *opts, uint8_t *dst, size_t cap,
                     size_t *ret_len)
{
    /* a size limit too small for the full form of every packed document: the full parse
     * decides (it may refuse the text) */
    if (opts && opts->max_bytes && opts->max_bytes < L3_DOC_PACK_FULL_BOUND)
        return L3_EDOCSIZE;
    _Alignas(16) uint8_t scr_local[SCR_LOCAL_BYTES];
    parser_t ps = {.start = json,
                   .p = json,
                   .end = json + len,
                   .scr_local = scr_local,
                   .packed = true,
                   .buf = dst,
                   .cap = L3_MIN(cap, (size_t)L3_DOC_PACKED_MAX),
                   .used = sizeof(dhdr_t)};
    if (ps.cap < PACKED_MIN_USED)
        return L3_ETOOBIG;
    memset(dst, 0, sizeof(dhdr_t));
    HDR(dst)->dh_magic = L3_DOC_MAGIC;
    HDR(dst)->dh_version = L3_DOC_PACKED_VERSION;
    int rc = run(&ps, opts, NULL);
    if (rc)
        return rc;
    *ret_len = ps.used;
    return 0;
}

int l3_doc_check_json(const char *json, size_t len, const l3_doc_parse_opts_t *opts, l3_doc_error_t *err)
{
    _Alignas(16) uint8_t scr_local[SCR_LOCAL_BYTES];
    parser_t ps = {.start = json, .p = json, .end = json + len, .scr_local = scr_local};
    return run(&ps, opts, err);
}
