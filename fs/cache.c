/*
 * cache.c - file bytes for the mount: a bounded cache of decoded pieces, decoder threads, read
 * ahead and a prefetch zone.
 *
 * A layer's uncompressed stream is cut into spans at its checkpoints (store_layer_span) and each
 * span into pieces of at most PIECE bytes. A piece is the unit of caching; a span is the unit of
 * decoding, since decoding can only start at a span's first byte: one decoder at a time works on
 * a span, going forward through its pieces, so that no byte is decoded twice for one pass.
 *
 * A read names the pieces it covers. Those that are decoded are used at once; for the others the
 * read waits: their span's "want" mark moves up to them and the span is queued for a decoder
 * thread. The thread decodes the span's missing pieces in order up to the mark (re-read after
 * every piece, so reads arriving meanwhile extend the pass), and the read's callback runs on the
 * thread that completes its last piece. Two readers of one piece share one decode.
 *
 * Memory: at most mem_max decoded bytes. Pieces being read may exceed it, until the reads let
 * them go: then the least recently used pieces are dropped down to the limit. Pieces that a read
 * asked for live in the main zone (LRU). Pieces decoded ahead of any reader (read-ahead of a
 * sequential reader, --prefetch, the pieces passed on the way to a wanted one) live in the
 * prefetch zone, limited to prefetch_share% of the memory, and can only ever push out other
 * prefetched pieces: prefetching never evicts what readers use. A read that hits a prefetched
 * piece moves it to the main zone.
 */
#include "fs.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PIECE (256u << 10)
#define READ_AHEAD_SPANS 8 /* spans decoded ahead of a sequential reader: about 4 MiB */
#define NONE UINT32_MAX
#define SLAB (2u << 20)
/* What a piece holds of the memory limit: its whole buffer (the last piece of a span is
 * usually short, and must still not let real use exceed the limit). */
#define COST(p) ((uint64_t)PIECE)
#define IDLE_READERS 16 /* decoders kept per layer, each where its last pass stopped */
/* The piece table is made whole at mount time, one entry per PIECE of every layer's stream:
 * 2^22 entries are 1 TiB of uncompressed layers and 192 MiB of table. An image past that (or a
 * forged index claiming it, which index_parse bounds only by the blob's size) is refused. */
#define MAX_PIECES (1u << 22)

enum { P_EMPTY, P_LOADING, P_READY };
enum { Z_NONE, Z_MAIN, Z_PREFETCH };
enum { Q_DEMAND, Q_PREFETCH, NQUEUES };

struct piece {
    uint64_t start; /* in the layer's uncompressed stream */
    uint32_t len;
    uint32_t span; /* global span number */
    uint8_t state, zone;
    uint32_t refs;                /* reads holding the buffer */
    uint32_t prev, next;          /* LRU links in its zone's list, while READY and unreferenced */
    uint8_t *buf;                 /* READY: len bytes */
    struct pending_wait *waiters; /* reads waiting for it */
};

struct span {
    uint32_t layer;
    uint32_t first, count; /* pieces [first, first + count) */
    uint32_t want;         /* decode missing pieces up to this one (global number), or NONE */
    uint32_t cursor;       /* busy: the decoder looks for missing pieces from here */
    bool busy;             /* a decoder works on it */
    bool rewind;           /* busy: a piece before the cursor is wanted again */
    bool queued[NQUEUES];
};

struct layer {
    struct store_layer *l;
    uint32_t first_span, nspans;
    uint32_t first_piece, npieces;
    struct store_reader **idle; /* readers not in use */
    size_t nidle;
};

struct pending {
    fs_read_cb cb;
    void *arg;
    uint64_t lo, hi; /* the read: layer stream bytes [lo, hi) */
    uint32_t p0, p1; /* pieces [p0, p1], each referenced by the read */
    uint32_t missing;
    int err;
    struct pending_wait {
        struct pending *p;
        struct pending_wait *next;
    } w[]; /* one per piece */
};

struct lru {
    uint32_t head, tail; /* head: most recently used */
    uint64_t bytes;
};

