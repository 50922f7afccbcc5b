/* SPDX-License-Identifier: MIT */
/*
 * check.c - statistics and the structural check of an arena (l3kv-inspect check).
 *
 * Runs in: l3kv-inspect (read-only mapping), tests, the supervisor on demand.
 * Concurrency: takes no lock at all, so it never disturbs a running server: every offset
 * read from shared memory is bounds checked before use, documents are copied and
 * verified on the copy, and a check that finds problems is repeated (structures may have
 * been changing under it) before the problems of the last attempt are reported.
 * What it verifies: header CRC and geometry; the heap block chain (A1, A2), free lists
 * and bitmap (A3) and counters (A4); every stripe table (X1, X2) and entry (magic, key
 * hash, stripe); every document with l3_doc_verify(); that each used block is referenced
 * exactly once (index table, entry, document, or an in-flight transaction): no leaks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store-int.h"

#define SIZE(h) ((h) & ~L3_BLOCK_FLAGS)

/* Scope of a problem: a stripe (>= 0), the arena as a whole (GLOBAL: only meaningful in
 * a snapshot taken while nothing changed), or ALWAYS (immutable data). */
#define SC_GLOBAL (-1)
#define SC_ALWAYS (-2)

typedef struct {
    char **lines;
    int *scope;
    size_t n, cap;
    uint64_t *used; /* used block offsets, in heap order */
    size_t nused, capused;
    uint64_t *refs; /* referenced block offsets */
    size_t nrefs, caprefs;
} chk_t;

L3_PRINTF(3, 4) static void problem_in(chk_t *c, int scope, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        char **nl = realloc(c->lines, nc * sizeof(*nl));
        if (!nl)
            return;
        c->lines = nl;
        int *ns = realloc(c->scope, nc * sizeof(*ns));
        if (!ns)
            return;
        c->scope = ns;
        c->cap = nc;
    }
    c->lines[c->n] = strdup(buf);
    c->scope[c->n] = scope;
    if (c->lines[c->n])
        c->n++;
}

#define problem(c, ...) problem_in(c, SC_GLOBAL, __VA_ARGS__)

static int push(uint64_t **arr, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        uint64_t *na = realloc(*arr, nc * sizeof(*na));
        if (!na)
            return -ENOMEM;
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = v;
    return 0;
}

static void chk_reset(chk_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->lines[i]);
    free(c->lines);
    free(c->scope);
    free(c->used);
    free(c->refs);
    memset(c, 0, sizeof(*c));
}

static bool in_heap(const l3_store_t *st, uint64_t off, uint64_t len)
{
    const l3_arena_hdr_t *h = st->hdr;
    return off >= h->ah_off_heap && off <= st->size && len <= st->size - off;
}

static inline uint64_t ld64(const l3_store_t *st, uint64_t off)
{
    return __atomic_load_n(AT(st, off, uint64_t), __ATOMIC_RELAXED);
}

/* Is payload offset p the payload of a used block with at least len bytes? */
static bool used_block(const l3_store_t *st, uint64_t p, uint64_t len)
{
    if ((p & 15) || !in_heap(st, p - L3_BLOCK_HDR, L3_BLOCK_HDR) || p < st->hdr->ah_off_heap + L3_BLOCK_HDR)
        return false;
    uint64_t h = ld64(st, p - 16), sz = SIZE(h);
    return (h & L3_BLOCK_USED) && ld64(st, p - 8) == (L3_BLOCK_MAGIC_USED ^ sz) && sz >= L3_BLOCK_HDR &&
           len <= sz - L3_BLOCK_HDR && in_heap(st, p, sz - L3_BLOCK_HDR);
}

static bool slot_dead(const l3_store_t *st, uint32_t owner)
{
    if (owner == 0 || owner > st->hdr->ah_max_procs)
        return false;
    int32_t pid = __atomic_load_n(&l3_store__slot(st, owner - 1)->ps_pid, __ATOMIC_RELAXED);
    return pid == -1 || (pid > 0 && !l3_store__pid_alive(pid));
}

