/* SPDX-License-Identifier: MIT */
/*
 * l3kv/scale.h - predictive worker scaling: a Kalman estimator over queue depth and the
 * controller that turns its forecast into a worker count.
 *
 * Pure code: no syscalls, no allocation, no logging, no clock reads. The caller (the
 * supervisor) measures queue depth every interval_ms, passes the measurement and its own
 * monotonic time in milliseconds, and applies the returned target (fork or retire
 * workers). Everything here is single-threaded: one l3_scale_t belongs to one caller.
 * Nothing blocks. The full model, tuning and measured error bounds are in docs/autoscale.md.
 *
 * Queue depth = connections waiting in the listen socket's accept queue + requests in
 * flight in all workers, in requests.
 */
#ifndef L3KV_SCALE_H
#define L3KV_SCALE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Hard ceiling on max_workers accepted by l3_scale_params_validate(). */
#define L3_SCALE_WORKERS_LIMIT 1024u
/** Number of scale events kept in the history ring of an l3_scale_t. */
#define L3_SCALE_HISTORY 16u
/** Largest depth measurement accepted (req); anything above is a measuring bug, not load,
 *  and would only push the filter towards overflow. */
#define L3_SCALE_MAX_DEPTH 1e9
/** Size of the formatted reason text in a decision, NUL included. */
#define L3_SCALE_TEXT_SIZE 96u

/*
 * Tunables. Units are stated per field; "req" means requests (queue depth units).
 * l3_scale_params_default() fills the defaults named here; config keys are
 * "autoscale.<field>" except min_workers/max_workers (server.min_threads/max_threads).
 */
typedef struct l3_scale_params {
    uint32_t interval_ms; /**< measurement period (default 100) */
    uint32_t horizon_ms;  /**< how far ahead the forecast looks (default 500) */
    double q_depth;       /**< process noise of depth, req^2 per second (default 1) */
    double q_rate;        /**< process noise of the rate, (req/s)^2 per second (default 50) */
    double r;             /**< measurement noise variance, req^2 (default 9: sigma 3 req) */
    double capacity;      /**< req one worker handles comfortably, in flight + queued (default 8) */
    double down_fill; /**< scale down only to a count that would be at most this full, (0,1] (default 1) */
    double margin;    /**< forecast confidence margin in standard deviations, [0,10] (default 1.5) */
    unsigned min_workers; /**< lower clamp, >= 1 (default 1) */
    unsigned max_workers; /**< upper clamp, <= L3_SCALE_WORKERS_LIMIT (default 16) */
    uint32_t cooldown_ms; /**< a low estimate must last this long before scaling down (default 3000) */
    unsigned max_step_up; /**< most workers added by one decision, >= 1 (default 8) */
} l3_scale_params_t;

/** Fill *ret_params with the documented defaults. */
void l3_scale_params_default(l3_scale_params_t *ret_params);

/**
 * Check every field. Returns 0, or -EINVAL with *ret_msg (if not NULL) set to a static
 * message naming the bad field, e.g. "autoscale.capacity must be a finite number > 0".
 */
int l3_scale_params_validate(const l3_scale_params_t *params, const char **ret_msg);

/* ------------------------------------------------------------------------------------ */
/* Estimator: 2-state constant-velocity Kalman filter.                                   */
/*   x = [depth (req), rate (req/s)]      F(dt) = [1 dt; 0 1]        H = [1 0]            */
/*   Q(dt) = diag(q_depth*dt, q_rate*dt)  R = r                                          */
/* ------------------------------------------------------------------------------------ */

typedef struct l3_kalman {
    double x[2];       /**< state: x[0] depth (req, kept >= 0), x[1] rate of change (req/s) */
    double P[2][2];    /**< state covariance (symmetric) */
    double q_depth;    /**< see l3_scale_params_t */
    double q_rate;     /**< see l3_scale_params_t */
    double r;          /**< see l3_scale_params_t */
    double innovation; /**< last z - H x before the update (req), for metrics */
    uint64_t updates;  /**< measurements folded in */
    bool ready;        /**< false until the first measurement initialises x */
} l3_kalman_t;

/** Set noise parameters and forget all state (next update re-initialises x from z). */
void l3_kalman_init(l3_kalman_t *kf, double q_depth, double q_rate, double r);

/** Advance the state by dt_s seconds (dt_s <= 0 or not finite: no-op). */
void l3_kalman_predict(l3_kalman_t *kf, double dt_s);

/**
 * Fold in one depth measurement z (req). Returns 0, or -EINVAL (state untouched) if z is
 * NaN, negative or above L3_SCALE_MAX_DEPTH. The first valid measurement sets x = [z, 0].
 */
int l3_kalman_update(l3_kalman_t *kf, double z);

/**
 * Depth forecast horizon_s seconds ahead without changing the filter: x0 + x1*h, floored
 * at 0. If ret_var is not NULL it receives the forecast variance P00 + 2h P01 + h^2 P11.
 * Before the first measurement returns 0 (variance 0).
 */
double l3_kalman_forecast(const l3_kalman_t *kf, double horizon_s, double *ret_var);

