/*
 * job.c - a job's states and their times (docs/exec.md, "States"): QUEUED -> PREPARING ->
 * RUNNING -> EXITED / KILLED / OOM / FAILED; a queued job may be cancelled (KILLED) or fail, a
 * preparing one may be killed or fail. Pure.
 */
#include "exec.h"

#include "../util/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const names[EXEC_STATES] = {"queued", "preparing", "running", "exited",
                                               "killed", "oom",       "failed"};

const char *exec_state_name(enum exec_state s)
{
    return (unsigned)s < EXEC_STATES ? names[s] : "unknown";
}

bool exec_state_final(enum exec_state s)
{
    return s >= EXEC_EXITED;
}

void exec_status_init(struct exec_status *j, const uint8_t node_id[4], uint64_t counter,
                      enum exec_state first, uint64_t now)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%02x%02x%02x%02x-%llu", node_id[0], node_id[1], node_id[2],
             node_id[3], (unsigned long long)counter);
    j->state = first == EXEC_QUEUED ? EXEC_QUEUED : EXEC_PREPARING;
    j->at[j->state] = now ? now : 1;
    j->status = -1;
}

int exec_status_to(struct exec_status *j, enum exec_state to, uint64_t now)
{
    bool ok;
    switch (j->state) {
    case EXEC_QUEUED:
        ok = to == EXEC_PREPARING || to == EXEC_KILLED || to == EXEC_FAILED;
        break;
    case EXEC_PREPARING:
        ok = to == EXEC_RUNNING || to == EXEC_KILLED || to == EXEC_FAILED;
        break;
    case EXEC_RUNNING:
        ok = exec_state_final(to);
        break;
    default:
        ok = false;
    }
    if (!ok || (unsigned)to >= EXEC_STATES)
        return -EINVAL;
    j->state = to;
    j->at[to] = now ? now : 1;
    return 0;
}

void exec_status_end(struct exec_status *j, int rc, const struct exec_result *r, uint64_t now)
{
    enum exec_state to = EXEC_EXITED;
    if (!r || (rc < 0 && r->status < 0))
        to = EXEC_FAILED;
    else if (r->oom)
        to = EXEC_OOM;
    else if (j->kill_asked && r->status > 128)
        to = EXEC_KILLED;
    if (r) {
        j->status = r->status;
        j->usage = r->usage;
    }
    exec_status_to(j, to, now);
}
