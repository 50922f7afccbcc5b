/* SPDX-License-Identifier: MIT */
/*
 * baseline.c - the yardstick for tools/bench/http: a plain libh2o server that answers
 * every request with the same fixed 100-byte body (with Content-Length), using the same
 * process model as l3kv (N forked workers, one SO_REUSEPORT listening socket each, one
 * evloop per process), so the ratio l3kv / baseline measures what the store and routes cost.
 *
 * usage: l3kv-http-baseline PORT [WORKERS]   (stops on SIGTERM/SIGINT)
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <h2o.h>

static const char body[101] = "0123456789012345678901234567890123456789012345678901234567890123456789"
                              "012345678901234567890123456789";
static h2o_globalconf_t config;
static h2o_context_t ctx;
static h2o_accept_ctx_t actx;
static volatile sig_atomic_t stop;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    static h2o_generator_t gen = {NULL, NULL};
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = 100;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    h2o_start_response(req, &gen);
    h2o_iovec_t b = h2o_iovec_init(body, 100);
    int head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    h2o_send(req, &b, head ? 0 : 1, H2O_SEND_STATE_FINAL);
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL)
        h2o_accept(&actx, sock);
}

static void on_sig(int sig)
{
    stop = 1;
}

static int open_listener(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4096) != 0) {
        perror("listen");
        exit(1);
    }
    return fd;
}

static void worker(int fd)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sig;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    h2o_context_init(&ctx, h2o_evloop_create(), &config);
    actx.ctx = &ctx;
    actx.hosts = config.hosts;
    h2o_socket_t *l = h2o_evloop_socket_create(ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(l, on_accept);
    while (!stop)
        h2o_evloop_run(ctx.loop, 100);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), n = argc > 2 ? atoi(argv[2]) : 2;
    if (n < 1 || n > 64)
        n = 2;
    h2o_config_init(&config);
    h2o_hostconf_t *host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    h2o_create_handler(pc, sizeof(h2o_handler_t))->on_req = on_req;
    pid_t pids[64];
    for (int i = 0; i < n; i++) {
        int fd = open_listener(port);
        if ((pids[i] = fork()) == 0)
            worker(fd);
        close(fd);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sig;
    sigwait(&set, &sig);
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGTERM);
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    return 0;
}
