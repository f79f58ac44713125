/*
 * space.c - the cache limit at work: the stored bytes ("used" in DB_META), reservations of pulls
 * in progress, pins of mounts, least-recently-used eviction, prune, and the usage figures.
 *
 * Invariants (docs/store.md):
 *  - "used" is the sum of stored bytes of all layer records, changed only in the transactions
 *    that add or delete records; reservations live in DB_RESV with the pid and start time of
 *    their process, so those of dead processes are dropped on open (store.c), and a pin whose
 *    process is gone is dropped when eviction meets it.
 *  - eviction deletes a layer's records inside the write transaction that needs the room; its
 *    blob file is unlinked (under the write lock, if no record came back) and the evict hook runs
 * only once that transaction has committed (evicting_write, the one way to run a write that
 * evicts). A write that evicts and then fails has evicted nothing. Owns "used" in DB_META, DB_RESV
 * and DB_PINS, and reads DB_LRU for the eviction order. Must not decide what a layer is worth
 * keeping beyond its access time and its pins.
 */
#include "store_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- eviction ------------------------------------------------------------------------------ */

/* Deletes layer digest's records inside txn and remembers it for after the commit. */
static int evict_one(MDB_txn *txn, struct store *s, const uint8_t digest[static DIGEST_LEN],
                     struct evicted *ev, uint64_t *freed)
{
    MDB_val v;
    struct layer_rec r;
    uint8_t key[40];
    int rc = db_get(txn, s->db.dbi[DB_LAYERS], digest, DIGEST_LEN, &v);
    if (rc < 0)
        return rc;
    if ((rc = layer_rec_decode(&v, &r)) < 0)
        return rc;
    lru_key(r.last_access, digest, key);
    if ((rc = db_del(txn, s->db.dbi[DB_LAYERS], digest, DIGEST_LEN)) < 0 ||
        (rc = db_del(txn, s->db.dbi[DB_INDEX], digest, DIGEST_LEN)) < 0 ||
        (rc = db_del(txn, s->db.dbi[DB_PRESENT], digest, DIGEST_LEN)) < 0 ||
        (rc = db_del(txn, s->db.dbi[DB_LRU], key, sizeof key)) < 0)
        return rc;
    uint64_t used = meta_u64(txn, s, "used");
    if ((rc = meta_put_u64(txn, s, "used", used > r.stored ? used - r.stored : 0)) < 0)
        return rc;
    if (ev->n == ev->cap) {
        void *p = array_grow(ev->d, &ev->cap, DIGEST_LEN, 16);
        if (!p)
            return -ENOMEM;
        ev->d = p;
    }
    memcpy(ev->d[ev->n++], digest, DIGEST_LEN);
    *freed += r.stored;
    return 0;
}

struct evicting_args {
    db_write_fn fn;
    void *arg;
    struct evicted *ev;
    struct store *s;
};

static int evicting_fn(MDB_txn *txn, void *arg)
{
    struct evicting_args *w = arg;
    w->ev->n = 0; /* what an earlier run evicted went with its transaction */
    return w->fn(txn, w->arg);
}

/* After an eviction committed: each evicted layer's blob file goes, under the write lock and
 * only if the layer has no record again. A layer added again meanwhile (its file is made inside
 * its own write transaction) keeps its new file: the unlink by name after the commit used to
 * take it. */
static int unlink_evicted_fn(MDB_txn *txn, void *arg)
{
    struct evicting_args *w = arg;
    char path[PATH_MAX];
    MDB_val v;
    for (size_t i = 0; i < w->ev->n; i++) {
        if (db_get(txn, w->s->db.dbi[DB_LAYERS], w->ev->d[i], DIGEST_LEN, &v) == 0)
            continue;
        store_blob_path(w->s, w->ev->d[i], path);
        unlink(path);
    }
    return 0;
}

int evicting_write(struct store *s, db_write_fn fn, void *arg, struct evicted *ev)
{
    struct evicting_args w = {fn, arg, ev, s};
    char dg[DIGEST_STR_LEN + 1];
    int rc = db_write(&s->db, evicting_fn, &w);
    /* Only a committed eviction happened: after an abort the records are all there, and a
     * listed layer must keep its file and stay announced. A file left by a failure here is
     * one without a record, which the next open sweeps. */
    if (rc >= 0 && ev->n)
        db_write(&s->db, unlink_evicted_fn, &w);
    for (size_t i = 0; rc >= 0 && i < ev->n; i++) {
        log_info("evicted %s", digest_fmt(ev->d[i], dg));
        if (s->evict_cb)
            s->evict_cb(s->evict_arg, ev->d[i]);
    }
    free(ev->d);
    memset(ev, 0, sizeof *ev);
    return rc;
}

