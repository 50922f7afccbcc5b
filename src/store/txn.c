/* SPDX-License-Identifier: MIT */
/*
 * txn.c - multi-key transactions (l3_store_txn_*): several documents changed as one unit.
 *
 * Runs in: workers (POST /batch with "atomic": true), tests.
 * How: begin takes the stripe lock of every key, in ascending stripe order (L7 in tx.c),
 * and holds them to the end. The operations work on private heap copies of the documents
 * (each write builds the new version from a copy of the current one and keeps it only if
 * it succeeds, so a failed call changes nothing) and queue the WAL record a single-key
 * call would log, with its own LSN; reads see the transaction's own writes. Commit then
 * stores every changed document in one transaction record of the caller's process slot
 * (tx_multi: the stripes and blocks listed in its undo area's tail), hands the queued
 * records to the WAL group hook as one group, and commits: a process killed anywhere in
 * between leaves the record for the next locker of any of its stripes to roll back (or
 * forward, when the WAL probe finds the group's last record published), exactly like a
 * single-key change. Nothing touches the arena before commit, so an abort only unlocks.
 * Recovery replays a group's records whole or not at all (replay.c W6); each one is the
 * record of a single-key operation, so l3_store_replay applies it with the existing code.
 * Invariants:
 *  N1 a key's stripe stays locked from begin to the end of commit or abort: every read and
 *     write of the transaction sees one state of each document, the one it leaves
 *  N2 per key, the queued records are in LSN order = apply order (S3), and the stored
 *     document's LSN is its last record's (O2)
 *  N3 a failed call (< 0) leaves the transaction's view as it was
 * Bounds: L3_STORE_TXN_MAX_KEYS keys; the private copies and queued payloads together at
 * most max_bytes; per stored key L3_TXN_KEY_UNDO bytes of the undo area.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-int.h"

/* Undo area bytes one stored key can need: physical entries for the entry's document
 * fields or an index insert / rebuild / removal (at most 4 words of 24 bytes each, and a
 * 32-byte slot), plus tail entries for three allocated and three freed blocks. */
#define L3_TXN_KEY_UNDO 512u

enum { K_SHARED = 0, K_PRIV = 1, K_GONE = 2 };

typedef struct {
    const uint8_t *key; /* the caller's bytes (valid until the end: store.h) */
    uint32_t klen;
    uint64_t h;
    uint32_t s;
    int state;    /* K_*: the arena's version, a private one (hd), deleted */
    bool dirty;   /* changed by the transaction */
    bool exp_set; /* a put or expire decided the key's deadline: exp */
    uint64_t exp;
    l3_doc_t hd; /* K_PRIV */
} txkey_t;

typedef struct {
    uint8_t op, flags;
    uint64_t lsn;
    uint32_t k;       /* index into keys */
    uint8_t *payload; /* owned */
    uint32_t plen;
} txrec_t;

struct l3_store_txn {
    l3_store_t *st;
    txkey_t *keys;
    size_t nkeys;
    txrec_t *recs;
    size_t nrecs, caprecs;
    size_t bytes, max_bytes;
    uint64_t now_ms; /* the transaction's clock for deadlines (begin) */
};

static int key_cmp(const txkey_t *a, uint64_t h, const void *key, uint32_t klen)
{
    if (a->h != h)
        return a->h < h ? -1 : 1;
    if (a->klen != klen)
        return a->klen < klen ? -1 : 1;
    return memcmp(a->key, key, klen);
}

static int sort_cmp(const void *x, const void *y)
{
    const txkey_t *b = y;
    return key_cmp(x, b->h, b->key, b->klen);
}

