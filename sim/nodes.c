/*
 * nodes.c - node cores (node/) wired by in-memory links on a virtual clock: the node's unit
 * tests' cluster, and the seed of the simulator. Each node has an identity, an in-memory store
 * (memstore.c) and an address (10.x.y.z:7070); what its core asks for is done here: a dial
 * reaches the node at the address after the latency (or is refused), bytes cross a link in one
 * latency, a close reaches the other end, tasks (pulls, fetches) run as the daemon's would, job
 * by job, falling back to a registry that every node reaches. A link can be frozen (its bytes
 * wait) or cut, a node paused (SIGSTOP: nothing it is sent is read, its timers wait), killed and
 * restarted. Events are ordered by (time, sequence): a run is a function of its seed.
 *
 * Owns: the nodes, links, tasks and events. Must not: read a clock or a random source of its
 * own.
 */
#include "nodes_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- events ---------------------------------------------------------------------------------- */

static struct event *ev_new(struct simn *s, enum ev_kind kind, unsigned node, uint64_t delay)
{
    struct event *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->kind = kind;
    e->node = node;
    e->life = s->nodes[node]->life;
    e->t = s->now + delay;
    return e;
}

static void event_free(void *ev)
{
    struct event *e = ev;
    buf_release(&e->bytes);
    free(e);
}

static void push(struct simn *s, struct event *e)
{
    if (e && sim_queue_push(&s->q, e->t, e) < 0)
        event_free(e);
}

/* ---- effects --------------------------------------------------------------------------------- */

static void flush(struct simn *s, unsigned i);

/* The index of the node at a (which may not have been added yet), or -1. */
static long index_of(const struct dht_addr *a)
{
    unsigned i = ((unsigned)a->ip[1] << 16 | (unsigned)a->ip[2] << 8 | a->ip[3]) - 1;
    if (a->family != 4 || a->ip[0] != 10 || a->port != SIMN_PORT || i >= (1u << 24) - 2)
        return -1;
    return (long)i;
}

static int side_of(const struct pipe *p, const struct node_link *k)
{
    return p->k[0] == k ? 0 : 1;
}

/* Bytes from side `from` of p to the other side, after its sender's uplink has carried them
 * and the latency (held while frozen). */
static void send_bytes(struct simn *s, struct pipe *p, int from, const uint8_t *b, size_t len)
{
    int to = !from;
    uint64_t delay = s->cfg.lat_ms;
    struct snode *sn = s->nodes[p->end[from]];
    sn->up_bytes += len;
    if (s->cfg.up_rate) {
        sn->up_free_us = MAX(sn->up_free_us, s->now * 1000) + len * 1000000 / s->cfg.up_rate;
        delay += (sn->up_free_us + 999) / 1000 - s->now;
    }
    if (p->frozen) {
        buf_append(&p->held[to], b, len);
        return;
    }
    struct event *e = ev_new(s, EV_DATA, p->end[to], delay);
    if (!e)
        return;
    e->p = p;
    e->side = to;
    if (buf_append(&e->bytes, b, len) < 0) {
        free(e);
        return;
    }
    push(s, e);
}

static void close_side(struct simn *s, struct pipe *p, int side)
{
    p->open[side] = false;
    p->k[side] = NULL;
    if (p->open[!side]) { /* the other end hears of it */
        struct event *e = ev_new(s, EV_CLOSED, p->end[!side], s->cfg.lat_ms);
        if (e) {
            e->p = p;
            e->side = !side;
            push(s, e);
        }
    }
}

/* ---- the uplink ------------------------------------------------------------------------------
 * A node's links with bytes to send wait in a queue; while less than SIMN_UP_BUFFER bytes wait
 * in its uplink, the link at the head sends a piece and goes to the back if it has more. */

static uint64_t up_backlog(const struct simn *s, const struct snode *sn)
{
    uint64_t now_us = s->now * 1000;
    return sn->up_free_us > now_us ? (sn->up_free_us - now_us) * s->cfg.up_rate / 1000000 : 0;
}

static void up_queue(struct snode *sn, struct pipe *p, int side)
{
    for (size_t i = 0; i < sn->nupq; i++)
        if (sn->upq[i].p == p && sn->upq[i].side == side)
            return;
    if (sn->nupq == sn->capupq) {
        struct upq *v = array_grow(sn->upq, &sn->capupq, sizeof *v, 16);
        if (!v)
            return;
        sn->upq = v;
    }
    sn->upq[sn->nupq++] = (struct upq){p, side};
}

