/*
 * fuzz/manifest.c - libFuzzer target for what a registry or a user hands us as text:
 * manifest_parse() on the data (the Content-Type chosen by the first byte), then ref_parse() and
 * platform_parse() on the data as a string, and config_process() and config_platform() on it as
 * an image config. Whatever parses must be within the bounds the header promises, and a
 * reference's canonical text must parse back to itself.
 */
#include "../store/oci/oci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const content_types[] = {
    NULL,
    "",
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
    MT_DOCKER_SCHEMA1,
    MT_DOCKER_SCHEMA1_SIGNED,
    "application/json",
    MT_OCI_MANIFEST "; charset=utf-8",
};

static void check_manifest(const struct manifest *m)
{
    if (m->kind == MANIFEST_IMAGE) {
        if (m->nlayers > MANIFEST_MAX_LAYERS || m->nentries || (m->nlayers && !m->layers))
            abort();
        for (size_t i = 0; i < m->nlayers; i++)
            if (strnlen(m->layers[i].media_type, sizeof m->layers[i].media_type) >=
                sizeof m->layers[i].media_type)
                abort();
    } else {
        if (m->kind != MANIFEST_INDEX || m->nentries > MANIFEST_MAX_LAYERS || m->nlayers ||
            (m->nentries && !m->entries))
            abort();
        struct platform p;
        platform_host(&p);
        int i = manifest_choose(m, &p);
        if (i >= (int)m->nentries || (i < 0 && i != AFSP_E_PLATFORM))
            abort();
        for (size_t k = 0; k < m->nentries; k++) {
            i = manifest_choose(m, &m->entries[k].platform);
            if (i >= (int)m->nentries || (i < 0 && i != AFSP_E_PLATFORM))
                abort();
        }
    }
    if (strnlen(m->media_type, sizeof m->media_type) >= sizeof m->media_type)
        abort();
}

/* An image config's process: arrays within CONFIG_ARGS_MAX, Env entries NAME=VALUE; nothing
 * left behind by a refusal. */
static void check_config(const uint8_t *p, size_t n)
{
    struct config_process c;
    char plat[100];
    int rc = config_process(p, n, &c);
    if (rc < 0) {
        if ((rc != AFSP_E_FORMAT && rc != -ENOMEM) || c.entrypoint || c.cmd || c.env || c.workdir ||
            c.user)
            abort();
    } else {
        char **v[] = {c.entrypoint, c.cmd, c.env};
        for (int k = 0; k < 3; k++) {
            size_t i = 0;
            for (; v[k] && v[k][i]; i++)
                if (k == 2 && (!strchr(v[k][i], '=') || v[k][i][0] == '='))
                    abort();
            if (i > CONFIG_ARGS_MAX)
                abort();
        }
        config_process_free(&c);
    }
    (void)config_platform(p, n, plat, sizeof plat);
}

static void check_ref(const char *s)
{
    struct image_ref r, again;
    int rc = ref_parse(s, &r);
    if (rc) {
        if (rc != AFSP_E_REF && rc != -ENOMEM)
            abort();
        if (r.host || r.repo || r.tag || r.digest)
            abort();
        return;
    }
    if (!r.host || !r.repo || (!r.tag && !r.digest))
        abort();
    char *text = ref_str(&r);
    if (!text)
        abort();
    if (ref_parse(text, &again) != 0)
        abort();
    char *text2 = ref_str(&again);
    if (!text2 || strcmp(text, text2) || strcmp(r.host, again.host) || strcmp(r.repo, again.repo))
        abort();
    (void)host_is_loopback(r.host);
    (void)ref_api_host(&r);
    free(text2);
    free(text);
    ref_release(&again);
    ref_release(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct manifest m;
    if (size == 0)
        return 0;
    const char *ct = content_types[data[0] % ARRAY_SIZE(content_types)];
    if (manifest_parse(data + 1, size - 1, ct, &m) == 0) {
        check_manifest(&m);
        manifest_release(&m);
    }
    check_config(data, size);

    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    check_ref(s);
    struct platform p;
    char buf[100];
    if (platform_parse(s, &p) == 0)
        platform_fmt(&p, buf);
    free(s);
    err_clear();
    return 0;
}
