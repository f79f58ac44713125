/*
 * storecheck.c - checks that a data directory holds no unverified byte (docs/faults.md): every
 * layer listed complete has a blob file of its size whose SHA-256 is its digest, every chunk
 * marked present in a partial layer checks out against the layer's index, every record's index
 * is the one its index digest names, the stored bytes of each record and the store's "used"
 * counter agree, and every image's manifest is a small blob of the store with its digest.
 *
 * usage: storecheck DATA    (the store is opened read-only: no sweep, no repair)
 * Prints one JSON object: {"layers": [{"digest", "complete", "chunks", "present"}...],
 * "images": [{"ref", "manifest"}...], "problems": ["..."...]}; exits 0 if there is no problem,
 * 1 if there is one, 2 if the store cannot be opened.
 *
 * A test tool: it reaches into the store's internals (store_int.h) to read records as stored.
 */
#include "../../store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static json_t *problems;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(problems, json_string(msg));
}

/* Feeds n bytes of fd at off to h; false if the file is shorter. */
static bool hash_range(int fd, uint64_t off, uint64_t n, struct sha256c *h)
{
    static uint8_t buf[1 << 16];
    while (n) {
        ssize_t k = pread(fd, buf, n < sizeof buf ? n : sizeof buf, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        sha256c_update(h, buf, (size_t)k);
        off += (uint64_t)k;
        n -= (uint64_t)k;
    }
    return true;
}

/* Checks one layer; returns its stored bytes as the record should count them. */
static uint64_t check_layer(struct store *s, const struct layer_info *li, json_t *out)
{
    char dg[DIGEST_STR_LEN + 1], path[PATH_MAX];
    struct layer_rec r;
    struct layer_index ix = {0};
    struct buf ib = {0}, bm = {0};
    uint8_t idg[DIGEST_LEN];
    uint64_t want = 0;
    uint32_t present = 0;
    int fd = -1;

    digest_fmt(li->digest, dg);
    json_array_append_new(out, json_pack("{s:s, s:b, s:i, s:i}", "digest", dg, "complete",
                                         li->complete, "chunks", (int)li->nchunks, "present",
                                         (int)li->chunks_present));
    if (store_layer_get(s, li->digest, &r) < 0) {
        problem("%s: record unreadable", dg);
        goto out;
    }
    if (store_index_bytes(s, li->digest, &ib) < 0 || index_parse(ib.p, ib.len, &ix) < 0) {
        problem("%s: index missing or unparsable", dg);
        goto out;
    }
    sha256_buf(ib.p, ib.len, idg);
    if (memcmp(idg, r.index_digest, DIGEST_LEN))
        problem("%s: the index is not the one the record names", dg);
    if (ix.nchunks != r.nchunks || ix.blob_size != r.size)
        problem("%s: record and index disagree (chunks %u/%u, size %llu/%llu)", dg, r.nchunks,
                ix.nchunks, (unsigned long long)r.size, (unsigned long long)ix.blob_size);
    if (store_present_get(s, li->digest, &bm) < 0 || bm.len != (ix.nchunks + 7) / 8) {
        problem("%s: chunk map missing or of the wrong size", dg);
        goto out;
    }
    want = ib.len;
    store_blob_path(s, li->digest, path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (li->complete || li->chunks_present)
            problem("%s: blob file missing (%s)", dg, strerror(errno));
        else
            problem("%s: partial layer without its blob file", dg);
    }
    if (li->complete) {
        want += r.size;
        if (fd >= 0 && (uint64_t)st.st_size != r.size)
            problem("%s: complete, but its blob file has %llu bytes, not %llu", dg,
                    (unsigned long long)st.st_size, (unsigned long long)r.size);
        struct sha256c h;
        uint8_t got[DIGEST_LEN];
        sha256c_start(&h, NULL, 0);
        if (fd >= 0 && (!hash_range(fd, 0, r.size, &h) || (sha256c_final(&h, got), 0) ||
                        memcmp(got, li->digest, DIGEST_LEN)))
            problem("%s: complete, but its blob file does not hash to its digest", dg);
        for (uint32_t i = 0; i < ix.nchunks; i++)
            if (!(bm.p[i / 8] >> (i % 8) & 1))
                problem("%s: complete, but chunk %u is not marked present", dg, i);
    } else {
        for (uint32_t i = 0; i < ix.nchunks; i++) {
            if (!(bm.p[i / 8] >> (i % 8) & 1))
                continue;
            present++;
            want += ix.chunks[i].len;
            struct sha256c h;
            index_chunk_hash_start(&ix, i, &h);
            if (fd < 0 || !hash_range(fd, ix.chunks[i].off, ix.chunks[i].len, &h) ||
                index_chunk_hash_check(&ix, i, li->digest, &h) < 0)
                problem("%s: chunk %u is marked present but its bytes do not check out", dg, i);
        }
        if (present == ix.nchunks)
            problem("%s: every chunk present, but not flagged complete", dg);
    }
    if (r.stored != want)
        problem("%s: the record counts %llu stored bytes, its index and chunks make %llu", dg,
                (unsigned long long)r.stored, (unsigned long long)want);
out:
    if (fd >= 0)
        close(fd);
    index_release(&ix);
    buf_release(&ib);
    buf_release(&bm);
    return r.stored;
}

int main(int argc, char **argv)
{
    struct store *s;
    struct store_opts o = {0};
    struct layer_info *ls = NULL;
    struct image_info *is = NULL;
    struct store_usage u;
    size_t nl = 0, ni = 0;
    uint64_t stored = 0;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: storecheck DATA\n");
        return 2;
    }
    o.dir = argv[1];
    o.readonly = true;
    o.cache_max_bytes = 1ull << 40;
    if ((rc = store_open(&s, &o)) < 0) {
        fprintf(stderr, "storecheck: cannot open the store in %s: %s\n", o.dir, err_msg(rc));
        return 2;
    }
    problems = json_array();
    json_t *jl = json_array(), *ji = json_array();
    if ((rc = store_layers_list(s, &ls, &nl)) < 0)
        problem("cannot list layers: %s", err_msg(rc));
    for (size_t i = 0; i < nl; i++)
        stored += check_layer(s, &ls[i], jl);
    if ((rc = store_usage_get(s, &u)) < 0)
        problem("cannot read the usage: %s", err_msg(rc));
    else if (u.used != stored)
        problem("the store counts %llu bytes used, its layer records %llu",
                (unsigned long long)u.used, (unsigned long long)stored);
    if ((rc = store_images_list(s, &is, &ni)) < 0)
        problem("cannot list images: %s", err_msg(rc));
    for (size_t i = 0; i < ni; i++) {
        char dg[DIGEST_STR_LEN + 1];
        struct buf m = {0};
        uint8_t got[DIGEST_LEN];
        digest_fmt(is[i].manifest_digest, dg);
        json_array_append_new(ji, json_pack("{s:s, s:s}", "ref", is[i].ref, "manifest", dg));
        if (store_small_get(s, is[i].manifest_digest, &m) < 0)
            problem("image %s: its manifest %s is not in the store", is[i].ref, dg);
        else if (sha256_buf(m.p, m.len, got), memcmp(got, is[i].manifest_digest, DIGEST_LEN))
            problem("image %s: its manifest does not hash to %s", is[i].ref, dg);
        buf_release(&m);
    }
    json_t *all = json_pack("{s:o, s:o, s:o}", "layers", jl, "images", ji, "problems", problems);
    char *text = json_dumps(all, JSON_COMPACT);
    puts(text);
    free(text);
    rc = json_array_size(problems) ? 1 : 0;
    json_decref(all);
    free(ls);
    store_images_free(is, ni);
    store_close(s);
    return rc;
}
