/*
 * test_peer.c - requests and answers over one connection (p2p/peer.c), two peers in memory:
 * answers in pieces and in order, the window, errors, stalls and cancels, the serving limit,
 * and a peer that breaks the protocol.
 */
#include "../../p2p/p2p.h"
#include "../../sim/sim.h"
#include "test.h"

#include <errno.h>

struct side {
    struct p2p_peer *p;
    struct p2p_identity id;
    uint8_t key[32];
    uint64_t rng;
    /* as a server: what to do with requests */
    enum { SERVE, IGNORE, NOT_FOUND, HAVE_ALL } mode;
    const uint8_t *object;
    size_t object_len;
    uint32_t pending_ids[256], npending;
    int answer_rc;
    int sources_done;
    /* as a requester */
    uint8_t *got;
    size_t got_len;
    int ndone, last_rc, hellos;
    uint16_t hello_port;
    size_t tx_max;     /* the connection's; 0: the default */
    uint32_t stall_ms; /* 0: 3000 */
    uint32_t request_ms;
};

static int src_read(void *arg, uint64_t off, uint8_t *buf, size_t n)
{
    struct side *s = arg;
    CHECK(off + n <= s->object_len);
    memcpy(buf, s->object + off, n);
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
    if (s->mode == IGNORE)
        s->pending_ids[s->npending++] = m->id;
    else if (s->mode == NOT_FOUND)
        CHECK(p2p_peer_answer_error(p, m->id, P2P_ERR_NOT_FOUND) == 0);
    else if (s->mode == HAVE_ALL) { /* a layer of 2^19 chunks, all here: a 64 KiB bitmap */
        static uint8_t all[(1u << 19) / 8];
        memset(all, 0xff, sizeof all);
        s->answer_rc = p2p_peer_answer_have(p, m->id, 1u << 19, all);
    } else
        CHECK(p2p_peer_answer_data(p, m->id, s->object_len, 0, s->object_len, &src) == 0);
}

static int on_data(void *arg, struct p2p_peer *p, void *req, uint64_t total, uint64_t off,
                   const uint8_t *b, size_t n)
{
    struct side *s = arg;
    (void)p;
    (void)req;
    CHECK_INT(off, ==, s->got_len);
    s->got = realloc(s->got, total ? total : 1);
    CHECK(s->got);
    memcpy(s->got + off, b, n);
    s->got_len += n;
    return 0;
}

static void on_done(void *arg, struct p2p_peer *p, void *req, int rc)
{
    struct side *s = arg;
    (void)p;
    (void)req;
    s->ndone++;
    s->last_rc = rc;
}

static void on_hello(void *arg, struct p2p_peer *p, uint16_t port)
{
    struct side *s = arg;
    (void)p;
    s->hellos++;
    s->hello_port = port;
}

static const struct p2p_peer_ops ops = {
    .request = on_request, .data = on_data, .done = on_done, .hello = on_hello};

static void side_new(struct side *s, bool initiator, uint8_t seed_fill, uint32_t window)
{
    uint8_t seed[32];
    size_t tx_max = s->tx_max; /* the settings a caller may make first */
    uint32_t stall_ms = s->stall_ms, request_ms = s->request_ms;
    memset(s, 0, sizeof *s);
    s->tx_max = tx_max;
    memset(seed, seed_fill, sizeof seed);
    CHECK(p2p_identity_from_seed(&s->id, seed) == 0);
    memset(s->key, 7, sizeof s->key);
    s->rng = seed_fill;
    struct p2p_peer_cfg c = {
        .conn = {initiator, &s->id, s->key, rng_fill, &s->rng, 1000, 0, 0, s->tx_max},
        .ops = &ops,
        .arg = s,
        .window = window,
        .stall_ms = stall_ms ? stall_ms : 3000,
        .request_ms = request_ms};
    CHECK(p2p_peer_new(&s->p, &c) == 0);
}

/* Moves bytes both ways (answers produced as the connection drains, 4 MiB at a time) until
 * nothing moves (sim/pipe.c). */
