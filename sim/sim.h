/*
 * sim.h - test and simulation support, never in the production binary (its own archive,
 * libafsp_sim.a): the unit tests, the fuzz targets and the benchmarks drive the real cores
 * through it.
 *
 *   net.c   many DHT cores over an in-memory network
 *   pipe.c  the bytes between two in-memory connections (p2p.h)
 */
#ifndef AFSP_SIM_H
#define AFSP_SIM_H

#include "../dht/dht.h"
#include "../p2p/p2p.h"

/* ---- net.c -------------------------------------------------------------------------------
 * Many DHT cores in one process over an in-memory network, deterministically: a virtual clock,
 * one event queue (message deliveries and each core's deadline), one seeded RNG (rng_next64).
 * The unit tests and the hop benchmarks drive the real dht/ code through it.
 *
 * Node i listens at 10.x.y.z:7070 with x.y.z = i + 1; a message reaches the node at its
 * address only if that node is up and has the ID it was sent to. Latency is uniform in
 * [lat_min_ms, lat_max_ms]. A message to a node that is down is dropped (the sender finds out by
 * its timeout), unless refuse_dead, when the sender is told at once (a refused connection).
 */
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

/* ---- pipe.c ------------------------------------------------------------------------------
 * What a socket pair is to two connections, in one process: the bytes one has pending
 * (p2p_conn_pending) go to the other's input at the time the caller gives. The receiver reads
 * them straight from the sender's buffer, so its callbacks must not queue bytes on the sender
 * during a move (they may on the receiver: answers, cancels); what it took is then marked sent
 * on the sender. A move that ends with an error other than -EAGAIN marks everything sent: a
 * broken link loses the rest.
 */

/* Called after every input call of sim_feed or sim_conn_move on the receiver to: rc is what the
 * call returned, offered and used its byte counts. Returns 0 to go on, or the code the move
 * stops with (rc, to stop where the input failed). Receiving frames here (p2p_conn_recv) is
 * what lets a move go past a receiver holding a whole frame. */
typedef int (*sim_input_cb)(void *arg, struct p2p_conn *to, int rc, size_t offered, size_t used);

/* Offers the n bytes at p to to, step bytes per input call (0: all that are left), at now_ms,
 * until all are taken or the move stops; cb (may be NULL) runs after each call. Returns 0, the
 * input's error (cb NULL) or cb's code, or -EAGAIN when a call took nothing: to holds a whole
 * frame that no one received. */
int sim_feed(struct p2p_conn *to, const uint8_t *p, size_t n, size_t step, uint64_t now_ms,
             sim_input_cb cb, void *arg);
/* sim_feed of what from has pending; what to took is marked sent on from (on -EAGAIN the rest
 * stays pending). */
int sim_conn_move(struct p2p_conn *from, struct p2p_conn *to, size_t step, uint64_t now_ms,
                  sim_input_cb cb, void *arg);
/* Copies what c has pending into buf and marks it sent, if it fits in cap bytes; otherwise
 * takes nothing. Returns how many bytes were pending. */
size_t sim_conn_take(struct p2p_conn *c, uint8_t *buf, size_t cap);
/* Marks what c has pending as sent (a reader that drops it); returns how many bytes. */
size_t sim_conn_drop(struct p2p_conn *c);

/* What from has pending goes to to's p2p_peer_input (its frames dispatched to to's ops), as
 * sim_conn_move. Returns 0, to's error, or -EAGAIN (to took nothing). */
int sim_peer_move(struct p2p_peer *from, struct p2p_peer *to, uint64_t now_ms);
/* Both ways until nothing moves: in turn a, then b, first produces answers (p2p_peer_pump with
 * pump bytes as the budget; 0: no pumping) and moves what it has pending to the other. Returns
 * 0 or the first move's error, which ends it. */
int sim_peer_shuttle(struct p2p_peer *a, struct p2p_peer *b, size_t pump, uint64_t now_ms);

#endif
