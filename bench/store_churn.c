/*
 * store_churn.c - where do chunk bodies live? (DESIGN.md, "The store")
 *
 *   A  chunk bodies as LMDB values: key = layer digest + be32 chunk index, one value per chunk;
 *      reads are zero-copy from the map.
 *   B  one sparse file per blob (DATA/blobs/<hex>), each chunk pwrite()n at its own offset,
 *      fdatasync()ed before the chunk is marked present in the layer's bitmap (an LMDB value);
 *      eviction deletes the LMDB records, then unlinks the file.
 *
 * Both keep the same metadata in LMDB: layers (digest -> size, nchunks, atime [, bitmap]) and an
 * LRU table (be64 atime + digest -> ""). Same durability: chunks are committed in batches of
 * --batch chunks, each batch one write transaction with LMDB's default durability (fsync on
 * commit); B fdatasyncs the blob file before that commit. Access-time updates from lookups are
 * batched (64 lookups per write transaction, also durable) and flushed before every insert.
 *
 * Workload (identical for A and B within a run index: same seed, logical access clock):
 * a population of 2000 layers (5% tiny, 85% 1-20 MB, 10% 50-200 MB; 1 MiB chunks, last one
 * partial; random content from a PRNG), a cache limit; phase 1 fills to the limit; phase 2 keeps
 * inserting non-resident layers, evicting least-recently-used layers first (space reserved
 * before the insert), with --lookups random chunk reads of resident layers after each insert
 * (each read is checksummed against the checksum computed when the content was generated).
 * Phase 2 inserts --turnovers x limit bytes. Store sizes are sampled at each turnover.
 *
 * Usage: store_churn [--path DIR] [--scale F] [--limit BYTES] [--turnovers N] [--runs N]
 *                    [--batch N] [--lookups N] [--mapsize BYTES] [--only A|B] [--seed N] [DIR]
 * Defaults: /tmp (must be a real disk, not tmpfs), limit 2 GiB x scale, 6 turnovers, 3 runs
 * (A and B interleaved; medians printed), 16 chunks per transaction, 50 lookups per insert,
 * A map size 8 x limit + 1 GiB. About 3 minutes on 2 cores / virtual disk; --scale 0.1 for a
 * quick check. Build: make build/bench/store_churn.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "../util/util.h"

#define CHUNK ((uint64_t)1 << 20)
#define NLAYERS 2000
#define MAX_SAMPLES 64
#define TOUCH_BATCH 64
#define MiB (1024.0 * 1024.0)

struct layer {
    uint8_t digest[32];
    char hex[65];
    uint64_t size;
    uint32_t nchunks;
    uint64_t *sums;    /* per-chunk checksums, computed with the content (harness truth) */
    int resident, pos; /* pos: index in the resident array */
    unsigned touch_gen;
};

static struct {
    const char *path;
    double scale, turnovers;
    uint64_t limit, mapsize;
    int runs, batch, lookups;
    uint64_t seed;
    char only;
} cfg = {"/tmp", 1.0, 6.0, 0, 0, 3, 16, 50, 42, 0};

static struct layer pop[NLAYERS];

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "store_churn: " __VA_ARGS__);                                              \
        fputc('\n', stderr);                                                                       \
        exit(1);                                                                                   \
    } while (0)
#define MDB(call)                                                                                  \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_)                                                                                   \
            DIE("%s:%d %s: %s", __FILE__, __LINE__, #call, mdb_strerror(rc_));                     \
    } while (0)
