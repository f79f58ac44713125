/*
 * test_fs.c - the piece cache under pressure: many threads reading a real gzip layer at random
 * offsets through a cache of four pieces get exactly the layer's bytes, and nothing hangs (the
 * runner's timeout would catch a read that is never answered).
 */
#include "test.h"

#include "../../fs/fs.h"
#include "../../store/ingest.h"
#include "../../store/layer/layer.h"
#include "../../store/store.h"

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
    struct fs_layer_src src = {NULL, odd_nfiles, odd_file, NULL};
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
