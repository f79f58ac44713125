/*
 * test_dht.c - the Kademlia core (dht/): its wire format, and hundreds of cores over the
 * in-memory network (sim/): lookups find the true k closest nodes, providers are found,
 * lookups survive churn, records expire and are republished, runs are deterministic, caps
 * hold, and new contacts are verified before they enter a table.
 */
#include "../../dht/dht.h"
#include "../../sim/sim.h"
#include "../../util/util.h"
#include "dht_util.h"
#include "test.h"

#include <errno.h>

#define MIN_MS (60 * 1000ull)

/* ---- the wire format ------------------------------------------------------------------------ */

TEST(dht_messages_round_trip_and_bad_ones_are_refused)
{
    uint8_t buf[DHT_MSG_MAX], keys[3 * DHT_ID_LEN];
    memset(keys, 7, sizeof keys);
    struct dht_msg m = {
        .type = DHT_PROVIDERS, .tx = 0x01020304, .self = true, .nproviders = 2, .nnodes = 3};
    for (unsigned i = 0; i < 3; i++)
        m.nodes[i] = contact((uint8_t)(10 + i), (uint16_t)(7000 + i));
    m.providers[0] = contact(1, 1);
    m.providers[1] = contact(2, 2);
    m.providers[1].addr.family = 6;
    memset(m.providers[1].addr.ip, 0xfe, 16);
    int len = dht_msg_encode(&m, buf);
    CHECK_INT(len, ==, 8 + 1 + 1 + 2 * DHT_CONTACT_LEN + 1 + 3 * DHT_CONTACT_LEN);
    struct dht_msg p;
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == 0);
    CHECK(p.type == DHT_PROVIDERS && p.tx == 0x01020304 && p.self);
    CHECK(p.nproviders == 2 && p.nnodes == 3);
    CHECK(!memcmp(&p.providers[1], &m.providers[1], sizeof p.providers[1]));
    CHECK(!memcmp(&p.nodes[2], &m.nodes[2], sizeof p.nodes[2]));
    /* every byte counts: a trailing byte, a reserved byte, a short body */
    CHECK(dht_msg_parse(buf, (size_t)len + 1, &p) == AFSP_E_FORMAT);
    CHECK(dht_msg_parse(buf, (size_t)len - 1, &p) == AFSP_E_FORMAT);
    buf[2] = 1;
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == AFSP_E_FORMAT);
    buf[2] = 0;
    /* an IPv4 address with bytes past its fourth, port 0, family 5, self 2 */
    size_t a0 = 8 + 1 + 1 + DHT_ID_LEN; /* the first provider's family byte */
    buf[a0 + 6] = 1;
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == AFSP_E_FORMAT);
    buf[a0 + 6] = 0;
    buf[a0] = 5;
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == AFSP_E_FORMAT);
    buf[a0] = 4;
    buf[a0 + 17] = buf[a0 + 18] = 0;
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == AFSP_E_FORMAT);
    buf[a0 + 17] = 1;
    buf[8] = 2;
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == AFSP_E_FORMAT);
    buf[8] = 1;
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == 0);

    struct dht_msg add = {.type = DHT_ADD_PROVIDER, .tx = 9, .keys = keys, .nkeys = 3};
    CHECK_INT(len = dht_msg_encode(&add, buf), ==, 8 + 2 + 3 * DHT_ID_LEN);
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == 0 && p.nkeys == 3 &&
          !memcmp(p.keys, keys, sizeof keys));
    buf[8] = 0; /* zero keys */
    buf[9] = 0;
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == AFSP_E_FORMAT);
    add.nkeys = DHT_BATCH_MAX + 1;
    CHECK(dht_msg_encode(&add, buf) == AFSP_E_USAGE);
    struct dht_msg nodes = {.type = DHT_NODES, .nnodes = DHT_K_MAX + 1};
    CHECK(dht_msg_encode(&nodes, buf) == AFSP_E_USAGE);
    uint8_t unknown[8] = {0x7f};
    CHECK(dht_msg_parse(unknown, sizeof unknown, &p) == AFSP_E_FORMAT);
    uint8_t ping[8] = {DHT_PING};
    CHECK(dht_msg_parse(ping, sizeof ping, &p) == 0 && p.type == DHT_PING);
}

