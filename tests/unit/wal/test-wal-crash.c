/* SPDX-License-Identifier: MIT */
/*
 * test-wal-crash.c - hard crashes of the whole WAL pipeline. Each trial runs a "service"
 * process group (ring owner + writer + producers flooding the ring, some of them in fsync
 * mode waiting for durability) and SIGKILLs the entire group at a random instant; the ring
 * dies with it and only the files remain. Then: recovery keeps a valid prefix (torn tail set
 * aside), every producer's records are a gap-free prefix of what it submitted, and every
 * record acknowledged as durable is present. A second kind of trial kills single producers
 * and the writer at random and restarts the writer, then stops gracefully: in that case
 * every record acknowledged into the ring must be present.
 *
 * argv[1] = number of trials (the 'slow' suite runs many more).
 */
#include <sys/stat.h>

#include "l3kv/error.h"
#include "wal-int.h"
#include "walt.h"

enum { P = 3, MAXREC = 1000000 };

typedef struct {
    _Atomic uint64_t acked[P];   /* records whose hook returned 0 */
    _Atomic uint64_t durable[P]; /* records whose durability wait returned 0 */
} shared_t;

static char dir[256], base[300];
static int torn_trials; /* group-kill trials whose last record was torn */
static shared_t *sh;

static void fresh_dir(void)
{
    t_rmtree(dir);
    if (mkdir(dir, 0755) != 0)
        exit(T_HARNESS_ERROR);
}

static void producer(l3_wal_ring_t *r, int p, int fsync_wait)
{
    for (uint64_t j = 0; j < MAXREC; j++) {
        uint8_t pay[300];
        char key[16];
        snprintf(key, sizeof key, "p%d", p);
        uint32_t plen = walt_payload(pay, sizeof pay, (uint64_t)p, j);
        l3_wal_rec_t rec = {.op = L3_WALOP_PUT,
                            .lsn = (uint64_t)p * MAXREC + j + 1,
                            .key = key,
                            .klen = 2,
                            .payload = pay,
                            .plen = plen};
        int rc;
        while ((rc = l3_wal_hook(r, &rec)) == -EAGAIN) {
        }
        if (rc != 0)
            _exit(1);
        atomic_store(&sh->acked[p], j + 1);
        if (fsync_wait) {
            if (l3_wal_wait_durable(r, l3_wal_last_ticket(), -1) != 0)
                _exit(2);
            atomic_store(&sh->durable[p], j + 1);
        }
    }
    _exit(0);
}

/* check the recovered log; returns the number of records, *ret_discarded the bytes set aside */
static size_t verify(int need_all_acked, uint64_t *ret_discarded)
{
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    uint64_t next[P] = {0};
    int bad = 0;
    for (size_t i = 0; i < l.n; i++) {
        uint64_t p = (l.v[i].lsn - 1) / MAXREC, j = (l.v[i].lsn - 1) % MAXREC;
        if (p >= P || j != next[p]) {
            bad++;
            continue;
        }
        next[p]++;
        uint8_t pay[300];
        uint32_t plen = walt_payload(pay, sizeof pay, p, j);
        if (l.v[i].plen != plen || memcmp(l.v[i].payload, pay, plen) != 0)
            bad++;
    }
    CHECK_EQ_INT(bad, 0); /* no torn, mixed or out-of-order record */
    for (int p = 0; p < P; p++) {
        CHECK(next[p] >= atomic_load(&sh->durable[p]));   /* durable => present */
        CHECK(next[p] <= atomic_load(&sh->acked[p]) + 1); /* nothing never submitted */
        if (need_all_acked)
            CHECK(next[p] >= atomic_load(&sh->acked[p])); /* graceful: every ack kept */
    }
    size_t n = l.n;
    if (ret_discarded)
        *ret_discarded = rep.discarded_bytes;
    if (getenv("L3_TEST_VERBOSE"))
        fprintf(stderr,
                "recovered %zu records (p0 %llu/%llu, p1 %llu/%llu durable %llu), discarded %llu bytes\n", n,
                (unsigned long long)next[0], (unsigned long long)atomic_load(&sh->acked[0]),
                (unsigned long long)next[1], (unsigned long long)atomic_load(&sh->acked[1]),
                (unsigned long long)atomic_load(&sh->durable[1]), (unsigned long long)rep.discarded_bytes);
    walt_log_free(&l);
    return n;
}

/* Bytes in the newest segment on disk (0 when there is none). */
static uint64_t disk_bytes(void)
{
    uint64_t *seqs = NULL;
    int ns = l3_wal__list_segments(base, &seqs);
    char seg[400];
    struct stat st;
    uint64_t n = 0;
    if (ns > 0 && l3_wal__seg_name(seg, sizeof seg, base, seqs[ns - 1]) == 0 && stat(seg, &st) == 0)
        n = (uint64_t)st.st_size;
    free(seqs);
    return n;
}

