/*
 * test_codec.c - the layer codecs: gzip (ISA-L), zstd and plain tar, indexing and random reads.
 *
 * Blobs are made by the real tools (gzip -1/-6/-9, zstd) from a tar of /usr, and in-process with
 * zlib for what the tools do not make (fixed Huffman, Huffman-only, RLE, flushes, level 0,
 * header fields). Every blob is indexed with several push patterns: the output must equal the
 * data that was compressed and the checkpoints (windows included) must be identical whatever the
 * split. Every checkpoint is then used to restart a fresh reader, and random reads, sequential
 * reads and reads at the end are compared with the data. Corrupt and truncated blobs must fail
 * cleanly.
 */
#include "test.h"

#include "../../store/layer/layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- helpers ------------------------------------------------------------------------------ */

struct blob {
    uint8_t *p;
    size_t n;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return rng_state = x;
}

static const char *tpath(const char *name)
{
    static char paths[8][4096];
    static unsigned next;
    char *p = paths[next++ % 8];
    snprintf(p, 4096, "%s/%s", test_tmpdir(), name);
    return p;
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st != 0)
        test_fail(__FILE__, __LINE__, "command failed (%d): %s", st, cmd);
}

static struct blob slurp(const char *path)
{
    struct blob b = {0};
    FILE *f = fopen(path, "rb");
    CHECK(f);
    struct stat s;
    CHECK(fstat(fileno(f), &s) == 0);
    b.n = (size_t)s.st_size;
    b.p = malloc(b.n + 1);
    CHECK(b.p);
    CHECK(fread(b.p, 1, b.n, f) == b.n);
    fclose(f);
    return b;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(p, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

static void blob_cat(struct blob *b, const void *p, size_t n)
{
    b->p = realloc(b->p, b->n + n + 1);
    CHECK(b->p);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* n bytes of realistic layer content: a tar of Perl and Python library trees. */
static struct blob make_tar(size_t n)
{
    const char *p = tpath("data.tar");
    sh("tar -cf - -C /usr share/perl lib/python3.11 share/doc 2>/dev/null | head -c %zu > %s", n,
       p);
    struct blob b = slurp(p);
    CHECK_INT(b.n, ==, n);
    return b;
}

/* Runs "cmd < in > out" on data and returns out. */
static struct blob filter(const char *cmd, const struct blob *data)
{
    const char *in = tpath("filter.in"), *out = tpath("filter.out");
    spit(in, data->p, data->n);
    sh("%s < %s > %s", cmd, in, out);
    struct blob b = slurp(out);
    unlink(in);
    unlink(out);
    return b;
}

/* One gzip member made in-process: raw deflate by zlib with the given level and strategy, a
 * Z_SYNC_FLUSH every flush_every input bytes (0: never), and the optional header fields. */
static struct blob gz_member(const struct blob *data, int level, int strategy, size_t flush_every,
                             uint8_t flags)
{
    struct blob out = {0};
    uint8_t hdr[10] = {0x1f, 0x8b, 8, flags, 1, 2, 3, 4, 0, 3};
    uLong hcrc = crc32(0, hdr, 10);
    blob_cat(&out, hdr, 10);
    if (flags & 0x04) {
        uint8_t x[2 + 300];
        x[0] = 300 & 0xff, x[1] = 300 >> 8;
        for (int i = 0; i < 300; i++)
            x[2 + i] = (uint8_t)(i * 7);
        blob_cat(&out, x, sizeof x);
        hcrc = crc32(hcrc, x, sizeof x);
    }
    if (flags & 0x08) {
        static const char name[] = "layer.tar";
        blob_cat(&out, name, sizeof name);
        hcrc = crc32(hcrc, (const uint8_t *)name, sizeof name);
    }
    if (flags & 0x10) {
        static const char comment[] = "a comment, with the NUL";
        blob_cat(&out, comment, sizeof comment);
        hcrc = crc32(hcrc, (const uint8_t *)comment, sizeof comment);
    }
    if (flags & 0x02) {
        uint8_t c[2] = {(uint8_t)hcrc, (uint8_t)(hcrc >> 8)};
        blob_cat(&out, c, 2);
    }

    z_stream z = {0};
    CHECK(deflateInit2(&z, level, Z_DEFLATED, -15, 8, strategy) == Z_OK);
    size_t cap = deflateBound(&z, data->n) + (flush_every ? data->n / flush_every * 16 : 0) + 65536;
    uint8_t *buf = malloc(cap);
    CHECK(buf);
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    size_t off = 0;
    for (;;) {
        size_t take = flush_every ? MIN(flush_every, data->n - off) : data->n - off;
        z.next_in = data->p + off;
        z.avail_in = (uInt)take;
        off += take;
        int last = off == data->n;
        CHECK(deflate(&z, last ? Z_FINISH : Z_SYNC_FLUSH) == (last ? Z_STREAM_END : Z_OK));
        if (last)
            break;
    }
    blob_cat(&out, buf, z.total_out);
    deflateEnd(&z);
    free(buf);
    uint8_t trl[8];
    put_le32(trl, (uint32_t)crc32(0, data->p, (uInt)data->n));
    put_le32(trl + 4, (uint32_t)data->n);
    blob_cat(&out, trl, 8);
    return out;
}

/* ---- indexing ----------------------------------------------------------------------------- */

struct sink {
    const struct blob *ref;
    uint64_t pos;
    int mismatch;
    uint64_t calls;
};

static int sink_cb(void *arg, const uint8_t *p, size_t n)
{
    struct sink *s = arg;
    if (s->pos + n > s->ref->n || memcmp(s->ref->p + s->pos, p, n))
        s->mismatch = 1;
    s->pos += n;
    s->calls++;
    return 0;
}

enum split { SPLIT_WHOLE, SPLIT_16K, SPLIT_ODD, SPLIT_RANDOM, SPLIT_BYTES };

struct indexed {
    int rc;
    struct checkpoint *cps;
    size_t ncps;
    uint64_t out;
};

/* Indexes blob, pushing it in pieces as split says; the output is compared with ref. */
static struct indexed index_blob(enum layer_format fmt, const struct blob *b,
                                 const struct blob *ref, enum split split)
{
    struct sink s = {ref, 0, 0, 0};
    struct codec_indexer *ix;
    CHECK(codec_indexer_new(&ix, fmt, sink_cb, &s) == 0);
    int rc = 0;
    size_t off = 0;
    while (off < b->n && !rc) {
        size_t k;
        switch (split) {
        case SPLIT_WHOLE:
            k = b->n;
            break;
        case SPLIT_16K:
            k = 16384;
            break;
        case SPLIT_ODD:
            k = 4093;
            break;
        case SPLIT_RANDOM:
            k = rnd() % 3 == 0 ? 1 + rnd() % 64 : 1 + rnd() % 300000;
            break;
        default:
            k = 1;
            break;
        }
        k = MIN(k, b->n - off);
        rc = codec_indexer_push(ix, b->p + off, k);
        off += k;
    }
    if (!rc)
        rc = codec_indexer_finish(ix);
    struct indexed r = {rc, NULL, 0, codec_indexer_out_bytes(ix)};
    CHECK_INT(r.out, ==, s.pos);
    if (!rc) {
        CHECK(!s.mismatch);
        CHECK_INT(s.pos, ==, ref->n);
    }
    /* after an error, every call returns it */
    if (rc)
        CHECK_INT(codec_indexer_push(ix, b->p, MIN(b->n, 10)), ==, rc);
    size_t n_seen;
    const struct checkpoint *seen = codec_indexer_checkpoints(ix, &n_seen);
    r.cps = codec_indexer_take(ix, &r.ncps);
    CHECK(seen == r.cps);
    CHECK_INT(n_seen, ==, r.ncps);
    codec_indexer_free(ix); /* the checkpoints are ours now */
    return r;
}

static void check_same_cps(const struct indexed *a, const struct indexed *b)
{
    CHECK_INT(a->ncps, ==, b->ncps);
    for (size_t i = 0; i < a->ncps; i++) {
        CHECK_INT(a->cps[i].in_bit, ==, b->cps[i].in_bit);
        CHECK_INT(a->cps[i].out_off, ==, b->cps[i].out_off);
        CHECK_INT(a->cps[i].win_len, ==, b->cps[i].win_len);
        CHECK(a->cps[i].win_len == 0 ||
              !memcmp(a->cps[i].window, b->cps[i].window, a->cps[i].win_len));
    }
}

/* The checkpoint rules that hold for every blob. */
static void check_cp_rules(enum layer_format fmt, const struct indexed *x, const struct blob *b,
                           const struct blob *ref)
{
    CHECK(x->ncps >= 1);
    CHECK_INT(x->cps[0].in_bit, ==, 0);
    CHECK_INT(x->cps[0].out_off, ==, 0);
    CHECK_INT(x->cps[0].win_len, ==, 0);
    for (size_t i = 1; i < x->ncps; i++) {
        const struct checkpoint *c = &x->cps[i], *p = &x->cps[i - 1];
        CHECK(c->in_bit > p->in_bit);
        CHECK(c->in_bit < 8 * (uint64_t)b->n);
        CHECK(c->out_off < ref->n);
        /* spaced: one was taken only once the stream had moved on by a span (the in span is
         * counted in consumed bytes, a little ahead of the header's own bit position) */
        CHECK(c->in_bit / 8 - p->in_bit / 8 + 1024 >= CODEC_SPAN_IN ||
              c->out_off - p->out_off >= CODEC_SPAN_OUT);
        if (fmt == LAYER_GZIP) {
            CHECK_INT(c->win_len, ==, MIN(c->out_off, (uint64_t)CODEC_WINDOW));
            CHECK(!memcmp(c->window, ref->p + c->out_off - c->win_len, c->win_len));
        } else {
            CHECK_INT(c->in_bit % 8, ==, 0);
            CHECK_INT(c->win_len, ==, 0);
        }
        if (fmt == LAYER_TAR)
            CHECK_INT(c->in_bit / 8, ==, c->out_off);
    }
}

/* ---- reading ------------------------------------------------------------------------------ */

struct src {
    const struct blob *b;
    uint64_t bytes, calls;
    uint64_t lo, hi; /* range of blob offsets read */
    int fail_after;  /* > 0: the call after this many fails with -EIO */
};

static ssize_t src_fn(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    struct src *s = arg;
    if (s->fail_after && s->calls >= (uint64_t)s->fail_after)
        return -EIO;
    s->calls++;
    if (off >= s->b->n)
        return 0;
    len = (size_t)MIN((uint64_t)len, s->b->n - off);
    memcpy(buf, s->b->p + off, len);
    s->bytes += len;
    s->lo = MIN(s->lo, off);
    s->hi = MAX(s->hi, off + len);
    return (ssize_t)len;
}

static void src_reset(struct src *s)
{
    s->bytes = s->calls = 0;
    s->lo = UINT64_MAX;
    s->hi = 0;
}

static void check_read(struct codec_reader *r, const struct blob *ref, uint64_t off, size_t len,
                       uint8_t *buf)
{
    ssize_t got = codec_read(r, off, buf, len);
    size_t want = off >= ref->n ? 0 : (size_t)MIN((uint64_t)len, ref->n - off);
    if (got != (ssize_t)want)
        test_fail(__FILE__, __LINE__, "read %zu at %" PRIu64 ": got %zd (%s), want %zu", len, off,
                  got, got < 0 ? err_msg((int)got) : "", want);
    if (want && memcmp(buf, ref->p + off, want))
        test_fail(__FILE__, __LINE__, "read %zu at %" PRIu64 ": wrong bytes", len, off);
}

/* Where check_reads' readers get windows their checkpoints lack (a lean parse's), if set. */
static codec_win_fn reads_winsrc;
static void *reads_winsrc_arg;

/* Restarts a fresh reader at every checkpoint, then reads at random, sequentially and at the
 * edges; a read near a checkpoint must not fetch much more than that checkpoint's span. */
static void check_reads(enum layer_format fmt, const struct blob *b, const struct blob *ref,
                        const struct indexed *x, int nrandom)
{
    struct src s = {.b = b};
    struct codec_reader *r;
    uint8_t *buf = malloc(1 << 21);
    CHECK(buf);
    for (size_t i = 0; i < x->ncps; i++) {
        CHECK(codec_reader_new(&r, fmt, x->cps, x->ncps, b->n, ref->n, src_fn, &s) == 0);
        if (reads_winsrc)
            codec_reader_set_windows(r, reads_winsrc, reads_winsrc_arg);
        src_reset(&s);
        uint64_t off = x->cps[i].out_off;
        check_read(r, ref, off, 70000, buf);
        if (fmt != LAYER_TAR) {
            uint64_t span_end = i + 1 < x->ncps ? x->cps[i + 1].in_bit / 8 : b->n;
            CHECK(s.lo >= x->cps[i].in_bit / 8);
            CHECK(s.hi <= span_end + (1u << 20));
        }
        /* the last byte before the next checkpoint, and across it */
        if (i + 1 < x->ncps) {
            check_read(r, ref, x->cps[i + 1].out_off - 1, 1, buf);
            check_read(r, ref, x->cps[i + 1].out_off - 1000, 3000, buf);
        }
        codec_reader_free(r);
    }

    CHECK(codec_reader_new(&r, fmt, x->cps, x->ncps, b->n, ref->n, src_fn, &s) == 0);
    if (reads_winsrc)
        codec_reader_set_windows(r, reads_winsrc, reads_winsrc_arg);
    for (int i = 0; i < nrandom; i++) {
        uint64_t off = rnd() % (ref->n + 2);
        size_t len = rnd() % 4 == 0 ? (size_t)(rnd() % (1 << 21)) : (size_t)(rnd() % 5000);
        check_read(r, ref, off, len, buf);
    }
    /* the very end, and past it */
    if (ref->n) {
        check_read(r, ref, ref->n - 1, 100, buf);
        check_read(r, ref, ref->n > 5000 ? ref->n - 5000 : 0, 1 << 20, buf);
    }
    check_read(r, ref, ref->n, 100, buf);
    check_read(r, ref, ref->n + 12345, 100, buf);
    CHECK_INT(codec_read(r, 0, buf, 0), ==, 0);
    /* sequential pieces continue the decoder instead of restarting it: a whole pass reads the
     * blob about once */
    src_reset(&s);
    for (uint64_t off = 0; off < ref->n;) {
        size_t len = 1 + (size_t)(rnd() % 200000);
        check_read(r, ref, off, len, buf);
        off += len;
    }
    CHECK(s.bytes <= b->n + (2u << 20));
    codec_reader_free(r);
    free(buf);
}

/* A lean parse's window source: the encoding, as the store's reader takes it from LMDB. */
struct lean_src {
    const struct buf *enc;
    const struct layer_index *ix;
    int calls;
    bool fail;
};

static int lean_win(void *arg, size_t k, uint8_t buf[static CODEC_WINDOW], uint32_t *len)
{
    struct lean_src *l = arg;
    const uint8_t *w;
    l->calls++;
    if (l->fail)
        return -EIO;
    int rc = index_window_at(l->enc->p, l->enc->len, k, &l->ix->cps[k], &w, len);
    if (rc == 0)
        memcpy(buf, w, *len);
    return rc;
}

/* The same reads through the layer index as a peer sends it: serialized, then parsed, so
 * each reader inflates the stored window of the checkpoint it starts at. */
static void check_parsed(const struct blob *b, const struct blob *ref, const struct indexed *x,
                         int nrandom)
{
    struct layer_index ix = {.format = LAYER_GZIP, .blob_size = b->n, .tar_size = ref->n};
    struct layer_index p;
    struct buf enc = {0};
    const char *path = tpath("blob.gz");
    spit(path, b->p, b->n);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    ix.cps = (struct checkpoint *)x->cps; /* borrowed: not released below */
    ix.ncps = (uint32_t)x->ncps;
    CHECK(index_make_chunks(&ix, fd) == 0);
    close(fd);
    CHECK(index_serialize(&ix, &enc) == 0);
    free(ix.chunks);
    CHECK_INT(index_parse(enc.p, enc.len, &p), ==, 0);
    CHECK_INT(p.ncps, ==, x->ncps);
    struct indexed px = {.cps = p.cps, .ncps = p.ncps};
    for (size_t i = 0; i < px.ncps; i++)
        CHECK(px.cps[i].window == NULL && (px.cps[i].win_len == 0) == (px.cps[i].zwin == NULL));
    check_reads(LAYER_GZIP, b, ref, &px, nrandom);
    /* parsed lean, each window taken from the encoding when decoding starts there */
    struct layer_index lp;
    struct lean_src ls = {&enc, &lp, 0, false};
    CHECK_INT(index_parse_lean(enc.p, enc.len, &lp), ==, 0);
    for (size_t i = 0; i < lp.ncps; i++)
        CHECK(lp.cps[i].zwin == NULL && lp.cps[i].zwin_len == p.cps[i].zwin_len);
    struct indexed lx = {.cps = lp.cps, .ncps = lp.ncps};
    reads_winsrc = lean_win;
    reads_winsrc_arg = &ls;
    check_reads(LAYER_GZIP, b, ref, &lx, nrandom);
    CHECK_INT(ls.calls, >=, (int)(lp.ncps > 1 ? lp.ncps - 1 : 0));
    /* a source that fails: the read that starts there fails, and no window is made up */
    ls.fail = true;
    struct src s = {.b = b};
    struct codec_reader *r;
    uint8_t *buf = malloc(70000);
    for (size_t i = 1; i < lp.ncps; i++) {
        if (!lp.cps[i].win_len)
            continue;
        CHECK(codec_reader_new(&r, LAYER_GZIP, lp.cps, lp.ncps, b->n, ref->n, src_fn, &s) == 0);
        codec_reader_set_windows(r, lean_win, &ls);
        CHECK_INT(codec_read(r, lp.cps[i].out_off, buf, 70000), ==, AFSP_E_FORMAT);
        codec_reader_free(r);
    }
    free(buf);
    reads_winsrc = NULL;
    index_release(&lp);
    index_release(&p);
    buf_release(&enc);
}

/* Sparse windows: trimmed in place (only ever to zeros), every read still gives the right
 * bytes. */
static void check_trimmed(const struct blob *b, const struct blob *ref, const struct indexed *x,
                          int nrandom)
{
    struct window_trimmer *t;
    CHECK(window_trimmer_new(&t) == 0);
    for (size_t i = 0; i < x->ncps; i++) {
        const struct checkpoint *cp = &x->cps[i];
        uint64_t off = cp->in_bit / 8;
        size_t n = (size_t)MIN((uint64_t)CODEC_TRIM_IN, b->n - off);
        if (!cp->win_len) {
            CHECK_INT(codec_window_trim(t, cp, cp->window, b->p + off, n), ==, 0);
            continue;
        }
        uint8_t before[CODEC_WINDOW];
        memcpy(before, cp->window, cp->win_len);
        CHECK_INT(codec_window_trim(t, cp, cp->window, b->p + off, n), ==, 1);
        for (uint32_t k = 0; k < cp->win_len; k++)
            CHECK(cp->window[k] == before[k] || cp->window[k] == 0);
        /* trimming again changes nothing; too little input changes nothing */
        memcpy(before, cp->window, cp->win_len);
        CHECK_INT(codec_window_trim(t, cp, cp->window, b->p + off, n), ==, 1);
        CHECK(!memcmp(before, cp->window, cp->win_len));
        CHECK_INT(codec_window_trim(t, cp, cp->window, b->p + off, 0), ==, 0);
        CHECK(!memcmp(before, cp->window, cp->win_len));
    }
    window_trimmer_free(t);
    check_reads(LAYER_GZIP, b, ref, x, nrandom);
    check_parsed(b, ref, x, nrandom);
}

/* Index with every split pattern (bytes only when small), check the rules, the determinism and
 * the reads. Returns the checkpoints of the whole-blob push; the caller frees them. */
static struct indexed full_check(enum layer_format fmt, const struct blob *b,
                                 const struct blob *ref, int nrandom)
{
    struct indexed base = index_blob(fmt, b, ref, SPLIT_WHOLE);
    if (base.rc)
        test_fail(__FILE__, __LINE__, "index: %s", err_msg(base.rc));
    check_cp_rules(fmt, &base, b, ref);
    enum split more[] = {SPLIT_16K, SPLIT_ODD, SPLIT_RANDOM, SPLIT_BYTES};
    for (size_t i = 0; i < ARRAY_SIZE(more); i++) {
        if (more[i] == SPLIT_BYTES && b->n > (4u << 20))
            continue;
        struct indexed o = index_blob(fmt, b, ref, more[i]);
        CHECK_INT(o.rc, ==, 0);
        check_same_cps(&base, &o);
        checkpoints_free(o.cps, o.ncps);
    }
    check_reads(fmt, b, ref, &base, nrandom);
    if (fmt == LAYER_GZIP)
        check_trimmed(b, ref, &base, nrandom);
    return base;
}

/* ---- gzip --------------------------------------------------------------------------------- */

TEST(codec_gzip_layer)
{
    struct blob data = make_tar(40000000);
    struct blob gz = filter("gzip -6", &data);
    struct indexed x = full_check(LAYER_GZIP, &gz, &data, 300);
    /* decoding from a checkpoint reads few of its window's bytes */
    uint64_t win = 0;
    for (size_t i = 0; i < x.ncps; i++)
        for (uint32_t k = 0; k < x.cps[i].win_len; k++)
            win += x.cps[i].window[k] != 0;
    CHECK(win < (x.ncps - 1) * (uint64_t)CODEC_WINDOW / 2);
    /* one checkpoint per span, whichever span comes first, at the next block header, so spans
     * are longer than the minimum by part of a block (54 checkpoints for these 40 MB: 740 KB
     * apart where the minimum is 512 KiB) */
    uint64_t want = MAX(gz.n / CODEC_SPAN_IN, data.n / CODEC_SPAN_OUT);
    CHECK(x.ncps >= want / 2);
    CHECK(x.ncps <= gz.n / CODEC_SPAN_IN + data.n / CODEC_SPAN_OUT + 1);
    /* most block headers are not byte-aligned: the bit positions are real */
    size_t unaligned = 0;
    for (size_t i = 1; i < x.ncps; i++)
        unaligned += x.cps[i].in_bit % 8 != 0;
    CHECK(unaligned > 0);
    checkpoints_free(x.cps, x.ncps);
}

TEST(codec_gzip_levels)
{
    struct blob data = make_tar(12000000);
    const char *cmds[] = {"gzip -1", "gzip -9", "gzip -1 -n", "gzip -9 -n"};
    for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
        struct blob gz = filter(cmds[i], &data);
        struct indexed x = full_check(LAYER_GZIP, &gz, &data, 60);
        CHECK(x.ncps >= 3);
        checkpoints_free(x.cps, x.ncps);
        free(gz.p);
    }
}

/* Concatenated members: made by gzip, by zlib with every header field, and empty ones. Reads
 * cross member boundaries, and checkpoints land in later members. */
TEST(codec_gzip_multi_member)
{
    struct blob data = make_tar(9000000);
    struct blob parts[3] = {{data.p, 4000000}, {data.p + 4000000, 1}, {data.p + 4000001, 4999999}};
    struct blob empty = {(uint8_t *)"", 0};
    struct blob gz = {0}, a = filter("gzip -6", &parts[0]), e = filter("gzip", &empty);
    struct blob c = gz_member(&parts[1], 6, Z_DEFAULT_STRATEGY, 0, 0x02 | 0x04 | 0x08 | 0x10);
    struct blob d = gz_member(&parts[2], 9, Z_DEFAULT_STRATEGY, 0, 0x08);
    blob_cat(&gz, e.p, e.n);
    blob_cat(&gz, a.p, a.n);
    blob_cat(&gz, e.p, e.n);
    blob_cat(&gz, c.p, c.n);
    blob_cat(&gz, d.p, d.n);
    blob_cat(&gz, e.p, e.n);
    struct indexed x = full_check(LAYER_GZIP, &gz, &data, 200);
    size_t later = 0;
    for (size_t i = 1; i < x.ncps; i++)
        later += x.cps[i].in_bit / 8 > e.n + a.n;
    CHECK(later > 0);

    /* reads across each member boundary, decoding from the start */
    struct src s = {.b = &gz};
    struct codec_reader *r;
    uint8_t buf[8192];
    CHECK(codec_reader_new(&r, LAYER_GZIP, x.cps, 1, gz.n, data.n, src_fn, &s) == 0);
    check_read(r, &data, 4000000 - 10, 20, buf);
    check_read(r, &data, 4000001 - 10, 20, buf);
    check_read(r, &data, data.n - 10, 20, buf);
    codec_reader_free(r);
    checkpoints_free(x.cps, x.ncps);
}

/* Incompressible data: gzip writes stored blocks, whose ends the indexer targets exactly. */
TEST(codec_gzip_stored_blocks)
{
    struct blob data = {malloc(12000000), 12000000};
    CHECK(data.p);
    for (size_t i = 0; i < data.n; i += 8) {
        uint64_t v = rnd();
        memcpy(data.p + i, &v, MIN((size_t)8, data.n - i));
    }
    const char *cmds[] = {"gzip -1", "gzip -9"};
    for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
        struct blob gz = filter(cmds[i], &data);
        struct indexed x = full_check(LAYER_GZIP, &gz, &data, 60);
        CHECK(x.ncps >= gz.n / CODEC_SPAN_IN * 3 / 4);
        for (size_t k = 1; k < x.ncps; k++)
            CHECK_INT(x.cps[k].in_bit % 8, ==, 0); /* a stored block ends on a byte */
        checkpoints_free(x.cps, x.ncps);
        free(gz.p);
    }
    /* zlib level 0: stored blocks only, 64 KiB each */
    struct blob z0 = gz_member(&data, 0, Z_DEFAULT_STRATEGY, 0, 0);
    struct indexed x = full_check(LAYER_GZIP, &z0, &data, 60);
    CHECK(x.ncps >= z0.n / CODEC_SPAN_IN * 3 / 4);
    checkpoints_free(x.cps, x.ncps);
}

/* A long run of zeros: few, huge blocks; the output span decides. */
TEST(codec_gzip_zeros)
{
    struct blob data = {calloc(1, 150000000), 150000000};
    CHECK(data.p);
    memcpy(data.p + 77777777, "not zero", 8);
    const char *cmds[] = {"gzip -1", "gzip -9"};
    for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
        struct blob gz = filter(cmds[i], &data);
        struct indexed x = full_check(LAYER_GZIP, &gz, &data, 40);
        CHECK(x.ncps >= 3);
        checkpoints_free(x.cps, x.ncps);
        free(gz.p);
    }
}

