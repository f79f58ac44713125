/*
 * test_p2p.c - the peer transport's sans-IO core: the handshake with fixed keys, refusals
 * (wrong cluster key, tampering, small-order keys, timeouts), frames, and the nonce and rekey
 * boundaries. Two connections talk through memory; time and randomness are the test's.
 */
#include "../../p2p/noise_int.h"
#include "../../sim/sim.h"
#include "test.h"

#include <errno.h>
#include <sodium.h>
#include <sys/stat.h>

/* ---- harness -------------------------------------------------------------------------------- */

static struct p2p_identity ident(uint8_t fill)
{
    uint8_t seed[32];
    memset(seed, fill, sizeof seed);
    struct p2p_identity id;
    CHECK(p2p_identity_from_seed(&id, seed) == 0);
    return id;
}

struct pair {
    struct p2p_identity ia, ib;
    uint8_t ka[32], kb[32];
    uint64_t ra, rb; /* rng states */
    struct p2p_conn *a, *b;
};

static void pair_new(struct pair *p, uint64_t rekey_a, uint64_t rekey_b, bool same_key)
{
    memset(p, 0, sizeof *p);
    p->ia = ident(1);
    p->ib = ident(2);
    memset(p->ka, 7, 32);
    memset(p->kb, same_key ? 7 : 8, 32);
    p->ra = 11;
    p->rb = 22;
    struct p2p_conn_cfg ca = {true, &p->ia, p->ka, rng_fill, &p->ra, 1000, rekey_a, 0, 0, 0};
    struct p2p_conn_cfg cb = {false, &p->ib, p->kb, rng_fill, &p->rb, 1000, rekey_b, 0, 0, 0};
    CHECK(p2p_conn_new(&p->a, &ca) == 0);
    CHECK(p2p_conn_new(&p->b, &cb) == 0);
}

static void pair_free(struct pair *p)
{
    p2p_conn_free(p->a);
    p2p_conn_free(p->b);
}

/* Moves everything pending from one side to the other at once (sim/pipe.c). Returns the
 * receiver's input result, -EAGAIN if a whole frame is buffered: the test reads frames itself. */
static int move(struct p2p_conn *from, struct p2p_conn *to, uint64_t now)
{
    return sim_conn_move(from, to, 0, now, NULL, NULL);
}

static void handshake(struct pair *p)
{
    CHECK_INT(move(p->a, p->b, 1001), ==, 0); /* -> psk, e */
    CHECK_INT(move(p->b, p->a, 1002), ==, 0); /* <- e, ee, s, es */
    CHECK(p2p_conn_established(p->a));
    CHECK(!p2p_conn_established(p->b));
    CHECK_INT(move(p->a, p->b, 1003), ==, 0); /* -> s, se */
    CHECK(p2p_conn_established(p->b));
}

/* The bytes pending on c (copied, and marked sent), for tampering. */
static size_t take(struct p2p_conn *c, uint8_t *buf, size_t cap)
{
    size_t n = sim_conn_take(c, buf, cap);
    CHECK(n <= cap);
    return n;
}

static int feed(struct p2p_conn *c, const uint8_t *p, size_t n)
{
    size_t used;
    return p2p_conn_input(c, p, n, 1005, &used);
}

/* ---- the handshake ------------------------------------------------------------------------- */

