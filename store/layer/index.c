/*
 * index.c - the layer index: the tar file table, the decode checkpoints and the chunk table of
 * one layer blob, and its canonical encoding.
 *
 * The encoding is a pure function of the blob (given the constants in layer.h and the ISA-L
 * that compresses windows), so any node holding the whole blob can rebuild an index and compare
 * digests. index_parse() treats its input as hostile: it checks every count, offset and length
 * before anything is used, and fails with AFSP_E_FORMAT.
 *
 * Owns the arrays and string table of the struct layer_index it fills or parses (released with
 * index_release). Must not do I/O but pread the blob from the fd it is handed (the chunker), nor
 * depend on anything but the blob's bytes for what it encodes: no time, no order of calls.
 *
 * Encoding (all integers little-endian), see docs/format.md:
 *   header   "AFSPIDX1" u32 version u32 format u64 blob_size u64 tar_size
 *            u32 nchunks u32 ncps u32 nfiles u32 nxattrs u32 strtab_len u32 windows_len
 *   chunks   nchunks x { u64 off, u32 len, u8 h[32] }  (h: SHA-256 chaining value at its end)
 *   cps      ncps x { u64 in_bit, u64 out_off, u32 win_off, u32 win_zlen, u32 win_len }
 *   files    nfiles x { u32 path_off, path_len, link_off, link_len, u8 type, u8 pad[3],
 *                       u32 mode, uid, gid, i64 mtime_sec, u32 mtime_nsec, devmajor, devminor,
 *                       u64 size, data_off, u32 xattr_first, xattr_count }
 *   xattrs   nxattrs x { u32 name_off, name_len, val_off, val_len }
 *   strtab   strtab_len bytes (paths and names NUL-terminated)
 *   windows  windows_len bytes (each window in zlib format, or raw when win_zlen == win_len)
 */
#include "layer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <isa-l/igzip_lib.h>
#include <unistd.h>

#define IDX_MAGIC "AFSPIDX1"
#define IDX_VERSION 2
#define HDR_SIZE (8 + 4 + 4 + 8 + 8 + 6 * 4)
#define CHUNK_REC 44
#define CP_REC 28
#define FILE_REC 80
#define XATTR_REC 16

static int strtab_add(struct buf *st, const void *p, size_t n, uint32_t *off)
{
    if (st->len + n + 1 > UINT32_MAX)
        return err_set(AFSP_E_FORMAT, "index string table over 4 GiB");
    *off = (uint32_t)st->len;
    int rc = buf_append(st, p, n);
    if (rc == 0)
        rc = buf_append(st, "", 1); /* the NUL terminator is part of the table */
    return rc;
}

static int grow(void **v, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *p = realloc(*v, (size_t)c * elem);
    if (!p)
        return -ENOMEM;
    *v = p;
    *cap = c;
    return 0;
}

int index_add_entry(void *arg, const struct tar_entry *e)
{
    struct layer_index *ix = arg;
    struct index_file f = {0};
    int rc;

    if (ix->nfiles >= INDEX_MAX_FILES)
        return err_set(AFSP_E_FORMAT, "more than %u files in a layer", INDEX_MAX_FILES);
    if ((rc = grow((void **)&ix->files, &ix->files_cap, ix->nfiles + 1, sizeof f)) < 0)
        return rc;
    if ((rc = grow((void **)&ix->xattrs, &ix->xattrs_cap, ix->nxattrs + (uint32_t)e->nxattrs,
                   sizeof(struct index_xattr))) < 0)
        return rc;
    f.path_len = (uint32_t)strlen(e->path);
    f.link_len = (uint32_t)strlen(e->link);
    if ((rc = strtab_add(&ix->strtab, e->path, f.path_len, &f.path_off)) < 0 ||
        (rc = strtab_add(&ix->strtab, e->link, f.link_len, &f.link_off)) < 0)
        return rc;
    f.type = (uint8_t)e->type;
    f.mode = e->mode;
    f.uid = e->uid;
    f.gid = e->gid;
    f.mtime_sec = e->mtime_sec;
    f.mtime_nsec = e->mtime_nsec;
    f.devmajor = e->devmajor;
    f.devminor = e->devminor;
    f.size = e->size;
    f.data_off = e->data_off;
    f.xattr_first = ix->nxattrs;
    f.xattr_count = (uint32_t)e->nxattrs;
    for (size_t i = 0; i < e->nxattrs; i++) {
        struct index_xattr *x = &ix->xattrs[ix->nxattrs++];
        x->name_len = (uint32_t)strlen(e->xattrs[i].name);
        x->val_len = (uint32_t)e->xattrs[i].len;
        if ((rc = strtab_add(&ix->strtab, e->xattrs[i].name, x->name_len, &x->name_off)) < 0 ||
            (rc = strtab_add(&ix->strtab, e->xattrs[i].value, x->val_len, &x->val_off)) < 0)
            return rc;
    }
    ix->files[ix->nfiles++] = f;
    return 0;
}

