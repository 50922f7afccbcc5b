/* SPDX-License-Identifier: MIT */
/*
 * ops.c - the store operations: get, put, delete, set/set_int/incr, merge patch, JSON
 * patch, key deadlines (expire, the expiry sweep), key listing, scanning, WAL hook calls
 * and WAL replay.
 *
 * Runs in: workers (HTTP requests), the supervisor (recovery), the writer (checkpoint
 * scans), tests.
 * Concurrency: an operation takes its key's stripe lock for its whole duration (readers
 * too: they never see a half-written document, S8 in docs/invariants.md). A mutation is one
 * transaction (tx.c): in-place changes are undo-logged; anything larger is built in a
 * private block and published by one logged store of the entry's ie_doc/ie_cap, the old
 * block being freed when the transaction commits. The WAL hook runs under the lock after
 * the change and before the commit, so WAL order is apply order per key (S3); a non-zero
 * hook result rolls the mutation back.
 * Invariants:
 *  O1 a failed operation (any return < 0) leaves the arena as it found it
 *  O2 every document's header LSN equals the LSN returned by its last mutation
 *  O3 a document's block capacity (ie_cap) is >= its used size
 *  O4 every document a write stores passes l3_doc_verify(): the document layer never
 *     builds what verify refuses (probe bound, depth limit, finite doubles), and debug
 *     builds (L3_VERIFY_WRITES: meson -Dverify_writes, on by default for buildtype debug
 *     and sanitizer builds) check it after every mutation (DEBUG_VERIFY) but the int stores
 *     of set_int/incr, which cannot change validity. A full verify is O(document): it is
 *     off in the default build so a single-field change stays O(path)
 *  O5 no request makes a document larger than st->max_doc: the document layer refuses
 *     before allocating (l3_doc_t.limit, parse max_bytes); replay is exempt, so a lowered
 *     limit never stops recovery - it applies a record under the limit first (building
 *     what the live change built: the same growth, the same compaction) and without one
 *     only when the limit refuses it
 *  O6 no write lands on an expired entry: a live write that finds its key past its
 *     deadline first removes it with a logged DELETE marked EXPIRED (reap_locked); reads
 *     treat it as absent; replay never reads the clock, so the log alone decides
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store-int.h"

#if defined(L3_VERIFY_WRITES) && L3_VERIFY_WRITES
/* O4: a write path that stores an unverifiable document is a bug: stop at once, before
 * the WAL hook makes it durable and a restart cannot load it. */
static void debug_verify(const uint8_t *doc, const char *what)
{
    l3_doc_error_t e = {0};
    int rc = l3_doc_verify(doc, l3_doc_size(doc), &e);
    if (rc == L3_ECORRUPT) {
        fprintf(stderr, "l3kv store: %s stored a document that fails verification: %s at %zu\n", what,
                e.msg ? e.msg : "?", e.offset);
        abort();
    }
}
#define DEBUG_VERIFY(doc, what) debug_verify((doc), (what))
#else
#define DEBUG_VERIFY(doc, what) ((void)0)
#endif

void l3_store_set_max_doc_bytes(l3_store_t *st, size_t max_doc_bytes)
{
    st->max_doc = max_doc_bytes ? max_doc_bytes : L3_STORE_DEFAULT_MAX_DOC_BYTES;
}

int l3_store__key_ok(const void *key, size_t klen)
{
    if (klen > L3_STORE_KEY_MAX)
        return -ENAMETOOLONG;
    if (!key || klen == 0)
        return -EINVAL;
    return 0;
}

uint64_t l3_store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* How an operation looks at its key: a read (an expired key is absent), a write (an expired
 * key is removed first, with its own logged record: O6), or replay (records apply as logged:
 * deadlines are judged only by a live operation, never by recovery). */
enum { OPM_READ, OPM_WRITE, OPM_REPLAY };

static int op_abort(l3_store_t *st, opctx_t *c, int rc);
static int op_log(l3_store_t *st, const l3_wal_rec_t *rec);
static void op_count(l3_store_t *st, opctx_t *c);

static void remove_entry(l3_store_t *st, opctx_t *c)
{
    c->dkeys -= 1;
    c->dbytes -= (int64_t)l3_doc_size(c->doc);
    l3_store__ix_remove(st, c->sp, c->pos);
    l3_store__tx_defer_free(st, c->entry); /* the key's one block: entry, key and document */
}

/* O6: the write about to run on c's key finds it expired. Remove it as a transaction of
 * its own, logged as a DELETE marked EXPIRED, and begin the write's transaction on the
 * now absent key (still under the stripe lock). */
static int reap_locked(l3_store_t *st, opctx_t *c, const void *key, size_t klen, bool resume)
{
    uint64_t lsn = l3_store__next_lsn(st, 0);
    remove_entry(st, c);
    l3_wal_rec_t rec = {
        .op = L3_WALOP_DELETE, .flags = L3_WAL_RF_EXPIRED, .lsn = lsn, .key = key, .klen = (uint32_t)klen};
    int rc = op_log(st, &rec);
    if (rc != 0)
        return rc;
    l3_store__tx_commit(st);
    op_count(st, c);
    __atomic_fetch_add(&st->hdr->ah_expired, 1, __ATOMIC_RELAXED);
    c->dkeys = c->dbytes = 0;
    c->entry = 0;
    c->ent = NULL;
    c->doc = NULL;
    if (resume)
        l3_store__tx_begin(st, c->s);
    return 0;
}

static int op_lock(l3_store_t *st, const void *key, size_t klen, int mode, opctx_t *c)
{
    bool tx = mode != OPM_READ;
    int rc = l3_store__check_registered(st);
    if (rc < 0)
        return rc;
    rc = l3_store__key_ok(key, klen);
    if (rc < 0)
        return rc;
    if (tx && __atomic_load_n(&st->hdr->ah_state, __ATOMIC_ACQUIRE) == L3_ARENA_POISONED)
        return L3_EPOISONED; /* a poisoned arena takes no writes (store.md, "Poisoning") */
    memset(c, 0, sizeof(*c));
    c->h = l3_store__hash(st, key, klen);
    c->s = (uint32_t)c->h & st->smask;
    c->sp = &st->stripes[c->s];
    rc = l3_store__stripe_lock(st, c->s);
    if (rc < 0)
        return rc;
    c->tx = tx;
    if (tx)
        l3_store__tx_begin(st, c->s);
    c->entry = l3_store__ix_find(st, c->sp, c->h, key, klen, &c->pos);
    if (c->entry) {
        c->ent = AT(st, c->entry, l3_ix_entry_t);
        c->doc = AT(st, c->ent->ie_doc, uint8_t);
        /* the clock is read only for a key that has a deadline */
        if (mode != OPM_REPLAY && c->ent->ie_expire != 0 &&
            l3_store__expired(c->ent->ie_expire, l3_store_now_ms())) {
            if (mode == OPM_WRITE)
                return (rc = reap_locked(st, c, key, klen, true)) == 0 ? 0 : op_abort(st, c, rc);
            c->entry = 0;
            c->ent = NULL;
            c->doc = NULL;
        }
    }
    return 0;
}

static int op_abort(l3_store_t *st, opctx_t *c, int rc)
{
    if (c->tx)
        l3_store__tx_rollback(st);
    l3_store__stripe_unlock(st, c->s);
    return rc;
}

/* Hand the record to the WAL hook (none: nothing to do). 0, or the hook's refusal. */
static int op_log(l3_store_t *st, const l3_wal_rec_t *rec)
{
    if (!st->hook || !rec)
        return 0;
    /* from here a repairer may keep this mutation if the WAL probe finds its record */
    st->ps->tx_lsn = rec->lsn;
    l3_store__fence();
    st->ps->tx_hooked = 1;
    l3_store__fence();
    return st->hook(st->hook_ctx, rec);
}

static void op_count(l3_store_t *st, opctx_t *c)
{
    if (c->dkeys)
        __atomic_fetch_add(&st->hdr->ah_keys, (uint64_t)c->dkeys, __ATOMIC_RELAXED);
    if (c->dbytes)
        __atomic_fetch_add(&st->hdr->ah_doc_bytes, (uint64_t)c->dbytes, __ATOMIC_RELAXED);
}

static int op_finish(l3_store_t *st, opctx_t *c, const l3_wal_rec_t *rec)
{
    int rc = op_log(st, rec);
    if (rc != 0)
        return op_abort(st, c, rc);
    l3_store__tx_commit(st);
    l3_store__stripe_unlock(st, c->s);
    op_count(st, c);
    return 0;
}

