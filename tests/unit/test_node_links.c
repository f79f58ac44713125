/*
 * test_node_links.c - the node core's links (node/link.c, seed.c): one link per pair, the same
 * at both ends, whichever way they were dialed; idle links close and seeds' links stay; a seed
 * that cannot be reached is dialed again with a doubling backoff that starts over once it is up.
 */
#include "nodes.h"

/* Two nodes that are each other's seed dial each other at once: both links come up, and both
 * ends keep the same one, the one the node with the smaller ID dialed. */
TEST(node_two_links_of_a_pair_both_ends_keep_the_smaller_ids)
{
    for (uint64_t seed = 1; seed <= 8; seed++) { /* IDs in either order */
        struct simn *s = cluster_new(seed);
        unsigned one = 1, zero = 0;
        CHECK(simn_add(s, &one, 1) == 0);
        CHECK(simn_add(s, &zero, 1) == 1);
        wait_links(s, 1, 5 * SEC);
        simn_run_until(s, simn_now(s) + 5 * SEC);
        CHECK_INT(simn_links(s, 0, 1), ==, 1);
        int smaller = memcmp(simn_id(s, 0), simn_id(s, 1), P2P_ID_LEN) < 0 ? 0 : 1;
        CHECK_INT(simn_link_dialer(s, 0, 1), ==, smaller);
        CHECK_INT(node_links_up(simn_node(s, 0)), ==, 1);
        CHECK_INT(node_links_up(simn_node(s, 1)), ==, 1);
        CHECK_INT(counter(s, 0, "peer_errors") + counter(s, 1, "peer_errors"), ==, 0);
        /* the kept link was never closed: neither seed was dialed again */
        CHECK_INT(simn_dials(s, 0), ==, 1);
        CHECK_INT(simn_dials(s, 1), ==, 1);
        simn_free(s);
    }
}

/* One node dials the other twice (two seeds, one address): the two links were opened by the
 * same side, so the IDs cannot break the tie; both ends keep the link with the smaller
 * handshake hash, which they share, and it stays. */
TEST(node_two_links_opened_by_one_side_both_ends_keep_the_same)
{
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct simn *s = cluster_new(seed);
        unsigned twice[] = {1, 1};
        CHECK(simn_add(s, twice, 2) == 0);
        CHECK(simn_add(s, NULL, 0) == 1);
        wait_links(s, 1, 5 * SEC);
        simn_run_until(s, simn_now(s) + 10 * SEC);
        CHECK_INT(simn_links(s, 0, 1), ==, 1);
        CHECK_INT(simn_link_dialer(s, 0, 1), ==, 0);
        CHECK_INT(node_links_up(simn_node(s, 0)), ==, 1);
        CHECK_INT(node_links_up(simn_node(s, 1)), ==, 1);
        /* both ends dropped the same link, and the seed whose link it was moved to the kept
         * one: no dial but the two first, no flapping */
        CHECK_INT(simn_dials(s, 0), ==, 2);
        uint64_t dials = simn_dials(s, 0);
        simn_run_until(s, simn_now(s) + 2 * longest_timeout());
        CHECK_INT(simn_dials(s, 0), ==, dials);
        CHECK_INT(simn_links(s, 0, 1), ==, 1);
        simn_free(s);
    }
}

/* Links nothing uses close after the idle duration (here 30 s, shorter than the DHT's liveness
 * pings, which keep its contacts' links in use at the default 120 s), except the seeds'; the
 * node still reaches the rest of the cluster afterwards, and the cluster stays whole over twice
 * the longest timeout. */
TEST(node_idle_links_close_and_seed_links_stay)
{
    struct node_durations t;
    node_durations_init(&t, 1);
    t.idle = 30 * SEC;
    struct simn *s = cluster_new_t(3, &t);
    unsigned zero = 0;
    CHECK(simn_add(s, NULL, 0) == 0);
    for (unsigned i = 1; i < 5; i++) {
        CHECK(simn_add(s, &zero, 1) == (int)i);
        simn_run_until(s, simn_now(s) + 2 * SEC);
    }
    /* the DHT's join lookups connected the later ones to the earlier ones too */
    unsigned beyond_seeds = 0;
    for (unsigned i = 1; i < 5; i++)
        for (unsigned j = i + 1; j < 5; j++)
            beyond_seeds += simn_links(s, i, j);
    CHECK_INT(beyond_seeds, >=, 1);
    uint64_t dials[5];
    for (unsigned i = 0; i < 5; i++)
        dials[i] = simn_dials(s, i);
    simn_run_until(s, simn_now(s) + t.idle + 2 * SEC);
    for (unsigned i = 0; i < 5; i++) /* no seed's link closed (its seed would be dialed again) */
        CHECK_INT(simn_dials(s, i), ==, dials[i]);
    uint64_t closed = 0;
    for (unsigned i = 0; i < 5; i++)
        closed += counter(s, i, "links_idle_closed");
    CHECK_INT(closed, >=, beyond_seeds);
    for (unsigned i = 1; i < 5; i++)
        for (unsigned j = i + 1; j < 5; j++)
            CHECK_INT(simn_links(s, i, j), ==, 0);
    for (unsigned i = 1; i < 5; i++)
        CHECK_INT(simn_links(s, 0, i), ==, 1);
    simn_run_until(s, simn_now(s) + 2 * longest_timeout());
    for (unsigned i = 1; i < 5; i++)
        CHECK_INT(simn_links(s, 0, i), ==, 1);
    /* what N1 holds is found and read from N4, over a link made for it */
    struct image im;
    image_make(s, 1, 9, 8, 512, false, &im);
    simn_run_until(s, simn_now(s) + 5 * SEC);
    json_t *a = ask(s, 4, 30 * SEC, "{\"cmd\":\"pull\",\"ref\":\"%s\"}", im.ref);
    CHECK(answer_ok(a));
    json_decref(a);
    CHECK(memstore_layer_complete(simn_store(s, 4), im.layer));
    CHECK_INT(simn_registry_fetches(s), ==, 0);
    simn_free(s);
}