static void check_heap(l3_store_t *st, chk_t *c)
{
    const l3_alloc_hdr_t *al = st->al;
    uint64_t off = al->al_heap_off, end = al->al_heap_off + al->al_heap_bytes - L3_BLOCK_HDR;
    uint64_t used_b = 0, free_b = 0, used_n = 0, free_n = 0;
    bool prev_used = true, prev_free = false;
    if (off != st->hdr->ah_off_heap || al->al_heap_bytes > st->hdr->ah_heap_bytes) {
        problem(c, "allocator: heap bounds %" PRIu64 "+%" PRIu64 " disagree with the header", off,
                (uint64_t)al->al_heap_bytes);
        return;
    }
    while (off < end) {
        uint64_t h = ld64(st, off), sz = SIZE(h);
        if (sz < L3_BLOCK_MIN || (sz & 15) || sz > end - off) {
            problem(c, "allocator: block at %" PRIu64 " has bad size %" PRIu64, off, sz);
            return;
        }
        bool u = h & L3_BLOCK_USED;
        if (!!(h & L3_BLOCK_PREV_USED) != prev_used)
            problem(c, "allocator: block at %" PRIu64 " PREV_USED bit wrong", off);
        if (u) {
            if (ld64(st, off + 8) != (L3_BLOCK_MAGIC_USED ^ sz))
                problem(c, "allocator: used block at %" PRIu64 " has a bad check word", off);
            used_b += sz;
            used_n++;
            push(&c->used, &c->nused, &c->capused, off + L3_BLOCK_HDR);
        } else {
            if (ld64(st, off + 8) != (L3_BLOCK_MAGIC_FREE ^ sz) || ld64(st, off + sz - 8) != sz)
                problem(c, "allocator: free block at %" PRIu64 " has a bad check word or footer", off);
            if (prev_free)
                problem(c, "allocator: free blocks touch at %" PRIu64 " (missed coalescing)", off);
            free_b += sz;
            free_n++;
        }
        prev_used = u;
        prev_free = !u;
        off += sz;
    }
    if (off != end || ld64(st, end) != (L3_BLOCK_HDR | L3_BLOCK_USED | (prev_used ? L3_BLOCK_PREV_USED : 0)))
        problem(c, "allocator: heap does not end with the sentinel at %" PRIu64, end);
    if (used_b != al->al_used_bytes || free_b != al->al_free_bytes || used_n != al->al_used_blocks ||
        free_n != al->al_free_blocks)
        problem(c,
                "allocator: counters used %" PRIu64 "/%" PRIu64 " free %" PRIu64 "/%" PRIu64
                " differ from the heap walk used %" PRIu64 "/%" PRIu64 " free %" PRIu64 "/%" PRIu64,
                (uint64_t)al->al_used_bytes, (uint64_t)al->al_used_blocks, (uint64_t)al->al_free_bytes,
                (uint64_t)al->al_free_blocks, used_b, used_n, free_b, free_n);
    /* free lists */
    uint64_t listed = 0;
    for (uint32_t b = 0; b < L3_ALLOC_NBINS; b++) {
        uint64_t head = al->al_bins[b];
        bool bit = al->al_bitmap[b / 64] & (1ull << (b % 64));
        if (bit != (head != 0))
            problem(c, "allocator: bitmap bit of bin %u is %d but the list is %s", b, bit,
                    head ? "non-empty" : "empty");
        uint64_t prev = 0;
        for (uint64_t x = head; x; x = ld64(st, x + 16)) {
            if ((x & 15) || !in_heap(st, x, 32) || x >= end) {
                problem(c, "allocator: bin %u links to %" PRIu64 " outside the heap", b, x);
                break;
            }
            uint64_t h = ld64(st, x), sz = SIZE(h);
            if ((h & L3_BLOCK_USED) || ld64(st, x + 8) != (L3_BLOCK_MAGIC_FREE ^ sz)) {
                problem(c, "allocator: bin %u lists %" PRIu64 ", which is not a free block", b, x);
                break;
            }
            if (l3_store__bin_of(sz) != b)
                problem(c, "allocator: block %" PRIu64 " of size %" PRIu64 " is in bin %u", x, sz, b);
            if (ld64(st, x + 24) != prev)
                problem(c, "allocator: bin %u: back link of %" PRIu64 " is wrong", b, x);
            prev = x;
            if (++listed > free_n + 1) {
                problem(c, "allocator: free lists hold more blocks than the heap (cycle?)");
                return;
            }
        }
    }
    if (listed != free_n)
        problem(c, "allocator: %" PRIu64 " free blocks in the heap, %" PRIu64 " on the lists", free_n,
                listed);
}

