/*
 * fuzz/frame.c - libFuzzer target for the frame decoder: two connections finish a handshake
 * (fixed keys), one sends frames the input describes, the input flips bits of the bytes on the
 * wire, and the other receives them in pieces of an input-chosen size. Every frame delivered
 * must be the one sent at that place (a flipped bit never yields a frame, let alone a wrong
 * one), and without flips every frame must arrive.
 *
 * The connections' frame limit is FRAME_MAX, not P2P_FRAME_MAX: the same code reaches the receive
 * buffer's limits with inputs a 250th of the size (with megabyte frames the target ran 100
 * inputs a second, nearly all of it copying and encrypting).
 *
 * Input: u8 step, u8 nframes (up to 16), then per frame u16 length (mod 512, or with the top
 * bit set FRAME_MAX minus the low 12 bits: frames that fill the receive buffer; 0x8000 also
 * first tries a frame one byte over the limit, which must be refused) and that many payload bytes
 * (zeros past the input's end), then u16 bit positions to flip.
 */
#include "../p2p/noise_int.h"
#include "../sim/sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void rng(void *arg, uint8_t *buf, size_t n)
{
    uint8_t *v = arg;
    memset(buf, *v, n);
}

static void move_all(struct p2p_conn *from, struct p2p_conn *to)
{
    if (sim_conn_move(from, to, 0, 1, NULL, NULL) != 0) /* an error, or not all taken */
        abort();
}

struct sent {
    uint8_t **frames;
    size_t *len, n, got;
};

/* After each piece: every frame delivered is the one sent at that place; a failed input or a
 * dead connection ends the move. */
static int check_frames(void *arg, struct p2p_conn *b, int rc, size_t offered, size_t used)
{
    struct sent *s = arg;
    (void)offered;
    (void)used;
    if (rc != 0)
        return rc;
    const uint8_t *f;
    size_t flen;
    while ((f = p2p_conn_recv(b, &flen))) {
        if (s->got >= s->n || flen != s->len[s->got] || memcmp(f, s->frames[s->got], flen))
            abort(); /* a frame that was not sent, or not there */
        s->got++;
    }
    return p2p_conn_error(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct p2p_identity ia, ib;
    static bool ready;
    if (!ready) {
        uint8_t s[32];
        memset(s, 1, 32);
        memset(s + 16, 2, 16);
        if (p2p_identity_from_seed(&ia, s) != 0)
            abort();
        memset(s, 3, 32);
        if (p2p_identity_from_seed(&ib, s) != 0)
            abort();
        ready = true;
    }
    if (size < 2)
        return 0;
    uint8_t key[32], ra = 1, rb = 2;
    memset(key, 7, sizeof key);
    struct p2p_conn_cfg ca = {true, &ia, key, rng, &ra, 0, 3, 0, 0, FRAME_MAX};
    struct p2p_conn_cfg cb = {false, &ib, key, rng, &rb, 0, 3, 0, 0, FRAME_MAX};
    struct p2p_conn *a, *b;
    if (p2p_conn_new(&a, &ca) || p2p_conn_new(&b, &cb))
        abort();
    move_all(a, b);
    move_all(b, a);
    move_all(a, b);
    if (!p2p_conn_established(a) || !p2p_conn_established(b))
        abort();

    size_t step = 1 + data[0] * 13, nframes = data[1] % 17, off = 2;
    uint8_t *sent[16];
    size_t slen[16];
    for (size_t i = 0; i < nframes; i++) {
        size_t l = 0;
        if (off + 2 <= size && data[off] == 0 && data[off + 1] == 0x80) {
            /* one byte over the limit: refused, and the connection goes on */
            static uint8_t over[FRAME_MAX + 1];
            if (p2p_conn_send(a, over, sizeof over) != AFSP_E_USAGE || p2p_conn_error(a))
                abort();
        }
        if (off + 2 <= size) {
            size_t v = data[off] | (size_t)data[off + 1] << 8;
            l = v & 0x8000 ? FRAME_MAX - (v & 0xfff) : v % 512;
        }
        off += 2;
        sent[i] = calloc(1, l + 1);
        if (!sent[i])
            abort();
        for (size_t j = 0; j < l && off + j < size; j++)
            sent[i][j] = data[off + j];
        off += l;
        slen[i] = l;
        if (p2p_conn_send(a, sent[i], l) != 0)
            abort();
    }
    const uint8_t *p;
    size_t n = p2p_conn_pending(a, &p);
    uint8_t *wire = malloc(n ? n : 1);
    if (!wire || sim_conn_take(a, wire, n) != n)
        abort();
    size_t flips = 0;
    for (; off + 2 <= size && n; off += 2, flips++) {
        size_t bit = ((data[off] | (size_t)data[off + 1] << 8) * 2654435761u) % (8 * n);
        wire[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    struct sent s = {sent, slen, nframes, 0};
    if (sim_feed(b, wire, n, step, 1, check_frames, &s) == -EAGAIN)
        abort(); /* stuck: nothing taken and no frame to take */
    if (!flips && s.got != nframes)
        abort();
    for (size_t i = 0; i < nframes; i++)
        free(sent[i]);
    free(wire);
    p2p_conn_free(a);
    p2p_conn_free(b);
    return 0;
}