struct fs_cache {
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    struct layer *layers;
    size_t nlayers;
    struct span *spans;
    uint32_t nspans;
    struct piece *pieces;
    uint32_t npieces;
    struct lru zone[3]; /* [Z_MAIN], [Z_PREFETCH] */
    uint64_t mem, mem_max, prefetch_max;
    uint32_t *queue[NQUEUES]; /* ring buffers of span numbers, nspans each */
    uint32_t q_head[NQUEUES], q_len[NQUEUES];
    unsigned nthreads, active;
    pthread_t *threads;
    bool stop;
    uint8_t **spare; /* free piece buffers */
    size_t nspare, spare_max;
    uint8_t **slabs; /* piece buffers come from these, SLAB bytes each, never returned */
    size_t nslabs, slab_used;
    struct fs_cache_stats st;
};

/* ---- lists --------------------------------------------------------------------------------- */

static void lru_unlink(struct fs_cache *c, uint32_t i)
{
    struct piece *p = &c->pieces[i];
    struct lru *z = &c->zone[p->zone];
    if (p->prev != NONE)
        c->pieces[p->prev].next = p->next;
    else
        z->head = p->next;
    if (p->next != NONE)
        c->pieces[p->next].prev = p->prev;
    else
        z->tail = p->prev;
    p->prev = p->next = NONE;
    z->bytes -= COST(p);
}

static void lru_push(struct fs_cache *c, uint32_t i)
{
    struct piece *p = &c->pieces[i];
    struct lru *z = &c->zone[p->zone];
    p->prev = NONE;
    p->next = z->head;
    if (z->head != NONE)
        c->pieces[z->head].prev = i;
    else
        z->tail = i;
    z->head = i;
    z->bytes += COST(p);
}

static void buf_put(struct fs_cache *c, uint8_t *b)
{
    if (c->nspare == c->spare_max) {
        size_t n = c->spare_max ? 2 * c->spare_max : 256;
        uint8_t **v = realloc(c->spare, n * sizeof *v);
        if (!v)
            return; /* lost until the cache is freed: it stays in its slab */
        c->spare = v;
        c->spare_max = n;
    }
    c->spare[c->nspare++] = b;
}

/* Piece buffers are carved from 2 MiB slabs that ask for transparent huge pages (a cold read
 * of a big file otherwise spends much of its time faulting in fresh 4 KiB pages). They are
 * reused, never returned: the memory limit bounds how many there are. */
static uint8_t *buf_get(struct fs_cache *c)
{
    if (c->nspare)
        return c->spare[--c->nspare];
    if (!c->nslabs || c->slab_used + PIECE > SLAB) {
        uint8_t **v = realloc(c->slabs, (c->nslabs + 1) * sizeof *v);
        if (!v)
            return NULL;
        c->slabs = v;
        uint8_t *s = aligned_alloc(SLAB, SLAB);
        if (!s)
            return NULL;
        madvise(s, SLAB, MADV_HUGEPAGE);
        c->slabs[c->nslabs++] = s;
        c->slab_used = 0;
    }
    uint8_t *b = c->slabs[c->nslabs - 1] + c->slab_used;
    c->slab_used += PIECE;
    return b;
}

/* Drops an unreferenced READY piece's bytes. */
static void evict(struct fs_cache *c, uint32_t i)
{
    struct piece *p = &c->pieces[i];
    lru_unlink(c, i);
    buf_put(c, p->buf);
    p->buf = NULL;
    p->state = P_EMPTY;
    p->zone = Z_NONE;
    c->mem -= COST(p);
    c->st.evicted++;
}

/* Makes room for len more bytes in zone z. The prefetch zone gives way first and is all a
 * prefetched piece may take from. Returns whether there is room. */
static bool make_room(struct fs_cache *c, uint32_t len, int z)
{
    struct lru *pz = &c->zone[Z_PREFETCH], *mz = &c->zone[Z_MAIN];
    if (z == Z_PREFETCH)
        while (pz->tail != NONE && pz->bytes + len > c->prefetch_max)
            evict(c, pz->tail);
    while (c->mem + len > c->mem_max) {
        if (pz->tail != NONE)
            evict(c, pz->tail);
        else if (z == Z_MAIN && mz->tail != NONE)
            evict(c, mz->tail);
        else
            return z == Z_MAIN; /* only pieces in use are left: a read may overshoot */
    }
    return z == Z_MAIN || pz->bytes + len <= c->prefetch_max;
}

