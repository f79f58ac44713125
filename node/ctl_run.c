/*
 * ctl_run.c - the control verbs of jobs (NODE_CTL_VERBS: run, jobs, kill, wait): a request is
 * checked word by word (it comes from a local client, as root may send anything) and becomes
 * a struct node_exec for run.c; a job is shown as JSON (`afsp jobs --json`).
 *
 * Owns: nothing (the records are run.c's). Must not: do I/O.
 */
#include "node_int.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* A string of at most max bytes with no NUL (jansson strings may hold one), copied. */
static char *str_dup(json_t *v, size_t max, bool *bad)
{
    if (!v)
        return NULL;
    const char *s = json_string_value(v);
    size_t len = s ? json_string_length(v) : 0;
    if (!s || len > max || strlen(s) != len) {
        *bad = true;
        return NULL;
    }
    char *d = strdup(s);
    *bad |= !d;
    return d;
}

/* An array of at most max strings as a NULL-terminated vector (an empty one if absent). */
static char **strv_dup(json_t *a, size_t max, size_t *total, bool *bad)
{
    size_t n = a ? json_array_size(a) : 0;
    if ((a && !json_is_array(a)) || n > max) {
        *bad = true;
        return NULL;
    }
    char **v = calloc(n + 1, sizeof *v);
    if (!v) {
        *bad = true;
        return NULL;
    }
    for (size_t i = 0; i < n && !*bad; i++) {
        v[i] = str_dup(json_array_get(a, i), 1u << 16, bad);
        *total += v[i] ? strlen(v[i]) : 0;
    }
    return v;
}

static bool uint_field(json_t *req, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(req, key);
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool name_ok(const char *s)
{
    if (!s)
        return true;
    size_t n = strlen(s);
    if (!n || n > NODE_EXEC_NAME_MAX || s[0] == '-' || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("_.-", s[i])))
            return false;
    return true;
}

