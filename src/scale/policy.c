/* SPDX-License-Identifier: MIT */
/*
 * policy.c - the autoscaling controller: parameters, clamp, cooldown, decision + reason,
 * the history ring of scale events, and the threshold baseline used for comparison.
 *
 * Owns: l3_scale_params_t defaults/validation, l3_scale_t, l3_scale_decision_t.
 * Runs in: the supervisor, once per autoscale.interval_ms, and in unit tests. Pure code:
 * no syscalls, no allocation, no clock (the caller passes now_ms). Concurrency: none;
 * one l3_scale_t per caller. Calls: kalman.c.
 *
 * Decision per step (reason codes in scale.h):
 *
 *     cur < min ───────────────────────────────▶ UP_MIN          target = min
 *     cur > max ───────────────────────────────▶ DOWN_MAX        target = max
 *     measurement invalid / no estimate yet ───▶ HOLD_INVALID    target = cur
 *     pred - m*sd > cur*cap ───┬─ cur = max ───▶ HOLD_AT_MAX
 *     (up = ceil(pred / cap))   └──────────────▶ UP_PREDICTED     target = min(up, cur+step, max)
 *     down = ceil(max(est + m*sde, pred) / (cap*fill)), at least min
 *       down < cur ─┬─ low for < cooldown ─────▶ HOLD_COOLDOWN   (low period runs)
 *                   └─ low for >= cooldown ────▶ DOWN_SUSTAINED  target = peak(down) over the period
 *       otherwise ─────────────────────────────▶ HOLD            (low period ends)
 *
 * est = filtered depth, sde = its standard deviation sqrt(P00), pred = forecast horizon_ms
 * ahead, sd = the forecast's standard deviation, m = margin, cap = capacity, fill =
 * down_fill. The margin makes both directions demand statistical evidence: up needs the
 * forecast confidently above the current capacity, down needs the present depth
 * confidently below the smaller one (and a forecast that agrees) for a whole cooldown.
 * The gap between the two conditions is the hysteresis that keeps a noisy steady load
 * from toggling a worker on and off.
 *
 * Invariants:
 *   T1. Every returned target lies in [min_workers, max_workers].
 *   T2. A decision with delta < 0 and reason DOWN_SUSTAINED is only made after every step
 *       of the preceding cooldown_ms wanted fewer workers than the caller had; any step
 *       that wanted as many or more (or an invalid measurement, or time going backwards)
 *       ends the low period.
 *   T3. Scale-up never adds more than max_step_up workers in one decision.
 *   T4. Time going backwards never advances the filter (dt is taken as 0).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "l3kv/scale.h"

/* A supervisor stalled longer than this is not extrapolated further: the rate is stale
 * anyway, and an unbounded dt would only inflate P. */
#define MAX_DT_S 60.0

void l3_scale_params_default(l3_scale_params_t *ret_params)
{
    *ret_params = (l3_scale_params_t){
        .interval_ms = 100,
        .horizon_ms = 500,
        .q_depth = 1.0,
        .q_rate = 50.0,
        .r = 9.0,
        .capacity = 8.0,
        .down_fill = 1.0,
        .margin = 1.5,
        .min_workers = 1,
        .max_workers = 16,
        .cooldown_ms = 3000,
        .max_step_up = 8,
    };
}

static bool finite_pos(double v)
{
    return isfinite(v) && v > 0;
}