uint64_t l3_store__next_lsn(l3_store_t *st, uint64_t replay_lsn)
{
    if (replay_lsn) {
        l3_store_set_lsn_floor(st, replay_lsn);
        return replay_lsn;
    }
    return __atomic_add_fetch(&st->hdr->ah_lsn, 1, __ATOMIC_ACQ_REL);
}

/* Capacity to give a document of `len` bytes that has just been compacted, or that is
 * large: room to grow in place. */
static uint64_t doc_cap_for(uint64_t len)
{
    uint64_t slack = L3_MIN(len / 4, (uint64_t)1 << 20);
    return L3_ALIGN_UP(len + slack + 64, (uint64_t)16);
}

/* Capacity to give a document stored by a PUT. Below L3_DOC_TIGHT_BYTES the document gets
 * no growth room: most small documents are never changed in place, copying one is cheaper
 * than the room (a quarter of it) every key would carry, and the first change that does not
 * fit moves it to a block with room (grow_apply). Larger documents keep the room, so an
 * in-place change of a big document does not copy it. */
#define L3_DOC_TIGHT_BYTES 4096u
static uint64_t doc_cap_fresh(uint64_t len)
{
    return len < L3_DOC_TIGHT_BYTES ? L3_ALIGN_UP(len, (uint64_t)16) : doc_cap_for(len);
}

/* A key's block for a document of up to `cap` bytes (layout.h, "index entry"): the entry
 * and the key, then the document. The entry carries over c's deadline. The block is private
 * to this transaction until published (freed by a rollback). */
static int alloc_key_block(l3_store_t *st, opctx_t *c, const void *key, size_t klen, uint64_t cap,
                           uint64_t *ret_entry, uint64_t *ret_cap)
{
    uint64_t pre = l3_store__prefix((uint32_t)klen), e, got;
    int rc = l3_store__alloc(st, pre + cap, &e, &got);
    if (rc < 0)
        return rc;
    l3_ix_entry_t *ent = AT(st, e, l3_ix_entry_t);
    ent->ie_doc = e + pre;
    ent->ie_expire = c->ent != NULL ? c->ent->ie_expire : 0;
    ent->ie_klen = (uint16_t)klen;
    ent->ie_magic = L3_IX_ENTRY_MAGIC;
    memmove(ent->ie_key, key, klen);
    *ret_entry = e;
    *ret_cap = got - pre;
    return 0;
}

/* Make `entry` (a key block allocated in this transaction) the key's: one logged store of
 * its index slot; the old block is freed when the transaction commits. */
static void publish_doc(l3_store_t *st, opctx_t *c, uint64_t entry)
{
    l3_ix_slot_t *t = AT(st, c->sp->sp_table, l3_ix_slot_t);
    l3_store__tw64(st, &t[c->pos].ix, l3_ix_slot(c->h, entry));
    l3_store__tx_defer_free(st, c->entry);
    c->entry = entry;
    c->ent = AT(st, entry, l3_ix_entry_t);
    c->doc = AT(st, c->ent->ie_doc, uint8_t);
}

/* Index the key block `entry` of a new key. */
static int insert_key(l3_store_t *st, opctx_t *c, uint64_t entry)
{
    int rc = l3_store__ix_insert(st, c->sp, c->h, entry, &c->pos);
    if (rc < 0)
        return rc;
    c->entry = entry;
    c->ent = AT(st, entry, l3_ix_entry_t);
    c->doc = AT(st, c->ent->ie_doc, uint8_t);
    c->dkeys = 1;
    return 0;
}

/* Give the key the deadline expire_ms (0: none), logged; the stripe's earliest follows. */
void l3_store__set_deadline(l3_store_t *st, opctx_t *c, uint64_t expire_ms)
{
    if (c->ent->ie_expire != expire_ms)
        l3_store__tw64(st, &c->ent->ie_expire, expire_ms);
    if (expire_ms != 0 && expire_ms < __atomic_load_n(&c->sp->sp_exp_min, __ATOMIC_RELAXED))
        __atomic_store_n(&c->sp->sp_exp_min, expire_ms, __ATOMIC_RELAXED);
}

/* A small full-form document is kept packed (l3kv/doc.h): a third to a half of the bytes,
 * read in place, unpacked by the first change of a field (unpack_apply). *ret_len 0: it
 * stays as it is (packed already, large, or a container too big to pack). */
static void pack_small(const uint8_t *buf, size_t len, uint8_t *tmp, size_t *ret_len)
{
    *ret_len = 0;
    if (len < L3_DOC_TIGHT_BYTES && !l3_doc_is_packed(buf) && l3_doc_pack(buf, tmp, len, ret_len) < 0)
        *ret_len = 0;
}

/* A small document replacing one whose block it fits about as tightly as a fresh block
 * would: written over the old one in place, the old bytes in the undo log (a rollback or
 * a repair puts them back), so the overwrite of a key allocates and frees nothing. 1 when
 * done, 0 to take a new block (no fit, or no room in the undo log). */
static int overwrite_in_place(l3_store_t *st, opctx_t *c, const uint8_t *buf, size_t len, uint64_t lsn)
{
    if (!c->entry || len >= L3_DOC_TIGHT_BYTES)
        return 0;
    uint64_t cap = l3_store__doc_cap(st, c->ent);
    /* as a fresh block would: len rounded to 16, plus a rest too small to split off */
    if (len > cap || cap - L3_ALIGN_UP(len, (uint64_t)16) >= L3_BLOCK_MIN)
        return 0;
    uint64_t old = l3_doc_size(c->doc);
    if (l3_store__tlog(st, c->doc, len) != 0) /* the bytes overwritten */
        return 0;
    memcpy(c->doc, buf, len);
    l3_doc_t d = {.buf = c->doc, .cap = cap};
    l3_doc_set_lsn(&d, lsn);
    c->dbytes = (int64_t)len - (int64_t)old;
    return 1;
}

/* Store a complete document (len bytes at buf, verified) under the key. */
int l3_store__store_doc(l3_store_t *st, opctx_t *c, const void *key, size_t klen, const uint8_t *buf,
                        size_t len, uint64_t lsn)
{
    uint64_t e, got;
    _Alignas(8) uint8_t packed[L3_DOC_TIGHT_BYTES];
    size_t plen;
    pack_small(buf, len, packed, &plen);
    if (plen) {
        buf = packed;
        len = plen;
    }
    if (overwrite_in_place(st, c, buf, len, lsn))
        return 0;
    int rc = alloc_key_block(st, c, key, klen, doc_cap_fresh(len), &e, &got);
    if (rc < 0)
        return rc;
    uint8_t *doc = AT(st, AT(st, e, l3_ix_entry_t)->ie_doc, uint8_t);
    memcpy(doc, buf, len);
    l3_doc_t d = {.buf = doc, .cap = got};
    l3_doc_set_lsn(&d, lsn);
    if (c->entry) {
        c->dbytes = (int64_t)len - (int64_t)l3_doc_size(c->doc);
        publish_doc(st, c, e);
        return 0;
    }
    c->dbytes = (int64_t)len;
    return insert_key(st, c, e);
}

static int check_match(const opctx_t *c, uint64_t if_match)
{
    if (if_match == 0)
        return 0;
    if (if_match == L3_STORE_IF_ABSENT)
        return c->entry ? -EEXIST : 0;
    if (!c->entry)
        return -ENOENT;
    return l3_doc_lsn(c->doc) == if_match ? 0 : -ESTALE;
}

/* ---------------------------------------------------------------- reading */

/* get_json for a read-only handle: on a verified private copy */
static int ro_get_json(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen,
                       unsigned flags, l3_buf_t *out, uint64_t *ret_lsn)
{
    uint8_t *b;
    size_t len;
    uint64_t lsn;
    int rc = l3_store__key_ok(key, klen);
    if (rc < 0)
        return rc;
    rc = l3_store__ro_copy(st, key, klen, &b, &len, &lsn, NULL);
    if (rc < 0)
        return rc;
    uint32_t slot = L3_DOC_ROOT;
    if (plen > 0)
        rc = l3_doc_lookup(b, path, plen, (int)(flags & 3u), &slot);
    if (rc == 0)
        rc = l3_doc_to_json(b, slot, out);
    free(b);
    if (rc == 0 && ret_lsn)
        *ret_lsn = lsn;
    return rc;
}

int l3_store_get_json(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen,
                      unsigned flags, l3_buf_t *out, uint64_t *ret_lsn)
{
    uint64_t ser_ns;
    return l3_store_get_json_timed(st, key, klen, path, plen, flags, out, ret_lsn, &ser_ns);
}

