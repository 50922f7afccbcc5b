/* SPDX-License-Identifier: MIT */
/*
 * server.h - internals shared by the files of src/server (not a public API).
 *
 * Process model: one supervisor (supervisor.c) that owns the config, the store arena,
 * the listening sockets and the worker table; N worker processes (worker.c) each running
 * one libh2o event loop and the REST routes (routes.c); extra "roles" (the WAL writer)
 * registered by main.c and forked/restarted by the supervisor like workers.
 */
#ifndef L3KV_SRV_SERVER_H
#define L3KV_SRV_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "autoscale.h"
#include "ctl.h"
#include "listen.h"
#include "supervisor.h"
#include "walsetup.h"
#include "l3kv/base.h"
#include "l3kv/error.h"
#include "l3kv/store.h"
#include "obs.h"

/* ---------------------------------------------------------------- logging (log.c) */

/** One line to stderr: "<UTC time> l3kv[<pid>] <level>: <message>", one write(). */
void l3_srv_log(l3_log_level_t lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void l3_srv_log_set_level(l3_log_level_t lvl);
/** Set the log file (NULL = stderr as inherited) and open it onto fd 2. 0 or -errno. */
int l3_srv_log_open(const char *path);
/** Reopen the log file (SIGHUP); no-op without one. 0 or -errno. */
int l3_srv_log_reopen(void);

#define L3_LOG(lvl, ...) l3_srv_log(lvl, __VA_ARGS__)

/* ---------------------------------------------------------------- control block, listeners,
 * supervisor, WAL, autoscaler: ctl.h, listen.h, supervisor.h, walsetup.h, autoscale.h */

/* ---------------------------------------------------------------- worker (worker.c) */

/** Build the h2o global configuration (before fork). 0 or -errno. */
int l3_srv_h2o_setup(l3_srv_t *srv, char *errbuf, size_t errlen);

/** Worker process main (after fork). Never returns. */
__attribute__((noreturn)) void l3_srv_worker_main(l3_srv_t *srv, uint32_t slot);

/* ---------------------------------------------------------------- routes (routes.c) */

struct st_h2o_req_t;
struct st_h2o_handler_t;

/** Per-worker environment the routes use. */
typedef struct {
    l3_srv_t *srv;
    l3_store_t *store;
    l3_obs_slot_t *obs;
    uint32_t slot;
    int64_t max_active;   /* per-worker connection limit before 503 */
    const int64_t *active; /* this worker's open connections */
} l3_srv_env_t;

extern l3_srv_env_t l3_srv_env;

/** Worker: is this connection beyond the first max_active ones still open (in accept
 *  order)? Called only while the worker is over its limit: O(open connections). */
bool l3_srv_conn_over_limit(const void *h2o_conn);

/** The single h2o handler: routes every request. */
int l3_srv_on_req(struct st_h2o_handler_t *self, struct st_h2o_req_t *req);

/** Worker: the WAL notification eventfd became readable (or a periodic check): send the
 *  replies whose records are now durable. */
void l3_srv_durable_poll(void);
/** Worker: replies waiting for durability. */
size_t l3_srv_durable_pending(void);

#endif