static int pinned(const uint8_t (*pin)[DIGEST_LEN], size_t npin, const uint8_t *d)
{
    for (size_t i = 0; i < npin; i++)
        if (!memcmp(pin[i], d, DIGEST_LEN))
            return 1;
    return 0;
}

/* Whether a living process pins layer d (store_pin); pins of dead processes are dropped. */
static bool pinned_by_process(MDB_txn *txn, struct store *s, const uint8_t *d)
{
    MDB_cursor *c;
    MDB_val k = {DIGEST_LEN, (void *)d}, v;
    bool live = false;
    if (mdb_cursor_open(txn, s->db.dbi[DB_PINS], &c))
        return false;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size == DIGEST_LEN + 8 && !memcmp(k.mv_data, d, DIGEST_LEN);
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        pid_t pid = (pid_t)get_be64((uint8_t *)k.mv_data + DIGEST_LEN);
        if (v.mv_size == 8 && proc_start(pid) == get_be64(v.mv_data)) {
            live = true;
            break;
        }
        mdb_cursor_del(c, 0); /* its process is gone */
    }
    mdb_cursor_close(c);
    return live;
}

/* Evicts LRU layers not in pin (nor pinned by a mount) until used + reserved + need <= limit,
 * or until *freed >= goal when goal is non-zero. Returns 0, or AFSP_E_TOOBIG if it cannot get
 * there. */
int evict_until(MDB_txn *txn, struct store *s, const uint8_t (*pin)[DIGEST_LEN], size_t npin,
                uint64_t need, uint64_t goal, struct evicted *ev, uint64_t *freed)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t reserved = 0;
    int rc = mdb_cursor_open(txn, s->db.dbi[DB_RESV], &c);
    if (rc)
        return db_err(rc);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        if (v.mv_size == 16)
            reserved = add_sat(reserved, get_be64(v.mv_data));
    mdb_cursor_close(c);

    for (;;) {
        uint64_t used = meta_u64(txn, s, "used");
        if (goal ? *freed >= goal : add_sat(add_sat(used, reserved), need) <= s->cache_max)
            return 0;
        /* The oldest layer that is not pinned. */
        if ((rc = mdb_cursor_open(txn, s->db.dbi[DB_LRU], &c)))
            return db_err(rc);
        uint8_t victim[DIGEST_LEN];
        int found = 0;
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (k.mv_size == 40 && !pinned(pin, npin, (uint8_t *)k.mv_data + 8) &&
                !pinned_by_process(txn, s, (uint8_t *)k.mv_data + 8)) {
                memcpy(victim, (uint8_t *)k.mv_data + 8, DIGEST_LEN);
                found = 1;
                break;
            }
        }
        mdb_cursor_close(c);
        if (!found) {
            if (goal)
                return 0;
            char a[16], b[16], l[16];
            return err_set(AFSP_E_TOOBIG,
                           "needs %s; the cache limit is %s, %s are reserved by other pulls, "
                           "and layers in use by mounts stay",
                           bytes_fmt(need, a), bytes_fmt(s->cache_max, l), bytes_fmt(reserved, b));
        }
        if ((rc = evict_one(txn, s, victim, ev, freed)) < 0)
            return rc;
    }
}

/* ---- pins ---------------------------------------------------------------------------------- */

struct pin_args {
    struct store *s;
    const uint8_t (*d)[DIGEST_LEN];
    size_t n;
    bool add;
};