/* ---- one core, fed by hand --------------------------------------------------------------------
 */

TEST(dht_new_contacts_enter_the_table_only_once_they_answer)
{
    uint64_t seed = 1;
    uint8_t id[DHT_ID_LEN] = {0x80};
    struct dht_cfg cfg = {.id = id, .rng = rng_fill, .rng_arg = &seed, .now_ms = 1000};
    struct dht *d;
    CHECK(dht_new(&d, &cfg) == 0);
    struct dht_out *o = malloc(sizeof *o);
    struct dht_msg m, a;
    struct dht_stats st;
    struct dht_contact x = contact(0x11, 7000);

    /* x asks us something: we answer, and ping x over a connection we open (dial) */
    struct dht_msg q = {.type = DHT_FIND_NODE, .tx = 5};
    CHECK(feed(d, &x, &q, 1000) == 0);
    bool answered = false, pinged = false;
    uint32_t ping_tx = 0;
    while (take(d, o, &m)) {
        CHECK(!memcmp(o->to.id, x.id, DHT_ID_LEN));
        if (m.type == DHT_NODES && m.tx == 5)
            answered = true;
        if (m.type == DHT_PING) {
            pinged = o->dial;
            ping_tx = m.tx;
        }
    }
    CHECK(answered && pinged);
    dht_stats_get(d, &st);
    CHECK_INT(st.contacts, ==, 0); /* not yet */
    /* the PONG from someone else does not count; from x it does */
    struct dht_contact y = contact(0x22, 7000);
    a = (struct dht_msg){.type = DHT_PONG, .tx = ping_tx};
    CHECK(feed(d, &y, &a, 1001) == 0);
    dht_stats_get(d, &st);
    CHECK_INT(st.contacts, ==, 0);
    CHECK(feed(d, &x, &a, 1001) == 0);
    dht_stats_get(d, &st);
    CHECK_INT(st.contacts, ==, 1);

    /* a node that says it listens nowhere (port 0) is answered, never pinged or stored */
    struct dht_contact z = contact(0x33, 0);
    CHECK(feed(d, &z, &q, 1002) == 0);
    while (take(d, o, &m))
        CHECK(m.type == DHT_NODES);
    /* contacts named in an answer are candidates of a lookup, not table entries: x answers
     * our lookup naming 5 others; only x is in the table */
    struct dht_lookup *l;
    uint8_t target[DHT_ID_LEN] = {0x12};
    CHECK(dht_find_node(d, target, NULL, NULL, 1003, &l) == 0);
    CHECK(take(d, o, &m) && m.type == DHT_FIND_NODE);
    struct dht_msg nodes = {.type = DHT_NODES, .tx = m.tx, .nnodes = 5};
    for (unsigned i = 0; i < 5; i++)
        nodes.nodes[i] = contact((uint8_t)(0x40 + i), 7000);
    CHECK(feed(d, &x, &nodes, 1004) == 0);
    dht_stats_get(d, &st);
    CHECK_INT(st.contacts, ==, 1);
    /* and the lookup asks them over connections it opens itself */
    unsigned asked = 0;
    while (take(d, o, &m)) {
        CHECK(m.type == DHT_FIND_NODE && o->dial);
        asked++;
    }
    CHECK_INT(asked, ==, DHT_ALPHA);
    dht_lookup_cancel(l);
    /* a malformed message is reported to the transport */
    uint8_t junk[5] = {1, 2, 3, 4, 5};
    CHECK(dht_input(d, x.id, &x.addr, junk, sizeof junk, 1005) == AFSP_E_FORMAT);
    free(o);
    dht_free(d);
}

