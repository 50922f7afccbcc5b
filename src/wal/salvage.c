/* SPDX-License-Identifier: MIT */
/*
 * salvage.c - carry the ring of an instance whose processes all died (whole-service
 * SIGKILL, OOM kill of the process group) into its WAL before recovery.
 *
 * In buffered mode a write is acknowledged once its record is PUBLISHED in the ring, which
 * lives in the store arena in /dev/shm and outlives the processes. The next start finds that
 * arena; instead of deleting it, the supervisor passes its WAL region here (read-only
 * mapping) before l3_wal_recover, so only an OS crash or power loss can lose an
 * acknowledged buffered write.
 *
 * Process: the new supervisor, single-threaded, before any child exists; the old ring has
 * no live process (the caller checked the supervisor, and this file checks the writer and
 * every producer of the probe table: any live one and nothing is done, -EBUSY). File
 * syscalls go through the shim.
 *
 * What is appended: the slots in [rc_tail, rh_head) of the current progress record
 * (rh_commit, wal-int.h), in ring order, that are PUBLISHED, each verified (slot bounds, the
 * producer's partial CRC, then the whole record decoded after sealing); the first slot that
 * fails ends the salvage (later ones are not trusted). RESERVED slots are mutations whose
 * producer died before the commit point and are dropped; PAD and ABORTED hold nothing.
 *
 * No duplicates: the progress record pairs rc_tail with (rc_seg_seq, rc_seg_off), exactly as a
 * restarted writer adopts it (writer.c adopt): every record before rc_tail is in the segment
 * files below rc_seg_off, every record from rc_tail on is still in the ring (its space is
 * released only after the commit). Bytes the dead writer wrote past rc_seg_off are records
 * from rc_tail on: the salvaged records go to a new segment (max seq + 1, fresh salt),
 * fdatasync'd with the directory, and only then is the old segment cut to rc_seg_off (they
 * are rewritten from the ring; a torn one there would otherwise end the log before the new
 * segment). When the new segment cannot be written (a full disk) nothing is cut.
 *
 * Identity: the ring belongs to this WAL if its rh_wal_id equals l3_wal_path_id(wal_path)
 * (set by the supervisor that formatted it). A ring without an id (0) belongs to it only if
 * segment rc_seg_seq exists, is past its header and carries rc_salt (64 random bits).
 * Otherwise (another data directory) it is left alone (-ESRCH). A writer that died while
 * creating a segment (rc_seg_off < 64) had written nothing from rc_tail on: nothing is cut.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "l3kv/error.h"
#include "wal-int.h"

#define SALVAGE_BUF (1u << 20)

typedef struct {
    int fd;
    uint64_t off, salt;
    uint8_t *buf;
    size_t used;
} out_t;

static int out_flush(out_t *o)
{
    size_t done = 0;
    while (done < o->used) {
        ssize_t n = l3_wal_shim.pwrite(o->fd, o->buf + done, o->used - done, (off_t)(o->off + done));
        if (n == -EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? (int)n : -EIO;
        done += (size_t)n;
    }
    o->off += o->used;
    o->used = 0;
    return 0;
}

/* Check that the ring region is a formatted ring whose writer and producers are all dead. */
static int ring_check(const l3_wal_shm_t *sh, size_t len)
{
    if (len < L3_WAL_RING_HDR || sh->rh_magic != L3_WAL_RING_MAGIC || sh->rh_version != L3_WAL_RING_VERSION ||
        sh->rh_hdr_bytes != L3_WAL_RING_HDR || sh->rh_data_bytes == 0 || (sh->rh_data_bytes & 63u) ||
        sh->rh_data_bytes > len - L3_WAL_RING_HDR)
        return -EBADMSG;
    uint32_t wp = atomic_load(&sh->rh_writer_pid);
    if (wp != 0 && !l3_wal__pid_dead(wp))
        return -EBUSY;
    for (unsigned i = 0; i < L3_WAL_PROD_MAX; i++) {
        uint32_t pid = atomic_load(&sh->rh_prod[i].pe_pid);
        if (pid != 0 && !l3_wal__pid_dead(pid))
            return -EBUSY;
    }
    return 0;
}

