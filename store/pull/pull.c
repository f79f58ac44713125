/*
 * pull.c - the pull policy: an image into the store, each object from the nearest place that
 * has it. Manifests and configs: the store (they are content-addressed), else peers, else the
 * registry. Layers: complete ones are kept; a peer's layer comes chunk by chunk (or, lazily,
 * only its index, its chunks as a mount reads them); a partial layer is completed by Range
 * requests to the registry; any other layer is downloaded whole through the streaming pass
 * (ingest.c). Space is reserved before the first layer download, and the image record written
 * last.
 *
 * Owns the registry client of a pull, opened only when something must come from the registry.
 * Must not touch LMDB or the store's files (it goes through ingest.h and store.h), decode
 * layers, or trust a byte from a peer or a registry before it is checked against a digest.
 */
#include "pull.h"
#include "../ingest.h"
#include "../oci/oci.h"
#include "../registry/registry.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Where manifests and configs come from: the store when it holds them (they are
 * content-addressed, so a digest names the same bytes anywhere), else the registry, reached
 * only when first needed. A pull by digest of an image whose every blob is stored therefore
 * works without the registry. */
struct meta_source {
    struct store *s;
    const struct image_ref *ref;
    const struct registry_opts *ro;
    struct registry *reg;
    const struct pull_peers *peers;
};

/* A small blob (manifest, config) from peers, checked against its digest and kept. */
static int meta_peers(struct meta_source *m, const uint8_t digest[DIGEST_LEN], uint64_t max,
                      struct buf *body)
{
    uint8_t got[DIGEST_LEN];
    if (!m->peers || !m->peers->get_blob)
        return AFSP_E_NOTFOUND;
    body->len = 0;
    int rc = m->peers->get_blob(m->peers->arg, digest, max, body);
    if (rc == 0) {
        sha256_buf(body->p, body->len, got);
        if (memcmp(got, digest, DIGEST_LEN))
            rc = err_set(AFSP_E_DIGEST, "a blob from a peer");
    }
    if (rc < 0)
        body->len = 0;
    return rc;
}

static int meta_registry(struct meta_source *m, struct registry **out)
{
    int rc = 0;
    if (!m->reg)
        rc = registry_new(&m->reg, m->ref, m->ro);
    *out = m->reg;
    return rc;
}

/* reference: a tag or "sha256:...". On success *ctype is NULL when the bytes came from the
 * store (manifest_parse then goes by the body). */
static int meta_manifest(struct meta_source *m, const char *reference, struct buf *body,
                         char **ctype, uint8_t digest[DIGEST_LEN])
{
    struct registry *reg;
    int rc;
    if (digest_parse(reference, digest) == 0 &&
        (store_small_get(m->s, digest, body) == 0 ||
         meta_peers(m, digest, MANIFEST_MAX_BYTES, body) == 0)) {
        *ctype = NULL;
        return 0;
    }
    if ((rc = meta_registry(m, &reg)) < 0)
        return rc;
    return registry_get_manifest(reg, reference, body, ctype, digest);
}

static int meta_config(struct meta_source *m, const uint8_t digest[DIGEST_LEN], struct buf *body)
{
    struct registry *reg;
    int rc;
    if (store_small_get(m->s, digest, body) == 0 ||
        meta_peers(m, digest, CONFIG_MAX_BYTES, body) == 0)
        return 0;
    if ((rc = meta_registry(m, &reg)) < 0)
        return rc;
    return registry_get_small_blob(reg, digest, CONFIG_MAX_BYTES, body);
}

/* A layer from peers: their index, checked against the descriptor, makes it a partial layer
 * (unless the store has one already), then every missing chunk, checked as it comes. On a
 * failure the chunks that arrived stay, and the caller goes to the registry. */
