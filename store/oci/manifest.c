/*
 * manifest.c - OCI image indexes and manifests, Docker manifest lists and schema2 manifests:
 * parsing (jansson), bounds, and the choice of a platform from an index.
 *
 * Owns the struct manifest arrays it allocates. Everything here comes from a registry and is
 * untrusted: every field is type-checked and bounded before it is copied into a fixed-size
 * field, and anything unexpected is refused with a message rather than guessed at. Must not do
 * I/O (platform_host() only asks uname).
 */
#include "oci.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

static const char *const layer_types[] = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
};

/* ---- platforms ------------------------------------------------------------------------------ */

static bool platform_word_valid(const char *s, size_t n)
{
    if (n == 0 || n >= sizeof((struct platform *)0)->os)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/* The names other tools use for the same architecture, mapped to GOARCH. */
static void platform_normalise(struct platform *p)
{
    static const struct {
        const char *from, *arch, *variant;
    } alias[] = {
        {"x86_64", "amd64", NULL}, {"x86-64", "amd64", NULL}, {"aarch64", "arm64", NULL},
        {"armhf", "arm", "v7"},    {"armel", "arm", "v6"},    {"i386", "386", NULL},
        {"i686", "386", NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(alias); i++) {
        if (strcmp(p->arch, alias[i].from))
            continue;
        snprintf(p->arch, sizeof p->arch, "%s", alias[i].arch);
        if (alias[i].variant && !p->variant[0])
            snprintf(p->variant, sizeof p->variant, "%s", alias[i].variant);
        break;
    }
    /* containerd's rule: 32-bit arm without a variant means v7 */
    if (!strcmp(p->arch, "arm") && !p->variant[0])
        snprintf(p->variant, sizeof p->variant, "v7");
}

int platform_parse(const char *s, struct platform *out)
{
    char *fields[3] = {out->os, out->arch, out->variant};
    size_t nf = 0;
    const char *p = s;

    memset(out, 0, sizeof *out);
    if (!s)
        return err_set(AFSP_E_USAGE, "no platform given");
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (nf == 3 || !platform_word_valid(p, n)) {
            memset(out, 0, sizeof *out);
            return err_set(AFSP_E_USAGE, "invalid platform \"%.100s\" (want os/arch[/variant])", s);
        }
        for (size_t i = 0; i < n; i++)
            fields[nf][i] = (char)tolower((unsigned char)p[i]);
        fields[nf++][n] = 0;
        if (!slash)
            break;
        p = slash + 1;
    }
    if (nf < 2) {
        memset(out, 0, sizeof *out);
        return err_set(AFSP_E_USAGE, "invalid platform \"%.100s\" (want os/arch[/variant])", s);
    }
    platform_normalise(out);
    return 0;
}

void platform_host(struct platform *out)
{
    static const struct {
        const char *machine, *arch, *variant;
    } map[] = {
        {"x86_64", "amd64", ""},    {"amd64", "amd64", ""},     {"i386", "386", ""},
        {"i486", "386", ""},        {"i586", "386", ""},        {"i686", "386", ""},
        {"aarch64", "arm64", "v8"}, {"arm64", "arm64", "v8"},   {"armv8l", "arm", "v7"},
        {"armv7l", "arm", "v7"},    {"armv7", "arm", "v7"},     {"armv6l", "arm", "v6"},
        {"armv5tel", "arm", "v5"},  {"armv5tejl", "arm", "v5"}, {"ppc64le", "ppc64le", ""},
        {"ppc64", "ppc64", ""},     {"s390x", "s390x", ""},     {"riscv64", "riscv64", ""},
        {"mips64", "mips64", ""},   {"mips", "mips", ""},       {"loongarch64", "loong64", ""},
    };
    struct utsname u;

    memset(out, 0, sizeof *out);
    snprintf(out->os, sizeof out->os, "linux");
    if (uname(&u) < 0) {
        snprintf(out->arch, sizeof out->arch, "unknown");
        return;
    }
    for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
        if (!strcmp(u.machine, map[i].machine)) {
            snprintf(out->arch, sizeof out->arch, "%s", map[i].arch);
            snprintf(out->variant, sizeof out->variant, "%s", map[i].variant);
            return;
        }
    }
    snprintf(out->arch, sizeof out->arch, "%.31s", u.machine);
}

char *platform_fmt(const struct platform *p, char *out)
{
    snprintf(out, 100, "%s/%s%s%s", p->os, p->arch, p->variant[0] ? "/" : "", p->variant);
    return out;
}

/* ---- parsing -------------------------------------------------------------------------------- */

