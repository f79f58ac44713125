/*
 * test_manifest.c - manifest and index parsing (OCI and Docker), schema1 refusal, type checks
 * and bounds on untrusted input, platform parsing and the choice of a platform from an index.
 */
#include "test.h"

#include "../../store/oci/oci.h"

#define L_TGZ "application/vnd.oci.image.layer.v1.tar+gzip"
#define L_ZST "application/vnd.oci.image.layer.v1.tar+zstd"
#define L_DGZ "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define C_OCI "application/vnd.oci.image.config.v1+json"
#define C_DOCKER "application/vnd.docker.container.image.v1+json"

/* "sha256:" and 64 copies of c */
static const char *dg(char c)
{
    static char s[8][DIGEST_STR_LEN + 1];
    static int k;
    char *p = s[k++ & 7];
    memcpy(p, "sha256:", 7);
    memset(p + 7, c, 64);
    p[DIGEST_STR_LEN] = 0;
    return p;
}

static void digest_of(char c, uint8_t out[DIGEST_LEN])
{
    CHECK_INT(digest_parse(dg(c), out), ==, 0);
}

static int parse_str(const char *body, const char *ct, struct manifest *m)
{
    return manifest_parse((const uint8_t *)body, strlen(body), ct, m);
}

static char *image_json(const char *mt, const char *layer_mt, int nlayers)
{
    struct buf b = {0};
    buf_printf(&b, "{\"schemaVersion\":2,");
    if (mt)
        buf_printf(&b, "\"mediaType\":\"%s\",", mt);
    buf_printf(&b, "\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1234},", C_OCI,
               dg('c'));
    buf_printf(&b, "\"layers\":[");
    for (int i = 0; i < nlayers; i++)
        buf_printf(&b, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%d}", i ? "," : "",
                   layer_mt, dg((char)('0' + i % 10)), 1000 + i);
    buf_printf(&b, "],\"annotations\":{\"a\":\"b\"}}");
    return (char *)b.p;
}

TEST(manifest_parse_oci_image)
{
    const char *body =
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
        "\"config\":{\"mediaType\":\"" C_OCI "\",\"digest\":\"sha256:"
        "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\",\"size\":7023},"
        "\"layers\":[{\"mediaType\":\"" L_TGZ "\",\"digest\":\"sha256:"
        "1111111111111111111111111111111111111111111111111111111111111111\",\"size\":32654,"
        "\"annotations\":{\"x\":\"y\"}},"
        "{\"mediaType\":\"" L_ZST "\",\"digest\":\"sha256:"
        "2222222222222222222222222222222222222222222222222222222222222222\",\"size\":0}]}";
    struct manifest m;
    uint8_t d[DIGEST_LEN];
    CHECK_INT(parse_str(body, MT_OCI_MANIFEST, &m), ==, 0);
    CHECK_INT(m.kind, ==, MANIFEST_IMAGE);
    CHECK_STR(m.media_type, MT_OCI_MANIFEST);
    CHECK_STR(m.config.media_type, C_OCI);
    CHECK_INT(m.config.size, ==, 7023);
    digest_of('c', d);
    CHECK(!memcmp(m.config.digest, d, DIGEST_LEN));
    CHECK_INT(m.nlayers, ==, 2);
    CHECK_STR(m.layers[0].media_type, L_TGZ);
    CHECK_INT(m.layers[0].size, ==, 32654);
    digest_of('1', d);
    CHECK(!memcmp(m.layers[0].digest, d, DIGEST_LEN));
    CHECK_STR(m.layers[1].media_type, L_ZST);
    CHECK_INT(m.layers[1].size, ==, 0);
    CHECK_INT(m.nentries, ==, 0);
    CHECK(m.entries == NULL);
    manifest_release(&m);
    CHECK(m.layers == NULL && m.nlayers == 0);
}

