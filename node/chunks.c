/*
 * chunks.c - a CHUNKS job's scheduler (fetch.c has the jobs): the links it may ask and what it
 * knows of each (the layer's complete and partial providers, the peers fetching it too, asked
 * HAVE once), then its requests: the rarest chunk among those peers first (random-first when
 * node_cfg says so), each of the least busy peer that has it, at most NODE_PEER_CHUNKS of one
 * job on one peer; and a request silent for the hedge duration asked of a second holder too
 * (at most NODE_HEDGE_MAX of a job at once).
 *
 * Owns: nothing of its own (the job's books are fetch.c's). Must not: do I/O.
 */
#include "fetch_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Asks link k which chunks of the job's layer it holds (it tells of new ones after: GOT).
 * Returns 0 or -1 (its window is full, memory ran out). */
static int have_request(struct node *n, struct node_job_state *js, struct node_link *k,
                        struct jpeer *jp, uint64_t now)
{
    struct p2p_msg m = {.type = P2P_HAVE};
    struct xreq *x = calloc(1, sizeof *x);
    memcpy(m.digest, js->j->digest, DIGEST_LEN);
    if (!x)
        return -1;
    x->js = js;
    x->k = k;
    x->have = true;
    x->last = now;
    if (fetch_job_request(n, js, k, &m, 0, x, now) < 0) {
        free(x);
        return -1;
    }
    jp->asking = true;
    n->st.haves_sent++;
    return 0;
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
    if (fetch_job_request(n, js, k, &m, clen, x, now) < 0) {
        n->so->chunk_drop(js->j->fetch, x->rx);
        free(x);
        return -1;
    }
    TRACE("chunk_req %u peer=%llu len=%u%s", i, (unsigned long long)k->serial, clen,
          twin ? " hedge" : "");
    struct jpeer *jp = fetch_jpeer_find(js, k->serial);
    if (jp)
        jp->inflight++;
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

/* Requests silent for the hedge duration (or on a banned link) go to a second peer that holds
 * the chunk too; returns when the next one may need it (UINT64_MAX: none). */
static uint64_t job_hedge(struct node *n, struct node_job_state *js, struct node_link **use,
                          size_t nuse, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (struct xreq *x = js->reqs; x; x = x->next) {
        bool banned = x->k->ban_until > now;
        /* silent: no byte of it, and none from its peer (a peer sending other answers first is
         * working, not stuck: a swarm's holders are busy) */
        uint64_t heard = MAX(x->last, x->k->last_in);
        if (x->twin)
            continue;
        if (!banned && now - heard < n->t.hedge) {
            if (heard + n->t.hedge < next)
                next = heard + n->t.hedge;
            continue;
        }
        if (!banned && js->nhedged >= NODE_HEDGE_MAX)
            continue; /* a slot frees when a request ends (jobs_dirty) */
        for (size_t u = 0; u < nuse; u++) {
            struct node_link *k = use[(js->turn + u) % nuse];
            if (k != x->k && fetch_jp_has(fetch_jpeer_find(js, k->serial), x->chunk) &&
                chunk_request(n, js, k, x->chunk, x, now) == 0)
                break; /* the new request went in front of x: the walk goes on after x */
        }
    }
    return next;
}

/* The links a CHUNKS job may ask, and what it knows of each: the layer's providers, complete or
 * partial, and the peers fetching it too (they asked this node HAVE of it); else, if none of
 * those is connected, any peer. A new one is asked HAVE (a complete provider is taken at its
 * word). Returns how many, in use[] and jps[]. */
static size_t job_peers(struct node *n, struct node_job_state *js, struct node_link **use,
                        struct jpeer **jps, uint64_t now)
{
    struct node_job *j = js->j;
    uint8_t sk[DIGEST_LEN];
    swarm_key(j->digest, sk);
    struct pcache *pc = providers_get(n, j->digest, NODE_PROVIDERS_WANT, false, now);
    struct pcache *ps = providers_get(n, sk, NODE_SWARM_WANT, false, now);
    if (ps && !ps->looking && ps->n < NODE_SWARM_ENOUGH) /* a swarm still forming */
        ps = providers_get(n, sk, NODE_SWARM_WANT, true, now);
    size_t nuse = 0;
    for (int members = 1; members >= 0 && !nuse; members--)
        for (struct node_link *k = n->links; k && nuse < NODE_JOB_LINKS_MAX; k = k->next)
            if (link_usable(k, now) && !fetch_tried(js, k) &&
                (!members || providers_has(pc, k->peer_id) || providers_has(ps, k->peer_id) ||
                 swarm_watching(k, j->digest) || fetch_jpeer_find(js, k->serial)))
                use[nuse++] = k;
    size_t kept = 0;
    for (size_t u = 0; u < nuse; u++) {
        struct jpeer *jp = fetch_jpeer_find(js, use[u]->serial);
        if (!jp) {
            if (js->npeers == NODE_JOB_LINKS_MAX)
                continue; /* the job knows as many peers as it may (some left out, or banned) */
            jp = &js->peers[js->npeers++];
            memset(jp, 0, sizeof *jp);
            jp->serial = use[u]->serial;
            jp->all = providers_has(pc, use[u]->peer_id);
        }
        if (!jp->all && !jp->bm && !jp->asking && jp->quiet_until <= now)
            have_request(n, js, use[u], jp, now);
        use[kept] = use[u];
        jps[kept++] = jp;
    }
    return kept;
}

/* Orders chunks of equal rarity: differently in each job (its salt), the same in each step. */
static uint32_t chunk_tie(const struct node_job_state *js, uint32_t i)
{
    uint32_t h = (i + 1) * 0x9e3779b1u ^ js->salt;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    return h ^ h >> 13;
}

struct cand {
    uint32_t chunk, holders, tie;
};

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->holders != y->holders)
        return x->holders < y->holders ? -1 : 1;
    return x->tie < y->tie ? -1 : x->tie > y->tie;
}

