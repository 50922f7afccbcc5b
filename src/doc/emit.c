/* SPDX-License-Identifier: MIT */
/*
 * emit.c - document -> JSON text.
 *
 * Owns: l3_doc_to_json, l3_buf_reserve, the shortest round-trip double printer.
 * Runs in any process; reads a verified document, writes a caller's l3_buf_t.
 *
 * Output is compact RFC 8259 JSON: object members in insertion order; strings escaped
 * by the shared escaper (l3kv/json.h: '"', '\\' and control characters; UTF-8 passes through); doubles
 * printed in the shortest form that parses back to the same double, always with a '.' or an exponent so they
 * stay doubles; BIGNUMs exactly as stored.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "packed.h"
#include "l3kv/error.h"
#include "l3kv/json.h"

int l3_buf_reserve(l3_buf_t *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap * 2 : 256;
    while (ncap < b->len + extra)
        ncap *= 2;
    char *n = realloc(b->ptr, ncap);
    if (!n)
        return -ENOMEM;
    b->ptr = n;
    b->cap = ncap;
    return 0;
}

/* ------------------------------------------------------------------ numbers */

static const char digits2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Write u in decimal ending at end (exclusive); returns the start. */
static inline char *u64_rev(uint64_t u, char *end)
{
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        end -= 2;
        memcpy(end, digits2 + 2 * r, 2);
    }
    if (u >= 10) {
        end -= 2;
        memcpy(end, digits2 + 2 * u, 2);
    } else {
        *--end = (char)('0' + u);
    }
    return end;
}

static inline size_t fmt_i64(int64_t v, char *out)
{
    char tmp[24];
    char *e = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *s = u64_rev(u, e);
    if (v < 0)
        *--s = '-';
    size_t n = (size_t)(e - s);
    memcpy(out, s, n);
    return n;
}

static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

size_t l3_doc__fmt_double(double d, char *out)
{
    char *o = out;
    if (signbit(d)) {
        *o++ = '-';
        d = -d;
    }
    if (d == 0) {
        memcpy(o, "0.0", 3);
        return (size_t)(o - out) + 3;
    }
    /* Fast path: d == n / 10^k exactly as IEEE division (so the text "n.frac" parses
     * back to d) for the smallest k; covers the common decimal values. */
    if (d < 1e15 && d >= 1e-7) {
        for (int k = 0; k <= 17 && k <= 22; k++) {
            double m = d * p10[k];
            if (m >= 9007199254740992.0)
                break;
            double r = nearbyint(m);
            uint64_t n = (uint64_t)r;
            if ((double)n / p10[k] != d)
                continue;
            /* print n with k decimals */
            char tmp[32];
            char *e = tmp + sizeof(tmp);
            char *s = u64_rev(n, e);
            size_t nd = (size_t)(e - s);
            if (k == 0) {
                memcpy(o, s, nd);
                o += nd;
                memcpy(o, ".0", 2);
                return (size_t)(o - out) + 2;
            }
            if (nd > (size_t)k) {
                memcpy(o, s, nd - (size_t)k);
                o += nd - (size_t)k;
                *o++ = '.';
                memcpy(o, s + nd - (size_t)k, (size_t)k);
                o += k;
            } else {
                *o++ = '0';
                *o++ = '.';
                for (size_t z = nd; z < (size_t)k; z++)
                    *o++ = '0';
                memcpy(o, s, nd);
                o += nd;
            }
            return (size_t)(o - out);
        }
    }
    /* General path: the fewest %.*e digits that parse back to d. */
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    /* tmp is "D[.DDD]e[+-]XX": rewrite as plain decimal when the exponent is modest */
    char *epos = strchr(tmp, 'e');
    int exp10 = atoi(epos + 1);
    char dig[20];
    size_t nd = 0;
    for (char *c = tmp; c < epos; c++)
        if (*c != '.')
            dig[nd++] = *c;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    if (exp10 >= 0 && exp10 < 21) {
        /* integer part has exp10+1 digits */
        size_t ip = (size_t)exp10 + 1;
        for (size_t i = 0; i < ip; i++)
            *o++ = i < nd ? dig[i] : '0';
        *o++ = '.';
        if (nd > ip) {
            memcpy(o, dig + ip, nd - ip);
            o += nd - ip;
        } else {
            *o++ = '0';
        }
    } else if (exp10 < 0 && exp10 >= -7) {
        *o++ = '0';
        *o++ = '.';
        for (int z = -1; z > exp10; z--)
            *o++ = '0';
        memcpy(o, dig, nd);
        o += nd;
    } else {
        *o++ = dig[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, dig + 1, nd - 1);
            o += nd - 1;
        }
        o += sprintf(o, "e%d", exp10);
    }
    return (size_t)(o - out);
}

