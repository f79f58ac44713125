/*
 * fetcher.c - a mount's chunks through the node (node.h, node_fetcher_*): the store's fetcher
 * (store_set_fetcher) in a process that reads layers the store holds in part. Reading threads
 * that miss chunks ask the node on the data directory to fetch and store them (verb "fetch"),
 * and read them from the store once it answers. A reader that needs chunks another request (a
 * reader's, or the prefetch's) is fetching waits for that answer and looks again at what it
 * lacks (decoder threads often miss the same chunk at once), so that no chunk is asked for twice
 * at once; a node that answers busy is asked again, backing off.
 *
 * The node answers once the chunks are written to the layer's blob file and checked, before it
 * makes them durable and marks them present (its flush follows the answer: ~2 ms a fetch that a
 * reader no longer waits for). So the store's chunk map may not show them yet: the fetcher keeps,
 * per layer, the chunks the node said it wrote, and answers a later ask for them at once (a
 * reader that waited on another request, or the prefetch's chunks), instead of asking the node
 * to fetch them again. The reader checks each chunk's bytes against the index before it uses
 * them either way.
 *
 * Owns: the requests in progress, the written maps. Must not: read a chunk's bytes (the store
 * does, checked).
 */
#include "node.h"

#include "../store/store.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 500

/* A request to the node in progress, which later readers of the same chunks wait for. */
struct inflight {
    uint8_t digest[DIGEST_LEN];
    uint32_t first, last;
    bool done;
    int rc, waiters;
    struct inflight *next;
};

/* The chunks of one layer the node answered for: written and checked, maybe not yet marked. */
struct written {
    uint8_t digest[DIGEST_LEN];
    uint8_t *bm;
    uint32_t nbits; /* bm holds bits [0, nbits) */
    struct written *next;
};

struct node_fetcher {
    char *dir, *ref;
    uint64_t wait_ms;
    char **insecure; /* NULL-terminated */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct inflight *inflight;
    struct written *written;
};

