/*
 * serve.c - answering peers: GET_BLOB (a manifest or config kept whole, a complete layer's
 * blob, or the bytes of a layer this node downloads from a registry now: the relay,
 * docs/swarm.md), GET_INDEX, GET_CHUNK (a chunk of a layer held whole or in part) and HAVE (which
 * chunks a layer has), read from the store through node_store_ops. Layers being served stay open in
 * a few slots (NODE_LAYERS_OPEN), shared by the answers that read them; an evicted layer is served
 * no more, though answers under way finish. Answer bytes are produced only as the link drains
 * (p2p_peer_pump, from node_link_pending).
 *
 * A GET_BLOB of a download's bytes not written yet waits (parked) until they are, the download
 * ends, or NODE_PARK_MAX_MS has passed (then: busy); the downloads are looked at every
 * NODE_PARK_POLL_MS while any request waits.
 *
 * Owns: the open layers, the answers' sources, the parked requests. Must not: do I/O, serve a
 * layer it does not hold, serve a blob whole before every chunk of it is here.
 */
#include "node_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One answer's bytes: from memory (a small blob, an index) or from a layer's blob. */
struct src {
    struct node *n;
    struct node_link *k;
    struct buf mem;
    struct served_layer *sl;
    void *dl;      /* a download under way (node_store_ops dl_*) */
    uint64_t base; /* where the object starts in the blob */
    bool chunk;    /* a chunk's answer: it holds one of the node's serve_chunks slots */
};

static struct served_layer *layer_get(struct node *n, const uint8_t digest[DIGEST_LEN],
                                      uint64_t now, int *why)
{
    struct served_layer *free_slot = NULL, *lru = NULL;
    for (size_t i = 0; i < NODE_LAYERS_OPEN; i++) {
        struct served_layer *sl = &n->layers[i];
        if (sl->l && sl->gone && !sl->refs) {
            n->so->layer_close(n->sa, sl->l);
            sl->l = NULL;
        }
        if (sl->l && !sl->gone && !memcmp(sl->digest, digest, DIGEST_LEN)) {
            sl->used = now;
            return sl;
        }
        if (!sl->l && !free_slot)
            free_slot = sl;
        if (sl->l && !sl->refs && (!lru || sl->used < lru->used))
            lru = sl;
    }
    struct served_layer *slot = free_slot ? free_slot : lru;
    void *l;
    if (!slot) {
        *why = -EBUSY; /* every slot is being read */
        return NULL;
    }
    int rc = n->so->layer_open(n->sa, digest, &l);
    if (rc < 0) {
        *why = rc; /* we do not hold it, or the store is busy */
        return NULL;
    }
    if (slot->l)
        n->so->layer_close(n->sa, slot->l);
    memcpy(slot->digest, digest, DIGEST_LEN);
    slot->l = l;
    slot->refs = 0;
    slot->gone = false;
    slot->used = now;
    return slot;
}

