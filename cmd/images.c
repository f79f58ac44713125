/*
 * images.c - `afsp images`: the images this node holds.
 */
#include "cmd.h"

#include <jansson.h>
#include <string.h>

const struct command cmd_images_def = {
    "images", cmd_images, "list the images in the store",
    "[--json]\n"
    "\n"
    "Lists each pulled image: reference, manifest digest, platform, layers present/total and\n"
    "compressed size. --json prints an array of objects (docs/cli.md).\n",
    false};

int cmd_images(int argc, char **argv)
{
    int json, rc;
    struct store *s;
    struct image_info *v;
    size_t n;
    char dg[DIGEST_STR_LEN + 1], sz[16], t[32];

    int st = listing_start(&cmd_images_def, argc, argv, &json, &s);
    if (st >= 0)
        return st;
    v = NULL, n = 0, rc = 0; /* no store yet: an empty list */
    if (s) {
        rc = store_images_list(s, &v, &n);
        store_close(s);
    }
    if (rc < 0)
        return die("cannot list images: %s", err_msg(rc));
    if (json) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *layers = json_array();
            for (size_t k = 0; k < v[i].nlayers; k++)
                json_array_append_new(layers, json_string(digest_fmt(v[i].layers[k], dg)));
            json_array_append_new(
                a, json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:s}", "reference", v[i].ref,
                             "manifestDigest", digest_fmt(v[i].manifest_digest, dg), "platform",
                             v[i].platform, "layers", layers, "layersPresent",
                             (json_int_t)v[i].nlayers_present, "size", (json_int_t)v[i].size,
                             "pulled", time_fmt(v[i].pulled_ns, t)));
        }
        json_print(a);
    } else {
        printf("%-50s %-19s %-14s %-7s %s\n", "REFERENCE", "DIGEST", "PLATFORM", "LAYERS", "SIZE");
        for (size_t i = 0; i < n; i++) {
            char layers[32];
            snprintf(layers, sizeof layers, "%zu/%zu", v[i].nlayers_present, v[i].nlayers);
            printf("%-50s %.19s %-14s %-7s %s\n", v[i].ref, digest_fmt(v[i].manifest_digest, dg),
                   v[i].platform, layers, bytes_fmt(v[i].size, sz));
        }
    }
    store_images_free(v, n);
    return 0;
}
