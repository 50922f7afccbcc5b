/* SPDX-License-Identifier: MIT */
/*
 * walsetup.h - connects the server to the write-ahead log (see walsetup.c).
 */
#ifndef L3KV_SRV_WALSETUP_H
#define L3KV_SRV_WALSETUP_H

#include <stdbool.h>
#include <sys/types.h>

#include "supervisor.h"

/** Format the WAL ring, recover the arena (snapshot + WAL), install the store hook, the
 *  durability eventfds ("fsync") and the writer role. Supervisor, before l3_srv_run. */
int l3_srv_wal_setup(l3_srv_t *srv);
/** The WAL segment prefix in use (after l3_srv_wal_setup). */
const char *l3_srv_wal_path(void);
/** Supervisor loop hook: start a checkpoint when the WAL on disk passed storage.checkpoint_bytes. */
void l3_srv_wal_tick(l3_srv_t *srv);
/** Ask for a checkpoint at the next tick whatever the WAL size (supervisor; SIGRTMIN). */
void l3_srv_wal_request_checkpoint(l3_srv_t *srv);
/** Supervisor reaped a child it does not track: true if it was the checkpointer (logged). */
bool l3_srv_wal_child_exited(l3_srv_t *srv, pid_t pid, int status);
/** Supervisor stopping: kill and reap a running checkpointer. */
void l3_srv_wal_stop_tasks(l3_srv_t *srv);

#endif
