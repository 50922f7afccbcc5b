/* SPDX-License-Identifier: MIT */
/*
 * wal-int.h - internals shared by the files of src/wal: the ring's shared-memory layout,
 * the syscall shim table and small helpers. Not installed, not used outside src/wal and
 * its tests.
 */
#ifndef L3KV_WAL_INT_H
#define L3KV_WAL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "l3kv/base.h"
#include "l3kv/wal.h"

/*
 * ---------------------------------------------------------------- ring header (shm)
 * The region passed to l3_wal_ring_init: a 4096-byte header, then the data area
 * (rh_data_bytes, a multiple of 64). Field groups sit on their own cache lines.
 * W = who writes, R = how readers read.
 *
 *  off  size field              W / R
 *    0     8 rh_magic           init / attach checks  ("L3WRING1")
 *    8     4 rh_version         init / attach checks  (L3_WAL_RING_VERSION)
 *   12     4 rh_hdr_bytes       init                  (4096)
 *   16     8 rh_data_bytes      init
 *   24     8 rh_max_rec         init: largest slot (7/8 of the data area)
 *   32     8 rh_init_ns         init (diagnostics)
 *   40     8 rh_wal_id          supervisor after init (l3_wal_ring_set_id): l3_wal_path_id of the
 *                               WAL it belongs to, 0 = unknown / salvage of a dead ring checks it
 *   64    40 rh_lock            robust process-shared mutex serialising reservations
 *  104     8 rh_head            producers under rh_lock (atomic store release) / acquire loads
 *  128     8 rh_tail            writer (release) after a batch is in the file / producers acquire
 *  136     4 rh_space_seq       writer bumps + FUTEX_WAKE when space is freed; producers wait on it
 *  140     4 rh_space_waiters   producers inc/dec around a wait; writer reads to skip the wake
 *  144     4 rh_commit_idx      writer: which rh_commit[] copy is current (release) / writer at start
 *  192    64 rh_commit[2]       writer-only progress record {tail, seg_seq, seg_off, salt}; the
 *                               inactive copy is written, then rh_commit_idx flipped, so a
 *                               restarted writer always finds a consistent (tail, file length)
 *  256     4 rh_pub_seq         producers bump + FUTEX_WAKE when the writer sleeps
 *  260     4 rh_writer_sleeping writer sets before sleeping (seq_cst Dekker pair with producers):
 *                               0 awake, 1 idle (every publish wakes it), 2 holding a batch on
 *                               a timer (a publish wakes it only past the wake fill; see
 *                               "Wake-up protocol" in ring.c)
 *  264     4 rh_writer_pid      writer at start / stats
 *  268     4 rh_rotate_req      checkpointer increments / writer compares with rh_rotate_done
 *  272     4 rh_rotate_done     writer (futex word) after the rotation / checkpointer waits
 *  280     8 rh_rotate_seq      writer: segment opened by the last requested rotation
 *  288     8 rh_delete_below    checkpointer (atomic max) / writer deletes older segments
 *  296     8 rh_next_seq        supervisor before fork / writer for its first segment
 *  320     8 rh_durable         writer (release) after fdatasync / waiters acquire
 *  328     4 rh_durable_seq     writer bumps + FUTEX_WAKE / blocking waiters wait on it
 *  332     4 rh_durable_waiters blocking waiters inc/dec / writer reads
 *  336     8 rh_sync_want       waiters atomic max of wanted tickets / writer compares
 *  344     4 rh_error           writer: 0, -ENOSPC, -EIO / producers refuse while non-zero
 *  348     4 rh_failstop        writer: 1 after a failed fdatasync (sticky)
 *  352     4 rh_dl_next         under rh_lock: next rh_dead[] index to fill (mod L3_WAL_DEAD_MAX)
 *  356     4 rh_probe_lossy     under rh_lock (atomic): 1 once a producer went untracked or a
 *                               dead letter was overwritten (the probe answers -ENOENT, not 0,
 *                               for an LSN it cannot find)
 *  384   ... statistics         writer-only relaxed counters / stale-tolerant readers
 *  512  1024 rh_armed[256]      notify slots: workers store 1 (seq_cst) / writer exchanges 0
 * 1536  2304 rh_prod[96]        producer table for the WAL probe (below)
 * 3840   256 rh_dead[16]        dead letters: verdicts of reclaimed producer entries (below)
 * 4096       data area
 *
 * ---------------------------------------------------------------- producer entry (shm, 24 bytes)
 * One per producer process (claimed at its first l3_wal_hook call), so that a repairer can
 * decide after the producer died whether its last record was published (l3_wal_probe).
 *   off size field    W / R
 *     0    4 pe_pid   claimer under rh_lock; 0 = free
 *     4    4 pe_gen   claimer under rh_lock: +1 per claim (low 24 bits go into the slot tag)
 *     8    8 pe_lsn   owner, before reserving: LSN of its latest hook call (release)
 *    16    8 pe_pos   owner: 0 before reserving (stored before pe_lsn); ring position + 1 of
 *                     the slot, stored under rh_lock right after rh_head moved past it.
 *                     writer: when it copies that slot, PUBLISHED, into a batch, it sets bit
 *                     63 (L3_WAL_POS_PUB) by a CAS from exactly pos + 1, before rh_tail
 *                     passes the slot (release)
 * Dead letter (16 bytes): 0 dl_lsn (0 = empty), 8 dl_verdict (0 or 1): the probe's answer for
 * a dead producer's last LSN, computed under rh_lock when its entry was reclaimed.
 *
 * ---------------------------------------------------------------- ring slot (shm)
 *   off size field     meaning
 *     0    4 rs_state  L3_WAL_SLOT_* (atomic; RESERVED -> PUBLISHED | ABORTED; PAD)
 *     4    4 rs_len    slot bytes including this header (multiple of 8)
 *     8    4 rs_pid    the reserving process (liveness check)
 *    12    4 rs_tag    producer entry of an l3_wal_hook slot: (pe_gen & 0xffffff) << 8 |
 *                      (index + 1); 0 for pads and split-API reservations (untracked)
 *    16      record bytes in on-disk form (wr_len = rs_len - 16), salt 0, wr_crc partial
 *
 * Slot state machine (ring reservation):
 *
 *     (head advanced under rh_lock)
 *            |
 *            v                 l3_wal_publish
 *        RESERVED ---------------------------------> PUBLISHED --+
 *            |  l3_wal_abandon, or writer: stuck and           |   writer copies it to
 *            |  owner dead (kill(pid,0) == ESRCH / zombie)      |   a batch; rh_tail passes
 *            +-------------------------------> ABORTED ---------+-> (space reused)
 *        PAD (written under rh_lock, never changes) ------------+
 *
 * A slot's header is written under rh_lock before rh_head moves past it, so every slot in
 * [rh_tail, rh_head) has a valid header; a producer dying inside rh_lock leaves head
 * unchanged (EOWNERDEAD needs no repair beyond pthread_mutex_consistent).
 */

