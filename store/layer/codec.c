/*
 * codec.c - decoding of layer blobs (gzip through ISA-L, zstd, plain tar) with random-access
 * checkpoints. The indexer decodes a blob in one streaming pass, hands the output on, verifies
 * every gzip member's CRC-32 and size, and records the places where decoding can restart; the
 * reader serves reads at any offset by decoding from the nearest checkpoint.
 *
 * Owns: the decoder states and their buffers. Must not: do I/O other than through the caller's
 * callbacks, read more of the blob than a read needs, allocate in proportion to anything but the
 * number of checkpoints, or trust a byte of the blob.
 *
 * gzip checkpoints sit at deflate block headers (zran-style: bit position, output offset, the
 * 32 KiB of output before it). ISA-L cannot stop at a block boundary, so the indexer feeds it
 * input in slices whose ends fall on a fixed grid of absolute blob positions: large slices while
 * no checkpoint is due; once one is, a "hunt" for a slice end inside a block header: probes
 * (undoable slices that tell whether a block began in them) and tiny slices where one did. When
 * a call returns with the decoder between blocks (ISAL_BLOCK_NEW_HDR) or inside a block header
 * it could not finish (ISAL_BLOCK_HDR: read_header_stateful() then restores read_in and
 * read_in_length to the header start and parks the rest of the input in tmp_in_buffer), the
 * header starts at bit
 *     8 * consumed - 8 * tmp_in_size - read_in_length
 * and every byte before it has been output. A stored block's end is known in advance, so a hunt
 * that meets one ends its next slice exactly there. Because the slices depend only on positions
 * in the blob (and on what the decoder reported at earlier ones), the checkpoints are a function
 * of the blob bytes, not of how the caller split them; pushes are buffered to whole slices.
 * Headers of fixed-Huffman blocks are 3 bits and almost never split: a stream made only of such
 * blocks gets few checkpoints, and the hunt budget below keeps it from costing much.
 *
 * This leans on ISA-L 2.30's inflate_state beyond its documented fields (block_state,
 * read_in/read_in_length, tmp_in_size, tmp_out_valid/processed, type0_block_len, the Huffman
 * tables), as zran-style tools built on it do; the unit tests restart a decoder at every
 * checkpoint they make, which is what would break first.
 *
 * The indexer runs ISA-L in raw-deflate mode and parses the gzip header and trailer itself, so
 * that it sees member boundaries (concatenated members are decoded in turn) and the bits of the
 * trailer ISA-L has already pulled into read_in. The reader does the same, but skips trailers
 * unchecked: the indexer checked them. zstd checkpoints sit at frame starts, plain tar ones every
 * CODEC_SPAN_IN bytes.
 */
#include "layer.h"

#include <errno.h>
#include <inttypes.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

/* Slices of the indexer's gzip path, in compressed bytes, on grids from blob offset 0. While no
 * checkpoint is due: GZ_SLICE (few calls, each producing ~200 KiB). Once one is due, the hunt:
 * probes of GZ_PROBE for its first GZ_PROBE_MAX bytes (see gz_inflate_slice()), and where a
 * probe saw a boundary, slices of GZ_HUNT (shorter than most dynamic block headers) or, later in
 * the hunt, GZ_HUNT_FINE (blocks with few distinct symbols, as in long runs of one byte, have
 * headers of 10-20 bytes). After GZ_PROBE_MAX, or GZ_PROBE_OUT_MAX of output (a probe's output
 * must fit in the buffer to be undone), tiny slices everywhere: a boundary between two blocks
 * with identical tables (runs of zeros, fixed Huffman) does not show in a probe. */
#define GZ_SLICE 65536u
#define GZ_PROBE 2048u
#define GZ_PROBE_MAX (64u << 10)
#define GZ_PROBE_OUT_MAX (1u << 20)
#define GZ_HUNT 64u
#define GZ_HUNT_COARSE (32u << 10)
#define GZ_HUNT_FINE 16u
/* A hunt that has not met a block boundary it could see after this many compressed bytes (about
 * three blocks of gzip -9) gives up until the next span, and each failure doubles the span, up to
 * 2^GZ_BACKOFF_MAX times: blocks whose headers are too short to split (fixed Huffman) would
 * otherwise keep the whole stream in tiny slices, at a third of the speed. */
#define GZ_HUNT_MAX (192u << 10)
#define GZ_BACKOFF_MAX 4
/* Output buffer: the 32 KiB window, then room for a call's output. */
#define GZ_OBUF (CODEC_WINDOW + (1u << 20))
#define GZ_OBUF_MIN_FREE (256u << 10)
/* Pending input; must hold the longest slice: GZ_SLICE, or a stored block (64 KiB + 5). */
#define GZ_IBUF (128u << 10)
/* gzip header fields FNAME and FCOMMENT longer than this are refused. */
#define GZ_STR_MAX (64u << 10)

