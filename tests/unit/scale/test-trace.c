/* SPDX-License-Identifier: MIT */
/*
 * test-trace.c - replay the committed autoscaler traces (tests/data/scale/NAME.csv) through the
 * Kalman controller and the threshold baseline, and check what each trace promises.
 *
 * Usage: test-scale-trace DATA_DIR            replay (the meson test)
 *        test-scale-trace --write DATA_DIR    regenerate the CSV files from traces.h
 *
 * CSV format: see traces.h (t_ms,depth,truth).
 * The files are inputs: a change to the generator does not change them unless rewritten
 * with --write, so the replay pins the controller's behaviour on fixed data.
 */
#include <errno.h>
#include <math.h>

#include "l3kv/base.h"
#include "l3kv/scale.h"
#include "t.h"
#include "traces.h"

#define SIGMA 3.0
#define SEED 7919

typedef struct expect {
    const char *name;
    tr_kind_t kind;   /* generator; TR_KIND_MAX for the glitch trace */
    double rms;       /* bound on the filter's RMS error after `from` */
    size_t from;      /* first sample scored / step start */
    unsigned need;    /* workers the steady load needs (0: no reach check) */
    int reach;        /* intervals after `from` to reach `need` */
    int max_events;   /* Kalman controller scale events over the whole trace */
} expect_t;

/* Bounds: the filter figures from test-kalman's table; event counts measured on these
 * exact files (step 6, ramp 12, spike 5, noise 1, periodic 25, glitch 4) plus a margin. */
static const expect_t expects[] = {
    {"step", TR_STEP, 2.1, TR_STEP_AT + 30, 5, 2, 10},
    {"ramp", TR_RAMP, 2.1, TR_STEP_AT + 30, 13, 2, 18},
    {"spike", TR_SPIKE, 2.1, 20, 0, 0, 10},
    {"noise", TR_NOISE, 2.1, 20, 3, 3, 5},
    {"periodic", TR_PERIODIC, 2.3, 20, 0, 0, 36},
    {"glitch", TR_KIND_MAX, 2.3, TR_STEP_AT + 30, 5, 3, 10},
};

static tr_csv_t tr;

/* The glitch trace: the step with jittered sampling, a failed measurement every 37th
 * sample, and the clock stepping back 2 s once. */
static void gen_glitch(tr_csv_t *g)
{
    uint64_t st = SEED ^ 0xabcdef;
    uint64_t t = 0;
    g->n = 600;
    for (size_t i = 0; i < g->n; i++) {
        g->truth[i] = tr_truth(TR_STEP, i);
        double m = g->truth[i] + SIGMA * tr_gauss(&st);
        g->z[i] = i % 37 == 36 ? NAN : (m > 0 ? m : 0);
        g->t[i] = t;
        t += 90 + t_rand(&st) % 21;
        if (i == 400)
            t -= 2000;
    }
}

static int write_all(const char *dir)
{
    for (size_t k = 0; k < L3_ARRAY_SIZE(expects); k++) {
        const expect_t *e = &expects[k];
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.csv", dir, e->name);
        if (e->kind == TR_KIND_MAX) {
            gen_glitch(&tr);
        } else {
            tr.n = 600;
            tr_gen(e->kind, SEED, SIGMA, tr.n, tr.truth, tr.z);
            for (size_t i = 0; i < tr.n; i++)
                tr.t[i] = i * TR_INTERVAL_MS;
        }
        FILE *f = fopen(path, "w");
        if (!f) {
            perror(path);
            return T_HARNESS_ERROR;
        }
        fprintf(f, "# L3KV autoscaler trace: %s, measurement noise sigma %.1f req, seed %d\n", e->name, SIGMA,
                SEED);
        if (e->kind == TR_KIND_MAX)
            fprintf(f, "# step 0 -> 40 req with jittered 90..110 ms sampling, a failed measurement every 37th "
                       "sample, clock back 2 s after sample 400\n");
        fprintf(f, "# columns: t_ms (caller clock, ms), depth (measured, req; nan = failed), truth (req)\n");
        fprintf(f, "t_ms,depth,truth\n");
        for (size_t i = 0; i < tr.n; i++)
            fprintf(f, "%llu,%.3f,%.3f\n", (unsigned long long)tr.t[i], tr.z[i], tr.truth[i]);
        if (fclose(f) != 0) {
            perror(path);
            return T_HARNESS_ERROR;
        }
        fprintf(stderr, "wrote %s (%zu samples)\n", path, tr.n);
    }
    return 0;
}

