/*
 * fs.h - the one public header of fs/: an image as a read-only filesystem.
 *
 *   the tree   one merged, immutable directory tree built from the layer indexes with the OCI
 *              layer rules (tree.c); inode numbers are ours, 1 is the root
 *   the reads  file bytes through a bounded cache of decoded pieces shared by all readers, fed
 *              by decoder threads, with read-ahead and a separate prefetch zone (cache.c)
 *   the mount  the FUSE low-level frontend over both (fuse.c)
 *
 * Nothing here knows how a layer's bytes reached the store: reads go through store_reader, and a
 * chunk the store lacks is fetched by the store's fetcher (the node), or the read fails.
 */
#ifndef AFSP_FS_H
#define AFSP_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "../store/store.h"

/* ---- an image opened for reading (image.c) ------------------------------------------------ */

struct fs_image {
    struct store *s;             /* borrowed: outlives the image */
    struct image_info info;      /* its reference, manifest digest and layer digests */
    struct store_layer **layers; /* info.nlayers layers, bottom first */
};
/* Opens image ref of store s (any spelling of its reference, or its manifest digest): every
 * layer through its index (held whole or in part; chunks a partial one lacks come through the
 * store's fetcher), and pins the layers for this process. Returns 0, AFSP_E_NOTFOUND (no such
 * image, or a layer without its index), or another code, with err_msg saying which. */
int fs_image_open(struct store *s, const char *ref, struct fs_image *out);
/* Unpins and closes the layers. */
void fs_image_close(struct fs_image *im);

/* ---- the merged tree ----------------------------------------------------------------------- */

#define FS_ROOT_INO 1

struct fs_tree;

struct fs_attr {
    uint64_t ino;
    uint32_t mode; /* S_IFMT type and permission bits, as in st_mode */
    uint32_t nlink, uid, gid;
    uint32_t rdev_major, rdev_minor;
    uint64_t size;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
};

/* Builds the tree of layers[0..n) (bottom first), which must stay open while the tree is used.
 * Entries the OCI rules cannot place (a path below a non-directory, a hardlink to nothing) are
 * left out with a warning; *skipped (may be NULL) receives how many. */
int fs_tree_build(struct fs_tree **out, struct store_layer *const *layers, size_t n,
                  size_t *skipped);

/* The same from any source of file tables (the fuzz target's, say): a layer is its entries in
 * archive order, with paths normalised as the tar parser does (no leading "/" or "./", no
 * trailing "/"). Strings must outlive the tree. */
struct fs_layer_src {
    void *arg;
    uint32_t (*nfiles)(void *arg);
    int (*file)(void *arg, uint32_t i, struct layer_file *out);
    int (*xattr)(void *arg, uint32_t i, uint32_t j, const char **name, const uint8_t **value,
                 size_t *len);
    /* What the layer's file table says is the layer's own (its index was built from the whole
     * blob). Unless every layer of the tree is, privileges are withheld in all of them: setuid
     * and setgid bits are cleared, device nodes left out and security.capability hidden
     * (docs/security.md). */
    bool trusted;
};
int fs_tree_build_src(struct fs_tree **out, const struct fs_layer_src *layers, size_t n,
                      size_t *skipped);
void fs_tree_free(struct fs_tree *t);

/* The number of inodes; valid inode numbers are 1..count. */
uint64_t fs_tree_count(const struct fs_tree *t);
/* Returns 0, or -ENOENT (no such inode). */
int fs_tree_getattr(const struct fs_tree *t, uint64_t ino, struct fs_attr *a);
/* The inode of name in directory dir: 0 or -ENOENT, -ENOTDIR. */
int fs_tree_lookup(const struct fs_tree *t, uint64_t dir, const char *name, uint64_t *ino);
/* Entries of directory dir, in byte order of their names, without "." and "..": entry i is
 * (*name, *ino). Returns 0, -ENOENT when i is past the end, -ENOTDIR. */
int fs_tree_dirent(const struct fs_tree *t, uint64_t dir, uint32_t i, const char **name,
                   uint64_t *ino);
/* The parent of directory dir (the root is its own parent). */
uint64_t fs_tree_parent(const struct fs_tree *t, uint64_t dir);
/* The target of a symlink, or NULL. */
const char *fs_tree_readlink(const struct fs_tree *t, uint64_t ino);
/* Extended attribute j of ino; name and value are valid while the tree is. Returns 0 or -ENOENT
 * when j is past the last. */
