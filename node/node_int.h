/*
 * node_int.h - between the files of the node core (node.h's list). Nothing outside node/
 * includes this.
 *
 * How an event is handled: an entry point (node_link_input, node_tick, ...) changes state and
 * may mark things for later - a link to close (link_close), a link with bytes to send or a new
 * deadline (link_touch), jobs to step (jobs_dirty) - then calls node_settle, which does the
 * marked work until nothing is left and queues the effects. Nothing a callback of p2p_peer or
 * dht does runs the caller's I/O or re-enters the object that called it.
 */
#ifndef AFSP_NODE_INT_H
#define AFSP_NODE_INT_H

#include "node.h"

/* ---- timers.c: one heap of deadlines ------------------------------------------------------- */

struct node_timer {
    uint64_t at;  /* UINT64_MAX: not armed */
    uint32_t idx; /* its place in the heap + 1 while armed; 0: not armed (a zeroed timer) */
    void (*fire)(struct node *n, struct node_timer *t, uint64_t now);
};

void timer_init(struct node_timer *t, void (*fire)(struct node *, struct node_timer *, uint64_t));
/* Arms t for at (UINT64_MAX disarms); re-arming moves it. */
void timer_set(struct node *n, struct node_timer *t, uint64_t at);
void timer_stop(struct node *n, struct node_timer *t);
/* Fires every timer due by now. */
void timers_run(struct node *n, uint64_t now);

/* ---- link.c -------------------------------------------------------------------------------- */

enum link_state { LINK_DIALING, LINK_HANDSHAKE, LINK_UP, LINK_CLOSING, LINK_CLOSED };

/* A DHT message waiting for its connection to come up. */
struct dq {
    struct dq *next;
    size_t len;
    uint8_t msg[];
};

struct node_link {
    struct node *n;
    enum link_state state;
    struct p2p_peer *p;
    void *io;
    unsigned seeds;                  /* seeds this link reaches (several may name one node) */
    struct node_link *next, **pprev; /* n->links */
    struct node_link *touched_next;  /* n->touched, while touched */
    struct node_link *closing_next;  /* n->closing, while CLOSING */
    bool touched;
    bool initiator;
    bool expect; /* dialed to reach the node expect_id */
    uint8_t expect_id[P2P_ID_LEN];
    uint8_t peer_id[P2P_ID_LEN]; /* UP: the ID the handshake proved */
    struct dht_addr dialed;      /* the address dialed (port 0: the peer dialed us) */
    struct dht_addr from;        /* the address the connection came from (accepted) */
    uint16_t hello_port;         /* the peer's HELLO: where it listens (0: nowhere, or unsaid) */
    struct dq *dq, **dq_tail;    /* DHT messages for expect_id, sent once it is up */
    unsigned ndq;
    int close_rc;               /* CLOSING, CLOSED: why */
    enum link_state close_from; /* CLOSING, CLOSED: the state it closed from */
    int doom;                   /* close with this once the input being taken is done */
    char addr[300];
    uint64_t serial; /* unique for the node's life: jobs remember links by it */
    uint64_t t0, up_at, rtt_ms, bytes_in, bytes_out, ban_until;
    uint64_t last_io;                           /* when bytes last went either way */
    uint64_t last_in;                           /* when bytes last came from the peer */
    struct node_timer timer;                    /* the handshake, stalled requests, idle close */
    uint8_t watch[NODE_LINK_WATCH][DIGEST_LEN]; /* layers the peer asked HAVE of (swarm.c) */
    unsigned nwatch, watch_next;
    uint64_t chunk_bytes_in, chunk_bytes_out; /* chunk bytes from the peer that checked out, and
                                                 to it */
    /* chunk answers produced whole and not yet sent: where each ends in the bytes sent on the
     * link (bytes_out); each holds one of the node's serve_chunks slots until then (serve.c) */
    struct chunk_end {
        uint64_t end; /* bytes_out once its last byte has left */
        uint64_t at;  /* when it was produced whole */
    } chunk_ends[NODE_SERVE_CHUNKS_MAX];
    unsigned nchunk_ends;
    unsigned nparked; /* its requests waiting for a download's bytes (serve.c) */
};

