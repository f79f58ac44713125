/*
 * read.c - random access to stored layers: a layer handle (its index, chunk map and blob file),
 * decoders over it (store/layer/'s codec_reader), the file table, raw blob bytes for peers, and
 * the index and chunk map as stored.
 *
 * Every compressed byte a decoder uses comes from a chunk checked against its hash in the index
 * the first time the handle uses it; a chunk that is not present is asked of the store's fetcher
 * (the node) and read once the fetcher says it is written (the store marks it present after).
 * A chunk taken on the fetcher's word that does not check out is asked for once more, anew
 * (STORE_FETCH_AGAIN: its write may have been lost with a failed sync); then it fails.
 * Owns the handles and readers it makes (store_layer_close, store_reader_free) and a read-only
 * fd on each blob file. Must not write to the store but for access times (store_touch), nor trust a
 * byte of a blob file it has not checked.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct store_layer {
    struct store *s;
    uint8_t digest[DIGEST_LEN];
    struct layer_index ix;
    uint8_t *present;  /* chunk bitmap, from the store or the fetcher's answers */
    uint8_t *taken;    /* chunk bitmap: present on the fetcher's word, not yet marked (atomic) */
    uint8_t *retried;  /* chunk bitmap: taken, failed its check, asked for anew (atomic) */
    uint8_t *verified; /* chunk bitmap: checked against the index by this handle (atomic) */
    uint8_t *reported; /* chunk bitmap: its failure is logged (atomic) */
    int fd;
    bool index_built;        /* LAYER_INDEX_BUILT */
    struct store_reader *rd; /* store_layer_read's */
    uint8_t index_digest[DIGEST_LEN];
    uint64_t checked_ns; /* when the blob's file was last compared with fd's (atomic) */
    bool index_false;    /* the layer was replaced with another index: fd's is false (atomic) */
};

struct store_reader {
    struct store_layer *l;
    struct codec_reader *cr;
};

static bool bit_get(const uint8_t *map, uint32_t i)
{
    return (__atomic_load_n(&map[i / 8], __ATOMIC_ACQUIRE) >> (i % 8)) & 1;
}

/* Sets bit i; returns whether it was already set. */
static bool bit_set(uint8_t *map, uint32_t i)
{
    uint8_t m = (uint8_t)(1u << (i % 8));
    return __atomic_fetch_or(&map[i / 8], m, __ATOMIC_ACQ_REL) & m;
}

/* Clears bit i; returns whether it was set. */
static bool bit_clear(uint8_t *map, uint32_t i)
{
    uint8_t m = (uint8_t)(1u << (i % 8));
    return __atomic_fetch_and(&map[i / 8], (uint8_t)~m, __ATOMIC_ACQ_REL) & m;
}

static int pread_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : AFSP_E_TRUNCATED;
        done += (size_t)n;
    }
    return 0;
}

/* Checks chunk i of the blob file against the index (once per handle; concurrent first uses
 * may both check, which is harmless): the blob's SHA-256 resumed at the chunk's start must reach
 * the chunk's chaining value, or for the last chunk the layer digest itself. Hashes through a
 * small buffer: no allocation the size of a chunk (fresh pages cost more than the hashing). */