static int layer_from_peers(struct store *s, const struct pull_peers *p, const struct descriptor *d,
                            uint64_t resv_id)
{
    struct buf ix = {0};
    struct store_fetch *f = NULL;
    uint8_t from[STORE_ID_LEN];
    char dg[DIGEST_STR_LEN + 1];
    int rc = store_fetch_open(s, d->digest, &f);
    if (rc == AFSP_E_NOTFOUND && (rc = p->get_index(p->arg, d->digest, &ix, from)) == 0)
        rc = store_fetch_new(s, d->digest, d->media_type, d->size, ix.p, ix.len, from, &f);
    if (rc == 0 && store_fetch_missing(f))
        rc = p->get_chunks(p->arg, f);
    if (f) {
        int frc = store_fetch_finish(f, resv_id);
        if (rc == 0)
            rc = frc;
    }
    if (rc < 0 && rc != AFSP_E_NOTFOUND)
        log_warn("layer %s from peers: %s; trying the registry", digest_fmt(d->digest, dg),
                 err_msg(rc));
    store_fetch_free(f);
    buf_release(&ix);
    return rc;
}

/* Chunk bytes from a range of the blob, in order: the chunks the layer lacks are checked and
 * written, the others skipped. */
struct range_sink {
    struct store_fetch *f;
    uint32_t i;
    uint64_t pos;
    struct store_chunk_in w;
};

static int range_data(void *arg, const uint8_t *p, size_t n)
{
    struct range_sink *r = arg;
    while (n) {
        uint64_t off;
        uint32_t len;
        int rc = 0;
        if (r->i >= store_fetch_nchunks(r->f))
            return err_set(AFSP_E_SIZE, "more bytes than the layer has");
        store_fetch_chunk(r->f, r->i, &off, &len);
        bool want = !store_fetch_has(r->f, r->i);
        if (r->pos == off && want)
            store_fetch_chunk_begin(r->f, r->i, &r->w);
        size_t k = (size_t)MIN((uint64_t)n, off + len - r->pos);
        if (want && (rc = store_fetch_chunk_data(r->f, &r->w, p, k)) < 0)
            return rc;
        r->pos += k;
        p += k;
        n -= k;
        if (r->pos == off + len) {
            if (want && (rc = store_fetch_chunk_end(r->f, &r->w)) < 0)
                return rc;
            r->i++;
        }
    }
    return 0;
}

static int fetch_range(struct store_fetch *f, struct registry *reg, uint32_t first, uint32_t last)
{
    uint64_t a, b, size;
    uint32_t len;
    while (first <= last && store_fetch_has(f, first))
        first++;
    while (last > first && store_fetch_has(f, last))
        last--;
    if (first > last)
        return 0;
    store_fetch_chunk(f, first, &a, &len);
    store_fetch_chunk(f, last, &b, &len);
    b += len;
    store_fetch_chunk(f, store_fetch_nchunks(f) - 1, &size, &len);
    size += len;
    struct range_sink r = {.f = f, .i = first, .pos = a};
    int rc = registry_get_blob_range(reg, store_fetch_digest(f), size, a, b, range_data, &r);
    store_fetch_chunk_drop(&r.w);
    return rc;
}

int store_fetch_registry(struct store_fetch *f, const char *refstr, const struct pull_opts *opts,
                         uint32_t first, uint32_t last)
{
    struct image_ref ref = {0};
    struct registry_opts ro = {0};
    struct registry *reg = NULL;
    int rc;
    if ((rc = ref_parse(refstr, &ref)) < 0)
        return rc;
    ro.insecure_hosts = opts ? opts->insecure_hosts : NULL;
    ro.docker_config = opts ? opts->docker_config : NULL;
    ro.max_rate = opts ? opts->registry_rate : 0;
    if ((rc = registry_new(&reg, &ref, &ro)) == 0)
        rc = fetch_range(f, reg, first, last);
    if (opts && opts->registry_bytes)
        *opts->registry_bytes += registry_received(reg);
    registry_free(reg);
    ref_release(&ref);
    return rc;
}

/* A layer's index from peers makes it a partial layer, with no chunk yet. */
static int layer_lazy(struct store *s, const struct pull_peers *p, const struct descriptor *d)
{
    struct buf ix = {0};
    struct store_fetch *f = NULL;
    uint8_t from[STORE_ID_LEN];
    int rc = p->get_index(p->arg, d->digest, &ix, from);
    if (rc == 0)
        rc = store_fetch_new(s, d->digest, d->media_type, d->size, ix.p, ix.len, from, &f);
    store_fetch_free(f);
    buf_release(&ix);
    return rc;
}

