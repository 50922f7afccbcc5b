/* SPDX-License-Identifier: MIT */
/*
 * l3kv/store.h - the multi-process document store in a shared-memory arena.
 *
 * One arena (shm_open "/l3kv-<name>", MAP_SHARED) holds the allocator, the key index, every
 * document (l3kv/doc.h format), a process table with one undo record per process, the
 * WAL ring region and the metrics region. The supervisor creates it; forked children
 * inherit the handle and call l3_store_proc_register() before their first operation;
 * l3kv-inspect attaches read-only. The byte layout is in l3kv/layout.h, the design in
 * docs/store.md.
 *
 * Every operation is atomic per document: readers never see a half-written document, and
 * a process killed at any instruction leaves each document fully before or fully after
 * its mutation (the next locker repairs it from the dead process's undo record).
 * Every document carries an LSN from one global counter; mutations return the new one.
 *
 * Handles are process-local and used by one thread at a time (l3_store_clone() gives a
 * thread its own handle and process slot). Functions return >= 0 on success or a
 * negative code: -errno or L3_E* (l3kv/error.h). Common codes:
 *   -ENOENT        the key does not exist
 *   -ENAMETOOLONG  key longer than L3_STORE_KEY_MAX (or empty: -EINVAL)
 *   -ENOSPC        the arena is full; nothing changed (HTTP 507)
 *   -ESTALE        If-Match version given and the document's LSN differs (HTTP 412)
 *   -ETIMEDOUT     a lock was not obtained within the lock timeout (HTTP 503)
 *   -EPERM         handle not registered in this process (call l3_store_proc_register after fork)
 *   -EROFS         handle attached read-only
 *   L3_ESYNTAX, L3_EDEPTH (bad JSON, *err set), L3_EPATH, L3_ENOTFOUND, L3_ETYPE,
 *   L3_ERANGE (from the document layer), L3_ECORRUPT (binary document failed verify),
 *   L3_EDOCSIZE (the document would pass the handle's max_doc_bytes; nothing changed)
 *   any non-zero value returned by the WAL hook (the mutation is rolled back)
 */
#ifndef L3KV_STORE_H
#define L3KV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "l3kv/doc.h"
#include "l3kv/walhook.h"

/** Longest key in bytes. Keys are arbitrary bytes, 1..L3_STORE_KEY_MAX long. */
#define L3_STORE_KEY_MAX 1024u

/** Defaults used for zero fields of l3_store_opts_t. */
#define L3_STORE_DEFAULT_ARENA_BYTES (1ull << 30)     /* virtual: sparse file, pages touched on use */
#define L3_STORE_DEFAULT_WAL_RING_BYTES (20ull << 20) /* the WAL ring region */
#define L3_STORE_DEFAULT_MAX_PROCS 64u
#define L3_STORE_DEFAULT_OBS_BYTES (64u << 10)
#define L3_STORE_DEFAULT_UNDO_BYTES (256u << 10) /* per process slot */
#define L3_STORE_DEFAULT_LOCK_TIMEOUT_MS 10000u
#define L3_STORE_DEFAULT_MAX_DOC_BYTES (64ull << 20) /* binary size of one document */

typedef struct l3_store l3_store_t;

typedef struct {
    /* Instance name: [A-Za-z0-9._-], 1..48 chars. The shared memory object is "/l3kv-<name>"
     * (/dev/shm/l3kv-<name>), and /dev/shm/l3kv-pid-<supervisor pid> is a symlink to it so
     * tools can find the instance by pid. NULL = "l3kv.<pid>". */
    const char *name;
    size_t arena_bytes;       /* total mapping; 0 = L3_STORE_DEFAULT_ARENA_BYTES */
    size_t wal_ring_bytes;    /* WAL ring region; 0 = default */
    uint32_t max_procs;       /* process table slots; 0 = default */
    size_t obs_bytes;         /* metrics region; 0 = default */
    size_t undo_bytes;        /* undo record per process slot; 0 = default */
    uint32_t nstripes;        /* index lock stripes (power of two); 0 = 1024 */
    uint32_t lock_timeout_ms; /* 0 = default; a lock not obtained in time gives -ETIMEDOUT */
    bool replace;             /* remove a stale shm object of the same name instead of failing with -EEXIST */
    /* Largest binary document (used bytes) a write may store; 0 = L3_STORE_DEFAULT_MAX_DOC_BYTES.
     * Process-local: kept by this handle, the children that inherit it and its clones
     * (l3_store_set_max_doc_bytes changes it; an attached handle starts at the default).
     * Every path that grows a document checks it before allocating (L3_EDOCSIZE, nothing
     * changed); WAL replay does not, so a lowered limit never stops recovery. */
    size_t max_doc_bytes;
} l3_store_opts_t;

