/* SPDX-License-Identifier: MIT */
/*
 * main.c - the l3kv executable: command line, configuration, then the supervisor.
 *
 * Runs in the supervisor process before any fork. Usage: l3kv [--help] [--version]
 * [--check] [--accept-data-loss] [--restore FILE [--force]] [config_path] (--restore:
 * restore.c, then exit). Exit codes: 0 clean stop, 1 failure,
 * 2 refused (bad configuration or command line, unsafe data directory, missing WAL data).
 * Without an argument it reads ./config.json if present and otherwise runs with the
 * built-in defaults; a path given explicitly must exist.
 *
 * Integration points (the supervisor API in supervisor.h):
 *   l3_srv_set_worker(&srv, fn)                    the body of the HTTP worker processes;
 *   l3_srv_add_role(&srv, &role, arg)              a child role, restarted on crash, and the
 *                                                  hooks the supervisor loop calls (walsetup.c);
 *   l3_srv_set_tick(&srv, fn, arg)                 periodic decision of the worker count
 *                                                  (every autoscale.interval_ms);
 *   l3_srv_set_workers(&srv, n)                    scale up (fork) / down (graceful retire).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l3kv-config.h"
#include "access.h"
#include "auth.h"
#include "autoscale.h"
#include "config.h"
#include "replica.h"
#include "restore.h"
#include "log.h"
#include "supervisor.h"
#include "walsetup.h"
#include "l3kv/store.h"
#include "worker.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: l3kv [--help] [--version] [--check] [--accept-data-loss]\n"
               "            [--restore FILE [--force]] [config_path]\n"
               "\n"
               "Persistent HTTP key-value store for JSON documents.\n"
               "\n"
               "  config_path   JSON configuration (default: ./config.json; built-in defaults\n"
               "                are used when that file does not exist)\n"
               "  --check       validate the configuration and exit (0 = valid)\n"
               "  --accept-data-loss  start even though WAL segments the data needs are gone\n"
               "                (the snapshot covering them is missing); logs what is lost\n"
               "  --restore FILE  verify the backup FILE (GET /admin/backup) and install it in\n"
               "                the configured data directory, then exit (0 = restored); a\n"
               "                non-empty directory is refused (exit 2) unless --force\n"
               "  --force       with --restore: replace the directory's snapshot and WAL\n"
               "  --help        show this text\n"
               "  --version     print the version\n"
               "\n"
               "Defaults: listen on 0.0.0.0:8080, data in ./data. Every key is described in\n"
               "docs/server.md. Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reopens logs and\n"
               "reloads auth tokens. Access control: docs/security.md.\n");
}

static l3_srv_t srv;

int main(int argc, char **argv)
{
    const char *path = "config.json";
    const char *restore = NULL;
    bool explicit_path = false, check_only = false, accept_loss = false, force = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("l3kv %s\n", L3KV_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--check") == 0) {
            check_only = true;
            continue;
        }
        if (strcmp(argv[i], "--accept-data-loss") == 0) {
            accept_loss = true;
            continue;
        }
        if (strcmp(argv[i], "--restore") == 0 && i + 1 < argc) {
            restore = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--force") == 0) {
            force = true;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "l3kv: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (explicit_path) {
            fprintf(stderr, "l3kv: only one config path may be given\n");
            usage(stderr);
            return 2;
        }
        path = argv[i];
        explicit_path = true;
    }

    char err[512] = "";
    bool missing = false;
    if (l3_srv_config_defaults(&srv.cfg) != 0) {
        L3_LOG(L3_LOG_ERROR, "out of memory");
        return 1;
    }
    if (l3_srv_config_load(&srv.cfg, path, explicit_path, &missing, err, sizeof(err)) != 0) {
        L3_LOG(L3_LOG_ERROR, "%s: %s", path, err);
        return 2;
    }
    l3_srv_log_set_level(srv.cfg.log.level);
    srv.cfg.storage.accept_data_loss = accept_loss;
    if (check_only) {
        printf("%s: %s\n", missing ? "built-in defaults" : path, "configuration is valid");
        l3_srv_config_free(&srv.cfg);
        return 0;
    }
    if (restore != NULL || force) {
        int code = restore != NULL ? l3_srv_restore(&srv.cfg, restore, force) : 2;
        if (restore == NULL)
            fprintf(stderr, "l3kv: --force is only meaningful with --restore FILE\n");
        l3_srv_config_free(&srv.cfg);
        return code;
    }
    L3_LOG(L3_LOG_INFO, "l3kv %s starting (%s)", L3KV_VERSION,
           missing ? "no config.json: built-in defaults" : path);
    l3_auth_log_mode();
    int arc = l3_access_open(srv.cfg.log.access);
    if (arc < 0) {
        L3_LOG(L3_LOG_ERROR, "%s: config: 'log.access': cannot open %s: %s", path, srv.cfg.log.access,
               strerror(-arc));
        return 2;
    }
    /* -EPERM: an unsafe data directory; exit 2 like any other refused configuration */
    srv.before_sweep = l3_srv_wal_prepare;
    int rc = l3_srv_init(&srv, path);
    if (rc != 0)
        return rc == -EPERM ? 2 : 1;
    if ((rc = l3_srv_h2o_setup(&srv, err, sizeof(err))) != 0) {
        L3_LOG(L3_LOG_ERROR, "%s", err);
        l3_store_unlink(srv.store);
        return rc == -EINVAL ? 2 : 1; /* a TLS file that does not load: a refused configuration */
    }
    l3_srv_set_worker(&srv, l3_srv_worker_main);
    if ((rc = l3_srv_wal_setup(&srv)) != 0 || (rc = l3_srv_replica_setup(&srv)) != 0 ||
        l3_srv_autoscale_setup(&srv) != 0) {
        l3_store_unlink(srv.store);
        return rc == -ENOTRECOVERABLE ? 2 : 1; /* WAL data missing: refused, see the log */
    }
    int code = l3_srv_run(&srv);
    l3_srv_config_free(&srv.cfg);
    return code;
}