/* The layers a pull asks of its peers, several at once: what each ends with (rc) and whether
 * it was asked (the serial pass then goes on from where its peers left it). */
struct peers_batch {
    struct store *s;
    const struct pull_peers *p;
    const struct descriptor *layers;
    size_t n;
    bool lazy;
    uint64_t resv_id;
    int *rc;
    bool *asked;
    pthread_mutex_t mu;
    size_t next;
};

static void *peers_batch_main(void *arg)
{
    struct peers_batch *b = arg;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        size_t i = b->next;
        while (i < b->n && !b->asked[i])
            i++;
        b->next = i + 1;
        pthread_mutex_unlock(&b->mu);
        if (i >= b->n)
            return NULL;
        b->rc[i] = b->lazy ? layer_lazy(b->s, b->p, &b->layers[i])
                           : layer_from_peers(b->s, b->p, &b->layers[i], b->resv_id);
    }
}

/* Runs the layers marked asked through the peers (lazily: their indexes only) on up to
 * p->layers_at_once threads; rc[i] gets each one's result. With one thread (or none could be
 * started) the calling thread does them all, in order. */
static void peers_batch_run(struct peers_batch *b)
{
    pthread_t th[PULL_LAYERS_AT_ONCE];
    size_t want = 0, nth = 0;
    for (size_t i = 0; i < b->n; i++)
        want += b->asked[i];
    want = MIN(want, MIN((size_t)b->p->layers_at_once, (size_t)PULL_LAYERS_AT_ONCE));
    pthread_mutex_init(&b->mu, NULL);
    for (; want > 1 && nth < want; nth++)
        if (pthread_create(&th[nth], NULL, peers_batch_main, b) != 0)
            break;
    if (nth == 0)
        peers_batch_main(b);
    for (size_t i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&b->mu);
}

/* A layer whole from the registry: the feed of its ingest. */
struct registry_src {
    struct registry *reg;
    const struct descriptor *d;
};

static int feed_registry(void *src, struct ingest *in)
{
    struct registry_src *r = src;
    return registry_get_blob(r->reg, r->d->digest, r->d->size, ingest_data, in);
}

/* A layer's share of the pull's progress (an ingest_progress_cb). */
struct layer_progress {
    const struct pull_opts *opts;
    struct pull_progress prog;
    uint64_t base_done;
};

static void layer_progress(void *arg, uint64_t received)
{
    struct layer_progress *lp = arg;
    lp->prog.done = lp->base_done + received;
    lp->opts->progress(lp->opts->progress_arg, &lp->prog);
}

/* Layer d (the i-th) from the registry: a partial layer's missing chunks by range, else the
 * whole blob through the streaming pass. */
static int pull_layer_registry(struct store *s, struct meta_source *ms, const struct descriptor *d,
                               uint64_t resv_id, const struct pull_opts *opts,
                               struct pull_progress prog, uint64_t done, size_t i)
{
    struct layer_progress lp = {.opts = opts, .prog = prog, .base_done = done};
    struct registry *reg;
    struct store_fetch *f;
    char dg[DIGEST_STR_LEN + 1];
    int rc;
    if ((rc = meta_registry(ms, &reg)) < 0)
        return rc;
    if (store_fetch_open(s, d->digest, &f) == 0) {
        /* A partial layer: the chunks it lacks, by range. */
        rc = fetch_range(f, reg, 0, store_fetch_nchunks(f) - 1);
        int frc = store_fetch_finish(f, resv_id);
        store_fetch_free(f);
        if ((rc = rc ? rc : frc) == 0)
            return 0;
        if (rc != AFSP_E_DIGEST)
            return err_ctx(rc, "layer %.19s…", digest_fmt(d->digest, dg));
        /* its index does not match the registry's blob: replaced by a whole download */
    }
    struct registry_src src = {reg, d};
    lp.prog.layer = i;
    rc = ingest_layer(s, feed_registry, &src, d, resv_id, ingest_allowance(d->size),
                      opts && opts->progress ? layer_progress : NULL, &lp);
    return rc < 0 ? err_ctx(rc, "layer %.19s…", digest_fmt(d->digest, dg)) : 0;
}

