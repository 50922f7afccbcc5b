/* SPDX-License-Identifier: MIT */
/*
 * dtop.h - run one document mutation under every contract at once (tests only).
 *
 * dt_apply() runs the mutation twice:
 *   1. on a copy in a caller-owned buffer with cap == used size, so anything that needs room
 *      returns -ENOBUFS first: the copy must be byte-for-byte unchanged, d->need > cap, and
 *      after growing to exactly d->need the retry must succeed with the same result;
 *   2. on the real document with the undo journal recorded: the recorded old bytes, applied
 *      in reverse, must restore the used bytes as they were before the call.
 * Both runs must agree (rc and resulting JSON). A failing mutation (other than -ENOBUFS)
 * must leave the document's JSON and size unchanged. A successful one must verify.
 */
#ifndef L3KV_TESTS_DTOP_H
#define L3KV_TESTS_DTOP_H

#include "dt.h"

typedef enum { OP_SET, OP_SET_JSON, OP_DEL, OP_INCR, OP_SLOT_INT, OP_SET_COPY, OP_LSN } dt_op_kind_t;

typedef struct {
    dt_op_kind_t kind;
    const char *path;
    size_t plen; /* 0: strlen(path) */
    unsigned flags;
    l3_doc_scalar_t v;                /* OP_SET */
    const char *json;                 /* OP_SET_JSON */
    int64_t delta;                    /* OP_INCR; value for OP_SLOT_INT; lsn for OP_LSN */
    uint32_t slot;                    /* OP_SLOT_INT */
    const uint8_t *src;               /* OP_SET_COPY */
    uint32_t src_slot;                /* OP_SET_COPY */
} dt_op_t;

typedef struct {
    int rc;
    int64_t i;     /* OP_INCR result */
    uint32_t slot; /* OP_SET / OP_SET_COPY ret_slot */
    l3_doc_error_t err;
} dt_res_t;

static inline int dt_op_run(l3_doc_t *d, const dt_op_t *op, dt_res_t *r)
{
    size_t plen = op->path ? (op->plen ? op->plen : strlen(op->path)) : 0;
    memset(r, 0, sizeof(*r));
    r->slot = 0xdeadbeef;
    switch (op->kind) {
    case OP_SET:
        r->rc = l3_doc_set(d, op->path, plen, op->flags, &op->v, &r->slot);
        break;
    case OP_SET_JSON:
        r->rc = l3_doc_set_json(d, op->path, plen, op->flags, op->json, strlen(op->json), &r->err);
        break;
    case OP_DEL:
        r->rc = l3_doc_delete(d, op->path, plen, op->flags);
        break;
    case OP_INCR:
        r->rc = l3_doc_incr(d, op->path, plen, op->flags, op->delta, &r->i);
        break;
    case OP_SLOT_INT:
        r->rc = l3_doc_slot_set_int(d, op->slot, op->delta);
        break;
    case OP_SET_COPY:
        r->rc = l3_doc_set_copy(d, op->path, plen, op->flags, op->src, op->src_slot, &r->slot);
        break;
    case OP_LSN:
        l3_doc_set_lsn(d, (uint64_t)op->delta);
        r->rc = 0;
        break;
    }
    return r->rc;
}

static inline uint8_t *dt_aligned_copy(const uint8_t *src, size_t len, size_t cap)
{
    void *p = NULL;
    if (posix_memalign(&p, 8, cap ? cap : 8) != 0)
        exit(T_HARNESS_ERROR);
    memcpy(p, src, len);
    return p;
}

/** Number of ops that had to grow (for tests that want to be sure the ENOBUFS path ran). */
static unsigned long dt_enobufs_seen __attribute__((unused));

/**
 * Apply op to the heap document d under all contracts; returns the rc (never -ENOBUFS).
 * `where` names the call site in failure messages.
 */
