/* SPDX-License-Identifier: MIT */
/*
 * supervisor.c - the l3kv supervisor: store arena, listening sockets, worker and role
 * processes, signals, scaling hooks.
 *
 * Process: the one started by the user or systemd; single threaded. It never serves HTTP.
 * Signals are blocked and taken synchronously with sigtimedwait() in the main loop (no
 * async handlers), so all supervisor state is touched from one place: SIGTERM/SIGINT stop
 * gracefully, SIGHUP reopens logs (and is forwarded to workers), SIGUSR1/SIGUSR2 ask for
 * one worker more/less (within server.min_workers..max_workers), SIGCHLD reaps.
 *
 * Worker slot state machine (ctl->sc_state[i], mirrored into the metrics slot):
 *
 *     EMPTY --spawn--> RUNNING --retire (scale down)--> RETIRING --exit--> EMPTY
 *                         |                                 |
 *                         +--crash--> EMPTY (+ restart after backoff)   +--timeout--> SIGKILL
 *
 *   spawn: spawn_worker()   retire: apply_scale()   exit/crash: reap()
 *
 * Sockets (listen.c): server.max_workers listening sockets bound to the same address with
 * SO_REUSEPORT, created once and held open by the supervisor for the life of the server.
 * Each socket is served by one live worker (l3_srv_ctl_serves, ctl.c). A worker that
 * retires or crashes leaves its sockets open (the supervisor and its siblings still hold
 * them); after a crash the supervisor wakes the live workers (L3_SRV_CTL_SIGNAL) so one of
 * them adopts the sockets at once, and nothing queued on them is lost.
 *
 * Roles: every subsystem with a process of its own (the WAL writer) is a role table
 * (supervisor.h): the supervisor forks and restarts its child and calls its hooks from
 * this loop (tick, request, child_exited, stop_tasks, stopped); it calls nothing else of
 * the subsystem. The worker body is registered the same way (l3_srv_set_worker).
 *
 * Crash policy: a crashed child is restarted after a backoff (100 ms doubling to 5 s,
 * reset after 10 s of life), except the last live worker, which is restarted at once (the
 * service never waits out a backoff). A graceful stop starts a role that is down at once,
 * so the WAL is drained whatever state the writer was in. A poisoned arena stops the loop
 * (exit L3_SRV_EXIT_POISONED) so the next start rebuilds it from snapshot + WAL.
 *
 * Invariants: a slot is RUNNING iff a child with sc_pid[slot] was forked and not yet
 * reaped; every reaped pid is passed to l3_store_proc_reap() before its slot is reused.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "auth.h"
#include "config.h"
#include "ctl.h"
#include "feedstat.h"
#include "listen.h"
#include "log.h"
#include "supervisor.h"
#include "obs.h"
#include "l3kv/error.h"
#include "l3kv/store.h"
#include "worker.h"

#define MAX_ROLES 4
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define STABLE_MS 10000u /* a child that lived this long resets its backoff */

typedef struct {
    pid_t pid;
    uint64_t started_ms;
    uint64_t restart_at_ms; /* 0 = not waiting for a restart */
    uint32_t backoff_ms;
    uint64_t retire_deadline_ms;
    uint64_t cpu_ns;    /* last CPU time read from /proc/<pid>/schedstat (0 = none yet) */
    uint64_t cpu_at_ns; /* when it was read (CLOCK_MONOTONIC) */
} child_t;

typedef struct {
    const l3_srv_role_t *ops;
    void *arg;
    child_t ch;
} role_t;

/*
 * The systemd notification protocol without libsystemd: one datagram to the AF_UNIX
 * socket named by $NOTIFY_SOCKET (a leading '@' means the abstract namespace). A no-op
 * when the variable is unset (not started by systemd, or Type= is not notify).
 */
static void sd_notify_msg(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || (path[0] != '/' && path[0] != '@') ||
        strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path));
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = 0;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    (void)sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    close(fd);
}

/* The supervisor's state (srv->sup), created by l3_srv_init; inherited by forked children
 * but used only in the supervisor. */
