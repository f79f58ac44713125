/*
 * store.h - the public header of the store: the node's LMDB store of layers, images and layer
 * indexes, partial layers filled chunk by chunk, the cache limit and eviction, and random access
 * to layer contents. It knows nothing of the network: how layers reach the store is the pull's
 * business (store/pull/pull.h: registries, peers, lazy pulls, Range requests), over the write
 * side in store/ingest.h.
 *
 * The other public headers of store/: oci/oci.h (references, manifests, configs), layer/layer.h
 * (tar, codecs, the layer index), registry/registry.h (the libcurl client), ingest.h and
 * pull/pull.h. store_int.h and db.h are store/'s own.
 *
 * Layout of a data directory DATA:
 *   DATA/store/        the LMDB environment (metadata: layers, images, indexes, chunk presence)
 *   DATA/blobs/sha256/ one file per layer blob, chunk bodies at their own offsets (sparse)
 *   DATA/tmp/          downloads in progress; read only by their writer's process (which may
 *                      relay them to peers: store_dl_open)
 *
 * A store may be opened by several processes at once (LMDB's locking); every write goes through
 * one LMDB write transaction, so concurrent pulls reserve space safely.
 */
#ifndef AFSP_STORE_H
#define AFSP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../util/util.h"

struct store;

/* A node ID (p2p's P2P_ID_LEN): who sent a layer's index. */
#define STORE_ID_LEN 32

struct store_opts {
    const char *dir;          /* the data directory; created if missing */
    uint64_t cache_max_bytes; /* 0: min(1 TiB, 60% of the free space of dir's filesystem) */
    bool readonly;            /* open without writing (mounts, listings) */
    uint64_t map_size;        /* LMDB map size; 0: the default (256 GiB of address space),
                                 fixed while open (store/db.h); tests set a small one */
};

/* Opens (creating if needed) the store in opts->dir. Clears stale LMDB reader slots and
 * reservations of dead processes. Returns 0 or a negative code (with err_msg set); on success
 * *out is owned by the caller and closed with store_close(). */
int store_open(struct store **out, const struct store_opts *opts);
void store_close(struct store *s);
/* Whether dir holds a store (so that read-only commands can treat a missing one as empty). */
bool store_exists(const char *dir);

/* The effective cache limit in bytes. */
uint64_t store_cache_max(const struct store *s);

/* Called for every layer the store evicts, after the eviction is committed, on the thread that
 * evicted. A write that evicts and then fails (a reservation or a commit that still cannot fit)
 * has evicted nothing, and the hook is not called. */
typedef void (*store_evict_cb)(void *arg, const uint8_t digest[static DIGEST_LEN]);
void store_set_evict_hook(struct store *s, store_evict_cb cb, void *arg);

/* ---- partial layers, filled chunk by chunk ------------------------------------------------ */

/* A layer filled chunk by chunk (fetch.c) from any source of chunk bytes (peers, a registry's
 * Range answers: store/pull/), in place: it is a partial layer of the store from the
 * start (record, index, chunk map, sparse blob file), readable chunk by chunk as chunks are
 * marked present. Each chunk's bytes are checked before they are written; a flush syncs them and
 * marks them present. When every chunk checks out the layer is complete: the chain of chunk
 * hashes ends in the layer digest. One thread at a time per handle. */

struct store_fetch;

/* Adds the layer as a partial layer (unless the store has it, whole or in part) and opens it.
 * The index comes from a peer, from (NULL: not known), kept with it in its record: refused if
 * it does not describe the layer (size, format, or a chain that does not end in its digest). */
int store_fetch_new(struct store *s, const uint8_t digest[static DIGEST_LEN],
                    const char *media_type, uint64_t size, const uint8_t *index, size_t index_len,
                    const uint8_t *from, struct store_fetch **out);
/* Opens a layer the store has, whole or in part (AFSP_E_NOTFOUND if neither), with its stored
 * index and chunk map. */
int store_fetch_open(struct store *s, const uint8_t digest[static DIGEST_LEN],
                     struct store_fetch **out);
/* Closes the handle; chunks written but not flushed are simply not marked present. */
void store_fetch_free(struct store_fetch *f);
const uint8_t *store_fetch_digest(const struct store_fetch *f);
/* The node that sent the index the handle checks chunks against (STORE_ID_LEN bytes), or NULL
 * when the index was built here or its sender is not known; the index's SHA-256 goes to ix. */
