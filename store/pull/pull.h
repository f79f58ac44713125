/*
 * pull.h - the public header of store/pull/: the pull policy. Where a pull looks for an image's
 * objects and in what order: the store first, then a node's peers, then the registry; whole
 * layers or, lazily, a peer's index only; and a partial layer's missing chunks by Range
 * requests to the registry. Everything of the store that knows of registries and peers is
 * here; it fills the store through store/ingest.h and store.h, and reaches registries through
 * store/registry/registry.h.
 *
 *   pull.c   store_pull, store_fetch_registry
 *
 * The functions block (network I/O on the calling thread); a peer is whatever struct pull_peers
 * says it is (the node's glue answers it), so this part holds no sockets and no event loop.
 */
#ifndef AFSP_STORE_PULL_H
#define AFSP_STORE_PULL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../util/util.h"
#include "../store.h"

struct pull_progress {
    const char *phase;     /* "manifest", "layer", "done" */
    size_t layer, nlayers; /* layer being fetched (0-based) */
    uint64_t done, total;  /* bytes of all layers fetched so far / to fetch */
};
typedef void (*pull_progress_cb)(void *arg, const struct pull_progress *p);

/* A node whose download a pull reads (the relay, docs/swarm.md): the glue's, opaque here. */
struct pull_src {
    uint8_t opaque[96];
};

/* Where a pull looks before the registry: a node's peers (the daemon's). The functions run on
 * the pulling thread and may block. Any code but 0 makes the pull ask the registry for that
 * object (AFSP_E_NOTFOUND: no peer has it, said without a warning). */
enum { PULL_CLAIM_FAILED = 1, PULL_CLAIM_WHOLE = 2 }; /* pull_peers.claim's flags */

struct pull_peers {
    void *arg;
    /* Appends blob digest (a manifest or config, at most max bytes) to out; the pull checks the
     * digest. */
    int (*get_blob)(void *arg, const uint8_t digest[DIGEST_LEN], uint64_t max, struct buf *out);
    /* Appends layer digest's index (docs/format.md) to out, and the ID of the node that sent
     * it to from. */
    int (*get_index)(void *arg, const uint8_t digest[DIGEST_LEN], struct buf *out,
                     uint8_t from[STORE_ID_LEN]);
    /* Fills every chunk of f (store_fetch_chunk_*), from any peers. */
    int (*get_chunks)(void *arg, struct store_fetch *f);
    /* May be NULL. Before layer digest (size bytes) is downloaded from the registry: its
     * cluster-wide claim, waiting while another node downloads it. 0: download it (*claimed:
     * call claim_end after, with whether the layer is whole), 1: read *src's download of it as
     * it runs, the whole layer whatever the pull (this node is the claim's standby: read_src;
     * then call claim_end), -EAGAIN: a peer has it now (ask the peers again), or another code
     * (the pull fails with it). cur (may be NULL): the source whose download this pull reads
     * now (it asks whether it should go on: 1 names the node to read on from, -EAGAIN says the
     * holder has the layer whole); flags PULL_CLAIM_FAILED: cur failed the pull, and is not
     * named again while it holds the claim (1 then names another node to read from, or a
     * holder that finished); PULL_CLAIM_WHOLE: the pull wants the layer whole (not lazily), and
     * 1 may name another reader of the download (the relay chain, docs/swarm.md). */
    int (*claim)(void *arg, const uint8_t digest[DIGEST_LEN], uint64_t size,
                 const struct pull_src *cur, unsigned flags, bool *claimed, struct pull_src *src);
    void (*claim_end)(void *arg, const uint8_t digest[DIGEST_LEN], bool whole);
    /* Bytes [off, off + len) (fewer at the end) of layer digest's blob (size bytes) from src's
     * download, appended to out: 0, -EBUSY (not there yet: ask again), or another code (src
     * failed). Unchecked: the pull's streaming pass checks the whole blob. */
    int (*read_src)(void *arg, const struct pull_src *src, const uint8_t digest[DIGEST_LEN],
                    uint64_t size, uint64_t off, uint32_t len, struct buf *out);
    /* How many layers get_index and get_chunks may be asked for at once, each on a thread of
     * the pull's (at most PULL_LAYERS_AT_ONCE); 0 or 1: one after another. */
    unsigned layers_at_once;
};

/* A pull asks the peers for this many layers at once at most: each layer's index, chunks and
 * final sync overlap the others' (docs/benchmarks.md, issue 18). */
#define PULL_LAYERS_AT_ONCE 4

struct pull_opts {
    const char *platform;              /* "os/arch[/variant]"; NULL: this machine */
    const char *const *insecure_hosts; /* NULL-terminated, may be NULL */
    const char *docker_config;         /* NULL: $DOCKER_CONFIG or ~/.docker */
    pull_progress_cb progress;         /* may be NULL */
    void *progress_arg;
    const struct pull_peers *peers; /* may be NULL: the registry only */
    bool lazy; /* with peers: a layer a peer has is added partial (its index only); its chunks
                  come as a mount reads them (store_set_fetcher) */
    uint64_t registry_rate;   /* bytes a second from the registry at most (a verification's pace);
                                 0: no limit */
    uint64_t *registry_bytes; /* may be NULL: the body bytes registries sent are added to it */
    bool no_record; /* no image record is written (a verification of an image pulled before:
                       its record is the one that pull wrote, by the name it was pulled by) */
};

/* Pulls image ref (Docker reference syntax) into the store: resolves the manifest (platform from
 * an index), reserves space for the layers it lacks (evicting least-recently-used layers as
 * needed, failing fast with AFSP_E_TOOBIG if the image can never fit), then fetches, verifies and
 * indexes each missing layer in one streaming pass. Nothing unverified becomes visible: on any
 * failure the store is as it was, apart from evictions made to reserve space (and, with peers,
 * partial layers and the checked chunks they got). Manifests and configs come from the store if
 * it holds them, else from opts->peers, else the registry; each missing layer from the peers
 * (lazily: only its index), else the registry (a partial layer's missing chunks by Range
 * requests). The registry is reached only when something must come from it. Returns 0,
 * AFSP_E_REF, AFSP_E_PLATFORM (no entry of an index for the platform), AFSP_E_TOOBIG,
 * AFSP_E_FORMAT / AFSP_E_UNSUPPORTED (a manifest or layer afsp cannot use), AFSP_E_DIGEST,
 * AFSP_E_SIZE, the registry's errors (AFSP_E_NET, AFSP_E_AUTH, AFSP_E_NOTFOUND, AFSP_E_HTTP),
 * or a local error, with a message naming the object. On success, if digest_out is not NULL it
 * receives the manifest digest. opts may be NULL (the registry only, this machine's platform). */
int store_pull(struct store *s, const char *ref, const struct pull_opts *opts,
               uint8_t digest_out[DIGEST_LEN]);

/* ---- Range requests ------------------------------------------------------------------------ */

/* Fills the chunks the layer lacks among [first, last] from the registry of image ref (one Range
 * request, from the first missing chunk to the end of the last), checking each
 * (store_fetch_chunk_*); the caller flushes after. opts gives the insecure hosts and the docker
 * config (may be NULL). Returns 0, the registry's error (AFSP_E_NET, AFSP_E_AUTH, ...), or
 * AFSP_E_DIGEST / AFSP_E_SIZE when its bytes are not the chunks the layer's index names. */
int store_fetch_registry(struct store_fetch *f, const char *ref, const struct pull_opts *opts,
                         uint32_t first, uint32_t last);

#endif