TEST(manifest_parse_docker_schema2)
{
    struct buf b = {0};
    buf_printf(&b,
               "{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"%s\",\n  \"config\": "
               "{\"mediaType\": \"%s\", \"size\": 1469, \"digest\": \"%s\"},\n  \"layers\": "
               "[{\"mediaType\": \"%s\", \"size\": 2811478, \"digest\": \"%s\"}]\n}\n",
               MT_DOCKER_MANIFEST, C_DOCKER, dg('a'), L_DGZ, dg('b'));
    struct manifest m;
    CHECK_INT(parse_str((char *)b.p, MT_DOCKER_MANIFEST, &m), ==, 0);
    CHECK_INT(m.kind, ==, MANIFEST_IMAGE);
    CHECK_STR(m.media_type, MT_DOCKER_MANIFEST);
    CHECK_STR(m.config.media_type, C_DOCKER);
    CHECK_INT(m.nlayers, ==, 1);
    CHECK_INT(m.layers[0].size, ==, 2811478);
    manifest_release(&m);
    /* the body's mediaType decides when the Content-Type is absent or generic */
    CHECK_INT(parse_str((char *)b.p, NULL, &m), ==, 0);
    CHECK_STR(m.media_type, MT_DOCKER_MANIFEST);
    manifest_release(&m);
    CHECK_INT(parse_str((char *)b.p, "application/json", &m), ==, 0);
    CHECK_STR(m.media_type, MT_DOCKER_MANIFEST);
    manifest_release(&m);
    /* Content-Type parameters and case do not matter */
    CHECK_INT(parse_str((char *)b.p,
                        " Application/VND.docker.distribution.manifest.v2+json ; "
                        "charset=utf-8",
                        &m),
              ==, 0);
    manifest_release(&m);
    buf_release(&b);
}

static const char *index_json(const char *mt)
{
    static char s[4096];
    snprintf(s, sizeof s,
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":100,"
             "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":101,"
             "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v6\"}},"
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":102,"
             "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}},"
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":103,"
             "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\","
             "\"features\":[\"sse4\"],\"os.features\":[],\"os.version\":\"x\"}},"
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":104,"
             "\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"},"
             "\"annotations\":{\"vnd.docker.reference.type\":\"attestation-manifest\"}},"
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":105,"
             "\"platform\":{\"architecture\":\"amd64\",\"os\":\"windows\","
             "\"os.version\":\"10.0.17763.5329\"}}"
             "]}",
             mt, MT_OCI_MANIFEST, dg('1'), MT_OCI_MANIFEST, dg('2'), MT_OCI_MANIFEST, dg('3'),
             MT_OCI_MANIFEST, dg('4'), MT_OCI_MANIFEST, dg('5'), MT_OCI_MANIFEST, dg('6'));
    return s;
}

TEST(manifest_parse_index_and_list)
{
    static const char *const types[] = {MT_OCI_INDEX, MT_DOCKER_LIST};
    for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
        struct manifest m;
        uint8_t d[DIGEST_LEN];
        CHECK_INT(parse_str(index_json(types[t]), types[t], &m), ==, 0);
        CHECK_INT(m.kind, ==, MANIFEST_INDEX);
        CHECK_STR(m.media_type, types[t]);
        CHECK_INT(m.nentries, ==, 6);
        CHECK_STR(m.entries[0].platform.os, "linux");
        CHECK_STR(m.entries[0].platform.arch, "amd64");
        CHECK_STR(m.entries[0].platform.variant, "");
        CHECK_STR(m.entries[2].platform.variant, "v7");
        CHECK_INT(m.entries[3].size, ==, 103);
        digest_of('4', d);
        CHECK(!memcmp(m.entries[3].digest, d, DIGEST_LEN));
        CHECK_STR(m.entries[5].platform.os, "windows");
        CHECK(m.layers == NULL && m.nlayers == 0);
        manifest_release(&m);
    }
}

