/*
 * claim.c - single flight: one registry download of a layer for the whole cluster
 * (docs/swarm.md). A task about to download a layer from the registry first submits a CLAIM job:
 * the node asks the DHT for the layer's claim (dht_claim, at the node closest to the layer's
 * digest). Granted: the task downloads, and the node renews the lease every third of it until
 * the task's CLAIM_END, which tells the granter DONE (the node is named to everyone who asks
 * for a while, and announces the layer as usual) or DROP. Held by another node: the job waits,
 * asking again every claim_poll, until the granter says the holder is done (the holder becomes
 * a provider of the job's digest, and the job comes back -EAGAIN: the task asks peers again),
 * or grants the claim to this node (the holder's lease ran out: a takeover), or claim_wait plus
 * a second per 4 MiB of the layer has passed (the task downloads uncoordinated: a claimant that
 * never finishes delays the cluster, it does not stop it). Anything that leaves no granter to
 * ask (no DHT contact answers, no room) makes the task download uncoordinated, as before claims.
 *
 * Owns: the claims (struct node_claim). Must not: keep a job waiting past its bound, or hand a
 * job back twice.
 */
#include "node_int.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define CLAIM_WAIT_PER_S (4ull << 20) /* bytes of a layer that add a second to claim_wait */

static void claim_ask(struct node_claim *cl, uint64_t now);

static void on_claim_timer(struct node *n, struct node_timer *t, uint64_t now)
{
    (void)n;
    claim_ask((struct node_claim *)((char *)t - offsetof(struct node_claim, timer)), now);
}

void claims_init(struct node *n)
{
    for (size_t i = 0; i < NODE_CLAIMS; i++) {
        n->claims[i].n = n;
        timer_init(&n->claims[i].timer, on_claim_timer);
    }
}

static void job_back(struct node *n, struct node_job *j, int rc)
{
    j->rc = rc;
    fx_push(n, &(struct node_effect){.type = NODE_FX_JOB_DONE, .job = j});
}

static void claim_free(struct node_claim *cl)
{
    struct node *n = cl->n;
    if (cl->req)
        dht_claim_cancel(cl->req);
    timer_stop(n, &cl->timer);
    struct node_timer t = cl->timer;
    memset(cl, 0, sizeof *cl);
    cl->n = n;
    cl->timer = t;
}

/* The waiting job comes back with rc (claimed: this node holds the claim from now on; the slot
 * stays also while it is the standby). */
static void claim_answer_job(struct node_claim *cl, int rc, bool claimed)
{
    struct node *n = cl->n;
    struct node_job *j = cl->j;
    cl->j = NULL;
    j->claimed = claimed;
    job_back(n, j, rc);
    if (!claimed && !cl->standby)
        claim_free(cl);
}

/* The waiting job reads holder's download (the relay). */
static void claim_stream(struct node_claim *cl, const struct dht_contact *holder)
{
    cl->j->stream = true;
    cl->j->src = *holder;
    claim_answer_job(cl, 0, false);
}

static const char *dg_short(const uint8_t *d, char out[static DIGEST_STR_LEN + 1])
{
    digest_fmt(d, out);
    out[19] = 0;
    return out;
}

/* Another claim of this node (a task's) on the same layer that is held. */
static struct node_claim *held_here(struct node *n, const struct node_claim *but)
{
    for (size_t i = 0; i < NODE_CLAIMS; i++) {
        struct node_claim *c = &n->claims[i];
        if (c != but && c->used && c->held && !memcmp(c->digest, but->digest, DIGEST_LEN))
            return c;
    }
    return NULL;
}

/* A reader's check (its source has not failed it): told to read on, it reads from where it
 * reads. */
static bool checking(const struct node_job *j)
{
    return j && j->reading && !j->avoid_src;
}

