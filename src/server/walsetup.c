/* SPDX-License-Identifier: MIT */
/*
 * walsetup.c - connects the server to the write-ahead log (src/wal).
 *
 * l3_srv_wal_prepare runs inside l3_srv_init (srv->before_sweep), before stale arenas are swept: it refuses a
 * data directory others may write to and salvages the rings of dead instances into the WAL.
 * The rest runs in the supervisor, after l3_srv_init (arena and sockets exist) and before
 * l3_srv_run (no child yet): formats the WAL ring in the arena's WAL region, recovers the
 * arena from the newest snapshot plus the WAL segments after it (l3_wal_recover_ex ->
 * l3_store_replay; missing segments refused unless --accept-data-loss, records that cannot
 * be applied quarantined unless storage.recovery is "strict"), raises the store's LSN
 * floor, installs the store -> WAL hook, creates the per-worker durability eventfds for
 * "fsync" mode, and registers the WAL role with the supervisor: its child is the writer,
 * its hooks (l3_srv_role_t) are the only way the supervisor reaches the WAL. Single
 * threaded; nothing here runs concurrently with a worker. The tick hook starts checkpoints
 * (a forked one-shot child) when the WAL on disk passes storage.checkpoint_bytes or one was
 * requested (SIGRTMIN).
 *
 * Files: <wal_path>.<seq> segments (storage.wal_path, default <data_dir>/data.wal) and the
 * snapshot <data_dir>/l3kv.snap; both formats are defined in l3kv/wal.h.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <sys/wait.h>
#include <unistd.h>

#include "feedstat.h"
#include "l3kv/wal.h"
#include "l3kv/walfeed.h"
#include "log.h"
#include "supervisor.h"
#include "walsetup.h"
#include "l3kv/error.h"
#include "l3kv/store.h"

#define CHECKPOINT_CHECK_MS 1000u   /* how often the WAL size is compared with checkpoint_bytes */
#define CHECKPOINT_TIMEOUT_MS 30000 /* bound on waiting for the writer to rotate */
#define SEG_MIN_BYTES (256u << 10)  /* WAL segment size bounds with the feed's retention */
#define SEG_MAX_BYTES (64u << 20)

static char wal_path[4096], snap_path[4096], feedpos_path[4200], feedsock_path[4200];

/* The WAL role's state, handed to every hook as its arg. */
typedef struct {
    l3_srv_t *srv;
    l3_wal_ring_t *ring;
    pid_t ckpt_pid; /* running checkpointer, 0 = none */
    uint64_t ckpt_next_check_ms, ckpt_started_ms;
    bool ckpt_requested; /* on demand (SIGRTMIN): run at the next tick regardless of size */
} wal_role_t;

static wal_role_t wal_state;

static uint64_t mono_ms(void)
{
    return l3_now_ns() / 1000000u;
}

/* ---------------------------------------------------------------- checkpoints
 * A checkpoint runs in a forked one-shot child registered in the store: it asks the writer
 * to rotate (l3_wal_checkpoint_begin), copies every document under its lock into a snapshot
 * (l3_store_scan -> l3_wal_snapshot_add), makes it durable, and lets the writer delete the
 * covered segments. Workers keep running throughout; a crash at any point is safe (the
 * old snapshot and the segments stay until the new snapshot is renamed into place). */

static int snap_doc(void *ctx, const void *key, size_t klen, const uint8_t *doc, size_t len, uint64_t lsn,
                    uint64_t expire_ms)
{
    return l3_wal_snapshot_add_exp(ctx, key, (uint32_t)klen, doc, (uint32_t)len, lsn, expire_ms);
}

static int scan_all(void *ctx, l3_wal_snap_writer_t *w)
{
    return l3_store_scan(ctx, NULL, 0, snap_doc, w, NULL);
}