static void replay(const expect_t *e, const tr_csv_t *g)
{
    l3_scale_params_t p;
    static l3_scale_t sc;
    l3_scale_params_default(&p);
    p.max_workers = 16;
    CHECK_EQ_INT(l3_scale_init(&sc, &p, NULL), 0);

    unsigned w = p.min_workers, wt = p.min_workers;
    int ev = 0, evt = 0, reach = -1, nan_count = 0, backs = 0, bad_range = 0, early_down = 0;
    double se = 0;
    int ns = 0;
    uint64_t last_up_t = 0;
    bool have_up = false;

    for (size_t i = 0; i < g->n; i++) {
        if (isnan(g->z[i]))
            nan_count++;
        if (i && g->t[i] < g->t[i - 1])
            backs++;
        l3_scale_decision_t d;
        unsigned nw = l3_scale_step(&sc, g->z[i], g->t[i], w, &d);
        if (nw < p.min_workers || nw > p.max_workers)
            bad_range++;
        if (nw > w) {
            have_up = true;
            last_up_t = g->t[i];
        }
        /* a decrease within a cooldown of an increase (on a forward clock) is thrashing */
        if (nw < w && have_up && g->t[i] >= last_up_t && g->t[i] - last_up_t < p.cooldown_ms)
            early_down++;
        if (nw != w)
            ev++;
        w = nw;
        unsigned nt = l3_scale_threshold_step(&p, g->z[i], g->t[i], wt, NULL);
        if (nt != wt)
            evt++;
        wt = nt;
        if (e->need && i >= TR_STEP_AT && reach < 0 && w >= e->need)
            reach = (int)(i - (e->kind == TR_RAMP ? TR_RAMP_END : TR_STEP_AT));
        if (i >= e->from && !(e->kind == TR_SPIKE && i >= TR_SPIKE_AT && i < TR_SPIKE_AT + 20) &&
            isfinite(g->truth[i])) {
            double err = sc.kf.x[0] - g->truth[i];
            se += err * err;
            ns++;
        }
    }
    double rms = ns ? sqrt(se / ns) : INFINITY;
    fprintf(stderr, "%-8s %zu samples: filter rms %.2f, kalman %d events, threshold %d events%s", e->name, g->n,
            rms, ev, evt, e->need ? "" : "\n");
    if (e->need)
        fprintf(stderr, ", reach %d\n", reach);

    CHECK(rms < e->rms);
    CHECK(ev <= e->max_events);
    CHECK(3 * ev <= evt); /* the target ratio, on every trace */
    CHECK_EQ_INT(bad_range, 0);
    CHECK_EQ_INT(early_down, 0);
    if (e->need) {
        CHECK(reach >= 0 && reach <= e->reach);
        CHECK(w >= e->need); /* still serving the load at the end */
    }
    CHECK_EQ_INT(sc.invalid, nan_count);
    CHECK_EQ_INT(sc.time_backwards, backs);
    CHECK_EQ_INT(sc.ups + sc.downs, ev);
    CHECK_EQ_INT(sc.steps, g->n);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write") == 0)
        return write_all(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR | --write DATA_DIR\n", argv[0]);
        return T_HARNESS_ERROR;
    }
    for (size_t k = 0; k < L3_ARRAY_SIZE(expects); k++) {
        const expect_t *e = &expects[k];
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.csv", argv[1], e->name);
        if (tr_read_csv(path, &tr) != 0) {
            CHECK(false);
            continue;
        }
        /* The truth column is the generator's signal: the file has not been edited by hand. */
        if (e->kind != TR_KIND_MAX) {
            int off = 0;
            for (size_t i = 0; i < tr.n; i++)
                off += fabs(tr.truth[i] - tr_truth(e->kind, i)) > 1e-3;
            CHECK_EQ_INT(off, 0);
        }
        replay(e, &tr);
    }
    return t_done();
}