/* A layer whole from another node's download as it runs (the relay, docs/swarm.md): its bytes
 * in order, through the streaming pass, which checks them against the digest as it would a
 * registry's. When that node's download fails this pull, the claim is asked again: another
 * node's download is read from where the pull is, or (a takeover, or no claim) the registry
 * gives the rest by a Range request. Every STREAM_CHECK bytes the claim is asked again too:
 * once the holder has the layer whole, a whole pull reads on from its source (every whole
 * pull is a reader of the relay chain); a lazy one (the standby of lazy pulls, the others
 * waiting) makes the holder's index and the chunks read so far a partial layer, and the rest
 * comes from the swarm like any waiter's (reading on from the holder alone would take its
 * uplink from them). */
#define STREAM_PIECE (1u << 20)
#define STREAM_CHECK (8u << 20)
/* A source that sent nothing for this long (busy answers, each after at most NODE_PARK_MAX_MS,
 * a moment apart) is given up: the claim is asked again */
#define STREAM_QUIET_NS (10ull * 1000000000)
#define STREAM_BACKOFF_MS 20
/* The whole relay may take what a node waits on another's claim (node/claim.c's claim_wait:
 * 30 s, and a second per 4 MiB of the layer); then the rest comes from the registry by Range:
 * a claimant that dribbles its download delays the standby, it does not stop it */
#define STREAM_DEADLINE_NS(size) ((30 + (size) / (4u << 20)) * 1000000000ull)
#define STREAM_ASKS_MAX 8 /* claims asked again by one pull before the registry */

struct stream_src {
    const struct pull_peers *p;
    struct meta_source *ms;
    const struct descriptor *d;
    struct pull_src src;
    bool claimed, registry, finished;
    unsigned whole;   /* PULL_CLAIM_WHOLE: the pull wants the layer whole (it reads on) */
    uint64_t pos;     /* bytes of the blob given to the pass */
    uint64_t checked; /* pos when the claim was last asked */
    uint64_t resv_id;
    struct ingest *in;
};

static int stream_data(void *arg, const uint8_t *p, size_t n)
{
    struct stream_src *st = arg;
    int rc = ingest_data(st->in, p, n);
    st->pos += rc == 0 ? n : 0;
    return rc;
}

static int stream_to_partial(struct stream_src *st);

/* The source failed: the claim again, avoiding it. */
static int stream_reask(struct stream_src *st, unsigned *asks)
{
    char dg[DIGEST_STR_LEN + 1];
    struct pull_src next;
    bool claimed = false;
    int rc = ++*asks > STREAM_ASKS_MAX
                 ? 0
                 : st->p->claim(st->p->arg, st->d->digest, st->d->size, &st->src,
                                PULL_CLAIM_FAILED | st->whole, &claimed, &next);
    if (rc == 1) {
        st->src = next;
        return 0;
    }
    if (rc == -EAGAIN) { /* its holder has it whole now: on as a partial layer, from the swarm */
        st->finished = true;
        stream_to_partial(st);
        return -EAGAIN;
    }
    if (rc < 0)
        return rc;
    st->claimed = claimed;
    st->registry = true;
    log_info("event=relay_resume layer=%.19s from=%llu claimed=%d", digest_fmt(st->d->digest, dg),
             (unsigned long long)st->pos, claimed);
    return 0;
}

/* The holder has the layer whole: its index from peers makes the layer a partial one, and the
 * chunks this pass has written so far (this process's download of it) are checked against it
 * and kept. Returns 0 or a code (the caller goes on without them). */
