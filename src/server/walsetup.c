/* SPDX-License-Identifier: MIT */
/*
 * walsetup.c - connects the server to the write-ahead log (src/wal).
 *
 * Runs in the supervisor, after l3_srv_init (arena and sockets exist) and before
 * l3_srv_run (no child yet): formats the WAL ring in the arena's WAL region, recovers the
 * arena from the newest snapshot plus the WAL segments after it (l3_wal_recover ->
 * l3_store_replay), raises the store's LSN floor, installs the store -> WAL hook, creates
 * the per-worker durability eventfds for "fsync" mode, and registers the writer as a
 * supervised child role. Single threaded; nothing here runs concurrently with a worker.
 *
 * Files: <wal_path>.<seq> segments (storage.wal_path, default <data_dir>/l3kv.wal) and the
 * snapshot <data_dir>/l3kv.snap; both formats are defined in l3kv/wal.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/wal.h"
#include "server.h"

static char wal_path[4096], snap_path[4096];

static int replay_one(void *ctx, const l3_wal_rec_t *rec)
{
    /* A record's payload follows its key in the log, so a PUT's document is usually not
     * 8-byte aligned there; the document format requires alignment: copy it. */
    if (((uintptr_t)rec->payload & 7u) != 0 && rec->plen > 0) {
        void *copy = aligned_alloc(8, ((size_t)rec->plen + 7) & ~(size_t)7);
        if (copy == NULL)
            return -ENOMEM;
        memcpy(copy, rec->payload, rec->plen);
        l3_wal_rec_t r = *rec;
        r.payload = copy;
        int rc = l3_store_replay(ctx, &r);
        free(copy);
        return rc;
    }
    return l3_store_replay(ctx, rec); /* 1 = already reflected: counted as skipped */
}

static int writer_main(l3_srv_t *srv, void *arg)
{
    l3_wal_writer_opts_t o = {
        .ring = arg,
        .wal_path = wal_path,
        .durability = srv->cfg.storage.durability == L3_DURABILITY_FSYNC ? L3_WAL_FSYNC : L3_WAL_BUFFERED,
        .flush_interval_ms = srv->cfg.storage.flush_interval_ms,
        .install_signals = 1,
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

int l3_srv_wal_setup(l3_srv_t *srv)
{
    int rc;
    const l3_srv_config_t *c = &srv->cfg;
    int n = c->storage.wal_path[0] != '\0' ? snprintf(wal_path, sizeof(wal_path), "%s", c->storage.wal_path)
                                            : snprintf(wal_path, sizeof(wal_path), "%s/l3kv.wal", c->storage.data_dir);
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
        L3_LOG(L3_LOG_WARN, "wal: log ended early in %s at offset %llu (%s); bad tail kept as %s",
               rep.wal.stop_file, (unsigned long long)rep.wal.stop_offset, l3_strerror(rep.wal.stop_reason),
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
    uint64_t maxrec = l3_wal_ring_max_payload(ring);
    if (maxrec < c->server.max_body_bytes)
        L3_LOG(L3_LOG_WARN,
               "documents above %llu bytes cannot be logged with 'storage.wal_buffer_bytes' %zu and will get 413, "
               "although 'server.max_body_bytes' is %llu",
               (unsigned long long)maxrec, wlen, (unsigned long long)c->server.max_body_bytes);
    l3_store_set_wal_hook(srv->store, l3_wal_hook, ring);
    srv->wal_ring = ring;
    return l3_srv_add_role(srv, "wal writer", writer_main, ring);
}
