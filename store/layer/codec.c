/*
 * codec.c - decoding of layer blobs with random-access checkpoints: the plumbing. The indexer
 * decodes a blob in one streaming pass, hands the output on, verifies what the format carries
 * (every gzip member's CRC-32 and size), and records the places where decoding can restart; the
 * reader serves reads at any offset by decoding from the nearest checkpoint. This file holds the
 * two objects, the checkpoint list, the dispatch by format and plain tar (a checkpoint every
 * CODEC_SPAN_IN bytes; reads are copies); gzip.c (through ISA-L) and zstd.c decode their formats.
 *
 * Owns: the decoder states and their buffers. Must not: do I/O other than through the caller's
 * callbacks, read more of the blob than a read needs, allocate in proportion to anything but the
 * number of checkpoints, or trust a byte of the blob.
 */
#include "codec_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#ifndef RD_IBUF /* the fuzz targets build with smaller buffers (the Makefile's FUZZ_FLAGS) */
#define RD_IBUF (256u << 10) /* compressed bytes read from the source at a time */
#endif
#ifndef RD_SCRATCH
#define RD_SCRATCH (256u << 10)
#endif

/* ---- formats ------------------------------------------------------------------------------ */

int layer_format(const char *mt, enum layer_format *f)
{
    size_t n = strlen(mt);
    if (n >= 4 && !strcmp(mt + n - 4, "gzip")) /* +gzip, .tar.gzip */
        *f = LAYER_GZIP;
    else if (n >= 4 && !strcmp(mt + n - 4, "zstd"))
        *f = LAYER_ZSTD;
    else if (n >= 3 && !strcmp(mt + n - 3, "tar"))
        *f = LAYER_TAR;
    else
        return err_set(AFSP_E_UNSUPPORTED, "layer media type %s", mt);
    return 0;
}

/* ---- checkpoints -------------------------------------------------------------------------- */

static int cp_add(struct cp_list *l, uint64_t in_bit, uint64_t out_off, const uint8_t *win,
                  uint32_t win_len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        struct checkpoint *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    uint8_t *w = NULL;
    if (win_len) {
        w = malloc(win_len);
        if (!w)
            return -ENOMEM;
        memcpy(w, win, win_len);
    }
    l->v[l->n++] =
        (struct checkpoint){.in_bit = in_bit, .out_off = out_off, .win_len = win_len, .window = w};
    return 0;
}

void checkpoints_free(struct checkpoint *cps, size_t n)
{
    if (!cps)
        return;
    for (size_t i = 0; i < n; i++)
        free(cps[i].window);
    free(cps);
}

/* ---- indexer ------------------------------------------------------------------------------ */

static int ix_fail(struct codec_indexer *ix, int rc)
{
    ix->err = rc;
    return rc;
}

bool ix_due(const struct codec_indexer *ix)
{
    return ix->in_pos - ix->last_in >= (uint64_t)CODEC_SPAN_IN << ix->backoff ||
           ix->out_total - ix->last_out >= (uint64_t)CODEC_SPAN_OUT << ix->backoff;
}

int ix_checkpoint(struct codec_indexer *ix, uint64_t in_bit, const uint8_t *win, uint32_t win_len)
{
    int rc = cp_add(&ix->cps, in_bit, ix->out_total, win, win_len);
    if (rc)
        return rc;
    ix->last_in = in_bit / 8;
    ix->last_out = ix->out_total;
    ix->last_bit = in_bit;
    ix->backoff = 0;
    return 0;
}

int codec_indexer_new(struct codec_indexer **out, enum layer_format fmt, codec_out_cb cb, void *arg)
{
    struct codec_indexer *ix = calloc(1, sizeof *ix);
    if (!ix)
        return -ENOMEM;
    ix->fmt = fmt;
    ix->cb = cb;
    ix->arg = arg;
    if (cp_add(&ix->cps, 0, 0, NULL, 0))
        goto nomem;
    switch (fmt) {
    case LAYER_TAR:
        break;
    case LAYER_GZIP:
        ix->st = calloc(1, sizeof *ix->st);
        ix->snap = calloc(1, sizeof *ix->snap);
        ix->fixed_lit = malloc(sizeof *ix->fixed_lit);
        ix->ibuf = malloc(GZ_IBUF);
        ix->obuf = malloc(GZ_OBUF);
        if (!ix->st || !ix->snap || !ix->fixed_lit || !ix->ibuf || !ix->obuf)
            goto nomem;
        gz_fixed_table(ix);
        ix->gz_stage = GZ_END;
        break;
    case LAYER_ZSTD:
        ix->zd = ZSTD_createDCtx();
        ix->obuf = malloc(ZSTD_OBUF);
        if (!ix->zd || !ix->obuf)
            goto nomem;
        if (ZSTD_isError(ZSTD_DCtx_setParameter(ix->zd, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX)))
            goto nomem;
        break;
    default:
        free(ix->cps.v);
        free(ix);
        return err_set(AFSP_E_UNSUPPORTED, "layer format %d", (int)fmt);
    }
    *out = ix;
    return 0;
nomem:
    codec_indexer_free(ix);
    return -ENOMEM;
}

