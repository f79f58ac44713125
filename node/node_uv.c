/*
 * node_uv.c - the daemon: the node core driven by libuv. It carries the links' bytes over TCP,
 * the control socket's lines over a Unix socket, tasks' wake-ups and the store's evictions over
 * an async handle, and arms one timer at the core's deadline. It translates events into core
 * calls and effects into I/O; every decision is the core's.
 *
 * Owns: the sockets, the loop, the timer. Must not: hold a duration or a limit of the node,
 * look at a link's state, or write a key to a log.
 */
#include "node_int.h"

#include "../store/store.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define READ_BUF (256u << 10) /* every connection reads into this, one at a time */

struct uvn {
    uv_loop_t loop;
    struct node *n;
    struct tasks *ts;
    struct runner *rn;
    uv_tcp_t listener;
    bool listening;
    struct dht_addr src; /* the address listened on, when it is one address (family 0: any) */
    uv_pipe_t ctl;
    uv_signal_t sigterm, sigint;
    uv_timer_t timer;
    uv_async_t wake;
    uint8_t *rbuf;
    int evicted; /* set by the store's eviction hook, on any thread */
    bool stopped;
};

/* A connection: a link's, or a control client's. */
struct uvc {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    struct uvn *u;
    struct node_link *k; /* a link's; NULL for a control client */
    bool writing;        /* a copy of its bytes is being written */
    bool closing;
    bool asked;    /* a control client's request was read */
    struct buf in; /* ... and its bytes */
};

static uint64_t now(struct uvn *u)
{
    return uv_now(&u->loop);
}

static void effects(struct uvn *u);

static void on_timer(uv_timer_t *t)
{
    struct uvn *u = t->data;
    node_tick(u->n, now(u));
    effects(u);
}

static void conn_closed(uv_handle_t *h)
{
    struct uvc *c = h->data;
    if (c->k)
        node_link_release(c->u->n, c->k);
    buf_release(&c->in);
    free(c);
}

static void conn_close(struct uvc *c)
{
    if (!c->closing) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->h, conn_closed);
    }
}

/* ---- links: bytes in and out --------------------------------------------------------------------
 */

static void link_write(struct uvc *c);

static void on_written(uv_write_t *w, int status)
{
    struct uvc *c = w->data;
    free(w);
    c->writing = false;
    if (c->closing)
        return;
    if (status < 0)
        node_link_closed(c->u->n, c->k, -ECONNRESET, now(c->u));
    else
        link_write(c);
    effects(c->u);
}

/* What the link has to send: as much as the socket takes at once without a copy, the rest copied
 * into one write that libuv finishes. */
static void link_write(struct uvc *c)
{
    struct uvn *u = c->u;
    const uint8_t *p;
    size_t len;
    while (!c->writing && !c->closing && (len = node_link_pending(u->n, c->k, &p))) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)(len > (1u << 30) ? 1u << 30 : len));
        int w = uv_try_write((uv_stream_t *)&c->h, &b, 1);
        if (w > 0) {
            node_link_sent(u->n, c->k, (size_t)w, now(u));
            continue;
        }
        uv_write_t *req = w == UV_EAGAIN ? malloc(sizeof *req + b.len) : NULL;
        if (!req) {
            node_link_closed(u->n, c->k, w == UV_EAGAIN ? -ENOMEM : -ECONNRESET, now(u));
            return;
        }
        memcpy(req + 1, p, b.len);
        req->data = c;
        uv_buf_t copy = uv_buf_init((char *)(req + 1), b.len);
        if (uv_write(req, (uv_stream_t *)&c->h, &copy, 1, on_written) < 0) {
            free(req);
            node_link_closed(u->n, c->k, -ECONNRESET, now(u));
            return;
        }
        c->writing = true;
        node_link_sent(u->n, c->k, b.len, now(u));
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct uvc *c = h->data;
    (void)hint;
    *b = uv_buf_init((char *)c->u->rbuf, READ_BUF);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct uvc *c = s->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0)
        node_link_closed(c->u->n, c->k, -ECONNRESET, now(c->u));
    else
        node_link_input(c->u->n, c->k, (const uint8_t *)b->base, (size_t)nread, now(c->u));
    effects(c->u);
}

static struct uvc *conn_new(struct uvn *u, struct node_link *k)
{
    struct uvc *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->u = u;
    c->k = k;
    c->h.tcp.data = c;
    return c;
}

