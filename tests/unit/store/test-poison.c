/* SPDX-License-Identifier: MIT */
/*
 * test-poison.c - a lock repair that cannot complete poisons the arena, and the poisoned
 * arena refuses what it cannot serve correctly.
 *
 * Fault: child A dies inside a mutation of key "victim" (its WAL hook SIGKILLs it after
 * the change and before the commit), holding that key's stripe lock; child B then takes
 * the allocator lock and keeps it. The next locker of the stripe must repair A's
 * transaction, which needs the allocator lock: it cannot, so the arena is poisoned. Then:
 *  - the operation that found the dead owner fails with L3_EPOISONED (it does not go on
 *    reading the half-changed document), and so does every later access to that stripe
 *    while the repair still cannot complete (the supervisor's reap included); once B lets
 *    the allocator lock go, the next locker completes the repair and reads again;
 *  - every write fails with L3_EPOISONED, on any key;
 *  - reads of keys in other stripes still answer their committed documents;
 *  - l3_store_poisoned() says so, and stays so.
 */
#include "sth.h"
#include "store-int.h"

static int kill_hook(void *ctx, const l3_wal_rec_t *rec)
{
    (void)ctx;
    (void)rec;
    raise(SIGKILL);
    return 0;
}

static uint32_t stripe_of(l3_store_t *st, const char *key)
{
    return (uint32_t)l3_store__hash(st, key, strlen(key)) & st->smask;
}

int main(void)
{
    l3_store_t *st = sth_create(32 << 20, 4, 0);
    st->timeout_ms = 100; /* the repair's three tries on the allocator lock give up fast */
    CHECK_EQ_INT(sth_put(st, "victim", "{\"n\":1}"), 0);
    /* a key in another stripe than "victim" */
    char other[32] = "";
    for (int i = 0; i < 1000 && other[0] == '\0'; i++) {
        char k[32];
        snprintf(k, sizeof(k), "other-%d", i);
        if (stripe_of(st, k) != stripe_of(st, "victim"))
            snprintf(other, sizeof(other), "%s", k);
    }
    CHECK(other[0] != '\0');
    CHECK_EQ_INT(sth_put(st, other, "{\"o\":2}"), 0);
    CHECK(!l3_store_poisoned(st));

    /* B registers first (a later registration would sweep and repair A's slot), then,
     * once A is dead, takes the allocator lock and holds it until told to go */
    int up[2], down[2], status;
    CHECK(pipe(up) == 0 && pipe(down) == 0);
    pid_t b = fork();
    if (b == 0) {
        char c = 0;
        if (l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL) < 0 || write(up[1], "r", 1) != 1 ||
            read(down[0], &c, 1) != 1 || l3_store__alloc_lock(st) < 0)
            _exit(3);
        if (write(up[1], "l", 1) != 1 || read(down[0], &c, 1) != 1)
            _exit(5);
        l3_store__alloc_unlock(st);
        _exit(0);
    }
    char c;
    CHECK(read(up[0], &c, 1) == 1 && c == 'r');

    /* A: dies inside a mutation of "victim", holding its stripe lock */
    pid_t a = fork();
    if (a == 0) {
        if (l3_store_proc_register(st, L3_STORE_ROLE_WORKER, NULL) < 0)
            _exit(3);
        l3_store_set_wal_hook(st, kill_hook, NULL);
        (void)sth_put(st, "victim", "{\"n\":2,\"padding\":\"a larger document than before\"}");
        _exit(4); /* the hook must have killed us */
    }
    CHECK(waitpid(a, &status, 0) == a && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK(write(down[1], "g", 1) == 1);
    CHECK(read(up[0], &c, 1) == 1 && c == 'l');

    /* the repair cannot complete: this read must not go on with the unrepaired stripe */
    char *j = sth_json(st, "victim");
    CHECK(j == NULL);
    free(j);
    CHECK(l3_store_poisoned(st));
    l3_buf_t buf = {0};
    CHECK_EQ_INT(l3_store_get_json(st, "victim", 6, NULL, 0, 0, &buf, NULL), L3_EPOISONED);
    free(buf.ptr);
    memset(&buf, 0, sizeof(buf));
    /* writes are refused everywhere */
    CHECK_EQ_INT(sth_put(st, other, "{\"o\":3}"), L3_EPOISONED);
    CHECK_EQ_INT(sth_put(st, "brand-new", "{}"), L3_EPOISONED);
    CHECK_EQ_INT(l3_store_delete(st, other, strlen(other), 0, NULL), L3_EPOISONED);
    /* reads elsewhere still answer the committed document */
    j = sth_json(st, other);
    CHECK(j != NULL && strcmp(j, "{\"o\":2}") == 0);
    free(j);

    /* while B holds on, the supervisor's reap of A cannot repair either, and says so */
    CHECK_EQ_INT(l3_store_proc_reap(st, a), L3_EPOISONED);
    CHECK(strcmp(l3_strerror(L3_EPOISONED), "unknown error") != 0);

    /* B lets go of the allocator lock: the next locker of the stripe completes the repair
     * (A's mutation rolled back) and reads it again; the arena stays poisoned, so writes
     * stay refused until it is rebuilt */
    CHECK(write(down[1], "x", 1) == 1);
    CHECK(waitpid(b, &status, 0) == b && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    j = sth_json(st, "victim");
    CHECK(j != NULL && strcmp(j, "{\"n\":1}") == 0);
    free(j);
    CHECK(l3_store_poisoned(st));
    CHECK_EQ_INT(sth_put(st, "victim", "{\"n\":9}"), L3_EPOISONED);
    CHECK(l3_store_proc_reap(st, a) >= 0);
    CHECK(l3_store_proc_reap(st, b) >= 0);

    sth_destroy(st);
    return t_done();
}
