/*
 * test_store_crash.c - the store across crashes and dead processes: orphans of a crash between
 * rename and commit, a new environment that appears whole or not at all, a full map under
 * readers in other threads and processes, reader slots of dead processes, an eviction that a new
 * add of its layer overtakes.
 */
#include "stores.h"

#include "../../store/ingest.h"
#include "../../store/layer/layer.h"
#include "../../store/store.h"
#include "../../store/store_int.h" /* evicting_write, evict_until: the eviction's two steps */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

TEST(store_sweeps_orphans_of_a_crash_between_rename_and_commit)
{
    struct store *s = open_at("orphan", 1000000);
    uint8_t d[DIGEST_LEN];
    char path[PATH_MAX];
    CHECK(put_layer(s, 0, 1, 1000, d) == 0);
    /* A blob file with no record, as a crash after rename and before commit leaves it. */
    uint8_t fake[DIGEST_LEN] = {1, 2, 3};
    store_blob_path(s, fake, path);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    CHECK(fd >= 0);
    close(fd);
    store_close(s);
    s = open_at("orphan", 1000000);
    CHECK(access(path, F_OK) < 0);
    store_blob_path(s, d, path);
    CHECK(access(path, F_OK) == 0); /* the real one stays */
    store_close(s);
}

/* The number of entries of dir whose name starts with prefix. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    CHECK(d);
    while ((e = readdir(d)))
        n += !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

/* A new environment appears whole or not at all (F3 in docs/faults.md: LMDB's first meta pages
 * are unsynced until its first commit, and a data.mdb that lost them never opens again). A
 * creation that fails leaves no DATA/store; one whose process died is swept by the next writer;
 * an empty DATA/store (an older afsp made it first) is replaced. */
TEST(store_new_environment_appears_whole)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    struct store *s;
    uint8_t d[DIGEST_LEN];
    snprintf(dir, sizeof dir, "%s/newenv", test_tmpdir());
    CHECK(mkdir(dir, 0700) == 0);
    /* a map too small for the tables: the first commit fails, as a failed first sync does */
    struct store_opts o = {.dir = dir, .cache_max_bytes = 1000000, .map_size = 8192};
    CHECK(store_open(&s, &o) < 0);
    snprintf(path, sizeof path, "%s/store", dir);
    CHECK(access(path, F_OK) < 0);
    CHECK_INT(count_entries(dir, "store.new."), ==, 0);

    /* what a creator killed after its failed sync leaves, and an empty DATA/store */
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    CHECK(waitpid(pid, NULL, 0) == pid);
    snprintf(path, sizeof path, "%s/store.new.%d.1.0", dir, (int)pid);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/store.new.%d.1.0/data.mdb", dir, (int)pid);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 3 * 4096) == 0); /* zeros: no meta page */
    close(fd);
    snprintf(path, sizeof path, "%s/store", dir);
    CHECK(mkdir(path, 0700) == 0);

    s = open_at("newenv", 1000000);
    CHECK_INT(count_entries(dir, "store.new."), ==, 0);
    CHECK(put_layer(s, 0, 1, 1000, d) == 0);
    store_close(s);
    s = open_at("newenv", 1000000);
    CHECK(has_layer(s, d));
    store_close(s);
}

/* Readers of a store while its map fills up: each thread loops over the layers committed so
 * far and counts the ones it cannot see. */
struct map_reader {
    struct store *s;
    uint8_t (*d)[DIGEST_LEN];
    _Atomic int *committed;
    _Atomic bool *stop;
    long missing, rounds;
};

static void *map_read_loop(void *arg)
{
    struct map_reader *r = arg;
    while (!*r->stop) {
        int n = *r->committed;
        for (int i = 0; i < n; i++)
            r->missing += !has_layer(r->s, r->d[i]);
        struct store_usage u;
        r->missing += store_usage_get(r->s, &u) != 0;
        r->rounds++;
    }
    return NULL;
}

/* waitpid, again when a signal interrupts it (the sanitizers' runtime sends some) */
static pid_t wait_child(pid_t pid, int *st)
{
    pid_t w;
    while ((w = waitpid(pid, st, 0)) < 0 && errno == EINTR)
        ;
    return w;
}

