/* SPDX-License-Identifier: MIT */
/*
 * walsetup.h - connects the server to the write-ahead log (see walsetup.c).
 *
 * The supervisor drives the WAL only through the role l3_srv_wal_setup registers (its
 * child is the writer; its hooks start checkpoints, reap the checkpointer and stop it).
 */
#ifndef L3KV_SRV_WALSETUP_H
#define L3KV_SRV_WALSETUP_H

#include "supervisor.h"

/** Format the WAL ring, recover the arena (snapshot + WAL), install the store hook, the
 *  durability eventfds ("fsync") and the writer role. Supervisor, before l3_srv_run. */
int l3_srv_wal_setup(l3_srv_t *srv);
/** Installed as srv->before_sweep: refuse a data directory others may write to (-EPERM),
 *  then append the published, unwritten ring records of dead instances' arenas to this WAL
 *  (l3_wal_salvage) and remove those arenas. 0 or a negative code. */
int l3_srv_wal_prepare(l3_srv_t *srv);
/** The WAL segment prefix in use (after l3_srv_wal_setup). */
const char *l3_srv_wal_path(void);

#endif
