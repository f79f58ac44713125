/*
 * test_store_trust.c - a partial layer's index is its sender's word until the blob is whole
 * (docs/security.md): who sent it is kept with it, the first one kept is the one judged, and it
 * is judged by what it says, not by how its bytes were encoded.
 */
#include "stores.h"

#include "../../store/ingest.h"
#include "../../store/layer/layer.h"

#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *MT = "application/vnd.oci.image.layer.v1.tar+gzip";

/* A real gzip layer (several checkpoints with windows) ingested into src: its digest, blob and
 * index. */
static void gzip_layer(struct store *src, uint8_t d[DIGEST_LEN], struct buf *blob, struct buf *ib)
{
    char tgz[PATH_MAX], cmd[PATH_MAX * 2];
    snprintf(tgz, sizeof tgz, "%s/layer.tgz", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "tar -cf - -C /usr/lib/python3.11 email json logging 2>/dev/null | gzip -1 > %s", tgz);
    CHECK(system(cmd) == 0);
    int fd = open(tgz, O_RDONLY);
    CHECK(fd >= 0);
    uint8_t b[65536];
    ssize_t k;
    while ((k = read(fd, b, sizeof b)) > 0)
        CHECK(buf_append(blob, b, (size_t)k) == 0);
    close(fd);
    sha256_buf(blob->p, blob->len, d);
    CHECK(store_ingest_file(src, tgz, MT, d) == 0);
    CHECK(store_index_bytes(src, d, ib) == 0);
}

/* The index re-encoded: each window stored raw instead of deflated (what another ISA-L release's
 * different deflate output amounts to), and, if setuid, the first regular file made setuid. */
static void reencode(const struct buf *ib, bool setuid, struct buf *out)
{
    struct layer_index ix;
    CHECK(index_parse(ib->p, ib->len, &ix) == 0);
    uint8_t *raw = malloc((size_t)ix.ncps * CODEC_WINDOW + 1);
    struct inflate_state *st = malloc(sizeof *st);
    uint8_t *w = malloc(CODEC_WINDOW);
    CHECK(raw && st && w);
    uint32_t deflated = 0;
    for (uint32_t i = 0; i < ix.ncps; i++) {
        struct checkpoint *c = &ix.cps[i];
        if (!c->win_len)
            continue;
        deflated += c->zwin_len != c->win_len;
        const uint8_t *x = checkpoint_window(c, st, w);
        CHECK(x);
        memcpy(raw + (size_t)i * CODEC_WINDOW, x, c->win_len);
        c->zwin = raw + (size_t)i * CODEC_WINDOW;
        c->zwin_len = c->win_len;
    }
    CHECK_INT(deflated, >, 0); /* else the bytes would not change */
    bool made = !setuid;
    for (uint32_t i = 0; !made && i < ix.nfiles; i++)
        if (ix.files[i].type == TAR_REG) {
            ix.files[i].mode |= 04000;
            made = true;
        }
    CHECK(made);
    CHECK(index_serialize(&ix, out) == 0);
    index_release(&ix);
    free(raw);
    free(st);
    free(w);
}

/* Every chunk of the layer, from the blob, through a fetch handle: the layer is then complete
 * with the index it was added with. */
static void fill(struct store *s, const uint8_t d[DIGEST_LEN], const struct buf *blob)
{
    struct store_fetch *f;
    CHECK(store_fetch_open(s, d, &f) == 0);
    for (uint32_t i = 0; i < store_fetch_nchunks(f); i++) {
        struct store_chunk_in w;
        uint64_t off;
        uint32_t len;
        store_fetch_chunk(f, i, &off, &len);
        store_fetch_chunk_begin(f, i, &w);
        CHECK(store_fetch_chunk_data(f, &w, blob->p + off, len) == 0);
        CHECK(store_fetch_chunk_end(f, &w) == 0);
    }
    CHECK(store_fetch_finish(f, 0) == 0);
    store_fetch_free(f);
}

struct verdicts {
    int judged, n; /* n: false */
    uint8_t from[STORE_ID_LEN];
    bool known;
};

static void on_judged(void *arg, const uint8_t digest[DIGEST_LEN], const uint8_t *from,
                      const uint8_t peer_ix[DIGEST_LEN], const uint8_t blob_ix[DIGEST_LEN],
                      bool was_false)
{
    struct verdicts *v = arg;
    (void)digest, (void)peer_ix, (void)blob_ix;
    v->judged++;
    v->n += was_false;
    if ((v->known = from != NULL))
        memcpy(v->from, from, STORE_ID_LEN);
}

/* A forger's index is added first (by A); an honest one (by B) comes second and changes nothing.
 * After a restart, the completed layer's index is shown false and blamed on A, not B. The old
 * node blamed whoever sent the last index it fetched, and nobody after a restart. */
