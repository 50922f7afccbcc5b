/* SPDX-License-Identifier: MIT */
/*
 * docbench.c - `l3kv-docbench`: the document format against jansson, in the same run.
 *
 * Owns the figures the document format is judged by (targets: parse >= 10x and serialize
 * >= 8x jansson's throughput, random-key int set in a 10 MB document <= 100 ns median,
 * hot-key set <= 30 ns). A standalone, single-threaded process; it links the doc library
 * and jansson and nothing else.
 *
 * Documents (built as JSON text, deterministic):
 *   1k:   {"id":N, "f0".."f9": 100-byte strings}                         (~1.1 KB)
 *   10mb: {"k00000".."k99999": cycling int / double / 250-char string,
 *          "a":{"b":{"c":{"d":1}}}}                                       (~10 MB)
 *
 * Method:
 *   - throughput: one parse (or serialisation) of the whole text per sample for the 10 MB
 *     document, a loop of many per sample for the 1 KB one; the figure is the median
 *     sample in MB/s (10^6 bytes of JSON text per second, for both libraries).
 *   - ns per operation: operations run in batches (default 1000 ops) with clock_gettime()
 *     around each batch; the figure is the median of the batch means. Random keys are
 *     generated before timing; every op is a full path lookup plus the store or read.
 *     Ours: l3_doc_lookup() + l3_doc_slot_set_int() / l3_doc_val(); jansson:
 *     json_object_get() + json_integer_set() / json_integer_value().
 *     The two libraries alternate in phases of many batches (see measure()); each phase
 *     first reads its whole document back into the caches, so both are measured in the
 *     steady state of a document that fits in the last-level cache.
 *   - before timing, both documents are checked: our JSON output re-read by jansson must
 *     equal jansson's parse of the same text, or the run stops (exit 1).
 *
 * Output: a table with ratios and PASS/MISS against the targets, or with --json one JSON
 * object (keys listed in print_json()). --quick runs fewer samples (CI smoke runs).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "l3kv-config.h"
#include "l3kv/base.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"

/* Targets, next to the Lite³ figures they were derived from. */
#define TARGET_PARSE_RATIO 10.0    /* parse >= 10x jansson */
#define TARGET_SERIAL_RATIO 8.0    /* serialize >= 8x jansson */
#define TARGET_SET_RANDOM_NS 100.0 /* random-key int set in the 10 MB document */
#define TARGET_SET_HOT_NS 30.0     /* one hot key */

#define N_KEYS 100000
#define KEY_POOL 65536 /* pre-generated random keys, reused cyclically */

static struct {
    bool json;
    bool quick;
    unsigned batch;
    unsigned batches;
    unsigned big_samples;
    unsigned small_samples;
    unsigned small_loop;
} cfg = {.batch = 1000};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "l3kv-docbench: out of memory\n");
        exit(1);
    }
    return p;
}

/* ---------------------------------------------------------------- the documents */

typedef struct {
    char *p;
    size_t len, cap;
} text_t;

static void put(text_t *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t nc = t->cap ? t->cap : 4096;
        while (t->len + n + 1 > nc)
            nc *= 2;
        char *np = realloc(t->p, nc);
        if (!np) {
            fprintf(stderr, "l3kv-docbench: out of memory\n");
            exit(1);
        }
        t->p = np;
        t->cap = nc;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

L3_PRINTF(2, 3) static void putf(text_t *t, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    put(t, tmp, (size_t)n);
}

static void put_filler(text_t *t, size_t n, unsigned seed)
{
    char s[300];
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + (i * 7 + seed) % 26);
    put(t, "\"", 1);
    put(t, s, n);
    put(t, "\"", 1);
}

static text_t make_1k(void)
{
    text_t t = {0};
    putf(&t, "{\"id\":%d", 1234567);
    for (int i = 0; i < 10; i++) {
        putf(&t, ",\"f%d\":", i);
        put_filler(&t, 100, (unsigned)i);
    }
    put(&t, "}", 1);
    return t;
}

