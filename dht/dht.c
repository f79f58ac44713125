/*
 * dht.c - the core: requests in and answers out, our requests and their timeouts, the
 * maintenance schedule (record expiry, liveness checks, bucket refresh, republishing), and what
 * this node announces.
 *
 * Announcing is batched by key region: the keys due at a tick are taken in order (they are
 * kept sorted), and the keys that share their first table_region_bits() bits share one lookup,
 * whose answering nodes then get every key of the region they are among the k closest to in
 * one ADD_PROVIDER. A region holds about k nodes, so a thousand layers cost a node about
 * (nodes / k) lookups a republish interval, not a thousand.
 *
 * Owns: the core's state, the outgoing queue. Must not: read a clock, call random(), or keep a
 * pointer into the rpc array across a call that may send (it grows).
 */
#include "dht_int.h"

#define SLOT_MASK ((1u << RPC_SLOT_BITS) - 1)

void dht_random_bytes(struct dht *d, void *p, size_t n)
{
    d->rng(d->rng_arg, p, n);
}

int dht_new(struct dht **out, const struct dht_cfg *cfg)
{
    unsigned k = cfg->k ? cfg->k : DHT_K;
    uint64_t ttl = cfg->ttl_ms ? cfg->ttl_ms : DHT_TTL_MS;
    uint64_t rep = cfg->republish_ms ? cfg->republish_ms : DHT_REPUBLISH_MS;
    if (!cfg->rng || !cfg->id || k > DHT_K_MAX || rep >= ttl)
        return AFSP_E_USAGE;
    struct dht *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    memcpy(d->id, cfg->id, DHT_ID_LEN);
    d->rng = cfg->rng;
    d->rng_arg = cfg->rng_arg;
    d->k = k;
    d->alpha = cfg->alpha ? cfg->alpha : DHT_ALPHA;
    d->ttl = ttl;
    d->republish = rep;
    d->refresh = cfg->refresh_ms ? cfg->refresh_ms : DHT_REFRESH_MS;
    d->stale = cfg->stale_ms ? cfg->stale_ms : DHT_STALE_MS;
    d->rpc_timeout = cfg->rpc_timeout_ms ? cfg->rpc_timeout_ms : DHT_RPC_TIMEOUT_MS;
    d->slow = cfg->slow_ms ? cfg->slow_ms : DHT_SLOW_MS;
    d->claim_lease = cfg->claim_lease_ms ? cfg->claim_lease_ms : DHT_CLAIM_LEASE_MS;
    d->claim_done = cfg->claim_done_ms ? cfg->claim_done_ms : DHT_CLAIM_DONE_MS;
    d->now = cfg->now_ms;
    d->next_maint = cfg->now_ms + DHT_TICK_MS;
    for (unsigned i = 0; i < DHT_BUCKETS; i++)
        d->b[i].touched = cfg->now_ms;
    d->out_tail = &d->out;
    d->providing.esz = sizeof(struct prov_key);
    d->records.esz = sizeof(struct key_recs);
    d->counts.esz = sizeof(struct peer_count);
    d->rates.esz = sizeof(struct rate);
    d->claims.esz = sizeof(struct claim_rec);
    *out = d;
    return 0;
}

void dht_free(struct dht *d)
{
    if (!d)
        return;
    while (d->lookups)
        lookup_end(d->lookups, -ECANCELED, d->now);
    claims_release(d);
    while (d->out) {
        struct outmsg *o = d->out;
        d->out = o->next;
        free(o);
    }
    table_release(d);
    records_release(d);
    idvec_release(&d->providing);
    idvec_release(&d->rates);
    free(d->rpc);
    free(d);
}

const uint8_t *dht_id(const struct dht *d)
{
    return d->id;
}

/* ---- sending ------------------------------------------------------------------------------- */

int dht_send(struct dht *d, const struct dht_contact *to, bool dial, const struct dht_msg *m)
{
    uint8_t buf[DHT_MSG_MAX];
    int len = dht_msg_encode(m, buf);
    if (len < 0)
        return len;
    struct outmsg *o = malloc(sizeof *o + (size_t)len);
    if (!o)
        return -ENOMEM;
    o->next = NULL;
    o->to = *to;
    o->dial = dial;
    o->len = (size_t)len;
    memcpy(o->msg, buf, (size_t)len);
    *d->out_tail = o;
    d->out_tail = &o->next;
    d->st.msgs_out++;
    return 0;
}

bool dht_output(struct dht *d, struct dht_out *out)
{
    struct outmsg *o = d->out;
    if (!o)
        return false;
    d->out = o->next;
    if (!d->out)
        d->out_tail = &d->out;
    out->to = o->to;
    out->dial = o->dial;
    out->len = o->len;
    memcpy(out->msg, o->msg, o->len);
    free(o);
    return true;
}

