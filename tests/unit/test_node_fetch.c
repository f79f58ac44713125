/*
 * test_node_fetch.c - fetch jobs (node/fetch.c), serving (serve.c) and announcing (announce.c):
 * a silent request is hedged at exactly its deadline; a peer that sends bad chunks is banned
 * until its ban ends; a provider that evicted the layer is left out of the job after its first
 * not-found (it was asked again and again); a mount's fetches never list the store; an evicted
 * layer is withdrawn and served no more.
 */
#include "nodes.h"

/* Three nodes: 0 and 1 hold the image whole, 2 holds it in part (a lazy pull) and reads. */
static struct simn *three(uint64_t seed, uint32_t nchunks, uint32_t chunk_len, struct image *im)
{
    struct simn *s = cluster_new(seed);
    unsigned zero = 0, both[] = {0, 1};
    CHECK(simn_add(s, NULL, 0) == 0);
    CHECK(simn_add(s, &zero, 1) == 1);
    CHECK(simn_add(s, both, 2) == 2);
    image_make(s, 0, 7, nchunks, chunk_len, true, im);
    CHECK(memstore_layer_add(simn_store(s, 1), im->layer, nchunks, chunk_len, true) == 0);
    simn_store_changed(s, 1);
    image_partial(s, 2, im, chunk_len);
    wait_links(s, 2, 10 * SEC);
    simn_run_until(s, simn_now(s) + 5 * SEC);
    return s;
}

static int fetch(struct simn *s, unsigned i, const struct image *im, uint32_t first, uint32_t last)
{
    char req[256];
    snprintf(req, sizeof req, "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":%u,\"last\":%u}",
             im->layer_text, first, last);
    return simn_ctl(s, i, req);
}

static bool answered_ok(struct simn *s, int t)
{
    const char *a = simn_answer(s, t);
    return a && strstr(a, "\"ok\":true");
}

/* Whether node at has banned node who (1, 0; -1: no link to it). */
static int banned(struct simn *s, unsigned at, unsigned who)
{
    json_t *p = ask(s, at, SEC, "{\"cmd\":\"peers\"}");
    size_t i;
    json_t *e;
    char id[65];
    hex_fmt(simn_id(s, who), 32, id);
    int b = -1;
    json_array_foreach(json_object_get(p, "peers"), i, e)
    {
        if (!strcmp(json_string_value(json_object_get(e, "id")), id))
            b = json_is_true(json_object_get(e, "banned"));
    }
    json_decref(p);
    return b;
}

/* Node 1 stops answering (SIGSTOP) while node 2 asks it and node 0 for chunks: every request on
 * node 1 is asked of node 0 too exactly when it has been silent for the hedge duration, not a
 * millisecond before; node 0's copies win, node 1 is banned, and the read completes. */
TEST(node_hedges_a_silent_request_at_exactly_its_deadline)
{
    struct image im;
    struct simn *s = three(11, 9, 4096, &im);
    struct node_durations d;
    node_durations_init(&d, 1);
    int t = fetch(s, 2, &im, 8, 8); /* node 2 learns that nodes 0 and 1 hold the whole layer */
    simn_run_until(s, simn_now(s) + SEC);
    CHECK(answered_ok(s, t));
    simn_pause(s, 1, true);
    uint64_t t0 = simn_now(s);
    t = fetch(s, 2, &im, 0, 7); /* its job asks both peers at once, at t0 */
    simn_run_until(s, t0 + d.hedge - 1);
    CHECK_INT(counter(s, 2, "hedges"), ==, 0);
    CHECK(!simn_answer(s, t));
    simn_run_until(s, t0 + d.hedge);
    CHECK_INT(counter(s, 2, "hedges"), >=, 1);
    simn_run_until(s, t0 + d.hedge + 50);
    CHECK(answered_ok(s, t));
    CHECK(memstore_layer_complete(simn_store(s, 2), im.layer));
    /* every chunk asked of node 1 came through a hedge (one that node 0 answered busy, its two
     * slots taken, was hedged again) */
    CHECK_INT(counter(s, 2, "hedges_won"), ==, NODE_PEER_CHUNKS);
    CHECK_INT(counter(s, 2, "hedges"), >=, NODE_PEER_CHUNKS);
    CHECK_INT(counter(s, 2, "stalls"), ==, 0);
    CHECK_INT(banned(s, 2, 1), ==, 1);
    simn_pause(s, 1, false);
    simn_free(s);
}

/* Node 1 sent node 2 the layer's index and lies: its chunks do not match its own index. Each is
 * caught, counted, never stored; node 1 is banned and node 0 serves the rest. Once the ban has
 * run out node 1 is asked again. */
