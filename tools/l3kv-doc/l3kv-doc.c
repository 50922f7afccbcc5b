/* SPDX-License-Identifier: MIT */
/*
 * l3kv-doc.c - the document format from the command line (like jq, for our binary format).
 *
 * Owns the `l3kv-doc` program: encode (JSON -> document), decode (document -> JSON, verified
 * first), check (strict JSON validation with a byte offset), get/set by path, merge/patch
 * (RFC 7396/6902), stats. Input comes on stdin, output goes to stdout, diagnostics to stderr.
 * A standalone process; single threaded; it links only the base and doc libraries.
 *
 * Invariants:
 *   T1. Binary input is untrusted: nothing reads it before l3_doc_verify() accepted it.
 *   T2. Exit status: 0 success, 1 data error (invalid JSON or document, path not found, failed
 *       test), 2 usage error (unknown command or option, malformed path or argument).
 *   T3. Every JSON output ends with one newline; binary output is exactly l3_doc_size() bytes.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "l3kv-config.h"
#include "l3kv/doc.h"
#include "l3kv/error.h"

#define EXIT_DATA 1
#define EXIT_USAGE 2

static const char *prog = "l3kv-doc";

static struct {
    bool binary; /* stdin holds a binary document, not JSON text */
    bool raw;    /* get: print strings without quotes */
    bool packed; /* encode, stats: the packed form (what the store keeps of a small document) */
    bool json;   /* stats: one JSON object */
    unsigned max_depth;
} opt;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [OPTIONS] COMMAND [ARGS]\n"
            "\n"
            "Commands (input on stdin, output on stdout):\n"
            "  encode             JSON text -> binary document\n"
            "  decode             binary document -> JSON text (the document is verified first)\n"
            "  check              validate JSON text: exit 0, or 1 with \"error at byte N: ...\" on stderr\n"
            "  get PATH           print the value at PATH as JSON\n"
            "  set PATH VALUE     set PATH to the JSON text VALUE and print the whole document as JSON\n"
            "  merge PATCH        apply a JSON Merge Patch (RFC 7396) and print the document\n"
            "  patch PATCH        apply a JSON Patch (RFC 6902) and print the document\n"
            "  stats              size, used and garbage bytes, node counts, depth and where the bytes go\n"
            "\n"
            "PATH is a JSON Pointer (\"/a/b/0\", RFC 6901) or a dotted path (\"a.b.0\"); \"\" is the root.\n"
            "\n"
            "Options:\n"
            "  -b, --binary       stdin is a binary document (get, set, merge, patch, stats)\n"
            "  -r, --raw          get: print a string value without quotes or escapes\n"
            "  -p, --packed       encode, stats: the packed form the store keeps of a small document\n"
            "                     (the full form when it does not pack: over 4 KiB, an object of more\n"
            "                     than 64 members or an array of more than 256 elements)\n"
            "  -j, --json         stats: print one JSON object\n"
            "      --max-depth N  nesting limit for JSON input (default %u, at most %u)\n"
            "  -h, --help         this text\n"
            "  -V, --version      print the version\n"
            "\n"
            "Exit status: 0 success, 1 invalid data (JSON, document, missing path, failed test),\n"
            "2 usage error (unknown command or option, malformed PATH or VALUE).\n",
            prog, L3_DOC_DEFAULT_MAX_DEPTH, L3_DOC_HARD_MAX_DEPTH);
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    return EXIT_USAGE;
}

/* Read all of stdin into a malloc'd buffer (malloc alignment suffices for documents). */
static int read_stdin(char **ret_buf, size_t *ret_len)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (len == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            free(buf);
            return e;
        }
        len += (size_t)n;
    }
    *ret_buf = buf;
    *ret_len = len;
    return 0;
}

static int write_all(const void *p, size_t len)
{
    if (len && fwrite(p, 1, len, stdout) != len)
        return -EIO;
    return 0;
}

static int finish_output(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: cannot write output: %s\n", prog, strerror(errno));
        return EXIT_DATA;
    }
    return 0;
}

static void report_parse_error(const l3_doc_error_t *e, int rc)
{
    fprintf(stderr, "error at byte %zu: %s\n", e->offset, e->msg ? e->msg : l3_strerror(rc));
}

/*
 * Load stdin as a heap document: JSON text, or with --binary a document checked by
 * l3_doc_verify() (T1; one of the previous format version is checked by its own rules and
 * rebuilt, l3_doc_verify_upgrade). 0 or an exit status.
 */