static void ref(struct fs_cache *c, uint32_t i)
{
    struct piece *p = &c->pieces[i];
    if (p->refs++ == 0 && p->state == P_READY)
        lru_unlink(c, i);
}

/* Pays back what reads overshot (make_room lets a decode for a read exceed the limit when
 * every piece is in use): once a piece is let go, the oldest unused pieces go until the cache is
 * within its limit again. Without this the excess stayed until the next decode for a reader,
 * since a prefetch may not push out the main zone. */
static void unref(struct fs_cache *c, uint32_t i)
{
    struct piece *p = &c->pieces[i];
    if (--p->refs != 0 || p->state != P_READY)
        return;
    lru_push(c, i);
    while (c->mem > c->mem_max) {
        struct lru *z = &c->zone[c->zone[Z_PREFETCH].tail != NONE ? Z_PREFETCH : Z_MAIN];
        if (z->tail == NONE)
            break;
        evict(c, z->tail);
    }
}

/* ---- queues -------------------------------------------------------------------------------- */

static void enqueue(struct fs_cache *c, uint32_t s, int q)
{
    struct span *sp = &c->spans[s];
    if (sp->queued[q])
        return;
    sp->queued[q] = true;
    c->queue[q][(c->q_head[q] + c->q_len[q]) % c->nspans] = s;
    c->q_len[q]++;
    pthread_cond_signal(&c->work);
}

/* Asks for the span's missing pieces up to piece i to be decoded. */
static void want(struct fs_cache *c, uint32_t i, int q)
{
    struct span *sp = &c->spans[c->pieces[i].span];
    if (sp->want == NONE || sp->want < i)
        sp->want = i;
    if (!sp->busy)
        enqueue(c, c->pieces[i].span, q);
    else if (i < sp->cursor)
        sp->rewind = true;
}

/* ---- reads --------------------------------------------------------------------------------- */

