/*
 * ingest.c - the streaming pass: a layer's bytes, from whatever source feeds them (a registry,
 * through store/pull/; a local file), to a verified, indexed layer in the store.
 *
 * One streaming pass per layer, on three threads so that the work (inflate ~50%, one SHA-256
 * pass ~20%, the copy into the page cache ~20%) spreads over both cores:
 *  - the receiving thread (the feed's: curl's callback in a pull, or a file reader) writes
 *    every byte to a temporary file in 1 MiB buffers, starts their writeback (sync_file_range)
 *    so the final fdatasync is short, and hands each buffer to the decoder;
 *  - the decoder thread runs the codec indexer, whose output feeds the tar parser, which fills
 *    the index, and publishes the byte position of each checkpoint it finds;
 *  - the chunk thread hashes each chunk as soon as its end is published and its bytes are
 *    written, reading them back while they are still in the page cache: one SHA-256 pass, in
 *    order, whose states at the chunk ends are the chunk hashes and whose end is the blob
 *    digest (docs/format.md); and it trims each checkpoint's window (codec_window_trim). The
 *    windows are deflated at the end, on the receiving thread: deflated on the chunk thread,
 *    about 1 ingest in 150 under load stored a window encoded differently (the same bytes,
 *    another valid deflate stream), so the index was not a function of the blob; the same
 *    window deflated alone never differed (250,000 tries). The cause was not found.
 * Only when the whole blob matches its digest is anything made visible (store_layer_commit). A
 * decode error does not stop the download: a digest mismatch is the more useful thing to report
 * when a registry serves wrong bytes.
 * Owns the temporary file, the pipe buffers and the threads of one pass, none of which outlives
 * ingest_layer. Must not touch LMDB (it includes ingest.h, not store_int.h: the store's files own
 * the tables), nor know where the bytes come from: a source is a callback (ingest_feed_fn).
 */
#include "ingest.h"
#include "layer/layer.h"
#include "oci/oci.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIPE_BUF_SIZE (1u << 20)
#define PIPE_NBUFS 8               /* 8 MiB between the threads */
#define WRITEBACK_EVERY (8u << 20) /* start writeback of this much at a time */

struct pipe_buf {
    uint8_t *p;
    size_t len;
};

struct ingest {
    /* receiving thread */
    int fd;
    uint64_t received, written, writeback;
    uint64_t stalled_ns;  /* time spent waiting for the decoder to free a buffer */
    struct pipe_buf *cur; /* being filled */
    struct chunker ch;    /* the chunk thread's, until it is joined */
    struct store_dl *dl;  /* readers see the bytes written (downloads.c); NULL: not listed */
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct pipe_buf bufs[PIPE_NBUFS];
    struct pipe_buf *queue[PIPE_NBUFS], *free[PIPE_NBUFS];
    size_t q_head, q_len, nfree;
    bool eof, abort;
    uint64_t *cuts; /* checkpoint byte positions published by the decoder */
    size_t ncuts, cuts_cap, cuts_done;
    uint64_t written_pub; /* bytes in the file, for the chunk thread */
    /* checkpoints published by the decoder, their windows trimmed (codec_window_trim: the codec
     * never moves, reads or frees a window once made, until the ingest ends) by the chunk
     * thread when it has no chunk to cut */
    struct checkpoint *wcps;
    size_t nwins, wins_cap, ntrim; /* windows published / trimmed by the chunk thread */
    uint64_t size;                 /* of the blob, as the manifest says */
    bool chunk_eof;
    int decode_err, chunk_err;
    /* decoder thread */
    pthread_t thread, chunk_thread;
    bool piped, running, chunk_running;
    struct codec_indexer *cx;
    struct tar_parser *tp;
    size_t cps_seen;
    struct layer_index ix;
    /* progress */
    ingest_progress_cb progress;
    void *progress_arg;
    uint64_t last_report;
};

static int tar_out(void *arg, const uint8_t *p, size_t n)
{
    struct ingest *in = arg;
    return tar_parser_push(in->tp, p, n);
}

static int grow_wins(struct ingest *in)
{
    struct checkpoint *w = array_grow(in->wcps, &in->wins_cap, sizeof *w, 64);
    if (!w)
        return -ENOMEM;
    in->wcps = w;
    return 0;
}