int l3_scale_params_validate(const l3_scale_params_t *p, const char **ret_msg)
{
    const char *msg = NULL;

    if (p->interval_ms < 1 || p->interval_ms > 60000)
        msg = "autoscale.interval_ms must be in [1, 60000]";
    else if (p->horizon_ms > 60000)
        msg = "autoscale.horizon_ms must be in [0, 60000]";
    else if (!isfinite(p->q_depth) || p->q_depth < 0)
        msg = "autoscale.q_depth must be a finite number >= 0";
    else if (!isfinite(p->q_rate) || p->q_rate < 0)
        msg = "autoscale.q_rate must be a finite number >= 0";
    else if (!finite_pos(p->r))
        msg = "autoscale.r must be a finite number > 0";
    else if (!finite_pos(p->capacity))
        msg = "autoscale.capacity must be a finite number > 0";
    else if (!finite_pos(p->down_fill) || p->down_fill > 1)
        msg = "autoscale.down_fill must be in (0, 1]";
    else if (!isfinite(p->margin) || p->margin < 0 || p->margin > 10)
        msg = "autoscale.margin must be in [0, 10]";
    else if (p->min_workers < 1)
        msg = "min_workers must be >= 1";
    else if (p->max_workers > L3_SCALE_WORKERS_LIMIT)
        msg = "max_workers must be <= 1024";
    else if (p->max_workers < p->min_workers)
        msg = "max_workers must be >= min_workers";
    else if (p->cooldown_ms > 3600000)
        msg = "autoscale.cooldown_ms must be in [0, 3600000]";
    else if (p->max_step_up < 1)
        msg = "autoscale.max_step_up must be >= 1";

    if (ret_msg)
        *ret_msg = msg;
    return msg ? -EINVAL : 0;
}

static const char *const reason_names[L3_SCALE_REASON_MAX] = {
    [L3_SCALE_HOLD] = "hold",
    [L3_SCALE_HOLD_COOLDOWN] = "hold: cooldown",
    [L3_SCALE_HOLD_INVALID] = "hold: invalid measurement",
    [L3_SCALE_HOLD_AT_MAX] = "hold: at max",
    [L3_SCALE_UP_PREDICTED] = "scale up",
    [L3_SCALE_UP_MIN] = "scale up: below min",
    [L3_SCALE_DOWN_SUSTAINED] = "scale down",
    [L3_SCALE_DOWN_MAX] = "scale down: above max",
    [L3_SCALE_UP_THRESHOLD] = "scale up: threshold",
    [L3_SCALE_DOWN_THRESHOLD] = "scale down: threshold",
};

const char *l3_scale_reason_name(l3_scale_reason_t reason)
{
    if ((unsigned)reason >= L3_SCALE_REASON_MAX)
        return "?";
    return reason_names[reason];
}

int l3_scale_init(l3_scale_t *sc, const l3_scale_params_t *params, const char **ret_msg)
{
    int rc = l3_scale_params_validate(params, ret_msg);
    if (rc < 0)
        return rc;
    memset(sc, 0, sizeof(*sc));
    sc->params = *params;
    l3_kalman_init(&sc->kf, params->q_depth, params->q_rate, params->r);
    return 0;
}

/* Workers needed for demand at per-worker capacity cap, saturated so the conversion to
 * unsigned is always defined (demand is finite and >= 0 here, cap > 0). */
static unsigned workers_for(double demand, double cap)
{
    double w = ceil(demand / cap);
    if (!(w >= 0))
        return 0;
    if (w > (double)L3_SCALE_WORKERS_LIMIT + 1)
        return L3_SCALE_WORKERS_LIMIT + 1;
    return (unsigned)w;
}

/* target - cur without overflow for any caller-supplied cur (target <= 1024). */
static int delta_of(unsigned target, unsigned cur)
{
    long long dl = (long long)target - (long long)cur;
    return dl < INT_MIN ? INT_MIN : (int)dl;
}

static void record(l3_scale_t *sc, const l3_scale_decision_t *d)
{
    sc->last = *d;
    if (d->delta > 0)
        sc->ups++;
    else if (d->delta < 0)
        sc->downs++;
    if (d->delta == 0)
        return;
    sc->hist[sc->hist_next] = *d;
    sc->hist_next = (sc->hist_next + 1) % L3_SCALE_HISTORY;
    if (sc->hist_len < L3_SCALE_HISTORY)
        sc->hist_len++;
}

