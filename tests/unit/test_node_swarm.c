/*
 * test_node_swarm.c - many nodes fetching one layer at once (docs/swarm.md): its holder sends
 * each chunk a few times, and the fetchers pass the chunks on among themselves.
 */
#include "nodes.h"

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
