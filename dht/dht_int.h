/*
 * dht_int.h - what the files of dht/ share: the core's state and the functions one file calls
 * in another. Nothing outside dht/ includes it.
 */
#ifndef AFSP_DHT_INT_H
#define AFSP_DHT_INT_H

#include "dht.h"

#include "../util/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DHT_TICK_MS 1000 /* the maintenance schedule's step */
#define DHT_BUCKETS 256
#define DHT_REPL_MAX 8    /* verified contacts waiting for room in a full bucket */
#define DHT_VERIFY_MAX 64 /* verifications of new contacts in flight */
#define DHT_CANDS_MAX 96  /* candidates a lookup keeps */
#define DHT_FAILS_MAX 2   /* failed requests in a row before a contact leaves the table */
#define DHT_LIVENESS_PER_TICK 2
#define DHT_RATE_PEERS_MAX 4096 /* peers whose request rate is tracked */
#define DHT_LAT_RING 256

/* ---- idvec.c: a vector of records sorted by a 32-byte key at their start -------------------- */

struct idvec {
    uint8_t *v;
    size_t n, cap, esz; /* esz: element size, the key included */
};
/* The element with key, or NULL; *pos (may be NULL) is where it is or would go. */
void *idvec_find(const struct idvec *iv, const uint8_t key[static DHT_ID_LEN], size_t *pos);
/* A new zeroed element with key at pos (from idvec_find); NULL when out of memory. Pointers into
 * the vector are invalid after it. */
void *idvec_insert(struct idvec *iv, size_t pos, const uint8_t key[static DHT_ID_LEN]);
void idvec_remove(struct idvec *iv, size_t pos);
static inline void *idvec_at(const struct idvec *iv, size_t i)
{
    return iv->v + i * iv->esz;
}
void idvec_release(struct idvec *iv);

/* ---- the core's state ------------------------------------------------------------------------ */

struct entry {
    struct dht_contact c;
    uint64_t seen; /* last answer, or request, from it */
    uint8_t fails;
    bool pinging;
};

struct bucket {
    struct entry *e; /* k slots, allocated when the bucket gets its first contact */
    struct dht_contact *repl;
    uint8_t n, nrepl;
    uint64_t touched; /* a lookup last went through it */
};

enum rpc_purpose { RPC_LOOKUP, RPC_VERIFY, RPC_LIVENESS, RPC_STORE, RPC_CLAIM };

struct rpc {
    uint32_t gen; /* tx = gen << 10 | slot */
    bool used, slow;
    uint8_t type, purpose;
    struct dht_contact to;
    uint64_t sent;
    struct dht_lookup *l;
    struct dht_claim *cl; /* RPC_CLAIM */
};
#define RPC_SLOT_BITS 10

enum cand_state { C_NEW, C_WAIT, C_SLOW, C_DONE, C_FAIL };

struct cand {
    struct dht_contact c;
    uint8_t state, hop;
    uint32_t tx;
};

enum lookup_purpose { L_USER, L_JOIN, L_REFRESH, L_ANNOUNCE };

struct dht_lookup {
    struct dht *d;
    struct dht_lookup *prev, *next;
    uint8_t target[DHT_ID_LEN];
    uint8_t type; /* DHT_FIND_NODE or DHT_GET_PROVIDERS */
    uint8_t purpose;
    unsigned want;
    struct cand cand[DHT_CANDS_MAX]; /* closest to target first */
    unsigned ncand, waiting;         /* waiting: C_WAIT, the requests holding a slot */
    struct dht_contact prov[DHT_K_MAX];
    unsigned nprov, msgs, hops;
    uint64_t t0;
    dht_lookup_cb cb;
    void *arg;
    uint8_t (*keys)[DHT_ID_LEN]; /* L_ANNOUNCE: the keys of the region, owned */
    size_t nkeys;
    unsigned region_bits; /* L_ANNOUNCE: every candidate sharing this many bits is asked */
};

struct outmsg {
    struct outmsg *next;
    struct dht_contact to;
    bool dial;
    size_t len;
    uint8_t msg[];
};

/* providing: what this node announces */
struct prov_key {
    uint8_t key[DHT_ID_LEN];
    uint64_t due; /* the next announcement */
};

/* records: provider records held for others */
struct rec {
    struct dht_contact c;
    uint64_t expires;
};
struct key_recs {
    uint8_t key[DHT_ID_LEN];
    uint32_t n, cap;
    struct rec *r; /* cap slots, doubled as records come, up to DHT_RECORDS_PER_KEY (most keys
                      have one provider: 32 slots for each took 20 MB at 10,000 keys) */
};
/* claims: fetch claims held for others (claims.c) */
struct claim_rec {
    uint8_t key[DHT_ID_LEN];
    struct dht_contact holder; /* holder.id == d->id: this node itself */
    uint64_t expires;
    bool done;
    /* The next holder if the holder's lease runs out: the first other asker, while it asks
     * again within a lease (docs/swarm.md, "The standby"). */
    struct dht_contact standby;
    uint64_t standby_expires; /* 0: none */
    /* The last node told to read a download (RELAY), while it reads (docs/swarm.md, "The
     * relay chain"): the next whole pull reads its download. */
    struct dht_contact tail;
    uint64_t tail_expires; /* 0: none */
};
struct peer_count {
    uint8_t id[DHT_ID_LEN];
    uint32_t n;
};
struct rate {
    uint8_t id[DHT_ID_LEN];
    double tokens;
    uint64_t t;
};

