/*
 * node_uv.c - `afsp node`: the daemon. One libuv loop carries the peer connections (p2p_peer,
 * sans-IO, driven here), the control socket through which the CLI talks to the node, and the
 * signals that stop it. Pulls run on their own threads (store_pull blocks) and ask the loop for
 * blobs, indexes and chunks from peers through a job queue.
 *
 * Owns: the sockets, the peer links, the fetch jobs, the node's counters. Must not: block the
 * loop on the network (all peer I/O is libuv's), write a key to a log, or serve anything to a
 * connection that has not completed the handshake.
 */
#include "cmd.h"
#include "ctl.h"

#include "../dht/dht.h"
#include "../p2p/p2p.h"
#include "../store/pull/pull.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define NODE_MAX_SEEDS 32
#define LINK_RBUF (256u << 10)
#define SEND_BUDGET (4u << 20) /* answer bytes queued per link before we wait for the socket */
#define BAN_MS 60000           /* a peer that sent a bad chunk or stalled is skipped this long */
#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 30000
#define ACCEPT_BURST 20 /* handshakes a source may start at once ... */
#define ACCEPT_PER_S 5  /* ... and per second after that */
#define ACCEPT_SOURCES 256
#define LAYER_CACHE 8
#define JOB_INFLIGHT_MAX (64u << 20) /* chunk bytes a fetch job has asked for and not received */
#define JOB_LINKS_MAX 256            /* links one fetch job spreads its chunks over */
#define TASKS_MAX 64                 /* pulls and fetches running at once */
#define HEDGE_MS 1000                /* a chunk request silent this long goes to a 2nd peer */
#define HEDGE_MAX 8                  /* requests of one job hedged at once */
#define JOBS_TICK_MS (HEDGE_MS / 4)
#define LINK_DUPLICATE (-EALREADY) /* a link closed because the pair has another */
#define LINK_IDLE (-ETIME)         /* a link closed because nothing used it for a while */
#define LINK_IDLE_S 120            /* the default of --idle-timeout */
#define LINKS_MAX 4096             /* connections at once (fewer if the fd limit is lower) */
#define LINKS_FD_SPARE 128         /* descriptors kept for the store, pulls and the CLI */
#define LINK_DHT_QUEUE 64          /* DHT messages waiting for a connection to come up */
#define PCACHE 64                  /* layers whose providers are remembered */
#define PROVIDERS_WANT 4           /* a provider lookup stops once it knows this many */
#define PROVIDERS_FRESH_MS 30000   /* providers are looked up again after this long ... */
#define PROVIDERS_RETRY_MS 1000    /* ... or, when none could serve, after this long */
#define RECONCILE_MS 10000         /* what the store holds is compared with what we announce */

const struct command cmd_node_def = {
    "node", cmd_node, "run the node daemon: peers, chunk exchange, the control socket",
    "[--listen HOST:PORT] [--seed HOST:PORT]... [--cluster-key-file FILE]\n"
    "\n"
    "Runs this data directory's node until SIGTERM or SIGINT. It listens for peers on\n"
    "--listen (default 0.0.0.0:" CTL_DEFAULT_PORT_STR
    "), connects to every --seed, and serves the\n"
    "layers it holds to cluster members only: every connection starts with a Noise\n"
    "handshake keyed by the cluster key, and a peer without it gets nothing but a closed\n"
    "connection. While it runs, `afsp pull` on this data directory goes through it:\n"
    "manifests, configs and layers come from peers when they hold them (every chunk\n"
    "checked against the layer digest), else from the registry.\n"
    "\n"
    "  --listen HOST:PORT       where peers connect (port 0: do not listen)\n"
    "  --seed HOST:PORT         a node to connect to (repeatable)\n"
    "  --cluster-key-file FILE  the cluster key (afsp genkey); default DATA/cluster.key,\n"
    "                           created on first start\n"
    "  --idle-timeout SECONDS   close a connection nothing used for this long (default 120;\n"
    "                           0: never); connections to seeds stay open\n"
    "\n"
    "Nodes form a Kademlia DHT over these connections: a node announces the layers and\n"
    "manifests it holds in full, and finds who holds one by its digest, so one --seed is\n"
    "enough to reach every node of the cluster.\n"
    "\n"
    "The node's identity is DATA/node.key (created on first start); its control socket is\n"
    "DATA/afsp.sock (mode 0600). Log lines go to stderr; -v for connections and fetches.\n",
    false};

struct node;
struct link;

/* A layer opened for serving chunks: shared by the answers that read it. */
struct served_layer {
    uint8_t digest[DIGEST_LEN];
    struct store_layer *l;
    unsigned refs;
    uint64_t used;
    bool gone; /* evicted: answers under way finish, no new one starts */
};

/* One answer's bytes: from memory (a small blob, an index) or from a layer's blob file. */
struct src {
    struct node *n;
    struct buf mem;
    struct served_layer *sl;
    uint64_t base; /* where the object starts in the blob file */
};

struct seed {
    char text[300];
    struct sockaddr_storage addr;
    struct link *link;
    uv_timer_t retry;
    uint64_t backoff;
};

/* A DHT message waiting for its connection to come up. */
struct dq {
    struct dq *next;
    size_t len;
    uint8_t msg[];
};

struct link {
    struct node *n;
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct p2p_peer *p;
    struct seed *seed;
    struct link *next;
    bool initiator, up, closing, writing;
    bool flush_due; /* a request was cancelled on it from another link's input: flush it soon */
    bool expect;    /* dialed to reach the node expect_id (a DHT contact) */
    uint8_t expect_id[P2P_ID_LEN];
    struct dht_addr dialed;   /* the address we dialed (port 0: the peer dialed us) */
    struct dq *dq, **dq_tail; /* DHT messages for expect_id, sent once it is up */
    unsigned ndq;
    int doom; /* close with this once the input being read is done */
    char addr[300];
    uint16_t hello_port;
    uint64_t serial; /* unique for the node's life: jobs remember links by it */
    uint64_t t0, since, rtt_ms, bytes_in, bytes_out, ban_until;
    uint64_t last_io; /* when bytes last went either way (ms) */
};

/* A request of a fetch job on one link. */
struct xreq {
    struct job *j;
    uint32_t chunk;
    struct store_chunk_in w;
    /* chunk requests: */
    struct link *k;
    uint64_t last;            /* when it was sent or its last byte came */
    struct xreq *twin;        /* the same chunk asked of another peer (hedged), or NULL */
    bool hedge;               /* this is the second request of the pair */
    struct xreq *prev, *next; /* the job's chunk requests */
};

enum job_kind { JOB_BLOB, JOB_INDEX, JOB_CHUNKS };

/* A pull thread's request to the loop; the thread waits on cv until done. */
struct job {
    enum job_kind kind;
    uint8_t digest[DIGEST_LEN];
    uint64_t max;
    struct buf *out;
    struct store_fetch *f;
    uint32_t first, last; /* JOB_CHUNKS: the chunks wanted */
    int rc;
    bool done, released;
    struct job *next;
    /* loop side */
    bool relooked;   /* the providers were looked up again after every link failed */
    uint64_t *tried; /* serials of the links asked (blob, index) or that lack the layer */
    size_t ntried;
    uint8_t *inflight; /* JOB_CHUNKS: chunk bitmap */
    uint32_t nreq;     /* requests of this job on the links */
    uint64_t inflight_bytes;
    size_t turn;       /* the link that gets the next chunk */
    struct xreq *reqs; /* JOB_CHUNKS: the requests on the links */
    unsigned nhedged;  /* pairs of requests for one chunk */
};

/* A control request that runs on its own thread: a pull, or a fetch of chunks for a mount. */
struct pull_task {
    struct node *n;
    struct ctl_client *c;
    bool fetch, lazy, via_registry;
    bool completed;      /* a fetch: the layer has every chunk now (flushed) */
    char *ref;           /* the image (for a fetch: where the registry is; may be NULL) */
    struct pull_args pa; /* its strings are the task's */
    uint8_t layer[DIGEST_LEN];
    uint32_t first, last;
    pthread_t th;
    int rc;
    char msg[512];
    uint8_t digest[DIGEST_LEN];
    struct pull_task *next;
};

/* The providers of a blob or layer, as the DHT last said. */
struct pcache {
    uint8_t digest[DIGEST_LEN];
    struct dht_contact prov[DHT_K_MAX];
    unsigned n;
    uint64_t t; /* when the last lookup ended (0: none has) */
    bool used, looking, dialed;
    struct node *node;
};

struct accept_src {
    uint32_t ip;
    double tokens;
    uint64_t t;
};

struct node {
    uv_loop_t loop;
    struct store *s;
    struct p2p_identity id;
    uint8_t ckey[P2P_KEY_LEN];
    uv_tcp_t listener;
    bool listening;
    uint16_t port;
    char listen_text[300];
    struct seed seeds[NODE_MAX_SEEDS];
    size_t nseeds;
    struct link *links;
    size_t nlinks, links_max;
    uint64_t idle_ms; /* --idle-timeout (0: never) */
    uint8_t *rbuf;    /* every link reads into this, one at a time: p2p_conn copies what it keeps */
    uv_pipe_t ctl;
    char ctl_path[4200];
    uv_signal_t sigterm, sigint;
    uv_async_t wake;
    pthread_mutex_t mu; /* jobs, finished pulls */
    struct job *jobs;
    struct pull_task *finished, *running;
    struct served_layer layers[LAYER_CACHE];
    struct accept_src sources[ACCEPT_SOURCES];
    bool stopping, dispatching;
    uint64_t started, serials;
    pthread_cond_t cv; /* a job was released */
    struct dht *dht;
    uv_timer_t dht_timer, reconcile;
    uv_timer_t jobs_timer; /* steps the jobs while any runs: hedging needs time to pass */
    uv_timer_t idle_timer; /* closes idle links */
    uv_idle_t dht_idle;    /* runs the DHT's side effects from the top of the loop */
    struct dht_out dht_out;
    struct pcache pc[PCACHE];
    bool reconcile_due; /* set by the store's eviction hook, on any thread */
    struct {
        uint64_t chunks_served, bytes_served, chunks_fetched, bytes_fetched, blobs_fetched;
        uint64_t bad_chunks, stalls, peer_errors, handshake_failures, rate_limited;
        uint64_t pulls, pulls_failed, fetches, fetches_failed, registry_fetches;
        uint64_t serving_peak;  /* the most answers in progress at once */
        uint64_t requests_peak; /* the most requests of ours waiting for answers at once */
        uint64_t provider_lookups, providers_found, dht_dials;
        uint64_t links_idle_closed, links_refused; /* idle; over links_max */
        uint64_t hedges, hedges_won; /* chunk requests sent to a second peer; it answered first */
    } st;
    uint64_t serving, requesting; /* now, all links */
    struct pull_peers peers;
};

static uint64_t now_ms(struct node *n)
{
    return uv_now(&n->loop);
}

static const char *id_short(const uint8_t *id, char out[17])
{
    return hex_fmt(id, 8, out);
}

/* ---- links: connect, handshake, bytes in and out --------------------------------------------- */

