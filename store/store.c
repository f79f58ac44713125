/*
 * store.c - what the store holds and how much: layer records, blob files, chunk presence,
 * images, the cache limit, reservations and LRU eviction, and random access to stored layers.
 *
 * Invariants (docs/store.md):
 *  - a layer record exists only for a blob file that is complete on disk: the file is written and
 *    fdatasync'ed under DATA/tmp, renamed into DATA/blobs inside the write transaction that adds
 *    the record, so a crash leaves either nothing or both (an orphaned file at worst, swept on
 *    the next open); eviction deletes the record first and unlinks the file after the commit.
 *  - "used" in DB_META is the sum of stored bytes of all layer records, changed only in the
 *    transactions that add or delete records; reservations live in DB_RESV with the pid and start
 *    time of their process, so those of dead processes are dropped on open.
 * Must not talk to a registry or decode anything: that is ingest.c and codec.c.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define LAYER_REC_SIZE 224
#define CACHE_DEFAULT_CAP (1ull << 40)
#define TOUCH_EVERY_NS (60ull * 1000000000ull) /* access times are kept to the minute */

/* ---- encodings ----------------------------------------------------------------------------- */

static void layer_rec_encode(const struct layer_rec *r, uint8_t out[static LAYER_REC_SIZE])
{
    memset(out, 0, LAYER_REC_SIZE);
    put_le32(out, 1); /* version */
    put_le32(out + 4, r->flags);
    put_le32(out + 8, r->format);
    put_le32(out + 12, r->nchunks);
    put_le32(out + 16, r->nfiles);
    put_le64(out + 24, r->size);
    put_le64(out + 32, r->usize);
    put_le64(out + 40, r->stored);
    put_le64(out + 48, r->last_access);
    memcpy(out + 56, r->media_type, sizeof r->media_type);
    memcpy(out + 184, r->index_digest, DIGEST_LEN);
}

static int layer_rec_decode(const MDB_val *v, struct layer_rec *r)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size != LAYER_REC_SIZE || get_le32(p) != 1)
        return err_set(AFSP_E_STORE, "bad layer record");
    r->flags = get_le32(p + 4);
    r->format = get_le32(p + 8);
    r->nchunks = get_le32(p + 12);
    r->nfiles = get_le32(p + 16);
    r->size = get_le64(p + 24);
    r->usize = get_le64(p + 32);
    r->stored = get_le64(p + 40);
    r->last_access = get_le64(p + 48);
    memcpy(r->media_type, p + 56, sizeof r->media_type);
    r->media_type[sizeof r->media_type - 1] = 0;
    memcpy(r->index_digest, p + 184, DIGEST_LEN);
    return 0;
}

static void lru_key(uint64_t t, const uint8_t digest[static DIGEST_LEN], uint8_t key[40])
{
    put_be64(key, t);
    memcpy(key + 8, digest, DIGEST_LEN);
}

static uint64_t meta_u64(MDB_txn *txn, struct store *s, const char *name)
{
    MDB_val v;
    if (db_get(txn, s->db.dbi[DB_META], name, strlen(name), &v) == 0 && v.mv_size == 8)
        return get_be64(v.mv_data);
    return 0;
}

static int meta_put_u64(MDB_txn *txn, struct store *s, const char *name, uint64_t x)
{
    uint8_t b[8];
    put_be64(b, x);
    return db_put(txn, s->db.dbi[DB_META], name, strlen(name), b, 8);
}

/* ---- paths --------------------------------------------------------------------------------- */

void store_blob_path(const struct store *s, const uint8_t digest[static DIGEST_LEN], char *out)
{
    char hex[2 * DIGEST_LEN + 1];
    snprintf(out, PATH_MAX, "%s/blobs/sha256/%s", s->dir, hex_fmt(digest, DIGEST_LEN, hex));
}

static uint64_t proc_start(pid_t pid);

/* Temporary files are named <digest prefix>.<pid>.<process start time>.<nonce>, so that the
 * sweep on open can tell a dead writer's file even when its pid has been reused. */
