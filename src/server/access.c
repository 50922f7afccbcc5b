/* SPDX-License-Identifier: MIT */
/*
 * access.c - the optional access log (log.access): one line per answered request.
 *
 * Line format (fields separated by one space, newline-terminated, at most 1024 bytes):
 *   <UTC time ISO 8601, ms> <peer address:port> <token name or -> <method> <path> <status>
 *   <body bytes> <handler seconds>
 * The path is the raw request path without its query string (a query can carry values a
 * log must not keep; a token there is refused anyway), cut at 512 bytes, with bytes
 * outside printable ASCII, space, '"' and '%' written as %XX. The token itself is never
 * logged, only the entry's name. The file is opened once in the supervisor (O_APPEND;
 * workers inherit it) and each process reopens it on SIGHUP (logrotate). Each line is one
 * write(2), so lines from different processes do not interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "access.h"
#include "log.h"

static int fd = -1;
static l3_srv_logfile_t file = {NULL, 0600};

int l3_access_open(const char *p)
{
    int rc = l3_srv_logfile_set(&file, p);
    return rc < 0 ? rc : l3_access_reopen();
}

int l3_access_reopen(void)
{
    if (file.path == NULL)
        return 0;
    int nfd = l3_srv_logfile_open(&file);
    if (nfd < 0)
        return nfd;
    if (fd >= 0)
        close(fd);
    fd = nfd;
    return 0;
}

bool l3_access_enabled(void)
{
    return fd >= 0;
}

static size_t peer_text(h2o_req_t *req, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    char a[INET6_ADDRSTRLEN] = "-";
    unsigned port = 0;
    if (req->conn != NULL && req->conn->callbacks != NULL && req->conn->callbacks->get_peername != NULL &&
        req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) != 0) {
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof(a));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof(a));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    int n = snprintf(out, cap, "%s:%u", a, port);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Copy s[0..n) escaped; returns the bytes written (never more than cap). */
static size_t esc(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7f && c != '"' && c != '%') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    return o;
}

void l3_access_write(h2o_req_t *req, const char *who, int status, size_t bytes, uint64_t ns)
{
    if (fd < 0)
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t o =
        (size_t)snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    o += peer_text(req, line + o, 64);
    line[o++] = ' ';
    size_t wl = strlen(who);
    o += esc(line + o, 200, who, wl < 64 ? wl : 64);
    line[o++] = ' ';
    o += esc(line + o, 100, req->method.base, req->method.len < 32 ? req->method.len : 32);
    line[o++] = ' ';
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    o += esc(line + o, 520, req->path.base, plen < 512 ? plen : 512);
    int n = snprintf(line + o, sizeof(line) - o, " %d %zu %.6f\n", status, bytes, (double)ns / 1e9);
    if (n < 0 || (size_t)n >= sizeof(line) - o)
        return;
    o += (size_t)n;
    ssize_t w;
    do
        w = write(fd, line, o);
    while (w < 0 && errno == EINTR);
}
