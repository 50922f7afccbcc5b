/* SPDX-License-Identifier: MIT */
/*
 * test-store-crash.c - processes SIGKILLed at random instants while they mutate large
 * documents in a shared arena (S2 in docs/invariants.md).
 *
 * Every document keeps an invariant that a torn mutation would break: check == gen * 7,
 * and pad is (gen % 3000 + 50) copies of one letter chosen by gen. Workers change the
 * three fields together (whole-document put of a pre-built 0.3-1.5 MB binary document,
 * merge patch, JSON patch) or touch other fields (set_int/incr of counter, set of a
 * string that often forces the document into a bigger block); small keys are created and
 * deleted. Each trial forks workers, kills each at a random instant, reaps them, then:
 *  - the read-only structural check (what l3kv-inspect check runs; the binary itself, given
 *    as argv[1], runs it at the end) must find nothing: allocator, free lists, index, every
 *    document verified, no leaked block;
 *  - every document must satisfy its invariant (it is fully before or fully after);
 *  - operations on every key must complete (lock timeout 2 s: a leaked lock fails);
 *  - multi-key transactions (txn.c) move amounts between NTX counters, some also changing a
 *    large document: the counters' sum never changes (a transaction is whole or absent).
 * Bounded by L3_CRASH_TRIALS (default 150) and L3_CRASH_SECONDS (default 25); L3_SLOW_SECONDS,
 * when smaller, caps the time (the bounded run of the slow suite).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <time.h>

#include "sth.h"

#define NDOCS 3
#define NVARIANTS 6
#define NWORKERS 3

typedef struct {
    uint8_t *bin;
    size_t len;
} variant_t;

static variant_t variants[NDOCS][NVARIANTS];

static char *make_json(int64_t gen, size_t nints, size_t *ret_len)
{
    size_t plen = (size_t)(gen % 3000) + 50;
    size_t cap = nints * 8 + plen + 256;
    char *j = malloc(cap);
    size_t n = (size_t)sprintf(
        j, "{\"gen\":%" PRId64 ",\"check\":%" PRId64 ",\"counter\":0,\"free\":\"\",\"pad\":\"", gen, gen * 7);
    memset(j + n, 'a' + (int)(gen % 26), plen);
    n += plen;
    n += (size_t)sprintf(j + n, "\",\"arr\":[");
    for (size_t i = 0; i < nints; i++)
        n += (size_t)sprintf(j + n, i ? ",%zu" : "%zu", (i * 7919) % 100000);
    n += (size_t)sprintf(j + n, "]}");
    *ret_len = n;
    return j;
}

static int patch_fields(l3_store_t *st, const char *key, int64_t gen, bool merge)
{
    size_t plen = (size_t)(gen % 3000) + 50;
    char *p = malloc(plen + 256);
    int n;
    if (merge)
        n = sprintf(p, "{\"gen\":%" PRId64 ",\"check\":%" PRId64 ",\"pad\":\"", gen, gen * 7);
    else
        n = sprintf(p,
                    "[{\"op\":\"replace\",\"path\":\"/gen\",\"value\":%" PRId64
                    "},{\"op\":\"replace\",\"path\":\"/check\",\"value\":%" PRId64
                    "},{\"op\":\"replace\",\"path\":\"/pad\",\"value\":\"",
                    gen, gen * 7);
    memset(p + n, 'a' + (int)(gen % 26), plen);
    n += (int)plen;
    n += sprintf(p + n, merge ? "\"}" : "\"}]");
    int rc = merge ? l3_store_merge_patch(st, key, strlen(key), p, (size_t)n, 0, NULL, NULL)
                   : l3_store_json_patch(st, key, strlen(key), p, (size_t)n, 0, NULL, NULL);
    free(p);
    return rc;
}

/* Stands in for the WAL ring append: copies the record under the document lock, which
 * is where the real hook spends its time, so kills often land between apply and commit. */
