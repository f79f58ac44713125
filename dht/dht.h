/*
 * dht.h - Kademlia over 256-bit IDs: the routing table, iterative lookups, provider records.
 * Node IDs (SHA-256 of a node's static key) and layer digests share the space.
 *
 * Sans-IO, like p2p/: messages and the time go in (dht_input, dht_tick), messages come out
 * (dht_output) with the next deadline (dht_deadline). A core never opens a socket, reads a clock
 * or calls random(): time is a parameter (milliseconds, any epoch, never decreasing) and
 * randomness comes from the caller's function. There are no globals, so hundreds of cores run
 * in one process (tests/unit/test_dht.c, sim/). The transport is the caller's: it delivers
 * every message with the sender's ID proven (the p2p handshake) and the address the sender is
 * reachable at as this node sees it. docs/protocol.md ("DHT") is the wire format and
 * docs/dht.md the design and its numbers.
 *
 *   msg.c      the messages: parse and encode, canonical and bounded
 *   table.c    the routing table: k-buckets, replacement caches, verification of new contacts
 *   lookup.c   iterative lookups (FIND_NODE, GET_PROVIDERS) with alpha requests in flight
 *   records.c  provider records held for others: TTL, caps per key, per provider, in all
 *   dht.c      the core: requests and answers, the schedule, announcing what this node holds
 */
#ifndef AFSP_DHT_H
#define AFSP_DHT_H

#include "../util/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DHT_ID_LEN 32
#define DHT_K 20          /* bucket size, and how many closest nodes a lookup finds */
#define DHT_K_MAX 32      /* the largest k a core may be given */
#define DHT_ALPHA 3       /* requests a lookup keeps in flight */
#define DHT_BATCH_MAX 256 /* keys in one ADD_PROVIDER */
/* The largest message: an ADD_PROVIDER of DHT_BATCH_MAX keys. */
#define DHT_MSG_MAX (8 + 2 + DHT_BATCH_MAX * DHT_ID_LEN)

/* Defaults (milliseconds); docs/dht.md says why. */
#define DHT_TTL_MS (10 * 60 * 1000)      /* a provider record lives this long ... */
#define DHT_REPUBLISH_MS (4 * 60 * 1000) /* ... and is sent again this often */
#define DHT_REFRESH_MS (10 * 60 * 1000)  /* a bucket no lookup went through is refreshed */
#define DHT_STALE_MS (60 * 1000)         /* a contact not heard from this long is pinged */
#define DHT_RPC_TIMEOUT_MS 2000          /* a request with no answer fails ... */
#define DHT_SLOW_MS 300                  /* ... and stops holding a lookup's slot after this */

/* Caps: what one peer, or all of them, can make a node hold. */
#define DHT_RECORDS_PER_KEY 32
#define DHT_KEYS_MAX 65536            /* keys with provider records */
#define DHT_RECORDS_PER_SOURCE 16384  /* records from one address (IPv6: /64), any IDs */
#define DHT_REQ_PER_S 200             /* requests one peer may send per second ... */
#define DHT_REQ_BURST 1000            /* ... after a burst of this many */
#define DHT_RPC_MAX 1024              /* our requests waiting for answers */
#define DHT_LOOKUPS_MAX 256           /* lookups running at once */
#define DHT_CLAIMS_MAX 4096           /* fetch claims held for others (dht/claims.c) ... */
#define DHT_CLAIMS_PER_SOURCE 256     /* ... of them held by nodes at one address */
#define DHT_CLAIM_LEASE_MS 5000       /* a claim not renewed this long is free again */
#define DHT_CLAIM_TAIL_LEASES 3       /* the relay chain's last reader, while it asks within */
#define DHT_CLAIM_DONE_MS (60 * 1000) /* a claim done is remembered (its holder named) */
#define DHT_CLAIMING_MAX 256          /* our claim requests at once */

/* An address a node listens on: IPv4 (family 4, the first 4 bytes of ip) or IPv6 (family 6). */
struct dht_addr {
    uint8_t family;
    uint8_t ip[16];
    uint16_t port;
};

struct dht_contact {
    uint8_t id[DHT_ID_LEN];
    struct dht_addr addr;
};

struct dht_cfg {
    const uint8_t *id; /* DHT_ID_LEN bytes, copied */
    rng_fn rng;        /* required (util.h) */
    void *rng_arg;
    uint64_t now_ms;
    unsigned k, alpha; /* 0: DHT_K, DHT_ALPHA */
    /* 0: the defaults above */
    uint64_t ttl_ms, republish_ms, refresh_ms, stale_ms, rpc_timeout_ms, slow_ms;
    uint64_t claim_lease_ms, claim_done_ms;
};

