/*
 * runner_int.h - what the runner's files share (runner.c: jobs; runner_mount.c: the images'
 * mounts and their reaper; logcopy.c: a job's output). Not for the rest of the node.
 */
#ifndef AFSP_NODE_RUNNER_INT_H
#define AFSP_NODE_RUNNER_INT_H

#include "node_int.h"

#include "../store/store.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define PATH_LEN 4096

struct rmount {
    uint8_t digest[DIGEST_LEN];
    char dir[PATH_LEN];
    unsigned refs;
    enum { M_MOUNTING, M_READY, M_UNMOUNTING } state;
    uint64_t idle_since; /* monotonic ms, while refs is 0 */
    struct rmount *next;
};

struct xrun {
    struct runner *r;
    struct node_exec *x;
    pthread_t th;
    bool started, reported_start, done;
    bool exited, reported_exit; /* its processes ended: its cleanup goes on */
    /* its output: pipes (the write ends the runtime's, until it exits) copied to its files by
     * a thread of its own, NODE_EXEC_LOG_MAX bytes of each at most */
    int wfd[2];
    struct logcopy *lc;
    /* when (monotonic ns) each step of its start and end was reached, for its timeline */
    uint64_t t_begin, t_found, t_mounted, t_ready, t_started, t_ended, t_done;
    struct exec_result result; /* the job's thread's, until exited or done */
    bool kill_asked;           /* a kill came: if the runtime does not run it yet, it never will */
    unsigned kill_threads;     /* kills' threads asking the runtime (they use the run) */
    struct xrun *next;
};

struct runner {
    struct node_runner_cfg cfg;
    struct store *s;
    char data[1024], jobs[1100], state[1100]; /* a data directory's path is short (its socket's) */
    const char *key_file;
    char id_prefix[16]; /* "NODEID8-": this node's jobs' ids and cgroups begin so */
    void (*wake)(void *arg);
    void *wake_arg;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a mount changed state, or the reaper has work */
    struct xrun *runs;
    struct rmount *mounts;
    unsigned kill_threads; /* all runs' */
    pthread_t reaper;
    bool reaper_on, stopping;
};

static inline uint64_t runner_mono_ms(void)
{
    return time_mono_ns() / 1000000;
}

/* ---- runner_mount.c ---------------------------------------------------------------------- */

/* `afsp --data DATA ARGS...` (this program), waited for; its stderr to err (-1: /dev/null). */
int runner_self_run(struct runner *r, const char *const *args, int err);
/* Whether dir is a mount point (or a FUSE mount whose process died). */
bool runner_is_mounted(const char *dir);
/* Unmounts dir if mounted (lazily if busy) and removes it. */
void runner_unmount(struct runner *r, const char *dir);
/* The image's mount, made if need be (its reference counted): its directory in out. A mount
 * whose process died (ENOTCONN) is mounted again; the jobs on it keep their references. */
int runner_mount_acquire(struct runner *r, const struct image_info *ii, const struct node_exec *x,
                         char out[static PATH_LEN], int err_fd);
void runner_mount_release(struct runner *r, const char *dir);
/* The reaper's thread: unmounts the mounts idle for mount_keep_ms (all idle ones when
 * stopping). */
void *runner_reaper_main(void *arg);

/* ---- logcopy.c --------------------------------------------------------------------------- */

struct logcopy;
/* Pipes for the job's stdout and stderr (their write ends in w), copied into fout and ferr by a
 * thread of their own, NODE_EXEC_LOG_MAX bytes of each at most. */
int logcopy_start(struct logcopy **out, int fout, int ferr, int w[2]);
/* Waits up to ms for the copy to reach the pipes' end (every writer gone). */
void logcopy_wait(struct logcopy *lc, uint64_t ms);
/* Joins the copy's thread and frees it. */
void logcopy_end(struct logcopy *lc);

#endif
