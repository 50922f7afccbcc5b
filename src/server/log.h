/* SPDX-License-Identifier: MIT */
/*
 * log.h - the server's log: one line per event to stderr or the configured file.
 */
#ifndef L3KV_SRV_LOG_H
#define L3KV_SRV_LOG_H

#include <sys/types.h>

#include "config.h"

/** One line to stderr: "<UTC time> l3kv[<pid>] <level>: <message>", one write(). */
void l3_srv_log(l3_log_level_t lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void l3_srv_log_set_level(l3_log_level_t lvl);
/** Set the log file (NULL = stderr as inherited) and open it onto fd 2. 0 or -errno. */
int l3_srv_log_open(const char *path);

/** A file that SIGHUP reopens (logrotate): its path, kept by l3_srv_logfile_set. */
typedef struct {
    char *path;  /* NULL = none */
    mode_t mode; /* for O_CREAT */
} l3_srv_logfile_t;

/** Keep a copy of path (NULL = none). 0 or -ENOMEM. */
int l3_srv_logfile_set(l3_srv_logfile_t *f, const char *path);
/** Open the file for appending: a new fd, -errno, or -ENOENT when no path is set. */
int l3_srv_logfile_open(const l3_srv_logfile_t *f);
/** Reopen the log file (SIGHUP); no-op without one. 0 or -errno. */
int l3_srv_log_reopen(void);

#define L3_LOG(lvl, ...) l3_srv_log(lvl, __VA_ARGS__)

#endif
