/*
 * counters.c - what `afsp stats --json` and `afsp peers --json` show, built from the lists in
 * node.h (NODE_COUNTERS) and here (the DHT's statistics), so that the struct, the JSON and the
 * documentation (node_counters_doc) cannot disagree.
 *
 * Owns: the JSON of stats and peers. Must not: do I/O.
 */
#include "node_int.h"

#include <jansson.h>
#include <string.h>

/* The "dht" section of stats: X(json name, the value, what it is). */
#define NODE_DHT_STATS(X)                                                                          \
    X("contacts", ds.contacts, "nodes in the routing table")                                       \
    X("buckets", ds.buckets, "non-empty buckets")                                                  \
    X("replacements", ds.replacements, "verified contacts waiting for room in a full bucket")      \
    X("keys", ds.keys, "keys with provider records held for others")                               \
    X("records", ds.records, "provider records held for others")                                   \
    X("claims_held", dht_claims_held(n->dht), "layers' fetch claims held for others (as granter)") \
    X("providing", ds.providing, "keys this node announces")                                       \
    X("lookups", ds.lookups, "lookups run")                                                        \
    X("lookups_failed", ds.lookups_failed, "lookups no node answered")                             \
    X("lookup_ms_p50", ds.lookup_ms_p50, "median lookup time of the last 256 (ms)")                \
    X("lookup_ms_p99", ds.lookup_ms_p99, "99th percentile of the same (ms)")                       \
    X("hops_p50", ds.hops_p50, "median hops of the last 256 lookups")                              \
    X("messages_in", ds.msgs_in, "DHT messages received")                                          \
    X("messages_out", ds.msgs_out, "DHT messages sent")                                            \
    X("timeouts", ds.timeouts, "DHT requests that got no answer")                                  \
    X("refused", ds.refused, "requests refused for the per-peer rate")                             \
    X("provider_lookups", n->st.provider_lookups, "provider lookups (fetch jobs, afsp providers)") \
    X("dials", n->st.dht_dials, "connections dialed to reach DHT contacts and providers")

static struct peer_tally *tally_get(struct node *n, const uint8_t id[static P2P_ID_LEN])
{
    struct peer_tally *least = NULL;
    for (size_t i = 0; i < n->ntally; i++) {
        struct peer_tally *t = &n->tally[i];
        if (!memcmp(t->id, id, P2P_ID_LEN))
            return t;
        if (!least || t->in + t->out < least->in + least->out)
            least = t;
    }
    struct peer_tally *t = n->ntally < NODE_PEER_TALLY ? &n->tally[n->ntally++] : least;
    memcpy(t->id, id, P2P_ID_LEN); /* the least busy peer's place: its bytes stay in the totals */
    t->in = t->out = 0;
    return t;
}

void counters_link_closed(struct node *n, const struct node_link *k)
{
    if (!k->chunk_bytes_in && !k->chunk_bytes_out)
        return;
    struct peer_tally *t = tally_get(n, k->peer_id);
    t->in += k->chunk_bytes_in;
    t->out += k->chunk_bytes_out;
}

/* "transfer": where this node's layer bytes came from and went: the registry, each peer (its
 * links closed and open), in all. */
static json_t *transfer_json(struct node *n)
{
    json_t *peers = json_array();
    char id[2 * P2P_ID_LEN + 1];
    struct peer_tally all[NODE_PEER_TALLY + 64];
    size_t na = n->ntally;
    memcpy(all, n->tally, na * sizeof *all);
    for (struct node_link *k = n->links; k; k = k->next) {
        if (k->state != LINK_UP || (!k->chunk_bytes_in && !k->chunk_bytes_out))
            continue;
        size_t i = 0;
        while (i < na && memcmp(all[i].id, k->peer_id, P2P_ID_LEN))
            i++;
        if (i == na) {
            if (na == sizeof all / sizeof *all)
                continue;
            memcpy(all[na].id, k->peer_id, P2P_ID_LEN);
            all[na].in = all[na].out = 0;
            na++;
        }
        all[i].in += k->chunk_bytes_in;
        all[i].out += k->chunk_bytes_out;
    }
    for (size_t i = 0; i < na; i++)
        json_array_append_new(
            peers, json_pack("{s:s, s:I, s:I}", "id", hex_fmt(all[i].id, P2P_ID_LEN, id), "from",
                             (json_int_t)all[i].in, "to", (json_int_t)all[i].out));
    return json_pack("{s:I, s:I, s:I, s:o}", "from_registry", (json_int_t)n->st.bytes_registry,
                     "from_peers", (json_int_t)n->st.bytes_fetched, "to_peers",
                     (json_int_t)n->st.bytes_served, "peers", peers);
}

