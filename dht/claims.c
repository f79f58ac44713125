/*
 * claims.c - fetch claims: one registry download of a layer at a time in a cluster
 * (docs/swarm.md, "Single flight").
 *
 * As a granter, a node keeps key -> (holder, expiry, done) for the keys it is asked about: the
 * first asker gets the claim for a lease, its next asks renew it, every other asker is told who
 * holds it (the first of them is the standby, the whole pulls after it read one another's
 * downloads in a chain, the rest wait); a holder that says DONE is named for DHT_CLAIM_DONE_MS more
 * (by default), one that says DROP frees the claim. Caps: DHT_CLAIMS_MAX claims,
 * DHT_CLAIMS_PER_SOURCE (live or done) held by nodes at one source (address, as records.c counts
 * them); past a cap the asker is told FREE (go on uncoordinated), never kept waiting.
 *
 * As an asker, a node looks up the nodes closest to the key and asks the closest (itself when it
 * is closer than every node that answered), then the next ones if that fails (3 in all).
 *
 * Owns: the claims held and the claim requests. Must not: call a request's callback after
 * dht_claim_cancel, or grant a claim twice while its lease runs.
 */
#include "dht_int.h"

#define CLAIM_TRIES 3

struct dht_claim {
    struct dht *d;
    struct dht_claim *prev, *next;
    uint8_t key[DHT_ID_LEN];
    uint8_t op;
    dht_claim_cb cb;
    void *arg;
    struct dht_lookup *l;
    struct dht_contact cand[CLAIM_TRIES];
    unsigned ncand, tried;
    bool looked; /* a lookup ran (or was not possible) */
    int tx;      /* the request out, or -1 */
};

/* ---- the granter ---------------------------------------------------------------------------- */

static bool same_source(const struct dht_addr *a, const struct dht_addr *b)
{
    return a->family == b->family && !memcmp(a->ip, b->ip, a->family == 4 ? 4 : 8);
}

static bool live(const struct claim_rec *cr, uint64_t now)
{
    return now < cr->expires || now < cr->standby_expires;
}

/* Claims held by nodes at a's source, live or done, and those they are the standby of. */
static unsigned source_claims(struct dht *d, const struct dht_addr *a, uint64_t now)
{
    unsigned n = 0;
    for (size_t i = 0; i < d->claims.n; i++) {
        const struct claim_rec *cr = idvec_at(&d->claims, i);
        n += live(cr, now) && same_source(&cr->holder.addr, a);
        n += now < cr->standby_expires && same_source(&cr->standby.addr, a);
    }
    return n;
}

static bool same_node(const struct dht_contact *a, const struct dht_contact *b)
{
    return !memcmp(a->id, b->id, DHT_ID_LEN);
}

/* A claim held by another than `from` (reachable), not done: `from` becomes its standby (the
 * first other asker, while it keeps asking), or reads a download (the relay chain: a whole
 * pull reads the last reader's, so that each node's uplink carries the layer once), or waits
 * (HELD, as res says already). */
static void claim_follow(struct dht *d, struct claim_rec *cr, uint8_t op,
                         const struct dht_contact *from, uint64_t now, struct dht_claim_result *res)
{
    bool take = op == DHT_CLAIM_TAKE || op == DHT_CLAIM_TAKE_READ;
    bool standby_live = now < cr->standby_expires;
    bool again = standby_live && same_node(&cr->standby, from);
    if (op == DHT_CLAIM_DONE || op == DHT_CLAIM_DROP)
        return;
    if (again ||
        (take && !standby_live && source_claims(d, &from->addr, now) < DHT_CLAIMS_PER_SOURCE)) {
        cr->standby = *from;
        cr->standby_expires = now + d->claim_lease;
        res->state = DHT_CLAIM_STANDBY;
        return;
    }
    if (op == DHT_CLAIM_TAKE)
        return; /* a lazy pull: it waits, it needs the index the finished download makes */
    bool tail_live = now < cr->tail_expires;
    bool is_tail = tail_live && same_node(&cr->tail, from);
    res->state = DHT_CLAIM_RELAY;
    if (op == DHT_CLAIM_READ) { /* it reads on; the tail (or a reader, if none) stays one */
        if (is_tail || !tail_live) {
            cr->tail = *from;
            cr->tail_expires = now + DHT_CLAIM_TAIL_LEASES * d->claim_lease;
        }
        return;
    }
    /* a new reader reads the tail's download; one whose source failed, the standby's or the
     * holder's (never a reader's, which may be behind it: no cycle) */
    if (op == DHT_CLAIM_TAKE_READ && tail_live && !is_tail)
        res->holder = cr->tail;
    else if (standby_live)
        res->holder = cr->standby;
    cr->tail = *from;
    cr->tail_expires = now + DHT_CLAIM_TAIL_LEASES * d->claim_lease;
}