static void link_start(struct uvc *c)
{
    uv_os_fd_t fd;
    uv_tcp_nodelay(&c->h.tcp, 1);
    /* At most this much written and not yet sent in the kernel: a chunk answer's bytes have
     * "left" (serve.c frees its slot) about when they are on the wire, not when a socket
     * buffer of megabytes took them in front of a slow link. */
    int lowat = NODE_SOCKET_UNSENT;
    if (uv_fileno((uv_handle_t *)&c->h.tcp, &fd) == 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
    if (uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read) < 0)
        node_link_closed(c->u->n, c->k, -ECONNRESET, now(c->u));
}

static void on_connect(uv_connect_t *req, int status)
{
    struct uvc *c = req->data;
    free(req);
    if (c->closing)
        return;
    if (status < 0) {
        node_link_closed(c->u->n, c->k, status, now(c->u));
    } else {
        node_link_connected(c->u->n, c->k, now(c->u));
        link_start(c);
    }
    effects(c->u);
}

static bool addr_loopback(const struct dht_addr *a)
{
    static const uint8_t v6lo[16] = {[15] = 1};
    return a->family == 4 ? a->ip[0] == 127 : !memcmp(a->ip, v6lo, 16);
}

static void dial(struct uvn *u, struct node_link *k, const struct dht_addr *a)
{
    struct sockaddr_storage ss;
    struct uvc *c = conn_new(u, k);
    uv_connect_t *req = c ? malloc(sizeof *req) : NULL;
    if (!req) {
        free(c);
        node_link_closed(u->n, k, -ENOMEM, now(u)); /* released at NODE_FX_CLOSE: no io */
        return;
    }
    node_link_set_io(k, c);
    uv_tcp_init(&u->loop, &c->h.tcp);
    node_addr_to_sockaddr(a, &ss);
    req->data = c;
    int rc = 0;
    /* From the address the node listens on, when it listens on one, so that peers see the
     * connection come from where they can reach it (two nodes on one host, on 127.0.0.2 and
     * 127.0.0.3; a host with several addresses). Not across loopback and the network. */
    if (u->src.family == a->family && addr_loopback(&u->src) == addr_loopback(a)) {
        struct sockaddr_storage from;
        struct dht_addr sa = u->src;
        sa.port = 0;
        node_addr_to_sockaddr(&sa, &from);
        rc = uv_tcp_bind(&c->h.tcp, (struct sockaddr *)&from, 0);
    }
    if (rc == 0)
        rc = uv_tcp_connect(req, &c->h.tcp, (struct sockaddr *)&ss, on_connect);
    if (rc < 0) {
        free(req);
        node_link_closed(u->n, k, rc, now(u));
    }
}

static void on_accept(uv_stream_t *server, int status)
{
    struct uvn *u = server->data;
    struct uvc *c = status < 0 ? NULL : conn_new(u, NULL);
    if (!c)
        return; /* the connection waits in the backlog */
    uv_tcp_init(&u->loop, &c->h.tcp);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    struct dht_addr from;
    if (uv_accept(server, (uv_stream_t *)&c->h) < 0 ||
        uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) < 0) {
        conn_close(c);
        return;
    }
    node_addr_from_sockaddr((struct sockaddr *)&ss, &from);
    if (!(c->k = node_link_accepted(u->n, &from, now(u)))) {
        conn_close(c);
    } else {
        node_link_set_io(c->k, c);
        link_start(c);
    }
    effects(u);
}

/* ---- the control socket ------------------------------------------------------------------------
 */

struct answer {
    uv_write_t w;
    struct uvc *c;
    char *text;
};

static void on_answered(uv_write_t *w, int status)
{
    struct answer *a = (struct answer *)w;
    (void)status;
    conn_close(a->c);
    free(a->text);
    free(a);
}

/* Sends the answer (text: taken) and closes the connection after it. */
static void ctl_send(struct uvc *c, char *text, size_t len)
{
    struct answer *a = c->closing ? NULL : malloc(sizeof *a);
    uv_buf_t b = uv_buf_init(text, (unsigned)len);
    if (a) {
        a->c = c;
        a->text = text;
        if (uv_write(&a->w, (uv_stream_t *)&c->h, &b, 1, on_answered) == 0)
            return;
        free(a);
    }
    free(text);
    conn_close(c);
}