struct dht {
    uint8_t id[DHT_ID_LEN];
    rng_fn rng;
    void *rng_arg;
    unsigned k, alpha;
    uint64_t ttl, republish, refresh, stale, rpc_timeout, slow, claim_lease, claim_done;
    uint64_t now, next_maint;

    struct bucket b[DHT_BUCKETS];
    size_t ncontacts;
    unsigned nbuckets; /* one past the deepest bucket that holds a contact (deeper ones are empty
                          by nature: maintenance looks no further) */

    struct rpc *rpc;
    size_t nrpc_slots, nrpc, nverify;

    struct dht_lookup *lookups;
    size_t nlookups;

    struct outmsg *out, **out_tail;

    struct idvec providing; /* struct prov_key */
    struct idvec records;   /* struct key_recs */
    struct idvec counts;    /* struct peer_count */
    struct idvec rates;     /* struct rate */
    size_t nrecords;
    struct idvec claims;        /* struct claim_rec */
    struct dht_claim *claiming; /* our claim requests */
    size_t nclaiming;

    struct dht_stats st;
    uint32_t lat[DHT_LAT_RING], hops[DHT_LAT_RING];
    size_t nlat;
};

/* dht.c */
/* Sends request type to c; returns the tx, or a negative code (no slot). */
int dht_rpc_send(struct dht *d, const struct dht_contact *c, uint8_t type,
                 const uint8_t target[DHT_ID_LEN], enum rpc_purpose purpose, struct dht_lookup *l,
                 bool dial);
int dht_send(struct dht *d, const struct dht_contact *to, bool dial, const struct dht_msg *m);
void dht_random_bytes(struct dht *d, void *p, size_t n);

/* table.c */
struct entry *table_find(struct dht *d, const uint8_t id[static DHT_ID_LEN]);
/* A contact that proved itself (answered us, or a seed the transport reached). */
void table_verified(struct dht *d, const struct dht_contact *c, uint64_t now);
/* A request from a node: refreshes it, or starts verifying it. */
void table_heard(struct dht *d, const uint8_t id[static DHT_ID_LEN], const struct dht_addr *addr,
                 uint64_t now);
/* A request to id failed. */
void table_failed(struct dht *d, const uint8_t id[static DHT_ID_LEN]);
/* Drops contact id from the table and its replacement cache (dht_forget). */
void table_forget(struct dht *d, const uint8_t id[static DHT_ID_LEN]);
void table_liveness(struct dht *d, uint64_t now);
void table_refresh(struct dht *d, uint64_t now);
void table_release(struct dht *d);
/* The bucket of id: how many leading bits it shares with this node's ID (id != d->id). */
unsigned table_bucket(const struct dht *d, const uint8_t id[static DHT_ID_LEN]);
/* How many leading bits this node shares with its k-th closest contact (0 with fewer): the
 * depth at which a key region holds about k nodes. */
unsigned table_region_bits(const struct dht *d);

/* lookup.c */
int lookup_start(struct dht *d, const uint8_t target[static DHT_ID_LEN], uint8_t type,
                 enum lookup_purpose purpose, unsigned want, dht_lookup_cb cb, void *arg,
                 uint64_t now, struct dht_lookup **out);
/* An announcement of keys (owned by the lookup from now on, even on failure) that share
 * their first bits bits with target. */
int lookup_announce(struct dht *d, const uint8_t target[static DHT_ID_LEN], unsigned bits,
                    uint8_t (*keys)[DHT_ID_LEN], size_t nkeys, uint64_t now);
void lookup_reply(struct dht_lookup *l, const struct dht_contact *from, const struct dht_msg *m,
                  uint64_t now);
/* Request to c failed (dead), or is slow (stops holding a slot). */
void lookup_failed(struct dht_lookup *l, const uint8_t id[static DHT_ID_LEN], uint64_t now);
void lookup_slow(struct dht_lookup *l, const uint8_t id[static DHT_ID_LEN], uint64_t now);
void lookup_end(struct dht_lookup *l, int rc, uint64_t now);

/* claims.c */
/* The answer to CLAIM m from `from` (a's type, state, lease and holder). */
void claims_answer(struct dht *d, const struct dht_contact *from, const struct dht_msg *m,
                   struct dht_msg *a, uint64_t now);
/* rpc of claim c ended: answered (m) or failed (NULL). */
void claim_reply(struct dht_claim *c, const struct dht_contact *from, const struct dht_msg *m,
                 uint64_t now);
void claims_expire(struct dht *d, uint64_t now);
/* dht_free: every claim request ends with -ECANCELED, the claims held are freed. */
void claims_release(struct dht *d);

/* records.c */
bool records_add(struct dht *d, const uint8_t key[static DHT_ID_LEN], const struct dht_contact *c,
                 uint64_t now);
/* Up to cap live providers of key, freshest first. */
unsigned records_get(struct dht *d, const uint8_t key[static DHT_ID_LEN], struct dht_contact *out,
                     unsigned cap, uint64_t now);
void records_expire(struct dht *d, uint64_t now);
/* Drops every record provider id holds (dht_forget). */
void records_forget(struct dht *d, const uint8_t id[static DHT_ID_LEN]);
void records_release(struct dht *d);

#endif
