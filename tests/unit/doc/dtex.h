/* SPDX-License-Identifier: MIT */
/*
 * dtex.h - exercise every read and a few writes on a buffer that l3_doc_verify() accepted
 * (tests and fuzz targets). A verified buffer must be safe for every function, so this
 * runs them all and checks the invariants that hold for any valid document:
 *   - to_json succeeds and emits strict JSON that parses back to the same bytes;
 *   - stats agree with size/garbage; every member/element the iterators show can be
 *     found again by key/index;
 *   - compaction produces a verified document with the same JSON and no garbage;
 *   - set / set_json / incr / delete on a heap copy leave a document that verifies.
 * Returns the number of violated invariants (after printing each); memory errors are for
 * the sanitizers to catch. No dependency on the test harness.
 */
#ifndef L3KV_TESTS_DTEX_H
#define L3KV_TESTS_DTEX_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/doc.h"
#include "l3kv/error.h"

#define DTEX_FAIL(...)                                                                                       \
    do {                                                                                                     \
        fprintf(stderr, "dt_exercise: " __VA_ARGS__);                                                        \
        fputc('\n', stderr);                                                                                 \
        bad++;                                                                                               \
    } while (0)

static inline int dtex_json(const uint8_t *buf, uint32_t slot, char **ret, size_t *ret_len)
{
    l3_buf_t b = {0};
    int rc = l3_doc_to_json(buf, slot, &b);
    if (rc == 0 && l3_buf_reserve(&b, 1) == 0)
        b.ptr[b.len] = 0;
    *ret = b.ptr;
    *ret_len = b.len;
    return rc;
}

/* Exact decimal value comparison of two JSON texts, numbers by value (see dt.h's
 * dt_json_numeq; duplicated here to keep this header free of the test harness). */
static inline int dtex_digits(const char *s, size_t n, size_t *i, char *out, size_t cap, long long *exp, int *neg)
{
    size_t nd = 0, lead = 1;
    long long frac = 0, e = 0;
    int dot = 0;
    *neg = 0;
    if (*i < n && s[*i] == '-') {
        *neg = 1;
        (*i)++;
    }
    for (; *i < n; (*i)++) {
        char c = s[*i];
        if (c >= '0' && c <= '9') {
            if (lead && c == '0') {
                if (dot)
                    frac++;
                continue;
            }
            lead = 0;
            if (nd < cap)
                out[nd++] = c;
            if (dot)
                frac++;
        } else if (c == '.') {
            dot = 1;
        } else {
            break;
        }
    }
    if (*i < n && (s[*i] == 'e' || s[*i] == 'E')) {
        (*i)++;
        int en = 0;
        if (*i < n && (s[*i] == '+' || s[*i] == '-'))
            en = s[(*i)++] == '-';
        while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
            if (e < 100000000000LL)
                e = e * 10 + (s[*i] - '0');
            (*i)++;
        }
        if (en)
            e = -e;
    }
    while (nd > 0 && out[nd - 1] == '0') {
        nd--;
        e++;
    }
    *exp = nd ? e - frac : 0;
    if (!nd)
        *neg = 0;
    return (int)nd;
}

static inline int dtex_numeq(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i = 0, j = 0;
    int in_str = 0;
    while (i < an && j < bn) {
        if (!in_str && (a[i] == '-' || (a[i] >= '0' && a[i] <= '9')) &&
            (b[j] == '-' || (b[j] >= '0' && b[j] <= '9'))) {
            char da[1100], db[1100];
            long long ea, eb;
            int na, nb;
            int ka = dtex_digits(a, an, &i, da, sizeof(da), &ea, &na);
            int kb = dtex_digits(b, bn, &j, db, sizeof(db), &eb, &nb);
            if (ka != kb || ea != eb || na != nb || memcmp(da, db, (size_t)ka) != 0)
                return 0;
            continue;
        }
        if (a[i] != b[j])
            return 0;
        if (in_str && a[i] == '\\') {
            if (i + 1 >= an || j + 1 >= bn || a[i + 1] != b[j + 1])
                return 0;
            i += 2;
            j += 2;
            continue;
        }
        if (a[i] == '"')
            in_str = !in_str;
        i++;
        j++;
    }
    return i == an && j == bn;
}

