/* SPDX-License-Identifier: MIT */
/*
 * packed.h - the packed form of a small document (internal to src/doc).
 *
 * A document the store keeps as it was written (a PUT, a patch result) and that is small
 * is kept packed: one byte-aligned, depth-first encoding of its values, read where it lies
 * and never changed in place. The first change of a single field turns it back into the
 * full form of format.h (l3_doc_unpack), which is changed in place from then on.
 *
 * Header: the 32-byte header of format.h with dh_version L3_DOC_PACKED_VERSION, dh_seed 0
 * and dh_garbage 0; dh_flags and dh_crc as in the full form (the CRC covers [0, dh_used)).
 * The root value starts at L3_DOC_ROOT (32). dh_used = the end of the root value rounded up
 * to 8, at least 40 and at most L3_DOC_PACKED_MAX; the bytes between are zero.
 *
 * Value: a tag byte, then its payload (integers little endian; var = LEB128, at most 5
 * bytes, value < 2^32):
 *   tag   payload                    value
 *   0x00  -                          null
 *   0x01  -                          false
 *   0x02  -                          true
 *   0x03  1 byte                     int (int8)
 *   0x04  2 bytes                    int (int16)
 *   0x05  4 bytes                    int (int32)
 *   0x06  8 bytes                    int (int64)
 *   0x07  8 bytes                    double (IEEE 754 bits)
 *   0x08  var len, len bytes         string (UTF-8)
 *   0x09  var len, len bytes         bignum (its JSON number text)
 *   0x0a  var count, u16 size, ...   object: count members of (var klen, klen name bytes, value)
 *   0x0b  var count, u16 size, ...   array: count values
 *   0x40+n  n bytes (n < 64)         string of n bytes
 * size = the bytes of the members or elements after the size field. Writers use the
 * narrowest int and the short string tag; readers accept any.
 *
 * Bounds (verify() refuses what passes them, the packer never builds it): dh_used at most
 * L3_DOC_PACKED_MAX (4 KiB), at most L3_DOC_PACKED_MEMBERS members per object (no two with
 * the same name) and L3_DOC_PACKED_ITEMS elements per array, so a lookup scans a bounded
 * list, and nesting at most L3_DOC_MAX_DEPTH.
 *
 * A slot (the uint32 the reading API passes around) of a packed document is the offset of
 * a value's tag byte; the root's is L3_DOC_ROOT, as in the full form.
 */
#ifndef L3KV_DOC_PACKED_H
#define L3KV_DOC_PACKED_H

#include "format.h"

#define L3_DOC_PACKED_VERSION 4u
#define L3_DOC_PACKED_MAX L3_DOC_PACK_MAX_BYTES
#define L3_DOC_PACKED_MEMBERS 64u
#define L3_DOC_PACKED_ITEMS 256u
#define PACKED_MIN_USED 40u

enum {
    PT_NULL = 0x00,
    PT_FALSE = 0x01,
    PT_TRUE = 0x02,
    PT_I8 = 0x03,
    PT_I16 = 0x04,
    PT_I32 = 0x05,
    PT_I64 = 0x06,
    PT_DOUBLE = 0x07,
    PT_STR = 0x08,
    PT_BIGNUM = 0x09,
    PT_OBJECT = 0x0a,
    PT_ARRAY = 0x0b,
    PT_SHORT = 0x40, /* 0x40 | n: string of n < 64 bytes */
};

static inline bool l3_doc__packed(const uint8_t *buf)
{
    return HDR(buf)->dh_version == L3_DOC_PACKED_VERSION;
}

/* A decoded value of a verified packed document. */
typedef struct {
    uint8_t type;       /* l3_doc_type_t */
    uint32_t count;     /* OBJECT, ARRAY */
    uint32_t body, end; /* OBJECT, ARRAY: first member or element, end of the last */
    int64_t i;          /* INT; BOOL: 0/1 */
    double d;           /* DOUBLE */
    const uint8_t *s;   /* STRING, BIGNUM */
    uint32_t slen;      /* STRING, BIGNUM */
} l3_doc__pval_t;

