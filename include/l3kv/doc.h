/* SPDX-License-Identifier: MIT */
/*
 * l3kv/doc.h - the zero-parse document format.
 *
 * A document is one contiguous, 8-byte aligned buffer that is both the in-memory and
 * the wire form of a JSON value. Readers look values up in place; writers change them in
 * place where they fit and append where they do not. The byte layout is drawn in
 * src/doc/format.h; docs/document-format.md explains the design.
 *
 * Buffers are caller owned. A mutation that needs more room than `cap` returns -ENOBUFS,
 * sets d->need to the capacity it would need, and changes nothing: grow the buffer
 * (l3_doc_heap_grow() for malloc'd buffers) and call again. A mutation that would put a
 * member name more than L3_DOC_MAX_PROBE slots from its home in a hash table (names crafted
 * against the document's seed, which every binary copy shows) returns L3_EREHASH and
 * changes nothing: rebuild the document under a fresh seed (l3_doc_heap_reseed(),
 * l3_doc_rebuild()) and call again. L3_DOC_HEAP_DO does both. So no writer ever builds
 * a table verify() refuses, and every lookup ends within L3_DOC_MAX_PROBE + 1 probes.
 *
 * Every function except l3_doc_verify() assumes a verified buffer: check untrusted bytes
 * (network, disk, shared memory seen by a tool) with l3_doc_verify() first.
 *
 * Thread safety: none inside; callers serialise writers and keep readers off a buffer
 * while it is being changed (the store's document lock does that).
 */
#ifndef L3KV_DOC_H
#define L3KV_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Value types as seen through the API. */
typedef enum {
    L3_DOC_NULL = 0,
    L3_DOC_BOOL,
    L3_DOC_INT,    /* int64 */
    L3_DOC_DOUBLE, /* a number that round-trips exactly through a double */
    L3_DOC_BIGNUM, /* any other JSON number, kept exactly as its decimal text */
    L3_DOC_STRING,
    L3_DOC_OBJECT,
    L3_DOC_ARRAY,
    L3_DOC_TYPE_MAX
} l3_doc_type_t;

/**
 * The one nesting limit: no document holds more than L3_DOC_MAX_DEPTH nested objects and
 * arrays (a scalar root is depth 0, [] and {} are depth 1). The parser refuses deeper text,
 * every mutation refuses to build a deeper document (L3_EDEPTH, nothing changed) and
 * verify() refuses deeper bytes, so every walk over a document is bounded by it: they all
 * run on explicit stacks of this many frames, never on recursion the input decides.
 * A parse may ask for less (l3_doc_parse_opts_t.max_depth), never more.
 */
#define L3_DOC_MAX_DEPTH 512
#define L3_DOC_DEFAULT_MAX_DEPTH L3_DOC_MAX_DEPTH
#define L3_DOC_HARD_MAX_DEPTH L3_DOC_MAX_DEPTH
/** Slot offset of the root value (always valid in a verified document). */
#define L3_DOC_ROOT 32u

/** Where and why a parse or a verification failed. msg is a static string. */
typedef struct {
    size_t offset;
    const char *msg;
} l3_doc_error_t;

/** A handle on a document buffer being read or changed. */
typedef struct l3_doc {
    uint8_t *buf; /* the document; 8-byte aligned */
    size_t cap;   /* bytes usable at buf */
    size_t need;  /* set with -ENOBUFS: capacity the failed call needs */
    /* Optional undo journal: called with the address and length of bytes below the
     * document's used mark just before they are overwritten (appends past the mark are
     * undone by restoring the header). The store uses it for crash recovery. */
    void (*undo)(void *undo_ctx, const void *addr, size_t len);
    void *undo_ctx;
    /* Largest used size a mutation may give the document (0 = the format's 4 GiB - 8).
     * A change that would pass it returns L3_EDOCSIZE before anything is allocated or
     * written, and l3_doc_heap_grow() never allocates more than it. */
    size_t limit;
    /* Set with L3_EDOCSIZE when the change had to grow a full object or array (0 = not a
     * growth): that container's offset and type, for l3_doc_heap_compact_for(). Inside a
     * compaction, grow_cap is the capacity the copy of that container gets. */
    uint32_t grow_node, grow_cap;
    uint8_t grow_type;
} l3_doc_t;

