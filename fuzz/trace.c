/*
 * fuzz/trace.c - libFuzzer target for store_trace_decode(): a start trace arrives from peers, so
 * it is decoded as hostile input; what decodes holds at most STORE_TRACE_MAX entries, none twice,
 * and encodes back to the same bytes.
 */
#include "../store/store.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t m[DIGEST_LEN];
    struct store_trace_ent *e;
    size_t n;
    if (store_trace_decode(data, size, m, &e, &n) != 0)
        return 0;
    if (n > STORE_TRACE_MAX)
        abort();
    struct buf b = {0};
    if (store_trace_encode(m, e, n, &b) == 0 && (b.len != size || memcmp(b.p, data, size)))
        abort(); /* one encoding */
    buf_release(&b);
    free(e);
    return 0;
}
