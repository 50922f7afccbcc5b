/* SPDX-License-Identifier: MIT */
/*
 * ring.c - the multi-producer WAL ring in shared memory (layout in wal-int.h), the store
 * hook, durability waits (futex and eventfd) and checkpoint requests.
 *
 * Processes: producers are the workers (l3_wal_hook, under the document lock); waiters are
 * workers (fsync mode) and the checkpointer; the consumer is the writer (writer.c).
 * Concurrency: reservations are serialised by a robust process-shared mutex held for a few
 * stores (no syscalls inside); filling and publishing are lock-free (one atomic store per
 * slot). Producers never wait on each other except for that mutex; a full ring is waited on
 * with a bounded futex wait. Wake-ups use the Dekker pattern on seq_cst atomics: the
 * sleeper announces itself, then re-checks; the waker changes state, then looks for sleepers.
 *
 * Invariants:
 *  R1 every slot in [rh_tail, rh_head) has a valid header (written under rh_lock before head
 *     moves past it);
 *  R2 rh_head - rh_tail <= data size; a slot never straddles the end of the data area;
 *  R3 slots of one key are reserved in apply order (the caller holds the document lock);
 *  R4 rh_durable <= rh_tail <= rh_head, all monotonic;
 *  R5 (probe) a producer entry's pe_pos is 0 or names the slot of its latest hook call whose
 *     LSN is pe_lsn; slot memory is reused only by a reservation, which needs rh_lock, so
 *     whoever holds rh_lock reads a slot at a position >= rh_tail as that slot.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <linux/futex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "l3kv/error.h"
#include "wal-int.h"

/* ---------------------------------------------------------------- futex */

int l3_wal__futex_wait(_Atomic uint32_t *addr, uint32_t val, int timeout_ms)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    long rc = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, tsp, NULL, 0);
    return rc < 0 ? -errno : 0;
}

