/*
 * test_store.c - the store: index encoding, cache accounting, reservations, LRU eviction,
 * prune, stale reservations of dead processes, writes that evict and then fail (nothing of the
 * eviction may happen), reads that check chunks, partial layers. Crashes: test_store_crash.c.
 */
#include "stores.h"

#include "../../store/ingest.h"
#include "../../store/layer/layer.h"
#include "../../store/store.h"

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

TEST(store_index_roundtrip_is_deterministic)
{
    struct layer_index ix = {0};
    struct tar_xattr xa[2] = {{"security.capability", (const uint8_t *)"\x01\x00\x00\x02\0\0", 6},
                              {"user.note", (const uint8_t *)"hello", 5}};
    struct tar_entry e = {.path = "usr/bin/ping",
                          .link = "",
                          .type = TAR_REG,
                          .mode = 04755,
                          .uid = 1234,
                          .gid = 5678,
                          .mtime_sec = 1700000000,
                          .mtime_nsec = 5,
                          .size = 10,
                          .data_off = 512,
                          .xattrs = xa,
                          .nxattrs = 2};
    struct tar_entry l = {.path = "bin/sh",
                          .link = "/bin/busybox",
                          .type = TAR_SYMLINK,
                          .mode = 0777,
                          .data_off = 1536};
    ix.format = LAYER_GZIP;
    ix.blob_size = 100;
    ix.tar_size = 2048;
    CHECK(index_add_entry(&ix, &e) == 0);
    CHECK(index_add_entry(&ix, &l) == 0);
    ix.ncps = 2;
    ix.cps = calloc(2, sizeof *ix.cps);
    ix.cps[1].in_bit = 403;
    ix.cps[1].out_off = 1000;
    ix.cps[1].win_len = 1000;
    ix.cps[1].window = malloc(1000);
    for (int i = 0; i < 1000; i++)
        ix.cps[1].window[i] = (uint8_t)(i % 13);
    ix.nchunks = 2;
    ix.chunks = calloc(2, sizeof *ix.chunks);
    ix.chunks[0].len = 64;
    ix.chunks[1].off = 64;
    ix.chunks[1].len = 36;
    ix.chunks[1].h[3] = 9;

    struct buf a = {0}, b = {0};
    CHECK(index_serialize(&ix, &a) == 0);
    struct layer_index p;
    CHECK_INT(index_parse(a.p, a.len, &p), ==, 0);
    CHECK(index_serialize(&p, &b) == 0);
    CHECK_INT(a.len, ==, b.len);
    CHECK(memcmp(a.p, b.p, a.len) == 0);
    CHECK_INT(p.nfiles, ==, 2);
    CHECK_STR((char *)p.strtab.p + p.files[0].path_off, "usr/bin/ping");
    CHECK_STR((char *)p.strtab.p + p.files[1].link_off, "/bin/busybox");
    CHECK_INT(p.files[0].mode, ==, 04755);
    CHECK_INT(p.files[0].xattr_count, ==, 2);
    CHECK_INT(p.xattrs[p.files[0].xattr_first].val_len, ==, 6);
    CHECK(memcmp(p.strtab.p + p.xattrs[0].val_off, "\x01\x00\x00\x02\0\0", 6) == 0);
    CHECK_INT(p.cps[1].in_bit, ==, 403);
    CHECK(p.cps[1].window == NULL && p.cps[1].zwin_len > 0 && p.cps[1].zwin_len < 1000);
    uint8_t w[1000];
    uLongf wn = sizeof w;
    CHECK(uncompress(w, &wn, p.cps[1].zwin, p.cps[1].zwin_len) == Z_OK && wn == 1000);
    CHECK(memcmp(w, ix.cps[1].window, 1000) == 0);
    CHECK_INT(index_chunk_at(&p, 63), ==, 0);
    CHECK_INT(index_chunk_at(&p, 64), ==, 1);
    CHECK_INT(index_chunk_at(&p, 100), ==, 2);

    /* Every single-byte corruption and every truncation is rejected or parses to something
     * self-consistent, and never crashes (ASan checks the reads). */
    for (size_t i = 0; i < a.len; i++) {
        struct layer_index q;
        a.p[i] ^= 0x5a;
        if (index_parse(a.p, a.len, &q) == 0)
            index_release(&q);
        a.p[i] ^= 0x5a;
        if (index_parse(a.p, i, &q) == 0)
            test_fail(__FILE__, __LINE__, "a truncated index (%zu bytes) parsed", i);
    }
    index_release(&ix);
    index_release(&p);
    buf_release(&a);
    buf_release(&b);
}

