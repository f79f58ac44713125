/*
 * nodes_int.h - between sim/nodes.c (the network: nodes, links, events) and sim/tasks.c (tasks
 * run as the daemon's threads run them). Nothing outside sim/ includes this.
 */
#ifndef AFSP_SIM_NODES_INT_H
#define AFSP_SIM_NODES_INT_H

#include "sim.h"

#define SIMN_MANIFEST_MAX (1u << 20)

enum ev_kind { EV_CONNECT, EV_CONNECTED, EV_DATA, EV_CLOSED, EV_TIMER, EV_WRITABLE, EV_TASK };

struct pipe;
struct stask;

struct event {
    uint64_t t;
    enum ev_kind kind;
    unsigned node;    /* who it happens to */
    uint64_t life;    /* that node's incarnation when it was scheduled */
    struct pipe *p;   /* CONNECT, CONNECTED, DATA, CLOSED */
    int side;         /* DATA, CLOSED: the receiving side (0: the dialer) */
    struct buf bytes; /* DATA */
    uint64_t gen;     /* TIMER */
    struct stask *task;
};

struct pipe {
    unsigned end[2];        /* node indices: [0] dialed [1] */
    struct node_link *k[2]; /* each end's link (NULL: not made yet, or gone) */
    bool open[2];           /* each end's link is the core's */
    bool frozen;            /* bytes wait in held[] */
    struct buf held[2];     /* bytes for side i, held while frozen */
    uint16_t port;          /* the dialer's source port */
    struct pipe *next;
};

struct snode {
    struct node *n;
    struct memstore *ms;
    struct p2p_identity id;
    uint64_t rng;
    struct dht_addr addr;
    struct dht_addr seeds[NODE_SEEDS_MAX];
    size_t nseeds;
    bool up, paused, stopped;
    uint64_t life, timer_gen, timer_at;
    uint64_t dials;
    struct event **held; /* what came while it was paused, in order */
    size_t nheld, capheld;
    /* its uplink (simn_cfg.up_rate): when what it sent so far has left (microseconds), and the
     * links waiting for room, served in turn */
    uint64_t up_free_us;
    struct upq {
        struct pipe *p;
        int side;
    } * upq;
    size_t nupq, capupq;
    bool up_armed;     /* an EV_WRITABLE is queued */
    uint64_t up_bytes; /* bytes it sent */
};

/* A task run as the daemon's thread would: step by step, a job at a time. */
struct stask {
    unsigned node;
    uint64_t life;
    struct node_task *t;
    int state;
    size_t layer;
    struct node_job job;
    struct buf out;
    void *fetch;
    uint8_t (*layers)[DIGEST_LEN];
    size_t nlayers;
    unsigned claims;  /* claim jobs of the layer (a claim that sends it to peers again: more) */
    bool claimed;     /* it holds the layer's claim */
    bool downloading; /* a whole layer from the registry, from dl_base, since dl_start */
    uint64_t dl_start, dl_size, dl_base;
    /* reading another node's download (the relay): src's, pos bytes so far */
    bool streaming;
    struct dht_contact src;
    uint64_t pos;
    unsigned busy, asks;
    bool checking; /* its claim asked every SIMN_RELAY_CHECK bytes */
    bool src_sent; /* src has sent bytes (before that, not-found is as busy: not begun yet) */
    struct stask *next;
};

struct ticket {
    char *answer;
};

struct simn {
    struct simn_cfg cfg;
    struct node_durations t;
    uint8_t ckey[P2P_KEY_LEN];
    uint64_t rng, now;
    struct snode *
        *nodes; /* each its own allocation: a node core keeps pointers to its id and rng */
    unsigned n;
    size_t cap;
    struct sim_queue q;
    struct pipe *pipes;
    uint16_t ports;
    struct stask *tasks;
    struct ticket **tickets;
    size_t ntickets, captickets;
    struct memstore *registry; /* what the registry serves */
    uint64_t registry_fetches;
    unsigned jobs_direct; /* simn_job's jobs not handed back yet */
    uint64_t registry_bytes;
};

/* tasks.c: the next step of a task (after it starts, after each job it submitted comes back,
 * and when its registry download ends). */
void task_step(struct simn *s, struct stask *st);
/* nodes.c: task_step(st) after delay ms. */
void task_schedule_in(struct simn *s, struct stask *st, uint64_t delay);

#endif
