/*
 * registry.c - the OCI distribution API client over libcurl: manifests and blobs, Basic and
 * Bearer-token authentication from the docker config, redirects, retries with backoff, and
 * resumption of interrupted blob downloads.
 *
 * Owns one CURL easy handle per struct registry (so connections are reused), the credentials
 * read for that registry and the token it was given. A struct registry is used by one thread at
 * a time. Must never let a secret leave the registry's origin: redirects are followed here, by
 * hand, and the Authorization header only goes to the scheme://host:port it is meant for.
 * Secrets are never logged and are wiped when dropped. Curl and HTTP failures become project
 * codes in one place each (curl_fail, http_fail).
 */
#include "registry.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define REG_USER_AGENT "afsp/0.1"
#define REG_MAX_REDIRECTS 10
#define REG_DEFAULT_ATTEMPTS 5
#define REG_DEFAULT_BACKOFF_MS 200u
#define REG_MAX_BACKOFF_MS 5000u
#define REG_MAX_RETRY_AFTER_S 60
#define REG_DEFAULT_TIMEOUT_S 30u
#define REG_ERRBODY_MAX 4096
#define REG_CHALLENGE_MAX 8192
#define REG_TOKEN_BODY_MAX (64u << 10)
#define REG_ACCEPT MT_OCI_INDEX ", " MT_DOCKER_LIST ", " MT_OCI_MANIFEST ", " MT_DOCKER_MANIFEST

struct registry {
    CURL *curl;
    char *host;      /* as in the reference ("docker.io"): credentials and messages */
    char *api_host;  /* host[:port] connected to */
    char *repo;      /* "library/debian" */
    char *base;      /* "https://registry-1.docker.io" */
    char **insecure; /* NULL-terminated copies of opts->insecure_hosts */
    char *basic;     /* secret: "Basic <base64>" from the docker config, or NULL */
    char *auth;      /* secret: the Authorization value sent to the registry, or NULL */
    int max_attempts;
    unsigned backoff_ms, timeout_s;
    uint64_t rng;
    char errbuf[CURL_ERROR_SIZE];
};

/* One logical request: the caller fills the first part; the rest describes the last response. */
struct xfer {
    const char *method;             /* "GET" or "HEAD" */
    const char *url;                /* absolute */
    const char *accept;             /* Accept value or NULL */
    const char *what;               /* what is fetched, for messages: "blob sha256:ab12..." */
    bool token_request;             /* to a token realm: send tok_auth there, never answer a 401 */
    const char *tok_auth;           /* secret, borrowed */
    uint64_t range_from;            /* > 0: ask for the bytes from here on */
    uint64_t range_end;             /* > 0: ... up to here (exclusive) */
    int (*prepare)(struct xfer *x); /* before each attempt */
    int (*on_headers)(struct xfer *x);                          /* 2xx headers complete */
    int (*on_body)(struct xfer *x, const uint8_t *p, size_t n); /* 2xx body bytes */
    int (*check)(struct xfer *x); /* after a 2xx: 0 done, AFSP_E_TRUNCATED to resume */
    void *arg;
    bool progress; /* on_body delivered new bytes during this attempt */

    long status;
    bool transient; /* the last failure may go away on retry */
    int abort_rc;   /* a callback's error that stopped the transfer */
    char host[256]; /* host[:port] that answered, for messages */
    char content_type[128];
    char digest[DIGEST_STR_LEN + 1]; /* Docker-Content-Digest, "" when absent */
    long retry_after;                /* seconds, -1 when absent */
    bool has_range;
    uint64_t range_start, range_total; /* Content-Range; total UINT64_MAX when "*" */
    int64_t content_length;            /* -1 when absent */
    struct buf challenge;              /* WWW-Authenticate values, one per line */
    struct buf errbody;                /* the start of a non-2xx body */
    uint64_t last_bytes, last_ns;      /* stall detection: bytes seen and when they changed */
    bool stalled;
    unsigned timeout_s;
};