/* ---------------------------------------------------------------- lifetime, processes */

/**
 * Create and format a new arena (supervisor). The calling process is registered in slot 0
 * with role L3_STORE_ROLE_SUPERVISOR. Verifies that robust process-shared mutexes work.
 * Returns 0, -EEXIST (name in use and !replace), -EINVAL, -ENOMEM, -ENOTSUP (no robust
 * mutexes), other -errno from shm_open/ftruncate/mmap. Blocks only briefly.
 */
int l3_store_create(const l3_store_opts_t *opts, l3_store_t **ret);

#define L3_STORE_ATTACH_READONLY 0x1u /* PROT_READ mapping; only the inspection functions work */

/**
 * Attach to an existing arena by name (name != NULL), else by supervisor pid (pid > 0),
 * else the only instance on the machine. Checks magic, layout word and header CRC.
 * A read-write attach must call l3_store_proc_register() before operating.
 * Returns 0, -ENOENT (no such instance), -EMLINK (several instances and no selector),
 * L3_ECORRUPT (bad header), -EPROTO (layout version mismatch), -errno.
 */
int l3_store_attach(const char *name, pid_t pid, unsigned flags, l3_store_t **ret);

/**
 * Remove instances left behind by supervisors that died without l3_store_unlink(): every
 * /dev/shm/l3kv-pid-<pid> link whose pid no longer runs, and the shm object it names when
 * that object's header says the same pid created it (only_pid > 0: just that pid's).
 * Returns the number of objects removed. Call at start-up, before l3_store_create();
 * never touches a live instance.
 */
int l3_store_sweep_stale(pid_t only_pid);

/** Unmap and free the handle (does not unregister: see l3_store_proc_unregister). NULL ok. */
void l3_store_close(l3_store_t *st);

/** Remove the shared memory name and the pid link (supervisor at shutdown). Mappings stay valid. */
int l3_store_unlink(l3_store_t *st);

typedef enum {
    L3_STORE_ROLE_NONE = 0,
    L3_STORE_ROLE_SUPERVISOR = 1,
    L3_STORE_ROLE_WORKER = 2,
    L3_STORE_ROLE_WRITER = 3,
    L3_STORE_ROLE_TOOL = 4,
    L3_STORE_ROLE_MAX
} l3_store_role_t;

/**
 * Claim a process slot for this process (after fork, before the first operation).
 * *ret_slot (may be NULL) gets the slot index. Slots of dead processes are swept.
 * Returns 0, -ENOSPC (table full), -EROFS.
 */
int l3_store_proc_register(l3_store_t *st, int role, uint32_t *ret_slot);

/** Release this handle's slot (graceful exit). 0 or -EPERM. */
int l3_store_proc_unregister(l3_store_t *st);

/** Update this process's heartbeat (cheap; the server may call it once per loop turn). */
void l3_store_proc_heartbeat(l3_store_t *st);

/**
 * Supervisor, after waitpid() reported `pid` dead: repair every lock the process held
 * (rolling back its unfinished mutation from its undo record) and free its slots.
 * Returns the number of slots released (>= 0), -ETIMEDOUT, or L3_EPOISONED (the repair
 * could not complete: see l3_store_poisoned).
 */
int l3_store_proc_reap(l3_store_t *st, pid_t pid);

