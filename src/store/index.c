/* SPDX-License-Identifier: MIT */
/*
 * index.c - the keyed hash index: key bytes -> index entry -> document.
 *
 * Owns: the stripe tables (l3_ix_slot_t arrays) and l3_ix_entry_t blocks (layout.h).
 * Runs in: every mutating process, under the stripe lock with an active transaction.
 * Hashing: SipHash-2-4 with the arena's random 128-bit key, so crafted keys cannot force
 * collisions. The low bits pick the stripe; bits 32..55, the slot's tag, the start of the
 * probe (layout.h: a slot is the tag and the entry's offset in one 8-byte word).
 * Growth: a stripe whose table passes 3/4 load (live + tombstones) is rebuilt into a new,
 * private block sized for load <= 1/2, published by one logged store of sp_table; the old
 * table is freed when the transaction commits. Only that stripe waits, and for a time
 * proportional to its own size (about 1/nstripes of the keys).
 * Invariants:
 *  X1 every live entry is reachable from its home position without crossing an empty slot
 *  X2 sp_count / sp_tomb equal the live / tombstone slots of the table
 */
#include <errno.h>
#include <string.h>

#include "store-int.h"

uint64_t l3_store__hash(const l3_store_t *st, const void *key, size_t klen)
{
    return l3_siphash(st->hdr->ah_sipkey, key, klen);
}

uint64_t l3_store__ix_find(l3_store_t *st, l3_stripe_t *sp, uint64_t h, const void *key, size_t klen,
                           uint32_t *ret_pos)
{
    if (sp->sp_table == 0)
        return 0;
    l3_ix_slot_t *t = AT(st, sp->sp_table, l3_ix_slot_t);
    uint32_t mask = sp->sp_cap - 1, tag = l3_ix_tag(h);
    uint32_t i = tag & mask;
    for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
        uint64_t v = t[i].ix;
        if (v == L3_IX_EMPTY)
            return 0;
        if (v != L3_IX_TOMB && l3_ix_slot_tag(v) == tag) {
            uint64_t e = l3_ix_slot_entry(v);
            l3_ix_entry_t *ent = AT(st, e, l3_ix_entry_t);
            if (ent->ie_klen == klen && memcmp(ent->ie_key, key, klen) == 0) {
                if (ret_pos)
                    *ret_pos = i;
                return e;
            }
        }
    }
    return 0;
}

/* Place slot value v in a table being built (private: plain stores); its position. */
static uint32_t put_slot(l3_ix_slot_t *t, uint32_t mask, uint64_t v)
{
    uint32_t i = l3_ix_slot_tag(v) & mask;
    while (t[i].ix != L3_IX_EMPTY)
        i = (i + 1) & mask;
    t[i].ix = v;
    return i;
}

static int rebuild(l3_store_t *st, l3_stripe_t *sp, uint64_t h, uint64_t entry, uint32_t *ret_pos)
{
    uint64_t cap = 16;
    while ((uint64_t)(sp->sp_count + 1) * 2 > cap)
        cap *= 2;
    if (cap > L3_IX_MAX_CAP)
        return -ENOSPC;
    uint64_t nt, ncap;
    int rc = l3_store__alloc(st, cap * sizeof(l3_ix_slot_t), &nt, &ncap);
    if (rc < 0)
        return rc;
    l3_ix_slot_t *t = AT(st, nt, l3_ix_slot_t);
    memset(t, 0, cap * sizeof(l3_ix_slot_t));
    uint32_t mask = (uint32_t)cap - 1;
    if (sp->sp_table) {
        l3_ix_slot_t *o = AT(st, sp->sp_table, l3_ix_slot_t);
        for (uint32_t i = 0; i < sp->sp_cap; i++) {
            if (o[i].ix > L3_IX_TOMB)
                put_slot(t, mask, o[i].ix);
        }
    }
    *ret_pos = put_slot(t, mask, l3_ix_slot(h, entry));
    uint64_t old = sp->sp_table;
    l3_store__tw64(st, &sp->sp_table, nt);
    l3_store__tw32(st, &sp->sp_cap, (uint32_t)cap);
    l3_store__tw32(st, &sp->sp_tomb, 0);
    l3_store__tw32(st, &sp->sp_count, sp->sp_count + 1);
    if (old)
        l3_store__tx_defer_free(st, old);
    return 0;
}

int l3_store__ix_insert(l3_store_t *st, l3_stripe_t *sp, uint64_t h, uint64_t entry, uint32_t *ret_pos)
{
    if (sp->sp_table == 0 || (uint64_t)(sp->sp_count + sp->sp_tomb + 1) * 4 > (uint64_t)sp->sp_cap * 3)
        return rebuild(st, sp, h, entry, ret_pos);
    l3_ix_slot_t *t = AT(st, sp->sp_table, l3_ix_slot_t);
    uint32_t mask = sp->sp_cap - 1;
    uint32_t i = l3_ix_tag(h) & mask;
    while (t[i].ix > L3_IX_TOMB)
        i = (i + 1) & mask;
    if (t[i].ix == L3_IX_TOMB)
        l3_store__tw32(st, &sp->sp_tomb, sp->sp_tomb - 1);
    l3_store__tw64(st, &t[i].ix, l3_ix_slot(h, entry)); /* one word: readers see all or nothing */
    l3_store__tw32(st, &sp->sp_count, sp->sp_count + 1);
    *ret_pos = i;
    return 0;
}

void l3_store__ix_remove(l3_store_t *st, l3_stripe_t *sp, uint32_t pos)
{
    l3_ix_slot_t *t = AT(st, sp->sp_table, l3_ix_slot_t);
    l3_store__tw64(st, &t[pos].ix, L3_IX_TOMB);
    l3_store__tw32(st, &sp->sp_count, sp->sp_count - 1);
    l3_store__tw32(st, &sp->sp_tomb, sp->sp_tomb + 1);
}
