/*
 * test_index.c - a layer index from a peer is hostile: what parsing one may cost (issue 15,
 * item 2: an index bomb), and which uncompressed sizes it may claim.
 */
#include "test.h"

#include "../../store/layer/layer.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define HDR 56
#define CHUNK_REC 44
#define CP_REC 28

/* Peak resident memory of this process in bytes since the last reset_peak(). */
static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    CHECK(f != NULL);
    CHECK(fputs("5", f) >= 0); /* 5: reset the peak resident set size (proc(5)) */
    CHECK(fclose(f) == 0);
}

static uint64_t status_kb(const char *key)
{
    char line[256];
    uint64_t kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key)))
            kb = strtoull(line + strlen(key) + 1, NULL, 10);
    fclose(f);
    CHECK(kb > 0);
    return kb;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* A gzip index of ncps checkpoints, each with a 32 KiB window of zeros, no files: the stored
 * window (zlib, about 50 bytes) once per checkpoint, or only once and named by every checkpoint
 * (shared: the bomb of issue 15, which the old parser inflated ncps times). */
static void bomb(struct buf *out, uint32_t ncps, bool shared)
{
    static uint8_t zero[CODEC_WINDOW];
    uint8_t z[256];
    uLongf zn = sizeof z;
    CHECK(compress2(z, &zn, zero, sizeof zero, 9) == Z_OK);
    uint64_t blob = (uint64_t)ncps * 64;
    uint32_t nwin = shared ? 1 : ncps - 1, wlen = (uint32_t)(zn * nwin);
    size_t n = HDR + CHUNK_REC + (size_t)ncps * CP_REC + wlen;
    buf_release(out);
    CHECK(buf_reserve(out, n) == 0);
    uint8_t *p = out->p;
    memset(p, 0, n);
    memcpy(p, "AFSPIDX1", 8);
    put_le32(p + 8, 2);
    put_le32(p + 12, LAYER_GZIP);
    put_le64(p + 16, blob);
    put_le64(p + 24, blob * 8);
    put_le32(p + 32, 1); /* one chunk: the whole blob */
    put_le32(p + 36, ncps);
    put_le32(p + 52, wlen);
    uint8_t *q = p + HDR;
    put_le32(q + 8, (uint32_t)blob);
    q += CHUNK_REC;
    for (uint32_t i = 0; i < ncps; i++, q += CP_REC) {
        put_le64(q, i ? (uint64_t)i * 64 * 8 + 3 : 0);
        put_le64(q + 8, (uint64_t)i * 512);
        put_le32(q + 16, i && !shared ? (uint32_t)((i - 1) * zn) : 0);
        put_le32(q + 20, i ? (uint32_t)zn : 0);
        put_le32(q + 24, i ? CODEC_WINDOW : 0);
    }
    for (uint32_t i = 0; i < nwin; i++, q += zn)
        memcpy(q, z, zn);
    out->len = n;
}

/* Parses, and says how long it took and how much memory it took at its peak. */
static int parse_measured(const struct buf *b, struct layer_index *ix, double *secs, uint64_t *peak)
{
    uint64_t before = status_kb("VmRSS:");
    reset_peak();
    double t = now_s();
    int rc = index_parse(b->p, b->len, ix);
    *secs = now_s() - t;
    uint64_t hwm = status_kb("VmHWM:");
    *peak = hwm > before ? (hwm - before) << 10 : 0;
    return rc;
}

/* The bound on a parse: at most 4x the index's size plus 16 MiB, in under a second. */
#define PEAK_OK(b, peak) ((peak) <= 4 * (uint64_t)(b).len + (16u << 20))

TEST(index_bomb_is_refused_in_a_second_with_bounded_memory)
{
    struct buf b = {0};
    struct layer_index ix;
    double secs;
    uint64_t peak;

    /* 16,384 checkpoints naming one stored window: 512 MiB once inflated, from a 460 KB index */
    bomb(&b, 16384, true);
    CHECK(b.len < (512u << 10));
    CHECK_INT(parse_measured(&b, &ix, &secs, &peak), ==, AFSP_E_FORMAT);
    CHECK(secs < 1.0);
    if (!PEAK_OK(b, peak))
        test_fail(__FILE__, __LINE__, "parse peaked at %" PRIu64 " bytes for %zu", peak, b.len);

    /* The same with each checkpoint its own stored copy (1.2 MB): a valid index, parsed
     * without inflating a window; a reader inflates one when it starts there. */
    bomb(&b, 16384, false);
    CHECK_INT(parse_measured(&b, &ix, &secs, &peak), ==, 0);
    CHECK(secs < 1.0);
    if (!PEAK_OK(b, peak))
        test_fail(__FILE__, __LINE__, "parse peaked at %" PRIu64 " bytes for %zu", peak, b.len);
    CHECK_INT(ix.ncps, ==, 16384);
    CHECK(ix.cps[9].window == NULL && ix.cps[9].zwin != NULL);
    index_release(&ix);
    buf_release(&b);
}

/* A window that does not inflate to its length is found when a reader starts there: an error,
 * not a crash and not a read. */
static ssize_t zeros(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    (void)arg, (void)off;
    memset(buf, 0, len);
    return (ssize_t)len;
}

