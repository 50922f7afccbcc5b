/* SPDX-License-Identifier: MIT */
/*
 * measure.c - hash seeds for new documents and the size accounting of stored values.
 *
 * Owns: l3_doc__seed, l3_doc__measure, l3_doc__storage_size, l3_doc_copy_size. Shared by
 * the parser (seeds, duplicate-name garbage) and the writers in doc.c, so neither of those
 * files calls the other for it. Runs in any process; the seed pool is per thread.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"

/* The seed pool is per thread; a forked child must not replay its parent's pool. Only the
 * forking thread exists in the child, so the child handler empties that thread's pool:
 * no getpid() (a system call) per document. */
static __thread uint32_t seed_pool[32];
static __thread unsigned seed_left;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void seed_child(void)
{
    seed_left = 0;
}

static void seed_register(void)
{
    (void)pthread_atfork(NULL, NULL, seed_child);
}

uint32_t l3_doc__seed(void)
{
    /* one getrandom per 32 documents */
    if (seed_left == 0) {
        pthread_once(&seed_once, seed_register);
        l3_random_bytes(seed_pool, sizeof(seed_pool));
        seed_left = L3_ARRAY_SIZE(seed_pool);
    }
    return seed_pool[--seed_left];
}

/* Bytes of one container node with its entry/item storage; keep = the allocated
 * capacity (else what a copy without spare room takes). */
static uint64_t node_bytes(const uint8_t *buf, uint32_t node, uint8_t type, bool keep)
{
    if (type == L3_DOC_ARRAY) {
        const darr_t *a = AT(buf, node, const darr_t);
        return sizeof(darr_t) + (uint64_t)(keep ? a->cap : a->count) * sizeof(dslot_t);
    }
    const dobj_t *o = AT(buf, node, const dobj_t);
    return l3_doc__obj_bytes(keep ? o->cap : o->count);
}

/* Walk a value and add up its storage outside its slot: alloc = the allocated capacities
 * (what becomes garbage when it is dropped), else what copy_value() appends (keep =
 * containers keep their capacity, as compaction does). *ret_depth (may be NULL) gets the
 * value's nesting depth. Iterative (the walker's bounded stack). */
uint64_t l3_doc__measure(const uint8_t *buf, uint64_t val, uint8_t type, bool alloc, bool keep,
                         unsigned *ret_depth)
{
    if (type != L3_DOC_OBJECT && type != L3_DOC_ARRAY) {
        if (ret_depth)
            *ret_depth = 0;
        if (type != L3_DOC_STRING && type != L3_DOC_BIGNUM)
            return 0;
        const dstr_t *str = AT(buf, (uint32_t)val, const dstr_t);
        return 8 + (uint64_t)(alloc ? str->cap : a8(str->len));
    }
    l3_doc__walk_t w;
    l3_doc__wstep_t st;
    uint64_t n = 0;
    unsigned maxd = 0;
    l3_doc__walk_begin(&w, buf, val, type);
    while (l3_doc__walk_next(&w, &st) != L3_W_END) {
        if (st.ev == L3_W_CLOSE)
            continue;
        if (st.e && st.e->klen > KEY_INLINE_MAX)
            n += a8(st.e->klen);
        if (st.ev == L3_W_OPEN) {
            n += node_bytes(buf, (uint32_t)st.val, st.type, alloc || keep);
            if (w.depth > maxd)
                maxd = w.depth;
        } else if (st.type == L3_DOC_STRING || st.type == L3_DOC_BIGNUM) {
            const dstr_t *str = AT(buf, (uint32_t)st.val, const dstr_t);
            n += 8 + (uint64_t)(alloc ? str->cap : a8(str->len));
        }
    }
    if (ret_depth)
        *ret_depth = maxd;
    return n;
}

uint64_t l3_doc__storage_size(const uint8_t *buf, uint64_t val, uint8_t type)
{
    return l3_doc__measure(buf, val, type, true, true, NULL);
}

size_t l3_doc_copy_size(const uint8_t *buf, uint32_t slot, unsigned *ret_depth)
{
    const dslot_t *s = AT(buf, slot, const dslot_t);
    return (size_t)l3_doc__measure(buf, s->val, s->type, false, false, ret_depth);
}