void l3_wal__futex_wake(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static int ms_left(uint64_t deadline_ns)
{
    uint64_t now = l3_now_ns();
    if (now >= deadline_ns)
        return 0;
    uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* ---------------------------------------------------------------- pid cache */

static pid_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;
/* serialises the threads of one process claiming a producer entry; held across fork by the
 * atfork handlers so that a child never inherits it locked */
static pthread_mutex_t claim_mu = PTHREAD_MUTEX_INITIALIZER;
static void claim_prepare(void)
{
    pthread_mutex_lock(&claim_mu);
}
static void claim_parent(void)
{
    pthread_mutex_unlock(&claim_mu);
}
static void pid_reset(void)
{
    cached_pid = 0;
    pthread_mutex_unlock(&claim_mu);
}
static void pid_init(void)
{
    pthread_atfork(claim_prepare, claim_parent, pid_reset);
}
static pid_t my_pid(void)
{
    pthread_once(&pid_once, pid_init);
    if (L3_UNLIKELY(cached_pid == 0))
        cached_pid = getpid();
    return cached_pid;
}

/* ---------------------------------------------------------------- setup */

static int make_handle(void *region, size_t len, l3_wal_ring_t **ret_ring)
{
    l3_wal_ring_t *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->sh = region;
    r->data = (uint8_t *)region + L3_WAL_RING_HDR;
    r->size = r->sh->rh_data_bytes;
    for (unsigned i = 0; i < L3_WAL_NOTIFY_MAX; i++)
        r->efd[i] = -1;
    (void)len;
    *ret_ring = r;
    return 0;
}

int l3_wal_ring_init(void *region, size_t len, l3_wal_ring_t **ret_ring)
{
    if (!region || ((uintptr_t)region & 63u) || len < L3_WAL_RING_MIN_BYTES)
        return -EINVAL;
    l3_wal_shm_t *sh = region;
    memset(sh, 0, sizeof *sh);
    uint64_t data = (len - L3_WAL_RING_HDR) & ~(uint64_t)63u;
    sh->rh_hdr_bytes = L3_WAL_RING_HDR;
    sh->rh_data_bytes = data;
    sh->rh_max_rec = data - data / 8; /* room for small records beside the largest one */
    sh->rh_init_ns = l3_wall_ns();

    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc == 0)
        rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(&sh->rh_lock, &a);
    pthread_mutexattr_destroy(&a);
    if (rc != 0)
        return -rc;
    /* check that robustness really took effect (S2 in docs/invariants.md) */
    pthread_mutexattr_t chk;
    int robust = 0;
    pthread_mutexattr_init(&chk);
    pthread_mutexattr_setrobust(&chk, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_getrobust(&chk, &robust);
    pthread_mutexattr_destroy(&chk);
    L3_ASSERT(robust == PTHREAD_MUTEX_ROBUST);

    atomic_store(&sh->rh_next_seq, 1);
    sh->rh_version = L3_WAL_RING_VERSION;
    atomic_thread_fence(memory_order_release);
    sh->rh_magic = L3_WAL_RING_MAGIC;
    return make_handle(region, len, ret_ring);
}

int l3_wal_ring_attach(void *region, size_t len, l3_wal_ring_t **ret_ring)
{
    if (!region || ((uintptr_t)region & 63u) || len < L3_WAL_RING_MIN_BYTES)
        return -EINVAL;
    const l3_wal_shm_t *sh = region;
    if (sh->rh_magic != L3_WAL_RING_MAGIC || sh->rh_version != L3_WAL_RING_VERSION ||
        sh->rh_hdr_bytes != L3_WAL_RING_HDR)
        return -EPROTO;
    if (sh->rh_data_bytes > len - L3_WAL_RING_HDR || sh->rh_data_bytes < 65536u || (sh->rh_data_bytes & 63u))
        return -EPROTO;
    return make_handle(region, len, ret_ring);
}

void l3_wal_ring_detach(l3_wal_ring_t *r)
{
    free(r);
}

void l3_wal_ring_set_id(l3_wal_ring_t *r, uint64_t id)
{
    r->sh->rh_wal_id = id;
}

void l3_wal_ring_set_next_seq(l3_wal_ring_t *r, uint64_t seq)
{
    atomic_store(&r->sh->rh_next_seq, seq ? seq : 1);
}

uint64_t l3_wal_ring_max_payload(const l3_wal_ring_t *r)
{
    return r->sh->rh_max_rec - L3_WAL_SLOT_HDR - L3_WAL_REC_MIN - 16;
}

/* ---------------------------------------------------------------- producers */

/*
 * Wake-up protocol (producers and waiters -> writer). The writer sleeps on the rh_pub_seq
 * futex; before sleeping it stores rh_writer_sleeping (seq_cst), then re-reads the state
 * that would give it work, and sleeps only if there is none. A waker first changes that
 * state (seq_cst: a slot's PUBLISHED CAS, rh_sync_want, rh_armed, rh_space_waiters), then
 * loads rh_writer_sleeping (seq_cst) and, if the writer sleeps in a state that this change
 * ends, bumps rh_pub_seq and FUTEX_WAKEs. In the seq_cst order either the waker's load
 * comes after the writer's store (it sees the writer sleeping and wakes it; the bumped
 * rh_pub_seq makes a FUTEX_WAIT that has not started yet return at once), or the writer's
 * re-check comes after the waker's change (it sees the work and does not sleep): no
 * wake-up is lost. The states:
 *   L3_WAL_WS_IDLE: nothing unwritten; any publish wakes the writer (the first record after
 *     a quiet spell must start the flush timer).
 *   L3_WAL_WS_HOLD (buffered mode with flush_interval_ms): records are waiting and the
 *     writer sleeps until their flush is due, or (lingering, for a second after its last
 *     write) the ring is empty and it looks again after one flush interval; a publish wakes
 *     it only once the unwritten bytes reach l3_wal__wake_fill(). Durability requests
 *     (notify_arm, wait_durable), ring space waiters and checkpoint requests wake it in
 *     every state.
 * So under a steady stream of buffered writes, or a trickle of them, no producer makes a
 * syscall: the writer flushes on its timer, one io_uring submission per flush interval.
 */
static void wake_writer(l3_wal_shm_t *sh)
{
    if (atomic_load(&sh->rh_writer_sleeping) != L3_WAL_WS_AWAKE) {
        atomic_fetch_add(&sh->rh_pub_seq, 1);
        l3_wal__futex_wake(&sh->rh_pub_seq);
    }
}

/* After a publish: wake an idle writer, or a holding one once enough is unwritten. */
static void wake_writer_published(const l3_wal_ring_t *r)
{
    l3_wal_shm_t *sh = r->sh;
    uint32_t ws = atomic_load(&sh->rh_writer_sleeping);
    if (ws == L3_WAL_WS_AWAKE)
        return;
    if (ws == L3_WAL_WS_HOLD) {
        /* a stale (smaller) tail only overestimates the fill: at worst an early wake-up */
        uint64_t head = atomic_load_explicit(&sh->rh_head, memory_order_relaxed);
        uint64_t tail = atomic_load_explicit(&sh->rh_tail, memory_order_relaxed);
        if (head - tail < l3_wal__wake_fill(r->size))
            return;
    }
    atomic_fetch_add(&sh->rh_pub_seq, 1);
    l3_wal__futex_wake(&sh->rh_pub_seq);
}

static int ring_lock(l3_wal_shm_t *sh)
{
    int rc = pthread_mutex_lock(&sh->rh_lock);
    if (rc == EOWNERDEAD) {
        /* R1: the dead owner either advanced head (slot complete) or not (slot ignored) */
        pthread_mutex_consistent(&sh->rh_lock);
        rc = 0;
    }
    return -rc;
}

/* The ring is full (tail as read under rh_lock, which the caller holds): announce a
 * waiter, release the lock, wake the writer and wait until it frees space or the deadline
 * (*deadline, 0 = start it now with timeout_ms) passes. 0 to try again, 1 when the deadline
 * passed with no space freed. */
static int wait_space(l3_wal_shm_t *sh, uint64_t tail, uint64_t *deadline, unsigned timeout_ms)
{
    atomic_fetch_add(&sh->rh_space_waiters, 1);
    uint32_t seq = atomic_load(&sh->rh_space_seq);
    pthread_mutex_unlock(&sh->rh_lock);
    if (*deadline == 0)
        *deadline = l3_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int left = ms_left(*deadline);
    uint64_t tail2 = atomic_load(&sh->rh_tail);
    if (tail2 == tail && left > 0) {
        wake_writer(sh);
        l3_wal__futex_wait(&sh->rh_space_seq, seq, left);
    }
    atomic_fetch_sub(&sh->rh_space_waiters, 1);
    return tail2 == tail && ms_left(*deadline) == 0 && atomic_load(&sh->rh_tail) == tail;
}

/* Reserve; prod >= 0 tags the slot with producer entry prod and records its position there
 * (under rh_lock, before rh_head moves: R5). */
static int reserve(l3_wal_ring_t *r, uint32_t klen, uint32_t plen, unsigned timeout_ms, int prod,
                   l3_wal_resv_t *ret)
{
    l3_wal_shm_t *sh = r->sh;
    uint64_t rsize = l3_wal_rec_size(klen, plen);
    uint64_t need = L3_ALIGN_UP(rsize + L3_WAL_SLOT_HDR, (uint64_t)16);
    if (need > sh->rh_max_rec)
        return -EMSGSIZE;
    uint64_t deadline = 0;
    for (;;) {
        int err = atomic_load_explicit(&sh->rh_error, memory_order_acquire);
        if (err)
            return err;
        int rc = ring_lock(sh);
        if (rc < 0)
            return rc;
        uint64_t head = atomic_load_explicit(&sh->rh_head, memory_order_relaxed);
        uint64_t tail = atomic_load_explicit(&sh->rh_tail, memory_order_acquire);
        uint64_t off = head % r->size;
        uint64_t pad = off + need > r->size ? r->size - off : 0;
        if (pad && head + pad + need - tail > r->size && head + pad - tail <= r->size) {
            /* A record larger than the rest of the ring after head and the free space
             * before it: publish the pad alone, so head moves to the ring's start and the
             * record needs only that much free space once the writer catches up (records
             * may take up to rh_max_rec, more than half the ring). */
            l3_wal_slot_t *ps = l3_wal__slot(r, head);
            ps->rs_len = (uint32_t)pad;
            ps->rs_pid = (uint32_t)my_pid();
            ps->rs_tag = 0;
            atomic_store_explicit(&ps->rs_state, L3_WAL_SLOT_PAD, memory_order_relaxed);
            atomic_store_explicit(&sh->rh_head, head + pad, memory_order_release);
            head += pad;
            off = 0;
            pad = 0;
        }
        if (head + pad + need - tail <= r->size) {
            pid_t pid = my_pid();
            if (pad) {
                l3_wal_slot_t *ps = l3_wal__slot(r, head);
                ps->rs_len = (uint32_t)pad;
                ps->rs_pid = (uint32_t)pid;
                ps->rs_tag = 0;
                atomic_store_explicit(&ps->rs_state, L3_WAL_SLOT_PAD, memory_order_relaxed);
            }
            uint64_t pos = head + pad;
            l3_wal_slot_t *s = l3_wal__slot(r, pos);
            s->rs_len = (uint32_t)need;
            s->rs_pid = (uint32_t)pid;
            s->rs_tag = 0;
            if (prod >= 0)
                s->rs_tag = l3_wal__tag(
                    (unsigned)prod, atomic_load_explicit(&sh->rh_prod[prod].pe_gen, memory_order_relaxed));
            atomic_store_explicit(&s->rs_state, L3_WAL_SLOT_RESERVED, memory_order_relaxed);
            atomic_store_explicit(&sh->rh_head, pos + need, memory_order_release);
            /* after head: a death between the two stores leaves pe_pos 0 for a slot that is
             * only RESERVED (answer 0, right); the other order would name a position the
             * next reservation reuses */
            if (prod >= 0)
                atomic_store_explicit(&sh->rh_prod[prod].pe_pos, pos + 1, memory_order_release);
            pthread_mutex_unlock(&sh->rh_lock);
            ret->pos = pos;
            ret->end = pos + need;
            ret->rec = (uint8_t *)s + L3_WAL_SLOT_HDR;
            ret->size = (uint32_t)rsize;
            return 0;
        }
        /* full: announce, re-check after the announcement, then wait for the writer */
        if (wait_space(sh, tail, &deadline, timeout_ms) != 0)
            return -EAGAIN;
    }
}

int l3_wal_reserve(l3_wal_ring_t *r, uint32_t klen, uint32_t plen, unsigned timeout_ms, l3_wal_resv_t *ret)
{
    return reserve(r, klen, plen, timeout_ms, -1, ret);
}

static int publish_state(l3_wal_ring_t *r, l3_wal_resv_t *res, uint32_t state)
{
    l3_wal_slot_t *s = (l3_wal_slot_t *)(void *)(res->rec - L3_WAL_SLOT_HDR);
    uint32_t expect = L3_WAL_SLOT_RESERVED;
    /* seq_cst: pairs with the writer's rh_writer_sleeping store (Dekker) */
    int ok = atomic_compare_exchange_strong(&s->rs_state, &expect, state);
    wake_writer_published(r);
    return ok ? 0 : -ECANCELED;
}

void l3_wal_publish(l3_wal_ring_t *r, l3_wal_resv_t *res, const l3_wal_rec_t *rec)
{
    L3_ASSERT(l3_wal_rec_size(rec->klen, rec->plen) == res->size);
    l3_wal__rec_fill(res->rec, res->size, rec);
    /* -ECANCELED only if the writer judged this process dead (pid reuse): nothing to do */
    (void)publish_state(r, res, L3_WAL_SLOT_PUBLISHED);
}

void l3_wal_abandon(l3_wal_ring_t *r, l3_wal_resv_t *res)
{
    (void)publish_state(r, res, L3_WAL_SLOT_ABORTED);
}

/* ---------------------------------------------------------------- WAL probe
 *
 * A producer killed inside l3_wal_hook leaves its mutation complete in the store; the
 * repairer must keep it iff the record was published (docs/wal.md 3.1: publishing is the
 * commit point). The producer table (wal-int.h) makes that decidable afterwards for the one
 * record per producer that can be in doubt: its latest (a process runs one store
 * transaction at a time, and the hook is its last step).
 *
 * Producer P, hook call for LSN L:  (a) pe_pos = 0; (b) pe_lsn = L;  under rh_lock:
 * (c) slot header + tag, rh_head past the slot, (d) pe_pos = pos + 1;  then (e) fill the
 * record, (f) CAS RESERVED -> PUBLISHED. Writer, per slot in ring order: PUBLISHED -> copy,
 * (g) CAS pe_pos: pos + 1 -> pos + 1 | L3_WAL_POS_PUB; ABORTED -> skip; after the batch
 * is written, (h) rh_tail past it (release). Reclaim (a new process takes a dead producer's
 * entry, under rh_lock): the dead owner's verdict goes to a dead letter first.
 *
 * Claim: for P dead, l3_wal_probe(L) = 1 iff (f) succeeded. The probe holds rh_lock, so no
 * reservation (the only thing that reuses slot memory) and no reclaim runs meanwhile; P's
 * stores are final; only the writer moves. Cases:
 *  - no entry or dead letter holds L: (b) never ran, so no slot was reserved: 0. (A
 *    process that found the table full is untracked; then rh_probe_lossy makes this -ENOENT,
 *    which the store also treats as "roll back".)
 *  - pe_pos == 0: P died before (d); its slot, if (c) completed, is RESERVED forever: 0.
 *  - tail <= pos: the slot is in [tail, head) and still P's (lock held; the writer changes
 *    only rs_state, RESERVED -> ABORTED for dead owners). Only P can make it PUBLISHED and
 *    nobody undoes that: rs_state == PUBLISHED is the answer. rh_tail moving on right after
 *    the load does not matter, the slot memory is not reused while the lock is held.
 *  - tail > pos: the writer consumed the slot. It ran (g) for it iff it was PUBLISHED (the
 *    CAS succeeds: P, dead, no longer writes pe_pos), and (g) precedes the (h) whose value
 *    the acquire load saw. Nothing else writes pe_pos: only P and a reclaim (which changes
 *    pe_lsn first, so the probe would not be here) do; a writer CAS for any other slot
 *    expects another position. A restarted writer resumes from the committed tail, beyond
 *    the slot. So pe_pos == pos + 1 | L3_WAL_POS_PUB iff published.
 * The answer never changes over time for a dead P (PUBLISHED -> consumed with the mark;
 * RESERVED -> ABORTED -> consumed without), so a repairer that dies after probing and the
 * next one that probes again agree, and a probe long after the death (next locker) agrees
 * with the supervisor's immediate one. A reclaim computes the same function under the same
 * lock into a dead letter; 16 of those are kept (96 entries, workers are at most 64), and
 * an overwritten one sets rh_probe_lossy. In the server the supervisor reaps (and so repairs)
 * a dead worker before it starts the replacement that could reclaim its entry.
 * Cost on the hot path: two stores to the producer's own entry and one under rh_lock; the
 * writer adds one CAS per record.
 */

void (*l3_wal__test_before_publish)(l3_wal_ring_t *r, const l3_wal_rec_t *rec);
void (*l3_wal__test_after_publish)(l3_wal_ring_t *r, const l3_wal_rec_t *rec);

int l3_wal__pid_dead(uint32_t pid)
{
    if (pid == 0)
        return 1;
    if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
        return 1;
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/%u/stat", pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

/* Was the latest record of entry pe (owner dead, caller holds rh_lock) published? 0 or 1. */
static int prod_verdict(l3_wal_ring_t *r, l3_wal_prod_t *pe)
{
    l3_wal_shm_t *sh = r->sh;
    uint64_t p = atomic_load_explicit(&pe->pe_pos, memory_order_acquire);
    if (p == 0)
        return 0; /* died before rh_head moved past a slot of its own: never reserved */
    uint64_t pos = (p & ~L3_WAL_POS_PUB) - 1;
    uint64_t tail = atomic_load_explicit(&sh->rh_tail, memory_order_acquire);
    if (tail <= pos) {
        /* still in the ring and, under rh_lock, not reusable (R5). The owner is dead, so
         * RESERVED is final for it (the writer may only turn it into ABORTED). */
        uint32_t st = atomic_load_explicit(&l3_wal__slot(r, pos)->rs_state, memory_order_acquire);
        return st == L3_WAL_SLOT_PUBLISHED;
    }
    /* consumed: the writer marked pe_pos before rh_tail passed the slot iff it was PUBLISHED */
    return atomic_load_explicit(&pe->pe_pos, memory_order_relaxed) == ((pos + 1) | L3_WAL_POS_PUB);
}

/* This process's producer entry (claimed on first use), or -1 when the table is full. */
static int prod_entry(l3_wal_ring_t *r)
{
    pid_t me = my_pid();
    uint64_t key = atomic_load_explicit(&r->prod_key, memory_order_acquire);
    if (L3_LIKELY(key >> 32 == (uint32_t)me))
        return (int)(uint32_t)key - 1;
    pthread_mutex_lock(&claim_mu);
    key = atomic_load_explicit(&r->prod_key, memory_order_acquire);
    if (key >> 32 == (uint32_t)me) { /* another thread of this process claimed meanwhile */
        pthread_mutex_unlock(&claim_mu);
        return (int)(uint32_t)key - 1;
    }
    l3_wal_shm_t *sh = r->sh;
    int idx = -1;
    for (int attempt = 0; attempt < 4 && idx < 0; attempt++) {
        /* pick outside the lock (liveness checks are syscalls), confirm under it */
        int cand = -1;
        uint32_t cpid = 0;
        for (unsigned i = 0; i < L3_WAL_PROD_MAX && cand < 0; i++)
            if (atomic_load(&sh->rh_prod[i].pe_pid) == 0)
                cand = (int)i;
        for (unsigned i = 0; i < L3_WAL_PROD_MAX && cand < 0; i++) {
            /* an entry with our pid is a dead process's whose pid we reuse: a process
             * claims once per ring handle (claim_mu), and one handle per process produces.
             * Threads of one process share the entry: tracking is meaningful only for one
             * hook call at a time per process, which is how the store calls it */
            uint32_t pid = atomic_load(&sh->rh_prod[i].pe_pid);
            if (pid == (uint32_t)me || l3_wal__pid_dead(pid)) {
                cand = (int)i;
                cpid = pid;
            }
        }
        if (cand < 0)
            break;
        if (ring_lock(sh) < 0)
            break;
        l3_wal_prod_t *pe = &sh->rh_prod[cand];
        if (atomic_load(&pe->pe_pid) == cpid) {
            uint64_t old = atomic_load(&pe->pe_lsn);
            if (cpid != 0 && old != 0) {
                /* keep the dead owner's verdict for a repair that has not happened yet */
                uint32_t k = atomic_fetch_add(&sh->rh_dl_next, 1) % L3_WAL_DEAD_MAX;
                l3_wal_dead_t *dl = &sh->rh_dead[k];
                if (atomic_load(&dl->dl_lsn) != 0)
                    atomic_store(&sh->rh_probe_lossy, 1);
                atomic_store(&dl->dl_verdict, (uint64_t)prod_verdict(r, pe));
                atomic_store(&dl->dl_lsn, old);
            }
            atomic_fetch_add(&pe->pe_gen, 1);
            atomic_store(&pe->pe_lsn, 0);
            atomic_store(&pe->pe_pos, 0);
            atomic_store(&pe->pe_pid, (uint32_t)me);
            idx = cand;
        }
        pthread_mutex_unlock(&sh->rh_lock);
    }
    if (idx < 0)
        atomic_store(&sh->rh_probe_lossy, 1); /* this process's records are not tracked */
    atomic_store_explicit(&r->prod_key, (uint64_t)(uint32_t)me << 32 | (uint32_t)(idx + 1),
                          memory_order_release);
    pthread_mutex_unlock(&claim_mu);
    return idx;
}

int l3_wal_probe(void *ring_ctx, uint64_t lsn)
{
    l3_wal_ring_t *r = ring_ctx;
    if (!r)
        return -EINVAL;
    if (lsn == 0)
        return 0;
    l3_wal_shm_t *sh = r->sh;
    int rc = ring_lock(sh);
    if (rc < 0)
        return rc;
    int v = -1;
    /* LSNs are unique per hook call, so at most one entry or dead letter carries lsn */
    for (unsigned i = 0; i < L3_WAL_PROD_MAX && v < 0; i++) {
        l3_wal_prod_t *pe = &sh->rh_prod[i];
        if (atomic_load(&pe->pe_pid) != 0 && atomic_load_explicit(&pe->pe_lsn, memory_order_acquire) == lsn)
            v = prod_verdict(r, pe);
    }
    for (unsigned i = 0; i < L3_WAL_DEAD_MAX && v < 0; i++)
        if (atomic_load(&sh->rh_dead[i].dl_lsn) == lsn)
            v = (int)atomic_load(&sh->rh_dead[i].dl_verdict);
    if (v < 0) /* never announced (died before reserving), unless tracking was incomplete */
        v = atomic_load(&sh->rh_probe_lossy) ? -ENOENT : 0;
    pthread_mutex_unlock(&sh->rh_lock);
    return v;
}

static __thread uint64_t last_ticket;

uint64_t l3_wal_last_ticket(void)
{
    return last_ticket;
}

/* Reserve, fill and publish one record; prod < 0: untracked by the probe. */
static int put_one(l3_wal_ring_t *r, const l3_wal_rec_t *rec, int prod, bool tested, l3_wal_resv_t *res)
{
    int rc = reserve(r, rec->klen, rec->plen, L3_WAL_FULL_WAIT_MS, prod, res);
    if (rc < 0)
        return rc;
    l3_wal__rec_fill(res->rec, res->size, rec);
    if (L3_UNLIKELY(tested && l3_wal__test_before_publish != NULL))
        l3_wal__test_before_publish(r, rec);
    if (publish_state(r, res, L3_WAL_SLOT_PUBLISHED) < 0)
        return -EIO;
    return 0;
}

/*
 * A record larger than one slot may take: log it as FRAG pieces of about a quarter of the
 * slot limit, each reserved when there is room (the writer drains the earlier ones). Only
 * the final piece is tracked for the probe, so a producer that dies before publishing it
 * counts as "not published" and its mutation is rolled back, while replay drops the
 * pieces that have no final one.
 */
static int put_fragments(l3_wal_ring_t *r, const l3_wal_rec_t *rec, int prod, l3_wal_resv_t *res)
{
    uint64_t room = l3_wal_ring_max_payload(r) - rec->klen - 8 - L3_WAL_FRAG_HDR;
    uint32_t chunk = (uint32_t)L3_MIN(room / 4, (uint64_t)64 << 20) & ~7u;
    if (chunk == 0)
        return -EMSGSIZE;
    uint8_t *buf = malloc(L3_WAL_FRAG_HDR + (size_t)chunk);
    if (buf == NULL)
        return -ENOMEM;
    const uint8_t *src = rec->payload;
    int rc = 0;
    for (uint64_t off = 0, i = 0; rc == 0 && (off < rec->plen || i == 0); off += chunk, i++) {
        uint32_t len = (uint32_t)L3_MIN((uint64_t)chunk, (uint64_t)rec->plen - off);
        bool last = off + len >= rec->plen;
        uint32_t idx = (uint32_t)i, at = (uint32_t)off;
        buf[0] = rec->op;
        buf[1] = last ? 1 : 0;
        buf[2] = buf[3] = 0;
        memcpy(buf + 4, &idx, 4);
        memcpy(buf + 8, &rec->plen, 4);
        memcpy(buf + 12, &at, 4);
        memcpy(buf + L3_WAL_FRAG_HDR, src + off, len);
        l3_wal_rec_t f = {.op = L3_WALOP_FRAG,
                          .flags = rec->flags,
                          .lsn = rec->lsn,
                          .key = rec->key,
                          .klen = rec->klen,
                          .payload = buf,
                          .plen = L3_WAL_FRAG_HDR + len};
        rc = put_one(r, &f, last ? prod : -1, last, res);
    }
    free(buf);
    return rc;
}

int l3_wal_hook(void *ring_ctx, const l3_wal_rec_t *rec)
{
    l3_wal_ring_t *r = ring_ctx;
    if (!l3_walop_is_change(rec->op))
        return -EINVAL;
    int prod = prod_entry(r);
    if (prod >= 0) {
        /* announce before reserving; pe_pos first, so a death between the two stores leaves
         * the previous LSN with no slot rather than this LSN with the previous slot */
        l3_wal_prod_t *pe = &r->sh->rh_prod[prod];
        atomic_store_explicit(&pe->pe_pos, 0, memory_order_relaxed);
        atomic_store_explicit(&pe->pe_lsn, rec->lsn, memory_order_release);
    }
    l3_wal_resv_t res;
    uint64_t need = L3_ALIGN_UP(l3_wal_rec_size(rec->klen, rec->plen) + L3_WAL_SLOT_HDR, (uint64_t)16);
    int rc = need > r->sh->rh_max_rec ? put_fragments(r, rec, prod, &res) : put_one(r, rec, prod, true, &res);
    if (rc < 0)
        return rc;
    if (L3_UNLIKELY(l3_wal__test_after_publish != NULL))
        l3_wal__test_after_publish(r, rec);
    last_ticket = res.end;
    return 0;
}

/* ---------------------------------------------------------------- transaction groups
 *
 * l3_wal_hook_group: the records of one multi-key transaction reserved in one rh_lock
 * section, so that they are contiguous in the ring (a pad may sit between two of them at
 * the end of the data area) and therefore in the log, then filled and published in order,
 * each marked L3_WAL_RF_TX, the first TXFIRST, the last TXLAST. Only the last slot is
 * tracked for the probe: a producer that dies before publishing it has its transaction
 * rolled back, and the records it did publish are a group without its last record, which
 * replay drops (replay.c) and the change feed skips (feed.c). A group is at most half the
 * data area, so it always fits an empty ring; no record of it is split (FRAG).
 */

static int reserve_group(l3_wal_ring_t *r, const uint64_t *need, size_t n, int prod, l3_wal_resv_t *res)
{
    l3_wal_shm_t *sh = r->sh;
    uint64_t deadline = 0;
    for (;;) {
        int err = atomic_load_explicit(&sh->rh_error, memory_order_acquire);
        if (err)
            return err;
        int rc = ring_lock(sh);
        if (rc < 0)
            return rc;
        uint64_t head = atomic_load_explicit(&sh->rh_head, memory_order_relaxed);
        uint64_t tail = atomic_load_explicit(&sh->rh_tail, memory_order_acquire);
        uint64_t end = head;
        for (size_t i = 0; i < n; i++) {
            uint64_t off = end % r->size;
            end += (off + need[i] > r->size ? r->size - off : 0) + need[i];
        }
        if (end - tail <= r->size) {
            pid_t pid = my_pid();
            uint64_t pos = head;
            for (size_t i = 0; i < n; i++) {
                uint64_t off = pos % r->size;
                if (off + need[i] > r->size) {
                    l3_wal_slot_t *ps = l3_wal__slot(r, pos);
                    ps->rs_len = (uint32_t)(r->size - off);
                    ps->rs_pid = (uint32_t)pid;
                    ps->rs_tag = 0;
                    atomic_store_explicit(&ps->rs_state, L3_WAL_SLOT_PAD, memory_order_relaxed);
                    pos += r->size - off;
                }
                l3_wal_slot_t *s = l3_wal__slot(r, pos);
                s->rs_len = (uint32_t)need[i];
                s->rs_pid = (uint32_t)pid;
                s->rs_tag = 0;
                if (prod >= 0 && i + 1 == n)
                    s->rs_tag = l3_wal__tag((unsigned)prod, atomic_load_explicit(&sh->rh_prod[prod].pe_gen,
                                                                                 memory_order_relaxed));
                atomic_store_explicit(&s->rs_state, L3_WAL_SLOT_RESERVED, memory_order_relaxed);
                res[i].pos = pos;
                res[i].end = pos + need[i];
                res[i].rec = (uint8_t *)s + L3_WAL_SLOT_HDR;
                pos += need[i];
            }
            atomic_store_explicit(&sh->rh_head, pos, memory_order_release);
            if (prod >= 0) /* after head, as in reserve() */
                atomic_store_explicit(&sh->rh_prod[prod].pe_pos, res[n - 1].pos + 1, memory_order_release);
            pthread_mutex_unlock(&sh->rh_lock);
            return 0;
        }
        if (wait_space(sh, tail, &deadline, L3_WAL_FULL_WAIT_MS) != 0)
            return -EAGAIN;
    }
}

uint64_t l3_wal_ring_max_group(const l3_wal_ring_t *r)
{
    return r->size / 2;
}

/* Slot bytes of each record (need[]), or -EINVAL / -EMSGSIZE. */
static int group_sizes(const l3_wal_ring_t *r, const l3_wal_rec_t *recs, size_t n, uint64_t *need)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!l3_walop_is_change(recs[i].op))
            return -EINVAL;
        need[i] = L3_ALIGN_UP(l3_wal_rec_size(recs[i].klen, recs[i].plen) + L3_WAL_SLOT_HDR, (uint64_t)16);
        total += need[i];
    }
    return total > l3_wal_ring_max_group(r) ? -EMSGSIZE : 0;
}

