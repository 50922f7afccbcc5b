/* SPDX-License-Identifier: MIT */
/*
 * test-store-txn.c - multi-key transactions (l3_store_txn_*, src/store/txn.c): one unit in
 * memory and in the WAL group, read-your-writes, failed calls change nothing, abort and a
 * refused group change nothing, a process killed in the commit is rolled back (or forward
 * when the probe finds its group) by whoever locks one of its stripes first, replaying the
 * group reproduces the state, opposite key orders never deadlock, and a transaction may
 * span 1000 keys and every stripe.
 */
#include <sys/mman.h>

#include "l3kv/walhook.h"
#include "sth.h"

#define MAXREC 8192

typedef struct {
    l3_wal_rec_t rec;
    uint8_t *buf; /* key + payload */
} caprec_t;

static caprec_t cap[MAXREC];
static size_t ncap, ngroups;
static int hook_rc;

static int cap_group(void *ctx, const l3_wal_rec_t *recs, size_t n)
{
    (void)ctx;
    if (hook_rc != 0)
        return hook_rc;
    for (size_t i = 0; i < n && ncap < MAXREC; i++) {
        caprec_t *c = &cap[ncap++];
        c->buf = malloc(recs[i].klen + recs[i].plen + 8);
        memcpy(c->buf, recs[i].key, recs[i].klen);
        if (recs[i].plen > 0)
            memcpy(c->buf + recs[i].klen, recs[i].payload, recs[i].plen);
        c->rec = recs[i];
        c->rec.key = c->buf;
        c->rec.payload = c->buf + recs[i].klen;
    }
    ngroups++;
    return 0;
}

static void cap_clear(void)
{
    for (size_t i = 0; i < ncap; i++)
        free(cap[i].buf);
    ncap = ngroups = 0;
}

static int64_t num(l3_store_t *st, const char *key, const char *path)
{
    l3_buf_t b = {0};
    if (l3_store_get_json(st, key, strlen(key), path, strlen(path), 0, &b, NULL) != 0)
        return INT64_MIN;
    l3_buf_reserve(&b, 1);
    b.ptr[b.len] = 0;
    int64_t v = strtoll(b.ptr, NULL, 10);
    free(b.ptr);
    return v;
}

static l3_store_txn_t *begin(l3_store_t *st, const char *const *keys, size_t n)
{
    size_t kl[64];
    for (size_t i = 0; i < n; i++)
        kl[i] = strlen(keys[i]);
    l3_store_txn_t *t = NULL;
    int rc = l3_store_txn_begin(st, (const void *const *)keys, kl, n, 0, &t);
    if (rc != 0)
        fprintf(stderr, "txn_begin: %s\n", l3_strerror(rc));
    return rc == 0 ? t : NULL;
}

/* a, b counters, d to delete: the state most tests start from */
static l3_store_t *fixture(void)
{
    l3_store_t *st = sth_create(32 << 20, 16, 0);
    CHECK_EQ_INT(sth_put(st, "a", "{\"n\":10,\"s\":\"x\"}"), 0);
    CHECK_EQ_INT(sth_put(st, "b", "{\"n\":0}"), 0);
    CHECK_EQ_INT(sth_put(st, "d", "{\"gone\":true}"), 0);
    return st;
}

/* The transaction most tests run: a.n -= 3, b.n += 3, new c, delete d, merge into a. */
static int run_transfer(l3_store_t *st, uint64_t lsns[5])
{
    static const char *const keys[] = {"a", "b", "c", "d", "a"};
    l3_store_txn_t *t = begin(st, keys, 5);
    if (t == NULL)
        return -1;
    int64_t nv;
    int rc = l3_store_txn_incr(t, "a", 1, "n", 1, 0, -3, &nv, &lsns[0]);
    if (rc == 0)
        rc = l3_store_txn_incr(t, "b", 1, "n", 1, 0, 3, &nv, &lsns[1]);
    if (rc == 0)
        rc = l3_store_txn_put_json(t, "c", 1, "{\"x\":1}", 7, 0, &lsns[2], NULL);
    if (rc == 0)
        rc = l3_store_txn_delete(t, "d", 1, 0, &lsns[3]);
    if (rc == 0)
        rc = l3_store_txn_merge_patch(t, "a", 1, "{\"m\":1}", 7, 0, &lsns[4], NULL);
    if (rc < 0) {
        l3_store_txn_abort(t);
        return rc;
    }
    return l3_store_txn_commit(t);
}

