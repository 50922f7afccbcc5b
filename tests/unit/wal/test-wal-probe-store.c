/* SPDX-License-Identifier: MIT */
/*
 * test-wal-probe-store.c - the store's repair with the real WAL probe: a worker killed
 * after its record was published keeps its mutation (memory equals a replay of the log),
 * one killed before publishing loses it (and so does the log). Repairs happen both through
 * the supervisor's l3_store_proc_reap right after the death and through the next locker
 * long after the writer consumed the record. A control run without the probe shows the
 * divergence this prevents: a later merge patch lands on a different base in memory than
 * in the replayed log.
 */
#include <sys/stat.h>

#include "l3kv/error.h"
#include "l3kv/store.h"
#include "sth.h"
#include "wal-int.h"
#include "walt.h"

static char dir[256], base[300];

static void fresh_dir(void)
{
    t_rmtree(dir);
    if (mkdir(dir, 0755) != 0)
        exit(T_HARNESS_ERROR);
}

static void die(l3_wal_ring_t *r, const l3_wal_rec_t *rec)
{
    (void)r;
    (void)rec;
    raise(SIGKILL);
}

/* What the doomed worker does: a set of /n (json NULL) or a PUT of json. */
typedef struct {
    int64_t val;
    const char *json;
    size_t jlen;
} change_t;

/* A worker that makes the change and is killed inside the WAL hook (before or after
 * publish). */
static pid_t worker_dies_doing(l3_store_t *st, l3_wal_ring_t *r, const change_t *ch, int after_publish)
{
    pid_t pid = fork();
    if (pid < 0)
        exit(T_HARNESS_ERROR);
    if (pid == 0) {
        if (l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL) != 0)
            _exit(3);
        l3_store_set_wal_hook(st, l3_wal_hook, r);
        if (after_publish)
            l3_wal__test_after_publish = die;
        else
            l3_wal__test_before_publish = die;
        if (ch->json)
            l3_store_put_json(st, "doc", 3, ch->json, ch->jlen, 0, NULL, NULL);
        else
            l3_store_set_int(st, "doc", 3, "/n", 2, 0, ch->val, NULL);
        _exit(4);
    }
    CHECK_EQ_INT(sth_wait(pid), 128 + SIGKILL);
    return pid;
}

static pid_t worker_dies(l3_store_t *st, l3_wal_ring_t *r, int64_t val, int after_publish)
{
    change_t ch = {.val = val};
    return worker_dies_doing(st, r, &ch, after_publish);
}

/* A fresh directory, store (with "doc" = {"n":1}), 256 KB ring and running writer. */
static l3_store_t *start(size_t arena, int with_probe, l3_wal_ring_t **ret_r, pid_t *ret_w)
{
    fresh_dir();
    l3_store_t *st = sth_create(arena, 16, 0);
    l3_wal_ring_t *r = walt_ring(4096 + 256 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED, .abort_check_ms = 5};
    *ret_w = walt_writer(&o, NULL);
    l3_store_set_wal_hook(st, l3_wal_hook, r);
    if (with_probe)
        l3_store_set_wal_probe(st, l3_wal_probe, r);
    CHECK_EQ_INT(sth_put(st, "doc", "{\"n\":1}"), 0);
    *ret_r = r;
    return st;
}

static int replay_into(void *ctx, const l3_wal_rec_t *rec)
{
    int rc = l3_store_replay(ctx, rec);
    return rc < 0 ? rc : 0;
}

/* Memory of st versus a replay of the log into a fresh store: 1 if "doc" is equal. */
static int matches_replay(l3_store_t *st, int verbose)
{
    l3_store_t *fresh = sth_create(16 << 20, 16, 0);
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, replay_into, fresh, &rep), 0);
    char *a = sth_json(st, "doc"), *b = sth_json(fresh, "doc");
    uint64_t la = 0, lb = 0;
    l3_store_get_lsn(st, "doc", 3, &la);
    l3_store_get_lsn(fresh, "doc", 3, &lb);
    int same = a && b && strcmp(a, b) == 0 && la == lb;
    if (!same && verbose)
        fprintf(stderr, "memory %s (lsn %llu), log %s (lsn %llu)\n", a ? a : "-", (unsigned long long)la,
                b ? b : "-", (unsigned long long)lb);
    free(a);
    free(b);
    sth_destroy(fresh);
    return same;
}

