/* SPDX-License-Identifier: MIT */
/*
 * test-wal-ring.c - the shared-memory ring: forked producers with a forked writer (order
 * per producer, no loss, wrap-around, full-ring waits), a producer SIGKILLed in the middle
 * of a reservation (aborted, never waited on forever; reaped and zombie), the bounded wait
 * and -EAGAIN of a full ring, a blocked producer woken by the writer, -EMSGSIZE, and the
 * robust reservation lock after its owner died holding it.
 */
#include <poll.h>
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

static int append(l3_wal_ring_t *r, uint64_t lsn, const char *key, uint64_t a, uint64_t b)
{
    uint8_t pay[600];
    uint32_t plen = walt_payload(pay, sizeof pay, a, b);
    l3_wal_rec_t rec = {.op = L3_WALOP_PUT,
                        .lsn = lsn,
                        .key = key,
                        .klen = (uint32_t)strlen(key),
                        .payload = pay,
                        .plen = plen};
    return l3_wal_hook(r, &rec);
}

/* P forked producers x M records through a small ring while a forked writer drains it. */
static void test_multi_producer(void)
{
    enum { P = 4, M = 4000 };
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 256 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED};
    pid_t w = walt_writer(&o, NULL);
    pid_t kids[P];
    for (int p = 0; p < P; p++) {
        kids[p] = fork();
        if (kids[p] == 0) {
            int fails = 0;
            for (int j = 0; j < M; j++) {
                char key[32];
                snprintf(key, sizeof key, "p%d-k%d", p, j % 13);
                int rc;
                while ((rc = append(r, (uint64_t)p * 1000000 + (uint64_t)j + 1, key, (uint64_t)p,
                                    (uint64_t)j)) == -EAGAIN)
                    fails++;
                if (rc != 0)
                    _exit(1);
            }
            (void)fails;
            _exit(0);
        }
    }
    for (int p = 0; p < P; p++) {
        int st;
        waitpid(kids[p], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_EQ_INT(walt_stop(w), 0);
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK_EQ_INT(s.records, P * M);
    CHECK(s.head == s.tail && s.tail == s.durable);
    CHECK(s.head > 256 * 1024); /* wrapped at least once */

    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(l.n, P * M);
    uint64_t next[P] = {0};
    int bad = 0;
    for (size_t i = 0; i < l.n; i++) {
        uint64_t p = l.v[i].lsn / 1000000, j = l.v[i].lsn % 1000000 - 1;
        if (p >= P || j != next[p]) {
            bad++;
            continue;
        }
        next[p]++;
        uint8_t pay[600];
        uint32_t plen = walt_payload(pay, sizeof pay, p, j);
        char key[32];
        snprintf(key, sizeof key, "p%d-k%d", (int)p, (int)(j % 13));
        if (l.v[i].plen != plen || memcmp(l.v[i].payload, pay, plen) != 0 || strcmp(l.v[i].key, key) != 0)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    for (int p = 0; p < P; p++)
        CHECK_EQ_INT(next[p], M);
    walt_log_free(&l);
    l3_wal_ring_detach(r);
}

/* A producer dies between reserve and publish; records behind it must still flow. */
static void test_killed_producer(int reap)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {
        .ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED, .abort_check_ms = 20};
    pid_t w = walt_writer(&o, NULL);
    int pfd[2];
    CHECK_EQ_INT(pipe(pfd), 0);
    pid_t kid = fork();
    if (kid == 0) {
        l3_wal_resv_t res;
        if (l3_wal_reserve(r, 5, 100, 1000, &res) != 0)
            _exit(1);
        memset(res.rec, 0x5A, 64); /* half-filled */
        char c = 1;
        if (write(pfd[1], &c, 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char c;
    CHECK_EQ_INT(read(pfd[0], &c, 1), 1);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(append(r, (uint64_t)i + 1, "after", 1, (uint64_t)i), 0);
    uint64_t ticket = l3_wal_last_ticket();
    /* behind a live reservation nothing passes */
    CHECK_EQ_INT(l3_wal_wait_durable(r, ticket, 150), -ETIMEDOUT);
    kill(kid, SIGKILL);
    if (reap)
        waitpid(kid, NULL, 0);
    CHECK_EQ_INT(l3_wal_wait_durable(r, ticket, 10000), 0);
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK_EQ_INT(s.aborted, 1);
    CHECK_EQ_INT(s.records, 10);
    if (!reap)
        waitpid(kid, NULL, 0);
    CHECK_EQ_INT(walt_stop(w), 0);
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(l.n, 10);
    for (size_t i = 0; i < l.n; i++)
        CHECK_EQ_INT(l.v[i].lsn, i + 1);
    walt_log_free(&l);
    close(pfd[0]);
    close(pfd[1]);
    l3_wal_ring_detach(r);
}

/* Records larger than half the ring: head is moved to mid-ring by small records first,
 * so each big one needs the standalone pad; all arrive intact and in order. */
static void test_big_records(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 256 * 1024, NULL);
    uint64_t maxp = l3_wal_ring_max_payload(r);
    CHECK(maxp > 200 * 1024); /* more than half of the 256 KiB data area */
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED};
    pid_t w = walt_writer(&o, NULL);
    enum { ROUNDS = 6 };
    uint32_t sizes[ROUNDS];
    uint64_t lsn = 1;
    for (int i = 0; i < ROUNDS; i++) {
        for (int k = 0; k < 40 + i * 7; k++, lsn++)
            CHECK_EQ_INT(append(r, lsn, "small", (uint64_t)k, lsn), 0);
        sizes[i] = (uint32_t)(maxp - (uint64_t)i * 1000);
        uint8_t *pay = malloc(sizes[i]);
        for (uint32_t b = 0; b < sizes[i]; b++)
            pay[b] = (uint8_t)(b * 31u + (uint32_t)i);
        l3_wal_rec_t rec = {.op = L3_WALOP_PUT, .lsn = lsn++, .key = "big", .klen = 3, .payload = pay,
                            .plen = sizes[i]};
        CHECK_EQ_INT(l3_wal_hook(r, &rec), 0);
        free(pay);
    }
    CHECK_EQ_INT(walt_stop(w), 0);
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(l.n, lsn - 1);
    int big = 0;
    for (size_t i = 0; i < l.n; i++) {
        CHECK_EQ_INT(l.v[i].lsn, i + 1);
        if (l.v[i].klen == 3 && memcmp(l.v[i].key, "big", 3) == 0) {
            CHECK_EQ_INT(l.v[i].plen, sizes[big]);
            int ok = 1;
            for (uint32_t b = 0; b < l.v[i].plen && ok; b++)
                ok = l.v[i].payload[b] == (uint8_t)(b * 31u + (uint32_t)big);
            CHECK(ok);
            big++;
        }
    }
    CHECK_EQ_INT(big, ROUNDS);
    walt_log_free(&l);
    l3_wal_ring_detach(r);
}

/* Records larger than a slot may be are split into FRAG pieces: replay joins them (the
 * callback never sees a piece), in order with the small records around them; a log cut in
 * the middle of a split record drops it and reports it incomplete. */
static void test_split_records(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 256 * 1024, NULL);
    uint32_t big = (uint32_t)(3 * l3_wal_ring_max_payload(r) + 12345);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED};
    pid_t w = walt_writer(&o, NULL);
    uint8_t *pay = malloc(big);
    uint64_t lsn = 1;
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 10; k++, lsn++)
            CHECK_EQ_INT(append(r, lsn, "small", (uint64_t)k, lsn), 0);
        for (uint32_t b = 0; b < big; b++)
            pay[b] = (uint8_t)(b * 7u + (uint32_t)round);
        l3_wal_rec_t rec = {.op = round == 1 ? L3_WALOP_MERGE : L3_WALOP_PUT, .lsn = lsn++, .key = "huge",
                            .klen = 4, .payload = pay, .plen = big - (uint32_t)round};
        CHECK_EQ_INT(l3_wal_hook(r, &rec), 0);
    }
    CHECK_EQ_INT(walt_stop(w), 0);
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(rep.incomplete, 0);
    CHECK_EQ_INT(l.n, lsn - 1);
    int huge = 0;
    for (size_t i = 0; i < l.n; i++) {
        CHECK_EQ_INT(l.v[i].lsn, i + 1);
        CHECK(l.v[i].op != L3_WALOP_FRAG);
        if (l.v[i].klen == 4 && memcmp(l.v[i].key, "huge", 4) == 0) {
            CHECK_EQ_INT(l.v[i].op, huge == 1 ? L3_WALOP_MERGE : L3_WALOP_PUT);
            CHECK_EQ_INT(l.v[i].plen, big - (uint32_t)huge);
            int ok = 1;
            for (uint32_t b = 0; b < l.v[i].plen && ok; b++)
                ok = l.v[i].payload[b] == (uint8_t)(b * 7u + (uint32_t)huge);
            CHECK(ok);
            huge++;
        }
    }
    CHECK_EQ_INT(huge, 3);
    walt_log_free(&l);
    /* cut the log inside the last split record: it is dropped, everything before stays */
    char seg[4200];
    snprintf(seg, sizeof seg, "%s.%08d", base, 1);
    struct stat st;
    CHECK_EQ_INT(stat(seg, &st), 0);
    CHECK_EQ_INT(truncate(seg, st.st_size - (off_t)big / 2), 0);
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(rep.incomplete, 1);
    CHECK_EQ_INT(l.n, lsn - 2); /* all but the last huge record */
    CHECK(l.n > 0 && l.v[l.n - 1].klen == 5); /* the small records before it */
    walt_log_free(&l);
    free(pay);
    l3_wal_ring_detach(r);
}

