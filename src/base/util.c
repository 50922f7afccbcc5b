/* SPDX-License-Identifier: MIT */
/*
 * util.c - fatal errors, clocks, randomness, error strings, directory fsync.
 * Runs in every process. No shared state.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "l3kv/base.h"
#include "l3kv/error.h"

void l3_fatal_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "l3kv: fatal: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

uint64_t l3_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int l3_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

void l3_stop_signals_install(void (*handler)(int), struct sigaction *old_term, struct sigaction *old_int)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, old_term);
    sigaction(SIGINT, &sa, old_int);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

uint64_t l3_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void l3_random_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            l3_fatal("getrandom: %s", strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
}

const char *l3_strerror(int rc)
{
    switch (rc) {
    case L3_ESYNTAX:
        return "invalid JSON";
    case L3_EDEPTH:
        return "nesting too deep";
    case L3_EPATH:
        return "malformed path";
    case L3_ENOTFOUND:
        return "no such value";
    case L3_ETYPE:
        return "type conflict";
    case L3_ECORRUPT:
        return "corrupt data";
    case L3_ERANGE:
        return "value out of range";
    case L3_ETOOBIG:
        return "document too large";
    case L3_EPOISONED:
        return "store poisoned (unrepaired state, rebuild from the WAL)";
    case L3_EDOCSIZE:
        return "document exceeds the configured size limit";
    case L3_EREHASH:
        return "document must be rebuilt under a fresh hash seed";
    default:
        break;
    }
    if (rc < 0 && rc > L3_EBASE)
        return strerror(-rc);
    return rc >= 0 ? "success" : "unknown error";
}
