/* SPDX-License-Identifier: MIT */
/*
 * tls.h - the server's TLS context (server.tls) and client certificates.
 *
 * The supervisor builds one SSL_CTX before forking (workers inherit it). With
 * server.tls.client_ca the context asks every client for a certificate and verifies a
 * presented one against that CA file; a certificate that does not verify fails the
 * handshake. When a handshake completes, the verified certificate's subject (RFC 2253
 * form, see l3_srv_tls_subject) is handed to the worker's callback, which keeps it with
 * the connection for auth.c's cert_subject entries. docs/security.md describes the setup.
 */
#ifndef L3KV_SRV_TLS_H
#define L3KV_SRV_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "config.h"

/** Longest subject kept for a connection (longer ones match no entry). */
#define L3_TLS_MAX_SUBJECT_BYTES 1024u
/** Longest certificate chain accepted from a client (certificates below the trust anchor). */
#define L3_TLS_VERIFY_DEPTH 8

/** Called once per completed handshake on a connection whose client presented a
 *  certificate that verified: `sock` is the h2o_socket_t, `subject` its subject. */
typedef void (*l3_tls_peer_cb)(void *h2o_sock, const char *subject);

/**
 * Build the TLS context for cfg->server.tls (TLS 1.2+, forward-secret AEAD suites, ALPN
 * h2/http/1.1; with client_ca: client certificates). *ret = NULL when TLS is off.
 * Errors name the key. 0 or -errno.
 */
int l3_srv_tls_setup(const l3_srv_config_t *cfg, l3_tls_peer_cb on_peer, SSL_CTX **ret, char *errbuf,
                     size_t errlen);

/** Can `path` be read as a PEM file holding at least one certificate? Errors name `key`.
 *  0 or -errno (config.c's check, so --check refuses what the start would). */
int l3_srv_tls_check_pem(const char *key, const char *path, char *errbuf, size_t errlen);

/**
 * The subject of a certificate (X509 *) as X509_NAME_print_ex with XN_FLAG_RFC2253 writes
 * it, which is what `openssl x509 -noout -subject -nameopt RFC2253` prints after
 * "subject=": e.g. "CN=alice,OU=ops,O=Example". 0, or -ENAMETOOLONG / -EIO.
 */
int l3_srv_tls_subject(const void *x509, char *buf, size_t len);

#endif