/* The resumable SHA-256 is SHA-256: cut anywhere at a multiple of 64 and resumed from the
 * chaining value alone, it reaches the same digest; a cut elsewhere has no chaining value. */
TEST(store_sha256_chain_resumes_at_any_block)
{
    size_t n = 5000;
    uint8_t *data = malloc(n), want[DIGEST_LEN], got[DIGEST_LEN], cv[DIGEST_LEN];
    CHECK(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 131 + (i >> 7));
    for (size_t len = 0; len <= n; len += len < 200 ? 1 : 397) {
        sha256_buf(data, len, want);
        for (size_t cut = 0; cut <= len; cut += 64) {
            struct sha256c h;
            sha256c_start(&h, NULL, 0);
            sha256c_update(&h, data, cut / 2);
            sha256c_update(&h, data + cut / 2, cut - cut / 2);
            CHECK(sha256c_cv(&h, cv) == 0);
            if (cut < len) {
                struct sha256c off_block = h;
                uint8_t none[DIGEST_LEN];
                sha256c_update(&off_block, data + cut, 1);
                CHECK(sha256c_cv(&off_block, none) == -EINVAL);
            }
            sha256c_start(&h, cut ? cv : NULL, cut);
            sha256c_update(&h, data + cut, len - cut);
            sha256c_final(&h, got);
            CHECK(memcmp(got, want, DIGEST_LEN) == 0);
        }
    }
    free(data);
}

/* Chunks start at the block at or before each checkpoint's byte; each chunk's h is the chain at
 * its end and the last one's is the blob's digest, so every chunk checks out on its own. */
TEST(store_chunks_are_links_of_the_blob_digest)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/blob", test_tmpdir());
    size_t n = (9u << 20) + 777;
    uint8_t *data = malloc(n), d[DIGEST_LEN];
    CHECK(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 11);
    sha256_buf(data, n, d);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, data, n) == (ssize_t)n);
    struct layer_index ix = {0};
    ix.format = LAYER_GZIP;
    ix.blob_size = n;
    ix.ncps = 3;
    ix.cps = calloc(3, sizeof *ix.cps);
    ix.cps[1].in_bit = 8 * 1000 + 3; /* inside the first block after 960 */
    ix.cps[2].in_bit = 8 * (uint64_t)(1000 + 64 * 7);
    CHECK(index_make_chunks(&ix, fd) == 0);
    CHECK_INT(ix.chunks[0].off, ==, 0);
    CHECK_INT(ix.chunks[1].off, ==, 960);
    CHECK_INT(ix.chunks[2].off, ==, 1408);
    /* The rest, over 4 MiB, is cut into 1 MiB pieces until at most 4 MiB remain. */
    CHECK_INT(ix.chunks[3].off, ==, 1408 + (1u << 20));
    CHECK_INT(ix.chunks[ix.nchunks - 1].off + ix.chunks[ix.nchunks - 1].len, ==, n);
    CHECK(memcmp(ix.chunks[ix.nchunks - 1].h, d, DIGEST_LEN) == 0);
    for (uint32_t i = 0; i < ix.nchunks; i++) {
        struct index_chunk *c = &ix.chunks[i];
        uint8_t got[DIGEST_LEN];
        struct sha256c h;
        CHECK_INT(c->off % INDEX_CHUNK_ALIGN, ==, 0);
        sha256c_start(&h, i ? ix.chunks[i - 1].h : NULL, c->off);
        sha256c_update(&h, data + c->off, c->len);
        if (i + 1 < ix.nchunks)
            CHECK(sha256c_cv(&h, got) == 0);
        else
            sha256c_final(&h, got);
        CHECK(memcmp(got, c->h, DIGEST_LEN) == 0);
    }
    struct buf b = {0};
    struct layer_index p;
    CHECK(index_serialize(&ix, &b) == 0);
    CHECK(index_parse(b.p, b.len, &p) == 0);
    index_release(&p);
    /* A chunk that does not start at a block is refused. */
    put_le64(b.p + 52 + 44, 961);
    put_le32(b.p + 52 + 8, 961);
    CHECK(index_parse(b.p, b.len, &p) == AFSP_E_FORMAT);
    buf_release(&b);
    index_release(&ix);
    close(fd);
    free(data);
}