TEST(p2p_handshake_fixed_keys)
{
    struct pair p;
    pair_new(&p, 0, 0, true);
    const uint8_t *x;
    CHECK_INT(p2p_conn_pending(p.a, &x), ==, 4 + NOISE_MSG1);
    CHECK_INT(p2p_conn_pending(p.b, &x), ==, 0); /* the responder speaks second */
    uint8_t m1[256], m2[256], m3[256];
    size_t n1 = take(p.a, m1, sizeof m1);
    CHECK_INT(feed(p.b, m1, n1), ==, 0);
    size_t n2 = take(p.b, m2, sizeof m2);
    CHECK_INT(n2, ==, 4 + NOISE_MSG2);
    CHECK_INT(feed(p.a, m2, n2), ==, 0);
    size_t n3 = take(p.a, m3, sizeof m3);
    CHECK_INT(n3, ==, 4 + NOISE_MSG3);
    CHECK_INT(feed(p.b, m3, n3), ==, 0);
    CHECK(p2p_conn_established(p.a) && p2p_conn_established(p.b));
    /* each knows the other by its identity */
    CHECK(!memcmp(p2p_conn_peer_id(p.a), p.ib.id, 32));
    CHECK(!memcmp(p2p_conn_peer_id(p.b), p.ia.id, 32));
    CHECK(!memcmp(p2p_conn_peer_key(p.a), p.ib.x_pk, 32));
    CHECK(!memcmp(p2p_conn_peer_key(p.b), p.ia.x_pk, 32));
    CHECK_INT(p2p_conn_deadline(p.a), ==, UINT64_MAX);
    pair_free(&p);

    /* fixed keys and randomness: the same transcript, byte for byte */
    struct pair q;
    pair_new(&q, 0, 0, true);
    uint8_t r1[256], r2[256], r3[256];
    CHECK_INT(take(q.a, r1, sizeof r1), ==, n1);
    CHECK_INT(feed(q.b, r1, n1), ==, 0);
    CHECK_INT(take(q.b, r2, sizeof r2), ==, n2);
    CHECK_INT(feed(q.a, r2, n2), ==, 0);
    CHECK_INT(take(q.a, r3, sizeof r3), ==, n3);
    CHECK(!memcmp(m1, r1, n1) && !memcmp(m2, r2, n2) && !memcmp(m3, r3, n3));
    /* and the identities never appear in clear */
    for (size_t i = 0; i + 32 <= n2; i++)
        CHECK(memcmp(m2 + i, q.ib.ed_pk, 32) && memcmp(m2 + i, q.ib.x_pk, 32));
    for (size_t i = 0; i + 32 <= n3; i++)
        CHECK(memcmp(m3 + i, q.ia.ed_pk, 32) && memcmp(m3 + i, q.ia.x_pk, 32));
    pair_free(&q);
}

TEST(p2p_wrong_cluster_key_gets_nothing)
{
    struct pair p;
    pair_new(&p, 0, 0, false);
    CHECK_INT(move(p.a, p.b, 1001), ==, AFSP_E_AUTH); /* fails at the first message */
    const uint8_t *x;
    CHECK_INT(p2p_conn_pending(p.b, &x), ==, 0); /* no answer at all */
    CHECK(!p2p_conn_established(p.b));
    CHECK_INT(p2p_conn_error(p.b), ==, AFSP_E_AUTH);
    CHECK(p2p_conn_send(p.b, "x", 1) == AFSP_E_AUTH); /* dead for good */
    pair_free(&p);
}

/* A bit flipped anywhere in any handshake message fails the receiver. */
TEST(p2p_handshake_tampering)
{
    for (int msg = 1; msg <= 3; msg++) {
        size_t len = 4 + (msg == 1 ? NOISE_MSG1 : msg == 2 ? NOISE_MSG2 : NOISE_MSG3);
        for (size_t pos = 0; pos < len; pos++) {
            struct pair p;
            pair_new(&p, 0, 0, true);
            uint8_t m[256];
            size_t n;
            struct p2p_conn *to = msg == 2 ? p.a : p.b;
            if (msg >= 2) {
                CHECK_INT(move(p.a, p.b, 1001), ==, 0);
            }
            if (msg == 3) {
                CHECK_INT(move(p.b, p.a, 1002), ==, 0);
            }
            n = take(msg == 2 ? p.b : p.a, m, sizeof m);
            CHECK_INT(n, ==, len);
            m[pos] ^= (uint8_t)(1u << (pos % 8));
            const uint8_t *x;
            size_t before = p2p_conn_pending(to, &x);
            int rc = feed(to, m, n);
            if (pos < 4) /* the length: a wrong-size message, or one that never completes */
                CHECK(rc == AFSP_E_FORMAT || rc == 0);
            else
                CHECK_INT(rc, ==, AFSP_E_AUTH);
            CHECK(!p2p_conn_established(to));
            CHECK_INT(p2p_conn_pending(to, &x), ==, before); /* and no answer */
            pair_free(&p);
        }
    }
}

/* A member that sends a small-order ephemeral key is refused: every DH with it is zero. */
TEST(p2p_small_order_keys)
{
    static const uint8_t bad[][32] = {
        {0},
        {1},
        {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
         0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
         0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
    };
    struct p2p_identity ia = ident(1), ib = ident(2);
    uint8_t key[32], seed[32];
    memset(key, 7, 32);
    memset(seed, 3, 32);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct noise_hs a, b;
        uint8_t m[NOISE_MSG2];
        size_t n;
        CHECK(noise_hs_init(&a, true, &ia, key, seed) == 0);
        CHECK(noise_hs_init(&b, false, &ib, key, seed) == 0);
        memcpy(a.e_pk, bad[i], 32); /* the attacker holds the cluster key */
        CHECK(noise_hs_write(&a, m, &n) == 0);
        CHECK(noise_hs_read(&b, m, n) == 0);                   /* the tag is right */
        CHECK_INT(noise_hs_write(&b, m, &n), ==, AFSP_E_AUTH); /* ee is zero */
        noise_hs_wipe(&a);
        noise_hs_wipe(&b);
    }
}

