/*
 * msg.c - the DHT's messages: parse and encode. One message per P2P_DHT frame; the encoding is
 * canonical, so a parsed message encodes back to exactly its bytes.
 *
 *   u8 type | u8 zero | u16 zero | u32 tx | body
 *
 * Owns: nothing (pure functions). Must not: read past the message, or accept a byte that does
 * not belong (reserved bytes, trailing bytes, an address with bytes past its family's length).
 */
#include "dht.h"

#include "../util/util.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define HDR 8

static int contact_get(const uint8_t *p, struct dht_contact *c)
{
    memcpy(c->id, p, DHT_ID_LEN);
    p += DHT_ID_LEN;
    c->addr.family = p[0];
    memcpy(c->addr.ip, p + 1, 16);
    c->addr.port = (uint16_t)(p[17] | p[18] << 8);
    if (c->addr.port == 0 || (c->addr.family != 4 && c->addr.family != 6))
        return AFSP_E_FORMAT;
    if (c->addr.family == 4)
        for (int i = 4; i < 16; i++)
            if (c->addr.ip[i])
                return AFSP_E_FORMAT;
    return 0;
}

static void contact_put(uint8_t *p, const struct dht_contact *c)
{
    memcpy(p, c->id, DHT_ID_LEN);
    p += DHT_ID_LEN;
    p[0] = c->addr.family;
    memcpy(p + 1, c->addr.ip, 16);
    p[17] = (uint8_t)c->addr.port;
    p[18] = (uint8_t)(c->addr.port >> 8);
}

/* A count byte and that many contacts at *p (n bytes left); advances. */
static int contacts_get(const uint8_t **p, size_t *n, struct dht_contact *out, unsigned *count)
{
    if (*n < 1)
        return AFSP_E_FORMAT;
    unsigned c = (*p)[0];
    if (c > DHT_K_MAX || *n - 1 < (size_t)c * DHT_CONTACT_LEN)
        return AFSP_E_FORMAT;
    for (unsigned i = 0; i < c; i++)
        if (contact_get(*p + 1 + (size_t)i * DHT_CONTACT_LEN, &out[i]) < 0)
            return AFSP_E_FORMAT;
    *count = c;
    *p += 1 + (size_t)c * DHT_CONTACT_LEN;
    *n -= 1 + (size_t)c * DHT_CONTACT_LEN;
    return 0;
}

int dht_msg_parse(const uint8_t *p, size_t n, struct dht_msg *m)
{
    memset(m, 0, offsetof(struct dht_msg, nodes));
    m->nnodes = m->nproviders = 0;
    if (n < HDR || p[1] || p[2] || p[3])
        return AFSP_E_FORMAT;
    m->type = p[0];
    m->tx = get_le32(p + 4);
    const uint8_t *b = p + HDR;
    size_t bn = n - HDR;
    switch (m->type) {
    case DHT_PING:
    case DHT_PONG:
        return bn == 0 ? 0 : AFSP_E_FORMAT;
    case DHT_FIND_NODE:
    case DHT_GET_PROVIDERS:
        if (bn != DHT_ID_LEN)
            return AFSP_E_FORMAT;
        memcpy(m->target, b, DHT_ID_LEN);
        return 0;
    case DHT_ADD_PROVIDER:
        if (bn < 2)
            return AFSP_E_FORMAT;
        m->nkeys = (unsigned)(b[0] | b[1] << 8);
        if (m->nkeys == 0 || m->nkeys > DHT_BATCH_MAX || bn - 2 != (size_t)m->nkeys * DHT_ID_LEN)
            return AFSP_E_FORMAT;
        m->keys = b + 2;
        return 0;
    case DHT_CLAIM:
        if (bn != DHT_ID_LEN + 1 || b[DHT_ID_LEN] > DHT_CLAIM_OP_MAX)
            return AFSP_E_FORMAT;
        memcpy(m->target, b, DHT_ID_LEN);
        m->op = b[DHT_ID_LEN];
        return 0;
    case DHT_CLAIMED:
        if (bn < 5 || b[0] > DHT_CLAIM_STATE_MAX)
            return AFSP_E_FORMAT;
        m->state = b[0];
        m->lease_ms = get_le32(b + 1);
        b += 5;
        bn -= 5;
        if (contacts_get(&b, &bn, m->nodes, &m->nnodes) < 0 || m->nnodes > 1)
            return AFSP_E_FORMAT;
        return bn == 0 ? 0 : AFSP_E_FORMAT;
    case DHT_STORED:
        if (bn != 2)
            return AFSP_E_FORMAT;
        m->accepted = (unsigned)(b[0] | b[1] << 8);
        return m->accepted <= DHT_BATCH_MAX ? 0 : AFSP_E_FORMAT;
    case DHT_NODES:
        if (contacts_get(&b, &bn, m->nodes, &m->nnodes) < 0)
            return AFSP_E_FORMAT;
        return bn == 0 ? 0 : AFSP_E_FORMAT;
    case DHT_PROVIDERS:
        if (bn < 1 || b[0] > 1)
            return AFSP_E_FORMAT;
        m->self = b[0];
        b++;
        bn--;
        if (contacts_get(&b, &bn, m->providers, &m->nproviders) < 0 ||
            contacts_get(&b, &bn, m->nodes, &m->nnodes) < 0)
            return AFSP_E_FORMAT;
        return bn == 0 ? 0 : AFSP_E_FORMAT;
    default:
        return AFSP_E_FORMAT;
    }
}

