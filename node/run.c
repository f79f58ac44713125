/*
 * run.c - jobs run on this node, the core's part (docs/exec.md, "The node's jobs"): a job is
 * admitted against the node's capacity (exec_fit, exec_take), queued first in, first out, or
 * refused; handed to the runner (NODE_FX_EXEC); its states follow the runner's reports; its
 * capacity is given back at its end and the queue's first job started when it fits; the
 * records of the NODE_EXEC_KEPT newest ended jobs are kept for `afsp jobs`, `logs` and `wait`.
 *
 * Owns: the capacity, the queue, the job records. Must not: do I/O, read a clock.
 */
#include "node_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t exec_wall(const struct node *n, uint64_t now)
{
    return n->started_wall_ms + (now - n->started);
}

int exec_init(struct node *n)
{
    const struct exec_res *t = &n->cfg.capacity;
    /* ids count up from the node's start in microseconds: a restarted node does not give an id
     * again unless a million jobs a second came since its last start, or its clock went back */
    n->exec_seq = n->started_wall_ms * 1000;
    n->cap_none = !t->millicpus || !t->memory;
    if (n->cap_none)
        return 0;
    return exec_capacity_init(&n->cap, t);
}

void node_exec_free(struct node_exec *x)
{
    if (!x)
        return;
    free(x->image);
    free(x->platform);
    free(x->name);
    free(x->workdir);
    free(x->user);
    for (size_t i = 0; x->insecure[i]; i++)
        free(x->insecure[i]);
    for (size_t i = 0; x->args && x->args[i]; i++)
        free(x->args[i]);
    free(x->args);
    for (size_t i = 0; x->env && x->env[i]; i++)
        free(x->env[i]);
    free(x->env);
    for (size_t i = 0; i < x->nvolumes; i++) {
        free((char *)x->volumes[i].src);
        free((char *)x->volumes[i].dst);
    }
    free(x->volumes);
    free(x);
}

/* Frees every record (node_free): the runner has none of them then. */
void exec_free_all(struct node *n)
{
    while (n->execs) {
        struct node_exec *x = n->execs;
        n->execs = x->next;
        node_exec_free(x);
    }
    free(n->queue);
    n->queue = NULL;
    free(n->ports_used);
    n->ports_used = NULL;
}

static uint32_t ports_range(const struct node *n)
{
    return n->cfg.publish_lo && n->cfg.publish_hi >= n->cfg.publish_lo
               ? (uint32_t)n->cfg.publish_hi - n->cfg.publish_lo + 1
               : 0;
}

static void ports_give(struct node *n, struct node_exec *x)
{
    for (unsigned i = 0; i < x->nports && n->ports_used; i++)
        if (x->host_ports[i]) {
            uint32_t b = x->host_ports[i] - n->cfg.publish_lo;
            n->ports_used[b / 8] &= (uint8_t) ~(1u << (b % 8));
            x->host_ports[i] = 0;
        }
}

/* The node's ports for x's: free ones of the range, the search going on from where the last
 * one was found (a port just given back is not given again at once). */
static int ports_take(struct node *n, struct node_exec *x)
{
    uint32_t range = ports_range(n);
    if (!x->nports)
        return 0;
    if (!n->ports_used && !(n->ports_used = calloc((range + 7) / 8, 1)))
        return -ENOMEM;
    for (unsigned i = 0; i < x->nports; i++) {
        uint32_t k = 0, b = 0;
        for (; k < range; k++) {
            b = (n->port_next + k) % range;
            if (!(n->ports_used[b / 8] >> (b % 8) & 1))
                break;
        }
        if (k == range) {
            ports_give(n, x);
            return -EADDRINUSE;
        }
        n->ports_used[b / 8] |= (uint8_t)(1u << (b % 8));
        x->host_ports[i] = (uint16_t)(n->cfg.publish_lo + b);
        n->port_next = (b + 1) % range;
    }
    return 0;
}

struct node_exec *exec_find(struct node *n, const char *key)
{
    for (struct node_exec *x = n->execs; x; x = x->next)
        if (!strcmp(x->st.id, key) || (x->name && !strcmp(x->name, key)))
            return x;
    return NULL;
}

/* Forgets the oldest ended records past NODE_EXEC_KEPT (not one the runner still cleans up). */
static void exec_trim(struct node *n)
{
    while (n->nexec_ended > NODE_EXEC_KEPT) {
        struct node_exec **oldest = NULL;
        for (struct node_exec **pp = &n->execs; *pp; pp = &(*pp)->next)
            if (exec_state_final((*pp)->st.state) && !(*pp)->live)
                oldest = pp;
        if (!oldest)
            return;
        struct node_exec *x = *oldest;
        *oldest = x->next;
        n->nexec_ended--;
        fx_push(n, &(struct node_effect){.type = NODE_FX_EXEC_FREE, .exec = x});
    }
}