/** A read-only view of one value. Pointers point into the document buffer. */
typedef struct {
    l3_doc_type_t type;
    uint32_t slot; /* offset of the value's slot */
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            const char *ptr; /* not NUL terminated */
            uint32_t len;
        } str;          /* STRING and BIGNUM (decimal text) */
        uint32_t count; /* OBJECT (live members), ARRAY (elements) */
    };
} l3_doc_val_t;

/** Path syntax: JSON Pointer (RFC 6901, "/a/b/0"), dotted ("a.b.0"), or auto (pointer if it starts with '/').
 */
enum { L3_DOC_PATH_AUTO = 0, L3_DOC_PATH_POINTER = 1, L3_DOC_PATH_DOTTED = 2 };

/* Flags for the set family. */
#define L3_DOC_SET_PATH_POINTER 0x01u /* path syntax, as above (default auto) */
#define L3_DOC_SET_PATH_DOTTED 0x02u
#define L3_DOC_SET_NO_CREATE 0x04u /* the target must exist (ENOTFOUND otherwise) */
#define L3_DOC_SET_SAME_TYPE 0x08u /* an existing target must have the same type (ETYPE otherwise) */
#define L3_DOC_SET_INSERT 0x10u    /* array index: insert before it (JSON Patch "add") instead of replacing */
#define L3_DOC_SET_MUST_EXIST_PARENT 0 /* (always: parents are never created implicitly) */

/* ---------------------------------------------------------------- parse / serialize */

typedef struct {
    unsigned max_depth; /* 0 = L3_DOC_MAX_DEPTH; capped at L3_DOC_MAX_DEPTH */
    size_t max_bytes;   /* largest document to build (L3_EDOCSIZE beyond); 0 = the format's limit */
} l3_doc_parse_opts_t;

/**
 * Parse strict RFC 8259 JSON text into a new malloc'd document with a fresh random hash
 * seed. Duplicate object keys: the last value wins, at the first key's position.
 * Returns 0 and sets *ret_buf (free() it) and *ret_len; or L3_ESYNTAX / L3_EDEPTH /
 * L3_ETOOBIG / L3_EDOCSIZE / -ENOMEM with *err filled (byte offset into json). Memory used:
 * the output (at most opts->max_bytes) plus the direct members of the open containers.
 * Does not block.
 */
int l3_doc_from_json(const char *json, size_t len, const l3_doc_parse_opts_t *opts, uint8_t **ret_buf,
                     size_t *ret_len, l3_doc_error_t *err);

/** Growable output buffer for serialisation. Zero-initialise; free(b->ptr) when done. */
typedef struct {
    char *ptr;
    size_t len;
    size_t cap;
} l3_buf_t;

/** Ensure room for `extra` more bytes. 0 or -ENOMEM. */
int l3_buf_reserve(l3_buf_t *b, size_t extra);
/** Append one member name to a JSON Pointer (RFC 6901): '/' then the name with ~ as ~0 and
 * / as ~1; the buffer stays NUL-terminated. 0 or -ENOMEM. */
int l3_doc_ptr_push(l3_buf_t *path, const char *key, size_t klen);

/**
 * Append the value at `slot` (L3_DOC_ROOT for the whole document) as compact JSON:
 * minimal escaping, doubles in shortest round-trip form, object keys in insertion order.
 * 0 or -ENOMEM.
 */
int l3_doc_to_json(const uint8_t *buf, uint32_t slot, l3_buf_t *out);

/** Check strict JSON syntax without building anything. 0 or L3_ESYNTAX/L3_EDEPTH with *err. */
int l3_doc_check_json(const char *json, size_t len, const l3_doc_parse_opts_t *opts, l3_doc_error_t *err);

/* ---------------------------------------------------------------- verification, header */

/**
 * Validate untrusted bytes: magic, version, sizes, every offset bounds checked, alignment,
 * types, UTF-8 of strings, number text of bignums, index consistency, no shared or cyclic
 * nodes, depth. O(len). 0 or L3_ECORRUPT with *err (err may be NULL).
 */
