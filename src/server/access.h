/* SPDX-License-Identifier: MIT */
/*
 * access.h - the optional access log (log.access); access.c has the line format.
 */
#ifndef L3KV_SRV_ACCESS_H
#define L3KV_SRV_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

/** Open (create, mode 0600, append) the access log at path; NULL = none. 0 or -errno. */
int l3_access_open(const char *path);
/** Reopen the file (SIGHUP, after logrotate). 0 or -errno (the old descriptor stays). */
int l3_access_reopen(void);
bool l3_access_enabled(void);
/** One line for an answered request: who is the token's name ("-" without one). */
void l3_access_write(h2o_req_t *req, const char *who, int status, size_t bytes, uint64_t handler_ns);

#endif