/* Copies the string member key of o into dst (size n). A missing member leaves dst "" and is an
 * error only when required. */
static int get_str(json_t *o, const char *key, bool required, char *dst, size_t n,
                   const char *where)
{
    json_t *v = json_object_get(o, key);
    dst[0] = 0;
    if (!v) {
        if (required)
            return err_set(AFSP_E_FORMAT, "%s: missing \"%s\"", where, key);
        return 0;
    }
    if (!json_is_string(v))
        return err_set(AFSP_E_FORMAT, "%s: \"%s\" is not a string", where, key);
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len >= n)
        return err_set(AFSP_E_FORMAT, "%s: \"%s\" is longer than %zu bytes", where, key, n - 1);
    if (memchr(s, 0, len))
        return err_set(AFSP_E_FORMAT, "%s: \"%s\" contains a NUL byte", where, key);
    memcpy(dst, s, len + 1);
    return 0;
}

static int check_string_array(json_t *o, const char *key, const char *where)
{
    json_t *v = json_object_get(o, key), *e;
    size_t i;
    if (!v)
        return 0;
    if (!json_is_array(v))
        return err_set(AFSP_E_FORMAT, "%s: \"%s\" is not an array", where, key);
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e))
            return err_set(AFSP_E_FORMAT, "%s: \"%s\" holds a non-string", where, key);
    }
    return 0;
}

static int check_annotations(json_t *o, const char *where)
{
    json_t *v = json_object_get(o, "annotations"), *e;
    const char *k;
    if (!v)
        return 0;
    if (!json_is_object(v))
        return err_set(AFSP_E_FORMAT, "%s: \"annotations\" is not an object", where);
    json_object_foreach(v, k, e)
    {
        if (!json_is_string(e))
            return err_set(AFSP_E_FORMAT, "%s: annotation values must be strings", where);
    }
    return 0;
}

static int parse_platform(json_t *o, struct platform *p, const char *where)
{
    json_t *v = json_object_get(o, "platform");
    int rc;
    memset(p, 0, sizeof *p);
    if (!v)
        return 0;
    if (!json_is_object(v))
        return err_set(AFSP_E_FORMAT, "%s: \"platform\" is not an object", where);
    if ((rc = get_str(v, "os", true, p->os, sizeof p->os, where)) ||
        (rc = get_str(v, "architecture", true, p->arch, sizeof p->arch, where)) ||
        (rc = get_str(v, "variant", false, p->variant, sizeof p->variant, where)))
        return rc;
    json_t *ver = json_object_get(v, "os.version");
    if (ver && !json_is_string(ver))
        return err_set(AFSP_E_FORMAT, "%s: \"os.version\" is not a string", where);
    if ((rc = check_string_array(v, "os.features", where)) ||
        (rc = check_string_array(v, "features", where)))
        return rc;
    return 0;
}

/* A descriptor: mediaType, digest, size, and the optional urls and annotations. */
static int parse_descriptor(json_t *o, struct descriptor *d, const char *where)
{
    int rc;
    memset(d, 0, sizeof *d);
    if (!json_is_object(o))
        return err_set(AFSP_E_FORMAT, "%s is not an object", where);
    if ((rc = get_str(o, "mediaType", true, d->media_type, sizeof d->media_type, where)))
        return rc;
    json_t *dg = json_object_get(o, "digest");
    if (!dg)
        return err_set(AFSP_E_FORMAT, "%s: missing \"digest\"", where);
    if (!json_is_string(dg))
        return err_set(AFSP_E_FORMAT, "%s: \"digest\" is not a string", where);
    if (strlen(json_string_value(dg)) != json_string_length(dg))
        return err_set(AFSP_E_FORMAT, "%s: \"digest\" contains a NUL byte", where);
    rc = digest_parse(json_string_value(dg), d->digest);
    if (rc == AFSP_E_UNSUPPORTED)
        return err_set(rc, "%s: digest algorithm of \"%.80s\"", where, json_string_value(dg));
    if (rc < 0)
        return err_set(AFSP_E_FORMAT, "%s: invalid digest \"%.80s\"", where, json_string_value(dg));
    json_t *sz = json_object_get(o, "size");
    if (!sz)
        return err_set(AFSP_E_FORMAT, "%s: missing \"size\"", where);
    if (!json_is_integer(sz) || json_integer_value(sz) < 0)
        return err_set(AFSP_E_FORMAT, "%s: \"size\" is not a non-negative integer", where);
    d->size = (uint64_t)json_integer_value(sz);
    if ((rc = check_string_array(o, "urls", where)) || (rc = check_annotations(o, where)))
        return rc;
    return 0;
}

