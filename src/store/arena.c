/* SPDX-License-Identifier: MIT */
/*
 * arena.c - creating, attaching and naming the shared arena; the process table.
 *
 * Owns: the shm object "/l3kv-<name>" and the link /dev/shm/l3kv-pid-<pid>, the arena
 * header (layout.h), and claiming/releasing process slots.
 * Runs in: the supervisor (create, reap), every child (register), l3kv-inspect (attach
 * read-only).
 * Concurrency: the header's immutable part is written before ah_state turns READY
 * (release store) and never again; slots are claimed by CAS on ps_pid (0 -> pid) and
 * released by CAS (pid -> -1 while being repaired -> 0), so two sweepers never release
 * the same slot twice.
 * Invariants:
 *  H1 ah_crc covers bytes 0..219 of the header and always matches.
 *  H2 a handle operates only through a slot claimed in its own process (after fork the
 *     inherited handle is refused until l3_store_proc_register()).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store-int.h"

uint64_t l3_store__fork_gen = 1;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void atfork_child(void)
{
    l3_store__fork_gen++;
}

static void init_once(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

bool l3_store__pid_alive(int32_t pid)
{
    if (pid <= 0)
        return false;
    return kill(pid, 0) == 0 || errno == EPERM;
}

int l3_store__check_registered(const l3_store_t *st)
{
    if (st->readonly)
        return -EROFS;
    if (st->slot < 0 || st->gen != l3_store__fork_gen)
        return -EPERM;
    return 0;
}

static bool name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 48)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static uint32_t hdr_crc(const l3_arena_hdr_t *h)
{
    return l3_crc32c(0, h, L3_ARENA_HDR_CRC_BYTES);
}

/* Check at start that a robust mutex really reports a dead owner (S2 in docs/invariants.md). */
static int robust_selftest(void)
{
    l3_lock_t *lk = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (lk == MAP_FAILED)
        return -errno;
    int rc = l3_store__lock_init(lk);
    if (rc < 0)
        goto out;
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        goto out;
    }
    if (pid == 0) {
        pthread_mutex_lock(&lk->lk_mutex);
        _exit(0); /* dies holding it */
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int r = pthread_mutex_trylock(&lk->lk_mutex);
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(&lk->lk_mutex);
        pthread_mutex_unlock(&lk->lk_mutex);
        rc = 0;
    } else {
        if (r == 0)
            pthread_mutex_unlock(&lk->lk_mutex);
        rc = -ENOTSUP;
    }
    pthread_mutex_destroy(&lk->lk_mutex);
out:
    munmap(lk, 4096);
    return rc;
}

static void pidlink_path(char *buf, size_t n, long pid)
{
    snprintf(buf, n, "/dev/shm/l3kv-pid-%ld", pid);
}

static void claim_slot_fields(l3_store_t *st, uint32_t i, int role)
{
    l3_proc_slot_t *ps = l3_store__slot(st, i);
    ps->ps_role = (uint32_t)role;
    ps->ps_start_ns = l3_now_ns();
    ps->ps_heartbeat_ns = ps->ps_start_ns;
    ps->ps_stripe_held = 0;
    ps->ps_alloc_held = 0;
    ps->ps_ops = 0;
    ps->ps_repairs = 0;
    ps->tx_state = L3_TX_IDLE;
    ps->tx_used = 0;
    ps->tx_nalloc = 0;
    ps->tx_nfree = 0;
    ps->tx_multi = 0;
    ps->tx_ntail = 0;
    ps->au_count = 0;
    st->slot = (int)i;
    st->ps = ps;
    st->undo = l3_store__undo_area(st, i);
    st->gen = l3_store__fork_gen;
}

static int map_handle(int fd, size_t size, bool ro, l3_store_t **ret)
{
    l3_store_t *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    void *p = mmap(NULL, size, ro ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int rc = -errno;
        free(st);
        return rc;
    }
    st->base = p;
    st->size = size;
    st->hdr = p;
    st->readonly = ro;
    st->slot = -1;
    st->max_doc = L3_STORE_DEFAULT_MAX_DOC_BYTES;
    *ret = st;
    return 0;
}

