/*
 * fetch.c - a layer filled chunk by chunk from peers (or any source of chunk bytes), in place:
 * the layer is a partial layer of the store (layers.c: its record, index and chunk map exist from
 * the start, its blob file is sparse), each chunk's bytes are kept in memory until they check
 * out against the index (the SHA-256 chain, resumed at the chunk's start), and only then written
 * to the blob file. store_fetch_flush makes written chunks durable and marks them present in one
 * transaction. A layer whose chunks all check out is the blob itself, because the chain ends in
 * the layer digest (docs/format.md).
 *
 * Invariant: only checked bytes are ever written to a file under DATA/blobs, so a reader that
 * finds a chunk present reads the right bytes whoever else is fetching the same layer. Must not:
 * mark a chunk present before it is checked and synced.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct store_fetch {
    struct store *s;
    uint8_t digest[DIGEST_LEN];
    struct layer_index ix;
    uint8_t from[STORE_ID_LEN]; /* the index's sender, all zero if built here or not known */
    uint8_t ix_digest[DIGEST_LEN];
    int fd;
    uint8_t *has;   /* bitmap of chunks present or checked and written */
    uint8_t *fresh; /* bitmap of chunks written since the last flush */
    uint32_t nhas, nfresh;
    uint64_t unstarted; /* bytes written since their writeback was last started */
};

/* Written bytes past which their writeback is started (sync_file_range), so that the disk
 * works while the chunks still come and a flush's fdatasync has only the tail to wait for. */
#define FETCH_WRITEBACK_BYTES (8u << 20)

int store_fetch_new(struct store *s, const uint8_t digest[static DIGEST_LEN],
                    const char *media_type, uint64_t size, const uint8_t *index, size_t index_len,
                    const uint8_t *from, struct store_fetch **out)
{
    struct layer_index ix;
    enum layer_format fmt;
    int rc;
    if ((rc = layer_format(media_type, &fmt)) < 0 || (rc = index_check(index, index_len, &ix)) < 0)
        return rc;
    /* What the index claims must fit what the manifest says; the chunks' own check is the
     * chain, whose last link is the layer digest itself. */
    if (ix.blob_size != size || ix.format != fmt ||
        memcmp(ix.chunks[ix.nchunks - 1].h, digest, DIGEST_LEN))
        rc = err_set(AFSP_E_FORMAT, "the index does not describe this layer");
    const struct buf ib = {(uint8_t *)index, index_len, index_len};
    TRACE("fetch_new checked");
    if (rc == 0)
        rc = store_layer_add_partial(s, digest, media_type, &ix, &ib, from);
    TRACE("fetch_new added");
    index_release(&ix);
    return rc < 0 ? rc : store_fetch_open(s, digest, out);
}

