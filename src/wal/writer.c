/* SPDX-License-Identifier: MIT */
/*
 * writer.c - the WAL writer process: drains the ring in reservation order into segment
 * files, with io_uring only (writes and fdatasync/fsync), publishes the durable position,
 * rotates segments for checkpoints and deletes the ones a snapshot covers.
 *
 * Process: the dedicated writer (forked by the supervisor; restarted if it dies). It is the
 * only process that opens WAL segments for writing (S4 in docs/invariants.md).
 * Concurrency: single-threaded; talks to producers only through the ring's atomics
 * (ring.c). Sleeps on the rh_pub_seq futex when idle or holding a buffered batch for its
 * flush, or lingering after a write (wake-up protocol in ring.c); never spins.
 *
 * Segment state machine (per file):
 *
 *   seg_open_new: create(O_EXCL) -> header write -> fdatasync -> dir fsync
 *        |
 *        v
 *     ACTIVE --(batch write, short writes resubmitted)--> ACTIVE
 *        |   --(fdatasync ok: rh_durable = consumed position)
 *        |   --(write ENOSPC/EIO: rh_error set, retried with backoff; cleared on success)
 *        |   --(fdatasync failed)--> FAILSTOP (sticky: no more writes, no more acks)
 *        |
 *        +--(size >= segment_bytes, or checkpoint rotation)--> fdatasync -> CLOSED
 *   CLOSED --(checkpoint commit: seq < rh_delete_below, and not among the newest covered
 *             segments that fit opts.retain_bytes)--> unlink -> dir fsync
 *
 * The main loop (run_loop) takes these steps once per pass: step_segment (create the ACTIVE
 * segment), step_rotate (ACTIVE -> CLOSED), delete_covered, hold_batch (buffered mode: sleep
 * while the records may wait for their flush), then step_write (a batch) or
 * step_quiet (pads, a due fdatasync, the end of a stop, sleep); run() ends in the state the
 * loop reached (STOP, FAILSTOP or a failed stop).
 *
 * Invariants:
 *  W1 a record is in the file before rh_tail passes it (ring space is reused only then), so
 *     a writer crash loses nothing: the restarted writer truncates the segment to the
 *     committed length (rh_commit) and rewrites from the committed tail;
 *  W2 rh_durable is only moved to a position whose bytes were all written (full length,
 *     short writes completed) before a successful fdatasync was submitted;
 *  W3 a failed fdatasync is never retried-and-acknowledged: FAILSTOP;
 *  W4 a segment is closed with an fdatasync before the next one receives records, so a torn
 *     record can only be the last one of the last segment after a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "l3kv/error.h"
#include "l3kv/walfeed.h"
#include "wal-int.h"

#define RETRY_MS 100u /* backoff between retries of a failed write */
#define IDLE_MS 100u  /* longest sleep: bounds stop-flag latency */
/* buffered hold: after a write the writer keeps checking the ring once per flush interval
 * for this long (sleeping as "holding", so publishes do not wake it), then sleeps idle */
#define LINGER_NS (1000u * 1000000ull)

typedef struct {
    const l3_wal_writer_opts_t *o;
    l3_wal_ring_t *r;
    l3_wal_shm_t *sh;
    struct io_uring ur;
    int fd, dfd;
    char path[4096];
    uint64_t seg_seq, seg_off, salt;
    uint64_t cons; /* == committed tail */
    uint8_t *buf;
    size_t cap;
    int dirty;  /* bytes written since the last successful fdatasync */
    int linked; /* <wal_path> names the active segment (done at its first record) */
    uint64_t last_sync_ns;
    uint64_t hold_ns;   /* buffered hold: flush delay (flush_interval_ms), 0 = write at once */
    uint64_t oldest_ns; /* buffered hold: when the oldest record not yet synced was seen */
    uint64_t polled_ns; /* buffered hold: when a lingering sleep began with the ring empty */
    uint64_t wrote_ns;  /* when the last batch was written (the linger runs from it) */
    uint64_t stuck_pos, stuck_since;
    uint64_t seg_bytes, batch;
    uint64_t deleted_below; /* last rh_delete_below acted upon */
    unsigned abort_ms;
    l3_wal_fmap_t *fm; /* the change feed's position map (retain_bytes > 0), else NULL */
} wr_t;

static volatile sig_atomic_t sig_stop;
static void on_signal(int sig)
{
    (void)sig;
    sig_stop = 1;
}

static int stop_requested(const wr_t *w)
{
    return sig_stop || (w->o->stop && *w->o->stop);
}

/* ---------------------------------------------------------------- io_uring */

/* Submit what is queued (retried on EINTR / EAGAIN). */
static int ring_submit(wr_t *w)
{
    int rc;
    do {
        rc = io_uring_submit(&w->ur);
    } while (rc == -EINTR || rc == -EAGAIN);
    return rc < 0 ? rc : 0;
}

/* Wait until the completions named in `want` (bit 1 << user_data index) have arrived: each
 * result in res[index], *got collects the bits seen (in whichever order they come). */
static int ring_reap(wr_t *w, unsigned want, unsigned *got, int *res)
{
    while ((*got & want) != want) {
        struct io_uring_cqe *cqe;
        int rc = io_uring_wait_cqe(&w->ur, &cqe);
        if (rc == -EINTR || rc == -EAGAIN)
            continue;
        if (rc < 0)
            return rc;
        uint64_t idx = io_uring_cqe_get_data64(cqe);
        if (idx < 2) {
            res[idx] = cqe->res;
            *got |= 1u << idx;
        }
        io_uring_cqe_seen(&w->ur, cqe);
    }
    return 0;
}

/* Submit what is queued and wait for the completions named in `want` (as ring_reap). */
static int ring_run(wr_t *w, unsigned want, int *res)
{
    unsigned got = 0;
    int rc = ring_submit(w);
    return rc < 0 ? rc : ring_reap(w, want, &got, res);
}

static int uring_fsync(wr_t *w, int fd, int datasync);

