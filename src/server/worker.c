/* SPDX-License-Identifier: MIT */
/*
 * worker.c - one HTTP worker process: a libh2o evloop serving the listening sockets the
 * control block assigns to its slot.
 *
 * Process: forked by the supervisor; one thread. Everything here is process-local
 * except the store (shared arena, per-document locks) and this slot's metrics block
 * (single writer: this process).
 *
 * Life cycle:
 *   start  -> register in the store, build the h2o context, start the 100 ms ticker,
 *             read_start the sockets assigned to this slot
 *   tick   -> re-read the control block when sc_gen changed (adopt or drop sockets),
 *             account bytes written on open connections, heartbeat, SIGHUP log reopen;
 *             the control block is also re-read at once on L3_SRV_CTL_SIGNAL (a sibling died)
 *   stop   -> (SIGTERM/SIGINT, or the slot marked RETIRING) stop reading every listener,
 *             request h2o shutdown (GOAWAY / Connection: close), evict idle keep-alive
 *             connections (about 1 s, not while a request body is arriving), wait for
 *             open connections up to
 *             server.shutdown_timeout_ms, unregister from the store, _exit(0).
 * A retiring worker never closes a socket's last reference: the supervisor keeps every
 * listening fd open, so connections queued on a socket this worker served wait for the
 * worker that adopts it instead of being reset.
 *
 * Invariants: listeners[i] is read_started iff this slot serves socket i and we are not
 * stopping or paused after EMFILE; active_conns equals the number of accepted sockets
 * whose on_close has not run; a connection's subject is set only by tls.c's handshake
 * callback, for a client certificate that verified (auth.c grants cert_subject entries
 * from it).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>
#include <openssl/ssl.h>

#include "l3kv-config.h"
#include "l3kv/wal.h"
#include "errmap.h"
#include "log.h"
#include "route_feed.h"
#include "routes.h"
#include "access.h"
#include "auth.h"
#include "ctl.h"
#include "supervisor.h"
#include "tls.h"
#include "l3kv/store.h"
#include "replica.h"
#include "worker.h"

/* Slack above server.max_body_bytes given to h2o's own limit: bodies up to it reach the
 * handler, which answers a clean JSON 413 on every protocol; HTTP/1 bodies announced
 * larger are refused by h2o before they are read, so memory stays bounded. */
#define ENTITY_SLACK (1u << 20)

static h2o_globalconf_t globalconf;
static l3_routes_handler_t *api; /* the routes' handler; its environment is set after fork */

/*
 * Errors h2o answers by itself, before a request reaches the handler (a body announced
 * above the entity limit: 413; broken chunked encoding: 400), are sent through the host's
 * fallback path. This filter there turns their text/plain body into the API's JSON error
 * body {"error": ..., "detail": <h2o's text>}; everything the handler sends is untouched
 * (its requests use the "/" path, which has no filters).
 */
typedef struct {
    h2o_ostream_t super;
    bool sent;
} json_err_ostream_t;

static const char *json_err_code(int status)
{
    switch (status) {
    case 413:
        return "too_large";
    case 414:
        return "uri_too_long";
    case 400:
        return "bad_request";
    default:
        return status >= 500 ? "internal" : "bad_request";
    }
}

static void json_err_send(h2o_ostream_t *os, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
                          h2o_send_state_t state)
{
    json_err_ostream_t *self = (void *)os;
    if (self->sent) {
        h2o_ostream_send_next(os, req, NULL, 0, state);
        return;
    }
    self->sent = true;
    char detail[256];
    size_t dl = 0;
    for (size_t i = 0; i < bufcnt; i++)
        for (size_t j = 0; j < bufs[i].len && dl < sizeof(detail) - 1; j++) {
            char c = bufs[i].base[j];
            detail[dl++] = (unsigned char)c < 0x20 ? ' ' : c; /* h2o's text ends with a newline */
        }
    while (dl > 0 && detail[dl - 1] == ' ')
        dl--;
    detail[dl] = '\0';
    h2o_iovec_t body;
    size_t cap = sizeof(detail) * 6 + 96;
    body.base = h2o_mem_alloc_pool(&req->pool, cap);
    body.len = l3_srv_err_json(body.base, cap, json_err_code(req->res.status), detail);
    req->res.content_length = body.len;
    h2o_ostream_send_next(os, req, &body, 1, state);
}

