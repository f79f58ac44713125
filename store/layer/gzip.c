/*
 * gzip.c - gzip layers through ISA-L: the member header (RFC 1952), the indexer's slicing and
 * checkpoint hunt, the reader's inflate, and the sparse windows (codec_window_trim).
 *
 * Owns and must not: as codec.c (no I/O but through the caller's callbacks, no trust in a byte
 * of the blob, memory bounded by the number of checkpoints).
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
 * unchecked: the indexer checked them.
 */
#include "codec_int.h"

#include <errno.h>
#include <inttypes.h>
#include <isa-l/crc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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
/* gzip header fields FNAME and FCOMMENT longer than this are refused. */
#define GZ_STR_MAX (64u << 10)

/* ---- gzip member header (RFC 1952) -------------------------------------------------------- */

enum { GH_FIXED, GH_XLEN, GH_EXTRA, GH_NAME, GH_COMMENT, GH_HCRC, GH_DONE };
#define GZF_FHCRC 0x02
#define GZF_FEXTRA 0x04
#define GZF_FNAME 0x08
#define GZF_FCOMMENT 0x10

void gzhdr_init(struct gzhdr *h)
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
int gzhdr_feed(struct gzhdr *h, const uint8_t *p, size_t n, size_t *used)
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

/* ---- indexer: gzip ------------------------------------------------------------------------ */

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
void gz_fixed_table(struct codec_indexer *ix)
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

int gz_push(struct codec_indexer *ix, const uint8_t *in, size_t n)
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

int gz_finish(struct codec_indexer *ix)
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

/* ---- reader: gzip ------------------------------------------------------------------------- */

/* Decodes up to want bytes into dst. Returns the count (0 at the end of the stream). */
ssize_t rd_gz_decode(struct codec_reader *r, uint8_t *dst, size_t want)
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