/* The claim of key for `from` (op), as a state, a lease and a holder. Only the holder changes
 * its claim (renews it, says DONE, drops it); a DONE from another node is not taken while a
 * claim is live or done (nothing proves it, and it would send every waiter to it), and only
 * makes a claim of its own where there is none. An asker nobody can reach (no port) is never
 * recorded: its contact could not even be sent to others. */
static void claim_decide(struct dht *d, const uint8_t key[DHT_ID_LEN], uint8_t op,
                         const struct dht_contact *from, uint64_t now, struct dht_claim_result *res)
{
    size_t pos;
    struct claim_rec *cr = idvec_find(&d->claims, key, &pos);
    if (cr && !live(cr, now)) {
        idvec_remove(&d->claims, pos);
        cr = NULL;
    }
    if (cr && now >= cr->expires) { /* the holder's lease ran out: its standby takes over */
        cr->holder = cr->standby;
        cr->expires = now + d->claim_lease;
        cr->standby_expires = 0;
    }
    bool mine = cr && !memcmp(cr->holder.id, from->id, DHT_ID_LEN);
    memset(res, 0, sizeof *res);
    if (op == DHT_CLAIM_DROP) {
        if (mine && !cr->done && now < cr->standby_expires) { /* the standby takes it now */
            cr->holder = cr->standby;
            cr->expires = now + d->claim_lease;
            cr->standby_expires = 0;
        } else if (mine && !cr->done) {
            idvec_remove(&d->claims, pos);
        }
        res->state = DHT_CLAIM_NONE;
        return;
    }
    if (cr && !mine) { /* held, or done, by another: so it stays */
        res->state = cr->done ? DHT_CLAIM_FINISHED : DHT_CLAIM_HELD;
        res->lease_ms = cr->done ? 0 : cr->expires - now;
        res->holder = cr->holder;
        if (!cr->done && from->addr.port)
            claim_follow(d, cr, op, from, now, res);
        return;
    }
    if (!cr && op == DHT_CLAIM_READ) {
        res->state = DHT_CLAIM_NONE; /* a reader's check makes no claim: it reads on */
        return;
    }
    if (!cr) {
        /* an asker nobody can reach cannot share the layer: it goes on uncoordinated */
        if (!from->addr.port || d->claims.n >= DHT_CLAIMS_MAX ||
            source_claims(d, &from->addr, now) >= DHT_CLAIMS_PER_SOURCE ||
            !(cr = idvec_insert(&d->claims, pos, key))) {
            res->state = DHT_CLAIM_FREE;
            return;
        }
    }
    if (mine && cr->done && (op == DHT_CLAIM_TAKE || op == DHT_CLAIM_TAKE_READ))
        cr->done = false; /* the holder lost the layer and downloads it again */
    cr->holder = *from;
    if (op == DHT_CLAIM_DONE || cr->done) {
        cr->done = true;
        cr->standby_expires = 0;
        cr->expires = now + d->claim_done;
        res->state = DHT_CLAIM_FINISHED;
        res->holder = *from;
        return;
    }
    cr->expires = now + d->claim_lease;
    res->state = DHT_CLAIM_GRANTED;
    res->lease_ms = d->claim_lease;
}

void claims_answer(struct dht *d, const struct dht_contact *from, const struct dht_msg *m,
                   struct dht_msg *a, uint64_t now)
{
    struct dht_claim_result res;
    claim_decide(d, m->target, m->op, from, now, &res);
    a->type = DHT_CLAIMED;
    a->state = (uint8_t)res.state;
    a->lease_ms = (uint32_t)MIN(res.lease_ms, UINT32_MAX);
    /* the holder: named, unless it is this node (the asker knows where it reached us) */
    a->nnodes = (res.state == DHT_CLAIM_HELD || res.state == DHT_CLAIM_FINISHED ||
                 res.state == DHT_CLAIM_STANDBY || res.state == DHT_CLAIM_RELAY) &&
                memcmp(res.holder.id, d->id, DHT_ID_LEN);
    if (a->nnodes)
        a->nodes[0] = res.holder;
}

void claims_expire(struct dht *d, uint64_t now)
{
    for (size_t i = 0; i < d->claims.n;) {
        if (live(idvec_at(&d->claims, i), now))
            i++;
        else
            idvec_remove(&d->claims, i);
    }
}

size_t dht_claims_held(const struct dht *d)
{
    return d->claims.n;
}

/* ---- the asker ------------------------------------------------------------------------------ */

