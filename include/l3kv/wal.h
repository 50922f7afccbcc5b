/* SPDX-License-Identifier: MIT */
/*
 * l3kv/wal.h - the write-ahead log: record and file formats, the multi-producer ring in
 * shared memory, the writer process, recovery (replay), snapshots (checkpoints) and the
 * offline dump. docs/wal.md has the design, the state machines and the proofs of the
 * ordering rules; this header is the reference for every on-disk and shared-memory byte.
 *
 * All integers are little-endian. All lengths are in bytes.
 *
 * ---------------------------------------------------------------- WAL record (on disk)
 * A record is 8-byte aligned and self-describing:
 *
 *   off  size  field     meaning
 *     0     4  wr_len    total record length: header + key + payload + padding + salt;
 *                        a multiple of 8, 40 <= wr_len <= L3_WAL_REC_MAX
 *     4     4  wr_crc    CRC32C (l3_crc32c, seed 0) of bytes [8, wr_len) - everything after
 *                        this field, the salt trailer included, in file order
 *     8     2  wr_magic  0x574C ("LW" read as bytes 4C 57)
 *    10     1  wr_op     l3_walop_t (1..L3_WALOP_MAX-1)
 *    11     1  wr_flags  L3_WAL_RF_* (walhook.h): bit 0 INCR marks a SET record written by
 *                        incr, for the change feed; bit 1 TX: the record belongs to a
 *                        transaction group, bit 2 TXFIRST its first record, bit 3 TXLAST its
 *                        last (docs/wal.md 1.2; replay applies a group whole or not at all);
 *                        other bits 0 (checked). Segments of version 1 have 0 here, version
 *                        2 only INCR
 *    12     4  wr_klen   key length
 *    16     4  wr_plen   payload length (opaque bytes from the store)
 *    20     4  wr_resv   0 (reserved, checked)
 *    24     8  wr_lsn    the document's new LSN
 *    32  klen  key
 *     .  plen  payload
 *     .     p  zero padding, 0 <= p < 8, so that the salt trailer is 8-aligned
 * len-8     8  wr_salt   the 64-bit random salt of the segment the record lives in
 *
 * The salt is the last field so the checksum can be finished cheaply: a producer stores
 * the CRC of bytes [8, len-8) in wr_crc; the writer, which alone knows the segment, stores
 * the salt and continues the CRC over those 8 bytes (l3_crc32c chains). A well-formed
 * record from another segment (stale bytes of an older file) fails the salt comparison.
 *
 * ---------------------------------------------------------------- segment header (on disk)
 * The WAL is a sequence of segment files "<wal_path>.<seq>" (seq: 8+ decimal digits,
 * zero padded, strictly increasing). Each starts with a 64-byte header:
 *
 *   off  size  field         meaning
 *     0     8  sh_magic      "L3KVWAL1"
 *     8     4  sh_version    3 (1 and 2 are read too: the same layout, wr_flags 0 in 1, at
 *                            most INCR in 2)
 *    12     4  sh_hdr_len    64
 *    16     8  sh_salt       random (getrandom); every record in the file carries it
 *    24     8  sh_seq        the segment's sequence number (equals the file name's)
 *    32     8  sh_ctime_ns   creation wall-clock time, ns since the epoch
 *    40     8  sh_ring_pos   ring position of the first record (diagnostics)
 *    48    12  sh_resv       0
 *    60     4  sh_crc        CRC32C of bytes [0, 60)
 *
 * Records follow back to back from offset 64. The file ends at the last complete record;
 * anything after the first record that fails a check is a torn or corrupt tail.
 *
 * ---------------------------------------------------------------- snapshot file (on disk)
 * A snapshot is written to "<path>.tmp", fdatasync'd, renamed to <path> and the directory
 * fsync'd. Layout: 64-byte header, entries, 32-byte trailer.
 *
 *   header
 *     0     8  sn_magic      "L3KVSNP1"
 *     8     4  sn_version    2 (1 is read too: no entry carries a deadline)
 *    12     4  sn_hdr_len    64
 *    16     8  sn_salt       random; every entry carries it as its wr_salt
 *    24     8  sn_wal_seq    first WAL segment that must be replayed on top of it
 *    32     8  sn_lsn        the store's last LSN when the snapshot started
 *    40     8  sn_ctime_ns   creation wall-clock time
 *    48    12  sn_resv       0
 *    60     4  sn_crc        CRC32C of bytes [0, 60)
 *   entries: WAL records (format above) with wr_op = L3_WALOP_PUT, wr_lsn = the document's
 *     LSN, key, payload = the binary document, wr_salt = sn_salt; a key with a deadline has
 *     wr_flags = L3_WAL_RF_EXPIRY and the deadline after the document (walhook.h)
 *   trailer
 *     0     8  st_magic      "L3KVSNPE"
 *     8     8  st_count      number of entries
 *    16     8  st_bytes      total bytes of the entries
 *    24     4  st_crc_all    CRC32C of all entry bytes in order
 *    28     4  st_crc        CRC32C of bytes [0, 28) of the trailer
 *
 * ---------------------------------------------------------------- quarantine file (on disk)
 * One record that recovery read intact but could not apply (l3_wal_quarantine_put), in
 * "<data_dir>/quarantine/<unix-secs>-lsn<lsn>-<n>.l3q", written once (O_EXCL, 0600),
 * fsync'd with its directory. Layout: 64-byte header, then the record.
 *
 *     0     8  qh_magic      "L3KVQRN1"
 *     8     4  qh_version    1
 *    12     4  qh_hdr_len    64
 *    16     4  qh_source     1 WAL segment, 2 snapshot entry
 *    20     4  qh_error      the (negative) code applying it returned
 *    24     8  qh_lsn        the record's LSN
 *    32     8  qh_time_ns    when it was set aside (wall clock)
 *    40     4  qh_rec_len    bytes of the record that follows
 *    44     4  qh_rec_crc    CRC32C of those bytes
 *    48    12  qh_resv       0
 *    60     4  qh_crc        CRC32C of bytes [0, 60)
 *    64        the record in the WAL record format with salt 0 (a FRAG-split record is
 *              stored whole, as it was joined): key and payload bytes exactly as logged
 *
 * ---------------------------------------------------------------- ring (shared memory)
 * The ring lives in a caller-provided region (the store arena's WAL region). Its 4096-byte
 * header and slot format are drawn in src/wal/wal-int.h. Each ring slot is a 16-byte slot
 * header followed by one WAL record in its final on-disk form (salt/CRC finished by the
 * writer). Positions are 64-bit byte counters that never wrap; a record never straddles the
 * end of the data area (a pad slot fills the remainder).
 *
 * Ordering: the ring is consumed strictly in reservation order. Producers reserve while they
 * hold the document lock, so the records of one key are in ring order = LSN order = apply
 * order (S3 in docs/invariants.md). Across keys ring order may differ from LSN order (the
 * store assigns the LSN before the hook reserves); replay is per-key ordered and skips
 * records at or below the document's LSN, so the cross-key order never matters. For the
 * same reason durability is tracked by ring position ("ticket"), not by LSN: a durable
 * LSN L would not imply that a smaller LSN, reserved later, is durable.
 */