static void link_close(struct link *k, int rc);
static void link_flush(struct link *k);
static void jobs_dispatch(struct node *n);
static void dq_send(struct link *from, struct link *to);
static struct link *link_to(struct node *n, const uint8_t id[P2P_ID_LEN], bool pending);
static void sockaddr_dht(const struct sockaddr *sa, uint16_t port, struct dht_addr *out);

static void on_link_closed(uv_handle_t *h)
{
    struct link *k = h->data;
    if (h == (uv_handle_t *)&k->tcp) {
        uv_close((uv_handle_t *)&k->timer, on_link_closed);
        return;
    }
    free(k);
}

static void seed_schedule(struct seed *sd);
static void dht_mark(struct node *n);
static void dq_drop(struct link *k);

static void link_close(struct link *k, int rc)
{
    struct node *n = k->n;
    char id[17];
    if (k->closing)
        return;
    k->closing = true;
    /* The DHT hears at once that a node it was talking to is gone (not when it is a duplicate
     * connection closed, or the node stops): its requests fail now, not at their timeout. */
    if (n->dht && !n->stopping && rc != LINK_DUPLICATE) {
        const uint8_t *gone = k->up       ? p2p_conn_peer_id(p2p_peer_conn(k->p))
                              : k->expect ? k->expect_id
                                          : NULL;
        struct link *other = gone ? link_to(n, gone, true) : NULL;
        if (gone && (!other || other == k) && (k->up ? rc != 0 && rc != LINK_IDLE : true))
            dht_unreachable(n->dht, gone, now_ms(n));
        dht_mark(n);
    }
    dq_drop(k);
    if (k->up)
        log_info("event=peer_down id=%s addr=%s reason=\"%s\"",
                 id_short(p2p_conn_peer_id(p2p_peer_conn(k->p)), id), k->addr,
                 rc == LINK_IDLE ? "idle" : err_str(rc));
    else if (rc != -ECANCELED)
        log_info("event=handshake_failed addr=%s reason=\"%s\"", k->addr, err_str(rc));
    if (!k->up && (rc == AFSP_E_AUTH || rc == AFSP_E_FORMAT || rc == -ETIMEDOUT))
        n->st.handshake_failures++;
    if (k->up && rc != -ECANCELED && rc != LINK_DUPLICATE && rc != LINK_IDLE && rc != -ECONNRESET &&
        rc != 0)
        n->st.peer_errors++;
    for (struct link **pp = &n->links; *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            n->nlinks--;
            break;
        }
    if (k->seed) {
        k->seed->link = NULL;
        if (!n->stopping)
            seed_schedule(k->seed);
    }
    /* The peer's requests end here (their jobs move the chunks to other links). */
    struct p2p_peer *p = k->p;
    k->p = NULL;
    p2p_peer_free(p, rc ? rc : -ECONNRESET);
    uv_close((uv_handle_t *)&k->tcp, on_link_closed);
    jobs_dispatch(n);
}

static void link_arm(struct link *k);

static void on_write(uv_write_t *w, int status)
{
    struct link *k = w->data;
    free(w);
    if (k->closing)
        return;
    k->writing = false;
    if (status < 0) {
        link_close(k, -ECONNRESET);
        return;
    }
    link_flush(k);
}

/* Sends what the connection has pending: as much as the socket takes at once without a copy,
 * the rest copied into one write. Produces more answer bytes while there is room. */
static void link_flush(struct link *k)
{
    for (int round = 0; round < 64 && !k->closing && !k->writing; round++) {
        if (k->up && p2p_peer_pump(k->p, SEND_BUDGET) < 0) {
            link_close(k, p2p_peer_error(k->p));
            return;
        }
        struct p2p_conn *c = p2p_peer_conn(k->p);
        const uint8_t *p;
        size_t n = p2p_conn_pending(c, &p);
        if (n == 0)
            break;
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)(n > (1u << 30) ? 1u << 30 : n));
        int w = uv_try_write((uv_stream_t *)&k->tcp, &b, 1);
        if (w > 0) {
            p2p_conn_sent(c, (size_t)w);
            k->bytes_out += (uint64_t)w;
            k->last_io = now_ms(k->n);
            continue;
        }
        if (w != UV_EAGAIN) {
            link_close(k, -ECONNRESET);
            return;
        }
        /* The socket is full: copy the rest into a write request, which libuv finishes. */
        uv_write_t *req = malloc(sizeof *req + b.len);
        if (!req) {
            link_close(k, -ENOMEM);
            return;
        }
        memcpy(req + 1, p, b.len);
        p2p_conn_sent(c, b.len);
        k->bytes_out += b.len;
        k->last_io = now_ms(k->n);
        req->data = k;
        uv_buf_t copy = uv_buf_init((char *)(req + 1), b.len);
        if (uv_write(req, (uv_stream_t *)&k->tcp, &copy, 1, on_write) < 0) {
            free(req);
            link_close(k, -ECONNRESET);
            return;
        }
        k->writing = true;
    }
    if (!k->closing)
        link_arm(k);
}

static void on_link_timer(uv_timer_t *t)
{
    struct link *k = t->data;
    if (k->closing)
        return;
    if (p2p_peer_tick(k->p, now_ms(k->n)) < 0) {
        link_close(k, p2p_peer_error(k->p));
        return;
    }
    link_flush(k);
    jobs_dispatch(k->n);
}

static void link_arm(struct link *k)
{
    uint64_t d = p2p_peer_deadline(k->p), now = now_ms(k->n);
    if (d == UINT64_MAX)
        uv_timer_stop(&k->timer);
    else
        uv_timer_start(&k->timer, on_link_timer, d > now ? d - now : 0, 0);
}

static bool link_usable(const struct link *k, uint64_t now)
{
    return k->up && !k->closing && k->ban_until <= now;
}

static void link_up(struct link *k)
{
    struct node *n = k->n;
    const uint8_t *pid = p2p_conn_peer_id(p2p_peer_conn(k->p));
    char id[17];
    k->up = true;
    k->since = time_now_ns();
    k->rtt_ms = now_ms(n) - k->t0;
    if (!memcmp(pid, n->id.id, P2P_ID_LEN)) {
        link_close(k, -ECANCELED); /* ourselves, through a seed that is our own address */
        return;
    }
    if (k->expect && memcmp(pid, k->expect_id, P2P_ID_LEN)) {
        log_info("event=wrong_node addr=%s id=%s", k->addr, id_short(pid, id));
        link_close(k, AFSP_E_AUTH); /* the node we dialed for is not there */
        return;
    }
    /* One connection per pair: of two, both ends keep the one the smaller ID initiated. */
    for (struct link *o = n->links; o; o = o->next) {
        if (o == k || !o->up || o->closing ||
            memcmp(p2p_conn_peer_id(p2p_peer_conn(o->p)), pid, P2P_ID_LEN))
            continue;
        bool we_smaller = memcmp(n->id.id, pid, P2P_ID_LEN) < 0;
        /* the link we initiated, if we are the smaller; else the one the peer initiated */
        struct link *keep = (k->initiator == we_smaller) ? k : o;
        struct link *drop = keep == k ? o : k;
        if (drop->seed) {
            keep->seed = drop->seed;
            drop->seed->link = keep;
            drop->seed = NULL;
        }
        if (drop->dialed.port && !keep->dialed.port)
            keep->dialed = drop->dialed; /* we reached it there: the address is proven */
        if (drop == k)
            dq_send(k, keep);
        link_close(drop, LINK_DUPLICATE);
        if (drop == k)
            return;
        break;
    }
    log_info("event=peer_up id=%s addr=%s initiator=%d rtt_ms=%" PRIu64, id_short(pid, id), k->addr,
             k->initiator, k->rtt_ms);
    if (k->seed)
        k->seed->backoff = 0;
    p2p_peer_hello(k->p, n->listening ? n->port : 0);
    dq_send(k, k);
    if (k->seed && k->dialed.port) {
        struct dht_contact c = {.addr = k->dialed};
        memcpy(c.id, pid, P2P_ID_LEN);
        dht_add_contact(n->dht, &c, now_ms(n)); /* and, the first time, the join lookup */
    }
    dht_mark(n);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct link *k = h->data;
    (void)hint;
    *b = uv_buf_init((char *)k->n->rbuf, LINK_RBUF);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct link *k = s->data;
    size_t used;
    if (nread == 0 || k->closing)
        return;
    if (nread < 0) {
        link_close(k, -ECONNRESET);
        return;
    }
    k->bytes_in += (uint64_t)nread;
    k->last_io = now_ms(k->n);
    bool was_up = p2p_conn_established(p2p_peer_conn(k->p));
    if (p2p_peer_input(k->p, (const uint8_t *)b->base, (size_t)nread, now_ms(k->n), &used) < 0) {
        link_close(k, p2p_peer_error(k->p));
        return;
    }
    if (used != (size_t)nread) { /* p2p_peer_input takes everything it can frame */
        link_close(k, AFSP_E_PROTO);
        return;
    }
    if (k->doom) {
        link_close(k, k->doom);
        return;
    }
    if (!was_up && p2p_conn_established(p2p_peer_conn(k->p)))
        link_up(k);
    if (!k->closing)
        link_flush(k);
    jobs_dispatch(k->n);
}

static void rng(void *arg, uint8_t *buf, size_t n)
{
    (void)arg;
    randombytes_buf(buf, n);
}

static const struct p2p_peer_ops peer_ops;

static struct link *link_new(struct node *n, bool initiator)
{
    struct link *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->n = n;
    k->dq_tail = &k->dq;
    k->serial = ++n->serials;
    k->initiator = initiator;
    k->t0 = k->last_io = now_ms(n);
    struct p2p_peer_cfg cfg = {
        .conn = {initiator, &n->id, n->ckey, rng, NULL, k->t0, 0}, .ops = &peer_ops, .arg = k};
    if (p2p_peer_new(&k->p, &cfg) < 0) {
        free(k);
        return NULL;
    }
    uv_tcp_init(&n->loop, &k->tcp);
    uv_timer_init(&n->loop, &k->timer);
    k->tcp.data = k->timer.data = k;
    k->next = n->links;
    n->links = k;
    n->nlinks++;
    return k;
}

static void addr_fmt(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%d", host, ntohs(a->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%d", host, ntohs(a->sin6_port));
    } else {
        snprintf(out, cap, "?");
    }
}

static void link_start(struct link *k)
{
    uv_tcp_nodelay(&k->tcp, 1);
    if (uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read) < 0) {
        link_close(k, -ECONNRESET);
        return;
    }
    link_flush(k); /* the initiator's first handshake message */
}

/* ---- idle links: closed after --idle-timeout, or to make room ------------------------------ */

/* Nothing waits on the link: no request either way, no byte to send, no DHT message queued, and
 * it is not a seed's (those stay: they are how the node finds the cluster again). */
static bool link_idle(const struct link *k)
{
    return k->up && !k->closing && !k->seed && !k->writing && !k->ndq && !p2p_peer_inflight(k->p) &&
           !p2p_peer_serving(k->p) &&
           !p2p_conn_pending(p2p_peer_conn(k->p), &(const uint8_t *){NULL});
}

