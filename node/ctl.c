/*
 * ctl.c - the control verbs (NODE_CTL_VERBS, node.h), the node's side: a request line is parsed
 * (jansson), checked, and answered through NODE_FX_ANSWER - at once, when a provider lookup
 * ends, or when a pull's or fetch's task is done. A client that goes away gets no answer; what it
 * started goes on. Tasks are handed out with NODE_FX_TASK; their end (node_task_done) is
 * counted, logged, answered and announced here.
 *
 * Owns: the requests waiting for an answer, the tasks running. Must not: do I/O, block.
 */
#include "node_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const verb_names[] = {
#define X(id, name, req, ans) name,
    NODE_CTL_VERBS(X)
#undef X
};

const char *node_ctl_verb_name(enum node_ctl_verb v)
{
    return (unsigned)v < NODE_CTL_NVERBS ? verb_names[v] : NULL;
}

static struct ctl_pending **pending_find(struct node *n, struct node_ctl *c)
{
    for (struct ctl_pending **pp = &n->pending; *pp; pp = &(*pp)->next)
        if ((*pp)->c == c)
            return pp;
    return NULL;
}

static void pending_drop(struct node *n, struct node_ctl *c)
{
    struct ctl_pending **pp = pending_find(n, c);
    if (pp) {
        struct ctl_pending *p = *pp;
        *pp = p->next;
        free(p);
    }
}

/* Queues the answer (consumed) to c. */
void ctl_answer(struct node *n, struct node_ctl *c, json_t *ans)
{
    TRACE("ctl_answer %p", (void *)c);
    char *text = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
    json_decref(ans);
    size_t len = text ? strlen(text) : 0;
    char *line = text ? realloc(text, len + 2) : NULL;
    if (!line) {
        free(text);
        line = strdup("{\"error\":\"out of memory\"}\n");
        len = line ? strlen(line) - 1 : 0;
    } else {
        line[len] = '\n';
        line[len + 1] = 0;
    }
    pending_drop(n, c);
    if (line && fx_push(n, &(struct node_effect){
                               .type = NODE_FX_ANSWER, .ctl = c, .text = line, .len = len + 1}) < 0)
        free(line);
}

json_t *ctl_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return json_pack("{s:s}", "error", msg);
}

/* An error that asking again later may mend: the node is stopping, or runs too much. */
static json_t *busy_answer(const char *msg)
{
    return json_pack("{s:s, s:b}", "error", msg, "busy", 1);
}

struct ctl_pending *ctl_pending_new(struct node *n, struct node_ctl *c)
{
    struct ctl_pending *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->c = c;
    p->n = n;
    p->next = n->pending;
    n->pending = p;
    return p;
}

void ctl_cancel_all(struct node *n, bool answer)
{
    while (n->pending) {
        struct ctl_pending *p = n->pending;
        n->pending = p->next;
        if (p->lookup)
            dht_lookup_cancel(p->lookup);
        if (p->task)
            p->task->ctl = NULL; /* its end is not told: it was answered here */
        if (answer)
            ctl_answer(n, p->c, busy_answer("the node is stopping"));
        free(p);
    }
}

void node_ctl_gone(struct node *n, struct node_ctl *c)
{
    struct ctl_pending **pp = pending_find(n, c);
    if (!pp)
        return;
    struct ctl_pending *p = *pp;
    if (p->lookup)
        dht_lookup_cancel(p->lookup);
    if (p->task)
        p->task->ctl = NULL; /* its pull goes on; no one hears the end */
    *pp = p->next;
    free(p);
}

/* ---- providers --------------------------------------------------------------------------------
 */

static void on_providers(void *arg, int rc, const struct dht_result *r)
{
    struct ctl_pending *p = arg;
    struct node *n = p->n;
    p->lookup = NULL;
    if (rc < 0) {
        ctl_answer(n, p->c, ctl_error("the lookup failed: %s", err_str(rc)));
        return;
    }
    json_t *a = json_array();
    char id[2 * P2P_ID_LEN + 1], addr[64];
    for (size_t i = 0; i < r->nproviders; i++)
        json_array_append_new(a, json_pack("{s:s, s:s}", "id",
                                           hex_fmt(r->providers[i].id, P2P_ID_LEN, id), "address",
                                           dht_addr_fmt(&r->providers[i].addr, addr, sizeof addr)));
    json_t *lk =
        json_pack("{s:I, s:I, s:I, s:I}", "ms", (json_int_t)r->ms, "hops", (json_int_t)r->hops,
                  "messages", (json_int_t)r->messages, "closest", (json_int_t)r->nclosest);
    ctl_answer(n, p->c, json_pack("{s:b, s:o, s:o}", "ok", 1, "providers", a, "lookup", lk));
}