static void trial_group_kill(uint64_t *seed, int t)
{
    fresh_dir();
    memset(sh, 0, sizeof *sh);
    pid_t svc = fork();
    if (svc == 0) {
        setpgid(0, 0);
        l3_wal_ring_t *r = walt_ring(4096 + 512 * 1024, NULL);
        l3_wal_writer_opts_t o = {.ring = r,
                                  .wal_path = base,
                                  .durability = t % 2 ? L3_WAL_FSYNC : L3_WAL_BUFFERED,
                                  .segment_bytes = 128 * 1024,
                                  .flush_interval_ms = 5};
        walt_writer(&o, NULL);
        for (int p = 0; p < P; p++)
            if (fork() == 0)
                producer(r, p, t % 2 == 1 && p != 0);
        pause();
        _exit(0);
    }
    setpgid(svc, svc);
    /* kill at a random instant once the flood is running (generous deadline: 30 s) */
    for (int i = 0; i < 30000 && atomic_load(&sh->acked[0]) == 0; i++)
        usleep(1000);
    CHECK(atomic_load(&sh->acked[0]) > 0); /* the flood started */
    /* buffered trials tear the last record on disk: wait until the writer wrote one (an ack
     * in buffered mode only means the record is in the ring) */
    for (int i = 0; t % 2 == 0 && i < 30000 && disk_bytes() <= L3_WAL_SEG_HDR + 16; i++)
        usleep(1000);
    usleep((useconds_t)(t_rand(seed) % 80000));
    kill(-svc, SIGKILL);
    while (waitpid(-svc, NULL, 0) > 0 || errno == EINTR) {
    }
    /* A SIGKILL leaves completed writes in the page cache, so it rarely tears a record by
     * itself. In the buffered trials (nothing was acknowledged as durable) tear the last
     * record as a power cut would: cut 1..16 bytes off the end of the last segment, which
     * must then be set aside while the prefix before it is kept. */
    uint64_t cut = 0;
    if (t % 2 == 0) {
        uint64_t *seqs = NULL;
        int ns = l3_wal__list_segments(base, &seqs);
        CHECK(ns > 0);
        if (ns > 0) {
            char seg[400];
            struct stat st;
            CHECK_EQ_INT(l3_wal__seg_name(seg, sizeof seg, base, seqs[ns - 1]), 0);
            CHECK_EQ_INT(stat(seg, &st), 0);
            if ((uint64_t)st.st_size <= L3_WAL_SEG_HDR + 16 && ns > 1) {
                /* killed just after a rotation (the new segment holds no record yet): the
                 * power cut also loses that segment's creation, and the tail before it tears */
                CHECK_EQ_INT(unlink(seg), 0);
                CHECK_EQ_INT(l3_wal__seg_name(seg, sizeof seg, base, seqs[ns - 2]), 0);
                CHECK_EQ_INT(stat(seg, &st), 0);
            }
            if ((uint64_t)st.st_size > L3_WAL_SEG_HDR + 16) {
                cut = 1 + t_rand(seed) % 16;
                CHECK_EQ_INT(truncate(seg, st.st_size - (off_t)cut), 0);
            }
        }
        free(seqs);
    }
    uint64_t discarded = 0;
    (void)verify(0, &discarded);
    if (cut)
        CHECK(discarded > 0); /* the torn tail occurred and was set aside */
    torn_trials += cut != 0;
}

static void trial_partial_kills(uint64_t *seed)
{
    fresh_dir();
    memset(sh, 0, sizeof *sh);
    l3_wal_ring_t *r = walt_ring(4096 + 512 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r,
                              .wal_path = base,
                              .durability = L3_WAL_BUFFERED,
                              .segment_bytes = 128 * 1024,
                              .abort_check_ms = 10};
    pid_t w = walt_writer(&o, NULL);
    pid_t kids[P];
    for (int p = 0; p < P; p++)
        if ((kids[p] = fork()) == 0)
            producer(r, p, 0);
    for (int round = 0; round < 4; round++) {
        usleep((useconds_t)(5000 + t_rand(seed) % 20000));
        if (t_rand(seed) % 2) {
            kill(w, SIGKILL);
            waitpid(w, NULL, 0);
            w = walt_writer(&o, NULL);
        } else {
            int p = (int)(t_rand(seed) % P);
            kill(kids[p], SIGKILL);
            waitpid(kids[p], NULL, 0);
            if ((kids[p] = fork()) == 0) /* restarts from scratch under new LSNs: stop it */
                _exit(0);
            waitpid(kids[p], NULL, 0);
        }
    }
    for (int p = 0; p < P; p++) {
        kill(kids[p], SIGKILL);
        waitpid(kids[p], NULL, 0);
    }
    CHECK_EQ_INT(walt_stop(w), 0);
    verify(1, NULL);
    l3_wal_ring_detach(r);
}

int main(int argc, char **argv)
{
    uint64_t seed = t_seed();
    walt_need_uring();
    int trials = argc > 1 ? atoi(argv[1]) : 6;
    sh = walt_region(sizeof *sh);
    char *d = t_tmpdir();
    snprintf(dir, sizeof dir, "%s/wal", d);
    snprintf(base, sizeof base, "%s/data.wal", dir);
    for (int t = 0; t < trials; t++) {
        trial_group_kill(&seed, t);
        trial_partial_kills(&seed);
    }
    CHECK(torn_trials >= (trials + 1) / 2 / 2); /* at least half the buffered trials tore */
    t_rmtree(d);
    free(d);
    return t_done();
}