/* ---- small helpers -------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void secret_free(char **p)
{
    if (*p) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const uint8_t *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *o++ = b64chars[v >> 18 & 63];
        *o++ = b64chars[v >> 12 & 63];
        *o++ = i + 1 < n ? b64chars[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? b64chars[v & 63] : '=';
    }
    *o = 0;
    return out;
}

/* Decodes standard base64 (padding optional) into out (at least strlen(s) bytes). Returns the
 * decoded length or -1. */
static ssize_t b64_decode(const char *s, uint8_t *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0, len = strlen(s);
    while (len && s[len - 1] == '=')
        len--;
    for (size_t i = 0; i < len; i++) {
        const char *c = s[i] ? strchr(b64chars, s[i]) : NULL;
        if (!c)
            return -1;
        acc = acc << 6 | (uint32_t)(c - b64chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return bits >= 6 ? -1 : (ssize_t)n;
}

static bool host_eq(const char *a, const char *b)
{
    return !strcasecmp(a, b);
}

static bool host_insecure(const struct registry *r, const char *host)
{
    for (char **h = r->insecure; h && *h; h++)
        if (host_eq(*h, host))
            return true;
    return false;
}

/* "blob sha256:0123456789ab…" */
static void digest_what(char *out, size_t n, const char *kind, const uint8_t d[DIGEST_LEN])
{
    char hex[2 * DIGEST_LEN + 1];
    hex_fmt(d, DIGEST_LEN, hex);
    snprintf(out, n, "%s sha256:%.12s…", kind, hex);
}

/* scheme, host (lowercase) and port of url; false if it does not parse. */
static bool url_origin(const char *url, char *scheme, size_t ns, char *host, size_t nh, char *port,
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

static uint64_t rng_next(struct registry *r)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return r->rng;
}

/* ---- one HTTP exchange ---------------------------------------------------------------------- */

static void headers_reset(struct xfer *x)
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

static size_t on_header(char *p, size_t size, size_t nitems, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nitems, len = n;

    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (len >= 5 && !strncasecmp(p, "HTTP/", 5)) { /* a new response (1xx, then the final) */
        headers_reset(x);
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

    headers_reset(x);
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
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
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

/* ---- authentication ------------------------------------------------------------------------- */

struct challenge {
    bool basic, bearer;
    char realm[1024], service[256];
};

/* Parses WWW-Authenticate values: schemes, each followed by key=value or key="quoted, value"
 * parameters. Several challenges may share one header or come in several. */
static void parse_challenges(const char *s, struct challenge *ch)
{
    enum { OTHER, BASIC, BEARER } cur = OTHER;
    const char *p = s;

    memset(ch, 0, sizeof *ch);
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',' || *p == '\n')
            p++;
        if (!*p)
            break;
        const char *tok = p;
        while (*p && !strchr(" \t,=\n\"", *p))
            p++;
        size_t tlen = (size_t)(p - tok);
        const char *q = p;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q != '=') {     /* a scheme */
            if (tlen == 0) { /* stray quote or the like: skip it */
                p++;
                continue;
            }
            cur = tlen == 5 && !strncasecmp(tok, "basic", 5)    ? BASIC
                  : tlen == 6 && !strncasecmp(tok, "bearer", 6) ? BEARER
                                                                : OTHER;
            if (cur == BASIC)
                ch->basic = true;
            if (cur == BEARER)
                ch->bearer = true;
            continue;
        }
        /* key = value */
        p = q + 1;
        while (*p == ' ' || *p == '\t')
            p++;
        char val[1024];
        size_t vlen = 0;
        bool too_long = false;
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (vlen + 1 < sizeof val)
                    val[vlen++] = *p;
                else
                    too_long = true;
            }
            if (*p == '"')
                p++;
        } else {
            while (*p && !strchr(" \t,\n", *p)) {
                if (vlen + 1 < sizeof val)
                    val[vlen++] = *p;
                else
                    too_long = true;
                p++;
            }
        }
        val[vlen] = 0;
        if (cur != BEARER)
            continue;
        if (tlen == 5 && !strncasecmp(tok, "realm", 5) && vlen < sizeof ch->realm)
            memcpy(ch->realm, val, too_long ? 0 : vlen + 1);
        else if (tlen == 7 && !strncasecmp(tok, "service", 7) && vlen < sizeof ch->service)
            memcpy(ch->service, val, too_long ? 0 : vlen + 1);
    }
}

