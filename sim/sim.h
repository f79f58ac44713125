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
#include "../node/node.h"
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
/* ---- queue.c: the event queue both simulators run on ----------------------------------------
 * Events (the caller's pointers) in order of time, then of pushing. */
struct sim_qent {
    uint64_t t, seq;
    void *ev;
};
struct sim_queue {
    struct sim_qent *v;
    size_t n, cap;
    uint64_t seq;
};
/* Returns 0 or -ENOMEM (ev was not queued). */
int sim_queue_push(struct sim_queue *q, uint64_t t, void *ev);
/* Whether an event is due by until. */
bool sim_queue_due(const struct sim_queue *q, uint64_t until);
/* The first event (and its time into *t), or NULL when empty. */
void *sim_queue_pop(struct sim_queue *q, uint64_t *t);
/* Frees every event left (free_ev) and the queue's array. */
void sim_queue_release(struct sim_queue *q, void (*free_ev)(void *ev));

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

/* ---- memstore.c -----------------------------------------------------------------------------
 * An in-memory store behind node_store_ops: layers whose chunk i is a pattern of the layer's
 * digest and i (chunk_len bytes each), a bitmap of the chunks held, manifests as small blobs,
 * and a count of every call. A chunk checks out when its bytes are the pattern; a store that
 * lies (memstore_lie) serves every byte off by one bit. Its index and manifest encodings are the
 * simulator's own. Fetch handles (node_job.fetch) come from memstore_fetch_open. */
struct memstore;
struct memstore_calls {
    uint64_t blob, index, held, layer_open, layer_close, read, fetch_open;
};
extern const struct node_store_ops memstore_ops; /* store_arg: a struct memstore * */
#define MEMSTORE_INDEX_LEN 16

int memstore_new(struct memstore **out);
void memstore_free(struct memstore *m);
const struct memstore_calls *memstore_calls(const struct memstore *m);
void memstore_lie(struct memstore *m, bool lie);
/* A busy store fails every layer_open with -EBUSY (its node answers chunk requests busy). */
void memstore_busy(struct memstore *m, bool busy);
/* A layer of nchunks chunks, held whole or with no chunk yet (a partial layer). -EEXIST if
 * held. */
int memstore_layer_add(struct memstore *m, const uint8_t digest[DIGEST_LEN], uint32_t nchunks,
                       uint32_t chunk_len, bool whole);
/* Who sent the index of a layer (from: P2P_ID_LEN bytes, NULL if not known), and whether that
 * index is false: the chunks it names are then a lying store's bytes, so that a true chunk fails
 * its check. */
void memstore_layer_index(struct memstore *m, const uint8_t digest[DIGEST_LEN], const uint8_t *from,
                          bool false_index);
/* What the memstore takes for the SHA-256 of the index from sent (false or not). */
void memstore_index_digest(const uint8_t *from, bool false_index, uint8_t ix[DIGEST_LEN]);
bool memstore_layer_known(const struct memstore *m, const uint8_t digest[DIGEST_LEN]);
bool memstore_layer_complete(const struct memstore *m, const uint8_t digest[DIGEST_LEN]);
uint32_t memstore_layer_present(const struct memstore *m, const uint8_t digest[DIGEST_LEN]);
/* Handles open now: layers opened (layer_open) and fetch handles, not yet closed. */
unsigned memstore_handles_open(const struct memstore *m);
/* Evicts a layer (handles open on it see no chunk after). */
void memstore_layer_drop(struct memstore *m, const uint8_t digest[DIGEST_LEN]);
/* Chunk i of a layer is gone (a store that lost it; the layer is then held in part). */
void memstore_chunk_drop(struct memstore *m, const uint8_t digest[DIGEST_LEN], uint32_t i);
/* Chunk i of a layer held in part is here now (checked elsewhere: a relay's bytes). */
void memstore_chunk_add(struct memstore *m, const uint8_t digest[DIGEST_LEN], uint32_t i);
int memstore_blob_add(struct memstore *m, const uint8_t digest[DIGEST_LEN], const void *p, size_t n,
                      bool manifest);
bool memstore_blob_has(const struct memstore *m, const uint8_t digest[DIGEST_LEN]);
void memstore_index_encode(uint32_t nchunks, uint32_t chunk_len, uint8_t out[MEMSTORE_INDEX_LEN]);
int memstore_index_decode(const uint8_t *p, size_t n, uint32_t *nchunks, uint32_t *chunk_len);
/* A layer held whole or in part, to be filled (NULL: not held); closed with memstore_fetch_close.
 */
void *memstore_fetch_open(struct memstore *m, const uint8_t digest[DIGEST_LEN]);
void memstore_fetch_close(struct memstore *m, void *fetch);
/* A download of a layer under way here (node_store_ops dl_*, what the node relays): base bytes
 * of size written now, rate more a second after, on the clock now points at (set first with
 * memstore_set_clock). Set again as it goes; ended with its result (rc < 0: failed). */
void memstore_set_clock(struct memstore *m, const uint64_t *now);
int memstore_dl_set(struct memstore *m, const uint8_t digest[DIGEST_LEN], uint64_t size,
                    uint64_t base, uint64_t rate);
void memstore_dl_end(struct memstore *m, const uint8_t digest[DIGEST_LEN], int rc);

/* The simulator's relay (store_pull's feed_stream): pieces, busy answers in a row and claims
 * asked again before the registry. */
