/* SPDX-License-Identifier: MIT */
/*
 * feedlog.c - the change feed beyond the ring: the writer's position map of its segments
 * and the channel over which it serves retained segments to the workers (l3kv/walfeed.h).
 *
 * Cursors are ring positions of one ring instance (its epoch). A segment holds records
 * back to back without their slot headers, pads or aborted slots, so a file offset alone
 * does not give the ring position of a record. The writer knows both when it gathers a
 * record and keeps, per segment, a position map: the ring position of the segment's start
 * and an entry (file offset, ring position) for every record that does not follow its
 * predecessor's slot directly (a pad or an aborted slot lies between them, or it is the
 * first record) plus one every FM_STRIDE file bytes (so a lookup reads at most that far
 * before its cursor). Between entries a record's ring position is the previous one plus
 * its slot length, L3_ALIGN_UP(wr_len + 16, 16) (ring.c, reserve). Building the map costs
 * the writer one comparison per record; an entry is added under the map's mutex.
 *
 * The map of every closed segment is saved in "<wal_path>.feedmap" each time a segment is
 * closed (so a graceful stop saves the last one), and loaded by the next writer: a cursor
 * of an earlier run is found again in the segments a checkpoint retained
 * (opts.retain_bytes). Segments without a map (the one a crashed writer left) break the
 * chain: a cursor before them is 410.
 *
 * ---------------------------------------------------------------- position map file
 *   header (64 bytes)
 *     0   8  fm_magic     "L3KVFMAP"
 *     8   4  fm_version   1
 *    12   4  fm_hdr_len   64
 *    16   4  fm_nseg      segments that follow (at most FM_MAX_SEGS)
 *    20   4  fm_nent      entries in all of them (at most FM_MAX_ENTS)
 *    24   4  fm_body_crc  CRC32C of every byte after the header
 *    28  32  zero
 *    60   4  fm_crc       CRC32C of bytes [0, 60)
 *   per segment, ascending seq: 64 bytes, then its entries (16 bytes each: off, pos)
 *     0   8  seq        8  8  salt (the segment header's)   16  8  epoch (ring of the run)
 *    24   8  first (ring position at the segment's creation)   32  8  end (after its last slot)
 *    40   8  bytes (file length at close)   48  4  nent   52  12  zero
 * A file that fails any check is ignored (old cursors are then 410, nothing else changes);
 * a segment whose file is gone, or whose length or salt differ from the map, is not served.
 *
 * ---------------------------------------------------------------- channel
 * A unix stream socket (opts.feed_sock, created 0600 by the writer in the data directory),
 * served by one thread of the writer process (poll over the listening socket and at most
 * FM_MAX_CLIENTS connections); the write loop never waits for it. Request and reply
 * (little-endian; both checksummed):
 *   request (40 bytes, then plen prefix bytes)
 *     0 4 "L3FQ"  4 2 version 1  6 2 flags (1 = durable only)  8 8 epoch  16 8 pos
 *    24 4 max_events  28 4 max_bytes (reply body, <= L3_WAL_LOG_BODY_MAX)  32 4 plen
 *    36 4 CRC32C of bytes [0, 36) chained over the prefix
 *   reply (48 bytes, then body_len bytes of events)
 *     0 4 "L3FR"  4 2 version 1  6 2 zero  8 4 status (0 or a negative code)  12 4 count
 *    16 8 next epoch  24 8 next pos (resume here)  32 4 body_len  36 4 body CRC32C
 *    40 4 zero  44 4 CRC32C of bytes [0, 44)
 *   event: 0 8 epoch  8 8 end (its cursor)  16 8 lsn  24 4 klen  28 1 op  29 1 flags
 *          30 2 zero  32 key, zero padded to a multiple of 8
 * A request reads at most FM_SCAN_MAX segment bytes; each record it reads is checked like
 * replay checks it (length, magic, op, flags, reserved field, CRC32C, salt) and a record
 * that fails, a segment shorter than its map, or a map entry off a record boundary end
 * the answer with L3_ECORRUPT (logged with the file and offset). Retained files are read
 * with pread (plain syscalls: reads of closed files need no ordering with the writes).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "l3kv/error.h"
#include "l3kv/walfeed.h"
#include "wal-int.h"

#define FM_MAGIC "L3KVFMAP"
#define FM_VERSION 1u
#define FM_HDR 64u
#define FM_SEG_HDR 64u
#define FM_STRIDE (256u * 1024u) /* a map entry at least every this many file bytes */
#define FM_MAX_SEGS 4096u        /* segments with a map */
#define FM_MAX_ENTS (1u << 18)   /* entries over all segments (4 MiB) */
#define FM_SCAN_MAX (8u << 20)   /* segment bytes one request reads at most */
#define FM_RBUF (64u * 1024u)    /* read window */
#define FM_KEY_MAX 16384u        /* longest key the channel carries */
#define FM_MAX_CLIENTS 256u
#define FM_IO_TIMEOUT_MS 2000
#define FQ_MAGIC 0x5146334cu /* "L3FQ" */
#define FR_MAGIC 0x5246334cu /* "L3FR" */
#define FQ_HDR 40u
#define FR_HDR 48u
#define FE_HDR 32u