static bool is_schema1(const char *t)
{
    return !strcmp(t, MT_DOCKER_SCHEMA1) || !strcmp(t, MT_DOCKER_SCHEMA1_SIGNED);
}

static int kind_of(const char *t, enum manifest_kind *kind)
{
    if (!strcmp(t, MT_OCI_INDEX) || !strcmp(t, MT_DOCKER_LIST))
        *kind = MANIFEST_INDEX;
    else if (!strcmp(t, MT_OCI_MANIFEST) || !strcmp(t, MT_DOCKER_MANIFEST))
        *kind = MANIFEST_IMAGE;
    else
        return -1;
    return 0;
}

/* The media type of a Content-Type value: parameters and surrounding blanks dropped. */
static void content_type_base(const char *ct, char *out, size_t n)
{
    out[0] = 0;
    if (!ct)
        return;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t len = strcspn(ct, ";");
    while (len && (ct[len - 1] == ' ' || ct[len - 1] == '\t'))
        len--;
    if (len >= n)
        len = n - 1; /* too long to be one we know; kept only to name it */
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)ct[i]);
    out[len] = 0;
}

static int parse_index(json_t *root, struct manifest *m)
{
    json_t *arr = json_object_get(root, "manifests"), *e;
    size_t i;
    if (!arr)
        return err_set(AFSP_E_FORMAT, "index: missing \"manifests\"");
    if (!json_is_array(arr))
        return err_set(AFSP_E_FORMAT, "index: \"manifests\" is not an array");
    size_t n = json_array_size(arr);
    if (n > MANIFEST_MAX_LAYERS)
        return err_set(AFSP_E_FORMAT, "index: %zu entries (at most %d)", n, MANIFEST_MAX_LAYERS);
    if (n && !(m->entries = calloc(n, sizeof *m->entries)))
        return -ENOMEM;
    json_array_foreach(arr, i, e)
    {
        char where[64];
        int rc;
        snprintf(where, sizeof where, "index entry %zu", i);
        if ((rc = parse_descriptor(e, &m->entries[i], where)) ||
            (rc = parse_platform(e, &m->entries[i].platform, where)))
            return rc;
        m->nentries = i + 1;
    }
    return 0;
}

static bool layer_type_ok(const char *t)
{
    for (size_t i = 0; i < ARRAY_SIZE(layer_types); i++)
        if (!strcmp(t, layer_types[i]))
            return true;
    return false;
}

static int parse_image(json_t *root, struct manifest *m)
{
    json_t *arr = json_object_get(root, "layers"), *e;
    size_t i;
    int rc;

    json_t *cfg = json_object_get(root, "config");
    if (!cfg)
        return err_set(AFSP_E_FORMAT, "manifest: missing \"config\"");
    if ((rc = parse_descriptor(cfg, &m->config, "manifest config")))
        return rc;
    if (!arr)
        return err_set(AFSP_E_FORMAT, "manifest: missing \"layers\"");
    if (!json_is_array(arr))
        return err_set(AFSP_E_FORMAT, "manifest: \"layers\" is not an array");
    size_t n = json_array_size(arr);
    if (n > MANIFEST_MAX_LAYERS)
        return err_set(AFSP_E_FORMAT, "manifest: %zu layers (at most %d)", n, MANIFEST_MAX_LAYERS);
    if (n && !(m->layers = calloc(n, sizeof *m->layers)))
        return -ENOMEM;
    json_array_foreach(arr, i, e)
    {
        char where[64];
        snprintf(where, sizeof where, "layer %zu", i);
        if ((rc = parse_descriptor(e, &m->layers[i], where)))
            return rc;
        m->nlayers = i + 1;
        if (!layer_type_ok(m->layers[i].media_type))
            return err_set(AFSP_E_UNSUPPORTED, "layer %zu: media type %s", i,
                           m->layers[i].media_type);
    }
    return 0;
}

