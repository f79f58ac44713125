/*
 * noise.c - the handshake: Noise_XXpsk0_25519_AESGCM_SHA256 (the Noise Protocol Framework,
 * revision 34), and the CipherStates that carry the frames after it.
 *
 *   -> psk, e
 *   <- e, ee, s, es
 *   -> s, se
 *
 * psk is the cluster key, mixed in before the first message, so a node without it fails at the
 * first message's tag. The static keys are the nodes' Ed25519 identities converted to X25519
 * (libsodium); a node's ID is the SHA-256 of that X25519 key, the one the handshake proves (not
 * of the Ed25519 key: the conversion ignores its sign bit, so an ID made from it would give
 * every node a second one for free). Payloads are empty. Every DH result that is all zeros (a
 * small-order point) fails the handshake. AES-256-GCM is OpenSSL's; SHA-256, HMAC, X25519 and
 * the key conversions libsodium's (its HMAC needs no allocation: OpenSSL's one-shot HMAC fetched
 * the digest and allocated a context per call, the most of a handshake's cost under the
 * fuzzer). Secrets are wiped on every exit.
 */
#include "noise_int.h"

#include <errno.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <string.h>

/* ---- CipherState --------------------------------------------------------------------------- */

static void nonce_bytes(uint64_t n, uint8_t iv[12])
{
    memset(iv, 0, 4); /* AESGCM: 32 bits of zeros, then the counter big-endian */
    for (int i = 0; i < 8; i++)
        iv[4 + i] = (uint8_t)(n >> (56 - 8 * i));
}

int noise_cipher_init(struct noise_cipher *c, const uint8_t k[static 32])
{
    if (!c->ctx && !(c->ctx = EVP_CIPHER_CTX_new()))
        return -ENOMEM;
    c->n = 0;
    if (EVP_CipherInit_ex(c->ctx, EVP_aes_256_gcm(), NULL, k, NULL, -1) != 1)
        return err_set(-EIO, "AES-256-GCM setup");
    return 0;
}

void noise_cipher_wipe(struct noise_cipher *c)
{
    if (c->ctx)
        EVP_CIPHER_CTX_free(c->ctx);
    sodium_memzero(c, sizeof *c);
}

static int aead(struct noise_cipher *c, int enc, uint64_t n, const uint8_t *ad, size_t adlen,
                const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[NOISE_TAG])
{
    uint8_t iv[12];
    int outl;
    nonce_bytes(n, iv);
    if (EVP_CipherInit_ex(c->ctx, NULL, NULL, NULL, iv, enc) != 1)
        return -EIO;
    if (!enc && EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_GCM_SET_TAG, NOISE_TAG, tag) != 1)
        return -EIO;
    if (adlen && EVP_CipherUpdate(c->ctx, NULL, &outl, ad, (int)adlen) != 1)
        return -EIO;
    if (len && EVP_CipherUpdate(c->ctx, out, &outl, in, (int)len) != 1)
        return -EIO;
    if (EVP_CipherFinal_ex(c->ctx, out + len, &outl) != 1)
        return enc ? -EIO : AFSP_E_AUTH;
    if (enc && EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_GCM_GET_TAG, NOISE_TAG, tag) != 1)
        return -EIO;
    return 0;
}

int noise_encrypt(struct noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *in,
                  size_t n, uint8_t *out)
{
    if (c->n == UINT64_MAX) /* 2^64 - 1 is reserved (Rekey) */
        return -EOVERFLOW;
    int rc = aead(c, 1, c->n, ad, adlen, in, n, out, out + n);
    if (rc == 0)
        c->n++;
    return rc;
}

int noise_decrypt(struct noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *in,
                  size_t n, uint8_t *out)
{
    if (n < NOISE_TAG)
        return AFSP_E_AUTH;
    if (c->n == UINT64_MAX)
        return -EOVERFLOW;
    uint8_t tag[NOISE_TAG];
    memcpy(tag, in + n - NOISE_TAG, NOISE_TAG);
    int rc = aead(c, 0, c->n, ad, adlen, in, n - NOISE_TAG, out, tag);
    if (rc == 0)
        c->n++;
    return rc;
}

int noise_rekey(struct noise_cipher *c)
{
    uint8_t zeros[32] = {0}, out[32 + NOISE_TAG];
    int rc = aead(c, 1, UINT64_MAX, NULL, 0, zeros, 32, out, out + 32);
    if (rc == 0) {
        uint64_t n = c->n;
        rc = noise_cipher_init(c, out);
        c->n = n;
    }
    sodium_memzero(out, sizeof out);
    return rc;
}

/* ---- SymmetricState ------------------------------------------------------------------------ */

