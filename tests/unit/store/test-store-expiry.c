/* SPDX-License-Identifier: MIT */
/*
 * test-store-expiry.c - key deadlines (store.h "expiry", ops.c O6): a key past its deadline
 * is absent to reads, listings and scans; a write to it first removes it with a logged
 * DELETE marked EXPIRED; the sweep removes what is due and nothing else; PUT sets or clears
 * the deadline, set/incr/patch keep it, expire/persist change it with a new LSN; a
 * transaction never writes over an expired key; replaying the logged records into a fresh
 * store gives the same keys and deadlines; l3_store_check stays clean throughout.
 */
#include "l3kv/walhook.h"
#include "sth.h"

#define MAXREC 4096

typedef struct {
    l3_wal_rec_t rec;
    uint8_t *buf; /* key + payload */
} caprec_t;

static caprec_t cap[MAXREC];
static size_t ncap;

static void keep(const l3_wal_rec_t *r)
{
    if (ncap >= MAXREC)
        return;
    caprec_t *c = &cap[ncap++];
    c->buf = malloc(r->klen + r->plen + 8);
    memcpy(c->buf, r->key, r->klen);
    if (r->plen > 0)
        memcpy(c->buf + r->klen, r->payload, r->plen);
    c->rec = *r;
    c->rec.key = c->buf;
    c->rec.payload = c->buf + r->klen;
}

static int cap_hook(void *ctx, const l3_wal_rec_t *r)
{
    (void)ctx;
    keep(r);
    return 0;
}

static int cap_group(void *ctx, const l3_wal_rec_t *recs, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        keep(&recs[i]);
    return 0;
}

static void cap_clear(void)
{
    for (size_t i = 0; i < ncap; i++)
        free(cap[i].buf);
    ncap = 0;
}

static const caprec_t *last_rec(void)
{
    return ncap ? &cap[ncap - 1] : NULL;
}

static int put_ttl(l3_store_t *st, const char *key, const char *json, uint64_t exp)
{
    return l3_store_put_json_ttl(st, key, strlen(key), json, strlen(json), 0, exp, NULL, NULL);
}

static uint64_t deadline_of(l3_store_t *st, const char *key)
{
    uint64_t exp = UINT64_MAX;
    if (l3_store_get_expire(st, key, strlen(key), &exp, NULL) != 0)
        return UINT64_MAX;
    return exp;
}

static int count_keys(void *ctx, const void *key, size_t klen, uint64_t lsn)
{
    (void)key;
    (void)klen;
    (void)lsn;
    (*(int *)ctx)++;
    return 0;
}

static int nkeys(l3_store_t *st)
{
    int n = 0;
    uint64_t cur = 0;
    do
        CHECK(l3_store_keys(st, NULL, 0, &cur, 0, count_keys, &n) >= 0);
    while (cur != 0);
    return n;
}

typedef struct {
    int n;
    uint64_t exp_sum;
} scan_t;

static int scan_cb(void *ctx, const void *key, size_t klen, const uint8_t *doc, size_t len, uint64_t lsn,
                   uint64_t exp)
{
    scan_t *s = ctx;
    s->n++;
    s->exp_sum += exp;
    return 0;
}

static void clean(l3_store_t *st)
{
    CHECK_EQ_INT(l3_store_check(st, 3, NULL, NULL), 0);
}

