/*
 * timers.c - every duration of the node (NODE_DURATIONS, node.h) and the one heap of deadlines
 * the core keeps: each link, each seed, each job that may hedge, the DHT and the store's
 * comparison arm a timer of their own when an event changes what they wait for (link_touch,
 * seed_timers_failed, ...), and node_deadline is the heap's top. There is no polling tick.
 *
 * Owns: the durations' defaults and scaling, the heap. Must not: read a clock.
 */
#include "node_int.h"

#include <stdlib.h>

void node_durations_init(struct node_durations *d, unsigned divisor)
{
    if (divisor == 0)
        divisor = 1;
#define X(name, ms, doc)                                                                           \
    d->name = (uint64_t)(ms) / divisor;                                                            \
    if (d->name < NODE_DURATION_FLOOR_MS)                                                          \
        d->name = (uint64_t)(ms) < NODE_DURATION_FLOOR_MS ? (uint64_t)(ms) : NODE_DURATION_FLOOR_MS;
    NODE_DURATIONS(X)
#undef X
}

void timer_init(struct node_timer *t, void (*fire)(struct node *, struct node_timer *, uint64_t))
{
    t->at = UINT64_MAX;
    t->idx = 0;
    t->fire = fire;
}

static bool before(const struct node_timer *a, const struct node_timer *b)
{
    return a->at < b->at;
}

static void place(struct node *n, size_t i, struct node_timer *t)
{
    n->heap[i] = t;
    t->idx = (uint32_t)i + 1;
}

static void sift_up(struct node *n, size_t i)
{
    struct node_timer *t = n->heap[i];
    while (i > 0 && before(t, n->heap[(i - 1) / 2])) {
        place(n, i, n->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    place(n, i, t);
}

static void sift_down(struct node *n, size_t i)
{
    struct node_timer *t = n->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n->nheap)
            break;
        if (c + 1 < n->nheap && before(n->heap[c + 1], n->heap[c]))
            c++;
        if (!before(n->heap[c], t))
            break;
        place(n, i, n->heap[c]);
        i = c;
    }
    place(n, i, t);
}

void timer_stop(struct node *n, struct node_timer *t)
{
    if (!t->idx)
        return;
    size_t i = t->idx - 1;
    struct node_timer *last = n->heap[--n->nheap];
    t->idx = 0;
    t->at = UINT64_MAX;
    if (last == t)
        return;
    place(n, i, last);
    sift_up(n, i);
    sift_down(n, last->idx - 1);
}

void timer_set(struct node *n, struct node_timer *t, uint64_t at)
{
    if (at == UINT64_MAX) {
        timer_stop(n, t);
        return;
    }
    if (t->idx) {
        t->at = at;
        sift_up(n, t->idx - 1);
        sift_down(n, t->idx - 1);
        return;
    }
    if (n->nheap == n->heapcap) {
        /* Memory for a deadline: when it runs out, the timer is simply not armed and the
         * thing waits for the next event; the heap is small (links + seeds + jobs + 2). */
        struct node_timer **h = array_grow(n->heap, &n->heapcap, sizeof *h, 64);
        if (!h)
            return;
        n->heap = h;
    }
    t->at = at;
    place(n, n->nheap++, t);
    sift_up(n, t->idx - 1);
}

void timers_run(struct node *n, uint64_t now)
{
    while (n->nheap && n->heap[0]->at <= now) {
        struct node_timer *t = n->heap[0];
        timer_stop(n, t);
        t->fire(n, t, now);
    }
}

uint64_t node_deadline(const struct node *n)
{
    return n->nheap ? n->heap[0]->at : UINT64_MAX;
}
