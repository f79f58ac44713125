/*
 * nodes.c - the node core's unit tests' helpers (nodes.h).
 */
#include "nodes.h"

#include <stdarg.h>

struct simn *cluster_new(uint64_t seed)
{
    return cluster_new_t(seed, NULL);
}

struct simn *cluster_new_t(uint64_t seed, const struct node_durations *t)
{
    struct simn *s;
    struct simn_cfg cfg = {.seed = seed, .t = t};
    log_level = LOG_ERROR; /* bans and failed fetches are what these tests make happen */
    CHECK(simn_new(&s, &cfg) == 0);
    return s;
}

uint64_t longest_timeout(void)
{
    struct node_durations d;
    uint64_t m = 0;
    node_durations_init(&d, 1);
#define X(name, ms, doc) m = d.name > m ? d.name : m;
    NODE_DURATIONS(X)
#undef X
    return m;
}

void image_make(struct simn *s, int i, uint8_t tag, uint32_t nchunks, uint32_t chunk_len,
                bool in_registry, struct image *out)
{
    uint8_t seed[2] = {tag, 0x5a};
    sha256_buf(seed, sizeof seed, out->layer);
    uint8_t man[12 + DIGEST_LEN + 8];
    memcpy(man, "MEMMAN01", 8);
    put_le32(man + 8, 1);
    memcpy(man + 12, out->layer, DIGEST_LEN);
    put_le32(man + 12 + DIGEST_LEN, nchunks);
    put_le32(man + 16 + DIGEST_LEN, chunk_len);
    sha256_buf(man, sizeof man, out->manifest);
    digest_fmt(out->manifest, out->ref);
    digest_fmt(out->layer, out->layer_text);
    out->nchunks = nchunks;
    if (i >= 0) {
        CHECK(memstore_layer_add(simn_store(s, (unsigned)i), out->layer, nchunks, chunk_len,
                                 true) == 0);
        CHECK(memstore_blob_add(simn_store(s, (unsigned)i), out->manifest, man, sizeof man, true) ==
              0);
        simn_store_changed(s, (unsigned)i);
    }
    if (in_registry) {
        CHECK(memstore_layer_add(simn_registry(s), out->layer, nchunks, chunk_len, true) == 0);
        CHECK(memstore_blob_add(simn_registry(s), out->manifest, man, sizeof man, true) == 0);
    }
}

void image_partial(struct simn *s, unsigned i, const struct image *im, uint32_t chunk_len)
{
    CHECK(memstore_layer_add(simn_store(s, i), im->layer, im->nchunks, chunk_len, false) == 0);
}

json_t *ask(struct simn *s, unsigned i, uint64_t limit, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    int t = simn_ctl(s, i, line);
    CHECK(t >= 0);
    uint64_t until = simn_now(s) + limit;
    while (!simn_answer(s, t) && simn_now(s) < until)
        simn_run_until(s, simn_now(s) + 1);
    const char *a = simn_answer(s, t);
    if (!a)
        test_fail(__FILE__, __LINE__, "no answer to %s within %" PRIu64 " ms", line, limit);
    json_t *j = json_loads(a, 0, NULL);
    CHECK(j);
    return j;
}

bool answer_ok(const json_t *a)
{
    return json_is_true(json_object_get(a, "ok"));
}

uint64_t counter(struct simn *s, unsigned i, const char *name)
{
    const struct node_counters *c = node_counters_get(simn_node(s, i));
#define X(n, doc)                                                                                  \
    if (!strcmp(name, #n))                                                                         \
        return c->n;
    NODE_COUNTERS(X)
#undef X
    test_fail(__FILE__, __LINE__, "no counter %s", name);
}

void wait_links(struct simn *s, size_t n, uint64_t limit)
{
    uint64_t until = simn_now(s) + limit;
    for (;;) {
        bool all = true;
        for (unsigned i = 0; i < simn_count(s); i++)
            all &= !simn_node(s, i) || node_links_up(simn_node(s, i)) >= n;
        if (all)
            return;
        if (simn_now(s) >= until)
            test_fail(__FILE__, __LINE__, "links not up within %" PRIu64 " ms", limit);
        simn_run_until(s, simn_now(s) + 1);
    }
}
