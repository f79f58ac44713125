/*
 * link.c - links: the node's connections to its peers, each a p2p_peer (handshake, frames,
 * requests and answers) whose bytes the caller carries.
 *
 * A link's life (enum link_state):
 *
 *                 link_dial                 node_link_connected        handshake done
 *   (core) ---------------------> DIALING ----------------------> HANDSHAKE -----------> UP
 *                                    |     node_link_accepted --->    |                  |
 *                                    |                                |                  |
 *                                    +-------------+------------------+------------------+
 *                                                  | link_close(rc): a failed dial or
 *                                                  v handshake, an error, a duplicate, idle,
 *                                              CLOSING   the node stops
 *                                                  | links_closing_run (in node_settle):
 *                                                  v the DHT told, requests ended, seed
 *                                               CLOSED   redialed, NODE_FX_CLOSE
 *                                                  | node_link_release (the caller is done)
 *                                                  v
 *                                                freed
 *
 * Only UP links carry requests and DHT messages; a DIALING or HANDSHAKE link dialed to reach a
 * node (expect) holds that node's DHT messages until it is up. link_up applies the one-link-
 * per-pair rule (docs/protocol.md, "One connection per pair"): of two up links between the same
 * two nodes, both ends keep the one the smaller ID initiated; of two the same node initiated,
 * both keep the one with the smaller handshake hash.
 *
 * Owns: links, their timers (handshake and stalled requests through p2p_peer, idle close), the
 * link cap and the per-source accept limit. Must not: do I/O, or run a close's consequences
 * inside the call that decided it (link_close only marks).
 */
#include "node_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const char *id_short(const uint8_t *id, char out[static 17])
{
    return hex_fmt(id, 8, out);
}

static void on_link_timer(struct node *n, struct node_timer *t, uint64_t now);
static const struct p2p_peer_ops peer_ops;

static struct node_link *link_new(struct node *n, bool initiator, uint64_t now)
{
    struct node_link *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->n = n;
    k->dq_tail = &k->dq;
    k->serial = ++n->serials;
    k->initiator = initiator;
    k->t0 = k->last_io = now;
    k->state = initiator ? LINK_DIALING : LINK_HANDSHAKE;
    timer_init(&k->timer, on_link_timer);
    struct p2p_peer_cfg cfg = {.conn = {.initiator = initiator,
                                        .id = n->id,
                                        .cluster_key = n->ckey,
                                        .rng = n->cfg.rng,
                                        .rng_arg = n->cfg.rng_arg,
                                        .now_ms = now,
                                        .handshake_ms = n->t.handshake,
                                        .tx_max = NODE_LINK_TX_MAX},
                               .ops = &peer_ops,
                               .arg = k,
                               .stall_ms = (uint32_t)n->t.stall,
                               .request_ms = (uint32_t)n->t.request};
    if (p2p_peer_new(&k->p, &cfg) < 0) {
        free(k);
        return NULL;
    }
    k->next = n->links;
    if (n->links)
        n->links->pprev = &k->next;
    k->pprev = &n->links;
    n->links = k;
    n->nlinks++;
    link_touch(k); /* the handshake's deadline (it covers a dial's connect) */
    return k;
}

void link_touch(struct node_link *k)
{
    if (k->touched || k->state >= LINK_CLOSING)
        return;
    k->touched = true;
    k->touched_next = k->n->touched;
    k->n->touched = k;
}

bool link_usable(const struct node_link *k, uint64_t now)
{
    return k->state == LINK_UP && k->ban_until <= now;
}

struct node_link *link_to(struct node *n, const uint8_t id[static P2P_ID_LEN], bool pending)
{
    for (struct node_link *k = n->links; k; k = k->next)
        if (k->state == LINK_UP && !memcmp(k->peer_id, id, P2P_ID_LEN))
            return k;
    for (struct node_link *k = n->links; k && pending; k = k->next)
        if ((k->state == LINK_DIALING || k->state == LINK_HANDSHAKE) && k->expect &&
            !memcmp(k->expect_id, id, P2P_ID_LEN))
            return k;
    return NULL;
}

void link_ban(struct node_link *k, const char *why, uint64_t now)
{
    char id[17];
    if (k->state != LINK_UP)
        return; /* its requests end with the connection */
    bool again = k->ban_until > now;
    k->ban_until = now + k->n->t.ban;
    if (!again) /* one line for the answers of a window that fail together */
        log_warn("event=peer_banned id=%s addr=%s for_s=%" PRIu64 " reason=\"%s\"",
                 id_short(k->peer_id, id), k->addr, k->n->t.ban / 1000, why);
    k->n->jobs_dirty = true; /* its requests move to other links */
}

