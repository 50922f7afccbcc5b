/* SPDX-License-Identifier: MIT */
/*
 * Metrics region (src/obs): the collapse of the log-linear duration buckets into the
 * Prometheus exposition's cumulative "le" buckets, the region's version check, and the
 * end-to-end and stage histograms as the totals, the JSON and the exposition show them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs.h"
#include "t.h"

/* Every le bound is a boundary of the log-linear buckets: one bucket ends there, the next
 * begins there. */
static void test_bounds_are_boundaries(void)
{
    for (unsigned i = 0; i < L3_OBS_NLE; i++) {
        uint64_t b = l3_obs_le_ns(i), lo, hi;
        unsigned k = l3_obs_bucket(b);
        l3_obs_bucket_range(k, &lo, &hi);
        CHECK(lo == b);
        CHECK(k > 0);
        l3_obs_bucket_range(k - 1, &lo, &hi);
        CHECK(hi == b);
        CHECK(l3_obs_bucket(b - 1) == k - 1);
        if (i > 0)
            CHECK(l3_obs_le_ns(i) == 2 * l3_obs_le_ns(i - 1));
    }
    CHECK(l3_obs_le_ns(0) == 256);
    CHECK(l3_obs_le_ns(L3_OBS_NLE - 1) == UINT64_C(1) << 31);
}

static uint64_t hist[L3_OBS_NBUCKETS];

/* Cumulative counts equal a direct count of the values below each bound. */
static void test_cumulative_matches_direct_count(void)
{
    static uint64_t vals[4096];
    size_t n = 0;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (unsigned i = 0; i < L3_OBS_NLE; i++) { /* the edges: bound - 1, bound, bound + 1 */
        vals[n++] = l3_obs_le_ns(i) - 1;
        vals[n++] = l3_obs_le_ns(i);
        vals[n++] = l3_obs_le_ns(i) + 1;
    }
    vals[n++] = 0;
    vals[n++] = 15;
    vals[n++] = 16;
    vals[n++] = UINT64_C(1) << 32;
    vals[n++] = UINT64_MAX;
    while (n < sizeof(vals) / sizeof(vals[0])) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        vals[n++] = x >> (x % 40 + 24); /* spread over 1 ns ... 2^40 ns */
    }
    memset(hist, 0, sizeof(hist));
    for (size_t j = 0; j < n; j++)
        hist[l3_obs_bucket(vals[j])]++;
    uint64_t cum[L3_OBS_NLE + 1];
    CHECK(l3_obs_cumulative(hist, cum) == n);
    CHECK(cum[L3_OBS_NLE] == n);
    for (unsigned i = 0; i < L3_OBS_NLE; i++) {
        uint64_t direct = 0;
        for (size_t j = 0; j < n; j++)
            direct += vals[j] < l3_obs_le_ns(i);
        CHECK_EQ_INT(cum[i], direct);
        if (i > 0)
            CHECK(cum[i] >= cum[i - 1]);
    }
    /* empty histogram: all zero */
    memset(hist, 0, sizeof(hist));
    CHECK(l3_obs_cumulative(hist, cum) == 0);
    for (unsigned i = 0; i <= L3_OBS_NLE; i++)
        CHECK(cum[i] == 0);
    /* one value per bucket: the bound at 2^k counts every bucket below it */
    for (unsigned b = 0; b < L3_OBS_NBUCKETS; b++)
        hist[b] = 1;
    l3_obs_cumulative(hist, cum);
    for (unsigned i = 0; i < L3_OBS_NLE; i++)
        CHECK_EQ_INT(cum[i], l3_obs_bucket(l3_obs_le_ns(i)));
    CHECK_EQ_INT(cum[L3_OBS_NLE], L3_OBS_NBUCKETS);
}

/* The region: format, attach, refuse a wrong version; e2e and stage histograms summed
 * over the slots and shown by the JSON and the exposition. */
