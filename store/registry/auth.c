/*
 * auth.c - authentication to a registry: WWW-Authenticate challenges, the Bearer-token flow
 * (GET realm?service=..&scope=repository:<repo>:pull, with Basic credentials when there are
 * some), Basic, and the credentials of the docker config ("auths").
 *
 * Owns the secrets of a struct registry: the Basic credentials read for its host and the
 * Authorization value it was given. Secrets are never logged (not even a parse error's excerpt
 * of the config file) and are wiped when dropped, with their copies in JSON trees; credentials
 * go to a token realm only over HTTPS, or plain HTTP to a loopback or insecure host.
 * Must not send anything itself but through xfer_request (http.c).
 */
#include "registry_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- challenges and tokens ------------------------------------------------------------------ */

/* Parses WWW-Authenticate values: schemes, each followed by key=value or key="quoted, value"
 * parameters. Several challenges may share one header or come in several. */
void auth_parse_challenges(const char *s, struct challenge *ch)
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
    rc = xfer_request(r, &t);
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
int auth_answer(struct registry *r, struct xfer *x)
{
    struct challenge ch;
    auth_parse_challenges(x->challenge.p ? (const char *)x->challenge.p : "", &ch);
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

/* ---- credentials ---------------------------------------------------------------------------- */

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

void auth_load_credentials(struct registry *r, const char *config)
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