#define SYS(call)                                                                                  \
    do {                                                                                           \
        if ((call) < 0)                                                                            \
            DIE("%s:%d %s: %s", __FILE__, __LINE__, #call, strerror(errno));                       \
    } while (0)

/* ---- PRNG, content, checksum ------------------------------------------------------------- */
static uint64_t rnd_below(uint64_t *s, uint64_t n)
{
    return rng_next64(s) % n;
}
static inline uint64_t rotl(uint64_t x, int r)
{
    return x << r | x >> (64 - r);
}

/* Touches every byte; four independent lanes so it runs near memory speed. */
static uint64_t csum(const uint8_t *p, size_t n)
{
    const uint64_t K = 0x9fb21c651e98df25ULL;
    uint64_t a = 1, b = 2, c = 3, d = 4, w[4];
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        memcpy(w, p + i, 32);
        a = rotl(a + w[0] * K, 31), b = rotl(b + w[1] * K, 31);
        c = rotl(c + w[2] * K, 31), d = rotl(d + w[3] * K, 31);
    }
    uint8_t tail[32] = {0};
    memcpy(tail, p + i, n - i);
    memcpy(w, tail, 32);
    a = rotl(a + w[0] * K, 31), b = rotl(b + w[1] * K, 31);
    c = rotl(c + w[2] * K, 31), d = rotl(d + w[3] * K, 31);
    uint64_t h = a ^ rotl(b, 17) ^ rotl(c, 29) ^ rotl(d, 43) ^ n;
    return rng_next64(&h);
}

static size_t chunk_len(const struct layer *l, uint32_t i)
{
    return i + 1 < l->nchunks ? CHUNK : (size_t)(l->size - (uint64_t)i * CHUNK);
}

/* Fills out with the layer's content (deterministic per layer and chunk). */
static void gen_layer(struct layer *l, uint8_t *out)
{
    int fresh = !l->sums;
    if (fresh && !(l->sums = malloc(l->nchunks * sizeof *l->sums)))
        DIE("out of memory");
    for (uint32_t i = 0; i < l->nchunks; i++) {
        uint8_t *p = out + (uint64_t)i * CHUNK;
        size_t n = chunk_len(l, i);
        uint64_t s = get_le64(l->digest) ^ ((uint64_t)i << 40);
        rng_fill(&s, p, n);
        uint64_t sum = csum(p, n);
        if (fresh)
            l->sums[i] = sum;
        else if (l->sums[i] != sum)
            DIE("generator is not deterministic");
    }
}

/* ---- the store ---------------------------------------------------------------------------- */
struct store {
    char kind;
    char dir[600];
    MDB_env *env;
    MDB_dbi layers, lru, chunks;
    MDB_txn *rtxn;
    int blobs_fd;
    uint64_t clock; /* logical access time: identical workloads for A and B */
    uint8_t *rbuf;
};

#define REC_HDR 24 /* le64 size, le32 nchunks, le32 0, le64 atime, [B: bitmap] */

static void chunk_key(uint8_t k[36], const uint8_t digest[32], uint32_t i)
{
    memcpy(k, digest, 32);
    k[32] = (uint8_t)(i >> 24), k[33] = (uint8_t)(i >> 16), k[34] = (uint8_t)(i >> 8),
    k[35] = (uint8_t)i;
}
static void lru_key(uint8_t k[40], uint64_t atime, const uint8_t digest[32])
{
    put_be64(k, atime);
    memcpy(k + 8, digest, 32);
}

static void store_open(struct store *s, char kind, const char *dir)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->blobs_fd = -1;
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    char p[700];
    snprintf(p, sizeof p, "%s/store", dir);
    SYS(mkdir(p, 0755));
    MDB(mdb_env_create(&s->env));
    MDB(mdb_env_set_maxdbs(s->env, 4));
    MDB(mdb_env_set_mapsize(s->env, kind == 'A' ? cfg.mapsize : ((size_t)1 << 30)));
    MDB(mdb_env_open(s->env, p, 0, 0644));
    MDB_txn *t;
    MDB(mdb_txn_begin(s->env, NULL, 0, &t));
    MDB(mdb_dbi_open(t, "layers", MDB_CREATE, &s->layers));
    MDB(mdb_dbi_open(t, "lru", MDB_CREATE, &s->lru));
    if (kind == 'A')
        MDB(mdb_dbi_open(t, "chunks", MDB_CREATE, &s->chunks));
    MDB(mdb_txn_commit(t));
    MDB(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn));
    mdb_txn_reset(s->rtxn);
    if (kind == 'B') {
        snprintf(p, sizeof p, "%s/blobs", dir);
        SYS(mkdir(p, 0755));
        SYS(s->blobs_fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    }
    if (!(s->rbuf = malloc(CHUNK)))
        DIE("out of memory");
}

