/*
 * providers.c - `afsp providers DIGEST`: who holds a layer (or any blob), as the DHT says.
 */
#include "cmd.h"
#include <jansson.h>

#include <inttypes.h>
#include <string.h>

const struct command cmd_providers_def = {
    "providers", cmd_providers, "look up who holds a layer, through the running node's DHT",
    "[--json] DIGEST\n"
    "\n"
    "Asks the node running on the data directory (afsp node) to look DIGEST (sha256:...) up\n"
    "in the DHT: a full lookup, to the 20 nodes closest to the digest, which lists every\n"
    "provider they name (this node not among them), and what the lookup cost.\n"
    "\n"
    "  --json   one JSON object: {\"providers\": [{\"id\", \"address\"}], \"lookup\":\n"
    "           {\"ms\", \"hops\", \"messages\", \"closest\"}}\n",
    false};

int cmd_providers(int argc, char **argv)
{
    struct cmd_iter it = CMD_ITER(&cmd_providers_def, argc, argv);
    const char *arg, *digest = NULL;
    int r, json = 0;
    uint8_t d[DIGEST_LEN];
    while ((r = cmd_next(&it, &arg)) > 0) {
        if (!strcmp(arg, "--json"))
            json = 1;
        else if (arg[0] == '-' || digest)
            return cmd_usage_error(&cmd_providers_def, "unexpected argument %s", arg);
        else
            digest = arg;
    }
    if (r < 0)
        return it.status;
    if (!digest)
        return cmd_usage_error(&cmd_providers_def, "DIGEST is required");
    if (digest_parse(digest, d) < 0)
        return cmd_usage_error(&cmd_providers_def, "bad digest %s (sha256:<64 hex digits>)",
                               digest);
    json_t *req = json_pack("{s:s}", "digest", digest);
    json_t *ans = node_ask(-1, NODE_CTL_PROVIDERS, req, "providers");
    json_decref(req);
    if (!ans)
        return 1;
    json_t *provs = json_object_get(ans, "providers"), *lk = json_object_get(ans, "lookup");
    if (json) {
        json_print(json_pack("{s:O, s:O}", "providers", provs ? provs : json_array(), "lookup",
                             lk ? lk : json_object()));
    } else {
        size_t i;
        json_t *p;
        printf("%-64s  %s\n", "ID", "ADDRESS");
        json_array_foreach(provs, i, p)
            printf("%-64s  %s\n", json_string_value(json_object_get(p, "id")),
                   json_string_value(json_object_get(p, "address")));
        fprintf(stderr,
                "%zu provider(s); lookup %" PRId64 " ms, %" PRId64 " hops, %" PRId64 " messages\n",
                json_array_size(provs), (int64_t)json_integer_value(json_object_get(lk, "ms")),
                (int64_t)json_integer_value(json_object_get(lk, "hops")),
                (int64_t)json_integer_value(json_object_get(lk, "messages")));
    }
    json_decref(ans);
    return 0;
}
