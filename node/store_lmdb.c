/*
 * store_lmdb.c - node_store_ops over the LMDB store (store/store.h): what the daemon gives its
 * core. Tests and the simulator give theirs an in-memory store instead (sim/).
 *
 * Owns: nothing but the translation. Must not: hold state of its own.
 */
#include "node_int.h"

#include "../store/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int blob(void *arg, const uint8_t digest[static DIGEST_LEN], struct buf *out)
{
    return store_small_get(arg, digest, out);
}

static int index_bytes(void *arg, const uint8_t digest[static DIGEST_LEN], struct buf *out)
{
    return store_index_built_bytes(arg, digest, out);
}

static int trace(void *arg, const uint8_t key[static DIGEST_LEN], struct buf *out)
{
    return store_trace_get(arg, key, out);
}

static int held(void *arg, struct node_held **out, size_t *n)
{
    struct layer_info *ls = NULL;
    struct image_info *is = NULL;
    uint8_t(*ts)[DIGEST_LEN] = NULL;
    size_t nl = 0, ni = 0, nt = 0;
    int rc = store_layers_list(arg, &ls, &nl);
    if (rc == 0 && (rc = store_images_list(arg, &is, &ni)) == 0 &&
        (rc = store_traces_list(arg, &ts, &nt)) < 0)
        store_images_free(is, ni);
    if (rc < 0) {
        free(ls);
        return rc;
    }
    struct node_held *h = calloc(nl + ni + nt + 1, sizeof *h);
    if (h) {
        for (size_t i = 0; i < nl; i++) {
            memcpy(h[i].digest, ls[i].digest, DIGEST_LEN);
            h[i].complete = ls[i].complete;
        }
        for (size_t i = 0; i < ni; i++) {
            memcpy(h[nl + i].digest, is[i].manifest_digest, DIGEST_LEN);
            h[nl + i].complete = h[nl + i].manifest = true;
        }
        for (size_t i = 0; i < nt; i++) {
            memcpy(h[nl + ni + i].digest, ts[i], DIGEST_LEN);
            h[nl + ni + i].complete = h[nl + ni + i].trace = true;
        }
    }
    free(ls);
    free(ts);
    store_images_free(is, ni);
    if (!h)
        return -ENOMEM;
    *out = h;
    *n = nl + ni + nt;
    return 0;
}

static int usage(void *arg, struct node_store_usage *u)
{
    struct store_usage su;
    int rc = store_usage_get(arg, &su);
    if (rc < 0)
        return rc;
    *u = (struct node_store_usage){su.used, su.reserved, su.limit, su.nlayers, su.nimages};
    return 0;
}

static int layer_open(void *arg, const uint8_t digest[static DIGEST_LEN], void **layer)
{
    return store_layer_open(arg, digest, (struct store_layer **)layer);
}

static void layer_close(void *arg, void *layer)
{
    (void)arg;
    store_layer_close(layer);
}

static uint32_t layer_nchunks(void *layer)
{
    return store_layer_nchunks(layer);
}

static void layer_chunk(void *layer, uint32_t i, uint64_t *off, uint32_t *len)
{
    store_layer_chunk(layer, i, off, len);
}

static bool layer_has(void *layer, uint32_t i)
{
    return store_layer_chunk_present(layer, i);
}

static int layer_refresh(void *layer)
{
    return store_layer_refresh(layer);
}

static int layer_read(void *layer, uint64_t off, uint8_t *buf, size_t n)
{
    return store_layer_read_blob(layer, off, buf, n);
}

static uint32_t fetch_nchunks(void *fetch)
{
    return store_fetch_nchunks(fetch);
}

static const uint8_t *fetch_sender(void *fetch, uint8_t ix[DIGEST_LEN])
{
    return store_fetch_sender(fetch, ix);
}

static void fetch_chunk(void *fetch, uint32_t i, uint64_t *off, uint32_t *len)
{
    store_fetch_chunk(fetch, i, off, len);
}

static bool fetch_has(void *fetch, uint32_t i)
{
    return store_fetch_has(fetch, i);
}

static int chunk_begin(void *fetch, uint32_t i, void **rx)
{
    struct store_chunk_in *w = malloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    store_fetch_chunk_begin(fetch, i, w);
    *rx = w;
    return 0;
}

static int chunk_data(void *fetch, void *rx, const uint8_t *p, size_t n)
{
    return store_fetch_chunk_data(fetch, rx, p, n);
}

static int chunk_end(void *fetch, void *rx, uint64_t *bytes)
{
    struct store_chunk_in *w = rx;
    *bytes = w->got;
    int rc = store_fetch_chunk_end(fetch, w);
    free(w);
    return rc;
}

static void chunk_drop(void *fetch, void *rx)
{
    (void)fetch;
    store_fetch_chunk_drop(rx);
    free(rx);
}

static int dl_open(void *arg, const uint8_t digest[static DIGEST_LEN], void **dl)
{
    return store_dl_open(arg, digest, (struct store_dl **)dl);
}

static void dl_close(void *arg, void *dl)
{
    (void)arg;
    store_dl_close(dl);
}

static int dl_state(void *dl, uint64_t *written, uint64_t *size)
{
    return store_dl_state(dl, written, size);
}

static int dl_read(void *dl, uint64_t off, uint8_t *buf, size_t n)
{
    return store_dl_read(dl, off, buf, n);
}

const struct node_store_ops node_store_lmdb = {
    .blob = blob,
    .index = index_bytes,
    .trace = trace,
    .held = held,
    .usage = usage,
    .layer_open = layer_open,
    .layer_close = layer_close,
    .layer_nchunks = layer_nchunks,
    .layer_chunk = layer_chunk,
    .layer_has = layer_has,
    .layer_refresh = layer_refresh,
    .layer_read = layer_read,
    .fetch_nchunks = fetch_nchunks,
    .fetch_sender = fetch_sender,
    .fetch_chunk = fetch_chunk,
    .fetch_has = fetch_has,
    .chunk_begin = chunk_begin,
    .chunk_data = chunk_data,
    .chunk_end = chunk_end,
    .chunk_drop = chunk_drop,
    .dl_open = dl_open,
    .dl_close = dl_close,
    .dl_state = dl_state,
    .dl_read = dl_read,
};
