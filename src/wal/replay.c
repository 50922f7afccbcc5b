/* SPDX-License-Identifier: MIT */
/*
 * replay.c - recovery: read the WAL segments in order, deliver every valid record, end the
 * log at the first record that fails a check and set the bad bytes aside.
 *
 * Process: the supervisor, at start, before the writer exists (so it is the only process
 * with the files open). Plain syscalls through the shim (no io_uring needed: nothing is
 * acknowledged from here). Single-threaded.
 *
 * Rules (docs/wal.md, "Recovery"):
 *  W1 segments are read in ascending sequence order; records within a segment in file order;
 *  W2 the first record whose length, magic, CRC or salt is wrong ends the whole log (later
 *     records could depend on the lost one), even if later segments look valid;
 *  W3 bad bytes are never deleted: the tail of the segment is copied to
 *     "<segment>.corrupt-<unix-seconds>" (fsync'd) before the live file is truncated to its
 *     valid prefix (fsync'd); later segments are renamed to the same pattern; the directory
 *     is fsync'd after;
 *  W5 when the disk is full the tail is kept in place behind an empty marker file instead
 *     of copied (see "in-place set-aside" below), so recovery never needs free space;
 *  W4 an empty segment (created, header never written) holds nothing and is removed; its
 *     sequence number is reused (next_seq does not count it), so the numbers stay gap-free
 *     and a gap always means deleted or lost segments (recover.c).
 *  W6 the records of a transaction group (L3_WAL_RF_TX, docs/wal.md 1.2) are held back
 *     until its TXLAST record and then delivered together; a group that another record,
 *     another group's TXFIRST or the end of the log interrupts is dropped whole, and so are
 *     TX records that follow no TXFIRST (the rest of a group whose first part an older,
 *     deleted segment held: the snapshot has its effect). Counted in rep.tx_dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "l3kv/error.h"
#include "wal-int.h"

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* Pick "<name>.corrupt-<secs>[.<n>]" that does not exist yet. */
static int aside_name(char *buf, size_t cap, const char *name)
{
    long secs = (long)(l3_wall_ns() / 1000000000u);
    for (int i = 0; i < 1000; i++) {
        int n = i ? snprintf(buf, cap, "%s.corrupt-%ld.%d", name, secs, i)
                  : snprintf(buf, cap, "%s.corrupt-%ld", name, secs);
        if (n < 0 || (size_t)n >= cap)
            return -ENAMETOOLONG;
        if (access(buf, F_OK) != 0 && errno == ENOENT)
            return 0;
    }
    return -EEXIST;
}

/* Copy [off, size) of the mapped file to an aside file, then truncate the live file (W3). */
static int set_tail_aside(const char *name, int fd, const uint8_t *map, uint64_t off, uint64_t size,
                          l3_wal_replay_report_t *rep)
{
    char aside[4096];
    int rc = aside_name(aside, sizeof aside, name);
    if (rc < 0)
        return rc;
    if (off == 0) {
        rc = l3_wal_shim.rename(name, aside);
        if (rc < 0)
            return rc;
    } else {
        int afd = l3_wal_shim.open(aside, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, L3_WAL_FILE_MODE);
        if (afd < 0)
            return afd;
        uint64_t done = 0;
        while (done < size - off) {
            ssize_t n = l3_wal_shim.pwrite(afd, map + off + done,
                                           (size_t)L3_MIN(size - off - done, (uint64_t)1 << 30), (off_t)done);
            if (n <= 0) {
                rc = n < 0 ? (int)n : -EIO;
                break;
            }
            done += (uint64_t)n;
        }
        if (rc == 0)
            rc = l3_wal_shim.fsync(afd);
        l3_wal_shim.close(afd);
        if (rc < 0) { /* a partial copy is no copy: give its blocks back (the disk may be full) */
            l3_wal_shim.unlink(aside);
            return rc;
        }
        rc = l3_wal_shim.ftruncate(fd, (off_t)off);
        if (rc == 0)
            rc = l3_wal_shim.fsync(fd);
        if (rc < 0)
            return rc;
    }
    rep->discarded_bytes += size - off;
    rep->discarded_files++;
    if (rep->aside[0] == 0)
        copy_str(rep->aside, sizeof rep->aside, aside);
    return 0;
}

