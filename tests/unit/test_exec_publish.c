/*
 * test_exec_publish.c - a job's published port (exec/publish.c) against real loopback sockets,
 * the "job" being this process (its pid in the pid file, its network namespace): bytes both
 * ways; a client whose connect to the job cannot finish is closed after the connect time and
 * costs no cpu meanwhile, even with its bytes waiting; an idle connection is closed after the
 * idle time and not before.
 */
#include "../../exec/exec.h"
#include "../../util/util.h"
#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A loopback socket listening with backlog, its port in *port. */
static int listener(uint16_t *port, int backlog)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, backlog) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A free loopback port (bound, then closed). */
static uint16_t free_port(void)
{
    uint16_t port;
    close(listener(&port, 1));
    return port;
}

/* A connection to 127.0.0.1:port; nonblock leaves its connect under way. Reads time out after 10
 * s, the bound on every wait below. */
static int dial(uint16_t port, bool nonblock)
{
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 10};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    CHECK(fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    CHECK(rc == 0 || (nonblock && errno == EINPROGRESS));
    return fd;
}

/* Publishes host_port for job_port of this process, with the times given. */
static struct exec_publish *publish(uint16_t host_port, uint16_t job_port, unsigned connect_ms,
                                    unsigned idle_ms)
{
    char pidf[512], text[32];
    snprintf(pidf, sizeof pidf, "%s/pid", test_tmpdir());
    snprintf(text, sizeof text, "%ld", (long)getpid());
    FILE *f = fopen(pidf, "w");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
    struct exec_publish *p = NULL;
    struct exec_publish_times t = {connect_ms, idle_ms};
    CHECK(exec_publish_start(&p, "127.0.0.1", &host_port, &job_port, 1, pidf, &t) == 0);
    return p;
}

/* The cpu time, in ns, of this process's thread named name (its schedstat). */
static uint64_t thread_cpu_ns(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    uint64_t ns = UINT64_MAX;
    CHECK(d != NULL);
    for (struct dirent *e; (e = readdir(d));) {
        char path[300], buf[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        bool named = fgets(buf, sizeof buf, f) && !strncmp(buf, name, strlen(name));
        fclose(f);
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        if (named && (f = fopen(path, "r"))) {
            unsigned long long v;
            if (fscanf(f, "%llu", &v) == 1)
                ns = v;
            fclose(f);
        }
    }
    closedir(d);
    CHECK(ns != UINT64_MAX);
    return ns;
}

/* Reads until the peer closes (a reset counts): returns the bytes read before. A read that times
 * out (10 s, dial's) fails the test. */
static ssize_t read_to_end(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, cap - n);
        if (k == 0)
            return (ssize_t)n;
        if (k < 0 && errno == ECONNRESET)
            return (ssize_t)n;
        CHECK(k > 0); /* a timeout fails here */
        n += (size_t)k;
        CHECK(n < cap);
    }
}

TEST(exec_publish_relays_both_ways_and_closes_an_idle_connection_after_its_time)
{
    uint16_t job_port, host_port = free_port();
    int l = listener(&job_port, 8);
    struct exec_publish *p = publish(host_port, job_port, 2000, 300);
    int c = dial(host_port, false);
    CHECK(write(c, "ping", 4) == 4);
    int j = accept(l, NULL, NULL);
    char buf[64];
    CHECK(j >= 0 && read(j, buf, sizeof buf) == 4 && !memcmp(buf, "ping", 4));
    CHECK(write(j, "pong", 4) == 4);
    CHECK(read(c, buf, sizeof buf) == 4 && !memcmp(buf, "pong", 4));
    /* then nothing moves: both sides are closed by the relay after the idle time, not before */
    uint64_t t0 = time_mono_ns();
    CHECK_INT(read_to_end(c, buf, sizeof buf), ==, 0);
    uint64_t waited_ms = (time_mono_ns() - t0) / 1000000;
    CHECK(waited_ms >= 250 && waited_ms < 10000);
    CHECK_INT(read_to_end(j, buf, sizeof buf), ==, 0);
    exec_publish_stop(p);
    close(c);
    close(j);
    close(l);
}

TEST(exec_publish_closes_a_connect_the_job_never_takes_without_spinning)
{
    /* the job's accept queue is full (backlog 1, two connections waiting, never accepted):
     * the kernel drops the relay's SYNs and its connect stays under way */
    uint16_t job_port, host_port = free_port();
    int l = listener(&job_port, 1);
    int fill[3];
    for (int i = 0; i < 3; i++)
        fill[i] = dial(job_port, true);
    struct exec_publish *p = publish(host_port, job_port, 600, 60000);
    uint64_t cpu0 = thread_cpu_ns("afsp-publish"), t0 = time_mono_ns();
    int c = dial(host_port, false);
    CHECK(write(c, "early bytes", 11) == 11); /* waiting in the relay's socket meanwhile */
    char buf[64];
    CHECK_INT(read_to_end(c, buf, sizeof buf), ==, 0);
    uint64_t waited_ms = (time_mono_ns() - t0) / 1000000;
    uint64_t cpu_ms = (thread_cpu_ns("afsp-publish") - cpu0) / 1000000;
    CHECK(waited_ms >= 500 && waited_ms < 10000);
    CHECK(cpu_ms * 10 < waited_ms); /* it waited in poll, not in a loop */
    exec_publish_stop(p);
    close(c);
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    close(l);
}
