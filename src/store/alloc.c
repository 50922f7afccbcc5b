/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - the process-shared heap allocator of the arena.
 *
 * Owns: the heap region (ah_off_heap .. end) and l3_alloc_hdr_t: block headers, footers,
 * free lists, bitmap and counters. Layout drawn in layout.h.
 * Runs in: every mutating process; l3kv-inspect only reads (check.c).
 * Concurrency: one robust allocator lock (taken after a stripe lock, never before).
 * Every write under it goes through l3_store__aw() so a holder that dies mid-operation is
 * rolled back by the next locker (lock.c L3).
 *
 * Scheme: segregated fit with boundary tags. Sizes below 1 KiB have exact 16-byte classes
 * (small blocks: keys, index entries, small documents); larger ones 8 classes per power of
 * two. Allocation takes the first fitting block of its own class (short walk), else the
 * head of the next non-empty class found in the bitmap, and splits off the remainder.
 * Freeing coalesces with both neighbours at once, so free blocks never touch.
 * Invariants:
 *  A1 blocks tile the heap exactly, from al_heap_off to the 16-byte used sentinel at the end
 *  A2 a block's PREV_USED bit equals the USED bit of the block before it
 *  A3 every free block is on the list of bin_of(its size) and nowhere else; a bin's bitmap
 *     bit is set iff its list is non-empty
 *  A4 al_used_bytes + al_free_bytes + 16 == al_heap_bytes
 */
#include <errno.h>
#include <string.h>

#include "store-int.h"

#define HDR(st, b) AT(st, (b), uint64_t)
#define CHK(st, b) AT(st, (b) + 8, uint64_t)
#define NEXT(st, b) AT(st, (b) + 16, uint64_t)
#define PREV(st, b) AT(st, (b) + 24, uint64_t)
#define SIZE(h) ((h) & ~L3_BLOCK_FLAGS)

uint32_t l3_store__bin_of(uint64_t sz)
{
    if (sz < 1024)
        return (uint32_t)(sz >> 4);
    uint32_t fl = 63u - (uint32_t)__builtin_clzll(sz);
    uint32_t sl = (uint32_t)(sz >> (fl - 3)) & 7u;
    uint32_t b = 64u + (fl - 10u) * 8u + sl;
    return b < L3_ALLOC_NBINS ? b : L3_ALLOC_NBINS - 1;
}

static void list_remove(l3_store_t *st, uint64_t b, uint32_t bin)
{
    l3_alloc_hdr_t *al = st->al;
    uint64_t next = *NEXT(st, b), prev = *PREV(st, b);
    if (prev)
        l3_store__aw(st, NEXT(st, prev), next);
    else
        l3_store__aw(st, &al->al_bins[bin], next);
    if (next)
        l3_store__aw(st, PREV(st, next), prev);
    if (al->al_bins[bin] == 0)
        l3_store__aw(st, &al->al_bitmap[bin / 64], al->al_bitmap[bin / 64] & ~(1ull << (bin % 64)));
}

static void list_push(l3_store_t *st, uint64_t b, uint32_t bin)
{
    l3_alloc_hdr_t *al = st->al;
    uint64_t head = al->al_bins[bin];
    l3_store__aw(st, NEXT(st, b), head);
    l3_store__aw(st, PREV(st, b), 0);
    if (head)
        l3_store__aw(st, PREV(st, head), b);
    l3_store__aw(st, &al->al_bins[bin], b);
    if (!(al->al_bitmap[bin / 64] & (1ull << (bin % 64))))
        l3_store__aw(st, &al->al_bitmap[bin / 64], al->al_bitmap[bin / 64] | (1ull << (bin % 64)));
}

/* Write a free block's header, check word and footer. */
static void mark_free(l3_store_t *st, uint64_t b, uint64_t size, uint64_t prevflag)
{
    l3_store__aw(st, HDR(st, b), size | prevflag);
    l3_store__aw(st, CHK(st, b), L3_BLOCK_MAGIC_FREE ^ size);
    l3_store__aw(st, AT(st, b + size - 8, uint64_t), size);
}

