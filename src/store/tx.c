/* SPDX-License-Identifier: MIT */
/*
 * tx.c - stripe locks, the per-process transaction record, and repair after a death.
 *
 * Owns: every acquisition of a stripe lock, the transaction record (tx_*) and undo area of
 * the caller's process slot, and the repair of a stripe whose holder died (roll back, or
 * roll forward when the WAL probe finds its record, or finish its deferred frees).
 * Builds on lock.c (the robust mutex, the allocator lock) and alloc.c (freeing the blocks
 * of a rolled-back or committed transaction); nothing below calls back into it.
 * Runs in: every process that mutates the store (supervisor, workers, writer, tests).
 *
 * Invariants (L1 and L3, on the lock owner and the allocator record: lock.c):
 *  L2 Every overwrite of shared bytes inside a transaction is preceded by an undo entry
 *     holding the old bytes (tlog), ordered by a release fence; bytes of blocks allocated
 *     by the transaction are private until published and need no entry.
 *  L4 Repair is idempotent: restoring old bytes twice gives the same bytes, and freeing
 *     a block and forgetting it happen in one allocator section, so a repairer that dies
 *     mid-repair leaves a state the next repairer handles the same way.
 *  L5 A transaction is committed once tx_state = COMMITTED: after that, repair completes
 *     its deferred frees instead of rolling it back.
 *  L7 A multi-key transaction (tx_multi, txn.c) takes its stripes in ascending stripe order
 *     with no allocator lock held, lists each in its tail before the attempt, and takes no
 *     other lock but the allocator's while it holds them: single-key operations hold one
 *     stripe, so no cycle of waits can form. Whichever stripe of a dead holder is locked
 *     first settles the whole record (all its stripes' bytes) under the allocator lock; the
 *     lockers of its other stripes wait for that lock and find the record idle. The
 *     physical log is emptied (tx_used = 0) before the first block is freed, so a repairer
 *     that dies after freeing never replays entries that point into freed blocks.
 *  L6 A repair that cannot complete (the allocator lock cannot be had) poisons the arena
 *     and leaves the stripe exactly as its dead holder left it: lk_owner still names the
 *     holder and its undo record is kept. The operation that found it fails with
 *     L3_EPOISONED, and so does every later locker of the stripe whose own repair attempt
 *     fails; the first one whose attempt succeeds serves it again. Poisoning is never
 *     cleared: writes stay refused (ops.c) until the arena is rebuilt from the WAL.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "store-int.h"

/* ---------------------------------------------------------------- transaction record */

/* Room kept free for the store's own small entries (publishing a block, index changes)
 * after the document layer's entries: those must never overflow. */
#define UNDO_RESERVE 4096u

static int tlog_limit(l3_store_t *st, const void *p, size_t len, uint64_t limit)
{
    l3_proc_slot_t *ps = st->ps;
    size_t pad = L3_ALIGN_UP(len, (size_t)8);
    uint64_t used = ps->tx_used, tail = ps->tx_multi ? 8ull * ps->tx_ntail : 0;
    if (len > UINT32_MAX || used + pad + sizeof(l3_undo_ent_t) + tail > limit)
        return L3_STORE__EUNDO;
    uint8_t *dst = st->undo + used;
    memcpy(dst, p, len);
    l3_undo_ent_t ue = {.ue_off = OFF(st, p), .ue_len = (uint32_t)len, .ue_pad = 0};
    memcpy(dst + pad, &ue, sizeof(ue));
    l3_store__fence();
    ps->tx_used = used + pad + sizeof(ue);
    l3_store__fence();
    return 0;
}

int l3_store__tlog(l3_store_t *st, const void *p, size_t len)
{
    return tlog_limit(st, p, len, st->hdr->ah_undo_bytes);
}

void l3_store__tw64(l3_store_t *st, uint64_t *p, uint64_t v)
{
    /* entries this small always fit: the area is >= 64 KiB and a transaction makes few */
    L3_ASSERT(l3_store__tlog(st, p, 8) == 0);
    *p = v;
}

void l3_store__tw32(l3_store_t *st, uint32_t *p, uint32_t v)
{
    L3_ASSERT(l3_store__tlog(st, p, 4) == 0);
    *p = v;
}