static int shuttle(struct side *a, struct side *b, uint64_t now)
{
    return sim_peer_shuttle(a->p, b->p, 4u << 20, now);
}

static void pair(struct side *a, struct side *b, uint32_t window)
{
    side_new(a, true, 1, window);
    side_new(b, false, 2, 0);
    CHECK(shuttle(a, b, 1000) == 0);
    CHECK(p2p_conn_established(p2p_peer_conn(a->p)));
    CHECK(p2p_conn_established(p2p_peer_conn(b->p)));
}

static void sides_free(struct side *a, struct side *b)
{
    p2p_peer_free(a->p, 0);
    p2p_peer_free(b->p, 0);
    free(a->got);
    free(b->got);
}

static struct p2p_msg get_chunk(uint32_t n)
{
    struct p2p_msg m = {.type = P2P_GET_CHUNK, .chunk = n};
    memset(m.digest, 0xab, DIGEST_LEN);
    return m;
}

TEST(peer_answers_come_whole_and_in_order)
{
    struct side a = {0}, b = {0};
    pair(&a, &b, 0);
    size_t len = (5u << 20) / 2 + 17; /* three DATA pieces */
    uint8_t *obj = malloc(len);
    CHECK(obj);
    for (size_t i = 0; i < len; i++)
        obj[i] = (uint8_t)(i * 7 + (i >> 12));
    b.object = obj;
    b.object_len = len;
    struct p2p_msg m = get_chunk(3);
    CHECK(p2p_peer_hello(b.p, 7070) == 0);
    CHECK(p2p_peer_request(a.p, &m, len, &a, 1000) == 0);
    CHECK_INT(p2p_peer_inflight(a.p), ==, 1);
    CHECK(shuttle(&a, &b, 1001) == 0);
    CHECK_INT(a.ndone, ==, 1);
    CHECK_INT(a.last_rc, ==, 0);
    CHECK_INT(a.got_len, ==, len);
    CHECK(memcmp(a.got, obj, len) == 0);
    CHECK_INT(b.sources_done, ==, 1);
    CHECK_INT(p2p_peer_inflight(a.p), ==, 0);
    CHECK_INT(p2p_peer_serving(b.p), ==, 0);
    CHECK_INT(a.hellos, ==, 1);
    CHECK_INT(a.hello_port, ==, 7070);

    /* A ranged GET_BLOB ends at its range, not at the object's end. */
    free(a.got);
    a.got = NULL;
    a.got_len = 0;
    struct p2p_msg r = {.type = P2P_GET_BLOB, .off = 0, .len = 1000};
    b.mode = IGNORE;
    CHECK(p2p_peer_request(a.p, &r, len, &a, 1001) == 0);
    CHECK(shuttle(&a, &b, 1002) == 0);
    struct p2p_source src = {src_read, src_done, &b};
    CHECK(p2p_peer_answer_data(b.p, b.pending_ids[0], len, 0, 1000, &src) == 0);
    CHECK(shuttle(&a, &b, 1003) == 0);
    CHECK_INT(a.ndone, ==, 2);
    CHECK_INT(a.last_rc, ==, 0);
    CHECK_INT(a.got_len, ==, 1000);
    sides_free(&a, &b);
    free(obj);
}

