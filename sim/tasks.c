/*
 * tasks.c - tasks in the simulator: a pull or a mount's fetch, run as node/task.c's threads run
 * them, step by step: each step submits one job to the node's core (peers first), and the next
 * step comes when the job is handed back; what no peer had comes from the registry (a memstore
 * every node reaches), counted.
 *
 * Owns: the tasks' progress. Must not: block, or touch a node's core but through its calls.
 */
#include "nodes_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- tasks: a pull or a fetch, as node/task.c runs them ----------------------------------------
 * The simulator's manifest lists its layers: "MEMMAN01", u32 n, n times (digest, u32 nchunks,
 * u32 chunk_len). A task asks peers (a job) first and the registry after. */

static void job_submit(struct simn *s, struct stask *st, enum node_job_kind kind,
                       const uint8_t *digest)
{
    struct node_job *j = &st->job;
    memset(j, 0, sizeof *j);
    j->kind = kind;
    memcpy(j->digest, digest, DIGEST_LEN);
    j->task_arg = st;
    j->max = SIMN_MANIFEST_MAX;
    st->out.len = 0;
    j->out = &st->out;
    if (kind == NODE_JOB_CLAIM) {
        j->max = st->dl_size;
        j->relay = true;
        j->reading = st->streaming;
        j->avoid_src = st->streaming && !st->checking; /* the download it read failed it */
        j->whole = !st->t->lazy;
        j->src = st->src;
    }
    if (kind == NODE_JOB_BLOB && st->streaming) {
        j->has_src = true;
        j->src = st->src;
        j->off = st->pos;
        j->len = (uint32_t)MIN((uint64_t)SIMN_RELAY_PIECE, st->dl_size - st->pos);
        j->max = st->dl_size;
    }
    if (kind == NODE_JOB_CLAIM_END)
        j->whole = memstore_layer_complete(s->nodes[st->node]->ms, digest);
    j->owner = (uint64_t)(uintptr_t)st;
    if (kind == NODE_JOB_CHUNKS) {
        j->fetch = st->fetch;
        bool range = st->t->kind != NODE_TASK_PULL;
        j->first = range ? st->t->first : 0;
        j->last = range ? st->t->last : memstore_ops.fetch_nchunks(st->fetch) - 1;
    }
    node_job_submit(s->nodes[st->node]->n, j, s->now);
}

/* The registry fills chunks [first, last] that the fetch lacks (their bytes added to *bytes). */
static int registry_chunks(struct simn *s, void *fetch, const uint8_t *digest, uint32_t first,
                           uint32_t last, uint64_t *bytes)
{
    if (!memstore_layer_present(s->registry, digest))
        return AFSP_E_NOTFOUND;
    for (uint32_t i = first; i <= last; i++) {
        if (memstore_ops.fetch_has(fetch, i))
            continue;
        uint64_t off;
        uint32_t len;
        memstore_ops.fetch_chunk(fetch, i, &off, &len);
        void *rx, *rl;
        uint8_t *b = malloc(len);
        int rc = b ? memstore_ops.layer_open(s->registry, digest, &rl) : -ENOMEM;
        if (rc == 0) {
            rc = memstore_ops.layer_read(rl, off, b, len);
            memstore_ops.layer_close(s->registry, rl);
        }
        if (rc == 0 && (rc = memstore_ops.chunk_begin(fetch, i, &rx)) == 0) {
            uint64_t got;
            memstore_ops.chunk_data(fetch, rx, b, len);
            rc = memstore_ops.chunk_end(fetch, rx, &got);
        }
        free(b);
        if (rc < 0)
            return rc;
        s->registry_fetches++;
        s->registry_bytes += len;
        *bytes += len;
    }
    return 0;
}

static void task_finish(struct simn *s, struct stask *st, int rc)
{
    struct snode *sn = s->nodes[st->node];
    struct node_task *t = st->t;
    t->rc = rc;
    if (rc < 0)
        snprintf(t->msg, sizeof t->msg, "%s", err_str(rc));
    if (st->fetch)
        memstore_fetch_close(sn->ms, st->fetch);
    for (struct stask **pp = &s->tasks; *pp; pp = &(*pp)->next)
        if (*pp == st) {
            *pp = st->next;
            break;
        }
    buf_release(&st->out);
    free(st->layers);
    free(st);
    node_task_done(sn->n, t, s->now);
}