static int copy_hook(void *ctx, const l3_wal_rec_t *rec)
{
    static uint8_t ring[1 << 21];
    (void)ctx;
    size_t n = L3_MIN((size_t)rec->plen, sizeof(ring));
    if (n)
        memcpy(ring, rec->payload, n);
    for (volatile int i = 0; i < 2000; i++)
        ;
    return 0;
}

#define NTX 6

static int copy_group(void *ctx, const l3_wal_rec_t *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        copy_hook(ctx, &recs[i]);
    return 0;
}

/* Move an amount between two counters, sometimes also bumping a large document's counter,
 * in one transaction. */
static int transfer(l3_store_t *st, uint64_t *rs)
{
    char k[3][8];
    int x = (int)(t_rand(rs) % NTX), y = (int)(t_rand(rs) % NTX);
    snprintf(k[0], sizeof k[0], "T%d", x);
    snprintf(k[1], sizeof k[1], "T%d", y);
    snprintf(k[2], sizeof k[2], "L%d", (int)(t_rand(rs) % NDOCS));
    const void *kp[3] = {k[0], k[1], k[2]};
    size_t kl[3] = {2, 2, 2};
    size_t n = t_rand(rs) % 4 == 0 ? 3 : 2;
    l3_store_txn_t *t = NULL;
    int rc = l3_store_txn_begin(st, kp, kl, n, 0, &t);
    if (rc < 0)
        return rc;
    int64_t amount = (int64_t)(t_rand(rs) % 50) + 1;
    rc = l3_store_txn_incr(t, k[0], 2, "/n", 2, 0, -amount, NULL, NULL);
    if (rc == 0)
        rc = l3_store_txn_incr(t, k[1], 2, "/n", 2, 0, amount, NULL, NULL);
    if (rc == 0 && n == 3)
        rc = l3_store_txn_incr(t, k[2], 2, "/counter", 8, 0, 1, NULL, NULL);
    if (rc < 0) {
        l3_store_txn_abort(t);
        return rc;
    }
    return l3_store_txn_commit(t);
}

static int64_t tx_sum(l3_store_t *st)
{
    int64_t sum = 0;
    for (int i = 0; i < NTX; i++) {
        char key[8];
        snprintf(key, sizeof key, "T%d", i);
        l3_buf_t b = {0};
        if (l3_store_get_json(st, key, 2, "/n", 2, 0, &b, NULL) != 0 || l3_buf_reserve(&b, 1) < 0) {
            free(b.ptr);
            return INT64_MIN;
        }
        b.ptr[b.len] = 0;
        sum += strtoll(b.ptr, NULL, 10);
        free(b.ptr);
    }
    return sum;
}

static void worker(l3_store_t *st, uint64_t seed)
{
    if (l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL) != 0)
        _exit(3);
    l3_store_set_wal_hook(st, copy_hook, NULL);
    l3_store_set_wal_group_hook(st, copy_group, NULL);
    uint64_t rs = seed;
    static char sbuf[400000];
    memset(sbuf, 'f', sizeof(sbuf));
    char key[16];
    for (;;) {
        int d = (int)(t_rand(&rs) % NDOCS);
        snprintf(key, sizeof(key), "L%d", d);
        int64_t gen = (int64_t)(t_rand(&rs) % 1000000) + 1;
        int op = (int)(t_rand(&rs) % 120);
        int rc = 0;
        if (op >= 100) {
            rc = transfer(st, &rs);
        } else if (op < 20) {
            variant_t *v = &variants[d][t_rand(&rs) % NVARIANTS];
            rc = l3_store_put_bin(st, key, 2, v->bin, v->len, 0, NULL, NULL);
        } else if (op < 35) {
            rc = patch_fields(st, key, gen, true);
        } else if (op < 50) {
            rc = patch_fields(st, key, gen, false);
        } else if (op < 65) {
            rc = l3_store_set_int(st, key, 2, "/counter", 8, 0, gen, NULL);
        } else if (op < 75) {
            rc = l3_store_incr(st, key, 2, "/counter", 8, 0, 1, NULL, NULL);
        } else if (op < 88) {
            l3_doc_scalar_t s = {.type = L3_DOC_STRING};
            s.str.ptr = sbuf;
            s.str.len = t_rand(&rs) % 4 == 0 ? t_rand(&rs) % sizeof(sbuf) : t_rand(&rs) % 64;
            rc = l3_store_set(st, key, 2, "/free", 5, 0, &s, 0, NULL);
        } else {
            snprintf(key, sizeof(key), "S%d", (int)(t_rand(&rs) % 16));
            if (op < 94)
                rc = sth_put(st, key, "{\"small\":[1,2,3],\"t\":\"xyz\"}");
            else
                rc = l3_store_delete(st, key, strlen(key), 0, NULL);
            if (rc == -ENOENT)
                rc = 0;
        }
        if (rc < 0 && rc != L3_ERANGE) {
            fprintf(stderr, "worker %d: %s on %s\n", (int)getpid(), l3_strerror(rc), key);
            _exit(1);
        }
    }
}

