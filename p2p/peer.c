/*
 * peer.c - requests and answers over one connection, without I/O: the requester's side (ids, a
 * bounded window, answers checked piece by piece, stalls), and the server's (at most
 * P2P_SERVING_MAX answers at once per peer, answer bytes produced only as fast as the connection
 * drains).
 *
 * Owns: the connection, the table of our outstanding requests and the table of answers being
 * sent. Must not: read a clock, touch a socket or a file (answer bytes come from the owner's
 * source), or trust anything the peer says about a request it did not make: an answer to an id
 * we do not wait for is dropped, an answer that breaks the protocol (a piece out of order, a
 * total that changes or exceeds what we asked for) ends the connection.
 */
#include "p2p.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct req {
    bool used;
    enum p2p_msg_type type;
    uint32_t id;
    void *arg;
    uint64_t next, end; /* the next byte expected; the answer ends here (or at total) */
    uint64_t max_total; /* the largest object we accept */
    uint64_t total;     /* UINT64_MAX until the first piece */
    uint64_t deadline;  /* fails with -ETIMEDOUT if no piece comes before */
    uint64_t limit;     /* ... and if the answer is not whole by then, whatever comes */
    uint64_t sent;      /* when it was sent */
};

/* When an answer of n bytes must be whole, for a request sent at t: request_ms, and a
 * millisecond for every P2P_MIN_RATE / 1000 bytes. */
static uint64_t answer_limit(const struct p2p_peer *p, uint64_t t, uint64_t n);

struct answer {
    bool used, sending; /* sending: answer_data was called, bytes are being produced */
    uint32_t id;
    uint64_t total, next, end;
    struct p2p_source src;
};

struct p2p_peer {
    struct p2p_conn *conn;
    const struct p2p_peer_ops *ops;
    void *arg;
    uint32_t window, stall_ms, request_ms, next_id;
    uint64_t now;
    struct req *reqs;
    uint32_t nreqs;
    struct answer ans[P2P_SERVING_MAX];
    uint32_t nans, rr; /* answers in the table; where the next pump starts (round robin) */
    uint8_t *scratch;  /* one DATA or HAVE_REPLY message being built, grown as needed (a peer
                        * that only exchanges DHT messages never makes one, one that answers
                        * small requests a small one) */
    size_t scratch_cap;
    int err;
};