/* A node ID is the SHA-256 of the X25519 static key the handshake proves: an Ed25519 key with its
 * sign bit flipped converts to the same X25519 key, and so names the same node, not a second
 * one. */
TEST(p2p_node_id_is_the_proven_key)
{
    struct p2p_identity a = ident(1);
    uint8_t h[32], x[32], ed[32];
    sha256_buf(a.x_pk, 32, h);
    CHECK(!memcmp(h, a.id, 32));
    memcpy(ed, a.ed_pk, 32);
    ed[31] ^= 0x80;
    CHECK(crypto_sign_ed25519_pk_to_curve25519(x, ed) == 0);
    CHECK(!memcmp(x, a.x_pk, 32));
}

/* Known answers, from an independent implementation of the same Noise pattern written from
 * the specification (Python, the `cryptography` package): identities from seeds of 0x01 and
 * 0x02 bytes, ephemeral secrets of 0x11 and 0x22 bytes, a cluster key of 0x07 bytes, the three
 * handshake messages, then five 3-byte frames each way (frame i is three bytes of value i) with
 * a rekey every 3 frames. */
static void fill_rng(void *arg, uint8_t *buf, size_t n)
{
    memset(buf, *(uint8_t *)arg, n);
}

static void check_hex(const uint8_t *p, size_t n, const char *hex)
{
    char got[512];
    CHECK(2 * n < sizeof got);
    hex_fmt(p, n, got);
    CHECK_STR(got, hex);
}

TEST(p2p_known_answers)
{
    static const char *m[3] = {
        "300000007b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f1328d51990560c71"
        "c130b01f6da1e1adb2",
        "600000000faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f208fc490c728d2e5"
        "e83ca7a8cc76f3e56dac6df2446f3bdae18a3e1f716dc46a3af17d2ab005ae35016765a67c68fc1e6f1ad0"
        "b2aca34c2e5ea646b33c67ce4097",
        "40000000874ed9e88a23842b14b57d4e56110e8756293526c124e2dc33fd58fb6c6b2db7cea06f0d19055f"
        "bba42b3d3d9d83e1cc1034b02f50c5f6a458608835c5d81689",
    };
    static const char *fa[5] = {"13000000028b2fdb581fef9217947ef1f4a132fda56acc",
                                "13000000c108038df7182d144709879a0823608a18633f",
                                "13000000ac4a590f0bf7bd8bd0792bfa167a04982afd2a",
                                "130000003142922c71079c8c31a684bfb56a3a07acb6ad",
                                "13000000445db295185a3e98b043a696a2d9a2636dd280"};
    static const char *fb[5] = {"1300000043612965a9a9238206a47a9c5cba99129662f3",
                                "13000000f01af170e55f56e9e95477c3311904d1c83e1e",
                                "13000000bf7cba5bf63c62b92622f6f4afc8e08cc746dd",
                                "13000000fd996fb3123fe852075989e21a8e5638f1dee1",
                                "130000006072c40a0f63e1abb4aeef79f41862a546d802"};
    struct p2p_identity ia = ident(1), ib = ident(2);
    uint8_t key[32], ea = 0x11, eb = 0x22, buf[256];
    memset(key, 7, 32);
    struct p2p_conn_cfg ca = {true, &ia, key, fill_rng, &ea, 0, 3, 0, 0, 0};
    struct p2p_conn_cfg cb = {false, &ib, key, fill_rng, &eb, 0, 3, 0, 0, 0};
    struct p2p_conn *a, *b;
    CHECK(p2p_conn_new(&a, &ca) == 0 && p2p_conn_new(&b, &cb) == 0);
    size_t n = take(a, buf, sizeof buf);
    check_hex(buf, n, m[0]);
    CHECK_INT(feed(b, buf, n), ==, 0);
    n = take(b, buf, sizeof buf);
    check_hex(buf, n, m[1]);
    CHECK_INT(feed(a, buf, n), ==, 0);
    n = take(a, buf, sizeof buf);
    check_hex(buf, n, m[2]);
    CHECK_INT(feed(b, buf, n), ==, 0);
    CHECK(p2p_conn_established(a) && p2p_conn_established(b));
    for (int i = 0; i < 5; i++) {
        uint8_t v[3] = {(uint8_t)i, (uint8_t)i, (uint8_t)i};
        CHECK(p2p_conn_send(a, v, 3) == 0);
        n = take(a, buf, sizeof buf);
        check_hex(buf, n, fa[i]);
        CHECK(p2p_conn_send(b, v, 3) == 0);
        n = take(b, buf, sizeof buf);
        check_hex(buf, n, fb[i]);
    }
    p2p_conn_free(a);
    p2p_conn_free(b);
}