static int chunk_verify(struct store_layer *l, uint32_t i)
{
    const struct index_chunk *c = &l->ix.chunks[i];
    uint8_t buf[64 << 10];
    struct sha256c h;
    int rc = 0;

    if (bit_get(l->verified, i))
        return 0;
    index_chunk_hash_start(&l->ix, i, &h);
    for (uint64_t off = 0; off < c->len && rc == 0;) {
        size_t n = (size_t)MIN((uint64_t)sizeof buf, c->len - off);
        if ((rc = pread_full(l->fd, buf, n, c->off + off)) == 0)
            sha256c_update(&h, buf, n);
        off += n;
    }
    if (rc == 0)
        rc = index_chunk_hash_check(&l->ix, i, l->digest, &h);
    if (rc == AFSP_E_DIGEST && bit_get(l->taken, i) && !bit_set(l->retried, i))
        return -EAGAIN; /* taken on the fetcher's word: asked for once more (chunk_check) */
    if (rc < 0) {
        char dg[DIGEST_STR_LEN + 1];
        digest_fmt(l->digest, dg);
        if (!bit_set(l->reported, i))
            log_error("layer %s: chunk %u (bytes %" PRIu64 "+%u): %s", dg, i, c->off, c->len,
                      rc == AFSP_E_DIGEST ? "does not match its hash in the index" : err_str(rc));
        return err_set(rc, "chunk %u of layer %s", i, dg);
    }
    if (!bit_set(l->verified, i) && l->s->chunk_watch)
        l->s->chunk_watch(l->s->chunk_watch_arg, l->digest, i);
    return 0;
}

void store_set_fetcher(struct store *s, store_fetcher_fn fn, void *arg)
{
    s->fetcher = fn;
    s->fetcher_arg = arg;
}

void store_set_chunk_watch(struct store *s, store_chunk_watch_fn fn, void *arg)
{
    s->chunk_watch = fn;
    s->chunk_watch_arg = arg;
}

void store_set_index_watch(struct store *s, store_index_judged_fn fn, void *arg)
{
    s->index_judged = fn;
    s->index_judged_arg = arg;
}

/* Whether the layer's record now names an index other than the handle's (nor has it as the
 * alias of one that said the same): then the handle's index was a peer's false one (replaced
 * when the layer was completed), and the handle fails from now on. */
static int layer_replaced(struct store_layer *l, bool *same_index)
{
    struct layer_rec r;
    MDB_txn *txn;
    MDB_val v;
    *same_index = true;
    /* the record, not the file: a whole download renames its file into place inside its write
     * transaction, before the record that names its index commits */
    int rc = db_read_begin(&l->s->db, &txn);
    if (rc < 0)
        return rc;
    if ((rc = db_get(txn, l->s->db.dbi[DB_LAYERS], l->digest, DIGEST_LEN, &v)) == 0 &&
        (rc = layer_rec_decode(&v, &r)) == 0)
        *same_index = !memcmp(r.index_digest, l->index_digest, DIGEST_LEN) ||
                      !memcmp(r.index_alias, l->index_digest, DIGEST_LEN);
    mdb_txn_abort(txn);
    if (!*same_index)
        __atomic_store_n(&l->index_false, true, __ATOMIC_RELEASE);
    return rc == AFSP_E_NOTFOUND ? 0 : rc;
}

int store_layer_check(struct store_layer *l)
{
    char dg[DIGEST_STR_LEN + 1];
    if (!l->index_built) {
        uint64_t now = time_mono_ns(), last = __atomic_load_n(&l->checked_ns, __ATOMIC_RELAXED);
        bool same;
        if (now - last >= STORE_CHECK_NS &&
            __atomic_compare_exchange_n(&l->checked_ns, &last, now, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            layer_replaced(l, &same);
    }
    if (__atomic_load_n(&l->index_false, __ATOMIC_ACQUIRE))
        return err_set(AFSP_E_DIGEST,
                       "layer %s: the index this was opened with was shown false by the blob",
                       digest_fmt(l->digest, dg));
    return 0;
}

/* Takes in the chunk map as stored now (chunks only ever become present while a handle is
 * open: eviction skips pinned layers). When the layer was replaced by a whole download (a
 * partial layer completed from the registry), the handle's file is swapped for the new one,
 * atomically for concurrent readers (dup2). */
int store_layer_refresh(struct store_layer *l)
{
    struct buf bm = {0};
    struct stat a, b;
    char path[PATH_MAX];
    int rc = store_present_get(l->s, l->digest, &bm);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < bm.len && i < (l->ix.nchunks + 7) / 8u; i++) {
        __atomic_fetch_or(&l->present[i], bm.p[i], __ATOMIC_ACQ_REL);
        __atomic_fetch_and(&l->taken[i], (uint8_t)~bm.p[i], __ATOMIC_ACQ_REL); /* marked now */
    }
    buf_release(&bm);
    bool same;
    if ((rc = layer_replaced(l, &same)) < 0 || (rc = store_layer_check(l)) < 0)
        return rc;
    store_blob_path(l->s, l->digest, path);
    if (stat(path, &a) == 0 && fstat(l->fd, &b) == 0 && a.st_ino != b.st_ino) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return err_set(-errno, "cannot open %s", path);
        rc = dup2(fd, l->fd) < 0 ? -errno : 0;
        close(fd);
    }
    return rc;
}

