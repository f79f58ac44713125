/*
 * fetch.c - fetch jobs: what a task asks of peers (struct node_job). A blob or an index goes to
 * one peer at a time, the next one not yet asked after a failure. Chunks go round every usable
 * link (only the layer's providers, when the DHT named some that are connected), one each in
 * turn while windows have room, so that a layer comes from every peer at once; each chunk is
 * checked against the index as it arrives (node_store_ops chunk_*) before it counts.
 *
 * Meanwhile the providers are looked up and dialed (providers.c). A peer that stalled, or sent a
 * chunk that does not match the index it sent itself, is banned (no new request for a while)
 * and its requests go elsewhere; one whose chunk fails against another node's index is left out
 * of the job (either may lie: the layer's verification tells, verify.c); a peer that says
 * not-found is left out of the job. A chunk request silent for the hedge duration is asked of a
 * second link too (at most NODE_HEDGE_MAX of a job at once): the first answer that checks out is
 * kept, the other cancelled, and a peer beaten that way is banned. When no link is left, the
 * providers are looked up once more, and the job waits for that lookup or a dial to one of
 * them, or ends with AFSP_E_NOTFOUND. A job is handed back (NODE_FX_JOB_DONE) once it is done
 * and nothing of it is in flight.
 *
 * Owns: the jobs' state and their requests, each job's hedge timer. Must not: do I/O, count a
 * chunk that did not check out.
 */
#include "node_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A request of a job on one link. */
struct xreq {
    struct node_job_state *js;
    uint32_t chunk;
    void *rx;                 /* CHUNKS: the store's receipt */
    struct node_link *k;      /* CHUNKS */
    uint64_t last;            /* when it was sent or its last byte came */
    struct xreq *twin;        /* the same chunk asked of another peer (hedged), or NULL */
    bool hedge;               /* this is the second request of the pair */
    struct xreq *prev, *next; /* the job's chunk requests */
};

struct node_job_state {
    struct node_job *j;
    struct node *n;
    struct node_job_state *next;
    int rc;
    bool done, relooked;
    uint64_t *tried; /* serials of the links asked (blob, index) or that lack the layer */
    size_t ntried;
    uint8_t *inflight; /* CHUNKS: chunk bitmap */
    uint32_t first;    /* CHUNKS: every chunk before it is here */
    uint32_t nreq;     /* requests of this job on the links */
    uint64_t inflight_bytes;
    uint64_t turn;           /* the link that gets the next chunk */
    struct xreq *reqs;       /* CHUNKS */
    unsigned nhedged;        /* pairs of requests for one chunk */
    struct node_timer timer; /* the next request that may need a hedge */
};

static void job_finish(struct node_job_state *js, int rc)
{
    if (!js->done) {
        js->done = true;
        js->rc = rc;
    }
}

static bool tried(const struct node_job_state *js, const struct node_link *k)
{
    for (size_t i = 0; i < js->ntried; i++)
        if (js->tried[i] == k->serial)
            return true;
    return false;
}

static int job_exclude(struct node_job_state *js, const struct node_link *k)
{
    uint64_t *t = realloc(js->tried, (js->ntried + 1) * sizeof *t);
    if (!t)
        return -ENOMEM;
    js->tried = t;
    js->tried[js->ntried++] = k->serial;
    return 0;
}

static void requesting_inc(struct node *n)
{
    if (++n->requesting > n->st.requests_peak)
        n->st.requests_peak = n->requesting;
}

/* A chunk request leaves the job's books (it ended, or was withdrawn). */
static void xreq_end(struct node *n, struct node_job_state *js, struct xreq *x)
{
    uint64_t coff;
    uint32_t clen;
    n->so->fetch_chunk(js->j->fetch, x->chunk, &coff, &clen);
    js->nreq--;
    n->requesting--;
    js->inflight_bytes -= clen;
    *(x->prev ? &x->prev->next : &js->reqs) = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (x->twin) { /* the other of the pair goes on alone */
        x->twin->twin = NULL;
        js->nhedged--;
    } else {
        js->inflight[x->chunk / 8] &= (uint8_t) ~(1u << (x->chunk % 8));
    }
}

