/*
 * msg.c - the messages carried in frames: requests for blobs, indexes and chunks, and their
 * answers. One message per frame; the encoding is canonical (one byte string per message), so
 * a parsed message encodes back to exactly the bytes it came from.
 *
 *   u8 type | u8 flags | u16 zero | u32 id | body (fixed per type, or a bounded length)
 *
 * Owns: nothing (pure functions). Must not: accept a byte that does not belong (reserved bits,
 * trailing bytes, padding bits of a bitmap), or read past the frame.
 */
#include "p2p.h"

#include <string.h>

#define HDR 8

/* The body size of a type with a fixed one, or -1. */
static long fixed_body(enum p2p_msg_type t)
{
    switch (t) {
    case P2P_GET_BLOB:
    case P2P_GET_INDEX:
    case P2P_GET_TRACE:
        return DIGEST_LEN + 8 + 4;
    case P2P_GET_CHUNK:
    case P2P_GOT:
        return DIGEST_LEN + 4;
    case P2P_HAVE:
        return DIGEST_LEN;
    case P2P_HELLO:
        return 4;
    case P2P_CANCEL:
        return 0;
    case P2P_ERROR:
        return 4;
    default:
        return -1;
    }
}

static bool known_type(unsigned t)
{
    return (t >= P2P_GET_BLOB && t <= P2P_GET_TRACE) || (t >= P2P_DATA && t <= P2P_ERROR);
}

static size_t bitmap_len(uint32_t nbits)
{
    return ((size_t)nbits + 7) / 8;
}

int p2p_msg_parse(const uint8_t *p, size_t n, struct p2p_msg *m)
{
    memset(m, 0, sizeof *m);
    if (n < HDR || !known_type(p[0]) || p[2] || p[3])
        return AFSP_E_FORMAT;
    m->type = p[0];
    m->flags = p[1];
    m->id = get_le32(p + 4);
    const uint8_t *b = p + HDR;
    size_t bn = n - HDR;
    /* only DATA has a flag */
    if (m->flags & ~(m->type == P2P_DATA ? P2P_LAST : 0))
        return AFSP_E_FORMAT;
    long fixed = fixed_body(m->type);
    if (fixed >= 0 && bn != (size_t)fixed)
        return AFSP_E_FORMAT;
    switch (m->type) {
    case P2P_GET_BLOB:
    case P2P_GET_INDEX:
    case P2P_GET_TRACE:
        memcpy(m->digest, b, DIGEST_LEN);
        m->off = get_le64(b + DIGEST_LEN);
        m->len = get_le32(b + DIGEST_LEN + 8);
        if (m->off > P2P_OBJECT_MAX || m->len > P2P_OBJECT_MAX - m->off)
            return AFSP_E_FORMAT;
        return 0;
    case P2P_GET_CHUNK:
        memcpy(m->digest, b, DIGEST_LEN);
        m->chunk = get_le32(b + DIGEST_LEN);
        return m->chunk < P2P_CHUNKS_MAX ? 0 : AFSP_E_FORMAT;
    case P2P_GOT:
        memcpy(m->digest, b, DIGEST_LEN);
        m->chunk = get_le32(b + DIGEST_LEN);
        return m->id == 0 && m->chunk < P2P_CHUNKS_MAX ? 0 : AFSP_E_FORMAT;
    case P2P_HAVE:
        memcpy(m->digest, b, DIGEST_LEN);
        return 0;
    case P2P_CANCEL:
        return 0;
    case P2P_HELLO:
        m->port = get_le32(b);
        return m->id == 0 && m->port <= 65535 ? 0 : AFSP_E_FORMAT;
    case P2P_DHT:
        m->data = b;
        m->len = (uint32_t)bn;
        return m->id == 0 && bn >= 1 && bn <= P2P_DHT_MAX ? 0 : AFSP_E_FORMAT;
    case P2P_ERROR:
        m->code = get_le32(b);
        return m->code >= P2P_ERR_NOT_FOUND && m->code <= P2P_ERR_BAD_REQUEST ? 0 : AFSP_E_FORMAT;
    case P2P_DATA:
        if (bn < 16)
            return AFSP_E_FORMAT;
        m->total = get_le64(b);
        m->off = get_le64(b + 8);
        m->data = b + 16;
        m->len = (uint32_t)(bn - 16);
        if (m->total > P2P_OBJECT_MAX || m->off > m->total || m->len > m->total - m->off ||
            m->len > P2P_DATA_MAX)
            return AFSP_E_FORMAT;
        /* the last piece ends the object; others end before it */
        if ((m->flags & P2P_LAST) != (m->off + m->len == m->total ? P2P_LAST : 0))
            return AFSP_E_FORMAT;
        return 0;
    case P2P_HAVE_REPLY: {
        if (bn < 4)
            return AFSP_E_FORMAT;
        m->nchunks = get_le32(b);
        if (m->nchunks > P2P_CHUNKS_MAX || bn - 4 != bitmap_len(m->nchunks))
            return AFSP_E_FORMAT;
        m->data = b + 4;
        m->len = (uint32_t)(bn - 4);
        if (m->nchunks % 8 && m->data[m->len - 1] >> (m->nchunks % 8)) /* padding bits set */
            return AFSP_E_FORMAT;
        return 0;
    }
    default:
        return AFSP_E_FORMAT;
    }
}