static void checkpoint_child(l3_srv_t *srv, wal_role_t *w)
{
    int rc = l3_store_proc_register(srv->store, L3_STORE_ROLE_TOOL, NULL);
    if (rc == 0) {
        uint64_t lsn = l3_store_last_lsn(srv->store);
        rc = l3_wal_checkpoint(w->ring, snap_path, lsn, scan_all, srv->store, CHECKPOINT_TIMEOUT_MS);
        l3_store_proc_unregister(srv->store);
    }
    if (rc < 0)
        L3_LOG(L3_LOG_ERROR, "checkpoint failed: %s", l3_strerror(rc));
    _exit(rc < 0 ? 1 : 0);
}

/* request hook: a checkpoint at the next tick whatever the WAL size */
static void wal_request(void *arg)
{
    wal_role_t *w = arg;
    w->ckpt_requested = true;
    w->ckpt_next_check_ms = 0;
}

/* tick hook: start a checkpoint when the WAL on disk passed storage.checkpoint_bytes */
static void wal_tick(void *arg)
{
    wal_role_t *w = arg;
    l3_srv_t *srv = w->srv;
    uint64_t now = mono_ms();
    if (w->ring == NULL || w->ckpt_pid > 0 || now < w->ckpt_next_check_ms)
        return;
    w->ckpt_next_check_ms = now + CHECKPOINT_CHECK_MS;
    l3_wal_stats_t ws;
    l3_wal_ring_stats(w->ring, &ws);
    /* segments kept for the change feed past the last checkpoint do not count: a checkpoint
     * cannot shrink them, so counting them would start one checkpoint after another */
    l3_feed_stats_t *fs = srv->feed_stats;
    uint64_t kept = fs != NULL ? __atomic_load_n(&fs->fh_retain.retained_bytes, __ATOMIC_RELAXED) : 0;
    ws.disk_bytes -= L3_MIN(kept, ws.disk_bytes);
    if (ws.writer_pid <= 0 || (!w->ckpt_requested && ws.disk_bytes < srv->cfg.storage.checkpoint_bytes))
        return;
    if (w->ckpt_requested)
        L3_LOG(L3_LOG_INFO, "checkpoint on demand (WAL holds %llu bytes on disk)",
               (unsigned long long)ws.disk_bytes);
    else
        L3_LOG(L3_LOG_INFO, "WAL holds %llu bytes on disk (>= 'storage.checkpoint_bytes' %llu): checkpoint",
               (unsigned long long)ws.disk_bytes, (unsigned long long)srv->cfg.storage.checkpoint_bytes);
    w->ckpt_requested = false;
    pid_t pid = l3_srv_fork_task(srv, "checkpointer");
    if (pid == 0)
        checkpoint_child(srv, w);
    if (pid > 0) {
        w->ckpt_pid = pid;
        w->ckpt_started_ms = now;
    }
}

/* child_exited hook: was it the checkpointer? (logged) */
static bool wal_child_exited(void *arg, pid_t pid, int status)
{
    wal_role_t *w = arg;
    if (pid != w->ckpt_pid || pid <= 0)
        return false;
    w->ckpt_pid = 0;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok)
        L3_LOG(L3_LOG_INFO, "checkpoint done in %llu ms (snapshot %s)",
               (unsigned long long)(mono_ms() - w->ckpt_started_ms), snap_path);
    else
        L3_LOG(L3_LOG_WARN, "checkpointer (pid %d) failed (status 0x%x); retrying in %u ms", (int)pid, status,
               CHECKPOINT_CHECK_MS * 10);
    if (!ok)
        w->ckpt_next_check_ms = mono_ms() + CHECKPOINT_CHECK_MS * 10;
    return true;
}

/* stop_tasks hook: kill and reap a running checkpointer */
static void wal_stop_tasks(void *arg)
{
    wal_role_t *w = arg;
    l3_srv_t *srv = w->srv;
    if (w->ckpt_pid <= 0)
        return;
    kill(w->ckpt_pid, SIGKILL);
    int status;
    if (waitpid(w->ckpt_pid, &status, 0) == w->ckpt_pid) {
        L3_LOG(L3_LOG_INFO, "checkpoint abandoned for the stop");
        if (srv->store != NULL)
            l3_store_proc_reap(srv->store, w->ckpt_pid);
    }
    w->ckpt_pid = 0;
}

