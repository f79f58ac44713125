/*
 * records.c - provider records this node holds for others: key -> (provider, address,
 * expiry). A record is refreshed by its provider's next ADD_PROVIDER and dropped when its TTL
 * runs out. Caps: DHT_RECORDS_PER_KEY per key, DHT_KEYS_MAX keys, DHT_RECORDS_PER_SOURCE records
 * from one source.
 *
 * A source is where records come from: an IPv4 address, or an IPv6 /64 (one host can have a
 * whole /64). Node IDs cost nothing to make, so caps count sources, not IDs: four self-made IDs
 * from one address filled the key table when the cap was per ID, and 32 pushed an honest
 * provider out of a key. A full key makes room from the source that holds the most of its
 * records (the record of that source closest to expiry); between sources that hold one each,
 * the record closest to expiry goes.
 *
 * Owns: the records and the per-source counts. Must not: store a record a cap refuses, or
 * return an expired one.
 */
#include "dht_int.h"

/* The source of an address, as a key of d->counts. */
static void source_of(const struct dht_addr *a, uint8_t out[static DHT_ID_LEN])
{
    memset(out, 0, DHT_ID_LEN);
    out[0] = a->family;
    memcpy(out + 1, a->ip, a->family == 4 ? 4 : 8);
}

static bool same_source(const struct dht_addr *a, const struct dht_addr *b)
{
    return a->family == b->family && !memcmp(a->ip, b->ip, a->family == 4 ? 4 : 8);
}

static void count_add(struct dht *d, const struct dht_addr *a, int delta)
{
    size_t pos;
    uint8_t src[DHT_ID_LEN];
    source_of(a, src);
    struct peer_count *pc = idvec_find(&d->counts, src, &pos);
    if (!pc) {
        if (delta < 0 || !(pc = idvec_insert(&d->counts, pos, src)))
            return;
    }
    pc->n = (uint32_t)((int64_t)pc->n + delta);
    if (pc->n == 0)
        idvec_remove(&d->counts, pos);
}

static uint32_t count_get(struct dht *d, const struct dht_addr *a)
{
    uint8_t src[DHT_ID_LEN];
    source_of(a, src);
    struct peer_count *pc = idvec_find(&d->counts, src, NULL);
    return pc ? pc->n : 0;
}

/* The record of a full key that makes room for one from c: of the source holding the most of
 * the key's records, counting c's own source one more, the record closest to expiry. */
static struct rec *room_in_key(struct key_recs *kr, const struct dht_contact *c)
{
    uint32_t most = 0;
    struct rec *victim = NULL;
    for (uint32_t i = 0; i < kr->n; i++) {
        uint32_t same = same_source(&kr->r[i].c.addr, &c->addr);
        for (uint32_t j = 0; j < kr->n; j++)
            same += same_source(&kr->r[i].c.addr, &kr->r[j].c.addr);
        if (same > most || (same == most && kr->r[i].expires < victim->expires)) {
            most = same;
            victim = &kr->r[i];
        }
    }
    return victim;
}

bool records_add(struct dht *d, const uint8_t key[static DHT_ID_LEN], const struct dht_contact *c,
                 uint64_t now)
{
    size_t pos;
    uint64_t expires = now + d->ttl;
    struct key_recs *kr = idvec_find(&d->records, key, &pos);
    if (kr) {
        for (uint32_t i = 0; i < kr->n; i++)
            if (!memcmp(kr->r[i].c.id, c->id, DHT_ID_LEN)) {
                if (!same_source(&kr->r[i].c.addr, &c->addr)) {
                    count_add(d, &kr->r[i].c.addr, -1);
                    count_add(d, &c->addr, +1);
                }
                kr->r[i].c.addr = c->addr;
                kr->r[i].expires = expires;
                return true;
            }
    }
    if (count_get(d, &c->addr) >= DHT_RECORDS_PER_SOURCE) {
        d->st.records_refused++;
        return false;
    }
    if (!kr) {
        if (d->records.n >= DHT_KEYS_MAX) {
            d->st.records_refused++;
            return false;
        }
        struct rec *r = malloc(sizeof *r);
        if (!r || !(kr = idvec_insert(&d->records, pos, key))) {
            free(r);
            return false;
        }
        kr->r = r;
        kr->cap = 1;
    }
    if (kr->n == kr->cap && kr->cap < DHT_RECORDS_PER_KEY) {
        uint32_t cap = MIN(2 * kr->cap, (uint32_t)DHT_RECORDS_PER_KEY);
        struct rec *r = realloc(kr->r, cap * sizeof *r);
        if (!r)
            return false;
        kr->r = r;
        kr->cap = cap;
    }
    struct rec *slot;
    if (kr->n < kr->cap) {
        slot = &kr->r[kr->n++];
        d->nrecords++;
    } else {
        slot = room_in_key(kr, c);
        count_add(d, &slot->c.addr, -1);
    }
    slot->c = *c;
    slot->expires = expires;
    count_add(d, &c->addr, +1);
    return true;
}