TEST(store_accounts_bytes_and_evicts_least_recently_used)
{
    struct store *s = open_at("lru", 1000000);
    uint8_t a[DIGEST_LEN], b[DIGEST_LEN], c[DIGEST_LEN], d[DIGEST_LEN];
    struct store_usage u;
    CHECK(put_layer(s, 0, 1, 300000, a) == 0);
    CHECK(put_layer(s, 0, 2, 300000, b) == 0);
    CHECK(put_layer(s, 0, 3, 300000, c) == 0);
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.nlayers, ==, 3);
    CHECK(u.used >= 900000 && u.used < 1000000); /* blobs plus their small indexes */

    /* Reserving room for another layer evicts the oldest (a) only. */
    uint64_t id;
    CHECK_INT(store_reserve(s, NULL, 0, 300000, &id), ==, 0);
    CHECK(!has_layer(s, a));
    CHECK(has_layer(s, b) && has_layer(s, c));
    char path[PATH_MAX];
    store_blob_path(s, a, path);
    CHECK(access(path, F_OK) < 0); /* its file went with it */
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.reserved, ==, 300000);
    CHECK(put_layer(s, id, 4, 290000, d) == 0);
    store_unreserve(s, id);
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.reserved, ==, 0);
    CHECK(u.used <= 1000000);
    store_close(s);
}

TEST(store_reserve_fails_fast_when_an_image_can_never_fit)
{
    struct store *s = open_at("toobig", 1000000);
    uint8_t a[DIGEST_LEN];
    uint64_t id;
    CHECK(put_layer(s, 0, 1, 400000, a) == 0);
    /* An image whose own layers exceed the limit: refused, and nothing is evicted for it. */
    CHECK_INT(store_reserve(s, NULL, 0, 1000001, &id), ==, AFSP_E_TOOBIG);
    CHECK(has_layer(s, a));
    CHECK(strstr(err_msg(AFSP_E_TOOBIG), "cache limit") != NULL);
    /* Pinned layers of the image count against it: 400000 present + 700000 new. */
    const uint8_t(*pin)[DIGEST_LEN] = (const uint8_t(*)[DIGEST_LEN])a;
    CHECK_INT(store_reserve(s, pin, 1, 700000, &id), ==, AFSP_E_TOOBIG);
    CHECK(has_layer(s, a));
    store_close(s);
}

TEST(store_concurrent_reservations_never_overcommit)
{
    struct store *s = open_at("conc", 1000000);
    uint64_t id1, id2;
    CHECK_INT(store_reserve(s, NULL, 0, 600000, &id1), ==, 0);
    /* Another pull (another process, or this one) cannot take what is reserved. */
    pid_t pid = fork();
    if (pid == 0) {
        struct store *s2 = open_at("conc", 1000000);
        uint64_t id;
        _exit(store_reserve(s2, NULL, 0, 600000, &id) == AFSP_E_TOOBIG ? 0 : 1);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    store_unreserve(s, id1);
    CHECK_INT(store_reserve(s, NULL, 0, 600000, &id2), ==, 0);
    store_unreserve(s, id2);
    store_close(s);
}

TEST(store_drops_reservations_of_dead_processes)
{
    struct store *s = open_at("dead", 1000000);
    pid_t pid = fork();
    if (pid == 0) {
        struct store *s2 = open_at("dead", 1000000);
        uint64_t id;
        if (store_reserve(s2, NULL, 0, 900000, &id) < 0)
            _exit(1);
        raise(SIGKILL); /* dies holding the reservation */
    }
    int st;
    struct store_usage u;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st));
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.reserved, ==, 900000);
    store_close(s);
    s = open_at("dead", 1000000); /* the next open clears it */
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.reserved, ==, 0);
    store_close(s);
}

TEST(store_prune_frees_the_percentage_oldest_first)
{
    struct store *s = open_at("prune", 10000000);
    uint8_t d[5][DIGEST_LEN];
    struct store_usage u;
    uint64_t freed;
    for (int i = 0; i < 5; i++)
        CHECK(put_layer(s, 0, i + 10, 100000, d[i]) == 0);
    CHECK(store_usage_get(s, &u) == 0);
    uint64_t before = u.used;
    CHECK(store_prune(s, 30, &freed) == 0);
    CHECK(freed >= before * 30 / 100);
    /* 30% of five equal layers is two layers (1.5 rounded up to whole layers), the oldest. */
    CHECK(!has_layer(s, d[0]) && !has_layer(s, d[1]));
    CHECK(has_layer(s, d[2]) && has_layer(s, d[3]) && has_layer(s, d[4]));
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.used, ==, before - freed);
    CHECK(store_prune(s, 0, &freed) == 0 && freed == 0);
    CHECK(store_prune(s, 101, &freed) == AFSP_E_USAGE);
    CHECK(store_prune(s, 100, &freed) == 0);
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.used, ==, 0);
    CHECK_INT(u.nlayers, ==, 0);
    store_close(s);
}

