/*
 * layers.c - layer records: committing a verified download, adding a partial layer and marking
 * its chunks present, access times (LRU order), and the listing of layers.
 *
 * Invariant (docs/store.md): a layer record exists only for a blob file that is complete on disk
 * (or, for a partial layer, a sparse file whose present chunks are): the file is written and
 * fdatasync'ed under DATA/tmp and renamed into DATA/blobs inside the write transaction that adds
 * the record, with the directory synced before the commit, so a crash leaves either nothing or
 * both (an orphaned file at worst, swept on the next open). A chunk is marked present only after
 * its bytes were checked and synced (fetch.c). Every record change accounts its bytes in the same
 * transaction (space.c).
 * Owns the layer tables (DB_LAYERS, DB_INDEX, DB_PRESENT, and DB_LRU's entries) and the place of
 * a blob file in DATA/blobs. Must not write a byte of a blob file it has not been handed checked
 * (fetch.c, ingest.c check).
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOUCH_EVERY_NS (60ull * 1000000000ull) /* access times are kept to the minute */

/* ---- layers -------------------------------------------------------------------------------- */

int store_layer_get(struct store *s, const uint8_t digest[static DIGEST_LEN], struct layer_rec *r)
{
    MDB_txn *txn;
    MDB_val v;
    int rc = db_read_begin(&s->db, &txn);
    if (rc < 0)
        return rc;
    rc = db_get(txn, s->db.dbi[DB_LAYERS], digest, DIGEST_LEN, &v);
    if (rc == 0)
        rc = layer_rec_decode(&v, r);
    mdb_txn_abort(txn);
    return rc;
}

/* fsync of a directory of the store, so that a rename in it survives a crash. */
static int fsync_dir(const struct store *s, const char *sub)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", s->dir, sub);
    return dir_sync(dir);
}

/* Adds layer digest inside txn: its record, index, chunk map and LRU entry, and its stored bytes
 * (complete: the blob and the index, every chunk present; else the index only, no chunk yet),
 * evicting least-recently-used layers, never this one, to make room. id: for a partial layer,
 * the node that sent the index; for a complete one, the digest of the peer's index it replaced
 * and that said the same (struct layer_rec index_alias); NULL: none. */
static int layer_insert(MDB_txn *txn, struct store *s, const uint8_t *digest,
                        const char *media_type, const struct layer_index *ix,
                        const struct buf *index_bytes, bool complete, const uint8_t *id,
                        struct evicted *ev)
{
    struct layer_rec r = {0};
    uint8_t rec[LAYER_REC_SIZE], key[40], pin[1][DIGEST_LEN];
    uint64_t freed = 0;
    int rc;

    r.flags = complete ? LAYER_COMPLETE | LAYER_INDEX_BUILT : 0; /* else the index is a peer's */
    r.format = ix->format;
    r.nchunks = ix->nchunks;
    r.nfiles = ix->nfiles;
    r.size = ix->blob_size;
    r.usize = ix->tar_size;
    r.stored = (complete ? ix->blob_size : 0) + index_bytes->len;
    r.last_access = time_now_ns();
    snprintf(r.media_type, sizeof r.media_type, "%s", media_type);
    sha256_buf(index_bytes->p, index_bytes->len, r.index_digest);
    if (id)
        memcpy(complete ? r.index_alias : r.index_from, id, DIGEST_LEN);
    memcpy(pin[0], digest, DIGEST_LEN);
    if ((rc = evict_until(txn, s, (const uint8_t(*)[DIGEST_LEN])pin, 1, r.stored, 0, ev, &freed)) <
        0)
        return rc;
    size_t bmlen = (r.nchunks + 7) / 8;
    uint8_t *bm = malloc(bmlen ? bmlen : 1);
    if (!bm)
        return -ENOMEM;
    memset(bm, complete ? 0xff : 0, bmlen);
    layer_rec_encode(&r, rec);
    lru_key(r.last_access, digest, key);
    rc = db_put(txn, s->db.dbi[DB_LAYERS], digest, DIGEST_LEN, rec, sizeof rec);
    if (rc == 0)
        rc = db_put(txn, s->db.dbi[DB_INDEX], digest, DIGEST_LEN, index_bytes->p, index_bytes->len);
    if (rc == 0)
        rc = db_put(txn, s->db.dbi[DB_PRESENT], digest, DIGEST_LEN, bm, bmlen);
    free(bm);
    if (rc == 0)
        rc = db_put(txn, s->db.dbi[DB_LRU], key, sizeof key, "", 0);
    if (rc == 0)
        rc = meta_put_u64(txn, s, "used", meta_u64(txn, s, "used") + r.stored);
    return rc;
}