struct dht;
struct dht_lookup;

/* Returns 0, AFSP_E_USAGE (no rng, k over DHT_K_MAX, republish not shorter than the TTL), or
 * -ENOMEM. */
int dht_new(struct dht **out, const struct dht_cfg *cfg);
/* Lookups still running end with -ECANCELED (their callbacks run), then d is freed. */
void dht_free(struct dht *d);

/* ---- the transport ------------------------------------------------------------------------- */

/* A message from node `from` (an ID the transport proved), reachable at addr as this node sees
 * it (the connection's IP, the port the peer says it listens on; port 0: not reachable, so
 * never put in the routing table or in a provider record). Returns 0, AFSP_E_FORMAT (the
 * message is malformed: the transport should end the connection), or -EBUSY (the peer sent
 * more requests than it may; the message was dropped). Callbacks of lookups may run. */
int dht_input(struct dht *d, const uint8_t from[static DHT_ID_LEN], const struct dht_addr *addr,
              const uint8_t *msg, size_t n, uint64_t now);

/* A message to send: over a connection to to.id if one is up (whichever end opened it: the
 * transport proves the peer's ID), else over one the transport opens to to.addr. dial: the
 * message verifies a contact that is not in the routing table yet (informational: the
 * answer, over a connection that proved the ID, is the verification). */
struct dht_out {
    struct dht_contact to;
    bool dial;
    size_t len;
    uint8_t msg[DHT_MSG_MAX];
};
/* Takes the next message to send into *out; false when there is none. Call after every
 * dht_input, dht_tick and API call until it returns false. */
bool dht_output(struct dht *d, struct dht_out *out);
/* The transport cannot reach node id (refused, unreachable, another ID answered at its
 * address): requests waiting on it fail now instead of at their timeout. */
void dht_unreachable(struct dht *d, const uint8_t id[static DHT_ID_LEN], uint64_t now);

/* When dht_tick must next run, and the tick: timeouts, expiry, liveness checks, bucket
 * refresh, republishing. */
uint64_t dht_deadline(const struct dht *d);
void dht_tick(struct dht *d, uint64_t now);

/* ---- joining ------------------------------------------------------------------------------- */

/* A node the transport reached itself at c->addr and whose ID it proved (a seed): enters the
 * routing table at once. Returns 0, or -EINVAL for this node's own ID. */
int dht_add_contact(struct dht *d, const struct dht_contact *c, uint64_t now);
/* Looks up this node's own ID (through the contacts known), which fills the routing table and
 * makes this node known to those closest to it. Done again whenever the table was empty and a
 * contact is added. */
void dht_join(struct dht *d, uint64_t now);

/* ---- lookups ------------------------------------------------------------------------------- */

struct dht_result {
    const struct dht_contact *providers; /* GET_PROVIDERS: providers found, freshest first */
    size_t nproviders;
    const struct dht_contact *closest; /* the closest nodes that answered, closest first */
    size_t nclosest;
    unsigned hops;     /* round trips on the longest chain of answers the lookup followed */
    unsigned messages; /* requests sent */
    uint64_t ms;       /* how long it took */
};
/* rc: 0, or -EHOSTUNREACH (no node answered), -ECANCELED (dht_free). r and its arrays are valid
 * during the call. The lookup is gone when it returns. */
typedef void (*dht_lookup_cb)(void *arg, int rc, const struct dht_result *r);

/* Finds the k nodes closest to target. *out (may be NULL) names the lookup for
 * dht_lookup_cancel until its callback runs. Returns 0 (cb will run, from a later dht_input or
 * dht_tick), -EHOSTUNREACH (no contact known), -EBUSY (DHT_LOOKUPS_MAX run), -ENOMEM. */
int dht_find_node(struct dht *d, const uint8_t target[static DHT_ID_LEN], dht_lookup_cb cb,
                  void *arg, uint64_t now, struct dht_lookup **out);
/* Finds providers of key: the lookup ends once it knows `want` of them (0: it goes on to the k
 * closest nodes and returns every provider they name). This node itself is never among them.
 * Returns as dht_find_node. */
int dht_find_providers(struct dht *d, const uint8_t key[static DHT_ID_LEN], unsigned want,
                       dht_lookup_cb cb, void *arg, uint64_t now, struct dht_lookup **out);
/* Ends a lookup without calling its callback. */
void dht_lookup_cancel(struct dht_lookup *l);