/* The idle link used longest ago, if any. */
static struct link *link_idlest(struct node *n)
{
    struct link *best = NULL;
    for (struct link *k = n->links; k; k = k->next)
        if (link_idle(k) && (!best || k->last_io < best->last_io))
            best = k;
    return best;
}

/* Room for one more link: true if there is, or an idle link was closed to make it. */
static bool links_room(struct node *n)
{
    if (n->nlinks < n->links_max)
        return true;
    struct link *k = link_idlest(n);
    if (!k) {
        n->st.links_refused++;
        log_debug("event=links_full links=%zu", n->nlinks);
        return false;
    }
    n->st.links_idle_closed++;
    link_close(k, LINK_IDLE);
    return true;
}

static void on_idle_timer(uv_timer_t *t)
{
    struct node *n = t->data;
    uint64_t now = now_ms(n);
    struct link *next;
    for (struct link *k = n->links; k; k = next) {
        next = k->next; /* link_close unlinks k, and only k */
        if (link_idle(k) && now - k->last_io >= n->idle_ms) {
            n->st.links_idle_closed++;
            link_close(k, LINK_IDLE);
        }
    }
}

/* ---- seeds: dial, and dial again after a failure -------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
    struct link *k = req->data;
    free(req);
    if (k->closing)
        return;
    if (status < 0) {
        log_info("event=connect_failed addr=%s reason=\"%s\"", k->addr, uv_strerror(status));
        link_close(k, -ECANCELED);
        return;
    }
    link_start(k);
}

static void seed_dial(struct seed *sd, struct node *n)
{
    if (n->stopping || sd->link)
        return;
    struct link *k = link_new(n, true);
    if (!k) {
        seed_schedule(sd);
        return;
    }
    snprintf(k->addr, sizeof k->addr, "%s", sd->text);
    sockaddr_dht((const struct sockaddr *)&sd->addr, 0, &k->dialed);
    k->seed = sd;
    sd->link = k;
    uv_connect_t *req = malloc(sizeof *req);
    if (!req) {
        link_close(k, -ENOMEM);
        return;
    }
    req->data = k;
    int rc = uv_tcp_connect(req, &k->tcp, (const struct sockaddr *)&sd->addr, on_connect);
    if (rc < 0) {
        free(req);
        log_info("event=connect_failed addr=%s reason=\"%s\"", sd->text, uv_strerror(rc));
        link_close(k, -ECANCELED);
    }
}

static void seed_retry_cb(uv_timer_t *t)
{
    seed_dial(t->data, t->loop->data);
}

static void seed_schedule(struct seed *sd)
{
    sd->backoff = sd->backoff ? sd->backoff * 2 : RETRY_MIN_MS;
    if (sd->backoff > RETRY_MAX_MS)
        sd->backoff = RETRY_MAX_MS;
    uv_timer_start(&sd->retry, seed_retry_cb, sd->backoff, 0);
}

/* ---- the DHT: its messages over the links, and what the node announces ---------------------- */

/* port 0: the sockaddr's own */
static void sockaddr_dht(const struct sockaddr *sa, uint16_t port, struct dht_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa;
        out->family = 4;
        memcpy(out->ip, &a->sin_addr, 4);
        out->port = port ? port : ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            out->family = 4;
            memcpy(out->ip, (const uint8_t *)&a->sin6_addr + 12, 4);
        } else {
            out->family = 6;
            memcpy(out->ip, &a->sin6_addr, 16);
        }
        out->port = port ? port : ntohs(a->sin6_port);
    }
}

static void dht_sockaddr(const struct dht_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == 4) {
        struct sockaddr_in *s4 = (void *)ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a->ip, 4);
        s4->sin_port = htons(a->port);
    } else {
        struct sockaddr_in6 *s6 = (void *)ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a->ip, 16);
        s6->sin6_port = htons(a->port);
    }
}

/* Where k's peer listens, as this node sees it: the address we dialed, else the connection's
 * address with the port of the peer's HELLO (port 0: it does not listen, or has not said). */
static void link_peer_addr(struct link *k, struct dht_addr *out)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (k->dialed.port) {
        *out = k->dialed;
        return;
    }
    memset(out, 0, sizeof *out);
    if (k->hello_port && uv_tcp_getpeername(&k->tcp, (struct sockaddr *)&ss, &len) == 0)
        sockaddr_dht((struct sockaddr *)&ss, k->hello_port, out);
}

static void dq_drop(struct link *k)
{
    while (k->dq) {
        struct dq *q = k->dq;
        k->dq = q->next;
        free(q);
    }
    k->dq_tail = &k->dq;
    k->ndq = 0;
}

static void link_send_dht(struct link *k, const uint8_t *msg, size_t len)
{
    if (p2p_peer_send_dht(k->p, msg, len) < 0) {
        link_close(k, p2p_peer_error(k->p) ? p2p_peer_error(k->p) : -ECONNRESET);
        return;
    }
    link_flush(k);
}

/* The messages waiting on from go out over to (up: from itself, or the pair's other link). */
static void dq_send(struct link *from, struct link *to)
{
    while (from->dq && !to->closing) {
        struct dq *q = from->dq;
        from->dq = q->next;
        link_send_dht(to, q->msg, q->len);
        free(q);
    }
    dq_drop(from);
}

/* The up link to node id, else (pending) a connection being made to reach it. */
static struct link *link_to(struct node *n, const uint8_t id[P2P_ID_LEN], bool pending)
{
    for (struct link *k = n->links; k; k = k->next)
        if (k->up && !k->closing && !memcmp(p2p_conn_peer_id(p2p_peer_conn(k->p)), id, P2P_ID_LEN))
            return k;
    for (struct link *k = n->links; k && pending; k = k->next)
        if (!k->up && !k->closing && k->expect && !memcmp(k->expect_id, id, P2P_ID_LEN))
            return k;
    return NULL;
}

/* A new connection to node c at its address. */
static struct link *link_dial(struct node *n, const struct dht_contact *c)
{
    struct sockaddr_storage ss;
    struct link *k = links_room(n) ? link_new(n, true) : NULL;
    if (!k) {
        dht_unreachable(n->dht, c->id, now_ms(n));
        dht_mark(n);
        return NULL;
    }
    n->st.dht_dials++;
    k->expect = true;
    memcpy(k->expect_id, c->id, P2P_ID_LEN);
    k->dialed = c->addr;
    k->dq_tail = &k->dq;
    dht_sockaddr(&c->addr, &ss);
    addr_fmt((struct sockaddr *)&ss, k->addr, sizeof k->addr);
    uv_connect_t *req = malloc(sizeof *req);
    if (!req) {
        link_close(k, -ENOMEM);
        return NULL;
    }
    req->data = k;
    int rc = uv_tcp_connect(req, &k->tcp, (struct sockaddr *)&ss, on_connect);
    if (rc < 0) {
        free(req);
        log_info("event=connect_failed addr=%s reason=\"%s\"", k->addr, uv_strerror(rc));
        link_close(k, rc);
        return NULL;
    }
    link_arm(k); /* the handshake's deadline covers the connect */
    return k;
}

/* One message from the DHT: over the link to its node (whichever end opened it: the handshake
 * proved the ID), or queued on a connection being made to the address the DHT gave. */
static void dht_route(struct node *n, const struct dht_out *o)
{
    struct link *k = link_to(n, o->to.id, false);
    if (k) {
        link_send_dht(k, o->msg, o->len);
        return;
    }
    k = link_to(n, o->to.id, true);
    if (!k && !(k = link_dial(n, &o->to)))
        return; /* link_close told the DHT */
    struct dq *q = k->ndq < LINK_DHT_QUEUE ? malloc(sizeof *q + o->len) : NULL;
    if (!q)
        return; /* the request times out */
    q->next = NULL;
    q->len = o->len;
    memcpy(q->msg, o->msg, o->len);
    *k->dq_tail = q;
    k->dq_tail = &q->next;
    k->ndq++;
}

static void on_dht_timer(uv_timer_t *t)
{
    struct node *n = t->data;
    dht_tick(n->dht, now_ms(n));
    dht_mark(n);
}

/* The top of the loop: links that had a request cancelled flush, what the DHT wants sent goes
 * out, jobs waiting on providers move, and the timer follows the DHT's next deadline. */
static void on_dht_idle(uv_idle_t *h)
{
    struct node *n = h->data;
    uv_idle_stop(h);
    if (n->stopping)
        return;
    struct link *next;
    for (struct link *k = n->links; k; k = next) {
        next = k->next; /* link_flush may close k, which unlinks only k */
        if (k->flush_due && !k->closing) {
            k->flush_due = false;
            link_flush(k);
        }
    }
    while (dht_output(n->dht, &n->dht_out))
        dht_route(n, &n->dht_out);
    jobs_dispatch(n);
    uint64_t d = dht_deadline(n->dht), now = now_ms(n);
    uv_timer_start(&n->dht_timer, on_dht_timer, d > now ? d - now : 0, 0);
}

static void dht_mark(struct node *n)
{
    if (n->dht && !n->stopping)
        uv_idle_start(&n->dht_idle, on_dht_idle);
}

static void on_dht(void *arg, struct p2p_peer *p, const uint8_t *b, size_t len)
{
    struct link *k = arg;
    struct node *n = k->n;
    struct dht_addr a;
    link_peer_addr(k, &a);
    int rc = dht_input(n->dht, p2p_conn_peer_id(p2p_peer_conn(p)), &a, b, len, now_ms(n));
    if (rc == AFSP_E_FORMAT && !k->doom)
        k->doom = AFSP_E_PROTO; /* closed once p2p_peer_input returns */
    dht_mark(n);
}

static int digest_cmp(const void *a, const void *b)
{
    return memcmp(a, b, DIGEST_LEN);
}

/* What the DHT announces follows what the store holds: every complete layer and every image
 * manifest is provided, and what is gone (evicted, pruned) is withdrawn. */
static void node_reconcile(struct node *n)
{
    struct layer_info *ls = NULL;
    struct image_info *is = NULL;
    size_t nl = 0, ni = 0, nw = 0;
    __atomic_store_n(&n->reconcile_due, false, __ATOMIC_SEQ_CST);
    if (store_layers_list(n->s, &ls, &nl) < 0)
        return;
    if (store_images_list(n->s, &is, &ni) < 0) {
        free(ls);
        return;
    }
    uint8_t(*want)[DIGEST_LEN] = malloc((nl + ni + 1) * DIGEST_LEN);
    if (want) {
        for (size_t i = 0; i < nl; i++)
            if (ls[i].complete)
                memcpy(want[nw++], ls[i].digest, DIGEST_LEN);
        for (size_t i = 0; i < ni; i++)
            memcpy(want[nw++], is[i].manifest_digest, DIGEST_LEN);
        qsort(want, nw, DIGEST_LEN, digest_cmp);
        uint64_t now = now_ms(n);
        /* a layer evicted is served no more, though its file may still be open here */
        for (size_t i = 0; i < LAYER_CACHE; i++) {
            struct served_layer *sl = &n->layers[i];
            bool present = false;
            for (size_t j = 0; j < nl && sl->l && !present; j++)
                present = !memcmp(ls[j].digest, sl->digest, DIGEST_LEN);
            if (sl->l && !present)
                sl->gone = true;
        }
        for (size_t i = 0; i < nw; i++)
            if (!dht_providing(n->dht, want[i]))
                dht_provide(n->dht, want[i], now);
        const uint8_t *key;
        for (size_t i = 0; (key = dht_provided_key(n->dht, i));) {
            if (bsearch(key, want, nw, DIGEST_LEN, digest_cmp)) {
                i++;
                continue;
            }
            uint8_t k[DIGEST_LEN];
            char dg[DIGEST_STR_LEN + 1];
            memcpy(k, key, DIGEST_LEN);
            dht_withdraw(n->dht, k);
            log_debug("event=withdrawn digest=%s", digest_fmt(k, dg));
        }
        free(want);
    }
    free(ls);
    store_images_free(is, ni);
    dht_mark(n);
}