TEST(manifest_parse_without_media_type)
{
    struct manifest m;
    char *img = image_json(NULL, L_TGZ, 3);
    CHECK_INT(parse_str(img, NULL, &m), ==, 0);
    CHECK_INT(m.kind, ==, MANIFEST_IMAGE);
    CHECK_STR(m.media_type, MT_OCI_MANIFEST);
    CHECK_INT(m.nlayers, ==, 3);
    manifest_release(&m);
    CHECK_INT(parse_str(img, MT_DOCKER_MANIFEST, &m), ==, 0);
    CHECK_STR(m.media_type, MT_DOCKER_MANIFEST);
    manifest_release(&m);
    free(img);

    char idx[512];
    snprintf(idx, sizeof idx,
             "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
             "\"size\":3}]}",
             MT_OCI_MANIFEST, dg('9'));
    CHECK_INT(parse_str(idx, "text/plain", &m), ==, 0);
    CHECK_INT(m.kind, ==, MANIFEST_INDEX);
    CHECK_STR(m.media_type, MT_OCI_INDEX);
    CHECK_INT(m.nentries, ==, 1);
    CHECK_STR(m.entries[0].platform.os, "");
    manifest_release(&m);

    /* an empty index and an image without layers are valid */
    CHECK_INT(parse_str("{\"schemaVersion\":2,\"manifests\":[]}", MT_OCI_INDEX, &m), ==, 0);
    CHECK_INT(m.nentries, ==, 0);
    manifest_release(&m);
    img = image_json(MT_OCI_MANIFEST, L_TGZ, 0);
    CHECK_INT(parse_str(img, NULL, &m), ==, 0);
    CHECK_INT(m.nlayers, ==, 0);
    manifest_release(&m);
    free(img);
}

TEST(manifest_schema1_refused)
{
    static const char s1[] =
        "{\"schemaVersion\":1,\"name\":\"library/x\",\"tag\":\"latest\",\"architecture\":"
        "\"amd64\",\"fsLayers\":[{\"blobSum\":\"sha256:"
        "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46f4\"}],"
        "\"history\":[{\"v1Compatibility\":\"{}\"}],\"signatures\":[]}";
    struct manifest m;
    /* by Content-Type, before looking at the body */
    CHECK_INT(parse_str(s1, MT_DOCKER_SCHEMA1, &m), ==, AFSP_E_UNSUPPORTED);
    CHECK(strstr(err_msg(AFSP_E_UNSUPPORTED), "schema1") != NULL);
    CHECK_INT(parse_str("garbage", MT_DOCKER_SCHEMA1_SIGNED, &m), ==, AFSP_E_UNSUPPORTED);
    CHECK(strstr(err_msg(AFSP_E_UNSUPPORTED), "schema1") != NULL);
    /* by schemaVersion, whatever the Content-Type claims */
    CHECK_INT(parse_str(s1, NULL, &m), ==, AFSP_E_UNSUPPORTED);
    CHECK(strstr(err_msg(AFSP_E_UNSUPPORTED), "schema1") != NULL);
    CHECK_INT(parse_str(s1, "application/json", &m), ==, AFSP_E_UNSUPPORTED);
    CHECK_INT(parse_str(s1, MT_DOCKER_MANIFEST, &m), ==, AFSP_E_UNSUPPORTED);
    /* by the body's mediaType */
    char b[256];
    snprintf(b, sizeof b, "{\"schemaVersion\":2,\"mediaType\":\"%s\"}", MT_DOCKER_SCHEMA1);
    CHECK_INT(parse_str(b, NULL, &m), ==, AFSP_E_UNSUPPORTED);
    CHECK(strstr(err_msg(AFSP_E_UNSUPPORTED), "schema1") != NULL);
}

