/* SPDX-License-Identifier: MIT */
/*
 * auth.h - access control: bearer tokens with scopes, anonymous scopes, protected mode.
 *
 * The "auth" section of config.json is parsed here (config.c hands the object over), into
 * one process-wide token set. The supervisor parses it at start (workers inherit it by
 * fork) and every process re-reads the configuration file on SIGHUP (l3_auth_reload); a
 * set that does not validate leaves the previous one in force. The dispatcher (routes.c)
 * asks l3_auth_decide() once per request. docs/security.md describes the model.
 */
#ifndef L3KV_SRV_AUTH_H
#define L3KV_SRV_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Scopes, as bits. */
#define L3_SCOPE_READ 0x01u
#define L3_SCOPE_WRITE 0x02u
#define L3_SCOPE_MONITOR 0x04u
#define L3_SCOPE_ADMIN 0x08u
#define L3_SCOPE_HEALTH 0x10u
#define L3_SCOPE_REPLICATE 0x20u
#define L3_SCOPE_ALL 0x3fu

#define L3_AUTH_MAX_TOKENS 256u     /* entries in auth.tokens */
#define L3_AUTH_MIN_TOKEN_BYTES 16u /* shorter tokens are refused */
#define L3_AUTH_MAX_TOKEN_BYTES 4096u
#define L3_AUTH_MAX_NAME_BYTES 64u
#define L3_AUTH_MAX_SUBJECT_BYTES 1024u /* a cert_subject (tls.h keeps subjects up to this) */

typedef enum {
    L3_AUTH_OK = 0,       /* the request has the scope */
    L3_AUTH_PROTECTED,    /* 403 protected_mode: no tokens and a non-loopback peer */
    L3_AUTH_UNAUTHORIZED, /* 401: no token, an unknown token or another scheme */
    L3_AUTH_FORBIDDEN,    /* 403 forbidden: a known token (or none) without the scope */
} l3_auth_verdict_t;

/** Parse the "auth" object (a json_t *) and install it as the process's token set.
 *  Errors name the key ("auth.tokens[1].token_file: ..."). 0 or -errno. */
int l3_auth_configure(void *json_auth, char *errbuf, size_t errlen);
/** Are cert_subject entries allowed (server.tls.client_ca is set)? config.c's check sets it;
 *  a SIGHUP reload refuses a set with cert_subject entries while it is false. */
void l3_auth_set_client_ca(bool on);
/** Index of the first installed entry with a cert_subject, or -1. */
int l3_auth_subject_entry(void);
/** Remember the configuration file that l3_auth_reload() re-reads. */
void l3_auth_set_source(const char *config_path);
/** Re-read the source file's "auth" section; on any error keep the current set and log why.
 *  `who` prefixes the log line ("supervisor", "worker 3"). 0 or -errno. */
int l3_auth_reload(const char *who);
/** Log the access-control mode once at start (warns when protected mode is off). */
void l3_auth_log_mode(void);

/** The scope bit for a name, or 0. */
unsigned l3_auth_scope_bit(const char *name, size_t len);
/** The name of one scope bit. */
const char *l3_auth_scope_name(unsigned bit);

/**
 * Decide a request: `need` is the scope bit the route needs (0 = none), `authz` the
 * Authorization header (NULL when absent), `cert_subject` the subject of the connection's
 * verified client certificate (NULL: none), `loopback` whether the peer is a loopback
 * address. *ret_name gets the token's name ("-" without one) for logging, *ret_scopes the
 * scopes the request holds (e.g. /metrics shows process ids only with admin).
 */
l3_auth_verdict_t l3_auth_decide(unsigned need, const char *authz, size_t authz_len, const char *cert_subject,
                                 bool loopback, const char **ret_name, unsigned *ret_scopes);

/** Is the socket address (struct sockaddr *) a loopback peer? */
bool l3_auth_is_loopback(const void *sockaddr);

/** Free the process's token set (tests, exit). */
void l3_auth_reset(void);

#endif
