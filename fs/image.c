/*
 * image.c - an image opened for reading: its layers, bottom first, each opened through its
 * index and pinned in the store (eviction passes over them while the image is open). What
 * `afsp mount` and the executor read files from.
 *
 * Owns: the open layers and the pin. Must not: fetch anything itself (a partial layer's chunks
 * come through the store's fetcher, set by the caller).
 */
#include "fs.h"

#include <errno.h>
#include <stdlib.h>

int fs_image_open(struct store *s, const char *ref, struct fs_image *out)
{
    struct fs_image im = {.s = s};
    int rc = store_image_find(s, ref, &im.info);
    if (rc < 0)
        return err_ctx(rc, "image %s", ref);
    if (!(im.layers = calloc(im.info.nlayers + 1, sizeof *im.layers))) {
        free(im.info.layers);
        return -ENOMEM;
    }
    for (size_t k = 0; k < im.info.nlayers && rc == 0; k++) {
        char dg[DIGEST_STR_LEN + 1];
        if ((rc = store_layer_open(s, im.info.layers[k], &im.layers[k])) < 0)
            rc = rc == AFSP_E_NOTFOUND ? err_set(rc, "layer %s: its index is not in the store",
                                                 digest_fmt(im.info.layers[k], dg))
                                       : err_ctx(rc, "layer %s", digest_fmt(im.info.layers[k], dg));
    }
    if (rc == 0 &&
        (rc = store_pin(s, (const uint8_t(*)[DIGEST_LEN])im.info.layers, im.info.nlayers)) == 0) {
        *out = im;
        return 0;
    }
    for (size_t k = 0; k < im.info.nlayers; k++)
        if (im.layers[k])
            store_layer_close(im.layers[k]);
    free(im.layers);
    free(im.info.layers);
    return rc;
}

void fs_image_close(struct fs_image *im)
{
    if (!im->layers)
        return;
    store_unpin(im->s, (const uint8_t(*)[DIGEST_LEN])im->info.layers, im->info.nlayers);
    for (size_t k = 0; k < im->info.nlayers; k++)
        store_layer_close(im->layers[k]);
    free(im->layers);
    free(im->info.layers);
    im->layers = NULL;
}