typedef struct {
    uint64_t off, pos;
} fm_ent_t;

typedef struct {
    uint64_t seq, salt, epoch, first, end, bytes;
    int closed;
    fm_ent_t *e;
    uint32_t n, cap;
} fm_seg_t;

struct l3_wal_fmap {
    pthread_mutex_t mu;
    char wal_path[4096];
    uint64_t epoch;
    fm_seg_t *s; /* ascending seq */
    size_t n, cap;
    uint64_t total;
    int active;        /* index of the segment being written, -1 none */
    uint64_t next_seq; /* the segment this run's writer creates next (l3_wal__fmap_expect) */
    /* writer thread only: where the next record continues the active segment's map */
    uint64_t next_off, next_pos, last_ent_off;
    l3_wal_retain_info_t *info;
    /* channel */
    l3_wal_ring_t *ring;
    void (*log)(int severity, const char *line);
    int lfd, wake[2], running;
    pthread_t th;
    char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

#define fm_log(m, sev, ...) l3_wal__log((m)->log, sev, __VA_ARGS__)

static uint64_t slot_len(uint64_t rlen)
{
    return L3_ALIGN_UP(rlen + L3_WAL_SLOT_HDR, (uint64_t)16);
}

/* ---------------------------------------------------------------- the map */

static void seg_free(fm_seg_t *s)
{
    free(s->e);
    s->e = NULL;
    s->n = s->cap = 0;
}

/* drop segment i (lock held) */
static void seg_drop(l3_wal_fmap_t *m, size_t i)
{
    m->total -= m->s[i].n;
    seg_free(&m->s[i]);
    memmove(&m->s[i], &m->s[i + 1], (m->n - i - 1) * sizeof *m->s);
    m->n--;
    if (m->active == (int)i)
        m->active = -1;
    else if (m->active > (int)i)
        m->active--;
}

static int ent_push(l3_wal_fmap_t *m, fm_seg_t *s, uint64_t off, uint64_t pos)
{
    while (m->total >= FM_MAX_ENTS && m->n > 1 && &m->s[0] != s)
        seg_drop(m, 0), s--; /* the oldest map goes first: its cursors become 410 */
    if (m->total >= FM_MAX_ENTS)
        return -ENOMEM;
    if (s->n == s->cap) {
        uint32_t nc = s->cap ? s->cap * 2 : 64;
        fm_ent_t *ne = realloc(s->e, nc * sizeof *ne);
        if (ne == NULL)
            return -ENOMEM;
        s->e = ne;
        s->cap = nc;
    }
    s->e[s->n++] = (fm_ent_t){off, pos};
    m->total++;
    return 0;
}

/* the oldest cursor still served: the start of the oldest segment from which every later
 * one has a map (lock held) */
static void publish_oldest(l3_wal_fmap_t *m)
{
    if (m->info == NULL)
        return;
    size_t i = m->n;
    while (i > 1 && m->s[i - 2].seq + 1 == m->s[i - 1].seq && m->s[i - 2].closed)
        i--;
    uint64_t e = 0, p = 0;
    if (i > 0 && i <= m->n) {
        e = m->s[i - 1].epoch;
        p = m->s[i - 1].first;
    }
    __atomic_store_n(&m->info->oldest_pos, p, __ATOMIC_RELAXED);
    __atomic_store_n(&m->info->oldest_epoch, e, __ATOMIC_RELEASE);
}

void l3_wal__fmap_expect(l3_wal_fmap_t *m, uint64_t seq)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    m->next_seq = seq;
    pthread_mutex_unlock(&m->mu);
}

void l3_wal__fmap_open(l3_wal_fmap_t *m, uint64_t seq, uint64_t salt, uint64_t first)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    while (m->n > 0 && m->s[m->n - 1].seq >= seq) /* a number created again */
        seg_drop(m, m->n - 1);
    if (m->n == FM_MAX_SEGS)
        seg_drop(m, 0);
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 16;
        fm_seg_t *ns = realloc(m->s, nc * sizeof *ns);
        if (ns == NULL) {
            m->active = -1;
            pthread_mutex_unlock(&m->mu);
            return;
        }
        m->s = ns;
        m->cap = nc;
    }
    m->s[m->n] = (fm_seg_t){.seq = seq, .salt = salt, .epoch = m->epoch, .first = first, .end = first};
    m->active = (int)m->n++;
    m->next_off = L3_WAL_SEG_HDR;
    m->next_pos = UINT64_MAX; /* the first record gets an entry */
    m->last_ent_off = 0;
    publish_oldest(m);
    pthread_mutex_unlock(&m->mu);
}

void l3_wal__fmap_note(l3_wal_fmap_t *m, uint64_t off, uint64_t pos, uint32_t rlen)
{
    if (m == NULL || m->active < 0)
        return;
    if (off != m->next_off || pos != m->next_pos || off - m->last_ent_off >= FM_STRIDE) {
        pthread_mutex_lock(&m->mu);
        if (m->active >= 0) {
            fm_seg_t *s = &m->s[m->active];
            while (s->n > 0 && s->e[s->n - 1].off >= off) { /* gathered again after a failed write */
                s->n--;
                m->total--;
            }
            if (ent_push(m, s, off, pos) < 0) /* no room: this segment cannot be served */
                seg_drop(m, (size_t)m->active);
        }
        pthread_mutex_unlock(&m->mu);
        m->last_ent_off = off;
    }
    m->next_off = off + rlen;
    m->next_pos = pos + slot_len(rlen);
}

