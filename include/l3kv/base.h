/* SPDX-License-Identifier: MIT */
/*
 * l3kv/base.h - attributes, assertions and small helpers shared by every layer.
 *
 * Nothing here allocates or logs. L3_ASSERT stays on in release builds: it guards
 * invariants whose failure means shared state is corrupt, where stopping is safer
 * than continuing.
 */
#ifndef L3KV_BASE_H
#define L3KV_BASE_H

#include <stddef.h>
#include <stdint.h>

#define L3_LIKELY(x) __builtin_expect(!!(x), 1)
#define L3_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define L3_UNUSED __attribute__((unused))
#define L3_NORETURN __attribute__((noreturn))
#define L3_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define L3_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define L3_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define L3_MIN(a, b) ((a) < (b) ? (a) : (b))
#define L3_MAX(a, b) ((a) > (b) ? (a) : (b))
#define l3_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/** Print "file:line: message" to stderr and abort. Never returns. */
L3_NORETURN void l3_fatal_at(const char *file, int line, const char *fmt, ...) L3_PRINTF(3, 4);
#define l3_fatal(...) l3_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

#define L3_ASSERT(cond)                                                                                      \
    do {                                                                                                     \
        if (L3_UNLIKELY(!(cond)))                                                                            \
            l3_fatal("assertion failed: %s", #cond);                                                         \
    } while (0)

/* Defensive branches: conditions believed impossible, handled anyway. */
#define L3_ALWAYS(x) L3_LIKELY(x)
#define L3_NEVER(x) L3_UNLIKELY(x)

/** Severity of a log line, for every component that logs or hands lines to a logger. */
typedef enum { L3_LOG_DEBUG = 0, L3_LOG_INFO, L3_LOG_WARN, L3_LOG_ERROR } l3_log_level_t;

/** Monotonic clock in nanoseconds. */
uint64_t l3_now_ns(void);
/** Wall clock in nanoseconds since the epoch. */
uint64_t l3_wall_ns(void);
/** fsync a directory (after a create, rename or unlink in it). 0 or -errno. The WAL's files
 * go through its own I/O layer instead (src/wal/shim.c). */
int l3_fsync_dir(const char *dir);
/** A stop handler for SIGTERM and SIGINT (the previous actions into *old_term / *old_int
 *  when not NULL), then both unblocked: for a child forked with them blocked, so that no
 *  early stop request is lost. */
struct sigaction;
void l3_stop_signals_install(void (*handler)(int), struct sigaction *old_term, struct sigaction *old_int);
/** Fill buf with len bytes from the kernel's random source (getrandom); aborts if it cannot. */
void l3_random_bytes(void *buf, size_t len);

/** CRC-32C (Castagnoli), hardware accelerated where the CPU has SSE4.2. crc is the running value (0 to
 * start). */
uint32_t l3_crc32c(uint32_t crc, const void *buf, size_t len);

/** SipHash-2-4 of (buf,len) under a 128-bit key; for hash tables fed by untrusted keys. */
uint64_t l3_siphash(const uint8_t key[16], const void *buf, size_t len);

#endif /* L3KV_BASE_H */
