/* SPDX-License-Identifier: MIT */
/*
 * test-wal-replay.c - recovery over hand-built segments (no writer needed): clean replay in
 * segment order, min_seq, torn tail at every byte offset of the last record, a bit flip in
 * the middle (valid prefix kept, tail and later segments set aside, bytes preserved), a
 * stale-salt record, an empty segment, callback abort, the dump of a good and a bad file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "l3kv/base.h"
#include "l3kv/error.h"
#include "walt.h"

#define NREC 20

static char dir[256], base[300];

static size_t ld_len(const uint8_t *p)
{
    return (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
}

/* Build segment seq with records lsn first..first+n-1; returns file size; *ret_last_off
 * gets the offset of the last record. salt_override != 0 stamps record idx_bad with it. */
static size_t build_seg(uint64_t seq, uint64_t salt, uint64_t first, int n, int idx_bad, uint64_t bad_salt,
                        size_t *ret_last_off)
{
    static uint8_t buf[1 << 20];
    l3_wal_seg_hdr_t h = {.salt = salt, .seq = seq, .ctime_ns = 1, .ring_pos = 0};
    l3_wal_seg_hdr_encode(buf, &h);
    size_t off = 64;
    for (int i = 0; i < n; i++) {
        char key[32];
        uint8_t pay[200];
        snprintf(key, sizeof key, "key-%d", (int)((first + (uint64_t)i) % 7));
        uint32_t plen = walt_payload(pay, sizeof pay, first + (uint64_t)i, seq);
        l3_wal_rec_t rec = {.op = L3_WALOP_PUT,
                            .lsn = first + (uint64_t)i,
                            .key = key,
                            .klen = (uint32_t)strlen(key),
                            .payload = pay,
                            .plen = plen};
        if (ret_last_off)
            *ret_last_off = off;
        int64_t len = l3_wal_rec_encode(buf + off, sizeof buf - off, &rec, i == idx_bad ? bad_salt : salt);
        off += (size_t)len;
    }
    char name[400];
    snprintf(name, sizeof name, "%s.%08llu", base, (unsigned long long)seq);
    FILE *f = fopen(name, "wb");
    if (!f || fwrite(buf, 1, off, f) != off)
        exit(T_HARNESS_ERROR);
    fclose(f);
    return off;
}

static void clean_dir(void)
{
    t_rmtree(dir);
    if (mkdir(dir, 0755) != 0)
        exit(T_HARNESS_ERROR);
}

static int count_aside(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strstr(de->d_name, ".corrupt-") != NULL;
    closedir(d);
    return n;
}

static off_t fsize(const char *name)
{
    struct stat st;
    return stat(name, &st) == 0 ? st.st_size : -1;
}

static void check_lsns(const walt_log_t *l, uint64_t first, size_t n)
{
    CHECK_EQ_INT(l->n, n);
    for (size_t i = 0; i < l->n && i < n; i++) {
        CHECK_EQ_INT(l->v[i].lsn, first + i);
        uint8_t pay[200];
        uint64_t seq = 1 + (first + i - 1) / NREC; /* builder: seq s holds lsn (s-1)*NREC+1.. */
        uint32_t plen = walt_payload(pay, sizeof pay, first + i, seq);
        CHECK(l->v[i].plen == plen && memcmp(l->v[i].payload, pay, plen) == 0);
    }
}

static void test_clean(void)
{
    clean_dir();
    for (uint64_t s = 1; s <= 3; s++)
        build_seg(s, 100 + s, (s - 1) * NREC + 1, NREC, -1, 0, NULL);
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    check_lsns(&l, 1, 3 * NREC);
    CHECK_EQ_INT(rep.segments, 3);
    CHECK_EQ_INT(rep.records, 3 * NREC);
    CHECK_EQ_INT(rep.max_lsn, 3 * NREC);
    CHECK_EQ_INT(rep.next_seq, 4);
    CHECK_EQ_INT(rep.stop_reason, 0);
    CHECK_EQ_INT(rep.discarded_bytes, 0);
    CHECK_EQ_INT(count_aside(), 0);
    walt_log_free(&l);

    /* min_seq: segment 1 is covered by a snapshot */
    CHECK_EQ_INT(l3_wal_replay_from(base, 2, walt_collect, &l, &rep), 0);
    check_lsns(&l, NREC + 1, 2 * NREC);
    CHECK_EQ_INT(rep.next_seq, 4);
    walt_log_free(&l);

    /* skipped count and callback abort */
    l.ret = 1;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(rep.skipped, 3 * NREC);
    walt_log_free(&l);
    l.ret = -EIO;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), -EIO);
    CHECK_EQ_INT(l.n, 1);
    walt_log_free(&l);

    /* no segments at all */
    clean_dir();
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(rep.records, 0);
    CHECK_EQ_INT(rep.next_seq, 1);
}

