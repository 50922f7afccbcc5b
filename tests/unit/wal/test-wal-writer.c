/* SPDX-License-Identifier: MIT */
/*
 * test-wal-writer.c - the writer process with real io_uring to a temp directory: replay
 * equals what was appended (buffered and fsync), SIGTERM drains and syncs, group commit
 * (fewer fdatasyncs than records), wait/wake in both modes, the eventfd notification,
 * injected ENOSPC (refused, then resumed, nothing lost), injected fdatasync EIO (fail-stop),
 * short writes and EAGAIN results, writer SIGKILL + restart with nothing lost or duplicated,
 * segment rotation, checkpoint rotation and deletion.
 */
#include <dirent.h>
#include <poll.h>
#include <sys/stat.h>

#include "l3kv/error.h"
#include "wal-int.h"
#include "walt.h"

static char dir[256], base[300];
static _Atomic int *inject; /* shared with the forked writer */

static void fresh_dir(void)
{
    t_rmtree(dir);
    if (mkdir(dir, 0755) != 0)
        exit(T_HARNESS_ERROR);
}

static int append(l3_wal_ring_t *r, uint64_t lsn)
{
    uint8_t pay[900];
    char key[32];
    snprintf(key, sizeof key, "key-%llu", (unsigned long long)(lsn % 97));
    uint32_t plen = walt_payload(pay, sizeof pay, lsn, 3);
    l3_wal_rec_t rec = {.op = (uint8_t)(1 + lsn % 5),
                        .lsn = lsn,
                        .key = key,
                        .klen = (uint32_t)strlen(key),
                        .payload = pay,
                        .plen = plen};
    return l3_wal_hook(r, &rec);
}

/* append lsn lo..hi, waiting out a full ring */
static void append_all(l3_wal_ring_t *r, uint64_t lo, uint64_t hi)
{
    for (uint64_t i = lo; i <= hi; i++) {
        int rc;
        while ((rc = append(r, i)) == -EAGAIN) {
        }
        CHECK_EQ_INT(rc, 0);
    }
}

/* replay must give exactly lsn 1..n in order with the appended contents */
static void check_replay(uint64_t n)
{
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(rep.stop_reason, 0);
    CHECK_EQ_INT(l.n, n);
    int bad = 0;
    for (size_t i = 0; i < l.n && i < n; i++) {
        uint64_t lsn = i + 1;
        uint8_t pay[900];
        char key[32];
        snprintf(key, sizeof key, "key-%llu", (unsigned long long)(lsn % 97));
        uint32_t plen = walt_payload(pay, sizeof pay, lsn, 3);
        if (l.v[i].lsn != lsn || l.v[i].op != 1 + lsn % 5 || strcmp(l.v[i].key, key) != 0 ||
            l.v[i].plen != plen || memcmp(l.v[i].payload, pay, plen) != 0)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    walt_log_free(&l);
}

static int count_segments(void)
{
    uint64_t *seqs = NULL;
    int n = l3_wal__list_segments(base, &seqs);
    free(seqs);
    return n;
}

static void test_basic(l3_wal_durability_t mode)
{
    enum { N = 3000 };
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 2 * 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = mode};
    pid_t w = walt_writer(&o, NULL);
    int waits_ok = 0;
    for (uint64_t i = 1; i <= N; i++) {
        int rc;
        while ((rc = append(r, i)) == -EAGAIN) {
        }
        CHECK_EQ_INT(rc, 0);
        if (i % 500 == 0)
            waits_ok += l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000) == 0;
    }
    CHECK_EQ_INT(waits_ok, N / 500);
    CHECK_EQ_INT(walt_stop(w), 0); /* SIGTERM: drain everything, sync, exit 0 */
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK_EQ_INT(s.records, N);
    CHECK(s.durable == s.head);
    CHECK_EQ_INT(s.error, 0);
    check_replay(N);
    l3_wal_ring_detach(r);
}

/* count fds of a process whose link target contains `what` */
static int count_fds(pid_t pid, const char *what)
{
    char dpath[64];
    snprintf(dpath, sizeof dpath, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dpath);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char p[400], target[4096];
        snprintf(p, sizeof p, "%s/%s", dpath, de->d_name);
        ssize_t k = readlink(p, target, sizeof target - 1);
        if (k > 0) {
            target[k] = 0;
            n += strstr(target, what) != NULL;
        }
    }
    closedir(d);
    return n;
}

