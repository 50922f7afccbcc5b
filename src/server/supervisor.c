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
 * Sockets: server.max_workers listening sockets bound to the same address with
 * SO_REUSEPORT, created once and held open by the supervisor for the life of the server.
 * The kernel spreads new connections over them by a hash of the 4-tuple; each socket is
 * served by one live worker (l3_srv_ctl_serves). A worker that retires or crashes leaves its
 * sockets open (the supervisor and its siblings still hold them), another worker adopts
 * them at its next 100 ms tick, and nothing queued on them is lost.
 *
 * Invariants: a slot is RUNNING iff a child with sc_pid[slot] was forked and not yet
 * reaped; every reaped pid is passed to l3_store_proc_reap() before its slot is reused.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
#include "server.h"
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
    const char *name;
    l3_srv_role_main_fn fn;
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
    if (path == NULL || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
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

static child_t workers[L3_SRV_MAX_WORKERS];
/* Set when a role (the WAL writer) did not exit cleanly during the graceful stop: the
 * supervisor then exits non-zero, because acknowledged writes may not be on disk. */
static bool stop_failed;
static role_t roles[MAX_ROLES];
static unsigned nroles;
static uint32_t want_workers;
static l3_srv_tick_fn tick_fn;
static void *tick_arg;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool l3_srv_ctl_serves(const l3_srv_ctl_t *ctl, uint32_t slot, uint32_t sock)
{
    uint32_t live[L3_SRV_MAX_WORKERS], n = 0;
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        if (__atomic_load_n(&ctl->sc_state[i], __ATOMIC_ACQUIRE) == L3_OBS_SLOT_RUNNING)
            live[n++] = i;
    return n > 0 && live[sock % n] == slot;
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

static int open_listeners(l3_srv_t *srv, char *errbuf, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%u", srv->cfg.server.port);
    int rc = getaddrinfo(srv->cfg.server.address, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(errbuf, errlen, "config: 'server.address' %s: %s", srv->cfg.server.address, gai_strerror(rc));
        return -EINVAL;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = (socklen_t)res->ai_addrlen;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    int family = res->ai_family;
    freeaddrinfo(res);

    srv->nsock = srv->cfg.server.max_workers;
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        srv->lfds[i] = -1;
    if (srv->cfg.server.port != 0) {
        /* SO_REUSEPORT would let a second server silently share the port with a running
         * one: probe with a plain bind first, which fails if anything listens there. */
        int probe = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
        if (probe < 0)
            goto fail_errno;
        (void)setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (family == AF_INET6)
            (void)setsockopt(probe, IPPROTO_IPV6, IPV6_V6ONLY, &(int){0}, sizeof(int));
        if (bind(probe, (struct sockaddr *)&ss, sslen) != 0) {
            int e = errno;
            close(probe);
            errno = e;
            goto fail_errno;
        }
        close(probe);
    }
    for (uint32_t i = 0; i < srv->nsock; i++) {
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
        if (fd < 0)
            goto fail_errno;
        srv->lfds[i] = fd;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
            goto fail_errno;
        if (family == AF_INET6)
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int){0}, sizeof(int));
        if (bind(fd, (struct sockaddr *)&ss, sslen) != 0)
            goto fail_errno;
        if (i == 0) { /* port 0: every later socket joins the port the kernel chose */
            if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0)
                goto fail_errno;
            srv->port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
        }
        if (listen(fd, 4096) != 0)
            goto fail_errno;
    }
    return 0;
fail_errno:
    rc = -errno;
    snprintf(errbuf, errlen, "cannot listen on %s:%u: %s", srv->cfg.server.address, srv->cfg.server.port,
             strerror(errno));
    for (uint32_t i = 0; i < srv->nsock; i++)
        if (srv->lfds[i] >= 0) {
            close(srv->lfds[i]);
            srv->lfds[i] = -1;
        }
    return rc;
}

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
            if (mkdir(buf, 0750) != 0 && errno != EEXIST)
                return -errno;
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

    srv->ctl = mmap(NULL, sizeof(l3_srv_ctl_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (srv->ctl == MAP_FAILED) {
        srv->ctl = NULL;
        return -errno;
    }
    srv->ctl->sc_magic = L3_SRV_CTL_MAGIC;

    if ((rc = open_listeners(srv, err, sizeof(err))) < 0 || (rc = l3_srv_h2o_setup(srv, err, sizeof(err))) < 0) {
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
    };
    /* arenas of instances that died without cleaning up (SIGKILL, power cut of the
     * processes) would hold their memory in /dev/shm until reboot */
    int swept = l3_store_sweep_stale(0);
    if (swept > 0)
        L3_LOG(L3_LOG_INFO, "removed %d shared-memory arena(s) left by instances that no longer run", swept);
    if ((rc = l3_store_create(&so, &srv->store)) < 0) {
        L3_LOG(L3_LOG_ERROR,
               "cannot create the store arena ('storage.arena_bytes' %llu, 'storage.wal_buffer_bytes' %llu): %s",
               (unsigned long long)so.arena_bytes, (unsigned long long)so.wal_ring_bytes, l3_strerror(rc));
        return rc;
    }
    size_t olen = 0;
    void *oreg = l3_store_obs_region(srv->store, &olen);
    if ((rc = l3_obs_format(oreg, olen, srv->cfg.server.max_workers, (uint64_t)time(NULL) * 1000000000ull)) < 0 ||
        (rc = l3_obs_attach(&srv->obs, oreg, olen)) < 0) {
        L3_LOG(L3_LOG_ERROR, "metrics region too small (%zu bytes)", olen);
        l3_store_unlink(srv->store);
        l3_store_close(srv->store);
        srv->store = NULL;
        return rc;
    }

    srv->ctl->sc_nsock = srv->nsock;
    want_workers = srv->cfg.server.min_workers;
    return 0;
}

int l3_srv_add_role(l3_srv_t *srv, const char *name, l3_srv_role_main_fn fn, void *arg)
{
    (void)srv;
    if (nroles >= MAX_ROLES)
        return -ENOSPC;
    roles[nroles++] = (role_t){.name = name, .fn = fn, .arg = arg};
    return 0;
}

void l3_srv_set_tick(l3_srv_t *srv, l3_srv_tick_fn fn, void *arg)
{
    (void)srv;
    tick_fn = fn;
    tick_arg = arg;
}

void l3_srv_set_workers(l3_srv_t *srv, uint32_t n)
{
    if (n < srv->cfg.server.min_workers)
        n = srv->cfg.server.min_workers;
    if (n > srv->cfg.server.max_workers)
        n = srv->cfg.server.max_workers;
    if (n != want_workers)
        L3_LOG(L3_LOG_INFO, "scaling workers %u -> %u", want_workers, n);
    want_workers = n;
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
    (void)srv;
    double sum = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++) {
        child_t *w = &workers[i];
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
    uint64_t n = 0;
    for (uint32_t i = 0; i < srv->nsock; i++) {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        /* for a listening socket the kernel reports the accept queue length in tcpi_unacked */
        if (srv->lfds[i] >= 0 && getsockopt(srv->lfds[i], IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
            n += ti.tcpi_unacked;
    }
    return n;
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
        l3_srv_worker_main(srv, slot);
    }
    workers[slot].pid = pid;
    workers[slot].started_ms = now_ms();
    workers[slot].restart_at_ms = 0;
    workers[slot].retire_deadline_ms = 0;
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
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        L3_LOG(L3_LOG_ERROR, "fork %s: %s", r->name, strerror(errno));
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
        int code = r->fn(srv, r->arg);
        _exit(code & 0xff);
    }
    r->ch.pid = pid;
    r->ch.started_ms = now_ms();
    r->ch.restart_at_ms = 0;
    L3_LOG(L3_LOG_INFO, "%s started (pid %d)", r->name, (int)pid);
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
            if (workers[i].pid != pid)
                continue;
            found = true;
            uint32_t st = srv->ctl->sc_state[i];
            workers[i].pid = 0;
            l3_obs_slot_t *os = l3_obs_slot(&srv->obs, i);
            if (os != NULL) {
                __atomic_store_n(&os->os_active_conns, 0, __ATOMIC_RELAXED);
                __atomic_store_n(&os->os_inflight, 0, __ATOMIC_RELAXED);
            }
            set_state(srv, i, L3_OBS_SLOT_EMPTY, 0);
            bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            if (stopping || (st == L3_OBS_SLOT_RETIRING && clean)) {
                L3_LOG(L3_LOG_INFO, "worker %u (pid %d) exited: %s", i, (int)pid, how);
            } else {
                schedule_restart(&workers[i], now);
                if (os != NULL)
                    l3_obs_add(&os->os_restarts, 1);
                L3_LOG(L3_LOG_WARN, "worker %u (pid %d) died: %s; restarting in %u ms", i, (int)pid, how,
                       workers[i].backoff_ms);
            }
        }
        for (unsigned r = 0; r < nroles && !found; r++) {
            if (roles[r].ch.pid != pid)
                continue;
            found = true;
            roles[r].ch.pid = 0;
            if (stopping) {
                bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                if (!clean)
                    stop_failed = true; /* e.g. the WAL writer could not drain: not a clean stop */
                L3_LOG(clean ? L3_LOG_INFO : L3_LOG_ERROR, "%s (pid %d) exited: %s", roles[r].name, (int)pid, how);
            } else {
                schedule_restart(&roles[r].ch, now);
                L3_LOG(L3_LOG_WARN, "%s (pid %d) died: %s; restarting in %u ms", roles[r].name, (int)pid, how,
                       roles[r].ch.backoff_ms);
            }
        }
        if (!found && !l3_srv_wal_child_exited(srv, pid, status))
            L3_LOG(L3_LOG_DEBUG, "reaped unknown child %d: %s", (int)pid, how);
    }
}