static void test_reads_and_writes(void)
{
    l3_store_t *st = sth_create(16 << 20, 8, 0);
    l3_store_set_wal_hook(st, cap_hook, NULL);
    uint64_t now = l3_store_now_ms(), past = now - 1, future = now + 3600000;
    CHECK_EQ_INT(put_ttl(st, "gone", "{\"n\":1}", past), 0);
    const caprec_t *r = last_rec();
    CHECK(r && r->rec.op == L3_WALOP_PUT && r->rec.flags == L3_WAL_RF_EXPIRY);
    CHECK(r && r->rec.plen >= 8 && l3_wal_get_deadline((const uint8_t *)r->rec.payload + r->rec.plen - 8) == past);
    CHECK_EQ_INT(put_ttl(st, "live", "{\"n\":2}", future), 0);
    CHECK_EQ_INT(sth_put(st, "plain", "{\"n\":3}"), 0);
    CHECK(last_rec()->rec.flags == 0);
    /* reads: absent */
    CHECK(sth_json(st, "gone") == NULL);
    uint8_t *b;
    size_t len;
    CHECK_EQ_INT(l3_store_get_bin(st, "gone", 4, &b, &len, NULL), -ENOENT);
    uint64_t lsn;
    CHECK_EQ_INT(l3_store_get_lsn(st, "gone", 4, &lsn), -ENOENT);
    CHECK(deadline_of(st, "gone") == UINT64_MAX);
    CHECK(deadline_of(st, "live") == future);
    CHECK(deadline_of(st, "plain") == 0);
    CHECK_EQ_INT(nkeys(st), 2);
    scan_t sc = {0};
    CHECK_EQ_INT(l3_store_scan(st, NULL, 0, scan_cb, &sc, NULL), 0);
    CHECK(sc.n == 2 && sc.exp_sum == future);
    /* in-place ops on the expired key: removed first (logged), then a missing key */
    size_t before = ncap;
    CHECK_EQ_INT(l3_store_incr(st, "gone", 4, "n", 1, 0, 1, NULL, NULL), -ENOENT);
    CHECK(ncap == before + 1 && cap[before].rec.op == L3_WALOP_DELETE &&
          cap[before].rec.flags == L3_WAL_RF_EXPIRED);
    CHECK_EQ_INT(l3_store_incr(st, "gone", 4, "n", 1, 0, 1, NULL, NULL), -ENOENT);
    CHECK(ncap == before + 1); /* nothing more to remove */
    /* set/incr/patch keep the deadline; PUT clears or sets it; expire/persist change it */
    int64_t nv;
    CHECK_EQ_INT(l3_store_incr(st, "live", 4, "n", 1, 0, 5, &nv, NULL), 0);
    CHECK(nv == 7 && deadline_of(st, "live") == future);
    CHECK_EQ_INT(l3_store_merge_patch(st, "live", 4, "{\"m\":1}", 7, 0, NULL, NULL), 0);
    CHECK(deadline_of(st, "live") == future);
    uint64_t v1 = 0, v2 = 0;
    CHECK_EQ_INT(l3_store_get_lsn(st, "live", 4, &v1), 0);
    CHECK_EQ_INT(l3_store_expire(st, "live", 4, future + 5, 0, &v2), 0);
    CHECK(v2 > v1 && deadline_of(st, "live") == future + 5);
    CHECK(last_rec()->rec.op == L3_WALOP_EXPIRE && l3_wal_get_deadline(last_rec()->rec.payload) == future + 5);
    CHECK_EQ_INT(l3_store_expire(st, "live", 4, 0, v1, NULL), -ESTALE);
    CHECK_EQ_INT(l3_store_expire(st, "live", 4, 0, v2, NULL), 0);
    CHECK(deadline_of(st, "live") == 0);
    CHECK_EQ_INT(l3_store_expire(st, "nope", 4, future, 0, NULL), -ENOENT);
    CHECK_EQ_INT(put_ttl(st, "plain", "{\"n\":4}", future), 0);
    CHECK(deadline_of(st, "plain") == future);
    CHECK_EQ_INT(sth_put(st, "plain", "{\"n\":5}"), 0);
    CHECK(deadline_of(st, "plain") == 0);
    /* a PUT over an expired key: removed first, then created afresh without a deadline */
    CHECK_EQ_INT(put_ttl(st, "again", "{\"old\":1}", past), 0);
    before = ncap;
    CHECK_EQ_INT(l3_store_merge_patch(st, "again", 5, "{\"new\":1}", 9, 0, NULL, NULL), 1);
    CHECK(ncap == before + 2 && cap[before].rec.flags == L3_WAL_RF_EXPIRED &&
          cap[before + 1].rec.op == L3_WALOP_MERGE);
    char *j = sth_json(st, "again");
    CHECK(j && strcmp(j, "{\"new\":1}") == 0);
    free(j);
    CHECK(deadline_of(st, "again") == 0);
    clean(st);
    cap_clear();
    sth_destroy(st);
}