int store_fetch_open(struct store *s, const uint8_t digest[static DIGEST_LEN],
                     struct store_fetch **out)
{
    struct store_fetch *f = calloc(1, sizeof *f);
    struct layer_rec r;
    struct buf bm = {0};
    char path[PATH_MAX];
    int rc;
    if (!f)
        return -ENOMEM;
    f->fd = -1;
    f->s = s;
    memcpy(f->digest, digest, DIGEST_LEN);
    if ((rc = store_layer_get(s, digest, &r)) < 0 ||
        (rc = store_index_chunks(s, digest, &f->ix)) < 0 ||
        (rc = store_present_get(s, digest, &bm)) < 0)
        goto fail;
    size_t bmlen = (f->ix.nchunks + 7) / 8;
    f->has = calloc(bmlen, 1);
    f->fresh = calloc(bmlen, 1);
    if (!f->has || !f->fresh) {
        rc = -ENOMEM;
        goto fail;
    }
    if (bm.len != bmlen) {
        rc = err_set(AFSP_E_STORE, "bad chunk map");
        goto fail;
    }
    memcpy(f->has, bm.p, bmlen);
    if (!(r.flags & LAYER_INDEX_BUILT))
        memcpy(f->from, r.index_from, STORE_ID_LEN);
    memcpy(f->ix_digest, r.index_digest, DIGEST_LEN);
    for (uint32_t i = 0; i < f->ix.nchunks; i++)
        f->nhas += store_fetch_has(f, i);
    store_blob_path(s, digest, path);
    if ((f->fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
        rc = err_set(-errno, "cannot open %s", path);
        goto fail;
    }
    buf_release(&bm);
    *out = f;
    return 0;
fail:
    buf_release(&bm);
    store_fetch_free(f);
    return rc;
}

void store_fetch_free(struct store_fetch *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    index_release(&f->ix);
    free(f->has);
    free(f->fresh);
    free(f);
}

const uint8_t *store_fetch_digest(const struct store_fetch *f)
{
    return f->digest;
}

const uint8_t *store_fetch_sender(const struct store_fetch *f, uint8_t ix[DIGEST_LEN])
{
    memcpy(ix, f->ix_digest, DIGEST_LEN);
    static const uint8_t none[STORE_ID_LEN];
    return memcmp(f->from, none, STORE_ID_LEN) ? f->from : NULL;
}

uint32_t store_fetch_nchunks(const struct store_fetch *f)
{
    return f->ix.nchunks;
}

uint32_t store_fetch_missing(const struct store_fetch *f)
{
    return f->ix.nchunks - f->nhas;
}

void store_fetch_chunk(const struct store_fetch *f, uint32_t i, uint64_t *off, uint32_t *len)
{
    *off = f->ix.chunks[i].off;
    *len = f->ix.chunks[i].len;
}

uint32_t store_fetch_chunk_at(const struct store_fetch *f, uint64_t off)
{
    return index_chunk_at(&f->ix, off);
}

bool store_fetch_has(const struct store_fetch *f, uint32_t i)
{
    return f->has[i / 8] >> (i % 8) & 1;
}

void store_fetch_chunk_begin(struct store_fetch *f, uint32_t i, struct store_chunk_in *w)
{
    w->i = i;
    w->got = 0;
    w->buf = NULL;
    index_chunk_hash_start(&f->ix, i, &w->h);
}

int store_fetch_chunk_data(struct store_fetch *f, struct store_chunk_in *w, const uint8_t *p,
                           size_t n)
{
    uint32_t len = f->ix.chunks[w->i].len;
    if (n > len - w->got)
        return err_set(AFSP_E_SIZE, "chunk %u is longer than the index says", w->i);
    if (!w->buf && !(w->buf = malloc(len ? len : 1)))
        return -ENOMEM;
    sha256c_update(&w->h, p, n);
    memcpy(w->buf + w->got, p, n);
    w->got += (uint32_t)n;
    return 0;
}

void store_fetch_chunk_drop(struct store_chunk_in *w)
{
    free(w->buf);
    w->buf = NULL;
}

int store_fetch_chunk_end(struct store_fetch *f, struct store_chunk_in *w)
{
    const struct index_chunk *c = &f->ix.chunks[w->i];
    int rc = 0;
    if (w->got != c->len)
        rc = err_set(AFSP_E_SIZE, "chunk %u is shorter than the index says", w->i);
    else if (index_chunk_hash_check(&f->ix, w->i, f->digest, &w->h) < 0)
        rc = err_set(AFSP_E_DIGEST, "chunk %u", w->i);
    for (size_t done = 0; rc == 0 && !store_fetch_has(f, w->i) && done < c->len;) {
        ssize_t k = pwrite(f->fd, w->buf + done, c->len - done, (off_t)(c->off + done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            rc = err_set(k < 0 ? -errno : -EIO, "cannot write the layer");
        else
            done += (size_t)k;
    }
    store_fetch_chunk_drop(w);
    if (rc == 0 && !store_fetch_has(f, w->i)) {
        if ((f->unstarted += c->len) >= FETCH_WRITEBACK_BYTES) {
            (void)sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint: the flush syncs */
            f->unstarted = 0;
        }
        f->has[w->i / 8] |= (uint8_t)(1u << (w->i % 8));
        f->fresh[w->i / 8] |= (uint8_t)(1u << (w->i % 8));
        f->nhas++;
        f->nfresh++;
    }
    return rc;
}

int store_fetch_flush(struct store_fetch *f, uint64_t resv_id)
{
    if (f->nfresh == 0)
        return 0;
    TRACE("flush %u chunks", f->nfresh);
    if (fdatasync(f->fd) < 0)
        return err_set(-errno, "cannot sync the layer");
    TRACE("flush synced");
    int rc = store_chunks_mark(f->s, f->digest, &f->ix, f->fresh, resv_id);
    TRACE("flush marked");
    if (rc == 0) {
        memset(f->fresh, 0, (f->ix.nchunks + 7) / 8);
        f->nfresh = 0;
    }
    return rc;
}

int store_fetch_finish(struct store_fetch *f, uint64_t resv_id)
{
    int rc = store_fetch_flush(f, resv_id);
    if (rc == 0 && f->nhas != f->ix.nchunks)
        rc = err_set(AFSP_E_TRUNCATED, "%u of %u chunks", f->nhas, f->ix.nchunks);
    return rc;
}