int l3_wal_hook_group(void *ring_ctx, const l3_wal_rec_t *recs, size_t n)
{
    l3_wal_ring_t *r = ring_ctx;
    if (n == 0)
        return 0;
    if (n > L3_WAL_GROUP_MAX)
        return -EMSGSIZE;
    uint64_t *need = malloc(n * (sizeof(uint64_t) + sizeof(l3_wal_resv_t)));
    if (need == NULL)
        return -ENOMEM;
    l3_wal_resv_t *res = (l3_wal_resv_t *)(void *)(need + n);
    int rc = group_sizes(r, recs, n, need);
    int prod = rc == 0 ? prod_entry(r) : -1;
    if (rc == 0 && prod >= 0) { /* announce the tracked (last) record, as l3_wal_hook does */
        l3_wal_prod_t *pe = &r->sh->rh_prod[prod];
        atomic_store_explicit(&pe->pe_pos, 0, memory_order_relaxed);
        atomic_store_explicit(&pe->pe_lsn, recs[n - 1].lsn, memory_order_release);
    }
    if (rc == 0)
        rc = reserve_group(r, need, n, prod, res);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        l3_wal_rec_t g = recs[i];
        g.flags = (uint8_t)(g.flags | L3_WAL_RF_TX | (i == 0 ? L3_WAL_RF_TXFIRST : 0) |
                            (i + 1 == n ? L3_WAL_RF_TXLAST : 0));
        res[i].size = (uint32_t)l3_wal_rec_size(g.klen, g.plen);
        l3_wal__rec_fill(res[i].rec, res[i].size, &g);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (L3_UNLIKELY(i + 1 == n && l3_wal__test_before_publish != NULL))
            l3_wal__test_before_publish(r, &recs[i]);
        if (publish_state(r, &res[i], L3_WAL_SLOT_PUBLISHED) < 0) {
            /* the writer judged this process dead: the group stays without its last record */
            for (size_t k = i + 1; k < n; k++)
                l3_wal_abandon(r, &res[k]);
            rc = -EIO;
        }
    }
    if (rc == 0 && L3_UNLIKELY(l3_wal__test_after_publish != NULL))
        l3_wal__test_after_publish(r, &recs[n - 1]);
    if (rc == 0)
        last_ticket = res[n - 1].end;
    free(need);
    return rc;
}