static void bind_regions(l3_store_t *st)
{
    st->al = AT(st, st->hdr->ah_off_alloc, l3_alloc_hdr_t);
    st->stripes = AT(st, st->hdr->ah_off_stripes, l3_stripe_t);
    st->smask = st->hdr->ah_nstripes - 1;
    st->timeout_ms = st->hdr->ah_lock_timeout_ms;
    memcpy(st->name, st->hdr->ah_name, sizeof(st->name));
    st->name[sizeof(st->name) - 1] = 0;
}

/* Sizes and offsets of a new arena's regions (layout.h), from the caller's options. */
typedef struct {
    char name[64];
    uint64_t arena, wal, obs, undo;
    uint32_t procs, nstripes, lock_timeout_ms;
    uint64_t off_procs, off_stripes, off_alloc, off_obs, off_wal, off_undo, off_heap;
} plan_t;

/* Apply the defaults, check the options and place every region. 0 or -EINVAL. */
static int plan_layout(const l3_store_opts_t *opts, plan_t *p)
{
    l3_store_opts_t o = {0};
    if (opts)
        o = *opts;
    memset(p, 0, sizeof(*p));
    if (o.name) {
        if (!name_ok(o.name))
            return -EINVAL;
        snprintf(p->name, sizeof(p->name), "%s", o.name);
    } else {
        snprintf(p->name, sizeof(p->name), "l3kv.%ld", (long)getpid());
    }
    uint64_t arena = o.arena_bytes ? o.arena_bytes : L3_STORE_DEFAULT_ARENA_BYTES;
    p->wal = L3_ALIGN_UP((uint64_t)(o.wal_ring_bytes ? o.wal_ring_bytes : L3_STORE_DEFAULT_WAL_RING_BYTES),
                         (uint64_t)L3_ARENA_ALIGN);
    p->obs = L3_ALIGN_UP((uint64_t)(o.obs_bytes ? o.obs_bytes : L3_STORE_DEFAULT_OBS_BYTES),
                         (uint64_t)L3_ARENA_ALIGN);
    p->undo = L3_ALIGN_UP((uint64_t)(o.undo_bytes ? o.undo_bytes : L3_STORE_DEFAULT_UNDO_BYTES),
                          (uint64_t)L3_ARENA_ALIGN);
    p->procs = o.max_procs ? o.max_procs : L3_STORE_DEFAULT_MAX_PROCS;
    p->nstripes = o.nstripes ? o.nstripes : 1024;
    p->lock_timeout_ms = o.lock_timeout_ms ? o.lock_timeout_ms : L3_STORE_DEFAULT_LOCK_TIMEOUT_MS;
    if (p->undo < (16u << 10) || p->procs > 4096 || p->nstripes > (1u << 16) ||
        (p->nstripes & (p->nstripes - 1)) || arena > (1ull << 46))
        return -EINVAL;
    p->arena = L3_ALIGN_UP(arena, (uint64_t)L3_ARENA_ALIGN);

    uint64_t off = L3_ARENA_HDR_BYTES;
    p->off_procs = off;
    off = L3_ALIGN_UP(off + (uint64_t)p->procs * L3_PROC_SLOT_BYTES, (uint64_t)L3_ARENA_ALIGN);
    p->off_stripes = off;
    off = L3_ALIGN_UP(off + (uint64_t)p->nstripes * sizeof(l3_stripe_t), (uint64_t)L3_ARENA_ALIGN);
    p->off_alloc = off;
    off = L3_ALIGN_UP(off + sizeof(l3_alloc_hdr_t), (uint64_t)L3_ARENA_ALIGN);
    p->off_obs = off;
    off += p->obs;
    p->off_wal = off;
    off += p->wal;
    p->off_undo = off;
    off += (uint64_t)p->procs * p->undo;
    p->off_heap = off;
    if (off + (1u << 20) > p->arena)
        return -EINVAL; /* less than 1 MiB of heap */
    return 0;
}

/* Create the shm object "/l3kv-<name>" of `bytes` bytes (replacing one left behind when
 * asked to). The fd, or -errno. */