#define ZSTD_WINDOW_LOG_MAX 27
#define ZSTD_OBUF (256u << 10)

#define RD_IBUF (256u << 10) /* compressed bytes read from the source at a time */
#define RD_SCRATCH (256u << 10)

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

/* ---- gzip member header (RFC 1952) -------------------------------------------------------- */

enum { GH_FIXED, GH_XLEN, GH_EXTRA, GH_NAME, GH_COMMENT, GH_HCRC, GH_DONE };
#define GZF_FHCRC 0x02
#define GZF_FEXTRA 0x04
#define GZF_FNAME 0x08
#define GZF_FCOMMENT 0x10

struct gzhdr {
    int stage;
    uint8_t flg;
    uint32_t n;    /* bytes seen in this stage */
    uint32_t need; /* GH_EXTRA: XLEN */
    uint32_t crc;  /* of the header bytes before FHCRC */
    uint8_t buf[10];
};

static void gzhdr_init(struct gzhdr *h)
{
    memset(h, 0, sizeof *h);
}

static bool gzhdr_present(const struct gzhdr *h, int stage)
{
    switch (stage) {
    case GH_XLEN:
        return h->flg & GZF_FEXTRA;
    case GH_EXTRA:
        return (h->flg & GZF_FEXTRA) && h->need;
    case GH_NAME:
        return h->flg & GZF_FNAME;
    case GH_COMMENT:
        return h->flg & GZF_FCOMMENT;
    case GH_HCRC:
        return h->flg & GZF_FHCRC;
    default:
        return true;
    }
}

/* The current field is complete: on to the next one the flags say is there. */
static void gzhdr_advance(struct gzhdr *h)
{
    do
        h->stage++;
    while (!gzhdr_present(h, h->stage));
    h->n = 0;
}

/* Consumes header bytes from p. Returns 1 when the header is complete (its last bytes were the
 * first *used of p), 0 when all of p was consumed and more is needed, or AFSP_E_FORMAT. */
static int gzhdr_feed(struct gzhdr *h, const uint8_t *p, size_t n, size_t *used)
{
    size_t i = 0;
    while (h->stage != GH_DONE && i < n) {
        const uint8_t *s = p + i;
        int stage = h->stage;
        size_t take = 1;
        switch (stage) {
        case GH_FIXED:
            h->buf[h->n++] = *s;
            if ((h->n == 1 && *s != 0x1f) || (h->n == 2 && *s != 0x8b))
                return err_set(AFSP_E_FORMAT, "gzip: bad magic");
            if (h->n == 3 && *s != 8)
                return err_set(AFSP_E_FORMAT, "gzip: compression method %u", *s);
            if (h->n == 4 && (*s & 0xe0))
                return err_set(AFSP_E_FORMAT, "gzip: reserved flags set");
            if (h->n == 10) {
                h->flg = h->buf[3];
                gzhdr_advance(h);
            }
            break;
        case GH_XLEN:
            h->buf[h->n++] = *s;
            if (h->n == 2) {
                h->need = h->buf[0] | (uint32_t)h->buf[1] << 8;
                gzhdr_advance(h);
            }
            break;
        case GH_EXTRA:
            take = MIN(n - i, (size_t)(h->need - h->n));
            h->n += (uint32_t)take;
            if (h->n == h->need)
                gzhdr_advance(h);
            break;
        case GH_NAME:
        case GH_COMMENT: {
            const uint8_t *z = memchr(s, 0, n - i);
            take = z ? (size_t)(z - s) + 1 : n - i;
            if (h->n + take > GZ_STR_MAX)
                return err_set(AFSP_E_FORMAT, "gzip: file name or comment too long");
            h->n += (uint32_t)take;
            if (z)
                gzhdr_advance(h);
            break;
        }
        case GH_HCRC:
            h->buf[h->n++] = *s;
            if (h->n == 2) {
                if ((h->buf[0] | (uint32_t)h->buf[1] << 8) != (h->crc & 0xffff))
                    return err_set(AFSP_E_FORMAT, "gzip: header CRC mismatch");
                gzhdr_advance(h);
            }
            break;
        }
        if (stage != GH_HCRC) /* FHCRC covers every header byte before it */
            h->crc = crc32_gzip_refl(h->crc, (uint8_t *)s, take);
        i += take;
    }
    *used = i;
    return h->stage == GH_DONE;
}

/* ---- checkpoints -------------------------------------------------------------------------- */

struct cp_list {
    struct checkpoint *v;
    size_t n, cap;
};

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
    l->v[l->n++] = (struct checkpoint){in_bit, out_off, win_len, w};
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