static int stream_to_partial(struct stream_src *st)
{
    struct store *s = st->ms->s;
    struct buf ix = {0}, chunk = {0};
    struct store_fetch *f = NULL;
    struct store_dl *dl = NULL;
    struct store_chunk_in w = {0};
    uint8_t from[STORE_ID_LEN];
    uint64_t written = 0, size, off;
    uint32_t len, kept = 0;
    int rc = st->p->get_index(st->p->arg, st->d->digest, &ix, from);
    if (rc == 0)
        rc = store_fetch_new(s, st->d->digest, st->d->media_type, st->d->size, ix.p, ix.len, from,
                             &f);
    if (rc == 0 && store_dl_open(s, st->d->digest, &dl) == 0)
        store_dl_state(dl, &written, &size);
    for (uint32_t i = 0; rc == 0 && dl && i < store_fetch_nchunks(f); i++) {
        store_fetch_chunk(f, i, &off, &len);
        if (off + len > written)
            break;
        if (store_fetch_has(f, i))
            continue;
        chunk.len = 0;
        if ((rc = buf_reserve(&chunk, len)) < 0 || (rc = store_dl_read(dl, off, chunk.p, len)) < 0)
            break;
        store_fetch_chunk_begin(f, i, &w);
        /* a chunk that fails its check is left to the swarm; the others are kept */
        if (store_fetch_chunk_data(f, &w, chunk.p, len) < 0)
            store_fetch_chunk_drop(&w);
        else if (store_fetch_chunk_end(f, &w) == 0) /* which frees it either way */
            kept++;
    }
    if (f && rc == 0)
        rc = store_fetch_flush(f, st->resv_id);
    log_info("event=relay_to_partial layer=%.19s read=%llu chunks_kept=%u rc=%d",
             digest_fmt(st->d->digest, (char[DIGEST_STR_LEN + 1]){0}), (unsigned long long)st->pos,
             kept, rc);
    store_dl_close(dl);
    store_fetch_free(f);
    buf_release(&ix);
    buf_release(&chunk);
    return rc;
}

/* Every STREAM_CHECK bytes: whether this node is still the standby of a download under way.
 * Returns 0 (read on, perhaps from elsewhere), -EAGAIN (the holder has it whole: st->finished),
 * or a code. */
static int stream_check(struct stream_src *st)
{
    struct pull_src next;
    bool claimed = false;
    st->checked = st->pos;
    int rc =
        st->p->claim(st->p->arg, st->d->digest, st->d->size, &st->src, st->whole, &claimed, &next);
    if (rc == 1) {
        st->src = next;
        return 0;
    }
    if (rc == -EAGAIN) {
        st->finished = true;
        stream_to_partial(st);
        return -EAGAIN; /* the pass ends here; the pull goes on from the partial layer */
    }
    if (rc ==
        0) { /* the claim came to this node (the holder stopped): the rest from the registry */
        st->claimed = claimed;
        st->registry = true;
    }
    return rc;
}

static int feed_stream(void *arg, struct ingest *in)
{
    struct stream_src *st = arg;
    struct buf b = {0};
    unsigned busy = 0, asks = 0;
    uint64_t start = time_mono_ns(), progress = start;
    int rc = 0;
    char dg[DIGEST_STR_LEN + 1];
    struct pull_src fresh = st->src; /* the source until its first byte */
    st->in = in;
    while (rc == 0 && st->pos < st->d->size) {
        if (!st->registry && time_mono_ns() - start > STREAM_DEADLINE_NS(st->d->size)) {
            log_warn("layer %.19s: the download relayed from another node has taken %llu s; "
                     "the rest from the registry",
                     digest_fmt(st->d->digest, dg),
                     (unsigned long long)((time_mono_ns() - start) / 1000000000));
            st->registry = true;
        }
        if (st->registry) {
            struct registry *reg;
            if ((rc = meta_registry(st->ms, &reg)) == 0)
                rc = registry_get_blob_range(reg, st->d->digest, st->d->size, st->pos, st->d->size,
                                             stream_data, st);
            break;
        }
        b.len = 0;
        uint32_t len = (uint32_t)MIN((uint64_t)STREAM_PIECE, st->d->size - st->pos);
        rc = st->p->read_src(st->p->arg, &st->src, st->d->digest, st->d->size, st->pos, len, &b);
        if (rc == 0 && b.len == len) {
            busy = 0;
            progress = time_mono_ns();
            memset(&fresh, 0, sizeof fresh); /* this source has sent bytes */
            rc = stream_data(st, b.p, b.len);
            if (rc == 0 && st->pos < st->d->size && st->pos - st->checked >= STREAM_CHECK)
                rc = stream_check(st);
        } else if ((rc == -EBUSY ||
                    (rc == AFSP_E_NOTFOUND && !memcmp(&st->src, &fresh, sizeof fresh))) &&
                   time_mono_ns() - progress < STREAM_QUIET_NS) {
            /* not there yet (or the source's room is taken; or, before its first byte, the
             * holder has its claim but has not begun its download): again in a moment */
            struct timespec ts = {0, (long)MIN(++busy * STREAM_BACKOFF_MS, 500) * 1000000};
            nanosleep(&ts, NULL);
            rc = 0;
        } else {
            busy = 0;
            progress = time_mono_ns();
            rc = stream_reask(st, &asks);
            fresh = st->src; /* a new source (or the same): its download may not have begun */
        }
    }
    buf_release(&b);
    return rc;
}