static int rpc_slot(struct dht *d)
{
    for (size_t i = 0; i < d->nrpc_slots; i++)
        if (!d->rpc[i].used)
            return (int)i;
    if (d->nrpc_slots == DHT_RPC_MAX)
        return -EBUSY;
    size_t n = d->nrpc_slots ? d->nrpc_slots * 2 : 16;
    struct rpc *r = realloc(d->rpc, n * sizeof *r);
    if (!r)
        return -ENOMEM;
    memset(r + d->nrpc_slots, 0, (n - d->nrpc_slots) * sizeof *r);
    d->rpc = r;
    int slot = (int)d->nrpc_slots;
    d->nrpc_slots = n;
    return slot;
}

int dht_rpc_send(struct dht *d, const struct dht_contact *c, uint8_t type,
                 const uint8_t target[DHT_ID_LEN], enum rpc_purpose purpose, struct dht_lookup *l,
                 bool dial)
{
    int slot = rpc_slot(d);
    if (slot < 0)
        return slot;
    struct rpc *r = &d->rpc[slot];
    r->gen = (r->gen + 1) & ((1u << (31 - RPC_SLOT_BITS)) - 1); /* tx fits in an int */
    r->used = true;
    r->slow = false;
    r->type = type;
    r->purpose = (uint8_t)purpose;
    r->to = *c;
    r->sent = d->now;
    r->l = l;
    d->nrpc++;
    uint32_t tx = r->gen << RPC_SLOT_BITS | (uint32_t)slot;
    r->cl = NULL;
    if (type != DHT_ADD_PROVIDER && type != DHT_CLAIM) { /* its caller sends those */
        struct dht_msg m = {.type = type, .tx = tx};
        if (target)
            memcpy(m.target, target, DHT_ID_LEN);
        if (dht_send(d, c, dial, &m) < 0) {
            r->used = false;
            d->nrpc--;
            return -ENOMEM;
        }
    }
    return (int)tx;
}

/* Ends rpc slot i: answered (m not NULL) or failed. */
static void rpc_end(struct dht *d, size_t i, const struct dht_msg *m, uint64_t now)
{
    struct rpc r = d->rpc[i];
    d->rpc[i].used = false;
    d->rpc[i].l = NULL;
    d->rpc[i].cl = NULL;
    d->nrpc--;
    if (r.purpose == RPC_VERIFY)
        d->nverify--;
    if (m)
        table_verified(d, &r.to, now);
    else
        table_failed(d, r.to.id);
    if (r.l) {
        if (m)
            lookup_reply(r.l, &r.to, m, now);
        else
            lookup_failed(r.l, r.to.id, now);
    }
    if (r.cl)
        claim_reply(r.cl, &r.to, m, now);
}

void dht_forget(struct dht *d, const uint8_t id[static DHT_ID_LEN])
{
    table_forget(d, id);
    records_forget(d, id);
}

void dht_unreachable(struct dht *d, const uint8_t id[static DHT_ID_LEN], uint64_t now)
{
    d->now = now;
    for (size_t i = 0; i < d->nrpc_slots; i++)
        if (d->rpc[i].used && !memcmp(d->rpc[i].to.id, id, DHT_ID_LEN)) {
            d->st.timeouts++;
            rpc_end(d, i, NULL, now);
        }
}

/* ---- answering ----------------------------------------------------------------------------- */

/* A token bucket per peer: DHT_REQ_PER_S, bursts of DHT_REQ_BURST. */
static bool rate_ok(struct dht *d, const uint8_t id[DHT_ID_LEN], uint64_t now)
{
    size_t pos;
    struct rate *r = idvec_find(&d->rates, id, &pos);
    if (!r) {
        if (d->rates.n >= DHT_RATE_PEERS_MAX || !(r = idvec_insert(&d->rates, pos, id)))
            return false;
        r->tokens = DHT_REQ_BURST;
        r->t = now;
    }
    return tokens_take(&r->tokens, &r->t, now, DHT_REQ_PER_S, DHT_REQ_BURST);
}

/* The k closest contacts to target but the requester. */
static unsigned closest_but(struct dht *d, const uint8_t target[DHT_ID_LEN],
                            const uint8_t except[DHT_ID_LEN], struct dht_contact *out)
{
    struct dht_contact c[DHT_K_MAX + 1];
    size_t n = dht_closest(d, target, c, d->k + 1);
    unsigned o = 0;
    for (size_t i = 0; i < n && o < d->k; i++)
        if (memcmp(c[i].id, except, DHT_ID_LEN))
            out[o++] = c[i];
    return o;
}