struct body_sink {
    struct buf *b;
    size_t max;
    int over_rc; /* returned when the body exceeds max */
};

static int body_too_big(struct xfer *x)
{
    struct body_sink *s = x->arg;
    return err_set(s->over_rc, "%s from %s is larger than %zu bytes", x->what, x->host, s->max);
}

static int body_prepare(struct xfer *x)
{
    struct body_sink *s = x->arg;
    if (s->b->p)
        explicit_bzero(s->b->p, s->b->len);
    s->b->len = 0;
    return 0;
}

static int body_headers(struct xfer *x)
{
    struct body_sink *s = x->arg;
    if (x->content_length >= 0 && (uint64_t)x->content_length > s->max)
        return body_too_big(x);
    return 0;
}

static int body_data(struct xfer *x, const uint8_t *p, size_t n)
{
    struct body_sink *s = x->arg;
    if (n > s->max - s->b->len)
        return body_too_big(x);
    return buf_append(s->b, p, n);
}

static int request(struct registry *r, struct xfer *x);

/* Whether credentials may be sent to the token realm: over HTTPS, or plain HTTP to a host we
 * were told to reach that way anyway. */
static bool realm_creds_ok(const struct registry *r, const char *realm)
{
    char scheme[16], host[256], port[8], hp[300];
    if (!url_origin(realm, scheme, sizeof scheme, host, sizeof host, port, sizeof port))
        return false;
    if (!strcasecmp(scheme, "https"))
        return true;
    snprintf(hp, sizeof hp, "%s:%s", host, port);
    return host_is_loopback(host) || host_is_loopback(hp) || host_insecure(r, host) ||
           host_insecure(r, hp);
}

static bool token_valid(const char *t)
{
    if (!*t)
        return false;
    for (; *t; t++)
        if (*t < 0x21 || *t > 0x7e)
            return false;
    return true;
}

/* The Bearer flow: GET realm?service=..&scope=repository:<repo>:pull, with Basic credentials
 * if we have them, and keep the token for the requests that follow. */
static int fetch_token(struct registry *r, const struct challenge *ch)
{
    struct buf body = {0};
    struct body_sink sink = {&body, REG_TOKEN_BODY_MAX, AFSP_E_FORMAT};
    char *url = NULL, *service = NULL, *scope = NULL, *scope_raw = NULL, what[400];
    json_t *root = NULL;
    int rc;

    if (strncasecmp(ch->realm, "https://", 8) && strncasecmp(ch->realm, "http://", 7))
        return err_set(AFSP_E_AUTH, "%s named token realm \"%.100s\", not an HTTP(S) URL",
                       r->api_host, ch->realm);
    if (asprintf(&scope_raw, "repository:%s:pull", r->repo) < 0) {
        scope_raw = NULL;
        rc = -ENOMEM;
        goto out;
    }
    service = curl_easy_escape(r->curl, ch->service, 0);
    scope = curl_easy_escape(r->curl, scope_raw, 0);
    if (!service || !scope ||
        asprintf(&url, "%s%sservice=%s&scope=%s", ch->realm, strchr(ch->realm, '?') ? "&" : "?",
                 service, scope) < 0) {
        url = NULL;
        rc = -ENOMEM;
        goto out;
    }
    snprintf(what, sizeof what, "a pull token for %s/%s", r->host, r->repo);
    bool creds = r->basic && realm_creds_ok(r, ch->realm);
    if (r->basic && !creds)
        log_warn("not sending credentials for %s to token realm over plain HTTP", r->host);
    struct xfer t = {
        .method = "GET",
        .url = url,
        .what = what,
        .token_request = true,
        .tok_auth = creds ? r->basic : NULL,
        .prepare = body_prepare,
        .on_headers = body_headers,
        .on_body = body_data,
        .arg = &sink,
    };
    rc = request(r, &t);
    buf_release(&t.challenge);
    buf_release(&t.errbody);
    if (rc)
        goto out;
    root = body.len ? json_loadb((const char *)body.p, body.len, 0, NULL) : NULL;
    json_t *tok = json_object_get(root, "token");
    if (!json_is_string(tok) || !json_string_length(tok))
        tok = json_object_get(root, "access_token");
    const char *tv = json_string_value(tok);
    if (!tv || !token_valid(tv)) {
        rc = err_set(AFSP_E_AUTH, "token server %s sent no usable token for %s", t.host, r->host);
        goto out;
    }
    secret_free(&r->auth);
    if (asprintf(&r->auth, "Bearer %s", tv) < 0) {
        r->auth = NULL;
        rc = -ENOMEM;
    }
out:
    if (root) {
        /* wipe the token's copy inside the JSON tree before it is freed */
        json_t *v;
        const char *k;
        json_object_foreach(root, k, v)
        {
            if (json_is_string(v))
                explicit_bzero((char *)json_string_value(v), json_string_length(v));
        }
        json_decref(root);
    }
    if (body.p)
        explicit_bzero(body.p, body.len);
    buf_release(&body);
    curl_free(service);
    curl_free(scope);
    free(scope_raw);
    free(url);
    return rc;
}