enum { GZ_HEADER, GZ_DEFLATE, GZ_TRAILER, GZ_END };

struct codec_indexer {
    enum layer_format fmt;
    codec_out_cb cb;
    void *arg;
    int err; /* sticky */
    bool finished;
    uint64_t in_pos;    /* blob bytes consumed */
    uint64_t out_total; /* bytes passed to cb */
    struct cp_list cps;
    uint64_t last_in, last_out; /* where the last checkpoint is (in bytes, out bytes) */
    uint64_t last_bit;
    unsigned backoff; /* spans are this many times doubled after hunts that failed */

    /* gzip */
    int gz_stage;
    uint64_t members;
    struct gzhdr hdr;
    struct inflate_state *st;
    uint32_t crc, isize;
    uint8_t trailer[8];
    unsigned trailer_n;
    bool hunting;
    uint64_t hunt_start, hunt_out; /* in_pos and out_total when the current hunt began */
    uint64_t stored_end;           /* while hunting: where the current stored block ends, else 0 */
    uint64_t rehunt_end;           /* after a probe was rolled back: tiny slices up to here */
    int hunt_tiny;                 /* after the probes: 0 undecided, 1 tiny slices, -1 probes on */
    struct inflate_state *snap;    /* the decoder before the current probe (snap_len bytes) */
    size_t snap_len;
    struct inflate_huff_code_large *fixed_lit; /* ISA-L's table for fixed Huffman blocks */
    uint8_t *ibuf;                             /* pending input, starting at in_pos */
    size_t ibuf_len;
    uint8_t *obuf; /* output; [emit_pos, opos) is decoded but not yet passed on (a probe's) */
    size_t opos, emit_pos;

    /* zstd */
    ZSTD_DCtx *zd;
    bool zframe_open;
    bool zpending;
    uint64_t zpend_in;
};

static int ix_fail(struct codec_indexer *ix, int rc)
{
    ix->err = rc;
    return rc;
}

static bool ix_due(const struct codec_indexer *ix)
{
    return ix->in_pos - ix->last_in >= (uint64_t)CODEC_SPAN_IN << ix->backoff ||
           ix->out_total - ix->last_out >= (uint64_t)CODEC_SPAN_OUT << ix->backoff;
}

static int ix_checkpoint(struct codec_indexer *ix, uint64_t in_bit, const uint8_t *win,
                         uint32_t win_len)
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

/* ISA-L's stateless deflate reads fields of its stream that isal_deflate_stateless_init does
 * not set (measured: 3 in 30,000 deflates of one window came out different with garbage in the
 * stream struct; index.c), and isal_inflate_init does not promise to set every field either:
 * where the result is stored (checkpoints, trimmed windows), a state starts from zeros, or two
 * ingests of one blob could make different indexes. */
static void inflate_reset(struct inflate_state *st)
{
    memset(st, 0, sizeof *st);
    isal_inflate_init(st);
}

/* ISA-L builds the same lookup table for every fixed Huffman block: take it from an empty one
 * (BFINAL=1, BTYPE=01, end of block). */
