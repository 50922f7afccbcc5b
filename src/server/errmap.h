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
    int status;         /* HTTP status */
    const char *reason; /* HTTP/1 reason phrase (static) */
    const char *error;  /* short machine-readable name (static) */
    const char *detail; /* fixed detail text (static), or NULL: the caller describes the failure */
} l3_srv_errinfo_t;

/** What else decides the mapping besides the code. */
typedef struct {
    const char *msg; /* the document layer's message for the failure, or NULL */
    int wal_error;   /* the WAL ring's sticky error (l3_wal_ring_error), 0 = none or no WAL */
} l3_srv_errarg_t;

/**
 * Map a store/doc/errno code (negative) to a status, reason, error name and (for some
 * codes) a fixed detail. arg may be NULL. Special cases: -ENOSPC while the WAL's disk is
 * full is 507 disk_full (otherwise 507 arena_full); L3_ETYPE whose message is "test
 * failed" (a JSON Patch test operation) is 409 test_failed.
 */
void l3_srv_errmap(int rc, l3_srv_errctx_t ctx, const l3_srv_errarg_t *arg, l3_srv_errinfo_t *ret);

/** Reason phrase of a status code (static). */
const char *l3_srv_reason(int status);

/**
 * Format {"error":"<error>","detail":"<detail>"} and a newline into buf (detail escaped
 * by l3_json_escape_n, cut at a character boundary to fit; error is a static name that
 * needs no escaping). Returns the length written (< cap); 0 (and no body) when cap < 64.
 */
size_t l3_srv_err_json(char *buf, size_t cap, const char *error, const char *detail);

#endif