static text_t make_10mb(void)
{
    text_t t = {0};
    put(&t, "{", 1);
    for (int i = 0; i < N_KEYS; i++) {
        putf(&t, "%s\"k%05d\":", i ? "," : "", i);
        switch (i % 3) {
        case 0:
            putf(&t, "%d", i * 7);
            break;
        case 1:
            putf(&t, "%d.25", i);
            break;
        default:
            put_filler(&t, 250, (unsigned)i);
            break;
        }
    }
    static const char tail[] = ",\"a\":{\"b\":{\"c\":{\"d\":1}}}}";
    put(&t, tail, sizeof(tail) - 1);
    return t;
}

/* ---------------------------------------------------------------- correctness gate */

static bool same_as_jansson(const text_t *t, const uint8_t *doc)
{
    l3_buf_t out = {0};
    json_error_t je;
    json_t *want = json_loadb(t->p, t->len, 0, &je);
    bool ok = want && l3_doc_to_json(doc, L3_DOC_ROOT, &out) == 0;
    json_t *got = ok ? json_loadb(out.ptr, out.len, 0, &je) : NULL;
    ok = ok && got && json_equal(got, want);
    json_decref(got);
    json_decref(want);
    free(out.ptr);
    return ok;
}

/* ---------------------------------------------------------------- throughput */

typedef struct {
    double ours, jansson;
} pair_t;

static uint8_t *parse_ours(const text_t *t, size_t *ret_len)
{
    uint8_t *buf;
    size_t len;
    l3_doc_error_t e;
    int rc = l3_doc_from_json(t->p, t->len, NULL, &buf, &len, &e);
    if (rc < 0) {
        fprintf(stderr, "l3kv-docbench: parse failed: %s at byte %zu (%s)\n", e.msg, e.offset,
                l3_strerror(rc));
        exit(1);
    }
    if (ret_len)
        *ret_len = len;
    return buf;
}

static json_t *parse_jansson(const text_t *t)
{
    json_error_t je;
    json_t *j = json_loadb(t->p, t->len, 0, &je);
    if (!j) {
        fprintf(stderr, "l3kv-docbench: jansson parse failed: %s\n", je.text);
        exit(1);
    }
    return j;
}

/* MB/s of parsing t: loop parses per sample, samples samples, median. */
static pair_t bench_parse(const text_t *t, unsigned samples, unsigned loop)
{
    double *a = xmalloc(samples * sizeof(double)), *b = xmalloc(samples * sizeof(double));
    for (unsigned s = 0; s < samples; s++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < loop; i++)
            free(parse_ours(t, NULL));
        uint64_t t1 = now_ns();
        for (unsigned i = 0; i < loop; i++)
            json_decref(parse_jansson(t));
        uint64_t t2 = now_ns();
        a[s] = (double)t->len * loop / ((double)(t1 - t0) / 1e9) / 1e6;
        b[s] = (double)t->len * loop / ((double)(t2 - t1) / 1e9) / 1e6;
    }
    pair_t r = {median(a, samples), median(b, samples)};
    free(a);
    free(b);
    return r;
}

/* MB/s of serialising (MB of JSON text produced). Output buffers are reused by both. */
static pair_t bench_serialize(const uint8_t *doc, json_t *j, size_t text_len, unsigned samples, unsigned loop)
{
    double *a = xmalloc(samples * sizeof(double)), *b = xmalloc(samples * sizeof(double));
    l3_buf_t out = {0};
    size_t jcap = text_len * 2 + 4096;
    char *jbuf = xmalloc(jcap);
    size_t our_len = 0, jlen = 0;
    for (unsigned s = 0; s < samples; s++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < loop; i++) {
            out.len = 0;
            if (l3_doc_to_json(doc, L3_DOC_ROOT, &out) < 0) {
                fprintf(stderr, "l3kv-docbench: serialise failed\n");
                exit(1);
            }
        }
        uint64_t t1 = now_ns();
        for (unsigned i = 0; i < loop; i++)
            jlen = json_dumpb(j, jbuf, jcap, JSON_COMPACT);
        uint64_t t2 = now_ns();
        our_len = out.len;
        if (jlen == 0 || jlen > jcap) {
            fprintf(stderr, "l3kv-docbench: jansson serialise failed\n");
            exit(1);
        }
        a[s] = (double)our_len * loop / ((double)(t1 - t0) / 1e9) / 1e6;
        b[s] = (double)jlen * loop / ((double)(t2 - t1) / 1e9) / 1e6;
    }
    pair_t r = {median(a, samples), median(b, samples)};
    free(a);
    free(b);
    free(out.ptr);
    free(jbuf);
    return r;
}

