/*
 * test_dht_claims.c - fetch claims (dht/claims.c, docs/swarm.md): their wire format, the
 * granter's answers (the holder, its standby, the relay chain, leases, DONE and DROP), and the
 * caps per source, on cores of the in-memory network and on one core fed by hand.
 */
#include "dht_util.h"

#include <errno.h>

/* ---- fetch claims (claims.c) ----------------------------------------------------------------- */

TEST(dht_claim_messages_round_trip_and_bad_ones_are_refused)
{
    uint8_t buf[DHT_MSG_MAX];
    struct dht_msg m = {.type = DHT_CLAIM, .tx = 5, .op = DHT_CLAIM_DONE}, p;
    memset(m.target, 0xab, DHT_ID_LEN);
    int len = dht_msg_encode(&m, buf);
    CHECK_INT(len, ==, 8 + DHT_ID_LEN + 1);
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == 0 && p.op == DHT_CLAIM_DONE &&
          !memcmp(p.target, m.target, DHT_ID_LEN));
    buf[len - 1] = DHT_CLAIM_OP_MAX + 1; /* no such op */
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == AFSP_E_FORMAT);
    struct dht_msg a = {
        .type = DHT_CLAIMED, .tx = 6, .state = DHT_CLAIM_HELD, .lease_ms = 4321, .nnodes = 1};
    a.nodes[0] = contact(9, 9000);
    CHECK_INT(len = dht_msg_encode(&a, buf), ==, 8 + 6 + DHT_CONTACT_LEN);
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == 0 && p.state == DHT_CLAIM_HELD &&
          p.lease_ms == 4321 && p.nnodes == 1 &&
          !memcmp(&p.nodes[0], &a.nodes[0], sizeof a.nodes[0]));
    buf[8] = DHT_CLAIM_STATE_MAX + 1;
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == AFSP_E_FORMAT);
    buf[8] = DHT_CLAIM_HELD;
    buf[13] = 2; /* two holders */
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == AFSP_E_FORMAT);
    a.nnodes = 2;
    CHECK(dht_msg_encode(&a, buf) == AFSP_E_USAGE);
    a.nnodes = 0;
    CHECK_INT(len = dht_msg_encode(&a, buf), ==, 8 + 6);
    CHECK(dht_msg_parse(buf, (size_t)len, &p) == 0 && p.nnodes == 0);
}

struct cres {
    bool done;
    int rc;
    struct dht_claim_result r;
};

static void on_claim(void *arg, int rc, const struct dht_claim_result *r)
{
    struct cres *x = arg;
    x->done = true;
    x->rc = rc;
    if (r)
        x->r = *r;
}

static bool cres_done(void *arg)
{
    return ((struct cres *)arg)->done;
}

/* Node `from` asks for key's claim (op), of granter or through a lookup; run to the answer. */
static struct cres claim(struct sim *s, unsigned from, const uint8_t *key, enum dht_claim_op op,
                         const struct dht_contact *granter)
{
    struct cres x = {0};
    CHECK(dht_claim(sim_dht(s, from), key, op, granter, on_claim, &x, sim_now(s), NULL) == 0);
    sim_flush(s, from);
    CHECK(sim_run(s, cres_done, &x, sim_now(s) + 60000));
    return x;
}

static bool same_id(const struct dht_contact *c, struct sim *s, unsigned i)
{
    return !memcmp(c->id, sim_contact(s, i)->id, DHT_ID_LEN);
}

