/*
 * test_node_swarm.c - many nodes fetching one layer at once (docs/swarm.md): its holder sends
 * each chunk a few times, and the fetchers pass the chunks on among themselves.
 */
#include "nodes.h"

#include <errno.h>

#include <string.h>

/* n nodes on uplinks of rate bytes a second, node 0 the seed of every other. */
static struct simn *swarm_cluster(uint64_t seed, unsigned n, uint64_t rate)
{
    struct simn *s;
    struct simn_cfg cfg = {.seed = seed, .up_rate = rate};
    unsigned zero = 0;
    log_level = LOG_ERROR;
    CHECK(simn_new(&s, &cfg) == 0);
    CHECK(simn_add(s, NULL, 0) == 0);
    for (unsigned i = 1; i < n; i++)
        CHECK(simn_add(s, &zero, 1) == (int)i);
    return s;
}

struct pulls {
    struct simn *s;
    int *t;
    unsigned first, n;
};

static bool pulls_answered(void *arg)
{
    struct pulls *p = arg;
    for (unsigned i = p->first; i < p->n; i++)
        if (!simn_answer(p->s, p->t[i]))
            return false;
    return true;
}

/* Nodes first..n-1 pull im at once; returns once all have answered, each with the whole layer
 * (limit: the check fails). */
static void pull_all(struct simn *s, const struct image *im, unsigned first, unsigned n,
                     uint64_t limit)
{
    int t[256];
    char req[256];
    struct pulls p = {s, t, first, n};
    snprintf(req, sizeof req, "{\"cmd\":\"pull\",\"ref\":\"%s\"}", im->ref);
    for (unsigned i = first; i < n; i++)
        t[i] = simn_ctl(s, i, req);
    CHECK(simn_run(s, pulls_answered, &p, simn_now(s) + limit));
    for (unsigned i = first; i < n; i++) {
        const char *a = simn_answer(s, t[i]);
        CHECK(a && strstr(a, "\"ok\":true"));
        CHECK(memstore_layer_complete(simn_store(s, i), im->layer));
    }
}

/* 50 nodes, one holding a layer of 64 chunks of 256 KiB, the other 49 pull it at once, every
 * node on a 2.5 MiB/s uplink: all end with every chunk, the holder sends at most 3 x 64 chunks
 * (not 49 x 64), the registry is never asked, and it takes at most twice the time one fetcher
 * alone needs from the holder (6.4 s; bench/swarm_sim measures it: about 1.5 times). */
TEST(node_swarm_fifty_nodes_pull_one_layer_from_one_holder)
{
    const uint64_t rate = 2560u << 10;
    const uint32_t chunk = 256u << 10;
    struct simn *s = swarm_cluster(41, 50, rate);
    struct image im;
    image_make(s, 0, 41, 64, chunk, false, &im);
    simn_run_until(s, simn_now(s) + 5 * SEC); /* the DHT settles */
    uint64_t t0 = simn_now(s);
    pull_all(s, &im, 1, 50, 600 * SEC);
    CHECK_INT(simn_now(s) - t0, <=, 2 * 64 * chunk * SEC / rate);
    CHECK_INT(counter(s, 0, "chunks_served"), <=, 3 * 64);
    CHECK_INT(simn_registry_fetches(s), ==, 0);
    uint64_t fetched = 0, served = 0;
    for (unsigned i = 1; i < 50; i++) {
        fetched += counter(s, i, "chunks_fetched");
        served += counter(s, i, "chunks_served");
    }
    CHECK_INT(fetched, >=, 49 * 64);
    CHECK_INT(served, >=, 49 * 64 - 3 * 64); /* the rest came from the fetchers themselves */
    /* stats: where each node's bytes came from and went, peer by peer */
    for (unsigned i = 0; i < 50; i += 7) {
        json_t *a = ask(s, i, SEC, "{\"cmd\":\"stats\"}");
        json_t *tr = json_object_get(json_object_get(a, "stats"), "transfer"), *e;
        size_t k;
        uint64_t from = 0, to = 0;
        json_array_foreach(json_object_get(tr, "peers"), k, e)
        {
            from += (uint64_t)json_integer_value(json_object_get(e, "from"));
            to += (uint64_t)json_integer_value(json_object_get(e, "to"));
        }
        CHECK_INT(json_integer_value(json_object_get(tr, "from_registry")), ==, 0);
        CHECK_INT(from, ==, counter(s, i, "bytes_fetched"));
        CHECK_INT(from, ==, i ? 64 * chunk : 0);
        CHECK_INT(to, ==, counter(s, i, "chunks_served") * chunk);
        json_decref(a);
    }
    simn_free(s);
}

