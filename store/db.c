/*
 * db.c - the LMDB environment: opening (one map size for as long as it is open), the tables,
 * write transactions, and the translation of LMDB codes into ours.
 *
 * Owns every call into <lmdb.h> that is not a plain get/put inside a transaction. Must not know
 * what the tables mean: that is the business of the store's other files (store_int.h).
 */
#include "store_int.h"
#include "db.h"

#include <errno.h>
#include <string.h>

/* The map is address space, not memory or disk (the file grows as pages are written), so it is
 * made as large as the store can need from the start, as LMDB's documentation advises, and never
 * changed while open. Metadata is about 4% of the blobs (an index is 1-4% of its blob), and the
 * cache limit counts it: 256 GiB of map holds the metadata of several TiB of layers. */
#define DB_MAP_SIZE (256ull << 30)

static const char *const table_names[DB_NTABLES] = {
    [DB_LAYERS] = "layers", [DB_INDEX] = "index",   [DB_PRESENT] = "present", [DB_LRU] = "lru",
    [DB_IMAGES] = "images", [DB_BLOBS] = "blobs",   [DB_META] = "meta",       [DB_RESV] = "resv",
    [DB_PINS] = "pins",     [DB_TRACES] = "traces",
};

int db_err(int mdb_rc)
{
    switch (mdb_rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return AFSP_E_NOTFOUND;
    case MDB_MAP_FULL:
        return -ENOSPC;
    default:
        if (mdb_rc > 0)
            return err_set(-mdb_rc, "lmdb"); /* errno values */
        return err_set(AFSP_E_STORE, "lmdb: %s", mdb_strerror(mdb_rc));
    }
}

int db_open(struct db *db, const char *dir, uint64_t mapsize)
{
    int rc, dead = 0;
    MDB_txn *txn = NULL;

    rc = mdb_env_create(&db->env);
    if (rc)
        return db_err(rc);
    mdb_env_set_maxdbs(db->env, DB_NTABLES + 2);
    mdb_env_set_maxreaders(db->env, 1022);
    db->mapsize = mapsize ? mapsize : DB_MAP_SIZE;
    mdb_env_set_mapsize(db->env, db->mapsize);
    /* MDB_NOTLS: read transactions belong to the caller, not the thread (FUSE workers share). */
    rc = mdb_env_open(db->env, dir, MDB_NOTLS, 0600);
    if (rc) {
        rc = err_set(db_err(rc), "cannot open store %s", dir);
        goto fail;
    }
    /* Adopt a larger size an earlier open left (no transaction is open yet), never shrink. */
    MDB_envinfo info;
    mdb_env_info(db->env, &info);
    if (info.me_mapsize > db->mapsize)
        db->mapsize = info.me_mapsize;
    mdb_env_set_mapsize(db->env, db->mapsize);
    /* Reader slots left by processes that died (kill -9) would pin old pages forever. */
    mdb_reader_check(db->env, &dead);
    if (dead)
        log_info("cleared %d stale reader slot(s)", dead);

    rc = mdb_txn_begin(db->env, NULL, 0, &txn);
    if (rc) {
        rc = db_err(rc);
        goto fail;
    }
    for (int i = 0; i < DB_NTABLES; i++) {
        rc = mdb_dbi_open(txn, table_names[i], MDB_CREATE, &db->dbi[i]);
        if (rc) {
            mdb_txn_abort(txn);
            rc = db_err(rc);
            goto fail;
        }
    }
    rc = mdb_txn_commit(txn);
    if (rc) {
        rc = db_err(rc);
        goto fail;
    }
    return 0;
fail:
    mdb_env_close(db->env);
    db->env = NULL;
    return rc;
}

void db_close(struct db *db)
{
    if (db->env)
        mdb_env_close(db->env);
    db->env = NULL;
}

static int txn_begin(struct db *db, unsigned flags, MDB_txn **txn)
{
    int rc = mdb_txn_begin(db->env, NULL, flags, txn);
    if (rc == MDB_MAP_RESIZED) /* adopting it here could unmap pages other threads are reading */
        return err_set(AFSP_E_STORE,
                       "another process grew the store's map past this one's "
                       "(%llu KiB): reopen the store",
                       (unsigned long long)(db->mapsize >> 10));
    return db_err(rc);
}

int db_read_begin(struct db *db, MDB_txn **txn)
{
    return txn_begin(db, MDB_RDONLY, txn);
}

int db_write(struct db *db, db_write_fn fn, void *arg)
{
    MDB_txn *txn;
    int rc = txn_begin(db, 0, &txn);
    if (rc < 0)
        return rc;
    TRACE("db txn begun");
    rc = fn(txn, arg);
    TRACE("db txn body done rc=%d", rc);
    if (rc >= 0) {
        int crc = mdb_txn_commit(txn);
        TRACE("db txn committed");
        if (crc == 0)
            return rc;
        rc = crc == MDB_MAP_FULL ? -ENOSPC : db_err(crc);
    } else {
        mdb_txn_abort(txn);
    }
    if (rc == -ENOSPC)
        rc = err_set(-ENOSPC, "the store's metadata map (%llu KiB) is full",
                     (unsigned long long)(db->mapsize >> 10));
    return rc;
}

int db_get(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, MDB_val *val)
{
    MDB_val k = {klen, (void *)key};
    return db_err(mdb_get(txn, dbi, &k, val));
}

int db_copy(struct db *db, MDB_dbi dbi, const void *key, size_t klen, struct buf *out)
{
    MDB_txn *txn;
    MDB_val v;
    int rc = db_read_begin(db, &txn);
    if (rc < 0)
        return rc;
    if ((rc = db_get(txn, dbi, key, klen, &v)) == 0)
        rc = buf_append(out, v.mv_data, v.mv_size);
    mdb_txn_abort(txn);
    return rc;
}

int db_put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc = mdb_put(txn, dbi, &k, &v, 0);
    return rc == MDB_MAP_FULL ? -ENOSPC : db_err(rc);
}

int db_del(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen)
{
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(txn, dbi, &k, NULL);
    if (rc == MDB_NOTFOUND)
        return 0;
    return rc == MDB_MAP_FULL ? -ENOSPC : db_err(rc);
}

int db_sync(struct db *db)
{
    int rc = mdb_env_sync(db->env, 1);
    return rc ? err_set(db_err(rc), "cannot sync the store") : 0;
}