int l3_store_get_json_timed(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen,
                            unsigned flags, l3_buf_t *out, uint64_t *ret_lsn, uint64_t *ret_ser_ns)
{
    return l3_store_get_json_exp(st, key, klen, path, plen, flags, out, ret_lsn, ret_ser_ns, NULL);
}

int l3_store_get_json_exp(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen,
                          unsigned flags, l3_buf_t *out, uint64_t *ret_lsn, uint64_t *ret_ser_ns,
                          uint64_t *ret_expire_ms)
{
    opctx_t c;
    *ret_ser_ns = 0;
    if (ret_expire_ms)
        *ret_expire_ms = 0;
    if (st->readonly)
        return ro_get_json(st, key, klen, path, plen, flags, out, ret_lsn);
    int rc = op_lock(st, key, klen, OPM_READ, &c);
    if (rc < 0)
        return rc;
    if (!c.entry)
        return op_abort(st, &c, -ENOENT);
    uint32_t slot = L3_DOC_ROOT;
    if (plen > 0) {
        rc = l3_doc_lookup(c.doc, path, plen, (int)(flags & 3u), &slot);
        if (rc < 0)
            return op_abort(st, &c, rc);
    }
    uint64_t t0 = l3_now_ns();
    rc = l3_doc_to_json(c.doc, slot, out);
    *ret_ser_ns = l3_now_ns() - t0;
    uint64_t lsn = l3_doc_lsn(c.doc), exp = c.ent->ie_expire;
    l3_store__stripe_unlock(st, c.s);
    if (rc < 0)
        return rc;
    if (ret_lsn)
        *ret_lsn = lsn;
    if (ret_expire_ms)
        *ret_expire_ms = exp;
    return 0;
}

int l3_store_get_bin_exp(l3_store_t *st, const void *key, size_t klen, uint8_t **ret_buf, size_t *ret_len,
                         uint64_t *ret_lsn, uint64_t *ret_expire_ms)
{
    opctx_t c;
    if (st->readonly) {
        int r = l3_store__key_ok(key, klen);
        return r < 0 ? r : l3_store__ro_copy(st, key, klen, ret_buf, ret_len, ret_lsn, ret_expire_ms);
    }
    int rc = op_lock(st, key, klen, OPM_READ, &c);
    if (rc < 0)
        return rc;
    if (!c.entry)
        return op_abort(st, &c, -ENOENT);
    size_t len = l3_doc_size(c.doc);
    uint8_t *b = malloc(len ? len : 1);
    if (!b)
        return op_abort(st, &c, -ENOMEM);
    memcpy(b, c.doc, len);
    uint64_t lsn = l3_doc_lsn(c.doc), exp = c.ent->ie_expire;
    l3_store__stripe_unlock(st, c.s);
    *ret_buf = b;
    *ret_len = len;
    if (ret_lsn)
        *ret_lsn = lsn;
    if (ret_expire_ms)
        *ret_expire_ms = exp;
    return 0;
}

int l3_store_get_bin(l3_store_t *st, const void *key, size_t klen, uint8_t **ret_buf, size_t *ret_len,
                     uint64_t *ret_lsn)
{
    return l3_store_get_bin_exp(st, key, klen, ret_buf, ret_len, ret_lsn, NULL);
}

int l3_store_get_lsn(l3_store_t *st, const void *key, size_t klen, uint64_t *ret_lsn)
{
    uint64_t exp;
    return l3_store_get_expire(st, key, klen, &exp, ret_lsn);
}

/* ---------------------------------------------------------------- put, delete */

/* The WAL record of a PUT carries the binary document: replay only verifies and copies it. */
static int put_common(l3_store_t *st, const void *key, size_t klen, const uint8_t *buf, size_t len,
                      uint64_t if_match, uint64_t expire_ms, uint64_t replay_lsn, uint64_t *ret_lsn)
{
    opctx_t c;
    int rc = op_lock(st, key, klen, replay_lsn ? OPM_REPLAY : OPM_WRITE, &c);
    if (rc < 0)
        return rc;
    rc = check_match(&c, if_match);
    if (rc < 0)
        return op_abort(st, &c, rc);
    if (replay_lsn && c.entry && l3_doc_lsn(c.doc) >= replay_lsn)
        return op_abort(st, &c, 1);
    uint64_t lsn = l3_store__next_lsn(st, replay_lsn);
    rc = l3_store__store_doc(st, &c, key, klen, buf, len, lsn);
    if (rc < 0)
        return op_abort(st, &c, rc);
    DEBUG_VERIFY(c.doc, "put");
    len = l3_doc_size(c.doc); /* the record carries the document as stored (packed or not) */
    l3_store__set_deadline(st, &c, expire_ms);
    l3_wal_rec_t rec = {.op = L3_WALOP_PUT,
                        .lsn = lsn,
                        .key = key,
                        .klen = (uint32_t)klen,
                        .payload = c.doc,
                        .plen = (uint32_t)len};
    /* with a deadline the record carries it after the document (L3_WAL_RF_EXPIRY): a copy
     * for the record, so the arena's block holds no byte more than a PUT without one */
    uint8_t *copy = NULL;
    if (expire_ms && !replay_lsn && st->hook) {
        if ((copy = malloc(len + 8)) == NULL)
            return op_abort(st, &c, -ENOMEM);
        memcpy(copy, c.doc, len);
        l3_wal_put_deadline(copy + len, expire_ms);
        rec.flags = L3_WAL_RF_EXPIRY;
        rec.payload = copy;
        rec.plen = (uint32_t)(len + 8);
    }
    rc = op_finish(st, &c, replay_lsn ? NULL : &rec);
    free(copy);
    if (rc < 0)
        return rc;
    if (ret_lsn)
        *ret_lsn = lsn;
    return 0;
}

int l3_store_put_json(l3_store_t *st, const void *key, size_t klen, const char *json, size_t jlen,
                      uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    return l3_store_put_json_ttl(st, key, klen, json, jlen, if_match, 0, ret_lsn, err);
}

int l3_store__parse_put(const l3_store_t *st, const char *json, size_t jlen, uint8_t *small,
                        uint8_t **ret_doc, size_t *ret_len, l3_doc_error_t *err)
{
    l3_doc_error_t e = {0};
    l3_doc_parse_opts_t po = {.max_bytes = st->max_doc};
    /* a small document is parsed straight into the packed form it is stored in; the full
     * parse takes whatever does not pack (and reports errors) */
    if (jlen <= 2 * L3_DOC_PACK_MAX_BYTES &&
        l3_doc_pack_json(json, jlen, &po, small, L3_DOC_PACK_MAX_BYTES, ret_len) == 0) {
        *ret_doc = small;
        return 0;
    }
    int rc = l3_doc_from_json(json, jlen, &po, ret_doc, ret_len, &e);
    if (rc < 0) {
        if (err)
            *err = e;
        return rc;
    }
    *ret_len = l3_doc_size(*ret_doc);
    return 0;
}

int l3_store_put_json_ttl(l3_store_t *st, const void *key, size_t klen, const char *json, size_t jlen,
                          uint64_t if_match, uint64_t expire_ms, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    int rc = l3_store__key_ok(key, klen);
    if (rc < 0)
        return rc;
    rc = l3_store__check_registered(st);
    if (rc < 0)
        return rc;
    _Alignas(8) uint8_t small[L3_DOC_PACK_MAX_BYTES];
    uint8_t *buf;
    size_t len;
    rc = l3_store__parse_put(st, json, jlen, small, &buf, &len, err);
    if (rc < 0)
        return rc;
    rc = put_common(st, key, klen, buf, len, if_match, expire_ms, 0, ret_lsn);
    if (buf != small)
        free(buf);
    return rc;
}

int l3_store_put_bin(l3_store_t *st, const void *key, size_t klen, const uint8_t *doc, size_t len,
                     uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    return l3_store_put_bin_ttl(st, key, klen, doc, len, if_match, 0, ret_lsn, err);
}

/* A packed document's full form, which its first change of a field builds, must fit the
 * document limit too (S9); a limit of at least L3_DOC_PACK_FULL_BOUND holds every one. */
static int packed_full_fits(const l3_store_t *st, const uint8_t *doc)
{
    if (!l3_doc_is_packed(doc) || st->max_doc >= L3_DOC_PACK_FULL_BOUND)
        return 0;
    uint8_t *full;
    size_t len;
    int rc = l3_doc_unpack(doc, &full, &len);
    if (rc < 0)
        return rc;
    free(full);
    return len > st->max_doc ? L3_EDOCSIZE : 0;
}