#ifndef L3KV_WAL_H
#define L3KV_WAL_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "l3kv/base.h"
#include "l3kv/walhook.h"

/* ---------------------------------------------------------------- formats */

#define L3_WAL_REC_MAGIC 0x574Cu
#define L3_WAL_REC_HDR 32u        /* bytes before the key */
#define L3_WAL_REC_MIN 40u        /* header + salt trailer */
#define L3_WAL_REC_MAX (1u << 30) /* sanity bound for untrusted lengths */
#define L3_WAL_SEG_MAGIC "L3KVWAL1"
/* 2: wr_flags may carry L3_WAL_RF_INCR; 3: also the transaction group flags (RF_TX, TXFIRST,
 * TXLAST); 4: expiry (op EXPIRE, flags RF_EXPIRY and RF_EXPIRED). Versions 1 to 3 are read
 * too: the same layout with fewer ops and flags in use. */
#define L3_WAL_SEG_VERSION 4u
#define L3_WAL_SEG_VERSION_MIN 1u
#define L3_WAL_SEG_HDR 64u
#define L3_WAL_SNAP_MAGIC "L3KVSNP1"
#define L3_WAL_SNAP_END_MAGIC "L3KVSNPE"
#define L3_WAL_SNAP_VERSION 2u
#define L3_WAL_SNAP_VERSION_MIN 1u
#define L3_WAL_SNAP_HDR 64u
#define L3_WAL_SNAP_TRAILER 32u
#define L3_WAL_QUAR_MAGIC "L3KVQRN1"
#define L3_WAL_QUAR_VERSION 1u
#define L3_WAL_QUAR_HDR 64u
enum { L3_WAL_QUAR_WAL = 1, L3_WAL_QUAR_SNAPSHOT = 2 };

/* A record larger than one ring slot is logged as L3_WALOP_FRAG records with the same key
 * and LSN, in order; each payload starts with this 16-byte header, then the piece:
 *   0  1 fr_op     the original op
 *   1  1 fr_last   1 on the final piece
 *   2  2 fr_zero   0
 *   4  4 fr_index  0, 1, 2, ...
 *   8  4 fr_total  payload length of the whole record
 *  12  4 fr_off    offset of this piece in it
 * Replay delivers the whole record when its final piece is read; pieces without a final
 * one (a producer died, or the log ended) are dropped. */
