/*
 * fuzz/node.c - libFuzzer target for the node core (node/): what a cluster member (it has the
 * key, so its frames decrypt) can make a node do through one link. The victim is a core on a
 * virtual clock with an in-memory store (sim/memstore.c): a layer held whole (the member may ask
 * for it), one held in part (the victim's jobs fetch its chunks), and a layer, an index and a
 * manifest it lacks. The member's side is a bare p2p_conn: it reads what the victim sends, keeps
 * the last requests and DHT queries, and answers by script, honestly (from its own store, the
 * same layers whole) or not. The input is the script:
 *   0x00 u16 len bytes  a frame with these bytes as its message (anything)
 *   0x01 u8 t           time passes: t * 64 ms (t = 255: ten minutes), the victim ticks at each
 *                       of its deadlines on the way
 *   0x02 u8 r u8 mode   answer seen request r % n from the member's store; mode: bit 0 flips a
 *                       byte, bit 1 sends it in two pieces, bit 2 claims one byte more in total,
 *                       bit 3 only the first piece
 *   0x03 u8 r u8 code   an ERROR answer to seen request r % n (code: any)
 *   0x04 u8 r u8 n u8 b a HAVE_REPLY to seen request r % n: n chunks, every bitmap byte b
 *   0x05 u8 q u8 mode   answer seen DHT query q % n: the member provides everything (mode bit 0:
 *                       it names itself in NODES too; bit 1: a contact that will not answer);
 *                       a CLAIM gets state mode % 6, a lease of mode * 256 ms, and (bit 3) a
 *                       holder: the member or (bit 4) the contact that will not answer
 *   0x06 u8 what        the victim's task submits a job (what % 7: the blob, the index, chunks
 *                       of the partial layer, the claim of a layer (bit 5: the one it lacks,
 *                       else the partial one; bit 6: the task reads downloads; bit 7: its read
 *                       of the member's failed), the end of that claim (bit 3: whole), bytes
 *                       (what >> 3) * 200 on of the member's download of the layer it lacks,
 *                       or a start trace, asked of its key's providers)
 *   0x07 u8 which       a control request (which % the table below)
 *   0x08 u8 len bytes   a control request line of these bytes
 *   0x09                the link closes (reset); the next op that needs it connects again
 *   0x0a                the store changed: the whole layer is evicted
 *   0x0b u16 len bytes  a DHT message of these bytes
 *   0x0c                the member connects (if it is not linked)
 *   0x0d u8 what u8 c   the member asks the victim (what % 6: the manifest it holds, the whole
 *                       layer's index, its chunk c, which chunks it has, bytes c * 100 on,
 *                       (what / 6) * 300 of them, of the layer the victim downloads now, 1,000
 *                       bytes a second, written or not, or a start trace) with the next id
 *   0x0e u8 id          the member cancels request id
 *   0x0f u8 l u8 c      the member says it holds chunk c of layer l % 3 (GOT: whole, partial,
 *                       unknown), true or not
 * Invariants: nothing crashes or leaks; every job comes back once; every control request is
 * answered once (or its client left); the node stops in bounded time with nothing in flight;
 * what a link holds to send stays bounded; a chunk stored in the partial layer is the true one
 * (the memstore checks each chunk's bytes; nothing a liar sends is counted).
 */
#include "../node/node.h"
#include "../sim/sim.h"
#include "../store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NJOBS 8
#define NCTL 16
#define NSEEN 16
#define CHUNK_LEN 1000

static const uint8_t L_WHOLE[DIGEST_LEN] = {1}, L_PART[DIGEST_LEN] = {2}, L_NONE[DIGEST_LEN] = {3};
static const uint8_t M_HELD[DIGEST_LEN] = {4}, M_NONE[DIGEST_LEN] = {5};
static const uint8_t T_KEY[DIGEST_LEN] = {6}; /* a start trace's key */
static const uint8_t L_DL[DIGEST_LEN] = {6}; /* the victim downloads it now: 1,000 bytes a second */
#define DL_SIZE 20000

