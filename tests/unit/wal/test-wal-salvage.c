/* SPDX-License-Identifier: MIT */
/*
 * test-wal-salvage.c - what recovery does instead of losing data or refusing to start:
 * the ring of a dead instance appended to the WAL (l3_wal_salvage: published records after
 * the committed tail, once, in order; RESERVED slots dropped; another WAL's ring or a live
 * one left alone), records the callback refuses set aside in the quarantine (or strict
 * stop), missing segments refused, and a bad tail kept in place when the disk is full.
 * No writer process: the progress record is set by hand, as a killed writer leaves it.
 */
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <sys/stat.h>

#include "l3kv/base.h"
#include "l3kv/error.h"
#include "wal-int.h"
#include "walt.h"

static char dir[256], base[300], qdir[300];

static void clean_dir(void)
{
    t_rmtree(dir);
    mkdir(dir, 0700);
}

static long fsize(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static void seg_path(char *buf, size_t cap, uint64_t seq)
{
    snprintf(buf, cap, "%s.%08llu", base, (unsigned long long)seq);
}

static int nglob(const char *pat)
{
    glob_t g;
    int n = glob(pat, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
    globfree(&g);
    return n;
}

static l3_wal_rec_t mkrec(uint64_t lsn, char *key, size_t cap)
{
    snprintf(key, cap, "key-%llu", (unsigned long long)lsn);
    return (l3_wal_rec_t){.op = L3_WALOP_PUT,
                          .lsn = lsn,
                          .key = key,
                          .klen = (uint32_t)strlen(key),
                          .payload = key,
                          .plen = (uint32_t)strlen(key)};
}

/* Segment seq with records lsn [first, first + n) sealed with salt; returns its size. */
static long write_seg(uint64_t seq, uint64_t salt, uint64_t first, int n)
{
    char name[400];
    seg_path(name, sizeof name, seq);
    FILE *f = fopen(name, "wb");
    if (!f)
        exit(T_HARNESS_ERROR);
    uint8_t hdr[L3_WAL_SEG_HDR], buf[256];
    l3_wal_seg_hdr_t h = {.salt = salt, .seq = seq};
    l3_wal_seg_hdr_encode(hdr, &h);
    fwrite(hdr, 1, sizeof hdr, f);
    for (int i = 0; i < n; i++) {
        char key[32];
        l3_wal_rec_t r = mkrec(first + (uint64_t)i, key, sizeof key);
        int64_t len = l3_wal_rec_encode(buf, sizeof buf, &r, salt);
        fwrite(buf, 1, (size_t)len, f);
    }
    fclose(f);
    return fsize(name);
}

static void append(const char *name, const void *p, size_t n)
{
    FILE *f = fopen(name, "ab");
    if (!f)
        exit(T_HARNESS_ERROR);
    fwrite(p, 1, n, f);
    fclose(f);
}

/* ---------------------------------------------------------------- ring salvage */

static void test_salvage(void)
{
    clean_dir();
    size_t len = L3_WAL_RING_MIN_BYTES * 2;
    void *region;
    l3_wal_ring_t *r = walt_ring(len, &region);
    l3_wal_shm_t *sh = region;
    enum { N = 10, WRITTEN = 4, UNCOMMITTED = 2 };
    uint64_t pos[N + 1];
    for (int i = 0; i < N; i++) {
        char key[32];
        l3_wal_rec_t rec = mkrec((uint64_t)i + 1, key, sizeof key);
        pos[i] = atomic_load(&sh->rh_head);
        CHECK_EQ_INT(l3_wal_hook(r, &rec), 0);
    }
    pos[N] = atomic_load(&sh->rh_head);
    l3_wal_resv_t res; /* a producer that died before publishing: dropped */
    CHECK_EQ_INT(l3_wal_reserve(r, 8, 8, 100, &res), 0);
    /* the dead writer: records 1..4 committed in segment 1, 5..6 written but not committed,
     * then a torn piece of 7 */
    uint64_t salt = 0x1122334455667788ull;
    char seg1[400];
    seg_path(seg1, sizeof seg1, 1);
    long committed = write_seg(1, salt, 1, WRITTEN);
    for (int i = WRITTEN; i < WRITTEN + UNCOMMITTED; i++) {
        char key[32];
        uint8_t buf[256];
        l3_wal_rec_t rec = mkrec((uint64_t)i + 1, key, sizeof key);
        int64_t n = l3_wal_rec_encode(buf, sizeof buf, &rec, salt);
        append(seg1, buf, (size_t)n);
    }
    append(seg1, "\x58\x00\x00\x00torn", 8);
    l3_wal_commit_t *c = &sh->rh_commit[atomic_load(&sh->rh_commit_idx) & 1u];
    *c = (l3_wal_commit_t){
        .rc_tail = pos[WRITTEN], .rc_seg_seq = 1, .rc_seg_off = (uint64_t)committed, .rc_salt = salt};
    l3_wal_salvage_report_t rep;
    /* still alive (our own producer entry): nothing done */
    CHECK_EQ_INT(l3_wal_salvage(region, len, base, &rep), -EBUSY);
    for (unsigned i = 0; i < L3_WAL_PROD_MAX; i++)
        atomic_store(&sh->rh_prod[i].pe_pid, 0);
    /* another WAL's ring (salt differs): nothing done */
    c->rc_salt = salt ^ 1;
    CHECK_EQ_INT(l3_wal_salvage(region, len, base, &rep), -ESRCH);
    CHECK(fsize(seg1) > committed);
    c->rc_salt = salt;
    memset(&rep, 0, sizeof rep);
    CHECK_EQ_INT(l3_wal_salvage(region, len, base, &rep), 0);
    CHECK_EQ_INT(rep.records, N - WRITTEN);
    CHECK_EQ_INT(rep.seq, 2);
    CHECK_EQ_INT(rep.stop_reason, 0);
    CHECK_EQ_INT(fsize(seg1), committed);
    /* the WAL now holds 1..10 exactly once, in order, and nothing of the reservation */
    walt_log_t l = {0};
    l3_wal_replay_report_t rr;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rr), 0);
    CHECK_EQ_INT(rr.stop_reason, 0);
    CHECK_EQ_INT(l.n, N);
    for (size_t i = 0; i < l.n && i < N; i++)
        CHECK_EQ_INT(l.v[i].lsn, i + 1);
    walt_log_free(&l);
    /* a damaged slot ends the salvage there */
    clean_dir();
    committed = write_seg(1, salt, 1, WRITTEN);
    l3_wal_slot_t *s = l3_wal__slot(r, pos[7]);
    ((uint8_t *)s)[L3_WAL_SLOT_HDR + 40] ^= 1;
    memset(&rep, 0, sizeof rep);
    CHECK_EQ_INT(l3_wal_salvage(region, len, base, &rep), 0);
    CHECK_EQ_INT(rep.records, 7 - WRITTEN);
    CHECK_EQ_INT(rep.stop_reason, L3_ECORRUPT);
    CHECK_EQ_INT(rep.stopped_at, pos[7]);
    ((uint8_t *)s)[L3_WAL_SLOT_HDR + 40] ^= 1;
    /* a writer killed while creating segment 2 (progress record "seq 2, offset 0"): only the
     * ring's id tells whose it is; nothing past the tail is in a file */
    clean_dir();
    committed = write_seg(1, salt, 1, WRITTEN);
    *c = (l3_wal_commit_t){.rc_tail = pos[WRITTEN], .rc_seg_seq = 2, .rc_seg_off = 0, .rc_salt = salt};
    CHECK_EQ_INT(l3_wal_salvage(region, len, base, &rep), -ESRCH);
    sh->rh_wal_id = l3_wal_path_id(base) ^ 1; /* another WAL's ring */
    CHECK_EQ_INT(l3_wal_salvage(region, len, base, &rep), -ESRCH);
    l3_wal_ring_set_id(r, l3_wal_path_id(base));
    memset(&rep, 0, sizeof rep);
    CHECK_EQ_INT(l3_wal_salvage(region, len, base, &rep), 0);
    CHECK_EQ_INT(rep.records, N - WRITTEN);
    CHECK_EQ_INT(fsize(seg1), committed);
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rr), 0);
    CHECK_EQ_INT(l.n, N);
    walt_log_free(&l);
    /* the id is the directory's real path: another spelling of the same WAL matches */
    char other[400];
    snprintf(other, sizeof other, "%s/../wal/data.wal", dir);
    CHECK(l3_wal_path_id(other) == l3_wal_path_id(base));
    snprintf(other, sizeof other, "%s/data.wal2", dir);
    CHECK(l3_wal_path_id(other) != l3_wal_path_id(base));
    l3_wal_ring_detach(r);
    munmap(region, len);
}

