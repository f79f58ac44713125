/*
 * stores.h - what the store's unit tests (test_store*.c) share: a store in the test's directory
 * and small plain-tar layers committed to it.
 */
#ifndef AFSP_TEST_STORES_H
#define AFSP_TEST_STORES_H

#include "../../store/store.h"
#include "test.h"

/* Opens (creating) the store in the test directory's sub, with a cache limit; fails the test if
 * it cannot. */
struct store *open_at(const char *sub, uint64_t limit);
/* The bytes of put_layer's layer of seed and size (malloc'ed; the caller frees them). */
uint8_t *layer_bytes(int seed, size_t size);
/* Commits a plain-tar "layer" of size bytes whose digest (into d) is derived from seed. */
int put_layer(struct store *s, uint64_t resv, int seed, size_t size, uint8_t d[DIGEST_LEN]);
/* Whether the store has a record of layer d. */
int has_layer(struct store *s, const uint8_t d[DIGEST_LEN]);

#endif
