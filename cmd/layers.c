/*
 * layers.c - `afsp layers`: the layers this node holds.
 */
#include "cmd.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

const struct command cmd_layers_def = {
    "layers", cmd_layers, "list the layers in the store",
    "[--json]\n"
    "\n"
    "Lists each stored layer: digest, compressed and uncompressed size, media type, chunks\n"
    "present/total, and last access. --json prints an array of objects (docs/cli.md).\n",
    false};

int cmd_layers(int argc, char **argv)
{
    int json, rc;
    struct store *s;
    struct layer_info *v;
    size_t n;
    char dg[DIGEST_STR_LEN + 1], a[16], b[16], t[32];

    int st = listing_start(&cmd_layers_def, argc, argv, &json, &s);
    if (st >= 0)
        return st;
    v = NULL, n = 0, rc = 0; /* no store yet: an empty list */
    if (s) {
        rc = store_layers_list(s, &v, &n);
        store_close(s);
    }
    if (rc < 0)
        return die("cannot list layers: %s", err_msg(rc));
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:s}", "digest",
                               digest_fmt(v[i].digest, dg), "mediaType", v[i].media_type, "size",
                               (json_int_t)v[i].size, "uncompressedSize", (json_int_t)v[i].usize,
                               "chunks", (json_int_t)v[i].nchunks, "chunksPresent",
                               (json_int_t)v[i].chunks_present, "files", (json_int_t)v[i].nfiles,
                               "storedBytes", (json_int_t)v[i].stored_bytes, "complete",
                               v[i].complete, "verified", v[i].index_built, "lastAccess",
                               time_fmt(v[i].last_access_ns, t)));
        json_print(arr);
    } else {
        printf("%-19s %-10s %-10s %-9s %-45s %s\n", "DIGEST", "SIZE", "UNPACKED", "CHUNKS",
               "MEDIA TYPE", "LAST ACCESS");
        for (size_t i = 0; i < n; i++) {
            char ch[32];
            snprintf(ch, sizeof ch, "%u/%u", v[i].chunks_present, v[i].nchunks);
            printf("%.19s %-10s %-10s %-9s %-45s %s\n", digest_fmt(v[i].digest, dg),
                   bytes_fmt(v[i].size, a), bytes_fmt(v[i].usize, b), ch, v[i].media_type,
                   time_fmt(v[i].last_access_ns, t));
        }
    }
    free(v);
    return 0;
}
