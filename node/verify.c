/*
 * verify.c - what a lazily read layer is worth until it is whole (docs/security.md). A partial
 * layer's index is the word of the peer that sent it: every index a node serves is one it built
 * from the whole blob (store_index_built_bytes), so that peer is the index's builder. Here:
 *   - the sender of each index the node fetched is kept with the index in the layer's record
 *     (store_fetch_new), so it is known whenever the index is shown false, restarts included;
 *   - an image a mount read lazily is queued for a verification: a VERIFY task completes its
 *     partial layers (a pull of the image, not lazy, its chunks from peers paced at
 *     verify_rate), one image at a time, off the read path;
 *   - when the store shows a peer's index false (the completed layer gives an index that says
 *     otherwise: store_index_judged_fn), the sender is banned until the node restarts: its
 *     links are closed and refused, its DHT records dropped, and the evidence (both indexes'
 *     digests) logged and counted (forged_indexes);
 *   - a chunk from a peer that fails against another node's index is disputed (fetch.c): the
 *     peer is a suspect (a ring of NODE_SUSPECTS) until the layer's verification judges that
 *     index: true, the peer's bytes were false (its lie, or a forged index's chunks it holds)
 *     and it is banned for a while; false, they were not. Bytes from a third source that fit
 *     the index prove nothing (the sender may have many IDs).
 *
 * Owns: the verification queue, the banned senders, the suspects. Must not: trust an
 * index's sender with more than the layer digest proves.
 */
#include "node_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int verify_init(struct node *n)
{
    n->verify = calloc(NODE_VERIFY_QUEUED, sizeof *n->verify);
    n->forgers = calloc(NODE_FORGERS_MAX, sizeof *n->forgers);
    return n->verify && n->forgers ? 0 : -ENOMEM;
}

void verify_free(struct node *n)
{
    for (size_t i = 0; n->verify && i < n->nverify; i++)
        node_task_free(n->verify[i].t);
    free(n->verify);
    free(n->forgers);
    n->verify = NULL;
    n->forgers = NULL;
    n->nverify = 0;
}

void verify_after_fetch(struct node *n, const struct node_task *t)
{
    /* what names the work: the layer a mount read, or the image a pull got */
    const uint8_t *key = t->kind == NODE_TASK_PULL ? t->digest : t->layer;
    if (n->cfg.verify_rate == UINT64_MAX || !t->ref || n->stopping)
        return;
    for (size_t i = 0; i < n->nverify; i++)
        if (!memcmp(n->verify[i].layer, key, DIGEST_LEN))
            return; /* queued already */
    for (struct node_task *r = n->tasks; r; r = r->next)
        if (r->kind == NODE_TASK_VERIFY && !memcmp(r->layer, key, DIGEST_LEN))
            return; /* running */
    if (n->nverify == NODE_VERIFY_QUEUED)
        return; /* a later read of the layer queues it again */
    struct node_task *v = calloc(1, sizeof *v);
    bool nomem = !v || !(v->ref = strdup(t->ref));
    for (size_t i = 0; !nomem && t->insecure[i]; i++)
        nomem = !(v->insecure[i] = strdup(t->insecure[i]));
    if (nomem) {
        if (v)
            node_task_free(v);
        return;
    }
    v->kind = NODE_TASK_VERIFY;
    memcpy(v->layer, key, DIGEST_LEN);
    if (t->kind == NODE_TASK_PULL) /* a mount's ref names its manifest already */
        memcpy(v->digest, t->digest, DIGEST_LEN);
    v->rate = n->cfg.verify_rate ? n->cfg.verify_rate : NODE_VERIFY_RATE;
    struct verify_item *it = &n->verify[n->nverify++];
    memcpy(it->layer, key, DIGEST_LEN);
    it->t = v;
    verify_next(n);
}

void verify_next(struct node *n)
{
    if (n->verifying || n->stopping || !n->nverify || n->ntasks >= NODE_TASKS_MAX)
        return;
    struct node_task *t = n->verify[0].t;
    memmove(n->verify, n->verify + 1, --n->nverify * sizeof *n->verify);
    n->verifying = true;
    t->next = n->tasks;
    n->tasks = t;
    n->ntasks++;
    fx_push(n, &(struct node_effect){.type = NODE_FX_TASK, .task = t});
}