/* Cut the last record of the last segment at every byte offset. */
static void test_torn_tail(void)
{
    size_t last_off = 0;
    clean_dir();
    size_t size = build_seg(1, 55, 1, NREC, -1, 0, &last_off);
    char name[400];
    snprintf(name, sizeof name, "%s.%08llu", base, 1ull);
    uint8_t *orig = malloc(size);
    FILE *f = fopen(name, "rb");
    if (!f || fread(orig, 1, size, f) != size)
        exit(T_HARNESS_ERROR);
    fclose(f);
    for (size_t cut = last_off + 1; cut < size; cut++) {
        clean_dir();
        f = fopen(name, "wb");
        fwrite(orig, 1, cut, f);
        fclose(f);
        walt_log_t l = {0};
        l3_wal_replay_report_t rep;
        CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
        CHECK_EQ_INT(l.n, NREC - 1);
        CHECK_EQ_INT(rep.discarded_bytes, cut - last_off);
        CHECK_EQ_INT(rep.stop_offset, last_off);
        /* fewer than 8 bytes cannot hold the length word; more name a length the file lacks */
        CHECK_EQ_INT(rep.stop_reason, (cut - last_off < 8 ? -ENODATA : -EBADMSG));
        CHECK_EQ_INT(fsize(name), (off_t)last_off);
        CHECK_EQ_INT(count_aside(), 1);
        /* the aside file holds exactly the discarded bytes */
        CHECK_EQ_INT(fsize(rep.aside), (off_t)(cut - last_off));
        f = fopen(rep.aside, "rb");
        uint8_t tmp[4096];
        size_t got = f ? fread(tmp, 1, sizeof tmp, f) : 0;
        if (f)
            fclose(f);
        CHECK(got == cut - last_off && memcmp(tmp, orig + last_off, got) == 0);
        walt_log_free(&l);
        /* idempotent: a second replay is clean and equal */
        CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
        CHECK_EQ_INT(l.n, NREC - 1);
        CHECK_EQ_INT(rep.stop_reason, 0);
        walt_log_free(&l);
    }
    /* cut inside the header: whole file aside */
    clean_dir();
    f = fopen(name, "wb");
    fwrite(orig, 1, 30, f);
    fclose(f);
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(l.n, 0);
    CHECK_EQ_INT(fsize(name), -1);
    CHECK_EQ_INT(count_aside(), 1);
    CHECK_EQ_INT(rep.discarded_bytes, 30);
    free(orig);
}

static void test_bitflip_middle(void)
{
    clean_dir();
    size_t last_off = 0;
    for (uint64_t s = 1; s <= 3; s++)
        build_seg(s, 7 * s, (s - 1) * NREC + 1, NREC, -1, 0, s == 2 ? &last_off : NULL);
    /* flip a bit inside the 10th record of segment 2 */
    char name[400], name3[400];
    snprintf(name, sizeof name, "%s.%08llu", base, 2ull);
    snprintf(name3, sizeof name3, "%s.%08llu", base, 3ull);
    off_t size2 = fsize(name), size3 = fsize(name3);
    int fd = open(name, O_RDWR);
    uint8_t b[4096];
    CHECK(pread(fd, b, sizeof b, 0) == size2);
    size_t off = 64;
    for (int i = 0; i < 9; i++)
        off += ld_len(b + off);
    size_t rec10 = off;
    b[rec10 + 30] ^= 0x10;
    CHECK(pwrite(fd, b + rec10 + 30, 1, (off_t)rec10 + 30) == 1);
    close(fd);

    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    check_lsns(&l, 1, NREC + 9);
    CHECK_EQ_INT(rep.stop_reason, L3_ECORRUPT);
    CHECK_EQ_INT(rep.stop_offset, rec10);
    CHECK_EQ_INT(rep.discarded_bytes, (uint64_t)(size2 - (off_t)rec10) + (uint64_t)size3);
    CHECK_EQ_INT(rep.discarded_files, 2);
    CHECK_EQ_INT(fsize(name), (off_t)rec10);
    CHECK_EQ_INT(fsize(name3), -1); /* renamed aside, not deleted */
    CHECK_EQ_INT(count_aside(), 2);
    CHECK(rep.next_seq >= 4);
    walt_log_free(&l);
}

static void test_stale_salt(void)
{
    clean_dir();
    /* record 5 carries another segment's salt: a well-formed stale record */
    build_seg(1, 1234, 1, NREC, 5, 999, NULL);
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(l.n, 5);
    CHECK_EQ_INT(rep.stop_reason, -ESTALE);
    CHECK_EQ_INT(count_aside(), 1);
    walt_log_free(&l);
}

