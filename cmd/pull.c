/*
 * pull.c - `afsp pull IMAGE`: fetch an image's layers into the store, verified and indexed.
 */
#include "cmd.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct command cmd_pull_def = {
    "pull", cmd_pull, "fetch an image into the store (verified and indexed)",
    "[--platform OS/ARCH[/VARIANT]] [--insecure-registry HOST]... IMAGE\n"
    "\n"
    "Fetches the manifest of IMAGE (a Docker reference: debian, host:port/name:tag,\n"
    "name@sha256:...), chooses the platform from an index (default: this machine's),\n"
    "and fetches each layer the store lacks in one streaming pass: verified against its\n"
    "digest, stored, and indexed for random access. Nothing unverified is kept.\n"
    "\n"
    "  --platform P             os/arch[/variant] to choose from a multi-platform index\n"
    "  --insecure-registry HOST reach HOST over plain HTTP (loopback registries always are)\n"
    "\n"
    "Credentials come from $DOCKER_CONFIG/config.json or ~/.docker/config.json (auths).\n"
    "Prints the manifest digest on success.\n",
    false};

struct progress_state {
    const char *ref;
    int tty;
    int shown;
};

static void on_progress(void *arg, const struct pull_progress *p)
{
    struct progress_state *st = arg;
    char a[16], b[16];
    if (!st->tty)
        return;
    if (!strcmp(p->phase, "done")) {
        if (st->shown)
            fprintf(stderr, "\r\033[K");
        return;
    }
    fprintf(stderr, "\r\033[Kpulling %s: layer %zu/%zu, %s / %s", st->ref, p->layer + 1, p->nlayers,
            bytes_fmt(p->done, a), bytes_fmt(p->total, b));
    st->shown = 1;
}

int cmd_pull(int argc, char **argv)
{
    const char *ref = NULL, *insecure[33] = {0};
    size_t ninsecure = 0;
    struct pull_opts po = {0};
    struct progress_state ps = {0};
    struct store *s;
    uint8_t digest[DIGEST_LEN];
    char dg[DIGEST_STR_LEN + 1];

    struct cmd_iter it = CMD_ITER(&cmd_pull_def, argc, argv);
    const char *arg;
    int r;
    while ((r = cmd_next(&it, &arg)) > 0) {
        const char *v;
        if ((v = cmd_value(&it, "--platform")))
            po.platform = v;
        else if ((v = cmd_value(&it, "--insecure-registry"))) {
            if (ninsecure == 32)
                return cmd_usage_error(&cmd_pull_def, "too many --insecure-registry");
            insecure[ninsecure++] = v;
        } else if (arg[0] == '-')
            return cmd_usage_error(&cmd_pull_def, "unknown option %s", arg);
        else if (ref)
            return cmd_usage_error(&cmd_pull_def, "one IMAGE at a time");
        else
            ref = arg;
    }
    if (r < 0)
        return it.status;
    if (!ref)
        return cmd_usage_error(&cmd_pull_def, "IMAGE is missing");
    po.insecure_hosts = insecure;
    ps.ref = ref;
    ps.tty = isatty(2);
    po.progress = on_progress;
    po.progress_arg = &ps;
    if (open_store(&s, false))
        return 1;
    int rc = store_pull(s, ref, &po, digest);
    store_close(s);
    if (rc < 0)
        return die("cannot pull %s: %s", ref, err_msg(rc));
    printf("%s %s\n", ref, digest_fmt(digest, dg));
    return 0;
}
