/* SPDX-License-Identifier: MIT */
/*
 * log.h - the server's log: one line per event to stderr or the configured file.
 */
#ifndef L3KV_SRV_LOG_H
#define L3KV_SRV_LOG_H

#include "config.h"

/** One line to stderr: "<UTC time> l3kv[<pid>] <level>: <message>", one write(). */
void l3_srv_log(l3_log_level_t lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void l3_srv_log_set_level(l3_log_level_t lvl);
/** Set the log file (NULL = stderr as inherited) and open it onto fd 2. 0 or -errno. */
int l3_srv_log_open(const char *path);
/** Reopen the log file (SIGHUP); no-op without one. 0 or -errno. */
int l3_srv_log_reopen(void);

#define L3_LOG(lvl, ...) l3_srv_log(lvl, __VA_ARGS__)

#endif