/*
 * W5 in-place set-aside (the disk is full). Copying a bad tail aside needs free space, and a
 * start after a crash on a full disk must not: when the copy fails with ENOSPC/EDQUOT the
 * bytes stay where they are and an empty marker file "<segment>.end-<offset>" records where
 * the segment's valid part ends. An empty file needs no data block, only a directory entry.
 * Replay then reads the segment only up to the marker's offset, and the log goes on in the
 * next segment (which the writer creates after this recovery). At a later start with space
 * the tail is copied aside and cut as in W3 and the marker removed. Markers whose segment a
 * checkpoint deleted are removed.
 */
#define MARKER_SUFFIX ".end-"

static int is_full(int rc)
{
    return rc == -ENOSPC || rc == -EDQUOT;
}

/* The valid length recorded by a marker of segment `name`, or UINT64_MAX if none. */
static uint64_t marker_end(const char *name, char *ret_marker, size_t cap)
{
    char pat[4200];
    snprintf(pat, sizeof pat, "%s" MARKER_SUFFIX "*", name);
    glob_t g;
    uint64_t end = UINT64_MAX;
    if (glob(pat, GLOB_NOSORT, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            const char *num = g.gl_pathv[i] + strlen(name) + strlen(MARKER_SUFFIX);
            char *e;
            unsigned long long v = strtoull(num, &e, 10);
            if (*num != '\0' && *e == '\0' && v >= L3_WAL_SEG_HDR && v < end) {
                end = v;
                copy_str(ret_marker, cap, g.gl_pathv[i]);
            }
        }
    }
    globfree(&g);
    return end;
}

static int marker_create(const char *name, uint64_t off, l3_wal_replay_report_t *rep)
{
    char marker[4200];
    int n = snprintf(marker, sizeof marker, "%s" MARKER_SUFFIX "%" PRIu64, name, off);
    if (n < 0 || (size_t)n >= sizeof marker)
        return -ENAMETOOLONG;
    int fd = l3_wal_shim.open(marker, O_WRONLY | O_CREAT | O_EXCL, L3_WAL_FILE_MODE);
    if (fd < 0 && fd != -EEXIST)
        return fd;
    if (fd >= 0)
        l3_wal_shim.close(fd);
    if (rep->in_place[0] == 0)
        copy_str(rep->in_place, sizeof rep->in_place, marker);
    return 0;
}

/* Markers of segments that no longer exist (deleted by a checkpoint) are removed. */
static int markers_sweep(const char *wal_path)
{
    char pat[4200];
    snprintf(pat, sizeof pat, "%s.*" MARKER_SUFFIX "*", wal_path);
    glob_t g;
    int removed = 0;
    if (glob(pat, GLOB_NOSORT, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            char seg[4200];
            const char *m = strstr(g.gl_pathv[i] + strlen(wal_path), MARKER_SUFFIX);
            if (m == NULL || (size_t)(m - g.gl_pathv[i]) >= sizeof seg)
                continue;
            snprintf(seg, sizeof seg, "%.*s", (int)(m - g.gl_pathv[i]), g.gl_pathv[i]);
            if (access(seg, F_OK) != 0 && errno == ENOENT && l3_wal_shim.unlink(g.gl_pathv[i]) == 0)
                removed++;
        }
    }
    globfree(&g);
    return removed;
}

/*
 * FRAG pieces (wal.h L3_WAL_FRAG_HDR) are joined here: one assembly per LSN in progress
 * (pieces of different records interleave in the log, those of one record are in order).
 * The whole record is delivered when its final piece is read; a piece out of sequence
 * drops its assembly; assemblies left at the end of the log (a producer died, or the
 * log was cut) are dropped and counted in rep.incomplete.
 */
#define ASM_MAX 256

typedef struct {
    uint64_t lsn; /* 0 = free */
    uint8_t op;
    uint32_t total, got, next;
    uint8_t *buf;
} asm_t;

typedef struct {
    asm_t a[ASM_MAX];
} asms_t;

