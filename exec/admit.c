/*
 * admit.c - admission (docs/exec.md): requests against a node's capacity, device slots, and the
 * queue of jobs waiting for room. Pure functions of their arguments.
 *
 * Owns: nothing. Must not: take more than the capacity holds, or let a job pass the first one
 * waiting.
 */
#include "exec.h"

#include "../util/util.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

int exec_cpus_parse(const char *s, uint32_t *millicpus)
{
    uint64_t whole = 0, frac = 0;
    unsigned digits = 0, decimals = 0;
    if (!s)
        return AFSP_E_USAGE;
    for (; isdigit((unsigned char)*s); s++, digits++) {
        whole = whole * 10 + (uint64_t)(*s - '0');
        if (whole > EXEC_CPUS_MAX)
            return AFSP_E_USAGE;
    }
    if (*s == '.') {
        for (s++; isdigit((unsigned char)*s); s++, decimals++) {
            if (decimals == 3)
                return AFSP_E_USAGE; /* a thousandth is the unit */
            frac = frac * 10 + (uint64_t)(*s - '0');
        }
        if (!decimals)
            return AFSP_E_USAGE;
    }
    if (*s || !digits)
        return AFSP_E_USAGE;
    for (; decimals < 3; decimals++)
        frac *= 10;
    uint64_t m = whole * EXEC_MILLI + frac;
    if (m == 0 || m > (uint64_t)EXEC_CPUS_MAX * EXEC_MILLI)
        return AFSP_E_USAGE;
    *millicpus = (uint32_t)m;
    return 0;
}

int exec_capacity_init(struct exec_capacity *c, const struct exec_res *total)
{
    if (!total->millicpus || total->millicpus > EXEC_CPUS_MAX * EXEC_MILLI || !total->memory ||
        total->devices > EXEC_DEVICES_MAX)
        return AFSP_E_USAGE;
    memset(c, 0, sizeof *c);
    c->total = *total;
    return 0;
}

/* Whether want fits in have - used of each resource (no overflow: used <= have always). */
static bool covers(const struct exec_res *have, const struct exec_res *used,
                   const struct exec_res *want)
{
    return want->millicpus <= have->millicpus - used->millicpus &&
           want->memory <= have->memory - used->memory &&
           want->scratch <= have->scratch - used->scratch &&
           want->devices <= have->devices - used->devices;
}

enum exec_fit exec_fit(const struct exec_capacity *c, const struct exec_res *r)
{
    static const struct exec_res none;
    if (!r->millicpus || !r->memory || !covers(&c->total, &none, r))
        return EXEC_NEVER;
    return covers(&c->total, &c->used, r) ? EXEC_FITS : EXEC_WAIT;
}

int exec_take(struct exec_capacity *c, const struct exec_res *r, uint64_t *slots)
{
    if (exec_fit(c, r) != EXEC_FITS)
        return -EAGAIN;
    uint64_t got = 0;
    for (uint32_t i = 0, n = 0; n < r->devices && i < c->total.devices; i++)
        if (!(c->devices_used >> i & 1)) {
            got |= 1ull << i;
            n++;
        }
    c->used.millicpus += r->millicpus;
    c->used.memory += r->memory;
    c->used.scratch += r->scratch;
    c->used.devices += r->devices;
    c->devices_used |= got;
    *slots = got;
    return 0;
}

void exec_give(struct exec_capacity *c, const struct exec_res *r, uint64_t slots)
{
    c->used.millicpus -= MIN(r->millicpus, c->used.millicpus);
    c->used.memory -= MIN(r->memory, c->used.memory);
    c->used.scratch -= MIN(r->scratch, c->used.scratch);
    c->used.devices -= MIN(r->devices, c->used.devices);
    c->devices_used &= ~slots;
}

int exec_queue_push(struct exec_queue *q, uint64_t id, const struct exec_res *r)
{
    if (q->n == EXEC_QUEUE_MAX)
        return -ENOSPC;
    struct exec_queued *e = &q->q[(q->head + q->n++) % EXEC_QUEUE_MAX];
    e->id = id;
    e->r = *r;
    return 0;
}

bool exec_queue_ready(const struct exec_queue *q, const struct exec_capacity *c, uint64_t *id,
                      struct exec_res *r)
{
    if (!q->n || exec_fit(c, &q->q[q->head].r) != EXEC_FITS)
        return false;
    *id = q->q[q->head].id;
    *r = q->q[q->head].r;
    return true;
}

void exec_queue_pop(struct exec_queue *q)
{
    if (q->n) {
        q->head = (q->head + 1) % EXEC_QUEUE_MAX;
        q->n--;
    }
}

int exec_queue_position(const struct exec_queue *q, uint64_t id)
{
    for (unsigned i = 0; i < q->n; i++)
        if (q->q[(q->head + i) % EXEC_QUEUE_MAX].id == id)
            return (int)i;
    return -1;
}

bool exec_queue_remove(struct exec_queue *q, uint64_t id)
{
    int at = exec_queue_position(q, id);
    if (at < 0)
        return false;
    for (unsigned i = (unsigned)at; i + 1 < q->n; i++)
        q->q[(q->head + i) % EXEC_QUEUE_MAX] = q->q[(q->head + i + 1) % EXEC_QUEUE_MAX];
    q->n--;
    return true;
}