struct job {
    struct node_job j;
    struct buf out;
    int state; /* 0 free, 1 with the node, 2 back */
    struct node_task *task;
};

struct world {
    uint64_t now, rng;
    struct node *n;
    struct memstore *vs, *hs; /* the victim's store, the member's */
    struct p2p_identity vid, hid;
    uint8_t key[P2P_KEY_LEN];
    /* the member's end of the link */
    struct node_link *k; /* NULL: no link */
    struct p2p_conn *c;
    bool closing; /* the victim asked to close k */
    struct p2p_msg seen[NSEEN];
    size_t nseen, seen_next;
    struct dht_msg dseen[NSEEN];
    size_t ndseen, dseen_next;
    uint32_t asked; /* the member's last request id */
    struct job jobs[NJOBS];
    int ctl[NCTL];             /* 0 free, 1 asked, 2 answered */
    struct node_exec *live[8]; /* jobs handed out: they run until time passes */
    size_t nlive;
    size_t nctl;
    bool stopped;
};

static const struct dht_addr member_addr = {4, {10, 0, 0, 2}, SIMN_PORT};

static void send_msg(struct world *w, const struct p2p_msg *m);
static void submit(struct world *w, struct job *jb, uint64_t now);

static struct job *job_of(struct world *w, struct node_job *j)
{
    for (int i = 0; i < NJOBS; i++)
        if (&w->jobs[i].j == j)
            return &w->jobs[i];
    abort();
}

/* What the victim sent: kept as the member saw it. */
static void member_read(struct world *w)
{
    const uint8_t *f;
    size_t len;
    while (w->c && (f = p2p_conn_recv(w->c, &len))) {
        struct p2p_msg m;
        if (p2p_msg_parse(f, len, &m) != 0)
            abort(); /* the victim sent what no parser takes */
        if (m.type == P2P_DHT) {
            struct dht_msg d;
            if (dht_msg_parse(m.data, m.len, &d) != 0)
                abort();
            if (d.type < DHT_PONG) {
                w->dseen[w->dseen_next++ % NSEEN] = d;
                w->ndseen += w->ndseen < NSEEN;
            }
        } else if (m.type < P2P_DATA && m.type != P2P_CANCEL && m.type != P2P_HELLO) {
            m.data = NULL;
            w->seen[w->seen_next++ % NSEEN] = m;
            w->nseen += w->nseen < NSEEN;
        }
    }
}