/* ---------------------------------------------------------------- durability */

int l3_wal_ring_error(const l3_wal_ring_t *r)
{
    return atomic_load(&r->sh->rh_error);
}

uint64_t l3_wal_durable_ticket(const l3_wal_ring_t *r)
{
    return atomic_load_explicit(&r->sh->rh_durable, memory_order_acquire);
}

static void atomic_max64(_Atomic uint64_t *a, uint64_t v)
{
    uint64_t cur = atomic_load(a);
    while (cur < v && !atomic_compare_exchange_weak(a, &cur, v)) {
    }
}

int l3_wal_wait_durable(l3_wal_ring_t *r, uint64_t ticket, int timeout_ms)
{
    l3_wal_shm_t *sh = r->sh;
    if (l3_wal_durable_ticket(r) >= ticket)
        return 0;
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : l3_now_ns() + (uint64_t)timeout_ms * 1000000u;
    atomic_max64(&sh->rh_sync_want, ticket);
    atomic_fetch_add(&sh->rh_durable_waiters, 1);
    /* the writer may sleep with nothing to write; it must see the sync request */
    atomic_fetch_add(&sh->rh_pub_seq, 1);
    l3_wal__futex_wake(&sh->rh_pub_seq);
    int rc;
    for (;;) {
        uint32_t seq = atomic_load(&sh->rh_durable_seq);
        if (l3_wal_durable_ticket(r) >= ticket) {
            rc = 0;
            break;
        }
        int err = atomic_load(&sh->rh_error);
        if (err) {
            rc = err;
            break;
        }
        int left = deadline == UINT64_MAX ? -1 : ms_left(deadline);
        if (left == 0) {
            rc = -ETIMEDOUT;
            break;
        }
        l3_wal__futex_wait(&sh->rh_durable_seq, seq, left);
    }
    atomic_fetch_sub(&sh->rh_durable_waiters, 1);
    return rc;
}