#define L3_WAL_FRAG_HDR 16u

/** Size of the encoded record for a key and payload (multiple of 8). */
static inline uint64_t l3_wal_rec_size(uint32_t klen, uint32_t plen)
{
    return (((uint64_t)L3_WAL_REC_HDR + klen + plen + 7u) & ~(uint64_t)7u) + 8u;
}

/**
 * Encode rec into buf (capacity cap) with the given salt and a finished CRC.
 * Returns the encoded size, -EMSGSIZE if it does not fit or exceeds L3_WAL_REC_MAX,
 * -EINVAL for a bad op. Never blocks.
 */
int64_t l3_wal_rec_encode(void *buf, size_t cap, const l3_wal_rec_t *rec, uint64_t salt);

/**
 * Decode and verify one untrusted record at buf (avail bytes available). On success fills
 * *ret_rec (key/payload point into buf) and returns the record length. Errors:
 * -ENODATA (avail < 8 or wr_len == 0: end of data), -EBADMSG (bad length, magic, op,
 * reserved fields or truncated), L3_ECORRUPT (CRC mismatch), -ESTALE (valid record whose
 * salt differs from `salt`).
 */
int64_t l3_wal_rec_decode(const void *buf, size_t avail, uint64_t salt, l3_wal_rec_t *ret_rec);

typedef struct {
    uint64_t salt;
    uint64_t seq;
    uint64_t ctime_ns;
    uint64_t ring_pos;
} l3_wal_seg_hdr_t;

/** Encode a 64-byte segment header. */
void l3_wal_seg_hdr_encode(void *buf64, const l3_wal_seg_hdr_t *h);
/** Verify a segment header; 0, -EBADMSG (magic/version/length), L3_ECORRUPT (CRC). */
int l3_wal_seg_hdr_decode(const void *buf, size_t avail, l3_wal_seg_hdr_t *ret_h);

/* ---------------------------------------------------------------- ring */

typedef struct l3_wal_ring l3_wal_ring_t;

/** Smallest region l3_wal_ring_init accepts (header + 64 KiB of data). */
#define L3_WAL_RING_MIN_BYTES (4096u + 65536u)
/** Bounded wait of a producer when the ring is full, before -EAGAIN. */
#define L3_WAL_FULL_WAIT_MS 100u
/** Number of eventfd notification slots a ring can carry (one per worker). */
#define L3_WAL_NOTIFY_MAX 256u

/**
 * Format a fresh ring in region (len bytes, 64-byte aligned, at least L3_WAL_RING_MIN_BYTES,
 * MAP_SHARED so that forked children see it) and return a process-local handle.
 * Called once by the supervisor before any producer or writer exists. 0, -EINVAL, -ENOMEM.
 */
int l3_wal_ring_init(void *region, size_t len, l3_wal_ring_t **ret_ring);
/** Attach a handle to an already formatted ring (checks magic, version, header and data sizes;
 *  read-only users such as the inspector may attach too). 0, -EINVAL (bad region), -EPROTO
 *  (not a ring of this layout version: the caller logs both versions), -ENOMEM. */
int l3_wal_ring_attach(void *region, size_t len, l3_wal_ring_t **ret_ring);
/** Free the handle (not the region; closes nothing). NULL allowed. */
void l3_wal_ring_detach(l3_wal_ring_t *r);

/** Record which WAL the ring belongs to (l3_wal_path_id of its wal_path), so that the next
 *  start can tell this ring's records from another instance's (l3_wal_salvage). */
void l3_wal_ring_set_id(l3_wal_ring_t *r, uint64_t id);
/** Set the sequence number the writer gives to the next segment it creates (after recovery:
 *  l3_wal_replay_report_t.next_seq). Call before forking the writer. */
void l3_wal_ring_set_next_seq(l3_wal_ring_t *r, uint64_t seq);

/** Largest key + payload a record may carry in this ring (about half the data area). */
uint64_t l3_wal_ring_max_payload(const l3_wal_ring_t *r);

/**
 * The store's WAL hook (matches l3_wal_hook_fn; ctx is the l3_wal_ring_t *). Reserves,
 * encodes and publishes the record. Waits at most L3_WAL_FULL_WAIT_MS for space (futex, no
 * sleeps). Returns 0, -EAGAIN (still full), -ENOSPC / -EIO (the writer cannot keep writes:
 * refuse), -EMSGSIZE (record larger than l3_wal_ring_max_payload), -EINVAL (bad op), -EIO
 * also when the writer judged this process dead (pid reuse) and aborted the slot. On success the calling
 * thread's l3_wal_last_ticket() is the record's durability ticket.
 */