#define L3_WAL_RING_MAGIC 0x31474E4952574C33ull /* "L3WRING1" little-endian */
#define L3_WAL_RING_VERSION 2u                  /* 2: producer table, rs_tag */
#define L3_WAL_RING_HDR 4096u
#define L3_WAL_SLOT_HDR 16u
#define L3_WAL_PROD_MAX 96u /* > L3_SRV_MAX_WORKERS (64): retiring workers overlap new ones */
#define L3_WAL_DEAD_MAX 16u
#define L3_WAL_POS_PUB (1ull << 63)

enum { L3_WAL_SLOT_RESERVED = 1, L3_WAL_SLOT_PUBLISHED = 2, L3_WAL_SLOT_ABORTED = 3, L3_WAL_SLOT_PAD = 4 };

typedef struct {
    _Atomic uint32_t rs_state;
    uint32_t rs_len;
    uint32_t rs_pid;
    uint32_t rs_tag;
} l3_wal_slot_t;

typedef struct {
    _Atomic uint32_t pe_pid;
    _Atomic uint32_t pe_gen;
    _Atomic uint64_t pe_lsn;
    _Atomic uint64_t pe_pos;
} l3_wal_prod_t;

typedef struct {
    _Atomic uint64_t dl_lsn;
    _Atomic uint64_t dl_verdict;
} l3_wal_dead_t;

