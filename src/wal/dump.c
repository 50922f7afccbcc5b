/* SPDX-License-Identifier: MIT */
/*
 * dump.c - offline dump and verification of a WAL segment, a snapshot or a quarantine file
 * (l3kv-inspect wal, l3kv-inspect quarantine).
 * Read-only: maps the file privately, never writes it. Any process; single-threaded.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "l3kv/error.h"
#include "l3kv/json.h"
#include "l3kv/walhook.h"
#include "wal-int.h"

/* A record's place in a transaction group (docs/wal.md 1.1), NULL outside one. */
static const char *tx_name(uint8_t flags)
{
    if (!(flags & L3_WAL_RF_TX))
        return NULL;
    bool first = flags & L3_WAL_RF_TXFIRST, last = flags & L3_WAL_RF_TXLAST;
    return first && last ? "only" : first ? "first" : last ? "last" : "part";
}

/* key as text, at most 64 bytes shown: JSON through the shared escaper (l3kv/json.h);
 * human form printable ASCII kept, the rest \xNN */
static void put_key(FILE *out, const uint8_t *k, uint32_t klen, int json)
{
    uint32_t n = L3_MIN(klen, 64u);
    if (json)
        l3_json_fput(out, k, n);
    for (uint32_t i = 0; i < n && !json; i++) {
        uint8_t c = k[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc(c, out);
        else
            fprintf(out, "\\x%02x", c);
    }
    if (n < klen)
        fputs("...", out);
}

static void put_rec(FILE *out, uint64_t off, const l3_wal_rec_t *rec, int64_t len, int json)
{
    if (json) {
        fprintf(out,
                "{\"offset\":%" PRIu64 ",\"len\":%" PRId64 ",\"op\":\"%s\",\"lsn\":%" PRIu64 ",\"key\":\"",
                off, len, l3_walop_name(rec->op, rec->flags), rec->lsn);
        put_key(out, rec->key, rec->klen, 1);
        fprintf(out, "\",\"payload_bytes\":%u", rec->plen);
        if (tx_name(rec->flags) != NULL)
            fprintf(out, ",\"tx\":\"%s\"", tx_name(rec->flags));
        fputs("}\n", out);
    } else {
        fprintf(out, "%12" PRIu64 " %8" PRId64 " %-6s lsn=%-12" PRIu64 " key=", off, len,
                l3_walop_name(rec->op, rec->flags), rec->lsn);
        put_key(out, rec->key, rec->klen, 0);
        fprintf(out, " payload=%u", rec->plen);
        if (tx_name(rec->flags) != NULL)
            fprintf(out, " tx=%s", tx_name(rec->flags));
        fputc('\n', out);
    }
}

static void summary(FILE *out, int json, const char *kind, const char *path, uint64_t records, uint64_t valid,
                    uint64_t size, int err, uint64_t bad_off)
{
    if (json) {
        fprintf(out,
                "{\"summary\":true,\"kind\":\"%s\",\"records\":%" PRIu64 ",\"valid_bytes\":%" PRIu64
                ",\"file_bytes\":%" PRIu64 ",\"ok\":%s",
                kind, records, valid, size, err ? "false" : "true");
        if (err)
            fprintf(out, ",\"bad_offset\":%" PRIu64 ",\"error\":\"%s\"", bad_off, l3_strerror(err));
        fputs("}\n", out);
    } else {
        fprintf(out, "%s %s: %" PRIu64 " records, %" PRIu64 " valid bytes of %" PRIu64, kind, path, records,
                valid, size);
        if (err)
            fprintf(out, "; BAD at offset %" PRIu64 " (%s), %" PRIu64 " bytes after it\n", bad_off,
                    l3_strerror(err), size - bad_off);
        else
            fputs("; OK\n", out);
    }
}

static int dump_wal(const uint8_t *p, uint64_t size, const char *path, FILE *out, int json)
{
    l3_wal_seg_hdr_t h;
    int err = l3_wal_seg_hdr_decode(p, size, &h);
    uint64_t off = 0, records = 0;
    if (err == 0) {
        if (json)
            fprintf(out,
                    "{\"segment\":%" PRIu64 ",\"salt\":\"%016" PRIx64 "\",\"ctime_ns\":%" PRIu64
                    ",\"ring_pos\":%" PRIu64 "}\n",
                    h.seq, h.salt, h.ctime_ns, h.ring_pos);
        else
            fprintf(out, "segment %" PRIu64 " salt %016" PRIx64 " created %" PRIu64 " ring_pos %" PRIu64 "\n",
                    h.seq, h.salt, h.ctime_ns, h.ring_pos);
        off = L3_WAL_SEG_HDR;
        while (off < size) {
            l3_wal_rec_t rec;
            int64_t len = l3_wal_rec_decode(p + off, size - off, h.salt, &rec);
            if (len < 0) {
                err = (int)len;
                break;
            }
            put_rec(out, off, &rec, len, json);
            records++;
            off += (uint64_t)len;
        }
    }
    summary(out, json, "wal", path, records, off, size, err, off);
    return err ? L3_ECORRUPT : 0;
}

static int dump_snap(const uint8_t *p, uint64_t size, const char *path, FILE *out, int json)
{
    l3_wal_snap_info_t info;
    memset(&info, 0, sizeof info);
    uint64_t salt = 0, bad = 0;
    int err = l3_wal__snap_verify(p, size, &info, &salt, &bad);
    if (json)
        fprintf(out,
                "{\"snapshot\":true,\"wal_seq\":%" PRIu64 ",\"lsn\":%" PRIu64 ",\"ctime_ns\":%" PRIu64 "}\n",
                l3_wal__ld64(p + 24), l3_wal__ld64(p + 32), l3_wal__ld64(p + 40));
    else
        fprintf(out, "snapshot wal_seq %" PRIu64 " lsn %" PRIu64 " created %" PRIu64 "\n",
                l3_wal__ld64(p + 24), l3_wal__ld64(p + 32), l3_wal__ld64(p + 40));
    salt = l3_wal__ld64(p + 16);
    uint64_t off = L3_WAL_SNAP_HDR, end = err ? bad : size - L3_WAL_SNAP_TRAILER, records = 0;
    while (off < end) {
        l3_wal_rec_t rec;
        int64_t len = l3_wal_rec_decode(p + off, end - off, salt, &rec);
        if (len < 0)
            break;
        put_rec(out, off, &rec, len, json);
        records++;
        off += (uint64_t)len;
    }
    summary(out, json, "snapshot", path, records, err ? bad : size, size, err, bad);
    return err ? L3_ECORRUPT : 0;
}

static const char *source_name(uint32_t src)
{
    return src == L3_WAL_QUAR_SNAPSHOT ? "snapshot" : src == L3_WAL_QUAR_WAL ? "wal" : "?";
}

static int dump_quar(const uint8_t *p, uint64_t size, const char *path, FILE *out, int json)
{
    l3_wal_rec_t rec;
    memset(&rec, 0, sizeof rec);
    int err = l3_wal__quar_verify(p, size, &rec);
    if (err == 0) {
        int32_t why = (int32_t)l3_wal__ld32(p + 20);
        if (json)
            fprintf(out, "{\"quarantine\":true,\"source\":\"%s\",\"error\":\"%s\",\"time_ns\":%" PRIu64 "}\n",
                    source_name(l3_wal__ld32(p + 16)), l3_strerror(why), l3_wal__ld64(p + 32));
        else
            fprintf(out, "quarantined from %s: %s (at %" PRIu64 ")\n", source_name(l3_wal__ld32(p + 16)),
                    l3_strerror(why), l3_wal__ld64(p + 32));
        put_rec(out, L3_WAL_QUAR_HDR, &rec, (int64_t)(size - L3_WAL_QUAR_HDR), json);
    }
    summary(out, json, "quarantine", path, err ? 0 : 1, err ? 0 : size, size, err, 0);
    return err ? L3_ECORRUPT : 0;
}

int l3_wal_dump(const char *path, FILE *out, int json)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8) {
        close(fd);
        summary(out, json, "unknown", path, 0, 0, size, -EBADMSG, 0);
        return L3_ECORRUPT;
    }
    const uint8_t *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return -errno;
    int rc;
    if (size >= L3_WAL_SNAP_HDR && memcmp(p, L3_WAL_SNAP_MAGIC, 8) == 0)
        rc = dump_snap(p, size, path, out, json);
    else if (memcmp(p, L3_WAL_QUAR_MAGIC, 8) == 0)
        rc = dump_quar(p, size, path, out, json);
    else
        rc = dump_wal(p, size, path, out, json);
    munmap((void *)p, size);
    return rc;
}

/* ---------------------------------------------------------------- quarantine directory */

#define QDIR_MAX_FILES 100000u /* a listing reads at most this many names */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int l3_wal_quarantine_dump(const char *dir, FILE *out, int json)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -errno;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < QDIR_MAX_FILES) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".l3q") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(names, cap * sizeof *nv);
            if (nv == NULL) {
                rc = -ENOMEM;
                break;
            }
            names = nv;
        }
        if ((names[n] = strdup(de->d_name)) == NULL) {
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        int r = l3_wal_dump(path, out, json);
        if (r < 0 && rc == 0)
            rc = r;
        free(names[i]);
    }
    free(names);
    if (rc == 0) {
        if (json)
            fprintf(out, "{\"quarantine\":true,\"files\":%zu}\n", n);
        else
            fprintf(out, "quarantine %s: %zu file(s)\n", dir, n);
    }
    return rc;
}