int l3_wal_hook(void *ring_ctx, const l3_wal_rec_t *rec);

/**
 * The store's WAL probe (matches l3_wal_probe_fn; ctx is the l3_wal_ring_t *): did the
 * l3_wal_hook call for `lsn`, made by a process that has since died, publish its record?
 * 1: published (still in the ring, or consumed by the writer), 0: not (died before reserving,
 * or its reservation stayed RESERVED / became ABORTED), -ENOENT: not found while tracking was
 * incomplete (a producer table overflow), other < 0: the ring lock failed. Only meaningful
 * for the latest hook call of a dead process (exactly what the store's repair asks), and only
 * for records appended with l3_wal_hook (the split form below is not tracked). Takes the
 * reservation lock briefly; no syscall. The argument and the races: src/wal/ring.c, "WAL probe".
 */
int l3_wal_probe(void *ring_ctx, uint64_t lsn);

/** Most records in one transaction group (l3_wal_hook_group). */
#define L3_WAL_GROUP_MAX 4096u

/** Largest transaction group (slot bytes of all its records) the ring takes: half its data area. */
uint64_t l3_wal_ring_max_group(const l3_wal_ring_t *r);

/**
 * The store's group hook (matches l3_wal_group_hook_fn, walhook.h; ctx is the ring): the
 * records of one transaction, contiguous in the ring, each marked L3_WAL_RF_TX (the first
 * TXFIRST, the last TXLAST), published in order; the last one is tracked for the probe
 * (l3_wal_probe with recs[n-1].lsn). Waits at most L3_WAL_FULL_WAIT_MS for space. Returns
 * 0, -EMSGSIZE (more than L3_WAL_GROUP_MAX records or l3_wal_ring_max_group bytes), -EINVAL,
 * -EAGAIN, -ENOSPC / -EIO like l3_wal_hook, -ENOMEM. On success l3_wal_last_ticket() is the
 * end of the last record.
 */
int l3_wal_hook_group(void *ring_ctx, const l3_wal_rec_t *recs, size_t n);

/** Ticket (ring end position) of the last record the calling thread appended; 0 if none. */
uint64_t l3_wal_last_ticket(void);

/* Split form of the hook, for tests and for callers that build the payload in place. */
typedef struct {
    uint64_t pos; /* ring position of the slot header */
    uint64_t end; /* ticket: position after the slot */
    uint8_t *rec; /* the record bytes (wr_len = size) inside the ring */
    uint32_t size;
} l3_wal_resv_t;

/** Reserve a slot for a record with klen/plen bytes; fills *ret. Same errors as l3_wal_hook.
 *  timeout_ms bounds the wait for space. */
int l3_wal_reserve(l3_wal_ring_t *r, uint32_t klen, uint32_t plen, unsigned timeout_ms, l3_wal_resv_t *ret);
/** Encode rec into the reservation (sizes must match) and publish it. Never blocks. */
void l3_wal_publish(l3_wal_ring_t *r, l3_wal_resv_t *res, const l3_wal_rec_t *rec);
/** Give a reservation up (written as aborted; the writer skips it). Never blocks. */
void l3_wal_abandon(l3_wal_ring_t *r, l3_wal_resv_t *res);

/* ---------------------------------------------------------------- durability */

/** The ring's current error: 0, -ENOSPC, -EIO (sticky after a failed fdatasync). */
int l3_wal_ring_error(const l3_wal_ring_t *r);
/** Ring position up to which every record is durable (fdatasync'd) or was aborted. */
uint64_t l3_wal_durable_ticket(const l3_wal_ring_t *r);

/**
 * Block until the record with this ticket is durable. Works in both durability modes (in
 * buffered mode it asks the writer for an fdatasync). futex on the durable word, no polling.
 * Returns 0, -ETIMEDOUT, -EIO (fdatasync failed: the record will never be acknowledged).
 * timeout_ms < 0 waits forever.
 */
int l3_wal_wait_durable(l3_wal_ring_t *r, uint64_t ticket, int timeout_ms);

/**
 * Non-blocking durability for event loops. l3_wal_notify_create() makes nslots eventfds
 * (in the supervisor, before forking the writer and the workers, so that every process
 * inherits them). A worker owning slot i adds l3_wal_notify_fd(r, i) to its loop, calls
 * l3_wal_notify_arm(r, i, ticket) for the highest ticket it waits for, and on readability
 * calls l3_wal_notify_ack(r, i) then compares l3_wal_durable_ticket(). The writer writes to
 * an armed slot's eventfd after each durable advance (and on errors).
 */
