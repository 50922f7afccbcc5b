/* SPDX-License-Identifier: MIT */
/*
 * dt.h - helpers shared by the document-format tests (tests/unit/doc, tests/fuzz).
 *
 * Everything is static inline so each test program takes what it uses. The helpers are
 * test oracles written independently of src/doc: an exact decimal comparison of JSON
 * number texts, a minimal-escaping length calculator, and an undo-journal recorder that
 * can roll a buffer back to check the l3_doc_t.undo contract.
 */
#ifndef L3KV_TESTS_DT_H
#define L3KV_TESTS_DT_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "l3kv/doc.h"
#include "l3kv/error.h"
#include "t.h"

static inline bool dt_json_numeq(const char *a, size_t an, const char *b, size_t bn);

/* ------------------------------------------------------------------ basic conveniences */

/** Parse NUL-terminated JSON into a heap document; aborts the test program on failure. */
static inline void dt_parse(l3_doc_t *d, const char *json)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    l3_doc_error_t err = {0};
    int rc = l3_doc_from_json(json, strlen(json), NULL, &buf, &len, &err);
    if (rc != 0) {
        fprintf(stderr, "dt_parse: %d (%s) at %zu: %s\n  input: %.200s\n", rc, l3_strerror(rc), err.offset,
                err.msg ? err.msg : "?", json);
        exit(T_HARNESS_ERROR);
    }
    memset(d, 0, sizeof(*d));
    l3_doc_heap_adopt(d, buf, len);
}

/** Serialise the value at slot; returns a malloc'd NUL-terminated string (free it). */
static inline char *dt_json_len(const uint8_t *buf, uint32_t slot, size_t *ret_len)
{
    l3_buf_t b = {0};
    if (l3_doc_to_json(buf, slot, &b) != 0 || l3_buf_reserve(&b, 1) != 0) {
        fprintf(stderr, "dt_json: to_json failed\n");
        exit(T_HARNESS_ERROR);
    }
    b.ptr[b.len] = '\0';
    if (ret_len)
        *ret_len = b.len;
    return b.ptr;
}

static inline char *dt_json(const uint8_t *buf, uint32_t slot)
{
    return dt_json_len(buf, slot, NULL);
}

/** CHECK that the whole document serialises to `expect` (numbers compared by exact value). */
#define DT_CHECK_JSON(buf, expect)                                                                           \
    do {                                                                                                     \
        size_t n__;                                                                                          \
        const char *e__ = (expect);                                                                          \
        char *j__ = dt_json_len((buf), L3_DOC_ROOT, &n__);                                                   \
        t_checks++;                                                                                          \
        if (!dt_json_numeq(j__, n__, e__, strlen(e__))) {                                                    \
            fprintf(stderr, "%s:%d: JSON mismatch:\n  got  %s\n  want %s\n", __FILE__, __LINE__, j__, e__); \
            t_failures++;                                                                                    \
        }                                                                                                    \
        free(j__);                                                                                           \
    } while (0)

/** CHECK that the value at path (auto syntax) serialises to `expect`. */
#define DT_CHECK_PATH(buf, path, expect)                                                                     \
    do {                                                                                                     \
        uint32_t s__ = 0;                                                                                    \
        int r__ = l3_doc_lookup((buf), (path), strlen(path), L3_DOC_PATH_AUTO, &s__);                        \
        CHECK_EQ_INT(r__, 0);                                                                                \
        if (r__ == 0) {                                                                                      \
            char *j__ = dt_json((buf), s__);                                                                 \
            CHECK_EQ_STR(j__, (expect));                                                                     \
            free(j__);                                                                                       \
        }                                                                                                    \
    } while (0)

/** CHECK that the buffer verifies. */
#define DT_CHECK_VERIFY(buf)                                                                                 \
    do {                                                                                                     \
        l3_doc_error_t e__ = {0};                                                                            \
        int r__ = l3_doc_verify((buf), l3_doc_size(buf), &e__);                                              \
        if (r__ != 0)                                                                                        \
            fprintf(stderr, "verify: %d at %zu: %s\n", r__, e__.offset, e__.msg ? e__.msg : "?");          \
        CHECK_EQ_INT(r__, 0);                                                                                \
    } while (0)

