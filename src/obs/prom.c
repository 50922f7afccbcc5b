/* SPDX-License-Identifier: MIT */
/*
 * prom.c - the Prometheus text exposition (format 0.0.4) of the metrics region, served by
 * GET /metrics when the client asks for it (docs/observability.md lists every family).
 *
 * Names: prefix l3kv_, counters end in _total, durations are _seconds histograms, sizes
 * _bytes gauges. Labels: route (handler names as in the JSON), stage, worker (the slot
 * number), class (4xx/5xx). Histograms are collapsed from the log-linear buckets to one
 * cumulative bucket per power of two (l3_obs_cumulative); _count equals the +Inf bucket and
 * both come from the same summed histogram, so a scrape is self-consistent. Process ids
 * appear only when the caller asks for them (the admin scope, route_admin.c).
 *
 * Reads the region like the JSON rendering (relaxed loads, stale-tolerant); one thread per
 * process renders (the totals are static).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs.h"

/* "# HELP" and "# TYPE" lines of a family. */
static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP l3kv_%s %s\n# TYPE l3kv_%s %s\n", name, help, name, type);
}

/* A family with one unlabelled sample. */
static void one_u(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    family(f, name, type, help);
    fprintf(f, "l3kv_%s %" PRIu64 "\n", name, v);
}

static void one_d(FILE *f, const char *name, const char *type, const char *help, double v)
{
    family(f, name, type, help);
    if (isfinite(v))
        fprintf(f, "l3kv_%s %.9g\n", name, v);
    else
        fprintf(f, "l3kv_%s NaN\n", name);
}