int l3_doc_verify(const uint8_t *buf, size_t len, l3_doc_error_t *err);
/** Like l3_doc_verify, and also accepts a document of the previous format version (2), checked
 *  by that version's rules and then rewritten in place into the current version (its new
 *  l3_doc_size() is at most len; the LSN and order are kept, the seal is not). Where bytes of
 *  an older writer enter: WAL replay, snapshot load, PUT of the binary form. 0,
 *  L3_ECORRUPT or -ENOMEM. */
int l3_doc_upgrade(uint8_t *buf, size_t len, l3_doc_error_t *err);
/** l3_doc_upgrade for read-only bytes: a current-version document is only verified (*ret_copy
 *  = NULL); a version-2 one is verified and rebuilt into a malloc'd copy (*ret_copy, free()
 *  it; its size is l3_doc_size(*ret_copy)). */
int l3_doc_verify_upgrade(const uint8_t *doc, size_t len, uint8_t **ret_copy, l3_doc_error_t *err);

/** Compute the document's CRC-32C and set its SEALED flag, for a copy leaving the process
 *  (binary transfer, snapshot): verify() then checks the checksum. Any change unseals. */
void l3_doc_seal(uint8_t *buf);

/** Bytes in use (the length to copy or send). */
size_t l3_doc_size(const uint8_t *buf);
/** Bytes inside the used size that no value references any more. */
size_t l3_doc_garbage(const uint8_t *buf);
/** LSN of the document's last change (0 for a fresh one); the store keeps it. */
uint64_t l3_doc_lsn(const uint8_t *buf);
void l3_doc_set_lsn(l3_doc_t *d, uint64_t lsn);

/** Create an empty document (root null) in d->buf. 0 or -ENOBUFS. */
int l3_doc_init(l3_doc_t *d);

/* ---------------------------------------------------------------- reading */

/** Resolve a path (syntax per L3_DOC_PATH_*; "" is the root) to a slot. 0, L3_EPATH or L3_ENOTFOUND. */
int l3_doc_lookup(const uint8_t *buf, const char *path, size_t len, int syntax, uint32_t *ret_slot);
/** Look up one member of the object at `slot` by key. 0, L3_ETYPE (not an object) or L3_ENOTFOUND. */
int l3_doc_obj_find(const uint8_t *buf, uint32_t slot, const char *key, size_t klen, uint32_t *ret_slot);
/** Slot of element `idx` of the array at `slot`. 0, L3_ETYPE or L3_ENOTFOUND. */
int l3_doc_arr_at(const uint8_t *buf, uint32_t slot, uint64_t idx, uint32_t *ret_slot);
/** Describe the value at a slot. */
void l3_doc_val(const uint8_t *buf, uint32_t slot, l3_doc_val_t *ret);
/** Look up a path and describe the value. */
int l3_doc_get(const uint8_t *buf, const char *path, size_t len, int syntax, l3_doc_val_t *ret);

/** Iterate over an object's live members in insertion order. *inout_pos starts at 0.
 *  Returns 1 with key/slot set, 0 at the end, L3_ETYPE if `slot` is not an object. */
int l3_doc_obj_next(const uint8_t *buf, uint32_t slot, uint32_t *inout_pos, const char **ret_key,
                    uint32_t *ret_klen, uint32_t *ret_slot);

/* ---------------------------------------------------------------- writing */

/** A scalar to store. For STRING/BIGNUM, str/len (string bytes must be valid UTF-8; bignum valid JSON number
 * text). */
typedef struct {
    l3_doc_type_t type; /* NULL, BOOL, INT, DOUBLE, BIGNUM, STRING; OBJECT/ARRAY mean empty {} / [] */
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            const char *ptr;
            size_t len;
        } str;
    };
} l3_doc_scalar_t;

/**
 * Fast path: overwrite the INT at `slot` with v, one aligned 8-byte store. The slot must
 * hold an INT (L3_ETYPE otherwise). Never grows the document.
 */
int l3_doc_slot_set_int(l3_doc_t *d, uint32_t slot, int64_t v);