TEST(manifest_bounds)
{
    struct manifest m;
    char *img = image_json(MT_OCI_MANIFEST, L_TGZ, MANIFEST_MAX_LAYERS);
    CHECK_INT(parse_str(img, MT_OCI_MANIFEST, &m), ==, 0);
    CHECK_INT(m.nlayers, ==, MANIFEST_MAX_LAYERS);
    manifest_release(&m);
    free(img);
    img = image_json(MT_OCI_MANIFEST, L_TGZ, MANIFEST_MAX_LAYERS + 1);
    CHECK_INT(parse_str(img, MT_OCI_MANIFEST, &m), ==, AFSP_E_FORMAT);
    CHECK(strstr(err_msg(AFSP_E_FORMAT), "layers") != NULL);
    free(img);

    struct buf b = {0};
    buf_printf(&b, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[", MT_OCI_INDEX);
    for (int i = 0; i <= MANIFEST_MAX_LAYERS; i++)
        buf_printf(&b, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1}", i ? "," : "",
                   MT_OCI_MANIFEST, dg('e'));
    buf_printf(&b, "]}");
    CHECK_INT(parse_str((char *)b.p, NULL, &m), ==, AFSP_E_FORMAT);
    buf_release(&b);

    /* over MANIFEST_MAX_BYTES, even though it is valid JSON */
    size_t big = MANIFEST_MAX_BYTES + 1;
    char *p = malloc(big);
    CHECK(p != NULL);
    memset(p, ' ', big);
    const char *core = "{\"schemaVersion\":2,\"manifests\":[]}";
    memcpy(p, core, strlen(core));
    CHECK_INT(manifest_parse((uint8_t *)p, big, MT_OCI_INDEX, &m), ==, AFSP_E_FORMAT);
    CHECK(strstr(err_msg(AFSP_E_FORMAT), "bytes") != NULL);
    CHECK_INT(manifest_parse((uint8_t *)p, big - 1, MT_OCI_INDEX, &m), ==, 0);
    manifest_release(&m);
    free(p);
}

TEST(manifest_malformed)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "null",
        "{\"schemaVersion\":2,\"manifests\":[]",
        "{}",
        "{\"schemaVersion\":\"2\",\"manifests\":[]}",
        "{\"schemaVersion\":2.0,\"manifests\":[]}",
        "{\"schemaVersion\":2}",
        "{\"schemaVersion\":2,\"manifests\":{}}",
        "{\"schemaVersion\":2,\"manifests\":[1]}",
        "{\"schemaVersion\":2,\"manifests\":[],\"manifests\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":7,\"manifests\":[]}",
        "{\"schemaVersion\":2,\"manifests\":[],\"annotations\":[]}",
        "{\"schemaVersion\":2,\"manifests\":[],\"annotations\":{\"a\":1}}",
        "{\"schemaVersion\":2,\"manifests\":[],\"layers\":[]}",
        "{\"schemaVersion\":2,\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":1,\"layers\":[]}",
    };
    struct manifest m;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        int rc = parse_str(bad[i], NULL, &m);
        if (rc != AFSP_E_FORMAT)
            test_fail(__FILE__, __LINE__, "manifest_parse(%s) = %d (%s), want AFSP_E_FORMAT",
                      bad[i], rc, err_msg(rc));
        CHECK(strlen(err_msg(rc)) > strlen(err_str(rc)));
        CHECK(m.layers == NULL && m.entries == NULL);
    }
}