#define SIMN_RELAY_PIECE (1u << 20)
#define SIMN_RELAY_CHECK (8u << 20) /* the claim asked again: the holder done, a partial layer */
#define SIMN_RELAY_BUSY_MAX 5
#define SIMN_RELAY_ASKS_MAX 8

/* ---- nodes.c ----------------------------------------------------------------------------------
 * Node cores wired by in-memory links on a virtual clock (the clock starts at 1000 ms). Node i
 * listens at 10.x.y.z:SIMN_PORT (x.y.z = i + 1) and has its own memstore; its tasks run as the
 * daemon's do, job by job, and fall back to the registry (simn_registry: a memstore every node
 * reaches; a manifest there is "MEMMAN01", u32 n, n times (layer digest, u32 nchunks, u32
 * chunk_len)). Calls that change a node (simn_ctl, simn_stop, ...) take its effects at once. */
#define SIMN_PORT 7070

struct simn_cfg {
    uint64_t seed;
    unsigned lat_ms;                /* one way, every link; 0: 1 ms */
    const struct node_durations *t; /* every node's; NULL: the defaults */
    size_t links_max;               /* 0: NODE_LINKS_MAX */
    unsigned k, alpha;              /* the DHT's; 0: the defaults */
    /* Each node's uplink, bytes a second (0: no limit): what it sends leaves one byte after
     * another at this rate, then takes the latency; a node's links take turns, a piece of
     * SIMN_UP_QUANTUM bytes each, and a link's bytes wait in its core (its send budget) while
     * SIMN_UP_BUFFER bytes wait in the uplink, as in a socket's buffer. */
    uint64_t up_rate;
    /* The registry's rate to each node, bytes a second (0: no limit): a layer no peer has is
     * downloaded whole (after the layer's claim, as the daemon does), and shows in the store
     * when its last byte has come. */
    uint64_t registry_rate;
    bool random_first;     /* every node's node_cfg.random_first */
    unsigned serve_chunks; /* ... and node_cfg.serve_chunks */
};
#define SIMN_UP_QUANTUM (16u << 10)
#define SIMN_UP_BUFFER (256u << 10)
struct simn;

int simn_new(struct simn **out, const struct simn_cfg *cfg);
void simn_free(struct simn *s);
/* A node, up, with an empty store and seeds (indices of nodes, dialed at start); returns its
 * index or a negative code. */
int simn_add(struct simn *s, const unsigned *seeds, size_t nseeds);
struct node *simn_node(struct simn *s, unsigned i); /* NULL while down */
struct memstore *simn_store(struct simn *s, unsigned i);
const uint8_t *simn_id(const struct simn *s, unsigned i);
/* Connections node i tried to open (NODE_FX_DIAL), since it was added. */
uint64_t simn_dials(const struct simn *s, unsigned i);
/* Open links between i and j (both ends up). */
unsigned simn_links(const struct simn *s, unsigned i, unsigned j);
/* Which of i and j dialed the one open link between them (-1: none, or more than one). */
int simn_link_dialer(const struct simn *s, unsigned i, unsigned j);
bool simn_stopped(const struct simn *s, unsigned i);

/* Node i dies (kill -9: its peers see its links reset; its tasks end) and comes back (same
 * identity and store); pauses (SIGSTOP: what it is sent waits, its timers wait) and goes on. */
void simn_kill(struct simn *s, unsigned i);
int simn_restart(struct simn *s, unsigned i);
void simn_pause(struct simn *s, unsigned i, bool paused);
/* Every link between i and j closes at both ends, now. */
void simn_cut(struct simn *s, unsigned i, unsigned j);
/* A connection to node i from addr that never sends a byte (an outsider holding a handshake
 * open: no cluster key needed). Returns whether node i took it. */
bool simn_accept_silent(struct simn *s, unsigned i, const struct dht_addr *from);
/* The links between i and j carry nothing (bytes wait), or carry again. */
void simn_freeze(struct simn *s, unsigned i, unsigned j, bool frozen);

/* A control request line to node i; returns a ticket whose answer simn_answer gives (NULL until
 * the node answers). simn_ctl_gone: the client goes away. */
int simn_ctl(struct simn *s, unsigned i, const char *request);
const char *simn_answer(const struct simn *s, int ticket);
void simn_ctl_gone(struct simn *s, unsigned i, int ticket);
void simn_store_changed(struct simn *s, unsigned i);
void simn_stop(struct simn *s, unsigned i);

struct memstore *simn_registry(struct simn *s);
/* Blobs, indexes and chunks the registry served. */
uint64_t simn_registry_fetches(const struct simn *s);
/* Submits job j (the caller's: its out buffer, fetch handle) to node i's core directly, as a
 * task would; j->rc is 1 until the core hands it back (run the simulation until then). */
void simn_job(struct simn *s, unsigned i, struct node_job *j);
/* Bytes of those (a download cut by simn_kill: what had come of it). */
uint64_t simn_registry_bytes(const struct simn *s);
/* Bytes node i sent on its links (what its uplink carried). */
uint64_t simn_up_bytes(const struct simn *s, unsigned i);

uint64_t simn_now(const struct simn *s);
unsigned simn_count(const struct simn *s);
void simn_run_until(struct simn *s, uint64_t until);
/* Runs until done(arg) (checked after every event) or the clock passes limit; whether done. */
bool simn_run(struct simn *s, bool (*done)(void *arg), void *arg, uint64_t limit);

#endif
