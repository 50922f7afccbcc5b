/* SPDX-License-Identifier: MIT */
/*
 * verify.c - validation of untrusted document bytes.
 *
 * Owns: l3_doc_verify. Runs in any process (server on binary PUT and recovery, the
 * inspector on shared memory it does not trust). Reads only; allocates a bitmap.
 *
 * After l3_doc_verify() returns 0, every other function in src/doc may follow the
 * buffer's offsets without checks. It proves:
 *  V1 header: magic, version, 48 <= used <= len, used and offsets multiples of 8,
 *     garbage <= used, CRC when the SEALED flag is set;
 *  V2 every node, entry array, hash table, string block and name lies inside
 *     [48, used) and no two of them overlap (a granule bitmap) - so there are no cycles
 *     and no shared storage a write through one value could corrupt another through;
 *  V3 types are valid, doubles finite, bools 0/1, strings valid UTF-8, BIGNUM text a
 *     valid JSON number; at most L3_DOC_MAX_DEPTH nested containers;
 *  V5 used == 48 + bytes of all structures + garbage (so later garbage accounting
 *     cannot overflow);
 *  V4 objects: count <= n <= cap, count equals the live entries, names hash to their
 *     stored hash; a hashed object's entry table has a power-of-two size > cap, its
 *     order array names every occupied slot exactly once, and every entry sits where
 *     linear probing finds it.
 *  V6 no two live members of an object share a name; small objects (cap <= 8) have no
 *     table, large ones do, and no entry sits more than L3_DOC_MAX_PROBE slots past its
 *     home (a random-seeded table at load <= 1/2 never comes close; a crafted one would
 *     make lookups slow), which also bounds the duplicate check.
 * Cost O(len). The walk is iterative: each container's node, names and tables are checked
 * when it is reached, then its values are walked from an explicit stack of at most
 * L3_DOC_MAX_DEPTH frames, so no input decides how deep the C stack goes.
 * A packed document (dh_version L3_DOC_PACKED_VERSION, packed.h) shares the header checks
 * (V1 with 40 <= used) and is then walked by l3_doc__p_verify (pack.c), its own rules.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "packed.h"
#include "l3kv/error.h"

typedef struct {
    const uint8_t *buf;
    size_t len;
    uint32_t used;
    uint64_t claimed; /* bytes of all structures found */
    uint64_t *map;    /* one bit per 8-byte granule */
    const char *msg;
    size_t at;
    bool v2; /* format version 2: its table sizes, home slots and probe bound */
} vctx_t;

/* Home slot of a hash under the document's version (see format.h). */
static uint32_t vhome(const vctx_t *v, uint32_t hash, uint32_t hcap)
{
    return v->v2 ? (hash & (hcap - 1)) : l3_doc__home(hash, hcap);
}

/* Distance from slot a forward to slot b in a table of hcap slots. */
static uint32_t vdist(uint32_t a, uint32_t b, uint32_t hcap)
{
    return b >= a ? b - a : b + hcap - a;
}

static int bad(vctx_t *v, uint64_t at, const char *msg)
{
    v->msg = msg;
    v->at = at > v->len ? v->len : (size_t)at;
    return L3_ECORRUPT;
}

/* Claim [off, off+len) for one structure (V2). */
/* Claims [off, off+len) rounded up to whole granules. All arithmetic is 64-bit: a
 * crafted length near 4 GiB must not wrap to a small claim (a8() is 32-bit). */
static int claim(vctx_t *v, uint64_t off, uint64_t len, const char *what)
{
    len = (len + 7) & ~(uint64_t)7;
    if (off % 8 || off < DOC_DATA_OFF || len > v->used || off > v->used - len)
        return bad(v, off, what);
    for (uint64_t g = off / 8; g < (off + len + 7) / 8; g++) {
        uint64_t bit = 1ull << (g & 63);
        if (v->map[g >> 6] & bit)
            return bad(v, off, "overlapping or shared storage");
        v->map[g >> 6] |= bit;
    }
    v->claimed += len;
    return 0;
}

typedef struct {
    uint32_t node, i;
    uint8_t type;
} vframe_t;

static int check_value(vctx_t *v, uint64_t val, uint8_t type, uint64_t where);

