/*
 * images.c - small content-addressed blobs (manifests, indexes, configs: kept only once verified)
 * and image records (JSON, one per canonical reference, written by the pull), and the listing and
 * lookup of images.
 *
 * Owns DB_BLOBS and DB_IMAGES. Must not parse manifests or configs (store/oci/ does, in the pull):
 * an image record already names its layers.
 */
#include "store_int.h"
#include "oci/oci.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- small blobs and images ---------------------------------------------------------------- */

struct put_args {
    struct store *s;
    enum db_table t;
    const void *k;
    size_t klen;
    const void *v;
    size_t vlen;
};

static int put_fn(MDB_txn *txn, void *arg)
{
    struct put_args *a = arg;
    return db_put(txn, a->s->db.dbi[a->t], a->k, a->klen, a->v, a->vlen);
}

int store_small_put(struct store *s, const uint8_t digest[static DIGEST_LEN], const void *p,
                    size_t n)
{
    struct put_args a = {s, DB_BLOBS, digest, DIGEST_LEN, p, n};
    return db_write(&s->db, put_fn, &a);
}

int store_small_get(struct store *s, const uint8_t digest[static DIGEST_LEN], struct buf *out)
{
    return db_copy(&s->db, s->db.dbi[DB_BLOBS], digest, DIGEST_LEN, out);
}

int store_image_put(struct store *s, const char *ref, const char *json)
{
    struct put_args a = {s, DB_IMAGES, ref, strlen(ref), json, strlen(json)};
    return db_write(&s->db, put_fn, &a);
}

/* Parses an image record (JSON written by the pull: store/pull/pull.c). */
static int image_decode(const MDB_val *k, const MDB_val *v, MDB_txn *txn, struct store *s,
                        struct image_info *ii)
{
    json_error_t jerr;
    json_t *j = json_loadb(v->mv_data, v->mv_size, 0, &jerr);
    int rc = AFSP_E_STORE;
    memset(ii, 0, sizeof *ii);
    snprintf(ii->ref, sizeof ii->ref, "%.*s", (int)k->mv_size, (const char *)k->mv_data);
    if (!j)
        return rc;
    json_t *layers = json_object_get(j, "layers");
    const char *md = json_string_value(json_object_get(j, "manifest"));
    const char *pf = json_string_value(json_object_get(j, "platform"));
    if (!md || digest_parse(md, ii->manifest_digest) < 0 || !json_is_array(layers))
        goto out;
    snprintf(ii->platform, sizeof ii->platform, "%s", pf ? pf : "");
    ii->pulled_ns = (uint64_t)json_integer_value(json_object_get(j, "pulled"));
    ii->nlayers = json_array_size(layers);
    ii->layers = calloc(ii->nlayers ? ii->nlayers : 1, DIGEST_LEN);
    if (!ii->layers) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < ii->nlayers; i++) {
        json_t *l = json_array_get(layers, i);
        MDB_val lv;
        if (digest_parse(json_string_value(json_object_get(l, "digest")), ii->layers[i]) < 0)
            goto out;
        ii->size += (uint64_t)json_integer_value(json_object_get(l, "size"));
        struct layer_rec r;
        if (db_get(txn, s->db.dbi[DB_LAYERS], ii->layers[i], DIGEST_LEN, &lv) == 0) {
            bool ok = layer_rec_decode(&lv, &r) == 0;
            ii->nlayers_present++;
            ii->nlayers_complete += ok && (r.flags & LAYER_COMPLETE);
            ii->nlayers_verified +=
                ok && (r.flags & LAYER_COMPLETE) && (r.flags & LAYER_INDEX_BUILT);
        }
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

int store_images_list(struct store *s, struct image_info **out, size_t *n)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    struct image_info *vec = NULL;
    size_t cnt = 0, cap = 0;
    int rc = db_read_begin(&s->db, &txn);
    if (rc < 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->db.dbi[DB_IMAGES], &c))) {
        mdb_txn_abort(txn);
        return db_err(rc);
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (cnt == cap) {
            void *p = array_grow(vec, &cap, sizeof *vec, 16);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            vec = p;
        }
        if (image_decode(&k, &v, txn, s, &vec[cnt]) == 0)
            cnt++;
        else
            free(vec[cnt].layers);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND && rc != 0) {
        store_images_free(vec, cnt);
        return rc < 0 ? rc : db_err(rc);
    }
    *out = vec;
    *n = cnt;
    return 0;
}

int store_image_find(struct store *s, const char *refstr, struct image_info *out)
{
    struct image_ref ref;
    struct image_info *v;
    size_t n;
    int rc = ref_parse(refstr, &ref);
    if (rc < 0)
        return rc;
    char *canon = ref_str(&ref);
    uint8_t want[DIGEST_LEN];
    int by_digest = ref.digest && digest_parse(ref.digest, want) == 0;
    if (!canon) {
        ref_release(&ref);
        return -ENOMEM;
    }
    if ((rc = store_images_list(s, &v, &n)) == 0) {
        rc = err_set(AFSP_E_NOTFOUND, "image %s is not in the store", canon);
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(v[i].ref, canon) ||
                (by_digest && !memcmp(v[i].manifest_digest, want, DIGEST_LEN))) {
                *out = v[i];
                v[i].layers = NULL;
                rc = 0;
                break;
            }
        }
        store_images_free(v, n);
    }
    free(canon);
    ref_release(&ref);
    return rc;
}

void store_images_free(struct image_info *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].layers);
    free(v);
}