/* Node i's counter, read from its core (not through a control request). */
static uint64_t core_counter(struct simn *s, unsigned i, size_t off)
{
    struct node *n = simn_node(s, i);
    return n ? *(const uint64_t *)((const char *)node_counters_get(n) + off) : 0;
}
#define CORE_COUNTER(s, i, name) core_counter(s, i, offsetof(struct node_counters, name))

struct storm {
    struct simn *s;
    int *t;
    unsigned n, except;
};

static bool storm_answered(void *arg)
{
    struct storm *p = arg;
    for (unsigned i = 0; i < p->n; i++)
        if (i != p->except && !simn_answer(p->s, p->t[i]))
            return false;
    return true;
}

/* 50 nodes hold nothing and the image is only in the registry, which sends 4 MiB/s to each
 * node. All 50 pull it at once: one claims the layer and downloads it, the 49 others read its
 * download as it runs (its standby) or one another's (the relay chain), then take the rest from
 * it and from each other once it is done: the registry serves the layer once.
 * Then a second image the same way, with its claimant killed half-way through its download:
 * another node takes the claim over once the lease has run out, and the registry serves that
 * layer once more, plus what the dead claimant had taken (docs/swarm.md, "Single flight"). */
TEST(node_swarm_fifty_nodes_ask_the_registry_for_a_layer_once)
{
    const uint64_t rate = 2560u << 10, reg_rate = 4u << 20;
    const uint32_t chunk = 256u << 10, nch = 64;
    const uint64_t layer = (uint64_t)nch * chunk;
    struct simn *s;
    struct simn_cfg cfg = {.seed = 43, .up_rate = rate, .registry_rate = reg_rate};
    unsigned zero = 0;
    log_level = LOG_ERROR;
    CHECK(simn_new(&s, &cfg) == 0);
    CHECK(simn_add(s, NULL, 0) == 0);
    for (unsigned i = 1; i < 50; i++)
        CHECK(simn_add(s, &zero, 1) == (int)i);
    struct image im, im2;
    image_make(s, -1, 43, nch, chunk, true, &im);
    image_make(s, -1, 44, nch, chunk, true, &im2);
    simn_run_until(s, simn_now(s) + 5 * SEC); /* the DHT settles */

    uint64_t reg0 = simn_registry_bytes(s);
    pull_all(s, &im, 0, 50, 600 * SEC);
    uint64_t claims = 0, relays = 0;
    for (unsigned i = 0; i < 50; i++) {
        claims += CORE_COUNTER(s, i, claims);
        relays += CORE_COUNTER(s, i, claim_relays);
    }
    CHECK_INT(claims, ==, 1);
    /* the others read a download (a few asked after the claimant was done) */
    CHECK_INT(relays, >=, 40);
    /* the layer once, and the 52-byte manifest that every node asked for */
    CHECK_INT(simn_registry_bytes(s) - reg0, <=, layer * 105 / 100 + 50 * 64);

    /* the second image: its claimant dies half-way through the download; its standby takes
     * over from what it had read of it */
    int t[50];
    char req[256];
    snprintf(req, sizeof req, "{\"cmd\":\"pull\",\"ref\":\"%s\"}", im2.ref);
    reg0 = simn_registry_bytes(s);
    for (unsigned i = 0; i < 50; i++)
        t[i] = simn_ctl(s, i, req);
    uint64_t before[50], read0[50];
    for (unsigned i = 0; i < 50; i++) {
        before[i] = CORE_COUNTER(s, i, claims);
        read0[i] = CORE_COUNTER(s, i, relay_read_bytes);
    }
    unsigned claimant = 50;
    for (uint64_t until = simn_now(s) + 30 * SEC; claimant == 50 && simn_now(s) < until;) {
        simn_run_until(s, simn_now(s) + 10);
        for (unsigned i = 0; i < 50 && claimant == 50; i++)
            if (CORE_COUNTER(s, i, claims) > before[i])
                claimant = i;
    }
    CHECK_INT(claimant, <, 50);
    simn_run_until(s, simn_now(s) + layer * SEC / reg_rate / 2);
    /* the standby read the claimant's download as it ran (at the claimant's uplink's pace,
     * slower than the registry's here), the others one another's, none ahead of the claimant:
     * what the one furthest on had not read yet, only the claimant held */
    uint64_t relayed = 0, reg_before = simn_registry_bytes(s);
    for (unsigned i = 0; i < 50; i++)
        if (i != claimant)
            relayed = MAX(relayed, CORE_COUNTER(s, i, relay_read_bytes) - read0[i]);
    simn_kill(s, claimant);
    uint64_t cut = simn_registry_bytes(s) - reg_before; /* the claimant's download */
    CHECK_INT(cut, >=, layer * 4 / 10);
    CHECK_INT(relayed, >=, layer / 8);
    CHECK_INT(relayed, <=, cut);
    struct storm st = {s, t, 50, claimant};
    CHECK(simn_run(s, storm_answered, &st, simn_now(s) + 600 * SEC));
    uint64_t takeovers = 0;
    for (unsigned i = 0; i < 50; i++) {
        if (i == claimant)
            continue;
        const char *a = simn_answer(s, t[i]);
        CHECK(a && strstr(a, "\"ok\":true"));
        CHECK(memstore_layer_complete(simn_store(s, i), im2.layer));
        takeovers += CORE_COUNTER(s, i, claim_takeovers);
    }
    CHECK_INT(takeovers, ==, 1);
    /* the standby took over and asked the registry for the rest only: the layer once, what only
     * the claimant held, and the manifests */
    uint64_t only_claimant = cut > relayed ? cut - relayed : 0;
    CHECK_INT(simn_registry_bytes(s) - reg0, <=, layer * 105 / 100 + only_claimant + 50 * 64);
    CHECK_INT(simn_registry_bytes(s) - reg0, >=, layer);
    simn_free(s);
}