int l3_store_put_bin_ttl(l3_store_t *st, const void *key, size_t klen, const uint8_t *doc, size_t len,
                         uint64_t if_match, uint64_t expire_ms, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    int rc = l3_store__key_ok(key, klen);
    if (rc < 0)
        return rc;
    rc = l3_store__check_registered(st);
    if (rc < 0)
        return rc;
    l3_doc_error_t e = {0};
    uint8_t *upgraded = NULL; /* a document of the previous format version, rebuilt */
    rc = l3_doc_verify_upgrade(doc, len, &upgraded, &e);
    if (rc < 0) {
        if (err)
            *err = e;
        return rc;
    }
    if (upgraded) {
        doc = upgraded;
        len = l3_doc_size(upgraded);
    }
    if (l3_doc_size(doc) > st->max_doc || (rc = packed_full_fits(st, doc)) < 0) {
        if (err) {
            err->offset = 8;
            err->msg = "document larger than storage.max_document_bytes";
        }
        free(upgraded);
        return rc < 0 && rc != L3_EDOCSIZE ? rc : L3_EDOCSIZE;
    }
    rc = put_common(st, key, klen, doc, L3_MIN(len, l3_doc_size(doc)), if_match, expire_ms, 0, ret_lsn);
    free(upgraded);
    return rc;
}

/*
 * Lock an existing document for a change: 0 with the stripe locked, or the value the
 * operation returns with nothing locked: -ENOENT (replay: 1, skipped), -ESTALE on an
 * If-Match mismatch, 1 when a replayed record is already reflected.
 */
static int lock_existing(l3_store_t *st, const void *key, size_t klen, uint64_t if_match, uint64_t replay_lsn,
                         opctx_t *c)
{
    int rc = op_lock(st, key, klen, replay_lsn ? OPM_REPLAY : OPM_WRITE, c);
    if (rc < 0)
        return rc;
    if (!c->entry)
        return op_abort(st, c, replay_lsn ? 1 : -ENOENT);
    rc = check_match(c, if_match);
    if (rc < 0)
        return op_abort(st, c, rc);
    if (replay_lsn && l3_doc_lsn(c->doc) >= replay_lsn)
        return op_abort(st, c, 1);
    return 0;
}

static int delete_common(l3_store_t *st, const void *key, size_t klen, uint64_t if_match, uint64_t replay_lsn,
                         uint64_t *ret_lsn)
{
    opctx_t c;
    int rc = lock_existing(st, key, klen, if_match, replay_lsn, &c);
    if (rc != 0)
        return rc;
    uint64_t lsn = l3_store__next_lsn(st, replay_lsn);
    remove_entry(st, &c);
    l3_wal_rec_t rec = {.op = L3_WALOP_DELETE, .lsn = lsn, .key = key, .klen = (uint32_t)klen};
    rc = op_finish(st, &c, replay_lsn ? NULL : &rec);
    if (rc < 0)
        return rc;
    if (ret_lsn)
        *ret_lsn = lsn;
    return 0;
}

int l3_store_delete(l3_store_t *st, const void *key, size_t klen, uint64_t if_match, uint64_t *ret_lsn)
{
    return delete_common(st, key, klen, if_match, 0, ret_lsn);
}

/* ---------------------------------------------------------------- expiry */

/* Set or remove (0) the key's deadline: a change of its own (new LSN, EXPIRE record). */
static int expire_common(l3_store_t *st, const void *key, size_t klen, uint64_t expire_ms, uint64_t if_match,
                         uint64_t replay_lsn, uint64_t *ret_lsn)
{
    opctx_t c;
    int rc = lock_existing(st, key, klen, if_match, replay_lsn, &c);
    if (rc != 0)
        return rc;
    uint64_t lsn = l3_store__next_lsn(st, replay_lsn);
    l3_doc_t d = {
        .buf = c.doc, .cap = l3_store__doc_cap(st, c.ent), .undo = l3_store__doc_undo_cb, .undo_ctx = st};
    l3_doc_set_lsn(&d, lsn);
    l3_store__set_deadline(st, &c, expire_ms);
    uint8_t pl[8];
    l3_wal_put_deadline(pl, expire_ms);
    l3_wal_rec_t rec = {
        .op = L3_WALOP_EXPIRE, .lsn = lsn, .key = key, .klen = (uint32_t)klen, .payload = pl, .plen = 8};
    rc = op_finish(st, &c, replay_lsn ? NULL : &rec);
    if (rc < 0)
        return rc;
    if (ret_lsn)
        *ret_lsn = lsn;
    return 0;
}

int l3_store_expire(l3_store_t *st, const void *key, size_t klen, uint64_t expire_ms, uint64_t if_match,
                    uint64_t *ret_lsn)
{
    return expire_common(st, key, klen, expire_ms, if_match, 0, ret_lsn);
}

int l3_store_get_expire(l3_store_t *st, const void *key, size_t klen, uint64_t *ret_expire_ms,
                        uint64_t *ret_lsn)
{
    opctx_t c;
    int rc = op_lock(st, key, klen, OPM_READ, &c);
    if (rc < 0)
        return rc;
    if (!c.entry)
        return op_abort(st, &c, -ENOENT);
    *ret_expire_ms = c.ent->ie_expire;
    if (ret_lsn)
        *ret_lsn = l3_doc_lsn(c.doc);
    l3_store__stripe_unlock(st, c.s);
    return 0;
}

int l3_store__reap_key(l3_store_t *st, const void *key, size_t klen, uint64_t now_ms)
{
    opctx_t c;
    int rc = op_lock(st, key, klen, OPM_REPLAY, &c); /* judged here, against now_ms */
    if (rc < 0)
        return rc;
    if (!c.entry || !l3_store__expired(c.ent->ie_expire, now_ms))
        return op_abort(st, &c, 0);
    rc = reap_locked(st, &c, key, klen, false);
    if (rc != 0)
        return op_abort(st, &c, rc);
    l3_store__stripe_unlock(st, c.s);
    return 1;
}

/* ---------------------------------------------------------------- in-place mutations */

enum { DOP_SET, DOP_SETINT, DOP_INCR };

typedef struct {
    int kind;
    const char *path;
    size_t plen;
    unsigned flags;
    const l3_doc_scalar_t *v;
    int64_t ival;   /* SETINT value, INCR delta */
    int64_t result; /* INCR result */
    uint64_t lsn;   /* stamped into the document on success */
} docop_t;

static int docop_apply(l3_doc_t *d, docop_t *o)
{
    int rc;
    switch (o->kind) {
    case DOP_SET:
        rc = l3_doc_set(d, o->path, o->plen, o->flags, o->v, NULL);
        break;
    case DOP_SETINT: {
        uint32_t slot;
        rc = l3_doc_lookup(d->buf, o->path, o->plen, (int)(o->flags & 3u), &slot);
        if (rc == 0)
            rc = l3_doc_slot_set_int(d, slot, o->ival);
        break;
    }
    case DOP_INCR:
        rc = l3_doc_incr(d, o->path, o->plen, o->flags, o->ival, &o->result);
        break;
    default:
        rc = -EINVAL;
    }
    if (rc >= 0)
        l3_doc_set_lsn(d, o->lsn);
    return rc;
}

/* Run docop_apply on the shared document with undo logging; L3_STORE__EUNDO when the undo
 * area overflowed (the partial change is still logged and must be undone). */
static int guarded_apply(l3_store_t *st, l3_doc_t *d, docop_t *o)
{
    if (sigsetjmp(st->jb, 0) != 0)
        return L3_STORE__EUNDO;
    st->jb_armed = 1;
    int rc = docop_apply(d, o);
    st->jb_armed = 0;
    return rc;
}

/* Apply on a private, larger copy of the document (src: c->doc or its full form), then
 * publish it. reseed: the copy is rebuilt under a fresh hash seed (the answer to
 * L3_EREHASH) instead of copied; plan (or NULL): the copy is compacted as planned
 * (l3_doc_compact_plan: the answer to L3_EDOCSIZE). */