static inline int dtex_mutate(const uint8_t *buf, size_t len, int which)
{
    int bad = 0;
    l3_doc_t d = {0};
    uint8_t *copy = NULL;
    if (posix_memalign((void **)&copy, 8, len) != 0)
        return 0;
    memcpy(copy, buf, len);
    l3_doc_heap_adopt(&d, copy, len);
    l3_doc_val_t root;
    l3_doc_val(d.buf, L3_DOC_ROOT, &root);
    l3_doc_scalar_t s = {.type = L3_DOC_INT, .i = 42};
    l3_doc_scalar_t str = {.type = L3_DOC_STRING, .str = {"a longer replacement string value", 33}};
    int rc = 0;
    const char *what = "";
    switch (which) {
    case 0:
        what = "set /zz";
        rc = L3_DOC_HEAP_DO(&d, l3_doc_set(&d, "/zz", 3, 0, &s, NULL));
        break;
    case 1:
        what = "set_json /0";
        {
            l3_doc_error_t e;
            rc = L3_DOC_HEAP_DO(&d, l3_doc_set_json(&d, "/0", 2, 0, "{\"k\":[1,\"x\"]}", 13, &e));
        }
        break;
    case 2:
        what = "delete first";
        if (root.type == L3_DOC_OBJECT) {
            uint32_t pos = 0, klen, slot;
            const char *key;
            if (l3_doc_obj_next(d.buf, L3_DOC_ROOT, &pos, &key, &klen, &slot) == 1) {
                char path[80] = "/";
                size_t pl = 1;
                for (uint32_t i = 0; i < klen && pl + 3 < sizeof(path); i++) {
                    if (key[i] == '~' || key[i] == '/') {
                        path[pl++] = '~';
                        path[pl++] = key[i] == '~' ? '0' : '1';
                    } else {
                        path[pl++] = key[i];
                    }
                }
                if (klen < 40)
                    rc = L3_DOC_HEAP_DO(&d, l3_doc_delete(&d, path, pl, L3_DOC_SET_PATH_POINTER));
            }
        } else {
            rc = L3_DOC_HEAP_DO(&d, l3_doc_delete(&d, "/0", 2, 0));
        }
        break;
    case 3:
        what = "set root member string";
        if (root.type == L3_DOC_OBJECT) {
            uint32_t pos = 0, klen, slot;
            const char *key;
            if (l3_doc_obj_next(d.buf, L3_DOC_ROOT, &pos, &key, &klen, &slot) == 1 && klen < 40 &&
                memchr(key, '~', klen) == NULL && memchr(key, '/', klen) == NULL) {
                char path[48] = "/";
                memcpy(path + 1, key, klen);
                rc = L3_DOC_HEAP_DO(&d, l3_doc_set(&d, path, klen + 1, L3_DOC_SET_PATH_POINTER, &str, NULL));
            }
        } else {
            rc = L3_DOC_HEAP_DO(&d, l3_doc_set(&d, "/0", 2, 0, &str, NULL));
        }
        break;
    case 4:
        what = "incr /0";
        {
            int64_t nv;
            rc = L3_DOC_HEAP_DO(&d, l3_doc_incr(&d, "/0", 2, 0, 1, &nv));
        }
        break;
    default:
        what = "set root";
        rc = L3_DOC_HEAP_DO(&d, l3_doc_set(&d, "", 0, 0, &s, NULL));
        break;
    }
    if (rc == 0) {
        l3_doc_error_t err = {0};
        int vr = l3_doc_verify(d.buf, l3_doc_size(d.buf), &err);
        if (vr != 0)
            DTEX_FAIL("%s succeeded but the result fails verify: %d at %zu: %s", what, vr, err.offset,
                      err.msg ? err.msg : "?");
    }
    l3_doc_heap_free(&d);
    return bad;
}