void codec_indexer_free(struct codec_indexer *ix)
{
    if (!ix)
        return;
    checkpoints_free(ix->cps.v, ix->cps.n);
    free(ix->st);
    free(ix->snap);
    free(ix->fixed_lit);
    free(ix->ibuf);
    free(ix->obuf);
    ZSTD_freeDCtx(ix->zd);
    free(ix);
}

const struct checkpoint *codec_indexer_checkpoints(struct codec_indexer *ix, size_t *n)
{
    *n = ix->cps.n;
    return ix->cps.v;
}

struct checkpoint *codec_indexer_take(struct codec_indexer *ix, size_t *n)
{
    struct checkpoint *v = ix->cps.v;
    *n = ix->cps.n;
    ix->cps = (struct cp_list){0};
    return v;
}

uint64_t codec_indexer_out_bytes(const struct codec_indexer *ix)
{
    return ix->out_total - (ix->opos - ix->emit_pos); /* a failed probe's output never left */
}

/* ---- indexer: plain tar ------------------------------------------------------------------- */

static int tar_push(struct codec_indexer *ix, const uint8_t *in, size_t n)
{
    uint64_t end = ix->in_pos + n;
    /* a checkpoint at x once there is a byte at x: never one at the very end */
    for (uint64_t x = ix->last_in + CODEC_SPAN_IN; x < end; x += CODEC_SPAN_IN) {
        ix->out_total = x;
        int rc = ix_checkpoint(ix, 8 * x, NULL, 0);
        if (rc)
            return rc;
    }
    ix->in_pos = ix->out_total = end;
    return n ? ix->cb(ix->arg, in, n) : 0;
}

/* ---- indexer: dispatch -------------------------------------------------------------------- */

int codec_indexer_push(struct codec_indexer *ix, const uint8_t *in, size_t n)
{
    if (ix->err)
        return ix->err;
    if (ix->finished)
        return ix_fail(ix, err_set(AFSP_E_USAGE, "codec: push after finish"));
    if (n == 0)
        return 0;
    int rc;
    switch (ix->fmt) {
    case LAYER_TAR:
        rc = tar_push(ix, in, n);
        break;
    case LAYER_GZIP:
        rc = gz_push(ix, in, n);
        break;
    default:
        rc = zs_push(ix, in, n);
        break;
    }
    return rc ? ix_fail(ix, rc) : 0;
}

int codec_indexer_finish(struct codec_indexer *ix)
{
    if (ix->err)
        return ix->err;
    if (ix->finished)
        return 0;
    int rc = 0;
    switch (ix->fmt) {
    case LAYER_TAR:
        break;
    case LAYER_GZIP:
        rc = gz_finish(ix);
        break;
    default:
        ix->zpending = false; /* a frame end at the end of the blob is no checkpoint */
        if (ix->in_pos == 0)
            rc = err_set(AFSP_E_TRUNCATED, "zstd: empty blob");
        else if (ix->zframe_open)
            rc = err_set(AFSP_E_TRUNCATED, "zstd: last frame ends early");
        break;
    }
    ix->finished = true;
    return rc ? ix_fail(ix, rc) : 0;
}

/* ---- reader ------------------------------------------------------------------------------- */