static void on_reconcile_timer(uv_timer_t *t)
{
    node_reconcile(t->data);
}

/* The store's eviction hook, on whichever thread evicted: the loop withdraws at its next turn. */
static void on_evict(void *arg, const uint8_t digest[static DIGEST_LEN])
{
    struct node *n = arg;
    (void)digest;
    __atomic_store_n(&n->reconcile_due, true, __ATOMIC_SEQ_CST);
    uv_async_send(&n->wake);
}

/* ---- providers: who holds a blob, by its digest --------------------------------------------- */

static void on_providers(void *arg, int rc, const struct dht_result *r)
{
    struct pcache *pc = arg;
    struct node *n = pc->node;
    char dg[DIGEST_STR_LEN + 1];
    pc->looking = false;
    pc->dialed = false;
    pc->t = now_ms(n);
    pc->n = 0;
    if (rc == 0)
        for (size_t i = 0; i < r->nproviders && pc->n < DHT_K_MAX; i++)
            pc->prov[pc->n++] = r->providers[i];
    n->st.providers_found += pc->n;
    log_debug("event=providers digest=%s found=%u ms=%" PRIu64 " hops=%u messages=%u",
              digest_fmt(pc->digest, dg), pc->n, r->ms, r->hops, r->messages);
    dht_mark(n);
}

/* The providers of digest: looked up when unknown or old (again: also when the last lookup is
 * older than PROVIDERS_RETRY_MS, after every peer failed), and dialed once per lookup. */
static struct pcache *providers(struct node *n, const uint8_t digest[DIGEST_LEN], bool again)
{
    struct pcache *pc = NULL, *victim = NULL;
    uint64_t now = now_ms(n);
    for (size_t i = 0; i < PCACHE && !pc; i++) {
        struct pcache *c = &n->pc[i];
        if (c->used && !memcmp(c->digest, digest, DIGEST_LEN))
            pc = c;
        else if (!c->looking && (!victim || !c->used || (victim->used && c->t < victim->t)))
            victim = c;
    }
    if (!pc) {
        if (!victim)
            return NULL;
        pc = victim;
        memset(pc, 0, sizeof *pc);
        pc->used = true;
        pc->node = n;
        memcpy(pc->digest, digest, DIGEST_LEN);
    }
    if (!pc->looking && (!pc->t || now - pc->t > PROVIDERS_FRESH_MS ||
                         (again && now - pc->t > PROVIDERS_RETRY_MS))) {
        if (dht_find_providers(n->dht, digest, PROVIDERS_WANT, on_providers, pc, now, NULL) == 0) {
            pc->looking = true;
            n->st.provider_lookups++;
            dht_mark(n);
        } else {
            pc->t = now; /* no DHT contact: nothing to wait for */
            pc->n = 0;
        }
    }
    if (!pc->looking && !pc->dialed) {
        pc->dialed = true;
        for (unsigned i = 0; i < pc->n; i++)
            if (!link_to(n, pc->prov[i].id, true))
                link_dial(n, &pc->prov[i]);
    }
    return pc;
}

static bool pc_has(const struct pcache *pc, const uint8_t id[P2P_ID_LEN])
{
    for (unsigned i = 0; pc && i < pc->n; i++)
        if (!memcmp(pc->prov[i].id, id, P2P_ID_LEN))
            return true;
    return false;
}

/* Whether providers of pc may still become usable: the lookup runs, or a dial to one does. */
static bool pc_waiting(struct node *n, const struct pcache *pc)
{
    if (!pc)
        return false;
    if (pc->looking)
        return true;
    for (struct link *k = n->links; k; k = k->next)
        if (!k->up && !k->closing && k->expect && pc_has(pc, k->expect_id))
            return true;
    return false;
}

/* ---- the listener, with a per-source rate limit on new connections -------------------------- */