void l3_store__doc_undo_cb(void *ctx, const void *addr, size_t len)
{
    l3_store_t *st = ctx;
    if (tlog_limit(st, addr, len, st->hdr->ah_undo_bytes - UNDO_RESERVE) == 0)
        return;
    if (!st->jb_armed)
        l3_fatal("store: undo area overflow outside a guarded document call");
    st->jb_armed = 0;
    siglongjmp(st->jb, 1);
}

/* Restore the physical entries of slot ds (undo area ua) in reverse order. Idempotent. */
static void undo_phys(l3_store_t *st, l3_proc_slot_t *ds, const uint8_t *ua)
{
    uint64_t used = ds->tx_used;
    if (used > st->hdr->ah_undo_bytes)
        used = 0; /* impossible; refuse to walk garbage */
    while (used >= sizeof(l3_undo_ent_t)) {
        l3_undo_ent_t ue;
        memcpy(&ue, ua + used - sizeof(ue), sizeof(ue));
        size_t pad = L3_ALIGN_UP((size_t)ue.ue_len, (size_t)8);
        if (pad + sizeof(ue) > used || ue.ue_off > st->size || ue.ue_len > st->size - ue.ue_off)
            break;
        used -= pad + sizeof(ue);
        memcpy(st->base + ue.ue_off, ua + used, ue.ue_len);
    }
    l3_store__fence();
}

/* End one allocator section inside a longer hold of the allocator lock: what was logged so
 * far is a consistent state, a death after this point rolls back nothing of it (L3). */
static void au_section(l3_store_t *st)
{
    l3_store__fence();
    st->ps->au_count = 0;
    l3_store__fence();
}

/* settle_tx for a multi-key record: its blocks are in the tail list, freed one allocator
 * section each (a record may list thousands; one section holds L3_ALLOC_UNDO_MAX words). */
static void settle_tail(l3_store_t *st, l3_proc_slot_t *ds, uint8_t *ua)
{
    uint64_t want;
    if (ds->tx_state == L3_TX_ACTIVE) {
        undo_phys(st, ds, ua);
        l3_store__aw(st, &ds->tx_used, 0); /* L7: never replayed once blocks are freed */
        au_section(st);
        want = L3_TXT_ALLOC;
        __atomic_fetch_add(&st->hdr->ah_rollbacks, 1, __ATOMIC_RELAXED);
    } else if (ds->tx_state == L3_TX_COMMITTED) {
        want = L3_TXT_FREE;
    } else {
        return;
    }
    uint32_t n = (uint32_t)L3_MIN((uint64_t)ds->tx_ntail, st->hdr->ah_undo_bytes / 8);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t *e = l3_store__tail_at(st, ua, i);
        if ((*e & L3_TXT_TAG) != want || (*e & ~L3_TXT_TAG) == 0)
            continue;
        l3_store__free_locked(st, *e & ~L3_TXT_TAG);
        l3_store__aw(st, e, 0);
        au_section(st);
    }
}

/* Finish or roll back the transaction of slot ds. Caller holds the allocator lock.
 * may_forward: ds is a dead process's slot; a transaction whose WAL record the probe
 * reports as written is completed instead of rolled back (memory must match the WAL). */
static void settle_tx(l3_store_t *st, l3_proc_slot_t *ds, uint8_t *ua, bool may_forward)
{
    if (ds->tx_state == L3_TX_ACTIVE && may_forward && ds->tx_hooked && st->probe &&
        st->probe(st->probe_ctx, ds->tx_lsn) == 1) {
        /* the mutation is complete (the hook runs after it): commit it for the dead owner */
        l3_store__aw32(st, &ds->tx_state, L3_TX_COMMITTED);
        __atomic_fetch_add(&st->hdr->ah_rollforwards, 1, __ATOMIC_RELAXED);
    }
    if (ds->tx_multi) {
        settle_tail(st, ds, ua);
    } else if (ds->tx_state == L3_TX_ACTIVE) {
        undo_phys(st, ds, ua);
        uint32_t n = L3_MIN(ds->tx_nalloc, L3_TX_MAX_BLOCKS);
        for (uint32_t i = 0; i < n; i++) {
            if (ds->tx_alloc[i] != 0) {
                l3_store__free_locked(st, ds->tx_alloc[i]);
                l3_store__aw(st, &ds->tx_alloc[i], 0);
            }
        }
        __atomic_fetch_add(&st->hdr->ah_rollbacks, 1, __ATOMIC_RELAXED);
    } else if (ds->tx_state == L3_TX_COMMITTED) {
        uint32_t n = L3_MIN(ds->tx_nfree, L3_TX_MAX_BLOCKS);
        for (uint32_t i = 0; i < n; i++) {
            if (!(ds->tx_free_done & (1u << i)) && ds->tx_free[i] != 0) {
                l3_store__free_locked(st, ds->tx_free[i]);
                l3_store__aw32(st, &ds->tx_free_done, ds->tx_free_done | (1u << i));
            }
        }
    }
    l3_store__aw32(st, &ds->tx_state, L3_TX_IDLE);
}

