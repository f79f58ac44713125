/*
 * peers.c - `afsp peers`: the peers the node on this data directory is connected to.
 */
#include "cmd.h"
#include <jansson.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct command cmd_peers_def = {
    "peers", cmd_peers, "list the peers the running node is connected to",
    "[--json]\n"
    "\n"
    "Asks the node running on the data directory (afsp node) for its peers: node ID,\n"
    "address, round-trip time of the handshake, bytes in and out, connected since.\n"
    "\n"
    "  --json   one JSON object: {\"peers\": [{\"id\", \"address\", \"listen_port\",\n"
    "           \"initiator\", \"rtt_ms\", \"bytes_in\", \"bytes_out\", \"since\", \"banned\",\n"
    "           \"requests_out\", \"requests_in\"}]}\n",
    false};

int cmd_peers(int argc, char **argv)
{
    int json, r = json_only_args(&cmd_peers_def, argc, argv, &json);
    if (r >= 0)
        return r;
    json_t *ans = node_ask(-1, NODE_CTL_PEERS, NULL, "peers");
    if (!ans)
        return 1;
    json_t *peers = json_object_get(ans, "peers");
    if (json) {
        json_print(json_pack("{s:O}", "peers", peers ? peers : json_array()));
    } else {
        size_t i;
        json_t *p;
        char a[16], b[16];
        printf("%-16s  %-22s  %6s  %9s  %9s  %s\n", "ID", "ADDRESS", "RTT", "IN", "OUT", "SINCE");
        json_array_foreach(peers, i, p)
        {
            printf("%-16.16s  %-22s  %4" PRId64 "ms  %9s  %9s  %s%s\n",
                   json_string_value(json_object_get(p, "id")),
                   json_string_value(json_object_get(p, "address")),
                   (int64_t)json_integer_value(json_object_get(p, "rtt_ms")),
                   bytes_fmt((uint64_t)json_integer_value(json_object_get(p, "bytes_in")), a),
                   bytes_fmt((uint64_t)json_integer_value(json_object_get(p, "bytes_out")), b),
                   json_string_value(json_object_get(p, "since")),
                   json_is_true(json_object_get(p, "banned")) ? "  (banned)" : "");
        }
    }
    json_decref(ans);
    return 0;
}