/* ------------------------------------------------------------------ strings */

/* Append a JSON string (the shared escaper, l3kv/json.h; documents are verified UTF-8);
 * room for 6*len + 2 bytes must be reserved. */
static inline char *put_string(char *o, const uint8_t *s, size_t len)
{
    *o++ = '"';
    o = l3_json_escape(o, s, len, L3_JSON_TRUSTED);
    *o++ = '"';
    return o;
}

/* ------------------------------------------------------------------ values */

#define RESERVE(n)                                                                                           \
    do {                                                                                                     \
        if (l3_buf_reserve(out, (n)))                                                                        \
            return -ENOMEM;                                                                                  \
    } while (0)

/* One scalar. */
static int emit_scalar(const uint8_t *buf, uint64_t val, uint8_t type, l3_buf_t *out)
{
    switch (type) {
    case L3_DOC_NULL:
        RESERVE(4);
        memcpy(out->ptr + out->len, "null", 4);
        out->len += 4;
        return 0;
    case L3_DOC_BOOL:
        RESERVE(5);
        if (val) {
            memcpy(out->ptr + out->len, "true", 4);
            out->len += 4;
        } else {
            memcpy(out->ptr + out->len, "false", 5);
            out->len += 5;
        }
        return 0;
    case L3_DOC_INT:
        RESERVE(24);
        out->len += fmt_i64((int64_t)val, out->ptr + out->len);
        return 0;
    case L3_DOC_DOUBLE: {
        double d;
        memcpy(&d, &val, 8);
        RESERVE(40);
        out->len += l3_doc__fmt_double(d, out->ptr + out->len);
        return 0;
    }
    case L3_DOC_BIGNUM: {
        const dstr_t *s = AT(buf, (uint32_t)val, dstr_t);
        RESERVE(s->len);
        memcpy(out->ptr + out->len, s + 1, s->len);
        out->len += s->len;
        return 0;
    }
    case L3_DOC_STRING: {
        const dstr_t *s = AT(buf, (uint32_t)val, dstr_t);
        RESERVE((size_t)s->len * 6 + 18);
        char *o = put_string(out->ptr + out->len, (const uint8_t *)(s + 1), s->len);
        out->len = (size_t)(o - out->ptr);
        return 0;
    }
    default:
        return -EINVAL;
    }
}

/* The value, depth first on the walker's bounded stack (no recursion). */
static int emit(const uint8_t *buf, uint64_t val, uint8_t type, l3_buf_t *out)
{
    l3_doc__walk_t w;
    l3_doc__wstep_t st;
    l3_doc__walk_begin(&w, buf, val, type);
    int ev, rc;
    while ((ev = l3_doc__walk_next(&w, &st)) != L3_W_END) {
        if (ev == L3_W_DEEP)
            return L3_EDEPTH; /* a verified document never gets here */
        if (ev == L3_W_CLOSE) {
            RESERVE(1);
            out->ptr[out->len++] = st.type == L3_DOC_ARRAY ? ']' : '}';
            continue;
        }
        /* separator and member name */
        RESERVE((st.e ? (size_t)st.e->klen * 6 + 20 : 0) + 2);
        char *o = out->ptr + out->len;
        if (!st.first)
            *o++ = ',';
        if (st.e) {
            o = put_string(o, l3_doc__ekey(buf, st.e), st.e->klen);
            *o++ = ':';
        }
        out->len = (size_t)(o - out->ptr);
        if (ev == L3_W_OPEN) {
            out->ptr[out->len++] = st.type == L3_DOC_ARRAY ? '[' : '{';
        } else if ((rc = emit_scalar(buf, st.val, st.type, out))) {
            return rc;
        }
    }
    return 0;
}