TEST(node_bans_a_peer_that_sends_bad_chunks_until_the_ban_ends)
{
    struct image im;
    struct simn *s = three(12, 64, 1024, &im);
    struct node_durations d;
    node_durations_init(&d, 1);
    memstore_layer_index(simn_store(s, 2), im.layer, simn_id(s, 1), false);
    memstore_lie(simn_store(s, 1), true);
    int t = fetch(s, 2, &im, 0, 31);
    simn_run_until(s, simn_now(s) + 5 * SEC);
    CHECK(answered_ok(s, t));
    CHECK_INT(memstore_layer_present(simn_store(s, 2), im.layer), ==, 32);
    CHECK_INT(counter(s, 2, "bad_chunks"), >=, 1);
    CHECK_INT(counter(s, 2, "chunks_disputed"), ==, 0);
    CHECK_INT(counter(s, 2, "chunks_fetched"), ==, 32);
    uint64_t served1 = counter(s, 1, "chunks_served");
    t = fetch(s, 2, &im, 32, 47); /* still banned: all from node 0 */
    simn_run_until(s, simn_now(s) + 5 * SEC);
    CHECK(answered_ok(s, t));
    CHECK_INT(counter(s, 1, "chunks_served"), ==, served1);
    memstore_lie(simn_store(s, 1), false);
    simn_run_until(s, simn_now(s) + d.ban);
    t = fetch(s, 2, &im, 48, 63); /* the ban is over: node 1 gets its share again */
    simn_run_until(s, simn_now(s) + 5 * SEC);
    CHECK(answered_ok(s, t));
    CHECK_INT(counter(s, 1, "chunks_served"), >, served1);
    CHECK(memstore_layer_complete(simn_store(s, 2), im.layer));
    simn_free(s);
}

/* Node 1 evicts the layer while node 2 reads it from nodes 0 and 1 in one job: node 1 says
 * not-found and is not asked again by that job (before the fix, every not-found only dropped
 * the chunk, and node 1 was asked for every chunk of the layer). */
TEST(node_leaves_a_provider_that_evicted_the_layer_out_of_the_job)
{
    struct image im;
    struct simn *s = three(13, 600, 256, &im);
    memstore_layer_drop(simn_store(s, 1), im.layer);
    simn_store_changed(s, 1); /* withdrawn; records elsewhere live out their TTL */
    uint64_t opens = memstore_calls(simn_store(s, 1))->layer_open;
    int t = fetch(s, 2, &im, 0, 599);
    simn_run_until(s, simn_now(s) + 10 * SEC);
    CHECK(answered_ok(s, t));
    CHECK(memstore_layer_complete(simn_store(s, 2), im.layer));
    /* node 1 was asked at most one window's worth (what was in flight when it first said no) */
    CHECK_INT(memstore_calls(simn_store(s, 1))->layer_open - opens, <=, P2P_WINDOW);
    CHECK_INT(counter(s, 2, "chunks_fetched"), ==, 600);
    simn_free(s);
}

/* A mount reads 4 chunks of 64, naming its image: the node answers the read first, then
 * completes the layer in the background (a verification), so that its index can be built from
 * the whole blob. A read that names no image (no registry to fall back on) queues nothing. */
TEST(node_completes_a_lazily_read_layer_in_the_background)
{
    struct image im;
    struct simn *s = three(15, 64, 1024, &im);
    char req[512];
    snprintf(req, sizeof req,
             "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":0,\"last\":3,\"ref\":\"%s\"}",
             im.layer_text, im.ref);
    int t = simn_ctl(s, 2, req);
    while (!simn_answer(s, t))
        simn_run_until(s, simn_now(s) + 1);
    CHECK(answered_ok(s, t));
    CHECK_INT(memstore_layer_present(simn_store(s, 2), im.layer), <, 64);
    simn_run_until(s, simn_now(s) + 10 * SEC);
    CHECK(memstore_layer_complete(simn_store(s, 2), im.layer));
    CHECK_INT(counter(s, 2, "verifies"), ==, 1);
    CHECK_INT(counter(s, 2, "verifies_failed"), ==, 0);
    simn_free(s);

    s = three(16, 64, 1024, &im);
    t = fetch(s, 2, &im, 0, 3);
    simn_run_until(s, simn_now(s) + 10 * SEC);
    CHECK(answered_ok(s, t));
    CHECK_INT(memstore_layer_present(simn_store(s, 2), im.layer), ==, 4);
    CHECK_INT(counter(s, 2, "verifies"), ==, 0);
    simn_free(s);
}