/* A descriptor field replaced by a bad value: each must be AFSP_E_FORMAT. */
TEST(manifest_descriptor_fields)
{
    char long_mt[200];
    memset(long_mt, 'a', 128); /* 128 characters do not fit media_type[128] */
    long_mt[128] = 0;
    const char *fields[][2] = {
        {"\"mediaType\":1", "mediaType"},
        {"\"mediaType\":null", "mediaType"},
        {"\"digest\":\"sha256:abc\"", "digest"},
        {"\"digest\":\"sha256:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC\"",
         "digest"},
        {"\"digest\":\"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\"",
         "digest"},
        {"\"digest\":5", "digest"},
        {"\"size\":\"12\"", "size"},
        {"\"size\":-1", "size"},
        {"\"size\":1.5", "size"},
        {"\"size\":true", "size"},
        {"\"urls\":\"http://x\"", "urls"},
        {"\"urls\":[1]", "urls"},
        {"\"annotations\":[]", "annotations"},
    };
    struct manifest m;
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        char body[1024];
        /* the field comes last, replacing a good one where the key is the same */
        snprintf(body, sizeof body,
                 "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\","
                 "\"size\":1},\"layers\":[{%s%s%s%s%s}]}",
                 C_OCI, dg('c'),
                 strncmp(fields[i][0], "\"mediaType\"", 11) ? "\"mediaType\":\"" L_TGZ "\"," : "",
                 strncmp(fields[i][0], "\"digest\"", 8) ? "\"digest\":\"sha256:"
                                                          "cccccccccccccccccccccccccccccccc"
                                                          "cccccccccccccccccccccccccccccccc\","
                                                        : "",
                 strncmp(fields[i][0], "\"size\"", 6) ? "\"size\":1" : "",
                 strncmp(fields[i][0], "\"size\"", 6) ? "," : "", fields[i][0]);
        int rc = parse_str(body, MT_OCI_MANIFEST, &m);
        if (rc != AFSP_E_FORMAT)
            test_fail(__FILE__, __LINE__, "%s: rc %d (%s), want AFSP_E_FORMAT", body, rc,
                      err_msg(rc));
        if (!strstr(err_msg(rc), fields[i][1]))
            test_fail(__FILE__, __LINE__, "%s: message \"%s\" does not name %s", body, err_msg(rc),
                      fields[i][1]);
        CHECK(strstr(err_msg(rc), "layer 0") != NULL);
    }
    /* missing fields */
    char body[1024];
    snprintf(body, sizeof body,
             "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"size\":1},\"layers\":[]}",
             C_OCI);
    CHECK_INT(parse_str(body, NULL, &m), ==, AFSP_E_FORMAT);
    CHECK(strstr(err_msg(AFSP_E_FORMAT), "missing \"digest\"") != NULL);
    snprintf(body, sizeof body,
             "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\"},"
             "\"layers\":[]}",
             C_OCI, dg('c'));
    CHECK_INT(parse_str(body, NULL, &m), ==, AFSP_E_FORMAT);
    CHECK(strstr(err_msg(AFSP_E_FORMAT), "size") != NULL);
    snprintf(body, sizeof body,
             "{\"schemaVersion\":2,\"config\":{\"digest\":\"%s\",\"size\":1},\"layers\":[]}",
             dg('c'));
    CHECK_INT(parse_str(body, NULL, &m), ==, AFSP_E_FORMAT);
    CHECK(strstr(err_msg(AFSP_E_FORMAT), "mediaType") != NULL);
    /* media types are bounded by the struct's field */
    snprintf(body, sizeof body,
             "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\","
             "\"size\":1},\"layers\":[]}",
             long_mt, dg('c'));
    CHECK_INT(parse_str(body, NULL, &m), ==, AFSP_E_FORMAT);
    CHECK(strstr(err_msg(AFSP_E_FORMAT), "longer") != NULL);
    long_mt[127] = 0;
    snprintf(body, sizeof body,
             "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\","
             "\"size\":1},\"layers\":[]}",
             long_mt, dg('c'));
    CHECK_INT(parse_str(body, NULL, &m), ==, 0);
    CHECK_INT(strlen(m.config.media_type), ==, 127);
    manifest_release(&m);
    /* the largest size JSON can carry as an integer is fine */
    snprintf(body, sizeof body,
             "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\","
             "\"size\":9223372036854775807},\"layers\":[]}",
             C_OCI, dg('c'));
    CHECK_INT(parse_str(body, NULL, &m), ==, 0);
    CHECK(m.config.size == 9223372036854775807ull);
    manifest_release(&m);
    snprintf(body, sizeof body,
             "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\","
             "\"size\":9223372036854775808},\"layers\":[]}",
             C_OCI, dg('c'));
    CHECK_INT(parse_str(body, NULL, &m), ==, AFSP_E_FORMAT);
}

TEST(manifest_platform_fields)
{
    static const char *const bad[] = {
        "\"platform\":[]",
        "\"platform\":{\"os\":\"linux\"}",
        "\"platform\":{\"architecture\":\"amd64\"}",
        "\"platform\":{\"os\":1,\"architecture\":\"amd64\"}",
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\",\"variant\":2}",
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"an-architecture-name-of-32-chars\"}",
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\",\"os.version\":1}",
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\",\"features\":\"x\"}",
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\",\"os.features\":[{}]}",
    };
    struct manifest m;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
                 "\"size\":1,%s}]}",
                 MT_OCI_MANIFEST, dg('1'), bad[i]);
        int rc = parse_str(body, MT_OCI_INDEX, &m);
        if (rc != AFSP_E_FORMAT)
            test_fail(__FILE__, __LINE__, "%s: rc %d, want AFSP_E_FORMAT", body, rc);
        CHECK(strstr(err_msg(rc), "index entry 0") != NULL);
    }
}