/* Scale-up branch of l3_scale_step: the forecast needs more than cur workers. */
static void decide_up(l3_scale_t *sc, unsigned cur, unsigned up, double pred, l3_scale_decision_t *d)
{
    const l3_scale_params_t *p = &sc->params;
    sc->low = false;
    if (cur >= p->max_workers) {
        d->reason = L3_SCALE_HOLD_AT_MAX;
        snprintf(d->text, sizeof(d->text), "hold: at max %u workers, predicted depth %.1f", p->max_workers,
                 pred);
    } else {
        unsigned t = up;
        if (t - cur > p->max_step_up)
            t = cur + p->max_step_up; /* T3 */
        if (t > p->max_workers)
            t = p->max_workers;
        d->target = t;
        d->reason = L3_SCALE_UP_PREDICTED;
        snprintf(d->text, sizeof(d->text), "scale up: predicted depth %.1f > capacity %.0f", pred,
                 cur * p->capacity);
    }
}

/* Hold or scale-down branch of l3_scale_step: the forecast fits cur workers. */
static void decide_down(l3_scale_t *sc, unsigned cur, double est, double pred, double sd, bool backwards,
                        uint64_t now_ms, l3_scale_decision_t *d)
{
    const l3_scale_params_t *p = &sc->params;
    /* Down needs the depth now to be confidently low (upper bound of the estimate)
     * and the forecast not to need more. The forecast's own sd is not added here:
     * it is mostly rate noise and would hold one worker too many at steady load. */
    double est_hi = est + p->margin * sqrt(sc->kf.P[0][0]);
    double demand = est_hi > pred ? est_hi : pred;
    unsigned down = workers_for(demand, p->capacity * p->down_fill);
    if (down < p->min_workers)
        down = p->min_workers;
    if (down < cur && !backwards) {
        if (!sc->low) {
            sc->low = true;
            sc->low_since_ms = now_ms;
            sc->low_peak = down;
        } else if (down > sc->low_peak) {
            sc->low_peak = down;
        }
        uint64_t held = now_ms - sc->low_since_ms;
        if (held >= p->cooldown_ms) {
            d->target = sc->low_peak;
            d->reason = L3_SCALE_DOWN_SUSTAINED;
            snprintf(d->text, sizeof(d->text), "scale down: depth %.1f fits %u workers for %llu ms", demand,
                     sc->low_peak, (unsigned long long)held);
            sc->low = false;
        } else {
            d->reason = L3_SCALE_HOLD_COOLDOWN;
            snprintf(d->text, sizeof(d->text), "hold: cooldown (depth %.1f fits %u, low %llu of %u ms)",
                     demand, down, (unsigned long long)held, p->cooldown_ms);
        }
    } else if (down < cur) {
        /* T2/T4: a clock that went backwards cannot prove the period; start over. */
        sc->low = false;
        d->reason = L3_SCALE_HOLD_COOLDOWN;
        snprintf(d->text, sizeof(d->text), "hold: cooldown restarted, time went backwards");
    } else {
        sc->low = false;
        d->reason = L3_SCALE_HOLD;
        snprintf(d->text, sizeof(d->text), "hold: predicted depth %.1f (sd %.1f) within capacity %.0f", pred,
                 sd, cur * p->capacity);
    }
}

