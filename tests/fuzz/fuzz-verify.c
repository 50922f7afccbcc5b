/* SPDX-License-Identifier: MIT */
/*
 * fuzz-verify.c - libFuzzer target: l3_doc_verify on arbitrary bytes.
 *
 * The input is copied into an exact-size, 8-byte aligned buffer and verified. A rejection
 * must be L3_ECORRUPT with a message. When verify accepts, the buffer is a document every
 * other function may trust, so dt_exercise runs all readers (lookups, iteration, to_json,
 * stats), compaction, and a set/set_json/delete/incr on heap copies; any memory error
 * (ASan) or violated invariant (abort) is a finding. The same bytes then go through
 * l3_doc_upgrade (where bytes of an older writer enter): it must accept what verify
 * accepted, reject with L3_ECORRUPT and a message otherwise, and whatever it accepts (a
 * rebuilt previous-version document) must pass l3_doc_verify within the input's length and
 * survive dt_exercise. Seed corpus: encoded documents made by gen-verify-corpus.c, the
 * v2-* files by the previous format version's build of it. Built like fuzz-json.c.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtex.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_rejection(const char *what, int rc, const l3_doc_error_t *err)
{
    if (rc != L3_ECORRUPT || err->msg == NULL) {
        fprintf(stderr, "fuzz-verify: %s rejection rc %d msg %p\n", what, rc, (const void *)err->msg);
        abort();
    }
}

/* l3_doc_upgrade on a copy: consistent with verify's answer; an accepted result is a
 * current-version document no longer than the input. */
static void check_upgrade(const uint8_t *data, size_t size, int verify_rc)
{
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, 8, size ? size : 8) != 0)
        return;
    memcpy(buf, data, size);
    l3_doc_error_t err = {0};
    int rc = l3_doc_upgrade(buf, size, &err);
    if (rc == -ENOMEM) {
        free(buf);
        return;
    }
    if (verify_rc == 0 && rc != 0) {
        fprintf(stderr, "fuzz-verify: upgrade refused a current document (rc %d)\n", rc);
        abort();
    }
    if (rc != 0) {
        check_rejection("upgrade", rc, &err);
    } else {
        size_t used = l3_doc_size(buf);
        if (used > size || l3_doc_verify(buf, used, NULL) != 0 || dt_exercise(buf, used) != 0) {
            fprintf(stderr, "fuzz-verify: an upgraded buffer broke an invariant\n");
            abort();
        }
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, 8, size ? size : 8) != 0)
        return 0;
    memcpy(buf, data, size);
    l3_doc_error_t err = {0};
    int rc = l3_doc_verify(buf, size, &err);
    if (rc != 0) {
        check_rejection("verify", rc, &err);
    } else if (dt_exercise(buf, size) != 0) {
        fprintf(stderr, "fuzz-verify: a verified buffer broke an invariant\n");
        abort();
    }
    free(buf);
    check_upgrade(data, size, rc);
    return 0;
}