static bool accept_allowed(struct node *n, const struct sockaddr *sa)
{
    uint32_t ip = 0;
    if (sa->sa_family == AF_INET)
        ip = ((const struct sockaddr_in *)sa)->sin_addr.s_addr;
    else if (sa->sa_family == AF_INET6)
        memcpy(&ip, (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr + 12, 4);
    uint64_t t = now_ms(n) + 1; /* 0 marks a free slot */
    struct accept_src *slot = NULL, *oldest = &n->sources[0];
    for (size_t i = 0; i < ACCEPT_SOURCES && !slot; i++) {
        if (n->sources[i].t && n->sources[i].ip == ip)
            slot = &n->sources[i];
        else if (n->sources[i].t < oldest->t)
            oldest = &n->sources[i];
    }
    if (!slot) {
        slot = oldest;
        *slot = (struct accept_src){ip, ACCEPT_BURST, t};
    }
    return tokens_take(&slot->tokens, &slot->t, t, ACCEPT_PER_S, ACCEPT_BURST);
}

static void on_accept(uv_stream_t *server, int status)
{
    struct node *n = server->data;
    if (status < 0 || n->stopping)
        return;
    bool room = links_room(n); /* else the connection is taken and closed */
    struct link *k = link_new(n, false);
    if (!k)
        return; /* the connection waits in the backlog */
    if (uv_accept(server, (uv_stream_t *)&k->tcp) < 0) {
        link_close(k, -ECANCELED);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getpeername(&k->tcp, (struct sockaddr *)&ss, &len);
    addr_fmt((struct sockaddr *)&ss, k->addr, sizeof k->addr);
    if (!accept_allowed(n, (struct sockaddr *)&ss)) {
        n->st.rate_limited++;
        log_debug("event=rate_limited addr=%s", k->addr);
        link_close(k, -ECANCELED);
        return;
    }
    if (!room) {
        link_close(k, -ECANCELED);
        return;
    }
    link_start(k);
}

/* ---- serving ------------------------------------------------------------------------------- */

static struct served_layer *layer_get(struct node *n, const uint8_t digest[DIGEST_LEN])
{
    struct served_layer *free_slot = NULL, *lru = NULL;
    for (size_t i = 0; i < LAYER_CACHE; i++) {
        struct served_layer *sl = &n->layers[i];
        if (sl->l && sl->gone && !sl->refs) {
            store_layer_close(sl->l);
            sl->l = NULL;
        }
        if (sl->l && !sl->gone && !memcmp(sl->digest, digest, DIGEST_LEN)) {
            sl->used = now_ms(n);
            return sl;
        }
        if (!sl->l && !free_slot)
            free_slot = sl;
        if (sl->l && !sl->refs && (!lru || sl->used < lru->used))
            lru = sl;
    }
    struct served_layer *slot = free_slot ? free_slot : lru;
    struct store_layer *l;
    if (!slot || store_layer_open(n->s, digest, &l) < 0)
        return NULL; /* every slot is being read, or we do not hold it */
    if (slot->l)
        store_layer_close(slot->l);
    memcpy(slot->digest, digest, DIGEST_LEN);
    slot->l = l;
    slot->refs = 0;
    slot->gone = false;
    slot->used = now_ms(n);
    return slot;
}

static int src_read(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    struct src *s = arg;
    if (s->sl)
        return store_layer_read_blob(s->sl->l, s->base + off, buf, len);
    if (off > s->mem.len || len > s->mem.len - off)
        return AFSP_E_USAGE;
    memcpy(buf, s->mem.p + off, len);
    return 0;
}

static void src_done(void *arg)
{
    struct src *s = arg;
    if (s->sl)
        s->sl->refs--;
    s->n->serving--;
    buf_release(&s->mem);
    free(s);
}

/* A layer is served whole only when every chunk is here (a complete layer). */
static bool layer_whole(struct store_layer *l)
{
    for (uint32_t i = 0; i < store_layer_nchunks(l); i++)
        if (!store_layer_chunk_present(l, i))
            return false;
    return true;
}

static void answer_have(struct p2p_peer *p, const struct p2p_msg *m, struct served_layer *sl)
{
    uint32_t nc = store_layer_nchunks(sl->l);
    uint8_t *bm = calloc((nc + 7) / 8 + 1, 1);
    if (!bm) {
        p2p_peer_answer_error(p, m->id, P2P_ERR_BUSY);
        return;
    }
    for (uint32_t i = 0; i < nc; i++)
        if (store_layer_chunk_present(sl->l, i))
            bm[i / 8] |= (uint8_t)(1u << (i % 8));
    p2p_peer_answer_have(p, m->id, nc, bm);
    free(bm);
}

static void on_request(void *arg, struct p2p_peer *p, const struct p2p_msg *m)
{
    struct link *k = arg;
    struct node *n = k->n;
    struct src *s = calloc(1, sizeof *s);
    uint64_t total = 0, off = 0, len = UINT64_MAX;
    int rc = s ? 0 : -ENOMEM;
    if (rc == 0) {
        switch (m->type) {
        case P2P_GET_BLOB:
            off = m->off, len = m->len;
            if (store_small_get(n->s, m->digest, &s->mem) == 0) {
                total = s->mem.len;
            } else if ((s->sl = layer_get(n, m->digest)) &&
                       (layer_whole(s->sl->l) ||
                        (store_layer_refresh(s->sl->l) == 0 && layer_whole(s->sl->l)))) {
                uint64_t coff;
                uint32_t clen;
                store_layer_chunk(s->sl->l, store_layer_nchunks(s->sl->l) - 1, &coff, &clen);
                total = coff + clen;
            } else {
                s->sl = NULL;
                rc = AFSP_E_NOTFOUND;
            }
            break;
        case P2P_GET_INDEX:
            off = m->off, len = m->len;
            rc = store_index_bytes(n->s, m->digest, &s->mem);
            total = s->mem.len;
            break;
        case P2P_GET_CHUNK:
            if ((s->sl = layer_get(n, m->digest)) && m->chunk < store_layer_nchunks(s->sl->l) &&
                !store_layer_chunk_present(s->sl->l, m->chunk))
                store_layer_refresh(s->sl->l); /* a partial layer: the chunk may have come */
            if (!s->sl || m->chunk >= store_layer_nchunks(s->sl->l) ||
                !store_layer_chunk_present(s->sl->l, m->chunk)) {
                s->sl = NULL;
                rc = AFSP_E_NOTFOUND;
            } else {
                uint32_t clen;
                store_layer_chunk(s->sl->l, m->chunk, &s->base, &clen);
                total = clen;
            }
            break;
        case P2P_HAVE: {
            struct served_layer *sl = layer_get(n, m->digest);
            if (sl) {
                store_layer_refresh(sl->l);
                answer_have(p, m, sl);
            }
            rc = sl ? 1 : AFSP_E_NOTFOUND;
            break;
        }
        default:
            rc = AFSP_E_PROTO;
        }
    }
    if (rc != 0) {
        if (rc < 0)
            p2p_peer_answer_error(p, m->id,
                                  rc == AFSP_E_PROTO ? P2P_ERR_BAD_REQUEST
                                  : rc == -ENOMEM    ? P2P_ERR_BUSY
                                                     : P2P_ERR_NOT_FOUND);
        if (s)
            buf_release(&s->mem);
        free(s);
        return;
    }
    if (s->sl)
        s->sl->refs++;
    s->n = n;
    if (++n->serving > n->st.serving_peak)
        n->st.serving_peak = n->serving;
    if (m->type == P2P_GET_CHUNK)
        n->st.chunks_served++;
    if (off < total)
        n->st.bytes_served += len < total - off ? len : total - off;
    struct p2p_source ps = {src_read, src_done, s};
    p2p_peer_answer_data(p, m->id, total, off > total ? total : off, len, &ps);
}

/* ---- fetch jobs: blobs, indexes and chunks for a pull thread -------------------------------- */

static void job_finish(struct node *n, struct job *j, int rc)
{
    pthread_mutex_lock(&n->mu);
    j->rc = rc;
    j->done = true;
    pthread_mutex_unlock(&n->mu);
}

static int on_data(void *arg, struct p2p_peer *p, void *req, uint64_t total, uint64_t off,
                   const uint8_t *b, size_t len)
{
    struct xreq *x = req;
    struct job *j = x->j;
    struct link *k = arg;
    (void)p;
    (void)total;
    if (j->kind == JOB_CHUNKS) {
        x->last = now_ms(k->n);
        return store_fetch_chunk_data(j->f, &x->w, b, len);
    }
    if (off != j->out->len)
        return AFSP_E_PROTO;
    return buf_append(j->out, b, len);
}

static void requesting_inc(struct node *n)
{
    if (++n->requesting > n->st.requests_peak)
        n->st.requests_peak = n->requesting;
}

static void link_ban(struct link *k, const char *why)
{
    char id[17];
    if (k->closing)
        return; /* its requests end with the connection */
    bool again = k->ban_until > now_ms(k->n);
    k->ban_until = now_ms(k->n) + BAN_MS;
    if (!again) /* one line for the answers of a window that fail together */
        log_warn("event=peer_banned id=%s addr=%s for_s=%d reason=\"%s\"",
                 id_short(p2p_conn_peer_id(p2p_peer_conn(k->p)), id), k->addr, BAN_MS / 1000, why);
}

static bool tried(const struct job *j, const struct link *k)
{
    for (size_t i = 0; i < j->ntried; i++)
        if (j->tried[i] == k->serial)
            return true;
    return false;
}

static int job_exclude(struct job *j, const struct link *k)
{
    uint64_t *t = realloc(j->tried, (j->ntried + 1) * sizeof *t);
    if (!t)
        return -ENOMEM;
    j->tried = t;
    j->tried[j->ntried++] = k->serial;
    return 0;
}

/* A chunk request leaves the job's books (it ended, or was withdrawn). */
static void xreq_end(struct node *n, struct job *j, struct xreq *x)
{
    uint64_t coff;
    uint32_t clen;
    store_fetch_chunk(j->f, x->chunk, &coff, &clen);
    j->nreq--;
    n->requesting--;
    j->inflight_bytes -= clen;
    *(x->prev ? &x->prev->next : &j->reqs) = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (x->twin) { /* the other of the pair goes on alone */
        x->twin->twin = NULL;
        j->nhedged--;
    } else {
        j->inflight[x->chunk / 8] &= (uint8_t) ~(1u << (x->chunk % 8));
    }
}

/* The chunk came through the other request of a pair: t is cancelled at its peer. */
static void xreq_withdraw(struct node *n, struct job *j, struct xreq *t)
{
    if (!t->k->p) /* its link is being closed: its done comes from there */
        return;
    p2p_peer_cancel(t->k->p, t);
    t->k->flush_due = true; /* the CANCEL goes out from the top of the loop */
    dht_mark(n);
    xreq_end(n, j, t);
    store_fetch_chunk_drop(&t->w);
    free(t);
}

static void on_done(void *arg, struct p2p_peer *p, void *req, int rc)
{
    struct xreq *x = req;
    struct job *j = x->j;
    struct link *k = arg;
    struct node *n = k->n;
    (void)p;
    if (j->kind == JOB_CHUNKS) {
        struct xreq *twin = x->twin;
        xreq_end(n, j, x);
        if (rc == 0)
            rc = store_fetch_chunk_end(j->f, &x->w); /* frees what it held either way */
        else
            store_fetch_chunk_drop(&x->w);
        /* the peer's code (a stall, not-found, a size overrun from on_data) or the check's */
        if (rc == 0) {
            n->st.chunks_fetched++;
            n->st.bytes_fetched += x->w.got;
            if (twin && x->hedge) {
                n->st.hedges_won++;
                link_ban(twin->k, "slow: another peer sent a chunk first");
            }
            if (twin)
                xreq_withdraw(n, j, twin);
        } else if (rc == AFSP_E_DIGEST || rc == AFSP_E_SIZE) {
            n->st.bad_chunks++;
            link_ban(k, "sent a chunk that does not match the index");
        } else if (rc == -ETIMEDOUT) {
            n->st.stalls++;
            link_ban(k, "stalled");
        } else if (rc == AFSP_E_NOTFOUND) {
            job_exclude(j, k); /* this peer lacks the layer: not asked again for it */
        }
        free(x);
        return;
    }
    j->nreq--;
    n->requesting--;
    if (rc == 0) {
        n->st.blobs_fetched++;
        if (!j->done)
            job_finish(n, j, 0);
    } else {
        j->out->len = 0; /* the next peer starts over */
    }
    free(x);
}

static void on_hello(void *arg, struct p2p_peer *p, uint16_t port)
{
    struct link *k = arg;
    (void)p;
    k->hello_port = port;
}

static const struct p2p_peer_ops peer_ops = {
    .request = on_request, .data = on_data, .done = on_done, .hello = on_hello, .dht = on_dht};

/* No link is left to ask: look the providers up again (once a job), wait for the lookup or a
 * dial to one, or give up. */
static void job_exhausted(struct node *n, struct job *j)
{
    if (!j->relooked) {
        j->relooked = true;
        providers(n, j->digest, true);
    }
    if (!pc_waiting(n, providers(n, j->digest, false)))
        job_finish(n, j, AFSP_E_NOTFOUND);
}

/* Asks link k for chunk i of job j (the second time, if twin is the first request). Returns 0,
 * or -1 if its window is full or memory ran out. */
static int chunk_request(struct node *n, struct job *j, struct link *k, uint32_t i,
                         struct xreq *twin)
{
    struct p2p_msg m = {.type = P2P_GET_CHUNK, .chunk = i};
    uint64_t coff;
    uint32_t clen;
    memcpy(m.digest, j->digest, DIGEST_LEN);
    store_fetch_chunk(j->f, i, &coff, &clen);
    struct xreq *x = calloc(1, sizeof *x);
    if (!x)
        return -1;
    x->j = j;
    x->chunk = i;
    x->k = k;
    x->last = now_ms(n);
    store_fetch_chunk_begin(j->f, i, &x->w);
    if (p2p_peer_request(k->p, &m, clen, x, now_ms(n)) < 0) {
        free(x);
        return -1;
    }
    j->nreq++;
    requesting_inc(n);
    j->inflight_bytes += clen;
    x->next = j->reqs;
    if (j->reqs)
        j->reqs->prev = x;
    j->reqs = x;
    if (twin) {
        x->twin = twin;
        x->hedge = true;
        twin->twin = x;
        j->nhedged++;
        n->st.hedges++;
    }
    return 0;
}

/* A chunk request that got no byte for HEDGE_MS goes to a second usable link too (up to
 * HEDGE_MAX of a job at once): whichever answer comes first is kept, the other cancelled, and a
 * peer beaten this way is banned (not given new requests for a while). The requests still on a
 * banned peer go to another link at once. A peer that stops answering costs a reader about
 * HEDGE_MS, not the stall timeout. */
static void job_hedge(struct node *n, struct job *j, struct link **use, size_t nuse, uint64_t now)
{
    for (struct xreq *x = j->reqs; x && nuse; x = x->next) {
        bool banned = x->k->ban_until > now;
        if (x->twin || (!banned && (now - x->last < HEDGE_MS || j->nhedged >= HEDGE_MAX)))
            continue;
        for (size_t u = 0; u < nuse; u++) {
            struct link *k = use[(j->turn + u) % nuse];
            if (k != x->k && chunk_request(n, j, k, x->chunk, x) == 0)
                break; /* the new request went in front of x: the walk goes on after x */
        }
    }
}

/* Moves job j on: a blob or an index goes to the next peer not yet asked; chunks go to every
 * usable peer, as many as its window takes, in order, and only to the layer's providers when
 * the DHT named some that are connected. Meanwhile the providers are looked up, and dialed,
 * so that a peer this node was not connected to joins the job. Finished jobs are released by
 * jobs_dispatch once nothing of theirs is in flight. */
static void job_step(struct node *n, struct job *j)
{
    uint64_t now = now_ms(n);
    if (j->done)
        return;
    struct pcache *pc = providers(n, j->digest, false);
    if (j->kind != JOB_CHUNKS) {
        if (j->nreq)
            return;
        for (struct link *k = n->links; k; k = k->next) {
            if (!link_usable(k, now) || tried(j, k))
                continue;
            struct xreq *x = calloc(1, sizeof *x);
            if (!x || job_exclude(j, k) < 0) {
                free(x);
                break;
            }
            struct p2p_msg m = {.type = j->kind == JOB_BLOB ? P2P_GET_BLOB : P2P_GET_INDEX,
                                .len = (uint32_t)(j->max < UINT32_MAX ? j->max : UINT32_MAX)};
            memcpy(m.digest, j->digest, DIGEST_LEN);
            j->out->len = 0;
            x->j = j;
            if (p2p_peer_request(k->p, &m, j->max, x, now) < 0) {
                free(x);
                continue;
            }
            j->nreq++;
            requesting_inc(n);
            link_flush(k);
            return;
        }
        job_exhausted(n, j);
        return;
    }
    while (j->first <= j->last && store_fetch_has(j->f, j->first))
        j->first++; /* done from the front: later steps start after it */
    if (j->first > j->last) {
        if (j->nreq == 0)
            job_finish(n, j, 0);
        return;
    }
    /* The chunks go round the usable links, one each in turn, while windows have room: the
     * layer comes from every peer at once. */
    struct link *use[JOB_LINKS_MAX];
    size_t nuse = 0, full = 0;
    for (int only_providers = 1; only_providers >= 0 && !nuse; only_providers--)
        for (struct link *k = n->links; k && nuse < JOB_LINKS_MAX; k = k->next)
            if (link_usable(k, now) && !tried(j, k) &&
                (!only_providers || pc_has(pc, p2p_conn_peer_id(p2p_peer_conn(k->p)))))
                use[nuse++] = k;
    for (uint32_t i = j->first;
         nuse && full < nuse && i <= j->last && j->inflight_bytes < JOB_INFLIGHT_MAX; i++) {
        if (store_fetch_has(j->f, i) || (j->inflight[i / 8] >> (i % 8) & 1))
            continue;
        for (full = 0; full < nuse; full++) {
            if (chunk_request(n, j, use[j->turn++ % nuse], i, NULL) == 0) {
                j->inflight[i / 8] |= (uint8_t)(1u << (i % 8));
                break;
            }
        }
    }
    job_hedge(n, j, use, nuse, now);
    for (size_t u = 0; u < nuse; u++)
        link_flush(use[u]);
    if (!nuse && j->nreq == 0)
        job_exhausted(n, j);
}

static void on_jobs_timer(uv_timer_t *t)
{
    jobs_dispatch(t->data);
}

static void jobs_dispatch(struct node *n)
{
    if (n->dispatching)
        return; /* called back from inside a step: the outer loop goes on */
    n->dispatching = true;
    pthread_mutex_lock(&n->mu);
    struct job *list = n->jobs;
    pthread_mutex_unlock(&n->mu);
    for (struct job *j = list; j; j = j->next)
        job_step(n, j);
    if (list && !n->stopping && !uv_is_active((uv_handle_t *)&n->jobs_timer))
        uv_timer_start(&n->jobs_timer, on_jobs_timer, JOBS_TICK_MS, JOBS_TICK_MS);
    else if (!list)
        uv_timer_stop(&n->jobs_timer);
    /* Release the threads whose jobs are done and have nothing in flight. */
    pthread_mutex_lock(&n->mu);
    for (struct job **pp = &n->jobs; *pp;) {
        struct job *j = *pp;
        if (j->done && j->nreq == 0) {
            *pp = j->next;
            j->released = true;
            pthread_cond_broadcast(&n->cv);
        } else {
            pp = &j->next;
        }
    }
    pthread_mutex_unlock(&n->mu);
    n->dispatching = false;
}

/* On a pull thread: hands job j to the loop and waits until it is released. */
static int job_run(struct node *n, struct job *j)
{
    pthread_mutex_lock(&n->mu);
    if (n->stopping) {
        pthread_mutex_unlock(&n->mu);
        return -ECANCELED;
    }
    j->next = n->jobs;
    n->jobs = j;
    uv_async_send(&n->wake);
    while (!j->released)
        pthread_cond_wait(&n->cv, &n->mu);
    pthread_mutex_unlock(&n->mu);
    free(j->tried);
    free(j->inflight);
    return j->rc;
}

static int peers_get_blob(void *arg, const uint8_t digest[DIGEST_LEN], uint64_t max,
                          struct buf *out)
{
    struct job j = {.kind = JOB_BLOB, .max = max, .out = out};
    memcpy(j.digest, digest, DIGEST_LEN);
    return job_run(arg, &j);
}

static int peers_get_index(void *arg, const uint8_t digest[DIGEST_LEN], struct buf *out)
{
    struct job j = {.kind = JOB_INDEX, .max = 512u << 20, .out = out};
    memcpy(j.digest, digest, DIGEST_LEN);
    return job_run(arg, &j);
}

/* Chunks [first, last] of f from peers (those it lacks). */
static int chunks_from_peers(struct node *n, struct store_fetch *f, uint32_t first, uint32_t last)
{
    static size_t turns;
    struct job j = {.kind = JOB_CHUNKS, .f = f, .first = first, .last = last};
    j.turn = __atomic_fetch_add(&turns, 1, __ATOMIC_RELAXED); /* jobs start at different peers */
    memcpy(j.digest, store_fetch_digest(f), DIGEST_LEN);
    j.inflight = calloc((store_fetch_nchunks(f) + 7) / 8, 1);
    if (!j.inflight)
        return -ENOMEM;
    return job_run(n, &j);
}

static int peers_get_chunks(void *arg, struct store_fetch *f)
{
    return chunks_from_peers(arg, f, 0, store_fetch_nchunks(f) - 1);
}

/* ---- the control socket ------------------------------------------------------------------- */

struct ctl_client {
    uv_pipe_t pipe;
    struct node *n;
    struct buf in;
    struct pull_task *task;
    struct dht_lookup *lookup; /* a "providers" request's */
    bool answered;
};

static void on_ctl_closed(uv_handle_t *h)
{
    struct ctl_client *c = h->data;
    if (c->lookup) /* closed with the loop (the node stops): the lookup must not answer it */
        dht_lookup_cancel(c->lookup);
    buf_release(&c->in);
    free(c);
}

static void ctl_close(struct ctl_client *c)
{
    if (c->task)
        c->task->c = NULL; /* its pull goes on; no one hears the end */
    if (c->lookup) {
        dht_lookup_cancel(c->lookup);
        c->lookup = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&c->pipe))
        uv_close((uv_handle_t *)&c->pipe, on_ctl_closed);
}

static void on_ctl_written(uv_write_t *w, int status)
{
    struct ctl_client *c = w->data;
    (void)status;
    free(w);
    ctl_close(c);
}

/* Sends the answer (consumed) and closes the connection after it. */
static void ctl_answer(struct ctl_client *c, json_t *ans)
{
    char *text = json_dumps(ans, JSON_COMPACT);
    json_decref(ans);
    size_t n = text ? strlen(text) : 0;
    uv_write_t *w = text ? malloc(sizeof *w + n + 1) : NULL;
    c->answered = true;
    if (!w) {
        free(text);
        ctl_close(c);
        return;
    }
    memcpy(w + 1, text, n);
    ((char *)(w + 1))[n] = '\n';
    free(text);
    w->data = c;
    uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)n + 1);
    if (uv_write(w, (uv_stream_t *)&c->pipe, &b, 1, on_ctl_written) < 0) {
        free(w);
        ctl_close(c);
    }
}

