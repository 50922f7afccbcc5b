/* SPDX-License-Identifier: MIT */
/*
 * doc.c - reading and changing documents in place.
 *
 * Owns: path resolution (JSON Pointer and dotted), member and element lookup, the set /
 * delete / incr family, copying values between documents, compaction, statistics and
 * the malloc-backed helpers (hash seeds and size accounting are in measure.c, which the
 * parser shares; this file uses the parser for l3_doc_set_json, never the reverse). Runs in any process on
 * caller-owned buffers; callers serialise writers (see doc.h). Every reading entry point
 * hands a packed document (packed.h) to packed.c; every writing one refuses it (-EINVAL).
 *
 * Invariants kept by every mutation (format.h draws the bytes):
 *  D1 nothing is written before the space check passes: -ENOBUFS changes nothing;
 *  D2 bytes below the used mark are journaled through d->undo before they change, so
 *     replaying the journal backwards restores the document exactly;
 *  D3 dh_used - 48 == live storage + dh_garbage (every byte is either referenced or
 *     counted as garbage);
 *  D4 an int/double/bool overwrite of a slot of the same type is one aligned 8-byte
 *     store and never grows the document.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "packed.h"
#include "l3kv/error.h"

/* ------------------------------------------------------------------ header */

size_t l3_doc_size(const uint8_t *buf)
{
    return HDR(buf)->dh_used;
}

size_t l3_doc_garbage(const uint8_t *buf)
{
    return HDR(buf)->dh_garbage;
}

uint64_t l3_doc_lsn(const uint8_t *buf)
{
    return HDR(buf)->dh_lsn;
}

static inline void jr(l3_doc_t *d, uint32_t base, const void *p, size_t n)
{
    if (d->undo && (const uint8_t *)p < d->buf + base)
        d->undo(d->undo_ctx, p, n);
}

/* Path syntax selected by the L3_DOC_SET_PATH_* flags. */
static inline int path_syntax(unsigned flags)
{
    return (flags & L3_DOC_SET_PATH_POINTER)  ? L3_DOC_PATH_POINTER
           : (flags & L3_DOC_SET_PATH_DOTTED) ? L3_DOC_PATH_DOTTED
                                              : L3_DOC_PATH_AUTO;
}

/* Any change invalidates a seal (the checksum of an exported copy). */
static inline void unseal(l3_doc_t *d)
{
    dhdr_t *h = HDR(d->buf);
    if (L3_UNLIKELY(h->dh_flags & L3_DOC_FLAG_SEALED)) {
        if (d->undo)
            d->undo(d->undo_ctx, h, 8);
        h->dh_flags &= (uint16_t)~L3_DOC_FLAG_SEALED;
    }
}

void l3_doc_set_lsn(l3_doc_t *d, uint64_t lsn)
{
    dhdr_t *h = HDR(d->buf);
    jr(d, h->dh_used, &h->dh_lsn, 8);
    h->dh_lsn = lsn;
    unseal(d);
}

int l3_doc_init(l3_doc_t *d)
{
    if (d->cap < DOC_DATA_OFF) {
        d->need = DOC_DATA_OFF;
        return -ENOBUFS;
    }
    memset(d->buf, 0, DOC_DATA_OFF);
    dhdr_t *h = HDR(d->buf);
    h->dh_magic = L3_DOC_MAGIC;
    h->dh_version = L3_DOC_FORMAT_VERSION;
    h->dh_used = DOC_DATA_OFF;
    h->dh_seed = l3_doc__seed();
    return 0;
}

/* The 8-byte slot payload of an INT, DOUBLE or BOOL scalar. */
static inline uint64_t scalar_word(const l3_doc_scalar_t *v)
{
    uint64_t x;
    if (v->type == L3_DOC_INT)
        x = (uint64_t)v->i;
    else if (v->type == L3_DOC_BOOL)
        x = v->b ? 1 : 0;
    else
        memcpy(&x, &v->d, 8);
    return x;
}

/* D4: overwrite the payload of an existing slot (always below the used mark) with one
 * aligned 8-byte store, journaled first. */
static inline void store_word(l3_doc_t *d, dslot_t *s, uint64_t x)
{
    unseal(d);
    if (d->undo)
        d->undo(d->undo_ctx, &s->val, 8);
    __atomic_store_n(&s->val, x, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ paths */

typedef struct {
    const char *p, *end;
    int pointer;
    char *tmp; /* decoded JSON Pointer token */
    size_t tmpcap;
    char small[256];
} pathit_t;

static int path_begin(pathit_t *it, const char *path, size_t len, int syntax)
{
    it->p = path;
    it->end = path + len;
    it->tmp = it->small;
    it->tmpcap = sizeof(it->small);
    if (syntax == L3_DOC_PATH_AUTO)
        syntax = (len > 0 && path[0] == '/') ? L3_DOC_PATH_POINTER : L3_DOC_PATH_DOTTED;
    it->pointer = syntax == L3_DOC_PATH_POINTER;
    if (it->pointer && len > 0 && path[0] != '/')
        return L3_EPATH;
    if (!it->pointer && len > 0 && path[0] == '.')
        return L3_EPATH;
    return 0;
}

static void path_end(pathit_t *it)
{
    if (it->tmp != it->small)
        free(it->tmp);
}

/* Next token: 1 with tok/tlen, 0 at the end, L3_EPATH / -ENOMEM on error. */
static int path_next(pathit_t *it, const char **tok, size_t *tlen)
{
    if (it->p >= it->end)
        return 0;
    if (it->pointer) {
        const char *s = it->p + 1; /* skip '/' */
        const char *e = memchr(s, '/', (size_t)(it->end - s));
        if (!e)
            e = it->end;
        it->p = e;
        if (!memchr(s, '~', (size_t)(e - s))) {
            *tok = s;
            *tlen = (size_t)(e - s);
            return 1;
        }
        size_t n = (size_t)(e - s);
        if (n > it->tmpcap) {
            char *t = malloc(n);
            if (!t)
                return -ENOMEM;
            if (it->tmp != it->small)
                free(it->tmp);
            it->tmp = t;
            it->tmpcap = n;
        }
        size_t o = 0;
        for (const char *c = s; c < e; c++) {
            if (*c == '~') {
                if (c + 1 >= e || (c[1] != '0' && c[1] != '1'))
                    return L3_EPATH;
                it->tmp[o++] = c[1] == '0' ? '~' : '/';
                c++;
            } else {
                it->tmp[o++] = *c;
            }
        }
        *tok = it->tmp;
        *tlen = o;
        return 1;
    }
    const char *s = it->p;
    const char *e = s;
    while (e < it->end && *e != '.')
        e++;
    if (e == s)
        return L3_EPATH; /* empty segment */
    if (e < it->end && e + 1 == it->end)
        return L3_EPATH; /* trailing dot */
    it->p = e < it->end ? e + 1 : e;
    *tok = s;
    *tlen = (size_t)(e - s);
    return 1;
}

/* A step of a lookup failed with rc: a malformed rest of the path outranks it (a bad
 * path is the caller's error whatever the document holds). */
static int path_fail(pathit_t *it, int rc)
{
    const char *tok;
    size_t tlen;
    int r;
    while ((r = path_next(it, &tok, &tlen)) == 1)
        ;
    return r == L3_EPATH ? L3_EPATH : rc;
}

/* Array index token: digits without leading zeros. 0, or L3_ENOTFOUND for non-numbers. */
static int parse_index(const char *tok, size_t len, uint64_t *ret)
{
    if (len == 0 || len > 10 || (len > 1 && tok[0] == '0'))
        return L3_ENOTFOUND;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned)(tok[i] - '0') > 9)
            return L3_ENOTFOUND;
        v = v * 10 + (uint64_t)(tok[i] - '0');
    }
    *ret = v;
    return 0;
}

