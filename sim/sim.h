/*
 * sim.h - many DHT cores in one process over an in-memory network, deterministically: a
 * virtual clock, one event queue (message deliveries and each core's deadline), one seeded
 * RNG. The unit tests and the hop benchmarks drive the real dht/ code through it.
 *
 * Node i listens at 10.x.y.z:7070 with x.y.z = i + 1; a message reaches the node at its
 * address only if that node is up and has the ID it was sent to. Latency is uniform in
 * [lat_min_ms, lat_max_ms]. A message to a node that is down is dropped (the sender finds out by
 * its timeout), unless refuse_dead, when the sender is told at once (a refused connection).
 */
#ifndef AFSP_SIM_H
#define AFSP_SIM_H

#include "../dht/dht.h"

struct sim_cfg {
    uint64_t seed;
    unsigned lat_min_ms, lat_max_ms; /* 0, 0: 1 to 5 ms */
    bool refuse_dead;
    struct dht_cfg dht; /* the template for every core: k, alpha, timings (id, rng, now unused) */
};

struct sim;

int sim_new(struct sim **out, const struct sim_cfg *cfg);
void sim_free(struct sim *s);

/* A new node with a random ID, up; returns its index or a negative code. */
int sim_node_add(struct sim *s);
/* Node i goes down (its core is freed: what it held is gone), or comes back up with the same
 * ID and nothing else (an empty table and store: it must be seeded again). */
void sim_node_down(struct sim *s, unsigned i);
int sim_node_up(struct sim *s, unsigned i);
bool sim_node_is_up(const struct sim *s, unsigned i);
/* Node i's core (NULL when down) and contact. Calls on the core must be followed by
 * sim_flush(s, i) so that what it wants to send is sent. */
struct dht *sim_dht(struct sim *s, unsigned i);
const struct dht_contact *sim_contact(const struct sim *s, unsigned i);
void sim_flush(struct sim *s, unsigned i);
unsigned sim_nodes(const struct sim *s);
/* Node i learns of node j as a seed (dht_add_contact). */
void sim_seed(struct sim *s, unsigned i, unsigned j);

uint64_t sim_now(const struct sim *s);
/* Runs events until the clock reaches until. */
void sim_run_until(struct sim *s, uint64_t until);
/* Runs until done(arg) is true (checked after every event) or the clock passes limit; returns
 * whether done. */
bool sim_run(struct sim *s, bool (*done)(void *arg), void *arg, uint64_t limit);
/* Messages delivered, and dropped (to a node down or a wrong ID), since the start. */
uint64_t sim_delivered(const struct sim *s);
uint64_t sim_dropped(const struct sim *s);
/* A number from the sim's RNG (for tests that pick nodes and keys deterministically). */
uint64_t sim_rand(struct sim *s);

#endif