/* The segment named by the progress record, if it is this ring's: its size, or -ESRCH.
 * cut: truncate it to rc_seg_off (only once the salvaged records are durable elsewhere). */
static int seg_claim(const char *wal_path, const l3_wal_commit_t *c, int cut, int id_ok)
{
    char name[4096];
    if (c->rc_seg_seq == 0 || c->rc_seg_off < L3_WAL_SEG_HDR)
        return id_ok ? 0 : -ESRCH; /* no segment yet, or one being created: nothing past the tail */
    int rc = l3_wal__seg_name(name, sizeof name, wal_path, c->rc_seg_seq);
    if (rc < 0)
        return rc;
    int fd = l3_wal_shim.open(name, O_RDWR, 0);
    if (fd < 0)
        return fd == -ENOENT && !id_ok ? -ESRCH : fd == -ENOENT ? 0 : fd;
    uint8_t hdr[L3_WAL_SEG_HDR];
    l3_wal_seg_hdr_t h;
    struct stat st;
    if (pread(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
        l3_wal_seg_hdr_decode(hdr, sizeof hdr, &h) < 0 || h.salt != c->rc_salt || h.seq != c->rc_seg_seq ||
        fstat(fd, &st) < 0 || (uint64_t)st.st_size < c->rc_seg_off) {
        l3_wal_shim.close(fd);
        return -ESRCH;
    }
    rc = 0;
    if (cut && (uint64_t)st.st_size > c->rc_seg_off) {
        rc = l3_wal_shim.ftruncate(fd, (off_t)c->rc_seg_off); /* shrinking needs no space */
        if (rc == 0)
            rc = l3_wal_shim.fsync(fd);
    }
    l3_wal_shim.close(fd);
    return rc;
}

static int out_open(out_t *o, const char *wal_path, uint64_t tail, char *ret_name, size_t cap,
                    uint64_t *ret_seq)
{
    uint64_t *seqs = NULL;
    int n = l3_wal__list_segments(wal_path, &seqs);
    if (n < 0)
        return n;
    uint64_t seq = n > 0 ? seqs[n - 1] + 1 : 1;
    free(seqs);
    int rc = l3_wal__seg_name(ret_name, cap, wal_path, seq);
    if (rc < 0)
        return rc;
    o->fd = l3_wal_shim.open(ret_name, O_WRONLY | O_CREAT | O_EXCL, L3_WAL_FILE_MODE);
    if (o->fd < 0)
        return o->fd;
    do
        l3_random_bytes(&o->salt, sizeof o->salt);
    while (o->salt == 0);
    l3_wal_seg_hdr_t h = {.salt = o->salt, .seq = seq, .ctime_ns = l3_wall_ns(), .ring_pos = tail};
    l3_wal_seg_hdr_encode(o->buf, &h);
    o->used = L3_WAL_SEG_HDR;
    *ret_seq = seq;
    return 0;
}

/* Verify the slot at pos and append its record; 1 taken, 0 nothing to take, < 0 stop. */
static int take_slot(const l3_wal_shm_t *sh, const uint8_t *data, uint64_t pos, uint64_t head, out_t *o,
                     uint32_t *ret_slen)
{
    uint64_t size = sh->rh_data_bytes, at = pos % size;
    if (at + L3_WAL_SLOT_HDR > size)
        return -EBADMSG;
    const l3_wal_slot_t *s = (const l3_wal_slot_t *)(const void *)(data + at);
    uint32_t st = atomic_load(&((l3_wal_slot_t *)s)->rs_state), slen = s->rs_len;
    if (slen < L3_WAL_SLOT_HDR || (slen & 7u) || slen > head - pos || at + slen > size)
        return -EBADMSG;
    *ret_slen = slen;
    if (st == L3_WAL_SLOT_PAD || st == L3_WAL_SLOT_ABORTED || st == L3_WAL_SLOT_RESERVED)
        return 0;
    if (st != L3_WAL_SLOT_PUBLISHED)
        return -EBADMSG;
    const uint8_t *rec = (const uint8_t *)s + L3_WAL_SLOT_HDR;
    uint32_t rlen = l3_wal__ld32(rec);
    if (rlen < L3_WAL_REC_MIN || (rlen & 7u) || rlen > slen - L3_WAL_SLOT_HDR ||
        l3_crc32c(0, rec + 8, rlen - 16) != l3_wal__ld32(rec + 4))
        return L3_ECORRUPT;
    if (o->used + rlen > SALVAGE_BUF) {
        int rc = rlen > SALVAGE_BUF ? -EMSGSIZE : out_flush(o);
        if (rc < 0)
            return rc;
    }
    uint8_t *dst = o->buf + o->used;
    memcpy(dst, rec, rlen);
    l3_wal__rec_seal(dst, rlen, o->salt);
    if (l3_wal_rec_decode(dst, rlen, o->salt, NULL) != (int64_t)rlen)
        return L3_ECORRUPT;
    o->used += rlen;
    return 1;
}

uint64_t l3_wal_path_id(const char *wal_path)
{
    char dir[4096], real[4096];
    snprintf(dir, sizeof dir, "%s", wal_path);
    char *slash = strrchr(dir, '/');
    const char *base = wal_path;
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        base = wal_path + (slash - dir) + 1;
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    if (realpath(dir, real) == NULL)
        snprintf(real, sizeof real, "%s", dir);
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = real; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    h = (h ^ '/') * 0x100000001b3ull;
    for (const char *p = base; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    return h ? h : 1;
}

int l3_wal_salvage(const void *region, size_t len, const char *wal_path, l3_wal_salvage_report_t *ret)
{
    l3_wal_salvage_report_t rep;
    memset(&rep, 0, sizeof rep);
    const l3_wal_shm_t *sh = region;
    int rc = ring_check(sh, len);
    if (rc < 0)
        return rc;
    const l3_wal_commit_t *cp = &sh->rh_commit[atomic_load(&((l3_wal_shm_t *)sh)->rh_commit_idx) & 1u];
    l3_wal_commit_t c = *cp;
    uint64_t head = atomic_load(&((l3_wal_shm_t *)sh)->rh_head);
    if (head < c.rc_tail || head - c.rc_tail > sh->rh_data_bytes)
        return -EBADMSG;
    int id_ok = sh->rh_wal_id != 0 && sh->rh_wal_id == l3_wal_path_id(wal_path);
    if (sh->rh_wal_id != 0 && !id_ok)
        return -ESRCH;
    if ((rc = seg_claim(wal_path, &c, 0, id_ok)) < 0)
        return rc;
    rep.ring_bytes = head - c.rc_tail;
    if (head == c.rc_tail) {
        if (ret)
            *ret = rep;
        return 0;
    }
    out_t o = {.fd = -1, .buf = malloc(SALVAGE_BUF)};
    if (o.buf == NULL)
        return -ENOMEM;
    rc = out_open(&o, wal_path, c.rc_tail, rep.segment, sizeof rep.segment, &rep.seq);
    const uint8_t *data = (const uint8_t *)region + L3_WAL_RING_HDR;
    for (uint64_t pos = c.rc_tail; rc == 0 && pos < head;) {
        uint32_t slen = 0;
        int t = take_slot(sh, data, pos, head, &o, &slen);
        if (t < 0) {
            rep.stopped_at = pos;
            rep.stop_reason = t;
            break;
        }
        rep.records += (uint64_t)t;
        pos += slen;
    }
    if (rc == 0)
        rc = out_flush(&o);
    if (rc == 0)
        rc = l3_wal_shim.fsync(o.fd);
    if (o.fd >= 0)
        l3_wal_shim.close(o.fd);
    free(o.buf);
    if ((rc < 0 || rep.records == 0) && rep.segment[0] != 0) { /* nothing published: no segment */
        l3_wal_shim.unlink(rep.segment);
        rep.segment[0] = 0;
        rep.seq = 0;
    }
    if (rc == 0)
        rc = l3_wal__fsync_dir_of(wal_path);
    /* only now, with the records durable in the new segment, the dead writer's uncommitted
     * bytes go (a crash in between replays some records twice, in order: harmless, the
     * store skips what it has) */
    if (rc == 0 && rep.stop_reason == 0) /* after a bad slot the file's copies may be all there is */
        rc = seg_claim(wal_path, &c, 1, id_ok);
    if (rc < 0)
        return rc;
    if (ret)
        *ret = rep;
    return 0;
}
