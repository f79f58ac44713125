/*
 * memstore.c - an in-memory store behind node_store_ops (node.h), for the node core's unit tests
 * and the simulator: layers whose chunks are made, not stored (chunk i of a layer is a pattern
 * of its digest and i, chunk_len bytes), a chunk bitmap per layer, manifests as small blobs, and
 * a count of every call so that a test can say what the node asked of its store. A chunk
 * "checks out" when its bytes are the pattern; a store that lies serves other bytes.
 *
 * The encodings (an index, a manifest) are the simulator's own, not docs/format.md's.
 *
 * Owns: the layers, manifests and handles. Must not: do I/O.
 */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct mem_layer {
    struct memstore *m;
    uint8_t digest[DIGEST_LEN];
    uint32_t nchunks, chunk_len;
    uint8_t *present; /* bitmap */
    unsigned opens;   /* handles open (a dropped layer stays until they close) */
    bool dropped;
    uint8_t from[P2P_ID_LEN]; /* who sent its index, if known */
    bool from_known, false_index;
};

struct mem_blob {
    uint8_t digest[DIGEST_LEN];
    struct buf bytes;
    bool manifest;
};

/* A download under way (node_store_ops dl_*): base bytes at since, then rate bytes a second. */
struct mem_dl {
    struct memstore *m;
    uint8_t digest[DIGEST_LEN];
    uint64_t size, base, rate, since;
    int end;
    unsigned refs; /* the list's and each handle's */
    bool listed;
    struct mem_dl *next;
};

struct memstore {
    struct mem_dl *dls;
    const uint64_t *clock;
    struct mem_layer **layers;
    size_t nlayers, caplayers;
    struct mem_blob *blobs;
    size_t nblobs, capblobs;
    bool lie, busy;
    struct memstore_calls calls;
};

/* A receipt of one chunk's bytes. */
struct mem_rx {
    uint32_t i, got;
    bool bad;
};

static uint8_t pattern(const uint8_t digest[DIGEST_LEN], uint32_t i, uint32_t j)
{
    return (uint8_t)(digest[i % DIGEST_LEN] ^ (i * 31u) ^ (j * 7u) ^ (j >> 8));
}

int memstore_new(struct memstore **out)
{
    struct memstore *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    *out = m;
    return 0;
}

static void layer_free(struct mem_layer *l)
{
    free(l->present);
    free(l);
}

static void dl_unref(struct mem_dl *d)
{
    if (--d->refs == 0)
        free(d);
}

static void dl_unlist(struct mem_dl *d)
{
    for (struct mem_dl **pp = &d->m->dls; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            d->listed = false;
            dl_unref(d);
            return;
        }
}

void memstore_set_clock(struct memstore *m, const uint64_t *now)
{
    m->clock = now;
}

int memstore_dl_set(struct memstore *m, const uint8_t digest[DIGEST_LEN], uint64_t size,
                    uint64_t base, uint64_t rate)
{
    struct mem_dl *d = m->dls;
    while (d && memcmp(d->digest, digest, DIGEST_LEN))
        d = d->next;
    if (!d) {
        if (!(d = calloc(1, sizeof *d)))
            return -ENOMEM;
        d->m = m;
        memcpy(d->digest, digest, DIGEST_LEN);
        d->refs = 1;
        d->listed = true;
        d->next = m->dls;
        m->dls = d;
    }
    d->size = size;
    d->base = MIN(base, size);
    d->rate = rate;
    d->since = m->clock ? *m->clock : 0;
    return 0;
}

void memstore_dl_end(struct memstore *m, const uint8_t digest[DIGEST_LEN], int rc)
{
    struct mem_dl *d = m->dls;
    while (d && memcmp(d->digest, digest, DIGEST_LEN))
        d = d->next;
    if (d) {
        d->end = rc < 0 ? rc : 1;
        dl_unlist(d);
    }
}

static uint64_t dl_written(const struct mem_dl *d)
{
    uint64_t now = d->m->clock ? *d->m->clock : d->since;
    if (d->end == 1)
        return d->size;
    return MIN(d->size, d->base + (now - d->since) * d->rate / 1000);
}

void memstore_free(struct memstore *m)
{
    if (!m)
        return;
    while (m->dls)
        dl_unlist(m->dls);
    for (size_t i = 0; i < m->nlayers; i++)
        layer_free(m->layers[i]);
    for (size_t i = 0; i < m->nblobs; i++)
        buf_release(&m->blobs[i].bytes);
    free(m->layers);
    free(m->blobs);
    free(m);
}

const struct memstore_calls *memstore_calls(const struct memstore *m)
{
    return &m->calls;
}

void memstore_busy(struct memstore *m, bool busy)
{
    m->busy = busy;
}

