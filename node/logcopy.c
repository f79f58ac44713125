/*
 * logcopy.c - a job's output: the pipes its processes write to, copied into DATA/jobs/ID/out
 * and err by a thread of their own, NODE_EXEC_LOG_MAX bytes of each at most (what is dropped
 * past that is counted and said at the end of err). Not part of the sans-IO core.
 *
 * Owns: the pipes' read ends and the copy's thread. Must not: block a job's end on a writer
 * that never closes (logcopy_wait has a limit).
 */
#include "runner_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- a job's output ------------------------------------------------------------------------- */

struct logcopy {
    int in[2];   /* the pipes' read ends (-1 once at their end) */
    int file[2]; /* DATA/jobs/ID/out, err */
    uint64_t n[2], dropped[2];
    bool eof;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
};

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return; /* the disk is full: what does not fit is lost, the job goes on */
        p += k;
        n -= (size_t)k;
    }
}

static void *logcopy_main(void *arg)
{
    struct logcopy *lc = arg;
    char buf[64 << 10];
    while (lc->in[0] >= 0 || lc->in[1] >= 0) {
        struct pollfd p[2] = {{lc->in[0], POLLIN, 0}, {lc->in[1], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (lc->in[i] < 0 || !p[i].revents)
                continue;
            ssize_t k = read(lc->in[i], buf, sizeof buf);
            if (k < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (k <= 0) {
                close(lc->in[i]);
                lc->in[i] = -1;
                continue;
            }
            uint64_t room = lc->n[i] < NODE_EXEC_LOG_MAX ? NODE_EXEC_LOG_MAX - lc->n[i] : 0;
            size_t w = (uint64_t)k < room ? (size_t)k : (size_t)room;
            write_all(lc->file[i], buf, w);
            lc->n[i] += w;
            lc->dropped[i] += (uint64_t)k - w;
        }
    }
    for (int i = 0; i < 2; i++)
        if (lc->in[i] >= 0)
            close(lc->in[i]); /* poll failed: the writers see EPIPE rather than block */
    for (int i = 0; i < 2; i++)
        if (lc->dropped[i])
            dprintf(lc->file[1], "afsp: the job wrote %llu bytes more to its %s than are kept\n",
                    (unsigned long long)lc->dropped[i], i ? "stderr" : "stdout");
    pthread_mutex_lock(&lc->mu);
    lc->eof = true;
    pthread_cond_broadcast(&lc->cv);
    pthread_mutex_unlock(&lc->mu);
    return NULL;
}

/* Pipes for the job's stdout and stderr (their write ends in w), copied into out and err. */
int logcopy_start(struct logcopy **out, int fout, int ferr, int w[2])
{
    struct logcopy *lc = calloc(1, sizeof *lc);
    int p[2][2] = {{-1, -1}, {-1, -1}};
    if (!lc || pipe2(p[0], O_CLOEXEC) < 0 || pipe2(p[1], O_CLOEXEC) < 0) {
        int e = errno;
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
                if (p[i][j] >= 0)
                    close(p[i][j]);
        free(lc);
        return -e;
    }
    *lc = (struct logcopy){.in = {p[0][0], p[1][0]}, .file = {fout, ferr}};
    pthread_mutex_init(&lc->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lc->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = -pthread_create(&lc->th, NULL, logcopy_main, lc);
    if (rc < 0) {
        for (int i = 0; i < 2; i++) {
            close(p[i][0]);
            close(p[i][1]);
        }
        free(lc);
        return rc;
    }
    w[0] = p[0][1];
    w[1] = p[1][1];
    *out = lc;
    return 0;
}

/* Waits up to ms for the copy to reach the pipes' end (every writer gone). */
void logcopy_wait(struct logcopy *lc, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&lc->mu);
    while (!lc->eof && pthread_cond_timedwait(&lc->cv, &lc->mu, &ts) == 0)
        ;
    pthread_mutex_unlock(&lc->mu);
}

void logcopy_end(struct logcopy *lc)
{
    pthread_join(lc->th, NULL);
    pthread_cond_destroy(&lc->cv);
    pthread_mutex_destroy(&lc->mu);
    free(lc);
}