static int open_shm(const char *name, bool replace, uint64_t bytes)
{
    char shm[80];
    snprintf(shm, sizeof(shm), "/l3kv-%s", name);
    int fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno == EEXIST && replace) {
        shm_unlink(shm);
        fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
    }
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)bytes) < 0) {
        int rc = -errno;
        close(fd);
        shm_unlink(shm);
        return rc;
    }
    return fd;
}

/* Write the header of a fresh arena (state stays FORMATTING) and bind the handle to it. */
static void format_header(l3_store_t *st, const plan_t *p)
{
    l3_arena_hdr_t *h = st->hdr;
    h->ah_magic = L3_ARENA_MAGIC;
    h->ah_layout = L3_ARENA_LAYOUT;
    h->ah_hdr_bytes = L3_ARENA_HDR_BYTES;
    h->ah_arena_bytes = p->arena;
    h->ah_created_ns = l3_wall_ns();
    h->ah_owner_pid = (int32_t)getpid();
    h->ah_max_procs = p->procs;
    h->ah_nstripes = p->nstripes;
    h->ah_slot_bytes = L3_PROC_SLOT_BYTES;
    h->ah_undo_bytes = p->undo;
    h->ah_off_procs = p->off_procs;
    h->ah_off_stripes = p->off_stripes;
    h->ah_off_alloc = p->off_alloc;
    h->ah_off_obs = p->off_obs;
    h->ah_obs_bytes = p->obs;
    h->ah_off_wal = p->off_wal;
    h->ah_wal_bytes = p->wal;
    h->ah_off_undo = p->off_undo;
    h->ah_off_heap = p->off_heap;
    h->ah_heap_bytes = p->arena - p->off_heap;
    l3_random_bytes(h->ah_sipkey, sizeof(h->ah_sipkey));
    snprintf(h->ah_name, sizeof(h->ah_name), "%s", p->name);
    h->ah_lock_timeout_ms = p->lock_timeout_ms;
    h->ah_crc = hdr_crc(h);
    bind_regions(st);
}

/* Initialise every lock and the heap, claim slot 0 for the creator, turn READY. */
static int format_body(l3_store_t *st, const plan_t *p)
{
    for (uint32_t i = 0; i < p->nstripes; i++) {
        int rc = l3_store__lock_init(&st->stripes[i].sp_lock);
        if (rc < 0)
            return rc;
    }
    int rc = l3_store__lock_init(&st->al->al_lock);
    if (rc < 0)
        return rc;
    l3_store__alloc_format(st, p->off_heap, p->arena - p->off_heap);
    st->created = true;
    l3_proc_slot_t *ps0 = l3_store__slot(st, 0);
    ps0->ps_pid = (int32_t)getpid();
    claim_slot_fields(st, 0, L3_STORE_ROLE_SUPERVISOR);
    __atomic_store_n(&st->hdr->ah_state, L3_ARENA_READY, __ATOMIC_RELEASE);
    return 0;
}

int l3_store_create(const l3_store_opts_t *opts, l3_store_t **ret)
{
    char shm[80], link[64];
    l3_store_t *st = NULL;
    plan_t p;

    pthread_once(&fork_once, init_once);
    int rc = plan_layout(opts, &p);
    if (rc < 0)
        return rc;
    rc = robust_selftest();
    if (rc < 0)
        return rc;
    int fd = open_shm(p.name, opts != NULL && opts->replace, p.arena);
    if (fd < 0)
        return fd;
    rc = map_handle(fd, p.arena, false, &st);
    close(fd);
    if (rc < 0)
        goto fail;
    format_header(st, &p);
    rc = format_body(st, &p);
    if (rc < 0)
        goto fail;

    pidlink_path(link, sizeof(link), (long)getpid());
    unlink(link);
    snprintf(shm, sizeof(shm), "l3kv-%s", p.name);
    if (symlink(shm, link) < 0) {
        /* not fatal: the instance is still found by name */
    }
    if (opts != NULL && opts->max_doc_bytes)
        st->max_doc = opts->max_doc_bytes;
    *ret = st;
    return 0;
fail:
    if (st) {
        munmap(st->base, st->size);
        free(st);
    }
    snprintf(shm, sizeof(shm), "/l3kv-%s", p.name);
    shm_unlink(shm);
    return rc;
}