/*
 * Write len bytes at file offset off; if sync, an fdatasync is linked after the final
 * write (group commit in one submission). Short writes are resubmitted for the remainder
 * before any fdatasync that must cover them (W2). Once all len bytes are in the file,
 * written(w, arg) runs (if given) - before the linked fdatasync has completed, so that the
 * ring space a batch held is free while the disk syncs. Returns 0, a negative write error
 * (retryable by the caller), or sets *ret_sync to the fdatasync result.
 */
static int write_all(wr_t *w, int fd, const uint8_t *buf, size_t len, uint64_t off, int sync, int *ret_sync,
                     void (*written)(wr_t *, void *), void *arg)
{
    size_t done = 0;
    if (ret_sync)
        *ret_sync = 0;
    while (done < len || (sync && len == 0)) {
        uint32_t chunk = (uint32_t)L3_MIN(len - done, (size_t)1 << 30);
        uint32_t sub = chunk ? l3_wal_shim.write_len(off + done, chunk) : 0;
        if (sub == 0 || sub > chunk)
            sub = chunk;
        int res[2] = {0, 0};
        if (chunk) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ur);
            io_uring_prep_write(sqe, fd, buf + done, sub, off + done);
            io_uring_sqe_set_data64(sqe, 0);
            /* link the sync only if this submission covers everything */
            if (sync && done + sub == len)
                sqe->flags |= IOSQE_IO_LINK;
        }
        int with_sync = sync && done + sub == len;
        if (with_sync) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ur);
            io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
            io_uring_sqe_set_data64(sqe, 1);
        }
        unsigned got = 0;
        int rc = ring_submit(w);
        if (rc < 0)
            return rc;
        if (chunk) {
            if ((rc = ring_reap(w, 1u, &got, res)) < 0)
                return rc;
            int wres = l3_wal_shim.io_result(L3_WAL_IO_WRITE, off + done, sub, res[0]);
            if (wres >= 0 && (uint32_t)wres < chunk)
                atomic_fetch_add_explicit(&w->sh->rh_st_short, 1, memory_order_relaxed);
            if (wres > 0)
                done += (uint32_t)wres;
            if (wres > 0 && done == len && written != NULL)
                written(w, arg);
            /* the linked sync's completion (-ECANCELED if the write fell short) */
            if (with_sync && (rc = ring_reap(w, 2u, &got, res)) < 0)
                return rc;
            if (wres == -EINTR || wres == -EAGAIN)
                continue;
            if (wres < 0)
                return wres;
            if (wres == 0)
                return -EIO; /* no progress at all: treat as an I/O error, retried later */
            if (done < len)
                continue; /* the linked sync (if any) was cancelled or does not count */
        } else if (with_sync && (rc = ring_reap(w, 2u, &got, res)) < 0) {
            return rc;
        }
        if (with_sync) {
            int sres = l3_wal_shim.io_result(L3_WAL_IO_FSYNC, off, (uint32_t)len, res[1]);
            if (sres == -ECANCELED || sres == -EINTR) /* the linked sync did not run: run it alone */
                sres = uring_fsync(w, fd, 1);
            else
                atomic_fetch_add_explicit(&w->sh->rh_st_fsyncs, 1, memory_order_relaxed);
            if (ret_sync)
                *ret_sync = sres;
        }
        break;
    }
    return 0;
}

static int uring_fsync(wr_t *w, int fd, int datasync)
{
    int res[2] = {0, 0};
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ur);
    io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
    io_uring_sqe_set_data64(sqe, 1);
    int rc = ring_run(w, 1u << 1, res);
    if (rc < 0)
        return rc;
    atomic_fetch_add_explicit(&w->sh->rh_st_fsyncs, 1, memory_order_relaxed);
    return l3_wal_shim.io_result(L3_WAL_IO_FSYNC, 0, 0, res[1]);
}

/* ---------------------------------------------------------------- shared state */

static void commit_progress(wr_t *w)
{
    l3_wal_shm_t *sh = w->sh;
    uint32_t idx = atomic_load(&sh->rh_commit_idx) & 1u;
    l3_wal_commit_t *c = &sh->rh_commit[idx ^ 1u];
    c->rc_tail = w->cons;
    c->rc_seg_seq = w->seg_seq;
    c->rc_seg_off = w->seg_off;
    c->rc_salt = w->salt;
    atomic_store_explicit(&sh->rh_commit_idx, idx ^ 1u, memory_order_release);
    uint64_t old = atomic_load(&sh->rh_tail);
    if (old != w->cons) {
        atomic_store(&sh->rh_tail, w->cons); /* seq_cst: pairs with rh_space_waiters */
        if (atomic_load(&sh->rh_space_waiters)) {
            atomic_fetch_add(&sh->rh_space_seq, 1);
            l3_wal__futex_wake(&sh->rh_space_seq);
        }
    }
}

#define wlog(w, severity, ...) l3_wal__log((w)->o->log, severity, __VA_ARGS__)

static void set_error(wr_t *w, int err)
{
    int old = atomic_exchange(&w->sh->rh_error, err);
    if (err && old != err) {
        wlog(w, L3_WAL_LOG_ERROR, "%s: %s", w->path, l3_strerror(err));
        l3_wal__notify_durable(w->r); /* waiters learn about the error */
    }
    if (!err && old)
        wlog(w, L3_WAL_LOG_INFO, "%s: writes resumed", w->path);
}

static void failstop(wr_t *w, int err)
{
    wlog(w, L3_WAL_LOG_ERROR, "fdatasync of %s failed (%s): no further acknowledgements", w->path,
         l3_strerror(err));
    atomic_store(&w->sh->rh_failstop, 1);
    atomic_store(&w->sh->rh_error, -EIO);
    l3_wal__notify_durable(w->r);
    l3_wal__futex_wake(&w->sh->rh_rotate_done);
}

static void publish_durable(wr_t *w, uint64_t pos)
{
    if (atomic_load(&w->sh->rh_durable) < pos) {
        atomic_store(&w->sh->rh_durable, pos);
        l3_wal__notify_durable(w->r);
    }
}

/* ---------------------------------------------------------------- segments */

