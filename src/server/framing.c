/* SPDX-License-Identifier: MIT */
/*
 * framing.c - the HTTP/1 framing guard.
 *
 * libh2o 2.2.5 frames HTTP/1 requests with its bundled picohttpparser and leaves the
 * ambiguous cases of RFC 9112 section 6.3 alone: with Content-Length and Transfer-Encoding
 * both present it reads chunked and keeps the connection; of two Content-Length values the
 * first wins and the rest of the body is parsed as a new request; a chunk size "0x2" reads
 * as the last chunk with an extension "x2". And a head the parser refuses is answered with a
 * fixed text/plain 400, not the API's JSON body.
 *
 * The guard sits where libh2o calls the parser: this executable defines phr_parse_request
 * and phr_decode_chunked, which the dynamic linker binds libh2o's calls to (they are
 * exported, PLT-called symbols of libh2o-evloop.so).
 *   - phr_parse_request calls the library's own parser (dlsym RTLD_NEXT) and checks the
 *     result (l3_framing_check). A refused head - a framing violation, or a syntax error
 *     once its end is in the buffer - is handed to libh2o as a stand-in request: the whole
 *     head consumed, method L3KV-REJECT from a static buffer that identifies the reason,
 *     path "/", no headers (so no body). The dispatcher recognises it by that pointer
 *     (l3_framing_refused; no client can forge a pointer) and answers 400 with the JSON
 *     body and Connection: close, so nothing after the head is parsed. The HTTP/2
 *     connection preface is left to libh2o.
 *   - phr_decode_chunked is a strict decoder with the library's contract and state
 *     layout: chunk-size is 1..15 hex digits followed by CRLF, or by BWS / ';' and a chunk
 *     extension without control characters; a chunk's data ends with CRLF. Anything else
 *     is -1, which libh2o answers 400 (JSON through the fallback filter in worker.c) and
 *     closes.
 * Bounds: each call scans only the bytes it is given; a head is never longer than
 * H2O_MAX_REQLEN.
 */
#include <dlfcn.h>
#include <string.h>
#include <sys/types.h>

#include <h2o.h>

#include "framing.h"
#include "l3kv/base.h"

/* picohttpparser's decoder state (same layout and state numbers as the library's). */
struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};
enum { C_SIZE, C_EXT, C_DATA, C_CRLF, C_TRAILER_HEAD, C_TRAILER_MIDDLE };

int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
                      size_t *path_len, int *minor_version, l3_framing_header_t *headers, size_t *num_headers,
                      size_t last_len);
ssize_t phr_decode_chunked(struct phr_chunked_decoder *d, char *buf, size_t *bufsz);
int phr_decode_chunked_is_in_data(struct phr_chunked_decoder *d);

typedef int (*parse_fn)(const char *, size_t, const char **, size_t *, const char **, size_t *, int *,
                        l3_framing_header_t *, size_t *, size_t);

#define REJECT_METHOD "L3KV-REJECT"
static const char reject_method[L3_FRAMING_NREASONS][sizeof(REJECT_METHOD)] = {
    REJECT_METHOD, REJECT_METHOD, REJECT_METHOD, REJECT_METHOD, REJECT_METHOD};
static const struct {
    const char *error, *detail;
} reasons[L3_FRAMING_NREASONS] = {
    [L3_FRAMING_OK] = {"bad_request", "malformed request"},
    [L3_FRAMING_SYNTAX] = {"bad_request", "malformed request line or header field"},
    [L3_FRAMING_CL_AND_TE] = {"bad_framing", "Content-Length together with Transfer-Encoding"},
    [L3_FRAMING_CL_CONFLICT] = {"bad_framing", "Content-Length values differ"},
    [L3_FRAMING_TE_REPEATED] = {"bad_framing", "more than one Transfer-Encoding header"},
};

static bool name_is(const l3_framing_header_t *h, const char *lit)
{
    size_t n = strlen(lit);
    return h->name_len == n && h2o_lcstris(h->name, n, lit, n);
}

l3_framing_t l3_framing_check(const l3_framing_header_t *h, size_t n)
{
    const l3_framing_header_t *cl = NULL;
    size_t nte = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name == NULL)
            return L3_FRAMING_SYNTAX; /* obs-fold (RFC 9112 section 5.2) */
        if (name_is(&h[i], "transfer-encoding")) {
            nte++;
        } else if (name_is(&h[i], "content-length")) {
            if (cl != NULL &&
                (cl->value_len != h[i].value_len || memcmp(cl->value, h[i].value, cl->value_len) != 0))
                return L3_FRAMING_CL_CONFLICT;
            cl = &h[i];
        }
    }
    if (nte > 1)
        return L3_FRAMING_TE_REPEATED;
    if (nte == 1 && cl != NULL)
        return L3_FRAMING_CL_AND_TE;
    return L3_FRAMING_OK;
}

