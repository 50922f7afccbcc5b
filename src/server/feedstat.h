/* SPDX-License-Identifier: MIT */
/*
 * feedstat.h - the change feed's counters in shared memory, one block per worker slot, so
 * that /metrics (served by any worker) shows the feed of every worker.
 *
 * One shared anonymous mapping created by the supervisor before the first fork. Each
 * worker writes only its own slot's block (relaxed atomics); readers sum the blocks.
 * A worker starting in a slot sets fs_watchers to 0 (the watchers of a dead predecessor
 * are gone) and keeps the totals, so they never go down while the server runs.
 *
 *   header (64 bytes)
 *     0   8  fh_magic    "L3FEEDST"
 *     8   4  fh_version  1
 *    12   4  fh_nslots   L3_SRV_MAX_WORKERS
 *    16   4  fh_crc      CRC32C of bytes [0, 16)
 *    20  44  zero
 *   slot block i at 64 + 64 * i (64 bytes, its own cache line)
 *     0   8  fs_watchers      open watchers (long polls waiting and streams)
 *     8   8  fs_events_total  changes sent
 *    16   8  fs_resets_total  streams ended by `event: reset`
 *    24  40  zero
 */
#ifndef L3KV_SRV_FEEDSTAT_H
#define L3KV_SRV_FEEDSTAT_H

#include <stdint.h>

#include "config.h"

#define L3_FEED_STATS_MAGIC 0x545344454546334cull /* "L3FEEDST" little-endian */
#define L3_FEED_STATS_VERSION 1u

typedef struct {
    int64_t fs_watchers;
    uint64_t fs_events_total;
    uint64_t fs_resets_total;
    uint64_t fs_resv[5];
} l3_feed_slot_stats_t;

typedef struct {
    uint64_t fh_magic;
    uint32_t fh_version;
    uint32_t fh_nslots;
    uint32_t fh_crc;
    uint8_t fh_resv[44];
    l3_feed_slot_stats_t fh_slot[L3_SRV_MAX_WORKERS];
} l3_feed_stats_t;

/** Sums over the slots. */
typedef struct {
    uint64_t watchers, events_sent, resets;
} l3_feed_totals_t;

/** Map a fresh block (before fork). NULL (errno) on failure. */
l3_feed_stats_t *l3_feed_stats_create(void);
/** The block of worker slot `slot`, or NULL when fs is NULL, not valid or slot out of range. */
l3_feed_slot_stats_t *l3_feed_stats_slot(l3_feed_stats_t *fs, uint32_t slot);
/** Sum the slots (all zero when fs is NULL or not valid). */
void l3_feed_stats_totals(const l3_feed_stats_t *fs, l3_feed_totals_t *ret);

#endif
