/*
 * test_node_ctl.c - the control verbs (node/ctl.c, NODE_CTL_VERBS), each with good and bad
 * input: peers, stats, reconcile, providers, pull, fetch; busy at NODE_TASKS_MAX; a client that
 * goes away; a node that stops (jobs end, links close, clients told, served layers closed,
 * NODE_FX_STOPPED); and the documentation of
 * the counters, generated from their list, is what docs/cli.md holds.
 */
#include "nodes.h"

#include <stdio.h>

static const char *error_of(json_t *a)
{
    return json_string_value(json_object_get(a, "error"));
}

TEST(node_every_control_verb_answers)
{
    struct simn *s = cluster_new(21);
    unsigned zero = 0;
    CHECK(simn_add(s, NULL, 0) == 0);
    CHECK(simn_add(s, &zero, 1) == 1);
    struct image im;
    image_make(s, 0, 3, 6, 2048, true, &im);
    wait_links(s, 1, 5 * SEC);
    simn_run_until(s, simn_now(s) + 5 * SEC);
    char id0[65];
    hex_fmt(simn_id(s, 0), 32, id0);

    json_t *a = ask(s, 1, SEC, "{\"cmd\":\"peers\"}");
    CHECK(answer_ok(a));
    json_t *p = json_array_get(json_object_get(a, "peers"), 0);
    CHECK_STR(json_string_value(json_object_get(p, "id")), id0);
    CHECK_STR(json_string_value(json_object_get(p, "address")), "10.0.0.1:7070");
    CHECK(json_is_true(json_object_get(p, "initiator")));
    CHECK(!json_is_true(json_object_get(p, "banned")));
    json_decref(a);

    a = ask(s, 0, SEC, "{\"cmd\":\"stats\"}");
    CHECK(answer_ok(a));
    json_t *st = json_object_get(a, "stats");
    CHECK_STR(json_string_value(json_object_get(st, "id")), id0);
    CHECK_INT(json_integer_value(json_object_get(st, "peers")), ==, 1);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(st, "store"), "images")), ==, 1);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(st, "dht"), "providing")), ==, 2);
    size_t ncounters = 0;