/*
 * Point the symlink <wal_path> (e.g. "data.wal") at the active segment, so the configured
 * name opens the newest segment that holds records: the link moves when a segment gets
 * its first record (or at creation when the link is missing or dangling), so after a
 * restart it still names the log written before, not a new empty segment. Atomic
 * (symlink to a temporary name, rename over). A regular file of that name (not ours) is
 * left alone. Best effort: recovery never reads the link, it lists the numbered segments.
 */
static void link_current(wr_t *w)
{
    struct stat st;
    if (lstat(w->o->wal_path, &st) == 0 && !S_ISLNK(st.st_mode))
        return;
    const char *base = strrchr(w->path, '/');
    base = base ? base + 1 : w->path;
    char tmp[4200];
    int n = snprintf(tmp, sizeof tmp, "%s.link-tmp", w->o->wal_path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return;
    (void)unlink(tmp);
    if (symlink(base, tmp) == 0 && rename(tmp, w->o->wal_path) != 0)
        (void)unlink(tmp);
}

static int seg_open_new(wr_t *w, uint64_t seq)
{
    int fd = -EEXIST;
    for (int tries = 0; tries < 1000 && fd == -EEXIST; tries++, seq++) {
        int rc = l3_wal__seg_name(w->path, sizeof w->path, w->o->wal_path, seq);
        if (rc < 0)
            return rc;
        /* W1: announce the file before it exists (seg_off 0 = "being created"), so a
         * restarted writer removes a half-created segment instead of leaving a torn header */
        w->seg_seq = seq;
        w->seg_off = 0;
        commit_progress(w);
        fd = l3_wal_shim.open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, L3_WAL_FILE_MODE);
    }
    seq--;
    if (fd < 0)
        return fd;
    uint64_t salt;
    do
        l3_random_bytes(&salt, sizeof salt);
    while (salt == 0);
    uint8_t hdr[L3_WAL_SEG_HDR];
    l3_wal_seg_hdr_t h = {.salt = salt, .seq = seq, .ctime_ns = l3_wall_ns(), .ring_pos = w->cons};
    l3_wal_seg_hdr_encode(hdr, &h);
    struct stat lst;
    w->linked = 0;
    if (stat(w->o->wal_path, &lst) != 0) { /* no link yet, or it names a deleted segment */
        link_current(w);
        w->linked = 1;
    }
    int srs = 0;
    int rc = write_all(w, fd, hdr, sizeof hdr, 0, 1, &srs, NULL, NULL);
    if (rc == 0 && srs == 0)
        rc = uring_fsync(w, w->dfd, 0);
    else if (rc == 0)
        rc = srs;
    if (rc < 0) {
        l3_wal_shim.close(fd);
        l3_wal_shim.unlink(w->path);
        return rc;
    }
    /* reserve the segment's blocks without changing its size: an fdatasync after an append
     * then needs no block allocation (measured ~40% shorter on ext4). Best effort. */
    {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ur);
        int res[2] = {0, 0};
        io_uring_prep_fallocate(sqe, fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)w->seg_bytes);
        io_uring_sqe_set_data64(sqe, 0);
        (void)ring_run(w, 1u << 0, res);
    }
    w->fd = fd;
    w->seg_seq = seq;
    w->seg_off = L3_WAL_SEG_HDR;
    w->salt = salt;
    w->dirty = 0;
    l3_wal__fmap_open(w->fm, seq, salt, w->cons);
    atomic_fetch_add_explicit(&w->sh->rh_st_disk_bytes, L3_WAL_SEG_HDR, memory_order_relaxed);
    commit_progress(w);
    return 0;
}

/* Save the position maps of the closed segments ("<wal_path>.feedmap", format in
 * feedlog.c): temporary file, write and fdatasync, rename, directory fsync. Best effort: a
 * map that is not saved only makes the cursors in its segments 410 after a restart. */
static void fmap_save(wr_t *w)
{
    uint8_t *buf = NULL;
    int64_t n = l3_wal__fmap_encode(w->fm, &buf);
    char path[4200], tmp[4220];
    int srs = 0, rc = n < 0 ? (int)n : 0;
    snprintf(path, sizeof path, "%s.feedmap", w->o->wal_path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = rc < 0 ? rc : l3_wal_shim.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, L3_WAL_FILE_MODE);
    if (fd >= 0) {
        (void)fchmod(fd, L3_WAL_FILE_MODE);
        rc = write_all(w, fd, buf, (size_t)n, 0, 1, &srs, NULL, NULL);
        l3_wal_shim.close(fd);
        if (rc == 0)
            rc = srs;
        if (rc == 0)
            rc = l3_wal_shim.rename(tmp, path);
        if (rc == 0)
            rc = uring_fsync(w, w->dfd, 0);
        if (rc < 0)
            (void)l3_wal_shim.unlink(tmp);
    } else {
        rc = fd;
    }
    free(buf);
    if (rc < 0)
        wlog(w, L3_WAL_LOG_WARN, "cannot save %s (%s): feed cursors in its segments expire at a restart",
             path, l3_strerror(rc));
}

/* Close the active segment (W4). Returns 0 or the fdatasync error (caller fail-stops). */
static int seg_close(wr_t *w)
{
    if (w->fd < 0)
        return 0;
    if (w->dirty) {
        int rc = uring_fsync(w, w->fd, 1);
        if (rc < 0)
            return rc;
        w->dirty = 0;
        publish_durable(w, w->cons);
    }
    /* give back the blocks reserved past the end (seg_open_new's fallocate); the size
     * does not change, so this needs no sync */
    (void)l3_wal_shim.ftruncate(w->fd, (off_t)w->seg_off);
    l3_wal_shim.close(w->fd);
    w->fd = -1;
    if (w->fm != NULL) {
        l3_wal__fmap_close(w->fm, w->seg_off, w->cons);
        fmap_save(w);
    }
    return 0;
}

/* Covered segments (seq < below, not the active one) to delete: all but the newest ones whose
 * sizes sum to at most retain_bytes. seqs is ascending; sizes[i] = -1 when stat failed. */