/* The first and last chunk of [first, last] the handle's map lacks; false if none. */
static bool missing(struct store_layer *l, uint32_t first, uint32_t last, uint32_t *a, uint32_t *b)
{
    *a = first;
    while (*a <= last && bit_get(l->present, *a))
        (*a)++;
    if (*a > last)
        return false;
    *b = last;
    while (*b > *a && bit_get(l->present, *b))
        (*b)--;
    return true;
}

/* Makes chunks [first, last] present: the store is looked at again (another process, such as
 * the node's prefetch for this mount, may have stored them), and those still missing are asked
 * of the fetcher (the node), which returns once it has written them (taken as present on its
 * word, each still checked before use), or once another request for some of them has ended
 * (then what is missing is looked at again). */
static int chunks_need(struct store_layer *l, uint32_t first, uint32_t last)
{
    uint32_t a, b;
    int rc = store_layer_check(l);
    if (rc < 0 || !missing(l, first, last, &a, &b))
        return rc;
    if ((rc = store_layer_refresh(l)) < 0 || !missing(l, first, last, &a, &b))
        return rc;
    if (!l->s->fetcher)
        return err_set(AFSP_E_NOTFOUND, "chunk %u of the layer is not present", a);
    /* each wait on another request ends with one of its chunks present or that request failed:
     * a bounded number of rounds */
    for (uint32_t round = 0; round <= last - first + 1; round++) {
        if ((rc = l->s->fetcher(l->s->fetcher_arg, l->digest, a, b, 0)) < 0)
            return rc;
        bool waited = rc == 1;
        if (!waited) /* written, perhaps not yet marked: chunk_verify checks them */
            for (uint32_t i = a; i <= b; i++)
                if (!bit_set(l->present, i))
                    bit_set(l->taken, i);
        if ((rc = store_layer_refresh(l)) < 0)
            return rc;
        if (!missing(l, first, last, &a, &b))
            return 0;
        if (!waited)
            break;
    }
    return err_set(AFSP_E_NOTFOUND, "chunk %u of the layer is not present", a);
}

/* chunk_verify, and a chunk taken on the fetcher's word that fails it asked for anew, once:
 * the node answered before its sync, which may have failed and lost the bytes. */
static int chunk_check(struct store_layer *l, uint32_t i)
{
    int rc = chunk_verify(l, i);
    if (rc != -EAGAIN)
        return rc;
    bit_clear(l->taken, i);
    bit_clear(l->present, i);
    if ((rc = l->s->fetcher(l->s->fetcher_arg, l->digest, i, i, STORE_FETCH_AGAIN)) < 0)
        return rc;
    if (rc == 0)
        bit_set(l->present, i);
    else if ((rc = store_layer_refresh(l)) < 0)
        return rc;
    if (!bit_get(l->present, i))
        return err_set(AFSP_E_NOTFOUND, "chunk %u of the layer is not present", i);
    return chunk_verify(l, i);
}

/* The codec's source: compressed bytes from the blob file, only from chunks that are present
 * (fetched first if they are not) and verified. */
