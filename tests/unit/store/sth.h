/* SPDX-License-Identifier: MIT */
/* sth.h - helpers shared by the store tests (header only). */
#ifndef L3KV_STH_H
#define L3KV_STH_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "l3kv/base.h"
#include "l3kv/error.h"
#include "l3kv/store.h"
#include "t.h"

/* Create a small private arena with a unique name; aborts the test (99) on failure. */
static inline l3_store_t *sth_create(size_t arena_bytes, uint32_t nstripes, size_t undo_bytes)
{
    static int seq;
    char name[64];
    snprintf(name, sizeof(name), "test.%ld.%d", (long)getpid(), seq++);
    l3_store_opts_t o = {.name = name,
                         .arena_bytes = arena_bytes,
                         .wal_ring_bytes = 64 << 10,
                         .max_procs = 32,
                         .obs_bytes = 4096,
                         .undo_bytes = undo_bytes ? undo_bytes : 256 << 10,
                         .nstripes = nstripes,
                         .lock_timeout_ms = 5000,
                         .replace = true};
    l3_store_t *st;
    int rc = l3_store_create(&o, &st);
    if (rc < 0) {
        fprintf(stderr, "l3_store_create: %s\n", l3_strerror(rc));
        exit(rc == -ENOTSUP ? T_SKIP : T_HARNESS_ERROR);
    }
    return st;
}

static inline void sth_destroy(l3_store_t *st)
{
    l3_store_unlink(st);
    l3_store_close(st);
}

/* Get a document as a malloc'd JSON string (NULL when absent). */
static inline char *sth_json(l3_store_t *st, const char *key)
{
    l3_buf_t b = {0};
    int rc = l3_store_get_json(st, key, strlen(key), NULL, 0, 0, &b, NULL);
    if (rc < 0) {
        free(b.ptr);
        return NULL;
    }
    if (l3_buf_reserve(&b, 1) < 0) {
        free(b.ptr);
        return NULL;
    }
    b.ptr[b.len] = 0;
    return b.ptr;
}

static inline int sth_put(l3_store_t *st, const char *key, const char *json)
{
    return l3_store_put_json(st, key, strlen(key), json, strlen(json), 0, NULL, NULL);
}

static inline void sth_report(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "  check: %s\n", line);
}

/* Wait for a child; returns its exit status, or 128+signal. */
static inline int sth_wait(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

#endif