#define LINK_DUPLICATE (-EALREADY) /* closed: the pair has another link */
#define LINK_IDLE (-ETIME)         /* closed: nothing used it for a while */
#define LINK_CROWDED (-EUSERS)     /* closed: an unfinished handshake made room for a newer one */

/* Dials c (to reach node c->id, or a seed when c is NULL: see seed.c). Returns the new link
 * (DIALING: NODE_FX_DIAL is queued) or NULL, having done nothing, when there is no room or
 * memory. */
struct node_link *link_dial(struct node *n, const struct dht_addr *addr, const uint8_t *expect_id,
                            uint64_t now);
/* Marks k to close with rc (its consequences run in node_settle). */
void link_close(struct node_link *k, int rc);
/* Runs the consequences of closing every link marked since. */
void links_closing_run(struct node *n, uint64_t now);
/* k has new bytes to send or a new deadline: node_settle looks at it. */
void link_touch(struct node_link *k);
/* For each link touched: NODE_FX_SEND if it has bytes, its timer re-armed. */
void links_touched_run(struct node *n, uint64_t now);
bool link_usable(const struct node_link *k, uint64_t now);
/* The up link to node id, or (pending) a link being made to reach it; NULL if none. */
struct node_link *link_to(struct node *n, const uint8_t id[static P2P_ID_LEN], bool pending);
void link_ban(struct node_link *k, const char *why, uint64_t now);
/* Where k's peer listens, as this node sees it (port 0: it does not, or has not said). */
void link_peer_addr(const struct node_link *k, struct dht_addr *out);
const char *id_short(const uint8_t *id, char out[static 17]);

/* ---- seed.c --------------------------------------------------------------------------------- */

struct seed {
    struct dht_addr addr;
    char text[256];
    struct node_link *link;
    uint64_t backoff;
    struct node_timer timer; /* the next dial */
};

/* Dials seed s now (a failure schedules the next try). */
void seed_dial(struct node *n, struct seed *s, uint64_t now);
/* k, the link of some seeds, closed (or its dial failed): they are dialed again after their
 * backoff. */
void seed_timers_failed(struct node *n, struct node_link *k, uint64_t now);
/* k came up: its seeds' backoff starts over. */
void seed_timers_up(struct node *n, struct node_link *k);
/* The seeds of drop are the seeds of keep now (the pair's other link was kept). */
void seed_move(struct node *n, struct node_link *drop, struct node_link *keep);

/* ---- route.c -------------------------------------------------------------------------------- */

/* Sends what the DHT wants sent. Returns whether there was anything. */
bool route_run(struct node *n, uint64_t now);
/* The messages waiting on from go out over to (from itself when it came up, or the pair's
 * other link). */
void route_dq_send(struct node_link *from, struct node_link *to);
void route_dq_drop(struct node_link *k);
/* A DHT message from k's peer. */
void route_input(struct node_link *k, const uint8_t *msg, size_t len, uint64_t now);
/* The DHT's deadline may have moved. */
void route_timer_update(struct node *n);

/* ---- providers.c ---------------------------------------------------------------------------- */

struct pcache {
    uint8_t digest[DIGEST_LEN];
    struct dht_contact prov[DHT_K_MAX];
    unsigned n;
    uint64_t t; /* when the last lookup ended (0: none has) */
    bool used, looking, dialed;
    struct dht_contact hint; /* providers_hint's, kept through lookups until hint_until */
    uint64_t hint_until;
    struct node *node;
};

/* The providers of digest: looked up when unknown or old (again: also when the last lookup is
 * older than providers_retry; the lookup stops once it knows want of them), dialed once per
 * lookup. NULL when the cache is full of lookups. */