struct commit_args {
    struct store *s;
    uint64_t id, resv_bytes;
    const uint8_t *digest;
    const char *media_type;
    const struct layer_index *ix;
    const struct buf *index_bytes;
    const char *tmp_path;
    struct evicted ev;
    int existed;
    bool judged, index_false;    /* it replaced a peer's index, which the blob's belies */
    uint8_t peer_ix[DIGEST_LEN]; /* that index's SHA-256 */
    uint8_t from[STORE_ID_LEN];  /* its sender (all zero: not known) */
    bool alias;                  /* it said the same: readers that opened it go on */
};

/* A partial layer's index (a peer's, rec) against the one its blob gave: false if it says
 * something else (index_same); if it says the same in other bytes, it becomes the new index's
 * alias. Only the blob's own index is kept and served: the peer's bytes may carry padding that
 * no file refers to. */
static int index_judge(MDB_txn *txn, struct commit_args *a, const struct layer_rec *rec)
{
    uint8_t mine[DIGEST_LEN];
    struct layer_index old;
    MDB_val v;
    int rc;
    a->judged = true;
    memcpy(a->peer_ix, rec->index_digest, DIGEST_LEN);
    memcpy(a->from, rec->index_from, STORE_ID_LEN);
    sha256_buf(a->index_bytes->p, a->index_bytes->len, mine);
    if (!memcmp(mine, rec->index_digest, DIGEST_LEN))
        return 0;
    if ((rc = db_get(txn, a->s->db.dbi[DB_INDEX], a->digest, DIGEST_LEN, &v)) < 0)
        return rc;
    /* It parsed when it came: only a malformed one is false. Another failure (memory, an index
     * version this build no longer reads) leaves it unjudged: the blob's index replaces it all
     * the same, with no alias, and nobody is blamed. */
    if ((rc = index_parse(v.mv_data, v.mv_size, &old)) < 0) {
        a->index_false = rc == AFSP_E_FORMAT;
        a->judged = a->index_false;
        return 0;
    }
    rc = index_same(&old, a->ix);
    index_release(&old);
    a->index_false = rc == 0;
    a->alias = rc == 1;
    a->judged = rc >= 0;
    return 0;
}