static int grow_into(l3_store_t *st, opctx_t *c, const uint8_t *src, docop_t *o, size_t need, size_t limit,
                     bool reseed, const l3_doc_t *plan)
{
    uint64_t size = l3_doc_size(src);
    uint64_t want = L3_MAX((uint64_t)need + need / 4, size + size / 2) + 256;
    if (limit && want > limit)
        want = L3_MAX((uint64_t)limit, L3_MAX((uint64_t)need, size)); /* room() refuses past the limit */
    for (int tries = 0; tries < 6; tries++) {
        uint64_t e, cap;
        int rc = alloc_key_block(st, c, c->ent->ie_key, c->ent->ie_klen, want, &e, &cap);
        if (rc < 0)
            return rc;
        uint8_t *nd = AT(st, AT(st, e, l3_ix_entry_t)->ie_doc, uint8_t);
        size_t got;
        if (plan) {
            rc = l3_doc_compact_planned(src, plan, reseed, nd, cap, &got);
            if (rc < 0) {
                l3_store__free_now(st, e);
                return rc == -ENOBUFS ? L3_EDOCSIZE : rc; /* the plan's bytes are within the limit */
            }
        } else if (reseed) {
            if (l3_doc_compact_bound(src) > cap) {
                l3_store__free_now(st, e);
                want = L3_MAX(want * 2, (uint64_t)l3_doc_compact_bound(src) + 256);
                continue;
            }
            rc = l3_doc_rebuild(src, nd, cap, &got);
            if (rc < 0) {
                l3_store__free_now(st, e);
                return rc;
            }
        } else {
            memcpy(nd, src, size);
        }
        l3_doc_t d = {.buf = nd, .cap = cap, .limit = limit};
        rc = docop_apply(&d, o);
        if (rc == -ENOBUFS || rc == L3_EREHASH) {
            l3_store__free_now(st, e);
            if (rc == -ENOBUFS)
                want = L3_MAX((uint64_t)d.need + d.need / 4, want * 2);
            reseed = reseed || rc == L3_EREHASH;
            continue;
        }
        if (rc < 0) {
            l3_store__free_now(st, e);
            return rc;
        }
        publish_doc(st, c, e);
        __atomic_fetch_add(&st->hdr->ah_grows, 1, __ATOMIC_RELAXED);
        return 0;
    }
    return -ENOSPC;
}

static int grow_apply(l3_store_t *st, opctx_t *c, docop_t *o, size_t need, size_t limit, bool reseed)
{
    return grow_into(st, c, c->doc, o, need, limit, reseed, NULL);
}

/* The first change of a packed document: applied to its full form in a new block, with the
 * room a grown document gets; it is changed in place from then on. */
static int unpack_apply(l3_store_t *st, opctx_t *c, docop_t *o, size_t limit)
{
    uint8_t *full;
    size_t len;
    int rc = l3_doc_unpack(c->doc, &full, &len);
    if (rc < 0)
        return rc;
    /* a packed document PUT in binary may have a full form past the limit (S9): refused
     * like any change that would make the document too large */
    if (limit && len > limit) {
        free(full);
        return L3_EDOCSIZE;
    }
    rc = grow_into(st, c, full, o, len, limit, false, NULL);
    free(full);
    if (rc == 0)
        __atomic_fetch_add(&st->hdr->ah_unpacks, 1, __ATOMIC_RELAXED);
    return rc;
}

static void maybe_compact(l3_store_t *st, opctx_t *c)
{
    if (!l3_doc_should_compact(c->doc))
        return;
    size_t bound = l3_doc_compact_bound(c->doc);
    uint64_t e, cap;
    size_t len;
    if (alloc_key_block(st, c, c->ent->ie_key, c->ent->ie_klen, doc_cap_for(bound), &e, &cap) < 0)
        return; /* keep the garbage rather than fail the mutation */
    if (l3_doc_compact(c->doc, AT(st, AT(st, e, l3_ix_entry_t)->ie_doc, uint8_t), cap, &len) < 0) {
        l3_store__free_now(st, e);
        return;
    }
    publish_doc(st, c, e);
    __atomic_fetch_add(&st->hdr->ah_compactions, 1, __ATOMIC_RELAXED);
}

/* SET payload encoding (store.h). Returns the encoded length; writes only if it fits. */
size_t l3_store__enc_set(uint8_t *dst, size_t cap, const char *path, size_t plen, unsigned flags,
                         const l3_doc_scalar_t *v)
{
    size_t n = 8 + plen;
    switch (v->type) {
    case L3_DOC_INT:
    case L3_DOC_DOUBLE:
        n += 8;
        break;
    case L3_DOC_BOOL:
        n += 1;
        break;
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM:
        n += 4 + v->str.len;
        break;
    default:
        break;
    }
    if (n > cap)
        return n;
    uint16_t fl = (uint16_t)flags;
    uint32_t pl = (uint32_t)plen;
    dst[0] = 1;
    dst[1] = (uint8_t)v->type;
    memcpy(dst + 2, &fl, 2);
    memcpy(dst + 4, &pl, 4);
    if (plen)
        memcpy(dst + 8, path, plen);
    uint8_t *p = dst + 8 + plen;
    switch (v->type) {
    case L3_DOC_INT:
        memcpy(p, &v->i, 8);
        break;
    case L3_DOC_DOUBLE:
        memcpy(p, &v->d, 8);
        break;
    case L3_DOC_BOOL:
        *p = v->b ? 1 : 0;
        break;
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM: {
        uint32_t sl = (uint32_t)v->str.len;
        memcpy(p, &sl, 4);
        if (v->str.len)
            memcpy(p + 4, v->str.ptr, v->str.len);
        break;
    }
    default:
        break;
    }
    return n;
}

int l3_store_encode_set(const char *path, size_t plen, unsigned flags, const l3_doc_scalar_t *v,
                        uint8_t **ret_buf, size_t *ret_len)
{
    if (plen > UINT32_MAX ||
        (v->type == L3_DOC_STRING || v->type == L3_DOC_BIGNUM ? v->str.len > UINT32_MAX : 0))
        return -EINVAL;
    size_t n = l3_store__enc_set(NULL, 0, path, plen, flags, v);
    uint8_t *b = malloc(n);
    if (!b)
        return -ENOMEM;
    l3_store__enc_set(b, n, path, plen, flags, v);
    *ret_buf = b;
    *ret_len = n;
    return 0;
}

int l3_store_decode_set(const uint8_t *buf, size_t len, const char **ret_path, size_t *ret_plen,
                        unsigned *ret_flags, l3_doc_scalar_t *ret_v)
{
    if (len < 8 || buf[0] != 1 || buf[1] >= L3_DOC_TYPE_MAX)
        return L3_ECORRUPT;
    uint16_t fl;
    uint32_t pl;
    memcpy(&fl, buf + 2, 2);
    memcpy(&pl, buf + 4, 4);
    if (pl > len - 8)
        return L3_ECORRUPT;
    const uint8_t *p = buf + 8 + pl;
    size_t rest = len - 8 - pl;
    l3_doc_scalar_t v;
    memset(&v, 0, sizeof(v));
    v.type = (l3_doc_type_t)buf[1];
    switch (v.type) {
    case L3_DOC_INT:
    case L3_DOC_DOUBLE:
        if (rest != 8)
            return L3_ECORRUPT;
        if (v.type == L3_DOC_INT)
            memcpy(&v.i, p, 8);
        else
            memcpy(&v.d, p, 8);
        break;
    case L3_DOC_BOOL:
        if (rest != 1 || p[0] > 1)
            return L3_ECORRUPT;
        v.b = p[0] == 1;
        break;
    case L3_DOC_STRING:
    case L3_DOC_BIGNUM: {
        uint32_t sl;
        if (rest < 4)
            return L3_ECORRUPT;
        memcpy(&sl, p, 4);
        if (sl != rest - 4)
            return L3_ECORRUPT;
        v.str.ptr = (const char *)p + 4;
        v.str.len = sl;
        break;
    }
    default:
        if (rest != 0)
            return L3_ECORRUPT;
        break;
    }
    *ret_path = (const char *)buf + 8;
    *ret_plen = pl;
    *ret_flags = fl;
    *ret_v = v;
    return 0;
}

/* Apply o to c's document held to limit (0: none): in place under the undo log, or on a
 * grown, rebuilt or compacted copy in a new block. 0 or the change's error, nothing changed. */
static int apply_limited(l3_store_t *st, opctx_t *c, docop_t *o, size_t limit, size_t old_size)
{
    l3_doc_t d = {.buf = c->doc,
                  .cap = l3_store__doc_cap(st, c->ent),
                  .undo = l3_store__doc_undo_cb,
                  .undo_ctx = st,
                  .limit = limit};
    int rc = l3_doc_is_packed(c->doc) ? unpack_apply(st, c, o, limit) : guarded_apply(st, &d, o);
    if (rc == L3_STORE__EUNDO || rc == L3_EREHASH) {
        /* too much to log, or a hash chain past its bound: undo what was changed and redo
         * on a private copy (rebuilt under a fresh seed for the latter) */
        l3_store__tx_undo_phys(st);
        rc = grow_apply(st, c, o, old_size, limit, rc == L3_EREHASH);
    } else if (rc == -ENOBUFS) {
        rc = grow_apply(st, c, o, d.need, limit, false);
    } else if (rc == L3_EDOCSIZE && !l3_doc_is_packed(c->doc)) {
        /* nothing changed: a compacted copy (garbage dropped, room for a growing container)
         * may take the change within the limit after all */
        l3_doc_t plan;
        size_t need = l3_doc_compact_plan(c->doc, &d, &plan);
        if (need)
            rc = grow_into(st, c, c->doc, o, need, limit, false, &plan);
    }
    return rc;
}

