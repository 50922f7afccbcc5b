/* SPDX-License-Identifier: MIT */
/*
 * obs.h - server metrics kept in shared memory.
 *
 * Each worker slot owns one cacheline-aligned block of counters that only that worker's
 * process writes (relaxed atomic adds: single writer, no locks). Anyone who maps the
 * region (every worker serving /metrics, the supervisor, the inspector) sums the slots
 * with relaxed loads; totals are stale-tolerant by design. The byte layout is drawn in
 * src/obs/metrics.c.
 */
#ifndef L3KV_OBS_H
#define L3KV_OBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "l3kv/wal.h"

/** Routes whose handler time is measured separately. */
typedef enum {
    L3_OBS_R_GET = 0, /* GET/HEAD /kv/{key} */
    L3_OBS_R_PUT,     /* PUT /kv/{key} */
    L3_OBS_R_DELETE,  /* DELETE /kv/{key} */
    L3_OBS_R_POST,    /* POST /kv/{key}?op= */
    L3_OBS_R_PATCH,   /* PATCH /kv/{key} */
    L3_OBS_R_LIST,    /* GET /kv/?prefix= */
    L3_OBS_R_HEALTH,  /* GET /kv/health */
    L3_OBS_R_METRICS, /* GET /metrics, /kv/metrics */
    L3_OBS_R_OTHER,   /* /dashboard, 404s, 405s, ... */
    L3_OBS_R_MAX
} l3_obs_route_t;

/** Stages of a document request, each timed in its own histogram (all routes together). */
typedef enum {
    L3_OBS_S_DOCOP = 0, /* document operation: the store call (lookup or parse + change + WAL
                           append), serialisation excluded */
    L3_OBS_S_SERIALIZE, /* JSON serialisation of a document (or a part) for a response */
    L3_OBS_S_HANDLER,   /* request handler: dispatcher entry to the response handed to h2o
                           (or parked), for the document routes (get ... list) */
    L3_OBS_S_MAX
} l3_obs_stage_t;

/** Duration histograms: values < 16 ns exact, then 8 buckets per power of two up to 2^32 ns. */
#define L3_OBS_NBUCKETS 240

/** One duration histogram in a slot (all u64; 1936 bytes). */
typedef struct {
    uint64_t rt_count;
    uint64_t rt_ns_total;
    uint64_t rt_hist[L3_OBS_NBUCKETS];
} l3_obs_hist_t;

/** Per-slot counters (the slot's worker is the only writer). */
typedef struct {
    int32_t os_pid;          /* pid of the worker now in the slot, 0 if none (supervisor writes) */
    uint32_t os_state;       /* l3_obs_slot_state: supervisor writes */
    int64_t os_active_conns; /* gauge: open connections (worker; reset to 0 by the supervisor after death) */
    uint64_t os_accepted;    /* connections accepted */
    uint64_t os_bytes_rx;    /* bytes read above TLS */
    uint64_t os_bytes_tx;    /* bytes written above TLS */
    uint64_t os_requests;    /* requests answered */
    uint64_t os_err4xx;      /* responses with status 400-499 */
    uint64_t os_err5xx;      /* responses with status 500-599 */
    uint64_t os_restarts;    /* times the slot's worker was replaced after a crash (supervisor writes) */
    int64_t os_inflight;     /* gauge: requests received and not yet completed (worker; reset after death) */
    uint64_t os_pad[6];      /* to 128 bytes */
    l3_obs_hist_t os_route[L3_OBS_R_MAX]; /* handler time per route (durable wait excluded) */
    l3_obs_hist_t os_e2e[L3_OBS_R_MAX];   /* end to end per route: dispatcher entry to the
                                             response handed to h2o, durable wait included */
    l3_obs_hist_t os_stage[L3_OBS_S_MAX]; /* per stage (l3_obs_stage_t) */
} __attribute__((aligned(64))) l3_obs_slot_t;

enum { L3_OBS_SLOT_EMPTY = 0, L3_OBS_SLOT_RUNNING = 1, L3_OBS_SLOT_RETIRING = 2 };

