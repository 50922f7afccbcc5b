/* SPDX-License-Identifier: MIT */
/*
 * patch.c - JSON Merge Patch (RFC 7396) and JSON Patch (RFC 6902) applied to a heap document.
 *
 * Owns: l3_doc_merge_patch(), l3_doc_json_patch() and the semantic value comparison that the
 * JSON Patch "test" operation needs. Runs in whichever process calls it (server workers on
 * PATCH, the l3kv-doc tool, tests); it is a pure function of its inputs apart from the
 * document it changes.
 *
 * How: the patch text is parsed with the project's own strict parser (l3_doc_from_json) into
 * a second, read-only document. That keeps one definition of valid JSON across the product
 * (RFC 8259, UTF-8, depth limit, byte offsets in errors), keeps big integers and long decimals
 * exact, and lets values be copied node by node with l3_doc_set_copy() instead of being
 * re-parsed. The target is changed only through the public document API, addressed by JSON
 * Pointer paths that are rebuilt for every step (keys escaped ~ -> ~0, / -> ~1), so no slot
 * of the target is held across a mutation: mutations may grow (realloc) or compact the
 * buffer (L3_DOC_HEAP_DO), which moves every slot.
 *
 * Concurrency: none; the caller serialises access to the document like for any mutation.
 *
 * Invariants:
 *   J1. Slots are only kept for the patch document, which is never changed; slots of the
 *       target are looked up again after every mutation.
 *   J2. A value moved or copied inside the target is first serialised to JSON and then
 *       stored, so the source bytes are never read while the same buffer is being written
 *       (and "move" can remove before it adds, as RFC 6902 4.4 requires).
 *   J3. Replacing the root (path "") builds a new buffer and keeps the document's LSN and
 *       undo hook.
 *   J4. Neither function is atomic: on failure the document may hold the effect of earlier
 *       steps. Callers that need all-or-nothing apply to a copy (the header says so).
 *
 * Errors: shape errors of a JSON Patch (not an array, member missing or of the wrong type,
 * unknown op) are L3_ESYNTAX; err->offset is then the byte offset of the failing operation
 * in the patch text, as for every other failure of an operation. A failed "test" is L3_ETYPE
 * with err->msg "test failed".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv/doc.h"
#include "l3kv/error.h"

/* ---------------------------------------------------------------- small helpers */

static int set_err(l3_doc_error_t *err, size_t off, const char *msg, int rc)
{
    if (err) {
        err->offset = off;
        err->msg = msg;
    }
    return rc;
}

/* A failed heap grow leaves -ENOBUFS from the mutation: report it as the allocation failure it is. */
static int heap_rc(int rc)
{
    return rc == -ENOBUFS ? -ENOMEM : rc;
}

int l3_doc_ptr_push(l3_buf_t *path, const char *key, size_t klen)
{
    size_t extra = 1;
    for (size_t i = 0; i < klen; i++)
        extra += (key[i] == '~' || key[i] == '/') ? 2 : 1;
    if (l3_buf_reserve(path, extra + 1) < 0)
        return -ENOMEM;
    char *o = path->ptr + path->len;
    *o++ = '/';
    for (size_t i = 0; i < klen; i++) {
        if (key[i] == '~') {
            *o++ = '~';
            *o++ = '0';
        } else if (key[i] == '/') {
            *o++ = '~';
            *o++ = '1';
        } else {
            *o++ = key[i];
        }
    }
    path->len = (size_t)(o - path->ptr);
    path->ptr[path->len] = '\0';
    return 0;
}

/* ---------------------------------------------------------------- root replacement */

