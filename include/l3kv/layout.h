/* SPDX-License-Identifier: MIT */
/*
 * l3kv/layout.h - the shared-memory ABI of the store arena.
 *
 * Everything here lives in one MAP_SHARED mapping that every server process maps at a
 * different address and that l3kv-inspect maps read-only: structures hold byte offsets
 * from the start of the arena, never pointers (S1 in docs/invariants.md). All integers
 * are native little endian (the arena never leaves the machine). A change to any
 * structure below bumps L3_ARENA_LAYOUT; attach refuses a mismatch naming both values.
 *
 * Arena map (every region starts on a 4096-byte boundary, offsets stored in the header):
 *
 *   0                 l3_arena_hdr_t            4096 bytes
 *   ah_off_procs      l3_proc_slot_t[max_procs] L3_PROC_SLOT_BYTES each
 *   ah_off_stripes    l3_stripe_t[nstripes]     128 bytes each (lock + hash table of one stripe)
 *   ah_off_alloc      l3_alloc_hdr_t            allocator lock, counters, bitmap, free-list heads
 *   ah_off_obs        metrics region            ah_obs_bytes, owned by src/obs
 *   ah_off_wal        WAL ring region           ah_wal_bytes, owned by src/wal
 *   ah_off_undo       undo areas                ah_undo_bytes per process slot
 *   ah_off_heap       allocator heap            ah_heap_bytes up to the end of the arena
 *
 * Who writes what: the header's immutable part is written once by the supervisor before
 * ah_state becomes READY; counters are updated with atomic adds. Stripe tables and entries
 * change only under the stripe lock; the heap's block headers and free lists only under
 * the allocator lock; a process slot only by its owner (or, once the owner is dead, by
 * whoever holds the lock it died with). Lock-free readers (the inspector) tolerate change
 * by re-reading and verifying copies.
 */
#ifndef L3KV_LAYOUT_H
#define L3KV_LAYOUT_H

#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define L3_ARENA_MAGIC 0x414E5241564B334CULL /* bytes "L3KVARNA" */
#define L3_ARENA_LAYOUT                                                                                      \
    4u /* bump on any change in this file (3: tx_multi, tx_ntail; 4: expiry, 8-byte index slots, 20-byte     \
          entries) */
#define L3_ARENA_HDR_BYTES 4096u
#define L3_ARENA_ALIGN 4096u

/* ah_state */
enum { L3_ARENA_FORMATTING = 0, L3_ARENA_READY = 1, L3_ARENA_POISONED = 2 };

/* ---------------------------------------------------------------- robust lock, 64 bytes
 *  0  40..48  lk_mutex  pthread mutex: PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST
 * 48  4       lk_owner  process slot + 1 of the holder, written right after locking and
 *                       cleared right before unlocking (0 = nobody, or a holder that has
 *                       not started changing anything yet)
 * 52  12      reserved
 */
typedef struct {
    union {
        pthread_mutex_t lk_mutex;
        uint8_t lk_mutex_space[48];
    };
    uint32_t lk_owner;
    uint32_t lk_pad[3];
} l3_lock_t;
static_assert(sizeof(pthread_mutex_t) <= 48, "pthread_mutex_t fits its slot");
static_assert(sizeof(l3_lock_t) == 64, "l3_lock_t is one cache line");
static_assert(offsetof(l3_lock_t, lk_owner) == 48, "lk_owner offset");

