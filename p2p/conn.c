/*
 * conn.c - a peer connection without I/O: the handshake messages, then frames, on a byte
 * stream.
 *
 * On the wire every message is a 4-byte little-endian length L and L bytes. The three handshake
 * messages have fixed lengths (noise_int.h); anything else fails the handshake. After it, a
 * frame is L = payload + 16 bytes of AES-256-GCM ciphertext and tag under the sender's own key
 * (the two directions have different keys: a frame reflected back to its sender does not
 * decrypt), its nonce the count of frames sent before it, with the 4 length bytes as associated
 * data. L over the frame limit (P2P_FRAME_MAX unless set) + 16 ends the connection before any of
 * the frame is read; a frame that does not authenticate ends it with nothing delivered. At most one
 * largest frame's worth of bytes is buffered. Every rekey_every frames each side replaces its
 * sending key (Noise Rekey) and the receiver its receiving key, at the same frame.
 *
 * Owns: the receive buffer (one frame at most) and the send buffer. Must not: read a clock,
 * draw randomness other than through cfg->rng, or log a key.
 */
#include "noise_int.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define LEN_BYTES 4

struct p2p_conn {
    struct noise_hs hs;
    size_t tx_max, frame_max;
    struct noise_cipher tx, rx;
    bool established;
    int err;
    uint64_t deadline, rekey_every;
    uint8_t peer_id[P2P_ID_LEN], peer_key[32];
    uint8_t hh[NOISE_HASH]; /* the handshake hash, once established (the same at both ends) */
    uint8_t *rbuf;          /* received bytes: [rstart, rlen) not yet consumed */
    size_t rstart, rlen, rcap;
    size_t rskip; /* bytes of the frame returned by the last recv, to drop on the next call */
    struct buf out;
    size_t out_sent;
};

static int fail(struct p2p_conn *c, int rc)
{
    if (!c->err)
        c->err = rc;
    noise_hs_wipe(&c->hs);
    noise_cipher_wipe(&c->tx);
    noise_cipher_wipe(&c->rx);
    if (c->rbuf)
        sodium_memzero(c->rbuf, c->rcap); /* decrypted frames */
    c->rstart = c->rlen = c->rskip = 0;
    return c->err;
}

