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
 *   peer.c   requests and answers over one connection: ids, windows, stalls, serving limits
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
#define P2P_TX_MAX (64u << 20) /* bytes a connection queues for the I/O side, by default */
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

struct p2p_conn_cfg {
    bool initiator;
    const struct p2p_identity *id; /* borrowed; must outlive the connection */
    const uint8_t *cluster_key;    /* P2P_KEY_LEN bytes, copied */
    rng_fn rng;                    /* NULL: libsodium's randombytes_buf */
    void *rng_arg;
    uint64_t now_ms;       /* when the connection began */
    uint64_t rekey_every;  /* frames per key; 0: P2P_REKEY_EVERY */
    uint64_t handshake_ms; /* the handshake's time limit; 0: P2P_HANDSHAKE_TIMEOUT_MS */
    size_t tx_max;         /* bytes waiting to be taken by the I/O side, at most; past it a send
                              fails with -ENOBUFS (a p2p_peer then fails: its peer does not
                              read); 0: P2P_TX_MAX */
    size_t frame_max;      /* payload bytes of one frame, at most, both ways (both ends must agree);
                              0: P2P_FRAME_MAX. Only the fuzz targets set it, to reach the
                              receive buffer's limits with small inputs. */
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
 * P2P_FRAME_MAX), -ENOBUFS (tx_max bytes already wait to be sent: the caller's flow control failed;
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
/* Once established: the Noise handshake hash (32 bytes), the same at both ends and different for
 * every connection; public (it commits to the transcript, it reveals no key). The node breaks
 * ties between two connections of one pair with it. */
const uint8_t *p2p_conn_handshake_hash(const struct p2p_conn *c);

/* ---- msg.c ------------------------------------------------------------------------------- */

/* One message per frame (docs/protocol.md, "Messages"). Requests carry an id the requester
 * chose; every answer names it. */
enum p2p_msg_type {
    P2P_GET_BLOB = 0x01,   /* digest, off, len: bytes of a stored blob (manifest, config, layer) */
    P2P_GET_INDEX = 0x02,  /* digest (a layer), off, len: bytes of its index */
    P2P_GET_CHUNK = 0x03,  /* digest (a layer), chunk: one chunk's bytes */
    P2P_HAVE = 0x04,       /* digest (a layer): which chunks the peer holds */
    P2P_CANCEL = 0x05,     /* the request id is no longer wanted */
    P2P_HELLO = 0x06,      /* port (id 0): where the sender listens for peers, 0 for nowhere */
    P2P_DHT = 0x07,        /* bytes (id 0): a DHT message (dht/), opaque here */
    P2P_GOT = 0x08,        /* digest, chunk (id 0): the sender holds that chunk of the layer now */
    P2P_GET_TRACE = 0x09,  /* digest (a start trace's key), off, len: bytes of the trace */
    P2P_DATA = 0x81,       /* total, off, bytes: a piece of the answer; P2P_LAST on the last */
    P2P_HAVE_REPLY = 0x82, /* nchunks, bitmap (bit i of byte i/8: chunk i present) */
    P2P_ERROR = 0x83,      /* code: the request ends without (more) data */
};
#define P2P_LAST 0x01
enum p2p_err_code { P2P_ERR_NOT_FOUND = 1, P2P_ERR_BUSY = 2, P2P_ERR_BAD_REQUEST = 3 };
#define P2P_DATA_MAX (256u << 10)   /* bytes in one DATA message (docs/swarm.md: why not more) */
#define P2P_OBJECT_MAX (1ull << 44) /* bytes in one blob or index (16 TiB) */
#define P2P_CHUNKS_MAX (1u << 22)   /* chunks in one layer (the index's file bound) */
#define P2P_DHT_MAX 16384           /* bytes of one DHT message */
/* A DATA message's bytes start this far into it: encode with m.data already at out + this, and
 * they are not copied. */
#define P2P_DATA_HDR 24

struct p2p_msg {
    enum p2p_msg_type type;
    uint8_t flags;
    uint32_t id;
    uint8_t digest[DIGEST_LEN];
    uint64_t off, total;
    uint32_t len, chunk, code, nchunks, port;
    const uint8_t *data; /* DATA and DHT bytes, HAVE_REPLY bitmap: points into the frame */
};

/* Parses a frame's payload. Returns 0 or AFSP_E_FORMAT: an unknown type, a reserved bit, a body
 * of the wrong size, a range past its object, a bitmap with padding bits set. */
int p2p_msg_parse(const uint8_t *p, size_t n, struct p2p_msg *m);
/* The encoded size of m. */
size_t p2p_msg_size(const struct p2p_msg *m);
/* Encodes m into out (cap bytes); *len is the size. Returns 0, or AFSP_E_USAGE for a message
 * that does not fit, or that the parser would refuse. */
int p2p_msg_encode(const struct p2p_msg *m, uint8_t *out, size_t cap, size_t *len);

/* ---- peer.c ------------------------------------------------------------------------------ */

/* Requests and answers over one connection, still without I/O. The requester keeps at most a
 * window of requests outstanding, each identified by an id it chose; every answer is checked
 * against its request (pieces in order, the same total, no more than was asked for) and a
 * violation ends the connection with AFSP_E_PROTO; so does a piece short of P2P_DATA_MAX that
 * is not the answer's last, which makes no progress. A request that gets no piece for stall_ms,
 * or whose answer is not whole request_ms after it was sent (plus a millisecond for every
 * P2P_MIN_RATE / 1000 bytes it may have), fails with -ETIMEDOUT (and is cancelled at the peer). The
 * server side answers at most P2P_SERVING_MAX requests of one peer at once (more get ERROR busy)
 * and produces answer bytes only when the connection has room (p2p_peer_pump), so a slow reader
 * costs memory bounded by the caller's budget. */
#define P2P_WINDOW 32        /* requests outstanding to one peer */
#define P2P_SERVING_MAX 64   /* requests of one peer answered at once */
#define P2P_STALL_MS 5000    /* a request with no progress for this long fails */
#define P2P_REQUEST_MS 60000 /* a request's answer must be whole this long after it was sent, */
#define P2P_MIN_RATE (256u << 10) /* plus a second for every this many bytes it may have */

struct p2p_peer;

/* Where an answer's bytes come from: read fills buf with n bytes at off of the object (returns 0
 * or a negative code, which ends the answer with ERROR not-found); done, if not NULL, is called
 * once when the answer ends for any reason. */
struct p2p_source {
    int (*read)(void *arg, uint64_t off, uint8_t *buf, size_t n);
    void (*done)(void *arg);
    void *arg;
};

struct p2p_peer_ops {
    /* A request from the peer (GET_BLOB, GET_INDEX, GET_CHUNK, HAVE; m is valid during the
     * call). Answer it, now or later, with one p2p_peer_answer_*(m->id, ...). */
    void (*request)(void *arg, struct p2p_peer *p, const struct p2p_msg *m);
    /* Bytes [off, off + n) of the answer to our request req, an object of total bytes; pieces
     * come in order. b is valid during the call. Returns 0, or a negative code to give the
     * request up (it is cancelled at the peer, and done reports the code). */
    int (*data)(void *arg, struct p2p_peer *p, void *req, uint64_t total, uint64_t off,
                const uint8_t *b, size_t n);
    /* The answer to our HAVE request req (bitmap valid during the call). */
    void (*have)(void *arg, struct p2p_peer *p, void *req, uint32_t nchunks, const uint8_t *bitmap);
    /* Request req ended: 0 (every byte came, or the HAVE answer did), AFSP_E_NOTFOUND, -EBUSY,
     * AFSP_E_PROTO (the peer called it a bad request), -ETIMEDOUT (stalled), data's code, or the
     * connection's error. Called exactly once for each request p2p_peer_request accepted and
     * p2p_peer_cancel did not withdraw. */
    void (*done)(void *arg, struct p2p_peer *p, void *req, int rc);
    /* The peer's HELLO: the port it listens on (0: none). May be NULL. */
    void (*hello)(void *arg, struct p2p_peer *p, uint16_t port);
    /* A DHT message (b valid during the call). May be NULL: the message is dropped. */
    void (*dht)(void *arg, struct p2p_peer *p, const uint8_t *b, size_t n);
    /* The peer's GOT: it holds chunk of layer digest now. May be NULL: dropped. */
    void (*got)(void *arg, struct p2p_peer *p, const uint8_t *digest, uint32_t chunk);
};

struct p2p_peer_cfg {
    struct p2p_conn_cfg conn;
    const struct p2p_peer_ops *ops; /* borrowed */
    void *arg;
    uint32_t window;     /* 0: P2P_WINDOW */
    uint32_t stall_ms;   /* 0: P2P_STALL_MS */
    uint32_t request_ms; /* 0: P2P_REQUEST_MS */
};

int p2p_peer_new(struct p2p_peer **out, const struct p2p_peer_cfg *cfg);
/* Ends every outstanding request (done with rc, or -ECONNRESET for 0) and every answer (its
 * source's done), then frees p. */
void p2p_peer_free(struct p2p_peer *p, int rc);
/* The connection: its pending bytes go to the peer (p2p_conn_pending / p2p_conn_sent). */
struct p2p_conn *p2p_peer_conn(struct p2p_peer *p);
/* The error that ended the connection, or 0. */
int p2p_peer_error(const struct p2p_peer *p);
uint32_t p2p_peer_inflight(const struct p2p_peer *p);
uint32_t p2p_peer_serving(const struct p2p_peer *p);

/* Bytes from the peer, as p2p_conn_input, with every whole frame dispatched to the ops. Returns
 * 0 or the error that ended the connection (every request is done with it by then). */
int p2p_peer_input(struct p2p_peer *p, const uint8_t *b, size_t n, uint64_t now_ms, size_t *used);
/* Sends request m (GET_BLOB, GET_INDEX, GET_CHUNK or HAVE; its id is chosen here) at time now:
 * it stalls if no piece of its answer comes by now + stall_ms (a connection that carried nothing
 * for a while must not start a request in the past). The answer's object may be at most
 * max_total bytes. req is the caller's, passed back to data/have/done. Returns 0, -EAGAIN (the
 * window is full), AFSP_E_USAGE (not established, not a request), or the connection's error. */
int p2p_peer_request(struct p2p_peer *p, const struct p2p_msg *m, uint64_t max_total, void *req,
                     uint64_t now);
/* Withdraws request req: CANCEL goes to the peer, done is not called, late answers are
 * dropped. */
void p2p_peer_cancel(struct p2p_peer *p, void *req);
int p2p_peer_hello(struct p2p_peer *p, uint16_t port);
/* Sends a DHT message (1 to P2P_DHT_MAX bytes). Returns 0, AFSP_E_USAGE, or the connection's
 * error. */
int p2p_peer_send_dht(struct p2p_peer *p, const uint8_t *b, size_t n);
/* Sends GOT: this node holds chunk of layer digest now (chunk < P2P_CHUNKS_MAX). Returns 0,
 * AFSP_E_USAGE, or the connection's error. */
int p2p_peer_got(struct p2p_peer *p, const uint8_t digest[static DIGEST_LEN], uint32_t chunk);

/* The answers to request id (from ops->request). A request answered after the peer cancelled
 * it, or after the connection died, is dropped (answer_data calls src->done at once). */
int p2p_peer_answer_error(struct p2p_peer *p, uint32_t id, enum p2p_err_code code);
/* Whether request id still waits for its answer (not cancelled, not answered, the connection
 * alive): an answer that waits for something can be dropped once it is not. */
bool p2p_peer_answer_wanted(struct p2p_peer *p, uint32_t id);
int p2p_peer_answer_have(struct p2p_peer *p, uint32_t id, uint32_t nchunks, const uint8_t *bitmap);
/* Bytes [off, off + len) of an object of total bytes (len clipped at total), read from src as
 * p2p_peer_pump needs them. */
int p2p_peer_answer_data(struct p2p_peer *p, uint32_t id, uint64_t total, uint64_t off,
                         uint64_t len, const struct p2p_source *src);
/* Produces answer bytes, round robin over the answers, until the connection holds budget bytes
 * to send or no answer has more. Returns 0 or the connection's error. */
int p2p_peer_pump(struct p2p_peer *p, size_t budget);

/* When p2p_peer_tick must next run (UINT64_MAX: never), and the tick: the handshake timeout,
 * and requests that stalled. */
uint64_t p2p_peer_deadline(const struct p2p_peer *p);
int p2p_peer_tick(struct p2p_peer *p, uint64_t now_ms);

#endif
