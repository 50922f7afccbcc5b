/* SPDX-License-Identifier: MIT */
/*
 * l3kv/json.h - the one JSON string escaper and the one UTF-8 validator, used by every
 * part of l3kv that writes JSON text (documents, HTTP replies and errors, /metrics, the
 * WAL dump, l3kv-inspect).
 *
 * Escaping policy (the same everywhere):
 *   - '"' and '\\' are backslash-escaped;
 *   - the control bytes \b \f \n \r \t use their short forms, every other byte below
 *     0x20 is \u00XX (lower-case hex);
 *   - a byte sequence that is valid UTF-8 (RFC 3629: no overlongs, no surrogates,
 *     nothing above U+10FFFF) is copied as it is, DEL (0x7f) included;
 *   - every byte that does not belong to a valid UTF-8 sequence is written as \u00XX,
 *     XX its value (0xff becomes \u00ff), so the output is always valid UTF-8 and valid
 *     JSON, and the bytes stay recognisable.
 * A string known to be valid UTF-8 (a verified document) may be escaped with
 * L3_JSON_TRUSTED, which skips validation and gives the same output.
 *
 * The validator and the escaper are inline here (hot paths: document output, the parser)
 * and need no library; the bounded and stdio forms are in src/base/json.c.
 */
#ifndef L3KV_JSON_H
#define L3KV_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/** Most bytes l3_json_escape writes for len input bytes. */
#define L3_JSON_ESCAPED_MAX(len) ((len)*6)

/** Flag: the input is known to be valid UTF-8 (not re-validated). */
#define L3_JSON_TRUSTED 1u

/** Length (2..4) of the valid UTF-8 sequence starting at p (p[0] >= 0x80), avail bytes
 *  available; 0 when it is not a valid sequence. */
static inline size_t l3_utf8_seq(const uint8_t *p, size_t avail)
{
    uint8_t c = p[0];
    if (c >= 0xC2 && c <= 0xDF)
        return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0)) /* overlong, surrogate */
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90)) /* overlong, > U+10FFFF */
            return 0;
        return 4;
    }
    return 0;
}

/* Is s[0..len) valid UTF-8? (NUL and control bytes are valid UTF-8.) */
static inline bool l3_utf8_valid(const void *s, size_t len)
{
    const uint8_t *p = s, *end = p + len;
    while (p < end) {
        if (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if ((w & 0x8080808080808080ull) == 0) {
                p += 8;
                continue;
            }
        }
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t n = l3_utf8_seq(p, (size_t)(end - p));
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

/* Escape of one byte that is not copied as is: '"', '\\', a control byte or a byte
 * outside any valid UTF-8 sequence. Writes 2 or 6 bytes into o; returns the count. */
static inline size_t l3_json__esc_byte(char *o, uint8_t c)
{
    o[0] = '\\';
    switch (c) {
    case '"':
        o[1] = '"';
        return 2;
    case '\\':
        o[1] = '\\';
        return 2;
    case '\b':
        o[1] = 'b';
        return 2;
    case '\f':
        o[1] = 'f';
        return 2;
    case '\n':
        o[1] = 'n';
        return 2;
    case '\r':
        o[1] = 'r';
        return 2;
    case '\t':
        o[1] = 't';
        return 2;
    default:
        o[1] = 'u';
        o[2] = '0';
        o[3] = '0';
        o[4] = "0123456789abcdef"[c >> 4];
        o[5] = "0123456789abcdef"[c & 15];
        return 6;
    }
}

static inline bool l3_json__plain(uint8_t c, bool trusted)
{
    return c != '"' && c != '\\' && c >= 0x20 && (c < 0x80 || trusted);
}

/* Escape s[0..len) as the body of a JSON string (no quotes) into o, which has room for
 * L3_JSON_ESCAPED_MAX(len) bytes. Returns the end of what was written. Runs of bytes that
 * need nothing are copied 16 at a time with SSE2 (no '"', '\\', control byte or, unless
 * trusted, byte >= 0x80); the rest one character at a time. */
static inline char *l3_json_escape(char *o, const void *src, size_t len, unsigned flags)
{
    const uint8_t *s = src, *end = s + len;
    bool trusted = (flags & L3_JSON_TRUSTED) != 0;
    while (s < end) {
#if defined(__SSE2__)
        while (end - s >= 16) {
            __m128i c = _mm_loadu_si128((const __m128i *)(const void *)s);
            __m128i m = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(c, _mm_set1_epi8('"')), _mm_cmpeq_epi8(c, _mm_set1_epi8('\\'))),
                _mm_cmplt_epi8(c, _mm_set1_epi8(0x20))); /* signed: also >= 0x80 */
            unsigned hi = (unsigned)_mm_movemask_epi8(c);
            unsigned mask = (unsigned)_mm_movemask_epi8(m);
            mask = trusted ? mask & ~hi : mask | hi;
            _mm_storeu_si128((__m128i *)(void *)o, c);
            if (mask == 0) {
                s += 16;
                o += 16;
                continue;
            }
            unsigned k = (unsigned)__builtin_ctz(mask);
            s += k;
            o += k;
            break;
        }
#endif
        while (s < end && l3_json__plain(*s, trusted))
            *o++ = (char)*s++;
        if (s >= end)
            break;
        size_t n = *s >= 0x80 ? l3_utf8_seq(s, (size_t)(end - s)) : 0;
        if (n > 0) {
            memcpy(o, s, n);
            o += n;
            s += n;
        } else {
            o += l3_json__esc_byte(o, *s++);
        }
    }
    return o;
}

/** Like l3_json_escape into out[0..cap): stops before the first character whose escape
 *  would not fit (never splits an escape or a UTF-8 sequence). Returns bytes written. */
size_t l3_json_escape_n(char *out, size_t cap, const void *s, size_t len);

/** Write s[0..len) escaped (no quotes) to f. */
void l3_json_fput(FILE *f, const void *s, size_t len);

#endif /* L3KV_JSON_H */
