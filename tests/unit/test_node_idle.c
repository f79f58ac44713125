/*
 * test_node_idle.c - a cluster that sat idle for twice the node's longest timeout (idle close,
 * provider freshness, record TTL, republish: 20 minutes of the virtual clock) still does what it
 * did in its first seconds: a pull gets the manifest, the index and the chunks from the peer
 * that holds them, not from the registry; providers are found; records are still held; and the
 * same in a cluster of 64.
 */
#include "nodes.h"

/* Issue 14's bug: after 12 s of nothing on the link, B's first request to A stalled at its
 * first tick (its deadline was taken from the last byte received), A was banned, and the pull
 * went to the registry. */
TEST(node_after_idle_a_pull_gets_everything_from_the_peer)
{
    struct simn *s = cluster_new(1);
    unsigned seeds[] = {0};
    CHECK(simn_add(s, NULL, 0) == 0);
    CHECK(simn_add(s, seeds, 1) == 1);
    struct image im;
    image_make(s, 0, 1, 40, 4096, true, &im);
    wait_links(s, 1, 10 * SEC);
    simn_run_until(s, simn_now(s) + 2 * longest_timeout());
    CHECK_INT(simn_links(s, 0, 1), ==, 1); /* a seed's link is never idle-closed */

    json_t *a = ask(s, 1, 30 * SEC, "{\"cmd\":\"pull\",\"ref\":\"%s\",\"lazy\":true}", im.ref);
    CHECK(answer_ok(a));
    CHECK_STR(json_string_value(json_object_get(a, "digest")), im.ref);
    json_decref(a);
    CHECK_INT(simn_registry_fetches(s), ==, 0);
    CHECK_INT(counter(s, 1, "blobs_fetched"), ==, 2); /* the manifest and the index */
    CHECK_INT(counter(s, 1, "stalls"), ==, 0);
    a = ask(s, 1, 30 * SEC, "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":0,\"last\":39}",
            im.layer_text);
    CHECK(answer_ok(a));
    json_decref(a);
    CHECK(memstore_layer_complete(simn_store(s, 1), im.layer));
    CHECK_INT(counter(s, 1, "chunks_fetched"), ==, 40);
    CHECK_INT(counter(s, 0, "chunks_served"), ==, 40);
    CHECK_INT(simn_registry_fetches(s), ==, 0);
    simn_free(s);
}

/* Six nodes in a chain (each seeded with the one before). N0 holds an image; after twenty idle
 * minutes its records are still held (republished), N5 finds N0 by the DHT, dials it and
 * pulls from it, with the registry never asked. */
TEST(node_after_idle_records_are_republished_and_providers_found)
{
    struct simn *s = cluster_new(2);
    CHECK(simn_add(s, NULL, 0) == 0);
    for (unsigned i = 1; i < 6; i++) {
        unsigned prev = i - 1;
        CHECK(simn_add(s, &prev, 1) == (int)i);
    }
    struct image im;
    image_make(s, 0, 2, 16, 1024, false, &im);
    simn_run_until(s, simn_now(s) + 2 * longest_timeout());
    CHECK_INT(node_counters_get(simn_node(s, 0))->store_lists, >=,
              2 * longest_timeout() / (4 * 60 * SEC));
    unsigned held = 0;
    for (unsigned i = 1; i < 6; i++)
        held += dht_records_held(node_dht(simn_node(s, i)), im.layer);
    CHECK_INT(held, >=, 1);

    json_t *a = ask(s, 5, 30 * SEC, "{\"cmd\":\"providers\",\"digest\":\"%s\"}", im.layer_text);
    CHECK(answer_ok(a));
    json_t *p = json_object_get(a, "providers");
    CHECK_INT(json_array_size(p), ==, 1);
    char id[65];
    CHECK_STR(json_string_value(json_object_get(json_array_get(p, 0), "id")),
              hex_fmt(simn_id(s, 0), 32, id));
    json_decref(a);

    a = ask(s, 5, 60 * SEC, "{\"cmd\":\"pull\",\"ref\":\"%s\"}", im.ref);
    CHECK(answer_ok(a));
    json_decref(a);
    CHECK(memstore_layer_complete(simn_store(s, 5), im.layer));
    CHECK_INT(simn_registry_fetches(s), ==, 0);
    CHECK(node_linked(simn_node(s, 5), simn_id(s, 0)));
    simn_free(s);
}

/* 64 nodes, each seeded with N0 (the simulator grows its table of nodes past its first 16: a
 * node core keeps pointers into its node's state). N40 holds an image; after twenty idle
 * minutes N63 finds it through the DHT and pulls from it, with the registry never asked. */
TEST(node_sixty_four_nodes_after_idle_find_and_pull_from_a_provider)
{
    struct simn *s = cluster_new(3);
    unsigned zero = 0;
    CHECK(simn_add(s, NULL, 0) == 0);
    for (unsigned i = 1; i < 64; i++)
        CHECK(simn_add(s, &zero, 1) == (int)i);
    struct image im;
    image_make(s, 40, 4, 16, 1024, false, &im);
    simn_run_until(s, simn_now(s) + 2 * longest_timeout());
    json_t *a = ask(s, 63, 30 * SEC, "{\"cmd\":\"providers\",\"digest\":\"%s\"}", im.layer_text);
    CHECK(answer_ok(a));
    json_t *p = json_object_get(a, "providers");
    CHECK_INT(json_array_size(p), ==, 1);
    char id[65];
    CHECK_STR(json_string_value(json_object_get(json_array_get(p, 0), "id")),
              hex_fmt(simn_id(s, 40), 32, id));
    json_decref(a);
    a = ask(s, 63, 60 * SEC, "{\"cmd\":\"pull\",\"ref\":\"%s\"}", im.ref);
    CHECK(answer_ok(a));
    json_decref(a);
    CHECK(memstore_layer_complete(simn_store(s, 63), im.layer));
    CHECK_INT(simn_registry_fetches(s), ==, 0);
    simn_free(s);
}
