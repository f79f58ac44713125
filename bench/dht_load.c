/*
 * dht_load.c - many DHT peers against one running `afsp node`, for its memory figure: PEERS
 * cluster members, each with its own identity, its own source address (127.1.x.y, so that the
 * node's per-address accept limit is not what is measured) and its own real DHT core, connect to
 * the node over the real transport (Noise handshake with the cluster key), join through it and
 * announce RECORDS random keys each. The node ends up knowing every one of them (a link each,
 * its routing table as full as Kademlia fills it) and holding PEERS x RECORDS provider records.
 * The peers answer the node's DHT requests for as long as this runs; nothing else is served.
 * Any other node the DHT names is reported unreachable at once (the peers only talk to the node).
 *
 * usage: dht_load HOST:PORT CLUSTER_KEY_FILE PEERS RECORDS
 * Prints "up N" once N peers completed the handshake, then runs until killed.
 */
#include "../dht/dht.h"
#include "../p2p/p2p.h"
#include "../sim/sim.h"
#include "../util/util.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define RBUF (64u << 10)
#define CONNECTS_PER_TICK 20
#define TICK_MS 10

struct fake {
    uv_tcp_t tcp;
    struct p2p_identity id;
    struct p2p_peer *p;
    struct dht *d;
    bool up, writing, closed;
    uint8_t node_id[DHT_ID_LEN];
};

static uv_loop_t *loop;
static struct sockaddr_in target;
static struct dht_addr target_addr;
static uint8_t ckey[P2P_KEY_LEN];
static struct fake *fakes;
static int npeers, nrecords, nstarted, nup;
static uint8_t rbuf[RBUF];
static uv_timer_t tick;

static void rng(void *arg, uint8_t *b, size_t n)
{
    (void)arg;
    randombytes_buf(b, n);
}

static void fake_flush(struct fake *f);

static void on_write(uv_write_t *w, int status)
{
    struct fake *f = w->data;
    free(w);
    f->writing = false;
    if (status < 0) {
        f->closed = true;
        return;
    }
    fake_flush(f);
}

static void fake_flush(struct fake *f)
{
    while (!f->closed && !f->writing) {
        const uint8_t *p;
        struct p2p_conn *c = p2p_peer_conn(f->p);
        size_t n = p2p_conn_pending(c, &p);
        if (!n)
            return;
        uv_write_t *w = malloc(sizeof *w + n);
        if (!w)
            abort();
        sim_conn_take(c, (uint8_t *)(w + 1), n);
        w->data = f;
        uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)n);
        if (uv_write(w, (uv_stream_t *)&f->tcp, &b, 1, on_write) < 0) {
            free(w);
            f->closed = true;
            return;
        }
        f->writing = true;
    }
}

/* What the DHT core wants sent: to the node over the link; any other node is unreachable. */
static void fake_drain(struct fake *f)
{
    static struct dht_out o;
    uint64_t now = uv_now(loop);
    while (dht_output(f->d, &o)) {
        if (f->up && !f->closed && !memcmp(o.to.id, f->node_id, DHT_ID_LEN))
            p2p_peer_send_dht(f->p, o.msg, o.len);
        else
            dht_unreachable(f->d, o.to.id, now);
    }
    fake_flush(f);
}

static void op_request(void *arg, struct p2p_peer *p, const struct p2p_msg *m)
{
    (void)arg;
    p2p_peer_answer_error(p, m->id, P2P_ERR_NOT_FOUND);
}

static void op_dht(void *arg, struct p2p_peer *p, const uint8_t *b, size_t n)
{
    struct fake *f = arg;
    (void)p;
    dht_input(f->d, f->node_id, &target_addr, b, n, uv_now(loop));
}

static const struct p2p_peer_ops ops = {.request = op_request, .dht = op_dht};