static void asm_drop(asm_t *a)
{
    free(a->buf);
    memset(a, 0, sizeof *a);
}

/* One FRAG record: 1 with *ret filled (the whole record, payload owned by a: call
 * asm_drop after delivering), 0 when more pieces are needed or the piece was dropped. */
static int asm_add(asms_t *as, const l3_wal_rec_t *rec, l3_wal_rec_t *ret, asm_t **ret_a)
{
    const uint8_t *p = rec->payload;
    if (rec->plen < L3_WAL_FRAG_HDR || rec->lsn == 0)
        return 0;
    uint32_t idx, total, off, len = rec->plen - L3_WAL_FRAG_HDR;
    memcpy(&idx, p + 4, 4);
    memcpy(&total, p + 8, 4);
    memcpy(&off, p + 12, 4);
    bool last = p[1] == 1;
    asm_t *a = NULL, *free_a = NULL;
    for (unsigned i = 0; i < ASM_MAX && a == NULL; i++) {
        if (as->a[i].lsn == rec->lsn)
            a = &as->a[i];
        else if (as->a[i].lsn == 0 && free_a == NULL)
            free_a = &as->a[i];
    }
    if (idx == 0) {
        if (a != NULL)
            asm_drop(a);
        else
            a = free_a;
        if (a == NULL || !l3_walop_is_change(p[0]) || total > L3_WAL_REC_MAX)
            return 0;
        a->buf = malloc(total ? total : 1);
        if (a->buf == NULL)
            return 0;
        a->lsn = rec->lsn;
        a->op = p[0];
        a->total = total;
    }
    if (a == NULL)
        return 0;
    if (idx != a->next || off != a->got || total != a->total || p[0] != a->op || len > total - a->got) {
        asm_drop(a);
        return 0;
    }
    memcpy(a->buf + a->got, p + L3_WAL_FRAG_HDR, len);
    a->got += len;
    a->next++;
    if (!last)
        return 0;
    if (a->got != a->total) {
        asm_drop(a);
        return 0;
    }
    *ret = (l3_wal_rec_t){
        .op = a->op, .lsn = a->lsn, .key = rec->key, .klen = rec->klen, .payload = a->buf, .plen = a->total};
    *ret_a = a;
    return 1;
}

/* A transaction group being collected (W6): copies of its records, in order. */
typedef struct {
    bool open;
    size_t n, cap;
    uint64_t bytes;
    l3_wal_rec_t *recs; /* key and payload in one malloc'd block each */
} grp_t;

static void grp_drop(grp_t *g, l3_wal_replay_report_t *rep)
{
    if (rep != NULL)
        rep->tx_dropped += g->n;
    for (size_t i = 0; i < g->n; i++)
        free((void *)g->recs[i].key);
    g->n = 0;
    g->bytes = 0;
    g->open = false;
}

/* Copy rec into the group; false (the group dropped) past the bounds or without memory. */
static bool grp_add(grp_t *g, const l3_wal_rec_t *rec, l3_wal_replay_report_t *rep)
{
    uint64_t sz = (uint64_t)rec->klen + rec->plen;
    if (g->n >= L3_WAL_GROUP_MAX || g->bytes + sz > L3_WAL_REC_MAX) {
        grp_drop(g, rep);
        return false;
    }
    if (g->n == g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 16;
        l3_wal_rec_t *nr = realloc(g->recs, nc * sizeof(*nr));
        if (nr == NULL) {
            grp_drop(g, rep);
            return false;
        }
        g->recs = nr;
        g->cap = nc;
    }
    uint8_t *b = malloc(sz ? sz : 1); /* key then payload, as in the record */
    if (b == NULL) {
        grp_drop(g, rep);
        return false;
    }
    memcpy(b, rec->key, rec->klen);
    memcpy(b + rec->klen, rec->payload, rec->plen);
    l3_wal_rec_t c = *rec;
    c.key = b;
    c.payload = b + rec->klen;
    g->recs[g->n++] = c;
    g->bytes += sz;
    return true;
}

