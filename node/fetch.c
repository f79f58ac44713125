/*
 * fetch.c - fetch jobs: what a task asks of peers (struct node_job). A blob or an index goes to
 * one peer at a time, the next one not yet asked after a failure. Chunks go to the peers that
 * hold them (docs/swarm.md): the layer's complete providers (taken to hold every chunk), its
 * partial providers and the peers fetching it too, whose chunks the job learns by asking HAVE
 * once and then hearing GOT as each new one arrives. The rarest chunk among those peers is asked
 * for first (random-first when node_cfg says so), each of the least busy peer that has it, at
 * most NODE_PEER_CHUNKS of one job on one peer, so that a layer comes from every holder at once
 * and a swarm's fetchers pass its chunks on among themselves; each chunk is checked against the
 * index as it arrives (node_store_ops chunk_*) before it counts, and the peers watching the layer
 * hear of it (swarm.c).
 *
 * Meanwhile the providers are looked up and dialed (providers.c). A peer that stalled, or sent a
 * chunk that does not match the index it sent itself, is banned (no new request for a while)
 * and its requests go elsewhere; one whose chunk fails against another node's index is left out
 * of the job (either may lie: the layer's verification tells, verify.c). A peer that says
 * not-found for a chunk is taken not to have that chunk (a complete provider that evicted the
 * layer is asked HAVE); one that answers busy gets no request of the job for a moment, and is
 * left out once it has been busy for the busy_wait duration with no chunk coming from anyone; one
 * that says not-found to HAVE, or holds the layer under another index, is left out of the job. A
 * chunk request silent for the hedge duration is asked of a second holder too (at most
 * NODE_HEDGE_MAX of a job at once): the first answer that checks out is kept, the other cancelled,
 * and a peer beaten that way is banned. When no peer is left that holds a chunk the job wants, the
 * providers are looked up once more, and the job waits for that lookup or a dial to one of them, or
 * ends with AFSP_E_NOTFOUND. A job is handed back (NODE_FX_JOB_DONE) once it is done and nothing of
 * it is in flight.
 *
 * A BLOB job may name its one peer (has_src: the relay, docs/swarm.md): that peer is dialled if
 * need be and asked once, from the job's offset; its answer may wait for a download's bytes.
 *
 * How a CHUNKS job chooses its requests is chunks.c's (fetch_int.h shares the books).
 *
 * Owns: the jobs' state and their requests, what each job knows of its peers, each job's timer.
 * Must not: do I/O, count a chunk that did not check out.
 */
#include "fetch_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct jpeer *fetch_jpeer_find(struct node_job_state *js, uint64_t serial)
{
    for (size_t i = 0; i < js->npeers; i++)
        if (js->peers[i].serial == serial)
            return &js->peers[i];
    return NULL;
}

/* A busy answer from jp's peer: whether the job should still wait for it (it has not been busy
 * since longer than busy_wait with no chunk coming from anyone). */
static bool busy_again(struct node *n, struct jpeer *jp, uint64_t now)
{
    if (!jp->busy_since)
        jp->busy_since = now;
    jp->quiet_until = MAX(jp->quiet_until, now + n->t.busy);
    return now - jp->busy_since < n->t.busy_wait;
}

bool fetch_jp_has(const struct jpeer *jp, uint32_t i)
{
    return jp && (jp->all || (jp->bm && (jp->bm[i / 8] >> (i % 8) & 1)));
}

void fetch_job_finish(struct node_job_state *js, int rc)
{
    if (!js->done) {
        js->done = true;
        js->rc = rc;
    }
}

bool fetch_tried(const struct node_job_state *js, const struct node_link *k)
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
    struct jpeer *jp = fetch_jpeer_find(js, x->k->serial);
    if (jp)
        jp->inflight--;
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

int fetch_on_data(struct node_link *k, void *req, uint64_t total, uint64_t off, const uint8_t *b,
                  size_t len, uint64_t now)
{
    struct xreq *x = req;
    struct node_job_state *js = x->js;
    if (js->j->kind == NODE_JOB_CHUNKS) {
        x->last = now;
        return k->n->so->chunk_data(js->j->fetch, x->rx, b, len);
    }
    if (off != js->j->off + js->j->out->len)
        return AFSP_E_PROTO;
    /* the first piece: room for what the answer declares (the peer's word, so at most
     * NODE_BLOB_PRESIZE; a bigger one grows as it comes), instead of a copy at every doubling */
    if (!js->j->out->len && buf_reserve(js->j->out, MIN(total - off, NODE_BLOB_PRESIZE)) < 0)
        return -ENOMEM;
    return buf_append(js->j->out, b, len);
}

/* Whether k's peer fetches the job's layer too: it is announced as holding it in part, or it
 * asked this node which chunks it holds. */