static void store_close(struct store *s)
{
    mdb_txn_abort(s->rtxn);
    mdb_env_close(s->env);
    if (s->blobs_fd >= 0)
        close(s->blobs_fd);
    free(s->rbuf);
}

static void store_insert(struct store *s, const struct layer *l, const uint8_t *data)
{
    uint64_t atime = ++s->clock;
    uint8_t lk[40], ck[36];
    lru_key(lk, atime, l->digest);
    size_t reclen = REC_HDR + (s->kind == 'B' ? (l->nchunks + 7) / 8 : 0);
    uint8_t *rec = calloc(1, reclen);
    if (!rec)
        DIE("out of memory");
    put_le64(rec, l->size);
    put_le32(rec + 8, l->nchunks);
    put_le64(rec + 16, atime);
    MDB_val k = {32, (void *)l->digest}, v = {reclen, rec};
    MDB_val kl = {40, lk}, vl = {0, (void *)""};
    int fd = -1;
    if (s->kind == 'B') {
        SYS(fd = openat(s->blobs_fd, l->hex, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644));
        SYS(ftruncate(fd, (off_t)l->size)); /* sparse: chunks land at their own offset */
        SYS(fsync(s->blobs_fd));            /* the name is durable before anything is present */
    }
    for (uint32_t i = 0; i < l->nchunks; i += (uint32_t)cfg.batch) {
        uint32_t end = MIN(l->nchunks, i + (uint32_t)cfg.batch);
        if (s->kind == 'B') {
            for (uint32_t j = i; j < end; j++) {
                size_t n = chunk_len(l, j), done = 0;
                while (done < n) {
                    ssize_t w = pwrite(fd, data + (uint64_t)j * CHUNK + done, n - done,
                                       (off_t)((uint64_t)j * CHUNK + done));
                    if (w < 0 && errno == EINTR)
                        continue;
                    SYS(w);
                    done += (size_t)w;
                }
                rec[REC_HDR + j / 8] |= (uint8_t)(1u << (j % 8));
            }
            SYS(fdatasync(fd));
        }
        MDB_txn *t;
        MDB(mdb_txn_begin(s->env, NULL, 0, &t));
        if (s->kind == 'A')
            for (uint32_t j = i; j < end; j++) {
                chunk_key(ck, l->digest, j);
                MDB_val kc = {36, ck}, vc = {chunk_len(l, j), (void *)(data + (uint64_t)j * CHUNK)};
                MDB(mdb_put(t, s->chunks, &kc, &vc, 0));
            }
        if (s->kind == 'B' || i == 0)
            MDB(mdb_put(t, s->layers, &k, &v, 0));
        if (i == 0)
            MDB(mdb_put(t, s->lru, &kl, &vl, 0));
        MDB(mdb_txn_commit(t));
    }
    if (fd >= 0)
        close(fd);
    free(rec);
}

