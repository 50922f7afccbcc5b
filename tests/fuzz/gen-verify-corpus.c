/* SPDX-License-Identifier: MIT */
/*
 * gen-verify-corpus.c - writes the seed corpus of fuzz-verify: encoded documents.
 *
 *   gen-verify-corpus DIR
 *
 * For each of a set of JSON texts it writes the document as parsed ("NN-plain"), in the
 * packed form ("NN-packed", "NN-packed-sealed"), sealed with its CRC ("NN-sealed"), and after a few mutations that leave appended nodes,
 * tombstones and garbage behind ("NN-mutated"); plus a few documents built from an empty
 * one through the API, and a handful of broken buffers (truncated, bad magic) so the
 * fuzzer starts next to the rejection paths too. The output is committed under
 * tests/fuzz/corpus/fuzz-verify/; rerun after a format change:
 *   build/tests/fuzz/gen-verify-corpus tests/fuzz/corpus/fuzz-verify
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "l3kv/doc.h"
#include "l3kv/error.h"

static const char *dir;
static int written;

static void put(const char *name, const uint8_t *buf, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    written++;
}

static const char *inputs[] = {
    "null",
    "true",
    "-42",
    "3.25",
    "12345678901234567890123456789",
    "\"a string with \\u0000 and \xc3\xa9\"",
    "[]",
    "{}",
    "[1,2,3]",
    "{\"a\":1}",
    "{\"a\":{\"b\":{\"c\":[1,{\"d\":null}]}}}",
    "{\"k\\u0000\":\"nul key\",\"\":\"empty key\",\"a/b~c\":[true,false]}",
    "{\"long member name beyond the inline limit\":\"long value beyond the inline limit too\"}",
    "[0.1,1e400,-0.0,9223372036854775807,-9223372036854775808,5e-324]",
    ("{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,\"k10\":10,"
     "\"k11\":11}"),
    "[[[[[[[[[[[[[[[[\"deep\"]]]]]]]]]]]]]]]]",
    "{\"users\":[{\"id\":1,\"name\":\"ann\",\"tags\":[\"x\",\"y\"]},{\"id\":2,\"name\":\"bob\",\"tags\":[]}]}",
};

static void mutate(l3_doc_t *d)
{
    l3_doc_error_t err;
    l3_doc_scalar_t s = {.type = L3_DOC_STRING, .str = {"a longer string that will not fit the old slot", 46}};
    l3_doc_scalar_t i = {.type = L3_DOC_INT, .i = 7};
    /* whatever applies to this document's shape; failures are fine */
    (void)L3_DOC_HEAP_DO(d, l3_doc_set(d, "/a", 2, 0, &s, NULL));
    (void)L3_DOC_HEAP_DO(d, l3_doc_set(d, "/0", 2, 0, &s, NULL));
    (void)L3_DOC_HEAP_DO(d, l3_doc_set_json(d, "/new", 4, 0, "{\"x\":[1,2,3]}", 13, &err));
    (void)L3_DOC_HEAP_DO(d, l3_doc_set(d, "/-", 2, 0, &i, NULL));
    (void)L3_DOC_HEAP_DO(d, l3_doc_set(d, "/k3", 3, 0, &s, NULL));
    (void)L3_DOC_HEAP_DO(d, l3_doc_delete(d, "/k5", 3, 0));
    (void)L3_DOC_HEAP_DO(d, l3_doc_delete(d, "/1", 2, 0));
    (void)L3_DOC_HEAP_DO(d, l3_doc_set(d, "/0", 2, L3_DOC_SET_INSERT, &i, NULL));
    l3_doc_set_lsn(d, 1234567);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    char name[64];
    for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
        uint8_t *buf;
        size_t len;
        l3_doc_error_t err;
        if (l3_doc_from_json(inputs[k], strlen(inputs[k]), NULL, &buf, &len, &err) != 0) {
            fprintf(stderr, "input %zu rejected: %s\n", k, err.msg);
            return 1;
        }
        snprintf(name, sizeof(name), "%02zu-plain", k);
        put(name, buf, l3_doc_size(buf));
        static _Alignas(8) uint8_t packed[L3_DOC_PACK_MAX_BYTES];
        size_t plen;
        if (l3_doc_pack(buf, packed, sizeof(packed), &plen) == 0) {
            snprintf(name, sizeof(name), "%02zu-packed", k);
            put(name, packed, plen);
            l3_doc_seal(packed);
            snprintf(name, sizeof(name), "%02zu-packed-sealed", k);
            put(name, packed, plen);
        }
        l3_doc_t d;
        l3_doc_heap_adopt(&d, buf, len);
        mutate(&d);
        snprintf(name, sizeof(name), "%02zu-mutated", k);
        put(name, d.buf, l3_doc_size(d.buf));
        l3_doc_seal(d.buf);
        snprintf(name, sizeof(name), "%02zu-sealed", k);
        put(name, d.buf, l3_doc_size(d.buf));
        l3_doc_heap_free(&d);
    }
    /* built through the API from an empty document */
    l3_doc_t d = {0};
    if (l3_doc_heap_new(&d, 0) != 0)
        return 1;
    put("api-empty", d.buf, l3_doc_size(d.buf));
    l3_doc_error_t err;
    (void)L3_DOC_HEAP_DO(&d, l3_doc_set_json(&d, "", 0, 0, "{}", 2, &err));
    for (int k = 0; k < 30; k++) {
        char path[32];
        int pl = snprintf(path, sizeof(path), "/member%d", k);
        l3_doc_scalar_t v = {.type = L3_DOC_INT, .i = k};
        (void)L3_DOC_HEAP_DO(&d, l3_doc_set(&d, path, (size_t)pl, 0, &v, NULL));
    }
    put("api-30-members", d.buf, l3_doc_size(d.buf));
    size_t size = l3_doc_size(d.buf);
    /* broken on purpose */
    put("broken-truncated", d.buf, size / 2);
    put("broken-header-only", d.buf, 32);
    d.buf[0] ^= 0xff;
    put("broken-magic", d.buf, size);
    d.buf[0] ^= 0xff;
    d.buf[8] ^= 0x08;
    put("broken-used", d.buf, size);
    l3_doc_heap_free(&d);
    fprintf(stderr, "wrote %d files to %s\n", written, dir);
    return 0;
}
