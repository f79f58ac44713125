/*
 * trace.c - start traces (docs/format.md): which chunks of an image's layers the first cold
 * start of the image read, in order, kept under a key derived from the manifest digest so that
 * the cluster finds it through the DHT like a layer, and later cold starts fetch those chunks
 * before they are asked for. A trace is a hint, not a fact the digest proves: it is bounded
 * (STORE_TRACE_MAX entries, each chunk once) and a reader checks each entry against the image's
 * layers before it fetches anything, so the worst a false one can do is fetch chunks of the
 * image that nobody reads.
 *
 * Owns DB_TRACES. Must not: trust an entry it has not bounded.
 */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TRACE_MAGIC "AFSPTRC\x01"
#define TRACE_HDR (8 + DIGEST_LEN + 4)
#define TRACE_ENT 8

void store_trace_key(const uint8_t manifest[static DIGEST_LEN], uint8_t key[static DIGEST_LEN])
{
    static const char tag[] = "afsp start trace v1";
    uint8_t in[sizeof tag + DIGEST_LEN];
    memcpy(in, tag, sizeof tag);
    memcpy(in + sizeof tag, manifest, DIGEST_LEN);
    sha256_buf(in, sizeof in, key);
}

int store_trace_encode(const uint8_t manifest[static DIGEST_LEN], const struct store_trace_ent *e,
                       size_t n, struct buf *out)
{
    if (n > STORE_TRACE_MAX)
        n = STORE_TRACE_MAX;
    uint8_t hdr[TRACE_HDR];
    memcpy(hdr, TRACE_MAGIC, 8);
    memcpy(hdr + 8, manifest, DIGEST_LEN);
    put_le32(hdr + 8 + DIGEST_LEN, (uint32_t)n);
    int rc = buf_append(out, hdr, sizeof hdr);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint8_t r[TRACE_ENT];
        put_le32(r, e[i].layer);
        put_le32(r + 4, e[i].chunk);
        rc = buf_append(out, r, sizeof r);
    }
    return rc;
}

static int ent_cmp(const void *a, const void *b)
{
    const struct store_trace_ent *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

int store_trace_decode(const uint8_t *p, size_t len, uint8_t manifest[static DIGEST_LEN],
                       struct store_trace_ent **out, size_t *nout)
{
    if (len < TRACE_HDR || memcmp(p, TRACE_MAGIC, 8))
        return err_set(AFSP_E_FORMAT, "start trace: bad header");
    uint32_t n = get_le32(p + 8 + DIGEST_LEN);
    if (n > STORE_TRACE_MAX || len != TRACE_HDR + (size_t)n * TRACE_ENT)
        return err_set(AFSP_E_FORMAT, "start trace: %u entries in %zu bytes", n, len);
    struct store_trace_ent *e = calloc(n ? n : 1, sizeof *e), *s = calloc(n ? n : 1, sizeof *s);
    if (!e || !s) {
        free(e);
        free(s);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = p + TRACE_HDR + (size_t)i * TRACE_ENT;
        e[i] = (struct store_trace_ent){get_le32(r), get_le32(r + 4)};
    }
    memcpy(s, e, n * sizeof *e);
    qsort(s, n, sizeof *s, ent_cmp);
    for (uint32_t i = 1; i < n; i++)
        if (!ent_cmp(&s[i - 1], &s[i])) {
            struct store_trace_ent d = s[i];
            free(e);
            free(s);
            return err_set(AFSP_E_FORMAT, "start trace: chunk %u of layer %u twice", d.chunk,
                           d.layer);
        }
    free(s);
    memcpy(manifest, p + 8, DIGEST_LEN);
    *out = e;
    *nout = n;
    return 0;
}

struct tput {
    uint8_t key[DIGEST_LEN];
    const uint8_t *p;
    size_t len;
    bool kept; /* one was there already */
    struct store *s;
};

static int tput_fn(MDB_txn *txn, void *arg)
{
    struct tput *a = arg;
    MDB_val v;
    if (db_get(txn, a->s->db.dbi[DB_TRACES], a->key, DIGEST_LEN, &v) == 0) {
        a->kept = true;
        return 0;
    }
    return db_put(txn, a->s->db.dbi[DB_TRACES], a->key, DIGEST_LEN, a->p, a->len);
}

int store_trace_put(struct store *s, const uint8_t *p, size_t len)
{
    uint8_t m[DIGEST_LEN];
    struct store_trace_ent *e;
    size_t n;
    int rc = store_trace_decode(p, len, m, &e, &n);
    if (rc < 0)
        return rc;
    free(e);
    struct tput a = {.p = p, .len = len, .s = s};
    store_trace_key(m, a.key);
    if ((rc = db_write(&s->db, tput_fn, &a)) < 0)
        return rc;
    return a.kept;
}

int store_trace_get(struct store *s, const uint8_t key[static DIGEST_LEN], struct buf *out)
{
    return db_copy(&s->db, s->db.dbi[DB_TRACES], key, DIGEST_LEN, out);
}

int store_traces_list(struct store *s, uint8_t (**keys)[DIGEST_LEN], size_t *n)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    size_t cap = 0, cnt = 0;
    uint8_t(*out)[DIGEST_LEN] = NULL;
    int rc = db_read_begin(&s->db, &txn);
    if (rc < 0)
        return rc;
    if (mdb_cursor_open(txn, s->db.dbi[DB_TRACES], &c)) {
        mdb_txn_abort(txn);
        return err_set(AFSP_E_STORE, "cannot list the start traces");
    }
    for (int r = mdb_cursor_get(c, &k, &v, MDB_FIRST); r == 0 && rc == 0;
         r = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != DIGEST_LEN)
            continue;
        if (cnt == cap) {
            size_t nc = cap ? 2 * cap : 16;
            void *q = realloc(out, nc * sizeof *out);
            if (!q) {
                rc = -ENOMEM;
                break;
            }
            out = q;
            cap = nc;
        }
        memcpy(out[cnt++], k.mv_data, DIGEST_LEN);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    if (rc < 0) {
        free(out);
        return rc;
    }
    *keys = out;
    *n = cnt;
    return 0;
}

int store_trace_fits(struct store *s, const uint8_t *p, size_t len,
                     const uint8_t manifest[static DIGEST_LEN], const uint8_t (*layers)[DIGEST_LEN],
                     size_t nlayers)
{
    uint8_t m[DIGEST_LEN];
    struct store_trace_ent *e;
    size_t n;
    int rc = store_trace_decode(p, len, m, &e, &n);
    if (rc < 0)
        return rc;
    if (memcmp(m, manifest, DIGEST_LEN))
        rc = err_set(AFSP_E_FORMAT, "start trace: of another image");
    uint32_t *nchunks = rc ? NULL : calloc(nlayers ? nlayers : 1, sizeof *nchunks);
    if (!rc && !nchunks)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < nlayers; i++) {
        struct layer_rec r;
        if ((rc = store_layer_get(s, layers[i], &r)) == 0)
            nchunks[i] = r.nchunks;
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (e[i].layer >= nlayers || e[i].chunk >= nchunks[e[i].layer])
            rc = err_set(AFSP_E_FORMAT, "start trace: chunk %u of layer %u: the image has none",
                         e[i].chunk, e[i].layer);
    free(nchunks);
    free(e);
    return rc;
}