struct l3_srv_sup {
    child_t workers[L3_SRV_MAX_WORKERS];
    role_t roles[MAX_ROLES];
    unsigned nroles;
    uint32_t want_workers;
    l3_srv_tick_fn tick_fn;
    void *tick_arg;
    l3_srv_worker_fn worker_fn;
    /* a role (the WAL writer) did not finish during the graceful stop: exit non-zero,
     * because acknowledged writes may not be on disk */
    bool stop_failed;
    /* the loop stopped because the arena is poisoned: exit L3_SRV_EXIT_POISONED */
    bool poisoned;
};

static uint64_t now_ms(void)
{
    return l3_now_ns() / 1000000u;
}

static void set_state(l3_srv_t *srv, uint32_t slot, uint32_t state, pid_t pid)
{
    l3_obs_slot_t *os = l3_obs_slot(&srv->obs, slot);
    __atomic_store_n(&srv->ctl->sc_pid[slot], pid, __ATOMIC_RELAXED);
    __atomic_store_n(&srv->ctl->sc_state[slot], state, __ATOMIC_RELEASE);
    if (os != NULL) {
        __atomic_store_n(&os->os_pid, pid, __ATOMIC_RELAXED);
        __atomic_store_n(&os->os_state, state, __ATOMIC_RELAXED);
    }
    __atomic_add_fetch(&srv->ctl->sc_gen, 1, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------------- setup */

static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return n == 0 ? 0 : -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0700) == 0) {
                if (chmod(buf, 0700) != 0) /* the umask may have narrowed it */
                    return -errno;
            } else if (errno != EEXIST) {
                return -errno;
            }
            buf[i] = c;
        }
    }
    return 0;
}

int l3_srv_init(l3_srv_t *srv, const char *config_path)
{
    char err[512] = "";
    int rc;
    srv->config_path = config_path;
    srv->sup = calloc(1, sizeof(*srv->sup)); /* lives as long as the process */
    if (srv->sup == NULL)
        return -ENOMEM;
    l3_srv_log_set_level(srv->cfg.log.level);
    if (srv->cfg.log.file != NULL && (rc = l3_srv_log_open(srv->cfg.log.file)) < 0) {
        L3_LOG(L3_LOG_ERROR, "config: 'log.file' %s: %s", srv->cfg.log.file, strerror(-rc));
        return rc;
    }

    /* Connections are file descriptors: allow as many as the hard limit permits. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }

    if ((rc = mkdir_p(srv->cfg.storage.data_dir)) < 0) {
        L3_LOG(L3_LOG_ERROR, "config: 'storage.data_dir' %s: %s", srv->cfg.storage.data_dir, strerror(-rc));
        return rc;
    }

    srv->ctl = l3_srv_ctl_create();
    if (srv->ctl == NULL)
        return -errno;
    srv->feed_stats = l3_feed_stats_create();
    if (srv->feed_stats == NULL)
        return -errno;

    srv->nsock = srv->cfg.server.max_workers;
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        srv->lfds[i] = -1;
    if ((rc = l3_srv_listen_open(srv->cfg.server.address, srv->cfg.server.port, srv->nsock, srv->lfds,
                                 &srv->port, err, sizeof(err))) < 0) {
        L3_LOG(L3_LOG_ERROR, "%s", err);
        return rc;
    }
    size_t obs_bytes = l3_obs_region_size(srv->cfg.server.max_workers);
    l3_store_opts_t so = {
        .arena_bytes = srv->cfg.storage.arena_bytes,
        .wal_ring_bytes = srv->cfg.storage.wal_buffer_bytes,
        .max_procs = srv->cfg.server.max_workers + 16,
        .obs_bytes = obs_bytes,
        .replace = true,
        .max_doc_bytes = srv->cfg.storage.max_document_bytes,
        .lock_timeout_ms = srv->cfg.storage.lock_timeout_ms,
    };
    /* arenas of instances that died without cleaning up (SIGKILL, power cut of the
     * processes) would hold their memory in /dev/shm until reboot; first, what their rings
     * hold that is not in the WAL yet goes there (buffered acknowledgements survive) */
    if (srv->before_sweep != NULL && (rc = srv->before_sweep(srv)) < 0)
        return rc;
    int swept = l3_store_sweep_stale(0);
    if (swept > 0)
        L3_LOG(L3_LOG_INFO, "removed %d shared-memory arena(s) left by instances that no longer run", swept);
    if ((rc = l3_store_create(&so, &srv->store)) < 0) {
        L3_LOG(
            L3_LOG_ERROR,
            "cannot create the store arena ('storage.arena_bytes' %llu, 'storage.wal_buffer_bytes' %llu): %s",
            (unsigned long long)so.arena_bytes, (unsigned long long)so.wal_ring_bytes, l3_strerror(rc));
        return rc;
    }
    size_t olen = 0;
    void *oreg = l3_store_obs_region(srv->store, &olen);
    if ((rc = l3_obs_format(oreg, olen, srv->cfg.server.max_workers, (uint64_t)time(NULL) * 1000000000ull)) <
            0 ||
        (rc = l3_obs_attach(&srv->obs, oreg, olen)) < 0) {
        L3_LOG(L3_LOG_ERROR, "metrics region too small (%zu bytes)", olen);
        l3_store_unlink(srv->store);
        l3_store_close(srv->store);
        srv->store = NULL;
        return rc;
    }

    srv->ctl->sc_nsock = srv->nsock;
    srv->sup->want_workers = srv->cfg.server.min_workers;
    return 0;
}

