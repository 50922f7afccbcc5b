/* SPDX-License-Identifier: MIT */
/*
 * l3kv-expirebench - what expiry costs in the store (docs/store.md, "Expiry").
 *
 *   l3kv-expirebench [--keys N] [--rounds R]
 *
 * Measured in one process on one arena, best of R rounds, every figure with its baseline
 * from the same run:
 *   memory   arena bytes in use per key, N keys stored with a deadline vs without
 *   reclaim  ns per key for the sweep to remove N keys whose deadline has passed, vs
 *            l3_store_delete of N keys (the same removal, asked for by key)
 *   idle     ns per stripe for a sweep pass over N keys whose deadlines are all ahead (what
 *            the background sweep costs while nothing is due), vs a pass over N keys
 *            without deadlines
 * The WAL hook is not installed: the figures are the store's part (each removal also
 * logs one small record, as a DELETE does).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "l3kv/base.h"
#include "l3kv/error.h"
#include "l3kv/store.h"

static const char *doc_json = "{\"n\":0,\"name\":\"benchmark\",\"tags\":[1,2,3]}";

static l3_store_t *open_store(void)
{
    char name[64];
    snprintf(name, sizeof name, "expirebench.%ld", (long)getpid());
    l3_store_opts_t o = {.name = name, .arena_bytes = 1u << 30, .max_procs = 8, .replace = true};
    l3_store_t *st;
    int rc = l3_store_create(&o, &st);
    if (rc < 0) {
        fprintf(stderr, "l3_store_create: %s\n", l3_strerror(rc));
        exit(1);
    }
    return st;
}

static uint64_t used_bytes(l3_store_t *st)
{
    l3_store_stats_t s;
    return l3_store_stats(st, &s) == 0 ? s.used_bytes : 0;
}

static void fill(l3_store_t *st, size_t n, uint64_t exp)
{
    char key[32];
    for (size_t i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof key, "key:%08zu", i);
        int rc = l3_store_put_json_ttl(st, key, (size_t)kl, doc_json, strlen(doc_json), 0, exp, NULL, NULL);
        if (rc < 0) {
            fprintf(stderr, "put: %s\n", l3_strerror(rc));
            exit(1);
        }
    }
}

static void drop(l3_store_t *st, size_t n)
{
    char key[32];
    for (size_t i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof key, "key:%08zu", i);
        (void)l3_store_delete(st, key, (size_t)kl, 0, NULL);
    }
}

/* sweep until n keys are gone (or a pass removes nothing): ns spent */
static uint64_t sweep_all(l3_store_t *st, size_t n, uint32_t nstripes)
{
    size_t total = 0, removed;
    uint64_t t0 = l3_now_ns();
    while (total < n) {
        if (l3_store_expire_sweep(st, nstripes, n, &removed) < 0 || removed == 0)
            break;
        total += removed;
    }
    return l3_now_ns() - t0;
}

int main(int argc, char **argv)
{
    size_t n = 200000;
    int rounds = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--keys") == 0 && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: l3kv-expirebench [--keys N] [--rounds R]\n");
            return 2;
        }
    }
    if (n == 0 || rounds < 1)
        return 2;
    l3_store_t *st = open_store();
    const uint32_t ns = 1024; /* the default stripe count */
    double best_del = 1e30, best_reap = 1e30, best_idle_none = 1e30, best_idle_ahead = 1e30;
    double mem_plain = 0, mem_ttl = 0;
    for (int r = 0; r < rounds; r++) {
        uint64_t base = used_bytes(st);
        fill(st, n, 0);
        mem_plain = (double)(used_bytes(st) - base) / (double)n;
        size_t removed;
        uint64_t t0 = l3_now_ns();
        for (int p = 0; p < 10; p++)
            (void)l3_store_expire_sweep(st, ns, n, &removed);
        best_idle_none = L3_MIN(best_idle_none, (double)(l3_now_ns() - t0) / (10.0 * ns));
        t0 = l3_now_ns();
        drop(st, n);
        best_del = L3_MIN(best_del, (double)(l3_now_ns() - t0) / (double)n);

        fill(st, n, l3_store_now_ms() + 3600000);
        mem_ttl = (double)(used_bytes(st) - base) / (double)n;
        t0 = l3_now_ns();
        for (int p = 0; p < 10; p++)
            (void)l3_store_expire_sweep(st, ns, n, &removed);
        best_idle_ahead = L3_MIN(best_idle_ahead, (double)(l3_now_ns() - t0) / (10.0 * ns));
        drop(st, n);

        fill(st, n, l3_store_now_ms() - 1);
        double reap = (double)sweep_all(st, n, ns) / (double)n; /* L3_MIN evaluates twice */
        best_reap = L3_MIN(best_reap, reap);
        drop(st, n); /* whatever a short pass left */
    }
    printf("expiry, %zu keys, best of %d rounds\n", n, rounds);
    printf("  memory per key   %.1f B with a deadline, %.1f B without (+%.1f B)\n", mem_ttl, mem_plain,
           mem_ttl - mem_plain);
    printf("  reclaim per key  %.0f ns by the sweep, %.0f ns by DELETE (ratio %.2f)\n", best_reap, best_del,
           best_reap / best_del);
    printf("  idle sweep       %.1f ns per stripe, deadlines ahead; %.1f ns without deadlines\n",
           best_idle_ahead, best_idle_none);
    l3_store_unlink(st);
    l3_store_close(st);
    return 0;
}
