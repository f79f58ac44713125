/*
 * db.h - store/'s private view of the LMDB environment (db.c). Only store/ includes this, and
 * only store/ includes <lmdb.h>.
 */
#ifndef AFSP_STORE_DB_H
#define AFSP_STORE_DB_H

#include <lmdb.h>
#include <stdint.h>

#include "../util/util.h"

enum db_table {
    DB_LAYERS,  /* layer digest -> struct layer_rec (encoded) */
    DB_INDEX,   /* layer digest -> serialized layer index */
    DB_PRESENT, /* layer digest -> chunk presence bitmap */
    DB_LRU,     /* be64 last access ns || layer digest -> "" (eviction order) */
    DB_IMAGES,  /* canonical reference -> image record (JSON) */
    DB_BLOBS,   /* digest -> small content-addressed blob (manifest, config) */
    DB_META,    /* name -> value: "used" (be64) */
    DB_RESV,    /* reservation id -> struct resv (encoded) */
    DB_PINS,    /* layer digest || be64 pid -> be64 process start time (a mount uses it) */
    DB_TRACES,  /* start trace key -> start trace (trace.c) */
    DB_NTABLES
};

struct db {
    MDB_env *env;
    MDB_dbi dbi[DB_NTABLES];
    uint64_t mapsize;
};

/* Opens the environment in dir, an existing directory (an empty one: a new environment, whose
 * meta pages are not durable until a sync succeeds: store.c's env_create), creates its tables
 * if missing, clears stale readers.
 * mapsize: the map size (0: DB_MAP_SIZE; tests set a small one), fixed for as long as the
 * environment is open: LMDB allows changing it only while no transaction is open in the process,
 * and the node and every mount read from several threads (growing it under them crashed). A
 * larger size left by an earlier open is kept. */
int db_open(struct db *db, const char *dir, uint64_t mapsize);
void db_close(struct db *db);

/* Translates an LMDB return code: MDB_NOTFOUND -> AFSP_E_NOTFOUND, MDB_MAP_FULL -> -ENOSPC,
 * errno values -> negative errno, others -> AFSP_E_STORE with a message. */
int db_err(int mdb_rc);
/* Flushes the environment to disk (mdb_env_sync, forced). */
int db_sync(struct db *db);

/* Begins a read-only transaction; the caller aborts it (mdb_txn_abort). Data pointers obtained
 * in it are valid until it ends. */
int db_read_begin(struct db *db, MDB_txn **txn);

/* Runs fn inside a write transaction and commits it if fn returns >= 0 (aborts otherwise).
 * Returns fn's return value (>= 0: the transaction committed) or a negative code (it did not:
 * whatever fn decided must not be acted on); -ENOSPC when the map is full. */
typedef int (*db_write_fn)(MDB_txn *txn, void *arg);
int db_write(struct db *db, db_write_fn fn, void *arg);

/* Thin wrappers translating codes; db_del of a missing key is 0. */
int db_get(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, MDB_val *val);
int db_put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void *val, size_t vlen);
int db_del(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen);
/* In a read transaction of its own: appends the value of key in dbi to out. Returns 0,
 * AFSP_E_NOTFOUND or another code. */
int db_copy(struct db *db, MDB_dbi dbi, const void *key, size_t klen, struct buf *out);

#endif