unsigned records_get(struct dht *d, const uint8_t key[static DHT_ID_LEN], struct dht_contact *out,
                     unsigned cap, uint64_t now)
{
    struct key_recs *kr = idvec_find(&d->records, key, NULL);
    if (!kr)
        return 0;
    /* the freshest first, by selection, at most cap of DHT_RECORDS_PER_KEY; but first the
     * freshest of each source, so that many IDs from one address fill no answer */
    bool taken[DHT_RECORDS_PER_KEY] = {0};
    unsigned n = 0;
    for (int pass = 0; pass < 2; pass++)
        while (n < cap) {
            int best = -1;
            for (uint32_t i = 0; i < kr->n; i++) {
                bool seen = false;
                for (unsigned j = 0; pass == 0 && j < n && !seen; j++)
                    seen = same_source(&out[j].addr, &kr->r[i].c.addr);
                if (!taken[i] && !seen && kr->r[i].expires > now &&
                    (best < 0 || kr->r[i].expires > kr->r[best].expires))
                    best = (int)i;
            }
            if (best < 0)
                break;
            taken[best] = true;
            out[n++] = kr->r[best].c;
        }
    return n;
}

void records_expire(struct dht *d, uint64_t now)
{
    for (size_t k = 0; k < d->records.n;) {
        struct key_recs *kr = idvec_at(&d->records, k);
        for (uint32_t i = 0; i < kr->n;) {
            if (kr->r[i].expires <= now) {
                count_add(d, &kr->r[i].c.addr, -1);
                kr = idvec_at(&d->records, k); /* count_add does not move records, but be plain */
                kr->r[i] = kr->r[--kr->n];
                d->nrecords--;
            } else {
                i++;
            }
        }
        if (kr->n == 0) {
            free(kr->r);
            idvec_remove(&d->records, k);
        } else {
            k++;
        }
    }
}

void records_forget(struct dht *d, const uint8_t id[static DHT_ID_LEN])
{
    for (size_t k = 0; k < d->records.n;) {
        struct key_recs *kr = idvec_at(&d->records, k);
        for (uint32_t i = 0; i < kr->n;) {
            if (!memcmp(kr->r[i].c.id, id, DHT_ID_LEN)) {
                count_add(d, &kr->r[i].c.addr, -1);
                kr = idvec_at(&d->records, k);
                kr->r[i] = kr->r[--kr->n];
                d->nrecords--;
            } else {
                i++;
            }
        }
        if (kr->n == 0) {
            free(kr->r);
            idvec_remove(&d->records, k);
        } else {
            k++;
        }
    }
}

void records_release(struct dht *d)
{
    for (size_t k = 0; k < d->records.n; k++)
        free(((struct key_recs *)idvec_at(&d->records, k))->r);
    idvec_release(&d->records);
    idvec_release(&d->counts);
    d->nrecords = 0;
}

unsigned dht_records_held(const struct dht *d, const uint8_t key[static DHT_ID_LEN])
{
    const struct key_recs *kr = idvec_find(&d->records, key, NULL);
    return kr ? kr->n : 0;
}