unsigned l3_scale_step(l3_scale_t *sc, double z, uint64_t now_ms, unsigned cur, l3_scale_decision_t *ret)
{
    const l3_scale_params_t *p = &sc->params;
    l3_scale_decision_t d = {.now_ms = now_ms, .current = cur, .target = cur, .measured = z};
    double dt = 0;
    bool backwards = false;

    sc->steps++;
    if (sc->stepped && now_ms < sc->last_ms) {
        backwards = true; /* T4: dt stays 0 */
        sc->time_backwards++;
    } else if (sc->stepped) {
        dt = (double)(now_ms - sc->last_ms) / 1000.0;
        if (dt > MAX_DT_S)
            dt = MAX_DT_S;
    }
    sc->last_ms = now_ms;
    sc->stepped = true;

    l3_kalman_predict(&sc->kf, dt);
    bool valid = l3_kalman_update(&sc->kf, z) == 0;
    if (!valid)
        sc->invalid++;

    double var = 0;
    double pred = l3_kalman_forecast(&sc->kf, p->horizon_ms / 1000.0, &var);
    double sd = var > 0 ? sqrt(var) : 0;
    double est = sc->kf.ready ? sc->kf.x[0] : 0;
    d.estimate = est;
    d.rate = sc->kf.ready ? sc->kf.x[1] : 0;
    d.predicted = pred;

    if (cur < p->min_workers) {
        d.target = p->min_workers;
        d.reason = L3_SCALE_UP_MIN;
        snprintf(d.text, sizeof(d.text), "scale up: %u workers below min %u", cur, p->min_workers);
        sc->low = false;
    } else if (cur > p->max_workers) {
        d.target = p->max_workers;
        d.reason = L3_SCALE_DOWN_MAX;
        snprintf(d.text, sizeof(d.text), "scale down: %u workers above max %u", cur, p->max_workers);
        sc->low = false;
    } else if (!valid || !sc->kf.ready) {
        d.reason = L3_SCALE_HOLD_INVALID;
        snprintf(d.text, sizeof(d.text), "hold: invalid measurement");
        sc->low = false; /* T2 */
    } else {
        unsigned up = workers_for(pred, p->capacity);
        if (up > cur && pred - p->margin * sd > cur * p->capacity)
            decide_up(sc, cur, up, pred, &d);
        else
            decide_down(sc, cur, est, pred, sd, backwards, now_ms, &d);
    }

    d.delta = delta_of(d.target, cur);
    record(sc, &d);
    if (ret)
        *ret = d;
    return d.target;
}

size_t l3_scale_history(const l3_scale_t *sc, l3_scale_decision_t *ret_events, size_t max)
{
    size_t n = sc->hist_len < max ? sc->hist_len : max;
    for (size_t i = 0; i < n; i++) {
        unsigned slot = (sc->hist_next + L3_SCALE_HISTORY - 1 - (unsigned)i) % L3_SCALE_HISTORY;
        ret_events[i] = sc->hist[slot];
    }
    return n;
}

unsigned l3_scale_threshold_step(const l3_scale_params_t *p, double z, uint64_t now_ms, unsigned cur,
                                 l3_scale_decision_t *ret)
{
    l3_scale_decision_t d = {.now_ms = now_ms, .current = cur, .target = cur, .measured = z};

    if (cur < p->min_workers) {
        d.target = p->min_workers;
        d.reason = L3_SCALE_UP_MIN;
        snprintf(d.text, sizeof(d.text), "scale up: %u workers below min %u", cur, p->min_workers);
    } else if (cur > p->max_workers) {
        d.target = p->max_workers;
        d.reason = L3_SCALE_DOWN_MAX;
        snprintf(d.text, sizeof(d.text), "scale down: %u workers above max %u", cur, p->max_workers);
    } else if (!(z >= 0 && z <= L3_SCALE_MAX_DEPTH)) {
        d.reason = L3_SCALE_HOLD_INVALID;
        snprintf(d.text, sizeof(d.text), "hold: invalid measurement");
    } else {
        d.estimate = d.predicted = z;
        unsigned want = workers_for(z, p->capacity);
        if (want < p->min_workers)
            want = p->min_workers;
        if (want > p->max_workers)
            want = p->max_workers;
        if (want > cur && want - cur > p->max_step_up)
            want = cur + p->max_step_up;
        d.target = want;
        if (want > cur) {
            d.reason = L3_SCALE_UP_THRESHOLD;
            snprintf(d.text, sizeof(d.text), "scale up: measured depth %.1f > capacity %.0f", z,
                     cur * p->capacity);
        } else if (want < cur) {
            d.reason = L3_SCALE_DOWN_THRESHOLD;
            snprintf(d.text, sizeof(d.text), "scale down: measured depth %.1f fits capacity %.0f", z,
                     want * p->capacity);
        } else {
            d.reason = L3_SCALE_HOLD;
            snprintf(d.text, sizeof(d.text), "hold: measured depth %.1f within capacity %.0f", z,
                     cur * p->capacity);
        }
    }
    d.delta = delta_of(d.target, cur);
    if (ret)
        *ret = d;
    return d.target;
}