int node_fetcher_new(struct node_fetcher **out, const char *dir, const char *ref,
                     const char *const *insecure, uint64_t wait_ms)
{
    struct node_fetcher *f = calloc(1, sizeof *f);
    size_t n = 0;
    while (insecure && insecure[n])
        n++;
    if (!f || !(f->dir = strdup(dir)) || (ref && !(f->ref = strdup(ref))) ||
        !(f->insecure = calloc(n + 1, sizeof *f->insecure))) {
        node_fetcher_free(f);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (!(f->insecure[i] = strdup(insecure[i]))) {
            node_fetcher_free(f);
            return -ENOMEM;
        }
    f->wait_ms = wait_ms ? wait_ms : NODE_MOUNT_WAIT_MS;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    *out = f;
    return 0;
}

const char *node_fetcher_ref(const struct node_fetcher *f)
{
    return f->ref;
}

void node_fetcher_free(struct node_fetcher *f)
{
    if (!f)
        return;
    for (size_t i = 0; f->insecure && f->insecure[i]; i++)
        free(f->insecure[i]);
    while (f->written) {
        struct written *w = f->written;
        f->written = w->next;
        free(w->bm);
        free(w);
    }
    free(f->insecure);
    free(f->dir);
    free(f->ref);
    free(f);
}

/* One fetch call, its answer awaited at most timeout_ms. *again: the node could not be reached,
 * did not answer, or answered busy, and may do better if asked again. */
static int fetch_once(struct node_fetcher *nf, const uint8_t digest[DIGEST_LEN], uint32_t first,
                      uint32_t last, uint64_t timeout_ms, bool *again)
{
    char dg[DIGEST_STR_LEN + 1];
    json_t *ans = NULL;
    digest_fmt(digest, dg);
    *again = true;
    int fd = node_client_connect(nf->dir);
    if (fd < 0)
        return err_set(AFSP_E_NOTFOUND,
                       "chunks %u-%u of layer %s are not here, and no node runs on %s to fetch "
                       "them",
                       first, last, dg, nf->dir);
    struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(timeout_ms % 1000 * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    json_t *ins = json_array();
    for (size_t i = 0; nf->insecure[i]; i++)
        json_array_append_new(ins, json_string(nf->insecure[i]));
    json_t *req = json_pack("{s:s, s:I, s:I, s:o}", "layer", dg, "first", (json_int_t)first, "last",
                            (json_int_t)last, "insecure", ins);
    if (req && nf->ref)
        json_object_set_new(req, "ref", json_string(nf->ref));
    int rc = req ? node_client_call(fd, NODE_CTL_FETCH, req, &ans) : -ENOMEM;
    close(fd);
    json_decref(req);
    if (rc == -ENOMEM)
        *again = false;
    if (rc == 0 && !json_is_true(json_object_get(ans, "ok"))) {
        const char *e = json_string_value(json_object_get(ans, "error"));
        *again = json_is_true(json_object_get(ans, "busy"));
        rc = err_set(AFSP_E_NOTFOUND, "chunks %u-%u of layer %s: %s", first, last, dg,
                     e ? e : "the node did not fetch them");
    } else if (rc == 0)
        *again = false;
    json_decref(ans);
    return rc;
}

static int fetch_retrying(struct node_fetcher *nf, const uint8_t digest[DIGEST_LEN], uint32_t first,
                          uint32_t last)
{
    uint64_t start = time_mono_ns() / 1000000, ms = BACKOFF_MIN_MS;
    for (;;) {
        uint64_t waited = time_mono_ns() / 1000000 - start;
        uint64_t left = waited < nf->wait_ms ? nf->wait_ms - waited : 0;
        bool again = false;
        int rc = fetch_once(nf, digest, first, last,
                            MAX(1, MIN(left, (uint64_t)NODE_CALL_TIMEOUT_MS)), &again);
        waited = time_mono_ns() / 1000000 - start;
        if (!again || waited >= nf->wait_ms) {
            if (again)
                log_error("a read waited %llu ms for the node on %s: %s",
                          (unsigned long long)waited, nf->dir, err_msg(rc));
            return rc;
        }
        usleep((useconds_t)MIN(ms, nf->wait_ms - waited) * 1000);
        ms = MIN(ms * 2, (uint64_t)BACKOFF_MAX_MS);
    }
}

static struct written *written_find(struct node_fetcher *nf, const uint8_t digest[DIGEST_LEN])
{
    struct written *w = nf->written;
    while (w && memcmp(w->digest, digest, DIGEST_LEN))
        w = w->next;
    return w;
}

/* Whether the node said it wrote chunk i. Under nf->mu. */
static bool written_has(const struct written *w, uint32_t i)
{
    return w && i < w->nbits && (w->bm[i / 8] >> (i % 8) & 1);
}

/* Notes [first, last] written. Under nf->mu. Without memory the note is lost: those chunks are
 * asked of the node again if the store does not show them yet, which costs a fetch, not a read. */
static void written_note(struct node_fetcher *nf, const uint8_t digest[DIGEST_LEN], uint32_t first,
                         uint32_t last)
{
    struct written *w = written_find(nf, digest);
    if (!w) {
        if (!(w = calloc(1, sizeof *w)))
            return;
        memcpy(w->digest, digest, DIGEST_LEN);
        w->next = nf->written;
        nf->written = w;
    }
    if (last == UINT32_MAX) /* no index has that many chunks */
        return;
    if (last >= w->nbits) {
        uint64_t want = MAX((uint64_t)last + 1, 2 * (uint64_t)w->nbits);
        uint32_t nbits = want > UINT32_MAX ? last + 1 : (uint32_t)want;
        uint8_t *bm = realloc(w->bm, (nbits + 7) / 8);
        if (!bm)
            return;
        memset(bm + (w->nbits + 7) / 8, 0, (nbits + 7) / 8 - (w->nbits + 7) / 8);
        w->bm = bm;
        w->nbits = nbits;
    }
    for (uint32_t i = first; i <= last; i++)
        w->bm[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Chunks [first, last], none of them written when the caller looked: asked of the node, or
 * waited for (1) if another request asks for some of them; 2 if some are written by now. */
static int fetch_span(struct node_fetcher *nf, const uint8_t digest[DIGEST_LEN], uint32_t first,
                      uint32_t last)
{
    struct inflight *f, me = {.first = first, .last = last};
    memcpy(me.digest, digest, DIGEST_LEN);
    pthread_mutex_lock(&nf->mu);
    /* a request that ended since the caller looked may have written some: then it looks again
     * (the node, whose map may not show them yet, would fetch them a second time) */
    const struct written *w = written_find(nf, digest);
    for (uint32_t i = first; i <= last; i++)
        if (written_has(w, i)) {
            pthread_mutex_unlock(&nf->mu);
            return 2;
        }
    for (f = nf->inflight; f; f = f->next)
        if (!memcmp(f->digest, digest, DIGEST_LEN) && f->first <= last && first <= f->last)
            break;
    if (f) { /* some asked already: the caller looks again once that answer is in */
        f->waiters++;
        while (!f->done)
            pthread_cond_wait(&nf->cv, &nf->mu);
        if (--f->waiters == 0)
            pthread_cond_broadcast(&nf->cv);
        pthread_mutex_unlock(&nf->mu);
        return 1;
    }
    me.next = nf->inflight;
    nf->inflight = &me;
    pthread_mutex_unlock(&nf->mu);
    TRACE("fetch_ask %02x%02x%02x%02x %u-%u", digest[0], digest[1], digest[2], digest[3], first,
          last);
    int rc = fetch_retrying(nf, digest, first, last);
    TRACE("fetch_answer %u-%u rc=%d", first, last, rc);
    pthread_mutex_lock(&nf->mu);
    for (struct inflight **pp = &nf->inflight; *pp; pp = &(*pp)->next)
        if (*pp == &me) {
            *pp = me.next;
            break;
        }
    if (rc == 0)
        written_note(nf, digest, first, last);
    me.rc = rc;
    me.done = true;
    pthread_cond_broadcast(&nf->cv);
    while (me.waiters) /* they read me.rc: stay until they have */
        pthread_cond_wait(&nf->cv, &nf->mu);
    pthread_mutex_unlock(&nf->mu);
    return rc;
}

/* Each run of [first, last] the node has not said it wrote is asked for (the node fetches every
 * chunk of a range that its chunk map lacks, and those it wrote may not be marked yet). */
int node_fetcher_fetch(void *arg, const uint8_t digest[DIGEST_LEN], uint32_t first, uint32_t last,
                       unsigned flags)
{
    struct node_fetcher *nf = arg;
    if (flags & STORE_FETCH_AGAIN) { /* the node's sync failed after its answer, perhaps */
        pthread_mutex_lock(&nf->mu);
        struct written *w = written_find(nf, digest);
        for (uint64_t i = first; w && i <= last && i < w->nbits; i++)
            w->bm[i / 8] &= (uint8_t) ~(1u << (i % 8));
        pthread_mutex_unlock(&nf->mu);
    }
    for (uint64_t a = first; a <= last;) {
        pthread_mutex_lock(&nf->mu);
        const struct written *w = written_find(nf, digest);
        while (a <= last && written_has(w, (uint32_t)a))
            a++;
        uint64_t b = a;
        while (b < last && !written_has(w, (uint32_t)b + 1))
            b++;
        pthread_mutex_unlock(&nf->mu);
        if (a > last)
            break;
        int rc = fetch_span(nf, digest, (uint32_t)a, (uint32_t)b);
        if (rc == 2)
            continue; /* [a, b] is looked at again */
        if (rc != 0)
            return rc; /* an error, or another request ended: the reader looks again */
        a = b + 1;
    }
    return 0;
}