static int replay_one(void *ctx, const l3_wal_rec_t *rec)
{
    return l3_store_replay(ctx, rec); /* 1 = already reflected: counted as skipped */
}

/* The writer's event lines in the server's log format. */
static void writer_log(int severity, const char *line)
{
    l3_log_level_t lvl = severity >= L3_WAL_LOG_ERROR  ? L3_LOG_ERROR
                         : severity == L3_WAL_LOG_WARN ? L3_LOG_WARN
                                                       : L3_LOG_INFO;
    L3_LOG(lvl, "wal writer: %s", line);
}

/* Segments are what a checkpoint keeps or deletes whole: with the change feed's retention they
 * are a quarter of it (within [SEG_MIN_BYTES, SEG_MAX_BYTES]), so that the retained log is
 * about the budget, not one segment that never fits it; without, the writer's default. */
static uint64_t segment_bytes(uint64_t retention)
{
    if (retention == 0)
        return 0;
    return L3_MAX(SEG_MIN_BYTES, L3_MIN(SEG_MAX_BYTES, retention / 4));
}

static int writer_main(l3_srv_t *srv, void *arg)
{
    const wal_role_t *w = arg;
    l3_wal_writer_opts_t o = {
        .ring = w->ring,
        .wal_path = wal_path,
        .durability = srv->cfg.storage.durability == L3_DURABILITY_FSYNC ? L3_WAL_FSYNC : L3_WAL_BUFFERED,
        .flush_interval_ms = srv->cfg.storage.flush_interval_ms,
        .retain_bytes = srv->cfg.storage.changes_retention_bytes,
        .segment_bytes = segment_bytes(srv->cfg.storage.changes_retention_bytes),
        .feed_sock = srv->feed_sock,
        .retain_info = srv->feed_stats != NULL ? &((l3_feed_stats_t *)srv->feed_stats)->fh_retain : NULL,
        .install_signals = 1,
        .log = writer_log,
    };
    int rc = l3_wal_writer_run(&o);
    if (rc < 0) {
        L3_LOG(L3_LOG_ERROR, "wal writer: %s", l3_strerror(rc));
        return 1;
    }
    return 0;
}

const char *l3_srv_wal_path(void)
{
    return wal_path;
}

/* stopped hook: the writer is gone; did every published record reach the disk? */
static int wal_stopped(void *arg)
{
    const wal_role_t *w = arg;
    if (w->ring == NULL)
        return 0;
    l3_wal_stats_t ws;
    l3_wal_ring_stats(w->ring, &ws);
    if (ws.durable >= ws.head) {
        /* every change is in the files: the feed's final cursor resumes at the next start */
        l3_wal_feed_bounds_t b;
        l3_wal_feed_bounds(w->ring, &b);
        int rc = l3_feed_pos_save(feedpos_path, b.epoch, b.head, l3_wal_path_id(wal_path));
        if (rc < 0)
            L3_LOG(L3_LOG_WARN,
                   "feed: cannot write %s (%s): cursors of this run will be 410 after the restart",
                   feedpos_path, strerror(-rc));
        return 0;
    }
    L3_LOG(L3_LOG_ERROR, "wal: stopped with %llu ring bytes not durable (written up to %llu of %llu)",
           (unsigned long long)(ws.head - ws.durable), (unsigned long long)ws.tail,
           (unsigned long long)ws.head);
    return -EIO;
}

static const l3_srv_role_t wal_role = {
    .name = "wal writer",
    .main = writer_main,
    .tick = wal_tick,
    .request = wal_request,
    .child_exited = wal_child_exited,
    .stop_tasks = wal_stop_tasks,
    .stopped = wal_stopped,
    .stop_ms = L3_WAL_STOP_RETRY_MS + 3000, /* its retries of a failing disk, then its last words */
};