const uint8_t *store_fetch_sender(const struct store_fetch *f, uint8_t ix[DIGEST_LEN]);
uint32_t store_fetch_nchunks(const struct store_fetch *f);
/* Chunks neither present when opened nor checked and written since. */
uint32_t store_fetch_missing(const struct store_fetch *f);
/* Chunk i is bytes [*off, *off + *len) of the blob. */
void store_fetch_chunk(const struct store_fetch *f, uint32_t i, uint64_t *off, uint32_t *len);
/* The chunk holding blob byte off. */
uint32_t store_fetch_chunk_at(const struct store_fetch *f, uint64_t off);
bool store_fetch_has(const struct store_fetch *f, uint32_t i);

/* One chunk's bytes, in order, in pieces: begin, data for each piece (hashed, kept), end (checks,
 * then writes; only then the chunk counts) or drop. A chunk that fails can be begun again. */
struct store_chunk_in {
    struct sha256c h;
    uint32_t i, got;
    uint8_t *buf;
};
void store_fetch_chunk_begin(struct store_fetch *f, uint32_t i, struct store_chunk_in *w);
/* Returns 0, AFSP_E_SIZE (more bytes than the chunk has), or -ENOMEM. */
int store_fetch_chunk_data(struct store_fetch *f, struct store_chunk_in *w, const uint8_t *p,
                           size_t n);
/* Returns 0, AFSP_E_SIZE (short), AFSP_E_DIGEST (the bytes are not the chunk), or a write error.
 * Frees what the chunk held either way. */
int store_fetch_chunk_end(struct store_fetch *f, struct store_chunk_in *w);
/* Forgets a chunk begun but not ended. */
void store_fetch_chunk_drop(struct store_chunk_in *w);
/* Syncs the chunks written since the last flush and marks them present (their bytes taken first
 * from reservation resv_id if not 0). AFSP_E_NOTFOUND if the layer was evicted meanwhile. */
int store_fetch_flush(struct store_fetch *f, uint64_t resv_id);
/* Flushes, then AFSP_E_TRUNCATED unless every chunk is present. */
int store_fetch_finish(struct store_fetch *f, uint64_t resv_id);

/* ---- downloads under way ------------------------------------------------------------------ */

/* A layer this process is downloading whole (the streaming pass, store/ingest.h), read as its
 * bytes come, so that a node can relay it to peers waiting for the same layer (docs/swarm.md).
 * The bytes are not checked: a reader's own streaming pass checks them against the layer
 * digest, as it does a registry's. Thread-safe. */
struct store_dl;
/* Opens the download of digest under way here (AFSP_E_NOTFOUND if none; one that ended is not
 * found, its layer is in the store or nowhere). Closed with store_dl_close. */
int store_dl_open(struct store *s, const uint8_t digest[static DIGEST_LEN], struct store_dl **out);
void store_dl_close(struct store_dl *d);
/* Bytes [0, *written) can be read; *size is the blob's. Returns 0 (running), 1 (ended: the layer
 * was committed) or the code it failed with. */
int store_dl_state(const struct store_dl *d, uint64_t *written, uint64_t *size);
/* Bytes [off, off + n) of the download; AFSP_E_USAGE if they are not all written yet. */
int store_dl_read(const struct store_dl *d, uint64_t off, void *buf, size_t n);

/* ---- listings ------------------------------------------------------------------------------ */

struct image_info {
    char ref[512]; /* canonical reference as pulled */
    uint8_t manifest_digest[DIGEST_LEN];
    char platform[100];
    size_t nlayers, nlayers_present; /* present: whole or in part */
    size_t nlayers_complete;
    size_t nlayers_verified;       /* complete, and the index built here from the blob */
    uint64_t size;                 /* compressed bytes of all layers */
    uint64_t pulled_ns;            /* wall-clock time of the pull */
    uint8_t (*layers)[DIGEST_LEN]; /* owned by the listing */
};

