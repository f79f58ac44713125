/*
 * fetch_int.h - what fetch.c (jobs, their requests' ends) and chunks.c (a CHUNKS job's
 * scheduler: which chunk of which peer, HAVE, hedges) share. Not for the rest of the node.
 */
#ifndef AFSP_NODE_FETCH_INT_H
#define AFSP_NODE_FETCH_INT_H

#include "node_int.h"

/* A request of a job on one link. */
struct xreq {
    struct node_job_state *js;
    uint32_t chunk;
    bool have;                /* CHUNKS: a HAVE request, not a chunk's */
    void *rx;                 /* CHUNKS: the store's receipt */
    struct node_link *k;      /* CHUNKS */
    uint64_t last;            /* when it was sent or its last byte came */
    struct xreq *twin;        /* the same chunk asked of another peer (hedged), or NULL */
    bool hedge;               /* this is the second request of the pair */
    struct xreq *prev, *next; /* the job's chunk requests */
};

/* What a CHUNKS job knows of one peer (a link) that may hold its layer. */
struct jpeer {
    uint64_t serial;      /* the link's */
    uint8_t *bm;          /* the chunks it holds, as its HAVE answer and GOTs said; NULL: unknown */
    bool all;             /* a complete provider: every chunk, until it says not-found */
    bool asking;          /* the job's HAVE request is on it */
    uint32_t inflight;    /* the job's chunk requests on it */
    uint64_t busy_since;  /* its first busy answer since the job last got a chunk (0: none) */
    uint64_t quiet_until; /* after a busy answer: no request before */
    uint8_t have_tries;   /* HAVE answered not-found by a peer fetching the layer too */
};

struct node_job_state {
    struct node_job *j;
    struct node *n;
    struct node_job_state *next;
    int rc;
    bool done, relooked;
    uint64_t *tried; /* serials of the links asked (blob, index) or left out (chunks) */
    size_t ntried;
    uint8_t *inflight; /* CHUNKS: chunk bitmap */
    uint32_t nchunks;  /* CHUNKS: the layer's */
    uint32_t first;    /* CHUNKS: every chunk before it is here */
    uint32_t nreq;     /* requests of this job on the links */
    uint32_t salt;     /* CHUNKS: orders chunks of equal rarity, differently in each job */
    uint64_t inflight_bytes;
    uint64_t turn;       /* the link that gets the next request */
    struct xreq *reqs;   /* CHUNKS */
    struct jpeer *peers; /* CHUNKS: NODE_JOB_LINKS_MAX slots */
    size_t npeers;
    unsigned nhedged;        /* pairs of requests for one chunk */
    struct node_timer timer; /* the next hedge or busy peer's turn */
};

struct jpeer *fetch_jpeer_find(struct node_job_state *js, uint64_t serial);
/* Whether jp's peer holds chunk i (as far as the job knows; false for NULL). */
bool fetch_jp_has(const struct jpeer *jp, uint32_t i);
/* Whether link k was asked (blob, index) or left out (chunks) by the job. */
bool fetch_tried(const struct node_job_state *js, const struct node_link *k);
/* The job ends with rc (the first end counts). */
void fetch_job_finish(struct node_job_state *js, int rc);
/* No link is left to ask: look the providers up again (once a job), wait for the lookup or a
 * dial to one, or give up. */
void fetch_job_exhausted(struct node *n, struct node_job_state *js, uint64_t now);
/* Sends m, a request of job js, on link k (x: its state, the caller's until this succeeds).
 * Returns 0, or -1 (the window is full, the connection failed). */
int fetch_job_request(struct node *n, struct node_job_state *js, struct node_link *k,
                      const struct p2p_msg *m, uint64_t max_total, struct xreq *x, uint64_t now);

/* ---- chunks.c ---------------------------------------------------------------------------- */

/* A CHUNKS job's next requests (chunks.c's header says how they are chosen). */
void fetch_chunks_step(struct node *n, struct node_job_state *js, uint64_t now);

#endif