static void test_basic(void)
{
    l3_store_t *st = fixture();
    l3_store_set_wal_group_hook(st, cap_group, NULL);
    l3_store_stats_t s0, s1;
    l3_store_stats(st, &s0);
    static const char *const keys[] = {"a", "b", "c", "d", "a"};
    l3_store_txn_t *t = begin(st, keys, 5);
    CHECK(t != NULL);
    uint64_t l[8] = {0};
    int64_t nv = 0;
    CHECK_EQ_INT(l3_store_txn_incr(t, "a", 1, "n", 1, 0, -3, &nv, &l[0]), 0);
    CHECK_EQ_INT(nv, 7);
    /* read your own writes */
    const uint8_t *doc;
    uint64_t lsn;
    CHECK_EQ_INT(l3_store_txn_get(t, "a", 1, &doc, &lsn), 0);
    CHECK_EQ_INT(lsn, l[0]);
    l3_doc_val_t v;
    CHECK_EQ_INT(l3_doc_get(doc, "n", 1, L3_DOC_PATH_AUTO, &v), 0);
    CHECK_EQ_INT(v.i, 7);
    CHECK_EQ_INT(l3_store_txn_incr(t, "b", 1, "n", 1, 0, 3, &nv, &l[1]), 0);
    CHECK_EQ_INT(l3_store_txn_put_json(t, "c", 1, "{\"x\":1}", 7, 0, &l[2], NULL), 0);
    CHECK_EQ_INT(l3_store_txn_delete(t, "d", 1, 0, &l[3]), 0);
    CHECK_EQ_INT(l3_store_txn_get(t, "d", 1, &doc, &lsn), -ENOENT);
    /* failed calls change nothing and the transaction goes on */
    CHECK_EQ_INT(l3_store_txn_incr(t, "a", 1, "s", 1, 0, 1, &nv, NULL), L3_ETYPE);
    static const char failing[] = "[{\"op\":\"replace\",\"path\":\"/n\",\"value\":0},"
                                  "{\"op\":\"test\",\"path\":\"/n\",\"value\":5}]";
    CHECK_EQ_INT(l3_store_txn_json_patch(t, "a", 1, failing, sizeof failing - 1, 0, NULL, NULL), L3_ETYPE);
    CHECK_EQ_INT(l3_store_txn_delete(t, "d", 1, 0, NULL), -ENOENT);
    CHECK_EQ_INT(l3_store_txn_incr(t, "zz", 2, "n", 1, 0, 1, &nv, NULL), -EINVAL); /* not locked */
    CHECK_EQ_INT(l3_store_txn_put_json(t, "b", 1, "{}", 2, l[1] + 100, NULL, NULL), -ESTALE);
    CHECK_EQ_INT(l3_store_txn_merge_patch(t, "a", 1, "{\"m\":1}", 7, l[0], &l[4], NULL), 0);
    CHECK_EQ_INT(l3_store_txn_get(t, "a", 1, &doc, &lsn), 0);
    CHECK_EQ_INT(l3_doc_get(doc, "n", 1, L3_DOC_PATH_AUTO, &v), 0);
    CHECK_EQ_INT(v.i, 7);
    for (int i = 1; i < 5; i++)
        CHECK(l[i] > l[i - 1]);
    CHECK_EQ_INT(ncap, 0); /* nothing logged before commit */
    CHECK_EQ_INT(l3_store_txn_commit(t), 0);
    CHECK_EQ_INT(num(st, "a", "n"), 7);
    CHECK_EQ_INT(num(st, "a", "m"), 1);
    CHECK_EQ_INT(num(st, "b", "n"), 3);
    CHECK_EQ_INT(num(st, "c", "x"), 1);
    CHECK(sth_json(st, "d") == NULL);
    l3_store_get_lsn(st, "a", 1, &lsn);
    CHECK_EQ_INT(lsn, l[4]);
    l3_store_get_lsn(st, "b", 1, &lsn);
    CHECK_EQ_INT(lsn, l[1]);
    /* one group, the records in call order with their LSNs */
    CHECK_EQ_INT(ngroups, 1);
    CHECK_EQ_INT(ncap, 5);
    static const uint8_t ops[] = {L3_WALOP_SET, L3_WALOP_SET, L3_WALOP_PUT, L3_WALOP_DELETE, L3_WALOP_MERGE};
    for (size_t i = 0; i < 5 && i < ncap; i++) {
        CHECK_EQ_INT(cap[i].rec.op, ops[i]);
        CHECK_EQ_INT(cap[i].rec.lsn, l[i]);
    }
    CHECK_EQ_INT(cap[0].rec.flags, L3_WAL_RF_INCR);
    l3_store_stats(st, &s1);
    CHECK_EQ_INT(s1.keys, s0.keys); /* +c -d */
    CHECK_EQ_INT(l3_store_check(st, 0, sth_report, NULL), 0);

    /* replaying the group on the starting state gives the same documents */
    l3_store_t *rp = fixture();
    for (size_t i = 0; i < ncap; i++)
        CHECK_EQ_INT(l3_store_replay(rp, &cap[i].rec), 0);
    for (size_t i = 0; i < ncap; i++) /* idempotent */
        CHECK_EQ_INT(l3_store_replay(rp, &cap[i].rec), 1);
    static const char *const all[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < 4; i++) {
        char *x = sth_json(st, all[i]), *y = sth_json(rp, all[i]);
        CHECK((x == NULL) == (y == NULL));
        if (x && y)
            CHECK(strcmp(x, y) == 0);
        free(x);
        free(y);
    }
    sth_destroy(rp);
    cap_clear();
    sth_destroy(st);
}