struct pcache *providers_get(struct node *n, const uint8_t digest[static DIGEST_LEN], unsigned want,
                             bool again, uint64_t now);
bool providers_has(const struct pcache *pc, const uint8_t id[static P2P_ID_LEN]);
/* The DHT named c a holder of digest otherwise (a claim done): it counts as a provider, and is
 * dialed. */
void providers_hint(struct node *n, const uint8_t digest[static DIGEST_LEN],
                    const struct dht_contact *c, uint64_t now);
/* Whether providers of pc may still become usable: its lookup runs, or a dial to one does. */
bool providers_waiting(struct node *n, const struct pcache *pc);

/* ---- announce.c ----------------------------------------------------------------------------- */

/* Compares what the store holds with what the DHT announces: provides what is new, withdraws
 * what is gone, and stops serving evicted layers. */
void announce_reconcile(struct node *n, uint64_t now);
/* One layer became complete. */
void announce_layer(struct node *n, const uint8_t digest[static DIGEST_LEN], uint64_t now);

/* ---- swarm.c -------------------------------------------------------------------------------- */

/* A layer's swarm key: its digest with the first bit flipped. Its partial providers are
 * announced under it (a provider record that says partial); the layer's own key names its
 * complete providers. The map is its own inverse. */
void swarm_key(const uint8_t layer[static DIGEST_LEN], uint8_t out[static DIGEST_LEN]);
/* k's peer asked HAVE of layer: it hears GOT of each chunk of it this node stores from now on
 * (the last NODE_LINK_WATCH layers it asked of). */
void swarm_watch(struct node_link *k, const uint8_t layer[static DIGEST_LEN]);
bool swarm_watching(const struct node_link *k, const uint8_t layer[static DIGEST_LEN]);
/* This node stored chunk i of layer (from a peer, checked): the peers watching the layer hear of
 * it, and the layer is announced as held in part. */
void swarm_chunk_stored(struct node *n, const uint8_t layer[static DIGEST_LEN], uint32_t i,
                        uint64_t now);

/* ---- claim.c: fetch claims (single flight) -------------------------------------------------- */

/* A layer's claim: a CLAIM job waiting on another node's claim, or a claim this node holds for
 * its task's registry download (renewed until CLAIM_END). */
struct node_claim {
    struct node *n;
    bool used, held, waited;
    /* standby: the granter named this node the next holder (renewed every lease/3 while its task
     * reads the holder's download); promoted: the standby got the claim with no job to tell
     * (the task learns it from its next CLAIM) */
    bool standby, promoted;
    uint64_t owner; /* the task's (node_job.owner) */
    uint8_t digest[DIGEST_LEN];
    struct node_job *j; /* the CLAIM job not yet handed back */
    struct dht_contact granter;
    bool has_granter;
    struct dht_claim *req;   /* the request out */
    struct node_timer timer; /* the next ask: a renewal (held) or a poll (waiting) */
    uint64_t since, wait_max;
};
void claims_init(struct node *n);
/* A CLAIM or CLAIM_END job. */
void claim_submit(struct node *n, struct node_job *j, uint64_t now);
/* node_stop: the waiting jobs come back -ECANCELED. */
void claims_cancel_all(struct node *n);

/* ---- serve.c -------------------------------------------------------------------------------- */

struct served_layer {
    uint8_t digest[DIGEST_LEN];
    void *l; /* the store's layer handle; NULL: a free slot */
    unsigned refs;
    uint64_t used;
    bool gone; /* evicted: answers under way finish, no new one starts */
};

void serve_request(struct node_link *k, const struct p2p_msg *m, uint64_t now);
/* Layers no longer held (held: sorted by digest) are served no more. */
void serve_forget(struct node *n, const struct node_held *held, size_t nheld);
void serve_close_all(struct node *n);
/* k sent bytes (or closed): the chunk answers whose bytes have all left free their slots. */
void serve_link_sent(struct node_link *k);
void serve_link_closed(struct node_link *k);
/* A GET_BLOB of a download under way, for bytes not written yet (serve.c). */
struct parked {
    struct node_link *k;
    uint32_t id;
    void *dl;
    uint64_t off, len, since;
    struct parked *next;
};

