/* SPDX-License-Identifier: MIT */
/*
 * restore.c - `l3kv --restore FILE [--force] [config]`: install a backup (GET /admin/backup,
 * the snapshot format of l3kv/wal.h) as the snapshot of the configured data directory, so
 * that the next start recovers from it.
 *
 * Runs in the l3kv process alone, before (instead of) the supervisor; no arena, no worker.
 * Steps: verify FILE completely (magic, version, header CRC, every entry's CRC and salt,
 * the trailer's counts and CRC); refuse a data directory that holds anything, or a WAL
 * path with segments, unless --force (then the snapshot and the WAL segments are removed,
 * nothing else); copy FILE to "<data_dir>/l3kv.snap.tmp" (O_EXCL|O_NOFOLLOW, 0600), fsync,
 * verify the copy, rename it to l3kv.snap, fsync the directory. A crash at any step leaves
 * either the old state or a stale .tmp that recovery never reads.
 *
 * The server must not be running on that directory (a running instance would go on writing
 * its own WAL). Exit codes: 0 restored, 1 I/O failure, 2 refused (invalid backup, non-empty
 * directory without --force, unsafe paths).
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

#include "l3kv/base.h"
#include "l3kv/wal.h"
#include "l3kv/error.h"
#include "log.h"
#include "restore.h"

#define COPY_BUF (1u << 20)

/* Is name "<base>.<anything>" (a WAL segment or one set aside)? */
static bool wal_file(const char *name, const char *base)
{
    size_t n = strlen(base);
    return strncmp(name, base, n) == 0 && name[n] == '.';
}

static bool snap_file(const char *name)
{
    return strncmp(name, "l3kv.snap", 9) == 0;
}

/* Entries of dir that matter: every entry (any = true) or only WAL files of base. Counted
 * (at most 1 << 20 looked at); with rm, the snapshot and WAL files are removed. */
static int scan_dir(const char *dir, const char *base, bool any, bool rm, unsigned *ret_n)
{
    *ret_n = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    struct dirent *e;
    for (unsigned seen = 0; (e = readdir(d)) != NULL && seen < (1u << 20); seen++) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        bool ours = wal_file(e->d_name, base) || snap_file(e->d_name);
        if (!any && !wal_file(e->d_name, base))
            continue;
        (*ret_n)++;
        if (rm && ours && unlinkat(dirfd(d), e->d_name, 0) < 0 && rc == 0)
            rc = -errno;
    }
    closedir(d);
    return rc;
}

static int copy_fd(int in, int out)
{
    char *buf = malloc(COPY_BUF);
    if (buf == NULL)
        return -ENOMEM;
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : 0;
            break;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = -errno;
                break;
            }
            done += w;
        }
        if (rc < 0)
            break;
    }
    free(buf);
    return rc;
}

/* Copy file to tmp, fsync, verify the copy, rename to dst, fsync the directory. */
static int install(const char *file, const char *tmp, const char *dst, const char *dir)
{
    int in = open(file, O_RDONLY);
    if (in < 0)
        return -errno;
    (void)unlink(tmp);
    int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
    if (out < 0) {
        int e = -errno;
        close(in);
        return e;
    }
    int rc = copy_fd(in, out);
    if (rc == 0 && fsync(out) < 0)
        rc = -errno;
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = -errno;
    l3_wal_snap_info_t info;
    uint64_t bad = 0;
    if (rc == 0 && (rc = l3_wal_snapshot_verify_file(tmp, &info, &bad)) < 0)
        L3_LOG(L3_LOG_ERROR, "restore: the copy %s does not verify (offset %" PRIu64 "): %s", tmp, bad,
               l3_strerror(rc));
    if (rc == 0 && rename(tmp, dst) < 0)
        rc = -errno;
    if (rc < 0)
        (void)unlink(tmp);
    else
        rc = l3_fsync_dir(dir);
    return rc;
}

