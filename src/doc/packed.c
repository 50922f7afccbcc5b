/* SPDX-License-Identifier: MIT */
/*
 * packed.c - reading the packed form of small documents (layout in packed.h).
 *
 * Owns: l3_doc_is_packed and the packed side of the reading API (value, member and element
 * lookup, member iteration), stats and byte breakdown. Depends on nothing else of src/doc,
 * so every other part can dispatch to it. Like the full form's readers these trust a
 * verified document; pack.c builds and verifies one.
 */
#include "packed.h"

#include <string.h>

#include "l3kv/base.h"
#include "l3kv/error.h"

/* ------------------------------------------------------------------ decoding (trusted) */

bool l3_doc_is_packed(const uint8_t *buf)
{
    return l3_doc__packed(buf);
}

/* ------------------------------------------------------------------ reading */

void l3_doc__p_val(const uint8_t *buf, uint32_t slot, l3_doc_val_t *ret)
{
    l3_doc__pval_t v;
    l3_doc__p_decode(buf, slot, &v);
    memset(ret, 0, sizeof(*ret));
    ret->type = (l3_doc_type_t)v.type;
    ret->slot = slot;
    switch (v.type) {
    case L3_DOC_BOOL:
        ret->b = v.i != 0;
        break;
    case L3_DOC_INT:
        ret->i = v.i;
        break;
    case L3_DOC_DOUBLE:
        ret->d = v.d;
        break;
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM:
        ret->str.ptr = (const char *)v.s;
        ret->str.len = v.slen;
        break;
    case L3_DOC_OBJECT:
    case L3_DOC_ARRAY:
        ret->count = v.count;
        break;
    default:
        break;
    }
}

int l3_doc__p_obj_find(const uint8_t *buf, uint32_t slot, const char *key, size_t klen, uint32_t *ret_slot)
{
    l3_doc__pval_t o;
    l3_doc__p_decode(buf, slot, &o);
    if (o.type != L3_DOC_OBJECT)
        return L3_ETYPE;
    for (uint32_t off = o.body; off < o.end;) {
        const uint8_t *name;
        uint32_t nl, vo = l3_doc__p_name(buf, off, &name, &nl);
        if (nl == klen && memcmp(name, key, klen) == 0) {
            *ret_slot = vo;
            return 0;
        }
        off = l3_doc__p_skip(buf, vo);
    }
    return L3_ENOTFOUND;
}

bool l3_doc__p_named(const uint8_t *buf, uint32_t body, uint32_t before, const uint8_t *name, uint32_t nl)
{
    for (uint32_t off = body; off < before;) {
        const uint8_t *n;
        uint32_t l, vo = l3_doc__p_name(buf, off, &n, &l);
        if (l == nl && memcmp(n, name, nl) == 0)
            return true;
        off = l3_doc__p_skip(buf, vo);
    }
    return false;
}

int l3_doc__p_arr_at(const uint8_t *buf, uint32_t slot, uint64_t idx, uint32_t *ret_slot)
{
    l3_doc__pval_t a;
    l3_doc__p_decode(buf, slot, &a);
    if (a.type != L3_DOC_ARRAY)
        return L3_ETYPE;
    if (idx >= a.count)
        return L3_ENOTFOUND;
    uint32_t off = a.body;
    for (uint64_t i = 0; i < idx; i++)
        off = l3_doc__p_skip(buf, off);
    *ret_slot = off;
    return 0;
}

int l3_doc__p_obj_next(const uint8_t *buf, uint32_t slot, uint32_t *inout_pos, const char **ret_key,
                       uint32_t *ret_klen, uint32_t *ret_slot)
{
    l3_doc__pval_t o;
    l3_doc__p_decode(buf, slot, &o);
    if (o.type != L3_DOC_OBJECT)
        return L3_ETYPE;
    /* the position is the offset of the next member (0: the first) */
    uint32_t off = *inout_pos ? *inout_pos : o.body;
    if (off >= o.end) {
        *inout_pos = o.end;
        return 0;
    }
    const uint8_t *name;
    uint32_t vo = l3_doc__p_name(buf, off, &name, ret_klen);
    *ret_key = (const char *)name;
    *ret_slot = vo;
    *inout_pos = l3_doc__p_skip(buf, vo);
    return 1;
}

