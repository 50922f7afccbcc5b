/* SPDX-License-Identifier: MIT */
/*
 * kalman.c - the queue-depth estimator: a 2-state constant-velocity Kalman filter.
 *
 * Owns: l3_kalman_t (state x, covariance P, noise parameters).
 * Runs in: the supervisor (through policy.c) and in unit tests; pure arithmetic, no
 * syscalls, no allocation, no clock. Concurrency: none; one filter per caller.
 *
 * Model (docs/autoscale.md has the derivation and tuning):
 *   x = [d, v]^T        d = queue depth (req), v = its rate of change (req/s)
 *   F(dt) = [1 dt; 0 1] H = [1 0]
 *   Q(dt) = diag(q_depth*dt, q_rate*dt)      R = r
 *   predict: x = F x,  P = F P F^T + Q
 *   update:  S = H P H^T + R, K = P H^T / S, x += K (z - H x),
 *            P = (I - K H) P (I - K H)^T + K R K^T   (Joseph form: stays symmetric PSD)
 *
 * Invariants:
 *   K1. P is symmetric with P00 > 0, P11 > 0 and P00*P11 >= P01^2 (up to rounding) after
 *       every operation; predict only adds PSD terms, the Joseph update keeps PSD.
 *   K2. x[0] >= 0: a queue cannot be negative, so the depth is projected onto [0, inf)
 *       after each update (the rate is left alone).
 *   K3. Invalid input (NaN, inf, negative or absurd depth, non-positive dt) never changes the
 *       state. With depth <= L3_SCALE_MAX_DEPTH and dt capped by the caller, x and P stay finite.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>

#include "l3kv/scale.h"

void l3_kalman_init(l3_kalman_t *kf, double q_depth, double q_rate, double r)
{
    *kf = (l3_kalman_t){0};
    kf->q_depth = q_depth;
    kf->q_rate = q_rate;
    kf->r = r;
}

void l3_kalman_predict(l3_kalman_t *kf, double dt)
{
    if (!kf->ready || !isfinite(dt) || dt <= 0)
        return;
    double p00 = kf->P[0][0], p01 = kf->P[0][1], p11 = kf->P[1][1];

    kf->x[0] += dt * kf->x[1];
    kf->P[0][0] = p00 + 2 * dt * p01 + dt * dt * p11 + kf->q_depth * dt;
    kf->P[0][1] = kf->P[1][0] = p01 + dt * p11;
    kf->P[1][1] = p11 + kf->q_rate * dt;
}

int l3_kalman_update(l3_kalman_t *kf, double z)
{
    if (!(z >= 0 && z <= L3_SCALE_MAX_DEPTH)) /* also rejects NaN and inf (K3) */
        return -EINVAL;
    if (!kf->ready) {
        /* First measurement: depth known to within the measurement noise, rate unknown
         * to within what one second of rate process noise allows. */
        kf->x[0] = z;
        kf->x[1] = 0;
        kf->P[0][0] = kf->r;
        kf->P[0][1] = kf->P[1][0] = 0;
        kf->P[1][1] = kf->q_rate;
        kf->innovation = 0;
        kf->ready = true;
        kf->updates = 1;
        return 0;
    }

    double p00 = kf->P[0][0], p01 = kf->P[0][1], p11 = kf->P[1][1];
    double s = p00 + kf->r;
    double k0 = p00 / s, k1 = p01 / s;
    double y = z - kf->x[0];

    kf->innovation = y;
    kf->x[0] += k0 * y;
    kf->x[1] += k1 * y;
    if (kf->x[0] < 0)
        kf->x[0] = 0; /* K2 */

    /* Joseph form with A = I - K H = [a 0; -k1 1], a = 1 - k0:
     * A P A^T = [a^2 p00,            a (p01 - k1 p00);
     *            a (p01 - k1 p00),   p11 - 2 k1 p01 + k1^2 p00]
     * plus K r K^T = r [k0^2 k0 k1; k0 k1 k1^2]. */
    double a = 1 - k0;
    double n00 = a * a * p00 + kf->r * k0 * k0;
    double n01 = a * (p01 - k1 * p00) + kf->r * k0 * k1;
    double n11 = p11 - 2 * k1 * p01 + k1 * k1 * p00 + kf->r * k1 * k1;
    kf->P[0][0] = n00;
    kf->P[0][1] = kf->P[1][0] = n01;
    kf->P[1][1] = n11;
    kf->updates++;
    return 0;
}

double l3_kalman_forecast(const l3_kalman_t *kf, double h, double *ret_var)
{
    if (!kf->ready) {
        if (ret_var)
            *ret_var = 0;
        return 0;
    }
    if (!isfinite(h) || h < 0)
        h = 0;
    double d = kf->x[0] + h * kf->x[1];
    if (ret_var)
        *ret_var = kf->P[0][0] + 2 * h * kf->P[0][1] + h * h * kf->P[1][1];
    return d > 0 ? d : 0;
}
