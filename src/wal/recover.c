/* SPDX-License-Identifier: MIT */
/*
 * recover.c - the start-up recovery sequence (snapshot, then WAL) and the checkpoint
 * sequence (rotate, snapshot, commit), composed from snapshot.c, replay.c and ring.c.
 * Recovery runs in the supervisor before any other process exists; checkpoints in the
 * checkpointer process while workers and the writer run (docs/wal.md section 6 proves the
 * fuzzy snapshot correct).
 *
 * Recovery never comes up silently with less than the disk promised: segments that a
 * checkpoint deleted while the snapshot that covered them is gone are reported and refused
 * (unless the caller accepts the loss), and a record that is intact but cannot be applied
 * is set aside in the quarantine (quarantine.c) instead of stopping the start, unless the
 * caller asked for strict recovery.
 */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "l3kv/error.h"
#include "wal-int.h"

typedef struct {
    l3_wal_replay_fn fn;
    void *ctx;
    uint64_t max_lsn;
    const l3_wal_recover_opts_t *o;
    l3_wal_recover_report_t *rep;
    unsigned source;
    int cb_failed; /* the callback (or the quarantine) stopped the current phase */
} track_t;

/* Errors that say nothing about the record (memory, arena space, I/O): never quarantined,
 * recovery stops and the operator fixes the cause. Everything else is the record's fault. */
static int resource_error(int rc)
{
    return rc == -ENOMEM || rc == -ENOSPC || rc == -ENOBUFS || rc == -EIO || rc == -EAGAIN || rc == -EINTR;
}

static void note_failed(track_t *t, const l3_wal_rec_t *rec, int rc)
{
    l3_wal_recover_report_t *r = t->rep;
    if (r->failed_rc != 0)
        return;
    r->failed_rc = rc;
    r->failed_source = t->source;
    r->failed_lsn = rec->lsn;
    r->failed_op = rec->op;
    r->failed_klen = rec->klen;
    size_t n = L3_MIN((size_t)rec->klen, sizeof r->failed_key - 1);
    memcpy(r->failed_key, rec->key, n);
    r->failed_key[n] = 0;
}

static int track(void *ctx, const l3_wal_rec_t *rec)
{
    track_t *t = ctx;
    if (rec->lsn > t->max_lsn)
        t->max_lsn = rec->lsn;
    int rc = t->fn ? t->fn(t->ctx, rec) : 0;
    if (rc >= 0)
        return rc;
    if (!resource_error(rc)) {
        note_failed(t, rec, rc);
        if (!t->o->strict && t->o->quarantine_dir != NULL) {
            char name[sizeof t->rep->quarantine_first];
            int q = l3_wal_quarantine_put(t->o->quarantine_dir, t->source, rc, rec, name, sizeof name);
            if (q == 0) {
                if (t->rep->quarantined++ == 0)
                    memcpy(t->rep->quarantine_first, name, sizeof name);
                return 1; /* counted as skipped */
            }
            rc = q;
        }
    }
    t->cb_failed = 1;
    return rc;
}

/* 1 if "<segment seq>.corrupt-*" exists: the segment was set aside whole by an earlier
 * recovery, which reported the loss then. */
static int set_aside_before(const char *wal_path, uint64_t seq)
{
    char name[4200];
    if (l3_wal__seg_name(name, sizeof name, wal_path, seq) < 0)
        return 0;
    strcat(name, ".corrupt-*");
    glob_t g;
    int found = glob(name, GLOB_NOSORT, NULL, &g) == 0 && g.gl_pathc > 0;
    globfree(&g);
    return found;
}

/* Segments [from, first present >= from) that the data needs but that are gone (a
 * checkpoint deleted them; the snapshot that covered them is not the one loaded). Leading
 * segments an earlier recovery set aside are accounted for (at most GAP_ASIDE_MAX). */
#define GAP_ASIDE_MAX 64u
static int find_gap(const char *wal_path, uint64_t from, l3_wal_recover_report_t *rep)
{
    uint64_t *seqs = NULL, first = 0;
    int n = l3_wal__list_segments(wal_path, &seqs);
    if (n < 0)
        return n == -ENOENT ? 0 : n;
    for (int i = 0; i < n && first == 0; i++)
        if (seqs[i] >= from)
            first = seqs[i];
    free(seqs);
    uint64_t s = from;
    while (first != 0 && s < first && s - from < GAP_ASIDE_MAX && set_aside_before(wal_path, s))
        s++;
    if (first == 0 || s >= first)
        return 0;
    rep->missing_from = s;
    rep->missing_to = first;
    return 1;
}

static void copy_report(l3_wal_recover_report_t *dst, const l3_wal_recover_report_t *src)
{
    if (dst)
        *dst = *src;
}

int l3_wal_recover_ex(const char *wal_path, const char *snap_path, const l3_wal_recover_opts_t *opts,
                      l3_wal_replay_fn fn, void *ctx, l3_wal_recover_report_t *ret_report)
{
    static const l3_wal_recover_opts_t strict = {.strict = 1};
    l3_wal_recover_report_t rep;
    memset(&rep, 0, sizeof rep);
    track_t t = {
        .fn = fn, .ctx = ctx, .o = opts ? opts : &strict, .rep = &rep, .source = L3_WAL_QUAR_SNAPSHOT};
    uint64_t from = 1;
    int rc = snap_path ? l3_wal_snapshot_load(snap_path, track, &t, &rep.snap) : -ENOENT;
    if (rc < 0 && t.cb_failed) {
        copy_report(ret_report, &rep);
        return rc;
    }
    if (rc == 0) {
        rep.have_snapshot = 1;
        from = L3_MAX(rep.snap.wal_seq, (uint64_t)1);
        if (rep.snap.lsn > t.max_lsn)
            t.max_lsn = rep.snap.lsn;
    } else if (rc == -EBADMSG || rc == L3_ECORRUPT || rc == -ENODATA || rc == -ESTALE) {
        /* nothing was delivered (the load verifies first); safe only if no segment was deleted */
        if ((rc = find_gap(wal_path, 1, &rep)) != 0) {
            rep.missing_snapshot = 2;
            copy_report(ret_report, &rep);
            if (rc < 0 || !t.o->accept_data_loss)
                return rc < 0 ? rc : L3_ECORRUPT;
        }
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
    if (rep.missing_from == 0 && (rc = find_gap(wal_path, from, &rep)) != 0) {
        rep.missing_snapshot = rep.have_snapshot ? 3 : 1;
        if (rc < 0 || !t.o->accept_data_loss) {
            copy_report(ret_report, &rep);
            return rc < 0 ? rc : -ENOTRECOVERABLE;
        }
    }
    t.source = L3_WAL_QUAR_WAL;
    rc = l3_wal_replay_from(wal_path, from, track, &t, &rep.wal);
    rep.max_lsn = t.max_lsn;
    copy_report(ret_report, &rep);
    return rc < 0 ? rc : 0;
}

int l3_wal_recover(const char *wal_path, const char *snap_path, l3_wal_replay_fn fn, void *ctx,
                   l3_wal_recover_report_t *ret_report)
{
    return l3_wal_recover_ex(wal_path, snap_path, NULL, fn, ctx, ret_report);
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
