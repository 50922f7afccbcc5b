/* SPDX-License-Identifier: MIT */
/*
 * restore.h - l3kv --restore (restore.c): install a backup as the data directory's snapshot.
 */
#ifndef L3KV_SRV_RESTORE_H
#define L3KV_SRV_RESTORE_H

#include <stdbool.h>

#include "config.h"

/** Verify file and install it in c's data directory (non-empty: refused unless force).
 *  Returns the process exit code: 0 restored, 1 I/O failure, 2 refused. */
int l3_srv_restore(const l3_srv_config_t *c, const char *file, bool force);

#endif