static void fake_up(struct fake *f)
{
    uint64_t now = uv_now(loop);
    f->up = true;
    memcpy(f->node_id, p2p_conn_peer_id(p2p_peer_conn(f->p)), DHT_ID_LEN);
    /* a port of its own, so that the node may keep it as a contact and a provider (nothing
     * listens there: a dial by the node is refused) */
    p2p_peer_hello(f->p, (uint16_t)(20000 + (f - fakes)));
    struct dht_contact c = {.addr = target_addr};
    memcpy(c.id, f->node_id, DHT_ID_LEN);
    dht_add_contact(f->d, &c, now);
    for (int i = 0; i < nrecords; i++) {
        uint8_t key[DHT_ID_LEN];
        randombytes_buf(key, sizeof key);
        dht_provide(f->d, key, now);
    }
    if (++nup == npeers || nup % 100 == 0) {
        printf("up %d\n", nup);
        fflush(stdout);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    *b = uv_buf_init((char *)rbuf, RBUF);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct fake *f = s->data;
    size_t used;
    if (nread == 0 || f->closed)
        return;
    if (nread < 0) {
        fprintf(stderr, "dht_load: peer %d: the node closed the connection\n", (int)(f - fakes));
        f->closed = true;
        uv_read_stop(s);
        return;
    }
    bool was = p2p_conn_established(p2p_peer_conn(f->p));
    if (p2p_peer_input(f->p, (const uint8_t *)b->base, (size_t)nread, uv_now(loop), &used) < 0 ||
        used != (size_t)nread) {
        fprintf(stderr, "dht_load: peer %d: %s\n", (int)(f - fakes), err_str(p2p_peer_error(f->p)));
        f->closed = true;
        uv_read_stop(s);
        return;
    }
    if (!was && p2p_conn_established(p2p_peer_conn(f->p)))
        fake_up(f);
    fake_drain(f);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct fake *f = req->data;
    free(req);
    if (status < 0) {
        fprintf(stderr, "dht_load: connect: %s\n", uv_strerror(status));
        f->closed = true;
        return;
    }
    uv_tcp_nodelay(&f->tcp, 1);
    uv_read_start((uv_stream_t *)&f->tcp, on_alloc, on_read);
    fake_flush(f);
}

static void fake_start(int i)
{
    struct fake *f = &fakes[i];
    uint8_t seed[32];
    randombytes_buf(seed, sizeof seed);
    uint64_t now = uv_now(loop);
    struct p2p_peer_cfg cfg = {
        .conn = {true, &f->id, ckey, rng, NULL, now, 0, 0, 0}, .ops = &ops, .arg = f};
    struct dht_cfg dc = {.id = f->id.id, .rng = rng, .now_ms = now};
    if (p2p_identity_from_seed(&f->id, seed) < 0 || p2p_peer_new(&f->p, &cfg) < 0 ||
        dht_new(&f->d, &dc) < 0)
        abort();
    uv_tcp_init(loop, &f->tcp);
    f->tcp.data = f;
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f010000u | (uint32_t)((i / 250) << 8) | (uint32_t)(i % 250 + 1));
    uv_tcp_bind(&f->tcp, (struct sockaddr *)&src, 0);
    uv_connect_t *req = malloc(sizeof *req);
    if (!req)
        abort();
    req->data = f;
    if (uv_tcp_connect(req, &f->tcp, (struct sockaddr *)&target, on_connect) < 0)
        abort();
}

/* Starts the next connections, and runs every peer's DHT and connection timers. */
static void on_tick(uv_timer_t *t)
{
    (void)t;
    for (int k = 0; k < CONNECTS_PER_TICK && nstarted < npeers; k++)
        fake_start(nstarted++);
    uint64_t now = uv_now(loop);
    for (int i = 0; i < nstarted; i++) {
        struct fake *f = &fakes[i];
        if (f->closed)
            continue;
        if (dht_deadline(f->d) <= now)
            dht_tick(f->d, now);
        if (p2p_peer_deadline(f->p) <= now && p2p_peer_tick(f->p, now) < 0) {
            f->closed = true;
            continue;
        }
        fake_drain(f);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: dht_load HOST:PORT CLUSTER_KEY_FILE PEERS RECORDS\n");
        return 2;
    }
    char host[64];
    const char *colon = strrchr(argv[1], ':');
    if (!colon || (size_t)(colon - argv[1]) >= sizeof host)
        return 2;
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = 0;
    if (uv_ip4_addr(host, atoi(colon + 1), &target) < 0)
        return 2;
    target_addr.family = 4;
    memcpy(target_addr.ip, &target.sin_addr, 4);
    target_addr.port = (uint16_t)atoi(colon + 1);
    npeers = atoi(argv[3]);
    nrecords = atoi(argv[4]);
    if (sodium_init() < 0 || npeers < 1 || npeers > 60000 || nrecords < 0 ||
        p2p_cluster_key_load(ckey, argv[2]) < 0)
        return 2;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!(fakes = calloc((size_t)npeers, sizeof *fakes)))
        return 1;
    loop = uv_default_loop();
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 0, TICK_MS);
    return uv_run(loop, UV_RUN_DEFAULT);
}
