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
 *   header (64 bytes; [0, 36) written by the supervisor before the first fork, then read-only)
 *     0   8  fh_magic       "L3FEEDST"
 *     8   4  fh_version     2 (2: fh_retain)
 *    12   4  fh_nslots      L3_SRV_MAX_WORKERS
 *    16   8  fh_prev_epoch  ring epoch of the previous run if it stopped gracefully, else 0
 *    24   8  fh_prev_end    that run's final ring head: its cursor resumes at position 0 here
 *    32   4  fh_crc         CRC32C of bytes [0, 32)
 *    36   4  zero
 *    40  24  fh_retain      written by the WAL writer (relaxed atomics, outside the CRC): what
 *                           it retains for the feed (l3_wal_retain_info_t: oldest cursor's
 *                           epoch and position, 0 = none; retained segment bytes)
 *
 * ---------------------------------------------------------------- feed position file
 * <data_dir>/feed.pos (64 bytes), written by the supervisor after a graceful stop in which
 * every ring byte became durable, read and removed at the next start (so a crash in
 * between leaves no file and old cursors are 410):
 *     0   8  fp_magic    "L3KVFPS1"
 *     8   4  fp_version  1
 *    12   4  zero
 *    16   8  fp_epoch    the stopped ring's epoch (l3_wal_feed_bounds)
 *    24   8  fp_end      its final head
 *    32   8  fp_wal_id   l3_wal_path_id of the WAL it belongs to
 *    40  20  zero
 *    60   4  fp_crc      CRC32C of bytes [0, 60)
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
#include "l3kv/wal.h"

#define L3_FEED_STATS_MAGIC 0x545344454546334cull /* "L3FEEDST" little-endian */
#define L3_FEED_STATS_VERSION 2u

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
    uint64_t fh_prev_epoch;
    uint64_t fh_prev_end;
    uint32_t fh_crc;
    uint32_t fh_resv;
    l3_wal_retain_info_t fh_retain;
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
/** Record the previous run's final cursor (supervisor, before the first fork). */
void l3_feed_stats_set_prev(l3_feed_stats_t *fs, uint64_t epoch, uint64_t end);
/** The previous run's final cursor: 1 with *epoch and *end, 0 when there is none. */
int l3_feed_stats_prev(const l3_feed_stats_t *fs, uint64_t *ret_epoch, uint64_t *ret_end);

/** Write the feed position file at path (tmp, fsync, rename, directory fsync). 0 or -errno. */
int l3_feed_pos_save(const char *path, uint64_t epoch, uint64_t end, uint64_t wal_id);
/** Read and remove the feed position file: 1 with the values when it is there, valid and
 *  of this WAL (an invalid one is removed too), 0 when there is none, -errno when it could
 *  not be removed (then the values must not be used). */
int l3_feed_pos_take(const char *path, uint64_t wal_id, uint64_t *ret_epoch, uint64_t *ret_end);

/** Sum the slots (all zero when fs is NULL or not valid). */
void l3_feed_stats_totals(const l3_feed_stats_t *fs, l3_feed_totals_t *ret);

#endif
