/*
 * ingest_speed.c - the real ingest pass against raw inflate, on the same layer blob.
 *
 * Each run, in this order (interleaved, so drifts in clock speed hit all of them):
 *   zlib    inflate() of the blob held in memory, 1 MiB output buffer, output discarded
 *   isal    isal_inflate() of the blob held in memory (whole input, 1 MiB output buffer)
 *   sha256  SHA-256 of the blob in memory (util/, OpenSSL): the hashing share of ingest
 *   write   write() of the blob to a new file in 1 MiB pieces + fdatasync: the blob-file share
 *   ingest  store_ingest_file() into a fresh store (store_open before, store_close after, both
 *           untimed): hash + blob file + fdatasync + decode with checkpoints + tar index + chunk
 *           hashes + LMDB commit; the blob is read from the page cache
 * The median of RUNS runs is printed; speeds are MB/s (10^6 bytes) of uncompressed output for
 * zlib, isal and ingest, of compressed bytes for sha256 and write. Lines "RESULT name MB/s" are
 * for bench/run.sh. `sync` runs (untimed) before each write and ingest. For ingest the CPU time
 * of all threads (getrusage) and the time the main (receiving) thread spent runnable but waiting
 * for a CPU (/proc/self/schedstat: other load on the machine) are printed too.
 *
 * usage: ingest_speed [--dir DIR] [--media-type MT] [--runs N] [--only-ingest] [--verbose] FILE
 *   DIR          scratch directory on the disk under test (default /var/tmp); a subdirectory is
 *                made and removed
 *   MT           the layer's media type (default application/vnd.oci.image.layer.v1.tar+gzip;
 *                ...tar+zstd and ...tar work too: zlib and isal are then skipped)
 *   --only-ingest  only the ingest runs (for `perf record`)
 */
#include "../store/ingest.h"
#include "../store/store.h"
#include "inflate_ref.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <isa-l/igzip_lib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_RUNS 64

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    double t[MAX_RUNS];
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static double secs(uint64_t t0)
{
    return (double)(time_mono_ns() - t0) / 1e9;
}

/* Seconds this process's main thread (ingest's receiving thread) spent runnable but waiting for
 * a CPU so far: what other load on the machine took from it (0 without schedstat). */
static double runq_secs(void)
{
    unsigned long long run = 0, wait = 0;
    FILE *f = fopen("/proc/self/schedstat", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &run, &wait) != 2)
            wait = 0;
        fclose(f);
    }
    return (double)wait / 1e9;
}