/* A process that, once told to (a byte on the pipe it returns), writes layers (seeds from seed0,
 * each its own size: put_layer's bytes repeat every 256 seeds) into the store at dir with the
 * given map until it is full, and exits 0 if it ended full, with a message. Forked while this
 * process has no other thread: a child of a threaded process can inherit locks held in it (it
 * hung under ASan). */
static pid_t map_filler(const char *dir, uint64_t map, int seed0, int *go)
{
    int p[2];
    char c;
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid > 0) {
        close(p[0]);
        *go = p[1];
        return pid;
    }
    close(p[1]);
    if (read(p[0], &c, 1) != 1)
        _exit(2);
    struct store *s;
    struct store_opts o = {dir, 1ull << 40, false, map};
    uint8_t d[DIGEST_LEN];
    int rc = store_open(&s, &o), n = 0;
    while (rc == 0 && n < 5000 && (rc = put_layer(s, 0, seed0 + n, 1000 + seed0 + n, d)) == 0)
        n++;
    _exit(rc == -ENOSPC && strstr(err_msg(rc), "is full") ? 0 : 1);
}

static void map_filler_go(int go)
{
    CHECK(write(go, "g", 1) == 1);
    close(go);
}

/* The map is never grown under readers (LMDB allows that only with no transaction open in the
 * process: the old store grew it and crashed, 3 runs of 3): a full map fails the write that
 * hit it, cleanly, while other threads and another process read and write; what was committed
 * stays. A process that finds the map grown past its own by another gets an error, not a crash,
 * and sees everything once it reopens. */