/* Find the instance: by pid link, or the only live one. ret gets the name after "l3kv-". */
static int resolve(pid_t pid, char *ret, size_t n)
{
    char link[64], target[128];
    if (pid > 0) {
        pidlink_path(link, sizeof(link), (long)pid);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len < 0)
            return -ENOENT;
        target[len] = 0;
        if (strncmp(target, "l3kv-", 5) != 0)
            return -ENOENT;
        snprintf(ret, n, "%s", target + 5);
        return 0;
    }
    DIR *d = opendir("/dev/shm");
    if (!d)
        return -ENOENT;
    int found = 0;
    char first[128] = "";
    struct dirent *de;
    /* live pid links first */
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "l3kv-pid-", 9) != 0)
            continue;
        long p = strtol(de->d_name + 9, NULL, 10);
        if (!l3_store__pid_alive((int32_t)p))
            continue;
        snprintf(link, sizeof(link), "/dev/shm/%.40s", de->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len <= 5)
            continue;
        target[len] = 0;
        if (found++ == 0)
            snprintf(first, sizeof(first), "%s", target + 5);
    }
    if (found == 0) {
        rewinddir(d);
        while ((de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, "l3kv-", 5) != 0 || strncmp(de->d_name, "l3kv-pid-", 9) == 0)
                continue;
            if (found++ == 0)
                snprintf(first, sizeof(first), "%s", de->d_name + 5);
        }
    }
    closedir(d);
    if (found == 0)
        return -ENOENT;
    if (found > 1)
        return -EMLINK;
    snprintf(ret, n, "%s", first);
    return 0;
}

int l3_store_sweep_stale(pid_t only_pid)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return -errno;
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "l3kv-pid-", 9) != 0)
            continue;
        char *end;
        long pid = strtol(de->d_name + 9, &end, 10);
        if (*end || pid <= 0 || (only_pid > 0 && pid != (long)only_pid) || l3_store__pid_alive((int32_t)pid))
            continue;
        char link[300], target[128], shm[160];
        snprintf(link, sizeof(link), "/dev/shm/%s", de->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len > 5) {
            target[len] = 0;
            snprintf(shm, sizeof(shm), "/%s", target);
            int fd = strchr(target, '/') ? -1 : shm_open(shm, O_RDONLY, 0);
            if (fd >= 0) {
                l3_arena_hdr_t h;
                if (pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) && h.ah_magic == L3_ARENA_MAGIC &&
                    h.ah_owner_pid == (int32_t)pid && shm_unlink(shm) == 0)
                    removed++;
                close(fd);
            }
        }
        unlink(link);
    }
    closedir(d);
    return removed;
}

int l3_store_attach(const char *name, pid_t pid, unsigned flags, l3_store_t **ret)
{
    char nm[128], shm[160];
    bool ro = flags & L3_STORE_ATTACH_READONLY;
    int rc;
    pthread_once(&fork_once, init_once);
    if (name) {
        if (!name_ok(name))
            return -EINVAL;
        snprintf(nm, sizeof(nm), "%s", name);
    } else {
        rc = resolve(pid, nm, sizeof(nm));
        if (rc < 0)
            return rc;
    }
    snprintf(shm, sizeof(shm), "/l3kv-%s", nm);
    int fd = shm_open(shm, ro ? O_RDONLY : O_RDWR, 0);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : -errno;
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if ((uint64_t)sb.st_size < L3_ARENA_HDR_BYTES) {
        close(fd);
        return L3_ECORRUPT;
    }
    l3_store_t *st;
    rc = map_handle(fd, (size_t)sb.st_size, ro, &st);
    close(fd);
    if (rc < 0)
        return rc;
    const l3_arena_hdr_t *h = st->hdr;
    if (h->ah_magic != L3_ARENA_MAGIC) {
        rc = L3_ECORRUPT;
        goto fail;
    }
    if (h->ah_layout != L3_ARENA_LAYOUT) {
        fprintf(stderr, "l3kv store: arena layout %u, this build understands %u\n", h->ah_layout,
                L3_ARENA_LAYOUT);
        rc = -EPROTO;
        goto fail;
    }
    if (__atomic_load_n(&h->ah_state, __ATOMIC_ACQUIRE) == L3_ARENA_FORMATTING) {
        rc = -EAGAIN;
        goto fail;
    }
    if (hdr_crc(h) != h->ah_crc || h->ah_arena_bytes != (uint64_t)sb.st_size || h->ah_nstripes == 0 ||
        (h->ah_nstripes & (h->ah_nstripes - 1)) || h->ah_off_heap >= h->ah_arena_bytes ||
        h->ah_off_heap + h->ah_heap_bytes != h->ah_arena_bytes ||
        h->ah_off_procs + (uint64_t)h->ah_max_procs * L3_PROC_SLOT_BYTES > h->ah_off_stripes ||
        h->ah_off_stripes + (uint64_t)h->ah_nstripes * sizeof(l3_stripe_t) > h->ah_off_alloc ||
        h->ah_off_undo + (uint64_t)h->ah_max_procs * h->ah_undo_bytes > h->ah_off_heap) {
        rc = L3_ECORRUPT;
        goto fail;
    }
    bind_regions(st);
    *ret = st;
    return 0;
fail:
    munmap(st->base, st->size);
    free(st);
    return rc;
}