static int pin_fn(MDB_txn *txn, void *arg)
{
    struct pin_args *a = arg;
    uint8_t key[DIGEST_LEN + 8], val[8];
    pid_t pid = getpid();
    put_be64(val, proc_start(pid));
    for (size_t i = 0; i < a->n; i++) {
        memcpy(key, a->d[i], DIGEST_LEN);
        put_be64(key + DIGEST_LEN, (uint64_t)pid);
        MDB_val k = {sizeof key, key}, v = {sizeof val, val};
        int rc = a->add ? mdb_put(txn, a->s->db.dbi[DB_PINS], &k, &v, 0)
                        : mdb_del(txn, a->s->db.dbi[DB_PINS], &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return db_err(rc);
    }
    return 0;
}

int store_pin(struct store *s, const uint8_t (*d)[DIGEST_LEN], size_t n)
{
    struct pin_args a = {s, d, n, true};
    return db_write(&s->db, pin_fn, &a);
}

int store_unpin(struct store *s, const uint8_t (*d)[DIGEST_LEN], size_t n)
{
    struct pin_args a = {s, d, n, false};
    return db_write(&s->db, pin_fn, &a);
}

/* ---- reservations -------------------------------------------------------------------------- */

struct reserve_args {
    struct store *s;
    const uint8_t (*pin)[DIGEST_LEN];
    size_t npin;
    uint64_t need, id;
    struct evicted ev;
};

static int reserve_fn(MDB_txn *txn, void *arg)
{
    struct reserve_args *a = arg;
    uint64_t freed = 0;
    uint8_t key[16], val[16];
    int rc;

    if ((rc = evict_until(txn, a->s, a->pin, a->npin, a->need, 0, &a->ev, &freed)) < 0)
        return rc;
    put_be64(key, (uint64_t)getpid());
    put_be64(key + 8, a->id);
    put_be64(val, a->need);
    put_be64(val + 8, proc_start(getpid()));
    return db_put(txn, a->s->db.dbi[DB_RESV], key, 16, val, 16);
}

int store_reserve(struct store *s, const uint8_t (*pin)[DIGEST_LEN], size_t npin, uint64_t need,
                  uint64_t *id)
{
    struct reserve_args a = {s, pin, npin, need, 0, {0}};
    uint64_t pinned_bytes = 0;
    char n1[16], n2[16];

    /* Fail fast: the image's own layers (those present count too) must fit in the limit. */
    for (size_t i = 0; i < npin; i++) {
        struct layer_rec r;
        if (store_layer_get(s, pin[i], &r) == 0)
            pinned_bytes = add_sat(pinned_bytes, r.stored);
    }
    if (add_sat(need, pinned_bytes) > s->cache_max)
        return err_set(AFSP_E_TOOBIG, "image needs %s; the cache limit is %s",
                       bytes_fmt(add_sat(need, pinned_bytes), n1), bytes_fmt(s->cache_max, n2));
    a.id = time_mono_ns() ^ ((uint64_t)getpid() << 40);
    int rc = evicting_write(s, reserve_fn, &a, &a.ev);
    if (rc >= 0)
        *id = a.id;
    return rc;
}

struct unreserve_args {
    struct store *s;
    uint64_t id;
};

static int unreserve_fn(MDB_txn *txn, void *arg)
{
    struct unreserve_args *a = arg;
    uint8_t key[16];
    put_be64(key, (uint64_t)getpid());
    put_be64(key + 8, a->id);
    return db_del(txn, a->s->db.dbi[DB_RESV], key, 16);
}

void store_unreserve(struct store *s, uint64_t id)
{
    struct unreserve_args a = {s, id};
    int rc = db_write(&s->db, unreserve_fn, &a);
    if (rc < 0)
        log_warn("cannot drop a reservation: %s", err_msg(rc));
}

/* ---- prune --------------------------------------------------------------------------------- */

struct prune_args {
    struct store *s;
    uint64_t goal, freed;
    struct evicted ev;
};

static int prune_fn(MDB_txn *txn, void *arg)
{
    struct prune_args *a = arg;
    a->freed = 0;
    return evict_until(txn, a->s, NULL, 0, 0, a->goal, &a->ev, &a->freed);
}

int store_prune(struct store *s, unsigned percent, uint64_t *freed)
{
    struct store_usage u;
    struct prune_args a = {s, 0, 0, {0}};
    int rc;

    if (percent > 100)
        return err_set(AFSP_E_USAGE, "--percent must be between 0 and 100");
    if ((rc = store_usage_get(s, &u)) < 0)
        return rc;
    *freed = 0;
    if (percent == 0 || u.used == 0)
        return 0;
    /* Round up so that any non-zero percentage of a non-empty store frees something. */
    a.goal = (u.used * percent + 99) / 100;
    rc = evicting_write(s, prune_fn, &a, &a.ev);
    if (rc >= 0)
        *freed = a.freed;
    return rc < 0 ? rc : 0;
}

/* ---- listings ------------------------------------------------------------------------------ */

int store_usage_get(struct store *s, struct store_usage *u)
{
    MDB_txn *txn;
    MDB_stat st;
    MDB_cursor *c;
    MDB_val k, v;
    int rc = db_read_begin(&s->db, &txn);
    if (rc < 0)
        return rc;
    memset(u, 0, sizeof *u);
    u->used = meta_u64(txn, s, "used");
    u->limit = s->cache_max;
    if (mdb_stat(txn, s->db.dbi[DB_LAYERS], &st) == 0)
        u->nlayers = st.ms_entries;
    if (mdb_stat(txn, s->db.dbi[DB_IMAGES], &st) == 0)
        u->nimages = st.ms_entries;
    if (mdb_cursor_open(txn, s->db.dbi[DB_RESV], &c) == 0) {
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
            if (v.mv_size == 16)
                u->reserved += get_be64(v.mv_data);
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
    return 0;
}