/* A record's key for a log line: printable ASCII kept, other bytes as '?', cut at 64. */
static void key_text(char *buf, size_t cap, const char *key, uint32_t klen)
{
    size_t n = L3_MIN((size_t)klen, L3_MIN(cap - 4, (size_t)64));
    for (size_t i = 0; i < n; i++)
        buf[i] = key[i] >= 0x20 && key[i] < 0x7f ? key[i] : '?';
    strcpy(buf + n, n < klen ? "..." : "");
}

static void log_missing(const l3_wal_recover_report_t *rep, bool accepted)
{
    static const char *const why[] = {"", "is absent", "is invalid (set aside)", "is older than the WAL"};
    char first[4200], last[4200];
    snprintf(first, sizeof(first), "%s.%08llu", wal_path, (unsigned long long)rep->missing_from);
    snprintf(last, sizeof(last), "%s.%08llu", wal_path, (unsigned long long)(rep->missing_to - 1));
    if (!accepted)
        L3_LOG(
            L3_LOG_ERROR,
            "recovery refused: WAL segments %s .. %s (%llu file(s)) are gone, a checkpoint deleted them, and "
            "the snapshot %s that holds their documents %s: starting would lose every document only they "
            "held. Restore the snapshot, or start with --accept-data-loss to accept the loss",
            first, last, (unsigned long long)(rep->missing_to - rep->missing_from), snap_path,
            why[rep->missing_snapshot & 3]);
    else
        L3_LOG(
            L3_LOG_WARN,
            "starting with data loss (--accept-data-loss): WAL segments %s .. %s are gone and the snapshot "
            "%s "
            "%s; every change they held and no later record repeats is lost (%llu WAL records replayed from "
            "%llu segments after them); a checkpoint follows so the next start needs no flag",
            first, last, snap_path, why[rep->missing_snapshot & 3], (unsigned long long)rep->wal.records,
            (unsigned long long)rep->wal.segments);
}

static void log_failed(const l3_wal_recover_report_t *rep, bool stopped, const char *qdir)
{
    char key[80];
    key_text(key, sizeof(key), rep->failed_key, rep->failed_klen);
    const char *src = rep->failed_source == L3_WAL_QUAR_SNAPSHOT ? "snapshot entry" : "WAL record";
    const char *op = l3_walop_name(rep->failed_op, 0);
    if (stopped)
        L3_LOG(L3_LOG_ERROR,
               "recovery stopped ('storage.recovery' \"strict\"): %s LSN %llu (%s, key \"%s\") passes its "
               "CRC but "
               "cannot be applied: %s; with \"salvage\" it is set aside in %s and recovery goes on",
               src, (unsigned long long)rep->failed_lsn, op, key, l3_strerror(rep->failed_rc), qdir);
    else
        L3_LOG(L3_LOG_WARN,
               "recovery set aside %llu record(s) that pass their CRC but cannot be applied, in %s (first: "
               "%s LSN "
               "%llu, %s, key \"%s\": %s; file %s); list them with 'l3kv-inspect quarantine %s'",
               (unsigned long long)rep->quarantined, qdir, src, (unsigned long long)rep->failed_lsn, op, key,
               l3_strerror(rep->failed_rc), rep->quarantine_first, qdir);
}

/* wal_path and snap_path from the configuration. */
static int set_paths(const l3_srv_config_t *c)
{
    int n = c->storage.wal_path[0] != '\0'
                ? snprintf(wal_path, sizeof(wal_path), "%s", c->storage.wal_path)
                : snprintf(wal_path, sizeof(wal_path), "%s/data.wal", c->storage.data_dir);
    int m = snprintf(snap_path, sizeof(snap_path), "%s/l3kv.snap", c->storage.data_dir);
    if (n < 0 || (size_t)n >= sizeof(wal_path) || m < 0 || (size_t)m >= sizeof(snap_path)) {
        L3_LOG(L3_LOG_ERROR, "config: 'storage.wal_path' / 'storage.data_dir' too long");
        return -ENAMETOOLONG;
    }
    snprintf(feedpos_path, sizeof(feedpos_path), "%s/feed.pos", c->storage.data_dir);
    snprintf(feedsock_path, sizeof(feedsock_path), "%s/feed.sock", c->storage.data_dir);
    return 0;
}

