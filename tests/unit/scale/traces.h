/* SPDX-License-Identifier: MIT */
/*
 * traces.h - synthetic queue-depth traces for the autoscaler tests (header-only, shared by
 * the test programs and the CSV generator).
 *
 * A trace is n samples taken every TR_INTERVAL_MS: truth[i] is the signal, z[i] the
 * measurement = max(0, truth[i] + sigma * N(0,1)), with the normal deviates drawn by
 * Box-Muller from t_rand() under a fixed seed, so every run sees the same numbers.
 *
 *   step      0 for 2 s, then 40                  (needs 5 workers at capacity 8)
 *   ramp      0 for 2 s, +1 req per interval (10 req/s) for 10 s to 100, then 100
 *   spike     10, with one sample of 200 at i = 100
 *   noise     20 throughout
 *   periodic  30 + 20 sin(2 pi t / 10 s)
 */
#ifndef L3KV_TEST_TRACES_H
#define L3KV_TEST_TRACES_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "t.h"

#define TR_INTERVAL_MS 100u
#define TR_STEP_AT 20u    /* sample index where step and ramp start */
#define TR_STEP_LEVEL 40.0
#define TR_RAMP_END 120u  /* ramp reaches TR_RAMP_LEVEL here */
#define TR_RAMP_LEVEL 100.0
#define TR_SPIKE_AT 100u
#define TR_SPIKE_LEVEL 200.0
#define TR_SPIKE_BASE 10.0
#define TR_NOISE_LEVEL 20.0
#define TR_PERIOD 100u    /* samples */

typedef enum tr_kind {
    TR_STEP,
    TR_RAMP,
    TR_SPIKE,
    TR_NOISE,
    TR_PERIODIC,
    TR_KIND_MAX,
} tr_kind_t;

static const char *const tr_names[TR_KIND_MAX] = {"step", "ramp", "spike", "noise", "periodic"};

static inline double tr_uniform(uint64_t *st)
{
    /* 53 random bits in (0, 1]: never 0, so log() below is finite. */
    return (double)((t_rand(st) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

static inline double tr_gauss(uint64_t *st)
{
    double u = tr_uniform(st), v = tr_uniform(st);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

static inline double tr_truth(tr_kind_t kind, size_t i)
{
    switch (kind) {
    case TR_STEP:
        return i < TR_STEP_AT ? 0.0 : TR_STEP_LEVEL;
    case TR_RAMP:
        if (i < TR_STEP_AT)
            return 0.0;
        if (i < TR_RAMP_END)
            return (double)(i - TR_STEP_AT) * (TR_RAMP_LEVEL / (TR_RAMP_END - TR_STEP_AT));
        return TR_RAMP_LEVEL;
    case TR_SPIKE:
        return i == TR_SPIKE_AT ? TR_SPIKE_LEVEL : TR_SPIKE_BASE;
    case TR_NOISE:
        return TR_NOISE_LEVEL;
    case TR_PERIODIC:
        return 30.0 + 20.0 * sin(2.0 * M_PI * (double)i / TR_PERIOD);
    default:
        return 0.0;
    }
}

/** Fill truth[0..n) and z[0..n) for kind with measurement noise sigma under seed. */
static inline void tr_gen(tr_kind_t kind, uint64_t seed, double sigma, size_t n, double *truth, double *z)
{
    uint64_t st = seed ? seed : 1;
    for (size_t i = 0; i < n; i++) {
        double t = tr_truth(kind, i);
        double m = t + sigma * tr_gauss(&st);
        truth[i] = t;
        z[i] = m > 0 ? m : 0;
    }
}

/*
 * CSV trace files (tests/data/scale/NAME.csv), text, one sample per line; lines starting
 * with '#' are comments; the first other line is the header "t_ms,depth,truth":
 *   t_ms   caller's monotonic time of the sample, ms (unsigned integer; may step back)
 *   depth  measured queue depth, req (decimal; "nan" marks a failed measurement)
 *   truth  the signal before noise, req (decimal), used only to score the filter
 */
#define TR_CSV_MAX 100000

typedef struct tr_csv {
    size_t n;
    uint64_t t[TR_CSV_MAX];
    double z[TR_CSV_MAX], truth[TR_CSV_MAX];
} tr_csv_t;

/* Strict reader: every non-comment line after the header must be "u64,double,double". */
static inline int tr_read_csv(const char *path, tr_csv_t *out)
{
    FILE *f = fopen(path, "r");
    char line[256];
    bool header = false;
    int rc = 0;

    if (!f) {
        perror(path);
        return -errno;
    }
    out->n = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#')
            continue;
        if (!header) {
            if (strcmp(line, "t_ms,depth,truth\n") != 0)
                goto bad;
            header = true;
            continue;
        }
        char *p = line, *end;
        errno = 0;
        unsigned long long t = strtoull(p, &end, 10);
        if (end == p || *end != ',' || errno)
            goto bad;
        p = end + 1;
        double z = strtod(p, &end);
        if (end == p || *end != ',')
            goto bad;
        p = end + 1;
        double truth = strtod(p, &end);
        if (end == p || (*end != '\n' && *end != '\0'))
            goto bad;
        if (out->n >= TR_CSV_MAX)
            goto bad;
        out->t[out->n] = t;
        out->z[out->n] = z;
        out->truth[out->n] = truth;
        out->n++;
    }
    if (!header || out->n == 0)
        goto bad;
    fclose(f);
    return 0;
bad:
    fprintf(stderr, "%s: malformed near sample %zu: %s", path, out->n, line);
    rc = -EBADMSG;
    fclose(f);
    return rc;
}

#endif
