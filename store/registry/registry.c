/*
 * registry.c - the OCI distribution API client (registry.h): clients, manifests (a tag resolved
 * by HEAD, then fetched by digest and verified), blobs streamed in order and resumed from the
 * bytes delivered, ranges of blobs, small blobs fetched whole and verified.
 *
 * Owns one CURL easy handle per struct registry (so connections are reused), with the
 * credentials and token auth.c keeps in it. A struct registry is used by one thread at a time.
 * Must not decide policy (which registry, when to fall back: store/pull/) nor trust a byte a
 * registry sends: manifests and small blobs are checked against their digest here, layer bytes
 * by the caller, and every length against what the caller said it is.
 */
#include "registry_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* "blob sha256:0123456789ab…" */
static void digest_what(char *out, size_t n, const char *kind, const uint8_t d[DIGEST_LEN])
{
    char hex[2 * DIGEST_LEN + 1];
    hex_fmt(d, DIGEST_LEN, hex);
    snprintf(out, n, "%s sha256:%.12s…", kind, hex);
}

/* ---- the API -------------------------------------------------------------------------------- */

int registry_new(struct registry **out, const struct image_ref *ref,
                 const struct registry_opts *opts)
{
    static const struct registry_opts defaults;
    struct registry *r;
    size_t n = 0;

    *out = NULL;
    if (!opts)
        opts = &defaults;
    int rc = curl_load();
    if (rc < 0)
        return rc;
    if (!(r = calloc(1, sizeof *r)))
        return -ENOMEM;
    for (const char *const *h = opts->insecure_hosts; h && *h; h++)
        n++;
    r->insecure = calloc(n + 1, sizeof *r->insecure);
    r->host = strdup(ref->host);
    r->api_host = strdup(ref_api_host(ref));
    r->repo = strdup(ref->repo);
    r->curl = curl_easy_init();
    if (!r->insecure || !r->host || !r->api_host || !r->repo || !r->curl)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        const char *h = opts->insecure_hosts[i];
        if (!strncasecmp(h, "http://", 7))
            h += 7;
        else if (!strncasecmp(h, "https://", 8))
            h += 8;
        if (!(r->insecure[i] = strndup(h, strcspn(h, "/"))))
            goto nomem;
    }
    bool plain =
        host_is_loopback(r->api_host) || host_insecure(r, r->host) || host_insecure(r, r->api_host);
    if (asprintf(&r->base, "%s://%s", plain ? "http" : "https", r->api_host) < 0) {
        r->base = NULL;
        goto nomem;
    }
    r->max_attempts = opts->max_attempts > 0 ? opts->max_attempts : REG_DEFAULT_ATTEMPTS;
    r->backoff_ms = opts->backoff_ms ? opts->backoff_ms : REG_DEFAULT_BACKOFF_MS;
    r->timeout_s = opts->timeout_s ? opts->timeout_s : REG_DEFAULT_TIMEOUT_S;
    r->max_rate = opts->max_rate;
    r->rng = time_mono_ns() ^ (uint64_t)(uintptr_t)r; /* retry jitter: util's one generator */
    auth_load_credentials(r, opts->docker_config);
    *out = r;
    return 0;
nomem:
    registry_free(r);
    return -ENOMEM;
}

void registry_free(struct registry *r)
{
    if (!r)
        return;
    if (r->curl)
        curl_easy_cleanup(r->curl);
    secret_free(&r->basic);
    secret_free(&r->auth);
    for (char **h = r->insecure; h && *h; h++)
        free(*h);
    free(r->insecure);
    free(r->host);
    free(r->api_host);
    free(r->repo);
    free(r->base);
    free(r);
}

static void xfer_release(struct xfer *x)
{
    buf_release(&x->challenge);
    buf_release(&x->errbody);
}

static bool tag_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 128 || !(isalnum((unsigned char)t[0]) || t[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)t[i]) && !strchr("_.-", t[i]))
            return false;
    return true;
}