TEST(p2p_handshake_timeout)
{
    struct pair p;
    pair_new(&p, 0, 0, true);
    CHECK_INT(p2p_conn_deadline(p.a), ==, 1000 + P2P_HANDSHAKE_TIMEOUT_MS);
    CHECK_INT(p2p_conn_tick(p.a, 1000 + P2P_HANDSHAKE_TIMEOUT_MS - 1), ==, 0);
    CHECK_INT(p2p_conn_tick(p.a, 1000 + P2P_HANDSHAKE_TIMEOUT_MS), ==, -ETIMEDOUT);
    CHECK_INT(p2p_conn_deadline(p.a), ==, UINT64_MAX);
    /* input after the deadline fails too */
    CHECK_INT(move(p.a, p.b, 1000 + P2P_HANDSHAKE_TIMEOUT_MS), ==, -ETIMEDOUT);
    pair_free(&p);
    /* an established connection has no deadline */
    pair_new(&p, 0, 0, true);
    handshake(&p);
    CHECK_INT(p2p_conn_tick(p.a, UINT64_MAX - 1), ==, 0);
    pair_free(&p);
}

/* ---- frames -------------------------------------------------------------------------------- */

static void send_ok(struct p2p_conn *c, const void *p, size_t n)
{
    CHECK_INT(p2p_conn_send(c, p, n), ==, 0);
}

struct expect {
    const uint8_t *const *want;
    const size_t *wlen;
    size_t nwant, got, partial;
};

/* After each input of a move: it succeeded, and the frames it completed are the next wanted. */
static int expect_input(void *arg, struct p2p_conn *to, int rc, size_t offered, size_t used)
{
    struct expect *e = arg;
    CHECK_INT(rc, ==, 0);
    e->partial += used < offered;
    const uint8_t *f;
    size_t flen;
    while ((f = p2p_conn_recv(to, &flen))) {
        CHECK(e->got < e->nwant);
        CHECK_INT(flen, ==, e->wlen[e->got]);
        CHECK(!memcmp(f, e->want[e->got], flen));
        e->got++;
    }
    CHECK_INT(p2p_conn_error(to), ==, 0);
    return 0;
}

/* Moves from -> to, step bytes at a time (0: all at once), and checks that exactly the frames
 * want[0..nwant) arrive, in order. */
static void expect_frames(struct p2p_conn *from, struct p2p_conn *to, size_t step,
                          const uint8_t *const *want, const size_t *wlen, size_t nwant)
{
    const uint8_t *x;
    size_t n = p2p_conn_pending(from, &x);
    struct expect e = {want, wlen, nwant, 0, 0};
    CHECK_INT(sim_conn_move(from, to, step, 2000, expect_input, &e), ==, 0);
    CHECK_INT(e.got, ==, nwant);
    /* at most one largest frame's worth is held: bytes offered past that wait for recv */
    if (!step && n > 4 + P2P_FRAME_MAX + NOISE_TAG)
        CHECK(e.partial > 0);
}

TEST(p2p_frames)
{
    struct pair p;
    pair_new(&p, 0, 0, true);
    handshake(&p);
    size_t sizes[] = {0, 1, 1000, 65536, P2P_FRAME_MAX, 3};
    uint8_t *bufs[ARRAY_SIZE(sizes)];
    for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
        bufs[i] = malloc(sizes[i] + 1);
        CHECK(bufs[i]);
        for (size_t j = 0; j < sizes[i]; j++)
            bufs[i][j] = (uint8_t)(i * 31 + j * 7);
        send_ok(p.a, bufs[i], sizes[i]);
    }
    expect_frames(p.a, p.b, 0, (const uint8_t *const *)bufs, sizes, ARRAY_SIZE(sizes));
    /* the other way, fed in odd pieces and one byte at a time */
    for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
        send_ok(p.b, bufs[i], sizes[i]);
    expect_frames(p.b, p.a, 4093, (const uint8_t *const *)bufs, sizes, ARRAY_SIZE(sizes));
    for (size_t i = 0; i < 3; i++)
        send_ok(p.b, bufs[i], sizes[i]);
    expect_frames(p.b, p.a, 1, (const uint8_t *const *)bufs, sizes, 3);
    /* too big to send */
    CHECK_INT(p2p_conn_send(p.a, bufs[4], P2P_FRAME_MAX + 1), ==, AFSP_E_USAGE);
    for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
        free(bufs[i]);
    pair_free(&p);

    /* nothing can be sent before the handshake */
    pair_new(&p, 0, 0, true);
    CHECK_INT(p2p_conn_send(p.a, "x", 1), ==, AFSP_E_USAGE);
    pair_free(&p);
}

