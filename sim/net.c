/*
 * net.c - the in-memory network and its event queue (sim.h). Events are ordered by (time,
 * sequence), so a run is a function of the seed alone.
 *
 * Owns: the nodes' cores, the events, the messages in flight. Must not: read a clock or a
 * random source of its own.
 */
#include "sim.h"

#include "../util/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum ev_kind { EV_MSG, EV_TIMER, EV_REFUSED };

struct event {
    uint64_t t;
    uint8_t kind;
    unsigned dst, src;
    uint8_t dst_id[DHT_ID_LEN];
    struct dht_addr src_addr;
    uint64_t timer_gen;
    size_t len;
    uint8_t *msg;
};

struct node {
    struct dht *d;
    struct dht_contact c;
    uint64_t rng, timer_at, timer_gen;
    bool up;
};

struct sim {
    struct sim_cfg cfg;
    uint64_t rng, now, delivered, dropped;
    struct node *nodes;
    unsigned n;
    size_t cap;
    struct sim_queue q;
    struct dht_out out;
};

uint64_t sim_rand(struct sim *s)
{
    return rng_next64(&s->rng);
}

/* ---- events --------------------------------------------------------------------------------- */

/* Queues a copy of e (its msg is the queue's then). */
static int push(struct sim *s, const struct event *e)
{
    struct event *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    *c = *e;
    if (sim_queue_push(&s->q, c->t, c) < 0) {
        free(c);
        return -ENOMEM;
    }
    return 0;
}

static void event_free(void *ev)
{
    struct event *e = ev;
    free(e->msg);
    free(e);
}

/* ---- nodes ---------------------------------------------------------------------------------- */

static unsigned addr_index(const struct dht_addr *a)
{
    return ((unsigned)a->ip[1] << 16 | (unsigned)a->ip[2] << 8 | a->ip[3]) - 1;
}

static void schedule_timer(struct sim *s, unsigned i)
{
    struct node *nd = &s->nodes[i];
    if (!nd->up)
        return;
    uint64_t t = dht_deadline(nd->d);
    if (t < s->now)
        t = s->now;
    if (t == nd->timer_at)
        return;
    nd->timer_at = t;
    struct event e = {.t = t, .kind = EV_TIMER, .dst = i, .timer_gen = ++nd->timer_gen};
    push(s, &e);
}

void sim_flush(struct sim *s, unsigned i)
{
    struct node *nd = &s->nodes[i];
    if (!nd->up)
        return;
    while (dht_output(nd->d, &s->out)) {
        unsigned lat = s->cfg.lat_min_ms +
                       (unsigned)(sim_rand(s) % (s->cfg.lat_max_ms - s->cfg.lat_min_ms + 1));
        unsigned dst = addr_index(&s->out.to.addr);
        bool ok = s->out.to.addr.family == 4 && dst < s->n && s->nodes[dst].up &&
                  !memcmp(s->nodes[dst].c.id, s->out.to.id, DHT_ID_LEN);
        struct event e = {.t = s->now + lat, .src = i, .dst = dst, .src_addr = nd->c.addr};
        memcpy(e.dst_id, s->out.to.id, DHT_ID_LEN);
        if (!ok) {
            s->dropped++;
            if (!s->cfg.refuse_dead)
                continue;
            e.kind = EV_REFUSED; /* the sender hears of it after a round trip */
            e.dst = i;
            push(s, &e);
            continue;
        }
        e.kind = EV_MSG;
        e.len = s->out.len;
        if (!(e.msg = malloc(e.len)))
            continue;
        memcpy(e.msg, s->out.msg, e.len);
        if (push(s, &e) < 0)
            free(e.msg);
    }
    schedule_timer(s, i);
}

static int node_start(struct sim *s, unsigned i)
{
    struct node *nd = &s->nodes[i];
    struct dht_cfg cfg = s->cfg.dht;
    cfg.id = nd->c.id;
    cfg.rng = rng_fill;
    cfg.rng_arg = &nd->rng;
    cfg.now_ms = s->now;
    int rc = dht_new(&nd->d, &cfg);
    if (rc < 0)
        return rc;
    nd->up = true;
    nd->timer_at = UINT64_MAX;
    schedule_timer(s, i);
    return 0;
}

