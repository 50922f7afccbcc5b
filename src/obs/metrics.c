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
 * The autoscaler section has one writer, the supervisor, and is read under a sequence
 * lock: sa_seq is odd while an update is in progress; a reader copies the words and keeps
 * the copy only if sa_seq was the same even value before and after. Every word is copied
 * with a relaxed atomic access, so there is no data race, only retried reads.
 *
 * Region layout (host byte order; the region is never written to disk):
 *
 *   offset  size  field
 *   0       8     oh_magic        "L3KVOBS1"
 *   8       4     oh_version      3 (2: autoscaler section added; 3: end-to-end and stage
 *                                 histograms in the slots)
 *   12      4     oh_nslots       number of worker slots
 *   16      4     oh_slot_size    sizeof(l3_obs_slot_t), a multiple of 64
 *   20      4     oh_nroutes      L3_OBS_R_MAX
 *   24      4     oh_nbuckets     L3_OBS_NBUCKETS
 *   28      4     oh_workers      live worker processes (supervisor writes)
 *   32      8     oh_start_wall_ns  supervisor start, ns since the epoch
 *   40      4     oh_as_offset    offset of the autoscaler section (64)
 *   44      4     oh_as_size      its size in bytes (2752)
 *   48      8     oh_quarantined  records recovery set aside in <data_dir>/quarantine at this
 *                                 start (supervisor writes before forking)
 *   56      8     reserved, zero
 *   64      2752  autoscaler section (struct l3_obs_as_shm):
 *                   +0     4  sa_magic    "L3AS" (0x5341334c little endian)
 *                   +4     4  sa_version  2
 *                   +8     8  sa_seq      sequence lock: 0 never published, odd = being written
 *                   +16 2712  sa_words    an l3_obs_as_t (obs.h) stored as 339 u64 words:
 *                     +0   u32 enabled, interval_ms, horizon_ms, min_workers, max_workers,
 *                          workers, target, nevents
 *                     +32  u64 wall_ms, backlog, inflight
 *                     +56  f64 depth, estimate, rate, predicted, predicted_var,
 *                          p00, p01, p11, innovation, capacity
 *                     +136 u64 steps, ups, downs, invalid
 *                     +168 u32 last_reason, pad
 *                     +176 char[96] last_text
 *                     +272 16 events of 152 bytes, newest first:
 *                          u64 wall_ms, mono_ms; u32 from, to, reason, pad;
 *                          f64 measured, estimate, predicted; char[96] text
 *                     +2704 f64 busy (queued inside connections, from worker CPU use)
 *                   +2728 24  padding to a multiple of 64, zero
 *   2816    nslots * oh_slot_size   l3_obs_slot_t[nslots] (see obs.h), 40832 bytes each:
 *                 +0    pid, state, active connections, accepted, bytes rx/tx, requests,
 *                       4xx, 5xx, restarts, in-flight requests, 6 reserved words (128 bytes)
 *                 +128  handler time, 9 routes x l3_obs_hist_t {count, ns_total, hist[240]}
 *                       (all u64, 1936 bytes each)
 *                 +17552 end-to-end time, 9 routes x l3_obs_hist_t
 *                 +34976 stages (document operation, serialisation, handler), 3 x l3_obs_hist_t
 *                 +40784 48 bytes padding to a multiple of 64, zero
 *
 * The region has no checksum: it is formatted at every start and never read back from a
 * previous run; oh_magic, oh_version and the size fields are what attach checks.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "l3kv/json.h"
#include "obs.h"

#define OBS_MAGIC 0x3153424f564b334cull /* "L3KVOBS1" little endian */
#define OBS_VERSION 3u
#define AS_MAGIC 0x5341334cu /* "L3AS" little endian */
#define AS_VERSION 2u
#define AS_WORDS (sizeof(l3_obs_as_t) / sizeof(uint64_t))
#define AS_READ_TRIES 1000

struct l3_obs_hdr {
    uint64_t oh_magic;
    uint32_t oh_version;
    uint32_t oh_nslots;
    uint32_t oh_slot_size;
    uint32_t oh_nroutes;
    uint32_t oh_nbuckets;
    uint32_t oh_workers;
    uint64_t oh_start_wall_ns;
    uint32_t oh_as_offset;
    uint32_t oh_as_size;
    uint64_t oh_quarantined;
    uint8_t oh_reserved[8];
};