/**
 * True once the arena is poisoned: a dead process's lock could not be repaired (the
 * repair could not get the allocator lock, a mutex became unrecoverable, the allocator
 * met a block that is not one). A poisoned arena refuses every write and every access
 * to an unrepaired stripe with L3_EPOISONED; reads of other stripes still answer. It is
 * never cleared: the owner rebuilds the arena from snapshot + WAL (the server stops and
 * exits 3, see docs/store.md). Any process.
 */
bool l3_store_poisoned(const l3_store_t *st);

/**
 * A second handle on the same mapping with its own process slot, for another thread of
 * this process. Close it with l3_store_close (after l3_store_proc_unregister).
 */
int l3_store_clone(l3_store_t *st, int role, l3_store_t **ret);

/** Slot index of this handle, or -EPERM when unregistered. */
int l3_store_proc_slot(const l3_store_t *st);

/* ---------------------------------------------------------------- shared regions */

/** The WAL ring region (wal_ring_bytes, page aligned, zero at creation, owned by src/wal). */
void *l3_store_wal_region(l3_store_t *st, size_t *ret_len);
/** The metrics region (obs_bytes, page aligned, zero at creation, owned by src/obs). */
void *l3_store_obs_region(l3_store_t *st, size_t *ret_len);
/** Instance name (without "/l3kv-"). */
const char *l3_store_name(const l3_store_t *st);

/* ---------------------------------------------------------------- reading */

/* Path flags for reads reuse the syntax bits of the set flags: L3_DOC_SET_PATH_POINTER,
 * L3_DOC_SET_PATH_DOTTED, neither = auto (pointer if it starts with '/'). */

/**
 * Append the document (or, when plen > 0, the value at `path`) as JSON to *out.
 * *ret_lsn (may be NULL) gets the document's LSN. Returns 0, -ENOENT, L3_EPATH,
 * L3_ENOTFOUND, -ENOMEM. Holds the document's lock while serialising.
 */
int l3_store_get_json(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen,
                      unsigned flags, l3_buf_t *out, uint64_t *ret_lsn);
/** l3_store_get_json, and *ret_ser_ns gets the time spent serialising (the document layer's
 *  l3_doc_to_json, under the lock; 0 for a read-only store, which is not timed). */
int l3_store_get_json_timed(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen,
                            unsigned flags, l3_buf_t *out, uint64_t *ret_lsn, uint64_t *ret_ser_ns);
/** l3_store_get_json_timed, and *ret_expire_ms (may be NULL) gets the key's deadline (0: none). */
int l3_store_get_json_exp(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen,
                          unsigned flags, l3_buf_t *out, uint64_t *ret_lsn, uint64_t *ret_ser_ns,
                          uint64_t *ret_expire_ms);

/** Copy the binary document into a new malloc'd buffer (*ret_buf, free()). 0, -ENOENT, -ENOMEM. */
int l3_store_get_bin(l3_store_t *st, const void *key, size_t klen, uint8_t **ret_buf, size_t *ret_len,
                     uint64_t *ret_lsn);

/** l3_store_get_bin, and *ret_expire_ms (may be NULL) gets the key's deadline (0: none). */
int l3_store_get_bin_exp(l3_store_t *st, const void *key, size_t klen, uint8_t **ret_buf, size_t *ret_len,
                         uint64_t *ret_lsn, uint64_t *ret_expire_ms);

/** LSN of a document without copying it. 0, -ENOENT. */
int l3_store_get_lsn(l3_store_t *st, const void *key, size_t klen, uint64_t *ret_lsn);

/* ---------------------------------------------------------------- writing
 * if_match: 0 = unconditional; L3_STORE_IF_ABSENT = the key must not exist (-EEXIST if it
 * does; create-only PUT); otherwise the document must exist with exactly this LSN
 * (-ESTALE if it differs, -ENOENT if absent). ret_lsn (may be NULL) gets the new LSN. */
#define L3_STORE_IF_ABSENT UINT64_MAX /* no LSN reaches it */

