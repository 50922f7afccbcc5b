/* SPDX-License-Identifier: MIT */
/*
 * config.c - config.json parsing and validation (jansson).
 *
 * Runs once in the supervisor before anything else; workers inherit the struct by fork.
 * Table driven: every accepted key has one row (dotted name, type, bounds, offset into
 * l3_srv_config_t). Unknown keys and values of the wrong type or out of range are errors
 * naming the key. Aliases (min_threads = min_workers, max_threads = max_workers) map to the
 * same field; giving both with different values is an error.
 *
 * One validation for `l3kv --check` and for a normal start: l3_srv_config_parse/_load end
 * in check(), which rejects every setting a subsystem would refuse later at start-up, so a
 * configuration that passes --check does not stop the server with a configuration error.
 * Each row's range is the range its consumer accepts:
 *   autoscale.*            -> l3_scale_params_validate (src/scale/policy.c); check() also
 *                             runs that validator on the mapped parameters as a backstop and
 *                             reports its complaint under the key the user wrote;
 *   storage.wal_buffer_bytes -> l3_wal_ring_init (>= L3_WAL_RING_MIN_BYTES);
 *   storage.arena_bytes    -> l3_store_create (<= 2^46, and room for the fixed regions, the
 *                             WAL ring and 1 MiB of heap: see min_arena_bytes());
 *   storage.data_dir/wal_path -> the 4096-byte path buffers of src/server and src/wal.
 * Errors name the key as written in config.json (an alias as given) and are reported by
 * main.c with exit code 2.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "auth.h"
#include "config.h"
#include "l3kv/base.h"
#include "l3kv/layout.h"
#include "l3kv/scale.h"
#include "l3kv/store.h"
#include "l3kv/wal.h"
#include "obs.h"
#include "tls.h"

/* Longest storage.data_dir / storage.wal_path: the server and the WAL build paths in
 * 4096-byte buffers by appending "/data.wal", "/l3kv.snap", ".<seq>" (up to 20 digits),
 * ".corrupt-<secs>.<n>" or ".tmp" suffixes; 96 bytes cover the longest combination. */
#define PATH_LEN_MAX (4096u - 96u)

typedef enum { T_STR, T_U32, T_U64, T_DBL, T_BOOL, T_DUR, T_LEVEL, T_SECTION, T_RECOV, T_CLIENT } ktype_t;

typedef struct {
    const char *name; /* dotted */
    ktype_t type;
    size_t off;
    double min, max;
    bool min_excl; /* T_DBL: the value must be > min (min itself is refused) */
} key_t_;