/* The chunk came through the other request of a pair: t is cancelled at its peer. */
static void xreq_withdraw(struct node *n, struct node_job_state *js, struct xreq *t)
{
    p2p_peer_cancel(t->k->p, t);
    link_touch(t->k); /* the CANCEL goes out */
    xreq_end(n, js, t);
    n->so->chunk_drop(js->j->fetch, t->rx);
    free(t);
}

int fetch_on_data(struct node_link *k, void *req, uint64_t off, const uint8_t *b, size_t len,
                  uint64_t now)
{
    struct xreq *x = req;
    struct node_job_state *js = x->js;
    if (js->j->kind == NODE_JOB_CHUNKS) {
        x->last = now;
        return k->n->so->chunk_data(js->j->fetch, x->rx, b, len);
    }
    if (off != js->j->out->len)
        return AFSP_E_PROTO;
    return buf_append(js->j->out, b, len);
}

void fetch_on_done(struct node_link *k, void *req, int rc, uint64_t now)
{
    struct xreq *x = req;
    struct node_job_state *js = x->js;
    struct node *n = k->n;
    n->jobs_dirty = true;
    if (js->j->kind != NODE_JOB_CHUNKS) {
        js->nreq--;
        n->requesting--;
        if (rc == 0) {
            n->st.blobs_fetched++;
            if (js->j->kind == NODE_JOB_INDEX) /* its sender built it: verify.c */
                memcpy(js->j->from, k->peer_id, P2P_ID_LEN);
            job_finish(js, 0);
        } else {
            js->j->out->len = 0; /* the next peer starts over */
        }
        free(x);
        return;
    }
    struct xreq *twin = x->twin;
    uint64_t bytes = 0;
    xreq_end(n, js, x);
    if (rc == 0)
        rc = n->so->chunk_end(js->j->fetch, x->rx, &bytes); /* frees the receipt either way */
    else
        n->so->chunk_drop(js->j->fetch, x->rx);
    /* the peer's code (a stall, not-found, a size overrun from chunk_data) or the check's */
    if (rc == 0) {
        n->st.chunks_fetched++;
        n->st.bytes_fetched += bytes;
        if (twin && x->hedge) {
            n->st.hedges_won++;
            link_ban(twin->k, "slow: another peer sent a chunk first", now);
        }
        if (twin)
            xreq_withdraw(n, js, twin);
    } else if (rc == AFSP_E_DIGEST || rc == AFSP_E_SIZE) {
        uint8_t ix[DIGEST_LEN];
        const uint8_t *from = n->so->fetch_sender(js->j->fetch, ix);
        n->st.bad_chunks++;
        if (from && !memcmp(from, k->peer_id, P2P_ID_LEN)) {
            link_ban(k, "sent a chunk that does not match its own index", now);
        } else {
            /* Its chunk or the index lies (under a forged index an honest peer's chunk fails):
             * it is left out of the job, not banned, until the layer's verification shows the
             * index true (node_index_judged). Another source's bytes that fit the index prove
             * nothing: they may be the index's sender's, under another ID. */
            char dg[DIGEST_STR_LEN + 1], id[17];
            log_warn("event=chunk_disputed layer=%s chunk=%u peer=%s",
                     digest_fmt(js->j->digest, dg), x->chunk, id_short(k->peer_id, id));
            n->st.chunks_disputed++;
            verify_suspect(n, js->j->digest, k->peer_id, ix);
            job_exclude(js, k);
        }
    } else if (rc == -ETIMEDOUT) {
        n->st.stalls++;
        link_ban(k, "stalled", now);
    } else {
        /* not found, busy, a refused request or anything else: not asked again for this layer
         * (a peer answering busy to every request held a job, and the mount reading through it,
         * forever; now it only costs a round trip) */
        job_exclude(js, k);
    }
    free(x);
}

/* No link is left to ask: look the providers up again (once a job), wait for the lookup or a
 * dial to one, or give up. */