/* One flipped bit anywhere in a frame: the connection ends and nothing is delivered. */
TEST(p2p_frame_bit_flips)
{
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    size_t len = 4 + sizeof payload + NOISE_TAG;
    for (size_t pos = 0; pos < len; pos++) {
        struct pair p;
        pair_new(&p, 0, 0, true);
        handshake(&p);
        send_ok(p.a, payload, sizeof payload);
        uint8_t m[4 + 300 + NOISE_TAG + 8];
        size_t n = take(p.a, m, sizeof m);
        CHECK_INT(n, ==, len);
        m[pos] ^= (uint8_t)(0x80u >> (pos % 8));
        size_t used, flen;
        int rc = p2p_conn_input(p.b, m, n, 2000, &used);
        const uint8_t *f = rc == 0 ? p2p_conn_recv(p.b, &flen) : NULL;
        CHECK(f == NULL);
        uint32_t l =
            (uint32_t)m[0] | (uint32_t)m[1] << 8 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 24;
        if (pos >= 4 || l < len - 4) /* the tag fails, at the frame's end or a shorter one's */
            CHECK(p2p_conn_error(p.b) == AFSP_E_AUTH || p2p_conn_error(p.b) == AFSP_E_FORMAT);
        else if (l > P2P_FRAME_MAX + NOISE_TAG) /* too long: refused from the length alone */
            CHECK_INT(rc, ==, AFSP_E_FORMAT);
        else /* longer: it waits for bytes that never come, delivering nothing */
            CHECK_INT(p2p_conn_error(p.b), ==, 0);
        pair_free(&p);
    }
}

TEST(p2p_replay_reflection_oversize)
{
    struct pair p;
    pair_new(&p, 0, 0, true);
    handshake(&p);
    send_ok(p.a, "hello", 5);
    uint8_t m[64];
    size_t n = take(p.a, m, sizeof m), used, flen;
    /* reflected back to its sender: the directions have different keys */
    CHECK_INT(p2p_conn_input(p.a, m, n, 2000, &used), ==, 0);
    CHECK(p2p_conn_recv(p.a, &flen) == NULL);
    CHECK_INT(p2p_conn_error(p.a), ==, AFSP_E_AUTH);
    /* delivered, then replayed: the nonce has moved on */
    CHECK_INT(p2p_conn_input(p.b, m, n, 2000, &used), ==, 0);
    CHECK(p2p_conn_recv(p.b, &flen) != NULL);
    CHECK_INT(p2p_conn_input(p.b, m, n, 2000, &used), ==, 0);
    CHECK(p2p_conn_recv(p.b, &flen) == NULL);
    CHECK_INT(p2p_conn_error(p.b), ==, AFSP_E_AUTH);
    pair_free(&p);

    /* a length over the maximum ends the connection as soon as the length is read */
    pair_new(&p, 0, 0, true);
    handshake(&p);
    uint8_t big[4];
    uint32_t l = P2P_FRAME_MAX + NOISE_TAG + 1;
    for (int i = 0; i < 4; i++)
        big[i] = (uint8_t)(l >> (8 * i));
    CHECK_INT(p2p_conn_input(p.b, big, 4, 2000, &used), ==, AFSP_E_FORMAT);
    pair_free(&p);

    /* a length too short to hold a tag */
    pair_new(&p, 0, 0, true);
    handshake(&p);
    uint8_t tiny[4 + NOISE_TAG - 1] = {NOISE_TAG - 1};
    CHECK_INT(p2p_conn_input(p.b, tiny, sizeof tiny, 2000, &used), ==, 0);
    CHECK(p2p_conn_recv(p.b, &flen) == NULL);
    CHECK_INT(p2p_conn_error(p.b), ==, AFSP_E_FORMAT);
    pair_free(&p);
}

/* After each input of a move: it succeeded; counts the frames it completed, and stops the move
 * once the connection has failed. */