/* Replace the whole document with the value encoded in json (J3). */
static int replace_root_json(l3_doc_t *d, const char *json, size_t len)
{
    l3_doc_parse_opts_t opts = {.max_bytes = d->limit};
    l3_doc_error_t e;
    uint8_t *nbuf;
    size_t nlen;
    int rc = l3_doc_from_json(json, len, &opts, &nbuf, &nlen, &e);
    if (rc < 0)
        return rc == L3_ESYNTAX ? -EINVAL : rc; /* the text came from our own serializer */
    (void)e;
    uint64_t lsn = l3_doc_lsn(d->buf);
    void (*undo)(void *, const void *, size_t) = d->undo;
    void *undo_ctx = d->undo_ctx;
    size_t limit = d->limit;
    l3_doc_heap_free(d);
    l3_doc_heap_adopt(d, nbuf, nlen);
    d->undo = undo;
    d->undo_ctx = undo_ctx;
    d->limit = limit;
    l3_doc_set_lsn(d, lsn);
    return 0;
}

/* Replace the whole document with a copy of the value at slot of src (src may be d->buf). */
static int replace_root(l3_doc_t *d, const uint8_t *src, uint32_t slot)
{
    l3_buf_t js = {0};
    int rc = l3_doc_to_json(src, slot, &js);
    if (rc == 0)
        rc = replace_root_json(d, js.ptr, js.len);
    free(js.ptr);
    return rc;
}

/* Store a copy of src's value at path (pointer syntax) with the given extra set flags. */
static int store_copy(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const uint8_t *src,
                      uint32_t slot)
{
    if (plen == 0)
        return replace_root(d, src, slot);
    int rc =
        L3_DOC_HEAP_DO(d, l3_doc_set_copy(d, path, plen, L3_DOC_SET_PATH_POINTER | flags, src, slot, NULL));
    return heap_rc(rc);
}

/* Store the JSON text json at path (pointer syntax). */
static int store_json(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const char *json,
                      size_t jlen)
{
    if (plen == 0)
        return replace_root_json(d, json, jlen);
    l3_doc_error_t e;
    int rc =
        L3_DOC_HEAP_DO(d, l3_doc_set_json(d, path, plen, L3_DOC_SET_PATH_POINTER | flags, json, jlen, &e));
    return heap_rc(rc);
}

/* ---------------------------------------------------------------- RFC 7396 merge patch */

/* The target at path must be an object: anything else (or nothing) becomes {}. */
static int merge_open(l3_doc_t *d, l3_buf_t *path)
{
    uint32_t tslot;
    int rc = l3_doc_lookup(d->buf, path->ptr, path->len, L3_DOC_PATH_POINTER, &tslot);
    l3_doc_val_t tv = {.type = L3_DOC_NULL};
    if (rc == 0)
        l3_doc_val(d->buf, tslot, &tv);
    else if (rc != L3_ENOTFOUND)
        return rc;
    if (rc == 0 && tv.type == L3_DOC_OBJECT)
        return 0;
    if (path->len == 0)
        return replace_root_json(d, "{}", 2);
    l3_doc_scalar_t obj = {.type = L3_DOC_OBJECT};
    return heap_rc(
        L3_DOC_HEAP_DO(d, l3_doc_set(d, path->ptr, path->len, L3_DOC_SET_PATH_POINTER, &obj, NULL)));
}

/*
 * MergePatch(target at path, patch value at pslot). path is a NUL-terminated JSON Pointer in
 * a growable buffer; it is extended for members and restored before returning. Iterative:
 * the patch's open objects wait on an explicit stack (the patch was parsed under
 * L3_DOC_MAX_DEPTH, and every store into the target checks the depth it builds).
 */
typedef struct {
    uint32_t pslot, pos;
    size_t base; /* path length of this object */
} mframe_t;