void l3_wal__fmap_close(l3_wal_fmap_t *m, uint64_t bytes, uint64_t end)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    if (m->active >= 0) {
        fm_seg_t *s = &m->s[m->active];
        s->closed = 1;
        s->bytes = bytes;
        s->end = end;
        m->active = -1;
    }
    publish_oldest(m);
    pthread_mutex_unlock(&m->mu);
}

void l3_wal__fmap_prune(l3_wal_fmap_t *m, const uint64_t *seqs, const uint8_t *gone, int n, uint64_t retained)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    for (size_t i = m->n; i-- > 0;) {
        if ((int)i == m->active)
            continue;
        int keep = 0;
        for (int k = 0; k < n; k++)
            if (seqs[k] == m->s[i].seq)
                keep = gone == NULL || !gone[k];
        if (!keep)
            seg_drop(m, i);
    }
    publish_oldest(m);
    if (m->info != NULL)
        __atomic_store_n(&m->info->retained_bytes, retained, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&m->mu);
}

int64_t l3_wal__fmap_encode(l3_wal_fmap_t *m, uint8_t **ret_buf)
{
    pthread_mutex_lock(&m->mu);
    size_t len = FM_HDR;
    uint32_t nseg = 0, nent = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->s[i].closed) {
            len += FM_SEG_HDR + (size_t)m->s[i].n * 16u;
            nseg++;
            nent += m->s[i].n;
        }
    uint8_t *b = calloc(1, len), *p = b + FM_HDR;
    if (b == NULL) {
        pthread_mutex_unlock(&m->mu);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->n; i++) {
        const fm_seg_t *s = &m->s[i];
        if (!s->closed)
            continue;
        const uint64_t f[6] = {s->seq, s->salt, s->epoch, s->first, s->end, s->bytes};
        for (unsigned k = 0; k < 6; k++)
            l3_wal__st64(p + 8 * k, f[k]);
        l3_wal__st32(p + 48, s->n);
        p += FM_SEG_HDR;
        for (uint32_t k = 0; k < s->n; k++, p += 16) {
            l3_wal__st64(p, s->e[k].off);
            l3_wal__st64(p + 8, s->e[k].pos);
        }
    }
    pthread_mutex_unlock(&m->mu);
    memcpy(b, FM_MAGIC, 8);
    l3_wal__st32(b + 8, FM_VERSION);
    l3_wal__st32(b + 12, FM_HDR);
    l3_wal__st32(b + 16, nseg);
    l3_wal__st32(b + 20, nent);
    l3_wal__st32(b + 24, l3_crc32c(0, b + FM_HDR, len - FM_HDR));
    l3_wal__st32(b + 60, l3_crc32c(0, b, 60));
    *ret_buf = b;
    return (int64_t)len;
}

/* Parse a map file (untrusted bytes): the segments that still match their files. */
static void fmap_parse(l3_wal_fmap_t *m, const uint8_t *b, size_t len)
{
    if (len < FM_HDR || memcmp(b, FM_MAGIC, 8) != 0 || l3_wal__ld32(b + 8) != FM_VERSION ||
        l3_wal__ld32(b + 12) != FM_HDR || l3_wal__ld32(b + 60) != l3_crc32c(0, b, 60) ||
        l3_wal__ld32(b + 24) != l3_crc32c(0, b + FM_HDR, len - FM_HDR))
        return;
    uint32_t nseg = l3_wal__ld32(b + 16);
    size_t off = FM_HDR;
    uint64_t last_seq = 0, last_epoch = 0;
    for (uint32_t i = 0; i < nseg && i < FM_MAX_SEGS && off + FM_SEG_HDR <= len; i++) {
        const uint8_t *p = b + off;
        fm_seg_t s = {.seq = l3_wal__ld64(p),
                      .salt = l3_wal__ld64(p + 8),
                      .epoch = l3_wal__ld64(p + 16),
                      .first = l3_wal__ld64(p + 24),
                      .end = l3_wal__ld64(p + 32),
                      .bytes = l3_wal__ld64(p + 40),
                      .closed = 1};
        uint32_t ne = l3_wal__ld32(p + 48);
        off += FM_SEG_HDR;
        if (ne > FM_MAX_ENTS || off + (size_t)ne * 16u > len)
            return;
        const uint8_t *ep = b + off;
        off += (size_t)ne * 16u;
        char name[4200];
        struct stat st;
        /* later runs have later epochs (a clock that went back: the map is dropped) */
        if (s.seq <= last_seq || s.epoch < last_epoch || s.epoch > m->epoch || s.end < s.first ||
            l3_wal__seg_name(name, sizeof name, m->wal_path, s.seq) < 0 || stat(name, &st) != 0 ||
            (uint64_t)st.st_size != s.bytes || m->total + ne > FM_MAX_ENTS)
            continue;
        if (m->n == m->cap) {
            size_t nc = m->cap ? m->cap * 2 : 16;
            fm_seg_t *ns = realloc(m->s, nc * sizeof *ns);
            if (ns == NULL)
                return;
            m->s = ns;
            m->cap = nc;
        }
        s.e = ne ? malloc((size_t)ne * sizeof *s.e) : NULL;
        if (ne && s.e == NULL)
            return;
        s.n = s.cap = ne;
        for (uint32_t k = 0; k < ne; k++)
            s.e[k] = (fm_ent_t){l3_wal__ld64(ep + 16u * k), l3_wal__ld64(ep + 16u * k + 8)};
        m->s[m->n++] = s;
        m->total += ne;
        last_seq = s.seq;
        last_epoch = s.epoch;
    }
}

