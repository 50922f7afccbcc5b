/* SPDX-License-Identifier: MIT */
/*
 * snapshot.c - checkpoint snapshots (format in l3kv/wal.h): write to "<path>.tmp",
 * fdatasync, rename over <path>, fsync the directory; load with a full verification pass
 * before anything is delivered.
 *
 * Processes: the checkpointer (a child of the supervisor attached to the arena; the store's
 * per-document scan calls l3_wal_snapshot_add under each document's lock) and the
 * supervisor at recovery (load). Single-threaded per snapshot. File syscalls go through the
 * shim. A snapshot file is never modified after the rename; a crash before the rename leaves
 * only a stale .tmp that the next snapshot removes and creates afresh (O_EXCL|O_NOFOLLOW, 0600).
 *
 * Invariants: S1 <path> is either absent or a complete, verified snapshot (rename is atomic
 * and happens after the data is durable); S2 load delivers entries only from a file whose
 * header, every entry and the trailer verified.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "l3kv/error.h"
#include "wal-int.h"

#define SNAP_BUF (1u << 20)

struct l3_wal_snap_writer {
    char path[4096];
    char tmp[4200];
    int fd;
    uint64_t salt;
    uint64_t off; /* file offset of buf[0] */
    uint8_t *buf;
    size_t used;
    uint64_t count, bytes;
    uint32_t crc_all;
    int err;
};