TEST(dht_caps_hold_against_one_peer)
{
    uint64_t seed = 2;
    uint8_t id[DHT_ID_LEN] = {0x80};
    struct dht_cfg cfg = {.id = id, .rng = rng_fill, .rng_arg = &seed, .now_ms = 1000};
    struct dht *d;
    CHECK(dht_new(&d, &cfg) == 0);
    struct dht_out *o = malloc(sizeof *o);
    struct dht_msg m;
    struct dht_contact x = contact(0x11, 7000);

    /* requests: a burst, then the rate */
    struct dht_msg ping = {.type = DHT_PING};
    int busy = 0;
    for (int i = 0; i < DHT_REQ_BURST + 50; i++)
        busy += feed(d, &x, &ping, 2000) == -EBUSY;
    CHECK_INT(busy, ==, 50);
    CHECK(feed(d, &x, &ping, 2000) == -EBUSY);
    CHECK(feed(d, &x, &ping, 2000 + 1000 / DHT_REQ_PER_S + 1) == 0); /* a token later */
    while (take(d, o, &m))
        ;

    /* records: DHT_RECORDS_PER_SOURCE of one provider, in batches; the rest refused */
    uint8_t keys[DHT_BATCH_MAX * DHT_ID_LEN];
    unsigned stored = 0;
    uint64_t now = 10000;
    for (unsigned b = 0; b < DHT_RECORDS_PER_SOURCE / DHT_BATCH_MAX + 2; b++) {
        for (unsigned i = 0; i < DHT_BATCH_MAX; i++) {
            uint32_t v = b * DHT_BATCH_MAX + i;
            memset(keys + i * DHT_ID_LEN, 0, DHT_ID_LEN);
            memcpy(keys + i * DHT_ID_LEN, &v, sizeof v);
        }
        struct dht_msg add = {
            .type = DHT_ADD_PROVIDER, .tx = b, .keys = keys, .nkeys = DHT_BATCH_MAX};
        now += 10; /* within the rate */
        CHECK(feed(d, &x, &add, now) == 0);
        while (take(d, o, &m))
            if (m.type == DHT_STORED)
                stored += m.accepted;
    }
    CHECK_INT(stored, ==, DHT_RECORDS_PER_SOURCE);
    struct dht_stats st;
    dht_stats_get(d, &st);
    CHECK_INT(st.records, ==, DHT_RECORDS_PER_SOURCE);
    CHECK_INT(st.records_refused, ==, 2 * DHT_BATCH_MAX);

    /* one key: at most DHT_RECORDS_PER_KEY providers, the newest kept */
    uint8_t key[DHT_ID_LEN];
    memset(key, 0xee, sizeof key);
    for (unsigned i = 0; i < DHT_RECORDS_PER_KEY + 8; i++) {
        struct dht_contact p = contact((uint8_t)(0x50 + i), 7000);
        struct dht_msg add = {.type = DHT_ADD_PROVIDER, .keys = key, .nkeys = 1};
        CHECK(feed(d, &p, &add, now + i) == 0);
    }
    while (take(d, o, &m))
        ;
    dht_stats_get(d, &st);
    CHECK_INT(st.records, ==, DHT_RECORDS_PER_SOURCE + DHT_RECORDS_PER_KEY);
    struct dht_contact last = contact((uint8_t)(0x50 + DHT_RECORDS_PER_KEY + 7), 7000);
    struct dht_contact first = contact(0x50, 7000);
    struct dht_msg gp = {.type = DHT_GET_PROVIDERS, .tx = 77};
    memcpy(gp.target, key, DHT_ID_LEN);
    CHECK(feed(d, &x, &gp, now + 100) == 0);
    bool got = false;
    while (take(d, o, &m))
        if (m.type == DHT_PROVIDERS) {
            got = true;
            CHECK_INT(m.nproviders, ==, DHT_K);
            CHECK(!memcmp(m.providers[0].id, last.id, DHT_ID_LEN)); /* freshest first */
            for (unsigned i = 0; i < m.nproviders; i++)
                CHECK(memcmp(m.providers[i].id, first.id, DHT_ID_LEN));
        }
    CHECK(got);
    /* and every record is gone once the TTL has run out */
    dht_tick(d, now + DHT_TTL_MS + DHT_RECORDS_PER_KEY + 1000);
    dht_stats_get(d, &st);
    CHECK_INT(st.records, ==, 0);
    CHECK_INT(st.keys, ==, 0);
    free(o);
    dht_free(d);
}