static txkey_t *find_key(l3_store_txn_t *t, const void *key, size_t klen)
{
    if (l3_store__key_ok(key, klen) < 0)
        return NULL;
    uint64_t h = l3_store__hash(t->st, key, klen);
    size_t lo = 0, hi = t->nkeys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(&t->keys[mid], h, key, (uint32_t)klen);
        if (c == 0)
            return &t->keys[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void txn_free(l3_store_txn_t *t)
{
    for (size_t i = 0; i < t->nkeys; i++)
        if (t->keys[i].state == K_PRIV)
            l3_doc_heap_free(&t->keys[i].hd);
    for (size_t i = 0; i < t->nrecs; i++)
        free(t->recs[i].payload);
    free(t->recs);
    free(t->keys);
    free(t);
}

/* Sort and deduplicate the keys; the distinct stripes, ascending, into *ret_s. */
static int prepare_keys(l3_store_txn_t *t, uint32_t **ret_s, size_t *ret_ns)
{
    qsort(t->keys, t->nkeys, sizeof(txkey_t), sort_cmp);
    size_t n = 0;
    for (size_t i = 0; i < t->nkeys; i++)
        if (n == 0 || sort_cmp(&t->keys[n - 1], &t->keys[i]) != 0)
            t->keys[n++] = t->keys[i];
    t->nkeys = n;
    uint32_t *s = malloc(n * sizeof(uint32_t));
    if (s == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        s[i] = t->keys[i].s;
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) { /* ascending: insertion into the sorted prefix */
        uint32_t v = s[i];
        size_t j = ns;
        while (j > 0 && s[j - 1] > v)
            j--;
        if (j > 0 && s[j - 1] == v)
            continue;
        memmove(s + j + 1, s + j, (ns - j) * sizeof(uint32_t));
        s[j] = v;
        ns++;
    }
    *ret_s = s;
    *ret_ns = ns;
    return 0;
}

static const uint8_t *shared_doc(l3_store_txn_t *t, const txkey_t *k, opctx_t *c);

/* Lock the stripes s[0..n) with no key of the transaction expired at its clock: an expired
 * key is removed first, by a logged change of its own (O6 in ops.c), so no write of the
 * transaction lands on an expired entry. A few rounds at most (-EAGAIN). */
static int lock_live(l3_store_txn_t *t, const uint32_t *s, size_t n)
{
    for (int round = 0; round < 4; round++) {
        int rc = l3_store__multi_lock(t->st, s, n);
        if (rc < 0)
            return rc;
        bool expired = false;
        for (size_t i = 0; i < t->nkeys && !expired; i++) {
            opctx_t c;
            if (shared_doc(t, &t->keys[i], &c) == NULL && c.entry != 0)
                expired = true;
        }
        if (!expired)
            return 0;
        l3_store__multi_unlock(t->st);
        for (size_t i = 0; i < t->nkeys; i++)
            if ((rc = l3_store__reap_key(t->st, t->keys[i].key, t->keys[i].klen, t->now_ms)) < 0)
                return rc;
    }
    return -EAGAIN;
}

int l3_store_txn_begin(l3_store_t *st, const void *const *keys, const size_t *klens, size_t n,
                       size_t max_bytes, l3_store_txn_t **ret)
{
    int rc = l3_store__check_registered(st);
    if (rc < 0)
        return rc;
    if (n == 0)
        return -EINVAL;
    if (n > L3_STORE_TXN_MAX_KEYS)
        return -E2BIG;
    if (__atomic_load_n(&st->hdr->ah_state, __ATOMIC_ACQUIRE) == L3_ARENA_POISONED)
        return L3_EPOISONED;
    l3_store_txn_t *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->keys = calloc(n, sizeof(txkey_t))) == NULL) {
        free(t);
        return -ENOMEM;
    }
    t->st = st;
    t->max_bytes = max_bytes ? max_bytes : 4 * st->max_doc;
    for (size_t i = 0; i < n; i++) {
        if ((rc = l3_store__key_ok(keys[i], klens[i])) < 0) {
            txn_free(t);
            return rc;
        }
        txkey_t *k = &t->keys[t->nkeys++];
        k->key = keys[i];
        k->klen = (uint32_t)klens[i];
        k->h = l3_store__hash(st, keys[i], klens[i]);
        k->s = (uint32_t)k->h & st->smask;
    }
    uint32_t *s = NULL;
    size_t ns = 0;
    t->now_ms = l3_store_now_ms();
    rc = prepare_keys(t, &s, &ns);
    if (rc == 0)
        rc = lock_live(t, s, ns);
    free(s);
    if (rc < 0) {
        txn_free(t);
        return rc;
    }
    *ret = t;
    return 0;
}