/* ---------------------------------------------------------------- header, 4096 bytes at 0
 * Immutable part (bytes 0..219, covered by ah_crc = crc32c over those bytes):
 *   0   8  ah_magic        L3_ARENA_MAGIC
 *   8   4  ah_layout       L3_ARENA_LAYOUT
 *  12   4  ah_hdr_bytes    4096
 *  16   8  ah_arena_bytes  size of the mapping
 *  24   8  ah_created_ns   wall clock at creation (ns since the epoch)
 *  32   4  ah_owner_pid    supervisor pid
 *  36   4  ah_max_procs    process table slots
 *  40   4  ah_nstripes     index stripes (power of two)
 *  44   4  ah_slot_bytes   L3_PROC_SLOT_BYTES
 *  48   8  ah_undo_bytes   undo area per slot
 *  56  80  ah_off_procs, ah_off_stripes, ah_off_alloc, ah_off_obs, ah_obs_bytes,
 *          ah_off_wal, ah_wal_bytes, ah_off_undo, ah_off_heap, ah_heap_bytes
 * 136  16  ah_sipkey       random SipHash key of the index
 * 152  64  ah_name         instance name, NUL padded
 * 216   4  ah_lock_timeout_ms
 * 220   4  ah_crc
 * Mutable part (atomic 4/8-byte accesses):
 * 224   4  ah_state        FORMATTING -> READY (-> POISONED when a repair was impossible)
 * 228   4  reserved
 * 232   8  ah_lsn          last LSN handed out (fetch-add under the document's lock)
 * 240   8  ah_keys         documents
 * 248   8  ah_doc_bytes    sum of document sizes
 * 256   8  ah_repairs      locks recovered from dead owners
 * 264   8  ah_rollbacks    mutations undone
 * 272   8  ah_grows        documents moved to a bigger block
 * 280   8  ah_compactions  documents compacted
 * 288   8  ah_index_slots  hash table slots over all stripes
 * 296   8  ah_rollforwards dead processes' mutations kept (WAL probe said the record was in)
 * 304   8  ah_exp_cursor   next stripe the expiry sweep visits (fetch-add by every sweeper)
 * 312   8  ah_expired      keys removed because their deadline passed
 * 320   8  ah_unpacks      packed documents turned into the full form by a change
 * 328      reserved (zero) up to 4096
 */
typedef struct {
    uint64_t ah_magic;
    uint32_t ah_layout;
    uint32_t ah_hdr_bytes;
    uint64_t ah_arena_bytes;
    uint64_t ah_created_ns;
    int32_t ah_owner_pid;
    uint32_t ah_max_procs;
    uint32_t ah_nstripes;
    uint32_t ah_slot_bytes;
    uint64_t ah_undo_bytes;
    uint64_t ah_off_procs;
    uint64_t ah_off_stripes;
    uint64_t ah_off_alloc;
    uint64_t ah_off_obs;
    uint64_t ah_obs_bytes;
    uint64_t ah_off_wal;
    uint64_t ah_wal_bytes;
    uint64_t ah_off_undo;
    uint64_t ah_off_heap;
    uint64_t ah_heap_bytes;
    uint8_t ah_sipkey[16];
    char ah_name[64];
    uint32_t ah_lock_timeout_ms;
    uint32_t ah_crc;
    /* mutable */
    uint32_t ah_state;
    uint32_t ah_pad0;
    uint64_t ah_lsn;
    uint64_t ah_keys;
    uint64_t ah_doc_bytes;
    uint64_t ah_repairs;
    uint64_t ah_rollbacks;
    uint64_t ah_grows;
    uint64_t ah_compactions;
    uint64_t ah_index_slots;
    uint64_t ah_rollforwards;
    uint64_t ah_exp_cursor;
    uint64_t ah_expired;
    uint64_t ah_unpacks;
    uint8_t ah_reserved[L3_ARENA_HDR_BYTES - 328];
} l3_arena_hdr_t;
static_assert(sizeof(l3_arena_hdr_t) == L3_ARENA_HDR_BYTES, "header size");
static_assert(offsetof(l3_arena_hdr_t, ah_sipkey) == 136, "ah_sipkey offset");
static_assert(offsetof(l3_arena_hdr_t, ah_name) == 152, "ah_name offset");
static_assert(offsetof(l3_arena_hdr_t, ah_crc) == 220, "ah_crc offset");
static_assert(offsetof(l3_arena_hdr_t, ah_state) == 224, "ah_state offset");
static_assert(offsetof(l3_arena_hdr_t, ah_lsn) == 232, "ah_lsn offset");
static_assert(offsetof(l3_arena_hdr_t, ah_index_slots) == 288, "ah_index_slots offset");
#define L3_ARENA_HDR_CRC_BYTES 220u

