/*
 * route.c - the DHT over the links: its messages go in P2P_DHT frames over the up link to their
 * node (whichever end opened it: the handshake proved the ID), else wait on a link dialed to the
 * address the DHT gave until the handshake proves the node is there. A node that cannot be
 * reached, or that turns out to be another, is reported to the DHT at once, so that its requests
 * fail now rather than at their timeout.
 *
 * Owns: the DHT's timer and the queues of DHT messages on links being made. Must not: do I/O.
 */
#include "node_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void route_dq_drop(struct node_link *k)
{
    while (k->dq) {
        struct dq *q = k->dq;
        k->dq = q->next;
        free(q);
    }
    k->dq_tail = &k->dq;
    k->ndq = 0;
}

static void send_dht(struct node_link *k, const uint8_t *msg, size_t len)
{
    if (p2p_peer_send_dht(k->p, msg, len) < 0) {
        int rc = p2p_peer_error(k->p);
        link_close(k, rc ? rc : -ECONNRESET);
        return;
    }
    link_touch(k);
}

void route_dq_send(struct node_link *from, struct node_link *to)
{
    while (from->dq && to->state == LINK_UP) {
        struct dq *q = from->dq;
        from->dq = q->next;
        send_dht(to, q->msg, q->len);
        free(q);
    }
    route_dq_drop(from);
}

static void route_one(struct node *n, const struct dht_out *o, uint64_t now)
{
    struct node_link *k = link_to(n, o->to.id, false);
    if (k) {
        send_dht(k, o->msg, o->len);
        return;
    }
    k = link_to(n, o->to.id, true);
    if (!k) {
        if (!(k = link_dial(n, &o->to.addr, o->to.id, now))) {
            dht_unreachable(n->dht, o->to.id, now);
            return;
        }
        n->st.dht_dials++;
    }
    struct dq *q = k->ndq < NODE_LINK_DHT_QUEUE ? malloc(sizeof *q + o->len) : NULL;
    if (!q)
        return; /* the request times out */
    q->next = NULL;
    q->len = o->len;
    memcpy(q->msg, o->msg, o->len);
    *k->dq_tail = q;
    k->dq_tail = &q->next;
    k->ndq++;
}

bool route_run(struct node *n, uint64_t now)
{
    struct dht_out o; /* 8 KiB */
    bool any = false;
    while (dht_output(n->dht, &o)) {
        route_one(n, &o, now);
        any = true;
    }
    return any;
}

void route_input(struct node_link *k, const uint8_t *msg, size_t len, uint64_t now)
{
    struct dht_addr a;
    link_peer_addr(k, &a);
    /* the frame may have come in the input that ended the handshake, before link_up */
    int rc = dht_input(k->n->dht, p2p_conn_peer_id(p2p_peer_conn(k->p)), &a, msg, len, now);
    if (rc == AFSP_E_FORMAT && !k->doom)
        k->doom = AFSP_E_PROTO; /* closed once p2p_peer_input returns */
}

static void on_dht_timer(struct node *n, struct node_timer *t, uint64_t now)
{
    (void)t;
    dht_tick(n->dht, now);
}

void route_timer_update(struct node *n)
{
    if (!n->dht_timer.fire)
        timer_init(&n->dht_timer, on_dht_timer);
    timer_set(n, &n->dht_timer, n->stopping ? UINT64_MAX : dht_deadline(n->dht));
}
