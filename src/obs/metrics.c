/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - the shared metrics region: format, attach, per-request recording,
 * aggregation and the /metrics JSON and /kv/metrics text renderings.
 *
 * Processes: the supervisor formats the region before forking; every worker records
 * into its own slot and, when asked for /metrics, reads every slot.
 * Concurrency: one writer per slot (the worker in it; the supervisor only while no worker
 * occupies the slot, plus os_pid/os_state/os_restarts which only the supervisor writes).
 * Readers use relaxed loads and accept totals that are a few requests stale.
 * Invariant: counters only grow, except os_active_conns (a gauge).
 *
 * Region layout (host byte order; the region is never written to disk):
 *
 *   offset  size  field
 *   0       8     oh_magic        "L3KVOBS1"
 *   8       4     oh_version      1
 *   12      4     oh_nslots       number of worker slots
 *   16      4     oh_slot_size    sizeof(l3_obs_slot_t), a multiple of 64
 *   20      4     oh_nroutes      L3_OBS_R_MAX
 *   24      4     oh_nbuckets     L3_OBS_NBUCKETS
 *   28      4     oh_workers      live worker processes (supervisor writes)
 *   32      8     oh_start_wall_ns  supervisor start, ns since the epoch
 *   40      24    reserved, zero
 *   64      nslots * oh_slot_size   l3_obs_slot_t[nslots] (see obs.h): pid, state,
 *                 active connections, accepted, bytes rx/tx, requests, 4xx, 5xx,
 *                 restarts, in-flight requests, 6 reserved words, then per route {count, ns_total,
 *                 hist[240]} (all u64), padded to a multiple of 64 bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs.h"

#define OBS_MAGIC 0x3153424f564b334cull /* "L3KVOBS1" little endian */
#define OBS_VERSION 1u

struct l3_obs_hdr {
    uint64_t oh_magic;
    uint32_t oh_version;
    uint32_t oh_nslots;
    uint32_t oh_slot_size;
    uint32_t oh_nroutes;
    uint32_t oh_nbuckets;
    uint32_t oh_workers;
    uint64_t oh_start_wall_ns;
    uint8_t oh_reserved[24];
};

_Static_assert(sizeof(struct l3_obs_hdr) == 64, "obs header is 64 bytes");
_Static_assert(sizeof(l3_obs_slot_t) % 64 == 0, "obs slots are cacheline multiples");
_Static_assert(offsetof(l3_obs_slot_t, os_route) == 128, "obs slot counters take 128 bytes");

static const char *const route_names[L3_OBS_R_MAX] = {
    [L3_OBS_R_GET] = "get",         [L3_OBS_R_PUT] = "put",       [L3_OBS_R_DELETE] = "delete",
    [L3_OBS_R_POST] = "post",       [L3_OBS_R_PATCH] = "patch",   [L3_OBS_R_LIST] = "list",
    [L3_OBS_R_HEALTH] = "health",   [L3_OBS_R_METRICS] = "metrics", [L3_OBS_R_OTHER] = "other",
};

const char *l3_obs_route_name(l3_obs_route_t r)
{
    return (unsigned)r < L3_OBS_R_MAX ? route_names[r] : "?";
}

size_t l3_obs_region_size(uint32_t nslots)
{
    size_t n = sizeof(struct l3_obs_hdr) + (size_t)nslots * sizeof(l3_obs_slot_t);
    return (n + 4095) & ~(size_t)4095;
}