static int count_frames(void *arg, struct p2p_conn *to, int rc, size_t offered, size_t used)
{
    int *ok = arg;
    size_t flen;
    (void)offered;
    (void)used;
    CHECK_INT(rc, ==, 0);
    while (p2p_conn_recv(to, &flen))
        (*ok)++;
    return p2p_conn_error(to);
}

/* Keys change every rekey_every frames, the same on both sides: with 3, ten frames each way
 * arrive; a receiver that rekeys at another count fails at the first frame after a change. */
TEST(p2p_rekey)
{
    struct pair p;
    pair_new(&p, 3, 3, true);
    handshake(&p);
    for (int i = 0; i < 10; i++) {
        uint8_t v = (uint8_t)i;
        const uint8_t *w[1] = {&v};
        size_t wl[1] = {1};
        send_ok(p.a, &v, 1);
        expect_frames(p.a, p.b, 0, w, wl, 1);
        send_ok(p.b, &v, 1);
        expect_frames(p.b, p.a, 0, w, wl, 1);
    }
    pair_free(&p);

    pair_new(&p, 3, 4, true);
    handshake(&p);
    for (int i = 0; i < 4; i++)
        send_ok(p.a, "x", 1);
    int ok = 0;
    CHECK_INT(sim_conn_move(p.a, p.b, 0, 2000, count_frames, &ok), ==, AFSP_E_AUTH);
    CHECK_INT(ok, ==, 3); /* frames 0-2 under the first key; frame 3 under the new one fails */
    CHECK_INT(p2p_conn_error(p.b), ==, AFSP_E_AUTH);
    pair_free(&p);
}

/* The counter never wraps: the last nonce is used, then sending fails and the connection is
 * dead. */
TEST(p2p_nonce_exhaustion)
{
    struct pair p;
    pair_new(&p, 0, 0, true);
    handshake(&p);
    p2p_conn_test_set_nonces(p.a, UINT64_MAX - 2, 0);
    p2p_conn_test_set_nonces(p.b, 0, UINT64_MAX - 2);
    uint8_t v = 1;
    const uint8_t *w[2] = {&v, &v};
    size_t wl[2] = {1, 1};
    send_ok(p.a, &v, 1); /* nonce 2^64 - 3 */
    send_ok(p.a, &v, 1); /* nonce 2^64 - 2, the last one */
    expect_frames(p.a, p.b, 0, w, wl, 2);
    CHECK_INT(p2p_conn_send(p.a, &v, 1), ==, -EOVERFLOW);
    CHECK_INT(p2p_conn_error(p.a), ==, -EOVERFLOW);
    const uint8_t *x;
    CHECK_INT(p2p_conn_pending(p.a, &x), ==, 0);
    pair_free(&p);
}

/* ---- key files ----------------------------------------------------------------------------- */

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    fclose(f);
}

TEST(p2p_key_files)
{
    char path[512], kpath[512];
    snprintf(path, sizeof path, "%s/node.key", test_tmpdir());
    snprintf(kpath, sizeof kpath, "%s/cluster.key", test_tmpdir());
    struct p2p_identity a, b;
    bool created;
    CHECK(p2p_identity_load(&a, path, &created) == 0 && created);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK_INT(st.st_mode & 0777, ==, 0600);
    CHECK_INT(st.st_size, ==, 32);
    CHECK(p2p_identity_load(&b, path, &created) == 0 && !created);
    CHECK(!memcmp(a.id, b.id, 32) && !memcmp(a.ed_sk, b.ed_sk, 64));
    uint8_t h[32];
    sha256_buf(a.x_pk, 32, h);
    CHECK(!memcmp(h, a.id, 32));
    spit(path, "short");
    CHECK_INT(p2p_identity_load(&b, path, &created), ==, AFSP_E_FORMAT);

    uint8_t k1[32], k2[32];
    CHECK(p2p_cluster_key_create(k1, kpath) == 0);
    CHECK(stat(kpath, &st) == 0);
    CHECK_INT(st.st_mode & 0777, ==, 0600);
    CHECK(p2p_cluster_key_load(k2, kpath) == 0);
    CHECK(!memcmp(k1, k2, 32));
    CHECK(p2p_cluster_key_create(k1, kpath) < 0); /* never overwritten */
    char text[45], buf[128];
    p2p_key_b64(k1, text);
    snprintf(buf, sizeof buf, "  %s\r\n\n", text);
    spit(kpath, buf);
    CHECK(p2p_cluster_key_load(k2, kpath) == 0 && !memcmp(k1, k2, 32));
    const char *bad[] = {"", "\n", "c2hvcnQ=\n", "!!!!", "AAAA", text + 1};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        spit(kpath, bad[i]);
        CHECK_INT(p2p_cluster_key_load(k2, kpath), ==, AFSP_E_FORMAT);
    }
    snprintf(buf, sizeof buf, "%s%s", text, "AAAA");
    spit(kpath, buf);
    CHECK_INT(p2p_cluster_key_load(k2, kpath), ==, AFSP_E_FORMAT);
    snprintf(kpath, sizeof kpath, "%s/missing", test_tmpdir());
    CHECK_INT(p2p_cluster_key_load(k2, kpath), ==, -ENOENT);
}