int chunker_init(struct chunker *c, struct layer_index *ix)
{
    memset(c, 0, sizeof *c);
    c->ix = ix;
    c->buf = malloc(INDEX_CHUNK_MAX);
    if (!c->buf)
        return -ENOMEM;
    sha256c_start(&c->h, NULL, 0);
    return 0;
}

/* Closes chunks from c->start to end, hashing their bytes into the chain. */
static int cut_to(struct chunker *c, int fd, uint64_t end)
{
    struct layer_index *ix = c->ix;
    int rc;
    if (end < c->start)
        return err_set(AFSP_E_FORMAT, "checkpoints out of order");
    while (c->start < end) {
        uint64_t len = end - c->start;
        if (len > INDEX_CHUNK_MAX)
            len = INDEX_CHUNK_SPLIT;
        if ((rc = grow((void **)&ix->chunks, &c->cap, ix->nchunks + 1, sizeof *ix->chunks)) < 0)
            return rc;
        ssize_t got = pread(fd, c->buf, len, (off_t)c->start);
        if (got != (ssize_t)len)
            return err_set(got < 0 ? -errno : AFSP_E_TRUNCATED, "reading chunk %u", ix->nchunks);
        struct index_chunk *ch = &ix->chunks[ix->nchunks++];
        ch->off = c->start;
        ch->len = (uint32_t)len;
        sha256c_update(&c->h, c->buf, len);
        c->start += len;
        if (c->start == ix->blob_size && c->final)
            sha256c_final(&c->h, ch->h);
        else if (sha256c_cv(&c->h, ch->h) < 0)
            return err_set(AFSP_E_FORMAT, "chunk %u does not end at a multiple of 64", ix->nchunks);
    }
    return 0;
}

/* A chunk starts at the multiple of 64 at or before each checkpoint's byte, where the chain can
 * be resumed; a gap over INDEX_CHUNK_MAX is cut into INDEX_CHUNK_SPLIT pieces (the last piece
 * takes the rest once it is at most INDEX_CHUNK_MAX). */
int chunker_cut(struct chunker *c, int fd, uint64_t end)
{
    end &= ~(uint64_t)(INDEX_CHUNK_ALIGN - 1);
    return end > c->start ? cut_to(c, fd, end) : 0;
}

int chunker_finish(struct chunker *c, int fd)
{
    struct layer_index *ix = c->ix;
    int rc;
    for (uint32_t i = 1; i < ix->ncps; i++)
        if ((rc = chunker_cut(c, fd, ix->cps[i].in_bit / 8)) < 0)
            return rc;
    c->final = true; /* the last chunk ends with the digest, not a chaining value */
    if ((rc = cut_to(c, fd, ix->blob_size)) < 0)
        return rc;
    if (ix->nchunks == 0) { /* an empty blob still has one (empty) chunk */
        if ((rc = grow((void **)&ix->chunks, &c->cap, 1, sizeof *ix->chunks)) < 0)
            return rc;
        memset(&ix->chunks[0], 0, sizeof ix->chunks[0]);
        sha256c_final(&c->h, ix->chunks[0].h);
        ix->nchunks = 1;
    }
    return 0;
}