/* ------------------------------------------------------------------ lookup */

static inline const dslot_t *SLOT(const uint8_t *buf, uint32_t off)
{
    return AT(buf, off, const dslot_t);
}

/* The n < 8 bytes at p as a zero-extended little-endian word, without a byte loop or a
 * round trip through memory (overlapping loads; the overlap holds the same bytes). */
static inline uint64_t load_small(const uint8_t *p, size_t n)
{
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        return (uint64_t)a | (uint64_t)b << (8 * (n - 4));
    }
    if (n == 0)
        return 0;
    return (uint64_t)p[0] | (uint64_t)p[n >> 1] << (8 * (n >> 1)) | (uint64_t)p[n - 1] << (8 * (n - 1));
}

/* Entry position + 1 of a live member (table slot for hashed objects, insertion index
 * for small ones), or 0. */
static uint32_t obj_index(const uint8_t *buf, const dobj_t *o, const void *key, size_t klen, uint32_t hash)
{
    const dentry_t *ents = AT(buf, o->eoff, const dentry_t);
    if (o->hcap) {
        uint32_t hcap = o->hcap, h = l3_doc__home(hash, hcap);
        /* short names are compared as two words against a zero-padded copy (inline
         * names are stored zero padded) instead of calling memcmp */
        uint64_t k0 = 0;
        uint32_t k1 = 0;
        if (klen <= KEY_INLINE_MAX) {
            const uint8_t *kb = key;
            if (klen >= 8) {
                memcpy(&k0, kb, 8);
                k1 = (uint32_t)load_small(kb + 8, klen - 8);
            } else {
                k0 = load_small(kb, klen);
            }
        }
        /* no entry sits more than L3_DOC_MAX_PROBE past its home (verify, writers) */
        for (uint32_t probes = 0; probes <= L3_DOC_MAX_PROBE && probes < o->hcap; probes++) {
            const dentry_t *e = &ents[h];
            if (e->type == T_EMPTY)
                return 0;
            if (e->hash == hash && e->klen == klen && e->type != T_DELETED) {
                if (klen <= KEY_INLINE_MAX) {
                    uint64_t e0;
                    uint32_t e1;
                    memcpy(&e0, e->kin, 8);
                    memcpy(&e1, e->kin + 8, 4);
                    if (e0 == k0 && e1 == k1)
                        return h + 1;
                } else if (memcmp(buf + e->koff, key, klen) == 0) {
                    return h + 1;
                }
            }
            h = l3_doc__probe_next(h, hcap);
        }
        return 0;
    }
    for (uint32_t i = 0; i < o->n; i++) {
        const dentry_t *e = &ents[i];
        if (e->klen == klen && e->type != T_DELETED && memcmp(l3_doc__ekey(buf, e), key, klen) == 0)
            return i + 1;
    }
    return 0;
}

int l3_doc_obj_find(const uint8_t *buf, uint32_t slot, const char *key, size_t klen, uint32_t *ret_slot)
{
    if (l3_doc__packed(buf))
        return l3_doc__p_obj_find(buf, slot, key, klen, ret_slot);
    const dslot_t *s = SLOT(buf, slot);
    if (s->type != L3_DOC_OBJECT)
        return L3_ETYPE;
    const dobj_t *o = AT(buf, (uint32_t)s->val, const dobj_t);
    if (klen > UINT32_MAX)
        return L3_ENOTFOUND;
    uint32_t hash = o->hcap ? l3_doc__hash(HDR(buf)->dh_seed, key, klen) : 0;
    uint32_t ix = obj_index(buf, o, key, klen, hash);
    if (!ix)
        return L3_ENOTFOUND;
    *ret_slot = o->eoff + (ix - 1) * (uint32_t)sizeof(dentry_t);
    return 0;
}

int l3_doc_arr_at(const uint8_t *buf, uint32_t slot, uint64_t idx, uint32_t *ret_slot)
{
    if (l3_doc__packed(buf))
        return l3_doc__p_arr_at(buf, slot, idx, ret_slot);
    const dslot_t *s = SLOT(buf, slot);
    if (s->type != L3_DOC_ARRAY)
        return L3_ETYPE;
    const darr_t *a = AT(buf, (uint32_t)s->val, const darr_t);
    if (idx >= a->count)
        return L3_ENOTFOUND;
    *ret_slot = a->ioff + (uint32_t)idx * (uint32_t)sizeof(dslot_t);
    return 0;
}

/* One step down from a container slot by a path token. */
static int step(const uint8_t *buf, uint32_t slot, const char *tok, size_t tlen, uint32_t *ret)
{
    uint8_t type;
    if (l3_doc__packed(buf)) { /* a packed slot is a tag byte's offset: not aligned */
        l3_doc_val_t v;
        l3_doc__p_val(buf, slot, &v);
        type = (uint8_t)v.type;
    } else {
        type = SLOT(buf, slot)->type;
    }
    if (type == L3_DOC_OBJECT)
        return l3_doc_obj_find(buf, slot, tok, tlen, ret);
    if (type == L3_DOC_ARRAY) {
        uint64_t idx;
        if (parse_index(tok, tlen, &idx))
            return L3_ENOTFOUND;
        return l3_doc_arr_at(buf, slot, idx, ret);
    }
    return L3_ENOTFOUND;
}

int l3_doc_lookup(const uint8_t *buf, const char *path, size_t len, int syntax, uint32_t *ret_slot)
{
    /* fast path: a single dotted segment (a top-level member name or index) */
    if (syntax != L3_DOC_PATH_POINTER && len > 0 && path[0] != '/' && path[0] != '.' &&
        !memchr(path, '.', len))
        return step(buf, L3_DOC_ROOT, path, len, ret_slot);
    pathit_t it;
    int rc = path_begin(&it, path, len, syntax);
    if (rc)
        return rc;
    uint32_t cur = L3_DOC_ROOT;
    const char *tok;
    size_t tlen;
    while ((rc = path_next(&it, &tok, &tlen)) == 1) {
        rc = step(buf, cur, tok, tlen, &cur);
        if (rc) {
            rc = path_fail(&it, rc);
            break;
        }
    }
    path_end(&it);
    if (rc)
        return rc;
    *ret_slot = cur;
    return 0;
}