json_t *counters_stats_json(struct node *n, uint64_t now)
{
    struct node_store_usage u = {0};
    char id[2 * P2P_ID_LEN + 1], since[32];
    n->so->usage(n->sa, &u);
    json_t *store = json_pack("{s:I, s:I, s:I, s:I, s:I}", "used", (json_int_t)u.used, "reserved",
                              (json_int_t)u.reserved, "limit", (json_int_t)u.limit, "layers",
                              (json_int_t)u.layers, "images", (json_int_t)u.images);
    json_t *c = json_object();
#define X(name, doc) json_object_set_new(c, #name, json_integer((json_int_t)n->st.name));
    NODE_COUNTERS(X)
#undef X
    struct dht_stats ds;
    dht_stats_get(n->dht, &ds);
    json_t *dht = json_object();
#define X(name, value, doc) json_object_set_new(dht, name, json_integer((json_int_t)(value)));
    NODE_DHT_STATS(X)
#undef X
    (void)now;
    return json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o}", "id",
                     hex_fmt(n->id->id, P2P_ID_LEN, id), "listen",
                     n->cfg.listen_port && n->cfg.listen_text ? n->cfg.listen_text : "", "started",
                     time_fmt(n->started_wall_ms * 1000000, since), "peers",
                     (json_int_t)node_links_up(n), "store", store, "transfer", transfer_json(n),
                     "counters", c, "dht", dht, "jobs", exec_stats_json(n));
}

json_t *counters_peers_json(struct node *n, uint64_t now)
{
    json_t *a = json_array();
    char id[2 * P2P_ID_LEN + 1], since[32];
    for (struct node_link *k = n->links; k; k = k->next) {
        if (k->state != LINK_UP)
            continue;
        uint64_t wall = n->started_wall_ms + (k->up_at - n->started);
        json_array_append_new(
            a,
            json_pack("{s:s, s:s, s:i, s:b, s:I, s:I, s:I, s:I, s:I, s:s, s:b, s:i, s:i}", "id",
                      hex_fmt(k->peer_id, P2P_ID_LEN, id), "address", k->addr, "listen_port",
                      (int)k->hello_port, "initiator", k->initiator, "rtt_ms",
                      (json_int_t)k->rtt_ms, "bytes_in", (json_int_t)k->bytes_in, "bytes_out",
                      (json_int_t)k->bytes_out, "chunk_bytes_in", (json_int_t)k->chunk_bytes_in,
                      "chunk_bytes_out", (json_int_t)k->chunk_bytes_out, "since",
                      time_fmt(wall * 1000000, since), "banned", k->ban_until > now, "requests_out",
                      (int)p2p_peer_inflight(k->p), "requests_in", (int)p2p_peer_serving(k->p)));
    }
    return a;
}

void node_counters_doc(struct buf *out)
{
    buf_printf(out, "| counter | what it counts |\n|---|---|\n");
#define X(name, doc) buf_printf(out, "| `%s` | %s |\n", #name, doc);
    NODE_COUNTERS(X)
#undef X
    buf_printf(out, "\n| `dht` field | what it is |\n|---|---|\n");
#define X(name, value, doc) buf_printf(out, "| `%s` | %s |\n", name, doc);
    NODE_DHT_STATS(X)
#undef X
}