static int check_string(vctx_t *v, uint64_t off, bool bignum)
{
    if (off % 8 || off < DOC_DATA_OFF || off > (uint64_t)v->used - 8)
        return bad(v, off, "string offset out of bounds");
    const dstr_t *s = AT(v->buf, (uint32_t)off, const dstr_t);
    if (s->cap % 8 || s->len > s->cap)
        return bad(v, off, "bad string length");
    int rc = claim(v, off, 8 + (uint64_t)s->cap, "string out of bounds");
    if (rc)
        return rc;
    const uint8_t *p = (const uint8_t *)(s + 1);
    if (bignum ? !l3_doc__number_valid((const char *)p, s->len) : !l3_doc__utf8_valid(p, s->len))
        return bad(v, off, bignum ? "invalid number text" : "invalid UTF-8 in string");
    return 0;
}

static bool same_name(const uint8_t *buf, const dentry_t *a, const dentry_t *b)
{
    return a->hash == b->hash && a->klen == b->klen &&
           memcmp(l3_doc__ekey(buf, a), l3_doc__ekey(buf, b), a->klen) == 0;
}

/* One live member's name: storage, padding, UTF-8 and hash (its value is walked later). */
static int check_member(vctx_t *v, const dentry_t *e, uint64_t where)
{
    int rc;
    if (e->klen > KEY_INLINE_MAX && (rc = claim(v, e->koff, e->klen, "member name out of bounds")))
        return rc;
    if (e->klen <= KEY_INLINE_MAX) {
        /* inline names are zero padded: lookups compare whole words */
        for (uint32_t z = e->klen; z < KEY_INLINE_MAX; z++)
            if (e->kin[z])
                return bad(v, where, "inline member name not zero padded");
    }
    const uint8_t *k = l3_doc__ekey(v->buf, e);
    if (!l3_doc__utf8_valid(k, e->klen))
        return bad(v, where, "invalid UTF-8 in member name");
    if (e->hash != l3_doc__hash(HDR(v->buf)->dh_seed, k, e->klen))
        return bad(v, where, "member name hash mismatch");
    return 0;
}

/* Small object: cap <= 8 entries in insertion order, scanned; names checked pairwise
 * for duplicates (V6). */
static int check_small_object(vctx_t *v, uint64_t off, const dobj_t *o)
{
    int rc;
    if (o->cap > HASH_MIN_CAP)
        return bad(v, off, "large object without a hash table");
    if (o->ooff)
        return bad(v, off, "small object with an order array");
    if (o->cap &&
        (rc = claim(v, o->eoff, (uint64_t)o->cap * sizeof(dentry_t), "object entries out of bounds")))
        return rc;
    const dentry_t *e = o->cap ? AT(v->buf, o->eoff, const dentry_t) : NULL;
    uint32_t live = 0;
    for (uint32_t i = 0; i < o->n; i++) {
        uint64_t where = o->eoff + (uint64_t)i * sizeof(dentry_t);
        if (e[i].type == T_DELETED)
            continue;
        live++;
        if ((rc = check_member(v, &e[i], where)))
            return rc;
        for (uint32_t j = 0; j < i; j++)
            if (e[j].type != T_DELETED && same_name(v->buf, &e[i], &e[j]))
                return bad(v, where, "duplicate member name");
    }
    return live == o->count ? 0 : bad(v, off, "object count does not match its members");
}

/* Hashed object (V4, V6): an entry table of hcap slots placed by linear probing and an
 * order array naming each occupied slot exactly once. */