/* ---- eviction that cannot make room -------------------------------------------------------- */

/* The evict hook of the tests below: remembers each layer it is told of. */
struct evictions {
    uint8_t d[8][DIGEST_LEN];
    int n;
};

static void record_eviction(void *arg, const uint8_t digest[DIGEST_LEN])
{
    struct evictions *e = arg;
    if (e->n == 8)
        test_fail(__FILE__, __LINE__, "the evict hook was called more than 8 times");
    memcpy(e->d[e->n++], digest, DIGEST_LEN);
}

/* What a user of the store relies on after any failed write: every layer it lists has its blob
 * file, a complete one reads back as its digest (these layers are plain tar: the blob is the
 * digest's preimage), and the evict hook (the node withdrawing providers) was told of none of
 * them. Prints every layer that breaks this, then fails; returns how many layers are listed. */
static size_t check_listed_layers_whole(struct store *s, const struct evictions *e)
{
    struct layer_info *li;
    size_t n;
    int bad = 0;
    char path[PATH_MAX], dg[DIGEST_STR_LEN + 1];
    CHECK(store_layers_list(s, &li, &n) == 0);
    for (size_t i = 0; i < n; i++) {
        digest_fmt(li[i].digest, dg);
        for (int j = 0; j < e->n; j++)
            if (!memcmp(e->d[j], li[i].digest, DIGEST_LEN)) {
                fprintf(stderr, "  %s: listed, but the evict hook was told of it\n", dg);
                bad++;
            }
        store_blob_path(s, li[i].digest, path);
        if (access(path, F_OK) < 0) {
            fprintf(stderr, "  %s: listed, but its blob file is gone\n", dg);
            bad++;
        }
        if (!li[i].complete)
            continue;
        struct store_layer *l;
        uint8_t got[DIGEST_LEN], *blob = malloc(li[i].size ? li[i].size : 1);
        CHECK(blob);
        int rc = store_layer_open(s, li[i].digest, &l);
        if (rc == 0) {
            if ((rc = store_layer_read_blob(l, 0, blob, li[i].size)) == 0) {
                sha256_buf(blob, li[i].size, got);
                if (memcmp(got, li[i].digest, DIGEST_LEN))
                    rc = AFSP_E_DIGEST;
            }
            store_layer_close(l);
        }
        if (rc < 0) {
            fprintf(stderr, "  %s: listed, but cannot be read back: %s\n", dg, err_str(rc));
            bad++;
        }
        free(blob);
    }
    free(li);
    if (bad)
        test_fail(__FILE__, __LINE__, "%d problem(s) with the layers listed", bad);
    return n;
}

/* A store of limit 1000000 holding three layers of 250000 bytes, oldest first a, b, c, with c
 * pinned by this process (as a mount pins its layers) and hook e set. */
static struct store *open_with_pinned_layer(const char *sub, struct evictions *e,
                                            uint8_t d[3][DIGEST_LEN], struct store_usage *u)
{
    struct store *s = open_at(sub, 1000000);
    store_set_evict_hook(s, record_eviction, e);
    for (int i = 0; i < 3; i++)
        CHECK(put_layer(s, 0, i + 1, 250000, d[i]) == 0);
    CHECK(store_pin(s, (const uint8_t(*)[DIGEST_LEN])d[2], 1) == 0);
    CHECK(store_usage_get(s, u) == 0);
    CHECK_INT(u->nlayers, ==, 3);
    CHECK_INT(e->n, ==, 0);
    return s;
}

/* A reservation that fits the limit but not beside a pinned layer evicts a and b inside its
 * transaction, then fails: the transaction aborts, so nothing of the eviction may happen. */
