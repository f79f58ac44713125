/*
 * store_int.h - interfaces between the files of the store's core (the .c files directly in
 * store/) that touch the LMDB environment and what is in it. Only they include this (and db.h):
 * nothing outside store/, nor ingest.c, nor store/'s parts with a public header of their own
 * (oci/, layer/, registry/, pull/), which go through store.h and ingest.h.
 *
 *   db.c       the LMDB environment: tables, map growth, stale readers
 *   store.c    open/close, the sweep on open, the cache limit, paths, shared record encodings
 *   space.c    accounting, reservations, pins, eviction, prune, usage
 *   layers.c   layer records: commits, partial layers, chunk marks, access times, listing
 *   images.c   small blobs and image records, their listing and lookup
 *   read.c     random access to stored layers (handles, readers, chunk checks, the fetcher)
 *   fetch.c    partial layers filled chunk by chunk
 *   downloads.c  the downloads under way in this process, readable as they come
 */
#ifndef AFSP_STORE_INT_H
#define AFSP_STORE_INT_H

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../util/util.h"
#include "db.h"
#include "ingest.h"
#include "layer/layer.h"
#include "store.h"

struct store {
    char *dir;
    struct db db;
    uint64_t cache_max;
    store_evict_cb evict_cb;
    void *evict_arg;
    store_fetcher_fn fetcher;
    void *fetcher_arg;
    store_chunk_watch_fn chunk_watch;
    void *chunk_watch_arg;
    store_index_judged_fn index_judged;
    void *index_judged_arg;
    pthread_mutex_t dl_mu; /* downloads.c */
    struct store_dl *dls;
};

/* ---- store.c: the encodings of shared records --------------------------------------------- */

#define LAYER_REC_SIZE 288    /* a layer record in DB_LAYERS (version 3) */
#define LAYER_REC_V1_SIZE 224 /* version 1: no index_from, no index_alias */
#define LAYER_REC_V2_SIZE 256 /* version 2: no index_alias */

void layer_rec_encode(const struct layer_rec *r, uint8_t out[static LAYER_REC_SIZE]);
/* Returns 0 or AFSP_E_STORE (not a layer record of this version). */
int layer_rec_decode(const MDB_val *v, struct layer_rec *r);
/* A key of DB_LRU: be64 t || digest. */
void lru_key(uint64_t t, const uint8_t digest[static DIGEST_LEN], uint8_t key[40]);
/* A be64 counter of DB_META ("used"); 0 when absent. */
uint64_t meta_u64(MDB_txn *txn, struct store *s, const char *name);
int meta_put_u64(MDB_txn *txn, struct store *s, const char *name, uint64_t x);
/* Start time of process pid (jiffies since boot), 0 if it does not exist: with the pid, it names
 * a process even when pids are reused (reservations, pins, temporary files). */
uint64_t proc_start(pid_t pid);

/* ---- space.c: eviction --------------------------------------------------------------------- */

/* Layers evicted inside a write transaction (evict_until): their blob files and the evict hook
 * wait for its commit (evicting_write). */
struct evicted {
    uint8_t (*d)[DIGEST_LEN];
    size_t n, cap;
};

/* Runs fn in a write transaction (db_write) in which evict_until may evict layers into ev: every
 * write that evicts goes through here. Only if the transaction commits are the blob files of
 * those layers unlinked and the evict hook told of each; if fn fails after evicting (say
 * AFSP_E_TOOBIG, the rest being pinned) or the commit fails, the records stay and so do the
 * files. ev is emptied before each run of fn (db_write runs it again when the map grows) and
 * released at the end. Returns what db_write returns. */
int evicting_write(struct store *s, db_write_fn fn, void *arg, struct evicted *ev);

/* Evicts LRU layers not in pin (nor pinned by a mount) until used + reserved + need <= limit,
 * or until *freed >= goal when goal is non-zero. Returns 0, or AFSP_E_TOOBIG if it cannot get
 * there. */
int evict_until(MDB_txn *txn, struct store *s, const uint8_t (*pin)[DIGEST_LEN], size_t npin,
                uint64_t need, uint64_t goal, struct evicted *ev, uint64_t *freed);

/* ---- layers.c: partial layers (for fetch.c) ------------------------------------------------ */

/* The chunk table of the layer's stored index (index_parse_chunks, read in place in the map):
 * what a fetch needs. Returns 0, AFSP_E_NOTFOUND or AFSP_E_FORMAT. */
int store_index_chunks(struct store *s, const uint8_t digest[static DIGEST_LEN],
                       struct layer_index *out);

/* Adds a partial layer: its record and index (sent by from, NULL if not known), an empty chunk
 * map, and a sparse blob file of the blob's size that chunks are written into (fetch.c). Counts
 * only the index against the limit; chunks count as store_chunks_mark adds them. Nothing happens
 * if the layer is there already, whole or in part: the index it has, and who sent that, stay. */
int store_layer_add_partial(struct store *s, const uint8_t digest[static DIGEST_LEN],
                            const char *media_type, const struct layer_index *ix,
                            const struct buf *index_bytes, const uint8_t *from);
/* Marks the chunks set in map (written, checked and fdatasync'ed) present, counting their bytes
 * (taken first from reservation resv_id if not 0), evicting LRU layers as needed; the layer is
 * complete once every chunk is. AFSP_E_NOTFOUND if the layer was evicted meanwhile. */
int store_chunks_mark(struct store *s, const uint8_t digest[static DIGEST_LEN],
                      const struct layer_index *ix, const uint8_t *map, uint64_t resv_id);
#endif