static uint32_t piece_at(const struct fs_cache *c, const struct layer *L, uint64_t off)
{
    uint32_t lo = L->first_piece, hi = L->first_piece + L->npieces;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->pieces[mid].start <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Calls the read's callback with its bytes (every piece READY and referenced by it), then lets
 * the pieces go. Called without the lock. */
static void complete(struct fs_cache *c, struct pending *p)
{
    struct iovec stack[16] = {{0}}, *iov = stack;
    int n = 0;
    ssize_t rc = p->err;
    uint32_t np = p->p1 - p->p0 + 1;
    if (!p->err && np > 16 && !(iov = malloc(np * sizeof *iov)))
        rc = -ENOMEM;
    if (rc == 0 && p->hi > p->lo) {
        for (uint32_t i = p->p0; i <= p->p1; i++) {
            const struct piece *q = &c->pieces[i];
            uint64_t a = MAX(p->lo, q->start), b = MIN(p->hi, q->start + q->len);
            if (b > a)
                iov[n++] = (struct iovec){q->buf + (a - q->start), (size_t)(b - a)};
        }
        rc = (ssize_t)(p->hi - p->lo);
    }
    p->cb(p->arg, n ? iov : NULL, n, rc);
    if (iov != stack)
        free(iov);
    pthread_mutex_lock(&c->mu);
    if (p->hi > p->lo)
        for (uint32_t i = p->p0; i <= p->p1; i++)
            unref(c, i);
    if (rc >= 0) {
        c->st.reads++;
        c->st.read_bytes += (uint64_t)rc;
    }
    pthread_mutex_unlock(&c->mu);
    free(p);
}

/* A sequential reader gets the rest of its file decoded ahead of it, up to READ_AHEAD_SPANS
 * spans beyond the one it is in (never past the file's end: small files are most files). */
static void read_ahead(struct fs_cache *c, uint32_t last_piece, uint32_t file_end_piece)
{
    uint32_t s = c->pieces[last_piece].span, until = c->pieces[file_end_piece].span;
    for (uint32_t k = 0; k <= READ_AHEAD_SPANS && s + k <= until; k++) {
        const struct span *sp = &c->spans[s + k];
        uint32_t end = MIN(sp->first + sp->count - 1, file_end_piece);
        if (end > last_piece && c->pieces[end].state == P_EMPTY)
            want(c, end, Q_PREFETCH);
    }
}

void fs_cache_read_async(struct fs_cache *c, uint32_t layer, uint64_t data_off, uint64_t size,
                         uint64_t off, size_t n, bool seq_hint, fs_read_cb cb, void *arg)
{
    if (layer >= c->nlayers) {
        cb(arg, NULL, 0, -EINVAL);
        return;
    }
    struct layer *L = &c->layers[layer];
    if (off > size)
        off = size;
    n = (size_t)MIN((uint64_t)n, size - off);
    uint64_t lo = data_off + off, hi = lo + n;
    if (hi > store_layer_size(L->l) || hi < lo) {
        cb(arg, NULL, 0, -EIO); /* the index puts the file past the layer's end */
        return;
    }
    uint32_t p0 = 0, p1 = 0;
    if (n) { /* piece starts never change: no lock needed */
        p0 = piece_at(c, L, lo);
        p1 = piece_at(c, L, hi - 1);
    }
    struct pending *p = calloc(1, sizeof *p + (n ? p1 - p0 + 1 : 0) * sizeof p->w[0]);
    if (!p) {
        cb(arg, NULL, 0, -ENOMEM);
        return;
    }
    *p = (struct pending){.cb = cb, .arg = arg, .lo = lo, .hi = hi, .p0 = p0, .p1 = p1};
    if (n == 0) {
        complete(c, p);
        return;
    }
    pthread_mutex_lock(&c->mu);
    for (uint32_t i = p0; i <= p1; i++) {
        struct piece *q = &c->pieces[i];
        ref(c, i);
        if (q->state == P_READY) {
            c->st.hits++;
            if (q->zone == Z_PREFETCH) { /* a reader wants it now (unreferenced: not listed) */
                q->zone = Z_MAIN;
            }
            continue;
        }
        c->st.misses++;
        struct pending_wait *w = &p->w[i - p0];
        w->p = p;
        w->next = q->waiters;
        q->waiters = w;
        p->missing++;
        if (q->state == P_EMPTY)
            want(c, i, Q_DEMAND);
    }
    if (seq_hint && hi < data_off + size)
        read_ahead(c, p1, piece_at(c, L, data_off + size - 1));
    bool now = p->missing == 0;
    pthread_mutex_unlock(&c->mu);
    if (now)
        complete(c, p);
}

/* ---- decoders ------------------------------------------------------------------------------ */

/* A reader of layer L for a pass over span sp starting at piece i: preferably one that stopped
 * inside the span at or before the piece, so that the bytes before it need no decoding again. */
static struct store_reader *reader_take(struct fs_cache *c, struct layer *L, const struct span *sp,
                                        uint32_t i)
{
    uint64_t lo = c->pieces[sp->first].start, hi = c->pieces[i].start;
    size_t best = SIZE_MAX;
    uint64_t best_pos = 0;
    for (size_t k = 0; k < L->nidle; k++) {
        uint64_t pos = store_reader_pos(L->idle[k]);
        if (pos >= lo && pos <= hi && (best == SIZE_MAX || pos > best_pos)) {
            best = k;
            best_pos = pos;
        }
    }
    if (best == SIZE_MAX && L->nidle)
        best = L->nidle - 1;
    if (best != SIZE_MAX) {
        struct store_reader *r = L->idle[best];
        L->idle[best] = L->idle[--L->nidle];
        return r;
    }
    struct store_reader *r = NULL;
    if (store_reader_new(L->l, &r) < 0)
        return NULL;
    return r;
}

static void reader_give(struct layer *L, struct store_reader *r)
{
    if (L->nidle < IDLE_READERS)
        L->idle[L->nidle++] = r;
    else
        store_reader_free(r);
}

/* The lowest missing piece of sp in [from, want], or NONE. */
static uint32_t next_missing(const struct fs_cache *c, const struct span *sp, uint32_t from)
{
    if (sp->want == NONE)
        return NONE;
    for (uint32_t i = from; i <= sp->want && i < sp->first + sp->count; i++)
        if (c->pieces[i].state == P_EMPTY)
            return i;
    return NONE;
}

/* Takes every waiter of pieces [a, b] off them (under the lock), failing them with err when err
 * is non-zero, and returns the reads that are now complete, linked through their waits. */
static struct pending_wait *detach_waiters(struct fs_cache *c, uint32_t a, uint32_t b, int err)
{
    struct pending_wait *done = NULL;
    for (uint32_t k = a; k <= b; k++) {
        struct pending_wait *w = c->pieces[k].waiters;
        c->pieces[k].waiters = NULL;
        while (w) {
            struct pending_wait *next = w->next;
            if (err)
                w->p->err = err;
            if (--w->p->missing == 0) {
                w->next = done;
                done = w;
            }
            w = next;
        }
    }
    return done;
}

/* Completes the reads detach_waiters returned; called without the lock. */
static void complete_all(struct fs_cache *c, struct pending_wait *done)
{
    while (done) {
        struct pending_wait *next = done->next;
        complete(c, done->p); /* frees done */
        done = next;
    }
}

static int to_errno(int rc)
{
    return rc == -ENOMEM ? -ENOMEM : -EIO;
}

/* One pass over span s: its missing pieces up to its want mark, in order. Called and returns with
 * the lock held. */
static void decode_span(struct fs_cache *c, uint32_t s, uint8_t *scratch)
{
    struct span *sp = &c->spans[s];
    struct layer *L = &c->layers[sp->layer];
    struct store_reader *r = NULL;

    sp->busy = true;
    sp->cursor = sp->first;
    sp->rewind = false;
    for (;;) {
        if (sp->rewind) {
            sp->cursor = sp->first;
            sp->rewind = false;
        }
        uint32_t i = next_missing(c, sp, sp->cursor);
        if (i == NONE)
            break;
        /* from here a want for a piece before i must rewind the pass (see want()) */
        sp->cursor = i;
        struct piece *q = &c->pieces[i];
        if (!r && !(r = reader_take(c, L, sp, i))) {
            /* no decoder (out of memory, or a layer format the codec refuses): fail what waits
             * now; the span is idle again before the lock is dropped, so a read that comes
             * meanwhile queues it afresh */
            c->st.errors++;
            struct pending_wait *done =
                detach_waiters(c, sp->first, sp->first + sp->count - 1, -EIO);
            sp->want = NONE;
            sp->busy = false;
            pthread_mutex_unlock(&c->mu);
            complete_all(c, done);
            pthread_mutex_lock(&c->mu);
            return;
        }
        /* a piece nobody waits for is decoded into the prefetch zone if it has room there, else
         * only passed through on the way to the next */
        int zone = q->waiters || q->refs ? Z_MAIN : Z_PREFETCH;
        uint8_t *dst = NULL;
        if (make_room(c, COST(q), zone) && (dst = buf_get(c)))
            c->mem += COST(q);
        else if (zone == Z_MAIN) { /* a read waits for it and there is no memory at all */
            c->st.errors++;
            struct pending_wait *done = detach_waiters(c, i, i, -ENOMEM);
            sp->cursor = i + 1;
            pthread_mutex_unlock(&c->mu);
            complete_all(c, done);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        q->state = P_LOADING;
        uint64_t before = store_reader_decoded(r);
        pthread_mutex_unlock(&c->mu);

        ssize_t got = store_reader_read(r, q->start, dst ? dst : scratch, q->len);

        pthread_mutex_lock(&c->mu);
        c->st.decoded_bytes += store_reader_decoded(r) - before;
        int err = 0;
        if (got != (ssize_t)q->len) {
            err = got < 0 ? to_errno((int)got) : -EIO;
            c->st.errors++;
        }
        if (dst && !err) {
            q->buf = dst;
            q->state = P_READY;
            q->zone = q->waiters || q->refs ? Z_MAIN : Z_PREFETCH;
            if (q->zone == Z_PREFETCH)
                c->st.prefetched++;
            if (!q->refs)
                lru_push(c, i);
        } else {
            if (dst) {
                buf_put(c, dst);
                c->mem -= COST(q);
            }
            q->state = P_EMPTY;
            if (!dst && !err && q->waiters) {
                /* passed through without a buffer, but a read came for it meanwhile: go back
                 * for it (it now goes to the main zone, which always has room) */
                sp->rewind = true;
                continue;
            }
        }
        struct pending_wait *done = detach_waiters(c, i, i, err);
        sp->cursor = i + 1;
        if (done) {
            pthread_mutex_unlock(&c->mu);
            complete_all(c, done);
            pthread_mutex_lock(&c->mu);
        }
    }
    sp->want = NONE;
    sp->busy = false;
    if (r)
        reader_give(L, r);
}

static void *worker(void *arg)
{
    struct fs_cache *c = arg;
    uint8_t *scratch = malloc(PIECE);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        int q = c->q_len[Q_DEMAND] ? Q_DEMAND : c->q_len[Q_PREFETCH] ? Q_PREFETCH : -1;
        if (q < 0) {
            if (c->stop)
                break;
            if (c->active == 0)
                pthread_cond_broadcast(&c->idle);
            pthread_cond_wait(&c->work, &c->mu);
            continue;
        }
        uint32_t s = c->queue[q][c->q_head[q]];
        c->q_head[q] = (c->q_head[q] + 1) % c->nspans;
        c->q_len[q]--;
        c->spans[s].queued[q] = false;
        if (c->spans[s].busy || c->spans[s].want == NONE)
            continue;
        if (!scratch) { /* cannot pass through pieces without memory for them */
            scratch = malloc(PIECE);
            if (!scratch && c->stop)
                break;
            if (!scratch) {
                enqueue(c, s, q);
                pthread_mutex_unlock(&c->mu);
                usleep(10000);
                pthread_mutex_lock(&c->mu);
                continue;
            }
        }
        c->active++;
        decode_span(c, s, scratch);
        c->active--;
    }
    pthread_mutex_unlock(&c->mu);
    free(scratch);
    return NULL;
}

/* ---- setup --------------------------------------------------------------------------------- */

int fs_cache_new(struct fs_cache **out, struct store_layer *const *layers, size_t n,
                 const struct fs_cache_opts *o)
{
    struct fs_cache *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->work, NULL);
    pthread_cond_init(&c->idle, NULL);
    c->mem_max = o && o->mem_bytes ? o->mem_bytes : 256ull << 20;
    if (c->mem_max < 4 * PIECE)
        c->mem_max = 4 * PIECE;
    unsigned share = o && o->prefetch_share ? MIN(o->prefetch_share, 100u) : 25;
    c->prefetch_max = c->mem_max * share / 100;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    c->nthreads = o && o->threads ? o->threads : (unsigned)MAX(2, MIN(ncpu, 16));
    c->zone[Z_MAIN] = c->zone[Z_PREFETCH] = (struct lru){NONE, NONE, 0};
    c->nlayers = n;
    if (!(c->layers = calloc(n ? n : 1, sizeof *c->layers)))
        goto nomem;

    /* count, then cut */
    uint64_t nspans = 0, npieces = 0;
    for (size_t k = 0; k < n; k++) {
        struct layer *L = &c->layers[k];
        L->l = layers[k];
        if (!(L->idle = calloc(IDLE_READERS, sizeof *L->idle)))
            goto nomem;
        L->first_span = (uint32_t)nspans;
        L->nspans = store_layer_nspans(layers[k]);
        L->first_piece = (uint32_t)npieces;
        for (uint32_t j = 0; j < L->nspans; j++) {
            uint64_t a, b;
            store_layer_span(layers[k], j, &a, &b);
            npieces += b > a ? (b - a) / PIECE + ((b - a) % PIECE != 0) : 1;
        }
        L->npieces = (uint32_t)(npieces - L->first_piece);
        nspans += L->nspans;
        if (npieces > MAX_PIECES) { /* spans are never more than pieces */
            fs_cache_free(c);
            return err_set(AFSP_E_UNSUPPORTED, "image too large to mount: over %u GiB uncompressed",
                           (unsigned)(((uint64_t)MAX_PIECES * PIECE) >> 30));
        }
    }
    c->nspans = (uint32_t)nspans;
    c->npieces = (uint32_t)npieces;
    if (!(c->spans = calloc(nspans ? nspans : 1, sizeof *c->spans)) ||
        !(c->pieces = calloc(npieces ? npieces : 1, sizeof *c->pieces)) ||
        !(c->queue[Q_DEMAND] = calloc(nspans ? nspans : 1, sizeof(uint32_t))) ||
        !(c->queue[Q_PREFETCH] = calloc(nspans ? nspans : 1, sizeof(uint32_t))))
        goto nomem;
    uint32_t pi = 0;
    for (size_t k = 0; k < n; k++) {
        struct layer *L = &c->layers[k];
        for (uint32_t j = 0; j < L->nspans; j++) {
            uint64_t a, b;
            struct span *sp = &c->spans[L->first_span + j];
            store_layer_span(layers[k], j, &a, &b);
            *sp = (struct span){.layer = (uint32_t)k, .first = pi, .want = NONE};
            do {
                uint32_t len = (uint32_t)MIN((uint64_t)PIECE, b - a);
                c->pieces[pi++] = (struct piece){
                    .start = a, .len = len, .span = L->first_span + j, .prev = NONE, .next = NONE};
                a += len;
                sp->count++;
            } while (a < b);
        }
    }
    if (!(c->threads = calloc(c->nthreads, sizeof *c->threads)))
        goto nomem;
    for (unsigned t = 0; t < c->nthreads; t++) {
        int rc = pthread_create(&c->threads[t], NULL, worker, c);
        if (rc) {
            c->nthreads = t;
            fs_cache_free(c);
            return err_set(-rc, "cannot start a decoder thread");
        }
    }
    *out = c;
    return 0;
nomem:
    fs_cache_free(c);
    return -ENOMEM;
}

