/*
 * serve.c - answering peers: GET_BLOB (a manifest or config kept whole, or a complete layer's
 * blob), GET_INDEX, GET_CHUNK (a chunk of a layer held whole or in part) and HAVE (which chunks
 * a layer has), read from the store through node_store_ops. Layers being served stay open in a
 * few slots (NODE_LAYERS_OPEN), shared by the answers that read them; an evicted layer is
 * served no more, though answers under way finish. Answer bytes are produced only as the link
 * drains (p2p_peer_pump, from node_link_pending).
 *
 * Owns: the open layers and the answers' sources. Must not: do I/O, serve a layer it does not
 * hold, serve a blob whole before every chunk of it is here.
 */
#include "node_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One answer's bytes: from memory (a small blob, an index) or from a layer's blob. */
struct src {
    struct node *n;
    struct buf mem;
    struct served_layer *sl;
    uint64_t base; /* where the object starts in the blob */
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

void serve_close_all(struct node *n)
{
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
    s->n->serving--;
    buf_release(&s->mem);
    free(s);
}

/* A layer is served whole only when every chunk is here (a complete layer). */
static bool layer_whole(const struct node *n, void *l)
{
    for (uint32_t i = 0, nc = n->so->layer_nchunks(l); i < nc; i++)
        if (!n->so->layer_has(l, i))
            return false;
    return true;
}

static void answer_have(struct node *n, struct p2p_peer *p, const struct p2p_msg *m, void *l)
{
    uint32_t nc = n->so->layer_nchunks(l);
    uint8_t *bm = calloc((nc + 7) / 8 + 1, 1);
    if (!bm) {
        p2p_peer_answer_error(p, m->id, P2P_ERR_BUSY);
        return;
    }
    for (uint32_t i = 0; i < nc; i++)
        if (n->so->layer_has(l, i))
            bm[i / 8] |= (uint8_t)(1u << (i % 8));
    p2p_peer_answer_have(p, m->id, nc, bm);
    free(bm);
}

/* Whether layer_get failed for want of room (a slot, memory, the store), not of the layer: the
 * answer is then busy, not not-found, which would say the layer is not here. */
static bool busy(int why)
{
    return why == -EBUSY || why == -ENOMEM;
}

/* Where the answer's bytes come from: 0 (s filled, *total its size), 1 (answered already), or a
 * code (answered with an error by the caller). */
static int serve_source(struct node *n, struct p2p_peer *p, const struct p2p_msg *m, struct src *s,
                        uint64_t *total, uint64_t now)
{
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
        return busy(why) ? -ENOMEM : AFSP_E_NOTFOUND;
    case P2P_GET_INDEX: {
        int rc = so->index(n->sa, m->digest, &s->mem);
        *total = s->mem.len;
        return rc;
    }
    case P2P_GET_CHUNK:
        if ((s->sl = layer_get(n, m->digest, now, &why)) &&
            m->chunk < so->layer_nchunks(s->sl->l) && !so->layer_has(s->sl->l, m->chunk))
            so->layer_refresh(s->sl->l); /* a partial layer: the chunk may have come */
        if (!s->sl && busy(why))
            return -ENOMEM; /* answered busy: the asker goes elsewhere for this layer */
        if (!s->sl || m->chunk >= so->layer_nchunks(s->sl->l) ||
            !so->layer_has(s->sl->l, m->chunk)) {
            s->sl = NULL;
            return AFSP_E_NOTFOUND;
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
        answer_have(n, p, m, sl->l);
        return 1;
    }
    default:
        return AFSP_E_PROTO;
    }
}

void serve_request(struct node_link *k, const struct p2p_msg *m, uint64_t now)
{
    struct node *n = k->n;
    struct p2p_peer *p = k->p;
    struct src *s = calloc(1, sizeof *s);
    uint64_t total = 0;
    int rc = s ? serve_source(n, p, m, s, &total, now) : -ENOMEM;
    link_touch(k);
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
    uint64_t off = m->type == P2P_GET_CHUNK ? 0 : m->off;
    uint64_t len = m->type == P2P_GET_CHUNK ? UINT64_MAX : m->len;
    if (s->sl)
        s->sl->refs++;
    s->n = n;
    if (++n->serving > n->st.serving_peak)
        n->st.serving_peak = n->serving;
    if (m->type == P2P_GET_CHUNK)
        n->st.chunks_served++;
    if (off < total)
        n->st.bytes_served += len < total - off ? len : total - off;
    struct p2p_source ps = {src_read, src_done, s};
    p2p_peer_answer_data(p, m->id, total, off > total ? total : off, len, &ps);
}
