/*
 * dht_hops.c - lookups in networks of in-process DHT cores (sim/): hops, messages and virtual
 * latency per lookup, and how often a lookup found the true k closest nodes, at several
 * network sizes and alphas. Virtual time: 1-5 ms a message; no wall-clock figure here.
 *
 * usage: dht_hops [SIZES (200,1000,5000)] [ALPHAS (3)] [LOOKUPS (500)] [SEED (1)]
 */
#include "../dht/dht.h"
#include "../sim/sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct res {
    bool done;
    int rc;
    unsigned hops, msgs, n;
    uint64_t ms;
    uint8_t closest[DHT_K_MAX][DHT_ID_LEN];
};

static void on_lookup(void *arg, int rc, const struct dht_result *r)
{
    struct res *x = arg;
    x->done = true;
    x->rc = rc;
    x->hops = r->hops;
    x->msgs = r->messages;
    x->ms = r->ms;
    x->n = (unsigned)r->nclosest;
    for (size_t i = 0; i < r->nclosest; i++)
        memcpy(x->closest[i], r->closest[i].id, DHT_ID_LEN);
}

static bool done(void *arg)
{
    return ((struct res *)arg)->done;
}

static int cmp_u(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return x < y ? -1 : x > y;
}

/* The k-th closest node to target but `except`: is id among the k closest? */
static bool exact(struct sim *s, const uint8_t *target, unsigned except, const struct res *r)
{
    /* the farthest of the k found must be closer than or as close as every node not found */
    if (r->n < DHT_K)
        return false;
    const uint8_t *far = r->closest[r->n - 1];
    for (unsigned i = 0; i < sim_nodes(s); i++) {
        const uint8_t *id = sim_contact(s, i)->id;
        if (i == except || dht_distance_cmp(target, id, far) >= 0)
            continue;
        bool found = false;
        for (unsigned j = 0; j < r->n && !found; j++)
            found = !memcmp(r->closest[j], id, DHT_ID_LEN);
        if (!found)
            return false;
    }
    return true;
}

static void run(unsigned n, unsigned alpha, unsigned lookups, uint64_t seed)
{
    struct sim *s;
    struct sim_cfg cfg = {.seed = seed, .dht = {.alpha = alpha}};
    if (sim_new(&s, &cfg) < 0)
        exit(1);
    for (unsigned i = 0; i < n; i++) {
        if (sim_node_add(s) != (int)i)
            exit(1);
        if (i)
            sim_seed(s, i, 0);
        sim_run_until(s, sim_now(s) + 20);
    }
    sim_run_until(s, sim_now(s) + 30000);
    unsigned *hops = malloc(lookups * sizeof *hops), *msgs = malloc(lookups * sizeof *msgs);
    unsigned *ms = malloc(lookups * sizeof *ms), nexact = 0, failed = 0;
    for (unsigned q = 0; q < lookups; q++) {
        unsigned from = (unsigned)(sim_rand(s) % n);
        uint8_t target[DHT_ID_LEN];
        for (unsigned i = 0; i < DHT_ID_LEN; i += 8) {
            uint64_t v = sim_rand(s);
            memcpy(target + i, &v, 8);
        }
        struct res r = {0};
        if (dht_find_node(sim_dht(s, from), target, on_lookup, &r, sim_now(s), NULL) < 0)
            exit(1);
        sim_flush(s, from);
        if (!sim_run(s, done, &r, sim_now(s) + 60000) || r.rc < 0)
            failed++;
        hops[q] = r.hops;
        msgs[q] = r.msgs;
        ms[q] = (unsigned)r.ms;
        nexact += exact(s, target, from, &r);
    }
    qsort(hops, lookups, sizeof *hops, cmp_u);
    qsort(msgs, lookups, sizeof *msgs, cmp_u);
    qsort(ms, lookups, sizeof *ms, cmp_u);
    unsigned p99 = lookups * 99 / 100;
    printf("nodes=%u alpha=%u lookups=%u hops_p50=%u hops_p99=%u hops_max=%u msgs_p50=%u "
           "msgs_p99=%u vms_p50=%u vms_p99=%u exact_k=%.1f%% failed=%u\n",
           n, alpha, lookups, hops[lookups / 2], hops[p99], hops[lookups - 1], msgs[lookups / 2],
           msgs[p99], ms[lookups / 2], ms[p99], 100.0 * nexact / lookups, failed);
    fflush(stdout);
    free(hops);
    free(msgs);
    free(ms);
    sim_free(s);
}

int main(int argc, char **argv)
{
    const char *sizes = argc > 1 ? argv[1] : "200,1000,5000";
    const char *alphas = argc > 2 ? argv[2] : "3";
    unsigned lookups = argc > 3 ? (unsigned)atoi(argv[3]) : 500;
    uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    for (const char *a = alphas; *a;) {
        unsigned alpha = (unsigned)strtoul(a, (char **)&a, 10);
        for (const char *p = sizes; *p;) {
            unsigned n = (unsigned)strtoul(p, (char **)&p, 10);
            run(n, alpha, lookups, seed);
            if (*p == ',')
                p++;
        }
        if (*a == ',')
            a++;
    }
    return 0;
}