/* What zlib can make and gzip does not: fixed Huffman only, Huffman only, RLE, and many small
 * blocks with empty stored blocks from sync flushes. */
TEST(codec_gzip_zlib_strategies)
{
    struct blob data = make_tar(12000000);
    struct {
        int level, strategy;
        size_t flush;
    } v[] = {
        {6, Z_FIXED, 0},
        {6, Z_HUFFMAN_ONLY, 0},
        {6, Z_RLE, 0},
        {6, Z_DEFAULT_STRATEGY, 5000},
        {1, Z_DEFAULT_STRATEGY, 333},
        {9, Z_FIXED, 70000},
    };
    for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
        struct blob gz = gz_member(&data, v[i].level, v[i].strategy, v[i].flush, 0);
        struct indexed x = full_check(LAYER_GZIP, &gz, &data, 40);
        if (v[i].flush == 333 || v[i].flush == 5000)
            CHECK(x.ncps >= 3); /* byte-aligned empty stored blocks everywhere */
        checkpoints_free(x.cps, x.ncps);
        free(gz.p);
    }
}

TEST(codec_gzip_empty)
{
    struct blob empty = {(uint8_t *)"", 0};
    struct blob gz = filter("gzip", &empty);
    struct indexed x = full_check(LAYER_GZIP, &gz, &empty, 5);
    CHECK_INT(x.ncps, ==, 1);
    CHECK_INT(x.out, ==, 0);
    checkpoints_free(x.cps, x.ncps);

    /* no member at all */
    struct indexed y = index_blob(LAYER_GZIP, &empty, &empty, SPLIT_WHOLE);
    CHECK_INT(y.rc, ==, AFSP_E_TRUNCATED);
    checkpoints_free(y.cps, y.ncps);
}