/* Repair stripe s after its holder died (caller holds the EOWNERDEAD mutex). 0, or
 * L3_EPOISONED when the repair could not complete: the stripe is left as the dead holder
 * left it (lk_owner, the odd sp_gen and the holder's undo record untouched) and the arena
 * is poisoned. */
static int repair_stripe(l3_store_t *st, uint32_t s)
{
    l3_stripe_t *sp = &st->stripes[s];
    uint32_t owner = __atomic_load_n(&sp->sp_lock.lk_owner, __ATOMIC_ACQUIRE);
    if (owner != 0 && owner <= st->hdr->ah_max_procs) {
        l3_proc_slot_t *ds = l3_store__slot(st, owner - 1);
        /* a multi-key record covers every stripe its holder had locked (L1, L7) */
        if (ds->tx_state != L3_TX_IDLE && (ds->tx_multi || ds->tx_stripe == s)) {
            /* The allocator lock is taken even when it is not needed, so that repairs
             * never interleave with a half-finished allocator section. If it cannot be
             * had, the stripe stays unrepaired: poison instead. */
            int tries = 0, rc;
            while ((rc = l3_store__alloc_lock(st)) == -ETIMEDOUT && ++tries < 3)
                ;
            if (rc < 0) {
                __atomic_store_n(&st->hdr->ah_state, L3_ARENA_POISONED, __ATOMIC_RELEASE);
                return L3_EPOISONED;
            }
            settle_tx(st, ds, l3_store__undo_area(st, owner - 1), true);
            l3_store__alloc_unlock(st);
        }
    }
    if (__atomic_load_n(&sp->sp_gen, __ATOMIC_RELAXED) & 1)
        __atomic_fetch_add(&sp->sp_gen, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&sp->sp_lock.lk_owner, 0, __ATOMIC_RELEASE);
    return 0;
}

/* Lock stripe s and repair what a dead holder left. The caller has announced the attempt
 * (ps_stripe_held, or a tail entry of a multi-key record). */
static int lock_stripe(l3_store_t *st, uint32_t s)
{
    bool dead;
    l3_stripe_t *sp = &st->stripes[s];
    int rc = l3_store__lock_raw(st, &sp->sp_lock, &dead);
    if (rc < 0)
        return rc;
    /* lk_owner != 0 on a lock that was not EOWNERDEAD: a repair before us could not
     * complete and left the stripe as its dead holder did (L1, L6): repair it now */
    bool leftover = !dead && __atomic_load_n(&sp->sp_lock.lk_owner, __ATOMIC_ACQUIRE) != 0;
    if ((dead || leftover) && repair_stripe(st, s) < 0) {
        /* The mutex stays usable, the unrepaired state stays marked by lk_owner; this
         * operation must not touch it. */
        if (dead)
            pthread_mutex_consistent(&sp->sp_lock.lk_mutex);
        pthread_mutex_unlock(&sp->sp_lock.lk_mutex);
        return L3_EPOISONED;
    }
    if (dead) {
        pthread_mutex_consistent(&sp->sp_lock.lk_mutex);
        __atomic_fetch_add(&st->hdr->ah_repairs, 1, __ATOMIC_RELAXED);
        st->ps->ps_repairs++;
    }
    __atomic_store_n(&sp->sp_lock.lk_owner, (uint32_t)st->slot + 1, __ATOMIC_RELEASE);
    l3_store__fence();
    return 0;
}

int l3_store__stripe_lock(l3_store_t *st, uint32_t s)
{
    st->ps->ps_stripe_held = s + 1;
    l3_store__fence();
    int rc = lock_stripe(st, s);
    if (rc < 0)
        st->ps->ps_stripe_held = 0;
    return rc;
}

static void unlock_stripe(l3_store_t *st, uint32_t s)
{
    l3_stripe_t *sp = &st->stripes[s];
    l3_store__fence();
    __atomic_store_n(&sp->sp_lock.lk_owner, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&sp->sp_lock.lk_mutex);
}