static void pick_covered(const uint64_t *seqs, const int64_t *sizes, int n, uint64_t below, uint64_t cur,
                         uint64_t retain, uint8_t *del)
{
    uint64_t kept = 0;
    int full = 0;
    for (int i = n; i-- > 0;) {
        del[i] = 0;
        if (seqs[i] >= below || seqs[i] == cur || sizes[i] < 0)
            continue;
        if (!full && retain > 0 && kept + (uint64_t)sizes[i] <= retain) {
            kept += (uint64_t)sizes[i];
            continue;
        }
        full = 1; /* once one does not fit, every older one goes: the kept range has no gap */
        del[i] = 1;
    }
}

static int covered_sizes(wr_t *w, const uint64_t *seqs, int n, int64_t *sizes)
{
    for (int i = 0; i < n; i++) {
        char name[4096];
        struct stat st;
        sizes[i] = -1;
        if (l3_wal__seg_name(name, sizeof name, w->o->wal_path, seqs[i]) == 0 && stat(name, &st) == 0)
            sizes[i] = (int64_t)st.st_size;
    }
    return 0;
}

static void delete_covered(wr_t *w)
{
    uint64_t below = atomic_load(&w->sh->rh_delete_below);
    if (below <= w->deleted_below)
        return;
    w->deleted_below = below;
    uint64_t *seqs = NULL;
    int n = l3_wal__list_segments(w->o->wal_path, &seqs);
    int64_t *sizes = n > 0 ? calloc((size_t)n, sizeof *sizes) : NULL;
    uint8_t *del = n > 0 ? calloc((size_t)n, 1) : NULL;
    int removed = 0;
    uint64_t retained = 0;
    if (n > 0 && sizes && del) {
        covered_sizes(w, seqs, n, sizes);
        pick_covered(seqs, sizes, n, below, w->seg_seq, w->o->retain_bytes, del);
        for (int i = 0; i < n; i++)
            if (!del[i] && seqs[i] < below && seqs[i] != w->seg_seq && sizes[i] > 0)
                retained += (uint64_t)sizes[i];
    }
    for (int i = 0; del && i < n; i++) {
        char name[4096];
        if (!del[i] || l3_wal__seg_name(name, sizeof name, w->o->wal_path, seqs[i]) < 0)
            continue;
        if (l3_wal_shim.unlink(name) == 0) {
            uint64_t cur = atomic_load(&w->sh->rh_st_disk_bytes);
            uint64_t sz = (uint64_t)sizes[i];
            atomic_store(&w->sh->rh_st_disk_bytes, cur > sz ? cur - sz : 0);
            removed++;
        }
    }
    if (n > 0 && (!sizes || !del))
        w->deleted_below = 0; /* out of memory: retried at the next checkpoint or pass */
    else
        l3_wal__fmap_prune(w->fm, seqs, del, n, retained);
    free(sizes);
    free(del);
    free(seqs);
    struct stat lst;
    if (removed && stat(w->o->wal_path, &lst) != 0) { /* the link named a deleted segment */
        link_current(w);
        w->linked = 1;
    }
    if (removed)
        (void)uring_fsync(w, w->dfd, 0); /* a failed directory sync only delays the deletion */
}

/* ---------------------------------------------------------------- draining */

/*
 * For l3_wal_probe: mark the producer entry's slot as published (L3_WAL_POS_PUB) before
 * rh_tail passes it (commit_progress, a release store), so a probe that sees rh_tail beyond
 * the slot also sees the mark. The CAS expects exactly this slot's position: positions never
 * repeat, so it cannot mark anything else - not a reclaimed entry's new owner, not a later
 * call of the same producer (which has overwritten pe_pos; its older record is no longer in
 * doubt then).
 */
static void note_published(wr_t *w, const l3_wal_slot_t *s, uint64_t pos)
{
    uint32_t tag = s->rs_tag;
    unsigned idx = (tag & 0xffu) - 1u;
    if (tag == 0 || idx >= L3_WAL_PROD_MAX)
        return;
    uint64_t expect = pos + 1;
    atomic_compare_exchange_strong_explicit(&w->sh->rh_prod[idx].pe_pos, &expect, (pos + 1) | L3_WAL_POS_PUB,
                                            memory_order_relaxed, memory_order_relaxed);
}

/*
 * Copy published records from w->cons into the batch buffer (sealed with the segment's
 * salt), skipping pads and aborted slots. Returns the bytes gathered; *ret_end is the ring
 * position after the last slot taken; *ret_blocked is 1 if a reservation in progress stops it.
 */
static size_t gather(wr_t *w, uint64_t *ret_end, int *ret_blocked, uint64_t *ret_records,
                     uint64_t *ret_aborted)
{
    l3_wal_ring_t *r = w->r;
    uint64_t head = atomic_load_explicit(&w->sh->rh_head, memory_order_acquire);
    uint64_t pos = w->cons;
    size_t used = 0;
    *ret_blocked = 0;
    *ret_records = *ret_aborted = 0;
    while (pos < head) {
        l3_wal_slot_t *s = l3_wal__slot(r, pos);
        uint32_t st = atomic_load_explicit(&s->rs_state, memory_order_acquire);
        uint32_t slen = s->rs_len;
        if (L3_NEVER(slen < L3_WAL_SLOT_HDR || (slen & 15u) || slen > head - pos))
            l3_fatal("WAL ring corrupt at position %" PRIu64 " (slot length %u)", pos, slen);
        if (st == L3_WAL_SLOT_PUBLISHED) {
            uint8_t *rec = (uint8_t *)s + L3_WAL_SLOT_HDR;
            uint32_t rlen = l3_wal__ld32(rec);
            L3_ASSERT(rlen >= L3_WAL_REC_MIN && rlen <= slen - L3_WAL_SLOT_HDR);
            if (used + rlen > w->cap)
                break;
            if (used > 0 && (used + rlen > w->batch || w->seg_off + used + rlen > w->seg_bytes))
                break;
            memcpy(w->buf + used, rec, rlen);
            l3_wal__rec_seal(w->buf + used, rlen, w->salt);
            l3_wal__fmap_note(w->fm, w->seg_off + used, pos, rlen);
            note_published(w, s, pos);
            used += rlen;
            (*ret_records)++;
        } else if (st == L3_WAL_SLOT_RESERVED) {
            uint64_t now = l3_now_ns();
            if (w->stuck_pos != pos) {
                w->stuck_pos = pos;
                w->stuck_since = now;
            } else if (now - w->stuck_since >= (uint64_t)w->abort_ms * 1000000u) {
                uint32_t expect = L3_WAL_SLOT_RESERVED;
                if (l3_wal__pid_dead(s->rs_pid) &&
                    atomic_compare_exchange_strong(&s->rs_state, &expect, L3_WAL_SLOT_ABORTED)) {
                    wlog(w, L3_WAL_LOG_WARN, "reservation at %" PRIu64 " of dead pid %u aborted", pos,
                         s->rs_pid);
                    continue; /* re-read as ABORTED */
                }
                if (expect != L3_WAL_SLOT_RESERVED)
                    continue; /* published meanwhile */
                w->stuck_since = now;
            }
            *ret_blocked = 1;
            break;
        } else if (st == L3_WAL_SLOT_ABORTED) {
            (*ret_aborted)++;
        } else if (L3_NEVER(st != L3_WAL_SLOT_PAD)) {
            l3_fatal("WAL ring corrupt at position %" PRIu64 " (slot state %u)", pos, st);
        }
        pos += slen;
    }
    *ret_end = pos;
    return used;
}

