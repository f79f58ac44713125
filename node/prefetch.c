/*
 * prefetch.c - a mount's start trace (node.h, node_prefetch_*; docs/mount.md): the mount asks
 * the node for the image's trace (kept, or found through the DHT and fetched from a peer). With
 * one, workers fetch its chunks in its order through the mount's fetcher, a few at a time, before
 * the program asks (a reader that needs one of them waits for that request instead of asking
 * again). Without one, the mount records the chunks its reads use, in order, for its first
 * NODE_TRACE_WINDOW_MS, then keeps the trace in the store and has the node announce it, so that
 * the next cold start of the image anywhere in the cluster gets it.
 *
 * Owns: its threads, the recording. Must not: fetch a chunk the image does not have (each entry is
 * checked against the layers), nor let the prefetch hold a reader up beyond one chunk request.
 */
#include "node.h"

#include "../store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct node_prefetch {
    struct node_fetcher *nf;
    struct store *s;
    const char *dir;
    uint8_t manifest[DIGEST_LEN];
    struct store_layer **layers;
    uint8_t (*digests)[DIGEST_LEN];
    size_t nlayers;
    pthread_t th;
    bool started; /* th runs */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    /* the recording (while recording) */
    bool recording;
    uint64_t until_ns; /* the window's end */
    struct store_trace_ent *rec;
    size_t nrec;
    /* the replay */
    struct store_trace_ent *ents;
    size_t nents, next;
    uint64_t fetched; /* chunks the replay asked for */
};

static void on_chunk(void *arg, const uint8_t digest[DIGEST_LEN], uint32_t i)
{
    struct node_prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    if (p->recording && p->nrec < STORE_TRACE_MAX && time_mono_ns() < p->until_ns)
        for (size_t l = 0; l < p->nlayers; l++)
            if (!memcmp(p->digests[l], digest, DIGEST_LEN)) {
                p->rec[p->nrec++] = (struct store_trace_ent){(uint32_t)l, i};
                break;
            }
    pthread_mutex_unlock(&p->mu);
}

/* A replay worker: takes the next entries in order (a run of consecutive chunks of one layer, at
 * most NODE_PREFETCH_RUN) and fetches those not present. */
static void *worker_main(void *arg)
{
    struct node_prefetch *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->next < p->nents && !p->stop) {
            const struct store_trace_ent *e = &p->ents[p->next];
            if (!store_layer_chunk_present(p->layers[e->layer], e->chunk))
                break;
            p->next++;
        }
        if (p->stop || p->next >= p->nents) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        struct store_trace_ent a = p->ents[p->next++];
        uint32_t last = a.chunk;
        while (p->next < p->nents && last - a.chunk + 1 < NODE_PREFETCH_RUN &&
               p->ents[p->next].layer == a.layer && p->ents[p->next].chunk == last + 1 &&
               !store_layer_chunk_present(p->layers[a.layer], last + 1)) {
            last++;
            p->next++;
        }
        p->fetched += last - a.chunk + 1;
        pthread_mutex_unlock(&p->mu);
        /* a failure is the reader's to see, when it asks for the chunk itself */
        (void)node_fetcher_fetch(p->nf, p->digests[a.layer], a.chunk, last, 0);
    }
}

/* The trace the store keeps for the image, checked against its layers; false: none usable. */
static bool trace_load(struct node_prefetch *p)
{
    uint8_t key[DIGEST_LEN], m[DIGEST_LEN];
    struct buf b = {0};
    store_trace_key(p->manifest, key);
    bool ok = store_trace_get(p->s, key, &b) == 0 &&
              store_trace_decode(b.p, b.len, m, &p->ents, &p->nents) == 0;
    buf_release(&b);
    for (size_t i = 0; ok && i < p->nents; i++)
        ok = p->ents[i].layer < p->nlayers &&
             p->ents[i].chunk < store_layer_nchunks(p->layers[p->ents[i].layer]);
    if (!ok) {
        free(p->ents);
        p->ents = NULL;
        p->nents = 0;
    }
    return ok;
}

