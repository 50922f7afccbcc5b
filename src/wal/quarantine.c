/* SPDX-License-Identifier: MIT */
/*
 * quarantine.c - records that recovery could read but not apply, set aside under
 * <data_dir>/quarantine/ so that one bad record never keeps the service from starting
 * (format in l3kv/wal.h, "quarantine file"; docs/wal.md section 5).
 *
 * Process: the supervisor during recovery (writes), l3kv-inspect (lists). Single-threaded.
 * File syscalls go through the shim. A quarantine file is written once (O_EXCL, 0600),
 * fsync'd with its directory before recovery goes on, and never modified; the operator
 * removes it after dealing with it.
 * Invariant: Q1 a quarantine file is complete and verified by its CRCs, or recovery stopped
 * (a file that cannot be written is removed and its error returned).
 */
#include <dirent.h>
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

#define QDIR_MAX_FILES 100000u /* a listing reads at most this many names */

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

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int l3_wal_quarantine_dump(const char *dir, FILE *out, int json)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -errno;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < QDIR_MAX_FILES) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".l3q") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(names, cap * sizeof *nv);
            if (nv == NULL) {
                rc = -ENOMEM;
                break;
            }
            names = nv;
        }
        if ((names[n] = strdup(de->d_name)) == NULL) {
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        int r = l3_wal_dump(path, out, json);
        if (r < 0 && rc == 0)
            rc = r;
        free(names[i]);
    }
    free(names);
    if (rc == 0) {
        if (json)
            fprintf(out, "{\"quarantine\":true,\"files\":%zu}\n", n);
        else
            fprintf(out, "quarantine %s: %zu file(s)\n", dir, n);
    }
    return rc;
}