int store_tmp_create(struct store *s, const uint8_t digest[static DIGEST_LEN], char *path)
{
    char hex[2 * DIGEST_LEN + 1];
    hex_fmt(digest, DIGEST_LEN, hex);
    for (int i = 0; i < 100; i++) {
        snprintf(path, PATH_MAX, "%s/tmp/%.16s.%d.%llu.%u", s->dir, hex, (int)getpid(),
                 (unsigned long long)proc_start(getpid()),
                 (unsigned)(time_mono_ns() / 1000 + (unsigned)i));
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd >= 0 ? fd : err_set(-errno, "cannot create %s", path);
    }
    return err_set(-EEXIST, "cannot create a temporary file in %s/tmp", s->dir);
}

/* Start time of process pid (jiffies since boot), 0 if it does not exist. */
static uint64_t proc_start(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p)
        return 0;
    /* fields after the name: state(3) ... starttime(22) */
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* ---- open / close -------------------------------------------------------------------------- */

static int mkdirs(const char *dir)
{
    char p[PATH_MAX];
    static const char *const sub[] = {"", "/store", "/blobs", "/blobs/sha256", "/tmp"};
    for (size_t i = 0; i < ARRAY_SIZE(sub); i++) {
        snprintf(p, sizeof p, "%s%s", dir, sub[i]);
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return err_set(-errno, "cannot create %s", p);
    }
    return 0;
}

/* Drops reservations whose process is gone. */
static int sweep_resv_fn(MDB_txn *txn, void *arg)
{
    struct store *s = arg;
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->db.dbi[DB_RESV], &c);
    if (rc)
        return db_err(rc);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 16 || v.mv_size != 16) {
            mdb_cursor_del(c, 0);
            continue;
        }
        pid_t pid = (pid_t)get_be64(k.mv_data);
        uint64_t start = get_be64((uint8_t *)v.mv_data + 8);
        if (proc_start(pid) != start) {
            log_info("dropping the reservation of dead process %d", (int)pid);
            mdb_cursor_del(c, 0);
        }
    }
    mdb_cursor_close(c);
    return 0;
}

/* Removes temporary downloads of dead processes and blob files without a layer record (left by a
 * crash between rename and commit). Runs inside a write transaction so that no commit is in
 * flight while it looks. */