/** Store a JSON document (parsed outside the lock). 0; L3_ESYNTAX/L3_EDEPTH with *err (may be NULL). */
int l3_store_put_json(l3_store_t *st, const void *key, size_t klen, const char *json, size_t jlen,
                      uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err);

/** Store a binary document after l3_doc_verify(). 0; L3_ECORRUPT with *err (may be NULL). */
int l3_store_put_bin(l3_store_t *st, const void *key, size_t klen, const uint8_t *doc, size_t len,
                     uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err);

/** Delete a document. 0, -ENOENT. */
int l3_store_delete(l3_store_t *st, const void *key, size_t klen, uint64_t if_match, uint64_t *ret_lsn);

/* ---------------------------------------------------------------- expiry
 * A key may carry a deadline: wall-clock milliseconds since the Unix epoch (CLOCK_REALTIME,
 * so it survives a restart). From the deadline on the key is absent to every read, listing
 * and scan; the next write to it, or the expiry sweep, removes it with a logged DELETE
 * marked L3_WAL_RF_EXPIRED (the change feed's "expire"). A PUT sets the deadline it is given
 * and clears any other (0); set, incr, patches keep it. */

/** Wall-clock now in the deadlines' unit. */
uint64_t l3_store_now_ms(void);
/** l3_store_put_json / _bin that also set the deadline (0: none); one WAL record. */
int l3_store_put_json_ttl(l3_store_t *st, const void *key, size_t klen, const char *json, size_t jlen,
                          uint64_t if_match, uint64_t expire_ms, uint64_t *ret_lsn, l3_doc_error_t *err);
int l3_store_put_bin_ttl(l3_store_t *st, const void *key, size_t klen, const uint8_t *doc, size_t len,
                         uint64_t if_match, uint64_t expire_ms, uint64_t *ret_lsn, l3_doc_error_t *err);
/** Set (expire_ms > 0) or remove (0) the deadline of an existing key: a change with a new
 *  LSN (WAL op EXPIRE). 0, -ENOENT, -ESTALE (if_match). */
int l3_store_expire(l3_store_t *st, const void *key, size_t klen, uint64_t expire_ms, uint64_t if_match,
                    uint64_t *ret_lsn);
/** The key's deadline (0: none) and LSN. 0, -ENOENT (absent or expired). */
int l3_store_get_expire(l3_store_t *st, const void *key, size_t klen, uint64_t *ret_expire_ms,
                        uint64_t *ret_lsn);
/**
 * Background reclaim: visit up to max_stripes stripes from the shared sweep cursor (every
 * process sweeping shares it, so together they go round the index once) and remove up to
 * max_keys keys whose deadline has passed. A stripe none of whose deadlines has passed
 * costs one load (sp_exp_min). *ret_removed gets the count. 0, or the first error (e.g.
 * -EAGAIN when the WAL ring is full: the rest waits for the next call).
 */
int l3_store_expire_sweep(l3_store_t *st, uint32_t max_stripes, size_t max_keys, size_t *ret_removed);

/**
 * Set the value at `path` to a scalar (flags: L3_DOC_SET_*). The document must exist.
 * In place where the document layer allows; grows (copy to a larger block, atomic publish)
 * when it does not fit. 0, -ENOENT, L3_EPATH, L3_ENOTFOUND, L3_ETYPE, L3_ERANGE, -ENOSPC.
 */
int l3_store_set(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen, unsigned flags,
                 const l3_doc_scalar_t *v, uint64_t if_match, uint64_t *ret_lsn);

/** Fast path: set an existing INT at path (L3_ETYPE if it is not an INT; one 8-byte store). */
int l3_store_set_int(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen,
                     unsigned flags, int64_t v, uint64_t *ret_lsn);

/** Add delta to the INT at path; *ret_new (may be NULL) gets the result. L3_ETYPE, L3_ERANGE on overflow. */
int l3_store_incr(l3_store_t *st, const void *key, size_t klen, const char *path, size_t plen, unsigned flags,
                  int64_t delta, int64_t *ret_new, uint64_t *ret_lsn);