int l3_obs_format(void *base, size_t len, uint32_t nslots, uint64_t start_wall_ns)
{
    if (base == NULL || nslots == 0 || len < l3_obs_region_size(nslots))
        return -EINVAL;
    memset(base, 0, l3_obs_region_size(nslots));
    struct l3_obs_hdr *h = base;
    h->oh_version = OBS_VERSION;
    h->oh_nslots = nslots;
    h->oh_slot_size = sizeof(l3_obs_slot_t);
    h->oh_nroutes = L3_OBS_R_MAX;
    h->oh_nbuckets = L3_OBS_NBUCKETS;
    h->oh_start_wall_ns = start_wall_ns;
    __atomic_store_n(&h->oh_magic, OBS_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

int l3_obs_attach(l3_obs_t *o, void *base, size_t len)
{
    struct l3_obs_hdr *h = base;
    if (base == NULL || len < sizeof(*h) || __atomic_load_n(&h->oh_magic, __ATOMIC_ACQUIRE) != OBS_MAGIC ||
        h->oh_version != OBS_VERSION || h->oh_slot_size != sizeof(l3_obs_slot_t) ||
        h->oh_nroutes != L3_OBS_R_MAX || h->oh_nbuckets != L3_OBS_NBUCKETS || h->oh_nslots == 0 ||
        len < l3_obs_region_size(h->oh_nslots))
        return -EBADMSG;
    o->hdr = h;
    o->slots = (l3_obs_slot_t *)((char *)base + sizeof(*h));
    o->nslots = h->oh_nslots;
    return 0;
}

void l3_obs_bucket_range(unsigned idx, uint64_t *ret_lo, uint64_t *ret_hi)
{
    if (idx < 16) {
        *ret_lo = idx;
        *ret_hi = idx + 1;
        return;
    }
    if (idx >= L3_OBS_NBUCKETS - 1) {
        *ret_lo = (uint64_t)15 << 28; /* 2^31 + 7/8 of the last octave */
        *ret_hi = UINT64_C(1) << 32;
        if (idx == L3_OBS_NBUCKETS - 1)
            return;
    }
    unsigned e = 4 + (idx - 16) / 8, sub = (idx - 16) % 8;
    *ret_lo = (uint64_t)(8 + sub) << (e - 3);
    *ret_hi = (uint64_t)(9 + sub) << (e - 3);
}

void l3_obs_record(l3_obs_slot_t *s, l3_obs_route_t route, int status, uint64_t handler_ns)
{
    if (s == NULL)
        return;
    l3_obs_add(&s->os_requests, 1);
    if (status >= 400 && status < 500)
        l3_obs_add(&s->os_err4xx, 1);
    else if (status >= 500)
        l3_obs_add(&s->os_err5xx, 1);
    if ((unsigned)route >= L3_OBS_R_MAX)
        route = L3_OBS_R_OTHER;
    l3_obs_add(&s->os_route[route].rt_count, 1);
    l3_obs_add(&s->os_route[route].rt_ns_total, handler_ns);
    l3_obs_add(&s->os_route[route].rt_hist[l3_obs_bucket(handler_ns)], 1);
}

void l3_obs_set_workers(const l3_obs_t *o, uint32_t nworkers)
{
    __atomic_store_n(&o->hdr->oh_workers, nworkers, __ATOMIC_RELAXED);
}

uint64_t l3_obs_quantile(const uint64_t *hist, uint64_t count, double q)
{
    if (count == 0)
        return 0;
    double target = q * (double)count;
    uint64_t cum = 0;
    for (unsigned i = 0; i < L3_OBS_NBUCKETS; i++) {
        if (hist[i] == 0)
            continue;
        if ((double)(cum + hist[i]) >= target) {
            uint64_t lo, hi;
            l3_obs_bucket_range(i, &lo, &hi);
            double frac = (target - (double)cum) / (double)hist[i];
            if (frac < 0)
                frac = 0;
            return lo + (uint64_t)(frac * (double)(hi - lo));
        }
        cum += hist[i];
    }
    uint64_t lo, hi;
    l3_obs_bucket_range(L3_OBS_NBUCKETS - 1, &lo, &hi);
    return hi;
}

#define LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

void l3_obs_totals(const l3_obs_t *o, l3_obs_totals_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->workers = LD(&o->hdr->oh_workers);
    ret->start_wall_ns = o->hdr->oh_start_wall_ns;
    for (uint32_t i = 0; i < o->nslots; i++) {
        const l3_obs_slot_t *s = &o->slots[i];
        int64_t a = LD(&s->os_active_conns);
        if (a > 0)
            ret->active_conns += a;
        int64_t f = LD(&s->os_inflight);
        if (f > 0)
            ret->inflight += f;
        ret->accepted += LD(&s->os_accepted);
        ret->bytes_rx += LD(&s->os_bytes_rx);
        ret->bytes_tx += LD(&s->os_bytes_tx);
        ret->requests += LD(&s->os_requests);
        ret->err4xx += LD(&s->os_err4xx);
        ret->err5xx += LD(&s->os_err5xx);
        ret->restarts += LD(&s->os_restarts);
    }
    for (unsigned r = 0; r < L3_OBS_R_MAX; r++) {
        uint64_t *hist = ret->route[r].hist;
        uint64_t count = 0;
        for (uint32_t i = 0; i < o->nslots; i++) {
            const l3_obs_slot_t *s = &o->slots[i];
            if (LD(&s->os_route[r].rt_count) == 0)
                continue;
            ret->route[r].ns_total += LD(&s->os_route[r].rt_ns_total);
            for (unsigned b = 0; b < L3_OBS_NBUCKETS; b++) {
                uint64_t v = LD(&s->os_route[r].rt_hist[b]);
                hist[b] += v;
                count += v; /* count from the histogram itself so quantiles stay consistent */
            }
        }
        ret->route[r].count = count;
        ret->route[r].median_ns = l3_obs_quantile(hist, count, 0.5);
        ret->route[r].p99_ns = l3_obs_quantile(hist, count, 0.99);
    }
}

/* ---------------------------------------------------------------- rendering */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sb_t;

static void sb_printf(sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb_t *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = (b->cap + (size_t)n + 1) * 2;
        char *np = realloc(b->p, ncap);
        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

static int sb_init(sb_t *b, size_t cap)
{
    b->p = malloc(cap);
    b->len = 0;
    b->cap = cap;
    b->oom = b->p == NULL;
    return b->oom ? -ENOMEM : 0;
}

static int sb_finish(sb_t *b, char **ret, size_t *ret_len)
{
    if (b->oom) {
        free(b->p);
        return -ENOMEM;
    }
    *ret = b->p;
    *ret_len = b->len;
    return 0;
}

int l3_obs_render_json(const l3_obs_t *o, const char *version, uint64_t accept_queue, const char *extra, char **ret,
                       size_t *ret_len)
{
    static l3_obs_totals_t t; /* ~17 KiB: kept off the stack; one thread per process renders */
    sb_t b;
    if (sb_init(&b, 4096) != 0)
        return -ENOMEM;
    l3_obs_totals(o, &t);
    uint64_t now = 0;
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    double uptime = now > t.start_wall_ns ? (double)(now - t.start_wall_ns) / 1e9 : 0.0;
    sb_printf(&b,
              "{\"system\":{\"version\":\"%s\",\"uptime_s\":%.3f,\"active_connections\":%" PRId64
              ",\"thread_count\":%u,\"worker_processes\":%u,\"worker_restarts_total\":%" PRIu64
              ",\"inflight_requests\":%" PRId64 ",\"accept_queue\":%" PRIu64 "},",
              version, uptime, t.active_conns, t.workers, t.workers, t.restarts, t.inflight, accept_queue);
    sb_printf(&b,
              "\"throughput\":{\"requests_total\":%" PRIu64 ",\"connections_accepted_total\":%" PRIu64
              ",\"bytes_received_total\":%" PRIu64 ",\"bytes_sent_total\":%" PRIu64
              ",\"http_errors_4xx\":%" PRIu64 ",\"http_errors_5xx\":%" PRIu64 "},",
              t.requests, t.accepted, t.bytes_rx, t.bytes_tx, t.err4xx, t.err5xx);
    sb_printf(&b, "\"handlers\":{");
    for (unsigned r = 0; r < L3_OBS_R_MAX; r++) {
        sb_printf(&b,
                  "%s\"%s\":{\"count\":%" PRIu64 ",\"mean_ns\":%" PRIu64 ",\"median_ns\":%" PRIu64
                  ",\"p99_ns\":%" PRIu64 ",\"histogram\":[",
                  r ? "," : "", route_names[r], t.route[r].count,
                  t.route[r].count ? t.route[r].ns_total / t.route[r].count : 0, t.route[r].median_ns,
                  t.route[r].p99_ns);
        /* non-empty buckets as [lower_ns, upper_ns_exclusive, count] */
        int firstb = 1;
        for (unsigned i = 0; i < L3_OBS_NBUCKETS; i++) {
            if (t.route[r].hist[i] == 0)
                continue;
            uint64_t lo, hi;
            l3_obs_bucket_range(i, &lo, &hi);
            sb_printf(&b, "%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", firstb ? "" : ",", lo, hi, t.route[r].hist[i]);
            firstb = 0;
        }
        sb_printf(&b, "]}");
    }
    sb_printf(&b, "},\"workers\":[");
    int first = 1;
    for (uint32_t i = 0; i < o->nslots; i++) {
        const l3_obs_slot_t *s = &o->slots[i];
        uint32_t st = LD(&s->os_state);
        if (st == L3_OBS_SLOT_EMPTY && LD(&s->os_accepted) == 0)
            continue;
        sb_printf(&b,
                  "%s{\"slot\":%u,\"pid\":%d,\"state\":\"%s\",\"active_connections\":%" PRId64
                  ",\"connections_accepted_total\":%" PRIu64 ",\"requests_total\":%" PRIu64
                  ",\"restarts_total\":%" PRIu64 "}",
                  first ? "" : ",", i, (int)LD(&s->os_pid),
                  st == L3_OBS_SLOT_RUNNING ? "running" : st == L3_OBS_SLOT_RETIRING ? "retiring" : "empty",
                  LD(&s->os_active_conns), LD(&s->os_accepted), LD(&s->os_requests), LD(&s->os_restarts));
        first = 0;
    }
    sb_printf(&b, "]");
    if (extra != NULL)
        sb_printf(&b, ",\"store\":%s", extra);
    sb_printf(&b, "}\n");
    return sb_finish(&b, ret, ret_len);
}

int l3_obs_render_text(const l3_obs_t *o, char **ret, size_t *ret_len)
{
    static l3_obs_totals_t t;
    sb_t b;
    if (sb_init(&b, 2048) != 0)
        return -ENOMEM;
    l3_obs_totals(o, &t);
    sb_printf(&b,
              "active_connections %" PRId64 "\nthread_count %u\nrequests_total %" PRIu64
              "\nconnections_accepted_total %" PRIu64 "\nbytes_received_total %" PRIu64
              "\nbytes_sent_total %" PRIu64 "\nhttp_errors_4xx %" PRIu64 "\nhttp_errors_5xx %" PRIu64
              "\nworker_restarts_total %" PRIu64 "\ninflight_requests %" PRId64 "\n",
              t.active_conns, t.workers, t.requests, t.accepted, t.bytes_rx, t.bytes_tx, t.err4xx, t.err5xx,
              t.restarts, t.inflight);
    for (unsigned r = 0; r < L3_OBS_R_MAX; r++)
        sb_printf(&b, "handler_%s_count %" PRIu64 "\nhandler_%s_median_ns %" PRIu64 "\n", route_names[r],
                  t.route[r].count, route_names[r], t.route[r].median_ns);
    return sb_finish(&b, ret, ret_len);
}
