/* SPDX-License-Identifier: MIT */
/*
 * pack.c - building, unpacking and verifying the packed form (layout in packed.h).
 *
 * Owns: l3_doc_pack (full form -> packed, one walk), l3_doc_unpack (packed -> full form,
 * through its JSON text: correct by construction, and paid once, by a document's first
 * change of a field), l3_doc_heap_adopt_any, and the packed verify(), which trusts nothing:
 * every length is checked against its container, nesting is walked on an explicit stack
 * bounded by L3_DOC_MAX_DEPTH and member and element counts are bounded, so the duplicate
 * name check and every lookup scan a bounded list.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/base.h"
#include "l3kv/error.h"
#include "packed.h"

/* ------------------------------------------------------------------ packing */

/* The packer writes through a cursor; before each value it checks once that the value's
 * largest encoding fits (PACK_VALUE_MAX past its name and text), so the stores below need
 * no checks of their own. */
#define PACK_VALUE_MAX 16u /* name length (5), tag, var length (5) or count + size, payload 8 */

static inline uint8_t *w_bytes(uint8_t *p, const void *src, uint32_t n)
{
    memcpy(p, src, n);
    return p + n;
}

/* A scalar (its room checked by the caller). */
static uint8_t *w_scalar(uint8_t *p, const uint8_t *buf, uint64_t val, uint8_t type)
{
    if (type != L3_DOC_STRING && type != L3_DOC_BIGNUM)
        return l3_doc__put_scalar(p, val, type);
    const dstr_t *s = AT(buf, (uint32_t)val, const dstr_t);
    p = l3_doc__put_text_head(p, type == L3_DOC_STRING, s->len);
    return w_bytes(p, s + 1, s->len);
}

/* Bytes of text a value brings beyond PACK_VALUE_MAX (a string's or bignum's). */
static inline uint32_t text_len(const uint8_t *buf, uint64_t val, uint8_t type)
{
    return type == L3_DOC_STRING || type == L3_DOC_BIGNUM ? AT(buf, (uint32_t)val, const dstr_t)->len : 0;
}

/* Open a container: tag, count and a size field filled in at its close; 0 when it has more
 * members or elements than the packed form holds. */
static uint8_t *w_open(uint8_t *p, const uint8_t *buf, uint64_t node, uint8_t type)
{
    bool object = type == L3_DOC_OBJECT;
    uint32_t count =
        object ? AT(buf, (uint32_t)node, const dobj_t)->count : AT(buf, (uint32_t)node, const darr_t)->count;
    if (count > (object ? L3_DOC_PACKED_MEMBERS : L3_DOC_PACKED_ITEMS))
        return NULL;
    *p++ = object ? PT_OBJECT : PT_ARRAY;
    p = l3_doc__put_var(p, count);
    *p++ = 0;
    *p++ = 0;
    return p;
}

int l3_doc_pack(const uint8_t *buf, uint8_t *dst, size_t cap, size_t *ret_len)
{
    if (l3_doc__packed(buf))
        return -EINVAL;
    uint32_t limit = (uint32_t)L3_MIN(cap, (size_t)L3_DOC_PACKED_MAX);
    if (limit < PACKED_MIN_USED)
        return L3_ETOOBIG;
    uint8_t *p = w_bytes(dst, buf, (uint32_t)sizeof(dhdr_t)), *end = dst + limit;
    uint32_t open[L3_DOC_MAX_DEPTH]; /* where each open container's members start */
    const dslot_t *root = AT(buf, L3_DOC_ROOT, const dslot_t);
    l3_doc__walk_t w;
    l3_doc__wstep_t st;
    l3_doc__walk_begin(&w, buf, root->val, root->type);
    int ev;
    while ((ev = l3_doc__walk_next(&w, &st)) != L3_W_END) {
        if (ev == L3_W_DEEP)
            return L3_EDEPTH; /* a verified document never gets here */
        if (ev == L3_W_CLOSE) {
            uint32_t start = open[w.depth], size = (uint32_t)(p - dst) - start;
            l3_doc__put_u16(dst + start - 2, size);
            continue;
        }
        uint64_t room = PACK_VALUE_MAX + (st.e ? st.e->klen : 0) + (uint64_t)text_len(buf, st.val, st.type);
        if (room > (uint64_t)(end - p))
            return L3_ETOOBIG;
        if (st.e) {
            p = l3_doc__put_var(p, st.e->klen);
            p = w_bytes(p, l3_doc__ekey(buf, st.e), st.e->klen);
        }
        if (ev == L3_W_SCALAR) {
            p = w_scalar(p, buf, st.val, st.type);
        } else if ((p = w_open(p, buf, st.val, st.type)) == NULL) {
            return L3_ETOOBIG;
        } else {
            open[w.depth - 1] = (uint32_t)(p - dst);
        }
    }
    uint32_t used = l3_doc__p_finish(dst, (uint32_t)(p - dst), limit);
    if (used == 0)
        return L3_ETOOBIG;
    dhdr_t *h = HDR(dst);
    h->dh_version = L3_DOC_PACKED_VERSION;
    h->dh_flags = 0;
    h->dh_crc = 0;
    h->dh_garbage = 0;
    h->dh_seed = 0;
    *ret_len = used;
    return 0;
}

