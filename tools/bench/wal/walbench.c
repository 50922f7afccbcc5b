/* SPDX-License-Identifier: MIT */
/*
 * walbench.c - l3kv-walbench: WAL figures measured in one run on this machine.
 *   1. append throughput with C concurrent clients (processes x threads, like connections):
 *      buffered (ack = in the ring) vs fsync (ack after the group-commit fdatasync), and the
 *      ratio fsync/buffered;
 *   2. recovery: replay time per GB of WAL and per million records (page cache warm);
 *   3. steady-state disk use of an endless update loop on 1,000 keys with checkpoints
 *      (l3_wal_checkpoint whenever the live segments pass the checkpoint size).
 * Prints one JSON object per figure. Not a test: nothing is asserted.
 *
 * usage: l3kv-walbench [-d DIR] [-s SECONDS] [-c CLIENTS] [-p PROCS] [-b PAYLOAD] [-r RECOVERY_MB]
 *                      [-u UPDATE_LOOP_SECONDS] [-k CHECKPOINT_MB]
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include "l3kv/base.h"
#include "l3kv/wal.h"

typedef struct {
    _Atomic int stop;
    _Atomic uint64_t ops;
    _Atomic uint64_t lsn;
    _Atomic uint64_t retries;
} shared_t;

static shared_t *sh;
static l3_wal_ring_t *ring;
static unsigned payload_bytes = 256;
static int wait_durable;

/* Append one PUT record for key (next LSN); -EAGAIN (ring full) is counted as a retry. */
static int append_one(const char *key, const uint8_t *pay)
{
    l3_wal_rec_t rec = {.op = L3_WALOP_PUT,
                        .lsn = atomic_fetch_add(&sh->lsn, 1) + 1,
                        .key = key,
                        .klen = (uint32_t)strlen(key),
                        .payload = pay,
                        .plen = payload_bytes};
    int rc = l3_wal_hook(ring, &rec);
    if (rc == -EAGAIN)
        atomic_fetch_add(&sh->retries, 1);
    return rc;
}

static void *client(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    uint8_t *pay = malloc(payload_bytes + 1);
    memset(pay, (int)id, payload_bytes);
    char key[32];
    snprintf(key, sizeof key, "bench-%u", (unsigned)id);
    uint64_t n = 0;
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        int rc = append_one(key, pay);
        if (rc == -EAGAIN)
            continue;
        if (rc != 0)
            break;
        if (wait_durable && l3_wal_wait_durable(ring, l3_wal_last_ticket(), 10000) != 0)
            break;
        n++;
    }
    atomic_fetch_add(&sh->ops, n);
    free(pay);
    return NULL;
}

/* A worker-like process: n virtual clients, replies parked until the eventfd says the
 * durable ticket covers them (the way the server's event loop uses the WAL in fsync mode). */
static void loop_client(int slot, int n)
{
    uint8_t *pay = malloc(payload_bytes + 1);
    memset(pay, slot, payload_bytes);
    char key[32];
    snprintf(key, sizeof key, "loop-%d", slot);
    int fd = l3_wal_notify_fd(ring, (unsigned)slot);
    uint64_t done = 0;
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        uint64_t ticket = 0;
        int got = 0;
        for (int i = 0; i < n; i++) { /* every client whose reply went out sends its next PUT */
            int rc = append_one(key, pay);
            if (rc == -EAGAIN)
                continue;
            if (rc != 0)
                goto out;
            ticket = l3_wal_last_ticket();
            got++;
        }
        while (got && l3_wal_durable_ticket(ring) < ticket) {
            int armed = l3_wal_notify_arm(ring, (unsigned)slot, ticket);
            if (armed < 0)
                goto out;
            if (armed == 1)
                break;
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            poll(&pfd, 1, 1000);
            l3_wal_notify_ack(ring, (unsigned)slot);
        }
        done += (uint64_t)got;
    }
out:
    atomic_fetch_add(&sh->ops, done);
    free(pay);
}

static void rmdir_files(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "walbench: could not clean %s\n", dir);
}

