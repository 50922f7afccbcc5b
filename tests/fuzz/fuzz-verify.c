/* SPDX-License-Identifier: MIT */
/*
 * fuzz-verify.c - libFuzzer target: l3_doc_verify on arbitrary bytes.
 *
 * The input is copied into an exact-size, 8-byte aligned buffer and verified. A rejection
 * must be L3_ECORRUPT with a message. When verify accepts, the buffer is a document every
 * other function may trust, so dt_exercise runs all readers (lookups, iteration, to_json,
 * stats), compaction, and a set/set_json/delete/incr on heap copies; any memory error
 * (ASan) or violated invariant (abort) is a finding. Seed corpus: encoded documents made
 * by gen-verify-corpus.c. Built like fuzz-json.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtex.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, 8, size ? size : 8) != 0)
        return 0;
    memcpy(buf, data, size);
    l3_doc_error_t err = {0};
    int rc = l3_doc_verify(buf, size, &err);
    if (rc != 0) {
        if (rc != L3_ECORRUPT || err.msg == NULL) {
            fprintf(stderr, "fuzz-verify: rejection rc %d msg %p\n", rc, (const void *)err.msg);
            abort();
        }
    } else if (dt_exercise(buf, size) != 0) {
        fprintf(stderr, "fuzz-verify: a verified buffer broke an invariant\n");
        abort();
    }
    free(buf);
    return 0;
}