void l3_doc_val(const uint8_t *buf, uint32_t slot, l3_doc_val_t *ret)
{
    if (l3_doc__packed(buf)) {
        l3_doc__p_val(buf, slot, ret);
        return;
    }
    const dslot_t *s = SLOT(buf, slot);
    memset(ret, 0, sizeof(*ret));
    ret->type = (l3_doc_type_t)s->type;
    ret->slot = slot;
    switch (s->type) {
    case L3_DOC_BOOL:
        ret->b = s->val != 0;
        break;
    case L3_DOC_INT:
        ret->i = (int64_t)s->val;
        break;
    case L3_DOC_DOUBLE:
        memcpy(&ret->d, &s->val, 8);
        break;
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM: {
        const dstr_t *str = AT(buf, (uint32_t)s->val, const dstr_t);
        ret->str.ptr = (const char *)(str + 1);
        ret->str.len = str->len;
        break;
    }
    case L3_DOC_OBJECT:
        ret->count = AT(buf, (uint32_t)s->val, const dobj_t)->count;
        break;
    case L3_DOC_ARRAY:
        ret->count = AT(buf, (uint32_t)s->val, const darr_t)->count;
        break;
    default:
        break;
    }
}

int l3_doc_get(const uint8_t *buf, const char *path, size_t len, int syntax, l3_doc_val_t *ret)
{
    uint32_t slot;
    int rc = l3_doc_lookup(buf, path, len, syntax, &slot);
    if (rc)
        return rc;
    l3_doc_val(buf, slot, ret);
    return 0;
}

int l3_doc_obj_next(const uint8_t *buf, uint32_t slot, uint32_t *inout_pos, const char **ret_key,
                    uint32_t *ret_klen, uint32_t *ret_slot)
{
    if (l3_doc__packed(buf))
        return l3_doc__p_obj_next(buf, slot, inout_pos, ret_key, ret_klen, ret_slot);
    const dslot_t *s = SLOT(buf, slot);
    if (s->type != L3_DOC_OBJECT)
        return L3_ETYPE;
    const dobj_t *o = AT(buf, (uint32_t)s->val, const dobj_t);
    for (uint32_t i = *inout_pos; i < o->n; i++) {
        uint32_t eo = l3_doc__nth_off(buf, o, i);
        const dentry_t *e = AT(buf, eo, const dentry_t);
        if (e->type == T_DELETED)
            continue;
        *ret_key = (const char *)l3_doc__ekey(buf, e);
        *ret_klen = e->klen;
        *ret_slot = eo;
        *inout_pos = i + 1;
        return 1;
    }
    *inout_pos = o->n;
    return 0;
}

/* ------------------------------------------------------------------ sizes */

/* Bytes copy_value() appends for a value; keep = preserve container capacities. */
static uint64_t compact_size(const uint8_t *buf, uint64_t val, uint8_t type, bool keep)
{
    return l3_doc__measure(buf, val, type, false, keep, NULL);
}

/* ------------------------------------------------------------------ writing helpers */

/* Bump-allocate n bytes (n multiple of 8) past the used mark; space was checked. */
static inline uint32_t bump(l3_doc_t *d, uint64_t n)
{
    dhdr_t *h = HDR(d->buf);
    uint32_t off = h->dh_used;
    h->dh_used = off + (uint32_t)n;
    return off;
}

/* Copy a string block of src into fresh storage of d. */
static uint32_t copy_string(l3_doc_t *d, const uint8_t *src, uint64_t val)
{
    const dstr_t *s = AT(src, (uint32_t)val, const dstr_t);
    uint32_t len = s->len, cap = a8(len);
    uint32_t off = bump(d, 8 + (uint64_t)cap);
    dstr_t *t = AT(d->buf, off, dstr_t);
    t->cap = cap;
    t->len = len;
    memmove(t + 1, AT(src, (uint32_t)val + 8, const uint8_t), len);
    memset((uint8_t *)(t + 1) + len, 0, cap - len);
    return off;
}

/* The capacity a compaction gives the copy of the container node of src: kept, or more
 * for the one container a compaction for growth names (l3_doc_heap_compact_for). */
static uint32_t kept_cap(const l3_doc_t *d, uint32_t node, uint8_t type, uint32_t cap)
{
    return node == d->grow_node && type == d->grow_type ? L3_MAX(cap, d->grow_cap) : cap;
}

/* Lay out an empty copy of the container node of src at fresh storage of d. */
static uint32_t copy_node(l3_doc_t *d, const uint8_t *src, uint32_t node, uint8_t type, bool keep)
{
    if (type == L3_DOC_ARRAY) {
        const darr_t *a = AT(src, node, const darr_t);
        uint32_t cnt = a->count, cap = keep ? kept_cap(d, node, type, a->cap) : a->count;
        uint32_t off = bump(d, sizeof(darr_t) + (uint64_t)cap * sizeof(dslot_t));
        darr_t *t = AT(d->buf, off, darr_t);
        t->count = cnt;
        t->cap = cap;
        t->ioff = cap ? off + (uint32_t)sizeof(darr_t) : 0;
        t->zero = 0;
        if (cap)
            memset(d->buf + off + sizeof(darr_t), 0, (size_t)cap * sizeof(dslot_t));
        return off;
    }
    const dobj_t *o = AT(src, node, const dobj_t);
    uint32_t cap = keep ? kept_cap(d, node, type, o->cap) : o->count;
    uint32_t off = bump(d, l3_doc__obj_bytes(cap));
    l3_doc__obj_layout(d->buf, AT(d->buf, off, dobj_t), off + (uint32_t)sizeof(dobj_t), cap);
    return off;
}

/* Copy a value (from any verified document, possibly d itself) into d, without
 * garbage or tombstones; keep = preserve container capacities (compaction: so that the
 * next insert does not immediately regrow, and regrowth cannot thrash with compaction).
 * Space was checked. Iterative: the source is walked on the walker's bounded stack and
 * the copies of the open containers wait on a parallel one. 0 with *ret_val, or
 * L3_EREHASH when a member would pass the probe bound under d's seed (the appended bytes
 * are then the caller's to drop) - or L3_EDEPTH, which a verified source never gives. */
static int copy_value(l3_doc_t *d, const uint8_t *src, uint64_t val, uint8_t type, bool keep,
                      uint64_t *ret_val)
{
    if (type == L3_DOC_STRING || type == L3_DOC_BIGNUM) {
        *ret_val = copy_string(d, src, val);
        return 0;
    }
    if (type != L3_DOC_OBJECT && type != L3_DOC_ARRAY) {
        *ret_val = val;
        return 0;
    }
    uint32_t seed = HDR(d->buf)->dh_seed;
    bool same_seed = HDR(src)->dh_seed == seed;
    uint32_t dst[L3_DOC_MAX_DEPTH]; /* copies of the open containers */
    l3_doc__walk_t w;
    l3_doc__wstep_t st;
    l3_doc__walk_begin(&w, src, val, type);
    int ev;
    while ((ev = l3_doc__walk_next(&w, &st)) != L3_W_END) {
        if (ev == L3_W_DEEP)
            return L3_EDEPTH;
        if (ev == L3_W_CLOSE)
            continue;
        uint64_t nv = st.val;
        /* (a container's own frame is pushed already: its parent is one further down) */
        unsigned parent = ev == L3_W_OPEN ? w.depth - 1 : w.depth;
        if (ev == L3_W_OPEN)
            nv = dst[w.depth - 1] = copy_node(d, src, (uint32_t)st.val, st.type, keep);
        else if (st.type == L3_DOC_STRING || st.type == L3_DOC_BIGNUM)
            nv = copy_string(d, src, st.val);
        if (parent == 0) {
            *ret_val = nv; /* the root of the copy */
            continue;
        }
        const l3_doc__wframe_t *pf = &w.f[parent - 1];
        uint32_t pnode = dst[parent - 1];
        if (pf->type == L3_DOC_ARRAY) {
            dslot_t *di = AT(
                d->buf, AT(d->buf, pnode, darr_t)->ioff + (pf->i - 1) * (uint32_t)sizeof(dslot_t), dslot_t);
            di->val = nv;
            di->type = st.type;
            continue;
        }
        dentry_t e = *st.e;
        if (e.klen > KEY_INLINE_MAX) {
            uint32_t ko = bump(d, a8(e.klen));
            memmove(d->buf + ko, src + st.e->koff, e.klen);
            memset(d->buf + ko + e.klen, 0, a8(e.klen) - e.klen);
            e.koff = ko;
        }
        if (!same_seed)
            e.hash = l3_doc__hash(seed, l3_doc__ekey(d->buf, &e), e.klen);
        e.val = nv;
        if (!l3_doc__obj_put(d->buf, AT(d->buf, pnode, dobj_t), &e))
            return L3_EREHASH;
    }
    return 0;
}