int l3_wal_notify_create(l3_wal_ring_t *r, unsigned nslots);
int l3_wal_notify_fd(const l3_wal_ring_t *r, unsigned slot);
/** Returns 1 if the ticket is already durable (nothing armed), 0 when armed, -EIO/-ENOSPC
 *  when the ring is in an error state, -EINVAL for a bad slot. */
int l3_wal_notify_arm(l3_wal_ring_t *r, unsigned slot, uint64_t ticket);
/** Drain the eventfd of a slot. */
void l3_wal_notify_ack(l3_wal_ring_t *r, unsigned slot);

/* ---------------------------------------------------------------- statistics */

typedef struct {
    uint64_t head, tail, durable;     /* ring positions */
    uint64_t records, aborted, bytes; /* written by the writer */
    uint64_t fsyncs, batches, short_writes, write_errors;
    uint64_t seg_seq, seg_off; /* current segment and its committed length */
    uint64_t disk_bytes;       /* bytes in live segments (checkpoint trigger) */
    int error;
    int failstop;
    pid_t writer_pid;
} l3_wal_stats_t;
void l3_wal_ring_stats(const l3_wal_ring_t *r, l3_wal_stats_t *ret);

/* ---------------------------------------------------------------- writer process */

typedef enum { L3_WAL_BUFFERED = 0, L3_WAL_FSYNC = 1 } l3_wal_durability_t;

typedef struct {
    l3_wal_ring_t *ring;
    const char *wal_path; /* segment prefix: files are "<wal_path>.<seq>" */
    l3_wal_durability_t durability;
    unsigned flush_interval_ms; /* buffered mode: periodic fdatasync; 0 = only on demand */
    uint64_t segment_bytes;     /* rotate after this many bytes; 0 = 64 MiB */
    /* closed segments a checkpoint covers are kept, newest first, while their sizes sum to at
     * most this many bytes (older log for readers; recovery still starts at the snapshot's
     * segment); 0 = delete every covered segment */
    uint64_t retain_bytes;
    /* with retain_bytes > 0: the unix socket over which the writer serves retained segments
     * to the change feed (l3kv/walfeed.h; created 0600, removed at the stop); NULL = none */
    const char *feed_sock;
    /* optional: where the writer publishes what it retains (shared memory for /metrics) */
    struct l3_wal_retain_info *retain_info;
    uint32_t batch_bytes;    /* largest single write; 0 = 1 MiB */
    unsigned abort_check_ms; /* a reservation stuck this long gets a liveness check; 0 = 50 */
    unsigned queue_depth;    /* io_uring entries; 0 = 8 */
    volatile int *stop;      /* optional: non-zero requests drain-and-exit */
    int install_signals;     /* non-zero: SIGTERM/SIGINT request drain-and-exit */
    /* optional: receives each event line (no newline); severity L3_WAL_LOG_*. NULL =
     * "l3kv-wal-writer: <line>" on stderr */
    void (*log)(int severity, const char *line);
} l3_wal_writer_opts_t;

/** What the writer retains for the change feed, published for readers (relaxed atomics). */
typedef struct l3_wal_retain_info {
    uint64_t oldest_epoch, oldest_pos; /* the oldest cursor it serves; epoch 0 = none */
    uint64_t retained_bytes;           /* covered segments kept past the last checkpoint */
} l3_wal_retain_info_t;

/* the writer's log severities are the l3_log_level_t values (l3kv/base.h) */
#define L3_WAL_LOG_INFO L3_LOG_INFO
#define L3_WAL_LOG_WARN L3_LOG_WARN
#define L3_WAL_LOG_ERROR L3_LOG_ERROR

/**
 * The writer process main loop. Drains the ring in order, writes with io_uring only,
 * fdatasyncs per the durability mode, rotates and deletes segments for checkpoints. On a
 * stop request: drains the whole ring (aborting reservations of dead producers), fdatasyncs
 * the file and the directory, returns 0. Returns -ENOSYS / -EPERM when io_uring is not
 * available, -EIO when it stopped after a failed fdatasync (fail-stop: it idles until the
 * stop request, a restarted writer too), the write error (-ENOSPC, -EIO) when a stop request
 * found the disk failing for more than L3_WAL_STOP_RETRY_MS (the segment is truncated to what
 * was committed; the rest of the ring is reported as lost on stderr), other -errno on setup
 * failure.
 * Fork it with SIGTERM and SIGINT blocked when install_signals is set: it unblocks them once
 * its handlers are in place, so an early stop request is not lost. Blocks.
 */
int l3_wal_writer_run(const l3_wal_writer_opts_t *opts);

/** On a stop request, how long a failing disk is retried (and a live but silent producer
 *  waited for) before the writer gives up: whoever waits for the writer to exit waits longer. */