#define O(f) offsetof(l3_srv_config_t, f)
static const key_t_ keys[] = {
    {"server", T_SECTION, 0, 0, 0},
    {"server.address", T_STR, O(server.address), 0, 0},
    {"server.port", T_U32, O(server.port), 0, 65535},
    {"server.min_threads", T_U32, O(server.min_workers), 1, L3_SRV_MAX_WORKERS},
    {"server.min_workers", T_U32, O(server.min_workers), 1, L3_SRV_MAX_WORKERS},
    {"server.max_threads", T_U32, O(server.max_workers), 1, L3_SRV_MAX_WORKERS},
    {"server.max_workers", T_U32, O(server.max_workers), 1, L3_SRV_MAX_WORKERS},
    {"server.max_body_bytes", T_U64, O(server.max_body_bytes), 1, (double)(UINT64_C(1) << 32)},
    {"server.max_batch_ops", T_U32, O(server.max_batch_ops), 1, 4000},
    {"server.max_connections", T_U32, O(server.max_connections), 1, 1000000},
    {"server.idle_timeout_ms", T_U32, O(server.idle_timeout_ms), 100, 3600000},
    {"server.shutdown_timeout_ms", T_U32, O(server.shutdown_timeout_ms), 0, 3600000},
    {"server.tls", T_SECTION, 0, 0, 0},
    {"server.tls.cert", T_STR, O(server.tls_cert), 0, 0},
    {"server.tls.key", T_STR, O(server.tls_key), 0, 0},
    {"server.tls.client_ca", T_STR, O(server.tls_client_ca), 0, 0},
    {"server.tls.client_cert", T_CLIENT, O(server.tls_client_cert), 0, 0},
    {"storage", T_SECTION, 0, 0, 0},
    {"storage.data_dir", T_STR, O(storage.data_dir), 0, 0},
    {"storage.wal_path", T_STR, O(storage.wal_path), 0, 0},
    {"storage.arena_bytes", T_U64, O(storage.arena_bytes), 1 << 20, (double)(UINT64_C(1) << 46)},
    {"storage.wal_buffer_bytes", T_U64, O(storage.wal_buffer_bytes), L3_WAL_RING_MIN_BYTES,
     (double)(UINT64_C(1) << 40)},
    {"storage.durability", T_DUR, O(storage.durability), 0, 0},
    {"storage.flush_interval_ms", T_U32, O(storage.flush_interval_ms), 0, 3600000},
    {"storage.replication_timeout_ms", T_U32, O(storage.replication_timeout_ms), 1, 600000},
    {"storage.recovery", T_RECOV, O(storage.recovery_strict), 0, 0},
    {"storage.checkpoint_bytes", T_U64, O(storage.checkpoint_bytes), 1 << 16, (double)(UINT64_C(1) << 50)},
    {"storage.changes_retention_bytes", T_U64, O(storage.changes_retention_bytes), 0,
     (double)(UINT64_C(1) << 50)},
    {"storage.max_document_bytes", T_U64, O(storage.max_document_bytes), 4096, 4294967288.0},
    {"storage.lock_timeout_ms", T_U32, O(storage.lock_timeout_ms), 1, 3600000},
    {"storage.expiry_sweep_keys", T_U32, O(storage.expiry_sweep_keys), 1, 1000000},
    {"autoscale", T_SECTION, 0, 0, 0},
    {"autoscale.enabled", T_BOOL, O(autoscale.enabled), 0, 0},
    {"autoscale.interval_ms", T_U32, O(autoscale.interval_ms), 10, 60000},
    {"autoscale.horizon_ms", T_U32, O(autoscale.horizon_ms), 0, 60000},
    {"autoscale.process_noise", T_DBL, O(autoscale.process_noise), 0, 1e12},
    {"autoscale.rate_noise", T_DBL, O(autoscale.rate_noise), 0, 1e12},
    {"autoscale.measurement_noise", T_DBL, O(autoscale.measurement_noise), 0, 1e12, true},
    {"autoscale.worker_capacity", T_DBL, O(autoscale.worker_capacity), 0, 1e12, true},
    {"autoscale.down_fill", T_DBL, O(autoscale.down_fill), 0, 1, true},
    {"autoscale.margin", T_DBL, O(autoscale.margin), 0, 10},
    {"autoscale.cooldown_ms", T_U32, O(autoscale.cooldown_ms), 0, 3600000},
    {"autoscale.max_step_up", T_U32, O(autoscale.max_step_up), 1, L3_SRV_MAX_WORKERS},
    {"replication", T_SECTION, 0, 0, 0},
    {"replication.primary", T_STR, O(replication.primary), 0, 0},
    {"replication.token_file", T_STR, O(replication.token_file), 0, 0},
    {"replication.retry_ms", T_U32, O(replication.retry_ms), 10, 600000},
    {"replication.batch", T_U32, O(replication.batch), 1, 10000},
    {"log", T_SECTION, 0, 0, 0},
    {"log.level", T_LEVEL, O(log.level), 0, 0},
    {"log.file", T_STR, O(log.file), 0, 0},
    {"log.access", T_STR, O(log.access), 0, 0},
};
#undef O

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *l3_srv_durability_name(l3_srv_durability_t d)
{
    return d == L3_DURABILITY_FSYNC ? "fsync" : "buffered";
}