static void put_len(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < LEN_BYTES; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_len(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Appends room for n bytes to the send buffer. */
static uint8_t *out_room(struct p2p_conn *c, size_t n)
{
    if (c->out_sent && c->out_sent >= c->out.len / 2) { /* keep the unsent part at the front */
        memmove(c->out.p, c->out.p + c->out_sent, c->out.len - c->out_sent);
        c->out.len -= c->out_sent;
        c->out_sent = 0;
    }
    if (c->out.len - c->out_sent + n > c->tx_max || buf_reserve(&c->out, n) < 0)
        return NULL;
    uint8_t *p = c->out.p + c->out.len;
    c->out.len += n;
    return p;
}

static int write_hs(struct p2p_conn *c)
{
    uint8_t msg[NOISE_MSG2];
    size_t len = 0;
    int rc = noise_hs_write(&c->hs, msg, &len);
    if (rc)
        return fail(c, rc);
    uint8_t *p = out_room(c, LEN_BYTES + len);
    if (!p)
        return fail(c, -ENOMEM);
    put_len(p, (uint32_t)len);
    memcpy(p + LEN_BYTES, msg, len);
    return 0;
}

static int finish_hs(struct p2p_conn *c)
{
    memcpy(c->hh, c->hs.h, NOISE_HASH); /* Split wipes it */
    int rc = noise_hs_split(&c->hs, &c->tx, &c->rx);
    if (rc)
        return fail(c, rc);
    memcpy(c->peer_key, c->hs.rs, 32);
    sha256_buf(c->peer_key, 32, c->peer_id);
    noise_hs_wipe(&c->hs);
    c->established = true;
    c->deadline = UINT64_MAX;
    return 0;
}

int p2p_conn_new(struct p2p_conn **out, const struct p2p_conn_cfg *cfg)
{
    uint8_t e_seed[32];
    if (sodium_init() < 0)
        return err_set(-EIO, "libsodium cannot start");
    struct p2p_conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->deadline = cfg->now_ms + (cfg->handshake_ms ? cfg->handshake_ms : P2P_HANDSHAKE_TIMEOUT_MS);
    c->rekey_every = cfg->rekey_every ? cfg->rekey_every : P2P_REKEY_EVERY;
    c->tx_max = cfg->tx_max ? cfg->tx_max : P2P_TX_MAX;
    c->frame_max =
        cfg->frame_max && cfg->frame_max < P2P_FRAME_MAX ? cfg->frame_max : P2P_FRAME_MAX;
    if (cfg->rng)
        cfg->rng(cfg->rng_arg, e_seed, sizeof e_seed);
    else
        randombytes_buf(e_seed, sizeof e_seed);
    int rc = noise_hs_init(&c->hs, cfg->initiator, cfg->id, cfg->cluster_key, e_seed);
    sodium_memzero(e_seed, sizeof e_seed);
    if (rc == 0 && cfg->initiator)
        rc = write_hs(c);
    if (rc) {
        p2p_conn_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void p2p_conn_free(struct p2p_conn *c)
{
    if (!c)
        return;
    noise_hs_wipe(&c->hs);
    noise_cipher_wipe(&c->tx);
    noise_cipher_wipe(&c->rx);
    if (c->rbuf)
        sodium_memzero(c->rbuf, c->rcap);
    free(c->rbuf);
    buf_release(&c->out);
    free(c);
}

/* Drops the bytes of the frame the last recv returned (they stay in place until room is needed:
 * taking many small frames must not move the rest each time). */
static void rx_consume(struct p2p_conn *c)
{
    c->rstart += c->rskip;
    c->rskip = 0;
    if (c->rstart == c->rlen)
        c->rstart = c->rlen = 0;
}

/* The receive buffer's size at most: one largest frame. */
static size_t rx_max(const struct p2p_conn *c)
{
    return LEN_BYTES + c->frame_max + NOISE_TAG;
}

/* Makes room for k more bytes: the unconsumed ones moved to the front, the buffer grown (the
 * old one wiped: it held plaintext). */
static int rx_room(struct p2p_conn *c, size_t k)
{
    if (c->rlen + k <= c->rcap)
        return 0;
    size_t have = c->rlen - c->rstart;
    if (c->rstart) {
        memmove(c->rbuf, c->rbuf + c->rstart, have);
        sodium_memzero(c->rbuf + have, c->rlen - have);
        c->rstart = 0;
        c->rlen = have;
        if (have + k <= c->rcap)
            return 0;
    }
    size_t cap = MAX(c->rcap * 2, (size_t)4096);
    while (cap < have + k)
        cap *= 2;
    cap = MIN(cap, rx_max(c));
    uint8_t *b = malloc(cap);
    if (!b)
        return -ENOMEM;
    if (c->rbuf) {
        memcpy(b, c->rbuf, have);
        sodium_memzero(c->rbuf, c->rcap);
        free(c->rbuf);
    }
    c->rbuf = b;
    c->rcap = cap;
    return 0;
}

/* The handshake message at the front of the buffer, if whole. Returns 1 if one was taken. */
static int hs_step(struct p2p_conn *c)
{
    const uint8_t *p = c->rbuf + c->rstart;
    size_t have = c->rlen - c->rstart;
    if (have < LEN_BYTES)
        return 0;
    uint32_t len = get_len(p);
    if (len > NOISE_MSG2)
        return fail(c, AFSP_E_FORMAT);
    if (have < LEN_BYTES + len)
        return 0;
    int rc = noise_hs_read(&c->hs, p + LEN_BYTES, len);
    if (rc)
        return fail(c, rc);
    c->rskip = LEN_BYTES + len;
    rx_consume(c);
    if (c->hs.step == HS_WRITE2 || c->hs.step == HS_WRITE3) {
        bool last = c->hs.step == HS_WRITE3;
        if ((rc = write_hs(c)) < 0)
            return rc;
        if (last && (rc = finish_hs(c)) < 0) /* the initiator is done once msg 3 is out */
            return rc;
    } else if (c->hs.step == HS_DONE && (rc = finish_hs(c)) < 0) {
        return rc;
    }
    return 1;
}

int p2p_conn_input(struct p2p_conn *c, const uint8_t *p, size_t n, uint64_t now_ms, size_t *used)
{
    *used = 0;
    if (c->err)
        return c->err;
    if (!c->established && now_ms >= c->deadline)
        return fail(c, err_set(-ETIMEDOUT, "handshake"));
    rx_consume(c);
    while (n) {
        /* never buffer more than one frame (before the handshake ends, one handshake message):
         * the rest waits in the caller's (socket) buffer */
        size_t have = c->rlen - c->rstart;
        size_t max = c->established ? rx_max(c) : LEN_BYTES + NOISE_MSG2;
        size_t room = max > have ? max - have : 0;
        if (!room)
            return 0; /* a whole frame is buffered: the caller must recv it first */
        size_t k = MIN(n, room);
        if (rx_room(c, k) < 0)
            return fail(c, -ENOMEM);
        memcpy(c->rbuf + c->rlen, p, k);
        c->rlen += k;
        p += k;
        n -= k;
        *used += k;
        int rc;
        while (!c->established && (rc = hs_step(c)) == 1)
            ;
        if (c->err)
            return c->err;
        /* a frame too big for us fails now, before it is read */
        if (c->established && c->rlen - c->rstart >= LEN_BYTES &&
            get_len(c->rbuf + c->rstart) > c->frame_max + NOISE_TAG)
            return fail(c, AFSP_E_FORMAT);
    }
    return 0;
}

const uint8_t *p2p_conn_recv(struct p2p_conn *c, size_t *len)
{
    if (c->err || !c->established)
        return NULL;
    rx_consume(c);
    uint8_t *p = c->rbuf + c->rstart;
    size_t have = c->rlen - c->rstart;
    if (have < LEN_BYTES)
        return NULL;
    uint32_t l = get_len(p);
    if (l > c->frame_max + NOISE_TAG || l < NOISE_TAG) {
        fail(c, AFSP_E_FORMAT);
        return NULL;
    }
    if (have < LEN_BYTES + l)
        return NULL;
    uint8_t *body = p + LEN_BYTES;
    int rc = noise_decrypt(&c->rx, p, LEN_BYTES, body, l, body);
    if (rc == 0 && c->rx.n % c->rekey_every == 0)
        rc = noise_rekey(&c->rx);
    if (rc) {
        fail(c, rc);
        return NULL;
    }
    c->rskip = LEN_BYTES + l;
    *len = l - NOISE_TAG;
    return body;
}

int p2p_conn_send(struct p2p_conn *c, const void *payload, size_t n)
{
    if (c->err)
        return c->err;
    if (!c->established || n > c->frame_max)
        return err_set(AFSP_E_USAGE, "p2p_conn_send");
    size_t need = LEN_BYTES + n + NOISE_TAG;
    uint8_t *p = out_room(c, need);
    if (!p)
        return c->out.len - c->out_sent + need > c->tx_max ? -ENOBUFS : -ENOMEM;
    put_len(p, (uint32_t)(n + NOISE_TAG));
    int rc = noise_encrypt(&c->tx, p, LEN_BYTES, payload, n, p + LEN_BYTES);
    if (rc == 0 && c->tx.n % c->rekey_every == 0)
        rc = noise_rekey(&c->tx);
    if (rc) {
        c->out.len -= LEN_BYTES + n + NOISE_TAG;
        return fail(c, rc);
    }
    return 0;
}

size_t p2p_conn_pending(const struct p2p_conn *c, const uint8_t **p)
{
    *p = c->out.p ? c->out.p + c->out_sent : c->out.p; /* nothing was ever queued: NULL + 0 */
    return c->out.len - c->out_sent;
}

void p2p_conn_sent(struct p2p_conn *c, size_t n)
{
    c->out_sent += MIN(n, c->out.len - c->out_sent);
}

uint64_t p2p_conn_deadline(const struct p2p_conn *c)
{
    return c->err ? UINT64_MAX : c->deadline;
}

int p2p_conn_tick(struct p2p_conn *c, uint64_t now_ms)
{
    if (c->err)
        return c->err;
    if (!c->established && now_ms >= c->deadline)
        return fail(c, err_set(-ETIMEDOUT, "handshake"));
    return 0;
}

bool p2p_conn_established(const struct p2p_conn *c)
{
    return c->established && !c->err;
}

int p2p_conn_error(const struct p2p_conn *c)
{
    return c->err;
}

const uint8_t *p2p_conn_peer_id(const struct p2p_conn *c)
{
    return c->established ? c->peer_id : NULL;
}

const uint8_t *p2p_conn_peer_key(const struct p2p_conn *c)
{
    return c->established ? c->peer_key : NULL;
}

const uint8_t *p2p_conn_handshake_hash(const struct p2p_conn *c)
{
    return c->established ? c->hh : NULL;
}

void p2p_conn_test_set_nonces(struct p2p_conn *c, uint64_t tx, uint64_t rx)
{
    c->tx.n = tx;
    c->rx.n = rx;
}
