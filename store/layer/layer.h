/*
 * layer.h - the public header of store/layer/: the layer format. How a layer blob (plain tar,
 * gzip or zstd, exactly as a registry serves it) is decoded, parsed and indexed, and how its
 * index is encoded. Pure functions of bytes: no I/O but through the caller's callbacks and file
 * descriptors, no store, no network.
 *
 *   tar.c, pax.c           the streaming tar header parser (ustar, v7, GNU, pax)
 *   codec.c, gzip.c,       decoding with random-access checkpoints: the plumbing and plain tar,
 *   zstd.c                 gzip through ISA-L, zstd; and the sparse windows (gzip.c)
 *   index.c                the layer index: build, chunk, serialize (deterministic), parse
 *
 * The index is a function of the blob and of the constants below (and of ISA-L's deflate output
 * for the windows): changing one changes every index (docs/format.md).
 */
#ifndef AFSP_STORE_LAYER_H
#define AFSP_STORE_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../../util/util.h"

/* ==== tar.c, pax.c ========================================================================== */

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

/* ==== codec.c, gzip.c, zstd.c =============================================================== */

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
    /* A parsed index's checkpoint has no window but its stored form (zlib, or raw when zwin_len
     * == win_len), inflated by the reader when it starts there: a parse costs memory in
     * proportion to the index's size, not 32 KiB per checkpoint. Borrowed from the index. */
    const uint8_t *zwin;
    uint32_t zwin_len;
    uint32_t zwin_off; /* a parsed index's: where the stored window lies in its windows table */
};

/* A checkpoint's window (win_len bytes): its own, its stored form when stored raw, or that form
 * inflated into buf with st (ISA-L's, the caller's). NULL for a stored window that does not
 * inflate to exactly its length. */
struct inflate_state;
const uint8_t *checkpoint_window(const struct checkpoint *cp, struct inflate_state *st,
                                 uint8_t buf[static CODEC_WINDOW]);

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
/* The stored form (as zwin, at most CODEC_WINDOW bytes) of checkpoint k's window, into buf; its
 * length in *len. Returns 0 or a negative code. */
typedef int (*codec_win_fn)(void *arg, size_t k, uint8_t buf[static CODEC_WINDOW], uint32_t *len);
/* Where the reader gets the windows of checkpoints that have a length but no zwin (an index
 * parsed without its windows, index_parse_lean): each is asked for when decoding starts there,
 * and must inflate to exactly its length. */
void codec_reader_set_windows(struct codec_reader *r, codec_win_fn fn, void *arg);
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

/* The layer format a media type names, by its suffix ("gzip", "zstd", "tar"). Returns 0 or
 * AFSP_E_UNSUPPORTED. */
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
/* The most uncompressed bytes one byte of blob can decode to: deflate's limit is 1032:1 (a
 * 258-byte match in two 1-bit codes; zlib's technical notes), zstd's 32768:1 (an RLE block: a
 * 3-byte header and one byte give 128 KiB; RFC 8878 3.1.1.2); plain tar is 1:1. An index that
 * claims more is refused: the mount sizes its piece table by it. */
#define INDEX_MAX_RATIO_GZIP 1032u
#define INDEX_MAX_RATIO_ZSTD 32768u

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
    struct checkpoint *cps; /* windows owned; zwin point into windows */
    uint32_t ncps;
    struct index_file *files;
    uint32_t nfiles, files_cap;
    struct index_xattr *xattrs;
    uint32_t nxattrs, xattrs_cap;
    struct buf strtab;
    struct buf windows; /* a parsed index: the stored windows, as encoded */
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
/* Parses and checks an encoding: every offset and length is bounded, and so is what the parse
 * costs: memory at most about twice n (windows stay deflated: each checkpoint's zwin points into
 * out->windows, inflated only by a reader that starts there) and time linear in n. The
 * uncompressed size must be one the blob can decode to (INDEX_MAX_RATIO_*). Returns 0 or
 * AFSP_E_FORMAT; on success out owns copies and is released with index_release(). */
int index_parse(const uint8_t *p, size_t n, struct layer_index *out);
/* The same checks of the header and the chunk table, which alone are parsed (no checkpoint, file
 * or xattr: ncps, nfiles and nxattrs are 0): what a fetch of chunks needs, at a hundredth of the
 * cost of the whole index. Released with index_release(). */
int index_parse_chunks(const uint8_t *p, size_t n, struct layer_index *out);
/* Every check of index_parse, none of its copies: for an index that is checked and stored, not
 * read (a peer's, on its way into the store). out has the header (its counts, nfiles among
 * them) and the chunk table only: cps, files and xattrs are NULL. Released with index_release().
 * A peer's 1.9 MB index: ~6 ms to parse on this machine, most of it writing fresh memory. */
int index_check(const uint8_t *p, size_t n, struct layer_index *out);
/* index_parse without copying the windows table: each checkpoint has zwin NULL and its window's
 * place (zwin_off, zwin_len); a reader gets windows with codec_reader_set_windows, from the
 * encoding as stored (index_window_at). For a reader that keeps the index for long: the windows
 * (0.87 MB of the python layer's 1.9 MB index) are read only where decoding starts. */
int index_parse_lean(const uint8_t *p, size_t n, struct layer_index *out);
/* In the encoding p (n bytes: an index that says the same as the one cps came from, e.g. the
 * store's now), the stored window of checkpoint k, which must be cp (the same position and
 * length): *w and *len. Returns 0, or AFSP_E_FORMAT if the encoding does not have it so. */
int index_window_at(const uint8_t *p, size_t n, size_t k, const struct checkpoint *cp,
                    const uint8_t **w, uint32_t *len);
void index_release(struct layer_index *ix);
/* Whether two indexes say the same of a blob: the same chunks, files (with their strings and
 * xattrs) and checkpoints with the same windows, however each was encoded (a window's deflated
 * bytes depend on the ISA-L release). Returns 1, 0 (they differ), or -ENOMEM. */
int index_same(const struct layer_index *a, const struct layer_index *b);
/* Checking chunk i on its own (see INDEX_CHUNK_ALIGN): start resumes the blob's SHA-256 at the
 * chunk's offset; after its bytes, check says 0 if they are the chunk, AFSP_E_DIGEST if not (the
 * last chunk must end in digest, the layer's own, whatever the index says). */
void index_chunk_hash_start(const struct layer_index *ix, uint32_t i, struct sha256c *h);
int index_chunk_hash_check(const struct layer_index *ix, uint32_t i,
                           const uint8_t digest[static DIGEST_LEN], struct sha256c *h);
/* The chunk holding compressed byte off (binary search); nchunks if none. */
uint32_t index_chunk_at(const struct layer_index *ix, uint64_t off);

#endif