typedef struct {
    uint64_t rc_tail;
    uint64_t rc_seg_seq; /* 0: no segment yet */
    uint64_t rc_seg_off;
    uint64_t rc_salt;
} l3_wal_commit_t;

typedef struct {
    uint64_t rh_magic;
    uint32_t rh_version;
    uint32_t rh_hdr_bytes;
    uint64_t rh_data_bytes;
    uint64_t rh_max_rec;
    uint64_t rh_init_ns;
    uint64_t rh_wal_id;
    uint8_t rh_pad0[16];

    pthread_mutex_t rh_lock; /* 64 */
    _Atomic uint64_t rh_head;
    uint8_t rh_pad1[128 - 64 - sizeof(pthread_mutex_t) - 8];

    _Atomic uint64_t rh_tail; /* 128 */
    _Atomic uint32_t rh_space_seq;
    _Atomic uint32_t rh_space_waiters;
    _Atomic uint32_t rh_commit_idx;
    uint8_t rh_pad2[44];
    l3_wal_commit_t rh_commit[2]; /* 192 */

    _Atomic uint32_t rh_pub_seq; /* 256 */
    _Atomic uint32_t rh_writer_sleeping;
    _Atomic uint32_t rh_writer_pid;
    _Atomic uint32_t rh_rotate_req;
    _Atomic uint32_t rh_rotate_done;
    uint32_t rh_pad3;
    _Atomic uint64_t rh_rotate_seq;
    _Atomic uint64_t rh_delete_below;
    _Atomic uint64_t rh_next_seq;
    uint8_t rh_pad4[16];

    _Atomic uint64_t rh_durable; /* 320 */
    _Atomic uint32_t rh_durable_seq;
    _Atomic uint32_t rh_durable_waiters;
    _Atomic uint64_t rh_sync_want;
    _Atomic int32_t rh_error;
    _Atomic uint32_t rh_failstop;
    _Atomic uint32_t rh_dl_next;
    _Atomic uint32_t rh_probe_lossy;
    uint8_t rh_pad5[24];

    /* 384: statistics (writer-only, relaxed) */
    _Atomic uint64_t rh_st_records;
    _Atomic uint64_t rh_st_aborted;
    _Atomic uint64_t rh_st_bytes;
    _Atomic uint64_t rh_st_fsyncs;
    _Atomic uint64_t rh_st_batches;
    _Atomic uint64_t rh_st_short;
    _Atomic uint64_t rh_st_errors;
    _Atomic uint64_t rh_st_disk_bytes;
    uint8_t rh_pad6[64];

    _Atomic uint32_t rh_armed[L3_WAL_NOTIFY_MAX]; /* 512 */
    l3_wal_prod_t rh_prod[L3_WAL_PROD_MAX];       /* 1536 */
    l3_wal_dead_t rh_dead[L3_WAL_DEAD_MAX];       /* 3840 */
} l3_wal_shm_t;

_Static_assert(sizeof(pthread_mutex_t) <= 40, "rh_lock must fit its line");
_Static_assert(offsetof(l3_wal_shm_t, rh_lock) == 64, "ring layout");
_Static_assert(offsetof(l3_wal_shm_t, rh_tail) == 128, "ring layout");
_Static_assert(offsetof(l3_wal_shm_t, rh_commit) == 192, "ring layout");
_Static_assert(offsetof(l3_wal_shm_t, rh_pub_seq) == 256, "ring layout");
_Static_assert(offsetof(l3_wal_shm_t, rh_durable) == 320, "ring layout");
_Static_assert(offsetof(l3_wal_shm_t, rh_st_records) == 384, "ring layout");
_Static_assert(offsetof(l3_wal_shm_t, rh_armed) == 512, "ring layout");
_Static_assert(offsetof(l3_wal_shm_t, rh_dl_next) == 352, "ring layout");
_Static_assert(offsetof(l3_wal_shm_t, rh_prod) == 1536, "ring layout");
_Static_assert(offsetof(l3_wal_shm_t, rh_dead) == 3840, "ring layout");
_Static_assert(sizeof(l3_wal_prod_t) == 24 && sizeof(l3_wal_dead_t) == 16, "probe table layout");
_Static_assert(sizeof(l3_wal_shm_t) == L3_WAL_RING_HDR, "ring header size");
_Static_assert(sizeof(l3_wal_slot_t) == L3_WAL_SLOT_HDR, "slot header size");

