/* SPDX-License-Identifier: MIT */
/*
 * listen.c - the listening sockets: one SO_REUSEPORT group bound to server.address:port.
 *
 * Process: the supervisor creates the group once, before any fork, and holds every fd open
 * for the life of the server (workers inherit them; a worker that dies or retires leaves
 * its sockets open, and what is queued on them waits for the worker that adopts them).
 * The kernel spreads new connections over the sockets by a hash of the 4-tuple.
 * Any process may read the accept-queue lengths (l3_srv_listen_backlog).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"

int l3_srv_listen_open(const char *address, uint32_t port, uint32_t nsock, int *lfds, uint16_t *ret_port,
                       char *errbuf, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE},
                    *res;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%u", port);
    int rc = getaddrinfo(address, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(errbuf, errlen, "config: 'server.address' %s: %s", address, gai_strerror(rc));
        return -EINVAL;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = (socklen_t)res->ai_addrlen;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    int family = res->ai_family;
    freeaddrinfo(res);

    for (uint32_t i = 0; i < nsock; i++)
        lfds[i] = -1;
    if (port != 0) {
        /* SO_REUSEPORT would let a second server silently share the port with a running
         * one: probe with a plain bind first, which fails if anything listens there. */
        int probe = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
        if (probe < 0)
            goto fail_errno;
        (void)setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (family == AF_INET6)
            (void)setsockopt(probe, IPPROTO_IPV6, IPV6_V6ONLY, &(int){0}, sizeof(int));
        if (bind(probe, (struct sockaddr *)&ss, sslen) != 0) {
            int e = errno;
            close(probe);
            errno = e;
            goto fail_errno;
        }
        close(probe);
    }
    for (uint32_t i = 0; i < nsock; i++) {
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
        if (fd < 0)
            goto fail_errno;
        lfds[i] = fd;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
            goto fail_errno;
        if (family == AF_INET6)
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int){0}, sizeof(int));
        if (bind(fd, (struct sockaddr *)&ss, sslen) != 0)
            goto fail_errno;
        if (i == 0) { /* port 0: every later socket joins the port the kernel chose */
            if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0)
                goto fail_errno;
            *ret_port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
        }
        if (listen(fd, 4096) != 0)
            goto fail_errno;
    }
    return 0;
fail_errno:
    rc = -errno;
    snprintf(errbuf, errlen, "cannot listen on %s:%u: %s", address, port, strerror(errno));
    for (uint32_t i = 0; i < nsock; i++)
        if (lfds[i] >= 0) {
            close(lfds[i]);
            lfds[i] = -1;
        }
    return rc;
}

uint64_t l3_srv_listen_backlog(const int *lfds, uint32_t nsock)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < nsock; i++) {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        /* for a listening socket the kernel reports the accept queue length in tcpi_unacked */
        if (lfds[i] >= 0 && getsockopt(lfds[i], IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
            n += ti.tcpi_unacked;
    }
    return n;
}