/* Node IDs cost nothing: many of them from one address. */
static struct dht_contact sybil(unsigned i)
{
    struct dht_contact c = {.addr = {.family = 4, .ip = {10, 6, 6, 6}, .port = 7000}};
    memset(c.id, 0x66, DHT_ID_LEN);
    memcpy(c.id, &i, sizeof i);
    return c;
}

/* Announces keys [first, first + n) (the key is its number) from c; returns how many the node
 * stored. *now moves on by 1 ms a message: within a source's request rate. */
static unsigned announce(struct dht *d, struct dht_out *o, const struct dht_contact *c,
                         uint32_t first, uint32_t n, uint64_t *now)
{
    uint8_t keys[DHT_BATCH_MAX * DHT_ID_LEN];
    unsigned stored = 0;
    struct dht_msg m;
    for (uint32_t b = 0; b < n; b += DHT_BATCH_MAX) {
        uint32_t nk = MIN(DHT_BATCH_MAX, n - b);
        memset(keys, 0, sizeof keys);
        for (uint32_t i = 0; i < nk; i++) {
            uint32_t v = first + b + i;
            memcpy(keys + i * DHT_ID_LEN, &v, sizeof v);
        }
        struct dht_msg add = {.type = DHT_ADD_PROVIDER, .tx = b, .keys = keys, .nkeys = nk};
        *now += 20;
        CHECK(feed(d, c, &add, *now) == 0);
        while (take(d, o, &m))
            if (m.type == DHT_STORED)
                stored += m.accepted;
    }
    return stored;
}

/* Whether the node lists p among key k's providers. */
static bool lists(struct dht *d, struct dht_out *o, uint32_t k, const struct dht_contact *p,
                  uint64_t now)
{
    struct dht_msg gp = {.type = DHT_GET_PROVIDERS, .tx = 9}, m;
    struct dht_contact asker = contact(0x21, 7000);
    bool found = false;
    memcpy(gp.target, &k, sizeof k);
    CHECK(feed(d, &asker, &gp, now) == 0);
    while (take(d, o, &m))
        for (unsigned i = 0; m.type == DHT_PROVIDERS && i < m.nproviders; i++)
            found |= !memcmp(m.providers[i].id, p->id, DHT_ID_LEN);
    return found;
}

/* Issue 15: four IDs from one address filled the key table (DHT_RECORDS_PER_SOURCE was per
 * ID), and 32 pushed an honest provider out of a key. Caps count sources, whatever the IDs:
 * 8 IDs from one address store one source's share and an honest provider's new key is still
 * taken; 40 IDs announcing the honest provider's key, before and after it, leave it listed. */
TEST(dht_caps_hold_against_many_ids_from_one_address)
{
    uint64_t seed = 3, now = 10000;
    uint8_t id[DHT_ID_LEN] = {0x80};
    struct dht_cfg cfg = {.id = id, .rng = rng_fill, .rng_arg = &seed, .now_ms = 1000};
    struct dht *d;
    CHECK(dht_new(&d, &cfg) == 0);
    struct dht_out *o = malloc(sizeof *o);
    struct dht_contact honest = contact(0x31, 7000);
    unsigned stored = 0;
    struct dht_contact sy;
    for (unsigned i = 0; i < 8; i++) { /* each would fill its own per-ID cap */
        sy = sybil(i);
        stored += announce(d, o, &sy, i * DHT_RECORDS_PER_SOURCE, DHT_RECORDS_PER_SOURCE, &now);
    }
    CHECK_INT(stored, ==, DHT_RECORDS_PER_SOURCE);
    CHECK_INT(announce(d, o, &honest, 0x7fffffff, 1, &now), ==, 1);
    CHECK(lists(d, o, 0x7fffffff, &honest, now));

    /* one key: the honest provider first, then 40 IDs from another address (the first one is at
     * its cap) */
    CHECK_INT(announce(d, o, &honest, 0x7ffffff0, 1, &now), ==, 1);
    for (unsigned i = 100; i < 140; i++) {
        sy = sybil(i);
        sy.addr.ip[3] = 7;
        CHECK_INT(announce(d, o, &sy, 0x7ffffff0, 1, &now), ==, 1);
    }
    CHECK(lists(d, o, 0x7ffffff0, &honest, now));
    /* ... and the other way round: 40 first, then the honest provider */
    for (unsigned i = 200; i < 240; i++) {
        sy = sybil(i);
        sy.addr.ip[3] = 7;
        announce(d, o, &sy, 0x7ffffff1, 1, &now);
    }
    CHECK_INT(announce(d, o, &honest, 0x7ffffff1, 1, &now), ==, 1);
    for (unsigned i = 240; i < 280; i++) {
        sy = sybil(i);
        sy.addr.ip[3] = 7;
        announce(d, o, &sy, 0x7ffffff1, 1, &now);
    }
    CHECK(lists(d, o, 0x7ffffff1, &honest, now));
    free(o);
    dht_free(d);
}