void serve_forget(struct node *n, const struct node_held *held, size_t nheld)
{
    for (size_t i = 0; i < NODE_LAYERS_OPEN; i++) {
        struct served_layer *sl = &n->layers[i];
        bool present = false;
        for (size_t lo = 0, hi = nheld; sl->l && lo < hi && !present;) {
            size_t mid = (lo + hi) / 2;
            int c = memcmp(held[mid].digest, sl->digest, DIGEST_LEN);
            if (c == 0)
                present = true;
            else if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (sl->l && !present)
            sl->gone = true;
    }
}

static void park_drop_all(struct node *n, const struct node_link *k);

void serve_close_all(struct node *n)
{
    park_drop_all(n, NULL);
    for (size_t i = 0; i < NODE_LAYERS_OPEN; i++)
        if (n->layers[i].l) {
            n->so->layer_close(n->sa, n->layers[i].l);
            n->layers[i].l = NULL;
        }
}

static int src_read(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    struct src *s = arg;
    if (s->sl)
        return s->n->so->layer_read(s->sl->l, s->base + off, buf, len);
    if (s->dl)
        return s->n->so->dl_read(s->dl, off, buf, len);
    if (off > s->mem.len || len > s->mem.len - off)
        return AFSP_E_USAGE;
    memcpy(buf, s->mem.p + off, len);
    return 0;
}

static void src_done(void *arg)
{
    struct src *s = arg;
    if (s->sl)
        s->sl->refs--;
    if (s->dl)
        s->n->so->dl_close(s->n->sa, s->dl);
    /* a chunk's slot is held until its last byte has left the link (an answer produced into a
     * link's buffer is not sent yet: with the slot freed at once, a holder took on far more
     * chunks than its uplink carried, each queued behind the others) */
    if (s->chunk && s->k->state == LINK_UP && s->k->nchunk_ends < NODE_SERVE_CHUNKS_MAX) {
        const uint8_t *p;
        s->k->chunk_ends[s->k->nchunk_ends++] = (struct chunk_end){
            s->k->bytes_out + p2p_conn_pending(p2p_peer_conn(s->k->p), &p), s->n->now};
        serve_link_sent(s->k);
    } else if (s->chunk) {
        s->n->serving_chunks--;
    }
    s->n->serving--;
    buf_release(&s->mem);
    free(s);
}

/* A layer is served whole only when every chunk is here (a complete layer). */
/* k's chunk answers whose last byte has left, or that were produced whole longer than the
 * stall duration ago (its peer reads slowly, or not at all: the slot is not its to hold), free
 * their slots. */
static void link_slots_free(struct node_link *k, uint64_t now)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < k->nchunk_ends; i++) {
        struct chunk_end *e = &k->chunk_ends[i];
        if (e->end > k->bytes_out && now - e->at < k->n->t.stall) {
            k->chunk_ends[kept++] = *e;
        } else {
            k->n->serving_chunks--;
        }
    }
    k->nchunk_ends = kept;
}

void serve_link_sent(struct node_link *k)
{
    link_slots_free(k, k->n->now);
}

void serve_link_closed(struct node_link *k)
{
    park_drop_all(k->n, k);
    k->n->serving_chunks -= k->nchunk_ends; /* those in production ended with the connection */
    k->nchunk_ends = 0;
}

/* Whether a chunk answer may start: a slot is free (slots held longer than the stall duration
 * by peers that do not read are taken back first). */
static bool slot_free(struct node *n, uint64_t now)
{
    if (n->serving_chunks >= n->serve_chunks)
        for (struct node_link *o = n->links; o; o = o->next)
            if (o->nchunk_ends)
                link_slots_free(o, now);
    return n->serving_chunks < n->serve_chunks;
}

static bool layer_whole(const struct node *n, void *l)
{
    for (uint32_t i = 0, nc = n->so->layer_nchunks(l); i < nc; i++)
        if (!n->so->layer_has(l, i))
            return false;
    return true;
}

/* Whether chunk i of served layer sl may be sent: the store holds it, or one of this node's
 * jobs has it checked and written (not yet flushed to the store's map). */
static bool servable(struct node *n, struct served_layer *sl, uint32_t i)
{
    uint32_t nc = n->so->layer_nchunks(sl->l);
    return i < nc && (n->so->layer_has(sl->l, i) || fetch_jobs_have(n, sl->digest, nc, i));
}

static void answer_have(struct node *n, struct p2p_peer *p, const struct p2p_msg *m,
                        struct served_layer *sl)
{
    void *l = sl->l;
    uint32_t nc = n->so->layer_nchunks(l);
    uint8_t *bm = calloc((nc + 7) / 8 + 1, 1);
    if (!bm) {
        p2p_peer_answer_error(p, m->id, P2P_ERR_BUSY);
        return;
    }
    for (uint32_t i = 0; i < nc; i++)
        if (servable(n, sl, i))
            bm[i / 8] |= (uint8_t)(1u << (i % 8));
    p2p_peer_answer_have(p, m->id, nc, bm);
    free(bm);
}

/* Whether bytes [off, off + len) of a download of total bytes, written bytes so far, can be
 * sent (past its end: none need be). */
static bool dl_ready(uint64_t written, uint64_t total, uint64_t off, uint64_t len)
{
    return off >= total || written >= off + MIN(len, total - off);
}

/* Whether layer_get failed for want of room (a slot, memory, the store), not of the layer: the
 * answer is then busy, not not-found, which would say the layer is not here. */
static bool busy(int why)
{
    return why == -EBUSY || why == -ENOMEM;
}

