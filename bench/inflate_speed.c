/*
 * inflate_speed.c - how fast a gzip layer inflates: zlib, plain ISA-L, and the codec indexer
 * (ISA-L with checkpoints and CRC checks), each the median of 5 runs over the same file held in
 * memory. Speeds are uncompressed bytes per second.
 *
 * usage: inflate_speed FILE.gz [PUSH_BYTES]
 * PUSH_BYTES is the piece size handed to codec_indexer_push (default 16384, what curl hands
 * ingest; 0 means the whole file in one push).
 */
#include "../store/layer/layer.h"
#include "inflate_ref.h"

#include <isa-l/igzip_lib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define RUNS 5

static double now(void)
{
    return (double)time_mono_ns() / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v)
{
    qsort(v, RUNS, sizeof *v, cmp_double);
    return v[RUNS / 2];
}

static int discard(void *arg, const uint8_t *p, size_t n)
{
    (void)arg, (void)p, (void)n;
    return 0;
}

static size_t ncps;
static uint64_t win_bytes;

static uint64_t run_indexer(const uint8_t *in, size_t n, size_t push)
{
    struct codec_indexer *ix;
    if (codec_indexer_new(&ix, LAYER_GZIP, discard, NULL))
        return 0;
    if (push == 0)
        push = n;
    int rc = 0;
    for (size_t off = 0; off < n && !rc; off += push)
        rc = codec_indexer_push(ix, in + off, MIN(push, n - off));
    if (!rc)
        rc = codec_indexer_finish(ix);
    uint64_t total = rc ? 0 : codec_indexer_out_bytes(ix);
    if (rc)
        fprintf(stderr, "indexer: %s\n", err_msg(rc));
    const struct checkpoint *cps = codec_indexer_checkpoints(ix, &ncps);
    win_bytes = 0;
    for (size_t i = 0; i < ncps; i++)
        win_bytes += cps[i].win_len;
    codec_indexer_free(ix);
    return total;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE.gz [PUSH_BYTES]\n", argv[0]);
        return 2;
    }
    size_t push = argc > 2 ? strtoul(argv[2], NULL, 0) : 16384;
    struct buf in = {0};
    if (bench_load(argv[1], &in) < 0)
        return 1;

    double tz[RUNS], ti[RUNS], tx[RUNS];
    uint64_t nz = 0, ni = 0, nx = 0;
    for (int r = 0; r < RUNS; r++) { /* interleaved, so drifts in clock speed hit all three */
        double t0 = now();
        nz = run_zlib(in.p, in.len);
        double t1 = now();
        ni = run_isal(in.p, in.len);
        double t2 = now();
        nx = run_indexer(in.p, in.len, push);
        double t3 = now();
        tz[r] = t1 - t0, ti[r] = t2 - t1, tx[r] = t3 - t2;
    }
    if (!nz || nz != ni || ni != nx) {
        fprintf(stderr, "decoders disagree: zlib %llu, isa-l %llu, indexer %llu bytes\n",
                (unsigned long long)nz, (unsigned long long)ni, (unsigned long long)nx);
        return 1;
    }
    double mz = median(tz), mi = median(ti), mx = median(tx);
    printf("file        %s: %zu bytes compressed, %llu uncompressed (ratio %.2f)\n", argv[1],
           in.len, (unsigned long long)nz, (double)nz / (double)in.len);
    printf("zlib        %8.1f MB/s\n", (double)nz / mz / 1e6);
    printf("isa-l       %8.1f MB/s\n", (double)ni / mi / 1e6);
    printf("indexer     %8.1f MB/s  (push %zu bytes)\n", (double)nx / mx / 1e6, push);
    printf("ratio       indexer/isa-l %.3f, isa-l/zlib %.2f\n", mi / mx, mz / mi);
    printf("checkpoints %zu, one per %.2f MB out / %.2f MB in, windows %.1f KiB each\n", ncps,
           (double)nx / (double)ncps / 1e6, (double)in.len / (double)ncps / 1e6,
           (double)win_bytes / (double)(ncps > 1 ? ncps - 1 : 1) / 1024);
    buf_release(&in);
    return 0;
}