struct layer_info {
    uint8_t digest[DIGEST_LEN];
    char media_type[128];
    uint64_t size;  /* compressed (blob) bytes */
    uint64_t usize; /* uncompressed (tar) bytes */
    uint32_t nchunks, chunks_present;
    uint32_t nfiles;
    uint64_t stored_bytes; /* bytes this layer counts against the cache limit */
    uint64_t last_access_ns;
    bool complete;    /* whole blob present and verified against its digest */
    bool index_built; /* its index was built here from the whole blob (not a peer's) */
};

/* Lists images or layers. On success *out is a malloc'd array owned by the caller (free with
 * store_images_free / free()). */
int store_images_list(struct store *s, struct image_info **out, size_t *n);
/* Finds the image pulled as ref (any spelling of the same reference, or its manifest digest).
 * Returns 0 or AFSP_E_NOTFOUND / AFSP_E_REF; release out->layers with free(). */
int store_image_find(struct store *s, const char *ref, struct image_info *out);
void store_images_free(struct image_info *v, size_t n);
int store_layers_list(struct store *s, struct layer_info **out, size_t *n);

struct store_usage {
    uint64_t used, reserved, limit;
    size_t nlayers, nimages;
};
int store_usage_get(struct store *s, struct store_usage *u);

/* ---- eviction ------------------------------------------------------------------------------ */

/* Pins layers d[0..n) for this process: eviction (for space, or prune) passes over them while
 * the process lives, as long as it has not unpinned them. A mount pins its image's layers. */
int store_pin(struct store *s, const uint8_t (*d)[DIGEST_LEN], size_t n);
int store_unpin(struct store *s, const uint8_t (*d)[DIGEST_LEN], size_t n);

/* Evicts least-recently-accessed layers until percent% of the stored bytes are freed (at least
 * one layer if percent > 0 and any is stored). *freed receives the bytes freed. */
int store_prune(struct store *s, unsigned percent, uint64_t *freed);

/* ---- reading layer contents ---------------------------------------------------------------- */

struct layer_file {
    const char *path; /* valid while the layer handle is open */
    const char *link;
    char type; /* tar type: '0' regular, '1' hardlink, '2' symlink, '3' chr, '4' blk, '5' dir, '6'
                  fifo */
    uint32_t mode, uid, gid, devmajor, devminor;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint64_t size, data_off;
    uint32_t nxattrs;
};

struct store_layer;

/* Opens a stored layer for random access through its index. Returns 0, AFSP_E_NOTFOUND. */
int store_layer_open(struct store *s, const uint8_t digest[static DIGEST_LEN],
                     struct store_layer **out);
void store_layer_close(struct store_layer *l);
uint32_t store_layer_nfiles(const struct store_layer *l);
/* Whether the layer's index was built here from its whole blob (else it is a peer's, and what it
 * says of files is the word of the node that built it: docs/security.md). */
bool store_layer_index_built(const struct store_layer *l);
/* File i (0-based, archive order). Pointers valid while l is open. */
int store_layer_file(const struct store_layer *l, uint32_t i, struct layer_file *out);
/* Xattr j of file i: name and value valid while l is open. */
int store_layer_xattr(const struct store_layer *l, uint32_t i, uint32_t j, const char **name,
                      const uint8_t **value, size_t *len);
/* Reads n bytes at off of the uncompressed tar stream (not thread-safe: one reader per handle;
 * threads use store_reader). Returns bytes read or a negative code. */
ssize_t store_layer_read(struct store_layer *l, uint64_t off, void *buf, size_t n);

/* Every compressed byte a read uses comes from a chunk that was checked against its SHA-256 in
 * the index, the first time the handle used it: a chunk that fails is never decoded, the read
 * fails with AFSP_E_DIGEST, and the failure is logged once per chunk and handle. A chunk that is
 * not present (a partial layer) is asked of the store's fetcher, and without one (or if it
 * fails) the read fails with AFSP_E_NOTFOUND or the fetcher's code. */

/* Gets chunks [first, last] of layer digest into the store (the node does, for a mount), and
 * returns once they are written to the layer's blob file (0: the reader takes them as present;
 * they may be marked in the chunk map only later, and each is checked against the index before
 * its first use all the same), or once another request for some of them has ended (1: the reader
 * looks again at what is missing); called by reading threads, concurrently. With
 * STORE_FETCH_AGAIN (one chunk at most once per handle) the fetcher said those chunks were
 * written but they fail their check: they are to be fetched anew, not taken from its memory. */