/* ---- fetch.c -------------------------------------------------------------------------------- */

void jobs_step(struct node *n, uint64_t now);
/* Hands back every job that is done and has nothing in flight. */
void jobs_release(struct node *n);
void jobs_cancel_all(struct node *n);
/* Frees the jobs held, handing none back (node_free). */
void jobs_free_all(struct node *n);
/* p2p_peer callbacks of our requests. */
int fetch_on_data(struct node_link *k, void *req, uint64_t total, uint64_t off, const uint8_t *b,
                  size_t len, uint64_t now);
void fetch_on_done(struct node_link *k, void *req, int rc, uint64_t now);
void fetch_on_have(struct node_link *k, void *req, uint32_t nchunks, const uint8_t *bitmap);
/* Whether a chunk job of this node has chunk i of layer (cut into nchunks) checked and written:
 * servable, though the store shows it only once the job's task has flushed (a whole pull
 * flushes at its end). */
bool fetch_jobs_have(struct node *n, const uint8_t layer[static DIGEST_LEN], uint32_t nchunks,
                     uint32_t i);
/* k closed (its requests have ended): the jobs forget what they knew of its peer. */
void fetch_link_closed(struct node *n, const struct node_link *k);
/* Whether a job of this node knows that k's peer holds chunk i of layer (it needs no GOT). */
bool fetch_peer_has(struct node *n, const struct node_link *k,
                    const uint8_t layer[static DIGEST_LEN], uint32_t i);
/* k's peer holds chunk of layer now (its GOT). */
void fetch_on_got(struct node_link *k, const uint8_t layer[static DIGEST_LEN], uint32_t chunk);

/* ---- verify.c ------------------------------------------------------------------------------- */

struct verify_item {
    uint8_t layer[DIGEST_LEN];
    struct node_task *t; /* the VERIFY task, not yet started */
};
/* A peer (id) whose chunk of layer failed its check against an index (ix, its SHA-256) another
 * node sent: one of the two is false, and the layer's verification will say which
 * (node_index_judged). */
struct chunk_suspect {
    uint8_t layer[DIGEST_LEN], id[P2P_ID_LEN], ix[DIGEST_LEN];
    bool used;
};
int verify_init(struct node *n);
void verify_free(struct node *n);
/* A mount's fetch of t->layer ended (the layer still partial): its image is queued for a
 * verification, unless it is already. */
void verify_after_fetch(struct node *n, const struct node_task *t);
/* Starts the next verification if none runs (and the node is not stopping). */
void verify_next(struct node *n);
/* The VERIFY task t ended. */
void verify_done(struct node *n, struct node_task *t);
/* Peer id sent a chunk of layer that failed its check against index ix, another node's. */
void verify_suspect(struct node *n, const uint8_t layer[static DIGEST_LEN],
                    const uint8_t id[static P2P_ID_LEN], const uint8_t ix[static DIGEST_LEN]);
/* Whether id sent a false index (its links are refused). */
bool verify_forger(const struct node *n, const uint8_t id[static P2P_ID_LEN]);

/* ---- ctl.c / counters.c --------------------------------------------------------------------- */

struct ctl_pending {
    struct node_ctl *c;
    struct node *n;
    struct dht_lookup *lookup; /* PROVIDERS */
    struct node_task *task;    /* PULL, FETCH */
    struct node_exec *wait;    /* WAIT: the job it waits for */
    struct ctl_pending *next;
};

void ctl_answer(struct node *n, struct node_ctl *c, struct json_t *ans);
struct json_t *ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
struct ctl_pending *ctl_pending_new(struct node *n, struct node_ctl *c);

/* ---- run.c, ctl_run.c: jobs ------------------------------------------------------------------ */