static int sweep_files_fn(MDB_txn *txn, void *arg)
{
    struct store *s = arg;
    char path[PATH_MAX];
    DIR *d;
    struct dirent *e;

    snprintf(path, sizeof path, "%s/tmp", s->dir);
    if ((d = opendir(path))) {
        while ((e = readdir(d))) {
            char *dot = strchr(e->d_name, '.'), *end;
            if (e->d_name[0] == '.' || !dot)
                continue;
            pid_t pid = (pid_t)strtol(dot + 1, &end, 10);
            unsigned long long start = *end == '.' ? strtoull(end + 1, NULL, 10) : 0;
            if (pid > 0 && pid != getpid() && proc_start(pid) != start) {
                snprintf(path, sizeof path, "%s/tmp/%s", s->dir, e->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    snprintf(path, sizeof path, "%s/blobs/sha256", s->dir);
    if ((d = opendir(path))) {
        while ((e = readdir(d))) {
            uint8_t dg[DIGEST_LEN];
            char name[8 + sizeof e->d_name];
            MDB_val v;
            snprintf(name, sizeof name, "sha256:%s", e->d_name);
            if (e->d_name[0] == '.' || digest_parse(name, dg) < 0)
                continue;
            if (db_get(txn, s->db.dbi[DB_LAYERS], dg, DIGEST_LEN, &v) == AFSP_E_NOTFOUND) {
                snprintf(path, sizeof path, "%s/blobs/sha256/%s", s->dir, e->d_name);
                log_info("removing orphaned blob %s", e->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    return 0;
}

bool store_exists(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/store/data.mdb", dir);
    return access(path, F_OK) == 0;
}

int store_open(struct store **out, const struct store_opts *o)
{
    struct store *s = calloc(1, sizeof *s);
    char path[PATH_MAX];
    int rc;

    if (!s)
        return -ENOMEM;
    s->dir = strdup(o->dir);
    if (!s->dir) {
        free(s);
        return -ENOMEM;
    }
    if (!o->readonly && (rc = mkdirs(s->dir)) < 0)
        goto fail;
    snprintf(path, sizeof path, "%s/store", s->dir);
    if ((rc = db_open(&s->db, path, o->map_size)) < 0)
        goto fail;
    if (!o->readonly) {
        if ((rc = db_write(&s->db, sweep_resv_fn, s)) < 0 ||
            (rc = db_write(&s->db, sweep_files_fn, s)) < 0)
            goto fail;
    }
    s->cache_max = o->cache_max_bytes;
    if (!s->cache_max) {
        /* 60% of what the store could have: the free space plus what it already holds. */
        struct statvfs vfs;
        struct store_usage u;
        if (statvfs(s->dir, &vfs) < 0) {
            rc = err_set(-errno, "cannot statvfs %s", s->dir);
            goto fail;
        }
        if ((rc = store_usage_get(s, &u)) < 0)
            goto fail;
        uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize + u.used;
        s->cache_max = MIN(CACHE_DEFAULT_CAP, avail / 10 * 6);
    }
    *out = s;
    return 0;
fail:
    store_close(s);
    return rc;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    db_close(&s->db);
    free(s->dir);
    free(s);
}

uint64_t store_cache_max(const struct store *s)
{
    return s->cache_max;
}

void store_set_evict_hook(struct store *s, store_evict_cb cb, void *arg)
{
    s->evict_cb = cb;
    s->evict_arg = arg;
}

/* ---- eviction ------------------------------------------------------------------------------ */

struct evicted {
    uint8_t (*d)[DIGEST_LEN];
    size_t n, cap;
};

/* Deletes layer digest's records inside txn and remembers it for evicted_finish. */
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

/* After the commit: the files go, and the hook learns of each layer. */
static void evicted_finish(struct store *s, struct evicted *ev)
{
    char path[PATH_MAX], dg[DIGEST_STR_LEN + 1];
    for (size_t i = 0; i < ev->n; i++) {
        store_blob_path(s, ev->d[i], path);
        unlink(path);
        log_info("evicted %s", digest_fmt(ev->d[i], dg));
        if (s->evict_cb)
            s->evict_cb(s->evict_arg, ev->d[i]);
    }
    free(ev->d);
    memset(ev, 0, sizeof *ev);
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
static int evict_until(MDB_txn *txn, struct store *s, const uint8_t (*pin)[DIGEST_LEN], size_t npin,
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
            reserved += get_be64(v.mv_data);
    mdb_cursor_close(c);

    for (;;) {
        uint64_t used = meta_u64(txn, s, "used");
        if (goal ? *freed >= goal : used + reserved + need <= s->cache_max)
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

    a->ev.n = 0; /* db_write may run us again */
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
            pinned_bytes += r.stored;
    }
    if (need + pinned_bytes > s->cache_max)
        return err_set(AFSP_E_TOOBIG, "image needs %s; the cache limit is %s",
                       bytes_fmt(need + pinned_bytes, n1), bytes_fmt(s->cache_max, n2));
    a.id = time_mono_ns() ^ ((uint64_t)getpid() << 40);
    int rc = db_write(&s->db, reserve_fn, &a);
    if (rc >= 0)
        *id = a.id;
    evicted_finish(s, &a.ev);
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
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_set(-errno, "cannot open %s", dir);
    int rc = fsync(fd) < 0 ? err_set(-errno, "cannot sync %s", dir) : 0;
    close(fd);
    return rc;
}

/* Adds layer digest inside txn: its record, index, chunk map and LRU entry, and its stored bytes
 * (complete: the blob and the index, every chunk present; else the index only, no chunk yet),
 * evicting least-recently-used layers, never this one, to make room. */
static int layer_insert(MDB_txn *txn, struct store *s, const uint8_t *digest,
                        const char *media_type, const struct layer_index *ix,
                        const struct buf *index_bytes, bool complete, struct evicted *ev)
{
    struct layer_rec r = {0};
    uint8_t rec[LAYER_REC_SIZE], key[40], pin[1][DIGEST_LEN];
    uint64_t freed = 0;
    int rc;

    r.flags = complete ? LAYER_COMPLETE : 0;
    r.format = ix->format;
    r.nchunks = ix->nchunks;
    r.nfiles = ix->nfiles;
    r.size = ix->blob_size;
    r.usize = ix->tar_size;
    r.stored = (complete ? ix->blob_size : 0) + index_bytes->len;
    r.last_access = time_now_ns();
    snprintf(r.media_type, sizeof r.media_type, "%s", media_type);
    sha256_buf(index_bytes->p, index_bytes->len, r.index_digest);
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
};

static int commit_fn(MDB_txn *txn, void *arg)
{
    struct commit_args *a = arg;
    struct store *s = a->s;
    uint8_t key[40], rkey[16];
    char path[PATH_MAX];
    MDB_val v;
    int rc;

    a->ev.n = 0;
    a->existed = 0;
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
        if (old.flags & LAYER_COMPLETE) {
            a->existed = 1; /* another pull got there first */
            return 0;
        }
        /* A partial layer (chunks from peers) is replaced by the whole blob. */
        lru_key(old.last_access, a->digest, key);
        if ((rc = db_del(txn, s->db.dbi[DB_LRU], key, sizeof key)) < 0)
            return rc;
        uint64_t used = meta_u64(txn, s, "used");
        if ((rc = meta_put_u64(txn, s, "used", used > old.stored ? used - old.stored : 0)) < 0)
            return rc;
    }
    if ((rc = layer_insert(txn, s, a->digest, a->media_type, a->ix, a->index_bytes, true, &a->ev)) <
        0)
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
    struct commit_args a = {s,  id,          resv_bytes, digest, media_type,
                            ix, index_bytes, tmp_path,   {0},    0};
    int rc = db_write(&s->db, commit_fn, &a);
    if (a.existed || rc < 0)
        unlink(tmp_path);
    evicted_finish(s, &a.ev);
    return rc;
}

/* ---- partial layers: chunks one by one ----------------------------------------------------- */

struct partial_args {
    struct store *s;
    const uint8_t *digest;
    const char *media_type;
    const struct layer_index *ix;
    const struct buf *index_bytes;
    struct evicted ev;
};

static int partial_fn(MDB_txn *txn, void *arg)
{
    struct partial_args *a = arg;
    struct store *s = a->s;
    char path[PATH_MAX];
    MDB_val v;
    int rc;

    a->ev.n = 0;
    if (db_get(txn, s->db.dbi[DB_LAYERS], a->digest, DIGEST_LEN, &v) == 0)
        return 0; /* there already, whole or in part */
    if ((rc = layer_insert(txn, s, a->digest, a->media_type, a->ix, a->index_bytes, false,
                           &a->ev)) < 0)
        return rc;
    /* The (sparse) blob file, inside the transaction: the orphan sweep of another process's
     * store_open runs in one too, so it cannot take the file before the record exists. */
    store_blob_path(s, a->digest, path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(-errno, "cannot create %s", path);
    rc = ftruncate(fd, (off_t)a->ix->blob_size) < 0 ? err_set(-errno, "cannot size %s", path) : 0;
    close(fd);
    return rc < 0 ? rc : fsync_dir(s, "blobs/sha256");
}

int store_layer_add_partial(struct store *s, const uint8_t digest[static DIGEST_LEN],
                            const char *media_type, const struct layer_index *ix,
                            const struct buf *index_bytes)
{
    struct partial_args a = {s, digest, media_type, ix, index_bytes, {0}};
    int rc = db_write(&s->db, partial_fn, &a);
    evicted_finish(s, &a.ev);
    return rc;
}

struct mark_args {
    struct store *s;
    const uint8_t *digest;
    const struct layer_index *ix;
    const uint8_t *map;
    uint64_t resv_id;
    struct evicted ev;
    bool complete;
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

    a->ev.n = 0;
    a->complete = false;
    if ((rc = db_get(txn, s->db.dbi[DB_LAYERS], a->digest, DIGEST_LEN, &v)) < 0)
        return rc == AFSP_E_NOTFOUND ? err_set(rc, "the layer was evicted") : rc;
    if ((rc = layer_rec_decode(&v, &r)) < 0)
        return rc;
    if (r.flags & LAYER_COMPLETE) {
        a->complete = true;
        return 0;
    }
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
    if (have == a->ix->nchunks) {
        r.flags |= LAYER_COMPLETE;
        a->complete = true;
    }
    layer_rec_encode(&r, rec);
    if ((rc = db_put(txn, s->db.dbi[DB_LAYERS], a->digest, DIGEST_LEN, rec, sizeof rec)) == 0 &&
        (rc = db_put(txn, s->db.dbi[DB_PRESENT], a->digest, DIGEST_LEN, bm, bmlen)) == 0)
        rc = meta_put_u64(txn, s, "used", meta_u64(txn, s, "used") + added);
out:
    free(bm);
    return rc;
}

int store_chunks_mark(struct store *s, const uint8_t digest[static DIGEST_LEN],
                      const struct layer_index *ix, const uint8_t *map, uint64_t resv_id,
                      bool *complete)
{
    struct mark_args a = {s, digest, ix, map, resv_id, {0}, false};
    int rc = db_write(&s->db, mark_fn, &a);
    evicted_finish(s, &a.ev);
    if (complete)
        *complete = a.complete;
    return rc;
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
    MDB_txn *txn;
    MDB_val v;
    int rc = db_read_begin(&s->db, &txn);
    if (rc < 0)
        return rc;
    rc = db_get(txn, s->db.dbi[DB_BLOBS], digest, DIGEST_LEN, &v);
    if (rc == 0)
        rc = buf_append(out, v.mv_data, v.mv_size);
    mdb_txn_abort(txn);
    return rc;
}

int store_image_put(struct store *s, const char *ref, const char *json)
{
    struct put_args a = {s, DB_IMAGES, ref, strlen(ref), json, strlen(json)};
    return db_write(&s->db, put_fn, &a);
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

/* Parses an image record (JSON written by ingest.c). */
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
            ii->nlayers_present++;
            ii->nlayers_complete += layer_rec_decode(&lv, &r) == 0 && (r.flags & LAYER_COMPLETE);
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

/* ---- prune --------------------------------------------------------------------------------- */

struct prune_args {
    struct store *s;
    uint64_t goal, freed;
    struct evicted ev;
};

static int prune_fn(MDB_txn *txn, void *arg)
{
    struct prune_args *a = arg;
    a->ev.n = 0;
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
    rc = db_write(&s->db, prune_fn, &a);
    if (rc >= 0)
        *freed = a.freed;
    evicted_finish(s, &a.ev);
    return rc < 0 ? rc : 0;
}

/* ---- random access ------------------------------------------------------------------------- */

struct store_layer {
    struct store *s;
    uint8_t digest[DIGEST_LEN];
    struct layer_index ix;
    uint8_t *present;  /* chunk bitmap, from the store */
    uint8_t *verified; /* chunk bitmap: checked against the index by this handle (atomic) */
    uint8_t *reported; /* chunk bitmap: its failure is logged (atomic) */
    int fd;
    struct store_reader *rd; /* store_layer_read's */
};

struct store_reader {
    struct store_layer *l;
    struct codec_reader *cr;
};

static bool bit_get(const uint8_t *map, uint32_t i)
{
    return (__atomic_load_n(&map[i / 8], __ATOMIC_ACQUIRE) >> (i % 8)) & 1;
}

/* Sets bit i; returns whether it was already set. */
static bool bit_set(uint8_t *map, uint32_t i)
{
    uint8_t m = (uint8_t)(1u << (i % 8));
    return __atomic_fetch_or(&map[i / 8], m, __ATOMIC_ACQ_REL) & m;
}

static int pread_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : AFSP_E_TRUNCATED;
        done += (size_t)n;
    }
    return 0;
}

/* Checks chunk i of the blob file against the index (once per handle; concurrent first uses
 * may both check, which is harmless): the blob's SHA-256 resumed at the chunk's start must reach
 * the chunk's chaining value, or for the last chunk the layer digest itself. Hashes through a
 * small buffer: no allocation the size of a chunk (fresh pages cost more than the hashing). */
static int chunk_verify(struct store_layer *l, uint32_t i)
{
    const struct index_chunk *c = &l->ix.chunks[i];
    uint8_t buf[64 << 10];
    struct sha256c h;
    int rc = 0;

    if (bit_get(l->verified, i))
        return 0;
    index_chunk_hash_start(&l->ix, i, &h);
    for (uint64_t off = 0; off < c->len && rc == 0;) {
        size_t n = (size_t)MIN((uint64_t)sizeof buf, c->len - off);
        if ((rc = pread_full(l->fd, buf, n, c->off + off)) == 0)
            sha256c_update(&h, buf, n);
        off += n;
    }
    if (rc == 0)
        rc = index_chunk_hash_check(&l->ix, i, l->digest, &h);
    if (rc < 0) {
        char dg[DIGEST_STR_LEN + 1];
        digest_fmt(l->digest, dg);
        if (!bit_set(l->reported, i))
            log_error("layer %s: chunk %u (bytes %" PRIu64 "+%u): %s", dg, i, c->off, c->len,
                      rc == AFSP_E_DIGEST ? "does not match its hash in the index" : err_str(rc));
        return err_set(rc, "chunk %u of layer %s", i, dg);
    }
    bit_set(l->verified, i);
    return 0;
}

void store_set_fetcher(struct store *s, store_fetcher_fn fn, void *arg)
{
    s->fetcher = fn;
    s->fetcher_arg = arg;
}

/* Takes in the chunk map as stored now (chunks only ever become present while a handle is
 * open: eviction skips pinned layers). When the layer was replaced by a whole download (a
 * partial layer completed from the registry), the handle's file is swapped for the new one,
 * atomically for concurrent readers (dup2). */
int store_layer_refresh(struct store_layer *l)
{
    struct buf bm = {0};
    struct stat a, b;
    char path[PATH_MAX];
    int rc = store_present_get(l->s, l->digest, &bm);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < bm.len && i < (l->ix.nchunks + 7) / 8u; i++)
        __atomic_fetch_or(&l->present[i], bm.p[i], __ATOMIC_ACQ_REL);
    buf_release(&bm);
    store_blob_path(l->s, l->digest, path);
    if (stat(path, &a) == 0 && fstat(l->fd, &b) == 0 && a.st_ino != b.st_ino) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return err_set(-errno, "cannot open %s", path);
        rc = dup2(fd, l->fd) < 0 ? -errno : 0;
        close(fd);
    }
    return rc;
}

/* Makes chunks [first, last] present: those missing are asked of the fetcher (the node), which
 * returns once it has stored them. */
static int chunks_need(struct store_layer *l, uint32_t first, uint32_t last)
{
    uint32_t a = first;
    while (a <= last && bit_get(l->present, a))
        a++;
    if (a > last)
        return 0;
    uint32_t b = last;
    while (b > a && bit_get(l->present, b))
        b--;
    if (!l->s->fetcher)
        return err_set(AFSP_E_NOTFOUND, "chunk %u of the layer is not present", a);
    int rc = l->s->fetcher(l->s->fetcher_arg, l->digest, a, b);
    if (rc == 0)
        rc = store_layer_refresh(l);
    for (uint32_t i = a; rc == 0 && i <= b; i++)
        if (!bit_get(l->present, i))
            rc = err_set(AFSP_E_NOTFOUND, "chunk %u of the layer is not present", i);
    return rc;
}

/* The codec's source: compressed bytes from the blob file, only from chunks that are present
 * (fetched first if they are not) and verified. */
static ssize_t layer_src(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    struct store_layer *l = arg;
    int rc;
    if (off >= l->ix.blob_size)
        return 0;
    if (len > l->ix.blob_size - off)
        len = l->ix.blob_size - off;
    uint32_t first = index_chunk_at(&l->ix, off), last = index_chunk_at(&l->ix, off + len - 1);
    if ((rc = chunks_need(l, first, last)) < 0)
        return rc;
    for (uint32_t i = first; i <= last && i < l->ix.nchunks; i++)
        if ((rc = chunk_verify(l, i)) < 0)
            return rc;
    if ((rc = pread_full(l->fd, buf, len, off)) < 0)
        return rc;
    return (ssize_t)len;
}

int store_layer_fetch(struct store_layer *l, uint64_t off, uint64_t len)
{
    if (len == 0 || off >= l->ix.tar_size || l->ix.blob_size == 0)
        return 0;
    uint64_t a = 0, b = l->ix.blob_size;
    if (l->ix.ncps) {
        uint32_t k0 = store_layer_span_at(l, off),
                 k1 = store_layer_span_at(l, off + MIN(len, l->ix.tar_size - off) - 1);
        a = l->ix.cps[k0].in_bit / 8;
        if (k1 + 1 < l->ix.ncps)
            b = MIN(b, (l->ix.cps[k1 + 1].in_bit + 7) / 8);
    }
    uint32_t first = index_chunk_at(&l->ix, a), last = index_chunk_at(&l->ix, b - 1);
    int rc = chunks_need(l, first, last);
    if (rc < 0)
        return rc;
    for (uint32_t i = first; i <= last && i < l->ix.nchunks; i++) {
        rc = chunk_verify(l, i);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int store_reader_new(struct store_layer *l, struct store_reader **out)
{
    struct store_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->l = l;
    int rc = codec_reader_new(&r->cr, l->ix.format, l->ix.cps, l->ix.ncps, l->ix.blob_size,
                              l->ix.tar_size, layer_src, l);
    if (rc < 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void store_reader_free(struct store_reader *r)
{
    if (!r)
        return;
    codec_reader_free(r->cr);
    free(r);
}

ssize_t store_reader_read(struct store_reader *r, uint64_t off, void *buf, size_t n)
{
    return codec_read(r->cr, off, buf, n);
}

uint64_t store_reader_pos(const struct store_reader *r)
{
    return codec_reader_pos(r->cr);
}

uint64_t store_reader_decoded(const struct store_reader *r)
{
    return codec_reader_decoded(r->cr);
}

uint64_t store_layer_size(const struct store_layer *l)
{
    return l->ix.tar_size;
}

/* Plain tar layers have checkpoints too (every CODEC_SPAN_IN bytes); a layer with none (an
 * empty tar) is one span. */
uint32_t store_layer_nspans(const struct store_layer *l)
{
    return l->ix.ncps ? l->ix.ncps : 1;
}

void store_layer_span(const struct store_layer *l, uint32_t k, uint64_t *start, uint64_t *end)
{
    uint32_t n = store_layer_nspans(l);
    if (k >= n)
        k = n - 1;
    *start = l->ix.ncps ? l->ix.cps[k].out_off : 0;
    *end = k + 1 < l->ix.ncps ? l->ix.cps[k + 1].out_off : l->ix.tar_size;
}

uint32_t store_layer_span_at(const struct store_layer *l, uint64_t off)
{
    uint32_t lo = 0, hi = store_layer_nspans(l); /* answer in [lo, hi) */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (l->ix.cps[mid].out_off <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int store_index_bytes(struct store *s, const uint8_t digest[static DIGEST_LEN], struct buf *out)
{
    MDB_txn *txn;
    MDB_val v;
    int rc = db_read_begin(&s->db, &txn);
    if (rc < 0)
        return rc;
    if ((rc = db_get(txn, s->db.dbi[DB_INDEX], digest, DIGEST_LEN, &v)) == 0)
        rc = buf_append(out, v.mv_data, v.mv_size);
    mdb_txn_abort(txn);
    return rc;
}

int store_present_get(struct store *s, const uint8_t digest[static DIGEST_LEN], struct buf *out)
{
    MDB_txn *txn;
    MDB_val v;
    int rc = db_read_begin(&s->db, &txn);
    if (rc < 0)
        return rc;
    if ((rc = db_get(txn, s->db.dbi[DB_PRESENT], digest, DIGEST_LEN, &v)) == 0)
        rc = buf_append(out, v.mv_data, v.mv_size);
    mdb_txn_abort(txn);
    return rc;
}

int store_layer_open(struct store *s, const uint8_t digest[static DIGEST_LEN],
                     struct store_layer **out)
{
    struct store_layer *l = calloc(1, sizeof *l);
    MDB_txn *txn = NULL;
    MDB_val v;
    char path[PATH_MAX];
    int rc;

    if (!l)
        return -ENOMEM;
    l->s = s;
    l->fd = -1;
    memcpy(l->digest, digest, DIGEST_LEN);
    if ((rc = db_read_begin(&s->db, &txn)) < 0)
        goto fail;
    if ((rc = db_get(txn, s->db.dbi[DB_INDEX], digest, DIGEST_LEN, &v)) < 0)
        goto fail;
    if ((rc = index_parse(v.mv_data, v.mv_size, &l->ix)) < 0)
        goto fail;
    if ((rc = db_get(txn, s->db.dbi[DB_PRESENT], digest, DIGEST_LEN, &v)) < 0)
        goto fail;
    if (v.mv_size < (l->ix.nchunks + 7) / 8) {
        rc = err_set(AFSP_E_STORE, "bad chunk map");
        goto fail;
    }
    l->present = malloc(v.mv_size ? v.mv_size : 1);
    if (!l->present) {
        rc = -ENOMEM;
        goto fail;
    }
    memcpy(l->present, v.mv_data, v.mv_size);
    l->verified = calloc(1, v.mv_size ? v.mv_size : 1);
    l->reported = calloc(1, v.mv_size ? v.mv_size : 1);
    if (!l->verified || !l->reported) {
        rc = -ENOMEM;
        goto fail;
    }
    mdb_txn_abort(txn);
    txn = NULL;
    store_blob_path(s, digest, path);
    l->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (l->fd < 0) {
        rc = err_set(-errno, "cannot open %s", path);
        goto fail;
    }
    rc = store_reader_new(l, &l->rd);
    if (rc < 0)
        goto fail;
    const uint8_t(*d)[DIGEST_LEN] = (const uint8_t(*)[DIGEST_LEN])l->digest;
    store_touch(s, d, 1, false);
    *out = l;
    return 0;
fail:
    if (txn)
        mdb_txn_abort(txn);
    store_layer_close(l);
    return rc;
}

void store_layer_close(struct store_layer *l)
{
    if (!l)
        return;
    store_reader_free(l->rd);
    if (l->fd >= 0)
        close(l->fd);
    index_release(&l->ix);
    free(l->present);
    free(l->verified);
    free(l->reported);
    free(l);
}

uint32_t store_layer_nfiles(const struct store_layer *l)
{
    return l->ix.nfiles;
}

int store_layer_file(const struct store_layer *l, uint32_t i, struct layer_file *out)
{
    if (i >= l->ix.nfiles)
        return AFSP_E_NOTFOUND;
    const struct index_file *f = &l->ix.files[i];
    const char *st = (const char *)l->ix.strtab.p;
    out->path = st + f->path_off;
    out->link = st + f->link_off;
    out->type = (char)f->type;
    out->mode = f->mode;
    out->uid = f->uid;
    out->gid = f->gid;
    out->devmajor = f->devmajor;
    out->devminor = f->devminor;
    out->mtime_sec = f->mtime_sec;
    out->mtime_nsec = f->mtime_nsec;
    out->size = f->size;
    out->data_off = f->data_off;
    out->nxattrs = f->xattr_count;
    return 0;
}

int store_layer_xattr(const struct store_layer *l, uint32_t i, uint32_t j, const char **name,
                      const uint8_t **value, size_t *len)
{
    if (i >= l->ix.nfiles || j >= l->ix.files[i].xattr_count)
        return AFSP_E_NOTFOUND;
    const struct index_xattr *x = &l->ix.xattrs[l->ix.files[i].xattr_first + j];
    *name = (const char *)l->ix.strtab.p + x->name_off;
    *value = l->ix.strtab.p + x->val_off;
    *len = x->val_len;
    return 0;
}

ssize_t store_layer_read(struct store_layer *l, uint64_t off, void *buf, size_t n)
{
    return store_reader_read(l->rd, off, buf, n);
}

uint32_t store_layer_nchunks(const struct store_layer *l)
{
    return l->ix.nchunks;
}

void store_layer_chunk(const struct store_layer *l, uint32_t i, uint64_t *off, uint32_t *len)
{
    *off = l->ix.chunks[i].off;
    *len = l->ix.chunks[i].len;
}

bool store_layer_chunk_present(const struct store_layer *l, uint32_t i)
{
    return i < l->ix.nchunks && bit_get(l->present, i);
}

int store_layer_read_blob(struct store_layer *l, uint64_t off, void *buf, size_t n)
{
    if (off > l->ix.blob_size || n > l->ix.blob_size - off)
        return AFSP_E_USAGE;
    return pread_full(l->fd, buf, n, off);
}