int l3_wal_notify_create(l3_wal_ring_t *r, unsigned nslots)
{
    if (nslots > L3_WAL_NOTIFY_MAX || r->nefd)
        return -EINVAL;
    for (unsigned i = 0; i < nslots; i++) {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) {
            int e = -errno;
            for (unsigned k = 0; k < i; k++) {
                close(r->efd[k]);
                r->efd[k] = -1;
            }
            return e;
        }
        r->efd[i] = fd;
    }
    r->nefd = nslots;
    return 0;
}

int l3_wal_notify_fd(const l3_wal_ring_t *r, unsigned slot)
{
    return slot < r->nefd ? r->efd[slot] : -EINVAL;
}

int l3_wal_notify_arm(l3_wal_ring_t *r, unsigned slot, uint64_t ticket)
{
    l3_wal_shm_t *sh = r->sh;
    if (slot >= r->nefd)
        return -EINVAL;
    if (l3_wal_durable_ticket(r) >= ticket)
        return 1;
    atomic_max64(&sh->rh_sync_want, ticket);
    atomic_store(&sh->rh_armed[slot], 1); /* seq_cst: then re-check (Dekker with the writer) */
    if (l3_wal_durable_ticket(r) >= ticket)
        return 1;
    int err = atomic_load(&sh->rh_error);
    if (err)
        return err;
    /* rh_sync_want and rh_armed are stored (seq_cst) above: wake only a sleeping writer */
    wake_writer(sh);
    return 0;
}

