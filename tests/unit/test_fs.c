/*
 * test_fs.c - the piece cache under pressure: many threads reading a real gzip layer at random
 * offsets through a cache of four pieces get exactly the layer's bytes, nothing hangs (the
 * runner's timeout would catch a read that is never answered), and once the reads are done the
 * cache holds no more than its limit.
 */
#include "test.h"

#include "../../fs/fs.h"
#include "../../store/ingest.h"
#include "../../store/layer/layer.h"
#include "../../store/store.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static void sh(const char *cmd)
{
    if (system(cmd) != 0)
        test_fail(__FILE__, __LINE__, "command failed: %s", cmd);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    CHECK(f && fstat(fileno(f), &st) == 0);
    uint8_t *p = malloc((size_t)st.st_size + 1);
    CHECK(p && fread(p, 1, (size_t)st.st_size, f) == (size_t)st.st_size);
    fclose(f);
    *n = (size_t)st.st_size;
    return p;
}

struct reader_arg {
    struct fs_cache *c;
    const uint8_t *want;
    size_t size;
    unsigned seed;
    int bad;
};

static void *reader(void *p)
{
    struct reader_arg *a = p;
    uint8_t *buf = malloc(300 << 10);
    CHECK(buf);
    for (int i = 0; i < 150 && !a->bad; i++) {
        a->seed = a->seed * 1103515245 + 12345;
        size_t off = (a->seed >> 3) % a->size;
        a->seed = a->seed * 1103515245 + 12345;
        size_t n = (a->seed >> 5) % (300 << 10);
        if (i % 10 == 0) /* now and then the same spot as another thread */
            off = (a->size / 2) & ~(size_t)4095;
        size_t exp = MIN(n, a->size - off);
        ssize_t got = fs_cache_read(a->c, 0, 0, a->size, off, buf, n);
        if (got != (ssize_t)exp || memcmp(buf, a->want + off, exp))
            a->bad = 1;
    }
    free(buf);
    return NULL;
}

