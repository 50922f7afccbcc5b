/* SPDX-License-Identifier: MIT */
/*
 * l3kv-inspect - look inside a running (or stopped) instance's shared arena.
 *
 *   l3kv-inspect [--pid PID | --name NAME] [--json] info | keys [PREFIX] | get KEY | check
 *   l3kv-inspect [--json] wal FILE
 *   l3kv-inspect [--json] quarantine DIR
 * The options may also follow the command and its arguments (l3kv-inspect wal FILE --json).
 *
 * Attaches read-only (PROT_READ mapping of /dev/shm/l3kv-<name>) and takes no lock, so it
 * never disturbs the server: every structure is read with bounds checks, documents are
 * copied and verified (l3_doc_verify) before they are printed, and structures caught
 * changing are re-read (seqlock generation per stripe; the check retries).
 * Exit status: 0 sound / done, 1 corruption found or the request failed (no instance, no
 * such key), 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "l3kv/base.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"
#include "l3kv/json.h"
#include "l3kv/layout.h"
#include "l3kv/store.h"
#include "l3kv/wal.h"
#include "l3kv-config.h"

static bool json_out;

static void usage(FILE *f)
{
    fprintf(f, "usage: l3kv-inspect [--pid PID | --name NAME] [--json] COMMAND [ARG]\n"
               "Options may also follow the command and its argument; -- ends the options.\n"
               "commands:\n"
               "  info           header, allocator and index statistics, process table\n"
               "  keys [PREFIX]  list keys (with their LSN)\n"
               "  get KEY        print the document as JSON\n"
               "  check          verify every structure and document (exit 1 on corruption)\n"
               "  bytes          where the heap's bytes go per key: index tables, entries, documents\n"
               "  wal FILE       dump and verify a WAL segment or snapshot file offline (exit 1 if damaged)\n"
               "  quarantine DIR list and verify the records recovery set aside (<data_dir>/quarantine)\n"
               "The only instance on the machine is used when neither --pid nor --name is given.\n");
}

/* Print bytes as a JSON string (the shared escaper, l3kv/json.h). */
static void put_json_str(const void *p, size_t n)
{
    putchar('"');
    l3_json_fput(stdout, p, n);
    putchar('"');
}

/* Human form: printable ASCII as is, anything else \xHH. */
static void put_human(const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c < 0x20 || c >= 0x7f || c == '\\')
            printf("\\x%02x", c);
        else
            putchar((int)c);
    }
}

static const char *role_name(uint32_t r)
{
    static const char *names[] = {"none", "supervisor", "worker", "writer", "tool"};
    return r < L3_ARRAY_SIZE(names) ? names[r] : "?";
}

static const char *state_name(uint32_t s)
{
    return s == L3_ARENA_READY ? "ready" : s == L3_ARENA_POISONED ? "poisoned" : "formatting";
}