static int check_hashed_object(vctx_t *v, uint64_t off, const dobj_t *o)
{
    uint32_t n = o->n, cap = o->cap, hcap = o->hcap;
    uint32_t max_probe = v->v2 ? L3_DOC_V2_MAX_PROBE : L3_DOC_MAX_PROBE;
    int rc;
    /* the one size every writer uses (sizes derive from cap) */
    if (hcap != (v->v2 ? l3_doc__v2_hcap_for(cap) : l3_doc__hcap_for(cap)))
        return bad(v, off, "bad object hash table size");
    if ((rc = claim(v, o->eoff, (uint64_t)hcap * sizeof(dentry_t), "object entry table out of bounds")) ||
        (rc = claim(v, o->ooff, (uint64_t)cap * 4, "object order array out of bounds")))
        return rc;
    const dentry_t *tab = AT(v->buf, o->eoff, const dentry_t);
    const uint32_t *ord = AT(v->buf, o->ooff, const uint32_t);
    uint8_t *seen = calloc(hcap, 1);
    if (!seen)
        return -ENOMEM;
    uint32_t live = 0;
    rc = 0;
    for (uint32_t i = 0; i < n && !rc; i++) {
        uint32_t p = ord[i];
        if (p >= hcap || seen[p] || tab[p].type == T_EMPTY) {
            rc = bad(v, o->ooff + (uint64_t)i * 4, "bad member order slot");
            break;
        }
        seen[p] = 1;
        if (tab[p].type == T_DELETED)
            continue;
        live++;
        rc = check_member(v, &tab[p], o->eoff + (uint64_t)p * sizeof(dentry_t));
    }
    uint32_t occupied = 0, empty = UINT32_MAX;
    for (uint32_t i = 0; i < hcap && !rc; i++) {
        if (tab[i].type == T_EMPTY) {
            if (empty == UINT32_MAX)
                empty = i;
        } else if (!seen[i]) {
            rc =
                bad(v, o->eoff + (uint64_t)i * sizeof(dentry_t), "table entry missing from the member order");
        } else {
            occupied++;
        }
    }
    free(seen);
    if (rc)
        return rc;
    if (live != o->count)
        return bad(v, off, "object count does not match its members");
    if (occupied != n || empty == UINT32_MAX)
        return bad(v, o->eoff, "entry table does not match the member order");
    /* each entry must lie in the probe run that starts at or after its home slot */
    uint32_t run_start = l3_doc__probe_next(empty, hcap), i = empty;
    for (uint32_t k = 1; k <= hcap; k++) {
        i = l3_doc__probe_next(i, hcap);
        uint64_t where = o->eoff + (uint64_t)i * sizeof(dentry_t);
        if (tab[i].type == T_EMPTY) {
            run_start = l3_doc__probe_next(i, hcap);
            continue;
        }
        uint32_t home = vhome(v, tab[i].hash, hcap);
        if (vdist(run_start, home, hcap) > vdist(run_start, i, hcap))
            return bad(v, where, "hash table entry out of probe order");
        if (vdist(home, i, hcap) > max_probe)
            return bad(v, where, "hash table probe sequence too long");
        /* V6: no live entry between the home slot and this one has the same name */
        if (tab[i].type != T_DELETED) {
            for (uint32_t q = home; q != i; q = l3_doc__probe_next(q, hcap))
                if (tab[q].type != T_DELETED && same_name(v->buf, &tab[q], &tab[i]))
                    return bad(v, where, "duplicate member name");
        }
    }
    return 0;
}

static int check_object(vctx_t *v, uint64_t off)
{
    int rc = claim(v, off, sizeof(dobj_t), "object node out of bounds");
    if (rc)
        return rc;
    const dobj_t *o = AT(v->buf, (uint32_t)off, const dobj_t);
    if (o->count > o->n || o->n > o->cap)
        return bad(v, off, "bad object counts");
    return o->hcap ? check_hashed_object(v, off, o) : check_small_object(v, off, o);
}

static int check_array(vctx_t *v, uint64_t off)
{
    int rc = claim(v, off, sizeof(darr_t), "array node out of bounds");
    if (rc)
        return rc;
    const darr_t *a = AT(v->buf, (uint32_t)off, const darr_t);
    if (a->count > a->cap)
        return bad(v, off, "bad array counts");
    if (!a->cap)
        return 0;
    return claim(v, a->ioff, (uint64_t)a->cap * sizeof(dslot_t), "array items out of bounds");
}

/* A value: scalars completely; a container's own structure (its members' values are
 * the caller's to walk). */