/* abort, a refused group, no group hook: nothing changes */
static void test_nothing_changes(void)
{
    for (int mode = 0; mode < 3; mode++) {
        l3_store_t *st = fixture();
        char *a0 = sth_json(st, "a"), *b0 = sth_json(st, "b");
        l3_store_stats_t s0, s1;
        l3_store_stats(st, &s0);
        uint64_t l[5];
        if (mode == 0) {
            static const char *const keys[] = {"a", "b"};
            l3_store_txn_t *t = begin(st, keys, 2);
            CHECK_EQ_INT(l3_store_txn_incr(t, "a", 1, "n", 1, 0, 1, NULL, NULL), 0);
            l3_store_txn_abort(t);
        } else if (mode == 1) {
            l3_store_set_wal_group_hook(st, cap_group, NULL);
            hook_rc = -EAGAIN;
            CHECK_EQ_INT(run_transfer(st, l), -EAGAIN);
            hook_rc = 0;
        } else {
            l3_store_set_wal_hook(st, (l3_wal_hook_fn)(void (*)(void))cap_group, NULL);
            CHECK_EQ_INT(run_transfer(st, l), -ENOTSUP);
        }
        char *a1 = sth_json(st, "a"), *b1 = sth_json(st, "b"), *c1 = sth_json(st, "c"),
             *d1 = sth_json(st, "d");
        CHECK(a0 && a1 && strcmp(a0, a1) == 0);
        CHECK(b0 && b1 && strcmp(b0, b1) == 0);
        CHECK(c1 == NULL && d1 != NULL);
        l3_store_stats(st, &s1);
        CHECK_EQ_INT(s1.used_bytes, s0.used_bytes);
        CHECK_EQ_INT(s1.keys, s0.keys);
        CHECK_EQ_INT(l3_store_check(st, 0, sth_report, NULL), 0);
        free(a0), free(b0), free(a1), free(b1), free(c1), free(d1);
        cap_clear();
        sth_destroy(st);
    }
}