void chunker_release(struct chunker *c)
{
    free(c->buf);
    memset(c, 0, sizeof *c);
}

int index_make_chunks(struct layer_index *ix, int fd)
{
    struct chunker c;
    free(ix->chunks);
    ix->chunks = NULL;
    ix->nchunks = 0;
    int rc = chunker_init(&c, ix);
    if (rc == 0)
        rc = chunker_finish(&c, fd);
    chunker_release(&c);
    return rc;
}

void index_chunk_hash_start(const struct layer_index *ix, uint32_t i, struct sha256c *h)
{
    sha256c_start(h, i ? ix->chunks[i - 1].h : NULL, ix->chunks[i].off);
}

int index_chunk_hash_check(const struct layer_index *ix, uint32_t i,
                           const uint8_t digest[static DIGEST_LEN], struct sha256c *h)
{
    uint8_t got[DIGEST_LEN];
    bool last = i + 1 == ix->nchunks;
    if (last)
        sha256c_final(h, got);
    else if (sha256c_cv(h, got) < 0)
        return AFSP_E_DIGEST; /* a length the index cannot have: the chunk is not what it says */
    return memcmp(got, last ? digest : ix->chunks[i].h, DIGEST_LEN) ? AFSP_E_DIGEST : 0;
}

uint32_t index_chunk_at(const struct layer_index *ix, uint64_t off)
{
    uint32_t lo = 0, hi = ix->nchunks;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ix->chunks[mid].off + ix->chunks[mid].len <= off)
            lo = mid + 1;
        else if (ix->chunks[mid].off > off)
            hi = mid;
        else
            return mid;
    }
    return ix->nchunks;
}

/* Compresses a window into zlib format with ISA-L at level 1: 6 ms for the ~110 windows of a
 * 120 MB layer where zlib took 80 ms, for 2.5% more bytes (docs/benchmarks.md). Returns the
 * compressed length, or 0 when it would not be smaller (the window is then stored raw). */
static uint32_t window_deflate(const uint8_t *in, uint32_t n, uint8_t *out, uint32_t cap,
                               uint8_t *lvlbuf)
{
    struct isal_zstream z;
    /* The level-1 hash tables at the start of lvlbuf are read before they are written: stale
     * entries from the previous window change the matches found, and so the bytes. So do
     * fields of z that isal_deflate_stateless_init leaves alone (3 in 30,000 deflates of one
     * window differed with garbage in z). Clear both, or the index would not be a function of
     * the blob. */
    memset(lvlbuf, 0, ISAL_DEF_LVL1_REQ);
    memset(&z, 0, sizeof z);
    isal_deflate_stateless_init(&z);
    z.level = 1;
    z.level_buf = lvlbuf;
    z.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
    z.gzip_flag = IGZIP_ZLIB;
    z.end_of_stream = 1;
    z.next_in = (uint8_t *)in;
    z.avail_in = n;
    z.next_out = out;
    z.avail_out = cap;
    if (isal_deflate_stateless(&z) != COMP_OK || z.total_out >= n)
        return 0;
    return z.total_out;
}