static void on_ctl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct uvc *c = h->data;
    (void)hint;
    if (buf_reserve(&c->in, 4096) < 0)
        *b = uv_buf_init(NULL, 0);
    else
        *b = uv_buf_init((char *)c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void on_ctl_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct uvc *c = s->data;
    struct uvn *u = c->u;
    (void)b;
    if (nread < 0 || c->in.len + (size_t)nread > NODE_CTL_MAX_REQUEST) {
        node_ctl_gone(u->n, (struct node_ctl *)c); /* the client went away before its answer */
        conn_close(c);
        effects(u);
        return;
    }
    if (c->asked) /* one request per connection: the rest is ignored */
        return;
    c->in.len += (size_t)nread;
    const uint8_t *nl = memchr(c->in.p + c->in.len - nread, '\n', (size_t)nread);
    if (!nl)
        return;
    c->asked = true;
    node_ctl_request(u->n, (struct node_ctl *)c, (const char *)c->in.p, (size_t)(nl - c->in.p),
                     now(u));
    effects(u);
}

static void on_ctl_connection(uv_stream_t *server, int status)
{
    struct uvn *u = server->data;
    struct uvc *c = status < 0 ? NULL : conn_new(u, NULL);
    if (!c)
        return;
    uv_pipe_init(&u->loop, &c->h.pipe, 0);
    if (uv_accept(server, (uv_stream_t *)&c->h) < 0 ||
        uv_read_start((uv_stream_t *)&c->h, on_ctl_alloc, on_ctl_read) < 0)
        conn_close(c);
}

/* ---- effects -----------------------------------------------------------------------------------
 */

/* At the end: what is still open closes (control clients waiting for an answer, the servers,
 * the timer, the async handle; the links closed through their effects). */
static void close_walk(uv_handle_t *h, void *arg)
{
    struct uvn *u = arg;
    if (uv_is_closing(h))
        return;
    if ((h->type == UV_NAMED_PIPE && h != (uv_handle_t *)&u->ctl) ||
        (h->type == UV_TCP && h != (uv_handle_t *)&u->listener))
        conn_close(h->data);
    else
        uv_close(h, NULL);
}

static void effects(struct uvn *u)
{
    struct node_effect e;
    while (node_effect_next(u->n, &e)) {
        struct uvc *c = e.link ? node_link_io(e.link) : NULL;
        switch (e.type) {
        case NODE_FX_DIAL:
            dial(u, e.link, &e.addr);
            break;
        case NODE_FX_SEND:
            if (c)
                link_write(c);
            break;
        case NODE_FX_CLOSE:
            if (c)
                conn_close(c);
            else
                node_link_release(u->n, e.link);
            break;
        case NODE_FX_ANSWER:
            ctl_send((struct uvc *)e.ctl, e.text, e.len);
            break;
        case NODE_FX_TASK:
            if (tasks_start(u->ts, e.task) < 0) {
                e.task->rc = err_set(-EAGAIN, "cannot start a thread");
                snprintf(e.task->msg, sizeof e.task->msg, "%s", err_msg(e.task->rc));
                node_task_done(u->n, e.task, now(u));
            }
            break;
        case NODE_FX_JOB_DONE:
            tasks_job_done(u->ts, e.job);
            break;
        case NODE_FX_EXEC: {
            int rc = runner_start(u->rn, e.exec); /* the job's thread owns its out fields now */
            if (rc < 0) {
                e.exec->rc = rc;
                snprintf(e.exec->msg, sizeof e.exec->msg, "cannot start a thread");
                node_exec_done(u->n, e.exec, now(u));
            }
            break;
        }
        case NODE_FX_EXEC_KILL:
            runner_kill(u->rn, e.exec, e.sig);
            break;
        case NODE_FX_EXEC_FREE:
            runner_forget(u->rn, e.exec);
            break;
        case NODE_FX_STOPPED:
            u->stopped = true;
            break;
        }
    }
    if (u->stopped) {
        uv_walk(&u->loop, close_walk, u);
        return;
    }
    uint64_t d = node_deadline(u->n), t = now(u);
    if (d == UINT64_MAX)
        uv_timer_stop(&u->timer);
    else
        uv_timer_start(&u->timer, on_timer, d > t ? d - t : 0, 0);
}

static void on_wake(uv_async_t *a)
{
    struct uvn *u = a->data;
    tasks_poll(u->ts, u->n, now(u));
    runner_poll(u->rn, u->n, now(u));
    if (__atomic_exchange_n(&u->evicted, 0, __ATOMIC_SEQ_CST))
        node_store_changed(u->n, now(u));
    effects(u);
}

static void wake(void *arg)
{
    uv_async_send(arg);
}

