/*
 * publish.c - a job's published ports (docs/exec.md, "Ports"): the node listens on a port of
 * its own for each, and relays every connection to the job's port on its loopback, inside the
 * job's network namespace (a job with --net none has nothing else). One thread per job: it
 * accepts, and enters the job's namespace (setns, this thread only) to make each connection
 * to the job, once the job's process exists; the bytes are copied both ways through buffers,
 * at most EXEC_PUBLISH_CONNS connections at once. A connection whose connect to the job has
 * not finished in its time, or that moved no byte for the idle time, is closed, so that stalled
 * clients cannot hold every slot.
 *
 * Owns: the listening sockets, the connections, the thread.
 */
#include "exec.h"

#include "../util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (64u << 10)

struct pconn {
    int a, b;          /* the client's connection, the job's */
    uint8_t *ab, *ba;  /* bytes read from one side, not yet written to the other */
    size_t nab, nba;   /* how many */
    bool a_eof, b_eof; /* the side sent no more (its peer's write side is shut) */
    bool connecting;   /* b's connect is under way */
    uint64_t deadline; /* time_mono_ns at which it is closed unless a byte moves first */
};

struct exec_publish {
    int lfd[EXEC_PUBLISH_MAX];
    uint16_t job_port[EXEC_PUBLISH_MAX];
    unsigned n;
    uint64_t connect_ns, idle_ns;
    char pid_file[4096];
    bool in_ns; /* this thread is in the job's network namespace */
    int wake[2];
    pthread_t th;
    struct pconn c[EXEC_PUBLISH_CONNS];
    unsigned nc;
};

static void conn_close(struct exec_publish *p, unsigned i)
{
    struct pconn *c = &p->c[i];
    close(c->a);
    if (c->b >= 0)
        close(c->b);
    free(c->ab);
    free(c->ba);
    p->c[i] = p->c[--p->nc];
}

/* Enters the job's network namespace (its process's, from the runtime's pid file). */
static int enter_ns(struct exec_publish *p)
{
    if (p->in_ns)
        return 0;
    char text[32] = "", path[64];
    int fd = open(p->pid_file, O_RDONLY | O_CLOEXEC);
    ssize_t k = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
    if (fd >= 0)
        close(fd);
    long pid = k > 0 ? strtol(text, NULL, 10) : 0;
    if (pid <= 1)
        return -ESRCH; /* not running yet */
    snprintf(path, sizeof path, "/proc/%ld/ns/net", pid);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0)
        return -errno;
    int rc = setns(ns, CLONE_NEWNET) < 0 ? -errno : 0;
    close(ns);
    p->in_ns = rc == 0;
    return rc;
}