int index_serialize(const struct layer_index *ix, struct buf *out)
{
    struct buf win = {0};
    uint8_t *p, *zbuf = NULL, *lvlbuf = NULL;
    uint32_t *woff = NULL, *wz = NULL;
    int rc = -ENOMEM;
    uint32_t zcap = CODEC_WINDOW + 1024;

    woff = calloc(ix->ncps + 1, sizeof *woff);
    wz = calloc(ix->ncps + 1, sizeof *wz);
    zbuf = malloc(zcap);
    lvlbuf = malloc(ISAL_DEF_LVL1_DEFAULT);
    if (!woff || !wz || !zbuf || !lvlbuf)
        goto out;
    for (uint32_t i = 0; i < ix->ncps; i++) {
        const struct checkpoint *c = &ix->cps[i];
        uint32_t zlen;
        woff[i] = (uint32_t)win.len;
        if (c->win_len == 0)
            continue;
        if (!c->window) { /* parsed: as it was stored */
            rc = buf_append(&win, c->zwin, c->zwin_len);
            wz[i] = c->zwin_len;
            if (rc < 0)
                goto out;
            continue;
        }
        zlen = window_deflate(c->window, c->win_len, zbuf, zcap, lvlbuf);
        if (zlen) {
            rc = buf_append(&win, zbuf, zlen);
            wz[i] = (uint32_t)zlen;
        } else {
            rc = buf_append(&win, c->window, c->win_len);
            wz[i] = c->win_len;
        }
        if (rc < 0)
            goto out;
    }
    size_t total = HDR_SIZE + (size_t)ix->nchunks * CHUNK_REC + (size_t)ix->ncps * CP_REC +
                   (size_t)ix->nfiles * FILE_REC + (size_t)ix->nxattrs * XATTR_REC +
                   ix->strtab.len + win.len;
    if (total > INDEX_MAX_BYTES) {
        rc = err_set(AFSP_E_FORMAT, "index of %zu bytes is over the limit", total);
        goto out;
    }
    if ((rc = buf_reserve(out, total)) < 0)
        goto out;
    p = out->p + out->len;
    memset(p, 0, total);
    memcpy(p, IDX_MAGIC, 8);
    put_le32(p + 8, IDX_VERSION);
    put_le32(p + 12, ix->format);
    put_le64(p + 16, ix->blob_size);
    put_le64(p + 24, ix->tar_size);
    put_le32(p + 32, ix->nchunks);
    put_le32(p + 36, ix->ncps);
    put_le32(p + 40, ix->nfiles);
    put_le32(p + 44, ix->nxattrs);
    put_le32(p + 48, (uint32_t)ix->strtab.len);
    put_le32(p + 52, (uint32_t)win.len);
    p += HDR_SIZE;
    for (uint32_t i = 0; i < ix->nchunks; i++, p += CHUNK_REC) {
        put_le64(p, ix->chunks[i].off);
        put_le32(p + 8, ix->chunks[i].len);
        memcpy(p + 12, ix->chunks[i].h, DIGEST_LEN);
    }
    for (uint32_t i = 0; i < ix->ncps; i++, p += CP_REC) {
        put_le64(p, ix->cps[i].in_bit);
        put_le64(p + 8, ix->cps[i].out_off);
        put_le32(p + 16, woff[i]);
        put_le32(p + 20, wz[i]);
        put_le32(p + 24, ix->cps[i].win_len);
    }
    for (uint32_t i = 0; i < ix->nfiles; i++, p += FILE_REC) {
        const struct index_file *f = &ix->files[i];
        put_le32(p, f->path_off);
        put_le32(p + 4, f->path_len);
        put_le32(p + 8, f->link_off);
        put_le32(p + 12, f->link_len);
        p[16] = f->type;
        put_le32(p + 20, f->mode);
        put_le32(p + 24, f->uid);
        put_le32(p + 28, f->gid);
        put_le64(p + 32, (uint64_t)f->mtime_sec);
        put_le32(p + 40, f->mtime_nsec);
        put_le32(p + 44, f->devmajor);
        put_le32(p + 48, f->devminor);
        put_le64(p + 52, f->size);
        put_le64(p + 60, f->data_off);
        put_le32(p + 68, f->xattr_first);
        put_le32(p + 72, f->xattr_count);
    }
    for (uint32_t i = 0; i < ix->nxattrs; i++, p += XATTR_REC) {
        put_le32(p, ix->xattrs[i].name_off);
        put_le32(p + 4, ix->xattrs[i].name_len);
        put_le32(p + 8, ix->xattrs[i].val_off);
        put_le32(p + 12, ix->xattrs[i].val_len);
    }
    if (ix->strtab.len)
        memcpy(p, ix->strtab.p, ix->strtab.len);
    p += ix->strtab.len;
    if (win.len)
        memcpy(p, win.p, win.len);
    out->len += total;
    rc = 0;
out:
    buf_release(&win);
    free(zbuf);
    free(lvlbuf);
    free(woff);
    free(wz);
    return rc;
}

