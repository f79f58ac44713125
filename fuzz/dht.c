/*
 * fuzz/dht.c - libFuzzer target for the DHT: dht_msg_parse() on every message a peer sends
 * (whatever parses must encode back to the same bytes), then the same bytes, cut into
 * messages, fed to a core from a few peers, answered and ticked: no crash, no leak, no
 * unbounded growth of what it sends.
 *
 * Input: repeated [u8 sender (low 2 bits), u8 ms to advance, u16 length, message bytes]. The
 * core has asked peer 0 for a claim (tx 0x401), so a CLAIMED from it is an answer.
 */
#include "../dht/dht.h"
#include "../util/util.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_roundtrip(const uint8_t *p, size_t n)
{
    struct dht_msg m;
    uint8_t out[DHT_MSG_MAX];
    if (dht_msg_parse(p, n, &m) != 0)
        return;
    int len = dht_msg_encode(&m, out);
    if (len < 0 || (size_t)len != n || memcmp(out, p, n))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_roundtrip(data, size);
    uint64_t seed = 1;
    uint8_t id[DHT_ID_LEN] = {0x80};
    struct dht_cfg cfg = {.id = id, .rng = rng_fill, .rng_arg = &seed, .now_ms = 1000};
    struct dht *d;
    if (dht_new(&d, &cfg) != 0)
        return 0;
    struct dht_contact peers[4];
    for (int i = 0; i < 4; i++) {
        memset(&peers[i], 0, sizeof peers[i]);
        memset(peers[i].id, 0x10 * (i + 1), DHT_ID_LEN);
        peers[i].addr.family = 4;
        peers[i].addr.ip[0] = 127;
        peers[i].addr.ip[3] = (uint8_t)(i + 1);
        peers[i].addr.port = (uint16_t)(i == 3 ? 0 : 7000 + i);
    }
    dht_add_contact(d, &peers[0], 1000);
    uint8_t key[DHT_ID_LEN] = {0x11};
    dht_provide(d, key, 1000);
    /* a claim asked of peer 0: its CLAIMED answers reach the asker's side (tx 0x401) */
    dht_claim(d, key, DHT_CLAIM_TAKE, &peers[0], NULL, NULL, 1000, NULL);
    struct dht_out *o = malloc(sizeof *o);
    uint64_t now = 1000;
    size_t off = 0;
    while (o && size - off >= 4) {
        unsigned who = data[off] & 3, adv = data[off + 1];
        size_t len = (size_t)data[off + 2] | (size_t)data[off + 3] << 8;
        off += 4;
        if (len > size - off)
            len = size - off;
        now += adv * 37u;
        parse_roundtrip(data + off, len);
        dht_input(d, peers[who].id, &peers[who].addr, data + off, len, now);
        off += len;
        dht_tick(d, now);
        size_t sent = 0;
        while (dht_output(d, o))
            if (++sent > 100000)
                abort(); /* one input cannot make this much */
    }
    free(o);
    dht_free(d);
    return 0;
}
