/* SPDX-License-Identifier: MIT */
/*
 * test-store-stress.c - N forked processes run random operations on one shared arena for
 * a bounded time while each keeps an exact model of what it expects:
 *  - own keys (only that process writes them): put, set_int, incr, set string (often
 *    forcing a move to a bigger block), merge patch, JSON patch, delete; every read is
 *    compared with the model at once, and the final states are compared at the end;
 *  - shared counters: every process increments them by random deltas; the final value
 *    must be the exact sum of all deltas;
 *  - a shared document where each process merges its own member: the final member must be
 *    that process's last value.
 * Then the arena is checked (allocator, index, every document, no leaked block).
 * L3_STRESS_SECONDS (default 2) and L3_STRESS_PROCS (default 4) scale it.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <sys/mman.h>

#include "sth.h"

#define MAXPROCS 16
#define OWNKEYS 24
#define NCTR 4
#define SMAX 6000

typedef struct {
    bool exists;
    int64_t n;
    uint32_t slen;
    char sch;
} model_t;

typedef struct {
    model_t own[MAXPROCS][OWNKEYS];
    int64_t ctr_sum[MAXPROCS][NCTR];
    int64_t shared_last[MAXPROCS];
    uint64_t ops[MAXPROCS];
    int failures[MAXPROCS];
} board_t;

static char *expect_json(const model_t *m)
{
    char *s = malloc(m->slen + 64);
    int n = sprintf(s, "{\"n\":%" PRId64 ",\"s\":\"", m->n);
    memset(s + n, m->sch, m->slen);
    strcpy(s + n + m->slen, "\"}");
    return s;
}

static int worker(l3_store_t *st, int id, board_t *bd, double seconds, uint64_t seed)
{
    if (l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL) != 0)
        return 3;
    uint64_t rs = seed * 7919 + (uint64_t)id + 1;
    model_t *own = bd->own[id];
    char key[32], *sbuf = malloc(SMAX + 256);
    int fails = 0;
    uint64_t end = l3_now_ns() + (uint64_t)(seconds * 1e9), ops = 0;
    while (l3_now_ns() < end && fails < 20) {
        int k = (int)(t_rand(&rs) % OWNKEYS);
        model_t *m = &own[k];
        snprintf(key, sizeof(key), "p%d-k%d", id, k);
        size_t kl = strlen(key);
        int op = (int)(t_rand(&rs) % 100);
        int rc = 0;
        int64_t v = (int64_t)(t_rand(&rs) % 100000) - 50000;
        if (op < 15 || !m->exists) { /* put */
            model_t nm = {.exists = true,
                          .n = v,
                          .slen = (uint32_t)(t_rand(&rs) % 64),
                          .sch = 'a' + (char)(t_rand(&rs) % 26)};
            char *j = expect_json(&nm);
            rc = l3_store_put_json(st, key, kl, j, strlen(j), 0, NULL, NULL);
            free(j);
            if (rc == 0)
                *m = nm;
        } else if (op < 35) { /* set_int */
            rc = l3_store_set_int(st, key, kl, "/n", 2, 0, v, NULL);
            if (rc == 0)
                m->n = v;
        } else if (op < 50) { /* incr */
            int64_t got;
            rc = l3_store_incr(st, key, kl, "n", 1, L3_DOC_SET_PATH_DOTTED, v, &got, NULL);
            if (rc == 0) {
                m->n += v;
                if (got != m->n) {
                    fprintf(stderr, "p%d: incr returned %" PRId64 ", model %" PRId64 "\n", id, got, m->n);
                    fails++;
                }
            }
        } else if (op < 62) { /* set string, sometimes much longer */
            uint32_t len = (uint32_t)(t_rand(&rs) % (t_rand(&rs) % 4 == 0 ? SMAX : 40));
            char ch = 'a' + (char)(t_rand(&rs) % 26);
            memset(sbuf, ch, len);
            l3_doc_scalar_t sv = {.type = L3_DOC_STRING};
            sv.str.ptr = sbuf;
            sv.str.len = len;
            rc = l3_store_set(st, key, kl, "/s", 2, 0, &sv, 0, NULL);
            if (rc == 0) {
                m->slen = len;
                m->sch = ch;
            }
        } else if (op < 70) { /* merge patch */
            int n = snprintf(sbuf, 128, "{\"n\":%" PRId64 "}", v);
            rc = l3_store_merge_patch(st, key, kl, sbuf, (size_t)n, 0, NULL, NULL);
            if (rc == 0)
                m->n = v;
        } else if (op < 76) { /* JSON patch */
            uint32_t len = (uint32_t)(t_rand(&rs) % 100);
            char ch = 'A' + (char)(t_rand(&rs) % 26);
            int n = sprintf(sbuf, "[{\"op\":\"replace\",\"path\":\"/s\",\"value\":\"");
            memset(sbuf + n, ch, len);
            n += (int)len;
            n += sprintf(sbuf + n, "\"},{\"op\":\"test\",\"path\":\"/n\",\"value\":%" PRId64 "}]", m->n);
            rc = l3_store_json_patch(st, key, kl, sbuf, (size_t)n, 0, NULL, NULL);
            if (rc == 0) {
                m->slen = len;
                m->sch = ch;
            }
        } else if (op < 80) { /* delete */
            rc = l3_store_delete(st, key, kl, 0, NULL);
            if (rc == 0)
                m->exists = false;
        } else if (op < 90) { /* shared counters */
            int c = (int)(t_rand(&rs) % NCTR);
            snprintf(key, sizeof(key), "ctr%d", c);
            rc = l3_store_incr(st, key, strlen(key), "/v", 2, 0, v, NULL, NULL);
            if (rc == 0)
                bd->ctr_sum[id][c] += v;
        } else if (op < 93) { /* shared document, own member */
            int n = snprintf(sbuf, 128, "{\"m%d\":%" PRId64 "}", id, v);
            rc = l3_store_merge_patch(st, "shared", 6, sbuf, (size_t)n, 0, NULL, NULL);
            if (rc == 0)
                bd->shared_last[id] = v;
        } else if (op < 96) { /* read a document others are changing: never torn */
            char *got = sth_json(st, op < 95 ? "shared" : "ctr0");
            if (!got || l3_doc_check_json(got, strlen(got), NULL, NULL) != 0 || got[0] != '{') {
                fprintf(stderr, "p%d: shared document read torn: %.80s\n", id, got ? got : "(absent)");
                fails++;
            }
            free(got);
        } else { /* read and compare */
            char *got = sth_json(st, key);
            if (m->exists) {
                char *want = expect_json(m);
                if (!got || strcmp(got, want) != 0) {
                    fprintf(stderr, "p%d: %s read %.80s, model %.80s\n", id, key, got ? got : "(absent)",
                            want);
                    fails++;
                }
                free(want);
            } else if (got) {
                fprintf(stderr, "p%d: %s should be absent\n", id, key);
                fails++;
            }
            free(got);
        }
        if (rc < 0) {
            fprintf(stderr, "p%d: op %d on %s failed: %s\n", id, op, key, l3_strerror(rc));
            fails++;
        }
        ops++;
    }
    free(sbuf);
    bd->ops[id] = ops;
    bd->failures[id] = fails;
    return fails ? 1 : 0;
}