/* ---- messages ------------------------------------------------------------------------------ */

/* Encodes m, parses it back, and checks that every field survived and that one byte more or
 * less is refused (except in a DATA piece before the last, whose length is free). */
static void roundtrip(const struct p2p_msg *m)
{
    uint8_t buf[4096 + 64];
    size_t n;
    CHECK_INT(p2p_msg_encode(m, buf, sizeof buf - 1, &n), ==, 0);
    CHECK_INT(n, ==, p2p_msg_size(m));
    struct p2p_msg b;
    CHECK_INT(p2p_msg_parse(buf, n, &b), ==, 0);
    CHECK_INT(b.type, ==, m->type);
    CHECK_INT(b.flags, ==, m->flags);
    CHECK_INT(b.id, ==, m->id);
    CHECK_INT(b.len, ==, m->len);
    CHECK_INT(b.off, ==, m->off);
    uint8_t again[4096 + 64];
    size_t n2;
    CHECK_INT(p2p_msg_encode(&b, again, sizeof again, &n2), ==, 0);
    CHECK(n2 == n && !memcmp(buf, again, n)); /* canonical */
    buf[n] = 0;
    if (m->type != P2P_DATA || m->flags & P2P_LAST) {
        CHECK_INT(p2p_msg_parse(buf, n + 1, &b), ==, AFSP_E_FORMAT);
        CHECK_INT(p2p_msg_parse(buf, n - 1, &b), ==, AFSP_E_FORMAT);
    }
    for (int k = 2; k < 4; k++) { /* the reserved bytes */
        buf[k] = 1;
        CHECK_INT(p2p_msg_parse(buf, n, &b), ==, AFSP_E_FORMAT);
        buf[k] = 0;
    }
}

