/*
 * test_trace.c - start traces (store/trace.c): the encoding round trip, the bounds a peer's trace
 * is held to (size, count, a chunk named twice), whether it fits its image, and a trace kept
 * once (the first stays).
 */
#include "stores.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t M[DIGEST_LEN] = {1, 2, 3};

TEST(trace_roundtrip_and_bounds)
{
    struct store_trace_ent e[3] = {{0, 7}, {0, 8}, {1, 2}}, *d;
    struct buf b = {0};
    uint8_t m[DIGEST_LEN];
    size_t n;
    CHECK_INT(store_trace_encode(M, e, 3, &b), ==, 0);
    CHECK_INT(store_trace_decode(b.p, b.len, m, &d, &n), ==, 0);
    CHECK_INT(n, ==, 3);
    CHECK(!memcmp(m, M, DIGEST_LEN) && !memcmp(d, e, sizeof e));
    free(d);
    CHECK_INT(store_trace_decode(b.p, b.len - 1, m, &d, &n), ==, AFSP_E_FORMAT);
    b.p[0] ^= 1;
    CHECK_INT(store_trace_decode(b.p, b.len, m, &d, &n), ==, AFSP_E_FORMAT);
    b.p[0] ^= 1;
    put_le32(b.p + 8 + DIGEST_LEN, STORE_TRACE_MAX + 1); /* a count past the bound */
    CHECK_INT(store_trace_decode(b.p, b.len, m, &d, &n), ==, AFSP_E_FORMAT);
    buf_release(&b);
    e[2] = e[0]; /* a chunk twice: refused, so a trace never asks more than the layers */
    CHECK_INT(store_trace_encode(M, e, 3, &b), ==, 0);
    CHECK_INT(store_trace_decode(b.p, b.len, m, &d, &n), ==, AFSP_E_FORMAT);
    buf_release(&b);
}

TEST(trace_fits_its_image_and_the_first_is_kept)
{
    struct store *s = open_at("st", 1 << 30);
    uint8_t l[2][DIGEST_LEN], key[DIGEST_LEN];
    CHECK_INT(put_layer(s, 0, 1, 4096, l[0]), ==, 0);
    CHECK_INT(put_layer(s, 0, 2, 4096, l[1]), ==, 0);
    struct store_trace_ent ok[2] = {{1, 0}, {0, 0}}, far[1] = {{0, 1}}, nolayer[1] = {{2, 0}};
    struct buf b = {0}, c = {0}, got = {0};
    CHECK_INT(store_trace_encode(M, ok, 2, &b), ==, 0);
    CHECK_INT(store_trace_fits(s, b.p, b.len, M, (const uint8_t(*)[DIGEST_LEN])l, 2), ==, 0);
    uint8_t other[DIGEST_LEN] = {9};
    CHECK_INT(store_trace_fits(s, b.p, b.len, other, (const uint8_t(*)[DIGEST_LEN])l, 2), ==,
              AFSP_E_FORMAT);
    CHECK_INT(store_trace_encode(M, far, 1, &c), ==, 0); /* a 4 KiB layer has one chunk */
    CHECK_INT(store_trace_fits(s, c.p, c.len, M, (const uint8_t(*)[DIGEST_LEN])l, 2), ==,
              AFSP_E_FORMAT);
    buf_release(&c);
    CHECK_INT(store_trace_encode(M, nolayer, 1, &c), ==, 0);
    CHECK_INT(store_trace_fits(s, c.p, c.len, M, (const uint8_t(*)[DIGEST_LEN])l, 2), ==,
              AFSP_E_FORMAT);
    store_trace_key(M, key);
    CHECK_INT(store_trace_get(s, key, &got), ==, AFSP_E_NOTFOUND);
    CHECK_INT(store_trace_put(s, b.p, b.len), ==, 0);
    CHECK_INT(store_trace_put(s, c.p, c.len), ==, 1); /* one is kept: it stays */
    CHECK_INT(store_trace_get(s, key, &got), ==, 0);
    CHECK(got.len == b.len && !memcmp(got.p, b.p, b.len));
    uint8_t(*keys)[DIGEST_LEN];
    size_t nk;
    CHECK_INT(store_traces_list(s, &keys, &nk), ==, 0);
    CHECK_INT(nk, ==, 1);
    CHECK(!memcmp(keys[0], key, DIGEST_LEN));
    free(keys);
    buf_release(&b);
    buf_release(&c);
    buf_release(&got);
    store_close(s);
}
