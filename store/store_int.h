/*
 * store_int.h - interfaces between the files of the store's core (the .c files directly in
 * store/) that touch the LMDB environment and what is in it. Only they include this (and db.h):
 * nothing outside store/, nor ingest.c, nor store/'s parts with a public header of their own
 * (oci/, layer/, registry/, pull/), which go through store.h and ingest.h.
 *
 *   db.c        the LMDB environment: tables, map growth, stale readers
 *   store.c     layers, images, chunk bodies, cache accounting, eviction, random access
 *   fetch.c     partial layers filled chunk by chunk
 */
#ifndef AFSP_STORE_INT_H
#define AFSP_STORE_INT_H

#include "../util/util.h"
#include "store.h"
#include "layer/layer.h"
#include "oci/oci.h"
#include "ingest.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "db.h"

struct store {
    char *dir;
    struct db db;
    uint64_t cache_max;
    store_evict_cb evict_cb;
    void *evict_arg;
    store_fetcher_fn fetcher;
    void *fetcher_arg;
};

/* Adds a partial layer: its record and index, an empty chunk map, and a sparse blob file of the
 * blob's size that chunks are written into (fetch.c). Counts only the index against the limit;
 * chunks count as store_chunks_mark adds them. Nothing happens if the layer is there already,
 * whole or in part. */
int store_layer_add_partial(struct store *s, const uint8_t digest[static DIGEST_LEN],
                            const char *media_type, const struct layer_index *ix,
                            const struct buf *index_bytes);
/* Marks the chunks set in map (written, checked and fdatasync'ed) present, counting their bytes
 * (taken first from reservation resv_id if not 0), evicting LRU layers as needed; the layer is
 * complete once every chunk is. AFSP_E_NOTFOUND if the layer was evicted meanwhile. */
int store_chunks_mark(struct store *s, const uint8_t digest[static DIGEST_LEN],
                      const struct layer_index *ix, const uint8_t *map, uint64_t resv_id,
                      bool *complete);
#endif