/* ---------------------------------------------------------------- main */

static int setup(wr_t *w)
{
    int rc = io_uring_queue_init(w->o->queue_depth ? w->o->queue_depth : 8, &w->ur, 0);
    if (rc < 0)
        return rc;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", w->o->wal_path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    w->dfd = l3_wal_shim.open(dir, O_RDONLY | O_DIRECTORY, 0);
    if (w->dfd < 0) {
        io_uring_queue_exit(&w->ur);
        return w->dfd;
    }
    w->batch = w->o->batch_bytes ? w->o->batch_bytes : (1u << 20);
    w->cap = L3_MAX((size_t)w->batch, (size_t)w->sh->rh_max_rec);
    w->buf = malloc(w->cap);
    if (!w->buf) {
        l3_wal_shim.close(w->dfd);
        io_uring_queue_exit(&w->ur);
        return -ENOMEM;
    }
    return 0;
}

/* Give back the blocks a segment reserved past its end (ftruncate to its own size); the
 * committed segment of a previous writer is cut to its committed length below instead. */
static void release_reserved(const char *name, const struct stat *st)
{
    int fd = l3_wal_shim.open(name, O_WRONLY, 0);
    if (fd >= 0) {
        (void)l3_wal_shim.ftruncate(fd, st->st_size);
        l3_wal_shim.close(fd);
    }
}

/* Adopt the ring state a previous writer left (W1), or start fresh. Returns next seq. */
static int adopt(wr_t *w, uint64_t *ret_seq)
{
    const l3_wal_commit_t *c = l3_wal__commit(w->r);
    w->cons = c->rc_tail;
    uint64_t next = atomic_load(&w->sh->rh_next_seq);
    if (next == 0)
        next = 1;
    /* disk usage of the segments already present */
    uint64_t *seqs = NULL, total = 0;
    int n = l3_wal__list_segments(w->o->wal_path, &seqs);
    for (int i = 0; i < n; i++) {
        char name[4096];
        struct stat st;
        if (l3_wal__seg_name(name, sizeof name, w->o->wal_path, seqs[i]) == 0 && stat(name, &st) == 0) {
            total += (uint64_t)st.st_size;
            if ((uint64_t)st.st_blocks * 512u > (uint64_t)st.st_size + 65536u)
                release_reserved(name, &st); /* left by a writer that did not close it */
        }
        if (seqs[i] >= next)
            next = seqs[i] + 1;
    }
    free(seqs);
    if (c->rc_seg_seq) {
        char name[4096];
        int rc = l3_wal__seg_name(name, sizeof name, w->o->wal_path, c->rc_seg_seq);
        int fd = rc < 0 ? rc : l3_wal_shim.open(name, O_WRONLY, 0);
        if (fd >= 0 && c->rc_seg_off < L3_WAL_SEG_HDR) {
            /* the previous writer died while creating it: nothing of value inside */
            struct stat st;
            if (fstat(fd, &st) == 0)
                total -= L3_MIN(total, (uint64_t)st.st_size);
            l3_wal_shim.close(fd);
            rc = l3_wal_shim.unlink(name);
            if (rc == 0)
                rc = uring_fsync(w, w->dfd, 0);
            if (rc < 0)
                return rc;
            /* its number is created again: segment numbers stay gap-free (recovery reads a
             * gap as deleted segments) */
            if (next == c->rc_seg_seq + 1)
                next = c->rc_seg_seq;
        } else if (fd >= 0) {
            struct stat st;
            if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= c->rc_seg_off) {
                /* equal size too: the cut also gives back the blocks reserved past the end */
                total -= (uint64_t)st.st_size - c->rc_seg_off;
                rc = l3_wal_shim.ftruncate(fd, (off_t)c->rc_seg_off);
            }
            if (rc == 0)
                rc = uring_fsync(w, fd, 1);
            l3_wal_shim.close(fd);
            if (rc < 0)
                return rc;
        } else if (fd != -ENOENT) {
            return fd;
        }
        if (next < c->rc_seg_seq || (next == c->rc_seg_seq && c->rc_seg_off >= L3_WAL_SEG_HDR))
            next = c->rc_seg_seq + 1;
        /* everything below the committed tail is now in a synced file */
        publish_durable(w, w->cons);
    }
    atomic_store(&w->sh->rh_st_disk_bytes, total);
    *ret_seq = next;
    return 0;
}

/* On stop, a failing disk is retried for L3_WAL_STOP_RETRY_MS, then the writer gives up
 * (rather than hang the service's shutdown) and says how much it could not write. */