/* invariant 4: only the writer has the WAL open, and it holds an io_uring instance */
static void test_only_writer_has_wal_open(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_FSYNC};
    pid_t w = walt_writer(&o, NULL);
    CHECK_EQ_INT(append(r, 1), 0);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    CHECK_EQ_INT(count_fds(w, "data.wal."), 1);
    CHECK(count_fds(w, "io_uring") >= 1);
    CHECK_EQ_INT(count_fds(getpid(), "data.wal."), 0);
    CHECK_EQ_INT(count_fds(getpid(), "io_uring"), 0);
    CHECK_EQ_INT(walt_stop(w), 0);
    l3_wal_ring_detach(r);
}

/* fsync mode, forked producers each waiting for every record: group commit */
static void test_group_commit(void)
{
    enum { P = 4, M = 300 };
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_FSYNC};
    pid_t w = walt_writer(&o, NULL);
    pid_t kids[P];
    for (int p = 0; p < P; p++) {
        kids[p] = fork();
        if (kids[p] == 0) {
            for (int j = 0; j < M; j++) {
                uint8_t pay[64];
                memset(pay, p, sizeof pay);
                l3_wal_rec_t rec = {.op = L3_WALOP_PUT,
                                    .lsn = (uint64_t)p * 100000 + (uint64_t)j,
                                    .key = "g",
                                    .klen = 1,
                                    .payload = pay,
                                    .plen = sizeof pay};
                if (l3_wal_hook(r, &rec) != 0)
                    _exit(1);
                uint64_t t = l3_wal_last_ticket();
                if (l3_wal_wait_durable(r, t, 10000) != 0 || l3_wal_durable_ticket(r) < t)
                    _exit(2);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < P; p++) {
        int st;
        waitpid(kids[p], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK_EQ_INT(s.records, P * M);
    fprintf(stderr, "group commit: %llu records, %llu fdatasyncs, %llu batches\n",
            (unsigned long long)s.records, (unsigned long long)s.fsyncs, (unsigned long long)s.batches);
    CHECK(s.fsyncs < s.records); /* several records share one fdatasync */
    CHECK_EQ_INT(walt_stop(w), 0);
    l3_wal_ring_detach(r);
}

/* buffered mode: on-demand sync through the eventfd interface */
static void test_notify(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    CHECK_EQ_INT(l3_wal_notify_create(r, 2), 0);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED};
    pid_t w = walt_writer(&o, NULL);
    CHECK_EQ_INT(append(r, 1), 0);
    uint64_t t = l3_wal_last_ticket();
    int fd = l3_wal_notify_fd(r, 1);
    CHECK(fd >= 0);
    CHECK_EQ_INT(l3_wal_notify_fd(r, 2), -EINVAL);
    int armed = l3_wal_notify_arm(r, 1, t);
    CHECK(armed == 0 || armed == 1);
    if (armed == 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        CHECK_EQ_INT(poll(&pfd, 1, 10000), 1);
        l3_wal_notify_ack(r, 1);
    }
    CHECK(l3_wal_durable_ticket(r) >= t);
    /* the fd is drained: not readable any more */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK_EQ_INT(poll(&pfd, 1, 0), 0);
    CHECK_EQ_INT(l3_wal_notify_arm(r, 1, t), 1); /* already durable */
    /* blocking wait in buffered mode also triggers a sync */
    CHECK_EQ_INT(append(r, 2), 0);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    CHECK_EQ_INT(walt_stop(w), 0);
    check_replay(2);
    l3_wal_ring_detach(r);
}

/* buffered mode with flush_interval_ms: durable without anyone asking; without it: not */
static void test_flush_interval(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED};
    pid_t w = walt_writer(&o, NULL);
    CHECK_EQ_INT(append(r, 1), 0);
    uint64_t t = l3_wal_last_ticket();
    usleep(300000);
    CHECK(l3_wal_durable_ticket(r) < t); /* written, not synced: nobody asked */
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK(s.tail >= t);
    CHECK_EQ_INT(walt_stop(w), 0);
    CHECK(l3_wal_durable_ticket(r) >= t); /* the stop syncs */

    o.flush_interval_ms = 20;
    w = walt_writer(&o, NULL);
    CHECK_EQ_INT(append(r, 2), 0);
    t = l3_wal_last_ticket();
    for (int i = 0; i < 400 && l3_wal_durable_ticket(r) < t; i++)
        usleep(5000);
    CHECK(l3_wal_durable_ticket(r) >= t);
    CHECK_EQ_INT(walt_stop(w), 0);
    check_replay(2);
    l3_wal_ring_detach(r);
}

/* buffered mode with a flush interval holds records in the ring (one batch per flush, no
 * write per wake-up) until the flush is due, a durability request comes, or the unwritten
 * bytes pass the wake fill (an eighth of the ring here) */
static void test_buffered_hold(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    CHECK_EQ_INT(l3_wal_notify_create(r, 1), 0);
    l3_wal_writer_opts_t o = {
        .ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED, .flush_interval_ms = 600000};
    pid_t w = walt_writer(&o, NULL);
    uint64_t n = 0;
    while (n < 20)
        CHECK_EQ_INT(append(r, ++n), 0);
    uint64_t t = l3_wal_last_ticket();
    usleep(300000);
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK(s.tail < t); /* held: the flush is not due, nobody asked */
    CHECK_EQ_INT(s.batches, 0);
    /* an armed eventfd ends the hold: one batch for all 20, synced */
    int armed = l3_wal_notify_arm(r, 0, t);
    CHECK_EQ_INT(armed, 0);
    struct pollfd pfd = {.fd = l3_wal_notify_fd(r, 0), .events = POLLIN};
    CHECK_EQ_INT(poll(&pfd, 1, 10000), 1);
    l3_wal_notify_ack(r, 0);
    l3_wal_ring_stats(r, &s);
    CHECK(s.durable >= t);
    CHECK_EQ_INT(s.records, 20);
    CHECK_EQ_INT(s.batches, 1);
    /* past the wake fill the held records are written (not synced: nobody asked) */
    uint64_t from = s.tail;
    while (l3_wal_last_ticket() - from < (1024 * 1024) / 8 + 4096)
        CHECK_EQ_INT(append(r, ++n), 0);
    for (int i = 0; i < 2000; i++) {
        l3_wal_ring_stats(r, &s);
        if (s.tail - from >= (1024 * 1024) / 8)
            break;
        usleep(5000);
    }
    CHECK(s.tail - from >= (1024 * 1024) / 8);
    /* a blocking wait ends the hold too */
    CHECK_EQ_INT(append(r, ++n), 0);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    CHECK_EQ_INT(walt_stop(w), 0);
    check_replay(n);
    l3_wal_ring_detach(r);
}

/* after a batch the writer lingers: it checks the ring once per flush interval sleeping as
 * "holding", so a trickle of writes makes no producer wake it (rh_pub_seq stays), and each
 * record is still durable within about one flush interval of its publish */
static void test_buffered_linger(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {
        .ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED, .flush_interval_ms = 20};
    pid_t w = walt_writer(&o, NULL);
    uint64_t n = 0;
    CHECK_EQ_INT(append(r, ++n), 0);
    uint64_t t = l3_wal_last_ticket();
    for (int i = 0; i < 400 && l3_wal_durable_ticket(r) < t; i++)
        usleep(5000);
    CHECK(l3_wal_durable_ticket(r) >= t);
    uint32_t seq = atomic_load(&r->sh->rh_pub_seq);
    uint64_t worst_ns = 0;
    for (int k = 0; k < 10; k++) {
        usleep(7000);
        CHECK_EQ_INT(append(r, ++n), 0);
        t = l3_wal_last_ticket();
        uint64_t t0 = l3_now_ns();
        for (int i = 0; i < 4000 && l3_wal_durable_ticket(r) < t; i++)
            usleep(500);
        CHECK(l3_wal_durable_ticket(r) >= t);
        worst_ns = L3_MAX(worst_ns, l3_now_ns() - t0);
    }
    CHECK_EQ_INT(atomic_load(&r->sh->rh_pub_seq), seq); /* nobody woke the writer */
    CHECK(worst_ns < 1000u * 1000000u); /* one flush interval, with room for a loaded machine */
    /* past the linger (1 s) it sleeps idle again: the next publish wakes it */
    usleep(1300000);
    CHECK_EQ_INT(append(r, ++n), 0);
    CHECK(atomic_load(&r->sh->rh_pub_seq) != seq);
    CHECK_EQ_INT(walt_stop(w), 0);
    check_replay(n);
    l3_wal_ring_detach(r);
}

/* ---------------------------------------------------------------- injected failures */

static int inj_enospc(int op, uint64_t off, uint32_t len, int res)
{
    (void)off;
    (void)len;
    if (op == L3_WAL_IO_WRITE && *inject == 1)
        return -ENOSPC;
    if (op == L3_WAL_IO_WRITE && *inject == 3)
        return -EIO;
    return res;
}
static void setup_enospc(void)
{
    l3_wal_shim.io_result = inj_enospc;
}

static void wait_error(l3_wal_ring_t *r, int want)
{
    for (int i = 0; i < 1000 && l3_wal_ring_error(r) != want; i++)
        usleep(5000);
    CHECK_EQ_INT(l3_wal_ring_error(r), want);
}

/* a failing write (disk full, or EIO from the device): refused, then resumed, nothing lost */
static void test_write_error(int code, int err)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_FSYNC};
    *inject = 0;
    pid_t w = walt_writer(&o, setup_enospc);
    CHECK_EQ_INT(append(r, 1), 0);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    *inject = code;
    CHECK_EQ_INT(append(r, 2), 0); /* accepted into the ring; the write fails */
    uint64_t t2 = l3_wal_last_ticket();
    wait_error(r, err);
    CHECK_EQ_INT(append(r, 3), err);                      /* refused while writes fail */
    CHECK_EQ_INT(l3_wal_wait_durable(r, t2, 10000), err); /* not acknowledged */
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK(s.write_errors > 0);
    CHECK_EQ_INT(s.failstop, 0);
    *inject = 0; /* space returns */
    wait_error(r, 0);
    CHECK_EQ_INT(l3_wal_wait_durable(r, t2, 10000), 0);
    CHECK_EQ_INT(append(r, 3), 0);
    CHECK_EQ_INT(walt_stop(w), 0);
    check_replay(3);
    l3_wal_ring_detach(r);
}