void l3_store_close(l3_store_t *st)
{
    if (!st)
        return;
    if (!st->borrowed)
        munmap(st->base, st->size);
    free(st);
}

int l3_store_unlink(l3_store_t *st)
{
    char shm[96], link[64], target[128];
    snprintf(shm, sizeof(shm), "/l3kv-%s", st->name);
    int rc = shm_unlink(shm) < 0 ? -errno : 0;
    pidlink_path(link, sizeof(link), (long)st->hdr->ah_owner_pid);
    ssize_t len = readlink(link, target, sizeof(target) - 1);
    if (len > 0) {
        target[len] = 0;
        if (strcmp(target, shm + 1) == 0)
            unlink(link);
    }
    return rc;
}

/* Release slot i of dead process pid: repair what it held, then free the slot. */
static int reap_one(l3_store_t *st, uint32_t i, int32_t pid)
{
    l3_proc_slot_t *ds = l3_store__slot(st, i);
    int32_t expect = pid;
    if (!__atomic_compare_exchange_n(&ds->ps_pid, &expect, -1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return 0;
    int rc = l3_store__reap_slot(st, i);
    if (rc < 0) {
        __atomic_store_n(&ds->ps_pid, pid, __ATOMIC_RELEASE);
        return rc;
    }
    ds->ps_role = 0;
    ds->ps_stripe_held = 0;
    ds->ps_alloc_held = 0;
    __atomic_store_n(&ds->ps_pid, 0, __ATOMIC_RELEASE);
    return 1;
}

int l3_store_proc_register(l3_store_t *st, int role, uint32_t *ret_slot)
{
    if (st->readonly)
        return -EROFS;
    if (st->slot >= 0 && st->gen == l3_store__fork_gen) {
        if (ret_slot)
            *ret_slot = (uint32_t)st->slot;
        return 0;
    }
    int32_t me = (int32_t)getpid();
    uint32_t n = st->hdr->ah_max_procs;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < n; i++) {
            l3_proc_slot_t *ps = l3_store__slot(st, i);
            int32_t expect = 0;
            if (__atomic_compare_exchange_n(&ps->ps_pid, &expect, me, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                claim_slot_fields(st, i, role);
                /* sweep slots of processes that died without being reaped */
                for (uint32_t j = 0; j < n; j++) {
                    int32_t p = __atomic_load_n(&l3_store__slot(st, j)->ps_pid, __ATOMIC_ACQUIRE);
                    if (j != i && p > 0 && !l3_store__pid_alive(p))
                        (void)reap_one(st, j, p);
                }
                if (ret_slot)
                    *ret_slot = i;
                return 0;
            }
        }
        if (pass == 1)
            break;
        /* table full: sweep dead slots using a temporary look at pids only */
        bool any = false;
        for (uint32_t j = 0; j < n; j++) {
            int32_t p = __atomic_load_n(&l3_store__slot(st, j)->ps_pid, __ATOMIC_ACQUIRE);
            if (p > 0 && !l3_store__pid_alive(p) && l3_store__slot(st, j)->ps_stripe_held == 0 &&
                l3_store__slot(st, j)->ps_alloc_held == 0 && l3_store__slot(st, j)->tx_state == L3_TX_IDLE) {
                int32_t e = p;
                if (__atomic_compare_exchange_n(&l3_store__slot(st, j)->ps_pid, &e, 0, false,
                                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                    any = true;
            }
        }
        if (!any)
            break;
    }
    return -ENOSPC;
}

int l3_store_proc_unregister(l3_store_t *st)
{
    int rc = l3_store__check_registered(st);
    if (rc < 0)
        return rc;
    l3_proc_slot_t *ps = st->ps;
    ps->ps_role = 0;
    __atomic_store_n(&ps->ps_pid, 0, __ATOMIC_RELEASE);
    st->slot = -1;
    st->ps = NULL;
    st->undo = NULL;
    return 0;
}

void l3_store_proc_heartbeat(l3_store_t *st)
{
    if (st->ps && st->gen == l3_store__fork_gen)
        __atomic_store_n(&st->ps->ps_heartbeat_ns, l3_now_ns(), __ATOMIC_RELAXED);
}

int l3_store_proc_reap(l3_store_t *st, pid_t pid)
{
    int rc = l3_store__check_registered(st);
    if (rc < 0)
        return rc;
    int released = 0;
    for (uint32_t i = 0; i < st->hdr->ah_max_procs; i++) {
        if (__atomic_load_n(&l3_store__slot(st, i)->ps_pid, __ATOMIC_ACQUIRE) == (int32_t)pid) {
            rc = reap_one(st, i, (int32_t)pid);
            if (rc < 0)
                return rc;
            released += rc;
        }
    }
    return released;
}

int l3_store_clone(l3_store_t *st, int role, l3_store_t **ret)
{
    if (st->readonly)
        return -EROFS;
    l3_store_t *c = malloc(sizeof(*c));
    if (!c)
        return -ENOMEM;
    memcpy(c, st, sizeof(*c));
    c->borrowed = true;
    c->created = false;
    c->slot = -1;
    c->ps = NULL;
    c->undo = NULL;
    c->jb_armed = 0;
    int rc = l3_store_proc_register(c, role, NULL);
    if (rc < 0) {
        free(c);
        return rc;
    }
    *ret = c;
    return 0;
}

int l3_store_proc_slot(const l3_store_t *st)
{
    int rc = l3_store__check_registered(st);
    return rc < 0 ? rc : st->slot;
}

void *l3_store_wal_region(l3_store_t *st, size_t *ret_len)
{
    if (ret_len)
        *ret_len = st->hdr->ah_wal_bytes;
    return st->base + st->hdr->ah_off_wal;
}

void *l3_store_obs_region(l3_store_t *st, size_t *ret_len)
{
    if (ret_len)
        *ret_len = st->hdr->ah_obs_bytes;
    return st->base + st->hdr->ah_off_obs;
}

const char *l3_store_name(const l3_store_t *st)
{
    return st->name;
}

void l3_store_set_lsn_floor(l3_store_t *st, uint64_t lsn)
{
    uint64_t cur = __atomic_load_n(&st->hdr->ah_lsn, __ATOMIC_ACQUIRE);
    while (cur < lsn && !__atomic_compare_exchange_n(&st->hdr->ah_lsn, &cur, lsn, false, __ATOMIC_ACQ_REL,
                                                     __ATOMIC_ACQUIRE))
        ;
}

uint64_t l3_store_last_lsn(const l3_store_t *st)
{
    return __atomic_load_n(&st->hdr->ah_lsn, __ATOMIC_ACQUIRE);
}

bool l3_store_poisoned(const l3_store_t *st)
{
    return __atomic_load_n(&st->hdr->ah_state, __ATOMIC_ACQUIRE) == L3_ARENA_POISONED;
}

const void *l3_store_header(const l3_store_t *st)
{
    return st->hdr;
}

const void *l3_store_proc_slot_at(const l3_store_t *st, uint32_t i)
{
    return i < st->hdr->ah_max_procs ? l3_store__slot(st, i) : NULL;
}
