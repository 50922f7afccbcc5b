/* SPDX-License-Identifier: MIT */
/*
 * feedstat.c - the change feed's shared counters (layout drawn in feedstat.h).
 * Process: created in the supervisor before the first fork; each worker writes its own
 * slot's block; any worker reads all of them for /metrics.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "feedstat.h"
#include "l3kv/base.h"

_Static_assert(sizeof(l3_feed_slot_stats_t) == 64, "feed stats slot layout");
_Static_assert(sizeof(l3_feed_stats_t) == 64 + 64 * L3_SRV_MAX_WORKERS, "feed stats layout");
_Static_assert(offsetof(l3_feed_stats_t, fh_retain) == 40, "feed stats layout");

static uint32_t hdr_crc(const l3_feed_stats_t *fs)
{
    return l3_crc32c(0, fs, 32);
}

l3_feed_stats_t *l3_feed_stats_create(void)
{
    l3_feed_stats_t *fs =
        mmap(NULL, sizeof(l3_feed_stats_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (fs == MAP_FAILED)
        return NULL;
    fs->fh_magic = L3_FEED_STATS_MAGIC;
    fs->fh_version = L3_FEED_STATS_VERSION;
    fs->fh_nslots = L3_SRV_MAX_WORKERS;
    fs->fh_crc = hdr_crc(fs);
    return fs;
}

static int valid(const l3_feed_stats_t *fs)
{
    return fs != NULL && fs->fh_magic == L3_FEED_STATS_MAGIC && fs->fh_version == L3_FEED_STATS_VERSION &&
           fs->fh_nslots == L3_SRV_MAX_WORKERS && fs->fh_crc == hdr_crc(fs);
}

void l3_feed_stats_set_prev(l3_feed_stats_t *fs, uint64_t epoch, uint64_t end)
{
    fs->fh_prev_epoch = epoch;
    fs->fh_prev_end = end;
    fs->fh_crc = hdr_crc(fs);
}

int l3_feed_stats_prev(const l3_feed_stats_t *fs, uint64_t *ret_epoch, uint64_t *ret_end)
{
    if (!valid(fs) || fs->fh_prev_epoch == 0)
        return 0;
    *ret_epoch = fs->fh_prev_epoch;
    *ret_end = fs->fh_prev_end;
    return 1;
}

#define FPOS_MAGIC "L3KVFPS1"
#define FPOS_VERSION 1u
#define FPOS_BYTES 64u

static void st64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int sync_dir_of(const char *path)
{
    char d[4096];
    if (strlen(path) >= sizeof d)
        return -ENAMETOOLONG;
    strcpy(d, path);
    return l3_fsync_dir(dirname(d));
}

int l3_feed_pos_save(const char *path, uint64_t epoch, uint64_t end, uint64_t wal_id)
{
    uint8_t b[FPOS_BYTES];
    memset(b, 0, sizeof b);
    memcpy(b, FPOS_MAGIC, 8);
    uint32_t v = FPOS_VERSION;
    memcpy(b + 8, &v, 4);
    st64(b + 16, epoch);
    st64(b + 24, end);
    st64(b + 32, wal_id);
    uint32_t crc = l3_crc32c(0, b, 60);
    memcpy(b + 60, &crc, 4);
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = write(fd, b, sizeof b) == (ssize_t)sizeof b ? 0 : -EIO;
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        (void)unlink(tmp);
        return rc;
    }
    return sync_dir_of(path);
}

int l3_feed_pos_take(const char *path, uint64_t wal_id, uint64_t *ret_epoch, uint64_t *ret_end)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    uint8_t b[FPOS_BYTES];
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    uint32_t v = 0, crc = 0;
    if (n == (ssize_t)sizeof b) {
        memcpy(&v, b + 8, 4);
        memcpy(&crc, b + 60, 4);
    }
    int ok = n == (ssize_t)sizeof b && memcmp(b, FPOS_MAGIC, 8) == 0 && v == FPOS_VERSION &&
             crc == l3_crc32c(0, b, 60) && ld64(b + 32) == wal_id && ld64(b + 16) != 0;
    if (unlink(path) < 0 || sync_dir_of(path) < 0)
        return -EIO; /* it might be read again after a later crash: do not use it */
    if (!ok)
        return 0;
    *ret_epoch = ld64(b + 16);
    *ret_end = ld64(b + 24);
    return 1;
}

l3_feed_slot_stats_t *l3_feed_stats_slot(l3_feed_stats_t *fs, uint32_t slot)
{
    if (!valid(fs) || slot >= fs->fh_nslots)
        return NULL;
    return &fs->fh_slot[slot];
}

void l3_feed_stats_totals(const l3_feed_stats_t *fs, l3_feed_totals_t *ret)
{
    memset(ret, 0, sizeof *ret);
    if (!valid(fs))
        return;
    for (uint32_t i = 0; i < fs->fh_nslots; i++) {
        const l3_feed_slot_stats_t *s = &fs->fh_slot[i];
        int64_t w = __atomic_load_n(&s->fs_watchers, __ATOMIC_RELAXED);
        ret->watchers += w > 0 ? (uint64_t)w : 0;
        ret->events_sent += __atomic_load_n(&s->fs_events_total, __ATOMIC_RELAXED);
        ret->resets += __atomic_load_n(&s->fs_resets_total, __ATOMIC_RELAXED);
    }
}