static int check_value(vctx_t *v, uint64_t val, uint8_t type, uint64_t where)
{
    switch (type) {
    case L3_DOC_NULL:
        return val == 0 ? 0 : bad(v, where, "bad null");
    case L3_DOC_BOOL:
        return val <= 1 ? 0 : bad(v, where, "bad bool");
    case L3_DOC_INT:
        return 0;
    case L3_DOC_DOUBLE: {
        double d;
        memcpy(&d, &val, 8);
        return isfinite(d) ? 0 : bad(v, where, "non-finite double");
    }
    case L3_DOC_STRING:
        return check_string(v, val, false);
    case L3_DOC_BIGNUM:
        return check_string(v, val, true);
    case L3_DOC_OBJECT:
        return val > UINT32_MAX ? bad(v, where, "bad offset") : check_object(v, val);
    case L3_DOC_ARRAY:
        return val > UINT32_MAX ? bad(v, where, "bad offset") : check_array(v, val);
    default:
        return bad(v, where, "bad value type");
    }
}

/* Walk every value from the root, depth first, on an explicit stack: a container is
 * checked (node, tables, names) when reached and pushed; its members' values follow. */
static int walk(vctx_t *v, uint64_t val, uint8_t type, uint64_t where)
{
    vframe_t *st = malloc(sizeof(vframe_t) * L3_DOC_MAX_DEPTH);
    if (!st)
        return -ENOMEM;
    unsigned depth = 0;
    int rc;
    for (;;) {
        if ((rc = check_value(v, val, type, where)))
            break;
        if (type == L3_DOC_OBJECT || type == L3_DOC_ARRAY) {
            if (depth == L3_DOC_MAX_DEPTH) {
                rc = bad(v, where, "nesting too deep");
                break;
            }
            st[depth++] = (vframe_t){.node = (uint32_t)val, .i = 0, .type = type};
        }
        /* the next value: the next member of the innermost open container with one left */
        bool have = false;
        while (depth > 0 && !have) {
            vframe_t *f = &st[depth - 1];
            if (f->type == L3_DOC_ARRAY) {
                const darr_t *a = AT(v->buf, f->node, const darr_t);
                if (f->i < a->count) {
                    where = a->ioff + (uint64_t)f->i * sizeof(dslot_t);
                    const dslot_t *it = AT(v->buf, (uint32_t)where, const dslot_t);
                    val = it->val;
                    type = it->type;
                    f->i++;
                    have = true;
                    continue;
                }
            } else {
                /* the node's order array / entries were checked when it was reached */
                const dobj_t *o = AT(v->buf, f->node, const dobj_t);
                while (f->i < o->n) {
                    uint32_t eo = l3_doc__nth_off(v->buf, o, f->i++);
                    const dentry_t *e = AT(v->buf, eo, const dentry_t);
                    if (e->type == T_DELETED)
                        continue;
                    where = eo;
                    val = e->val;
                    type = e->type;
                    have = true;
                    break;
                }
                if (have)
                    continue;
            }
            depth--;
        }
        if (!have) {
            rc = 0;
            break;
        }
    }
    free(st);
    return rc;
}

static int verify_version(const uint8_t *buf, size_t len, l3_doc_error_t *err, uint16_t version)
{
    vctx_t v = {.buf = buf, .len = len, .v2 = version == L3_DOC_FORMAT_V2};
    int rc;
    if (!buf || ((uintptr_t)buf & 7)) {
        rc = bad(&v, 0, "buffer not 8-byte aligned");
        goto out;
    }
    size_t min_used = version == L3_DOC_PACKED_VERSION ? PACKED_MIN_USED : DOC_DATA_OFF;
    if (len < min_used) {
        rc = bad(&v, 0, "too short for a document");
        goto out;
    }
    const dhdr_t *h = HDR(buf);
    if (h->dh_magic != L3_DOC_MAGIC) {
        rc = bad(&v, 0, "bad magic");
        goto out;
    }
    if (h->dh_version != version) {
        rc = bad(&v, 4, "unsupported format version");
        goto out;
    }
    if (h->dh_used < min_used || h->dh_used > len || h->dh_used % 8) {
        rc = bad(&v, 8, "bad used size");
        goto out;
    }
    if (h->dh_garbage > h->dh_used) {
        rc = bad(&v, 12, "bad garbage size");
        goto out;
    }
    if (h->dh_flags & ~(uint16_t)L3_DOC_FLAG_SEALED) {
        rc = bad(&v, 6, "unknown flags");
        goto out;
    }
    if (h->dh_flags & L3_DOC_FLAG_SEALED) {
        dhdr_t tmp = *h;
        tmp.dh_flags = 0;
        tmp.dh_crc = 0;
        uint32_t c = l3_crc32c(0, &tmp, sizeof(tmp));
        c = l3_crc32c(c, buf + sizeof(tmp), h->dh_used - sizeof(tmp));
        if (c != h->dh_crc) {
            rc = bad(&v, 28, "checksum mismatch");
            goto out;
        }
    }
    if (version == L3_DOC_PACKED_VERSION)
        return l3_doc__p_verify(buf, len, err);
    v.used = h->dh_used;
    v.map = calloc((v.used / 8 + 63) / 64 + 1, 8);
    if (!v.map)
        return -ENOMEM;
    const dslot_t *root = AT(buf, L3_DOC_ROOT, const dslot_t);
    rc = walk(&v, root->val, root->type, L3_DOC_ROOT);
    free(v.map);
    /* D3: every byte after the root slot is either a live structure or counted garbage */
    if (rc == 0 && (uint64_t)DOC_DATA_OFF + v.claimed + h->dh_garbage != h->dh_used)
        rc = bad(&v, 12, "garbage accounting does not match the used size");
out:
    if (rc && err) {
        err->offset = v.at;
        err->msg = v.msg ? v.msg : l3_strerror(rc);
    }
    return rc;
}