/* Room check for `extra` appended bytes (D1); the configured limit comes first, so
 * nothing is allocated for a change that could never be kept. */
static int room(l3_doc_t *d, uint64_t extra)
{
    uint64_t need = (uint64_t)HDR(d->buf)->dh_used + extra;
    if (need > DOC_MAX_SIZE)
        return L3_ETOOBIG;
    if (d->limit && need > d->limit)
        return L3_EDOCSIZE;
    if (need > d->cap) {
        d->need = (size_t)need;
        return -ENOBUFS;
    }
    return 0;
}

/* The value being stored: a scalar, or a value of another (or the same) document. */
typedef struct {
    const l3_doc_scalar_t *sc;
    const uint8_t *src;
    uint32_t src_slot;
} newval_t;

static uint8_t nv_type(const newval_t *nv)
{
    return nv->sc ? (uint8_t)nv->sc->type : SLOT(nv->src, nv->src_slot)->type;
}

/* Bytes the new value will append (0 if it can be overwritten in place into `old`), and
 * its nesting depth. */
static uint64_t nv_size(const uint8_t *buf, const newval_t *nv, const dslot_t *old, unsigned *ret_depth)
{
    *ret_depth = 0;
    if (!nv->sc) {
        const dslot_t *s = SLOT(nv->src, nv->src_slot);
        return l3_doc__measure(nv->src, s->val, s->type, false, false, ret_depth);
    }
    switch (nv->sc->type) {
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM:
        if (old && (old->type == L3_DOC_STRING || old->type == L3_DOC_BIGNUM) &&
            AT(buf, (uint32_t)old->val, const dstr_t)->cap >= nv->sc->str.len)
            return 0;
        return 8 + (uint64_t)a8(nv->sc->str.len);
    case L3_DOC_OBJECT:
        *ret_depth = 1;
        return sizeof(dobj_t);
    case L3_DOC_ARRAY:
        *ret_depth = 1;
        return sizeof(darr_t);
    default:
        return 0;
    }
}

/* Materialise the new value into fresh storage; returns (val, type). Space was checked.
 * 0, or L3_EREHASH (a copied object would pass the probe bound; only appended bytes were
 * written). */
static int nv_write(l3_doc_t *d, const newval_t *nv, uint64_t *ret_val, uint8_t *ret_type)
{
    if (!nv->sc) {
        const dslot_t *s = SLOT(nv->src, nv->src_slot);
        uint64_t v = s->val;
        uint8_t t = s->type;
        *ret_type = t;
        return copy_value(d, nv->src, v, t, false, ret_val);
    }
    const l3_doc_scalar_t *sc = nv->sc;
    *ret_type = (uint8_t)sc->type;
    switch (sc->type) {
    case L3_DOC_NULL:
        *ret_val = 0;
        break;
    case L3_DOC_BOOL:
        *ret_val = sc->b ? 1 : 0;
        break;
    case L3_DOC_INT:
        *ret_val = (uint64_t)sc->i;
        break;
    case L3_DOC_DOUBLE:
        memcpy(ret_val, &sc->d, 8);
        break;
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM: {
        uint32_t len = (uint32_t)sc->str.len, cap = a8(len);
        uint32_t off = bump(d, 8 + (uint64_t)cap);
        dstr_t *t = AT(d->buf, off, dstr_t);
        t->cap = cap;
        t->len = len;
        memcpy(t + 1, sc->str.ptr, len);
        memset((uint8_t *)(t + 1) + len, 0, cap - len);
        *ret_val = off;
        break;
    }
    case L3_DOC_OBJECT: {
        uint32_t off = bump(d, sizeof(dobj_t));
        memset(AT(d->buf, off, dobj_t), 0, sizeof(dobj_t));
        *ret_val = off;
        break;
    }
    case L3_DOC_ARRAY: {
        uint32_t off = bump(d, sizeof(darr_t));
        memset(AT(d->buf, off, darr_t), 0, sizeof(darr_t));
        *ret_val = off;
        break;
    }
    default:
        *ret_val = 0;
        break;
    }
    return 0;
}

static int nv_check(const newval_t *nv)
{
    if (!nv->sc)
        return 0;
    if ((unsigned)nv->sc->type >= L3_DOC_TYPE_MAX)
        return L3_ETYPE;
    if (nv->sc->type == L3_DOC_DOUBLE && !isfinite(nv->sc->d))
        return L3_ERANGE; /* JSON has no NaN or infinity (verify refuses them) */
    if ((nv->sc->type == L3_DOC_STRING || nv->sc->type == L3_DOC_BIGNUM) && nv->sc->str.len > UINT32_MAX - 64)
        return L3_ETOOBIG;
    if (nv->sc->type == L3_DOC_STRING &&
        !l3_doc__utf8_valid((const uint8_t *)nv->sc->str.ptr, nv->sc->str.len))
        return L3_ETYPE;
    return 0;
}

/* Overwrite an existing slot with the new value (space checked, header journaled).
 * 0 or L3_EREHASH before anything below the used mark changed. */
static int replace_slot(l3_doc_t *d, uint32_t base, uint32_t slot, const newval_t *nv)
{
    dslot_t *s = AT(d->buf, slot, dslot_t);
    dhdr_t *h = HDR(d->buf);
    if (nv->sc && (nv->sc->type == L3_DOC_STRING || nv->sc->type == L3_DOC_BIGNUM) &&
        (s->type == L3_DOC_STRING || s->type == L3_DOC_BIGNUM)) {
        dstr_t *str = AT(d->buf, (uint32_t)s->val, dstr_t);
        uint32_t len = (uint32_t)nv->sc->str.len;
        if (str->cap >= len) {
            /* in place: the block keeps its capacity */
            jr(d, base, str, 8 + (size_t)L3_MAX(len, str->len));
            memcpy(str + 1, nv->sc->str.ptr, len);
            if (len < str->len)
                memset((uint8_t *)(str + 1) + len, 0, str->len - len);
            str->len = len;
            if (s->type != nv->sc->type) {
                jr(d, base, s, 16);
                s->type = (uint8_t)nv->sc->type;
            }
            return 0;
        }
    }
    uint64_t v;
    uint8_t t;
    int rc = nv_write(d, nv, &v, &t);
    if (rc)
        return rc;
    h->dh_garbage += (uint32_t)l3_doc__storage_size(d->buf, s->val, s->type);
    jr(d, base, s, 16);
    s->val = v;
    s->type = t;
    return 0;
}