static void take_effects(struct world *w)
{
    struct node_effect e;
    while (node_effect_next(w->n, &e)) {
        switch (e.type) {
        case NODE_FX_DIAL: /* nothing but the member is reachable, and it does not listen */
            node_link_closed(w->n, e.link, -ECONNREFUSED, w->now);
            break;
        case NODE_FX_SEND: {
            const uint8_t *p;
            size_t len;
            while ((len = node_link_pending(w->n, e.link, &p))) {
                if (len > 2 * P2P_FRAME_MAX + (4u << 20))
                    abort(); /* what a link holds to send is bounded */
                if (e.link == w->k && !w->closing && w->c) {
                    size_t off = 0, used;
                    while (off < len && p2p_conn_error(w->c) == 0) {
                        if (p2p_conn_input(w->c, p + off, len - off, w->now, &used) != 0)
                            break;
                        off += used;
                        member_read(w);
                    }
                    if (p2p_conn_error(w->c))
                        abort(); /* the victim's bytes failed authentication */
                }
                node_link_sent(w->n, e.link, len, w->now);
            }
            break;
        }
        case NODE_FX_CLOSE:
            if (e.link == w->k) {
                w->closing = true;
                w->k = NULL;
            }
            node_link_release(w->n, e.link);
            break;
        case NODE_FX_ANSWER: {
            int i = (int)((int *)e.ctl - w->ctl);
            if (i < 0 || i >= NCTL || w->ctl[i] != 1 || e.len == 0 || e.text[e.len - 1] != '\n')
                abort();
            w->ctl[i] = 2;
            free(e.text);
            break;
        }
        case NODE_FX_TASK: {
            struct node_task *t = e.task;
            struct job *jb = NULL;
            for (int i = 0; i < NJOBS && t->kind == NODE_TASK_FETCH; i++)
                if (w->jobs[i].state != 1) {
                    jb = &w->jobs[i];
                    break;
                }
            void *fh = jb ? memstore_fetch_open(w->vs, t->layer) : NULL;
            if (!fh) {
                t->rc = AFSP_E_NOTFOUND;
                snprintf(t->msg, sizeof t->msg, "not in this test");
                node_task_done(w->n, t, w->now);
                break;
            }
            buf_release(&jb->out);
            memset(jb, 0, sizeof *jb);
            jb->j.kind = NODE_JOB_CHUNKS;
            memcpy(jb->j.digest, t->layer, DIGEST_LEN);
            jb->j.fetch = fh;
            jb->j.first = t->first;
            jb->j.last = t->last;
            jb->task = t;
            submit(w, jb, w->now);
            break;
        }
        case NODE_FX_JOB_DONE: {
            struct job *jb = job_of(w, e.job);
            if (jb->state != 1)
                abort(); /* handed back twice */
            jb->state = 2;
            /* chunks handed back as done are all there, and they checked out */
            for (uint32_t c = jb->j.first;
                 jb->j.kind == NODE_JOB_CHUNKS && jb->j.rc == 0 && c <= jb->j.last; c++)
                if (!memstore_ops.fetch_has(jb->j.fetch, c))
                    abort();
            if (jb->j.fetch)
                memstore_fetch_close(w->vs, jb->j.fetch);
            jb->j.fetch = NULL;
            if (jb->task) {
                jb->task->rc = jb->j.rc;
                if (jb->j.rc < 0)
                    snprintf(jb->task->msg, sizeof jb->task->msg, "%s", err_str(jb->j.rc));
                node_task_done(w->n, jb->task, w->now);
                jb->task = NULL;
            }
            break;
        }
        case NODE_FX_EXEC: /* a job runs until time passes (or at once, past 8) */
            node_exec_running(w->n, e.exec, w->now);
            if (w->nlive < sizeof w->live / sizeof *w->live) {
                w->live[w->nlive++] = e.exec;
                break;
            }
            e.exec->result.status = 0;
            node_exec_done(w->n, e.exec, w->now);
            break;
        case NODE_FX_EXEC_KILL:
            break;
        case NODE_FX_EXEC_FREE:
            node_exec_free(e.exec);
            break;
        case NODE_FX_STOPPED:
            if (w->stopped)
                abort();
            w->stopped = true;
            break;
        }
    }
}

static void submit(struct world *w, struct job *jb, uint64_t now)
{
    jb->state = 1;
    node_job_submit(w->n, &jb->j, now);
}

/* The member's bytes to the victim. */
static void member_flush(struct world *w)
{
    const uint8_t *p;
    size_t len;
    while (w->k && w->c && (len = p2p_conn_pending(w->c, &p))) {
        uint8_t *copy = malloc(len);
        if (!copy)
            abort();
        memcpy(copy, p, len);
        p2p_conn_sent(w->c, len);
        node_link_input(w->n, w->k, copy, len, w->now);
        free(copy);
        take_effects(w);
    }
}

static void member_gone(struct world *w)
{
    p2p_conn_free(w->c);
    w->c = NULL;
    w->nseen = w->seen_next = w->ndseen = w->dseen_next = 0;
}