/* returns records per second */
static double run_mode(const char *dir, l3_wal_durability_t mode, int evloop, double seconds, int clients,
                       int procs, l3_wal_stats_t *ret_stats)
{
    char wal[4200];
    mkdir(dir, 0755);
    snprintf(wal, sizeof wal, "%s/data.wal", dir);
    size_t len = 4096 + (20u << 20); /* the default 20 MB ring */
    void *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || l3_wal_ring_init(region, len, &ring) != 0) {
        fprintf(stderr, "walbench: ring setup failed\n");
        exit(1);
    }
    memset(sh, 0, sizeof *sh);
    if (evloop && l3_wal_notify_create(ring, (unsigned)procs) != 0)
        exit(1);
    l3_wal_writer_opts_t o = {.ring = ring, .wal_path = wal, .durability = mode, .install_signals = 1};
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, &old);
    pid_t w = fork();
    if (w == 0) {
        int rc = l3_wal_writer_run(&o);
        if (rc < 0)
            fprintf(stderr, "walbench: writer: %s\n", strerror(-rc));
        _exit(rc == 0 ? 0 : 1);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    wait_durable = mode == L3_WAL_FSYNC;
    pid_t kids[64];
    int per = clients / procs;
    uint64_t t0 = l3_now_ns();
    for (int p = 0; p < procs; p++) {
        kids[p] = fork();
        if (kids[p] == 0 && evloop) {
            loop_client(p, per + (p < clients % procs));
            _exit(0);
        }
        if (kids[p] == 0) {
            pthread_t th[256];
            int n = per + (p < clients % procs);
            for (int i = 0; i < n; i++)
                pthread_create(&th[i], NULL, client, (void *)(uintptr_t)(p * 1000 + i));
            for (int i = 0; i < n; i++)
                pthread_join(th[i], NULL);
            _exit(0);
        }
    }
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&sh->stop, 1);
    for (int p = 0; p < procs; p++)
        waitpid(kids[p], NULL, 0);
    double el = (double)(l3_now_ns() - t0) / 1e9;
    kill(w, SIGTERM);
    int st;
    waitpid(w, &st, 0);
    l3_wal_ring_stats(ring, ret_stats);
    for (int p = 0; evloop && p < procs; p++)
        close(l3_wal_notify_fd(ring, (unsigned)p));
    l3_wal_ring_detach(ring);
    munmap(region, len);
    rmdir_files(dir);
    return (double)atomic_load(&sh->ops) / el;
}

static int count_cb(void *ctx, const l3_wal_rec_t *rec)
{
    uint64_t *sum = ctx;
    *sum += rec->lsn + rec->plen; /* touch the record */
    return 0;
}

static void run_recovery(const char *dir, unsigned mb)
{
    char wal[4200];
    mkdir(dir, 0755);
    snprintf(wal, sizeof wal, "%s/data.wal", dir);
    /* build segments of 64 MiB directly with the record encoder */
    uint64_t target = (uint64_t)mb << 20, written = 0, nrec = 0, seq = 1;
    uint8_t *buf = malloc(64u << 20);
    uint8_t pay[4096];
    memset(pay, 0x33, sizeof pay);
    while (written < target) {
        l3_wal_seg_hdr_t h = {.salt = 0x1234 + seq, .seq = seq, .ctime_ns = l3_wall_ns()};
        l3_wal_seg_hdr_encode(buf, &h);
        size_t off = L3_WAL_SEG_HDR;
        while (off + 8192 < (64u << 20) && written + off < target) {
            char key[32];
            int kl = snprintf(key, sizeof key, "doc-%llu", (unsigned long long)(nrec % 100000));
            l3_wal_rec_t rec = {.op = L3_WALOP_PUT,
                                .lsn = nrec + 1,
                                .key = key,
                                .klen = (uint32_t)kl,
                                .payload = pay,
                                .plen = payload_bytes};
            off += (size_t)l3_wal_rec_encode(buf + off, (64u << 20) - off, &rec, h.salt);
            nrec++;
        }
        char name[4300];
        snprintf(name, sizeof name, "%s.%08llu", wal, (unsigned long long)seq);
        FILE *f = fopen(name, "wb");
        if (!f || fwrite(buf, 1, off, f) != off) {
            fprintf(stderr, "walbench: cannot write %s\n", name);
            exit(1);
        }
        fclose(f);
        written += off;
        seq++;
    }
    free(buf);
    uint64_t sum = 0;
    l3_wal_replay_report_t rep;
    uint64_t t0 = l3_now_ns();
    int rc = l3_wal_replay(wal, count_cb, &sum, &rep);
    double el = (double)(l3_now_ns() - t0) / 1e9;
    if (rc != 0 || rep.records != nrec)
        fprintf(stderr, "walbench: replay mismatch (%d, %llu of %llu)\n", rc, (unsigned long long)rep.records,
                (unsigned long long)nrec);
    double gb = (double)written / (1024.0 * 1024 * 1024);
    printf("{\"figure\":\"wal_recovery\",\"bytes\":%llu,\"records\":%llu,\"payload\":%u,\"seconds\":%.3f,"
           "\"seconds_per_gb\":%.3f,\"seconds_per_million_records\":%.3f,\"cache\":\"warm\"}\n",
           (unsigned long long)written, (unsigned long long)nrec, payload_bytes, el, el / gb,
           el / ((double)nrec / 1e6));
    rmdir_files(dir);
}

