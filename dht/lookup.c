/*
 * lookup.c - iterative lookups. A lookup keeps the candidates it knows closest to its target
 * first, asks the closest it has not asked, alpha at a time, and adds the closer nodes each
 * answer names. It ends when the k closest candidates that did not fail have all answered (or
 * a GET_PROVIDERS lookup knows the providers it wants). A request that is slow (DHT_SLOW_MS)
 * stops holding one of the alpha slots, so one dead node costs a lookup a fraction of a
 * timeout; its answer still counts if it comes.
 *
 * Owns: the lookups and their candidates. Must not: ask a node twice in one lookup, or call a
 * callback after dht_lookup_cancel.
 */
#include "dht_int.h"

static struct cand *cand_find(struct dht_lookup *l, const uint8_t id[DHT_ID_LEN])
{
    for (unsigned i = 0; i < l->ncand; i++)
        if (!memcmp(l->cand[i].c.id, id, DHT_ID_LEN))
            return &l->cand[i];
    return NULL;
}

static void cand_add(struct dht_lookup *l, const struct dht_contact *c, uint8_t hop)
{
    struct dht *d = l->d;
    if (!memcmp(c->id, d->id, DHT_ID_LEN) || cand_find(l, c->id))
        return;
    unsigned pos = l->ncand;
    while (pos > 0 && dht_distance_cmp(l->target, c->id, l->cand[pos - 1].c.id) < 0)
        pos--;
    if (l->ncand == DHT_CANDS_MAX) {
        /* full: the farthest candidate not waiting for an answer makes room, if closer */
        int drop = -1;
        for (int i = DHT_CANDS_MAX - 1; i >= (int)pos; i--)
            if (l->cand[i].state != C_WAIT && l->cand[i].state != C_SLOW) {
                drop = i;
                break;
            }
        if (drop < 0)
            return;
        memmove(&l->cand[drop], &l->cand[drop + 1],
                (DHT_CANDS_MAX - (unsigned)drop - 1) * sizeof *l->cand);
        l->ncand--;
    }
    memmove(&l->cand[pos + 1], &l->cand[pos], (l->ncand - pos) * sizeof *l->cand);
    l->cand[pos] = (struct cand){.c = *c, .state = C_NEW, .hop = hop};
    l->ncand++;
}

static void record_latency(struct dht *d, struct dht_lookup *l, uint64_t now)
{
    size_t i = d->nlat++ % DHT_LAT_RING;
    d->lat[i] = (uint32_t)(now - l->t0);
    d->hops[i] = l->hops;
}

/* Announcing: each key of the region goes to the k nodes closest to it among those that
 * answered the lookup, as one ADD_PROVIDER per node (per DHT_BATCH_MAX keys). */
static void add_provider(struct dht *d, const struct dht_contact *to, const uint8_t *keys,
                         unsigned n)
{
    struct dht_msg m = {.type = DHT_ADD_PROVIDER, .keys = keys, .nkeys = n};
    int tx = dht_rpc_send(d, to, DHT_ADD_PROVIDER, NULL, RPC_STORE, NULL, false);
    if (tx >= 0) {
        m.tx = (uint32_t)tx;
        dht_send(d, to, false, &m);
    }
}

static void announce(struct dht_lookup *l)
{
    struct dht *d = l->d;
    const struct dht_contact *done[DHT_CANDS_MAX];
    unsigned nd = 0, nb[DHT_CANDS_MAX] = {0};
    for (unsigned i = 0; i < l->ncand; i++)
        if (l->cand[i].state == C_DONE)
            done[nd++] = &l->cand[i].c;
    /* batch + i * DHT_BATCH_MAX: the keys for done[i] */
    uint8_t(*batch)[DHT_ID_LEN] = nd ? malloc((size_t)nd * DHT_BATCH_MAX * DHT_ID_LEN) : NULL;
    if (!batch)
        return;
    for (size_t k = 0; k < l->nkeys; k++) {
        const uint8_t *key = l->keys[k];
        bool chosen[DHT_CANDS_MAX] = {0};
        /* the k closest of done to key: k selection passes over at most DHT_CANDS_MAX */
        for (unsigned r = 0; r < d->k && r < nd; r++) {
            unsigned best = nd;
            for (unsigned i = 0; i < nd; i++)
                if (!chosen[i] &&
                    (best == nd || dht_distance_cmp(key, done[i]->id, done[best]->id) < 0))
                    best = i;
            chosen[best] = true;
            memcpy(batch[(size_t)best * DHT_BATCH_MAX + nb[best]++], key, DHT_ID_LEN);
            if (nb[best] == DHT_BATCH_MAX) {
                add_provider(d, done[best], batch[(size_t)best * DHT_BATCH_MAX], nb[best]);
                nb[best] = 0;
            }
        }
    }
    for (unsigned i = 0; i < nd; i++)
        if (nb[i])
            add_provider(d, done[i], batch[(size_t)i * DHT_BATCH_MAX], nb[i]);
    free(batch);
}