void verify_done(struct node *n, struct node_task *t)
{
    char dg[DIGEST_STR_LEN + 1];
    n->verifying = false;
    n->st.verifies++;
    n->st.verifies_failed += t->rc < 0;
    if (t->rc < 0)
        log_warn("event=verify layer=%s ref=%s result=\"%s\"", digest_fmt(t->layer, dg), t->ref,
                 t->msg);
    else
        log_info("event=verify layer=%s ref=%s result=\"ok\"", digest_fmt(t->layer, dg), t->ref);
}

void verify_suspect(struct node *n, const uint8_t layer[static DIGEST_LEN],
                    const uint8_t id[static P2P_ID_LEN], const uint8_t ix[static DIGEST_LEN])
{
    for (size_t i = 0; i < NODE_SUSPECTS; i++) {
        const struct chunk_suspect *s = &n->suspects[i];
        if (s->used && !memcmp(s->layer, layer, DIGEST_LEN) && !memcmp(s->id, id, P2P_ID_LEN) &&
            !memcmp(s->ix, ix, DIGEST_LEN))
            return; /* suspected already */
    }
    struct chunk_suspect *s = &n->suspects[n->suspect_next];
    n->suspect_next = (n->suspect_next + 1) % NODE_SUSPECTS;
    s->used = true;
    memcpy(s->layer, layer, DIGEST_LEN);
    memcpy(s->id, id, P2P_ID_LEN);
    memcpy(s->ix, ix, DIGEST_LEN);
}

/* Index ix of layer was judged: if true, the peers whose chunks failed against it sent false
 * bytes (their own lie, or a forged index's chunks they hold and serve in good faith: either
 * way not to be asked for a while); if false, they did not. Either way they are no longer
 * suspects. Suspects of another index of the layer (one evicted meanwhile) stay. */
static void suspects_settle(struct node *n, const uint8_t layer[static DIGEST_LEN],
                            const uint8_t ix[static DIGEST_LEN], bool index_false, uint64_t now)
{
    char id[17], dg[DIGEST_STR_LEN + 1];
    for (size_t i = 0; i < NODE_SUSPECTS; i++) {
        struct chunk_suspect *s = &n->suspects[i];
        if (!s->used || memcmp(s->layer, layer, DIGEST_LEN) || memcmp(s->ix, ix, DIGEST_LEN))
            continue;
        s->used = false;
        if (index_false)
            continue;
        n->st.chunk_liars++;
        log_warn("event=chunk_false layer=%s peer=%s", digest_fmt(layer, dg), id_short(s->id, id));
        for (struct node_link *k = n->links; k; k = k->next)
            if (!memcmp(k->peer_id, s->id, P2P_ID_LEN))
                link_ban(k, "sent a chunk that the layer's true index shows false", now);
    }
}

bool verify_forger(const struct node *n, const uint8_t id[static P2P_ID_LEN])
{
    for (size_t i = 0; i < MIN(n->nforgers, (size_t)NODE_FORGERS_MAX); i++)
        if (!memcmp(n->forgers[i], id, P2P_ID_LEN))
            return true;
    return false;
}

void node_index_judged(struct node *n, const uint8_t layer[static DIGEST_LEN], const uint8_t *from,
                       const uint8_t peer_ix[static DIGEST_LEN],
                       const uint8_t blob_ix[static DIGEST_LEN], bool was_false, uint64_t now)
{
    char dg[DIGEST_STR_LEN + 1], a[DIGEST_STR_LEN + 1], b[DIGEST_STR_LEN + 1], id[65];
    n->now = now;
    suspects_settle(n, layer, peer_ix, was_false, now);
    if (!was_false) {
        node_settle(n, now);
        return;
    }
    n->st.forged_indexes++;
    digest_fmt(layer, dg);
    digest_fmt(peer_ix, a);
    digest_fmt(blob_ix, b);
    if (!from) { /* kept by a store from before senders were recorded */
        log_error("event=forged_index layer=%s sender=unknown peer_index=%s blob_index=%s", dg, a,
                  b);
        return;
    }
    hex_fmt(from, P2P_ID_LEN, id);
    log_error("event=forged_index layer=%s sender=%s peer_index=%s blob_index=%s action=banned", dg,
              id, a, b);
    if (!verify_forger(n, from))
        memcpy(n->forgers[n->nforgers++ % NODE_FORGERS_MAX], from, P2P_ID_LEN);
    for (struct node_link *k = n->links; k; k = k->next)
        if (k->state != LINK_CLOSED && !memcmp(k->peer_id, from, P2P_ID_LEN))
            link_close(k, AFSP_E_AUTH);
    dht_forget(n->dht, from);
    node_settle(n, now);
}
