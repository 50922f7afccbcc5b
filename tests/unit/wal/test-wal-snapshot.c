/* SPDX-License-Identifier: MIT */
/*
 * test-wal-snapshot.c - snapshot format (write, load, layout, corruption anywhere rejects
 * the whole file before delivering anything, failed fsync leaves the old snapshot), and the
 * fuzzy checkpoint protocol against a model store: updates, deletes and re-creations run
 * while the snapshot scan is in progress; snapshot + replay of the segments from the
 * checkpoint's sequence, skipping records at or below a document's LSN, must rebuild
 * exactly the final state; covered segments are deleted by the writer.
 */
#include <sys/stat.h>

#include "l3kv/error.h"
#include "wal-int.h"
#include "walt.h"

static char dir[256], base[300], snap[300];

static void fresh_dir(void)
{
    t_rmtree(dir);
    if (mkdir(dir, 0755) != 0)
        exit(T_HARNESS_ERROR);
}

static off_t fsize(const char *name)
{
    struct stat st;
    return stat(name, &st) == 0 ? st.st_size : -1;
}

/* ---------------------------------------------------------------- format */

enum { NDOC = 200 };
static uint8_t *docs[NDOC];
static uint32_t dlen[NDOC];

static void make_docs(uint64_t *seed)
{
    for (int i = 0; i < NDOC; i++) {
        dlen[i] = (uint32_t)(i == 7 ? 3u * 1024 * 1024 : t_rand(seed) % 3000);
        docs[i] = malloc(dlen[i] + 1);
        for (uint32_t k = 0; k < dlen[i]; k++)
            docs[i][k] = (uint8_t)t_rand(seed);
    }
}

static int write_snap(const char *path)
{
    l3_wal_snap_writer_t *w;
    int rc = l3_wal_snapshot_begin(path, 9, 1000, &w);
    if (rc < 0)
        return rc;
    for (int i = 0; i < NDOC; i++) {
        char key[32];
        snprintf(key, sizeof key, "doc/%d", i);
        rc = l3_wal_snapshot_add(w, key, (uint32_t)strlen(key), docs[i], dlen[i], 10 + (uint64_t)i);
        if (rc < 0) {
            l3_wal_snapshot_abort(w);
            return rc;
        }
    }
    return l3_wal_snapshot_commit(w);
}