static int load_input(l3_doc_t *d)
{
    char *in;
    size_t len;
    int rc = read_stdin(&in, &len);
    if (rc < 0) {
        fprintf(stderr, "%s: cannot read stdin: %s\n", prog, l3_strerror(rc));
        return EXIT_DATA;
    }
    memset(d, 0, sizeof(*d));
    if (opt.binary) {
        l3_doc_error_t e = {0, NULL};
        uint8_t *upgraded = NULL; /* a document of the previous format version, rebuilt */
        if (l3_doc_verify_upgrade((const uint8_t *)in, len, &upgraded, &e) < 0) {
            fprintf(stderr, "%s: not a valid document: %s at byte %zu\n", prog, e.msg ? e.msg : "corrupt",
                    e.offset);
            free(in);
            return EXIT_DATA;
        }
        /* verify() accepts a buffer larger than the document (spare capacity); a file must
         * hold exactly one document. */
        if (l3_doc_size((const uint8_t *)in) != len) {
            fprintf(stderr, "%s: not a valid document: %zu bytes after its end at byte %zu\n", prog,
                    len - l3_doc_size((const uint8_t *)in), l3_doc_size((const uint8_t *)in));
            free(upgraded);
            free(in);
            return EXIT_DATA;
        }
        if (upgraded) {
            free(in);
            l3_doc_heap_adopt(d, upgraded, l3_doc_size(upgraded));
            return 0;
        }
        l3_doc_heap_adopt(d, (uint8_t *)in, len);
        return 0;
    }
    l3_doc_parse_opts_t po = {.max_depth = opt.max_depth};
    l3_doc_error_t e = {0, NULL};
    uint8_t *buf;
    size_t blen;
    rc = l3_doc_from_json(in, len, &po, &buf, &blen, &e);
    free(in);
    if (rc < 0) {
        report_parse_error(&e, rc);
        return EXIT_DATA;
    }
    l3_doc_heap_adopt(d, buf, blen);
    return 0;
}

/* Print the value at slot as JSON followed by a newline. */
static int print_json(const uint8_t *buf, uint32_t slot)
{
    l3_buf_t out = {0};
    int rc = l3_doc_to_json(buf, slot, &out);
    if (rc == 0)
        rc = write_all(out.ptr, out.len);
    if (rc == 0)
        rc = write_all("\n", 1);
    free(out.ptr);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", prog, l3_strerror(rc));
        return EXIT_DATA;
    }
    return finish_output();
}

/* Exit status and message for a failed path operation. */
static int path_error(const char *cmd, const char *path, int rc)
{
    const char *why;
    switch (rc) {
    case L3_ENOTFOUND:
        why = "no such value";
        break;
    case L3_EPATH:
        fprintf(stderr, "%s: %s: malformed path '%s'\n", prog, cmd, path);
        return EXIT_USAGE;
    case L3_ETYPE:
        why = "a value on the way is not an object or array (or has the wrong type)";
        break;
    case L3_ERANGE:
        why = "array index out of range";
        break;
    default:
        why = l3_strerror(rc);
        break;
    }
    fprintf(stderr, "%s: %s: '%s': %s\n", prog, cmd, path, why);
    return EXIT_DATA;
}

/* --packed: replace d's document by its packed form when it packs. 0 or an exit status. */
static int maybe_pack(l3_doc_t *d)
{
    if (!opt.packed || l3_doc_is_packed(d->buf))
        return 0;
    uint8_t *p = aligned_alloc(8, L3_DOC_PACK_MAX_BYTES);
    size_t len;
    if (p == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_DATA;
    }
    if (l3_doc_pack(d->buf, p, L3_DOC_PACK_MAX_BYTES, &len) < 0) {
        free(p); /* it does not pack: the full form stays */
        return 0;
    }
    l3_doc_heap_free(d);
    l3_doc_heap_adopt(d, p, len);
    return 0;
}

/* A command that changes the document: a packed input becomes its full form. */
static int load_mutable(l3_doc_t *d)
{
    int st = load_input(d);
    if (st || !l3_doc_is_packed(d->buf))
        return st;
    if (l3_doc_heap_adopt_any(d, d->buf, l3_doc_size(d->buf)) < 0) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_DATA;
    }
    return 0;
}

/* ---------------------------------------------------------------- commands */

static int cmd_encode(void)
{
    l3_doc_t d;
    int st = load_input(&d);
    if (st == 0 && (st = maybe_pack(&d)) != 0)
        l3_doc_heap_free(&d);
    if (st)
        return st;
    st = write_all(d.buf, l3_doc_size(d.buf)) < 0 ? EXIT_DATA : finish_output();
    l3_doc_heap_free(&d);
    return st;
}

static int cmd_decode(void)
{
    opt.binary = true;
    l3_doc_t d;
    int st = load_input(&d);
    if (st)
        return st;
    st = print_json(d.buf, L3_DOC_ROOT);
    l3_doc_heap_free(&d);
    return st;
}

