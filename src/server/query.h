/* SPDX-License-Identifier: MIT */
/*
 * query.h - request-target parsing on plain byte ranges: the query string, integer
 * values, entity tags and media types. Nothing here knows libh2o, so every function is
 * unit-tested and fuzzed on its own (tests/unit/server, tests/fuzz).
 */
#ifndef L3KV_SRV_QUERY_H
#define L3KV_SRV_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** A byte range; base == NULL means "absent". */
typedef struct {
    const char *base;
    size_t len;
} l3_q_str_t;

/** The query parameters the API knows; unknown names are ignored. */
typedef struct {
    l3_q_str_t op, field, val, prefix, limit, cursor;
    l3_q_str_t index, multi, create_parents; /* the array and path ops (route_arr.c) */
    l3_q_str_t ttl;                          /* expiry: seconds (route_kv.c) */
    bool has_field, has_val;
} l3_query_t;

/**
 * The next name=value pair of the raw query string [*s, end) (nothing decoded): *s moves past
 * it. value.base is NULL when the pair has no '='. false once the string is used up.
 */
bool l3_q_next(const char **s, const char *end, l3_q_str_t *name, l3_q_str_t *value);

/**
 * Parse the query string s[0..n) (without the '?'): percent-decoding and '+' -> ' ' in
 * values. The decoded values are written into out, which must hold n bytes; the returned
 * ranges point into it. 0, or -1 on a malformed percent-escape.
 */
int l3_q_parse(const char *s, size_t n, char *out, l3_query_t *q);

/**
 * Percent-decode a path segment s[0..n) exactly once into out (n bytes): "%XX" becomes
 * the byte XX, everything else ('+' included) is copied. No dot-segment processing.
 * Returns the decoded length, or -1 on a malformed escape.
 */
long l3_q_path_decode(const char *s, size_t n, char *out);

/** Is key[0..n) in the key alphabet: non-empty is not required here, but valid UTF-8
 *  without control characters (U+0000..U+001F, U+007F)? */
bool l3_q_key_valid(const char *key, size_t n);

/** Unsigned decimal: 1..20 digits, no sign, fits 64 bits (limit, cursor, entity tags). */
bool l3_q_u64(const char *s, size_t n, uint64_t *ret);
/** An integer in JSON's grammar (-?(0|[1-9][0-9]*): no '+', no leading zeros, no
 *  blanks) that fits int64_t. */
bool l3_q_i64(const char *s, size_t n, int64_t *ret);
/** A number in JSON's grammar (-?int(.digits)?([eE][+-]?digits)?) whose value is a finite
 *  double. */
bool l3_q_double(const char *s, size_t n, double *ret);

/**
 * Does an If-Match / If-None-Match list v[0..n) match version `lsn`? "*" matches when the
 * document exists; weak tags (W/"n") compare like strong ones. Returns 1 or 0.
 */
int l3_q_etag_matches(const char *v, size_t n, uint64_t lsn, bool exists);

/** Media type of a Content-Type value, lower-cased into out (n bytes), without parameters
 *  and surrounding blanks. Returns its length. */
size_t l3_q_media_type(const char *v, size_t n, char *out);

/** Case-insensitive substring test. */
bool l3_q_contains_ci(const char *hay, size_t n, const char *needle);

#endif