/* A label value escaped as the format asks (backslash, double quote, line feed). */
static void label_value(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* The samples of one histogram; `lab` is the label pair without braces ("route=\"get\""). */
static void hist_samples(FILE *f, const char *name, const char *lab, const l3_obs_sum_t *h)
{
    uint64_t cum[L3_OBS_NLE + 1];
    uint64_t n = l3_obs_cumulative(h->hist, cum);
    for (unsigned i = 0; i < L3_OBS_NLE; i++)
        fprintf(f, "l3kv_%s_bucket{%s,le=\"%.10g\"} %" PRIu64 "\n", name, lab, (double)l3_obs_le_ns(i) / 1e9,
                cum[i]);
    fprintf(f, "l3kv_%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, lab, cum[L3_OBS_NLE]);
    fprintf(f, "l3kv_%s_sum{%s} %.9f\n", name, lab, (double)h->ns_total / 1e9);
    fprintf(f, "l3kv_%s_count{%s} %" PRIu64 "\n", name, lab, n);
}

static const char *route_label(unsigned r)
{
    return l3_obs_route_name((l3_obs_route_t)r);
}

static const char *stage_label(unsigned s)
{
    return l3_obs_stage_name((l3_obs_stage_t)s);
}

/* One histogram family with a sample set per label value: `key`="name_of(i)" for i < n. */
static void hist_family(FILE *f, const char *name, const char *help, const char *key,
                        const char *(*name_of)(unsigned), const l3_obs_sum_t *h, unsigned n)
{
    char lab[64];
    family(f, name, "histogram", help);
    for (unsigned i = 0; i < n; i++) {
        snprintf(lab, sizeof(lab), "%s=\"%s\"", key, name_of(i));
        hist_samples(f, name, lab, &h[i]);
    }
}

static void histograms(FILE *f, const l3_obs_totals_t *t)
{
    hist_family(f, "handler_duration_seconds",
                "Request handler time by route: dispatcher entry to the response handed to h2o, durable wait "
                "excluded.",
                "route", route_label, t->route, L3_OBS_R_MAX);
    hist_family(f, "request_duration_seconds",
                "End-to-end request time by route: received to the response handed to h2o, durable wait "
                "included.",
                "route", route_label, t->e2e, L3_OBS_R_MAX);
    hist_family(f, "stage_duration_seconds",
                "Time of the stages of document requests: document_op, serialize, handler.", "stage",
                stage_label, t->stage, L3_OBS_S_MAX);
}

static void system_figs(FILE *f, const l3_obs_totals_t *t, const char *version, uint64_t accept_queue)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    family(f, "build_info", "gauge", "Always 1; the version is in the label.");
    fputs("l3kv_build_info{version=\"", f);
    label_value(f, version);
    fputs("\"} 1\n", f);
    one_u(f, "start_time_seconds", "gauge", "Start of the supervisor, seconds since the epoch.",
          t->start_wall_ns / 1000000000u);
    one_d(f, "uptime_seconds", "gauge", "Seconds since the supervisor started.",
          now > t->start_wall_ns ? (double)(now - t->start_wall_ns) / 1e9 : 0.0);
    one_u(f, "active_connections", "gauge", "Open client connections.", (uint64_t)t->active_conns);
    one_u(f, "worker_processes", "gauge", "Live worker processes.", t->workers);
    one_u(f, "inflight_requests", "gauge", "Requests received and not yet completed.", (uint64_t)t->inflight);
    one_u(f, "accept_queue", "gauge", "Connections waiting in the listening sockets' accept queues.",
          accept_queue);
    one_u(f, "worker_restarts_total", "counter", "Workers replaced after a crash.", t->restarts);
    one_u(f, "recovery_quarantined_records", "gauge", "Records recovery set aside at this start.",
          t->quarantined);
    one_u(f, "requests_total", "counter", "Requests answered.", t->requests);
    one_u(f, "connections_accepted_total", "counter", "Connections accepted.", t->accepted);
    one_u(f, "http_received_bytes_total", "counter", "Request bytes received (as HTTP/1 text, above TLS).",
          t->bytes_rx);
    one_u(f, "http_sent_bytes_total", "counter", "Response bytes sent (above TLS).", t->bytes_tx);
    family(f, "http_errors_total", "counter", "Error responses by status class.");
    fprintf(f, "l3kv_http_errors_total{class=\"4xx\"} %" PRIu64 "\n", t->err4xx);
    fprintf(f, "l3kv_http_errors_total{class=\"5xx\"} %" PRIu64 "\n", t->err5xx);
}

#define LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* Per-slot figures, labelled worker="<slot>", for the slots the JSON lists too. */
static void workers(FILE *f, const l3_obs_t *o, bool with_pids)
{
    static const struct {
        const char *name, *type, *help;
        int kind; /* 0: the 64-bit word at off; 1: running (0/1); 2: pid */
        size_t off;
    } fams[] = {
        {"worker_up", "gauge", "1 while a worker runs in the slot (0 empty or retiring).", 1, 0},
        {"worker_active_connections", "gauge", "Open connections of the slot's worker.", 0,
         offsetof(l3_obs_slot_t, os_active_conns)},
        {"worker_connections_accepted_total", "counter", "Connections the slot's workers accepted.", 0,
         offsetof(l3_obs_slot_t, os_accepted)},
        {"worker_requests_total", "counter", "Requests the slot's workers answered.", 0,
         offsetof(l3_obs_slot_t, os_requests)},
        {"worker_slot_restarts_total", "counter", "Times the slot's worker was replaced after a crash.", 0,
         offsetof(l3_obs_slot_t, os_restarts)},
        {"worker_pid", "gauge", "Process id of the slot's worker (admin scope only).", 2, 0},
    };
    for (unsigned k = 0; k < sizeof(fams) / sizeof(fams[0]); k++) {
        if (fams[k].kind == 2 && !with_pids)
            continue;
        family(f, fams[k].name, fams[k].type, fams[k].help);
        for (uint32_t i = 0; i < o->nslots; i++) {
            const l3_obs_slot_t *s = &o->slots[i];
            uint32_t st = LD(&s->os_state);
            if (st == L3_OBS_SLOT_EMPTY && LD(&s->os_accepted) == 0)
                continue;
            int64_t v;
            if (fams[k].kind == 1)
                v = st == L3_OBS_SLOT_RUNNING;
            else if (fams[k].kind == 2)
                v = LD(&s->os_pid);
            else
                v = LD((const int64_t *)((const char *)s + fams[k].off));
            fprintf(f, "l3kv_%s{worker=\"%u\"} %" PRId64 "\n", fams[k].name, i, v < 0 ? 0 : v);
        }
    }
}

/* Families of one unlabelled sample each, the uint64_t at `off` in the struct at `base`. */
typedef struct {
    const char *name, *type, *help;
    size_t off;
} u64_fam_t;

static void u64_fams(FILE *f, const u64_fam_t *fams, size_t n, const void *base)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, (const char *)base + fams[i].off, sizeof v);
        one_u(f, fams[i].name, fams[i].type, fams[i].help, v);
    }
}