void l3_store__stripe_unlock(l3_store_t *st, uint32_t s)
{
    unlock_stripe(st, s);
    st->ps->ps_stripe_held = 0;
}

/* ---------------------------------------------------------------- multi-key records */

/* Append v to our tail list (outside an allocator section). 0 or L3_STORE__EUNDO. */
static int tail_push(l3_store_t *st, uint64_t v)
{
    l3_proc_slot_t *ps = st->ps;
    uint32_t n = ps->tx_ntail;
    if (l3_store__undo_free(st) < 8)
        return L3_STORE__EUNDO;
    *l3_store__tail_at(st, st->undo, n) = v;
    l3_store__fence();
    ps->tx_ntail = n + 1;
    l3_store__fence();
    return 0;
}

static void multi_end(l3_store_t *st)
{
    l3_proc_slot_t *ps = st->ps;
    l3_store__fence();
    ps->tx_multi = 0;
    ps->tx_ntail = 0;
    l3_store__fence();
}

int l3_store__multi_lock(l3_store_t *st, const uint32_t *s, size_t n)
{
    l3_proc_slot_t *ps = st->ps;
    L3_ASSERT(ps->tx_state == L3_TX_IDLE && ps->ps_stripe_held == 0);
    ps->tx_ntail = 0;
    ps->tx_used = 0;
    l3_store__fence();
    ps->tx_multi = 1;
    l3_store__fence();
    for (size_t i = 0; i < n; i++) {
        int rc = tail_push(st, (uint64_t)s[i] << 4 | L3_TXT_STRIPE);
        if (rc == 0) {
            rc = lock_stripe(st, s[i]);
            if (rc < 0) {
                ps->tx_ntail--;
                l3_store__fence();
            }
        } else {
            rc = -E2BIG;
        }
        if (rc < 0) {
            l3_store__multi_unlock(st);
            return rc;
        }
    }
    return 0;
}

void l3_store__multi_unlock(l3_store_t *st)
{
    l3_proc_slot_t *ps = st->ps;
    for (uint32_t i = ps->tx_ntail; i-- > 0;) {
        uint64_t v = *l3_store__tail_at(st, st->undo, i);
        if ((v & L3_TXT_TAG) == L3_TXT_STRIPE)
            unlock_stripe(st, (uint32_t)(v >> 4));
    }
    multi_end(st);
}

/* sp_gen of every listed stripe: odd (changing) at the start, even at the end */
static void multi_gen(l3_store_t *st, bool begin)
{
    l3_proc_slot_t *ps = st->ps;
    for (uint32_t i = 0; i < ps->tx_ntail; i++) {
        uint64_t v = *l3_store__tail_at(st, st->undo, i);
        if ((v & L3_TXT_TAG) != L3_TXT_STRIPE)
            continue;
        l3_stripe_t *sp = &st->stripes[v >> 4];
        if (begin || (__atomic_load_n(&sp->sp_gen, __ATOMIC_RELAXED) & 1))
            __atomic_fetch_add(&sp->sp_gen, 1, __ATOMIC_RELEASE);
    }
}

/* An empty record for stripe s (0 for a multi-key one), not yet active. */
static l3_proc_slot_t *tx_reset(l3_store_t *st, uint32_t s)
{
    l3_proc_slot_t *ps = st->ps;
    ps->tx_used = 0;
    ps->tx_nalloc = 0;
    ps->tx_nfree = 0;
    ps->tx_free_done = 0;
    ps->tx_hooked = 0;
    memset(ps->tx_alloc, 0, sizeof(ps->tx_alloc));
    memset(ps->tx_free, 0, sizeof(ps->tx_free));
    ps->tx_stripe = s;
    return ps;
}

void l3_store__tx_begin_multi(l3_store_t *st)
{
    l3_proc_slot_t *ps = tx_reset(st, 0);
    l3_store__fence();
    ps->tx_state = L3_TX_ACTIVE;
    multi_gen(st, true);
    l3_store__fence();
}

void l3_store__tx_begin(l3_store_t *st, uint32_t s)
{
    l3_proc_slot_t *ps = tx_reset(st, s);
    l3_store__fence();
    ps->tx_state = L3_TX_ACTIVE;
    __atomic_fetch_add(&st->stripes[s].sp_gen, 1, __ATOMIC_RELEASE); /* odd: changing */
    l3_store__fence();
}