/* ---------------------------------------------------------------- per-operation latency */

typedef struct {
    char k[8]; /* "k01234" NUL-terminated */
} bench_key_t;

static bench_key_t *keys; /* KEY_POOL random int-field keys */
static uint64_t sink;     /* keeps reads observable */

enum { OP_GET, OP_SET };

static void die_rc(const char *what, int rc)
{
    fprintf(stderr, "l3kv-docbench: %s: %s\n", what, l3_strerror(rc));
    exit(1);
}

/* One batch of ours: n ops on keys[start..] (or on the hot key). Returns ns per op. */
static double batch_ours(l3_doc_t *d, int op, bool hot, const char *hotkey, size_t start, unsigned n,
                         uint32_t *inout_val)
{
    uint32_t v = *inout_val;
    uint64_t acc = 0;
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        const char *k = hot ? hotkey : keys[(start + i) % KEY_POOL].k;
        uint32_t slot;
        int rc = l3_doc_lookup(d->buf, k, 6, L3_DOC_PATH_DOTTED, &slot);
        if (L3_UNLIKELY(rc < 0))
            die_rc("lookup", rc);
        if (op == OP_SET) {
            rc = l3_doc_slot_set_int(d, slot, (int64_t)v++);
            if (L3_UNLIKELY(rc < 0))
                die_rc("slot_set_int", rc);
        } else {
            l3_doc_val_t val;
            l3_doc_val(d->buf, slot, &val);
            acc += (uint64_t)val.i;
        }
    }
    uint64_t t1 = now_ns();
    sink += acc;
    *inout_val = v;
    return (double)(t1 - t0) / n;
}

/* The generic setter: l3_doc_set() with a scalar, for comparison with the fast path. */
static double batch_ours_generic(l3_doc_t *d, size_t start, unsigned n, uint32_t *inout_val)
{
    uint32_t v = *inout_val;
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        l3_doc_scalar_t sc = {.type = L3_DOC_INT, .i = (int64_t)v++};
        int rc = l3_doc_set(d, keys[(start + i) % KEY_POOL].k, 6, L3_DOC_SET_PATH_DOTTED, &sc, NULL);
        if (L3_UNLIKELY(rc < 0))
            die_rc("l3_doc_set", rc);
    }
    uint64_t t1 = now_ns();
    *inout_val = v;
    return (double)(t1 - t0) / n;
}

static double batch_jansson(json_t *root, int op, bool hot, const char *hotkey, size_t start, unsigned n,
                            uint32_t *inout_val)
{
    uint32_t v = *inout_val;
    uint64_t acc = 0;
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        const char *k = hot ? hotkey : keys[(start + i) % KEY_POOL].k;
        json_t *x = json_object_get(root, k);
        if (L3_UNLIKELY(!x)) {
            fprintf(stderr, "l3kv-docbench: jansson lost key %s\n", k);
            exit(1);
        }
        if (op == OP_SET)
            json_integer_set(x, (json_int_t)v++);
        else
            acc += (uint64_t)json_integer_value(x);
    }
    uint64_t t1 = now_ns();
    sink += acc;
    *inout_val = v;
    return (double)(t1 - t0) / n;
}

static double batch_nested_ours(const uint8_t *buf, unsigned n)
{
    uint64_t acc = 0;
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        l3_doc_val_t val;
        int rc = l3_doc_get(buf, "a.b.c.d", 7, L3_DOC_PATH_DOTTED, &val);
        if (L3_UNLIKELY(rc < 0))
            die_rc("nested get", rc);
        acc += (uint64_t)val.i;
    }
    uint64_t t1 = now_ns();
    sink += acc;
    return (double)(t1 - t0) / n;
}