/* ---------------------------------------------------------------- steady state */

enum { UKEYS = 1000 };
static uint64_t ulsn[UKEYS];
static uint8_t udoc[UKEYS][256];

static int scan_docs(void *ctx, l3_wal_snap_writer_t *w)
{
    (void)ctx;
    for (int k = 0; k < UKEYS; k++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "key-%d", k);
        int rc = l3_wal_snapshot_add(w, key, (uint32_t)kl, udoc[k], payload_bytes, ulsn[k]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* apparent bytes and allocated bytes of every file in dir */
static void dir_usage(const char *dir, uint64_t *ret_bytes, uint64_t *ret_alloc)
{
    *ret_bytes = *ret_alloc = 0;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char p[4400];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (de->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            *ret_bytes += (uint64_t)st.st_size;
            *ret_alloc += (uint64_t)st.st_blocks * 512u;
        }
    }
    closedir(d);
}

static void run_steady(const char *dir, double seconds, unsigned ckpt_mb)
{
    char wal[4200], snap[4200];
    mkdir(dir, 0755);
    snprintf(wal, sizeof wal, "%s/data.wal", dir);
    snprintf(snap, sizeof snap, "%s/data.snapshot", dir);
    size_t len = 4096 + (20u << 20);
    void *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || l3_wal_ring_init(region, len, &ring) != 0)
        exit(1);
    uint64_t seg = (uint64_t)ckpt_mb << 18; /* a quarter of the checkpoint size */
    l3_wal_writer_opts_t o = {.ring = ring,
                              .wal_path = wal,
                              .durability = L3_WAL_BUFFERED,
                              .install_signals = 1,
                              .segment_bytes = seg};
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, &old);
    pid_t w = fork();
    if (w == 0)
        _exit(l3_wal_writer_run(&o) == 0 ? 0 : 1);
    sigprocmask(SIG_SETMASK, &old, NULL);
    uint64_t t0 = l3_now_ns(), end = t0 + (uint64_t)(seconds * 1e9), lsn = 0, updates = 0, ckpts = 0;
    uint64_t max_bytes = 0, max_alloc = 0, next_sample = 0;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    while (l3_now_ns() < end) {
        for (int i = 0; i < 1000; i++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            int k = (int)(rng % UKEYS);
            char key[16];
            int kl = snprintf(key, sizeof key, "key-%d", k);
            memcpy(udoc[k], &rng, sizeof rng);
            ulsn[k] = ++lsn;
            l3_wal_rec_t rec = {.op = L3_WALOP_PUT,
                                .lsn = lsn,
                                .key = key,
                                .klen = (uint32_t)kl,
                                .payload = udoc[k],
                                .plen = payload_bytes};
            while (l3_wal_hook(ring, &rec) == -EAGAIN) {
            }
            updates++;
        }
        l3_wal_stats_t st;
        l3_wal_ring_stats(ring, &st);
        if (st.disk_bytes > ((uint64_t)ckpt_mb << 20)) {
            if (l3_wal_checkpoint(ring, snap, lsn, scan_docs, NULL, 10000) == 0)
                ckpts++;
        }
        uint64_t now = l3_now_ns();
        if (now >= next_sample) {
            uint64_t b, a;
            dir_usage(dir, &b, &a);
            max_bytes = b > max_bytes ? b : max_bytes;
            max_alloc = a > max_alloc ? a : max_alloc;
            next_sample = now + 50000000u;
        }
    }
    kill(w, SIGTERM);
    waitpid(w, NULL, 0);
    l3_wal_stats_t st;
    l3_wal_ring_stats(ring, &st);
    uint64_t b, a;
    dir_usage(dir, &b, &a);
    printf(
        "{\"figure\":\"wal_steady_state\",\"seconds\":%.0f,\"keys\":%d,\"updates\":%llu,\"checkpoints\":%llu,"
        "\"wal_written_bytes\":%llu,\"max_dir_bytes\":%llu,\"max_dir_allocated\":%llu,\"final_dir_bytes\":%"
        "llu,"
        "\"checkpoint_bytes\":%llu}\n",
        seconds, UKEYS, (unsigned long long)updates, (unsigned long long)ckpts, (unsigned long long)st.bytes,
        (unsigned long long)max_bytes, (unsigned long long)max_alloc, (unsigned long long)b,
        (unsigned long long)ckpt_mb << 20);
    l3_wal_ring_detach(ring);
    munmap(region, len);
    rmdir_files(dir);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    double seconds = 3;
    int clients = 64, procs = 4;
    unsigned rec_mb = 256, ckpt_mb = 32;
    double steady = 0;
    int c;
    while ((c = getopt(argc, argv, "d:s:c:p:b:r:u:k:")) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'c':
            clients = atoi(optarg);
            break;
        case 'p':
            procs = atoi(optarg);
            break;
        case 'b':
            payload_bytes = (unsigned)atoi(optarg);
            break;
        case 'r':
            rec_mb = (unsigned)atoi(optarg);
            break;
        case 'u':
            steady = atof(optarg);
            break;
        case 'k':
            ckpt_mb = (unsigned)atoi(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-d DIR] [-s SECONDS] [-c CLIENTS] [-p PROCS] [-b PAYLOAD] [-r MB] [-u "
                    "SECONDS] [-k MB]\n",
                    argv[0]);
            return 2;
        }
    }
    if (clients < 1 || procs < 1 || procs > 64 || clients / procs > 256 || payload_bytes > 4096) {
        fprintf(stderr, "walbench: bad arguments\n");
        return 2;
    }
    char tmpl[] = "/tmp/l3kv-walbench-XXXXXX";
    char base[4096];
    if (!dir) {
        dir = mkdtemp(tmpl);
        if (!dir) {
            perror("mkdtemp");
            return 1;
        }
    }
    snprintf(base, sizeof base, "%s/run", dir);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    l3_wal_stats_t sb, sf, sl;
    double buffered = run_mode(base, L3_WAL_BUFFERED, 0, seconds, clients, procs, &sb);
    printf("{\"figure\":\"wal_append_buffered\",\"clients\":%d,\"payload\":%u,\"records_per_s\":%.0f,"
           "\"fdatasyncs\":%llu,\"batches\":%llu}\n",
           clients, payload_bytes, buffered, (unsigned long long)sb.fsyncs, (unsigned long long)sb.batches);
    fflush(stdout);
    double fsync = run_mode(base, L3_WAL_FSYNC, 0, seconds, clients, procs, &sf);
    printf("{\"figure\":\"wal_append_fsync_threads\",\"clients\":%d,\"payload\":%u,\"records_per_s\":%.0f,"
           "\"fdatasyncs\":%llu,\"records_per_fdatasync\":%.1f}\n",
           clients, payload_bytes, fsync, (unsigned long long)sf.fsyncs,
           sf.fsyncs ? (double)sf.records / (double)sf.fsyncs : 0.0);
    fflush(stdout);
    double loop = run_mode(base, L3_WAL_FSYNC, 1, seconds, clients, procs, &sl);
    printf("{\"figure\":\"wal_append_fsync_eventloop\",\"clients\":%d,\"processes\":%d,\"payload\":%u,"
           "\"records_per_s\":%.0f,\"fdatasyncs\":%llu,\"records_per_fdatasync\":%.1f}\n",
           clients, procs, payload_bytes, loop, (unsigned long long)sl.fsyncs,
           sl.fsyncs ? (double)sl.records / (double)sl.fsyncs : 0.0);
    printf("{\"figure\":\"wal_fsync_over_buffered\",\"threads\":%.3f,\"eventloop\":%.3f}\n",
           buffered > 0 ? fsync / buffered : 0.0, buffered > 0 ? loop / buffered : 0.0);
    fflush(stdout);
    if (rec_mb)
        run_recovery(base, rec_mb);
    fflush(stdout);
    if (steady > 0)
        run_steady(base, steady, ckpt_mb ? ckpt_mb : 32);
    if (dir == tmpl)
        rmdir(tmpl);
    return 0;
}