/* ---- hundreds of cores ---------------------------------------------------------------------- */

struct res {
    bool done;
    int rc;
    unsigned nclosest, nprov, hops, msgs;
    uint8_t closest[DHT_K_MAX][DHT_ID_LEN], prov[DHT_K_MAX][DHT_ID_LEN];
};

static void on_lookup(void *arg, int rc, const struct dht_result *r)
{
    struct res *x = arg;
    x->done = true;
    x->rc = rc;
    x->nclosest = (unsigned)r->nclosest;
    x->nprov = (unsigned)r->nproviders;
    x->hops = r->hops;
    x->msgs = r->messages;
    for (size_t i = 0; i < r->nclosest; i++)
        memcpy(x->closest[i], r->closest[i].id, DHT_ID_LEN);
    for (size_t i = 0; i < r->nproviders; i++)
        memcpy(x->prov[i], r->providers[i].id, DHT_ID_LEN);
}

static bool res_done(void *arg)
{
    return ((struct res *)arg)->done;
}

/* n nodes; each joins through node 0 (so every node has one seed), and the network settles. */
static unsigned random_up(struct sim *s)
{
    for (;;) {
        unsigned i = (unsigned)(sim_rand(s) % sim_nodes(s));
        if (sim_node_is_up(s, i))
            return i;
    }
}

/* A lookup of target from node `from`, run to its end. */
static void lookup(struct sim *s, unsigned from, const uint8_t *target, bool providers,
                   struct res *r)
{
    memset(r, 0, sizeof *r);
    int rc = providers
                 ? dht_find_providers(sim_dht(s, from), target, 0, on_lookup, r, sim_now(s), NULL)
                 : dht_find_node(sim_dht(s, from), target, on_lookup, r, sim_now(s), NULL);
    CHECK_INT(rc, ==, 0);
    sim_flush(s, from);
    CHECK(sim_run(s, res_done, r, sim_now(s) + 60000));
}

/* How many of the true k closest the lookup found. */
static unsigned overlap(struct sim *s, unsigned from, const uint8_t *target, const struct res *r)
{
    uint8_t want[DHT_K_MAX][DHT_ID_LEN];
    unsigned n = true_closest(s, target, from, want, DHT_K), hit = 0;
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j < r->nclosest; j++)
            hit += !memcmp(want[i], r->closest[j], DHT_ID_LEN);
    return hit;
}

TEST(dht_every_lookup_in_250_nodes_finds_the_k_closest)
{
    struct sim *s = network(11, 250);
    struct res r;
    unsigned maxhops = 0;
    for (unsigned q = 0; q < 250; q++) {
        unsigned from = q; /* every node looks up once */
        uint8_t target[DHT_ID_LEN];
        random_key(s, target);
        lookup(s, from, target, false, &r);
        CHECK_INT(r.rc, ==, 0);
        CHECK_INT(r.nclosest, ==, DHT_K);
        CHECK_INT(overlap(s, from, target, &r), ==, DHT_K);
        if (r.hops > maxhops)
            maxhops = r.hops;
    }
    CHECK_INT(maxhops, <=, 6);
    /* every table holds far more than one seed: joining filled them */
    for (unsigned i = 0; i < 250; i++) {
        struct dht_stats st;
        dht_stats_get(sim_dht(s, i), &st);
        CHECK_INT(st.contacts, >=, DHT_K);
    }
    sim_free(s);
}