TEST(codec_gzip_header_fields)
{
    struct blob data = make_tar(300000);
    for (unsigned flags = 0; flags < 32; flags += 2) {
        struct blob gz = gz_member(&data, 6, Z_DEFAULT_STRATEGY, 0, (uint8_t)flags);
        struct indexed x = index_blob(LAYER_GZIP, &gz, &data, SPLIT_BYTES);
        CHECK_INT(x.rc, ==, 0);
        checkpoints_free(x.cps, x.ncps);
        free(gz.p);
    }
    struct blob gz = gz_member(&data, 6, Z_DEFAULT_STRATEGY, 0, 0x02 | 0x08);
    struct {
        size_t at;
        uint8_t val;
    } bad[] = {
        {0, 0x1e},               /* magic */
        {1, 0x8c},               /* magic */
        {2, 7},                  /* CM */
        {3, 0x02 | 0x08 | 0x20}, /* reserved flag */
        {10, 'L'},               /* name covered by the header CRC */
        {20, 0x00},              /* the header CRC itself */
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct blob c = {malloc(gz.n), gz.n};
        memcpy(c.p, gz.p, gz.n);
        c.p[bad[i].at] = bad[i].val;
        struct indexed x = index_blob(LAYER_GZIP, &c, &data, SPLIT_WHOLE);
        CHECK_INT(x.rc, ==, AFSP_E_FORMAT);
        checkpoints_free(x.cps, x.ncps);
        free(c.p);
    }
    /* an unterminated name longer than the bound */
    struct blob big = {0};
    uint8_t hdr[10] = {0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3};
    blob_cat(&big, hdr, 10);
    uint8_t *name = malloc(100000);
    memset(name, 'a', 100000);
    blob_cat(&big, name, 100000);
    struct indexed y = index_blob(LAYER_GZIP, &big, &data, SPLIT_16K);
    CHECK_INT(y.rc, ==, AFSP_E_FORMAT);
    checkpoints_free(y.cps, y.ncps);
}