static bool job_back(void *arg)
{
    return ((struct node_job *)arg)->rc != 1;
}

/* Node i's contact, as the simulator addresses it. */
static struct dht_contact contact_of(struct simn *s, unsigned i)
{
    struct dht_contact c = {
        .addr = {4,
                 {10, (uint8_t)((i + 1) >> 16), (uint8_t)((i + 1) >> 8), (uint8_t)(i + 1)},
                 SIMN_PORT}};
    memcpy(c.id, simn_id(s, i), DHT_ID_LEN);
    return c;
}

/* node 1 reads bytes [off, off + len) of node 0's download; returns the job's code, and the
 * virtual time it took in *ms */
static int relay_read(struct simn *s, const uint8_t *d, uint64_t off, uint32_t len, struct buf *out,
                      uint64_t *ms)
{
    struct node_job j = {.kind = NODE_JOB_BLOB,
                         .has_src = true,
                         .off = off,
                         .len = len,
                         .max = 4u << 20,
                         .out = out,
                         .src = contact_of(s, 0)};
    memcpy(j.digest, d, DIGEST_LEN);
    uint64_t t0 = simn_now(s);
    out->len = 0;
    simn_job(s, 1, &j);
    CHECK(simn_run(s, job_back, &j, t0 + 60 * SEC));
    *ms = simn_now(s) - t0;
    return j.rc;
}