static bool fetching_too(struct node *n, struct node_job_state *js, const struct node_link *k,
                         uint64_t now)
{
    uint8_t sk[DIGEST_LEN];
    swarm_key(js->j->digest, sk);
    return swarm_watching(k, js->j->digest) ||
           providers_has(providers_get(n, sk, NODE_SWARM_WANT, false, now), k->peer_id);
}

void fetch_on_done(struct node_link *k, void *req, int rc, uint64_t now)
{
    struct xreq *x = req;
    struct node_job_state *js = x->js;
    struct node *n = k->n;
    n->jobs_dirty = true;
    if (js->j->kind != NODE_JOB_CHUNKS) {
        TRACE("blob_done job=%d rc=%d", (int)js->j->kind, rc);
        js->nreq--;
        n->requesting--;
        if (rc == 0 && js->j->has_src) {
            n->st.relay_read_bytes += js->j->out->len;
            fetch_job_finish(js, 0);
        } else if (rc == 0) {
            n->st.blobs_fetched++;
            if (js->j->kind == NODE_JOB_INDEX || js->j->kind == NODE_JOB_TRACE) /* verify.c */
                memcpy(js->j->from, k->peer_id, P2P_ID_LEN);
            fetch_job_finish(js, 0);
        } else if (js->j->has_src) {
            fetch_job_finish(js, rc); /* that peer only: the task decides what next */
        } else {
            js->j->out->len = 0; /* the next peer starts over */
        }
        free(x);
        return;
    }
    struct jpeer *jp = fetch_jpeer_find(js, k->serial);
    if (!x->have)
        TRACE("chunk_done %u rc=%d", x->chunk, rc);
    if (x->have) {
        js->nreq--;
        n->requesting--;
        if (jp)
            jp->asking = false;
        if (rc == -EBUSY && jp && busy_again(n, jp, now)) {
            /* asked again in a moment */
        } else if (rc == AFSP_E_NOTFOUND && jp && jp->have_tries < NODE_HAVE_TRIES &&
                   fetching_too(n, js, k, now)) {
            /* a fetcher of the layer that does not have it yet (its index is on the way): it
             * is asked again once the providers_retry duration has passed */
            jp->have_tries++;
            jp->quiet_until = now + n->t.providers_retry;
        } else if (rc < 0) {
            job_exclude(js, k); /* it does not hold the layer (or says so) */
        }
        free(x);
        return;
    }
    struct xreq *twin = x->twin;
    uint64_t bytes = 0;
    xreq_end(n, js, x);
    if (jp && rc != -EBUSY)
        jp->quiet_until = 0; /* a slot of its may have come free: the one this request held */
    if (rc == 0)
        rc = n->so->chunk_end(js->j->fetch, x->rx, &bytes); /* frees the receipt either way */
    else
        n->so->chunk_drop(js->j->fetch, x->rx);
    /* the peer's code (a stall, not-found, a size overrun from chunk_data) or the check's */
    if (rc == 0) {
        n->st.chunks_fetched++;
        n->st.bytes_fetched += bytes;
        k->chunk_bytes_in += bytes;
        for (size_t i = 0; i < js->npeers; i++)
            js->peers[i].busy_since = 0; /* busy peers are left out only of a job standing still */
        swarm_chunk_stored(n, js->j->digest, x->chunk, now);
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
    } else if (rc == AFSP_E_NOTFOUND && jp) {
        /* it does not hold that chunk (a complete provider that evicted the layer: which
         * chunks it holds is asked) */
        if (jp->all) {
            jp->all = false;
            free(jp->bm);
            jp->bm = NULL;
        } else if (jp->bm) {
            jp->bm[x->chunk / 8] &= (uint8_t) ~(1u << (x->chunk % 8));
        }
    } else if (rc == -EBUSY && jp && busy_again(n, jp, now)) {
        /* its upload slots are taken: a moment, and other holders meanwhile */
    } else {
        /* busy too often, a refused request or anything else: not asked again for this layer
         * (a peer answering busy to every request would hold a job, and the mount reading
         * through it, forever) */
        job_exclude(js, k);
    }
    free(x);
}

void fetch_on_have(struct node_link *k, void *req, uint32_t nchunks, const uint8_t *bitmap)
{
    struct xreq *x = req;
    struct node_job_state *js = x->js;
    struct jpeer *jp = fetch_jpeer_find(js, k->serial);
    k->n->jobs_dirty = true;
    if (!jp || !x->have)
        return;
    if (nchunks != js->nchunks) {
        job_exclude(js, k); /* it holds the layer cut otherwise: under another index */
        return;
    }
    size_t len = ((size_t)nchunks + 7) / 8;
    if (!jp->bm && !(jp->bm = malloc(len + 1)))
        return;
    memcpy(jp->bm, bitmap, len);
}

