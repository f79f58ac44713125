/*
 * index_cost.c - what a layer's index costs its reader (issue 15, item 2): the parse (best of
 * 10, and the process's peak memory after it), the inflate of one stored window (ISA-L, as the
 * codec reader does it, and zlib's uncompress for comparison), and a decode of 512 KiB from
 * every checkpoint with a fresh reader (window included): what the lazy windows add to a span.
 *
 * usage: index_cost FILE.tar.gz STORE_DIR
 * The layer is ingested into STORE_DIR (a fresh directory, or one holding it already).
 */
#include "../store/ingest.h"
#include "../store/layer/layer.h"
#include "../store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

static double now(void)
{
    return (double)time_mono_ns() / 1e9;
}

static ssize_t src(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    ssize_t n = pread(*(int *)arg, buf, len, (off_t)off);
    return n < 0 ? -errno : n;
}

static int digest_of(const char *path, uint8_t d[static DIGEST_LEN])
{
    uint8_t buf[1 << 16];
    struct sha256c h;
    int fd = open(path, O_RDONLY);
    ssize_t n;
    if (fd < 0)
        return -errno;
    sha256c_start(&h, NULL, 0);
    while ((n = read(fd, buf, sizeof buf)) > 0)
        sha256c_update(&h, buf, (size_t)n);
    sha256c_final(&h, d);
    close(fd);
    return n < 0 ? -errno : 0;
}

int main(int argc, char **argv)
{
    struct store *s;
    struct store_opts o = {0};
    uint8_t d[DIGEST_LEN];
    struct buf b = {0};
    struct layer_index ix;
    static uint8_t w[CODEC_WINDOW], out[512 << 10];
    static struct inflate_state st;
    int rc;

    if (argc != 3) {
        fprintf(stderr, "usage: index_cost FILE.tar.gz STORE_DIR\n");
        return 2;
    }
    o.dir = argv[2];
    if ((rc = digest_of(argv[1], d)) < 0 || (rc = store_open(&s, &o)) < 0) {
        fprintf(stderr, "index_cost: %s\n", err_msg(rc));
        return 1;
    }
    if (store_index_bytes(s, d, &b) < 0 &&
        ((rc = store_ingest_file(s, argv[1], "application/vnd.oci.image.layer.v1.tar+gzip", d)) <
             0 ||
         (rc = store_index_bytes(s, d, &b)) < 0)) {
        fprintf(stderr, "index_cost: %s\n", err_msg(rc));
        return 1;
    }

    double best = 1e9;
    for (int i = 0; i < 10; i++) {
        double t = now();
        if ((rc = index_parse(b.p, b.len, &ix)) < 0) {
            fprintf(stderr, "index_cost: %s\n", err_msg(rc));
            return 1;
        }
        best = MIN(best, now() - t);
        if (i < 9)
            index_release(&ix);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("index: %zu bytes, %u checkpoints; parse %.2f ms (best of 10); peak RSS %ld MiB\n",
           b.len, ix.ncps, best * 1e3, ru.ru_maxrss / 1024);

    double tz = 0, ti = 0;
    unsigned n = 0;
    for (uint32_t i = 0; i < ix.ncps; i++) {
        const struct checkpoint *c = &ix.cps[i];
        if (!c->win_len || c->zwin_len == c->win_len)
            continue;
        double t = now();
        uLongf k = c->win_len;
        if (uncompress(w, &k, c->zwin, c->zwin_len) != Z_OK)
            return 1;
        tz += now() - t;
        t = now();
        isal_inflate_init(&st);
        st.crc_flag = IGZIP_ZLIB;
        st.next_in = (uint8_t *)c->zwin;
        st.avail_in = c->zwin_len;
        st.next_out = w;
        st.avail_out = c->win_len;
        if (isal_inflate_stateless(&st) != ISAL_DECOMP_OK)
            return 1;
        ti += now() - t;
        n++;
    }
    if (n)
        printf("window inflate: ISA-L %.1f us, zlib %.1f us (mean of %u)\n", ti / n * 1e6,
               tz / n * 1e6, n);

    int fd = open(argv[1], O_RDONLY);
    double t = now();
    for (uint32_t i = 0; i < ix.ncps; i++) {
        struct codec_reader *r;
        if (codec_reader_new(&r, ix.format, ix.cps, ix.ncps, ix.blob_size, ix.tar_size, src, &fd) <
                0 ||
            codec_read(r, ix.cps[i].out_off, out, sizeof out) < 0) {
            fprintf(stderr, "index_cost: decoding from checkpoint %u failed\n", i);
            return 1;
        }
        codec_reader_free(r);
    }
    printf("decode of 512 KiB from each checkpoint, fresh reader: %.1f us each\n",
           (now() - t) / ix.ncps * 1e6);
    close(fd);
    index_release(&ix);
    buf_release(&b);
    store_close(s);
    return 0;
}
