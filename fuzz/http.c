/*
 * fuzz/http.c - libFuzzer target for what the registry client parses from HTTP response headers:
 * status lines, Content-Type, Docker-Content-Digest, Content-Range, Content-Length, Retry-After
 * and WWW-Authenticate challenges (quoted values, escapes, several schemes).
 */
#include "../store/registry/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    registry_headers_fuzz(data, size);
    return 0;
}