TEST(manifest_unsupported)
{
    struct manifest m;
    char *img = image_json(MT_OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+bzip2", 2);
    CHECK_INT(parse_str(img, NULL, &m), ==, AFSP_E_UNSUPPORTED);
    CHECK(strstr(err_msg(AFSP_E_UNSUPPORTED), "application/vnd.oci.image.layer.v1.tar+bzip2"));
    free(img);
    img = image_json(MT_DOCKER_MANIFEST, "application/vnd.docker.image.rootfs.diff.tar", 1);
    CHECK_INT(parse_str(img, NULL, &m), ==, AFSP_E_UNSUPPORTED);
    free(img);
    img = image_json("application/vnd.oci.artifact.manifest.v1+json", L_TGZ, 1);
    CHECK_INT(parse_str(img, NULL, &m), ==, AFSP_E_UNSUPPORTED);
    CHECK(strstr(err_msg(AFSP_E_UNSUPPORTED), "artifact"));
    free(img);
    CHECK_INT(parse_str("{\"schemaVersion\":3,\"manifests\":[]}", NULL, &m), ==,
              AFSP_E_UNSUPPORTED);
    char body[512];
    snprintf(body, sizeof body,
             "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"sha512:"
             "%s%s\",\"size\":1}]}",
             MT_OCI_MANIFEST, dg('1') + 7, dg('1') + 7);
    CHECK_INT(parse_str(body, NULL, &m), ==, AFSP_E_UNSUPPORTED);
    /* a body that says it is an index, served as a manifest */
    CHECK_INT(parse_str(index_json(MT_OCI_INDEX), MT_OCI_MANIFEST, &m), ==, AFSP_E_FORMAT);
    CHECK(strstr(err_msg(AFSP_E_FORMAT), MT_OCI_INDEX));
}

TEST(manifest_layer_types)
{
    static const char *const ok[] = {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    };
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        struct manifest m;
        char *img = image_json(NULL, ok[i], 2);
        CHECK_INT(parse_str(img, NULL, &m), ==, 0);
        CHECK_STR(m.layers[1].media_type, ok[i]);
        manifest_release(&m);
        free(img);
    }
}

TEST(manifest_platform_parse)
{
    struct platform p;
    char s[100];
    CHECK_INT(platform_parse("linux/amd64", &p), ==, 0);
    CHECK_STR(p.os, "linux");
    CHECK_STR(p.arch, "amd64");
    CHECK_STR(p.variant, "");
    CHECK_STR(platform_fmt(&p, s), "linux/amd64");
    CHECK_INT(platform_parse("linux/arm64/v8", &p), ==, 0);
    CHECK_STR(platform_fmt(&p, s), "linux/arm64/v8");
    CHECK_INT(platform_parse("Linux/ARM/v6", &p), ==, 0);
    CHECK_STR(platform_fmt(&p, s), "linux/arm/v6");
    /* other tools' names for the same thing */
    CHECK_INT(platform_parse("linux/x86_64", &p), ==, 0);
    CHECK_STR(platform_fmt(&p, s), "linux/amd64");
    CHECK_INT(platform_parse("linux/aarch64", &p), ==, 0);
    CHECK_STR(platform_fmt(&p, s), "linux/arm64");
    CHECK_INT(platform_parse("linux/arm", &p), ==, 0);
    CHECK_STR(platform_fmt(&p, s), "linux/arm/v7");
    CHECK_INT(platform_parse("linux/armhf", &p), ==, 0);
    CHECK_STR(platform_fmt(&p, s), "linux/arm/v7");
    CHECK_INT(platform_parse("windows/amd64", &p), ==, 0);
    CHECK_STR(platform_fmt(&p, s), "windows/amd64");

    static const char *const bad[] = {
        "",
        "linux",
        "linux/",
        "/amd64",
        "linux/amd64/",
        "linux/amd64/v8/x",
        "linux//v8",
        "linux/am d64",
        "linux/amd64;rm",
        "a-name-that-is-way-too-long-for-os/amd64",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (platform_parse(bad[i], &p) != AFSP_E_USAGE)
            test_fail(__FILE__, __LINE__, "platform_parse(\"%s\") accepted", bad[i]);
        CHECK(strstr(err_msg(AFSP_E_USAGE), "platform") != NULL);
    }
    CHECK_INT(platform_parse(NULL, &p), ==, AFSP_E_USAGE);
}