int l3_doc_unpack(const uint8_t *buf, uint8_t **ret_buf, size_t *ret_len)
{
    if (!l3_doc__packed(buf))
        return -EINVAL;
    l3_buf_t text = {0};
    int rc = l3_doc_to_json(buf, L3_DOC_ROOT, &text);
    if (rc == 0) {
        l3_doc_error_t e;
        rc = l3_doc_from_json(text.ptr, text.len, NULL, ret_buf, ret_len, &e);
    }
    free(text.ptr);
    if (rc < 0)
        return rc == L3_ESYNTAX ? L3_ECORRUPT : rc; /* a verified document always parses */
    HDR(*ret_buf)->dh_lsn = HDR(buf)->dh_lsn;
    return 0;
}

int l3_doc_heap_adopt_any(l3_doc_t *d, uint8_t *buf, size_t len)
{
    if (!l3_doc__packed(buf)) {
        l3_doc_heap_adopt(d, buf, len);
        return 0;
    }
    uint8_t *full;
    size_t flen;
    int rc = l3_doc_unpack(buf, &full, &flen);
    free(buf);
    memset(d, 0, sizeof(*d));
    if (rc < 0)
        return rc;
    l3_doc_heap_adopt(d, full, flen);
    return 0;
}

/* ------------------------------------------------------------------ verify (untrusted) */

typedef struct {
    const uint8_t *buf;
    uint32_t used;
    size_t at;
    const char *msg;
} pv_t;

static int pbad(pv_t *v, size_t at, const char *msg)
{
    v->at = at;
    v->msg = msg;
    return L3_ECORRUPT;
}

/* A var inside [*off, end): canonical enough (at most 5 bytes, < 2^32). */
static int pv_var(pv_t *v, uint32_t *off, uint32_t end, uint32_t *ret)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < 5; i++) {
        if (*off >= end)
            return pbad(v, *off, "length runs past its container");
        uint8_t b = v->buf[(*off)++];
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (x > UINT32_MAX)
                return pbad(v, *off, "length too large");
            *ret = (uint32_t)x;
            return 0;
        }
    }
    return pbad(v, *off, "length longer than 5 bytes");
}

typedef struct {
    uint32_t end;  /* end of the container's members */
    uint32_t left; /* members or elements still to read */
    uint32_t body; /* first member (objects: for the duplicate check) */
    bool object;
} pframe_t;

/* One scalar at *off inside [*off, end); containers are handled by the caller. */
static int pv_scalar(pv_t *v, uint8_t tag, uint32_t *off, uint32_t end)
{
    static const uint8_t width[] = {[PT_I8] = 1, [PT_I16] = 2, [PT_I32] = 4, [PT_I64] = 8, [PT_DOUBLE] = 8};
    uint32_t n;
    if (tag <= PT_TRUE)
        return 0;
    if (tag <= PT_DOUBLE) {
        n = width[tag];
        if (end - *off < n)
            return pbad(v, *off, "number runs past its container");
        if (tag == PT_DOUBLE) {
            double d;
            memcpy(&d, v->buf + *off, 8);
            if (d != d || d - d != 0)
                return pbad(v, *off, "double is not finite");
        }
        *off += n;
        return 0;
    }
    if (tag >= PT_SHORT) {
        n = tag - PT_SHORT;
    } else if (tag == PT_STR || tag == PT_BIGNUM) {
        int rc = pv_var(v, off, end, &n);
        if (rc)
            return rc;
    } else {
        return pbad(v, *off - 1, "unknown value tag");
    }
    if (end - *off < n)
        return pbad(v, *off, "string runs past its container");
    const uint8_t *p = v->buf + *off;
    if (tag == PT_BIGNUM ? !l3_doc__number_valid((const char *)p, n) : !l3_doc__utf8_valid(p, n))
        return pbad(v, *off, tag == PT_BIGNUM ? "invalid number text" : "invalid UTF-8 in string");
    *off += n;
    return 0;
}

