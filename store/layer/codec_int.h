/*
 * codec_int.h - interfaces between the codec's files in store/layer/ (codec.c, gzip.c, zstd.c):
 * the indexer and reader objects, which hold the state of every format, and each format's entry
 * points. No other file includes this. With it come ISA-L's and zstd's headers.
 */
#ifndef AFSP_STORE_LAYER_CODEC_INT_H
#define AFSP_STORE_LAYER_CODEC_INT_H

#include <isa-l/igzip_lib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <zstd.h>

#include "layer.h"

/* The gzip indexer's buffers. Output: the 32 KiB window, then room for a call's output. The fuzz
 * targets build with smaller buffers (the Makefile's FUZZ_FLAGS), so that small inputs reach
 * their edges. */
#ifndef GZ_OBUF_ROOM
#define GZ_OBUF_ROOM (1u << 20)
#endif
#define GZ_OBUF (CODEC_WINDOW + GZ_OBUF_ROOM)
#define GZ_OBUF_MIN_FREE (GZ_OBUF_ROOM / 4)
/* Pending input; must hold the longest slice: GZ_SLICE, or a stored block (64 KiB + 5). */
#define GZ_IBUF (128u << 10)

/* zstd: the largest window accepted (a decoder's memory), the indexer's output buffer. */
#define ZSTD_WINDOW_LOG_MAX 27
#ifndef ZSTD_OBUF
#define ZSTD_OBUF (256u << 10)
#endif

/* A gzip member header being parsed (gzip.c). */
struct gzhdr {
    int stage;
    uint8_t flg;
    uint32_t n;    /* bytes seen in this stage */
    uint32_t need; /* GH_EXTRA: XLEN */
    uint32_t crc;  /* of the header bytes before FHCRC */
    uint8_t buf[10];
};

/* The checkpoints an indexer has made. */
struct cp_list {
    struct checkpoint *v;
    size_t n, cap;
};

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
    uint8_t *win;                    /* CODEC_WINDOW: a parsed checkpoint's window, inflated */
    const struct checkpoint *win_cp; /* whose window win holds, or NULL */
    codec_win_fn winsrc;             /* windows a checkpoint does not hold (or NULL) */
    void *winsrc_arg;
    uint8_t *zbuf; /* CODEC_WINDOW: a window's stored form from winsrc */
    int stage;
    struct gzhdr hdr;
    unsigned trailer_n;

    /* zstd */
    ZSTD_DCtx *zd;
    bool zframe_open;
};

/* ==== codec.c =============================================================================== */

/* Whether a checkpoint is due: the stream has advanced by the spacing since the last one. */
bool ix_due(const struct codec_indexer *ix);
/* Records a checkpoint at in_bit with win_len bytes of window (copied). Returns 0 or -ENOMEM. */
int ix_checkpoint(struct codec_indexer *ix, uint64_t in_bit, const uint8_t *win, uint32_t win_len);
/* Makes sure unread compressed bytes are buffered. Returns how many (0 at the end of the blob),
 * or the source's error. */
ssize_t rd_fill(struct codec_reader *r);

/* ==== gzip.c ================================================================================ */

void gzhdr_init(struct gzhdr *h);
/* Consumes header bytes from p. Returns 1 when the header is complete (its last bytes were the
 * first *used of p), 0 when all of p was consumed and more is needed, or AFSP_E_FORMAT. */
int gzhdr_feed(struct gzhdr *h, const uint8_t *p, size_t n, size_t *used);
/* The lookup table ISA-L builds for every fixed Huffman block, into ix->fixed_lit (uses
 * ix->snap). */
void gz_fixed_table(struct codec_indexer *ix);
/* The indexer's gzip path: push, finish (codec_indexer_push / _finish). */
int gz_push(struct codec_indexer *ix, const uint8_t *in, size_t n);
int gz_finish(struct codec_indexer *ix);
/* The reader's gzip path: decodes up to want bytes into dst. Returns the count (0 at the end of
 * the stream). */
ssize_t rd_gz_decode(struct codec_reader *r, uint8_t *dst, size_t want);

/* ==== zstd.c ================================================================================ */

/* The indexer's and the reader's zstd paths. */
int zs_push(struct codec_indexer *ix, const uint8_t *in, size_t n);
ssize_t rd_zstd_decode(struct codec_reader *r, uint8_t *dst, size_t want);

#endif