/**
 * Set the value at `path` (flags L3_DOC_SET_*). The parent must exist; a missing last
 * object key is added at the end; an array index equal to the length (or "-") appends.
 * Ints, doubles and bools are overwritten in place; a string that fits its slot is
 * overwritten in place; anything else is appended and the old bytes counted as garbage.
 * Returns 0, -ENOBUFS (d->need set, nothing changed), L3_EPATH, L3_ENOTFOUND, L3_ETYPE,
 * L3_ERANGE, L3_ETOOBIG, L3_EDOCSIZE (past d->limit), L3_EDEPTH (the value would sit deeper
 * than L3_DOC_MAX_DEPTH), L3_EREHASH (see above); nothing changed on any failure.
 * On success *ret_slot (may be NULL) is the value's slot.
 */
int l3_doc_set(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const l3_doc_scalar_t *v,
               uint32_t *ret_slot);

/** Set `path` to a copy of the value at `src_slot` of the verified document `src`. Same returns as
 * l3_doc_set. */
int l3_doc_set_copy(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const uint8_t *src,
                    uint32_t src_slot, uint32_t *ret_slot);

/** Parse JSON text and set `path` to it. Also returns L3_ESYNTAX/L3_EDEPTH with *err. */
int l3_doc_set_json(l3_doc_t *d, const char *path, size_t plen, unsigned flags, const char *json, size_t jlen,
                    l3_doc_error_t *err);

/** Remove the value at path (object member or array element; not the root). 0, -ENOBUFS, L3_EPATH,
 * L3_ENOTFOUND. */
int l3_doc_delete(l3_doc_t *d, const char *path, size_t plen, unsigned flags);

/** Atomically add `delta` to the INT at path; *ret_new gets the result. L3_ETYPE if not an int, L3_ERANGE on
 * overflow. */
int l3_doc_incr(l3_doc_t *d, const char *path, size_t plen, unsigned flags, int64_t delta, int64_t *ret_new);

/* ---------------------------------------------------------------- compaction and statistics */

/** True when garbage is large enough that compaction pays (more than a quarter of the used bytes and >= 4
 * KiB). */
bool l3_doc_should_compact(const uint8_t *buf);
/** Upper bound of the compacted size of buf. */
size_t l3_doc_compact_bound(const uint8_t *buf);
/** Rewrite buf into dst (dst_cap >= l3_doc_compact_bound) with no garbage; keeps order and
 *  LSN (and the seed, unless a table would pass the probe bound: then a fresh one). 0 or -ENOBUFS. */
int l3_doc_compact(const uint8_t *buf, uint8_t *dst, size_t dst_cap, size_t *ret_len);
/** Like l3_doc_compact, under a fresh random hash seed (the answer to L3_EREHASH). */
int l3_doc_rebuild(const uint8_t *buf, uint8_t *dst, size_t dst_cap, size_t *ret_len);
/** Bytes a copy of the value at slot adds to a document (l3_doc_set_copy), and its nesting depth. */
size_t l3_doc_copy_size(const uint8_t *buf, uint32_t slot, unsigned *ret_depth);

typedef struct {
    size_t used;      /* bytes in use */
    size_t garbage;   /* unreferenced bytes inside `used` */
    size_t objects;   /* object nodes */
    size_t arrays;    /* array nodes */
    size_t scalars;   /* scalar values (strings included) */
    size_t max_depth; /* deepest nesting (root = 0) */
} l3_doc_stats_t;

void l3_doc_stats(const uint8_t *buf, l3_doc_stats_t *ret);

/** Where a document's bytes go: every byte of dh_used falls in exactly one field (the
 *  layout is in src/doc/format.h). Scalars other than strings live in their slot or entry
 *  and take no bytes of their own. */