static inline uint16_t l3_doc__rd_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

/* A container's 16-bit size, little endian. */
static inline void l3_doc__put_u16(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)x;
    p[1] = (uint8_t)(x >> 8);
}

/* Bytes of the var (LEB128) encoding of x. */
static inline uint32_t l3_doc__var_len(uint32_t x)
{
    return x < 0x80u ? 1 : x < 0x4000u ? 2 : x < 0x200000u ? 3 : x < 0x10000000u ? 4 : 5;
}

/* Write x as a var at p; returns the byte after it. */
static inline uint8_t *l3_doc__put_var(uint8_t *p, uint32_t x)
{
    while (x >= 0x80) {
        *p++ = (uint8_t)(x | 0x80);
        x >>= 7;
    }
    *p++ = (uint8_t)x;
    return p;
}

/* Bytes of a text value's head: a short string's tag, or a tag and a var length. */
static inline uint32_t l3_doc__text_head_len(bool string, uint32_t len)
{
    return string && len < 64 ? 1 : 1 + l3_doc__var_len(len);
}

/* Write a string's or bignum's head (its bytes follow); returns the byte after it. */
static inline uint8_t *l3_doc__put_text_head(uint8_t *p, bool string, uint32_t len)
{
    if (string && len < 64) {
        *p++ = (uint8_t)(PT_SHORT | len);
        return p;
    }
    *p++ = string ? PT_STR : PT_BIGNUM;
    return l3_doc__put_var(p, len);
}

/* Write a null, bool, int (the narrowest width that holds it) or double (at most 9 bytes);
 * returns the byte after it. */
static inline uint8_t *l3_doc__put_scalar(uint8_t *p, uint64_t val, uint8_t type)
{
    int64_t x = (int64_t)val;
    unsigned w = 0;
    if (type == L3_DOC_NULL) {
        *p++ = PT_NULL;
    } else if (type == L3_DOC_BOOL) {
        *p++ = val ? PT_TRUE : PT_FALSE;
    } else if (type == L3_DOC_DOUBLE) {
        *p++ = PT_DOUBLE;
        w = 8;
    } else {
        unsigned lg = x >= INT8_MIN && x <= INT8_MAX     ? 0
                      : x >= INT16_MIN && x <= INT16_MAX ? 1
                      : x >= INT32_MIN && x <= INT32_MAX ? 2
                                                         : 3;
        *p++ = (uint8_t)(PT_I8 + lg);
        w = 1u << lg;
    }
    memcpy(p, &val, w); /* little endian: the low bytes */
    return p + w;
}

/* The used size of a packed document whose root value ends at end: padded to 8, at least
 * PACKED_MIN_USED. */
static inline uint32_t l3_doc__p_used(uint32_t end)
{
    return end < PACKED_MIN_USED ? PACKED_MIN_USED : a8(end);
}

/* Finish a packed document whose root value ends at end: zero its padding and record its
 * used size in the header. The used size, or 0 when it passes cap (nothing written). */
static inline uint32_t l3_doc__p_finish(uint8_t *buf, uint32_t end, size_t cap)
{
    uint32_t used = l3_doc__p_used(end);
    if (used > cap)
        return 0;
    memset(buf + end, 0, used - end);
    HDR(buf)->dh_used = used;
    return used;
}

/* A var (LEB128) at *off of a verified document. */
static inline uint32_t l3_doc__rd_var(const uint8_t *buf, uint32_t *off)
{
    uint32_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
        uint8_t b = buf[(*off)++];
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
}

