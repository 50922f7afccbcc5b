/* SPDX-License-Identifier: MIT */
/*
 * t.h - the tiny test harness. A test is a program: exit 0 pass, 77 skip, 99 harness
 * error, 1 failure. CHECK() reports file:line and keeps going; the exit code reflects
 * every failed check.
 */
#ifndef L3KV_T_H
#define L3KV_T_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_SKIP 77
#define T_HARNESS_ERROR 99

extern int t_failures;
extern unsigned long t_checks;

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        t_checks++;                                                                                          \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                          \
            t_failures++;                                                                                    \
        }                                                                                                    \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                                   \
    do {                                                                                                     \
        long long a__ = (long long)(a), b__ = (long long)(b);                                                \
        t_checks++;                                                                                          \
        if (a__ != b__) {                                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b,   \
                    a__, b__);                                                                               \
            t_failures++;                                                                                    \
        }                                                                                                    \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                                   \
    do {                                                                                                     \
        const char *a__ = (a), *b__ = (b);                                                                   \
        t_checks++;                                                                                          \
        if (a__ == NULL || b__ == NULL || strcmp(a__, b__) != 0) {                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__, __LINE__, #a,    \
                    #b, a__ ? a__ : "(null)", b__ ? b__ : "(null)");                                         \
            t_failures++;                                                                                    \
        }                                                                                                    \
    } while (0)

/** Seed for randomised tests: $L3_TEST_SEED or a fixed default; printed so failures replay. */
uint64_t t_seed(void);
/** xorshift64* PRNG. */
uint64_t t_rand(uint64_t *state);
/** Make a fresh temporary directory (removed by t_rmtree). Aborts with 99 on failure. */
char *t_tmpdir(void);
void t_rmtree(const char *path);
/** Print the summary line and return the exit code: 1 if a check failed or no check ran. */
int t_done(void);

#endif