int p2p_peer_new(struct p2p_peer **out, const struct p2p_peer_cfg *cfg)
{
    struct p2p_peer *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->ops = cfg->ops;
    p->arg = cfg->arg;
    p->window = cfg->window ? cfg->window : P2P_WINDOW;
    p->stall_ms = cfg->stall_ms ? cfg->stall_ms : P2P_STALL_MS;
    p->request_ms = cfg->request_ms ? cfg->request_ms : P2P_REQUEST_MS;
    p->now = cfg->conn.now_ms;
    p->reqs = calloc(p->window, sizeof *p->reqs);
    int rc = p->reqs ? p2p_conn_new(&p->conn, &cfg->conn) : -ENOMEM;
    if (rc < 0) {
        free(p->reqs);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

static void answer_end(struct p2p_peer *p, struct answer *a)
{
    struct p2p_source src = a->src;
    bool had = a->sending;
    memset(a, 0, sizeof *a);
    p->nans--;
    if (had && src.done)
        src.done(src.arg);
}

static void req_end(struct p2p_peer *p, struct req *r, int rc)
{
    void *arg = r->arg;
    memset(r, 0, sizeof *r);
    p->nreqs--;
    p->ops->done(p->arg, p, arg, rc);
}

/* The connection is dead: every request ends with its error, every answer is dropped. */
static int peer_fail(struct p2p_peer *p, int rc)
{
    if (!p->err)
        p->err = rc;
    for (uint32_t i = 0; i < p->window; i++)
        if (p->reqs[i].used)
            req_end(p, &p->reqs[i], p->err);
    for (uint32_t i = 0; i < P2P_SERVING_MAX; i++)
        if (p->ans[i].used)
            answer_end(p, &p->ans[i]);
    return p->err;
}

void p2p_peer_free(struct p2p_peer *p, int rc)
{
    if (!p)
        return;
    peer_fail(p, rc ? rc : -ECONNRESET);
    p2p_conn_free(p->conn);
    free(p->reqs);
    free(p->scratch);
    free(p);
}

struct p2p_conn *p2p_peer_conn(struct p2p_peer *p)
{
    return p->conn;
}

int p2p_peer_error(const struct p2p_peer *p)
{
    return p->err;
}

uint32_t p2p_peer_inflight(const struct p2p_peer *p)
{
    return p->nreqs;
}

uint32_t p2p_peer_serving(const struct p2p_peer *p)
{
    return p->nans;
}

static int send_msg(struct p2p_peer *p, const struct p2p_msg *m)
{
    uint8_t b[P2P_DATA_HDR + 64];
    size_t n;
    int rc = p2p_msg_encode(m, b, sizeof b, &n);
    if (rc == 0)
        rc = p2p_conn_send(p->conn, b, n);
    return rc == -ENOBUFS || rc == -EOVERFLOW ? peer_fail(p, rc) : rc;
}

static struct req *req_find(struct p2p_peer *p, uint32_t id)
{
    for (uint32_t i = 0; i < p->window; i++)
        if (p->reqs[i].used && p->reqs[i].id == id)
            return &p->reqs[i];
    return NULL;
}

static struct answer *answer_find(struct p2p_peer *p, uint32_t id)
{
    for (uint32_t i = 0; i < P2P_SERVING_MAX; i++)
        if (p->ans[i].used && p->ans[i].id == id)
            return &p->ans[i];
    return NULL;
}

int p2p_peer_request(struct p2p_peer *p, const struct p2p_msg *m, uint64_t max_total, void *arg,
                     uint64_t now)
{
    if (p->err)
        return p->err;
    if (!p2p_conn_established(p->conn) ||
        (m->type != P2P_GET_BLOB && m->type != P2P_GET_INDEX && m->type != P2P_GET_TRACE &&
         m->type != P2P_GET_CHUNK && m->type != P2P_HAVE))
        return AFSP_E_USAGE;
    if (p->nreqs >= p->window)
        return -EAGAIN;
    struct req *r = NULL;
    for (uint32_t i = 0; i < p->window && !r; i++)
        if (!p->reqs[i].used)
            r = &p->reqs[i];
    do /* ids are ours: unique among the outstanding ones, never 0 */
        p->next_id++;
    while (p->next_id == 0 || req_find(p, p->next_id));
    struct p2p_msg q = *m;
    q.id = p->next_id;
    q.flags = 0;
    int rc = send_msg(p, &q);
    if (rc < 0)
        return rc;
    *r = (struct req){.used = true,
                      .type = m->type,
                      .id = q.id,
                      .arg = arg,
                      .next = m->type == P2P_GET_CHUNK ? 0 : m->off,
                      .end = m->type == P2P_GET_CHUNK ? UINT64_MAX : m->off + m->len,
                      .max_total = max_total,
                      .total = UINT64_MAX,
                      .sent = now};
    /* the whole answer's time, for the most it may have (and once its first piece says how
     * much it has, for that: on_data) */
    r->limit = answer_limit(p, now, MIN(r->end - r->next, max_total));
    r->deadline = MIN(add_sat(now, p->stall_ms), r->limit);
    p->nreqs++;
    return 0;
}

void p2p_peer_cancel(struct p2p_peer *p, void *arg)
{
    for (uint32_t i = 0; i < p->window; i++) {
        struct req *r = &p->reqs[i];
        if (r->used && r->arg == arg) {
            struct p2p_msg c = {.type = P2P_CANCEL, .id = r->id};
            memset(r, 0, sizeof *r);
            p->nreqs--;
            if (!p->err)
                send_msg(p, &c); /* a dead connection cancels everything anyway */
            return;
        }
    }
}

int p2p_peer_hello(struct p2p_peer *p, uint16_t port)
{
    struct p2p_msg m = {.type = P2P_HELLO, .port = port};
    return p->err ? p->err : send_msg(p, &m);
}

int p2p_peer_got(struct p2p_peer *p, const uint8_t digest[static DIGEST_LEN], uint32_t chunk)
{
    struct p2p_msg m = {.type = P2P_GOT, .chunk = chunk};
    memcpy(m.digest, digest, DIGEST_LEN);
    if (p->err)
        return p->err;
    return chunk < P2P_CHUNKS_MAX ? send_msg(p, &m) : AFSP_E_USAGE;
}

int p2p_peer_send_dht(struct p2p_peer *p, const uint8_t *b, size_t n)
{
    uint8_t buf[8 + P2P_DHT_MAX];
    struct p2p_msg m = {.type = P2P_DHT, .data = b, .len = (uint32_t)n};
    size_t len;
    if (p->err)
        return p->err;
    if (n < 1 || n > P2P_DHT_MAX || p2p_msg_encode(&m, buf, sizeof buf, &len) < 0)
        return AFSP_E_USAGE;
    int rc = p2p_conn_send(p->conn, buf, len);
    return rc == -ENOBUFS || rc == -EOVERFLOW ? peer_fail(p, rc) : rc;
}

/* ---- answers we send ----------------------------------------------------------------------- */

static struct answer *answer_take(struct p2p_peer *p, uint32_t id)
{
    struct answer *a = answer_find(p, id);
    return a && !a->sending ? a : NULL;
}

bool p2p_peer_answer_wanted(struct p2p_peer *p, uint32_t id)
{
    return !p->err && answer_take(p, id) != NULL;
}

int p2p_peer_answer_error(struct p2p_peer *p, uint32_t id, enum p2p_err_code code)
{
    struct answer *a = answer_take(p, id);
    if (!a) /* cancelled meanwhile, or the connection died */
        return p->err;
    answer_end(p, a);
    struct p2p_msg m = {.type = P2P_ERROR, .id = id, .code = code};
    return send_msg(p, &m);
}

/* The buffer for one DATA or HAVE_REPLY message, or NULL (the connection failed with
 * -ENOMEM). */
/* The scratch buffer, with room for a message of n bytes (at most P2P_DATA_HDR + P2P_DATA_MAX). */
static uint8_t *scratch(struct p2p_peer *p, size_t n)
{
    if (n <= p->scratch_cap)
        return p->scratch;
    size_t cap = MAX(p->scratch_cap * 2, (size_t)4096);
    while (cap < n)
        cap *= 2;
    cap = MIN(cap, (size_t)P2P_DATA_HDR + P2P_DATA_MAX);
    free(p->scratch); /* nothing in it is kept between messages */
    if (!(p->scratch = malloc(cap))) {
        p->scratch_cap = 0;
        peer_fail(p, -ENOMEM);
        return NULL;
    }
    p->scratch_cap = cap;
    return p->scratch;
}

int p2p_peer_answer_have(struct p2p_peer *p, uint32_t id, uint32_t nchunks, const uint8_t *bitmap)
{
    struct answer *a = answer_take(p, id);
    if (!a)
        return p->err;
    answer_end(p, a);
    struct p2p_msg m = {.type = P2P_HAVE_REPLY, .id = id, .nchunks = nchunks, .data = bitmap};
    size_t n = p2p_msg_size(&m);
    if (!scratch(p, n))
        return p->err;
    int rc = p2p_msg_encode(&m, p->scratch, p->scratch_cap, &n);
    if (rc == 0)
        rc = p2p_conn_send(p->conn, p->scratch, n);
    return rc == -ENOBUFS || rc == -EOVERFLOW ? peer_fail(p, rc) : rc;
}

int p2p_peer_answer_data(struct p2p_peer *p, uint32_t id, uint64_t total, uint64_t off,
                         uint64_t len, const struct p2p_source *src)
{
    struct answer *a = answer_take(p, id);
    if (!a) {
        if (src->done)
            src->done(src->arg);
        return p->err;
    }
    if (total > P2P_OBJECT_MAX || off > total) {
        answer_end(p, a);
        if (src->done)
            src->done(src->arg);
        return AFSP_E_USAGE;
    }
    a->sending = true;
    a->total = total;
    a->next = off;
    a->end = len > total - off ? total : off + len;
    a->src = *src;
    return 0;
}

int p2p_peer_pump(struct p2p_peer *p, size_t budget)
{
    const uint8_t *pending;
    while (!p->err && p->nans && p2p_conn_pending(p->conn, &pending) < budget) {
        struct answer *a = NULL;
        for (uint32_t k = 0; k < P2P_SERVING_MAX && !a; k++) {
            struct answer *c = &p->ans[(p->rr + k) % P2P_SERVING_MAX];
            if (c->used && c->sending)
                a = c;
        }
        if (!a)
            break; /* every answer waits for its owner */
        p->rr = (uint32_t)(a - p->ans + 1) % P2P_SERVING_MAX;
        uint64_t n = a->end - a->next;
        if (n > P2P_DATA_MAX)
            n = P2P_DATA_MAX;
        if (!scratch(p, P2P_DATA_HDR + (size_t)n))
            return p->err;
        uint8_t *data = p->scratch + P2P_DATA_HDR;
        int rc = n ? a->src.read(a->src.arg, a->next, data, (size_t)n) : 0;
        if (rc < 0) { /* the object went away (evicted) or the disk failed */
            uint32_t id = a->id;
            answer_end(p, a);
            struct p2p_msg e = {.type = P2P_ERROR, .id = id, .code = P2P_ERR_NOT_FOUND};
            if ((rc = send_msg(p, &e)) < 0)
                return rc;
            continue;
        }
        struct p2p_msg m = {.type = P2P_DATA,
                            .id = a->id,
                            .total = a->total,
                            .off = a->next,
                            .len = (uint32_t)n,
                            .data = data,
                            .flags = a->next + n == a->total ? P2P_LAST : 0};
        size_t len;
        if ((rc = p2p_msg_encode(&m, p->scratch, p->scratch_cap, &len)) < 0 ||
            (rc = p2p_conn_send(p->conn, p->scratch, len)) < 0)
            return peer_fail(p, rc);
        a->next += n;
        if (a->next == a->end)
            answer_end(p, a);
    }
    return p->err;
}

/* ---- what the peer sends us ---------------------------------------------------------------- */

static int on_request(struct p2p_peer *p, const struct p2p_msg *m)
{
    if (m->id == 0 || answer_find(p, m->id))
        return peer_fail(p, AFSP_E_PROTO); /* ids of outstanding requests are unique */
    if (p->nans >= P2P_SERVING_MAX) {
        struct p2p_msg e = {.type = P2P_ERROR, .id = m->id, .code = P2P_ERR_BUSY};
        return send_msg(p, &e);
    }
    struct answer *a = NULL;
    for (uint32_t i = 0; i < P2P_SERVING_MAX && !a; i++)
        if (!p->ans[i].used)
            a = &p->ans[i];
    *a = (struct answer){.used = true, .id = m->id};
    p->nans++;
    p->ops->request(p->arg, p, m);
    return p->err;
}

static uint64_t answer_limit(const struct p2p_peer *p, uint64_t t, uint64_t n)
{
    return add_sat(add_sat(t, p->request_ms), n / (P2P_MIN_RATE / 1000));
}

static int on_data(struct p2p_peer *p, struct req *r, const struct p2p_msg *m)
{
    bool bad = m->off != r->next || (r->total != UINT64_MAX && m->total != r->total) ||
               r->type == P2P_HAVE;
    if (bad)
        return peer_fail(p, AFSP_E_PROTO);
    if (m->total > r->max_total) { /* an object larger than we take: this request only fails */
        struct p2p_msg c = {.type = P2P_CANCEL, .id = r->id};
        req_end(p, r, AFSP_E_SIZE);
        return p->err ? p->err : send_msg(p, &c);
    }
    uint64_t end = MIN(r->end, m->total);
    if (m->off + m->len > end)
        return peer_fail(p, AFSP_E_PROTO);
    if (r->total == UINT64_MAX) /* the first piece: the answer's time is for what it declares */
        r->limit = MIN(r->limit, answer_limit(p, r->sent, end - r->next));
    r->total = m->total;
    /* progress: every piece but the last is whole (an empty or short one would hold the
     * request open, resetting its stall deadline, while nothing comes) */
    if (m->off + m->len < end && m->len < P2P_DATA_MAX)
        return peer_fail(p, AFSP_E_PROTO);
    r->next += m->len;
    r->deadline = MIN(add_sat(p->now, p->stall_ms), r->limit);
    int rc = p->ops->data(p->arg, p, r->arg, m->total, m->off, m->data, m->len);
    if (rc < 0) { /* the owner gives up (a chunk that does not verify, say) */
        struct p2p_msg c = {.type = P2P_CANCEL, .id = r->id};
        req_end(p, r, rc);
        return p->err ? p->err : send_msg(p, &c);
    }
    if (r->next == end)
        req_end(p, r, 0);
    return p->err;
}

static int on_frame(struct p2p_peer *p, const uint8_t *b, size_t n)
{
    struct p2p_msg m;
    if (p2p_msg_parse(b, n, &m) < 0)
        return peer_fail(p, AFSP_E_PROTO);
    struct req *r;
    struct answer *a;
    switch (m.type) {
    case P2P_GET_BLOB:
    case P2P_GET_INDEX:
    case P2P_GET_TRACE:
    case P2P_GET_CHUNK:
    case P2P_HAVE:
        return on_request(p, &m);
    case P2P_CANCEL:
        if ((a = answer_find(p, m.id)))
            answer_end(p, a);
        return 0;
    case P2P_HELLO:
        if (p->ops->hello)
            p->ops->hello(p->arg, p, m.port);
        return p->err;
    case P2P_DHT:
        if (p->ops->dht)
            p->ops->dht(p->arg, p, m.data, m.len);
        return p->err;
    case P2P_GOT:
        if (p->ops->got)
            p->ops->got(p->arg, p, m.digest, m.chunk);
        return p->err;
    case P2P_DATA:
    case P2P_HAVE_REPLY:
    case P2P_ERROR:
        if (!(r = req_find(p, m.id)))
            return 0; /* an answer we cancelled, still on its way */
        if (m.type == P2P_DATA)
            return on_data(p, r, &m);
        if (m.type == P2P_ERROR) {
            req_end(p, r,
                    m.code == P2P_ERR_NOT_FOUND ? AFSP_E_NOTFOUND
                    : m.code == P2P_ERR_BUSY    ? -EBUSY
                                                : AFSP_E_PROTO);
            return p->err;
        }
        if (r->type != P2P_HAVE)
            return peer_fail(p, AFSP_E_PROTO);
        if (p->ops->have)
            p->ops->have(p->arg, p, r->arg, m.nchunks, m.data);
        req_end(p, r, 0);
        return p->err;
    }
    return peer_fail(p, AFSP_E_PROTO);
}

int p2p_peer_input(struct p2p_peer *p, const uint8_t *b, size_t n, uint64_t now, size_t *used)
{
    size_t took = 0;
    p->now = now;
    *used = 0;
    if (p->err)
        return p->err;
    for (;;) {
        size_t u, frames = 0;
        int rc = p2p_conn_input(p->conn, b + took, n - took, now, &u);
        if (rc < 0)
            return peer_fail(p, rc);
        took += u;
        const uint8_t *f;
        size_t flen;
        while (!p->err && (f = p2p_conn_recv(p->conn, &flen))) {
            on_frame(p, f, flen);
            frames++;
        }
        if ((rc = p2p_conn_error(p->conn)) < 0)
            return peer_fail(p, rc);
        if (p->err || took == n || (u == 0 && frames == 0))
            break;
    }
    *used = took;
    return p->err;
}

uint64_t p2p_peer_deadline(const struct p2p_peer *p)
{
    uint64_t d = p2p_conn_deadline(p->conn);
    for (uint32_t i = 0; i < p->window; i++)
        if (p->reqs[i].used && p->reqs[i].deadline < d)
            d = p->reqs[i].deadline;
    return d;
}

int p2p_peer_tick(struct p2p_peer *p, uint64_t now)
{
    p->now = now;
    if (p->err)
        return p->err;
    int rc = p2p_conn_tick(p->conn, now);
    if (rc < 0)
        return peer_fail(p, rc);
    for (uint32_t i = 0; i < p->window && !p->err; i++) {
        struct req *r = &p->reqs[i];
        if (r->used && r->deadline <= now) {
            struct p2p_msg c = {.type = P2P_CANCEL, .id = r->id};
            req_end(p, r, -ETIMEDOUT);
            if (!p->err)
                send_msg(p, &c);
        }
    }
    return p->err;
}