bool fetch_jobs_have(struct node *n, const uint8_t layer[static DIGEST_LEN], uint32_t nchunks,
                     uint32_t i)
{
    for (struct node_job_state *js = n->jobs; js; js = js->next)
        if (js->j->kind == NODE_JOB_CHUNKS && js->nchunks == nchunks && i < nchunks &&
            !memcmp(js->j->digest, layer, DIGEST_LEN) && n->so->fetch_has(js->j->fetch, i))
            return true;
    return false;
}

bool fetch_peer_has(struct node *n, const struct node_link *k,
                    const uint8_t layer[static DIGEST_LEN], uint32_t i)
{
    for (struct node_job_state *js = n->jobs; js; js = js->next)
        if (js->j->kind == NODE_JOB_CHUNKS && !memcmp(js->j->digest, layer, DIGEST_LEN) &&
            i < js->nchunks && fetch_jp_has(fetch_jpeer_find(js, k->serial), i))
            return true;
    return false;
}

void fetch_on_got(struct node_link *k, const uint8_t layer[static DIGEST_LEN], uint32_t chunk)
{
    for (struct node_job_state *js = k->n->jobs; js; js = js->next) {
        if (js->j->kind != NODE_JOB_CHUNKS || memcmp(js->j->digest, layer, DIGEST_LEN))
            continue;
        struct jpeer *jp = fetch_jpeer_find(js, k->serial);
        if (jp && jp->bm && chunk < js->nchunks) {
            jp->bm[chunk / 8] |= (uint8_t)(1u << (chunk % 8));
            /* a step only for a chunk the job still wants and has no request on, from a peer
             * it may ask now: 20 nodes pulling one layer on loopback sent each other 184,000
             * GOTs, and a step per GOT (each counting holders of every chunk) cost more CPU
             * than the pulls */
            if (chunk >= js->j->first && chunk <= js->j->last &&
                !(js->inflight[chunk / 8] >> (chunk % 8) & 1) &&
                !k->n->so->fetch_has(js->j->fetch, chunk) && jp->inflight < NODE_PEER_CHUNKS &&
                jp->quiet_until <= k->n->now)
                k->n->jobs_dirty = true;
        }
    }
}

/* No link is left to ask: look the providers up again (once a job), wait for the lookup or a
 * dial to one, or give up. */
void fetch_job_exhausted(struct node *n, struct node_job_state *js, uint64_t now)
{
    if (!js->relooked) {
        js->relooked = true;
        providers_get(n, js->j->digest, NODE_PROVIDERS_WANT, true, now);
    }
    if (!providers_waiting(n, providers_get(n, js->j->digest, NODE_PROVIDERS_WANT, false, now)))
        fetch_job_finish(js, AFSP_E_NOTFOUND);
}

/* Sends m, a request of job js, on link k (x: its state, the caller's until this succeeds).
 * Returns 0, or -1 (the window is full, the connection failed). */
int fetch_job_request(struct node *n, struct node_job_state *js, struct node_link *k,
                      const struct p2p_msg *m, uint64_t max_total, struct xreq *x, uint64_t now)
{
    if (p2p_peer_request(k->p, m, max_total, x, now) < 0)
        return -1;
    if (js->j->kind != NODE_JOB_CHUNKS)
        TRACE("blob_req job=%d type=%d off=%llu len=%llu", (int)js->j->kind, m->type,
              (unsigned long long)m->off, (unsigned long long)m->len);
    link_touch(k);
    js->nreq++;
    requesting_inc(n);
    return 0;
}

void fetch_link_closed(struct node *n, const struct node_link *k)
{
    for (struct node_job_state *js = n->jobs; js; js = js->next) {
        struct jpeer *jp = js->peers ? fetch_jpeer_find(js, k->serial) : NULL;
        if (jp) { /* its requests have ended (p2p_peer_free ran their done) */
            free(jp->bm);
            *jp = js->peers[--js->npeers];
        }
    }
}