static void check_loaded(const walt_log_t *l)
{
    CHECK_EQ_INT(l->n, NDOC);
    int bad = 0;
    for (size_t i = 0; i < l->n && i < NDOC; i++) {
        char key[32];
        snprintf(key, sizeof key, "doc/%d", (int)i);
        if (strcmp(l->v[i].key, key) != 0 || l->v[i].plen != dlen[i] ||
            memcmp(l->v[i].payload, docs[i], dlen[i]) != 0 || l->v[i].lsn != 10 + i ||
            l->v[i].op != L3_WALOP_PUT)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

static int fail_fsync(int fd)
{
    (void)fd;
    return -EIO;
}

static int iter_n;
static int iter(void *ctx, l3_wal_rec_t *ret)
{
    (void)ctx;
    if (iter_n >= NDOC)
        return 0;
    static char key[32];
    snprintf(key, sizeof key, "doc/%d", iter_n);
    *ret = (l3_wal_rec_t){.op = L3_WALOP_PUT,
                          .lsn = 10 + (uint64_t)iter_n,
                          .key = key,
                          .klen = (uint32_t)strlen(key),
                          .payload = docs[iter_n],
                          .plen = dlen[iter_n]};
    iter_n++;
    return 1;
}

static void test_format(void)
{
    fresh_dir();
    walt_log_t l = {0};
    l3_wal_snap_info_t info;
    CHECK_EQ_INT(l3_wal_snapshot_load(snap, walt_collect, &l, &info), -ENOENT);
    CHECK_EQ_INT(write_snap(snap), 0);
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", snap);
    CHECK_EQ_INT(fsize(tmp), -1);
    CHECK_EQ_INT(l3_wal_snapshot_load(snap, walt_collect, &l, &info), 0);
    check_loaded(&l);
    CHECK_EQ_INT(info.wal_seq, 9);
    CHECK_EQ_INT(info.lsn, 1000);
    CHECK_EQ_INT(info.count, NDOC);
    CHECK_EQ_INT(info.bytes, (uint64_t)fsize(snap) - 64 - 32);
    walt_log_free(&l);

    /* header and trailer bytes as documented */
    size_t size = (size_t)fsize(snap);
    uint8_t *orig = malloc(size);
    FILE *f = fopen(snap, "rb");
    CHECK(f && fread(orig, 1, size, f) == size);
    fclose(f);
    CHECK(memcmp(orig, "L3KVSNP1", 8) == 0);
    CHECK(memcmp(orig + size - 32, "L3KVSNPE", 8) == 0);
    CHECK_EQ_INT(orig[size - 24], NDOC);
    uint32_t crc;
    memcpy(&crc, orig + 60, 4);
    CHECK_EQ_INT(crc, walt_crc32c(orig, 60));
    memcpy(&crc, orig + size - 4, 4);
    CHECK_EQ_INT(crc, walt_crc32c(orig + size - 32, 28));
    memcpy(&crc, orig + size - 8, 4);
    CHECK_EQ_INT(crc, walt_crc32c(orig + 64, size - 96));

    /* corruption anywhere: nothing delivered. A damaged magic (file header, a record's
     * header, the trailer) is -EBADMSG; any other flip fails a checksum: L3_ECORRUPT. */
    size_t offs[] = {3, 20, 61, 64, 100, 5000, size / 2, size - 40, size - 30, size - 20, size - 9, size - 1};
    const int want[] = {-EBADMSG,    L3_ECORRUPT, L3_ECORRUPT, -EBADMSG,    L3_ECORRUPT, L3_ECORRUPT,
                        L3_ECORRUPT, L3_ECORRUPT, -EBADMSG,    L3_ECORRUPT, L3_ECORRUPT, L3_ECORRUPT};
    for (size_t i = 0; i < L3_ARRAY_SIZE(offs); i++) {
        uint8_t *c = malloc(size);
        memcpy(c, orig, size);
        c[offs[i]] ^= 0x04;
        f = fopen(snap, "wb");
        fwrite(c, 1, size, f);
        fclose(f);
        int rc = l3_wal_snapshot_load(snap, walt_collect, &l, &info);
        CHECK_EQ_INT(rc, want[i]);
        CHECK_EQ_INT(l.n, 0);
        free(c);
    }
    /* truncations */
    size_t cuts[] = {0, 10, 64, 95, size / 3, size - 32, size - 1};
    for (size_t i = 0; i < L3_ARRAY_SIZE(cuts); i++) {
        f = fopen(snap, "wb");
        fwrite(orig, 1, cuts[i], f);
        fclose(f);
        int rc = l3_wal_snapshot_load(snap, walt_collect, &l, &info);
        CHECK_EQ_INT(rc, -EBADMSG); /* a short file or a record cut off by the trailer */
        CHECK_EQ_INT(l.n, 0);
    }
    /* dump verifies */
    f = fopen(snap, "wb");
    fwrite(orig, 1, size, f);
    fclose(f);
    char *txt = NULL;
    size_t tlen = 0;
    FILE *out = open_memstream(&txt, &tlen);
    CHECK_EQ_INT(l3_wal_dump(snap, out, 1), 0);
    fclose(out);
    CHECK(strstr(txt, "\"kind\":\"snapshot\"") != NULL && strstr(txt, "\"ok\":true") != NULL);
    CHECK(strstr(txt, "\"key\":\"doc/199\"") != NULL);
    free(txt);

    /* a failed fsync leaves the previous snapshot in place and no temp file */
    l3_wal_shim.fsync = fail_fsync;
    CHECK_EQ_INT(write_snap(snap), -EIO);
    l3_wal_shim_reset();
    CHECK_EQ_INT(fsize(tmp), -1);
    CHECK_EQ_INT(l3_wal_snapshot_load(snap, walt_collect, &l, &info), 0);
    check_loaded(&l);
    walt_log_free(&l);

    /* iterator form */
    unlink(snap);
    iter_n = 0;
    CHECK_EQ_INT(l3_wal_snapshot_write(snap, 9, 1000, iter, NULL), 0);
    CHECK_EQ_INT(l3_wal_snapshot_load(snap, walt_collect, &l, &info), 0);
    check_loaded(&l);
    walt_log_free(&l);
    free(orig);
}

/* ---------------------------------------------------------------- fuzzy checkpoint model */

enum { K = 64 };
typedef struct {
    int present;
    uint64_t lsn;
    uint64_t val;
} mdoc_t;

static mdoc_t model[K];
static uint64_t model_lsn;

/* one random store operation: applied to the model, then logged (as the store does) */
static void random_op(l3_wal_ring_t *r, uint64_t *seed)
{
    int k = (int)(t_rand(seed) % K);
    char key[16];
    snprintf(key, sizeof key, "k%d", k);
    uint64_t x = t_rand(seed) % 1000;
    unsigned what = (unsigned)(t_rand(seed) % 10);
    l3_wal_rec_t rec = {.key = key, .klen = (uint32_t)strlen(key)};
    uint64_t arg = x;
    if (what < 4) {
        rec.op = L3_WALOP_PUT;
        model[k].present = 1;
        model[k].val = x;
    } else if (what < 6) {
        if (!model[k].present)
            return; /* 404: nothing logged */
        rec.op = L3_WALOP_DELETE;
        model[k].present = 0;
    } else {
        if (!model[k].present)
            return;
        rec.op = L3_WALOP_SET; /* "add x" */
        model[k].val += x;
    }
    model[k].lsn = ++model_lsn;
    rec.lsn = model_lsn;
    rec.payload = &arg;
    rec.plen = rec.op == L3_WALOP_DELETE ? 0 : 8;
    int rc;
    while ((rc = l3_wal_hook(r, &rec)) == -EAGAIN) {
    }
    CHECK_EQ_INT(rc, 0);
}

static mdoc_t rec_state[K];

static int key_index(const l3_wal_rec_t *rec)
{
    char key[16];
    if (rec->klen < 2 || rec->klen >= sizeof key)
        return -1;
    memcpy(key, rec->key, rec->klen);
    key[rec->klen] = 0;
    return atoi(key + 1);
}

/* the store's replay rule: skip when the document's LSN >= the record's */
static int replay_cb(void *ctx, const l3_wal_rec_t *rec)
{
    int *skipped = ctx;
    int k = key_index(rec);
    if (k < 0 || k >= K)
        return -EBADMSG;
    mdoc_t *d = &rec_state[k];
    if (d->present && d->lsn >= rec->lsn) {
        (*skipped)++;
        return 1;
    }
    uint64_t arg = 0;
    if (rec->plen == 8)
        memcpy(&arg, rec->payload, 8);
    switch (rec->op) {
    case L3_WALOP_PUT:
        d->present = 1;
        d->val = arg;
        break;
    case L3_WALOP_DELETE:
        d->present = 0;
        break;
    case L3_WALOP_SET:
        if (!d->present)
            return 1; /* the document was deleted later (the snapshot reflects it) */
        d->val += arg;
        break;
    default:
        return -EBADMSG;
    }
    d->lsn = rec->lsn;
    return 0;
}

static uint64_t *scan_seed;
static l3_wal_ring_t *scan_ring;
static int skipped_total;

/* the scan: one document at a time, updates in between (before and after the cursor) */
static int scan_model(void *ctx, l3_wal_snap_writer_t *sw)
{
    (void)ctx;
    for (int k = 0; k < K; k++) {
        int n = (int)(t_rand(scan_seed) % 40);
        for (int i = 0; i < n; i++)
            random_op(scan_ring, scan_seed);
        if (model[k].present) {
            char key[16];
            snprintf(key, sizeof key, "k%d", k);
            int rc = l3_wal_snapshot_add(sw, key, (uint32_t)strlen(key), &model[k].val, 8, model[k].lsn);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static void test_fuzzy_checkpoint(uint64_t *seed, int trial)
{
    fresh_dir();
    memset(model, 0, sizeof model);
    memset(rec_state, 0, sizeof rec_state);
    model_lsn = 0;
    skipped_total = 0;
    unlink(snap);
    l3_wal_ring_t *r = walt_ring(4096 + 512 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r,
                              .wal_path = base,
                              .durability = trial % 2 ? L3_WAL_FSYNC : L3_WAL_BUFFERED,
                              .segment_bytes = 16 * 1024};
    pid_t w = walt_writer(&o, NULL);
    for (int i = 0; i < 3000; i++)
        random_op(r, seed);
    /* let the writer fill some segments first, so the checkpoint has something to delete */
    CHECK_EQ_INT(l3_wal_wait_durable(r, l3_wal_last_ticket(), 10000), 0);
    uint64_t seq = 0;
    if (trial % 3 == 2) {
        /* the one-call form */
        scan_seed = seed;
        scan_ring = r;
        CHECK_EQ_INT(l3_wal_checkpoint(r, snap, model_lsn, scan_model, NULL, 10000), 0);
    } else {
        CHECK_EQ_INT(l3_wal_checkpoint_begin(r, 10000, &seq), 0);
        l3_wal_snap_writer_t *sw;
        CHECK_EQ_INT(l3_wal_snapshot_begin(snap, seq, model_lsn, &sw), 0);
        scan_seed = seed;
        scan_ring = r;
        CHECK_EQ_INT(scan_model(NULL, sw), 0);
        CHECK_EQ_INT(l3_wal_snapshot_commit(sw), 0);
        l3_wal_checkpoint_commit(r, seq);
    }
    for (int i = 0; i < 2000; i++)
        random_op(r, seed);
    CHECK_EQ_INT(walt_stop(w), 0);
    /* recovery: snapshot, then the WAL from its sequence */
    l3_wal_recover_report_t rr;
    CHECK_EQ_INT(l3_wal_recover(base, snap, replay_cb, &skipped_total, &rr), 0);
    CHECK_EQ_INT(rr.have_snapshot, 1);
    if (seq)
        CHECK_EQ_INT(rr.snap.wal_seq, seq);
    seq = rr.snap.wal_seq;
    CHECK_EQ_INT(rr.wal.stop_reason, 0);
    CHECK_EQ_INT(rr.max_lsn, model_lsn);
    /* covered segments are gone, later ones remain */
    uint64_t *seqs = NULL;
    int n = l3_wal__list_segments(base, &seqs);
    CHECK(n > 0 && seqs[0] >= seq && seq > 1);
    free(seqs);
    int skipped = skipped_total;
    int diff = 0;
    for (int k = 0; k < K; k++) {
        if (rec_state[k].present != model[k].present)
            diff++;
        else if (model[k].present && (rec_state[k].val != model[k].val || rec_state[k].lsn != model[k].lsn))
            diff++;
    }
    CHECK_EQ_INT(diff, 0);
    CHECK(skipped > 0); /* the fuzzy window produced records the snapshot already had */
    if (trial == 0) {
        /* segments were deleted: a damaged snapshot must stop the start-up */
        FILE *f = fopen(snap, "r+b");
        fseek(f, 100, SEEK_SET);
        fputc(0x5A ^ fgetc(f), f);
        fclose(f);
        CHECK_EQ_INT(l3_wal_recover(base, snap, NULL, NULL, &rr), L3_ECORRUPT);
        CHECK(fsize(snap) > 0); /* left in place */
    }
    l3_wal_ring_detach(r);
}

/* a damaged snapshot while the WAL is still complete (starts at segment 1): set aside, full replay */
static void test_recover_bad_snapshot_complete_wal(void)
{
    fresh_dir();
    memset(model, 0, sizeof model);
    memset(rec_state, 0, sizeof rec_state);
    model_lsn = 0;
    uint64_t seed = 99;
    l3_wal_ring_t *r = walt_ring(4096 + 512 * 1024, NULL);
    l3_wal_writer_opts_t o = {.ring = r, .wal_path = base, .durability = L3_WAL_BUFFERED};
    pid_t w = walt_writer(&o, NULL);
    for (int i = 0; i < 500; i++)
        random_op(r, &seed);
    CHECK_EQ_INT(walt_stop(w), 0);
    FILE *f = fopen(snap, "wb");
    fputs("L3KVSNP1 but not really a snapshot, just garbage bytes ..........................", f);
    fclose(f);
    int skipped = 0;
    l3_wal_recover_report_t rr;
    CHECK_EQ_INT(l3_wal_recover(base, snap, replay_cb, &skipped, &rr), 0);
    CHECK_EQ_INT(rr.have_snapshot, 0);
    CHECK(rr.snap_aside[0] != 0 && fsize(rr.snap_aside) > 0);
    CHECK_EQ_INT(fsize(snap), -1);
    CHECK_EQ_INT(rr.max_lsn, model_lsn);
    int diff = 0;
    for (int k = 0; k < K; k++)
        diff += rec_state[k].present != model[k].present ||
                (model[k].present && rec_state[k].val != model[k].val);
    CHECK_EQ_INT(diff, 0);
    /* no snapshot at all: plain replay */
    memset(rec_state, 0, sizeof rec_state);
    CHECK_EQ_INT(l3_wal_recover(base, snap, replay_cb, &skipped, &rr), 0);
    CHECK_EQ_INT(rr.have_snapshot, 0);
    CHECK_EQ_INT(rr.wal.records, model_lsn);
    l3_wal_ring_detach(r);
}

/* The in-memory encoder (online backup): header, entries into small pieces, trailer; the
 * concatenation loads like a file from the writer, and verify_file refuses any flip. */
static void test_encoder(void)
{
    fresh_dir();
    l3_wal_snap_enc_t e;
    size_t cap = 64 + 32, len = 0;
    for (int i = 0; i < NDOC; i++)
        cap += (size_t)l3_wal_rec_size(16, dlen[i]);
    uint8_t *out = malloc(cap);
    CHECK(out != NULL);
    l3_wal_snap_enc_header(&e, 1, 777, out);
    len = 64;
    for (int i = 0; i < NDOC; i++) {
        char key[32];
        snprintf(key, sizeof key, "doc/%d", i);
        /* a piece too small is refused and changes nothing */
        CHECK_EQ_INT(l3_wal_snap_enc_add(&e, out + len, 8, key, (uint32_t)strlen(key), docs[i], dlen[i], 1, 0),
                     -ENOSPC);
        int64_t n = l3_wal_snap_enc_add(&e, out + len, cap - len, key, (uint32_t)strlen(key), docs[i],
                                        dlen[i], 10 + (uint64_t)i, 0);
        CHECK(n > 0);
        len += (size_t)n;
    }
    l3_wal_snap_enc_trailer(&e, out + len);
    len += 32;
    FILE *f = fopen(snap, "wb");
    CHECK(f && fwrite(out, 1, len, f) == len);
    fclose(f);
    l3_wal_snap_info_t info;
    uint64_t bad = 0;
    CHECK_EQ_INT(l3_wal_snapshot_verify_file(snap, &info, &bad), 0);
    CHECK_EQ_INT(info.lsn, 777);
    CHECK_EQ_INT(info.wal_seq, 1);
    walt_log_t l = {0};
    CHECK_EQ_INT(l3_wal_snapshot_load(snap, walt_collect, &l, &info), 0);
    check_loaded(&l);
    walt_log_free(&l);
    size_t at[] = {10, 33, 64 + 5, len / 2, len - 20, len - 2};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        out[at[k]] ^= 0x10;
        f = fopen(snap, "wb");
        CHECK(f && fwrite(out, 1, len, f) == len);
        fclose(f);
        CHECK(l3_wal_snapshot_verify_file(snap, &info, &bad) < 0);
        out[at[k]] ^= 0x10;
    }
    f = fopen(snap, "wb"); /* cut short */
    CHECK(f && fwrite(out, 1, len - 1, f) == len - 1);
    fclose(f);
    CHECK(l3_wal_snapshot_verify_file(snap, &info, &bad) < 0);
    CHECK_EQ_INT(l3_wal_snapshot_verify_file(dir, &info, &bad), -EINVAL); /* not a file */
    free(out);
}

int main(void)
{
    uint64_t seed = t_seed();
    char *d = t_tmpdir();
    snprintf(dir, sizeof dir, "%s/wal", d);
    snprintf(base, sizeof base, "%s/data.wal", dir);
    snprintf(snap, sizeof snap, "%s/snapshot.l3s", dir);
    make_docs(&seed);
    test_format();
    test_encoder();
    walt_need_uring();
    for (int trial = 0; trial < 6; trial++)
        test_fuzzy_checkpoint(&seed, trial);
    test_recover_bad_snapshot_complete_wal();
    for (int i = 0; i < NDOC; i++)
        free(docs[i]);
    t_rmtree(d);
    free(d);
    return t_done();
}