int registry_get_manifest(struct registry *r, const char *reference, struct buf *body,
                          char **content_type, uint8_t digest[static DIGEST_LEN])
{
    uint8_t want[DIGEST_LEN], got[DIGEST_LEN];
    bool have_want = false;
    char what[400], *url = NULL;
    struct body_sink sink = {body, MANIFEST_MAX_BYTES, AFSP_E_FORMAT};
    struct xfer g = {0};
    int rc;

    *content_type = NULL;
    if (strchr(reference, ':')) {
        if (digest_parse(reference, want) < 0)
            return err_set(AFSP_E_REF, "invalid manifest digest \"%.80s\"", reference);
        have_want = true;
        snprintf(what, sizeof what, "manifest %s@%.19s…", r->repo, reference);
    } else {
        if (!tag_ok(reference))
            return err_set(AFSP_E_REF, "invalid tag \"%.80s\"", reference);
        snprintf(what, sizeof what, "manifest %s:%s", r->repo, reference);
        if (asprintf(&url, "%s/v2/%s/manifests/%s", r->base, r->repo, reference) < 0)
            return -ENOMEM;
        /* HEAD names the digest the tag points to; the body is then fetched by digest, so that
         * what we verify is what the tag resolved to. */
        struct xfer h = {.method = "HEAD", .url = url, .accept = REG_ACCEPT, .what = what};
        rc = xfer_request(r, &h);
        if (rc == 0 && h.digest[0] && digest_parse(h.digest, want) == 0)
            have_want = true;
        xfer_release(&h);
        if (rc == AFSP_E_HTTP) { /* some registries do not answer HEAD: GET by tag */
            log_debug("HEAD %s failed (%s); fetching by tag", what, err_msg(rc));
            err_clear();
        } else if (rc) {
            free(url);
            return rc;
        }
    }
    if (have_want) {
        char d[DIGEST_STR_LEN + 1];
        free(url);
        if (asprintf(&url, "%s/v2/%s/manifests/%s", r->base, r->repo, digest_fmt(want, d)) < 0)
            return -ENOMEM;
    }
    g = (struct xfer){
        .method = "GET",
        .url = url,
        .accept = REG_ACCEPT,
        .what = what,
        .prepare = body_prepare,
        .on_headers = body_headers,
        .on_body = body_data,
        .arg = &sink,
    };
    rc = xfer_request(r, &g);
    free(url);
    if (rc)
        goto out;
    if (!have_want && g.digest[0] && digest_parse(g.digest, want) == 0)
        have_want = true;
    sha256_buf(body->p ? body->p : (const uint8_t *)"", body->len, got);
    if (have_want && memcmp(want, got, DIGEST_LEN)) {
        char a[DIGEST_STR_LEN + 1], b[DIGEST_STR_LEN + 1];
        rc = err_set(AFSP_E_DIGEST, "%s from %s hashes to %s, not %s", what, g.host,
                     digest_fmt(got, a), digest_fmt(want, b));
        goto out;
    }
    memcpy(digest, got, DIGEST_LEN);
    size_t ctl = strcspn(g.content_type, ";");
    while (ctl && g.content_type[ctl - 1] == ' ')
        ctl--;
    if (!(*content_type = strndup(g.content_type, ctl)))
        rc = -ENOMEM;
out:
    xfer_release(&g);
    if (rc)
        buf_release(body);
    return rc;
}

struct blob_sink {
    uint64_t size, delivered, skip, end; /* bytes [delivered, end) are wanted */
    registry_data_cb cb;
    void *arg;
};

static int blob_prepare(struct xfer *x)
{
    struct blob_sink *s = x->arg;
    x->range_from = s->delivered;
    x->range_end = s->end < s->size ? s->end : 0;
    s->skip = 0;
    return 0;
}

static int blob_headers(struct xfer *x)
{
    struct blob_sink *s = x->arg;
    if (x->status == 206) {
        if (!x->has_range || x->range_start != x->range_from)
            return err_set(AFSP_E_HTTP,
                           "%s from %s: asked for bytes from %" PRIu64
                           ", got a range from %" PRIu64,
                           x->what, x->host, x->range_from, x->range_start);
        if (x->range_total != UINT64_MAX && x->range_total != s->size)
            return err_set(AFSP_E_SIZE, "%s from %s has %" PRIu64 " bytes, not %" PRIu64, x->what,
                           x->host, x->range_total, s->size);
        if (x->content_length >= 0 && (uint64_t)x->content_length > s->end - s->delivered)
            return err_set(AFSP_E_SIZE,
                           "%s from %s: %" PRIu64 " bytes past offset %" PRIu64 " of %" PRIu64,
                           x->what, x->host, (uint64_t)x->content_length, s->delivered, s->size);
        return 0;
    }
    /* the whole blob (again): drop what was delivered already */
    s->skip = s->delivered;
    if (x->content_length >= 0 && (uint64_t)x->content_length != s->size)
        return err_set(AFSP_E_SIZE, "%s from %s has %" PRIu64 " bytes, not %" PRIu64, x->what,
                       x->host, (uint64_t)x->content_length, s->size);
    return 0;
}