/* Is [off, off+len) inside [0, limit)? Without overflow. */
static int in_range(uint64_t off, uint64_t len, uint64_t limit)
{
    return off <= limit && len <= limit - off;
}

static int bad(const char *what)
{
    return err_set(AFSP_E_FORMAT, "layer index: %s", what);
}

/* The most uncompressed bytes a blob of blob_size bytes can decode to (INDEX_MAX_RATIO_*). */
static uint64_t max_out(uint32_t fmt, uint64_t blob_size)
{
    uint64_t r = fmt == LAYER_GZIP   ? INDEX_MAX_RATIO_GZIP
                 : fmt == LAYER_ZSTD ? INDEX_MAX_RATIO_ZSTD
                                     : 1;
    return blob_size > UINT64_MAX / r ? UINT64_MAX : blob_size * r;
}

/* The header and the chunk table of an encoding, into ix (its chunks allocated); *stlen and
 * *wlen: the string table's and the windows' sizes. The whole encoding's size is checked against
 * the counts, so the sections after the chunks are where the header says. */
static int parse_head(const uint8_t *p, size_t n, struct layer_index *ix, uint64_t *stlen,
                      uint64_t *wlen)
{
    if (n < HDR_SIZE || memcmp(p, IDX_MAGIC, 8))
        return bad("bad header");
    if (get_le32(p + 8) != IDX_VERSION)
        return err_set(AFSP_E_UNSUPPORTED, "layer index version %u", get_le32(p + 8));
    uint32_t fmt = get_le32(p + 12);
    if (fmt > LAYER_ZSTD)
        return bad("unknown format");
    ix->format = fmt;
    ix->blob_size = get_le64(p + 16);
    ix->tar_size = get_le64(p + 24);
    ix->nchunks = get_le32(p + 32);
    ix->ncps = get_le32(p + 36);
    ix->nfiles = get_le32(p + 40);
    ix->nxattrs = get_le32(p + 44);
    *stlen = get_le32(p + 48);
    *wlen = get_le32(p + 52);
    uint64_t need = HDR_SIZE + (uint64_t)ix->nchunks * CHUNK_REC + (uint64_t)ix->ncps * CP_REC +
                    (uint64_t)ix->nfiles * FILE_REC + (uint64_t)ix->nxattrs * XATTR_REC + *stlen +
                    *wlen;
    if (need != n || n > INDEX_MAX_BYTES)
        return bad("size does not match its counts");
    if (ix->nchunks == 0 || ix->ncps == 0 || ix->nfiles > INDEX_MAX_FILES)
        return bad("bad counts");
    if (fmt == LAYER_TAR ? ix->tar_size != ix->blob_size
                         : ix->tar_size > max_out(fmt, ix->blob_size))
        return bad("more uncompressed bytes than the blob can hold");
    if (!(ix->chunks = calloc(ix->nchunks, sizeof *ix->chunks)))
        return -ENOMEM;
    /* Chunks tile the blob exactly, in order. */
    const uint8_t *q = p + HDR_SIZE;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < ix->nchunks; i++, q += CHUNK_REC) {
        struct index_chunk *c = &ix->chunks[i];
        c->off = get_le64(q);
        c->len = get_le32(q + 8);
        memcpy(c->h, q + 12, DIGEST_LEN);
        if (c->off != pos || c->off % INDEX_CHUNK_ALIGN || c->len > INDEX_CHUNK_MAX ||
            (c->len == 0 && ix->blob_size != 0) || !in_range(c->off, c->len, ix->blob_size))
            return bad("chunks do not tile the blob");
        pos += c->len;
    }
    if (pos != ix->blob_size)
        return bad("chunks do not cover the blob");
    return 0;
}