/* ---- what this node provides --------------------------------------------------------------- */

/* Announces that this node provides key: at the next tick (batched with every key due then,
 * one lookup per key region) and every republish interval after. Returns 0 or -ENOMEM. */
int dht_provide(struct dht *d, const uint8_t key[static DHT_ID_LEN], uint64_t now);
/* Stops announcing key: this node no longer names itself as its provider, at once; the records
 * others hold expire with their TTL. */
void dht_withdraw(struct dht *d, const uint8_t key[static DHT_ID_LEN]);
bool dht_providing(const struct dht *d, const uint8_t key[static DHT_ID_LEN]);
/* Forgets node id: its contact and every provider record it holds here (a node that lied). */
void dht_forget(struct dht *d, const uint8_t id[static DHT_ID_LEN]);
/* The i-th key this node provides (in key order), or NULL past the last; valid until the next
 * dht_provide or dht_withdraw. */
const uint8_t *dht_provided_key(const struct dht *d, size_t i);

/* ---- fetch claims (claims.c; docs/swarm.md) ---------------------------------------------------
 * One node of a cluster downloads a layer from the registry at a time: before it does, it asks
 * for the layer's claim at the node closest to the layer's key (the granter), which grants it
 * to the first asker for a lease (DHT_CLAIM_LEASE_MS), renewed by asking again, and names the
 * holder to every other asker; the first of those is its standby while it asks again within a
 * lease, and gets the claim when the holder's lease runs out; a whole pull after it reads the
 * download of the reader before it (the relay chain). Leases are durations on the
 * granter's clock. The granter is whoever the asker's lookup finds closest, this node itself if
 * it is closer than all. */
enum dht_claim_op {
    DHT_CLAIM_TAKE = 0, /* take the claim, or renew it */
    DHT_CLAIM_DONE = 1, /* the holder has the layer whole: name it to askers for a while */
    DHT_CLAIM_DROP = 2, /* the holder gives the claim up (its download failed) */
    /* A whole pull: TAKE, or read the download of the last reader named (the relay chain) */
    DHT_CLAIM_TAKE_READ = 3,
    DHT_CLAIM_READ = 4,   /* a reader of a download asks whether it is finished */
    DHT_CLAIM_RELINK = 5, /* a reader whose source failed asks for another */
};
#define DHT_CLAIM_OP_MAX DHT_CLAIM_RELINK
enum dht_claim_state {
    DHT_CLAIM_GRANTED = 0,  /* the asker holds the claim (lease_ms) */
    DHT_CLAIM_HELD = 1,     /* another node holds it (holder; lease_ms left) */
    DHT_CLAIM_FINISHED = 2, /* holder has the layer whole */
    DHT_CLAIM_NONE = 3,     /* DROP: nobody holds it now */
    DHT_CLAIM_FREE = 4,     /* not coordinated (no room, or the asker is not reachable): go on */
    DHT_CLAIM_STANDBY = 5,  /* holder holds it, the asker takes it over if its lease runs out
                               (and should hold what the holder has: docs/swarm.md) */
    DHT_CLAIM_RELAY = 6,    /* holder holds it, the asker reads the download of the node named
                               (TAKE_READ, RELINK; READ: it reads on from where it does) */
};
#define DHT_CLAIM_STATE_MAX DHT_CLAIM_RELAY
struct dht_claim_result {
    enum dht_claim_state state;
    uint64_t lease_ms;          /* GRANTED: the lease; HELD, STANDBY: what is left of it */
    struct dht_contact holder;  /* HELD, FINISHED, STANDBY; RELAY: the node to read from */
    struct dht_contact granter; /* who answered (this node: granter_self) */
    bool granter_self;
};
/* rc: 0 (r set), -EHOSTUNREACH (no granter answered), -ECANCELED (dht_free). */
typedef void (*dht_claim_cb)(void *arg, int rc, const struct dht_claim_result *r);
struct dht_claim;
/* Asks for key's claim (op): of granter if not NULL (a renewal: the one that granted it),
 * falling back to a lookup of the closest nodes, which are asked in turn (3 at most). *out
 * (may be NULL) names the request for dht_claim_cancel until cb runs. Returns 0 (cb will run,
 * perhaps before this returns when this node is the granter), -EBUSY (DHT_CLAIMING_MAX), or
 * -ENOMEM. */
int dht_claim(struct dht *d, const uint8_t key[static DHT_ID_LEN], enum dht_claim_op op,
              const struct dht_contact *granter, dht_claim_cb cb, void *arg, uint64_t now,
              struct dht_claim **out);