struct l3_obs_as_shm {
    uint32_t sa_magic;
    uint32_t sa_version;
    uint64_t sa_seq;
    uint64_t sa_words[AS_WORDS];
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct l3_obs_hdr) == 64, "obs header is 64 bytes");
_Static_assert(sizeof(l3_obs_slot_t) % 64 == 0, "obs slots are cacheline multiples");
_Static_assert(offsetof(l3_obs_slot_t, os_route) == 128, "obs slot counters take 128 bytes");
_Static_assert(sizeof(l3_obs_hist_t) == 1936, "a histogram is 242 words");
_Static_assert(offsetof(l3_obs_slot_t, os_e2e) == 17552, "end-to-end histograms at +17552");
_Static_assert(offsetof(l3_obs_slot_t, os_stage) == 34976, "stage histograms at +34976");
_Static_assert(sizeof(l3_obs_slot_t) == 40832, "obs slot is 40832 bytes");
_Static_assert(sizeof(l3_obs_as_event_t) == 152, "autoscale event is 152 bytes");
_Static_assert(sizeof(l3_obs_as_t) == 2712 && sizeof(l3_obs_as_t) % 8 == 0, "autoscale state is 339 words");
_Static_assert(offsetof(l3_obs_as_t, as_events) == 272, "autoscale events start at +272");
_Static_assert(sizeof(struct l3_obs_as_shm) == 2752, "autoscale section is 2752 bytes");

#define AS_OFFSET sizeof(struct l3_obs_hdr)
#define SLOTS_OFFSET (AS_OFFSET + sizeof(struct l3_obs_as_shm))

static const char *const route_names[L3_OBS_R_MAX] = {
    [L3_OBS_R_GET] = "get",       [L3_OBS_R_PUT] = "put",         [L3_OBS_R_DELETE] = "delete",
    [L3_OBS_R_POST] = "post",     [L3_OBS_R_PATCH] = "patch",     [L3_OBS_R_LIST] = "list",
    [L3_OBS_R_HEALTH] = "health", [L3_OBS_R_METRICS] = "metrics", [L3_OBS_R_OTHER] = "other",
};

static const char *const stage_names[L3_OBS_S_MAX] = {
    [L3_OBS_S_DOCOP] = "document_op",
    [L3_OBS_S_SERIALIZE] = "serialize",
    [L3_OBS_S_HANDLER] = "handler",
};

const char *l3_obs_route_name(l3_obs_route_t r)
{
    return (unsigned)r < L3_OBS_R_MAX ? route_names[r] : "?";
}

const char *l3_obs_stage_name(l3_obs_stage_t s)
{
    return (unsigned)s < L3_OBS_S_MAX ? stage_names[s] : "?";
}