static json_t *error_answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *error_answer(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return json_pack("{s:s}", "error", msg);
}

static json_t *peers_json(struct node *n)
{
    json_t *a = json_array();
    char id[2 * P2P_ID_LEN + 1], since[32];
    for (struct link *k = n->links; k; k = k->next) {
        if (!k->up || k->closing)
            continue;
        hex_fmt(p2p_conn_peer_id(p2p_peer_conn(k->p)), P2P_ID_LEN, id);
        json_array_append_new(
            a,
            json_pack("{s:s, s:s, s:i, s:b, s:I, s:I, s:I, s:s, s:b, s:i, s:i}", "id", id,
                      "address", k->addr, "listen_port", (int)k->hello_port, "initiator",
                      k->initiator, "rtt_ms", (json_int_t)k->rtt_ms, "bytes_in",
                      (json_int_t)k->bytes_in, "bytes_out", (json_int_t)k->bytes_out, "since",
                      time_fmt(k->since, since), "banned", k->ban_until > now_ms(n), "requests_out",
                      (int)p2p_peer_inflight(k->p), "requests_in", (int)p2p_peer_serving(k->p)));
    }
    return a;
}

static json_t *stats_json(struct node *n)
{
    struct store_usage u = {0};
    char id[2 * P2P_ID_LEN + 1], since[32];
    size_t npeers = 0;
    for (struct link *k = n->links; k; k = k->next)
        npeers += k->up && !k->closing;
    store_usage_get(n->s, &u);
    json_t *store = json_pack("{s:I, s:I, s:I, s:I, s:I}", "used", (json_int_t)u.used, "reserved",
                              (json_int_t)u.reserved, "limit", (json_int_t)u.limit, "layers",
                              (json_int_t)u.nlayers, "images", (json_int_t)u.nimages);
    json_t *c = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:I, s:I}",
        "chunks_served", (json_int_t)n->st.chunks_served, "bytes_served",
        (json_int_t)n->st.bytes_served, "chunks_fetched", (json_int_t)n->st.chunks_fetched,
        "bytes_fetched", (json_int_t)n->st.bytes_fetched, "blobs_fetched",
        (json_int_t)n->st.blobs_fetched, "bad_chunks", (json_int_t)n->st.bad_chunks, "stalls",
        (json_int_t)n->st.stalls, "peer_errors", (json_int_t)n->st.peer_errors,
        "handshake_failures", (json_int_t)n->st.handshake_failures, "rate_limited",
        (json_int_t)n->st.rate_limited, "pulls", (json_int_t)n->st.pulls, "pulls_failed",
        (json_int_t)n->st.pulls_failed, "fetches", (json_int_t)n->st.fetches, "fetches_failed",
        (json_int_t)n->st.fetches_failed, "registry_fetches", (json_int_t)n->st.registry_fetches,
        "serving_peak", (json_int_t)n->st.serving_peak, "requests_peak",
        (json_int_t)n->st.requests_peak, "links_idle_closed", (json_int_t)n->st.links_idle_closed,
        "links_refused", (json_int_t)n->st.links_refused, "hedges", (json_int_t)n->st.hedges,
        "hedges_won", (json_int_t)n->st.hedges_won);
    struct dht_stats ds;
    dht_stats_get(n->dht, &ds);
    json_t *dht = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "contacts", (json_int_t)ds.contacts, "buckets", (json_int_t)ds.buckets, "replacements",
        (json_int_t)ds.replacements, "keys", (json_int_t)ds.keys, "records", (json_int_t)ds.records,
        "providing", (json_int_t)ds.providing, "lookups", (json_int_t)ds.lookups, "lookups_failed",
        (json_int_t)ds.lookups_failed, "lookup_ms_p50", (json_int_t)ds.lookup_ms_p50,
        "lookup_ms_p99", (json_int_t)ds.lookup_ms_p99, "hops_p50", (json_int_t)ds.hops_p50,
        "messages_in", (json_int_t)ds.msgs_in, "messages_out", (json_int_t)ds.msgs_out, "timeouts",
        (json_int_t)ds.timeouts, "refused", (json_int_t)ds.refused, "provider_lookups",
        (json_int_t)n->st.provider_lookups, "dials", (json_int_t)n->st.dht_dials);
    return json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:o}", "id", hex_fmt(n->id.id, P2P_ID_LEN, id),
                     "listen", n->listening ? n->listen_text : "", "started",
                     time_fmt(n->started, since), "peers", (json_int_t)npeers, "store", store,
                     "counters", c, "dht", dht);
}

/* Chunks [first, last] of a layer the store has in part, for a mount: from peers, else from
 * the registry of the image (when the request named it); stored before the answer. */
static int fetch_run(struct pull_task *t, const struct pull_opts *po)
{
    struct store_fetch *f;
    int rc = store_fetch_open(t->n->s, t->layer, &f);
    if (rc < 0)
        return rc;
    if (t->first > t->last || t->last >= store_fetch_nchunks(f))
        rc = err_set(AFSP_E_USAGE, "the layer has no chunk %u", t->last);
    if (rc == 0)
        rc = chunks_from_peers(t->n, f, t->first, t->last);
    if (rc < 0 && rc != -ECANCELED && t->ref) {
        rc = store_fetch_registry(f, t->ref, po, t->first, t->last);
        t->via_registry = rc == 0;
    }
    int frc = store_fetch_flush(f, 0);
    t->completed = frc == 0 && store_fetch_missing(f) == 0;
    store_fetch_free(f);
    return rc < 0 ? rc : frc;
}