/* At the default idle timeout (120 s) the DHT's liveness pings (a contact silent for 60 s is
 * pinged) keep contacts' links in use: a cluster of contacts keeps its links. */
TEST(node_contacts_links_stay_at_the_default_idle_timeout)
{
    struct simn *s = cluster_new(5);
    unsigned zero = 0;
    CHECK(simn_add(s, NULL, 0) == 0);
    for (unsigned i = 1; i < 4; i++) {
        CHECK(simn_add(s, &zero, 1) == (int)i);
        simn_run_until(s, simn_now(s) + 2 * SEC);
    }
    unsigned links = 0;
    for (unsigned i = 0; i < 4; i++)
        for (unsigned j = i + 1; j < 4; j++)
            links += simn_links(s, i, j);
    simn_run_until(s, simn_now(s) + 2 * longest_timeout());
    unsigned after = 0;
    for (unsigned i = 0; i < 4; i++)
        for (unsigned j = i + 1; j < 4; j++)
            after += simn_links(s, i, j);
    CHECK_INT(after, >=, links);
    simn_free(s);
}

/* A seed that is down is dialed at start and again after 0.5, 1, 2, 4, 8, 16, 30, 30 ... s;
 * once it is up the backoff starts over. */
TEST(node_seed_backoff_doubles_to_its_cap_and_starts_over)
{
    struct simn *s = cluster_new(4);
    unsigned one = 1;
    CHECK(simn_add(s, &one, 1) == 0); /* node 1 does not exist yet: refused */
    uint64_t t0 = simn_now(s);
    CHECK_INT(simn_dials(s, 0), ==, 1);
    /* dial k (k >= 1) comes at the sum of the waits so far, plus a refusal's round trip each */
    uint64_t waits[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
    uint64_t at = t0;
    for (size_t k = 0; k < 8; k++) {
        at += waits[k] + 2; /* the refusal comes a round trip after the dial */
        simn_run_until(s, at - 1);
        CHECK_INT(simn_dials(s, 0), ==, k + 1);
        simn_run_until(s, at);
        CHECK_INT(simn_dials(s, 0), ==, k + 2);
    }
    CHECK(simn_add(s, NULL, 0) == 1); /* now it listens */
    simn_run_until(s, simn_now(s) + 31 * SEC);
    CHECK_INT(simn_links(s, 0, 1), ==, 1);
    uint64_t dials = simn_dials(s, 0);
    simn_kill(s, 1); /* its link resets: the next dial waits the first wait again */
    uint64_t t1 = simn_now(s);
    simn_run_until(s, t1 + 1 + 500 - 1); /* the reset reaches it one latency after the kill */
    CHECK_INT(simn_dials(s, 0), ==, dials);
    simn_run_until(s, t1 + 1 + 500);
    CHECK_INT(simn_dials(s, 0), ==, dials + 1);
    simn_free(s);
}

/* An outsider opens connections and says nothing (that needs no cluster key): 5,000 of them
 * from 100 addresses at 410 a second, under a link cap of 64. Each pushes out the oldest
 * unfinished handshake; none keeps a member out: the node dials its seed again once its link
 * is cut, and a member that joins meanwhile connects. (Before: the silent connections filled
 * the table until their handshakes timed out, and both were refused.) */
TEST(node_silent_connections_never_keep_members_out)
{
    struct simn *s;
    struct simn_cfg cfg = {.seed = 7, .links_max = 64};
    unsigned a = 0, t = 1, accepted = 0;
    log_level = LOG_ERROR;
    CHECK(simn_new(&s, &cfg) == 0);
    CHECK(simn_add(s, NULL, 0) == 0); /* A */
    CHECK(simn_add(s, &a, 1) == 1);   /* T, whose seed is A */
    wait_links(s, 1, 5 * SEC);
    uint64_t t0 = simn_now(s);
    for (unsigned c = 0; c < 5000; c++) {
        struct dht_addr from = {.family = 4, .ip = {192, 0, 2, (uint8_t)(c % 100)}};
        from.port = (uint16_t)(1024 + c);
        accepted += simn_accept_silent(s, 1, &from);
        simn_run_until(s, t0 + (uint64_t)(c + 1) * 1000 / 410);
        if (c == 1000)
            simn_cut(s, 1, 0); /* T must dial A again, in the flood */
        if (c == 2000)
            CHECK(simn_add(s, &t, 1) == 2); /* M joins, its seed T */
        if (c == 4999) {
            CHECK_INT(simn_links(s, 1, 0), ==, 1);
            CHECK_INT(simn_links(s, 1, 2), ==, 1);
        }
    }
    CHECK(accepted > 4500); /* taken in, and crowded out by the next ones, not refused */
    CHECK(counter(s, 1, "handshakes_crowded") >= accepted - NODE_HANDSHAKES_MAX(64));
    simn_free(s);
}