/* A link from the member, its handshake done; false if the victim refused it. */
static bool member_connect(struct world *w)
{
    if (w->c && w->k && !w->closing)
        return p2p_conn_established(w->c);
    if (w->k) {
        node_link_closed(w->n, w->k, -ECONNRESET, w->now);
        take_effects(w);
    }
    member_gone(w);
    w->closing = false;
    struct p2p_conn_cfg cc = {true, &w->hid, w->key, rng_fill, &w->rng, w->now, 0, 0, 0, 0};
    if (p2p_conn_new(&w->c, &cc) != 0)
        abort();
    w->k = node_link_accepted(w->n, &member_addr, w->now);
    take_effects(w);
    if (!w->k)
        return false;
    for (int round = 0; round < 4 && w->k && !p2p_conn_established(w->c); round++)
        member_flush(w); /* the victim's answers reach the member through take_effects */
    if (!w->k || w->closing || !p2p_conn_established(w->c))
        return false;
    struct p2p_msg hello = {.type = P2P_HELLO, .port = SIMN_PORT}; /* a DHT contact from now */
    send_msg(w, &hello);
    return w->k && !w->closing;
}

static void send_msg(struct world *w, const struct p2p_msg *m)
{
    static uint8_t frame[P2P_FRAME_MAX];
    size_t len;
    if (p2p_msg_encode(m, frame, sizeof frame, &len) != 0)
        return;
    if (p2p_conn_send(w->c, frame, len) == 0)
        member_flush(w);
}

/* Bytes of the answer to m from the member's store (false: it has none). */
static bool member_answer(struct world *w, const struct p2p_msg *m, struct buf *b)
{
    switch (m->type) {
    case P2P_GET_BLOB:
    case P2P_GET_INDEX: {
        struct buf whole = {0};
        int rc = m->type == P2P_GET_BLOB ? memstore_ops.blob(w->hs, m->digest, &whole)
                                         : memstore_ops.index(w->hs, m->digest, &whole);
        bool ok = rc == 0 && m->off <= whole.len;
        if (ok) {
            size_t n = whole.len - m->off;
            if (m->len && m->len < n)
                n = m->len;
            ok = buf_append(b, whole.p + m->off, n) == 0;
        }
        buf_release(&whole);
        return ok;
    }
    case P2P_GET_TRACE: { /* a trace of the partial layer's chunks, for the mode to spoil */
        struct store_trace_ent e[8];
        for (uint32_t i = 0; i < 8; i++)
            e[i] = (struct store_trace_ent){0, 7 - i};
        return !memcmp(m->digest, T_KEY, DIGEST_LEN) && store_trace_encode(M_NONE, e, 8, b) == 0;
    }
    case P2P_GET_CHUNK: {
        void *l;
        if (memstore_ops.layer_open(w->hs, m->digest, &l) != 0)
            return false;
        bool ok = m->chunk < memstore_ops.layer_nchunks(l);
        if (ok) {
            uint64_t off;
            uint32_t len;
            memstore_ops.layer_chunk(l, m->chunk, &off, &len);
            ok = buf_reserve(b, len) == 0 && memstore_ops.layer_read(l, off, b->p, len) == 0;
            if (ok)
                b->len = len;
        }
        memstore_ops.layer_close(w->hs, l);
        return ok;
    }
    default:
        return false;
    }
}

static void answer_data(struct world *w, const struct p2p_msg *req, uint8_t mode)
{
    struct buf b = {0};
    if (!member_answer(w, req, &b) || b.len == 0) {
        struct p2p_msg e = {.type = P2P_ERROR, .id = req->id, .code = P2P_ERR_NOT_FOUND};
        send_msg(w, &e);
        buf_release(&b);
        return;
    }
    if (mode & 1)
        b.p[b.len / 2] ^= 0x40;
    uint64_t total = b.len + ((mode & 4) ? 1 : 0);
    size_t cut = (mode & 2) ? b.len / 2 : b.len;
    struct p2p_msg d = {.type = P2P_DATA, .id = req->id, .total = total};
    if (cut > 0) {
        d.off = 0;
        d.len = (uint32_t)cut;
        d.data = b.p;
        d.flags = cut == total ? P2P_LAST : 0;
        send_msg(w, &d);
    }
    if (cut < b.len && !(mode & 8) && w->c) {
        d.off = cut;
        d.len = (uint32_t)(b.len - cut);
        d.data = b.p + cut;
        d.flags = b.len == total ? P2P_LAST : 0;
        send_msg(w, &d);
    }
    buf_release(&b);
}

