/* SPDX-License-Identifier: MIT */
/*
 * errmap.c - the one place that decides which HTTP status a failure becomes
 * (docs/api.md has the table). Pure functions; runs in workers.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "errmap.h"
#include "l3kv/error.h"
#include "l3kv/json.h"

const char *l3_srv_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 507:
        return "Insufficient Storage";
    default:
        return "Status";
    }
}

void l3_srv_errmap(int rc, l3_srv_errctx_t ctx, const l3_srv_errarg_t *arg, l3_srv_errinfo_t *ret)
{
    int st = 500;
    const char *e = "internal", *d = NULL;
    switch (rc) {
    case L3_ESYNTAX:
        st = 400;
        e = "invalid_json";
        break;
    case L3_EDEPTH:
        st = 400;
        e = "too_deep";
        break;
    case L3_EPATH:
        st = 400;
        e = "bad_path";
        break;
    case L3_ENOTFOUND:
        st = ctx == L3_CTX_READ ? 404 : 409;
        e = "path_not_found";
        break;
    case L3_ETYPE:
        st = 409;
        e = arg != NULL && arg->msg != NULL && strcmp(arg->msg, "test failed") == 0 ? "test_failed"
                                                                                    : "type_conflict";
        break;
    case L3_ERANGE:
        st = 400;
        e = "bad_value";
        break;
    case L3_ECORRUPT:
        st = 400;
        e = "invalid_document";
        break;
    case L3_ETOOBIG:
        st = 413;
        e = "too_large";
        break;
    case L3_EDOCSIZE: /* storage.max_document_bytes */
        st = 413;
        e = "document_too_large";
        d = "the document would exceed storage.max_document_bytes";
        break;
    case L3_EPOISONED:
        st = 503;
        e = "store_poisoned";
        d = "a lock repair could not complete; the server is restarting from its log";
        break;
    case -E2BIG: /* a transaction (POST /batch) larger than one unit may be */
        st = 413;
        e = "transaction_too_large";
        d = "the transaction touches more keys or bytes than one unit may (docs/api.md, \"Batches\")";
        break;
    case -EMSGSIZE: /* record above the WAL ring's limit */
        st = 413;
        e = "too_large_for_wal";
        d = "the change does not fit the write-ahead log's ring";
        break;
    case -ENOENT:
        st = 404;
        e = "not_found";
        d = "no document under this key";
        break;
    case -ENAMETOOLONG:
        st = 414;
        e = "key_too_long";
        break;
    case -EINVAL:
        st = 400;
        e = "bad_request";
        break;
    case -ENOSPC:
        st = 507;
        e = "arena_full";
        if (arg != NULL && arg->wal_error == -ENOSPC) {
            e = "disk_full";
            d = "the write-ahead log's disk is full; writes are refused until space returns, reads still "
                "work";
        }
        break;
    case -ESTALE:
        st = 412;
        e = "precondition_failed";
        break;
    case -ETIMEDOUT: /* a document lock (storage.lock_timeout_ms) */
        st = 503;
        e = "overloaded";
        d = "the document's lock was not obtained within storage.lock_timeout_ms";
        break;
    case -EAGAIN:
    case -EBUSY:
        st = 503;
        e = "overloaded";
        break;
    case -ENOMEM:
        st = 503;
        e = "out_of_memory";
        break;
    case -EIO:
        st = 503;
        e = "io_error";
        break;
    default:
        break;
    }
    ret->status = st;
    ret->reason = l3_srv_reason(st);
    ret->error = e;
    ret->detail = d;
}

size_t l3_srv_err_json(char *buf, size_t cap, const char *error, const char *detail)
{
    if (cap < 64) {
        if (cap > 0)
            buf[0] = '\0';
        return 0;
    }
    int w = snprintf(buf, cap, "{\"error\":\"%s\",\"detail\":\"", error);
    if (w < 0 || (size_t)w + 4 > cap)
        return 0;
    size_t n = (size_t)w;
    if (detail != NULL) /* the shared escaper (l3kv/json.h); cut at a character boundary to fit */
        n += l3_json_escape_n(buf + n, cap - n - 4, detail, strlen(detail));
    memcpy(buf + n, "\"}\n", 4); /* with the NUL */
    return n + 3;
}
