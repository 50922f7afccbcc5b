/* SPDX-License-Identifier: MIT */
/*
 * walt.h - helpers shared by the WAL tests: a shared anonymous ring, a forked writer, a
 * replay collector and an independent bitwise CRC-32C for cross-checking the format.
 */
#ifndef L3KV_WALT_H
#define L3KV_WALT_H

#include <errno.h>
#include <liburing.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "l3kv/wal.h"
#include "t.h"

/* Exit 77 when the kernel refuses io_uring. */
static inline void walt_need_uring(void)
{
    struct io_uring ur;
    int rc = io_uring_queue_init(4, &ur, 0);
    if (rc == -ENOSYS || rc == -EPERM) {
        fprintf(stderr, "io_uring unavailable (%s): skipped\n", strerror(-rc));
        exit(T_SKIP);
    }
    if (rc == 0)
        io_uring_queue_exit(&ur);
}

/* Reference CRC-32C, bit by bit: independent of l3_crc32c. */
static inline uint32_t walt_crc32c(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static inline void *walt_region(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(T_HARNESS_ERROR);
    }
    return p;
}

static inline l3_wal_ring_t *walt_ring(size_t len, void **ret_region)
{
    void *region = walt_region(len);
    l3_wal_ring_t *r = NULL;
    if (l3_wal_ring_init(region, len, &r) != 0) {
        fprintf(stderr, "ring init failed\n");
        exit(T_HARNESS_ERROR);
    }
    if (ret_region)
        *ret_region = region;
    return r;
}

/* Fork a writer process with opts; setup (may be NULL) runs in the child first. */
static inline pid_t walt_writer(const l3_wal_writer_opts_t *opts, void (*setup)(void))
{
    /* SIGTERM stays blocked in the child until the writer has its handler (as in the server) */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, &old);
    pid_t pid = fork();
    if (pid != 0)
        sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        perror("fork");
        exit(T_HARNESS_ERROR);
    }
    if (pid == 0) {
        if (setup)
            setup();
        l3_wal_writer_opts_t o = *opts;
        o.install_signals = 1;
        int rc = l3_wal_writer_run(&o);
        _exit(rc == 0 ? 0 : (rc == -EIO ? 3 : 2));
    }
    return pid;
}

/* SIGTERM the writer and return its exit status (0 = clean), -1 if it died by a signal. */
static inline int walt_stop(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    if (waitpid(pid, &st, 0) != pid)
        return -2;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Collected replay: a flat copy of every record. */
typedef struct {
    uint8_t op;
    uint64_t lsn;
    char *key;
    uint32_t klen;
    uint8_t *payload;
    uint32_t plen;
} walt_rec_t;

typedef struct {
    walt_rec_t *v;
    size_t n, cap;
    int ret; /* what the callback returns */
} walt_log_t;

static inline int walt_collect(void *ctx, const l3_wal_rec_t *rec)
{
    walt_log_t *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            exit(T_HARNESS_ERROR);
    }
    walt_rec_t *r = &l->v[l->n++];
    r->op = rec->op;
    r->lsn = rec->lsn;
    r->klen = rec->klen;
    r->plen = rec->plen;
    r->key = malloc(rec->klen + 1);
    r->payload = malloc(rec->plen + 1);
    memcpy(r->key, rec->key, rec->klen);
    r->key[rec->klen] = 0;
    memcpy(r->payload, rec->payload, rec->plen);
    return l->ret;
}

static inline void walt_log_free(walt_log_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].payload);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Deterministic payload for (key index, sequence): lets a test check content after replay. */
static inline uint32_t walt_payload(uint8_t *buf, uint32_t cap, uint64_t a, uint64_t b)
{
    uint64_t s = (a * 0x9E3779B97F4A7C15ull) ^ (b + 0x632BE59BD9B4E019ull);
    if (s == 0)
        s = 1;
    uint32_t len = (uint32_t)(s % (cap > 1 ? cap : 1));
    for (uint32_t i = 0; i < len; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        buf[i] = (uint8_t)s;
    }
    return len;
}

#endif
