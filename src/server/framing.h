/* SPDX-License-Identifier: MIT */
/*
 * framing.h - the HTTP/1 framing guard: request heads and chunked bodies that two parsers
 * could read differently are refused before libh2o acts on them (framing.c).
 */
#ifndef L3KV_SRV_FRAMING_H
#define L3KV_SRV_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

struct st_h2o_req_t;

/**
 * Did the guard refuse this request's head? A refused head reaches the handler as a
 * stand-in request without body; the handler must answer 400 with *ret_error and
 * *ret_detail and close the connection. Returns false for every real request.
 */
bool l3_framing_refused(const struct st_h2o_req_t *req, const char **ret_error, const char **ret_detail);

/** Result of checking one parsed request head (exposed for tests and fuzzing). */
typedef enum {
    L3_FRAMING_OK = 0,
    L3_FRAMING_SYNTAX,      /* a line the request parser refused, or obs-fold */
    L3_FRAMING_CL_AND_TE,   /* Content-Length together with Transfer-Encoding */
    L3_FRAMING_CL_CONFLICT, /* Content-Length values that differ */
    L3_FRAMING_TE_REPEATED, /* more than one Transfer-Encoding header */
    L3_FRAMING_NREASONS
} l3_framing_t;

/** One header as the request parser returns it (picohttpparser's struct phr_header). */
typedef struct {
    const char *name; /* NULL for a continuation line (obs-fold) */
    size_t name_len;
    const char *value;
    size_t value_len;
} l3_framing_header_t;

/** Check a parsed head's framing headers (RFC 9112 section 6.3). */
l3_framing_t l3_framing_check(const l3_framing_header_t *h, size_t n);

#endif
