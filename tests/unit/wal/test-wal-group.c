/* SPDX-License-Identifier: MIT */
/*
 * test-wal-group.c - transaction groups (l3_wal_hook_group, docs/wal.md 1.2):
 *  - the records are contiguous in the ring, flagged TX / TXFIRST / TXLAST, the last one
 *    tracked by the probe;
 *  - the change feed reports a group only once it is complete, contiguously, and never a
 *    group whose producer died before its last record (a forked producer _exits there);
 *  - replay delivers a complete group, and drops an interrupted one, members without
 *    their first record and a group the log ends in (segments built by hand);
 *  - too large a group is refused as a whole.
 */
#include <stdio.h>
#include <sys/stat.h>

#include "l3kv/walfeed.h"
#include "wal-int.h"
#include "walt.h"

static void consume_all(l3_wal_ring_t *r)
{
    atomic_store(&r->sh->rh_tail, atomic_load(&r->sh->rh_head));
}

static char keys[16][16];

static void make_recs(l3_wal_rec_t *recs, size_t n, uint64_t lsn0)
{
    static uint8_t pay[64];
    memset(pay, 'p', sizeof pay);
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "k%zu", i);
        recs[i] = (l3_wal_rec_t){.op = L3_WALOP_PUT,
                                 .lsn = lsn0 + i,
                                 .key = keys[i],
                                 .klen = (uint32_t)strlen(keys[i]),
                                 .payload = pay,
                                 .plen = (uint32_t)(8 + i)};
    }
}

static int single(l3_wal_ring_t *r, uint64_t lsn)
{
    l3_wal_rec_t rec = {.op = L3_WALOP_DELETE, .lsn = lsn, .key = "solo", .klen = 4};
    return l3_wal_hook(r, &rec);
}

/* Read every event from pos below the head: their LSNs into out, the count returned. */
static int read_all(l3_wal_ring_t *r, uint64_t pos, uint64_t *out, int max, uint8_t *flags)
{
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(r, &b);
    int n = 0;
    uint8_t key[1024];
    l3_wal_feed_ev_t ev;
    while (n < max && l3_wal_feed_next(r, pos, b.head, 256, &ev, key, sizeof key, &pos) == 1) {
        if (flags)
            flags[n] = ev.flags;
        out[n++] = ev.lsn;
    }
    return n;
}