typedef struct l3_obs {
    struct l3_obs_hdr *hdr;
    struct l3_obs_as_shm *as; /* autoscaler section */
    l3_obs_slot_t *slots;
    uint32_t nslots;
} l3_obs_t;

/** The store's figures the Prometheus exposition shows (from l3_store_stats). */
typedef struct l3_obs_store_figs {
    uint64_t keys, doc_bytes, heap_bytes, used_bytes, free_bytes, largest_free, last_lsn;
    double fragmentation;
} l3_obs_store_figs_t;

/** Bytes a region for `nslots` worker slots needs (multiple of 4096). */
size_t l3_obs_region_size(uint32_t nslots);
/** Format a zeroed region at `base` (len >= l3_obs_region_size). 0 or -EINVAL. */
int l3_obs_format(void *base, size_t len, uint32_t nslots, uint64_t start_wall_ns);
/** Attach to a formatted region (checks magic/version/sizes). 0 or -EBADMSG. */
int l3_obs_attach(l3_obs_t *o, void *base, size_t len);

/** Slot of a worker; NULL for an out-of-range index. */
static inline l3_obs_slot_t *l3_obs_slot(const l3_obs_t *o, uint32_t idx)
{
    return idx < o->nslots ? &o->slots[idx] : NULL;
}