static uint32_t live_workers(const l3_srv_t *srv)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < srv->cfg.server.max_workers; i++)
        if (srv->ctl->sc_state[i] == L3_OBS_SLOT_RUNNING || workers[i].restart_at_ms != 0)
            n++;
    return n;
}

/* Move the worker table toward want_workers and run due restarts. */
static void apply_scale(l3_srv_t *srv)
{
    uint64_t now = now_ms();
    uint32_t max = srv->cfg.server.max_workers;
    for (uint32_t i = 0; i < max; i++)
        if (workers[i].restart_at_ms != 0 && now >= workers[i].restart_at_ms) {
            workers[i].restart_at_ms = 0;
            uint32_t live = live_workers(srv);
            if (live < want_workers) /* still wanted */
                spawn_worker(srv, i);
        }
    for (unsigned r = 0; r < nroles; r++)
        if (roles[r].ch.restart_at_ms != 0 && now >= roles[r].ch.restart_at_ms) {
            roles[r].ch.restart_at_ms = 0;
            spawn_role(srv, &roles[r]);
        }
    uint32_t live = live_workers(srv);
    for (uint32_t i = 0; i < max && live < want_workers; i++)
        if (srv->ctl->sc_state[i] == L3_OBS_SLOT_EMPTY && workers[i].pid == 0 && workers[i].restart_at_ms == 0) {
            if (spawn_worker(srv, i) == 0)
                live++;
            else
                break;
        }
    for (uint32_t i = max; i-- > 0 && live > want_workers;) {
        if (workers[i].restart_at_ms != 0) {
            workers[i].restart_at_ms = 0;
            live--;
        } else if (srv->ctl->sc_state[i] == L3_OBS_SLOT_RUNNING) {
            L3_LOG(L3_LOG_INFO, "worker %u (pid %d) retiring", i, (int)workers[i].pid);
            workers[i].retire_deadline_ms = now + srv->cfg.server.shutdown_timeout_ms + 2000;
            set_state(srv, i, L3_OBS_SLOT_RETIRING, workers[i].pid);
            live--;
        }
    }
    for (uint32_t i = 0; i < max; i++)
        if (srv->ctl->sc_state[i] == L3_OBS_SLOT_RETIRING && workers[i].pid > 0 &&
            workers[i].retire_deadline_ms != 0 && now >= workers[i].retire_deadline_ms) {
            L3_LOG(L3_LOG_WARN, "worker %u (pid %d) did not retire in time; killing it", i, (int)workers[i].pid);
            kill(workers[i].pid, SIGKILL);
            workers[i].retire_deadline_ms = 0;
        }
    uint32_t running = 0;
    for (uint32_t i = 0; i < max; i++)
        running += srv->ctl->sc_state[i] == L3_OBS_SLOT_RUNNING;
    l3_obs_set_workers(&srv->obs, running);
}

