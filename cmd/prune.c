/*
 * prune.c - `afsp prune --percent N`: evict least-recently-used layers.
 */
#include "cmd.h"
#include <jansson.h>

#include <stdlib.h>
#include <string.h>

const struct command cmd_prune_def = {
    "prune", cmd_prune, "evict least-recently-used layers",
    "--percent N\n"
    "\n"
    "Evicts least-recently-accessed layers until N% of the stored bytes are freed\n"
    "(0 <= N <= 100; any N > 0 frees at least one layer of a non-empty store).\n"
    "A node running on the data directory withdraws them from the DHT at once.\n",
    false};

int cmd_prune(int argc, char **argv)
{
    long percent = -1;
    struct store *s;
    struct store_usage before, after;
    uint64_t freed = 0;
    char a[16], b[16];

    struct cmd_iter it = CMD_ITER(&cmd_prune_def, argc, argv);
    const char *arg, *val;
    int r;
    while ((r = cmd_next(&it, &arg)) > 0) {
        if (!(val = cmd_value(&it, "--percent")))
            return cmd_usage_error(&cmd_prune_def, "unexpected argument %s", arg);
        if (it.status)
            break;
        char *end;
        percent = strtol(val, &end, 10);
        if (*end || end == val || percent < 0 || percent > 100)
            return cmd_usage_error(&cmd_prune_def, "--percent takes a number from 0 to 100");
    }
    if (r < 0 || it.status)
        return it.status;
    if (percent < 0)
        return cmd_usage_error(&cmd_prune_def, "--percent is required");
    if (open_store(&s, false))
        return 1;
    int rc = store_usage_get(s, &before);
    if (rc == 0)
        rc = store_prune(s, (unsigned)percent, &freed);
    if (rc == 0)
        rc = store_usage_get(s, &after);
    store_close(s);
    if (rc < 0)
        return die("cannot prune: %s", err_msg(rc));
    /* a node on this data directory stops announcing and serving what went */
    int fd = node_client_connect(data_dir());
    if (fd >= 0) {
        json_t *ans = node_ask(fd, NODE_CTL_RECONCILE, NULL, "tell the node");
        if (!ans)
            return 1;
        json_decref(ans);
    }
    printf("freed %s in %zu layer(s); %s stored\n", bytes_fmt(freed, a),
           before.nlayers - after.nlayers, bytes_fmt(after.used, b));
    return 0;
}