struct l3_wal_ring {
    l3_wal_shm_t *sh;
    uint8_t *data;
    uint64_t size; /* data bytes */
    int efd[L3_WAL_NOTIFY_MAX];
    unsigned nefd;
    /* producer entry of this process: pid << 32 | (index + 1), index + 1 = 0 when the table
     * was full; a pid other than ours (inherited over fork, or 0) means "not claimed yet" */
    _Atomic uint64_t prod_key;
};

static inline l3_wal_slot_t *l3_wal__slot(const l3_wal_ring_t *r, uint64_t pos)
{
    return (l3_wal_slot_t *)(void *)(r->data + pos % r->size);
}

static inline const l3_wal_commit_t *l3_wal__commit(const l3_wal_ring_t *r)
{
    uint32_t idx = atomic_load_explicit(&r->sh->rh_commit_idx, memory_order_acquire) & 1u;
    return &r->sh->rh_commit[idx];
}

/* 1 if pid no longer runs (ESRCH, or a zombie / dead task in /proc); pid 0 counts as dead */
int l3_wal__pid_dead(uint32_t pid);
/* One event line to log (the writer's opts.log), or to stderr when it is NULL. */
void l3_wal__log(void (*log)(int severity, const char *line), int severity, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Test hooks (NULL in production): called inside l3_wal_hook after the record is filled,
 * just before / just after the PUBLISHED store. Tests fork, set one and _exit inside it. */
extern void (*l3_wal__test_before_publish)(l3_wal_ring_t *r, const l3_wal_rec_t *rec);
extern void (*l3_wal__test_after_publish)(l3_wal_ring_t *r, const l3_wal_rec_t *rec);

/* Slot tag of producer entry idx: see rs_tag. */
static inline uint32_t l3_wal__tag(unsigned idx, uint32_t gen)
{
    return (gen & 0xffffffu) << 8 | (idx + 1u);
}

/* futex helpers on shared (not private) words; timeout_ms < 0 waits forever */
int l3_wal__futex_wait(_Atomic uint32_t *addr, uint32_t val, int timeout_ms);
void l3_wal__futex_wake(_Atomic uint32_t *addr);
/* wake blocking durability waiters and armed eventfd slots */
void l3_wal__notify_durable(l3_wal_ring_t *r);

/* rh_writer_sleeping values (wake-up protocol, ring.c) */
enum { L3_WAL_WS_AWAKE = 0, L3_WAL_WS_IDLE = 1, L3_WAL_WS_HOLD = 2 };

/* Unwritten bytes (rh_head - rh_tail) past which a publish wakes a writer that holds its
 * batch (L3_WAL_WS_HOLD): an eighth of the data area, at most 1 MiB (the default batch). */
static inline uint64_t l3_wal__wake_fill(uint64_t data_bytes)
{
    uint64_t f = data_bytes / 8;
    return f < ((uint64_t)1 << 20) ? f : ((uint64_t)1 << 20);
}

/* little-endian helpers (the build targets little-endian hosts; checked here) */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "formats are little-endian; add byte swaps");
static inline uint32_t l3_wal__ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t l3_wal__ld64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline void l3_wal__st32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static inline void l3_wal__st64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* Fill a record at p (size bytes = l3_wal_rec_size) with salt 0 and return the CRC of
 * bytes [8, size-8) (stored in wr_crc by the caller as the partial checksum). */
uint32_t l3_wal__rec_fill(uint8_t *p, uint32_t size, const l3_wal_rec_t *rec);
/* Finish a record: store the salt, chain the CRC over it. */
static inline void l3_wal__rec_seal(uint8_t *p, uint32_t size, uint64_t salt)
{
    l3_wal__st64(p + size - 8, salt);
    uint32_t crc = l3_wal__ld32(p + 4);
    l3_wal__st32(p + 4, l3_crc32c(crc, p + size - 8, 8));
}