int manifest_parse(const uint8_t *body, size_t len, const char *content_type, struct manifest *out)
{
    char ct[sizeof out->media_type];
    char body_type[sizeof out->media_type];
    enum manifest_kind kind;
    bool kind_known = false;
    json_error_t jerr;
    json_t *root = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    content_type_base(content_type, ct, sizeof ct);
    if (is_schema1(ct))
        return err_set(AFSP_E_UNSUPPORTED, "schema1 manifests are not supported");
    if (len > MANIFEST_MAX_BYTES)
        return err_set(AFSP_E_FORMAT, "manifest of %zu bytes (at most %u)", len,
                       MANIFEST_MAX_BYTES);
    if (kind_of(ct, &kind) == 0)
        kind_known = true;
    else
        ct[0] = 0; /* a generic or wrong Content-Type: the body decides */

    root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return err_set(AFSP_E_FORMAT, "manifest is not valid JSON (line %d column %d)", jerr.line,
                       jerr.column);
    if (!json_is_object(root)) {
        rc = err_set(AFSP_E_FORMAT, "manifest is not a JSON object");
        goto out;
    }
    json_t *sv = json_object_get(root, "schemaVersion");
    if (!sv) {
        rc = err_set(AFSP_E_FORMAT, "manifest has no schemaVersion");
        goto out;
    }
    if (!json_is_integer(sv)) {
        rc = err_set(AFSP_E_FORMAT, "manifest schemaVersion is not an integer");
        goto out;
    }
    if (json_integer_value(sv) == 1) {
        rc = err_set(AFSP_E_UNSUPPORTED, "schema1 manifests are not supported");
        goto out;
    }
    if (json_integer_value(sv) != 2) {
        rc = err_set(AFSP_E_UNSUPPORTED, "manifest schemaVersion %" JSON_INTEGER_FORMAT,
                     json_integer_value(sv));
        goto out;
    }
    if ((rc = get_str(root, "mediaType", false, body_type, sizeof body_type, "manifest")))
        goto out;
    if (is_schema1(body_type)) {
        rc = err_set(AFSP_E_UNSUPPORTED, "schema1 manifests are not supported");
        goto out;
    }
    if (body_type[0]) {
        enum manifest_kind bkind;
        if (kind_of(body_type, &bkind) < 0) {
            rc = err_set(AFSP_E_UNSUPPORTED, "manifest media type %s", body_type);
            goto out;
        }
        if (kind_known && strcmp(ct, body_type)) {
            rc = err_set(AFSP_E_FORMAT, "manifest served as %s says it is %s", ct, body_type);
            goto out;
        }
        kind = bkind;
        kind_known = true;
        snprintf(out->media_type, sizeof out->media_type, "%s", body_type);
    } else if (kind_known) {
        snprintf(out->media_type, sizeof out->media_type, "%s", ct);
    }

    bool has_index = json_object_get(root, "manifests") != NULL;
    bool has_image = json_object_get(root, "layers") || json_object_get(root, "config");
    if (has_index && has_image) {
        rc = err_set(AFSP_E_FORMAT, "manifest has both \"manifests\" and \"layers\"/\"config\"");
        goto out;
    }
    if (!kind_known) { /* OCI allows mediaType to be absent: the structure decides */
        if (!has_index && !has_image) {
            rc = err_set(AFSP_E_FORMAT, "neither an image manifest nor an index");
            goto out;
        }
        kind = has_index ? MANIFEST_INDEX : MANIFEST_IMAGE;
        snprintf(out->media_type, sizeof out->media_type, "%s",
                 has_index ? MT_OCI_INDEX : MT_OCI_MANIFEST);
    }
    out->kind = kind;
    if ((rc = check_annotations(root, "manifest")))
        goto out;
    rc = kind == MANIFEST_INDEX ? parse_index(root, out) : parse_image(root, out);
out:
    json_decref(root);
    if (rc)
        manifest_release(out);
    return rc;
}

void manifest_release(struct manifest *m)
{
    free(m->layers);
    free(m->entries);
    memset(m, 0, sizeof *m);
}

static bool is_image_type(const char *t)
{
    return !strcmp(t, MT_OCI_MANIFEST) || !strcmp(t, MT_DOCKER_MANIFEST);
}

int manifest_choose(const struct manifest *index, const struct platform *want)
{
    int best = -1, best_score = 0;
    char pbuf[100];

    if (index->kind != MANIFEST_INDEX)
        return err_set(AFSP_E_PLATFORM, "not an index");
    for (size_t i = 0; i < index->nentries; i++) {
        const struct descriptor *e = &index->entries[i];
        const struct platform *p = &e->platform;
        /* buildkit's attestation manifests sit in the index as unknown/unknown */
        if (!strcmp(p->os, "unknown") && !strcmp(p->arch, "unknown"))
            continue;
        if (!is_image_type(e->media_type))
            continue;
        if (strcmp(p->os, want->os) || strcmp(p->arch, want->arch))
            continue;
        if (p->variant[0] && want->variant[0] && strcmp(p->variant, want->variant))
            continue;
        int score = !strcmp(p->variant, want->variant) ? 2 : 1;
        if (score > best_score) {
            best = (int)i;
            best_score = score;
        }
    }
    if (best < 0)
        return err_set(AFSP_E_PLATFORM, "no image for %s among %zu index entries",
                       platform_fmt(want, pbuf), index->nentries);
    return best;
}