/* ---------------------------------------------------------------- process slot, 2048 bytes
 * Claimed by CAS of ps_pid 0 -> pid; written only by its process (and by the repairer of
 * a lock the process died holding). Two undo records:
 *  - the transaction record (tx_*): one document mutation under one stripe lock. Physical
 *    undo entries (offset + old bytes, logged before each overwrite) live in this slot's
 *    undo area (ah_off_undo + slot * ah_undo_bytes) as a sequence of
 *        old bytes padded to 8 | u64 offset | u32 length | u32 0
 *    (trailer last, so the log is walked backwards from tx_used, the number of valid
 *    bytes). tx_alloc lists blocks allocated by the transaction (freed on
 *    rollback), tx_free blocks to free once it commits (tx_free_done marks each done).
 *    A multi-key transaction (tx_multi = 1, txn.c) holds several stripe locks and may
 *    allocate and free thousands of blocks: it keeps them in the tail list instead, u64
 *    entries from the end of the same undo area downwards (entry i at
 *    ah_undo_bytes - 8 * (i + 1)), tx_ntail of them, each a value | tag (L3_TXT_*):
 *        stripe << 4 | STRIPE   a stripe lock taken (listed before the attempt)
 *        payload | ALLOC        a block the transaction allocated (freed on rollback)
 *        payload | FREE         a block to free once it commits
 *        0                      an entry whose block was freed (settled)
 *    Physical entries and the tail never overlap: tx_used + 8 * tx_ntail stays below
 *    ah_undo_bytes.
 *  - the allocator record (au_*): old 8-byte words overwritten inside one allocator
 *    critical section, restored in reverse if the process dies there.
 *
 *    0  4  ps_pid          0 = free
 *    4  4  ps_role         l3_store_role_t
 *    8  8  ps_start_ns     monotonic clock at registration
 *   16  8  ps_heartbeat_ns monotonic clock of the last heartbeat
 *   24  4  ps_stripe_held  stripe + 1 while holding a stripe lock
 *   28  4  ps_alloc_held   1 while holding the allocator lock
 *   32  8  ps_ops          mutations committed
 *   40  8  ps_repairs      repairs this process performed
 *   48  4  tx_state        L3_TX_IDLE / ACTIVE / COMMITTED
 *   52  4  tx_stripe       stripe of the transaction
 *   56  8  tx_used         bytes of physical undo entries
 *   64  4  tx_nalloc
 *   68  4  tx_nfree
 *   72  4  tx_free_done    bit i: tx_free[i] released
 *   76  4  tx_hooked       1 once the WAL hook was called for tx_lsn (see L3_TX_ACTIVE repair)
 *   80 64  tx_alloc[8]     block offsets
 *  144 64  tx_free[8]      block offsets
 *  208  4  au_count
 *  212  4  au_pad
 *  216 16*L3_ALLOC_UNDO_MAX  au_rec[]: { u64 offset, u64 old value }
 * 1752  8  tx_lsn          LSN of the transaction's WAL record (valid with tx_hooked)
 * 1760  4  tx_multi        1: a multi-key transaction, whose stripes and blocks are in the tail list
 * 1764  4  tx_ntail        entries in the tail list
 *  ...     reserved to 2048
 */
enum { L3_TX_IDLE = 0, L3_TX_ACTIVE = 1, L3_TX_COMMITTED = 2 };
#define L3_TX_MAX_BLOCKS 8u
#define L3_ALLOC_UNDO_MAX 96u
#define L3_PROC_SLOT_BYTES 2048u
/* tail list tags (low 4 bits of an entry; block payloads are 16-aligned) */
enum { L3_TXT_STRIPE = 1, L3_TXT_ALLOC = 2, L3_TXT_FREE = 3 };
#define L3_TXT_TAG 0xFull

typedef struct {
    uint64_t au_off;
    uint64_t au_old;
} l3_alloc_undo_t;

typedef struct {
    int32_t ps_pid;
    uint32_t ps_role;
    uint64_t ps_start_ns;
    uint64_t ps_heartbeat_ns;
    uint32_t ps_stripe_held;
    uint32_t ps_alloc_held;
    uint64_t ps_ops;
    uint64_t ps_repairs;
    uint32_t tx_state;
    uint32_t tx_stripe;
    uint64_t tx_used;
    uint32_t tx_nalloc;
    uint32_t tx_nfree;
    uint32_t tx_free_done;
    uint32_t tx_hooked;
    uint64_t tx_alloc[L3_TX_MAX_BLOCKS];
    uint64_t tx_free[L3_TX_MAX_BLOCKS];
    uint32_t au_count;
    uint32_t au_pad;
    l3_alloc_undo_t au_rec[L3_ALLOC_UNDO_MAX];
    uint64_t tx_lsn;
    uint32_t tx_multi;
    uint32_t tx_ntail;
    uint8_t ps_reserved[L3_PROC_SLOT_BYTES - 216 - 16 * L3_ALLOC_UNDO_MAX - 16];
} l3_proc_slot_t;
static_assert(sizeof(l3_proc_slot_t) == L3_PROC_SLOT_BYTES, "slot size");
static_assert(offsetof(l3_proc_slot_t, tx_state) == 48, "tx_state offset");
static_assert(offsetof(l3_proc_slot_t, tx_alloc) == 80, "tx_alloc offset");
static_assert(offsetof(l3_proc_slot_t, tx_free) == 144, "tx_free offset");
static_assert(offsetof(l3_proc_slot_t, au_rec) == 216, "au_rec offset");
static_assert(offsetof(l3_proc_slot_t, tx_lsn) == 1752, "tx_lsn offset");
static_assert(offsetof(l3_proc_slot_t, tx_multi) == 1760, "tx_multi offset");