TEST(peer_window_errors_stalls_and_cancels)
{
    struct side a = {0}, b = {0};
    pair(&a, &b, 4);
    b.mode = NOT_FOUND;
    struct p2p_msg m = get_chunk(1);
    CHECK(p2p_peer_request(a.p, &m, 100, &a, 1000) == 0);
    CHECK(shuttle(&a, &b, 1001) == 0);
    CHECK_INT(a.ndone, ==, 1);
    CHECK_INT(a.last_rc, ==, AFSP_E_NOTFOUND);

    /* The window: four outstanding, the fifth waits. */
    b.mode = IGNORE;
    for (int i = 0; i < 4; i++)
        CHECK(p2p_peer_request(a.p, &m, 100, &a, 1001) == 0);
    CHECK_INT(p2p_peer_request(a.p, &m, 100, &a, 1001), ==, -EAGAIN);
    CHECK(shuttle(&a, &b, 1002) == 0);
    CHECK_INT(p2p_peer_serving(b.p), ==, 4);

    /* Nothing comes: each fails at the stall deadline and is cancelled at the server. */
    CHECK_INT(p2p_peer_deadline(a.p), ==, 1001 + 3000);
    CHECK(p2p_peer_tick(a.p, 3999) == 0);
    CHECK_INT(a.ndone, ==, 1);
    CHECK(p2p_peer_tick(a.p, 4002) == 0);
    CHECK_INT(a.ndone, ==, 5);
    CHECK_INT(a.last_rc, ==, -ETIMEDOUT);
    CHECK(shuttle(&a, &b, 4003) == 0);
    CHECK_INT(p2p_peer_serving(b.p), ==, 0);
    /* An answer that comes after the cancel is dropped on both sides. */
    struct p2p_source src = {src_read, src_done, &b};
    CHECK(p2p_peer_answer_data(b.p, b.pending_ids[0], 0, 0, 0, &src) == 0);
    CHECK_INT(b.sources_done, ==, 1);
    CHECK(shuttle(&a, &b, 4004) == 0);
    CHECK_INT(a.ndone, ==, 5);

    /* The requester withdraws: done is not called. */
    CHECK(p2p_peer_request(a.p, &m, 100, &b, 4004) == 0);
    p2p_peer_cancel(a.p, &b);
    CHECK_INT(p2p_peer_inflight(a.p), ==, 0);
    CHECK(shuttle(&a, &b, 4005) == 0);
    CHECK_INT(a.ndone, ==, 5);
    CHECK_INT(p2p_peer_serving(b.p), ==, 0);
    sides_free(&a, &b);
}

/* A connection that carried nothing for longer than the stall timeout (here 60 s, at 3 s) and
 * then gets a request: the request has its full stall time from when it was made. (It used to
 * take its deadline from the last byte received, so it stalled at once: issue 14's idle bug.) */
TEST(peer_request_after_an_idle_connection_has_its_whole_stall_time)
{
    struct side a = {0}, b = {0};
    pair(&a, &b, 0);
    uint8_t obj[100] = {9};
    b.object = obj;
    b.object_len = sizeof obj;
    uint64_t later = 1000 + 60000; /* nothing ran on the connection meanwhile: no timer was due */
    struct p2p_msg m = get_chunk(1);
    b.mode = IGNORE;
    CHECK(p2p_peer_request(a.p, &m, sizeof obj, &a, later + 5) == 0);
    CHECK_INT(p2p_peer_deadline(a.p), ==, later + 5 + 3000);
    CHECK(p2p_peer_tick(a.p, later + 5) == 0);
    CHECK(p2p_peer_tick(a.p, later + 3004) == 0);
    CHECK_INT(a.ndone, ==, 0);
    CHECK(shuttle(&a, &b, later + 3004) == 0);
    struct p2p_source src = {src_read, src_done, &b};
    CHECK(p2p_peer_answer_data(b.p, b.pending_ids[0], sizeof obj, 0, sizeof obj, &src) == 0);
    CHECK(shuttle(&a, &b, later + 3004) == 0);
    CHECK_INT(a.ndone, ==, 1);
    CHECK_INT(a.last_rc, ==, 0);
    CHECK_INT(a.got_len, ==, sizeof obj);
    sides_free(&a, &b);
}

TEST(peer_serving_limit_answers_busy)
{
    struct side a = {0}, b = {0};
    pair(&a, &b, P2P_SERVING_MAX + 8);
    b.mode = IGNORE;
    struct p2p_msg m = get_chunk(1);
    for (int i = 0; i < P2P_SERVING_MAX + 8; i++)
        CHECK(p2p_peer_request(a.p, &m, 100, &a, 1000) == 0);
    CHECK(shuttle(&a, &b, 1001) == 0);
    CHECK_INT(p2p_peer_serving(b.p), ==, P2P_SERVING_MAX);
    CHECK_INT(a.ndone, ==, 8);
    CHECK_INT(a.last_rc, ==, -EBUSY);
    CHECK_INT(p2p_peer_error(b.p), ==, 0);
    sides_free(&a, &b);
}