/* ---------------------------------------------------------------- salvage
 * An arena in /dev/shm whose supervisor is dead is what a whole-service crash left: its
 * ring may hold acknowledged (buffered mode) records the dead writer had not written. They
 * are appended to this WAL (l3_wal_salvage, which checks that the ring is this WAL's and that
 * none of its processes runs) before recovery; the caller then removes the arena as stale. */
static void salvage_one(long pid)
{
    l3_store_t *old = NULL;
    int rc = l3_store_attach(NULL, (pid_t)pid, L3_STORE_ATTACH_READONLY, &old);
    if (rc < 0)
        return;
    size_t len = 0;
    const void *reg = l3_store_wal_region(old, &len);
    l3_wal_salvage_report_t sr;
    memset(&sr, 0, sizeof(sr));
    rc = l3_wal_salvage(reg, len, wal_path, &sr);
    /* salvaged once, never again: a second pass would append the same records after newer
     * ones (an old PUT could bring back a key deleted since) */
    int urc = rc == 0 ? l3_store_unlink(old) : 0;
    l3_store_close(old);
    if (urc < 0)
        L3_LOG(L3_LOG_ERROR, "wal: cannot remove the salvaged arena of instance %ld: %s", pid,
               l3_strerror(urc));
    else if (rc == 0)
        L3_LOG(L3_LOG_INFO,
               "removed 1 shared-memory arena(s) left by instances that no longer run (instance %ld, "
               "its ring salvaged first)",
               pid);
    if (rc == 0 && sr.records > 0)
        L3_LOG(
            L3_LOG_WARN,
            "wal: the arena of instance %ld (all its processes dead) held %llu published record(s) not yet "
            "written (%llu ring bytes): appended to %s before recovery",
            pid, (unsigned long long)sr.records, (unsigned long long)sr.ring_bytes, sr.segment);
    else if (rc == 0 && sr.ring_bytes > 0)
        L3_LOG(L3_LOG_INFO, "wal: the arena of instance %ld held no published record to salvage", pid);
    if (rc == 0 && sr.stop_reason != 0)
        L3_LOG(L3_LOG_WARN,
               "wal: salvage of instance %ld stopped at ring position %llu: %s (later slots dropped)", pid,
               (unsigned long long)sr.stopped_at, l3_strerror(sr.stop_reason));
    if (rc < 0 && rc != -ESRCH && rc != -EBUSY)
        L3_LOG(
            L3_LOG_ERROR,
            "wal: cannot salvage the ring of instance %ld: %s; what it held and no file has is lost when its "
            "arena is removed",
            pid, l3_strerror(rc));
    else if (rc == -EBUSY)
        L3_LOG(L3_LOG_WARN, "wal: the arena of instance %ld still has live processes: not salvaged", pid);
}

/* Refuse a data directory that group or others may write to (they could replace the
 * WAL or the snapshot): -EPERM, which main turns into exit code 2. New directories are
 * created 0700 (supervisor.c mkdir_p); an existing one keeps its mode when it is not
 * writable by others. */
static int data_dir_private(const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        L3_LOG(L3_LOG_ERROR, "config: 'storage.data_dir' %s: %s", dir, strerror(errno));
        return -errno;
    }
    if (!S_ISDIR(sb.st_mode) || (sb.st_mode & (S_IWGRP | S_IWOTH))) {
        L3_LOG(L3_LOG_ERROR,
               "config: 'storage.data_dir' %s is %s (mode %04o): refusing to start; make it owned by "
               "the service and not writable by others (chmod 700)",
               dir, S_ISDIR(sb.st_mode) ? "writable by group or others" : "not a directory",
               (unsigned)(sb.st_mode & 07777));
        return -EPERM;
    }
    return 0;
}