/* One replay in progress. */
typedef struct {
    l3_wal_replay_fn fn;
    void *ctx;
    asms_t *as;
    grp_t grp;
    l3_wal_replay_report_t *rep;
    int ended;     /* W2: a bad record was found; later segments go aside */
    int dir_dirty; /* a file was removed or renamed: fsync the directory at the end */
} rp_t;

/* Hand one record to the callback and count it. The callback's negative code, else 0. */
static int deliver(rp_t *p, const l3_wal_rec_t *rec)
{
    int cr = p->fn ? p->fn(p->ctx, rec) : 0;
    if (cr < 0)
        return cr;
    if (cr > 0)
        p->rep->skipped++;
    p->rep->records++;
    if (rec->lsn > p->rep->max_lsn)
        p->rep->max_lsn = rec->lsn;
    return 0;
}

/* A record of a transaction group (W6): collect it; deliver the group at its last one. */
static int group_rec(rp_t *p, const l3_wal_rec_t *rec)
{
    grp_t *g = &p->grp;
    if (rec->flags & L3_WAL_RF_TXFIRST) {
        if (g->open)
            grp_drop(g, p->rep);
        g->open = true;
    }
    if (!g->open) {
        p->rep->tx_dropped++;
        return 0;
    }
    if (!grp_add(g, rec, p->rep) || !(rec->flags & L3_WAL_RF_TXLAST))
        return 0;
    int cr = 0;
    for (size_t i = 0; i < g->n && cr == 0; i++)
        cr = deliver(p, &g->recs[i]);
    grp_drop(g, NULL);
    p->rep->tx_groups++;
    return cr;
}

/* Deliver the records of a mapped segment from offset 64 up to `limit` (W1). Returns 0
 * when every byte up to limit was a valid record, the decode error that stopped it (> 0
 * never), and sets *ret_cb to the callback's error if it aborted; *ret_off = where it
 * stopped. */
static int read_records(rp_t *p, const uint8_t *map, uint64_t limit, uint64_t salt, uint64_t *ret_off,
                        int *ret_cb)
{
    l3_wal_replay_report_t *rep = p->rep;
    uint64_t off = L3_WAL_SEG_HDR;
    int bad = 0;
    while (off < limit) {
        l3_wal_rec_t rec;
        int64_t len = l3_wal_rec_decode(map + off, limit - off, salt, &rec);
        if (len < 0) {
            bad = (int)len;
            break;
        }
        asm_t *done = NULL;
        if (rec.op == L3_WALOP_FRAG) {
            rep->bytes += (uint64_t)len;
            off += (uint64_t)len;
            if (asm_add(p->as, &rec, &rec, &done) == 0)
                continue;
            len = 0; /* counted above */
        }
        int cr = 0;
        if (rec.flags & L3_WAL_RF_TX)
            cr = group_rec(p, &rec);
        else if (p->grp.open)
            grp_drop(&p->grp, rep); /* W6: interrupted */
        if (!(rec.flags & L3_WAL_RF_TX))
            cr = deliver(p, &rec);
        if (done != NULL)
            asm_drop(done);
        if (cr < 0) {
            *ret_cb = cr;
            break;
        }
        off += (uint64_t)len;
        rep->bytes += (uint64_t)len;
    }
    *ret_off = off;
    return bad;
}

/* Set the bytes [off, size) aside (W3); on a full disk keep them in place behind a marker
 * (W5). marker: the segment's existing marker ("" if none), removed once the tail moved. */
static int tail_aside(rp_t *p, const char *name, int fd, const uint8_t *map, uint64_t off, uint64_t size,
                      const char *marker)
{
    int rc = set_tail_aside(name, fd, map, off, size, p->rep);
    p->dir_dirty = 1;
    if (rc == 0 && marker[0] != '\0')
        return l3_wal_shim.unlink(marker);
    if (!is_full(rc) || off == 0)
        return rc;
    p->rep->in_place_bytes += size - off;
    return marker[0] != '\0' ? 0 : marker_create(name, off, p->rep);
}

