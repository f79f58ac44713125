/*
 * p2p.h - the peer transport: node identity, the cluster key, and a sans-IO connection that
 * runs the handshake and then carries encrypted, authenticated frames.
 *
 * Sans-IO: a connection never touches a socket, a clock or a random source. Bytes from the peer
 * go in (p2p_conn_input), decrypted frames come out (p2p_conn_recv), bytes for the peer are
 * taken from p2p_conn_pending / p2p_conn_sent; time is a parameter (milliseconds, any epoch)
 * and randomness comes from the caller's function. The libuv glue, the tests and the simulator
 * drive the same code. docs/protocol.md is the wire format.
 *
 *   keys.c   identity (Ed25519, node ID = SHA-256 of the public key) and cluster key files
 *   noise.c  the Noise_XXpsk0_25519_AESGCM_SHA256 handshake and the transport ciphers
 *   conn.c   the connection: handshake messages and frames on a byte stream
 *   msg.c    the messages inside frames: requests and answers
 */
#ifndef AFSP_P2P_H
#define AFSP_P2P_H

#include "../util/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define P2P_KEY_LEN 32
#define P2P_ID_LEN 32
/* Largest frame payload: a chunk piece plus a request header. */
#define P2P_FRAME_MAX ((1u << 20) + 256)
/* A handshake not finished within this long is abandoned. */
#define P2P_HANDSHAKE_TIMEOUT_MS 10000
/* Each direction's key is replaced (Noise Rekey) after this many frames. */
#define P2P_REKEY_EVERY (1ull << 20)

/* ---- keys.c ----------------------------------------------------------------------------- */

struct p2p_identity {
    uint8_t ed_pk[32], ed_sk[64]; /* Ed25519: the node's key pair (signatures) */
    uint8_t x_pk[32], x_sk[32];   /* X25519 from the same key: the Noise static key */
    uint8_t id[P2P_ID_LEN];       /* node ID: SHA-256 of x_pk, the key the handshake proves */
};

/* The identity whose Ed25519 seed is seed (tests, and the key file's contents). */
int p2p_identity_from_seed(struct p2p_identity *id, const uint8_t seed[static 32]);
/* Loads the identity kept in path (a 32-byte seed, mode 0600), creating it on first use.
 * *created says whether it was made now. */
int p2p_identity_load(struct p2p_identity *id, const char *path, bool *created);
void p2p_identity_wipe(struct p2p_identity *id);

/* A cluster key file holds 32 bytes in base64 (what `afsp genkey` prints), whitespace around it
 * allowed. Returns 0, AFSP_E_FORMAT, or a system error. */
int p2p_cluster_key_load(uint8_t key[static P2P_KEY_LEN], const char *path);
/* Writes a new random key to path (mode 0600, must not exist). */
int p2p_cluster_key_create(uint8_t key[static P2P_KEY_LEN], const char *path);
/* key as base64 text (44 characters and a NUL). */
void p2p_key_b64(const uint8_t key[static P2P_KEY_LEN], char out[static 45]);

/* ---- conn.c ------------------------------------------------------------------------------ */

typedef void (*p2p_rng_fn)(void *arg, uint8_t *buf, size_t n);

struct p2p_conn_cfg {
    bool initiator;
    const struct p2p_identity *id; /* borrowed; must outlive the connection */
    const uint8_t *cluster_key;    /* P2P_KEY_LEN bytes, copied */
    p2p_rng_fn rng;                /* NULL: libsodium's randombytes_buf */
    void *rng_arg;
    uint64_t now_ms;      /* when the connection began */
    uint64_t rekey_every; /* frames per key; 0: P2P_REKEY_EVERY */
};

struct p2p_conn;

/* A new connection; the initiator's first handshake message is pending at once. */
int p2p_conn_new(struct p2p_conn **out, const struct p2p_conn_cfg *cfg);
/* Secrets are wiped. */
void p2p_conn_free(struct p2p_conn *c);

/* Bytes received from the peer; *used says how many were taken: fewer than n only when the
 * buffer holds as much as the largest frame, so whole frames are buffered, which p2p_conn_recv
 * must take before the rest is offered again (a connection never holds more than 1 MiB + 276
 * bytes, and before the handshake ends no more than one handshake message). Returns 0, or an error
 * after which the connection is dead (every later call returns it): AFSP_E_AUTH for anything that
 * fails authentication (a wrong cluster key, a flipped bit, a replayed or reordered frame, a
 * small-order key), AFSP_E_FORMAT for a frame over P2P_FRAME_MAX or a handshake message of the
 * wrong size, -ETIMEDOUT. Handshake messages are processed here; frames wait for
 * p2p_conn_recv. */
