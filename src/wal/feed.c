/* SPDX-License-Identifier: MIT */
/*
 * feed.c - the change feed's reader of the WAL ring (l3kv/walfeed.h). Runs in workers;
 * reads shared memory only: no lock, no syscall, no store the write path would notice.
 *
 * When is a slot still intact? A slot at position p (ring offset o = p % size) is
 * overwritten only by a reservation covering a position x in [p + size, p + size + len).
 * reserve() (ring.c) writes there in three ways:
 *   (1) filling a record: after rh_head moved past x, so rh_head > x >= p + size;
 *   (2) the header of a pad, or of a slot that needs no pad: while rh_head == x;
 *   (3) the header of a record placed at the start of the area behind a pad published in
 *       the same critical section: rh_head still holds the pad's position x - pad, with
 *       pad < need <= rh_max_rec, and x is a multiple of size, at least L(p + size)
 *       (L rounds up to a multiple of size).
 * So a reader that copied the slot, then (full fence) loads rh_head and finds
 *   rh_head < p + size  and  rh_head <= L(p + size) - rh_max_rec
 * copied bytes that no reservation had begun to overwrite: rh_head only grows, and every
 * write above happened after rh_head held the value the case names. Slot contents never
 * change once PUBLISHED (the writer seals its own copy), so such a copy is the record.
 * Every position from rh_head - (size - rh_max_rec) up is readable by this rule; older
 * slots are readable while the head has not come close to their next lap.
 *
 * Transaction groups (ring.c, "transaction groups"): a record with L3_WAL_RF_TXFIRST is
 * reported only once every record of its group up to the TXLAST one is published below
 * the limit; until then the reader waits there, as at a RESERVED slot. A group that can no
 * longer complete (an ABORTED slot, or a record that does not belong, before its TXLAST:
 * the producer died) is stepped over: its published records are never reported, so the
 * feed shows a transaction whole or not at all, and its records contiguously. The look
 * ahead reads slot headers only, bounded by L3_WAL_GROUP_MAX records (and their pads),
 * all at positions above pos, so the one overrun check of pos covers them.
 *
 * Limits: a call looks at max_slots slots at most (a group's look-ahead counts as one); keys longer than the
 * caller's buffer are refused; every read is bounds-checked against the data area before it happens, so a
 * forged position reads garbage at worst, never outside the ring, and the garbage fails
 * the slot and record checks.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "l3kv/walfeed.h"
#include "wal-int.h"

static uint64_t rd(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

void l3_wal_feed_bounds(const l3_wal_ring_t *r, l3_wal_feed_bounds_t *ret)
{
    const l3_wal_shm_t *sh = r->sh;
    ret->epoch = sh->rh_init_ns ? sh->rh_init_ns : 1;
    ret->durable = atomic_load_explicit(&((l3_wal_shm_t *)sh)->rh_durable, memory_order_acquire);
    ret->head = atomic_load_explicit(&((l3_wal_shm_t *)sh)->rh_head, memory_order_acquire);
    uint64_t keep = r->size - sh->rh_max_rec;
    ret->oldest = ret->head > keep ? ret->head - keep : 0;
}

static int overrun_at(const l3_wal_ring_t *r, uint64_t pos, uint64_t head)
{
    uint64_t size = r->size, y = pos + size;
    uint64_t lap = (y + size - 1) / size * size;
    if (head >= y)
        return 1;
    return head + r->sh->rh_max_rec > lap;
}

int l3_wal_feed_overrun(const l3_wal_ring_t *r, uint64_t pos)
{
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t head = atomic_load_explicit(&r->sh->rh_head, memory_order_acquire);
    return overrun_at(r, pos, head);
}

/* The transaction group whose first record is at pos: 1 every record up to the last one
 * is published below limit, 0 not yet, -1 it cannot complete (*ret_end: where its
 * published part ends), -2 a slot of the wrong shape. */
static int group_state(const l3_wal_ring_t *r, uint64_t pos, uint64_t limit, uint64_t *ret_end)
{
    const uint64_t size = r->size;
    uint64_t q = pos;
    for (unsigned n = 0; n < 2 * L3_WAL_GROUP_MAX + 2 && q < limit; n++) {
        uint64_t off = q % size;
        if (off + L3_WAL_SLOT_HDR > size)
            return -2;
        l3_wal_slot_t *s = l3_wal__slot(r, q);
        uint32_t st = atomic_load_explicit(&s->rs_state, memory_order_acquire);
        uint32_t len = s->rs_len;
        if (len < L3_WAL_SLOT_HDR || len % L3_WAL_SLOT_HDR != 0 || off + len > size ||
            st < L3_WAL_SLOT_RESERVED || st > L3_WAL_SLOT_PAD)
            return -2;
        if (st == L3_WAL_SLOT_RESERVED)
            return 0;
        if (st == L3_WAL_SLOT_PUBLISHED) {
            if (len < L3_WAL_SLOT_HDR + L3_WAL_REC_MIN)
                return -2;
            const uint8_t *rec = (const uint8_t *)s + L3_WAL_SLOT_HDR;
            uint8_t fl = rec[11];
            if (rd(rec + 8, 2) != L3_WAL_REC_MAGIC || !(fl & L3_WAL_RF_TX) ||
                (q != pos && (fl & L3_WAL_RF_TXFIRST))) {
                *ret_end = q;
                return -1;
            }
            if (fl & L3_WAL_RF_TXLAST)
                return 1;
        } else if (st == L3_WAL_SLOT_ABORTED) {
            *ret_end = q;
            return -1;
        }
        q += len;
    }
    if (q < limit) { /* longer than any group: not one */
        *ret_end = q;
        return -1;
    }
    return 0;
}

