/*
 * pull.c - `afsp pull IMAGE`: fetch an image's layers into the store, verified and indexed.
 */
#include "cmd.h"

#include <jansson.h>

#include "../store/pull/pull.h"

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
    "When a node runs on the data directory (afsp node), the pull goes through it: the\n"
    "manifest (by digest), the config and the layers come from its peers when they hold\n"
    "them, every chunk checked, and from the registry otherwise.\n"
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

int pull_opt(struct cmd_iter *it, const char *arg, struct pull_args *pa)
{
    const char *v;
    if ((v = cmd_value(it, "--platform"))) {
        pa->platform = v;
        return 1;
    }
    if ((v = cmd_value(it, "--insecure-registry"))) {
        if (pa->ninsecure == PULL_MAX_INSECURE) {
            it->status = cmd_usage_error(it->c, "too many --insecure-registry");
            return -1;
        }
        pa->insecure[pa->ninsecure++] = v;
        return 1;
    }
    (void)arg;
    return 0;
}

int pull_run(struct store *s, const char *ref, const struct pull_args *pa,
             uint8_t digest[DIGEST_LEN])
{
    struct progress_state ps = {.ref = ref, .tty = isatty(2)};
    struct pull_opts po = {.platform = pa->platform,
                           .insecure_hosts = pa->insecure,
                           .progress = on_progress,
                           .progress_arg = &ps};
    return store_pull(s, ref, &po, digest);
}

int pull_via_node(int fd, const char *ref, const struct pull_args *pa, bool lazy,
                  uint8_t digest[DIGEST_LEN])
{
    json_t *ins = json_array(), *ans = NULL;
    for (size_t i = 0; i < pa->ninsecure; i++)
        json_array_append_new(ins, json_string(pa->insecure[i]));
    json_t *req = json_pack("{s:s, s:o, s:b}", "ref", ref, "insecure", ins, "lazy", lazy);
    if (pa->platform)
        json_object_set_new(req, "platform", json_string(pa->platform));
    char what[600];
    snprintf(what, sizeof what, "cannot pull %s", ref);
    ans = node_ask(fd, NODE_CTL_PULL, req, what);
    json_decref(req);
    if (!ans)
        return 1;
    const char *dg = json_string_value(json_object_get(ans, "digest"));
    int status = dg && digest_parse(dg, digest) == 0 ? 0 : die("%s: the node gave no digest", what);
    json_decref(ans);
    return status;
}

int cmd_pull(int argc, char **argv)
{
    const char *ref = NULL;
    struct pull_args pa = {0};
    struct store *s;
    uint8_t digest[DIGEST_LEN];
    char dg[DIGEST_STR_LEN + 1];

    struct cmd_iter it = CMD_ITER(&cmd_pull_def, argc, argv);
    const char *arg;
    int r;
    while ((r = cmd_next(&it, &arg)) > 0) {
        int k = pull_opt(&it, arg, &pa);
        if (k < 0)
            return it.status;
        if (k > 0)
            continue;
        if (arg[0] == '-')
            return cmd_usage_error(&cmd_pull_def, "unknown option %s", arg);
        if (ref)
            return cmd_usage_error(&cmd_pull_def, "one IMAGE at a time");
        ref = arg;
    }
    if (r < 0)
        return it.status;
    if (!ref)
        return cmd_usage_error(&cmd_pull_def, "IMAGE is missing");
    int fd = node_client_connect(data_dir());
    if (fd >= 0) {
        if (pull_via_node(fd, ref, &pa, false, digest))
            return 1;
        printf("%s %s\n", ref, digest_fmt(digest, dg));
        return 0;
    }
    if (open_store(&s, false))
        return 1;
    int rc = pull_run(s, ref, &pa, digest);
    store_close(s);
    if (rc < 0)
        return die("cannot pull %s: %s", ref, err_msg(rc));
    printf("%s %s\n", ref, digest_fmt(digest, dg));
    return 0;
}