static int merge_at(l3_doc_t *d, l3_buf_t *path, const uint8_t *p, uint32_t pslot)
{
    l3_doc_val_t pv;
    l3_doc_val(p, pslot, &pv);
    if (pv.type != L3_DOC_OBJECT)
        return store_copy(d, path->ptr, path->len, 0, p, pslot);
    int rc = merge_open(d, path);
    if (rc < 0)
        return rc;
    mframe_t *st = malloc(sizeof(*st) * L3_DOC_MAX_DEPTH);
    if (!st)
        return -ENOMEM;
    size_t root_len = path->len;
    unsigned depth = 0;
    st[depth++] = (mframe_t){.pslot = pslot, .pos = 0, .base = path->len};
    while (depth > 0 && rc >= 0) {
        mframe_t *f = &st[depth - 1];
        path->len = f->base;
        path->ptr[f->base] = '\0';
        uint32_t vslot, klen;
        const char *key;
        rc = l3_doc_obj_next(p, f->pslot, &f->pos, &key, &klen, &vslot);
        if (rc != 1) {
            depth--;
            continue;
        }
        if ((rc = l3_doc_ptr_push(path, key, klen)) < 0)
            break;
        l3_doc_val_t v;
        l3_doc_val(p, vslot, &v);
        if (v.type == L3_DOC_NULL) {
            rc = heap_rc(L3_DOC_HEAP_DO(d, l3_doc_delete(d, path->ptr, path->len, L3_DOC_SET_PATH_POINTER)));
            if (rc == L3_ENOTFOUND)
                rc = 0;
        } else if (v.type != L3_DOC_OBJECT) {
            rc = store_copy(d, path->ptr, path->len, 0, p, vslot);
        } else if (depth == L3_DOC_MAX_DEPTH) {
            rc = L3_EDEPTH; /* a parsed patch is never this deep */
        } else if ((rc = merge_open(d, path)) >= 0) {
            st[depth++] = (mframe_t){.pslot = vslot, .pos = 0, .base = path->len};
        }
    }
    free(st);
    path->len = root_len;
    path->ptr[root_len] = '\0';
    return rc < 0 ? rc : 0;
}

int l3_doc_merge_patch(l3_doc_t *d, const char *patch, size_t len, l3_doc_error_t *err)
{
    uint8_t *p = NULL;
    size_t plen;
    if (l3_doc_is_packed(d->buf))
        return -EINVAL;
    l3_buf_t path = {0};
    int rc = l3_doc_from_json(patch, len, NULL, &p, &plen, err);
    if (rc < 0)
        return rc;
    if (l3_buf_reserve(&path, 64) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    path.ptr[0] = '\0';
    rc = merge_at(d, &path, p, L3_DOC_ROOT);
    if (rc < 0)
        set_err(err, 0, l3_strerror(rc), rc);
out:
    free(path.ptr);
    free(p);
    return rc;
}

/* ---------------------------------------------------------------- semantic equality ("test") */

/* A JSON number as 0.D1D2...Dn x 10^exp with D1 != 0 and Dn != 0; zero has n == 0. */
typedef struct {
    bool neg;
    char *dig;
    size_t n;
    int64_t exp;
} decimal_t;

#define EXP_LIMIT ((int64_t)1 << 60) /* exponents are clamped here; no real document comes close */

/* Normalise valid JSON number text. 0 or -ENOMEM. */
static int decimal_parse(const char *s, size_t len, decimal_t *ret)
{
    decimal_t r = {.dig = malloc(len + 1)};
    if (!r.dig)
        return -ENOMEM;
    size_t i = 0, intdigits = 0;
    if (i < len && s[i] == '-') {
        r.neg = true;
        i++;
    }
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, intdigits++)
        r.dig[r.n++] = s[i];
    if (i < len && s[i] == '.')
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            r.dig[r.n++] = s[i];
    int64_t e = 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        bool eneg = false;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            if (e < EXP_LIMIT)
                e = e * 10 + (s[i] - '0');
        if (eneg)
            e = -e;
    }
    /* Strip leading zeros (each moves the point left) and trailing zeros. */
    size_t lead = 0;
    while (lead < r.n && r.dig[lead] == '0')
        lead++;
    r.exp = e + (int64_t)intdigits - (int64_t)lead;
    memmove(r.dig, r.dig + lead, r.n - lead);
    r.n -= lead;
    while (r.n > 0 && r.dig[r.n - 1] == '0')
        r.n--;
    if (r.n == 0) {
        r.neg = false;
        r.exp = 0;
    }
    *ret = r;
    return 0;
}