static double batch_nested_jansson(json_t *root, unsigned n)
{
    uint64_t acc = 0;
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        json_t *x =
            json_object_get(json_object_get(json_object_get(json_object_get(root, "a"), "b"), "c"), "d");
        acc += (uint64_t)json_integer_value(x);
    }
    uint64_t t1 = now_ns();
    sink += acc;
    return (double)(t1 - t0) / n;
}

typedef enum {
    M_GET_RANDOM,
    M_SET_RANDOM,
    M_GET_HOT,
    M_SET_HOT,
    M_NESTED,
    M_SET_GENERIC,
} measure_t;

/*
 * Median over cfg.batches batches of one measurement, for ours and jansson. The batches
 * are run in ROUNDS phases per side, alternating (ours, jansson, ours, ...): each phase
 * starts with WARM discarded batches so its own data is back in the caches (the other
 * library's phase has just evicted it), and load from other processes on the machine hits
 * both sides alike.
 */
#define ROUNDS 5
#define WARM 5

static double one_batch(measure_t m, bool jside, l3_doc_t *d, json_t *root, const char *hotkey, size_t start,
                        uint32_t *inout_val)
{
    bool hot = m == M_GET_HOT || m == M_SET_HOT;
    int op = (m == M_SET_RANDOM || m == M_SET_HOT) ? OP_SET : OP_GET;
    if (m == M_NESTED)
        return jside ? batch_nested_jansson(root, cfg.batch) : batch_nested_ours(d->buf, cfg.batch);
    if (m == M_SET_GENERIC)
        return jside ? 0 : batch_ours_generic(d, start, cfg.batch, inout_val);
    if (jside)
        return batch_jansson(root, op, hot, hotkey, start, cfg.batch, inout_val);
    return batch_ours(d, op, hot, hotkey, start, cfg.batch, inout_val);
}

/* Bring one side's data back into the caches after the other side's phase evicted it:
 * ours is one buffer, read a word per cache line; jansson's tree is walked member by
 * member (hash nodes, names and values). The figures are then steady-state costs of a
 * document that fits in the last-level cache, for both libraries alike. */
static void warm_side(bool jside, const l3_doc_t *d, json_t *root)
{
    uint64_t acc = 0;
    if (jside) {
        const char *k;
        json_t *x;
        json_object_foreach(root, k, x) acc +=
            (uint64_t)(uint8_t)k[0] + (json_is_integer(x) ? (uint64_t)json_integer_value(x) : 1);
    } else {
        size_t used = l3_doc_size(d->buf);
        for (size_t i = 0; i + 8 <= used; i += 64) {
            uint64_t w;
            memcpy(&w, d->buf + i, 8);
            acc += w;
        }
    }
    sink += acc;
}

static pair_t measure(measure_t m, l3_doc_t *d, json_t *root, const char *hotkey)
{
    unsigned per = (cfg.batches + ROUNDS - 1) / ROUNDS, n = per * ROUNDS;
    double *v[2] = {xmalloc(n * sizeof(double)), xmalloc(n * sizeof(double))};
    uint32_t val[2] = {1, 1};
    size_t start[2];
    start[0] = start[1] = (size_t)(rng() % KEY_POOL);
    for (unsigned r = 0; r < ROUNDS; r++) {
        for (int side = 0; side < 2; side++) {
            warm_side(side == 1, d, root);
            for (unsigned b = 0; b < WARM + per; b++) {
                double ns = one_batch(m, side == 1, d, root, hotkey, start[side], &val[side]);
                start[side] += cfg.batch;
                if (b >= WARM)
                    v[side][r * per + (b - WARM)] = ns;
            }
        }
    }
    pair_t res = {median(v[0], n), median(v[1], n)};
    free(v[0]);
    free(v[1]);
    return res;
}

