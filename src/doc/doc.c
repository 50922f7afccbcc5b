/* SPDX-License-Identifier: MIT */
/*
 * doc.c - reading and changing documents in place.
 *
 * Owns: path resolution (JSON Pointer and dotted), member and element lookup, the set /
 * delete / incr family, copying values between documents, compaction, statistics and
 * the malloc-backed helpers. Runs in any process on caller-owned buffers; callers
 * serialise writers (see doc.h).
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
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "l3kv/error.h"

/* ------------------------------------------------------------------ header */

uint32_t l3_doc__seed(void)
{
    static uint32_t seed;
    static int have;
    if (!__atomic_load_n(&have, __ATOMIC_ACQUIRE)) {
        uint32_t s;
        l3_random_bytes(&s, sizeof(s));
        __atomic_store_n(&seed, s, __ATOMIC_RELAXED);
        __atomic_store_n(&have, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&seed, __ATOMIC_RELAXED);
}

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
        uint32_t mask = o->hcap - 1, h = hash & mask;
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
        for (uint32_t probes = 0; probes < o->hcap; probes++) {
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
            h = (h + 1) & mask;
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
    const dslot_t *s = SLOT(buf, slot);
    if (s->type == L3_DOC_OBJECT)
        return l3_doc_obj_find(buf, slot, tok, tlen, ret);
    if (s->type == L3_DOC_ARRAY) {
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

uint64_t l3_doc__storage_size(const uint8_t *buf, uint64_t val, uint8_t type)
{
    switch (type) {
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM:
        return 8 + (uint64_t)AT(buf, (uint32_t)val, const dstr_t)->cap;
    case L3_DOC_ARRAY: {
        const darr_t *a = AT(buf, (uint32_t)val, const darr_t);
        uint64_t n = sizeof(darr_t) + (uint64_t)a->cap * sizeof(dslot_t);
        const dslot_t *it = AT(buf, a->ioff, const dslot_t);
        for (uint32_t i = 0; i < a->count; i++)
            n += l3_doc__storage_size(buf, it[i].val, it[i].type);
        return n;
    }
    case L3_DOC_OBJECT: {
        const dobj_t *o = AT(buf, (uint32_t)val, const dobj_t);
        uint64_t n = l3_doc__obj_bytes(o->cap);
        for (uint32_t i = 0; i < o->n; i++) {
            const dentry_t *e = l3_doc__nth(buf, o, i);
            if (e->type == T_DELETED)
                continue;
            if (e->klen > KEY_INLINE_MAX)
                n += a8(e->klen);
            n += l3_doc__storage_size(buf, e->val, e->type);
        }
        return n;
    }
    default:
        return 0;
    }
}

/* Bytes copy_value() appends for a value; keep = preserve container capacities. */
static uint64_t compact_size(const uint8_t *buf, uint64_t val, uint8_t type, bool keep)
{
    switch (type) {
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM:
        return 8 + (uint64_t)a8(AT(buf, (uint32_t)val, const dstr_t)->len);
    case L3_DOC_ARRAY: {
        const darr_t *a = AT(buf, (uint32_t)val, const darr_t);
        uint64_t n = sizeof(darr_t) + (uint64_t)(keep ? a->cap : a->count) * sizeof(dslot_t);
        const dslot_t *it = AT(buf, a->ioff, const dslot_t);
        for (uint32_t i = 0; i < a->count; i++)
            n += compact_size(buf, it[i].val, it[i].type, keep);
        return n;
    }
    case L3_DOC_OBJECT: {
        const dobj_t *o = AT(buf, (uint32_t)val, const dobj_t);
        uint32_t cap = keep ? o->cap : o->count;
        uint64_t n = l3_doc__obj_bytes(cap);
        for (uint32_t i = 0; i < o->n; i++) {
            const dentry_t *e = l3_doc__nth(buf, o, i);
            if (e->type == T_DELETED)
                continue;
            if (e->klen > KEY_INLINE_MAX)
                n += a8(e->klen);
            n += compact_size(buf, e->val, e->type, keep);
        }
        return n;
    }
    default:
        return 0;
    }
}

/* Bytes a copy of the value at slot appends (no capacity kept). */
static uint64_t copy_size(const uint8_t *buf, uint32_t slot)
{
    const dslot_t *s = SLOT(buf, slot);
    return compact_size(buf, s->val, s->type, false);
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

/* Copy a value (from any verified document, possibly d itself) into d, without
 * garbage or tombstones; keep = preserve container capacities (compaction: so that the
 * next insert does not immediately regrow, and regrowth cannot thrash with compaction). */
static uint64_t copy_value(l3_doc_t *d, const uint8_t *src, uint64_t val, uint8_t type, bool keep)
{
    switch (type) {
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM: {
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
    case L3_DOC_ARRAY: {
        const darr_t *a = AT(src, (uint32_t)val, const darr_t);
        uint32_t cnt = a->count, sio = a->ioff, cap = keep ? a->cap : a->count;
        uint32_t off = bump(d, sizeof(darr_t) + (uint64_t)cap * sizeof(dslot_t));
        darr_t *t = AT(d->buf, off, darr_t);
        t->count = cnt;
        t->cap = cap;
        t->ioff = cap ? off + (uint32_t)sizeof(darr_t) : 0;
        if (cap > cnt)
            memset(d->buf + off + sizeof(darr_t) + (uint64_t)cnt * sizeof(dslot_t), 0,
                   (uint64_t)(cap - cnt) * sizeof(dslot_t));
        t->zero = 0;
        for (uint32_t i = 0; i < cnt; i++) {
            const dslot_t *si = AT(src, sio + i * (uint32_t)sizeof(dslot_t), const dslot_t);
            uint64_t v = si->val;
            uint8_t ty = si->type;
            uint64_t nv = copy_value(d, src, v, ty, keep);
            dslot_t *di = AT(d->buf, off + (uint32_t)sizeof(darr_t) + i * (uint32_t)sizeof(dslot_t), dslot_t);
            memset(di, 0, sizeof(*di));
            di->val = nv;
            di->type = ty;
        }
        return off;
    }
    case L3_DOC_OBJECT: {
        const dobj_t *o = AT(src, (uint32_t)val, const dobj_t);
        dobj_t so = *o; /* src may be d->buf: read the source node before any bump */
        uint32_t cap = keep ? so.cap : so.count;
        uint32_t seed = HDR(d->buf)->dh_seed;
        bool same_seed = HDR(src)->dh_seed == seed;
        uint32_t off = bump(d, l3_doc__obj_bytes(cap));
        l3_doc__obj_layout(d->buf, AT(d->buf, off, dobj_t), off + (uint32_t)sizeof(dobj_t), cap);
        for (uint32_t i = 0; i < so.n; i++) {
            const dentry_t *se = l3_doc__nth(src, &so, i);
            if (se->type == T_DELETED)
                continue;
            dentry_t e = *se;
            if (e.klen > KEY_INLINE_MAX) {
                uint32_t ko = bump(d, a8(e.klen));
                memmove(d->buf + ko, src + se->koff, e.klen);
                memset(d->buf + ko + e.klen, 0, a8(e.klen) - e.klen);
                e.koff = ko;
            }
            if (!same_seed)
                e.hash = l3_doc__hash(seed, l3_doc__ekey(d->buf, &e), e.klen);
            e.val = copy_value(d, src, se->val, se->type, keep);
            l3_doc__obj_put(d->buf, AT(d->buf, off, dobj_t), &e);
        }
        return off;
    }
    default:
        return val;
    }
}

/* Room check for `extra` appended bytes (D1). */
static int room(l3_doc_t *d, uint64_t extra)
{
    uint64_t need = (uint64_t)HDR(d->buf)->dh_used + extra;
    if (need > DOC_MAX_SIZE)
        return L3_ETOOBIG;
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

/* Bytes the new value will append (0 if it can be overwritten in place into `old`). */
static uint64_t nv_size(const uint8_t *buf, const newval_t *nv, const dslot_t *old)
{
    if (!nv->sc)
        return copy_size(nv->src, nv->src_slot);
    switch (nv->sc->type) {
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM:
        if (old && (old->type == L3_DOC_STRING || old->type == L3_DOC_BIGNUM) &&
            AT(buf, (uint32_t)old->val, const dstr_t)->cap >= nv->sc->str.len)
            return 0;
        return 8 + (uint64_t)a8(nv->sc->str.len);
    case L3_DOC_OBJECT:
        return sizeof(dobj_t);
    case L3_DOC_ARRAY:
        return sizeof(darr_t);
    default:
        return 0;
    }
}

/* Materialise the new value into fresh storage; returns (val, type). Space was checked. */
static void nv_write(l3_doc_t *d, const newval_t *nv, uint64_t *ret_val, uint8_t *ret_type)
{
    if (!nv->sc) {
        const dslot_t *s = SLOT(nv->src, nv->src_slot);
        uint64_t v = s->val;
        uint8_t t = s->type;
        *ret_val = copy_value(d, nv->src, v, t, false);
        *ret_type = t;
        return;
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
}

static int nv_check(const newval_t *nv)
{
    if (!nv->sc)
        return 0;
    if ((unsigned)nv->sc->type >= L3_DOC_TYPE_MAX)
        return L3_ETYPE;
    if ((nv->sc->type == L3_DOC_STRING || nv->sc->type == L3_DOC_BIGNUM) && nv->sc->str.len > UINT32_MAX - 64)
        return L3_ETOOBIG;
    if (nv->sc->type == L3_DOC_STRING && !l3_doc__utf8_valid((const uint8_t *)nv->sc->str.ptr, nv->sc->str.len))
        return L3_ETYPE;
    return 0;
}

/* Overwrite an existing slot with the new value (space checked, header journaled). */
static void replace_slot(l3_doc_t *d, uint32_t base, uint32_t slot, const newval_t *nv)
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
            return;
        }
    }
    uint64_t v;
    uint8_t t;
    nv_write(d, nv, &v, &t);
    h->dh_garbage += (uint32_t)l3_doc__storage_size(d->buf, s->val, s->type);
    jr(d, base, s, 16);
    s->val = v;
    s->type = t;
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

static void obj_grow(l3_doc_t *d, uint32_t base, uint32_t node)
{
    dobj_t *o = AT(d->buf, node, dobj_t);
    uint32_t ncap = obj_grow_cap(o);
    uint32_t store = bump(d, obj_grow_bytes(o));
    o = AT(d->buf, node, dobj_t);
    dobj_t old = *o;
    jr(d, base, o, sizeof(*o));
    l3_doc__obj_layout(d->buf, o, store, ncap);
    for (uint32_t i = 0; i < old.n; i++) {
        const dentry_t *e = l3_doc__nth(d->buf, &old, i);
        if (e->type != T_DELETED)
            l3_doc__obj_put(d->buf, o, e);
    }
    HDR(d->buf)->dh_garbage += (uint32_t)(l3_doc__obj_bytes(old.cap) - sizeof(dobj_t));
}

/* Append a member to the object at node; returns the entry's slot offset. */
static uint32_t obj_append(l3_doc_t *d, uint32_t base, uint32_t node, const char *key, uint32_t klen,
                           const newval_t *nv)
{
    dobj_t *o = AT(d->buf, node, dobj_t);
    if (o->n == o->cap)
        obj_grow(d, base, node);
    dentry_t e;
    memset(&e, 0, sizeof(e));
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
    nv_write(d, nv, &e.val, &e.type);
    o = AT(d->buf, node, dobj_t);
    dentry_t *tab = AT(d->buf, o->eoff, dentry_t);
    uint32_t pos = o->n;
    if (o->hcap) {
        pos = l3_doc__table_free_slot(tab, o->hcap, e.hash);
        uint32_t *ord = AT(d->buf, o->ooff, uint32_t);
        jr(d, base, &ord[o->n], 4);
        ord[o->n] = pos;
    }
    jr(d, base, &tab[pos], sizeof(dentry_t));
    tab[pos] = e;
    jr(d, base, o, sizeof(*o));
    o->n++;
    o->count++;
    return o->eoff + pos * (uint32_t)sizeof(dentry_t);
}

static uint32_t arr_grow_cap(const darr_t *a)
{
    return L3_MAX(4u, a->cap * 2);
}

/* Insert at idx (<= count) of the array at node; returns the new element's slot. */
static uint32_t arr_insert(l3_doc_t *d, uint32_t base, uint32_t node, uint32_t idx, const newval_t *nv)
{
    uint64_t v;
    uint8_t t;
    nv_write(d, nv, &v, &t);
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
    return a->ioff + idx * (uint32_t)sizeof(dslot_t);
}

/* Resolve all but the last token; *ret_parent = slot of the parent container (or 0 for the root itself). */
typedef struct {
    uint32_t parent;  /* parent slot, 0 when the path is the root */
    const char *last; /* last token */
    size_t last_len;
    pathit_t it;
} target_t;

static int resolve_parent(const uint8_t *buf, const char *path, size_t plen, unsigned flags, target_t *t)
{
    int syntax = path_syntax(flags);
    int rc = path_begin(&t->it, path, plen, syntax);
    if (rc)
        return rc;
    t->parent = 0;
    uint32_t cur = L3_DOC_ROOT;
    const char *tok;
    size_t tlen;
    while ((rc = path_next(&t->it, &tok, &tlen)) == 1) {
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

static int set_common(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const newval_t *nv,
                      uint32_t *ret_slot)
{
    int rc = nv_check(nv);
    if (rc)
        return rc;
    target_t t;
    rc = resolve_parent(d->buf, path, plen, flags, &t);
    if (rc)
        goto out;
    uint8_t *buf = d->buf;
    dhdr_t *h = HDR(buf);
    uint32_t base = h->dh_used;
    uint32_t slot = 0;
    if (t.parent == 0) {
        slot = L3_DOC_ROOT;
    } else {
        const dslot_t *ps = SLOT(buf, t.parent);
        if (ps->type == L3_DOC_OBJECT) {
            if (t.last_len > UINT32_MAX - 64) {
                rc = L3_ETOOBIG;
                goto out;
            }
            if (l3_doc_obj_find(buf, t.parent, t.last, t.last_len, &slot) != 0)
                slot = 0;
            if (!slot) {
                if (flags & L3_DOC_SET_NO_CREATE) {
                    rc = L3_ENOTFOUND;
                    goto out;
                }
                const dobj_t *o = AT(buf, (uint32_t)ps->val, const dobj_t);
                uint64_t need = nv_size(buf, nv, NULL) + (t.last_len > KEY_INLINE_MAX ? a8(t.last_len) : 0) +
                                (o->n == o->cap ? obj_grow_bytes(o) : 0);
                if ((rc = room(d, need)))
                    goto out;
                jr(d, base, h, 16);
                h->dh_flags &= (uint16_t)~L3_DOC_FLAG_SEALED;
                slot = obj_append(d, base, (uint32_t)ps->val, t.last, (uint32_t)t.last_len, nv);
                goto done;
            }
        } else if (ps->type == L3_DOC_ARRAY) {
            const darr_t *a = AT(buf, (uint32_t)ps->val, const darr_t);
            uint64_t idx;
            if (t.last_len == 1 && t.last[0] == '-') {
                idx = a->count;
            } else if (parse_index(t.last, t.last_len, &idx)) {
                rc = L3_EPATH;
                goto out;
            }
            if (idx > a->count) {
                rc = L3_ENOTFOUND;
                goto out;
            }
            if (idx == a->count || (flags & L3_DOC_SET_INSERT)) {
                if (flags & L3_DOC_SET_NO_CREATE) {
                    rc = L3_ENOTFOUND;
                    goto out;
                }
                uint64_t need = nv_size(buf, nv, NULL) +
                                (a->count == a->cap ? (uint64_t)arr_grow_cap(a) * sizeof(dslot_t) : 0);
                if ((rc = room(d, need)))
                    goto out;
                jr(d, base, h, 16);
                h->dh_flags &= (uint16_t)~L3_DOC_FLAG_SEALED;
                slot = arr_insert(d, base, (uint32_t)ps->val, (uint32_t)idx, nv);
                goto done;
            }
            slot = a->ioff + (uint32_t)idx * (uint32_t)sizeof(dslot_t);
        } else {
            rc = L3_ETYPE;
            goto out;
        }
    }
    /* replace an existing value */
    {
        const dslot_t *old = SLOT(buf, slot);
        if ((flags & L3_DOC_SET_SAME_TYPE) && old->type != nv_type(nv)) {
            rc = L3_ETYPE;
            goto out;
        }
        uint8_t nt = nv_type(nv);
        if (nv->sc && old->type == nt && (nt == L3_DOC_INT || nt == L3_DOC_DOUBLE || nt == L3_DOC_BOOL)) {
            store_word(d, AT(buf, slot, dslot_t), scalar_word(nv->sc)); /* D4 */
            goto done;
        }
        if ((rc = room(d, nv_size(buf, nv, old))))
            goto out;
        jr(d, base, h, 16);
        h->dh_flags &= (uint16_t)~L3_DOC_FLAG_SEALED;
        replace_slot(d, base, slot, nv);
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
    dslot_t *s = AT(d->buf, slot, dslot_t);
    if (s->type != L3_DOC_INT)
        return L3_ETYPE;
    store_word(d, s, (uint64_t)v);
    return 0;
}

int l3_doc_set(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const l3_doc_scalar_t *v,
               uint32_t *ret_slot)
{
    if (!(flags & L3_DOC_SET_INSERT) && (v->type == L3_DOC_INT || v->type == L3_DOC_DOUBLE || v->type == L3_DOC_BOOL)) {
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
    newval_t nv = {.src = src, .src_slot = src_slot};
    return set_common(d, path, plen, flags, &nv, ret_slot);
}

int l3_doc_set_json(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const char *json, size_t jlen,
                    l3_doc_error_t *err)
{
    uint8_t *tmp;
    size_t tlen;
    int rc = l3_doc_from_json(json, jlen, NULL, &tmp, &tlen, err);
    if (rc)
        return rc;
    rc = l3_doc_set_copy(d, path, plen, flags, tmp, L3_DOC_ROOT, NULL);
    free(tmp);
    return rc;
}

int l3_doc_delete(l3_doc_t *d, const char *path, size_t plen, unsigned flags)
{
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
    const dhdr_t *h = HDR(buf);
    return h->dh_garbage >= 4096 && (uint64_t)h->dh_garbage * 4 > h->dh_used;
}

size_t l3_doc_compact_bound(const uint8_t *buf)
{
    const dslot_t *r = SLOT(buf, L3_DOC_ROOT);
    return DOC_DATA_OFF + (size_t)compact_size(buf, r->val, r->type, true);
}

int l3_doc_compact(const uint8_t *buf, uint8_t *dst, size_t dst_cap, size_t *ret_len)
{
    size_t need = l3_doc_compact_bound(buf);
    if (need > dst_cap)
        return -ENOBUFS;
    l3_doc_t d = {.buf = dst, .cap = dst_cap};
    memcpy(dst, buf, DOC_DATA_OFF);
    dhdr_t *h = HDR(dst);
    h->dh_flags = 0;
    h->dh_crc = 0;
    h->dh_used = DOC_DATA_OFF;
    h->dh_garbage = 0;
    const dslot_t *root = SLOT(buf, L3_DOC_ROOT);
    uint64_t v = copy_value(&d, buf, root->val, root->type, true);
    dslot_t *r = AT(dst, L3_DOC_ROOT, dslot_t);
    memset(r, 0, sizeof(*r));
    r->val = v;
    r->type = root->type;
    *ret_len = h->dh_used;
    return 0;
}

static void stats_walk(const uint8_t *buf, uint64_t val, uint8_t type, size_t depth, l3_doc_stats_t *st)
{
    if (depth > st->max_depth)
        st->max_depth = depth;
    if (type == L3_DOC_OBJECT) {
        st->objects++;
        const dobj_t *o = AT(buf, (uint32_t)val, const dobj_t);
        for (uint32_t i = 0; i < o->n; i++) {
            const dentry_t *e = l3_doc__nth(buf, o, i);
            if (e->type != T_DELETED)
                stats_walk(buf, e->val, e->type, depth + 1, st);
        }
    } else if (type == L3_DOC_ARRAY) {
        st->arrays++;
        const darr_t *a = AT(buf, (uint32_t)val, const darr_t);
        const dslot_t *it = AT(buf, a->ioff, const dslot_t);
        for (uint32_t i = 0; i < a->count; i++)
            stats_walk(buf, it[i].val, it[i].type, depth + 1, st);
    } else {
        st->scalars++;
    }
}

void l3_doc_stats(const uint8_t *buf, l3_doc_stats_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->used = HDR(buf)->dh_used;
    ret->garbage = HDR(buf)->dh_garbage;
    const dslot_t *r = SLOT(buf, L3_DOC_ROOT);
    stats_walk(buf, r->val, r->type, 0, ret);
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
    if (ncap <= d->cap)
        return -ENOMEM;
    uint8_t *n = realloc(d->buf, ncap);
    if (!n)
        return -ENOMEM;
    d->buf = n;
    d->cap = ncap;
    return 0;
}

int l3_doc_heap_maybe_compact(l3_doc_t *d)
{
    if (!l3_doc_should_compact(d->buf))
        return 0;
    size_t bound = l3_doc_compact_bound(d->buf);
    size_t cap = bound + bound / 4 + 64;
    uint8_t *n = malloc(cap);
    if (!n)
        return -ENOMEM;
    size_t len;
    int rc = l3_doc_compact(d->buf, n, cap, &len);
    if (rc) {
        free(n);
        return rc;
    }
    free(d->buf);
    d->buf = n;
    d->cap = cap;
    return 0;
}

void l3_doc_heap_free(l3_doc_t *d)
{
    if (!d)
        return;
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
}
