/*
 * stores.c - the store tests' shared helpers (stores.h).
 */
#include "stores.h"

#include "../../store/ingest.h"
#include "../../store/layer/layer.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct store *open_at(const char *sub, uint64_t limit)
{
    char dir[PATH_MAX];
    struct store *s;
    snprintf(dir, sizeof dir, "%s/%s", test_tmpdir(), sub);
    mkdir(dir, 0700);
    struct store_opts o = {.dir = dir, .cache_max_bytes = limit};
    int rc = store_open(&s, &o);
    if (rc < 0)
        test_fail(__FILE__, __LINE__, "store_open: %s", err_msg(rc));
    return s;
}

uint8_t *layer_bytes(int seed, size_t size)
{
    uint8_t *data = malloc(size ? size : 1);
    CHECK(data);
    for (size_t i = 0; i < size; i++)
        data[i] = (uint8_t)(seed * 31 + i * 7);
    return data;
}

int put_layer(struct store *s, uint64_t resv, int seed, size_t size, uint8_t d[DIGEST_LEN])
{
    char tmp[PATH_MAX];
    uint8_t *data = layer_bytes(seed, size);
    sha256_buf(data, size, d);
    int fd = store_tmp_create(s, d, tmp);
    CHECK(fd >= 0);
    CHECK(write(fd, data, size) == (ssize_t)size);
    struct layer_index ix = {0};
    ix.format = LAYER_TAR;
    ix.blob_size = ix.tar_size = size;
    ix.cps = calloc(1, sizeof *ix.cps);
    ix.ncps = 1;
    CHECK(index_make_chunks(&ix, fd) == 0);
    struct buf b = {0};
    CHECK(index_serialize(&ix, &b) == 0);
    int rc =
        store_layer_commit(s, resv, 0, d, "application/vnd.oci.image.layer.v1.tar", &ix, &b, tmp);
    close(fd);
    index_release(&ix);
    buf_release(&b);
    free(data);
    return rc;
}

int has_layer(struct store *s, const uint8_t d[DIGEST_LEN])
{
    struct layer_rec r;
    return store_layer_get(s, d, &r) == 0;
}