void fs_cache_free(struct fs_cache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->mu);
    for (unsigned t = 0; c->threads && t < c->nthreads; t++)
        pthread_join(c->threads[t], NULL);
    for (size_t k = 0; c->layers && k < c->nlayers; k++) {
        for (size_t j = 0; j < c->layers[k].nidle; j++)
            store_reader_free(c->layers[k].idle[j]);
        free(c->layers[k].idle);
    }
    for (size_t k = 0; k < c->nslabs; k++)
        free(c->slabs[k]);
    free(c->slabs);
    free(c->spare);
    free(c->threads);
    free(c->layers);
    free(c->spans);
    free(c->pieces);
    free(c->queue[Q_DEMAND]);
    free(c->queue[Q_PREFETCH]);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->work);
    pthread_cond_destroy(&c->idle);
    free(c);
}

/* ---- waiting reads, prefetch, statistics ---------------------------------------------------- */

struct sync_read {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    ssize_t rc;
    uint8_t *buf;
};

static void sync_cb(void *arg, const struct iovec *iov, int iovcnt, ssize_t rc)
{
    struct sync_read *s = arg;
    size_t k = 0;
    for (int i = 0; rc > 0 && i < iovcnt; i++) {
        memcpy(s->buf + k, iov[i].iov_base, iov[i].iov_len);
        k += iov[i].iov_len;
    }
    pthread_mutex_lock(&s->mu);
    s->rc = rc;
    s->done = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

ssize_t fs_cache_read(struct fs_cache *c, uint32_t layer, uint64_t data_off, uint64_t size,
                      uint64_t off, void *buf, size_t n)
{
    struct sync_read s = {.buf = buf};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    fs_cache_read_async(c, layer, data_off, size, off, n, false, sync_cb, &s);
    pthread_mutex_lock(&s.mu);
    while (!s.done)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    return s.rc;
}

void fs_cache_prefetch(struct fs_cache *c, uint32_t layer, uint64_t data_off, uint64_t size)
{
    if (layer >= c->nlayers || size == 0)
        return;
    struct layer *L = &c->layers[layer];
    if (data_off + size > store_layer_size(L->l))
        return;
    uint32_t p0 = piece_at(c, L, data_off), p1 = piece_at(c, L, data_off + size - 1);
    pthread_mutex_lock(&c->mu);
    for (uint32_t s = c->pieces[p0].span; s <= c->pieces[p1].span; s++) {
        const struct span *sp = &c->spans[s];
        uint32_t last = MIN(sp->first + sp->count - 1, p1);
        for (uint32_t i = MAX(sp->first, p0); i <= last; i++)
            if (c->pieces[i].state == P_EMPTY) {
                want(c, last, Q_PREFETCH);
                break;
            }
    }
    pthread_mutex_unlock(&c->mu);
}

void fs_cache_drain(struct fs_cache *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->q_len[Q_DEMAND] || c->q_len[Q_PREFETCH] || c->active)
        pthread_cond_wait(&c->idle, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

void fs_cache_stats(struct fs_cache *c, struct fs_cache_stats *st)
{
    pthread_mutex_lock(&c->mu);
    *st = c->st;
    st->mem_bytes = c->mem;
    st->mem_max = c->mem_max;
    pthread_mutex_unlock(&c->mu);
}
