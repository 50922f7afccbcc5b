/* SPDX-License-Identifier: MIT */
/*
 * shim.c - the syscall table of the WAL (l3_wal_shim, see wal-int.h) and small file helpers.
 * Runs in the writer, the supervisor (replay) and the checkpointer. The table is
 * process-global and written only by tests before they start the code under test.
 *
 * Power-loss simulation (tests only; docs/wal.md 8.1). When the environment variable
 * L3KV_TEST_POWERLOSS="<n>:<seed>" is set at process start, a constructor wraps open and
 * io_result. For each data file the writer opens (at most PL_FILES), it records the end
 * of the completed writes and the end that a completed fdatasync covered. At the n-th
 * io_result (a write or an fsync completion; counted in the process that calls it, the
 * WAL writer) it simulates a power cut before that result is returned: every file is cut
 * back to its synced end plus, chosen by the seed, nothing, a random prefix of the unsynced
 * bytes, or all of them with one 512-byte sector inside them zeroed; then it SIGKILLs its
 * parent (the supervisor; the other children follow by PR_SET_PDEATHSIG) and itself.
 * Limits: names (create, rename, unlink) are taken as durable at once, an overwrite of
 * synced bytes keeps the new bytes, and any completed fsync counts for the current file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
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

/* ---------------------------------------------------------------- power-loss simulation */

#define PL_FILES 16

static struct {
    uint64_t left; /* io_result calls until the cut; 0 = off */
    uint64_t rnd;
    int cur; /* index of the file the writer writes to, -1 none */
    int n;
    struct {
        char path[4096];
        uint64_t written, synced;
    } f[PL_FILES];
} pl = {.cur = -1};

static uint64_t pl_rand(void)
{
    pl.rnd ^= pl.rnd << 13;
    pl.rnd ^= pl.rnd >> 7;
    pl.rnd ^= pl.rnd << 17;
    return pl.rnd;
}

static int pl_open(const char *path, int flags, mode_t mode)
{
    int fd = sys_open(path, flags, mode);
    if (fd < 0 || (flags & O_ACCMODE) == O_RDONLY || strlen(path) >= sizeof pl.f[0].path)
        return fd;
    int i = 0;
    while (i < pl.n && strcmp(pl.f[i].path, path) != 0)
        i++;
    if (i == pl.n) {
        if (pl.n == PL_FILES) { /* forget the oldest file (long since synced and closed) */
            memmove(&pl.f[0], &pl.f[1], sizeof pl.f[0] * (PL_FILES - 1));
            i = --pl.n;
        }
        struct stat st;
        uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        snprintf(pl.f[i].path, sizeof pl.f[i].path, "%s", path);
        pl.f[i].written = pl.f[i].synced = size; /* what exists at open is on disk */
        pl.n++;
    }
    pl.cur = i;
    return fd;
}

static void pl_cut(void)
{
    for (int i = 0; i < pl.n; i++) {
        uint64_t syn = pl.f[i].synced, wr = pl.f[i].written;
        if (wr <= syn)
            continue;
        int fd = open(pl.f[i].path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        uint64_t how = pl_rand() % 3, keep = syn;
        if (how == 1)
            keep = syn + pl_rand() % (wr - syn + 1);
        else if (how == 2)
            keep = wr;
        if (ftruncate(fd, (off_t)keep) == 0 && how == 2) {
            static const char zero[512];
            uint64_t at = syn + pl_rand() % (wr - syn);
            at &= ~(uint64_t)511;
            if (at < syn)
                at = syn;
            size_t len = (size_t)L3_MIN((uint64_t)sizeof zero, wr - at);
            if (pwrite(fd, zero, len, (off_t)at) < 0)
                (void)0;
        }
        (void)fsync(fd);
        close(fd);
    }
    kill(getppid(), SIGKILL);
    raise(SIGKILL);
}

static int pl_io_result(int op, uint64_t off, uint32_t len, int res)
{
    if (pl.cur >= 0 && op == L3_WAL_IO_WRITE && res > 0 && off + (uint64_t)res > pl.f[pl.cur].written)
        pl.f[pl.cur].written = off + (uint64_t)res;
    if (--pl.left == 0)
        pl_cut(); /* before the result is seen: an fsync that completes now does not count */
    if (pl.cur >= 0 && op == L3_WAL_IO_FSYNC && res == 0)
        pl.f[pl.cur].synced = pl.f[pl.cur].written;
    (void)len;
    return res;
}

__attribute__((constructor)) static void pl_init(void)
{
    const char *e = getenv("L3KV_TEST_POWERLOSS");
    unsigned long long n, seed;
    if (e == NULL || sscanf(e, "%llu:%llu", &n, &seed) != 2 || n == 0)
        return;
    pl.left = n;
    pl.rnd = seed * 2654435761u + 0x9e3779b97f4a7c15ull;
    l3_wal_shim.open = pl_open;
    l3_wal_shim.io_result = pl_io_result;
}