l3_wal_fmap_t *l3_wal__fmap_new(const char *wal_path, uint64_t epoch, l3_wal_retain_info_t *info,
                                void (*log)(int, const char *))
{
    l3_wal_fmap_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    pthread_mutex_init(&m->mu, NULL);
    snprintf(m->wal_path, sizeof m->wal_path, "%s", wal_path);
    m->epoch = epoch;
    m->active = -1;
    m->info = info;
    m->log = log;
    m->lfd = m->wake[0] = m->wake[1] = -1;
    char name[4200];
    snprintf(name, sizeof name, "%s.feedmap", wal_path);
    int fd = open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0 &&
        (uint64_t)st.st_size <= FM_HDR + (uint64_t)FM_MAX_SEGS * FM_SEG_HDR + (uint64_t)FM_MAX_ENTS * 16u) {
        uint8_t *b = malloc((size_t)st.st_size);
        if (b != NULL && pread(fd, b, (size_t)st.st_size, 0) == st.st_size)
            fmap_parse(m, b, (size_t)st.st_size);
        free(b);
    }
    if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&m->mu);
    publish_oldest(m);
    pthread_mutex_unlock(&m->mu);
    return m;
}

void l3_wal__fmap_free(l3_wal_fmap_t *m)
{
    if (m == NULL)
        return;
    l3_wal__fmap_serve_stop(m);
    for (size_t i = 0; i < m->n; i++)
        seg_free(&m->s[i]);
    free(m->s);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---------------------------------------------------------------- reading retained segments */

typedef struct {
    int fd;
    uint64_t boff;
    size_t blen;
    uint8_t buf[FM_RBUF];
} rdr_t;

/* Make [off, off + n) (n <= FM_RBUF) readable at *ret. -ENODATA when the file ends first. */
static int rd_at(rdr_t *r, uint64_t off, size_t n, const uint8_t **ret)
{
    if (off >= r->boff && off + n <= r->boff + r->blen) {
        *ret = r->buf + (off - r->boff);
        return 0;
    }
    ssize_t k;
    do
        k = pread(r->fd, r->buf, FM_RBUF, (off_t)off);
    while (k < 0 && errno == EINTR);
    if (k < 0)
        return -errno;
    r->boff = off;
    r->blen = (size_t)k;
    if ((size_t)k < n)
        return -ENODATA;
    *ret = r->buf;
    return 0;
}

typedef struct {
    uint32_t len, klen;
    uint8_t op, flags, fr_op, fr_last;
    uint64_t lsn;
} rec_t;

/* Read and check the record at off (file bytes up to limit are the log): the checks of
 * l3_wal_rec_decode, streamed, so memory stays at the read window. */
static int rec_read(rdr_t *r, uint64_t off, uint64_t limit, uint64_t salt, rec_t *rc, uint8_t *key)
{
    const uint8_t *p;
    if (limit < off + L3_WAL_REC_MIN || rd_at(r, off, L3_WAL_REC_HDR, &p) < 0)
        return L3_ECORRUPT;
    uint32_t len = l3_wal__ld32(p), klen = l3_wal__ld32(p + 12), plen = l3_wal__ld32(p + 16);
    uint32_t want = l3_wal__ld32(p + 4);
    uint8_t op = p[10], flags = p[11];
    if (len < L3_WAL_REC_MIN || (len & 7u) || len > limit - off ||
        (uint16_t)(p[8] | p[9] << 8) != L3_WAL_REC_MAGIC || op == L3_WALOP_NONE || op >= L3_WALOP_MAX ||
        (flags & ~L3_WAL_RF_MASK) != 0 || l3_wal__ld32(p + 20) != 0 || klen == 0 || klen > FM_KEY_MAX ||
        l3_wal_rec_size(klen, plen) != len || (op == L3_WALOP_FRAG && plen < L3_WAL_FRAG_HDR))
        return L3_ECORRUPT;
    rc->len = len;
    rc->klen = klen;
    rc->op = op;
    rc->flags = flags;
    rc->lsn = l3_wal__ld64(p + 24);
    uint32_t crc = 0;
    for (uint64_t o = off + 8, e = off + len; o < e;) {
        size_t n = (size_t)L3_MIN((uint64_t)FM_RBUF, e - o);
        if (rd_at(r, o, n, &p) < 0)
            return L3_ECORRUPT;
        crc = l3_crc32c(crc, p, n);
        o += n;
    }
    if (crc != want || rd_at(r, off + len - 8, 8, &p) < 0 || l3_wal__ld64(p) != salt)
        return L3_ECORRUPT;
    size_t kn = klen + (op == L3_WALOP_FRAG ? L3_WAL_FRAG_HDR : 0u);
    if (rd_at(r, off + L3_WAL_REC_HDR, kn, &p) < 0)
        return L3_ECORRUPT;
    memcpy(key, p, klen);
    rc->fr_op = op == L3_WALOP_FRAG ? p[klen] : op;
    rc->fr_last = op == L3_WALOP_FRAG ? p[klen + 1] : 1;
    return 0;
}

typedef struct {
    const uint8_t *prefix;
    uint32_t plen, max_events, max_bytes;
    int donly;
    uint8_t *body; /* events */
    uint32_t len, count;
    uint64_t ne, np; /* resume here */
    uint64_t scanned;
    /* the transaction group being read (replay's rule W6): its events are kept only once its
     * TXLAST record is read; the answer as it was before its TXFIRST */
    int gopen, full;
    uint32_t g_len, g_count;
    uint64_t g_ne, g_np;
} qs_t;

/* Before a record with flags fl at ring position pos (epoch ep): a group the record
 * interrupts (any record but the group's next one) is dropped, as replay drops it; a
 * TXFIRST opens a group. TX records before any TXFIRST are the rest of a group the cursor
 * is inside (or whose start is no longer retained): they are sent. */
static void group_before(qs_t *q, uint8_t fl, uint64_t ep, uint64_t pos)
{
    if (q->gopen && (!(fl & L3_WAL_RF_TX) || (fl & L3_WAL_RF_TXFIRST))) {
        q->len = q->g_len;
        q->count = q->g_count;
        q->gopen = 0;
    }
    if ((fl & L3_WAL_RF_TX) && (fl & L3_WAL_RF_TXFIRST)) {
        q->gopen = 1;
        q->g_len = q->len;
        q->g_count = q->count;
        q->g_ne = ep;
        q->g_np = pos;
    }
}

/* The end of an answer inside an open group (the log or the answer's room ends before its
 * TXLAST): the answer ends before the group, which the next request reads again - unless
 * the group starts the answer, which it then cannot fit; its events so far are sent. */
static void group_end(qs_t *q, uint64_t start_pos)
{
    if (!q->gopen || (q->full && q->g_count == 0 && q->g_np == start_pos))
        return;
    q->len = q->g_len;
    q->count = q->g_count;
    q->ne = q->g_ne;
    q->np = q->g_np;
    q->gopen = 0;
}

/* append one event; 0, or 1 when it does not fit (the answer is full) */
static int put_event(qs_t *q, uint64_t epoch, uint64_t end, const rec_t *rc, const uint8_t *key)
{
    uint32_t need = FE_HDR + (uint32_t)L3_ALIGN_UP((uint64_t)rc->klen, (uint64_t)8);
    if (q->count >= q->max_events || q->len + need > q->max_bytes)
        return q->full = 1;
    uint8_t *p = q->body + q->len;
    memset(p, 0, need);
    l3_wal__st64(p, epoch);
    l3_wal__st64(p + 8, end);
    l3_wal__st64(p + 16, rc->lsn);
    l3_wal__st32(p + 24, rc->klen);
    p[28] = rc->op == L3_WALOP_FRAG ? rc->fr_op : rc->op;
    p[29] = rc->flags;
    memcpy(p + FE_HDR, key, rc->klen);
    q->len += need;
    q->count++;
    return 0;
}

typedef struct {
    rdr_t *r;
    uint8_t *key;
    uint64_t limit_off, limit_pos; /* file bytes that hold the log; last ring position to report */
} scan_t;

static int seg_check_file(l3_wal_fmap_t *m, const fm_seg_t *s, scan_t *sc, const char *name)
{
    const uint8_t *p;
    l3_wal_seg_hdr_t h;
    struct stat st;
    if (rd_at(sc->r, 0, L3_WAL_SEG_HDR, &p) < 0 || l3_wal_seg_hdr_decode(p, L3_WAL_SEG_HDR, &h) != 0 ||
        h.seq != s->seq || h.salt != s->salt || fstat(sc->r->fd, &st) != 0 ||
        (uint64_t)st.st_size < sc->limit_off || (s->closed && (uint64_t)st.st_size != s->bytes)) {
        fm_log(m, L3_LOG_ERROR, "feed: retained segment %s does not match its position map: not served",
               name);
        return L3_ECORRUPT;
    }
    return 0;
}

/* Report the changes of segment s that start at or after ring position from. 1 when the
 * segment was read to its end, 0 when the answer is full (or a bound was reached), < 0. */
static int scan_records(l3_wal_fmap_t *m, const fm_seg_t *s, qs_t *q, uint64_t from, scan_t *sc,
                        const char *name)
{
    uint32_t lo = 0, hi = s->n; /* the last entry at or before from */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->e[mid].pos <= from)
            lo = mid;
        else
            hi = mid;
    }
    uint64_t off = s->e[lo].off, pos = s->e[lo].pos;
    uint32_t ei = lo;
    while (off < sc->limit_off) {
        if (ei < s->n && s->e[ei].off == off)
            pos = s->e[ei++].pos;
        if (ei < s->n && s->e[ei].off < off)
            return L3_ECORRUPT;
        if (q->scanned >= FM_SCAN_MAX && !q->gopen) /* a group is at most half the ring: read it whole */
            return 0;
        rec_t rc;
        int e = rec_read(sc->r, off, sc->limit_off, s->salt, &rc, sc->key);
        if (e < 0) {
            fm_log(m, L3_LOG_ERROR,
                   "feed: retained segment %s: the record at offset %" PRIu64 " fails its checks", name, off);
            return e;
        }
        uint64_t end = pos + slot_len(rc.len);
        if (end > sc->limit_pos)
            return 0;
        if (pos >= from)
            group_before(q, rc.flags, s->epoch, pos);
        int change = rc.op != L3_WALOP_FRAG ||
                     (rc.fr_last == 1 && rc.fr_op >= L3_WALOP_PUT && rc.fr_op <= L3_WALOP_PATCH);
        if (pos >= from && change && rc.klen >= q->plen && memcmp(sc->key, q->prefix, q->plen) == 0 &&
            put_event(q, s->epoch, end, &rc, sc->key) != 0)
            return 0;
        if (rc.flags & L3_WAL_RF_TXLAST)
            q->gopen = 0; /* the group is whole: its events stay */
        q->scanned += rc.len;
        off += rc.len;
        pos = end;
        if (end > q->np)
            q->np = end;
    }
    return 1;
}

