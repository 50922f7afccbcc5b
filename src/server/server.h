/* SPDX-License-Identifier: MIT */
/*
 * server.h - the supervisor-side headers of src/server in one include (not a public API).
 *
 * Every module has its own header: ctl.h (control block), listen.h (listening sockets),
 * supervisor.h (server handle, roles, scaling), walsetup.h (the WAL role), autoscale.h,
 * log.h, config.h; the worker side is worker.h, routes.h, http.h, query.h, durable.h.
 * This file only gathers the supervisor side for main.c and the supervisor's own files;
 * new code includes the headers it uses instead.
 */
#ifndef L3KV_SRV_SERVER_H
#define L3KV_SRV_SERVER_H

#include "autoscale.h"
#include "config.h"
#include "ctl.h"
#include "listen.h"
#include "log.h"
#include "supervisor.h"
#include "walsetup.h"
#include "l3kv/error.h"
#include "l3kv/store.h"
#include "obs.h"

#endif
