/*
 * genkey.c - `afsp genkey`: a new random cluster key, in base64, on stdout (like `wg genpsk`).
 */
#include "cmd.h"

#include "../p2p/p2p.h"

#include <sodium.h>

const struct command cmd_genkey_def = {
    "genkey", cmd_genkey, "print a new random cluster key",
    "\n"
    "Prints 32 random bytes in base64: a cluster key. Every node of a cluster is given the\n"
    "same key (afsp node --cluster-key-file FILE); a node without it can neither connect\n"
    "to the others nor be connected to. Keep it as secret as a password:\n"
    "\n"
    "    (umask 077; afsp genkey > cluster.key)\n",
    false};

int cmd_genkey(int argc, char **argv)
{
    struct cmd_iter it = CMD_ITER(&cmd_genkey_def, argc, argv);
    const char *arg;
    int r;
    while ((r = cmd_next(&it, &arg)) > 0)
        return cmd_usage_error(&cmd_genkey_def, "unexpected argument %s", arg);
    if (r < 0)
        return it.status;
    if (sodium_init() < 0)
        return die("libsodium cannot start");
    uint8_t key[P2P_KEY_LEN];
    char text[45];
    randombytes_buf(key, sizeof key);
    p2p_key_b64(key, text);
    sodium_memzero(key, sizeof key);
    int ok = printf("%s\n", text) > 0 && fflush(stdout) == 0;
    sodium_memzero(text, sizeof text);
    return ok ? 0 : die("cannot write the key");
}
