/*
 * keys.c - the node's identity and the cluster key, and the files that keep them.
 *
 * Identity: an Ed25519 key pair made from a 32-byte seed, kept in DATA/node.key (the seed, raw,
 * mode 0600). The handshake's static key is the same key converted to X25519 (libsodium's
 * crypto_sign_ed25519_*_to_curve25519), and the node ID is the SHA-256 of that X25519 public
 * key: the key the handshake proves. (Not of the Ed25519 key: the conversion ignores its sign
 * bit, so a node could claim two IDs with one key.)
 * Cluster key: 32 random bytes, in base64 in a file (what `afsp genkey` prints, like
 * `wg genpsk`). Keys never appear in a log line.
 */
#include "p2p.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int sodium_ready(void)
{
    return sodium_init() < 0 ? err_set(-EIO, "libsodium cannot start") : 0;
}

int p2p_identity_from_seed(struct p2p_identity *id, const uint8_t seed[static 32])
{
    int rc = sodium_ready();
    if (rc)
        return rc;
    memset(id, 0, sizeof *id);
    if (crypto_sign_seed_keypair(id->ed_pk, id->ed_sk, seed) != 0 ||
        crypto_sign_ed25519_pk_to_curve25519(id->x_pk, id->ed_pk) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(id->x_sk, id->ed_sk) != 0) {
        p2p_identity_wipe(id);
        return err_set(AFSP_E_FORMAT, "not a usable identity key");
    }
    sha256_buf(id->x_pk, sizeof id->x_pk, id->id);
    return 0;
}

void p2p_identity_wipe(struct p2p_identity *id)
{
    sodium_memzero(id, sizeof *id);
}

/* Reads exactly n bytes of a small file into buf (n + 1 bytes of room). Returns the count. */
static ssize_t read_small(const char *path, uint8_t *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t got = 0;
    while (got <= n) {
        ssize_t k = read(fd, buf + got, n + 1 - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = -errno;
            close(fd);
            return e;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    return (ssize_t)got;
}

/* Writes a new file (must not exist: -EEXIST) with mode 0600, whole or not at all: written and
 * synced under a temporary name, then linked into place, so that a crash never leaves a short
 * key file and a concurrent reader never sees one. */
static int write_new(const char *path, const void *p, size_t n)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    unlink(tmp); /* a leftover of a crashed run of this pid */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (write(fd, p, n) != (ssize_t)n || fsync(fd) != 0)
        rc = errno ? -errno : -EIO;
    close(fd);
    if (rc == 0 && link(tmp, path) != 0)
        rc = -errno;
    unlink(tmp);
    /* the name, durable too: else a power loss can give the node a new identity, or a new
     * cluster key */
    if (rc == 0 && (rc = dir_sync_parent(path)) < 0)
        unlink(path);
    return rc;
}

int p2p_identity_load(struct p2p_identity *id, const char *path, bool *created)
{
    uint8_t seed[33];
    int rc = sodium_ready();
    if (rc)
        return rc;
    *created = false;
    ssize_t n = read_small(path, seed, 32);
    if (n == -ENOENT) {
        randombytes_buf(seed, 32);
        rc = write_new(path, seed, 32);
        if (rc == -EEXIST) /* made by someone else meanwhile: use theirs */
            n = read_small(path, seed, 32);
        else if (rc < 0)
            return err_set(rc, "cannot create %s", path);
        else
            *created = true, n = 32;
    }
    if (n < 0)
        return err_set((int)n, "cannot read %s", path);
    if (n != 32) {
        sodium_memzero(seed, sizeof seed);
        return err_set(AFSP_E_FORMAT, "%s: not a node key (32 bytes)", path);
    }
    rc = p2p_identity_from_seed(id, seed);
    sodium_memzero(seed, sizeof seed);
    return rc;
}

void p2p_key_b64(const uint8_t key[static P2P_KEY_LEN], char out[static 45])
{
    sodium_bin2base64(out, 45, key, P2P_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

int p2p_cluster_key_load(uint8_t key[static P2P_KEY_LEN], const char *path)
{
    uint8_t text[129];
    int rc = sodium_ready();
    if (rc)
        return rc;
    ssize_t n = read_small(path, text, 128);
    if (n < 0)
        return err_set((int)n, "cannot read the cluster key %s", path);
    size_t len = 0;
    const char *end = NULL;
    if (n > 128 ||
        sodium_base642bin(key, P2P_KEY_LEN, (const char *)text, (size_t)n, " \t\r\n", &len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len != P2P_KEY_LEN || end != (const char *)text + n) {
        sodium_memzero(text, sizeof text);
        sodium_memzero(key, P2P_KEY_LEN);
        return err_set(AFSP_E_FORMAT,
                       "%s: not a cluster key (32 bytes in base64, as `afsp genkey` writes)", path);
    }
    sodium_memzero(text, sizeof text);
    return 0;
}

int p2p_cluster_key_create(uint8_t key[static P2P_KEY_LEN], const char *path)
{
    char text[46];
    int rc = sodium_ready();
    if (rc)
        return rc;
    randombytes_buf(key, P2P_KEY_LEN);
    p2p_key_b64(key, text);
    size_t n = strlen(text);
    text[n++] = '\n';
    rc = write_new(path, text, n);
    sodium_memzero(text, sizeof text);
    return rc < 0 ? err_set(rc, "cannot create the cluster key %s", path) : 0;
}
