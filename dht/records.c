/*
 * records.c - provider records this node holds for others: key -> (provider, address,
 * expiry). A record is refreshed by its provider's next ADD_PROVIDER and dropped when its TTL
 * runs out. Caps: DHT_RECORDS_PER_KEY per key (a full key replaces its record closest to
 * expiry), DHT_KEYS_MAX keys, DHT_RECORDS_PER_PEER records of one provider.
 *
 * Owns: the records and the per-provider counts. Must not: store a record a cap refuses, or
 * return an expired one.
 */
#include "dht_int.h"

static void count_add(struct dht *d, const uint8_t id[DHT_ID_LEN], int delta)
{
    size_t pos;
    struct peer_count *pc = idvec_find(&d->counts, id, &pos);
    if (!pc) {
        if (delta < 0 || !(pc = idvec_insert(&d->counts, pos, id)))
            return;
    }
    pc->n = (uint32_t)((int64_t)pc->n + delta);
    if (pc->n == 0)
        idvec_remove(&d->counts, pos);
}

static uint32_t count_get(struct dht *d, const uint8_t id[DHT_ID_LEN])
{
    struct peer_count *pc = idvec_find(&d->counts, id, NULL);
    return pc ? pc->n : 0;
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
                kr->r[i].c.addr = c->addr;
                kr->r[i].expires = expires;
                return true;
            }
    }
    if (count_get(d, c->id) >= DHT_RECORDS_PER_PEER) {
        d->st.records_refused++;
        return false;
    }
    if (!kr) {
        if (d->records.n >= DHT_KEYS_MAX) {
            d->st.records_refused++;
            return false;
        }
        struct rec *r = malloc(DHT_RECORDS_PER_KEY * sizeof *r);
        if (!r || !(kr = idvec_insert(&d->records, pos, key))) {
            free(r);
            return false;
        }
        kr->r = r;
    }
    struct rec *slot;
    if (kr->n < DHT_RECORDS_PER_KEY) {
        slot = &kr->r[kr->n++];
        d->nrecords++;
    } else { /* full: the record closest to expiry makes room */
        slot = &kr->r[0];
        for (uint32_t i = 1; i < kr->n; i++)
            if (kr->r[i].expires < slot->expires)
                slot = &kr->r[i];
        count_add(d, slot->c.id, -1);
    }
    slot->c = *c;
    slot->expires = expires;
    count_add(d, c->id, +1);
    return true;
}

unsigned records_get(struct dht *d, const uint8_t key[static DHT_ID_LEN], struct dht_contact *out,
                     unsigned cap, uint64_t now)
{
    struct key_recs *kr = idvec_find(&d->records, key, NULL);
    if (!kr)
        return 0;
    /* the freshest first: selection by expiry, at most cap of DHT_RECORDS_PER_KEY */
    bool taken[DHT_RECORDS_PER_KEY] = {0};
    unsigned n = 0;
    while (n < cap) {
        int best = -1;
        for (uint32_t i = 0; i < kr->n; i++)
            if (!taken[i] && kr->r[i].expires > now &&
                (best < 0 || kr->r[i].expires > kr->r[best].expires))
                best = (int)i;
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
                count_add(d, kr->r[i].c.id, -1);
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
