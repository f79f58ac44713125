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

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* ==== ref.c ================================================================================ */

/* An image reference after Docker's normalisation: "debian" is
 * docker.io/library/debian:latest; "host:port/name:tag"; "name@sha256:...". */
struct image_ref {
    char *host;   /* owned; "docker.io" maps to registry host "registry-1.docker.io" in url_host */
    char *repo;   /* owned; "library/debian" */
    char *tag;    /* owned; NULL when digest is set and no tag was given */
    char *digest; /* owned; "sha256:..." or NULL */
};

/* Parses s. Returns 0, AFSP_E_REF (with a message naming what is wrong, not repeating s) or
 * -ENOMEM. On success the caller owns out and releases it with ref_release(). */
int ref_parse(const char *s, struct image_ref *out);
void ref_release(struct image_ref *r);
/* The canonical text "host/repo:tag", "host/repo@digest" or "host/repo:tag@digest".
 * Returns a malloc'd string owned by the caller, or NULL on ENOMEM. */
char *ref_str(const struct image_ref *r);
/* The host to connect to ("registry-1.docker.io" for "docker.io"). Borrowed from r or static. */
const char *ref_api_host(const struct image_ref *r);
/* true when host is a loopback address or name (127.0.0.0/8, ::1, localhost), with or without a
 * port: such registries are reached over plain HTTP. */
bool host_is_loopback(const char *host);

/* ==== manifest.c ============================================================================ */

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define MT_DOCKER_SCHEMA1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* Bounds on what we accept from a registry. */
#define MANIFEST_MAX_BYTES (4u << 20)
#define MANIFEST_MAX_LAYERS 1024

struct platform {
    char os[32], arch[32], variant[32]; /* "" when absent */
};

/* Parses "os/arch[/variant]". Returns 0 or AFSP_E_USAGE. */
int platform_parse(const char *s, struct platform *out);
/* This machine's platform in OCI terms (linux/amd64, linux/arm64/v8, ...). */
void platform_host(struct platform *out);
/* "os/arch" or "os/arch/variant" into out (at least 100 bytes); returns out. */
char *platform_fmt(const struct platform *p, char *out);

enum manifest_kind { MANIFEST_INDEX, MANIFEST_IMAGE };

struct descriptor {
    char media_type[128];
    uint8_t digest[DIGEST_LEN];
    uint64_t size;
    struct platform platform; /* index entries only */
};

struct manifest {
    enum manifest_kind kind;
    char media_type[128];
    struct descriptor config;  /* MANIFEST_IMAGE */
    struct descriptor *layers; /* MANIFEST_IMAGE, owned, nlayers entries */
    size_t nlayers;
    struct descriptor *entries; /* MANIFEST_INDEX, owned */
    size_t nentries;
};

/* Parses a manifest or index body. content_type is the HTTP Content-Type (may be NULL: then the
 * body's mediaType decides). Refuses schema1 (AFSP_E_UNSUPPORTED), anything malformed or over
 * the bounds above (AFSP_E_FORMAT), each with a message. On success release with
 * manifest_release(). */
int manifest_parse(const uint8_t *body, size_t len, const char *content_type, struct manifest *out);
void manifest_release(struct manifest *m);
/* Chooses the entry of an index for want: os and arch must match; the variant must match when
 * both name one (an entry without variant matches any). Returns the entry index or
 * AFSP_E_PLATFORM. */
int manifest_choose(const struct manifest *index, const struct platform *want);

/* ==== registry.c ============================================================================ */

struct registry;

struct registry_opts {
    const char *const *insecure_hosts; /* NULL-terminated; hosts reached over plain HTTP */
    const char *docker_config;         /* path of config.json; NULL: $DOCKER_CONFIG/config.json
                                          or ~/.docker/config.json */
    int max_attempts;                  /* 0: default (5) */
    unsigned backoff_ms;               /* first retry delay; 0: default (200 ms), doubles */
    unsigned timeout_s;                /* no progress for this long fails; 0: default (30 s) */
};

