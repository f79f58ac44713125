/*
 * swarm.c - what a node tells others of the layers it holds in part (docs/swarm.md): it is
 * announced under the layer's swarm key (a partial provider) once the layer is held in part,
 * and a peer that asked HAVE of a layer hears GOT of every chunk of it that arrives after
 * (unless this node knows it holds that chunk already), so that the fetchers of one layer pass
 * its chunks on among themselves.
 *
 * Owns: the swarm key, each link's watch list. Must not: do I/O, announce a layer it does not
 * hold.
 */
#include "node_int.h"

#include <string.h>

void swarm_key(const uint8_t layer[static DIGEST_LEN], uint8_t out[static DIGEST_LEN])
{
    memcpy(out, layer, DIGEST_LEN);
    out[0] ^= 0x80;
}

bool swarm_watching(const struct node_link *k, const uint8_t layer[static DIGEST_LEN])
{
    for (unsigned i = 0; i < k->nwatch; i++)
        if (!memcmp(k->watch[i], layer, DIGEST_LEN))
            return true;
    return false;
}

void swarm_watch(struct node_link *k, const uint8_t layer[static DIGEST_LEN])
{
    if (swarm_watching(k, layer))
        return;
    unsigned slot = k->nwatch < NODE_LINK_WATCH ? k->nwatch++ : k->watch_next++ % NODE_LINK_WATCH;
    memcpy(k->watch[slot], layer, DIGEST_LEN);
}

void swarm_chunk_stored(struct node *n, const uint8_t layer[static DIGEST_LEN], uint32_t i,
                        uint64_t now)
{
    uint8_t sk[DIGEST_LEN];
    if (n->stopping)
        return;
    swarm_key(layer, sk);
    if (!dht_providing(n->dht, layer) && !dht_providing(n->dht, sk))
        dht_provide(n->dht, sk, now);
    for (struct node_link *k = n->links; k; k = k->next)
        if (k->state == LINK_UP && swarm_watching(k, layer) && !fetch_peer_has(n, k, layer, i) &&
            p2p_peer_got(k->p, layer, i) == 0) {
            n->st.gots_sent++;
            link_touch(k);
        }
}