#define L3_WAL_STOP_RETRY_MS 5000u

/* ---------------------------------------------------------------- checkpoints */

/**
 * Start a checkpoint: ask the writer to close the current segment and open a new one;
 * returns its sequence number in *ret_seq once the writer confirms. Every record in older
 * segments was applied in memory before this returns, so a snapshot whose scan starts
 * afterwards reflects them. 0, -ETIMEDOUT (writer not running), -EIO.
 */
int l3_wal_checkpoint_begin(l3_wal_ring_t *r, int timeout_ms, uint64_t *ret_seq);
/** After the snapshot (with sn_wal_seq = seq) is durable: the writer deletes segments < seq. */
void l3_wal_checkpoint_commit(l3_wal_ring_t *r, uint64_t seq);

/* ---------------------------------------------------------------- recovery */

typedef int (*l3_wal_replay_fn)(void *ctx, const l3_wal_rec_t *rec);

typedef struct {
    uint64_t segments;        /* segments read */
    uint64_t records;         /* valid records delivered */
    uint64_t skipped;         /* records for which the callback returned > 0 */
    uint64_t incomplete;      /* records split in FRAG pieces whose final piece is missing */
    uint64_t tx_groups;       /* transaction groups delivered whole */
    uint64_t tx_dropped;      /* records of transaction groups that never completed (not delivered) */
    uint64_t bytes;           /* valid bytes read (headers included) */
    uint64_t discarded_bytes; /* bytes set aside (bad tail and later segments) */
    uint64_t discarded_files; /* files renamed aside */
    uint64_t max_lsn;         /* highest LSN seen */
    uint64_t next_seq;        /* sequence number for the next segment to create */
    int stop_reason;          /* 0 clean end, else the decode error that ended the log */
    char stop_file[512];      /* file where the log ended early ("" if clean) */
    uint64_t stop_offset;     /* offset of the first bad byte in stop_file */
    char aside[512];          /* name the first bad tail was renamed to */
    uint64_t in_place_bytes;  /* bad tail bytes kept in their segment: no space to copy them */
    char in_place[512];       /* the first marker "<segment>.end-<offset>" created for them */
} l3_wal_replay_report_t;

/**
 * Replay every segment "<wal_path>.<seq>" with seq >= min_seq, in order, calling fn for each
 * valid record (a negative return aborts the replay with that code; > 0 counts as skipped).
 * The first record that fails its length, CRC or salt check ends the log: the rest of that
 * file is copied to "<segment>.corrupt-<unix-seconds>" and the live file truncated to its
 * valid prefix (both fsync'd), and later segments are renamed aside the same way. Segments
 * below min_seq (covered by a snapshot) are ignored. Returns 0 (see the report), or -errno.
 * Runs in the supervisor before the writer exists; plain syscalls through the shim.
 */
int l3_wal_replay_from(const char *wal_path, uint64_t min_seq, l3_wal_replay_fn fn, void *ctx,
                       l3_wal_replay_report_t *ret_report);
/** l3_wal_replay_from(wal_path, 0, ...). */
int l3_wal_replay(const char *wal_path, l3_wal_replay_fn fn, void *ctx, l3_wal_replay_report_t *ret_report);

/* ---------------------------------------------------------------- snapshots */

typedef struct l3_wal_snap_writer l3_wal_snap_writer_t;

/** Begin a snapshot at path (writes path.tmp). wal_seq from l3_wal_checkpoint_begin, lsn the
 *  store's last LSN at the start. 0, -errno. */
int l3_wal_snapshot_begin(const char *path, uint64_t wal_seq, uint64_t lsn, l3_wal_snap_writer_t **ret_w);
/** Append one document (key, binary document, its LSN). Buffered; may block on disk. */
int l3_wal_snapshot_add(l3_wal_snap_writer_t *w, const void *key, uint32_t klen, const void *doc,
                        uint32_t len, uint64_t lsn);
/** l3_wal_snapshot_add for a key with a deadline (expire_ms, 0: none). */
int l3_wal_snapshot_add_exp(l3_wal_snap_writer_t *w, const void *key, uint32_t klen, const void *doc,
                            uint32_t len, uint64_t lsn, uint64_t expire_ms);
/** Write the trailer, fdatasync, rename over path, fsync the directory, free w. 0, -errno
 *  (on failure the temp file is removed and path is untouched). */
int l3_wal_snapshot_commit(l3_wal_snap_writer_t *w);
/** Drop an unfinished snapshot (removes the temp file). NULL allowed. */
void l3_wal_snapshot_abort(l3_wal_snap_writer_t *w);

