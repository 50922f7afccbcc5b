/* SPDX-License-Identifier: MIT */
/*
 * scope.c - the access decision for one request: the Authorization header (or a client
 * certificate's subject) against the scope a route or an operation needs, with auth.c's
 * verdict turned into the HTTP refusal (403 protected_mode, 401, 403 forbidden).
 *
 * A loopback peer whose request carries an X-Forwarded-For naming any other address (a
 * local reverse proxy) is not loopback. routes.c asks once per request; a handler whose
 * needs depend on its body (POST /batch: all reads or some writes) asks again.
 */
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "auth.h"
#include "scope.h"

/* Every address in an X-Forwarded-For list is a loopback address (a local reverse proxy
 * such as h2o adds the client's address: protected mode must see through it). At most 16
 * entries are looked at; more, or anything unparsable, counts as not loopback. */
static bool forwarded_all_loopback(h2o_iovec_t v)
{
    const char *p = v.base, *end = v.base + v.len;
    for (unsigned n = 0; p < end; n++) {
        if (n == 16)
            return false;
        const char *c = memchr(p, ',', (size_t)(end - p)), *e = c != NULL ? c : end;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        const char *q = e;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t'))
            q--;
        char a[64];
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        if ((size_t)(q - p) >= sizeof(a))
            return false;
        memcpy(a, p, (size_t)(q - p));
        a[q - p] = '\0';
        if (inet_pton(AF_INET, a, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
            ss.ss_family = AF_INET;
        else if (inet_pton(AF_INET6, a, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
            ss.ss_family = AF_INET6;
        else
            return false;
        if (!l3_auth_is_loopback(&ss))
            return false;
        p = e + 1;
    }
    return true;
}

static bool peer_is_loopback(h2o_req_t *req)
{
    ssize_t xi = h2o_find_header(&req->headers, H2O_TOKEN_X_FORWARDED_FOR, -1);
    if (xi >= 0 && !forwarded_all_loopback(req->headers.entries[xi].value))
        return false;
    if (req->conn == NULL || req->conn->callbacks == NULL || req->conn->callbacks->get_peername == NULL)
        return true; /* an in-process caller (tests, fuzzing) */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) == 0)
        return false;
    return l3_auth_is_loopback(&ss);
}

/* The access decision for scope `need`: 0 to go on, 1 when a refusal was sent. */
int l3_scope_decide(l3_rq_t *rq, unsigned need, bool answer)
{
    h2o_req_t *req = rq->req;
    ssize_t hi = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    h2o_iovec_t az = hi >= 0 ? req->headers.entries[hi].value : h2o_iovec_init(NULL, 0);
    const char *subject = rq->env->cert_subject != NULL ? rq->env->cert_subject(req->conn) : NULL;
    l3_auth_verdict_t v = l3_auth_decide(need, az.base != NULL ? az.base : NULL, az.len, subject,
                                         peer_is_loopback(req), &rq->who, &rq->scopes);
    if (hi >= 0 && az.base == NULL)
        v = L3_AUTH_UNAUTHORIZED;
    if (v == L3_AUTH_OK)
        return 0;
    if (!answer)
        return 1;
    switch (v) {
    case L3_AUTH_PROTECTED:
        l3_http_fail(rq, 403, "protected_mode",
                     "no access tokens are configured, so only loopback clients are answered; configure "
                     "a token in auth.tokens (see docs/security.md), or set auth.protected_mode: false "
                     "to serve every peer without authentication");
        return 1;
    case L3_AUTH_UNAUTHORIZED:
        l3_http_add_header(req, H2O_TOKEN_WWW_AUTHENTICATE, H2O_STRLIT("Bearer realm=\"l3kv\""));
        l3_http_fail(rq, 401, "unauthorized",
                     hi < 0 ? "this route needs the '%s' scope: send Authorization: Bearer <token>"
                            : "the Authorization header is not a known Bearer token (route needs '%s')",
                     l3_auth_scope_name(need));
        return 1;
    default:
        l3_http_fail(rq, 403, "forbidden", "token '%s' lacks the '%s' scope this request needs", rq->who,
                     l3_auth_scope_name(need));
        return 1;
    }
}

int l3_scope_require(l3_rq_t *rq, unsigned need)
{
    if ((rq->scopes & need) == need)
        return 0;
    return l3_scope_decide(rq, need, true);
}