int sim_node_add(struct sim *s)
{
    if (s->n == s->cap) {
        struct node *v = array_grow(s->nodes, &s->cap, sizeof *v, 256);
        if (!v)
            return -ENOMEM;
        s->nodes = v;
    }
    if (s->n >= (1u << 24) - 2)
        return -ENOSPC;
    unsigned i = s->n;
    struct node *nd = &s->nodes[i];
    memset(nd, 0, sizeof *nd);
    rng_fill(&s->rng, nd->c.id, DHT_ID_LEN);
    nd->rng = sim_rand(s);
    nd->c.addr.family = 4;
    nd->c.addr.ip[0] = 10;
    nd->c.addr.ip[1] = (uint8_t)((i + 1) >> 16);
    nd->c.addr.ip[2] = (uint8_t)((i + 1) >> 8);
    nd->c.addr.ip[3] = (uint8_t)(i + 1);
    nd->c.addr.port = 7070;
    s->n++;
    int rc = node_start(s, i);
    return rc < 0 ? rc : (int)i;
}

void sim_node_down(struct sim *s, unsigned i)
{
    struct node *nd = &s->nodes[i];
    if (!nd->up)
        return;
    nd->up = false;
    dht_free(nd->d);
    nd->d = NULL;
    nd->timer_gen++;
}

int sim_node_up(struct sim *s, unsigned i)
{
    return s->nodes[i].up ? 0 : node_start(s, i);
}

bool sim_node_is_up(const struct sim *s, unsigned i)
{
    return s->nodes[i].up;
}

struct dht *sim_dht(struct sim *s, unsigned i)
{
    return s->nodes[i].d;
}

const struct dht_contact *sim_contact(const struct sim *s, unsigned i)
{
    return &s->nodes[i].c;
}

unsigned sim_nodes(const struct sim *s)
{
    return s->n;
}

void sim_seed(struct sim *s, unsigned i, unsigned j)
{
    if (!s->nodes[i].up)
        return;
    dht_add_contact(s->nodes[i].d, &s->nodes[j].c, s->now);
    sim_flush(s, i);
}

/* ---- running -------------------------------------------------------------------------------- */

static void step(struct sim *s)
{
    uint64_t t;
    struct event *ep = sim_queue_pop(&s->q, &t), e = *ep;
    free(ep);
    s->now = t;
    struct node *nd = &s->nodes[e.dst];
    switch (e.kind) {
    case EV_MSG:
        /* it may have gone down, or come back as new, while the message was on the way */
        if (!nd->up || memcmp(nd->c.id, e.dst_id, DHT_ID_LEN)) {
            s->dropped++;
            break;
        }
        s->delivered++;
        dht_input(nd->d, s->nodes[e.src].c.id, &e.src_addr, e.msg, e.len, s->now);
        sim_flush(s, e.dst);
        break;
    case EV_REFUSED:
        if (nd->up) {
            dht_unreachable(nd->d, e.dst_id, s->now);
            sim_flush(s, e.dst);
        }
        break;
    case EV_TIMER:
        if (!nd->up || e.timer_gen != nd->timer_gen)
            break; /* superseded */
        nd->timer_at = UINT64_MAX;
        dht_tick(nd->d, s->now);
        sim_flush(s, e.dst);
        break;
    }
    free(e.msg);
}

void sim_run_until(struct sim *s, uint64_t until)
{
    while (sim_queue_due(&s->q, until))
        step(s);
    if (s->now < until)
        s->now = until;
}

bool sim_run(struct sim *s, bool (*done)(void *arg), void *arg, uint64_t limit)
{
    while (!done(arg)) {
        if (!sim_queue_due(&s->q, limit))
            return false;
        step(s);
    }
    return true;
}

uint64_t sim_now(const struct sim *s)
{
    return s->now;
}

uint64_t sim_delivered(const struct sim *s)
{
    return s->delivered;
}

uint64_t sim_dropped(const struct sim *s)
{
    return s->dropped;
}

int sim_new(struct sim **out, const struct sim_cfg *cfg)
{
    struct sim *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    if (!s->cfg.lat_max_ms) {
        s->cfg.lat_min_ms = 1;
        s->cfg.lat_max_ms = 5;
    }
    if (s->cfg.lat_min_ms > s->cfg.lat_max_ms)
        s->cfg.lat_min_ms = s->cfg.lat_max_ms;
    s->rng = cfg->seed;
    s->now = 1000;
    *out = s;
    return 0;
}

void sim_free(struct sim *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->n; i++)
        if (s->nodes[i].up)
            dht_free(s->nodes[i].d);
    sim_queue_release(&s->q, event_free);
    free(s->nodes);
    free(s);
}