/* HMAC-SHA256 over a, then b. */
static void hmac(const uint8_t key[NOISE_HASH], const uint8_t *a, size_t an, const uint8_t *b,
                 size_t bn, uint8_t out[NOISE_HASH])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, NOISE_HASH);
    if (an)
        crypto_auth_hmacsha256_update(&st, a, an);
    if (bn)
        crypto_auth_hmacsha256_update(&st, b, bn);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

/* HKDF(ck, ikm) with 2 or 3 outputs (o3 may be NULL). o1 may be ck. */
static void hkdf(const uint8_t ck[NOISE_HASH], const uint8_t *ikm, size_t ikmlen,
                 uint8_t o1[NOISE_HASH], uint8_t o2[NOISE_HASH], uint8_t *o3)
{
    uint8_t temp[NOISE_HASH], one = 1, two = 2, three = 3;
    hmac(ck, ikm, ikmlen, NULL, 0, temp);
    hmac(temp, &one, 1, NULL, 0, o1);
    hmac(temp, o1, NOISE_HASH, &two, 1, o2);
    if (o3)
        hmac(temp, o2, NOISE_HASH, &three, 1, o3);
    sodium_memzero(temp, sizeof temp);
}

static int mix_hash(struct noise_hs *hs, const uint8_t *p, size_t n)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, hs->h, NOISE_HASH);
    if (n)
        crypto_hash_sha256_update(&st, p, n);
    crypto_hash_sha256_final(&st, hs->h);
    return 0;
}

static int mix_key(struct noise_hs *hs, const uint8_t *ikm, size_t n)
{
    uint8_t k[NOISE_HASH];
    hkdf(hs->ck, ikm, n, hs->ck, k, NULL);
    int rc = noise_cipher_init(&hs->c, k);
    sodium_memzero(k, sizeof k);
    return rc;
}

static int mix_key_and_hash(struct noise_hs *hs, const uint8_t *ikm, size_t n)
{
    uint8_t th[NOISE_HASH], k[NOISE_HASH];
    hkdf(hs->ck, ikm, n, hs->ck, th, k);
    int rc = mix_hash(hs, th, NOISE_HASH);
    if (rc == 0)
        rc = noise_cipher_init(&hs->c, k);
    sodium_memzero(k, sizeof k);
    sodium_memzero(th, sizeof th);
    return rc;
}

/* The handshake cipher always has a key here (psk0 keys it before the first message). */
static int encrypt_and_hash(struct noise_hs *hs, const uint8_t *p, size_t n, uint8_t *out)
{
    int rc = noise_encrypt(&hs->c, hs->h, NOISE_HASH, p, n, out);
    return rc ? rc : mix_hash(hs, out, n + NOISE_TAG);
}

static int decrypt_and_hash(struct noise_hs *hs, const uint8_t *in, size_t n, uint8_t *out)
{
    uint8_t h[NOISE_HASH];
    memcpy(h, hs->h, NOISE_HASH);
    int rc = noise_decrypt(&hs->c, h, NOISE_HASH, in, n, out);
    return rc ? rc : mix_hash(hs, in, n);
}

/* MixKey(DH(sk, pk)); a small-order pk gives all zeros, which libsodium refuses. */
static int mix_dh(struct noise_hs *hs, const uint8_t sk[32], const uint8_t pk[32])
{
    uint8_t shared[32];
    if (crypto_scalarmult(shared, sk, pk) != 0) {
        sodium_memzero(shared, sizeof shared);
        return AFSP_E_AUTH;
    }
    int rc = mix_key(hs, shared, sizeof shared);
    sodium_memzero(shared, sizeof shared);
    return rc;
}

/* ---- HandshakeState: XXpsk0 ---------------------------------------------------------------- */

int noise_hs_init(struct noise_hs *hs, bool initiator, const struct p2p_identity *s,
                  const uint8_t psk[static 32], const uint8_t e_seed[static 32])
{
    memset(hs, 0, sizeof *hs);
    hs->initiator = initiator;
    hs->step = initiator ? HS_WRITE1 : HS_READ1;
    hs->s = s;
    memcpy(hs->psk, psk, 32);
    /* InitializeSymmetric: the name is exactly 32 bytes, so it is h as it stands */
    _Static_assert(sizeof NOISE_PROTOCOL - 1 == NOISE_HASH, "protocol name length");
    memcpy(hs->h, NOISE_PROTOCOL, NOISE_HASH);
    memcpy(hs->ck, hs->h, NOISE_HASH);
    memcpy(hs->e_sk, e_seed, 32);
    int rc = mix_hash(hs, (const uint8_t *)NOISE_PROLOGUE, sizeof NOISE_PROLOGUE - 1);
    if (rc == 0 && crypto_scalarmult_base(hs->e_pk, hs->e_sk) != 0)
        rc = err_set(-EIO, "X25519");
    /* psk (first token of the first message, same on both sides) */
    return rc ? rc : mix_key_and_hash(hs, hs->psk, 32);
}

