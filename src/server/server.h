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

/* ---------------------------------------------------------------- shared control block
 *
 * One shared anonymous page created by the supervisor before the first fork; it tells the
 * workers which slots are live so each can compute which listening sockets it serves.
 * Written only by the supervisor (under no lock: single writer); workers read it with
 * acquire loads and re-read it when sc_gen changes (they poll it every 100 ms).
 *
 *   offset  size  field
 *   0       4     sc_magic   "L3SC"
 *   4       4     sc_gen     bumped after every change below (release store)
 *   8       4     sc_nsock   listening sockets (fixed for the life of the server)
 *   12      4     sc_stop    1 once a graceful stop began
 *   16      64*4  sc_state   per worker slot: L3_OBS_SLOT_EMPTY / _RUNNING / _RETIRING
 *   272     64*4  sc_pid     per worker slot: pid or 0
 *
 * Socket assignment (l3_srv_ctl_serves): live = RUNNING slots in index order; socket i
 * is served by live[i mod |live|]. With S sockets and N <= S live workers no worker
 * serves more than ceil(S/N) sockets, at most twice its fair share.
 */
#define L3_SRV_CTL_MAGIC 0x4353334cu /* "L3SC" */

typedef struct {
    uint32_t sc_magic;
    uint32_t sc_gen;
    uint32_t sc_nsock;
    uint32_t sc_stop;
    uint32_t sc_state[L3_SRV_MAX_WORKERS];
    int32_t sc_pid[L3_SRV_MAX_WORKERS];
} l3_srv_ctl_t;

/** True when worker slot `slot` serves socket `sock` under the current table. */
bool l3_srv_ctl_serves(const l3_srv_ctl_t *ctl, uint32_t slot, uint32_t sock);

/* ---------------------------------------------------------------- supervisor (supervisor.c) */

typedef struct l3_srv l3_srv_t;

/** A child role other than the HTTP workers (the WAL writer). main returns an exit code.
 *  It starts with SIGTERM and SIGINT blocked (it unblocks them once its handlers are in
 *  place), without the HTTP listening fds, and is stopped with SIGTERM after the workers. */
typedef int (*l3_srv_role_main_fn)(l3_srv_t *srv, void *arg);

/**
 * Autoscaler tick: called in the supervisor every autoscale.interval_ms with the current
 * live worker count, the queue depth (connections waiting in the listening sockets'
 * accept queues + requests in flight in all workers, see l3_srv_queue_depth) and the
 * metrics totals. Return the desired worker count (clamped to [min_workers,
 * max_workers]), or 0 to leave it unchanged.
 */
typedef uint32_t (*l3_srv_tick_fn)(l3_srv_t *srv, void *arg, uint32_t nworkers, double queue_depth,
                                   const l3_obs_totals_t *totals);

struct l3_srv {
    l3_srv_config_t cfg;
    const char *config_path;
    l3_store_t *store;
    l3_obs_t obs;
    l3_srv_ctl_t *ctl;
    int lfds[L3_SRV_MAX_WORKERS]; /* listening sockets (SO_REUSEPORT group), -1 = closed */
    uint32_t nsock;
    uint16_t port;                /* bound port (after port 0 resolution) */
    void *ssl_ctx;                /* SSL_CTX * or NULL */
    void *h2o_globalconf;         /* h2o_globalconf_t *, built before fork */
    /* WAL integration (set by main before l3_srv_run): the ring the store's hook appends
     * to, and whether replies to writes wait until their record is durable
     * (storage.durability = "fsync"). With wal_wait, l3_wal_notify_create(ring,
     * max_workers) must have been called before l3_srv_run: worker slot i uses eventfd
     * slot i. */
    void *wal_ring;               /* l3_wal_ring_t * or NULL */
    bool wal_wait;
};

/** Create the server: config must be loaded; creates the store, sockets, control block. 0 or -errno. */
int l3_srv_init(l3_srv_t *srv, const char *config_path);

/** Register a child role (e.g. the WAL writer), forked at start and restarted on crash. 0 or -ENOSPC. */
int l3_srv_add_role(l3_srv_t *srv, const char *name, l3_srv_role_main_fn fn, void *arg);

/** Install the autoscaler tick (NULL = none: the worker count stays at min_workers unless set). */
void l3_srv_set_tick(l3_srv_t *srv, l3_srv_tick_fn fn, void *arg);

/**
 * Ask for n workers (clamped to [min_workers, max_workers]); applied by the supervisor
 * loop: scale up forks, scale down retires the highest slots gracefully (they stop
 * accepting, their sockets are adopted by the others, in-flight requests finish).
 * Callable from the tick callback or any supervisor code.
 */
void l3_srv_set_workers(l3_srv_t *srv, uint32_t n);

/** Connections waiting in the accept queues of the listening sockets (TCP_INFO). Any process. */
uint64_t l3_srv_accept_queue(const l3_srv_t *srv);

/**
 * Sum over live workers of the fraction of the time since the previous call that each
 * was runnable - running or waiting for a CPU (from /proc/<pid>/schedstat). 1.0 = one
 * worker that always had work.
 * Supervisor only (keeps the previous readings); the first call returns 0.
 */
double l3_srv_workers_cpu(l3_srv_t *srv);

/** Queue depth for the autoscaler: accept queues + requests in flight in all workers. */
double l3_srv_queue_depth(const l3_srv_t *srv, const l3_obs_totals_t *totals);

/** Run the supervisor loop until SIGTERM/SIGINT and a graceful stop. Returns the exit code. */
int l3_srv_run(l3_srv_t *srv);

/* ---------------------------------------------------------------- WAL (walsetup.c) */

/** Format the WAL ring, recover the arena (snapshot + WAL), install the store hook, the
 *  durability eventfds ("fsync") and the writer role. Supervisor, before l3_srv_run. */
/** In l3_srv_init, before stale arenas are swept: refuse a data directory others may write
 *  to (-EPERM), then append the published, unwritten ring records of dead instances'
 *  arenas to this WAL (l3_wal_salvage). 0 or a negative code. */
int l3_srv_wal_prepare(l3_srv_t *srv);
int l3_srv_wal_setup(l3_srv_t *srv);
/** The WAL segment prefix in use (after l3_srv_wal_setup). */
const char *l3_srv_wal_path(void);
/** Supervisor loop hook: start a checkpoint when the WAL on disk passed storage.checkpoint_bytes. */
void l3_srv_wal_tick(l3_srv_t *srv);
/** Ask for a checkpoint at the next tick whatever the WAL size (supervisor; SIGRTMIN). */
void l3_srv_wal_request_checkpoint(l3_srv_t *srv);
/** Supervisor reaped a child it does not track: true if it was the checkpointer (logged). */
bool l3_srv_wal_child_exited(l3_srv_t *srv, pid_t pid, int status);
/** Supervisor stopping: kill and reap a running checkpointer. */
void l3_srv_wal_stop_tasks(l3_srv_t *srv);

/**
 * Fork a one-shot helper child (not restarted): returns 0 in the child (listening fds
 * closed, SIGTERM/SIGINT blocked, dies with the supervisor), the pid in the parent, or
 * -errno. The parent learns of its exit through l3_srv_wal_child_exited.
 */
pid_t l3_srv_fork_task(l3_srv_t *srv, const char *name);

/* ---------------------------------------------------------------- autoscaler (autoscale.c) */

/** Install the Kalman autoscaler as the supervisor tick (unless autoscale.enabled is false
 *  or min_workers == max_workers). 0 or -EINVAL (parameters rejected, logged). */
int l3_srv_autoscale_setup(l3_srv_t *srv);

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