static int set_str(char **dst, const char *v)
{
    char *s = strdup(v);
    if (s == NULL)
        return -ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

int l3_srv_config_defaults(l3_srv_config_t *c)
{
    memset(c, 0, sizeof(*c));
    l3_auth_reset(); /* no tokens: protected mode (auth.c) */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    c->server.port = 8080;
    c->server.min_workers = ncpu >= 2 ? 2 : 1;
    c->server.max_workers = (uint32_t)(ncpu * 2 > L3_SRV_MAX_WORKERS ? L3_SRV_MAX_WORKERS : ncpu * 2);
    if (c->server.max_workers < c->server.min_workers)
        c->server.max_workers = c->server.min_workers;
    c->server.max_body_bytes = 64ull << 20;
    c->server.max_batch_ops = 1000;
    c->server.max_connections = 10000;
    c->server.idle_timeout_ms = 30000;
    c->server.shutdown_timeout_ms = 10000;
    c->storage.arena_bytes = 1ull << 30;
    c->storage.wal_buffer_bytes = 20ull << 20;
    c->storage.durability = L3_DURABILITY_BUFFERED;
    c->storage.flush_interval_ms = 10;
    c->storage.checkpoint_bytes = 256ull << 20;
    c->storage.replication_timeout_ms = 5000;
    c->replication.retry_ms = 1000;
    c->replication.batch = 1000;
    c->storage.changes_retention_bytes = 64ull << 20;
    c->storage.max_document_bytes = 64ull << 20;
    c->storage.lock_timeout_ms = L3_STORE_DEFAULT_LOCK_TIMEOUT_MS;
    c->storage.expiry_sweep_keys = 1000;
    /* the autoscaler's documented defaults (l3_scale_params_default) */
    c->autoscale.enabled = true;
    c->autoscale.interval_ms = 100;
    c->autoscale.horizon_ms = 500;
    c->autoscale.process_noise = 1.0;
    c->autoscale.rate_noise = 50.0;
    c->autoscale.measurement_noise = 9.0;
    c->autoscale.worker_capacity = 8.0;
    c->autoscale.down_fill = 1.0;
    c->autoscale.margin = 1.5;
    c->autoscale.cooldown_ms = 3000;
    c->autoscale.max_step_up = 8;
    c->log.level = L3_LOG_INFO;
    if (set_str(&c->server.address, "0.0.0.0") || set_str(&c->storage.data_dir, "data") ||
        set_str(&c->storage.wal_path, "")) {
        l3_srv_config_free(c);
        return -ENOMEM;
    }
    return 0;
}

void l3_srv_config_free(l3_srv_config_t *c)
{
    free(c->server.address);
    free(c->server.tls_cert);
    free(c->server.tls_key);
    free(c->server.tls_client_ca);
    free(c->storage.data_dir);
    free(c->storage.wal_path);
    free(c->log.file);
    free(c->log.access);
    free(c->replication.primary);
    free(c->replication.token_file);
    memset(c, 0, sizeof(*c));
}

static int fail(char *errbuf, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *errbuf, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen > 0)
        vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static const key_t_ *find_key(const char *name)
{
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* Remembers which alias set a field, to reject conflicting duplicates. */
typedef struct {
    const char *min_alias, *max_alias;
} seen_t;

static int apply(l3_srv_config_t *c, const key_t_ *k, json_t *v, seen_t *seen, char *errbuf, size_t errlen)
{
    char *base = (char *)c;
    switch (k->type) {
    case T_STR:
        if (!json_is_string(v))
            return fail(errbuf, errlen, -EINVAL, "config: '%s' must be a string", k->name);
        if (strlen(json_string_value(v)) != json_string_length(v))
            return fail(errbuf, errlen, -EINVAL, "config: '%s' must not contain NUL", k->name);
        return set_str((char **)(base + k->off), json_string_value(v));
    case T_U32:
    case T_U64: {
        if (!json_is_integer(v))
            return fail(errbuf, errlen, -EINVAL, "config: '%s' must be an integer in %.0f..%.0f", k->name,
                        k->min, k->max);
        json_int_t n = json_integer_value(v);
        if ((double)n < k->min || (double)n > k->max)
            return fail(errbuf, errlen, -ERANGE, "config: '%s' = %lld is out of range %.0f..%.0f", k->name,
                        (long long)n, k->min, k->max);
        if (k->type == T_U32) {
            uint32_t *dst = (uint32_t *)(base + k->off);
            const char **alias = NULL;
            if (dst == &c->server.min_workers)
                alias = &seen->min_alias;
            else if (dst == &c->server.max_workers)
                alias = &seen->max_alias;
            if (alias != NULL) {
                if (*alias != NULL && *dst != (uint32_t)n)
                    return fail(errbuf, errlen, -EINVAL, "config: '%s' conflicts with '%s'", k->name, *alias);
                *alias = k->name;
            }
            *dst = (uint32_t)n;
        } else {
            *(uint64_t *)(base + k->off) = (uint64_t)n;
        }
        return 0;
    }
    case T_DBL: {
        if (!json_is_number(v))
            return fail(errbuf, errlen, -EINVAL, "config: '%s' must be a number", k->name);
        double d = json_number_value(v);
        if (k->min_excl && !(d > k->min))
            return fail(errbuf, errlen, -ERANGE, "config: '%s' must be > %g and <= %g (got %g)", k->name,
                        k->min, k->max, d);
        if (!(d >= k->min && d <= k->max))
            return fail(errbuf, errlen, -ERANGE, "config: '%s' = %g is out of range %g..%g", k->name, d,
                        k->min, k->max);
        *(double *)(base + k->off) = d;
        return 0;
    }
    case T_BOOL:
        if (!json_is_boolean(v))
            return fail(errbuf, errlen, -EINVAL, "config: '%s' must be true or false", k->name);
        *(bool *)(base + k->off) = json_is_true(v);
        return 0;
    case T_DUR: {
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        c->storage.replicated = false;
        if (s != NULL && (strcmp(s, "buffered") == 0 || strcmp(s, "replicated") == 0)) {
            c->storage.durability = L3_DURABILITY_BUFFERED; /* replicated: the local WAL as in buffered */
            c->storage.replicated = strcmp(s, "replicated") == 0;
        } else if (s != NULL && strcmp(s, "fsync") == 0) {
            c->storage.durability = L3_DURABILITY_FSYNC;
        } else {
            return fail(errbuf, errlen, -EINVAL,
                        "config: '%s' must be \"buffered\", \"fsync\" or \"replicated\"", k->name);
        }
        return 0;
    }
    case T_RECOV: {
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        if (s != NULL && (strcmp(s, "salvage") == 0 || strcmp(s, "strict") == 0))
            c->storage.recovery_strict = strcmp(s, "strict") == 0;
        else
            return fail(errbuf, errlen, -EINVAL, "config: '%s' must be \"salvage\" or \"strict\"", k->name);
        return 0;
    }
    case T_CLIENT: {
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        if (s != NULL && (strcmp(s, "optional") == 0 || strcmp(s, "require") == 0))
            c->server.tls_client_cert =
                strcmp(s, "require") == 0 ? L3_TLS_CLIENT_REQUIRE : L3_TLS_CLIENT_OPTIONAL;
        else
            return fail(errbuf, errlen, -EINVAL, "config: '%s' must be \"optional\" or \"require\"", k->name);
        return 0;
    }
    case T_LEVEL: {
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        for (unsigned i = 0; s != NULL && i < 4; i++)
            if (strcmp(s, level_names[i]) == 0) {
                c->log.level = (l3_log_level_t)i;
                return 0;
            }
        return fail(errbuf, errlen, -EINVAL,
                    "config: '%s' must be one of \"debug\", \"info\", \"warn\", \"error\"", k->name);
    }
    case T_SECTION:
        break;
    }
    return -EINVAL;
}

static int walk(l3_srv_config_t *c, json_t *obj, const char *prefix, seen_t *seen, char *errbuf,
                size_t errlen)
{
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v)
    {
        char full[256];
        int n = snprintf(full, sizeof(full), "%s%s%s", prefix, *prefix ? "." : "", name);
        if (n < 0 || (size_t)n >= sizeof(full))
            return fail(errbuf, errlen, -EINVAL, "config: key name too long under '%s'", prefix);
        if (strcmp(full, "auth") == 0) { /* auth.c parses and installs the token set */
            int arc = l3_auth_configure(v, errbuf, errlen);
            if (arc != 0)
                return arc;
            continue;
        }
        const key_t_ *k = find_key(full);
        if (k == NULL)
            return fail(errbuf, errlen, -EINVAL, "config: unknown key '%s'", full);
        int rc;
        if (k->type == T_SECTION) {
            if (!json_is_object(v))
                return fail(errbuf, errlen, -EINVAL, "config: '%s' must be an object", full);
            rc = walk(c, v, full, seen, errbuf, errlen);
        } else {
            rc = apply(c, k, v, seen, errbuf, errlen);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The key the user wrote for a field with aliases (the canonical name when not given). */
static const char *min_key(const seen_t *seen)
{
    return seen != NULL && seen->min_alias != NULL ? seen->min_alias : "server.min_workers";
}

static const char *max_key(const seen_t *seen)
{
    return seen != NULL && seen->max_alias != NULL ? seen->max_alias : "server.max_workers";
}

/*
 * Smallest storage.arena_bytes l3_store_create() accepts for this configuration. It lays
 * the arena out as (every region rounded up to L3_ARENA_ALIGN):
 *   header | process table | lock stripes | allocator header | metrics | WAL ring |
 *   undo areas | heap (at least 1 MiB)
 * with the options the supervisor passes (supervisor.c l3_srv_init): max_procs =
 * max_workers + 16, obs_bytes = l3_obs_region_size(max_workers), wal_ring_bytes =
 * wal_buffer_bytes, and the store's defaults for the stripes (1024) and undo bytes.
 */
static uint64_t min_arena_bytes(const l3_srv_config_t *c)
{
    const uint64_t al = L3_ARENA_ALIGN;
    uint64_t procs = (uint64_t)c->server.max_workers + 16;
    uint64_t off = L3_ARENA_HDR_BYTES;
    off = L3_ALIGN_UP(off + procs * L3_PROC_SLOT_BYTES, al);
    off = L3_ALIGN_UP(off + 1024u * sizeof(l3_stripe_t), al);
    off = L3_ALIGN_UP(off + sizeof(l3_alloc_hdr_t), al);
    off += L3_ALIGN_UP((uint64_t)l3_obs_region_size(c->server.max_workers), al);
    off += L3_ALIGN_UP(c->storage.wal_buffer_bytes, al);
    off += procs * L3_ALIGN_UP((uint64_t)L3_STORE_DEFAULT_UNDO_BYTES, al);
    return off + (1u << 20);
}

/* The config key behind each field name l3_scale_params_validate() reports: its
 * messages read "<field> <rule>", e.g. "autoscale.r must be a finite number > 0". */
static const struct {
    const char *field, *key;
} scale_keys[] = {
    {"autoscale.interval_ms", "autoscale.interval_ms"},
    {"autoscale.horizon_ms", "autoscale.horizon_ms"},
    {"autoscale.q_depth", "autoscale.process_noise"},
    {"autoscale.q_rate", "autoscale.rate_noise"},
    {"autoscale.r", "autoscale.measurement_noise"},
    {"autoscale.capacity", "autoscale.worker_capacity"},
    {"autoscale.down_fill", "autoscale.down_fill"},
    {"autoscale.margin", "autoscale.margin"},
    {"autoscale.cooldown_ms", "autoscale.cooldown_ms"},
    {"autoscale.max_step_up", "autoscale.max_step_up"},
    {"min_workers", NULL}, /* server.min_workers or its alias */
    {"max_workers", NULL},
};

void l3_srv_config_scale_params(const l3_srv_config_t *c, l3_scale_params_t *p)
{
    l3_scale_params_default(p);
    p->interval_ms = c->autoscale.interval_ms;
    p->horizon_ms = c->autoscale.horizon_ms;
    p->q_depth = c->autoscale.process_noise;
    p->q_rate = c->autoscale.rate_noise;
    p->r = c->autoscale.measurement_noise;
    p->capacity = c->autoscale.worker_capacity;
    p->down_fill = c->autoscale.down_fill;
    p->margin = c->autoscale.margin;
    p->cooldown_ms = c->autoscale.cooldown_ms;
    p->max_step_up = c->autoscale.max_step_up;
    p->min_workers = c->server.min_workers;
    p->max_workers = c->server.max_workers;
}

/* Run the autoscaler's own validator on the parameters the supervisor will hand it
 * (autoscale.c l3_srv_autoscale_setup), whether or not autoscaling is enabled. */
static int check_scale(const l3_srv_config_t *c, const seen_t *seen, char *errbuf, size_t errlen)
{
    l3_scale_params_t p;
    l3_srv_config_scale_params(c, &p);
    const char *msg = NULL;
    if (l3_scale_params_validate(&p, &msg) == 0)
        return 0;
    if (msg == NULL)
        return fail(errbuf, errlen, -EINVAL, "config: 'autoscale' parameters are invalid");
    size_t flen = strcspn(msg, " ");
    for (size_t i = 0; i < sizeof(scale_keys) / sizeof(scale_keys[0]); i++) {
        if (strlen(scale_keys[i].field) != flen || strncmp(msg, scale_keys[i].field, flen) != 0)
            continue;
        const char *key = scale_keys[i].key;
        if (key == NULL)
            key = strcmp(scale_keys[i].field, "min_workers") == 0 ? min_key(seen) : max_key(seen);
        return fail(errbuf, errlen, -EINVAL, "config: '%s'%s", key, msg + flen);
    }
    return fail(errbuf, errlen, -EINVAL, "config: 'autoscale': %s", msg);
}

static int check_path(const char *key, const char *v, bool may_be_empty, char *errbuf, size_t errlen)
{
    size_t n = strlen(v);
    if (n == 0 && !may_be_empty)
        return fail(errbuf, errlen, -EINVAL, "config: '%s' is empty", key);
    if (n > PATH_LEN_MAX)
        return fail(errbuf, errlen, -ENAMETOOLONG, "config: '%s' is %zu bytes long; at most %u", key, n,
                    PATH_LEN_MAX);
    return 0;
}

/* server.tls: both halves, client certificates only with TLS, files that load (so --check
 * refuses what the start would), and auth's cert_subject entries only with a client CA. */
static int check_tls(const l3_srv_config_t *c, char *errbuf, size_t errlen)
{
    int rc;
    if ((c->server.tls_cert == NULL) != (c->server.tls_key == NULL))
        return fail(errbuf, errlen, -EINVAL, "config: 'server.tls' needs both 'cert' and 'key'");
    if (c->server.tls_client_ca != NULL && c->server.tls_cert == NULL)
        return fail(errbuf, errlen, -EINVAL,
                    "config: 'server.tls.client_ca' needs 'server.tls.cert' and 'server.tls.key'");
    if (c->server.tls_client_cert != L3_TLS_CLIENT_UNSET && c->server.tls_client_ca == NULL)
        return fail(errbuf, errlen, -EINVAL, "config: 'server.tls.client_cert' needs 'server.tls.client_ca'");
    if ((c->server.tls_cert != NULL &&
         ((rc = check_path("server.tls.cert", c->server.tls_cert, false, errbuf, errlen)) < 0 ||
          (rc = l3_srv_tls_check_pem("server.tls.cert", c->server.tls_cert, errbuf, errlen)) < 0)) ||
        (c->server.tls_key != NULL &&
         (rc = check_path("server.tls.key", c->server.tls_key, false, errbuf, errlen)) < 0) ||
        (c->server.tls_client_ca != NULL &&
         ((rc = check_path("server.tls.client_ca", c->server.tls_client_ca, false, errbuf, errlen)) < 0 ||
          (rc = l3_srv_tls_check_pem("server.tls.client_ca", c->server.tls_client_ca, errbuf, errlen)) < 0)))
        return rc;
    int ent = l3_auth_subject_entry();
    if (ent >= 0 && c->server.tls_client_ca == NULL)
        return fail(errbuf, errlen, -EINVAL,
                    "config: 'auth.tokens[%d].cert_subject' needs 'server.tls.client_ca' (the CA that "
                    "verifies client certificates)",
                    ent);
    l3_auth_set_client_ca(c->server.tls_client_ca != NULL); /* SIGHUP reloads check it too */
    return 0;
}

/* replication: an http(s) URL of a host (and port), nothing after it; a token file that
 * is readable (its content is read by the follower at its start) */
static int check_replication(const l3_srv_config_t *c, char *errbuf, size_t errlen)
{
    const char *u = c->replication.primary;
    if (u == NULL) {
        if (c->replication.token_file != NULL)
            return fail(errbuf, errlen, -EINVAL,
                        "config: 'replication.token_file' needs 'replication.primary'");
        return 0;
    }
    const char *host = strncmp(u, "http://", 7) == 0 ? u + 7 : strncmp(u, "https://", 8) == 0 ? u + 8 : NULL;
    size_t n = strlen(u);
    if (host == NULL || host[0] == '\0' || host[0] == '/' || n > 400 ||
        strcspn(host, "/?#@ \t\r\n\"\\") != strlen(host) - (host[strlen(host) - 1] == '/'))
        return fail(errbuf, errlen, -EINVAL,
                    "config: 'replication.primary' must be \"http://host:port\" or \"https://host:port\" "
                    "(no path, no credentials; at most 400 bytes)");
    if (c->replication.token_file != NULL && access(c->replication.token_file, R_OK) != 0)
        return fail(errbuf, errlen, -EINVAL, "config: 'replication.token_file': cannot read %s: %s",
                    c->replication.token_file, strerror(errno));
    return 0;
}

static int check(const l3_srv_config_t *c, const seen_t *seen, char *errbuf, size_t errlen)
{
    int rc;
    if ((rc = check_replication(c, errbuf, errlen)) < 0)
        return rc;
    if (c->server.min_workers > c->server.max_workers)
        return fail(errbuf, errlen, -EINVAL, "config: '%s' (%u) exceeds '%s' (%u)", min_key(seen),
                    c->server.min_workers, max_key(seen), c->server.max_workers);
    if (c->server.address[0] == '\0')
        return fail(errbuf, errlen, -EINVAL, "config: 'server.address' is empty");
    if ((rc = check_tls(c, errbuf, errlen)) < 0)
        return rc;
    if ((rc = check_path("storage.data_dir", c->storage.data_dir, false, errbuf, errlen)) < 0 ||
        (rc = check_path("storage.wal_path", c->storage.wal_path, true, errbuf, errlen)) < 0 ||
        (c->log.file != NULL && (rc = check_path("log.file", c->log.file, false, errbuf, errlen)) < 0) ||
        (c->log.access != NULL && (rc = check_path("log.access", c->log.access, false, errbuf, errlen)) < 0))
        return rc;
    /* the table's minimum already is the ring's; kept here for configs built in code */
    if (c->storage.wal_buffer_bytes < L3_WAL_RING_MIN_BYTES)
        return fail(errbuf, errlen, -ERANGE, "config: 'storage.wal_buffer_bytes' (%llu) must be at least %u",
                    (unsigned long long)c->storage.wal_buffer_bytes, (unsigned)L3_WAL_RING_MIN_BYTES);
    uint64_t need = min_arena_bytes(c);
    if (L3_ALIGN_UP(c->storage.arena_bytes, (uint64_t)L3_ARENA_ALIGN) < need)
        return fail(
            errbuf, errlen, -ERANGE,
            "config: 'storage.arena_bytes' (%llu) has no room for 'storage.wal_buffer_bytes' (%llu): "
            "the arena needs at least %llu bytes = the WAL ring (%llu, in 4 KiB pages) + %llu bytes of "
            "process, lock, metrics and undo areas for '%s' %u + 1 MiB of heap",
            (unsigned long long)c->storage.arena_bytes, (unsigned long long)c->storage.wal_buffer_bytes,
            (unsigned long long)need,
            (unsigned long long)L3_ALIGN_UP(c->storage.wal_buffer_bytes, (uint64_t)L3_ARENA_ALIGN),
            (unsigned long long)(need - (1u << 20) -
                                 L3_ALIGN_UP(c->storage.wal_buffer_bytes, (uint64_t)L3_ARENA_ALIGN)),
            max_key(seen), c->server.max_workers);
    if (c->storage.arena_bytes > (UINT64_C(1) << 46))
        return fail(errbuf, errlen, -ERANGE, "config: 'storage.arena_bytes' (%llu) is above 2^46",
                    (unsigned long long)c->storage.arena_bytes);
    return check_scale(c, seen, errbuf, errlen);
}

int l3_srv_config_parse(l3_srv_config_t *c, const char *text, size_t len, char *errbuf, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return fail(errbuf, errlen, -EINVAL, "config: invalid JSON at line %d column %d: %s", jerr.line,
                    jerr.column, jerr.text);
    int rc;
    seen_t seen = {0};
    if (!json_is_object(root))
        rc = fail(errbuf, errlen, -EINVAL, "config: top level must be an object");
    else
        rc = walk(c, root, "", &seen, errbuf, errlen);
    json_decref(root);
    if (rc == 0)
        rc = check(c, &seen, errbuf, errlen);
    return rc;
}

int l3_srv_config_load(l3_srv_config_t *c, const char *path, bool must_exist, bool *ret_missing, char *errbuf,
                       size_t errlen)
{
    FILE *f = fopen(path, "rb");
    l3_auth_set_source(f != NULL ? path : NULL); /* re-read on SIGHUP (auth.c) */
    if (ret_missing != NULL)
        *ret_missing = false;
    if (f == NULL) {
        int e = errno;
        if (e == ENOENT && !must_exist) {
            if (ret_missing != NULL)
                *ret_missing = true;
            return check(c, NULL, errbuf, errlen);
        }
        return fail(errbuf, errlen, -e, "config: cannot open %s: %s", path, strerror(e));
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (cap - len < 4096) {
            if (cap > (16u << 20)) {
                rc = fail(errbuf, errlen, -EFBIG, "config: %s is larger than 16 MiB", path);
                break;
            }
            char *n = realloc(text, cap ? cap * 2 : 8192);
            if (n == NULL) {
                rc = -ENOMEM;
                break;
            }
            text = n;
            cap = cap ? cap * 2 : 8192;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                rc = fail(errbuf, errlen, -EIO, "config: cannot read %s", path);
            break;
        }
    }
    fclose(f);
    if (rc == 0)
        rc = l3_srv_config_parse(c, text, len, errbuf, errlen);
    free(text);
    return rc;
}