static void linger_after_close(h2o_conn_t *hc);

static void json_err_setup(h2o_filter_t *f, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)f;
    if (req->res.status >= 400) {
        linger_after_close(req->conn); /* h2o closes right after this response */
        ssize_t ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
        if (ct != -1)
            req->res.headers.entries[ct].value = h2o_iovec_init(H2O_STRLIT("application/json"));
        else
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                           H2O_STRLIT("application/json"));
        json_err_ostream_t *os = (void *)h2o_add_ostream(req, sizeof(*os), slot);
        os->super.do_send = json_err_send;
        os->sent = false;
        slot = &os->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

static void on_tls_peer(void *sock, const char *subject);

int l3_srv_h2o_setup(l3_srv_t *srv, char *errbuf, size_t errlen)
{
    h2o_config_init(&globalconf);
    globalconf.server_name = h2o_iovec_init(H2O_STRLIT("l3kv/" L3KV_VERSION));
    globalconf.max_request_entity_size = (size_t)srv->cfg.server.max_body_bytes + ENTITY_SLACK;
    globalconf.http1.req_timeout = srv->cfg.server.idle_timeout_ms;
    globalconf.http2.idle_timeout = srv->cfg.server.idle_timeout_ms;
    globalconf.http2.graceful_shutdown_timeout = srv->cfg.server.shutdown_timeout_ms;
    h2o_hostconf_t *host =
        h2o_config_register_host(&globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    api = l3_routes_register(pc);
    h2o_filter_t *ef = h2o_create_filter(&host->fallback_path, sizeof(*ef));
    ef->on_setup_ostream = json_err_setup;
    srv->h2o_globalconf = &globalconf;

    SSL_CTX *ssl = NULL;
    int rc = l3_srv_tls_setup(&srv->cfg, on_tls_peer, &ssl, errbuf, errlen);
    srv->ssl_ctx = ssl;
    if (rc != 0)
        return rc;
    return 0;
}

/* ---------------------------------------------------------------- per-process state */

typedef struct conn {
    h2o_socket_t *sock;
    size_t tx;      /* bytes written already added to the slot counters */
    size_t in_seen; /* graceful stop: buffered input size at the last look */
    int linger_fd;  /* >= 0: a dup of the fd, drained after h2o closes (lingering close) */
    char *subject;  /* the verified client certificate's subject (tls.c), or NULL */
    struct conn *prev, *next;
} conn_t;

static l3_srv_t *srv;
static uint32_t my_slot;
static h2o_context_t ctx;
static h2o_accept_ctx_t accept_ctx;
static h2o_socket_t *listeners[L3_SRV_MAX_WORKERS];
static bool reading[L3_SRV_MAX_WORKERS];
static bool paused; /* after EMFILE */
static bool stopping;
static uint32_t seen_gen;
static int64_t active_conns;
static conn_t conns = {.prev = &conns, .next = &conns};
static volatile sig_atomic_t stop_flag, hup_flag, ctl_flag;
static h2o_timeout_t tick_timeout, pause_timeout, linger_timeout;
static h2o_timeout_entry_t tick_entry, pause_entry;
static l3_obs_slot_t *my_obs;
static int64_t max_active; /* per-worker connection limit before 503 */

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        hup_flag = 1;
    else if (sig == L3_SRV_CTL_SIGNAL)
        ctl_flag = 1; /* the control block changed: re-read it now, not at the next tick */
    else
        stop_flag = 1;
}

static void set_active(void)
{
    __atomic_store_n(&my_obs->os_active_conns, active_conns, __ATOMIC_RELAXED);
}

static void account(conn_t *c)
{
    /* bytes_read is not maintained by the 2.2.5 evloop for plain sockets, so received
     * bytes are counted per request in routes.c; bytes_written is exact. */
    size_t w = c->sock->bytes_written;
    if (w > c->tx) {
        l3_obs_add(&my_obs->os_bytes_tx, w - c->tx);
        c->tx = w;
    }
}

/* Graceful stop: has any connection's buffered input (a request still being received)
 * changed since the last look? */