TEST(index_bad_window_fails_the_read_that_starts_there)
{
    struct buf b = {0};
    struct layer_index ix;
    bomb(&b, 4, false);
    /* the last stored window: flip a byte of its zlib data */
    b.p[b.len - 10] ^= 0x55;
    CHECK_INT(index_parse(b.p, b.len, &ix), ==, 0);
    struct codec_reader *r;
    CHECK(codec_reader_new(&r, ix.format, ix.cps, ix.ncps, ix.blob_size, ix.tar_size, zeros,
                           NULL) == 0);
    uint8_t out[16];
    CHECK_INT(codec_read(r, ix.cps[3].out_off, out, sizeof out), ==, AFSP_E_FORMAT);
    codec_reader_free(r);
    index_release(&ix);
    buf_release(&b);
}

/* Sets a parsed-then-serialized index's format, blob size and uncompressed size. */
static int parse_claiming(struct buf *b, uint32_t fmt, uint64_t tar_size)
{
    struct layer_index ix;
    put_le32(b->p + 12, fmt);
    put_le64(b->p + 24, tar_size);
    int rc = index_parse(b->p, b->len, &ix);
    if (rc == 0)
        index_release(&ix);
    return rc;
}

/* A forged uncompressed size sized the mount's piece table (2^31 entries): it must be one the
 * blob can decode to. */
TEST(index_uncompressed_size_is_bounded_by_the_blob)
{
    struct buf b = {0};
    bomb(&b, 1, false); /* one checkpoint, no window: valid for every format */
    uint64_t blob = get_le64(b.p + 16);
    CHECK_INT(parse_claiming(&b, LAYER_GZIP, blob * INDEX_MAX_RATIO_GZIP), ==, 0);
    CHECK_INT(parse_claiming(&b, LAYER_GZIP, blob * INDEX_MAX_RATIO_GZIP + 1), ==, AFSP_E_FORMAT);
    CHECK_INT(parse_claiming(&b, LAYER_GZIP, UINT64_MAX), ==, AFSP_E_FORMAT);
    CHECK_INT(parse_claiming(&b, LAYER_ZSTD, blob * INDEX_MAX_RATIO_ZSTD), ==, 0);
    CHECK_INT(parse_claiming(&b, LAYER_ZSTD, blob * INDEX_MAX_RATIO_ZSTD + 1), ==, AFSP_E_FORMAT);
    CHECK_INT(parse_claiming(&b, LAYER_TAR, blob), ==, 0);
    CHECK_INT(parse_claiming(&b, LAYER_TAR, blob + 1), ==, AFSP_E_FORMAT);
    buf_release(&b);
}

/* A peer's index on its way into the store is checked, not copied: index_check refuses what
 * index_parse refuses, anywhere in the encoding, and keeps the header and the chunks. */
TEST(index_check_refuses_what_the_parse_refuses)
{
    struct buf b = {0};
    struct layer_index ix, kx;
    bomb(&b, 4, false);
    CHECK_INT(index_parse(b.p, b.len, &ix), ==, 0);
    CHECK_INT(index_check(b.p, b.len, &kx), ==, 0);
    CHECK_INT(kx.nfiles, ==, ix.nfiles);
    CHECK(kx.files == NULL && kx.cps == NULL && kx.xattrs == NULL && kx.strtab.p == NULL);
    CHECK(kx.nchunks == ix.nchunks &&
          !memcmp(kx.chunks, ix.chunks, ix.nchunks * sizeof *ix.chunks));
    index_release(&kx);
    const size_t cps = 56 + (size_t)ix.nchunks * 44, files = cps + (size_t)ix.ncps * 28;
    /* each byte flipped in turn, past the header and the chunks: the two always agree */
    size_t differ = 0, refused = 0;
    for (size_t off = cps; off < b.len; off++) {
        uint8_t keep = b.p[off];
        b.p[off] ^= off < files ? 0x80 : 0x41;
        struct layer_index a, c;
        int pa = index_parse(b.p, b.len, &a), pc = index_check(b.p, b.len, &c);
        differ += (pa == 0) != (pc == 0);
        refused += pc != 0;
        if (pa == 0)
            index_release(&a);
        if (pc == 0)
            index_release(&c);
        b.p[off] = keep;
    }
    CHECK_INT(differ, ==, 0);
    CHECK_INT(refused, >, 0);
    index_release(&ix);
    buf_release(&b);
}

/* A fetch parses the chunk table alone: the same chunks as the whole parse, and the same
 * refusals of a header or a chunk table that is wrong. */
TEST(index_chunks_alone_are_those_of_the_whole_parse)
{
    struct buf b = {0};
    struct layer_index ix, cx;
    bomb(&b, 4, false);
    CHECK_INT(index_parse(b.p, b.len, &ix), ==, 0);
    CHECK_INT(index_parse_chunks(b.p, b.len, &cx), ==, 0);
    CHECK_INT(cx.nchunks, ==, ix.nchunks);
    CHECK_INT(cx.blob_size, ==, ix.blob_size);
    CHECK(!memcmp(cx.chunks, ix.chunks, ix.nchunks * sizeof *ix.chunks));
    CHECK_INT(cx.ncps + cx.nfiles + cx.nxattrs, ==, 0);
    index_release(&cx);
    CHECK_INT(index_parse_chunks(b.p, b.len - 1, &cx), ==, AFSP_E_FORMAT);
    put_le32(b.p + 64, get_le32(b.p + 64) + 1); /* the first chunk's length: no tiling */
    CHECK_INT(index_parse_chunks(b.p, b.len, &cx), ==, AFSP_E_FORMAT);
    index_release(&ix);
    buf_release(&b);
}