/* x ends without having been handed to the runner (cancelled in the queue). */
static void exec_end_unrun(struct node *n, struct node_exec *x, enum exec_state to)
{
    exec_status_to(&x->st, to, exec_wall(n, n->now));
    n->nexec_ended++;
    ctl_exec_ended(n, x);
    exec_trim(n);
}

/* Hands x, whose resources were taken, to the runner, with its ports; without them it fails
 * (its resources given back). */
static void exec_start(struct node *n, struct node_exec *x)
{
    if (x->st.state == EXEC_QUEUED)
        exec_status_to(&x->st, EXEC_PREPARING, exec_wall(n, n->now));
    if (ports_take(n, x) < 0) {
        exec_give(&n->cap, &x->res, x->slots);
        snprintf(x->msg, sizeof x->msg, "no free port in the node's publish range (%u-%u)",
                 n->cfg.publish_lo, n->cfg.publish_hi);
        x->rc = -EADDRINUSE;
        n->st.jobs_failed++;
        exec_end_unrun(n, x, EXEC_FAILED);
        return;
    }
    n->nexec_live++;
    x->live = true;
    log_info("event=job id=%s image=%s state=preparing", x->st.id, x->image);
    fx_push(n, &(struct node_effect){.type = NODE_FX_EXEC, .exec = x});
}

/* Starts queued jobs while the first fits. */
static void exec_queue_run(struct node *n)
{
    uint64_t seq;
    struct exec_res r;
    while (n->queue && !n->stopping && exec_queue_ready(n->queue, &n->cap, &seq, &r)) {
        exec_queue_pop(n->queue);
        struct node_exec *x = n->execs;
        while (x && x->seq != seq)
            x = x->next;
        if (!x || exec_take(&n->cap, &x->res, &x->slots) < 0)
            continue; /* not possible: the record is kept while queued; it fits */
        exec_start(n, x);
    }
}

static bool name_taken(struct node *n, const char *name)
{
    for (struct node_exec *x = n->execs; x; x = x->next)
        if (x->name && !strcmp(x->name, name) && !exec_state_final(x->st.state))
            return true;
    return false;
}

int exec_admit(struct node *n, struct node_exec *x, char *msg, size_t cap)
{
    int rc = 0;
    enum exec_fit fit = n->cap_none ? EXEC_NEVER : exec_fit(&n->cap, &x->res);
    const struct exec_res *t = &n->cap.total;
    if (n->cap_none) {
        snprintf(msg, cap, "this node runs no jobs (it offers no cpu or no memory)");
        rc = AFSP_E_USAGE;
    } else if (fit == EXEC_NEVER) {
        snprintf(msg, cap,
                 "the job asks for more than this node offers at all (it offers %u.%03u cpus, "
                 "%llu bytes of memory, %llu of scratch, %u device slots)",
                 t->millicpus / EXEC_MILLI, t->millicpus % EXEC_MILLI,
                 (unsigned long long)t->memory, (unsigned long long)t->scratch, t->devices);
        rc = AFSP_E_USAGE;
    } else if (x->nports && x->net_host) {
        snprintf(msg, cap,
                 "--publish needs --net none (with --net host a job's ports are the "
                 "node's)");
        rc = AFSP_E_USAGE;
    } else if (x->nports > ports_range(n)) {
        snprintf(msg, cap, "this node publishes %u ports at most (its --publish-range)",
                 ports_range(n));
        rc = AFSP_E_USAGE;
    } else if (x->name && name_taken(n, x->name)) {
        snprintf(msg, cap, "a job named %s is still running here", x->name);
        rc = AFSP_E_USAGE;
    } else if (fit == EXEC_WAIT && !x->queue) {
        const struct exec_res *u = &n->cap.used;
        snprintf(msg, cap,
                 "no room now: the node's running jobs hold %u.%03u of its %u.%03u cpus, %llu "
                 "of its %llu bytes of memory, %llu of %llu of scratch, %u of %u device slots "
                 "(--queue waits for room)",
                 u->millicpus / EXEC_MILLI, u->millicpus % EXEC_MILLI, t->millicpus / EXEC_MILLI,
                 t->millicpus % EXEC_MILLI, (unsigned long long)u->memory,
                 (unsigned long long)t->memory, (unsigned long long)u->scratch,
                 (unsigned long long)t->scratch, u->devices, t->devices);
        rc = -EAGAIN;
    }
    /* a queue is first in, first out: a job that fits now still waits behind queued ones */
    bool behind = n->queue && n->queue->n > 0;
    if (rc == 0 && (fit == EXEC_WAIT || behind) && !x->queue) {
        snprintf(msg, cap, "no room now: %u jobs wait for room before it (--queue waits too)",
                 n->queue->n);
        rc = -EAGAIN;
    }
    if (rc == 0 && (fit == EXEC_WAIT || behind)) {
        if (!n->queue && !(n->queue = calloc(1, sizeof *n->queue)))
            rc = -ENOMEM;
        else if (exec_queue_push(n->queue, n->exec_seq + 1, &x->res) < 0) {
            snprintf(msg, cap, "no room now, and %d jobs wait for room already", EXEC_QUEUE_MAX);
            rc = -ENOSPC;
        }
    }
    n->st.jobs++;
    if (rc < 0) {
        n->st.jobs_refused++;
        log_info("event=job_refused image=%s reason=\"%s\"", x->image, msg);
        node_exec_free(x);
        return rc;
    }
    x->seq = ++n->exec_seq;
    bool queued = fit == EXEC_WAIT || behind;
    exec_status_init(&x->st, n->id->id, x->seq, queued ? EXEC_QUEUED : EXEC_PREPARING,
                     exec_wall(n, n->now));
    x->next = n->execs;
    n->execs = x;
    if (queued) {
        n->st.jobs_queued++;
        log_info("event=job id=%s image=%s state=queued position=%d", x->st.id, x->image,
                 exec_queue_position(n->queue, x->seq));
        return 0;
    }
    exec_take(&n->cap, &x->res, &x->slots); /* it fits: exec_fit said so */
    exec_start(n, x);
    return 0;
}