TEST(dht_a_claim_goes_to_the_first_asker_for_a_lease_and_on_when_it_runs_out)
{
    struct sim *s = network(21, 60);
    uint8_t key[DHT_ID_LEN], key2[DHT_ID_LEN];
    random_key(s, key);
    random_key(s, key2);
    /* the first asker holds it; ten others, from all over, are told who (the first of them is
     * its standby) */
    struct cres a = claim(s, 3, key, DHT_CLAIM_TAKE, NULL);
    CHECK(a.rc == 0 && a.r.state == DHT_CLAIM_GRANTED && a.r.lease_ms == DHT_CLAIM_LEASE_MS);
    for (unsigned i = 10; i < 60; i += 5) {
        struct cres b = claim(s, i, key, DHT_CLAIM_TAKE, NULL);
        CHECK(b.rc == 0 && same_id(&b.r.holder, s, 3));
        CHECK(b.r.state == (i == 10 ? DHT_CLAIM_STANDBY : DHT_CLAIM_HELD));
        CHECK(b.r.holder.addr.port == sim_contact(s, 3)->addr.port);
        CHECK_INT(b.r.lease_ms, <=, DHT_CLAIM_LEASE_MS);
        /* one granter for all: the node closest to the key */
        uint8_t top[1][DHT_ID_LEN];
        true_closest(s, key, 3, top, 1);
        CHECK(b.r.granter_self || !memcmp(b.r.granter.id, top[0], DHT_ID_LEN));
    }
    /* renewals keep it through several leases */
    for (int r = 0; r < 4; r++) {
        sim_run_until(s, sim_now(s) + DHT_CLAIM_LEASE_MS / 2);
        struct cres x = claim(s, 3, key, DHT_CLAIM_TAKE, a.r.granter_self ? NULL : &a.r.granter);
        CHECK(x.rc == 0 && x.r.state == DHT_CLAIM_GRANTED);
    }
    /* a standby that stopped asking is one no more: the next asker is */
    CHECK(claim(s, 20, key, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_STANDBY);
    CHECK(claim(s, 25, key, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_HELD);
    /* unrenewed (holder and standby), the lease runs out: the next asker takes it over, and the
     * old holder hears so */
    sim_run_until(s, sim_now(s) + DHT_CLAIM_LEASE_MS + 10);
    struct cres t = claim(s, 20, key, DHT_CLAIM_TAKE, NULL);
    CHECK(t.rc == 0 && t.r.state == DHT_CLAIM_GRANTED);
    struct cres o = claim(s, 3, key, DHT_CLAIM_TAKE, NULL);
    CHECK(o.r.state == DHT_CLAIM_STANDBY && same_id(&o.r.holder, s, 20));
    /* done: every asker is sent to the holder, long after any lease */
    CHECK(claim(s, 20, key, DHT_CLAIM_DONE, NULL).r.state == DHT_CLAIM_FINISHED);
    sim_run_until(s, sim_now(s) + 3 * DHT_CLAIM_LEASE_MS);
    struct cres f = claim(s, 40, key, DHT_CLAIM_TAKE, NULL);
    CHECK(f.r.state == DHT_CLAIM_FINISHED && same_id(&f.r.holder, s, 20));
    /* ... until that is forgotten too */
    sim_run_until(s, sim_now(s) + DHT_CLAIM_DONE_MS + 2000);
    CHECK(claim(s, 40, key, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_GRANTED);
    /* dropped: the next asker gets it at once; only the holder can drop it */
    CHECK(claim(s, 7, key2, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_GRANTED);
    CHECK(claim(s, 8, key2, DHT_CLAIM_DROP, NULL).r.state == DHT_CLAIM_NONE);
    CHECK(claim(s, 9, key2, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_STANDBY);
    CHECK(claim(s, 7, key2, DHT_CLAIM_DROP, NULL).r.state == DHT_CLAIM_NONE);
    CHECK(claim(s, 9, key2, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_GRANTED);
    size_t held = 0;
    for (unsigned i = 0; i < sim_nodes(s); i++)
        held += dht_claims_held(sim_dht(s, i)) > 0;
    CHECK_INT(held, <=, 2); /* key and key2: one granter each */
    sim_free(s);
}

/* The holder (3) and its standby (10) ask again every half lease, for `ms`. */
static void renew_for(struct sim *s, const uint8_t *key, uint64_t ms)
{
    for (uint64_t end = sim_now(s) + ms; sim_now(s) < end;) {
        sim_run_until(s, sim_now(s) + DHT_CLAIM_LEASE_MS / 2);
        CHECK(claim(s, 3, key, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_GRANTED);
        CHECK(claim(s, 10, key, DHT_CLAIM_READ, NULL).r.state == DHT_CLAIM_STANDBY);
    }
}

/* Whether node `from`'s ask (op) is answered RELAY, naming node src. */
static bool relayed(struct sim *s, unsigned from, const uint8_t *key, enum dht_claim_op op,
                    unsigned src)
{
    struct cres r = claim(s, from, key, op, NULL);
    return r.rc == 0 && r.r.state == DHT_CLAIM_RELAY && same_id(&r.r.holder, s, src);
}

/* Whole pulls after the standby read one another's downloads: each is named the one before it
 * (the tail), so that each uplink carries the layer once; a reader whose source failed is named
 * the standby (never another reader, which may read from it: no cycle); a lazy pull waits. */
TEST(dht_whole_pulls_read_one_another_s_downloads_in_a_chain)
{
    struct sim *s = network(23, 40);
    uint8_t key[DHT_ID_LEN];
    random_key(s, key);
    CHECK(claim(s, 3, key, DHT_CLAIM_TAKE_READ, NULL).r.state == DHT_CLAIM_GRANTED);
    struct cres b = claim(s, 10, key, DHT_CLAIM_TAKE_READ, NULL);
    CHECK(b.r.state == DHT_CLAIM_STANDBY && same_id(&b.r.holder, s, 3));
    for (unsigned i = 11; i <= 13; i++) {
        struct cres r = claim(s, i, key, DHT_CLAIM_TAKE_READ, NULL);
        CHECK(r.rc == 0 && r.r.state == DHT_CLAIM_RELAY && same_id(&r.r.holder, s, i - 1));
        CHECK(r.r.holder.addr.port == sim_contact(s, i - 1)->addr.port);
    }
    /* a lazy pull waits, and is not named to anyone */
    struct cres l = claim(s, 14, key, DHT_CLAIM_TAKE, NULL);
    CHECK(l.r.state == DHT_CLAIM_HELD && same_id(&l.r.holder, s, 3));
    CHECK(relayed(s, 15, key, DHT_CLAIM_TAKE_READ, 13));
    /* a reader's check: it reads on (the tail stays) */
    CHECK(claim(s, 12, key, DHT_CLAIM_READ, NULL).r.state == DHT_CLAIM_RELAY);
    CHECK(relayed(s, 16, key, DHT_CLAIM_TAKE_READ, 15));
    /* 16's source failed: the standby's download, and 16 is the tail */
    struct cres f = claim(s, 16, key, DHT_CLAIM_RELINK, NULL);
    CHECK(f.r.state == DHT_CLAIM_RELAY && same_id(&f.r.holder, s, 10));
    CHECK(relayed(s, 17, key, DHT_CLAIM_TAKE_READ, 16));
    /* a tail that stopped asking is forgotten: the next reader reads the standby's, and a
     * reader that asks while there is no tail becomes it */
    renew_for(s, key, DHT_CLAIM_TAIL_LEASES * DHT_CLAIM_LEASE_MS + 10);
    CHECK(relayed(s, 18, key, DHT_CLAIM_TAKE_READ, 10));
    renew_for(s, key, DHT_CLAIM_TAIL_LEASES * DHT_CLAIM_LEASE_MS + 10);
    CHECK(claim(s, 12, key, DHT_CLAIM_READ, NULL).r.state == DHT_CLAIM_RELAY);
    CHECK(relayed(s, 19, key, DHT_CLAIM_TAKE_READ, 12));
    /* the standby's source failed: it stays the standby (it waits, it takes over) */
    CHECK(claim(s, 10, key, DHT_CLAIM_RELINK, NULL).r.state == DHT_CLAIM_STANDBY);
    /* done: every reader and asker is told so, and named the holder */
    CHECK(claim(s, 3, key, DHT_CLAIM_DONE, NULL).r.state == DHT_CLAIM_FINISHED);
    for (unsigned i = 17; i <= 20; i++) {
        struct cres d = claim(s, i, key, i == 20 ? DHT_CLAIM_TAKE_READ : DHT_CLAIM_READ, NULL);
        CHECK(d.r.state == DHT_CLAIM_FINISHED && same_id(&d.r.holder, s, 3));
    }
    /* once that is forgotten, a reader's check makes no claim (it reads on); a new whole pull
     * gets one */
    sim_run_until(s, sim_now(s) + DHT_CLAIM_DONE_MS + 2000);
    CHECK(claim(s, 17, key, DHT_CLAIM_READ, NULL).r.state == DHT_CLAIM_NONE);
    CHECK(claim(s, 18, key, DHT_CLAIM_READ, NULL).r.state == DHT_CLAIM_NONE);
    CHECK(claim(s, 21, key, DHT_CLAIM_TAKE_READ, NULL).r.state == DHT_CLAIM_GRANTED);
    sim_free(s);
}

TEST(dht_a_claim_goes_to_its_standby_when_the_holder_stops)
{
    struct sim *s = network(22, 40);
    uint8_t key[DHT_ID_LEN];
    random_key(s, key);
    struct cres a = claim(s, 3, key, DHT_CLAIM_TAKE, NULL);
    CHECK(a.rc == 0 && a.r.state == DHT_CLAIM_GRANTED);
    CHECK(claim(s, 11, key, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_STANDBY);
    /* the standby keeps asking, a third of a lease apart; the holder stops (it died) */
    for (int r = 0; r < 2; r++) {
        sim_run_until(s, sim_now(s) + DHT_CLAIM_LEASE_MS / 3);
        struct cres b = claim(s, 11, key, DHT_CLAIM_TAKE, NULL);
        CHECK(b.r.state == DHT_CLAIM_STANDBY && same_id(&b.r.holder, s, 3));
        /* another asker meanwhile is only told the holder */
        struct cres c = claim(s, 30, key, DHT_CLAIM_TAKE, NULL);
        CHECK(c.r.state == DHT_CLAIM_HELD && same_id(&c.r.holder, s, 3));
    }
    sim_run_until(s, sim_now(s) + DHT_CLAIM_LEASE_MS / 3 + 10);
    /* the holder's lease ran out: the standby has it, whoever asks first */
    struct cres c = claim(s, 30, key, DHT_CLAIM_TAKE, NULL);
    CHECK(c.r.state == DHT_CLAIM_STANDBY && same_id(&c.r.holder, s, 11));
    CHECK(claim(s, 11, key, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_GRANTED);
    /* the new holder drops it: its standby (30) has it at once */
    CHECK(claim(s, 11, key, DHT_CLAIM_DROP, NULL).r.state == DHT_CLAIM_NONE);
    CHECK(claim(s, 30, key, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_GRANTED);
    CHECK(claim(s, 3, key, DHT_CLAIM_TAKE, NULL).r.state == DHT_CLAIM_STANDBY);
    sim_free(s);
}

/* The next CLAIMED d sends (new askers are pinged too: their verification). */
static bool take_claimed(struct dht *d, struct dht_msg *a)
{
    struct dht_out o;
    while (take(d, &o, a))
        if (a->type == DHT_CLAIMED)
            return true;
    return false;
}

TEST(dht_claims_are_capped_per_source_and_the_rest_go_on_uncoordinated)
{
    struct dht *d;
    uint8_t id[DHT_ID_LEN] = {1};
    uint64_t seed = 5;
    struct dht_cfg cfg = {.id = id, .rng = rng_fill, .rng_arg = &seed, .now_ms = 1000};
    CHECK(dht_new(&d, &cfg) == 0);
    struct dht_contact from = contact(50, 4000);
    struct dht_msg m = {.type = DHT_CLAIM, .op = DHT_CLAIM_TAKE}, a;
    unsigned granted = 0, free_ = 0;
    for (unsigned i = 0; i < DHT_CLAIMS_PER_SOURCE + 10; i++) {
        from.id[1] = (uint8_t)i; /* many IDs, one address */
        from.id[2] = (uint8_t)(i >> 8);
        memset(m.target, 0, DHT_ID_LEN);
        put_le32(m.target, i);
        m.tx = i;
        CHECK(feed(d, &from, &m, 1000 + i) == 0);
        CHECK(take_claimed(d, &a) && a.tx == i);
        granted += a.state == DHT_CLAIM_GRANTED;
        free_ += a.state == DHT_CLAIM_FREE;
    }
    CHECK_INT(granted, ==, DHT_CLAIMS_PER_SOURCE);
    CHECK_INT(free_, ==, 10);
    /* nor is it made the standby of another's claim past the cap */
    struct dht_contact elsewhere = contact(51, 4001);
    memset(m.target, 0xcc, DIGEST_LEN);
    m.tx = 500;
    CHECK(feed(d, &elsewhere, &m, 2000) == 0);
    CHECK(take_claimed(d, &a) && a.state == DHT_CLAIM_GRANTED);
    from.id[1] = 0xfe;
    m.tx = 501;
    CHECK(feed(d, &from, &m, 2001) == 0);
    CHECK(take_claimed(d, &a) && a.state == DHT_CLAIM_HELD);
    /* an asker nobody can reach is not made a holder */
    struct dht_contact hidden = contact(60, 0);
    hidden.addr.port = 0;
    m.tx = 77;
    memset(m.target, 0xee, DHT_ID_LEN);
    uint8_t buf[DHT_MSG_MAX];
    int len = dht_msg_encode(&m, buf);
    CHECK(dht_input(d, hidden.id, &hidden.addr, buf, (size_t)len, 5000) == 0);
    CHECK(take_claimed(d, &a) && a.state == DHT_CLAIM_FREE);
    /* nobody but the holder changes a claim: a DONE from another node (reachable or not) leaves
     * it held, and askers are still sent to the holder */
    struct dht_contact holder = contact(70, 4100), other = contact(71, 4101);
    memset(m.target, 0xdd, DHT_ID_LEN);
    m.tx = 80;
    CHECK(feed(d, &holder, &m, 6000) == 0);
    CHECK(take_claimed(d, &a) && a.state == DHT_CLAIM_GRANTED);
    m.op = DHT_CLAIM_DONE;
    len = dht_msg_encode(&m, buf);
    CHECK(dht_input(d, hidden.id, &hidden.addr, buf, (size_t)len, 6001) == 0);
    CHECK(take_claimed(d, &a) && a.state == DHT_CLAIM_HELD && a.nnodes == 1 &&
          !memcmp(a.nodes[0].id, holder.id, DHT_ID_LEN));
    CHECK(feed(d, &other, &m, 6002) == 0);
    CHECK(take_claimed(d, &a) && a.state == DHT_CLAIM_HELD);
    m.op = DHT_CLAIM_TAKE; /* the first other asker: the standby */
    CHECK(feed(d, &other, &m, 6003) == 0);
    CHECK(take_claimed(d, &a) && a.state == DHT_CLAIM_STANDBY &&
          !memcmp(a.nodes[0].id, holder.id, DHT_ID_LEN));
    /* leases run out: the claims are dropped at the next tick */
    dht_tick(d, 6003 + DHT_CLAIM_LEASE_MS + 2000);
    CHECK_INT(dht_claims_held(d), ==, 0);
    dht_free(d);
}