static bool uploads_progressing(void)
{
    bool any = false;
    for (conn_t *c = conns.next; c != &conns; c = c->next) {
        size_t in = c->sock->input != NULL ? c->sock->input->size : 0;
        if (in != c->in_seen)
            any = true;
        c->in_seen = in;
    }
    return any;
}

/*
 * Lingering close. h2o answers a request it refuses before reading the body (413 for a
 * body announced above the limit, 400 for broken chunking) and closes the connection
 * while the client may still be sending; the client's next bytes then meet a closed
 * socket, the kernel resets the connection, and a client that reads only after sending
 * (Python requests, for one) loses the answer. So such a connection's fd is dup'ed first;
 * once h2o has closed its copy the response is in the kernel, and the dup sends FIN and
 * reads and discards what the client still sends, until it closes, LINGER_MAX_BYTES or
 * LINGER_MS: memory stays flat and the client reads its 413.
 */
#define LINGER_MS 5000
#define LINGER_MAX_BYTES (256ull << 20)

typedef struct {
    h2o_socket_t *sock;
    h2o_timeout_entry_t timer;
    uint64_t bytes;
} linger_t;

static void linger_end(linger_t *l)
{
    h2o_timeout_unlink(&l->timer);
    h2o_socket_close(l->sock);
    free(l);
}

static void on_linger_timeout(h2o_timeout_entry_t *e)
{
    linger_end(H2O_STRUCT_FROM_MEMBER(linger_t, timer, e));
}

static void on_linger_read(h2o_socket_t *sock, const char *err)
{
    linger_t *l = sock->data;
    if (err == NULL) {
        l->bytes += sock->input->size;
        h2o_buffer_consume(&sock->input, sock->input->size);
    }
    if (err != NULL || l->bytes > LINGER_MAX_BYTES)
        linger_end(l);
}

static void linger_start(int fd)
{
    linger_t *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        close(fd);
        return;
    }
    (void)shutdown(fd, SHUT_WR); /* FIN after the response h2o wrote */
    l->sock = h2o_evloop_socket_create(ctx.loop, fd, 0);
    l->sock->data = l;
    l->timer.cb = on_linger_timeout;
    h2o_timeout_link(ctx.loop, &linger_timeout, &l->timer);
    h2o_socket_read_start(l->sock, on_linger_read);
}

static void linger_after_close(h2o_conn_t *hc)
{
    for (conn_t *c = conns.next; c != &conns; c = c->next) {
        if (c->sock->data != (void *)hc) /* an HTTP/1 connection's socket data is its h2o_conn_t */
            continue;
        if (c->linger_fd < 0)
            c->linger_fd = fcntl(h2o_socket_get_fd(c->sock), F_DUPFD_CLOEXEC, 0);
        return;
    }
}

/* Is this connection beyond the first max_active ones still open (in accept order)?
 * O(open connections), but walked only while the worker is over its limit. */
static bool conn_over_limit(const void *hc)
{
    if (active_conns <= max_active)
        return false;
    /* conns is newest first: walk from the oldest; HTTP/1 and HTTP/2 connections keep
     * their h2o_conn_t in the socket's data */
    int64_t older = 0;
    for (conn_t *c = conns.prev; c != &conns; c = c->prev, older++)
        if (c->sock->data == hc)
            return older >= max_active;
    return true; /* not found (a TLS handshake in progress cannot send requests) */
}

static uint64_t accept_queue(const void *arg)
{
    return l3_srv_accept_queue(arg);
}

static void linger_conn(void *hc)
{
    linger_after_close(hc);
}

static void on_conn_close(void *data);

/* tls.c: a handshake completed with a verified client certificate. Kept with the
 * connection (renegotiation is off, so it cannot change; a TLS 1.3 post-handshake event
 * reports the same certificate again). */
static void on_tls_peer(void *s, const char *subject)
{
    h2o_socket_t *sock = s;
    if (sock == NULL || sock->on_close.cb != on_conn_close)
        return;
    conn_t *c = sock->on_close.data;
    if (c->subject != NULL && strcmp(c->subject, subject) == 0)
        return;
    free(c->subject);
    c->subject = strdup(subject); /* NULL on ENOMEM: the certificate then grants nothing */
}

/* The verified client certificate subject of a request's connection (NULL: none). O(1):
 * the connection's socket carries its conn_t in on_close.data. */