int index_parse_chunks(const uint8_t *p, size_t n, struct layer_index *out)
{
    struct layer_index ix = {0};
    uint64_t stlen, wlen;
    int rc = parse_head(p, n, &ix, &stlen, &wlen);
    if (rc < 0) {
        index_release(&ix);
        return rc;
    }
    ix.ncps = ix.nfiles = ix.nxattrs = 0; /* not parsed: nothing to release or read */
    *out = ix;
    return 0;
}

/* index_parse; with keep false index_check: the same checks, and then only the header and the
 * chunk table are kept (no copy of the rest, whose records are checked one at a time); with
 * windows false index_parse_lean (no copy of the windows table). */
static int parse(const uint8_t *p, size_t n, struct layer_index *out, bool keep, bool windows_kept)
{
    struct layer_index ix = {0};
    uint64_t stlen, wlen;
    int rc;

    if ((rc = parse_head(p, n, &ix, &stlen, &wlen)) < 0)
        goto fail;
    const uint8_t *q = p + HDR_SIZE + (size_t)ix.nchunks * CHUNK_REC;
    const uint8_t *strtab = q + (size_t)ix.ncps * CP_REC + (size_t)ix.nfiles * FILE_REC +
                            (size_t)ix.nxattrs * XATTR_REC;
    const uint8_t *windows = strtab + stlen;
    struct checkpoint one_cp[2] = {0};
    struct index_file one_file = {0};
    struct index_xattr one_xattr = {0};

    if (keep) {
        ix.cps = calloc(ix.ncps, sizeof *ix.cps);
        ix.files = calloc(ix.nfiles ? ix.nfiles : 1, sizeof *ix.files);
        ix.xattrs = calloc(ix.nxattrs ? ix.nxattrs : 1, sizeof *ix.xattrs);
        ix.files_cap = ix.nfiles;
        ix.xattrs_cap = ix.nxattrs;
        if (!ix.cps || !ix.files || !ix.xattrs) {
            rc = -ENOMEM;
            goto fail;
        }
        if (windows_kept && (rc = buf_append(&ix.windows, windows, wlen)) < 0)
            goto fail;
    }
    /* Windows are laid out one after another in checkpoint order, as index_serialize writes
     * them: none is shared (one stored window named by many checkpoints would cost 32 KiB of
     * memory each at use), and each has bytes if it has a length. */
    uint64_t wpos = 0;
    for (uint32_t i = 0; i < ix.ncps; i++, q += CP_REC) {
        struct checkpoint *c = keep ? &ix.cps[i] : &one_cp[i % 2],
                          *prev = i == 0 ? NULL
                                  : keep ? &ix.cps[i - 1]
                                         : &one_cp[(i - 1) % 2];
        uint32_t woff = get_le32(q + 16), wz = get_le32(q + 20);
        c->in_bit = get_le64(q);
        c->out_off = get_le64(q + 8);
        c->win_len = get_le32(q + 24);
        int ordered = i == 0 ? c->in_bit == 0 && c->out_off == 0
                             : c->in_bit > prev->in_bit && c->out_off >= prev->out_off;
        if (!ordered || c->in_bit / 8 > ix.blob_size || c->out_off > ix.tar_size ||
            c->win_len > CODEC_WINDOW || wz > c->win_len || (c->win_len && wz == 0) ||
            woff != wpos || !in_range(woff, wz, wlen) ||
            (ix.format != LAYER_GZIP && (c->win_len || c->in_bit % 8))) {
            rc = bad("bad checkpoint");
            goto fail;
        }
        wpos += wz;
        c->zwin = c->win_len && keep && windows_kept ? ix.windows.p + woff : NULL;
        c->zwin_len = wz;
        c->zwin_off = woff;
    }
    if (wpos != wlen) {
        rc = bad("windows do not fill their table");
        goto fail;
    }
    for (uint32_t i = 0; i < ix.nfiles; i++, q += FILE_REC) {
        struct index_file *f = keep ? &ix.files[i] : &one_file;
        f->path_off = get_le32(q);
        f->path_len = get_le32(q + 4);
        f->link_off = get_le32(q + 8);
        f->link_len = get_le32(q + 12);
        f->type = q[16];
        f->mode = get_le32(q + 20);
        f->uid = get_le32(q + 24);
        f->gid = get_le32(q + 28);
        f->mtime_sec = (int64_t)get_le64(q + 32);
        f->mtime_nsec = get_le32(q + 40);
        f->devmajor = get_le32(q + 44);
        f->devminor = get_le32(q + 48);
        f->size = get_le64(q + 52);
        f->data_off = get_le64(q + 60);
        f->xattr_first = get_le32(q + 68);
        f->xattr_count = get_le32(q + 72);
        if (!in_range(f->path_off, (uint64_t)f->path_len + 1, stlen) ||
            strtab[f->path_off + f->path_len] != 0 ||
            memchr(strtab + f->path_off, 0, f->path_len) ||
            !in_range(f->link_off, (uint64_t)f->link_len + 1, stlen) ||
            strtab[f->link_off + f->link_len] != 0 ||
            memchr(strtab + f->link_off, 0, f->link_len) || !strchr("0123456", f->type) ||
            f->type == 0 || f->mode > 07777 || f->mtime_nsec >= 1000000000u ||
            !in_range(f->data_off, f->size, ix.tar_size) ||
            !in_range(f->xattr_first, f->xattr_count, ix.nxattrs) ||
            (f->type != TAR_REG && f->size != 0)) {
            rc = bad("bad file record");
            goto fail;
        }
    }
    for (uint32_t i = 0; i < ix.nxattrs; i++, q += XATTR_REC) {
        struct index_xattr *x = keep ? &ix.xattrs[i] : &one_xattr;
        x->name_off = get_le32(q);
        x->name_len = get_le32(q + 4);
        x->val_off = get_le32(q + 8);
        x->val_len = get_le32(q + 12);
        if (!in_range(x->name_off, (uint64_t)x->name_len + 1, stlen) || x->name_len == 0 ||
            strtab[x->name_off + x->name_len] != 0 ||
            memchr(strtab + x->name_off, 0, x->name_len) ||
            !in_range(x->val_off, x->val_len, stlen)) {
            rc = bad("bad xattr record");
            goto fail;
        }
    }
    if (keep && (rc = buf_append(&ix.strtab, strtab, stlen)) < 0)
        goto fail;
    *out = ix;
    return 0;
fail:
    index_release(&ix);
    return rc;
}