/* Chunks a step looks at, at most: the first this many the job wants and has not asked for. */
#define JOB_SCAN 1024

static void cand_sift(struct cand *c, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, top = i;
        if (l < n && cand_cmp(&c[l], &c[top]) > 0)
            top = l;
        if (l + 1 < n && cand_cmp(&c[l + 1], &c[top]) > 0)
            top = l + 1;
        if (top == i)
            return;
        struct cand t = c[i];
        c[i] = c[top];
        c[top] = t;
        i = top;
    }
}

/* The k first of c's n candidates (cand_cmp) to its front, in order; returns how many are in
 * order there (k, or n). A step asks for as many chunks as its peers have room for, a few of
 * the up to JOB_SCAN it looked at: sorting them all took 3% of the CPU of 20 nodes pulling one
 * layer on loopback. */
static size_t cand_first(struct cand *c, size_t n, size_t k)
{
    if (k < n / 4) { /* a heap of the k first so far, the last of them on top */
        for (size_t i = k / 2; i-- > 0;)
            cand_sift(c, k, i);
        for (size_t i = k; i < n; i++)
            if (k && cand_cmp(&c[i], &c[0]) < 0) {
                c[0] = c[i];
                cand_sift(c, k, 0);
            }
        n = k;
    }
    qsort(c, n, sizeof *c, cand_cmp);
    return n;
}

/* A CHUNKS job's step: the chunks it wants and no request is on, rarest first (or in random
 * order), each asked of the least busy peer that holds it. */