int main(void)
{
    const char *e = getenv("L3_STRESS_SECONDS");
    double seconds = e ? atof(e) : 2.0;
    e = getenv("L3_STRESS_PROCS");
    int nprocs = e ? atoi(e) : 4;
    if (nprocs < 1 || nprocs > MAXPROCS)
        nprocs = 4;
    uint64_t seed = t_seed();
    board_t *bd = mmap(NULL, sizeof(board_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (bd == MAP_FAILED)
        return T_HARNESS_ERROR;
    memset(bd, 0, sizeof(*bd));
    /* few stripes so that processes collide on locks and stripe tables grow */
    l3_store_t *st = sth_create(128 << 20, 4, 0);
    char key[32];
    for (int c = 0; c < NCTR; c++) {
        snprintf(key, sizeof(key), "ctr%d", c);
        CHECK_EQ_INT(sth_put(st, key, "{\"v\":0}"), 0);
    }
    CHECK_EQ_INT(sth_put(st, "shared", "{}"), 0);
    pid_t pids[MAXPROCS];
    for (int i = 0; i < nprocs; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            _exit(worker(st, i, bd, seconds, seed));
    }
    uint64_t total = 0;
    for (int i = 0; i < nprocs; i++) {
        CHECK_EQ_INT(sth_wait(pids[i]), 0);
        total += bd->ops[i];
        CHECK(l3_store_proc_reap(st, pids[i]) >= 0);
    }
    fprintf(stderr, "%d processes, %.1f s: %" PRIu64 " operations\n", nprocs, seconds, total);
    CHECK(total > 1000);

    /* final state against the models */
    uint64_t expect_keys = NCTR + 1;
    for (int i = 0; i < nprocs; i++) {
        for (int k = 0; k < OWNKEYS; k++) {
            snprintf(key, sizeof(key), "p%d-k%d", i, k);
            char *got = sth_json(st, key);
            const model_t *m = &bd->own[i][k];
            if (m->exists) {
                expect_keys++;
                char *want = expect_json(m);
                CHECK(got && strcmp(got, want) == 0);
                free(want);
            } else {
                CHECK(got == NULL);
            }
            free(got);
        }
    }
    for (int c = 0; c < NCTR; c++) {
        int64_t sum = 0;
        for (int i = 0; i < nprocs; i++)
            sum += bd->ctr_sum[i][c];
        snprintf(key, sizeof(key), "ctr%d", c);
        char *got = sth_json(st, key);
        char want[64];
        snprintf(want, sizeof(want), "{\"v\":%" PRId64 "}", sum);
        CHECK_EQ_STR(got, want);
        free(got);
    }
    l3_buf_t b = {0};
    for (int i = 0; i < nprocs; i++) {
        char path[16];
        snprintf(path, sizeof(path), "/m%d", i);
        b.len = 0;
        int rc = l3_store_get_json(st, "shared", 6, path, strlen(path), 0, &b, NULL);
        if (bd->shared_last[i] == 0) {
            CHECK(rc == L3_ENOTFOUND || (rc == 0 && b.len == 1 && b.ptr[0] == '0'));
            continue;
        }
        char want[32];
        snprintf(want, sizeof(want), "%" PRId64, bd->shared_last[i]);
        CHECK(rc == 0 && b.len == strlen(want) && memcmp(b.ptr, want, b.len) == 0);
    }
    free(b.ptr);
    l3_store_stats_t s;
    l3_store_stats(st, &s);
    CHECK_EQ_INT(s.keys, expect_keys);
    fprintf(stderr, "keys %" PRIu64 ", grows %" PRIu64 ", compactions %" PRIu64 ", fragmentation %.3f\n",
            s.keys, s.grows, s.compactions, s.fragmentation);
    CHECK_EQ_INT(l3_store_check(st, 0, sth_report, NULL), 0);
    sth_destroy(st);
    munmap(bd, sizeof(*bd));
    return t_done();
}
