/*
 * stats.c - `afsp stats`: the running node's store use and counters.
 */
#include "cmd.h"
#include <jansson.h>

#include <inttypes.h>
#include <string.h>

const struct command cmd_stats_def = {
    "stats", cmd_stats, "show the running node's store use and counters",
    "[--json]\n"
    "\n"
    "Asks the node running on the data directory (afsp node) for its statistics: node ID,\n"
    "peers, store use against the cache limit, layer bytes from the registry, from each peer\n"
    "and to each peer, chunks and bytes served and fetched, bad\n"
    "chunks caught, stalled requests, peer errors, failed handshakes, rate-limited\n"
    "connections, pulls.\n"
    "\n"
    "  --json   one JSON object: {\"stats\": {\"id\", \"listen\", \"started\", \"peers\",\n"
    "           \"store\": {\"used\", \"reserved\", \"limit\", \"layers\", \"images\"},\n"
    "           \"transfer\": {\"from_registry\", \"from_peers\", \"to_peers\",\n"
    "           \"peers\": [{\"id\", \"from\", \"to\"}]},\n"
    "           \"counters\": {...}, \"dht\": {...},\n"
    "           \"jobs\": {\"capacity\", \"used\", \"free\": {\"cpus\", \"memory\",\n"
    "           \"scratch\", \"devices\"}, \"running\", \"preparing\", \"queued\", \"kept\"}}}\n"
    "  --doc    print what each counter and DHT figure is (Markdown), without asking a node\n",
    false};

int cmd_stats(int argc, char **argv)
{
    struct cmd_iter it = CMD_ITER(&cmd_stats_def, argc, argv);
    const char *arg;
    int r, json = 0, doc = 0;
    while ((r = cmd_next(&it, &arg)) > 0) {
        if (!strcmp(arg, "--json"))
            json = 1;
        else if (!strcmp(arg, "--doc"))
            doc = 1;
        else
            return cmd_usage_error(&cmd_stats_def, "unexpected argument %s", arg);
    }
    if (r < 0)
        return it.status;
    if (doc) {
        struct buf b = {0};
        node_counters_doc(&b);
        fwrite(b.p, 1, b.len, stdout);
        buf_release(&b);
        return 0;
    }
    json_t *ans = node_ask(-1, NODE_CTL_STATS, NULL, "stats");
    if (!ans)
        return 1;
    json_t *st = json_object_get(ans, "stats");
    if (json) {
        json_print(json_pack("{s:O}", "stats", st ? st : json_object()));
    } else {
        json_t *s = json_object_get(st, "store"), *c = json_object_get(st, "counters"), *v;
        const char *k;
        char a[16], b[16];
        printf("node      %s\n", json_string_value(json_object_get(st, "id")));
        printf("listen    %s\n", json_string_value(json_object_get(st, "listen")));
        printf("since     %s\n", json_string_value(json_object_get(st, "started")));
        printf("peers     %" PRId64 "\n",
               (int64_t)json_integer_value(json_object_get(st, "peers")));
        printf("store     %s of %s, %" PRId64 " layers, %" PRId64 " images\n",
               bytes_fmt((uint64_t)json_integer_value(json_object_get(s, "used")), a),
               bytes_fmt((uint64_t)json_integer_value(json_object_get(s, "limit")), b),
               (int64_t)json_integer_value(json_object_get(s, "layers")),
               (int64_t)json_integer_value(json_object_get(s, "images")));
        json_t *tr = json_object_get(st, "transfer"), *e;
        size_t i;
        char d[16];
        printf("layers    %s from the registry, %s from peers, %s to peers\n",
               bytes_fmt((uint64_t)json_integer_value(json_object_get(tr, "from_registry")), a),
               bytes_fmt((uint64_t)json_integer_value(json_object_get(tr, "from_peers")), b),
               bytes_fmt((uint64_t)json_integer_value(json_object_get(tr, "to_peers")), d));
        json_array_foreach(json_object_get(tr, "peers"), i, e)
        {
            printf("  peer %.16s  %s from, %s to\n", json_string_value(json_object_get(e, "id")),
                   bytes_fmt((uint64_t)json_integer_value(json_object_get(e, "from")), a),
                   bytes_fmt((uint64_t)json_integer_value(json_object_get(e, "to")), b));
        }
        json_t *jb = json_object_get(st, "jobs"), *cap = json_object_get(jb, "capacity"),
               *fr = json_object_get(jb, "free");
        printf("jobs      %" PRId64 " running, %" PRId64 " preparing, %" PRId64 " queued; "
               "free %.3f of %.3f cpus, %s of %s memory, %s of scratch\n",
               (int64_t)json_integer_value(json_object_get(jb, "running")),
               (int64_t)json_integer_value(json_object_get(jb, "preparing")),
               (int64_t)json_integer_value(json_object_get(jb, "queued")),
               json_real_value(json_object_get(fr, "cpus")),
               json_real_value(json_object_get(cap, "cpus")),
               bytes_fmt((uint64_t)json_integer_value(json_object_get(fr, "memory")), a),
               bytes_fmt((uint64_t)json_integer_value(json_object_get(cap, "memory")), b),
               bytes_fmt((uint64_t)json_integer_value(json_object_get(fr, "scratch")), d));
        json_object_foreach(c, k, v)
            printf("%-20s %" PRId64 "\n", k, (int64_t)json_integer_value(v));
    }
    json_decref(ans);
    return 0;
}
