/*
 * store_int.h - interfaces between the files of store/. No other module includes this.
 *
 *   ref.c       image references (Docker's rules)
 *   manifest.c  OCI / Docker manifests and indexes (jansson), platform choice
 *   registry.c  the OCI distribution client over libcurl: auth, retries, resume
 *   tar.c       streaming tar header parser (ustar, pax, GNU long names)
 *   codec.c     gzip (ISA-L) / zstd / plain: streaming decode with checkpoints, random access
 *   index.c     the layer index: build, serialize (deterministic), parse (bounded)
 *   db.c        the LMDB environment: tables, map growth, stale readers
 *   store.c     layers, images, chunk bodies, cache accounting, eviction
 *   ingest.c    one streaming pass: download -> verify -> store chunks -> index
 */
#ifndef AFSP_STORE_INT_H
#define AFSP_STORE_INT_H

#include "../util/util.h"
#include "store.h"
#include "layer/layer.h"
#include "oci/oci.h"
#include "registry/registry.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* ==== store.c =============================================================================== */

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

/* A layer's record in DB_LAYERS. */
struct layer_rec {
    uint32_t flags; /* LAYER_COMPLETE */
    uint32_t format;
    uint32_t nchunks, nfiles;
    uint64_t size, usize, stored, last_access;
    char media_type[128];
    uint8_t index_digest[DIGEST_LEN];
};
#define LAYER_COMPLETE 1u

/* Path of a layer's blob file, or of a temporary download: written into out (PATH_MAX). */
void store_blob_path(const struct store *s, const uint8_t digest[static DIGEST_LEN], char *out);
/* Creates a unique temporary file for a download of digest; returns an fd (O_RDWR) and the path. */
int store_tmp_create(struct store *s, const uint8_t digest[static DIGEST_LEN], char *path);

/* Reads a layer record; AFSP_E_NOTFOUND if absent. */
int store_layer_get(struct store *s, const uint8_t digest[static DIGEST_LEN], struct layer_rec *r);

/* Reserves need bytes for a pull of the layers in pin (which are never evicted to make room):
 * evicts least-recently-used layers as needed. AFSP_E_TOOBIG if the image can never fit (its
 * layers alone exceed the limit) or if other pulls' reservations leave too little room. On
 * success *id names the reservation. */
int store_reserve(struct store *s, const uint8_t (*pin)[DIGEST_LEN], size_t npin, uint64_t need,
                  uint64_t *id);
/* Gives back what is left of a reservation. */
void store_unreserve(struct store *s, uint64_t id);

/* Makes a verified download visible: renames tmp_path to the blob path, stores the record, the
 * encoded index and an all-present chunk map, accounts the bytes (taking up to resv_bytes from
 * reservation id), evicting LRU layers if the real size overshoots. If the layer is already
 * present the download is dropped. */
int store_layer_commit(struct store *s, uint64_t id, uint64_t resv_bytes,
                       const uint8_t digest[static DIGEST_LEN], const char *media_type,
                       const struct layer_index *ix, const struct buf *index_bytes,
                       const char *tmp_path);
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
/* Marks layers as accessed now (LRU order). Unless force, a layer accessed less than a minute
 * ago is left alone, so that reads do not turn into a write transaction each. */
int store_touch(struct store *s, const uint8_t (*digests)[DIGEST_LEN], size_t n, bool force);

/* Small content-addressed blobs (manifests, configs), stored only after they were verified
 * against their digest. get appends the bytes to out; AFSP_E_NOTFOUND if absent. */
int store_small_put(struct store *s, const uint8_t digest[static DIGEST_LEN], const void *p,
                    size_t n);
/* Ingests a local blob file as a layer (the same pass as a pull: verify, store, index).
 * Returns 0, AFSP_E_DIGEST, ... (ingest.c; used by benchmarks and, later, by peers). */
int store_ingest_file(struct store *s, const char *path, const char *media_type,
                      const uint8_t digest[static DIGEST_LEN]);
/* Records an image (JSON text, see store.c). */
int store_image_put(struct store *s, const char *ref, const char *json);

#endif