/* Evicts the least-recently-used layer; returns its size and writes its digest. */
static uint64_t store_evict_lru(struct store *s, uint8_t digest[32])
{
    MDB_txn *t;
    MDB_cursor *c;
    MDB_val k, v;
    MDB(mdb_txn_begin(s->env, NULL, 0, &t));
    MDB(mdb_cursor_open(t, s->lru, &c));
    MDB(mdb_cursor_get(c, &k, &v, MDB_FIRST));
    memcpy(digest, (uint8_t *)k.mv_data + 8, 32);
    MDB_val kd = {32, digest};
    MDB(mdb_get(t, s->layers, &kd, &v));
    uint64_t size = get_le64(v.mv_data);
    uint32_t n = get_le32((uint8_t *)v.mv_data + 8);
    if (s->kind == 'A') {
        uint8_t ck[36];
        for (uint32_t i = 0; i < n; i++) {
            chunk_key(ck, digest, i);
            MDB_val kc = {36, ck};
            int rc = mdb_del(t, s->chunks, &kc, NULL);
            if (rc && rc != MDB_NOTFOUND)
                MDB(rc);
        }
    }
    MDB(mdb_del(t, s->layers, &kd, NULL));
    MDB(mdb_cursor_del(c, 0));
    mdb_cursor_close(c);
    MDB(mdb_txn_commit(t));
    if (s->kind == 'B') {
        char hex[65];
        hex_fmt(digest, 32, hex);
        SYS(unlinkat(s->blobs_fd, hex, 0));
    }
    return size;
}

/* Reads chunk i and returns its checksum. */
static uint64_t store_read_chunk(struct store *s, const struct layer *l, uint32_t i)
{
    uint64_t sum;
    MDB_val k, v;
    MDB(mdb_txn_renew(s->rtxn));
    if (s->kind == 'A') {
        uint8_t ck[36];
        chunk_key(ck, l->digest, i);
        k = (MDB_val){36, ck};
        MDB(mdb_get(s->rtxn, s->chunks, &k, &v)); /* zero-copy: v points into the map */
        if (v.mv_size != chunk_len(l, i))
            DIE("A: chunk %u of %s has %zu bytes", i, l->hex, v.mv_size);
        sum = csum(v.mv_data, v.mv_size);
        mdb_txn_reset(s->rtxn);
    } else {
        k = (MDB_val){32, (void *)l->digest};
        MDB(mdb_get(s->rtxn, s->layers, &k, &v));
        const uint8_t *bm = (const uint8_t *)v.mv_data + REC_HDR;
        if (!(bm[i / 8] & (1u << (i % 8))))
            DIE("B: chunk %u of %s not present", i, l->hex);
        mdb_txn_reset(s->rtxn);
        int fd;
        SYS(fd = openat(s->blobs_fd, l->hex, O_RDONLY | O_CLOEXEC));
        size_t n = chunk_len(l, i);
        ssize_t r = pread(fd, s->rbuf, n, (off_t)((uint64_t)i * CHUNK));
        if (r != (ssize_t)n)
            DIE("B: short read of chunk %u of %s", i, l->hex);
        close(fd);
        sum = csum(s->rbuf, n);
    }
    return sum;
}

/* Moves each touched layer to the MRU end of the LRU table, in one durable write txn. */
static void store_touch(struct store *s, struct layer **ls, int n)
{
    static unsigned gen;
    gen++;
    MDB_txn *t;
    MDB(mdb_txn_begin(s->env, NULL, 0, &t));
    for (int i = 0; i < n; i++) {
        struct layer *l = ls[i];
        if (l->touch_gen == gen)
            continue;
        l->touch_gen = gen;
        MDB_val k = {32, l->digest}, v;
        MDB(mdb_get(t, s->layers, &k, &v));
        uint8_t rec[REC_HDR + 64], lk[40];
        size_t len = v.mv_size;
        if (len > sizeof rec)
            DIE("record too large");
        memcpy(rec, v.mv_data, len);
        lru_key(lk, get_le64(rec + 16), l->digest);
        MDB_val kl = {40, lk}, vl = {0, (void *)""};
        MDB(mdb_del(t, s->lru, &kl, NULL));
        uint64_t atime = ++s->clock;
        put_le64(rec + 16, atime);
        lru_key(lk, atime, l->digest);
        MDB_val vr = {len, rec};
        MDB(mdb_put(t, s->layers, &k, &vr, 0));
        MDB(mdb_put(t, s->lru, &kl, &vl, 0));
    }
    MDB(mdb_txn_commit(t));
}