typedef struct {
    size_t header;      /* document header */
    size_t root;        /* root slot */
    size_t obj_nodes;   /* object nodes */
    size_t entries;     /* live object entries (value, hash, name up to 12 bytes inline) */
    size_t entry_slack; /* entry storage not holding a live member: spare capacity, tombstones,
                           free hash-table slots */
    size_t order;       /* insertion-order arrays of hashed objects, padding to 8 included */
    size_t arr_nodes;   /* array nodes */
    size_t items;       /* live array slots */
    size_t item_slack;  /* spare array capacity */
    size_t str_heads;   /* string and bignum block headers */
    size_t str_bytes;   /* string and bignum text */
    size_t str_pad;     /* string block capacity beyond the text (spare room, padding to 8) */
    size_t names;       /* member names longer than the inline limit */
    size_t name_pad;    /* their padding to 8 */
    size_t garbage;     /* unreferenced bytes (dh_garbage) */
    /* packed form (src/doc/packed.h) only; str_bytes counts its string text */
    size_t p_framing; /* value tags, lengths, counts and container sizes */
    size_t p_names;   /* member name bytes */
    size_t p_scalars; /* int and double payloads */
    size_t p_pad;     /* padding of the root value to 8 */
    int64_t other;    /* used minus all of the above: 0 for a well-formed document */
    size_t used;      /* bytes in use (dh_used) */
} l3_doc_breakdown_t;

/** Fill *ret with the byte breakdown of a verified document. Iterative, bounded by the
 *  document depth limit (deeper parts are left in `other`). */
void l3_doc_breakdown(const uint8_t *buf, l3_doc_breakdown_t *ret);

/* ---------------------------------------------------------------- the packed form
 *
 * A small document can be kept packed (src/doc/packed.h): a byte-aligned depth-first
 * encoding, a third to a half of the full form's size, read through the whole reading API
 * above (lookups scan; slots are offsets of value tags), verified by l3_doc_verify(), but
 * never changed in place: the set family, delete, incr and the patches return -EINVAL on
 * it. l3_doc_unpack() gives the full form, which they change. */

/** Largest packed document (dh_used); an object of it holds at most 64 members, an array 256 elements. */
#define L3_DOC_PACK_MAX_BYTES 4096u
/** True when buf (a verified document) is in the packed form. */
bool l3_doc_is_packed(const uint8_t *buf);
/** Pack the verified full-form document buf into dst (cap bytes, 8-byte aligned; the LSN
 *  is kept, the seal is not). 0 and *ret_len; L3_ETOOBIG when it does not fit in cap or
 *  L3_DOC_PACK_MAX_BYTES, or an object has more than 64 members or an array more than 256
 *  elements (it stays in the full form); -EINVAL when buf is packed already. */
int l3_doc_pack(const uint8_t *buf, uint8_t *dst, size_t cap, size_t *ret_len);
/** The largest full form of a packed document (at most 32 bytes of it per packed byte). */
#define L3_DOC_PACK_FULL_BOUND (32u * L3_DOC_PACK_MAX_BYTES + 64u)
/** Parse JSON text straight into the packed form in dst (cap bytes, 8-byte aligned): the
 *  bytes l3_doc_pack(l3_doc_from_json(...)) gives, without building the full form. 0 and
 *  *ret_len; < 0 when it does not pack (too large, a container past the bounds, a duplicate
 *  member name) or the text is not valid, or opts->max_bytes is below L3_DOC_PACK_FULL_BOUND:
 *  the caller then parses with l3_doc_from_json, which reports errors. */
int l3_doc_pack_json(const char *json, size_t len, const l3_doc_parse_opts_t *opts, uint8_t *dst, size_t cap,
                     size_t *ret_len);
/** The full form of the verified packed document buf, malloc'd (free() it), LSN kept.
 *  0, -ENOMEM, -EINVAL (not packed). */
int l3_doc_unpack(const uint8_t *buf, uint8_t **ret_buf, size_t *ret_len);

/* ---------------------------------------------------------------- malloc-backed convenience */

/** Allocate an empty document with at least cap bytes. 0 or -ENOMEM. Free with l3_doc_heap_free. */
int l3_doc_heap_new(l3_doc_t *d, size_t cap);
/** Adopt a malloc'd buffer (e.g. from l3_doc_from_json) of `len` bytes. */
void l3_doc_heap_adopt(l3_doc_t *d, uint8_t *buf, size_t len);
/** As l3_doc_heap_adopt for a document in either form: a packed one is replaced by its full
 *  form (buf is freed). 0, or -ENOMEM with buf freed and d empty. */