static void *pull_main(void *arg)
{
    struct pull_task *t = arg;
    struct pull_opts po = {.platform = t->pa.platform,
                           .insecure_hosts = t->pa.insecure,
                           .peers = &t->n->peers,
                           .lazy = t->lazy};
    t->rc = t->fetch ? fetch_run(t, &po) : store_pull(t->n->s, t->ref, &po, t->digest);
    if (t->rc < 0)
        snprintf(t->msg, sizeof t->msg, "%s", err_msg(t->rc));
    pthread_mutex_lock(&t->n->mu);
    t->next = t->n->finished;
    t->n->finished = t;
    pthread_mutex_unlock(&t->n->mu);
    uv_async_send(&t->n->wake);
    return NULL;
}

static void pull_task_free(struct pull_task *t)
{
    for (size_t i = 0; i < t->pa.ninsecure; i++)
        free((char *)t->pa.insecure[i]);
    free((char *)t->pa.platform);
    free(t->ref);
    free(t);
}

/* {"cmd":"pull", "ref":R, ["platform":P], ["insecure":[H...]], ["lazy":true]} and
 * {"cmd":"fetch", "layer":D, "first":I, "last":J, ["ref":R], ["insecure":[H...]]}: each runs on
 * a thread of its own and is answered when done. */
static void ctl_task(struct ctl_client *c, json_t *req, bool fetch)
{
    struct node *n = c->n;
    const char *ref = json_string_value(json_object_get(req, "ref"));
    const char *platform = json_string_value(json_object_get(req, "platform"));
    const char *layer = json_string_value(json_object_get(req, "layer"));
    json_t *ins = json_object_get(req, "insecure");
    json_t *first = json_object_get(req, "first"), *last = json_object_get(req, "last");
    size_t running = 0;
    for (struct pull_task *r = n->running; r; r = r->next)
        running++;
    if (running >= TASKS_MAX) {
        ctl_answer(
            c, json_pack("{s:s, s:b}", "error", "busy: too many requests are running", "busy", 1));
        return;
    }
    struct pull_task *t = calloc(1, sizeof *t);
    if (!t || (!fetch && !ref) ||
        (ins && (!json_is_array(ins) || json_array_size(ins) > PULL_MAX_INSECURE)) ||
        (fetch && (!layer || digest_parse(layer, t->layer) < 0 || !json_is_integer(first) ||
                   !json_is_integer(last) || json_integer_value(first) < 0 ||
                   json_integer_value(last) < json_integer_value(first) ||
                   json_integer_value(last) > UINT32_MAX))) {
        free(t);
        ctl_answer(c, error_answer("bad %s request", fetch ? "fetch" : "pull"));
        return;
    }
    t->n = n;
    t->c = c;
    t->fetch = fetch;
    t->lazy = json_is_true(json_object_get(req, "lazy"));
    t->first = (uint32_t)json_integer_value(first);
    t->last = (uint32_t)json_integer_value(last);
    t->ref = ref ? strdup(ref) : NULL;
    t->pa.platform = platform ? strdup(platform) : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(ins, i, v)
    {
        const char *h = json_string_value(v);
        char *copy = h ? strdup(h) : NULL;
        if (copy)
            t->pa.insecure[t->pa.ninsecure++] = copy;
    }
    if (fetch)
        n->st.fetches++;
    else
        n->st.pulls++;
    c->task = t;
    if ((ref && !t->ref) || (platform && !t->pa.platform) ||
        pthread_create(&t->th, NULL, pull_main, t) != 0) {
        c->task = NULL;
        pull_task_free(t);
        ctl_answer(c, error_answer("cannot start the pull"));
        return;
    }
    t->next = n->running;
    n->running = t;
}

static void on_ctl_providers(void *arg, int rc, const struct dht_result *r)
{
    struct ctl_client *c = arg;
    c->lookup = NULL;
    if (rc < 0) {
        ctl_answer(c, error_answer("the lookup failed: %s", err_str(rc)));
        return;
    }
    json_t *a = json_array();
    char id[2 * P2P_ID_LEN + 1], addr[64];
    for (size_t i = 0; i < r->nproviders; i++)
        json_array_append_new(a, json_pack("{s:s, s:s}", "id",
                                           hex_fmt(r->providers[i].id, P2P_ID_LEN, id), "address",
                                           dht_addr_fmt(&r->providers[i].addr, addr, sizeof addr)));
    json_t *lk =
        json_pack("{s:I, s:I, s:I, s:I}", "ms", (json_int_t)r->ms, "hops", (json_int_t)r->hops,
                  "messages", (json_int_t)r->messages, "closest", (json_int_t)r->nclosest);
    ctl_answer(c, json_pack("{s:b, s:o, s:o}", "ok", 1, "providers", a, "lookup", lk));
}

/* {"cmd": "providers", "digest": D}: a full provider lookup, answered when it ends. */
static void ctl_providers(struct ctl_client *c, json_t *req)
{
    struct node *n = c->n;
    uint8_t d[DIGEST_LEN];
    const char *text = json_string_value(json_object_get(req, "digest"));
    if (!text || digest_parse(text, d) < 0) {
        ctl_answer(c, error_answer("bad digest"));
        return;
    }
    n->st.provider_lookups++;
    int rc = dht_find_providers(n->dht, d, 0, on_ctl_providers, c, now_ms(n), &c->lookup);
    if (rc < 0) {
        c->lookup = NULL;
        ctl_answer(c, error_answer("cannot look up: %s", rc == -EHOSTUNREACH
                                                             ? "no node of the cluster is known yet"
                                                             : err_str(rc)));
        return;
    }
    dht_mark(n);
}

static void on_ctl_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct ctl_client *c = s->data;
    if (nread < 0) {
        free(b->base);
        if (!c->task)
            ctl_close(c);
        else
            uv_read_stop(s);
        return;
    }
    if (nread > 0 && buf_append(&c->in, b->base, (size_t)nread) < 0)
        nread = -1;
    free(b->base);
    if (nread < 0 || c->in.len > (64u << 10)) {
        ctl_close(c);
        return;
    }
    if (!memchr(c->in.p, '\n', c->in.len) || c->answered || c->task)
        return;
    uv_read_stop(s);
    json_t *req = json_loadb((const char *)c->in.p, c->in.len, JSON_DISABLE_EOF_CHECK, NULL);
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    if (!cmd)
        ctl_answer(c, error_answer("bad request"));
    else if (!strcmp(cmd, "peers"))
        ctl_answer(c, json_pack("{s:b, s:o}", "ok", 1, "peers", peers_json(c->n)));
    else if (!strcmp(cmd, "reconcile")) { /* the store changed under the node: afsp prune */
        node_reconcile(c->n);
        ctl_answer(c, json_pack("{s:b}", "ok", 1));
    } else if (!strcmp(cmd, "stats"))
        ctl_answer(c, json_pack("{s:b, s:o}", "ok", 1, "stats", stats_json(c->n)));
    else if (!strcmp(cmd, "providers"))
        ctl_providers(c, req);
    else if (!strcmp(cmd, "pull"))
        ctl_task(c, req, false);
    else if (!strcmp(cmd, "fetch"))
        ctl_task(c, req, true);
    else
        ctl_answer(c, error_answer("unknown command %s", cmd));
    json_decref(req);
}

static void on_ctl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    b->base = malloc(4096);
    b->len = b->base ? 4096 : 0;
}

static void on_ctl_connection(uv_stream_t *server, int status)
{
    struct node *n = server->data;
    if (status < 0)
        return;
    struct ctl_client *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->n = n;
    uv_pipe_init(&n->loop, &c->pipe, 0);
    c->pipe.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
        uv_read_start((uv_stream_t *)&c->pipe, on_ctl_alloc, on_ctl_read) < 0)
        ctl_close(c);
}

/* ---- the loop's wake-ups: jobs from pull threads, finished pulls ----------------------------- */

/* The wake-up handle outlives the loop's other handles until the last pull thread is done
 * with it. */
static void wake_close_if_idle(struct node *n)
{
    if (n->stopping && !n->running && !uv_is_closing((uv_handle_t *)&n->wake))
        uv_close((uv_handle_t *)&n->wake, NULL);
}

static void on_wake(uv_async_t *a)
{
    struct node *n = a->data;
    jobs_dispatch(n);
    pthread_mutex_lock(&n->mu);
    struct pull_task *done = n->finished;
    n->finished = NULL;
    pthread_mutex_unlock(&n->mu);
    bool reconcile = __atomic_load_n(&n->reconcile_due, __ATOMIC_SEQ_CST);
    while (done) {
        struct pull_task *t = done;
        done = t->next;
        pthread_join(t->th, NULL);
        for (struct pull_task **pp = &n->running; *pp; pp = &(*pp)->next)
            if (*pp == t) {
                *pp = t->next;
                break;
            }
        char dg[DIGEST_STR_LEN + 1];
        if (t->fetch) {
            n->st.fetches_failed += t->rc < 0;
            n->st.registry_fetches += t->via_registry;
            if (t->rc < 0)
                log_warn("event=fetch layer=%s chunks=%u-%u result=\"%s\"",
                         digest_fmt(t->layer, dg), t->first, t->last, t->msg);
            else
                log_debug("event=fetch layer=%s chunks=%u-%u from=%s", digest_fmt(t->layer, dg),
                          t->first, t->last, t->via_registry ? "registry" : "peers");
        } else {
            if (t->rc < 0)
                n->st.pulls_failed++;
            log_info("event=pull ref=%s lazy=%d result=\"%s\"", t->ref, t->lazy,
                     t->rc < 0 ? t->msg : "ok");
        }
        if (t->c) {
            t->c->task = NULL;
            ctl_answer(t->c, t->rc < 0 ? error_answer("%s", t->msg)
                                       : json_pack("{s:b, s:s}", "ok", 1, "digest",
                                                   digest_fmt(t->digest, dg)));
        }
        /* A fetch (a mount's read) that completed its layer announces just that layer; a
         * pull may have completed several, and evicted others: all is compared. A completion
         * two fetches share, and neither saw, waits for the timer's comparison. */
        if (t->fetch && t->completed && !n->stopping) {
            dht_provide(n->dht, t->layer, now_ms(n));
            dht_mark(n);
        }
        reconcile |= !t->fetch;
        pull_task_free(t);
    }
    if (reconcile && !n->stopping)
        node_reconcile(n);
    wake_close_if_idle(n);
}

/* ---- start and stop ------------------------------------------------------------------------ */

static void on_any_closed(uv_handle_t *h)
{
    (void)h;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, on_any_closed);
}