/* The dt_set_* / dt_del helpers work on heap documents: they grow on -ENOBUFS and may
 * compact (L3_DOC_HEAP_DO), so d->buf can move. Tests of the raw contract call l3_doc_* directly. */
static inline int dt_set_int(l3_doc_t *d, const char *path, int64_t v)
{
    l3_doc_scalar_t s = {.type = L3_DOC_INT, .i = v};
    return L3_DOC_HEAP_DO(d, l3_doc_set(d, path, strlen(path), 0, &s, NULL));
}

static inline int dt_set_str(l3_doc_t *d, const char *path, const char *str, size_t len)
{
    l3_doc_scalar_t s = {.type = L3_DOC_STRING};
    s.str.ptr = str;
    s.str.len = len;
    return L3_DOC_HEAP_DO(d, l3_doc_set(d, path, strlen(path), 0, &s, NULL));
}

static inline int dt_set_json(l3_doc_t *d, const char *path, const char *json)
{
    l3_doc_error_t err = {0};
    return L3_DOC_HEAP_DO(d, l3_doc_set_json(d, path, strlen(path), 0, json, strlen(json), &err));
}

static inline int dt_del(l3_doc_t *d, const char *path)
{
    return L3_DOC_HEAP_DO(d, l3_doc_delete(d, path, strlen(path), 0));
}

/* ------------------------------------------------------------------ exact decimal numbers */

/* A JSON number reduced to sign * digits * 10^exp with no leading/trailing zeros in digits. */
typedef struct {
    int neg;
    char digits[800];
    size_t nd;
    long long exp;
    int ok;
} dt_dec_t;

static inline dt_dec_t dt_dec_parse(const char *s, size_t n)
{
    dt_dec_t r;
    memset(&r, 0, sizeof(r));
    size_t i = 0;
    if (i < n && s[i] == '-') {
        r.neg = 1;
        i++;
    }
    char all[800];
    size_t na = 0;
    long long fracn = 0;
    int seen = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        if (na < sizeof(all))
            all[na++] = s[i];
        i++;
        seen = 1;
    }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (na < sizeof(all))
                all[na++] = s[i];
            fracn++;
            i++;
            seen = 1;
        }
    }
    long long e = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        int eseen = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (e < 1000000000000LL)
                e = e * 10 + (s[i] - '0');
            i++;
            eseen = 1;
        }
        if (!eseen)
            return r;
        if (eneg)
            e = -e;
    }
    if (!seen || i != n)
        return r;
    size_t lead = 0;
    while (lead < na && all[lead] == '0')
        lead++;
    size_t end = na;
    long long exp = e - fracn;
    while (end > lead && all[end - 1] == '0') {
        end--;
        exp++;
    }
    r.nd = end - lead;
    memcpy(r.digits, all + lead, r.nd);
    r.exp = r.nd ? exp : 0;
    if (r.nd == 0)
        r.neg = 0; /* -0 == 0 as a value */
    r.ok = 1;
    return r;
}

/** True when two JSON number texts denote exactly the same decimal value. */
static inline bool dt_dec_equal(const char *a, size_t an, const char *b, size_t bn)
{
    dt_dec_t x = dt_dec_parse(a, an), y = dt_dec_parse(b, bn);
    return x.ok && y.ok && x.neg == y.neg && x.nd == y.nd && x.exp == y.exp && memcmp(x.digits, y.digits, x.nd) == 0;
}

/**
 * Compare two JSON texts: byte for byte, except that numbers (outside strings) compare by
 * exact decimal value and the hex digits of \u escapes compare case-insensitively.
 */