/* Grow an object to hold at least one more member; tombstones are dropped. The node
 * stays where it is (its parent points at it); the entries move to new storage. */
static uint32_t obj_grow_cap(const dobj_t *o)
{
    return L3_MAX(4u, (o->count + 1) * 2);
}

static uint64_t obj_grow_bytes(const dobj_t *o)
{
    return l3_doc__obj_bytes(obj_grow_cap(o)) - sizeof(dobj_t);
}

/* Build the grown entry storage of the object at node into fresh storage, described by
 * *ret (the node itself is not touched). 0 or L3_EREHASH. */
static int obj_grow_build(l3_doc_t *d, uint32_t node, dobj_t *ret)
{
    const dobj_t *o = AT(d->buf, node, const dobj_t);
    uint32_t ncap = obj_grow_cap(o);
    uint32_t store = bump(d, obj_grow_bytes(o));
    dobj_t old = *AT(d->buf, node, const dobj_t);
    l3_doc__obj_layout(d->buf, ret, store, ncap);
    for (uint32_t i = 0; i < old.n; i++) {
        const dentry_t *e = l3_doc__nth(d->buf, &old, i);
        if (e->type != T_DELETED && !l3_doc__obj_put(d->buf, ret, e))
            return L3_EREHASH;
    }
    return 0;
}

/* Append a member to the object at node; *ret_slot gets the entry's offset. Everything is
 * built in appended storage first - the value, the name, a grown table - and the object
 * changes only once the new entry's table slot is known to be within the probe bound:
 * 0, or L3_EREHASH with nothing below the used mark changed. */
static int obj_append(l3_doc_t *d, uint32_t base, uint32_t node, const char *key, uint32_t klen,
                      const newval_t *nv, uint32_t *ret_slot)
{
    dentry_t e;
    memset(&e, 0, sizeof(e));
    int rc = nv_write(d, nv, &e.val, &e.type);
    if (rc)
        return rc;
    e.klen = klen;
    if (klen <= KEY_INLINE_MAX) {
        memcpy(e.kin, key, klen);
    } else {
        uint32_t ko = bump(d, a8(klen));
        memcpy(d->buf + ko, key, klen);
        memset(d->buf + ko + klen, 0, a8(klen) - klen);
        e.koff = ko;
    }
    e.hash = l3_doc__hash(HDR(d->buf)->dh_seed, key, klen);
    dobj_t *o = AT(d->buf, node, dobj_t);
    dobj_t grown;
    bool grow = o->n == o->cap;
    if (grow && (rc = obj_grow_build(d, node, &grown)))
        return rc;
    const dobj_t *t = grow ? &grown : o;
    dentry_t *tab = AT(d->buf, t->eoff, dentry_t);
    uint32_t pos = t->n;
    if (t->hcap && (pos = l3_doc__table_free_slot(tab, t->hcap, e.hash)) == UINT32_MAX)
        return L3_EREHASH;
    /* commit */
    if (grow) {
        HDR(d->buf)->dh_garbage += (uint32_t)(l3_doc__obj_bytes(o->cap) - sizeof(dobj_t));
        jr(d, base, o, sizeof(*o));
        *o = grown;
    }
    if (o->hcap) {
        uint32_t *ord = AT(d->buf, o->ooff, uint32_t);
        jr(d, base, &ord[o->n], 4);
        ord[o->n] = pos;
    }
    jr(d, base, &tab[pos], sizeof(dentry_t));
    tab[pos] = e;
    jr(d, base, o, sizeof(*o));
    o->n++;
    o->count++;
    *ret_slot = o->eoff + pos * (uint32_t)sizeof(dentry_t);
    return 0;
}

static uint32_t arr_grow_cap(const darr_t *a)
{
    return L3_MAX(4u, a->cap * 2);
}

/* Insert at idx (<= count) of the array at node; *ret_slot gets the new element's slot.
 * 0 or L3_EREHASH (from the value's copy, before the array changed). */
static int arr_insert(l3_doc_t *d, uint32_t base, uint32_t node, uint32_t idx, const newval_t *nv,
                      uint32_t *ret_slot)
{
    uint64_t v;
    uint8_t t;
    int rc = nv_write(d, nv, &v, &t);
    if (rc)
        return rc;
    darr_t *a = AT(d->buf, node, darr_t);
    if (a->count == a->cap) {
        uint32_t ncap = arr_grow_cap(a);
        uint32_t ioff = bump(d, (uint64_t)ncap * sizeof(dslot_t));
        a = AT(d->buf, node, darr_t);
        dslot_t *n = AT(d->buf, ioff, dslot_t);
        const dslot_t *old = AT(d->buf, a->ioff, const dslot_t);
        memcpy(n, old, (size_t)a->count * sizeof(dslot_t));
        memset(n + a->count, 0, (size_t)(ncap - a->count) * sizeof(dslot_t));
        HDR(d->buf)->dh_garbage += a->cap * (uint32_t)sizeof(dslot_t);
        jr(d, base, a, sizeof(*a));
        a->cap = ncap;
        a->ioff = ioff;
    }
    dslot_t *it = AT(d->buf, a->ioff, dslot_t);
    jr(d, base, &it[idx], (size_t)(a->count - idx + 1) * sizeof(dslot_t));
    memmove(&it[idx + 1], &it[idx], (size_t)(a->count - idx) * sizeof(dslot_t));
    memset(&it[idx], 0, sizeof(dslot_t));
    it[idx].val = v;
    it[idx].type = t;
    jr(d, base, a, sizeof(*a));
    a->count++;
    *ret_slot = a->ioff + idx * (uint32_t)sizeof(dslot_t);
    return 0;
}

/* Resolve all but the last token; *ret_parent = slot of the parent container (or 0 for the root itself). */
typedef struct {
    uint32_t parent;  /* parent slot, 0 when the path is the root */
    const char *last; /* last token */
    size_t last_len;
    unsigned depth; /* tokens in the path: the nesting depth of the value it names */
    pathit_t it;
} target_t;

static int resolve_parent(const uint8_t *buf, const char *path, size_t plen, unsigned flags, target_t *t)
{
    int syntax = path_syntax(flags);
    int rc = path_begin(&t->it, path, plen, syntax);
    if (rc)
        return rc;
    t->parent = 0;
    t->depth = 0;
    uint32_t cur = L3_DOC_ROOT;
    const char *tok;
    size_t tlen;
    while ((rc = path_next(&t->it, &tok, &tlen)) == 1) {
        t->depth++;
        if (t->it.p >= t->it.end) {
            /* the last token: it stays valid (no further path_next) */
            t->last = tok;
            t->last_len = tlen;
            t->parent = cur;
            return 0;
        }
        rc = step(buf, cur, tok, tlen, &cur);
        if (rc)
            return path_fail(&t->it, rc);
    }
    return rc; /* 0: empty path, the root itself (parent 0) */
}

