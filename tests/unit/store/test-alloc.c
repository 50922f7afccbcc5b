/* SPDX-License-Identifier: MIT */
/*
 * test-alloc.c - the arena allocator on its own (src/store/alloc.c through its internal
 * interface): random allocations and frees of 1 B .. 2 MB against a model that fills
 * every block with its own pattern (overlap or corruption shows as a changed pattern),
 * structural checks along the way, full coalescing back to one extent at the end, and
 * fragmentation statistics on a deliberately fragmented heap.
 */
#include <inttypes.h>

#include "sth.h"
#include "store-int.h"

typedef struct {
    uint64_t off;
    uint64_t len;
    uint8_t pat;
} blk_t;

static int structural;

static void count_structural(void *ctx, const char *line)
{
    (void)ctx;
    /* blocks allocated here are referenced by no index: only count other problems */
    if (strstr(line, "referenced by nothing") || strstr(line, "leaked blocks") || strstr(line, "checked "))
        return;
    fprintf(stderr, "  %s\n", line);
    structural++;
}

static bool pattern_ok(l3_store_t *st, const blk_t *b)
{
    const uint8_t *p = st->base + b->off;
    for (uint64_t i = 0; i < b->len; i++)
        if (p[i] != (uint8_t)(b->pat + i))
            return false;
    return true;
}

int main(void)
{
    uint64_t rs = t_seed();
    l3_store_t *st = sth_create(96 << 20, 4, 0);
    l3_store_stats_t s0, s;
    l3_store_stats(st, &s0);
    CHECK_EQ_INT(s0.used_blocks, 0);
    CHECK_EQ_INT(s0.free_blocks, 1);
    CHECK_EQ_INT(s0.largest_free, s0.free_bytes);

    static blk_t live[4096];
    int n = 0, enospc = 0, bad = 0;
    for (int it = 0; it < 30000; it++) {
        bool do_alloc = n == 0 || (n < 4096 && t_rand(&rs) % 100 < 55);
        if (do_alloc) {
            uint64_t r = t_rand(&rs) % 1000;
            uint64_t len = r < 700   ? 1 + t_rand(&rs) % 200
                           : r < 950 ? 1 + t_rand(&rs) % 8000
                                     : 1 + t_rand(&rs) % (2u << 20);
            uint64_t off, cap;
            int rc = l3_store__alloc(st, len, &off, &cap);
            if (rc == -ENOSPC) {
                enospc++;
                continue;
            }
            CHECK_EQ_INT(rc, 0);
            if (rc < 0)
                break;
            CHECK(cap >= len && (off & 15) == 0);
            blk_t *b = &live[n++];
            b->off = off;
            b->len = len;
            b->pat = (uint8_t)t_rand(&rs);
            uint8_t *p = st->base + off;
            for (uint64_t i = 0; i < len; i++)
                p[i] = (uint8_t)(b->pat + i);
        } else {
            int i = (int)(t_rand(&rs) % (uint64_t)n);
            if (!pattern_ok(st, &live[i]))
                bad++;
            l3_store__free_now(st, live[i].off);
            live[i] = live[--n];
        }
        if (it % 5000 == 0) {
            structural = 0;
            l3_store_check(st, 0, count_structural, NULL);
            CHECK_EQ_INT(structural, 0);
            l3_store_stats(st, &s);
            CHECK_EQ_INT(s.used_blocks, n);
        }
    }
    CHECK_EQ_INT(bad, 0);
    for (int i = 0; i < n; i++) {
        if (!pattern_ok(st, &live[i]))
            bad++;
        l3_store__free_now(st, live[i].off);
    }
    CHECK_EQ_INT(bad, 0);
    l3_store_stats(st, &s);
    CHECK_EQ_INT(s.used_blocks, 0);
    CHECK_EQ_INT(s.used_bytes, 0);
    CHECK_EQ_INT(s.free_blocks, 1); /* everything coalesced back */
    CHECK_EQ_INT(s.free_bytes, s0.free_bytes);
    CHECK(s.fragmentation == 0.0);
    fprintf(stderr, "random phase: %d ENOSPC\n", enospc);

    /* fragment on purpose: 1 MiB blocks until full, free every other one */
    int m = 0;
    uint64_t off, cap;
    static uint64_t mb[256];
    while (m < 256 && l3_store__alloc(st, 1 << 20, &off, &cap) == 0)
        mb[m++] = off;
    CHECK(m > 40);
    CHECK_EQ_INT(l3_store__alloc(st, 1 << 20, &off, &cap), -ENOSPC);
    l3_store_stats(st, &s);
    CHECK(s.free_bytes < (1u << 20) + 64);
    for (int i = 0; i < m; i += 2)
        l3_store__free_now(st, mb[i]);
    l3_store_stats(st, &s);
    CHECK(s.free_bytes > (uint64_t)(m / 2) << 20);
    CHECK(s.largest_free < (2u << 20));
    CHECK(s.fragmentation > 0.9);
    fprintf(stderr,
            "fragmented: %" PRIu64 " free in %" PRIu64 " blocks, largest %" PRIu64 ", fragmentation %.3f\n",
            s.free_bytes, s.free_blocks, s.largest_free, s.fragmentation);
    CHECK_EQ_INT(l3_store__alloc(st, 2 << 20, &off, &cap), -ENOSPC); /* no 2 MiB extent */
    CHECK_EQ_INT(l3_store__alloc(st, 1 << 20, &off, &cap), 0);       /* a hole fits 1 MiB */
    l3_store__free_now(st, off);
    for (int i = 1; i < m; i += 2)
        l3_store__free_now(st, mb[i]);
    l3_store_stats(st, &s);
    CHECK_EQ_INT(s.free_blocks, 1);
    CHECK_EQ_INT(s.used_bytes, 0);
    structural = 0;
    CHECK_EQ_INT(l3_store_check(st, 0, count_structural, NULL), 0);
    sth_destroy(st);
    return t_done();
}
