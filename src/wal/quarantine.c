/* SPDX-License-Identifier: MIT */
/*
 * quarantine.c - records that recovery could read but not apply, set aside under
 * <data_dir>/quarantine/ so that one bad record never keeps the service from starting
 * (format in l3kv/wal.h, "quarantine file"; docs/wal.md section 5).
 *
 * Process: the supervisor during recovery (writes); l3kv-inspect lists and dumps the files
 * (dump.c). Single-threaded.
 * File syscalls go through the shim. A quarantine file is written once (O_EXCL, 0600),
 * fsync'd with its directory before recovery goes on, and never modified; the operator
 * removes it after dealing with it.
 * Invariant: Q1 a quarantine file is complete and verified by its CRCs, or recovery stopped
 * (a file that cannot be written is removed and its error returned).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "l3kv/error.h"
#include "wal-int.h"

static int write_all(int fd, const uint8_t *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = l3_wal_shim.pwrite(fd, p + done, len - done, (off_t)done);
        if (n == -EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? (int)n : -EIO;
        done += (size_t)n;
    }
    return 0;
}

int l3_wal_quarantine_put(const char *dir, unsigned source, int error, const l3_wal_rec_t *rec,
                          char *ret_name, size_t cap)
{
    uint64_t rlen = l3_wal_rec_size(rec->klen, rec->plen);
    if (rlen > L3_WAL_REC_MAX)
        return -EMSGSIZE;
    if (mkdir(dir, 0700) == 0)
        (void)chmod(dir, 0700);
    else if (errno != EEXIST)
        return -errno;
    size_t size = L3_WAL_QUAR_HDR + (size_t)rlen;
    uint8_t *buf = malloc(size);
    if (buf == NULL)
        return -ENOMEM;
    uint8_t *h = buf;
    memset(h, 0, L3_WAL_QUAR_HDR);
    memcpy(h, L3_WAL_QUAR_MAGIC, 8);
    l3_wal__st32(h + 8, L3_WAL_QUAR_VERSION);
    l3_wal__st32(h + 12, L3_WAL_QUAR_HDR);
    l3_wal__st32(h + 16, source);
    l3_wal__st32(h + 20, (uint32_t)error);
    l3_wal__st64(h + 24, rec->lsn);
    l3_wal__st64(h + 32, l3_wall_ns());
    l3_wal__st32(h + 40, (uint32_t)rlen);
    l3_wal_rec_encode(buf + L3_WAL_QUAR_HDR, (size_t)rlen, rec, 0);
    l3_wal__st32(h + 44, l3_crc32c(0, buf + L3_WAL_QUAR_HDR, (size_t)rlen));
    l3_wal__st32(h + 60, l3_crc32c(0, h, 60));
    char name[4200];
    int fd = -EEXIST;
    for (unsigned i = 0; i < 1000 && fd == -EEXIST; i++) {
        int n = snprintf(name, sizeof name, "%s/%" PRIu64 "-lsn%" PRIu64 "-%u.l3q", dir,
                         l3_wall_ns() / 1000000000u, rec->lsn, i);
        if (n < 0 || (size_t)n >= sizeof name) {
            free(buf);
            return -ENAMETOOLONG;
        }
        fd = l3_wal_shim.open(name, O_WRONLY | O_CREAT | O_EXCL, L3_WAL_FILE_MODE);
    }
    if (fd < 0) {
        free(buf);
        return fd;
    }
    int rc = write_all(fd, buf, size);
    free(buf);
    if (rc == 0)
        rc = l3_wal_shim.fsync(fd);
    l3_wal_shim.close(fd);
    if (rc == 0)
        rc = l3_wal__fsync_dir_of(name);
    if (rc < 0) {
        l3_wal_shim.unlink(name);
        return rc;
    }
    if (ret_name && cap) {
        size_t n = strnlen(name, cap - 1);
        memcpy(ret_name, name, n);
        ret_name[n] = 0;
    }
    return 0;
}

int l3_wal__quar_verify(const uint8_t *p, uint64_t size, l3_wal_rec_t *ret_rec)
{
    if (size < L3_WAL_QUAR_HDR || memcmp(p, L3_WAL_QUAR_MAGIC, 8) != 0 ||
        l3_wal__ld32(p + 8) != L3_WAL_QUAR_VERSION || l3_wal__ld32(p + 12) != L3_WAL_QUAR_HDR)
        return -EBADMSG;
    if (l3_crc32c(0, p, 60) != l3_wal__ld32(p + 60))
        return L3_ECORRUPT;
    uint32_t rlen = l3_wal__ld32(p + 40);
    if (rlen != size - L3_WAL_QUAR_HDR || l3_crc32c(0, p + L3_WAL_QUAR_HDR, rlen) != l3_wal__ld32(p + 44))
        return L3_ECORRUPT;
    int64_t n = l3_wal_rec_decode(p + L3_WAL_QUAR_HDR, rlen, 0, ret_rec);
    return n < 0 ? (int)n : 0;
}