TEST(node_relay_answers_a_download_s_bytes_as_they_come)
{
    struct simn *s = cluster_new(71);
    unsigned zero = 0;
    CHECK(simn_add(s, NULL, 0) == 0);
    CHECK(simn_add(s, &zero, 1) == 1);
    simn_run_until(s, simn_now(s) + 2 * SEC);
    uint8_t d[DIGEST_LEN] = {0x77};
    struct buf out = {0};
    uint64_t ms;
    /* a download at 1 MiB/s: bytes 0.5-1.5 MiB are answered once written, 1.5 s after it began */
    CHECK(memstore_dl_set(simn_store(s, 0), d, 4u << 20, 0, 1u << 20) == 0);
    CHECK_INT(relay_read(s, d, 512u << 10, 1u << 20, &out, &ms), ==, 0);
    CHECK_INT(out.len, ==, 1u << 20);
    CHECK_INT(ms, >=, 1500 - 10);
    CHECK_INT(ms, <=, 1500 + 50);
    CHECK_INT(counter(s, 0, "relay_waits"), ==, 1);
    CHECK_INT(counter(s, 0, "relayed_bytes"), ==, 1u << 20);
    CHECK_INT(counter(s, 1, "relay_read_bytes"), ==, 1u << 20);
    /* bytes written already come at once */
    CHECK_INT(relay_read(s, d, 0, 1u << 20, &out, &ms), ==, 0);
    CHECK_INT(ms, <=, 50);
    CHECK_INT(counter(s, 0, "relay_waits"), ==, 1);
    /* one peer's waiting requests are capped: past NODE_PARKED_PER_LINK, busy at once */
    CHECK(memstore_dl_set(simn_store(s, 0), d, 4u << 20, 2u << 20, 0) == 0);
    struct node_job w[NODE_PARKED_PER_LINK + 1];
    struct buf wo[NODE_PARKED_PER_LINK + 1] = {{0}};
    uint64_t t0 = simn_now(s);
    for (unsigned i = 0; i <= NODE_PARKED_PER_LINK; i++) {
        w[i] = (struct node_job){.kind = NODE_JOB_BLOB,
                                 .has_src = true,
                                 .off = 3u << 20,
                                 .len = 4096,
                                 .max = 4u << 20,
                                 .out = &wo[i],
                                 .src = contact_of(s, 0)};
        memcpy(w[i].digest, d, DIGEST_LEN);
        simn_job(s, 1, &w[i]);
    }
    CHECK(simn_run(s, job_back, &w[NODE_PARKED_PER_LINK], t0 + 60 * SEC));
    CHECK_INT(w[NODE_PARKED_PER_LINK].rc, ==, -EBUSY);
    CHECK_INT(simn_now(s) - t0, <=, 50);
    for (unsigned i = 0; i < NODE_PARKED_PER_LINK; i++) {
        CHECK(simn_run(s, job_back, &w[i], t0 + 60 * SEC));
        CHECK_INT(w[i].rc, ==, -EBUSY); /* the download stands still: after NODE_PARK_MAX_MS */
        buf_release(&wo[i]);
    }
    CHECK_INT(simn_now(s) - t0, >=, NODE_PARK_MAX_MS);
    buf_release(&wo[NODE_PARKED_PER_LINK]);
    CHECK_INT(counter(s, 0, "relay_busy"), ==, NODE_PARKED_PER_LINK + 1);
    /* a download that stands still: busy after NODE_PARK_MAX_MS, not a hang */
    CHECK(memstore_dl_set(simn_store(s, 0), d, 4u << 20, 3u << 20, 0) == 0);
    CHECK_INT(relay_read(s, d, 3u << 20, 1u << 20, &out, &ms), ==, -EBUSY);
    CHECK_INT(ms, >=, NODE_PARK_MAX_MS);
    CHECK_INT(ms, <=, NODE_PARK_MAX_MS + 50);
    CHECK_INT(counter(s, 0, "relay_busy"), ==, NODE_PARKED_PER_LINK + 2);
    /* past the end: nothing; a download that failed: not found, at once */
    CHECK_INT(relay_read(s, d, 4u << 20, 1u << 20, &out, &ms), ==, 0);
    CHECK_INT(out.len, ==, 0);
    memstore_dl_end(simn_store(s, 0), d, -EIO);
    CHECK_INT(relay_read(s, d, 0, 1u << 20, &out, &ms), ==, AFSP_E_NOTFOUND);
    CHECK_INT(ms, <=, 50);
    /* idle longer than every timeout (the link closed meanwhile): a new download is read the
     * same way, over a new link */
    simn_run_until(s, simn_now(s) + 2 * longest_timeout());
    uint8_t d2[DIGEST_LEN] = {0x78};
    CHECK(memstore_dl_set(simn_store(s, 0), d2, 4u << 20, 1u << 20, 1u << 20) == 0);
    CHECK_INT(relay_read(s, d2, 1u << 20, 1u << 20, &out, &ms), ==, 0);
    CHECK_INT(out.len, ==, 1u << 20);
    CHECK_INT(ms, >=, 1 * SEC - 10);
    CHECK_INT(ms, <=, 1 * SEC + 100);
    /* a node that is gone: not found once the dial fails */
    simn_kill(s, 0);
    CHECK(relay_read(s, d2, 0, 1u << 20, &out, &ms) < 0);
    buf_release(&out);
    simn_free(s);
}
