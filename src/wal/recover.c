/* SPDX-License-Identifier: MIT */
/*
 * recover.c - the start-up recovery sequence (snapshot, then WAL) and the checkpoint
 * sequence (rotate, snapshot, commit), composed from snapshot.c, replay.c and ring.c.
 * Recovery runs in the supervisor before any other process exists; checkpoints in the
 * checkpointer process while workers and the writer run (docs/wal.md section 6 proves the
 * fuzzy snapshot correct).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "l3kv/error.h"
#include "wal-int.h"

typedef struct {
    l3_wal_replay_fn fn;
    void *ctx;
    uint64_t max_lsn;
} track_t;

static int track(void *ctx, const l3_wal_rec_t *rec)
{
    track_t *t = ctx;
    if (rec->lsn > t->max_lsn)
        t->max_lsn = rec->lsn;
    return t->fn ? t->fn(t->ctx, rec) : 0;
}

int l3_wal_recover(const char *wal_path, const char *snap_path, l3_wal_replay_fn fn, void *ctx,
                   l3_wal_recover_report_t *ret_report)
{
    l3_wal_recover_report_t rep;
    memset(&rep, 0, sizeof rep);
    track_t t = {.fn = fn, .ctx = ctx};
    uint64_t from = 0;
    int rc = snap_path ? l3_wal_snapshot_load(snap_path, track, &t, &rep.snap) : -ENOENT;
    if (rc == 0) {
        rep.have_snapshot = 1;
        from = rep.snap.wal_seq;
        if (rep.snap.lsn > t.max_lsn)
            t.max_lsn = rep.snap.lsn;
    } else if (rc == -EBADMSG || rc == L3_ECORRUPT || rc == -ENODATA || rc == -ESTALE) {
        /* nothing was delivered (the load verifies first); safe only if no segment was deleted */
        uint64_t *seqs = NULL;
        int n = l3_wal__list_segments(wal_path, &seqs);
        int complete = n <= 0 || seqs[0] <= 1;
        free(seqs);
        if (!complete)
            return L3_ECORRUPT;
        char aside[sizeof rep.snap_aside];
        snprintf(aside, sizeof aside, "%.480s.corrupt-%llu", snap_path,
                 (unsigned long long)(l3_wall_ns() / 1000000000u));
        rc = l3_wal_shim.rename(snap_path, aside);
        if (rc < 0)
            return rc;
        memcpy(rep.snap_aside, aside, L3_MIN(strlen(aside) + 1, sizeof rep.snap_aside - 1));
    } else if (rc != -ENOENT) {
        return rc;
    }
    rc = l3_wal_replay_from(wal_path, from, track, &t, &rep.wal);
    if (rc < 0)
        return rc;
    rep.max_lsn = t.max_lsn;
    if (ret_report)
        *ret_report = rep;
    return 0;
}

int l3_wal_checkpoint(l3_wal_ring_t *r, const char *snap_path, uint64_t lsn, l3_wal_scan_fn scan, void *ctx,
                      int timeout_ms)
{
    uint64_t seq;
    int rc = l3_wal_checkpoint_begin(r, timeout_ms, &seq);
    if (rc < 0)
        return rc;
    l3_wal_snap_writer_t *w;
    rc = l3_wal_snapshot_begin(snap_path, seq, lsn, &w);
    if (rc < 0)
        return rc;
    rc = scan(ctx, w);
    if (rc < 0) {
        l3_wal_snapshot_abort(w);
        return rc;
    }
    rc = l3_wal_snapshot_commit(w);
    if (rc < 0)
        return rc;
    l3_wal_checkpoint_commit(r, seq);
    return 0;
}