int l3_srv_add_role(l3_srv_t *srv, const l3_srv_role_t *role, void *arg)
{
    if (srv->sup->nroles >= MAX_ROLES)
        return -ENOSPC;
    srv->sup->roles[srv->sup->nroles++] = (role_t){.ops = role, .arg = arg};
    return 0;
}

void l3_srv_set_worker(l3_srv_t *srv, l3_srv_worker_fn fn)
{
    srv->sup->worker_fn = fn;
}

void l3_srv_set_tick(l3_srv_t *srv, l3_srv_tick_fn fn, void *arg)
{
    srv->sup->tick_fn = fn;
    srv->sup->tick_arg = arg;
}

void l3_srv_set_workers(l3_srv_t *srv, uint32_t n)
{
    if (n < srv->cfg.server.min_workers)
        n = srv->cfg.server.min_workers;
    if (n > srv->cfg.server.max_workers)
        n = srv->cfg.server.max_workers;
    if (n != srv->sup->want_workers)
        L3_LOG(L3_LOG_INFO, "scaling workers %u -> %u", srv->sup->want_workers, n);
    srv->sup->want_workers = n;
}

/* Time a process has been runnable, in ns: running on a CPU plus waiting on a run queue
 * (first two fields of /proc/<pid>/schedstat). A worker with work to do is runnable all the
 * time even when it has to share the CPUs, so this measures demand, not the CPU it got.
 * 0 if unknown. */
static uint64_t proc_cpu_ns(pid_t pid)
{
    char path[64], buf[128];
    snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *end;
    uint64_t run = strtoull(buf, &end, 10);
    uint64_t wait = strtoull(end, NULL, 10);
    return run + wait;
}

double l3_srv_workers_cpu(l3_srv_t *srv)
{
    double sum = 0;
    uint64_t now = l3_now_ns();
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++) {
        child_t *w = &srv->sup->workers[i];
        if (w->pid <= 0) {
            w->cpu_ns = 0;
            continue;
        }
        uint64_t c = proc_cpu_ns(w->pid);
        if (c != 0 && w->cpu_ns != 0 && c >= w->cpu_ns && now > w->cpu_at_ns)
            sum += (double)(c - w->cpu_ns) / (double)(now - w->cpu_at_ns);
        w->cpu_ns = c;
        w->cpu_at_ns = now;
    }
    return sum;
}

uint64_t l3_srv_accept_queue(const l3_srv_t *srv)
{
    return l3_srv_listen_backlog(srv->lfds, srv->nsock);
}

double l3_srv_queue_depth(const l3_srv_t *srv, const l3_obs_totals_t *totals)
{
    return (double)l3_srv_accept_queue(srv) + (double)(totals->inflight > 0 ? totals->inflight : 0);
}

/* ---------------------------------------------------------------- children */

static void child_setup(bool keep_stop_blocked)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, L3_SRV_CTL_SIGNAL); /* a worker unblocks it once its handler is in place */
    if (keep_stop_blocked) {
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
    }
    sigprocmask(SIG_SETMASK, &set, NULL);
}