int l3_doc_heap_adopt_any(l3_doc_t *d, uint8_t *buf, size_t len);
/** realloc so that cap >= d->need (at least doubling). 0 or -ENOMEM. */
int l3_doc_heap_grow(l3_doc_t *d);
/** Compact in place (new allocation) if l3_doc_should_compact. 0 or -ENOMEM. */
int l3_doc_heap_maybe_compact(l3_doc_t *d);
/** Rebuild under a fresh hash seed (new allocation; LSN, undo hook and limit kept). 0 or -ENOMEM. */
int l3_doc_heap_reseed(l3_doc_t *d);
/** After L3_EDOCSIZE: compact (new allocation) so that the change may fit the limit after
 *  all - the garbage dropped and, when the change had to grow a full container
 *  (d->grow_node), that container given room: twice, 1/8 more or one more than its count,
 *  the most that fits. 0, L3_EDOCSIZE (nothing to gain), -ENOMEM or -EAGAIN. */
int l3_doc_heap_compact_for(l3_doc_t *d);
/** The compaction l3_doc_heap_compact_for makes, for a document in any buffer: planned from
 *  `failed` (the handle of a change that returned L3_EDOCSIZE: its grow_node, grow_type and
 *  limit) into *ret_plan. Returns the bytes the compacted copy needs, or 0 when compacting
 *  cannot help (no garbage, no growth that fits the limit; or a packed document). */
size_t l3_doc_compact_plan(const uint8_t *buf, const l3_doc_t *failed, l3_doc_t *ret_plan);
/** Compact buf into dst as planned (fresh: under a new hash seed). 0, -ENOBUFS (dst_cap
 *  below the planned bytes), -EAGAIN, -EINVAL (packed). */
int l3_doc_compact_planned(const uint8_t *buf, const l3_doc_t *plan, bool fresh, uint8_t *dst, size_t dst_cap,
                           size_t *ret_len);
void l3_doc_heap_free(l3_doc_t *d);

/** Run a mutation, growing a heap document on -ENOBUFS, compacting it once on L3_EDOCSIZE
 *  (l3_doc_heap_compact_for) and rebuilding it under a fresh seed on L3_EREHASH (a few
 *  times at most), then compacting if garbage warrants it. */
#define L3_DOC_HEAP_DO(d, call)                                                                              \
    ({                                                                                                       \
        int rc__;                                                                                            \
        unsigned reseeds__ = 0, compacts__ = 0;                                                              \
        for (;;) {                                                                                           \
            rc__ = (call);                                                                                   \
            if (rc__ == -ENOBUFS && l3_doc_heap_grow(d) == 0)                                                \
                continue;                                                                                    \
            if (rc__ == L3_EDOCSIZE && compacts__++ == 0 && l3_doc_heap_compact_for(d) == 0)                 \
                continue;                                                                                    \
            if (rc__ == L3_EREHASH && reseeds__++ < 4 && l3_doc_heap_reseed(d) == 0)                         \
                continue;                                                                                    \
            break;                                                                                           \
        }                                                                                                    \
        if (rc__ >= 0)                                                                                       \
            (void)l3_doc_heap_maybe_compact(d);                                                              \
        rc__;                                                                                                \
    })

/* ---------------------------------------------------------------- patches (RFC 7396, RFC 6902) */

/**
 * Apply a JSON Merge Patch (RFC 7396) to the heap document d. Not atomic on its own:
 * apply to a copy when failure must leave the original untouched. 0, L3_ESYNTAX (err set),
 * -ENOMEM, L3_ETOOBIG.
 */
int l3_doc_merge_patch(l3_doc_t *d, const char *patch, size_t len, l3_doc_error_t *err);

/**
 * Apply a JSON Patch (RFC 6902: add, remove, replace, move, copy, test) to the heap
 * document d. On failure d may be partly changed: apply to a copy. 0, L3_ESYNTAX (patch
 * text or shape, err->msg says which), L3_EPATH, L3_ENOTFOUND, L3_ETYPE (a failed "test"
 * returns L3_ETYPE with err->msg "test failed"), -ENOMEM.
 */
int l3_doc_json_patch(l3_doc_t *d, const char *patch, size_t len, l3_doc_error_t *err);

#endif /* L3KV_DOC_H */