/* ---------------------------------------------------------------- quarantine */

typedef struct {
    uint64_t refuse_lsn;
    int code;
    int calls;
} refuse_t;

static int refuse_cb(void *ctx, const l3_wal_rec_t *rec)
{
    refuse_t *f = ctx;
    f->calls++;
    return rec->lsn == f->refuse_lsn ? f->code : 0;
}

static void test_quarantine(void)
{
    clean_dir();
    write_seg(1, 77, 1, 5);
    l3_wal_recover_opts_t o = {.quarantine_dir = qdir};
    refuse_t f = {.refuse_lsn = 3, .code = L3_ECORRUPT};
    l3_wal_recover_report_t rep;
    /* strict: stops at the record, names it, writes nothing */
    o.strict = 1;
    CHECK_EQ_INT(l3_wal_recover_ex(base, NULL, &o, refuse_cb, &f, &rep), L3_ECORRUPT);
    CHECK_EQ_INT(rep.failed_lsn, 3);
    CHECK_EQ_STR(rep.failed_key, "key-3");
    CHECK_EQ_INT(f.calls, 3);
    CHECK(access(qdir, F_OK) != 0);
    /* salvage: set aside, the rest delivered */
    o.strict = 0;
    f.calls = 0;
    CHECK_EQ_INT(l3_wal_recover_ex(base, NULL, &o, refuse_cb, &f, &rep), 0);
    CHECK_EQ_INT(f.calls, 5);
    CHECK_EQ_INT(rep.quarantined, 1);
    CHECK_EQ_INT(rep.wal.skipped, 1);
    CHECK_EQ_INT(rep.failed_rc, L3_ECORRUPT);
    struct stat st;
    CHECK(stat(qdir, &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK(stat(rep.quarantine_first, &st) == 0 && (st.st_mode & 0777) == 0600);
    FILE *devnull = fopen("/dev/null", "w");
    CHECK_EQ_INT(l3_wal_dump(rep.quarantine_first, devnull, 1), 0);
    CHECK_EQ_INT(l3_wal_quarantine_dump(qdir, devnull, 0), 0);
    /* the record inside is the one refused, verified by its CRCs */
    int fd = open(rep.quarantine_first, O_RDONLY);
    uint8_t buf[512];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    l3_wal_rec_t q;
    CHECK_EQ_INT(l3_wal__quar_verify(buf, (uint64_t)n, &q), 0);
    CHECK_EQ_INT(q.lsn, 3);
    CHECK(q.klen == 5 && memcmp(q.key, "key-3", 5) == 0);
    buf[70] ^= 1; /* a damaged quarantine file is reported */
    CHECK_EQ_INT(l3_wal__quar_verify(buf, (uint64_t)n, &q), L3_ECORRUPT);
    fclose(devnull);
    /* a resource error is never quarantined */
    f = (refuse_t){.refuse_lsn = 2, .code = -ENOMEM};
    CHECK_EQ_INT(l3_wal_recover_ex(base, NULL, &o, refuse_cb, &f, &rep), -ENOMEM);
    CHECK_EQ_INT(rep.quarantined, 0);
}

/* ---------------------------------------------------------------- missing segments */

static void test_gap(void)
{
    clean_dir();
    write_seg(2, 5, 10, 3);
    write_seg(3, 6, 13, 3);
    char snap[400];
    snprintf(snap, sizeof snap, "%s/l3kv.snap", dir);
    l3_wal_recover_report_t rep;
    walt_log_t l = {0};
    CHECK_EQ_INT(l3_wal_recover(base, snap, walt_collect, &l, &rep), -ENOTRECOVERABLE);
    CHECK_EQ_INT(rep.missing_from, 1);
    CHECK_EQ_INT(rep.missing_to, 2);
    CHECK_EQ_INT(rep.missing_snapshot, 1);
    CHECK_EQ_INT(l.n, 0);
    l3_wal_recover_opts_t o = {.accept_data_loss = 1, .strict = 1};
    CHECK_EQ_INT(l3_wal_recover_ex(base, snap, &o, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(l.n, 6);
    walt_log_free(&l);
    /* a segment set aside whole by an earlier recovery is accounted for */
    char aside[500];
    seg_path(aside, sizeof aside, 1);
    strcat(aside, ".corrupt-1");
    append(aside, "x", 1);
    CHECK_EQ_INT(l3_wal_recover(base, snap, NULL, NULL, &rep), 0);
}

static int no_entries(void *ctx, l3_wal_rec_t *rec)
{
    (void)ctx;
    (void)rec;
    return 0;
}

static void test_gap_old_snapshot(void)
{
    clean_dir();
    write_seg(3, 6, 13, 3);
    char snap[400];
    snprintf(snap, sizeof snap, "%s/l3kv.snap", dir);
    CHECK_EQ_INT(l3_wal_snapshot_write(snap, 2, 0, no_entries, NULL), 0);
    l3_wal_recover_report_t rep;
    CHECK_EQ_INT(l3_wal_recover(base, snap, NULL, NULL, &rep), -ENOTRECOVERABLE);
    CHECK_EQ_INT(rep.missing_from, 2);
    CHECK_EQ_INT(rep.missing_snapshot, 3);
    CHECK_EQ_INT(l3_wal_snapshot_write(snap, 3, 0, no_entries, NULL), 0);
    CHECK_EQ_INT(l3_wal_recover(base, snap, NULL, NULL, &rep), 0);
}

/* ---------------------------------------------------------------- full disk */

static ssize_t full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    (void)fd;
    (void)buf;
    (void)off;
    return len > 0 ? -ENOSPC : 0;
}

static void test_full_disk_tail(void)
{
    clean_dir();
    char seg1[400], pat[500];
    seg_path(seg1, sizeof seg1, 1);
    long good = write_seg(1, 9, 1, 4);
    append(seg1, "\x58\x00\x00\x00torn-record-bytes", 21);
    long torn = fsize(seg1);
    l3_wal_shim.pwrite = full_pwrite;
    walt_log_t l = {0};
    l3_wal_replay_report_t rr;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rr), 0);
    l3_wal_shim_reset();
    CHECK_EQ_INT(l.n, 4);
    CHECK_EQ_INT(rr.in_place_bytes, torn - good);
    CHECK_EQ_INT(fsize(seg1), torn); /* nothing cut without a copy */
    snprintf(pat, sizeof pat, "%s.end-%ld", seg1, good);
    CHECK_EQ_INT(fsize(pat), 0);
    snprintf(pat, sizeof pat, "%s.corrupt-*", seg1);
    CHECK_EQ_INT(nglob(pat), 0); /* the partial copy was removed */
    walt_log_free(&l);
    /* the log goes on after the marker: a later segment is read, not set aside */
    write_seg(2, 10, 5, 2);
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rr), 0);
    CHECK_EQ_INT(l.n, 6);
    CHECK_EQ_INT(rr.discarded_files, 1); /* space now: the tail moved aside */
    CHECK_EQ_INT(fsize(seg1), good);
    CHECK_EQ_INT(nglob(pat), 1);
    snprintf(pat, sizeof pat, "%s.end-*", seg1);
    CHECK_EQ_INT(nglob(pat), 0);
    walt_log_free(&l);
}

int main(void)
{
    char *d = t_tmpdir();
    snprintf(dir, sizeof dir, "%s/wal", d);
    snprintf(base, sizeof base, "%s/data.wal", dir);
    snprintf(qdir, sizeof qdir, "%s/quarantine", dir);
    test_salvage();
    test_quarantine();
    test_gap();
    test_gap_old_snapshot();
    test_full_disk_tail();
    t_rmtree(d);
    free(d);
    return t_done();
}