/* Where a new value goes and what it costs, checked before anything is written. */
static int set_check(l3_doc_t *d, const target_t *t, const newval_t *nv, const dslot_t *old, uint64_t extra)
{
    unsigned vdepth;
    uint64_t need = nv_size(d->buf, nv, old, &vdepth) + extra;
    if ((uint64_t)t->depth + vdepth > L3_DOC_MAX_DEPTH)
        return L3_EDEPTH;
    return room(d, need);
}

/* What a set does at its target: replace the value in a slot, add a member to an object,
 * or insert into an array. */
enum { SET_REPLACE, SET_MEMBER, SET_INSERT };

/* Decide it from the resolved target (nothing changes): 0 with *ret_how and *ret_slot
 * (SET_REPLACE) or *ret_idx (SET_INSERT), or the error the set returns. */
static int set_locate(const uint8_t *buf, const target_t *t, unsigned flags, int *ret_how, uint32_t *ret_slot,
                      uint64_t *ret_idx)
{
    *ret_how = SET_REPLACE;
    if (t->parent == 0) {
        *ret_slot = L3_DOC_ROOT;
        return 0;
    }
    const dslot_t *ps = SLOT(buf, t->parent);
    if (ps->type == L3_DOC_OBJECT) {
        if (t->last_len > UINT32_MAX - 64)
            return L3_ETOOBIG;
        if (l3_doc_obj_find(buf, t->parent, t->last, t->last_len, ret_slot) == 0)
            return 0;
        if (flags & L3_DOC_SET_NO_CREATE)
            return L3_ENOTFOUND;
        *ret_how = SET_MEMBER;
        return 0;
    }
    if (ps->type != L3_DOC_ARRAY)
        return L3_ETYPE;
    const darr_t *a = AT(buf, (uint32_t)ps->val, const darr_t);
    uint64_t idx;
    if (t->last_len == 1 && t->last[0] == '-')
        idx = a->count;
    else if (parse_index(t->last, t->last_len, &idx))
        return L3_EPATH;
    if (idx > a->count)
        return L3_ENOTFOUND;
    if (idx == a->count || (flags & L3_DOC_SET_INSERT)) {
        if (flags & L3_DOC_SET_NO_CREATE)
            return L3_ENOTFOUND;
        *ret_how = SET_INSERT;
        *ret_idx = idx;
        return 0;
    }
    *ret_slot = a->ioff + (uint32_t)idx * (uint32_t)sizeof(dslot_t);
    return 0;
}

static int set_common(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const newval_t *nv,
                      uint32_t *ret_slot)
{
    d->grow_node = 0;
    int rc = nv_check(nv);
    if (rc)
        return rc;
    target_t t;
    rc = resolve_parent(d->buf, path, plen, flags, &t);
    if (rc)
        goto out;
    uint8_t *buf = d->buf;
    dhdr_t *h = HDR(buf);
    uint32_t base = h->dh_used, slot = 0;
    uint64_t idx = 0;
    int how;
    if ((rc = set_locate(buf, &t, flags, &how, &slot, &idx)))
        goto out;
    const dslot_t *old = how == SET_REPLACE ? SLOT(buf, slot) : NULL;
    uint64_t extra = 0;
    bool grows = false;
    if (how == SET_MEMBER) {
        const dobj_t *o = AT(buf, (uint32_t)SLOT(buf, t.parent)->val, const dobj_t);
        grows = o->n == o->cap;
        extra = (t.last_len > KEY_INLINE_MAX ? a8(t.last_len) : 0) + (grows ? obj_grow_bytes(o) : 0);
    } else if (how == SET_INSERT) {
        const darr_t *a = AT(buf, (uint32_t)SLOT(buf, t.parent)->val, const darr_t);
        grows = a->count == a->cap;
        extra = grows ? (uint64_t)arr_grow_cap(a) * sizeof(dslot_t) : 0;
    } else {
        uint8_t nt = nv_type(nv);
        if ((flags & L3_DOC_SET_SAME_TYPE) && old->type != nt) {
            rc = L3_ETYPE;
            goto out;
        }
        if (nv->sc && old->type == nt && (nt == L3_DOC_INT || nt == L3_DOC_DOUBLE || nt == L3_DOC_BOOL)) {
            store_word(d, AT(buf, slot, dslot_t), scalar_word(nv->sc)); /* D4 */
            goto done;
        }
    }
    if ((rc = set_check(d, &t, nv, old, extra))) {
        if (rc == L3_EDOCSIZE && grows) { /* l3_doc_heap_compact_for may make room */
            d->grow_node = (uint32_t)SLOT(buf, t.parent)->val;
            d->grow_type = SLOT(buf, t.parent)->type;
        }
        goto out;
    }
    uint8_t saved[16]; /* header bytes a failed build restores (appended bytes are dropped) */
    memcpy(saved, h, sizeof(saved));
    jr(d, base, h, 16);
    h->dh_flags &= (uint16_t)~L3_DOC_FLAG_SEALED;
    uint32_t node = t.parent ? (uint32_t)SLOT(buf, t.parent)->val : 0;
    if (how == SET_MEMBER)
        rc = obj_append(d, base, node, t.last, (uint32_t)t.last_len, nv, &slot);
    else if (how == SET_INSERT)
        rc = arr_insert(d, base, node, (uint32_t)idx, nv, &slot);
    else
        rc = replace_slot(d, base, slot, nv);
    if (rc) {
        /* L3_EREHASH: only appended bytes were written; dropping them restores the document */
        memcpy(h, saved, sizeof(saved));
        goto out;
    }
done:
    if (ret_slot)
        *ret_slot = slot;
    rc = 0;
out:
    path_end(&t.it);
    return rc;
}

int l3_doc_slot_set_int(l3_doc_t *d, uint32_t slot, int64_t v)
{
    if (l3_doc__packed(d->buf))
        return -EINVAL;
    dslot_t *s = AT(d->buf, slot, dslot_t);
    if (s->type != L3_DOC_INT)
        return L3_ETYPE;
    store_word(d, s, (uint64_t)v);
    return 0;
}

int l3_doc_set(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const l3_doc_scalar_t *v,
               uint32_t *ret_slot)
{
    if (l3_doc__packed(d->buf))
        return -EINVAL;
    if (v->type == L3_DOC_DOUBLE && !isfinite(v->d))
        return L3_ERANGE; /* JSON has no NaN or infinity (verify refuses them) */
    if (!(flags & L3_DOC_SET_INSERT) &&
        (v->type == L3_DOC_INT || v->type == L3_DOC_DOUBLE || v->type == L3_DOC_BOOL)) {
        /* hot path (D4): an existing scalar of the same type is one aligned store */
        int syntax = path_syntax(flags);
        uint32_t slot;
        if (l3_doc_lookup(d->buf, path, plen, syntax, &slot) == 0) {
            dslot_t *s = AT(d->buf, slot, dslot_t);
            if (s->type == (uint8_t)v->type) {
                store_word(d, s, scalar_word(v));
                if (ret_slot)
                    *ret_slot = slot;
                return 0;
            }
        }
    }
    newval_t nv = {.sc = v};
    return set_common(d, path, plen, flags, &nv, ret_slot);
}