/* Prepares a client for ref's registry and repository. Reads credentials for the host, if any.
 * Returns 0 or a negative code; on success free with registry_free(). */
int registry_new(struct registry **out, const struct image_ref *ref,
                 const struct registry_opts *opts);
void registry_free(struct registry *r);

/* Fetches a manifest by tag or digest ("sha256:..."). A tag is resolved with HEAD first (its
 * Docker-Content-Digest), then the manifest is fetched by GET with Accept for OCI index, Docker
 * list, OCI manifest and Docker schema2. The body is checked against the digest (the requested
 * one, or the one the registry named: AFSP_E_DIGEST) and against MANIFEST_MAX_BYTES
 * (AFSP_E_FORMAT); a malformed reference is AFSP_E_REF. On success body holds the bytes (caller
 * releases), *content_type is malloc'd (caller frees; "" when the registry sent none), digest is
 * set; on failure body is released. A registry object is used by one thread at a time. */
int registry_get_manifest(struct registry *r, const char *reference, struct buf *body,
                          char **content_type, uint8_t digest[static DIGEST_LEN]);

/* Receives blob bytes in order, each byte exactly once even across resumed requests. A non-zero
 * return aborts the download and is returned by registry_get_blob. */
typedef int (*registry_data_cb)(void *arg, const uint8_t *p, size_t n);

/* Streams blob digest of the given size to cb. A dropped connection is resumed with a Range
 * request from the bytes already delivered; 429/503 are retried after Retry-After; other
 * transient errors with backoff. Does not verify the digest (the caller hashes what it
 * receives), but fails with AFSP_E_SIZE if the registry sends more than size bytes or
 * AFSP_E_TRUNCATED if it cannot deliver all of them. */
int registry_get_blob(struct registry *r, const uint8_t digest[static DIGEST_LEN], uint64_t size,
                      registry_data_cb cb, void *arg);
/* The same for bytes [from, end) of the blob (a Range request; a registry that answers with the
 * whole blob works too, more slowly). */
int registry_get_blob_range(struct registry *r, const uint8_t digest[static DIGEST_LEN],
                            uint64_t size, uint64_t from, uint64_t end, registry_data_cb cb,
                            void *arg);

/* Small blobs (configs): fetched whole into body and verified against digest.
 * Fails with AFSP_E_TOOBIG if over max bytes. */
int registry_get_small_blob(struct registry *r, const uint8_t digest[static DIGEST_LEN], size_t max,
                            struct buf *body);

/* For the fuzz target (fuzz/http.c): feeds response header lines (split at '\n') to the
 * client's header parser and the WWW-Authenticate values to its challenge parser; aborts if a
 * bound is broken. */
void registry_headers_fuzz(const uint8_t *p, size_t n);

/* ==== tar.c ================================================================================= */

#define TAR_PATH_MAX 4096      /* a longer path or link target is AFSP_E_FORMAT */
#define TAR_PAX_MAX (1u << 20) /* pax extended header size bound */
#define TAR_XATTR_MAX 64       /* xattrs per entry */

enum tar_type {
    TAR_REG = '0',
    TAR_HARDLINK = '1',
    TAR_SYMLINK = '2',
    TAR_CHR = '3',
    TAR_BLK = '4',
    TAR_DIR = '5',
    TAR_FIFO = '6',
};

struct tar_xattr {
    const char *name;     /* NUL-terminated, e.g. "security.capability" */
    const uint8_t *value; /* binary */
    size_t len;
};

/* One member of the archive. Every pointer is valid only during the callback. */
struct tar_entry {
    const char *path;   /* normalised: no leading "./" or "/", no trailing "/"; "" for the root */
    const char *link;   /* symlink target, or the (normalised) path a hardlink points to; else "" */
    enum tar_type type; /* '7' (contiguous) is reported as TAR_REG */
    uint32_t mode;      /* permission bits, 07777 */
    uint32_t uid, gid;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint64_t size;     /* data bytes; 0 unless TAR_REG */
    uint64_t data_off; /* offset in the uncompressed stream of the first data byte */
    uint32_t devmajor, devminor;
    const struct tar_xattr *xattrs;
    size_t nxattrs;
};