int exec_init(struct node *n);
void exec_free_all(struct node *n);
void exec_stop(struct node *n);
/* Admits x (its request filled, owned by the core now): 0 (PREPARING: NODE_FX_EXEC queued, or
 * QUEUED), or a negative code with why in msg (it is freed): AFSP_E_USAGE (it can never fit
 * here, or its name is taken), -EAGAIN (no room now, and it did not ask to queue), -ENOSPC
 * (the queue is full). */
int exec_admit(struct node *n, struct node_exec *x, char *msg, size_t cap);
/* The job whose id or name is key (the newest of that name), or NULL. */
struct node_exec *exec_find(struct node *n, const char *key);
/* Kills x with sig: a queued job is cancelled (KILLED), a preparing or running one signalled
 * (NODE_FX_EXEC_KILL). Returns 0, or -EALREADY (it has ended). */
int exec_kill(struct node *n, struct node_exec *x, int sig);
/* Wall-clock ms of the core's now. */
uint64_t exec_wall(const struct node *n, uint64_t now);
/* The control verbs (ctl_run.c). */
void ctl_run(struct node *n, struct node_ctl *c, struct json_t *req);
void ctl_jobs(struct node *n, struct node_ctl *c, struct json_t *req);
void ctl_kill(struct node *n, struct node_ctl *c, struct json_t *req);
void ctl_wait(struct node *n, struct node_ctl *c, struct json_t *req);
/* x ended: the control requests waiting for it are answered. */
void ctl_exec_ended(struct node *n, struct node_exec *x);
struct json_t *exec_json(const struct node *n, const struct node_exec *x);
struct json_t *exec_stats_json(const struct node *n);
/* Ends every control request still waiting (lookups cancelled, tasks go on unheard); answer:
 * each is told the node is stopping (node_stop), or none is (node_free). */
void ctl_cancel_all(struct node *n, bool answer);
void node_task_free(struct node_task *t);
struct json_t *counters_stats_json(struct node *n, uint64_t now);
/* k's link closed: its chunk bytes go to its peer's tally. */
void counters_link_closed(struct node *n, const struct node_link *k);
struct json_t *counters_peers_json(struct node *n, uint64_t now);

/* ---- node.c --------------------------------------------------------------------------------- */

struct effectq {
    struct node_effect *v;
    size_t head, len, cap;
};
int fx_push(struct node *n, const struct node_effect *e);

struct accept_src {
    uint8_t family;
    uint8_t key[8]; /* the IPv4 address, or the IPv6 /64 (one host's whole range) */
    double tokens;
    uint64_t t;
};

struct node {
    struct node_cfg cfg;
    struct node_durations t;
    const struct p2p_identity *id;
    uint8_t ckey[P2P_KEY_LEN];
    struct dht *dht;
    const struct node_store_ops *so;
    void *sa;
    uint64_t now; /* of the event being handled */
    uint64_t started_wall_ms, started;

    struct seed seeds[NODE_SEEDS_MAX];
    size_t nseeds;

    struct node_link *links, *touched, *closing;
    size_t nlinks, links_max;
    uint64_t serials;
    struct accept_src sources[NODE_ACCEPT_SOURCES];

    struct node_job_state *jobs; /* held, newest first */
    bool jobs_dirty;
    uint64_t job_turns; /* jobs start at different links */

    struct pcache pc[NODE_PROVIDERS_CACHED];
    struct node_claim claims[NODE_CLAIMS];
    struct served_layer layers[NODE_LAYERS_OPEN];
    struct parked *parked; /* newest first */
    unsigned nparked;
    struct node_timer park_timer;
    uint64_t serving, requesting; /* answers in production, requests waiting: all links */
    uint64_t serving_chunks;      /* of those answers, chunks (at most serve_chunks) */
    unsigned serve_chunks;

    struct ctl_pending *pending;
    struct node_task *tasks; /* running */
    size_t ntasks;