static int spawn_worker(l3_srv_t *srv, uint32_t slot)
{
    set_state(srv, slot, L3_OBS_SLOT_RUNNING, 0); /* before fork: the child sees itself live */
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        set_state(srv, slot, L3_OBS_SLOT_EMPTY, 0);
        L3_LOG(L3_LOG_ERROR, "fork worker %u: %s", slot, strerror(e));
        return -e;
    }
    if (pid == 0) {
        child_setup(false);
        srv->sup->worker_fn(srv, slot);
        _exit(70); /* a worker body never returns */
    }
    srv->sup->workers[slot].pid = pid;
    srv->sup->workers[slot].started_ms = now_ms();
    srv->sup->workers[slot].restart_at_ms = 0;
    srv->sup->workers[slot].retire_deadline_ms = 0;
    set_state(srv, slot, L3_OBS_SLOT_RUNNING, pid);
    L3_LOG(L3_LOG_INFO, "worker %u started (pid %d)", slot, (int)pid);
    return 0;
}

pid_t l3_srv_fork_task(l3_srv_t *srv, const char *name)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        L3_LOG(L3_LOG_ERROR, "fork %s: %s", name, strerror(errno));
        return -errno;
    }
    if (pid == 0) {
        child_setup(true);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        (void)setpgid(0, 0);
        for (uint32_t i = 0; i < srv->nsock; i++)
            if (srv->lfds[i] >= 0)
                close(srv->lfds[i]);
        return 0;
    }
    L3_LOG(L3_LOG_INFO, "%s started (pid %d)", name, (int)pid);
    return pid;
}

static int spawn_role(l3_srv_t *srv, role_t *r)
{
    if (r->ops->main == NULL)
        return 0;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        L3_LOG(L3_LOG_ERROR, "fork %s: %s", r->ops->name, strerror(errno));
        return -errno;
    }
    if (pid == 0) {
        /* SIGTERM/SIGINT stay blocked: the role installs its handlers, then unblocks them,
         * so an early stop request is not lost */
        child_setup(true);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        /* Own process group: a terminal's Ctrl-C (SIGINT to the foreground group) must not
         * stop the writer before the workers are done; the supervisor stops it last. */
        (void)setpgid(0, 0);
        for (uint32_t i = 0; i < srv->nsock; i++) /* a role must not keep the HTTP sockets alive */
            if (srv->lfds[i] >= 0)
                close(srv->lfds[i]);
        int code = r->ops->main(srv, r->arg);
        _exit(code & 0xff);
    }
    r->ch.pid = pid;
    r->ch.started_ms = now_ms();
    r->ch.restart_at_ms = 0;
    L3_LOG(L3_LOG_INFO, "%s started (pid %d)", r->ops->name, (int)pid);
    return 0;
}

static void describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "status 0x%x", status);
}

static void schedule_restart(child_t *c, uint64_t now)
{
    if (now - c->started_ms >= STABLE_MS || c->backoff_ms == 0)
        c->backoff_ms = BACKOFF_MIN_MS;
    else
        c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    c->restart_at_ms = now + c->backoff_ms;
}

static bool any_running(const l3_srv_t *srv)
{
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        if (srv->ctl->sc_state[i] == L3_OBS_SLOT_RUNNING)
            return true;
    return false;
}

/*
 * Worker slot i's process exited. Its sockets stay open (the supervisor holds them); the
 * live workers are told at once (l3_srv_ctl_wake) so that one of them adopts the sockets
 * within milliseconds instead of at its next 100 ms tick. A crashed worker is restarted
 * after its backoff while another worker is RUNNING; when it was the last one it is
 * restarted at once (the service must never wait out a backoff), unless it died within
 * BACKOFF_MIN_MS of its start, which a restart at once would only repeat (a failing start).
 */
