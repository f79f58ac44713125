/*
 * registry.h - the public header of store/registry/: the OCI distribution API client (pull
 * side) over libcurl, the only code of afsp that includes <curl/curl.h>.
 *
 *   registry.c  the API below: clients, manifests, blobs and ranges of blobs
 *   http.c      one HTTP exchange, redirects, retries with backoff, response headers
 *   auth.c      Basic and Bearer-token authentication, credentials from the docker config
 *
 * A client never lets a secret leave the registry's origin, never logs one, and wipes them when
 * dropped. It verifies what it can (manifest and small blob digests, sizes); layer bytes are
 * handed on unverified, to a caller that hashes them. Knows nothing of the store or of peers.
 */
#ifndef AFSP_STORE_REGISTRY_H
#define AFSP_STORE_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "../../util/util.h"
#include "../oci/oci.h"

struct registry;

struct registry_opts {
    const char *const *insecure_hosts; /* NULL-terminated; hosts reached over plain HTTP */
    const char *docker_config;         /* path of config.json; NULL: $DOCKER_CONFIG/config.json
                                          or ~/.docker/config.json */
    int max_attempts;                  /* 0: default (5) */
    unsigned backoff_ms;               /* first retry delay; 0: default (200 ms), doubles */
    unsigned timeout_s;                /* no progress for this long fails; 0: default (30 s) */
    uint64_t max_rate;                 /* bytes a second received at most; 0: no limit */
};

/* Prepares a client for ref's registry and repository. Reads credentials for the host, if any.
 * Returns 0 or a negative code; on success free with registry_free(). */
int registry_new(struct registry **out, const struct image_ref *ref,
                 const struct registry_opts *opts);
void registry_free(struct registry *r);

/* Fetches a manifest by tag or digest ("sha256:..."). A tag is resolved with HEAD first (its
 * Docker-Content-Digest), then the manifest is fetched by GET with Accept for OCI index, Docker
 * list, OCI manifest and Docker schema2. The body is checked against the digest (the requested
 * one, or the one the registry named: AFSP_E_DIGEST) and against MANIFEST_MAX_BYTES
 * (AFSP_E_FORMAT); a malformed reference is AFSP_E_REF. On success body holds the bytes (caller
 * releases), *content_type is malloc'd (caller frees; "" when the registry sent none), digest is
 * set; on failure body is released. A registry object is used by one thread at a time. */
int registry_get_manifest(struct registry *r, const char *reference, struct buf *body,
                          char **content_type, uint8_t digest[static DIGEST_LEN]);

/* Receives blob bytes in order, each byte exactly once even across resumed requests. A non-zero
 * return aborts the download and is returned by registry_get_blob. */
typedef int (*registry_data_cb)(void *arg, const uint8_t *p, size_t n);

/* Streams blob digest of the given size to cb. A dropped connection is resumed with a Range
 * request from the bytes already delivered; 429/503 are retried after Retry-After; other
 * transient errors with backoff. Does not verify the digest (the caller hashes what it
 * receives), but fails with AFSP_E_SIZE if the registry sends more than size bytes or
 * AFSP_E_TRUNCATED if it cannot deliver all of them. */
int registry_get_blob(struct registry *r, const uint8_t digest[static DIGEST_LEN], uint64_t size,
                      registry_data_cb cb, void *arg);
/* The same for bytes [from, end) of the blob (a Range request; a registry that answers with the
 * whole blob works too, more slowly). */
int registry_get_blob_range(struct registry *r, const uint8_t digest[static DIGEST_LEN],
                            uint64_t size, uint64_t from, uint64_t end, registry_data_cb cb,
                            void *arg);

/* Body bytes the registry sent r so far (answers that succeeded: blobs, manifests, tokens). */
uint64_t registry_received(const struct registry *r);

/* Small blobs (configs): fetched whole into body and verified against digest.
 * Fails with AFSP_E_TOOBIG if over max bytes. */
int registry_get_small_blob(struct registry *r, const uint8_t digest[static DIGEST_LEN], size_t max,
                            struct buf *body);

/* For the fuzz target (fuzz/http.c): feeds response header lines (split at '\n') to the
 * client's header parser and the WWW-Authenticate values to its challenge parser; aborts if a
 * bound is broken. */
void registry_headers_fuzz(const uint8_t *p, size_t n);

#endif