static void up_run(struct simn *s, unsigned i)
{
    struct snode *sn = s->nodes[i];
    while (sn->nupq && up_backlog(s, sn) < SIMN_UP_BUFFER) {
        struct upq q = sn->upq[0];
        memmove(sn->upq, sn->upq + 1, --sn->nupq * sizeof *sn->upq);
        const uint8_t *b;
        size_t len;
        if (!q.p->open[q.side] || !(len = node_link_pending(sn->n, q.p->k[q.side], &b)))
            continue;
        len = MIN(len, (size_t)SIMN_UP_QUANTUM);
        send_bytes(s, q.p, q.side, b, len);
        node_link_sent(sn->n, q.p->k[q.side], len, s->now);
        up_queue(sn, q.p, q.side); /* its turn again after the others' (nothing: dropped then) */
    }
    if (sn->nupq && !sn->up_armed) { /* when the uplink has room again */
        uint64_t at_us = sn->up_free_us - SIMN_UP_BUFFER * 1000000 / s->cfg.up_rate;
        uint64_t at = (at_us + 999) / 1000;
        struct event *ev = ev_new(s, EV_WRITABLE, i, at > s->now ? at - s->now : 1);
        if (ev) {
            sn->up_armed = true;
            push(s, ev);
        }
    }
}

void task_schedule_in(struct simn *s, struct stask *st, uint64_t delay)
{
    struct event *e = ev_new(s, EV_TASK, st->node, delay);
    if (e) {
        e->task = st;
        push(s, e);
    }
}

static void task_schedule(struct simn *s, struct stask *st)
{
    task_schedule_in(s, st, 0);
}

static void flush(struct simn *s, unsigned i)
{
    struct snode *sn = s->nodes[i];
    struct node_effect e;
    while (sn->up && node_effect_next(sn->n, &e)) {
        struct pipe *p = e.link ? node_link_io(e.link) : NULL;
        switch (e.type) {
        case NODE_FX_DIAL: {
            sn->dials++;
            struct pipe *np = calloc(1, sizeof *np);
            long to = index_of(&e.addr);
            if (!np) {
                node_link_closed(sn->n, e.link, -ENOMEM, s->now);
                break;
            }
            np->end[0] = i;
            np->end[1] = to < 0 ? UINT32_MAX : (unsigned)to;
            np->k[0] = e.link;
            np->open[0] = true;
            np->port = (uint16_t)(40000 + s->ports++ % 20000);
            np->next = s->pipes;
            s->pipes = np;
            node_link_set_io(e.link, np);
            /* the dialer's event: whether anyone listens there is known when it arrives */
            struct event *ev = ev_new(s, EV_CONNECT, i, s->cfg.lat_ms);
            if (ev) {
                ev->p = np;
                push(s, ev);
            }
            break;
        }
        case NODE_FX_SEND: {
            const uint8_t *b;
            size_t len;
            int side = p ? side_of(p, e.link) : 0;
            if (p && s->cfg.up_rate) {
                up_queue(sn, p, side);
                up_run(s, i);
                break;
            }
            while (p && p->open[side] && (len = node_link_pending(sn->n, e.link, &b))) {
                send_bytes(s, p, side, b, len);
                node_link_sent(sn->n, e.link, len, s->now);
            }
            break;
        }
        case NODE_FX_CLOSE:
            if (p)
                close_side(s, p, side_of(p, e.link));
            node_link_release(sn->n, e.link);
            break;
        case NODE_FX_ANSWER: {
            struct ticket *tk = (struct ticket *)e.ctl;
            free(tk->answer);
            tk->answer = e.text;
            break;
        }
        case NODE_FX_TASK: {
            struct stask *st = calloc(1, sizeof *st);
            if (!st) {
                e.task->rc = -ENOMEM;
                node_task_done(sn->n, e.task, s->now);
                break;
            }
            st->node = i;
            st->life = sn->life;
            st->t = e.task;
            st->next = s->tasks;
            s->tasks = st;
            task_schedule(s, st);
            break;
        }
        case NODE_FX_JOB_DONE:
            if (e.job->task_arg == &s->jobs_direct) /* simn_job's */
                s->jobs_direct--;
            else
                task_schedule(s, (struct stask *)e.job->task_arg);
            break;
        case NODE_FX_EXEC: /* the simulator's nodes offer no capacity: not asked */
            e.exec->rc = -ENOTSUP;
            snprintf(e.exec->msg, sizeof e.exec->msg, "the simulator runs no jobs");
            node_exec_done(sn->n, e.exec, s->now);
            break;
        case NODE_FX_EXEC_KILL:
            break;
        case NODE_FX_EXEC_FREE:
            node_exec_free(e.exec);
            break;
        case NODE_FX_STOPPED:
            sn->stopped = true;
            break;
        }
    }
    uint64_t d = sn->up ? node_deadline(sn->n) : UINT64_MAX;
    if (d == UINT64_MAX || d == sn->timer_at)
        return;
    sn->timer_at = d;
    struct event *ev = ev_new(s, EV_TIMER, i, d > s->now ? d - s->now : 0);
    if (ev) {
        ev->gen = ++sn->timer_gen;
        push(s, ev);
    }
}