TEST(store_blames_a_false_index_on_its_sender_after_a_restart)
{
    struct store *src = open_at("bsrc", 1ull << 30), *s = open_at("bdst", 1ull << 30);
    uint8_t d[DIGEST_LEN], A[STORE_ID_LEN], B[STORE_ID_LEN];
    struct buf blob = {0}, ib = {0}, forged = {0};
    memset(A, 0xa1, sizeof A);
    memset(B, 0xb2, sizeof B);
    gzip_layer(src, d, &blob, &ib);
    reencode(&ib, true, &forged);

    struct store_fetch *f;
    uint8_t ixd[DIGEST_LEN], h[DIGEST_LEN];
    CHECK(store_fetch_new(s, d, MT, blob.len, forged.p, forged.len, A, &f) == 0);
    CHECK(!memcmp(store_fetch_sender(f, ixd), A, STORE_ID_LEN));
    sha256_buf(forged.p, forged.len, h);
    CHECK(!memcmp(ixd, h, DIGEST_LEN));
    store_fetch_free(f);
    CHECK(store_fetch_new(s, d, MT, blob.len, ib.p, ib.len, B, &f) == 0);
    CHECK(!memcmp(store_fetch_sender(f, ixd), A,
                  STORE_ID_LEN)); /* the first index stays, and its sender */
    store_fetch_free(f);
    fill(s, d, &blob);
    store_close(s);

    s = open_at("bdst", 1ull << 30);
    struct verdicts v = {0};
    store_set_index_watch(s, on_judged, &v);
    CHECK(store_layer_verify(s, d) == 0);
    CHECK_INT(v.judged, ==, 1);
    CHECK_INT(v.n, ==, 1);
    CHECK(v.known && !memcmp(v.from, A, STORE_ID_LEN));
    /* the layer holds the blob's own index now, built here: no sender */
    struct buf now = {0};
    CHECK(store_index_built_bytes(s, d, &now) == 0);
    CHECK(now.len == ib.len && !memcmp(now.p, ib.p, ib.len));
    CHECK(store_fetch_open(s, d, &f) == 0);
    CHECK(store_fetch_sender(f, ixd) == NULL);
    store_fetch_free(f);
    buf_release(&now);
    buf_release(&blob);
    buf_release(&ib);
    buf_release(&forged);
    store_close(s);
    store_close(src);
}

/* An index whose windows are encoded otherwise (another ISA-L release, another afsp build) says
 * what the blob's index says: it is not false, and a reader that opened the layer with it goes
 * on. The layer keeps and serves the blob's own index (a peer's bytes may carry padding no file
 * refers to), with the peer's as its alias. The old node compared the bytes and banned the honest
 * sender. */
TEST(store_an_index_encoded_otherwise_is_not_false)
{
    struct store *src = open_at("esrc", 1ull << 30), *s = open_at("edst", 1ull << 30);
    uint8_t d[DIGEST_LEN], C[STORE_ID_LEN];
    struct buf blob = {0}, ib = {0}, other = {0};
    memset(C, 0xc3, sizeof C);
    gzip_layer(src, d, &blob, &ib);
    reencode(&ib, false, &other);
    CHECK(other.len != ib.len);

    struct verdicts v = {0};
    store_set_index_watch(s, on_judged, &v);
    struct store_fetch *f;
    CHECK(store_fetch_new(s, d, MT, blob.len, other.p, other.len, C, &f) == 0);
    store_fetch_free(f);
    fill(s, d, &blob);
    struct store_layer *l;
    CHECK(store_layer_open(s, d, &l) == 0);
    CHECK(store_layer_verify(s, d) == 0);
    CHECK_INT(v.judged, ==, 1);
    CHECK_INT(v.n, ==, 0);
    CHECK(v.known && !memcmp(v.from, C, STORE_ID_LEN));
    struct layer_rec r;
    CHECK(store_layer_get(s, d, &r) == 0);
    CHECK(r.flags & LAYER_INDEX_BUILT);
    uint8_t h[DIGEST_LEN], mine[DIGEST_LEN];
    sha256_buf(other.p, other.len, h);
    sha256_buf(ib.p, ib.len, mine);
    CHECK(!memcmp(r.index_digest, mine, DIGEST_LEN));
    CHECK(!memcmp(r.index_alias, h, DIGEST_LEN));
    struct buf served = {0};
    CHECK(store_index_built_bytes(s, d, &served) == 0);
    CHECK(served.len == ib.len && !memcmp(served.p, ib.p, ib.len));
    buf_release(&served);
    CHECK_INT(store_layer_check(l), ==, 0); /* its first: it looks at the record */
    uint8_t buf[4096];
    CHECK_INT(store_layer_read(l, 0, buf, sizeof buf), ==, sizeof buf);
    store_layer_close(l);
    buf_release(&blob);
    buf_release(&ib);
    buf_release(&other);
    store_close(s);
    store_close(src);
}