void dht_claim_cancel(struct dht_claim *c);
/* How many claims this node holds for others (live or done). */
size_t dht_claims_held(const struct dht *d);

/* ---- inspection ---------------------------------------------------------------------------- */

struct dht_stats {
    size_t contacts, buckets, replacements; /* routing table: contacts, non-empty buckets */
    size_t keys, records;                   /* provider records held for others */
    size_t providing, lookups_running;
    uint64_t lookups, lookups_failed, msgs_in, msgs_out, requests_in, timeouts, refused;
    uint64_t records_refused;
    uint64_t lookup_ms_p50, lookup_ms_p99; /* of the last 256 lookups */
    uint64_t hops_p50, hops_max;
};
void dht_stats_get(const struct dht *d, struct dht_stats *st);
/* Up to cap contacts of the routing table, closest to target first; returns how many. */
size_t dht_closest(const struct dht *d, const uint8_t target[static DHT_ID_LEN],
                   struct dht_contact *out, size_t cap);
const uint8_t *dht_id(const struct dht *d);
/* How many provider records this node holds for key (live or not yet expired by a tick). */
unsigned dht_records_held(const struct dht *d, const uint8_t key[static DHT_ID_LEN]);

/* ---- msg.c: the wire format ---------------------------------------------------------------- */

enum dht_msg_type {
    DHT_PING = 0x01,          /* (empty) */
    DHT_FIND_NODE = 0x02,     /* target */
    DHT_GET_PROVIDERS = 0x03, /* key */
    DHT_ADD_PROVIDER = 0x04,  /* u16 n, n keys: the sender provides them */
    DHT_CLAIM = 0x05,         /* key, u8 op */
    DHT_PONG = 0x81,          /* (empty) */
    DHT_NODES = 0x82,         /* u8 n, n contacts */
    DHT_PROVIDERS = 0x83,     /* u8 self, u8 np, np contacts (providers), u8 nn, nn contacts */
    DHT_STORED = 0x84,        /* u16 accepted */
    DHT_CLAIMED = 0x85,       /* u8 state, u32 lease_ms, u8 n (0, 1), n contacts: the holder
                                 (n 0: the answering node itself, or nobody) */
};
#define DHT_CONTACT_LEN 51 /* id, family, 16 bytes of address, port */

struct dht_msg {
    enum dht_msg_type type;
    uint32_t tx;
    uint8_t target[DHT_ID_LEN]; /* FIND_NODE, GET_PROVIDERS, CLAIM */
    uint8_t op;                 /* CLAIM */
    uint8_t state;              /* CLAIMED */
    uint32_t lease_ms;          /* CLAIMED */
    const uint8_t *keys;        /* ADD_PROVIDER: nkeys * DHT_ID_LEN bytes, in the message */
    unsigned nkeys, accepted;
    bool self; /* PROVIDERS: the answering node provides the key itself */
    struct dht_contact nodes[DHT_K_MAX], providers[DHT_K_MAX]; /* CLAIMED: nodes[0] */
    unsigned nnodes, nproviders;
};
/* Parses a message. Returns 0 or AFSP_E_FORMAT: an unknown type, a reserved byte, a body of
 * the wrong size, more than DHT_K_MAX contacts or DHT_BATCH_MAX keys, an address that is not
 * canonical (family not 4 or 6, IPv4 with bytes past the fourth, port 0). */
int dht_msg_parse(const uint8_t *p, size_t n, struct dht_msg *m);
/* Encodes m into out (DHT_MSG_MAX bytes); returns the size, or AFSP_E_USAGE for a message the
 * parser would refuse. */
int dht_msg_encode(const struct dht_msg *m, uint8_t *out);

/* ---- helpers ------------------------------------------------------------------------------- */

/* The number of leading bits a and b share (256 when equal). */
unsigned dht_common_bits(const uint8_t a[static DHT_ID_LEN], const uint8_t b[static DHT_ID_LEN]);
/* <0, 0, >0 as a is closer to target than b, as close, farther (XOR metric). */
int dht_distance_cmp(const uint8_t target[static DHT_ID_LEN], const uint8_t a[static DHT_ID_LEN],
                     const uint8_t b[static DHT_ID_LEN]);
bool dht_addr_equal(const struct dht_addr *a, const struct dht_addr *b);
/* "1.2.3.4:7070" or "[::1]:7070" into out (at least 64 bytes). */
const char *dht_addr_fmt(const struct dht_addr *a, char *out, size_t cap);

#endif