/* SIGTERM while the disk stays full: the writer gives up after a bounded time, non-zero */
static void test_enospc_stop(void)
{
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED};
    *inject = 0;
    pid_t w = walt_writer(&o, setup_enospc);
    CHECK_EQ_INT(append(r, 1), 0);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    *inject = 1;
    CHECK_EQ_INT(append(r, 2), 0);
    wait_error(r, -ENOSPC);
    uint64_t t0 = l3_now_ns();
    CHECK_EQ_INT(walt_stop(w), 2);
    CHECK(l3_now_ns() - t0 < 30ull * 1000000000u);
    *inject = 0;
    check_replay(1); /* what was written before stays valid */
    l3_wal_ring_detach(r);
}

/* fdatasync faults chosen by *inject: 2 = EIO, 4 = a slow disk (a batch's linked fdatasync
 * takes 300 ms) */
static int inj_fsync(int op, uint64_t off, uint32_t len, int res)
{
    (void)off;
    if (op == L3_WAL_IO_FSYNC && *inject == 2)
        return -EIO;
    if (op == L3_WAL_IO_FSYNC && len != 0 && *inject == 4)
        usleep(300000);
    return res;
}
static void setup_fsync_inject(void)
{
    l3_wal_shim.io_result = inj_fsync;
}