/* The arena's document of k (its stripe is locked: N1), NULL when absent. */
static const uint8_t *shared_doc(l3_store_txn_t *t, const txkey_t *k, opctx_t *c)
{
    l3_store_t *st = t->st;
    memset(c, 0, sizeof(*c));
    c->h = k->h;
    c->s = k->s;
    c->sp = &st->stripes[k->s];
    c->tx = true;
    c->entry = l3_store__ix_find(st, c->sp, k->h, k->key, k->klen, &c->pos);
    if (c->entry == 0)
        return NULL;
    c->ent = AT(st, c->entry, l3_ix_entry_t);
    c->doc = AT(st, c->ent->ie_doc, uint8_t);
    if (l3_store__expired(c->ent->ie_expire, t->now_ms))
        return NULL; /* expired: absent (c->entry stays set) */
    return c->doc;
}

/* The document as the transaction sees it, NULL when absent. */
static const uint8_t *current(l3_store_txn_t *t, const txkey_t *k)
{
    opctx_t c;
    if (k->state == K_PRIV)
        return k->hd.buf;
    if (k->state == K_GONE)
        return NULL;
    return shared_doc(t, k, &c);
}

int l3_store_txn_get(l3_store_txn_t *t, const void *key, size_t klen, const uint8_t **ret_doc,
                     uint64_t *ret_lsn)
{
    txkey_t *k = find_key(t, key, klen);
    if (k == NULL)
        return -EINVAL;
    const uint8_t *d = current(t, k);
    if (d == NULL)
        return -ENOENT;
    *ret_doc = d;
    if (ret_lsn)
        *ret_lsn = l3_doc_lsn(d);
    return 0;
}

/* If-Match against the transaction's view: 0, -ENOENT, -ESTALE. */
static int check_match(const uint8_t *cur, uint64_t if_match)
{
    if (if_match == 0)
        return 0;
    if (cur == NULL)
        return -ENOENT;
    return l3_doc_lsn(cur) == if_match ? 0 : -ESTALE;
}

static int account(l3_store_txn_t *t, size_t add)
{
    if (add > t->max_bytes || t->bytes > t->max_bytes - add)
        return -E2BIG;
    t->bytes += add;
    return 0;
}

/* A working copy of k's current document in w (an empty one when absent and `create`). */
static int working_copy(l3_store_txn_t *t, const txkey_t *k, bool create, l3_doc_t *w)
{
    const uint8_t *cur = current(t, k);
    memset(w, 0, sizeof(*w));
    int rc;
    if (cur == NULL) {
        if (!create)
            return -ENOENT;
        rc = l3_doc_heap_new(w, 256);
        if (rc == 0)
            rc = l3_doc_init(w);
        if (rc < 0) {
            l3_doc_heap_free(w);
            return rc == -ENOBUFS ? -ENOMEM : rc;
        }
    } else {
        size_t size = l3_doc_size(cur);
        if ((rc = account(t, size)) < 0)
            return rc;
        t->bytes -= size; /* counted once installed */
        uint8_t *b = malloc(size);
        if (b == NULL)
            return -ENOMEM;
        memcpy(b, cur, size);
        if ((rc = l3_doc_heap_adopt_any(w, b, size)) < 0)
            return rc;
    }
    w->limit = t->st->max_doc;
    return 0;
}

/* The key of an in-place change (set, incr, expire): found, If-Match checked, and a working
 * copy of its existing document in *w. 0, -EINVAL (not in the transaction), -ENOENT, -ESTALE. */