void l3_store__alloc_format(l3_store_t *st, uint64_t heap_off, uint64_t heap_bytes)
{
    l3_alloc_hdr_t *al = st->al;
    heap_bytes &= ~15ull;
    al->al_heap_off = heap_off;
    al->al_heap_bytes = heap_bytes;
    uint64_t size = heap_bytes - L3_BLOCK_HDR;
    uint64_t b = heap_off;
    *HDR(st, b) = size | L3_BLOCK_PREV_USED;
    *CHK(st, b) = L3_BLOCK_MAGIC_FREE ^ size;
    *NEXT(st, b) = 0;
    *PREV(st, b) = 0;
    *AT(st, b + size - 8, uint64_t) = size;
    uint64_t sent = heap_off + size;
    *HDR(st, sent) = L3_BLOCK_HDR | L3_BLOCK_USED;
    *CHK(st, sent) = L3_BLOCK_MAGIC_USED ^ L3_BLOCK_HDR;
    uint32_t bin = l3_store__bin_of(size);
    al->al_bins[bin] = b;
    al->al_bitmap[bin / 64] |= 1ull << (bin % 64);
    al->al_free_bytes = size;
    al->al_free_blocks = 1;
    al->al_used_bytes = 0;
    al->al_used_blocks = 0;
}

static uint64_t find_block(l3_store_t *st, uint64_t need)
{
    l3_alloc_hdr_t *al = st->al;
    uint32_t bin = l3_store__bin_of(need);
    /* first fit within the request's own class, bounded walk */
    uint64_t b = al->al_bins[bin];
    for (int n = 0; b && n < 32; n++, b = *NEXT(st, b)) {
        if (SIZE(*HDR(st, b)) >= need)
            return b;
    }
    /* any block of a higher class fits */
    for (uint32_t i = bin + 1; i < L3_ALLOC_NBINS;) {
        uint64_t w = al->al_bitmap[i / 64] >> (i % 64);
        if (w == 0) {
            i = (i / 64 + 1) * 64;
            continue;
        }
        i += (uint32_t)__builtin_ctzll(w);
        if (i >= L3_ALLOC_NBINS)
            break;
        return al->al_bins[i];
    }
    return 0;
}

int l3_store__alloc(l3_store_t *st, uint64_t bytes, uint64_t *ret_payload, uint64_t *ret_cap)
{
    l3_alloc_hdr_t *al = st->al;
    if (bytes > al->al_heap_bytes)
        return -ENOSPC;
    uint64_t need = L3_ALIGN_UP(bytes + L3_BLOCK_HDR, (uint64_t)16);
    if (need < L3_BLOCK_MIN)
        need = L3_BLOCK_MIN;
    int rc = l3_store__alloc_lock(st);
    if (rc < 0)
        return rc;
    l3_proc_slot_t *ps = st->ps;
    bool multi = ps->tx_state == L3_TX_ACTIVE && ps->tx_multi;
    if (ps->tx_state == L3_TX_ACTIVE &&
        (multi ? l3_store__undo_free(st) < 8 : ps->tx_nalloc >= L3_TX_MAX_BLOCKS)) {
        l3_store__alloc_unlock(st);
        return -ENOSPC;
    }
    uint64_t b = find_block(st, need);
    if (b == 0) {
        l3_store__alloc_unlock(st);
        return -ENOSPC;
    }
    uint64_t h = *HDR(st, b);
    uint64_t bsz = SIZE(h);
    list_remove(st, b, l3_store__bin_of(bsz));
    uint64_t rem = bsz - need;
    if (rem >= L3_BLOCK_MIN) {
        uint64_t r = b + need;
        mark_free(st, r, rem, L3_BLOCK_PREV_USED);
        list_push(st, r, l3_store__bin_of(rem));
        l3_store__aw(st, &al->al_free_bytes, al->al_free_bytes - need);
        bsz = need;
    } else {
        uint64_t n = b + bsz;
        l3_store__aw(st, HDR(st, n), *HDR(st, n) | L3_BLOCK_PREV_USED);
        l3_store__aw(st, &al->al_free_bytes, al->al_free_bytes - bsz);
        l3_store__aw(st, &al->al_free_blocks, al->al_free_blocks - 1);
    }
    l3_store__aw(st, HDR(st, b), bsz | L3_BLOCK_USED | (h & L3_BLOCK_PREV_USED));
    l3_store__aw(st, CHK(st, b), L3_BLOCK_MAGIC_USED ^ bsz);
    l3_store__aw(st, &al->al_used_bytes, al->al_used_bytes + bsz);
    l3_store__aw(st, &al->al_used_blocks, al->al_used_blocks + 1);
    uint64_t payload = b + L3_BLOCK_HDR;
    if (multi) {
        uint32_t n = ps->tx_ntail;
        l3_store__aw(st, l3_store__tail_at(st, st->undo, n), payload | L3_TXT_ALLOC);
        l3_store__aw32(st, &ps->tx_ntail, n + 1);
    } else if (ps->tx_state == L3_TX_ACTIVE) {
        uint32_t n = ps->tx_nalloc;
        l3_store__aw(st, &ps->tx_alloc[n], payload);
        l3_store__aw32(st, &ps->tx_nalloc, n + 1);
    }
    l3_store__alloc_unlock(st);
    *ret_payload = payload;
    *ret_cap = bsz - L3_BLOCK_HDR;
    return 0;
}