/* Number text of an INT, DOUBLE (exact decimal expansion) or BIGNUM, normalised. */
static int decimal_of(const l3_doc_val_t *v, decimal_t *ret)
{
    char tmp[1100]; /* a double's exact expansion has at most 767 significant digits */
    int n;
    switch (v->type) {
    case L3_DOC_INT:
        n = snprintf(tmp, sizeof(tmp), "%" PRId64, v->i);
        return decimal_parse(tmp, (size_t)n, ret);
    case L3_DOC_DOUBLE:
        n = snprintf(tmp, sizeof(tmp), "%.800e", v->d);
        return decimal_parse(tmp, (size_t)n, ret);
    default:
        return decimal_parse(v->str.ptr, v->str.len, ret);
    }
}

static bool is_number(l3_doc_type_t t)
{
    return t == L3_DOC_INT || t == L3_DOC_DOUBLE || t == L3_DOC_BIGNUM;
}

static int numbers_equal(const l3_doc_val_t *a, const l3_doc_val_t *b)
{
    if (a->type == L3_DOC_INT && b->type == L3_DOC_INT)
        return a->i == b->i;
    if (a->type == L3_DOC_DOUBLE && b->type == L3_DOC_DOUBLE)
        return a->d == b->d;
    decimal_t x, y;
    if (decimal_of(a, &x) < 0)
        return -ENOMEM;
    if (decimal_of(b, &y) < 0) {
        free(x.dig);
        return -ENOMEM;
    }
    int eq = x.neg == y.neg && x.exp == y.exp && x.n == y.n && memcmp(x.dig, y.dig, x.n) == 0;
    free(x.dig);
    free(y.dig);
    return eq;
}

/* The values at sa and sb on their own: scalars completely, containers by type and
 * count. 1 equal, 0 not, -ENOMEM. */
static int shallow_equal(const uint8_t *a, uint32_t sa, const uint8_t *b, uint32_t sb)
{
    l3_doc_val_t va, vb;
    l3_doc_val(a, sa, &va);
    l3_doc_val(b, sb, &vb);
    if (is_number(va.type) && is_number(vb.type))
        return numbers_equal(&va, &vb);
    if (va.type != vb.type)
        return 0;
    switch (va.type) {
    case L3_DOC_NULL:
        return 1;
    case L3_DOC_BOOL:
        return va.b == vb.b;
    case L3_DOC_STRING:
        return va.str.len == vb.str.len && memcmp(va.str.ptr, vb.str.ptr, va.str.len) == 0;
    case L3_DOC_ARRAY:
    case L3_DOC_OBJECT:
        return va.count == vb.count;
    default:
        return 0;
    }
}

/* 1 if the values are equal as JSON (objects unordered, numbers by value), 0 if not, -ENOMEM.
 * Iterative: the open container pairs wait on an explicit stack (both documents are
 * verified, so at most L3_DOC_MAX_DEPTH deep). */
typedef struct {
    uint32_t sa, sb, pos;
    uint8_t type;
} eframe_t;