static void test_full(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(L3_WAL_RING_MIN_BYTES, NULL);
    int n = 0, rc;
    uint64_t t0 = 0;
    for (;;) {
        t0 = l3_now_ns();
        rc = append(r, (uint64_t)n + 1, "full", 2, (uint64_t)n);
        if (rc != 0)
            break;
        n++;
    }
    uint64_t waited = l3_now_ns() - t0;
    CHECK_EQ_INT(rc, -EAGAIN);
    CHECK(waited >= 50ull * 1000000u); /* it waited (bounded at L3_WAL_FULL_WAIT_MS) */
    CHECK(n > 50);
    /* too big for this ring */
    l3_wal_resv_t res;
    CHECK_EQ_INT(l3_wal_reserve(r, 0, (uint32_t)l3_wal_ring_max_payload(r) + 64, 0, &res), -EMSGSIZE);

    /* a producer blocked on the full ring is woken when the writer frees space */
    pid_t kid = fork();
    if (kid == 0) {
        if (l3_wal_reserve(r, 4, 300, 10000, &res) != 0)
            _exit(1);
        l3_wal_rec_t rec = {.op = L3_WALOP_DELETE,
                            .lsn = 100000,
                            .key = "last",
                            .klen = 4,
                            .payload = memset(malloc(300), 7, 300),
                            .plen = 300};
        l3_wal_publish(r, &res, &rec);
        _exit(0);
    }
    usleep(50000);
    /* the scenario: the producer is blocked (no writer runs, the ring is full); it cannot
     * have finished, whatever the scheduling */
    int early;
    CHECK_EQ_INT(waitpid(kid, &early, WNOHANG), 0);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_FSYNC};
    pid_t w = walt_writer(&o, NULL);
    int st;
    waitpid(kid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ_INT(walt_stop(w), 0);
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(l.n, (size_t)n + 1);
    if (l.n == (size_t)n + 1) {
        CHECK_EQ_INT(l.v[n].lsn, 100000);
        CHECK_EQ_INT(l.v[n].op, L3_WALOP_DELETE);
        CHECK_EQ_INT(l.v[n].payload[299], 7);
    }
    walt_log_free(&l);
    l3_wal_ring_detach(r);
}