static void test_empty_segment(void)
{
    clean_dir();
    build_seg(1, 3, 1, NREC, -1, 0, NULL);
    char name[400];
    snprintf(name, sizeof name, "%s.%08llu", base, 2ull);
    FILE *f = fopen(name, "wb");
    fclose(f);
    walt_log_t l = {0};
    l3_wal_replay_report_t rep;
    CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
    CHECK_EQ_INT(l.n, NREC);
    CHECK_EQ_INT(rep.stop_reason, 0);
    CHECK_EQ_INT(fsize(name), -1);
    CHECK_EQ_INT(count_aside(), 0);
    CHECK_EQ_INT(rep.next_seq, 2); /* the removed number is reused: no gap */
    walt_log_free(&l);
}

static void test_dump(void)
{
    clean_dir();
    build_seg(1, 3, 1, 4, -1, 0, NULL);
    char name[400];
    snprintf(name, sizeof name, "%s.%08llu", base, 1ull);
    char *txt = NULL;
    size_t tlen = 0;
    FILE *out = open_memstream(&txt, &tlen);
    CHECK_EQ_INT(l3_wal_dump(name, out, 1), 0);
    fclose(out);
    CHECK(strstr(txt, "\"lsn\":4") != NULL);
    CHECK(strstr(txt, "\"records\":4") != NULL);
    CHECK(strstr(txt, "\"ok\":true") != NULL);
    free(txt);
    /* truncate one byte: bad tail reported */
    CHECK_EQ_INT(truncate(name, fsize(name) - 1), 0);
    out = open_memstream(&txt, &tlen);
    CHECK_EQ_INT(l3_wal_dump(name, out, 0), L3_ECORRUPT);
    fclose(out);
    CHECK(strstr(txt, "3 records") != NULL);
    CHECK(strstr(txt, "BAD at offset") != NULL);
    free(txt);
    CHECK_EQ_INT(l3_wal_dump("/nonexistent/x", stdout, 0), -ENOENT);
}

/* random damage (bit flips, overwritten ranges, truncation) never crashes replay or dump,
 * and replay always keeps a prefix of the original records */
static void test_random_damage(uint64_t *seed)
{
    for (int it = 0; it < 200; it++) {
        clean_dir();
        size_t size = build_seg(1, 77, 1, NREC, -1, 0, NULL);
        char name[400];
        snprintf(name, sizeof name, "%s.%08llu", base, 1ull);
        int fd = open(name, O_RDWR);
        uint8_t b[8192];
        if (pread(fd, b, sizeof b, 0) != (ssize_t)size)
            exit(T_HARNESS_ERROR);
        int kind = (int)(t_rand(seed) % 3);
        size_t at = (size_t)(t_rand(seed) % size);
        if (kind == 0) {
            b[at] ^= (uint8_t)(1u << (t_rand(seed) % 8));
        } else if (kind == 1) {
            size_t n = L3_MIN((size_t)(t_rand(seed) % 64) + 1, size - at);
            for (size_t i = 0; i < n; i++)
                b[at + i] = (uint8_t)t_rand(seed);
        }
        if (pwrite(fd, b, size, 0) != (ssize_t)size)
            exit(T_HARNESS_ERROR);
        if (kind == 2 && ftruncate(fd, (off_t)at) != 0)
            exit(T_HARNESS_ERROR);
        close(fd);
        FILE *devnull = fopen("/dev/null", "w");
        int drc = l3_wal_dump(name, devnull, it % 2);
        fclose(devnull);
        CHECK(drc == 0 || drc == L3_ECORRUPT);
        walt_log_t l = {0};
        l3_wal_replay_report_t rep;
        CHECK_EQ_INT(l3_wal_replay(base, walt_collect, &l, &rep), 0);
        CHECK(l.n <= NREC);
        int bad = 0;
        for (size_t i = 0; i < l.n; i++)
            bad += l.v[i].lsn != i + 1;
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(rep.bytes + rep.discarded_bytes, kind == 2 ? at : size);
        walt_log_free(&l);
    }
}

int main(void)
{
    uint64_t seed = t_seed();
    char *d = t_tmpdir();
    snprintf(dir, sizeof dir, "%s/wal", d);
    snprintf(base, sizeof base, "%s/data.wal", dir);
    test_clean();
    test_torn_tail();
    test_bitflip_middle();
    test_stale_salt();
    test_empty_segment();
    test_dump();
    test_random_damage(&seed);
    t_rmtree(d);
    free(d);
    return t_done();
}