/* ---- running ----------------------------------------------------------------------------------
 */

static int hold(struct snode *sn, struct event *e)
{
    if (sn->nheld == sn->capheld) {
        struct event **v = array_grow(sn->held, &sn->capheld, sizeof *v, 16);
        if (!v)
            return -ENOMEM;
        sn->held = v;
    }
    sn->held[sn->nheld++] = e;
    return 0;
}

static void step(struct simn *s)
{
    uint64_t t;
    struct event *e = sim_queue_pop(&s->q, &t);
    struct snode *sn = s->nodes[e->node];
    struct pipe *p = e->p;
    s->now = t;
    bool alive = sn->up && e->life == sn->life;
    if (alive && sn->paused && e->kind != EV_TASK) {  /* it reads nothing until it goes on */
        if (e->kind == EV_TIMER || hold(sn, e) < 0) { /* its timer is re-armed then */
            buf_release(&e->bytes);
            free(e);
        }
        return;
    }
    switch (alive ? e->kind : EV_TASK + 1) {
    case EV_CONNECT: { /* the dialer's SYN reaches the address (a paused node accepts too) */
        unsigned to = p->end[1];
        struct snode *tn = to < s->n ? s->nodes[to] : NULL;
        struct node_link *k = NULL;
        if (p->open[0] && tn && tn->up) {
            struct dht_addr from = sn->addr;
            from.port = p->port;
            k = node_link_accepted(tn->n, &from, s->now);
        }
        if (!k) {
            close_side(s, p, 1);
            break;
        }
        p->k[1] = k;
        p->open[1] = true;
        node_link_set_io(k, p);
        struct event *c = ev_new(s, EV_CONNECTED, p->end[0], s->cfg.lat_ms);
        if (c) {
            c->p = p;
            push(s, c);
        }
        flush(s, to);
        break;
    }
    case EV_CONNECTED:
        if (p->open[0]) {
            node_link_connected(sn->n, p->k[0], s->now);
            flush(s, e->node);
        }
        break;
    case EV_DATA:
        if (!p->open[e->side])
            break;
        if (p->frozen) {
            buf_append(&p->held[e->side], e->bytes.p, e->bytes.len);
            break;
        }
        node_link_input(sn->n, p->k[e->side], e->bytes.p, e->bytes.len, s->now);
        flush(s, e->node);
        break;
    case EV_CLOSED:
        if (!p->open[e->side])
            break;
        node_link_closed(sn->n, p->k[e->side], -ECONNRESET, s->now);
        flush(s, e->node);
        break;
    case EV_TIMER:
        if (e->gen != sn->timer_gen)
            break; /* superseded */
        sn->timer_at = UINT64_MAX;
        node_tick(sn->n, s->now);
        flush(s, e->node);
        break;
    case EV_WRITABLE:
        sn->up_armed = false;
        up_run(s, e->node);
        flush(s, e->node);
        break;
    case EV_TASK:
        task_step(s, e->task);
        flush(s, e->node);
        break;
    default: /* for a node that is down, or came back since */
        break;
    }
    buf_release(&e->bytes);
    free(e);
}

void simn_run_until(struct simn *s, uint64_t until)
{
    while (sim_queue_due(&s->q, until))
        step(s);
    if (s->now < until)
        s->now = until;
}

