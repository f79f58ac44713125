/*
 * ingest.h - the write side of the store: how layers and images get into it. Space reservations,
 * the one streaming pass that verifies, stores and indexes a layer from any byte source, the
 * commit that makes it visible, layer records, small blobs (manifests, configs) and image
 * records.
 *
 * Its users are the pull (store/pull/, which feeds the pass from a registry), tools that ingest
 * local blob files (benchmarks), and tests. Nothing here knows where bytes come from: a source
 * is a callback. Readers (mounts, the node serving peers) need only store.h.
 *
 *   ingest.c   the streaming pass (ingest_layer, store_ingest_file)
 *   space.c    reservations
 *   layers.c   layer records, commits, access times
 *   images.c   small blobs, image records
 *   store.c    paths of blob files and downloads
 */
#ifndef AFSP_STORE_INGEST_H
#define AFSP_STORE_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/util.h"
#include "store.h"

struct descriptor;  /* oci/oci.h */
struct layer_index; /* layer/layer.h */

/* ---- layer records ------------------------------------------------------------------------- */

/* A layer's record (decoded; its encoding in DB_LAYERS is store.c's). */
struct layer_rec {
    uint32_t flags;  /* LAYER_COMPLETE */
    uint32_t format; /* enum layer_format */
    uint32_t nchunks, nfiles;
    uint64_t size, usize, stored, last_access;
    char media_type[128];
    uint8_t index_digest[DIGEST_LEN];
    /* Without LAYER_INDEX_BUILT: the node that sent the index (all zero if not known), kept
     * with the index in one commit, so that a false index is blamed on its sender even after a
     * restart (docs/security.md). */
    uint8_t index_from[STORE_ID_LEN];
    /* With LAYER_INDEX_BUILT: the SHA-256 of the peer's index this one replaced, when the two
     * say the same in other bytes (index_same), so that readers that opened the layer with it
     * go on (all zero if none). */
    uint8_t index_alias[DIGEST_LEN];
};
#define LAYER_COMPLETE 1u
/* The index was built here from the whole blob, not taken from a peer (docs/security.md): what
 * it says of files (setuid bits, devices, capabilities) is the layer's own. */
#define LAYER_INDEX_BUILT 2u

/* Reads a layer record into *r (caller's); AFSP_E_NOTFOUND if absent. */
int store_layer_get(struct store *s, const uint8_t digest[static DIGEST_LEN], struct layer_rec *r);

/* Path of a layer's blob file, or of a temporary download: written into out (PATH_MAX). */
void store_blob_path(const struct store *s, const uint8_t digest[static DIGEST_LEN], char *out);
/* Creates a unique temporary file for a download of digest; returns an fd (O_RDWR, the caller's
 * to close) and writes its path into path (PATH_MAX), or a negative code. */
int store_tmp_create(struct store *s, const uint8_t digest[static DIGEST_LEN], char *path);

/* ---- space --------------------------------------------------------------------------------- */

/* Reserves need bytes for a pull of the layers in pin (which are never evicted to make room):
 * evicts least-recently-used layers as needed. AFSP_E_TOOBIG if the image can never fit (its
 * layers alone exceed the limit) or if other pulls' reservations or layers pinned by mounts leave
 * too little room; it has then evicted nothing. On success *id names the reservation. */
int store_reserve(struct store *s, const uint8_t (*pin)[DIGEST_LEN], size_t npin, uint64_t need,
                  uint64_t *id);
/* Gives back what is left of a reservation. */
void store_unreserve(struct store *s, uint64_t id);

/* ---- committing ---------------------------------------------------------------------------- */

/* Makes a verified download visible: renames tmp_path to the blob path, stores the record, the
 * encoded index and an all-present chunk map, accounts the bytes (taking up to resv_bytes from
 * reservation id), evicting LRU layers if the real size overshoots. If the layer is already
 * present the download is dropped. ix and index_bytes are borrowed. Returns 0 or a negative
 * code; the temporary file is gone either way. */