static int values_equal(const uint8_t *a, uint32_t sa, const uint8_t *b, uint32_t sb)
{
    eframe_t *st = malloc(sizeof(*st) * L3_DOC_MAX_DEPTH);
    if (!st)
        return -ENOMEM;
    unsigned depth = 0;
    int rc;
    for (;;) {
        if ((rc = shallow_equal(a, sa, b, sb)) != 1)
            break;
        l3_doc_val_t va;
        l3_doc_val(a, sa, &va);
        if ((va.type == L3_DOC_ARRAY || va.type == L3_DOC_OBJECT) && va.count > 0) {
            if (depth == L3_DOC_MAX_DEPTH) {
                rc = 0;
                break;
            }
            st[depth++] = (eframe_t){.sa = sa, .sb = sb, .pos = 0, .type = (uint8_t)va.type};
        }
        /* the next pair: the next member of the innermost open pair with one left */
        bool have = false;
        while (depth > 0 && !have) {
            eframe_t *f = &st[depth - 1];
            if (f->type == L3_DOC_ARRAY) {
                l3_doc_val_t fv;
                l3_doc_val(a, f->sa, &fv);
                if (f->pos < fv.count && l3_doc_arr_at(a, f->sa, f->pos, &sa) == 0 &&
                    l3_doc_arr_at(b, f->sb, f->pos, &sb) == 0) {
                    f->pos++;
                    have = true;
                    continue;
                }
            } else {
                uint32_t klen, ma;
                const char *key;
                if (l3_doc_obj_next(a, f->sa, &f->pos, &key, &klen, &ma) == 1) {
                    if (l3_doc_obj_find(b, f->sb, key, klen, &sb) < 0)
                        goto differ;
                    sa = ma;
                    have = true;
                    continue;
                }
            }
            depth--;
        }
        if (!have) {
            rc = 1;
            break;
        }
    }
    free(st);
    return rc;
differ:
    free(st);
    return 0;
}

/* ---------------------------------------------------------------- RFC 6902 JSON Patch */

/* Byte offset of element idx of the (valid) top-level JSON array in s; 0 if not found. */
static size_t element_offset(const char *s, size_t len, uint32_t idx)
{
    size_t depth = 0;
    uint32_t n = 0;
    bool in_str = false, want = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (want && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            if (n == idx)
                return i;
            want = false;
        }
        switch (c) {
        case '"':
            in_str = true;
            break;
        case '[':
        case '{':
            if (++depth == 1)
                want = true;
            break;
        case ']':
        case '}':
            depth--;
            break;
        case ',':
            if (depth == 1) {
                n++;
                want = true;
            }
            break;
        default:
            break;
        }
    }
    return 0;
}

typedef enum { OP_ADD, OP_REMOVE, OP_REPLACE, OP_MOVE, OP_COPY, OP_TEST } op_t;

/* A string member of an operation object: 0, or L3_ENOTFOUND / L3_ESYNTAX (wrong type). */
static int op_string(const uint8_t *p, uint32_t op, const char *name, const char **ret_ptr, size_t *ret_len)
{
    uint32_t s;
    int rc = l3_doc_obj_find(p, op, name, strlen(name), &s);
    if (rc < 0)
        return L3_ENOTFOUND;
    l3_doc_val_t v;
    l3_doc_val(p, s, &v);
    if (v.type != L3_DOC_STRING)
        return L3_ESYNTAX;
    *ret_ptr = v.str.ptr;
    *ret_len = v.str.len;
    return 0;
}

/* Message for a failed mutation or lookup at "path" (which = "path" or "from"). */
static const char *path_msg(int rc, bool from)
{
    switch (rc) {
    case L3_ENOTFOUND:
        return from ? "\"from\" does not exist" : "\"path\" (or its parent) does not exist";
    case L3_EPATH:
        return from ? "\"from\" is not a valid JSON Pointer" : "\"path\" is not a valid JSON Pointer";
    case L3_ERANGE:
        return "array index out of range";
    case L3_ETYPE:
        return "path goes through a value that is not an object or array";
    case L3_EDEPTH:
        return "the result would nest deeper than the depth limit (512)";
    default:
        return l3_strerror(rc);
    }
}

/* One operation's members, read and checked against its kind. */
typedef struct {
    op_t kind;
    const char *path, *from;
    size_t plen, flen;
    uint32_t value; /* slot of "value" in the patch document (add, replace, test) */
} opspec_t;