static void store_figs(FILE *f, const l3_obs_store_figs_t *s)
{
    static const u64_fam_t fams[] = {
        {"store_keys", "gauge", "Documents in the store.", offsetof(l3_obs_store_figs_t, keys)},
        {"store_document_bytes", "gauge", "Bytes of the stored documents.",
         offsetof(l3_obs_store_figs_t, doc_bytes)},
        {"store_heap_bytes", "gauge", "Size of the arena's document heap.",
         offsetof(l3_obs_store_figs_t, heap_bytes)},
        {"store_used_bytes", "gauge", "Heap bytes in use.", offsetof(l3_obs_store_figs_t, used_bytes)},
        {"store_free_bytes", "gauge", "Heap bytes free.", offsetof(l3_obs_store_figs_t, free_bytes)},
        {"store_largest_free_bytes", "gauge", "Largest free heap block.",
         offsetof(l3_obs_store_figs_t, largest_free)},
    };
    u64_fams(f, fams, sizeof(fams) / sizeof(fams[0]), s);
    one_d(f, "store_fragmentation_ratio", "gauge", "Heap fragmentation (0..1).", s->fragmentation);
    one_u(f, "store_last_lsn", "gauge", "Newest log sequence number applied.", s->last_lsn);
}

static void wal_figs(FILE *f, const l3_wal_stats_t *w, bool with_pids)
{
    one_u(f, "wal_pending_bytes", "gauge", "WAL ring bytes appended and not yet durable.",
          w->head > w->durable ? w->head - w->durable : 0);
    static const u64_fam_t fams[] = {
        {"wal_records_total", "counter", "WAL records written.", offsetof(l3_wal_stats_t, records)},
        {"wal_aborted_total", "counter", "WAL reservations aborted.", offsetof(l3_wal_stats_t, aborted)},
        {"wal_written_bytes_total", "counter", "Bytes the WAL writer wrote.",
         offsetof(l3_wal_stats_t, bytes)},
        {"wal_fsyncs_total", "counter", "fdatasync calls of the WAL writer.",
         offsetof(l3_wal_stats_t, fsyncs)},
        {"wal_batches_total", "counter", "Write batches of the WAL writer.",
         offsetof(l3_wal_stats_t, batches)},
        {"wal_write_errors_total", "counter", "Failed WAL writes.", offsetof(l3_wal_stats_t, write_errors)},
        {"wal_segment", "gauge", "Sequence number of the current WAL segment.",
         offsetof(l3_wal_stats_t, seg_seq)},
        {"wal_disk_bytes", "gauge", "Bytes in live WAL segments.", offsetof(l3_wal_stats_t, disk_bytes)},
    };
    u64_fams(f, fams, sizeof(fams) / sizeof(fams[0]), w);
    one_u(f, "wal_error", "gauge", "The WAL's sticky error as a positive errno (0 none, 28 ENOSPC, 5 EIO).",
          (uint64_t)(w->error < 0 ? -w->error : w->error));
    one_u(f, "wal_disk_full", "gauge", "1 while the WAL cannot write because the disk is full.",
          w->error == -ENOSPC || w->error == ENOSPC);
    one_u(f, "wal_failstop", "gauge", "1 once the WAL stopped taking writes (fail-stop).", w->failstop != 0);
    if (with_pids)
        one_u(f, "wal_writer_pid", "gauge", "Process id of the WAL writer (admin scope only).",
              (uint64_t)(w->writer_pid > 0 ? w->writer_pid : 0));
}