void l3_store__free_locked(l3_store_t *st, uint64_t payload)
{
    l3_alloc_hdr_t *al = st->al;
    uint64_t b = payload - L3_BLOCK_HDR;
    uint64_t end = al->al_heap_off + al->al_heap_bytes - L3_BLOCK_HDR;
    if (payload < al->al_heap_off + L3_BLOCK_HDR || b >= end || (b & 15)) {
        __atomic_store_n(&st->hdr->ah_state, L3_ARENA_POISONED, __ATOMIC_RELEASE);
        return;
    }
    uint64_t h = *HDR(st, b);
    uint64_t bsz = SIZE(h);
    if (!(h & L3_BLOCK_USED) || *CHK(st, b) != (L3_BLOCK_MAGIC_USED ^ bsz) || bsz > end - b) {
        /* not an allocated block: refuse (a double free would corrupt the lists) */
        __atomic_store_n(&st->hdr->ah_state, L3_ARENA_POISONED, __ATOMIC_RELEASE);
        return;
    }
    uint64_t start = b, size = bsz, nfree = al->al_free_blocks + 1;
    uint64_t prevflag = h & L3_BLOCK_PREV_USED;
    uint64_t n = b + bsz;
    uint64_t nh = *HDR(st, n);
    if (!(nh & L3_BLOCK_USED)) {
        list_remove(st, n, l3_store__bin_of(SIZE(nh)));
        size += SIZE(nh);
        nfree--;
    }
    if (!(h & L3_BLOCK_PREV_USED)) {
        uint64_t psz = *AT(st, b - 8, uint64_t);
        uint64_t p = b - psz;
        list_remove(st, p, l3_store__bin_of(psz));
        prevflag = *HDR(st, p) & L3_BLOCK_PREV_USED;
        start = p;
        size += psz;
        nfree--;
    }
    mark_free(st, start, size, prevflag);
    list_push(st, start, l3_store__bin_of(size));
    uint64_t after = start + size;
    l3_store__aw(st, HDR(st, after), *HDR(st, after) & ~L3_BLOCK_PREV_USED);
    l3_store__aw(st, &al->al_used_bytes, al->al_used_bytes - bsz);
    l3_store__aw(st, &al->al_free_bytes, al->al_free_bytes + bsz);
    l3_store__aw(st, &al->al_used_blocks, al->al_used_blocks - 1);
    l3_store__aw(st, &al->al_free_blocks, nfree);
}

void l3_store__free_now(l3_store_t *st, uint64_t payload)
{
    while (l3_store__alloc_lock(st) < 0)
        ;
    l3_store__free_locked(st, payload);
    l3_proc_slot_t *ps = st->ps;
    for (uint32_t i = 0; ps->tx_multi && i < ps->tx_ntail; i++) {
        uint64_t *e = l3_store__tail_at(st, st->undo, i);
        if (*e == (payload | L3_TXT_ALLOC)) {
            l3_store__aw(st, e, 0);
            break;
        }
    }
    for (uint32_t i = 0; !ps->tx_multi && i < ps->tx_nalloc && i < L3_TX_MAX_BLOCKS; i++) {
        if (ps->tx_alloc[i] == payload) {
            l3_store__aw(st, &ps->tx_alloc[i], 0);
            break;
        }
    }
    l3_store__alloc_unlock(st);
}

uint64_t l3_store__block_cap(const l3_store_t *st, uint64_t payload)
{
    return SIZE(*AT(st, payload - L3_BLOCK_HDR, uint64_t)) - L3_BLOCK_HDR;
}
