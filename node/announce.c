/*
 * announce.c - what the DHT announces follows what the store holds: every complete layer and
 * every image manifest is provided, every layer held in part under its swarm key (swarm.c), and
 * what is gone (evicted, pruned) is withdrawn at once and
 * served no more. The whole store is compared (node_store_ops.held) when the node starts, after
 * a pull, when the store reports an eviction or the CLI says it changed (afsp prune), and before
 * each republish interval ends, so that a store changed behind the node's back is never
 * announced for longer than one record lifetime. A mount's fetch that completes a layer
 * announces just that layer: the read path never lists the store.
 *
 * Owns: the comparison and its timer. Must not: do I/O, list the store on a fetch.
 */
#include "node_int.h"

#include <stdlib.h>
#include <string.h>

static int held_cmp(const void *a, const void *b)
{
    return memcmp(((const struct node_held *)a)->digest, ((const struct node_held *)b)->digest,
                  DIGEST_LEN);
}

static void on_reconcile_timer(struct node *n, struct node_timer *t, uint64_t now)
{
    (void)t;
    announce_reconcile(n, now);
}

void announce_reconcile(struct node *n, uint64_t now)
{
    struct node_held *h = NULL;
    size_t nh = 0;
    char dg[DIGEST_STR_LEN + 1];
    if (!n->reconcile_timer.fire)
        timer_init(&n->reconcile_timer, on_reconcile_timer);
    if (n->stopping)
        return;
    /* again before the records this node stored expire, whatever happens meanwhile */
    timer_set(n, &n->reconcile_timer, now + n->t.dht_republish);
    n->st.store_lists++;
    if (n->so->held(n->sa, &h, &nh) < 0)
        return;
    qsort(h, nh, sizeof *h, held_cmp);
    serve_forget(n, h, nh);
    for (size_t i = 0; i < nh; i++) {
        uint8_t key[DIGEST_LEN];
        if (h[i].complete)
            memcpy(key, h[i].digest, DIGEST_LEN);
        else
            swarm_key(h[i].digest, key); /* held in part: a partial provider */
        if (!dht_providing(n->dht, key))
            dht_provide(n->dht, key, now);
    }
    const uint8_t *key;
    for (size_t i = 0; (key = dht_provided_key(n->dht, i));) {
        struct node_held probe, *f;
        memcpy(probe.digest, key, DIGEST_LEN);
        if ((f = bsearch(&probe, h, nh, sizeof *h, held_cmp)) && f->complete) {
            i++;
            continue;
        }
        swarm_key(key, probe.digest);
        if ((f = bsearch(&probe, h, nh, sizeof *h, held_cmp)) && !f->complete) {
            i++;
            continue;
        }
        memcpy(probe.digest, key, DIGEST_LEN);
        dht_withdraw(n->dht, probe.digest); /* the key's place is taken by the next one */
        log_debug("event=withdrawn digest=%s", digest_fmt(probe.digest, dg));
    }
    free(h);
}

void announce_layer(struct node *n, const uint8_t digest[static DIGEST_LEN], uint64_t now)
{
    uint8_t sk[DIGEST_LEN];
    if (n->stopping)
        return;
    dht_provide(n->dht, digest, now);
    swarm_key(digest, sk);
    dht_withdraw(n->dht, sk);
}

void node_store_changed(struct node *n, uint64_t now)
{
    n->now = now;
    announce_reconcile(n, now);
    node_settle(n, now);
}