static int mutate(l3_store_t *st, const void *key, size_t klen, docop_t *o, uint64_t if_match,
                  uint64_t replay_lsn, uint64_t *ret_lsn)
{
    opctx_t c;
    int rc = lock_existing(st, key, klen, if_match, replay_lsn, &c);
    if (rc != 0)
        return rc;
    size_t old_size = l3_doc_size(c.doc);
    o->lsn = l3_store__next_lsn(st, replay_lsn);
    /* replay holds the change to the limit first too, so that it builds what the live change
     * built (the same growth, the same compaction); only a record that limit refuses (it
     * was lowered since) is applied without one (O5) */
    rc = apply_limited(st, &c, o, st->max_doc, old_size);
    if (rc == L3_EDOCSIZE && replay_lsn)
        rc = apply_limited(st, &c, o, 0, old_size);
    if (rc < 0)
        return op_abort(st, &c, rc);
    maybe_compact(st, &c);
    /* set_int and incr store an int64 into a slot that holds an int (D4 of doc.c): no
     * value of it can make a document invalid, and an O(size) check per 8-byte store
     * would make large counters unusable in debug builds */
    if (o->kind == DOP_SET)
        DEBUG_VERIFY(c.doc, "set");
    c.dbytes = (int64_t)l3_doc_size(c.doc) - (int64_t)old_size;

    /* WAL record: SET with the resulting scalar */
    l3_wal_rec_t rec = {.op = L3_WALOP_SET,
                        .flags = o->kind == DOP_INCR ? L3_WAL_RF_INCR : 0,
                        .lsn = o->lsn,
                        .key = key,
                        .klen = (uint32_t)klen};
    uint8_t stackbuf[512];
    uint8_t *heap = NULL;
    if (st->hook && !replay_lsn) {
        l3_doc_scalar_t sv;
        const l3_doc_scalar_t *v = o->v;
        unsigned fl = o->flags;
        if (o->kind != DOP_SET) {
            memset(&sv, 0, sizeof(sv));
            sv.type = L3_DOC_INT;
            sv.i = o->kind == DOP_INCR ? o->result : o->ival;
            v = &sv;
            fl = (o->flags & 3u) | L3_DOC_SET_NO_CREATE | L3_DOC_SET_SAME_TYPE;
        }
        size_t n = l3_store__enc_set(stackbuf, sizeof(stackbuf), o->path, o->plen, fl, v);
        if (n > sizeof(stackbuf)) {
            heap = malloc(n);
            if (!heap)
                return op_abort(st, &c, -ENOMEM);
            l3_store__enc_set(heap, n, o->path, o->plen, fl, v);
        }
        rec.payload = heap ? heap : stackbuf;
        rec.plen = (uint32_t)n;
    }
    rc = op_finish(st, &c, replay_lsn ? NULL : &rec);
    free(heap);
    if (rc < 0)
        return rc;
    if (ret_lsn)
        *ret_lsn = o->lsn;
    return 0;
}

int l3_store_set(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen, unsigned flags,
                 const l3_doc_scalar_t *v, uint64_t if_match, uint64_t *ret_lsn)
{
    docop_t o = {.kind = DOP_SET, .path = path, .plen = plen, .flags = flags, .v = v};
    return mutate(st, key, klen, &o, if_match, 0, ret_lsn);
}

int l3_store_set_int(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen,
                     unsigned flags, int64_t v, uint64_t *ret_lsn)
{
    docop_t o = {.kind = DOP_SETINT, .path = path, .plen = plen, .flags = flags, .ival = v};
    return mutate(st, key, klen, &o, 0, 0, ret_lsn);
}

int l3_store_incr(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen, unsigned flags,
                  int64_t delta, int64_t *ret_new, uint64_t *ret_lsn)
{
    docop_t o = {.kind = DOP_INCR, .path = path, .plen = plen, .flags = flags, .ival = delta};
    int rc = mutate(st, key, klen, &o, 0, 0, ret_lsn);
    if (rc == 0 && ret_new)
        *ret_new = o.result;
    return rc;
}

/* ---------------------------------------------------------------- patches */

/* A heap copy of c's document to patch (an empty document when there is none). */
static int patch_copy(const opctx_t *c, l3_doc_t *hd)
{
    memset(hd, 0, sizeof(*hd));
    if (!c->entry) {
        int rc = l3_doc_heap_new(hd, 256);
        if (rc == 0)
            rc = l3_doc_init(hd);
        if (rc < 0) {
            l3_doc_heap_free(hd);
            return rc == -ENOBUFS ? -ENOMEM : rc;
        }
        return 0;
    }
    size_t size = l3_doc_size(c->doc);
    uint8_t *copy = malloc(size);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, c->doc, size);
    return l3_doc_heap_adopt_any(hd, copy, size);
}

static int patch_common(l3_store_t *st, const void *key, size_t klen, bool merge, const char *patch,
                        size_t len, uint64_t if_match, uint64_t replay_lsn, uint64_t *ret_lsn,
                        l3_doc_error_t *err)
{
    opctx_t c;
    l3_doc_t hd = {0};
    l3_doc_error_t e = {0};
    int created = 0;
    int rc = op_lock(st, key, klen, replay_lsn ? OPM_REPLAY : OPM_WRITE, &c);
    if (rc < 0)
        return rc;
    rc = check_match(&c, if_match);
    if (rc < 0)
        return op_abort(st, &c, rc);
    if (!c.entry && !merge)
        return op_abort(st, &c, replay_lsn ? 1 : -ENOENT);
    if (c.entry && replay_lsn && l3_doc_lsn(c.doc) >= replay_lsn)
        return op_abort(st, &c, 1);
    created = c.entry == 0;
    /* replay holds the patch to the limit first too (as mutate does), on a fresh copy
     * without one only if the limit refuses it (lowered since: O5) */
    for (int pass = 0; pass < (replay_lsn ? 2 : 1); pass++) {
        if ((rc = patch_copy(&c, &hd)) < 0)
            return op_abort(st, &c, rc);
        hd.limit = pass ? 0 : st->max_doc;
        rc = merge ? l3_doc_merge_patch(&hd, patch, len, &e) : l3_doc_json_patch(&hd, patch, len, &e);
        if (rc >= 0)
            break;
        l3_doc_heap_free(&hd);
        if (rc != L3_EDOCSIZE)
            break;
    }
    if (rc < 0) {
        if (err)
            *err = e;
        return op_abort(st, &c, rc);
    }
    (void)l3_doc_heap_maybe_compact(&hd);
    uint64_t lsn = l3_store__next_lsn(st, replay_lsn);
    rc = l3_store__store_doc(st, &c, key, klen, hd.buf, l3_doc_size(hd.buf), lsn);
    l3_doc_heap_free(&hd);
    if (rc < 0)
        return op_abort(st, &c, rc);
    DEBUG_VERIFY(c.doc, merge ? "merge patch" : "JSON Patch");
    l3_wal_rec_t rec = {.op = merge ? L3_WALOP_MERGE : L3_WALOP_PATCH,
                        .lsn = lsn,
                        .key = key,
                        .klen = (uint32_t)klen,
                        .payload = patch,
                        .plen = (uint32_t)len};
    rc = op_finish(st, &c, replay_lsn ? NULL : &rec);
    if (rc < 0)
        return rc;
    if (ret_lsn)
        *ret_lsn = lsn;
    return replay_lsn ? 0 : created; /* in replay, 1 means skipped */
}

int l3_store_merge_patch(l3_store_t *st, const void *key, size_t klen, const char *patch, size_t len,
                         uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    return patch_common(st, key, klen, true, patch, len, if_match, 0, ret_lsn, err);
}

int l3_store_json_patch(l3_store_t *st, const void *key, size_t klen, const char *patch, size_t len,
                        uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err)
{
    return patch_common(st, key, klen, false, patch, len, if_match, 0, ret_lsn, err);
}

/* ---------------------------------------------------------------- WAL */

void l3_store_set_wal_hook(l3_store_t *st, l3_wal_hook_fn fn, void *ctx)
{
    st->hook = fn;
    st->hook_ctx = ctx;
}