TEST(store_reservation_that_cannot_fit_evicts_nothing)
{
    struct evictions e = {0};
    uint8_t d[3][DIGEST_LEN];
    struct store_usage u0, u;
    uint64_t id;
    char path[PATH_MAX];
    struct store *s = open_with_pinned_layer("evresv", &e, d, &u0);

    CHECK_INT(store_reserve(s, NULL, 0, 800000, &id), ==, AFSP_E_TOOBIG);
    CHECK_INT(check_listed_layers_whole(s, &e), ==, 3);
    CHECK_INT(e.n, ==, 0);
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.used, ==, u0.used);
    CHECK_INT(u.reserved, ==, 0);
    CHECK_INT(u.nlayers, ==, 3);

    /* One that fits once a and b go: they go, files and all, and the hook hears of exactly them. */
    CHECK_INT(store_reserve(s, NULL, 0, 700000, &id), ==, 0);
    CHECK_INT(e.n, ==, 2);
    CHECK(!memcmp(e.d[0], d[0], DIGEST_LEN) && !memcmp(e.d[1], d[1], DIGEST_LEN));
    for (int i = 0; i < 2; i++) {
        CHECK(!has_layer(s, d[i]));
        store_blob_path(s, d[i], path);
        CHECK(access(path, F_OK) < 0);
    }
    CHECK_INT(check_listed_layers_whole(s, &e), ==, 1);
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.reserved, ==, 700000);
    CHECK(u.used < u0.used - 500000);
    store_unreserve(s, id);
    store_close(s);
}

/* The same through a commit: the layer being committed does not fit beside the pinned one, so
 * its download is dropped and the layers evicted for it stay. */
TEST(store_commit_that_cannot_fit_evicts_nothing)
{
    struct evictions e = {0};
    uint8_t d[3][DIGEST_LEN], big[DIGEST_LEN];
    struct store_usage u0, u;
    char path[PATH_MAX];
    struct store *s = open_with_pinned_layer("evcommit", &e, d, &u0);

    CHECK_INT(put_layer(s, 0, 4, 800000, big), ==, AFSP_E_TOOBIG);
    CHECK(!has_layer(s, big));
    store_blob_path(s, big, path);
    CHECK(access(path, F_OK) < 0);
    CHECK_INT(check_listed_layers_whole(s, &e), ==, 3);
    CHECK_INT(e.n, ==, 0);
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.used, ==, u0.used);
    CHECK_INT(u.nlayers, ==, 3);
    store_close(s);
}

/* Reads through a layer handle check each chunk against the index before using it: a byte
 * flipped on disk fails the reads that need its chunk (AFSP_E_DIGEST), never returns wrong
 * bytes, and leaves the other chunks readable. Readers of one handle work from many threads. */
struct rd_arg {
    struct store_layer *l;
    const uint8_t *data;
    size_t size;
    unsigned seed;
    int bad;
};

static void *rd_thread(void *p)
{
    struct rd_arg *a = p;
    struct store_reader *r;
    uint8_t *buf = malloc(200000);
    if (!buf || store_reader_new(a->l, &r) < 0) {
        a->bad = 1;
        free(buf);
        return NULL;
    }
    for (int i = 0; i < 200; i++) {
        a->seed = a->seed * 1103515245 + 12345;
        size_t off = (a->seed >> 4) % a->size, n = MIN((size_t)200000, a->size - off);
        if (store_reader_read(r, off, buf, n) != (ssize_t)n || memcmp(buf, a->data + off, n))
            a->bad = 1;
    }
    store_reader_free(r);
    free(buf);
    return NULL;
}

