/*
 * dht_util.h - what the DHT's tests share (test_dht.c, test_dht_claims.c): contacts made by
 * hand, a core fed messages by hand, and a network of cores on the in-memory network (sim/).
 */
#ifndef AFSP_TEST_DHT_UTIL_H
#define AFSP_TEST_DHT_UTIL_H

#include "../../dht/dht.h"
#include "../../sim/sim.h"
#include "../../util/util.h"
#include "test.h"

static inline struct dht_contact contact(uint8_t b, uint16_t port)
{
    struct dht_contact c = {.addr = {.family = 4, .ip = {127, 0, 0, b}, .port = port}};
    memset(c.id, b, DHT_ID_LEN);
    return c;
}

static inline int feed(struct dht *d, const struct dht_contact *from, const struct dht_msg *m,
                       uint64_t now)
{
    uint8_t buf[DHT_MSG_MAX];
    int len = dht_msg_encode(m, buf);
    CHECK(len > 0);
    return dht_input(d, from->id, &from->addr, buf, (size_t)len, now);
}

static inline bool take(struct dht *d, struct dht_out *o, struct dht_msg *m)
{
    if (!dht_output(d, o))
        return false;
    CHECK(dht_msg_parse(o->msg, o->len, m) == 0);
    return true;
}

static inline struct sim *network(uint64_t seed, unsigned n)
{
    struct sim *s;
    struct sim_cfg cfg = {.seed = seed};
    CHECK(sim_new(&s, &cfg) == 0);
    for (unsigned i = 0; i < n; i++) {
        CHECK(sim_node_add(s) == (int)i);
        if (i)
            sim_seed(s, i, 0);
        sim_run_until(s, sim_now(s) + 20); /* nodes join one after another */
    }
    sim_run_until(s, sim_now(s) + 30000);
    return s;
}

/* The k up nodes closest to target, by brute force. */
static inline unsigned true_closest(struct sim *s, const uint8_t *target, unsigned except,
                                    uint8_t out[][DHT_ID_LEN], unsigned k)
{
    unsigned n = 0;
    for (unsigned i = 0; i < sim_nodes(s); i++) {
        if (i == except || !sim_node_is_up(s, i))
            continue;
        const uint8_t *id = sim_contact(s, i)->id;
        if (n == k && dht_distance_cmp(target, id, out[n - 1]) >= 0)
            continue;
        unsigned pos = n < k ? n : k - 1;
        while (pos > 0 && dht_distance_cmp(target, id, out[pos - 1]) < 0) {
            memcpy(out[pos], out[pos - 1], DHT_ID_LEN);
            pos--;
        }
        memcpy(out[pos], id, DHT_ID_LEN);
        if (n < k)
            n++;
    }
    return n;
}

static inline void random_key(struct sim *s, uint8_t key[DHT_ID_LEN])
{
    for (unsigned i = 0; i < DHT_ID_LEN; i += 8) {
        uint64_t v = sim_rand(s);
        memcpy(key + i, &v, 8);
    }
}

#endif
