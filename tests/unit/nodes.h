/*
 * nodes.h - what the node core's unit tests (test_node_*.c) share: a cluster of cores on
 * sim/'s virtual clock, images in its stores and registry, control requests that wait for their
 * answer.
 */
#ifndef AFSP_TEST_NODES_H
#define AFSP_TEST_NODES_H

#include "../../node/node.h"
#include "../../sim/sim.h"
#include "test.h"

#include <jansson.h>

#define SEC 1000ull

/* A cluster on the default durations (divisor 1), 1 ms links, seed s. */
struct simn *cluster_new(uint64_t seed);
/* ... on durations t. */
struct simn *cluster_new_t(uint64_t seed, const struct node_durations *t);
/* The longest duration of the node (what "idle for twice every timeout" is measured by). */
uint64_t longest_timeout(void);

/* An image of one layer of nchunks chunks (chunk_len bytes each) whose digests come from tag:
 * put whole into node i's store (i < 0: nowhere) and the registry (if in_registry). Returns
 * the layer digest in layer and the manifest digest in manifest ("sha256:..." in ref). */
struct image {
    uint8_t layer[DIGEST_LEN], manifest[DIGEST_LEN];
    char ref[DIGEST_STR_LEN + 1], layer_text[DIGEST_STR_LEN + 1];
    uint32_t nchunks;
};
void image_make(struct simn *s, int i, uint8_t tag, uint32_t nchunks, uint32_t chunk_len,
                bool in_registry, struct image *out);
/* Node i holds the image's layer in part (its index, no chunk) and its manifest. */
void image_partial(struct simn *s, unsigned i, const struct image *im, uint32_t chunk_len);

/* Sends a request line (printf-style) to node i and runs the cluster until it is answered (or
 * limit ms of virtual time pass: the check fails). Returns the answer, parsed (json_decref). */
json_t *ask(struct simn *s, unsigned i, uint64_t limit, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Whether an answer is {"ok": true, ...}. */
bool answer_ok(const json_t *a);
uint64_t counter(struct simn *s, unsigned i, const char *name);
/* Runs until every node has at least n up links (or limit: the check fails). */
void wait_links(struct simn *s, size_t n, uint64_t limit);

#endif
