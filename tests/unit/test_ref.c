/*
 * test_ref.c - image references: Docker's normalisation, the canonical text, rejection of
 * malformed references with AFSP_E_REF, and loopback detection.
 */
#include "test.h"

#include "../../store/oci/oci.h"

static const char D64[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct ref_case {
    const char *in, *host, *repo, *tag, *digest, *canon;
};

TEST(ref_parse_valid)
{
    static const char dig[] =
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    static const struct ref_case cases[] = {
        {"debian", "docker.io", "library/debian", "latest", NULL,
         "docker.io/library/debian:latest"},
        {"debian:12", "docker.io", "library/debian", "12", NULL, "docker.io/library/debian:12"},
        {"library/debian", "docker.io", "library/debian", "latest", NULL, NULL},
        {"docker.io/debian", "docker.io", "library/debian", "latest", NULL, NULL},
        {"index.docker.io/debian:bookworm", "docker.io", "library/debian", "bookworm", NULL,
         "docker.io/library/debian:bookworm"},
        {"user/app:v1.2-rc_3", "docker.io", "user/app", "v1.2-rc_3", NULL, NULL},
        {"localhost/app", "localhost", "app", "latest", NULL, "localhost/app:latest"},
        {"localhost:5000/a/b/c:x", "localhost:5000", "a/b/c", "x", NULL, NULL},
        {"127.0.0.1:5000/img:tag", "127.0.0.1:5000", "img", "tag", NULL, NULL},
        {"[::1]:5000/img", "[::1]:5000", "img", "latest", NULL, "[::1]:5000/img:latest"},
        {"[fe80::1]/img", "[fe80::1]", "img", "latest", NULL, NULL},
        {"ghcr.io/org/repo", "ghcr.io", "org/repo", "latest", NULL, NULL},
        {"Registry.Example.COM/x", "Registry.Example.COM", "x", "latest", NULL, NULL},
        {"quay.io/a.b/c_d/e__f/g-h/i---j:T", "quay.io", "a.b/c_d/e__f/g-h/i---j", "T", NULL, NULL},
        {"debian@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "docker.io", "library/debian", NULL, dig,
         "docker.io/library/debian@sha256:"
         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
        {"h.io/x:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "h.io",
         "x", "1", dig,
         "h.io/x:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
        {"a", "docker.io", "library/a", "latest", NULL, NULL},
        {"0", "docker.io", "library/0", "latest", NULL, NULL},
        {"x:_", "docker.io", "library/x", "_", NULL, NULL},
        {"foo_bar:latest", "docker.io", "library/foo_bar", "latest", NULL, NULL},
        /* Docker's reading: without a slash, "localhost" is a name and "5000" a tag */
        {"localhost:5000", "docker.io", "library/localhost", "5000", NULL, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const struct ref_case *c = &cases[i];
        struct image_ref r;
        int rc = ref_parse(c->in, &r);
        if (rc)
            test_fail(__FILE__, __LINE__, "ref_parse(\"%s\") = %d: %s", c->in, rc, err_msg(rc));
        CHECK_STR(r.host, c->host);
        CHECK_STR(r.repo, c->repo);
        if (c->tag)
            CHECK_STR(r.tag, c->tag);
        else
            CHECK(r.tag == NULL);
        if (c->digest)
            CHECK_STR(r.digest, c->digest);
        else
            CHECK(r.digest == NULL);
        char *s = ref_str(&r);
        CHECK(s != NULL);
        if (c->canon)
            CHECK_STR(s, c->canon);
        /* the canonical text parses to the same reference */
        struct image_ref r2;
        CHECK_INT(ref_parse(s, &r2), ==, 0);
        char *s2 = ref_str(&r2);
        CHECK_STR(s2, s);
        free(s2);
        free(s);
        ref_release(&r2);
        ref_release(&r);
        CHECK(r.host == NULL && r.repo == NULL);
    }
}

TEST(ref_parse_invalid)
{
    char long_tag[200], long_name[300], hexname[80];
    memset(long_tag, 0, sizeof long_tag);
    memcpy(long_tag, "x:", 2);
    memset(long_tag + 2, 'a', 129); /* 129 > 128 */
    memset(long_name, 0, sizeof long_name);
    memcpy(long_name, "h.io/", 5);
    memset(long_name + 5, 'a', 251); /* "h.io/" + 251 = 256 > 255 */
    snprintf(hexname, sizeof hexname, "%s", D64);

    static const char *const bad[] = {
        "",
        "Debian",            /* uppercase repository */
        "user/Repo",         /* uppercase repository */
        "debian:",           /* empty tag */
        "debian:-x",         /* tag must start with a word character */
        "debian:a+b",        /* bad tag character */
        ":tag",              /* no name */
        "/debian",           /* empty component */
        "debian/",           /* empty component */
        "a//b",              /* empty component */
        "-a",                /* component starts with a separator */
        "a-",                /* ends with a separator */
        "a..b",              /* double dot */
        "a___b",             /* triple underscore */
        "a._b",              /* mixed separator */
        "debian@sha256:abc", /* short digest */
        "debian@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "debian@md5:0123456789abcdef0123456789abcdef",
        "debian@",                  /* empty digest */
        "debian@@sha256:x",         /* two @ */
        "https://docker.io/debian", /* a URL */
        "host:port/x",              /* non-numeric port */
        "host:0/x",                 /* port 0 */
        "host:65536/x",             /* port out of range */
        "-bad.host/x",              /* label starts with a dash */
        "bad-.host/x",              /* label ends with a dash */
        "bad..host/x",              /* empty label */
        "bad.host./x",              /* trailing dot */
        "[::1/x",                   /* unclosed bracket */
        "[zz::1]:5000/x",           /* not IPv6 */
        "[::1]x/x",                 /* junk after bracket */
        "a b",                      /* space */
        "deb ian:latest",
        "debian:lat est",
        "debian\t",
        "ümlaut",
        "a:b:c",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct image_ref r;
        int rc = ref_parse(bad[i], &r);
        if (rc != AFSP_E_REF)
            test_fail(__FILE__, __LINE__, "ref_parse(\"%s\") = %d, want AFSP_E_REF", bad[i], rc);
        CHECK(r.host == NULL && r.repo == NULL && r.tag == NULL && r.digest == NULL);
        /* the message says what is wrong, not just "invalid image reference" */
        CHECK(strlen(err_msg(rc)) > strlen(err_str(rc)));
    }
    struct image_ref r;
    CHECK_INT(ref_parse(long_tag, &r), ==, AFSP_E_REF);
    CHECK(strstr(err_msg(AFSP_E_REF), "tag") != NULL);
    long_tag[strlen(long_tag) - 1] = 0; /* 128 characters: the maximum */
    CHECK_INT(ref_parse(long_tag, &r), ==, 0);
    ref_release(&r);
    CHECK_INT(ref_parse(long_name, &r), ==, AFSP_E_REF);
    long_name[strlen(long_name) - 1] = 0;
    CHECK_INT(ref_parse(long_name, &r), ==, 0);
    ref_release(&r);
    CHECK_INT(ref_parse(hexname, &r), ==, AFSP_E_REF);
    CHECK(strstr(err_msg(AFSP_E_REF), "hexadecimal") != NULL);
    CHECK_INT(ref_parse(NULL, &r), ==, AFSP_E_REF);
}

TEST(ref_parse_messages)
{
    struct image_ref r;
    CHECK_INT(ref_parse("Debian", &r), ==, AFSP_E_REF);
    CHECK(strstr(err_msg(AFSP_E_REF), "lowercase") != NULL);
    /* the caller names the reference ("cannot pull Debian: ..."); the message does not repeat it */
    CHECK(strstr(err_msg(AFSP_E_REF), "Debian") == NULL);
    CHECK_INT(ref_parse("x@sha512:abcd", &r), ==, AFSP_E_REF);
    CHECK(strstr(err_msg(AFSP_E_REF), "digest") != NULL);
    CHECK_INT(ref_parse("x:y!", &r), ==, AFSP_E_REF);
    CHECK(strstr(err_msg(AFSP_E_REF), "tag") != NULL);
    CHECK_INT(ref_parse("ho_st:5000/x", &r), ==, AFSP_E_REF);
    CHECK(strstr(err_msg(AFSP_E_REF), "host") != NULL);
}

TEST(ref_api_host_docker_io)
{
    struct image_ref r;
    CHECK_INT(ref_parse("busybox", &r), ==, 0);
    CHECK_STR(ref_api_host(&r), "registry-1.docker.io");
    ref_release(&r);
    CHECK_INT(ref_parse("127.0.0.1:5000/busybox", &r), ==, 0);
    CHECK_STR(ref_api_host(&r), "127.0.0.1:5000");
    ref_release(&r);
    CHECK_INT(ref_parse("ghcr.io/a/b", &r), ==, 0);
    CHECK_STR(ref_api_host(&r), "ghcr.io");
    ref_release(&r);
}

TEST(ref_host_is_loopback)
{
    static const char *const yes[] = {
        "localhost",
        "localhost:5000",
        "LocalHost:1",
        "127.0.0.1",
        "127.0.0.1:5000",
        "127.1.2.3:443",
        "127.255.255.255",
        "[::1]",
        "[::1]:5000",
        "::1",
        "[0:0:0:0:0:0:0:1]:80",
        "[::ffff:127.0.0.1]:5000",
    };
    static const char *const no[] = {
        "",
        "docker.io",
        "registry-1.docker.io",
        "128.0.0.1",
        "10.0.0.1:5000",
        "126.255.255.255",
        "127.0.0.1.nip.io",
        "localhost.example.com",
        "mylocalhost",
        "[::2]:5000",
        "[::1]:x",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "localhost:abc",
        "[::1",
        "1.2.3.4",
        "0.0.0.0",
        "[::]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
        if (!host_is_loopback(yes[i]))
            test_fail(__FILE__, __LINE__, "host_is_loopback(\"%s\") is false", yes[i]);
    for (size_t i = 0; i < ARRAY_SIZE(no); i++)
        if (host_is_loopback(no[i]))
            test_fail(__FILE__, __LINE__, "host_is_loopback(\"%s\") is true", no[i]);
    CHECK(!host_is_loopback(NULL));
}
