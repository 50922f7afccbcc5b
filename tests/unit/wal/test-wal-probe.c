/* SPDX-License-Identifier: MIT */
/*
 * test-wal-probe.c - l3_wal_probe, the question a store repair asks about a dead producer's
 * last record. Producers are forked children that die inside l3_wal_hook (test hooks call
 * _exit just before or just after the PUBLISHED store). Checked: published -> 1 while the
 * record is in the ring and after the writer consumed it (and it is in the replayed log);
 * died before publish -> 0 while RESERVED, after the writer aborted it, and it is not in the
 * log; never announced -> 0; the verdict survives the entry being reclaimed by a new
 * process (dead letter); a full producer table makes not-found answers -ENOENT; and a
 * randomised run with the writer consuming concurrently with every probe.
 */
#include <sys/stat.h>

#include "l3kv/error.h"
#include "wal-int.h"
#include "walt.h"

static char dir[256], base[300];

static void fresh_dir(void)
{
    t_rmtree(dir);
    if (mkdir(dir, 0755) != 0)
        exit(T_HARNESS_ERROR);
}

static l3_wal_rec_t mkrec(uint64_t lsn, char *key, size_t kcap, uint8_t *pay, uint32_t pcap)
{
    snprintf(key, kcap, "key-%llu", (unsigned long long)(lsn % 7));
    uint32_t plen = walt_payload(pay, pcap, lsn, 11);
    return (l3_wal_rec_t){.op = L3_WALOP_PUT,
                          .lsn = lsn,
                          .key = key,
                          .klen = (uint32_t)strlen(key),
                          .payload = pay,
                          .plen = plen};
}

static int append(l3_wal_ring_t *r, uint64_t lsn)
{
    char key[32];
    uint8_t pay[200];
    l3_wal_rec_t rec = mkrec(lsn, key, sizeof key, pay, sizeof pay);
    int rc;
    while ((rc = l3_wal_hook(r, &rec)) == -EAGAIN) {
    }
    return rc;
}

static void die(l3_wal_ring_t *r, const l3_wal_rec_t *rec)
{
    (void)r;
    (void)rec;
    _exit(42);
}

enum { DIE_NONE, DIE_BEFORE_PUBLISH, DIE_AFTER_PUBLISH };

/* Fork a producer that appends lsns first..last-1 normally, then dies as told inside the
 * hook call for `last`. Returns after the child is reaped. */
static void producer(l3_wal_ring_t *r, uint64_t first, uint64_t last, int how)
{
    pid_t pid = fork();
    if (pid < 0)
        exit(T_HARNESS_ERROR);
    if (pid == 0) {
        for (uint64_t l = first; l < last; l++)
            if (append(r, l) != 0)
                _exit(3);
        if (how == DIE_BEFORE_PUBLISH)
            l3_wal__test_before_publish = die;
        else if (how == DIE_AFTER_PUBLISH)
            l3_wal__test_after_publish = die;
        int rc = append(r, last);
        _exit(rc == 0 ? 0 : 4);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        exit(T_HARNESS_ERROR);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), how == DIE_NONE ? 0 : 42);
}

/* wait until the writer consumed everything reserved so far */
static void drain(l3_wal_ring_t *r)
{
    for (int i = 0; i < 20000; i++) {
        l3_wal_stats_t s;
        l3_wal_ring_stats(r, &s);
        if (s.tail == s.head)
            return;
        usleep(1000);
    }
    CHECK(!"writer did not drain the ring");
}

/* is lsn in the replayed log? */
static int in_log(uint64_t lsn)
{
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    int found = 0;
    for (size_t i = 0; i < l.n; i++)
        found += l.v[i].lsn == lsn;
    walt_log_free(&l);
    return found;
}

static pid_t start_writer(l3_wal_ring_t *r)
{
    static l3_wal_writer_opts_t o;
    o = (l3_wal_writer_opts_t){
        .ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED, .abort_check_ms = 5};
    return walt_writer(&o, NULL);
}

static void test_basic(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 256 * 1024, NULL);
    /* no writer yet: everything stays in the ring */
    producer(r, 1, 5, DIE_AFTER_PUBLISH);   /* 5 published, then death */
    producer(r, 10, 13, DIE_BEFORE_PUBLISH); /* 13 reserved and filled, never published */
    producer(r, 20, 20, DIE_NONE);           /* 20 normal */
    CHECK_EQ_INT(l3_wal_probe(r, 5), 1);
    CHECK_EQ_INT(l3_wal_probe(r, 13), 0);
    CHECK_EQ_INT(l3_wal_probe(r, 20), 1);
    CHECK_EQ_INT(l3_wal_probe(r, 21), 0); /* never announced */
    CHECK_EQ_INT(l3_wal_probe(r, 0), 0);
    CHECK_EQ_INT(l3_wal_probe(NULL, 5), -EINVAL);

    /* the writer consumes 5 and aborts the dead reservation of 13 */
    pid_t w = start_writer(r);
    drain(r);
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK_EQ_INT(s.aborted, 1);
    CHECK_EQ_INT(l3_wal_probe(r, 5), 1);
    CHECK_EQ_INT(l3_wal_probe(r, 13), 0);
    CHECK_EQ_INT(l3_wal_probe(r, 20), 1);
    CHECK_EQ_INT(walt_stop(w), 0);
    CHECK_EQ_INT(in_log(5), 1);
    CHECK_EQ_INT(in_log(4), 1);
    CHECK_EQ_INT(in_log(13), 0);
    CHECK_EQ_INT(in_log(12), 1);
    /* long after: still answered from the producer table */
    CHECK_EQ_INT(l3_wal_probe(r, 5), 1);
    CHECK_EQ_INT(l3_wal_probe(r, 13), 0);
    l3_wal_ring_detach(r);
}