/* ---- measurement -------------------------------------------------------------------------- */
struct sample {
    double turnover;
    uint64_t live, mdb_size, mdb_alloc, mdb_hw, mdb_free, blobs_alloc, blobs_size;
};

struct result {
    char kind;
    double wall_s, insert_mbs, evict_per_s, lookup_per_s, p50_us, p99_us;
    uint64_t inserts, evictions, lookups;
    int nsamples;
    struct sample samples[MAX_SAMPLES];
};

static struct sample take_sample(struct store *s, double turnover, uint64_t live)
{
    struct sample x = {.turnover = turnover, .live = live};
    char p[700];
    struct stat st;
    snprintf(p, sizeof p, "%s/store/data.mdb", s->dir);
    SYS(stat(p, &st));
    x.mdb_size = (uint64_t)st.st_size;
    x.mdb_alloc = (uint64_t)st.st_blocks * 512;
    MDB_envinfo ei;
    MDB_stat ms;
    MDB(mdb_env_info(s->env, &ei));
    MDB(mdb_env_stat(s->env, &ms));
    x.mdb_hw = ((uint64_t)ei.me_last_pgno + 1) * ms.ms_psize;
    /* free pages: walk the free DB (dbi 0), as mdb_stat -f does */
    MDB_txn *t;
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t freepg = 0;
    MDB(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t));
    MDB(mdb_cursor_open(t, 0, &c));
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        freepg += *(size_t *)v.mv_data;
    mdb_cursor_close(c);
    mdb_txn_abort(t);
    x.mdb_free = freepg * ms.ms_psize;
    if (s->blobs_fd >= 0) {
        int fd;
        SYS(fd = dup(s->blobs_fd));
        DIR *d = fdopendir(fd);
        if (!d)
            DIE("fdopendir: %s", strerror(errno));
        rewinddir(d);
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' && fstatat(s->blobs_fd, e->d_name, &st, 0) == 0) {
                x.blobs_alloc += (uint64_t)st.st_blocks * 512;
                x.blobs_size += (uint64_t)st.st_size;
            }
        closedir(d);
    }
    return x;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

/* ---- one run ------------------------------------------------------------------------------ */
static uint8_t *layer_buf;
static struct layer *resident[NLAYERS];
static int nresident;

static void set_resident(struct layer *l, int on)
{
    if (on) {
        l->resident = 1, l->pos = nresident;
        resident[nresident++] = l;
    } else {
        l->resident = 0;
        resident[l->pos] = resident[--nresident];
        resident[l->pos]->pos = l->pos;
    }
}