static void accept_one(struct exec_publish *p, unsigned l)
{
    int a = accept4(p->lfd[l], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (a < 0)
        return;
    if (p->nc == EXEC_PUBLISH_CONNS || enter_ns(p) < 0) {
        close(a); /* too many, or the job does not run (yet) */
        return;
    }
    struct pconn *c = &p->c[p->nc];
    memset(c, 0, sizeof *c);
    c->a = a;
    c->b = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->ab = malloc(BUF);
    c->ba = malloc(BUF);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(p->job_port[l]),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = c->b < 0 || !c->ab || !c->ba ? -1 : connect(c->b, (struct sockaddr *)&sa, sizeof sa);
    if (rc < 0 && errno != EINPROGRESS) {
        p->nc++;
        conn_close(p, p->nc - 1);
        return;
    }
    c->connecting = rc < 0;
    c->deadline = time_mono_ns() + (c->connecting ? p->connect_ns : p->idle_ns);
    p->nc++;
}

/* Moves bytes from from into buf (up to BUF, when poll said it is readable), then what to takes
 * of them; passes on the end of from's bytes. Returns -1 when the pair must close, 1 when a byte
 * (or the end) moved, else 0. */
static int pump(int from, int to, uint8_t *buf, size_t *n, bool *eof, short rev_from)
{
    int moved = 0;
    if (!*eof && *n < BUF && (rev_from & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t k = read(from, buf + *n, BUF - *n);
        if (k == 0)
            *eof = true;
        else if (k > 0)
            *n += (size_t)k;
        else if (errno != EAGAIN && errno != EINTR)
            return -1;
        moved = k >= 0;
    }
    if (*n) { /* non-blocking: what the socket takes now */
        ssize_t k = write(to, buf, *n);
        if (k > 0) {
            memmove(buf, buf + k, *n - (size_t)k);
            *n -= (size_t)k;
            moved = 1;
        } else if (k < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
    }
    if (*eof && !*n)
        shutdown(to, SHUT_WR);
    return moved;
}

/* poll's timeout: until the first connection's deadline (-1: none). */
static int next_timeout(const struct exec_publish *p, uint64_t now)
{
    uint64_t first = UINT64_MAX;
    for (unsigned i = 0; i < p->nc; i++)
        first = p->c[i].deadline < first ? p->c[i].deadline : first;
    if (first == UINT64_MAX)
        return -1;
    uint64_t ms = first > now ? (first - now + 999999) / 1000000 : 0;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

static void *publish_main(void *arg)
{
    struct exec_publish *p = arg;
    struct pollfd fds[1 + EXEC_PUBLISH_MAX + 2 * EXEC_PUBLISH_CONNS];
    for (;;) {
        unsigned nf = 0;
        fds[nf++] = (struct pollfd){p->wake[0], POLLIN, 0};
        for (unsigned i = 0; i < p->n; i++)
            fds[nf++] = (struct pollfd){p->lfd[i], POLLIN, 0};
        for (unsigned i = 0; i < p->nc; i++) {
            struct pconn *c = &p->c[i];
            /* while the job's side connects, the client's waits: its bytes stay in its socket */
            short ea = (short)(c->connecting ? 0
                                             : (!c->a_eof && c->nab < BUF ? POLLIN : 0) |
                                                   (c->nba ? POLLOUT : 0));
            short eb = (short)(c->connecting ? POLLOUT
                                             : (!c->b_eof && c->nba < BUF ? POLLIN : 0) |
                                                   (c->nab ? POLLOUT : 0));
            /* a side with nothing to do is left out (-1): a peer that has closed would
             * otherwise report POLLHUP at once, every time, while the other side works */
            fds[nf++] = (struct pollfd){ea ? c->a : -1, ea, 0};
            fds[nf++] = (struct pollfd){eb ? c->b : -1, eb, 0};
        }
        if (poll(fds, nf, next_timeout(p, time_mono_ns())) < 0 && errno != EINTR)
            break;
        if (fds[0].revents)
            break; /* the job ended */
        uint64_t now = time_mono_ns();
        unsigned nc = p->nc; /* connections accepted now are polled next time */
        for (unsigned i = nc; i-- > 0;) {
            struct pconn *c = &p->c[i];
            short ra = fds[1 + p->n + 2 * i].revents, rb = fds[2 + p->n + 2 * i].revents;
            int e = 0, moved_ab = 0, moved_ba = 0;
            socklen_t el = sizeof e;
            if (c->connecting && rb) {
                getsockopt(c->b, SOL_SOCKET, SO_ERROR, &e, &el);
                c->connecting = false;
                c->deadline = now + p->idle_ns;
            }
            if (!c->connecting && !e) {
                moved_ab = pump(c->a, c->b, c->ab, &c->nab, &c->a_eof, ra);
                moved_ba = pump(c->b, c->a, c->ba, &c->nba, &c->b_eof, rb);
            }
            if (moved_ab > 0 || moved_ba > 0)
                c->deadline = now + p->idle_ns;
            if (e || moved_ab < 0 || moved_ba < 0 || now >= c->deadline ||
                (c->a_eof && c->b_eof && !c->nab && !c->nba))
                conn_close(p, i);
        }
        for (unsigned i = 0; i < p->n; i++)
            if (fds[1 + i].revents & POLLIN)
                accept_one(p, i);
    }
    while (p->nc)
        conn_close(p, p->nc - 1);
    return NULL;
}

int exec_publish_start(struct exec_publish **out, const char *host, const uint16_t *host_ports,
                       const uint16_t *job_ports, unsigned n, const char *pid_file,
                       const struct exec_publish_times *times)
{
    struct exec_publish *p = calloc(1, sizeof *p);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int rc = 0;
    *out = NULL;
    if (!p)
        return -ENOMEM;
    if (n > EXEC_PUBLISH_MAX || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        strlen(pid_file) >= sizeof p->pid_file) {
        free(p);
        return err_set(AFSP_E_USAGE, "cannot publish on %s", host);
    }
    snprintf(p->pid_file, sizeof p->pid_file, "%s", pid_file);
    p->connect_ns = (times ? times->connect_ms : EXEC_PUBLISH_CONNECT_MS) * 1000000ull;
    p->idle_ns = (times ? times->idle_ms : EXEC_PUBLISH_IDLE_MS) * 1000000ull;
    p->wake[0] = p->wake[1] = -1;
    for (; p->n < n && rc == 0; p->n++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
        p->lfd[p->n] = fd;
        p->job_port[p->n] = job_ports[p->n];
        sa.sin_port = htons(host_ports[p->n]);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0)
            rc = err_set(-errno, "cannot listen on %s:%u for the job's port %u", host,
                         host_ports[p->n], job_ports[p->n]);
    }
    if (rc == 0 && pipe2(p->wake, O_CLOEXEC) < 0)
        rc = -errno;
    if (rc == 0 && (rc = -pthread_create(&p->th, NULL, publish_main, p)) < 0)
        err_set(rc, "cannot start a thread");
    if (rc == 0)
        pthread_setname_np(p->th, "afsp-publish"); /* as ps and top show it */
    if (rc < 0) {
        for (unsigned i = 0; i < p->n; i++)
            if (p->lfd[i] >= 0)
                close(p->lfd[i]);
        if (p->wake[0] >= 0) {
            close(p->wake[0]);
            close(p->wake[1]);
        }
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void exec_publish_stop(struct exec_publish *p)
{
    if (!p)
        return;
    ssize_t k = write(p->wake[1], "x", 1);
    (void)k;
    pthread_join(p->th, NULL);
    for (unsigned i = 0; i < p->n; i++)
        close(p->lfd[i]);
    close(p->wake[0]);
    close(p->wake[1]);
    free(p);
}