static ssize_t layer_src(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    struct store_layer *l = arg;
    int rc;
    if (off >= l->ix.blob_size)
        return 0;
    if (len > l->ix.blob_size - off)
        len = l->ix.blob_size - off;
    uint32_t first = index_chunk_at(&l->ix, off), last = index_chunk_at(&l->ix, off + len - 1);
    if ((rc = chunks_need(l, first, last)) < 0)
        return rc;
    for (uint32_t i = first; i <= last && i < l->ix.nchunks; i++)
        if ((rc = chunk_check(l, i)) < 0)
            return rc;
    if ((rc = pread_full(l->fd, buf, len, off)) < 0)
        return rc;
    return (ssize_t)len;
}

int store_layer_fetch(struct store_layer *l, uint64_t off, uint64_t len)
{
    if (len == 0 || off >= l->ix.tar_size || l->ix.blob_size == 0)
        return 0;
    uint64_t a = 0, b = l->ix.blob_size;
    if (l->ix.ncps) {
        uint32_t k0 = store_layer_span_at(l, off),
                 k1 = store_layer_span_at(l, off + MIN(len, l->ix.tar_size - off) - 1);
        a = l->ix.cps[k0].in_bit / 8;
        if (k1 + 1 < l->ix.ncps)
            b = MIN(b, (l->ix.cps[k1 + 1].in_bit + 7) / 8);
    }
    uint32_t first = index_chunk_at(&l->ix, a), last = index_chunk_at(&l->ix, b - 1);
    int rc = chunks_need(l, first, last);
    if (rc < 0)
        return rc;
    for (uint32_t i = first; i <= last && i < l->ix.nchunks; i++) {
        rc = chunk_check(l, i);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The codec's windows: the handle's index is parsed without them (index_parse_lean), and each is
 * read from the index as stored now when decoding starts at its checkpoint: one that says the
 * same as the handle's (its own, or the one the blob gave when the layer was completed, an alias
 * of it), or the window is refused and the read fails. */
static int layer_win(void *arg, size_t k, uint8_t buf[static CODEC_WINDOW], uint32_t *len)
{
    struct store_layer *l = arg;
    const uint8_t *w;
    MDB_txn *txn;
    MDB_val v;
    int rc = store_layer_check(l);
    if (rc < 0 || (rc = db_read_begin(&l->s->db, &txn)) < 0)
        return rc;
    if ((rc = db_get(txn, l->s->db.dbi[DB_INDEX], l->digest, DIGEST_LEN, &v)) == 0 &&
        (rc = index_window_at(v.mv_data, v.mv_size, k, &l->ix.cps[k], &w, len)) == 0)
        memcpy(buf, w, *len);
    mdb_txn_abort(txn);
    return rc;
}

int store_reader_new(struct store_layer *l, struct store_reader **out)
{
    struct store_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->l = l;
    int rc = codec_reader_new(&r->cr, l->ix.format, l->ix.cps, l->ix.ncps, l->ix.blob_size,
                              l->ix.tar_size, layer_src, l);
    if (rc < 0) {
        free(r);
        return rc;
    }
    codec_reader_set_windows(r->cr, layer_win, l);
    *out = r;
    return 0;
}

void store_reader_free(struct store_reader *r)
{
    if (!r)
        return;
    codec_reader_free(r->cr);
    free(r);
}

ssize_t store_reader_read(struct store_reader *r, uint64_t off, void *buf, size_t n)
{
    return codec_read(r->cr, off, buf, n);
}

uint64_t store_reader_pos(const struct store_reader *r)
{
    return codec_reader_pos(r->cr);
}

uint64_t store_reader_decoded(const struct store_reader *r)
{
    return codec_reader_decoded(r->cr);
}

uint64_t store_layer_size(const struct store_layer *l)
{
    return l->ix.tar_size;
}

/* Plain tar layers have checkpoints too (every CODEC_SPAN_IN bytes); a layer with none (an
 * empty tar) is one span. */
uint32_t store_layer_nspans(const struct store_layer *l)
{
    return l->ix.ncps ? l->ix.ncps : 1;
}

void store_layer_span(const struct store_layer *l, uint32_t k, uint64_t *start, uint64_t *end)
{
    uint32_t n = store_layer_nspans(l);
    if (k >= n)
        k = n - 1;
    *start = l->ix.ncps ? l->ix.cps[k].out_off : 0;
    *end = k + 1 < l->ix.ncps ? l->ix.cps[k + 1].out_off : l->ix.tar_size;
}

uint32_t store_layer_span_at(const struct store_layer *l, uint64_t off)
{
    uint32_t lo = 0, hi = store_layer_nspans(l); /* answer in [lo, hi) */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (l->ix.cps[mid].out_off <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int store_index_bytes(struct store *s, const uint8_t digest[static DIGEST_LEN], struct buf *out)
{
    return db_copy(&s->db, s->db.dbi[DB_INDEX], digest, DIGEST_LEN, out);
}

int store_index_chunks(struct store *s, const uint8_t digest[static DIGEST_LEN],
                       struct layer_index *out)
{
    MDB_txn *txn;
    MDB_val v;
    int rc = db_read_begin(&s->db, &txn);
    if (rc < 0)
        return rc;
    if ((rc = db_get(txn, s->db.dbi[DB_INDEX], digest, DIGEST_LEN, &v)) == 0)
        rc = index_parse_chunks(v.mv_data, v.mv_size, out); /* in the map: no copy */
    mdb_txn_abort(txn);
    return rc;
}

int store_index_built_bytes(struct store *s, const uint8_t digest[static DIGEST_LEN],
                            struct buf *out)
{
    MDB_txn *txn;
    MDB_val v;
    struct layer_rec r;
    int rc = db_read_begin(&s->db, &txn);
    if (rc < 0)
        return rc;
    if ((rc = db_get(txn, s->db.dbi[DB_LAYERS], digest, DIGEST_LEN, &v)) == 0 &&
        (rc = layer_rec_decode(&v, &r)) == 0 && !(r.flags & LAYER_INDEX_BUILT))
        rc = AFSP_E_NOTFOUND; /* a peer's index: not ours to vouch for */
    if (rc == 0 && (rc = db_get(txn, s->db.dbi[DB_INDEX], digest, DIGEST_LEN, &v)) == 0)
        rc = buf_append(out, v.mv_data, v.mv_size);
    mdb_txn_abort(txn);
    return rc;
}

int store_present_get(struct store *s, const uint8_t digest[static DIGEST_LEN], struct buf *out)
{
    return db_copy(&s->db, s->db.dbi[DB_PRESENT], digest, DIGEST_LEN, out);
}

int store_layer_open(struct store *s, const uint8_t digest[static DIGEST_LEN],
                     struct store_layer **out)
{
    struct store_layer *l = calloc(1, sizeof *l);
    MDB_txn *txn = NULL;
    MDB_val v;
    char path[PATH_MAX];
    int rc;

    if (!l)
        return -ENOMEM;
    l->s = s;
    l->fd = -1;
    memcpy(l->digest, digest, DIGEST_LEN);
    if ((rc = db_read_begin(&s->db, &txn)) < 0)
        goto fail;
    struct layer_rec r;
    if ((rc = db_get(txn, s->db.dbi[DB_LAYERS], digest, DIGEST_LEN, &v)) < 0 ||
        (rc = layer_rec_decode(&v, &r)) < 0)
        goto fail;
    l->index_built = r.flags & LAYER_INDEX_BUILT;
    memcpy(l->index_digest, r.index_digest, DIGEST_LEN);
    if ((rc = db_get(txn, s->db.dbi[DB_INDEX], digest, DIGEST_LEN, &v)) < 0)
        goto fail;
    if ((rc = index_parse_lean(v.mv_data, v.mv_size, &l->ix)) < 0)
        goto fail;
    if ((rc = db_get(txn, s->db.dbi[DB_PRESENT], digest, DIGEST_LEN, &v)) < 0)
        goto fail;
    if (v.mv_size < (l->ix.nchunks + 7) / 8) {
        rc = err_set(AFSP_E_STORE, "bad chunk map");
        goto fail;
    }
    l->present = malloc(v.mv_size ? v.mv_size : 1);
    if (!l->present) {
        rc = -ENOMEM;
        goto fail;
    }
    memcpy(l->present, v.mv_data, v.mv_size);
    l->verified = calloc(1, v.mv_size ? v.mv_size : 1);
    l->reported = calloc(1, v.mv_size ? v.mv_size : 1);
    l->taken = calloc(1, v.mv_size ? v.mv_size : 1);
    l->retried = calloc(1, v.mv_size ? v.mv_size : 1);
    if (!l->verified || !l->reported || !l->taken || !l->retried) {
        rc = -ENOMEM;
        goto fail;
    }
    mdb_txn_abort(txn);
    txn = NULL;
    store_blob_path(s, digest, path);
    l->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (l->fd < 0) {
        rc = err_set(-errno, "cannot open %s", path);
        goto fail;
    }
    rc = store_reader_new(l, &l->rd);
    if (rc < 0)
        goto fail;
    const uint8_t(*d)[DIGEST_LEN] = (const uint8_t(*)[DIGEST_LEN])l->digest;
    store_touch(s, d, 1, false);
    *out = l;
    return 0;
fail:
    if (txn)
        mdb_txn_abort(txn);
    store_layer_close(l);
    return rc;
}

void store_layer_close(struct store_layer *l)
{
    if (!l)
        return;
    store_reader_free(l->rd);
    if (l->fd >= 0)
        close(l->fd);
    index_release(&l->ix);
    free(l->present);
    free(l->verified);
    free(l->reported);
    free(l->taken);
    free(l->retried);
    free(l);
}

bool store_layer_index_built(const struct store_layer *l)
{
    return l->index_built;
}

uint32_t store_layer_nfiles(const struct store_layer *l)
{
    return l->ix.nfiles;
}

int store_layer_file(const struct store_layer *l, uint32_t i, struct layer_file *out)
{
    if (i >= l->ix.nfiles)
        return AFSP_E_NOTFOUND;
    const struct index_file *f = &l->ix.files[i];
    const char *st = (const char *)l->ix.strtab.p;
    out->path = st + f->path_off;
    out->link = st + f->link_off;
    out->type = (char)f->type;
    out->mode = f->mode;
    out->uid = f->uid;
    out->gid = f->gid;
    out->devmajor = f->devmajor;
    out->devminor = f->devminor;
    out->mtime_sec = f->mtime_sec;
    out->mtime_nsec = f->mtime_nsec;
    out->size = f->size;
    out->data_off = f->data_off;
    out->nxattrs = f->xattr_count;
    return 0;
}

int store_layer_xattr(const struct store_layer *l, uint32_t i, uint32_t j, const char **name,
                      const uint8_t **value, size_t *len)
{
    if (i >= l->ix.nfiles || j >= l->ix.files[i].xattr_count)
        return AFSP_E_NOTFOUND;
    const struct index_xattr *x = &l->ix.xattrs[l->ix.files[i].xattr_first + j];
    *name = (const char *)l->ix.strtab.p + x->name_off;
    *value = l->ix.strtab.p + x->val_off;
    *len = x->val_len;
    return 0;
}

ssize_t store_layer_read(struct store_layer *l, uint64_t off, void *buf, size_t n)
{
    return store_reader_read(l->rd, off, buf, n);
}

uint32_t store_layer_nchunks(const struct store_layer *l)
{
    return l->ix.nchunks;
}

void store_layer_chunk(const struct store_layer *l, uint32_t i, uint64_t *off, uint32_t *len)
{
    *off = l->ix.chunks[i].off;
    *len = l->ix.chunks[i].len;
}

bool store_layer_chunk_present(const struct store_layer *l, uint32_t i)
{
    return i < l->ix.nchunks && bit_get(l->present, i);
}

int store_layer_read_blob(struct store_layer *l, uint64_t off, void *buf, size_t n)
{
    if (off > l->ix.blob_size || n > l->ix.blob_size - off)
        return AFSP_E_USAGE;
    return pread_full(l->fd, buf, n, off);
}