#define X(name, doc)                                                                               \
    CHECK(json_is_integer(json_object_get(json_object_get(st, "counters"), #name)));               \
    ncounters++;
    NODE_COUNTERS(X)
#undef X
    CHECK_INT(json_object_size(json_object_get(st, "counters")), ==, ncounters);
    json_decref(a);

    memstore_layer_drop(simn_store(s, 0), im.layer); /* behind the node's back, like afsp prune */
    CHECK(dht_providing(node_dht(simn_node(s, 0)), im.layer));
    a = ask(s, 0, SEC, "{\"cmd\":\"reconcile\"}");
    CHECK(answer_ok(a));
    json_decref(a);
    CHECK(!dht_providing(node_dht(simn_node(s, 0)), im.layer));

    a = ask(s, 1, 10 * SEC, "{\"cmd\":\"providers\",\"digest\":\"%s\"}", im.ref);
    CHECK(answer_ok(a));
    CHECK_INT(json_array_size(json_object_get(a, "providers")), ==, 1);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(a, "lookup"), "messages")), >=, 1);
    json_decref(a);
    a = ask(s, 1, SEC, "{\"cmd\":\"providers\",\"digest\":\"sha256:nothex\"}");
    CHECK_STR(error_of(a), "bad digest");
    json_decref(a);

    /* the layer went from node 0: the pull takes it from the registry */
    a = ask(s, 1, 10 * SEC, "{\"cmd\":\"pull\",\"ref\":\"%s\",\"insecure\":[\"h\"]}", im.ref);
    CHECK(answer_ok(a));
    CHECK_STR(json_string_value(json_object_get(a, "digest")), im.ref);
    json_decref(a);
    CHECK(memstore_layer_complete(simn_store(s, 1), im.layer));
    CHECK_INT(counter(s, 1, "pulls"), ==, 1);
    a = ask(s, 1, SEC, "{\"cmd\":\"pull\"}");
    CHECK_STR(error_of(a), "bad pull request");
    json_decref(a);

    memstore_layer_drop(simn_store(s, 1), im.layer);
    image_partial(s, 1, &im, 2048);
    a = ask(s, 1, 10 * SEC,
            "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":1,\"last\":2,\"ref\":\"x\"}",
            im.layer_text);
    CHECK(answer_ok(a));
    json_decref(a);
    CHECK_INT(memstore_layer_present(simn_store(s, 1), im.layer), ==, 2);
    CHECK_INT(counter(s, 1, "registry_fetches"), ==, 1);
    const char *bad[] = {
        "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":2,\"last\":1}",
        "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":-1,\"last\":1}",
        "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":0}",
        "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":0,\"last\":99999999999}",
        "{\"cmd\":\"fetch\",\"layer\":\"%.10s\",\"first\":0,\"last\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char req[512];
        snprintf(req, sizeof req, bad[i], im.layer_text);
        a = ask(s, 1, SEC, "%s", req);
        CHECK_STR(error_of(a), "bad fetch request");
        json_decref(a);
    }
    a = ask(s, 1, SEC, "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":0,\"last\":6}",
            im.layer_text);
    CHECK(error_of(a) && strstr(error_of(a), "invalid usage")); /* a chunk past the last */
    json_decref(a);

    a = ask(s, 1, SEC, "{\"cmd\":\"dance\"}");
    CHECK_STR(error_of(a), "unknown command dance");
    json_decref(a);
    const char *garbage[] = {"", "[]", "{\"cmd\":7}", "not json", "{\"cmd\":\"peers\""};
    for (size_t i = 0; i < sizeof garbage / sizeof *garbage; i++) {
        a = ask(s, 1, SEC, "%s", garbage[i]);
        CHECK_STR(error_of(a), "bad request");
        json_decref(a);
    }
    for (int v = 0; v < NODE_CTL_NVERBS; v++)
        CHECK(node_ctl_verb_name((enum node_ctl_verb)v));
    CHECK(!node_ctl_verb_name(NODE_CTL_NVERBS));
    simn_free(s);
}

/* At most NODE_TASKS_MAX pulls and fetches run at once; more are refused as busy. A client
 * that goes away gets no answer, and its pull goes on. */
TEST(node_refuses_tasks_over_its_cap_and_forgets_clients_gone)
{
    struct simn *s = cluster_new(22);
    unsigned zero = 0;
    CHECK(simn_add(s, NULL, 0) == 0);
    CHECK(simn_add(s, &zero, 1) == 1);
    struct image im;
    image_make(s, 0, 4, 4, 1024, true, &im);
    wait_links(s, 1, 5 * SEC);
    simn_pause(s, 0, true); /* node 1's pulls wait on node 0 */
    int t[NODE_TASKS_MAX];
    char req[256];
    snprintf(req, sizeof req, "{\"cmd\":\"pull\",\"ref\":\"%s\"}", im.ref);
    for (int i = 0; i < NODE_TASKS_MAX; i++)
        t[i] = simn_ctl(s, 1, req);
    json_t *a = ask(s, 1, SEC, "%s", req);
    CHECK(error_of(a) && strstr(error_of(a), "busy"));
    CHECK(json_is_true(json_object_get(a, "busy")));
    json_decref(a);
    simn_ctl_gone(s, 1, t[0]);
    simn_pause(s, 0, false);
    simn_run_until(s, simn_now(s) + 30 * SEC);
    CHECK(!simn_answer(s, t[0]));
    for (int i = 1; i < NODE_TASKS_MAX; i++)
        if (!simn_answer(s, t[i]) || !strstr(simn_answer(s, t[i]), "\"ok\":true"))
            test_fail(__FILE__, __LINE__, "pull %d: %s", i, simn_answer(s, t[i]));
    CHECK_INT(counter(s, 1, "pulls"), ==, NODE_TASKS_MAX);
    CHECK_INT(counter(s, 1, "pulls_failed"), ==, 0);
    simn_free(s);
}