static int copy_existing(l3_store_txn_t *t, const void *key, size_t klen, uint64_t if_match, txkey_t **ret_k,
                         l3_doc_t *w)
{
    txkey_t *k = find_key(t, key, klen);
    if (k == NULL)
        return -EINVAL;
    int rc = check_match(current(t, k), if_match);
    if (rc == 0)
        rc = working_copy(t, k, false, w);
    *ret_k = k;
    return rc;
}

/* Queue the record of one operation (payload copied). */
static int queue(l3_store_txn_t *t, const txkey_t *k, uint8_t op, uint8_t flags, uint64_t lsn, const void *p,
                 size_t plen)
{
    if (plen > UINT32_MAX || t->nrecs >= L3_STORE_TXN_MAX_RECS)
        return -E2BIG;
    int rc = account(t, plen);
    if (rc < 0)
        return rc;
    if (t->nrecs == t->caprecs) {
        size_t nc = t->caprecs ? t->caprecs * 2 : 16;
        txrec_t *nr = realloc(t->recs, nc * sizeof(*nr));
        if (nr == NULL)
            return -ENOMEM;
        t->recs = nr;
        t->caprecs = nc;
    }
    uint8_t *copy = NULL;
    if (plen > 0 && (copy = malloc(plen)) == NULL)
        return -ENOMEM;
    if (plen > 0)
        memcpy(copy, p, plen);
    t->recs[t->nrecs++] = (txrec_t){.op = op,
                                    .flags = flags,
                                    .lsn = lsn,
                                    .k = (uint32_t)(k - t->keys),
                                    .payload = copy,
                                    .plen = (uint32_t)plen};
    return 0;
}

/* Make w (stamped with lsn) k's version; false when the byte bound refuses it. */
static int install(l3_store_txn_t *t, txkey_t *k, l3_doc_t *w, uint64_t lsn)
{
    size_t old = k->state == K_PRIV ? k->hd.cap : 0;
    if (w->cap > old) {
        int rc = account(t, w->cap - old);
        if (rc < 0)
            return rc;
    } else {
        t->bytes -= old - w->cap;
    }
    l3_doc_set_lsn(w, lsn);
    if (k->state == K_PRIV)
        l3_doc_heap_free(&k->hd);
    k->hd = *w;
    k->state = K_PRIV;
    k->dirty = true;
    return 0;
}

/* Undo a queued record after install refused its document. */
static void unqueue(l3_store_txn_t *t)
{
    txrec_t *r = &t->recs[--t->nrecs];
    t->bytes -= r->plen;
    free(r->payload);
}

/* The end of put and expire: install w with the operation's deadline once its record is
 * queued (rc 0), or undo both. */
static int install_deadline(l3_store_txn_t *t, txkey_t *k, l3_doc_t *w, uint64_t lsn, int rc,
                            uint64_t expire_ms, uint64_t *ret_lsn)
{
    if (rc == 0 && (rc = install(t, k, w, lsn)) < 0)
        unqueue(t);
    if (rc < 0) {
        l3_doc_heap_free(w);
        return rc;
    }
    k->exp = expire_ms;
    k->exp_set = true;
    if (ret_lsn)
        *ret_lsn = lsn;
    return 0;
}

int l3_store_txn_put_json(l3_store_txn_t *t, const void *key, size_t klen, const char *json, size_t jlen,
                          uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    return l3_store_txn_put_json_ttl(t, key, klen, json, jlen, if_match, 0, ret_lsn, err);
}