static int cmd_check(void)
{
    char *in;
    size_t len;
    int rc = read_stdin(&in, &len);
    if (rc < 0) {
        fprintf(stderr, "%s: cannot read stdin: %s\n", prog, l3_strerror(rc));
        return EXIT_DATA;
    }
    l3_doc_parse_opts_t po = {.max_depth = opt.max_depth};
    l3_doc_error_t e = {0, NULL};
    rc = l3_doc_check_json(in, len, &po, &e);
    free(in);
    if (rc < 0) {
        report_parse_error(&e, rc);
        return EXIT_DATA;
    }
    return 0;
}

static int cmd_get(const char *path)
{
    l3_doc_t d;
    int st = load_input(&d);
    if (st)
        return st;
    uint32_t slot;
    int rc = l3_doc_lookup(d.buf, path, strlen(path), L3_DOC_PATH_AUTO, &slot);
    if (rc < 0) {
        st = path_error("get", path, rc);
    } else {
        l3_doc_val_t v;
        l3_doc_val(d.buf, slot, &v);
        if (opt.raw && v.type == L3_DOC_STRING) {
            st = write_all(v.str.ptr, v.str.len) < 0 || write_all("\n", 1) < 0 ? EXIT_DATA : finish_output();
        } else {
            st = print_json(d.buf, slot);
        }
    }
    l3_doc_heap_free(&d);
    return st;
}

static int cmd_set(const char *path, const char *value)
{
    l3_doc_t d;
    int st = load_mutable(&d);
    if (st)
        return st;
    l3_doc_error_t e = {0, NULL};
    int rc = L3_DOC_HEAP_DO(&d, l3_doc_set_json(&d, path, strlen(path), 0, value, strlen(value), &e));
    if (rc == L3_ESYNTAX || rc == L3_EDEPTH) {
        fprintf(stderr, "%s: set: invalid VALUE: error at byte %zu: %s\n", prog, e.offset,
                e.msg ? e.msg : l3_strerror(rc));
        st = EXIT_USAGE;
    } else if (rc == -ENOBUFS || rc == -ENOMEM) {
        fprintf(stderr, "%s: set: out of memory\n", prog);
        st = EXIT_DATA;
    } else if (rc < 0) {
        st = path_error("set", path, rc);
    } else {
        st = print_json(d.buf, L3_DOC_ROOT);
    }
    l3_doc_heap_free(&d);
    return st;
}

static int cmd_patch(const char *cmd, const char *patch)
{
    l3_doc_t d;
    int st = load_mutable(&d);
    if (st)
        return st;
    l3_doc_error_t e = {0, NULL};
    bool merge = strcmp(cmd, "merge") == 0;
    int rc = merge ? l3_doc_merge_patch(&d, patch, strlen(patch), &e)
                   : l3_doc_json_patch(&d, patch, strlen(patch), &e);
    if (rc < 0) {
        fprintf(stderr, "%s: %s: patch failed: %s at byte %zu of the patch (%s)\n", prog, cmd,
                e.msg ? e.msg : l3_strerror(rc), e.offset, l3_strerror(rc));
        st = rc == L3_ESYNTAX || rc == L3_EDEPTH || rc == L3_EPATH ? EXIT_USAGE : EXIT_DATA;
    } else {
        st = print_json(d.buf, L3_DOC_ROOT);
    }
    l3_doc_heap_free(&d);
    return st;
}

/* The byte breakdown of stats: every byte of `used` in one row (the rows of the document's
 * form: full or packed). */
static void print_breakdown(const uint8_t *buf)
{
    l3_doc_breakdown_t b;
    l3_doc_breakdown(buf, &b);
    enum { BOTH, FULL, PACKED };
    const struct {
        const char *name;
        size_t v;
        int form;
    } rows[] = {
        {"header", b.header, BOTH},
        {"root", b.root, FULL},
        {"obj_nodes", b.obj_nodes, FULL},
        {"entries", b.entries, FULL},
        {"entry_slack", b.entry_slack, FULL},
        {"order", b.order, FULL},
        {"arr_nodes", b.arr_nodes, FULL},
        {"items", b.items, FULL},
        {"item_slack", b.item_slack, FULL},
        {"str_heads", b.str_heads, FULL},
        {"str_bytes", b.str_bytes, BOTH},
        {"str_pad", b.str_pad, FULL},
        {"names", b.names, FULL},
        {"name_pad", b.name_pad, FULL},
        {"garbage", b.garbage, FULL},
        {"p_framing", b.p_framing, PACKED},
        {"p_names", b.p_names, PACKED},
        {"p_scalars", b.p_scalars, PACKED},
        {"p_pad", b.p_pad, PACKED},
    };
    int other_form = l3_doc_is_packed(buf) ? FULL : PACKED;
    if (opt.json) {
        printf("\"bytes\":{");
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
            if (rows[i].form != other_form)
                printf("\"%s\":%zu,", rows[i].name, rows[i].v);
        printf("\"other\":%lld}", (long long)b.other);
        return;
    }
    printf("bytes      (of used)\n");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (rows[i].form != other_form)
            printf("  %-12s %8zu %5.1f%%\n", rows[i].name, rows[i].v,
                   b.used ? 100.0 * (double)rows[i].v / (double)b.used : 0.0);
    printf("  %-12s %8lld\n", "other", (long long)b.other);
}