static void job_exhausted(struct node *n, struct node_job_state *js, uint64_t now)
{
    if (!js->relooked) {
        js->relooked = true;
        providers_get(n, js->j->digest, true, now);
    }
    if (!providers_waiting(n, providers_get(n, js->j->digest, false, now)))
        job_finish(js, AFSP_E_NOTFOUND);
}

/* Asks link k for chunk i (the second time, if twin is the first request). Returns 0, or -1 if
 * its window is full or memory ran out. */
static int chunk_request(struct node *n, struct node_job_state *js, struct node_link *k, uint32_t i,
                         struct xreq *twin, uint64_t now)
{
    struct p2p_msg m = {.type = P2P_GET_CHUNK, .chunk = i};
    uint64_t coff;
    uint32_t clen;
    memcpy(m.digest, js->j->digest, DIGEST_LEN);
    n->so->fetch_chunk(js->j->fetch, i, &coff, &clen);
    struct xreq *x = calloc(1, sizeof *x);
    if (!x)
        return -1;
    x->js = js;
    x->chunk = i;
    x->k = k;
    x->last = now;
    if (n->so->chunk_begin(js->j->fetch, i, &x->rx) < 0) {
        free(x);
        return -1;
    }
    if (p2p_peer_request(k->p, &m, clen, x, now) < 0) {
        n->so->chunk_drop(js->j->fetch, x->rx);
        free(x);
        return -1;
    }
    link_touch(k);
    js->nreq++;
    requesting_inc(n);
    js->inflight_bytes += clen;
    x->next = js->reqs;
    if (js->reqs)
        js->reqs->prev = x;
    js->reqs = x;
    if (twin) {
        x->twin = twin;
        x->hedge = true;
        twin->twin = x;
        js->nhedged++;
        n->st.hedges++;
    }
    return 0;
}

/* Requests silent for the hedge duration (or on a banned link) go to a second usable link too;
 * returns when the next one may need it (UINT64_MAX: none). */
static uint64_t job_hedge(struct node *n, struct node_job_state *js, struct node_link **use,
                          size_t nuse, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (struct xreq *x = js->reqs; x; x = x->next) {
        bool banned = x->k->ban_until > now;
        if (x->twin)
            continue;
        if (!banned && now - x->last < n->t.hedge) {
            if (x->last + n->t.hedge < next)
                next = x->last + n->t.hedge;
            continue;
        }
        if (!banned && js->nhedged >= NODE_HEDGE_MAX)
            continue; /* a slot frees when a request ends (jobs_dirty) */
        for (size_t u = 0; u < nuse; u++) {
            struct node_link *k = use[(js->turn + u) % nuse];
            if (k != x->k && chunk_request(n, js, k, x->chunk, x, now) == 0)
                break; /* the new request went in front of x: the walk goes on after x */
        }
    }
    return next;
}

