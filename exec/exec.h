/*
 * exec.h - the executor (docs/exec.md): jobs run on a mounted image. This first part is
 * admission: what a job asks for (cpus, memory, scratch, device slots), what a node offers, and
 * whether the one fits the other now, later, or never; and the queue of jobs waiting for room,
 * first in, first out.
 *
 * Admission is pure: no I/O, no clock, no allocation; its caller (the node) owns the capacity
 * and the queue and serialises calls on them.
 */
#ifndef AFSP_EXEC_H
#define AFSP_EXEC_H

#include <stdbool.h>
#include <stdint.h>

#define EXEC_CPUS_MAX 4096  /* cpus a node may offer, or a job ask for */
#define EXEC_DEVICES_MAX 64 /* device slots a node may offer (one kind) */
#define EXEC_QUEUE_MAX 256  /* jobs waiting for room on one node */
#define EXEC_MILLI 1000u    /* millicpus per cpu */

/* Resources, as a job asks for them or a node offers them. */
struct exec_res {
    uint32_t millicpus; /* thousandths of a cpu */
    uint64_t memory;    /* bytes */
    uint64_t scratch;   /* bytes of the job's writable layer */
    uint32_t devices;   /* device slots (a count) */
};

/* A node's capacity: what it offers (total), what its running jobs hold (used), and which of
 * its device slots they hold (bit i: slot i). */
struct exec_capacity {
    struct exec_res total, used;
    uint64_t devices_used;
};

/* "0.5", "2", "1.25": a count of cpus with at most three decimals, more than 0 and at most
 * EXEC_CPUS_MAX, as millicpus. Returns 0 or AFSP_E_USAGE. */
int exec_cpus_parse(const char *s, uint32_t *millicpus);

/* A node's capacity offering total, with nothing used. Returns 0, or AFSP_E_USAGE (more cpus or
 * device slots than the maxima, or no cpu or memory at all). */
int exec_capacity_init(struct exec_capacity *c, const struct exec_res *total);

enum exec_fit {
    EXEC_FITS = 0,  /* the node's free capacity covers it now */
    EXEC_WAIT = 1,  /* it fits the node, once running jobs have ended */
    EXEC_NEVER = 2, /* more than the node offers at all (or it asks for no cpu or no memory) */
};
/* Whether request r fits capacity c. */
enum exec_fit exec_fit(const struct exec_capacity *c, const struct exec_res *r);

/* Takes r from c's free capacity, and its device slots: the lowest free ones, their bits in
 * *slots. Returns 0, or -EAGAIN (it does not fit now: nothing taken). */
int exec_take(struct exec_capacity *c, const struct exec_res *r, uint64_t *slots);
/* Gives back what exec_take took (r, slots). */
void exec_give(struct exec_capacity *c, const struct exec_res *r, uint64_t slots);

/* The jobs waiting for room, first in, first out: only the first may start, so that a large
 * job is not passed over for ever by smaller ones. */
struct exec_queue {
    struct exec_queued {
        uint64_t id;
        struct exec_res r;
    } q[EXEC_QUEUE_MAX];
    unsigned head, n;
};
/* Appends job id asking for r. Returns 0, or -ENOSPC (EXEC_QUEUE_MAX wait already). */
int exec_queue_push(struct exec_queue *q, uint64_t id, const struct exec_res *r);
/* The first waiting job if it fits c now (*id, *r set; it stays queued until popped), else
 * false (none waits, or the first does not fit yet). */
bool exec_queue_ready(const struct exec_queue *q, const struct exec_capacity *c, uint64_t *id,
                      struct exec_res *r);
/* Removes the first waiting job (it starts). */
void exec_queue_pop(struct exec_queue *q);
/* Removes job id wherever it waits (it was cancelled). Returns whether it was there. */
bool exec_queue_remove(struct exec_queue *q, uint64_t id);
/* Where job id waits: 0 for the first, or -1. */
int exec_queue_position(const struct exec_queue *q, uint64_t id);

#endif
