/* SPDX-License-Identifier: MIT */
/*
 * l3kv-storebench - throughput of the shared store from several processes.
 *
 *   l3kv-storebench [--ms MILLISECONDS] [--procs 1,2,4]
 *
 * For each operation (get as JSON, put JSON, set_int), each process count, and each key
 * pattern (all processes on the same key / each on its own key), forks the processes,
 * runs the operation in a loop for the given time on one shared arena and reports the
 * summed ops/s, then the scaling ratio against one process. Same-key runs measure lock
 * contention on one document; own-key runs measure how well stripes keep processes apart.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "l3kv/base.h"
#include "l3kv/error.h"
#include "l3kv/store.h"

enum { OP_GET, OP_PUT, OP_SETINT, OP_MAX };
static const char *op_names[] = {"get", "put", "set_int"};
static const char *doc_json =
    "{\"n\":0,\"name\":\"benchmark\",\"tags\":[1,2,3],\"nested\":{\"a\":1.5,\"b\":null}}";

static void run_child(l3_store_t *st, int op, const char *key, uint64_t ms, volatile uint64_t *ret_ops)
{
    if (l3_store_proc_register(st, L3_STORE_ROLE_TOOL, NULL) != 0)
        _exit(3);
    size_t kl = strlen(key), jl = strlen(doc_json);
    l3_buf_t b = {0};
    uint64_t end = l3_now_ns() + ms * 1000000ull, n = 0;
    int rc = 0;
    while (rc >= 0) {
        for (int i = 0; i < 64 && rc >= 0; i++, n++) {
            switch (op) {
            case OP_GET:
                b.len = 0;
                rc = l3_store_get_json(st, key, kl, NULL, 0, 0, &b, NULL);
                break;
            case OP_PUT:
                rc = l3_store_put_json(st, key, kl, doc_json, jl, 0, NULL, NULL);
                break;
            default:
                rc = l3_store_set_int(st, key, kl, "/n", 2, 0, (int64_t)n, NULL);
                break;
            }
        }
        if (l3_now_ns() >= end)
            break;
    }
    free(b.ptr);
    if (rc < 0) {
        fprintf(stderr, "storebench: %s: %s\n", op_names[op], l3_strerror(rc));
        _exit(1);
    }
    *ret_ops = n;
    _exit(0);
}

static double measure(l3_store_t *st, int op, int procs, int same, uint64_t ms, volatile uint64_t *board)
{
    pid_t pids[64];
    for (int p = 0; p < procs; p++) {
        board[p] = 0;
        char key[32];
        snprintf(key, sizeof(key), same ? "hot" : "own-%d", p);
        pids[p] = fork();
        if (pids[p] == 0)
            run_child(st, op, key, ms, &board[p]);
    }
    uint64_t total = 0;
    int bad = 0;
    for (int p = 0; p < procs; p++) {
        int status;
        while (waitpid(pids[p], &status, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bad = 1;
        total += board[p];
        l3_store_proc_reap(st, pids[p]);
    }
    return bad ? -1.0 : (double)total / ((double)ms / 1000.0);
}

int main(int argc, char **argv)
{
    uint64_t ms = 300;
    int plist[8] = {1, 2, 4}, np = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ms") == 0 && i + 1 < argc) {
            ms = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--procs") == 0 && i + 1 < argc) {
            np = 0;
            for (char *s = strtok(argv[++i], ","); s && np < 8; s = strtok(NULL, ","))
                plist[np++] = atoi(s);
        } else {
            fprintf(stderr, "usage: l3kv-storebench [--ms MILLISECONDS] [--procs 1,2,4]\n");
            return 2;
        }
    }
    char name[64];
    snprintf(name, sizeof(name), "bench.%ld", (long)getpid());
    l3_store_opts_t o = {.name = name, .arena_bytes = 256u << 20, .max_procs = 80, .replace = true};
    l3_store_t *st;
    int rc = l3_store_create(&o, &st);
    if (rc < 0) {
        fprintf(stderr, "storebench: create: %s\n", l3_strerror(rc));
        return 1;
    }
    volatile uint64_t *board = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (board == MAP_FAILED)
        return 1;
    rc = l3_store_put_json(st, "hot", 3, doc_json, strlen(doc_json), 0, NULL, NULL);
    for (int p = 0; p < 64 && rc == 0; p++) {
        char key[32];
        snprintf(key, sizeof(key), "own-%d", p);
        rc = l3_store_put_json(st, key, strlen(key), doc_json, strlen(doc_json), 0, NULL, NULL);
    }
    if (rc < 0)
        return 1;
    printf("l3kv-storebench: %ld CPUs online, %" PRIu64 " ms per run, document of %zu JSON bytes\n",
           sysconf(_SC_NPROCESSORS_ONLN), ms, strlen(doc_json));
    printf("%-8s %-9s", "op", "keys");
    for (int i = 0; i < np; i++)
        printf(" %10d proc", plist[i]);
    for (int i = 1; i < np; i++)
        printf("   x%d/x%d", plist[i], plist[0]);
    printf("\n");
    int failed = 0;
    for (int op = 0; op < OP_MAX; op++) {
        for (int same = 1; same >= 0; same--) {
            double r[8];
            printf("%-8s %-9s", op_names[op], same ? "same" : "different");
            for (int i = 0; i < np; i++) {
                r[i] = measure(st, op, plist[i], same, ms, board);
                if (r[i] < 0)
                    failed = 1;
                printf(" %11.0f/s", r[i]);
                fflush(stdout);
            }
            for (int i = 1; i < np; i++)
                printf("   %5.2f", r[0] > 0 ? r[i] / r[0] : 0.0);
            printf("\n");
        }
    }
    l3_store_stats_t s;
    l3_store_stats(st, &s);
    printf("repairs %" PRIu64 ", rollbacks %" PRIu64 ", keys %" PRIu64 "\n", s.repairs, s.rollbacks, s.keys);
    l3_store_unlink(st);
    l3_store_close(st);
    return failed;
}