int l3_store_txn_put_json_ttl(l3_store_txn_t *t, const void *key, size_t klen, const char *json, size_t jlen,
                              uint64_t if_match, uint64_t expire_ms, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    txkey_t *k = find_key(t, key, klen);
    if (k == NULL)
        return -EINVAL;
    int rc = check_match(current(t, k), if_match);
    if (rc < 0)
        return rc;
    _Alignas(8) uint8_t small[L3_DOC_PACK_MAX_BYTES];
    uint8_t *buf; /* packed when it packs: a later change in this transaction unpacks its copy */
    size_t len;
    rc = l3_store__parse_put(t->st, json, jlen, small, &buf, &len, err);
    if (rc < 0)
        return rc;
    if (buf == small) { /* the transaction holds its documents on the heap */
        if ((buf = malloc(len)) == NULL)
            return -ENOMEM;
        memcpy(buf, small, len);
    }
    l3_doc_t w = {0};
    l3_doc_heap_adopt(&w, buf, len);
    w.limit = t->st->max_doc;
    uint64_t lsn = l3_store__next_lsn(t->st, 0);
    l3_doc_set_lsn(&w, lsn);
    if (expire_ms == 0) {
        rc = queue(t, k, L3_WALOP_PUT, 0, lsn, w.buf, len);
    } else { /* the record carries the deadline after the document (L3_WAL_RF_EXPIRY) */
        uint8_t *pl = malloc(len + 8);
        rc = pl == NULL ? -ENOMEM : 0;
        if (pl != NULL) {
            memcpy(pl, w.buf, len);
            l3_wal_put_deadline(pl + len, expire_ms);
            rc = queue(t, k, L3_WALOP_PUT, L3_WAL_RF_EXPIRY, lsn, pl, len + 8);
            free(pl);
        }
    }
    return install_deadline(t, k, &w, lsn, rc, expire_ms, ret_lsn);
}

int l3_store_txn_delete(l3_store_txn_t *t, const void *key, size_t klen, uint64_t if_match, uint64_t *ret_lsn)
{
    txkey_t *k = find_key(t, key, klen);
    if (k == NULL)
        return -EINVAL;
    const uint8_t *cur = current(t, k);
    if (cur == NULL)
        return -ENOENT;
    int rc = check_match(cur, if_match);
    if (rc < 0)
        return rc;
    uint64_t lsn = l3_store__next_lsn(t->st, 0);
    rc = queue(t, k, L3_WALOP_DELETE, 0, lsn, NULL, 0);
    if (rc < 0)
        return rc;
    if (k->state == K_PRIV) {
        t->bytes -= k->hd.cap;
        l3_doc_heap_free(&k->hd);
    }
    k->state = K_GONE;
    k->dirty = true;
    k->exp_set = true; /* a later create in the transaction starts without a deadline */
    k->exp = 0;
    if (ret_lsn)
        *ret_lsn = lsn;
    return 0;
}

int l3_store_txn_expire(l3_store_txn_t *t, const void *key, size_t klen, uint64_t expire_ms,
                        uint64_t if_match, uint64_t *ret_lsn)
{
    txkey_t *k;
    l3_doc_t w;
    int rc = copy_existing(t, key, klen, if_match, &k, &w);
    if (rc < 0)
        return rc;
    uint64_t lsn = l3_store__next_lsn(t->st, 0);
    uint8_t pl[8];
    l3_wal_put_deadline(pl, expire_ms);
    rc = queue(t, k, L3_WALOP_EXPIRE, 0, lsn, pl, sizeof pl);
    return install_deadline(t, k, &w, lsn, rc, expire_ms, ret_lsn);
}