TEST(manifest_platform_host)
{
    struct platform p;
    char s[100];
    platform_host(&p);
    CHECK_STR(p.os, "linux");
    CHECK(p.arch[0] != 0);
#if defined(__x86_64__)
    CHECK_STR(platform_fmt(&p, s), "linux/amd64");
#elif defined(__aarch64__)
    CHECK_STR(platform_fmt(&p, s), "linux/arm64/v8");
#else
    (void)s;
#endif
    /* what we run on parses back to itself */
    struct platform q;
    CHECK_INT(platform_parse(platform_fmt(&p, s), &q), ==, 0);
    CHECK_STR(q.arch, p.arch);
}

TEST(manifest_choose_platform)
{
    struct manifest m;
    struct platform p;
    CHECK_INT(parse_str(index_json(MT_DOCKER_LIST), NULL, &m), ==, 0);

    CHECK_INT(platform_parse("linux/amd64", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, 0);
    /* a wanted variant the entry does not name still matches */
    CHECK_INT(platform_parse("linux/amd64/v3", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, 0);
    /* the exact variant wins over an earlier entry */
    CHECK_INT(platform_parse("linux/arm/v7", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, 2);
    CHECK_INT(platform_parse("linux/arm/v6", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, 1);
    CHECK_INT(platform_parse("linux/arm", &p), ==, 0); /* means v7 */
    CHECK_INT(manifest_choose(&m, &p), ==, 2);
    CHECK_INT(platform_parse("linux/arm/v5", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, AFSP_E_PLATFORM);
    CHECK(strstr(err_msg(AFSP_E_PLATFORM), "linux/arm/v5") != NULL);
    CHECK_INT(platform_parse("linux/arm64", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, 3);
    CHECK_INT(platform_parse("linux/arm64/v8", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, 3);
    CHECK_INT(platform_parse("windows/amd64", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, 5);
    CHECK_INT(platform_parse("linux/s390x", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, AFSP_E_PLATFORM);
    /* attestations are never chosen, even when asked for */
    CHECK_INT(platform_parse("unknown/unknown", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, AFSP_E_PLATFORM);
    manifest_release(&m);

    /* an entry without variant matches a wanted variant, but an exact one is preferred */
    char body[1024];
    snprintf(body, sizeof body,
             "{\"schemaVersion\":2,\"manifests\":["
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1,"
             "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}},"
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1,"
             "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1,"
             "\"platform\":{\"architecture\":\"riscv64\",\"os\":\"linux\"}}]}",
             MT_OCI_MANIFEST, dg('1'), MT_OCI_MANIFEST, dg('2'), MT_OCI_INDEX, dg('3'));
    CHECK_INT(parse_str(body, MT_OCI_INDEX, &m), ==, 0);
    CHECK_INT(platform_parse("linux/arm64/v8", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, 1);
    CHECK_INT(platform_parse("linux/arm64/v9", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, 0);
    CHECK_INT(platform_parse("linux/arm64", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, 0);
    /* a nested index is not an image */
    CHECK_INT(platform_parse("linux/riscv64", &p), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, AFSP_E_PLATFORM);
    manifest_release(&m);

    /* an image manifest is not an index */
    char *img = image_json(NULL, L_TGZ, 1);
    CHECK_INT(parse_str(img, NULL, &m), ==, 0);
    CHECK_INT(manifest_choose(&m, &p), ==, AFSP_E_PLATFORM);
    manifest_release(&m);
    free(img);
}
