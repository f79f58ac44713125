/*
 * forge.c - a member that lies, for tests (tests/integration/68-node-forged-index.sh): changes a
 * byte of a file in a plain-tar layer's blob in a store, and the chaining value of the chunk
 * that holds it in the layer's stored index, so that the forged chunk checks out against the
 * forged index while the chain no longer ends in the layer digest past it. A node on that store
 * then serves the forged index and chunk as its own. The store must not be in use.
 *
 *   afsp-forge DATA sha256:LAYER PATH OFFSET
 *
 * (PATH: the file in the layer, OFFSET: the byte of it to change; its chunk must not be the
 * layer's last.)
 *
 *   afsp-forge trace DATA sha256:MANIFEST LAYER:CHUNK...
 *
 * keeps a start trace for the image in the store with exactly these entries, unchecked (a
 * layer or chunk the image lacks, a chunk twice, ...), over any it had: the node on that store
 * then provides it and serves it (tests/integration/74-prefetch.sh).
 */
#include "../../store/db.h"
#include "../../store/layer/layer.h"
#include "../../store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct put {
    struct db *db;
    const uint8_t *digest;
    const struct buf *ix;
};

static int put_index(MDB_txn *txn, void *arg)
{
    struct put *p = arg;
    return db_put(txn, p->db->dbi[DB_INDEX], p->digest, DIGEST_LEN, p->ix->p, p->ix->len);
}

static int put_trace(MDB_txn *txn, void *arg)
{
    struct put *p = arg;
    return db_put(txn, p->db->dbi[DB_TRACES], p->digest, DIGEST_LEN, p->ix->p, p->ix->len);
}

static int forge_trace(int argc, char **argv)
{
    uint8_t manifest[DIGEST_LEN], key[DIGEST_LEN];
    size_t n = (size_t)argc - 4;
    struct store_trace_ent *e = calloc(n ? n : 1, sizeof *e);
    if (!e || digest_parse(argv[3], manifest) < 0) {
        fprintf(stderr, "afsp-forge: bad digest %s\n", argv[3]);
        return 2;
    }
    for (size_t i = 0; i < n; i++)
        if (sscanf(argv[4 + i], "%u:%u", &e[i].layer, &e[i].chunk) != 2) {
            fprintf(stderr, "afsp-forge: bad entry %s (LAYER:CHUNK)\n", argv[4 + i]);
            return 2;
        }
    struct db db;
    struct buf b = {0};
    char dbdir[PATH_MAX];
    snprintf(dbdir, sizeof dbdir, "%s/store", argv[2]);
    store_trace_key(manifest, key);
    struct put p = {&db, key, &b};
    int rc = store_trace_encode(manifest, e, n, &b);
    if (rc == 0 && (rc = db_open(&db, dbdir, 0)) == 0) {
        rc = db_write(&db, put_trace, &p);
        db_close(&db);
    }
    if (rc < 0) {
        fprintf(stderr, "afsp-forge: cannot keep the trace: %s\n", err_msg(rc));
        return 1;
    }
    printf("forged a start trace of %zu entries\n", n);
    buf_release(&b);
    free(e);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "trace"))
        return forge_trace(argc, argv);
    if (argc != 5) {
        fprintf(stderr, "usage: afsp-forge DATA sha256:LAYER PATH OFFSET\n"
                        "       afsp-forge trace DATA sha256:MANIFEST LAYER:CHUNK...\n");
        return 2;
    }
    const char *dir = argv[1], *want = argv[3];
    uint8_t digest[DIGEST_LEN];
    uint64_t at = strtoull(argv[4], NULL, 10);
    while (*want == '/' || (want[0] == '.' && want[1] == '/'))
        want += *want == '/' ? 1 : 2;
    if (digest_parse(argv[2], digest) < 0) {
        fprintf(stderr, "afsp-forge: bad digest %s\n", argv[2]);
        return 2;
    }
    struct db db;
    MDB_txn *txn;
    MDB_val v;
    struct layer_index ix;
    char dbdir[PATH_MAX];
    snprintf(dbdir, sizeof dbdir, "%s/store", dir);
    int rc = db_open(&db, dbdir, 0);
    if (rc == 0 && (rc = db_read_begin(&db, &txn)) == 0) {
        if ((rc = db_get(txn, db.dbi[DB_INDEX], digest, DIGEST_LEN, &v)) == 0)
            rc = index_parse(v.mv_data, v.mv_size, &ix);
        mdb_txn_abort(txn);
    }
    if (rc < 0) {
        fprintf(stderr, "afsp-forge: cannot read the index: %s\n", err_msg(rc));
        return 1;
    }
    if (ix.format != LAYER_TAR) {
        fprintf(stderr, "afsp-forge: only a plain tar layer\n");
        return 1;
    }
    const struct index_file *f = NULL;
    for (uint32_t i = 0; i < ix.nfiles && !f; i++) {
        const char *p = (const char *)ix.strtab.p + ix.files[i].path_off;
        while (*p == '/' || (p[0] == '.' && p[1] == '/'))
            p += *p == '/' ? 1 : 2;
        if (!strcmp(p, want))
            f = &ix.files[i];
    }
    if (!f || at >= f->size) {
        fprintf(stderr, "afsp-forge: no byte %llu of %s in the layer\n", (unsigned long long)at,
                want);
        return 1;
    }
    uint64_t off = f->data_off + at;
    uint32_t c = index_chunk_at(&ix, off);
    if (c + 1 >= ix.nchunks) {
        fprintf(stderr, "afsp-forge: the byte is in the last chunk\n");
        return 1;
    }
    char path[PATH_MAX], hex[65];
    snprintf(path, sizeof path, "%s/blobs/sha256/%s", dir, hex_fmt(digest, DIGEST_LEN, hex));
    int fd = open(path, O_RDWR);
    uint32_t len = ix.chunks[c].len;
    uint8_t *b = malloc(len);
    if (fd < 0 || !b || pread(fd, b, len, (off_t)ix.chunks[c].off) != (ssize_t)len) {
        fprintf(stderr, "afsp-forge: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    b[off - ix.chunks[c].off] ^= 0x5a;
    if (pwrite(fd, b + (off - ix.chunks[c].off), 1, (off_t)off) != 1 || fsync(fd) < 0) {
        fprintf(stderr, "afsp-forge: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    close(fd);
    struct sha256c h;
    sha256c_start(&h, c ? ix.chunks[c - 1].h : NULL, ix.chunks[c].off);
    sha256c_update(&h, b, len);
    sha256c_cv(&h, ix.chunks[c].h);
    free(b);
    struct buf out = {0};
    struct put p = {&db, digest, &out};
    if ((rc = index_serialize(&ix, &out)) < 0 || (rc = db_write(&db, put_index, &p)) < 0) {
        fprintf(stderr, "afsp-forge: cannot store the forged index: %s\n", err_msg(rc));
        return 1;
    }
    printf("forged byte %llu of %s (blob byte %llu, chunk %u of %u)\n", (unsigned long long)at,
           want, (unsigned long long)off, c, ix.nchunks);
    buf_release(&out);
    index_release(&ix);
    db_close(&db);
    return 0;
}