/* A fresh fsync-mode ring (*ret_r) and writer with the fdatasync injector, record 1 durable. */
static pid_t fsync_writer_started(l3_wal_ring_t **ret_r, l3_wal_writer_opts_t *o)
{
    fresh_dir();
    l3_wal_ring_t *r = *ret_r = walt_ring(4096 + 1024 * 1024, NULL);
    *o = (l3_wal_writer_opts_t){.ring = r, .wal_path = base, .durability = L3_WAL_FSYNC};
    *inject = 0;
    pid_t w = walt_writer(o, setup_fsync_inject);
    CHECK_EQ_INT(append(r, 1), 0);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    return w;
}

static void test_fsync_eio(void)
{
    l3_wal_ring_t *r;
    l3_wal_writer_opts_t o;
    pid_t w = fsync_writer_started(&r, &o);
    uint64_t durable_before = l3_wal_durable_ticket(r);
    *inject = 2;
    CHECK_EQ_INT(append(r, 2), 0);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), -EIO); /* never acknowledged */
    *inject = 0; /* even if the disk "recovers", no retry-and-acknowledge */
    CHECK_EQ_INT(append(r, 3), -EIO);
    usleep(300000);
    CHECK_EQ_INT(l3_wal_durable_ticket(r), durable_before);
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK_EQ_INT(s.failstop, 1);
    uint64_t seq;
    CHECK_EQ_INT(l3_wal_checkpoint_begin(r, 1000, &seq), -EIO);
    CHECK_EQ_INT(walt_stop(w), 3); /* the writer reports -EIO */
    /* a restarted writer stays fail-stopped */
    w = walt_writer(&o, NULL);
    usleep(100000);
    CHECK_EQ_INT(append(r, 3), -EIO);
    CHECK_EQ_INT(walt_stop(w), 3);
    l3_wal_ring_detach(r);
}