TEST(store_reads_verify_chunks_and_fail_on_corruption)
{
    struct store *s = open_at("verify", 1ull << 30);
    uint8_t d[DIGEST_LEN];
    const size_t size = 6u << 20, seed = 5;
    CHECK(put_layer(s, 0, seed, size, d) == 0);
    uint8_t *data = layer_bytes(seed, size), *buf = malloc(1 << 20);
    CHECK(buf);

    struct store_layer *l;
    CHECK(store_layer_open(s, d, &l) == 0);
    CHECK_INT(store_layer_size(l), ==, size);
    pthread_t t[4];
    struct rd_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct rd_arg){l, data, size, (unsigned)i + 1, 0};
        CHECK(pthread_create(&t[i], NULL, rd_thread, &a[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(a[i].bad, ==, 0);
    }
    store_layer_close(l);

    /* flip one byte of the blob file in its second MiB: chunks are [0,1), [1,2), [2,6) MiB (one
     * checkpoint, so the gap is cut into INDEX_CHUNK_SPLIT pieces) */
    char path[PATH_MAX];
    store_blob_path(s, d, path);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t x = (uint8_t)~data[(3u << 19) + 3];
    CHECK(pwrite(fd, &x, 1, (3u << 19) + 3) == 1);
    close(fd);

    CHECK(store_layer_open(s, d, &l) == 0);
    CHECK_INT(store_layer_read(l, 0, buf, 1 << 20), ==, 1 << 20);
    CHECK(!memcmp(buf, data, 1 << 20));
    CHECK_INT(store_layer_read(l, (3u << 19), buf, 100), ==, AFSP_E_DIGEST);
    CHECK_INT(store_layer_read(l, (2u << 20) - 10, buf, 20), ==, AFSP_E_DIGEST);
    CHECK_INT(store_layer_read(l, 3u << 20, buf, 1 << 20), ==, 1 << 20);
    CHECK(!memcmp(buf, data + (3u << 20), 1 << 20));
    store_layer_close(l);
    store_close(s);
    free(data);
    free(buf);
}

/* The test's fetcher: fills chunks of the layer from the bytes it knows, as the node would. */
struct fill_arg {
    struct store *s;
    const uint8_t *data;
    int calls;
    bool unflushed;          /* the chunks are written and checked, not yet synced and marked */
    bool garbage;            /* the chunks' bytes in the file are wrong (a fetcher that lies) */
    int again;               /* calls with STORE_FETCH_AGAIN */
    bool first_garbage_only; /* garbage until the first STORE_FETCH_AGAIN */
};

static int fill_chunks(void *arg, const uint8_t digest[DIGEST_LEN], uint32_t first, uint32_t last,
                       unsigned flags)
{
    struct fill_arg *a = arg;
    a->again += (flags & STORE_FETCH_AGAIN) != 0;
    struct store_fetch *f;
    int rc = store_fetch_open(a->s, digest, &f);
    a->calls++;
    for (uint32_t i = first; rc == 0 && i <= last; i++) {
        struct store_chunk_in w;
        uint64_t off;
        uint32_t len;
        store_fetch_chunk(f, i, &off, &len);
        if (a->garbage && !(a->first_garbage_only && (flags & STORE_FETCH_AGAIN))) {
            char path[PATH_MAX];
            store_blob_path(a->s, digest, path);
            int fd = open(path, O_WRONLY);
            uint8_t *z = calloc(1, len);
            rc = fd >= 0 && z && pwrite(fd, z, len, (off_t)off) == (ssize_t)len ? 0 : -EIO;
            free(z);
            if (fd >= 0)
                close(fd);
            continue;
        }
        store_fetch_chunk_begin(f, i, &w);
        rc = store_fetch_chunk_data(f, &w, a->data + off, len);
        rc = rc ? rc : store_fetch_chunk_end(f, &w);
    }
    rc = rc || a->unflushed ? rc : store_fetch_flush(f, 0);
    store_fetch_free(f);
    return rc;
}

/* The node answers a fetch once the chunks are written and checked, before they are marked
 * present: a reader takes them at the answer, not at the mark, and still checks their bytes. */
TEST(store_reader_takes_written_chunks_and_checks_them)
{
    struct store *src = open_at("wfrom", 1ull << 30), *s = open_at("wto", 64u << 20);
    const size_t size = 6u << 20;
    uint8_t d[DIGEST_LEN], buf[1000];
    struct buf ib = {0}, bm = {0};
    CHECK(put_layer(src, 0, 9, size, d) == 0);
    CHECK(store_index_bytes(src, d, &ib) == 0);
    uint8_t *data = layer_bytes(9, size);
    struct store_fetch *f;
    CHECK(store_fetch_new(s, d, "application/vnd.oci.image.layer.v1.tar", size, ib.p, ib.len, NULL,
                          &f) == 0);
    store_fetch_free(f);

    struct store_layer *l;
    struct fill_arg fa = {s, data, 0, true, false, 0, false};
    store_set_fetcher(s, fill_chunks, &fa);
    CHECK(store_layer_open(s, d, &l) == 0);
    CHECK_INT(store_layer_read(l, 10, buf, sizeof buf), ==, (ssize_t)sizeof buf);
    CHECK(!memcmp(buf, data + 10, sizeof buf));
    CHECK_INT(store_layer_read(l, 20, buf, sizeof buf), ==, (ssize_t)sizeof buf);
    CHECK_INT(fa.calls, ==, 1); /* chunk 0 taken once, though no mark shows it */
    CHECK(store_present_get(s, d, &bm) == 0 && bm.len == 1 && bm.p[0] == 0);
    buf_release(&bm);

    /* chunk 1 "written" with the wrong bytes (a write lost with a failed sync): asked for once
     * more, anew, and read when the bytes are right the second time */
    fa.garbage = true;
    fa.first_garbage_only = true;
    CHECK_INT(store_layer_read(l, (1u << 20) + 5, buf, sizeof buf), ==, (ssize_t)sizeof buf);
    CHECK(!memcmp(buf, data + (1u << 20) + 5, sizeof buf));
    CHECK_INT(fa.calls, ==, 3);
    CHECK_INT(fa.again, ==, 1);
    /* chunk 2 wrong both times: the read fails on its check, after one more ask */
    fa.first_garbage_only = false;
    CHECK_INT(store_layer_read(l, (3u << 20) + 5, buf, sizeof buf), ==, AFSP_E_DIGEST);
    CHECK_INT(fa.calls, ==, 5);
    CHECK_INT(fa.again, ==, 2);
    store_layer_close(l);
    store_set_fetcher(s, NULL, NULL);
    free(data);
    buf_release(&ib);
    store_close(s);
    store_close(src);
}

/* A layer added from another node's index is partial: it counts its index and then each chunk
 * as it is marked, evicting others for room; a chunk that fails its check is not written; reads
 * of missing chunks go to the fetcher; the last chunk makes the layer complete and the blob file
 * the blob. */
TEST(store_partial_layer_fills_in_place_and_counts_its_bytes)
{
    struct store *src = open_at("pfrom", 1ull << 30), *s = open_at("pto", 8u << 20);
    const size_t size = 6u << 20;
    uint8_t d[DIGEST_LEN], other[DIGEST_LEN];
    struct buf ib = {0};
    CHECK(put_layer(src, 0, 9, size, d) == 0);
    CHECK(store_index_bytes(src, d, &ib) == 0);
    uint8_t *data = layer_bytes(9, size), *buf = malloc(1 << 20);
    CHECK(buf);
    CHECK(put_layer(s, 0, 4, 3u << 20, other) == 0);

    const char *mt = "application/vnd.oci.image.layer.v1.tar";
    struct store_fetch *f;
    CHECK_INT(store_fetch_new(s, d, mt, size - 1, ib.p, ib.len, NULL, &f), ==, AFSP_E_FORMAT);
    CHECK(store_fetch_new(s, d, mt, size, ib.p, ib.len, NULL, &f) == 0);
    struct store_usage u;
    CHECK(store_usage_get(s, &u) == 0);
    uint64_t other_stored = u.used - ib.len; /* the other layer's blob and index */
    CHECK_INT(other_stored, >, 3u << 20);
    CHECK_INT(store_fetch_nchunks(f), ==, 3); /* [0,1), [1,2), [2,6) MiB */
    CHECK_INT(store_fetch_missing(f), ==, 3);

    /* chunk 1: a flipped byte is refused and not written; the right bytes, in two pieces, are */
    struct store_chunk_in w;
    uint8_t *bad = malloc(1 << 20);
    CHECK(bad);
    memcpy(bad, data + (1u << 20), 1 << 20);
    bad[12345] ^= 1;
    store_fetch_chunk_begin(f, 1, &w);
    CHECK(store_fetch_chunk_data(f, &w, bad, 1 << 20) == 0);
    CHECK_INT(store_fetch_chunk_end(f, &w), ==, AFSP_E_DIGEST);
    CHECK(!store_fetch_has(f, 1));
    store_fetch_chunk_begin(f, 1, &w);
    CHECK(store_fetch_chunk_data(f, &w, data + (1u << 20), 1000) == 0);
    CHECK(store_fetch_chunk_data(f, &w, data + (1u << 20) + 1000, (1 << 20) - 1000) == 0);
    CHECK(store_fetch_chunk_end(f, &w) == 0);
    CHECK(store_fetch_flush(f, 0) == 0);
    store_fetch_free(f);
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.used, ==, other_stored + ib.len + (1u << 20));

    /* reads: chunk 1 is here; chunk 0 is not, and without a fetcher that is an error */
    struct store_layer *l;
    CHECK(store_layer_open(s, d, &l) == 0);
    CHECK_INT(store_layer_read(l, (1u << 20) + 5, buf, 1000), ==, 1000);
    CHECK(!memcmp(buf, data + (1u << 20) + 5, 1000));
    CHECK_INT(store_layer_read(l, 10, buf, 1000), ==, AFSP_E_NOTFOUND);
    struct fill_arg fa = {s, data, 0, false, false, 0, false};
    store_set_fetcher(s, fill_chunks, &fa);
    CHECK_INT(store_layer_read(l, 10, buf, 1000), ==, 1000);
    CHECK(!memcmp(buf, data + 10, 1000));
    CHECK_INT(fa.calls, ==, 1);
    CHECK(has_layer(s, other));
    /* chunk 2 (4 MiB) does not fit beside the other layer: it is evicted */
    CHECK_INT(store_layer_read(l, size - 1000, buf, 1000), ==, 1000);
    CHECK(!memcmp(buf, data + size - 1000, 1000));
    CHECK_INT(fa.calls, ==, 2);
    CHECK(!has_layer(s, other));
    store_layer_close(l);

    /* complete: the record says so, the bytes are all counted, the file is the blob */
    struct layer_info *li;
    size_t n;
    CHECK(store_layers_list(s, &li, &n) == 0);
    CHECK_INT(n, ==, 1);
    CHECK(li[0].complete && li[0].chunks_present == 3);
    CHECK_INT(li[0].stored_bytes, ==, size + ib.len);
    free(li);
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.used, ==, size + ib.len);
    char path[PATH_MAX];
    store_blob_path(s, d, path);
    int fd = open(path, O_RDONLY);
    uint8_t *back = malloc(size);
    CHECK(fd >= 0 && back && read(fd, back, size) == (ssize_t)size && !memcmp(back, data, size));
    close(fd);
    free(back);
    free(bad);
    free(buf);
    free(data);
    buf_release(&ib);
    store_close(s);
    store_close(src);
}