int codec_reader_new(struct codec_reader **out, enum layer_format fmt, const struct checkpoint *cps,
                     size_t ncps, uint64_t in_size, uint64_t out_size, codec_src_fn src, void *arg)
{
    struct codec_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    *r = (struct codec_reader){.fmt = fmt,
                               .cps = cps,
                               .ncps = ncps,
                               .in_size = in_size,
                               .out_size = out_size,
                               .src = src,
                               .arg = arg};
    if (fmt != LAYER_TAR && fmt != LAYER_GZIP && fmt != LAYER_ZSTD) {
        free(r);
        return err_set(AFSP_E_UNSUPPORTED, "layer format %d", (int)fmt);
    }
    if (fmt == LAYER_GZIP || fmt == LAYER_ZSTD) {
        r->ib = malloc(RD_IBUF);
        r->scratch = malloc(RD_SCRATCH);
        if (!r->ib || !r->scratch)
            goto nomem;
    }
    if (fmt == LAYER_GZIP &&
        (!(r->st = calloc(1, sizeof *r->st)) || !(r->win = malloc(CODEC_WINDOW))))
        goto nomem;
    if (fmt == LAYER_ZSTD) {
        if (!(r->zd = ZSTD_createDCtx()))
            goto nomem;
        if (ZSTD_isError(ZSTD_DCtx_setParameter(r->zd, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX)))
            goto nomem;
    }
    *out = r;
    return 0;
nomem:
    codec_reader_free(r);
    return -ENOMEM;
}

void codec_reader_free(struct codec_reader *r)
{
    if (!r)
        return;
    free(r->ib);
    free(r->scratch);
    free(r->st);
    free(r->win);
    free(r->zbuf);
    ZSTD_freeDCtx(r->zd);
    free(r);
}

static void rd_seek(struct codec_reader *r, uint64_t off)
{
    if (off >= r->ib_off && off - r->ib_off <= r->ib_len) {
        r->ib_pos = (size_t)(off - r->ib_off);
        return;
    }
    r->ib_off = off;
    r->ib_len = r->ib_pos = 0;
}

/* Makes sure unread compressed bytes are buffered. Returns how many (0 at the end of the blob),
 * or the source's error. */
ssize_t rd_fill(struct codec_reader *r)
{
    if (r->ib_pos < r->ib_len)
        return (ssize_t)(r->ib_len - r->ib_pos);
    r->ib_off += r->ib_len;
    r->ib_len = r->ib_pos = 0;
    if (r->ib_off >= r->in_size)
        return 0;
    size_t want = (size_t)MIN((uint64_t)RD_IBUF, r->in_size - r->ib_off);
    ssize_t got = r->src(r->arg, r->ib_off, r->ib, want);
    if (got < 0)
        return got;
    if (got == 0)
        return err_set(AFSP_E_TRUNCATED, "compressed blob ends at byte %" PRIu64 " of %" PRIu64,
                       r->ib_off, r->in_size);
    r->ib_len = (size_t)MIN((size_t)got, want);
    return (ssize_t)r->ib_len;
}

const uint8_t *checkpoint_window(const struct checkpoint *cp, struct inflate_state *st,
                                 uint8_t buf[static CODEC_WINDOW])
{
    if (cp->window || cp->win_len > CODEC_WINDOW || !cp->zwin)
        return cp->window;
    if (cp->zwin_len == cp->win_len)
        return cp->zwin;
    /* ISA-L: about 22 us a window where zlib's uncompress takes 50, next to about 700 us to
     * decode the span (bench/index_cost, docs/benchmarks.md) */
    isal_inflate_init(st);
    st->crc_flag = IGZIP_ZLIB;
    st->next_in = (uint8_t *)cp->zwin;
    st->avail_in = cp->zwin_len;
    st->next_out = buf;
    st->avail_out = cp->win_len;
    if (isal_inflate_stateless(st) != ISAL_DECOMP_OK || st->total_out != cp->win_len)
        return NULL;
    return buf;
}

/* A checkpoint's window, inflated into r->win (in the decoder's own state, which rd_start
 * initialises afterwards) and kept for the next start there. */
static const uint8_t *rd_window(struct codec_reader *r, const struct checkpoint *cp)
{
    if (r->win_cp == cp)
        return r->win;
    struct checkpoint c = *cp;
    if (!c.window && !c.zwin && c.win_len && r->winsrc) { /* its stored form, from the source */
        if (!r->zbuf && !(r->zbuf = malloc(CODEC_WINDOW)))
            return NULL;
        if (r->winsrc(r->winsrc_arg, (size_t)(cp - r->cps), r->zbuf, &c.zwin_len) < 0 ||
            c.zwin_len > c.win_len || !c.zwin_len)
            return NULL;
        c.zwin = r->zbuf;
    }
    const uint8_t *w = checkpoint_window(&c, r->st, r->win);
    if (w == r->zbuf && w) { /* stored raw: keep it where the next start there finds it */
        memcpy(r->win, w, c.win_len);
        w = r->win;
    }
    r->win_cp = w == r->win ? cp : NULL;
    return w;
}