/* The reservation lock's owner dies holding it: the next producer repairs and proceeds. */
static void test_robust_lock(void)
{
    l3_wal_ring_t *r = walt_ring(L3_WAL_RING_MIN_BYTES, NULL);
    pid_t kid = fork();
    if (kid == 0) {
        pthread_mutex_lock(&r->sh->rh_lock);
        _exit(0);
    }
    waitpid(kid, NULL, 0);
    CHECK_EQ_INT(append(r, 1, "k", 1, 1), 0);
    CHECK_EQ_INT(append(r, 2, "k", 1, 2), 0);
    l3_wal_rec_t none = {.op = L3_WALOP_NONE, .lsn = 3, .key = "k", .klen = 1};
    CHECK_EQ_INT(l3_wal_hook(r, &none), -EINVAL);
    none.op = L3_WALOP_MAX;
    CHECK_EQ_INT(l3_wal_hook(r, &none), -EINVAL);
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK(s.head > 0 && s.tail == 0);
    /* attach sees the same ring; a foreign region is refused */
    l3_wal_ring_t *r2;
    CHECK_EQ_INT(l3_wal_ring_attach(r->sh, L3_WAL_RING_MIN_BYTES, &r2), 0);
    CHECK_EQ_INT(l3_wal_durable_ticket(r2), 0);
    l3_wal_ring_detach(r2);
    void *junk = walt_region(L3_WAL_RING_MIN_BYTES);
    CHECK_EQ_INT(l3_wal_ring_attach(junk, L3_WAL_RING_MIN_BYTES, &r2), -EPROTO);
    CHECK_EQ_INT(l3_wal_ring_init(junk, 1000, &r2), -EINVAL);
    l3_wal_ring_detach(r);
}

int main(void)
{
    (void)t_seed();
    walt_need_uring();
    char *d = t_tmpdir();
    snprintf(dir, sizeof dir, "%s/wal", d);
    snprintf(base, sizeof base, "%s/data.wal", dir);
    test_robust_lock();
    test_full();
    test_big_records();
    test_split_records();
    test_killed_producer(1);
    test_killed_producer(0);
    test_multi_producer();
    t_rmtree(d);
    free(d);
    return t_done();
}