#define STORE_FETCH_AGAIN 1u /* flags: the chunks, said written, did not check out: anew */
typedef int (*store_fetcher_fn)(void *arg, const uint8_t digest[DIGEST_LEN], uint32_t first,
                                uint32_t last, unsigned flags);
void store_set_fetcher(struct store *s, store_fetcher_fn fn, void *arg);
/* Told the first time a handle of layer digest uses chunk i (checked, for a read), from the
 * reading thread: in the order reads needed them (a mount records its start trace). */
typedef void (*store_chunk_watch_fn)(void *arg, const uint8_t digest[DIGEST_LEN], uint32_t i);
void store_set_chunk_watch(struct store *s, store_chunk_watch_fn fn, void *arg);

/* A peer's index judged: layer digest, completed (by its chunks or a whole download), had its
 * index built again from the blob, which the digest proves: blob_ix (the new index's SHA-256),
 * where the index that from sent (NULL: not known) was peer_ix. It was false if the two say
 * different things (index_same), not only in other bytes. The layer now holds the blob's index;
 * readers that opened it with a false one fail from then on (AFSP_E_DIGEST), those that opened
 * it with one that said the same go on. Called on the thread that committed, after the commit. */
typedef void (*store_index_judged_fn)(void *arg, const uint8_t digest[DIGEST_LEN],
                                      const uint8_t *from, const uint8_t peer_ix[DIGEST_LEN],
                                      const uint8_t blob_ix[DIGEST_LEN], bool was_false);
void store_set_index_watch(struct store *s, store_index_judged_fn fn, void *arg);

/* The uncompressed (tar) size of the layer. */
uint64_t store_layer_size(const struct store_layer *l);
/* Spans: the uncompressed stream cut at the layer's checkpoints. Decoding can start at a span's
 * first byte without anything before it, so a read costs the bytes from its span's start. */
uint32_t store_layer_nspans(const struct store_layer *l);
/* Span k is [*start, *end). */
void store_layer_span(const struct store_layer *l, uint32_t k, uint64_t *start, uint64_t *end);
/* The span holding uncompressed byte off (the last one if off is past the end). */
uint32_t store_layer_span_at(const struct store_layer *l, uint64_t off);

/* ---- start traces (trace.c, docs/format.md) ------------------------------------------------
 * The chunks an image's first cold start read, in order: entry (layer, chunk) names chunk
 * `chunk` of the manifest's layer number `layer`. At most STORE_TRACE_MAX entries, none twice. */
#define STORE_TRACE_MAX 8192
struct store_trace_ent {
    uint32_t layer, chunk;
};
/* The key a trace is kept and found under: SHA-256 of a tag and the manifest digest. */
void store_trace_key(const uint8_t manifest[static DIGEST_LEN], uint8_t key[static DIGEST_LEN]);
/* Appends the encoding of the first STORE_TRACE_MAX entries of e to out. */
int store_trace_encode(const uint8_t manifest[static DIGEST_LEN], const struct store_trace_ent *e,
                       size_t n, struct buf *out);
/* Decodes and bounds an encoding (from a peer: hostile): its manifest digest and entries (*out,
 * freed by the caller). Whether each entry names a chunk the image has is the reader's check.
 * Returns 0, AFSP_E_FORMAT or -ENOMEM. */
int store_trace_decode(const uint8_t *p, size_t len, uint8_t manifest[static DIGEST_LEN],
                       struct store_trace_ent **out, size_t *n);
/* Whether an encoded trace (a peer's) is one of this image (manifest, layers: the manifest's
 * layers in order, each held in the store): each entry names a chunk the layer has. Returns 0,
 * AFSP_E_FORMAT (it does not fit) or another error. */
int store_trace_fits(struct store *s, const uint8_t *p, size_t len,
                     const uint8_t manifest[static DIGEST_LEN], const uint8_t (*layers)[DIGEST_LEN],
                     size_t nlayers);
/* Keeps an encoded trace under its manifest's key unless one is kept there already. Returns 0
 * (kept), 1 (there was one: it stays), AFSP_E_FORMAT or another error. */