void link_peer_addr(const struct node_link *k, struct dht_addr *out)
{
    if (k->dialed.port) {
        *out = k->dialed;
        return;
    }
    memset(out, 0, sizeof *out);
    if (k->hello_port && k->from.family) {
        *out = k->from;
        out->port = k->hello_port;
    }
}

/* ---- closing --------------------------------------------------------------------------------- */

void link_close(struct node_link *k, int rc)
{
    if (k->state >= LINK_CLOSING)
        return;
    struct node *n = k->n;
    k->close_rc = rc;
    k->close_from = k->state;
    k->state = LINK_CLOSING;
    k->closing_next = n->closing;
    n->closing = k;
}

/* The consequences of k's close, in order: the DHT hears that a node it talked to is gone (not
 * when a duplicate closes, or the node stops), what waited on the link is dropped, the seed is
 * dialed again, and the peer's requests end (their jobs move the chunks to other links). */
static void link_closed(struct node_link *k, uint64_t now)
{
    struct node *n = k->n;
    char id[17];
    int rc = k->close_rc;
    bool was_up = k->close_from == LINK_UP;
    if (!n->stopping && rc != LINK_DUPLICATE) {
        const uint8_t *gone = was_up ? k->peer_id : k->expect ? k->expect_id : NULL;
        struct node_link *other = gone ? link_to(n, gone, true) : NULL;
        if (gone && !other && (was_up ? rc != 0 && rc != LINK_IDLE : true))
            dht_unreachable(n->dht, gone, now);
    }
    route_dq_drop(k);
    if (was_up)
        log_info("event=peer_down id=%s addr=%s reason=\"%s\"", id_short(k->peer_id, id), k->addr,
                 rc == LINK_IDLE ? "idle" : err_str(rc));
    else if (rc != -ECANCELED)
        log_info("event=handshake_failed addr=%s reason=\"%s\"", k->addr, err_str(rc));
    if (!was_up && (rc == AFSP_E_AUTH || rc == AFSP_E_FORMAT || rc == -ETIMEDOUT))
        n->st.handshake_failures++;
    if (was_up && rc != -ECANCELED && rc != LINK_DUPLICATE && rc != LINK_IDLE &&
        rc != -ECONNRESET && rc != 0)
        n->st.peer_errors++;
    *k->pprev = k->next;
    if (k->next)
        k->next->pprev = k->pprev;
    k->next = NULL;
    n->nlinks--;
    timer_stop(n, &k->timer);
    if (k->seeds && !n->stopping)
        seed_timers_failed(n, k, now);
    struct p2p_peer *p = k->p;
    k->p = NULL;
    k->state = LINK_CLOSED;
    p2p_peer_free(p, rc ? rc : -ECONNRESET); /* our requests' done: fetch_on_done */
    serve_link_closed(k);
    fetch_link_closed(n, k);
    if (was_up)
        counters_link_closed(n, k);
    n->jobs_dirty = true;
    fx_push(n, &(struct node_effect){.type = NODE_FX_CLOSE, .link = k});
}

void links_closing_run(struct node *n, uint64_t now)
{
    while (n->closing) {
        struct node_link *k = n->closing;
        n->closing = k->closing_next;
        link_closed(k, now);
    }
}

void node_link_release(struct node *n, struct node_link *k)
{
    (void)n;
    if (k->state != LINK_CLOSED)
        return; /* not closed yet: a caller's mistake, and the core still uses it */
    free(k);
}

/* ---- room, idle links, the accept limit ------------------------------------------------------ */

/* Nothing waits on the link: no request either way, no byte to send, no DHT message queued, and
 * it is not a seed's (those stay: they are how the node finds the cluster again). */
static bool link_idle(const struct node_link *k)
{
    return k->state == LINK_UP && !k->seeds && !k->ndq && !p2p_peer_inflight(k->p) &&
           !p2p_peer_serving(k->p) &&
           !p2p_conn_pending(p2p_peer_conn(k->p), &(const uint8_t *){NULL});
}

/* A link is closed for being idle by the node that dialed it, never by the other: a node dials
 * its seeds, so the other end cannot close a seed's link under it (docs/protocol.md). Room at
 * the link cap is made from any idle link. */
static bool link_idle_closes(const struct node *n, const struct node_link *k)
{
    return n->t.idle && k->initiator && link_idle(k);
}