static int scan_seg(l3_wal_fmap_t *m, const fm_seg_t *s, qs_t *q, uint64_t from, scan_t *sc)
{
    if (s->n == 0)
        return 1; /* no record */
    char name[4200];
    if (l3_wal__seg_name(name, sizeof name, m->wal_path, s->seq) < 0)
        return -ENAMETOOLONG;
    sc->r->fd = open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    sc->r->boff = sc->r->blen = 0;
    if (sc->r->fd < 0)
        return errno == ENOENT ? -ESTALE : -errno; /* deleted meanwhile: no longer retained */
    int rc = seg_check_file(m, s, sc, name);
    if (rc == 0)
        rc = scan_records(m, s, q, from, sc, name);
    close(sc->r->fd);
    sc->r->fd = -1;
    return rc;
}

/* a consistent copy of the writer's progress record */
static void read_commit(const l3_wal_ring_t *r, l3_wal_commit_t *c)
{
    for (int i = 0; i < 100; i++) {
        uint32_t a = atomic_load_explicit(&r->sh->rh_commit_idx, memory_order_acquire);
        *c = r->sh->rh_commit[a & 1u];
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&r->sh->rh_commit_idx, memory_order_relaxed) == a)
            return;
    }
}

/* index of the segment holding (epoch, pos), with an unbroken chain of maps from it to the
 * newest segment; -1 when there is none (lock held) */