static void check_doc(l3_store_t *st, chk_t *c, uint32_t s, const l3_ix_entry_t *ent)
{
    /* the document follows the entry and the key in the key's block (layout.h) */
    uint64_t eo = OFF(st, ent), pre = l3_store__prefix(ent->ie_klen), doc = ent->ie_doc, cap = 0;
    if (doc != eo + pre || !used_block(st, eo, pre + 32) || (cap = l3_store__doc_cap(st, ent)) == 0) {
        problem_in(c, (int)s,
                   "index: stripe %u key '%.*s': document %" PRIu64 "+%" PRIu64
                   " is not inside its key's block",
                   s, (int)L3_MIN(ent->ie_klen, 64u), (const char *)ent->ie_key, doc, cap);
        return;
    }
    uint32_t used;
    memcpy(&used, st->base + doc + 8, 4);
    if (used < 32 || used > cap) {
        problem_in(c, (int)s, "document: stripe %u key '%.*s': used size %u outside its block (%" PRIu64 ")",
                   s, (int)L3_MIN(ent->ie_klen, 64u), (const char *)ent->ie_key, used, cap);
        return;
    }
    uint8_t *b = malloc(used);
    if (!b) {
        problem_in(c, (int)s, "out of memory copying a document");
        return;
    }
    memcpy(b, st->base + doc, used);
    l3_doc_error_t e = {0};
    if (l3_doc_verify(b, used, &e) < 0)
        problem_in(c, (int)s, "document: stripe %u key '%.*s': verify failed at %zu: %s", s,
                   (int)L3_MIN(ent->ie_klen, 64u), (const char *)ent->ie_key, e.offset, e.msg ? e.msg : "?");
    free(b);
}