static int commit_fn(MDB_txn *txn, void *arg)
{
    struct commit_args *a = arg;
    struct store *s = a->s;
    uint8_t key[40], rkey[16];
    char path[PATH_MAX];
    MDB_val v;
    int rc;

    a->existed = 0;
    a->judged = a->index_false = a->alias = false;
    /* The reservation shrinks by what this layer was given, whatever happens next. */
    put_be64(rkey, (uint64_t)getpid());
    put_be64(rkey + 8, a->id);
    if (db_get(txn, s->db.dbi[DB_RESV], rkey, 16, &v) == 0 && v.mv_size == 16) {
        uint8_t val[16];
        uint64_t left = get_be64(v.mv_data);
        memcpy(val, v.mv_data, 16);
        put_be64(val, left > a->resv_bytes ? left - a->resv_bytes : 0);
        if ((rc = db_put(txn, s->db.dbi[DB_RESV], rkey, 16, val, 16)) < 0)
            return rc;
    }
    if (db_get(txn, s->db.dbi[DB_LAYERS], a->digest, DIGEST_LEN, &v) == 0) {
        struct layer_rec old;
        if ((rc = layer_rec_decode(&v, &old)) < 0)
            return rc;
        if ((old.flags & LAYER_COMPLETE) && (old.flags & LAYER_INDEX_BUILT)) {
            a->existed = 1; /* another pull got there first */
            return 0;
        }
        /* A partial layer (chunks from peers), or one completed with a peer's index, is
         * replaced by the whole blob and the index built from it: if the two indexes differ in
         * meaning, the peer's was false. */
        if (!(old.flags & LAYER_INDEX_BUILT) && (rc = index_judge(txn, a, &old)) < 0)
            return rc;
        lru_key(old.last_access, a->digest, key);
        if ((rc = db_del(txn, s->db.dbi[DB_LRU], key, sizeof key)) < 0)
            return rc;
        uint64_t used = meta_u64(txn, s, "used");
        if ((rc = meta_put_u64(txn, s, "used", used > old.stored ? used - old.stored : 0)) < 0)
            return rc;
    }
    if ((rc = layer_insert(txn, s, a->digest, a->media_type, a->ix, a->index_bytes, true,
                           a->alias ? a->peer_ix : NULL, &a->ev)) < 0)
        return rc;
    /* Last, the file, made durable before the record can be: if the commit then fails the file
     * is an orphan that the next open sweeps; if this function runs again (map full) the rename
     * has already happened. */
    store_blob_path(s, a->digest, path);
    if (rename(a->tmp_path, path) < 0 && !(errno == ENOENT && access(path, F_OK) == 0))
        return err_set(-errno, "cannot rename %s", a->tmp_path);
    return fsync_dir(s, "blobs/sha256");
}

int store_layer_commit(struct store *s, uint64_t id, uint64_t resv_bytes,
                       const uint8_t digest[static DIGEST_LEN], const char *media_type,
                       const struct layer_index *ix, const struct buf *index_bytes,
                       const char *tmp_path)
{
    struct commit_args a = {.s = s,
                            .id = id,
                            .resv_bytes = resv_bytes,
                            .digest = digest,
                            .media_type = media_type,
                            .ix = ix,
                            .index_bytes = index_bytes,
                            .tmp_path = tmp_path};
    int rc = evicting_write(s, commit_fn, &a, &a.ev);
    if (a.existed || rc < 0)
        unlink(tmp_path);
    if (rc == 0 && !a.existed && a.judged) {
        static const uint8_t none[STORE_ID_LEN];
        const uint8_t *from = memcmp(a.from, none, STORE_ID_LEN) ? a.from : NULL;
        uint8_t mine[DIGEST_LEN];
        char dg[DIGEST_STR_LEN + 1], x[DIGEST_STR_LEN + 1], y[DIGEST_STR_LEN + 1];
        sha256_buf(index_bytes->p, index_bytes->len, mine);
        if (a.index_false)
            log_error("event=index_false layer=%s peer_index=%s blob_index=%s",
                      digest_fmt(digest, dg), digest_fmt(a.peer_ix, x), digest_fmt(mine, y));
        if (s->index_judged)
            s->index_judged(s->index_judged_arg, digest, from, a.peer_ix, mine, a.index_false);
    }
    return rc;
}

/* ---- partial layers: chunks one by one ----------------------------------------------------- */

struct partial_args {
    struct store *s;
    const uint8_t *digest;
    const char *media_type;
    const struct layer_index *ix;
    const struct buf *index_bytes;
    const uint8_t *from;
    struct evicted ev;
};

static int partial_fn(MDB_txn *txn, void *arg)
{
    struct partial_args *a = arg;
    struct store *s = a->s;
    char path[PATH_MAX];
    MDB_val v;
    int rc;

    if (db_get(txn, s->db.dbi[DB_LAYERS], a->digest, DIGEST_LEN, &v) == 0)
        return 0; /* there already, whole or in part */
    if ((rc = layer_insert(txn, s, a->digest, a->media_type, a->ix, a->index_bytes, false, a->from,
                           &a->ev)) < 0)
        return rc;
    /* The (sparse) blob file, inside the transaction: the orphan sweep of another process's
     * store_open runs in one too, so it cannot take the file before the record exists. */
    /* A new file, renamed into place: never a truncation of one a reader may hold open (an
     * evicted layer's, say). */
    char tmp[PATH_MAX];
    store_blob_path(s, a->digest, path);
    int fd = store_tmp_create(s, a->digest, tmp);
    if (fd < 0)
        return fd;
    rc = ftruncate(fd, (off_t)a->ix->blob_size) < 0 ? err_set(-errno, "cannot size %s", tmp) : 0;
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = err_set(-errno, "cannot rename %s", tmp);
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    if ((rc = fsync_dir(s, "tmp")) < 0)
        return rc;
    return fsync_dir(s, "blobs/sha256");
}