/* 1000 keys over every stripe in one transaction, created then deleted */
static void test_many_keys(void)
{
    l3_store_t *st = sth_create(64 << 20, 16, 0);
    l3_store_set_wal_group_hook(st, cap_group, NULL);
    enum { N = 1000 };
    static char names[N][16];
    static const void *kp[N];
    static size_t kl[N];
    for (int i = 0; i < N; i++) {
        kl[i] = (size_t)snprintf(names[i], sizeof names[i], "key-%d", i);
        kp[i] = names[i];
    }
    for (int round = 0; round < 2; round++) {
        l3_store_txn_t *t = NULL;
        CHECK_EQ_INT(l3_store_txn_begin(st, kp, kl, N, 0, &t), 0);
        for (int i = 0; i < N; i++)
            CHECK_EQ_INT(round == 0
                             ? l3_store_txn_put_json(t, kp[i], kl[i], "{\"v\":[1,2,3]}", 13, 0, NULL, NULL)
                             : l3_store_txn_delete(t, kp[i], kl[i], 0, NULL),
                         0);
        CHECK_EQ_INT(l3_store_txn_commit(t), 0);
        l3_store_stats_t s;
        l3_store_stats(st, &s);
        CHECK_EQ_INT(s.keys, round == 0 ? N : 0);
        CHECK_EQ_INT(l3_store_check(st, 0, sth_report, NULL), 0);
    }
    CHECK_EQ_INT(ngroups, 2);
    CHECK_EQ_INT(ncap, 2 * N);
    cap_clear();
    sth_destroy(st);
}

static volatile uint64_t *published; /* shared page: the group's last LSN once "in the WAL" */
static int die_mode;                 /* 0: die before the group is logged, 1: after */

static int die_group(void *ctx, const l3_wal_rec_t *recs, size_t n)
{
    (void)ctx;
    if (die_mode == 1)
        *published = recs[n - 1].lsn;
    raise(SIGKILL);
    return 0;
}

static int probe(void *ctx, uint64_t lsn)
{
    (void)ctx;
    return lsn != 0 && lsn == *published ? 1 : 0;
}

/* A process killed inside the group hook: rolled back, or forward once the probe says the
 * group was published; repaired by the reaper or by the next locker of any stripe. */
static void test_crash(void)
{
    published = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (published == MAP_FAILED)
        exit(T_HARNESS_ERROR);
    static const char *const all[] = {"a", "b", "c", "d"};
    for (int mode = 0; mode < 2; mode++) {
        for (int reap_first = 0; reap_first < 2; reap_first++) {
            /* the expected state: the starting one, or the transaction's */
            l3_store_t *ref = fixture();
            uint64_t l[5];
            if (mode == 1)
                CHECK_EQ_INT(run_transfer(ref, l), 0);
            l3_store_t *st = fixture();
            l3_store_stats_t s0, s1;
            l3_store_stats(st, &s0);
            *published = 0;
            die_mode = mode;
            pid_t pid = fork();
            if (pid == 0) {
                if (l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL) != 0)
                    _exit(3);
                l3_store_set_wal_group_hook(st, die_group, NULL);
                run_transfer(st, l);
                _exit(4);
            }
            CHECK_EQ_INT(sth_wait(pid), 128 + SIGKILL);
            l3_store_set_wal_probe(st, probe, NULL);
            if (reap_first)
                CHECK_EQ_INT(l3_store_proc_reap(st, pid), 1);
            /* "b" first: not the stripe the dead process locked first */
            for (int i = 3; i >= 0; i--) {
                char *x = sth_json(ref, all[(i + 1) % 4]), *y = sth_json(st, all[(i + 1) % 4]);
                if ((x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0)) {
                    fprintf(stderr, "crash mode %d reap %d key %s: got %s want %s\n", mode, reap_first,
                            all[(i + 1) % 4], y ? y : "-", x ? x : "-");
                    CHECK(0);
                }
                free(x);
                free(y);
            }
            l3_store_stats(st, &s1);
            CHECK_EQ_INT(mode == 1 ? s1.rollforwards : s1.rollbacks,
                         (mode == 1 ? s0.rollforwards : s0.rollbacks) + 1);
            if (mode == 0)
                CHECK_EQ_INT(s1.used_bytes, s0.used_bytes);
            if (!reap_first)
                CHECK_EQ_INT(l3_store_proc_reap(st, pid), 1);
            CHECK_EQ_INT(l3_store_check(st, 0, sth_report, NULL), 0);
            /* every key is usable again, in a transaction too */
            l3_store_set_wal_group_hook(st, cap_group, NULL);
            static const char *const keys[] = {"a", "b", "c", "d"};
            l3_store_txn_t *t = begin(st, keys, 4);
            CHECK(t != NULL);
            CHECK_EQ_INT(l3_store_txn_put_json(t, "c", 1, "{}", 2, 0, NULL, NULL), 0);
            CHECK_EQ_INT(l3_store_txn_commit(t), 0);
            CHECK_EQ_INT(l3_store_check(st, 0, sth_report, NULL), 0);
            cap_clear();
            sth_destroy(ref);
            sth_destroy(st);
        }
    }
    munmap((void *)published, 4096);
}