/* Where the answer's bytes come from: 0 (s filled, *total its size), 1 (answered already), 2 (a
 * download's bytes not written yet: s->dl, to be parked), or a code (answered with an error by
 * the caller). */
static int serve_source(struct node_link *k, const struct p2p_msg *m, struct src *s,
                        uint64_t *total, uint64_t now)
{
    struct node *n = k->n;
    const struct node_store_ops *so = n->so;
    int why = 0;
    switch (m->type) {
    case P2P_GET_BLOB:
        if (so->blob(n->sa, m->digest, &s->mem) == 0) {
            *total = s->mem.len;
            return 0;
        }
        if ((s->sl = layer_get(n, m->digest, now, &why)) &&
            (layer_whole(n, s->sl->l) ||
             (so->layer_refresh(s->sl->l) == 0 && layer_whole(n, s->sl->l)))) {
            uint64_t coff;
            uint32_t clen;
            so->layer_chunk(s->sl->l, so->layer_nchunks(s->sl->l) - 1, &coff, &clen);
            *total = coff + clen;
            return 0;
        }
        s->sl = NULL;
        /* a download under way needs no layer slot: tried even when every slot is taken */
        if (so->dl_open && so->dl_open(n->sa, m->digest, &s->dl) == 0) {
            uint64_t written;
            int end = so->dl_state(s->dl, &written, total);
            if (end >= 0)
                return dl_ready(written, *total, m->off, m->len) ? 0 : 2;
            so->dl_close(n->sa, s->dl); /* it failed */
            s->dl = NULL;
        }
        return busy(why) ? -ENOMEM : AFSP_E_NOTFOUND;
    case P2P_GET_INDEX: {
        int rc = so->index(n->sa, m->digest, &s->mem);
        *total = s->mem.len;
        return rc;
    }
    case P2P_GET_TRACE: {
        int rc = so->trace ? so->trace(n->sa, m->digest, &s->mem) : AFSP_E_NOTFOUND;
        *total = s->mem.len;
        return rc;
    }
    case P2P_GET_CHUNK:
        if ((s->sl = layer_get(n, m->digest, now, &why)) && !servable(n, s->sl, m->chunk))
            so->layer_refresh(s->sl->l); /* a partial layer: the chunk may have come */
        if (!s->sl && busy(why))
            return -ENOMEM; /* answered busy: the asker goes elsewhere for this layer */
        if (!s->sl || !servable(n, s->sl, m->chunk)) {
            s->sl = NULL;
            return AFSP_E_NOTFOUND;
        }
        if (!slot_free(n, now)) {
            s->sl = NULL;
            n->st.chunks_busy++;
            return -ENOMEM; /* busy: the asker takes the chunk from another holder, or waits */
        }
        uint32_t clen;
        so->layer_chunk(s->sl->l, m->chunk, &s->base, &clen);
        *total = clen;
        return 0;
    case P2P_HAVE: {
        struct served_layer *sl = layer_get(n, m->digest, now, &why);
        if (!sl)
            return busy(why) ? -ENOMEM : AFSP_E_NOTFOUND;
        so->layer_refresh(sl->l);
        answer_have(n, k->p, m, sl);
        swarm_watch(k, m->digest); /* it hears of the chunks that come after */
        return 1;
    }
    default:
        return AFSP_E_PROTO;
    }
}

/* Answers request id of k with bytes [off, off + len) of the object s names (total bytes). */
static void answer(struct node_link *k, uint32_t id, struct src *s, uint64_t total, uint64_t off,
                   uint64_t len, bool chunk)
{
    struct node *n = k->n;
    if (s->sl)
        s->sl->refs++;
    s->n = n;
    s->k = k;
    if (++n->serving > n->st.serving_peak)
        n->st.serving_peak = n->serving;
    if (chunk) {
        n->st.chunks_served++;
        n->serving_chunks++;
        s->chunk = true;
        k->chunk_bytes_out += total;
    }
    uint64_t bytes = off < total ? MIN(len, total - off) : 0;
    n->st.bytes_served += bytes;
    if (s->dl)
        n->st.relayed_bytes += bytes;
    struct p2p_source ps = {src_read, src_done, s};
    p2p_peer_answer_data(k->p, id, total, off > total ? total : off, len, &ps);
    link_touch(k);
}