/* CPU seconds (user + system) used by this process so far */
static double cpu_secs(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int run_write(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    for (size_t off = 0; off < n;) {
        ssize_t k = write(fd, p + off, MIN(n - off, (size_t)OUT_BUF));
        if (k < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -errno;
        }
        off += (size_t)k;
    }
    int rc = fdatasync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int rm_fn(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_fn, 16, FTW_DEPTH | FTW_PHYS);
}

/* One ingest into a fresh store under dir; returns seconds (< 0 on error). *usize receives the
 * layer's uncompressed size as the store records it. */
static double run_ingest(const char *dir, const char *file, const char *mt,
                         const uint8_t digest[DIGEST_LEN], uint64_t size, uint64_t *usize,
                         double *open_s, double *cpu_s, double *wait_s)
{
    struct store *s;
    struct store_opts o = {.dir = dir, .cache_max_bytes = 4 * size + (1ull << 30)};
    uint64_t t0 = time_mono_ns();
    int rc = store_open(&s, &o);
    *open_s = secs(t0);
    if (rc < 0) {
        fprintf(stderr, "ingest_speed: store_open %s: %s\n", dir, err_msg(rc));
        return -1;
    }
    sync();
    double c0 = cpu_secs(), w0 = runq_secs();
    t0 = time_mono_ns();
    rc = store_ingest_file(s, file, mt, digest);
    double t = secs(t0);
    *cpu_s = cpu_secs() - c0;
    *wait_s = runq_secs() - w0;
    if (rc < 0) {
        fprintf(stderr, "ingest_speed: store_ingest_file: %s\n", err_msg(rc));
        store_close(s);
        return -1;
    }
    struct layer_info *li;
    size_t n;
    rc = store_layers_list(s, &li, &n);
    if (rc < 0 || n != 1 || !li[0].complete || memcmp(li[0].digest, digest, DIGEST_LEN)) {
        fprintf(stderr, "ingest_speed: the store does not list the layer as complete\n");
        store_close(s);
        return -1;
    }
    *usize = li[0].usize;
    free(li);
    store_close(s);
    return t;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--dir DIR] [--media-type MT] [--runs N] [--only-ingest] [--verbose] FILE\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dir = "/var/tmp", *mt = "application/vnd.oci.image.layer.v1.tar+gzip";
    int runs = 5, only_ingest = 0;
    static const struct option lo[] = {{"dir", 1, 0, 'd'},     {"media-type", 1, 0, 'm'},
                                       {"runs", 1, 0, 'r'},    {"only-ingest", 0, 0, 'i'},
                                       {"verbose", 0, 0, 'v'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "d:m:r:iv", lo, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'm':
            mt = optarg;
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 'i':
            only_ingest = 1;
            break;
        case 'v': /* the ingest's own stage timings, one line per run */
            log_level = LOG_DEBUG;
            break;
        default:
            usage(argv[0]);
        }
    }
    if (optind != argc - 1 || runs < 1 || runs > MAX_RUNS)
        usage(argv[0]);
    const char *file = argv[optind];
    size_t mtl = strlen(mt);
    int gzip = mtl >= 4 && !strcmp(mt + mtl - 4, "gzip");

    struct buf in = {0};
    if (bench_load(file, &in) < 0)
        return 1;
    uint8_t digest[DIGEST_LEN];
    sha256_buf(in.p, in.len, digest);

    char work[4096], wfile[4200], sdir[4200];
    snprintf(work, sizeof work, "%s/ingest_speed.XXXXXX", dir);
    if (!mkdtemp(work)) {
        fprintf(stderr, "ingest_speed: mkdtemp %s: %s\n", work, strerror(errno));
        return 1;
    }
    snprintf(wfile, sizeof wfile, "%s/blob", work);

    double tz[MAX_RUNS], ti[MAX_RUNS], th[MAX_RUNS], tw[MAX_RUNS], tg[MAX_RUNS], to[MAX_RUNS];
    double tc[MAX_RUNS], tq[MAX_RUNS];
    uint64_t nz = 0, ni = 0, ng = 0;
    int fails = 0;
    for (int r = 0; r < runs && !fails; r++) {
        uint64_t t0;
        if (!only_ingest) {
            if (gzip) {
                t0 = time_mono_ns();
                nz = run_zlib(in.p, in.len);
                tz[r] = secs(t0);
                t0 = time_mono_ns();
                ni = run_isal(in.p, in.len);
                ti[r] = secs(t0);
            }
            uint8_t d2[DIGEST_LEN];
            t0 = time_mono_ns();
            sha256_buf(in.p, in.len, d2);
            th[r] = secs(t0);
            sync();
            t0 = time_mono_ns();
            int rc = run_write(wfile, in.p, in.len);
            tw[r] = secs(t0);
            unlink(wfile);
            if (rc < 0) {
                fprintf(stderr, "ingest_speed: write %s: %s\n", wfile, strerror(-rc));
                fails++;
            }
        }
        snprintf(sdir, sizeof sdir, "%s/store.%d", work, r);
        tg[r] = run_ingest(sdir, file, mt, digest, in.len, &ng, &to[r], &tc[r], &tq[r]);
        rm_rf(sdir);
        if (tg[r] < 0)
            fails++;
        else
            fprintf(stderr,
                    "  run %d: ingest %.3f s (cpu %.3f s, main thread waiting for a cpu %.3f s)\n",
                    r + 1, tg[r], tc[r], tq[r]);
    }
    rm_rf(work);
    if (fails)
        return 1;
    if (gzip && !only_ingest && (!nz || nz != ni || nz != ng)) {
        fprintf(stderr, "decoders disagree: zlib %llu, isa-l %llu, ingest %llu bytes\n",
                (unsigned long long)nz, (unsigned long long)ni, (unsigned long long)ng);
        return 1;
    }
    double mg = median(tg, runs);
    printf("file     %s: %zu bytes compressed, %llu uncompressed (ratio %.2f), %s\n", file, in.len,
           (unsigned long long)ng, (double)ng / (double)in.len, mt);
    if (!only_ingest) {
        double mz = gzip ? median(tz, runs) : 0, mi = gzip ? median(ti, runs) : 0;
        double mh = median(th, runs), mw = median(tw, runs);
        if (gzip) {
            printf("zlib     %8.1f MB/s out  (%.3f s)\n", (double)ng / mz / 1e6, mz);
            printf("isa-l    %8.1f MB/s out  (%.3f s)\n", (double)ng / mi / 1e6, mi);
        }
        printf("sha256   %8.1f MB/s in   (%.3f s)\n", (double)in.len / mh / 1e6, mh);
        printf("write    %8.1f MB/s in   (%.3f s, write + fdatasync)\n", (double)in.len / mw / 1e6,
               mw);
        printf("ingest   %8.1f MB/s out  (%.3f s, cpu %.3f s; %.1f MB/s of blob; store_open "
               "%.3f s)\n",
               (double)ng / mg / 1e6, mg, median(tc, runs), (double)in.len / mg / 1e6,
               median(to, runs));
        if (gzip) {
            double fastest = MIN(mz, mi);
            printf("ratio    ingest / fastest inflate = %.3f (%.0f%%)\n", fastest / mg,
                   100 * fastest / mg);
            printf("RESULT zlib %.1f\nRESULT isal %.1f\n", (double)ng / mz / 1e6,
                   (double)ng / mi / 1e6);
        }
        printf("RESULT sha256 %.1f\nRESULT write %.1f\n", (double)in.len / mh / 1e6,
               (double)in.len / mw / 1e6);
    } else {
        printf("ingest   %8.1f MB/s out  (%.3f s, cpu %.3f s)\n", (double)ng / mg / 1e6, mg,
               median(tc, runs));
    }
    printf("RESULT ingest_cpu_s %.3f\nRESULT ingest_runq_s %.3f\nRESULT ingest_s %.3f\n",
           median(tc, runs), median(tq, runs), mg);
    printf("RESULT ingest %.1f\n", (double)ng / mg / 1e6);
    buf_release(&in);
    return 0;
}