/* set (o_incr false) or incr: the record is the SET a single-key call logs (ops.c). */
static int scalar_op(l3_store_txn_t *t, const void *key, size_t klen, const char *path, size_t plen,
                     unsigned flags, const l3_doc_scalar_t *v, int64_t delta, bool is_incr, uint64_t if_match,
                     int64_t *ret_new, uint64_t *ret_lsn)
{
    txkey_t *k;
    l3_doc_t w;
    int rc = copy_existing(t, key, klen, if_match, &k, &w);
    if (rc < 0)
        return rc;
    int64_t nv = 0;
    rc = is_incr ? L3_DOC_HEAP_DO(&w, l3_doc_incr(&w, path, plen, flags, delta, &nv))
                 : L3_DOC_HEAP_DO(&w, l3_doc_set(&w, path, plen, flags, v, NULL));
    l3_doc_scalar_t sv;
    const l3_doc_scalar_t *lv = v;
    unsigned lf = flags;
    if (is_incr) {
        memset(&sv, 0, sizeof(sv));
        sv.type = L3_DOC_INT;
        sv.i = nv;
        lv = &sv;
        lf = (flags & 3u) | L3_DOC_SET_NO_CREATE | L3_DOC_SET_SAME_TYPE;
    }
    uint8_t *enc = NULL;
    size_t n = 0;
    if (rc == 0)
        rc = l3_store_encode_set(path, plen, lf, lv, &enc, &n);
    uint64_t lsn = 0;
    if (rc == 0) {
        lsn = l3_store__next_lsn(t->st, 0);
        rc = queue(t, k, L3_WALOP_SET, is_incr ? L3_WAL_RF_INCR : 0, lsn, enc, n);
        if (rc == 0 && (rc = install(t, k, &w, lsn)) < 0)
            unqueue(t);
    }
    free(enc);
    if (rc < 0) {
        l3_doc_heap_free(&w);
        return rc;
    }
    if (ret_new)
        *ret_new = nv;
    if (ret_lsn)
        *ret_lsn = lsn;
    return 0;
}

int l3_store_txn_set(l3_store_txn_t *t, const void *key, size_t klen, const char *path, size_t plen,
                     unsigned flags, const l3_doc_scalar_t *v, uint64_t if_match, uint64_t *ret_lsn)
{
    return scalar_op(t, key, klen, path, plen, flags, v, 0, false, if_match, NULL, ret_lsn);
}

int l3_store_txn_incr(l3_store_txn_t *t, const void *key, size_t klen, const char *path, size_t plen,
                      unsigned flags, int64_t delta, int64_t *ret_new, uint64_t *ret_lsn)
{
    return scalar_op(t, key, klen, path, plen, flags, NULL, delta, true, 0, ret_new, ret_lsn);
}

static int patch_op(l3_store_txn_t *t, const void *key, size_t klen, bool merge, const char *patch,
                    size_t len, uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    txkey_t *k = find_key(t, key, klen);
    if (k == NULL)
        return -EINVAL;
    const uint8_t *cur = current(t, k);
    int rc = check_match(cur, if_match), created = cur == NULL;
    l3_doc_t w;
    if (rc == 0)
        rc = working_copy(t, k, merge, &w);
    if (rc < 0)
        return rc;
    l3_doc_error_t e = {0};
    rc = merge ? l3_doc_merge_patch(&w, patch, len, &e) : l3_doc_json_patch(&w, patch, len, &e);
    if (rc == 0)
        (void)l3_doc_heap_maybe_compact(&w);
    uint64_t lsn = 0;
    if (rc == 0) {
        lsn = l3_store__next_lsn(t->st, 0);
        rc = queue(t, k, merge ? L3_WALOP_MERGE : L3_WALOP_PATCH, 0, lsn, patch, len);
        if (rc == 0 && (rc = install(t, k, &w, lsn)) < 0)
            unqueue(t);
    } else if (err) {
        *err = e;
    }
    if (rc < 0) {
        l3_doc_heap_free(&w);
        return rc;
    }
    if (ret_lsn)
        *ret_lsn = lsn;
    return created;
}

int l3_store_txn_merge_patch(l3_store_txn_t *t, const void *key, size_t klen, const char *patch, size_t len,
                             uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    return patch_op(t, key, klen, true, patch, len, if_match, ret_lsn, err);
}

int l3_store_txn_json_patch(l3_store_txn_t *t, const void *key, size_t klen, const char *patch, size_t len,
                            uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    return patch_op(t, key, klen, false, patch, len, if_match, ret_lsn, err);
}

void l3_store_txn_abort(l3_store_txn_t *t)
{
    if (t == NULL)
        return;
    l3_store__multi_unlock(t->st);
    txn_free(t);
}