static void tx_end(l3_store_t *st)
{
    if (st->ps->tx_multi) {
        multi_gen(st, false);
        return;
    }
    l3_stripe_t *sp = &st->stripes[st->ps->tx_stripe];
    if (__atomic_load_n(&sp->sp_gen, __ATOMIC_RELAXED) & 1)
        __atomic_fetch_add(&sp->sp_gen, 1, __ATOMIC_RELEASE);
}

void l3_store__tx_commit(l3_store_t *st)
{
    l3_proc_slot_t *ps = st->ps;
    l3_store__fence();
    ps->tx_state = L3_TX_COMMITTED;
    l3_store__fence();
    if (ps->tx_nfree > 0 || ps->tx_multi) {
        /* A timeout here leaves the frees to the next repair of this slot's record:
         * retry until the allocator lock is had, the blocks must not leak. */
        while (l3_store__alloc_lock(st) < 0)
            ;
        settle_tx(st, ps, st->undo, false);
        l3_store__alloc_unlock(st);
    } else {
        ps->tx_state = L3_TX_IDLE;
    }
    ps->ps_ops++;
    tx_end(st);
}

void l3_store__tx_undo_phys(l3_store_t *st)
{
    undo_phys(st, st->ps, st->undo);
    st->ps->tx_used = 0;
    l3_store__fence();
}

void l3_store__tx_rollback(l3_store_t *st)
{
    l3_proc_slot_t *ps = st->ps;
    if (ps->tx_state != L3_TX_ACTIVE)
        return;
    if (ps->tx_nalloc > 0 || ps->tx_multi) {
        while (l3_store__alloc_lock(st) < 0)
            ;
        settle_tx(st, ps, st->undo, false);
        l3_store__alloc_unlock(st);
    } else {
        undo_phys(st, ps, st->undo);
        __atomic_fetch_add(&st->hdr->ah_rollbacks, 1, __ATOMIC_RELAXED);
        ps->tx_state = L3_TX_IDLE;
    }
    tx_end(st);
}

void l3_store__tx_defer_free(l3_store_t *st, uint64_t payload)
{
    l3_proc_slot_t *ps = st->ps;
    if (ps->tx_multi) {
        /* txn.c keeps L3_TXN_KEY_UNDO bytes free per key it stores: this always fits */
        L3_ASSERT(tail_push(st, payload | L3_TXT_FREE) == 0);
        return;
    }
    L3_ASSERT(ps->tx_nfree < L3_TX_MAX_BLOCKS);
    ps->tx_free[ps->tx_nfree] = payload;
    l3_store__fence();
    ps->tx_nfree++;
}

/* Repair whatever slot i (whose process is dead) held. 0 or -ETIMEDOUT. */
int l3_store__reap_slot(l3_store_t *st, uint32_t i)
{
    l3_proc_slot_t *ds = l3_store__slot(st, i);
    if (ds->tx_multi) {
        /* every stripe it had locked or was waiting for: the first one locked settles the
         * record, the others are only made consistent (L7) */
        uint8_t *ua = l3_store__undo_area(st, i);
        uint32_t n = (uint32_t)L3_MIN((uint64_t)ds->tx_ntail, st->hdr->ah_undo_bytes / 8);
        for (uint32_t k = 0; k < n; k++) {
            uint64_t v = *l3_store__tail_at(st, ua, k);
            if ((v & L3_TXT_TAG) != L3_TXT_STRIPE || (v >> 4) >= st->hdr->ah_nstripes)
                continue;
            int rc = l3_store__stripe_lock(st, (uint32_t)(v >> 4));
            if (rc < 0)
                return rc;
            l3_store__stripe_unlock(st, (uint32_t)(v >> 4));
        }
        ds->tx_multi = 0;
        ds->tx_ntail = 0;
    }
    uint32_t held = ds->ps_stripe_held;
    if (held == 0 && ds->tx_state != L3_TX_IDLE)
        held = ds->tx_stripe + 1;
    if (held != 0 && held <= st->hdr->ah_nstripes) {
        int rc = l3_store__stripe_lock(st, held - 1);
        if (rc < 0)
            return rc;
        l3_store__stripe_unlock(st, held - 1);
    }
    if (ds->ps_alloc_held) {
        int rc = l3_store__alloc_lock(st);
        if (rc < 0)
            return rc;
        l3_store__alloc_unlock(st);
    }
    return 0;
}
