/*
 * providers.c - the provider cache: who holds a blob or a layer, as the DHT last said. A fetch
 * job asks for the providers of its digest (of a layer: its complete providers, and under its
 * swarm key its partial ones, swarm.c); an unknown or old entry starts a lookup (stopping once
 * it knows as many as the job wants), and when it ends the providers it named are
 * dialed once, so that nodes this one was not connected to join the job.
 *
 * Owns: the cache and its lookups. Must not: do I/O.
 */
#include "node_int.h"

#include <inttypes.h>
#include <string.h>

static void on_providers(void *arg, int rc, const struct dht_result *r)
{
    struct pcache *pc = arg;
    struct node *n = pc->node;
    char dg[DIGEST_STR_LEN + 1];
    pc->looking = false;
    pc->dialed = false;
    pc->t = n->now;
    pc->n = 0;
    if (rc == 0)
        for (size_t i = 0; i < r->nproviders && pc->n < DHT_K_MAX; i++)
            pc->prov[pc->n++] = r->providers[i];
    if (n->now < pc->hint_until && !providers_has(pc, pc->hint.id) && pc->n < DHT_K_MAX)
        pc->prov[pc->n++] = pc->hint; /* a claimant done: not yet in the DHT, perhaps */
    n->st.providers_found += pc->n;
    log_debug("event=providers digest=%s found=%u ms=%" PRIu64 " hops=%u messages=%u",
              digest_fmt(pc->digest, dg), pc->n, r ? r->ms : 0, r ? r->hops : 0,
              r ? r->messages : 0);
    n->jobs_dirty = true;
}

struct pcache *providers_get(struct node *n, const uint8_t digest[static DIGEST_LEN], unsigned want,
                             bool again, uint64_t now)
{
    struct pcache *pc = NULL, *victim = NULL;
    for (size_t i = 0; i < NODE_PROVIDERS_CACHED && !pc; i++) {
        struct pcache *c = &n->pc[i];
        if (c->used && !memcmp(c->digest, digest, DIGEST_LEN))
            pc = c;
        else if (!c->looking && (!victim || !c->used || (victim->used && c->t < victim->t)))
            victim = c;
    }
    if (!pc) {
        if (!victim)
            return NULL;
        pc = victim;
        memset(pc, 0, sizeof *pc);
        pc->used = true;
        pc->node = n;
        memcpy(pc->digest, digest, DIGEST_LEN);
    }
    if (!pc->looking && (!pc->t || now - pc->t > n->t.providers_fresh ||
                         (again && now - pc->t > n->t.providers_retry))) {
        if (dht_find_providers(n->dht, digest, want, on_providers, pc, now, NULL) == 0) {
            pc->looking = true;
            n->st.provider_lookups++;
        } else {
            pc->t = now; /* no DHT contact: nothing to wait for */
            pc->n = 0;
        }
    }
    if (!pc->looking && !pc->dialed) {
        pc->dialed = true;
        for (unsigned i = 0; i < pc->n; i++)
            if (!link_to(n, pc->prov[i].id, true) &&
                link_dial(n, &pc->prov[i].addr, pc->prov[i].id, now))
                n->st.dht_dials++;
    }
    return pc;
}

void providers_hint(struct node *n, const uint8_t digest[static DIGEST_LEN],
                    const struct dht_contact *c, uint64_t now)
{
    struct pcache *pc = providers_get(n, digest, NODE_PROVIDERS_WANT, false, now);
    if (!pc || !memcmp(c->id, n->id->id, P2P_ID_LEN))
        return;
    pc->hint = *c;
    pc->hint_until = now + n->t.providers_fresh;
    if (!providers_has(pc, c->id) && pc->n < DHT_K_MAX) {
        pc->prov[pc->n++] = *c;
        if (!link_to(n, c->id, true) && link_dial(n, &c->addr, c->id, now))
            n->st.dht_dials++;
    }
}

bool providers_has(const struct pcache *pc, const uint8_t id[static P2P_ID_LEN])
{
    for (unsigned i = 0; pc && i < pc->n; i++)
        if (!memcmp(pc->prov[i].id, id, P2P_ID_LEN))
            return true;
    return false;
}

bool providers_waiting(struct node *n, const struct pcache *pc)
{
    if (!pc)
        return false;
    if (pc->looking)
        return true;
    for (struct node_link *k = n->links; k; k = k->next)
        if ((k->state == LINK_DIALING || k->state == LINK_HANDSHAKE) && k->expect &&
            providers_has(pc, k->expect_id))
            return true;
    return false;
}
