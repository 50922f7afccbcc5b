/* SPDX-License-Identifier: MIT */
/*
 * autoscale.h - the Kalman autoscaler as the supervisor's tick (see autoscale.c).
 */
#ifndef L3KV_SRV_AUTOSCALE_H
#define L3KV_SRV_AUTOSCALE_H

#include "supervisor.h"

/** Install the Kalman autoscaler as the supervisor tick (unless autoscale.enabled is false
 *  or min_workers == max_workers). 0 or -EINVAL (parameters rejected, logged). */
int l3_srv_autoscale_setup(l3_srv_t *srv);

#endif