static long find_seg(const l3_wal_fmap_t *m, uint64_t epoch, uint64_t pos)
{
    long idx = -1;
    for (size_t i = m->n; i-- > 0;)
        if (m->s[i].epoch == epoch && m->s[i].first <= pos) {
            idx = (long)i;
            break;
        }
    if (idx < 0 || (m->s[idx].closed && pos > m->s[idx].end))
        return -1;
    for (size_t i = (size_t)idx; i + 1 < m->n; i++)
        if (m->s[i + 1].seq != m->s[i].seq + 1 || !m->s[i].closed)
            return -1;
    const fm_seg_t *last = &m->s[m->n - 1];
    /* the chain reaches this run: its segments, or (before this run's writer has created its
     * first one) an earlier run's last segment that the next one to be created follows */
    return last->epoch == m->epoch || (last->closed && last->seq + 1 == m->next_seq) ? idx : -1;
}

/* copy segment i with its entries (lock held) */
static int seg_copy(const l3_wal_fmap_t *m, size_t i, fm_seg_t *v)
{
    *v = m->s[i];
    v->e = malloc((size_t)(v->n ? v->n : 1) * sizeof *v->e);
    if (v->e == NULL)
        return -ENOMEM;
    memcpy(v->e, m->s[i].e, (size_t)v->n * sizeof *v->e);
    return 0;
}

