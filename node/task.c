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
#include <time.h>

_Static_assert(STORE_ID_LEN == P2P_ID_LEN, "the store keeps node IDs");

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
    struct trun *wnext; /* on tasks.written */
};

/* A peer's index the store judged, for the loop's thread (node_index_judged). */
struct ifalse {
    uint8_t layer[DIGEST_LEN], peer_ix[DIGEST_LEN], blob_ix[DIGEST_LEN], from[P2P_ID_LEN];
    bool known; /* from */
    bool was_false;
    struct ifalse *next;
};

struct tasks {
    struct store *s;
    struct ifalse *ifalse; /* newest first */
    void (*wake)(void *arg);
    void *wake_arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* a job was handed back */
    struct jwait *submitted; /* by threads, for the loop */
    struct trun *running, *finished;
    struct trun *written; /* FETCHes whose chunks are written: their clients are answered */
    size_t nrunning;
};

static void on_index_judged(void *arg, const uint8_t layer[DIGEST_LEN], const uint8_t *from,
                            const uint8_t peer_ix[DIGEST_LEN], const uint8_t blob_ix[DIGEST_LEN],
                            bool was_false)
{
    struct tasks *ts = arg;
    struct ifalse *f = calloc(1, sizeof *f);
    if (!f)
        return; /* the layer is right now; only the sender goes unpunished */
    memcpy(f->layer, layer, DIGEST_LEN);
    memcpy(f->peer_ix, peer_ix, DIGEST_LEN);
    memcpy(f->blob_ix, blob_ix, DIGEST_LEN);
    if ((f->known = from != NULL))
        memcpy(f->from, from, P2P_ID_LEN);
    f->was_false = was_false;
    pthread_mutex_lock(&ts->mu);
    f->next = ts->ifalse;
    ts->ifalse = f;
    pthread_mutex_unlock(&ts->mu);
    ts->wake(ts->wake_arg);
}

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
    store_set_index_watch(s, on_index_judged, ts);
    *out = ts;
    return 0;
}