static void reap_worker(l3_srv_t *srv, uint32_t i, int status, const char *how, bool stopping, uint64_t now)
{
    pid_t pid = srv->sup->workers[i].pid;
    uint32_t st = srv->ctl->sc_state[i];
    srv->sup->workers[i].pid = 0;
    l3_obs_slot_t *os = l3_obs_slot(&srv->obs, i);
    if (os != NULL) {
        __atomic_store_n(&os->os_active_conns, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&os->os_inflight, 0, __ATOMIC_RELAXED);
    }
    set_state(srv, i, L3_OBS_SLOT_EMPTY, 0);
    if (!stopping)
        l3_srv_ctl_wake(srv->ctl);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (stopping || (st == L3_OBS_SLOT_RETIRING && clean)) {
        L3_LOG(L3_LOG_INFO, "worker %u (pid %d) exited: %s", i, (int)pid, how);
        return;
    }
    if (os != NULL)
        l3_obs_add(&os->os_restarts, 1);
    if (!any_running(srv) && now - srv->sup->workers[i].started_ms >= BACKOFF_MIN_MS) {
        srv->sup->workers[i].restart_at_ms = now; /* due: apply_scale forks it in this loop pass */
        L3_LOG(L3_LOG_WARN, "worker %u (pid %d) died: %s; last live worker, restarting at once", i, (int)pid,
               how);
        return;
    }
    schedule_restart(&srv->sup->workers[i], now);
    L3_LOG(L3_LOG_WARN, "worker %u (pid %d) died: %s; restarting in %u ms", i, (int)pid, how,
           srv->sup->workers[i].backoff_ms);
}

static void reap(l3_srv_t *srv, bool stopping)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        char how[96];
        describe_status(status, how, sizeof(how));
        uint64_t now = now_ms();
        if (srv->store != NULL) {
            int rc = l3_store_proc_reap(srv->store, pid);
            if (rc < 0)
                L3_LOG(L3_LOG_ERROR, "store: cannot repair after pid %d: %s", (int)pid, l3_strerror(rc));
        }
        bool found = false;
        for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS && !found; i++) {
            if (srv->sup->workers[i].pid != pid)
                continue;
            found = true;
            reap_worker(srv, i, status, how, stopping, now);
        }
        for (unsigned r = 0; r < srv->sup->nroles && !found; r++) {
            if (srv->sup->roles[r].ch.pid != pid)
                continue;
            found = true;
            srv->sup->roles[r].ch.pid = 0;
            if (stopping) {
                bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                if (!clean)
                    srv->sup->stop_failed = true; /* e.g. the WAL writer could not drain: not a clean stop */
                L3_LOG(clean ? L3_LOG_INFO : L3_LOG_ERROR, "%s (pid %d) exited: %s",
                       srv->sup->roles[r].ops->name, (int)pid, how);
            } else {
                schedule_restart(&srv->sup->roles[r].ch, now);
                L3_LOG(L3_LOG_WARN, "%s (pid %d) died: %s; restarting in %u ms", srv->sup->roles[r].ops->name,
                       (int)pid, how, srv->sup->roles[r].ch.backoff_ms);
            }
        }
        for (unsigned r = 0; r < srv->sup->nroles && !found; r++)
            if (srv->sup->roles[r].ops->child_exited != NULL)
                found = srv->sup->roles[r].ops->child_exited(srv->sup->roles[r].arg, pid, status);
        if (!found)
            L3_LOG(L3_LOG_DEBUG, "reaped unknown child %d: %s", (int)pid, how);
    }
}

static uint32_t live_workers(const l3_srv_t *srv)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < srv->cfg.server.max_workers; i++)
        if (srv->ctl->sc_state[i] == L3_OBS_SLOT_RUNNING || srv->sup->workers[i].restart_at_ms != 0)
            n++;
    return n;
}

