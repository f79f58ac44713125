/*
 * codec.c - libFuzzer target for the codec of store/layer/ (codec.c, gzip.c, zstd.c). data[0]
 * picks the format (tar, gzip, zstd) and data[1] a push size; the rest is the blob. It is
 * indexed whole and in pieces: both runs must agree on the result, the output and the
 * checkpoints (windows included). Then reads at offsets taken from the blob, restarted from the
 * checkpoints found, must return what the indexer output, or fail cleanly when the indexer
 * failed.
 */
#include "../store/layer/layer.h"

#include <stdlib.h>
#include <string.h>

#define OUT_CAP (16u << 20) /* output kept for comparison */

struct out {
    struct buf b; /* the first OUT_CAP bytes */
    uint64_t total;
};

static int keep(void *arg, const uint8_t *p, size_t n)
{
    struct out *o = arg;
    if (o->b.len < OUT_CAP && buf_append(&o->b, p, MIN(n, OUT_CAP - o->b.len)))
        abort();
    o->total += n;
    return 0;
}

struct run {
    int rc;
    struct out out;
    struct checkpoint *cps;
    size_t ncps;
};

static void run_indexer(struct run *r, enum layer_format fmt, const uint8_t *b, size_t n,
                        size_t piece)
{
    struct codec_indexer *ix;
    *r = (struct run){0};
    if (codec_indexer_new(&ix, fmt, keep, &r->out))
        abort();
    r->rc = 0;
    for (size_t off = 0; off < n && !r->rc; off += piece)
        r->rc = codec_indexer_push(ix, b + off, MIN(piece, n - off));
    if (!r->rc)
        r->rc = codec_indexer_finish(ix);
    if (codec_indexer_out_bytes(ix) != r->out.total)
        abort();
    r->cps = codec_indexer_take(ix, &r->ncps);
    codec_indexer_free(ix);
}

struct src {
    const uint8_t *p;
    size_t n;
};

static ssize_t src_fn(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    struct src *s = arg;
    if (off >= s->n)
        return 0;
    len = (size_t)MIN((uint64_t)len, s->n - off);
    memcpy(buf, s->p + off, len);
    return (ssize_t)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    enum layer_format fmt = (enum layer_format)(data[0] % 3);
    size_t piece = 1 + data[1] % 64 * 37;
    const uint8_t *b = data + 2;
    size_t n = size - 2;

    struct run a, c;
    run_indexer(&a, fmt, b, n, n ? n : 1);
    run_indexer(&c, fmt, b, n, piece);
    /* an error may come at a different point for a different split, but not a different one,
     * and never instead of success */
    if (a.rc != c.rc || a.ncps != c.ncps)
        abort();
    if (!a.rc && (a.out.total != c.out.total || a.out.b.len != c.out.b.len ||
                  (a.out.b.len && memcmp(a.out.b.p, c.out.b.p, a.out.b.len))))
        abort();
    for (size_t i = 0; i < a.ncps; i++) {
        const struct checkpoint *x = &a.cps[i], *y = &c.cps[i];
        if (x->in_bit != y->in_bit || x->out_off != y->out_off || x->win_len != y->win_len ||
            (x->win_len && memcmp(x->window, y->window, x->win_len)))
            abort();
    }

    /* reads: exact when the index is good; on a bad blob, anything but a crash or a lie about
     * the length */
    uint64_t out_size = a.out.total;
    struct src s = {b, n};
    struct codec_reader *r;
    if (codec_reader_new(&r, fmt, a.cps, a.ncps, n, out_size, src_fn, &s))
        abort();
    uint8_t buf[4096];
    for (size_t i = 0; i < 6 && out_size; i++) {
        uint64_t off = (i < 2 ? a.cps[(size_t)(i * 7919 + n) % a.ncps].out_off : 0) +
                       (i + 1 < n ? b[i] * 131u * (i + 1) : 0);
        if (i == 5)
            off = out_size - 1;
        size_t len = 1 + (i < n ? b[n - 1 - i] * 16u : 100);
        ssize_t got = codec_read(r, off, buf, len);
        if (got < 0) {
            if (!a.rc && fmt == LAYER_TAR)
                abort();
            continue;
        }
        size_t want = off >= out_size ? 0 : (size_t)MIN((uint64_t)len, out_size - off);
        if ((size_t)got != want)
            abort();
        if (!a.rc && off + (size_t)got <= a.out.b.len && memcmp(buf, a.out.b.p + off, (size_t)got))
            abort();
    }
    codec_reader_free(r);

    checkpoints_free(a.cps, a.ncps);
    checkpoints_free(c.cps, c.ncps);
    buf_release(&a.out.b);
    buf_release(&c.out.b);
    return 0;
}