void tasks_free(struct tasks *ts)
{
    if (!ts)
        return;
    store_set_index_watch(ts->s, NULL, NULL);
    while (ts->ifalse) {
        struct ifalse *f = ts->ifalse;
        ts->ifalse = f->next;
        free(f);
    }
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
    TRACE("job_submit kind=%d", (int)w->j.kind);
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

static int peers_get_index(void *arg, const uint8_t digest[DIGEST_LEN], struct buf *out,
                           uint8_t from[STORE_ID_LEN])
{
    /* INDEX_MAX_BYTES: an honest index can be thousands of times its blob (long xattrs) */
    struct jwait w = {.j = {.kind = NODE_JOB_INDEX, .max = 512u << 20, .out = out}};
    memcpy(w.j.digest, digest, DIGEST_LEN);
    int rc = job_run(arg, &w);
    memcpy(from, w.j.from, STORE_ID_LEN);
    return rc;
}

/* Chunks [first, last] of f from peers (those it lacks). */
static int chunks_from_peers(struct tasks *ts, struct store_fetch *f, uint32_t first, uint32_t last)
{
    struct jwait w = {.j = {.kind = NODE_JOB_CHUNKS, .fetch = f, .first = first, .last = last}};
    memcpy(w.j.digest, store_fetch_digest(f), DIGEST_LEN);
    return job_run(ts, &w);
}

_Static_assert(sizeof(struct dht_contact) <= sizeof(struct pull_src), "a pull_src holds a contact");
_Static_assert(NODE_TRACE_MAX_BYTES >= 8 + DIGEST_LEN + 4 + 8 * STORE_TRACE_MAX,
               "the largest start trace is taken");

/* owner: the task's token (its claims are its own, node/claim.c) */
static int peers_claim(void *arg, uint64_t owner, const uint8_t digest[DIGEST_LEN], uint64_t size,
                       const struct pull_src *cur, unsigned flags, bool *claimed,
                       struct pull_src *src)
{
    struct jwait w = {.j = {.kind = NODE_JOB_CLAIM,
                            .max = size,
                            .relay = true,
                            .whole = flags & PULL_CLAIM_WHOLE,
                            .owner = owner}};
    memcpy(w.j.digest, digest, DIGEST_LEN);
    if (cur) {
        w.j.reading = true;
        w.j.avoid_src = flags & PULL_CLAIM_FAILED;
        memcpy(&w.j.src, cur->opaque, sizeof w.j.src);
    }
    int rc = job_run(arg, &w);
    *claimed = rc == 0 && w.j.claimed;
    if (rc == 0 && w.j.stream) {
        memcpy(src->opaque, &w.j.src, sizeof w.j.src);
        return 1;
    }
    return rc;
}

static int peers_read_src(void *arg, const struct pull_src *src, const uint8_t digest[DIGEST_LEN],
                          uint64_t size, uint64_t off, uint32_t len, struct buf *out)
{
    struct jwait w = {.j = {.kind = NODE_JOB_BLOB,
                            .max = size,
                            .out = out,
                            .has_src = true,
                            .off = off,
                            .len = len}};
    memcpy(w.j.digest, digest, DIGEST_LEN);
    memcpy(&w.j.src, src->opaque, sizeof w.j.src);
    return job_run(arg, &w);
}

static void peers_claim_end(void *arg, uint64_t owner, const uint8_t digest[DIGEST_LEN], bool whole)
{
    struct jwait w = {.j = {.kind = NODE_JOB_CLAIM_END, .whole = whole, .owner = owner}};
    memcpy(w.j.digest, digest, DIGEST_LEN);
    job_run(arg, &w);
}

/* What peers are asked for a task: its tasks and, for a verification, its pace. */
struct tctx {
    struct tasks *ts;
    const struct node_task *t;
};

static int peers_get_blob_t(void *arg, const uint8_t digest[DIGEST_LEN], uint64_t max,
                            struct buf *out)
{
    return peers_get_blob(((struct tctx *)arg)->ts, digest, max, out);
}

static int peers_get_index_t(void *arg, const uint8_t digest[DIGEST_LEN], struct buf *out,
                             uint8_t from[STORE_ID_LEN])
{
    return peers_get_index(((struct tctx *)arg)->ts, digest, out, from);
}

static int peers_claim_t(void *arg, const uint8_t digest[DIGEST_LEN], uint64_t size,
                         const struct pull_src *cur, unsigned flags, bool *claimed,
                         struct pull_src *src)
{
    struct tctx *c = arg;
    return peers_claim(c->ts, (uint64_t)(uintptr_t)c->t, digest, size, cur, flags, claimed, src);
}

static int peers_read_src_t(void *arg, const struct pull_src *src, const uint8_t digest[DIGEST_LEN],
                            uint64_t size, uint64_t off, uint32_t len, struct buf *out)
{
    return peers_read_src(((struct tctx *)arg)->ts, src, digest, size, off, len, out);
}

static void peers_claim_end_t(void *arg, const uint8_t digest[DIGEST_LEN], bool whole)
{
    struct tctx *c = arg;
    peers_claim_end(c->ts, (uint64_t)(uintptr_t)c->t, digest, whole);
}

/* Every chunk f lacks. A verification asks for NODE_VERIFY_BATCH bytes at a time and waits
 * between batches, so that it takes at most t->rate bytes a second on average. */
static int peers_get_chunks(void *arg, struct store_fetch *f)
{
    struct tctx *c = arg;
    uint32_t n = store_fetch_nchunks(f);
    if (c->t->kind != NODE_TASK_VERIFY || !c->t->rate)
        return chunks_from_peers(c->ts, f, 0, n - 1);
    uint64_t start = time_mono_ns(), bytes = 0;
    for (uint32_t a = 0; a < n;) {
        uint32_t b = a;
        uint64_t batch = 0, off;
        uint32_t len;
        while (b < n && (b == a || batch < NODE_VERIFY_BATCH)) {
            store_fetch_chunk(f, b, &off, &len);
            batch += store_fetch_has(f, b) ? 0 : len;
            b++;
        }
        if (batch) {
            int rc = chunks_from_peers(c->ts, f, a, b - 1);
            if (rc < 0)
                return rc;
            bytes += batch;
            uint64_t due = start + (uint64_t)((double)bytes * 1e9 / (double)c->t->rate),
                     now = time_mono_ns();
            if (due > now) {
                struct timespec d = {(time_t)((due - now) / 1000000000),
                                     (long)((due - now) % 1000000000)};
                nanosleep(&d, NULL);
            }
        }
        a = b;
    }
    return 0;
}

/* Chunks [first, last] of a layer the store has in part, for a mount: from peers, else from
 * the registry of the image (when the request named it). The mount is answered once they are
 * written and checked (node_task_written), and the chunks then made durable and marked. */
static int fetch_run(struct trun *r, const struct pull_opts *po)
{
    struct tasks *ts = r->ts;
    struct node_task *t = r->t;
    struct store_fetch *f;
    int rc = store_fetch_open(ts->s, t->layer, &f);
    TRACE("fetch_open rc=%d", rc);
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
    if (rc == 0) {
        pthread_mutex_lock(&ts->mu);
        r->wnext = ts->written;
        ts->written = r;
        pthread_mutex_unlock(&ts->mu);
        ts->wake(ts->wake_arg);
    }
    int frc = store_fetch_flush(f, 0);
    t->completed = frc == 0 && store_fetch_missing(f) == 0;
    store_fetch_free(f);
    return rc < 0 ? rc : frc;
}

/* The start trace of the image t->ref names (by digest): kept here, else from a provider of its
 * key, kept only if it fits the image (every entry a chunk of one of its layers). A cluster that
 * has none is no error: found stays false. */
static int trace_run(struct tasks *ts, struct node_task *t)
{
    struct image_info ii;
    uint8_t key[DIGEST_LEN];
    char dg[DIGEST_STR_LEN + 1];
    struct buf b = {0};
    int rc = store_image_find(ts->s, t->ref, &ii);
    if (rc < 0)
        return rc;
    store_trace_key(ii.manifest_digest, key);
    if ((rc = store_trace_get(ts->s, key, &b)) == 0) {
        t->found = true;
    } else if (rc == AFSP_E_NOTFOUND) {
        struct jwait w = {.j = {.kind = NODE_JOB_TRACE, .max = NODE_TRACE_MAX_BYTES, .out = &b}};
        memcpy(w.j.digest, key, DIGEST_LEN);
        b.len = 0;
        rc = job_run(ts, &w);
        if (rc == 0 && store_trace_fits(ts->s, b.p, b.len, ii.manifest_digest,
                                        (const uint8_t(*)[DIGEST_LEN])ii.layers, ii.nlayers) < 0) {
            log_warn("event=trace_refused image=%s from=%s reason=\"%s\"", t->ref,
                     digest_fmt(w.j.from, dg), err_msg(AFSP_E_FORMAT));
            t->refused = true;
        } else if (rc == 0 && (rc = store_trace_put(ts->s, b.p, b.len)) >= 0) {
            t->found = true;
            t->fetched = rc == 0;
        }
        if (rc == AFSP_E_NOTFOUND || t->refused)
            rc = 0; /* none in the cluster (or none that fits): the mount records one */
    }
    buf_release(&b);
    free(ii.layers);
    return rc < 0 ? rc : 0;
}

/* A verification: the image's partial layers completed (a pull, not lazy; chunks from peers
 * paced), so that each gets the index its blob gives; a false one is reported by the store
 * (on_index_judged). The image is the manifest that was read: t->ref pinned to t->digest (a
 * mount's ref names it already), not whatever its tag names now, and its record stays. */
static int verify_run(struct tasks *ts, struct node_task *t, struct pull_opts *po)
{
    static const uint8_t none[DIGEST_LEN];
    char ref[1024], dg[DIGEST_STR_LEN + 1];
    if (memcmp(t->digest, none, DIGEST_LEN) && !strchr(t->ref, '@'))
        snprintf(ref, sizeof ref, "%s@%s", t->ref, digest_fmt(t->digest, dg));
    else
        snprintf(ref, sizeof ref, "%s", t->ref);
    po->no_record = true;
    po->registry_rate = t->rate; /* paced like the chunks from peers */
    uint8_t got[DIGEST_LEN];
    int rc = store_pull(ts->s, ref, po, got);
    struct image_info ii;
    if (rc == 0 && (rc = store_image_find(ts->s, ref, &ii)) == 0) {
        for (size_t i = 0; i < ii.nlayers; i++) {
            int vrc = store_layer_verify(ts->s, ii.layers[i]); /* a false index: reported */
            if (vrc < 0 && rc == 0)
                rc = vrc;
        }
        free(ii.layers);
    }
    struct store_fetch *f;
    if (store_fetch_open(ts->s, t->layer, &f) == 0) {
        t->completed = store_fetch_missing(f) == 0;
        store_fetch_free(f);
    }
    return rc;
}

static void *task_main(void *arg)
{
    struct trun *r = arg;
    struct tasks *ts = r->ts;
    struct node_task *t = r->t;
    struct tctx c = {ts, t};
    struct pull_peers peers = {&c, peers_get_blob_t, peers_get_index_t, peers_get_chunks,
                               peers_claim_t, peers_claim_end_t, peers_read_src_t,
                               /* a verification paces its chunks: one layer at a time */
                               t->kind == NODE_TASK_VERIFY ? 1 : PULL_LAYERS_AT_ONCE};
    struct pull_opts po = {.platform = t->platform,
                           .insecure_hosts = (const char *const *)t->insecure,
                           .peers = &peers,
                           .registry_bytes = &t->registry_bytes,
                           .lazy = t->lazy && t->kind == NODE_TASK_PULL};
    TRACE("task %p kind=%d", (void *)t, (int)t->kind);
    t->rc = t->kind == NODE_TASK_FETCH    ? fetch_run(r, &po)
            : t->kind == NODE_TASK_VERIFY ? verify_run(ts, t, &po)
            : t->kind == NODE_TASK_TRACE  ? trace_run(ts, t)
                                          : store_pull(ts->s, t->ref, &po, t->digest);
    TRACE("task_end %p rc=%d", (void *)t, t->rc);
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
    struct trun *fin = ts->finished, *wr = ts->written;
    struct ifalse *fl = ts->ifalse;
    ts->submitted = NULL;
    ts->finished = NULL;
    ts->written = NULL;
    ts->ifalse = NULL;
    pthread_mutex_unlock(&ts->mu);
    if (sub)
        TRACE("tasks_poll");
    while (fl) {
        struct ifalse *f = fl;
        fl = f->next;
        node_index_judged(n, f->layer, f->known ? f->from : NULL, f->peer_ix, f->blob_ix,
                          f->was_false, now);
        free(f);
    }
    while (sub) {
        struct jwait *w = sub;
        sub = w->next;
        node_job_submit(n, &w->j, now);
    }
    /* before the ends: a task on both lists was written first, and is freed by its end */
    for (; wr; wr = wr->wnext)
        node_task_written(n, wr->t, now);
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
