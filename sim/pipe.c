/*
 * pipe.c - the bytes between two in-memory connections (sim.h): what one has pending goes to
 * the other's input, whole or in pieces, one way or both ways until nothing moves. The unit
 * tests, the fuzz targets and the benchmarks move bytes only through here.
 *
 * Owns nothing: the connections are the caller's. Must not: copy the bytes (the receiver reads
 * the sender's buffer: the frame benchmark measures the transport, not this), read a clock, or
 * hide an input's error.
 */
#include "sim.h"

#include <errno.h>
#include <string.h>

/* The one loop: the n bytes at b go to connection c, through peer p's input if p is not NULL (c
 * is then p's connection), step bytes per call. *fed is how many were taken. */
static int offer(struct p2p_conn *c, struct p2p_peer *p, const uint8_t *b, size_t n, size_t step,
                 uint64_t now_ms, sim_input_cb cb, void *arg, size_t *fed)
{
    size_t off = 0;
    int rc = 0;
    while (off < n) {
        size_t k = step ? MIN(step, n - off) : n - off, used = 0;
        rc = p ? p2p_peer_input(p, b + off, k, now_ms, &used)
               : p2p_conn_input(c, b + off, k, now_ms, &used);
        off += used;
        if (cb)
            rc = cb(arg, c, rc, k, used);
        if (rc)
            break;
        if (!used) { /* a whole frame is buffered and nobody took it */
            rc = -EAGAIN;
            break;
        }
    }
    *fed = off;
    return rc;
}

/* Moves what from has pending; the receiver is to_c, or to_p's connection. */
static int move(struct p2p_conn *from, struct p2p_conn *to_c, struct p2p_peer *to_p, size_t step,
                uint64_t now_ms, sim_input_cb cb, void *arg)
{
    const uint8_t *b;
    size_t n = p2p_conn_pending(from, &b), fed;
    int rc = offer(to_c, to_p, b, n, step, now_ms, cb, arg, &fed);
    p2p_conn_sent(from, rc == 0 || rc == -EAGAIN ? fed : n);
    return rc;
}

int sim_feed(struct p2p_conn *to, const uint8_t *p, size_t n, size_t step, uint64_t now_ms,
             sim_input_cb cb, void *arg)
{
    size_t fed;
    return offer(to, NULL, p, n, step, now_ms, cb, arg, &fed);
}

int sim_conn_move(struct p2p_conn *from, struct p2p_conn *to, size_t step, uint64_t now_ms,
                  sim_input_cb cb, void *arg)
{
    return move(from, to, NULL, step, now_ms, cb, arg);
}

size_t sim_conn_take(struct p2p_conn *c, uint8_t *buf, size_t cap)
{
    const uint8_t *b;
    size_t n = p2p_conn_pending(c, &b);
    if (n <= cap) {
        memcpy(buf, b, n);
        p2p_conn_sent(c, n);
    }
    return n;
}

size_t sim_conn_drop(struct p2p_conn *c)
{
    const uint8_t *b;
    size_t n = p2p_conn_pending(c, &b);
    p2p_conn_sent(c, n);
    return n;
}

int sim_peer_move(struct p2p_peer *from, struct p2p_peer *to, uint64_t now_ms)
{
    return move(p2p_peer_conn(from), p2p_peer_conn(to), to, 0, now_ms, NULL, NULL);
}

int sim_peer_shuttle(struct p2p_peer *a, struct p2p_peer *b, size_t pump, uint64_t now_ms)
{
    struct p2p_peer *ends[2] = {a, b};
    int rc = 0;
    for (bool moved = true; moved && rc == 0;) {
        moved = false;
        for (int k = 0; k < 2 && rc == 0; k++) {
            const uint8_t *x;
            if (pump)
                p2p_peer_pump(ends[k], pump);
            if (!p2p_conn_pending(p2p_peer_conn(ends[k]), &x))
                continue;
            rc = sim_peer_move(ends[k], ends[1 - k], now_ms);
            moved = true;
        }
    }
    return rc;
}