/* Node p provides nkeys random keys (kept in keys). */
static void provide_keys(struct sim *s, unsigned p, uint8_t (*keys)[DHT_ID_LEN], unsigned nkeys)
{
    for (unsigned i = 0; i < nkeys; i++) {
        random_key(s, keys[i]);
        CHECK(dht_provide(sim_dht(s, p), keys[i], sim_now(s)) == 0);
    }
    sim_flush(s, p);
}

static bool has(const struct res *r, const uint8_t *id)
{
    for (unsigned i = 0; i < r->nprov; i++)
        if (!memcmp(r->prov[i], id, DHT_ID_LEN))
            return true;
    return false;
}

TEST(dht_providers_are_found_and_announcing_is_batched)
{
    struct sim *s = network(12, 250);
    enum { NP = 10, NK = 60 };
    uint8_t(*keys)[NK][DHT_ID_LEN] = malloc(NP * sizeof *keys);
    unsigned prov[NP];
    for (unsigned p = 0; p < NP; p++) {
        prov[p] = p * 25 + 3;
        provide_keys(s, prov[p], keys[p], NK);
    }
    sim_run_until(s, sim_now(s) + 10000);
    /* a provider's 60 keys took about one lookup per region (250 / k: 8 to 16), not 60 */
    for (unsigned p = 0; p < NP; p++) {
        struct dht_stats st;
        dht_stats_get(sim_dht(s, prov[p]), &st);
        CHECK_INT(st.providing, ==, NK);
        CHECK_INT(st.lookups, <, 30);
    }
    /* the records went to the nodes closest to each key: of its true 20 closest (the
     * provider aside), at least 18 hold one, and 19 on average */
    unsigned held = 0;
    for (unsigned p = 0; p < NP; p++)
        for (unsigned k = 0; k < NK; k++) {
            uint8_t top[DHT_K_MAX][DHT_ID_LEN];
            unsigned n = true_closest(s, keys[p][k], prov[p], top, DHT_K), h = 0;
            for (unsigned i = 0; i < sim_nodes(s); i++)
                for (unsigned j = 0; j < n; j++)
                    if (!memcmp(sim_contact(s, i)->id, top[j], DHT_ID_LEN))
                        h += dht_records_held(sim_dht(s, i), keys[p][k]) > 0;
            CHECK_INT(h, >=, DHT_K - 2);
            held += h;
        }
    CHECK_INT(held, >=, NP * NK * (DHT_K - 1));
    struct res r;
    for (unsigned p = 0; p < NP; p++)
        for (unsigned k = 0; k < NK; k += 3) {
            unsigned from = random_up(s);
            if (from == prov[p])
                continue;
            lookup(s, from, keys[p][k], true, &r);
            CHECK_INT(r.rc, ==, 0);
            CHECK(has(&r, sim_contact(s, prov[p])->id));
        }
    /* a lookup that wants one provider stops at the first */
    memset(&r, 0, sizeof r);
    unsigned from = prov[0] + 1;
    CHECK(dht_find_providers(sim_dht(s, from), keys[0][0], 1, on_lookup, &r, sim_now(s), NULL) ==
          0);
    sim_flush(s, from);
    CHECK(sim_run(s, res_done, &r, sim_now(s) + 60000));
    CHECK(r.rc == 0 && r.nprov >= 1 && has(&r, sim_contact(s, prov[0])->id));
    free(keys);
    sim_free(s);
}

