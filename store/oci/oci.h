/*
 * oci.h - the public header of store/oci/: what images are called and what describes them,
 * parsed from text alone. No I/O, no network, no store: the registry client, the pull, the
 * mirror and the executor all read references, manifests and configs through this header.
 *
 *   ref.c       image references (Docker's rules): parsing, the canonical text, the API host
 *   manifest.c  OCI / Docker manifests and indexes (jansson), bounds, platform choice
 *   config.c    image configs (jansson): what an executor or a listing needs of them
 *
 * Everything parsed here may come from a registry or a peer and is treated as hostile: every
 * field is type-checked and bounded, and anything unexpected is refused with a message.
 */
#ifndef AFSP_STORE_OCI_H
#define AFSP_STORE_OCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../util/util.h"

/* ==== ref.c ================================================================================ */

/* An image reference after Docker's normalisation: "debian" is
 * docker.io/library/debian:latest; "host:port/name:tag"; "name@sha256:...". */
struct image_ref {
    char *host;   /* owned; "docker.io" maps to registry host "registry-1.docker.io" in url_host */
    char *repo;   /* owned; "library/debian" */
    char *tag;    /* owned; NULL when digest is set and no tag was given */
    char *digest; /* owned; "sha256:..." or NULL */
};

/* Parses s. Returns 0, AFSP_E_REF (with a message naming what is wrong, not repeating s) or
 * -ENOMEM. On success the caller owns out and releases it with ref_release(). */
int ref_parse(const char *s, struct image_ref *out);
void ref_release(struct image_ref *r);
/* The canonical text "host/repo:tag", "host/repo@digest" or "host/repo:tag@digest".
 * Returns a malloc'd string owned by the caller, or NULL on ENOMEM. */
char *ref_str(const struct image_ref *r);
/* The host to connect to ("registry-1.docker.io" for "docker.io"). Borrowed from r or static. */
const char *ref_api_host(const struct image_ref *r);
/* true when host is a loopback address or name (127.0.0.0/8, ::1, localhost), with or without a
 * port: such registries are reached over plain HTTP. */
bool host_is_loopback(const char *host);

/* ==== manifest.c ============================================================================ */

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define MT_DOCKER_SCHEMA1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* Bounds on what we accept from a registry. */
#define MANIFEST_MAX_BYTES (4u << 20)
#define MANIFEST_MAX_LAYERS 1024

struct platform {
    char os[32], arch[32], variant[32]; /* "" when absent */
};

/* Parses "os/arch[/variant]". Returns 0 or AFSP_E_USAGE. */
int platform_parse(const char *s, struct platform *out);
/* This machine's platform in OCI terms (linux/amd64, linux/arm64/v8, ...). */
void platform_host(struct platform *out);
/* "os/arch" or "os/arch/variant" into out (at least 100 bytes); returns out. */
char *platform_fmt(const struct platform *p, char *out);

enum manifest_kind { MANIFEST_INDEX, MANIFEST_IMAGE };

struct descriptor {
    char media_type[128];
    uint8_t digest[DIGEST_LEN];
    uint64_t size;
    struct platform platform; /* index entries only */
};

struct manifest {
    enum manifest_kind kind;
    char media_type[128];
    struct descriptor config;  /* MANIFEST_IMAGE */
    struct descriptor *layers; /* MANIFEST_IMAGE, owned, nlayers entries */
    size_t nlayers;
    struct descriptor *entries; /* MANIFEST_INDEX, owned */
    size_t nentries;
};

/* Parses a manifest or index body. content_type is the HTTP Content-Type (may be NULL: then the
 * body's mediaType decides). Refuses schema1 (AFSP_E_UNSUPPORTED), anything malformed or over
 * the bounds above (AFSP_E_FORMAT), each with a message. On success release with
 * manifest_release(). */
int manifest_parse(const uint8_t *body, size_t len, const char *content_type, struct manifest *out);
void manifest_release(struct manifest *m);
/* Chooses the entry of an index for want: os and arch must match; the variant must match when
 * both name one (an entry without variant matches any). Returns the entry index or
 * AFSP_E_PLATFORM. */
int manifest_choose(const struct manifest *index, const struct platform *want);

/* ==== config.c ============================================================================== */

/* Bound on an image config from a registry or a peer. */
#define CONFIG_MAX_BYTES (4u << 20)

/* The platform an image config names: "os/arch" or "os/arch/variant" (each part cut at 31
 * bytes) into out (n bytes, at least 100), when the config has both "os" and "architecture";
 * otherwise out is left as it was (the caller's choice stands). Returns 0, or AFSP_E_FORMAT
 * ("config is not a JSON object") when body is not a JSON object. */
int config_platform(const uint8_t *body, size_t len, char *out, size_t n);

/* What an image config says of the process to run (its "config" object; every field may be
 * absent or null): malloc'd copies, NULL-terminated arrays (empty ones: NULL). */
#define CONFIG_ARGS_MAX 4096 /* entries of Entrypoint, Cmd or Env */
struct config_process {
    char **entrypoint, **cmd, **env;
    char *workdir, *user;
};
/* Returns 0, AFSP_E_FORMAT (not a JSON object; a field of the wrong type; an array past
 * CONFIG_ARGS_MAX or holding a non-string; an Env entry without '='), or -ENOMEM. */
int config_process(const uint8_t *body, size_t len, struct config_process *out);
void config_process_free(struct config_process *p);

#endif
