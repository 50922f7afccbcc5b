/* SPDX-License-Identifier: MIT */
/*
 * measure.c - hash seeds for new documents and the size accounting of stored values.
 *
 * Owns: l3_doc__seed, l3_doc__measure, l3_doc__storage_size, l3_doc_copy_size,
 * l3_doc_breakdown. Shared by
 * the parser (seeds, duplicate-name garbage) and the writers in doc.c, so neither of those
 * files calls the other for it. Runs in any process; the seed pool is per thread.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "packed.h"

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

/* One container node of the breakdown: its node, live and spare entry/item storage. */
static void breakdown_node(const uint8_t *buf, uint32_t node, uint8_t type, l3_doc_breakdown_t *b)
{
    if (type == L3_DOC_ARRAY) {
        const darr_t *a = AT(buf, node, const darr_t);
        b->arr_nodes += sizeof(darr_t);
        b->items += (size_t)a->count * sizeof(dslot_t);
        b->item_slack += (size_t)(a->cap - a->count) * sizeof(dslot_t);
        return;
    }
    const dobj_t *o = AT(buf, node, const dobj_t);
    uint32_t slots = o->hcap ? o->hcap : o->cap;
    b->obj_nodes += sizeof(dobj_t);
    b->entries += (size_t)o->count * sizeof(dentry_t);
    b->entry_slack += (size_t)(slots - o->count) * sizeof(dentry_t);
    if (o->hcap)
        b->order += a8((uint64_t)o->cap * sizeof(uint32_t));
}

static void breakdown_string(const uint8_t *buf, uint32_t off, l3_doc_breakdown_t *b)
{
    const dstr_t *str = AT(buf, off, const dstr_t);
    b->str_heads += sizeof(dstr_t);
    b->str_bytes += str->len;
    b->str_pad += a8(str->cap) - str->len;
}

void l3_doc_breakdown(const uint8_t *buf, l3_doc_breakdown_t *ret)
{
    if (l3_doc__packed(buf)) {
        l3_doc__p_breakdown(buf, ret);
        return;
    }
    memset(ret, 0, sizeof(*ret));
    ret->used = HDR(buf)->dh_used;
    ret->garbage = HDR(buf)->dh_garbage;
    ret->header = sizeof(dhdr_t);
    ret->root = sizeof(dslot_t);
    const dslot_t *r = AT(buf, L3_DOC_ROOT, const dslot_t);
    l3_doc__walk_t w;
    l3_doc__wstep_t st;
    l3_doc__walk_begin(&w, buf, r->val, r->type);
    int ev;
    while ((ev = l3_doc__walk_next(&w, &st)) != L3_W_END && ev != L3_W_DEEP) {
        if (ev == L3_W_CLOSE)
            continue;
        if (st.e && st.e->klen > KEY_INLINE_MAX) {
            ret->names += st.e->klen;
            ret->name_pad += a8(st.e->klen) - st.e->klen;
        }
        if (ev == L3_W_OPEN)
            breakdown_node(buf, (uint32_t)st.val, st.type, ret);
        else if (st.type == L3_DOC_STRING || st.type == L3_DOC_BIGNUM)
            breakdown_string(buf, (uint32_t)st.val, ret);
    }
    size_t sum = ret->header + ret->root + ret->obj_nodes + ret->entries + ret->entry_slack + ret->order +
                 ret->arr_nodes + ret->items + ret->item_slack + ret->str_heads + ret->str_bytes +
                 ret->str_pad + ret->names + ret->name_pad + ret->garbage;
    ret->other = (int64_t)ret->used - (int64_t)sum;
}