static const char *conn_subject(void *h)
{
    h2o_conn_t *hc = h;
    if (hc == NULL || hc->callbacks == NULL || hc->callbacks->get_socket == NULL)
        return NULL;
    h2o_socket_t *sock = hc->callbacks->get_socket(hc);
    if (sock == NULL || sock->on_close.cb != on_conn_close)
        return NULL;
    return ((conn_t *)sock->on_close.data)->subject;
}

/* POST /admin/checkpoint: the supervisor forks the checkpointer at its next tick. */
static int request_checkpoint(void)
{
    return kill(getppid(), SIGRTMIN) == 0 ? 0 : -errno;
}

/* h2o calls on_close after do_dispose_socket(); in the evloop the socket memory is
 * only released later in the loop, so its byte counters are still readable here. */
static void on_conn_close(void *data)
{
    conn_t *c = data;
    account(c);
    if (c->linger_fd >= 0)
        linger_start(c->linger_fd);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    free(c->subject);
    free(c);
    --active_conns;
    set_active();
}

static void on_accept(h2o_socket_t *listener, const char *err);

static void start_reading(uint32_t i)
{
    h2o_socket_read_start(listeners[i], on_accept);
}

static void apply_assignment(void)
{
    for (uint32_t i = 0; i < srv->nsock; i++) {
        bool want = !stopping && !paused && l3_srv_ctl_serves(srv->ctl, my_slot, i);
        if (listeners[i] == NULL || want == reading[i])
            continue;
        if (want)
            start_reading(i);
        else
            h2o_socket_read_stop(listeners[i]);
        reading[i] = want;
    }
}

static void on_unpause(h2o_timeout_entry_t *e)
{
    paused = false;
    apply_assignment();
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener); /* accept4; sets TCP_NODELAY */
    if (sock == NULL) {
        if ((errno == EMFILE || errno == ENFILE) && !paused) {
            /* The listener stays readable: stop polling it for 100 ms instead of spinning. */
            L3_LOG(L3_LOG_WARN, "worker %u: accept: %s; pausing accepts for 100 ms", my_slot,
                   strerror(errno));
            paused = true;
            apply_assignment();
            if (!h2o_timeout_is_linked(&pause_entry))
                h2o_timeout_link(ctx.loop, &pause_timeout, &pause_entry);
        }
        return; /* EAGAIN: another worker took it */
    }
    conn_t *c = malloc(sizeof(*c));
    if (c == NULL) {
        h2o_socket_close(sock);
        return;
    }
    c->sock = sock;
    c->tx = 0;
    c->in_seen = 0;
    c->linger_fd = -1;
    c->subject = NULL;
    c->next = conns.next;
    c->prev = &conns;
    conns.next->prev = c;
    conns.next = c;
    ++active_conns;
    set_active();
    l3_obs_add(&my_obs->os_accepted, 1);
    sock->on_close.cb = on_conn_close;
    sock->on_close.data = c;
    h2o_accept(&accept_ctx, sock);
}

static void check_ctl(void)
{
    uint32_t gen = __atomic_load_n(&srv->ctl->sc_gen, __ATOMIC_ACQUIRE);
    if (gen != seen_gen) {
        seen_gen = gen;
        if (__atomic_load_n(&srv->ctl->sc_state[my_slot], __ATOMIC_ACQUIRE) == L3_OBS_SLOT_RETIRING ||
            __atomic_load_n(&srv->ctl->sc_stop, __ATOMIC_ACQUIRE))
            stop_flag = 1;
        apply_assignment();
    }
}

/* Background reclaim of expired keys (docs/store.md, "Expiry"): every tick, a share of
 * the index from the cursor all workers advance, at most storage.expiry_sweep_keys keys. */
#define EXPIRY_SWEEP_STRIPES 128u
static void expiry_sweep(void)
{
    static int last_rc; /* a lasting failure (the WAL refusing writes) is logged once */
    size_t removed = 0;
    int rc =
        l3_store_expire_sweep(srv->store, EXPIRY_SWEEP_STRIPES, srv->cfg.storage.expiry_sweep_keys, &removed);
    if (rc == -EAGAIN || rc == -ETIMEDOUT)
        return; /* ring full or a busy lock: the next tick goes on */
    if (rc < 0 && rc != last_rc)
        L3_LOG(L3_LOG_WARN, "worker %u: expiry sweep stopped: %s (expired keys stay hidden)", my_slot,
               l3_strerror(rc));
    last_rc = rc;
}