/* ------------------------------------------------------------------------------------ */
/* Controller                                                                           */
/* ------------------------------------------------------------------------------------ */

typedef enum l3_scale_reason {
    L3_SCALE_HOLD = 0,       /**< demand fits the current workers */
    L3_SCALE_HOLD_COOLDOWN,  /**< demand is low, waiting for the cooldown to pass */
    L3_SCALE_HOLD_INVALID,   /**< measurement NaN/negative/too large: ignored, nothing changes */
    L3_SCALE_HOLD_AT_MAX,    /**< more workers wanted, already at max_workers */
    L3_SCALE_UP_PREDICTED,   /**< predicted depth exceeds current capacity */
    L3_SCALE_UP_MIN,         /**< fewer workers than min_workers */
    L3_SCALE_DOWN_SUSTAINED, /**< low estimate lasted the whole cooldown */
    L3_SCALE_DOWN_MAX,       /**< more workers than max_workers */
    L3_SCALE_UP_THRESHOLD,   /**< threshold baseline: measured depth above capacity */
    L3_SCALE_DOWN_THRESHOLD, /**< threshold baseline: measured depth below capacity */
    L3_SCALE_REASON_MAX,
} l3_scale_reason_t;

/** Static short name of a reason, e.g. "scale up", "hold: cooldown"; "?" if out of range. */
const char *l3_scale_reason_name(l3_scale_reason_t reason);

typedef struct l3_scale_decision {
    uint64_t now_ms;  /**< caller's timestamp of the step */
    unsigned current; /**< workers the caller reported */
    unsigned target;  /**< workers wanted, within [min_workers, max_workers] */
    int delta;        /**< target - current (saturates at INT_MIN for absurd current) */
    l3_scale_reason_t reason;
    double measured;               /**< depth passed in (may be NaN if invalid) */
    double estimate;               /**< filtered depth now (req) */
    double rate;                   /**< filtered rate (req/s) */
    double predicted;              /**< forecast horizon_ms ahead (req) */
    char text[L3_SCALE_TEXT_SIZE]; /**< e.g. "scale up: predicted depth 37.2 > capacity 16" */
} l3_scale_decision_t;

typedef struct l3_scale {
    l3_scale_params_t params;
    l3_kalman_t kf;
    uint64_t last_ms;                           /**< time of the previous step (valid if stepped) */
    bool stepped;                               /**< at least one step taken */
    bool low;                                   /**< a low-demand period is running */
    uint64_t low_since_ms;                      /**< start of the low-demand period */
    unsigned low_peak;                          /**< highest worker count wanted during the low period */
    uint64_t steps;                             /**< total l3_scale_step calls */
    uint64_t ups;                               /**< decisions with delta > 0 */
    uint64_t downs;                             /**< decisions with delta < 0 */
    uint64_t invalid;                           /**< measurements ignored as invalid */
    uint64_t time_backwards;                    /**< steps whose now_ms was before the previous one */
    l3_scale_decision_t last;                   /**< the most recent decision */
    l3_scale_decision_t hist[L3_SCALE_HISTORY]; /**< ring of scale events (delta != 0) */
    unsigned hist_next;                         /**< slot the next event goes to */
    unsigned hist_len;                          /**< events stored, <= L3_SCALE_HISTORY */
} l3_scale_t;

/** Validate params and reset sc. Returns 0 or -EINVAL (see l3_scale_params_validate). */
int l3_scale_init(l3_scale_t *sc, const l3_scale_params_t *params, const char **ret_msg);

/**
 * One control step: advance the filter to now_ms, fold in measured_depth, decide.
 *   - scale up at once, when predicted - margin*sd > current_workers*capacity (sd: the
 *     forecast's standard deviation), to ceil(predicted / capacity), at most max_step_up more;
 *   - scale down only when ceil(max(estimate + margin*sqrt(P00), predicted) /
 *     (capacity*down_fill)) stayed below current_workers for cooldown_ms, to the highest
 *     count wanted in that period;
 *   - always clamped to [min_workers, max_workers].
 * Time going backwards advances nothing and restarts the cooldown; an invalid
 * measurement (NaN, < 0, > L3_SCALE_MAX_DEPTH) holds. Fills *ret (if not NULL) and returns the target.
 * Scale events (delta != 0) are appended to the history ring. Never blocks.
 */
unsigned l3_scale_step(l3_scale_t *sc, double measured_depth, uint64_t now_ms, unsigned current_workers,
                       l3_scale_decision_t *ret);

/**
 * Copy up to max recorded scale events, newest first, into ret_events. Returns the count.
 */
size_t l3_scale_history(const l3_scale_t *sc, l3_scale_decision_t *ret_events, size_t max);

/**
 * Baseline for comparison: a memoryless threshold scaler. Target = ceil(measured /
 * capacity) clamped to [min, max] with at most max_step_up added, applied at once in
 * both directions. Stateless; fills *ret (if not NULL) and returns the target.
 */
unsigned l3_scale_threshold_step(const l3_scale_params_t *params, double measured_depth, uint64_t now_ms,
                                 unsigned current_workers, l3_scale_decision_t *ret);

#endif /* L3KV_SCALE_H */
