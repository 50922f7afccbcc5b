/* SPDX-License-Identifier: MIT */
/*
 * feedwatch.c - the change-feed benchmark's active watchers: N keep-alive connections to
 * 127.0.0.1:PORT, each sending GET /changes?QUERY once and reading the stream, counted as
 * it arrives (change events, reset events); nothing is stored, so the client costs what
 * reading the streams costs. One thread, one epoll loop.
 *
 * usage: l3kv-feedwatch PORT N QUERY
 * Prints "ready" once every request is sent; stops when its standard input reaches end of
 * file or on SIGTERM/SIGINT and prints "<changes> <resets> <cpu_us>" (cpu_us: its own user
 * and system time). Exit 0, 1 on a connect or socket error, 2 on usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_WATCHERS 1000
#define READ_BYTES (256u * 1024u)
#define TAIL_MAX 16u /* longest pattern - 1 */

static const char *const pats[] = {"event: change", "event: reset", "\"reset\":true"};

typedef struct {
    int fd;
    size_t tail;
    char buf[TAIL_MAX + READ_BYTES];
} watcher_t;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* occurrences of p in [b, b + n) */
static unsigned long count(const char *b, size_t n, const char *p)
{
    size_t pl = strlen(p);
    unsigned long c = 0;
    for (const char *e = b + n, *q; (q = memmem(b, (size_t)(e - b), p, pl)) != NULL; b = q + pl)
        c++;
    return c;
}

/* Read what w's socket has: -1 on an error, 0 on end of stream, else 1. An event whose first
 * bytes were in the previous read's tail was counted then: the counts over the tail alone
 * are taken off. */
static int drain(watcher_t *w, unsigned long *ch, unsigned long *rs)
{
    ssize_t n = recv(w->fd, w->buf + w->tail, READ_BYTES, 0);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 1 : -1;
    if (n == 0)
        return 0;
    size_t all = w->tail + (size_t)n;
    *ch += count(w->buf, all, pats[0]) - count(w->buf, w->tail, pats[0]);
    *rs += count(w->buf, all, pats[1]) - count(w->buf, w->tail, pats[1]);
    *rs += count(w->buf, all, pats[2]) - count(w->buf, w->tail, pats[2]);
    w->tail = all < TAIL_MAX ? all : TAIL_MAX;
    memmove(w->buf, w->buf + all - w->tail, w->tail);
    return 1;
}

static int connect_one(int port, const char *query)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[2048];
    int n = snprintf(req, sizeof req, "GET /changes?%s HTTP/1.1\r\nHost: x\r\n\r\n", query);
    if (n <= 0 || (size_t)n >= sizeof req || connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        send(fd, req, (size_t)n, 0) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT N QUERY\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    if (port <= 0 || port > 65535 || n <= 0 || n > MAX_WATCHERS) {
        fprintf(stderr, "feedwatch: PORT 1..65535, N 1..%d\n", MAX_WATCHERS);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int ep = epoll_create1(0);
    watcher_t *ws = calloc((size_t)n, sizeof *ws);
    if (ep < 0 || ws == NULL)
        return 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
    for (int i = 0; i < n; i++) {
        if ((ws[i].fd = connect_one(port, argv[3])) < 0) {
            fprintf(stderr, "feedwatch: connect to port %d: %s\n", port, strerror(errno));
            return 1;
        }
        ev.data.ptr = &ws[i];
        epoll_ctl(ep, EPOLL_CTL_ADD, ws[i].fd, &ev);
    }
    printf("ready\n");
    fflush(stdout);
    unsigned long ch = 0, rs = 0;
    int open = n;
    while (!stop) {
        struct epoll_event evs[64];
        int k = epoll_wait(ep, evs, 64, -1);
        if (k < 0 && errno != EINTR)
            return 1;
        for (int i = 0; i < k; i++) {
            watcher_t *w = evs[i].data.ptr;
            if (w == NULL) {
                stop = 1; /* stdin: end of file or a line, either means stop */
                continue;
            }
            int rc = drain(w, &ch, &rs);
            if (rc <= 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, w->fd, NULL);
                close(w->fd);
                w->fd = -1;
                open--;
            }
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long long cpu_us = (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL +
                       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
    printf("%lu %lu %lld %d\n", ch, rs, cpu_us, open);
    for (int i = 0; i < n; i++)
        if (ws[i].fd >= 0)
            close(ws[i].fd);
    free(ws);
    close(ep);
    return 0;
}
