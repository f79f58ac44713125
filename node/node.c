/*
 * node.c - the node core's lifecycle: start (the DHT, the seeds, the first announcement), the
 * effect queue, node_settle (the marked work, done after every event until none is left), the
 * tick, and the stop.
 *
 * Owns: the core's state (struct node) and the order in which work runs. Must not: do I/O,
 * read a clock, or call the caller back: every effect waits in the queue.
 */
#include "node_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int fx_push(struct node *n, const struct node_effect *e)
{
    struct effectq *q = &n->fx;
    if (q->len == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 64;
        struct node_effect *v = malloc(cap * sizeof *v);
        if (!v) {
            log_error("event=effect_lost type=%d reason=\"out of memory\"", (int)e->type);
            return -ENOMEM;
        }
        for (size_t i = 0; i < q->len; i++)
            v[i] = q->v[(q->head + i) % q->cap];
        free(q->v);
        q->v = v;
        q->cap = cap;
        q->head = 0;
    }
    q->v[(q->head + q->len++) % q->cap] = *e;
    return 0;
}

bool node_effect_next(struct node *n, struct node_effect *e)
{
    struct effectq *q = &n->fx;
    if (!q->len)
        return false;
    *e = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return true;
}

void node_settle(struct node *n, uint64_t now)
{
    for (;;) {
        links_closing_run(n, now);
        bool routed = route_run(n, now);
        if (n->jobs_dirty)
            jobs_step(n, now);
        if (!n->closing && !routed && !n->jobs_dirty)
            break;
    }
    jobs_release(n);
    links_touched_run(n, now);
    route_timer_update(n);
    if (n->stopping && !n->stopped && !n->links && !n->jobs && !n->tasks && !n->nexec_live) {
        n->stopped = true;
        serve_close_all(n); /* no answer is left to read them */
        fx_push(n, &(struct node_effect){.type = NODE_FX_STOPPED});
    }
}

void node_tick(struct node *n, uint64_t now)
{
    n->now = now;
    timers_run(n, now);
    node_settle(n, now);
}

int node_new(struct node **out, const struct node_cfg *cfg)
{
    if (!cfg->rng || !cfg->store || !cfg->id || !cfg->cluster_key || cfg->nseeds > NODE_SEEDS_MAX ||
        cfg->serve_chunks > NODE_SERVE_CHUNKS_MAX)
        return AFSP_E_USAGE;
    struct node *n = calloc(1, sizeof *n);
    if (!n)
        return -ENOMEM;
    n->cfg = *cfg;
    n->cfg.seeds = NULL;
    n->cfg.seed_texts = NULL;
    if (cfg->t)
        n->t = *cfg->t;
    else
        node_durations_init(&n->t, 1);
    n->cfg.t = NULL;
    n->id = cfg->id;
    memcpy(n->ckey, cfg->cluster_key, P2P_KEY_LEN);
    n->so = cfg->store;
    n->sa = cfg->store_arg;
    n->now = n->started = cfg->now;
    n->started_wall_ms = cfg->wall_ms;
    n->links_max = cfg->links_max ? cfg->links_max : NODE_LINKS_MAX;
    n->serve_chunks = cfg->serve_chunks ? cfg->serve_chunks : NODE_SERVE_CHUNKS;
    claims_init(n);
    if (exec_init(n) < 0) {
        free(n);
        return AFSP_E_USAGE;
    }
    if (verify_init(n) < 0) {
        verify_free(n);
        free(n);
        return -ENOMEM;
    }
    struct dht_cfg dcfg = {.id = cfg->id->id,
                           .rng = cfg->rng,
                           .rng_arg = cfg->rng_arg,
                           .now_ms = cfg->now,
                           .k = cfg->k,
                           .alpha = cfg->alpha,
                           .ttl_ms = n->t.dht_ttl,
                           .republish_ms = n->t.dht_republish,
                           .refresh_ms = n->t.dht_refresh,
                           .stale_ms = n->t.dht_stale,
                           .rpc_timeout_ms = n->t.dht_rpc_timeout,
                           .slow_ms = n->t.dht_slow,
                           .claim_lease_ms = n->t.claim_lease,
                           .claim_done_ms = n->t.claim_done};
    int rc = dht_new(&n->dht, &dcfg);
    if (rc < 0) {
        verify_free(n);
        free(n);
        return rc;
    }
    for (size_t i = 0; i < cfg->nseeds; i++) {
        struct seed *s = &n->seeds[n->nseeds++];
        s->addr = cfg->seeds[i];
        if (cfg->seed_texts && cfg->seed_texts[i])
            snprintf(s->text, sizeof s->text, "%s", cfg->seed_texts[i]);
        else
            dht_addr_fmt(&s->addr, s->text, sizeof s->text);
    }
    for (size_t i = 0; i < n->nseeds; i++)
        seed_dial(n, &n->seeds[i], cfg->now);
    /* what the store holds is announced (again, after a restart: the same ID) */
    announce_reconcile(n, cfg->now);
    node_settle(n, cfg->now);
    *out = n;
    return 0;
}

void node_stop(struct node *n, uint64_t now)
{
    n->now = now;
    if (n->stopping)
        return;
    n->stopping = true;
    log_info("event=stopping");
    jobs_cancel_all(n);
    claims_cancel_all(n);
    exec_stop(n); /* queued jobs are cancelled, running ones killed */
    for (struct node_link *k = n->links; k; k = k->next)
        link_close(k, -ECANCELED);
    for (size_t i = 0; i < n->nseeds; i++)
        timer_stop(n, &n->seeds[i].timer);
    timer_stop(n, &n->reconcile_timer);
    ctl_cancel_all(n, true); /* each waiting request hears why */
    node_settle(n, now);
}

void node_free(struct node *n)
{
    if (!n)
        return;
    ctl_cancel_all(n, false);
    dht_free(n->dht); /* lookups end (-ECANCELED): the provider cache hears it */
    n->dht = NULL;
    while (n->links) { /* their requests end: the jobs hear it */
        struct node_link *k = n->links;
        n->links = k->next;
        k->state = LINK_CLOSED;
        p2p_peer_free(k->p, -ECANCELED);
        route_dq_drop(k);
        free(k);
    }
    jobs_free_all(n);
    serve_close_all(n);
    while (n->tasks) {
        struct node_task *t = n->tasks;
        n->tasks = t->next;
        node_task_free(t);
    }
    verify_free(n);
    struct node_effect e;
    while (node_effect_next(n, &e))
        if (e.type == NODE_FX_ANSWER)
            free(e.text);
        else if (e.type == NODE_FX_EXEC_FREE)
            node_exec_free(e.exec);
    exec_free_all(n);
    free(n->heap);
    free(n->fx.v);
    free(n);
}

/* ---- inspection ------------------------------------------------------------------------------ */

const struct node_counters *node_counters_get(const struct node *n)
{
    return &n->st;
}

struct dht *node_dht(struct node *n)
{
    return n->dht;
}

const uint8_t *node_id(const struct node *n)
{
    return n->id->id;
}

size_t node_links_up(const struct node *n)
{
    size_t up = 0;
    for (const struct node_link *k = n->links; k; k = k->next)
        up += k->state == LINK_UP;
    return up;
}

bool node_linked(const struct node *n, const uint8_t id[static P2P_ID_LEN])
{
    for (const struct node_link *k = n->links; k; k = k->next)
        if (k->state == LINK_UP && !memcmp(k->peer_id, id, P2P_ID_LEN))
            return true;
    return false;
}