static void on_tick(h2o_timeout_entry_t *e)
{
    check_ctl();
    for (conn_t *c = conns.next; c != &conns; c = c->next)
        account(c);
    if (hup_flag) {
        hup_flag = 0;
        int rc = l3_srv_log_reopen();
        if (rc < 0)
            L3_LOG(L3_LOG_ERROR, "worker %u: cannot reopen log: %s", my_slot, strerror(-rc));
        char who[32];
        snprintf(who, sizeof(who), "worker %u", my_slot);
        l3_auth_reload(who); /* auth.c: a bad set keeps the old one */
        if ((rc = l3_access_reopen()) < 0)
            L3_LOG(L3_LOG_ERROR, "worker %u: cannot reopen log.access: %s", my_slot, strerror(-rc));
    }
    if (srv->store != NULL) {
        l3_store_proc_heartbeat(srv->store);
        expiry_sweep();
    }
    if (l3_durable_pending(&api->env.durable) > 0) /* belt and braces: never rely on one wake-up alone */
        l3_durable_poll(&api->env.durable);
    h2o_timeout_link(ctx.loop, &tick_timeout, &tick_entry);
}

static void on_wal_notify(h2o_socket_t *sock, const char *err)
{
    l3_durable_poll(&api->env.durable); /* acks (drains) the eventfd itself */
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(L3_SRV_CTL_SIGNAL, &sa, NULL); /* kept blocked by the supervisor until here */
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

/* Graceful stop: no more accepts, finish what is in flight (bounded), then _exit(0). */
__attribute__((noreturn)) static void drain_and_exit(l3_srv_t *s, uint32_t slot)
{
    stopping = true;
    apply_assignment();
    bool retiring = __atomic_load_n(&s->ctl->sc_state[slot], __ATOMIC_ACQUIRE) == L3_OBS_SLOT_RETIRING;
    if (!retiring) {
        /* server stop: drop our references so the sockets close once every process has */
        for (uint32_t i = 0; i < s->nsock; i++)
            if (listeners[i] != NULL) {
                h2o_socket_close(listeners[i]);
                listeners[i] = NULL;
            }
    }
    h2o_context_request_shutdown(&ctx);
    l3_feed_shutdown(&api->env); /* streams never end by themselves */
    uint64_t start = h2o_now(ctx.loop);
    uint64_t deadline = start + s->cfg.server.shutdown_timeout_ms;
    uint64_t req_timeout = ctx.http1.req_timeout.timeout, last_progress = start;
    while (active_conns > 0 && h2o_now(ctx.loop) < deadline) {
        h2o_evloop_run(ctx.loop, 50);
        uint64_t now = h2o_now(ctx.loop);
        if (uploads_progressing())
            last_progress = now;
        /* Idle HTTP/1 keep-alive connections only notice the shutdown through the request
         * timeout, which h2o counts from the start of a request: shortening it evicts them,
         * but would also cut a request body still arriving. So it is short only while no
         * connection has received body bytes for 200 ms (a stalled upload is then cut;
         * everything stays bounded by the deadline). */
        ctx.http1.req_timeout.timeout = now >= last_progress + 200 ? 800 : req_timeout;
    }
    for (conn_t *c = conns.next; c != &conns; c = c->next)
        account(c);
    if (active_conns > 0)
        L3_LOG(L3_LOG_WARN, "worker %u: %lld connections still open after %u ms; closing them", slot,
               (long long)active_conns, s->cfg.server.shutdown_timeout_ms);
    __atomic_store_n(&my_obs->os_active_conns, 0, __ATOMIC_RELAXED);
    if (s->store != NULL)
        l3_store_proc_unregister(s->store);
    L3_LOG(L3_LOG_DEBUG, "worker %u: exiting", slot);
    _exit(0);
}

void l3_srv_worker_main(l3_srv_t *s, uint32_t slot)
{
    pid_t parent = getppid();
    srv = s;
    my_slot = slot;
    install_signals();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(0);

    my_obs = l3_obs_slot(&s->obs, slot);
    uint32_t nw = s->cfg.server.max_workers ? s->cfg.server.max_workers : 1;
    max_active = (int64_t)(s->cfg.server.max_connections / nw) + 1;
    api->env = (l3_route_env_t){.store = s->store,
                                .obs_all = &s->obs,
                                .obs = my_obs,
                                .wal_ring = s->wal_ring,
                                .max_body_bytes = s->cfg.server.max_body_bytes,
                                .max_batch_ops = s->cfg.server.max_batch_ops,
                                .over_limit = conn_over_limit,
                                .accept_queue = accept_queue,
                                .accept_arg = s,
                                .linger = linger_conn,
                                .cert_subject = conn_subject,
                                .request_checkpoint = request_checkpoint,
                                .feed_stats = s->feed_stats,
                                .feed_sock = s->feed_sock,
                                .feed_slot = l3_feed_stats_slot(s->feed_stats, slot),
                                .repl = s->repl,
                                .primary = s->cfg.replication.primary,
                                .data_dir = s->cfg.storage.data_dir};
    if (api->env.feed_slot != NULL) /* the watchers of a dead predecessor in this slot are gone */
        __atomic_store_n(&api->env.feed_slot->fs_watchers, 0, __ATOMIC_RELAXED);
    l3_durable_init(&api->env.durable, s->wal_ring, s->wal_wait, slot, my_obs);
    if (s->store != NULL) {
        int rc = l3_store_proc_register(s->store, L3_STORE_ROLE_WORKER, NULL);
        if (rc < 0) {
            L3_LOG(L3_LOG_ERROR, "worker %u: cannot register in the store: %s", slot, l3_strerror(rc));
            _exit(70);
        }
    }

    h2o_context_init(&ctx, h2o_evloop_create(), &globalconf); /* after fork: the epoll fd is per process */
    accept_ctx.ctx = &ctx;
    accept_ctx.hosts = globalconf.hosts;
    accept_ctx.ssl_ctx = s->ssl_ctx;
    for (uint32_t i = 0; i < s->nsock; i++) {
        if (s->lfds[i] < 0)
            continue;
        listeners[i] = h2o_evloop_socket_create(ctx.loop, s->lfds[i], H2O_SOCKET_FLAG_DONT_READ);
        listeners[i]->data = NULL;
    }
    if (s->wal_ring != NULL && s->wal_wait) {
        int efd = l3_wal_notify_fd(s->wal_ring, slot);
        if (efd < 0) {
            L3_LOG(L3_LOG_ERROR, "worker %u: no WAL notification eventfd for this slot", slot);
            _exit(70);
        }
        /* DONT_READ: l3_wal_notify_ack drains it; never closed (the fd is shared by fork) */
        h2o_socket_t *ns = h2o_evloop_socket_create(ctx.loop, efd, H2O_SOCKET_FLAG_DONT_READ);
        h2o_socket_read_start(ns, on_wal_notify);
    }
    if (s->wal_ring != NULL && s->cfg.storage.replicated && s->repl != NULL)
        l3_durable_set_replicated(&api->env.durable, ctx.loop, &((l3_repl_t *)s->repl)->rp_ack_pos,
                                  s->cfg.storage.replication_timeout_ms);
    h2o_timeout_init(ctx.loop, &tick_timeout, 100);
    h2o_timeout_init(ctx.loop, &pause_timeout, 100);
    h2o_timeout_init(ctx.loop, &linger_timeout, LINGER_MS);
    tick_entry.cb = on_tick;
    pause_entry.cb = on_unpause;
    h2o_timeout_link(ctx.loop, &tick_timeout, &tick_entry);
    seen_gen = __atomic_load_n(&s->ctl->sc_gen, __ATOMIC_ACQUIRE);
    apply_assignment();
    L3_LOG(L3_LOG_DEBUG, "worker %u: started", slot);

    /* h2o_evloop_run returns -1 with EINTR whenever a signal handler ran. */
    while (!stop_flag) {
        if (h2o_evloop_run(ctx.loop, 1000) != 0 && errno != EINTR) {
            L3_LOG(L3_LOG_ERROR, "worker %u: event loop: %s", slot, strerror(errno));
            break;
        }
        if (ctl_flag) {
            ctl_flag = 0;
            check_ctl();
        }
    }

    drain_and_exit(s, slot);
}