void memstore_lie(struct memstore *m, bool lie)
{
    m->lie = lie;
}

static struct mem_layer *layer_find(const struct memstore *m, const uint8_t digest[DIGEST_LEN])
{
    for (size_t i = 0; i < m->nlayers; i++)
        if (!m->layers[i]->dropped && !memcmp(m->layers[i]->digest, digest, DIGEST_LEN))
            return m->layers[i];
    return NULL;
}

int memstore_layer_add(struct memstore *m, const uint8_t digest[DIGEST_LEN], uint32_t nchunks,
                       uint32_t chunk_len, bool whole)
{
    if (!nchunks || !chunk_len)
        return AFSP_E_USAGE;
    struct mem_layer *l = layer_find(m, digest);
    if (l)
        return -EEXIST;
    if (m->nlayers == m->caplayers) {
        struct mem_layer **v = array_grow(m->layers, &m->caplayers, sizeof *v, 16);
        if (!v)
            return -ENOMEM;
        m->layers = v;
    }
    if (!(l = calloc(1, sizeof *l)) || !(l->present = calloc((nchunks + 7) / 8, 1))) {
        free(l);
        return -ENOMEM;
    }
    l->m = m;
    memcpy(l->digest, digest, DIGEST_LEN);
    l->nchunks = nchunks;
    l->chunk_len = chunk_len;
    for (uint32_t i = 0; whole && i < nchunks; i++)
        l->present[i / 8] |= (uint8_t)(1u << (i % 8));
    m->layers[m->nlayers++] = l;
    return 0;
}

void memstore_layer_index(struct memstore *m, const uint8_t digest[DIGEST_LEN], const uint8_t *from,
                          bool false_index)
{
    struct mem_layer *l = layer_find(m, digest);
    if (!l)
        return;
    if ((l->from_known = from != NULL))
        memcpy(l->from, from, P2P_ID_LEN);
    l->false_index = false_index;
}

bool memstore_layer_known(const struct memstore *m, const uint8_t digest[DIGEST_LEN])
{
    return layer_find(m, digest) != NULL;
}

bool memstore_layer_complete(const struct memstore *m, const uint8_t digest[DIGEST_LEN])
{
    const struct mem_layer *l = layer_find(m, digest);
    for (uint32_t i = 0; l && i < l->nchunks; i++)
        if (!(l->present[i / 8] >> (i % 8) & 1))
            return false;
    return l != NULL;
}

uint32_t memstore_layer_present(const struct memstore *m, const uint8_t digest[DIGEST_LEN])
{
    const struct mem_layer *l = layer_find(m, digest);
    uint32_t n = 0;
    for (uint32_t i = 0; l && i < l->nchunks; i++)
        n += l->present[i / 8] >> (i % 8) & 1;
    return n;
}

unsigned memstore_handles_open(const struct memstore *m)
{
    unsigned n = 0;
    for (size_t i = 0; i < m->nlayers; i++)
        n += m->layers[i]->opens;
    return n;
}

void memstore_layer_drop(struct memstore *m, const uint8_t digest[DIGEST_LEN])
{
    struct mem_layer *l = layer_find(m, digest);
    if (l)
        l->dropped = true; /* freed with the store: handles may still point at it */
}

