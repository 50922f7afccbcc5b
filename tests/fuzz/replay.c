/* SPDX-License-Identifier: MIT */
/*
 * replay.c - main() for the corpus-replay build of a libFuzzer target: feeds every file
 * named on the command line (directories: every regular file inside, in name order) to
 * LLVMFuzzerTestOneInput once. A finding aborts inside the target; exit 0 otherwise, 77 if
 * there was nothing to replay. Lets every build (gcc included, ASan in CI) run the corpora
 * as tests in the 'fuzz' suite without libFuzzer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, n = 0, r;
    uint8_t *p = malloc(cap);
    while (p && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            uint8_t *q = realloc(p, cap *= 2);
            if (!q) {
                free(p);
                p = NULL;
            }
            p = q;
        }
    }
    fclose(f);
    if (!p)
        return -1;
    /* hand over an exact-size copy so ASan catches reads past the input */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) {
        free(p);
        return -1;
    }
    memcpy(exact, p, n);
    free(p);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    unsigned long files = 0, errors = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            errors++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            errors += replay_file(argv[i]) != 0;
            files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            errors++;
            continue;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                char **nn = realloc(names, cap * sizeof(*names));
                if (!nn)
                    return 99;
                names = nn;
            }
            size_t l = strlen(argv[i]) + strlen(de->d_name) + 2;
            names[n] = malloc(l);
            if (!names[n])
                return 99;
            snprintf(names[n], l, "%s/%s", argv[i], de->d_name);
            n++;
        }
        closedir(d);
        if (n)
            qsort(names, n, sizeof(*names), cmp);
        for (size_t k = 0; k < n; k++) {
            if (stat(names[k], &st) == 0 && S_ISREG(st.st_mode)) {
                errors += replay_file(names[k]) != 0;
                files++;
            }
            free(names[k]);
        }
        free(names);
    }
    fprintf(stderr, "replayed %lu inputs, %lu unreadable\n", files, errors);
    if (errors)
        return 99;
    return files ? 0 : 77;
}
