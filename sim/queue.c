/*
 * queue.c - the simulators' one event queue (sim.h, struct sim_queue): a binary heap of the
 * caller's events ordered by (time, the order they were pushed in), so that a run is a
 * function of its seed.
 *
 * Owns: the heap's array (not the events). Must not: read a clock.
 */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>

static bool before(const struct sim_qent *a, const struct sim_qent *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

int sim_queue_push(struct sim_queue *q, uint64_t t, void *ev)
{
    if (q->n == q->cap) {
        struct sim_qent *v = array_grow(q->v, &q->cap, sizeof *v, 1024);
        if (!v)
            return -ENOMEM;
        q->v = v;
    }
    struct sim_qent e = {t, q->seq++, ev};
    size_t i = q->n++;
    while (i > 0 && before(&e, &q->v[(i - 1) / 2])) {
        q->v[i] = q->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->v[i] = e;
    return 0;
}

bool sim_queue_due(const struct sim_queue *q, uint64_t until)
{
    return q->n && q->v[0].t <= until;
}

void *sim_queue_pop(struct sim_queue *q, uint64_t *t)
{
    if (!q->n)
        return NULL;
    struct sim_qent top = q->v[0], last = q->v[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && before(&q->v[c + 1], &q->v[c]))
            c++;
        if (!before(&q->v[c], &last))
            break;
        q->v[i] = q->v[c];
        i = c;
    }
    if (q->n)
        q->v[i] = last;
    *t = top.t;
    return top.ev;
}

void sim_queue_release(struct sim_queue *q, void (*free_ev)(void *ev))
{
    for (size_t i = 0; i < q->n; i++)
        free_ev(q->v[i].ev);
    free(q->v);
    *q = (struct sim_queue){0};
}
