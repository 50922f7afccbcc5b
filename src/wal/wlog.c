/* SPDX-License-Identifier: MIT */
/*
 * wlog.c - the WAL writer process's event lines (writer.c, feedlog.c): to the logger the
 * caller set in l3_wal_writer_opts_t.log, or to stderr.
 */
#include <stdarg.h>
#include <stdio.h>

#include "wal-int.h"

void l3_wal__log(void (*log)(int severity, const char *line), int severity, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (log)
        log(severity, line);
    else
        fprintf(stderr, "l3kv-wal-writer: %s\n", line);
}
