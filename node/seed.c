/*
 * seed.c - seeds: the addresses a node is started with. Each is dialed at start and, whenever
 * its link closes or its dial fails, again after a backoff that doubles from seed_retry_min to
 * seed_retry_max and starts over once a link to it comes up. A seed's link is never closed for
 * being idle: it is how the node finds the cluster again.
 *
 * Owns: the seeds' links and backoff. Must not: do I/O (a dial is NODE_FX_DIAL).
 */
#include "node_int.h"

static void on_seed_timer(struct node *n, struct node_timer *t, uint64_t now)
{
    struct seed *s = (struct seed *)((char *)t - offsetof(struct seed, timer));
    seed_dial(n, s, now);
}

static void seed_failed(struct node *n, struct seed *s, uint64_t now)
{
    s->link = NULL;
    s->backoff = s->backoff ? s->backoff * 2 : n->t.seed_retry_min;
    if (s->backoff > n->t.seed_retry_max)
        s->backoff = n->t.seed_retry_max;
    if (!s->timer.fire)
        timer_init(&s->timer, on_seed_timer);
    timer_set(n, &s->timer, now + s->backoff);
}

void seed_timers_failed(struct node *n, struct node_link *k, uint64_t now)
{
    for (size_t i = 0; i < n->nseeds; i++)
        if (n->seeds[i].link == k)
            seed_failed(n, &n->seeds[i], now);
    k->seeds = 0;
}

void seed_timers_up(struct node *n, struct node_link *k)
{
    for (size_t i = 0; i < n->nseeds; i++)
        if (n->seeds[i].link == k)
            n->seeds[i].backoff = 0;
}

void seed_move(struct node *n, struct node_link *drop, struct node_link *keep)
{
    for (size_t i = 0; i < n->nseeds; i++)
        if (n->seeds[i].link == drop)
            n->seeds[i].link = keep;
    keep->seeds += drop->seeds;
    drop->seeds = 0;
}

void seed_dial(struct node *n, struct seed *s, uint64_t now)
{
    if (n->stopping || s->link)
        return;
    struct node_link *k = link_dial(n, &s->addr, NULL, now);
    if (!k) {
        seed_failed(n, s, now);
        return;
    }
    snprintf(k->addr, sizeof k->addr, "%s", s->text);
    k->seeds = 1;
    s->link = k;
}