TEST(p2p_messages)
{
    uint8_t bytes[3000], bits[3];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 7);
    struct p2p_msg m = {.type = P2P_GET_BLOB, .id = 77, .off = 123, .len = 456};
    memset(m.digest, 0xab, DIGEST_LEN);
    roundtrip(&m);
    m.type = P2P_GET_INDEX;
    roundtrip(&m);
    struct p2p_msg c = {.type = P2P_GET_CHUNK, .id = 1, .chunk = 464};
    roundtrip(&c);
    struct p2p_msg h = {.type = P2P_HAVE, .id = 2};
    roundtrip(&h);
    struct p2p_msg x = {.type = P2P_CANCEL, .id = 3};
    roundtrip(&x);
    struct p2p_msg hi = {.type = P2P_HELLO, .port = 7070};
    roundtrip(&hi);
    uint8_t enc[64];
    size_t elen;
    hi.id = 1; /* HELLO is not a request: it has no id */
    CHECK_INT(p2p_msg_encode(&hi, enc, sizeof enc, &elen), ==, AFSP_E_USAGE);
    hi.id = 0, hi.port = 65536;
    CHECK_INT(p2p_msg_encode(&hi, enc, sizeof enc, &elen), ==, AFSP_E_USAGE);
    struct p2p_msg e = {.type = P2P_ERROR, .id = 4, .code = P2P_ERR_BUSY};
    roundtrip(&e);
    struct p2p_msg d = {
        .type = P2P_DATA, .id = 5, .total = 10000, .off = 1000, .len = 3000, .data = bytes};
    roundtrip(&d);
    d.off = 7000, d.flags = P2P_LAST;
    roundtrip(&d);
    struct p2p_msg z = {.type = P2P_DATA, .id = 6, .flags = P2P_LAST}; /* an empty object */
    roundtrip(&z);
    bits[0] = 0xff, bits[1] = 0x0f, bits[2] = 0x01;
    struct p2p_msg r = {.type = P2P_HAVE_REPLY, .id = 7, .nchunks = 17, .data = bits, .len = 3};
    roundtrip(&r);

    /* what the parser refuses */
    uint8_t buf[4096];
    size_t n;
    struct p2p_msg b;
    CHECK_INT(p2p_msg_parse(buf, 0, &b), ==, AFSP_E_FORMAT);
    CHECK(p2p_msg_encode(&d, buf, sizeof buf, &n) == 0);
    buf[1] = 0; /* the last piece without LAST: the flag must match the end */
    CHECK_INT(p2p_msg_parse(buf, n, &b), ==, AFSP_E_FORMAT);
    struct p2p_msg bad = d;
    bad.flags = 0;
    CHECK_INT(p2p_msg_encode(&bad, buf, sizeof buf, &n), ==, AFSP_E_USAGE);
    bad = d, bad.off = 8000; /* past the end of the object */
    CHECK_INT(p2p_msg_encode(&bad, buf, sizeof buf, &n), ==, AFSP_E_USAGE);
    bad = c, bad.chunk = P2P_CHUNKS_MAX;
    CHECK_INT(p2p_msg_encode(&bad, buf, sizeof buf, &n), ==, AFSP_E_USAGE);
    bad = e, bad.code = 99;
    CHECK_INT(p2p_msg_encode(&bad, buf, sizeof buf, &n), ==, AFSP_E_USAGE);
    bad = m, bad.off = P2P_OBJECT_MAX, bad.len = 1;
    CHECK_INT(p2p_msg_encode(&bad, buf, sizeof buf, &n), ==, AFSP_E_USAGE);
    bad = h, bad.flags = P2P_LAST; /* only DATA has flags */
    CHECK_INT(p2p_msg_encode(&bad, buf, sizeof buf, &n), ==, AFSP_E_USAGE);
    bits[2] = 0x03; /* a padding bit past chunk 16 */
    CHECK_INT(p2p_msg_encode(&r, buf, sizeof buf, &n), ==, AFSP_E_USAGE);
    bad = r, bad.nchunks = P2P_CHUNKS_MAX + 1;
    CHECK(p2p_msg_encode(&bad, buf, sizeof buf, &n) != 0);
    CHECK(p2p_msg_encode(&d, buf, 10, &n) == AFSP_E_USAGE); /* no room */
    for (unsigned t = 0; t < 256; t++) {                    /* only the known types */
        bool known = (t >= 1 && t <= 9) || (t >= 0x81 && t <= 0x83);
        memset(buf, 0, 64);
        buf[0] = (uint8_t)t;
        if (!known)
            for (size_t l = 8; l < 64; l++)
                CHECK_INT(p2p_msg_parse(buf, l, &b), ==, AFSP_E_FORMAT);
    }
    /* GOT: digest and chunk, id 0, the chunk below P2P_CHUNKS_MAX */
    struct p2p_msg gm = {.type = P2P_GOT, .chunk = 77};
    memset(gm.digest, 0xab, DIGEST_LEN);
    CHECK(p2p_msg_encode(&gm, buf, sizeof buf, &n) == 0 && n == 8 + DIGEST_LEN + 4);
    CHECK(p2p_msg_parse(buf, n, &b) == 0 && b.type == P2P_GOT && b.chunk == 77 &&
          !memcmp(b.digest, gm.digest, DIGEST_LEN));
    CHECK_INT(p2p_msg_parse(buf, n - 1, &b), ==, AFSP_E_FORMAT); /* short */
    buf[4] = 1;                                                  /* an id */
    CHECK_INT(p2p_msg_parse(buf, n, &b), ==, AFSP_E_FORMAT);
    bad = gm, bad.chunk = P2P_CHUNKS_MAX;
    CHECK_INT(p2p_msg_encode(&bad, buf, sizeof buf, &n), ==, AFSP_E_USAGE);
    /* DHT: opaque bytes, 1 to P2P_DHT_MAX of them, id 0 */
    static uint8_t big[8 + P2P_DHT_MAX + 1];
    uint8_t body[3] = {1, 2, 3};
    struct p2p_msg dm = {.type = P2P_DHT, .data = body, .len = 3};
    CHECK(p2p_msg_encode(&dm, buf, sizeof buf, &n) == 0 && n == 11);
    CHECK(p2p_msg_parse(buf, n, &b) == 0 && b.len == 3 && !memcmp(b.data, body, 3));
    CHECK_INT(p2p_msg_parse(buf, 8, &b), ==, AFSP_E_FORMAT); /* empty */
    buf[4] = 1;                                              /* an id */
    CHECK_INT(p2p_msg_parse(buf, n, &b), ==, AFSP_E_FORMAT);
    big[0] = P2P_DHT;
    CHECK_INT(p2p_msg_parse(big, sizeof big, &b), ==, AFSP_E_FORMAT);
    CHECK_INT(p2p_msg_parse(big, sizeof big - 1, &b), ==, 0);
}