/* Move the worker table toward want_workers and run due restarts. */
static void apply_scale(l3_srv_t *srv)
{
    uint64_t now = now_ms();
    uint32_t max = srv->cfg.server.max_workers;
    for (uint32_t i = 0; i < max; i++)
        if (srv->sup->workers[i].restart_at_ms != 0 && now >= srv->sup->workers[i].restart_at_ms) {
            srv->sup->workers[i].restart_at_ms = 0;
            uint32_t live = live_workers(srv);
            if (live < srv->sup->want_workers) /* still wanted */
                spawn_worker(srv, i);
        }
    for (unsigned r = 0; r < srv->sup->nroles; r++)
        if (srv->sup->roles[r].ch.restart_at_ms != 0 && now >= srv->sup->roles[r].ch.restart_at_ms) {
            srv->sup->roles[r].ch.restart_at_ms = 0;
            spawn_role(srv, &srv->sup->roles[r]);
        }
    uint32_t live = live_workers(srv);
    for (uint32_t i = 0; i < max && live < srv->sup->want_workers; i++)
        if (srv->ctl->sc_state[i] == L3_OBS_SLOT_EMPTY && srv->sup->workers[i].pid == 0 &&
            srv->sup->workers[i].restart_at_ms == 0) {
            if (spawn_worker(srv, i) == 0)
                live++;
            else
                break;
        }
    for (uint32_t i = max; i-- > 0 && live > srv->sup->want_workers;) {
        if (srv->sup->workers[i].restart_at_ms != 0) {
            srv->sup->workers[i].restart_at_ms = 0;
            live--;
        } else if (srv->ctl->sc_state[i] == L3_OBS_SLOT_RUNNING) {
            L3_LOG(L3_LOG_INFO, "worker %u (pid %d) retiring", i, (int)srv->sup->workers[i].pid);
            srv->sup->workers[i].retire_deadline_ms = now + srv->cfg.server.shutdown_timeout_ms + 2000;
            set_state(srv, i, L3_OBS_SLOT_RETIRING, srv->sup->workers[i].pid);
            live--;
        }
    }
    for (uint32_t i = 0; i < max; i++)
        if (srv->ctl->sc_state[i] == L3_OBS_SLOT_RETIRING && srv->sup->workers[i].pid > 0 &&
            srv->sup->workers[i].retire_deadline_ms != 0 && now >= srv->sup->workers[i].retire_deadline_ms) {
            L3_LOG(L3_LOG_WARN, "worker %u (pid %d) did not retire in time; killing it", i,
                   (int)srv->sup->workers[i].pid);
            kill(srv->sup->workers[i].pid, SIGKILL);
            srv->sup->workers[i].retire_deadline_ms = 0;
        }
    uint32_t running = 0;
    for (uint32_t i = 0; i < max; i++)
        running += srv->ctl->sc_state[i] == L3_OBS_SLOT_RUNNING;
    l3_obs_set_workers(&srv->obs, running);
}

static bool any_worker(const l3_srv_t *srv, const void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        if (srv->sup->workers[i].pid > 0)
            return true;
    return false;
}

static bool any_child(const l3_srv_t *srv, const void *arg)
{
    if (any_worker(srv, arg))
        return true;
    for (unsigned r = 0; r < srv->sup->nroles; r++)
        if (srv->sup->roles[r].ch.pid > 0)
            return true;
    return false;
}

/* The role `arg` (a role_t) still has its child. */
static bool role_alive(const l3_srv_t *srv, const void *arg)
{
    (void)srv;
    return ((const role_t *)arg)->ch.pid > 0;
}

/* Wait for children (reaping) until pred(srv, arg) is false or the deadline passes. */
static void wait_children(l3_srv_t *srv, bool (*pred)(const l3_srv_t *, const void *), const void *arg,
                          uint64_t deadline, const sigset_t *set)
{
    while (pred(srv, arg) && now_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000000L};
        (void)sigtimedwait(set, NULL, &ts);
        reap(srv, true);
    }
}

/*
 * Graceful stop, second half: the roles (the WAL writer) stop after the workers so they
 * can finish what was acknowledged. A role whose child is down (crashed and waiting out
 * its restart backoff, or never started) is started at once: the stop must not depend on
 * the state it happened to be in. Each role's stopped hook then says whether everything
 * it owed is done; any failure makes the supervisor exit non-zero (stop_failed).
 */