static bool doc_ok(l3_store_t *st, int d)
{
    char key[16], path[16];
    snprintf(key, sizeof(key), "L%d", d);
    int64_t vals[2];
    const char *paths[2] = {"/gen", "/check"};
    l3_buf_t b = {0};
    for (int i = 0; i < 2; i++) {
        b.len = 0;
        int rc = l3_store_get_json(st, key, 2, paths[i], strlen(paths[i]), 0, &b, NULL);
        if (rc < 0 || l3_buf_reserve(&b, 1) < 0) {
            fprintf(stderr, "%s%s: %s\n", key, paths[i], l3_strerror(rc));
            free(b.ptr);
            return false;
        }
        b.ptr[b.len] = 0;
        vals[i] = strtoll(b.ptr, NULL, 10);
    }
    bool ok = vals[1] == vals[0] * 7;
    snprintf(path, sizeof(path), "/pad");
    b.len = 0;
    int rc = l3_store_get_json(st, key, 2, path, 4, 0, &b, NULL);
    size_t plen = (size_t)(vals[0] % 3000) + 50;
    if (rc < 0 || b.len != plen + 2)
        ok = false;
    for (size_t i = 1; ok && i <= plen; i++)
        ok = b.ptr[i] == 'a' + (int)(vals[0] % 26);
    if (!ok)
        fprintf(stderr, "%s torn: gen %" PRId64 " check %" PRId64 " pad length %zu\n", key, vals[0], vals[1],
                b.len);
    free(b.ptr);
    return ok;
}

/* Run `l3kv-inspect --name NAME check` (the installed tool); its exit status. */
static int run_inspect_check(const char *inspect, const char *name)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(inspect, inspect, "--name", name, "check", (char *)NULL);
        _exit(127);
    }
    return sth_wait(pid);
}

