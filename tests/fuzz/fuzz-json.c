/* SPDX-License-Identifier: MIT */
/*
 * fuzz-json.c - libFuzzer target: JSON text -> document -> JSON text.
 *
 * For any input: l3_doc_from_json and l3_doc_check_json agree (same result, same error
 * offset, offset inside the input). When the input is accepted: the document verifies,
 * to_json emits text that parses again, and serialising that second document gives the
 * very same bytes (the output is a fixed point); every reader/compaction/write invariant
 * of dt_exercise holds. l3_doc_pack_json (JSON straight to the packed form) never accepts
 * what from_json refuses, and what it writes is what l3_doc_pack writes of the parsed
 * document, byte for byte (where both pack). jansson, a second strict RFC 8259 parser, must agree on validity
 * except where jansson has limits of its own (numbers beyond int64/double, NUL in keys,
 * nesting beyond its 2048) or the input nests deeper than our limit. Any violation aborts, which libFuzzer reports as a crash.
 * Built with -fsanitize=fuzzer,address when -Dfuzzing=true; always built with replay.c as
 * a corpus replayer (test suite 'fuzz').
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dtex.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond, ...)                                                                               \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz-json: %s: ", #cond);                                                       \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy so ASan sees any read past the end of the text */
    char *json = malloc(size ? size : 1);
    if (!json)
        return 0;
    memcpy(json, data, size);
    uint8_t *buf = NULL;
    size_t len = 0;
    l3_doc_error_t err = {0}, err2 = {0};
    int rc = l3_doc_from_json(json, size, NULL, &buf, &len, &err);
    int rc2 = l3_doc_check_json(json, size, NULL, &err2);
    FUZZ_ASSERT(rc == rc2, "from_json %d, check_json %d", rc, rc2);
    static _Alignas(8) uint8_t direct[L3_DOC_PACK_MAX_BYTES], packed[L3_DOC_PACK_MAX_BYTES];
    size_t dlen = 0, plen = 0;
    int dr = l3_doc_pack_json(json, size, NULL, direct, sizeof(direct), &dlen);
    FUZZ_ASSERT(dr != 0 || rc == 0, "pack_json accepts what from_json refuses (%d)", rc);
    if (rc == 0 && dr == 0) {
        int pr = l3_doc_pack(buf, packed, sizeof(packed), &plen);
        FUZZ_ASSERT(pr == 0 || dlen > L3_DOC_PACK_MAX_BYTES - 64, "pack refuses (%d) what pack_json packs", pr);
        FUZZ_ASSERT(pr != 0 || (plen == dlen && memcmp(packed, direct, plen) == 0), "the two packed forms differ");
    }

    /* differential: jansson's verdict */
    json_error_t je;
    json_t *jv = json_loadb(json, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (jv && rc != 0 && !memchr(json, 0, size)) /* jansson stops at a NUL byte after the value */
        FUZZ_ASSERT(rc == L3_EDEPTH, "jansson accepts what we reject (%d at %zu: %s)", rc, err.offset,
                    err.msg ? err.msg : "?");
    if (!jv && rc == 0)
        FUZZ_ASSERT(strstr(je.text, "overflow") || strstr(je.text, "NUL byte in object key") ||
                        strstr(je.text, "too big") || strstr(je.text, "depth"),
                    "we accept what jansson rejects: %s", je.text);
    json_decref(jv);
    if (rc != 0) {
        FUZZ_ASSERT(rc == L3_ESYNTAX || rc == L3_EDEPTH || rc == L3_ETOOBIG, "rc %d", rc);
        FUZZ_ASSERT(err.offset <= size && err.msg != NULL, "error offset %zu of %zu", err.offset, size);
        FUZZ_ASSERT(err.offset == err2.offset, "offsets %zu vs %zu", err.offset, err2.offset);
        free(json);
        return 0;
    }
    l3_doc_error_t verr = {0};
    int vr = l3_doc_verify(buf, len, &verr);
    FUZZ_ASSERT(vr == 0, "parsed document fails verify at %zu: %s", verr.offset, verr.msg ? verr.msg : "?");

    l3_buf_t out = {0};
    FUZZ_ASSERT(l3_doc_to_json(buf, L3_DOC_ROOT, &out) == 0, "to_json");
    uint8_t *buf2 = NULL;
    size_t len2 = 0;
    /* the output nests exactly as deep as the input, so the default limit accepts it again */
    rc = l3_doc_from_json(out.ptr ? out.ptr : "", out.len, NULL, &buf2, &len2, &err);
    FUZZ_ASSERT(rc == 0, "to_json output rejected at %zu: %s", err.offset, err.msg ? err.msg : "?");
    l3_buf_t out2 = {0};
    FUZZ_ASSERT(l3_doc_to_json(buf2, L3_DOC_ROOT, &out2) == 0, "to_json 2");
    FUZZ_ASSERT(out.len == out2.len && memcmp(out.ptr, out2.ptr, out.len) == 0, "output is not a fixed point");

    if (size < 4096) /* the full exercise is O(n) per write; keep big inputs fast */
        FUZZ_ASSERT(dt_exercise(buf, len) == 0, "dt_exercise");

    free(out.ptr);
    free(out2.ptr);
    free(buf2);
    free(buf);
    free(json);
    return 0;
}