static void stop_roles(l3_srv_t *srv, const sigset_t *set)
{
    for (unsigned r = 0; r < srv->sup->nroles; r++) {
        role_t *ro = &srv->sup->roles[r];
        if (ro->ops->main == NULL || ro->ch.pid > 0)
            continue;
        L3_LOG(L3_LOG_WARN, "%s is not running: starting it at once for the stop", ro->ops->name);
        ro->ch.restart_at_ms = 0;
        if (spawn_role(srv, ro) < 0)
            srv->sup->stop_failed = true;
    }
    /* in the reverse order of registration, each one gone before the next is asked: a role
     * registered later may depend on an earlier one (the replication follower writes
     * through the WAL writer) */
    for (unsigned r = srv->sup->nroles; r-- > 0;) {
        role_t *ro = &srv->sup->roles[r];
        uint64_t deadline = now_ms() + L3_MAX(srv->cfg.server.shutdown_timeout_ms + 2000ull,
                                              (unsigned long long)ro->ops->stop_ms);
        if (ro->ch.pid > 0)
            kill(ro->ch.pid, SIGTERM);
        wait_children(srv, role_alive, ro, deadline, set);
    }
    for (unsigned r = 0; r < srv->sup->nroles; r++)
        if (srv->sup->roles[r].ch.pid > 0) {
            L3_LOG(L3_LOG_WARN, "%s (pid %d) still running; killing it", srv->sup->roles[r].ops->name,
                   (int)srv->sup->roles[r].ch.pid);
            kill(srv->sup->roles[r].ch.pid, SIGKILL);
        }
    wait_children(srv, any_child, NULL, now_ms() + 2000, set);
    for (unsigned r = 0; r < srv->sup->nroles; r++)
        if (srv->sup->roles[r].ops->stopped != NULL &&
            srv->sup->roles[r].ops->stopped(srv->sup->roles[r].arg) < 0)
            srv->sup->stop_failed = true;
}

static void graceful_stop(l3_srv_t *srv, const sigset_t *set)
{
    __atomic_store_n(&srv->ctl->sc_stop, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&srv->ctl->sc_gen, 1, __ATOMIC_RELEASE);
    for (uint32_t i = 0; i < srv->nsock; i++) /* stop accepting: drop our references first */
        if (srv->lfds[i] >= 0) {
            close(srv->lfds[i]);
            srv->lfds[i] = -1;
        }
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        if (srv->sup->workers[i].pid > 0)
            kill(srv->sup->workers[i].pid, SIGTERM);
    uint64_t deadline = now_ms() + srv->cfg.server.shutdown_timeout_ms + 2000;
    wait_children(srv, any_worker, NULL, deadline, set);
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        if (srv->sup->workers[i].pid > 0) {
            L3_LOG(L3_LOG_WARN, "worker %u (pid %d) still running; killing it", i,
                   (int)srv->sup->workers[i].pid);
            kill(srv->sup->workers[i].pid, SIGKILL);
        }
    wait_children(srv, any_worker, NULL, now_ms() + 2000, set);
    for (unsigned r = 0; r < srv->sup->nroles;
         r++) /* e.g. a running checkpoint is abandoned (safe at any point) */
        if (srv->sup->roles[r].ops->stop_tasks != NULL)
            srv->sup->roles[r].ops->stop_tasks(srv->sup->roles[r].arg);
    stop_roles(srv, set);
}

/* The operator's signals other than a stop (taken synchronously by the loop). */
static void on_signal(l3_srv_t *srv, int sig)
{
    if (sig == SIGHUP) {
        int rc = l3_srv_log_reopen();
        if (rc < 0)
            L3_LOG(L3_LOG_ERROR, "cannot reopen log: %s", strerror(-rc));
        else
            L3_LOG(L3_LOG_INFO, "SIGHUP: logs reopened");
        l3_auth_reload("supervisor"); /* workers forked later inherit the new tokens */
        l3_access_reopen();
        for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
            if (srv->sup->workers[i].pid > 0)
                kill(srv->sup->workers[i].pid, SIGHUP);
    }
    if (sig == SIGRTMIN) {
        L3_LOG(L3_LOG_INFO, "checkpoint requested");
        for (unsigned r = 0; r < srv->sup->nroles; r++)
            if (srv->sup->roles[r].ops->request != NULL)
                srv->sup->roles[r].ops->request(srv->sup->roles[r].arg);
    }
    if (sig == SIGUSR1) /* operator: one worker more */
        l3_srv_set_workers(srv, srv->sup->want_workers + 1);
    if (sig == SIGUSR2 && srv->sup->want_workers > 0) /* operator: one worker less */
        l3_srv_set_workers(srv, srv->sup->want_workers - 1);
}