    /* run.c: jobs run here */
    struct exec_capacity cap;
    bool cap_none;            /* the node offers no jobs (no cpu or no memory) */
    struct exec_queue *queue; /* jobs waiting for room */
    struct node_exec *execs;  /* every job kept, newest first */
    size_t nexec_live;        /* handed to the runner, not yet done */
    size_t nexec_ended;       /* kept and ended */
    uint64_t exec_seq;        /* the last job's counter */
    uint8_t *ports_used;      /* a bit for each port of the publish range, once one was given */
    uint32_t port_next;       /* where the search for a free one starts (next fit) */

    struct verify_item *verify; /* NODE_VERIFY_QUEUED: images to verify, oldest first */
    size_t nverify;
    bool verifying;                 /* a VERIFY task runs */
    uint8_t (*forgers)[P2P_ID_LEN]; /* NODE_FORGERS_MAX, a ring */
    size_t nforgers;
    struct chunk_suspect suspects[NODE_SUSPECTS]; /* a ring */
    size_t suspect_next;

    struct node_timer dht_timer, reconcile_timer;
    struct node_timer **heap;
    size_t nheap, heapcap;

    struct effectq fx;
    bool stopping, stopped;
    struct node_counters st;
    struct peer_tally {
        uint8_t id[P2P_ID_LEN];
        uint64_t in, out; /* chunk bytes from the peer and to it, over links closed */
    } tally[NODE_PEER_TALLY];
    size_t ntally;
};

/* Does every piece of work marked, until none is left, and queues the effects. */
void node_settle(struct node *n, uint64_t now);

/* ==== the daemon's parts: not the core =========================================================
 */

/* store_lmdb.c: the store ops over store/ (store_arg: a struct store *). */
extern const struct node_store_ops node_store_lmdb;

/* runner.c: jobs on threads of their own (the image's mount, the runtime); at start, what a
 * node that died left is removed. wake(arg) is called from any thread when runner_poll has
 * work. */
struct runner;
int runner_new(struct runner **out, const struct node_runner_cfg *cfg, const char *data_dir,
               const uint8_t node_id[4], struct store *s, void (*wake)(void *arg), void *arg);
/* After every job is done (NODE_FX_STOPPED): the images' mounts are unmounted. */
void runner_free(struct runner *r);
/* Makes the runner's threads stop waking the loop, and waits for those that might (before the
 * loop's handles close). */
void runner_stop_wakes(struct runner *r);
/* A thread for x (NODE_FX_EXEC). Returns 0, or a negative code (nothing started). */
int runner_start(struct runner *r, struct node_exec *x);
/* NODE_FX_EXEC_KILL. */
void runner_kill(struct runner *r, struct node_exec *x, int sig);
/* NODE_FX_EXEC_FREE: the job's directory (its logs) removed, x freed. */
void runner_forget(struct runner *r, struct node_exec *x);
/* On the loop's thread, after a wake: jobs that run now and jobs that ended are reported. */
void runner_poll(struct runner *r, struct node *n, uint64_t now);
size_t runner_running(struct runner *r);

/* task.c: tasks on threads of their own. A task's thread runs its pull or fetch on the store,
 * submitting jobs (node_job_submit, on the loop's thread) for what peers may have. */
struct store;
struct tasks;
/* wake(arg) is called from any thread when tasks_poll has work; it must only wake the loop. */
int tasks_new(struct tasks **out, struct store *s, void (*wake)(void *arg), void *arg);
/* After every task is done (tasks_running is 0). */
void tasks_free(struct tasks *ts);
/* A thread for t. Returns 0, or a negative code (nothing started: the caller reports t done). */
int tasks_start(struct tasks *ts, struct node_task *t);
size_t tasks_running(struct tasks *ts);
/* On the loop's thread, after a wake: jobs submitted go to the core, finished tasks are joined
 * and reported (node_task_done). */
void tasks_poll(struct tasks *ts, struct node *n, uint64_t now);
/* NODE_FX_JOB_DONE: the thread waiting on j goes on. */
void tasks_job_done(struct tasks *ts, struct node_job *j);

#endif
