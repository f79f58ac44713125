/*
 * fetch.c - a layer fetched whole from peers, chunk by chunk, into a temporary file: the
 * index the peer sent is checked before any chunk is asked for, every chunk is checked against
 * it as its bytes arrive (the SHA-256 chain, resumed at the chunk's start), and a layer whose
 * chunks all check out is the blob itself, because the chain ends in the layer digest
 * (docs/format.md). store_pull commits it like a download from the registry.
 *
 * Owns: the temporary file and the parsed index until the commit. Must not: touch LMDB (the
 * commit is store.c's), or mark a chunk present before its last byte is checked.
 */
#include "store_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct store_fetch {
    struct store *s;
    uint8_t digest[DIGEST_LEN];
    struct layer_index ix;
    struct buf ixbytes;
    char tmp[PATH_MAX];
    int fd;
    uint8_t *has; /* bitmap of chunks checked and written */
    uint32_t nhas;
};

int store_fetch_new(struct store *s, const uint8_t digest[static DIGEST_LEN],
                    const char *media_type, uint64_t size, const uint8_t *index, size_t index_len,
                    struct store_fetch **out)
{
    enum layer_format fmt;
    struct store_fetch *f = calloc(1, sizeof *f);
    int rc;
    if (!f)
        return -ENOMEM;
    f->fd = -1;
    memcpy(f->digest, digest, DIGEST_LEN);
    if ((rc = layer_format(media_type, &fmt)) < 0 ||
        (rc = index_parse(index, index_len, &f->ix)) < 0)
        goto fail;
    /* What the index claims must fit what the manifest says; the chunks' own check is the
     * chain, whose last link is the layer digest itself. */
    if (f->ix.blob_size != size || f->ix.format != fmt ||
        memcmp(f->ix.chunks[f->ix.nchunks - 1].h, digest, DIGEST_LEN)) {
        rc = err_set(AFSP_E_FORMAT, "the index does not describe this layer");
        goto fail;
    }
    if ((rc = buf_append(&f->ixbytes, index, index_len)) < 0)
        goto fail;
    f->has = calloc((f->ix.nchunks + 7) / 8, 1);
    if (!f->has) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = f->fd = store_tmp_create(s, digest, f->tmp)) < 0)
        goto fail;
    if (ftruncate(f->fd, (off_t)size) < 0) {
        rc = err_set(-errno, "cannot size the download");
        goto fail;
    }
    f->s = s;
    *out = f;
    return 0;
fail:
    store_fetch_free(f);
    return rc;
}

void store_fetch_free(struct store_fetch *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp[0])
        unlink(f->tmp);
    index_release(&f->ix);
    buf_release(&f->ixbytes);
    free(f->has);
    free(f);
}

const uint8_t *store_fetch_digest(const struct store_fetch *f)
{
    return f->digest;
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

bool store_fetch_has(const struct store_fetch *f, uint32_t i)
{
    return f->has[i / 8] >> (i % 8) & 1;
}

void store_fetch_chunk_begin(struct store_fetch *f, uint32_t i, struct store_chunk_in *w)
{
    w->i = i;
    w->got = 0;
    index_chunk_hash_start(&f->ix, i, &w->h);
}

int store_fetch_chunk_data(struct store_fetch *f, struct store_chunk_in *w, const uint8_t *p,
                           size_t n)
{
    const struct index_chunk *c = &f->ix.chunks[w->i];
    if (n > c->len - w->got)
        return err_set(AFSP_E_SIZE, "chunk %u is longer than the index says", w->i);
    sha256c_update(&w->h, p, n);
    for (size_t done = 0; done < n;) {
        ssize_t k = pwrite(f->fd, p + done, n - done, (off_t)(c->off + w->got + done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return err_set(k < 0 ? -errno : -EIO, "cannot write the download");
        done += (size_t)k;
    }
    w->got += (uint32_t)n;
    return 0;
}

int store_fetch_chunk_end(struct store_fetch *f, struct store_chunk_in *w)
{
    if (w->got != f->ix.chunks[w->i].len)
        return err_set(AFSP_E_SIZE, "chunk %u is shorter than the index says", w->i);
    if (index_chunk_hash_check(&f->ix, w->i, f->digest, &w->h) < 0)
        return err_set(AFSP_E_DIGEST, "chunk %u", w->i);
    if (!store_fetch_has(f, w->i)) {
        f->has[w->i / 8] |= (uint8_t)(1u << (w->i % 8));
        f->nhas++;
    }
    return 0;
}

int store_fetch_commit(struct store_fetch *f, uint64_t resv_id, uint64_t resv_bytes,
                       const char *media_type)
{
    if (f->nhas != f->ix.nchunks)
        return err_set(AFSP_E_TRUNCATED, "%u of %u chunks", f->nhas, f->ix.nchunks);
    if (fdatasync(f->fd) < 0)
        return err_set(-errno, "cannot sync the download");
    int rc = store_layer_commit(f->s, resv_id, resv_bytes, f->digest, media_type, &f->ix,
                                &f->ixbytes, f->tmp);
    if (rc == 0)
        f->tmp[0] = 0; /* renamed, or removed as a duplicate */
    return rc;
}