static void trace_save(struct node_prefetch *p)
{
    struct buf b = {0};
    if (store_trace_encode(p->manifest, p->rec, p->nrec, &b) == 0 &&
        store_trace_put(p->s, b.p, b.len) == 0) {
        json_t *ans = NULL;
        int fd = node_client_connect(p->dir);
        if (fd >= 0 && node_client_call(fd, NODE_CTL_RECONCILE, json_object(), &ans) == 0)
            log_info("event=trace_recorded chunks=%zu", p->nrec);
        if (fd >= 0)
            close(fd);
        json_decref(ans);
    }
    buf_release(&b);
}

static void *prefetch_main(void *arg)
{
    struct node_prefetch *p = arg;
    json_t *ans = NULL;
    int fd = node_client_connect(p->dir);
    /* the node's answer, bounded by the node call's own timeout */
    json_t *req = json_pack("{s:s}", "ref", node_fetcher_ref(p->nf));
    int rc = fd >= 0 && req ? node_client_call(fd, NODE_CTL_TRACE, req, &ans) : -1;
    if (fd >= 0)
        close(fd);
    json_decref(req);
    bool answered = rc == 0 && json_is_true(json_object_get(ans, "ok"));
    bool found = answered && json_is_true(json_object_get(ans, "found"));
    json_decref(ans);
    if (found && trace_load(p)) {
        pthread_mutex_lock(&p->mu);
        p->recording = false;
        pthread_mutex_unlock(&p->mu);
        pthread_t w[NODE_PREFETCH_WORKERS];
        size_t nw = 0;
        for (; nw < NODE_PREFETCH_WORKERS; nw++)
            if (pthread_create(&w[nw], NULL, worker_main, p))
                break;
        for (size_t i = 0; i < nw; i++)
            pthread_join(w[i], NULL);
        log_info("event=prefetch chunks=%" PRIu64 " of=%zu", p->fetched, p->nents);
        return NULL;
    }
    pthread_mutex_lock(&p->mu);
    if (!answered) /* no node, or it could not say: nothing to record for */
        p->recording = false;
    /* until the window ends (cv's clock is CLOCK_MONOTONIC, time_mono_ns's) or stop */
    struct timespec until = {(time_t)(p->until_ns / 1000000000u),
                             (long)(p->until_ns % 1000000000u)};
    while (p->recording && !p->stop && time_mono_ns() < p->until_ns)
        pthread_cond_timedwait(&p->cv, &p->mu, &until);
    bool save = p->recording && p->nrec > 0;
    p->recording = false;
    pthread_mutex_unlock(&p->mu);
    if (save)
        trace_save(p);
    return NULL;
}

int node_prefetch_start(struct node_prefetch **out, struct node_fetcher *nf, struct store *s,
                        const char *dir, const uint8_t manifest[DIGEST_LEN],
                        struct store_layer **layers, const uint8_t (*digests)[DIGEST_LEN],
                        size_t nlayers)
{
    struct node_prefetch *p = calloc(1, sizeof *p);
    if (!p || !(p->rec = calloc(STORE_TRACE_MAX, sizeof *p->rec)) ||
        !(p->digests = calloc(nlayers ? nlayers : 1, DIGEST_LEN))) {
        if (p)
            free(p->rec);
        free(p);
        return -ENOMEM;
    }
    p->nf = nf;
    p->s = s;
    p->dir = dir;
    memcpy(p->manifest, manifest, DIGEST_LEN);
    p->layers = layers;
    memcpy(p->digests, digests, nlayers * DIGEST_LEN);
    p->nlayers = nlayers;
    p->recording = true;
    p->until_ns = time_mono_ns() + (uint64_t)NODE_TRACE_WINDOW_MS * 1000000u;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    store_set_chunk_watch(s, on_chunk, p);
    if (pthread_create(&p->th, NULL, prefetch_main, p)) {
        node_prefetch_stop(p);
        return -EAGAIN;
    }
    p->started = true;
    *out = p;
    return 0;
}

void node_prefetch_stop(struct node_prefetch *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->started)
        pthread_join(p->th, NULL);
    store_set_chunk_watch(p->s, NULL, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->rec);
    free(p->ents);
    free(p->digests);
    free(p);
}