int store_layer_add_partial(struct store *s, const uint8_t digest[static DIGEST_LEN],
                            const char *media_type, const struct layer_index *ix,
                            const struct buf *index_bytes, const uint8_t *from)
{
    struct partial_args a = {s, digest, media_type, ix, index_bytes, from, {0}};
    return evicting_write(s, partial_fn, &a, &a.ev);
}

struct mark_args {
    struct store *s;
    const uint8_t *digest;
    const struct layer_index *ix;
    const uint8_t *map;
    uint64_t resv_id;
    struct evicted ev;
};

static int mark_fn(MDB_txn *txn, void *arg)
{
    struct mark_args *a = arg;
    struct store *s = a->s;
    struct layer_rec r;
    uint8_t rec[LAYER_REC_SIZE], rkey[16];
    uint64_t added = 0, take = 0, freed = 0;
    uint32_t have = 0;
    MDB_val v, bv;
    int rc;

    if ((rc = db_get(txn, s->db.dbi[DB_LAYERS], a->digest, DIGEST_LEN, &v)) < 0)
        return rc == AFSP_E_NOTFOUND ? err_set(rc, "the layer was evicted") : rc;
    if ((rc = layer_rec_decode(&v, &r)) < 0)
        return rc;
    if (r.flags & LAYER_COMPLETE)
        return 0;
    size_t bmlen = (a->ix->nchunks + 7) / 8;
    if (r.nchunks != a->ix->nchunks ||
        (rc = db_get(txn, s->db.dbi[DB_PRESENT], a->digest, DIGEST_LEN, &bv)) < 0 ||
        bv.mv_size != bmlen)
        return rc < 0 ? rc : err_set(AFSP_E_STORE, "bad chunk map");
    uint8_t *bm = malloc(bmlen ? bmlen : 1);
    if (!bm)
        return -ENOMEM;
    memcpy(bm, bv.mv_data, bmlen);
    for (uint32_t i = 0; i < a->ix->nchunks; i++) {
        uint8_t m = (uint8_t)(1u << (i % 8));
        if ((a->map[i / 8] & m) && !(bm[i / 8] & m)) {
            bm[i / 8] |= m;
            added += a->ix->chunks[i].len;
        }
        have += (bm[i / 8] & m) != 0;
    }
    /* Bytes a pull reserved for this layer pay for its chunks first. */
    put_be64(rkey, (uint64_t)getpid());
    put_be64(rkey + 8, a->resv_id);
    if (a->resv_id && db_get(txn, s->db.dbi[DB_RESV], rkey, 16, &v) == 0 && v.mv_size == 16) {
        uint8_t val[16];
        uint64_t left = get_be64(v.mv_data);
        take = MIN(left, added);
        memcpy(val, v.mv_data, 16);
        put_be64(val, left - take);
        if ((rc = db_put(txn, s->db.dbi[DB_RESV], rkey, 16, val, 16)) < 0)
            goto out;
    }
    uint8_t pin[1][DIGEST_LEN];
    memcpy(pin[0], a->digest, DIGEST_LEN);
    if (added > take && (rc = evict_until(txn, s, (const uint8_t(*)[DIGEST_LEN])pin, 1,
                                          added - take, 0, &a->ev, &freed)) < 0)
        goto out;
    r.stored += added;
    if (have == a->ix->nchunks)
        r.flags |= LAYER_COMPLETE;
    layer_rec_encode(&r, rec);
    if ((rc = db_put(txn, s->db.dbi[DB_LAYERS], a->digest, DIGEST_LEN, rec, sizeof rec)) == 0 &&
        (rc = db_put(txn, s->db.dbi[DB_PRESENT], a->digest, DIGEST_LEN, bm, bmlen)) == 0)
        rc = meta_put_u64(txn, s, "used", meta_u64(txn, s, "used") + added);
out:
    free(bm);
    return rc;
}