/* A BLOB job from one peer: dialled once if there is no link to it; the one request. */
static void src_step(struct node *n, struct node_job_state *js, uint64_t now)
{
    struct node_job *j = js->j;
    struct node_link *k = link_to(n, j->src.id, true);
    if (js->nreq)
        return;
    if (js->ntried) {
        fetch_job_finish(js, AFSP_E_NOTFOUND); /* its link closed before the request could go */
        return;
    }
    if (!k && !js->relooked) {
        js->relooked = true;
        if (!memcmp(j->src.id, n->id->id, P2P_ID_LEN) ||
            !link_dial(n, &j->src.addr, j->src.id, now)) {
            fetch_job_finish(js, AFSP_E_NOTFOUND);
            return;
        }
        n->st.dht_dials++;
        k = link_to(n, j->src.id, true);
    }
    if (!k) {
        fetch_job_finish(js, AFSP_E_NOTFOUND); /* the dial failed */
        return;
    }
    if (k->state != LINK_UP)
        return; /* dialling: the job steps again when the link comes up or closes */
    /* a ban is not heeded: this job has no other peer to go to, and its own stall timer
     * bounds it (the task gives the peer up, not the node) */
    struct xreq *x = calloc(1, sizeof *x);
    struct p2p_msg m = {.type = P2P_GET_BLOB, .off = j->off, .len = j->len};
    memcpy(m.digest, j->digest, DIGEST_LEN);
    j->out->len = 0;
    int rc = x ? p2p_peer_request(k->p, &m, j->max, x, now) : -ENOMEM;
    if (rc == -EAGAIN) { /* its window is full: stepped again when one of its requests ends */
        free(x);
        return;
    }
    if (rc < 0 || job_exclude(js, k) < 0) {
        if (rc == 0)
            p2p_peer_cancel(k->p, x);
        free(x);
        fetch_job_finish(js, -EBUSY); /* no memory, or the link failed: asked again later */
        return;
    }
    x->js = js;
    link_touch(k);
    js->nreq++;
    requesting_inc(n);
}

static void job_step_one(struct node *n, struct node_job_state *js, uint64_t now)
{
    struct node_job *j = js->j;
    if (js->done)
        return;
    if (j->kind == NODE_JOB_CHUNKS) {
        fetch_chunks_step(n, js, now);
        return;
    }
    if (j->has_src) {
        src_step(n, js, now);
        return;
    }
    struct pcache *pc = providers_get(n, j->digest, NODE_PROVIDERS_WANT, false, now);
    if (js->nreq)
        return;
    for (struct node_link *k = n->links; k; k = k->next) {
        if (!link_usable(k, now) || fetch_tried(js, k))
            continue;
        /* a trace only of its providers: most nodes have none, and a cold start must not ask
         * every link it has */
        if (j->kind == NODE_JOB_TRACE && !providers_has(pc, k->peer_id))
            continue;
        struct xreq *x = calloc(1, sizeof *x);
        if (!x || job_exclude(js, k) < 0) {
            free(x);
            break;
        }
        struct p2p_msg m = {.type = j->kind == NODE_JOB_BLOB    ? P2P_GET_BLOB
                                    : j->kind == NODE_JOB_TRACE ? P2P_GET_TRACE
                                                                : P2P_GET_INDEX,
                            .len = (uint32_t)(j->max < UINT32_MAX ? j->max : UINT32_MAX)};
        memcpy(m.digest, j->digest, DIGEST_LEN);
        j->out->len = 0;
        x->js = js;
        if (fetch_job_request(n, js, k, &m, j->max, x, now) < 0) {
            free(x);
            continue;
        }
        return;
    }
    fetch_job_exhausted(n, js, now);
}

static void job_state_free(struct node_job_state *js)
{
    for (size_t i = 0; i < js->npeers; i++)
        free(js->peers[i].bm);
    free(js->peers);
    free(js->tried);
    free(js->inflight);
    free(js);
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
        job_state_free(js);
    }
}

void jobs_free_all(struct node *n)
{
    while (n->jobs) {
        struct node_job_state *js = n->jobs;
        n->jobs = js->next;
        js->j->st = NULL;
        job_state_free(js);
    }
}

void jobs_cancel_all(struct node *n)
{
    for (struct node_job_state *js = n->jobs; js; js = js->next)
        fetch_job_finish(js, -ECANCELED);
}

static void on_job_timer(struct node *n, struct node_timer *t, uint64_t now)
{
    (void)t;
    (void)now;
    n->jobs_dirty = true;
}

void node_job_submit(struct node *n, struct node_job *j, uint64_t now)
{
    if (j->kind == NODE_JOB_CLAIM || j->kind == NODE_JOB_CLAIM_END) {
        claim_submit(n, j, now);
        return;
    }
    n->now = now;
    int rc = n->stopping ? -ECANCELED : 0;
    struct node_job_state *js = rc ? NULL : calloc(1, sizeof *js);
    if (!rc && !js)
        rc = -ENOMEM;
    if (js && j->kind == NODE_JOB_CHUNKS) {
        uint32_t nc = n->so->fetch_nchunks(j->fetch);
        rc = j->last >= nc || j->first > j->last                            ? AFSP_E_USAGE
             : !(js->inflight = calloc((nc + 7) / 8 + 1, 1))                ? -ENOMEM
             : !(js->peers = calloc(NODE_JOB_LINKS_MAX, sizeof *js->peers)) ? -ENOMEM
                                                                            : 0;
        js->first = j->first;
        js->nchunks = nc;
        n->cfg.rng(n->cfg.rng_arg, (uint8_t *)&js->salt, sizeof js->salt);
    }
    if (rc) {
        if (js) {
            free(js->inflight);
            free(js->peers);
        }
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
