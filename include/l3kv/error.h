/* SPDX-License-Identifier: MIT */
/*
 * l3kv/error.h - error codes.
 *
 * Fallible functions return int: >= 0 success, -errno on a system failure, or one of the
 * project-specific L3_E* codes below (all < -32000) for failures errno cannot name.
 */
#ifndef L3KV_ERROR_H
#define L3KV_ERROR_H

enum {
    L3_EBASE = -32000,
    L3_ESYNTAX = -32001,   /* JSON text is not valid */
    L3_EDEPTH = -32002,    /* nesting deeper than the configured limit */
    L3_EPATH = -32003,     /* path is malformed */
    L3_ENOTFOUND = -32004, /* path names no value */
    L3_ETYPE = -32005,     /* value has the wrong type for the operation */
    L3_ECORRUPT = -32006,  /* untrusted bytes failed verification */
    L3_ERANGE = -32007,    /* number or index out of range */
    L3_ETOOBIG = -32008,   /* document would exceed the format's 4 GiB limit */
    L3_EPOISONED = -32009, /* the store arena is poisoned (a lock repair could not complete) */
    L3_EDOCSIZE = -32010,  /* document would exceed the configured size limit (l3_doc_t.limit) */
    L3_EREHASH = -32011,   /* a member-name probe chain reached its bound: rebuild the document under a
                            * fresh hash seed (l3_doc_heap_reseed, l3_doc_rebuild) and repeat the call */
    L3_EMAX = -32012,
};

/** Static, human-readable text for any return code (negative errno or L3_E*). */
const char *l3_strerror(int rc);

#endif /* L3KV_ERROR_H */