typedef struct {
    size_t json_1k, bin_1k, packed_1k, json_10mb, bin_10mb;
    pair_t parse_1k, parse_10mb, ser_1k, ser_10mb, ser_1k_packed;
    pair_t get_rand, set_rand, get_hot, set_hot, nested, get_hot_1k, set_hot_1k, get_1k_packed;
    double set_generic;
} results_t;

/* Hot get/set of "id", the one int field of the 1k document (same method as measure()). */
static void bench_1k_hot(l3_doc_t *d, json_t *root, results_t *r)
{
    unsigned nb = cfg.batches;
    double *v[4];
    for (int i = 0; i < 4; i++)
        v[i] = xmalloc(nb * sizeof(double));
    uint64_t acc = 0;
    for (unsigned b = 0; b < nb; b++) {
        uint64_t t[5];
        t[0] = now_ns();
        for (unsigned i = 0; i < cfg.batch; i++) {
            uint32_t slot;
            int rc = l3_doc_lookup(d->buf, "id", 2, L3_DOC_PATH_DOTTED, &slot);
            if (L3_UNLIKELY(rc < 0))
                die_rc("lookup id", rc);
            l3_doc_val_t val;
            l3_doc_val(d->buf, slot, &val);
            acc += (uint64_t)val.i;
        }
        t[1] = now_ns();
        for (unsigned i = 0; i < cfg.batch; i++) {
            uint32_t slot;
            int rc = l3_doc_lookup(d->buf, "id", 2, L3_DOC_PATH_DOTTED, &slot);
            if (L3_LIKELY(rc == 0))
                rc = l3_doc_slot_set_int(d, slot, (int64_t)i);
            if (L3_UNLIKELY(rc < 0))
                die_rc("set id", rc);
        }
        t[2] = now_ns();
        for (unsigned i = 0; i < cfg.batch; i++)
            acc += (uint64_t)json_integer_value(json_object_get(root, "id"));
        t[3] = now_ns();
        for (unsigned i = 0; i < cfg.batch; i++)
            json_integer_set(json_object_get(root, "id"), (json_int_t)i);
        t[4] = now_ns();
        for (int k = 0; k < 4; k++)
            v[k][b] = (double)(t[k + 1] - t[k]) / cfg.batch;
    }
    sink += acc;
    r->get_hot_1k = (pair_t){median(v[0], nb), median(v[2], nb)};
    r->set_hot_1k = (pair_t){median(v[1], nb), median(v[3], nb)};
    for (int i = 0; i < 4; i++)
        free(v[i]);
}

/* Hot get of "id" in the packed form of the 1k document (read only: no set). */
static void bench_1k_packed(const uint8_t *p, results_t *r)
{
    unsigned nb = cfg.batches;
    double *v = xmalloc(nb * sizeof(double));
    uint64_t acc = 0;
    for (unsigned b = 0; b < nb; b++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < cfg.batch; i++) {
            uint32_t slot;
            int rc = l3_doc_lookup(p, "id", 2, L3_DOC_PATH_DOTTED, &slot);
            if (L3_UNLIKELY(rc < 0))
                die_rc("lookup id (packed)", rc);
            l3_doc_val_t val;
            l3_doc_val(p, slot, &val);
            acc += (uint64_t)val.i;
        }
        v[b] = (double)(now_ns() - t0) / cfg.batch;
    }
    sink += acc;
    r->get_1k_packed = (pair_t){median(v, nb), r->get_hot_1k.jansson};
    free(v);
}

/* ---------------------------------------------------------------- main */

static const char *mark(bool pass)
{
    return pass ? "PASS" : "MISS";
}

