/*
 * node.h - the one public header of node/: the node core, its edges, and the control protocol.
 *
 * The core is sans-IO, like dht/ and p2p/ (model: h2o/quicly): events go in, each with the
 * time; effects come out through a queue (node_effect_next); node_deadline says when the core
 * next needs node_tick. It never opens a socket, starts a thread, reads a clock or calls
 * random(): time is a parameter (milliseconds, any epoch, never decreasing) and randomness
 * comes from the caller's rng_fn. It has no globals, so many cores run in one process (the
 * unit tests and sim/). A call never both fails and has side effects, and no effect runs
 * inside a call: the caller takes every effect after each call, in order.
 *
 * Its edges are interfaces: the store (struct node_store_ops: the LMDB store in the daemon,
 * an in-memory one in tests and the simulator), links that carry p2p messages (bytes of a
 * p2p_peer, moved by the caller: sockets in the daemon, a simulated network in sim/), and
 * tasks (pulls and fetches: threads in the daemon, node/task.c; modelled in sim/).
 *
 *   node.c       the core: lifecycle, the effect queue, settling after each event, stop
 *   timers.c     every duration of the node, and the deadline
 *   link.c       links and their states (the state machine is drawn there), the duplicate-link
 *                rule, idle close, room for new links, the per-source accept limit
 *   seed.c       seeds: dial, back off, dial again
 *   route.c      DHT messages over links: dial on demand, queue until up, unreachable nodes
 *   providers.c  the provider cache: who holds a digest, as the DHT last said
 *   announce.c   what the node announces follows what the store holds
 *   serve.c      answering peers' requests from the store
 *   fetch.c      fetch jobs: blobs, indexes and chunks from peers, hedging, bans
 *   ctl.c        the control verbs (JSON), answered through the effect queue
 *   counters.c   the counters and stats as JSON
 *   run.c        jobs run on images: admission against the node's capacity, the queue, their
 *                records and states (the executor's part in the core)
 *   ctl_run.c    the control verbs of jobs (run, jobs, kill, wait)
 *   task.c       tasks on threads, for the daemon (not part of the core)
 *   store_lmdb.c node_store_ops over store/ (the daemon's)
 *   client.c     the control client: the CLI's and the mount's side of the socket
 *   fetcher.c    the mount's chunk fetcher through the node (coalescing, busy back-off)
 *   runner.c     jobs on threads, for the daemon: the image's mount (shared, counted), the
 *                runtime, kills, the cleanup of what a node killed left (not part of the core)
 *   node_uv.c    the daemon: libuv glue that only translates events and effects
 */
#ifndef AFSP_NODE_H
#define AFSP_NODE_H