/** Single-writer relaxed add. */
static inline void l3_obs_add(uint64_t *ctr, uint64_t v)
{
    __atomic_store_n(ctr, __atomic_load_n(ctr, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

/** Bucket index of a duration in ns. */
static inline unsigned l3_obs_bucket(uint64_t ns)
{
    if (ns < 16)
        return (unsigned)ns;
    unsigned e = 63u - (unsigned)__builtin_clzll(ns);
    if (e > 31)
        return L3_OBS_NBUCKETS - 1;
    unsigned sub = (unsigned)(ns >> (e - 3)) & 7u;
    return 16u + (e - 4u) * 8u + sub;
}
/** Lower bound (inclusive) and upper bound (exclusive) of a bucket, in ns. */
void l3_obs_bucket_range(unsigned idx, uint64_t *ret_lo, uint64_t *ret_hi);

/** Record one answered request in the caller's slot. */
void l3_obs_record(l3_obs_slot_t *s, l3_obs_route_t route, int status, uint64_t handler_ns);
/** Record a request's end-to-end time (once per request, when its response goes to h2o). */
void l3_obs_record_e2e(l3_obs_slot_t *s, l3_obs_route_t route, uint64_t ns);
/** Record one timed stage. */
void l3_obs_record_stage(l3_obs_slot_t *s, l3_obs_stage_t stage, uint64_t ns);

/** Supervisor-maintained system figures. */
void l3_obs_set_workers(const l3_obs_t *o, uint32_t nworkers);
/** Records recovery set aside in the quarantine at this start (supervisor, before forking). */
void l3_obs_set_quarantined(const l3_obs_t *o, uint64_t n);

/* ---------------------------------------------------------------- autoscaler state */

/** Scale events kept in the published autoscaler state (newest first). */
#define L3_OBS_AS_EVENTS 16u
/** Size of a reason text in the published state, NUL included (longer texts are cut). */
#define L3_OBS_AS_TEXT 96u

/** One scale event (a decision that changed the worker count). 152 bytes. */
typedef struct {
    uint64_t ae_wall_ms;          /* when it was taken, ms since the epoch */
    uint64_t ae_mono_ms;          /* the same instant on the supervisor's CLOCK_MONOTONIC, ms */
    uint32_t ae_from;             /* workers before */
    uint32_t ae_to;               /* workers wanted */
    uint32_t ae_reason;           /* l3_scale_reason_t code */
    uint32_t ae_pad;              /* zero */
    double ae_measured;           /* measured depth (req) */
    double ae_estimate;           /* filtered depth (req) */
    double ae_predicted;          /* forecast at the horizon (req) */
    char ae_text[L3_OBS_AS_TEXT]; /* reason text, NUL terminated */
} l3_obs_as_event_t;

/**
 * The supervisor's autoscaler state as published for /metrics and the dashboard. The
 * supervisor is the only writer (l3_obs_as_publish, each tick); any process reads it with
 * l3_obs_as_read, which never returns a torn record (sequence lock). Byte layout: see the
 * region drawing in src/obs/metrics.c.
 */
typedef struct {
    uint32_t as_enabled;     /* 1 if the Kalman autoscaler runs */
    uint32_t as_interval_ms; /* tick period */
    uint32_t as_horizon_ms;  /* forecast distance */
    uint32_t as_min_workers;
    uint32_t as_max_workers;
    uint32_t as_workers;           /* live workers (not retiring) the last tick saw */
    uint32_t as_target;            /* workers the last tick asked for */
    uint32_t as_nevents;           /* valid entries in as_events, <= L3_OBS_AS_EVENTS */
    uint64_t as_wall_ms;           /* time of the last tick, ms since the epoch (0: no tick yet) */
    uint64_t as_backlog;           /* measured: connections waiting in the accept queues */
    uint64_t as_inflight;          /* measured: requests in flight in all workers */
    double as_depth;               /* measured depth = backlog + inflight (NaN if the read failed) */
    double as_estimate;            /* Kalman depth estimate (req) */
    double as_rate;                /* Kalman rate estimate (req/s) */
    double as_predicted;           /* forecast as_horizon_ms ahead (req) */
    double as_predicted_var;       /* forecast variance (req^2) */
    double as_p00, as_p01, as_p11; /* state covariance */
    double as_innovation;          /* last measurement minus prediction (req) */
    double as_capacity;            /* requests per worker */
    uint64_t as_steps, as_ups, as_downs, as_invalid;
    uint32_t as_last_reason;           /* l3_scale_reason_t of the last decision (holds included) */
    uint32_t as_pad;                   /* zero */
    char as_last_text[L3_OBS_AS_TEXT]; /* its reason text */
    l3_obs_as_event_t as_events[L3_OBS_AS_EVENTS]; /* newest first */
    double as_busy; /* measured: requests queued inside accepted (keep-alive) connections,
                       estimated from the workers' CPU use (see docs/autoscale.md) */
} l3_obs_as_t;

/** Publish a new autoscaler state (supervisor only: single writer). */
void l3_obs_as_publish(const l3_obs_t *o, const l3_obs_as_t *st);
/**
 * Read a consistent copy of the published state. 0; -ENOENT if nothing was published yet;
 * -EAGAIN if the writer stayed in the middle of an update for the whole retry budget
 * (e.g. it was killed while writing).
 */
int l3_obs_as_read(const l3_obs_t *o, l3_obs_as_t *ret);

/** One histogram summed across all slots. */
typedef struct {
    uint64_t count, ns_total, median_ns, p99_ns;
    uint64_t hist[L3_OBS_NBUCKETS];
} l3_obs_sum_t;

/** Sums across all slots (about 41 KiB: keep it off small stacks). */
typedef struct {
    int64_t active_conns;
    int64_t inflight;
    uint64_t accepted, bytes_rx, bytes_tx, requests, err4xx, err5xx, restarts;
    uint32_t workers;
    uint64_t start_wall_ns;
    uint64_t quarantined;             /* records set aside by recovery at this start */
    l3_obs_sum_t route[L3_OBS_R_MAX]; /* handler time */
    l3_obs_sum_t e2e[L3_OBS_R_MAX];   /* end to end */
    l3_obs_sum_t stage[L3_OBS_S_MAX];
} l3_obs_totals_t;

void l3_obs_totals(const l3_obs_t *o, l3_obs_totals_t *ret);

/** Quantile (0..1) of a summed histogram, interpolated inside its bucket. */
uint64_t l3_obs_quantile(const uint64_t *hist, uint64_t count, double q);

/** Name of a route as used in JSON ("get", "put", ...). */
const char *l3_obs_route_name(l3_obs_route_t r);
/** Name of a stage as used in JSON ("document_op", "serialize", "handler"). */
const char *l3_obs_stage_name(l3_obs_stage_t s);

/**
 * Bounds of the exposition's cumulative ("le") buckets: one per power of two, bound i is
 * 2^(L3_OBS_LE_MIN_LOG2 + i) ns (256 ns ... 2^31 ns = 2.147 s), then +Inf. Each bound is a
 * boundary of the log-linear buckets, so collapsing splits none.
 */
#define L3_OBS_LE_MIN_LOG2 8u
#define L3_OBS_NLE 24u
/** Bound i (< L3_OBS_NLE) in ns. */
static inline uint64_t l3_obs_le_ns(unsigned i)
{
    return UINT64_C(1) << (L3_OBS_LE_MIN_LOG2 + i);
}
/**
 * Collapse a histogram (L3_OBS_NBUCKETS counts) into cumulative counts: ret[i] (i <
 * L3_OBS_NLE) counts the values below l3_obs_le_ns(i) (a value of exactly the bound falls in
 * the next one: the buckets' upper bounds are exclusive), ret[L3_OBS_NLE] (+Inf) all of
 * them, including the last octave and values beyond 2^32 ns. Returns that total.
 */
uint64_t l3_obs_cumulative(const uint64_t *hist, uint64_t ret[L3_OBS_NLE + 1]);

/** The change feed's figures for /metrics (member "changes"). */
typedef struct {
    uint64_t watchers;          /* open watchers, every worker */
    uint64_t events_sent_total; /* changes sent */
    uint64_t resets_total;      /* streams ended by a reset */
    char oldest_cursor[40];     /* the oldest cursor that can still be resumed (NUL-terminated) */
    uint64_t retained_bytes;    /* WAL segment bytes kept past the last checkpoint for the feed */
} l3_obs_changes_t;

/** Replication (docs/scale-out.md): this node's role and, on a replica, how far it is. */
typedef struct {
    const char *role;  /* "primary", "replica", "promoted" */
    const char *state; /* the follower's: "starting", "connecting", "bootstrapping", "following", "stopped" */
    const char *primary; /* replication.primary or NULL (no JSON escaping needed: checked by config.c) */
    uint64_t lag_records, lag_ms, bootstraps_total, applied_total;
} l3_obs_repl_t;

/**
 * Render the /metrics JSON document into a malloc'd buffer (*ret, *ret_len).
 * accept_queue: connections waiting in the listening sockets' queues (system.accept_queue).
 * `extra` (may be NULL) is a JSON object text inserted as member "store"; `wal` (may be
 * NULL: member omitted) the WAL figures from l3_wal_ring_stats, `changes` (may be NULL: member
 * omitted) the change feed's, `repl` (may be NULL: omitted) replication's. The "autoscale"
 * member comes from the region.
 * 0 or -ENOMEM.
 */
int l3_obs_render_json(const l3_obs_t *o, const char *version, uint64_t accept_queue, const char *extra,
                       const l3_wal_stats_t *wal, const l3_obs_changes_t *changes, const l3_obs_repl_t *repl,
                       char **ret, size_t *ret_len);
/** Render the legacy /kv/metrics text ("name value" lines). 0 or -ENOMEM. */
int l3_obs_render_text(const l3_obs_t *o, char **ret, size_t *ret_len);
/**
 * Render the Prometheus text exposition (format 0.0.4) of the same figures as the JSON.
 * `extra` as for l3_obs_render_json but a struct (may be NULL), `wal` and `changes` as there;
 * `with_pids`: show process ids.
 * 0 or -ENOMEM.
 */
int l3_obs_render_prom(const l3_obs_t *o, const char *version, uint64_t accept_queue,
                       const struct l3_obs_store_figs *store, const l3_wal_stats_t *wal,
                       const l3_obs_changes_t *changes, const l3_obs_repl_t *repl, bool with_pids, char **ret,
                       size_t *ret_len);
/** The static /dashboard HTML page. */
const char *l3_obs_dashboard_html(size_t *ret_len);

#endif
