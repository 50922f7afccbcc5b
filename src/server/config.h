/* SPDX-License-Identifier: MIT */
/*
 * config.h - the l3kv configuration (config.json) as a validated struct.
 *
 * Every key the server, the store, the WAL and the autoscaler read is parsed and checked
 * here, at start-up, so a typo fails fast with a message naming the key. The check also
 * applies every rule those subsystems enforce later (the autoscaler's parameter validator,
 * the WAL ring's minimum size, the arena's room for the ring), so `l3kv --check` and a
 * start accept exactly the same files; main.c exits 2 on any of these errors. See
 * docs/server.md for the meaning and default of each key.
 */
#ifndef L3KV_SRV_CONFIG_H
#define L3KV_SRV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "l3kv/base.h"
#include "l3kv/scale.h"
#include "l3kv/wal.h"

/** Hard cap of worker processes (and of listening sockets). */
#define L3_SRV_MAX_WORKERS 64

/* server.tls.client_cert: whether a client must present a certificate (with client_ca) */
#define L3_TLS_CLIENT_UNSET 0u
#define L3_TLS_CLIENT_OPTIONAL 1u /* the default: ask, verify one that is presented */
#define L3_TLS_CLIENT_REQUIRE 2u  /* refuse the handshake without a verified certificate */

/* storage.durability is the WAL writer's mode (l3kv/wal.h); log levels are l3kv/base.h's. */
typedef l3_wal_durability_t l3_srv_durability_t;
#define L3_DURABILITY_BUFFERED L3_WAL_BUFFERED
#define L3_DURABILITY_FSYNC L3_WAL_FSYNC

typedef struct {
    struct {
        char *address;                /* "0.0.0.0" */
        uint32_t port;                /* 8080; 0 = pick a free port (logged) */
        uint32_t min_workers;         /* min_threads / min_workers */
        uint32_t max_workers;         /* max_threads / max_workers */
        uint64_t max_body_bytes;      /* 64 MiB */
        uint32_t max_batch_ops;       /* POST /batch: operations and compares per request, 1000 */
        uint32_t max_connections;     /* per server, spread over workers; beyond it: 503 */
        uint32_t idle_timeout_ms;     /* HTTP/1 request and keep-alive idle timeout */
        uint32_t shutdown_timeout_ms; /* bound on the graceful drain */
        char *tls_cert;               /* NULL = no TLS */
        char *tls_key;                /* with tls_cert: the port speaks TLS (ALPN h2, http/1.1) */
        char *tls_client_ca;          /* PEM CA file verifying client certificates; NULL = none */
        uint32_t tls_client_cert;     /* L3_TLS_CLIENT_*: server.tls.client_cert */
    } server;
    struct {
        char *data_dir; /* "data" */
        char *wal_path; /* "" = <data_dir>/data.wal */
        uint64_t arena_bytes;
        uint64_t wal_buffer_bytes;
        l3_srv_durability_t durability;  /* of the local WAL */
        bool replicated;                 /* durability "replicated": a write is answered once a replica holds
                                            it durably (the local WAL as in "buffered") */
        uint32_t replication_timeout_ms; /* replicated: longest wait for a replica's acknowledgement */
        uint32_t flush_interval_ms;
        uint64_t checkpoint_bytes;
        uint64_t changes_retention_bytes; /* log kept past checkpoints for the change feed; 0 = the
                                             feed resumes only from what the WAL ring holds */
        bool recovery_strict;             /* storage.recovery "strict": a record recovery cannot apply stops
                                             the start; "salvage" (default): it goes to <data_dir>/quarantine */
        bool accept_data_loss;            /* command line --accept-data-loss: start although WAL segments
                                             the data needs are gone (not a configuration key) */
        uint64_t max_document_bytes;      /* binary size of one document a request may build */
        uint32_t lock_timeout_ms;         /* a document lock not obtained in time: 503 overloaded */
        uint32_t expiry_sweep_keys;       /* expired keys one worker removes per 100 ms tick at most */
    } storage;
    struct {                      /* maps onto l3_scale_params_t (l3kv/scale.h) */
        bool enabled;             /* false: the worker count stays at min_workers (SIGUSR1/2 still work) */
        uint32_t interval_ms;     /* interval_ms */
        uint32_t horizon_ms;      /* horizon_ms */
        double process_noise;     /* q_depth, req^2/s */
        double rate_noise;        /* q_rate, (req/s)^2/s */
        double measurement_noise; /* r, req^2 */
        double worker_capacity;   /* capacity: requests in flight + queued one worker handles */
        double down_fill;         /* down_fill */
        double margin;            /* margin, standard deviations */
        uint32_t cooldown_ms;     /* cooldown_ms */
        uint32_t max_step_up;     /* max_step_up */
    } autoscale;
    struct {
        char *primary;     /* replication.primary: "http(s)://host:port" of the node to follow; NULL =
                              this node is a primary */
        char *token_file;  /* a file holding the bearer token for the primary (scopes read and admin) */
        uint32_t retry_ms; /* wait before asking an unreachable primary again */
        uint32_t batch;    /* changes asked per request to the primary's feed */
    } replication;
    struct {
        l3_log_level_t level;
        char *file;   /* NULL = stderr only */
        char *access; /* log.access: access log file, NULL = none (access.c) */
    } log;
} l3_srv_config_t;

/** Fill *c with the built-in defaults (strings are malloc'd). 0 or -ENOMEM. */
int l3_srv_config_defaults(l3_srv_config_t *c);

/**
 * Load `path` over the defaults. If `path` does not exist and `must_exist` is false,
 * keeps the defaults and sets *ret_missing. On error returns a negative code and writes a
 * message naming the offending key into errbuf.
 */
int l3_srv_config_load(l3_srv_config_t *c, const char *path, bool must_exist, bool *ret_missing, char *errbuf,
                       size_t errlen);

/** Parse configuration from JSON text (same rules as _load). */
int l3_srv_config_parse(l3_srv_config_t *c, const char *text, size_t len, char *errbuf, size_t errlen);

void l3_srv_config_free(l3_srv_config_t *c);
/** The autoscaler's parameters from the configuration (defaults for the rest). */
void l3_srv_config_scale_params(const l3_srv_config_t *c, l3_scale_params_t *p);

const char *l3_srv_durability_name(l3_srv_durability_t d);

#endif
