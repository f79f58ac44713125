/*
 * ref.c - image references: parsing with Docker's normalisation (distribution/reference),
 * the canonical text, and which host to connect to.
 *
 * Owns nothing beyond the strings of a struct image_ref. Must not do I/O or name resolution:
 * "is this host loopback" is answered from the text alone.
 */
#include "oci.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REF_NAME_MAX 255 /* distribution's NameTotalLengthMax: host "/" path */
#define REF_TAG_MAX 128
#define REF_INPUT_MAX 1024

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_word(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* [\w][\w.-]{0,127} */
static bool tag_valid(const char *t, size_t n)
{
    if (n == 0 || n > REF_TAG_MAX || !is_word(t[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_word(t[i]) && t[i] != '.' && t[i] != '-')
            return false;
    return true;
}

/* One path component: [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)* */
static bool component_valid(const char *c, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_lower_alnum(c[0]))
        return false;
    while (i < n) {
        if (is_lower_alnum(c[i])) {
            i++;
            continue;
        }
        /* a separator run, which must be followed by an alphanumeric */
        size_t j = i;
        if (c[i] == '.') {
            j = i + 1;
        } else if (c[i] == '_') {
            j = i + 1;
            if (j < n && c[j] == '_')
                j++;
        } else if (c[i] == '-') {
            while (j < n && c[j] == '-')
                j++;
        } else {
            return false;
        }
        if (j >= n || !is_lower_alnum(c[j]))
            return false;
        i = j;
    }
    return true;
}

/* A DNS label: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9] */
static bool label_valid(const char *l, size_t n)
{
    if (n == 0 || !isalnum((unsigned char)l[0]) || !isalnum((unsigned char)l[n - 1]))
        return false;
    for (size_t i = 1; i + 1 < n; i++)
        if (!isalnum((unsigned char)l[i]) && l[i] != '-')
            return false;
    return true;
}

static bool port_valid(const char *p, size_t n)
{
    unsigned long v = 0;
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return false;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

static bool ipv6_valid(const char *s, size_t n, struct in6_addr *out)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    struct in6_addr a;
    if (n == 0 || n >= sizeof tmp)
        return false;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if (inet_pton(AF_INET6, tmp, &a) != 1)
        return false;
    if (out)
        *out = a;
    return true;
}

/* host[:port] where host is a domain name, an IPv4 address or [IPv6]. */
static bool domain_valid(const char *d, size_t n)
{
    size_t hlen;
    if (n == 0)
        return false;
    if (d[0] == '[') {
        const char *close = memchr(d, ']', n);
        if (!close || !ipv6_valid(d + 1, (size_t)(close - d - 1), NULL))
            return false;
        hlen = (size_t)(close - d) + 1;
    } else {
        const char *colon = memchr(d, ':', n);
        hlen = colon ? (size_t)(colon - d) : n;
        for (size_t i = 0; i < hlen;) {
            const char *dot = memchr(d + i, '.', hlen - i);
            size_t l = dot ? (size_t)(dot - (d + i)) : hlen - i;
            if (!label_valid(d + i, l))
                return false;
            i += l + 1;
            if (dot && i == hlen) /* trailing dot */
                return false;
        }
    }
    if (hlen == n)
        return true;
    return d[hlen] == ':' && port_valid(d + hlen + 1, n - hlen - 1);
}

static bool is_hex64(const char *s, size_t n)
{
    if (n != 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    return true;
}

/* The caller names the reference it was given ("cannot pull REF: ..."), so the message
 * names only what is wrong with it. */
static int ref_fail(struct image_ref *out, const char *s, const char *what)
{
    (void)s;
    ref_release(out);
    return err_set(AFSP_E_REF, "%s", what);
}

static int ref_oom(struct image_ref *out)
{
    ref_release(out);
    return -ENOMEM;
}

int ref_parse(const char *s, struct image_ref *out)
{
    memset(out, 0, sizeof *out);
    if (!s || !*s)
        return err_set(AFSP_E_REF, "empty image reference");
    size_t len = strlen(s);
    if (len > REF_INPUT_MAX)
        return err_set(AFSP_E_REF, "image reference longer than %d bytes", REF_INPUT_MAX);
    if (strstr(s, "://"))
        return ref_fail(out, s, "an image reference has no URL scheme (drop the \"...://\")");

    /* name[:tag][@digest] */
    const char *at = strchr(s, '@');
    size_t name_tag_len = at ? (size_t)(at - s) : len;
    if (at) {
        uint8_t d[DIGEST_LEN];
        int rc = digest_parse(at + 1, d);
        if (rc == AFSP_E_UNSUPPORTED)
            return ref_fail(out, s, "unsupported digest algorithm (only sha256)");
        if (rc < 0)
            return ref_fail(out, s, "invalid digest (want sha256:<64 lowercase hex>)");
        if (!(out->digest = strdup(at + 1)))
            return -ENOMEM;
    }
    const char *slash = memrchr(s, '/', name_tag_len);
    const char *last = slash ? slash + 1 : s;
    const char *colon = memchr(last, ':', name_tag_len - (size_t)(last - s));
    size_t name_len = colon ? (size_t)(colon - s) : name_tag_len;
    if (colon) {
        size_t tlen = name_tag_len - name_len - 1;
        if (!tag_valid(colon + 1, tlen))
            return ref_fail(out, s, "invalid tag (want [A-Za-z0-9_][A-Za-z0-9_.-]{0,127})");
        if (!(out->tag = strndup(colon + 1, tlen)))
            return ref_oom(out);
    } else if (!out->digest) {
        if (!(out->tag = strdup("latest")))
            return ref_oom(out);
    }
    if (name_len == 0)
        return ref_fail(out, s, "no repository name");

    /* The first component is a host if it looks like one; otherwise the host is docker.io. */
    const char *first_slash = memchr(s, '/', name_len);
    const char *path = s;
    size_t host_len = 0;
    if (first_slash) {
        size_t l = (size_t)(first_slash - s);
        if (memchr(s, '.', l) || memchr(s, ':', l) || (l == 9 && !memcmp(s, "localhost", 9)))
            host_len = l;
    }
    if (host_len) {
        if (!domain_valid(s, host_len))
            return ref_fail(out, s, "invalid registry host");
        path = s + host_len + 1;
        if (host_len == 15 && !memcmp(s, "index.docker.io", 15))
            out->host = strdup("docker.io");
        else
            out->host = strndup(s, host_len);
    } else {
        out->host = strdup("docker.io");
    }
    if (!out->host)
        return ref_oom(out);
    size_t path_len = name_len - (size_t)(path - s);

    if (is_hex64(path, path_len))
        return ref_fail(out, s, "a repository name cannot be a 64-character hexadecimal string");
    for (size_t i = 0; i <= path_len;) {
        const char *end = memchr(path + i, '/', path_len - i);
        size_t l = end ? (size_t)(end - (path + i)) : path_len - i;
        if (!component_valid(path + i, l)) {
            for (size_t k = 0; k < l; k++)
                if (isupper((unsigned char)path[i + k]))
                    return ref_fail(out, s, "repository name must be lowercase");
            return ref_fail(out, s,
                            l ? "invalid repository name component"
                              : "empty repository name component");
        }
        i += l + 1;
    }
    bool library = !strcmp(out->host, "docker.io") && !memchr(path, '/', path_len);
    if (strlen(out->host) + 1 + (library ? 8 : 0) + path_len > REF_NAME_MAX)
        return ref_fail(out, s, "repository name longer than 255 characters");
    if (library) {
        if (asprintf(&out->repo, "library/%.*s", (int)path_len, path) < 0) {
            out->repo = NULL;
            return ref_oom(out);
        }
    } else if (!(out->repo = strndup(path, path_len))) {
        return ref_oom(out);
    }
    return 0;
}

void ref_release(struct image_ref *r)
{
    free(r->host);
    free(r->repo);
    free(r->tag);
    free(r->digest);
    memset(r, 0, sizeof *r);
}

char *ref_str(const struct image_ref *r)
{
    char *s;
    if (asprintf(&s, "%s/%s%s%s%s%s", r->host, r->repo, r->tag ? ":" : "", r->tag ? r->tag : "",
                 r->digest ? "@" : "", r->digest ? r->digest : "") < 0)
        return NULL;
    return s;
}

const char *ref_api_host(const struct image_ref *r)
{
    if (!strcmp(r->host, "docker.io"))
        return "registry-1.docker.io";
    return r->host;
}

bool host_is_loopback(const char *host)
{
    char name[256];
    size_t n;
    struct in6_addr a6;

    if (!host || !*host)
        return false;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close || !ipv6_valid(host + 1, (size_t)(close - host - 1), &a6))
            return false;
        if (close[1] && (close[1] != ':' || !port_valid(close + 2, strlen(close + 2))))
            return false;
        goto v6;
    }
    const char *colon = strchr(host, ':');
    if (colon && strchr(colon + 1, ':')) { /* bare IPv6, no port possible */
        if (!ipv6_valid(host, strlen(host), &a6))
            return false;
        goto v6;
    }
    n = colon ? (size_t)(colon - host) : strlen(host);
    if (colon && !port_valid(colon + 1, strlen(colon + 1)))
        return false;
    if (n == 0 || n >= sizeof name)
        return false;
    memcpy(name, host, n);
    name[n] = 0;
    if (!strcasecmp(name, "localhost"))
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, name, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return false;
v6:
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}
