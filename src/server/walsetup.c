/* SPDX-License-Identifier: MIT */
/*
 * walsetup.c - connects the server to the write-ahead log (src/wal).
 *
 * Runs in the supervisor, after l3_srv_init (arena and sockets exist) and before
 * l3_srv_run (no child yet): formats the WAL ring in the arena's WAL region, recovers the
 * arena from the newest snapshot plus the WAL segments after it (l3_wal_recover ->
 * l3_store_replay), raises the store's LSN floor, installs the store -> WAL hook, creates
 * the per-worker durability eventfds for "fsync" mode, and registers the WAL role with
 * the supervisor: its child is the writer, its hooks (l3_srv_role_t) are the only way the
 * supervisor reaches the WAL. Single threaded; nothing here runs concurrently with a worker.
 * The tick hook starts checkpoints (a forked one-shot child) when the WAL on disk passes
 * storage.checkpoint_bytes or one was requested (SIGRTMIN).
 *
 * Files: <wal_path>.<seq> segments (storage.wal_path, default <data_dir>/data.wal) and the
 * snapshot <data_dir>/l3kv.snap; both formats are defined in l3kv/wal.h.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/wait.h>
#include <unistd.h>

#include "l3kv/wal.h"
#include "server.h"

#define CHECKPOINT_CHECK_MS 1000u   /* how often the WAL size is compared with checkpoint_bytes */
#define CHECKPOINT_TIMEOUT_MS 30000 /* bound on waiting for the writer to rotate */

static char wal_path[4096], snap_path[4096];

/* The WAL role's state, handed to every hook as its arg. */
typedef struct {
    l3_srv_t *srv;
    l3_wal_ring_t *ring;
    pid_t ckpt_pid;             /* running checkpointer, 0 = none */
    uint64_t ckpt_next_check_ms, ckpt_started_ms;
    bool ckpt_requested;        /* on demand (SIGRTMIN): run at the next tick regardless of size */
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

static int snap_doc(void *ctx, const void *key, size_t klen, const uint8_t *doc, size_t len, uint64_t lsn)
{
    return l3_wal_snapshot_add(ctx, key, (uint32_t)klen, doc, (uint32_t)len, lsn);
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
    if (ws.writer_pid <= 0 || (!w->ckpt_requested && ws.disk_bytes < srv->cfg.storage.checkpoint_bytes))
        return;
    if (w->ckpt_requested)
        L3_LOG(L3_LOG_INFO, "checkpoint on demand (WAL holds %llu bytes on disk)", (unsigned long long)ws.disk_bytes);
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

static int writer_main(l3_srv_t *srv, void *arg)
{
    const wal_role_t *w = arg;
    l3_wal_writer_opts_t o = {
        .ring = w->ring,
        .wal_path = wal_path,
        .durability = srv->cfg.storage.durability == L3_DURABILITY_FSYNC ? L3_WAL_FSYNC : L3_WAL_BUFFERED,
        .flush_interval_ms = srv->cfg.storage.flush_interval_ms,
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
    if (ws.durable >= ws.head)
        return 0;
    L3_LOG(L3_LOG_ERROR, "wal: stopped with %llu ring bytes not durable (written up to %llu of %llu)",
           (unsigned long long)(ws.head - ws.durable), (unsigned long long)ws.tail, (unsigned long long)ws.head);
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
};

int l3_srv_wal_setup(l3_srv_t *srv)
{
    int rc;
    const l3_srv_config_t *c = &srv->cfg;
    int n = c->storage.wal_path[0] != '\0' ? snprintf(wal_path, sizeof(wal_path), "%s", c->storage.wal_path)
                                            : snprintf(wal_path, sizeof(wal_path), "%s/data.wal", c->storage.data_dir);
    int m = snprintf(snap_path, sizeof(snap_path), "%s/l3kv.snap", c->storage.data_dir);
    if (n < 0 || (size_t)n >= sizeof(wal_path) || m < 0 || (size_t)m >= sizeof(snap_path)) {
        L3_LOG(L3_LOG_ERROR, "config: 'storage.wal_path' / 'storage.data_dir' too long");
        return -ENAMETOOLONG;
    }
    size_t wlen = 0;
    void *wreg = l3_store_wal_region(srv->store, &wlen);
    l3_wal_ring_t *ring = NULL;
    if ((rc = l3_wal_ring_init(wreg, wlen, &ring)) < 0) {
        L3_LOG(L3_LOG_ERROR, "wal: cannot format the ring ('storage.wal_buffer_bytes' %zu): %s", wlen, l3_strerror(rc));
        return rc;
    }

    uint64_t t0 = l3_now_ns();
    l3_wal_recover_report_t rep;
    memset(&rep, 0, sizeof(rep));
    if ((rc = l3_wal_recover(wal_path, snap_path, replay_one, srv->store, &rep)) < 0) {
        L3_LOG(L3_LOG_ERROR, "recovery from %s (snapshot %s) failed: %s", wal_path, snap_path, l3_strerror(rc));
        return rc;
    }
    l3_store_set_lsn_floor(srv->store, rep.max_lsn);
    l3_wal_ring_set_next_seq(ring, rep.wal.next_seq);
    L3_LOG(L3_LOG_INFO,
           "recovered in %.1f ms: snapshot %s (%llu documents), %llu WAL records from %llu segments "
           "(%llu already reflected), last LSN %llu",
           (double)(l3_now_ns() - t0) / 1e6, rep.have_snapshot ? "loaded" : "none",
           (unsigned long long)rep.snap.count, (unsigned long long)rep.wal.records,
           (unsigned long long)rep.wal.segments, (unsigned long long)rep.wal.skipped,
           (unsigned long long)rep.max_lsn);
    if (rep.wal.stop_reason != 0)
        L3_LOG(L3_LOG_WARN,
               "wal: log ended early in %s at offset %llu (%s); discarded %llu bytes in %llu file(s), set aside "
               "(first: %s)",
               rep.wal.stop_file, (unsigned long long)rep.wal.stop_offset, l3_strerror(rep.wal.stop_reason),
               (unsigned long long)rep.wal.discarded_bytes, (unsigned long long)rep.wal.discarded_files,
               rep.wal.aside[0] ? rep.wal.aside : "-");
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
    l3_store_set_wal_probe(srv->store, l3_wal_probe, ring); /* repair keeps a published mutation */
    srv->wal_ring = ring;
    wal_state.srv = srv;
    wal_state.ring = ring;
    return l3_srv_add_role(srv, &wal_role, &wal_state);
}
