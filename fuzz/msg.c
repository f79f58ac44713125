/*
 * fuzz/msg.c - libFuzzer target for p2p_msg_parse(): every frame from a peer is parsed by it.
 * Whatever parses must encode back to exactly the same bytes (the encoding is canonical).
 */
#include "../p2p/p2p.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct p2p_msg m;
    if (p2p_msg_parse(data, size, &m) != 0)
        return 0;
    uint8_t *out = malloc(size ? size : 1);
    size_t n;
    if (!out || p2p_msg_encode(&m, out, size, &n) != 0 || n != size || memcmp(out, data, size))
        abort();
    free(out);
    return 0;
}