static void member_ask(struct world *w, uint8_t what, uint8_t chunk)
{
    static const enum p2p_msg_type type[] = {P2P_GET_BLOB, P2P_GET_INDEX, P2P_GET_CHUNK,
                                             P2P_HAVE,     P2P_GET_BLOB,  P2P_GET_TRACE};
    struct p2p_msg m = {.type = type[what % 6], .id = ++w->asked, .chunk = chunk};
    memcpy(m.digest, what % 6 == 0 ? M_HELD : what % 6 == 5 ? T_KEY : L_WHOLE, DIGEST_LEN);
    if (what % 6 == 4) { /* bytes of the download, written or not, past its end or not */
        memcpy(m.digest, L_DL, DIGEST_LEN);
        m.off = (uint64_t)chunk * 100;
        m.len = (uint32_t)(what / 6) * 300;
    }
    send_msg(w, &m);
}

static void send_dht(struct world *w, const uint8_t *p, size_t n)
{
    struct p2p_msg m = {.type = P2P_DHT, .len = (uint32_t)n, .data = p};
    send_msg(w, &m);
}

static void answer_dht(struct world *w, const struct dht_msg *q, uint8_t mode)
{
    struct dht_msg a = {.tx = q->tx};
    struct dht_contact me = {.addr = member_addr}, ghost = {.addr = {4, {10, 0, 0, 9}, 9}};
    memcpy(me.id, w->hid.id, DHT_ID_LEN);
    memset(ghost.id, 0x5a, DHT_ID_LEN);
    switch (q->type) {
    case DHT_PING:
        a.type = DHT_PONG;
        break;
    case DHT_FIND_NODE:
        a.type = DHT_NODES;
        if (mode & 1)
            a.nodes[a.nnodes++] = me;
        if (mode & 2)
            a.nodes[a.nnodes++] = ghost;
        break;
    case DHT_GET_PROVIDERS:
        a.type = DHT_PROVIDERS;
        a.self = true;
        if (mode & 1)
            a.providers[a.nproviders++] = me;
        if (mode & 2)
            a.providers[a.nproviders++] = ghost;
        break;
    case DHT_ADD_PROVIDER:
        a.type = DHT_STORED;
        a.accepted = q->nkeys;
        break;
    case DHT_CLAIM: /* any answer, a holder that exists or not, a lease of any length */
        a.type = DHT_CLAIMED;
        a.state = mode % (DHT_CLAIM_STATE_MAX + 1);
        a.lease_ms = (uint32_t)mode << 8;
        if (mode & 8)
            a.nodes[a.nnodes++] = mode & 16 ? ghost : me;
        break;
    default:
        return;
    }
    uint8_t out[DHT_MSG_MAX];
    int len = dht_msg_encode(&a, out);
    if (len > 0)
        send_dht(w, out, (size_t)len);
}

/* Time passes to until; the victim ticks at each deadline on the way. */
static void pass(struct world *w, uint64_t until)
{
    unsigned ticks = 0;
    while (w->nlive) { /* the jobs end: killed ones by their signal */
        struct node_exec *x = w->live[--w->nlive];
        x->result.status = x->st.kill_asked ? 137 : 3;
        x->result.oom = w->nlive == 2;
        node_exec_done(w->n, x, w->now);
        take_effects(w);
    }
    for (uint64_t d; (d = node_deadline(w->n)) <= until;) {
        if (d < w->now)
            d = w->now;
        if (++ticks > 100000)
            abort(); /* the deadline does not move: a busy loop */
        w->now = d;
        if (w->c && p2p_conn_tick(w->c, d) != 0 && !w->closing && w->k) {
            node_link_closed(w->n, w->k, -ECONNRESET, w->now);
            w->k = NULL;
            member_gone(w);
        }
        node_tick(w->n, d);
        take_effects(w);
        member_flush(w);
    }
    if (until > w->now)
        w->now = until;
}