int store_layer_commit(struct store *s, uint64_t id, uint64_t resv_bytes,
                       const uint8_t digest[static DIGEST_LEN], const char *media_type,
                       const struct layer_index *ix, const struct buf *index_bytes,
                       const char *tmp_path);
/* Marks layers as accessed now (LRU order). Unless force, a layer accessed less than a minute
 * ago is left alone, so that reads do not turn into a write transaction each. */
int store_touch(struct store *s, const uint8_t (*digests)[DIGEST_LEN], size_t n, bool force);

/* Small content-addressed blobs (manifests, configs), stored only after they were verified
 * against their digest (store_small_get in store.h reads them). The bytes are copied. */
int store_small_put(struct store *s, const uint8_t digest[static DIGEST_LEN], const void *p,
                    size_t n);
/* Records an image under its canonical reference: JSON text with "ref", "manifest", "platform",
 * "config", "layers" (digest, size, mediaType) and "pulled" (images.c reads it back for
 * store_images_list). Replaces an earlier record of the same reference. */
int store_image_put(struct store *s, const char *ref, const char *json);

/* ---- downloads under way (downloads.c; read through store_dl_open) ------------------------- */

/* The streaming pass registers its temporary file (at path, opened here again read-only, so
 * that a rename or unlink does not pull it from readers) for a layer of size bytes; then
 * publishes the bytes written to it; then ends it with the pass's result (after the commit, so
 * that a reader that finds no download finds the layer). */
int store_dl_begin(struct store *s, const uint8_t digest[static DIGEST_LEN], uint64_t size,
                   const char *path, struct store_dl **out);
void store_dl_progress(struct store_dl *d, uint64_t written);
void store_dl_end(struct store_dl *d, int rc);

/* ---- the streaming pass (ingest.c) ---------------------------------------------------------- */

/* One layer, one pass: its bytes are written to a temporary file, decoded (layer/), parsed as
 * tar and indexed, and hashed chunk by chunk, on three threads. Only when the whole blob matches
 * its digest is it committed (store_layer_commit); on any failure nothing is visible. */
struct ingest;

/* A source of a layer's bytes: calls ingest_data(in, ...) with every byte, in order, and returns
 * 0 at the end or a negative code (which ends the pass with it). */
typedef int (*ingest_feed_fn)(void *src, struct ingest *in);
/* Takes the next n bytes of the blob. in is the struct ingest the feed was given (void * so that
 * this is a registry_data_cb). Returns 0 or a negative code (a local disk error), which the feed
 * must return. */
int ingest_data(void *in, const uint8_t *p, size_t n);
/* Called on the feed's thread, at most every 100 ms, with the bytes received so far. */
typedef void (*ingest_progress_cb)(void *arg, uint64_t received);

/* Ingests the layer d (digest, media type and size; borrowed) from feed(src, ...): verifies,
 * stores, indexes and commits it, taking up to resv_bytes from reservation resv_id. progress may
 * be NULL. Returns 0, AFSP_E_SIZE (not the size d says), AFSP_E_DIGEST, AFSP_E_UNSUPPORTED (a
 * media type that names no layer format), the feed's error, or another negative code. */
int ingest_layer(struct store *s, ingest_feed_fn feed, void *src, const struct descriptor *d,
                 uint64_t resv_id, uint64_t resv_bytes, ingest_progress_cb progress,
                 void *progress_arg);
/* What to reserve for a layer of size bytes: the blob plus a generous allowance for its index
 * (file table and windows run at 1-4% of the blob); the real figure replaces it at commit. */
uint64_t ingest_allowance(uint64_t size);

/* Ingests a local blob file as a layer (the same pass as a pull: verify, store, index), with a
 * reservation of its own. Returns 0, AFSP_E_DIGEST, AFSP_E_TOOBIG, ... (used by benchmarks and
 * tests). */
int store_ingest_file(struct store *s, const char *path, const char *media_type,
                      const uint8_t digest[static DIGEST_LEN]);

#endif