/** Iterator for l3_wal_snapshot_write: fill *ret_rec, return 1; 0 at the end; < 0 error. */
typedef int (*l3_wal_snap_iter_fn)(void *ctx, l3_wal_rec_t *ret_rec);
/** One-call form: begin, add everything the iterator yields, commit. */
int l3_wal_snapshot_write(const char *path, uint64_t wal_seq, uint64_t lsn, l3_wal_snap_iter_fn it,
                          void *ctx);

typedef struct {
    uint64_t wal_seq;
    uint64_t lsn;
    uint64_t ctime_ns;
    uint64_t count;
    uint64_t bytes;
} l3_wal_snap_info_t;

/**
 * Verify the whole snapshot first (header, every entry's CRC and salt, trailer), then call
 * fn for each entry (op PUT, key, payload = document, lsn). Nothing is delivered from an
 * invalid file. 0, -ENOENT, -EBADMSG / L3_ECORRUPT (invalid), or the callback's negative code.
 */
int l3_wal_snapshot_load(const char *path, l3_wal_replay_fn fn, void *ctx, l3_wal_snap_info_t *ret_info);

/** Verify a snapshot file completely without delivering anything (l3kv --restore): 0,
 *  -EBADMSG (not a snapshot: magic, version, header length, or an entry that is not a PUT),
 *  L3_ECORRUPT (a checksum or the trailer's counts), -errno. *ret_bad_off: where it failed. */
int l3_wal_snapshot_verify_file(const char *path, l3_wal_snap_info_t *ret_info, uint64_t *ret_bad_off);

/*
 * In-memory encoder of the snapshot format, in pieces (the online backup stream): the
 * header (L3_WAL_SNAP_HDR bytes, a fresh salt), entries one by one, the trailer
 * (L3_WAL_SNAP_TRAILER bytes). The concatenation is a file l3_wal_snapshot_load accepts.
 */
typedef struct {
    uint64_t salt, count, bytes;
    uint32_t crc_all;
} l3_wal_snap_enc_t;
void l3_wal_snap_enc_header(l3_wal_snap_enc_t *e, uint64_t wal_seq, uint64_t lsn, uint8_t *out);
/** Encode one entry into out: its size, -ENOSPC (cap below l3_wal_rec_size), -EMSGSIZE,
 *  -EINVAL. flags: 0, or L3_WAL_RF_EXPIRY when the last 8 of the len bytes are a deadline. */
int64_t l3_wal_snap_enc_add(l3_wal_snap_enc_t *e, uint8_t *out, size_t cap, const void *key, uint32_t klen,
                            const void *doc, uint32_t len, uint64_t lsn, unsigned flags);
void l3_wal_snap_enc_trailer(const l3_wal_snap_enc_t *e, uint8_t *out);

/* ---------------------------------------------------------------- start-up and checkpoint helpers */

typedef struct {
    int have_snapshot;          /* a valid snapshot was loaded */
    l3_wal_snap_info_t snap;    /* its header and counts */
    l3_wal_replay_report_t wal; /* the replay after it */
    uint64_t max_lsn;           /* max(snapshot LSN, every LSN delivered): the LSN floor */
    char snap_aside[512];       /* an invalid snapshot set aside (only when nothing was lost) */
    /* segments the data needs but that are gone: [missing_from, missing_to), 0 = none. A
     * checkpoint deleted them after writing a snapshot that is now missing, invalid or
     * older (missing_snapshot says which); with accept_data_loss recovery went on. */
    uint64_t missing_from, missing_to;
    int missing_snapshot;       /* 1 absent, 2 invalid, 3 older than the segments */
    uint64_t quarantined;       /* records set aside in quarantine_dir */
    char quarantine_first[512]; /* the first quarantine file written */
    /* the first record that could not be applied (set aside, or where strict mode stopped) */
    int failed_rc;          /* 0 = none */
    unsigned failed_source; /* L3_WAL_QUAR_WAL / _SNAPSHOT */
    uint64_t failed_lsn;
    uint8_t failed_op;
    uint32_t failed_klen; /* full key length; failed_key holds at most 127 bytes */
    char failed_key[128];
} l3_wal_recover_report_t;

typedef struct {
    /* start even when segments are missing (see missing_*); default: refuse with -ENOTRECOVERABLE */
    int accept_data_loss;
    /* a record or snapshot entry that passes its CRC but that fn refuses with a data error
     * (anything but -ENOMEM, -ENOSPC, -ENOBUFS, -EIO, -EAGAIN, -EINTR) is written to
     * quarantine_dir and recovery goes on; strict (or quarantine_dir NULL) stops instead */
    int strict;
    const char *quarantine_dir;
} l3_wal_recover_opts_t;