/* The same through chunks marked present: a chunk of a partial layer that does not fit beside a
 * pinned layer evicts the unpinned one inside the transaction, then fails; it stays. */
TEST(store_chunks_that_cannot_fit_evict_nothing)
{
    struct store *src = open_at("cfrom", 1ull << 30), *s = open_at("cto", 8u << 20);
    const size_t size = 6u << 20;
    uint8_t d[DIGEST_LEN], x[DIGEST_LEN], y[DIGEST_LEN];
    struct evictions e = {0};
    struct store_usage u0, u;
    struct buf ib = {0};
    CHECK(put_layer(src, 0, 9, size, d) == 0);
    CHECK(store_index_bytes(src, d, &ib) == 0);
    uint8_t *data = layer_bytes(9, size);
    store_set_evict_hook(s, record_eviction, &e);
    CHECK(put_layer(s, 0, 4, 1u << 20, x) == 0);
    CHECK(put_layer(s, 0, 5, 9u << 19, y) == 0); /* 4.5 MiB, pinned */
    CHECK(store_pin(s, (const uint8_t(*)[DIGEST_LEN])y, 1) == 0);

    struct store_fetch *f;
    const char *mt = "application/vnd.oci.image.layer.v1.tar";
    CHECK(store_fetch_new(s, d, mt, size, ib.p, ib.len, NULL, &f) == 0);
    CHECK(store_usage_get(s, &u0) == 0);
    CHECK_INT(u0.nlayers, ==, 3);
    /* chunk 2 is 4 MiB: 1 + 4.5 + 4 MiB is over the limit, and still is without x */
    struct store_chunk_in w;
    uint64_t off;
    uint32_t len;
    store_fetch_chunk(f, 2, &off, &len);
    CHECK_INT(len, ==, 4u << 20);
    store_fetch_chunk_begin(f, 2, &w);
    CHECK(store_fetch_chunk_data(f, &w, data + off, len) == 0);
    CHECK(store_fetch_chunk_end(f, &w) == 0);
    CHECK_INT(store_fetch_flush(f, 0), ==, AFSP_E_TOOBIG);
    store_fetch_free(f);

    CHECK_INT(check_listed_layers_whole(s, &e), ==, 3);
    CHECK_INT(e.n, ==, 0);
    CHECK(has_layer(s, x));
    CHECK(store_usage_get(s, &u) == 0);
    CHECK_INT(u.used, ==, u0.used);
    free(data);
    buf_release(&ib);
    store_close(s);
    store_close(src);
}
