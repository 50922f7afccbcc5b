/* SPDX-License-Identifier: MIT */
/*
 * auth.c - bearer tokens with scopes, anonymous scopes and protected mode.
 *
 * Runs in every process: the supervisor parses config.json's "auth" section at start
 * (config.c hands the object to l3_auth_configure), workers inherit the set by fork, and
 * each process re-reads the file's "auth" section on SIGHUP (l3_auth_reload), so forked
 * workers and running ones agree. A new set is built completely and validated before it
 * replaces the old one: a bad file changes nothing and is logged.
 *
 * Tokens are kept only as SHA-256 digests (OpenSSL EVP). A request's token is hashed and
 * compared with every entry's digest by CRYPTO_memcmp, without an early exit, so neither
 * the comparison nor the position of a match shows in the timing. Token sources: an
 * inline "token", a "token_sha256" (64 hex digits) or a "token_file" whose mode grants
 * nothing to group or others (trailing newline stripped). Limits: L3_AUTH_MAX_TOKENS
 * entries, tokens of L3_AUTH_MIN_TOKEN_BYTES..L3_AUTH_MAX_TOKEN_BYTES printable
 * non-space ASCII bytes, names of 1..L3_AUTH_MAX_NAME_BYTES bytes.
 *
 * An entry may instead (or as well) carry a "cert_subject": the RFC 2253 subject of a
 * client certificate (tls.c verifies it against server.tls.client_ca and hands over the
 * subject; unverified certificates never get here). Subjects are compared byte for byte
 * (they are not secret); cert_subject entries are refused unless server.tls.client_ca is
 * set (config.c's check at start, subjects_ok on SIGHUP).
 *
 * Decision (l3_auth_decide): with no entry configured, every peer on loopback holds every
 * scope and any other peer is refused with protected_mode (unless auth.protected_mode is
 * false: then everyone holds every scope). With entries, a request without an
 * Authorization header holds the scopes of the entry whose cert_subject is the
 * connection's verified certificate subject, or else the anonymous scopes (default
 * ["health"]); a header that is not "Bearer <known token>" is 401 whatever the
 * certificate; a known token holds its scopes plus the anonymous ones (a token, when sent,
 * decides: the certificate adds nothing to it).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth.h"
#include "log.h"

typedef struct {
    char name[L3_AUTH_MAX_NAME_BYTES + 1];
    unsigned char digest[32];
    bool has_token; /* digest is set (an entry may carry only a cert_subject) */
    unsigned scopes;
    char *subject; /* cert_subject (malloc'd) or NULL */
} tok_t;

typedef struct {
    tok_t *tok;
    size_t n, cap;       /* entries parsed, entries allocated */
    unsigned anon;       /* scopes without a token (only meaningful with tokens) */
    bool protected_mode; /* with no tokens: answer loopback peers only */
} set_t;

static set_t cur = {.protected_mode = true, .anon = L3_SCOPE_HEALTH};
static char *source;
static bool subjects_ok = true; /* cert_subject entries accepted (false: no server.tls.client_ca) */

static const char *const scope_names[] = {"read", "write", "monitor", "admin", "health", "replicate"};
#define NSCOPES (sizeof(scope_names) / sizeof(scope_names[0]))

static int fail(char *errbuf, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *errbuf, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen > 0)
        vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

unsigned l3_auth_scope_bit(const char *name, size_t len)
{
    for (unsigned i = 0; i < NSCOPES; i++)
        if (strlen(scope_names[i]) == len && memcmp(scope_names[i], name, len) == 0)
            return 1u << i;
    return 0;
}

const char *l3_auth_scope_name(unsigned bit)
{
    for (unsigned i = 0; i < NSCOPES; i++)
        if (bit == 1u << i)
            return scope_names[i];
    return "none";
}

/* SHA-256 with the algorithm fetched once and one reused context per process: a
 * per-request EVP_Digest() would fetch the implementation and allocate a context on every
 * call, which costs more than the hash of a short token itself. */