static bool alive(int32_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

static int cmd_info(l3_store_t *st)
{
    const l3_arena_hdr_t *h = l3_store_header(st);
    l3_store_stats_t s;
    l3_store_stats(st, &s);
    uint32_t state = __atomic_load_n(&h->ah_state, __ATOMIC_RELAXED);
    uint64_t now = l3_now_ns();
    if (json_out) {
        printf("{\"name\":");
        put_json_str(h->ah_name, strnlen(h->ah_name, sizeof(h->ah_name)));
        printf(",\"layout\":%u,\"state\":\"%s\",\"arena_bytes\":%" PRIu64 ",\"created_ns\":%" PRIu64
               ",\"owner_pid\":%d,\"owner_alive\":%s,\"max_procs\":%u,\"nstripes\":%u,\"undo_bytes\":%" PRIu64
               ",\"regions\":{\"procs\":%" PRIu64 ",\"stripes\":%" PRIu64 ",\"alloc\":%" PRIu64
               ",\"obs\":[%" PRIu64 ",%" PRIu64 "],\"wal\":[%" PRIu64 ",%" PRIu64 "],\"undo\":%" PRIu64
               ",\"heap\":[%" PRIu64 ",%" PRIu64 "]}",
               h->ah_layout, state_name(state), h->ah_arena_bytes, h->ah_created_ns, h->ah_owner_pid,
               alive(h->ah_owner_pid) ? "true" : "false", h->ah_max_procs, h->ah_nstripes, h->ah_undo_bytes,
               h->ah_off_procs, h->ah_off_stripes, h->ah_off_alloc, h->ah_off_obs, h->ah_obs_bytes,
               h->ah_off_wal, h->ah_wal_bytes, h->ah_off_undo, h->ah_off_heap, h->ah_heap_bytes);
        printf(",\"allocator\":{\"heap_bytes\":%" PRIu64 ",\"used_bytes\":%" PRIu64 ",\"free_bytes\":%" PRIu64
               ",\"used_blocks\":%" PRIu64 ",\"free_blocks\":%" PRIu64 ",\"largest_free\":%" PRIu64
               ",\"fragmentation\":%.4f}",
               s.heap_bytes, s.used_bytes, s.free_bytes, s.used_blocks, s.free_blocks, s.largest_free,
               s.fragmentation);
        printf(
            ",\"index\":{\"keys\":%" PRIu64 ",\"doc_bytes\":%" PRIu64 ",\"slots\":%" PRIu64 ",\"load\":%.4f}",
            s.keys, s.doc_bytes, s.index_slots, s.index_slots ? (double)s.keys / (double)s.index_slots : 0.0);
        printf(",\"counters\":{\"last_lsn\":%" PRIu64 ",\"repairs\":%" PRIu64 ",\"rollbacks\":%" PRIu64
               ",\"rollforwards\":%" PRIu64 ",\"grows\":%" PRIu64 ",\"compactions\":%" PRIu64 "}",
               s.last_lsn, s.repairs, s.rollbacks, s.rollforwards, s.grows, s.compactions);
        printf(",\"procs\":[");
        bool first = true;
        for (uint32_t i = 0; i < h->ah_max_procs; i++) {
            const l3_proc_slot_t *ps = l3_store_proc_slot_at(st, i);
            int32_t pid = __atomic_load_n(&ps->ps_pid, __ATOMIC_RELAXED);
            if (pid == 0)
                continue;
            uint64_t hb = __atomic_load_n(&ps->ps_heartbeat_ns, __ATOMIC_RELAXED);
            printf("%s{\"slot\":%u,\"pid\":%d,\"role\":\"%s\",\"alive\":%s,\"heartbeat_age_ms\":%.1f,\"ops\":"
                   "%" PRIu64 ",\"repairs\":%" PRIu64 ",\"stripe_held\":%d,\"tx_state\":%u}",
                   first ? "" : ",", i, pid, role_name(ps->ps_role), alive(pid) ? "true" : "false",
                   now > hb ? (double)(now - hb) / 1e6 : 0.0, ps->ps_ops, ps->ps_repairs,
                   (int)ps->ps_stripe_held - 1, ps->tx_state);
            first = false;
        }
        printf("]}\n");
        return 0;
    }
    time_t ct = (time_t)(h->ah_created_ns / 1000000000ull);
    char tbuf[64];
    strftime(tbuf, sizeof(tbuf), "%Y-%m-%d %H:%M:%S UTC", gmtime(&ct));
    printf("instance      %.64s (layout %u, %s)\n", h->ah_name, h->ah_layout, state_name(state));
    printf("arena         %" PRIu64 " bytes, created %s by pid %d (%s)\n", h->ah_arena_bytes, tbuf,
           h->ah_owner_pid, alive(h->ah_owner_pid) ? "running" : "gone");
    printf("regions       procs @%" PRIu64 " (%u slots), stripes @%" PRIu64 " (%u), allocator @%" PRIu64 "\n",
           h->ah_off_procs, h->ah_max_procs, h->ah_off_stripes, h->ah_nstripes, h->ah_off_alloc);
    printf("              metrics @%" PRIu64 " (%" PRIu64 " bytes), WAL ring @%" PRIu64 " (%" PRIu64
           " bytes), undo @%" PRIu64 " (%" PRIu64 " per slot)\n",
           h->ah_off_obs, h->ah_obs_bytes, h->ah_off_wal, h->ah_wal_bytes, h->ah_off_undo, h->ah_undo_bytes);
    printf("heap          @%" PRIu64 ", %" PRIu64 " bytes: %" PRIu64 " used in %" PRIu64 " blocks, %" PRIu64
           " free in %" PRIu64 " blocks\n",
           h->ah_off_heap, s.heap_bytes, s.used_bytes, s.used_blocks, s.free_bytes, s.free_blocks);
    printf("              largest free %" PRIu64 ", fragmentation %.2f%%\n", s.largest_free,
           s.fragmentation * 100);
    printf("index         %" PRIu64 " keys, %" PRIu64 " document bytes, %" PRIu64 " slots (load %.2f)\n",
           s.keys, s.doc_bytes, s.index_slots, s.index_slots ? (double)s.keys / (double)s.index_slots : 0.0);
    printf("counters      last LSN %" PRIu64 ", repairs %" PRIu64 ", rollbacks %" PRIu64
           ", rollforwards %" PRIu64 ", grows %" PRIu64 ", compactions %" PRIu64 "\n",
           s.last_lsn, s.repairs, s.rollbacks, s.rollforwards, s.grows, s.compactions);
    printf("processes     %u registered\n", s.procs);
    printf("  %-5s %-8s %-11s %-6s %12s %12s %8s %s\n", "slot", "pid", "role", "alive", "heartbeat", "ops",
           "repairs", "holding");
    for (uint32_t i = 0; i < h->ah_max_procs; i++) {
        const l3_proc_slot_t *ps = l3_store_proc_slot_at(st, i);
        int32_t pid = __atomic_load_n(&ps->ps_pid, __ATOMIC_RELAXED);
        if (pid == 0)
            continue;
        uint64_t hb = __atomic_load_n(&ps->ps_heartbeat_ns, __ATOMIC_RELAXED);
        char held[32] = "-";
        if (ps->ps_stripe_held)
            snprintf(held, sizeof(held), "stripe %u", ps->ps_stripe_held - 1);
        printf("  %-5u %-8d %-11s %-6s %10.1fms %12" PRIu64 " %8" PRIu64 " %s\n", i, pid,
               role_name(ps->ps_role), alive(pid) ? "yes" : "NO", now > hb ? (double)(now - hb) / 1e6 : 0.0,
               ps->ps_ops, ps->ps_repairs, held);
    }
    return 0;
}

typedef struct {
    uint64_t n;
} keyctx_t;

static int on_key(void *ctx, const void *key, size_t klen, uint64_t lsn)
{
    keyctx_t *k = ctx;
    if (json_out) {
        printf("%s{\"key\":", k->n ? "," : "");
        put_json_str(key, klen);
        printf(",\"lsn\":%" PRIu64 "}", lsn);
    } else {
        printf("%12" PRIu64 "  ", lsn);
        put_human(key, klen);
        putchar('\n');
    }
    k->n++;
    return 0;
}

static int cmd_keys(l3_store_t *st, const char *prefix)
{
    keyctx_t k = {0};
    uint64_t cur = 0;
    if (json_out)
        printf("{\"keys\":[");
    int rc = l3_store_keys(st, prefix, prefix ? strlen(prefix) : 0, &cur, 0, on_key, &k);
    if (json_out)
        printf("],\"count\":%" PRIu64 "}\n", k.n);
    if (rc < 0) {
        fprintf(stderr, "l3kv-inspect: keys: %s\n", l3_strerror(rc));
        return 1;
    }
    return 0;
}

static int cmd_get(l3_store_t *st, const char *key)
{
    l3_buf_t b = {0};
    int rc = l3_store_get_json(st, key, strlen(key), NULL, 0, 0, &b, NULL);
    if (rc < 0) {
        fprintf(stderr, "l3kv-inspect: get %s: %s\n", key, rc == -ENOENT ? "no such key" : l3_strerror(rc));
        free(b.ptr);
        return 1;
    }
    fwrite(b.ptr, 1, b.len, stdout);
    putchar('\n');
    free(b.ptr);
    return 0;
}

/* ---------------------------------------------------------------- bytes: the per-key costs
 * Walks every stripe's index table (read-only, no locks: a figure of a moving arena) and
 * splits the heap's used blocks into index tables, index entries and documents, each with
 * its block header and rounding. */
typedef struct {
    uint64_t keys, tables, table_slots, table_hdr, table_round;
    uint64_t entry_hdr, entry, entry_key, entry_round;
    uint64_t doc_hdr, doc_used, doc_room;
} bytes_t;

/* Size of the block whose payload is at off (0 when off is out of the arena). */
static uint64_t block_size(const uint8_t *base, uint64_t arena, uint64_t off)
{
    if (off < L3_BLOCK_HDR || off >= arena || off % 8)
        return 0;
    uint64_t h;
    memcpy(&h, base + off - L3_BLOCK_HDR, sizeof(h));
    uint64_t sz = h & ~L3_BLOCK_FLAGS;
    return sz <= arena - off + L3_BLOCK_HDR ? sz : 0;
}

/* One key's block: block header, entry, key, padding to 8, then the document and its room. */
static void bytes_entry(const uint8_t *base, uint64_t arena, uint64_t eoff, bytes_t *b)
{
    uint64_t esz = block_size(base, arena, eoff);
    if (esz < L3_BLOCK_HDR + L3_IX_ENTRY_HDR)
        return;
    const l3_ix_entry_t *e = (const l3_ix_entry_t *)(const void *)(base + eoff);
    uint64_t klen = e->ie_klen, pre = (L3_IX_ENTRY_HDR + klen + 7u) & ~(uint64_t)7u;
    if (pre + 48 > esz - L3_BLOCK_HDR || e->ie_doc != eoff + pre)
        return;
    uint64_t used = l3_doc_size(base + e->ie_doc);
    if (used > esz - L3_BLOCK_HDR - pre)
        return;
    b->keys++;
    b->entry_hdr += L3_BLOCK_HDR;
    b->entry += L3_IX_ENTRY_HDR;
    b->entry_key += klen;
    b->entry_round += pre - L3_IX_ENTRY_HDR - klen;
    b->doc_used += used;
    b->doc_room += esz - L3_BLOCK_HDR - pre - used;
}

static void bytes_walk(l3_store_t *st, bytes_t *b)
{
    const uint8_t *base = l3_store_header(st);
    const l3_arena_hdr_t *h = (const l3_arena_hdr_t *)(const void *)base;
    uint64_t arena = h->ah_arena_bytes;
    const l3_stripe_t *sps = (const l3_stripe_t *)(const void *)(base + h->ah_off_stripes);
    for (uint32_t s = 0; s < h->ah_nstripes; s++) {
        uint64_t toff = __atomic_load_n(&sps[s].sp_table, __ATOMIC_ACQUIRE);
        uint64_t cap = sps[s].sp_cap, tsz = block_size(base, arena, toff);
        if (!toff || tsz < L3_BLOCK_HDR + cap * sizeof(l3_ix_slot_t))
            continue;
        b->tables++;
        b->table_slots += cap * sizeof(l3_ix_slot_t);
        b->table_hdr += L3_BLOCK_HDR;
        b->table_round += tsz - L3_BLOCK_HDR - cap * sizeof(l3_ix_slot_t);
        const l3_ix_slot_t *t = (const l3_ix_slot_t *)(const void *)(base + toff);
        for (uint64_t i = 0; i < cap; i++) {
            uint64_t v = __atomic_load_n(&t[i].ix, __ATOMIC_ACQUIRE);
            if (v > L3_IX_TOMB)
                bytes_entry(base, arena, l3_ix_slot_entry(v), b);
        }
    }
}

static int cmd_bytes(l3_store_t *st)
{
    bytes_t b = {0};
    bytes_walk(st, &b);
    l3_store_stats_t s;
    l3_store_stats(st, &s);
    const struct {
        const char *name;
        uint64_t v;
    } rows[] = {
        {"table_slots", b.table_slots}, {"table_hdr", b.table_hdr}, {"table_round", b.table_round},
        {"entry_hdr", b.entry_hdr},     {"entry", b.entry},         {"entry_key", b.entry_key},
        {"entry_round", b.entry_round}, {"doc_hdr", b.doc_hdr},     {"doc_used", b.doc_used},
        {"doc_room", b.doc_room},
    };
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        total += rows[i].v;
    if (json_out) {
        printf("{\"keys\":%" PRIu64 ",\"tables\":%" PRIu64, b.keys, b.tables);
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
            printf(",\"%s\":%" PRIu64, rows[i].name, rows[i].v);
        printf(",\"total\":%" PRIu64 ",\"used_bytes\":%" PRIu64 "}\n", total, s.used_bytes);
        return 0;
    }
    printf("keys %" PRIu64 ", index tables %" PRIu64 ", allocator used_bytes %" PRIu64 "\n", b.keys, b.tables,
           s.used_bytes);
    printf("%-12s %14s %10s\n", "part", "bytes", "per key");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        printf("%-12s %14" PRIu64 " %10.1f\n", rows[i].name, rows[i].v,
               b.keys ? (double)rows[i].v / (double)b.keys : 0.0);
    printf("%-12s %14" PRIu64 " %10.1f\n", "total", total, b.keys ? (double)total / (double)b.keys : 0.0);
    return 0;
}

typedef struct {
    int n;
} checkctx_t;

static void on_line(void *ctx, const char *line)
{
    checkctx_t *c = ctx;
    if (json_out) {
        printf("%s", c->n ? "," : "");
        put_json_str(line, strlen(line));
    } else {
        printf("%s\n", line);
    }
    c->n++;
}

static int cmd_check(l3_store_t *st)
{
    checkctx_t c = {0};
    if (json_out)
        printf("{\"report\":[");
    int rc = l3_store_check(st, 5, on_line, &c);
    if (json_out)
        printf("],\"problems\":%d,\"ok\":%s}\n", rc < 0 ? -1 : rc, rc == 0 ? "true" : "false");
    if (rc < 0) {
        fprintf(stderr, "l3kv-inspect: check: %s\n", l3_strerror(rc));
        return 1;
    }
    return rc == 0 ? 0 : 1;
}

/*
 * Command line: global options (--pid PID, --name NAME, --json, --help, --version) may stand
 * anywhere, before or after the command and its arguments; "--" ends them, so a key that
 * looks like an option can still be given (get -- --json). Before the command an unknown
 * option is a usage error; after it, an argument starting with '-' that is no global option
 * is an argument of the command (a key such as "-1").
 */
#define MAX_POS 4

int main(int argc, char **argv)
{
    const char *name = NULL;
    long pid = 0;
    const char *pos[MAX_POS];
    int npos = 0;
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool is_opt = !opts_done && a[0] == '-' && a[1] != '\0';
        if (is_opt && strcmp(a, "--") == 0) {
            opts_done = true;
        } else if (is_opt && strcmp(a, "--json") == 0) {
            json_out = true;
        } else if (is_opt && (strcmp(a, "--pid") == 0 || strcmp(a, "--name") == 0)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "l3kv-inspect: %s needs a value\n", a);
                usage(stderr);
                return 2;
            }
            if (a[2] == 'p') {
                char *end;
                errno = 0;
                pid = strtol(argv[++i], &end, 10);
                if (errno != 0 || end == argv[i] || *end || pid <= 0) {
                    fprintf(stderr, "l3kv-inspect: --pid needs a positive process id, not '%s'\n", argv[i]);
                    usage(stderr);
                    return 2;
                }
            } else {
                name = argv[++i];
            }
        } else if (is_opt && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            usage(stdout);
            return 0;
        } else if (is_opt && strcmp(a, "--version") == 0) {
            printf("l3kv-inspect %s (arena layout %u)\n", L3KV_VERSION, L3_ARENA_LAYOUT);
            return 0;
        } else if (is_opt && npos == 0) {
            fprintf(stderr, "l3kv-inspect: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            if (npos == MAX_POS) {
                usage(stderr);
                return 2;
            }
            pos[npos++] = a;
        }
    }
    if (npos == 0 || (name && pid)) {
        usage(stderr);
        return 2;
    }
    const char *cmd = pos[0];
    int nargs = npos - 1;
    const char *arg1 = nargs > 0 ? pos[1] : NULL;
    if (strcmp(cmd, "wal") == 0) {
        /* offline: dump and verify a WAL segment or a snapshot file; no arena needed */
        if (nargs != 1 || name || pid) {
            usage(stderr);
            return 2;
        }
        int wrc = l3_wal_dump(arg1, stdout, json_out ? 1 : 0);
        fflush(stdout);
        if (wrc < 0 && wrc != L3_ECORRUPT && wrc != -EBADMSG)
            fprintf(stderr, "l3kv-inspect: wal: %s: %s\n", arg1, l3_strerror(wrc));
        return wrc == 0 ? 0 : 1;
    }
    if (strcmp(cmd, "quarantine") == 0) {
        /* offline: list and verify the records recovery set aside (<data_dir>/quarantine) */
        if (nargs != 1 || name || pid) {
            usage(stderr);
            return 2;
        }
        int qrc = l3_wal_quarantine_dump(arg1, stdout, json_out ? 1 : 0);
        fflush(stdout);
        if (qrc < 0 && qrc != L3_ECORRUPT)
            fprintf(stderr, "l3kv-inspect: quarantine: %s: %s\n", arg1, l3_strerror(qrc));
        return qrc == 0 ? 0 : 1;
    }
    bool ok = (strcmp(cmd, "info") == 0 && nargs == 0) || (strcmp(cmd, "keys") == 0 && nargs <= 1) ||
              (strcmp(cmd, "get") == 0 && nargs == 1) || (strcmp(cmd, "check") == 0 && nargs == 0) ||
              (strcmp(cmd, "bytes") == 0 && nargs == 0);
    if (!ok) {
        usage(stderr);
        return 2;
    }
    l3_store_t *st;
    int rc = l3_store_attach(name, (pid_t)pid, L3_STORE_ATTACH_READONLY, &st);
    if (rc < 0) {
        const char *why = rc == -ENOENT   ? "no such instance"
                          : rc == -EMLINK ? "several instances are running: choose one with --pid or --name"
                          : rc == -EACCES ? "permission denied (run as the service user)"
                          : rc == L3_ECORRUPT ? "arena header is corrupt"
                                              : l3_strerror(rc);
        fprintf(stderr, "l3kv-inspect: attach: %s\n", why);
        return 1;
    }
    if (strcmp(cmd, "info") == 0)
        rc = cmd_info(st);
    else if (strcmp(cmd, "keys") == 0)
        rc = cmd_keys(st, arg1);
    else if (strcmp(cmd, "get") == 0)
        rc = cmd_get(st, arg1);
    else if (strcmp(cmd, "bytes") == 0)
        rc = cmd_bytes(st);
    else
        rc = cmd_check(st);
    l3_store_close(st);
    fflush(stdout);
    return rc;
}
