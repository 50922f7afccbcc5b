/* SPDX-License-Identifier: MIT */
#include "t.h"

#include <ftw.h>
#include <unistd.h>

int t_failures;
unsigned long t_checks;

uint64_t t_seed(void)
{
    const char *s = getenv("L3_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x5eed1234abcdULL;
    if (seed == 0)
        seed = 1;
    fprintf(stderr, "seed: L3_TEST_SEED=%" PRIu64 "\n", seed);
    return seed;
}

uint64_t t_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

char *t_tmpdir(void)
{
    char tmpl[] = "/tmp/l3kv-test-XXXXXX";
    if (mkdtemp(tmpl) == NULL) {
        perror("mkdtemp");
        exit(T_HARNESS_ERROR);
    }
    return strdup(tmpl);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void t_rmtree(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int t_done(void)
{
    fprintf(stderr, "%lu checks, %d failed\n", t_checks, t_failures);
    if (t_checks == 0) {
        /* a test that checked nothing (e.g. a name filter that matched no case) proves nothing */
        fprintf(stderr, "no check ran: failing\n");
        return 1;
    }
    return t_failures ? 1 : 0;
}