static void gz_fixed_table(struct codec_indexer *ix)
{
    static const uint8_t empty_fixed[] = {0x03, 0x00};
    uint8_t out[16];
    struct inflate_state *t = ix->snap;
    inflate_reset(t);
    t->next_in = (uint8_t *)empty_fixed;
    t->avail_in = sizeof empty_fixed;
    t->next_out = out;
    t->avail_out = sizeof out;
    isal_inflate(t);
    memcpy(ix->fixed_lit, &t->lit_huff_code, sizeof *ix->fixed_lit);
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

/* ---- indexer: gzip ------------------------------------------------------------------------ */

/* Passes the decoded output on. */
static int gz_emit(struct codec_indexer *ix)
{
    uint8_t *p = ix->obuf + ix->emit_pos;
    size_t n = ix->opos - ix->emit_pos;
    if (!n)
        return 0;
    ix->emit_pos = ix->opos;
    ix->crc = crc32_gzip_refl(ix->crc, p, n);
    ix->isize += (uint32_t)n;
    return ix->cb(ix->arg, p, n);
}

/* Called after every isal_inflate() that did not finish the member, while a checkpoint is due. */
static int gz_try_checkpoint(struct codec_indexer *ix)
{
    struct inflate_state *st = ix->st;
    if (st->block_state == ISAL_BLOCK_TYPE0) {
        /* A stored block ends at a known place: end the next slice exactly there, and the call
         * stops between blocks. Its remaining bytes are partly in read_in (whole bytes). */
        ix->stored_end = ix->in_pos - (uint64_t)(st->read_in_length / 8) + st->type0_block_len;
        return 0;
    }
    if ((st->block_state != ISAL_BLOCK_NEW_HDR && st->block_state != ISAL_BLOCK_HDR) ||
        st->tmp_out_valid != st->tmp_out_processed)
        return 0;
    uint64_t bit = 8 * ix->in_pos - 8 * (uint64_t)st->tmp_in_size - (uint64_t)st->read_in_length;
    if (bit <= ix->last_bit)
        return 0;
    uint32_t w = (uint32_t)MIN(ix->out_total, (uint64_t)CODEC_WINDOW);
    ix->stored_end = 0;
    ix->hunting = false;
    return ix_checkpoint(ix, bit, ix->obuf + ix->opos - w, w);
}

static void gz_member_start(struct codec_indexer *ix)
{
    inflate_reset(ix->st);
    ix->st->crc_flag = ISAL_DEFLATE;
    ix->crc = 0;
    ix->isize = 0;
    ix->trailer_n = 0;
    ix->members++;
    ix->gz_stage = GZ_DEFLATE;
}

/* The deflate stream ended: the bytes of read_in that follow it are the first of the trailer. */
static void gz_member_end(struct codec_indexer *ix)
{
    struct inflate_state *st = ix->st;
    uint64_t bits = st->read_in >> (st->read_in_length % 8);
    unsigned k = (unsigned)(st->read_in_length / 8);
    for (unsigned i = 0; i < k && ix->trailer_n < 8; i++, bits >>= 8)
        ix->trailer[ix->trailer_n++] = (uint8_t)bits;
    ix->gz_stage = GZ_TRAILER;
}

enum { SL_LARGE, SL_PROBE, SL_TINY };

/* Feeds p[0..len) to ISA-L as one slice. *used is how much of it was consumed: all of it unless
 * the member ended inside the slice, the slice was cut short to start hunting, or a probe was
 * rolled back (then nothing).
 *
 * A probe is a hunting slice of GZ_PROBE bytes run on a copy of the decoder's state, its output
 * held back: if a new block began inside it (the Huffman tables changed) without a checkpoint,
 * the decoder and the output are put back and the same bytes are hunted in tiny slices. Tiny
 * slices cost a call each, whose fixed cost (ISA-L moves its 32 KiB history every call) is far
 * above that of decoding 64 bytes; probes spend them only where a boundary is. */
static int gz_inflate_slice(struct codec_indexer *ix, const uint8_t *p, size_t len, int kind,
                            size_t *used)
{
    struct inflate_state *st = ix->st;
    uint64_t start = ix->in_pos;
    bool due = ix_due(ix), probe = kind == SL_PROBE;
    size_t opos0 = 0, ncps0 = ix->cps.n;
    uint64_t out0 = 0;
    if (probe) {
        if (GZ_OBUF - ix->opos < GZ_OBUF_MIN_FREE)
            probe = false; /* the output would not fit: no undo for this one */
        else {
            /* the state is self-contained (no pointers into itself between calls), and the
             * bytes of tmp_out_buffer past tmp_out_valid are free space */
            ix->snap_len = offsetof(struct inflate_state, tmp_out_buffer) +
                           (size_t)MIN((uint32_t)st->tmp_out_valid, sizeof st->tmp_out_buffer);
            memcpy(ix->snap, st, ix->snap_len);
            opos0 = ix->opos;
            out0 = ix->out_total;
        }
    }
    st->next_in = (uint8_t *)p;
    st->avail_in = (uint32_t)len;
    for (;;) {
        if (GZ_OBUF - ix->opos < GZ_OBUF_MIN_FREE) {
            int rc = gz_emit(ix);
            if (rc)
                return rc;
            probe = false;
            size_t keep = MIN(ix->opos, (size_t)CODEC_WINDOW);
            memmove(ix->obuf, ix->obuf + ix->opos - keep, keep);
            ix->opos = ix->emit_pos = keep;
        }
        uint8_t *o = ix->obuf + ix->opos;
        uint32_t avail_in = st->avail_in;
        st->next_out = o;
        st->avail_out = (uint32_t)(GZ_OBUF - ix->opos);
        int ret = isal_inflate(st);
        size_t produced = (size_t)(st->next_out - o);
        ix->in_pos = start + (len - st->avail_in);
        ix->opos += produced;
        ix->out_total += produced;
        if (ret < 0)
            return err_set(AFSP_E_FORMAT, "gzip member %" PRIu64 ": corrupt deflate data (%d)",
                           ix->members, ret);
        if (!probe) {
            int rc = gz_emit(ix);
            if (rc)
                return rc;
        }
        if (st->block_state == ISAL_BLOCK_FINISH) {
            gz_member_end(ix);
            break;
        }
        if (!due)
            due = ix_due(ix);
        if (due) {
            int rc = gz_try_checkpoint(ix);
            if (rc)
                return rc;
            due = ix_due(ix);
        }
        if (st->avail_out > 0 && st->avail_in == 0)
            break;
        /* Output filled up inside a large slice and a checkpoint has become due (very
         * compressible data): hunt from here rather than after the rest of the slice. */
        if (due && kind == SL_LARGE)
            break;
        if (!produced && st->avail_in == avail_in)
            return err_set(AFSP_E_FORMAT, "gzip member %" PRIu64 ": decoder stuck", ix->members);
    }
    if (probe && ix->cps.n == ncps0 &&
        (st->block_state == ISAL_BLOCK_CODED || st->block_state == ISAL_BLOCK_TYPE0) &&
        (memcmp(&st->lit_huff_code, &ix->snap->lit_huff_code, sizeof st->lit_huff_code) ||
         memcmp(&st->dist_huff_code, &ix->snap->dist_huff_code, sizeof st->dist_huff_code))) {
        memcpy(st, ix->snap, ix->snap_len);
        ix->opos = ix->emit_pos = opos0;
        ix->out_total = out0;
        ix->in_pos = start;
        ix->stored_end = 0;
        ix->rehunt_end = start + len;
        *used = 0;
        return 0;
    }
    int rc = gz_emit(ix);
    if (rc)
        return rc;
    *used = len - st->avail_in;
    return 0;
}

static uint64_t grid_next(uint64_t pos, uint64_t step)
{
    return (pos / step + 1) * step;
}

/* Where the next slice ends, and its kind. */
static uint64_t gz_slice_end(struct codec_indexer *ix, int *kind)
{
    if (ix_due(ix)) {
        if (!ix->hunting) {
            ix->hunting = true;
            ix->hunt_start = ix->in_pos;
            ix->hunt_out = ix->out_total;
            ix->hunt_tiny = 0;
        }
        if (ix->in_pos - ix->hunt_start >= GZ_HUNT_MAX) {
            ix->hunting = false;
            ix->last_in = ix->in_pos; /* no checkpoint, but the spacing starts again */
            ix->last_out = ix->out_total;
            ix->backoff = MIN(ix->backoff + 1, GZ_BACKOFF_MAX);
        }
    }
    if (!ix->hunting) {
        ix->stored_end = ix->rehunt_end = 0;
        *kind = SL_LARGE;
        return grid_next(ix->in_pos, GZ_SLICE);
    }
    *kind = SL_TINY;
    if (ix->stored_end > ix->in_pos)
        return ix->stored_end;
    ix->stored_end = 0;
    if (ix->rehunt_end > ix->in_pos) {
        uint64_t step = ix->in_pos - ix->hunt_start < GZ_HUNT_COARSE ? GZ_HUNT : GZ_HUNT_FINE;
        return MIN(grid_next(ix->in_pos, step), ix->rehunt_end);
    }
    ix->rehunt_end = 0;
    if (ix->hunt_tiny == 0 && (ix->in_pos - ix->hunt_start >= GZ_PROBE_MAX ||
                               ix->out_total - ix->hunt_out >= GZ_PROBE_OUT_MAX)) {
        /* tiny slices cannot split the 3-bit header of a fixed Huffman block either */
        bool fixed = !memcmp(&ix->st->lit_huff_code, ix->fixed_lit, sizeof *ix->fixed_lit);
        ix->hunt_tiny = fixed ? -1 : 1;
    }
    if (ix->hunt_tiny <= 0) {
        *kind = SL_PROBE;
        return grid_next(ix->in_pos, GZ_PROBE);
    }
    return grid_next(ix->in_pos, GZ_HUNT_FINE);
}

/* Consumes what it can of p[0..n) (which starts at in_pos). Returns the count consumed, or an
 * error. Deflate data is consumed only in whole slices unless eof. */
static ssize_t gz_process(struct codec_indexer *ix, const uint8_t *p, size_t n, bool eof)
{
    size_t done = 0;
    for (;;) {
        switch (ix->gz_stage) {
        case GZ_END:
            if (done == n)
                return (ssize_t)done;
            gzhdr_init(&ix->hdr);
            ix->gz_stage = GZ_HEADER;
            break;
        case GZ_HEADER: {
            if (done == n)
                return (ssize_t)done;
            size_t used = 0;
            int rc = gzhdr_feed(&ix->hdr, p + done, n - done, &used);
            done += used;
            ix->in_pos += used;
            if (rc < 0)
                return err_ctx(rc, "gzip member %" PRIu64 " at byte %" PRIu64, ix->members + 1,
                               ix->in_pos);
            if (rc == 1)
                gz_member_start(ix);
            break;
        }
        case GZ_DEFLATE: {
            int kind;
            uint64_t need = gz_slice_end(ix, &kind) - ix->in_pos;
            size_t avail = n - done;
            if (avail < need) {
                if (!eof || avail == 0)
                    return (ssize_t)done;
                need = avail;
            }
            size_t used = 0;
            int rc = gz_inflate_slice(ix, p + done, (size_t)need, kind, &used);
            if (rc)
                return rc;
            done += used;
            break;
        }
        case GZ_TRAILER: {
            size_t take = MIN(n - done, (size_t)(8 - ix->trailer_n));
            memcpy(ix->trailer + ix->trailer_n, p + done, take);
            ix->trailer_n += (unsigned)take;
            done += take;
            ix->in_pos += take;
            if (ix->trailer_n < 8)
                return (ssize_t)done;
            if (get_le32(ix->trailer) != ix->crc)
                return err_set(AFSP_E_FORMAT, "gzip member %" PRIu64 ": CRC mismatch", ix->members);
            if (get_le32(ix->trailer + 4) != ix->isize)
                return err_set(AFSP_E_FORMAT, "gzip member %" PRIu64 ": size mismatch",
                               ix->members);
            ix->gz_stage = GZ_END;
            break;
        }
        }
    }
}

static int gz_push(struct codec_indexer *ix, const uint8_t *in, size_t n)
{
    while (n > 0) {
        if (ix->ibuf_len == 0) {
            /* whole slices straight from the caller's buffer, the rest is kept */
            ssize_t r = gz_process(ix, in, n, false);
            if (r < 0)
                return (int)r;
            in += r;
            n -= (size_t)r;
            if (n > GZ_IBUF)
                return err_set(-EOVERFLOW, "gzip: internal slice bound");
            memcpy(ix->ibuf, in, n);
            ix->ibuf_len = n;
            return 0;
        }
        size_t take = MIN(n, GZ_IBUF - ix->ibuf_len);
        memcpy(ix->ibuf + ix->ibuf_len, in, take);
        ix->ibuf_len += take;
        in += take;
        n -= take;
        ssize_t r = gz_process(ix, ix->ibuf, ix->ibuf_len, false);
        if (r < 0)
            return (int)r;
        if (r == 0 && ix->ibuf_len == GZ_IBUF)
            return err_set(-EOVERFLOW, "gzip: internal slice bound");
        if (r > 0) {
            memmove(ix->ibuf, ix->ibuf + r, ix->ibuf_len - (size_t)r);
            ix->ibuf_len -= (size_t)r;
        }
    }
    return 0;
}

static int gz_finish(struct codec_indexer *ix)
{
    ssize_t r = gz_process(ix, ix->ibuf, ix->ibuf_len, true);
    if (r < 0)
        return (int)r;
    ix->ibuf_len = 0;
    if (ix->members == 0)
        return err_set(AFSP_E_TRUNCATED, "gzip: empty blob");
    if (ix->gz_stage != GZ_END)
        return err_set(AFSP_E_TRUNCATED, "gzip member %" PRIu64 " ends early", ix->members);
    return 0;
}

/* ---- indexer: zstd ------------------------------------------------------------------------ */

static int zstd_err(size_t ret)
{
    if (ZSTD_getErrorCode(ret) == ZSTD_error_frameParameter_windowTooLarge)
        return err_set(AFSP_E_UNSUPPORTED, "zstd: window larger than 2^%d", ZSTD_WINDOW_LOG_MAX);
    if (ZSTD_getErrorCode(ret) == ZSTD_error_memory_allocation)
        return -ENOMEM;
    return err_set(AFSP_E_FORMAT, "zstd: %s", ZSTD_getErrorName(ret));
}

/* Checkpoints go at frame starts; a frame end becomes one only once the blob goes on after it. */
static int zs_push(struct codec_indexer *ix, const uint8_t *in, size_t n)
{
    ZSTD_inBuffer ib = {in, n, 0};
    for (;;) {
        if (ix->zpending && ib.pos < ib.size) {
            ix->zpending = false;
            int rc = ix_checkpoint(ix, 8 * ix->zpend_in, NULL, 0);
            if (rc)
                return rc;
        }
        ZSTD_outBuffer ob = {ix->obuf, ZSTD_OBUF, 0};
        size_t pos0 = ib.pos;
        size_t ret = ZSTD_decompressStream(ix->zd, &ob, &ib);
        ix->in_pos += ib.pos - pos0;
        if (ZSTD_isError(ret))
            return zstd_err(ret);
        if (ob.pos) {
            ix->out_total += ob.pos;
            int rc = ix->cb(ix->arg, ix->obuf, ob.pos);
            if (rc)
                return rc;
        }
        ix->zframe_open = ret != 0;
        if (ret == 0 && ix_due(ix)) {
            ix->zpending = true;
            ix->zpend_in = ix->in_pos;
        }
        if (ib.pos == ib.size && ob.pos < ob.size)
            return 0;
        if (ib.pos == pos0 && ob.pos == 0)
            return err_set(AFSP_E_FORMAT, "zstd: decoder stuck");
    }
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

/* ---- sparse windows ----------------------------------------------------------------------- */

/* Which window bytes the decoding from a checkpoint reads: decode its first CODEC_WINDOW bytes
 * of output (no later byte can reach back past the checkpoint) twice, with windows of position
 * markers instead of the real bytes: byte k of the window is k & 0xff in the first pass and
 * 0x80 | k >> 8 in the second. An output byte copied from window byte k (directly or through
 * earlier output) differs between the passes and spells k; a literal is the same in both. Where
 * both passes agree on a value v >= 0x80, v could also be window byte ((v & 0x7f) << 8) | v
 * (the 128 positions whose two markers coincide), which is then kept too. */
struct window_trimmer {
    struct inflate_state st;
    uint8_t marks[2][CODEC_WINDOW];
    uint8_t out[2][CODEC_WINDOW];
    uint8_t used[CODEC_WINDOW];
};

int window_trimmer_new(struct window_trimmer **out)
{
    struct window_trimmer *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    for (uint32_t k = 0; k < CODEC_WINDOW; k++) {
        t->marks[0][k] = (uint8_t)k;
        t->marks[1][k] = (uint8_t)(0x80 | k >> 8);
    }
    *out = t;
    return 0;
}

void window_trimmer_free(struct window_trimmer *t)
{
    free(t);
}

/* One pass: decodes up to CODEC_WINDOW bytes into t->out[pass]. Returns the count, or -1 if the
 * input ran out first, or AFSP_E_FORMAT. */
static ssize_t trim_pass(struct window_trimmer *t, int pass, uint64_t in_bit, uint32_t win_len,
                         const uint8_t *in, size_t n)
{
    struct inflate_state *st = &t->st;
    inflate_reset(st);
    st->crc_flag = ISAL_DEFLATE;
    if (isal_inflate_set_dict(st, t->marks[pass], win_len))
        return err_set(AFSP_E_FORMAT, "gzip: bad checkpoint window");
    unsigned b = (unsigned)(in_bit % 8);
    if (b) {
        if (!n)
            return -1;
        st->read_in = in[0] >> b;
        st->read_in_length = (int32_t)(8 - b);
        in++, n--;
    }
    st->next_in = (uint8_t *)in;
    st->avail_in = (uint32_t)MIN(n, (size_t)UINT32_MAX);
    st->next_out = t->out[pass];
    st->avail_out = CODEC_WINDOW;
    if (isal_inflate(st) < 0)
        return err_set(AFSP_E_FORMAT, "gzip: corrupt deflate data after a checkpoint");
    size_t got = (size_t)(st->next_out - t->out[pass]);
    if (got < CODEC_WINDOW && st->block_state != ISAL_BLOCK_FINISH)
        return -1;
    return (ssize_t)got;
}

int codec_window_trim(struct window_trimmer *t, const struct checkpoint *cp, uint8_t *window,
                      const uint8_t *in, size_t n)
{
    if (!cp->win_len)
        return 0;
    if (cp->win_len > CODEC_WINDOW)
        return err_set(AFSP_E_FORMAT, "gzip: bad checkpoint window");
    ssize_t got[2];
    for (int pass = 0; pass < 2; pass++)
        if ((got[pass] = trim_pass(t, pass, cp->in_bit, cp->win_len, in, n)) < 0)
            return got[pass] == -1 ? 0 : (int)got[pass];
    if (got[0] != got[1]) /* the passes decode the same symbols */
        return err_set(AFSP_E_FORMAT, "gzip: inconsistent decoding after a checkpoint");
    /* branch-free: the outcome of each test is a coin toss */
    memset(t->used, 0, sizeof t->used);
    for (size_t j = 0; j < (size_t)got[0]; j++) {
        uint8_t a = t->out[0][j], c = t->out[1][j];
        t->used[(c & 0x7f) << 8 | a] |= (uint8_t)((a != c) | c >> 7);
    }
    for (uint32_t k = 0; k < cp->win_len; k++)
        window[k] &= (uint8_t)-t->used[k];
    return 1;
}

/* ---- reader ------------------------------------------------------------------------------- */

enum { RD_HEADER, RD_DEFLATE, RD_TRAILER, RD_MEMBER_END };

struct codec_reader {
    enum layer_format fmt;
    const struct checkpoint *cps;
    size_t ncps;
    uint64_t in_size, out_size;
    codec_src_fn src;
    void *arg;

    uint8_t *ib; /* compressed bytes [ib_off, ib_off + ib_len), next one at ib_pos */
    uint64_t ib_off;
    size_t ib_len, ib_pos;

    bool live;        /* the decoder is positioned at pos */
    uint64_t pos;     /* uncompressed offset of the next byte the decoder yields */
    uint64_t decoded; /* bytes produced, for statistics */
    uint8_t *scratch;

    /* gzip */
    struct inflate_state *st;
    int stage;
    struct gzhdr hdr;
    unsigned trailer_n;

    /* zstd */
    ZSTD_DCtx *zd;
    bool zframe_open;
};

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
    if (fmt == LAYER_GZIP && !(r->st = calloc(1, sizeof *r->st)))
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
static ssize_t rd_fill(struct codec_reader *r)
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
    struct inflate_state *st = r->st;
    isal_inflate_init(st);
    st->crc_flag = ISAL_DEFLATE;
    if (cp->win_len && (!cp->window || cp->win_len > CODEC_WINDOW ||
                        isal_inflate_set_dict(st, cp->window, cp->win_len)))
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

/* Decodes up to want bytes into dst. Returns the count (0 at the end of the stream). */
static ssize_t rd_gz_decode(struct codec_reader *r, uint8_t *dst, size_t want)
{
    struct inflate_state *st = r->st;
    size_t got = 0;
    while (got < want) {
        ssize_t avail = rd_fill(r);
        if (avail < 0)
            return avail;
        switch (r->stage) {
        case RD_MEMBER_END:
            if (avail == 0)
                return (ssize_t)got;
            gzhdr_init(&r->hdr);
            r->stage = RD_HEADER;
            break;
        case RD_HEADER: {
            if (avail == 0)
                return err_set(AFSP_E_FORMAT, "gzip: header ends early");
            size_t used = 0;
            int rc = gzhdr_feed(&r->hdr, r->ib + r->ib_pos, (size_t)avail, &used);
            r->ib_pos += used;
            if (rc < 0)
                return rc;
            if (rc == 1) {
                isal_inflate_init(st);
                st->crc_flag = ISAL_DEFLATE;
                r->stage = RD_DEFLATE;
            }
            break;
        }
        case RD_DEFLATE: {
            st->next_in = r->ib + r->ib_pos;
            st->avail_in = (uint32_t)avail;
            st->next_out = dst + got;
            st->avail_out = (uint32_t)MIN(want - got, (size_t)UINT32_MAX);
            int ret = isal_inflate(st);
            size_t produced = (size_t)(st->next_out - (dst + got));
            size_t used = (size_t)avail - st->avail_in;
            r->ib_pos += used;
            got += produced;
            if (ret < 0)
                return err_set(AFSP_E_FORMAT, "gzip: corrupt deflate data (%d)", ret);
            if (st->block_state == ISAL_BLOCK_FINISH) {
                /* skip the trailer: its first bytes may sit in read_in */
                r->trailer_n = (unsigned)MIN(st->read_in_length / 8, 8);
                r->stage = RD_TRAILER;
            } else if (!produced && !used) {
                if (avail == 0)
                    return err_set(AFSP_E_FORMAT, "gzip: deflate data ends early");
                return err_set(AFSP_E_FORMAT, "gzip: decoder stuck");
            }
            break;
        }
        case RD_TRAILER: {
            size_t take = MIN((size_t)avail, (size_t)(8 - r->trailer_n));
            if (take == 0 && r->trailer_n < 8)
                return err_set(AFSP_E_FORMAT, "gzip: trailer ends early");
            r->ib_pos += take;
            r->trailer_n += (unsigned)take;
            if (r->trailer_n == 8)
                r->stage = RD_MEMBER_END;
            break;
        }
        }
    }
    return (ssize_t)got;
}

static ssize_t rd_zstd_decode(struct codec_reader *r, uint8_t *dst, size_t want)
{
    size_t got = 0;
    while (got < want) {
        ssize_t avail = rd_fill(r);
        if (avail < 0)
            return avail;
        ZSTD_inBuffer in = {r->ib + r->ib_pos, (size_t)avail, 0};
        ZSTD_outBuffer out = {dst, want, got};
        size_t ret = ZSTD_decompressStream(r->zd, &out, &in);
        r->ib_pos += in.pos;
        bool progress = in.pos || out.pos != got;
        got = out.pos;
        if (ZSTD_isError(ret))
            return zstd_err(ret);
        r->zframe_open = ret != 0;
        if (!progress) {
            if (avail == 0 && !r->zframe_open)
                return (ssize_t)got;
            return err_set(AFSP_E_FORMAT, "zstd: %s", avail ? "decoder stuck" : "frame ends early");
        }
    }
    return (ssize_t)got;
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