int l3_doc_set_copy(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const uint8_t *src,
                    uint32_t src_slot, uint32_t *ret_slot)
{
    if (l3_doc__packed(d->buf) || l3_doc__packed(src))
        return -EINVAL;
    newval_t nv = {.src = src, .src_slot = src_slot};
    return set_common(d, path, plen, flags, &nv, ret_slot);
}

int l3_doc_set_json(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const char *json, size_t jlen,
                    l3_doc_error_t *err)
{
    uint8_t *tmp;
    size_t tlen;
    l3_doc_parse_opts_t opts = {.max_bytes = d->limit};
    int rc = l3_doc_from_json(json, jlen, &opts, &tmp, &tlen, err);
    if (rc)
        return rc;
    rc = l3_doc_set_copy(d, path, plen, flags, tmp, L3_DOC_ROOT, NULL);
    free(tmp);
    return rc;
}

int l3_doc_delete(l3_doc_t *d, const char *path, size_t plen, unsigned flags)
{
    if (l3_doc__packed(d->buf))
        return -EINVAL;
    target_t t;
    int rc = resolve_parent(d->buf, path, plen, flags, &t);
    if (rc)
        goto out;
    if (t.parent == 0) {
        rc = L3_EPATH; /* the root cannot be removed */
        goto out;
    }
    uint8_t *buf = d->buf;
    dhdr_t *h = HDR(buf);
    uint32_t base = h->dh_used;
    const dslot_t *ps = SLOT(buf, t.parent);
    if (ps->type == L3_DOC_OBJECT) {
        uint32_t slot;
        if ((rc = l3_doc_obj_find(buf, t.parent, t.last, t.last_len, &slot)))
            goto out;
        dentry_t *e = AT(buf, slot, dentry_t);
        dobj_t *o = AT(buf, (uint32_t)ps->val, dobj_t);
        jr(d, base, h, 16);
        h->dh_flags &= (uint16_t)~L3_DOC_FLAG_SEALED;
        h->dh_garbage += (uint32_t)(l3_doc__storage_size(buf, e->val, e->type) +
                                    (e->klen > KEY_INLINE_MAX ? a8(e->klen) : 0));
        jr(d, base, e, 16);
        e->type = T_DELETED;
        jr(d, base, o, sizeof(*o));
        o->count--;
    } else if (ps->type == L3_DOC_ARRAY) {
        darr_t *a = AT(buf, (uint32_t)ps->val, darr_t);
        uint64_t idx;
        if (parse_index(t.last, t.last_len, &idx) || idx >= a->count) {
            rc = L3_ENOTFOUND;
            goto out;
        }
        dslot_t *it = AT(buf, a->ioff, dslot_t);
        jr(d, base, h, 16);
        h->dh_flags &= (uint16_t)~L3_DOC_FLAG_SEALED;
        h->dh_garbage += (uint32_t)l3_doc__storage_size(buf, it[idx].val, it[idx].type);
        jr(d, base, &it[idx], (size_t)(a->count - idx) * sizeof(dslot_t));
        memmove(&it[idx], &it[idx + 1], (size_t)(a->count - idx - 1) * sizeof(dslot_t));
        memset(&it[a->count - 1], 0, sizeof(dslot_t));
        jr(d, base, a, sizeof(*a));
        a->count--;
    } else {
        rc = L3_ENOTFOUND;
        goto out;
    }
    rc = 0;
out:
    path_end(&t.it);
    return rc;
}

int l3_doc_incr(l3_doc_t *d, const char *path, size_t plen, unsigned flags, int64_t delta, int64_t *ret_new)
{
    if (l3_doc__packed(d->buf))
        return -EINVAL;
    int syntax = path_syntax(flags);
    uint32_t slot;
    int rc = l3_doc_lookup(d->buf, path, plen, syntax, &slot);
    if (rc)
        return rc;
    dslot_t *s = AT(d->buf, slot, dslot_t);
    if (s->type != L3_DOC_INT)
        return L3_ETYPE;
    int64_t nv;
    if (__builtin_add_overflow((int64_t)s->val, delta, &nv))
        return L3_ERANGE;
    store_word(d, s, (uint64_t)nv);
    if (ret_new)
        *ret_new = nv;
    return 0;
}

/* ------------------------------------------------------------------ compaction, stats */

bool l3_doc_should_compact(const uint8_t *buf)
{
    const dhdr_t *h = HDR(buf); /* a packed document has none */
    return h->dh_garbage >= 4096 && (uint64_t)h->dh_garbage * 4 > h->dh_used;
}

size_t l3_doc_compact_bound(const uint8_t *buf)
{
    if (l3_doc__packed(buf))
        return HDR(buf)->dh_used; /* not compacted: l3_doc_compact refuses it */
    const dslot_t *r = SLOT(buf, L3_DOC_ROOT);
    return DOC_DATA_OFF + (size_t)compact_size(buf, r->val, r->type, true);
}

/* The bytes a compaction adds when it gives the container node (type) of buf capacity cap
 * instead of keeping its own. */
static uint64_t grow_delta(const uint8_t *buf, uint32_t node, uint8_t type, uint32_t cap)
{
    if (type == L3_DOC_ARRAY) {
        const darr_t *a = AT(buf, node, const darr_t);
        return cap > a->cap ? (uint64_t)(cap - a->cap) * sizeof(dslot_t) : 0;
    }
    const dobj_t *o = AT(buf, node, const dobj_t);
    return cap > o->cap ? l3_doc__obj_bytes(cap) - l3_doc__obj_bytes(o->cap) : 0;
}

/* Rewrite buf into dst under the given seed; grow (its grow_node, grow_type, grow_cap; node
 * 0 = none) gives one container more room. 0, -ENOBUFS or L3_EREHASH. */
static int compact_seeded(const uint8_t *buf, uint8_t *dst, size_t dst_cap, uint32_t seed,
                          const l3_doc_t *grow, size_t *ret_len)
{
    size_t need = l3_doc_compact_bound(buf);
    if (grow->grow_node)
        need += grow_delta(buf, grow->grow_node, grow->grow_type, grow->grow_cap);
    if (need > dst_cap)
        return -ENOBUFS;
    l3_doc_t d = {.buf = dst,
                  .cap = dst_cap,
                  .grow_node = grow->grow_node,
                  .grow_cap = grow->grow_cap,
                  .grow_type = grow->grow_type};
    memcpy(dst, buf, DOC_DATA_OFF);
    dhdr_t *h = HDR(dst);
    h->dh_flags = 0;
    h->dh_crc = 0;
    h->dh_used = DOC_DATA_OFF;
    h->dh_garbage = 0;
    h->dh_seed = seed;
    h->dh_version = L3_DOC_FORMAT_VERSION; /* also rebuilds an older version (l3_doc_upgrade) */
    const dslot_t *root = SLOT(buf, L3_DOC_ROOT);
    uint64_t v;
    int rc = copy_value(&d, buf, root->val, root->type, true, &v);
    if (rc)
        return rc;
    dslot_t *r = AT(dst, L3_DOC_ROOT, dslot_t);
    memset(r, 0, sizeof(*r));
    r->val = v;
    r->type = root->type;
    *ret_len = h->dh_used;
    return 0;
}

/* Compaction keeps the seed when it can; a table that would pass the probe bound (the
 * same names land in a table without tombstones in another order) takes a fresh seed.
 * A fresh random seed makes that next to impossible; four in a row would mean a broken
 * random source. */