static void answer(struct dht *d, const struct dht_contact *from, const struct dht_msg *m,
                   uint64_t now)
{
    struct dht_msg a = {.tx = m->tx};
    switch (m->type) {
    case DHT_PING:
        a.type = DHT_PONG;
        break;
    case DHT_FIND_NODE:
        a.type = DHT_NODES;
        a.nnodes = closest_but(d, m->target, from->id, a.nodes);
        break;
    case DHT_GET_PROVIDERS:
        a.type = DHT_PROVIDERS;
        a.nnodes = closest_but(d, m->target, from->id, a.nodes);
        /* this node itself: the asker has the address it reached us at */
        a.self = dht_providing(d, m->target);
        a.nproviders = records_get(d, m->target, a.providers, d->k, now);
        break;
    case DHT_ADD_PROVIDER:
        a.type = DHT_STORED;
        for (unsigned i = 0; i < m->nkeys; i++)
            a.accepted += from->addr.port && records_add(d, m->keys + i * DHT_ID_LEN, from, now);
        break;
    case DHT_CLAIM:
        claims_answer(d, from, m, &a, now);
        break;
    default:
        return;
    }
    dht_send(d, from, false, &a);
}

static bool answers(uint8_t req, uint8_t ans)
{
    return (req == DHT_PING && ans == DHT_PONG) || (req == DHT_FIND_NODE && ans == DHT_NODES) ||
           (req == DHT_GET_PROVIDERS && ans == DHT_PROVIDERS) ||
           (req == DHT_ADD_PROVIDER && ans == DHT_STORED) ||
           (req == DHT_CLAIM && ans == DHT_CLAIMED);
}

int dht_input(struct dht *d, const uint8_t from[static DHT_ID_LEN], const struct dht_addr *addr,
              const uint8_t *msg, size_t n, uint64_t now)
{
    struct dht_msg m;
    d->now = now;
    if (dht_msg_parse(msg, n, &m) < 0)
        return AFSP_E_FORMAT;
    if (!memcmp(from, d->id, DHT_ID_LEN))
        return 0;
    d->st.msgs_in++;
    struct dht_contact c;
    memcpy(c.id, from, DHT_ID_LEN);
    c.addr = *addr;
    if (m.type < 0x80) {
        if (!rate_ok(d, from, now)) {
            d->st.refused++;
            return -EBUSY;
        }
        d->st.requests_in++;
        table_heard(d, from, addr, now);
        answer(d, &c, &m, now);
        return 0;
    }
    size_t slot = m.tx & SLOT_MASK;
    if (slot >= d->nrpc_slots)
        return 0;
    struct rpc *r = &d->rpc[slot];
    if (!r->used || (r->gen << RPC_SLOT_BITS | slot) != m.tx || memcmp(r->to.id, from, DHT_ID_LEN))
        return 0; /* late, or not ours: a slow answer after its timeout, say */
    if (!answers(r->type, (uint8_t)m.type)) {
        rpc_end(d, slot, NULL, now);
        return AFSP_E_FORMAT;
    }
    rpc_end(d, slot, &m, now);
    return 0;
}

/* ---- the schedule -------------------------------------------------------------------------- */

uint64_t dht_deadline(const struct dht *d)
{
    uint64_t t = d->next_maint;
    if (d->out)
        return d->now;
    for (size_t i = 0; i < d->nrpc_slots; i++) {
        const struct rpc *r = &d->rpc[i];
        if (!r->used)
            continue;
        uint64_t due = r->sent + (r->slow || !r->l ? d->rpc_timeout : d->slow);
        if (due < t)
            t = due;
    }
    return t;
}

/* Announces the keys that are due: one lookup per region of keys (see the top of the file). */
static void announce_due(struct dht *d, uint64_t now)
{
    unsigned bits = table_region_bits(d);
    size_t i = 0;
    while (i < d->providing.n) {
        struct prov_key *pk = idvec_at(&d->providing, i);
        if (pk->due > now) {
            i++;
            continue;
        }
        /* the region: the due keys from here sharing pk's first `bits` bits */
        size_t j = i, nkeys = 0;
        uint8_t first[DHT_ID_LEN];
        memcpy(first, pk->key, DHT_ID_LEN);
        while (j < d->providing.n) {
            struct prov_key *q = idvec_at(&d->providing, j);
            if (dht_common_bits(first, q->key) < bits)
                break;
            nkeys += q->due <= now;
            j++;
        }
        uint8_t(*keys)[DHT_ID_LEN] = malloc(nkeys * DHT_ID_LEN);
        if (!keys)
            return;
        size_t o = 0;
        for (size_t x = i; x < j; x++) {
            struct prov_key *q = idvec_at(&d->providing, x);
            if (q->due <= now)
                memcpy(keys[o++], q->key, DHT_ID_LEN);
        }
        int rc = lookup_announce(d, first, bits, keys, nkeys, now);
        if (rc < 0) {
            /* nobody to tell yet: try again in a few ticks, all the regions */
            for (size_t x = 0; x < d->providing.n; x++) {
                struct prov_key *q = idvec_at(&d->providing, x);
                if (q->due <= now)
                    q->due = now + 5 * DHT_TICK_MS;
            }
            return;
        }
        for (size_t x = i; x < j; x++) {
            struct prov_key *q = idvec_at(&d->providing, x);
            if (q->due <= now)
                q->due = now + d->republish;
        }
        i = j;
    }
}

