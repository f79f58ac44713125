/*
 * p2p_frames.c - what the peer transport's encryption costs: 1 MiB frames sent through one
 * p2p_conn and received by another (encrypt, copy, decrypt, all in memory), against the bare
 * AEADs it could have used, OpenSSL's AES-256-GCM and ChaCha20-Poly1305, and libsodium's
 * ChaCha20-Poly1305, each over the same 1 MiB buffers. Median of 5 runs of 512 MiB each; MB/s of
 * payload (10^6 bytes/s), one core.
 *
 * usage: p2p_frames
 */
#include "../p2p/noise_int.h"
#include "../sim/sim.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME (1u << 20)
#define TOTAL (512u << 20)
#define RUNS 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now(void)
{
    return (double)time_mono_ns() / 1e9;
}

static double conn_run(uint8_t *buf)
{
    struct p2p_identity ia, ib;
    uint8_t s[32], key[32];
    memset(s, 1, 32);
    p2p_identity_from_seed(&ia, s);
    memset(s, 2, 32);
    p2p_identity_from_seed(&ib, s);
    memset(key, 7, 32);
    struct p2p_conn_cfg ca = {true, &ia, key, NULL, NULL, 0, 0, 0, 0, 0};
    struct p2p_conn_cfg cb = {false, &ib, key, NULL, NULL, 0, 0, 0, 0, 0};
    struct p2p_conn *a, *b;
    if (p2p_conn_new(&a, &ca) || p2p_conn_new(&b, &cb))
        exit(1);
    for (int i = 0; i < 3; i++) { /* the handshake */
        struct p2p_conn *from = i == 1 ? b : a, *to = i == 1 ? a : b;
        if (sim_conn_move(from, to, 0, 1, NULL, NULL))
            exit(1);
    }
    double t = now();
    for (size_t done = 0; done < TOTAL; done += FRAME) {
        if (p2p_conn_send(a, buf, FRAME))
            exit(1);
        if (sim_conn_move(a, b, 0, 1, NULL, NULL)) /* an error, or the frame not taken whole */
            exit(1);
        size_t flen;
        if (!p2p_conn_recv(b, &flen) || flen != FRAME)
            exit(1);
    }
    t = now() - t;
    p2p_conn_free(a);
    p2p_conn_free(b);
    return TOTAL / t / 1e6;
}

static double evp_run(const EVP_CIPHER *cipher, uint8_t *buf, uint8_t *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    uint8_t key[32] = {1}, iv[12] = {0}, tag[16];
    int l;
    EVP_EncryptInit_ex(c, cipher, NULL, key, NULL);
    double t = now();
    for (size_t done = 0; done < TOTAL; done += FRAME) {
        iv[11]++;
        EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv);
        EVP_EncryptUpdate(c, out, &l, buf, FRAME);
        EVP_EncryptFinal_ex(c, out + l, &l);
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag);
    }
    t = now() - t;
    EVP_CIPHER_CTX_free(c);
    return TOTAL / t / 1e6;
}

static double sodium_run(uint8_t *buf, uint8_t *out)
{
    uint8_t key[32] = {1}, nonce[12] = {0};
    double t = now();
    for (size_t done = 0; done < TOTAL; done += FRAME) {
        nonce[11]++;
        crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, buf, FRAME, NULL, 0, NULL, nonce, key);
    }
    t = now() - t;
    return TOTAL / t / 1e6;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    uint8_t *buf = malloc(FRAME), *out = malloc(FRAME + 64);
    if (!buf || !out)
        return 1;
    randombytes_buf(buf, FRAME);
    double r[4][RUNS];
    for (int i = 0; i < RUNS; i++) { /* interleaved: drifts hit all of them */
        r[0][i] = conn_run(buf);
        r[1][i] = evp_run(EVP_aes_256_gcm(), buf, out);
        r[2][i] = evp_run(EVP_chacha20_poly1305(), buf, out);
        r[3][i] = sodium_run(buf, out);
    }
    const char *names[4] = {"p2p_conn", "aes256gcm_openssl", "chacha20poly1305_openssl",
                            "chacha20poly1305_sodium"};
    const char *what[4] = {"p2p_conn: 1 MiB frames, encrypt + decrypt (AES-256-GCM)",
                           "OpenSSL AES-256-GCM, encrypt only",
                           "OpenSSL ChaCha20-Poly1305, encrypt only",
                           "libsodium ChaCha20-Poly1305, encrypt only"};
    for (int k = 0; k < 4; k++) {
        qsort(r[k], RUNS, sizeof r[k][0], cmp_double);
        printf("%-58s %8.1f MB/s\n", what[k], r[k][RUNS / 2]);
        printf("RESULT %s %.1f\n", names[k], r[k][RUNS / 2]);
    }
    free(buf);
    free(out);
    return 0;
}