/* The handshake an outsider is likeliest to be holding: the oldest one this node accepted and
 * has not finished; and how many there are. */
static struct node_link *oldest_accepted_handshake(const struct node *n, size_t *count)
{
    struct node_link *old = NULL;
    *count = 0;
    for (struct node_link *k = n->links; k; k = k->next)
        if (!k->initiator && k->state == LINK_HANDSHAKE) {
            ++*count;
            if (!old || k->t0 < old->t0)
                old = k;
        }
    return old;
}

static void crowd_out(struct node *n, struct node_link *k)
{
    n->st.handshakes_crowded++;
    log_debug("event=handshake_crowded addr=%s", k->addr);
    link_close(k, LINK_CROWDED);
}

/* Room for one more link: true if there is, or a link was closed to make it: the oldest
 * unfinished handshake this node accepted, else the idlest link. A dial, or a member's
 * connection, so always finds room in a table that silent connections fill. */
static bool links_room(struct node *n)
{
    if (n->nlinks < n->links_max)
        return true;
    size_t pending;
    struct node_link *old = oldest_accepted_handshake(n, &pending);
    if (old) {
        crowd_out(n, old);
        return true;
    }
    struct node_link *best = NULL;
    for (struct node_link *k = n->links; k; k = k->next)
        if (link_idle(k) && (!best || k->last_io < best->last_io))
            best = k;
    if (!best) {
        n->st.links_refused++;
        log_debug("event=links_full links=%zu", n->nlinks);
        return false;
    }
    n->st.links_idle_closed++;
    link_close(best, LINK_IDLE);
    return true;
}

/* A source is an IPv4 address or an IPv6 /64: one host can have a whole /64 to itself. */
static bool accept_allowed(struct node *n, const struct dht_addr *from, uint64_t now)
{
    uint8_t key[8] = {0};
    memcpy(key, from->ip, from->family == 4 ? 4 : 8);
    uint64_t t = now + 1; /* 0 marks a free slot */
    struct accept_src *slot = NULL, *oldest = &n->sources[0];
    for (size_t i = 0; i < NODE_ACCEPT_SOURCES && !slot; i++) {
        if (n->sources[i].t && n->sources[i].family == from->family &&
            !memcmp(n->sources[i].key, key, sizeof key))
            slot = &n->sources[i];
        else if (n->sources[i].t < oldest->t)
            oldest = &n->sources[i];
    }
    if (!slot) {
        slot = oldest;
        *slot = (struct accept_src){.family = from->family, .tokens = NODE_ACCEPT_BURST, .t = t};
        memcpy(slot->key, key, sizeof key);
    }
    return tokens_take(&slot->tokens, &slot->t, t, 1000.0 / (double)n->t.accept_refill,
                       NODE_ACCEPT_BURST);
}

struct node_link *node_link_accepted(struct node *n, const struct dht_addr *from, uint64_t now)
{
    n->now = now;
    if (n->stopping)
        return NULL;
    char text[64];
    dht_addr_fmt(from, text, sizeof text);
    if (!accept_allowed(n, from, now)) {
        n->st.rate_limited++;
        log_debug("event=rate_limited addr=%s", text);
        return NULL;
    }
    size_t pending;
    struct node_link *old = oldest_accepted_handshake(n, &pending);
    bool room = false;
    if (old && pending >= NODE_HANDSHAKES_MAX(n->links_max)) {
        crowd_out(n, old); /* its place is the new one's */
        room = true;
    }
    struct node_link *k = room || links_room(n) ? link_new(n, false, now) : NULL;
    if (k) {
        k->from = *from;
        snprintf(k->addr, sizeof k->addr, "%s", text);
    }
    node_settle(n, now);
    return k;
}

struct node_link *link_dial(struct node *n, const struct dht_addr *addr, const uint8_t *expect_id,
                            uint64_t now)
{
    if (n->stopping || !links_room(n))
        return NULL;
    struct node_link *k = link_new(n, true, now);
    if (!k)
        return NULL;
    if (fx_push(n, &(struct node_effect){.type = NODE_FX_DIAL, .link = k, .addr = *addr}) < 0) {
        link_close(k, -ENOMEM);
        return NULL;
    }
    k->dialed = *addr;
    if (expect_id) {
        k->expect = true;
        memcpy(k->expect_id, expect_id, P2P_ID_LEN);
    }
    dht_addr_fmt(addr, k->addr, sizeof k->addr);
    return k;
}

/* ---- events from the caller ------------------------------------------------------------------ */