static int stop_gave_up(wr_t *w, uint64_t *since)
{
    uint64_t now = l3_now_ns();
    if (*since == 0)
        *since = now;
    if (now - *since <= (uint64_t)L3_WAL_STOP_RETRY_MS * 1000000u)
        return 0;
    wlog(w, L3_WAL_LOG_ERROR, "stopping with %" PRIu64 " ring bytes not written (%s)",
         atomic_load(&w->sh->rh_head) - w->cons, l3_strerror(atomic_load(&w->sh->rh_error)));
    return 1;
}

/* Sleep on rh_pub_seq unless there is work (the wake-up protocol in ring.c). hold: records
 * are waiting for their flush timer (L3_WAL_WS_HOLD): they are work only past the wake fill. */
static int sleep_until_work(wr_t *w, int timeout_ms, int hold)
{
    l3_wal_shm_t *sh = w->sh;
    uint32_t seq = atomic_load(&sh->rh_pub_seq);
    /* seq_cst: Dekker with publishers and waiters, then re-check everything they change */
    atomic_store(&sh->rh_writer_sleeping, hold ? L3_WAL_WS_HOLD : L3_WAL_WS_IDLE);
    uint64_t head = atomic_load(&sh->rh_head);
    int ready = 0, work = 0;
    if (head > w->cons) {
        l3_wal_slot_t *s = l3_wal__slot(w->r, w->cons);
        ready = atomic_load(&s->rs_state) != L3_WAL_SLOT_RESERVED;
    }
    if (ready && (!hold || head - w->cons >= l3_wal__wake_fill(w->r->size)))
        work = 1;
    if (hold && atomic_load(&sh->rh_space_waiters))
        work = 1;
    if (atomic_load(&sh->rh_rotate_req) != atomic_load(&sh->rh_rotate_done))
        work = 1;
    if (atomic_load(&sh->rh_sync_want) > atomic_load(&sh->rh_durable) && (w->dirty || ready))
        work = 1;
    if (!work && !stop_requested(w))
        l3_wal__futex_wait(&sh->rh_pub_seq, seq, timeout_ms);
    atomic_store(&sh->rh_writer_sleeping, L3_WAL_WS_AWAKE);
    return 0;
}

/*
 * Buffered mode with a flush interval: the ring already holds what an acknowledgement
 * promises (docs/wal.md 4), so records wait in it and are written, with the fdatasync
 * linked, once the oldest of them has waited flush_interval_ms - one submission per
 * interval instead of one per wake-up. Returns 1 (and the sleep in *ret_ms) while the
 * batch should wait: no stop, no durability request, no space waiter, no rotation, less
 * than the wake fill unwritten and the flush not yet due.
 */
static int hold_batch(wr_t *w, int stopping, uint64_t now, int *ret_ms)
{
    l3_wal_shm_t *sh = w->sh;
    if (w->hold_ns == 0 || stopping)
        return 0;
    uint64_t head = atomic_load(&sh->rh_head);
    if (head == w->cons)
        return 0;
    if (w->oldest_ns == 0) /* after a lingering sleep: published since it began at the latest */
        w->oldest_ns = w->polled_ns != 0 && w->polled_ns < now ? w->polled_ns : now;
    w->polled_ns = 0;
    uint64_t due = w->oldest_ns + w->hold_ns;
    if (now >= due || head - w->cons >= l3_wal__wake_fill(w->r->size) ||
        atomic_load(&sh->rh_sync_want) > atomic_load(&sh->rh_durable) || atomic_load(&sh->rh_space_waiters) ||
        atomic_load(&sh->rh_rotate_req) != atomic_load(&sh->rh_rotate_done))
        return 0;
    *ret_ms = (int)L3_MIN((due - now + 999999u) / 1000000u, (uint64_t)IDLE_MS);
    return 1;
}

/* When the unsynced bytes must be fdatasync'd (0: none, or no flush interval). */
static uint64_t sync_due(const wr_t *w)
{
    if (w->hold_ns)
        return w->oldest_ns ? w->oldest_ns + w->hold_ns : 0;
    if (!w->o->flush_interval_ms || !w->dirty)
        return 0;
    return w->last_sync_ns + (uint64_t)w->o->flush_interval_ms * 1000000u;
}

/* After a successful fdatasync that covered everything up to w->cons (gathered at `now`). */
static void synced(wr_t *w, uint64_t now)
{
    w->dirty = 0;
    w->last_sync_ns = l3_now_ns();
    /* records left behind were seen at `now` at the latest */
    w->oldest_ns = atomic_load(&w->sh->rh_head) > w->cons ? now : 0;
    publish_durable(w, w->cons);
}

/* ---------------------------------------------------------------- main loop
 * One pass of the loop walks the segment state machine of the file comment: make sure a
 * segment is ACTIVE (create one), rotate or close it when due, delete covered ones, then
 * write one batch (group commit), or else sync, finish the stop, or sleep. Each step says
 * how the loop goes on. */
typedef enum {
    STEP_ON = 0,   /* next step of this pass */
    STEP_AGAIN,    /* start the next pass */
    STEP_STOPPED,  /* graceful stop: the ring is drained */
    STEP_FAIL,     /* give up (rc set): cut to the committed length, exit with rc */
    STEP_FAILSTOP, /* W3 (rc set): idle until told to stop, exit -EIO */
} step_t;

/* One pass's view of the ring after gather. */
typedef struct {
    int stopping, blocked, want, periodic;
    uint64_t now, end, nrec, nab;
    size_t used;
    uint64_t *drain_since;
} pass_t;

/* ACTIVE? If no segment is open, create one (retried on ENOSPC/EIO). */
static step_t step_segment(wr_t *w, uint64_t *next_seq, int stopping, uint64_t *drain_since, int *rc)
{
    if (w->fd >= 0)
        return STEP_ON;
    *rc = seg_open_new(w, *next_seq);
    if (*rc < 0) {
        set_error(w, *rc);
        if (stopping && (atomic_load(&w->sh->rh_head) == w->cons || stop_gave_up(w, drain_since)))
            return STEP_FAIL;
        sleep_until_work(w, RETRY_MS, 0);
        return STEP_AGAIN;
    }
    *next_seq = w->seg_seq + 1;
    set_error(w, 0);
    return STEP_ON;
}

