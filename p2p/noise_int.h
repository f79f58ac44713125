/*
 * noise_int.h - inside p2p/: the Noise pieces conn.c builds on (noise.c), and test hooks.
 */
#ifndef AFSP_P2P_NOISE_INT_H
#define AFSP_P2P_NOISE_INT_H

#include "p2p.h"

#define NOISE_PROTOCOL "Noise_XXpsk0_25519_AESGCM_SHA256"
#define NOISE_PROLOGUE "afsp peer protocol 1"
#define NOISE_TAG 16
#define NOISE_HASH 32

/* The fixed sizes of the three handshake messages (without the stream's length prefix); every
 * payload is empty, its tag 16 bytes:
 *   -> psk, e            e (32) + payload tag
 *   <- e, ee, s, es      e (32) + s (32 + 16) + payload tag
 *   -> s, se             s (32 + 16) + payload tag */
#define NOISE_MSG1 (32 + NOISE_TAG)
#define NOISE_MSG2 (32 + 32 + NOISE_TAG + NOISE_TAG)
#define NOISE_MSG3 (32 + NOISE_TAG + NOISE_TAG)

/* A CipherState: AES-256-GCM with a 64-bit counter nonce (OpenSSL: 3.5 GB/s here, against
 * 0.7 for libsodium's ChaCha20-Poly1305). */
struct noise_cipher {
    void *ctx; /* EVP_CIPHER_CTX, keyed (the only copy of the key); NULL: no key yet */
    uint64_t n;
};

int noise_cipher_init(struct noise_cipher *c, const uint8_t k[static 32]);
void noise_cipher_wipe(struct noise_cipher *c);
/* out = ciphertext (n bytes) + tag; out may equal in. -EOVERFLOW when the nonces are spent. */
int noise_encrypt(struct noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *in,
                  size_t n, uint8_t *out);
/* in = ciphertext + tag (n bytes in all); out gets n - NOISE_TAG bytes; AFSP_E_AUTH. */
int noise_decrypt(struct noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *in,
                  size_t n, uint8_t *out);
/* Noise Rekey(): k = ENCRYPT(k, 2^64 - 1, "", zeros)[0..32); the counter goes on. */
int noise_rekey(struct noise_cipher *c);

enum noise_step { HS_WRITE1, HS_READ1, HS_WRITE2, HS_READ2, HS_WRITE3, HS_READ3, HS_DONE };

struct noise_hs {
    bool initiator;
    enum noise_step step;
    uint8_t ck[NOISE_HASH], h[NOISE_HASH];
    struct noise_cipher c; /* the handshake's CipherState */
    uint8_t e_sk[32], e_pk[32], re[32], rs[32];
    const struct p2p_identity *s;
    uint8_t psk[32];
};

/* e_seed: 32 random bytes for the ephemeral key. */
int noise_hs_init(struct noise_hs *hs, bool initiator, const struct p2p_identity *s,
                  const uint8_t psk[static 32], const uint8_t e_seed[static 32]);
/* Writes the next message (the size above) into out. */
int noise_hs_write(struct noise_hs *hs, uint8_t *out, size_t *len);
/* Reads the peer's next message: AFSP_E_FORMAT for a wrong size, AFSP_E_AUTH for anything that
 * does not authenticate (wrong cluster key, tampering, a small-order key). After the last one,
 * hs->rs is the peer's static key. */
int noise_hs_read(struct noise_hs *hs, const uint8_t *in, size_t len);
/* After the last message: the two transport ciphers (Split), the initiator's sending one first
 * for the initiator, and the handshake state wiped. */
int noise_hs_split(struct noise_hs *hs, struct noise_cipher *tx, struct noise_cipher *rx);
void noise_hs_wipe(struct noise_hs *hs);

/* Test hook: set both counters of a connection (nonce boundaries). */
void p2p_conn_test_set_nonces(struct p2p_conn *c, uint64_t tx, uint64_t rx);

#endif