static int cmd_stats(void)
{
    l3_doc_t d;
    int st = load_input(&d);
    if (st == 0 && (st = maybe_pack(&d)) != 0)
        l3_doc_heap_free(&d);
    if (st)
        return st;
    l3_doc_stats_t s;
    l3_doc_stats(d.buf, &s);
    size_t size = l3_doc_size(d.buf), nodes = s.objects + s.arrays + s.scalars;
    if (opt.json) {
        printf("{\"size\":%zu,\"used\":%zu,\"garbage\":%zu,\"objects\":%zu,\"arrays\":%zu,\"scalars\":%zu,"
               "\"nodes\":%zu,\"max_depth\":%zu,",
               size, s.used, s.garbage, s.objects, s.arrays, s.scalars, nodes, s.max_depth);
        print_breakdown(d.buf);
        printf("}\n");
    } else {
        printf("size       %zu\n"
               "used       %zu\n"
               "garbage    %zu (%.1f%%)\n"
               "objects    %zu\n"
               "arrays     %zu\n"
               "scalars    %zu\n"
               "nodes      %zu\n"
               "max_depth  %zu\n",
               size, s.used, s.garbage, s.used ? 100.0 * (double)s.garbage / (double)s.used : 0.0, s.objects,
               s.arrays, s.scalars, nodes, s.max_depth);
        print_breakdown(d.buf);
    }
    l3_doc_heap_free(&d);
    return finish_output();
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    enum { OPT_MAX_DEPTH = 256 };
    static const struct option longopts[] = {
        {"binary", no_argument, NULL, 'b'},
        {"raw", no_argument, NULL, 'r'},
        {"packed", no_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},
        {"max-depth", required_argument, NULL, OPT_MAX_DEPTH},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    /* "+": stop at the command, so a VALUE such as "-1" is not taken for an option. */
    while ((c = getopt_long(argc, argv, "+brpjhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            opt.binary = true;
            break;
        case 'r':
            opt.raw = true;
            break;
        case 'p':
            opt.packed = true;
            break;
        case 'j':
            opt.json = true;
            break;
        case OPT_MAX_DEPTH: {
            char *end;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno || *end || end == optarg || v == 0 || v > L3_DOC_HARD_MAX_DEPTH)
                return usage_error("--max-depth: expected 1..%u, got '%s'", (unsigned)L3_DOC_HARD_MAX_DEPTH,
                                   optarg);
            opt.max_depth = (unsigned)v;
            break;
        }
        case 'h':
            usage(stdout);
            return finish_output();
        case 'V':
            printf("%s %s\n", prog, L3KV_VERSION);
            return finish_output();
        default:
            fprintf(stderr, "Try '%s --help'.\n", prog);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return usage_error("%s", "missing COMMAND");
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;

    static const struct {
        const char *name;
        int nargs;
    } cmds[] = {{"encode", 0}, {"decode", 0}, {"check", 0}, {"get", 1},
                {"set", 2},    {"merge", 1},  {"patch", 1}, {"stats", 0}};
    size_t k;
    for (k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++)
        if (strcmp(cmds[k].name, cmd) == 0)
            break;
    if (k == sizeof(cmds) / sizeof(cmds[0]))
        return usage_error("unknown command '%s'", cmd);
    if (nargs != cmds[k].nargs) {
        fprintf(stderr, "%s: %s takes %d argument%s, got %d\nTry '%s --help'.\n", prog, cmd, cmds[k].nargs,
                cmds[k].nargs == 1 ? "" : "s", nargs, prog);
        return EXIT_USAGE;
    }

    if (strcmp(cmd, "encode") == 0)
        return cmd_encode();
    if (strcmp(cmd, "decode") == 0)
        return cmd_decode();
    if (strcmp(cmd, "check") == 0)
        return cmd_check();
    if (strcmp(cmd, "get") == 0)
        return cmd_get(args[0]);
    if (strcmp(cmd, "set") == 0)
        return cmd_set(args[0], args[1]);
    if (strcmp(cmd, "merge") == 0 || strcmp(cmd, "patch") == 0)
        return cmd_patch(cmd, args[0]);
    return cmd_stats();
}