enum {
    T_START,
    T_MANIFEST,
    T_INDEX,
    T_CHUNKS,
    T_FETCH,
    T_CLAIM,
    T_DOWNLOAD,
    T_CLAIM_END,
    T_STREAM
};

/* A whole layer from the registry (its claim asked for, or given up on), from st->pos (what a
 * relay gave it already: a Range request): it shows in the store when its last byte has come,
 * at the registry's rate; meanwhile peers may read it (the relay). */
static void download_start(struct simn *s, struct stask *st)
{
    st->state = T_DOWNLOAD;
    st->downloading = true;
    st->dl_start = s->now;
    st->dl_base = st->pos;
    memstore_dl_set(s->nodes[st->node]->ms, st->layers[st->layer], st->dl_size, st->pos,
                    s->cfg.registry_rate ? s->cfg.registry_rate : st->dl_size * 1000);
    uint64_t rest = st->dl_size - st->pos;
    task_schedule_in(s, st, s->cfg.registry_rate ? rest * 1000 / s->cfg.registry_rate : 0);
}

/* The holder has the layer whole: its index (the registry's, in the simulator) makes it a
 * partial layer here, with the chunks read so far, as store_pull's stream_to_partial does. */
static void stream_to_partial(struct simn *s, struct stask *st)
{
    struct snode *sn = s->nodes[st->node];
    const uint8_t *d = st->layers[st->layer];
    struct buf reg = {0};
    uint32_t nc, cl;
    memstore_dl_end(sn->ms, d, -ECANCELED);
    if (memstore_ops.index(s->registry, d, &reg) == 0 &&
        memstore_index_decode(reg.p, reg.len, &nc, &cl) == 0 &&
        memstore_layer_add(sn->ms, d, nc, cl, false) == 0) {
        memstore_layer_index(sn->ms, d, NULL, false);
        for (uint32_t i = 0; (uint64_t)(i + 1) * cl <= st->pos && i < nc; i++)
            memstore_chunk_add(sn->ms, d, i);
        node_store_changed(sn->n, s->now);
    }
    buf_release(&reg);
    st->streaming = false;
    st->pos = 0;
    st->asks = 0;
}

/* The next piece of src's download (the relay), or the layer's claim again after too many busy
 * answers or a failure (src is avoided then), as store_pull's feed_stream does. */
static void stream_next(struct simn *s, struct stask *st, int rc)
{
    const uint8_t *d = st->layers[st->layer];
    bool not_yet = rc == -EBUSY || (rc == AFSP_E_NOTFOUND && !st->src_sent);
    if (rc == 0 || (not_yet && ++st->busy < SIMN_RELAY_BUSY_MAX)) {
        st->state = T_STREAM;
        job_submit(s, st, NODE_JOB_BLOB, d);
        return;
    }
    st->busy = 0;
    if (++st->asks > SIMN_RELAY_ASKS_MAX) {
        download_start(s, st); /* uncoordinated, from where it is */
        return;
    }
    st->state = T_CLAIM;
    job_submit(s, st, NODE_JOB_CLAIM, d);
}

/* A manifest's layers into st (0 or AFSP_E_FORMAT). */
static int manifest_parse(struct stask *st, const uint8_t *p, size_t n)
{
    if (n < 12 || memcmp(p, "MEMMAN01", 8))
        return AFSP_E_FORMAT;
    uint32_t k = get_le32(p + 8);
    if (k > 1024 || n != 12 + (size_t)k * (DIGEST_LEN + 8))
        return AFSP_E_FORMAT;
    if (!(st->layers = calloc(k + 1, DIGEST_LEN)))
        return -ENOMEM;
    for (uint32_t i = 0; i < k; i++)
        memcpy(st->layers[i], p + 12 + (size_t)i * (DIGEST_LEN + 8), DIGEST_LEN);
    st->nlayers = k;
    return 0;
}

