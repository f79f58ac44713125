/*
 * http.c - one HTTP exchange over libcurl and what surrounds it: the request (headers, Range,
 * Authorization), the response headers the client uses, redirects followed by hand, retries
 * with backoff (Retry-After for 429/503), the resumption of a transfer that made progress, and
 * a stall timeout. Curl and HTTP failures become project codes here, in one place each
 * (curl_fail, http_fail).
 *
 * Owns nothing past a request but the buffers of its struct xfer (the caller releases them).
 * Must never let a secret leave the registry's origin: the Authorization header only goes to the
 * scheme://host:port it is meant for (a redirect elsewhere drops it), header lists holding it
 * are wiped, and the query of a redirect target (it may hold a signature) is never logged.
 * Must not parse tokens or credentials (auth.c) nor know what is fetched (registry.c).
 */
#include "registry_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- small helpers -------------------------------------------------------------------------- */

void secret_free(char **p)
{
    if (*p) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

bool host_eq(const char *a, const char *b)
{
    return !strcasecmp(a, b);
}

bool host_insecure(const struct registry *r, const char *host)
{
    for (char **h = r->insecure; h && *h; h++)
        if (host_eq(*h, host))
            return true;
    return false;
}

/* scheme, host (lowercase) and port of url; false if it does not parse. */
bool url_origin(const char *url, char *scheme, size_t ns, char *host, size_t nh, char *port,
                size_t np)
{
    CURLU *u = curl_url();
    char *s = NULL, *h = NULL, *p = NULL;
    bool ok = u && !curl_url_set(u, CURLUPART_URL, url, 0) &&
              !curl_url_get(u, CURLUPART_SCHEME, &s, 0) &&
              !curl_url_get(u, CURLUPART_HOST, &h, 0) &&
              !curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT);
    if (ok) {
        snprintf(scheme, ns, "%s", s);
        snprintf(host, nh, "%s", h);
        snprintf(port, np, "%s", p);
        for (char *c = host; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    }
    curl_free(s);
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return ok;
}

static bool same_origin(const char *a, const char *b)
{
    char sa[16], ha[256], pa[8], sb[16], hb[256], pb[8];
    return url_origin(a, sa, sizeof sa, ha, sizeof ha, pa, sizeof pa) &&
           url_origin(b, sb, sizeof sb, hb, sizeof hb, pb, sizeof pb) && !strcasecmp(sa, sb) &&
           !strcmp(ha, hb) && !strcmp(pa, pb);
}

/* host[:port] of url for messages; the port only when it is not the scheme's default. */
static void url_host(const char *url, char *out, size_t n)
{
    CURLU *u = curl_url();
    char *h = NULL, *p = NULL;
    out[0] = 0;
    if (u && !curl_url_set(u, CURLUPART_URL, url, 0) && !curl_url_get(u, CURLUPART_HOST, &h, 0)) {
        curl_url_get(u, CURLUPART_PORT, &p, 0);
        snprintf(out, n, "%s%s%s", h, p ? ":" : "", p ? p : "");
    }
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- one HTTP exchange ---------------------------------------------------------------------- */

void xfer_headers_reset(struct xfer *x)
{
    x->status = 0;
    x->content_type[0] = 0;
    x->digest[0] = 0;
    x->retry_after = -1;
    x->has_range = false;
    x->range_start = 0;
    x->range_total = UINT64_MAX;
    x->content_length = -1;
    x->challenge.len = 0;
}

static bool parse_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return true;
}

/* "bytes START-END/TOTAL" */
static void parse_content_range(struct xfer *x, const char *v, size_t n)
{
    if (n < 6 || strncasecmp(v, "bytes ", 6))
        return;
    const char *p = v + 6, *end = v + n;
    const char *dash = memchr(p, '-', (size_t)(end - p));
    const char *slash = dash ? memchr(dash, '/', (size_t)(end - dash)) : NULL;
    uint64_t start, last, total = UINT64_MAX;
    if (!slash || !parse_u64(p, (size_t)(dash - p), &start) ||
        !parse_u64(dash + 1, (size_t)(slash - dash - 1), &last) || last < start)
        return;
    if (!(end - slash == 2 && slash[1] == '*') &&
        !parse_u64(slash + 1, (size_t)(end - slash - 1), &total))
        return;
    x->has_range = true;
    x->range_start = start;
    x->range_total = total;
}

size_t xfer_on_header(char *p, size_t size, size_t nitems, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nitems, len = n;

    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (len >= 5 && !strncasecmp(p, "HTTP/", 5)) { /* a new response (1xx, then the final) */
        xfer_headers_reset(x);
        const char *sp = memchr(p, ' ', len);
        long st = 0;
        for (const char *c = sp ? sp + 1 : p + len; c < p + len && isdigit((unsigned char)*c); c++)
            st = st * 10 + (*c - '0');
        x->status = st;
        return n;
    }
    if (len == 0) {
        if (x->status >= 200 && x->status < 300 && x->on_headers) {
            int rc = x->on_headers(x);
            if (rc) {
                x->abort_rc = rc;
                return 0;
            }
        }
        return n;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon)
        return n;
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
#define IS(name) (nlen == sizeof(name) - 1 && !strncasecmp(p, name, nlen))
    if (IS("Content-Type")) {
        if (vlen < sizeof x->content_type) {
            memcpy(x->content_type, v, vlen);
            x->content_type[vlen] = 0;
        }
    } else if (IS("Docker-Content-Digest")) {
        if (vlen <= DIGEST_STR_LEN) {
            memcpy(x->digest, v, vlen);
            x->digest[vlen] = 0;
        }
    } else if (IS("WWW-Authenticate")) {
        if (x->challenge.len + vlen + 2 <= REG_CHALLENGE_MAX) {
            buf_append(&x->challenge, v, vlen);
            buf_append(&x->challenge, "\n", 1);
        }
    } else if (IS("Retry-After")) {
        uint64_t s;
        if (parse_u64(v, vlen, &s))
            x->retry_after = (long)MIN(s, (uint64_t)REG_MAX_RETRY_AFTER_S);
    } else if (IS("Content-Range")) {
        parse_content_range(x, v, vlen);
    } else if (IS("Content-Length")) {
        uint64_t l;
        if (parse_u64(v, vlen, &l) && l <= INT64_MAX)
            x->content_length = (int64_t)l;
    }
#undef IS
    return n;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nmemb;

    if (x->status < 200 || x->status >= 300) {
        if (x->errbody.len < REG_ERRBODY_MAX)
            buf_append(&x->errbody, p, MIN(n, REG_ERRBODY_MAX - x->errbody.len));
        return n;
    }
    x->reg->received += n;
    if (!x->on_body || n == 0)
        return n;
    int rc = x->on_body(x, (const uint8_t *)p, n);
    if (rc) {
        x->abort_rc = rc;
        return 0;
    }
    return n;
}

/* Aborts a transfer that has made no progress for timeout_s: libcurl's LOW_SPEED check averages
 * over a window and notices a stall only seconds later. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct xfer *x = arg;
    uint64_t now = time_mono_ns(), bytes = (uint64_t)dlnow + (uint64_t)ulnow;
    (void)dltotal, (void)ultotal;
    if (bytes != x->last_bytes || !x->last_ns) {
        x->last_bytes = bytes;
        x->last_ns = now;
        return 0;
    }
    if (now - x->last_ns > (uint64_t)x->timeout_s * 1000000000u) {
        x->stalled = true;
        return 1;
    }
    return 0;
}

static int curl_fail(struct registry *r, struct xfer *x, CURLcode cc)
{
    if (cc == CURLE_ABORTED_BY_CALLBACK && x->stalled) {
        x->transient = true;
        return err_set(AFSP_E_NET, "%s from %s: no data for %u s", x->what, x->host, x->timeout_s);
    }
    switch (cc) {
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        x->transient = true;
        break;
    default:
        break;
    }
    return err_set(AFSP_E_NET, "%s from %s: %s", x->what, x->host,
                   r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
}

/* The registry's own words from an error body ({"errors":[{"code":..,"message":..}]}), as
 * ": message" with anything unprintable dropped, or "". */
static void registry_detail(const struct buf *b, char *out, size_t n)
{
    json_t *root = b->len ? json_loadb((const char *)b->p, b->len, 0, NULL) : NULL;
    json_t *e = json_array_get(json_object_get(root, "errors"), 0);
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (!msg)
        msg = json_string_value(json_object_get(e, "code"));
    out[0] = 0;
    if (msg && *msg && n > 3) {
        size_t k = 2;
        memcpy(out, ": ", 2);
        for (const char *c = msg; *c && k + 1 < n && k < 122; c++)
            if (*c >= 0x20 && *c < 0x7f)
                out[k++] = *c;
        out[k] = 0;
    }
    json_decref(root);
}

static int http_fail(struct registry *r, struct xfer *x)
{
    char detail[128];
    long s = x->status;

    registry_detail(&x->errbody, detail, sizeof detail);
    x->transient = s == 408 || s == 429 || s >= 500;
    if (s == 401 || (s == 403 && x->token_request))
        return err_set(AFSP_E_AUTH, "%s refused %s %s%s", x->host, x->what,
                       x->token_request && !x->tok_auth && r->basic
                           ? "(credentials withheld from a plain-HTTP realm)"
                       : r->basic ? "with the credentials from the docker config"
                                  : "without credentials (none in the docker config)",
                       detail);
    if (s == 403)
        return err_set(AFSP_E_AUTH, "%s denied access to %s%s", x->host, x->what, detail);
    if (s == 404)
        return err_set(AFSP_E_NOTFOUND, "%s unknown to %s%s", x->what, x->host, detail);
    return err_set(AFSP_E_HTTP, "HTTP %ld from %s for %s%s", s, x->host, x->what, detail);
}

/* Sends one request to url, with Authorization: auth when auth is not NULL. Returns 0 when a
 * response arrived (any status, in x->status), a callback's error, or AFSP_E_NET. */
static int perform(struct registry *r, struct xfer *x, const char *url, const char *auth)
{
    CURL *c = r->curl;
    struct curl_slist *h = NULL, *t;
    char line[512]; /* the longest is "Accept: " REG_ACCEPT */
    int rc = 0;

    xfer_headers_reset(x);
    x->abort_rc = 0;
    x->transient = false;
    x->errbody.len = 0;
    x->last_bytes = x->last_ns = 0;
    x->stalled = false;
    x->timeout_s = r->timeout_s;
    url_host(url, x->host, sizeof x->host);
    r->errbuf[0] = 0;

    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, REG_USER_AGENT);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)r->timeout_s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)MIN(r->max_rate, INT64_MAX));
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, xfer_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    x->reg = r;
    if (!strcmp(x->method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);

    if (x->accept) {
        if ((size_t)snprintf(line, sizeof line, "Accept: %s", x->accept) >= sizeof line)
            goto nomem; /* cannot happen: our Accept values are constants that fit */
        if (!(t = curl_slist_append(h, line)))
            goto nomem;
        h = t;
    }
    if (x->range_end) {
        snprintf(line, sizeof line, "Range: bytes=%" PRIu64 "-%" PRIu64, x->range_from,
                 x->range_end - 1);
        if (!(t = curl_slist_append(h, line)))
            goto nomem;
        h = t;
    } else if (x->range_from) {
        snprintf(line, sizeof line, "Range: bytes=%" PRIu64 "-", x->range_from);
        if (!(t = curl_slist_append(h, line)))
            goto nomem;
        h = t;
    }
    if (auth) {
        char *a = NULL;
        if (asprintf(&a, "Authorization: %s", auth) < 0)
            goto nomem;
        t = curl_slist_append(h, a);
        secret_free(&a);
        if (!t)
            goto nomem;
        h = t;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);

    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK && x->status == 0)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
    /* The query of a redirect target may hold a signature: never log it. */
    log_debug("%s %.*s%s -> %ld%s%s", x->method, (int)strcspn(url, "?"), url,
              strchr(url, '?') ? "?..." : "", x->status, cc ? " " : "",
              cc ? curl_easy_strerror(cc) : "");
    if (x->abort_rc)
        rc = x->abort_rc;
    else if (cc != CURLE_OK)
        rc = curl_fail(r, x, cc);
    goto out;