static int wal_dir_base(const l3_srv_config_t *c, char *dir, size_t dcap, char *base, size_t bcap)
{
    char wal[4096];
    int n = c->storage.wal_path[0] != '\0' ? snprintf(wal, sizeof wal, "%s", c->storage.wal_path)
                                           : snprintf(wal, sizeof wal, "%s/data.wal", c->storage.data_dir);
    if (n < 0 || (size_t)n >= sizeof wal)
        return -ENAMETOOLONG;
    const char *slash = strrchr(wal, '/');
    int a = slash ? snprintf(dir, dcap, "%.*s", (int)(slash - wal), wal) : snprintf(dir, dcap, ".");
    int b = snprintf(base, bcap, "%s", slash ? slash + 1 : wal);
    if (dir[0] == '\0')
        snprintf(dir, dcap, "/");
    return a < 0 || (size_t)a >= dcap || b < 0 || (size_t)b >= bcap ? -ENAMETOOLONG : 0;
}

/* Refuse a directory holding data unless force (then remove the snapshot and WAL files). */
static int prepare_dirs(const l3_srv_config_t *c, bool force)
{
    char wdir[4096], wbase[1024];
    if (wal_dir_base(c, wdir, sizeof wdir, wbase, sizeof wbase) < 0) {
        L3_LOG(L3_LOG_ERROR, "restore: 'storage.wal_path' / 'storage.data_dir' too long");
        return 2;
    }
    unsigned nd = 0, nw = 0;
    int rc = scan_dir(c->storage.data_dir, wbase, true, false, &nd);
    if (rc == 0)
        rc = scan_dir(wdir, wbase, false, false, &nw);
    if (rc < 0) {
        L3_LOG(L3_LOG_ERROR, "restore: cannot read %s: %s", c->storage.data_dir, strerror(-rc));
        return 1;
    }
    if ((nd > 0 || nw > 0) && !force) {
        L3_LOG(L3_LOG_ERROR,
               "restore refused: the data directory %s is not empty (%u entries; %u WAL file(s) of %s/%s); "
               "restore into an empty directory, or pass --force to replace its snapshot and WAL",
               c->storage.data_dir, nd, nw, wdir, wbase);
        return 2;
    }
    if (nd > 0 || nw > 0) {
        unsigned n;
        rc = scan_dir(c->storage.data_dir, wbase, true, true, &n);
        if (rc == 0)
            rc = scan_dir(wdir, wbase, false, true, &n);
        if (rc < 0) {
            L3_LOG(L3_LOG_ERROR, "restore: cannot remove the old snapshot / WAL: %s", strerror(-rc));
            return 1;
        }
        L3_LOG(L3_LOG_WARN, "restore: --force: removed the snapshot and the WAL segments of %s",
               c->storage.data_dir);
    }
    if (mkdir(c->storage.data_dir, 0700) < 0 && errno != EEXIST) {
        L3_LOG(L3_LOG_ERROR, "restore: cannot create %s: %s", c->storage.data_dir, strerror(errno));
        return 1;
    }
    return 0;
}

int l3_srv_restore(const l3_srv_config_t *c, const char *file, bool force)
{
    l3_wal_snap_info_t info;
    uint64_t bad = 0;
    int rc = l3_wal_snapshot_verify_file(file, &info, &bad);
    if (rc < 0) {
        L3_LOG(L3_LOG_ERROR, "restore refused: %s is not a valid backup (%s at offset %" PRIu64 ")", file,
               rc == -EBADMSG ? "not a snapshot file, or truncated" : l3_strerror(rc), bad);
        return rc == -ENOENT || rc == -EACCES || rc == -EBADMSG || rc == L3_ECORRUPT || rc == -EINVAL ? 2 : 1;
    }
    if ((rc = prepare_dirs(c, force)) != 0)
        return rc;
    char dst[4200], tmp[4300];
    snprintf(dst, sizeof dst, "%s/l3kv.snap", c->storage.data_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    if ((rc = install(file, tmp, dst, c->storage.data_dir)) < 0) {
        L3_LOG(L3_LOG_ERROR, "restore: cannot install %s as %s: %s", file, dst, l3_strerror(rc));
        return 1;
    }
    L3_LOG(L3_LOG_INFO, "restored %s into %s: %" PRIu64 " documents, %" PRIu64 " bytes, LSN %" PRIu64, file,
           dst, info.count, info.bytes, info.lsn);
    return 0;
}
