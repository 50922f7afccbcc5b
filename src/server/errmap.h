/* SPDX-License-Identifier: MIT */
/*
 * errmap.h - return codes to HTTP statuses and JSON error bodies.
 */
#ifndef L3KV_SRV_ERRMAP_H
#define L3KV_SRV_ERRMAP_H

#include <stddef.h>

/** Where a code came from; the same code can mean different statuses. */
typedef enum {
    L3_CTX_READ = 0, /* GET: a missing path is 404 */
    L3_CTX_WRITE,    /* PUT/DELETE/POST/PATCH: a missing path is 409 */
} l3_srv_errctx_t;

typedef struct {
    int status;           /* HTTP status */
    const char *reason;   /* HTTP/1 reason phrase (static) */
    const char *error;    /* short machine-readable name (static) */
} l3_srv_errinfo_t;

/** Map a store/doc/errno code (negative) to a status, reason and error name. */
void l3_srv_errmap(int rc, l3_srv_errctx_t ctx, l3_srv_errinfo_t *ret);

/** Reason phrase of a status code (static). */
const char *l3_srv_reason(int status);

/**
 * Format {"error":"<error>","detail":"<detail>"} into buf (detail JSON-escaped, truncated
 * to fit). Returns the length written (< cap).
 */
size_t l3_srv_err_json(char *buf, size_t cap, const char *error, const char *detail);

#endif