size_t p2p_msg_size(const struct p2p_msg *m)
{
    long fixed = fixed_body(m->type);
    if (fixed >= 0)
        return HDR + (size_t)fixed;
    if (m->type == P2P_DATA)
        return HDR + 16 + m->len;
    if (m->type == P2P_DHT)
        return HDR + m->len;
    return HDR + 4 + bitmap_len(m->nchunks); /* HAVE_REPLY */
}

int p2p_msg_encode(const struct p2p_msg *m, uint8_t *out, size_t cap, size_t *len)
{
    if (!known_type(m->type))
        return AFSP_E_USAGE;
    size_t n = p2p_msg_size(m);
    if (n > cap || n > P2P_FRAME_MAX)
        return AFSP_E_USAGE;
    out[0] = (uint8_t)m->type;
    out[1] = m->flags;
    out[2] = out[3] = 0;
    put_le32(out + 4, m->id);
    uint8_t *b = out + HDR;
    switch (m->type) {
    case P2P_GET_BLOB:
    case P2P_GET_INDEX:
    case P2P_GET_TRACE:
        memcpy(b, m->digest, DIGEST_LEN);
        put_le64(b + DIGEST_LEN, m->off);
        put_le32(b + DIGEST_LEN + 8, m->len);
        break;
    case P2P_GET_CHUNK:
    case P2P_GOT:
        memcpy(b, m->digest, DIGEST_LEN);
        put_le32(b + DIGEST_LEN, m->chunk);
        break;
    case P2P_HAVE:
        memcpy(b, m->digest, DIGEST_LEN);
        break;
    case P2P_CANCEL:
        break;
    case P2P_HELLO:
        put_le32(b, m->port);
        break;
    case P2P_ERROR:
        put_le32(b, m->code);
        break;
    case P2P_DHT:
        memmove(b, m->data, m->len);
        break;
    case P2P_DATA:
        put_le64(b, m->total);
        put_le64(b + 8, m->off);
        if (m->len) /* may already be in place: see P2P_DATA_HDR */
            memmove(b + 16, m->data, m->len);
        break;
    case P2P_HAVE_REPLY:
        put_le32(b, m->nchunks);
        if (m->nchunks)
            memcpy(b + 4, m->data, bitmap_len(m->nchunks));
        break;
    }
    *len = n;
    /* what we write, we must read: an encoder bug shows here, not at the peer */
    struct p2p_msg back;
    return p2p_msg_parse(out, n, &back) == 0 ? 0 : AFSP_E_USAGE;
}
