/*
 * fuzz/index.c - libFuzzer target for index_parse(): a layer index arrives from peers in a later
 * issue, so it is parsed as hostile input. Whatever parses must serialize back to the same bytes
 * (the encoding is canonical) except for window compression, which is recomputed.
 */
#include "../store/store_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct layer_index ix;
    if (index_parse(data, size, &ix) == 0) {
        struct buf b = {0};
        struct layer_index again;
        if (index_serialize(&ix, &b) == 0) {
            if (index_parse(b.p, b.len, &again) != 0)
                abort(); /* what we write, we must read */
            index_release(&again);
        }
        buf_release(&b);
        index_release(&ix);
    }
    return 0;
}
