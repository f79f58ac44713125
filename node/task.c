/*
 * task.c - the daemon's tasks, each on a thread of its own: a pull (store_pull, with the node's
 * peers asked first through jobs) or a mount's fetch (chunks from peers, else a Range request to
 * the registry, stored before the answer). A thread that needs something of peers queues a job
 * and waits; the loop's thread hands queued jobs to the core (tasks_poll) and wakes the thread
 * when the core hands its job back (tasks_job_done). Not part of the sans-IO core: the
 * simulator models tasks instead.
 *
 * Owns: the threads, the job hand-off (one mutex). Must not: touch the core from a task's
 * thread.
 */
#include "node_int.h"

#include "../store/pull/pull.h"
#include "../store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct jwait {
    struct node_job j;
    bool done;
    struct jwait *next; /* submitted, not yet given to the core */
};

struct trun {
    struct tasks *ts;
    struct node_task *t;
    pthread_t th;
    struct trun *next;
};

struct tasks {
    struct store *s;
    void (*wake)(void *arg);
    void *wake_arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* a job was handed back */
    struct jwait *submitted; /* by threads, for the loop */
    struct trun *running, *finished;
    size_t nrunning;
};

int tasks_new(struct tasks **out, struct store *s, void (*wake)(void *arg), void *arg)
{
    struct tasks *ts = calloc(1, sizeof *ts);
    if (!ts)
        return -ENOMEM;
    ts->s = s;
    ts->wake = wake;
    ts->wake_arg = arg;
    pthread_mutex_init(&ts->mu, NULL);
    pthread_cond_init(&ts->cv, NULL);
    *out = ts;
    return 0;
}

void tasks_free(struct tasks *ts)
{
    if (!ts)
        return;
    pthread_mutex_destroy(&ts->mu);
    pthread_cond_destroy(&ts->cv);
    free(ts);
}

size_t tasks_running(struct tasks *ts)
{
    pthread_mutex_lock(&ts->mu);
    size_t n = ts->nrunning;
    pthread_mutex_unlock(&ts->mu);
    return n;
}

/* On a task's thread: hands w to the loop and waits until the core hands it back. */
static int job_run(struct tasks *ts, struct jwait *w)
{
    pthread_mutex_lock(&ts->mu);
    w->next = ts->submitted;
    ts->submitted = w;
    pthread_mutex_unlock(&ts->mu);
    ts->wake(ts->wake_arg);
    pthread_mutex_lock(&ts->mu);
    while (!w->done)
        pthread_cond_wait(&ts->cv, &ts->mu);
    pthread_mutex_unlock(&ts->mu);
    return w->j.rc;
}

void tasks_job_done(struct tasks *ts, struct node_job *j)
{
    struct jwait *w = (struct jwait *)((char *)j - offsetof(struct jwait, j));
    pthread_mutex_lock(&ts->mu);
    w->done = true;
    pthread_cond_broadcast(&ts->cv);
    pthread_mutex_unlock(&ts->mu);
}

/* ---- what peers are asked, on a task's thread (store's struct pull_peers) ------------------ */

static int peers_get_blob(void *arg, const uint8_t digest[DIGEST_LEN], uint64_t max,
                          struct buf *out)
{
    struct jwait w = {.j = {.kind = NODE_JOB_BLOB, .max = max, .out = out}};
    memcpy(w.j.digest, digest, DIGEST_LEN);
    return job_run(arg, &w);
}

static int peers_get_index(void *arg, const uint8_t digest[DIGEST_LEN], struct buf *out)
{
    struct jwait w = {.j = {.kind = NODE_JOB_INDEX, .max = 512u << 20, .out = out}};
    memcpy(w.j.digest, digest, DIGEST_LEN);
    return job_run(arg, &w);
}

/* Chunks [first, last] of f from peers (those it lacks). */
static int chunks_from_peers(struct tasks *ts, struct store_fetch *f, uint32_t first, uint32_t last)
{
    struct jwait w = {.j = {.kind = NODE_JOB_CHUNKS, .fetch = f, .first = first, .last = last}};
    memcpy(w.j.digest, store_fetch_digest(f), DIGEST_LEN);
    return job_run(ts, &w);
}

static int peers_get_chunks(void *arg, struct store_fetch *f)
{
    return chunks_from_peers(arg, f, 0, store_fetch_nchunks(f) - 1);
}

/* Chunks [first, last] of a layer the store has in part, for a mount: from peers, else from
 * the registry of the image (when the request named it); stored before the answer. */
static int fetch_run(struct tasks *ts, struct node_task *t, const struct pull_opts *po)
{
    struct store_fetch *f;
    int rc = store_fetch_open(ts->s, t->layer, &f);
    if (rc < 0)
        return rc;
    if (t->first > t->last || t->last >= store_fetch_nchunks(f))
        rc = err_set(AFSP_E_USAGE, "the layer has no chunk %u", t->last);
    if (rc == 0)
        rc = chunks_from_peers(ts, f, t->first, t->last);
    if (rc < 0 && rc != -ECANCELED && rc != AFSP_E_USAGE && t->ref) {
        rc = store_fetch_registry(f, t->ref, po, t->first, t->last);
        t->via_registry = rc == 0;
    }
    int frc = store_fetch_flush(f, 0);
    t->completed = frc == 0 && store_fetch_missing(f) == 0;
    store_fetch_free(f);
    return rc < 0 ? rc : frc;
}

static void *task_main(void *arg)
{
    struct trun *r = arg;
    struct tasks *ts = r->ts;
    struct node_task *t = r->t;
    struct pull_peers peers = {ts, peers_get_blob, peers_get_index, peers_get_chunks};
    struct pull_opts po = {.platform = t->platform,
                           .insecure_hosts = (const char *const *)t->insecure,
                           .peers = &peers,
                           .lazy = t->lazy};
    t->rc = t->kind == NODE_TASK_FETCH ? fetch_run(ts, t, &po)
                                       : store_pull(ts->s, t->ref, &po, t->digest);
    if (t->rc < 0)
        snprintf(t->msg, sizeof t->msg, "%s", err_msg(t->rc));
    pthread_mutex_lock(&ts->mu);
    r->next = ts->finished;
    ts->finished = r;
    pthread_mutex_unlock(&ts->mu);
    ts->wake(ts->wake_arg);
    return NULL;
}

int tasks_start(struct tasks *ts, struct node_task *t)
{
    struct trun *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->ts = ts;
    r->t = t;
    pthread_mutex_lock(&ts->mu);
    int rc = pthread_create(&r->th, NULL, task_main, r);
    if (rc == 0)
        ts->nrunning++;
    pthread_mutex_unlock(&ts->mu);
    if (rc != 0) {
        free(r);
        return -rc;
    }
    return 0;
}

void tasks_poll(struct tasks *ts, struct node *n, uint64_t now)
{
    pthread_mutex_lock(&ts->mu);
    struct jwait *sub = ts->submitted;
    struct trun *fin = ts->finished;
    ts->submitted = NULL;
    ts->finished = NULL;
    pthread_mutex_unlock(&ts->mu);
    while (sub) {
        struct jwait *w = sub;
        sub = w->next;
        node_job_submit(n, &w->j, now);
    }
    while (fin) {
        struct trun *r = fin;
        fin = r->next;
        pthread_join(r->th, NULL);
        pthread_mutex_lock(&ts->mu);
        ts->nrunning--;
        pthread_mutex_unlock(&ts->mu);
        node_task_done(n, r->t, now);
        free(r);
    }
}