void node_link_connected(struct node *n, struct node_link *k, uint64_t now)
{
    n->now = now;
    if (k->state != LINK_DIALING)
        return;
    k->state = LINK_HANDSHAKE;
    k->last_io = now;
    link_touch(k); /* the initiator's first handshake message */
    node_settle(n, now);
}

void node_link_closed(struct node *n, struct node_link *k, int rc, uint64_t now)
{
    n->now = now;
    if (k->state == LINK_DIALING)
        log_info("event=connect_failed addr=%s reason=\"%s\"", k->addr, err_str(rc));
    link_close(k, k->state == LINK_DIALING ? -ECANCELED : rc);
    node_settle(n, now);
}

/* One connection per pair, the same at both ends: the link the smaller ID initiated; of two the
 * same node initiated, the one with the smaller handshake hash. */
static bool link_keeps(const struct node *n, const struct node_link *a, const struct node_link *b)
{
    if (a->initiator != b->initiator) {
        bool we_smaller = memcmp(n->id->id, a->peer_id, P2P_ID_LEN) < 0;
        return a->initiator == we_smaller;
    }
    return memcmp(p2p_conn_handshake_hash(p2p_peer_conn(a->p)),
                  p2p_conn_handshake_hash(p2p_peer_conn(b->p)), 32) < 0;
}

static void link_up(struct node_link *k, uint64_t now)
{
    struct node *n = k->n;
    char id[17];
    memcpy(k->peer_id, p2p_conn_peer_id(p2p_peer_conn(k->p)), P2P_ID_LEN);
    k->state = LINK_UP;
    k->up_at = now;
    k->rtt_ms = now - k->t0;
    if (!memcmp(k->peer_id, n->id->id, P2P_ID_LEN)) {
        link_close(k, -ECANCELED); /* ourselves, through a seed that is our own address */
        return;
    }
    if (verify_forger(n, k->peer_id)) {
        log_info("event=forger_refused addr=%s id=%s", k->addr, id_short(k->peer_id, id));
        link_close(k, AFSP_E_AUTH); /* it sent an index its layer's blob belies */
        return;
    }
    if (k->expect && memcmp(k->peer_id, k->expect_id, P2P_ID_LEN)) {
        char want[17];
        log_info("event=wrong_node addr=%s id=%s expected=%s", k->addr, id_short(k->peer_id, id),
                 id_short(k->expect_id, want));
        link_close(k, AFSP_E_AUTH); /* the node we dialed for is not there */
        return;
    }
    for (struct node_link *o = n->links; o; o = o->next) {
        if (o == k || o->state != LINK_UP || memcmp(o->peer_id, k->peer_id, P2P_ID_LEN))
            continue;
        struct node_link *keep = link_keeps(n, k, o) ? k : o, *drop = keep == k ? o : k;
        seed_move(n, drop, keep);
        if (drop->dialed.port && !keep->dialed.port)
            keep->dialed = drop->dialed; /* we reached it there: the address is proven */
        route_dq_send(drop, keep);
        link_close(drop, LINK_DUPLICATE);
        if (drop == k)
            return;
        break;
    }
    log_info("event=peer_up id=%s addr=%s initiator=%d rtt_ms=%" PRIu64, id_short(k->peer_id, id),
             k->addr, k->initiator, k->rtt_ms);
    seed_timers_up(n, k);
    p2p_peer_hello(k->p, n->cfg.listen_port);
    route_dq_send(k, k);
    if (k->seeds && k->dialed.port) {
        struct dht_contact c = {.addr = k->dialed};
        memcpy(c.id, k->peer_id, P2P_ID_LEN);
        dht_add_contact(n->dht, &c, now); /* and, the first time, the join lookup */
    }
    n->jobs_dirty = true;
}

void node_link_input(struct node *n, struct node_link *k, const uint8_t *p, size_t len,
                     uint64_t now)
{
    n->now = now;
    if (k->state != LINK_HANDSHAKE && k->state != LINK_UP)
        return;
    size_t used;
    k->bytes_in += len;
    k->last_io = k->last_in = now;
    bool was_up = k->state == LINK_UP;
    if (p2p_peer_input(k->p, p, len, now, &used) < 0)
        link_close(k, p2p_peer_error(k->p));
    else if (used != len) /* p2p_peer_input takes everything it can frame */
        link_close(k, AFSP_E_PROTO);
    else if (k->doom)
        link_close(k, k->doom);
    else if (!was_up && p2p_conn_established(p2p_peer_conn(k->p)))
        link_up(k, now);
    link_touch(k);
    node_settle(n, now);
}

