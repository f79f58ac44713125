/*
 * user.c - who a job runs as: a --user (or an image's User) resolved against the image's own
 * /etc/passwd and /etc/group, as Docker does. The image is untrusted: the files are opened
 * beneath its root (openat2 RESOLVE_IN_ROOT: a symlink to /etc/shadow of the node resolves
 * inside the image), read to a bound, and parsed line by line.
 *
 * Owns nothing past a call.
 */
#include "exec.h"

#include "../util/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ID_MAX 4294967294u /* (uid_t)-1 means "no change" to the kernel */

/* The file at path beneath root, at most EXEC_ACCOUNTS_MAX bytes, NUL-terminated, in *out
 * (malloc'd; NULL and 0 when it does not exist). */
static int read_beneath(int root, const char *path, char **out)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    *out = NULL;
    int fd = (int)syscall(SYS_openat2, root, path, &how, sizeof how);
    if (fd < 0)
        return errno == ENOENT ? 0 : err_set(-errno, "cannot open the image's %s", path);
    char *b = malloc(EXEC_ACCOUNTS_MAX + 1);
    size_t n = 0;
    int rc = b ? 0 : -ENOMEM;
    while (rc == 0 && n < EXEC_ACCOUNTS_MAX) {
        ssize_t k = read(fd, b + n, EXEC_ACCOUNTS_MAX - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            rc = err_set(-errno, "cannot read the image's %s", path);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    if (rc < 0) {
        free(b);
        return rc;
    }
    b[n] = 0;
    *out = b;
    return 0;
}

/* A decimal id (no sign, no spaces, at most ID_MAX). */
static bool id_parse(const char *s, size_t n, uint32_t *out)
{
    uint64_t v = 0;
    if (!n || n > 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > ID_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* The i-th ':'-separated field of line [p, end) as [*f, *f + *fn). */
static bool field(const char *p, const char *end, unsigned i, const char **f, size_t *fn)
{
    for (; i; i--) {
        p = memchr(p, ':', (size_t)(end - p));
        if (!p)
            return false;
        p++;
    }
    const char *e = memchr(p, ':', (size_t)(end - p));
    *f = p;
    *fn = (size_t)((e ? e : end) - p);
    return true;
}

/* In an accounts file's text: the line whose field `key` (0: name, 2: id) is [k, k + kn);
 * its ids (fields 2 and, for passwd, 3). Returns whether one was found. */
static bool lookup(const char *text, unsigned key, const char *k, size_t kn, bool passwd,
                   uint32_t *id, uint32_t *gid)
{
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n'), *end = nl ? nl : p + strlen(p);
        const char *f;
        size_t fn;
        uint32_t a, b = 0;
        if (field(p, end, key, &f, &fn) && fn == kn && !memcmp(f, k, kn) &&
            field(p, end, 2, &f, &fn) && id_parse(f, fn, &a) &&
            (!passwd || (field(p, end, 3, &f, &fn) && id_parse(f, fn, &b)))) {
            *id = a;
            if (gid)
                *gid = b;
            return true;
        }
        p = nl ? nl + 1 : NULL;
    }
    return false;
}

int exec_user_resolve(int root, const char *spec, uint32_t *uid, uint32_t *gid)
{
    const char *colon = strchr(spec, ':');
    size_t un = colon ? (size_t)(colon - spec) : strlen(spec);
    const char *g = colon ? colon + 1 : NULL;
    char *passwd = NULL, *group = NULL;
    uint32_t u = 0, gg = 0;
    int rc = 0;
    if (!*spec) {
        *uid = *gid = 0;
        return 0;
    }
    if (!un || (g && (!*g || strchr(g, ':'))))
        return err_set(AFSP_E_USAGE, "user %s: not USER, USER:GROUP, UID or UID:GID", spec);
    if ((rc = read_beneath(root, "/etc/passwd", &passwd)) < 0)
        return rc;
    if (id_parse(spec, un, &u)) {
        /* a number: its passwd entry's group if it has one */
        char idtext[11];
        snprintf(idtext, sizeof idtext, "%u", u);
        uint32_t same;
        if (!passwd || !lookup(passwd, 2, idtext, strlen(idtext), true, &same, &gg))
            gg = 0;
    } else if (!passwd || !lookup(passwd, 0, spec, un, true, &u, &gg)) {
        rc = err_set(AFSP_E_USAGE, "user %.*s: the image has no such user", (int)un, spec);
    }
    if (rc == 0 && g && !id_parse(g, strlen(g), &gg)) {
        if ((rc = read_beneath(root, "/etc/group", &group)) == 0 &&
            (!group || !lookup(group, 0, g, strlen(g), false, &gg, NULL)))
            rc = err_set(AFSP_E_USAGE, "group %s: the image has no such group", g);
    }
    free(passwd);
    free(group);
    if (rc < 0)
        return rc;
    *uid = u;
    *gid = gg;
    return 0;
}