static int query_segs(l3_wal_fmap_t *m, uint64_t epoch, uint64_t pos, qs_t *q, scan_t *sc)
{
    q->ne = epoch;
    q->np = pos;
    l3_wal_commit_t c;
    read_commit(m->ring, &c);
    uint64_t durable = atomic_load_explicit(&m->ring->sh->rh_durable, memory_order_acquire);
    pthread_mutex_lock(&m->mu);
    long idx = find_seg(m, epoch, pos);
    for (unsigned step = 0; idx >= 0 && step < FM_MAX_SEGS; step++) {
        fm_seg_t v;
        int rc = seg_copy(m, (size_t)idx, &v);
        pthread_mutex_unlock(&m->mu);
        if (rc < 0)
            return rc;
        int cur = c.rc_seg_seq == v.seq;
        sc->limit_off = v.closed ? v.bytes : cur ? c.rc_seg_off : L3_WAL_SEG_HDR;
        sc->limit_pos = !v.closed && cur ? c.rc_tail : UINT64_MAX;
        if (q->donly && v.epoch == m->epoch)
            sc->limit_pos = L3_MIN(sc->limit_pos, durable);
        rc = scan_seg(m, &v, q, q->np, sc);
        free(v.e);
        if (rc <= 0)
            return rc;
        if (!v.closed) { /* the active segment: the rest is in the ring */
            if (cur && sc->limit_pos != UINT64_MAX && sc->limit_pos > q->np)
                q->np = sc->limit_pos;
            return 0;
        }
        if (v.end > q->np)
            q->np = v.end;
        pthread_mutex_lock(&m->mu);
        idx = -1;
        for (size_t i = 0; i < m->n; i++)
            if (m->s[i].seq == v.seq + 1)
                idx = (long)i;
        if (idx < 0) {
            int ahead = v.epoch != m->epoch && v.seq + 1 == m->next_seq;
            pthread_mutex_unlock(&m->mu);
            if (ahead) { /* the earlier run's log ends here; this run's starts in its ring at 0 */
                q->ne = m->epoch;
                q->np = 0;
                return 0;
            }
            return v.epoch == m->epoch ? 0 : -ESTALE; /* between two segments, or a gap */
        }
        if (m->s[idx].epoch != v.epoch) { /* the next run's log */
            q->ne = m->s[idx].epoch;
            q->np = m->s[idx].first;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return idx < 0 ? -ESTALE : 0;
}

/* The changes after (epoch, pos) into q: 0 (q->ne, q->np resume), -ESTALE, L3_ECORRUPT, -errno. */
static int query(l3_wal_fmap_t *m, uint64_t epoch, uint64_t pos, qs_t *q, scan_t *sc)
{
    int rc = query_segs(m, epoch, pos, q, sc);
    if (rc >= 0)
        group_end(q, pos);
    return rc;
}

/* ---------------------------------------------------------------- the channel: writer side */

static int io_full(int fd, void *buf, size_t n, int out)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t k = out ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, MSG_WAITALL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k == 0 ? -ECONNRESET : -errno;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void set_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = FM_IO_TIMEOUT_MS / 1000, .tv_usec = (FM_IO_TIMEOUT_MS % 1000) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

typedef struct {
    uint8_t *out; /* reply header + body */
    scan_t sc;
    uint8_t prefix[FM_KEY_MAX];
} serve_buf_t;

/* One request on connection fd. 0, or < 0 to close the connection (bad request, I/O). */
static int serve_one(l3_wal_fmap_t *m, int fd, serve_buf_t *sb)
{
    uint8_t h[FQ_HDR];
    if (io_full(fd, h, sizeof h, 0) < 0)
        return -1;
    uint32_t plen = l3_wal__ld32(h + 32), max_bytes = l3_wal__ld32(h + 28);
    if (l3_wal__ld32(h) != FQ_MAGIC || (h[4] | h[5] << 8) != L3_WAL_LOG_VERSION || plen > FM_KEY_MAX ||
        max_bytes > L3_WAL_LOG_BODY_MAX || io_full(fd, sb->prefix, plen, 0) < 0 ||
        l3_crc32c(l3_crc32c(0, h, 36), sb->prefix, plen) != l3_wal__ld32(h + 36))
        return -1;
    qs_t q = {.prefix = sb->prefix,
              .plen = plen,
              .max_events = l3_wal__ld32(h + 24),
              .max_bytes = max_bytes,
              .donly = h[6] & 1,
              .body = sb->out + FR_HDR};
    int st = query(m, l3_wal__ld64(h + 8), l3_wal__ld64(h + 16), &q, &sb->sc);
    if (st < 0)
        q.len = q.count = 0;
    uint8_t *r = sb->out;
    memset(r, 0, FR_HDR);
    l3_wal__st32(r, FR_MAGIC);
    r[4] = (uint8_t)L3_WAL_LOG_VERSION;
    l3_wal__st32(r + 8, (uint32_t)(st < 0 ? st : 0));
    l3_wal__st32(r + 12, q.count);
    l3_wal__st64(r + 16, q.ne);
    l3_wal__st64(r + 24, q.np);
    l3_wal__st32(r + 32, q.len);
    l3_wal__st32(r + 36, l3_crc32c(0, q.body, q.len));
    l3_wal__st32(r + 44, l3_crc32c(0, r, 44));
    return io_full(fd, r, FR_HDR + (size_t)q.len, 1) < 0 ? -1 : 0;
}

static void *serve_main(void *arg)
{
    l3_wal_fmap_t *m = arg;
    serve_buf_t *sb = calloc(1, sizeof *sb);
    rdr_t *r = malloc(sizeof *r);
    uint8_t *key = malloc(FM_KEY_MAX + L3_WAL_FRAG_HDR);
    uint8_t *out = malloc(FR_HDR + L3_WAL_LOG_BODY_MAX);
    struct pollfd pf[2 + FM_MAX_CLIENTS];
    nfds_t nc = 0;
    if (sb == NULL || r == NULL || key == NULL || out == NULL)
        goto out;
    sb->out = out;
    sb->sc.r = r;
    sb->sc.key = key;
    r->fd = -1;
    for (;;) {
        pf[0] = (struct pollfd){.fd = m->lfd, .events = POLLIN};
        pf[1] = (struct pollfd){.fd = m->wake[0], .events = POLLIN};
        int rc = poll(pf, 2 + nc, -1);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0 || pf[1].revents)
            break;
        for (nfds_t i = 0; i < nc; i++) {
            struct pollfd *c = &pf[2 + i];
            if (c->revents && serve_one(m, c->fd, sb) < 0) {
                close(c->fd);
                *c = pf[2 + --nc];
                i--;
            }
        }
        if (pf[0].revents & POLLIN) {
            int c = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0 && nc < FM_MAX_CLIENTS) {
                set_timeouts(c);
                pf[2 + nc++] = (struct pollfd){.fd = c, .events = POLLIN};
            } else if (c >= 0) {
                close(c);
            }
        }
    }
out:
    for (nfds_t i = 0; i < nc; i++)
        close(pf[2 + i].fd);
    free(out);
    free(key);
    free(r);
    free(sb);
    return NULL;
}

