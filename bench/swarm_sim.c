/*
 * swarm_sim.c - many node cores (sim/, the real node/ code) on a virtual network whose uplinks
 * carry RATE bytes a second each: one node holds a layer of 64 chunks, all the others pull it
 * at once. For each network size, chunk order (rarest-first, random-first) and number of serving
 * slots, over several seeds: the time until the last pull ends against the ideal (the layer's
 * size over one uplink's rate: what one fetcher alone needs from the holder), the chunks the
 * holder sent (per copy of the layer), and the share of all uplinks' capacity used. Virtual
 * time; no wall-clock figure here.
 *
 * usage: swarm_sim [SIZES (8,50,200)] [SLOTS (4,8)] [SEEDS (3)] [CHUNK_KIB (256)] [RATE_KIB (2560)]
 */
#include "../node/node.h"
#include "../sim/sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCHUNKS 64

struct pulls {
    struct simn *s;
    int *t;
    unsigned n;
};

static bool answered(void *arg)
{
    struct pulls *p = arg;
    for (unsigned i = 1; i < p->n; i++)
        if (!simn_answer(p->s, p->t[i]))
            return false;
    return true;
}

struct run {
    double ratio, served, util;
    bool ok;
};

/* One pull of one layer by n - 1 nodes at once. */
static struct run run_one(unsigned n, unsigned slots, bool random_first, uint64_t seed,
                          uint32_t chunk_len, uint64_t rate)
{
    struct run r = {0};
    struct simn *s;
    struct simn_cfg cfg = {
        .seed = seed, .up_rate = rate, .random_first = random_first, .serve_chunks = slots};
    unsigned zero = 0;
    if (simn_new(&s, &cfg) < 0 || simn_add(s, NULL, 0) != 0)
        return r;
    for (unsigned i = 1; i < n; i++)
        if (simn_add(s, &zero, 1) != (int)i)
            return r;
    /* the image: one layer of NCHUNKS chunks, whole at node 0 (sim/ manifest, see sim.h) */
    uint8_t tag[2] = {(uint8_t)seed, 0x77}, layer[DIGEST_LEN], man[12 + DIGEST_LEN + 8], md[32];
    sha256_buf(tag, sizeof tag, layer);
    memcpy(man, "MEMMAN01", 8);
    put_le32(man + 8, 1);
    memcpy(man + 12, layer, DIGEST_LEN);
    put_le32(man + 12 + DIGEST_LEN, NCHUNKS);
    put_le32(man + 16 + DIGEST_LEN, chunk_len);
    sha256_buf(man, sizeof man, md);
    if (memstore_layer_add(simn_store(s, 0), layer, NCHUNKS, chunk_len, true) < 0 ||
        memstore_blob_add(simn_store(s, 0), md, man, sizeof man, true) < 0)
        return r;
    simn_store_changed(s, 0);
    simn_run_until(s, simn_now(s) + 5000); /* the DHT settles */
    char ref[DIGEST_STR_LEN + 1], req[256];
    snprintf(req, sizeof req, "{\"cmd\":\"pull\",\"ref\":\"%s\"}", digest_fmt(md, ref));
    int *t = calloc(n, sizeof *t);
    struct pulls p = {s, t, n};
    uint64_t up0 = 0, up1 = 0, t0 = simn_now(s);
    for (unsigned i = 0; i < n; i++)
        up0 += simn_up_bytes(s, i);
    for (unsigned i = 1; i < n; i++)
        t[i] = simn_ctl(s, i, req);
    r.ok = simn_run(s, answered, &p, t0 + 3600 * 1000);
    for (unsigned i = 1; r.ok && i < n; i++)
        r.ok = strstr(simn_answer(s, t[i]), "\"ok\":true") &&
               memstore_layer_complete(simn_store(s, i), layer);
    r.ok = r.ok && simn_registry_fetches(s) == 0;
    double secs = (double)(simn_now(s) - t0) / 1000, ideal = (double)NCHUNKS * chunk_len / rate;
    for (unsigned i = 0; i < n; i++)
        up1 += simn_up_bytes(s, i);
    r.ratio = secs / ideal;
    r.served = (double)node_counters_get(simn_node(s, 0))->chunks_served / NCHUNKS;
    r.util = (double)(up1 - up0) / ((double)n * (double)rate * secs);
    free(t);
    simn_free(s);
    return r;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* "1,2,3" into v (at most cap); returns how many. */
static size_t list(const char *text, unsigned *v, size_t cap)
{
    size_t n = 0;
    for (const char *p = text; *p && n < cap; p = strchr(p, ',') ? strchr(p, ',') + 1 : "")
        v[n++] = (unsigned)strtoul(p, NULL, 10);
    return n;
}

int main(int argc, char **argv)
{
    unsigned sizes[8], slotv[8];
    size_t nsizes = list(argc > 1 ? argv[1] : "8,50,200", sizes, 8);
    size_t nslots = list(argc > 2 ? argv[2] : "4,8", slotv, 8);
    unsigned seeds = argc > 3 ? (unsigned)atoi(argv[3]) : 3;
    uint32_t chunk_len = (argc > 4 ? (uint32_t)atoi(argv[4]) : 256) << 10;
    uint64_t rate = (argc > 5 ? (uint64_t)atoll(argv[5]) : 2560) << 10;
    log_level = LOG_ERROR;
    printf("| nodes | slots | order | time / ideal: median (best, worst) | holder sent, layers: "
           "median (worst) | uplinks used | failed |\n|---|---|---|---|---|---|---|\n");
    for (size_t a = 0; a < nsizes; a++)
        for (size_t b = 0; b < nslots; b++) {
            double ratio[2][64], served[2][64], util[2][64];
            unsigned failed[2] = {0, 0};
            for (unsigned k = 0; k < seeds && k < 64; k++)
                for (int o = 0; o < 2; o++) { /* interleaved: the same seed for both orders */
                    struct run r = run_one(sizes[a], slotv[b], o == 1, 1000 + k, chunk_len, rate);
                    ratio[o][k] = r.ratio;
                    served[o][k] = r.served;
                    util[o][k] = r.util;
                    failed[o] += !r.ok;
                }
            for (int o = 0; o < 2; o++) {
                unsigned m = seeds < 64 ? seeds : 64;
                qsort(ratio[o], m, sizeof(double), cmp_d);
                qsort(served[o], m, sizeof(double), cmp_d);
                qsort(util[o], m, sizeof(double), cmp_d);
                printf("| %u | %u | %s | %.2f (%.2f, %.2f) | %.2f (%.2f) | %.0f%% | %u |\n",
                       sizes[a], slotv[b], o ? "random" : "rarest", ratio[o][m / 2], ratio[o][0],
                       ratio[o][m - 1], served[o][m / 2], served[o][m - 1], 100 * util[o][m / 2],
                       failed[o]);
                fflush(stdout);
            }
        }
    return 0;
}
