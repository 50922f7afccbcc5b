/* SPDX-License-Identifier: MIT */
/*
 * ctl.h - the shared control block: which worker slots are live, and which listening
 * sockets each one serves.
 *
 * One shared anonymous page created by the supervisor before the first fork; it tells the
 * workers which slots are live so each can compute which listening sockets it serves.
 * Written only by the supervisor (under no lock: single writer); workers read it with
 * acquire loads and re-read it when sc_gen changes (they poll it every 100 ms, and at once
 * on L3_SRV_CTL_SIGNAL, which the supervisor sends when a worker died so that its sockets
 * are adopted without waiting for a tick).
 *
 *   offset  size  field
 *   0       4     sc_magic   "L3SC"
 *   4       4     sc_gen     bumped after every change below (release store)
 *   8       4     sc_nsock   listening sockets (fixed for the life of the server)
 *   12      4     sc_stop    1 once a graceful stop began
 *   16      64*4  sc_state   per worker slot: L3_OBS_SLOT_EMPTY / _RUNNING / _RETIRING
 *   272     64*4  sc_pid     per worker slot: pid or 0
 *
 * Socket assignment (l3_srv_ctl_serves): live = RUNNING slots in index order; socket i
 * is served by live[i mod |live|]. With S sockets and N <= S live workers no worker
 * serves more than ceil(S/N) sockets, at most twice its fair share.
 */
#ifndef L3KV_SRV_CTL_H
#define L3KV_SRV_CTL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#define L3_SRV_CTL_MAGIC 0x4353334cu /* "L3SC" */

typedef struct {
    uint32_t sc_magic;
    uint32_t sc_gen;
    uint32_t sc_nsock;
    uint32_t sc_stop;
    uint32_t sc_state[L3_SRV_MAX_WORKERS];
    int32_t sc_pid[L3_SRV_MAX_WORKERS];
} l3_srv_ctl_t;

/** "The control block changed, re-read it now": sent by the supervisor to live workers.
 *  Workers are forked with it blocked and unblock it once their handler is in place. */
#define L3_SRV_CTL_SIGNAL (SIGRTMIN + 1)

/** Map a fresh control block (shared with the children forked later). NULL (errno) on failure. */
l3_srv_ctl_t *l3_srv_ctl_create(void);

/** True when worker slot `slot` serves socket `sock` under the current table. */
bool l3_srv_ctl_serves(const l3_srv_ctl_t *ctl, uint32_t slot, uint32_t sock);

/** Send L3_SRV_CTL_SIGNAL to every RUNNING worker with a known pid. */
void l3_srv_ctl_wake(const l3_srv_ctl_t *ctl);

#endif