/* A batch's ring space is free once the batch is in the file, while its fdatasync still
 * runs: producers waiting for space do not wait for the disk's sync as well. */
static void test_space_during_sync(void)
{
    l3_wal_ring_t *r;
    l3_wal_writer_opts_t o;
    pid_t w = fsync_writer_started(&r, &o);
    *inject = 4;
    CHECK_EQ_INT(append(r, 2), 0);
    l3_wal_stats_t s;
    int freed = 0;
    for (int i = 0; i < 200 && !freed; i++) {
        l3_wal_ring_stats(r, &s);
        freed = s.tail == s.head && s.durable < s.head;
        if (!freed)
            usleep(10000);
    }
    CHECK(freed); /* seen within the 300 ms of the sync */
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    *inject = 0;
    CHECK_EQ_INT(walt_stop(w), 0);
    check_replay(2);
    l3_wal_ring_detach(r);
}

static uint32_t inj_short_len(uint64_t off, uint32_t len)
{
    (void)off;
    return len > 16 ? len / 3 : len;
}
static _Atomic unsigned inj_count;
static int inj_eagain(int op, uint64_t off, uint32_t len, int res)
{
    (void)off;
    (void)len;
    unsigned n = atomic_fetch_add(&inj_count, 1);
    if (op == L3_WAL_IO_WRITE && n % 7 == 3)
        return -EAGAIN;
    if (op == L3_WAL_IO_FSYNC && len != 0 && n % 5 == 2) /* len != 0: linked after a write */
        return -ECANCELED; /* a linked sync that did not run: must be re-run, not trusted */
    return res;
}
static void setup_short(void)
{
    l3_wal_shim.write_len = inj_short_len;
    l3_wal_shim.io_result = inj_eagain;
}

static void test_short_writes(l3_wal_durability_t mode)
{
    enum { N = 2000 };
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = mode};
    pid_t w = walt_writer(&o, setup_short);
    append_all(r, 1, N);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK(s.short_writes > 0);
    CHECK_EQ_INT(walt_stop(w), 0);
    check_replay(N);
    l3_wal_ring_detach(r);
}

/* writer SIGKILLed at random points and restarted: nothing lost, nothing duplicated */
static void test_writer_restart(uint64_t *seed)
{
    enum { ROUNDS = 6, PER = 700 };
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 2 * 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED};
    uint64_t lsn = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pid_t w = walt_writer(&o, round % 2 ? setup_short : NULL);
        for (int i = 0; i < PER; i++) {
            int rc;
            while ((rc = append(r, lsn + 1)) == -EAGAIN) {
            }
            CHECK_EQ_INT(rc, 0);
            lsn++;
        }
        usleep((useconds_t)(t_rand(seed) % 3000));
        kill(w, SIGKILL);
        waitpid(w, NULL, 0);
        /* more appends while no writer runs: they wait in the ring */
        for (int i = 0; i < 50; i++) {
            CHECK_EQ_INT(append(r, lsn + 1), 0);
            lsn++;
        }
    }
    pid_t w = walt_writer(&o, NULL);
    CHECK_EQ_INT(walt_stop(w), 0);
    check_replay(lsn);
    l3_wal_ring_detach(r);
}

/* retain_bytes: a checkpoint keeps the newest covered segments that fit the budget, deletes
 * the older ones, and replay from the snapshot's segment still sees only later records */