#include "../dht/dht.h"
#include "../exec/exec.h"
#include "../p2p/p2p.h"
#include "../util/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- durations ------------------------------------------------------------------------------
 * Every duration the node uses, in milliseconds, including those it gives the DHT and the peer
 * protocol: X(name, default, what it is). A test scales them all down with one divisor
 * (node_durations_init; the daemon's AFSP_TEST_TIME_DIVISOR), so that a cluster can sit idle
 * longer than every timeout in a few seconds of real time. */
#define NODE_DURATIONS(X)                                                                          \
    X(ban, 60000, "a peer that sent a bad chunk or stalled gets no request this long")             \
    X(seed_retry_min, 500, "the first wait before a seed is dialed again")                         \
    X(seed_retry_max, 30000, "the longest wait (it doubles from the first)")                       \
    X(hedge, 1000, "a chunk request silent this long is asked of a second peer too")               \
    X(busy, 20, "a peer that answered a job's request busy gets none of that job's this long")     \
    X(busy_wait, 10000,                                                                            \
      "a peer busy this long, while no chunk of the job came from anyone, is left out of it")      \
    X(idle, 120000, "a link nothing used this long is closed (--idle-timeout; 0: never)")          \
    X(providers_fresh, 30000, "the providers of a digest are looked up again after this long")     \
    X(providers_retry, 1000, "... or after this long when none of them could serve")               \
    X(accept_refill, 200, "a source address earns one more new connection every this long")        \
    X(stall, P2P_STALL_MS, "a request with no piece of its answer this long fails")                \
    X(request, P2P_REQUEST_MS,                                                                     \
      "a request whose answer is not whole this long after it was sent fails (plus 1 s for "       \
      "each 256 KiB the answer may have)")                                                         \
    X(handshake, P2P_HANDSHAKE_TIMEOUT_MS, "a handshake not finished this long is abandoned")      \
    X(dht_ttl, DHT_TTL_MS, "a provider record lives this long")                                    \
    X(dht_republish, DHT_REPUBLISH_MS,                                                             \
      "what the node provides is announced again this often, and the store compared first")        \
    X(dht_refresh, DHT_REFRESH_MS, "a bucket no lookup went through is refreshed")                 \
    X(dht_stale, DHT_STALE_MS, "a contact not heard from this long is pinged")                     \
    X(dht_rpc_timeout, DHT_RPC_TIMEOUT_MS, "a DHT request with no answer fails")                   \
    X(dht_slow, DHT_SLOW_MS, "a DHT request stops holding a lookup's slot after this")             \
    X(claim_lease, DHT_CLAIM_LEASE_MS,                                                             \
      "a layer's fetch claim not renewed this long goes to the next node that asks")               \
    X(claim_done, DHT_CLAIM_DONE_MS, "a claimant that has its layer whole is named this long")     \
    X(claim_poll, 250, "a node waiting on another's claim asks again this often")                  \
    X(claim_wait, 30000,                                                                           \
      "a node waits on another's claim this long at most (plus 1 s per 4 MiB of the layer)")

struct node_durations {
#define X(name, ms, doc) uint64_t name;
    NODE_DURATIONS(X)
#undef X
};

/* Scaled durations never go below this (a round trip on a loaded machine), unless their
 * default is already lower. */
#define NODE_DURATION_FLOOR_MS 250

/* The defaults divided by divisor (1: as they are; 0 counts as 1), none below
 * NODE_DURATION_FLOOR_MS unless its default is. */
void node_durations_init(struct node_durations *d, unsigned divisor);

/* ---- limits --------------------------------------------------------------------------------- */
#define NODE_SEEDS_MAX 32
#define NODE_LINKS_MAX 4096         /* connections at once (the daemon lowers it to its fd limit) */
#define NODE_SEND_BUDGET (4u << 20) /* answer bytes queued on a link before the socket drains */
#define NODE_SOCKET_UNSENT (256u << 10) /* the daemon's TCP_NOTSENT_LOWAT (node_uv.c) */
/* Everything a link queues for its socket: DATA up to the budget (one message more), and the
 * small answers (errors, HAVE replies, DHT answers) that a peer's requests make at once. Past
 * it the peer is not reading what it asked for, and the link closes (ENOBUFS). */
#define NODE_LINK_TX_MAX (2 * NODE_SEND_BUDGET)
#define NODE_ACCEPT_BURST 20    /* handshakes one source (IPv4 address, IPv6 /64) may start */
#define NODE_ACCEPT_SOURCES 256 /* sources remembered for that */
/* Handshakes accepted and not finished, at most: a newer one closes the oldest (an outsider who
 * opens connections and says nothing holds those, and none may hold the link table). */
#define NODE_HANDSHAKES_MAX(links_max) MAX(8, MIN(256, (links_max) / 8))
#define NODE_LINK_DHT_QUEUE 64 /* DHT messages waiting for a connection to come up */
#define NODE_LAYERS_OPEN 8     /* layers kept open for serving */
#define NODE_PARKED_MAX 256    /* requests waiting for a download's bytes (serve.c), all peers */
#define NODE_PARKED_PER_LINK 4 /* ... of one peer */
#define NODE_PARK_POLL_MS 5    /* how often those downloads are looked at */
#define NODE_PARK_MAX_MS 2000  /* then it is answered busy (a requester stalls at 5 s) */
#define NODE_JOB_INFLIGHT_MAX (64u << 20)  /* chunk bytes one job asked for and did not get */
#define NODE_BLOB_PRESIZE (16u << 20)      /* room made for a blob or index at its first piece */
#define NODE_JOB_LINKS_MAX 256             /* links one job spreads its chunks over */
#define NODE_PEER_CHUNKS 4                 /* a job's chunk requests on one peer at once */
#define NODE_TRACE_MAX_BYTES (65536u + 64) /* a start trace from a peer (docs/format.md) */
/* Chunk answers this node sends at once, for all peers (node_cfg.serve_chunks, at most the
 * MAX); more are answered busy, so that a layer's only holder sends a few chunks whole, which
 * its fetchers then pass on among themselves, rather than every chunk to everyone at once
 * (docs/swarm.md). An answer holds its slot until its last byte has left the link. */
#define NODE_SERVE_CHUNKS 2
#define NODE_SERVE_CHUNKS_MAX 64
#define NODE_LINK_WATCH 16 /* layers a link's peer asked HAVE of: it hears of each new chunk */
#define NODE_SWARM_WANT 16 /* partial providers a job's lookup stops at */
/* A peer fetching a layer too that answers HAVE not-found (it has not got the layer's index
 * yet) is asked again providers_retry later, this many times at most. */
#define NODE_HAVE_TRIES 10
#define NODE_PEER_TALLY 256 /* peers whose chunk bytes stats shows (the busiest, once more) */
/* A job looks its layer's partial providers up again (providers_retry apart) while it knows
 * fewer than this many: a swarm that starts at once is not yet in the DHT at its first lookup. */
#define NODE_SWARM_ENOUGH 8
#define NODE_TASKS_MAX 64              /* pulls and fetches running at once */
#define NODE_HEDGE_MAX 8               /* requests of one job hedged at once */
#define NODE_PROVIDERS_CACHED 64       /* digests whose providers are remembered */
#define NODE_PROVIDERS_WANT 4          /* a job's provider lookup stops once it knows this many */
#define NODE_VERIFY_RATE (32ull << 20) /* bytes a second a verification takes from peers */
/* ... asked for at a time: small, so that its pace holds from the start (a burst of 8 MiB
 * raced a mount's reads through the index being verified, 68-node-forged-index) */
#define NODE_VERIFY_BATCH (1u << 20)
#define NODE_VERIFY_QUEUED 64            /* images waiting for their verification */
#define NODE_CLAIMS 64                   /* claim jobs waiting and claims held at once */
#define NODE_FORGERS_MAX 256             /* nodes banned for a false index, until a restart */
#define NODE_SUSPECTS 256                /* peers whose chunks failed against another's index */
#define NODE_CTL_MAX_REQUEST (64u << 10) /* the longest control request */
#define NODE_CTL_MAX_ANSWER (16u << 20)  /* the longest answer a client reads */

/* ---- counters ------------------------------------------------------------------------------
 * The node's counters, X(name, what it counts): the struct, `stats --json` and docs/cli.md are
 * generated from this list (node_counters_doc). */
#define NODE_COUNTERS(X)                                                                           \
    X(chunks_served, "chunks this node sent to peers")                                             \
    X(bytes_served, "bytes of blobs, indexes and chunks this node sent to peers")                  \
    X(chunks_fetched, "chunks fetched from peers that checked out")                                \
    X(bytes_fetched, "bytes of those chunks")                                                      \
    X(blobs_fetched, "manifests, configs and indexes fetched from peers")                          \
    X(bytes_registry, "bytes this node's pulls, fetches and verifications took from registries")   \
    X(bad_chunks, "chunks from peers that did not match the index")                                \
    X(chunks_disputed,                                                                             \
      "of those, against another node's index (left out of the job; banned if the index is true)") \
    X(chunk_liars, "peers banned because a layer's true index showed their chunks false")          \
    X(stalls, "requests to peers that stalled or passed their overall limit (the peer is banned)") \
    X(peer_errors, "connections that ended with an error after the handshake")                     \
    X(handshake_failures, "handshakes that failed: a wrong cluster key, a timeout, garbage")       \
    X(rate_limited, "connections refused for their source's rate")                                 \
    X(pulls, "pulls run for the CLI")                                                              \
    X(pulls_failed, "of those, failed")                                                            \
    X(fetches, "a mount's requests for chunks")                                                    \
    X(fetches_failed, "of those, failed")                                                          \
    X(traces_fetched, "start traces fetched from peers (a cold start's prefetch)")                 \
    X(traces_refused, "start traces from peers that did not fit their image")                      \
    X(registry_fetches, "of those, answered by the registry (no peer had the chunks)")             \
    X(serving_peak, "the most answers in production at once")                                      \
    X(requests_peak, "the most requests of this node waiting for answers at once")                 \
    X(links_idle_closed, "links closed for being idle, or to make room")                           \
    X(links_refused, "connections refused at the link cap")                                        \
    X(handshakes_crowded, "accepted handshakes closed unfinished to make room for newer ones")     \
    X(hedges, "chunk requests sent to a second peer because the first was silent")                 \
    X(chunks_busy, "chunk requests of peers answered busy (every upload slot was taken)")          \
    X(haves_sent, "HAVE requests sent (which chunks of a layer a peer holds)")                     \
    X(gots_sent, "GOT messages sent (a chunk arrived that a peer asked HAVE about)")               \
    X(hedges_won, "of those, answered first by the second peer")                                   \
    X(provider_lookups, "provider lookups (of fetch jobs and of afsp providers)")                  \
    X(providers_found, "providers those lookups named")                                            \
    X(dht_dials, "connections dialed to reach DHT contacts and providers")                         \
    X(verifies, "images whose lazily read layers the node completed in the background")            \
    X(verifies_failed, "of those, failed")                                                         \
    X(forged_indexes, "indexes from peers that their blob showed false (the sender is banned)")    \
    X(store_lists, "times the node listed the whole store (to compare what it announces)")         \
    X(claims, "registry downloads of layers this node claimed (no other node downloads them)")     \
    X(claim_waits, "downloads that waited on another node's claim")                                \
    X(claim_takeovers, "of those, claimed by this node after the claimant's lease ran out")        \
    X(claim_waits_expired, "of those, that gave up waiting and downloaded uncoordinated")          \
    X(claim_relays, "whole pulls told to read another reader's download (the relay chain)")        \
    X(relayed_bytes, "bytes of this node's downloads (registry's or relayed) sent while they ran") \
    X(relay_read_bytes, "bytes of other nodes' downloads read as they ran (standby, relay chain)") \
    X(relay_waits, "peers' requests for download bytes not here yet, answered when they came")     \
    X(relay_busy, "of those, answered busy: the bytes did not come in time")                       \
    X(jobs, "jobs asked to run here (afsp run)")                                                   \
    X(jobs_refused, "of those, refused: more than the node's free capacity (without --queue), or " \
                    "than it offers at all, or the queue was full")                                \
    X(jobs_queued, "of those, queued for room (--queue)")                                          \
    X(jobs_failed, "jobs that could not be started, or that the runtime failed")                   \
    X(jobs_oom, "jobs a process of which the kernel killed for their memory limit")                \
    X(jobs_killed, "jobs ended by afsp kill (or cancelled while queued)")

struct node_counters {
#define X(name, doc) uint64_t name;
    NODE_COUNTERS(X)
#undef X
};

/* The documentation of the counters and of the stats' "dht" section, as Markdown tables (what
 * docs/cli.md holds; a unit test compares them). */
void node_counters_doc(struct buf *out);

/* ---- the store ------------------------------------------------------------------------------
 * What the core needs of a store, as functions of the caller's (arg: node_cfg.store_arg). Each
 * returns 0 or a negative code (AFSP_E_NOTFOUND for what is not held) unless said otherwise.
 * Called on the core's thread only. A layer handle (void *) stays valid until layer_close; a
 * fetch handle belongs to the task that submitted the job. */
struct node_held {
    uint8_t digest[DIGEST_LEN];
    bool complete; /* a layer whose whole blob was checked against its digest, or a manifest */
    bool manifest; /* an image manifest (else a layer, complete or partial) */
    bool trace;    /* a start trace, digest its key (complete) */
};

struct node_store_usage {
    uint64_t used, reserved, limit;
    uint64_t layers, images;
};

struct node_store_ops {
    /* A manifest or config the store keeps whole: appended to out. */
    int (*blob)(void *arg, const uint8_t digest[static DIGEST_LEN], struct buf *out);
    /* A layer's encoded index (docs/format.md), appended to out: only of a layer whose index the
     * store built from the whole blob (AFSP_E_NOTFOUND for a peer's index). */
    int (*index)(void *arg, const uint8_t digest[static DIGEST_LEN], struct buf *out);
    /* The start trace kept under key (store_trace_key), appended to out (AFSP_E_NOTFOUND: none);
     * NULL: the store keeps none. */
    int (*trace)(void *arg, const uint8_t key[static DIGEST_LEN], struct buf *out);
    /* What the store holds: layers (whole or partial) and manifests, a malloc'd array the caller
     * frees. The node calls it rarely (store_lists counts the calls). */
    int (*held)(void *arg, struct node_held **out, size_t *n);
    int (*usage)(void *arg, struct node_store_usage *u);

    /* A layer held whole or in part, for serving its bytes. */
    int (*layer_open)(void *arg, const uint8_t digest[static DIGEST_LEN], void **layer);
    void (*layer_close)(void *arg, void *layer);
    uint32_t (*layer_nchunks)(void *layer);
    /* Chunk i is blob bytes [*off, *off + *len). */
    void (*layer_chunk)(void *layer, uint32_t i, uint64_t *off, uint32_t *len);
    bool (*layer_has)(void *layer, uint32_t i);
    /* Takes in chunks stored since the handle was opened (a partial layer filling). */
    int (*layer_refresh)(void *layer);
    /* Blob bytes [off, off + n) into buf; thread-safe (answers are produced on the core's
     * thread, but a store may be shared). */
    int (*layer_read)(void *layer, uint64_t off, uint8_t *buf, size_t n);

    /* A fetch handle's layer (a task's, see struct node_job): its chunks and which it has, and
     * the node that sent its index (P2P_ID_LEN bytes; NULL if not known), the index's SHA-256
     * written to ix. */
    uint32_t (*fetch_nchunks)(void *fetch);
    const uint8_t *(*fetch_sender)(void *fetch, uint8_t ix[DIGEST_LEN]);
    void (*fetch_chunk)(void *fetch, uint32_t i, uint64_t *off, uint32_t *len);
    bool (*fetch_has)(void *fetch, uint32_t i);
    /* One chunk's bytes from a peer, in order: begin makes *rx (the state of one receipt),
     * data takes each piece (AFSP_E_SIZE past the chunk's end), end checks the chunk against
     * the index and writes it (0, AFSP_E_SIZE short, AFSP_E_DIGEST, a write error) and frees
     * rx either way; drop frees rx without a check. Two receipts of one chunk may run at once
     * (a hedged request): the first that ends well counts. */
    int (*chunk_begin)(void *fetch, uint32_t i, void **rx);
    int (*chunk_data)(void *fetch, void *rx, const uint8_t *p, size_t n);
    int (*chunk_end)(void *fetch, void *rx, uint64_t *bytes);
    void (*chunk_drop)(void *fetch, void *rx);

    /* May be NULL (nothing relayed). A download of layer digest under way here (store_dl in
     * store.h), relayed to peers as its bytes come (docs/swarm.md): dl_state says how many are
     * written (*written) of the blob's *size, and returns 0 (running), 1 (ended whole) or the
     * code it failed with; dl_read reads written bytes. */
    int (*dl_open)(void *arg, const uint8_t digest[static DIGEST_LEN], void **dl);
    void (*dl_close)(void *arg, void *dl);
    int (*dl_state)(void *dl, uint64_t *written, uint64_t *size);
    int (*dl_read)(void *dl, uint64_t off, uint8_t *buf, size_t n);
};

/* ---- jobs: what a task asks of the node -----------------------------------------------------
 * A task (a pull, a mount's fetch) that needs a blob, an index or chunks from peers fills a job
 * and submits it (node_job_submit); the node works on it and hands it back with the effect
 * NODE_FX_JOB_DONE once nothing of it is in flight, with rc: 0, AFSP_E_NOTFOUND (no peer could
 * serve it), -ECANCELED (the node stops), -ENOMEM. Until then the job, its out buffer and its
 * fetch handle are the node's to use; the task must not touch them. */
/* CLAIM: before a layer is downloaded from the registry, its fetch claim (claim.c, docs/swarm.md):
 * rc 0 when the task should download it (claimed: this node holds the claim now, and the task
 * must end it with CLAIM_END; not claimed: uncoordinated, e.g. no DHT, or a wait that ran too
 * long) or, with stream, read another node's download of it as it runs (the relay: the
 * claim's standby, or a task that was reading one), -EAGAIN when a peer has the layer now (the
 * task asks peers again). The job waits while another node holds the claim otherwise. A task that
 * read a download ends with CLAIM_END too (its standby ends). CLAIM_END: the task's download ended
 * (whole or not); it comes back at once. */
enum node_job_kind {
    NODE_JOB_BLOB,
    NODE_JOB_INDEX,
    NODE_JOB_CHUNKS,
    NODE_JOB_CLAIM,
    NODE_JOB_CLAIM_END,
    NODE_JOB_TRACE /* a start trace (digest: its key) from a peer that provides it, max bytes */
};

struct node_job {
    enum node_job_kind kind;
    uint8_t digest[DIGEST_LEN]; /* the blob, or the layer */
    uint64_t max;               /* BLOB, INDEX: the largest answer taken; CLAIM: the layer's size */
    struct buf *out;            /* BLOB, INDEX: the bytes, appended (borrowed) */
    /* BLOB from one peer (has_src): bytes [off, off + len) of a layer's blob of max bytes, from
     * src only (dialled if need be), which may be downloading it still: its answer waits for
     * them (the relay, docs/swarm.md). rc -EBUSY: not there in time, ask again. */
    bool has_src;
    struct dht_contact src;
    uint64_t off;
    uint32_t len;
    uint8_t from[P2P_ID_LEN]; /* INDEX: the node that sent it (set with rc 0) */
    void *fetch;              /* CHUNKS: the layer being filled (node_store_ops fetch_*) */
    uint32_t first, last;     /* CHUNKS: the chunks wanted (those the layer lacks) */
    bool claimed;             /* CLAIM (out): this node holds the claim */
    /* CLAIM (out, with rc 0): read src's download of the layer as it runs (a BLOB job with
     * has_src), from where the task is; src holds the claim, or has the layer whole. */
    bool stream;
    /* CLAIM (in): the task can read another node's download (stream); else it only waits */
    bool relay;
    /* CLAIM (in): the task reads src's download now (it asks whether it still should: told
     * HELD, it reads on from the holder named); avoid_src: that download failed it, src is not
     * named again while it holds the claim, and the task reads on from the current holder's */
    bool reading, avoid_src;
    uint64_t owner; /* CLAIM, CLAIM_END (in): the task's own token: its claims are its own */
    /* CLAIM_END (in): the layer is whole here (else: it failed); CLAIM (in): the task pulls the
     * layer whole (it may read another reader's download: the relay chain) */
    bool whole;
    int rc;                    /* set when handed back */
    void *task_arg;            /* the task's own (the node never touches it) */
    struct node_job_state *st; /* the node's, while it holds the job */
};

/* ---- tasks -----------------------------------------------------------------------------------
 * Work that blocks (a pull from a registry, a fetch that may fall back to one) runs outside the
 * core: the core hands a task out with NODE_FX_TASK, the runner does it (submitting jobs meanwhile)
 * and reports node_task_done. The core frees the task after that. A FETCH may report
 * node_task_written first, once its chunks are written and checked: its client is answered then,
 * while the task makes them durable and marks them (the store's fetcher contract, store.h). */
/* VERIFY: the node's own, not a client's: completes the partial layers of the image a mount
 * read lazily (a pull of ref, not lazy), chunks from peers paced at rate, so that each layer's
 * index is built from its blob and a peer's false index is found (verify.c). */
/* TRACE: the start trace of the image ref names by digest, kept or fetched from a provider of
 * its key and checked against the image before it is kept (docs/format.md). */
enum node_task_kind { NODE_TASK_PULL, NODE_TASK_FETCH, NODE_TASK_VERIFY, NODE_TASK_TRACE };

#define NODE_TASK_INSECURE_MAX 32
struct node_task {
    enum node_task_kind kind;
    /* in (owned by the task) */
    char *ref;      /* PULL: the image; FETCH: the image whose registry may be asked, or NULL */
    char *platform; /* PULL: "os/arch[/variant]" or NULL */
    char *insecure[NODE_TASK_INSECURE_MAX + 1]; /* NULL-terminated */
    bool lazy;                                  /* PULL: layers a peer has are added partial */
    uint8_t layer[DIGEST_LEN];                  /* FETCH */
    uint32_t first, last;                       /* FETCH: chunks */
    uint64_t rate; /* VERIFY: bytes a second of chunks from peers (NODE_VERIFY_BATCH at a time) */
    /* out, set by the runner */
    int rc;
    char msg[512];              /* rc's message */
    uint8_t digest[DIGEST_LEN]; /* PULL: the manifest's (out); VERIFY: the manifest to pull, if
                                   not zero (in): a pull's verification does not follow the tag */
    bool completed;             /* FETCH, VERIFY: the layer has every chunk now */
    uint64_t registry_bytes;    /* body bytes registries sent for it */
    bool via_registry;          /* FETCH: the registry answered */
    bool found;                 /* TRACE: the store has the image's trace now */
    bool fetched, refused;      /* TRACE: it came from a peer now; a peer's did not fit the image */
    /* the core's */
    struct node_ctl *ctl;
    struct node_task *next;
};

/* ---- jobs: programs run on images (run.c; docs/exec.md) ------------------------------------
 * A client's `run` makes a job, which the core admits against the node's capacity
 * (node_cfg.capacity) at once, queues (with queue: first in, first out, EXEC_QUEUE_MAX) or
 * refuses. An admitted job goes to the runner with NODE_FX_EXEC: it mounts the image, makes the
 * job's root and runs it, and reports node_exec_running once the runtime runs it and
 * node_exec_done at its end (its out fields set), node_exec_exited before its cleanup. A job's
 * request is fixed once it is handed out; the runner never touches the core's fields. The core
 * keeps the records of the NODE_EXEC_KEPT newest ended jobs; an older one is handed back with
 * NODE_FX_EXEC_FREE. */
#define NODE_EXEC_KEPT 256
struct node;
#define NODE_EXEC_ARGS_MAX 4096 /* words of a job's command, and of its --env */
#define NODE_EXEC_VOLUMES_MAX 32
#define NODE_EXEC_NAME_MAX 64           /* a job's name: letters, digits, '_', '.', '-' */
#define NODE_EXEC_PORTS_MAX 8           /* ports a job publishes */
#define NODE_EXEC_LOG_MAX (64ull << 20) /* bytes of a job's stdout, and of its stderr, kept */
struct node_exec {
    /* the request (owned) */
    char *image, *platform, *name, *workdir, *user;
    char *insecure[NODE_TASK_INSECURE_MAX + 1]; /* NULL-terminated */
    char **args, **env;                         /* NULL-terminated; args may be empty */
    struct exec_volume *volumes;                /* src and dst owned */
    size_t nvolumes;
    struct exec_res res;
    bool net_host;
    bool queue;                          /* wait for room rather than be refused */
    uint16_t ports[NODE_EXEC_PORTS_MAX]; /* the job's ports to publish (--publish) */
    unsigned nports;
    uint64_t slots;                           /* the device slots given (set before NODE_FX_EXEC) */
    uint16_t host_ports[NODE_EXEC_PORTS_MAX]; /* the node's ports for them (set then too) */
    /* the core's */
    uint64_t seq; /* the node's counter: the id's second part */
    bool live;    /* handed to the runner, not done */
    struct exec_status st;
    struct node_exec *next; /* newest first */
    /* out: set by the runner before node_exec_done */
    int rc;        /* 0, or why the job could not run (msg) */
    char msg[512]; /* rc's message */
    struct exec_result result;
};
/* The runtime runs x now (PREPARING -> RUNNING). */
void node_exec_running(struct node *n, struct node_exec *x, uint64_t now);
/* x's process ended (result set): its end state follows (exec_status_end) and those waiting
 * for it hear it, before the runner cleans up after it. May be left out. */
void node_exec_exited(struct node *n, struct node_exec *x, uint64_t now);
/* x is over and cleaned up after (rc, msg, result set): its end state follows if
 * node_exec_exited did not give it, and its capacity is free again. */
void node_exec_done(struct node *n, struct node_exec *x, uint64_t now);
/* Frees a job's request (NODE_FX_EXEC_FREE, or one never handed out). */
void node_exec_free(struct node_exec *x);

/* ---- the core ------------------------------------------------------------------------------- */
struct node;
struct node_link; /* a connection to a peer: owned by the core, carried by the caller */
struct node_ctl;  /* a control client: the caller's, opaque to the core */

struct node_cfg {
    const struct p2p_identity *id; /* borrowed: must outlive the core */
    const uint8_t *cluster_key;    /* P2P_KEY_LEN bytes, copied */
    rng_fn rng;                    /* required: keys, IDs, lookups */
    void *rng_arg;
    uint64_t now;                       /* the core's clock at start */
    uint64_t wall_ms;                   /* the wall clock then (ms since 1970), for reports */
    uint16_t listen_port;               /* 0: not listening */
    const char *listen_text;            /* for reports; may be NULL */
    const struct dht_addr *seeds;       /* nseeds addresses, copied */
    const char *const *seed_texts;      /* how each was given (logs); may be NULL */
    size_t nseeds;                      /* at most NODE_SEEDS_MAX */
    size_t links_max;                   /* 0: NODE_LINKS_MAX */
    const struct node_durations *t;     /* copied; NULL: node_durations_init(, 1) */
    const struct node_store_ops *store; /* borrowed */
    void *store_arg;
    unsigned k, alpha;     /* the DHT's; 0: DHT_K, DHT_ALPHA */
    uint64_t verify_rate;  /* 0: NODE_VERIFY_RATE; UINT64_MAX: no verification in the background */
    bool random_first;     /* a job asks for its chunks in random order, not the rarest first
                              (benchmarks: docs/swarm.md) */
    unsigned serve_chunks; /* 0: NODE_SERVE_CHUNKS */
    struct exec_res capacity; /* what the node offers to jobs (no cpu or no memory: no jobs) */
    uint16_t publish_lo, publish_hi; /* the node's ports jobs' ports are published on (0: none) */
};

/* Returns 0, AFSP_E_USAGE (no rng, no store, too many seeds) or -ENOMEM. The seeds are dialed
 * and the store announced at once (effects are waiting). */
int node_new(struct node **out, const struct node_cfg *cfg);
/* Frees the core. Call after NODE_FX_STOPPED, or at any time in tests (jobs still held are
 * abandoned, links freed without effects). */
void node_free(struct node *n);

/* What the caller must do, in order; node_effect_next returns false when nothing waits. */
enum node_fx {
    NODE_FX_DIAL,      /* open a connection for link to addr; report connected or closed */
    NODE_FX_SEND,      /* link has bytes to send: node_link_pending / node_link_sent */
    NODE_FX_CLOSE,     /* close link's connection, then node_link_release */
    NODE_FX_ANSWER,    /* send text (a JSON line, owned by the caller now) to ctl and close */
    NODE_FX_TASK,      /* run task; report node_task_done */
    NODE_FX_JOB_DONE,  /* job is handed back (job->rc) */
    NODE_FX_EXEC,      /* run exec (the runner); report node_exec_running, node_exec_done */
    NODE_FX_EXEC_KILL, /* send sig to every process of exec (it is running, or about to) */
    NODE_FX_EXEC_FREE, /* the core forgot exec (ended): remove what is left of it, free it */
    NODE_FX_STOPPED,   /* the node stopped: no link, task, job or open layer is left */
};

struct node_effect {
    enum node_fx type;
    struct node_link *link; /* DIAL, SEND, CLOSE */
    struct dht_addr addr;   /* DIAL */
    struct node_ctl *ctl;   /* ANSWER */
    char *text;             /* ANSWER: malloc'd, with its newline; the caller frees it */
    size_t len;
    struct node_task *task; /* TASK */
    struct node_job *job;   /* JOB_DONE */
    struct node_exec *exec; /* EXEC, EXEC_KILL, EXEC_FREE */
    int sig;                /* EXEC_KILL */
};
bool node_effect_next(struct node *n, struct node_effect *e);

/* When node_tick must next run (UINT64_MAX: nothing waits on time), and the tick. */
uint64_t node_deadline(const struct node *n);
void node_tick(struct node *n, uint64_t now);

/* ---- links: the caller's side ---------------------------------------------------------------
 * The caller carries each link's bytes. A link is born from node_link_accepted (the caller
 * accepted a connection) or NODE_FX_DIAL (the core wants one), and ends with NODE_FX_CLOSE,
 * after which the caller closes the connection and calls node_link_release; the core makes no
 * other use of the link then, and ignores events for it until released. */

/* A connection the caller accepted, from addr (its source IP and port). Returns a new link
 * (the handshake starts) or NULL when it must be closed at once (rate-limited, no room, no
 * memory: counted). */
struct node_link *node_link_accepted(struct node *n, const struct dht_addr *from, uint64_t now);
/* The connection NODE_FX_DIAL asked for is up. */
void node_link_connected(struct node *n, struct node_link *k, uint64_t now);
/* Bytes from the peer (all are taken). */
void node_link_input(struct node *n, struct node_link *k, const uint8_t *p, size_t len,
                     uint64_t now);
/* Bytes to send: *p valid until the next call on the core. Produces more answer bytes first
 * while the link holds less than NODE_SEND_BUDGET. 0: nothing now. */
size_t node_link_pending(struct node *n, struct node_link *k, const uint8_t **p);
/* len bytes of node_link_pending's were written (or copied for writing). */
void node_link_sent(struct node *n, struct node_link *k, size_t len, uint64_t now);
/* The connection ended or failed (rc: a negative errno; -ECONNREFUSED etc. for a dial). */
void node_link_closed(struct node *n, struct node_link *k, int rc, uint64_t now);
/* After NODE_FX_CLOSE: the caller is done with k; it is freed. */
void node_link_release(struct node *n, struct node_link *k);
/* The caller's pointer for a link (its connection), set once and read back. */
void node_link_set_io(struct node_link *k, void *io);
void *node_link_io(const struct node_link *k);

/* ---- control, tasks, jobs, the store -------------------------------------------------------- */

/* One control request line (JSON, see NODE_CTL_VERBS) from client c. It is answered with
 * NODE_FX_ANSWER, now or later. */
void node_ctl_request(struct node *n, struct node_ctl *c, const char *line, size_t len,
                      uint64_t now);
/* Client c went away: it gets no answer (a pull it started goes on). */
void node_ctl_gone(struct node *n, struct node_ctl *c);
/* The runner finished task (its out fields set). */
void node_task_done(struct node *n, struct node_task *t, uint64_t now);
void node_task_written(struct node *n, struct node_task *t, uint64_t now);
/* A task's job (see struct node_job). While the node stops, it comes back at once. */
void node_job_submit(struct node *n, struct node_job *j, uint64_t now);
/* The store changed under the node (an eviction): what it announces and serves follows. */
void node_store_changed(struct node *n, uint64_t now);
/* Stops: jobs end with -ECANCELED, links close, the DHT is left, every control request still
 * waiting is answered with an error ("the node is stopping"); NODE_FX_STOPPED comes once every
 * task is done. */
void node_stop(struct node *n, uint64_t now);

/* ---- addr.c: addresses, for the daemon and the CLI (not the core: names resolve blocking) ---- */

struct sockaddr;
struct sockaddr_storage;
void node_addr_from_sockaddr(const struct sockaddr *sa, struct dht_addr *out);
void node_addr_to_sockaddr(const struct dht_addr *a, struct sockaddr_storage *ss);
/* "HOST:PORT", "[V6]:PORT" or ":PORT" (default_host then), resolved. Returns 0, AFSP_E_USAGE (not
 * that form), or AFSP_E_NET (the name does not resolve; err_msg says why). */
int node_addr_parse(const char *text, const char *default_host, struct dht_addr *out);

/* ---- node_uv.c: the daemon ------------------------------------------------------------------- */

struct store;
struct node_run_cfg {
    struct node_cfg core;   /* all but now, wall_ms, store and store_arg, filled here */
    struct dht_addr listen; /* where peers connect (port 0: nowhere) */
    struct store *store;    /* open, writable; borrowed */
    const char *ctl_path;   /* the control socket (DATA/afsp.sock) */
    const char *data_dir;   /* for the log, and jobs' directories (DATA/jobs) */
    struct node_runner_cfg {
        const char *runtime;      /* the OCI runtime's program: "runc" (or "crun") */
        const char *self;         /* this program (/proc/self/exe): mounts run it */
        const char *devices_env;  /* the variable naming a job's device slots, or NULL */
        const char *devices_path; /* slot N's device node: "%u" replaced by N, or NULL */
        const char *publish_host; /* where jobs' published ports listen (an IPv4 address) */
        const char *key_file;     /* the cluster key, if not in the data directory (jobs'
                                     volumes may not show it) */
        uint64_t mount_keep_ms;   /* an image's mount outlives its last job this long */
    } runner;
};
/* Runs the node until SIGTERM or SIGINT and every task it started is done. Returns 0, or a
 * negative code with err_msg set (the sockets could not be made). */
int node_run(const struct node_run_cfg *cfg);

/* ---- inspection ------------------------------------------------------------------------------ */
const struct node_counters *node_counters_get(const struct node *n);
struct dht *node_dht(struct node *n);
const uint8_t *node_id(const struct node *n);
size_t node_links_up(const struct node *n);
/* Whether an up link to node id exists (tests, the simulator). */
bool node_linked(const struct node *n, const uint8_t id[static P2P_ID_LEN]);

/* The store judged the index of layer that from sent (NULL: not known), peer_ix, against the blob
 * (store_index_judged_fn). False: its sender is banned until the node restarts, its links closed
 * and its DHT records dropped. True: the peers whose chunks failed against it sent false bytes
 * (their own lie, or a forged index they were given) and are banned for a while. */
void node_index_judged(struct node *n, const uint8_t layer[static DIGEST_LEN], const uint8_t *from,
                       const uint8_t peer_ix[static DIGEST_LEN],
                       const uint8_t blob_ix[static DIGEST_LEN], bool was_false, uint64_t now);

/* ---- the control protocol -------------------------------------------------------------------
 * DATA/afsp.sock (mode 0600): one JSON request line per connection, {"cmd": VERB, ...}, and one
 * JSON answer line, {"ok": true, ...} or {"error": "...", ["busy": true]}. The verbs, X(id,
 * name, fields of the request, what the answer holds); docs/cli.md lists the same. */
#define NODE_CTL_VERBS(X)                                                                          \
    X(PEERS, "peers", "", "peers: the up links")                                                   \
    X(STATS, "stats", "", "stats: id, listen, started, peers, store, counters, dht")               \
    X(RECONCILE, "reconcile", "",                                                                  \
      "the store changed under the node (afsp prune): announce and serve what it holds now")       \
    X(PROVIDERS, "providers", "digest", "providers, lookup: a full provider lookup of digest")     \
    X(PULL, "pull", "ref, platform?, insecure?, lazy?", "digest: the image, pulled")               \
    X(FETCH, "fetch", "layer, first, last, ref?, insecure?",                                       \
      "chunks first..last of a layer held in part, stored before the answer")                      \
    X(TRACE, "trace", "ref (by digest)",                                                           \
      "found: the image's start trace is in the store (kept, or fetched from a peer now)")         \
    X(RUN, "run",                                                                                  \
      "image, args, cpus (millicpus), memory, scratch, devices?, env?, workdir?, user?, name?, "   \
      "volumes?, net?, queue?, platform?, insecure?",                                              \
      "job: admitted (preparing) or queued; refused: an error")                                    \
    X(JOBS, "jobs", "job?", "jobs: every job kept (job: that one's), newest first")                \
    X(KILL, "kill", "job, signal?", "job: the signal was sent (a queued job is cancelled)")        \
    X(WAIT, "wait", "job", "job: once it has ended")

enum node_ctl_verb {
#define X(id, name, req, ans) NODE_CTL_##id,
    NODE_CTL_VERBS(X)
#undef X
        NODE_CTL_NVERBS
};
/* The verb's name, or NULL. */
const char *node_ctl_verb_name(enum node_ctl_verb v);

#define NODE_CTL_SOCK "afsp.sock"    /* in the data directory */
#define NODE_DEFAULT_PORT_STR "7070" /* where a node listens for peers by default */

/* ---- client.c: the control client (blocking; the CLI, the mount process) ------------------ */

/* Connects to the node whose data directory is dir. Returns a socket, or -1 when none runs there
 * (no socket, or nobody listening on it). */
int node_client_connect(const char *dir);
/* Sends {"cmd": verb, ...fields} (fields: a JSON object, borrowed, may be NULL) on fd and reads
 * the answer into *ans (the caller's; an {"error": ...} answer is an answer too). Returns 0 or a
 * negative code with err_msg set (-ETIMEDOUT: fd has a receive timeout, SO_RCVTIMEO, and it
 * passed). fd stays open. */
struct json_t;
int node_client_call(int fd, enum node_ctl_verb verb, struct json_t *fields, struct json_t **ans);
/* node_client_call in two halves, for a client that waits for an answer while it does other
 * things (poll fd for it): the request sent, then the answer read. */
int node_client_send(int fd, enum node_ctl_verb verb, struct json_t *fields);
int node_client_recv(int fd, struct json_t **ans);

/* ---- fetcher.c: a mount's chunks through the node ------------------------------------------
 * A store_fetcher_fn (store.h) that asks the node on dir for the chunks a reader lacks. Readers
 * that need chunks already asked for wait for that answer instead of asking again. A read waits
 * for its node: a call that cannot connect, loses its connection, gets no answer within
 * NODE_CALL_TIMEOUT_MS, or is answered busy (the node is stopping, or runs too much) is made
 * again, backing off from 10 ms to 0.5 s, until wait_ms have passed since the read asked; then
 * the read fails. So a node killed and started again costs a read time, not an error. */
#define NODE_CALL_TIMEOUT_MS 30000 /* one fetch call's answer; then it is made again */
#define NODE_MOUNT_WAIT_MS 120000  /* a read waits this long for its node (mount --node-wait) */
struct node_fetcher;
/* ref: the image whose registry the node may ask (copied); insecure: NULL-terminated hosts
 * reached over plain HTTP (copied); wait_ms: 0 for NODE_MOUNT_WAIT_MS. Returns 0 or -ENOMEM. */
int node_fetcher_new(struct node_fetcher **out, const char *dir, const char *ref,
                     const char *const *insecure, uint64_t wait_ms);
void node_fetcher_free(struct node_fetcher *f);
/* The store_fetcher_fn, with f as its arg. */
int node_fetcher_fetch(void *f, const uint8_t digest[DIGEST_LEN], uint32_t first, uint32_t last,
                       unsigned flags);
/* The image the fetcher fetches for (by digest), as given to node_fetcher_new. */
const char *node_fetcher_ref(const struct node_fetcher *f);

/* ---- a mount's start trace (prefetch.c) ---------------------------------------------------
 * Started once the image's layers are open (layers, digests: nlayers, bottom first; borrowed
 * until stop): asks the node for the image's start trace; with one, NODE_PREFETCH_WORKERS
 * threads fetch its chunks in order through nf (runs of at most NODE_PREFETCH_RUN consecutive
 * chunks a request); without one, records the chunks reads use (store_set_chunk_watch: the
 * store's one watch is the prefetch's) for NODE_TRACE_WINDOW_MS, or until stopped, and keeps the
 * trace in the store for the node to announce. Stop (after the last read): joins its threads,
 * keeps what was recorded. */
#define NODE_TRACE_WINDOW_MS 10000
#define NODE_PREFETCH_WORKERS 4
#define NODE_PREFETCH_RUN 4
struct store;
struct store_layer;
struct node_prefetch;
int node_prefetch_start(struct node_prefetch **out, struct node_fetcher *nf, struct store *s,
                        const char *dir, const uint8_t manifest[DIGEST_LEN],
                        struct store_layer **layers, const uint8_t (*digests)[DIGEST_LEN],
                        size_t nlayers);
void node_prefetch_stop(struct node_prefetch *p);

#endif