static void print_table(const results_t *r)
{
    printf("l3kv-docbench %s%s: medians; MB/s of JSON text, ns per op (path lookup + store/read)\n",
           L3KV_VERSION, cfg.quick ? " (quick)" : "");
    printf(
        "documents: 1k = %zu B JSON / %zu B binary / %zu B packed; 10mb = %.2f MB JSON / %.2f MB binary\n\n",
        r->json_1k, r->bin_1k, r->packed_1k, (double)r->json_10mb / 1e6, (double)r->bin_10mb / 1e6);
    printf("%-34s %12s %12s %9s  %-12s %s\n", "measure", "l3kv", "jansson", "ratio", "target", "");
    struct {
        const char *name;
        pair_t p;
        bool higher_better;
        const char *target;
        int verdict; /* -1 none, 0 miss, 1 pass */
    } rows[] = {
        {"parse 1k (MB/s)", r->parse_1k, true, "", -1},
        {"parse 10mb (MB/s)", r->parse_10mb, true, ">= 10x",
         r->parse_10mb.ours >= TARGET_PARSE_RATIO * r->parse_10mb.jansson},
        {"serialize 1k (MB/s)", r->ser_1k, true, "", -1},
        {"serialize 10mb (MB/s)", r->ser_10mb, true, ">= 8x",
         r->ser_10mb.ours >= TARGET_SERIAL_RATIO * r->ser_10mb.jansson},
        {"get int 10mb random key (ns)", r->get_rand, false, "", -1},
        {"set int 10mb random key (ns)", r->set_rand, false, "<= 100 ns",
         r->set_rand.ours <= TARGET_SET_RANDOM_NS},
        {"get int 10mb hot key (ns)", r->get_hot, false, "", -1},
        {"set int 10mb hot key (ns)", r->set_hot, false, "<= 30 ns", r->set_hot.ours <= TARGET_SET_HOT_NS},
        {"get nested a.b.c.d 10mb (ns)", r->nested, false, "", -1},
        {"get int 1k hot key (ns)", r->get_hot_1k, false, "", -1},
        {"set int 1k hot key (ns)", r->set_hot_1k, false, "", -1},
        {"serialize 1k packed (MB/s)", r->ser_1k_packed, true, "", -1},
        {"get int 1k packed, hot key (ns)", r->get_1k_packed, false, "", -1},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        /* ratio: how many times better than jansson (speed-up for both kinds of figure) */
        double ratio =
            rows[i].higher_better ? rows[i].p.ours / rows[i].p.jansson : rows[i].p.jansson / rows[i].p.ours;
        printf("%-34s %12.1f %12.1f %8.2fx  %-12s %s\n", rows[i].name, rows[i].p.ours, rows[i].p.jansson,
               ratio, rows[i].target, rows[i].verdict < 0 ? "" : mark(rows[i].verdict));
    }
    printf("%-34s %12.1f %12s %9s  %-12s\n", "set int 10mb random, l3_doc_set (ns)", r->set_generic, "-", "",
           "");
    printf("\nratio = times faster than jansson (>1 is better). Targets: parse >= 10x and\n"
           "serialize >= 8x jansson; random-key int set in the 10 MB document <= 100 ns; hot-key set <= 30 "
           "ns.\n");
}