static void check_index(l3_store_t *st, chk_t *c, uint64_t *ret_keys)
{
    uint32_t ns = st->hdr->ah_nstripes;
    for (uint32_t s = 0; s < ns; s++) {
        const l3_stripe_t *sp = &st->stripes[s];
        uint32_t owner = __atomic_load_n(&sp->sp_lock.lk_owner, __ATOMIC_RELAXED);
        if (slot_dead(st, owner) && l3_store__slot(st, owner - 1)->tx_state != L3_TX_IDLE) {
            problem_in(
                c, (int)s,
                "stripe %u: unfinished mutation of a dead process (slot %u), repaired at the next lock", s,
                owner - 1);
        }
        uint64_t table = sp->sp_table;
        uint32_t cap = sp->sp_cap;
        if (table == 0) {
            if (sp->sp_count != 0)
                problem_in(c, (int)s, "index: stripe %u has no table but %u keys", s, sp->sp_count);
            continue;
        }
        if (cap == 0 || (cap & (cap - 1)) || !used_block(st, table, (uint64_t)cap * sizeof(l3_ix_slot_t))) {
            problem_in(c, (int)s, "index: stripe %u table %" PRIu64 " (cap %u) is not an allocated block", s,
                       table, cap);
            continue;
        }
        push(&c->refs, &c->nrefs, &c->caprefs, table);
        const l3_ix_slot_t *t = AT(st, table, l3_ix_slot_t);
        uint32_t live = 0, tomb = 0, mask = cap - 1;
        for (uint32_t i = 0; i < cap; i++) {
            uint64_t v = t[i].ix, e = l3_ix_slot_entry(v);
            if (v == L3_IX_EMPTY)
                continue;
            if (v == L3_IX_TOMB) {
                tomb++;
                continue;
            }
            live++;
            if (!used_block(st, e, L3_IX_ENTRY_HDR)) {
                problem_in(c, (int)s, "index: stripe %u slot %u: entry %" PRIu64 " is not an allocated block",
                           s, i, e);
                continue;
            }
            push(&c->refs, &c->nrefs, &c->caprefs, e);
            const l3_ix_entry_t *ent = AT(st, e, l3_ix_entry_t);
            uint32_t kl = ent->ie_klen;
            if (ent->ie_magic != L3_IX_ENTRY_MAGIC || kl == 0 || kl > L3_STORE_KEY_MAX ||
                !used_block(st, e, L3_IX_ENTRY_HDR + kl)) {
                problem_in(c, (int)s,
                           "index: stripe %u slot %u: entry %" PRIu64 " has a bad magic or key length", s, i,
                           e);
                continue;
            }
            uint64_t h = l3_store__hash(st, ent->ie_key, kl);
            if (l3_ix_tag(h) != l3_ix_slot_tag(v) || (h & st->smask) != s)
                problem_in(c, (int)s, "index: stripe %u slot %u: key hash mismatch", s, i);
            for (uint32_t j = l3_ix_tag(h) & mask; j != i; j = (j + 1) & mask) {
                if (t[j].ix == L3_IX_EMPTY) {
                    problem_in(c, (int)s, "index: stripe %u slot %u: unreachable behind an empty slot", s, i);
                    break;
                }
            }
            check_doc(st, c, s, ent);
        }
        if (live != sp->sp_count || tomb != sp->sp_tomb)
            problem_in(c, (int)s, "index: stripe %u counts %u live/%u tombstones, table has %u/%u", s,
                       sp->sp_count, sp->sp_tomb, live, tomb);
        *ret_keys += live;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void check_refs(l3_store_t *st, chk_t *c)
{
    /* blocks owned by transactions in flight are referenced by those */
    for (uint32_t i = 0; i < st->hdr->ah_max_procs; i++) {
        const l3_proc_slot_t *ps = l3_store__slot(st, i);
        if (ps->ps_pid == 0)
            continue;
        if (ps->tx_multi && ps->tx_state != L3_TX_IDLE) {
            /* a multi-key record lists its blocks in the tail of its undo area */
            uint32_t want = ps->tx_state == L3_TX_ACTIVE ? L3_TXT_ALLOC : L3_TXT_FREE;
            uint32_t n = (uint32_t)L3_MIN((uint64_t)ps->tx_ntail, st->hdr->ah_undo_bytes / 8);
            for (uint32_t j = 0; j < n; j++) {
                uint64_t v = *l3_store__tail_at(st, l3_store__undo_area(st, i), j);
                if ((v & L3_TXT_TAG) == want && (v & ~L3_TXT_TAG) != 0)
                    push(&c->refs, &c->nrefs, &c->caprefs, v & ~L3_TXT_TAG);
            }
            continue;
        }
        if (ps->tx_state == L3_TX_ACTIVE)
            for (uint32_t j = 0; j < L3_MIN(ps->tx_nalloc, L3_TX_MAX_BLOCKS); j++)
                if (ps->tx_alloc[j])
                    push(&c->refs, &c->nrefs, &c->caprefs, ps->tx_alloc[j]);
        if (ps->tx_state == L3_TX_COMMITTED)
            for (uint32_t j = 0; j < L3_MIN(ps->tx_nfree, L3_TX_MAX_BLOCKS); j++)
                if (ps->tx_free[j] && !(ps->tx_free_done & (1u << j)))
                    push(&c->refs, &c->nrefs, &c->caprefs, ps->tx_free[j]);
    }
    if (c->nrefs > 1)
        qsort(c->refs, c->nrefs, sizeof(uint64_t), cmp_u64);
    for (size_t i = 1; i < c->nrefs; i++)
        if (c->refs[i] == c->refs[i - 1])
            problem(c, "blocks: %" PRIu64 " is referenced twice", c->refs[i]);
    size_t leaks = 0;
    for (size_t i = 0; i < c->nused; i++) {
        if (c->nrefs == 0 || !bsearch(&c->used[i], c->refs, c->nrefs, sizeof(uint64_t), cmp_u64)) {
            if (leaks++ < 10)
                problem(c,
                        "blocks: used block %" PRIu64 " (%" PRIu64 " bytes) is referenced by nothing (leak)",
                        c->used[i], l3_store__block_cap(st, c->used[i]));
        }
    }
    if (leaks > 10)
        problem(c, "blocks: %zu leaked blocks in all", leaks);
}

static void check_header(l3_store_t *st, chk_t *c)
{
    const l3_arena_hdr_t *h = st->hdr;
    if (h->ah_magic != L3_ARENA_MAGIC || h->ah_layout != L3_ARENA_LAYOUT)
        problem_in(c, SC_ALWAYS, "header: bad magic or layout %u", h->ah_layout);
    if (l3_crc32c(0, h, L3_ARENA_HDR_CRC_BYTES) != h->ah_crc)
        problem_in(c, SC_ALWAYS, "header: CRC mismatch");
    uint32_t state = __atomic_load_n(&h->ah_state, __ATOMIC_RELAXED);
    if (state == L3_ARENA_POISONED)
        problem_in(c, SC_ALWAYS, "header: arena is poisoned (a repair was impossible)");
    uint32_t owner = __atomic_load_n(&st->al->al_lock.lk_owner, __ATOMIC_RELAXED);
    if (slot_dead(st, owner))
        problem_in(c, SC_ALWAYS,
                   "allocator: lock held by a dead process (slot %u), repaired at the next lock", owner - 1);
}

/* Per-stripe generations: a stripe is stable over an attempt when its generation did not
 * move and no live process was inside a mutation of it (odd generation). */
static void gens(l3_store_t *st, uint64_t *g)
{
    for (uint32_t s = 0; s < st->hdr->ah_nstripes; s++)
        g[s] = __atomic_load_n(&st->stripes[s].sp_gen, __ATOMIC_ACQUIRE);
}

static bool stripe_stable(l3_store_t *st, uint32_t s, uint64_t g0, uint64_t g1)
{
    if (g0 != g1)
        return false;
    if (!(g0 & 1))
        return true;
    return slot_dead(st, __atomic_load_n(&st->stripes[s].sp_lock.lk_owner, __ATOMIC_RELAXED));
}

int l3_store_check(l3_store_t *st, unsigned retries, l3_store_report_fn fn, void *ctx)
{
    chk_t c;
    memset(&c, 0, sizeof(c));
    uint32_t ns = st->hdr->ah_nstripes;
    uint64_t *g0 = calloc(ns, sizeof(uint64_t)), *g1 = calloc(ns, sizeof(uint64_t));
    bool *stable = calloc(ns, sizeof(bool));
    if (!g0 || !g1 || !stable) {
        free(g0);
        free(g1);
        free(stable);
        return -ENOMEM;
    }
    uint64_t keys = 0;
    bool all_stable = false;
    size_t kept = 0;
    for (unsigned attempt = 0;; attempt++) {
        chk_reset(&c);
        keys = 0;
        gens(st, g0);
        check_header(st, &c);
        check_heap(st, &c);
        check_index(st, &c, &keys);
        check_refs(st, &c);
        gens(st, g1);
        all_stable = true;
        for (uint32_t s = 0; s < ns; s++) {
            stable[s] = stripe_stable(st, s, g0[s], g1[s]);
            all_stable &= stable[s];
        }
        /* keep what this snapshot can vouch for */
        kept = 0;
        for (size_t i = 0; i < c.n; i++) {
            int sc = c.scope[i];
            bool keep = sc == SC_ALWAYS || (sc == SC_GLOBAL && all_stable) || (sc >= 0 && stable[sc]);
            if (keep) {
                char *l = c.lines[i];
                c.lines[i] = c.lines[kept];
                c.lines[kept] = l;
                c.scope[kept] = sc;
                kept++;
            }
        }
        if ((all_stable && kept == 0) || attempt >= retries)
            break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    int n = (int)kept;
    if (fn) {
        for (size_t i = 0; i < kept; i++)
            fn(ctx, c.lines[i]);
        if (!all_stable)
            fn(ctx,
               "note: the arena changed during every attempt; structures caught changing were not judged");
        char buf[160];
        snprintf(buf, sizeof(buf), "checked %" PRIu64 " keys, %zu used blocks: %d problem%s", keys, c.nused,
                 n, n == 1 ? "" : "s");
        fn(ctx, buf);
    }
    chk_reset(&c);
    free(g0);
    free(g1);
    free(stable);
    return n;
}

int l3_store_stats(l3_store_t *st, l3_store_stats_t *ret)
{
    const l3_arena_hdr_t *h = st->hdr;
    const l3_alloc_hdr_t *al = st->al;
    memset(ret, 0, sizeof(*ret));
    ret->keys = __atomic_load_n(&h->ah_keys, __ATOMIC_RELAXED);
    ret->doc_bytes = __atomic_load_n(&h->ah_doc_bytes, __ATOMIC_RELAXED);
    ret->heap_bytes = al->al_heap_bytes;
    ret->used_bytes = __atomic_load_n(&al->al_used_bytes, __ATOMIC_RELAXED);
    ret->free_bytes = __atomic_load_n(&al->al_free_bytes, __ATOMIC_RELAXED);
    ret->used_blocks = __atomic_load_n(&al->al_used_blocks, __ATOMIC_RELAXED);
    ret->free_blocks = __atomic_load_n(&al->al_free_blocks, __ATOMIC_RELAXED);
    /* largest free block: the highest non-empty bin holds it (walk that list, bounded) */
    uint64_t end = al->al_heap_off + al->al_heap_bytes;
    for (uint32_t b = L3_ALLOC_NBINS; b-- > 0;) {
        uint64_t x = __atomic_load_n(&al->al_bins[b], __ATOMIC_RELAXED);
        if (!x)
            continue;
        for (int n = 0; x && n < 4096; n++) {
            if ((x & 15) || x < al->al_heap_off || x + 32 > end)
                break;
            uint64_t sz = SIZE(ld64(st, x));
            if (sz > ret->largest_free && sz <= end - x)
                ret->largest_free = sz;
            x = ld64(st, x + 16);
        }
        break;
    }
    ret->fragmentation = ret->free_bytes ? 1.0 - (double)ret->largest_free / (double)ret->free_bytes : 0.0;
    if (ret->fragmentation < 0)
        ret->fragmentation = 0;
    ret->last_lsn = __atomic_load_n(&h->ah_lsn, __ATOMIC_RELAXED);
    ret->repairs = __atomic_load_n(&h->ah_repairs, __ATOMIC_RELAXED);
    ret->rollbacks = __atomic_load_n(&h->ah_rollbacks, __ATOMIC_RELAXED);
    ret->rollforwards = __atomic_load_n(&h->ah_rollforwards, __ATOMIC_RELAXED);
    ret->expired = __atomic_load_n(&h->ah_expired, __ATOMIC_RELAXED);
    ret->grows = __atomic_load_n(&h->ah_grows, __ATOMIC_RELAXED);
    ret->unpacks = __atomic_load_n(&h->ah_unpacks, __ATOMIC_RELAXED);
    ret->compactions = __atomic_load_n(&h->ah_compactions, __ATOMIC_RELAXED);
    ret->nstripes = h->ah_nstripes;
    for (uint32_t i = 0; i < h->ah_max_procs; i++)
        if (__atomic_load_n(&l3_store__slot(st, i)->ps_pid, __ATOMIC_RELAXED) > 0)
            ret->procs++;
    for (uint32_t s = 0; s < h->ah_nstripes; s++)
        ret->index_slots += __atomic_load_n(&st->stripes[s].sp_cap, __ATOMIC_RELAXED);
    return 0;
}
