/*
 * zstd.c - zstd layers: the indexer's checkpoints at frame starts (a frame end becomes one only
 * once the blob goes on after it) and the reader's decode. A single-frame layer has only
 * checkpoint 0, so every read of it decodes from the start of the blob (codec_read); seekable
 * and other multi-frame layers get real random access. Windows over 2^ZSTD_WINDOW_LOG_MAX are
 * refused (AFSP_E_UNSUPPORTED): a decoder's memory stays bounded.
 *
 * Owns and must not: as codec.c.
 */
#include "codec_int.h"

#include <errno.h>
#include <zstd_errors.h>

static int zstd_err(size_t ret)
{
    if (ZSTD_getErrorCode(ret) == ZSTD_error_frameParameter_windowTooLarge)
        return err_set(AFSP_E_UNSUPPORTED, "zstd: window larger than 2^%d", ZSTD_WINDOW_LOG_MAX);
    if (ZSTD_getErrorCode(ret) == ZSTD_error_memory_allocation)
        return -ENOMEM;
    return err_set(AFSP_E_FORMAT, "zstd: %s", ZSTD_getErrorName(ret));
}

/* ---- indexer: zstd ------------------------------------------------------------------------ */

/* Checkpoints go at frame starts; a frame end becomes one only once the blob goes on after it. */
int zs_push(struct codec_indexer *ix, const uint8_t *in, size_t n)
{
    ZSTD_inBuffer ib = {in, n, 0};
    for (;;) {
        if (ix->zpending && ib.pos < ib.size) {
            ix->zpending = false;
            int rc = ix_checkpoint(ix, 8 * ix->zpend_in, NULL, 0);
            if (rc)
                return rc;
        }
        ZSTD_outBuffer ob = {ix->obuf, ZSTD_OBUF, 0};
        size_t pos0 = ib.pos;
        size_t ret = ZSTD_decompressStream(ix->zd, &ob, &ib);
        ix->in_pos += ib.pos - pos0;
        if (ZSTD_isError(ret))
            return zstd_err(ret);
        if (ob.pos) {
            ix->out_total += ob.pos;
            int rc = ix->cb(ix->arg, ix->obuf, ob.pos);
            if (rc)
                return rc;
        }
        ix->zframe_open = ret != 0;
        if (ret == 0 && ix_due(ix)) {
            ix->zpending = true;
            ix->zpend_in = ix->in_pos;
        }
        if (ib.pos == ib.size && ob.pos < ob.size)
            return 0;
        if (ib.pos == pos0 && ob.pos == 0)
            return err_set(AFSP_E_FORMAT, "zstd: decoder stuck");
    }
}

/* ---- reader: zstd ------------------------------------------------------------------------- */

ssize_t rd_zstd_decode(struct codec_reader *r, uint8_t *dst, size_t want)
{
    size_t got = 0;
    while (got < want) {
        ssize_t avail = rd_fill(r);
        if (avail < 0)
            return avail;
        ZSTD_inBuffer in = {r->ib + r->ib_pos, (size_t)avail, 0};
        ZSTD_outBuffer out = {dst, want, got};
        size_t ret = ZSTD_decompressStream(r->zd, &out, &in);
        r->ib_pos += in.pos;
        bool progress = in.pos || out.pos != got;
        got = out.pos;
        if (ZSTD_isError(ret))
            return zstd_err(ret);
        r->zframe_open = ret != 0;
        if (!progress) {
            if (avail == 0 && !r->zframe_open)
                return (ssize_t)got;
            return err_set(AFSP_E_FORMAT, "zstd: %s", avail ? "decoder stuck" : "frame ends early");
        }
    }
    return (ssize_t)got;
}
