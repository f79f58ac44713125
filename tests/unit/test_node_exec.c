/*
 * test_node_exec.c - the node's jobs in the core (node/run.c, node/ctl_run.c): one core on a
 * clock of its own, control lines in, effects out, the runner played by the test. Admission at
 * once, refused (no room; more than the node offers; no capacity at all), or queued first in,
 * first out; device slots; names; kill of a queued and of a running job; the end states from
 * the runner's report; wait answered at the end; the records of the newest NODE_EXEC_KEPT ended
 * jobs kept and the older handed back; a stop that kills running jobs and waits for them.
 */
#include "../../node/node.h"
#include "../../sim/sim.h"
#include "test.h"

#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define SLOTS 64

struct xw {
    struct node *n;
    struct memstore *ms;
    struct p2p_identity id;
    uint64_t now, rng;
    int ctl[SLOTS];   /* a control client per request */
    char *ans[SLOTS]; /* its answer, once given */
    struct node_exec *live[512];
    size_t nlive;
    unsigned freed, kills, last_sig;
    bool stopped;
};

static void fx(struct xw *w)
{
    struct node_effect e;
    while (node_effect_next(w->n, &e)) {
        switch (e.type) {
        case NODE_FX_ANSWER:
            w->ans[(int *)e.ctl - w->ctl] = e.text;
            break;
        case NODE_FX_EXEC:
            w->live[w->nlive++] = e.exec;
            break;
        case NODE_FX_EXEC_KILL:
            w->kills++;
            w->last_sig = (unsigned)e.sig;
            break;
        case NODE_FX_EXEC_FREE:
            w->freed++;
            node_exec_free(e.exec);
            break;
        case NODE_FX_STOPPED:
            w->stopped = true;
            break;
        default:
            break;
        }
    }
}

static uint16_t publish_lo, publish_hi; /* the next xw_init's publish range */

static void xw_init(struct xw *w, uint32_t millicpus, uint64_t memory, uint32_t devices)
{
    memset(w, 0, sizeof *w);
    uint8_t seed[32];
    memset(seed, 5, sizeof seed);
    CHECK(p2p_identity_from_seed(&w->id, seed) == 0);
    CHECK(memstore_new(&w->ms) == 0);
    static const uint8_t key[P2P_KEY_LEN];
    w->now = 1000;
    w->rng = 3;
    struct node_cfg cfg = {.id = &w->id,
                           .cluster_key = key,
                           .rng = rng_fill,
                           .rng_arg = &w->rng,
                           .now = w->now,
                           .wall_ms = 1700000000000ull,
                           .store = &memstore_ops,
                           .store_arg = w->ms,
                           .capacity = {millicpus, memory, memory, devices},
                           .publish_lo = publish_lo,
                           .publish_hi = publish_hi};
    CHECK(node_new(&w->n, &cfg) == 0);
    fx(w);
}

static void xw_free(struct xw *w)
{
    node_free(w->n);
    memstore_free(w->ms);
    for (int i = 0; i < SLOTS; i++)
        free(w->ans[i]);
}