/* Answers a 401 from the registry according to its WWW-Authenticate challenge. */
static int authenticate(struct registry *r, struct xfer *x)
{
    struct challenge ch;
    parse_challenges(x->challenge.p ? (const char *)x->challenge.p : "", &ch);
    if (ch.bearer && ch.realm[0])
        return fetch_token(r, &ch);
    if (ch.basic) {
        if (!r->basic)
            return err_set(AFSP_E_AUTH,
                           "%s wants credentials for %s and the docker config has none for %s",
                           x->host, x->what, r->host);
        if (r->auth && !strcmp(r->auth, r->basic))
            return err_set(AFSP_E_AUTH, "%s refused %s with the credentials from the docker config",
                           x->host, x->what);
        secret_free(&r->auth);
        if (!(r->auth = strdup(r->basic)))
            return -ENOMEM;
        return 0;
    }
    return err_set(AFSP_E_AUTH,
                   "%s answered 401 for %s without a usable WWW-Authenticate challenge", x->host,
                   x->what);
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
            if ((rc = authenticate(r, x)))
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
    return (unsigned)(d / 2 + rng_next(r) % (d / 2 + 1));
}

/* Runs x until it succeeds, fails for good, or has failed max_attempts times in a row without
 * progress. Returns 0 (a 2xx response that passed x->check) or an error with its message. */
static int request(struct registry *r, struct xfer *x)
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

/* ---- credentials ---------------------------------------------------------------------------- */

/* Whether a key of the docker config's "auths" names host: "host", "https://host",
 * "http://host/v1/" and the like; docker.io also under its historical names. */
static bool auth_key_matches(const char *key, const char *host)
{
    if (!strncasecmp(key, "https://", 8))
        key += 8;
    else if (!strncasecmp(key, "http://", 7))
        key += 7;
    size_t n = strcspn(key, "/");
    char k[256];
    if (n == 0 || n >= sizeof k)
        return false;
    memcpy(k, key, n);
    k[n] = 0;
    if (host_eq(k, host))
        return true;
    if (!strcmp(host, "docker.io"))
        return host_eq(k, "index.docker.io") || host_eq(k, "registry-1.docker.io") ||
               host_eq(k, "docker.io");
    return false;
}

/* "Basic <base64(user:pass)>" from one "auths" entry, or NULL (with a warning if malformed). */
static char *entry_basic(json_t *e, const char *path, const char *host)
{
    const char *auth = json_string_value(json_object_get(e, "auth"));
    const char *user = json_string_value(json_object_get(e, "username"));
    const char *pass = json_string_value(json_object_get(e, "password"));
    uint8_t *plain = NULL;
    size_t plen = 0;
    char *b64 = NULL, *out = NULL;

    if (auth && *auth) {
        plain = malloc(strlen(auth) + 1);
        if (!plain)
            return NULL;
        ssize_t n = b64_decode(auth, plain);
        if (n < 0 || !memchr(plain, ':', (size_t)n)) {
            log_warn("%s: the credentials for %s are malformed; continuing without them", path,
                     host);
            if (n > 0)
                explicit_bzero(plain, (size_t)n);
            free(plain);
            return NULL;
        }
        plen = (size_t)n;
    } else if (user && pass && *user) {
        if (asprintf((char **)&plain, "%s:%s", user, pass) < 0)
            return NULL;
        plen = strlen((char *)plain);
    } else {
        if (json_object_get(e, "identitytoken"))
            log_info("%s: identity tokens (for %s) are not supported", path, host);
        return NULL;
    }
    b64 = b64_encode(plain, plen);
    explicit_bzero(plain, plen);
    free(plain);
    if (b64 && asprintf(&out, "Basic %s", b64) < 0)
        out = NULL;
    secret_free(&b64);
    return out;
}