static void scenario(int with_probe)
{
    l3_wal_ring_t *r;
    pid_t w;
    l3_store_t *st = start(16 << 20, with_probe, &r, &w);
    l3_store_stats_t s0, s1;

    /* 1. killed after publish, repaired by the supervisor's reap right away */
    l3_store_stats(st, &s0);
    pid_t pid = worker_dies(st, r, 2, 1);
    CHECK_EQ_INT(l3_store_proc_reap(st, pid), 1);
    l3_store_stats(st, &s1);
    char *j = sth_json(st, "doc");
    CHECK_EQ_STR(j ? j : "-", with_probe ? "{\"n\":2}" : "{\"n\":1}");
    free(j);
    CHECK_EQ_INT(s1.rollforwards - s0.rollforwards, with_probe ? 1 : 0);

    /* 2. killed before publish: rolled back either way */
    l3_store_stats(st, &s0);
    pid = worker_dies(st, r, 3, 0);
    CHECK_EQ_INT(l3_store_proc_reap(st, pid), 1);
    l3_store_stats(st, &s1);
    CHECK_EQ_INT(s1.rollforwards, s0.rollforwards);
    j = sth_json(st, "doc");
    CHECK_EQ_STR(j ? j : "-", with_probe ? "{\"n\":2}" : "{\"n\":1}");
    free(j);

    /* 3. killed after publish, not reaped: the writer consumes the record, then the next
     *    locker (this process, much later) repairs */
    pid = worker_dies(st, r, 4, 1);
    int drained = 0; /* the writer consumed the record (deadline 30 s) */
    for (int i = 0; i < 30000 && !drained; i++) {
        l3_wal_stats_t ws;
        l3_wal_ring_stats(r, &ws);
        drained = ws.tail == ws.head;
        if (!drained)
            usleep(1000);
    }
    CHECK(drained);
    usleep(20000);
    /* a later mutation whose result depends on the base it lands on */
    CHECK_EQ_INT(l3_store_merge_patch(st, "doc", 3, "{\"m\":1}", 7, 0, NULL, NULL), 0);
    j = sth_json(st, "doc");
    CHECK_EQ_STR(j ? j : "-", with_probe ? "{\"n\":4,\"m\":1}" : "{\"n\":1,\"m\":1}");
    free(j);
    CHECK_EQ_INT(l3_store_proc_reap(st, pid), 1);
    CHECK_EQ_INT(l3_store_check(st, 0, sth_report, NULL), 0);

    CHECK_EQ_INT(walt_stop(w), 0);
    /* with the probe memory equals the log; without it they diverge (the bug it fixes) */
    CHECK_EQ_INT(matches_replay(st, with_probe), with_probe ? 1 : 0);
    l3_wal_ring_detach(r);
    sth_destroy(st);
}

/* A PUT whose record is split in pieces (bigger than a ring slot): the worker is killed
 * after the first pieces went out but before the final one (or right after it). Before:
 * the probe says "not published", the mutation is rolled back and replay drops the pieces;
 * after: it is kept and replay rebuilds it. Either way memory equals the replayed log. */
static void split_put_scenario(int after_publish)
{
    l3_wal_ring_t *r;
    pid_t w;
    l3_store_t *st = start(64 << 20, 1, &r, &w);
    size_t blen = 3 * l3_wal_ring_max_payload(r);
    char *json = malloc(blen + 32);
    int jl = snprintf(json, 32, "{\"big\":\"");
    memset(json + jl, 'q', blen);
    memcpy(json + jl + blen, "\"}", 3);
    change_t ch = {.json = json, .jlen = (size_t)jl + blen + 2};
    pid_t pid = worker_dies_doing(st, r, &ch, after_publish);
    CHECK_EQ_INT(l3_store_proc_reap(st, pid), 1);
    char *j = sth_json(st, "doc");
    CHECK(j != NULL && (after_publish ? strlen(j) > blen : strcmp(j, "{\"n\":1}") == 0));
    free(j);
    CHECK_EQ_INT(walt_stop(w), 0);
    CHECK_EQ_INT(matches_replay(st, 1), 1);
    free(json);
    l3_wal_ring_detach(r);
    sth_destroy(st);
}

int main(void)
{
    walt_need_uring();
    char *d = t_tmpdir();
    snprintf(dir, sizeof dir, "%s/wal", d);
    snprintf(base, sizeof base, "%s/data.wal", dir);
    scenario(1);
    scenario(0);
    split_put_scenario(0);
    split_put_scenario(1);
    t_rmtree(d);
    free(d);
    return t_done();
}