/* Flipped bytes fail (CRC and size are checked) unless they hit a field nothing checks; a
 * truncated blob is AFSP_E_TRUNCATED; data after the last member is AFSP_E_FORMAT. A reader on a
 * damaged blob returns errors, not garbage it cannot know about, and never crashes. */
TEST(codec_gzip_corrupt)
{
    struct blob data = make_tar(3000000);
    struct blob gz = filter("gzip -6 -n", &data);
    struct indexed good = index_blob(LAYER_GZIP, &gz, &data, SPLIT_WHOLE);
    CHECK_INT(good.rc, ==, 0);
    struct blob c = {malloc(gz.n), gz.n};
    uint8_t *buf = malloc(1 << 20);
    for (int i = 0; i < 300; i++) {
        memcpy(c.p, gz.p, gz.n);
        size_t at = i < 20 ? (size_t)i : (size_t)(rnd() % gz.n);
        c.p[at] ^= (uint8_t)(1 + rnd() % 255);
        struct indexed x = index_blob(LAYER_GZIP, &c, &data, SPLIT_RANDOM);
        bool ignored = (at >= 4 && at < 10); /* MTIME, XFL, OS */
        if (ignored)
            CHECK_INT(x.rc, ==, 0);
        else
            CHECK(x.rc == AFSP_E_FORMAT || x.rc == AFSP_E_TRUNCATED);
        checkpoints_free(x.cps, x.ncps);

        struct src s = {.b = &c};
        struct codec_reader *r;
        CHECK(codec_reader_new(&r, LAYER_GZIP, good.cps, good.ncps, c.n, data.n, src_fn, &s) == 0);
        for (int k = 0; k < 4; k++) {
            uint64_t off = rnd() % data.n;
            ssize_t got = codec_read(r, off, buf, 1 << 20);
            CHECK(got < 0 || (size_t)got <= data.n - off);
        }
        codec_reader_free(r);
    }
    for (int i = 0; i < 60; i++) {
        size_t n = i < 30 ? (size_t)i : (size_t)(rnd() % gz.n);
        struct blob t = {gz.p, n};
        struct indexed x = index_blob(LAYER_GZIP, &t, &data, SPLIT_ODD);
        CHECK_INT(x.rc, ==, AFSP_E_TRUNCATED);
        checkpoints_free(x.cps, x.ncps);
    }
    const char *tails[] = {"\0", "\0\0\0\0\0\0\0\0", "garbage", "\x1f", "\x1f\x8b\x09"};
    size_t tail_len[] = {1, 8, 7, 1, 3};
    for (size_t i = 0; i < ARRAY_SIZE(tails); i++) {
        struct blob t = {0};
        blob_cat(&t, gz.p, gz.n);
        blob_cat(&t, tails[i], tail_len[i]);
        struct indexed x = index_blob(LAYER_GZIP, &t, &data, SPLIT_16K);
        CHECK(x.rc == AFSP_E_FORMAT || (i == 3 && x.rc == AFSP_E_TRUNCATED));
        checkpoints_free(x.cps, x.ncps);
        free(t.p);
    }

    /* a truncated blob under a reader, and a failing source */
    struct blob t = {gz.p, gz.n / 2};
    struct src s = {.b = &t};
    struct codec_reader *r;
    CHECK(codec_reader_new(&r, LAYER_GZIP, good.cps, good.ncps, gz.n, data.n, src_fn, &s) == 0);
    CHECK(codec_read(r, data.n - 100, buf, 100) < 0);
    check_read(r, &data, 0, 1000, buf); /* recovers for what is there */
    codec_reader_free(r);
    /* the source fails on its second call: a read from offset 0 needs many */
    s = (struct src){.b = &gz, .fail_after = 1};
    CHECK(codec_reader_new(&r, LAYER_GZIP, good.cps, good.ncps, gz.n, data.n, src_fn, &s) == 0);
    CHECK_INT(codec_read(r, 0, buf, MIN(data.n, (size_t)1 << 20)), ==, -EIO);
    codec_reader_free(r);
    checkpoints_free(good.cps, good.ncps);
}