void node_exec_running(struct node *n, struct node_exec *x, uint64_t now)
{
    n->now = now;
    if (exec_status_to(&x->st, EXEC_RUNNING, exec_wall(n, now)) == 0)
        log_info("event=job id=%s state=running", x->st.id);
    node_settle(n, now);
}

/* x's end state from what the runner said (its first report of an end). */
static void exec_end(struct node *n, struct node_exec *x, uint64_t now)
{
    uint64_t wall = exec_wall(n, now);
    if (x->st.state == EXEC_PREPARING) /* it never ran: killed while prepared, or failed */
        exec_status_to(&x->st, x->rc < 0 || !x->st.kill_asked ? EXEC_FAILED : EXEC_KILLED, wall);
    else
        exec_status_end(&x->st, x->rc, &x->result, wall);
    n->nexec_ended++;
    n->st.jobs_failed += x->st.state == EXEC_FAILED;
    n->st.jobs_oom += x->st.state == EXEC_OOM;
    n->st.jobs_killed += x->st.state == EXEC_KILLED;
    log_info("event=job id=%s state=%s status=%d cpu_ms=%llu mem_peak=%llu%s%s%s", x->st.id,
             exec_state_name(x->st.state), x->st.status,
             (unsigned long long)(x->st.usage.cpu_ns / 1000000),
             (unsigned long long)x->st.usage.mem_peak, x->rc < 0 ? " error=\"" : "",
             x->rc < 0 ? x->msg : "", x->rc < 0 ? "\"" : "");
    ctl_exec_ended(n, x);
}

void node_exec_exited(struct node *n, struct node_exec *x, uint64_t now)
{
    n->now = now;
    if (!exec_state_final(x->st.state)) {
        exec_end(n, x, now);
        node_settle(n, now);
    }
}

void node_exec_done(struct node *n, struct node_exec *x, uint64_t now)
{
    n->now = now;
    if (!exec_state_final(x->st.state))
        exec_end(n, x, now);
    n->nexec_live--;
    x->live = false;
    exec_give(&n->cap, &x->res, x->slots);
    ports_give(n, x);
    exec_queue_run(n);
    exec_trim(n);
    node_settle(n, now);
}

int exec_kill(struct node *n, struct node_exec *x, int sig)
{
    if (exec_state_final(x->st.state))
        return -EALREADY;
    n->st.jobs_killed += x->st.state == EXEC_QUEUED;
    if (x->st.state == EXEC_QUEUED) {
        exec_queue_remove(n->queue, x->seq);
        exec_end_unrun(n, x, EXEC_KILLED);
        exec_queue_run(n); /* the first may fit now */
        return 0;
    }
    x->st.kill_asked = true;
    fx_push(n, &(struct node_effect){.type = NODE_FX_EXEC_KILL, .exec = x, .sig = sig});
    return 0;
}

/* node_stop: queued jobs are cancelled, running ones killed; NODE_FX_STOPPED waits for them. */
void exec_stop(struct node *n)
{
    for (struct node_exec *x = n->execs; x; x = x->next)
        if (!exec_state_final(x->st.state))
            exec_kill(n, x, SIGKILL);
}