/**
 * Apply a JSON Merge Patch (RFC 7396) atomically (to a private copy, then publish).
 * A missing document is treated as null, so the patch creates it (return 1 then, else 0).
 */
int l3_store_merge_patch(l3_store_t *st, const void *key, size_t klen, const char *patch, size_t len,
                         uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err);

/** Apply a JSON Patch (RFC 6902) atomically. -ENOENT if the document is missing. */
int l3_store_json_patch(l3_store_t *st, const void *key, size_t klen, const char *patch, size_t len,
                        uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err);

/* ---------------------------------------------------------------- multi-key transactions
 * Several documents changed as one unit (src/store/txn.c). Begin locks every key's stripe,
 * in ascending stripe order, so concurrent transactions never deadlock (with each other or
 * with single-key calls); the locks are held until commit or abort, and no lock is held
 * across I/O (the WAL group hook only fills the shared ring). The calls below work on
 * private copies - each write costs a copy of the document, like a PATCH - and see the
 * transaction's own earlier writes; nothing is visible to others until commit. A failed
 * call changes nothing (the transaction goes on; the caller decides to commit or abort).
 * Every write takes its own LSN, returned like the single-key call's. Commit applies all
 * changes in one transaction record of this process's slot and logs their records as one
 * WAL group (l3_store_set_wal_group_hook): a process killed during it is rolled back (or
 * forward, when its group is in the WAL) like a single-key change; recovery replays the
 * group whole or not at all. Keys passed to a call must be among those given to begin
 * (-EINVAL otherwise); the key bytes given to begin must stay valid until the end. */

/** Most distinct keys one transaction locks; most write calls (records) it queues. */
#define L3_STORE_TXN_MAX_KEYS 1024u
#define L3_STORE_TXN_MAX_RECS 4096u

typedef struct l3_store_txn l3_store_txn_t;

/**
 * Lock keys[i] (klens[i] bytes, i < n; duplicates allowed) and start a transaction.
 * max_bytes bounds the private copies and queued record payloads together (0 = four times
 * the handle's max_doc_bytes): a call past it fails with -E2BIG. Returns 0, -EINVAL,
 * -ENAMETOOLONG, -E2BIG (more than L3_STORE_TXN_MAX_KEYS keys, or more stripes than the
 * undo area can list), -ETIMEDOUT, L3_EPOISONED, -ENOMEM, -EPERM.
 */
int l3_store_txn_begin(l3_store_t *st, const void *const *keys, const size_t *klens, size_t n,
                       size_t max_bytes, l3_store_txn_t **ret);
/** The document as the transaction sees it: *ret_doc stays valid until the next call on t.
 *  0, -ENOENT. */
int l3_store_txn_get(l3_store_txn_t *t, const void *key, size_t klen, const uint8_t **ret_doc,
                     uint64_t *ret_lsn);
/** The single-key calls' counterparts (same arguments, codes and LSN semantics). */
int l3_store_txn_put_json(l3_store_txn_t *t, const void *key, size_t klen, const char *json, size_t jlen,
                          uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err);
int l3_store_txn_delete(l3_store_txn_t *t, const void *key, size_t klen, uint64_t if_match,
                        uint64_t *ret_lsn);
int l3_store_txn_put_json_ttl(l3_store_txn_t *t, const void *key, size_t klen, const char *json, size_t jlen,
                              uint64_t if_match, uint64_t expire_ms, uint64_t *ret_lsn, l3_doc_error_t *err);
int l3_store_txn_expire(l3_store_txn_t *t, const void *key, size_t klen, uint64_t expire_ms,
                        uint64_t if_match, uint64_t *ret_lsn);
int l3_store_txn_set(l3_store_txn_t *t, const void *key, size_t klen, const char *path, size_t plen,
                     unsigned flags, const l3_doc_scalar_t *v, uint64_t if_match, uint64_t *ret_lsn);
int l3_store_txn_incr(l3_store_txn_t *t, const void *key, size_t klen, const char *path, size_t plen,
                      unsigned flags, int64_t delta, int64_t *ret_new, uint64_t *ret_lsn);