/* A mount reads chunk by chunk: the node never lists the whole store for a fetch (it did, on
 * every one, to compare what it announces); the fetch that completes the layer announces just
 * that layer. */
TEST(node_fetches_never_list_the_store)
{
    struct image im;
    struct simn *s = three(14, 20, 1024, &im);
    uint64_t lists = memstore_calls(simn_store(s, 2))->held;
    for (uint32_t c = 0; c < 20; c++) {
        int t = fetch(s, 2, &im, c, c);
        simn_run_until(s, simn_now(s) + 200);
        CHECK(answered_ok(s, t));
    }
    CHECK(memstore_layer_complete(simn_store(s, 2), im.layer));
    CHECK_INT(memstore_calls(simn_store(s, 2))->held, ==, lists);
    CHECK(dht_providing(node_dht(simn_node(s, 2)), im.layer));
    simn_free(s);
}

/* What the store evicts is withdrawn at once and served no more; what it gains is announced. */
TEST(node_announces_what_it_holds_and_withdraws_what_it_evicts)
{
    struct image im;
    struct simn *s = three(15, 4, 1024, &im);
    struct dht *d0 = node_dht(simn_node(s, 0));
    CHECK(dht_providing(d0, im.layer));
    CHECK(dht_providing(d0, im.manifest));
    CHECK(!dht_providing(node_dht(simn_node(s, 2)), im.layer)); /* partial: not announced */
    memstore_layer_drop(simn_store(s, 0), im.layer);
    simn_store_changed(s, 0);
    CHECK(!dht_providing(d0, im.layer));
    CHECK(dht_providing(d0, im.manifest));
    memstore_layer_drop(simn_store(s, 1), im.layer);
    simn_store_changed(s, 1);
    uint64_t served = counter(s, 0, "chunks_served") + counter(s, 1, "chunks_served");
    int t = fetch(s, 2, &im, 0, 3);
    simn_run_until(s, simn_now(s) + 10 * SEC);
    const char *a = simn_answer(s, t);
    CHECK(a && strstr(a, "error")); /* no peer has it, and no registry was named */
    CHECK_INT(counter(s, 0, "chunks_served") + counter(s, 1, "chunks_served"), ==, served);
    CHECK_INT(counter(s, 2, "fetches_failed"), ==, 1);
    simn_free(s);
}

/* Node 1 holds the whole layer (node 2 knows it as a complete provider) but loses chunks 2 and 5;
 * node 0 is gone. Node 2's read of chunks 0-7 hears not-found for a chunk node 1 lacks, asks it
 * which it holds (HAVE), takes the six it has from it and only the other two from the registry:
 * a not-found for one chunk does not leave a peer out of the job. */
TEST(node_a_peer_lacking_one_chunk_still_serves_the_others)
{
    struct image im;
    struct simn *s = three(23, 9, 1024, &im);
    int t = fetch(s, 2, &im, 8, 8); /* node 2 learns that nodes 0 and 1 hold the whole layer */
    simn_run_until(s, simn_now(s) + SEC);
    CHECK(answered_ok(s, t));
    memstore_chunk_drop(simn_store(s, 1), im.layer, 2);
    memstore_chunk_drop(simn_store(s, 1), im.layer, 5);
    simn_kill(s, 0);
    uint64_t served = counter(s, 1, "chunks_served"), reg = simn_registry_fetches(s);
    char req[512];
    snprintf(req, sizeof req,
             "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":0,\"last\":7,\"ref\":\"%s\"}",
             im.layer_text, im.ref);
    t = simn_ctl(s, 2, req);
    simn_run_until(s, simn_now(s) + 5 * SEC);
    CHECK(answered_ok(s, t));
    CHECK_INT(memstore_layer_present(simn_store(s, 2), im.layer), ==, 9);
    CHECK_INT(counter(s, 1, "chunks_served") - served, ==, 6);
    CHECK_INT(simn_registry_fetches(s) - reg, ==, 2);
    CHECK_INT(counter(s, 2, "haves_sent"), >=, 1);
    simn_free(s);
}

/* A peer that answers every request busy (node 1; node 0 is gone) is asked again a busy
 * duration apart, and left out of the job after the busy_wait duration: the fetch ends through
 * the registry within seconds. It used to be asked again forever (over a million busy answers in
 * ten virtual minutes) and the fetch never ended. */