typedef int (*tar_entry_cb)(void *arg, const struct tar_entry *e);

struct tar_parser;

/* Returns 0 or -ENOMEM. cb is called once per member, in order; a non-zero return from cb stops
 * the parser and is returned by tar_parser_push. */
int tar_parser_new(struct tar_parser **out, tar_entry_cb cb, void *arg);
/* Feeds the next n bytes of the uncompressed stream. File data is skipped without copying; for
 * types that carry no data (links, devices, directories, fifos) no data area is skipped whatever
 * the size field says, as Go's archive/tar does. Paths are normalised but ".." components are
 * kept: whoever writes or serves files must refuse them. Xattr names are 1-255 bytes.
 * Returns 0, AFSP_E_FORMAT (bad checksum, bad number, over a bound), AFSP_E_UNSUPPORTED (GNU
 * sparse files, multi-volume), -ENOMEM or cb's return. After an error every call returns the
 * same error. */
int tar_parser_push(struct tar_parser *p, const uint8_t *data, size_t n);
/* The stream ended. Returns 0 if it ended after the end-of-archive block(s) (one zero block is
 * accepted, as by Go) or at a member boundary, AFSP_E_TRUNCATED inside a member. */
int tar_parser_finish(struct tar_parser *p);
void tar_parser_free(struct tar_parser *p);

/* ==== codec.c =============================================================================== */

enum layer_format { LAYER_TAR = 0, LAYER_GZIP = 1, LAYER_ZSTD = 2 };

#define CODEC_WINDOW 32768

/* A place where decoding can start without anything before it. For gzip, in_bit 0 is the start
 * of the blob, where a gzip member header comes first; every other gzip checkpoint is a deflate
 * block header. */
struct checkpoint {
    uint64_t in_bit;  /* position in the compressed blob, in bits (a multiple of 8 unless gzip) */
    uint64_t out_off; /* offset in the uncompressed stream */
    uint32_t win_len; /* bytes of window: deflate history needed to continue (0..32768) */
    uint8_t *window;  /* win_len bytes; owned by whoever holds the checkpoint array */
};

/* Checkpoint spacing: a new one is taken once the stream has advanced by this much since the
 * last, in compressed or uncompressed bytes, whichever comes first. */
#define CODEC_SPAN_IN (256u << 10)
#define CODEC_SPAN_OUT (512u << 10)

typedef int (*codec_out_cb)(void *arg, const uint8_t *p, size_t n);

struct codec_indexer;

/* A streaming decoder that records checkpoints. Output is passed to cb in order. Returns 0,
 * -ENOMEM. */
int codec_indexer_new(struct codec_indexer **out, enum layer_format fmt, codec_out_cb cb,
                      void *arg);
/* Feeds compressed bytes. Returns 0, AFSP_E_FORMAT (corrupt stream), AFSP_E_UNSUPPORTED (zstd
 * window over 2^27), AFSP_E_USAGE (push after finish), -ENOMEM, or cb's non-zero return. */
int codec_indexer_push(struct codec_indexer *ix, const uint8_t *in, size_t n);
/* The compressed stream ended. Returns 0 if it ended cleanly (gzip: all members complete; data
 * after the last member is AFSP_E_FORMAT), AFSP_E_TRUNCATED if it ended early. */
int codec_indexer_finish(struct codec_indexer *ix);
/* Checkpoints so far (the first is always {0, 0}); valid until the next call on ix. The caller
 * may take ownership of the array and the windows with codec_indexer_take(), after which ix
 * holds none (take after finish). */
const struct checkpoint *codec_indexer_checkpoints(struct codec_indexer *ix, size_t *n);
struct checkpoint *codec_indexer_take(struct codec_indexer *ix, size_t *n);
/* Uncompressed bytes passed to the callback so far. */
uint64_t codec_indexer_out_bytes(const struct codec_indexer *ix);
void codec_indexer_free(struct codec_indexer *ix);
void checkpoints_free(struct checkpoint *cps, size_t n);