void l3_store_set_wal_probe(l3_store_t *st, l3_wal_probe_fn fn, void *ctx)
{
    st->probe = fn;
    st->probe_ctx = ctx;
}

int l3_store_replay(l3_store_t *st, const l3_wal_rec_t *rec)
{
    if (rec->lsn == 0)
        return L3_ECORRUPT;
    int rc;
    switch (rec->op) {
    case L3_WALOP_PUT: {
        /* the payload follows the key in the record: copy it to an aligned buffer when the
         * key's length left it unaligned (documents are read in place as 8-byte words) */
        const uint8_t *doc = rec->payload;
        uint8_t *tmp = NULL;
        uint32_t dlen = rec->plen;
        uint64_t expire_ms = 0;
        if (rec->flags & L3_WAL_RF_EXPIRY) {
            if (dlen < 8)
                return L3_ECORRUPT;
            dlen -= 8;
            expire_ms = l3_wal_get_deadline((const uint8_t *)rec->payload + dlen);
        }
        if ((uintptr_t)doc & 7u) {
            if ((tmp = malloc(dlen ? dlen : 1)) == NULL)
                return -ENOMEM;
            memcpy(tmp, doc, dlen);
            doc = tmp;
        }
        /* a record of the previous document format version is rebuilt into the current one */
        uint8_t *upgraded = NULL;
        rc = l3_doc_verify_upgrade(doc, dlen, &upgraded, NULL);
        rc = rc == -ENOMEM ? rc : rc < 0 ? L3_ECORRUPT : l3_store__check_registered(st);
        if (upgraded) {
            doc = upgraded;
            dlen = (uint32_t)l3_doc_size(upgraded);
        }
        if (rc >= 0)
            rc = put_common(st, rec->key, rec->klen, doc, L3_MIN(dlen, l3_doc_size(doc)), 0, expire_ms,
                            rec->lsn, NULL);
        free(upgraded);
        free(tmp);
        break;
    }
    case L3_WALOP_EXPIRE:
        if (rec->plen != 8)
            return L3_ECORRUPT;
        rc = expire_common(st, rec->key, rec->klen, l3_wal_get_deadline(rec->payload), 0, rec->lsn, NULL);
        break;
    case L3_WALOP_DELETE:
        rc = delete_common(st, rec->key, rec->klen, 0, rec->lsn, NULL);
        break;
    case L3_WALOP_SET: {
        const char *path;
        size_t plen;
        unsigned flags;
        l3_doc_scalar_t v;
        rc = l3_store_decode_set(rec->payload, rec->plen, &path, &plen, &flags, &v);
        if (rc < 0)
            return rc;
        docop_t o = {.kind = DOP_SET, .path = path, .plen = plen, .flags = flags, .v = &v};
        rc = mutate(st, rec->key, rec->klen, &o, 0, rec->lsn, NULL);
        break;
    }
    case L3_WALOP_MERGE:
    case L3_WALOP_PATCH:
        rc = patch_common(st, rec->key, rec->klen, rec->op == L3_WALOP_MERGE, rec->payload, rec->plen, 0,
                          rec->lsn, NULL, NULL);
        break;
    default:
        return L3_ECORRUPT;
    }
    l3_store_set_lsn_floor(st, rec->lsn);
    return rc;
}

/* ---------------------------------------------------------------- listing, scanning */

typedef struct {
    uint8_t *key;
    uint32_t klen;
    uint64_t lsn;
} keyrec_t;

static void free_keys(keyrec_t *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(k[i].key);
    free(k);
}

/* Read-side helpers usable without locks (read-only handles): bounds-checked access. */
static bool range_ok(const l3_store_t *st, uint64_t off, uint64_t len)
{
    const l3_arena_hdr_t *h = st->hdr;
    return off >= h->ah_off_heap && off <= st->size && len <= st->size - off;
}

/* Copy up to `max` matching keys of stripe s from table position *inout_pos on: the live
 * ones, or (expired) only those whose deadline has passed at now_ms.
 * Locked for a registered handle; for a read-only one, read optimistically (sp_gen). */
static int collect(l3_store_t *st, uint32_t s, const void *prefix, size_t plen, uint32_t *inout_pos,
                   size_t max, uint64_t now_ms, bool expired, keyrec_t **ret, size_t *ret_n, bool *ret_done)
{
    l3_stripe_t *sp = &st->stripes[s];
    bool locked = !st->readonly;
    keyrec_t *out = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t gen = 0;
        if (locked) {
            rc = l3_store__stripe_lock(st, s);
            if (rc < 0)
                return rc;
        } else {
            gen = __atomic_load_n(&sp->sp_gen, __ATOMIC_ACQUIRE);
            if (gen & 1) {
                struct timespec ts = {0, 200000};
                nanosleep(&ts, NULL);
                continue;
            }
        }
        uint64_t table = __atomic_load_n(&sp->sp_table, __ATOMIC_ACQUIRE);
        uint32_t tcap = __atomic_load_n(&sp->sp_cap, __ATOMIC_ACQUIRE);
        uint32_t pos = *inout_pos;
        bool bad = false;
        *ret_done = true;
        if (table != 0 && range_ok(st, table, (uint64_t)tcap * sizeof(l3_ix_slot_t))) {
            const l3_ix_slot_t *t = AT(st, table, l3_ix_slot_t);
            for (; pos < tcap; pos++) {
                uint64_t v = __atomic_load_n(&t[pos].ix, __ATOMIC_ACQUIRE);
                if (v <= L3_IX_TOMB)
                    continue;
                uint64_t e = l3_ix_slot_entry(v);
                if (!range_ok(st, e, L3_IX_ENTRY_HDR)) {
                    bad = true;
                    break;
                }
                const l3_ix_entry_t *ent = AT(st, e, l3_ix_entry_t);
                uint32_t kl = ent->ie_klen;
                if (ent->ie_magic != L3_IX_ENTRY_MAGIC || kl == 0 || kl > L3_STORE_KEY_MAX ||
                    !range_ok(st, e + L3_IX_ENTRY_HDR, kl)) {
                    bad = true;
                    break;
                }
                if (kl < plen || (plen && memcmp(ent->ie_key, prefix, plen) != 0))
                    continue;
                uint64_t exp = ent->ie_expire;
                if (l3_store__expired(exp, now_ms) != expired)
                    continue;
                if (max && n >= max) {
                    *ret_done = false;
                    break;
                }
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    keyrec_t *nk = realloc(out, cap * sizeof(*out));
                    if (!nk) {
                        rc = -ENOMEM;
                        break;
                    }
                    out = nk;
                }
                out[n].key = malloc(kl);
                if (!out[n].key) {
                    rc = -ENOMEM;
                    break;
                }
                memcpy(out[n].key, ent->ie_key, kl);
                out[n].klen = kl;
                out[n].lsn = 0;
                uint64_t doc = ent->ie_doc;
                if (range_ok(st, doc, 32))
                    memcpy(&out[n].lsn, st->base + doc + 16, 8); /* header dh_lsn */
                n++;
            }
        }
        if (locked) {
            l3_store__stripe_unlock(st, s);
        } else if (bad || __atomic_load_n(&sp->sp_gen, __ATOMIC_ACQUIRE) != gen) {
            free_keys(out, n);
            out = NULL;
            n = cap = 0;
            if (rc < 0)
                return rc;
            continue;
        }
        if (rc < 0) {
            free_keys(out, n);
            return rc;
        }
        *inout_pos = pos;
        *ret = out;
        *ret_n = n;
        return 0;
    }
    free_keys(out, n);
    return -EAGAIN;
}

int l3_store_keys(l3_store_t *st, const void *prefix, size_t plen, uint64_t *inout_cursor, size_t limit,
                  l3_store_key_fn fn, void *ctx)
{
    if (!st->readonly) {
        int rc = l3_store__check_registered(st);
        if (rc < 0)
            return rc;
    }
    uint32_t ns = st->hdr->ah_nstripes;
    uint64_t now = l3_store_now_ms();
    uint32_t s = (uint32_t)(*inout_cursor >> 32);
    uint32_t pos = (uint32_t)*inout_cursor;
    size_t reported = 0;
    for (; s < ns; s++, pos = 0) {
        keyrec_t *k = NULL;
        size_t n = 0;
        bool done;
        int rc = collect(st, s, prefix, plen, &pos, limit ? limit - reported : 0, now, false, &k, &n, &done);
        if (rc < 0)
            return rc;
        for (size_t i = 0; i < n; i++) {
            int r = fn(ctx, k[i].key, k[i].klen, k[i].lsn);
            if (r != 0) {
                free_keys(k, n);
                *inout_cursor = 0;
                return r;
            }
        }
        free_keys(k, n);
        reported += n;
        if (done && limit && reported >= limit && s + 1 < ns) {
            *inout_cursor = (uint64_t)(s + 1) << 32;
            return (int)reported;
        }
        if (!done) {
            *inout_cursor = ((uint64_t)s << 32) | pos;
            return (int)reported;
        }
    }
    *inout_cursor = 0;
    return (int)reported;
}