/**
 * l3_wal_recover with options (NULL = all zero: strict, refuse missing segments).
 * Missing segments: -ENOTRECOVERABLE unless accept_data_loss (report.missing_*). A record
 * that cannot be applied: quarantined (report.quarantined) or, strict, fn's code
 * (report.failed_*). A quarantine file that cannot be written: its -errno.
 */
int l3_wal_recover_ex(const char *wal_path, const char *snap_path, const l3_wal_recover_opts_t *opts,
                      l3_wal_replay_fn fn, void *ctx, l3_wal_recover_report_t *ret_report);

/**
 * Write one record to a new quarantine file in dir (created 0700 if missing); source
 * L3_WAL_QUAR_WAL or _SNAPSHOT, error the code applying it returned. The file name goes to
 * ret_name (may be NULL). 0 or -errno (nothing left behind).
 */
int l3_wal_quarantine_put(const char *dir, unsigned source, int error, const l3_wal_rec_t *rec,
                          char *ret_name, size_t cap);
/** List and verify every quarantine file in dir (l3_wal_dump of each, name order). 0, -errno,
 *  L3_ECORRUPT if one is damaged. */
int l3_wal_quarantine_dump(const char *dir, FILE *out, int json);

/**
 * Start-up recovery in one call: load snap_path (if present) through fn, then replay the WAL
 * segments from the snapshot's sn_wal_seq through fn (see l3_wal_replay_from). fn gets the
 * snapshot's documents as PUT records, so the store's l3_store_replay serves for both.
 * An invalid snapshot is renamed aside and everything is replayed when the WAL still starts
 * at segment 1 (no segment was ever deleted); otherwise L3_ECORRUPT (refuse to start rather
 * than come up without the documents it covered). A missing snapshot, or one older than the
 * first segment, while segments it should cover are gone: -ENOTRECOVERABLE. Returns 0 or
 * -errno / L3_ECORRUPT / fn's negative code (strict: a record fn refuses stops recovery).
 * After it: l3_store_set_lsn_floor(max_lsn), l3_wal_ring_set_next_seq(wal.next_seq).
 */
int l3_wal_recover(const char *wal_path, const char *snap_path, l3_wal_replay_fn fn, void *ctx,
                   l3_wal_recover_report_t *ret_report);

typedef struct {
    uint64_t ring_bytes; /* ring bytes between the committed tail and the head */
    uint64_t records;    /* published records appended */
    uint64_t seq;        /* the segment they went to (0: none needed) */
    char segment[512];
    int stop_reason;     /* 0, or why a slot ended the salvage early (later slots dropped) */
    uint64_t stopped_at; /* its ring position */
} l3_wal_salvage_report_t;

/**
 * Append the published, not yet written records of a dead instance's ring (region, len: its
 * WAL region, e.g. mapped read-only) to the WAL at wal_path, before l3_wal_recover: the
 * committed segment is cut to its committed length and the records go, verified and in ring
 * order, to a new segment (src/wal/salvage.c states the argument). 0 (see the report),
 * -ESRCH (the ring is not this WAL's: its id, or without one the salt of the segment its
 * progress record names, does not match), -EBUSY (a process of
 * the ring still runs), -EBADMSG (not a ring), -errno.
 */
int l3_wal_salvage(const void *region, size_t len, const char *wal_path, l3_wal_salvage_report_t *ret);
/** 64-bit identity of a WAL: FNV-1a of the real path of its directory, '/', its base name
 *  (never 0). */
uint64_t l3_wal_path_id(const char *wal_path);

/** Fills a snapshot: call l3_wal_snapshot_add(w, ...) for every document (e.g. from the
 *  store's l3_store_scan callback). 0 or a negative code (the checkpoint is abandoned). */
typedef int (*l3_wal_scan_fn)(void *ctx, l3_wal_snap_writer_t *w);

/**
 * A whole checkpoint, run by the checkpointer while the workers keep going:
 * l3_wal_checkpoint_begin, snapshot of everything `scan` adds (header LSN = lsn, the store's
 * last LSN before the call), commit (durable rename), l3_wal_checkpoint_commit (the writer
 * deletes the covered segments). 0, -ETIMEDOUT (no writer), -EIO, or the scan's code.
 */
int l3_wal_checkpoint(l3_wal_ring_t *r, const char *snap_path, uint64_t lsn, l3_wal_scan_fn scan, void *ctx,
                      int timeout_ms);

/* ---------------------------------------------------------------- inspection */

/**
 * Dump and verify a WAL segment or a snapshot (detected by magic) to out, one line per record
 * (json != 0: one JSON object per line, then a summary object). Returns 0 if the file is
 * entirely valid, L3_ECORRUPT if it has a bad tail (reported), -errno if unreadable.
 */
int l3_wal_dump(const char *path, FILE *out, int json);

#endif /* L3KV_WAL_H */
