/* SPDX-License-Identifier: MIT */
/*
 * log.c - one-line event log on stderr (fd 2), optionally redirected to a file.
 *
 * Runs in every server process. Each event is formatted into a stack buffer and written
 * with a single write(2), so lines from different processes do not interleave (fd 2 is
 * shared; lines are well below PIPE_BUF). SIGHUP makes the supervisor and the workers call
 * l3_srv_log_reopen(), which re-opens the configured file and dup2()s it onto fd 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static l3_log_level_t min_level = L3_LOG_INFO;
static l3_srv_logfile_t log_file = {NULL, 0640};
static const char *const names[] = {"debug", "info", "warn", "error"};

void l3_srv_log_set_level(l3_log_level_t lvl)
{
    min_level = lvl;
}

void l3_srv_log(l3_log_level_t lvl, const char *fmt, ...)
{
    if (lvl < min_level)
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ l3kv[%d] %s: ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 (int)getpid(), names[lvl <= L3_LOG_ERROR ? lvl : L3_LOG_ERROR]);
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n')
            line[i] = ' ';
    line[len++] = '\n';
    ssize_t w;
    do
        w = write(2, line, len);
    while (w < 0 && errno == EINTR);
}

int l3_srv_logfile_set(l3_srv_logfile_t *f, const char *path)
{
    free(f->path);
    f->path = NULL;
    if (path != NULL && (f->path = strdup(path)) == NULL)
        return -ENOMEM;
    return 0;
}

int l3_srv_logfile_open(const l3_srv_logfile_t *f)
{
    if (f->path == NULL)
        return -ENOENT;
    int fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, f->mode);
    return fd < 0 ? -errno : fd;
}

int l3_srv_log_open(const char *path)
{
    int rc = l3_srv_logfile_set(&log_file, path);
    return rc < 0 ? rc : l3_srv_log_reopen();
}

int l3_srv_log_reopen(void)
{
    if (log_file.path == NULL)
        return 0;
    int fd = l3_srv_logfile_open(&log_file);
    if (fd < 0)
        return fd;
    int rc = dup2(fd, 2) < 0 ? -errno : 0;
    close(fd);
    return rc;
}