static void verb_providers(struct node *n, struct node_ctl *c, json_t *req, uint64_t now)
{
    uint8_t d[DIGEST_LEN];
    const char *text = json_string_value(json_object_get(req, "digest"));
    if (!text || digest_parse(text, d) < 0) {
        ctl_answer(n, c, ctl_error("bad digest"));
        return;
    }
    struct ctl_pending *p = ctl_pending_new(n, c);
    if (!p) {
        ctl_answer(n, c, ctl_error("out of memory"));
        return;
    }
    n->st.provider_lookups++;
    int rc = dht_find_providers(n->dht, d, 0, on_providers, p, now, &p->lookup);
    if (rc < 0) {
        p->lookup = NULL;
        ctl_answer(n, c,
                   ctl_error("cannot look up: %s", rc == -EHOSTUNREACH
                                                       ? "no node of the cluster is known yet"
                                                       : err_str(rc)));
    }
}

/* ---- pull, fetch: tasks ------------------------------------------------------------------------
 */

void node_task_free(struct node_task *t)
{
    for (size_t i = 0; t->insecure[i]; i++)
        free(t->insecure[i]);
    free(t->platform);
    free(t->ref);
    free(t);
}

/* {"cmd":"pull", "ref":R, ["platform":P], ["insecure":[H...]], ["lazy":true]},
 * {"cmd":"fetch", "layer":D, "first":I, "last":J, ["ref":R], ["insecure":[H...]]} and
 * {"cmd":"trace", "ref":R@DIGEST}. */
static void verb_task(struct node *n, struct node_ctl *c, json_t *req, enum node_task_kind kind)
{
    bool fetch = kind == NODE_TASK_FETCH;
    const char *ref = json_string_value(json_object_get(req, "ref"));
    const char *platform = json_string_value(json_object_get(req, "platform"));
    const char *layer = json_string_value(json_object_get(req, "layer"));
    json_t *ins = json_object_get(req, "insecure");
    json_t *first = json_object_get(req, "first"), *last = json_object_get(req, "last");
    if (n->ntasks >= NODE_TASKS_MAX) {
        ctl_answer(n, c, busy_answer("busy: too many requests are running"));
        return;
    }
    struct node_task *t = calloc(1, sizeof *t);
    bool bad = !fetch && !ref;
    bad |= kind == NODE_TASK_TRACE && !strchr(ref ? ref : "", '@');
    bad |= ins && (!json_is_array(ins) || json_array_size(ins) > NODE_TASK_INSECURE_MAX);
    bad |= fetch && (!layer || !t || digest_parse(layer, t->layer) < 0 || !json_is_integer(first) ||
                     !json_is_integer(last) || json_integer_value(first) < 0 ||
                     json_integer_value(last) < json_integer_value(first) ||
                     json_integer_value(last) > UINT32_MAX);
    if (!t || bad) {
        free(t);
        ctl_answer(n, c,
                   t ? ctl_error("bad %s request",
                                 node_ctl_verb_name(kind == NODE_TASK_TRACE ? NODE_CTL_TRACE
                                                    : fetch                 ? NODE_CTL_FETCH
                                                                            : NODE_CTL_PULL))
                     : ctl_error("out of memory"));
        return;
    }
    t->kind = kind;
    t->lazy = json_is_true(json_object_get(req, "lazy"));
    t->first = (uint32_t)json_integer_value(first);
    t->last = (uint32_t)json_integer_value(last);
    bool nomem =
        (ref && !(t->ref = strdup(ref))) || (platform && !(t->platform = strdup(platform)));
    size_t i, ni = 0;
    json_t *v;
    json_array_foreach(ins, i, v)
    {
        const char *h = json_string_value(v);
        if (h && !(t->insecure[ni++] = strdup(h)))
            nomem = true;
    }
    struct ctl_pending *p = nomem ? NULL : ctl_pending_new(n, c);
    if (!p) {
        node_task_free(t);
        ctl_answer(n, c, ctl_error("out of memory"));
        return;
    }
    if (fetch)
        n->st.fetches++;
    else if (kind == NODE_TASK_PULL)
        n->st.pulls++;
    p->task = t;
    t->ctl = c;
    t->next = n->tasks;
    n->tasks = t;
    n->ntasks++;
    fx_push(n, &(struct node_effect){.type = NODE_FX_TASK, .task = t});
}

/* A fetch's chunks are written and checked: its client reads them now (it checks them itself),
 * while the task syncs and marks them; node_task_done tells no one after this. */
void node_task_written(struct node *n, struct node_task *t, uint64_t now)
{
    n->now = now;
    if (t->kind != NODE_TASK_FETCH || !t->ctl)
        return;
    ctl_answer(n, t->ctl, json_pack("{s:b}", "ok", 1));
    t->ctl = NULL;
}