/* Processes moving amounts between counters in transactions whose keys come in opposite
 * orders, and single-key increments of the same keys: no deadlock (no lock timeout), and
 * the sum is kept. */
static void test_opposite_orders(void)
{
    l3_store_t *st = sth_create(32 << 20, 16, 0);
    enum { K = 6, PROCS = 3, ITERS = 1500 };
    static char names[K][8];
    for (int i = 0; i < K; i++) {
        snprintf(names[i], sizeof names[i], "c%d", i);
        CHECK_EQ_INT(sth_put(st, names[i], "{\"n\":1000}"), 0);
    }
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        if ((pids[p] = fork()) == 0) {
            if (l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL) != 0)
                _exit(3);
            l3_store_set_wal_group_hook(st, cap_group, NULL);
            uint64_t seed = (uint64_t)p * 7919 + 1;
            for (int i = 0; i < ITERS; i++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                int x = (int)((seed >> 33) % K), y = (int)((seed >> 40) % K);
                const void *kp[4] = {names[x], names[y], names[(x + 1) % K], names[(y + 2) % K]};
                size_t kl[4] = {2, 2, 2, 2};
                if (p % 2) { /* the other order */
                    const void *tmp = kp[0];
                    kp[0] = kp[3], kp[3] = tmp;
                }
                l3_store_txn_t *t = NULL;
                if (l3_store_txn_begin(st, kp, kl, 4, 0, &t) != 0)
                    _exit(5);
                if (l3_store_txn_incr(t, names[x], 2, "n", 1, 0, -1, NULL, NULL) != 0 ||
                    l3_store_txn_incr(t, names[y], 2, "n", 1, 0, 1, NULL, NULL) != 0)
                    _exit(6);
                if (l3_store_txn_commit(t) != 0)
                    _exit(7);
                cap_clear();
                if (l3_store_incr(st, names[(x + 3) % K], 2, "n", 1, 0, 0, NULL, NULL) != 0)
                    _exit(8);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++)
        CHECK_EQ_INT(sth_wait(pids[p]), 0);
    int64_t sum = 0;
    for (int i = 0; i < K; i++)
        sum += num(st, names[i], "n");
    CHECK_EQ_INT(sum, 1000 * K);
    CHECK_EQ_INT(l3_store_check(st, 0, sth_report, NULL), 0);
    sth_destroy(st);
}

/* A PUT in a transaction is held packed; a change of the same key later in the same
 * transaction works on its full form; both land, and the stored document is the last. */
static void test_put_then_change(void)
{
    l3_store_t *st = fixture();
    l3_store_set_wal_group_hook(st, cap_group, NULL);
    cap_clear();
    static const char *const keys[] = {"c"};
    l3_store_txn_t *t = begin(st, keys, 1);
    CHECK(t != NULL);
    int64_t nv = 0;
    CHECK_EQ_INT(l3_store_txn_put_json(t, "c", 1, "{\"x\":1,\"s\":\"y\"}", 15, 0, NULL, NULL), 0);
    const uint8_t *doc;
    uint64_t lsn;
    CHECK_EQ_INT(l3_store_txn_get(t, "c", 1, &doc, &lsn), 0);
    CHECK(l3_doc_is_packed(doc));
    CHECK_EQ_INT(l3_store_txn_incr(t, "c", 1, "x", 1, 0, 41, &nv, NULL), 0);
    CHECK_EQ_INT(nv, 42);
    CHECK_EQ_INT(l3_store_txn_commit(t), 0);
    CHECK_EQ_INT(num(st, "c", "x"), 42);
    CHECK_EQ_INT(ncap, 2);
    sth_destroy(st);
}

int main(void)
{
    test_basic();
    test_put_then_change();
    test_nothing_changes();
    test_many_keys();
    test_crash();
    test_opposite_orders();
    return t_done();
}