static const char *const ctl_lines[] = {
    "{\"cmd\":\"peers\"}",
    "{\"cmd\":\"stats\"}",
    "{\"cmd\":\"reconcile\"}",
    "{\"cmd\":\"providers\",\"digest\":\"sha256:"
    "0200000000000000000000000000000000000000000000000000000000000000\"}",
    "{\"cmd\":\"fetch\",\"layer\":\"sha256:"
    "0200000000000000000000000000000000000000000000000000000000000000\",\"first\":0,\"last\":7}",
    "{\"cmd\":\"fetch\",\"layer\":\"sha256:"
    "0200000000000000000000000000000000000000000000000000000000000000\",\"first\":5,\"last\":2}",
    "{\"cmd\":\"pull\",\"ref\":\"127.0.0.1:1/x:y\",\"lazy\":true}",
    "{\"cmd\":\"nope\"}",
    "{\"cmd\":\"run\",\"image\":\"x\",\"args\":[\"a\"],\"cpus\":1000,\"memory\":1024,"
    "\"scratch\":1024,\"name\":\"j\"}",
    "{\"cmd\":\"run\",\"image\":\"x\",\"cpus\":3000,\"memory\":1024,\"scratch\":1,"
    "\"queue\":true,\"devices\":1}",
    "{\"cmd\":\"run\",\"image\":\"x\",\"cpus\":99000,\"memory\":1,\"scratch\":1}",
    "{\"cmd\":\"jobs\"}",
    "{\"cmd\":\"kill\",\"job\":\"j\"}",
    "{\"cmd\":\"wait\",\"job\":\"j\"}",
};

static void ctl_ask(struct world *w, const char *line, size_t len)
{
    if (w->nctl >= NCTL)
        return;
    int i = (int)w->nctl++;
    w->ctl[i] = 1;
    node_ctl_request(w->n, (struct node_ctl *)&w->ctl[i], line, len, w->now);
    take_effects(w);
}

static void world_init(struct world *w)
{
    static struct p2p_identity vid, hid; /* made once: the same for every input */
    static bool ids;
    if (!ids) {
        uint8_t seed[32];
        memset(seed, 1, sizeof seed);
        if (p2p_identity_from_seed(&vid, seed) != 0)
            abort();
        memset(seed, 2, sizeof seed);
        if (p2p_identity_from_seed(&hid, seed) != 0)
            abort();
        ids = true;
    }
    memset(w, 0, sizeof *w);
    w->now = 1000;
    w->rng = 7;
    memset(w->key, 7, sizeof w->key);
    w->vid = vid;
    w->hid = hid;
    static const uint8_t man[] = "MEMMAN01";
    if (memstore_new(&w->vs) || memstore_new(&w->hs) ||
        memstore_layer_add(w->vs, L_WHOLE, 4, CHUNK_LEN, true) ||
        memstore_layer_add(w->vs, L_PART, 8, CHUNK_LEN, false) ||
        memstore_blob_add(w->vs, M_HELD, man, sizeof man, true) ||
        memstore_layer_add(w->hs, L_PART, 8, CHUNK_LEN, true) ||
        memstore_layer_add(w->hs, L_NONE, 3, CHUNK_LEN, true) ||
        memstore_blob_add(w->hs, M_NONE, man, sizeof man, true) ||
        (memstore_set_clock(w->vs, &w->now), memstore_dl_set(w->vs, L_DL, DL_SIZE, 0, 1000)))
        abort();
    struct node_cfg cfg = {.id = &w->vid,
                           .cluster_key = w->key,
                           .rng = rng_fill,
                           .rng_arg = &w->rng,
                           .now = w->now,
                           .listen_port = SIMN_PORT,
                           .store = &memstore_ops,
                           .store_arg = w->vs,
                           .capacity = {4000, 1u << 20, 1u << 20, 2}};
    if (node_new(&w->n, &cfg) != 0)
        abort();
    take_effects(w);
}