int l3_srv_wal_prepare(l3_srv_t *srv)
{
    int rc = set_paths(&srv->cfg);
    if (rc < 0 || (rc = data_dir_private(srv->cfg.storage.data_dir)) < 0)
        return rc;
    char wdir[4096];
    snprintf(wdir, sizeof(wdir), "%s", wal_path);
    char *slash = strrchr(wdir, '/');
    if (slash != NULL && slash != wdir) {
        *slash = '\0';
        if (strcmp(wdir, srv->cfg.storage.data_dir) != 0 && (rc = data_dir_private(wdir)) < 0)
            return rc;
    }
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        if (strncmp(de->d_name, "l3kv-pid-", 9) != 0)
            continue;
        long pid = strtol(de->d_name + 9, &end, 10);
        if (*end == '\0' && pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH)
            salvage_one(pid);
    }
    closedir(d);
    return 0;
}

/* The previous run stopped gracefully: its final feed cursor resumes at this ring's start
 * (nothing was logged in between). The file is removed first, so a crash of this run
 * cannot make the next start take it for its own end. */
static void feed_continue(l3_srv_t *srv, l3_wal_ring_t *ring, bool clean)
{
    uint64_t epoch = 0, end = 0;
    int rc = l3_feed_pos_take(feedpos_path, l3_wal_path_id(wal_path), &epoch, &end);
    if (rc < 0) {
        L3_LOG(L3_LOG_WARN, "feed: cannot remove %s (%s): cursors of the previous run are 410", feedpos_path,
               strerror(-rc));
        return;
    }
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(ring, &b);
    if (rc == 1 && clean && b.epoch > epoch && srv->feed_stats != NULL) /* epochs grow with the wall clock */
        l3_feed_stats_set_prev(srv->feed_stats, epoch, end);
}

/* Older changes than the ring holds come from the writer, over a socket in the data
 * directory (private: the directory is 0700), when the log is retained past checkpoints. */