static inline int dt_apply_at(l3_doc_t *d, const dt_op_t *op, dt_res_t *res, const char *where)
{
    dt_res_t r1, r2;
    size_t used0 = l3_doc_size(d->buf);
    char *json0 = dt_json(d->buf, L3_DOC_ROOT);
    int fails0 = t_failures;

    /* 1. exact-capacity copy: ENOBUFS contract */
    l3_doc_t c = {.buf = dt_aligned_copy(d->buf, used0, used0), .cap = used0};
    int tries = 0;
    while (dt_op_run(&c, op, &r1) == -ENOBUFS) {
        dt_enobufs_seen++;
        CHECK(tries == 0); /* after growing to need, the retry must succeed */
        CHECK(c.need > c.cap);
        CHECK(memcmp(c.buf, d->buf, used0) == 0);
        CHECK_EQ_INT(l3_doc_size(c.buf), used0);
        if (tries++ > 0 || c.need <= c.cap || c.need > ((size_t)1 << 33))
            break;
        uint8_t *nb = dt_aligned_copy(c.buf, used0, c.need);
        free(c.buf);
        c.buf = nb;
        c.cap = c.need;
    }

    /* 2. the real document with the undo journal */
    dt_undo_t u = {0};
    size_t mark = 0;
    uint8_t *snap = NULL;
    for (;;) {
        free(snap);
        snap = dt_undo_begin(&u, d, &mark);
        if (dt_op_run(d, op, &r2) != -ENOBUFS)
            break;
        CHECK(memcmp(d->buf, snap, mark) == 0);
        d->undo = NULL;
        if (l3_doc_heap_grow(d) != 0)
            exit(T_HARNESS_ERROR);
    }
    d->undo = NULL;
    d->undo_ctx = NULL;

    CHECK_EQ_INT(r1.rc, r2.rc);
    if (r2.rc == 0) {
        CHECK(dt_undo_restores(&u, d, snap, mark));
        DT_CHECK_VERIFY(d->buf);
        CHECK(l3_doc_garbage(d->buf) <= l3_doc_size(d->buf));
        char *j1 = dt_json(c.buf, L3_DOC_ROOT), *j2 = dt_json(d->buf, L3_DOC_ROOT);
        CHECK_EQ_STR(j1, j2);
        free(j1);
        free(j2);
        if (op->kind == OP_INCR)
            CHECK_EQ_INT(r1.i, r2.i);
    } else {
        char *j = dt_json(d->buf, L3_DOC_ROOT);
        CHECK_EQ_STR(j, json0);
        CHECK_EQ_INT(l3_doc_size(d->buf), used0);
        free(j);
    }
    if (t_failures != fails0)
        fprintf(stderr, "  ^ in dt_apply at %s (op %d path '%s', rc %d)\n", where, op->kind,
                op->path ? op->path : "", r2.rc);
    free(c.buf);
    free(snap);
    free(json0);
    dt_undo_reset(&u);
    if (res)
        *res = r2;
    return r2.rc;
}

#define DT_STR2(x) #x
#define DT_STR(x) DT_STR2(x)
#define dt_apply(d, op, res) dt_apply_at((d), (op), (res), __FILE__ ":" DT_STR(__LINE__))

/* Shorthands building ops. */
#define OPSET(p, fl, ...) ((dt_op_t){.kind = OP_SET, .path = (p), .flags = (fl), .v = __VA_ARGS__})
#define OPJSON(p, fl, j) ((dt_op_t){.kind = OP_SET_JSON, .path = (p), .flags = (fl), .json = (j)})
#define OPDEL(p, fl) ((dt_op_t){.kind = OP_DEL, .path = (p), .flags = (fl)})
#define OPINCR(p, fl, dl) ((dt_op_t){.kind = OP_INCR, .path = (p), .flags = (fl), .delta = (dl)})
#define SINT(x) ((l3_doc_scalar_t){.type = L3_DOC_INT, .i = (x)})
#define SDBL(x) ((l3_doc_scalar_t){.type = L3_DOC_DOUBLE, .d = (x)})
#define SBOOL(x) ((l3_doc_scalar_t){.type = L3_DOC_BOOL, .b = (x)})
#define SNULL ((l3_doc_scalar_t){.type = L3_DOC_NULL})
#define SOBJ ((l3_doc_scalar_t){.type = L3_DOC_OBJECT})
#define SARR ((l3_doc_scalar_t){.type = L3_DOC_ARRAY})
#define SSTR(s) ((l3_doc_scalar_t){.type = L3_DOC_STRING, .str = {(s), strlen(s)}})
#define SBIG(s) ((l3_doc_scalar_t){.type = L3_DOC_BIGNUM, .str = {(s), strlen(s)}})

#endif