bool simn_run(struct simn *s, bool (*done)(void *arg), void *arg, uint64_t limit)
{
    while (!done(arg)) {
        if (!sim_queue_due(&s->q, limit))
            return false;
        step(s);
    }
    return true;
}

unsigned simn_count(const struct simn *s)
{
    return s->n;
}

uint64_t simn_now(const struct simn *s)
{
    return s->now;
}

/* ---- nodes ----------------------------------------------------------------------------------- */

static int node_start(struct simn *s, unsigned i)
{
    struct snode *sn = s->nodes[i];
    struct node_cfg cfg = {.id = &sn->id,
                           .cluster_key = s->ckey,
                           .rng = rng_fill,
                           .rng_arg = &sn->rng,
                           .now = s->now,
                           .wall_ms = 1800000000000ull + s->now,
                           .listen_port = SIMN_PORT,
                           .listen_text = "sim",
                           .random_first = s->cfg.random_first,
                           .serve_chunks = s->cfg.serve_chunks,
                           .seeds = sn->seeds,
                           .nseeds = sn->nseeds,
                           .links_max = s->cfg.links_max,
                           .t = &s->t,
                           .store = &memstore_ops,
                           .store_arg = sn->ms,
                           .k = s->cfg.k,
                           .alpha = s->cfg.alpha};
    int rc = node_new(&sn->n, &cfg);
    if (rc < 0)
        return rc;
    sn->up = true;
    sn->stopped = false;
    sn->timer_at = UINT64_MAX;
    flush(s, i);
    return 0;
}

int simn_add(struct simn *s, const unsigned *seeds, size_t nseeds)
{
    if (nseeds > NODE_SEEDS_MAX)
        return AFSP_E_USAGE;
    if (s->n == s->cap) {
        struct snode **v = array_grow(s->nodes, &s->cap, sizeof *v, 16);
        if (!v)
            return -ENOMEM;
        s->nodes = v;
    }
    unsigned i = s->n;
    struct snode *sn = calloc(1, sizeof *sn);
    if (!sn)
        return -ENOMEM;
    uint8_t seed[32];
    rng_fill(&s->rng, seed, sizeof seed);
    int rc = p2p_identity_from_seed(&sn->id, seed);
    if (rc == 0 && (rc = memstore_new(&sn->ms)) == 0)
        memstore_set_clock(sn->ms, &s->now);
    if (rc < 0) {
        p2p_identity_wipe(&sn->id);
        free(sn);
        return rc;
    }
    s->nodes[i] = sn;
    sn->rng = rng_next64(&s->rng);
    sn->addr = (struct dht_addr){.family = 4, .port = SIMN_PORT};
    sn->addr.ip[0] = 10;
    sn->addr.ip[1] = (uint8_t)((i + 1) >> 16);
    sn->addr.ip[2] = (uint8_t)((i + 1) >> 8);
    sn->addr.ip[3] = (uint8_t)(i + 1);
    for (size_t k = 0; k < nseeds; k++) {
        struct dht_addr a = {.family = 4, .port = SIMN_PORT};
        a.ip[0] = 10;
        a.ip[1] = (uint8_t)((seeds[k] + 1) >> 16);
        a.ip[2] = (uint8_t)((seeds[k] + 1) >> 8);
        a.ip[3] = (uint8_t)(seeds[k] + 1);
        sn->seeds[sn->nseeds++] = a;
    }
    s->n++;
    rc = node_start(s, i);
    return rc < 0 ? rc : (int)i;
}

/* Every link of node i ends: its side is closed at once, the other ends hear it. */
static void node_links_drop(struct simn *s, unsigned i)
{
    for (struct pipe *p = s->pipes; p; p = p->next)
        for (int side = 0; side < 2; side++)
            if (p->end[side] == i && p->open[side])
                close_side(s, p, side);
}