/* ACTIVE -> CLOSED on a checkpoint rotation or at segment_bytes. */
static step_t step_rotate(wr_t *w, int *rc)
{
    l3_wal_shm_t *sh = w->sh;
    uint32_t req = atomic_load(&sh->rh_rotate_req);
    int rotate_req = req != atomic_load(&sh->rh_rotate_done);
    if (!rotate_req && w->seg_off < w->seg_bytes)
        return STEP_ON;
    if (w->seg_off > L3_WAL_SEG_HDR || !rotate_req) {
        *rc = seg_close(w);
        return *rc < 0 ? STEP_FAILSTOP : STEP_AGAIN; /* the next pass opens the next segment */
    }
    /* the active segment is empty: it is the new one */
    atomic_store(&sh->rh_rotate_seq, w->seg_seq);
    atomic_store(&sh->rh_rotate_done, req);
    l3_wal__futex_wake(&sh->rh_rotate_done);
    return STEP_ON;
}

/* The batch of pass `arg` is in the file: its ring space is free (W1), the file is dirty. */
static void batch_written(wr_t *w, void *arg)
{
    const pass_t *p = arg;
    l3_wal_shm_t *sh = w->sh;
    w->seg_off += p->used;
    w->cons = p->end;
    w->dirty = 1;
    w->wrote_ns = p->now;
    atomic_fetch_add_explicit(&sh->rh_st_disk_bytes, p->used, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->rh_st_bytes, p->used, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->rh_st_records, p->nrec, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->rh_st_aborted, p->nab, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->rh_st_batches, 1, memory_order_relaxed);
    commit_progress(w);
}

/* Write the gathered batch, with a linked fdatasync when someone needs it (W1, W2). */
static step_t step_write(wr_t *w, const pass_t *p, int *rc)
{
    l3_wal_shm_t *sh = w->sh;
    int sync = w->o->durability == L3_WAL_FSYNC || p->want || p->periodic || p->stopping;
    int srs = 0;
    if (!w->linked) {
        link_current(w);
        w->linked = 1;
    }
    *rc = write_all(w, w->fd, w->buf, p->used, w->seg_off, sync, &srs, batch_written, (void *)p);
    if (*rc < 0) {
        atomic_fetch_add_explicit(&sh->rh_st_errors, 1, memory_order_relaxed);
        set_error(w, *rc);
        if (w->cons == p->end) /* written, the sync's completion lost: dirty, a later sync */
            return STEP_AGAIN;
        if (p->stopping && stop_gave_up(w, p->drain_since))
            return STEP_FAIL;
        sleep_until_work(w, RETRY_MS, 0);
        return STEP_AGAIN;
    }
    if (atomic_load(&sh->rh_error) && !atomic_load(&sh->rh_failstop))
        set_error(w, 0);
    if (sync) {
        if (srs < 0) {
            *rc = srs;
            return STEP_FAILSTOP;
        }
        synced(w, p->now);
    }
    return STEP_AGAIN;
}

/* Buffered hold, nothing unwritten, a batch written less than LINGER_NS ago: sleep as
 * "holding" for one flush interval (*tmo) instead of idle, so that the next records of a
 * trickle of writes wait for the writer's timer and no producer wakes it (the first record
 * after a quiet spell of LINGER_NS does). The records published meanwhile count from the
 * sleep's start (hold_batch): none waits longer than the flush interval. */
static int linger(const wr_t *w, const pass_t *p, int *tmo)
{
    if (w->hold_ns == 0 || p->stopping || p->blocked || w->dirty || w->wrote_ns == 0 ||
        p->now - w->wrote_ns >= LINGER_NS)
        return 0;
    uint64_t ms = (w->hold_ns + 999999u) / 1000000u;
    *tmo = (int)L3_MIN(ms, (uint64_t)IDLE_MS);
    return 1;
}

/* Nothing to write: skip pads and aborted slots, sync if due, finish a stop, or sleep. */
static step_t step_quiet(wr_t *w, const pass_t *p, int *rc)
{
    if (p->end > w->cons) { /* only pads / aborted slots */
        w->cons = p->end;
        atomic_fetch_add_explicit(&w->sh->rh_st_aborted, p->nab, memory_order_relaxed);
        commit_progress(w);
        if (!w->dirty)
            publish_durable(w, w->cons);
        return STEP_AGAIN;
    }
    if (w->dirty && (p->want || p->periodic || p->stopping)) {
        *rc = uring_fsync(w, w->fd, 1);
        if (*rc < 0)
            return STEP_FAILSTOP;
        synced(w, p->now);
        return STEP_AGAIN;
    }
    if (!w->dirty)
        publish_durable(w, w->cons);
    if (p->stopping) {
        uint64_t head = atomic_load(&w->sh->rh_head);
        if (head == w->cons)
            return STEP_STOPPED;
        /* a live producer still holds a reservation: wait, bounded */
        if (*p->drain_since == 0)
            *p->drain_since = p->now;
        if (p->now - *p->drain_since > (uint64_t)L3_WAL_STOP_RETRY_MS * 1000000u) {
            wlog(w, L3_WAL_LOG_ERROR, "stopping with %" PRIu64 " ring bytes of live producers",
                 head - w->cons);
            return STEP_STOPPED;
        }
    }
    int tmo = IDLE_MS;
    if (p->blocked)
        tmo = (int)L3_MIN(w->abort_ms, (unsigned)IDLE_MS);
    uint64_t due = w->dirty ? sync_due(w) : 0;
    if (due) {
        int ms = due > p->now ? (int)L3_MIN((due - p->now + 999999u) / 1000000u, (uint64_t)IDLE_MS) : 0;
        tmo = L3_MIN(tmo, ms);
    }
    if (p->stopping)
        tmo = L3_MIN(tmo, 10);
    if (linger(w, p, &tmo)) {
        w->polled_ns = p->now;
        sleep_until_work(w, tmo, 1);
        return STEP_AGAIN;
    }
    w->polled_ns = 0;
    sleep_until_work(w, tmo, 0);
    return STEP_AGAIN;
}

