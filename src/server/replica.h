/* SPDX-License-Identifier: MIT */
/*
 * replica.h - read replicas: a node configured with "replication.primary" follows that
 * primary (follower.c, a supervisor role) and refuses writes; POST /admin/promote makes it
 * a primary for good.
 *
 * The replication block: one shared anonymous mapping made by the supervisor before the
 * first fork (l3_srv_replica_setup), read by the workers (read-only check, /metrics) and
 * written by the follower (progress) and by the worker that promotes (role):
 *   rp_magic "L3REPL01", rp_version 1; rp_mu a robust process-shared mutex held by the
 *   follower around each change it applies and by the promotion, so that once the role
 *   says "promoted" no replicated change lands on top of a client's write; rp_role
 *   (L3_REPL_*), rp_state (L3_REPL_S_*) and the counters: relaxed atomics. On a primary,
 *   rp_ack_pos: how far a replica acknowledged (storage.durability "replicated").
 *
 * The state file <data_dir>/replica.state (64 bytes, written with tmp + fsync + rename +
 * directory fsync, only after every change it accounts for is durable in this node's WAL):
 *     0   8  rs_magic    "L3KVRPS1"
 *     8   4  rs_version  1
 *    12   4  rs_flags    bit 0: promoted (the node stays a primary across restarts)
 *    16   4  rs_url_crc  CRC32C of the primary's URL the cursor belongs to
 *    20   4  rs_url_len  its length
 *    24  32  rs_cursor   the primary's change-feed cursor to resume from (ASCII), or zeros
 *    56   4  rs_crc      CRC32C of bytes [0, 56)
 *    60   4  zero
 * A missing or damaged file, or one of another primary, means a bootstrap (logged).
 */
#ifndef L3KV_SRV_REPLICA_H
#define L3KV_SRV_REPLICA_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "supervisor.h"

enum { L3_REPL_PRIMARY = 0, L3_REPL_REPLICA = 1, L3_REPL_PROMOTED = 2 };
enum {
    L3_REPL_S_STARTING = 0,
    L3_REPL_S_CONNECTING, /* the primary does not answer (retried every replication.retry_ms) */
    L3_REPL_S_BOOTSTRAPPING,
    L3_REPL_S_FOLLOWING,
    L3_REPL_S_STOPPED, /* promoted */
};

#define L3_REPL_MAGIC UINT64_C(0x31304c504552334c) /* "L3REPL01" */
#define L3_REPL_CURSOR_LEN 32u
#define L3_REPL_STATE_BYTES 64u

typedef struct l3_repl_block {
    uint64_t rp_magic;
    uint32_t rp_version;
    uint32_t pad;
    pthread_mutex_t rp_mu;
    _Atomic uint32_t rp_role;
    _Atomic uint32_t rp_state;
    _Atomic uint64_t rp_applied_total;   /* changes applied from the feed */
    _Atomic uint64_t rp_bootstraps;      /* full copies made (the first one included) */
    _Atomic uint64_t rp_primary_version; /* the primary's last LSN, as of the last answer */
    _Atomic uint64_t rp_applied_version; /* the primary's LSN of the last change applied */
    _Atomic uint64_t rp_behind_since_ms; /* wall clock since which the replica is behind (0: caught up) */
    /* a primary: the WAL ring position up to which a replica said it holds every change
     * durably (GET /changes?ack=, this run's ring only) */
    _Atomic uint64_t rp_ack_pos;
} l3_repl_t;

/** The durable resume state (the state file above). */
typedef struct {
    bool promoted;
    bool have_cursor;
    char cursor[L3_REPL_CURSOR_LEN + 1];
} l3_repl_state_t;

/** Supervisor, before l3_srv_run: map the replication block (always: workers ask it whether
 *  they are read-only), read the state file, register the follower role when
 *  replication.primary is set and the node was not promoted. 0 or a negative code (an
 *  invalid replication.primary or token file is logged and refused). */
int l3_srv_replica_setup(l3_srv_t *srv);

/** Does this node refuse writes (a replica that was not promoted)? NULL: no. Any process. */
bool l3_repl_read_only(const l3_repl_t *r);

/** Worker: POST /admin/promote. 0 promoted now, 1 already a primary (never was a replica or
 *  promoted before), < 0 the state file could not be written (the node is promoted anyway:
 *  in this run; the log says a restart would follow the primary again). */
int l3_repl_promote(l3_repl_t *r, const char *data_dir);

/** A primary: a replica holds every change up to ring position pos durably (keeps the
 *  largest; any process). */
void l3_repl_ack(l3_repl_t *r, uint64_t pos);

/** Lock / unlock rp_mu (a dead holder's lock is taken over). */
void l3_repl_lock(l3_repl_t *r);
void l3_repl_unlock(l3_repl_t *r);

/** Read <data_dir>/replica.state for `primary`: 1 read (*ret filled), 0 none / damaged / of
 *  another primary (*ret cleared, promoted kept only from an intact file). */
int l3_repl_state_load(const char *data_dir, const char *primary, l3_repl_state_t *ret);
/** Write it durably: 0 or -errno. */
int l3_repl_state_save(const char *data_dir, const char *primary, const l3_repl_state_t *st);

/** The names /metrics uses. */
const char *l3_repl_role_name(uint32_t role);
const char *l3_repl_state_name(uint32_t state);

/** The follower role's body (follower.c). */
int l3_srv_follower_main(l3_srv_t *srv, void *arg);

#endif