static void feed_channel(l3_srv_t *srv)
{
    srv->feed_sock = NULL;
    if (srv->cfg.storage.changes_retention_bytes == 0)
        return;
    if (strlen(feedsock_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        L3_LOG(L3_LOG_WARN,
               "feed: the socket path %s is too long for a unix socket: the feed resumes only from the "
               "WAL ring (choose a shorter 'storage.data_dir')",
               feedsock_path);
        return;
    }
    srv->feed_sock = feedsock_path;
}

int l3_srv_wal_setup(l3_srv_t *srv)
{
    int rc;
    const l3_srv_config_t *c = &srv->cfg;
    if ((rc = set_paths(c)) < 0)
        return rc;
    size_t wlen = 0;
    void *wreg = l3_store_wal_region(srv->store, &wlen);
    l3_wal_ring_t *ring = NULL;
    if ((rc = l3_wal_ring_init(wreg, wlen, &ring)) < 0) {
        L3_LOG(L3_LOG_ERROR, "wal: cannot format the ring ('storage.wal_buffer_bytes' %zu): %s", wlen,
               l3_strerror(rc));
        return rc;
    }

    uint64_t t0 = l3_now_ns();
    l3_wal_recover_report_t rep;
    memset(&rep, 0, sizeof(rep));
    char qdir[4200];
    snprintf(qdir, sizeof(qdir), "%s/quarantine", c->storage.data_dir);
    l3_wal_recover_opts_t ro = {.accept_data_loss = c->storage.accept_data_loss,
                                .strict = c->storage.recovery_strict,
                                .quarantine_dir = qdir};
    rc = l3_wal_recover_ex(wal_path, snap_path, &ro, replay_one, srv->store, &rep);
    if (rep.missing_from != 0)
        log_missing(&rep, c->storage.accept_data_loss && rc == 0);
    if (rep.failed_rc != 0)
        log_failed(&rep, rc < 0, qdir);
    if (rc < 0) {
        if (rep.missing_from != 0)
            return -ENOTRECOVERABLE;
        L3_LOG(L3_LOG_ERROR, "recovery from %s (snapshot %s) failed: %s", wal_path, snap_path,
               l3_strerror(rc));
        return rc;
    }
    l3_obs_set_quarantined(&srv->obs, rep.quarantined);
    if (rep.missing_from != 0)
        wal_request(&wal_state); /* a snapshot of what is left closes the gap */
    l3_store_set_lsn_floor(srv->store, rep.max_lsn);
    if (rep.have_snapshot) /* the writer applies storage.changes_retention_bytes to the covered segments */
        l3_wal_checkpoint_commit(ring, rep.snap.wal_seq);
    l3_wal_ring_set_next_seq(ring, rep.wal.next_seq);
    l3_wal_ring_set_id(ring, l3_wal_path_id(wal_path)); /* lets the next start salvage this ring */
    /* a log cut short or with a gap lost changes a client may have seen: no continuation */
    feed_continue(srv, ring, rep.wal.stop_reason == 0 && rep.missing_from == 0 && rep.failed_rc == 0);
    L3_LOG(L3_LOG_INFO,
           "recovered in %.1f ms: snapshot %s (%llu documents), %llu WAL records from %llu segments "
           "(%llu already reflected), last LSN %llu",
           (double)(l3_now_ns() - t0) / 1e6, rep.have_snapshot ? "loaded" : "none",
           (unsigned long long)rep.snap.count, (unsigned long long)rep.wal.records,
           (unsigned long long)rep.wal.segments, (unsigned long long)rep.wal.skipped,
           (unsigned long long)rep.max_lsn);
    if (rep.wal.stop_reason != 0)
        L3_LOG(
            L3_LOG_WARN,
            "wal: log ended early in %s at offset %llu (%s); discarded %llu bytes in %llu file(s), set aside "
            "(first: %s)",
            rep.wal.stop_file, (unsigned long long)rep.wal.stop_offset, l3_strerror(rep.wal.stop_reason),
            (unsigned long long)rep.wal.discarded_bytes, (unsigned long long)rep.wal.discarded_files,
            rep.wal.aside[0] ? rep.wal.aside : "-");
    if (rep.wal.in_place_bytes != 0)
        L3_LOG(L3_LOG_WARN,
               "wal: no space to copy the bad tail aside: %llu bytes set aside in place (marker %s, the log "
               "goes on in the next segment); they are moved aside at a start with free space",
               (unsigned long long)rep.wal.in_place_bytes, rep.wal.in_place[0] ? rep.wal.in_place : "-");
    if (rep.snap_aside[0] != '\0')
        L3_LOG(L3_LOG_WARN, "wal: invalid snapshot set aside as %s", rep.snap_aside);

    if (c->storage.durability == L3_DURABILITY_FSYNC) {
        if ((rc = l3_wal_notify_create(ring, c->server.max_workers)) < 0) {
            L3_LOG(L3_LOG_ERROR, "wal: cannot create the durability eventfds: %s", l3_strerror(rc));
            return rc;
        }
        srv->wal_wait = true;
    }
    l3_store_set_wal_hook(srv->store, l3_wal_hook, ring);
    l3_store_set_wal_group_hook(srv->store, l3_wal_hook_group, ring); /* POST /batch transactions */
    l3_store_set_wal_probe(srv->store, l3_wal_probe, ring);           /* repair keeps a published mutation */
    srv->wal_ring = ring;
    feed_channel(srv);
    wal_state.srv = srv;
    wal_state.ring = ring;
    return l3_srv_add_role(srv, &wal_role, &wal_state);
}