/* Offset just past the blank line ending the head in buf[0..len), or 0 if not there yet. */
static size_t head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
                      size_t *path_len, int *minor_version, l3_framing_header_t *headers, size_t *num_headers,
                      size_t last_len)
{
    static parse_fn real;
    if (real == NULL && (real = (parse_fn)dlsym(RTLD_NEXT, "phr_parse_request")) == NULL)
        return -1;
    int r = real(buf, len, method, method_len, path, path_len, minor_version, headers, num_headers, last_len);
    l3_framing_t why;
    if (r == -1) {
        static const char preface[] = "PRI * HTTP/2";
        if (len >= sizeof(preface) - 1 && memcmp(buf, preface, sizeof(preface) - 1) == 0)
            return -1; /* libh2o switches to HTTP/2 */
        size_t end = head_end(buf, len);
        if (end == 0)
            return len >= H2O_MAX_REQLEN ? -1 : -2; /* answer once the head is complete */
        r = (int)end;
        why = L3_FRAMING_SYNTAX;
        *minor_version = 1;
    } else if (r > 0) {
        if ((why = l3_framing_check(headers, *num_headers)) == L3_FRAMING_OK)
            return r;
    } else {
        return r;
    }
    *method = reject_method[why];
    *method_len = sizeof(REJECT_METHOD) - 1;
    *path = "/";
    *path_len = 1;
    *num_headers = 0;
    return r;
}

bool l3_framing_refused(const h2o_req_t *req, const char **ret_error, const char **ret_detail)
{
    const char *m = req->input.method.base;
    if (m < reject_method[0] || m >= reject_method[L3_FRAMING_NREASONS])
        return false;
    size_t why = (size_t)(m - reject_method[0]) / sizeof(reject_method[0]);
    *ret_error = reasons[why].error;
    *ret_detail = reasons[why].detail;
    return true;
}

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* C_EXT sub-states kept in _hex_count: before any ';' (blanks allowed), inside the
 * extension, after CR. */
enum { EXT_START, EXT_IN, EXT_CR };

/* One byte of the chunk-size line after the digits: 1 = line complete, 0 = go on, -1 = bad. */
static int ext_byte(struct phr_chunked_decoder *d, char c)
{
    if (d->_hex_count == EXT_CR)
        return c == '\n' ? 1 : -1;
    if (c == '\r') {
        d->_hex_count = EXT_CR;
        return 0;
    }
    if (d->_hex_count == EXT_START) { /* BWS ";": e.g. the 'x' of "0x2" is refused here */
        if (c == ';')
            d->_hex_count = EXT_IN;
        return c == ';' || c == ' ' || c == '\t' ? 0 : -1;
    }
    return ((unsigned char)c < 0x20 && c != '\t') || c == 0x7f ? -1 : 0;
}

/* Strict chunked decoder: decodes buf[0..*bufsz) in place; the contract of picohttpparser's
 * phr_decode_chunked (-2 incomplete, -1 error, else the bytes left after the body). */
ssize_t phr_decode_chunked(struct phr_chunked_decoder *d, char *buf, size_t *bufsz)
{
    size_t dst = 0, src = 0, n = *bufsz;
    ssize_t ret = -2;
    while (src < n || d->_state == C_DATA) {
        if (d->_state == C_SIZE) {
            int v = hexdigit(buf[src]);
            if (v < 0) {
                if (d->_hex_count == 0)
                    goto fail;
                d->_hex_count = EXT_START;
                d->_state = C_EXT;
                continue;
            }
            if (d->_hex_count >= 15)
                goto fail;
            d->bytes_left_in_chunk = d->bytes_left_in_chunk * 16 + (size_t)v;
            d->_hex_count++;
            src++;
        } else if (d->_state == C_EXT) {
            int r = ext_byte(d, buf[src++]);
            if (r < 0)
                goto fail;
            if (r == 0)
                continue;
            d->_hex_count = 0;
            if (d->bytes_left_in_chunk == 0) {
                if (!d->consume_trailer)
                    goto complete;
                d->_state = C_TRAILER_HEAD;
            } else {
                d->_state = C_DATA;
            }
        } else if (d->_state == C_DATA) {
            size_t take = L3_MIN(n - src, d->bytes_left_in_chunk);
            memmove(buf + dst, buf + src, take);
            src += take;
            dst += take;
            d->bytes_left_in_chunk -= take;
            if (d->bytes_left_in_chunk > 0)
                break;
            d->_state = C_CRLF;
        } else if (d->_state == C_CRLF) {
            char c = buf[src++];
            if (c == '\r' && d->_hex_count == 0) {
                d->_hex_count = 1;
                continue;
            }
            if (c != '\n')
                goto fail;
            d->_hex_count = 0;
            d->_state = C_SIZE;
        } else if (d->_state == C_TRAILER_HEAD) {
            char c = buf[src++];
            if (c == '\r')
                continue;
            if (c == '\n')
                goto complete;
            d->_state = C_TRAILER_MIDDLE;
        } else if (d->_state == C_TRAILER_MIDDLE) {
            if (buf[src++] == '\n')
                d->_state = C_TRAILER_HEAD;
        } else {
            goto fail;
        }
    }
    goto out;
complete:
    ret = (ssize_t)(n - src);
    goto out;
fail:
    ret = -1;
out:
    if (dst != src)
        memmove(buf + dst, buf + src, n - src);
    *bufsz = dst;
    return ret;
}

int phr_decode_chunked_is_in_data(struct phr_chunked_decoder *d)
{
    return d->_state == C_DATA;
}