/* Undo entry trailer in the undo area (follows the saved bytes). */
typedef struct {
    uint64_t ue_off;
    uint32_t ue_len;
    uint32_t ue_pad;
} l3_undo_ent_t;
static_assert(sizeof(l3_undo_ent_t) == 16, "undo entry header");

/* ---------------------------------------------------------------- index stripe, 128 bytes
 * A key's SipHash h picks stripe h & (nstripes-1); each stripe is a lock and an open
 * addressing table of its own (linear probing from (h >> 32) & (cap-1)), grown or rebuilt
 * by building a new table in a fresh block and publishing sp_table in one store, so growth
 * stops only one stripe, for a time proportional to that stripe's keys.
 *    0  64  sp_lock   robust lock; also the lock of every document of the stripe
 *   64   8  sp_table  offset of l3_ix_slot_t[sp_cap] (a block payload), 0 = none yet
 *   72   4  sp_cap    slots, power of two
 *   76   4  sp_count  live entries
 *   80   4  sp_tomb   tombstones
 *   84   4  sp_pad
 *   88   8  sp_gen    bumped by every change to the stripe (lets lock-free readers retry)
 *   96   8  sp_exp_min no entry's deadline is below this: the expiry sweep skips the stripe
 *                     until it passes (0 at creation: visit once). Lowered by whoever sets a
 *                     deadline, raised only by a sweep that looked at every entry
 *                     (UINT64_MAX: no deadline), always under the stripe lock
 *  104  24  reserved
 */
typedef struct {
    l3_lock_t sp_lock;
    uint64_t sp_table;
    uint32_t sp_cap;
    uint32_t sp_count;
    uint32_t sp_tomb;
    uint32_t sp_pad;
    uint64_t sp_gen;
    uint64_t sp_exp_min;
    uint64_t sp_reserved[3];
} l3_stripe_t;
static_assert(sizeof(l3_stripe_t) == 128, "stripe size");
static_assert(offsetof(l3_stripe_t, sp_table) == 64, "sp_table offset");

/* Index table slot, 8 bytes: 0 = empty, 1 = tombstone, else
 *   bits  0..39  offset of the l3_ix_entry_t / 16 (entries are block payloads: 16-aligned)
 *   bits 40..63  tag: bits 32..55 of the key's hash. The tag is also the slot's home: the
 *                probe for a key starts at tag & (sp_cap - 1), so a table is rebuilt from
 *                its slots alone and holds at most L3_IX_MAX_CAP slots.
 * A slot is one aligned 8-byte word: lock-free readers load it whole. */
#define L3_IX_EMPTY 0u
#define L3_IX_TOMB 1u
#define L3_IX_MAX_CAP (1u << 24)
typedef struct {
    uint64_t ix;
} l3_ix_slot_t;
static_assert(sizeof(l3_ix_slot_t) == 8, "index slot");

static inline uint32_t l3_ix_tag(uint64_t hash)
{
    return (uint32_t)(hash >> 32) & 0xFFFFFFu;
}
static inline uint64_t l3_ix_slot(uint64_t hash, uint64_t entry)
{
    return ((uint64_t)l3_ix_tag(hash) << 40) | (entry >> 4);
}
static inline uint64_t l3_ix_slot_entry(uint64_t slot)
{
    return (slot & ((UINT64_C(1) << 40) - 1)) << 4;
}
static inline uint32_t l3_ix_slot_tag(uint64_t slot)
{
    return (uint32_t)(slot >> 40);
}

