/* SPDX-License-Identifier: MIT */
/*
 * fuzz-patch.c - libFuzzer target: JSON Patch (RFC 6902) and merge patch (RFC 7396)
 * documents applied to documents, both taken from the input.
 *
 * Input: one mode byte, then the target document's JSON text, a NUL byte, and the patch
 * text. Mode bit 0 picks merge patch over JSON Patch; bits 1..3 pick the document size
 * limit (l3_doc_t.limit: 512 << n bytes, n = 0 meaning 4 MiB - never none, as in the server:
 * without one, a patch of twenty copies of "" doubles the document twenty times); bit 4
 * applies the patch twice.
 * Whatever a patch does - succeed or fail half way (the document layer is not atomic) -
 * the document must still pass l3_doc_verify(), stay within its limit and nesting bound,
 * and round-trip: its JSON parses back to a document whose JSON is the same text. A
 * failure must be one of the codes the API documents. Any memory error (ASan), leak or
 * abort is a finding. Seed corpus: corpus/fuzz-patch/. Built like fuzz-json.c.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/doc.h"
#include "l3kv/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const l3_doc_t *d, const char *what)
{
    l3_doc_error_t e = {0};
    size_t used = l3_doc_size(d->buf);
    if (l3_doc_verify(d->buf, used, &e) != 0) {
        fprintf(stderr, "fuzz-patch: %s: document fails verify: %s at %zu\n", what, e.msg, e.offset);
        abort();
    }
    if (d->limit && used > d->limit) {
        fprintf(stderr, "fuzz-patch: %s: %zu bytes past the limit %zu\n", what, used, d->limit);
        abort();
    }
    l3_doc_stats_t st;
    l3_doc_stats(d->buf, &st);
    if (st.max_depth > L3_DOC_MAX_DEPTH) {
        fprintf(stderr, "fuzz-patch: %s: depth %zu\n", what, st.max_depth);
        abort();
    }
    l3_buf_t a = {0}, b = {0};
    if (l3_doc_to_json(d->buf, L3_DOC_ROOT, &a) != 0)
        return; /* out of memory */
    uint8_t *rb;
    size_t rl;
    int rc = l3_doc_from_json(a.ptr, a.len, NULL, &rb, &rl, &e);
    if (rc == -ENOMEM) {
        free(a.ptr);
        return;
    }
    if (rc != 0) {
        fprintf(stderr, "fuzz-patch: %s: own output does not parse (%d: %s): %.*s\n", what, rc, e.msg,
                (int)(a.len > 200 ? 200 : a.len), a.ptr);
        abort();
    }
    if (l3_doc_to_json(rb, L3_DOC_ROOT, &b) == 0 && (a.len != b.len || memcmp(a.ptr, b.ptr, a.len) != 0)) {
        fprintf(stderr, "fuzz-patch: %s: round trip differs\n", what);
        abort();
    }
    free(rb);
    free(a.ptr);
    free(b.ptr);
}

static bool documented(int rc)
{
    switch (rc) {
    case 0:
    case L3_ESYNTAX:
    case L3_EDEPTH:
    case L3_EPATH:
    case L3_ENOTFOUND:
    case L3_ETYPE:
    case L3_ERANGE:
    case L3_ETOOBIG:
    case L3_EDOCSIZE:
    case -ENOMEM:
        return true;
    default:
        return false;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t mode = data[0];
    const char *text = (const char *)data + 1;
    size_t tlen = size - 1;
    const char *nul = memchr(text, 0, tlen);
    if (!nul)
        return 0;
    size_t dlen = (size_t)(nul - text);
    const char *patch = nul + 1;
    size_t plen = tlen - dlen - 1;
    uint8_t *buf;
    size_t len;
    l3_doc_error_t e;
    if (l3_doc_from_json(text, dlen, NULL, &buf, &len, &e) != 0)
        return 0;
    l3_doc_t d;
    l3_doc_heap_adopt(&d, buf, len);
    unsigned lim = (mode >> 1) & 7;
    d.limit = (size_t)512 << (lim ? lim : 13);
    if (len > d.limit)
        d.limit = len; /* the starting document must fit its limit */
    for (int round = 0; round < ((mode & 0x10) ? 2 : 1); round++) {
        int rc = (mode & 1) ? l3_doc_merge_patch(&d, patch, plen, &e) : l3_doc_json_patch(&d, patch, plen, &e);
        if (!documented(rc)) {
            fprintf(stderr, "fuzz-patch: undocumented return %d (%s)\n", rc, l3_strerror(rc));
            abort();
        }
        check(&d, (mode & 1) ? "merge patch" : "JSON Patch");
    }
    l3_doc_heap_free(&d);
    return 0;
}