TEST(peer_breaking_the_protocol_ends_the_connection)
{
    struct side a = {0}, b = {0};
    uint8_t obj[300] = {1, 2, 3};
    /* An object bigger than the asker takes is no breach: that request fails (an index of a
     * layer with many long xattrs can be thousands of times its blob), the connection stays. It
     * used to end the connection, and every other request on it. */
    pair(&a, &b, 0);
    b.object = obj;
    b.object_len = sizeof obj;
    struct p2p_msg m = get_chunk(1);
    CHECK(p2p_peer_request(a.p, &m, 200, &a, 1000) == 0);
    CHECK_INT(shuttle(&a, &b, 1001), ==, 0);
    CHECK_INT(a.ndone, ==, 1);
    CHECK_INT(a.last_rc, ==, AFSP_E_SIZE);
    CHECK(p2p_peer_request(a.p, &m, sizeof obj, &a, 1001) == 0);
    CHECK_INT(shuttle(&a, &b, 1002), ==, 0);
    CHECK_INT(a.ndone, ==, 2);
    CHECK_INT(a.last_rc, ==, 0);
    sides_free(&a, &b);

    /* Two outstanding requests with one id. */
    pair(&a, &b, 0);
    b.mode = IGNORE;
    uint8_t frame[64];
    size_t n;
    struct p2p_msg dup = get_chunk(2);
    dup.id = 9;
    CHECK(p2p_msg_encode(&dup, frame, sizeof frame, &n) == 0);
    CHECK(p2p_conn_send(p2p_peer_conn(a.p), frame, n) == 0);
    CHECK(p2p_conn_send(p2p_peer_conn(a.p), frame, n) == 0);
    CHECK_INT(shuttle(&a, &b, 1001), ==, AFSP_E_PROTO);
    CHECK_INT(p2p_peer_error(b.p), ==, AFSP_E_PROTO);
    CHECK_INT(p2p_peer_serving(b.p), ==, 0);
    sides_free(&a, &b);
}

/* Server b sends one DATA piece of its own making for request id. */
static void raw_piece(struct side *b, uint32_t id, uint64_t total, uint64_t off, uint32_t len)
{
    static uint8_t bytes[P2P_DATA_MAX], frame[P2P_DATA_HDR + P2P_DATA_MAX];
    struct p2p_msg d = {.type = P2P_DATA,
                        .id = id,
                        .total = total,
                        .off = off,
                        .len = len,
                        .data = bytes,
                        .flags = off + len == total ? P2P_LAST : 0};
    size_t n;
    CHECK(p2p_msg_encode(&d, frame, sizeof frame, &n) == 0);
    CHECK(p2p_conn_send(p2p_peer_conn(b->p), frame, n) == 0);
}

/* A peer that answers with an empty piece every 4 s, against a 3 s stall limit (issue 15): the
 * request used to stay open, every piece resetting its deadline (still after 240 s). A piece that
 * is not the last must be whole, so the first empty one ends the connection; so does a short
 * one. */
TEST(peer_empty_pieces_do_not_hold_a_request)
{
    struct side a = {0}, b = {0};
    pair(&a, &b, 0);
    b.mode = IGNORE;
    struct p2p_msg m = get_chunk(1);
    CHECK(p2p_peer_request(a.p, &m, 100, &a, 1000) == 0);
    CHECK(shuttle(&a, &b, 1000) == 0);
    uint64_t t = 1000;
    while (a.ndone == 0 && t < 1000 + 240000) {
        t += 4000;
        raw_piece(&b, b.pending_ids[0], 100, 0, 0);
        shuttle(&a, &b, t);
        p2p_peer_tick(a.p, t);
    }
    CHECK_INT(a.ndone, ==, 1);
    CHECK_INT(t, ==, 1000 + 4000);
    CHECK_INT(a.last_rc, ==, AFSP_E_PROTO);
    sides_free(&a, &b);

    pair(&a, &b, 0);
    b.mode = IGNORE;
    CHECK(p2p_peer_request(a.p, &m, 100, &a, 1000) == 0);
    CHECK(shuttle(&a, &b, 1000) == 0);
    raw_piece(&b, b.pending_ids[0], 100, 0, 1);
    CHECK_INT(shuttle(&a, &b, 1001), ==, AFSP_E_PROTO);
    CHECK_INT(a.ndone, ==, 1);
    CHECK_INT(a.last_rc, ==, AFSP_E_PROTO);
    sides_free(&a, &b);
}