static inline bool dt_json_numeq(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i = 0, j = 0;
    int in_str = 0;
    while (i < an && j < bn) {
        char x = a[i], y = b[j];
        if (!in_str && (x == '-' || (x >= '0' && x <= '9')) && (y == '-' || (y >= '0' && y <= '9'))) {
            size_t ie = i, je = j;
            while (ie < an && strchr("+-.eE0123456789", a[ie]))
                ie++;
            while (je < bn && strchr("+-.eE0123456789", b[je]))
                je++;
            if (!dt_dec_equal(a + i, ie - i, b + j, je - j))
                return false;
            i = ie;
            j = je;
            continue;
        }
        if (x != y)
            return false;
        if (in_str && x == '\\') {
            if (i + 1 >= an || j + 1 >= bn || a[i + 1] != b[j + 1])
                return false;
            if (a[i + 1] == 'u') {
                if (i + 6 > an || j + 6 > bn || strncasecmp(a + i + 2, b + j + 2, 4) != 0)
                    return false;
                i += 6;
                j += 6;
            } else {
                i += 2;
                j += 2;
            }
            continue;
        }
        if (x == '"')
            in_str = !in_str;
        i++;
        j++;
    }
    return i == an && j == bn;
}

/* ------------------------------------------------------------------ undo journal recorder */

typedef struct {
    size_t off;
    size_t len;
    uint8_t *old;
} dt_undo_rec_t;

typedef struct {
    const uint8_t *base; /* d->buf when recording started */
    size_t mark;         /* used size when recording started */
    dt_undo_rec_t *recs;
    size_t n, cap;
    int bad; /* a record outside the buffer */
} dt_undo_t;

static inline void dt_undo_cb(void *ctx, const void *addr, size_t len)
{
    dt_undo_t *u = ctx;
    const uint8_t *p = addr;
    if (p < u->base || p + len > u->base + u->mark + 64 * 1024 * 1024) {
        u->bad++;
        return;
    }
    if (u->n == u->cap) {
        u->cap = u->cap ? u->cap * 2 : 16;
        u->recs = realloc(u->recs, u->cap * sizeof(*u->recs));
        if (!u->recs)
            exit(T_HARNESS_ERROR);
    }
    dt_undo_rec_t *r = &u->recs[u->n++];
    r->off = (size_t)(p - u->base);
    r->len = len;
    r->old = malloc(len ? len : 1);
    if (!r->old)
        exit(T_HARNESS_ERROR);
    memcpy(r->old, p, len);
}

static inline void dt_undo_reset(dt_undo_t *u)
{
    for (size_t i = 0; i < u->n; i++)
        free(u->recs[i].old);
    free(u->recs);
    memset(u, 0, sizeof(*u));
}

/** Start recording a mutation on d; returns a snapshot of the used bytes (free it). */
static inline uint8_t *dt_undo_begin(dt_undo_t *u, l3_doc_t *d, size_t *ret_mark)
{
    dt_undo_reset(u);
    u->base = d->buf;
    u->mark = l3_doc_size(d->buf);
    d->undo = dt_undo_cb;
    d->undo_ctx = u;
    uint8_t *snap = malloc(u->mark);
    if (!snap)
        exit(T_HARNESS_ERROR);
    memcpy(snap, d->buf, u->mark);
    *ret_mark = u->mark;
    return snap;
}

/**
 * After a mutation: apply the recorded old bytes in reverse to a copy of the buffer and
 * compare the used bytes with the snapshot. Returns true when the journal restores it.
 */
static inline bool dt_undo_restores(dt_undo_t *u, const l3_doc_t *d, const uint8_t *snap, size_t mark)
{
    if (u->bad || d->buf != u->base)
        return false;
    size_t now = l3_doc_size(d->buf);
    size_t n = now > mark ? now : mark;
    uint8_t *copy = calloc(1, n);
    if (!copy)
        exit(T_HARNESS_ERROR);
    memcpy(copy, d->buf, now < d->cap ? now : d->cap);
    if (now < mark) /* a shrink: bytes past the new mark are no longer in use but still there */
        memcpy(copy + now, d->buf + now, mark - now);
    for (size_t i = u->n; i-- > 0;) {
        dt_undo_rec_t *r = &u->recs[i];
        if (r->off + r->len <= n)
            memcpy(copy + r->off, r->old, r->len);
    }
    bool ok = memcmp(copy, snap, mark) == 0;
    if (!ok) {
        for (size_t i = 0; i < mark; i++)
            if (copy[i] != snap[i]) {
                fprintf(stderr, "undo: byte %zu not restored (%02x != %02x), %zu records\n", i, copy[i], snap[i],
                        u->n);
                break;
            }
    }
    free(copy);
    return ok;
}

#endif