static void node_stop(struct node *n, const char *why)
{
    if (n->stopping)
        return;
    log_info("event=stopping reason=%s", why);
    /* Every job ends now (pull threads fall back to the registry, or fail, and finish). */
    pthread_mutex_lock(&n->mu);
    n->stopping = true;
    for (struct job *j = n->jobs; j; j = j->next)
        if (!j->done) {
            j->rc = -ECANCELED;
            j->done = true;
        }
    pthread_mutex_unlock(&n->mu);
    while (n->links)
        link_close(n->links, -ECANCELED);
    jobs_dispatch(n);
    if (n->listening)
        uv_close((uv_handle_t *)&n->listener, NULL);
    uv_close((uv_handle_t *)&n->ctl, NULL);
    unlink(n->ctl_path);
    for (size_t i = 0; i < n->nseeds; i++)
        uv_close((uv_handle_t *)&n->seeds[i].retry, NULL);
    uv_close((uv_handle_t *)&n->sigterm, NULL);
    uv_close((uv_handle_t *)&n->sigint, NULL);
    uv_close((uv_handle_t *)&n->dht_timer, NULL);
    uv_close((uv_handle_t *)&n->reconcile, NULL);
    uv_close((uv_handle_t *)&n->jobs_timer, NULL);
    uv_close((uv_handle_t *)&n->idle_timer, NULL);
    uv_close((uv_handle_t *)&n->dht_idle, NULL);
    wake_close_if_idle(n);
}

static void on_signal(uv_signal_t *s, int signum)
{
    node_stop(s->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int parse_hostport(const char *text, const char *def_host, struct sockaddr_storage *out)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text + strlen(text) - 1)
        return AFSP_E_USAGE;
    size_t hl = (size_t)(colon - text);
    if (hl >= sizeof host)
        return AFSP_E_USAGE;
    memcpy(host, text, hl);
    host[hl] = 0;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return AFSP_E_USAGE;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int e = getaddrinfo(host[0] ? host : def_host, colon + 1, &hints, &res);
    if (e != 0)
        return err_set(AFSP_E_NET, "cannot resolve %s: %s", host, gai_strerror(e));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* The control socket: refuses to start when another node answers on it; a stale one (its node
 * died) is replaced. */
static int ctl_listen(struct node *n)
{
    int fd = ctl_connect();
    if (fd >= 0) {
        close(fd);
        return err_set(-EADDRINUSE, "a node already runs on %s", data_dir());
    }
    unlink(n->ctl_path);
    uv_pipe_init(&n->loop, &n->ctl, 0);
    n->ctl.data = n;
    mode_t old = umask(077);
    int rc = uv_pipe_bind(&n->ctl, n->ctl_path);
    umask(old);
    if (rc == 0 && chmod(n->ctl_path, 0600) < 0)
        rc = -errno;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&n->ctl, 16, on_ctl_connection);
    return rc < 0 ? err_set(rc, "cannot listen on %s: %s", n->ctl_path, uv_strerror(rc)) : 0;
}

static int node_keys(struct node *n, const char *key_file)
{
    char path[4200];
    bool created;
    int rc;
    snprintf(path, sizeof path, "%s/node.key", data_dir());
    if ((rc = p2p_identity_load(&n->id, path, &created)) < 0)
        return err_ctx(rc, "node identity %s", path);
    if (key_file) {
        if ((rc = p2p_cluster_key_load(n->ckey, key_file)) < 0)
            return err_ctx(rc, "cluster key %s", key_file);
        return 0;
    }
    snprintf(path, sizeof path, "%s/cluster.key", data_dir());
    rc = p2p_cluster_key_load(n->ckey, path);
    if (rc == -ENOENT) {
        if ((rc = p2p_cluster_key_create(n->ckey, path)) < 0)
            return err_ctx(rc, "cluster key %s", path);
        fprintf(stderr,
                "afsp: created a new cluster key in %s; give other nodes a copy of it\n"
                "      (--cluster-key-file) so that they can join this one\n",
                path);
        return 0;
    }
    return rc < 0 ? err_ctx(rc, "cluster key %s", path) : 0;
}

/* How many links the node keeps at once: LINKS_MAX, or fewer when the descriptor limit (raised
 * to its hard limit first) leaves less room. */
static size_t links_max(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 256;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (up.rlim_cur > LINKS_MAX + LINKS_FD_SPARE)
            up.rlim_cur = LINKS_MAX + LINKS_FD_SPARE;
        if (up.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = up.rlim_cur;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= LINKS_MAX + LINKS_FD_SPARE)
        return LINKS_MAX;
    return rl.rlim_cur > 2 * LINKS_FD_SPARE ? rl.rlim_cur - LINKS_FD_SPARE : rl.rlim_cur / 2;
}

int cmd_node(int argc, char **argv)
{
    const char *listen = "0.0.0.0:" CTL_DEFAULT_PORT_STR, *key_file = NULL, *v, *arg;
    const char *seeds[NODE_MAX_SEEDS];
    size_t nseeds = 0;
    uint64_t idle_s = LINK_IDLE_S;
    struct cmd_iter it = CMD_ITER(&cmd_node_def, argc, argv);
    int r, rc;
    while ((r = cmd_next(&it, &arg)) > 0) {
        if ((v = cmd_value(&it, "--listen")))
            listen = v;
        else if ((v = cmd_value(&it, "--cluster-key-file")))
            key_file = v;
        else if ((v = cmd_value(&it, "--idle-timeout"))) {
            char *end;
            errno = 0;
            unsigned long long x = strtoull(v, &end, 10);
            if (!*v || *end || errno || x > 86400ull * 365 || v[0] == '-')
                return cmd_usage_error(&cmd_node_def, "bad --idle-timeout %s (seconds)", v);
            idle_s = x;
        } else if ((v = cmd_value(&it, "--seed"))) {
            if (nseeds == NODE_MAX_SEEDS)
                return cmd_usage_error(&cmd_node_def, "at most %d --seed", NODE_MAX_SEEDS);
            seeds[nseeds++] = v;
        } else
            return cmd_usage_error(&cmd_node_def, "unexpected argument %s", arg);
    }
    if (r < 0)
        return it.status;
    if (sodium_init() < 0)
        return die("libsodium cannot start");
    if (log_level < LOG_INFO && g_opts.verbose == 0)
        log_level = LOG_WARN;

    struct node *n = calloc(1, sizeof *n);
    if (!n)
        return die("out of memory");
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    n->started = time_now_ns();
    n->peers = (struct pull_peers){n, peers_get_blob, peers_get_index, peers_get_chunks};
    n->idle_ms = idle_s * 1000;
    n->links_max = links_max();
    int status = 1;
    bool loop_ok = false;
    struct sockaddr_storage la;
    if (!(n->rbuf = malloc(LINK_RBUF))) {
        die("out of memory");
        goto out;
    }
    if (open_store(&n->s, false))
        goto out;
    if ((rc = node_keys(n, key_file)) < 0) {
        die("%s", err_msg(rc));
        goto out;
    }
    snprintf(n->ctl_path, sizeof n->ctl_path, "%s/%s", data_dir(), CTL_SOCK);
    if (strlen(n->ctl_path) >= 108) {
        die("the data directory's path is too long for a socket: %s", n->ctl_path);
        goto out;
    }
    if ((rc = parse_hostport(listen, "0.0.0.0", &la)) < 0) {
        status = cmd_usage_error(&cmd_node_def, "bad --listen %s: %s", listen, err_msg(rc));
        goto out;
    }
    for (size_t i = 0; i < nseeds; i++) {
        struct seed *sd = &n->seeds[n->nseeds];
        snprintf(sd->text, sizeof sd->text, "%s", seeds[i]);
        if ((rc = parse_hostport(seeds[i], "127.0.0.1", &sd->addr)) < 0) {
            status = cmd_usage_error(&cmd_node_def, "bad --seed %s: %s", seeds[i], err_msg(rc));
            goto out;
        }
        n->nseeds++;
    }
    uv_loop_init(&n->loop);
    loop_ok = true;
    n->loop.data = n;
    uv_async_init(&n->loop, &n->wake, on_wake);
    n->wake.data = n;
    struct dht_cfg dcfg = {.id = n->id.id, .rng = rng, .now_ms = now_ms(n)};
    if ((rc = dht_new(&n->dht, &dcfg)) < 0) {
        die("cannot start the DHT: %s", err_msg(rc));
        goto out;
    }
    uv_timer_init(&n->loop, &n->dht_timer);
    uv_timer_init(&n->loop, &n->reconcile);
    uv_timer_init(&n->loop, &n->jobs_timer);
    uv_timer_init(&n->loop, &n->idle_timer);
    uv_idle_init(&n->loop, &n->dht_idle);
    n->dht_timer.data = n->reconcile.data = n->dht_idle.data = n->jobs_timer.data =
        n->idle_timer.data = n;
    if ((rc = ctl_listen(n)) < 0) {
        die("%s", err_msg(rc));
        goto out;
    }
    n->port = ntohs(la.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&la)->sin6_port
                                             : ((struct sockaddr_in *)&la)->sin_port);
    if (n->port) {
        uv_tcp_init(&n->loop, &n->listener);
        n->listener.data = n;
        if ((rc = uv_tcp_bind(&n->listener, (struct sockaddr *)&la, 0)) < 0 ||
            (rc = uv_listen((uv_stream_t *)&n->listener, 128, on_accept)) < 0) {
            die("cannot listen on %s: %s", listen, uv_strerror(rc));
            uv_close((uv_handle_t *)&n->listener, NULL);
            goto out;
        }
        n->listening = true;
        snprintf(n->listen_text, sizeof n->listen_text, "%s", listen);
    }
    uv_signal_init(&n->loop, &n->sigterm);
    uv_signal_init(&n->loop, &n->sigint);
    n->sigterm.data = n->sigint.data = n;
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < n->nseeds; i++) {
        uv_timer_init(&n->loop, &n->seeds[i].retry);
        n->seeds[i].retry.data = &n->seeds[i];
        seed_dial(&n->seeds[i], n);
    }
    /* what the store holds is announced (again, after a restart: the same ID, from node.key) */
    store_set_evict_hook(n->s, on_evict, n);
    node_reconcile(n);
    uv_timer_start(&n->reconcile, on_reconcile_timer, RECONCILE_MS, RECONCILE_MS);
    if (n->idle_ms) { /* links are looked at four times per timeout, at most every 10 s */
        uint64_t every = n->idle_ms / 4 < 250     ? 250
                         : n->idle_ms / 4 > 10000 ? 10000
                                                  : n->idle_ms / 4;
        uv_timer_start(&n->idle_timer, on_idle_timer, every, every);
    }
    char id[2 * P2P_ID_LEN + 1];
    log_warn("event=started id=%s listen=%s seeds=%zu links_max=%zu data=%s",
             hex_fmt(n->id.id, P2P_ID_LEN, id), n->listening ? listen : "-", n->nseeds,
             n->links_max, data_dir());
    uv_run(&n->loop, UV_RUN_DEFAULT);
    status = 0; /* the loop ends once the last pull thread is joined (on_wake) */
    log_warn("event=stopped");
out:
    if (loop_ok) {
        uv_walk(&n->loop, close_walk, NULL);
        uv_run(&n->loop, UV_RUN_DEFAULT);
        uv_loop_close(&n->loop);
    }
    for (size_t i = 0; i < LAYER_CACHE; i++)
        if (n->layers[i].l)
            store_layer_close(n->layers[i].l);
    dht_free(n->dht);
    if (n->s)
        store_close(n->s);
    p2p_identity_wipe(&n->id);
    sodium_memzero(n->ckey, sizeof n->ckey);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n->rbuf);
    free(n);
    return status;
}