static void claim_end(struct dht_claim *c, int rc, const struct dht_claim_result *res)
{
    struct dht *d = c->d;
    if (c->l)
        dht_lookup_cancel(c->l);
    if (c->tx >= 0) {
        struct rpc *r = &d->rpc[(unsigned)c->tx & ((1u << RPC_SLOT_BITS) - 1)];
        if (r->used && r->cl == c)
            r->cl = NULL;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        d->claiming = c->next;
    if (c->next)
        c->next->prev = c->prev;
    d->nclaiming--;
    if (c->cb)
        c->cb(c->arg, rc, res);
    free(c);
}

/* This node is the granter. */
static void claim_local(struct dht_claim *c, uint64_t now)
{
    struct dht *d = c->d;
    struct dht_contact self = {0};
    struct dht_claim_result res;
    memcpy(self.id, d->id, DHT_ID_LEN);
    self.addr.port = 1; /* this node reaches itself */
    claim_decide(d, c->key, c->op, &self, now, &res);
    res.granter_self = true;
    memcpy(res.granter.id, d->id, DHT_ID_LEN);
    claim_end(c, 0, &res);
}

static void claim_lookup_done(void *arg, int rc, const struct dht_result *r);

/* Asks the next candidate, or looks the granter up, or gives up. */
static void claim_next(struct dht_claim *c, uint64_t now)
{
    struct dht *d = c->d;
    while (c->tried < c->ncand) {
        const struct dht_contact *to = &c->cand[c->tried++];
        int tx =
            dht_rpc_send(d, to, DHT_CLAIM, NULL, RPC_CLAIM, NULL, table_find(d, to->id) == NULL);
        if (tx < 0)
            continue;
        struct dht_msg m = {.type = DHT_CLAIM, .tx = (uint32_t)tx, .op = c->op};
        memcpy(m.target, c->key, DHT_ID_LEN);
        struct rpc *rp = &d->rpc[(unsigned)tx & ((1u << RPC_SLOT_BITS) - 1)];
        if (dht_send(d, to, table_find(d, to->id) == NULL, &m) < 0) {
            rp->used = false;
            d->nrpc--;
            continue;
        }
        rp->cl = c;
        c->tx = tx;
        return;
    }
    c->tx = -1;
    if (c->looked) {
        claim_end(c, -EHOSTUNREACH, NULL);
        return;
    }
    c->looked = true;
    c->ncand = c->tried = 0;
    int rc = dht_find_node(d, c->key, claim_lookup_done, c, now, &c->l);
    if (rc == -EHOSTUNREACH) /* nobody known: this node is the closest it knows */
        claim_local(c, now);
    else if (rc < 0)
        claim_end(c, rc, NULL);
}

static void claim_lookup_done(void *arg, int rc, const struct dht_result *r)
{
    struct dht_claim *c = arg;
    struct dht *d = c->d;
    c->l = NULL;
    if (rc == -ECANCELED) {
        claim_end(c, rc, NULL);
        return;
    }
    if (rc < 0 || !r->nclosest || dht_distance_cmp(c->key, d->id, r->closest[0].id) < 0) {
        claim_local(c, d->now);
        return;
    }
    for (size_t i = 0; i < r->nclosest && c->ncand < CLAIM_TRIES; i++)
        c->cand[c->ncand++] = r->closest[i];
    claim_next(c, d->now);
}

void claim_reply(struct dht_claim *c, const struct dht_contact *from, const struct dht_msg *m,
                 uint64_t now)
{
    c->tx = -1;
    if (!m) {
        claim_next(c, now);
        return;
    }
    struct dht_claim_result res = {.state = m->state, .lease_ms = m->lease_ms, .granter = *from};
    if (res.state == DHT_CLAIM_HELD || res.state == DHT_CLAIM_FINISHED ||
        res.state == DHT_CLAIM_STANDBY || res.state == DHT_CLAIM_RELAY)
        res.holder = m->nnodes ? m->nodes[0] : *from;
    claim_end(c, 0, &res);
}

int dht_claim(struct dht *d, const uint8_t key[static DHT_ID_LEN], enum dht_claim_op op,
              const struct dht_contact *granter, dht_claim_cb cb, void *arg, uint64_t now,
              struct dht_claim **out)
{
    d->now = now;
    if (d->nclaiming >= DHT_CLAIMING_MAX)
        return -EBUSY;
    struct dht_claim *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->d = d;
    memcpy(c->key, key, DHT_ID_LEN);
    c->op = (uint8_t)op;
    c->cb = cb;
    c->arg = arg;
    c->tx = -1;
    c->next = d->claiming;
    if (c->next)
        c->next->prev = c;
    d->claiming = c;
    d->nclaiming++;
    if (out)
        *out = c;
    if (granter && !memcmp(granter->id, d->id, DHT_ID_LEN)) {
        claim_local(c, now);
        return 0;
    }
    if (granter)
        c->cand[c->ncand++] = *granter;
    claim_next(c, now);
    return 0;
}

void dht_claim_cancel(struct dht_claim *c)
{
    c->cb = NULL;
    claim_end(c, -ECANCELED, NULL);
}

void claims_release(struct dht *d)
{
    while (d->claiming)
        claim_end(d->claiming, -ECANCELED, NULL);
    idvec_release(&d->claims);
}