static void load_credentials(struct registry *r, const char *config)
{
    char *path = NULL;
    const char *env;
    json_error_t jerr;
    struct stat st;

    if (config)
        path = strdup(config);
    else if ((env = getenv("DOCKER_CONFIG")) && *env) {
        if (asprintf(&path, "%s/config.json", env) < 0)
            path = NULL;
    } else if ((env = getenv("HOME")) && *env) {
        if (asprintf(&path, "%s/.docker/config.json", env) < 0)
            path = NULL;
    }
    if (!path || stat(path, &st) < 0) {
        free(path);
        return;
    }
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        /* jerr.text may quote the file, which holds secrets: only say where */
        log_warn("%s is not valid JSON (line %d); continuing without credentials", path, jerr.line);
        free(path);
        return;
    }
    json_t *auths = json_object_get(root, "auths"), *e;
    const char *key;
    if (auths && !json_is_object(auths))
        log_warn("%s: \"auths\" is not an object; continuing without credentials", path);
    else if (json_is_object(auths)) {
        /* an exact key first, then the spelled-out forms */
        json_t *exact = json_object_get(auths, r->host);
        if (json_is_object(exact))
            r->basic = entry_basic(exact, path, r->host);
        json_object_foreach(auths, key, e)
        {
            if (r->basic)
                break;
            if (json_is_object(e) && auth_key_matches(key, r->host))
                r->basic = entry_basic(e, path, r->host);
        }
    }
    if (!r->basic && (json_object_get(root, "credsStore") || json_object_get(root, "credHelpers")))
        log_info("%s names credential helpers, which are not supported; %s is accessed "
                 "anonymously",
                 path, r->host);
    json_object_foreach(auths, key, e)
    {
        json_t *v;
        const char *k2;
        json_object_foreach(e, k2, v)
        {
            if (json_is_string(v))
                explicit_bzero((char *)json_string_value(v), json_string_length(v));
        }
    }
    json_decref(root);
    log_debug("credentials for %s: %s", r->host, r->basic ? "from the docker config" : "none");
    free(path);
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
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return err_set(AFSP_E_NET, "cannot initialise libcurl: %s",
                       curl_easy_strerror(curl_init_rc));
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
    r->rng = time_mono_ns() ^ (uint64_t)(uintptr_t)r;
    if (!r->rng)
        r->rng = 1;
    load_credentials(r, opts->docker_config);
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
        rc = request(r, &h);
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
    rc = request(r, &g);
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
    rc = request(r, &x);
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
    rc = request(r, &x);
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
    headers_reset(&x);
    while (n) {
        const uint8_t *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) + 1 : n;
        char line[2048];
        /* curl hands us one header line at a time, at most CURL_MAX_HTTP_HEADER long */
        size_t k = MIN(len, sizeof line);
        memcpy(line, p, k);
        on_header(line, 1, k, &x);
        p += len;
        n -= len;
    }
    if (x.content_type[sizeof x.content_type - 1] || x.digest[sizeof x.digest - 1] ||
        x.challenge.len > REG_CHALLENGE_MAX)
        abort();
    parse_challenges(x.challenge.p ? (const char *)x.challenge.p : "", &ch);
    if (strnlen(ch.realm, sizeof ch.realm) == sizeof ch.realm ||
        strnlen(ch.service, sizeof ch.service) == sizeof ch.service)
        abort();
    buf_release(&x.challenge);
}