void memstore_chunk_drop(struct memstore *m, const uint8_t digest[DIGEST_LEN], uint32_t i)
{
    struct mem_layer *l = layer_find(m, digest);
    if (l && i < l->nchunks)
        l->present[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

void memstore_chunk_add(struct memstore *m, const uint8_t digest[DIGEST_LEN], uint32_t i)
{
    struct mem_layer *l = layer_find(m, digest);
    if (l && i < l->nchunks)
        l->present[i / 8] |= (uint8_t)(1u << (i % 8));
}

int memstore_blob_add(struct memstore *m, const uint8_t digest[DIGEST_LEN], const void *p, size_t n,
                      bool manifest)
{
    if (m->nblobs == m->capblobs) {
        struct mem_blob *v = array_grow(m->blobs, &m->capblobs, sizeof *v, 16);
        if (!v)
            return -ENOMEM;
        m->blobs = v;
    }
    struct mem_blob *b = &m->blobs[m->nblobs];
    memset(b, 0, sizeof *b);
    memcpy(b->digest, digest, DIGEST_LEN);
    b->manifest = manifest;
    if (buf_append(&b->bytes, p, n) < 0)
        return -ENOMEM;
    m->nblobs++;
    return 0;
}

bool memstore_blob_has(const struct memstore *m, const uint8_t digest[DIGEST_LEN])
{
    for (size_t i = 0; i < m->nblobs; i++)
        if (!memcmp(m->blobs[i].digest, digest, DIGEST_LEN))
            return true;
    return false;
}

void memstore_index_encode(uint32_t nchunks, uint32_t chunk_len, uint8_t out[MEMSTORE_INDEX_LEN])
{
    memcpy(out, "MEMIDX01", 8);
    put_le32(out + 8, nchunks);
    put_le32(out + 12, chunk_len);
}

int memstore_index_decode(const uint8_t *p, size_t n, uint32_t *nchunks, uint32_t *chunk_len)
{
    if (n != MEMSTORE_INDEX_LEN || memcmp(p, "MEMIDX01", 8))
        return AFSP_E_FORMAT;
    *nchunks = get_le32(p + 8);
    *chunk_len = get_le32(p + 12);
    return *nchunks && *chunk_len ? 0 : AFSP_E_FORMAT;
}

/* ---- node_store_ops ----------------------------------------------------------------------- */

static int op_blob(void *arg, const uint8_t digest[static DIGEST_LEN], struct buf *out)
{
    struct memstore *m = arg;
    m->calls.blob++;
    for (size_t i = 0; i < m->nblobs; i++)
        if (!memcmp(m->blobs[i].digest, digest, DIGEST_LEN))
            return buf_append(out, m->blobs[i].bytes.p, m->blobs[i].bytes.len);
    return AFSP_E_NOTFOUND;
}

static int op_index(void *arg, const uint8_t digest[static DIGEST_LEN], struct buf *out)
{
    struct memstore *m = arg;
    m->calls.index++;
    const struct mem_layer *l = layer_find(m, digest);
    if (!l)
        return AFSP_E_NOTFOUND;
    uint8_t idx[MEMSTORE_INDEX_LEN];
    memstore_index_encode(l->nchunks, l->chunk_len, idx);
    return buf_append(out, idx, sizeof idx);
}

static int op_held(void *arg, struct node_held **out, size_t *n)
{
    struct memstore *m = arg;
    m->calls.held++;
    struct node_held *h = calloc(m->nlayers + m->nblobs + 1, sizeof *h);
    size_t k = 0;
    if (!h)
        return -ENOMEM;
    for (size_t i = 0; i < m->nlayers; i++) {
        if (m->layers[i]->dropped)
            continue;
        memcpy(h[k].digest, m->layers[i]->digest, DIGEST_LEN);
        h[k++].complete = memstore_layer_complete(m, m->layers[i]->digest);
    }
    for (size_t i = 0; i < m->nblobs; i++)
        if (m->blobs[i].manifest) {
            memcpy(h[k].digest, m->blobs[i].digest, DIGEST_LEN);
            h[k].complete = h[k].manifest = true;
            k++;
        }
    *out = h;
    *n = k;
    return 0;
}

static int op_usage(void *arg, struct node_store_usage *u)
{
    struct memstore *m = arg;
    memset(u, 0, sizeof *u);
    for (size_t i = 0; i < m->nlayers; i++)
        if (!m->layers[i]->dropped) {
            u->layers++;
            u->used +=
                (uint64_t)memstore_layer_present(m, m->layers[i]->digest) * m->layers[i]->chunk_len;
        }
    for (size_t i = 0; i < m->nblobs; i++)
        u->images += m->blobs[i].manifest;
    u->limit = UINT64_MAX / 2;
    return 0;
}

static int op_layer_open(void *arg, const uint8_t digest[static DIGEST_LEN], void **layer)
{
    struct memstore *m = arg;
    m->calls.layer_open++;
    if (m->busy)
        return -EBUSY;
    struct mem_layer *l = layer_find(m, digest);
    if (!l)
        return AFSP_E_NOTFOUND;
    l->opens++;
    *layer = l;
    return 0;
}

static void op_layer_close(void *arg, void *layer)
{
    struct memstore *m = arg;
    struct mem_layer *l = layer;
    m->calls.layer_close++;
    l->opens--;
}

static uint32_t op_nchunks(void *layer)
{
    return ((struct mem_layer *)layer)->nchunks;
}

static void op_chunk(void *layer, uint32_t i, uint64_t *off, uint32_t *len)
{
    struct mem_layer *l = layer;
    *off = (uint64_t)i * l->chunk_len;
    *len = l->chunk_len;
}

static bool op_has(void *layer, uint32_t i)
{
    struct mem_layer *l = layer;
    return !l->dropped && i < l->nchunks && (l->present[i / 8] >> (i % 8) & 1);
}

static int op_refresh(void *layer)
{
    (void)layer;
    return 0;
}

/* A lying store serves every byte of its layers off by one bit. */
static int op_read(void *layer, uint64_t off, uint8_t *buf, size_t n)
{
    struct mem_layer *l = layer;
    l->m->calls.read++;
    for (size_t k = 0; k < n; k++) {
        uint64_t o = off + k;
        uint32_t i = (uint32_t)(o / l->chunk_len), j = (uint32_t)(o % l->chunk_len);
        if (i >= l->nchunks)
            return AFSP_E_USAGE;
        buf[k] = pattern(l->digest, i, j) ^ (uint8_t)(l->m->lie ? 1 : 0);
    }
    return 0;
}

void memstore_index_digest(const uint8_t *from, bool false_index, uint8_t ix[DIGEST_LEN])
{
    memset(ix, 0, DIGEST_LEN);
    if (from)
        memcpy(ix, from, DIGEST_LEN - 1);
    ix[DIGEST_LEN - 1] = false_index;
}

static const uint8_t *op_fetch_sender(void *fetch, uint8_t ix[DIGEST_LEN])
{
    const struct mem_layer *l = fetch;
    memstore_index_digest(l->from_known ? l->from : NULL, l->false_index, ix);
    return l->from_known ? l->from : NULL;
}

/* Fetch handles are layers too (the memstore keeps one object per layer). */
static int op_chunk_begin(void *fetch, uint32_t i, void **rx)
{
    (void)fetch;
    struct mem_rx *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->i = i;
    *rx = r;
    return 0;
}

static int op_chunk_data(void *fetch, void *rx, const uint8_t *p, size_t n)
{
    struct mem_layer *l = fetch;
    struct mem_rx *r = rx;
    if (r->got + n > l->chunk_len)
        return AFSP_E_SIZE;
    for (size_t k = 0; k < n; k++)
        r->bad |= p[k] != (pattern(l->digest, r->i, r->got + (uint32_t)k) ^ l->false_index);
    r->got += (uint32_t)n;
    return 0;
}

static int op_chunk_end(void *fetch, void *rx, uint64_t *bytes)
{
    struct mem_layer *l = fetch;
    struct mem_rx *r = rx;
    int rc = r->got != l->chunk_len ? AFSP_E_SIZE : r->bad ? AFSP_E_DIGEST : 0;
    *bytes = r->got;
    if (rc == 0)
        l->present[r->i / 8] |= (uint8_t)(1u << (r->i % 8));
    free(r);
    return rc;
}

static void op_chunk_drop(void *fetch, void *rx)
{
    (void)fetch;
    free(rx);
}

static int op_dl_open(void *arg, const uint8_t digest[static DIGEST_LEN], void **dl)
{
    struct memstore *m = arg;
    struct mem_dl *d = m->dls;
    while (d && memcmp(d->digest, digest, DIGEST_LEN))
        d = d->next;
    if (!d)
        return AFSP_E_NOTFOUND;
    d->refs++;
    *dl = d;
    return 0;
}

static void op_dl_close(void *arg, void *dl)
{
    (void)arg;
    dl_unref(dl);
}

static int op_dl_state(void *dl, uint64_t *written, uint64_t *size)
{
    struct mem_dl *d = dl;
    *written = dl_written(d);
    *size = d->size;
    return d->end;
}

/* Relayed bytes are checked by nobody in the simulator (a pull checks the whole at its end):
 * zeros. */
static int op_dl_read(void *dl, uint64_t off, uint8_t *buf, size_t n)
{
    struct mem_dl *d = dl;
    if (off > dl_written(d) || n > dl_written(d) - off)
        return AFSP_E_USAGE;
    memset(buf, 0, n);
    return 0;
}

const struct node_store_ops memstore_ops = {
    .blob = op_blob,
    .index = op_index,
    .held = op_held,
    .usage = op_usage,
    .layer_open = op_layer_open,
    .layer_close = op_layer_close,
    .layer_nchunks = op_nchunks,
    .layer_chunk = op_chunk,
    .layer_has = op_has,
    .layer_refresh = op_refresh,
    .layer_read = op_read,
    .fetch_nchunks = op_nchunks,
    .fetch_sender = op_fetch_sender,
    .fetch_chunk = op_chunk,
    .fetch_has = op_has,
    .chunk_begin = op_chunk_begin,
    .chunk_data = op_chunk_data,
    .chunk_end = op_chunk_end,
    .chunk_drop = op_chunk_drop,
    .dl_open = op_dl_open,
    .dl_close = op_dl_close,
    .dl_state = op_dl_state,
    .dl_read = op_dl_read,
};

void *memstore_fetch_open(struct memstore *m, const uint8_t digest[DIGEST_LEN])
{
    m->calls.fetch_open++;
    struct mem_layer *l = layer_find(m, digest);
    if (l)
        l->opens++;
    return l;
}

void memstore_fetch_close(struct memstore *m, void *fetch)
{
    (void)m;
    struct mem_layer *l = fetch;
    if (l)
        l->opens--;
}