/* One segment: header (W2), records up to its end or its marker (W5), the bad tail (W3). */
static int replay_segment(rp_t *p, const char *name, int fd, const uint8_t *map, uint64_t size, uint64_t seq)
{
    l3_wal_replay_report_t *rep = p->rep;
    char marker[4200] = "";
    uint64_t limit = L3_MIN(size, marker_end(name, marker, sizeof marker));
    uint64_t off = 0;
    int bad = L3_ECORRUPT, cb = 0; /* W2: after the end of the log, everything is bad */
    if (!p->ended) {
        l3_wal_seg_hdr_t h;
        bad = l3_wal_seg_hdr_decode(map, size, &h);
        if (bad == 0 && h.seq != seq)
            bad = -EBADMSG;
        if (bad == 0) {
            rep->segments++;
            rep->bytes += L3_WAL_SEG_HDR;
            bad = read_records(p, map, limit, h.salt, &off, &cb);
            if (cb < 0)
                return cb;
        }
        if (bad) {
            p->ended = 1;
            rep->stop_reason = bad;
            copy_str(rep->stop_file, sizeof rep->stop_file, name);
            rep->stop_offset = off;
        }
    }
    if (bad)
        return tail_aside(p, name, fd, map, off, size, "");
    if (limit < size) /* a tail a full disk kept in place: move it aside now if there is room */
        return tail_aside(p, name, fd, map, limit, size, marker);
    if (marker[0] != '\0') { /* the tail is gone already: the marker has no purpose left */
        p->dir_dirty = 1;
        return l3_wal_shim.unlink(marker);
    }
    return 0;
}

/* Open, map and replay one segment; an empty one is removed (W4). */
static int replay_file(rp_t *p, const char *wal_path, uint64_t seq, int *ret_removed)
{
    char name[4096];
    int rc = l3_wal__seg_name(name, sizeof name, wal_path, seq);
    if (rc < 0)
        return rc;
    int fd = l3_wal_shim.open(name, O_RDWR, 0);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        l3_wal_shim.close(fd);
        return rc;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size == 0) { /* W4: its number is given out again, so no gap appears */
        l3_wal_shim.close(fd);
        p->dir_dirty = 1;
        *ret_removed = 1;
        return l3_wal_shim.unlink(name);
    }
    const uint8_t *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        l3_wal_shim.close(fd);
        return rc;
    }
    rc = replay_segment(p, name, fd, map, size, seq);
    munmap((void *)map, size);
    l3_wal_shim.close(fd);
    return rc;
}

int l3_wal_replay_from(const char *wal_path, uint64_t min_seq, l3_wal_replay_fn fn, void *ctx,
                       l3_wal_replay_report_t *ret_report)
{
    l3_wal_replay_report_t rep;
    memset(&rep, 0, sizeof rep);
    rp_t p = {.fn = fn, .ctx = ctx, .as = calloc(1, sizeof(asms_t)), .rep = &rep};
    if (p.as == NULL)
        return -ENOMEM;
    uint64_t *seqs = NULL;
    int n = l3_wal__list_segments(wal_path, &seqs);
    if (n < 0 && n != -ENOENT) {
        free(p.as);
        return n;
    }
    int rc = 0;
    uint64_t next = min_seq ? min_seq : 1;
    for (int i = 0; i < n && rc == 0; i++) {
        int removed = 0;
        if (seqs[i] >= min_seq)
            rc = replay_file(&p, wal_path, seqs[i], &removed);
        if (!removed)
            next = L3_MAX(next, seqs[i] + 1);
    }
    free(seqs);
    grp_drop(&p.grp, &rep); /* W6: a group the log ends in */
    free(p.grp.recs);
    for (unsigned i = 0; i < ASM_MAX; i++)
        if (p.as->a[i].lsn != 0) {
            rep.incomplete++;
            asm_drop(&p.as->a[i]);
        }
    free(p.as);
    if (rc == 0 && markers_sweep(wal_path) > 0)
        p.dir_dirty = 1;
    if (rc == 0 && p.dir_dirty)
        rc = l3_wal__fsync_dir_of(wal_path);
    rep.next_seq = next;
    if (ret_report)
        *ret_report = rep;
    return rc;
}

int l3_wal_replay(const char *wal_path, l3_wal_replay_fn fn, void *ctx, l3_wal_replay_report_t *ret_report)
{
    return l3_wal_replay_from(wal_path, 0, fn, ctx, ret_report);
}