static void park_unlink(struct node *n, struct parked **pp)
{
    struct parked *q = *pp;
    *pp = q->next;
    n->nparked--;
    free(q);
}

/* The parked requests whose bytes are written now (or whose download ended) are answered; those
 * parked too long are answered busy (the asker asks again, or goes elsewhere). */
static void on_park_timer(struct node *n, struct node_timer *t, uint64_t now)
{
    (void)t;
    for (struct parked **pp = &n->parked; *pp;) {
        struct parked *q = *pp;
        uint64_t written, total;
        if (!p2p_peer_answer_wanted(q->k->p, q->id)) { /* cancelled: its place is free */
            q->k->nparked--;
            n->so->dl_close(n->sa, q->dl);
            park_unlink(n, pp);
            continue;
        }
        int end = n->so->dl_state(q->dl, &written, &total);
        bool ready = end == 1 || (end == 0 && dl_ready(written, total, q->off, q->len));
        if (!ready && end == 0 && now - q->since < NODE_PARK_MAX_MS) {
            pp = &q->next;
            continue;
        }
        struct src *s = ready ? calloc(1, sizeof *s) : NULL;
        if (s) {
            s->dl = q->dl;
            answer(q->k, q->id, s, total, q->off, q->len, false);
        } else {
            if (end == 0)
                n->st.relay_busy++;
            p2p_peer_answer_error(q->k->p, q->id, end < 0 ? P2P_ERR_NOT_FOUND : P2P_ERR_BUSY);
            link_touch(q->k);
            n->so->dl_close(n->sa, q->dl);
        }
        q->k->nparked--;
        park_unlink(n, pp);
    }
    if (n->parked)
        timer_set(n, &n->park_timer, now + NODE_PARK_POLL_MS);
}

static void park(struct node_link *k, const struct p2p_msg *m, void *dl, uint64_t now)
{
    struct node *n = k->n;
    struct parked *q = n->nparked < NODE_PARKED_MAX && k->nparked < NODE_PARKED_PER_LINK
                           ? calloc(1, sizeof *q)
                           : NULL;
    n->st.relay_waits++;
    if (!q) {
        n->st.relay_busy++;
        p2p_peer_answer_error(k->p, m->id, P2P_ERR_BUSY);
        n->so->dl_close(n->sa, dl);
        return;
    }
    bool idle = !n->parked;
    *q = (struct parked){k, m->id, dl, m->off, m->len, now, n->parked};
    n->parked = q;
    n->nparked++;
    k->nparked++;
    if (!n->park_timer.fire)
        timer_init(&n->park_timer, on_park_timer);
    if (idle) /* else the poll is due already */
        timer_set(n, &n->park_timer, now + NODE_PARK_POLL_MS);
}

static void park_drop_all(struct node *n, const struct node_link *k)
{
    for (struct parked **pp = &n->parked; *pp;) {
        if (k && (*pp)->k != k) {
            pp = &(*pp)->next;
            continue;
        }
        (*pp)->k->nparked--;
        n->so->dl_close(n->sa, (*pp)->dl);
        park_unlink(n, pp);
    }
}

void serve_request(struct node_link *k, const struct p2p_msg *m, uint64_t now)
{
    struct p2p_peer *p = k->p;
    struct src *s = calloc(1, sizeof *s);
    uint64_t total = 0;
    int rc = s ? serve_source(k, m, s, &total, now) : -ENOMEM;
    link_touch(k);
    if (rc == 2) {
        park(k, m, s->dl, now);
        free(s);
        return;
    }
    if (rc != 0) {
        if (rc < 0)
            p2p_peer_answer_error(p, m->id,
                                  rc == AFSP_E_PROTO ? P2P_ERR_BAD_REQUEST
                                  : rc == -ENOMEM    ? P2P_ERR_BUSY
                                                     : P2P_ERR_NOT_FOUND);
        if (s)
            buf_release(&s->mem);
        free(s);
        return;
    }
    bool chunk = m->type == P2P_GET_CHUNK;
    TRACE("serve type=%d chunk=%u off=%llu", m->type, m->chunk, (unsigned long long)m->off);
    answer(k, m->id, s, total, chunk ? 0 : m->off, chunk ? UINT64_MAX : m->len, chunk);
}