static void test_ring_and_feed(void)
{
    l3_wal_ring_t *r = walt_ring(4096 + 65536, NULL);
    l3_wal_rec_t recs[5];
    make_recs(recs, 5, 100);
    CHECK_EQ_INT(single(r, 99), 0);
    CHECK_EQ_INT(l3_wal_hook_group(r, recs, 5), 0);
    CHECK_EQ_INT(l3_wal_probe(r, 104), 1); /* the tracked record: the group's last */
    CHECK_EQ_INT(single(r, 200), 0);
    uint64_t lsns[16];
    uint8_t fl[16];
    int n = read_all(r, 0, lsns, 16, fl);
    CHECK_EQ_INT(n, 7);
    uint64_t want[] = {99, 100, 101, 102, 103, 104, 200};
    for (int i = 0; i < n && i < 7; i++)
        CHECK_EQ_INT(lsns[i], want[i]);
    CHECK_EQ_INT(fl[1], L3_WAL_RF_TX | L3_WAL_RF_TXFIRST);
    CHECK_EQ_INT(fl[3], L3_WAL_RF_TX);
    CHECK_EQ_INT(fl[5], L3_WAL_RF_TX | L3_WAL_RF_TXLAST);
    CHECK_EQ_INT(fl[6], 0);

    /* a producer that dies before publishing the last record: nothing of its group is
     * reported, not while it could still complete and not once it is aborted */
    consume_all(r);
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(r, &b);
    uint64_t start = b.head;
    pid_t pid = fork();
    if (pid == 0) {
        l3_wal__test_before_publish = (void (*)(l3_wal_ring_t *, const l3_wal_rec_t *))(void (*)(void))_exit;
        make_recs(recs, 5, 300);
        l3_wal_hook_group(r, recs, 5);
        _exit(9);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(single(r, 400), 0);
    CHECK_EQ_INT(read_all(r, start, lsns, 16, NULL), 0); /* waits at the unfinished group */
    CHECK_EQ_INT(l3_wal_probe(r, 304), 0);
    /* what the writer does with a dead producer's slot: ABORTED */
    uint64_t pos = start;
    l3_wal_slot_t *s = NULL;
    for (int i = 0; i < 6; i++) {
        s = l3_wal__slot(r, pos);
        if (atomic_load(&s->rs_state) == L3_WAL_SLOT_RESERVED)
            break;
        pos += s->rs_len;
    }
    CHECK_EQ_INT(atomic_load(&s->rs_state), L3_WAL_SLOT_RESERVED);
    atomic_store(&s->rs_state, L3_WAL_SLOT_ABORTED);
    n = read_all(r, start, lsns, 16, NULL);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(lsns[0], 400);

    /* too large a group is refused whole, nothing reserved */
    consume_all(r);
    uint64_t head = atomic_load(&r->sh->rh_head);
    static uint8_t big[20000];
    l3_wal_rec_t bigs[3];
    for (int i = 0; i < 3; i++)
        bigs[i] = (l3_wal_rec_t){.op = L3_WALOP_PUT,
                                 .lsn = 500 + (uint64_t)i,
                                 .key = "b",
                                 .klen = 1,
                                 .payload = big,
                                 .plen = sizeof big};
    CHECK_EQ_INT(l3_wal_hook_group(r, bigs, 3), -EMSGSIZE);
    CHECK_EQ_INT(atomic_load(&r->sh->rh_head), head);
    /* and many groups around the end of the data area stay contiguous (pads only between) */
    for (int round = 0; round < 200; round++) {
        make_recs(recs, 1 + (size_t)round % 5, 1000 + (uint64_t)round * 10);
        CHECK_EQ_INT(l3_wal_hook_group(r, recs, 1 + (size_t)round % 5), 0);
        uint64_t got[8];
        uint8_t gfl[8];
        CHECK_EQ_INT(read_all(r, head, got, 8, gfl), 1 + round % 5);
        CHECK(gfl[0] & L3_WAL_RF_TXFIRST);
        for (int i = 0; i <= round % 5; i++)
            CHECK_EQ_INT(got[i], 1000 + (uint64_t)round * 10 + (uint64_t)i);
        consume_all(r);
        head = atomic_load(&r->sh->rh_head);
    }
    l3_wal_ring_detach(r);
}

/* ---------------------------------------------------------------- replay */

static char dir[256], base[300];

static size_t put_rec(uint8_t *buf, size_t off, uint64_t lsn, uint8_t flags, uint64_t salt)
{
    char key[16];
    snprintf(key, sizeof key, "r%llu", (unsigned long long)lsn);
    l3_wal_rec_t rec = {
        .op = L3_WALOP_DELETE, .flags = flags, .lsn = lsn, .key = key, .klen = (uint32_t)strlen(key)};
    return off + (size_t)l3_wal_rec_encode(buf + off, 4096, &rec, salt);
}

static void write_seg(uint64_t seq, const uint8_t *buf, size_t len)
{
    char name[400];
    snprintf(name, sizeof name, "%s.%08llu", base, (unsigned long long)seq);
    FILE *f = fopen(name, "wb");
    if (!f || fwrite(buf, 1, len, f) != len)
        exit(T_HARNESS_ERROR);
    fclose(f);
}

static void test_replay(void)
{
    snprintf(dir, sizeof dir, "/tmp/l3kv-walgroup-%ld", (long)getpid());
    mkdir(dir, 0700);
    snprintf(base, sizeof base, "%s/wal", dir);
    static uint8_t buf[1 << 16];
    const uint8_t T = L3_WAL_RF_TX, F = L3_WAL_RF_TXFIRST, L = L3_WAL_RF_TXLAST;
    for (uint64_t seq = 1; seq <= 2; seq++) {
        l3_wal_seg_hdr_t h = {.salt = 7 + seq, .seq = seq, .ctime_ns = 1};
        l3_wal_seg_hdr_encode(buf, &h);
        size_t off = 64;
        uint64_t salt = 7 + seq;
        if (seq == 1) {
            off = put_rec(buf, off, 1, T, salt); /* orphan: its first part is gone */
            off = put_rec(buf, off, 2, T | L, salt);
            off = put_rec(buf, off, 3, 0, salt);
            off = put_rec(buf, off, 4, T | F, salt); /* complete */
            off = put_rec(buf, off, 5, T, salt);
            off = put_rec(buf, off, 6, T | L, salt);
            off = put_rec(buf, off, 7, T | F, salt); /* interrupted by a plain record */
            off = put_rec(buf, off, 8, 0, salt);
            off = put_rec(buf, off, 9, T | F, salt); /* interrupted by another group */
            off = put_rec(buf, off, 10, T | F | L, salt);
            off = put_rec(buf, off, 11, T | F, salt); /* goes on in the next segment */
        } else {
            off = put_rec(buf, off, 12, T | L, salt);
            off = put_rec(buf, off, 13, T | F, salt); /* the log ends inside it */
            off = put_rec(buf, off, 14, T, salt);
        }
        write_seg(seq, buf, off);
    }
    walt_log_t log = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &log, &rep), 0);
    uint64_t want[] = {3, 4, 5, 6, 8, 10, 11, 12};
    CHECK_EQ_INT(log.n, L3_ARRAY_SIZE(want));
    for (size_t i = 0; i < log.n && i < L3_ARRAY_SIZE(want); i++)
        CHECK_EQ_INT(log.v[i].lsn, want[i]);
    CHECK_EQ_INT(rep.tx_groups, 3);
    CHECK_EQ_INT(rep.tx_dropped, 6); /* 1, 2, 7, 9, 13, 14 */
    walt_log_free(&log);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
    test_ring_and_feed();
    test_replay();
    return t_done();
}
