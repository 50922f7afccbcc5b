/* SPDX-License-Identifier: MIT */
/*
 * feedstat.c - the change feed's shared counters (layout drawn in feedstat.h).
 * Process: created in the supervisor before the first fork; each worker writes its own
 * slot's block; any worker reads all of them for /metrics.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "feedstat.h"
#include "l3kv/base.h"

_Static_assert(sizeof(l3_feed_slot_stats_t) == 64, "feed stats slot layout");
_Static_assert(sizeof(l3_feed_stats_t) == 64 + 64 * L3_SRV_MAX_WORKERS, "feed stats layout");

static uint32_t hdr_crc(const l3_feed_stats_t *fs)
{
    return l3_crc32c(0, fs, 16);
}

l3_feed_stats_t *l3_feed_stats_create(void)
{
    l3_feed_stats_t *fs =
        mmap(NULL, sizeof(l3_feed_stats_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (fs == MAP_FAILED)
        return NULL;
    fs->fh_magic = L3_FEED_STATS_MAGIC;
    fs->fh_version = L3_FEED_STATS_VERSION;
    fs->fh_nslots = L3_SRV_MAX_WORKERS;
    fs->fh_crc = hdr_crc(fs);
    return fs;
}

static int valid(const l3_feed_stats_t *fs)
{
    return fs != NULL && fs->fh_magic == L3_FEED_STATS_MAGIC && fs->fh_version == L3_FEED_STATS_VERSION &&
           fs->fh_nslots == L3_SRV_MAX_WORKERS && fs->fh_crc == hdr_crc(fs);
}

l3_feed_slot_stats_t *l3_feed_stats_slot(l3_feed_stats_t *fs, uint32_t slot)
{
    if (!valid(fs) || slot >= fs->fh_nslots)
        return NULL;
    return &fs->fh_slot[slot];
}

void l3_feed_stats_totals(const l3_feed_stats_t *fs, l3_feed_totals_t *ret)
{
    memset(ret, 0, sizeof *ret);
    if (!valid(fs))
        return;
    for (uint32_t i = 0; i < fs->fh_nslots; i++) {
        const l3_feed_slot_stats_t *s = &fs->fh_slot[i];
        int64_t w = __atomic_load_n(&s->fs_watchers, __ATOMIC_RELAXED);
        ret->watchers += w > 0 ? (uint64_t)w : 0;
        ret->events_sent += __atomic_load_n(&s->fs_events_total, __ATOMIC_RELAXED);
        ret->resets += __atomic_load_n(&s->fs_resets_total, __ATOMIC_RELAXED);
    }
}