static void test_region_and_renderings(void)
{
    size_t len = l3_obs_region_size(2);
    void *mem = aligned_alloc(4096, len);
    CHECK(mem != NULL);
    if (mem == NULL)
        return;
    memset(mem, 0, len);
    l3_obs_t o;
    CHECK(l3_obs_format(mem, len, 2, 0) == 0);
    CHECK(l3_obs_attach(&o, mem, len) == 0);
    uint32_t *version = (uint32_t *)((char *)mem + 8);
    CHECK_EQ_INT(*version, 3);
    *version = 2; /* a reader of the previous layout must not attach */
    CHECK(l3_obs_attach(&o, mem, len) != 0);
    *version = 3;
    CHECK(l3_obs_attach(&o, mem, len) == 0);
    l3_obs_record(l3_obs_slot(&o, 0), L3_OBS_R_PUT, 200, 1000);
    l3_obs_record_e2e(l3_obs_slot(&o, 0), L3_OBS_R_PUT, 3000000);
    l3_obs_record(l3_obs_slot(&o, 1), L3_OBS_R_PUT, 200, 2000);
    l3_obs_record_e2e(l3_obs_slot(&o, 1), L3_OBS_R_PUT, 5000000);
    l3_obs_record_stage(l3_obs_slot(&o, 1), L3_OBS_S_SERIALIZE, 700);
    l3_obs_record_stage(l3_obs_slot(&o, 1), L3_OBS_S_MAX, 700); /* out of range: ignored */
    static l3_obs_totals_t t;
    l3_obs_totals(&o, &t);
    CHECK_EQ_INT(t.route[L3_OBS_R_PUT].count, 2);
    CHECK_EQ_INT(t.e2e[L3_OBS_R_PUT].count, 2);
    CHECK_EQ_INT(t.e2e[L3_OBS_R_PUT].ns_total, 8000000);
    CHECK_EQ_INT(t.stage[L3_OBS_S_SERIALIZE].count, 1);
    CHECK_EQ_INT(t.stage[L3_OBS_S_DOCOP].count, 0);
    CHECK_EQ_INT(t.e2e[L3_OBS_R_GET].count, 0);
    char *out = NULL;
    size_t olen = 0;
    CHECK(l3_obs_render_json(&o, "t", 0, NULL, NULL, NULL, NULL, &out, &olen) == 0);
    CHECK(out != NULL && strstr(out, "\"put\":{\"count\":2,\"mean_ns\":1500,") != NULL);
    CHECK(out != NULL && strstr(out, "\"e2e\":{\"count\":2,\"mean_ns\":4000000,") != NULL);
    CHECK(out != NULL && strstr(out, "\"stages\":{\"document_op\":{\"count\":0,") != NULL);
    CHECK(out != NULL && strstr(out, "\"serialize\":{\"count\":1,\"mean_ns\":700,") != NULL);
    free(out);
    CHECK(l3_obs_render_prom(&o, "t\"1", 0, NULL, NULL, NULL, NULL, false, &out, &olen) == 0);
    CHECK(out != NULL && strlen(out) == olen);
    const char *want[] = {
        "l3kv_build_info{version=\"t\\\"1\"} 1\n",
        "l3kv_request_duration_seconds_bucket{route=\"put\",le=\"0.004194304\"} 1\n", /* 3 ms < 2^22 ns */
        "l3kv_request_duration_seconds_bucket{route=\"put\",le=\"0.008388608\"} 2\n",
        "l3kv_request_duration_seconds_bucket{route=\"put\",le=\"+Inf\"} 2\n",
        "l3kv_request_duration_seconds_sum{route=\"put\"} 0.008000000\n",
        "l3kv_request_duration_seconds_count{route=\"put\"} 2\n",
        "l3kv_handler_duration_seconds_bucket{route=\"put\",le=\"5.12e-07\"} 0\n",
        "l3kv_handler_duration_seconds_bucket{route=\"put\",le=\"1.024e-06\"} 1\n", /* 1000 ns */
        "l3kv_handler_duration_seconds_bucket{route=\"put\",le=\"2.048e-06\"} 2\n", /* 2000 ns */
        "l3kv_stage_duration_seconds_count{stage=\"serialize\"} 1\n",
        "l3kv_requests_total 2\n",
        "# TYPE l3kv_request_duration_seconds histogram\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        bool found = out != NULL && strstr(out, want[i]) != NULL;
        if (!found)
            fprintf(stderr, "missing: %s", want[i]);
        CHECK(found);
    }
    CHECK(out != NULL && strstr(out, "worker_pid") == NULL); /* no pids without the flag */
    free(out);
    free(mem);
}

int main(void)
{
    test_bounds_are_boundaries();
    test_cumulative_matches_direct_count();
    test_region_and_renderings();
    return t_done();
}