static void test_sweep_and_replay(void)
{
    l3_store_t *st = sth_create(32 << 20, 16, 0);
    l3_store_set_wal_hook(st, cap_hook, NULL);
    uint64_t now = l3_store_now_ms();
    char key[32];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        uint64_t exp = i % 3 == 0 ? now - 1 : i % 3 == 1 ? now + 3600000 + (uint64_t)i : 0;
        CHECK_EQ_INT(put_ttl(st, key, "{\"v\":1}", exp), 0);
    }
    CHECK_EQ_INT(nkeys(st), 200);
    size_t removed = 0, total = 0;
    CHECK_EQ_INT(l3_store_expire_sweep(st, 16, 7, &removed), 0); /* bounded by max_keys */
    CHECK(removed == 7);
    total += removed;
    for (int round = 0; round < 100 && total < 100; round++) {
        CHECK_EQ_INT(l3_store_expire_sweep(st, 16, 1000, &removed), 0);
        total += removed;
    }
    CHECK(total == 100);
    CHECK_EQ_INT(l3_store_expire_sweep(st, 16, 1000, &removed), 0);
    CHECK(removed == 0);
    l3_store_stats_t s;
    CHECK_EQ_INT(l3_store_stats(st, &s), 0);
    CHECK(s.expired == 100 && s.keys == 200);
    size_t ndel = 0;
    for (size_t i = 0; i < ncap; i++)
        ndel += cap[i].rec.op == L3_WALOP_DELETE && cap[i].rec.flags == L3_WAL_RF_EXPIRED;
    CHECK(ndel == 100);
    clean(st);
    /* replaying every record into a fresh store gives the same keys and deadlines */
    l3_store_t *r = sth_create(32 << 20, 8, 0);
    for (size_t i = 0; i < ncap; i++)
        CHECK(l3_store_replay(r, &cap[i].rec) >= 0);
    CHECK_EQ_INT(nkeys(r), 200);
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        CHECK(deadline_of(r, key) == deadline_of(st, key));
    }
    clean(r);
    sth_destroy(r);
    cap_clear();
    sth_destroy(st);
}

static void test_transactions(void)
{
    l3_store_t *st = sth_create(16 << 20, 8, 0);
    l3_store_set_wal_hook(st, cap_hook, NULL);
    l3_store_set_wal_group_hook(st, cap_group, NULL);
    uint64_t now = l3_store_now_ms(), future = now + 3600000;
    CHECK_EQ_INT(put_ttl(st, "a", "{\"n\":1}", now - 1), 0);
    CHECK_EQ_INT(put_ttl(st, "b", "{\"n\":2}", future), 0);
    const char *keys[] = {"a", "b", "c"};
    size_t kl[] = {1, 1, 1};
    size_t before = ncap;
    l3_store_txn_t *t = NULL;
    CHECK_EQ_INT(l3_store_txn_begin(st, (const void *const *)keys, kl, 3, 0, &t), 0);
    /* the expired key was removed (logged) before the transaction locked it */
    CHECK(ncap == before + 1 && cap[before].rec.flags == L3_WAL_RF_EXPIRED);
    const uint8_t *d;
    CHECK_EQ_INT(l3_store_txn_get(t, "a", 1, &d, NULL), -ENOENT);
    CHECK_EQ_INT(l3_store_txn_merge_patch(t, "a", 1, "{\"x\":1}", 7, 0, NULL, NULL), 1);
    CHECK_EQ_INT(l3_store_txn_expire(t, "b", 1, 0, 0, NULL), 0);
    CHECK_EQ_INT(l3_store_txn_put_json_ttl(t, "c", 1, "{\"c\":1}", 7, 0, future + 1, NULL, NULL), 0);
    CHECK_EQ_INT(l3_store_txn_expire(t, "nope", 4, future, 0, NULL), -EINVAL);
    CHECK_EQ_INT(l3_store_txn_commit(t), 0);
    CHECK(deadline_of(st, "a") == 0 && deadline_of(st, "b") == 0 && deadline_of(st, "c") == future + 1);
    char *j = sth_json(st, "a");
    CHECK(j && strcmp(j, "{\"x\":1}") == 0);
    free(j);
    /* an aborted transaction changes no deadline */
    CHECK_EQ_INT(l3_store_txn_begin(st, (const void *const *)keys, kl, 3, 0, &t), 0);
    CHECK_EQ_INT(l3_store_txn_expire(t, "a", 1, future, 0, NULL), 0);
    l3_store_txn_abort(t);
    CHECK(deadline_of(st, "a") == 0);
    /* replay of everything logged reproduces the deadlines */
    l3_store_t *r = sth_create(16 << 20, 8, 0);
    for (size_t i = 0; i < ncap; i++)
        CHECK(l3_store_replay(r, &cap[i].rec) >= 0);
    CHECK(deadline_of(r, "a") == 0 && deadline_of(r, "b") == 0 && deadline_of(r, "c") == future + 1);
    clean(st);
    clean(r);
    sth_destroy(r);
    cap_clear();
    sth_destroy(st);
}

int main(void)
{
    test_reads_and_writes();
    test_sweep_and_replay();
    test_transactions();
    return t_done();
}
