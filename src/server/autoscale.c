/* SPDX-License-Identifier: MIT */
/*
 * autoscale.c - connects the supervisor's tick to the Kalman autoscaler (src/scale).
 *
 * Runs in the supervisor only, from its single-threaded loop: every autoscale.interval_ms
 * the supervisor measures the queue depth (accept queues + in-flight requests,
 * l3_srv_queue_depth) and calls on_tick, which feeds l3_scale_step and returns the target
 * worker count; the supervisor forks or retires workers to match. Decisions that change
 * the count are logged with the autoscaler's reason text.
 *
 * After every step the whole state (both parts of the measured depth, the filter's
 * estimate, rate, forecast and covariance, counters, the last 16 scale events with their
 * reasons) is published into the metrics region with l3_obs_as_publish (the supervisor is
 * its only writer; workers read it for /metrics under the region's sequence lock). When
 * the autoscaler is off, a record with enabled = 0 is published once at setup.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "l3kv/scale.h"
#include "autoscale.h"
#include "config.h"
#include "log.h"
#include "supervisor.h"
#include "obs.h"

static l3_scale_t scaler;

static uint64_t mono_ms(void)
{
    return l3_now_ns() / 1000000u;
}

static uint64_t wall_ms(void)
{
    return l3_wall_ns() / 1000000u;
}

static l3_obs_as_t pub; /* the record published last (static: 2.5 KiB) */

static void pub_static(const l3_srv_t *srv, bool enabled)
{
    const l3_srv_config_t *c = &srv->cfg;
    memset(&pub, 0, sizeof(pub));
    pub.as_enabled = enabled;
    pub.as_interval_ms = c->autoscale.interval_ms;
    pub.as_horizon_ms = c->autoscale.horizon_ms;
    pub.as_min_workers = c->server.min_workers;
    pub.as_max_workers = c->server.max_workers;
    pub.as_capacity = c->autoscale.worker_capacity;
    pub.as_depth = NAN;
}

static void copy_text(char *dst, const char *src)
{
    size_t n = strnlen(src, L3_OBS_AS_TEXT - 1);
    memcpy(dst, src, n);
    memset(dst + n, 0, L3_OBS_AS_TEXT - n);
}

/* Publish the scaler's state after a step (supervisor: the region's only writer). */
static void publish(const l3_srv_t *srv, const l3_scale_t *sc, const l3_scale_decision_t *d, uint64_t backlog,
                    uint64_t inflight, double busy, uint64_t now_mono, uint64_t now_wall)
{
    const l3_kalman_t *kf = &sc->kf;
    pub.as_workers = d->current;
    pub.as_target = d->target;
    pub.as_wall_ms = now_wall;
    pub.as_backlog = backlog;
    pub.as_inflight = inflight;
    pub.as_busy = busy;
    pub.as_depth = d->measured;
    pub.as_estimate = d->estimate;
    pub.as_rate = d->rate;
    pub.as_predicted = l3_kalman_forecast(kf, sc->params.horizon_ms / 1000.0, &pub.as_predicted_var);
    pub.as_p00 = kf->P[0][0];
    pub.as_p01 = kf->P[0][1];
    pub.as_p11 = kf->P[1][1];
    pub.as_innovation = kf->innovation;
    pub.as_steps = sc->steps;
    pub.as_ups = sc->ups;
    pub.as_downs = sc->downs;
    pub.as_invalid = sc->invalid;
    pub.as_last_reason = (uint32_t)d->reason;
    copy_text(pub.as_last_text, d->text);
    l3_scale_decision_t ev[L3_OBS_AS_EVENTS];
    size_t n = l3_scale_history(sc, ev, L3_OBS_AS_EVENTS);
    memset(pub.as_events, 0, sizeof(pub.as_events));
    for (size_t i = 0; i < n; i++) {
        l3_obs_as_event_t *e = &pub.as_events[i];
        uint64_t age = now_mono > ev[i].now_ms ? now_mono - ev[i].now_ms : 0;
        e->ae_mono_ms = ev[i].now_ms;
        e->ae_wall_ms = now_wall > age ? now_wall - age : 0;
        e->ae_from = ev[i].current;
        e->ae_to = ev[i].target;
        e->ae_reason = (uint32_t)ev[i].reason;
        e->ae_measured = ev[i].measured;
        e->ae_estimate = ev[i].estimate;
        e->ae_predicted = ev[i].predicted;
        copy_text(e->ae_text, ev[i].text);
    }
    pub.as_nevents = (uint32_t)n;
    l3_obs_as_publish(&srv->obs, &pub);
}

/* CPU share at which a worker counts as holding its full capacity of queued requests:
 * below 1.0 so a saturated worker (CPU ~1.0) reads as over capacity and triggers growth. */
#define BUSY_FULL 0.75

static uint32_t on_tick(l3_srv_t *srv, void *arg, uint32_t nworkers, double depth, const l3_obs_totals_t *t)
{
    l3_scale_t *sc = arg;
    /* Measure the two parts here so the published parts add up to what the filter saw. */
    (void)depth;
    uint64_t backlog = l3_srv_accept_queue(srv);
    uint64_t inflight = t->inflight > 0 ? (uint64_t)t->inflight : 0;
    /* Requests queued inside already accepted keep-alive connections are invisible to both
     * counters (a worker answers each one within its loop turn). A worker that is busy
     * BUSY_FULL of the time has a queue; count that as its capacity of requests, scaled by
     * its CPU use, so a saturated pool asks for more workers and an idle one for fewer. */
    double busy = l3_srv_workers_cpu(srv) / BUSY_FULL * sc->params.capacity;
    l3_scale_decision_t d;
    uint64_t now = mono_ms();
    unsigned target = l3_scale_step(sc, (double)backlog + (double)inflight + busy, now, nworkers, &d);
    if (d.delta != 0)
        L3_LOG(L3_LOG_INFO, "autoscale: %u -> %u workers: %s", nworkers, target, d.text);
    publish(srv, sc, &d, backlog, inflight, busy, now, wall_ms());
    return target;
}

int l3_srv_autoscale_setup(l3_srv_t *srv)
{
    const l3_srv_config_t *c = &srv->cfg;
    if (!c->autoscale.enabled || c->server.min_workers == c->server.max_workers) {
        pub_static(srv, false);
        l3_obs_as_publish(&srv->obs, &pub);
        return 0;
    }
    l3_scale_params_t p;
    l3_srv_config_scale_params(c, &p);
    const char *msg = NULL;
    int rc = l3_scale_init(&scaler, &p, &msg);
    if (rc < 0) {
        L3_LOG(L3_LOG_ERROR, "config: %s", msg ? msg : "invalid autoscale parameters");
        return rc;
    }
    pub_static(srv, true);
    l3_obs_as_publish(&srv->obs, &pub);
    l3_srv_set_tick(srv, on_tick, &scaler);
    return 0;
}