static void print_json(const results_t *r)
{
    printf("{\"version\":\"%s\",\"quick\":%s,\"batch_ops\":%u,\"batches\":%u,", L3KV_VERSION,
           cfg.quick ? "true" : "false", cfg.batch, cfg.batches);
    printf("\"doc_1k_json_bytes\":%zu,\"doc_1k_bin_bytes\":%zu,\"doc_10mb_json_bytes\":%zu,\"doc_10mb_bin_"
           "bytes\":%zu,",
           r->json_1k, r->bin_1k, r->json_10mb, r->bin_10mb);
    printf("\"parse_1k_mbps\":%.1f,\"jansson_parse_1k_mbps\":%.1f,\"parse_10mb_mbps\":%.1f,"
           "\"jansson_parse_10mb_mbps\":%.1f,",
           r->parse_1k.ours, r->parse_1k.jansson, r->parse_10mb.ours, r->parse_10mb.jansson);
    printf("\"serialize_1k_mbps\":%.1f,\"jansson_serialize_1k_mbps\":%.1f,\"serialize_10mb_mbps\":%.1f,"
           "\"jansson_serialize_10mb_mbps\":%.1f,",
           r->ser_1k.ours, r->ser_1k.jansson, r->ser_10mb.ours, r->ser_10mb.jansson);
    printf("\"get_int_10mb_ns\":%.1f,\"jansson_get_int_10mb_ns\":%.1f,\"set_int_10mb_ns\":%.1f,"
           "\"jansson_set_int_10mb_ns\":%.1f,",
           r->get_rand.ours, r->get_rand.jansson, r->set_rand.ours, r->set_rand.jansson);
    printf("\"get_int_10mb_hot_ns\":%.1f,\"jansson_get_int_10mb_hot_ns\":%.1f,\"set_int_10mb_hot_ns\":%.1f,"
           "\"jansson_set_int_10mb_hot_ns\":%.1f,",
           r->get_hot.ours, r->get_hot.jansson, r->set_hot.ours, r->set_hot.jansson);
    printf("\"get_nested_10mb_ns\":%.1f,\"jansson_get_nested_10mb_ns\":%.1f,", r->nested.ours,
           r->nested.jansson);
    printf("\"get_int_1k_hot_ns\":%.1f,\"jansson_get_int_1k_hot_ns\":%.1f,\"set_int_1k_hot_ns\":%.1f,"
           "\"jansson_set_int_1k_hot_ns\":%.1f,\"set_int_10mb_generic_ns\":%.1f,",
           r->get_hot_1k.ours, r->get_hot_1k.jansson, r->set_hot_1k.ours, r->set_hot_1k.jansson,
           r->set_generic);
    printf("\"doc_1k_packed_bytes\":%zu,\"serialize_1k_packed_mbps\":%.1f,\"get_int_1k_packed_ns\":%.1f,",
           r->packed_1k, r->ser_1k_packed.ours, r->get_1k_packed.ours);
    printf("\"parse_10mb_ratio\":%.2f,\"parse_1k_ratio\":%.2f,\"serialize_10mb_ratio\":%.2f,\"serialize_1k_"
           "ratio\":%.2f,"
           "\"set_int_10mb_ratio\":%.2f,\"set_int_10mb_hot_ratio\":%.2f,\"get_int_10mb_ratio\":%.2f,"
           "\"get_nested_10mb_ratio\":%.2f,",
           r->parse_10mb.ours / r->parse_10mb.jansson, r->parse_1k.ours / r->parse_1k.jansson,
           r->ser_10mb.ours / r->ser_10mb.jansson, r->ser_1k.ours / r->ser_1k.jansson,
           r->set_rand.jansson / r->set_rand.ours, r->set_hot.jansson / r->set_hot.ours,
           r->get_rand.jansson / r->get_rand.ours, r->nested.jansson / r->nested.ours);
    printf("\"target_parse_pass\":%s,\"target_serialize_pass\":%s,\"target_set_random_pass\":%s,"
           "\"target_set_hot_pass\":%s}\n",
           r->parse_10mb.ours >= TARGET_PARSE_RATIO * r->parse_10mb.jansson ? "true" : "false",
           r->ser_10mb.ours >= TARGET_SERIAL_RATIO * r->ser_10mb.jansson ? "true" : "false",
           r->set_rand.ours <= TARGET_SET_RANDOM_NS ? "true" : "false",
           r->set_hot.ours <= TARGET_SET_HOT_NS ? "true" : "false");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: l3kv-docbench [--json] [--quick] [--batch N]\n"
               "Benchmarks the document format against jansson in the same run.\n"
               "  --json      print one JSON object instead of the table\n"
               "  --quick     fewer samples (a few seconds)\n"
               "  --batch N   operations per timed batch (default 1000)\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},        {"quick", no_argument, NULL, 'q'},
        {"batch", required_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},     {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "jqn:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            cfg.json = true;
            break;
        case 'q':
            cfg.quick = true;
            break;
        case 'n':
            cfg.batch = (unsigned)strtoul(optarg, NULL, 10);
            if (cfg.batch == 0 || cfg.batch > 1000000) {
                fprintf(stderr, "l3kv-docbench: --batch must be 1..1000000\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("l3kv-docbench %s\n", L3KV_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    cfg.batches = cfg.quick ? 101 : 501;
    cfg.big_samples = cfg.quick ? 5 : 11;
    cfg.small_samples = cfg.quick ? 11 : 31;
    cfg.small_loop = cfg.quick ? 500 : 2000;

    results_t r = {0};
    text_t t1k = make_1k(), t10 = make_10mb();
    r.json_1k = t1k.len;
    r.json_10mb = t10.len;

    /* Documents and trees used by the per-op measurements; also the correctness gate. */
    size_t len1k, len10;
    uint8_t *b1k = parse_ours(&t1k, &len1k), *b10 = parse_ours(&t10, &len10);
    r.bin_1k = l3_doc_size(b1k);
    r.bin_10mb = l3_doc_size(b10);
    if (!same_as_jansson(&t1k, b1k) || !same_as_jansson(&t10, b10)) {
        fprintf(stderr, "l3kv-docbench: the document's JSON differs from jansson's reading of the input\n");
        return 1;
    }
    json_t *j1k = parse_jansson(&t1k), *j10 = parse_jansson(&t10);

    r.parse_1k = bench_parse(&t1k, cfg.small_samples, cfg.small_loop);
    r.parse_10mb = bench_parse(&t10, cfg.big_samples, 1);
    r.ser_1k = bench_serialize(b1k, j1k, t1k.len, cfg.small_samples, cfg.small_loop);
    r.ser_10mb = bench_serialize(b10, j10, t10.len, cfg.big_samples, 1);
    /* the packed form the store keeps of a small document */
    uint8_t *p1k = xmalloc(L3_DOC_PACK_MAX_BYTES);
    int prc = l3_doc_pack(b1k, p1k, L3_DOC_PACK_MAX_BYTES, &r.packed_1k);
    if (prc < 0 || !same_as_jansson(&t1k, p1k)) {
        fprintf(stderr, "l3kv-docbench: the 1k document does not pack (%d) or its packed form differs\n",
                prc);
        return 1;
    }
    r.ser_1k_packed = bench_serialize(p1k, j1k, t1k.len, cfg.small_samples, cfg.small_loop);

    /* Random int-field keys: k%05d with index % 3 == 0. */
    keys = xmalloc(KEY_POOL * sizeof(*keys));
    for (size_t i = 0; i < KEY_POOL; i++) {
        unsigned idx = (unsigned)(rng() % (N_KEYS / 3 + 1)) * 3;
        if (idx >= N_KEYS)
            idx = 0;
        snprintf(keys[i].k, sizeof(keys[i].k), "k%05u", idx);
    }

    l3_doc_t d10 = {0}, d1k = {0};
    l3_doc_heap_adopt(&d10, b10, len10);
    l3_doc_heap_adopt(&d1k, b1k, len1k);
    const char *hot10 = "k50004"; /* an int field: 50004 % 3 == 0 */

    r.get_rand = measure(M_GET_RANDOM, &d10, j10, NULL);
    r.set_rand = measure(M_SET_RANDOM, &d10, j10, NULL);
    r.get_hot = measure(M_GET_HOT, &d10, j10, hot10);
    r.set_hot = measure(M_SET_HOT, &d10, j10, hot10);
    r.nested = measure(M_NESTED, &d10, j10, NULL);
    r.set_generic = measure(M_SET_GENERIC, &d10, j10, NULL).ours;
    bench_1k_hot(&d1k, j1k, &r);
    bench_1k_packed(p1k, &r);

    /* The sets really happened: the hot key holds the last value written, the doc is still valid. */
    if (l3_doc_verify(d10.buf, l3_doc_size(d10.buf), NULL) < 0 ||
        l3_doc_verify(d1k.buf, l3_doc_size(d1k.buf), NULL) < 0) {
        fprintf(stderr, "l3kv-docbench: a document failed verification after the run\n");
        return 1;
    }

    if (cfg.json)
        print_json(&r);
    else
        print_table(&r);
    if (sink == 42) /* never true in practice; keeps the reads from being optimised away */
        fprintf(stderr, "\n");

    l3_doc_heap_free(&d10);
    free(p1k);
    l3_doc_heap_free(&d1k);
    json_decref(j1k);
    json_decref(j10);
    free(keys);
    free(t1k.p);
    free(t10.p);
    return 0;
}