/* Read an operation object: 0, or L3_ESYNTAX / L3_EPATH with *ret_msg. */
static int op_read(const uint8_t *p, uint32_t op, opspec_t *o, const char **ret_msg)
{
    l3_doc_val_t ov;
    l3_doc_val(p, op, &ov);
    if (ov.type != L3_DOC_OBJECT) {
        *ret_msg = "operation is not an object";
        return L3_ESYNTAX;
    }
    const char *name;
    size_t nlen;
    int rc = op_string(p, op, "op", &name, &nlen);
    if (rc < 0) {
        *ret_msg = rc == L3_ENOTFOUND ? "operation has no \"op\"" : "\"op\" is not a string";
        return L3_ESYNTAX;
    }
    static const struct {
        const char *name;
        op_t op;
    } ops[] = {{"add", OP_ADD},   {"remove", OP_REMOVE}, {"replace", OP_REPLACE},
               {"move", OP_MOVE}, {"copy", OP_COPY},     {"test", OP_TEST}};
    size_t k;
    for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
        if (strlen(ops[k].name) == nlen && memcmp(ops[k].name, name, nlen) == 0)
            break;
    if (k == sizeof(ops) / sizeof(ops[0])) {
        *ret_msg = "unknown \"op\"";
        return L3_ESYNTAX;
    }
    memset(o, 0, sizeof(*o));
    o->kind = ops[k].op;
    rc = op_string(p, op, "path", &o->path, &o->plen);
    if (rc < 0) {
        *ret_msg = rc == L3_ENOTFOUND ? "operation has no \"path\"" : "\"path\" is not a string";
        return L3_ESYNTAX;
    }
    if (o->plen > 0 && o->path[0] != '/') {
        *ret_msg = "\"path\" is not a JSON Pointer";
        return L3_EPATH;
    }
    if ((o->kind == OP_ADD || o->kind == OP_REPLACE || o->kind == OP_TEST) &&
        l3_doc_obj_find(p, op, "value", 5, &o->value) < 0) {
        *ret_msg = "operation has no \"value\"";
        return L3_ESYNTAX;
    }
    if (o->kind == OP_MOVE || o->kind == OP_COPY) {
        rc = op_string(p, op, "from", &o->from, &o->flen);
        if (rc < 0) {
            *ret_msg = rc == L3_ENOTFOUND ? "operation has no \"from\"" : "\"from\" is not a string";
            return L3_ESYNTAX;
        }
        if (o->flen > 0 && o->from[0] != '/') {
            *ret_msg = "\"from\" is not a JSON Pointer";
            return L3_EPATH;
        }
    }
    return 0;
}

/* move / copy: the value at "from" is taken out as text (J2), then (move) removed, then added. */
static int op_move_copy(l3_doc_t *d, const opspec_t *o, const char **ret_msg)
{
    const char *path = o->path, *from = o->from;
    size_t plen = o->plen, flen = o->flen;
    uint32_t slot;
    int rc = l3_doc_lookup(d->buf, from, flen, L3_DOC_PATH_POINTER, &slot);
    if (rc < 0) {
        *ret_msg = path_msg(rc, true);
        return rc;
    }
    if (o->kind == OP_MOVE) {
        if (plen == flen && memcmp(path, from, flen) == 0)
            return 0; /* moving a value onto itself changes nothing */
        if (plen > flen && memcmp(path, from, flen) == 0 && path[flen] == '/') {
            *ret_msg = "cannot move a value into one of its own children";
            return L3_EPATH;
        }
    }
    /* refuse a copy that cannot fit before serialising it (copy "" doubles the document) */
    if (o->kind == OP_COPY && d->limit) {
        unsigned vdepth;
        size_t add = l3_doc_copy_size(d->buf, slot, &vdepth);
        if (l3_doc_size(d->buf) + add > d->limit) {
            *ret_msg = "the copy would make the document larger than the size limit";
            return L3_EDOCSIZE;
        }
    }
    l3_buf_t js = {0};
    rc = l3_doc_to_json(d->buf, slot, &js);
    if (rc == 0 && o->kind == OP_MOVE) {
        /* "from" is not the root here: the root cannot move into its own child. */
        rc = heap_rc(L3_DOC_HEAP_DO(d, l3_doc_delete(d, from, flen, L3_DOC_SET_PATH_POINTER)));
        if (rc < 0)
            *ret_msg = path_msg(rc, true);
    }
    if (rc == 0) {
        rc = store_json(d, path, plen, L3_DOC_SET_INSERT, js.ptr, js.len);
        if (rc < 0)
            *ret_msg = path_msg(rc, false);
    } else if (rc == -ENOMEM) {
        *ret_msg = "out of memory";
    }
    free(js.ptr);
    return rc;
}

