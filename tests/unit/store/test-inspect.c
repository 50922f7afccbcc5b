/* SPDX-License-Identifier: MIT */
/*
 * test-inspect.c - runs the l3kv-inspect binary (argv[1]) against a live arena: every
 * command in human and --json form, usage errors (exit 2), a missing instance (exit 1),
 * the per-key byte figure (bytes) against values computed here from the layout,
 * a check while another process writes (must stay 0: the inspector tolerates change and
 * takes no locks), and deliberate corruption of a document and of a free list (exit 1
 * with a report naming it).
 */
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdbool.h>

#include "l3kv/layout.h"
#include "sth.h"

static const char *inspect;

/* Run the inspector with up to 6 arguments; capture stdout into out (NUL terminated). */
static int run(char *out, size_t cap, const char *a1, const char *a2, const char *a3, const char *a4,
               const char *a5, const char *a6)
{
    int fds[2];
    if (pipe(fds) < 0)
        exit(T_HARNESS_ERROR);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0 && getenv("L3_TEST_VERBOSE") == NULL)
            dup2(devnull, 2);
        execl(inspect, inspect, a1, a2, a3, a4, a5, a6, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fds[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    char sink[4096];
    while (read(fds[0], sink, sizeof(sink)) > 0)
        ;
    out[n] = 0;
    close(fds[0]);
    return sth_wait(pid);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Find the arena offset of key's entry via the public layout (writable: we created it). */
static l3_ix_entry_t *find_entry(l3_store_t *st, const char *key)
{
    uint8_t *base = (uint8_t *)(uintptr_t)l3_store_header(st);
    const l3_arena_hdr_t *h = (const l3_arena_hdr_t *)base;
    l3_stripe_t *sps = (l3_stripe_t *)(base + h->ah_off_stripes);
    for (uint32_t s = 0; s < h->ah_nstripes; s++) {
        if (!sps[s].sp_table)
            continue;
        l3_ix_slot_t *t = (l3_ix_slot_t *)(base + sps[s].sp_table);
        for (uint32_t i = 0; i < sps[s].sp_cap; i++) {
            if (t[i].ix <= L3_IX_TOMB)
                continue;
            l3_ix_entry_t *e = (l3_ix_entry_t *)(base + l3_ix_slot_entry(t[i].ix));
            if (e->ie_klen == strlen(key) && memcmp(e->ie_key, key, e->ie_klen) == 0)
                return e;
        }
    }
    return NULL;
}

/* Index table bytes of every stripe, from the public layout. */
static uint64_t table_slot_bytes(l3_store_t *st)
{
    const uint8_t *base = l3_store_header(st);
    const l3_arena_hdr_t *h = (const l3_arena_hdr_t *)base;
    const l3_stripe_t *sps = (const l3_stripe_t *)(base + h->ah_off_stripes);
    uint64_t n = 0;
    for (uint32_t s = 0; s < h->ah_nstripes; s++)
        if (sps[s].sp_table)
            n += (uint64_t)sps[s].sp_cap * sizeof(l3_ix_slot_t);
    return n;
}

/* `bytes --json` for the four keys of main(): each part as the layout gives it, and the
 * parts add up to the allocator's used bytes (no other blocks in this arena). */
static void check_bytes(l3_store_t *st, const char *name, char *out, size_t cap)
{
    CHECK_EQ_INT(run(out, cap, "--name", name, "--json", "bytes", NULL, NULL), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    CHECK(j != NULL);
    if (!j)
        return;
    l3_store_stats_t s;
    CHECK_EQ_INT(l3_store_stats(st, &s), 0);
#define JV(k) ((uint64_t)json_integer_value(json_object_get(j, k)))
    CHECK_EQ_INT(JV("keys"), 4);
    CHECK_EQ_INT(JV("entry"), 4 * L3_IX_ENTRY_HDR); /* l3_ix_entry_t */
    CHECK_EQ_INT(JV("entry_key"), 6 + 6 + 3 + 8);
    CHECK_EQ_INT(JV("entry_hdr"), 4 * 16); /* a block header each: entry, key and document share it */
    /* the document follows the key at a multiple of 8: 20 + klen padded, so 6 + 6 + 1 + 4 */
    CHECK_EQ_INT(JV("entry_round"), 6 + 6 + 1 + 4);
    CHECK_EQ_INT(JV("doc_hdr"), 0);
    CHECK_EQ_INT(JV("doc_used"), s.doc_bytes);
    CHECK_EQ_INT(JV("table_slots"), table_slot_bytes(st));
    uint64_t sum = JV("table_slots") + JV("table_hdr") + JV("table_round") + JV("entry_hdr") + JV("entry") +
                   JV("entry_key") + JV("entry_round") + JV("doc_hdr") + JV("doc_used") + JV("doc_room");
    CHECK_EQ_INT(JV("total"), sum);
    CHECK_EQ_INT(sum, s.used_bytes);
#undef JV
    json_decref(j);
    CHECK_EQ_INT(run(out, cap, "--name", name, "bytes", NULL, NULL, NULL), 0);
    CHECK(strstr(out, "doc_used") != NULL && strstr(out, "per key") != NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return T_HARNESS_ERROR;
    inspect = argv[1];
    static char out[1 << 20];
    l3_store_t *st = sth_create(64 << 20, 16, 0);
    const char *name = l3_store_name(st);
    CHECK_EQ_INT(sth_put(st, "user:1", "{\"name\":\"ann\",\"age\":31}"), 0);
    CHECK_EQ_INT(sth_put(st, "user:2", "{\"name\":\"bob\",\"tags\":[1,2]}"), 0);
    CHECK_EQ_INT(sth_put(st, "cfg", "{\"x\":true}"), 0);
    CHECK_EQ_INT(l3_store_put_json(st, "bin\x01\"key", 8, "[null]", 6, 0, NULL, NULL), 0);

    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "info", NULL, NULL, NULL), 0);
    CHECK(strstr(out, "instance") && strstr(out, name) && strstr(out, "4 keys"));
    CHECK(strstr(out, "supervisor") != NULL);

    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "--json", "info", NULL, NULL), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "index"), "keys")), 4);
        CHECK_EQ_STR(json_string_value(json_object_get(j, "name")), name);
        CHECK_EQ_INT(json_array_size(json_object_get(j, "procs")), 1);
        CHECK_EQ_INT(json_integer_value(json_object_get(j, "layout")), L3_ARENA_LAYOUT);
        json_decref(j);
    }

    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "keys", NULL, NULL, NULL), 0);
    CHECK_EQ_INT(count_lines(out), 4);
    CHECK(strstr(out, "bin\\x01\"key") != NULL);
    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "keys", "user:", NULL, NULL), 0);
    CHECK_EQ_INT(count_lines(out), 2);
    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "--json", "keys", NULL, NULL), 0);
    j = json_loads(out, 0, &je);
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_INT(json_integer_value(json_object_get(j, "count")), 4);
        json_decref(j);
    }

    check_bytes(st, name, out, sizeof(out));

    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "get", "user:2", NULL, NULL), 0);
    CHECK_EQ_STR(out, "{\"name\":\"bob\",\"tags\":[1,2]}\n");
    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "get", "nobody", NULL, NULL), 1);

    char pidbuf[32];
    snprintf(pidbuf, sizeof(pidbuf), "%ld", (long)getpid());
    CHECK_EQ_INT(run(out, sizeof(out), "--pid", pidbuf, "check", NULL, NULL, NULL), 0);
    CHECK(strstr(out, "0 problems") != NULL);
    CHECK_EQ_INT(run(out, sizeof(out), "--pid", pidbuf, "--json", "check", NULL, NULL), 0);
    j = json_loads(out, 0, &je);
    CHECK(j && json_is_true(json_object_get(j, "ok")));
    json_decref(j);

    /* usage errors and a missing instance */
    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, NULL, NULL, NULL, NULL), 2);
    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "frobnicate", NULL, NULL, NULL), 2);
    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "get", NULL, NULL, NULL), 2);
    CHECK_EQ_INT(run(out, sizeof(out), "--pid", "1", "--name", name, "info", NULL), 2);
    CHECK_EQ_INT(run(out, sizeof(out), "--pid", "abc", "info", NULL, NULL, NULL), 2);
    CHECK_EQ_INT(run(out, sizeof(out), "--name", "no-such-instance", "info", NULL, NULL, NULL), 1);

    /* check while another process writes: must not report anything. The writer runs until
     * the parent closes its pipe (a 60 s deadline guards a lost parent), so the checks below
     * overlap its writes however the two processes are scheduled. */
    int stop[2];
    CHECK_EQ_INT(pipe(stop), 0);
    pid_t w = fork();
    if (w == 0) {
        close(stop[1]);
        if (l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL) != 0)
            _exit(3);
        uint64_t end = l3_now_ns() + 60000000000ull;
        char k[32], v[256];
        struct pollfd pf = {.fd = stop[0], .events = POLLIN};
        for (uint64_t i = 0; l3_now_ns() < end; i++) {
            if (i % 64 == 0 && poll(&pf, 1, 0) != 0)
                break; /* the parent closed its end */
            snprintf(k, sizeof(k), "w%" PRIu64, i % 200);
            int n = snprintf(v, sizeof(v), "{\"i\":%" PRIu64 ",\"pad\":\"%0*d\"}", i, (int)(i % 150), 0);
            if (l3_store_put_json(st, k, strlen(k), v, (size_t)n, 0, NULL, NULL) < 0)
                _exit(1);
            if (i % 3 == 0 && l3_store_delete(st, k, strlen(k), 0, NULL) < 0)
                _exit(1);
        }
        _exit(0);
    }
    close(stop[0]);
    /* the writer is running before the first check (its changes move the store's LSN;
     * generous deadline 10 s); checks go on until two of them ran while it wrote (at most
     * 200 checks) */
    uint64_t lsn0 = l3_store_last_lsn(st);
    for (int i = 0; i < 10000 && l3_store_last_lsn(st) == lsn0; i++)
        usleep(1000);
    CHECK(l3_store_last_lsn(st) > lsn0);
    int overlapped = 0;
    for (int i = 0; i < 200 && (i < 4 || overlapped < 2); i++) {
        uint64_t before = l3_store_last_lsn(st);
        int rc = run(out, sizeof(out), "--name", name, "check", NULL, NULL, NULL);
        overlapped += l3_store_last_lsn(st) > before;
        if (rc != 0)
            fprintf(stderr, "check under load: %s\n", out);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "get", "user:1", NULL, NULL), 0);
        CHECK_EQ_STR(out, "{\"name\":\"ann\",\"age\":31}\n");
    }
    CHECK(overlapped >= 2); /* checks ran while the writer changed the store */
    close(stop[1]);
    CHECK_EQ_INT(sth_wait(w), 0);
    CHECK_EQ_INT(l3_store_proc_reap(st, w), 1);

    /* corrupt a document: check names it, get refuses it */
    l3_ix_entry_t *e = find_entry(st, "cfg");
    CHECK(e != NULL);
    if (e) {
        uint8_t *base = (uint8_t *)(uintptr_t)l3_store_header(st);
        uint8_t *doc = base + e->ie_doc;
        uint8_t saved = doc[0];
        doc[0] ^= 0x5a; /* document magic */
        CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "check", NULL, NULL, NULL), 1);
        CHECK(strstr(out, "key 'cfg'") && strstr(out, "verify failed"));
        CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "get", "cfg", NULL, NULL), 1);
        doc[0] = saved;
        CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "check", NULL, NULL, NULL), 0);
        /* a free block's back link */
        const l3_arena_hdr_t *h = (const l3_arena_hdr_t *)base;
        l3_alloc_hdr_t *al = (l3_alloc_hdr_t *)(base + h->ah_off_alloc);
        uint64_t fb = 0;
        for (uint32_t b = 0; b < L3_ALLOC_NBINS && !fb; b++)
            fb = al->al_bins[b];
        CHECK(fb != 0);
        uint64_t *prev = (uint64_t *)(base + fb + 24);
        uint64_t sv = *prev;
        *prev = 12345 * 16;
        CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "--json", "check", NULL, NULL), 1);
        CHECK(strstr(out, "back link") && strstr(out, "\"ok\":false"));
        *prev = sv;
        CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "check", NULL, NULL, NULL), 0);
    }
    sth_destroy(st);
    CHECK_EQ_INT(run(out, sizeof(out), "--name", name, "info", NULL, NULL, NULL), 1);
    return t_done();
}
