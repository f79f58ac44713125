/*
 * fuzz/index.c - libFuzzer target for index_parse(): a layer index arrives from peers in a later
 * issue, so it is parsed as hostile input. Whatever parses must serialize back to the same bytes
 * (the encoding is canonical) except for window compression, which is recomputed; and
 * index_parse_chunks() (no windows) must accept it too, with the same chunks.
 */
#include "../store/layer/layer.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct layer_index ix, chunks;
    /* without the windows: never fails where the full parse succeeds, and reads the same chunks */
    int crc = index_parse_chunks(data, size, &chunks);
    if (index_parse(data, size, &ix) == 0) {
        if (crc != 0 || chunks.nchunks != ix.nchunks ||
            memcmp(chunks.chunks, ix.chunks, ix.nchunks * sizeof *ix.chunks))
            abort();
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
    if (crc == 0)
        index_release(&chunks);
    return 0;
}