/* Apply one operation; *ret_msg gets a static description on failure. */
static int apply_op(l3_doc_t *d, const uint8_t *p, uint32_t op, const char **ret_msg)
{
    opspec_t o;
    int rc = op_read(p, op, &o, ret_msg);
    if (rc < 0)
        return rc;
    const char *path = o.path;
    size_t plen = o.plen;
    uint32_t value = o.value;
    op_t kind = o.kind;
    uint32_t slot;
    switch (kind) {
    case OP_ADD:
        rc = store_copy(d, path, plen, L3_DOC_SET_INSERT, p, value);
        *ret_msg = path_msg(rc, false);
        return rc;

    case OP_REMOVE:
        if (plen == 0) {
            *ret_msg = "cannot remove the root";
            return L3_EPATH;
        }
        rc = heap_rc(L3_DOC_HEAP_DO(d, l3_doc_delete(d, path, plen, L3_DOC_SET_PATH_POINTER)));
        *ret_msg = path_msg(rc, false);
        return rc;

    case OP_REPLACE:
        rc = l3_doc_lookup(d->buf, path, plen, L3_DOC_PATH_POINTER, &slot);
        if (rc < 0) {
            *ret_msg = path_msg(rc, false);
            return rc;
        }
        rc = store_copy(d, path, plen, L3_DOC_SET_NO_CREATE, p, value);
        *ret_msg = path_msg(rc, false);
        return rc;

    case OP_TEST:
        rc = l3_doc_lookup(d->buf, path, plen, L3_DOC_PATH_POINTER, &slot);
        if (rc < 0) {
            *ret_msg = path_msg(rc, false);
            return rc;
        }
        rc = values_equal(d->buf, slot, p, value);
        if (rc == 0) {
            *ret_msg = "test failed";
            return L3_ETYPE;
        }
        *ret_msg = "out of memory";
        return rc < 0 ? rc : 0;

    case OP_MOVE:
    case OP_COPY:
        return op_move_copy(d, &o, ret_msg);
    }
    return L3_ESYNTAX;
}

int l3_doc_json_patch(l3_doc_t *d, const char *patch, size_t len, l3_doc_error_t *err)
{
    uint8_t *p = NULL;
    size_t plen;
    if (l3_doc_is_packed(d->buf))
        return -EINVAL;
    int rc = l3_doc_from_json(patch, len, NULL, &p, &plen, err);
    if (rc < 0)
        return rc;
    l3_doc_val_t root;
    l3_doc_val(p, L3_DOC_ROOT, &root);
    if (root.type != L3_DOC_ARRAY) {
        rc = set_err(err, 0, "patch is not an array", L3_ESYNTAX);
        goto out;
    }
    for (uint32_t i = 0; i < root.count; i++) {
        uint32_t op;
        const char *msg = NULL;
        rc = l3_doc_arr_at(p, L3_DOC_ROOT, i, &op);
        if (rc == 0)
            rc = apply_op(d, p, op, &msg);
        if (rc < 0) {
            if (!msg || rc == -ENOMEM)
                msg = l3_strerror(rc);
            set_err(err, element_offset(patch, len, i), msg, rc);
            goto out;
        }
    }
    rc = 0;
out:
    free(p);
    return rc;
}