static void changes_figs(FILE *f, const l3_obs_changes_t *c)
{
    one_u(f, "changes_watchers", "gauge", "Open change-feed watchers.", c->watchers);
    one_u(f, "changes_events_sent_total", "counter", "Change-feed events sent to watchers.",
          c->events_sent_total);
    one_u(f, "changes_resets_total", "counter", "Watchers reset for falling behind.", c->resets_total);
    one_u(f, "changes_retained_bytes", "gauge",
          "WAL segment bytes kept past the last checkpoint for the feed.", c->retained_bytes);
}

static void repl_figs(FILE *f, const l3_obs_repl_t *r)
{
    family(f, "replication_info", "gauge",
           "Always 1; the node's replication role and follower state are labels.");
    fprintf(f, "l3kv_replication_info{role=\"%s\",state=\"%s\"} 1\n", r->role,
            r->primary ? r->state : "none");
    if (r->primary == NULL)
        return;
    one_u(f, "replication_lag_records", "gauge", "Primary LSNs not yet applied by this replica.",
          r->lag_records);
    one_u(f, "replication_lag_ms", "gauge",
          "Milliseconds since this replica was last caught up (0: caught up).", r->lag_ms);
    one_u(f, "replication_bootstraps_total", "counter", "Full copies from the primary's backup.",
          r->bootstraps_total);
    one_u(f, "replication_applied_total", "counter", "Changes of the primary's feed applied.",
          r->applied_total);
}

static void autoscale_figs(FILE *f, const l3_obs_t *o)
{
    l3_obs_as_t a;
    int rc = l3_obs_as_read(o, &a);
    one_u(f, "autoscale_enabled", "gauge", "1 if the autoscaler runs.", rc == 0 && a.as_enabled);
    if (rc != 0)
        return;
    one_u(f, "autoscale_target_workers", "gauge", "Workers the last autoscaler tick asked for.", a.as_target);
    one_d(f, "autoscale_queue_depth", "gauge", "Measured queue depth (requests).", a.as_depth);
    one_d(f, "autoscale_estimate", "gauge", "Filtered queue depth (requests).", a.as_estimate);
    one_d(f, "autoscale_prediction", "gauge", "Forecast queue depth at the horizon (requests).",
          a.as_predicted);
    one_u(f, "autoscale_scale_ups_total", "counter", "Scale-up decisions.", a.as_ups);
    one_u(f, "autoscale_scale_downs_total", "counter", "Scale-down decisions.", a.as_downs);
}

int l3_obs_render_prom(const l3_obs_t *o, const char *version, uint64_t accept_queue,
                       const l3_obs_store_figs_t *store, const l3_wal_stats_t *wal,
                       const l3_obs_changes_t *changes, const l3_obs_repl_t *repl, bool with_pids, char **ret,
                       size_t *ret_len)
{
    static l3_obs_totals_t t; /* ~41 KiB, off the stack */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return -ENOMEM;
    l3_obs_totals(o, &t);
    system_figs(f, &t, version, accept_queue);
    histograms(f, &t);
    workers(f, o, with_pids);
    if (store != NULL)
        store_figs(f, store);
    if (wal != NULL)
        wal_figs(f, wal, with_pids);
    if (changes != NULL)
        changes_figs(f, changes);
    if (repl != NULL)
        repl_figs(f, repl);
    autoscale_figs(f, o);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || buf == NULL) {
        free(buf);
        return -ENOMEM;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}