int l3_doc_verify(const uint8_t *buf, size_t len, l3_doc_error_t *err)
{
    uint16_t version = L3_DOC_FORMAT_VERSION;
    if (buf && len >= sizeof(dhdr_t))
        memcpy(&version, buf + offsetof(dhdr_t, dh_version), sizeof(version));
    if (version != L3_DOC_PACKED_VERSION)
        version = L3_DOC_FORMAT_VERSION; /* anything else is refused as not the current version */
    return verify_version(buf, len, err, version);
}

int l3_doc_upgrade(uint8_t *buf, size_t len, l3_doc_error_t *err)
{
    if (len < DOC_DATA_OFF || !buf || ((uintptr_t)buf & 7) || HDR(buf)->dh_magic != L3_DOC_MAGIC ||
        HDR(buf)->dh_version != L3_DOC_FORMAT_V2)
        return l3_doc_verify(buf, len, err);
    int rc = verify_version(buf, len, err, L3_DOC_FORMAT_V2);
    if (rc)
        return rc;
    /* a verified version-2 document walks like a current one (nodes, order arrays and
     * entries are the same); compaction lays its tables out under the current rules, and
     * its tables are never larger than version 2's (cap + cap/4 + 1 < 2 cap slots), so the
     * result fits where the old one was */
    size_t bound = l3_doc_compact_bound(buf), out_len = 0;
    uint8_t *tmp = aligned_alloc(8, (bound + 7) & ~(size_t)7);
    if (!tmp)
        return -ENOMEM;
    rc = l3_doc_compact(buf, tmp, bound, &out_len);
    if (rc == 0 && out_len > len)
        rc = -ENOBUFS;
    if (rc == 0)
        rc = verify_version(tmp, out_len, err, L3_DOC_FORMAT_VERSION);
    if (rc == 0) {
        memcpy(buf, tmp, out_len);
        memset(buf + out_len, 0, len - out_len);
    }
    free(tmp);
    return rc;
}

int l3_doc_verify_upgrade(const uint8_t *doc, size_t len, uint8_t **ret_copy, l3_doc_error_t *err)
{
    *ret_copy = NULL;
    if (len < DOC_DATA_OFF || !doc || ((uintptr_t)doc & 7) || HDR(doc)->dh_magic != L3_DOC_MAGIC ||
        HDR(doc)->dh_version != L3_DOC_FORMAT_V2)
        return l3_doc_verify(doc, len, err);
    uint8_t *copy = aligned_alloc(8, (len + 7) & ~(size_t)7);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, doc, len);
    int rc = l3_doc_upgrade(copy, len, err);
    if (rc) {
        free(copy);
        return rc;
    }
    *ret_copy = copy;
    return 0;
}

void l3_doc_seal(uint8_t *buf)
{
    dhdr_t *h = HDR(buf);
    h->dh_flags = 0;
    h->dh_crc = 0;
    uint32_t c = l3_crc32c(0, buf, h->dh_used);
    h->dh_crc = c;
    h->dh_flags = L3_DOC_FLAG_SEALED;
}