int index_parse(const uint8_t *p, size_t n, struct layer_index *out)
{
    return parse(p, n, out, true, true);
}

int index_check(const uint8_t *p, size_t n, struct layer_index *out)
{
    return parse(p, n, out, false, false);
}

int index_parse_lean(const uint8_t *p, size_t n, struct layer_index *out)
{
    return parse(p, n, out, true, false);
}

int index_window_at(const uint8_t *p, size_t n, size_t k, const struct checkpoint *cp,
                    const uint8_t **w, uint32_t *len)
{
    if (n < HDR_SIZE || memcmp(p, IDX_MAGIC, 8) || get_le32(p + 8) != IDX_VERSION)
        return bad("bad header");
    uint64_t nchunks = get_le32(p + 32), ncps = get_le32(p + 36), wlen = get_le32(p + 52);
    uint64_t rec = HDR_SIZE + nchunks * CHUNK_REC + (uint64_t)k * CP_REC;
    if (k >= ncps || rec + CP_REC > n || wlen > n)
        return bad("no such checkpoint");
    const uint8_t *q = p + rec;
    uint32_t woff = get_le32(q + 16), wz = get_le32(q + 20);
    /* the windows table is the encoding's last part */
    if (get_le64(q) != cp->in_bit || get_le64(q + 8) != cp->out_off ||
        get_le32(q + 24) != cp->win_len || !in_range(woff, wz, wlen) || wz > cp->win_len)
        return bad("the checkpoint is not the one asked for");
    *w = p + (n - wlen) + woff;
    *len = wz;
    return 0;
}