/* Whole pieces, each just inside the stall limit, of a 64 MiB object: slower than P2P_MIN_RATE.
 * The request ends at its overall limit (request_ms and a millisecond for every P2P_MIN_RATE /
 * 1000 bytes), not a millisecond before, with part of the object; asked with room for 512 MiB
 * (an index's most), the limit is still that of the 64 MiB the answer declares. It was that of
 * 512 MiB, about 35 minutes. */
TEST(peer_request_ends_at_its_overall_limit)
{
    for (int k = 0; k < 2; k++) {
        struct side a = {.stall_ms = 5000, .request_ms = 10000}, b = {0};
        pair(&a, &b, 0);
        b.mode = IGNORE;
        uint64_t total = 64u << 20, max = k ? 512u << 20 : total;
        struct p2p_msg m = {.type = P2P_GET_BLOB, .off = 0, .len = total};
        CHECK(p2p_peer_request(a.p, &m, max, &a, 1000) == 0);
        CHECK(shuttle(&a, &b, 1000) == 0);
        uint64_t limit = 1000 + 10000 + total / (P2P_MIN_RATE / 1000), t = 1000, off = 0;
        while (a.ndone == 0 && off < total) {
            t += 4999;
            if (t >= limit) {
                CHECK(p2p_peer_tick(a.p, limit - 1) == 0);
                CHECK_INT(a.ndone, ==, 0);
                CHECK(p2p_peer_tick(a.p, limit) == 0);
                break;
            }
            raw_piece(&b, b.pending_ids[0], total, off, P2P_DATA_MAX);
            off += P2P_DATA_MAX;
            CHECK(shuttle(&a, &b, t) == 0);
            CHECK(p2p_peer_tick(a.p, t) == 0);
        }
        CHECK_INT(a.ndone, ==, 1);
        CHECK_INT(a.last_rc, ==, -ETIMEDOUT);
        CHECK_INT(a.got_len, <, total);
        sides_free(&a, &b);
    }
}

/* A peer that asks and never reads (issue 15): 20,000 HAVE requests, each answered at once with
 * a 64 KiB bitmap, and not a byte taken. The server queues at most its tx_max (the node's is
 * NODE_LINK_TX_MAX), then its connection fails with ENOBUFS instead of growing: before, the
 * limit was 64 MiB for every connection. */
TEST(peer_that_never_reads_costs_at_most_its_queue)
{
    struct side a = {0}, b = {.tx_max = 8u << 20};
    pair(&a, &b, 0);
    b.mode = HAVE_ALL;
    struct p2p_msg m = {.type = P2P_HAVE};
    memset(m.digest, 3, sizeof m.digest);
    uint8_t frame[128];
    size_t n, most = 0;
    const uint8_t *q;
    int rc = 0;
    for (uint32_t i = 0; i < 20000 && rc == 0; i++) {
        m.id = i + 1;
        CHECK(p2p_msg_encode(&m, frame, sizeof frame, &n) == 0);
        CHECK(p2p_conn_send(p2p_peer_conn(a.p), frame, n) == 0);
        if (i % 100 == 99 || i == 19999) {
            rc = sim_peer_move(a.p, b.p, 2000); /* b takes a's requests; no one takes b's bytes */
            most = MAX(most, p2p_conn_pending(p2p_peer_conn(b.p), &q));
        }
    }
    CHECK(most <= b.tx_max);
    CHECK(most > b.tx_max - (80u << 10)); /* it did fill up */
    CHECK_INT(p2p_peer_error(b.p), ==, -ENOBUFS);
    sides_free(&a, &b);
}