static void on_claim(void *arg, int rc, const struct dht_claim_result *r)
{
    struct node_claim *cl = arg;
    struct node *n = cl->n;
    uint64_t now = n->now;
    char dg[DIGEST_STR_LEN + 1];
    cl->req = NULL;
    if (rc == -ECANCELED)
        return; /* claim_free, or the DHT is freed with the node */
    if (rc == 0 && !r->granter_self) {
        cl->granter = r->granter;
        cl->has_granter = true;
    }
    if (cl->held) { /* a renewal */
        if (rc < 0 || r->state != DHT_CLAIM_GRANTED)
            log_info("event=claim_renewal layer=%s rc=%d state=%d (the download goes on)",
                     dg_short(cl->digest, dg), rc, rc ? -1 : (int)r->state);
        if (rc < 0)
            cl->has_granter = false; /* look the granter up again next time */
        timer_set(n, &cl->timer, now + MAX(n->t.claim_lease / 3, 1));
        return;
    }
    /* a waiting job's ask, or the standby's */
    enum dht_claim_state st = rc < 0 ? DHT_CLAIM_FREE : r->state;
    struct node_job *j = cl->j;
    if (st == DHT_CLAIM_GRANTED && held_here(n, cl))
        st = DHT_CLAIM_HELD; /* this node's own other task downloads it */
    /* a node whose download can be read: not this one, nor one whose download failed the task */
    bool src = rc == 0 && j && j->relay && r->state != DHT_CLAIM_GRANTED &&
               memcmp(r->holder.id, n->id->id, P2P_ID_LEN) &&
               !(j && j->avoid_src && !memcmp(r->holder.id, j->src.id, P2P_ID_LEN));
    if (!j && rc < 0) { /* the standby's ask failed: kept, asked again (the granter looked up) */
        cl->has_granter = false;
        timer_set(n, &cl->timer, now + MAX(n->t.claim_lease / 3, 1));
        return;
    }
    if (!j && st != DHT_CLAIM_GRANTED && st != DHT_CLAIM_STANDBY) {
        if (st == DHT_CLAIM_FINISHED)
            providers_hint(n, cl->digest, &r->holder, now);
        claim_free(cl); /* no longer the standby: the task reads on, or asks again */
        return;
    }
    switch (st) {
    case DHT_CLAIM_GRANTED:
        cl->held = true;
        n->st.claims++;
        n->st.claim_takeovers += cl->waited || cl->standby;
        log_info("event=claim layer=%s takeover=%d standby=%d", dg_short(cl->digest, dg),
                 cl->waited || cl->standby, cl->standby);
        cl->promoted = !j;
        cl->standby = false;
        if (j)
            claim_answer_job(cl, 0, true);
        timer_set(n, &cl->timer, now + MAX(n->t.claim_lease / 3, 1));
        return;
    case DHT_CLAIM_FINISHED:
        providers_hint(n, cl->digest, &r->holder, now);
        cl->standby = false;
        if (checking(j) && j->whole) { /* a whole pull reads on */
            claim_stream(cl, &j->src);
            return;
        }
        /* a lazy one (or one whose source failed): what it read so far, and the swarm */
        claim_answer_job(cl, -EAGAIN, false);
        return;
    case DHT_CLAIM_STANDBY:
        if (!cl->standby)
            log_info("event=claim_standby layer=%s", dg_short(cl->digest, dg));
        cl->standby = true;
        if (j && src) { /* it holds what the holder holds, to take over from there */
            claim_stream(cl, &r->holder);
            timer_set(n, &cl->timer, now + MAX(n->t.claim_lease / 3, 1));
            return;
        }
        if (!j) {
            timer_set(n, &cl->timer, now + MAX(n->t.claim_lease / 3, 1));
            return;
        }
        /* the holder's download failed this task: it waits for the lease, as for HELD */
        __attribute__((fallthrough));
    case DHT_CLAIM_RELAY:
        if (checking(j)) { /* on from where it reads */
            claim_stream(cl, &j->src);
            return;
        }
        if (j && src) { /* a whole pull: reads the download of the reader before it */
            n->st.claim_relays++;
            log_info("event=claim_relay layer=%s relink=%d", dg_short(cl->digest, dg),
                     j->avoid_src);
            claim_stream(cl, &r->holder);
            return;
        }
        __attribute__((fallthrough)); /* named the source that failed it: it waits */
    case DHT_CLAIM_HELD:
        if (src &&
            (j->avoid_src || j->reading)) { /* a task reading a download: on from the holder */
            cl->standby = false;
            claim_stream(cl, &r->holder);
            return;
        }
        if (!cl->waited) {
            cl->waited = true;
            n->st.claim_waits++;
            log_info("event=claim_wait layer=%s lease_ms=%" PRIu64, dg_short(cl->digest, dg),
                     rc ? 0 : r->lease_ms);
        }
        if (now - cl->since >= cl->wait_max) {
            n->st.claim_waits_expired++;
            log_warn("layer %s: another node's download has not finished in %" PRIu64
                     " s; downloading it here too",
                     dg_short(cl->digest, dg), (now - cl->since) / 1000);
            cl->standby = false;
            claim_answer_job(cl, 0, false);
            return;
        }
        timer_set(n, &cl->timer, now + n->t.claim_poll);
        return;
    default: /* FREE, NONE, no granter: uncoordinated; a reader reads on */
        cl->standby = false;
        if (checking(j)) {
            claim_stream(cl, &j->src);
            return;
        }
        log_debug("event=claim_free layer=%s rc=%d", dg_short(cl->digest, dg), rc);
        claim_answer_job(cl, 0, false);
        return;
    }
}

/* What a job asks of the granter: a whole pull may read a download (the relay chain). */
static enum dht_claim_op claim_op(const struct node_job *j)
{
    if (!j || !j->relay)
        return DHT_CLAIM_TAKE;
    if (j->avoid_src)
        return DHT_CLAIM_RELINK;
    if (j->reading)
        return DHT_CLAIM_READ;
    return j->whole ? DHT_CLAIM_TAKE_READ : DHT_CLAIM_TAKE;
}