void codec_reader_set_windows(struct codec_reader *r, codec_win_fn fn, void *arg)
{
    r->winsrc = fn;
    r->winsrc_arg = arg;
}

/* Positions the decoder at checkpoint k. */
static int rd_start(struct codec_reader *r, size_t k)
{
    const struct checkpoint *cp = &r->cps[k];
    r->live = false;
    rd_seek(r, cp->in_bit / 8);
    r->pos = cp->out_off;
    if (r->fmt == LAYER_ZSTD) {
        ZSTD_DCtx_reset(r->zd, ZSTD_reset_session_only);
        r->zframe_open = false;
        r->live = true;
        return 0;
    }
    if (cp->in_bit == 0) { /* the start of the blob: a gzip header first */
        gzhdr_init(&r->hdr);
        r->stage = RD_HEADER;
        r->live = true;
        return 0;
    }
    const uint8_t *win = cp->win_len ? rd_window(r, cp) : NULL; /* before st is set up */
    struct inflate_state *st = r->st;
    isal_inflate_init(st);
    st->crc_flag = ISAL_DEFLATE;
    if (cp->win_len && (!win || cp->win_len > CODEC_WINDOW ||
                        isal_inflate_set_dict(st, (uint8_t *)win, cp->win_len)))
        return err_set(AFSP_E_FORMAT, "gzip: bad checkpoint window");
    unsigned b = (unsigned)(cp->in_bit % 8);
    if (b) {
        ssize_t n = rd_fill(r);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return err_set(AFSP_E_FORMAT, "gzip: checkpoint past the end of the blob");
        st->read_in = r->ib[r->ib_pos++] >> b;
        st->read_in_length = (int32_t)(8 - b);
    }
    r->stage = RD_DEFLATE;
    r->live = true;
    return 0;
}

static ssize_t rd_decode(struct codec_reader *r, uint8_t *dst, size_t want)
{
    ssize_t n = r->fmt == LAYER_GZIP ? rd_gz_decode(r, dst, want) : rd_zstd_decode(r, dst, want);
    if (n > 0) {
        r->pos += (uint64_t)n;
        r->decoded += (uint64_t)n;
    }
    return n;
}

static ssize_t rd_tar(struct codec_reader *r, uint64_t off, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = r->src(r->arg, off + got, buf + got, n - got);
        if (k < 0)
            return k;
        if (k == 0)
            return err_set(AFSP_E_TRUNCATED, "blob ends at byte %" PRIu64 " of %" PRIu64, off + got,
                           r->in_size);
        got += (size_t)MIN((size_t)k, n - got);
    }
    r->decoded += got;
    return (ssize_t)got;
}

uint64_t codec_reader_pos(const struct codec_reader *r)
{
    return r->live ? r->pos : UINT64_MAX;
}

uint64_t codec_reader_decoded(const struct codec_reader *r)
{
    return r->decoded;
}

/* The last checkpoint at or before off. */
static size_t cp_find(const struct checkpoint *cps, size_t n, uint64_t off)
{
    size_t lo = 0, hi = n; /* cps[lo].out_off <= off; answer in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (cps[mid].out_off <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* A single-frame zstd layer has only checkpoint 0, so every read of it decodes from the start
 * of the blob (the whole-layer fallback); seekable and other multi-frame layers get real random
 * access, one checkpoint per frame start at the checkpoint spacing. */
ssize_t codec_read(struct codec_reader *r, uint64_t off, void *buf, size_t n)
{
    if (off >= r->out_size || n == 0)
        return 0;
    n = (size_t)MIN((uint64_t)n, r->out_size - off);
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    if (r->fmt == LAYER_TAR)
        return rd_tar(r, off, buf, n);
    if (r->ncps == 0 || r->cps[0].out_off != 0)
        return err_set(AFSP_E_FORMAT, "codec: no checkpoint at offset 0");

    size_t k = cp_find(r->cps, r->ncps, off);
    if (!r->live || r->pos > off || r->pos < r->cps[k].out_off) {
        int rc = rd_start(r, k);
        if (rc)
            return rc;
    }
    ssize_t got;
    while (r->pos < off) {
        got = rd_decode(r, r->scratch, (size_t)MIN((uint64_t)RD_SCRATCH, off - r->pos));
        if (got <= 0)
            goto fail;
    }
    got = rd_decode(r, buf, n);
    if (got < 0 || (size_t)got != n)
        goto fail;
    return got;
fail:
    r->live = false;
    return got < 0 ? got : err_set(AFSP_E_FORMAT, "stream ends before its size");
}