void lookup_end(struct dht_lookup *l, int rc, uint64_t now)
{
    struct dht *d = l->d;
    /* requests still out no longer belong to a lookup: their answers only update the table */
    for (unsigned i = 0; i < l->ncand; i++) {
        struct cand *c = &l->cand[i];
        if (c->state != C_WAIT && c->state != C_SLOW)
            continue;
        struct rpc *r = &d->rpc[c->tx & ((1u << RPC_SLOT_BITS) - 1)];
        if (r->used && r->l == l)
            r->l = NULL;
    }
    if (l->prev)
        l->prev->next = l->next;
    else
        d->lookups = l->next;
    if (l->next)
        l->next->prev = l->prev;
    d->nlookups--;
    d->b[table_bucket(d, l->target)].touched = now;
    if (rc == -ECANCELED) {
        /* dht_free or dht_lookup_cancel: no table or stats changes */
    } else {
        d->st.lookups++;
        d->st.lookups_failed += rc < 0;
        if (rc == 0)
            record_latency(d, l, now);
    }
    if (rc == 0 && l->purpose == L_ANNOUNCE)
        announce(l);
    if (l->cb) {
        struct dht_contact closest[DHT_K_MAX];
        size_t nc = 0;
        for (unsigned i = 0; i < l->ncand && nc < d->k; i++)
            if (l->cand[i].state == C_DONE)
                closest[nc++] = l->cand[i].c;
        struct dht_result r = {l->prov, l->nprov, closest, nc, l->hops, l->msgs, now - l->t0};
        l->cb(l->arg, rc, &r);
    }
    free(l->keys);
    free(l);
}

/* Sends what the alpha slots allow; ends the lookup when nothing closer can come, and returns
 * the code it ended with (1: it goes on). */
static int step(struct dht_lookup *l, uint64_t now)
{
    struct dht *d = l->d;
    if (l->type == DHT_GET_PROVIDERS && l->want && l->nprov >= l->want && l->msgs) {
        lookup_end(l, 0, now);
        return 0;
    }
    unsigned live = 0, done = 0;
    bool pending = false;
    for (unsigned i = 0; i < l->ncand; i++) {
        struct cand *c = &l->cand[i];
        if (c->state == C_FAIL)
            continue;
        /* the k closest; for an announcement also the whole region, which comes first */
        if (live >= d->k &&
            (l->purpose != L_ANNOUNCE || dht_common_bits(l->target, c->c.id) < l->region_bits))
            break;
        live++;
        if (c->state == C_NEW && l->waiting < d->alpha) {
            /* a node not in the table is asked over a connection we open to the address we
             * were given, so its answer verifies it */
            /* an announcement asks about its keys in turn: the nodes near each come back,
             * and not only those nearest the region's first key */
            const uint8_t *t = l->nkeys ? l->keys[l->msgs % l->nkeys] : l->target;
            int tx =
                dht_rpc_send(d, &c->c, l->type, t, RPC_LOOKUP, l, table_find(d, c->c.id) == NULL);
            if (tx < 0) {
                c->state = C_FAIL;
                live--;
                continue;
            }
            c->tx = (uint32_t)tx;
            c->state = C_WAIT;
            l->waiting++;
            l->msgs++;
        }
        if (c->state == C_DONE)
            done++;
        else
            pending = true;
    }
    if (pending)
        return 1;
    int rc = done ? 0 : -EHOSTUNREACH;
    lookup_end(l, rc, now);
    return rc;
}