static void rates_prune(struct dht *d, uint64_t now)
{
    /* a peer idle long enough to have a full bucket needs no entry */
    uint64_t full_ms = (uint64_t)DHT_REQ_BURST * 1000 / DHT_REQ_PER_S;
    for (size_t i = 0; i < d->rates.n;) {
        struct rate *r = idvec_at(&d->rates, i);
        if (now - r->t >= full_ms)
            idvec_remove(&d->rates, i);
        else
            i++;
    }
}

static void maintain(struct dht *d, uint64_t now)
{
    records_expire(d, now);
    claims_expire(d, now);
    rates_prune(d, now);
    table_liveness(d, now);
    table_refresh(d, now);
    announce_due(d, now);
}

void dht_tick(struct dht *d, uint64_t now)
{
    d->now = now;
    for (size_t i = 0; i < d->nrpc_slots; i++) {
        struct rpc *r = &d->rpc[i];
        if (!r->used)
            continue;
        if (now >= r->sent + d->rpc_timeout) {
            d->st.timeouts++;
            rpc_end(d, i, NULL, now);
        } else if (!r->slow && r->l && now >= r->sent + d->slow) {
            r->slow = true;
            lookup_slow(r->l, r->to.id, now);
        }
    }
    if (now >= d->next_maint) {
        d->next_maint = now + DHT_TICK_MS;
        maintain(d, now);
    }
}

/* ---- joining and providing ----------------------------------------------------------------- */

int dht_add_contact(struct dht *d, const struct dht_contact *c, uint64_t now)
{
    d->now = now;
    if (!memcmp(c->id, d->id, DHT_ID_LEN))
        return -EINVAL;
    bool empty = d->ncontacts == 0;
    table_verified(d, c, now);
    if (empty && d->ncontacts)
        dht_join(d, now);
    return 0;
}

void dht_join(struct dht *d, uint64_t now)
{
    d->now = now;
    lookup_start(d, d->id, DHT_FIND_NODE, L_JOIN, 0, NULL, NULL, now, NULL);
}

int dht_provide(struct dht *d, const uint8_t key[static DHT_ID_LEN], uint64_t now)
{
    size_t pos;
    d->now = now;
    struct prov_key *pk = idvec_find(&d->providing, key, &pos);
    if (pk)
        return 0;
    if (!(pk = idvec_insert(&d->providing, pos, key)))
        return -ENOMEM;
    pk->due = now; /* at the next tick, with the others due then */
    if (d->next_maint > now + DHT_TICK_MS)
        d->next_maint = now + DHT_TICK_MS;
    return 0;
}

void dht_withdraw(struct dht *d, const uint8_t key[static DHT_ID_LEN])
{
    size_t pos;
    if (idvec_find(&d->providing, key, &pos))
        idvec_remove(&d->providing, pos);
}

bool dht_providing(const struct dht *d, const uint8_t key[static DHT_ID_LEN])
{
    return idvec_find(&d->providing, key, NULL) != NULL;
}

const uint8_t *dht_provided_key(const struct dht *d, size_t i)
{
    return i < d->providing.n ? idvec_at(&d->providing, i) : NULL;
}

/* ---- inspection ---------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

void dht_stats_get(const struct dht *d, struct dht_stats *st)
{
    *st = d->st;
    st->contacts = d->ncontacts;
    st->buckets = st->replacements = 0;
    for (unsigned i = 0; i < DHT_BUCKETS; i++) {
        st->buckets += d->b[i].n > 0;
        st->replacements += d->b[i].nrepl;
    }
    st->keys = d->records.n;
    st->records = d->nrecords;
    st->providing = d->providing.n;
    st->lookups_running = d->nlookups;
    size_t n = d->nlat < DHT_LAT_RING ? d->nlat : DHT_LAT_RING;
    if (n) {
        uint32_t lat[DHT_LAT_RING], hops[DHT_LAT_RING];
        memcpy(lat, d->lat, n * sizeof *lat);
        memcpy(hops, d->hops, n * sizeof *hops);
        qsort(lat, n, sizeof *lat, cmp_u32);
        qsort(hops, n, sizeof *hops, cmp_u32);
        st->lookup_ms_p50 = lat[n / 2];
        st->lookup_ms_p99 = lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
        st->hops_p50 = hops[n / 2];
        st->hops_max = hops[n - 1];
    }
}
