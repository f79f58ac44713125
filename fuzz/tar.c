/*
 * fuzz/tar.c - libFuzzer target for the streaming tar parser, which reads layers straight from
 * registries. The input is pushed in two pieces split where the first byte says, then finished;
 * every entry must keep the header's promises (bounded, normalised paths; size 0 unless regular;
 * data inside what was pushed). Then it is parsed again in small pieces, which must report the
 * same entries and the same result. When the first byte is odd, the checksum of every block is
 * fixed first, so that mutations get past it to the fields behind.
 */
#include "../store/layer/layer.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
    uint64_t hash; /* FNV-1a over every reported field */
    size_t n;
    size_t pushed; /* bytes pushed so far, including the current push */
};

static void mix(struct run *r, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        r->hash = (r->hash ^ b[i]) * 0x100000001b3ull;
}

static int on_entry(void *arg, const struct tar_entry *e)
{
    struct run *r = arg;
    size_t pl = strnlen(e->path, TAR_PATH_MAX + 1), ll = strnlen(e->link, TAR_PATH_MAX + 1);

    if (pl > TAR_PATH_MAX || ll > TAR_PATH_MAX)
        abort();
    if (e->path[0] == '/' || !strncmp(e->path, "./", 2) || !strcmp(e->path, ".") ||
        (pl > 0 && e->path[pl - 1] == '/'))
        abort(); /* not normalised */
    if (e->type != TAR_HARDLINK && e->type != TAR_SYMLINK && ll != 0)
        abort();
    if (e->type != TAR_REG && e->size != 0)
        abort();
    if (e->type != TAR_REG && e->type != TAR_HARDLINK && e->type != TAR_SYMLINK &&
        e->type != TAR_CHR && e->type != TAR_BLK && e->type != TAR_DIR && e->type != TAR_FIFO)
        abort();
    if (e->mode & ~07777u || e->mtime_nsec >= 1000000000u)
        abort();
    if (e->data_off % 512 || e->data_off < 512 || e->data_off > r->pushed)
        abort();
    if (e->nxattrs > TAR_XATTR_MAX || (e->nxattrs && !e->xattrs))
        abort();

    mix(r, e->path, pl + 1);
    mix(r, e->link, ll + 1);
    uint64_t f[] = {(uint64_t)e->type, e->mode, e->uid,      e->gid,      (uint64_t)e->mtime_sec,
                    e->mtime_nsec,     e->size, e->data_off, e->devmajor, e->devminor,
                    e->nxattrs};
    mix(r, f, sizeof f);
    for (size_t i = 0; i < e->nxattrs; i++) {
        size_t nl = strlen(e->xattrs[i].name);
        if (nl == 0 || nl > 255)
            abort();
        for (size_t j = 0; j < i; j++)
            if (!strcmp(e->xattrs[i].name, e->xattrs[j].name))
                abort(); /* one value per name */
        mix(r, e->xattrs[i].name, nl + 1);
        mix(r, &e->xattrs[i].len, sizeof e->xattrs[i].len);
        mix(r, e->xattrs[i].value, e->xattrs[i].len);
    }
    r->n++;
    return 0;
}

static int push(struct tar_parser *p, struct run *r, const uint8_t *d, size_t n)
{
    r->pushed += n;
    return tar_parser_push(p, d, n);
}

/* Writes the unsigned checksum into every 512-byte block of d. */
static void fix_checksums(uint8_t *d, size_t size)
{
    for (size_t off = 0; off + 512 <= size; off += 512) {
        uint8_t *h = d + off;
        unsigned sum = 0;
        memset(h + 148, ' ', 8);
        for (size_t i = 0; i < 512; i++)
            sum += h[i];
        for (int i = 6; i >= 0; i--, sum >>= 3)
            h[148 + i] = (uint8_t)('0' + (sum & 7));
        h[155] = '\0';
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run a = {0xcbf29ce484222325ull, 0, 0}, b = a;
    struct tar_parser *p;
    uint8_t *copy = NULL;
    int rc, rc2;

    if (size == 0)
        return 0;
    if (data[0] & 1) {
        if (!(copy = malloc(size)))
            return 0;
        memcpy(copy, data, size);
        fix_checksums(copy, size);
        data = copy;
    }
    size_t split = (size_t)((uint64_t)data[0] * size / 256);

    if (tar_parser_new(&p, on_entry, &a))
        goto out;
    rc = push(p, &a, data, split);
    if (!rc)
        rc = push(p, &a, data + split, size - split);
    if (!rc)
        rc = tar_parser_finish(p);
    if (rc && (tar_parser_push(p, data, size) != rc || tar_parser_finish(p) != rc))
        abort(); /* errors stick */
    tar_parser_free(p);

    /* again in pieces of 1 to 8 bytes (the sizes from the data) */
    if (tar_parser_new(&p, on_entry, &b))
        goto out;
    rc2 = 0;
    for (size_t off = 0, i = 0; off < size && !rc2; i++) {
        size_t k = MIN((size_t)(data[i % size] & 7) + 1, size - off);
        rc2 = push(p, &b, data + off, k);
        off += k;
    }
    if (!rc2)
        rc2 = tar_parser_finish(p);
    tar_parser_free(p);
    if (rc != rc2 || a.n != b.n || a.hash != b.hash)
        abort();
out:
    free(copy);
    return 0;
}