/* Returns 0 (the layer is whole), 1 (the holder had it whole first: the layer is partial now,
 * with the chunks read so far), or a code. */
static int pull_layer_stream(struct store *s, struct meta_source *ms, const struct descriptor *d,
                             uint64_t resv_id, const struct pull_opts *opts,
                             struct pull_progress prog, uint64_t done, size_t i,
                             const struct pull_src *src, bool *claimed)
{
    struct layer_progress lp = {.opts = opts, .prog = prog, .base_done = done};
    struct stream_src st = {.p = ms->peers,
                            .ms = ms,
                            .d = d,
                            .src = *src,
                            .resv_id = resv_id,
                            .whole = opts->lazy ? 0 : PULL_CLAIM_WHOLE};
    char dg[DIGEST_STR_LEN + 1];
    lp.prog.layer = i;
    int rc = ingest_layer(s, feed_stream, &st, d, resv_id, ingest_allowance(d->size),
                          opts->progress ? layer_progress : NULL, &lp);
    *claimed = st.claimed;
    if (st.finished)
        return 1;
    if (rc < 0)
        log_warn("layer %s from another node's download: %s", digest_fmt(d->digest, dg),
                 err_msg(rc));
    return rc;
}

/* Builds the image record kept in DB_IMAGES. */
static char *image_json(const char *ref, const uint8_t mdigest[DIGEST_LEN], const char *platform,
                        const struct manifest *m)
{
    char dg[DIGEST_STR_LEN + 1];
    json_t *layers = json_array();
    for (size_t i = 0; i < m->nlayers; i++)
        json_array_append_new(layers, json_pack("{s:s, s:I, s:s}", "digest",
                                                digest_fmt(m->layers[i].digest, dg), "size",
                                                (json_int_t)m->layers[i].size, "mediaType",
                                                m->layers[i].media_type));
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I}", "ref", ref, "manifest",
                          digest_fmt(mdigest, dg), "platform", platform, "config",
                          digest_fmt(m->config.digest, (char[DIGEST_STR_LEN + 1]){0}), "layers",
                          layers, "pulled", (json_int_t)time_now_ns());
    char *out = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return out;
}