static int sha256(const void *p, size_t n, unsigned char out[32])
{
    static EVP_MD *md;
    static EVP_MD_CTX *ctx;
    unsigned int len = 0;
    if (md == NULL && (md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
        return -EIO;
    if (ctx == NULL && (ctx = EVP_MD_CTX_new()) == NULL)
        return -ENOMEM;
    if (EVP_DigestInit_ex2(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, p, n) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != 32)
        return -EIO;
    return 0;
}

/* A token's bytes: printable ASCII without space (what fits a Bearer header). */
static bool token_chars_ok(const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (t[i] <= 0x20 || t[i] >= 0x7f)
            return false;
    return true;
}

static int check_token(const char *key, const char *t, size_t n, char *errbuf, size_t errlen)
{
    if (n < L3_AUTH_MIN_TOKEN_BYTES)
        return fail(errbuf, errlen, -EINVAL, "config: '%s' is %zu bytes; a token must have at least %u", key,
                    n, L3_AUTH_MIN_TOKEN_BYTES);
    if (n > L3_AUTH_MAX_TOKEN_BYTES)
        return fail(errbuf, errlen, -EINVAL, "config: '%s' is %zu bytes; a token may have at most %u", key, n,
                    L3_AUTH_MAX_TOKEN_BYTES);
    if (!token_chars_ok(t, n))
        return fail(errbuf, errlen, -EINVAL, "config: '%s' must be printable ASCII without spaces", key);
    return 0;
}

/* Read a token file: regular, no group/other permission bits, trailing CR/LF/space cut. */
static int read_token_file(const char *key, const char *path, unsigned char digest[32], char *errbuf,
                           size_t errlen)
{
    char buf[L3_AUTH_MAX_TOKEN_BYTES + 2];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail(errbuf, errlen, -errno, "config: '%s': cannot open %s: %s", key, path, strerror(errno));
    int rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = fail(errbuf, errlen, -errno, "config: '%s': cannot stat %s: %s", key, path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = fail(errbuf, errlen, -EINVAL, "config: '%s': %s is not a regular file", key, path);
        goto fail;
    }
    if ((st.st_mode & 077) != 0) {
        rc = fail(errbuf, errlen, -EPERM,
                  "config: '%s': %s is readable by group or others (mode %04o); chmod 600 it", key, path,
                  (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    size_t n = 0;
    for (;;) {
        ssize_t got = read(fd, buf + n, sizeof(buf) - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = fail(errbuf, errlen, -errno, "config: '%s': cannot read %s: %s", key, path, strerror(errno));
            goto fail;
        }
        if (got == 0 || (n += (size_t)got) == sizeof(buf))
            break;
    }
    close(fd);
    fd = -1;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    rc = check_token(key, buf, n, errbuf, errlen);
    if (rc == 0)
        rc = sha256(buf, n, digest);
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
fail:
    if (fd >= 0)
        close(fd);
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_scopes(const char *key, json_t *v, bool may_be_empty, unsigned *ret, char *errbuf,
                        size_t errlen)
{
    if (!json_is_array(v) || (!may_be_empty && json_array_size(v) == 0))
        return fail(errbuf, errlen, -EINVAL, "config: '%s' must be %sarray of scope names", key,
                    may_be_empty ? "an " : "a non-empty ");
    unsigned m = 0;
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        unsigned bit = json_is_string(s) ? l3_auth_scope_bit(json_string_value(s), json_string_length(s)) : 0;
        if (bit == 0)
            return fail(
                errbuf, errlen, -EINVAL,
                "config: '%s' has an unknown scope %s%.40s%s (known: read, write, monitor, admin, health, "
                "replicate)",
                key, json_is_string(s) ? "'" : "",
                json_is_string(s) ? json_string_value(s) : "(not a string)", json_is_string(s) ? "'" : "");
        m |= bit;
    }
    *ret = m;
    return 0;
}

/* A cert_subject: 1..L3_AUTH_MAX_SUBJECT_BYTES bytes, no NUL, in the RFC 2253 form (the
 * slash-separated "/CN=x/O=y" form of older openssl output is refused: it never matches). */
static int parse_subject(const char *k, json_t *v, tok_t *t, char *errbuf, size_t errlen)
{
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    if (n == 0 || n > L3_AUTH_MAX_SUBJECT_BYTES || strlen(json_string_value(v)) != n)
        return fail(errbuf, errlen, -EINVAL, "config: '%s' must be a certificate subject of 1..%u bytes", k,
                    L3_AUTH_MAX_SUBJECT_BYTES);
    if (json_string_value(v)[0] == '/')
        return fail(errbuf, errlen, -EINVAL,
                    "config: '%s' must be in RFC 2253 form (\"CN=name,O=org\", as printed by openssl x509 "
                    "-noout -subject -nameopt RFC2253)",
                    k);
    if (!subjects_ok)
        return fail(errbuf, errlen, -EINVAL,
                    "config: '%s' needs 'server.tls.client_ca' (the CA that verifies client certificates)",
                    k);
    free(t->subject);
    if ((t->subject = strdup(json_string_value(v))) == NULL)
        return -ENOMEM;
    return 0;
}

static int parse_token(json_t *e, size_t idx, set_t *set, char *errbuf, size_t errlen)
{
    char key[96];
    snprintf(key, sizeof(key), "auth.tokens[%zu]", idx);
    if (!json_is_object(e))
        return fail(errbuf, errlen, -EINVAL, "config: '%s' must be an object", key);
    tok_t *t = &set->tok[set->n];
    free(t->subject);
    memset(t, 0, sizeof(*t));
    int sources = 0, rc;
    bool have_scopes = false;
    const char *name;
    json_t *v;
    json_object_foreach(e, name, v)
    {
        char k[160];
        snprintf(k, sizeof(k), "%s.%.40s", key, name);
        if (strcmp(name, "name") == 0) {
            size_t n = json_is_string(v) ? json_string_length(v) : 0;
            if (n == 0 || n > L3_AUTH_MAX_NAME_BYTES || !token_chars_ok(json_string_value(v), n))
                return fail(errbuf, errlen, -EINVAL,
                            "config: '%s' must be 1..%u printable ASCII bytes without spaces", k,
                            L3_AUTH_MAX_NAME_BYTES);
            memcpy(t->name, json_string_value(v), n);
        } else if (strcmp(name, "scopes") == 0) {
            if ((rc = parse_scopes(k, v, false, &t->scopes, errbuf, errlen)) < 0)
                return rc;
            have_scopes = true;
        } else if (strcmp(name, "token") == 0) {
            if (!json_is_string(v))
                return fail(errbuf, errlen, -EINVAL, "config: '%s' must be a string", k);
            if ((rc = check_token(k, json_string_value(v), json_string_length(v), errbuf, errlen)) < 0 ||
                (rc = sha256(json_string_value(v), json_string_length(v), t->digest)) < 0)
                return rc;
            sources++;
        } else if (strcmp(name, "token_sha256") == 0) {
            const char *h = json_is_string(v) ? json_string_value(v) : "";
            if (!json_is_string(v) || json_string_length(v) != 64)
                return fail(errbuf, errlen, -EINVAL, "config: '%s' must be 64 hex digits (a SHA-256)", k);
            for (unsigned i = 0; i < 32; i++) {
                int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);
                if (hi < 0 || lo < 0)
                    return fail(errbuf, errlen, -EINVAL, "config: '%s' must be 64 hex digits (a SHA-256)", k);
                t->digest[i] = (unsigned char)(hi << 4 | lo);
            }
            sources++;
        } else if (strcmp(name, "cert_subject") == 0) {
            if ((rc = parse_subject(k, v, t, errbuf, errlen)) < 0)
                return rc;
        } else if (strcmp(name, "token_file") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= 4096 ||
                strlen(json_string_value(v)) != json_string_length(v))
                return fail(errbuf, errlen, -EINVAL, "config: '%s' must be a file path", k);
            if ((rc = read_token_file(k, json_string_value(v), t->digest, errbuf, errlen)) < 0)
                return rc;
            sources++;
        } else {
            return fail(errbuf, errlen, -EINVAL, "config: unknown key '%s'", k);
        }
    }
    if (t->name[0] == '\0')
        return fail(errbuf, errlen, -EINVAL, "config: '%s.name' is missing", key);
    if (!have_scopes)
        return fail(errbuf, errlen, -EINVAL, "config: '%s.scopes' is missing", key);
    if (sources > 1 || (sources == 0 && t->subject == NULL))
        return fail(errbuf, errlen, -EINVAL,
                    "config: '%s' needs exactly one of 'token', 'token_sha256', 'token_file' (or only a "
                    "'cert_subject')",
                    key);
    t->has_token = sources == 1;
    for (size_t j = 0; j < set->n; j++) {
        if (strcmp(set->tok[j].name, t->name) == 0)
            return fail(errbuf, errlen, -EINVAL, "config: '%s.name' '%s' is used twice", key, t->name);
        if (t->has_token && set->tok[j].has_token && CRYPTO_memcmp(set->tok[j].digest, t->digest, 32) == 0)
            return fail(errbuf, errlen, -EINVAL, "config: '%s' has the same token as '%s'", key,
                        set->tok[j].name);
        if (t->subject != NULL && set->tok[j].subject != NULL && strcmp(set->tok[j].subject, t->subject) == 0)
            return fail(errbuf, errlen, -EINVAL, "config: '%s.cert_subject' is also the subject of '%s'", key,
                        set->tok[j].name);
    }
    set->n++;
    return 0;
}

static void set_free(set_t *s)
{
    if (s->tok != NULL) {
        for (size_t i = 0; i < s->cap; i++) /* [n] may be an entry that failed to parse */
            free(s->tok[i].subject);
        OPENSSL_cleanse(s->tok, s->cap * sizeof(*s->tok));
    }
    free(s->tok);
    s->tok = NULL;
    s->n = s->cap = 0;
}

static int parse_set(json_t *auth, set_t *set, char *errbuf, size_t errlen)
{
    *set = (set_t){.protected_mode = true, .anon = L3_SCOPE_HEALTH};
    if (!json_is_object(auth))
        return fail(errbuf, errlen, -EINVAL, "config: 'auth' must be an object");
    int rc = 0;
    const char *name;
    json_t *v;
    json_object_foreach(auth, name, v)
    {
        if (strcmp(name, "tokens") == 0) {
            if (!json_is_array(v))
                return fail(errbuf, errlen, -EINVAL, "config: 'auth.tokens' must be an array");
            size_t n = json_array_size(v);
            if (n > L3_AUTH_MAX_TOKENS)
                return fail(errbuf, errlen, -EINVAL, "config: 'auth.tokens' has %zu entries; at most %u", n,
                            L3_AUTH_MAX_TOKENS);
            set_free(set);
            set->tok = calloc(n ? n : 1, sizeof(*set->tok));
            if (set->tok == NULL)
                return -ENOMEM;
            set->cap = n ? n : 1;
            for (size_t i = 0; i < n && rc == 0; i++)
                rc = parse_token(json_array_get(v, i), i, set, errbuf, errlen);
        } else if (strcmp(name, "anonymous") == 0) {
            rc = parse_scopes("auth.anonymous", v, true, &set->anon, errbuf, errlen);
        } else if (strcmp(name, "protected_mode") == 0) {
            if (!json_is_boolean(v))
                return fail(errbuf, errlen, -EINVAL, "config: 'auth.protected_mode' must be true or false");
            set->protected_mode = json_is_true(v);
        } else {
            return fail(errbuf, errlen, -EINVAL, "config: unknown key 'auth.%.60s'", name);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int l3_auth_configure(void *json_auth, char *errbuf, size_t errlen)
{
    set_t s;
    int rc = parse_set(json_auth, &s, errbuf, errlen);
    if (rc != 0) {
        set_free(&s);
        return rc;
    }
    set_free(&cur);
    cur = s;
    return 0;
}

void l3_auth_reset(void)
{
    set_free(&cur);
    cur = (set_t){.protected_mode = true, .anon = L3_SCOPE_HEALTH};
    subjects_ok = true; /* until config.c's check knows whether server.tls.client_ca is set */
    free(source);
    source = NULL;
}

void l3_auth_set_client_ca(bool on)
{
    subjects_ok = on;
}

int l3_auth_subject_entry(void)
{
    for (size_t i = 0; i < cur.n; i++)
        if (cur.tok[i].subject != NULL)
            return (int)i;
    return -1;
}

void l3_auth_set_source(const char *config_path)
{
    free(source);
    source = config_path != NULL ? strdup(config_path) : NULL;
}

int l3_auth_reload(const char *who)
{
    if (source == NULL)
        return 0; /* built-in defaults: nothing to re-read */
    char err[512] = "";
    json_error_t jerr;
    int rc;
    json_t *root = json_load_file(source, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rc = fail(err, sizeof(err), -EINVAL, "%s: line %d: %s", source, jerr.line, jerr.text);
    } else if (!json_is_object(root)) {
        rc = fail(err, sizeof(err), -EINVAL, "%s: top level must be an object", source);
    } else {
        json_t *a = json_object_get(root, "auth");
        json_t *empty = a == NULL ? json_object() : NULL;
        rc =
            empty == NULL && a == NULL ? -ENOMEM : l3_auth_configure(a != NULL ? a : empty, err, sizeof(err));
        json_decref(empty);
    }
    json_decref(root);
    if (rc != 0)
        L3_LOG(L3_LOG_ERROR, "%s: SIGHUP: tokens not reloaded, the previous set stays in force: %s", who,
               err);
    else
        L3_LOG(L3_LOG_INFO, "%s: SIGHUP: tokens reloaded (%zu tokens)", who, cur.n);
    return rc;
}

void l3_auth_log_mode(void)
{
    size_t certs = 0;
    for (size_t i = 0; i < cur.n; i++)
        certs += cur.tok[i].subject != NULL;
    if (cur.n > 0)
        L3_LOG(L3_LOG_INFO,
               "auth: %zu entries (%zu with a cert_subject); anonymous requests hold %u scope bits", cur.n,
               certs, cur.anon);
    else if (cur.protected_mode)
        L3_LOG(L3_LOG_INFO, "auth: no tokens configured: protected mode, only loopback peers are answered");
    else
        L3_LOG(L3_LOG_WARN,
               "auth: no tokens and auth.protected_mode is false: anyone who reaches the port can "
               "read, write and administer this server");
}

bool l3_auth_is_loopback(const void *sockaddr)
{
    const struct sockaddr *sa = sockaddr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = sockaddr;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = sockaddr;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return sa->sa_family == AF_UNIX;
}

/* The entry whose cert_subject is `subject` (a verified client certificate's), or NULL. */
static const tok_t *by_subject(const char *subject)
{
    for (size_t i = 0; subject != NULL && i < cur.n; i++)
        if (cur.tok[i].subject != NULL && strcmp(cur.tok[i].subject, subject) == 0)
            return &cur.tok[i];
    return NULL;
}

l3_auth_verdict_t l3_auth_decide(unsigned need, const char *authz, size_t authz_len, const char *cert_subject,
                                 bool loopback, const char **ret_name, unsigned *ret_scopes)
{
    *ret_name = "-";
    *ret_scopes = 0;
    if (cur.n == 0) {
        if (cur.protected_mode && !loopback)
            return L3_AUTH_PROTECTED;
        *ret_scopes = L3_SCOPE_ALL;
        return L3_AUTH_OK;
    }
    if (authz == NULL) {
        const tok_t *c = by_subject(cert_subject);
        if (c != NULL) {
            *ret_name = c->name;
            *ret_scopes = c->scopes | cur.anon;
            return (need & ~*ret_scopes) == 0 ? L3_AUTH_OK : L3_AUTH_FORBIDDEN;
        }
        *ret_scopes = cur.anon;
        return (need & ~cur.anon) == 0 ? L3_AUTH_OK : L3_AUTH_UNAUTHORIZED;
    }
    /* "Bearer" (any case), one or more spaces, the token, optional trailing spaces */
    if (authz_len < 7 || strncasecmp(authz, "bearer ", 7) != 0)
        return L3_AUTH_UNAUTHORIZED;
    size_t b = 7, e = authz_len;
    while (b < e && authz[b] == ' ')
        b++;
    while (e > b && (authz[e - 1] == ' ' || authz[e - 1] == '\t'))
        e--;
    if (e - b < L3_AUTH_MIN_TOKEN_BYTES || e - b > L3_AUTH_MAX_TOKEN_BYTES)
        return L3_AUTH_UNAUTHORIZED;
    unsigned char d[32];
    if (sha256(authz + b, e - b, d) != 0)
        return L3_AUTH_UNAUTHORIZED;
    const tok_t *hit = NULL;
    for (size_t i = 0; i < cur.n; i++) /* every entry, no early exit */
        if (CRYPTO_memcmp(cur.tok[i].digest, d, 32) == 0 && cur.tok[i].has_token)
            hit = &cur.tok[i];
    if (hit == NULL)
        return L3_AUTH_UNAUTHORIZED;
    *ret_name = hit->name;
    *ret_scopes = hit->scopes | cur.anon;
    return (need & ~*ret_scopes) == 0 ? L3_AUTH_OK : L3_AUTH_FORBIDDEN;
}