/* Sparse windows. Decoding from a checkpoint reads only a few of its window's bytes (7% of
 * them on a Debian layer): the others can be zeroed, and then deflate to almost nothing in the
 * index. codec_window_trim zeroes, in window (cp's window or a copy of it), every byte that
 * decoding from cp never reads. in[0..n) are the blob's bytes from byte cp->in_bit / 8 on; the
 * result depends only on them, and CODEC_TRIM_IN of them are always enough for a real encoder.
 * Returns 1 if trimmed, 0 if the input ran out first or cp has no window (window unchanged),
 * AFSP_E_FORMAT for data that does not decode. One trimmer per thread. */
#define CODEC_TRIM_IN (64u << 10)
struct window_trimmer;
int window_trimmer_new(struct window_trimmer **out);
void window_trimmer_free(struct window_trimmer *t);
int codec_window_trim(struct window_trimmer *t, const struct checkpoint *cp, uint8_t *window,
                      const uint8_t *in, size_t n);

/* Reads compressed bytes [off, off+len) of the blob into buf. Returns the number of bytes read
 * (len, or fewer only at the end of the blob) or a negative code. */
typedef ssize_t (*codec_src_fn)(void *arg, uint64_t off, uint8_t *buf, size_t len);

struct codec_reader;

/* Random access to the uncompressed stream of a blob. cps (borrowed, must outlive the reader)
 * are the checkpoints of the blob, in order. Returns 0 or -ENOMEM. */
int codec_reader_new(struct codec_reader **out, enum layer_format fmt, const struct checkpoint *cps,
                     size_t ncps, uint64_t in_size, uint64_t out_size, codec_src_fn src, void *arg);
/* Reads up to n uncompressed bytes at off. Decodes from the nearest checkpoint at or before off,
 * or continues the previous read when that is closer. Returns bytes read (0 at or past the end),
 * AFSP_E_FORMAT for a corrupt stream, AFSP_E_TRUNCATED if the source ends before in_size,
 * AFSP_E_UNSUPPORTED, or the source's error. */
ssize_t codec_read(struct codec_reader *r, uint64_t off, void *buf, size_t n);
/* The offset the decoder is positioned at, or UINT64_MAX (plain tar: always). */
uint64_t codec_reader_pos(const struct codec_reader *r);
/* Uncompressed bytes produced so far, skipped ones included (plain tar: bytes read). */
uint64_t codec_reader_decoded(const struct codec_reader *r);
void codec_reader_free(struct codec_reader *r);

/* The layer format a media type names (ingest.c). Returns 0 or AFSP_E_UNSUPPORTED. */
int layer_format(const char *media_type, enum layer_format *f);

/* ==== index.c =============================================================================== */

/* A chunk: the unit of transfer and storage, a contiguous range of the compressed blob. Chunks
 * start at the multiple of INDEX_CHUNK_ALIGN at or before every checkpoint's byte; a gap longer
 * than INDEX_CHUNK_MAX (a single-frame zstd layer, say) is cut into INDEX_CHUNK_SPLIT pieces,
 * which are transfer units but not decode entry points.
 *
 * A chunk is checked by resuming the blob's SHA-256 at its start from the chaining value the
 * previous chunk ends with (the IV for the first) and comparing the chaining value at its end
 * (the blob's digest, for the last chunk) with its own h. So the chunk hashes are the blob
 * digest's own work, done once at ingest, and a full set of chunks that each check out is the
 * blob: the last one ends in the layer digest. */
#define INDEX_CHUNK_MAX (4u << 20)
#define INDEX_CHUNK_SPLIT (1u << 20)
#define INDEX_CHUNK_ALIGN 64 /* SHA-256's block */
/* Bounds on an index from the network or the store. */
#define INDEX_MAX_BYTES (512u << 20)
#define INDEX_MAX_FILES (4u << 20)