/* One scalar of a packed document. */
static int p_emit_scalar(const l3_doc__pval_t *v, l3_buf_t *out)
{
    switch (v->type) {
    case L3_DOC_STRING: {
        RESERVE((size_t)v->slen * 6 + 18);
        char *o = put_string(out->ptr + out->len, v->s, v->slen);
        out->len = (size_t)(o - out->ptr);
        return 0;
    }
    case L3_DOC_BIGNUM:
        RESERVE(v->slen);
        memcpy(out->ptr + out->len, v->s, v->slen);
        out->len += v->slen;
        return 0;
    case L3_DOC_DOUBLE: {
        uint64_t bits;
        memcpy(&bits, &v->d, 8);
        return emit_scalar(NULL, bits, L3_DOC_DOUBLE, out);
    }
    default: /* NULL, BOOL, INT */
        return emit_scalar(NULL, (uint64_t)v->i, v->type, out);
    }
}

/* A packed value, in one pass over its bytes; the open containers' ends on a bounded stack. */
int l3_doc__p_emit(const uint8_t *buf, uint32_t slot, l3_buf_t *out)
{
    struct {
        uint32_t end;
        bool object;
    } open[L3_DOC_MAX_DEPTH];
    unsigned depth = 0;
    uint32_t off = slot;
    bool first = true;
    for (bool root = true;; root = false) {
        while (depth > 0 && off >= open[depth - 1].end) {
            RESERVE(1);
            out->ptr[out->len++] = open[--depth].object ? '}' : ']';
            first = false;
        }
        if (!root && depth == 0)
            return 0;
        RESERVE(2);
        if (!first)
            out->ptr[out->len++] = ',';
        if (depth > 0 && open[depth - 1].object) {
            const uint8_t *name;
            uint32_t nl;
            off = l3_doc__p_name(buf, off, &name, &nl);
            RESERVE((size_t)nl * 6 + 4);
            char *o = put_string(out->ptr + out->len, name, nl);
            *o++ = ':';
            out->len = (size_t)(o - out->ptr);
        }
        l3_doc__pval_t v;
        uint32_t next = l3_doc__p_decode(buf, off, &v);
        if (v.type == L3_DOC_OBJECT || v.type == L3_DOC_ARRAY) {
            if (depth >= L3_DOC_MAX_DEPTH)
                return L3_EDEPTH; /* a verified document never gets here */
            RESERVE(1);
            out->ptr[out->len++] = v.type == L3_DOC_OBJECT ? '{' : '[';
            open[depth].end = v.end;
            open[depth++].object = v.type == L3_DOC_OBJECT;
            off = v.body;
            first = true;
            continue;
        }
        int rc = p_emit_scalar(&v, out);
        if (rc)
            return rc;
        off = next;
        first = false;
    }
}

int l3_doc_to_json(const uint8_t *buf, uint32_t slot, l3_buf_t *out)
{
    size_t mark = out->len;
    if (slot == L3_DOC_ROOT && l3_buf_reserve(out, HDR(buf)->dh_used + 64))
        return -ENOMEM;
    if (l3_doc__packed(buf)) {
        int rc = l3_doc__p_emit(buf, slot, out);
        if (rc)
            out->len = mark;
        return rc;
    }
    const dslot_t *s = AT(buf, slot, dslot_t);
    int rc = emit(buf, s->val, s->type, out);
    if (rc)
        out->len = mark;
    return rc;
}