/* Sends a request on client slot i; returns its answer if given at once (else NULL). */
static json_t *xask(struct xw *w, int i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static json_t *xask(struct xw *w, int i, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    free(w->ans[i]);
    w->ans[i] = NULL;
    node_ctl_request(w->n, (struct node_ctl *)&w->ctl[i], line, strlen(line), w->now);
    fx(w);
    return w->ans[i] ? json_loads(w->ans[i], 0, NULL) : NULL;
}

/* The job in answer a, and its field k. */
static const char *jstr(json_t *a, const char *k)
{
    return json_string_value(json_object_get(json_object_get(a, "job"), k));
}

static const char *err(json_t *a)
{
    return json_string_value(json_object_get(a, "error"));
}

#define RUN(cpus, extra)                                                                           \
    "{\"cmd\":\"run\",\"image\":\"img\",\"args\":[\"a\"],\"cpus\":" #cpus                          \
    ",\"memory\":8388608,\"scratch\":1048576" extra "}"

/* The runner's report: x ran and ended with status (oom: counted by the kernel). */
static void finish(struct xw *w, struct node_exec *x, int status, bool oom)
{
    if (x->st.state == EXEC_PREPARING)
        node_exec_running(w->n, x, w->now);
    x->result.status = status;
    x->result.oom = oom;
    x->result.usage.cpu_ns = 1500000000;
    node_exec_done(w->n, x, w->now);
    fx(w);
}

static struct node_exec *live_take(struct xw *w, size_t i)
{
    struct node_exec *x = w->live[i];
    memmove(&w->live[i], &w->live[i + 1], (w->nlive - i - 1) * sizeof *w->live);
    w->nlive--;
    return x;
}

TEST(node_exec_admits_queues_first_in_first_out_and_refuses)
{
    struct xw w;
    xw_init(&w, 2000, 1u << 30, 2);
    json_t *a = xask(&w, 0, RUN(1500, ",\"name\":\"big\""));
    CHECK_STR(jstr(a, "state"), "preparing");
    CHECK_INT(w.nlive, ==, 1);
    char id0[EXEC_ID_LEN];
    snprintf(id0, sizeof id0, "%s", jstr(a, "id"));
    /* NODEID8-COUNTER, the counter from the node's start in µs (wall_ms 1700000000000) */
    CHECK(strchr(id0, '-') == id0 + 8 && !strcmp(id0 + 8, "-1700000000000001"));
    json_decref(a);

    a = xask(&w, 1, RUN(1000, ""));
    CHECK(strstr(err(a), "no room now") != NULL);
    CHECK(json_is_true(json_object_get(a, "full")));
    json_decref(a);
    a = xask(&w, 1, RUN(8000, ",\"queue\":true"));
    CHECK(strstr(err(a), "more than this node offers") != NULL);
    CHECK(!json_object_get(a, "full"));
    json_decref(a);
    a = xask(&w, 1, RUN(500, ",\"name\":\"big\""));
    CHECK(strstr(err(a), "named big") != NULL);
    json_decref(a);

    /* queued: one that does not fit now, then one that would, behind it */
    a = xask(&w, 2, RUN(1000, ",\"queue\":true,\"name\":\"q1\""));
    CHECK_STR(jstr(a, "state"), "queued");
    CHECK_INT(json_integer_value(json_object_get(json_object_get(a, "job"), "queue_position")), ==,
              0);
    json_decref(a);
    a = xask(&w, 3, RUN(250, ",\"queue\":true,\"name\":\"q2\""));
    CHECK_STR(jstr(a, "state"), "queued");
    json_decref(a);
    a = xask(&w, 4, RUN(250, ""));
    CHECK(strstr(err(a), "wait for room before it") != NULL);
    json_decref(a);
    CHECK_INT(w.nlive, ==, 1);

    /* wait for the first; it runs and ends: the two queued start, in order */
    CHECK(xask(&w, 5, "{\"cmd\":\"wait\",\"job\":\"big\"}") == NULL);
    struct node_exec *big = live_take(&w, 0);
    node_exec_running(w.n, big, w.now);
    fx(&w);
    a = xask(&w, 6, "{\"cmd\":\"jobs\",\"job\":\"%s\"}", id0);
    CHECK_STR(jstr(a, "state"), "running");
    json_decref(a);
    w.now += 5000;
    finish(&w, big, 0, false);
    CHECK(w.ans[5] != NULL);
    a = json_loads(w.ans[5], 0, NULL);
    CHECK_STR(jstr(a, "state"), "exited");
    CHECK_INT(json_integer_value(json_object_get(json_object_get(a, "job"), "status")), ==, 0);
    json_t *at = json_object_get(json_object_get(a, "job"), "at");
    CHECK_INT(json_integer_value(json_object_get(at, "exited")) -
                  json_integer_value(json_object_get(at, "preparing")),
              ==, 5000);
    json_decref(a);
    CHECK_INT(w.nlive, ==, 2);
    CHECK(!strcmp(w.live[0]->name, "q1") && !strcmp(w.live[1]->name, "q2"));

    CHECK_INT(node_counters_get(w.n)->jobs, ==, 7);
    CHECK_INT(node_counters_get(w.n)->jobs_refused, ==, 4);
    CHECK_INT(node_counters_get(w.n)->jobs_queued, ==, 2);
    a = xask(&w, 7, "{\"cmd\":\"stats\"}");
    json_t *js = json_object_get(json_object_get(a, "stats"), "jobs");
    CHECK(json_real_value(json_object_get(json_object_get(js, "used"), "cpus")) == 1.25);
    CHECK(json_real_value(json_object_get(json_object_get(js, "free"), "cpus")) == 0.75);
    CHECK_INT(json_integer_value(json_object_get(js, "preparing")), ==, 2);
    json_decref(a);
    finish(&w, live_take(&w, 0), 0, false);
    finish(&w, live_take(&w, 0), 0, false);
    xw_free(&w);
}

TEST(node_exec_kills_ends_and_slots)
{
    struct xw w;
    xw_init(&w, 1000, 1u << 30, 2);
    json_t *a = xask(&w, 0, RUN(500, ",\"devices\":1"));
    json_t *slots = json_object_get(json_object_get(a, "job"), "device_slots");
    CHECK_INT(json_integer_value(json_array_get(slots, 0)), ==, 0);
    json_decref(a);
    a = xask(&w, 1, RUN(500, ",\"devices\":1,\"name\":\"two\""));
    slots = json_object_get(json_object_get(a, "job"), "device_slots");
    CHECK_INT(json_integer_value(json_array_get(slots, 0)), ==, 1);
    CHECK_INT(w.live[1]->slots, ==, 2);
    json_decref(a);
    /* a queued job cancelled: it never reaches the runner */
    a = xask(&w, 2, RUN(500, ",\"queue\":true,\"name\":\"q\""));
    json_decref(a);
    a = xask(&w, 3, "{\"cmd\":\"kill\",\"job\":\"q\"}");
    CHECK_STR(jstr(a, "state"), "killed");
    json_decref(a);
    CHECK_INT(w.kills, ==, 0);
    /* a running job killed: the signal goes to the runner; its end is KILLED */
    a = xask(&w, 3, "{\"cmd\":\"kill\",\"job\":\"two\",\"signal\":15}");
    CHECK(json_is_true(json_object_get(a, "ok")));
    json_decref(a);
    CHECK_INT(w.kills, ==, 1);
    CHECK_INT(w.last_sig, ==, SIGTERM);
    finish(&w, live_take(&w, 1), 128 + SIGTERM, false);
    a = xask(&w, 3, "{\"cmd\":\"jobs\",\"job\":\"two\"}");
    CHECK_STR(jstr(a, "state"), "killed");
    json_decref(a);
    a = xask(&w, 3, "{\"cmd\":\"kill\",\"job\":\"two\"}");
    CHECK(strstr(err(a), "ended already") != NULL);
    json_decref(a);
    /* the name is free again once its job ended; its slot went back */
    a = xask(&w, 4, RUN(500, ",\"devices\":1,\"name\":\"two\""));
    CHECK_INT(json_integer_value(
                  json_array_get(json_object_get(json_object_get(a, "job"), "device_slots"), 0)),
              ==, 1);
    json_decref(a);
    /* OOM from the kernel's count; 137 without it is not OOM; a failure before it ran */
    finish(&w, live_take(&w, 0), 137, true);
    struct node_exec *x = live_take(&w, 0);
    x->rc = AFSP_E_NOTFOUND;
    snprintf(x->msg, sizeof x->msg, "cannot pull img");
    node_exec_done(w.n, x, w.now);
    fx(&w);
    a = xask(&w, 5, "{\"cmd\":\"jobs\"}");
    json_t *jobs = json_object_get(a, "jobs");
    CHECK_INT(json_array_size(jobs), ==, 4);
    CHECK_STR(json_string_value(json_object_get(json_array_get(jobs, 0), "state")), "failed");
    CHECK_STR(json_string_value(json_object_get(json_array_get(jobs, 0), "error")),
              "cannot pull img");
    CHECK_STR(json_string_value(json_object_get(json_array_get(jobs, 3), "state")), "oom");
    json_decref(a);
    CHECK_INT(node_counters_get(w.n)->jobs_oom, ==, 1);
    CHECK_INT(node_counters_get(w.n)->jobs_failed, ==, 1);
    CHECK_INT(node_counters_get(w.n)->jobs_killed, ==, 2);
    a = xask(&w, 6, "{\"cmd\":\"wait\",\"job\":\"nope\"}");
    CHECK_STR(err(a), "no job nope here");
    json_decref(a);
    xw_free(&w);
}

TEST(node_exec_bad_requests_and_no_capacity)
{
    struct xw w;
    xw_init(&w, 1000, 1u << 30, 0);
    const char *bad[] = {
        "{\"cmd\":\"run\",\"args\":[],\"cpus\":1,\"memory\":1,\"scratch\":1}",
        RUN(0, ""),
        RUN(1, ",\"name\":\"-x\""),
        RUN(1, ",\"name\":\"a/b\""),
        RUN(1, ",\"workdir\":\"rel\""),
        RUN(1, ",\"net\":\"bridge\""),
        RUN(1, ",\"volumes\":[{\"src\":\"rel\",\"dst\":\"/x\"}]"),
        RUN(1, ",\"args\":\"notalist\""),
        RUN(1, ",\"env\":[1]"),
        RUN(-5, ""),
        RUN(1, ",\"devices\":65"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *a = xask(&w, 0, "%s", bad[i]);
        CHECK(err(a) != NULL);
        json_decref(a);
    }
    CHECK_INT(w.nlive, ==, 0);
    json_t *small = xask(&w, 0,
                         "{\"cmd\":\"run\",\"image\":\"r/i\",\"args\":[],\"cpus\":1000,"
                         "\"memory\":6291455,\"scratch\":1}");
    CHECK_STR(err(small), "a job needs 6 MiB of memory at least (the runtime's start uses it)");
    json_decref(small);
    xw_free(&w);

    xw_init(&w, 0, 0, 0);
    json_t *a = xask(&w, 0, RUN(1, ""));
    CHECK_STR(err(a), "this node runs no jobs (it offers no cpu or no memory)");
    json_decref(a);
    xw_free(&w);
}

TEST(node_exec_keeps_the_newest_ended_and_hands_back_the_rest)
{
    struct xw w;
    xw_init(&w, 1000, 1u << 30, 0);
    for (int i = 0; i < NODE_EXEC_KEPT + 40; i++) {
        json_t *a = xask(&w, 0, RUN(1000, ""));
        CHECK_STR(jstr(a, "state"), "preparing");
        json_decref(a);
        finish(&w, live_take(&w, 0), i & 1, false);
    }
    CHECK_INT(w.freed, ==, 40);
    json_t *a = xask(&w, 0, "{\"cmd\":\"jobs\"}");
    CHECK_INT(json_array_size(json_object_get(a, "jobs")), ==, NODE_EXEC_KEPT);
    char last[EXEC_ID_LEN];
    snprintf(
        last, sizeof last, "%s",
        json_string_value(json_object_get(json_array_get(json_object_get(a, "jobs"), 0), "id")));
    CHECK(!strcmp(strchr(last, '-'), "-1700000000000296"));
    json_decref(a);
    xw_free(&w);
}

TEST(node_exec_stop_kills_running_jobs_and_waits_for_them)
{
    struct xw w;
    xw_init(&w, 1000, 1u << 30, 0);
    json_decref(xask(&w, 0, RUN(1000, "")));
    json_decref(xask(&w, 1, RUN(1000, ",\"queue\":true,\"name\":\"q\"")));
    CHECK(xask(&w, 2, "{\"cmd\":\"wait\",\"job\":\"q\"}") == NULL);
    node_exec_running(w.n, w.live[0], w.now);
    node_stop(w.n, w.now);
    fx(&w);
    CHECK_INT(w.kills, ==, 1);
    CHECK_INT(w.last_sig, ==, SIGKILL);
    CHECK(w.ans[2] != NULL); /* the waiting client is answered */
    CHECK(!w.stopped);       /* the running job holds the stop */
    finish(&w, live_take(&w, 0), 137, false);
    CHECK(w.stopped);
    CHECK_INT(w.nlive, ==, 0);
    xw_free(&w);
}

TEST(node_exec_publishes_ports_from_the_range_and_gives_them_back)
{
    struct xw w;
    publish_lo = 40000, publish_hi = 40002;
    xw_init(&w, 4000, 1u << 30, 0);
    publish_lo = publish_hi = 0;
    json_t *a = xask(&w, 0, RUN(1000, ",\"publish\":[80,443]"));
    json_t *ports = json_object_get(json_object_get(a, "job"), "ports");
    CHECK_INT(json_integer_value(json_object_get(json_array_get(ports, 0), "job")), ==, 80);
    CHECK_INT(json_integer_value(json_object_get(json_array_get(ports, 0), "host")), ==, 40000);
    CHECK_INT(json_integer_value(json_object_get(json_array_get(ports, 1), "host")), ==, 40001);
    CHECK_INT(w.live[0]->host_ports[1], ==, 40001);
    json_decref(a);
    /* the one port left, then none: that job fails without running */
    a = xask(&w, 1, RUN(1000, ",\"publish\":[80]"));
    CHECK_INT(w.live[1]->host_ports[0], ==, 40002);
    json_decref(a);
    a = xask(&w, 2, RUN(1000, ",\"publish\":[80]"));
    CHECK_STR(jstr(a, "state"), "failed");
    CHECK(strstr(jstr(a, "error"), "no free port") != NULL);
    json_decref(a);
    CHECK_INT(w.nlive, ==, 2);
    a = xask(&w, 2, RUN(1000, ",\"publish\":[1,2,3,4]"));
    CHECK(strstr(err(a), "publishes 3 ports at most") != NULL);
    json_decref(a);
    a = xask(&w, 2, RUN(1000, ",\"publish\":[80],\"net\":\"host\""));
    CHECK(strstr(err(a), "needs --net none") != NULL);
    json_decref(a);
    a = xask(&w, 2, RUN(1000, ",\"publish\":[0]"));
    CHECK_STR(err(a), "bad run request");
    json_decref(a);
    /* the first job ends: its ports come back, the next one found after the last given */
    finish(&w, live_take(&w, 0), 0, false);
    a = xask(&w, 3, RUN(1000, ",\"publish\":[8080]"));
    CHECK_INT(json_integer_value(json_object_get(
                  json_array_get(json_object_get(json_object_get(a, "job"), "ports"), 0), "host")),
              ==, 40000);
    json_decref(a);
    finish(&w, live_take(&w, 0), 0, false);
    finish(&w, live_take(&w, 0), 0, false);
    xw_free(&w);
}

TEST(node_exec_exited_answers_waiters_before_the_cleanup_frees_its_capacity)
{
    struct xw w;
    xw_init(&w, 1000, 1u << 30, 0);
    json_decref(xask(&w, 0, RUN(1000, ",\"name\":\"a\"")));
    CHECK(xask(&w, 1, "{\"cmd\":\"wait\",\"job\":\"a\"}") == NULL);
    struct node_exec *x = live_take(&w, 0);
    node_exec_running(w.n, x, w.now);
    x->result.status = 7;
    node_exec_exited(w.n, x, w.now);
    fx(&w);
    json_t *a = json_loads(w.ans[1], 0, NULL);
    CHECK_STR(jstr(a, "state"), "exited");
    json_decref(a);
    /* still cleaning up: its cpu is not free yet, and it is not forgotten */
    a = xask(&w, 2, RUN(1000, ""));
    CHECK(strstr(err(a), "no room now") != NULL);
    json_decref(a);
    node_exec_done(w.n, x, w.now);
    fx(&w);
    a = xask(&w, 2, RUN(1000, ""));
    CHECK_STR(jstr(a, "state"), "preparing");
    json_decref(a);
    a = xask(&w, 3, "{\"cmd\":\"jobs\",\"job\":\"a\"}");
    CHECK_INT(json_integer_value(json_object_get(json_object_get(a, "job"), "status")), ==, 7);
    json_decref(a);
    CHECK_INT(node_counters_get(w.n)->jobs_failed, ==, 0);
    finish(&w, live_take(&w, 0), 0, false);
    xw_free(&w);
}