int fs_tree_xattr(const struct fs_tree *t, uint64_t ino, uint32_t j, const char **name,
                  const uint8_t **value, size_t *len);
/* The layer (index into the build's layers) of the entry that gives ino its metadata, link
 * target, xattrs and bytes (for a directory several layers name, the highest). Returns 0, or
 * -ENOENT (no such inode, or a directory made implicitly, whose metadata is the tree's own). */
int fs_tree_layer(const struct fs_tree *t, uint64_t ino, uint32_t *layer);
/* Where a regular file's bytes are: layer index (into the build's layers), offset of the first
 * byte in that layer's uncompressed stream, size. Returns 0 or -EINVAL (not a regular file). */
int fs_tree_data(const struct fs_tree *t, uint64_t ino, uint32_t *layer, uint64_t *off,
                 uint64_t *size);

/* ---- reads --------------------------------------------------------------------------------- */

struct fs_cache;

struct fs_cache_opts {
    uint64_t mem_bytes;      /* decoded bytes kept in memory; 0: 256 MiB */
    unsigned threads;        /* decoder threads; 0: the number of CPUs, at least 2 */
    unsigned prefetch_share; /* percent of mem_bytes the prefetch zone may use; 0: 25 */
};

struct fs_cache_stats {
    uint64_t reads, read_bytes;  /* reads answered, bytes returned */
    uint64_t hits, misses;       /* pieces found decoded / that had to be decoded */
    uint64_t decoded_bytes;      /* bytes produced by the decoders, skipped ones included */
    uint64_t prefetched;         /* pieces decoded ahead of any reader */
    uint64_t evicted, errors;    /* pieces dropped for space; pieces that failed to decode */
    uint64_t mem_bytes, mem_max; /* decoded bytes held now / the limit */
};

int fs_cache_new(struct fs_cache **out, struct store_layer *const *layers, size_t n,
                 const struct fs_cache_opts *o);
void fs_cache_free(struct fs_cache *c);

/* Called once with the result of fs_cache_read_async: buf holds the bytes (fewer than asked at
 * the end of the file) and is valid only during the call; rc < 0 is a negative errno. */
typedef void (*fs_read_cb)(void *arg, const struct iovec *iov, int iovcnt, ssize_t rc);

/* A read of n bytes at off of a file whose bytes are (layer, data_off, size): cb runs at once
 * (on this thread) when every piece is decoded, else later on a decoder thread. seq_hint: the
 * reader reads sequentially (decode ahead of it). */
void fs_cache_read_async(struct fs_cache *c, uint32_t layer, uint64_t data_off, uint64_t size,
                         uint64_t off, size_t n, bool seq_hint, fs_read_cb cb, void *arg);
/* The same, waiting: copies into buf. Returns bytes read or a negative errno. */
ssize_t fs_cache_read(struct fs_cache *c, uint32_t layer, uint64_t data_off, uint64_t size,
                      uint64_t off, void *buf, size_t n);
/* Decodes the file's pieces ahead of any reader, into the prefetch zone (does not wait). */
void fs_cache_prefetch(struct fs_cache *c, uint32_t layer, uint64_t data_off, uint64_t size);
/* Waits until every queued decode is done. */
void fs_cache_drain(struct fs_cache *c);
void fs_cache_stats(struct fs_cache *c, struct fs_cache_stats *st);

/* ---- the mount ----------------------------------------------------------------------------- */

struct fs_mount_opts {
    const char *mountpoint;    /* its name: logs, the mount table */
    const char *mount_at;      /* the path given to the kernel (e.g. /proc/self/fd/N); or NULL */
    const char *fsname;        /* shown in /proc/mounts, e.g. the image reference */
    const char *prefetch_file; /* paths to read ahead, one per line, in order; may be NULL */
    bool preload;              /* fetch and verify every chunk in the background */
    int ready_fd;              /* >= 0: written "ok\n" once mounted, then closed */
    struct fs_cache_opts cache;
};

/* Mounts the image made of layers[0..n) and serves it until unmounted or SIGTERM/SIGINT/SIGHUP,
 * then unmounts. Returns 0 or a negative code (err_msg says why). */
int fs_serve(struct store_layer *const *layers, size_t n, const struct fs_mount_opts *o);

#endif