static void test_checkpoint_retention(void)
{
    enum { N = 4000 };
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r,
                              .wal_path = base,
                              .durability = L3_WAL_BUFFERED,
                              .segment_bytes = 64 * 1024,
                              .retain_bytes = 200 * 1024};
    pid_t w = walt_writer(&o, NULL);
    append_all(r, 1, N);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    uint64_t seq = 0;
    CHECK_EQ_INT(l3_wal_checkpoint_begin(r, 10000, &seq), 0);
    CHECK(count_segments() >= 6);
    append_all(r, N + 1, N + 100);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    l3_wal_checkpoint_commit(r, seq);
    uint64_t *seqs = NULL, kept = 0;
    int n = 0;
    for (int t = 0; t < 1000; t++) { /* the writer unlinks one file after the other */
        free(seqs);
        seqs = NULL;
        n = l3_wal__list_segments(base, &seqs);
        kept = 0;
        for (int i = 0; i < n; i++) {
            char name[4096];
            struct stat st;
            if (seqs[i] < seq && l3_wal__seg_name(name, sizeof name, base, seqs[i]) == 0 &&
                stat(name, &st) == 0)
                kept += (uint64_t)st.st_size;
        }
        if (kept <= o.retain_bytes)
            break;
        usleep(5000);
    }
    CHECK(n > 0 && seqs[0] > 1 && seqs[0] < seq); /* older ones deleted, some covered kept */
    CHECK(kept > 0 && kept <= o.retain_bytes);
    for (int i = 1; i < n; i++)
        CHECK(seqs[i] == seqs[i - 1] + 1); /* the kept range has no gap */
    /* one more covered segment would not have fitted */
    char prev[4096];
    CHECK(l3_wal__seg_name(prev, sizeof prev, base, seqs[0] - 1) == 0 && access(prev, F_OK) != 0);
    free(seqs);
    CHECK_EQ_INT(walt_stop(w), 0);
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay_from(base, seq, walt_collect, &l, &rep), 0);
    CHECK(l.n >= 100 && l.n < N && l.v[l.n - 1].lsn == N + 100);
    walt_log_free(&l);
    l3_wal_ring_detach(r);
}

static void test_rotation_checkpoint(void)
{
    enum { N = 4000 };
    fresh_dir();
    l3_wal_ring_t *r = walt_ring(4096 + 1024 * 1024, NULL);
    l3_wal_ring_set_next_seq(r, 5);
    l3_wal_writer_opts_t o = {
        .ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED, .segment_bytes = 256 * 1024};
    pid_t w = walt_writer(&o, NULL);
    append_all(r, 1, N / 2);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    uint64_t seq = 0;
    CHECK_EQ_INT(l3_wal_checkpoint_begin(r, 10000, &seq), 0);
    int before = count_segments();
    CHECK(before >= 3);
    uint64_t *seqs = NULL;
    int n = l3_wal__list_segments(base, &seqs);
    CHECK(n > 0 && seqs[0] == 5 && seqs[n - 1] == seq);
    free(seqs);
    append_all(r, N / 2 + 1, N);
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    /* everything below seq is in older segments: replay from seq sees only later records */
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    l3_wal_checkpoint_commit(r, seq);
    for (int i = 0; i < 1000; i++) {
        seqs = NULL;
        n = l3_wal__list_segments(base, &seqs);
        int gone = n > 0 && seqs[0] >= seq;
        free(seqs);
        if (gone)
            break;
        usleep(5000);
    }
    seqs = NULL;
    n = l3_wal__list_segments(base, &seqs);
    CHECK(n > 0 && seqs[0] == seq);
    free(seqs);
    l3_wal_stats_t s;
    l3_wal_ring_stats(r, &s);
    CHECK(s.disk_bytes > 0 && s.disk_bytes < s.bytes);
    CHECK_EQ_INT(walt_stop(w), 0);
    /* records still in the ring at the rotation land in the new segment: a suffix, no gap */
    CHECK_EQ_INT(l3_wal_replay_from(base, seq, walt_collect, &l, &rep), 0);
    CHECK(l.n >= N / 2 && l.n < N);
    for (size_t i = 0; i < l.n; i++)
        CHECK_EQ_INT(l.v[i].lsn, N - l.n + 1 + i);
    CHECK(rep.next_seq > seq);
    walt_log_free(&l);
    l3_wal_ring_detach(r);
}

int main(void)
{
    uint64_t seed = t_seed();
    walt_need_uring();
    inject = walt_region(4096);
    char *d = t_tmpdir();
    snprintf(dir, sizeof dir, "%s/wal", d);
    snprintf(base, sizeof base, "%s/data.wal", dir);
    test_basic(L3_WAL_BUFFERED);
    test_basic(L3_WAL_FSYNC);
    test_group_commit();
    test_only_writer_has_wal_open();
    test_notify();
    test_flush_interval();
    test_buffered_hold();
    test_buffered_linger();
    test_write_error(1, -ENOSPC);
    test_write_error(3, -EIO);
    test_enospc_stop();
    test_fsync_eio();
    test_space_during_sync();
    test_short_writes(L3_WAL_BUFFERED);
    test_short_writes(L3_WAL_FSYNC);
    test_writer_restart(&seed);
    test_rotation_checkpoint();
    test_checkpoint_retention();
    t_rmtree(d);
    free(d);
    return t_done();
}