static int compact_retry(const uint8_t *buf, uint8_t *dst, size_t dst_cap, bool fresh, const l3_doc_t *grow,
                         size_t *ret_len)
{
    if (l3_doc__packed(buf))
        return -EINVAL;
    int rc = L3_EREHASH;
    for (int tries = 0; tries < 5 && rc == L3_EREHASH; tries++, fresh = true)
        rc = compact_seeded(buf, dst, dst_cap, fresh ? l3_doc__seed() : HDR(buf)->dh_seed, grow, ret_len);
    return rc == L3_EREHASH ? -EAGAIN : rc;
}

static const l3_doc_t no_growth;

int l3_doc_compact(const uint8_t *buf, uint8_t *dst, size_t dst_cap, size_t *ret_len)
{
    return compact_retry(buf, dst, dst_cap, false, &no_growth, ret_len);
}

int l3_doc_rebuild(const uint8_t *buf, uint8_t *dst, size_t dst_cap, size_t *ret_len)
{
    return compact_retry(buf, dst, dst_cap, true, &no_growth, ret_len);
}

void l3_doc_stats(const uint8_t *buf, l3_doc_stats_t *ret)
{
    if (l3_doc__packed(buf)) {
        l3_doc__p_stats(buf, ret);
        return;
    }
    memset(ret, 0, sizeof(*ret));
    ret->used = HDR(buf)->dh_used;
    ret->garbage = HDR(buf)->dh_garbage;
    const dslot_t *r = SLOT(buf, L3_DOC_ROOT);
    l3_doc__walk_t w;
    l3_doc__wstep_t st;
    l3_doc__walk_begin(&w, buf, r->val, r->type);
    int ev;
    while ((ev = l3_doc__walk_next(&w, &st)) != L3_W_END && ev != L3_W_DEEP) {
        if (ev == L3_W_OPEN) {
            if (st.type == L3_DOC_OBJECT)
                ret->objects++;
            else
                ret->arrays++;
            if (w.depth - 1 > ret->max_depth)
                ret->max_depth = w.depth - 1;
        } else if (ev == L3_W_SCALAR) {
            ret->scalars++;
            if (w.depth > ret->max_depth)
                ret->max_depth = w.depth;
        }
    }
}

/* ------------------------------------------------------------------ heap documents */

int l3_doc_heap_new(l3_doc_t *d, size_t cap)
{
    memset(d, 0, sizeof(*d));
    if (cap < 256)
        cap = 256;
    d->buf = malloc(cap);
    if (!d->buf)
        return -ENOMEM;
    d->cap = cap;
    return l3_doc_init(d);
}

void l3_doc_heap_adopt(l3_doc_t *d, uint8_t *buf, size_t len)
{
    memset(d, 0, sizeof(*d));
    d->buf = buf;
    d->cap = len;
}

int l3_doc_heap_grow(l3_doc_t *d)
{
    size_t ncap = d->cap * 2;
    if (ncap < d->need)
        ncap = d->need;
    if (ncap < 256)
        ncap = 256;
    if (ncap > DOC_MAX_SIZE)
        ncap = DOC_MAX_SIZE;
    if (d->limit && ncap > d->limit && d->need <= d->limit)
        ncap = L3_MAX(d->limit, d->need); /* room() refuses beyond the limit: never allocate past it */
    if (ncap <= d->cap)
        return -ENOMEM;
    uint8_t *n = realloc(d->buf, ncap);
    if (!n)
        return -ENOMEM;
    d->buf = n;
    d->cap = ncap;
    return 0;
}

/* Compact d into a new allocation with room to spare (within the limit); grow as in
 * compact_seeded, its bytes included in bound. */
static int heap_rewrite_grow(l3_doc_t *d, bool fresh, const l3_doc_t *grow, size_t bound)
{
    size_t cap = bound + bound / 4 + 64;
    if (d->limit && cap > d->limit)
        cap = L3_MAX(bound, d->limit);
    uint8_t *n = malloc(cap);
    if (!n)
        return -ENOMEM;
    size_t len;
    int rc = compact_retry(d->buf, n, cap, fresh, grow, &len);
    if (rc) {
        free(n);
        return rc == -ENOBUFS ? -ENOMEM : rc;
    }
    free(d->buf);
    d->buf = n;
    d->cap = cap;
    return 0;
}

static int heap_rewrite(l3_doc_t *d, bool fresh)
{
    return heap_rewrite_grow(d, fresh, &no_growth, l3_doc_compact_bound(d->buf));
}

size_t l3_doc_compact_plan(const uint8_t *buf, const l3_doc_t *failed, l3_doc_t *ret_plan)
{
    memset(ret_plan, 0, sizeof(*ret_plan));
    if (l3_doc__packed(buf))
        return 0;
    size_t bound = l3_doc_compact_bound(buf), limit = failed->limit;
    uint32_t node = failed->grow_node;
    uint8_t type = failed->grow_type;
    if (node) {
        uint32_t count, cap;
        if (type == L3_DOC_ARRAY) {
            count = AT(buf, node, const darr_t)->count;
            cap = AT(buf, node, const darr_t)->cap;
        } else {
            count = AT(buf, node, const dobj_t)->count;
            cap = AT(buf, node, const dobj_t)->cap;
        }
        /* (a table without tombstones may have room already: then nothing grows) */
        const uint64_t want[3] = {(uint64_t)count * 2 + 2, (uint64_t)count + count / 8 + 1,
                                  (uint64_t)count + 1};
        for (int i = 0; i < 3 && !ret_plan->grow_cap; i++) {
            uint64_t c = L3_MAX(want[i], (uint64_t)cap);
            if (c > UINT32_MAX / 64)
                continue;
            uint64_t b = bound + grow_delta(buf, node, type, (uint32_t)c);
            if (b <= DOC_MAX_SIZE && (!limit || b <= limit)) {
                ret_plan->grow_node = node;
                ret_plan->grow_type = type;
                ret_plan->grow_cap = (uint32_t)c;
                bound = (size_t)b;
            }
        }
    }
    if (!ret_plan->grow_node && HDR(buf)->dh_garbage == 0)
        return 0; /* no garbage to drop, no room that fits: nothing to gain */
    return bound;
}

int l3_doc_compact_planned(const uint8_t *buf, const l3_doc_t *plan, bool fresh, uint8_t *dst, size_t dst_cap,
                           size_t *ret_len)
{
    return compact_retry(buf, dst, dst_cap, fresh, plan, ret_len);
}

int l3_doc_heap_compact_for(l3_doc_t *d)
{
    l3_doc_t plan;
    size_t bound = l3_doc_compact_plan(d->buf, d, &plan);
    d->grow_node = 0;
    return bound ? heap_rewrite_grow(d, false, &plan, bound) : L3_EDOCSIZE;
}

int l3_doc_heap_maybe_compact(l3_doc_t *d)
{
    if (!l3_doc_should_compact(d->buf))
        return 0;
    return heap_rewrite(d, false);
}

int l3_doc_heap_reseed(l3_doc_t *d)
{
    if (l3_doc__packed(d->buf))
        return -EINVAL;
    return heap_rewrite(d, true);
}

void l3_doc_heap_free(l3_doc_t *d)
{
    if (!d)
        return;
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
}