/* The store's eviction hook, on whichever thread evicted: the loop hears of it at its next turn. */
static void on_evict(void *arg, const uint8_t digest[static DIGEST_LEN])
{
    struct uvn *u = arg;
    (void)digest;
    __atomic_store_n(&u->evicted, 1, __ATOMIC_SEQ_CST);
    uv_async_send(&u->wake);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct uvn *u = s->data;
    log_info("event=signal signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    if (u->listening)
        uv_close((uv_handle_t *)&u->listener, NULL);
    u->listening = false;
    node_stop(u->n, now(u));
    effects(u);
}

/* ---- start
 * --------------------------------------------------------------------------------------- */

int node_run(const struct node_run_cfg *o)
{
    struct uvn *u = calloc(1, sizeof *u);
    int rc = u ? 0 : -ENOMEM;
    if (rc == 0 && !(u->rbuf = malloc(READ_BUF)))
        rc = -ENOMEM;
    if (rc < 0) {
        free(u);
        return err_set(rc, "cannot start the node");
    }
    uv_loop_init(&u->loop);
    uv_async_init(&u->loop, &u->wake, on_wake);
    uv_timer_init(&u->loop, &u->timer);
    u->wake.data = u->timer.data = u;
    if ((rc = tasks_new(&u->ts, o->store, wake, &u->wake)) < 0 ||
        (rc = runner_new(&u->rn, &o->runner, o->data_dir, o->core.id->id, o->store, wake,
                         &u->wake)) < 0)
        goto out;
    /* the control socket: one node per data directory */
    uv_pipe_init(&u->loop, &u->ctl, 0);
    u->ctl.data = u;
    unlink(o->ctl_path);
    mode_t old = umask(077);
    rc = uv_pipe_bind(&u->ctl, o->ctl_path);
    umask(old);
    if (rc == 0 && chmod(o->ctl_path, 0600) < 0)
        rc = -errno;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&u->ctl, 16, on_ctl_connection);
    if (rc < 0) {
        rc = err_set(rc, "cannot listen on %s: %s", o->ctl_path, uv_strerror(rc));
        goto out;
    }
    if (o->listen.port) {
        struct sockaddr_storage la;
        node_addr_to_sockaddr(&o->listen, &la);
        uv_tcp_init(&u->loop, &u->listener);
        u->listener.data = u;
        if ((rc = uv_tcp_bind(&u->listener, (struct sockaddr *)&la, 0)) < 0 ||
            (rc = uv_listen((uv_stream_t *)&u->listener, 128, on_accept)) < 0) {
            rc = err_set(rc, "cannot listen on %s: %s", o->core.listen_text, uv_strerror(rc));
            goto out;
        }
        u->listening = true;
        static const uint8_t any[16];
        if (memcmp(o->listen.ip, any, 16))
            u->src = o->listen;
    }
    uv_signal_init(&u->loop, &u->sigterm);
    uv_signal_init(&u->loop, &u->sigint);
    u->sigterm.data = u->sigint.data = u;
    uv_signal_start(&u->sigterm, on_signal, SIGTERM);
    uv_signal_start(&u->sigint, on_signal, SIGINT);
    signal(SIGPIPE, SIG_IGN);

    struct node_cfg cfg = o->core;
    cfg.now = now(u);
    cfg.wall_ms = time_now_ns() / 1000000;
    cfg.store = &node_store_lmdb;
    cfg.store_arg = o->store;
    if ((rc = node_new(&u->n, &cfg)) < 0) {
        rc = err_set(rc, "cannot start the node");
        goto out;
    }
    store_set_evict_hook(o->store, on_evict, u);
    char id[2 * P2P_ID_LEN + 1];
    log_warn("event=started id=%s listen=%s seeds=%zu links_max=%zu data=%s",
             hex_fmt(cfg.id->id, P2P_ID_LEN, id), u->listening ? cfg.listen_text : "-", cfg.nseeds,
             cfg.links_max, o->data_dir);
    effects(u);
    uv_run(&u->loop, UV_RUN_DEFAULT);
    log_warn("event=stopped");
    rc = 0;
out:
    unlink(o->ctl_path);
    store_set_evict_hook(o->store, NULL, NULL);
    runner_stop_wakes(u->rn);
    uv_walk(&u->loop, close_walk, u);
    uv_run(&u->loop, UV_RUN_DEFAULT);
    uv_loop_close(&u->loop);
    node_free(u->n);
    tasks_free(u->ts);
    runner_free(u->rn);
    free(u->rbuf);
    free(u);
    return rc;
}