static int flush_buf(l3_wal_snap_writer_t *w)
{
    size_t done = 0;
    while (done < w->used) {
        ssize_t n = l3_wal_shim.pwrite(w->fd, w->buf + done, w->used - done, (off_t)(w->off + done));
        if (n == -EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? (int)n : -EIO;
        done += (size_t)n;
    }
    w->off += w->used;
    w->used = 0;
    return 0;
}

static int put(l3_wal_snap_writer_t *w, const void *p, size_t len)
{
    const uint8_t *s = p;
    while (len) {
        if (w->used == SNAP_BUF) {
            int rc = flush_buf(w);
            if (rc < 0)
                return rc;
        }
        size_t k = L3_MIN(len, SNAP_BUF - w->used);
        memcpy(w->buf + w->used, s, k);
        w->used += k;
        s += k;
        len -= k;
    }
    return 0;
}

static void build_header(uint8_t h[L3_WAL_SNAP_HDR], uint64_t salt, uint64_t wal_seq, uint64_t lsn)
{
    memset(h, 0, L3_WAL_SNAP_HDR);
    memcpy(h, L3_WAL_SNAP_MAGIC, 8);
    l3_wal__st32(h + 8, L3_WAL_SNAP_VERSION);
    l3_wal__st32(h + 12, L3_WAL_SNAP_HDR);
    l3_wal__st64(h + 16, salt);
    l3_wal__st64(h + 24, wal_seq);
    l3_wal__st64(h + 32, lsn);
    l3_wal__st64(h + 40, l3_wall_ns());
    l3_wal__st32(h + 60, l3_crc32c(0, h, 60));
}

static void build_trailer(uint8_t t[L3_WAL_SNAP_TRAILER], uint64_t count, uint64_t bytes, uint32_t crc_all)
{
    memset(t, 0, L3_WAL_SNAP_TRAILER);
    memcpy(t, L3_WAL_SNAP_END_MAGIC, 8);
    l3_wal__st64(t + 8, count);
    l3_wal__st64(t + 16, bytes);
    l3_wal__st32(t + 24, crc_all);
    l3_wal__st32(t + 28, l3_crc32c(0, t, 28));
}

/* ---------------------------------------------------------------- in-memory encoder
 * The same bytes as the file writer, produced piece by piece into caller buffers (the
 * backup stream): header, entries, trailer. No file, no allocation. */

void l3_wal_snap_enc_header(l3_wal_snap_enc_t *e, uint64_t wal_seq, uint64_t lsn, uint8_t *out)
{
    memset(e, 0, sizeof *e);
    do
        l3_random_bytes(&e->salt, sizeof e->salt);
    while (e->salt == 0);
    build_header(out, e->salt, wal_seq, lsn);
}

int64_t l3_wal_snap_enc_add(l3_wal_snap_enc_t *e, uint8_t *out, size_t cap, const void *key, uint32_t klen,
                            const void *doc, uint32_t len, uint64_t lsn, unsigned flags)
{
    uint64_t size = l3_wal_rec_size(klen, len);
    if ((flags & ~(unsigned)L3_WAL_RF_EXPIRY) != 0 || ((flags & L3_WAL_RF_EXPIRY) && len < 8))
        return -EINVAL;
    if (size > L3_WAL_REC_MAX)
        return -EMSGSIZE;
    if (size > cap)
        return -ENOSPC;
    l3_wal_rec_t rec = {.op = L3_WALOP_PUT,
                        .flags = (uint8_t)flags,
                        .lsn = lsn,
                        .key = key,
                        .klen = klen,
                        .payload = doc,
                        .plen = len};
    int64_t n = l3_wal_rec_encode(out, cap, &rec, e->salt);
    if (n < 0)
        return n;
    e->crc_all = l3_crc32c(e->crc_all, out, (size_t)n);
    e->count++;
    e->bytes += (uint64_t)n;
    return n;
}

void l3_wal_snap_enc_trailer(const l3_wal_snap_enc_t *e, uint8_t *out)
{
    build_trailer(out, e->count, e->bytes, e->crc_all);
}

/* Maps the whole snapshot at `path` read-only (the descriptor is closed again). A file shorter than
 * a header and a trailer is -EBADMSG; with `regular_only`, anything but a regular file is -EINVAL. */
static int map_snapshot(const char *path, bool regular_only, const uint8_t **ret_p, uint64_t *ret_size)
{
    int fd = l3_wal_shim.open(path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    struct stat st;
    int e = fstat(fd, &st) < 0 ? -errno : regular_only && !S_ISREG(st.st_mode) ? -EINVAL : 0;
    if (e == 0 && (uint64_t)st.st_size < L3_WAL_SNAP_HDR + L3_WAL_SNAP_TRAILER)
        e = -EBADMSG;
    if (e < 0) {
        l3_wal_shim.close(fd);
        return e;
    }
    uint64_t size = (uint64_t)st.st_size;
    const uint8_t *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    l3_wal_shim.close(fd);
    if (p == MAP_FAILED)
        return -errno;
    *ret_p = p;
    *ret_size = size;
    return 0;
}

int l3_wal_snapshot_verify_file(const char *path, l3_wal_snap_info_t *ret_info, uint64_t *ret_bad_off)
{
    const uint8_t *p;
    uint64_t size, salt = 0, bad = 0;
    int e = map_snapshot(path, true, &p, &size);
    if (e < 0)
        return e;
    l3_wal_snap_info_t info;
    memset(&info, 0, sizeof info);
    int rc = l3_wal__snap_verify(p, size, &info, &salt, &bad);
    munmap((void *)p, size);
    if (ret_info)
        *ret_info = info;
    if (ret_bad_off)
        *ret_bad_off = bad;
    return rc;
}

int l3_wal_snapshot_begin(const char *path, uint64_t wal_seq, uint64_t lsn, l3_wal_snap_writer_t **ret_w)
{
    l3_wal_snap_writer_t *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->buf = malloc(SNAP_BUF);
    if (!w->buf) {
        free(w);
        return -ENOMEM;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    /* a stale .tmp (a checkpointer died) is removed, never written through: O_EXCL and
     * O_NOFOLLOW refuse whatever (symlink included) reappears at the name in between */
    (void)l3_wal_shim.unlink(w->tmp);
    w->fd = l3_wal_shim.open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, L3_WAL_FILE_MODE);
    if (w->fd < 0) {
        int rc = w->fd;
        free(w->buf);
        free(w);
        return rc;
    }
    do
        l3_random_bytes(&w->salt, sizeof w->salt);
    while (w->salt == 0);
    uint8_t h[L3_WAL_SNAP_HDR];
    build_header(h, w->salt, wal_seq, lsn);
    put(w, h, sizeof h); /* fits: the buffer is empty */
    *ret_w = w;
    return 0;
}

int l3_wal_snapshot_add(l3_wal_snap_writer_t *w, const void *key, uint32_t klen, const void *doc,
                        uint32_t len, uint64_t lsn)
{
    return l3_wal_snapshot_add_exp(w, key, klen, doc, len, lsn, 0);
}

static int add_rec(l3_wal_snap_writer_t *w, const l3_wal_rec_t *rec);

int l3_wal_snapshot_add_exp(l3_wal_snap_writer_t *w, const void *key, uint32_t klen, const void *doc,
                            uint32_t len, uint64_t lsn, uint64_t expire_ms)
{
    if (w->err)
        return w->err;
    l3_wal_rec_t rec = {
        .op = L3_WALOP_PUT, .lsn = lsn, .key = key, .klen = klen, .payload = doc, .plen = len};
    if (expire_ms == 0)
        return add_rec(w, &rec);
    if (len > UINT32_MAX - 8)
        return w->err = -EMSGSIZE;
    uint8_t *p = malloc((size_t)len + 8); /* the document, then its deadline (wal.h) */
    if (p == NULL)
        return w->err = -ENOMEM;
    memcpy(p, doc, len);
    l3_wal_put_deadline(p + len, expire_ms);
    rec.flags = L3_WAL_RF_EXPIRY;
    rec.payload = p;
    rec.plen = len + 8;
    int rc = add_rec(w, &rec);
    free(p);
    return rc;
}

static int add_rec(l3_wal_snap_writer_t *w, const l3_wal_rec_t *in)
{
    l3_wal_rec_t rec = *in;
    uint32_t klen = rec.klen, len = rec.plen;
    uint64_t size = l3_wal_rec_size(klen, len);
    if (size > L3_WAL_REC_MAX)
        return w->err = -EMSGSIZE;
    int rc = 0;
    if (size <= SNAP_BUF - w->used || size <= SNAP_BUF) {
        if (size > SNAP_BUF - w->used)
            rc = flush_buf(w);
        if (rc == 0) {
            l3_wal_rec_encode(w->buf + w->used, SNAP_BUF - w->used, &rec, w->salt);
            w->crc_all = l3_crc32c(w->crc_all, w->buf + w->used, size);
            w->used += size;
        }
    } else {
        uint8_t *big = malloc(size);
        if (!big)
            return w->err = -ENOMEM;
        l3_wal_rec_encode(big, size, &rec, w->salt);
        w->crc_all = l3_crc32c(w->crc_all, big, size);
        rc = put(w, big, size);
        free(big);
    }
    if (rc < 0)
        return w->err = rc;
    w->count++;
    w->bytes += size;
    return 0;
}

void l3_wal_snapshot_abort(l3_wal_snap_writer_t *w)
{
    if (!w)
        return;
    l3_wal_shim.close(w->fd);
    l3_wal_shim.unlink(w->tmp);
    free(w->buf);
    free(w);
}

int l3_wal_snapshot_commit(l3_wal_snap_writer_t *w)
{
    int rc = w->err;
    uint8_t t[L3_WAL_SNAP_TRAILER];
    build_trailer(t, w->count, w->bytes, w->crc_all);
    if (rc == 0)
        rc = put(w, t, sizeof t);
    if (rc == 0)
        rc = flush_buf(w);
    if (rc == 0)
        rc = l3_wal_shim.fsync(w->fd);
    int crc = l3_wal_shim.close(w->fd);
    if (rc == 0)
        rc = crc;
    if (rc == 0)
        rc = l3_wal_shim.rename(w->tmp, w->path);
    if (rc < 0)
        l3_wal_shim.unlink(w->tmp);
    else
        rc = l3_wal__fsync_dir_of(w->path);
    free(w->buf);
    free(w);
    return rc;
}

int l3_wal_snapshot_write(const char *path, uint64_t wal_seq, uint64_t lsn, l3_wal_snap_iter_fn it, void *ctx)
{
    l3_wal_snap_writer_t *w;
    int rc = l3_wal_snapshot_begin(path, wal_seq, lsn, &w);
    if (rc < 0)
        return rc;
    for (;;) {
        l3_wal_rec_t rec;
        rc = it(ctx, &rec);
        if (rc <= 0)
            break;
        rc = w->err ? w->err : add_rec(w, &rec); /* flags too: a deadline is in the payload */
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        l3_wal_snapshot_abort(w);
        return rc;
    }
    return l3_wal_snapshot_commit(w);
}

int l3_wal__snap_verify(const uint8_t *p, uint64_t size, l3_wal_snap_info_t *info, uint64_t *ret_salt,
                        uint64_t *ret_bad_off)
{
    *ret_bad_off = 0;
    if (size < L3_WAL_SNAP_HDR + L3_WAL_SNAP_TRAILER)
        return -EBADMSG;
    if (memcmp(p, L3_WAL_SNAP_MAGIC, 8) != 0 || l3_wal__ld32(p + 8) > L3_WAL_SNAP_VERSION ||
        l3_wal__ld32(p + 8) < L3_WAL_SNAP_VERSION_MIN || l3_wal__ld32(p + 12) != L3_WAL_SNAP_HDR)
        return -EBADMSG;
    if (l3_crc32c(0, p, 60) != l3_wal__ld32(p + 60))
        return L3_ECORRUPT;
    uint64_t salt = l3_wal__ld64(p + 16);
    info->wal_seq = l3_wal__ld64(p + 24);
    info->lsn = l3_wal__ld64(p + 32);
    info->ctime_ns = l3_wal__ld64(p + 40);
    uint64_t end = size - L3_WAL_SNAP_TRAILER, off = L3_WAL_SNAP_HDR, count = 0;
    uint32_t crc_all = 0;
    while (off < end) {
        l3_wal_rec_t rec;
        int64_t len = l3_wal_rec_decode(p + off, end - off, salt, &rec);
        if (len < 0 || rec.op != L3_WALOP_PUT || (rec.flags & ~(unsigned)L3_WAL_RF_EXPIRY) != 0 ||
            ((rec.flags & L3_WAL_RF_EXPIRY) && rec.plen < 8)) {
            *ret_bad_off = off;
            return len < 0 ? (int)len : -EBADMSG;
        }
        crc_all = l3_crc32c(crc_all, p + off, (size_t)len);
        off += (uint64_t)len;
        count++;
    }
    const uint8_t *t = p + end;
    *ret_bad_off = end;
    if (memcmp(t, L3_WAL_SNAP_END_MAGIC, 8) != 0)
        return -EBADMSG;
    if (l3_crc32c(0, t, 28) != l3_wal__ld32(t + 28))
        return L3_ECORRUPT;
    if (l3_wal__ld64(t + 8) != count || l3_wal__ld64(t + 16) != end - L3_WAL_SNAP_HDR ||
        l3_wal__ld32(t + 24) != crc_all)
        return L3_ECORRUPT;
    info->count = count;
    info->bytes = end - L3_WAL_SNAP_HDR;
    *ret_salt = salt;
    return 0;
}

int l3_wal_snapshot_load(const char *path, l3_wal_replay_fn fn, void *ctx, l3_wal_snap_info_t *ret_info)
{
    const uint8_t *p;
    uint64_t size;
    int e = map_snapshot(path, false, &p, &size);
    if (e < 0)
        return e;
    l3_wal_snap_info_t info;
    memset(&info, 0, sizeof info);
    uint64_t salt = 0, bad = 0;
    int rc = l3_wal__snap_verify(p, size, &info, &salt, &bad);
    if (rc == 0 && fn) {
        uint64_t off = L3_WAL_SNAP_HDR, end = size - L3_WAL_SNAP_TRAILER;
        while (off < end && rc == 0) {
            l3_wal_rec_t rec;
            int64_t len = l3_wal_rec_decode(p + off, end - off, salt, &rec);
            if (len <= 0) { /* the file changed under us after verification */
                rc = L3_ECORRUPT;
                break;
            }
            int cr = fn(ctx, &rec);
            if (cr < 0)
                rc = cr;
            off += (uint64_t)len;
        }
    }
    munmap((void *)p, size);
    if (rc == 0 && ret_info)
        *ret_info = info;
    return rc;
}