nomem:
    rc = -ENOMEM;
out:
    for (t = h; t; t = t->next)
        explicit_bzero(t->data, strlen(t->data));
    curl_slist_free_all(h);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    return rc;
}

/* ---- bodies into a buffer ------------------------------------------------------------------- */

static int body_too_big(struct xfer *x)
{
    struct body_sink *s = x->arg;
    return err_set(s->over_rc, "%s from %s is larger than %zu bytes", x->what, x->host, s->max);
}

int body_prepare(struct xfer *x)
{
    struct body_sink *s = x->arg;
    if (s->b->p)
        explicit_bzero(s->b->p, s->b->len);
    s->b->len = 0;
    return 0;
}

int body_headers(struct xfer *x)
{
    struct body_sink *s = x->arg;
    if (x->content_length >= 0 && (uint64_t)x->content_length > s->max)
        return body_too_big(x);
    return 0;
}

int body_data(struct xfer *x, const uint8_t *p, size_t n)
{
    struct body_sink *s = x->arg;
    if (n > s->max - s->b->len)
        return body_too_big(x);
    return buf_append(s->b, p, n);
}

/* ---- requests: redirects, authentication, retries ------------------------------------------- */

static bool is_redirect(long s)
{
    return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

/* One attempt: follows redirects (the Authorization header only to the origin it is for) and
 * answers one 401 by authenticating. Returns 0 with the final response in x, or an error. */
static int exchange(struct registry *r, struct xfer *x)
{
    char *url = strdup(x->url);
    const char *origin = x->token_request ? x->url : r->base;
    bool same = true, reauth = false;
    int rc = 0, hops = 0;

    if (!url)
        return -ENOMEM;
    for (;;) {
        const char *auth = !same ? NULL : x->token_request ? x->tok_auth : r->auth;
        if ((rc = perform(r, x, url, auth)))
            break;
        if (is_redirect(x->status)) {
            char *loc = NULL, *next;
            if (++hops > REG_MAX_REDIRECTS) {
                rc = err_set(AFSP_E_HTTP, "more than %d redirects for %s from %s",
                             REG_MAX_REDIRECTS, x->what, x->host);
                break;
            }
            curl_easy_getinfo(r->curl, CURLINFO_REDIRECT_URL, &loc);
            if (!loc) {
                rc = err_set(AFSP_E_HTTP, "HTTP %ld from %s for %s without a Location", x->status,
                             x->host, x->what);
                break;
            }
            if (!(next = strdup(loc))) {
                rc = -ENOMEM;
                break;
            }
            free(url);
            url = next;
            same = same_origin(origin, url);
            continue;
        }
        if (x->status == 401 && !x->token_request && same && !reauth) {
            reauth = true;
            if ((rc = auth_answer(r, x)))
                break;
            continue;
        }
        break;
    }
    free(url);
    return rc;
}

static unsigned retry_delay(struct registry *r, const struct xfer *x, int attempt)
{
    if ((x->status == 429 || x->status == 503) && x->retry_after >= 0)
        return (unsigned)x->retry_after * 1000;
    uint64_t d = r->backoff_ms;
    for (int i = 1; i < attempt && d < REG_MAX_BACKOFF_MS; i++)
        d *= 2;
    d = MIN(d, (uint64_t)REG_MAX_BACKOFF_MS);
    return (unsigned)(d / 2 + rng_next64(&r->rng) % (d / 2 + 1));
}

/* Runs x until it succeeds, fails for good, or has failed max_attempts times in a row without
 * progress. Returns 0 (a 2xx response that passed x->check) or an error with its message. */
int xfer_request(struct registry *r, struct xfer *x)
{
    int rc;
    for (int attempt = 1;; attempt++) {
        x->progress = false;
        if (x->prepare && (rc = x->prepare(x)))
            return rc;
        rc = exchange(r, x);
        if (rc == 0) {
            if (x->status >= 200 && x->status < 300) {
                if (!x->check || !(rc = x->check(x)))
                    return 0;
                x->transient = rc == AFSP_E_TRUNCATED;
            } else {
                rc = http_fail(r, x);
            }
        }
        if (!x->transient)
            return rc;
        if (x->progress) { /* resume at once; only attempts without progress count */
            log_info("%s; resuming", err_msg(rc));
            attempt = 0;
            continue;
        }
        if (attempt >= r->max_attempts)
            return rc;
        unsigned ms = retry_delay(r, x, attempt);
        log_info("%s; retrying in %u ms (attempt %d of %d)", err_msg(rc), ms, attempt + 1,
                 r->max_attempts);
        sleep_ms(ms);
    }
}