void fetch_chunks_step(struct node *n, struct node_job_state *js, uint64_t now)
{
    struct node_job *j = js->j;
    while (js->first <= j->last && n->so->fetch_has(j->fetch, js->first))
        js->first++; /* done from the front: later steps start after it */
    if (js->first > j->last) {
        if (js->nreq == 0)
            fetch_job_finish(js, 0);
        return;
    }
    struct node_link *use[NODE_JOB_LINKS_MAX];
    struct jpeer *jps[NODE_JOB_LINKS_MAX];
    bool full[NODE_JOB_LINKS_MAX] = {0};
    size_t nuse = job_peers(n, js, use, jps, now);
    struct cand *c = malloc(JOB_SCAN * sizeof *c);
    size_t nc = 0;
    bool hope = false; /* a peer may yet serve something: it is being asked HAVE, or is quiet */
    uint64_t next = UINT64_MAX;
    for (size_t u = 0; u < nuse; u++) {
        if (jps[u]->asking)
            hope = true;
        if (jps[u]->quiet_until > now) {
            hope = true;
            next = MIN(next, jps[u]->quiet_until);
        }
    }
    /* requests the peers can take now: none, and the step ends here (most steps of a swarm
     * that is moving: 20 nodes pulling one layer on loopback spent 12% of their CPU counting
     * the holders of chunks no peer could be asked for) */
    size_t room = 0;
    for (size_t u = 0; u < nuse; u++)
        if (jps[u]->quiet_until <= now && jps[u]->inflight < NODE_PEER_CHUNKS)
            room += NODE_PEER_CHUNKS - jps[u]->inflight;
    if (!room || js->inflight_bytes >= NODE_JOB_INFLIGHT_MAX)
        nc = SIZE_MAX;  /* no scan */
    bool swarm = false; /* a peer holding the layer in part has some of what the job wants */
    for (uint32_t i = js->first; c && nc != SIZE_MAX && i <= j->last && nc < JOB_SCAN; i++) {
        if (n->so->fetch_has(j->fetch, i) || (js->inflight[i / 8] >> (i % 8) & 1))
            continue;
        uint32_t holders = 0;
        bool free = false; /* a holder can be asked now */
        for (size_t u = 0; u < nuse; u++)
            if (fetch_jp_has(jps[u], i)) {
                holders++;
                swarm = swarm || !jps[u]->all;
                free = free || (jps[u]->inflight < NODE_PEER_CHUNKS && jps[u]->quiet_until <= now);
            }
        hope = hope || holders;
        if (free)
            c[nc++] = (struct cand){i, n->cfg.random_first ? 0 : holders, chunk_tie(js, i)};
    }
    if (nc == SIZE_MAX) { /* not scanned: the peers are full or quiet */
        nc = 0;
        hope = hope || js->nreq;
    }
    /* Without a swarm, in order: a layer read from its complete holders comes front to back, as
     * a reader wants it (unless random order was asked for). Not a whole layer (a pull): then
     * fetchers that start together from one holder would ask for the same chunks in the same
     * order, so that none ever held a chunk another lacked, and all took the whole layer from
     * the holder (8 namespaces capped at 100 Mbit/s: 6.1 copies, 35 s for a 5.4 s ideal). */
    bool whole = j->first == 0 && j->last + 1 == js->nchunks;
    for (size_t ci = 0; !swarm && !whole && !n->cfg.random_first && ci < nc; ci++)
        c[ci].tie = c[ci].chunk;
    /* only candidates a peer can take now are kept, and the room's worth of them is usually
     * all a step asks for; the rest is put in order only if some of those could not be asked
     * (their holders' room went to earlier ones) */
    size_t sorted = cand_first(c, nc, MIN(nc, room));
    for (size_t ci = 0; ci < nc && room && js->inflight_bytes < NODE_JOB_INFLIGHT_MAX; ci++) {
        if (ci == sorted)
            sorted += cand_first(c + ci, nc - ci, nc - ci);
        uint32_t i = c[ci].chunk;
        size_t best = SIZE_MAX;
        for (size_t v = 0; v < nuse; v++) {
            size_t u = (js->turn + v) % nuse;
            struct jpeer *jp = jps[u];
            if (!fetch_jp_has(jp, i) || jp->inflight >= NODE_PEER_CHUNKS || jp->quiet_until > now ||
                full[u])
                continue;
            /* the least busy, and of those a partial holder before a complete one */
            if (best == SIZE_MAX || jp->inflight < jps[best]->inflight ||
                (jp->inflight == jps[best]->inflight && jps[best]->all && !jp->all))
                best = u;
        }
        if (best == SIZE_MAX)
            continue;
        js->turn++;
        if (chunk_request(n, js, use[best], i, NULL, now) == 0) {
            js->inflight[i / 8] |= (uint8_t)(1u << (i % 8));
            room--;
        } else {
            full[best] = true; /* its window is full (or no memory): not again this step */
        }
    }
    free(c);
    timer_set(n, &js->timer, MIN(next, job_hedge(n, js, use, nuse, now)));
    if (!hope && js->nreq == 0)
        fetch_job_exhausted(n, js, now);
}