/*
 * ---------------------------------------------------------------- syscall shim
 * Every file operation of the writer, replay and snapshot code goes through this table so
 * tests can inject failures. io_uring requests are built by the writer; their sizes pass
 * through write_len (to force short writes) and their results through io_result (to force
 * ENOSPC/EIO). Production never changes the table.
 */
enum { L3_WAL_IO_WRITE = 1, L3_WAL_IO_FSYNC = 2 };
typedef struct {
    int (*open)(const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    int (*ftruncate)(int fd, off_t len);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
    ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off); /* replay/snapshot only */
    int (*fsync)(int fd);                                              /* replay/snapshot only */
    /* io_uring hooks (writer): may shrink a write, may replace a completion result */
    uint32_t (*write_len)(uint64_t file_off, uint32_t len);
    int (*io_result)(int op, uint64_t file_off, uint32_t len, int res);
} l3_wal_shim_t;

extern l3_wal_shim_t l3_wal_shim;
/* Mode of every file the WAL creates (segments, snapshots, .tmp, set-aside, quarantine):
 * owner only, applied with fchmod so the umask cannot widen or narrow it. */
#define L3_WAL_FILE_MODE 0600
/** Restore the default (real syscalls, identity filters). */
void l3_wal_shim_reset(void);

/* shared by replay/dump: segment name helpers */
int l3_wal__seg_name(char *buf, size_t cap, const char *wal_path, uint64_t seq);
/* list segment seqs of wal_path (sorted ascending); returns count or -errno; *ret freed by caller */
int l3_wal__list_segments(const char *wal_path, uint64_t **ret_seqs);
/* fsync the directory containing path (plain syscall via shim) */
int l3_wal__fsync_dir_of(const char *path);

/* feedlog.c: the writer's position map of its segments and the feed channel */
typedef struct l3_wal_fmap l3_wal_fmap_t;
/* a map for ring epoch `epoch`, with the closed segments of "<wal_path>.feedmap" that still
 * match their files; NULL on ENOMEM */
l3_wal_fmap_t *l3_wal__fmap_new(const char *wal_path, uint64_t epoch, l3_wal_retain_info_t *info,
                                void (*log)(int severity, const char *line));
void l3_wal__fmap_free(l3_wal_fmap_t *m); /* stops the channel first; NULL allowed */
/* writer: segment seq (salt) created at ring position first / a record of rlen bytes at
 * file offset off, ring position pos / the active segment closed at bytes, ring end */
void l3_wal__fmap_expect(l3_wal_fmap_t *m, uint64_t seq); /* the next segment's seq (run start) */
void l3_wal__fmap_open(l3_wal_fmap_t *m, uint64_t seq, uint64_t salt, uint64_t first);
void l3_wal__fmap_note(l3_wal_fmap_t *m, uint64_t off, uint64_t pos, uint32_t rlen);
void l3_wal__fmap_close(l3_wal_fmap_t *m, uint64_t bytes, uint64_t end);
/* after deletions: keep the maps of seqs[k] with !gone[k] only; retained = kept covered bytes */
void l3_wal__fmap_prune(l3_wal_fmap_t *m, const uint64_t *seqs, const uint8_t *gone, int n,
                        uint64_t retained);
/* the map file's bytes (closed segments) in a malloc'd *ret_buf: length or -ENOMEM */
int64_t l3_wal__fmap_encode(l3_wal_fmap_t *m, uint8_t **ret_buf);
int l3_wal__fmap_serve_start(l3_wal_fmap_t *m, l3_wal_ring_t *ring, const char *sock_path);
void l3_wal__fmap_serve_stop(l3_wal_fmap_t *m);

/* Verify a mapped quarantine file (quarantine.c): 0 with *ret_rec pointing into p. */
int l3_wal__quar_verify(const uint8_t *p, uint64_t size, l3_wal_rec_t *ret_rec);

/* Verify a mapped snapshot (snapshot.c); fills info and the salt, or the first bad offset. */
int l3_wal__snap_verify(const uint8_t *p, uint64_t size, l3_wal_snap_info_t *info, uint64_t *ret_salt,
                        uint64_t *ret_bad_off);

#endif