struct stop_after {
    int left;
};

static int stop_cb(void *arg, const uint8_t *p, size_t n)
{
    struct stop_after *s = arg;
    (void)p, (void)n;
    return --s->left > 0 ? 0 : -ECANCELED;
}

/* A callback's error stops the indexer, is returned, and then returned again. */
TEST(codec_callback_error)
{
    struct blob data = make_tar(2000000);
    struct blob gz = filter("gzip", &data), zs = filter("zstd -q -c", &data);
    struct {
        enum layer_format fmt;
        struct blob *b;
    } v[] = {{LAYER_GZIP, &gz}, {LAYER_ZSTD, &zs}, {LAYER_TAR, &data}};
    for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
        struct stop_after s = {3};
        struct codec_indexer *ix;
        CHECK(codec_indexer_new(&ix, v[i].fmt, stop_cb, &s) == 0);
        int rc = 0;
        for (size_t off = 0; off < v[i].b->n && !rc; off += 1000)
            rc = codec_indexer_push(ix, v[i].b->p + off, MIN((size_t)1000, v[i].b->n - off));
        CHECK_INT(rc, ==, -ECANCELED);
        CHECK_INT(s.left, ==, 0);
        CHECK_INT(codec_indexer_push(ix, v[i].b->p, 10), ==, -ECANCELED);
        CHECK_INT(codec_indexer_finish(ix), ==, -ECANCELED);
        codec_indexer_free(ix);
    }
}

