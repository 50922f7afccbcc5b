/* SPDX-License-Identifier: MIT */
/*
 * listen.h - the listening sockets (SO_REUSEPORT group) the supervisor holds for the
 * workers. See listen.c.
 */
#ifndef L3KV_SRV_LISTEN_H
#define L3KV_SRV_LISTEN_H

#include <stddef.h>
#include <stdint.h>

/**
 * Bind nsock listening sockets to address:port with SO_REUSEPORT (port 0: the kernel picks
 * one, all join it; *ret_port gets the bound port). A non-zero port is first probed with a
 * plain bind, so a running server on it is not silently joined. On failure every socket
 * is closed again, lfds[] is -1 and errbuf names the cause. 0 or -errno.
 */
int l3_srv_listen_open(const char *address, uint32_t port, uint32_t nsock, int *lfds, uint16_t *ret_port,
                       char *errbuf, size_t errlen);

/** Connections waiting in the accept queues of the nsock sockets (TCP_INFO); lfds[i] < 0 skipped. */
uint64_t l3_srv_listen_backlog(const int *lfds, uint32_t nsock);

#endif