/** Run everything on a verified buffer of len bytes; returns the number of violations. */
/* Do two documents serialise to the same bytes (numeq: the same values, a number's spelling
 * aside, as after a trip through JSON text: a BIGNUM text such as 0e400 parses as 0.0)? */
static inline bool dtex_same_json(const uint8_t *a, const uint8_t *b, bool numeq)
{
    char *ja = NULL, *jb = NULL;
    size_t la = 0, lb = 0;
    bool same = dtex_json(a, L3_DOC_ROOT, &ja, &la) == 0 && dtex_json(b, L3_DOC_ROOT, &jb, &lb) == 0 &&
                (numeq ? dtex_numeq(ja, la, jb, lb) : la == lb && memcmp(ja, jb, la) == 0);
    free(ja);
    free(jb);
    return same;
}

static inline int dt_exercise(const uint8_t *buf, size_t len)
{
    int bad = 0;
    size_t used = l3_doc_size(buf), garbage = l3_doc_garbage(buf);
    if (used > len)
        DTEX_FAIL("size %zu > verified length %zu", used, len);
    if (garbage > used)
        DTEX_FAIL("garbage %zu > size %zu", garbage, used);
    (void)l3_doc_lsn(buf);
    (void)l3_doc_should_compact(buf);
    l3_doc_stats_t st;
    l3_doc_stats(buf, &st);
    if (st.used != used || st.garbage != garbage)
        DTEX_FAIL("stats used/garbage %zu/%zu != %zu/%zu", st.used, st.garbage, used, garbage);

    /* serialise; the text must be strict JSON that comes back identical */
    char *j1 = NULL;
    size_t l1 = 0;
    if (dtex_json(buf, L3_DOC_ROOT, &j1, &l1) != 0) {
        DTEX_FAIL("to_json failed");
    } else {
        l3_doc_parse_opts_t o = {.max_depth = L3_DOC_HARD_MAX_DEPTH};
        l3_doc_error_t err = {0};
        uint8_t *b2 = NULL;
        size_t len2 = 0;
        int rc = l3_doc_from_json(j1, l1, &o, &b2, &len2, &err);
        if (rc != 0) {
            DTEX_FAIL("to_json output is not valid JSON: %d at %zu (%s): %.200s", rc, err.offset,
                      err.msg ? err.msg : "?", j1);
        } else {
            char *j2 = NULL;
            size_t l2 = 0;
            /* same bytes, except that a number may change its spelling (a stored BIGNUM text
             * such as 1e000 comes back from the parser as the double 1.0) but not its value */
            if (dtex_json(b2, L3_DOC_ROOT, &j2, &l2) != 0 || !dtex_numeq(j1, l1, j2, l2))
                DTEX_FAIL("JSON does not round-trip:\n  %.200s\n  %.200s", j1, j2 ? j2 : "");
            free(j2);
            free(b2);
        }
    }
    free(j1);

    /* walk the root's children through every reader */
    l3_doc_val_t v;
    l3_doc_val(buf, L3_DOC_ROOT, &v);
    if (v.type >= L3_DOC_TYPE_MAX)
        DTEX_FAIL("root type %d", v.type);
    if (v.type == L3_DOC_OBJECT) {
        uint32_t pos = 0, klen, slot, n = 0;
        const char *key;
        int rc;
        while ((rc = l3_doc_obj_next(buf, L3_DOC_ROOT, &pos, &key, &klen, &slot)) == 1) {
            uint32_t s2;
            if (l3_doc_obj_find(buf, L3_DOC_ROOT, key, klen, &s2) != 0)
                DTEX_FAIL("member %u (klen %u) from obj_next not found by obj_find", n, klen);
            l3_doc_val_t cv;
            l3_doc_val(buf, slot, &cv);
            if (cv.type == L3_DOC_ARRAY)
                for (uint32_t i = 0; i < cv.count && i < 64; i++)
                    if (l3_doc_arr_at(buf, slot, i, &s2) != 0)
                        DTEX_FAIL("element %u of a %u-array missing", i, cv.count);
            if (++n > v.count + 1)
                break;
        }
        if (rc != 0 || n != v.count)
            DTEX_FAIL("obj_next gave %u members (rc %d), count says %u", n, rc, v.count);
        uint32_t s2;
        (void)l3_doc_lookup(buf, "/a/b/0", 6, L3_DOC_PATH_POINTER, &s2);
        (void)l3_doc_lookup(buf, "a.0.b", 5, L3_DOC_PATH_DOTTED, &s2);
    } else if (v.type == L3_DOC_ARRAY) {
        for (uint32_t i = 0; i < v.count; i++) {
            uint32_t s2;
            if (l3_doc_arr_at(buf, L3_DOC_ROOT, i, &s2) != 0) {
                DTEX_FAIL("element %u of %u missing", i, v.count);
                break;
            }
            l3_doc_val_t cv;
            l3_doc_val(buf, s2, &cv);
        }
        uint32_t s2;
        (void)l3_doc_lookup(buf, "/0/a", 4, L3_DOC_PATH_POINTER, &s2);
    }

    /* the other form: a packed document unpacks (and the rest runs on its full form), a
     * full one that packs gives a packed one that verifies; both serialise the same */
    uint8_t *full = NULL, *packed = NULL;
    if (l3_doc_is_packed(buf)) {
        size_t flen = 0;
        if (l3_doc_unpack(buf, &full, &flen) != 0 || l3_doc_verify(full, flen, NULL) != 0) {
            free(full);
            DTEX_FAIL("packed document does not unpack to a valid full form");
            return bad;
        }
        if (!dtex_same_json(buf, full, true)) /* unpacking goes through the JSON text */
            DTEX_FAIL("unpacking changed the content");
        buf = full;
        len = flen;
    } else if (posix_memalign((void **)&packed, 8, L3_DOC_PACK_MAX_BYTES) == 0) {
        size_t plen = 0;
        int rc = l3_doc_pack(buf, packed, L3_DOC_PACK_MAX_BYTES, &plen);
        if (rc == 0 && l3_doc_verify(packed, plen, NULL) != 0)
            DTEX_FAIL("packed copy fails verify");
        else if (rc == 0 && !dtex_same_json(buf, packed, false))
            DTEX_FAIL("packing changed the content");
        else if (rc != 0 && rc != L3_ETOOBIG)
            DTEX_FAIL("pack failed: %d", rc);
        free(packed);
    }

    /* compaction */
    size_t bound = l3_doc_compact_bound(buf);
    uint8_t *dst = NULL;
    if (bound < ((size_t)1 << 32) && posix_memalign((void **)&dst, 8, bound ? bound : 8) == 0) {
        size_t clen = 0;
        int rc = l3_doc_compact(buf, dst, bound, &clen);
        if (rc != 0) {
            DTEX_FAIL("compact into compact_bound bytes failed: %d", rc);
        } else {
            l3_doc_error_t err = {0};
            if (l3_doc_verify(dst, clen, &err) != 0)
                DTEX_FAIL("compacted copy fails verify at %zu: %s", err.offset, err.msg ? err.msg : "?");
            else if (l3_doc_garbage(dst) != 0)
                DTEX_FAIL("compacted copy has garbage");
            else {
                char *a = NULL, *b = NULL;
                size_t al = 0, bl = 0;
                if (dtex_json(buf, L3_DOC_ROOT, &a, &al) != 0 || dtex_json(dst, L3_DOC_ROOT, &b, &bl) != 0 ||
                    al != bl || memcmp(a, b, al) != 0)
                    DTEX_FAIL("compaction changed the content");
                free(a);
                free(b);
            }
        }
        free(dst);
    }

    /* writes on copies */
    for (int which = 0; which < 6; which++)
        bad += dtex_mutate(buf, len, which);
    free(full);
    return bad;
}

#endif