TEST(store_full_map_fails_writes_cleanly_under_readers)
{
    char dir[PATH_MAX];
    struct store *s;
    static uint8_t d[4000][DIGEST_LEN];
    _Atomic int committed = 0;
    _Atomic bool stop = false;
    struct map_reader r[3];
    pthread_t t[3];
    int st, rc = 0, n = 0, go;
    snprintf(dir, sizeof dir, "%s/mapfull", test_tmpdir());
    mkdir(dir, 0700);
    struct store_opts o = {dir, 1ull << 40, false, 256 << 10};
    pid_t pid = map_filler(dir, 256 << 10, 10000, &go);
    CHECK(store_open(&s, &o) == 0);
    for (int i = 0; i < 3; i++) {
        r[i] = (struct map_reader){s, d, &committed, &stop, 0, 0};
        CHECK(pthread_create(&t[i], NULL, map_read_loop, &r[i]) == 0);
    }
    /* one layer before the other process starts: under load, it could fill the map first */
    CHECK(put_layer(s, 0, n, 1000 + n, d[n]) == 0);
    committed = ++n;
    map_filler_go(go);
    while (n < 2000 && (rc = put_layer(s, 0, n, 1000 + n, d[n])) == 0)
        committed = ++n;
    CHECK_INT(rc, ==, -ENOSPC);
    CHECK(strstr(err_msg(rc), "is full") != NULL);
    CHECK(n > 0);
    CHECK(wait_child(pid, &st) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    stop = true;
    for (int i = 0; i < 3; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(r[i].rounds > 0);
        if (r[i].missing)
            test_fail(__FILE__, __LINE__, "reader %d missed %ld layers", i, r[i].missing);
    }

    /* another process with a larger map writes past this one's: readers here get errors */
    pid = map_filler(dir, 1 << 20, 20000, &go);
    stop = false;
    for (int i = 0; i < 3; i++) {
        r[i] = (struct map_reader){s, d, &committed, &stop, 0, 0};
        CHECK(pthread_create(&t[i], NULL, map_read_loop, &r[i]) == 0);
    }
    map_filler_go(go);
    CHECK(wait_child(pid, &st) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_INT(put_layer(s, 0, 30000, 31000, d[3999]), <, 0);
    stop = true;
    for (int i = 0; i < 3; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    store_close(s);
    /* reopened (with the small size asked for, the larger one kept): everything is there */
    CHECK(store_open(&s, &o) == 0);
    for (int i = 0; i < n; i++)
        CHECK(has_layer(s, d[i]));
    struct store_usage u;
    CHECK(store_usage_get(s, &u) == 0);
    CHECK(u.nlayers > (uint64_t)n);
    store_close(s);
}

static int count_reader(const char *msg, void *ctx)
{
    (void)msg;
    ++*(int *)ctx;
    return 0;
}

TEST(store_clears_reader_slots_of_dead_processes)
{
    struct store *s = open_at("readers", 1000000);
    store_close(s);
    /* This process keeps the environment open throughout (as a daemon would): otherwise the
     * next opener finds the lock file unused and resets the whole reader table anyway. */
    MDB_env *env;
    char dir[PATH_MAX];
    int before = 0, after = 0, st;
    snprintf(dir, sizeof dir, "%s/readers/store", test_tmpdir());
    CHECK(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 16);
    CHECK(mdb_env_open(env, dir, MDB_RDONLY, 0600) == 0);

    pid_t pid = fork();
    if (pid == 0) {
        /* opens the environment as the store does (MDB_NOTLS), without its internals */
        MDB_env *env2;
        MDB_txn *txn;
        if (mdb_env_create(&env2) || mdb_env_set_maxdbs(env2, 16) ||
            mdb_env_open(env2, dir, MDB_NOTLS, 0600) || mdb_txn_begin(env2, NULL, MDB_RDONLY, &txn))
            _exit(1);
        raise(SIGKILL); /* dies inside a read transaction: its slot stays taken */
    }
    CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st));
    mdb_reader_list(env, count_reader, &before);
    pid = fork();
    if (pid == 0) {
        struct store *s3 = open_at("readers", 1000000); /* store_open runs mdb_reader_check */
        store_close(s3);
        _exit(0);
    }
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    mdb_reader_list(env, count_reader, &after);
    mdb_env_close(env);
    CHECK_INT(before, ==, 2); /* the header line and the dead reader */
    CHECK_INT(after, ==, 1);  /* the header line only */
}

/* An eviction and an add of the same layer race: the eviction commits, the add commits its
 * record and renames its new file into place, then the eviction's unlink runs. Here the add is
 * folded into the evicting transaction (the record put back after evict_until took it), which
 * leaves the unlink exactly what the race leaves it: a layer evicted that has a record again.
 * Its file must stay. The unlink by name after the commit used to take the new file, leaving a
 * record without its blob. */
struct readd {
    struct store *s;
    const uint8_t *d;
    struct evicted *ev;
};

static int evict_and_add_again(MDB_txn *txn, void *arg)
{
    struct readd *r = arg;
    const enum db_table tables[] = {DB_LAYERS, DB_INDEX, DB_PRESENT};
    struct buf saved[3] = {{0}};
    uint64_t freed = 0;
    int rc = 0;
    for (int t = 0; t < 3 && rc == 0; t++) {
        MDB_val v;
        if ((rc = db_get(txn, r->s->db.dbi[tables[t]], r->d, DIGEST_LEN, &v)) == 0)
            rc = buf_append(&saved[t], v.mv_data, v.mv_size);
    }
    if (rc == 0)
        rc = evict_until(txn, r->s, NULL, 0, 0, 1, r->ev, &freed);
    if (rc == 0 && (r->ev->n != 1 || memcmp(r->ev->d[0], r->d, DIGEST_LEN)))
        rc = AFSP_E_STORE;                 /* not the eviction this test is about */
    for (int t = 0; t < 3 && rc == 0; t++) /* the add: what the layer had, back */
        rc = db_put(txn, r->s->db.dbi[tables[t]], r->d, DIGEST_LEN, saved[t].p, saved[t].len);
    for (int t = 0; t < 3; t++)
        buf_release(&saved[t]);
    return rc;
}

TEST(store_a_layer_added_again_after_its_eviction_keeps_its_file)
{
    struct store *s = open_at("readd", 1ull << 30);
    uint8_t d[DIGEST_LEN];
    char path[PATH_MAX];
    CHECK(put_layer(s, 0, 3, 1u << 20, d) == 0);
    store_blob_path(s, d, path);
    struct evicted ev = {0};
    struct readd r = {s, d, &ev};
    CHECK_INT(evicting_write(s, evict_and_add_again, &r, &ev), ==, 0);
    CHECK(has_layer(s, d));
    CHECK(access(path, F_OK) == 0);
    struct store_layer *l;
    uint8_t buf[4096];
    CHECK(store_layer_open(s, d, &l) == 0);
    CHECK_INT(store_layer_read_blob(l, 0, buf, sizeof buf), ==, 0);
    for (size_t i = 0; i < sizeof buf; i++)
        CHECK_INT(buf[i], ==, (uint8_t)(3 * 31 + i * 7)); /* put_layer's bytes */
    store_layer_close(l);
    store_close(s);
}