int l3_wal_feed_next(const l3_wal_ring_t *r, uint64_t pos, uint64_t limit, unsigned max_slots,
                     l3_wal_feed_ev_t *ev, uint8_t *key, size_t cap, uint64_t *ret_pos)
{
    const uint64_t size = r->size;
    *ret_pos = pos;
    if (pos % L3_WAL_SLOT_HDR != 0)
        return -EBADMSG;
    if (pos < limit && l3_wal_feed_overrun(r, pos))
        return -ESTALE;
    for (unsigned n = 0; n < max_slots && pos < limit; n++) {
        uint64_t off = pos % size;
        if (off + L3_WAL_SLOT_HDR + L3_WAL_REC_HDR > size && off + L3_WAL_SLOT_HDR > size)
            return -EBADMSG;
        l3_wal_slot_t *s = l3_wal__slot(r, pos);
        uint32_t st = atomic_load_explicit(&s->rs_state, memory_order_acquire);
        uint32_t len = s->rs_len;
        uint8_t hdr[L3_WAL_REC_HDR], frag[L3_WAL_FRAG_HDR];
        uint32_t klen = 0, plen = 0, wlen = 0;
        int shape = len >= L3_WAL_SLOT_HDR && len % L3_WAL_SLOT_HDR == 0 && off + len <= size &&
                    st >= L3_WAL_SLOT_RESERVED && st <= L3_WAL_SLOT_PAD;
        int rec_ok = 0;
        if (shape && st == L3_WAL_SLOT_PUBLISHED && len >= L3_WAL_SLOT_HDR + L3_WAL_REC_MIN) {
            const uint8_t *rec = (const uint8_t *)s + L3_WAL_SLOT_HDR;
            memcpy(hdr, rec, sizeof hdr);
            wlen = (uint32_t)rd(hdr + 0, 4);
            klen = (uint32_t)rd(hdr + 12, 4);
            plen = (uint32_t)rd(hdr + 16, 4);
            rec_ok = rd(hdr + 8, 2) == L3_WAL_REC_MAGIC && wlen <= len - L3_WAL_SLOT_HDR && klen > 0 &&
                     klen <= cap && (uint64_t)L3_WAL_REC_HDR + klen + plen + 8 <= wlen &&
                     hdr[10] >= L3_WALOP_PUT && hdr[10] < L3_WALOP_MAX && (hdr[11] & ~L3_WAL_RF_MASK) == 0;
            if (rec_ok && hdr[10] == L3_WALOP_FRAG && plen < L3_WAL_FRAG_HDR)
                rec_ok = 0;
            if (rec_ok) {
                memcpy(key, rec + L3_WAL_REC_HDR, klen);
                if (hdr[10] == L3_WALOP_FRAG)
                    memcpy(frag, rec + L3_WAL_REC_HDR + klen, sizeof frag);
            }
        }
        int gs = 1;
        uint64_t gend = pos;
        if (rec_ok && (hdr[11] & L3_WAL_RF_TX) && (hdr[11] & L3_WAL_RF_TXFIRST))
            gs = group_state(r, pos, limit, &gend);
        if (l3_wal_feed_overrun(r, pos))
            return -ESTALE; /* what was copied may be another lap's bytes */
        if (!shape || (st == L3_WAL_SLOT_PUBLISHED && !rec_ok) || gs == -2)
            return -EBADMSG;
        if (st == L3_WAL_SLOT_RESERVED || gs == 0)
            break; /* not published yet: later slots wait for it (ring order) */
        if (gs == -1) {
            pos = gend; /* a transaction that never completed: none of it is reported */
            continue;
        }
        uint64_t next = pos + len;
        if (st == L3_WAL_SLOT_PUBLISHED) {
            uint8_t op = hdr[10];
            if (op == L3_WALOP_FRAG) {
                op = frag[0];
                if (frag[1] != 1 || !l3_walop_is_change(op)) {
                    pos = next; /* not the final piece: the change is reported at its end */
                    continue;
                }
            }
            ev->op = op;
            ev->flags = hdr[11];
            ev->lsn = rd(hdr + 24, 8);
            ev->klen = klen;
            ev->end = next;
            *ret_pos = next;
            return 1;
        }
        pos = next; /* pad or aborted */
    }
    *ret_pos = pos;
    return 0;
}
