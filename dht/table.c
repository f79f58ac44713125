/*
 * table.c - the routing table: 256 k-buckets by the number of leading bits a contact shares
 * with this node, each with a small cache of verified replacements.
 *
 * A contact enters only once it has proven itself: it answered one of our requests (over a
 * connection whose handshake proved its ID, at the address the transport observed), or it is a
 * seed the transport reached. A node that merely sends us a request, or that an answer names,
 * is asked first. A full bucket keeps
 * its contacts while they answer (old contacts that stay up are the best predictor of
 * uptime); newcomers wait in the replacement cache, and the least recently seen contact is
 * pinged when it goes stale. A contact that fails DHT_FAILS_MAX requests in a row, or one
 * with a replacement waiting, leaves.
 *
 * Owns: the buckets. Must not: admit a contact that has not answered, or this node itself.
 */
#include "dht_int.h"

unsigned table_bucket(const struct dht *d, const uint8_t id[static DHT_ID_LEN])
{
    unsigned c = dht_common_bits(d->id, id);
    return c < DHT_BUCKETS ? c : DHT_BUCKETS - 1;
}

struct entry *table_find(struct dht *d, const uint8_t id[static DHT_ID_LEN])
{
    if (!memcmp(id, d->id, DHT_ID_LEN))
        return NULL;
    struct bucket *b = &d->b[table_bucket(d, id)];
    for (unsigned i = 0; i < b->n; i++)
        if (!memcmp(b->e[i].c.id, id, DHT_ID_LEN))
            return &b->e[i];
    return NULL;
}

static void repl_remove(struct bucket *b, unsigned i)
{
    memmove(&b->repl[i], &b->repl[i + 1], (b->nrepl - i - 1) * sizeof *b->repl);
    b->nrepl--;
}

static void repl_add(struct bucket *b, const struct dht_contact *c)
{
    for (unsigned i = 0; i < b->nrepl; i++)
        if (!memcmp(b->repl[i].id, c->id, DHT_ID_LEN)) {
            repl_remove(b, i); /* moves to the newest end */
            break;
        }
    if (!b->repl && !(b->repl = malloc(DHT_REPL_MAX * sizeof *b->repl)))
        return;
    if (b->nrepl == DHT_REPL_MAX)
        repl_remove(b, 0); /* the oldest goes */
    b->repl[b->nrepl++] = *c;
}

static bool entry_add(struct dht *d, struct bucket *b, const struct dht_contact *c, uint64_t now)
{
    if (!b->e && !(b->e = malloc(d->k * sizeof *b->e)))
        return false;
    b->e[b->n++] = (struct entry){.c = *c, .seen = now};
    d->ncontacts++;
    d->nbuckets = MAX(d->nbuckets, (unsigned)(b - d->b) + 1);
    return true;
}

/* Removes entry i of b, and puts the newest replacement in its place. */
static void entry_remove(struct dht *d, struct bucket *b, unsigned i, uint64_t now)
{
    b->e[i] = b->e[--b->n];
    d->ncontacts--;
    if (b->nrepl) {
        entry_add(d, b, &b->repl[b->nrepl - 1], now);
        b->nrepl--;
    }
    while (d->nbuckets && !d->b[d->nbuckets - 1].n)
        d->nbuckets--;
}

void table_verified(struct dht *d, const struct dht_contact *c, uint64_t now)
{
    if (!memcmp(c->id, d->id, DHT_ID_LEN) || c->addr.port == 0)
        return;
    struct bucket *b = &d->b[table_bucket(d, c->id)];
    for (unsigned i = 0; i < b->n; i++)
        if (!memcmp(b->e[i].c.id, c->id, DHT_ID_LEN)) {
            b->e[i].c.addr = c->addr; /* it answered there */
            b->e[i].seen = now;
            b->e[i].fails = 0;
            b->e[i].pinging = false;
            return;
        }
    if (b->n < d->k) {
        entry_add(d, b, c, now);
        return;
    }
    repl_add(b, c);
    /* a full bucket: is its least recently seen contact still there? */
    struct entry *lrs = &b->e[0];
    for (unsigned i = 1; i < b->n; i++)
        if (b->e[i].seen < lrs->seen)
            lrs = &b->e[i];
    if (now - lrs->seen > d->stale && !lrs->pinging &&
        dht_rpc_send(d, &lrs->c, DHT_PING, NULL, RPC_LIVENESS, NULL, false) >= 0)
        lrs->pinging = true;
}