void task_step(struct simn *s, struct stask *st)
{
    struct snode *sn = s->nodes[st->node];
    struct node_task *t = st->t;
    struct node_job *j = &st->job;
    struct buf reg = {0};
    int rc = 0;
    switch (st->state) {
    case T_START:
        if (t->kind != NODE_TASK_PULL) { /* a fetch; a verification: every chunk */
            if (!(st->fetch = memstore_fetch_open(sn->ms, t->layer))) {
                /* a verification of a pulled image: its layers are whole already */
                task_finish(s, st, t->kind == NODE_TASK_VERIFY ? 0 : AFSP_E_NOTFOUND);
                return;
            }
            if (t->kind == NODE_TASK_VERIFY) {
                t->first = 0;
                t->last = memstore_ops.fetch_nchunks(st->fetch) - 1;
            }
            st->state = T_FETCH;
            job_submit(s, st, NODE_JOB_CHUNKS, t->layer);
            return;
        }
        if (digest_parse(t->ref, t->digest) < 0) {
            task_finish(s, st, AFSP_E_REF);
            return;
        }
        if (memstore_ops.blob(sn->ms, t->digest, &st->out) == 0) {
            rc = manifest_parse(st, st->out.p, st->out.len);
            st->layer = 0;
            if (rc < 0) {
                task_finish(s, st, rc);
                return;
            }
            break; /* on to the layers */
        }
        st->state = T_MANIFEST;
        job_submit(s, st, NODE_JOB_BLOB, t->digest);
        return;
    case T_MANIFEST: {
        uint8_t d[DIGEST_LEN];
        struct buf *b = &st->out;
        if (j->rc == 0)
            sha256_buf(b->p, b->len, d);
        if (j->rc < 0 || memcmp(d, t->digest, DIGEST_LEN)) { /* from the registry, then */
            b = &reg;
            if (memstore_ops.blob(s->registry, t->digest, b) < 0) {
                task_finish(s, st, AFSP_E_NOTFOUND);
                return;
            }
            s->registry_fetches++;
            s->registry_bytes += b->len;
            t->registry_bytes += b->len;
        }
        rc = manifest_parse(st, b->p, b->len);
        if (rc == 0 && !memstore_blob_has(sn->ms, t->digest)) /* another pull may have */
            rc = memstore_blob_add(sn->ms, t->digest, b->p, b->len, true);
        buf_release(&reg);
        if (rc < 0) {
            task_finish(s, st, rc);
            return;
        }
        st->layer = 0;
        break;
    }
    case T_INDEX: { /* the answer to the index job of layer st->layer */
        uint32_t nc, cl;
        struct buf *b = &st->out;
        if (j->rc < 0 || memstore_index_decode(b->p, b->len, &nc, &cl) < 0) {
            /* no peer has it: the layer's claim, then a whole download (store_pull) */
            rc = memstore_ops.index(s->registry, st->layers[st->layer], &reg);
            if (rc == 0)
                rc = memstore_index_decode(reg.p, reg.len, &nc, &cl);
            buf_release(&reg);
            if (rc < 0) {
                task_finish(s, st, AFSP_E_NOTFOUND);
                return;
            }
            st->dl_size = (uint64_t)nc * cl;
            if (st->claims++ < 3) {
                st->state = T_CLAIM;
                job_submit(s, st, NODE_JOB_CLAIM, st->layers[st->layer]);
                return;
            }
            download_start(s, st);
            return;
        }
        rc = memstore_index_decode(b->p, b->len, &nc, &cl);
        if (rc == 0 && (rc = memstore_layer_add(sn->ms, st->layers[st->layer], nc, cl, false)) == 0)
            memstore_layer_index(sn->ms, st->layers[st->layer], b == &st->out ? j->from : NULL,
                                 false);
        else if (rc == -EEXIST)
            rc = 0; /* another pull added it meanwhile, and its index stays */
        buf_release(&reg);
        if (rc < 0) {
            task_finish(s, st, rc);
            return;
        }
        break;
    }
    case T_CLAIM:
        st->checking = false;
        if (j->rc == 0 && j->stream) { /* the standby, a reader, or a relay that failed */
            /* its download can be read by others from now on, as ingest's is */
            if (!st->streaming)
                memstore_dl_set(sn->ms, st->layers[st->layer], st->dl_size, st->pos, 0);
            st->src_sent = st->src_sent && !memcmp(st->src.id, j->src.id, DHT_ID_LEN);
            st->streaming = true;
            st->src = j->src;
            stream_next(s, st, 0);
            return;
        }
        if (j->rc == -EAGAIN && st->streaming) { /* the holder has it whole: a partial layer */
            stream_to_partial(s, st);
            break; /* on to its chunks, from the swarm */
        }
        if (j->rc == -EAGAIN) { /* a peer has it now */
            st->state = T_INDEX;
            job_submit(s, st, NODE_JOB_INDEX, st->layers[st->layer]);
            return;
        }
        if (j->rc < 0) {
            task_finish(s, st, j->rc);
            return;
        }
        st->claimed = j->claimed;
        download_start(s, st);
        return;
    case T_STREAM: /* a piece of src's download came, or not */
        if (j->rc == 0 && st->out.len) {
            st->busy = 0;
            st->src_sent = true;
            st->pos += st->out.len;
            memstore_dl_set(sn->ms, st->layers[st->layer], st->dl_size, st->pos, 0);
            if (st->pos < st->dl_size &&
                st->pos / SIMN_RELAY_CHECK != (st->pos - st->out.len) / SIMN_RELAY_CHECK) {
                st->state = T_CLAIM; /* still the standby of a download under way? */
                st->checking = true;
                job_submit(s, st, NODE_JOB_CLAIM, st->layers[st->layer]);
                return;
            }
            if (st->pos < st->dl_size) {
                stream_next(s, st, 0);
                return;
            }
        } else {
            stream_next(s, st, j->rc ? j->rc : AFSP_E_PROTO);
            return;
        }
        __attribute__((fallthrough)); /* its last byte came: as a download's */
    case T_DOWNLOAD: {                /* its last byte came */
        const uint8_t *d = st->layers[st->layer];
        if (st->downloading) {
            s->registry_fetches++;
            s->registry_bytes += st->dl_size - st->dl_base;
            t->registry_bytes += st->dl_size - st->dl_base;
        }
        st->downloading = false;
        bool streamed = st->streaming;
        st->streaming = false;
        st->pos = 0;
        st->asks = 0;
        uint32_t nc, cl;
        if ((rc = memstore_ops.index(s->registry, d, &reg)) == 0 &&
            (rc = memstore_index_decode(reg.p, reg.len, &nc, &cl)) == 0) {
            memstore_layer_drop(sn->ms, d); /* a partial layer another task added meanwhile */
            if ((rc = memstore_layer_add(sn->ms, d, nc, cl, true)) == 0)
                memstore_layer_index(sn->ms, d, NULL, false);
        }
        buf_release(&reg);
        memstore_dl_end(sn->ms, d, rc);
        node_store_changed(sn->n, s->now);
        if (st->claimed || streamed) { /* the claim, or the standby, ends */
            st->claimed = false;
            st->state = T_CLAIM_END;
            job_submit(s, st, NODE_JOB_CLAIM_END, d);
            return;
        }
        if (rc < 0) {
            task_finish(s, st, rc);
            return;
        }
        st->claims = 0;
        st->layer++;
        break;
    }
    case T_CLAIM_END:
        if (!memstore_layer_complete(sn->ms, st->layers[st->layer])) {
            task_finish(s, st, AFSP_E_STORE);
            return;
        }
        st->claims = 0;
        st->layer++;
        break;
    case T_CHUNKS:
        if (j->rc < 0)
            rc = registry_chunks(s, st->fetch, st->layers[st->layer], 0,
                                 memstore_ops.fetch_nchunks(st->fetch) - 1, &t->registry_bytes);
        memstore_fetch_close(sn->ms, st->fetch);
        st->fetch = NULL;
        if (rc < 0) {
            task_finish(s, st, rc);
            return;
        }
        st->layer++;
        break;
    case T_FETCH:
        if (j->rc < 0 && j->rc != -ECANCELED && t->ref) {
            rc = registry_chunks(s, st->fetch, t->layer, t->first, t->last, &t->registry_bytes);
            t->via_registry = rc == 0;
        } else {
            rc = j->rc;
        }
        t->completed = memstore_layer_complete(sn->ms, t->layer);
        task_finish(s, st, rc);
        return;
    }
    /* the next layer the store lacks: its index (a lazy pull stops there), then its chunks */
    for (; st->layer < st->nlayers; st->layer++) {
        const uint8_t *d = st->layers[st->layer];
        if (!memstore_layer_known(sn->ms, d)) {
            st->state = T_INDEX;
            job_submit(s, st, NODE_JOB_INDEX, d);
            return;
        }
        if (!t->lazy && !memstore_layer_complete(sn->ms, d)) {
            st->fetch = memstore_fetch_open(sn->ms, d);
            st->state = T_CHUNKS;
            job_submit(s, st, NODE_JOB_CHUNKS, d);
            return;
        }
    }
    task_finish(s, st, 0);
}
