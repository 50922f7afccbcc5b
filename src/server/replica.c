/* SPDX-License-Identifier: MIT */
/*
 * replica.c - the replication block, the state file and the promotion (formats in
 * replica.h); the follower process itself is follower.c.
 *
 * A node is a replica while replication.primary is set and it was not promoted: its workers
 * refuse writes (403 read_only, routes.c) and the follower role applies the primary's
 * changes. POST /admin/promote takes the block's lock (so no change of the follower lands
 * after it), flips the role to promoted, and records it in the state file, so a restart
 * with the same configuration keeps the node a primary (remove replica.state, or the
 * replication section, to decide again).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "l3kv/base.h"
#include "log.h"
#include "replica.h"

#define RS_MAGIC "L3KVRPS1"
#define RS_VERSION 1u

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void st32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

const char *l3_repl_role_name(uint32_t role)
{
    return role == L3_REPL_REPLICA ? "replica" : role == L3_REPL_PROMOTED ? "promoted" : "primary";
}

const char *l3_repl_state_name(uint32_t state)
{
    static const char *const names[] = {"starting", "connecting", "bootstrapping", "following", "stopped"};
    return state < sizeof names / sizeof names[0] ? names[state] : "unknown";
}

bool l3_repl_read_only(const l3_repl_t *r)
{
    return r != NULL && atomic_load_explicit(&r->rp_role, memory_order_acquire) == L3_REPL_REPLICA;
}

void l3_repl_ack(l3_repl_t *r, uint64_t pos)
{
    if (r == NULL)
        return;
    uint64_t cur = atomic_load(&r->rp_ack_pos);
    while (pos > cur && !atomic_compare_exchange_weak(&r->rp_ack_pos, &cur, pos))
        ;
}

void l3_repl_lock(l3_repl_t *r)
{
    if (pthread_mutex_lock(&r->rp_mu) == EOWNERDEAD)
        pthread_mutex_consistent(&r->rp_mu); /* the follower died holding it: nothing to undo */
}

void l3_repl_unlock(l3_repl_t *r)
{
    pthread_mutex_unlock(&r->rp_mu);
}

static void state_path(const char *data_dir, char *out, size_t cap, const char *suffix)
{
    snprintf(out, cap, "%s/replica.state%s", data_dir, suffix);
}

int l3_repl_state_load(const char *data_dir, const char *primary, l3_repl_state_t *ret)
{
    memset(ret, 0, sizeof *ret);
    char path[4200];
    state_path(data_dir, path, sizeof path, "");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    uint8_t b[L3_REPL_STATE_BYTES];
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    if (n != (ssize_t)sizeof b || memcmp(b, RS_MAGIC, 8) != 0 || ld32(b + 8) != RS_VERSION ||
        ld32(b + 56) != l3_crc32c(0, b, 56)) {
        L3_LOG(L3_LOG_WARN, "replication: %s is damaged or of another version: ignored", path);
        return 0;
    }
    ret->promoted = (ld32(b + 12) & 1u) != 0;
    size_t ulen = primary != NULL ? strlen(primary) : 0;
    bool same = primary != NULL && ld32(b + 20) == ulen && ld32(b + 16) == l3_crc32c(0, primary, ulen);
    if (same && b[24] != 0) {
        memcpy(ret->cursor, b + 24, L3_REPL_CURSOR_LEN);
        ret->cursor[L3_REPL_CURSOR_LEN] = '\0';
        ret->have_cursor = strspn(ret->cursor, "0123456789abcdef") == L3_REPL_CURSOR_LEN;
    }
    if (!same && !ret->promoted && primary != NULL)
        L3_LOG(L3_LOG_INFO, "replication: %s belongs to another primary: starting from a full copy", path);
    return 1;
}

int l3_repl_state_save(const char *data_dir, const char *primary, const l3_repl_state_t *st)
{
    uint8_t b[L3_REPL_STATE_BYTES] = {0};
    memcpy(b, RS_MAGIC, 8);
    st32(b + 8, RS_VERSION);
    st32(b + 12, st->promoted ? 1u : 0u);
    size_t ulen = primary != NULL ? strlen(primary) : 0;
    st32(b + 16, primary != NULL ? l3_crc32c(0, primary, ulen) : 0);
    st32(b + 20, (uint32_t)ulen);
    if (st->have_cursor)
        memcpy(b + 24, st->cursor, L3_REPL_CURSOR_LEN);
    st32(b + 56, l3_crc32c(0, b, 56));
    char path[4200], tmp[4200];
    state_path(data_dir, path, sizeof path, "");
    state_path(data_dir, tmp, sizeof tmp, ".tmp");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (write(fd, b, sizeof b) != (ssize_t)sizeof b || fsync(fd) != 0)
        rc = errno ? -errno : -EIO;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc == 0)
        rc = l3_fsync_dir(data_dir);
    if (rc < 0)
        (void)unlink(tmp);
    return rc;
}

int l3_repl_promote(l3_repl_t *r, const char *data_dir)
{
    if (r == NULL)
        return 1;
    l3_repl_lock(r);
    uint32_t role = atomic_load(&r->rp_role);
    if (role != L3_REPL_REPLICA) {
        l3_repl_unlock(r);
        return 1;
    }
    atomic_store_explicit(&r->rp_role, L3_REPL_PROMOTED, memory_order_release);
    atomic_store(&r->rp_state, L3_REPL_S_STOPPED);
    l3_repl_state_t st = {.promoted = true};
    int rc = l3_repl_state_save(data_dir, NULL, &st);
    l3_repl_unlock(r);
    if (rc < 0)
        L3_LOG(L3_LOG_ERROR,
               "replication: promoted, but %s/replica.state cannot be written (%s): a restart with the same "
               "configuration makes this node a replica again",
               data_dir, strerror(-rc));
    else
        L3_LOG(L3_LOG_WARN,
               "replication: promoted to primary (writes accepted; the primary is no longer followed)");
    return rc < 0 ? rc : 0;
}