/* ---------------------------------------------------------------- expiry sweep */

/* Recompute stripe s's sp_exp_min from every entry (under its lock). */
static int stripe_exp_min(l3_store_t *st, uint32_t s)
{
    int rc = l3_store__stripe_lock(st, s);
    if (rc < 0)
        return rc;
    l3_stripe_t *sp = &st->stripes[s];
    uint64_t min = UINT64_MAX;
    const l3_ix_slot_t *t = sp->sp_table ? AT(st, sp->sp_table, l3_ix_slot_t) : NULL;
    for (uint32_t i = 0; t != NULL && i < sp->sp_cap; i++) {
        uint64_t v = t[i].ix;
        if (v <= L3_IX_TOMB)
            continue;
        uint64_t exp = AT(st, l3_ix_slot_entry(v), l3_ix_entry_t)->ie_expire;
        if (exp != 0 && exp < min)
            min = exp;
    }
    __atomic_store_n(&sp->sp_exp_min, min, __ATOMIC_RELAXED);
    l3_store__stripe_unlock(st, s);
    return 0;
}

int l3_store_expire_sweep(l3_store_t *st, uint32_t max_stripes, size_t max_keys, size_t *ret_removed)
{
    *ret_removed = 0;
    int rc = l3_store__check_registered(st);
    if (rc < 0)
        return rc;
    if (__atomic_load_n(&st->hdr->ah_state, __ATOMIC_ACQUIRE) == L3_ARENA_POISONED)
        return 0; /* takes no writes (store.md, "Poisoning"): expired keys stay hidden */
    uint64_t now = l3_store_now_ms();
    uint32_t ns = st->hdr->ah_nstripes;
    size_t removed = 0;
    for (uint32_t i = 0; i < L3_MIN(max_stripes, ns) && removed < max_keys && rc == 0; i++) {
        uint32_t s = (uint32_t)__atomic_fetch_add(&st->hdr->ah_exp_cursor, 1, __ATOMIC_RELAXED) & st->smask;
        if (__atomic_load_n(&st->stripes[s].sp_exp_min, __ATOMIC_RELAXED) > now)
            continue; /* no deadline of this stripe has passed */
        keyrec_t *k = NULL;
        size_t n = 0;
        uint32_t pos = 0;
        bool done;
        rc = collect(st, s, NULL, 0, &pos, max_keys - removed, now, true, &k, &n, &done);
        for (size_t j = 0; j < n && rc == 0; j++) {
            int r = l3_store__reap_key(st, k[j].key, k[j].klen, now);
            if (r < 0)
                rc = r;
            else
                removed += (size_t)r;
        }
        free_keys(k, n);
        if (rc == 0 && done)
            rc = stripe_exp_min(st, s);
    }
    *ret_removed = removed;
    return rc;
}

/* Copy a document for a read-only handle: seqlock-style retry plus verification. */
int l3_store__ro_copy(l3_store_t *st, const void *key, size_t klen, uint8_t **ret_buf, size_t *ret_len,
                      uint64_t *ret_lsn, uint64_t *ret_expire_ms)
{
    uint64_t h = l3_store__hash(st, key, klen);
    l3_stripe_t *sp = &st->stripes[h & st->smask];
    int last = -EAGAIN;
    for (int attempt = 0; attempt < 200; attempt++) {
        uint64_t gen = __atomic_load_n(&sp->sp_gen, __ATOMIC_ACQUIRE);
        if (gen & 1) {
            struct timespec ts = {0, 500000};
            nanosleep(&ts, NULL);
            continue;
        }
        uint64_t table = sp->sp_table;
        uint32_t tcap = sp->sp_cap;
        if (table == 0)
            return -ENOENT;
        if (tcap == 0 || (tcap & (tcap - 1)) || !range_ok(st, table, (uint64_t)tcap * sizeof(l3_ix_slot_t))) {
            last = L3_ECORRUPT;
            continue;
        }
        const l3_ix_slot_t *t = AT(st, table, l3_ix_slot_t);
        uint32_t mask = tcap - 1, tag = l3_ix_tag(h), i = tag & mask;
        uint64_t found = 0;
        for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
            uint64_t v = __atomic_load_n(&t[i].ix, __ATOMIC_ACQUIRE);
            if (v == L3_IX_EMPTY)
                break;
            uint64_t e = l3_ix_slot_entry(v);
            if (v == L3_IX_TOMB || l3_ix_slot_tag(v) != tag || !range_ok(st, e, L3_IX_ENTRY_HDR + klen))
                continue;
            const l3_ix_entry_t *ent = AT(st, e, l3_ix_entry_t);
            if (ent->ie_klen == klen && memcmp(ent->ie_key, key, klen) == 0) {
                found = e;
                break;
            }
        }
        if (!found) {
            if (__atomic_load_n(&sp->sp_gen, __ATOMIC_ACQUIRE) != gen)
                continue;
            return -ENOENT;
        }
        const l3_ix_entry_t *ent = AT(st, found, l3_ix_entry_t);
        uint64_t doc = ent->ie_doc, exp = ent->ie_expire, cap;
        uint32_t used;
        if (found < L3_BLOCK_HDR ||
            !range_ok(st, found - L3_BLOCK_HDR, L3_BLOCK_HDR + l3_store__prefix(klen)) ||
            doc != found + l3_store__prefix(klen) || !range_ok(st, doc, 32) ||
            (cap = l3_store__doc_cap(st, ent)) > st->size) {
            last = L3_ECORRUPT;
            continue;
        }
        if (exp != 0 && l3_store__expired(exp, l3_store_now_ms())) { /* clock only with a deadline */
            if (__atomic_load_n(&sp->sp_gen, __ATOMIC_ACQUIRE) != gen)
                continue;
            return -ENOENT;
        }
        memcpy(&used, st->base + doc + 8, 4);
        if (used < 32 || used > cap || !range_ok(st, doc, used)) {
            last = L3_ECORRUPT;
            continue;
        }
        uint8_t *b = malloc(used);
        if (!b)
            return -ENOMEM;
        memcpy(b, st->base + doc, used);
        if (__atomic_load_n(&sp->sp_gen, __ATOMIC_ACQUIRE) != gen) {
            free(b);
            continue;
        }
        if (l3_doc_verify(b, used, NULL) < 0) {
            free(b);
            last = L3_ECORRUPT;
            continue;
        }
        *ret_buf = b;
        *ret_len = used;
        if (ret_lsn)
            *ret_lsn = l3_doc_lsn(b);
        if (ret_expire_ms)
            *ret_expire_ms = exp;
        return 0;
    }
    return last;
}

int l3_store_scan(l3_store_t *st, const void *prefix, size_t plen, l3_store_scan_fn fn, void *ctx,
                  uint64_t *ret_start_lsn)
{
    if (!st->readonly) {
        int rc = l3_store__check_registered(st);
        if (rc < 0)
            return rc;
    }
    if (ret_start_lsn)
        *ret_start_lsn = l3_store_last_lsn(st);
    for (uint32_t s = 0; s < st->hdr->ah_nstripes; s++) {
        keyrec_t *k = NULL;
        size_t n = 0;
        uint32_t pos = 0;
        bool done;
        int rc = collect(st, s, prefix, plen, &pos, 0, l3_store_now_ms(), false, &k, &n, &done);
        if (rc < 0)
            return rc;
        for (size_t i = 0; i < n; i++) {
            uint8_t *doc;
            size_t len;
            uint64_t lsn, exp = 0;
            rc = st->readonly ? l3_store__ro_copy(st, k[i].key, k[i].klen, &doc, &len, &lsn, &exp)
                              : l3_store_get_bin_exp(st, k[i].key, k[i].klen, &doc, &len, &lsn, &exp);
            if (rc == -ENOENT)
                continue;
            if (rc < 0) {
                free_keys(k, n);
                return rc;
            }
            rc = fn(ctx, k[i].key, k[i].klen, doc, len, lsn, exp);
            free(doc);
            if (rc != 0) {
                free_keys(k, n);
                return rc;
            }
        }
        free_keys(k, n);
    }
    return 0;
}