int store_trace_put(struct store *s, const uint8_t *p, size_t len);
/* Appends the trace kept under key to out; AFSP_E_NOTFOUND if none. */
int store_trace_get(struct store *s, const uint8_t key[static DIGEST_LEN], struct buf *out);
/* The keys of the traces kept (*keys freed by the caller). */
int store_traces_list(struct store *s, uint8_t (**keys)[DIGEST_LEN], size_t *n);

/* Appends a small blob (a manifest or config, kept once verified) to out; AFSP_E_NOTFOUND if
 * absent. */
int store_small_get(struct store *s, const uint8_t digest[static DIGEST_LEN], struct buf *out);
/* Appends the layer's encoded index, as stored, to out (what a peer is sent). Returns 0 or
 * AFSP_E_NOTFOUND. store_present_get appends its chunk map (bit i: chunk i present). */
int store_index_bytes(struct store *s, const uint8_t digest[static DIGEST_LEN], struct buf *out);
/* A layer completed from peers holds their index: builds its index from the blob (which the
 * digest proves) and keeps it (LAYER_INDEX_BUILT). A false peer index is replaced and reported
 * (store_set_index_watch). Returns 0 (also at once for a layer verified already; the layer now
 * holds a true index, whether or not the peer's was), AFSP_E_USAGE (not complete), or another
 * error. A pass over the blob: the node runs it in the background, off the pull's path. */
int store_layer_verify(struct store *s, const uint8_t digest[static DIGEST_LEN]);
/* ... only if the index was built here from the whole blob (LAYER_INDEX_BUILT; else
 * AFSP_E_NOTFOUND): what peers are sent, so that every index on the wire is its sender's own
 * work, and a false one is the sender's lie (docs/security.md). */
int store_index_built_bytes(struct store *s, const uint8_t digest[static DIGEST_LEN],
                            struct buf *out);
int store_present_get(struct store *s, const uint8_t digest[static DIGEST_LEN], struct buf *out);
/* The layer's chunks (what peers exchange): chunk i is blob bytes [*off, *off + *len). */
uint32_t store_layer_nchunks(const struct store_layer *l);
void store_layer_chunk(const struct store_layer *l, uint32_t i, uint64_t *off, uint32_t *len);
bool store_layer_chunk_present(const struct store_layer *l, uint32_t i);
/* Takes in chunks marked present since the handle was opened (by the node, for a partial
 * layer). Thread-safe. */
int store_layer_refresh(struct store_layer *l);
/* AFSP_E_DIGEST if the index l was opened with was a peer's and has been shown false (the layer
 * was completed and replaced with the index its blob gives), else 0. Cheap: a layer whose index
 * was built here returns at once, another looks at the store at most every STORE_CHECK_NS. */
#define STORE_CHECK_NS 100000000ull
int store_layer_check(struct store_layer *l);
/* Raw (compressed) blob bytes, as stored: what a peer is sent; it checks them itself. Returns 0,
 * AFSP_E_USAGE (past the end), or a read error. Thread-safe. */
int store_layer_read_blob(struct store_layer *l, uint64_t off, void *buf, size_t n);

/* Makes sure every chunk that decoding uncompressed bytes [off, off + len) needs is present
 * (fetching missing ones) and verified. Thread-safe. Returns 0 or a negative code. */
int store_layer_fetch(struct store_layer *l, uint64_t off, uint64_t len);

/* A decoder of one layer for one thread at a time; a handle may have many, used concurrently.
 * The handle must outlive its readers. */
struct store_reader;
int store_reader_new(struct store_layer *l, struct store_reader **out);
void store_reader_free(struct store_reader *r);
/* Reads n bytes at off (fewer only at the end of the stream). Decodes from the start of off's
 * span, or continues from where the previous read ended when that is in the same span and not
 * past off. Returns bytes read or a negative code. */
ssize_t store_reader_read(struct store_reader *r, uint64_t off, void *buf, size_t n);
/* Where a read costs no decoding beyond its own bytes: the end of the previous read, or
 * UINT64_MAX when the decoder is not positioned (always, for plain tar: every read is direct). */
uint64_t store_reader_pos(const struct store_reader *r);
/* Uncompressed bytes this reader has produced, counting those decoded only to be skipped. */
uint64_t store_reader_decoded(const struct store_reader *r);

#endif