/* ------------------------------------------------------------------ statistics */

/* Walk a verified packed document: fn(ctx, off, depth, name_bytes, name_frame) per value. */
typedef void (*pvisit_fn)(void *ctx, uint32_t off, uint32_t next, unsigned depth, const l3_doc__pval_t *v,
                          uint32_t name_frame, uint32_t name_bytes);

static void p_visit(const uint8_t *buf, pvisit_fn fn, void *ctx)
{
    uint32_t ends[L3_DOC_MAX_DEPTH];
    bool object[L3_DOC_MAX_DEPTH];
    unsigned depth = 0;
    uint32_t off = L3_DOC_ROOT;
    for (bool root = true;; root = false) {
        while (!root && depth > 0 && off >= ends[depth - 1])
            depth--;
        if (!root && depth == 0)
            return;
        uint32_t nf = 0, nb = 0;
        if (depth > 0 && object[depth - 1]) {
            const uint8_t *name;
            uint32_t start = off;
            off = l3_doc__p_name(buf, off, &name, &nb);
            nf = off - start - nb;
        }
        l3_doc__pval_t v;
        uint32_t next = l3_doc__p_decode(buf, off, &v);
        fn(ctx, off, next, depth, &v, nf, nb);
        if ((v.type == L3_DOC_OBJECT || v.type == L3_DOC_ARRAY) && depth < L3_DOC_MAX_DEPTH) {
            ends[depth] = v.end;
            object[depth++] = v.type == L3_DOC_OBJECT;
            off = v.body;
        } else {
            off = next;
        }
    }
}

static void stat_visit(void *ctx, uint32_t off, uint32_t next, unsigned depth, const l3_doc__pval_t *v,
                       uint32_t nf, uint32_t nb)
{
    (void)off, (void)next, (void)nf, (void)nb;
    l3_doc_stats_t *s = ctx;
    if (v->type == L3_DOC_OBJECT)
        s->objects++;
    else if (v->type == L3_DOC_ARRAY)
        s->arrays++;
    else
        s->scalars++;
    if (depth > s->max_depth)
        s->max_depth = depth;
}

void l3_doc__p_stats(const uint8_t *buf, l3_doc_stats_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->used = HDR(buf)->dh_used;
    p_visit(buf, stat_visit, ret);
}

static void bytes_visit(void *ctx, uint32_t off, uint32_t next, unsigned depth, const l3_doc__pval_t *v,
                        uint32_t nf, uint32_t nb)
{
    (void)depth;
    l3_doc_breakdown_t *b = ctx;
    b->p_framing += nf;
    b->p_names += nb;
    if (v->type == L3_DOC_OBJECT || v->type == L3_DOC_ARRAY) {
        b->p_framing += v->body - off;
    } else if (v->type == L3_DOC_STRING || v->type == L3_DOC_BIGNUM) {
        b->str_bytes += v->slen;
        b->p_framing += next - off - v->slen;
    } else {
        b->p_framing += 1;
        b->p_scalars += next - off - 1;
    }
}

void l3_doc__p_breakdown(const uint8_t *buf, l3_doc_breakdown_t *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->used = HDR(buf)->dh_used;
    ret->header = sizeof(dhdr_t);
    p_visit(buf, bytes_visit, ret);
    size_t sum = ret->header + ret->p_framing + ret->p_names + ret->p_scalars + ret->str_bytes;
    ret->p_pad = sum <= ret->used ? ret->used - sum : 0;
    ret->other = (int64_t)ret->used - (int64_t)(sum + ret->p_pad);
}