int dht_msg_encode(const struct dht_msg *m, uint8_t *out)
{
    uint8_t *b = out + HDR;
    out[0] = (uint8_t)m->type;
    out[1] = out[2] = out[3] = 0;
    put_le32(out + 4, m->tx);
    switch (m->type) {
    case DHT_PING:
    case DHT_PONG:
        break;
    case DHT_FIND_NODE:
    case DHT_GET_PROVIDERS:
        memcpy(b, m->target, DHT_ID_LEN);
        b += DHT_ID_LEN;
        break;
    case DHT_ADD_PROVIDER:
        if (m->nkeys == 0 || m->nkeys > DHT_BATCH_MAX)
            return AFSP_E_USAGE;
        b[0] = (uint8_t)m->nkeys;
        b[1] = (uint8_t)(m->nkeys >> 8);
        memcpy(b + 2, m->keys, (size_t)m->nkeys * DHT_ID_LEN);
        b += 2 + (size_t)m->nkeys * DHT_ID_LEN;
        break;
    case DHT_CLAIM:
        memcpy(b, m->target, DHT_ID_LEN);
        b[DHT_ID_LEN] = m->op;
        b += DHT_ID_LEN + 1;
        break;
    case DHT_CLAIMED:
        if (m->nnodes > 1)
            return AFSP_E_USAGE;
        *b++ = m->state;
        put_le32(b, m->lease_ms);
        b += 4;
        *b++ = (uint8_t)m->nnodes;
        if (m->nnodes)
            contact_put(b, &m->nodes[0]);
        b += m->nnodes * DHT_CONTACT_LEN;
        break;
    case DHT_STORED:
        if (m->accepted > DHT_BATCH_MAX)
            return AFSP_E_USAGE;
        b[0] = (uint8_t)m->accepted;
        b[1] = (uint8_t)(m->accepted >> 8);
        b += 2;
        break;
    case DHT_PROVIDERS:
        if (m->nproviders > DHT_K_MAX)
            return AFSP_E_USAGE;
        *b++ = m->self;
        *b++ = (uint8_t)m->nproviders;
        for (unsigned i = 0; i < m->nproviders; i++, b += DHT_CONTACT_LEN)
            contact_put(b, &m->providers[i]);
        __attribute__((fallthrough)); /* the nodes */
    case DHT_NODES:
        if (m->nnodes > DHT_K_MAX)
            return AFSP_E_USAGE;
        *b++ = (uint8_t)m->nnodes;
        for (unsigned i = 0; i < m->nnodes; i++, b += DHT_CONTACT_LEN)
            contact_put(b, &m->nodes[i]);
        break;
    default:
        return AFSP_E_USAGE;
    }
    int len = (int)(b - out);
    /* what we write, we must read: an encoder bug shows here, not at the peer */
    struct dht_msg back;
    return dht_msg_parse(out, (size_t)len, &back) == 0 ? len : AFSP_E_USAGE;
}

unsigned dht_common_bits(const uint8_t a[static DHT_ID_LEN], const uint8_t b[static DHT_ID_LEN])
{
    for (unsigned i = 0; i < DHT_ID_LEN; i++) {
        uint8_t x = a[i] ^ b[i];
        if (x)
            return i * 8 + (unsigned)__builtin_clz(x) - 24;
    }
    return DHT_ID_LEN * 8;
}

int dht_distance_cmp(const uint8_t target[static DHT_ID_LEN], const uint8_t a[static DHT_ID_LEN],
                     const uint8_t b[static DHT_ID_LEN])
{
    for (unsigned i = 0; i < DHT_ID_LEN; i++) {
        uint8_t da = a[i] ^ target[i], db = b[i] ^ target[i];
        if (da != db)
            return da < db ? -1 : 1;
    }
    return 0;
}

bool dht_addr_equal(const struct dht_addr *a, const struct dht_addr *b)
{
    return a->family == b->family && a->port == b->port && !memcmp(a->ip, b->ip, 16);
}

const char *dht_addr_fmt(const struct dht_addr *a, char *out, size_t cap)
{
    if (a->family == 4) {
        snprintf(out, cap, "%u.%u.%u.%u:%u", a->ip[0], a->ip[1], a->ip[2], a->ip[3], a->port);
    } else {
        char h[48];
        size_t o = 0;
        for (int i = 0; i < 16; i += 2)
            o += (size_t)snprintf(h + o, sizeof h - o, "%s%x", i ? ":" : "",
                                  (unsigned)(a->ip[i] << 8 | a->ip[i + 1]));
        snprintf(out, cap, "[%s]:%u", h, a->port);
    }
    return out;
}
