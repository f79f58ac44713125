/*
 * downloads.c - the layer downloads under way in this process, readable as they come: a node
 * relays a registry download it runs to the peers that wait for the same layer (docs/swarm.md,
 * "Relaying a download"), so that they need not wait for its end. The streaming pass
 * (ingest.c) registers its temporary file when it starts, publishes how many bytes are in it
 * after each write, and says how it ended; readers open a download by digest and read the bytes
 * written so far. Nothing read here is checked: a reader feeds them to its own streaming pass,
 * which checks the whole against the layer digest as a registry's bytes are.
 *
 * Owns: the list of downloads and a descriptor of each temporary file (kept open while a reader
 * holds it, so that a commit's rename or a failure's unlink does not pull it away). Must not:
 * touch LMDB.
 */
#include "store_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct store_dl {
    struct store *s;
    uint8_t digest[DIGEST_LEN];
    uint64_t size;
    int fd;
    _Atomic uint64_t written;
    _Atomic int end; /* 0: running, 1: committed, < 0: failed */
    unsigned refs;   /* under s->dl_mu: the writer's and each reader's */
    bool listed;
    struct store_dl *next;
};

int store_dl_begin(struct store *s, const uint8_t digest[static DIGEST_LEN], uint64_t size,
                   const char *path, struct store_dl **out)
{
    struct store_dl *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    if ((d->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        free(d);
        return -errno;
    }
    d->s = s;
    memcpy(d->digest, digest, DIGEST_LEN);
    d->size = size;
    d->refs = 1;
    d->listed = true;
    pthread_mutex_lock(&s->dl_mu);
    d->next = s->dls;
    s->dls = d;
    pthread_mutex_unlock(&s->dl_mu);
    *out = d;
    return 0;
}

void store_dl_progress(struct store_dl *d, uint64_t written)
{
    if (d)
        atomic_store(&d->written, written);
}

static void unlist(struct store_dl *d)
{
    for (struct store_dl **pp = &d->s->dls; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    d->listed = false;
}

void store_dl_close(struct store_dl *d)
{
    if (!d)
        return;
    struct store *s = d->s;
    pthread_mutex_lock(&s->dl_mu);
    bool last = --d->refs == 0;
    if (last && d->listed)
        unlist(d);
    pthread_mutex_unlock(&s->dl_mu);
    if (last) {
        close(d->fd);
        free(d);
    }
}

void store_dl_end(struct store_dl *d, int rc)
{
    if (!d)
        return;
    atomic_store(&d->end, rc < 0 ? rc : 1);
    pthread_mutex_lock(&d->s->dl_mu);
    unlist(d); /* later readers find the layer in the store, or nothing */
    pthread_mutex_unlock(&d->s->dl_mu);
    store_dl_close(d);
}

int store_dl_open(struct store *s, const uint8_t digest[static DIGEST_LEN], struct store_dl **out)
{
    pthread_mutex_lock(&s->dl_mu);
    struct store_dl *d = s->dls;
    while (d && memcmp(d->digest, digest, DIGEST_LEN))
        d = d->next;
    if (d)
        d->refs++;
    pthread_mutex_unlock(&s->dl_mu);
    *out = d;
    return d ? 0 : AFSP_E_NOTFOUND;
}

int store_dl_state(const struct store_dl *d, uint64_t *written, uint64_t *size)
{
    int end = atomic_load(&d->end); /* before written: a download that ended had written all */
    *written = atomic_load(&d->written);
    *size = d->size;
    return end;
}

int store_dl_read(const struct store_dl *d, uint64_t off, void *buf, size_t n)
{
    if (off > atomic_load(&d->written) || n > atomic_load(&d->written) - off)
        return AFSP_E_USAGE; /* not written yet */
    while (n) {
        ssize_t k = pread(d->fd, buf, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : AFSP_E_TRUNCATED;
        buf = (uint8_t *)buf + k;
        off += (uint64_t)k;
        n -= (size_t)k;
    }
    return 0;
}