void index_release(struct layer_index *ix)
{
    free(ix->chunks);
    if (ix->cps)
        checkpoints_free(ix->cps, ix->ncps);
    free(ix->files);
    free(ix->xattrs);
    buf_release(&ix->strtab);
    buf_release(&ix->windows);
    memset(ix, 0, sizeof *ix);
}

/* ---- meaning ------------------------------------------------------------------------------- */

static bool str_same(const struct layer_index *a, uint32_t aoff, uint32_t alen,
                     const struct layer_index *b, uint32_t boff, uint32_t blen)
{
    return alen == blen && !memcmp(a->strtab.p + aoff, b->strtab.p + boff, alen);
}

static bool file_same(const struct layer_index *a, const struct index_file *f,
                      const struct layer_index *b, const struct index_file *g)
{
    if (f->type != g->type || f->mode != g->mode || f->uid != g->uid || f->gid != g->gid ||
        f->mtime_sec != g->mtime_sec || f->mtime_nsec != g->mtime_nsec ||
        f->devmajor != g->devmajor || f->devminor != g->devminor || f->size != g->size ||
        f->data_off != g->data_off || f->xattr_count != g->xattr_count ||
        !str_same(a, f->path_off, f->path_len, b, g->path_off, g->path_len) ||
        !str_same(a, f->link_off, f->link_len, b, g->link_off, g->link_len))
        return false;
    for (uint32_t k = 0; k < f->xattr_count; k++) {
        const struct index_xattr *x = &a->xattrs[f->xattr_first + k],
                                 *y = &b->xattrs[g->xattr_first + k];
        if (!str_same(a, x->name_off, x->name_len, b, y->name_off, y->name_len) ||
            !str_same(a, x->val_off, x->val_len, b, y->val_off, y->val_len))
            return false;
    }
    return true;
}

int index_same(const struct layer_index *a, const struct layer_index *b)
{
    if (a->format != b->format || a->blob_size != b->blob_size || a->tar_size != b->tar_size ||
        a->nchunks != b->nchunks || a->ncps != b->ncps || a->nfiles != b->nfiles)
        return 0;
    for (uint32_t i = 0; i < a->nchunks; i++)
        if (a->chunks[i].off != b->chunks[i].off || a->chunks[i].len != b->chunks[i].len ||
            memcmp(a->chunks[i].h, b->chunks[i].h, DIGEST_LEN))
            return 0;
    for (uint32_t i = 0; i < a->nfiles; i++)
        if (!file_same(a, &a->files[i], b, &b->files[i]))
            return 0;
    struct inflate_state *st = malloc(sizeof *st);
    uint8_t *wa = malloc(CODEC_WINDOW), *wb = malloc(CODEC_WINDOW);
    int rc = st && wa && wb ? 1 : -ENOMEM;
    for (uint32_t i = 0; rc == 1 && i < a->ncps; i++) {
        const struct checkpoint *c = &a->cps[i], *d = &b->cps[i];
        if (c->in_bit != d->in_bit || c->out_off != d->out_off || c->win_len != d->win_len) {
            rc = 0;
            break;
        }
        if (!c->win_len)
            continue;
        const uint8_t *x = checkpoint_window(c, st, wa), *y = checkpoint_window(d, st, wb);
        rc = x && y && !memcmp(x, y, c->win_len);
    }
    free(st);
    free(wa);
    free(wb);
    return rc;
}