/* ---- zstd --------------------------------------------------------------------------------- */

/* One zstd frame: checkpoint 0 only, every read decodes from the start (the fallback). */
TEST(codec_zstd_single_frame)
{
    struct blob data = make_tar(20000000);
    struct blob zs = filter("zstd -q -3 -c", &data);
    struct indexed x = full_check(LAYER_ZSTD, &zs, &data, 30);
    CHECK_INT(x.ncps, ==, 1);
    checkpoints_free(x.cps, x.ncps);
}

/* Frames of 1.5 MB of output each, with skippable frames between some: checkpoints at frame
 * starts, at the spacing, and skippable bytes count in positions. */
TEST(codec_zstd_multi_frame)
{
    struct blob data = make_tar(30000000);
    struct blob zs = {0};
    size_t part = 1500000;
    uint64_t frame_start[64];
    size_t nframes = 0;
    for (size_t off = 0; off < data.n; off += part) {
        struct blob p = {data.p + off, MIN(part, data.n - off)};
        struct blob f = filter(nframes % 2 ? "zstd -q -1 -c" : "zstd -q -9 -c", &p);
        if (nframes % 3 == 1) { /* a skippable frame first, like a seek table */
            uint8_t sk[8 + 100] = {0};
            put_le32(sk, 0x184D2A5E);
            put_le32(sk + 4, 100);
            blob_cat(&zs, sk, sizeof sk);
        }
        frame_start[nframes++] = zs.n;
        blob_cat(&zs, f.p, f.n);
        free(f.p);
    }
    struct indexed x = full_check(LAYER_ZSTD, &zs, &data, 200);
    CHECK(x.ncps >= 5);
    for (size_t i = 1; i < x.ncps; i++) {
        bool at_frame = false;
        for (size_t k = 0; k < nframes; k++)
            at_frame |= x.cps[i].in_bit / 8 == frame_start[k] ||
                        x.cps[i].in_bit / 8 + 108 == frame_start[k];
        CHECK(at_frame);
        CHECK_INT(x.cps[i].out_off % part, ==, 0);
    }
    checkpoints_free(x.cps, x.ncps);
}

