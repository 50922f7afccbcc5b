/* SPDX-License-Identifier: MIT */
/*
 * shim.c - the syscall table of the WAL (l3_wal_shim, see wal-int.h) and small file helpers.
 * Runs in the writer, the supervisor (replay) and the checkpointer. The table is
 * process-global and written only by tests before they start the code under test.
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

#include "wal-int.h"

/* A file the WAL creates never follows a symlink and gets exactly `mode` (0600 for every
 * WAL file), whatever the process umask: fchmod after the open, before any byte is written. */
static int sys_open(const char *path, int flags, mode_t mode)
{
    if (flags & O_CREAT)
        flags |= O_NOFOLLOW;
    int fd = open(path, flags | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    if ((flags & O_CREAT) && fchmod(fd, mode) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}
static int sys_close(int fd)
{
    return close(fd) < 0 ? -errno : 0;
}
static int sys_ftruncate(int fd, off_t len)
{
    return ftruncate(fd, len) < 0 ? -errno : 0;
}
static int sys_rename(const char *a, const char *b)
{
    return rename(a, b) < 0 ? -errno : 0;
}
static int sys_unlink(const char *path)
{
    return unlink(path) < 0 ? -errno : 0;
}
static ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n = pwrite(fd, buf, len, off);
    return n < 0 ? -errno : n;
}
static int sys_fsync(int fd)
{
    return fsync(fd) < 0 ? -errno : 0;
}
static uint32_t id_write_len(uint64_t off, uint32_t len)
{
    (void)off;
    return len;
}
static int id_io_result(int op, uint64_t off, uint32_t len, int res)
{
    (void)op;
    (void)off;
    (void)len;
    return res;
}

l3_wal_shim_t l3_wal_shim = {sys_open,   sys_close, sys_ftruncate, sys_rename,  sys_unlink,
                             sys_pwrite, sys_fsync, id_write_len,  id_io_result};

void l3_wal_shim_reset(void)
{
    l3_wal_shim = (l3_wal_shim_t){sys_open,   sys_close, sys_ftruncate, sys_rename,  sys_unlink,
                                  sys_pwrite, sys_fsync, id_write_len,  id_io_result};
}

int l3_wal__seg_name(char *buf, size_t cap, const char *wal_path, uint64_t seq)
{
    int n = snprintf(buf, cap, "%s.%08" PRIu64, wal_path, seq);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

static void split_path(const char *path, char *dir, size_t dcap, const char **ret_base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, dcap, ".");
        *ret_base = path;
    } else if (slash == path) {
        snprintf(dir, dcap, "/");
        *ret_base = slash + 1;
    } else {
        snprintf(dir, dcap, "%.*s", (int)(slash - path), path);
        *ret_base = slash + 1;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int l3_wal__list_segments(const char *wal_path, uint64_t **ret_seqs)
{
    char dir[4096];
    const char *base;
    split_path(wal_path, dir, sizeof dir, &base);
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (strncmp(nm, base, blen) != 0 || nm[blen] != '.')
            continue;
        const char *s = nm + blen + 1;
        size_t digits = strspn(s, "0123456789");
        if (digits < 8 || digits > 19 || s[digits] != '\0')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = nv;
        }
        v[n++] = strtoull(s, NULL, 10);
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, cmp_u64);
    *ret_seqs = v;
    return (int)n;
}

int l3_wal__fsync_dir_of(const char *path)
{
    char dir[4096];
    const char *base;
    split_path(path, dir, sizeof dir, &base);
    int fd = l3_wal_shim.open(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    int rc = l3_wal_shim.fsync(fd);
    l3_wal_shim.close(fd);
    return rc;
}