void simn_kill(struct simn *s, unsigned i)
{
    struct snode *sn = s->nodes[i];
    if (!sn->up)
        return;
    node_links_drop(s, i);
    for (struct stask *st = s->tasks; st; st = st->next) {
        if (st->node != i || st->life != sn->life)
            continue;
        if (st->fetch)
            memstore_fetch_close(sn->ms, st->fetch);
        st->fetch = NULL;
        if (st->downloading) /* what the registry had sent of the layer when it died */
            s->registry_bytes +=
                MIN(st->dl_size - st->dl_base,
                    s->cfg.registry_rate ? (s->now - st->dl_start) * s->cfg.registry_rate / 1000
                                         : st->dl_size);
        if (st->downloading || st->streaming)
            memstore_dl_end(sn->ms, st->layers[st->layer], -ECANCELED);
    }
    node_free(sn->n); /* frees the tasks it held; the simulator's go with the node's life */
    for (struct stask **pp = &s->tasks; *pp;) {
        struct stask *st = *pp;
        if (st->node == i && st->life == sn->life) {
            *pp = st->next;
            buf_release(&st->out);
            free(st->layers);
            free(st);
        } else {
            pp = &st->next;
        }
    }
    sn->n = NULL;
    sn->up = false;
    sn->life++;
    sn->nupq = 0; /* its links are gone */
    sn->up_armed = false;
}

int simn_restart(struct simn *s, unsigned i)
{
    return s->nodes[i]->up ? 0 : node_start(s, i);
}

void simn_pause(struct simn *s, unsigned i, bool paused)
{
    struct snode *sn = s->nodes[i];
    sn->paused = paused;
    if (paused)
        return;
    for (size_t k = 0; k < sn->nheld; k++) {
        sn->held[k]->t = s->now;
        push(s, sn->held[k]);
    }
    sn->nheld = 0;
    if (sn->up) {
        sn->timer_at = UINT64_MAX;
        flush(s, i);
    }
}

static void pipes_of(struct simn *s, unsigned i, unsigned j,
                     void (*fn)(struct simn *, struct pipe *))
{
    for (struct pipe *p = s->pipes; p; p = p->next)
        if ((p->end[0] == i && p->end[1] == j) || (p->end[0] == j && p->end[1] == i))
            fn(s, p);
}

static void pipe_cut(struct simn *s, struct pipe *p)
{
    for (int side = 0; side < 2; side++)
        if (p->open[side] && s->nodes[p->end[side]]->up) {
            struct event *e = ev_new(s, EV_CLOSED, p->end[side], 0);
            if (e) {
                e->p = p;
                e->side = side;
                push(s, e);
            }
        }
}

static void pipe_freeze(struct simn *s, struct pipe *p)
{
    (void)s;
    p->frozen = true;
}

static void pipe_thaw(struct simn *s, struct pipe *p)
{
    p->frozen = false;
    for (int side = 0; side < 2; side++)
        if (p->held[side].len) {
            struct event *e = ev_new(s, EV_DATA, p->end[side], s->cfg.lat_ms);
            if (e) {
                e->p = p;
                e->side = side;
                e->bytes = p->held[side];
                memset(&p->held[side], 0, sizeof p->held[side]);
                push(s, e);
            }
        }
}

void simn_cut(struct simn *s, unsigned i, unsigned j)
{
    pipes_of(s, i, j, pipe_cut);
}

void simn_freeze(struct simn *s, unsigned i, unsigned j, bool frozen)
{
    pipes_of(s, i, j, frozen ? pipe_freeze : pipe_thaw);
}

bool simn_accept_silent(struct simn *s, unsigned i, const struct dht_addr *from)
{
    if (!s->nodes[i]->up)
        return false;
    struct node_link *k = node_link_accepted(s->nodes[i]->n, from, s->now);
    flush(s, i);
    return k != NULL;
}

/* ---- inspection and requests -------------------------------------------------------------------
 */

struct node *simn_node(struct simn *s, unsigned i)
{
    return s->nodes[i]->up ? s->nodes[i]->n : NULL;
}

struct memstore *simn_store(struct simn *s, unsigned i)
{
    return s->nodes[i]->ms;
}

const uint8_t *simn_id(const struct simn *s, unsigned i)
{
    return s->nodes[i]->id.id;
}

uint64_t simn_dials(const struct simn *s, unsigned i)
{
    return s->nodes[i]->dials;
}

bool simn_stopped(const struct simn *s, unsigned i)
{
    return s->nodes[i]->stopped;
}

unsigned simn_links(const struct simn *s, unsigned i, unsigned j)
{
    unsigned n = 0;
    for (const struct pipe *p = s->pipes; p; p = p->next)
        if (p->open[0] && p->open[1] &&
            ((p->end[0] == i && p->end[1] == j) || (p->end[0] == j && p->end[1] == i)))
            n++;
    return n;
}