/* Decode the value whose tag is at off; returns the offset just past it. */
static inline uint32_t l3_doc__p_decode(const uint8_t *buf, uint32_t off, l3_doc__pval_t *v)
{
    uint8_t tag = buf[off++];
    v->i = 0;
    if (tag >= PT_SHORT) {
        v->type = L3_DOC_STRING;
        v->slen = tag - PT_SHORT;
        v->s = buf + off;
        return off + v->slen;
    }
    switch (tag) {
    case PT_NULL:
        v->type = L3_DOC_NULL;
        return off;
    case PT_FALSE:
    case PT_TRUE:
        v->type = L3_DOC_BOOL;
        v->i = tag == PT_TRUE;
        return off;
    case PT_I8:
    case PT_I16:
    case PT_I32:
    case PT_I64: {
        /* little endian, sign-extended from the top byte of its width */
        unsigned w = 1u << (tag - PT_I8);
        uint64_t x = 0;
        memcpy(&x, buf + off, w);
        v->type = L3_DOC_INT;
        v->i = w == 8 ? (int64_t)x : (int64_t)(x << (64 - 8 * w)) >> (64 - 8 * w);
        return off + w;
    }
    case PT_DOUBLE:
        v->type = L3_DOC_DOUBLE;
        memcpy(&v->d, buf + off, 8);
        return off + 8;
    case PT_STR:
    case PT_BIGNUM:
        v->type = tag == PT_STR ? L3_DOC_STRING : L3_DOC_BIGNUM;
        v->slen = l3_doc__rd_var(buf, &off);
        v->s = buf + off;
        return off + v->slen;
    default: /* PT_OBJECT, PT_ARRAY */
        v->type = tag == PT_OBJECT ? L3_DOC_OBJECT : L3_DOC_ARRAY;
        v->count = l3_doc__rd_var(buf, &off);
        v->body = off + 2;
        v->end = v->body + l3_doc__rd_u16(buf + off);
        return v->end;
    }
}

/* The name of the member at off (*ret_klen, *ret_name); returns the offset of its value. */
static inline uint32_t l3_doc__p_name(const uint8_t *buf, uint32_t off, const uint8_t **ret_name,
                                      uint32_t *ret_klen)
{
    *ret_klen = l3_doc__rd_var(buf, &off);
    *ret_name = buf + off;
    return off + *ret_klen;
}

/* The offset just past the value at off: one table load for the fixed-size tags. */
static inline uint32_t l3_doc__p_skip(const uint8_t *buf, uint32_t off)
{
    static const uint8_t fixed[PT_ARRAY + 1] = {1, 1, 1, 2, 3, 5, 9, 9, 0, 0, 0, 0};
    uint8_t tag = buf[off];
    if (tag >= PT_SHORT)
        return off + 1 + (tag - PT_SHORT);
    if (fixed[tag])
        return off + fixed[tag];
    off++;
    uint32_t n = l3_doc__rd_var(buf, &off);
    return tag <= PT_BIGNUM ? off + n : off + 2 + l3_doc__rd_u16(buf + off);
}

void l3_doc__p_val(const uint8_t *buf, uint32_t slot, l3_doc_val_t *ret);
/* Is one of the members in [body, before) of a (verified) object named [name, name + nl)? */
bool l3_doc__p_named(const uint8_t *buf, uint32_t body, uint32_t before, const uint8_t *name, uint32_t nl);
int l3_doc__p_obj_find(const uint8_t *buf, uint32_t slot, const char *key, size_t klen, uint32_t *ret_slot);
int l3_doc__p_arr_at(const uint8_t *buf, uint32_t slot, uint64_t idx, uint32_t *ret_slot);
int l3_doc__p_obj_next(const uint8_t *buf, uint32_t slot, uint32_t *inout_pos, const char **ret_key,
                       uint32_t *ret_klen, uint32_t *ret_slot);
/* The value at slot as JSON text (emit.c). */
int l3_doc__p_emit(const uint8_t *buf, uint32_t slot, l3_buf_t *out);
/* verify() of a packed document (the header's magic and version already checked). */
int l3_doc__p_verify(const uint8_t *buf, size_t len, l3_doc_error_t *err);
void l3_doc__p_stats(const uint8_t *buf, l3_doc_stats_t *ret);
void l3_doc__p_breakdown(const uint8_t *buf, l3_doc_breakdown_t *ret);

#endif
