/*
 * fuzz/index.c - libFuzzer target for index_parse() and its lesser forms (index_parse_chunks,
 * index_check, index_parse_lean with index_window_at): a layer index arrives from peers, so it is
 * parsed as hostile input; what parses whole has the same chunks parsed alone, index_check
 * takes exactly what index_parse takes, and a lean parse finds each window where the whole
 * parse has it. Whatever parses must serialize back to something that parses and says the same
 * (index_same, which compares a peer's index with the blob's); a file made setuid says something
 * else; and a reader started at its first checkpoints (inflating their stored windows, over a
 * blob of zeros) must fail cleanly or read, never crash.
 */
#include "../store/layer/layer.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ssize_t zeros(void *arg, uint64_t off, uint8_t *buf, size_t len)
{
    uint64_t size = *(const uint64_t *)arg;
    if (off >= size)
        return 0;
    len = len < size - off ? len : (size_t)(size - off);
    memset(buf, 0, len);
    return (ssize_t)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct layer_index ix, cx, kx;
    int crc = index_parse_chunks(data, size, &cx), krc = index_check(data, size, &kx);
    if (index_parse(data, size, &ix) != 0) {
        if (crc == 0)
            index_release(&cx);
        if (krc == 0) /* what the store takes unread must be what a reader can parse */
            abort();
        return 0;
    }
    if (krc != 0 || kx.nchunks != ix.nchunks || kx.nfiles != ix.nfiles ||
        kx.tar_size != ix.tar_size || memcmp(kx.chunks, ix.chunks, ix.nchunks * sizeof *ix.chunks))
        abort();
    index_release(&kx);
    if (crc != 0 || cx.nchunks != ix.nchunks || /* a fetch sees the chunks a reader sees */
        memcmp(cx.chunks, ix.chunks, ix.nchunks * sizeof *ix.chunks))
        abort();
    index_release(&cx);
    /* a lean parse has the same checkpoints, and each window is where index_window_at says */
    struct layer_index lx;
    if (index_parse_lean(data, size, &lx) != 0 || lx.ncps != ix.ncps || lx.nfiles != ix.nfiles)
        abort();
    for (uint32_t k = 0; k < ix.ncps; k++) {
        const struct checkpoint *c = &ix.cps[k], *l = &lx.cps[k];
        const uint8_t *w;
        uint32_t wn;
        if (l->zwin || l->in_bit != c->in_bit || l->win_len != c->win_len ||
            l->zwin_len != c->zwin_len ||
            (c->win_len && (index_window_at(data, size, k, l, &w, &wn) != 0 || wn != c->zwin_len ||
                            memcmp(w, c->zwin, wn))))
            abort();
    }
    index_release(&lx);
    struct buf b = {0};
    struct layer_index again;
    if (index_serialize(&ix, &b) == 0) {
        if (index_parse(b.p, b.len, &again) != 0)
            abort();                     /* what we write, we must read */
        int same = index_same(&ix, &ix); /* 0 when a window does not inflate */
        if (same < 0 || index_same(&ix, &again) != same)
            abort();
        if (same == 1 && again.nfiles) {
            again.files[0].mode ^= 04000;
            if (index_same(&ix, &again) != 0)
                abort();
        }
        index_release(&again);
    }
    buf_release(&b);
    struct codec_reader *r;
    if (codec_reader_new(&r, ix.format, ix.cps, ix.ncps, ix.blob_size, ix.tar_size, zeros,
                         &ix.blob_size) == 0) {
        uint8_t out[64];
        for (uint32_t i = 0; i < ix.ncps && i < 8; i++)
            (void)codec_read(r, ix.cps[i].out_off, out, sizeof out);
        codec_reader_free(r);
    }
    index_release(&ix);
    return 0;
}