/* Dead producers' entries reclaimed by new processes keep their verdicts (dead letters). */
static void test_reclaim(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    producer(r, 100, 100, DIE_AFTER_PUBLISH); /* entry 0 */
    producer(r, 200, 200, DIE_BEFORE_PUBLISH); /* entry 1 */
    /* fill the rest of the table, then two more processes reclaim entries 0 and 1 */
    for (uint64_t i = 0; i < L3_WAL_PROD_MAX; i++)
        producer(r, 1000 + i, 1000 + i, DIE_NONE);
    CHECK_EQ_INT(atomic_load(&r->sh->rh_probe_lossy), 0);
    CHECK(atomic_load(&r->sh->rh_prod[0].pe_lsn) != 100); /* reclaimed: a dead letter answers */
    CHECK(atomic_load(&r->sh->rh_dead[0].dl_lsn) == 100);
    CHECK_EQ_INT(l3_wal_probe(r, 100), 1);
    CHECK_EQ_INT(l3_wal_probe(r, 200), 0);
    /* the writer ignores the old tag of a reclaimed entry, and everything else still holds */
    pid_t w = start_writer(r);
    drain(r);
    CHECK_EQ_INT(l3_wal_probe(r, 100), 1);
    CHECK_EQ_INT(l3_wal_probe(r, 200), 0);
    CHECK_EQ_INT(l3_wal_probe(r, 1000 + L3_WAL_PROD_MAX - 1), 1);
    CHECK_EQ_INT(walt_stop(w), 0);
    CHECK_EQ_INT(in_log(100), 1);
    CHECK_EQ_INT(in_log(200), 0);
    l3_wal_ring_detach(r);
}

/* A live producer in every entry: the next process goes untracked, and the probe no longer
 * answers 0 for an LSN it cannot find. */
static void test_table_full(void)
{
    l3_wal_ring_t *r = walt_ring(4096 + 256 * 1024, NULL);
    for (unsigned i = 0; i < L3_WAL_PROD_MAX; i++) {
        atomic_store(&r->sh->rh_prod[i].pe_pid, (uint32_t)getpid());
        atomic_store(&r->sh->rh_prod[i].pe_lsn, 0);
    }
    /* this process owns entry 0; children find only live owners */
    atomic_store(&r->prod_key, (uint64_t)(uint32_t)getpid() << 32 | 1u);
    producer(r, 7, 8, DIE_AFTER_PUBLISH);
    CHECK_EQ_INT(l3_wal_probe(r, 8), -ENOENT);
    l3_wal_ring_detach(r);
}

/* Producers die at random points while the writer runs; every probe right after the death
 * races the writer's consumption and must match the fate recorded in the log. */
static void test_race(uint64_t *seed)
{
    enum { N = 60 };
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 256 * 1024, NULL);
    pid_t w = start_writer(r);
    int expect[N];
    uint64_t lsn = 1;
    for (int i = 0; i < N; i++) {
        int how = t_rand(seed) % 2 ? DIE_AFTER_PUBLISH : DIE_BEFORE_PUBLISH;
        uint64_t n = t_rand(seed) % 4;
        producer(r, lsn, lsn + n, how);
        lsn += n;
        expect[i] = how == DIE_AFTER_PUBLISH;
        int got = l3_wal_probe(r, lsn);
        if (got != expect[i])
            fprintf(stderr, "lsn %llu: probe %d, want %d\n", (unsigned long long)lsn, got, expect[i]);
        CHECK_EQ_INT(got, expect[i]);
        if (t_rand(seed) % 3 == 0)
            usleep((useconds_t)(t_rand(seed) % 3000));
        CHECK_EQ_INT(l3_wal_probe(r, lsn), expect[i]);
        lsn++;
    }
    drain(r);
    CHECK_EQ_INT(walt_stop(w), 0);
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    /* the log holds exactly the normal records and the records the probe called published */
    uint64_t want = lsn - 1 - N; /* normal appends */
    for (int i = 0; i < N; i++)
        want += (uint64_t)expect[i];
    CHECK_EQ_INT(l.n, want);
    walt_log_free(&l);
    l3_wal_ring_detach(r);
}

int main(void)
{
    uint64_t seed = t_seed();
    walt_need_uring();
    char *d = t_tmpdir();
    snprintf(dir, sizeof dir, "%s/wal", d);
    snprintf(base, sizeof base, "%s/data.wal", dir);
    test_basic();
    test_reclaim();
    test_table_full();
    test_race(&seed);
    t_rmtree(d);
    free(d);
    return t_done();
}