TEST(dht_lookups_succeed_after_a_fifth_of_the_nodes_leave_and_others_join)
{
    enum { N = 250, NK = 20 };
    struct sim *s = network(13, N);
    uint8_t keys[NK][DHT_ID_LEN];
    unsigned provider = 7;
    provide_keys(s, provider, keys, NK);
    sim_run_until(s, sim_now(s) + 10000);
    /* 50 leave (not the provider), 50 new ones join through random live nodes */
    for (unsigned i = 0; i < N / 5;) {
        unsigned v = (unsigned)(sim_rand(s) % N);
        if (v == provider || !sim_node_is_up(s, v))
            continue;
        sim_node_down(s, v);
        i++;
    }
    for (unsigned i = 0; i < N / 5; i++) {
        int nn = sim_node_add(s);
        CHECK(nn >= 0);
        sim_seed(s, (unsigned)nn, random_up(s));
        sim_run_until(s, sim_now(s) + 20);
    }
    /* at once: lookups still end, and still find the provider */
    struct res r;
    for (unsigned k = 0; k < NK; k++) {
        unsigned from = random_up(s);
        if (from == provider)
            continue;
        lookup(s, from, keys[k], true, &r);
        CHECK_INT(r.rc, ==, 0);
        CHECK(has(&r, sim_contact(s, provider)->id));
    }
    /* after a republish interval the tables have healed: the k closest again */
    sim_run_until(s, sim_now(s) + DHT_REPUBLISH_MS + 5000);
    unsigned exact = 0, total = 0;
    for (unsigned q = 0; q < 100; q++) {
        unsigned from = random_up(s);
        uint8_t target[DHT_ID_LEN];
        random_key(s, target);
        lookup(s, from, target, false, &r);
        CHECK_INT(r.rc, ==, 0);
        unsigned o = overlap(s, from, target, &r);
        CHECK_INT(o, >=, DHT_K - 1);
        exact += o == DHT_K;
        total++;
    }
    CHECK_INT(exact * 100, >=, total * 95);
    for (unsigned k = 0; k < NK; k++) {
        unsigned from = random_up(s);
        if (from == provider)
            continue;
        lookup(s, from, keys[k], true, &r);
        CHECK(r.rc == 0 && has(&r, sim_contact(s, provider)->id));
    }
    sim_free(s);
}

/* How many nodes hold a record for key (found by asking each directly is what a lookup does;
 * here, the count of cores whose GET_PROVIDERS lookup from a fresh node finds it). */
static bool found(struct sim *s, unsigned from, const uint8_t *key, const uint8_t *provider)
{
    struct res r;
    lookup(s, from, key, true, &r);
    return r.rc == 0 && has(&r, provider);
}

TEST(dht_records_are_republished_while_provided_and_expire_once_withdrawn)
{
    struct sim *s = network(14, 200);
    uint8_t keys[2][DHT_ID_LEN];
    unsigned p = 5, asker = 77;
    const uint8_t *pid = sim_contact(s, p)->id;
    provide_keys(s, p, keys, 2);
    sim_run_until(s, sim_now(s) + 5000);
    CHECK(found(s, asker, keys[0], pid) && found(s, asker, keys[1], pid));
    /* three TTLs later, still there: republished (a record lives one TTL) */
    sim_run_until(s, sim_now(s) + 3 * DHT_TTL_MS);
    CHECK(found(s, asker, keys[0], pid) && found(s, asker, keys[1], pid));
    /* withdrawn: the provider stops naming itself at once, others' records run out */
    dht_withdraw(sim_dht(s, p), keys[1]);
    CHECK(!dht_providing(sim_dht(s, p), keys[1]));
    sim_run_until(s, sim_now(s) + DHT_TTL_MS + 2000);
    CHECK(found(s, asker, keys[0], pid));
    CHECK(!found(s, asker, keys[1], pid));
    /* a provider that dies is gone from the records one TTL later */
    sim_node_down(s, p);
    sim_run_until(s, sim_now(s) + DHT_TTL_MS + 2000);
    CHECK(!found(s, asker, keys[0], pid));
    sim_free(s);
}

/* A scenario's fingerprint: messages delivered, and the IDs the lookups found. */
static uint64_t scenario(uint64_t seed)
{
    struct sim *s = network(seed, 120);
    uint64_t h = sim_delivered(s);
    struct res r;
    for (unsigned q = 0; q < 20; q++) {
        uint8_t target[DHT_ID_LEN];
        random_key(s, target);
        lookup(s, random_up(s), target, false, &r);
        for (unsigned i = 0; i < r.nclosest; i++)
            h = h * 1099511628211ull ^ r.closest[i][0] ^ (uint64_t)r.closest[i][1] << 8;
        h = h * 31 + r.msgs;
    }
    h = h * 31 + sim_delivered(s) + sim_now(s);
    sim_free(s);
    return h;
}

TEST(dht_runs_are_deterministic_for_a_seed)
{
    uint64_t a = scenario(21), b = scenario(21), c = scenario(22);
    CHECK(a == b);
    CHECK(a != c);
}
