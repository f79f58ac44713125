/*
 * idvec.c - a vector of fixed-size elements kept sorted by the 32-byte key each starts with:
 * binary search to find, memmove to insert and remove. The provider records, the keys this node
 * announces, the per-peer counts and rates. Sorted rather than hashed: no hash a peer could aim
 * keys at, a deterministic order, and keys in one region lie together.
 *
 * Owns: its array. Must not: keep pointers across an insert.
 */
#include "dht_int.h"

void *idvec_find(const struct idvec *iv, const uint8_t key[static DHT_ID_LEN], size_t *pos)
{
    size_t lo = 0, hi = iv->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(idvec_at(iv, mid), key, DHT_ID_LEN);
        if (c == 0) {
            if (pos)
                *pos = mid;
            return idvec_at(iv, mid);
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos)
        *pos = lo;
    return NULL;
}

void *idvec_insert(struct idvec *iv, size_t pos, const uint8_t key[static DHT_ID_LEN])
{
    if (iv->n == iv->cap) {
        uint8_t *v = array_grow(iv->v, &iv->cap, iv->esz, 16);
        if (!v)
            return NULL;
        iv->v = v;
    }
    uint8_t *e = idvec_at(iv, pos);
    memmove(e + iv->esz, e, (iv->n - pos) * iv->esz);
    memset(e, 0, iv->esz);
    memcpy(e, key, DHT_ID_LEN);
    iv->n++;
    return e;
}

void idvec_remove(struct idvec *iv, size_t pos)
{
    uint8_t *e = idvec_at(iv, pos);
    memmove(e, e + iv->esz, (iv->n - pos - 1) * iv->esz);
    iv->n--;
    if (iv->cap > 64 && iv->n < iv->cap / 4) { /* give memory back after a purge */
        uint8_t *v = realloc(iv->v, iv->cap / 2 * iv->esz);
        if (v) {
            iv->v = v;
            iv->cap /= 2;
        }
    }
}

void idvec_release(struct idvec *iv)
{
    free(iv->v);
    iv->v = NULL;
    iv->n = iv->cap = 0;
}