/* Index entry, one per key, at the start of the key's one block (a block payload):
 *    0  8  ie_doc    offset of the document: in the same block, right after the key, at
 *                    entry + align8(L3_IX_ENTRY_HDR + klen). A document that outgrows its
 *                    block moves with its entry and key to a new block (the slot is
 *                    rewritten), so a key costs one block header
 *    8  8  ie_expire the key's deadline, ms since the Unix epoch (CLOCK_REALTIME); 0 = none.
 *                    A key whose deadline has passed is absent to every reader and is
 *                    removed (with a logged record) by the next write or the expiry sweep.
 *   16  2  ie_klen   key length, 1..L3_STORE_KEY_MAX
 *   18  2  ie_magic  L3_IX_ENTRY_MAGIC
 *   20     key bytes, zero or more padding bytes to a multiple of 8, then the document;
 *          the document's capacity is the rest of the block
 * The key's hash is not stored: the slot holds its tag, and a check recomputes it.
 */
#define L3_IX_ENTRY_MAGIC 0x4E45u /* "EN" */
#define L3_IX_ENTRY_HDR 20u
typedef struct {
    uint64_t ie_doc;
    uint64_t ie_expire;
    uint16_t ie_klen;
    uint16_t ie_magic;
    uint8_t ie_key[];
} l3_ix_entry_t;
static_assert(offsetof(l3_ix_entry_t, ie_key) == L3_IX_ENTRY_HDR, "entry header");

/* ---------------------------------------------------------------- allocator
 * Segregated-fit allocator with boundary tags over [al_heap_off, al_heap_off+al_heap_bytes).
 * Blocks are multiples of 16 bytes, at least L3_BLOCK_MIN, and tile the heap exactly.
 *   used block:  0 u64 size|USED|PREV_USED   8 u64 L3_BLOCK_MAGIC_USED ^ size   16 payload
 *   free block:  0 u64 size|PREV_USED        8 u64 L3_BLOCK_MAGIC_FREE ^ size
 *               16 u64 next free block (0 = end)   24 u64 previous free block (0 = head)
 *               size-8 u64 size (footer, for coalescing with the following block)
 * Free blocks never touch each other (freeing coalesces). Bins: sizes < 1024 in exact
 * 16-byte classes (bin = size / 16); larger sizes in 8 classes per power of two
 * (bin = 64 + (log2 - 10) * 8 + next 3 bits). al_bitmap marks non-empty bins.
 *    0  64  al_lock
 *   64   8  al_heap_off     72  8  al_heap_bytes
 *   80   8  al_used_bytes   88  8  al_free_bytes
 *   96   8  al_used_blocks 104  8  al_free_blocks
 *  112  48  al_bitmap[6]
 *  160 8*L3_ALLOC_NBINS  al_bins[]  first free block of each bin (0 = empty)
 */
#define L3_BLOCK_HDR 16u
#define L3_BLOCK_MIN 48u
#define L3_BLOCK_USED 0x1ull
#define L3_BLOCK_PREV_USED 0x2ull
#define L3_BLOCK_FLAGS 0xFull
#define L3_BLOCK_MAGIC_USED 0x55334C4B42ull /* mixed with the size */
#define L3_BLOCK_MAGIC_FREE 0x46334C4B42ull
#define L3_ALLOC_NBINS 368u
#define L3_ALLOC_BITMAP_WORDS 6u

typedef struct {
    l3_lock_t al_lock;
    uint64_t al_heap_off;
    uint64_t al_heap_bytes;
    uint64_t al_used_bytes;
    uint64_t al_free_bytes;
    uint64_t al_used_blocks;
    uint64_t al_free_blocks;
    uint64_t al_bitmap[L3_ALLOC_BITMAP_WORDS];
    uint64_t al_bins[L3_ALLOC_NBINS];
} l3_alloc_hdr_t;
static_assert(offsetof(l3_alloc_hdr_t, al_bitmap) == 112, "al_bitmap offset");
static_assert(offsetof(l3_alloc_hdr_t, al_bins) == 160, "al_bins offset");
static_assert(L3_ALLOC_BITMAP_WORDS * 64 >= L3_ALLOC_NBINS, "bitmap covers the bins");

#endif /* L3KV_LAYOUT_H */