/* A member's name at *off of the object f: bounds, UTF-8, no earlier twin. */
static int pv_name(pv_t *v, const pframe_t *f, uint32_t *off)
{
    uint32_t start = *off, nl;
    int rc = pv_var(v, off, f->end, &nl);
    if (rc)
        return rc;
    if (f->end - *off < nl)
        return pbad(v, *off, "member name runs past its object");
    const uint8_t *name = v->buf + *off;
    if (!l3_doc__utf8_valid(name, nl))
        return pbad(v, start, "invalid UTF-8 in member name");
    if (l3_doc__p_named(v->buf, f->body, start, name, nl))
        return pbad(v, start, "duplicate member name");
    *off += nl;
    return 0;
}

/* A container's head at *off (tag read): count, size, bounds; pushes its frame. */
static int pv_open(pv_t *v, uint8_t tag, uint32_t *off, uint32_t end, pframe_t *f)
{
    uint32_t count;
    int rc = pv_var(v, off, end, &count);
    if (rc)
        return rc;
    bool object = tag == PT_OBJECT;
    if (count > (object ? L3_DOC_PACKED_MEMBERS : L3_DOC_PACKED_ITEMS))
        return pbad(v, *off,
                    object ? "too many members for a packed object" : "too many elements for a packed array");
    if (end - *off < 2)
        return pbad(v, *off, "container size runs past its container");
    uint32_t size = l3_doc__rd_u16(v->buf + *off);
    *off += 2;
    if (end - *off < size)
        return pbad(v, *off - 2, "container runs past its container");
    /* each member or element takes at least one byte (two for a member) */
    if ((uint64_t)count * (object ? 2u : 1u) > size)
        return pbad(v, *off - 2, "container size too small for its count");
    *f = (pframe_t){.end = *off + size, .left = count, .body = *off, .object = object};
    return 0;
}

/* Frames of the first containers live on the C stack; a deeper document moves them to
 * one heap block of L3_DOC_MAX_DEPTH frames (*heap, freed by the caller). */
#define PV_LOCAL_FRAMES 32u

static int pv_walk(pv_t *v, uint32_t end, pframe_t *stack, pframe_t **heap)
{
    unsigned depth = 0;
    uint32_t off = L3_DOC_ROOT;
    bool root = true;
    for (;;) {
        uint32_t lim = end;
        if (!root) {
            if (depth == 0)
                return (int)off; /* the end of the root value */
            pframe_t *f = &stack[depth - 1];
            if (f->left == 0) {
                if (off != f->end)
                    return pbad(v, off, "container size does not match its members");
                depth--;
                continue;
            }
            f->left--;
            lim = f->end;
            if (f->object) {
                int rc = pv_name(v, f, &off);
                if (rc)
                    return rc;
            }
        }
        root = false;
        if (off >= lim)
            return pbad(v, off, "value runs past its container");
        uint8_t tag = v->buf[off++];
        int rc;
        if (tag == PT_OBJECT || tag == PT_ARRAY) {
            if (depth >= L3_DOC_MAX_DEPTH)
                return pbad(v, off - 1, "nested deeper than the depth limit");
            if (depth == PV_LOCAL_FRAMES && *heap == NULL) {
                if ((*heap = malloc(sizeof(pframe_t) * L3_DOC_MAX_DEPTH)) == NULL)
                    return -ENOMEM;
                memcpy(*heap, stack, sizeof(pframe_t) * PV_LOCAL_FRAMES);
                stack = *heap;
            }
            rc = pv_open(v, tag, &off, lim, &stack[depth]);
            if (rc == 0)
                depth++;
        } else {
            rc = pv_scalar(v, tag, &off, lim);
        }
        if (rc)
            return rc;
    }
}

int l3_doc__p_verify(const uint8_t *buf, size_t len, l3_doc_error_t *err)
{
    pv_t v = {.buf = buf};
    const dhdr_t *h = HDR(buf);
    int rc = 0;
    if (h->dh_used < PACKED_MIN_USED || h->dh_used > len || h->dh_used % 8 || h->dh_used > L3_DOC_PACKED_MAX)
        rc = pbad(&v, 8, "bad used size");
    else if (h->dh_garbage != 0)
        rc = pbad(&v, 12, "packed document with garbage");
    else if (h->dh_seed != 0)
        rc = pbad(&v, 24, "packed document with a hash seed");
    if (rc == 0) {
        v.used = h->dh_used;
        pframe_t local[PV_LOCAL_FRAMES], *heap = NULL;
        rc = pv_walk(&v, v.used, local, &heap);
        free(heap);
        if (rc > 0) {
            uint32_t end = (uint32_t)rc;
            rc = 0;
            if (l3_doc__p_used(end) != v.used)
                rc = pbad(&v, end, "used size does not match the root value");
            for (uint32_t z = end; rc == 0 && z < v.used; z++)
                if (buf[z])
                    rc = pbad(&v, z, "padding after the root value not zero");
        }
    }
    if (rc && err) {
        err->offset = v.at;
        err->msg = v.msg ? v.msg : l3_strerror(rc);
    }
    return rc;
}