void l3_wal_notify_ack(l3_wal_ring_t *r, unsigned slot)
{
    uint64_t v;
    if (slot >= r->nefd)
        return;
    while (read(r->efd[slot], &v, sizeof v) == (ssize_t)sizeof v) {
    }
}

void l3_wal__notify_durable(l3_wal_ring_t *r)
{
    l3_wal_shm_t *sh = r->sh;
    atomic_fetch_add(&sh->rh_durable_seq, 1);
    if (atomic_load(&sh->rh_durable_waiters))
        l3_wal__futex_wake(&sh->rh_durable_seq);
    for (unsigned i = 0; i < r->nefd; i++) {
        if (atomic_load(&sh->rh_armed[i]) && atomic_exchange(&sh->rh_armed[i], 0)) {
            uint64_t one = 1;
            ssize_t n = write(r->efd[i], &one, sizeof one);
            (void)n; /* EAGAIN: counter saturated, the waiter is readable anyway */
        }
    }
}

/* ---------------------------------------------------------------- stats and checkpoints */

void l3_wal_ring_stats(const l3_wal_ring_t *r, l3_wal_stats_t *ret)
{
    l3_wal_shm_t *sh = r->sh;
    const l3_wal_commit_t *c = l3_wal__commit(r);
    memset(ret, 0, sizeof *ret);
    ret->head = atomic_load(&sh->rh_head);
    ret->tail = atomic_load(&sh->rh_tail);
    ret->durable = atomic_load(&sh->rh_durable);
    ret->records = atomic_load_explicit(&sh->rh_st_records, memory_order_relaxed);
    ret->aborted = atomic_load_explicit(&sh->rh_st_aborted, memory_order_relaxed);
    ret->bytes = atomic_load_explicit(&sh->rh_st_bytes, memory_order_relaxed);
    ret->fsyncs = atomic_load_explicit(&sh->rh_st_fsyncs, memory_order_relaxed);
    ret->batches = atomic_load_explicit(&sh->rh_st_batches, memory_order_relaxed);
    ret->short_writes = atomic_load_explicit(&sh->rh_st_short, memory_order_relaxed);
    ret->write_errors = atomic_load_explicit(&sh->rh_st_errors, memory_order_relaxed);
    ret->disk_bytes = atomic_load_explicit(&sh->rh_st_disk_bytes, memory_order_relaxed);
    ret->seg_seq = c->rc_seg_seq;
    ret->seg_off = c->rc_seg_off;
    ret->error = atomic_load(&sh->rh_error);
    ret->failstop = (int)atomic_load(&sh->rh_failstop);
    ret->writer_pid = (pid_t)atomic_load(&sh->rh_writer_pid);
}

int l3_wal_checkpoint_begin(l3_wal_ring_t *r, int timeout_ms, uint64_t *ret_seq)
{
    l3_wal_shm_t *sh = r->sh;
    uint32_t req = atomic_fetch_add(&sh->rh_rotate_req, 1) + 1;
    atomic_fetch_add(&sh->rh_pub_seq, 1);
    l3_wal__futex_wake(&sh->rh_pub_seq);
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : l3_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        uint32_t done = atomic_load(&sh->rh_rotate_done);
        if ((int32_t)(done - req) >= 0) {
            *ret_seq = atomic_load(&sh->rh_rotate_seq);
            return 0;
        }
        if (atomic_load(&sh->rh_failstop))
            return -EIO;
        int left = deadline == UINT64_MAX ? -1 : ms_left(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        l3_wal__futex_wait(&sh->rh_rotate_done, done, left);
    }
}

void l3_wal_checkpoint_commit(l3_wal_ring_t *r, uint64_t seq)
{
    atomic_max64(&r->sh->rh_delete_below, seq);
    atomic_fetch_add(&r->sh->rh_pub_seq, 1);
    l3_wal__futex_wake(&r->sh->rh_pub_seq);
}