int main(int argc, char **argv)
{
    const char *e = getenv("L3_CRASH_TRIALS");
    int trials = e ? atoi(e) : 150;
    e = getenv("L3_CRASH_SECONDS");
    double seconds = e ? atof(e) : 25.0;
    e = getenv("L3_SLOW_SECONDS"); /* the bounded run of the slow suite caps every loop */
    if (e && atof(e) > 0 && atof(e) < seconds)
        seconds = atof(e);
    uint64_t rs = t_seed();
    alarm((unsigned)(seconds * 4 + 60)); /* nothing may hang: SIGALRM fails the test */

    for (int d = 0; d < NDOCS; d++) {
        for (int v = 0; v < NVARIANTS; v++) {
            size_t jl, bl;
            char *j = make_json((int64_t)(d * 1000 + v + 1), 20000 + (size_t)v * 15000, &jl);
            uint8_t *bin;
            if (l3_doc_from_json(j, jl, NULL, &bin, &bl, NULL) < 0)
                return T_HARNESS_ERROR;
            variants[d][v].bin = bin;
            variants[d][v].len = bl;
            free(j);
        }
    }
    l3_store_opts_t o = {
        .arena_bytes = 512u << 20, .max_procs = 16, .nstripes = 8, .lock_timeout_ms = 2000, .replace = true};
    char name[64];
    snprintf(name, sizeof(name), "crash.%ld", (long)getpid());
    o.name = name;
    l3_store_t *st;
    int rc = l3_store_create(&o, &st);
    if (rc < 0)
        return rc == -ENOTSUP ? T_SKIP : T_HARNESS_ERROR;
    for (int d = 0; d < NDOCS; d++) {
        char key[16];
        snprintf(key, sizeof(key), "L%d", d);
        CHECK_EQ_INT(l3_store_put_bin(st, key, 2, variants[d][0].bin, variants[d][0].len, 0, NULL, NULL), 0);
    }
    for (int i = 0; i < NTX; i++) {
        char key[8];
        snprintf(key, sizeof key, "T%d", i);
        CHECK_EQ_INT(sth_put(st, key, "{\"n\":1000}"), 0);
    }
    uint64_t t_end = l3_now_ns() + (uint64_t)(seconds * 1e9);
    int done = 0;
    for (; done < trials && l3_now_ns() < t_end && t_failures == 0; done++) {
        pid_t pids[NWORKERS];
        uint64_t wseed = t_rand(&rs);
        for (int w = 0; w < NWORKERS; w++) {
            pids[w] = fork();
            if (pids[w] == 0) {
                alarm(0);
                worker(st, wseed + (uint64_t)w);
            }
        }
        /* kill each at its own random instant within ~10 ms */
        for (int w = 0; w < NWORKERS; w++) {
            struct timespec ts = {0, (long)(t_rand(&rs) % 4000000)};
            nanosleep(&ts, NULL);
            kill(pids[w], SIGKILL);
        }
        for (int w = 0; w < NWORKERS; w++) {
            int status = sth_wait(pids[w]);
            if (status != 128 + SIGKILL) {
                fprintf(stderr, "trial %d: worker exited with %d\n", done, status);
                CHECK(0);
            }
        }
        /* alternate: reap (supervisor path) first, or let the next lockers repair */
        if (done % 2 == 0)
            for (int w = 0; w < NWORKERS; w++)
                CHECK(l3_store_proc_reap(st, pids[w]) >= 0);
        for (int d = 0; d < NDOCS; d++)
            CHECK(doc_ok(st, d));
        int64_t sum = tx_sum(st);
        if (sum != 1000 * NTX) {
            fprintf(stderr, "trial %d: the transfers' counters sum to %" PRId64 "\n", done, sum);
            CHECK(0);
        }
        for (int k = 0; k < 16; k++) {
            char key[16];
            snprintf(key, sizeof(key), "S%d", k);
            char *j = sth_json(st, key);
            CHECK(j == NULL || strcmp(j, "{\"small\":[1,2,3],\"t\":\"xyz\"}") == 0);
            free(j);
        }
        if (done % 2 == 1)
            for (int w = 0; w < NWORKERS; w++)
                CHECK(l3_store_proc_reap(st, pids[w]) >= 0);
        /* the check l3kv-inspect runs, on a read-only mapping */
        l3_store_t *ro;
        CHECK_EQ_INT(l3_store_attach(name, 0, L3_STORE_ATTACH_READONLY, &ro), 0);
        if (l3_store_check(ro, 0, NULL, NULL) != 0) {
            fprintf(stderr, "trial %d: check failed\n", done);
            l3_store_check(ro, 0, sth_report, NULL);
            CHECK(0);
        }
        l3_store_close(ro);
    }
    l3_store_stats_t s;
    l3_store_stats(st, &s);
    fprintf(stderr,
            "%d trials, %d kills: %" PRIu64 " repairs, %" PRIu64 " rollbacks, %" PRIu64 " grows, %" PRIu64
            " keys\n",
            done, done * NWORKERS, s.repairs, s.rollbacks, s.grows, s.keys);
    CHECK(done >= 20);
    CHECK(s.repairs > 0);
    if (argc > 1) /* and once through the inspector binary itself */
        CHECK_EQ_INT(run_inspect_check(argv[1], name), 0);
    sth_destroy(st);
    for (int d = 0; d < NDOCS; d++)
        for (int v = 0; v < NVARIANTS; v++)
            free(variants[d][v].bin);
    return t_done();
}
