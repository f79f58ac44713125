/*
 * prune.c - `afsp prune --percent N`: evict least-recently-used layers.
 */
#include "cmd.h"

#include <stdlib.h>
#include <string.h>

const struct command cmd_prune_def = {
    "prune", cmd_prune, "evict least-recently-used layers",
    "--percent N\n"
    "\n"
    "Evicts least-recently-accessed layers until N% of the stored bytes are freed\n"
    "(0 <= N <= 100; any N > 0 frees at least one layer of a non-empty store).\n",
    false};

int cmd_prune(int argc, char **argv)
{
    long percent = -1;
    struct store *s;
    struct store_usage before, after;
    uint64_t freed = 0;
    char a[16], b[16];

    for (int i = 1; i < argc; i++) {
        int r = global_opt(argc, argv, &i);
        const char *val = NULL;
        if (r < 0)
            return 2;
        if (r)
            continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return cmd_help(&cmd_prune_def);
        if (!strcmp(argv[i], "--percent") && i + 1 < argc)
            val = argv[++i];
        else if (!strncmp(argv[i], "--percent=", 10))
            val = argv[i] + 10;
        else
            return cmd_usage_error(&cmd_prune_def, "unexpected argument %s", argv[i]);
        char *end;
        percent = strtol(val, &end, 10);
        if (*end || end == val || percent < 0 || percent > 100)
            return cmd_usage_error(&cmd_prune_def, "--percent takes a number from 0 to 100");
    }
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
    printf("freed %s in %zu layer(s); %s stored\n", bytes_fmt(freed, a),
           before.nlayers - after.nlayers, bytes_fmt(after.used, b));
    return 0;
}