/* A node that stops while a fetch and a provider lookup wait on a silent peer: the job ends
 * (-ECANCELED), every link closes, both clients are told the node is stopping (not left to see
 * their connection close), the node says it stopped, and later requests are refused. */
TEST(node_stop_ends_jobs_links_and_tasks)
{
    struct simn *s = cluster_new(23);
    unsigned zero = 0;
    CHECK(simn_add(s, NULL, 0) == 0);
    CHECK(simn_add(s, &zero, 1) == 1);
    struct image im;
    image_make(s, 0, 5, 4, 1024, false, &im);
    image_partial(s, 1, &im, 1024);
    wait_links(s, 1, 5 * SEC);
    simn_pause(s, 0, true);
    char req[256];
    snprintf(req, sizeof req, "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":0,\"last\":3}",
             im.layer_text);
    int t = simn_ctl(s, 1, req);
    snprintf(req, sizeof req, "{\"cmd\":\"providers\",\"digest\":\"%s\"}", im.layer_text);
    int p = simn_ctl(s, 1, req);
    simn_run_until(s, simn_now(s) + 100);
    CHECK(!simn_answer(s, t));
    CHECK(!simn_answer(s, p));
    simn_stop(s, 1);
    simn_run_until(s, simn_now(s) + 100);
    CHECK(simn_stopped(s, 1));
    CHECK_INT(node_links_up(simn_node(s, 1)), ==, 0);
    CHECK_STR(simn_answer(s, t), "{\"error\":\"the node is stopping\",\"busy\":true}\n");
    CHECK_STR(simn_answer(s, p), "{\"error\":\"the node is stopping\",\"busy\":true}\n");
    json_t *a = ask(s, 1, SEC, "{\"cmd\":\"stats\"}");
    CHECK_STR(error_of(a), "the node is stopping");
    json_decref(a);
    simn_pause(s, 0, false);
    simn_free(s);
}

/* A node that served chunks of a layer stops with nothing open in its store: every layer it
 * opened to serve is closed by NODE_FX_STOPPED, not left to node_free. */
TEST(node_stop_closes_the_layers_it_served)
{
    struct simn *s = cluster_new(24);
    unsigned zero = 0;
    CHECK(simn_add(s, NULL, 0) == 0);
    CHECK(simn_add(s, &zero, 1) == 1);
    struct image im;
    image_make(s, 0, 6, 4, 1024, false, &im);
    image_partial(s, 1, &im, 1024);
    wait_links(s, 1, 5 * SEC);
    json_t *a = ask(s, 1, 5 * SEC, "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":0,\"last\":3}",
                    im.layer_text);
    CHECK(answer_ok(a));
    json_decref(a);
    CHECK_INT(memstore_calls(simn_store(s, 0))->layer_open, >, 0);
    CHECK_INT(memstore_handles_open(simn_store(s, 0)), >, 0);
    simn_stop(s, 0);
    simn_run_until(s, simn_now(s) + SEC);
    CHECK(simn_stopped(s, 0));
    CHECK_INT(memstore_handles_open(simn_store(s, 0)), ==, 0);
    simn_free(s);
}

/* docs/cli.md holds the counters' table exactly as node_counters_doc makes it. */
TEST(node_counters_are_documented_as_listed)
{
    struct buf doc = {0};
    node_counters_doc(&doc);
    CHECK(buf_append(&doc, "", 1) == 0);
    const char *src = getenv("AFSP_SRC");
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/cli.md", src ? src : ".");
    FILE *f = fopen(path, "r");
    CHECK(f);
    struct buf md = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        CHECK(buf_append(&md, chunk, n) == 0);
    fclose(f);
    CHECK(buf_append(&md, "", 1) == 0);
    if (!strstr((const char *)md.p, (const char *)doc.p))
        test_fail(__FILE__, __LINE__, "docs/cli.md lacks the counters' table; it should hold:\n%s",
                  (const char *)doc.p);
    buf_release(&doc);
    buf_release(&md);
}