void node_task_done(struct node *n, struct node_task *t, uint64_t now)
{
    char dg[DIGEST_STR_LEN + 1];
    n->now = now;
    for (struct node_task **pp = &n->tasks; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            n->ntasks--;
            break;
        }
    n->st.bytes_registry += t->registry_bytes;
    if (t->kind == NODE_TASK_VERIFY) {
        verify_done(n, t);
    } else if (t->kind == NODE_TASK_FETCH) {
        n->st.fetches_failed += t->rc < 0;
        n->st.registry_fetches += t->via_registry;
        if (t->rc < 0)
            log_warn("event=fetch layer=%s chunks=%u-%u result=\"%s\"", digest_fmt(t->layer, dg),
                     t->first, t->last, t->msg);
        else
            log_debug("event=fetch layer=%s chunks=%u-%u from=%s", digest_fmt(t->layer, dg),
                      t->first, t->last, t->via_registry ? "registry" : "peers");
    } else if (t->kind == NODE_TASK_TRACE) {
        n->st.traces_fetched += t->rc == 0 && t->fetched;
        n->st.traces_refused += t->refused;
    } else {
        n->st.pulls_failed += t->rc < 0;
        log_info("event=pull ref=%s lazy=%d result=\"%s\"", t->ref, t->lazy,
                 t->rc < 0 ? t->msg : "ok");
    }
    if (t->ctl)
        ctl_answer(n, t->ctl,
                   t->rc < 0 ? ctl_error("%s", t->msg)
                   : t->kind == NODE_TASK_PULL
                       ? json_pack("{s:b, s:s}", "ok", 1, "digest", digest_fmt(t->digest, dg))
                   : t->kind == NODE_TASK_TRACE
                       ? json_pack("{s:b, s:b}", "ok", 1, "found", t->found)
                       : json_pack("{s:b}", "ok", 1));
    /* A fetch (a mount's read) that completed its layer announces just that layer; a pull may
     * have completed several, and evicted others: the store is compared. */
    if (t->kind == NODE_TASK_FETCH && t->completed)
        announce_layer(n, t->layer, now);
    else if (t->kind != NODE_TASK_FETCH && t->rc == 0)
        announce_reconcile(n, now);
    if ((t->kind == NODE_TASK_FETCH || (t->kind == NODE_TASK_PULL && !t->lazy)) && t->rc == 0)
        verify_after_fetch(n, t);
    node_task_free(t);
    verify_next(n);
    node_settle(n, now);
}

/* ---- the dispatcher ----------------------------------------------------------------------------
 */

void node_ctl_request(struct node *n, struct node_ctl *c, const char *line, size_t len,
                      uint64_t now)
{
    n->now = now;
    json_t *req =
        len <= NODE_CTL_MAX_REQUEST ? json_loadb(line, len, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    TRACE("ctl %p %s", (void *)c, cmd ? cmd : "?");
    int v = 0;
    while (cmd && v < NODE_CTL_NVERBS && strcmp(cmd, verb_names[v]))
        v++;
    if (!cmd)
        ctl_answer(n, c, ctl_error("bad request"));
    else if (n->stopping)
        ctl_answer(n, c, busy_answer("the node is stopping"));
    else if (v == NODE_CTL_NVERBS)
        ctl_answer(n, c, ctl_error("unknown command %s", cmd));
    else
        switch ((enum node_ctl_verb)v) {
        case NODE_CTL_PEERS:
            ctl_answer(n, c,
                       json_pack("{s:b, s:o}", "ok", 1, "peers", counters_peers_json(n, now)));
            break;
        case NODE_CTL_STATS:
            ctl_answer(n, c,
                       json_pack("{s:b, s:o}", "ok", 1, "stats", counters_stats_json(n, now)));
            break;
        case NODE_CTL_RECONCILE: /* the store changed under the node: afsp prune */
            announce_reconcile(n, now);
            ctl_answer(n, c, json_pack("{s:b}", "ok", 1));
            break;
        case NODE_CTL_PROVIDERS:
            verb_providers(n, c, req, now);
            break;
        case NODE_CTL_PULL:
            verb_task(n, c, req, NODE_TASK_PULL);
            break;
        case NODE_CTL_FETCH:
            verb_task(n, c, req, NODE_TASK_FETCH);
            break;
        case NODE_CTL_TRACE:
            verb_task(n, c, req, NODE_TASK_TRACE);
            break;
        case NODE_CTL_RUN:
            ctl_run(n, c, req);
            break;
        case NODE_CTL_JOBS:
            ctl_jobs(n, c, req);
            break;
        case NODE_CTL_KILL:
            ctl_kill(n, c, req);
            break;
        case NODE_CTL_WAIT:
            ctl_wait(n, c, req);
            break;
        case NODE_CTL_NVERBS:
            break;
        }
    json_decref(req);
    node_settle(n, now);
}