static void claim_ask(struct node_claim *cl, uint64_t now)
{
    struct node *n = cl->n;
    if (cl->req)
        return;
    /* cl->req is set now and cleared by on_claim, which may run before this returns (when this
     * node is the granter) */
    int rc = dht_claim(n->dht, cl->digest, claim_op(cl->j), cl->has_granter ? &cl->granter : NULL,
                       on_claim, cl, now, &cl->req);
    if (rc < 0) {
        cl->req = NULL;
        if (cl->j)
            claim_answer_job(cl, 0, false); /* no room to ask: uncoordinated */
        else
            timer_set(n, &cl->timer, now + MAX(n->t.claim_lease / 3, 1));
    }
}

static void noop_claim(void *arg, int rc, const struct dht_claim_result *r)
{
    (void)arg;
    (void)rc;
    (void)r;
}

/* CLAIM_END: the granter hears DONE or DROP (nothing waits for its answer); this node's other
 * tasks waiting on the layer go on at once. */
static void claim_end(struct node *n, struct node_job *j, uint64_t now)
{
    struct node_claim *cl = NULL;
    for (size_t i = 0; i < NODE_CLAIMS && !cl; i++)
        if (n->claims[i].used && n->claims[i].held && n->claims[i].owner == j->owner &&
            !memcmp(n->claims[i].digest, j->digest, DIGEST_LEN))
            cl = &n->claims[i];
    if (cl) {
        struct dht_contact g = cl->granter;
        bool has = cl->has_granter;
        claim_free(cl);
        dht_claim(n->dht, j->digest, j->whole ? DHT_CLAIM_DONE : DHT_CLAIM_DROP, has ? &g : NULL,
                  noop_claim, NULL, now, NULL);
    }
    for (size_t i = 0; i < NODE_CLAIMS; i++) {
        struct node_claim *w = &n->claims[i];
        if (w->used && !w->j && w->standby && w->owner == j->owner &&
            !memcmp(w->digest, j->digest, DIGEST_LEN))
            claim_free(w); /* the task read the layer whole: no standby any more */
        if (!w->used || !w->j || memcmp(w->digest, j->digest, DIGEST_LEN))
            continue;
        if (j->whole)
            claim_answer_job(w, -EAGAIN, false); /* the store has it whole */
        else
            timer_set(n, &w->timer, now);
    }
    job_back(n, j, 0);
}

void claim_submit(struct node *n, struct node_job *j, uint64_t now)
{
    n->now = now;
    j->claimed = false;
    if (n->stopping) {
        job_back(n, j, -ECANCELED);
        node_settle(n, now);
        return;
    }
    if (j->kind == NODE_JOB_CLAIM_END) {
        claim_end(n, j, now);
        node_settle(n, now);
        return;
    }
    j->stream = false;
    struct node_claim *cl = NULL;
    for (size_t i = 0; i < NODE_CLAIMS && !cl; i++) {
        struct node_claim *c = &n->claims[i];
        if (c->used && !c->j && (c->standby || c->promoted) && c->owner == j->owner &&
            !memcmp(c->digest, j->digest, DIGEST_LEN))
            cl = c; /* its task asks again (the download it read failed, or ended) */
    }
    if (cl && cl->promoted) {
        cl->promoted = false;
        j->claimed = true;
        job_back(n, j, 0); /* the standby got the claim meanwhile */
        node_settle(n, now);
        return;
    }
    if (cl) {
        cl->j = j;
        cl->since = now;
        cl->wait_max = n->t.claim_wait + j->max / CLAIM_WAIT_PER_S * 1000;
        timer_stop(n, &cl->timer);
        claim_ask(cl, now);
        node_settle(n, now);
        return;
    }
    for (size_t i = 0; i < NODE_CLAIMS && !cl; i++)
        if (!n->claims[i].used)
            cl = &n->claims[i];
    if (!cl) {
        job_back(n, j, 0); /* no room: uncoordinated */
        node_settle(n, now);
        return;
    }
    cl->owner = j->owner;
    cl->used = true;
    cl->j = j;
    memcpy(cl->digest, j->digest, DIGEST_LEN);
    cl->since = now;
    cl->wait_max = n->t.claim_wait + j->max / CLAIM_WAIT_PER_S * 1000;
    claim_ask(cl, now);
    node_settle(n, now);
}

void claims_cancel_all(struct node *n)
{
    for (size_t i = 0; i < NODE_CLAIMS; i++) {
        struct node_claim *cl = &n->claims[i];
        if (!cl->used)
            continue;
        if (cl->j)
            job_back(n, cl->j, -ECANCELED);
        cl->j = NULL;
        claim_free(cl);
    }
}