size_t node_link_pending(struct node *n, struct node_link *k, const uint8_t **p)
{
    if (k->state != LINK_HANDSHAKE && k->state != LINK_UP)
        return 0;
    if (k->state == LINK_UP && p2p_peer_pump(k->p, NODE_SEND_BUDGET) < 0) {
        link_close(k, p2p_peer_error(k->p));
        node_settle(n, n->now);
        return 0;
    }
    return p2p_conn_pending(p2p_peer_conn(k->p), p);
}

void node_link_sent(struct node *n, struct node_link *k, size_t len, uint64_t now)
{
    n->now = now;
    if (k->state != LINK_HANDSHAKE && k->state != LINK_UP)
        return;
    p2p_conn_sent(p2p_peer_conn(k->p), len);
    k->bytes_out += len;
    serve_link_sent(k);
    k->last_io = now;
    link_touch(k); /* an idle deadline may start */
    node_settle(n, now);
}

void node_link_set_io(struct node_link *k, void *io)
{
    k->io = io;
}

void *node_link_io(const struct node_link *k)
{
    return k->io;
}

/* ---- timers ---------------------------------------------------------------------------------- */

static void on_link_timer(struct node *n, struct node_timer *t, uint64_t now)
{
    struct node_link *k = (struct node_link *)((char *)t - offsetof(struct node_link, timer));
    if (k->state != LINK_HANDSHAKE && k->state != LINK_UP && k->state != LINK_DIALING)
        return;
    if (p2p_peer_tick(k->p, now) < 0) {
        link_close(k, p2p_peer_error(k->p));
        return;
    }
    if (link_idle_closes(n, k) && now - k->last_io >= n->t.idle) {
        n->st.links_idle_closed++;
        link_close(k, LINK_IDLE);
        return;
    }
    n->jobs_dirty = true; /* a stalled request ended */
    link_touch(k);
}

void links_touched_run(struct node *n, uint64_t now)
{
    (void)now;
    while (n->touched) {
        struct node_link *k = n->touched;
        n->touched = k->touched_next;
        k->touched = false;
        if (k->state >= LINK_CLOSING)
            continue;
        uint64_t at = p2p_peer_deadline(k->p);
        if (link_idle_closes(n, k) && k->last_io + n->t.idle < at)
            at = k->last_io + n->t.idle;
        timer_set(n, &k->timer, at);
        const uint8_t *p;
        if (k->state != LINK_DIALING && (p2p_conn_pending(p2p_peer_conn(k->p), &p) ||
                                         (k->state == LINK_UP && p2p_peer_serving(k->p))))
            fx_push(n, &(struct node_effect){.type = NODE_FX_SEND, .link = k});
    }
}

/* ---- p2p_peer callbacks: they only change state and mark; node_settle does the rest ---------- */

static void on_request(void *arg, struct p2p_peer *p, const struct p2p_msg *m)
{
    struct node_link *k = arg;
    (void)p;
    serve_request(k, m, k->n->now);
}

static int on_data(void *arg, struct p2p_peer *p, void *req, uint64_t total, uint64_t off,
                   const uint8_t *b, size_t len)
{
    struct node_link *k = arg;
    (void)p;
    return fetch_on_data(k, req, total, off, b, len, k->n->now);
}

static void on_done(void *arg, struct p2p_peer *p, void *req, int rc)
{
    struct node_link *k = arg;
    (void)p;
    fetch_on_done(k, req, rc, k->n->now);
}

static void on_hello(void *arg, struct p2p_peer *p, uint16_t port)
{
    struct node_link *k = arg;
    (void)p;
    k->hello_port = port;
}

static void on_dht(void *arg, struct p2p_peer *p, const uint8_t *b, size_t len)
{
    struct node_link *k = arg;
    (void)p;
    route_input(k, b, len, k->n->now);
}

static void on_have(void *arg, struct p2p_peer *p, void *req, uint32_t nchunks,
                    const uint8_t *bitmap)
{
    struct node_link *k = arg;
    (void)p;
    fetch_on_have(k, req, nchunks, bitmap);
}

static void on_got(void *arg, struct p2p_peer *p, const uint8_t *digest, uint32_t chunk)
{
    struct node_link *k = arg;
    (void)p;
    fetch_on_got(k, digest, chunk);
}

static const struct p2p_peer_ops peer_ops = {.request = on_request,
                                             .data = on_data,
                                             .have = on_have,
                                             .done = on_done,
                                             .hello = on_hello,
                                             .dht = on_dht,
                                             .got = on_got};