size_t l3_obs_region_size(uint32_t nslots)
{
    size_t n = SLOTS_OFFSET + (size_t)nslots * sizeof(l3_obs_slot_t);
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
    h->oh_as_offset = (uint32_t)AS_OFFSET;
    h->oh_as_size = (uint32_t)sizeof(struct l3_obs_as_shm);
    struct l3_obs_as_shm *as = (struct l3_obs_as_shm *)((char *)base + AS_OFFSET);
    as->sa_magic = AS_MAGIC;
    as->sa_version = AS_VERSION;
    __atomic_store_n(&h->oh_magic, OBS_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

int l3_obs_attach(l3_obs_t *o, void *base, size_t len)
{
    struct l3_obs_hdr *h = base;
    if (base == NULL || len < sizeof(*h) || __atomic_load_n(&h->oh_magic, __ATOMIC_ACQUIRE) != OBS_MAGIC ||
        h->oh_version != OBS_VERSION || h->oh_slot_size != sizeof(l3_obs_slot_t) ||
        h->oh_nroutes != L3_OBS_R_MAX || h->oh_nbuckets != L3_OBS_NBUCKETS || h->oh_nslots == 0 ||
        h->oh_as_offset != AS_OFFSET || h->oh_as_size != sizeof(struct l3_obs_as_shm) ||
        len < l3_obs_region_size(h->oh_nslots))
        return -EBADMSG;
    struct l3_obs_as_shm *as = (struct l3_obs_as_shm *)((char *)base + AS_OFFSET);
    if (as->sa_magic != AS_MAGIC || as->sa_version != AS_VERSION)
        return -EBADMSG;
    o->hdr = h;
    o->as = as;
    o->slots = (l3_obs_slot_t *)((char *)base + SLOTS_OFFSET);
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

static void hist_add(l3_obs_hist_t *h, uint64_t ns)
{
    l3_obs_add(&h->rt_count, 1);
    l3_obs_add(&h->rt_ns_total, ns);
    l3_obs_add(&h->rt_hist[l3_obs_bucket(ns)], 1);
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
    hist_add(&s->os_route[route], handler_ns);
}

void l3_obs_record_e2e(l3_obs_slot_t *s, l3_obs_route_t route, uint64_t ns)
{
    if (s == NULL)
        return;
    hist_add(&s->os_e2e[(unsigned)route < L3_OBS_R_MAX ? route : L3_OBS_R_OTHER], ns);
}

void l3_obs_record_stage(l3_obs_slot_t *s, l3_obs_stage_t stage, uint64_t ns)
{
    if (s != NULL && (unsigned)stage < L3_OBS_S_MAX)
        hist_add(&s->os_stage[stage], ns);
}

void l3_obs_set_quarantined(const l3_obs_t *o, uint64_t n)
{
    __atomic_store_n(&o->hdr->oh_quarantined, n, __ATOMIC_RELAXED);
}

void l3_obs_set_workers(const l3_obs_t *o, uint32_t nworkers)
{
    __atomic_store_n(&o->hdr->oh_workers, nworkers, __ATOMIC_RELAXED);
}

void l3_obs_as_publish(const l3_obs_t *o, const l3_obs_as_t *st)
{
    uint64_t w[AS_WORDS];
    memcpy(w, st, sizeof(w));
    struct l3_obs_as_shm *as = o->as;
    uint64_t seq = __atomic_load_n(&as->sa_seq, __ATOMIC_RELAXED);
    if (seq & 1) /* a previous writer died mid-update; only the supervisor writes, so resume */
        seq++;
    __atomic_store_n(&as->sa_seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* the odd value is visible before any word */
    for (size_t i = 0; i < AS_WORDS; i++)
        __atomic_store_n(&as->sa_words[i], w[i], __ATOMIC_RELAXED);
    __atomic_store_n(&as->sa_seq, seq + 2, __ATOMIC_RELEASE);
}

int l3_obs_as_read(const l3_obs_t *o, l3_obs_as_t *ret)
{
    uint64_t w[AS_WORDS];
    const struct l3_obs_as_shm *as = o->as;
    for (int tries = 0; tries < AS_READ_TRIES; tries++) {
        uint64_t s1 = __atomic_load_n(&as->sa_seq, __ATOMIC_ACQUIRE);
        if (s1 == 0)
            return -ENOENT;
        if (s1 & 1) {
            if (tries >= 16)
                sched_yield(); /* the writer may have been preempted mid-update */
            continue;
        }
        for (size_t i = 0; i < AS_WORDS; i++)
            w[i] = __atomic_load_n(&as->sa_words[i], __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the words are read before the re-check */
        if (__atomic_load_n(&as->sa_seq, __ATOMIC_RELAXED) == s1) {
            memcpy(ret, w, sizeof(w));
            ret->as_last_text[L3_OBS_AS_TEXT - 1] = '\0';
            if (ret->as_nevents > L3_OBS_AS_EVENTS)
                ret->as_nevents = L3_OBS_AS_EVENTS;
            for (unsigned i = 0; i < L3_OBS_AS_EVENTS; i++)
                ret->as_events[i].ae_text[L3_OBS_AS_TEXT - 1] = '\0';
            return 0;
        }
    }
    return -EAGAIN;
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

/* Sum the histogram at byte offset `off` of every slot into *ret, with its quantiles. */
static void sum_hist(const l3_obs_t *o, size_t off, l3_obs_sum_t *ret)
{
    uint64_t count = 0;
    for (uint32_t i = 0; i < o->nslots; i++) {
        const l3_obs_hist_t *h = (const l3_obs_hist_t *)((const char *)&o->slots[i] + off);
        if (LD(&h->rt_count) == 0)
            continue;
        ret->ns_total += LD(&h->rt_ns_total);
        for (unsigned b = 0; b < L3_OBS_NBUCKETS; b++) {
            uint64_t v = LD(&h->rt_hist[b]);
            ret->hist[b] += v;
            count += v; /* count from the histogram itself so quantiles stay consistent */
        }
    }
    ret->count = count;
    ret->median_ns = l3_obs_quantile(ret->hist, count, 0.5);
    ret->p99_ns = l3_obs_quantile(ret->hist, count, 0.99);
}

void l3_obs_totals(const l3_obs_t *o, l3_obs_totals_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->workers = LD(&o->hdr->oh_workers);
    ret->start_wall_ns = o->hdr->oh_start_wall_ns;
    ret->quarantined = LD(&o->hdr->oh_quarantined);
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
        sum_hist(o, offsetof(l3_obs_slot_t, os_route) + r * sizeof(l3_obs_hist_t), &ret->route[r]);
        sum_hist(o, offsetof(l3_obs_slot_t, os_e2e) + r * sizeof(l3_obs_hist_t), &ret->e2e[r]);
    }
    for (unsigned st = 0; st < L3_OBS_S_MAX; st++)
        sum_hist(o, offsetof(l3_obs_slot_t, os_stage) + st * sizeof(l3_obs_hist_t), &ret->stage[st]);
}

uint64_t l3_obs_cumulative(const uint64_t *hist, uint64_t ret[L3_OBS_NLE + 1])
{
    uint64_t cum = 0;
    unsigned le = 0;
    for (unsigned i = 0; i < L3_OBS_NBUCKETS; i++) {
        uint64_t lo, hi;
        l3_obs_bucket_range(i, &lo, &hi);
        while (le < L3_OBS_NLE && lo >= l3_obs_le_ns(le)) /* bucket i starts at or above bound le */
            ret[le++] = cum;
        cum += hist[i];
    }
    while (le < L3_OBS_NLE)
        ret[le++] = cum;
    ret[L3_OBS_NLE] = cum;
    return cum;
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

/* A JSON number, or null for NaN/infinity. */
static void sb_num(sb_t *b, double v)
{
    if (isfinite(v))
        sb_printf(b, "%.6g", v);
    else
        sb_printf(b, "null");
}

/* A JSON string literal of the NUL-terminated s (the shared escaper, l3kv/json.h). */
static void sb_str(sb_t *b, const char *s)
{
    size_t n = strlen(s);
    char *tmp = malloc(L3_JSON_ESCAPED_MAX(n) + 1);
    if (tmp == NULL) {
        b->oom = 1;
        return;
    }
    char *e = l3_json_escape(tmp, s, n, 0);
    sb_printf(b, "\"%.*s\"", (int)(e - tmp), tmp);
    free(tmp);
}

static void render_autoscale(sb_t *b, const l3_obs_t *o, uint64_t now_wall_ns)
{
    l3_obs_as_t a;
    int rc = l3_obs_as_read(o, &a);
    if (rc < 0) {
        sb_printf(b, ",\"autoscale\":{\"enabled\":false,\"available\":false}");
        return;
    }
    uint64_t now_ms = now_wall_ns / 1000000u;
    sb_printf(b,
              ",\"autoscale\":{\"enabled\":%s,\"available\":true,\"interval_ms\":%u,\"horizon_ms\":%u"
              ",\"min_workers\":%u,\"max_workers\":%u,\"worker_capacity\":",
              a.as_enabled ? "true" : "false", a.as_interval_ms, a.as_horizon_ms, a.as_min_workers,
              a.as_max_workers);
    sb_num(b, a.as_capacity);
    sb_printf(b, ",\"workers\":%u,\"target_workers\":%u,\"last_tick_age_ms\":", a.as_workers, a.as_target);
    if (a.as_wall_ms == 0)
        sb_printf(b, "null");
    else
        sb_printf(b, "%" PRIu64, now_ms > a.as_wall_ms ? now_ms - a.as_wall_ms : 0);
    sb_printf(b,
              ",\"queue_depth\":{\"accept_backlog\":%" PRIu64 ",\"inflight\":%" PRIu64 ",\"in_connections\":",
              a.as_backlog, a.as_inflight);
    sb_num(b, a.as_busy);
    sb_printf(b, ",\"total\":");
    sb_num(b, a.as_depth);
    sb_printf(b, "},\"estimate\":");
    sb_num(b, a.as_estimate);
    sb_printf(b, ",\"rate\":");
    sb_num(b, a.as_rate);
    sb_printf(b, ",\"prediction\":");
    sb_num(b, a.as_predicted);
    sb_printf(b, ",\"prediction_variance\":");
    sb_num(b, a.as_predicted_var);
    sb_printf(b, ",\"covariance\":[[");
    sb_num(b, a.as_p00);
    sb_printf(b, ",");
    sb_num(b, a.as_p01);
    sb_printf(b, "],[");
    sb_num(b, a.as_p01);
    sb_printf(b, ",");
    sb_num(b, a.as_p11);
    sb_printf(b, "]],\"innovation\":");
    sb_num(b, a.as_innovation);
    sb_printf(b,
              ",\"steps_total\":%" PRIu64 ",\"scale_ups_total\":%" PRIu64 ",\"scale_downs_total\":%" PRIu64
              ",\"invalid_samples_total\":%" PRIu64 ",\"last_decision\":{\"reason_code\":%u,\"reason\":",
              a.as_steps, a.as_ups, a.as_downs, a.as_invalid, a.as_last_reason);
    sb_str(b, a.as_last_text);
    sb_printf(b, "},\"decisions\":[");
    for (uint32_t i = 0; i < a.as_nevents; i++) {
        const l3_obs_as_event_t *e = &a.as_events[i];
        sb_printf(b,
                  "%s{\"time_ms\":%" PRIu64 ",\"age_ms\":%" PRIu64 ",\"from\":%u,\"to\":%u,\"reason_code\":%u"
                  ",\"measured\":",
                  i ? "," : "", e->ae_wall_ms, now_ms > e->ae_wall_ms ? now_ms - e->ae_wall_ms : 0,
                  e->ae_from, e->ae_to, e->ae_reason);
        sb_num(b, e->ae_measured);
        sb_printf(b, ",\"estimate\":");
        sb_num(b, e->ae_estimate);
        sb_printf(b, ",\"prediction\":");
        sb_num(b, e->ae_predicted);
        sb_printf(b, ",\"reason\":");
        sb_str(b, e->ae_text);
        sb_printf(b, "}");
    }
    sb_printf(b, "]}");
}

/* The members of one summed histogram: count, mean, median, p99 and the non-empty buckets
 * as [lower_ns, upper_ns_exclusive, count] (no braces). */
static void render_sum(sb_t *b, const l3_obs_sum_t *h)
{
    sb_printf(b,
              "\"count\":%" PRIu64 ",\"mean_ns\":%" PRIu64 ",\"median_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64
              ",\"histogram\":[",
              h->count, h->count ? h->ns_total / h->count : 0, h->median_ns, h->p99_ns);
    int first = 1;
    for (unsigned i = 0; i < L3_OBS_NBUCKETS; i++) {
        if (h->hist[i] == 0)
            continue;
        uint64_t lo, hi;
        l3_obs_bucket_range(i, &lo, &hi);
        sb_printf(b, "%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", lo, hi, h->hist[i]);
        first = 0;
    }
    sb_printf(b, "]");
}

static void render_wal(sb_t *b, const l3_wal_stats_t *w)
{
    sb_printf(b,
              ",\"wal\":{\"head\":%" PRIu64 ",\"tail\":%" PRIu64 ",\"durable\":%" PRIu64
              ",\"pending_bytes\":%" PRIu64 ",\"records_total\":%" PRIu64 ",\"aborted_total\":%" PRIu64
              ",\"bytes_written_total\":%" PRIu64 ",\"fsyncs_total\":%" PRIu64 ",\"batches_total\":%" PRIu64
              ",\"write_errors_total\":%" PRIu64 ",\"segment\":%" PRIu64 ",\"segment_bytes\":%" PRIu64
              ",\"disk_bytes\":%" PRIu64 ",\"error\":%d,\"failstop\":%s,\"writer_pid\":%d}",
              w->head, w->tail, w->durable, w->head > w->durable ? w->head - w->durable : 0, w->records,
              w->aborted, w->bytes, w->fsyncs, w->batches, w->write_errors, w->seg_seq, w->seg_off,
              w->disk_bytes, w->error, w->failstop ? "true" : "false", (int)w->writer_pid);
}

/* "changes": the change feed (the cursor is 32 hex digits: nothing to escape) */
static void render_changes(sb_t *b, const l3_obs_changes_t *c)
{
    sb_printf(b,
              ",\"changes\":{\"watchers\":%" PRIu64 ",\"events_sent_total\":%" PRIu64
              ",\"resets_total\":%" PRIu64 ",\"oldest_cursor\":\"%.32s\",\"retained_bytes\":%" PRIu64 "}",
              c->watchers, c->events_sent_total, c->resets_total, c->oldest_cursor, c->retained_bytes);
}

static void render_repl(sb_t *b, const l3_obs_repl_t *r)
{
    sb_printf(b, ",\"replication\":{\"role\":\"%s\"", r->role);
    if (r->primary != NULL)
        sb_printf(b,
                  ",\"primary\":\"%s\",\"state\":\"%s\",\"lag_records\":%" PRIu64 ",\"lag_ms\":%" PRIu64
                  ",\"bootstraps\":%" PRIu64 ",\"bootstraps_total\":%" PRIu64 ",\"applied_total\":%" PRIu64,
                  r->primary, r->state, r->lag_records, r->lag_ms, r->bootstraps_total, r->bootstraps_total,
                  r->applied_total);
    sb_printf(b, "}");
}

int l3_obs_render_json(const l3_obs_t *o, const char *version, uint64_t accept_queue, const char *extra,
                       const l3_wal_stats_t *wal, const l3_obs_changes_t *changes, const l3_obs_repl_t *repl,
                       char **ret, size_t *ret_len)
{
    static l3_obs_totals_t t; /* ~41 KiB: kept off the stack; one thread per process renders */
    sb_t b;
    if (sb_init(&b, 4096) != 0)
        return -ENOMEM;
    l3_obs_totals(o, &t);
    uint64_t now = 0;
    {
        /* (not l3_wall_ns: this file also builds on its own, without src/base) */
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
    sb_printf(&b, "\"recovery\":{\"quarantined_records\":%" PRIu64 "},", t.quarantined);
    sb_printf(&b,
              "\"throughput\":{\"requests_total\":%" PRIu64 ",\"connections_accepted_total\":%" PRIu64
              ",\"bytes_received_total\":%" PRIu64 ",\"bytes_sent_total\":%" PRIu64
              ",\"http_errors_4xx\":%" PRIu64 ",\"http_errors_5xx\":%" PRIu64 "},",
              t.requests, t.accepted, t.bytes_rx, t.bytes_tx, t.err4xx, t.err5xx);
    sb_printf(&b, "\"handlers\":{");
    for (unsigned r = 0; r < L3_OBS_R_MAX; r++) {
        sb_printf(&b, "%s\"%s\":{", r ? "," : "", route_names[r]);
        render_sum(&b, &t.route[r]);
        sb_printf(&b, ",\"e2e\":{");
        render_sum(&b, &t.e2e[r]);
        sb_printf(&b, "}}");
    }
    sb_printf(&b, "},\"stages\":{");
    for (unsigned st = 0; st < L3_OBS_S_MAX; st++) {
        sb_printf(&b, "%s\"%s\":{", st ? "," : "", stage_names[st]);
        render_sum(&b, &t.stage[st]);
        sb_printf(&b, "}");
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
                  st == L3_OBS_SLOT_RUNNING    ? "running"
                  : st == L3_OBS_SLOT_RETIRING ? "retiring"
                                               : "empty",
                  LD(&s->os_active_conns), LD(&s->os_accepted), LD(&s->os_requests), LD(&s->os_restarts));
        first = 0;
    }
    sb_printf(&b, "]");
    if (extra != NULL)
        sb_printf(&b, ",\"store\":%s", extra);
    render_autoscale(&b, o, now);
    if (wal != NULL)
        render_wal(&b, wal);
    if (changes != NULL)
        render_changes(&b, changes);
    if (repl != NULL)
        render_repl(&b, repl);
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
              "\nworker_restarts_total %" PRIu64 "\ninflight_requests %" PRId64
              "\nrecovery_quarantined_records %" PRIu64 "\n",
              t.active_conns, t.workers, t.requests, t.accepted, t.bytes_rx, t.bytes_tx, t.err4xx, t.err5xx,
              t.restarts, t.inflight, t.quarantined);
    for (unsigned r = 0; r < L3_OBS_R_MAX; r++)
        sb_printf(&b, "handler_%s_count %" PRIu64 "\nhandler_%s_median_ns %" PRIu64 "\n", route_names[r],
                  t.route[r].count, route_names[r], t.route[r].median_ns);
    l3_obs_as_t a;
    if (l3_obs_as_read(o, &a) == 0)
        sb_printf(&b,
                  "autoscale_enabled %u\nautoscale_target_workers %u\nautoscale_accept_backlog %" PRIu64
                  "\nautoscale_inflight %" PRIu64 "\nautoscale_estimate %.6g\nautoscale_prediction %.6g\n"
                  "autoscale_scale_ups_total %" PRIu64 "\nautoscale_scale_downs_total %" PRIu64 "\n",
                  a.as_enabled, a.as_target, a.as_backlog, a.as_inflight,
                  isfinite(a.as_estimate) ? a.as_estimate : 0, isfinite(a.as_predicted) ? a.as_predicted : 0,
                  a.as_ups, a.as_downs);
    return sb_finish(&b, ret, ret_len);
}