void table_heard(struct dht *d, const uint8_t id[static DHT_ID_LEN], const struct dht_addr *addr,
                 uint64_t now)
{
    if (addr->port == 0 || !memcmp(id, d->id, DHT_ID_LEN))
        return;
    struct entry *e = table_find(d, id);
    if (e && dht_addr_equal(&e->c.addr, addr)) {
        e->seen = now;
        return;
    }
    /* new, or at a new address: it answers a ping over a connection we open there first */
    if (d->nverify >= DHT_VERIFY_MAX)
        return;
    struct bucket *b = &d->b[table_bucket(d, id)];
    if (!e && b->n >= d->k) {
        for (unsigned i = 0; i < b->nrepl; i++)
            if (!memcmp(b->repl[i].id, id, DHT_ID_LEN))
                return; /* already verified, waiting for room */
    }
    for (size_t i = 0; i < d->nrpc_slots; i++)
        if (d->rpc[i].used && d->rpc[i].purpose == RPC_VERIFY &&
            !memcmp(d->rpc[i].to.id, id, DHT_ID_LEN))
            return; /* already being verified */
    struct dht_contact c;
    memcpy(c.id, id, DHT_ID_LEN);
    c.addr = *addr;
    if (dht_rpc_send(d, &c, DHT_PING, NULL, RPC_VERIFY, NULL, true) >= 0)
        d->nverify++;
}

void table_failed(struct dht *d, const uint8_t id[static DHT_ID_LEN])
{
    struct entry *e = table_find(d, id);
    if (!e)
        return;
    struct bucket *b = &d->b[table_bucket(d, id)];
    e->pinging = false;
    if (++e->fails >= DHT_FAILS_MAX || b->nrepl)
        entry_remove(d, b, (unsigned)(e - b->e), d->now);
}

void table_forget(struct dht *d, const uint8_t id[static DHT_ID_LEN])
{
    struct bucket *b = &d->b[table_bucket(d, id)];
    struct entry *e = table_find(d, id);
    for (unsigned i = 0; i < b->nrepl;)
        if (!memcmp(b->repl[i].id, id, DHT_ID_LEN))
            repl_remove(b, i);
        else
            i++;
    if (e)
        entry_remove(d, b, (unsigned)(e - b->e), d->now);
}

void table_liveness(struct dht *d, uint64_t now)
{
    for (int sent = 0; sent < DHT_LIVENESS_PER_TICK; sent++) {
        struct entry *stalest = NULL;
        for (unsigned i = 0; i < d->nbuckets; i++) {
            struct bucket *b = &d->b[i];
            for (unsigned j = 0; j < b->n; j++) {
                struct entry *e = &b->e[j];
                if (!e->pinging && now - e->seen > d->stale &&
                    (!stalest || e->seen < stalest->seen))
                    stalest = e;
            }
        }
        if (!stalest || dht_rpc_send(d, &stalest->c, DHT_PING, NULL, RPC_LIVENESS, NULL, false) < 0)
            return;
        stalest->pinging = true;
    }
}

void table_refresh(struct dht *d, uint64_t now)
{
    /* buckets down to one past the deepest non-empty one */
    int deepest = (int)d->nbuckets - 1;
    if (deepest < 0)
        return;
    for (int i = 0; i <= deepest + 1 && i < DHT_BUCKETS; i++) {
        struct bucket *b = &d->b[i];
        if (now - b->touched < d->refresh)
            continue;
        /* a random ID in bucket i: our first i bits, bit i flipped, the rest random */
        uint8_t t[DHT_ID_LEN];
        dht_random_bytes(d, t, sizeof t);
        for (int bit = 0; bit <= i; bit++) {
            uint8_t mask = (uint8_t)(0x80 >> (bit % 8));
            uint8_t want = d->id[bit / 8] & mask;
            if (bit == i)
                want ^= mask;
            t[bit / 8] = (uint8_t)((t[bit / 8] & ~mask) | want);
        }
        b->touched = now;
        lookup_start(d, t, DHT_FIND_NODE, L_REFRESH, 0, NULL, NULL, now, NULL);
        return; /* one a tick */
    }
}

unsigned table_region_bits(const struct dht *d)
{
    if (d->ncontacts < d->k)
        return 0;
    struct dht_contact c[DHT_K_MAX];
    size_t n = dht_closest(d, d->id, c, d->k);
    return n == d->k ? dht_common_bits(d->id, c[n - 1].id) : 0;
}

void table_release(struct dht *d)
{
    for (unsigned i = 0; i < DHT_BUCKETS; i++) {
        free(d->b[i].e);
        free(d->b[i].repl);
    }
}

size_t dht_closest(const struct dht *d, const uint8_t target[static DHT_ID_LEN],
                   struct dht_contact *out, size_t cap)
{
    /* insertion into a sorted array of at most cap: the table holds at most a few thousand */
    size_t n = 0;
    for (unsigned i = 0; i < DHT_BUCKETS; i++) {
        const struct bucket *b = &d->b[i];
        for (unsigned j = 0; j < b->n; j++) {
            const struct dht_contact *c = &b->e[j].c;
            if (n == cap && dht_distance_cmp(target, c->id, out[n - 1].id) >= 0)
                continue;
            size_t pos = n < cap ? n : cap - 1;
            while (pos > 0 && dht_distance_cmp(target, c->id, out[pos - 1].id) < 0) {
                out[pos] = out[pos - 1];
                pos--;
            }
            out[pos] = *c;
            if (n < cap)
                n++;
        }
    }
    return n;
}
