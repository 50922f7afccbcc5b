/* SPDX-License-Identifier: MIT */
/*
 * worker.h - the HTTP worker process (worker.c): the h2o configuration built before fork
 * and the worker's main after fork.
 */
#ifndef L3KV_SRV_WORKER_H
#define L3KV_SRV_WORKER_H

#include <stddef.h>
#include <stdint.h>

#ifndef L3KV_SRV_T_DEFINED
#define L3KV_SRV_T_DEFINED
typedef struct l3_srv l3_srv_t;
#endif

/** Build the h2o global configuration (before fork). 0 or -errno. */
int l3_srv_h2o_setup(l3_srv_t *srv, char *errbuf, size_t errlen);

/** Worker process main (after fork). Never returns. */
__attribute__((noreturn)) void l3_srv_worker_main(l3_srv_t *srv, uint32_t slot);

#endif
