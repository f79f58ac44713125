/*
 * inflate_ref.h - the reference decoders the benchmarks compare afsp against: plain zlib and
 * plain ISA-L inflate of a gzip blob held in memory, output discarded into a 1 MiB buffer.
 * Included by inflate_speed.c and ingest_speed.c, so both measure the baseline the same way,
 * with bench_load() to read the blob into memory.
 */
#ifndef AFSP_BENCH_INFLATE_REF_H
#define AFSP_BENCH_INFLATE_REF_H

#include <isa-l/igzip_lib.h>
#include <stdint.h>
#include <stdio.h>
#include <zlib.h>

#define OUT_BUF (1u << 20)

static uint8_t out_buf[OUT_BUF];

/* Reads the whole file at path into in. Returns 0, or -1 after printing why. */
static int bench_load(const char *path, struct buf *in)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t chunk[1 << 16];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(in, chunk, k)) {
            fprintf(stderr, "out of memory\n");
            fclose(f);
            return -1;
        }
    fclose(f);
    return 0;
}

/* Uncompressed size, or 0 on error. Handles concatenated members. */
static uint64_t run_zlib(const uint8_t *in, size_t n)
{
    z_stream z = {0};
    uint64_t total = 0;
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return 0;
    z.next_in = (uint8_t *)in;
    z.avail_in = (uInt)n;
    for (;;) {
        z.next_out = out_buf;
        z.avail_out = OUT_BUF;
        int rc = inflate(&z, Z_NO_FLUSH);
        total += OUT_BUF - z.avail_out;
        if (rc == Z_STREAM_END) {
            if (z.avail_in == 0)
                break;
            inflateReset(&z);
        } else if (rc != Z_OK) {
            total = 0;
            break;
        }
    }
    inflateEnd(&z);
    return total;
}

static uint64_t run_isal(const uint8_t *in, size_t n)
{
    static struct inflate_state st;
    uint64_t total = 0;
    isal_inflate_init(&st);
    st.crc_flag = ISAL_GZIP;
    st.next_in = (uint8_t *)in;
    st.avail_in = (uint32_t)n;
    for (;;) {
        st.next_out = out_buf;
        st.avail_out = OUT_BUF;
        int rc = isal_inflate(&st);
        total += OUT_BUF - st.avail_out;
        if (rc != ISAL_DECOMP_OK)
            return 0;
        if (st.block_state == ISAL_BLOCK_FINISH) {
            if (st.avail_in == 0)
                break;
            isal_inflate_reset(&st); /* next member */
        }
        if (st.avail_in == 0 && st.avail_out != 0)
            return 0; /* truncated */
    }
    return total;
}

#endif