int lookup_start(struct dht *d, const uint8_t target[static DHT_ID_LEN], uint8_t type,
                 enum lookup_purpose purpose, unsigned want, dht_lookup_cb cb, void *arg,
                 uint64_t now, struct dht_lookup **out)
{
    if (d->nlookups >= DHT_LOOKUPS_MAX)
        return -EBUSY;
    struct dht_contact start[DHT_K_MAX];
    size_t n = dht_closest(d, target, start, d->k);
    if (n == 0)
        return -EHOSTUNREACH;
    struct dht_lookup *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->d = d;
    memcpy(l->target, target, DHT_ID_LEN);
    l->type = type;
    l->purpose = (uint8_t)purpose;
    l->want = want;
    l->arg = arg;
    l->t0 = now;
    for (size_t i = 0; i < n; i++)
        cand_add(l, &start[i], 0);
    /* records this node holds count: it is never asked itself */
    if (type == DHT_GET_PROVIDERS)
        l->nprov = records_get(d, target, l->prov, DHT_K_MAX, now);
    l->next = d->lookups;
    if (d->lookups)
        d->lookups->prev = l;
    d->lookups = l;
    d->nlookups++;
    /* without a callback while starting: a lookup that cannot send a request fails here */
    int rc = step(l, now);
    if (rc != 1)
        return rc < 0 ? rc : -EHOSTUNREACH;
    l->cb = cb;
    if (out)
        *out = l;
    return 0;
}

int lookup_announce(struct dht *d, const uint8_t target[static DHT_ID_LEN], unsigned bits,
                    uint8_t (*keys)[DHT_ID_LEN], size_t nkeys, uint64_t now)
{
    struct dht_lookup *l = NULL;
    /* no callback: the keys are attached before the first answer can come */
    int rc = lookup_start(d, target, DHT_FIND_NODE, L_ANNOUNCE, 0, NULL, NULL, now, &l);
    if (rc < 0) {
        free(keys);
        return rc;
    }
    l->keys = keys;
    l->nkeys = nkeys;
    l->region_bits = bits;
    return 0;
}

void lookup_reply(struct dht_lookup *l, const struct dht_contact *from, const struct dht_msg *m,
                  uint64_t now)
{
    struct cand *c = cand_find(l, from->id);
    if (!c || (c->state != C_WAIT && c->state != C_SLOW))
        return;
    if (c->state == C_WAIT)
        l->waiting--;
    c->state = C_DONE;
    uint8_t hop = c->hop;
    if (hop + 1u > l->hops)
        l->hops = hop + 1u;
    for (unsigned i = 0; i <= m->nproviders; i++) {
        const struct dht_contact *p = i < m->nproviders ? &m->providers[i] : from;
        if (i == m->nproviders && !m->self)
            break;
        bool dup = !memcmp(p->id, l->d->id, DHT_ID_LEN);
        for (unsigned j = 0; j < l->nprov && !dup; j++)
            dup = !memcmp(l->prov[j].id, p->id, DHT_ID_LEN);
        if (!dup && l->nprov < DHT_K_MAX)
            l->prov[l->nprov++] = *p;
    }
    for (unsigned i = 0; i < m->nnodes; i++)
        cand_add(l, &m->nodes[i], (uint8_t)(hop + 1 < 255 ? hop + 1 : 255));
    step(l, now);
}

void lookup_failed(struct dht_lookup *l, const uint8_t id[static DHT_ID_LEN], uint64_t now)
{
    struct cand *c = cand_find(l, id);
    if (!c || (c->state != C_WAIT && c->state != C_SLOW))
        return;
    if (c->state == C_WAIT)
        l->waiting--;
    c->state = C_FAIL;
    step(l, now);
}

void lookup_slow(struct dht_lookup *l, const uint8_t id[static DHT_ID_LEN], uint64_t now)
{
    struct cand *c = cand_find(l, id);
    if (!c || c->state != C_WAIT)
        return;
    l->waiting--;
    c->state = C_SLOW;
    step(l, now);
}

void dht_lookup_cancel(struct dht_lookup *l)
{
    l->cb = NULL;
    lookup_end(l, -ECANCELED, l->d->now);
}

int dht_find_node(struct dht *d, const uint8_t target[static DHT_ID_LEN], dht_lookup_cb cb,
                  void *arg, uint64_t now, struct dht_lookup **out)
{
    d->now = now;
    return lookup_start(d, target, DHT_FIND_NODE, L_USER, 0, cb, arg, now, out);
}

int dht_find_providers(struct dht *d, const uint8_t key[static DHT_ID_LEN], unsigned want,
                       dht_lookup_cb cb, void *arg, uint64_t now, struct dht_lookup **out)
{
    d->now = now;
    return lookup_start(d, key, DHT_GET_PROVIDERS, L_USER, want, cb, arg, now, out);
}