static int blob_data(struct xfer *x, const uint8_t *p, size_t n)
{
    struct blob_sink *s = x->arg;
    if (s->skip) {
        size_t k = (size_t)MIN((uint64_t)n, s->skip);
        p += k;
        n -= k;
        s->skip -= k;
        if (!n)
            return 0;
    }
    if (n > s->end - s->delivered) {
        if (x->status != 206 && s->end < s->size)
            n = (size_t)(s->end - s->delivered); /* a whole blob where a range was asked */
        else
            return err_set(AFSP_E_SIZE, "%s from %s: more than %" PRIu64 " bytes", x->what, x->host,
                           s->size);
        if (!n)
            return 0;
    }
    int rc = s->cb(s->arg, p, n);
    if (rc)
        return rc;
    s->delivered += n;
    x->progress = true;
    return 0;
}

static int blob_check(struct xfer *x)
{
    struct blob_sink *s = x->arg;
    if (s->delivered == s->end)
        return 0;
    return err_set(AFSP_E_TRUNCATED, "%s from %s ended after %" PRIu64 " of %" PRIu64 " bytes",
                   x->what, x->host, s->delivered, s->size);
}

/* The URL of blob digest in r's repository; malloc'd, NULL on ENOMEM. */
static char *blob_url(const struct registry *r, const uint8_t digest[static DIGEST_LEN])
{
    char d[DIGEST_STR_LEN + 1], *url;
    return asprintf(&url, "%s/v2/%s/blobs/%s", r->base, r->repo, digest_fmt(digest, d)) < 0 ? NULL
                                                                                            : url;
}

int registry_get_blob(struct registry *r, const uint8_t digest[static DIGEST_LEN], uint64_t size,
                      registry_data_cb cb, void *arg)
{
    return registry_get_blob_range(r, digest, size, 0, size, cb, arg);
}

int registry_get_blob_range(struct registry *r, const uint8_t digest[static DIGEST_LEN],
                            uint64_t size, uint64_t from, uint64_t end, registry_data_cb cb,
                            void *arg)
{
    char *url = blob_url(r, digest);
    struct blob_sink sink = {.size = size, .delivered = from, .end = end, .cb = cb, .arg = arg};
    if (from > end || end > size)
        return err_set(AFSP_E_USAGE, "bad blob range");
    int rc;

    if (!url)
        return -ENOMEM;
    struct xfer x = {
        .method = "GET",
        .url = url,
        .what = "the blob", /* the caller names the layer ("layer sha256:...: ") */
        .prepare = blob_prepare,
        .on_headers = blob_headers,
        .on_body = blob_data,
        .check = blob_check,
        .arg = &sink,
    };
    rc = xfer_request(r, &x);
    xfer_release(&x);
    free(url);
    return rc;
}

int registry_get_small_blob(struct registry *r, const uint8_t digest[static DIGEST_LEN], size_t max,
                            struct buf *body)
{
    char what[64], d[DIGEST_STR_LEN + 1], *url = blob_url(r, digest);
    struct body_sink sink = {body, max, AFSP_E_TOOBIG};
    uint8_t got[DIGEST_LEN];
    int rc;

    if (!url)
        return -ENOMEM;
    digest_what(what, sizeof what, "blob", digest);
    struct xfer x = {
        .method = "GET",
        .url = url,
        .what = what,
        .prepare = body_prepare,
        .on_headers = body_headers,
        .on_body = body_data,
        .arg = &sink,
    };
    rc = xfer_request(r, &x);
    free(url);
    if (rc == 0) {
        sha256_buf(body->p ? body->p : (const uint8_t *)"", body->len, got);
        if (memcmp(got, digest, DIGEST_LEN))
            rc =
                err_set(AFSP_E_DIGEST, "%s from %s hashes to %s", what, x.host, digest_fmt(got, d));
    }
    xfer_release(&x);
    if (rc)
        buf_release(body);
    return rc;
}

void registry_headers_fuzz(const uint8_t *p, size_t n)
{
    struct xfer x = {0};
    struct challenge ch;
    xfer_headers_reset(&x);
    while (n) {
        const uint8_t *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) + 1 : n;
        char line[2048];
        /* curl hands us one header line at a time, at most CURL_MAX_HTTP_HEADER long */
        size_t k = MIN(len, sizeof line);
        memcpy(line, p, k);
        xfer_on_header(line, 1, k, &x);
        p += len;
        n -= len;
    }
    if (x.content_type[sizeof x.content_type - 1] || x.digest[sizeof x.digest - 1] ||
        x.challenge.len > REG_CHALLENGE_MAX)
        abort();
    auth_parse_challenges(x.challenge.p ? (const char *)x.challenge.p : "", &ch);
    if (strnlen(ch.realm, sizeof ch.realm) == sizeof ch.realm ||
        strnlen(ch.service, sizeof ch.service) == sizeof ch.service)
        abort();
    buf_release(&x.challenge);
}

uint64_t registry_received(const struct registry *r)
{
    return r ? r->received : 0;
}
