/* SPDX-License-Identifier: MIT */
/*
 * scale-sim.c - replay a queue-depth trace through the autoscaler and print every step, for
 * tuning by hand. Not a test; built next to them.
 *
 * Usage: scale-sim [-t] [field=value ...] TRACE.csv
 *   TRACE.csv    t_ms,depth,truth file (format in traces.h), e.g. tests/data/scale/step.csv
 *   field=value  override a parameter: interval_ms horizon_ms q_depth q_rate r capacity
 *                down_fill margin min_workers max_workers cooldown_ms max_step_up
 *   -t           also run the threshold baseline and add its worker count as a column
 * Output: CSV on stdout (t_ms,measured,estimate,rate,predicted,workers[,threshold],reason)
 * and a summary on stderr. The simulated workers do not drain the trace.
 */
#include <errno.h>
#include <math.h>

#include "l3kv/scale.h"
#include "t.h"
#include "traces.h"

static tr_csv_t tr;

static int set_param(l3_scale_params_t *p, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq)
        return -EINVAL;
    size_t len = (size_t)(eq - arg);
    char *end;
    double v = strtod(eq + 1, &end);
    if (end == eq + 1 || *end)
        return -EINVAL;
#define F(name, conv)                                                                                        \
    if (len == strlen(#name) && strncmp(arg, #name, len) == 0) {                                             \
        p->name = conv;                                                                                      \
        return 0;                                                                                            \
    }
    F(interval_ms, (uint32_t)v)
    F(horizon_ms, (uint32_t)v)
    F(q_depth, v)
    F(q_rate, v)
    F(r, v)
    F(capacity, v)
    F(down_fill, v)
    F(margin, v)
    F(min_workers, (unsigned)v)
    F(max_workers, (unsigned)v)
    F(cooldown_ms, (uint32_t)v)
    F(max_step_up, (unsigned)v)
#undef F
    return -EINVAL;
}

int main(int argc, char **argv)
{
    static l3_scale_t sc;
    l3_scale_params_t p;
    const char *path = NULL, *msg = NULL;
    bool thr = false;

    l3_scale_params_default(&p);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0)
            thr = true;
        else if (strchr(argv[i], '=')) {
            if (set_param(&p, argv[i]) < 0) {
                fprintf(stderr, "scale-sim: bad parameter %s\n", argv[i]);
                return 2;
            }
        } else
            path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: scale-sim [-t] [field=value ...] TRACE.csv\n");
        return 2;
    }
    if (l3_scale_init(&sc, &p, &msg) < 0) {
        fprintf(stderr, "scale-sim: %s\n", msg);
        return 2;
    }
    if (tr_read_csv(path, &tr) < 0)
        return 1;

    unsigned w = p.min_workers, wt = p.min_workers;
    unsigned long evt = 0;
    printf("t_ms,measured,estimate,rate,predicted,workers%s,reason\n", thr ? ",threshold" : "");
    for (size_t i = 0; i < tr.n; i++) {
        l3_scale_decision_t d;
        w = l3_scale_step(&sc, tr.z[i], tr.t[i], w, &d);
        printf("%llu,%.3f,%.3f,%.3f,%.3f,%u", (unsigned long long)tr.t[i], tr.z[i], d.estimate, d.rate,
               d.predicted, w);
        if (thr) {
            unsigned nt = l3_scale_threshold_step(&p, tr.z[i], tr.t[i], wt, NULL);
            evt += nt != wt;
            wt = nt;
            printf(",%u", wt);
        }
        printf(",\"%s\"\n", d.text);
    }
    fprintf(stderr, "%zu steps: %llu up, %llu down events", tr.n, (unsigned long long)sc.ups,
            (unsigned long long)sc.downs);
    if (thr)
        fprintf(stderr, "; threshold baseline %lu events", evt);
    fprintf(stderr, "; %llu invalid, %llu clock steps back\n", (unsigned long long)sc.invalid,
            (unsigned long long)sc.time_backwards);
    return 0;
}
