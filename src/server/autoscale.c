/* SPDX-License-Identifier: MIT */
/*
 * autoscale.c - connects the supervisor's tick to the Kalman autoscaler (src/scale).
 *
 * Runs in the supervisor only, from its single-threaded loop: every autoscale.interval_ms
 * the supervisor measures the queue depth (accept queues + in-flight requests,
 * l3_srv_queue_depth) and calls on_tick, which feeds l3_scale_step and returns the target
 * worker count; the supervisor forks or retires workers to match. Decisions that change
 * the count are logged with the autoscaler's reason text.
 */
#include <errno.h>
#include <time.h>

#include "l3kv/scale.h"
#include "server.h"

static l3_scale_t scaler;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint32_t on_tick(l3_srv_t *srv, void *arg, uint32_t nworkers, double depth, const l3_obs_totals_t *t)
{
    (void)srv;
    (void)t;
    l3_scale_decision_t d;
    unsigned target = l3_scale_step(arg, depth, mono_ms(), nworkers, &d);
    if (d.delta != 0)
        L3_LOG(L3_LOG_INFO, "autoscale: %u -> %u workers: %s", nworkers, target, d.text);
    return target;
}

int l3_srv_autoscale_setup(l3_srv_t *srv)
{
    const l3_srv_config_t *c = &srv->cfg;
    if (!c->autoscale.enabled || c->server.min_workers == c->server.max_workers)
        return 0;
    l3_scale_params_t p;
    l3_scale_params_default(&p);
    p.interval_ms = c->autoscale.interval_ms;
    p.horizon_ms = c->autoscale.horizon_ms;
    p.q_depth = c->autoscale.process_noise;
    p.q_rate = c->autoscale.rate_noise;
    p.r = c->autoscale.measurement_noise;
    p.capacity = c->autoscale.worker_capacity;
    p.down_fill = c->autoscale.down_fill;
    p.margin = c->autoscale.margin;
    p.cooldown_ms = c->autoscale.cooldown_ms;
    p.max_step_up = c->autoscale.max_step_up;
    p.min_workers = c->server.min_workers;
    p.max_workers = c->server.max_workers;
    const char *msg = NULL;
    int rc = l3_scale_init(&scaler, &p, &msg);
    if (rc < 0) {
        L3_LOG(L3_LOG_ERROR, "config: %s", msg ? msg : "invalid autoscale parameters");
        return rc;
    }
    l3_srv_set_tick(srv, on_tick, &scaler);
    return 0;
}