static bool any_child(void)
{
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        if (workers[i].pid > 0)
            return true;
    for (unsigned r = 0; r < nroles; r++)
        if (roles[r].ch.pid > 0)
            return true;
    return false;
}

static bool any_worker(void)
{
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        if (workers[i].pid > 0)
            return true;
    return false;
}

/* Wait for children (reaping) until `pred` is false or the deadline passes. */
static void wait_children(l3_srv_t *srv, bool (*pred)(void), uint64_t deadline, const sigset_t *set)
{
    while (pred() && now_ms() < deadline) {
        struct timespec ts = {0, 50 * 1000000L};
        (void)sigtimedwait(set, NULL, &ts);
        reap(srv, true);
    }
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
        if (workers[i].pid > 0)
            kill(workers[i].pid, SIGTERM);
    uint64_t deadline = now_ms() + srv->cfg.server.shutdown_timeout_ms + 2000;
    wait_children(srv, any_worker, deadline, set);
    for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
        if (workers[i].pid > 0) {
            L3_LOG(L3_LOG_WARN, "worker %u (pid %d) still running; killing it", i, (int)workers[i].pid);
            kill(workers[i].pid, SIGKILL);
        }
    wait_children(srv, any_worker, now_ms() + 2000, set);
    l3_srv_wal_stop_tasks(srv); /* a running checkpoint is abandoned (safe at any point) */
    /* Roles (the WAL writer) stop after the workers so they can drain what was acknowledged. */
    for (unsigned r = 0; r < nroles; r++)
        if (roles[r].ch.pid > 0)
            kill(roles[r].ch.pid, SIGTERM);
    wait_children(srv, any_child, now_ms() + srv->cfg.server.shutdown_timeout_ms + 2000, set);
    for (unsigned r = 0; r < nroles; r++)
        if (roles[r].ch.pid > 0) {
            L3_LOG(L3_LOG_WARN, "%s (pid %d) still running; killing it", roles[r].name, (int)roles[r].ch.pid);
            kill(roles[r].ch.pid, SIGKILL);
        }
    wait_children(srv, any_child, now_ms() + 2000, set);
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
           l3_srv_durability_name(srv->cfg.storage.durability));
    for (unsigned r = 0; r < nroles; r++)
        spawn_role(srv, &roles[r]);
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
        if (sig == SIGHUP) {
            int rc = l3_srv_log_reopen();
            if (rc < 0)
                L3_LOG(L3_LOG_ERROR, "cannot reopen log: %s", strerror(-rc));
            else
                L3_LOG(L3_LOG_INFO, "SIGHUP: logs reopened");
            l3_auth_reload("supervisor"); /* workers forked later inherit the new tokens */
            l3_access_reopen();
            for (uint32_t i = 0; i < L3_SRV_MAX_WORKERS; i++)
                if (workers[i].pid > 0)
                    kill(workers[i].pid, SIGHUP);
        }
        if (sig == SIGRTMIN) {
            L3_LOG(L3_LOG_INFO, "checkpoint requested");
            l3_srv_wal_request_checkpoint(srv);
        }
        if (sig == SIGUSR1) /* operator: one worker more */
            l3_srv_set_workers(srv, want_workers + 1);
        if (sig == SIGUSR2 && want_workers > 0) /* operator: one worker less */
            l3_srv_set_workers(srv, want_workers - 1);
        reap(srv, false);
        uint64_t now = now_ms();
        if (tick_fn != NULL && now >= next_tick) {
            next_tick = now + srv->cfg.autoscale.interval_ms;
            l3_obs_totals_t t;
            l3_obs_totals(&srv->obs, &t);
            uint32_t n = tick_fn(srv, tick_arg, live_workers(srv), l3_srv_queue_depth(srv, &t), &t);
            if (n != 0)
                l3_srv_set_workers(srv, n);
        }
        apply_scale(srv);
        l3_srv_wal_tick(srv);
    }
    graceful_stop(srv, &set);
    if (srv->store != NULL) {
        l3_store_unlink(srv->store);
        l3_store_close(srv->store);
        srv->store = NULL;
    }
    if (stop_failed) {
        L3_LOG(L3_LOG_ERROR, "stopped, but the WAL was not fully flushed: acknowledged writes may be lost");
        return 1;
    }
    L3_LOG(L3_LOG_INFO, "stopped");
    return 0;
}