int l3_wal__fmap_serve_start(l3_wal_fmap_t *m, l3_wal_ring_t *ring, const char *sock_path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock_path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    snprintf(m->sock, sizeof m->sock, "%s", sock_path);
    m->ring = ring;
    (void)unlink(sock_path); /* left by a writer that did not stop */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(sock_path, 0600) < 0 || listen(fd, 64) < 0 ||
        pipe2(m->wake, O_CLOEXEC) < 0)
        rc = -errno;
    if (rc == 0) {
        m->lfd = fd;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the write loop */
        rc = -pthread_create(&m->th, NULL, serve_main, m);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc == 0) {
            m->running = 1;
            return 0;
        }
    }
    close(fd);
    m->lfd = -1;
    (void)unlink(sock_path);
    return rc;
}

void l3_wal__fmap_serve_stop(l3_wal_fmap_t *m)
{
    if (!m->running)
        return;
    (void)!write(m->wake[1], "x", 1);
    pthread_join(m->th, NULL);
    m->running = 0;
    close(m->lfd);
    close(m->wake[0]);
    close(m->wake[1]);
    m->lfd = m->wake[0] = m->wake[1] = -1;
    (void)unlink(m->sock);
}

/* ---------------------------------------------------------------- the channel: worker side */

int l3_wal_log_connect(const char *sock_path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock_path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int l3_wal_log_encode(const l3_wal_log_req_t *q, uint8_t *out, size_t cap)
{
    if (q->plen > FM_KEY_MAX || q->max_bytes > L3_WAL_LOG_BODY_MAX || cap < FQ_HDR + (size_t)q->plen)
        return -EINVAL;
    memset(out, 0, FQ_HDR);
    l3_wal__st32(out, FQ_MAGIC);
    out[4] = (uint8_t)L3_WAL_LOG_VERSION;
    out[6] = q->durable_only ? 1 : 0;
    l3_wal__st64(out + 8, q->epoch);
    l3_wal__st64(out + 16, q->pos);
    l3_wal__st32(out + 24, q->max_events);
    l3_wal__st32(out + 28, q->max_bytes);
    l3_wal__st32(out + 32, q->plen);
    l3_wal__st32(out + 36, l3_crc32c(l3_crc32c(0, out, 36), q->prefix, q->plen));
    if (q->plen)
        memcpy(out + FQ_HDR, q->prefix, q->plen);
    return (int)(FQ_HDR + q->plen);
}

int l3_wal_log_decode(const uint8_t *buf, size_t len, uint32_t max_bytes, l3_wal_log_reply_t *ret,
                      size_t *ret_used)
{
    if (len < FR_HDR)
        return 1;
    uint32_t blen = l3_wal__ld32(buf + 32);
    if (l3_wal__ld32(buf) != FR_MAGIC || buf[4] != L3_WAL_LOG_VERSION ||
        l3_wal__ld32(buf + 44) != l3_crc32c(0, buf, 44) || blen > max_bytes)
        return -EPROTO;
    if (len - FR_HDR < blen)
        return 1;
    if (l3_wal__ld32(buf + 36) != l3_crc32c(0, buf + FR_HDR, blen))
        return -EPROTO;
    ret->status = (int32_t)l3_wal__ld32(buf + 8);
    ret->count = l3_wal__ld32(buf + 12);
    ret->next_epoch = l3_wal__ld64(buf + 16);
    ret->next_pos = l3_wal__ld64(buf + 24);
    ret->body = buf + FR_HDR;
    ret->body_len = blen;
    *ret_used = FR_HDR + (size_t)blen;
    return 0;
}

int l3_wal_log_next(const l3_wal_log_reply_t *rep, size_t *off, l3_wal_log_ev_t *ev)
{
    if (*off >= rep->body_len)
        return 0;
    const uint8_t *p = rep->body + *off;
    if (rep->body_len - *off < FE_HDR)
        return -EBADMSG;
    uint32_t klen = l3_wal__ld32(p + 24);
    uint64_t need = FE_HDR + L3_ALIGN_UP((uint64_t)klen, (uint64_t)8);
    if (klen == 0 || need > rep->body_len - *off)
        return -EBADMSG;
    ev->epoch = l3_wal__ld64(p);
    ev->end = l3_wal__ld64(p + 8);
    ev->lsn = l3_wal__ld64(p + 16);
    ev->klen = klen;
    ev->op = p[28];
    ev->flags = p[29];
    ev->key = p + FE_HDR;
    *off += (size_t)need;
    return 1;
}