static void job_step_one(struct node *n, struct node_job_state *js, uint64_t now)
{
    struct node_job *j = js->j;
    if (js->done)
        return;
    struct pcache *pc = providers_get(n, j->digest, false, now);
    if (j->kind != NODE_JOB_CHUNKS) {
        if (js->nreq)
            return;
        for (struct node_link *k = n->links; k; k = k->next) {
            if (!link_usable(k, now) || tried(js, k))
                continue;
            struct xreq *x = calloc(1, sizeof *x);
            if (!x || job_exclude(js, k) < 0) {
                free(x);
                break;
            }
            struct p2p_msg m = {.type = j->kind == NODE_JOB_BLOB ? P2P_GET_BLOB : P2P_GET_INDEX,
                                .len = (uint32_t)(j->max < UINT32_MAX ? j->max : UINT32_MAX)};
            memcpy(m.digest, j->digest, DIGEST_LEN);
            j->out->len = 0;
            x->js = js;
            if (p2p_peer_request(k->p, &m, j->max, x, now) < 0) {
                free(x);
                continue;
            }
            link_touch(k);
            js->nreq++;
            requesting_inc(n);
            return;
        }
        job_exhausted(n, js, now);
        return;
    }
    while (js->first <= j->last && n->so->fetch_has(j->fetch, js->first))
        js->first++; /* done from the front: later steps start after it */
    if (js->first > j->last) {
        if (js->nreq == 0)
            job_finish(js, 0);
        return;
    }
    struct node_link *use[NODE_JOB_LINKS_MAX];
    size_t nuse = 0, full = 0;
    for (int only_providers = 1; only_providers >= 0 && !nuse; only_providers--)
        for (struct node_link *k = n->links; k && nuse < NODE_JOB_LINKS_MAX; k = k->next)
            if (link_usable(k, now) && !tried(js, k) &&
                (!only_providers || providers_has(pc, k->peer_id)))
                use[nuse++] = k;
    for (uint32_t i = js->first;
         nuse && full < nuse && i <= j->last && js->inflight_bytes < NODE_JOB_INFLIGHT_MAX; i++) {
        if (n->so->fetch_has(j->fetch, i) || (js->inflight[i / 8] >> (i % 8) & 1))
            continue;
        for (full = 0; full < nuse; full++) {
            if (chunk_request(n, js, use[js->turn++ % nuse], i, NULL, now) == 0) {
                js->inflight[i / 8] |= (uint8_t)(1u << (i % 8));
                break;
            }
        }
    }
    timer_set(n, &js->timer, job_hedge(n, js, use, nuse, now));
    if (!nuse && js->nreq == 0)
        job_exhausted(n, js, now);
}

void jobs_step(struct node *n, uint64_t now)
{
    n->jobs_dirty = false;
    for (struct node_job_state *js = n->jobs; js; js = js->next)
        job_step_one(n, js, now);
}

void jobs_release(struct node *n)
{
    for (struct node_job_state **pp = &n->jobs; *pp;) {
        struct node_job_state *js = *pp;
        if (!js->done || js->nreq) {
            pp = &js->next;
            continue;
        }
        *pp = js->next;
        timer_stop(n, &js->timer);
        js->j->rc = js->rc;
        js->j->st = NULL;
        fx_push(n, &(struct node_effect){.type = NODE_FX_JOB_DONE, .job = js->j});
        free(js->tried);
        free(js->inflight);
        free(js);
    }
}

void jobs_free_all(struct node *n)
{
    while (n->jobs) {
        struct node_job_state *js = n->jobs;
        n->jobs = js->next;
        js->j->st = NULL;
        free(js->tried);
        free(js->inflight);
        free(js);
    }
}

void jobs_cancel_all(struct node *n)
{
    for (struct node_job_state *js = n->jobs; js; js = js->next)
        job_finish(js, -ECANCELED);
}

static void on_job_timer(struct node *n, struct node_timer *t, uint64_t now)
{
    (void)t;
    (void)now;
    n->jobs_dirty = true;
}

void node_job_submit(struct node *n, struct node_job *j, uint64_t now)
{
    n->now = now;
    int rc = n->stopping ? -ECANCELED : 0;
    struct node_job_state *js = rc ? NULL : calloc(1, sizeof *js);
    if (!rc && !js)
        rc = -ENOMEM;
    if (js && j->kind == NODE_JOB_CHUNKS) {
        uint32_t nc = n->so->fetch_nchunks(j->fetch);
        rc = j->last >= nc || j->first > j->last             ? AFSP_E_USAGE
             : !(js->inflight = calloc((nc + 7) / 8 + 1, 1)) ? -ENOMEM
                                                             : 0;
        js->first = j->first;
    }
    if (rc) {
        if (js)
            free(js->inflight);
        free(js);
        j->rc = rc;
        fx_push(n, &(struct node_effect){.type = NODE_FX_JOB_DONE, .job = j});
        return;
    }
    js->j = j;
    js->n = n;
    js->turn = n->job_turns++; /* jobs start at different links */
    timer_init(&js->timer, on_job_timer);
    j->st = js;
    js->next = n->jobs;
    n->jobs = js;
    n->jobs_dirty = true;
    node_settle(n, now);
}