/* Store key k's final version in the arena (inside the multi record). */
static int store_key(l3_store_txn_t *t, txkey_t *k, int64_t *dkeys, int64_t *dbytes)
{
    l3_store_t *st = t->st;
    opctx_t c;
    if (l3_store__undo_free(st) < L3_TXN_KEY_UNDO)
        return -E2BIG;
    const uint8_t *old = shared_doc(t, k, &c);
    if (k->state == K_PRIV) {
        size_t len = l3_doc_size(k->hd.buf);
#if defined(L3_VERIFY_WRITES) && L3_VERIFY_WRITES
        if (l3_doc_verify(k->hd.buf, len, NULL) == L3_ECORRUPT) {
            fprintf(stderr, "l3kv store: a transaction built a document that fails verification\n");
            abort();
        }
#endif
        int rc = l3_store__store_doc(st, &c, k->key, k->klen, k->hd.buf, len, l3_doc_lsn(k->hd.buf));
        if (rc < 0)
            return rc;
        if (k->exp_set)
            l3_store__set_deadline(st, &c, k->exp);
        *dkeys += c.dkeys;
        *dbytes += c.dbytes;
        return 0;
    }
    if (old == NULL) /* created and deleted again: nothing to store */
        return 0;
    *dkeys -= 1;
    *dbytes -= (int64_t)l3_doc_size(old);
    l3_store__ix_remove(st, c.sp, c.pos);
    l3_store__tx_defer_free(st, c.entry);
    return 0;
}

/* Hand the queued records to the WAL as one group (under every lock: S3). */
static int log_group(l3_store_txn_t *t)
{
    l3_store_t *st = t->st;
    if (st->ghook == NULL)
        return st->hook != NULL ? -ENOTSUP : 0;
    l3_wal_rec_t *recs = malloc(t->nrecs * sizeof(*recs));
    if (recs == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < t->nrecs; i++) {
        const txrec_t *r = &t->recs[i];
        const txkey_t *k = &t->keys[r->k];
        recs[i] = (l3_wal_rec_t){.op = r->op,
                                 .flags = r->flags,
                                 .lsn = r->lsn,
                                 .key = k->key,
                                 .klen = k->klen,
                                 .payload = r->payload,
                                 .plen = r->plen};
    }
    /* from here a repairer may keep the transaction if the probe finds its last record */
    st->ps->tx_lsn = recs[t->nrecs - 1].lsn;
    l3_store__fence();
    st->ps->tx_hooked = 1;
    l3_store__fence();
    int rc = st->ghook(st->ghook_ctx, recs, t->nrecs);
    free(recs);
    return rc;
}

int l3_store_txn_commit(l3_store_txn_t *t)
{
    l3_store_t *st = t->st;
    if (t->nrecs == 0) {
        l3_store_txn_abort(t);
        return 0;
    }
    if (__atomic_load_n(&st->hdr->ah_state, __ATOMIC_ACQUIRE) == L3_ARENA_POISONED) {
        l3_store_txn_abort(t);
        return L3_EPOISONED;
    }
    int64_t dkeys = 0, dbytes = 0;
    int rc = 0;
    l3_store__tx_begin_multi(st);
    for (size_t i = 0; i < t->nkeys && rc == 0; i++)
        if (t->keys[i].dirty)
            rc = store_key(t, &t->keys[i], &dkeys, &dbytes);
    if (rc == 0)
        rc = log_group(t);
    if (rc != 0) {
        l3_store__tx_rollback(st);
        l3_store_txn_abort(t);
        return rc;
    }
    l3_store__tx_commit(st);
    l3_store__multi_unlock(st);
    if (dkeys)
        __atomic_fetch_add(&st->hdr->ah_keys, (uint64_t)dkeys, __ATOMIC_RELAXED);
    if (dbytes)
        __atomic_fetch_add(&st->hdr->ah_doc_bytes, (uint64_t)dbytes, __ATOMIC_RELAXED);
    txn_free(t);
    return 0;
}

void l3_store_set_wal_group_hook(l3_store_t *st, l3_wal_group_hook_fn fn, void *ctx)
{
    st->ghook = fn;
    st->ghook_ctx = ctx;
}