/* The decoder thread: buffers in, index out; checkpoint positions published as found. */
static void *decoder_main(void *arg)
{
    struct ingest *in = arg;
    for (;;) {
        pthread_mutex_lock(&in->mu);
        while (!in->q_len && !in->eof && !in->abort)
            pthread_cond_wait(&in->cv, &in->mu);
        if (in->abort || !in->q_len) {
            pthread_mutex_unlock(&in->mu);
            return NULL;
        }
        struct pipe_buf *b = in->queue[in->q_head];
        in->q_head = (in->q_head + 1) % PIPE_NBUFS;
        in->q_len--;
        int failed = in->decode_err;
        pthread_mutex_unlock(&in->mu);

        int rc = failed ? 0 : codec_indexer_push(in->cx, b->p, b->len);
        size_t n;
        const struct checkpoint *cps = codec_indexer_checkpoints(in->cx, &n);

        pthread_mutex_lock(&in->mu);
        if (rc < 0 && !in->decode_err)
            in->decode_err = rc;
        for (; in->cps_seen < n; in->cps_seen++) {
            if (in->ncuts == in->cuts_cap) {
                uint64_t *v = array_grow(in->cuts, &in->cuts_cap, sizeof *v, 64);
                if (!v) {
                    in->decode_err = -ENOMEM;
                    break;
                }
                in->cuts = v;
            }
            if (in->cps_seen > 0) /* checkpoint 0 starts the first chunk */
                in->cuts[in->ncuts++] = cps[in->cps_seen].in_bit / 8;
            if (in->nwins == in->wins_cap && grow_wins(in) < 0) {
                in->decode_err = -ENOMEM;
                break;
            }
            in->wcps[in->nwins++] = cps[in->cps_seen];
        }
        in->free[in->nfree++] = b;
        pthread_cond_broadcast(&in->cv);
        pthread_mutex_unlock(&in->mu);
    }
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return err_set(-errno, "cannot write the download");
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Writes the current buffer, hands it to the decoder and takes a free one. */
static int submit(struct ingest *in)
{
    struct pipe_buf *b = in->cur;
    int rc;

    if (!b->len)
        return 0;
    if ((rc = write_all(in->fd, b->p, b->len)) < 0)
        return rc; /* a local disk error ends the pull at once */
    in->written += b->len;
    store_dl_progress(in->dl, in->written);
    if (in->written - in->writeback >= WRITEBACK_EVERY) {
        sync_file_range(in->fd, (off64_t)in->writeback, (off64_t)(in->written - in->writeback),
                        SYNC_FILE_RANGE_WRITE);
        in->writeback = in->written;
    }
    pthread_mutex_lock(&in->mu);
    in->written_pub = in->written;
    in->queue[(in->q_head + in->q_len) % PIPE_NBUFS] = b;
    in->q_len++;
    pthread_cond_broadcast(&in->cv);
    if (!in->nfree) {
        uint64_t t = time_mono_ns();
        while (!in->nfree)
            pthread_cond_wait(&in->cv, &in->mu);
        in->stalled_ns += time_mono_ns() - t;
    }
    in->cur = in->free[--in->nfree];
    in->cur->len = 0;
    pthread_mutex_unlock(&in->mu);
    return 0;
}

/* Trims a checkpoint's window in place. Reads the CODEC_TRIM_IN blob bytes after it (fewer at
 * the end of the blob: the same bytes whoever calls, so the index is the same) into buf. */
static int trim_window(struct window_trimmer *t, int fd, uint64_t size, const struct checkpoint *cp,
                       uint8_t *buf)
{
    if (!cp->win_len)
        return 0;
    uint64_t off = cp->in_bit / 8;
    size_t n = (size_t)MIN((uint64_t)CODEC_TRIM_IN, size - MIN(off, size));
    ssize_t got = pread(fd, buf, n, (off_t)off);
    if (got < 0)
        return err_set(-errno, "cannot read the download");
    int rc = codec_window_trim(t, cp, cp->window, buf, (size_t)got);
    return rc < 0 ? rc : 0;
}

/* Whether the bytes trim_window needs for checkpoint i are in the file. */
static bool trim_ready(const struct ingest *in, size_t i)
{
    const struct checkpoint *cp = &in->wcps[i];
    return !cp->win_len || in->written_pub >= MIN(cp->in_bit / 8 + CODEC_TRIM_IN, in->size);
}

/* The chunk thread: closes each chunk once the decoder has published its end and the receiving
 * thread has written its bytes (always true by then: the decoder saw them after the write), and
 * trims the windows. */
static void *chunk_main(void *arg)
{
    struct ingest *in = arg;
    struct window_trimmer *wt = NULL;
    uint8_t *tbuf = malloc(CODEC_TRIM_IN);
    /* Hashing chunks can wait; inflate cannot. With three threads on two cores, an equal share
     * would slow the decoder to 2/3 of a core: this thread yields to it instead. */
    setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
    int zrc = !tbuf || window_trimmer_new(&wt) < 0 ? -ENOMEM : 0;
    pthread_mutex_lock(&in->mu);
    for (;;) {
        bool cut, win;
        for (;;) {
            cut = in->cuts_done < in->ncuts && in->cuts[in->cuts_done] <= in->written_pub;
            win = zrc == 0 && in->ntrim < in->nwins && trim_ready(in, in->ntrim);
            if (cut || win || in->chunk_eof || in->abort)
                break;
            pthread_cond_wait(&in->cv, &in->mu);
        }
        if (in->abort || in->chunk_err)
            break;
        if (cut) {
            uint64_t end = in->cuts[in->cuts_done];
            pthread_mutex_unlock(&in->mu);
            int rc = chunker_cut(&in->ch, in->fd, end);
            pthread_mutex_lock(&in->mu);
            if (rc < 0)
                in->chunk_err = rc;
            in->cuts_done++;
        } else if (win) {
            struct checkpoint cp = in->wcps[in->ntrim];
            pthread_mutex_unlock(&in->mu);
            int rc = trim_window(wt, in->fd, in->size, &cp, tbuf);
            pthread_mutex_lock(&in->mu);
            if (rc < 0)
                zrc = rc; /* the rest is trimmed at the end */
            else
                in->ntrim++;
        } else {
            break; /* chunk_eof: the rest is closed by chunker_finish */
        }
    }
    pthread_mutex_unlock(&in->mu);
    window_trimmer_free(wt);
    free(tbuf);
    return NULL;
}

/* Accounts n bytes just placed at the end of the current buffer: hashed, progress reported, and
 * the buffer submitted once full. */
static int on_filled(struct ingest *in, size_t n)
{
    in->received += n;
    in->cur->len += n;
    if (in->progress) {
        uint64_t now = time_mono_ns();
        if (now - in->last_report > 100000000ull) {
            in->last_report = now;
            in->progress(in->progress_arg, in->received);
        }
    }
    return in->cur->len == PIPE_BUF_SIZE ? submit(in) : 0;
}

/* Bytes from a feed (a registry's, through registry_get_blob) are copied into the pipe
 * buffers. */
int ingest_data(void *arg, const uint8_t *p, size_t n)
{
    struct ingest *in = arg;
    while (n) {
        size_t k = MIN(n, PIPE_BUF_SIZE - in->cur->len);
        memcpy(in->cur->p + in->cur->len, p, k);
        int rc = on_filled(in, k);
        if (rc < 0)
            return rc;
        p += k;
        n -= k;
    }
    return 0;
}

static int pipe_start(struct ingest *in)
{
    pthread_mutex_init(&in->mu, NULL);
    pthread_cond_init(&in->cv, NULL);
    in->piped = true;
    for (int i = 0; i < PIPE_NBUFS; i++) {
        if (!(in->bufs[i].p = malloc(PIPE_BUF_SIZE)))
            return -ENOMEM;
        in->free[in->nfree++] = &in->bufs[i];
    }
    in->cur = in->free[--in->nfree];
    in->cur->len = 0;
    int rc = pthread_create(&in->thread, NULL, decoder_main, in);
    if (rc)
        return err_set(-rc, "cannot start the decoder thread");
    in->running = true;
    rc = pthread_create(&in->chunk_thread, NULL, chunk_main, in);
    if (rc)
        return err_set(-rc, "cannot start the chunk thread");
    in->chunk_running = true;
    return 0;
}

/* Ends the decoder and chunk threads: after the last buffer is decoded and the last published
 * chunk hashed, or at once if abort. Returns the chunk thread's error, if any. */
static int pipe_stop(struct ingest *in, bool abort)
{
    if (in->running) {
        pthread_mutex_lock(&in->mu);
        in->eof = true;
        in->abort = abort;
        pthread_cond_broadcast(&in->cv);
        pthread_mutex_unlock(&in->mu);
        pthread_join(in->thread, NULL);
        in->running = false;
    }
    if (in->chunk_running) {
        pthread_mutex_lock(&in->mu);
        in->chunk_eof = true;
        in->abort = abort;
        pthread_cond_broadcast(&in->cv);
        pthread_mutex_unlock(&in->mu);
        pthread_join(in->chunk_thread, NULL);
        in->chunk_running = false;
    }
    return in->chunk_err;
}

static void pipe_release(struct ingest *in)
{
    if (!in->piped)
        return;
    pipe_stop(in, true);
    for (int i = 0; i < PIPE_NBUFS; i++)
        free(in->bufs[i].p);
    free(in->cuts);
    free(in->wcps);
    pthread_mutex_destroy(&in->mu);
    pthread_cond_destroy(&in->cv);
}

/* A local file is read straight into the pipe buffers. */
static int feed_fd(void *src, struct ingest *in)
{
    int fd = *(int *)src;
    for (;;) {
        ssize_t n = read(fd, in->cur->p + in->cur->len, PIPE_BUF_SIZE - in->cur->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? err_set(-errno, "read") : 0;
        int rc = on_filled(in, (size_t)n);
        if (rc < 0)
            return rc;
    }
}

/* Trims the windows the chunk thread did not get to. */
static int trim_rest(struct ingest *in)
{
    if (in->ntrim >= in->ix.ncps)
        return 0;
    struct window_trimmer *t = NULL;
    uint8_t *buf = malloc(CODEC_TRIM_IN);
    int rc = buf ? window_trimmer_new(&t) : -ENOMEM;
    for (size_t i = in->ntrim; rc == 0 && i < in->ix.ncps; i++)
        rc = trim_window(t, in->fd, in->size, &in->ix.cps[i], buf);
    window_trimmer_free(t);
    free(buf);
    return rc;
}

int ingest_layer(struct store *s, ingest_feed_fn feed, void *src, const struct descriptor *d,
                 uint64_t resv_id, uint64_t resv_bytes, ingest_progress_cb progress,
                 void *progress_arg)
{
    struct ingest ingest = {.progress = progress, .progress_arg = progress_arg}, *in = &ingest;
    char tmp[PATH_MAX];
    enum layer_format fmt = LAYER_TAR;
    struct buf ixbytes = {0};
    int rc;

    tmp[0] = 0;
    in->fd = -1;
    if ((rc = layer_format(d->media_type, &fmt)) < 0)
        return rc;
    in->ix.format = fmt;
    in->size = d->size;
    if ((rc = chunker_init(&in->ch, &in->ix)) < 0)
        goto out;
    if ((rc = tar_parser_new(&in->tp, index_add_entry, &in->ix)) < 0 ||
        (rc = codec_indexer_new(&in->cx, fmt, tar_out, in)) < 0)
        goto out;
    if ((rc = in->fd = store_tmp_create(s, d->digest, tmp)) < 0)
        goto out;
    if ((rc = pipe_start(in)) < 0)
        goto out;
    if (store_dl_begin(s, d->digest, d->size, tmp, &in->dl) < 0)
        in->dl = NULL; /* not relayed: nothing else changes */

    uint64_t t0 = time_mono_ns();
    rc = feed(src, in);
    if (rc == 0)
        rc = submit(in); /* the last, partial buffer */
    /* Every byte is written: sync the blob while the decoder drains its queue (the chunk thread
     * only reads the file). */
    if (rc == 0 && fdatasync(in->fd) < 0)
        rc = err_set(-errno, "cannot sync the download");
    uint64_t t1 = time_mono_ns();
    int crc = pipe_stop(in, rc < 0);
    uint64_t t2 = time_mono_ns();
    if (rc == 0 && crc < 0)
        rc = crc;
    if (rc < 0)
        goto out;
    if (in->received != d->size) {
        rc = err_set(AFSP_E_SIZE, "got %llu bytes, the manifest says %llu",
                     (unsigned long long)in->received, (unsigned long long)d->size);
        goto out;
    }
    /* The chunk chain is the blob's digest. A corrupt blob usually breaks the decoder too, but a
     * digest mismatch is the more useful thing to report: the chunks are closed either way, at
     * the checkpoints found if the decode worked, else without them. */
    int drc = in->decode_err;
    if (drc == 0 && (drc = codec_indexer_finish(in->cx)) == 0)
        drc = tar_parser_finish(in->tp);
    in->ix.blob_size = d->size;
    if (drc == 0) {
        size_t ncps;
        in->ix.tar_size = codec_indexer_out_bytes(in->cx);
        in->ix.cps = codec_indexer_take(in->cx, &ncps);
        in->ix.ncps = (uint32_t)ncps;
    }
    if ((rc = chunker_finish(&in->ch, in->fd)) < 0)
        goto out;
    if (memcmp(in->ix.chunks[in->ix.nchunks - 1].h, d->digest, DIGEST_LEN)) {
        rc = err_set(AFSP_E_DIGEST, NULL);
        goto out;
    }
    if ((rc = drc) < 0 || (rc = trim_rest(in)) < 0)
        goto out;
    uint64_t t3 = time_mono_ns();
    if ((rc = index_serialize(&in->ix, &ixbytes)) < 0)
        goto out;
    uint64_t t4 = time_mono_ns();
    rc = store_layer_commit(s, resv_id, resv_bytes, d->digest, d->media_type, &in->ix, &ixbytes,
                            tmp);
    log_debug("layer of %llu bytes: received and synced %.3f s (%.3f s waiting for the decoder), "
              "decoder done +%.3f, finished +%.3f, index of %zu bytes +%.3f, committed +%.3f",
              (unsigned long long)d->size, (t1 - t0) / 1e9, in->stalled_ns / 1e9, (t2 - t1) / 1e9,
              (t3 - t2) / 1e9, ixbytes.len, (t4 - t3) / 1e9, (time_mono_ns() - t4) / 1e9);
    tmp[0] = 0; /* the commit renamed or removed the file */
out:
    store_dl_end(in->dl, rc);
    pipe_release(in);
    if (in->fd >= 0)
        close(in->fd);
    if (rc < 0 && tmp[0])
        unlink(tmp);
    chunker_release(&in->ch);
    codec_indexer_free(in->cx);
    tar_parser_free(in->tp);
    index_release(&in->ix);
    buf_release(&ixbytes);
    return rc;
}

uint64_t ingest_allowance(uint64_t size)
{
    return add_sat(add_sat(size, size / 16), 64u << 10);
}

int store_layer_verify(struct store *s, const uint8_t digest[static DIGEST_LEN])
{
    struct layer_rec r;
    char path[PATH_MAX], dg[DIGEST_STR_LEN + 1];
    int rc = store_layer_get(s, digest, &r);
    if (rc < 0)
        return rc;
    if (!(r.flags & LAYER_COMPLETE))
        return err_set(AFSP_E_USAGE, "layer %s is not complete", digest_fmt(digest, dg));
    if (r.flags & LAYER_INDEX_BUILT)
        return 0;
    store_blob_path(s, digest, path); /* the commit judges the peer's index */
    return store_ingest_file(s, path, r.media_type, digest);
}

int store_ingest_file(struct store *s, const char *path, const char *media_type,
                      const uint8_t digest[static DIGEST_LEN])
{
    struct descriptor d = {0};
    struct stat st;
    uint64_t id = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
    if (fd < 0)
        return err_set(-errno, "cannot open %s", path);
    if (fstat(fd, &st) < 0) {
        rc = err_set(-errno, "cannot stat %s", path);
        close(fd);
        return rc;
    }
    snprintf(d.media_type, sizeof d.media_type, "%s", media_type);
    memcpy(d.digest, digest, DIGEST_LEN);
    d.size = (uint64_t)st.st_size;
    const uint8_t(*pin)[DIGEST_LEN] = (const uint8_t(*)[DIGEST_LEN])d.digest;
    rc = store_reserve(s, pin, 1, ingest_allowance(d.size), &id);
    if (rc == 0) {
        rc = ingest_layer(s, feed_fd, &fd, &d, id, ingest_allowance(d.size), NULL, NULL);
        store_unreserve(s, id);
    }
    close(fd);
    return rc;
}
