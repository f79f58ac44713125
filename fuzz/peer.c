/*
 * fuzz/peer.c - libFuzzer target for p2p/peer.c: what a cluster member (it has the key, so its
 * frames decrypt) can make a node's request/answer state do. Two peers in memory complete the
 * handshake; the victim has requests outstanding (a chunk, a blob, a HAVE) and answers whatever
 * the other asks from a small object. The input is a script for the hostile side:
 *   0x00 u16 len bytes  send a frame with these bytes as its message (any bytes)
 *   0x01 u8 ms          time passes (ms * 64), then tick and pump the victim
 *   0x02                the victim asks for another chunk (if its window has room)
 *   0x03                the victim cancels its oldest request
 * Invariants: nothing crashes; each request accepted ends exactly once (done) unless
 * cancelled; the data callback gets pieces in order within the total; after free, every answer's
 * source was released.
 */
#include "../p2p/p2p.h"
#include "../sim/sim.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NREQ 64

struct side {
    struct p2p_peer *p;
    struct p2p_identity id;
    uint8_t key[32];
    uint64_t rng;
    int sources, sources_done;
    /* requests of the victim: 0 free, 1 outstanding, 2 done, 3 cancelled */
    int state[NREQ];
    uint64_t next_off[NREQ];
};

static const uint8_t object[3000];

static int src_read(void *arg, uint64_t off, uint8_t *buf, size_t n)
{
    (void)arg;
    if (off > sizeof object || n > sizeof object - off)
        abort();
    memcpy(buf, object + off, n);
    return 0;
}

static void src_done(void *arg)
{
    ((struct side *)arg)->sources_done++;
}

static void on_request(void *arg, struct p2p_peer *p, const struct p2p_msg *m)
{
    struct side *s = arg;
    struct p2p_source src = {src_read, src_done, s};
    if (m->type == P2P_HAVE) {
        uint8_t bm[1] = {5};
        p2p_peer_answer_have(p, m->id, 3, bm);
    } else if (m->type == P2P_GET_CHUNK && m->chunk % 3 == 0) {
        p2p_peer_answer_error(p, m->id, P2P_ERR_NOT_FOUND);
    } else {
        s->sources++;
        p2p_peer_answer_data(p, m->id, sizeof object, 0, sizeof object, &src);
    }
}

static int req_index(struct side *s, void *req)
{
    int i = (int)((int *)req - s->state);
    if (i < 0 || i >= NREQ)
        abort();
    return i;
}

static int on_data(void *arg, struct p2p_peer *p, void *req, uint64_t total, uint64_t off,
                   const uint8_t *b, size_t n)
{
    struct side *s = arg;
    int i = req_index(s, req);
    (void)p;
    (void)b;
    if (s->state[i] != 1 || off != s->next_off[i] || off + n > total || total > 4096)
        abort();
    s->next_off[i] += n;
    return 0;
}

static void on_have(void *arg, struct p2p_peer *p, void *req, uint32_t nchunks, const uint8_t *bm)
{
    struct side *s = arg;
    (void)p;
    (void)bm;
    (void)nchunks;
    if (s->state[req_index(s, req)] != 1)
        abort();
}

static void on_done(void *arg, struct p2p_peer *p, void *req, int rc)
{
    struct side *s = arg;
    int i = req_index(s, req);
    (void)p;
    (void)rc;
    if (s->state[i] != 1)
        abort(); /* ended twice, or after a cancel */
    s->state[i] = 2;
}

static const struct p2p_peer_ops ops = {
    .request = on_request, .data = on_data, .have = on_have, .done = on_done};

static int side_new(struct side *s, bool initiator, uint8_t fill)
{
    uint8_t seed[32];
    memset(seed, fill, sizeof seed);
    if (p2p_identity_from_seed(&s->id, seed) < 0)
        return -1;
    memset(s->key, 7, sizeof s->key);
    s->rng = fill;
    struct p2p_peer_cfg c = {.conn = {initiator, &s->id, s->key, rng_fill, &s->rng, 1000, 0, 0, 0},
                             .ops = &ops,
                             .arg = s,
                             .window = 8,
                             .stall_ms = 3000};
    return p2p_peer_new(&s->p, &c);
}

static int ask(struct side *v, int i, enum p2p_msg_type t, uint32_t chunk, uint64_t now)
{
    struct p2p_msg m = {.type = t, .chunk = chunk};
    memset(m.digest, 0xab, sizeof m.digest);
    int rc = p2p_peer_request(v->p, &m, 4096, &v->state[i], now);
    if (rc == 0)
        v->state[i] = 1;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct side v, h; /* victim, hostile */
    uint64_t now = 1000;
    memset(&v, 0, sizeof v);
    memset(&h, 0, sizeof h);
    if (side_new(&v, true, 1) < 0 || side_new(&h, false, 2) < 0)
        abort();
    sim_peer_shuttle(v.p, h.p, 0, now); /* the handshake */
    if (!p2p_conn_established(p2p_peer_conn(v.p)))
        abort();
    int nreq = 0;
    ask(&v, nreq++, P2P_GET_CHUNK, 1, now);
    ask(&v, nreq++, P2P_GET_BLOB, 0, now);
    ask(&v, nreq++, P2P_HAVE, 0, now);
    /* the hostile side drops what it receives: it answers only by script */
    sim_peer_move(v.p, h.p, now);
    sim_conn_drop(p2p_peer_conn(h.p));

    size_t i = 0;
    while (i < size && !p2p_peer_error(v.p)) {
        uint8_t op = data[i++];
        if (op == 0 && i + 2 <= size) {
            size_t len = (size_t)data[i] | (size_t)data[i + 1] << 8;
            i += 2;
            if (len > size - i)
                len = size - i;
            p2p_conn_send(p2p_peer_conn(h.p), data + i, len);
            i += len;
            sim_peer_move(h.p, v.p, now);
        } else if (op == 1 && i < size) {
            now += (uint64_t)data[i++] * 64;
            p2p_peer_tick(v.p, now);
        } else if (op == 2 && nreq < NREQ) {
            ask(&v, nreq, P2P_GET_CHUNK, (uint32_t)nreq, now);
            nreq++;
        } else if (op == 3) {
            for (int k = 0; k < nreq; k++)
                if (v.state[k] == 1) {
                    p2p_peer_cancel(v.p, &v.state[k]);
                    v.state[k] = 3;
                    break;
                }
        }
        p2p_peer_pump(v.p, 1u << 20);
        /* what the victim sends is consumed by no one: only its bounds matter */
        sim_conn_drop(p2p_peer_conn(v.p));
    }
    p2p_peer_free(v.p, 0);
    p2p_peer_free(h.p, 0);
    for (int k = 0; k < nreq; k++)
        if (v.state[k] == 1)
            abort(); /* outstanding after free: done was never called */
    if (v.sources != v.sources_done || h.sources != h.sources_done)
        abort();
    return 0;
}