/* "e" on the writing side: the key in clear, MixHash, and (psk modes) MixKey */
static int write_e(struct noise_hs *hs, uint8_t *out)
{
    memcpy(out, hs->e_pk, 32);
    int rc = mix_hash(hs, hs->e_pk, 32);
    return rc ? rc : mix_key(hs, hs->e_pk, 32);
}

static int read_e(struct noise_hs *hs, const uint8_t *in)
{
    memcpy(hs->re, in, 32);
    int rc = mix_hash(hs, hs->re, 32);
    return rc ? rc : mix_key(hs, hs->re, 32);
}

int noise_hs_write(struct noise_hs *hs, uint8_t *out, size_t *len)
{
    int rc;
    switch (hs->step) {
    case HS_WRITE1: /* -> psk, e (psk was mixed at init) */
        if ((rc = write_e(hs, out)) || (rc = encrypt_and_hash(hs, NULL, 0, out + 32)))
            return rc;
        *len = NOISE_MSG1;
        hs->step = HS_READ2;
        return 0;
    case HS_WRITE2: /* <- e, ee, s, es */
        if ((rc = write_e(hs, out)) || (rc = mix_dh(hs, hs->e_sk, hs->re)) ||
            (rc = encrypt_and_hash(hs, hs->s->x_pk, 32, out + 32)) ||
            (rc = mix_dh(hs, hs->s->x_sk, hs->re)) ||
            (rc = encrypt_and_hash(hs, NULL, 0, out + 32 + 32 + NOISE_TAG)))
            return rc;
        *len = NOISE_MSG2;
        hs->step = HS_READ3;
        return 0;
    case HS_WRITE3: /* -> s, se */
        if ((rc = encrypt_and_hash(hs, hs->s->x_pk, 32, out)) ||
            (rc = mix_dh(hs, hs->s->x_sk, hs->re)) ||
            (rc = encrypt_and_hash(hs, NULL, 0, out + 32 + NOISE_TAG)))
            return rc;
        *len = NOISE_MSG3;
        hs->step = HS_DONE;
        return 0;
    default:
        return AFSP_E_USAGE;
    }
}

int noise_hs_read(struct noise_hs *hs, const uint8_t *in, size_t len)
{
    uint8_t empty[1]; /* payloads are empty */
    int rc;
    switch (hs->step) {
    case HS_READ1: /* -> psk, e */
        if (len != NOISE_MSG1)
            return AFSP_E_FORMAT;
        if ((rc = read_e(hs, in)) || (rc = decrypt_and_hash(hs, in + 32, NOISE_TAG, empty)))
            return rc;
        hs->step = HS_WRITE2;
        return 0;
    case HS_READ2: /* <- e, ee, s, es */
        if (len != NOISE_MSG2)
            return AFSP_E_FORMAT;
        if ((rc = read_e(hs, in)) || (rc = mix_dh(hs, hs->e_sk, hs->re)) ||
            (rc = decrypt_and_hash(hs, in + 32, 32 + NOISE_TAG, hs->rs)) ||
            (rc = mix_dh(hs, hs->e_sk, hs->rs)) ||
            (rc = decrypt_and_hash(hs, in + 32 + 32 + NOISE_TAG, NOISE_TAG, empty)))
            return rc;
        hs->step = HS_WRITE3;
        return 0;
    case HS_READ3: /* -> s, se */
        if (len != NOISE_MSG3)
            return AFSP_E_FORMAT;
        if ((rc = decrypt_and_hash(hs, in, 32 + NOISE_TAG, hs->rs)) ||
            (rc = mix_dh(hs, hs->e_sk, hs->rs)) ||
            (rc = decrypt_and_hash(hs, in + 32 + NOISE_TAG, NOISE_TAG, empty)))
            return rc;
        hs->step = HS_DONE;
        return 0;
    default:
        return AFSP_E_USAGE;
    }
}

int noise_hs_split(struct noise_hs *hs, struct noise_cipher *tx, struct noise_cipher *rx)
{
    uint8_t k1[NOISE_HASH], k2[NOISE_HASH];
    if (hs->step != HS_DONE)
        return AFSP_E_USAGE;
    /* k1 carries initiator -> responder, k2 the other way: each side sends with its own */
    hkdf(hs->ck, NULL, 0, k1, k2, NULL);
    int rc = noise_cipher_init(tx, hs->initiator ? k1 : k2);
    if (rc == 0)
        rc = noise_cipher_init(rx, hs->initiator ? k2 : k1);
    sodium_memzero(k1, sizeof k1);
    sodium_memzero(k2, sizeof k2);
    return rc;
}

void noise_hs_wipe(struct noise_hs *hs)
{
    noise_cipher_wipe(&hs->c);
    sodium_memzero(hs, sizeof *hs);
}
