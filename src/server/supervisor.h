/* SPDX-License-Identifier: MIT */
/*
 * supervisor.h - the supervisor: the server handle, worker and role processes, scaling.
 *
 * Process model: one supervisor (supervisor.c) that owns the config, the store arena,
 * the listening sockets (listen.h), the control block (ctl.h) and the worker table; N
 * worker processes each running one libh2o event loop; extra "roles" (the WAL writer)
 * registered before l3_srv_run and forked/restarted by the supervisor like workers.
 */
#ifndef L3KV_SRV_SUPERVISOR_H
#define L3KV_SRV_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "ctl.h"
#include "l3kv/store.h"
#include "obs.h"

typedef struct l3_srv l3_srv_t;
typedef struct l3_srv_sup l3_srv_sup_t; /* the supervisor's own state (supervisor.c) */

/** A child role other than the HTTP workers (the WAL writer). main returns an exit code.
 *  It starts with SIGTERM and SIGINT blocked (it unblocks them once its handlers are in
 *  place), without the HTTP listening fds, and is stopped with SIGTERM after the workers. */
typedef int (*l3_srv_role_main_fn)(l3_srv_t *srv, void *arg);

/**
 * A role: a child process the supervisor keeps running (restarted on crash) and the hooks
 * through which the supervisor loop drives the subsystem behind it. The supervisor knows
 * roles only through this table. Every member but name may be NULL; every hook runs in
 * the supervisor, from its single-threaded loop, and gets the arg given to l3_srv_add_role
 * (the role's own state, which holds whatever of the server it needs).
 *
 *   main          body of the role's child (NULL: no child process)
 *   tick          every pass of the supervisor loop (at least every 100 ms)
 *   request       the operator's "do it now" signal reached the supervisor (SIGRTMIN)
 *   child_exited  a child the supervisor does not track (one forked with l3_srv_fork_task)
 *                 was reaped: return true if it was this role's
 *   stop_tasks    graceful stop, the workers are gone: end the role's helper tasks
 *                 (before its child is asked to stop)
 *   stopped       graceful stop, the role's child exited: 0 when all the role owed is done,
 *                 < 0 when not (the supervisor then exits non-zero)
 *   stop_ms       how long the child may take to exit once asked to stop before it is killed
 *                 (at least server.shutdown_timeout_ms + 2000; a role that gives up on its
 *                 own after a bound of its own states it plus a margin, so it can say what
 *                 it could not finish instead of being killed in the middle)
 */
typedef struct {
    const char *name;
    l3_srv_role_main_fn main;
    void (*tick)(void *arg);
    void (*request)(void *arg);
    bool (*child_exited)(void *arg, pid_t pid, int status);
    void (*stop_tasks)(void *arg);
    int (*stopped)(void *arg);
    unsigned stop_ms;
} l3_srv_role_t;

/** Body of a worker process (after fork); never returns. */
typedef void (*l3_srv_worker_fn)(l3_srv_t *srv, uint32_t slot);

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
    uint16_t port;        /* bound port (after port 0 resolution) */
    void *ssl_ctx;        /* SSL_CTX * or NULL */
    void *h2o_globalconf; /* h2o_globalconf_t *, built before fork */
    /* WAL integration (set by main before l3_srv_run): the ring the store's hook appends
     * to, and whether replies to writes wait until their record is durable
     * (storage.durability = "fsync"). With wal_wait, l3_wal_notify_create(ring,
     * max_workers) must have been called before l3_srv_run: worker slot i uses eventfd
     * slot i. */
    void *wal_ring; /* l3_wal_ring_t * or NULL */
    bool wal_wait;
    void *feed_stats;      /* l3_feed_stats_t *: the change feed's counters (feedstat.h) */
    const char *feed_sock; /* the WAL writer's socket for retained segments (walsetup.c) or NULL */
    void *repl;            /* l3_repl_t *: the replication block (replica.h), or NULL */
    l3_srv_sup_t *sup;     /* worker table, roles, scaling target: created by l3_srv_init */
    /* Set by main before l3_srv_init (may be NULL): runs inside it, before the arenas of
     * dead instances are swept, so what they still hold can be saved (the WAL salvages their
     * rings). 0 or a negative code, which l3_srv_init returns. */
    int (*before_sweep)(l3_srv_t *srv);
};

/** Create the server: config must be loaded; creates the store, sockets, control block and
 *  the supervisor's state (every function below needs it). 0 or -errno. */
int l3_srv_init(l3_srv_t *srv, const char *config_path);

/** Register a role (e.g. the WAL writer): its child is forked at start and restarted on crash,
 *  its hooks are called from the supervisor loop. The table must outlive the server.
 *  0 or -ENOSPC. */
int l3_srv_add_role(l3_srv_t *srv, const l3_srv_role_t *role, void *arg);

/** Set the body of the worker processes (before l3_srv_run). */
void l3_srv_set_worker(l3_srv_t *srv, l3_srv_worker_fn fn);

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

/** Exit code of a stop forced by a poisoned arena (l3_store_poisoned): not a clean stop, so
 *  systemd (Restart=on-failure) starts the server again, and the start rebuilds the arena
 *  from the snapshot and the WAL. */
#define L3_SRV_EXIT_POISONED 3

/** Run the supervisor loop until SIGTERM/SIGINT (or a poisoned arena) and a graceful stop.
 *  Returns the exit code: 0, 1 (the stop could not drain the WAL), L3_SRV_EXIT_POISONED. */
int l3_srv_run(l3_srv_t *srv);

/**
 * Fork a one-shot helper child (not restarted): returns 0 in the child (listening fds
 * closed, SIGTERM/SIGINT blocked, dies with the supervisor), the pid in the parent, or
 * -errno. The parent learns of its exit through the roles' child_exited hooks.
 */
pid_t l3_srv_fork_task(l3_srv_t *srv, const char *name);

#endif