int store_chunks_mark(struct store *s, const uint8_t digest[static DIGEST_LEN],
                      const struct layer_index *ix, const uint8_t *map, uint64_t resv_id)
{
    struct mark_args a = {s, digest, ix, map, resv_id, {0}};
    return evicting_write(s, mark_fn, &a, &a.ev);
}

struct touch_args {
    struct store *s;
    const uint8_t (*d)[DIGEST_LEN];
    size_t n;
    bool force;
};

static int touch_fn(MDB_txn *txn, void *arg)
{
    struct touch_args *a = arg;
    uint64_t now = time_now_ns();
    for (size_t i = 0; i < a->n; i++) {
        MDB_val v;
        struct layer_rec r;
        uint8_t rec[LAYER_REC_SIZE], key[40];
        int rc;
        if (db_get(txn, a->s->db.dbi[DB_LAYERS], a->d[i], DIGEST_LEN, &v) < 0)
            continue;
        if ((rc = layer_rec_decode(&v, &r)) < 0)
            return rc;
        if (!a->force && now < r.last_access + TOUCH_EVERY_NS && now >= r.last_access)
            continue;
        lru_key(r.last_access, a->d[i], key);
        if ((rc = db_del(txn, a->s->db.dbi[DB_LRU], key, sizeof key)) < 0)
            return rc;
        r.last_access = now;
        lru_key(r.last_access, a->d[i], key);
        layer_rec_encode(&r, rec);
        if ((rc = db_put(txn, a->s->db.dbi[DB_LRU], key, sizeof key, "", 0)) < 0 ||
            (rc = db_put(txn, a->s->db.dbi[DB_LAYERS], a->d[i], DIGEST_LEN, rec, sizeof rec)) < 0)
            return rc;
    }
    return 0;
}

int store_touch(struct store *s, const uint8_t (*digests)[DIGEST_LEN], size_t n, bool force)
{
    struct touch_args a = {s, digests, n, force};
    return db_write(&s->db, touch_fn, &a);
}

int store_layers_list(struct store *s, struct layer_info **out, size_t *n)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    struct layer_info *vec = NULL;
    size_t cnt = 0, cap = 0;
    int rc = db_read_begin(&s->db, &txn);
    if (rc < 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->db.dbi[DB_LAYERS], &c))) {
        mdb_txn_abort(txn);
        return db_err(rc);
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct layer_rec r;
        MDB_val bm;
        if (k.mv_size != DIGEST_LEN || layer_rec_decode(&v, &r) < 0)
            continue;
        if (cnt == cap) {
            void *p = array_grow(vec, &cap, sizeof *vec, 32);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            vec = p;
        }
        struct layer_info *li = &vec[cnt++];
        memset(li, 0, sizeof *li);
        memcpy(li->digest, k.mv_data, DIGEST_LEN);
        snprintf(li->media_type, sizeof li->media_type, "%s", r.media_type);
        li->size = r.size;
        li->usize = r.usize;
        li->nchunks = r.nchunks;
        li->nfiles = r.nfiles;
        li->stored_bytes = r.stored;
        li->last_access_ns = r.last_access;
        li->complete = r.flags & LAYER_COMPLETE;
        li->index_built = r.flags & LAYER_INDEX_BUILT;
        if (db_get(txn, s->db.dbi[DB_PRESENT], k.mv_data, DIGEST_LEN, &bm) == 0) {
            const uint8_t *b = bm.mv_data;
            for (uint32_t i = 0; i < r.nchunks && i / 8 < bm.mv_size; i++)
                li->chunks_present += (b[i / 8] >> (i % 8)) & 1;
        }
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND && rc != 0) {
        free(vec);
        return rc < 0 ? rc : db_err(rc);
    }
    *out = vec;
    *n = cnt;
    return 0;
}