static void run_once(char kind, int run, struct result *r)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/store_churn.XXXXXX", cfg.path);
    if (!mkdtemp(dir))
        DIE("mkdtemp %s: %s", dir, strerror(errno));
    sync();
    struct store s;
    store_open(&s, kind, dir);
    memset(r, 0, sizeof *r);
    r->kind = kind;
    for (int i = 0; i < NLAYERS; i++)
        pop[i].resident = 0;
    nresident = 0;

    uint64_t rng = cfg.seed * 1000003 + (uint64_t)run; /* same workload for A and B */
    uint64_t live = 0, inserted = 0, ins_ns = 0, ins_bytes = 0, ev_ns = 0;
    uint64_t lk_ns = 0, maxlk = 0;
    uint64_t *lat = NULL;
    struct layer *pend[TOUCH_BATCH];
    int npend = 0;
    uint64_t churn_target = (uint64_t)(cfg.turnovers * (double)cfg.limit);
    uint64_t t0 = time_mono_ns();

    for (int phase = 1; phase <= 2; phase++) {
        uint64_t churned = 0, next_mark = cfg.limit;
        for (;;) {
            struct layer *l;
            do
                l = &pop[rnd_below(&rng, NLAYERS)];
            while (l->resident || l->size > cfg.limit / 2);
            if (phase == 1 && live + l->size > cfg.limit)
                break;
            if (phase == 2 && churned >= churn_target)
                break;
            gen_layer(l, layer_buf); /* not timed */
            uint64_t a = time_mono_ns();
            if (npend) {
                store_touch(&s, pend, npend);
                npend = 0;
            }
            uint64_t b = time_mono_ns();
            lk_ns += b - a;
            while (live + l->size > cfg.limit) { /* reserve before the insert */
                uint8_t d[32];
                live -= store_evict_lru(&s, d);
                struct layer *victim = NULL;
                for (int i = 0; i < nresident && !victim; i++)
                    if (!memcmp(resident[i]->digest, d, 32))
                        victim = resident[i];
                if (!victim)
                    DIE("evicted an unknown layer");
                set_resident(victim, 0);
                r->evictions++;
            }
            uint64_t c = time_mono_ns();
            ev_ns += c - b;
            store_insert(&s, l, layer_buf);
            ins_ns += time_mono_ns() - c;
            ins_bytes += l->size;
            live += l->size;
            inserted += l->size;
            r->inserts++;
            set_resident(l, 1);
            if (phase == 2) {
                churned += l->size;
                for (int q = 0; q < cfg.lookups; q++) {
                    struct layer *x = resident[rnd_below(&rng, (uint64_t)nresident)];
                    uint32_t ci = (uint32_t)rnd_below(&rng, x->nchunks);
                    uint64_t u = time_mono_ns();
                    uint64_t sum = store_read_chunk(&s, x, ci);
                    uint64_t w = time_mono_ns();
                    if (sum != x->sums[ci])
                        DIE("%c: checksum mismatch, chunk %u of %s", kind, ci, x->hex);
                    if (r->lookups == maxlk) {
                        maxlk = maxlk ? 2 * maxlk : 4096;
                        if (!(lat = realloc(lat, maxlk * sizeof *lat)))
                            DIE("out of memory");
                    }
                    lat[r->lookups++] = w - u;
                    lk_ns += w - u;
                    pend[npend++] = x;
                    if (npend == TOUCH_BATCH) {
                        store_touch(&s, pend, npend);
                        npend = 0;
                        lk_ns += time_mono_ns() - w;
                    }
                }
                if (churned >= next_mark && r->nsamples < MAX_SAMPLES) {
                    r->samples[r->nsamples++] =
                        take_sample(&s, (double)inserted / (double)cfg.limit, live);
                    next_mark += cfg.limit;
                }
            }
        }
        if (phase == 1 && r->nsamples < MAX_SAMPLES)
            r->samples[r->nsamples++] = take_sample(&s, (double)inserted / (double)cfg.limit, live);
    }
    r->wall_s = (double)(time_mono_ns() - t0) / 1e9;
    r->insert_mbs = (double)ins_bytes / MiB / ((double)ins_ns / 1e9);
    r->evict_per_s = ev_ns ? (double)r->evictions / ((double)ev_ns / 1e9) : 0;
    r->lookup_per_s = lk_ns ? (double)r->lookups / ((double)lk_ns / 1e9) : 0;
    if (r->lookups) {
        qsort(lat, r->lookups, sizeof *lat, cmp_u64);
        r->p50_us = (double)lat[r->lookups / 2] / 1e3;
        r->p99_us = (double)lat[r->lookups * 99 / 100] / 1e3;
    }
    free(lat);
    store_close(&s);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- main --------------------------------------------------------------------------------- */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(void)
{
    fprintf(stderr, "usage: store_churn [--path DIR] [--scale F] [--limit BYTES] [--turnovers N] "
                    "[--runs N] [--batch N] [--lookups N] [--mapsize BYTES] [--only A|B] "
                    "[--seed N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"path", 1, 0, 'p'}, {"scale", 1, 0, 's'}, {"limit", 1, 0, 'l'},   {"turnovers", 1, 0, 't'},
        {"runs", 1, 0, 'r'}, {"batch", 1, 0, 'b'}, {"lookups", 1, 0, 'k'}, {"mapsize", 1, 0, 'm'},
        {"only", 1, 0, 'o'}, {"seed", 1, 0, 'S'},  {"help", 0, 0, 'h'},    {0, 0, 0, 0},
    };
    uint64_t base_limit = (uint64_t)2 << 30; /* 2 GiB */
    int c;
    while ((c = getopt_long(argc, argv, "p:s:l:t:r:b:k:m:o:S:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            cfg.path = optarg;
            break;
        case 's':
            cfg.scale = atof(optarg);
            break;
        case 'l':
            if (bytes_parse(optarg, &base_limit))
                usage();
            break;
        case 't':
            cfg.turnovers = atof(optarg);
            break;
        case 'r':
            cfg.runs = atoi(optarg);
            break;
        case 'b':
            cfg.batch = atoi(optarg);
            break;
        case 'k':
            cfg.lookups = atoi(optarg);
            break;
        case 'm':
            if (bytes_parse(optarg, &cfg.mapsize))
                usage();
            break;
        case 'o':
            cfg.only = optarg[0];
            break;
        case 'S':
            cfg.seed = strtoull(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    if (optind < argc)
        cfg.path = argv[optind++];
    if (cfg.scale <= 0 || cfg.runs < 1 || cfg.runs > 15 || cfg.batch < 1 || cfg.lookups < 0)
        usage();
    cfg.limit = (uint64_t)((double)base_limit * cfg.scale);
    if (cfg.limit < 64 * CHUNK)
        DIE("limit too small");
    if (!cfg.mapsize)
        cfg.mapsize = 8 * cfg.limit + ((uint64_t)1 << 30);

    struct statfs sf;
    SYS(statfs(cfg.path, &sf));
    if ((unsigned long)sf.f_type == 0x01021994UL)
        fprintf(stderr, "store_churn: warning: %s is tmpfs; results are meaningless\n", cfg.path);

    /* population: 5% tiny (1 KiB-512 KiB), 85% 1-20 MB, 10% 50-200 MB */
    uint64_t rng = cfg.seed, maxsize = 0, total = 0;
    for (int i = 0; i < NLAYERS; i++) {
        struct layer *l = &pop[i];
        uint8_t seed[16];
        put_le64(seed, cfg.seed), put_le64(seed + 8, (uint64_t)i);
        sha256_buf(seed, sizeof seed, l->digest);
        hex_fmt(l->digest, 32, l->hex);
        uint64_t r = rnd_below(&rng, 100);
        if (r < 5)
            l->size = 1024 + rnd_below(&rng, 511 * 1024);
        else if (r < 90)
            l->size = 1000000 + rnd_below(&rng, 19000000);
        else
            l->size = 50000000 + rnd_below(&rng, 150000000);
        l->nchunks = (uint32_t)((l->size + CHUNK - 1) / CHUNK);
        maxsize = MAX(maxsize, l->size);
        total += l->size;
    }
    if (!(layer_buf = malloc(maxsize + CHUNK)))
        DIE("out of memory");

    printf("store_churn: dir %s (fs magic 0x%lx), limit %.0f MiB, churn %.1f x limit, population "
           "%d layers (mean %.1f MB), chunk 1 MiB, batch %d chunks/txn, %d lookups/insert, "
           "A mapsize %.0f MiB, %d runs\n",
           cfg.path, (unsigned long)sf.f_type, (double)cfg.limit / MiB, cfg.turnovers, NLAYERS,
           (double)total / NLAYERS / 1e6, cfg.batch, cfg.lookups, (double)cfg.mapsize / MiB,
           cfg.runs);
    fflush(stdout);

    static struct result res[2][16];
    const char kinds[2] = {'A', 'B'};
    for (int run = 0; run < cfg.runs; run++)
        for (int ki = 0; ki < 2; ki++) {
            if (cfg.only && cfg.only != kinds[ki])
                continue;
            struct result *r = &res[ki][run];
            run_once(kinds[ki], run, r);
            const struct sample *last = &r->samples[r->nsamples - 1];
            printf("run %d %c: %.1f s, %" PRIu64 " inserts %.1f MiB/s, %" PRIu64
                   " evictions %.0f/s, %" PRIu64 " lookups %.0f/s p50 %.0f us p99 %.0f us, "
                   "end: live %.0f MiB, data.mdb %.0f MiB (free %.0f MiB), blobs %.0f MiB\n",
                   run + 1, kinds[ki], r->wall_s, r->inserts, r->insert_mbs, r->evictions,
                   r->evict_per_s, r->lookups, r->lookup_per_s, r->p50_us, r->p99_us,
                   (double)last->live / MiB, (double)last->mdb_alloc / MiB,
                   (double)last->mdb_free / MiB, (double)last->blobs_alloc / MiB);
            fflush(stdout);
        }

    printf("\nMedians of %d runs (limit %.0f MiB, %.1f turnovers of churn):\n\n", cfg.runs,
           (double)cfg.limit / MiB, cfg.turnovers);
    printf("| option | insert MiB/s | evictions/s | lookups/s | lookup p50 us | lookup p99 us | "
           "run s |\n|---|---|---|---|---|---|---|\n");
    for (int ki = 0; ki < 2; ki++) {
        if (cfg.only && cfg.only != kinds[ki])
            continue;
        double v[6][16];
        for (int run = 0; run < cfg.runs; run++) {
            struct result *r = &res[ki][run];
            v[0][run] = r->insert_mbs, v[1][run] = r->evict_per_s, v[2][run] = r->lookup_per_s;
            v[3][run] = r->p50_us, v[4][run] = r->p99_us, v[5][run] = r->wall_s;
        }
        printf("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f |\n",
               kinds[ki] == 'A' ? "A: LMDB values" : "B: blob files", median(v[0], cfg.runs),
               median(v[1], cfg.runs), median(v[2], cfg.runs), median(v[3], cfg.runs),
               median(v[4], cfg.runs), median(v[5], cfg.runs));
    }
    printf("\nOn-disk size at each turnover (medians; MiB; alloc = st_blocks*512):\n\n");
    printf("| option | turnover | live | data.mdb size | data.mdb alloc | mdb high-water | "
           "mdb free pages | blob files alloc | total alloc / live |\n"
           "|---|---|---|---|---|---|---|---|---|\n");
    for (int ki = 0; ki < 2; ki++) {
        if (cfg.only && cfg.only != kinds[ki])
            continue;
        int ns = MAX_SAMPLES;
        for (int run = 0; run < cfg.runs; run++)
            ns = MIN(ns, res[ki][run].nsamples);
        for (int si = 0; si < ns; si++) {
            double v[8][16];
            for (int run = 0; run < cfg.runs; run++) {
                const struct sample *x = &res[ki][run].samples[si];
                v[0][run] = x->turnover, v[1][run] = (double)x->live / MiB;
                v[2][run] = (double)x->mdb_size / MiB, v[3][run] = (double)x->mdb_alloc / MiB;
                v[4][run] = (double)x->mdb_hw / MiB, v[5][run] = (double)x->mdb_free / MiB;
                v[6][run] = (double)x->blobs_alloc / MiB;
                v[7][run] = (double)(x->mdb_alloc + x->blobs_alloc) / (double)x->live;
            }
            printf("| %c | %.2f | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f | %.3f |\n", kinds[ki],
                   median(v[0], cfg.runs), median(v[1], cfg.runs), median(v[2], cfg.runs),
                   median(v[3], cfg.runs), median(v[4], cfg.runs), median(v[5], cfg.runs),
                   median(v[6], cfg.runs), median(v[7], cfg.runs));
        }
    }
    for (int i = 0; i < NLAYERS; i++)
        free(pop[i].sums);
    free(layer_buf);
    return 0;
}