struct index_chunk {
    uint64_t off;
    uint32_t len;
    uint8_t h[DIGEST_LEN]; /* the chaining value at off + len; the blob digest for the last */
};

struct index_file {
    uint32_t path_off, path_len; /* into strtab; NUL-terminated there */
    uint32_t link_off, link_len;
    uint8_t type; /* enum tar_type */
    uint32_t mode, uid, gid;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint32_t devmajor, devminor;
    uint64_t size, data_off;
    uint32_t xattr_first, xattr_count;
};

struct index_xattr {
    uint32_t name_off, name_len, val_off, val_len; /* into strtab */
};

struct layer_index {
    enum layer_format format;
    uint64_t blob_size, tar_size;
    struct index_chunk *chunks;
    uint32_t nchunks;
    struct checkpoint *cps; /* windows owned */
    uint32_t ncps;
    struct index_file *files;
    uint32_t nfiles, files_cap;
    struct index_xattr *xattrs;
    uint32_t nxattrs, xattrs_cap;
    struct buf strtab;
};

/* Appends a tar member (a tar_entry_cb: arg is the struct layer_index). Returns 0, -ENOMEM,
 * AFSP_E_FORMAT when over INDEX_MAX_FILES. */
int index_add_entry(void *arg, const struct tar_entry *e);
/* Derives the chunk table from ix->cps and ix->blob_size and hashes each chunk's bytes read from
 * fd (the complete blob). Returns 0 or a negative code. The blob's digest is the last chunk's h. */
int index_make_chunks(struct layer_index *ix, int fd);

/* The same, incrementally, while a blob is being written: chunker_cut(end) closes the chunks
 * before byte end (a checkpoint's byte, in order; the bytes must be in fd already), hashing them
 * while they are still in the page cache; chunker_finish() closes the rest from ix->cps and
 * ix->blob_size. index_make_chunks() is init + finish. Chunks go to ix->chunks. The bytes are
 * hashed once, in order: the last chunk's h is the blob's SHA-256. */
struct chunker {
    struct layer_index *ix;
    uint32_t cap;
    uint64_t start; /* where the next chunk starts */
    struct sha256c h;
    bool final; /* the blob's last chunk is being cut */
    uint8_t *buf;
};
int chunker_init(struct chunker *c, struct layer_index *ix);
int chunker_cut(struct chunker *c, int fd, uint64_t end);
int chunker_finish(struct chunker *c, int fd);
void chunker_release(struct chunker *c);
/* The canonical, deterministic encoding (little-endian; docs/format.md). */
int index_serialize(const struct layer_index *ix, struct buf *out);
/* Parses and checks an encoding: every offset and length is bounded. Returns 0 or
 * AFSP_E_FORMAT; on success out owns copies and is released with index_release(). */
int index_parse(const uint8_t *p, size_t n, struct layer_index *out);
/* The same without the checkpoints' windows (their window is NULL, win_len still set; their
 * bytes are not inflated or checked): for what needs only the chunks (store_fetch), which would
 * otherwise inflate 32 KiB per checkpoint (about 20 ms for the python image's 465) each time. */
int index_parse_chunks(const uint8_t *p, size_t n, struct layer_index *out);
void index_release(struct layer_index *ix);
/* Checking chunk i on its own (see INDEX_CHUNK_ALIGN): start resumes the blob's SHA-256 at the
 * chunk's offset; after its bytes, check says 0 if they are the chunk, AFSP_E_DIGEST if not (the
 * last chunk must end in digest, the layer's own, whatever the index says). */
void index_chunk_hash_start(const struct layer_index *ix, uint32_t i, struct sha256c *h);
int index_chunk_hash_check(const struct layer_index *ix, uint32_t i,
                           const uint8_t digest[static DIGEST_LEN], struct sha256c *h);
/* The chunk holding compressed byte off (binary search); nchunks if none. */
uint32_t index_chunk_at(const struct layer_index *ix, uint64_t off);

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
