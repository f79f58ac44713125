/*
 * registry_int.h - interfaces between the files of store/registry/ (registry.c, http.c, auth.c).
 * No other file includes this: the rest of afsp uses registry.h. With it comes <curl/curl.h>,
 * which nothing outside store/registry/ includes.
 */
#ifndef AFSP_STORE_REGISTRY_INT_H
#define AFSP_STORE_REGISTRY_INT_H

#define CURL_DISABLE_TYPECHECK /* its checking macros would hide the names redefined below */
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../../util/util.h"
#include "registry.h"

/* libcurl's functions, through pointers that curl.c fills when a registry is first asked
 * (curl_load): the binary does not link libcurl, so that a command that never asks a registry
 * does not map its 28 libraries at start (16 ms against 6 for an empty program, in this VM:
 * docs/benchmarks.md). X(name after "curl_", return type, parameters). */
#define CURL_FNS(X)                                                                                \
    X(global_init, CURLcode, (long))                                                               \
    X(easy_init, CURL *, (void))                                                                   \
    X(easy_setopt, CURLcode, (CURL *, CURLoption, ...))                                            \
    X(easy_perform, CURLcode, (CURL *))                                                            \
    X(easy_cleanup, void, (CURL *))                                                                \
    X(easy_reset, void, (CURL *))                                                                  \
    X(easy_getinfo, CURLcode, (CURL *, CURLINFO, ...))                                             \
    X(easy_strerror, const char *, (CURLcode))                                                     \
    X(easy_escape, char *, (CURL *, const char *, int))                                            \
    X(free, void, (void *))                                                                        \
    X(slist_append, struct curl_slist *, (struct curl_slist *, const char *))                      \
    X(slist_free_all, void, (struct curl_slist *))                                                 \
    X(url, CURLU *, (void))                                                                        \
    X(url_get, CURLUcode, (const CURLU *, CURLUPart, char **, unsigned int))                       \
    X(url_set, CURLUcode, (CURLU *, CURLUPart, const char *, unsigned int))                        \
    X(url_cleanup, void, (CURLU *))

struct curl_api {
#define X(name, ret, params) ret(*name) params;
    CURL_FNS(X)
#undef X
};
extern struct curl_api curl_api;
/* Loads libcurl (once) and initialises it. Returns 0, or AFSP_E_NET with why. */
int curl_load(void);

#undef curl_easy_setopt /* curl.h's own macros for these two, checking the count of arguments */
#undef curl_easy_getinfo
#define curl_global_init curl_api.global_init
#define curl_easy_init curl_api.easy_init
#define curl_easy_setopt curl_api.easy_setopt
#define curl_easy_perform curl_api.easy_perform
#define curl_easy_cleanup curl_api.easy_cleanup
#define curl_easy_reset curl_api.easy_reset
#define curl_easy_getinfo curl_api.easy_getinfo
#define curl_easy_strerror curl_api.easy_strerror
#define curl_easy_escape curl_api.easy_escape
#define curl_free curl_api.free
#define curl_slist_append curl_api.slist_append
#define curl_slist_free_all curl_api.slist_free_all
#define curl_url curl_api.url
#define curl_url_get curl_api.url_get
#define curl_url_set curl_api.url_set
#define curl_url_cleanup curl_api.url_cleanup

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
    uint64_t max_rate; /* opts->max_rate */
    uint64_t received; /* body bytes of 2xx answers, for registry_received */
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
    bool progress;        /* on_body delivered new bytes during this attempt */
    struct registry *reg; /* set by perform */

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

/* ==== http.c ================================================================================ */

/* Frees a secret string, wiping it first; *p becomes NULL. */
void secret_free(char **p);
/* Host names compared as DNS does (case-insensitive). */
bool host_eq(const char *a, const char *b);
/* Whether host (host or host:port) was named with --insecure-registry. */
bool host_insecure(const struct registry *r, const char *host);
/* scheme, host (lowercase) and port of url; false if it does not parse. */
bool url_origin(const char *url, char *scheme, size_t ns, char *host, size_t nh, char *port,
                size_t np);

/* Forgets the headers of the last response (a new one begins). */
void xfer_headers_reset(struct xfer *x);
/* libcurl's header callback: one response header line p[0..size * nitems) into x. */
size_t xfer_on_header(char *p, size_t size, size_t nitems, void *arg);

/* A response body into a buffer (x->arg), over at most max bytes: more is over_rc. */
struct body_sink {
    struct buf *b;
    size_t max;
    int over_rc; /* returned when the body exceeds max */
};
int body_prepare(struct xfer *x);
int body_headers(struct xfer *x);
int body_data(struct xfer *x, const uint8_t *p, size_t n);

/* Runs x until it succeeds, fails for good, or has failed max_attempts times in a row without
 * progress. Returns 0 (a 2xx response that passed x->check) or an error with its message. The
 * caller releases x's buffers (x->challenge, x->errbody). */
int xfer_request(struct registry *r, struct xfer *x);

/* ==== auth.c ================================================================================ */

struct challenge {
    bool basic, bearer;
    char realm[1024], service[256];
};

/* Parses WWW-Authenticate values (one per line) into ch: schemes, each followed by key=value or
 * key="quoted, value" parameters; the realm and service of a Bearer challenge. */
void auth_parse_challenges(const char *s, struct challenge *ch);
/* Answers a 401 from the registry (x) according to its WWW-Authenticate challenge: a token, or
 * the Basic credentials. Returns 0 to try again, or AFSP_E_AUTH with a message. */
int auth_answer(struct registry *r, struct xfer *x);
/* Reads the Basic credentials for r->host from the docker config at config (NULL: the default
 * places) into r->basic; none is not an error (warnings say why, never what). */
void auth_load_credentials(struct registry *r, const char *config);

#endif