TEST(node_fetch_leaves_a_peer_that_is_always_busy)
{
    struct image im;
    struct simn *s = three(21, 8, 1024, &im);
    memstore_busy(simn_store(s, 1), true);
    simn_kill(s, 0);
    char req[512];
    snprintf(req, sizeof req,
             "{\"cmd\":\"fetch\",\"layer\":\"%s\",\"first\":0,\"last\":3,\"ref\":\"%s\"}",
             im.layer_text, im.ref);
    uint64_t opens = memstore_calls(simn_store(s, 1))->layer_open;
    int t = simn_ctl(s, 2, req);
    simn_run_until(s, simn_now(s) + 30 * SEC);
    CHECK(answered_ok(s, t));
    CHECK(memstore_calls(simn_store(s, 1))->layer_open > opens); /* it was asked, and said busy */
    /* two jobs ask it: the fetch's, and then the layer's verification's */
    struct node_durations d;
    node_durations_init(&d, 1);
    CHECK_INT(memstore_calls(simn_store(s, 1))->layer_open - opens, <=,
              2 * (d.busy_wait / d.busy + 2) * (NODE_PEER_CHUNKS + 1));
    CHECK(simn_registry_fetches(s) > 0);
    json_t *a = ask(s, 2, SEC, "{\"cmd\":\"stats\"}");
    json_t *tr = json_object_get(json_object_get(a, "stats"), "transfer");
    CHECK_INT(json_integer_value(json_object_get(tr, "from_registry")), >=, 4 * 1024);
    json_decref(a);
    simn_free(s);
}

/* A chunk that fails against an index another node sent is disputed: one of the two is false.
 * The peer is left out of the job, not banned, and the read goes on; the layer's verification,
 * which judges the index against the blob, says which.
 * - The index is node 0's and true; node 1 lies. The read succeeds from node 0; once the index
 *   is judged true, node 1 is banned.
 * - The index is node 0's and false (its own chunks fit it); node 1 is honest. Node 1 is not
 *   banned, before the judgement or after it; node 0 is. The old node banned node 1 at once. */
TEST(node_disputes_a_chunk_against_another_nodes_index)
{
    struct image im;
    uint8_t px[DIGEST_LEN], bx[DIGEST_LEN] = {2};
    struct simn *s = three(22, 64, 1024, &im);
    memstore_index_digest(simn_id(s, 0), false, px);
    memstore_layer_index(simn_store(s, 2), im.layer, simn_id(s, 0), false);
    memstore_lie(simn_store(s, 1), true);
    int t = fetch(s, 2, &im, 0, 31);
    simn_run_until(s, simn_now(s) + 10 * SEC);
    CHECK(answered_ok(s, t));
    CHECK_INT(memstore_layer_present(simn_store(s, 2), im.layer), ==, 32);
    CHECK_INT(counter(s, 2, "chunks_disputed"), >=, 1);
    CHECK_INT(banned(s, 2, 1), ==, 0);
    /* another index of the layer judged true (one added after an eviction) settles nothing */
    node_index_judged(simn_node(s, 2), im.layer, simn_id(s, 0), bx, bx, false, simn_now(s));
    CHECK_INT(banned(s, 2, 1), ==, 0);
    node_index_judged(simn_node(s, 2), im.layer, simn_id(s, 0), px, bx, false, simn_now(s));
    CHECK_INT(counter(s, 2, "chunk_liars"), ==, 1);
    CHECK_INT(banned(s, 2, 1), ==, 1);
    CHECK_INT(banned(s, 2, 0), ==, 0);
    simn_free(s);

    s = three(23, 64, 1024, &im);
    memstore_index_digest(simn_id(s, 0), true, px);
    memstore_layer_index(simn_store(s, 2), im.layer, simn_id(s, 0), true);
    memstore_lie(simn_store(s, 0), true);
    t = fetch(s, 2, &im, 0, 31);
    simn_run_until(s, simn_now(s) + 10 * SEC);
    CHECK(answered_ok(s, t)); /* node 0's word, as for any lazy read before its verification */
    CHECK_INT(counter(s, 2, "chunks_disputed"), >=, 1);
    CHECK_INT(banned(s, 2, 1), ==, 0);
    node_index_judged(simn_node(s, 2), im.layer, simn_id(s, 0), px, bx, true, simn_now(s));
    CHECK_INT(counter(s, 2, "chunk_liars"), ==, 0);
    CHECK_INT(counter(s, 2, "forged_indexes"), ==, 1);
    CHECK_INT(banned(s, 2, 1), ==, 0);
    CHECK(!node_linked(simn_node(s, 2), simn_id(s, 0)));
    simn_free(s);
}