TEST(codec_zstd_corrupt)
{
    struct blob data = make_tar(3000000);
    struct blob zs = filter("zstd -q -c", &data);
    struct blob c = {malloc(zs.n), zs.n};
    for (int i = 0; i < 200; i++) {
        memcpy(c.p, zs.p, zs.n);
        size_t at = (size_t)(rnd() % zs.n);
        c.p[at] ^= (uint8_t)(1 + rnd() % 255);
        struct indexed x = index_blob(LAYER_ZSTD, &c, &data, SPLIT_RANDOM);
        /* zstd -c writes a content checksum: any damage is found */
        CHECK(x.rc == AFSP_E_FORMAT || x.rc == AFSP_E_TRUNCATED || x.rc == AFSP_E_UNSUPPORTED);
        checkpoints_free(x.cps, x.ncps);
    }
    for (int i = 0; i < 40; i++) {
        struct blob t = {zs.p, i < 10 ? (size_t)i : (size_t)(rnd() % zs.n)};
        struct indexed x = index_blob(LAYER_ZSTD, &t, &data, SPLIT_16K);
        CHECK_INT(x.rc, ==, AFSP_E_TRUNCATED);
        checkpoints_free(x.cps, x.ncps);
    }
    struct blob t = {0};
    blob_cat(&t, zs.p, zs.n);
    blob_cat(&t, "garbage!", 8);
    struct indexed x = index_blob(LAYER_ZSTD, &t, &data, SPLIT_WHOLE);
    CHECK_INT(x.rc, ==, AFSP_E_FORMAT);
    checkpoints_free(x.cps, x.ncps);

    /* a window over the bound is refused, not allocated */
    struct blob w = filter("zstd -q --long=30 -c", &data);
    x = index_blob(LAYER_ZSTD, &w, &data, SPLIT_WHOLE);
    CHECK_INT(x.rc, ==, AFSP_E_UNSUPPORTED);
    checkpoints_free(x.cps, x.ncps);
}

/* ---- plain tar ---------------------------------------------------------------------------- */

TEST(codec_tar_plain)
{
    struct blob data = make_tar(10000000);
    struct indexed x = full_check(LAYER_TAR, &data, &data, 100);
    CHECK_INT(x.ncps, ==, (data.n - 1) / CODEC_SPAN_IN + 1);
    for (size_t i = 0; i < x.ncps; i++)
        CHECK_INT(x.cps[i].out_off, ==, i * CODEC_SPAN_IN);
    checkpoints_free(x.cps, x.ncps);

    struct blob exact = {data.p, 3 * CODEC_SPAN_IN}; /* none at the very end */
    x = full_check(LAYER_TAR, &exact, &exact, 10);
    CHECK_INT(x.ncps, ==, 3);
    checkpoints_free(x.cps, x.ncps);

    struct blob empty = {data.p, 0};
    x = full_check(LAYER_TAR, &empty, &empty, 3);
    CHECK_INT(x.ncps, ==, 1);
    checkpoints_free(x.cps, x.ncps);
}
