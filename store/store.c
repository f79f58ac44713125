/*
 * store.c - opening a store: the data directory and its LMDB environment, the sweep on open of
 * what dead processes left (reservations, temporary downloads, blob files without a record), the
 * cache limit, the paths of blob files and downloads, and the encodings of what several files of
 * the store read and write (layer records, LRU keys, counters in DB_META).
 *
 * The rest of the store's core: space.c (the cache limit at work: accounting, reservations,
 * pins, eviction), layers.c (layer records), images.c (small blobs, image records), read.c
 * (random access), fetch.c (partial layers filled chunk by chunk), db.c (LMDB itself).
 * Invariants: docs/store.md, and the opening comments of space.c and layers.c.
 * Owns the struct store (the environment, the data directory's path, the hooks) from store_open
 * to store_close. Must not talk to a registry or decode anything: that is store/pull/ and
 * store/layer/.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define CACHE_DEFAULT_CAP (1ull << 40)

/* ---- encodings ----------------------------------------------------------------------------- */

void layer_rec_encode(const struct layer_rec *r, uint8_t out[static LAYER_REC_SIZE])
{
    memset(out, 0, LAYER_REC_SIZE);
    put_le32(out, 3); /* version */
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
    memcpy(out + 216, r->index_from, STORE_ID_LEN);
    memcpy(out + 248, r->index_alias, DIGEST_LEN);
}

int layer_rec_decode(const MDB_val *v, struct layer_rec *r)
{
    const uint8_t *p = v->mv_data;
    uint32_t version = v->mv_size >= 4 ? get_le32(p) : 0;
    size_t sizes[] = {0, LAYER_REC_V1_SIZE, LAYER_REC_V2_SIZE, LAYER_REC_SIZE};
    if (version < 1 || version > 3 || v->mv_size != sizes[version])
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
    memset(r->index_from, 0, STORE_ID_LEN); /* v1: stores before the sender was kept */
    memset(r->index_alias, 0, DIGEST_LEN);  /* v1, v2: before aliases */
    if (version >= 2)
        memcpy(r->index_from, p + 216, STORE_ID_LEN);
    if (version >= 3)
        memcpy(r->index_alias, p + 248, DIGEST_LEN);
    return 0;
}

void lru_key(uint64_t t, const uint8_t digest[static DIGEST_LEN], uint8_t key[40])
{
    put_be64(key, t);
    memcpy(key + 8, digest, DIGEST_LEN);
}

uint64_t meta_u64(MDB_txn *txn, struct store *s, const char *name)
{
    MDB_val v;
    if (db_get(txn, s->db.dbi[DB_META], name, strlen(name), &v) == 0 && v.mv_size == 8)
        return get_be64(v.mv_data);
    return 0;
}

int meta_put_u64(MDB_txn *txn, struct store *s, const char *name, uint64_t x)
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
uint64_t proc_start(pid_t pid)
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

/* Creates what is missing of the data directory but the LMDB environment (env_create); each
 * directory made is made durable (its parent synced), so that a power loss cannot take a store
 * that held commits. */
static int mkdirs(const char *dir)
{
    char p[PATH_MAX];
    static const char *const sub[] = {"", "/blobs", "/blobs/sha256", "/tmp"};
    for (size_t i = 0; i < ARRAY_SIZE(sub); i++) {
        snprintf(p, sizeof p, "%s%s", dir, sub[i]);
        if (mkdir(p, 0700) < 0) {
            if (errno != EEXIST)
                return err_set(-errno, "cannot create %s", p);
            continue;
        }
        int rc = dir_sync_parent(p);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- a new environment ---------------------------------------------------------------------
 *
 * LMDB writes the meta pages of a new data.mdb unsynced, and its first commit's fdatasync is
 * their first sync: when that sync fails, the pages may be gone (a failed writeback leaves them
 * to be dropped; a power loss takes them), and the file never opens again (MDB_INVALID). So a
 * new environment is made whole in a directory of its own, DATA/store.new.<pid>.<start>.<n>,
 * with its tables, synced, and only then renamed to DATA/store. DATA/store is thus either
 * missing or an environment whose meta pages are durable; a creation that fails, or dies,
 * leaves only its own directory, which no other process has opened (nothing was committed to
 * it): the creator removes it, or the sweep of the next writer once its process is dead. */

#define NEW_ENV_PREFIX "store.new."

static void env_remove(const char *env)
{
    char f[PATH_MAX + 16];
    snprintf(f, sizeof f, "%s/data.mdb", env);
    unlink(f);
    snprintf(f, sizeof f, "%s/lock.mdb", env);
    unlink(f);
    rmdir(env);
}

static int env_create(const char *dir, uint64_t map_size)
{
    char env[PATH_MAX], path[PATH_MAX];
    struct db db = {0};
    int rc = 0;

    for (unsigned i = 0;; i++) {
        snprintf(env, sizeof env, "%s/" NEW_ENV_PREFIX "%d.%llu.%u", dir, (int)getpid(),
                 (unsigned long long)proc_start(getpid()), i);
        if (mkdir(env, 0700) == 0)
            break;
        if (errno != EEXIST || i == 100)
            return err_set(-errno, "cannot create %s", env);
    }
    if ((rc = db_open(&db, env, map_size)) < 0 || (rc = db_sync(&db)) < 0)
        goto fail;
    db_close(&db);
    if ((rc = dir_sync(env)) < 0)
        goto fail;
    snprintf(path, sizeof path, "%s/store", dir);
    if (rename(env, path) < 0) {
        /* another process made it first (DATA/store is not empty: rename replaces only an
         * empty directory): its environment is the store */
        if (errno != ENOTEMPTY && errno != EEXIST) {
            rc = err_set(-errno, "cannot rename %s to %s", env, path);
            goto fail;
        }
        env_remove(env);
    }
    /* the name DATA/store, durable before anything is committed under it */
    return dir_sync(dir);
fail:
    db_close(&db);
    env_remove(env);
    return rc;
}

/* Removes the new environments of creators that died before renaming them into place. */
static void sweep_new_envs(const char *dir)
{
    char path[PATH_MAX];
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d))) {
        const char *p = e->d_name;
        char *end;
        if (strncmp(p, NEW_ENV_PREFIX, strlen(NEW_ENV_PREFIX)))
            continue;
        pid_t pid = (pid_t)strtol(p + strlen(NEW_ENV_PREFIX), &end, 10);
        unsigned long long start = *end == '.' ? strtoull(end + 1, NULL, 10) : 0;
        if (pid > 0 && pid != getpid() && proc_start(pid) != start) {
            snprintf(path, sizeof path, "%s/%s", dir, p);
            log_info("removing %s, a new environment its creator left", p);
            env_remove(path);
        }
    }
    closedir(d);
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
    pthread_mutex_init(&s->dl_mu, NULL);
    s->dir = strdup(o->dir);
    if (!s->dir) {
        free(s);
        return -ENOMEM;
    }
    if (!o->readonly) {
        if ((rc = mkdirs(s->dir)) < 0)
            goto fail;
        sweep_new_envs(s->dir);
    }
    /* (an empty DATA/store, as an older afsp made it, is replaced; one that holds files but no
     * data.mdb stays, and LMDB makes a new environment in it in place, as it used to) */
    if (!store_exists(s->dir) && (rc = env_create(s->dir, o->map_size)) < 0)
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
    pthread_mutex_destroy(&s->dl_mu);
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