int store_pull(struct store *s, const char *refstr, const struct pull_opts *opts,
               uint8_t digest_out[DIGEST_LEN])
{
    struct image_ref ref = {0};
    struct registry_opts ro = {0};
    struct meta_source ms = {s, &ref, &ro, NULL, opts ? opts->peers : NULL};
    struct buf body = {0}, cfg = {0};
    struct manifest m = {0}, idx = {0};
    struct platform want;
    char *ctype = NULL, *canon = NULL, *json = NULL, pf[100] = "";
    uint8_t mdigest[DIGEST_LEN];
    uint8_t(*pin)[DIGEST_LEN] = NULL;
    uint64_t resv_id = 0, need = 0, total = 0;
    int have_resv = 0, rc, *prc = NULL;
    bool *asked = NULL;

    if ((rc = ref_parse(refstr, &ref)) < 0)
        return rc;
    if (opts && opts->platform) {
        if ((rc = platform_parse(opts->platform, &want)) < 0)
            goto out;
    } else {
        platform_host(&want);
    }
    ro.insecure_hosts = opts ? opts->insecure_hosts : NULL;
    ro.docker_config = opts ? opts->docker_config : NULL;
    ro.max_rate = opts ? opts->registry_rate : 0;
    if ((rc = meta_manifest(&ms, ref.digest ? ref.digest : ref.tag, &body, &ctype, mdigest)) < 0)
        goto out;
    if ((rc = manifest_parse(body.p, body.len, ctype, &m)) < 0)
        goto out;
    if (m.kind == MANIFEST_INDEX) {
        char dg[DIGEST_STR_LEN + 1];
        int e = manifest_choose(&m, &want);
        if (e < 0) {
            rc = err_set(e, "%s", platform_fmt(&want, pf));
            goto out;
        }
        if ((rc = store_small_put(s, mdigest, body.p, body.len)) < 0)
            goto out;
        idx = m;
        memset(&m, 0, sizeof m);
        body.len = 0;
        free(ctype);
        ctype = NULL;
        if ((rc = meta_manifest(&ms, digest_fmt(idx.entries[e].digest, dg), &body, &ctype,
                                mdigest)) < 0)
            goto out;
        if ((rc = manifest_parse(body.p, body.len, ctype, &m)) < 0)
            goto out;
        if (m.kind != MANIFEST_IMAGE) {
            rc = err_set(AFSP_E_FORMAT, "an index entry is not an image manifest");
            goto out;
        }
    }
    platform_fmt(&want, pf);
    if ((rc = meta_config(&ms, m.config.digest, &cfg)) < 0) {
        err_ctx(rc, "config");
        goto out;
    }
    /* The config names the real platform when we pulled a plain manifest. */
    if ((rc = config_platform(cfg.p, cfg.len, pf, sizeof pf)) < 0)
        goto out;
    if ((rc = store_small_put(s, m.config.digest, cfg.p, cfg.len)) < 0 ||
        (rc = store_small_put(s, mdigest, body.p, body.len)) < 0)
        goto out;

    pin = calloc(m.nlayers ? m.nlayers : 1, DIGEST_LEN);
    if (!pin) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < m.nlayers; i++) {
        struct layer_rec r;
        memcpy(pin[i], m.layers[i].digest, DIGEST_LEN);
        if (store_layer_get(s, m.layers[i].digest, &r) == 0 && (r.flags & LAYER_COMPLETE))
            continue;
        need = add_sat(need, ingest_allowance(m.layers[i].size));
        total = add_sat(total, m.layers[i].size);
    }
    /* The peers first, several layers at once. Lazily: a layer some peer has an index of is
     * added as a partial layer (its chunks come when read); the others are pulled whole, below.
     * Whole: each layer the store lacks from the peers; what they could not give comes below
     * (the claim, a download to read, the registry). */
    prc = calloc(m.nlayers ? m.nlayers : 1, sizeof *prc);
    asked = calloc(m.nlayers ? m.nlayers : 1, sizeof *asked);
    if (!prc || !asked) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; ms.peers && i < m.nlayers; i++) {
        struct layer_rec r;
        int g = store_layer_get(s, m.layers[i].digest, &r);
        asked[i] = opts->lazy ? g < 0 : g < 0 || !(r.flags & LAYER_COMPLETE);
        for (size_t j = 0; asked[i] && j < i; j++) /* a layer named twice: asked once */
            asked[i] = memcmp(m.layers[j].digest, m.layers[i].digest, DIGEST_LEN) != 0;
    }
    struct peers_batch pb = {.s = s,
                             .p = ms.peers,
                             .layers = m.layers,
                             .n = m.nlayers,
                             .lazy = opts && opts->lazy,
                             .rc = prc,
                             .asked = asked};
    if (opts && opts->lazy && ms.peers)
        peers_batch_run(&pb);
    for (size_t i = 0; opts && opts->lazy && ms.peers && i < m.nlayers; i++) {
        struct layer_rec r;
        const struct descriptor *d = &m.layers[i];
        if (asked[i] ? prc[i] < 0
                     : store_layer_get(s, d->digest, &r) < 0 || (r.flags & LAYER_COMPLETE))
            continue;          /* not from the peers, or whole (not counted above) */
        if (need < UINT64_MAX) /* past 2^64 it stays too big: store_reserve refuses it */
            need -= MIN(need, ingest_allowance(d->size));
        if (total < UINT64_MAX)
            total -= MIN(total, d->size);
    }
    if (need) {
        if ((rc = store_reserve(s, (const uint8_t(*)[DIGEST_LEN])pin, m.nlayers, need, &resv_id)) <
            0)
            goto out;
        have_resv = 1;
    }
    if (ms.peers && !opts->lazy) {
        pb.resv_id = resv_id;
        peers_batch_run(&pb);
    }
    struct pull_progress prog = {"layer", 0, m.nlayers, 0, total};
    uint64_t done = 0;
    for (size_t i = 0; i < m.nlayers; i++) {
        struct layer_rec r;
        const struct descriptor *d = &m.layers[i];
        if (store_layer_get(s, d->digest, &r) == 0 &&
            ((r.flags & LAYER_COMPLETE) || (opts && opts->lazy)))
            continue;
        if (ms.peers &&
            (rc = asked[i] && !opts->lazy ? prc[i] : layer_from_peers(s, ms.peers, d, resv_id)) ==
                0) {
            done += d->size;
            continue;
        }
        /* Before the registry: the layer's claim. A peer may have it by the time the wait
         * ends (the claimant finished): then the peers are asked again, a few times at most. */
        bool claimed = false;
        struct pull_src src;
        for (int tries = 0; ms.peers && ms.peers->claim && tries < 3; tries++) {
            if ((rc = ms.peers->claim(ms.peers->arg, d->digest, d->size, NULL,
                                      opts->lazy ? 0 : PULL_CLAIM_WHOLE, &claimed, &src)) !=
                -EAGAIN)
                break;
            if (opts->lazy && layer_lazy(s, ms.peers, d) == 0)
                break;
            if (!opts->lazy && layer_from_peers(s, ms.peers, d, resv_id) == 0)
                break;
        }
        if (rc == -EAGAIN && store_layer_get(s, d->digest, &r) == 0 &&
            ((r.flags & LAYER_COMPLETE) || opts->lazy)) {
            done += d->size;
            continue;
        }
        if (rc < 0 && rc != -EAGAIN)
            goto out;
        bool streamed = rc == 1, partial = false;
        if (streamed)
            rc = pull_layer_stream(s, &ms, d, resv_id, opts, prog, done, i, &src, &claimed);
        if (rc == 1) { /* a partial layer now: lazily that is all; else the rest from the swarm */
            partial = true;
            rc = opts->lazy && store_layer_get(s, d->digest, &r) == 0
                     ? 0
                     : layer_from_peers(s, ms.peers, d, resv_id);
        }
        /* a stream that failed its digest (a node that lied, or relayed a registry's bad
         * bytes): the registry, whole; a partial layer the peers could not fill: by Range */
        if (!streamed || rc == AFSP_E_DIGEST || rc == AFSP_E_SIZE || (partial && rc < 0))
            rc = pull_layer_registry(s, &ms, d, resv_id, opts, prog, done, i);
        if (claimed || streamed) /* the claim, or the standby, ends */
            ms.peers->claim_end(ms.peers->arg, d->digest, rc == 0);
        if (rc < 0)
            goto out;
        done += d->size;
    }
    if (opts && opts->progress) {
        prog.phase = "done";
        prog.done = total;
        opts->progress(opts->progress_arg, &prog);
    }
    store_touch(s, (const uint8_t(*)[DIGEST_LEN])pin, m.nlayers, true);
    canon = ref_str(&ref);
    json = canon ? image_json(canon, mdigest, pf, &m) : NULL;
    if (!json) {
        rc = -ENOMEM;
        goto out;
    }
    if (!(opts && opts->no_record) && (rc = store_image_put(s, canon, json)) < 0)
        goto out;
    if (digest_out)
        memcpy(digest_out, mdigest, DIGEST_LEN);
    rc = 0;
out:
    if (have_resv)
        store_unreserve(s, resv_id);
    free(pin);
    free(prc);
    free(asked);
    free(canon);
    free(json);
    free(ctype);
    buf_release(&body);
    buf_release(&cfg);
    manifest_release(&m);
    manifest_release(&idx);
    if (opts && opts->registry_bytes)
        *opts->registry_bytes += registry_received(ms.reg);
    registry_free(ms.reg);
    ref_release(&ref);
    return rc;
}
