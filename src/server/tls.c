/* SPDX-License-Identifier: MIT */
/*
 * tls.c - the TLS context and client certificates (OpenSSL).
 *
 * Runs in the supervisor (l3_srv_tls_setup, before fork) and in the workers (the
 * handshake callback). Protocol: TLS 1.2 and 1.3 only; in TLS 1.2 only forward-secret
 * AEAD suites, the server's order, no renegotiation, no compression.
 *
 * Client certificates (server.tls.client_ca): the context sends the CA file's names in a
 * CertificateRequest and verifies a presented chain against that file only (no system
 * store), at most L3_TLS_VERIFY_DEPTH certificates deep, with OpenSSL's checks for a TLS
 * client (validity dates, the clientAuth purpose when the certificate has an extended key
 * usage). A certificate that does not verify ends the handshake with an alert, so an
 * unverified certificate never reaches a request. "optional" (default) lets a client
 * without a certificate through (it authenticates with a token or stays anonymous);
 * "require" refuses the handshake without one. A session id context is set, so resumed
 * sessions keep their verified peer (OpenSSL stores it in the session).
 *
 * Finding the connection: h2o 2.2.5 gives no accessor for a socket's SSL *. Its TLS
 * sockets read and write through a BIO of the method named "h2o_socket" whose data is the
 * h2o_socket_t (lib/common/socket.c setup_bio); the info callback checks that name before
 * it uses the data and otherwise ignores the handshake (no subject: the certificate
 * grants nothing).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <h2o.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tls.h"

static l3_tls_peer_cb peer_cb;

int l3_srv_tls_subject(const void *x509, char *buf, size_t len)
{
    X509_NAME *name = X509_get_subject_name(x509);
    BIO *b = BIO_new(BIO_s_mem());
    if (name == NULL || b == NULL) {
        BIO_free(b);
        return -EIO;
    }
    int rc = 0;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) < 0) {
        rc = -EIO;
    } else {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        if (n < 0 || (size_t)n >= len || memchr(p, '\0', (size_t)n) != NULL) {
            rc = -ENAMETOOLONG;
        } else {
            memcpy(buf, p, (size_t)n);
            buf[n] = '\0';
        }
    }
    BIO_free(b);
    return rc;
}

static void on_tls_info(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if ((where & SSL_CB_HANDSHAKE_DONE) == 0 || peer_cb == NULL)
        return;
    BIO *b = SSL_get_rbio(ssl);
    const char *mname = b != NULL ? BIO_method_name(b) : NULL;
    if (mname == NULL || strcmp(mname, "h2o_socket") != 0)
        return;
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return; /* no certificate, or one that did not verify: it grants nothing */
    char subject[L3_TLS_MAX_SUBJECT_BYTES + 1];
    if (l3_srv_tls_subject(peer, subject, sizeof(subject)) != 0)
        return;
    peer_cb(BIO_get_data(b), subject);
}

int l3_srv_tls_check_pem(const char *key, const char *path, char *errbuf, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        snprintf(errbuf, errlen, "config: '%s': cannot read %s: %s", key, path, strerror(e));
        return -e;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    if (x == NULL) {
        snprintf(errbuf, errlen, "config: '%s': %s holds no PEM certificate", key, path);
        return -EINVAL;
    }
    X509_free(x);
    return 0;
}

static int fail(SSL_CTX *c, int rc, char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(SSL_CTX *c, int rc, char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen > 0)
        vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    SSL_CTX_free(c);
    ERR_clear_error();
    return rc;
}

static int setup_client_certs(SSL_CTX *c, const l3_srv_config_t *cfg, char *errbuf, size_t errlen)
{
    const char *ca = cfg->server.tls_client_ca;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (names == NULL || SSL_CTX_load_verify_locations(c, ca, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        snprintf(errbuf, errlen, "config: 'server.tls.client_ca': cannot load the certificates in %s", ca);
        return -EINVAL;
    }
    SSL_CTX_set_client_CA_list(c, names); /* takes ownership */
    int mode = SSL_VERIFY_PEER;
    if (cfg->server.tls_client_cert == L3_TLS_CLIENT_REQUIRE)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(c, mode, NULL);
    SSL_CTX_set_verify_depth(c, L3_TLS_VERIFY_DEPTH);
    static const unsigned char sid_ctx[] = "l3kv";
    if (SSL_CTX_set_session_id_context(c, sid_ctx, sizeof(sid_ctx) - 1) != 1) {
        snprintf(errbuf, errlen, "tls: cannot set the session id context");
        return -EIO;
    }
    SSL_CTX_set_info_callback(c, on_tls_info);
    return 0;
}

int l3_srv_tls_setup(const l3_srv_config_t *cfg, l3_tls_peer_cb on_peer, SSL_CTX **ret, char *errbuf,
                     size_t errlen)
{
    *ret = NULL;
    if (cfg->server.tls_cert == NULL)
        return 0;
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (c == NULL)
        return fail(c, -ENOMEM, errbuf, errlen, "tls: SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    /* TLS 1.2: forward-secret AEAD suites only (TLS 1.3 suites are all AEAD); no renegotiation */
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_set_cipher_list(c, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL") != 1)
        return fail(c, -EINVAL, errbuf, errlen, "tls: no usable cipher suite");
    if (SSL_CTX_use_certificate_chain_file(c, cfg->server.tls_cert) != 1)
        return fail(c, -EINVAL, errbuf, errlen, "config: 'server.tls.cert': cannot load %s",
                    cfg->server.tls_cert);
    if (SSL_CTX_use_PrivateKey_file(c, cfg->server.tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c) != 1)
        return fail(c, -EINVAL, errbuf, errlen,
                    "config: 'server.tls.key': cannot load %s or it does not match the certificate",
                    cfg->server.tls_key);
    if (cfg->server.tls_client_ca != NULL) {
        int rc = setup_client_certs(c, cfg, errbuf, errlen);
        if (rc != 0) {
            SSL_CTX_free(c);
            ERR_clear_error();
            return rc;
        }
        peer_cb = on_peer;
    }
    h2o_ssl_register_alpn_protocols(c, h2o_alpn_protocols);
    *ret = c;
    return 0;
}