int p2p_conn_input(struct p2p_conn *c, const uint8_t *p, size_t n, uint64_t now_ms, size_t *used);
/* The next frame received, decrypted in place: *len bytes at the returned pointer, valid until
 * the next call on c. NULL when no whole frame is buffered (or on error: see p2p_conn_error). */
const uint8_t *p2p_conn_recv(struct p2p_conn *c, size_t *len);
/* Queues a frame (once established). Returns 0, AFSP_E_USAGE (not established, or over
 * P2P_FRAME_MAX), -ENOBUFS (64 MiB already wait to be sent: the caller's flow control failed;
 * the connection lives on), -EOVERFLOW (the nonces are spent: the connection is dead),
 * -ENOMEM. */
int p2p_conn_send(struct p2p_conn *c, const void *payload, size_t n);

/* Bytes waiting to go to the peer, and how many were sent. The pointer is valid only until the
 * next call that may queue bytes (p2p_conn_send, p2p_conn_input): the I/O side copies the bytes
 * out, or finishes writing them, before calling either again. */
size_t p2p_conn_pending(const struct p2p_conn *c, const uint8_t **p);
void p2p_conn_sent(struct p2p_conn *c, size_t n);

/* When p2p_conn_tick must next be called (UINT64_MAX: never); tick fails the connection with
 * -ETIMEDOUT if the handshake has not finished by then. */
uint64_t p2p_conn_deadline(const struct p2p_conn *c);
int p2p_conn_tick(struct p2p_conn *c, uint64_t now_ms);

bool p2p_conn_established(const struct p2p_conn *c);
/* The error that killed the connection, or 0. */
int p2p_conn_error(const struct p2p_conn *c);
/* Once established: the peer's node ID and its static (X25519) public key. */
const uint8_t *p2p_conn_peer_id(const struct p2p_conn *c);
const uint8_t *p2p_conn_peer_key(const struct p2p_conn *c);

/* ---- msg.c ------------------------------------------------------------------------------- */

/* One message per frame (docs/protocol.md, "Messages"). Requests carry an id the requester
 * chose; every answer names it. */
enum p2p_msg_type {
    P2P_GET_BLOB = 0x01,   /* digest, off, len: bytes of a stored blob (manifest, config, layer) */
    P2P_GET_INDEX = 0x02,  /* digest (a layer), off, len: bytes of its index */
    P2P_GET_CHUNK = 0x03,  /* digest (a layer), chunk: one chunk's bytes */
    P2P_HAVE = 0x04,       /* digest (a layer): which chunks the peer holds */
    P2P_CANCEL = 0x05,     /* the request id is no longer wanted */
    P2P_DATA = 0x81,       /* total, off, bytes: a piece of the answer; P2P_LAST on the last */
    P2P_HAVE_REPLY = 0x82, /* nchunks, bitmap (bit i of byte i/8: chunk i present) */
    P2P_ERROR = 0x83,      /* code: the request ends without (more) data */
};
#define P2P_LAST 0x01
enum p2p_err_code { P2P_ERR_NOT_FOUND = 1, P2P_ERR_BUSY = 2, P2P_ERR_BAD_REQUEST = 3 };
#define P2P_DATA_MAX (1u << 20)     /* bytes in one DATA message */
#define P2P_OBJECT_MAX (1ull << 44) /* bytes in one blob or index (16 TiB) */
#define P2P_CHUNKS_MAX (1u << 22)   /* chunks in one layer (the index's file bound) */

struct p2p_msg {
    enum p2p_msg_type type;
    uint8_t flags;
    uint32_t id;
    uint8_t digest[DIGEST_LEN];
    uint64_t off, total;
    uint32_t len, chunk, code, nchunks;
    const uint8_t *data; /* DATA bytes, HAVE_REPLY bitmap: points into the parsed frame */
};

/* Parses a frame's payload. Returns 0 or AFSP_E_FORMAT: an unknown type, a reserved bit, a body
 * of the wrong size, a range past its object, a bitmap with padding bits set. */
int p2p_msg_parse(const uint8_t *p, size_t n, struct p2p_msg *m);
/* The encoded size of m. */
size_t p2p_msg_size(const struct p2p_msg *m);
/* Encodes m into out (cap bytes); *len is the size. Returns 0, or AFSP_E_USAGE for a message
 * that does not fit, or that the parser would refuse. */
int p2p_msg_encode(const struct p2p_msg *m, uint8_t *out, size_t cap, size_t *len);

#endif