TEST(fs_cache_concurrent_readers_through_four_pieces)
{
    char dir[PATH_MAX], cmd[PATH_MAX * 4], tgz[PATH_MAX], tar[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", test_tmpdir());
    snprintf(tar, sizeof tar, "%s/layer.tar", test_tmpdir());
    snprintf(tgz, sizeof tgz, "%s/layer.tgz", test_tmpdir());
    snprintf(cmd, sizeof cmd, "tar -cf %s -C /usr lib/python3.11 2>/dev/null; gzip -1 -c %s > %s",
             tar, tar, tgz);
    sh(cmd);
    size_t size, zsize;
    uint8_t *want = slurp(tar, &size), *z = slurp(tgz, &zsize);
    uint8_t d[DIGEST_LEN];
    sha256_buf(z, zsize, d);
    free(z);

    struct store *s;
    struct store_opts o = {.dir = dir, .cache_max_bytes = 1ull << 30};
    mkdir(dir, 0700);
    CHECK(store_open(&s, &o) == 0);
    CHECK(store_ingest_file(s, tgz, "application/vnd.oci.image.layer.v1.tar+gzip", d) == 0);
    struct store_layer *l;
    CHECK(store_layer_open(s, d, &l) == 0);
    CHECK_INT(store_layer_size(l), ==, size);
    CHECK(store_layer_nspans(l) > 4);

    struct fs_cache *c;
    struct fs_cache_opts co = {.mem_bytes = 1, .threads = 3}; /* clamped to four pieces */
    CHECK(fs_cache_new(&c, &l, 1, &co) == 0);
    pthread_t t[8];
    struct reader_arg a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = (struct reader_arg){c, want, size, (unsigned)i * 7919 + 1, 0};
        CHECK(pthread_create(&t[i], NULL, reader, &a[i]) == 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(a[i].bad, ==, 0);
    }
    /* one read of more pieces than the cache holds: it may overshoot while it holds them, and
     * the cache must be back within its limit once it lets them go */
    size_t big = MIN(size, (size_t)6 << 18);
    uint8_t *buf = malloc(big);
    CHECK(buf);
    CHECK_INT(fs_cache_read(c, 0, 0, size, 0, buf, big), ==, big);
    CHECK(!memcmp(buf, want, big));
    free(buf);
    fs_cache_prefetch(c, 0, 0, size); /* more work than memory: prefetch evicts only itself */
    fs_cache_drain(c);
    struct fs_cache_stats st;
    fs_cache_stats(c, &st);
    CHECK(st.evicted > 0);
    CHECK_INT(st.errors, ==, 0);
    CHECK(st.mem_bytes <= st.mem_max);
    fs_cache_free(c);
    store_layer_close(l);
    store_close(s);
    free(want);
}

/* The index is a function of the blob: the one an ingest stores (its windows deflated on the
 * chunk thread while the decoder runs, with scratch reused window after window) is byte for
 * byte what index_serialize makes of it afresh, and the same on every ingest. */
TEST(store_index_is_the_same_for_every_ingest)
{
    char tgz[PATH_MAX], cmd[PATH_MAX * 2], dir[PATH_MAX];
    snprintf(tgz, sizeof tgz, "%s/layer.tgz", test_tmpdir());
    snprintf(cmd, sizeof cmd, "tar -cf - -C /usr lib/python3.11 2>/dev/null | gzip -1 > %s", tgz);
    sh(cmd);
    size_t zsize;
    uint8_t *z = slurp(tgz, &zsize), d[DIGEST_LEN], first[DIGEST_LEN];
    sha256_buf(z, zsize, d);
    free(z);
    for (int i = 0; i < 2; i++) {
        struct store *s;
        snprintf(dir, sizeof dir, "%s/store%d", test_tmpdir(), i);
        mkdir(dir, 0700);
        struct store_opts o = {.dir = dir, .cache_max_bytes = 1ull << 30};
        CHECK(store_open(&s, &o) == 0);
        CHECK(store_ingest_file(s, tgz, "application/vnd.oci.image.layer.v1.tar+gzip", d) == 0);
        struct layer_rec r;
        CHECK(store_layer_get(s, d, &r) == 0);
        if (i == 0)
            memcpy(first, r.index_digest, DIGEST_LEN);
        else
            CHECK(!memcmp(first, r.index_digest, DIGEST_LEN));
        struct buf raw = {0}, again = {0};
        struct layer_index ix;
        CHECK(store_index_bytes(s, d, &raw) == 0);
        CHECK(index_parse(raw.p, raw.len, &ix) == 0);
        CHECK(ix.ncps > 10);
        CHECK(index_serialize(&ix, &again) == 0);
        CHECK_INT(again.len, ==, raw.len);
        CHECK(!memcmp(again.p, raw.p, raw.len));
        index_release(&ix);
        buf_release(&raw);
        buf_release(&again);
        store_close(s);
    }
}

/* An index from a peer need not be normalised: "/" or "a/" has no name to give an entry (the
 * kernel fails the listing of a directory with an empty name in it), and is left out. */
static uint32_t odd_nfiles(void *arg)
{
    (void)arg;
    return 4;
}

static int odd_file(void *arg, uint32_t i, struct layer_file *out)
{
    static const char *paths[] = {"/", "a/", "//", "x"};
    (void)arg;
    *out = (struct layer_file){.path = paths[i], .link = "", .type = '0', .mode = 0644};
    return 0;
}

TEST(fs_tree_leaves_out_paths_without_a_name)
{
    struct fs_layer_src src = {NULL, odd_nfiles, odd_file, NULL, true};
    struct fs_tree *t;
    size_t skipped = 0;
    log_level = -1;
    CHECK(fs_tree_build_src(&t, &src, 1, &skipped) == 0);
    const char *name;
    uint64_t child;
    uint32_t n = 0;
    for (uint32_t i = 0; fs_tree_dirent(t, 1, i, &name, &child) == 0; i++, n++)
        CHECK_STR(name, "x");
    CHECK_INT(n, ==, 1);
    CHECK_INT(skipped, ==, 3);
    fs_tree_free(t);
}

/* A layer whose index is a peer's: its file table is the word of whoever built it (issue 15).
 * The same table shows a setuid root shell, a block device and a file capability when the
 * layer's index was built here, and none of them when it came from a peer. */
static const struct layer_file priv_files[] = {
    {.path = "bin", .link = "", .type = '5', .mode = 0755},
    {.path = "bin/sh", .link = "", .type = '0', .mode = 04755},
    {.path = "bin/newgrp", .link = "", .type = '0', .mode = 02755},
    {.path = "bin/ping", .link = "", .type = '0', .mode = 0755, .nxattrs = 2},
    {.path = "sda", .link = "", .type = '4', .mode = 0660, .devmajor = 8},
    {.path = "tty", .link = "", .type = '3', .mode = 0666, .devmajor = 5},
};

static uint32_t priv_nfiles(void *arg)
{
    (void)arg;
    return ARRAY_SIZE(priv_files);
}

static int priv_file(void *arg, uint32_t i, struct layer_file *out)
{
    (void)arg;
    *out = priv_files[i];
    return 0;
}

static int priv_xattr(void *arg, uint32_t i, uint32_t j, const char **name, const uint8_t **value,
                      size_t *len)
{
    (void)arg;
    if (i != 3 || j > 1)
        return -1;
    *name = j == 0 ? "security.capability" : "user.note";
    *value = (const uint8_t *)(j == 0 ? "\x01\x00\x00\x02\x00\x20\x00\x00" : "x");
    *len = j == 0 ? 8 : 1;
    return 0;
}

static uint32_t path_mode(const struct fs_tree *t, const char *dir, const char *name)
{
    uint64_t d = FS_ROOT_INO, ino;
    struct fs_attr a;
    if (dir && fs_tree_lookup(t, FS_ROOT_INO, dir, &d) != 0)
        return 0;
    if (fs_tree_lookup(t, d, name, &ino) != 0 || fs_tree_getattr(t, ino, &a) != 0)
        return 0;
    return a.mode;
}

static unsigned xattrs_of(const struct fs_tree *t, bool *cap)
{
    uint64_t bin, ino;
    const char *name;
    const uint8_t *v;
    size_t len;
    unsigned n = 0;
    *cap = false;
    CHECK(fs_tree_lookup(t, FS_ROOT_INO, "bin", &bin) == 0);
    CHECK(fs_tree_lookup(t, bin, "ping", &ino) == 0);
    for (uint32_t j = 0; fs_tree_xattr(t, ino, j, &name, &v, &len) == 0; j++, n++)
        *cap |= !strcmp(name, "security.capability");
    return n;
}

static uint32_t no_files(void *arg)
{
    (void)arg;
    return 0;
}

TEST(fs_tree_withholds_privileges_of_a_peers_index)
{
    struct fs_tree *t;
    bool cap;
    log_level = -1;
    for (int trusted = 0; trusted <= 1; trusted++) {
        struct fs_layer_src src = {NULL, priv_nfiles, priv_file, priv_xattr, trusted};
        CHECK(fs_tree_build_src(&t, &src, 1, NULL) == 0);
        CHECK_INT(path_mode(t, "bin", "sh"), ==, S_IFREG | (trusted ? 04755 : 0755));
        CHECK_INT(path_mode(t, "bin", "newgrp"), ==, S_IFREG | (trusted ? 02755 : 0755));
        CHECK_INT(path_mode(t, NULL, "sda"), ==, trusted ? S_IFBLK | 0660 : 0);
        CHECK_INT(path_mode(t, NULL, "tty"), ==, trusted ? S_IFCHR | 0666 : 0);
        CHECK_INT(xattrs_of(t, &cap), ==, trusted ? 2 : 1);
        CHECK(cap == trusted);
        fs_tree_free(t);
    }
    /* a verified layer's privileges are withheld too while another layer is not verified: its
     * setuid programs would run as root with files the unverified layer supplies */
    struct fs_layer_src two[2] = {{NULL, priv_nfiles, priv_file, priv_xattr, true},
                                  {NULL, no_files, priv_file, priv_xattr, false}};
    for (int second = 0; second <= 1; second++) {
        two[1].trusted = second;
        CHECK(fs_tree_build_src(&t, two, 2, NULL) == 0);
        CHECK_INT(path_mode(t, "bin", "sh"), ==, S_IFREG | (second ? 04755 : 0755));
        CHECK_INT(path_mode(t, NULL, "sda"), ==, second ? S_IFBLK | 0660 : 0);
        CHECK_INT(xattrs_of(t, &cap), ==, second ? 2 : 1);
        fs_tree_free(t);
    }
}

/* Which layer an entry's metadata comes from decides what a mount fails with EIO once that
 * layer's index is shown false (fs/fuse.c): the layer that put the entry there last, the
 * highest for a directory several layers name, the target's for a hardlink, and none for a
 * directory made implicitly. */
struct files {
    const struct layer_file *f;
    uint32_t n;
};

static const struct layer_file lower_files[] = {
    {.path = "etc", .link = "", .type = '5', .mode = 0755},
    {.path = "etc/passwd", .link = "", .type = '0', .mode = 0644},
    {.path = "bin", .link = "", .type = '5', .mode = 0755},
    {.path = "bin/sh", .link = "", .type = '0', .mode = 0755},
    {.path = "lib/x", .link = "", .type = '0', .mode = 0644},
    {.path = "link", .link = "etc/passwd", .type = '2', .mode = 0777},
};

static const struct layer_file upper_files[] = {
    {.path = "etc", .link = "", .type = '5', .mode = 0700},
    {.path = "bin/sh", .link = "", .type = '0', .mode = 0755},
    {.path = "hard", .link = "etc/passwd", .type = '1', .mode = 0644},
};

static uint32_t files_n(void *arg)
{
    return ((struct files *)arg)->n;
}

static int files_get(void *arg, uint32_t i, struct layer_file *out)
{
    *out = ((struct files *)arg)->f[i];
    return 0;
}

static int layer_of(const struct fs_tree *t, const char *path)
{
    char p[64];
    snprintf(p, sizeof p, "%s", path);
    uint64_t ino = FS_ROOT_INO;
    for (char *save = NULL, *c = strtok_r(p, "/", &save); c; c = strtok_r(NULL, "/", &save))
        CHECK(fs_tree_lookup(t, ino, c, &ino) == 0);
    uint32_t layer;
    int rc = fs_tree_layer(t, ino, &layer);
    return rc < 0 ? rc : (int)layer;
}

TEST(fs_tree_names_the_layer_of_each_entry)
{
    struct files lower = {lower_files, ARRAY_SIZE(lower_files)};
    struct files upper = {upper_files, ARRAY_SIZE(upper_files)};
    struct fs_layer_src src[2] = {{&lower, files_n, files_get, NULL, true},
                                  {&upper, files_n, files_get, NULL, true}};
    struct fs_tree *t;
    uint32_t layer;
    log_level = -1;
    CHECK(fs_tree_build_src(&t, src, 2, NULL) == 0);
    CHECK_INT(fs_tree_layer(t, FS_ROOT_INO, &layer), ==, -ENOENT); /* made implicitly */
    CHECK_INT(layer_of(t, "lib"), ==, -ENOENT);
    CHECK_INT(layer_of(t, "lib/x"), ==, 0);
    CHECK_INT(layer_of(t, "etc"), ==, 1);
    CHECK_INT(layer_of(t, "etc/passwd"), ==, 0);
    CHECK_INT(layer_of(t, "hard"), ==, 0);
    CHECK_INT(layer_of(t, "bin"), ==, 0);
    CHECK_INT(layer_of(t, "bin/sh"), ==, 1);
    CHECK_INT(layer_of(t, "link"), ==, 0);
    CHECK_INT(fs_tree_layer(t, fs_tree_count(t) + 1, &layer), ==, -ENOENT);
    fs_tree_free(t);
}