/* The loop until a stop (STEP_STOPPED) or a failure (STEP_FAIL / STEP_FAILSTOP, *rc set). */
static step_t run_loop(wr_t *w, uint64_t next_seq, int *rc)
{
    uint64_t drain_since = 0;
    w->last_sync_ns = l3_now_ns();
    for (;;) {
        int stopping = stop_requested(w);
        step_t st = step_segment(w, &next_seq, stopping, &drain_since, rc);
        if (st == STEP_ON)
            st = step_rotate(w, rc);
        if (st == STEP_AGAIN)
            continue;
        if (st != STEP_ON)
            return st;
        delete_covered(w);
        pass_t p = {.stopping = stopping, .drain_since = &drain_since};
        int hold_ms;
        if (hold_batch(w, stopping, l3_now_ns(), &hold_ms)) {
            sleep_until_work(w, hold_ms, 1);
            continue;
        }
        p.now = l3_now_ns();
        p.used = gather(w, &p.end, &p.blocked, &p.nrec, &p.nab);
        p.want = atomic_load(&w->sh->rh_sync_want) > atomic_load(&w->sh->rh_durable);
        uint64_t due = sync_due(w);
        p.periodic = w->hold_ns ? due && p.now >= due
                                : w->o->flush_interval_ms &&
                                      p.now - w->last_sync_ns >= (uint64_t)w->o->flush_interval_ms * 1000000u;
        st = p.used > 0 ? step_write(w, &p, rc) : step_quiet(w, &p, rc);
        if (st != STEP_AGAIN)
            return st;
    }
}

static void signals_install(struct sigaction *old_term, struct sigaction *old_int)
{
    sig_stop = 0;
    /* the supervisor forks us with both blocked so no early signal is lost */
    l3_stop_signals_install(on_signal, old_term, old_int);
}

/* Start (W1: adopt the previous writer's state), run, and end in the state the loop left:
 * a graceful stop makes the file and the directory durable; FAILSTOP idles until the stop. */
static int run(wr_t *w)
{
    l3_wal_shm_t *sh = w->sh;
    uint64_t next_seq = 1;
    int rc = 0;
    step_t st = STEP_FAILSTOP;
    if (!atomic_load(&sh->rh_failstop)) {
        rc = adopt(w, &next_seq);
        l3_wal__fmap_expect(w->fm, next_seq);
        /* a previous writer's segment that cannot be made durable: as a failed fdatasync
         * (W3), and no crash loop of restarts */
        st = rc < 0 ? STEP_FAILSTOP : run_loop(w, next_seq, &rc);
    }
    if (st == STEP_STOPPED) {
        rc = seg_close(w);
        if (rc < 0)
            st = STEP_FAILSTOP;
        else if ((rc = uring_fsync(w, w->dfd, 0)) < 0)
            st = STEP_FAIL;
        else
            return 0;
    }
    if (st == STEP_FAILSTOP) {
        if (!atomic_load(&sh->rh_failstop) || rc < 0)
            failstop(w, rc < 0 ? rc : -EIO);
        while (!stop_requested(w)) { /* nothing more is written or acknowledged */
            uint32_t seq = atomic_load(&sh->rh_pub_seq);
            l3_wal__futex_wait(&sh->rh_pub_seq, seq, (int)IDLE_MS);
        }
        return -EIO;
    }
    wlog(w, L3_WAL_LOG_ERROR, "%s: %s", w->path, l3_strerror(rc));
    /* leave no bytes of a failed write behind the committed length (best effort) */
    if (w->fd >= 0 && l3_wal_shim.ftruncate(w->fd, (off_t)w->seg_off) == 0)
        (void)uring_fsync(w, w->fd, 1);
    return rc;
}

/* The change feed's retained segments: the position map and the channel (feedlog.c). */
static void feed_start(wr_t *w)
{
    if (w->o->retain_bytes == 0)
        return;
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(w->r, &b);
    w->fm = l3_wal__fmap_new(w->o->wal_path, b.epoch, w->o->retain_info, w->o->log);
    if (w->fm == NULL || w->o->feed_sock == NULL)
        return;
    int rc = l3_wal__fmap_serve_start(w->fm, w->r, w->o->feed_sock);
    if (rc < 0)
        wlog(w, L3_WAL_LOG_WARN,
             "feed: cannot serve retained segments on %s (%s): feed cursors older than the ring are 410",
             w->o->feed_sock, l3_strerror(rc));
}

int l3_wal_writer_run(const l3_wal_writer_opts_t *opts)
{
    wr_t w0 = {0}, *w = &w0;
    w->o = opts;
    w->r = opts->ring;
    w->sh = opts->ring->sh;
    w->fd = -1;
    w->dfd = -1;
    w->stuck_pos = UINT64_MAX;
    w->seg_bytes = opts->segment_bytes ? opts->segment_bytes : (64ull << 20);
    w->abort_ms = opts->abort_check_ms ? opts->abort_check_ms : 50;
    if (opts->durability == L3_WAL_BUFFERED)
        w->hold_ns = (uint64_t)opts->flush_interval_ms * 1000000u;
    snprintf(w->path, sizeof w->path, "%s", opts->wal_path);

    struct sigaction old_term, old_int;
    if (opts->install_signals)
        signals_install(&old_term, &old_int);
    int rc = setup(w);
    if (rc == 0) {
        feed_start(w);
        atomic_store(&w->sh->rh_writer_pid, (uint32_t)getpid());
        rc = run(w);
        l3_wal__fmap_free(w->fm);
        if (w->fd >= 0)
            l3_wal_shim.close(w->fd);
        if (w->dfd >= 0)
            l3_wal_shim.close(w->dfd);
        free(w->buf);
        io_uring_queue_exit(&w->ur);
    }
    if (opts->install_signals) {
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGINT, &old_int, NULL);
    }
    return rc;
}