int simn_link_dialer(const struct simn *s, unsigned i, unsigned j)
{
    int dialer = -1, n = 0;
    for (const struct pipe *p = s->pipes; p; p = p->next)
        if (p->open[0] && p->open[1] &&
            ((p->end[0] == i && p->end[1] == j) || (p->end[0] == j && p->end[1] == i))) {
            dialer = (int)p->end[0];
            n++;
        }
    return n == 1 ? dialer : -1;
}

struct memstore *simn_registry(struct simn *s)
{
    return s->registry;
}

void simn_job(struct simn *s, unsigned i, struct node_job *j)
{
    j->task_arg = &s->jobs_direct;
    j->rc = 1;
    s->jobs_direct++;
    node_job_submit(s->nodes[i]->n, j, s->now);
    flush(s, i);
}

uint64_t simn_registry_fetches(const struct simn *s)
{
    return s->registry_fetches;
}

uint64_t simn_registry_bytes(const struct simn *s)
{
    return s->registry_bytes;
}

uint64_t simn_up_bytes(const struct simn *s, unsigned i)
{
    return s->nodes[i]->up_bytes;
}

int simn_ctl(struct simn *s, unsigned i, const char *request)
{
    if (s->ntickets == s->captickets) {
        struct ticket **v = array_grow(s->tickets, &s->captickets, sizeof *v, 16);
        if (!v)
            return -ENOMEM;
        s->tickets = v;
    }
    struct ticket *tk = calloc(1, sizeof *tk);
    if (!tk)
        return -ENOMEM;
    s->tickets[s->ntickets] = tk;
    if (s->nodes[i]->up) {
        node_ctl_request(s->nodes[i]->n, (struct node_ctl *)tk, request, strlen(request), s->now);
        flush(s, i);
    }
    return (int)s->ntickets++;
}

const char *simn_answer(const struct simn *s, int ticket)
{
    return ticket >= 0 && (size_t)ticket < s->ntickets ? s->tickets[ticket]->answer : NULL;
}

void simn_ctl_gone(struct simn *s, unsigned i, int ticket)
{
    if (s->nodes[i]->up) {
        node_ctl_gone(s->nodes[i]->n, (struct node_ctl *)s->tickets[ticket]);
        flush(s, i);
    }
}

void simn_store_changed(struct simn *s, unsigned i)
{
    if (s->nodes[i]->up) {
        node_store_changed(s->nodes[i]->n, s->now);
        flush(s, i);
    }
}

void simn_stop(struct simn *s, unsigned i)
{
    if (s->nodes[i]->up) {
        node_stop(s->nodes[i]->n, s->now);
        flush(s, i);
    }
}

/* ---- the network -------------------------------------------------------------------------------
 */

int simn_new(struct simn **out, const struct simn_cfg *cfg)
{
    struct simn *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    if (!s->cfg.lat_ms)
        s->cfg.lat_ms = 1;
    if (cfg->t)
        s->t = *cfg->t;
    else
        node_durations_init(&s->t, 1);
    s->cfg.t = NULL;
    s->rng = cfg->seed;
    s->now = 1000;
    rng_fill(&s->rng, s->ckey, sizeof s->ckey);
    int rc = memstore_new(&s->registry);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void simn_free(struct simn *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->n; i++) {
        if (s->nodes[i]->up)
            simn_kill(s, i);
        memstore_free(s->nodes[i]->ms);
        p2p_identity_wipe(&s->nodes[i]->id);
        for (size_t k = 0; k < s->nodes[i]->nheld; k++) {
            buf_release(&s->nodes[i]->held[k]->bytes);
            free(s->nodes[i]->held[k]);
        }
        free(s->nodes[i]->held);
        free(s->nodes[i]->upq);
        free(s->nodes[i]);
    }
    sim_queue_release(&s->q, event_free);
    while (s->pipes) {
        struct pipe *p = s->pipes;
        s->pipes = p->next;
        buf_release(&p->held[0]);
        buf_release(&p->held[1]);
        free(p);
    }
    for (size_t i = 0; i < s->ntickets; i++) {
        free(s->tickets[i]->answer);
        free(s->tickets[i]);
    }
    free(s->tickets);
    free(s->nodes);
    memstore_free(s->registry);
    free(s);
}