/** 1 when the patch created the document, 0 otherwise (as l3_store_merge_patch). */
int l3_store_txn_merge_patch(l3_store_txn_t *t, const void *key, size_t klen, const char *patch, size_t len,
                             uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err);
int l3_store_txn_json_patch(l3_store_txn_t *t, const void *key, size_t klen, const char *patch, size_t len,
                            uint64_t if_match, uint64_t *ret_lsn, l3_doc_error_t *err);
/**
 * Apply every change as one unit, log it as one WAL group, release the locks and free t
 * (also on failure). 0; or, with nothing changed: -ENOSPC, L3_EDOCSIZE, -E2BIG (the undo
 * area cannot hold the record of that many keys), the group hook's code (-EMSGSIZE: the
 * WAL cannot take a group that large), -ENOTSUP (a WAL hook is set but no group hook),
 * L3_EPOISONED. A transaction without writes only unlocks.
 */
int l3_store_txn_commit(l3_store_txn_t *t);
/** Release the locks and free t; nothing changes. NULL allowed. */
void l3_store_txn_abort(l3_store_txn_t *t);

/* ---------------------------------------------------------------- listing and scanning */

/** Called per key; return 0 to continue, non-zero to stop (that value is returned). */
typedef int (*l3_store_key_fn)(void *ctx, const void *key, size_t klen, uint64_t lsn);

/**
 * List keys starting with prefix (plen 0 = all), in index order (not sorted), at most
 * `limit` keys per call (0 = no limit). *inout_cursor starts at 0 and is 0 again when the
 * listing is complete. Keys added or removed during a listing may or may not appear;
 * a key present throughout appears at least once. Returns the number of keys reported.
 */
int l3_store_keys(l3_store_t *st, const void *prefix, size_t plen, uint64_t *inout_cursor, size_t limit,
                  l3_store_key_fn fn, void *ctx);

/** Called per document with a private, consistent copy (valid during the call). Non-zero stops. */
typedef int (*l3_store_scan_fn)(void *ctx, const void *key, size_t klen, const uint8_t *doc, size_t len,
                                uint64_t lsn, uint64_t expire_ms);

/**
 * Visit every document whose key starts with prefix (checkpoints, dumps). Each document
 * is copied under its lock, then `fn` runs without any lock held. Documents created during
 * the scan may be missed (their LSN is above the LSN read at the start: *ret_start_lsn).
 * Returns 0, the callback's non-zero value, or -errno.
 */
int l3_store_scan(l3_store_t *st, const void *prefix, size_t plen, l3_store_scan_fn fn, void *ctx,
                  uint64_t *ret_start_lsn);

/* ---------------------------------------------------------------- WAL */

/** Install the hook called under the document lock after each mutation (NULL = none). */
void l3_store_set_max_doc_bytes(l3_store_t *st, size_t max_doc_bytes);
void l3_store_set_wal_hook(l3_store_t *st, l3_wal_hook_fn fn, void *ctx);
/** Install the hook a transaction's commit logs its records with, as one group (NULL = none). */
void l3_store_set_wal_group_hook(l3_store_t *st, l3_wal_group_hook_fn fn, void *ctx);

/**
 * Tells a repairer whether the WAL record with this LSN, written by a process that then
 * died before its mutation committed, made it into the WAL (published in the ring or
 * already written): 1 yes, 0 no (never reserved, or abandoned), < 0 unknown.
 */
typedef int (*l3_wal_probe_fn)(void *ctx, uint64_t lsn);

/**
 * Install the probe (NULL = none). A process killed after its WAL hook call began leaves a
 * mutation that is complete in memory; on repair the store asks the probe: 1 keeps the
 * mutation (so memory matches the WAL), anything else rolls it back (without a probe:
 * always rolled back, the right choice when the process died inside the hook).
 */
void l3_store_set_wal_probe(l3_store_t *st, l3_wal_probe_fn fn, void *ctx);