int l3_srv_run(l3_srv_t *srv)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN); /* checkpoint now (POST /admin/checkpoint, or kill -RTMIN) */
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    L3_LOG(L3_LOG_INFO, "listening on %s:%u (%s, %u sockets), workers %u..%u, arena %llu MiB, durability %s",
           srv->cfg.server.address, srv->port, srv->ssl_ctx ? "https" : "http", srv->nsock,
           srv->cfg.server.min_workers, srv->cfg.server.max_workers,
           (unsigned long long)(srv->cfg.storage.arena_bytes >> 20),
           srv->cfg.storage.replicated ? "replicated" : l3_srv_durability_name(srv->cfg.storage.durability));
    for (unsigned r = 0; r < srv->sup->nroles; r++)
        spawn_role(srv, &srv->sup->roles[r]);
    apply_scale(srv);
    /* recovery is done and the sockets listen: tell systemd (Type=notify) we are ready */
    sd_notify_msg("READY=1\nSTATUS=serving");

    uint64_t next_tick = now_ms() + srv->cfg.autoscale.interval_ms;
    uint64_t last_watchdog = 0;
    for (;;) {
        struct timespec ts = {0, 100 * 1000000L};
        siginfo_t si;
        int sig = sigtimedwait(&set, &si, &ts);
        if (now_ms() - last_watchdog >= 1000 && live_workers(srv) > 0) { /* WatchdogSec= */
            sd_notify_msg("WATCHDOG=1"); /* only while the loop runs and a worker serves */
            last_watchdog = now_ms();
        }
        if (sig == SIGTERM || sig == SIGINT) {
            L3_LOG(L3_LOG_INFO, "%s: stopping (in-flight requests get up to %u ms)", strsignal(sig),
                   srv->cfg.server.shutdown_timeout_ms);
            sd_notify_msg("STOPPING=1");
            break;
        }
        on_signal(srv, sig);
        reap(srv, false);
        if (srv->store != NULL && l3_store_poisoned(srv->store)) {
            L3_LOG(L3_LOG_ERROR,
                   "store: the arena is poisoned (a lock repair could not complete): stopping so "
                   "that the next start rebuilds it from the snapshot and the WAL (exit %d)",
                   L3_SRV_EXIT_POISONED);
            srv->sup->poisoned = true;
            sd_notify_msg("STOPPING=1\nSTATUS=arena poisoned, restarting to rebuild from the WAL");
            break;
        }
        uint64_t now = now_ms();
        if (srv->sup->tick_fn != NULL && now >= next_tick) {
            next_tick = now + srv->cfg.autoscale.interval_ms;
            l3_obs_totals_t t;
            l3_obs_totals(&srv->obs, &t);
            uint32_t n = srv->sup->tick_fn(srv, srv->sup->tick_arg, live_workers(srv),
                                           l3_srv_queue_depth(srv, &t), &t);
            if (n != 0)
                l3_srv_set_workers(srv, n);
        }
        apply_scale(srv);
        for (unsigned r = 0; r < srv->sup->nroles; r++)
            if (srv->sup->roles[r].ops->tick != NULL)
                srv->sup->roles[r].ops->tick(srv->sup->roles[r].arg);
    }
    graceful_stop(srv, &set);
    if (srv->store != NULL) {
        /* after a failed stop the arena still holds what did not reach the disk: leave it
         * in /dev/shm for the next start instead of deleting it */
        if (!srv->sup->stop_failed)
            l3_store_unlink(srv->store);
        l3_store_close(srv->store);
        srv->store = NULL;
    }
    if (srv->sup->stop_failed) {
        L3_LOG(L3_LOG_ERROR, "stopped, but the WAL was not fully flushed: acknowledged writes may be lost "
                             "(the arena is left in /dev/shm)");
        return 1;
    }
    if (srv->sup->poisoned) {
        L3_LOG(L3_LOG_ERROR, "stopped: the WAL holds every acknowledged write; a restart rebuilds the arena");
        return L3_SRV_EXIT_POISONED;
    }
    L3_LOG(L3_LOG_INFO, "stopped");
    return 0;
}