static void world_free(struct world *w)
{
    for (int i = 0; i < NJOBS; i++)
        buf_release(&w->jobs[i].out);
    member_gone(w);
    memstore_free(w->vs);
    memstore_free(w->hs);
}

static void job_new(struct world *w, uint8_t what)
{
    struct job *jb = NULL;
    for (int i = 0; i < NJOBS && !jb; i++)
        if (w->jobs[i].state != 1)
            jb = &w->jobs[i];
    if (!jb)
        return;
    buf_release(&jb->out);
    memset(jb, 0, sizeof *jb);
    struct dht_contact me = {.addr = member_addr};
    memcpy(me.id, w->hid.id, DHT_ID_LEN);
    switch (what % 7) {
    case 6: /* a start trace, asked of its key's providers (the member provides everything) */
        jb->j.kind = NODE_JOB_TRACE;
        memcpy(jb->j.digest, T_KEY, DIGEST_LEN);
        break;
    case 0:
        jb->j.kind = NODE_JOB_BLOB;
        memcpy(jb->j.digest, M_NONE, DIGEST_LEN);
        break;
    case 5: /* the relay: bytes of the member's download of a layer, wherever it says it is */
        jb->j.kind = NODE_JOB_BLOB;
        memcpy(jb->j.digest, L_NONE, DIGEST_LEN);
        jb->j.has_src = true;
        jb->j.src = me;
        jb->j.off = (uint64_t)(what >> 3) * 200;
        jb->j.len = 1000;
        break;
    case 1:
        jb->j.kind = NODE_JOB_INDEX;
        memcpy(jb->j.digest, L_NONE, DIGEST_LEN);
        break;
    case 3: /* before a registry download: the layer's claim (a task that reads downloads, and
             * whose read of the member's failed) */
        jb->j.kind = NODE_JOB_CLAIM;
        memcpy(jb->j.digest, what & 32 ? L_NONE : L_PART, DIGEST_LEN);
        jb->j.relay = what & 64;
        jb->j.avoid_src = what & 128;
        jb->j.src = me;
        break;
    case 4:
        jb->j.kind = NODE_JOB_CLAIM_END;
        jb->j.whole = what & 8;
        memcpy(jb->j.digest, what & 32 ? L_NONE : L_PART, DIGEST_LEN);
        break;
    default:
        jb->j.kind = NODE_JOB_CHUNKS;
        memcpy(jb->j.digest, L_PART, DIGEST_LEN);
        jb->j.fetch = memstore_fetch_open(w->vs, L_PART);
        if (!jb->j.fetch)
            abort();
        jb->j.first = what % 8;
        jb->j.last = 7;
        break;
    }
    jb->j.max = jb->j.has_src                  ? 3 * CHUNK_LEN
                : jb->j.kind == NODE_JOB_TRACE ? NODE_TRACE_MAX_BYTES
                                               : 4096;
    jb->j.out = &jb->out;
    submit(w, jb, w->now);
    take_effects(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    world_init(&w);
    size_t i = 0;
#define NEED(n) (size - i >= (n))
    while (i < size) {
        uint8_t op = data[i++];
        switch (op) {
        case 0x00:
        case 0x0b:
            if (NEED(2) && member_connect(&w)) {
                size_t len = (size_t)data[i] | (size_t)data[i + 1] << 8;
                i += 2;
                if (len > size - i)
                    len = size - i;
                if (op == 0x0b)
                    send_dht(&w, data + i, len);
                else if (p2p_conn_send(w.c, data + i, len) == 0)
                    member_flush(&w);
                i += len;
            }
            break;
        case 0x01:
            if (NEED(1)) {
                uint8_t t = data[i++];
                pass(&w, w.now + (t == 255 ? 600000 : (uint64_t)t * 64));
            }
            break;
        case 0x02:
            if (NEED(2) && member_connect(&w) && w.nseen)
                answer_data(&w, &w.seen[data[i] % w.nseen], data[i + 1]);
            i += NEED(2) ? 2 : size - i;
            break;
        case 0x03:
            if (NEED(2) && member_connect(&w) && w.nseen) {
                struct p2p_msg e = {
                    .type = P2P_ERROR, .id = w.seen[data[i] % w.nseen].id, .code = data[i + 1]};
                send_msg(&w, &e);
            }
            i += NEED(2) ? 2 : size - i;
            break;
        case 0x04:
            if (NEED(3) && member_connect(&w) && w.nseen) {
                uint8_t bm[32];
                uint32_t nch = data[i + 1];
                memset(bm, data[i + 2], sizeof bm);
                if (nch % 8)
                    bm[nch / 8] &= (uint8_t)((1u << (nch % 8)) - 1);
                struct p2p_msg h = {.type = P2P_HAVE_REPLY,
                                    .id = w.seen[data[i] % w.nseen].id,
                                    .nchunks = nch,
                                    .data = bm};
                send_msg(&w, &h);
            }
            i += NEED(3) ? 3 : size - i;
            break;
        case 0x05:
            if (NEED(2) && member_connect(&w) && w.ndseen)
                answer_dht(&w, &w.dseen[data[i] % w.ndseen], data[i + 1]);
            i += NEED(2) ? 2 : size - i;
            break;
        case 0x06:
            if (NEED(1))
                job_new(&w, data[i++]);
            break;
        case 0x07:
            if (NEED(1)) {
                const char *l = ctl_lines[data[i++] % (sizeof ctl_lines / sizeof *ctl_lines)];
                ctl_ask(&w, l, strlen(l));
            }
            break;
        case 0x08:
            if (NEED(1)) {
                size_t len = data[i++];
                if (len > size - i)
                    len = size - i;
                ctl_ask(&w, (const char *)data + i, len);
                i += len;
            }
            break;
        case 0x09:
            if (w.k && !w.closing) {
                node_link_closed(w.n, w.k, -ECONNRESET, w.now);
                take_effects(&w);
            }
            break;
        case 0x0c:
            member_connect(&w);
            break;
        case 0x0d:
            if (NEED(2) && member_connect(&w))
                member_ask(&w, data[i], data[i + 1]);
            i += NEED(2) ? 2 : size - i;
            break;
        case 0x0e:
            if (NEED(1) && member_connect(&w)) {
                struct p2p_msg c = {.type = P2P_CANCEL, .id = data[i]};
                send_msg(&w, &c);
            }
            i += NEED(1) ? 1 : size - i;
            break;
        case 0x0f: /* it says it holds a chunk (GOT), true or not */
            if (NEED(2) && member_connect(&w)) {
                struct p2p_msg g = {.type = P2P_GOT, .chunk = data[i + 1]};
                memcpy(g.digest,
                       data[i] % 3 == 0   ? L_WHOLE
                       : data[i] % 3 == 1 ? L_PART
                                          : L_NONE,
                       DIGEST_LEN);
                send_msg(&w, &g);
            }
            i += NEED(2) ? 2 : size - i;
            break;
        case 0x0a:
            memstore_layer_drop(w.vs, L_WHOLE);
            node_store_changed(w.n, w.now);
            take_effects(&w);
            break;
        default:
            break;
        }
    }
#undef NEED
    /* the node stops: within a minute of virtual time, with every job and request ended */
    node_stop(w.n, w.now);
    take_effects(&w);
    pass(&w, w.now); /* the jobs killed by the stop end */
    uint64_t limit = w.now + 60000;
    while (!w.stopped && node_deadline(w.n) <= limit)
        pass(&w, node_deadline(w.n));
    if (!w.stopped)
        abort();
    for (int j = 0; j < NJOBS; j++)
        if (w.jobs[j].state == 1)
            abort();
    for (size_t c = 0; c < w.nctl; c++)
        if (w.ctl[c] != 2)
            abort();
    if (memstore_handles_open(w.vs))
        abort(); /* a layer opened for serving (or a job's fetch handle) was never closed */
    node_free(w.n);
    world_free(&w);
    return 0;
}