/**
 * Apply one WAL record during recovery (no hook is called). Skipped (returns 0) when the
 * document's LSN >= rec->lsn, so replay is idempotent; the document gets rec->lsn.
 * Raises the LSN floor to rec->lsn. Returns 0, 1 when skipped, L3_ECORRUPT (bad payload),
 * -ENOSPC.
 */
int l3_store_replay(l3_store_t *st, const l3_wal_rec_t *rec);

/** Make new LSNs start above `lsn` (after recovery). Never lowers the counter. */
void l3_store_set_lsn_floor(l3_store_t *st, uint64_t lsn);
/** The last LSN handed out. */
uint64_t l3_store_last_lsn(const l3_store_t *st);

/**
 * Encode / decode the payload of an L3_WALOP_SET record (used by the store itself; exposed
 * for tools and tests). Format (little endian): u8 version=1, u8 scalar type, u16 flags,
 * u32 path length, path bytes, then the value: INT/DOUBLE 8 bytes, BOOL 1 byte, NULL /
 * OBJECT / ARRAY nothing, STRING/BIGNUM u32 length + bytes.
 * encode: 0 with a malloc'd *ret_buf; decode: 0 with pointers into `buf`, or L3_ECORRUPT.
 */
int l3_store_encode_set(const char *path, size_t plen, unsigned flags, const l3_doc_scalar_t *v,
                        uint8_t **ret_buf, size_t *ret_len);
int l3_store_decode_set(const uint8_t *buf, size_t len, const char **ret_path, size_t *ret_plen,
                        unsigned *ret_flags, l3_doc_scalar_t *ret_v);

/* ---------------------------------------------------------------- statistics, checking */

typedef struct {
    uint64_t keys;       /* documents */
    uint64_t doc_bytes;  /* sum of l3_doc_size() */
    uint64_t heap_bytes; /* allocator heap size */
    uint64_t used_bytes; /* bytes in allocated blocks (headers included) */
    uint64_t free_bytes; /* bytes in free blocks */
    uint64_t used_blocks;
    uint64_t free_blocks;
    uint64_t largest_free; /* biggest single free block */
    double fragmentation;  /* 1 - largest_free / free_bytes (0 = one free extent) */
    uint64_t last_lsn;
    uint64_t repairs;      /* locks recovered from dead owners */
    uint64_t rollbacks;    /* mutations undone (repairs, hook failures, errors) */
    uint64_t rollforwards; /* dead processes' mutations kept: their WAL record was in */
    uint64_t expired;      /* keys removed because their deadline passed */
    uint64_t grows;        /* documents moved to a larger block */
    uint64_t unpacks;      /* packed documents turned into the full form by a change */
    uint64_t compactions;  /* documents rewritten without garbage */
    uint32_t procs;        /* registered process slots */
    uint32_t nstripes;
    uint64_t index_slots; /* hash table slots over all stripes */
} l3_store_stats_t;

/** Counters (read without locks; approximate while writers run). 0. */
int l3_store_stats(l3_store_t *st, l3_store_stats_t *ret);

/** Report line callback for l3_store_check (one problem or progress line per call). */
typedef void (*l3_store_report_fn)(void *ctx, const char *line);

/**
 * Verify every structure without taking locks (works on read-only attachments): header
 * CRC, allocator block chain and free lists, index tables and entries, every document
 * with l3_doc_verify() on a private copy. Structures changing under a running server are
 * re-read up to `retries` times before being reported. Returns the number of problems
 * found (0 = sound) or -errno.
 */
int l3_store_check(l3_store_t *st, unsigned retries, l3_store_report_fn fn, void *ctx);

/* ---------------------------------------------------------------- raw views (tools) */

/**
 * The arena header as mapped by this handle (type l3_arena_hdr_t from l3kv/layout.h);
 * the arena's first byte. For inspection: the mutable fields change under a running
 * server, read them with atomic loads.
 */
const void *l3_store_header(const l3_store_t *st);

/** Process slot i (l3_proc_slot_t from l3kv/layout.h), or NULL when i >= max_procs. */
const void *l3_store_proc_slot_at(const l3_store_t *st, uint32_t i);

#endif /* L3KV_STORE_H */
