/* SPDX-License-Identifier: MIT */
/*
 * lock.c - robust process-shared locks, the allocator lock and its undo record.
 *
 * Owns: the robust mutex primitive every stripe and allocator lock is taken with
 * (l3_store__lock_raw), the allocator lock and the allocator record (au_*) of the caller's
 * process slot, and the repair of the allocator after a holder died. Stripe locks, the
 * transaction record and their repair are in tx.c, which builds on this file.
 * Runs in: every process that mutates the store (supervisor, workers, writer, tests).
 * Concurrency: a stripe lock guards one stripe's table, entries and documents; the
 * allocator lock guards the heap. Order: stripe -> allocator, never the reverse; a slot
 * holds at most one stripe lock. Locks are pthread mutexes with PTHREAD_PROCESS_SHARED and
 * PTHREAD_MUTEX_ROBUST, taken with a timeout so no operation waits forever.
 *
 * Invariants:
 *  L1 lk_owner != 0 only while the slot it names holds the mutex (set after locking,
 *     cleared before unlocking): on EOWNERDEAD it names the dead holder, or is 0 when the
 *     holder died before changing anything.
 *  L3 Every write inside an allocator critical section goes through aw(), which records
 *     the old word first; the record is emptied (au_count = 0) just before unlocking.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "store-int.h"

int l3_store__lock_raw(l3_store_t *st, l3_lock_t *lk, bool *ret_dead)
{
    int rc = pthread_mutex_trylock(&lk->lk_mutex);
    if (rc == EBUSY) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ms = st->timeout_ms ? st->timeout_ms : L3_STORE_DEFAULT_LOCK_TIMEOUT_MS;
        ts.tv_sec += (time_t)(ms / 1000);
        ts.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        rc = pthread_mutex_clocklock(&lk->lk_mutex, CLOCK_MONOTONIC, &ts);
    }
    *ret_dead = false;
    switch (rc) {
    case 0:
        return 0;
    case EOWNERDEAD:
        *ret_dead = true;
        return 0;
    case ETIMEDOUT:
        return -ETIMEDOUT;
    case ENOTRECOVERABLE: /* a repair that could not complete left it so (repair_stripe) */
        __atomic_store_n(&st->hdr->ah_state, L3_ARENA_POISONED, __ATOMIC_RELEASE);
        return L3_EPOISONED;
    default:
        return -rc;
    }
}

int l3_store__lock_init(l3_lock_t *lk)
{
    pthread_mutexattr_t a;
    int robust = 0, pshared = 0;
    memset(lk, 0, sizeof(*lk));
    if (pthread_mutexattr_init(&a) != 0)
        return -ENOMEM;
    int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutexattr_getrobust(&a, &robust);
    if (rc == 0)
        rc = pthread_mutexattr_getpshared(&a, &pshared);
    if (rc == 0 && (robust != PTHREAD_MUTEX_ROBUST || pshared != PTHREAD_PROCESS_SHARED))
        rc = ENOTSUP;
    if (rc == 0)
        rc = pthread_mutex_init(&lk->lk_mutex, &a);
    pthread_mutexattr_destroy(&a);
    return -rc;
}

/* ---------------------------------------------------------------- allocator record */

void l3_store__aw(l3_store_t *st, uint64_t *p, uint64_t v)
{
    l3_proc_slot_t *ps = st->ps;
    uint32_t i = ps->au_count;
    L3_ASSERT(i < L3_ALLOC_UNDO_MAX);
    ps->au_rec[i].au_off = OFF(st, p);
    ps->au_rec[i].au_old = *p;
    l3_store__fence();
    ps->au_count = i + 1;
    l3_store__fence();
    *p = v;
}

void l3_store__aw32(l3_store_t *st, uint32_t *p, uint32_t v)
{
    /* log the aligned 8-byte word holding the 4 bytes */
    uint64_t off = OFF(st, p);
    uint64_t *w = AT(st, off & ~7ull, uint64_t);
    uint64_t nv = *w;
    memcpy((uint8_t *)&nv + (off & 7), &v, 4);
    l3_store__aw(st, w, nv);
}

static void repair_alloc(l3_store_t *st)
{
    l3_alloc_hdr_t *al = st->al;
    uint32_t owner = __atomic_load_n(&al->al_lock.lk_owner, __ATOMIC_ACQUIRE);
    if (owner == 0 || owner > st->hdr->ah_max_procs)
        return;
    l3_proc_slot_t *ds = l3_store__slot(st, owner - 1);
    uint32_t n = ds->au_count;
    if (n > L3_ALLOC_UNDO_MAX)
        n = L3_ALLOC_UNDO_MAX;
    for (uint32_t i = n; i-- > 0;) {
        uint64_t off = ds->au_rec[i].au_off;
        if (off + 8 <= st->size && (off & 7) == 0)
            *AT(st, off, uint64_t) = ds->au_rec[i].au_old;
    }
    l3_store__fence();
    ds->au_count = 0;
    __atomic_fetch_add(&st->hdr->ah_rollbacks, n ? 1 : 0, __ATOMIC_RELAXED);
}

int l3_store__alloc_lock(l3_store_t *st)
{
    bool dead;
    st->ps->ps_alloc_held = 1;
    int rc = l3_store__lock_raw(st, &st->al->al_lock, &dead);
    if (rc < 0) {
        st->ps->ps_alloc_held = 0;
        return rc;
    }
    if (dead) {
        repair_alloc(st);
        pthread_mutex_consistent(&st->al->al_lock.lk_mutex);
        __atomic_fetch_add(&st->hdr->ah_repairs, 1, __ATOMIC_RELAXED);
        st->ps->ps_repairs++;
    }
    st->ps->au_count = 0;
    __atomic_store_n(&st->al->al_lock.lk_owner, (uint32_t)st->slot + 1, __ATOMIC_RELEASE);
    l3_store__fence();
    return 0;
}

void l3_store__alloc_unlock(l3_store_t *st)
{
    l3_store__fence();
    st->ps->au_count = 0;
    l3_store__fence();
    __atomic_store_n(&st->al->al_lock.lk_owner, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&st->al->al_lock.lk_mutex);
    st->ps->ps_alloc_held = 0;
}