/* The request's job, or NULL with why in msg. */
static struct node_exec *exec_parse(json_t *req, char *msg, size_t cap)
{
    struct node_exec *x = calloc(1, sizeof *x);
    bool bad = !x;
    if (bad) {
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    size_t words = 0;
    x->image = str_dup(json_object_get(req, "image"), 1024, &bad);
    x->platform = str_dup(json_object_get(req, "platform"), 100, &bad);
    x->name = str_dup(json_object_get(req, "name"), NODE_EXEC_NAME_MAX, &bad);
    x->workdir = str_dup(json_object_get(req, "workdir"), 4096, &bad);
    x->user = str_dup(json_object_get(req, "user"), 256, &bad);
    x->args = strv_dup(json_object_get(req, "args"), NODE_EXEC_ARGS_MAX, &words, &bad);
    x->env = strv_dup(json_object_get(req, "env"), NODE_EXEC_ARGS_MAX, &words, &bad);
    json_t *ins = json_object_get(req, "insecure");
    if (ins && (!json_is_array(ins) || json_array_size(ins) > NODE_TASK_INSECURE_MAX))
        bad = true;
    for (size_t i = 0; !bad && i < json_array_size(ins); i++)
        x->insecure[i] = str_dup(json_array_get(ins, i), 256, &bad);
    uint64_t cpus = 0, devices = 0;
    bad |= !uint_field(req, "cpus", (uint64_t)EXEC_CPUS_MAX * EXEC_MILLI, &cpus) ||
           !uint_field(req, "memory", UINT64_MAX >> 1, &x->res.memory) ||
           !uint_field(req, "scratch", UINT64_MAX >> 1, &x->res.scratch) ||
           !uint_field(req, "devices", EXEC_DEVICES_MAX, &devices);
    x->res.millicpus = (uint32_t)cpus;
    x->res.devices = (uint32_t)devices;
    const char *net = json_string_value(json_object_get(req, "net"));
    bad |= json_object_get(req, "net") && (!net || (strcmp(net, "none") && strcmp(net, "host")));
    x->net_host = net && !strcmp(net, "host");
    x->queue = json_is_true(json_object_get(req, "queue"));
    json_t *pub = json_object_get(req, "publish");
    bad |= (pub && !json_is_array(pub)) || json_array_size(pub) > NODE_EXEC_PORTS_MAX;
    for (size_t i = 0; !bad && i < json_array_size(pub); i++) {
        json_t *v = json_array_get(pub, i);
        bad |= !json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535;
        x->ports[x->nports++] = (uint16_t)json_integer_value(v);
    }
    json_t *vols = json_object_get(req, "volumes");
    size_t nv = json_array_size(vols);
    bad |= (vols && !json_is_array(vols)) || nv > NODE_EXEC_VOLUMES_MAX;
    if (!bad && nv && !(x->volumes = calloc(nv, sizeof *x->volumes)))
        bad = true;
    for (size_t i = 0; !bad && i < nv; i++) {
        json_t *v = json_array_get(vols, i);
        struct exec_volume *ev = &x->volumes[x->nvolumes++];
        ev->src = str_dup(json_object_get(v, "src"), 4096, &bad);
        ev->dst = str_dup(json_object_get(v, "dst"), 4096, &bad);
        ev->ro = json_is_true(json_object_get(v, "ro"));
        bad |= !ev->src || !ev->dst || ev->src[0] != '/' || ev->dst[0] != '/';
    }
    if (!bad && !x->image)
        snprintf(msg, cap, "bad run request: no image");
    else if (!bad && (!x->res.millicpus || !x->res.memory || !x->res.scratch))
        snprintf(msg, cap, "bad run request: cpus, memory and scratch must be more than 0");
    else if (!bad && x->res.memory < EXEC_MEMORY_MIN)
        snprintf(msg, cap, "a job needs %u MiB of memory at least (the runtime's start uses it)",
                 EXEC_MEMORY_MIN >> 20);
    else if (!bad && !name_ok(x->name))
        snprintf(msg, cap, "bad job name (letters, digits, '_', '.', '-'; at most %d)",
                 NODE_EXEC_NAME_MAX);
    else if (!bad && x->workdir && x->workdir[0] != '/')
        snprintf(msg, cap, "bad run request: the working directory must be absolute");
    else if (bad || words > NODE_CTL_MAX_REQUEST)
        snprintf(msg, cap, "bad run request");
    else
        return x;
    node_exec_free(x);
    return NULL;
}

void ctl_run(struct node *n, struct node_ctl *c, json_t *req)
{
    char msg[512];
    struct node_exec *x = exec_parse(req, msg, sizeof msg);
    if (!x) {
        ctl_answer(n, c, ctl_error("%s", msg));
        return;
    }
    int rc = exec_admit(n, x, msg, sizeof msg); /* x is freed if refused */
    if (rc < 0)
        ctl_answer(n, c,
                   rc == -EAGAIN || rc == -ENOSPC ? json_pack("{s:s, s:b}", "error", msg, "full", 1)
                                                  : ctl_error("%s", msg));
    else
        ctl_answer(n, c, json_pack("{s:b, s:o}", "ok", 1, "job", exec_json(n, x)));
}

/* The job the request names, or NULL after answering that there is none. */
static struct node_exec *job_of(struct node *n, struct node_ctl *c, json_t *req)
{
    const char *key = json_string_value(json_object_get(req, "job"));
    struct node_exec *x = key ? exec_find(n, key) : NULL;
    if (!x)
        ctl_answer(n, c, key ? ctl_error("no job %s here", key) : ctl_error("bad request"));
    return x;
}

void ctl_jobs(struct node *n, struct node_ctl *c, json_t *req)
{
    if (json_object_get(req, "job")) {
        struct node_exec *x = job_of(n, c, req);
        if (x)
            ctl_answer(n, c, json_pack("{s:b, s:o}", "ok", 1, "job", exec_json(n, x)));
        return;
    }
    json_t *a = json_array();
    for (struct node_exec *x = n->execs; x; x = x->next)
        json_array_append_new(a, exec_json(n, x));
    ctl_answer(n, c, json_pack("{s:b, s:o}", "ok", 1, "jobs", a));
}

void ctl_kill(struct node *n, struct node_ctl *c, json_t *req)
{
    json_t *sv = json_object_get(req, "signal");
    json_int_t sig = sv ? json_integer_value(sv) : SIGKILL;
    if (sv && (!json_is_integer(sv) || sig < 1 || sig > 64)) {
        ctl_answer(n, c, ctl_error("bad signal"));
        return;
    }
    struct node_exec *x = job_of(n, c, req);
    if (!x)
        return;
    if (exec_kill(n, x, (int)sig) < 0)
        ctl_answer(n, c, ctl_error("job %s has ended already", x->st.id));
    else
        ctl_answer(n, c, json_pack("{s:b, s:o}", "ok", 1, "job", exec_json(n, x)));
}

void ctl_wait(struct node *n, struct node_ctl *c, json_t *req)
{
    struct node_exec *x = job_of(n, c, req);
    if (!x)
        return;
    if (exec_state_final(x->st.state)) {
        ctl_answer(n, c, json_pack("{s:b, s:o}", "ok", 1, "job", exec_json(n, x)));
        return;
    }
    struct ctl_pending *p = ctl_pending_new(n, c);
    if (!p)
        ctl_answer(n, c, ctl_error("out of memory"));
    else
        p->wait = x;
}

void ctl_exec_ended(struct node *n, struct node_exec *x)
{
    for (struct ctl_pending *p = n->pending, *next; p; p = next) {
        next = p->next;
        if (p->wait == x)
            ctl_answer(n, p->c, json_pack("{s:b, s:o}", "ok", 1, "job", exec_json(n, x)));
    }
}

static json_t *res_json(const struct exec_res *r)
{
    return json_pack("{s:f, s:I, s:I, s:I}", "cpus", r->millicpus / (double)EXEC_MILLI, "memory",
                     (json_int_t)r->memory, "scratch", (json_int_t)r->scratch, "devices",
                     (json_int_t)r->devices);
}

json_t *exec_json(const struct node *n, const struct node_exec *x)
{
    const struct exec_status *s = &x->st;
    json_t *j = json_pack("{s:s, s:s, s:s, s:o}", "id", s->id, "image", x->image, "state",
                          exec_state_name(s->state), "limits", res_json(&x->res));
    if (x->name)
        json_object_set_new(j, "name", json_string(x->name));
    json_t *at = json_object();
    for (int i = 0; i < EXEC_STATES; i++)
        if (s->at[i])
            json_object_set_new(at, exec_state_name((enum exec_state)i),
                                json_integer((json_int_t)s->at[i]));
    json_object_set_new(j, "at", at);
    if (x->res.devices) {
        json_t *d = json_array();
        for (int i = 0; i < EXEC_DEVICES_MAX; i++)
            if (x->slots >> i & 1)
                json_array_append_new(d, json_integer(i));
        json_object_set_new(j, "device_slots", d);
    }
    if (x->nports) {
        json_t *p = json_array();
        for (unsigned i = 0; i < x->nports; i++)
            json_array_append_new(
                p, json_pack("{s:i, s:i}", "job", x->ports[i], "host", x->host_ports[i]));
        json_object_set_new(j, "ports", p);
    }
    if (s->state == EXEC_QUEUED && n->queue)
        json_object_set_new(j, "queue_position",
                            json_integer(exec_queue_position(n->queue, x->seq)));
    if (exec_state_final(s->state)) {
        json_object_set_new(j, "status", json_integer(s->status));
        json_object_set_new(j, "cpu_s", json_real((double)s->usage.cpu_ns / 1e9));
        json_object_set_new(j, "memory_peak", json_integer((json_int_t)s->usage.mem_peak));
        json_object_set_new(j, "oom_kills", json_integer((json_int_t)s->usage.oom_kills));
        if (s->state == EXEC_FAILED && x->msg[0])
            json_object_set_new(j, "error", json_string(x->msg));
    }
    return j;
}

json_t *exec_stats_json(const struct node *n)
{
    struct exec_res none = {0};
    const struct exec_res *t = n->cap_none ? &none : &n->cap.total,
                          *u = n->cap_none ? &none : &n->cap.used;
    struct exec_res f = {t->millicpus - u->millicpus, t->memory - u->memory,
                         t->scratch - u->scratch, t->devices - u->devices};
    size_t running = 0, preparing = 0;
    for (const struct node_exec *x = n->execs; x; x = x->next) {
        running += x->st.state == EXEC_RUNNING;
        preparing += x->st.state == EXEC_PREPARING;
    }
    return json_pack("{s:o, s:o, s:o, s:I, s:I, s:I, s:I}", "capacity", res_json(t), "used",
                     res_json(u), "free", res_json(&f), "running", (json_int_t)running, "preparing",
                     (json_int_t)preparing, "queued", (json_int_t)(n->queue ? n->queue->n : 0),
                     "kept", (json_int_t)n->nexec_ended);
}
