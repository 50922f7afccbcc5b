/* SPDX-License-Identifier: MIT */
/*
 * test-wal-feed.c - the change feed's ring reader (src/wal/feed.c): every record in order
 * with its key and LSN; a RESERVED slot stops the reader until it is published or aborted;
 * pads and aborted slots are stepped over; and, with random record sizes wrapping a small
 * ring many times (the writer's consumption simulated by moving rh_tail), a read of a
 * remembered position either returns exactly the record that was there or -ESTALE - never
 * another lap's bytes - and every position the header promises (oldest) is readable.
 */
#include <stdio.h>

#include "l3kv/walfeed.h"
#include "wal-int.h"
#include "walt.h"

#define NREC 40

static void consume_all(l3_wal_ring_t *r)
{
    atomic_store(&r->sh->rh_tail, atomic_load(&r->sh->rh_head));
}

static int append(l3_wal_ring_t *r, uint64_t lsn, uint32_t plen)
{
    char key[32];
    int n = snprintf(key, sizeof key, "key-%llu", (unsigned long long)lsn);
    static uint8_t pay[8192];
    memset(pay, (int)(lsn & 0xff), plen);
    l3_wal_rec_t rec = {.op = L3_WALOP_PUT, .lsn = lsn, .key = key, .klen = (uint32_t)n, .payload = pay,
                        .plen = plen};
    return l3_wal_hook(r, &rec);
}

static void test_order_and_slots(void)
{
    l3_wal_ring_t *r = walt_ring(L3_WAL_RING_MIN_BYTES, NULL);
    for (uint64_t i = 1; i <= NREC; i++)
        CHECK_EQ_INT(append(r, i, 50), 0);
    l3_wal_feed_bounds_t b;
    l3_wal_feed_bounds(r, &b);
    CHECK(b.epoch != 0);
    uint64_t pos = 0, prev_end = 0;
    uint8_t key[1024];
    for (uint64_t i = 1; i <= NREC; i++) {
        l3_wal_feed_ev_t ev;
        CHECK_EQ_INT(l3_wal_feed_next(r, pos, b.head, 256, &ev, key, sizeof key, &pos), 1);
        char want[32];
        int n = snprintf(want, sizeof want, "key-%llu", (unsigned long long)i);
        CHECK_EQ_INT(ev.lsn, i);
        CHECK_EQ_INT(ev.op, L3_WALOP_PUT);
        CHECK(ev.klen == (uint32_t)n && memcmp(key, want, (size_t)n) == 0);
        CHECK(ev.end > prev_end && ev.end == pos);
        prev_end = ev.end;
    }
    l3_wal_feed_ev_t ev;
    CHECK_EQ_INT(l3_wal_feed_next(r, pos, b.head, 256, &ev, key, sizeof key, &pos), 0);
    CHECK_EQ_INT(pos, b.head);
    uint64_t junk;
    CHECK_EQ_INT(l3_wal_feed_next(r, 8, b.head, 256, &ev, key, sizeof key, &junk), -EBADMSG);

    /* a RESERVED slot stops the reader, a later published record waits behind it */
    l3_wal_resv_t res;
    CHECK_EQ_INT(l3_wal_reserve(r, 3, 10, 100, &res), 0);
    CHECK_EQ_INT(append(r, NREC + 1, 20), 0);
    l3_wal_feed_bounds(r, &b);
    uint64_t at = pos;
    CHECK_EQ_INT(l3_wal_feed_next(r, at, b.head, 256, &ev, key, sizeof key, &pos), 0);
    CHECK_EQ_INT(pos, res.pos);
    l3_wal_abandon(r, &res); /* aborted: stepped over */
    CHECK_EQ_INT(l3_wal_feed_next(r, at, b.head, 256, &ev, key, sizeof key, &pos), 1);
    CHECK_EQ_INT(ev.lsn, NREC + 1);
    /* a durable-only reader stops at its limit */
    CHECK_EQ_INT(l3_wal_feed_next(r, at, at, 256, &ev, key, sizeof key, &pos), 0);
    CHECK_EQ_INT(pos, at);
    l3_wal_ring_detach(r);
}

typedef struct {
    uint64_t pos, lsn;
} seen_t;

static void test_wrap_never_torn(uint64_t *seed)
{
    l3_wal_ring_t *r = walt_ring(L3_WAL_RING_MIN_BYTES, NULL);
    enum { N = 6000 };
    static seen_t seen[N];
    uint8_t key[1024];
    unsigned ok = 0, stale = 0;
    for (uint64_t i = 0; i < N; i++) {
        uint64_t head = atomic_load(&r->sh->rh_head);
        uint32_t plen = (uint32_t)(t_rand(seed) % 4000);
        if (t_rand(seed) % 50 == 0)
            plen = 7000; /* large records force pads at the end of the area */
        consume_all(r);
        CHECK_EQ_INT(append(r, i + 1, plen), 0);
        /* the record's slot: behind a pad when it did not fit before the end */
        uint64_t p = head;
        l3_wal_feed_ev_t ev;
        uint64_t np;
        CHECK_EQ_INT(l3_wal_feed_next(r, p, atomic_load(&r->sh->rh_head), 256, &ev, key, sizeof key, &np), 1);
        CHECK_EQ_INT(ev.lsn, i + 1);
        seen[i] = (seen_t){p, i + 1};
        if (i % 7 != 0)
            continue;
        l3_wal_feed_bounds_t b;
        l3_wal_feed_bounds(r, &b);
        for (uint64_t j = i >= 200 ? i - 200 : 0; j <= i; j++) {
            int rc = l3_wal_feed_next(r, seen[j].pos, b.head, 256, &ev, key, sizeof key, &np);
            if (rc == 1) {
                ok++;
                CHECK_EQ_INT(ev.lsn, seen[j].lsn); /* never another lap's record */
                char want[32];
                int n = snprintf(want, sizeof want, "key-%llu", (unsigned long long)seen[j].lsn);
                CHECK(ev.klen == (uint32_t)n && memcmp(key, want, (size_t)n) == 0);
            } else {
                stale++;
                CHECK_EQ_INT(rc, -ESTALE);
                CHECK(seen[j].pos < b.oldest); /* everything from oldest up stays readable */
            }
        }
    }
    CHECK(ok > 1000 && stale > 1000); /* both sides of the rule were exercised */
    fprintf(stderr, "wrap: %u reads intact, %u refused as overwritten\n", ok, stale);
    l3_wal_ring_detach(r);
}

int main(void)
{
    uint64_t seed = t_seed();
    test_order_and_slots();
    test_wrap_never_torn(&seed);
    return t_done();
}
