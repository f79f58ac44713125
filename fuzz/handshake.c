/*
 * fuzz/handshake.c - libFuzzer target for the handshake side of p2p_conn_input: whatever bytes
 * arrive before a connection is established must neither crash nor establish it (nobody but a
 * cluster member can finish a handshake, and the fuzzer is not one: its bytes are not keyed).
 * The first byte picks the place (a fresh responder, an initiator whose first message is out,
 * or a responder that has answered a real member's first message and waits for the third) and
 * how the rest is split.
 */
#include "../p2p/noise_int.h"
#include "../sim/sim.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void rng(void *arg, uint8_t *buf, size_t n)
{
    (void)arg;
    memset(buf, 0x5a, n);
}

/* After each piece: unkeyed bytes never finish a handshake, and nothing is buffered before it
 * ends; what c answers goes nowhere. */
static int check_piece(void *arg, struct p2p_conn *c, int rc, size_t offered, size_t used)
{
    (void)arg;
    (void)offered;
    if (rc != 0)
        return rc;
    if (p2p_conn_established(c))
        abort(); /* unkeyed bytes finished a handshake */
    if (!used)
        abort(); /* nothing is buffered before the handshake ends */
    sim_conn_drop(c);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct p2p_identity id;
    static bool ready;
    uint8_t key[32];
    if (!ready) {
        uint8_t seed[32];
        memset(seed, 9, sizeof seed);
        if (p2p_identity_from_seed(&id, seed) != 0)
            abort();
        ready = true;
    }
    if (size < 1)
        return 0;
    memset(key, 7, sizeof key);
    int mode = data[0] % 3;
    size_t step = 1 + (data[0] / 3) * 7;
    struct p2p_conn_cfg cfg = {mode == 1, &id, key, rng, NULL, 0, 0, 0, 0, 0};
    struct p2p_conn *c;
    if (p2p_conn_new(&c, &cfg) != 0)
        abort();
    if (mode == 2) { /* a real member's first message, answered */
        struct p2p_conn_cfg icfg = {true, &id, key, rng, NULL, 0, 0, 0, 0, 0};
        struct p2p_conn *m;
        if (p2p_conn_new(&m, &icfg) != 0)
            abort();
        if (sim_conn_move(m, c, 0, 1, NULL, NULL) != 0) /* taken whole, or -EAGAIN */
            abort();
        p2p_conn_free(m);
    }
    sim_feed(c, data + 1, size - 1, step, 1, check_piece, NULL);
    p2p_conn_free(c);
    return 0;
}
