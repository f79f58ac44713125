/*
 * pax.c - POSIX pax extended headers for the tar parser (tar.c): the records "LEN key=value\n"
 * of an 'x' (next member) or 'g' (global) header, parsed in place into a pax set: path,
 * linkpath, size, uid, gid, mtime (with nanoseconds), SCHILY.devmajor/devminor, and xattrs
 * (SCHILY.xattr.*, and LIBARCHIVE.xattr.* with its %XX-escaped names and base64 values). An
 * empty value deletes a field (POSIX); GNU.sparse.* is refused (AFSP_E_UNSUPPORTED); other keys
 * are ignored.
 *
 * Owns the strings of the global set (copies), nothing of an 'x' set (it points into the payload
 * buffer, which the parser keeps until the member is done). Must never trust a length or a value
 * from the stream: every record's length is checked against the payload, every number against
 * its field's range, every name and path against its bound.
 */
#include "tar_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XATTR_NAME_MAX 255

/* ---- values -------------------------------------------------------------------------------- */

/* A decimal pax value of the whole [s, s+n): digits only, at most max. */
static int parse_dec(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t x = 0;

    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (max - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

/* A pax time: [-]seconds[.fraction]; digits past nanoseconds are dropped. */
static int parse_time(const char *s, size_t n, int64_t *sec, uint32_t *nsec)
{
    bool neg = n > 0 && s[0] == '-';
    const char *dot;
    uint64_t secs;
    uint32_t ns = 0;

    if (neg)
        s++, n--;
    dot = memchr(s, '.', n);
    if (parse_dec(s, dot ? (size_t)(dot - s) : n, INT64_MAX, &secs))
        return -1;
    if (dot) {
        size_t nf = n - (size_t)(dot - s) - 1;
        if (nf == 0)
            return -1;
        for (size_t i = 0; i < nf; i++) {
            char c = dot[1 + i];
            if (c < '0' || c > '9')
                return -1;
            if (i < 9)
                ns = ns * 10 + (uint32_t)(c - '0');
        }
        for (size_t i = nf; i < 9; i++)
            ns *= 10;
    }
    if (neg && ns) {
        *sec = -(int64_t)secs - 1;
        *nsec = 1000000000u - ns;
    } else {
        *sec = neg ? -(int64_t)secs : (int64_t)secs;
        *nsec = ns;
    }
    return 0;
}

/* ---- xattr encodings (libarchive) ---------------------------------------------------------- */

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes libarchive's %XX escapes in place. Returns the new length or -1. */
static ssize_t url_decode(char *s)
{
    size_t j = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] != '%') {
            s[j++] = s[i];
            continue;
        }
        int hi = hexdigit(s[i + 1]), lo = hi < 0 ? -1 : hexdigit(s[i + 2]);
        if (lo < 0 || (hi == 0 && lo == 0))
            return -1;
        s[j++] = (char)(hi << 4 | lo);
        i += 2;
    }
    s[j] = '\0';
    return (ssize_t)j;
}

static int b64val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes base64 (padded or not, as libarchive writes it) in place. Returns the length or -1. */
static ssize_t b64_decode(uint8_t *s, size_t n)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t j = 0;

    while (n > 0 && s[n - 1] == '=' && n % 4 != 1)
        n--;
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            s[j++] = (uint8_t)(acc >> bits);
        }
    }
    return (ssize_t)j;
}

/* ---- pax sets ------------------------------------------------------------------------------ */

void pax_set_clear(struct pax_set *s)
{
    bool owned = s->owned;
    if (owned) {
        free(s->path);
        free(s->link);
        for (size_t i = 0; i < s->nxattrs; i++) {
            free(s->xattrs[i].name);
            free(s->xattrs[i].value);
        }
    }
    memset(s, 0, sizeof *s);
    s->owned = owned;
}

/* Sets a string field: in place for an 'x' set, a copy for the global one. */
static int set_str(struct pax_set *s, char **dst, char *val, size_t len)
{
    if (!s->owned) {
        *dst = val;
        return 0;
    }
    char *c = strndup(val, len);
    if (!c)
        return -ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

static int set_xattr(struct pax_set *s, char *name, uint8_t *val, size_t len)
{
    size_t i;

    if (!*name || strlen(name) > XATTR_NAME_MAX)
        return err_set(AFSP_E_FORMAT, "tar: bad xattr name in pax header");
    for (i = 0; i < s->nxattrs; i++)
        if (!strcmp(s->xattrs[i].name, name))
            break;
    if (i == TAR_XATTR_MAX)
        return err_set(AFSP_E_FORMAT, "tar: more than %d xattrs", TAR_XATTR_MAX);
    struct pax_xattr *x = &s->xattrs[i];
    if (s->owned) {
        uint8_t *v = malloc(len ? len : 1);
        char *nm = i < s->nxattrs ? x->name : strdup(name);
        if (!v || !nm) {
            free(v);
            if (i == s->nxattrs)
                free(nm);
            return -ENOMEM;
        }
        memcpy(v, val, len);
        if (i < s->nxattrs)
            free(x->value);
        x->name = nm;
        x->value = v;
    } else {
        x->name = name;
        x->value = val;
    }
    x->len = len;
    if (i == s->nxattrs)
        s->nxattrs++;
    return 0;
}

/* Applies one record. key is NUL-terminated; val has len bytes followed by a NUL. */
static int pax_apply(struct pax_set *s, char *key, char *val, size_t len)
{
    static const struct {
        const char *key;
        unsigned bit;
    } fields[] = {
        {"path", PX_PATH},
        {"linkpath", PX_LINK},
        {"size", PX_SIZE},
        {"uid", PX_UID},
        {"gid", PX_GID},
        {"mtime", PX_MTIME},
        {"SCHILY.devmajor", PX_DEVMAJOR},
        {"SCHILY.devminor", PX_DEVMINOR},
    };
    uint64_t v = 0;

    if (!strncmp(key, "SCHILY.xattr.", 13))
        return set_xattr(s, key + 13, (uint8_t *)val, len);
    if (!strncmp(key, "LIBARCHIVE.xattr.", 17)) {
        ssize_t nl = url_decode(key + 17), vl = b64_decode((uint8_t *)val, len);
        if (nl < 0 || vl < 0)
            return err_set(AFSP_E_FORMAT, "tar: bad pax record %.64s", key);
        return set_xattr(s, key + 17, (uint8_t *)val, (size_t)vl);
    }
    if (!strncmp(key, "GNU.sparse.", 11))
        return err_set(AFSP_E_UNSUPPORTED, "tar: GNU sparse file");

    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        if (strcmp(key, fields[i].key))
            continue;
        unsigned bit = fields[i].bit;
        if (len == 0) { /* POSIX: an empty value deletes the field */
            s->have &= ~bit;
            s->del |= bit;
            if (s->owned && bit == PX_PATH)
                free(s->path), s->path = NULL;
            if (s->owned && bit == PX_LINK)
                free(s->link), s->link = NULL;
            return 0;
        }
        int rc = 0;
        switch (bit) {
        case PX_PATH:
        case PX_LINK:
            if (memchr(val, '\0', len))
                rc = -1;
            else if (len > TAR_PATH_MAX)
                return err_set(AFSP_E_FORMAT, "tar: pax %s longer than %d", key, TAR_PATH_MAX);
            else
                rc = set_str(s, bit == PX_PATH ? &s->path : &s->link, val, len);
            if (rc == -ENOMEM)
                return rc;
            break;
        case PX_SIZE:
            rc = parse_dec(val, len, INT64_MAX, &s->size);
            break;
        case PX_MTIME:
            rc = parse_time(val, len, &s->mtime_sec, &s->mtime_nsec);
            break;
        default:
            rc = parse_dec(val, len, UINT32_MAX, &v);
            if (!rc && bit == PX_UID)
                s->uid = (uint32_t)v;
            if (!rc && bit == PX_GID)
                s->gid = (uint32_t)v;
            if (!rc && bit == PX_DEVMAJOR)
                s->devmajor = (uint32_t)v;
            if (!rc && bit == PX_DEVMINOR)
                s->devminor = (uint32_t)v;
            break;
        }
        if (rc)
            return err_set(AFSP_E_FORMAT, "tar: bad pax value for %s", key);
        s->have |= bit;
        s->del &= ~bit;
        return 0;
    }
    return 0; /* atime, ctime, uname, gname, charset, comment, other vendors' keys */
}

/* Parses the records "LEN key=value\n" of a pax payload b (with a spare byte after it) in place:
 * the '=' and '\n' of each record become NULs. */
int pax_parse(struct pax_set *s, struct buf *b)
{
    char *d = (char *)b->p;
    size_t n = b->len, pos = 0;

    while (pos < n) {
        if (d[pos] == '\0') { /* some writers pad with NULs */
            for (; pos < n; pos++)
                if (d[pos])
                    return err_set(AFSP_E_FORMAT, "tar: bad pax record");
            break;
        }
        size_t i = pos, len = 0;
        for (; i < n && d[i] >= '0' && d[i] <= '9' && i - pos < 8; i++)
            len = len * 10 + (size_t)(d[i] - '0');
        size_t digits = i - pos;
        if (digits == 0 || i >= n || d[i] != ' ' || len < digits + 4 || len > n - pos)
            return err_set(AFSP_E_FORMAT, "tar: bad pax record length");
        size_t end = pos + len; /* one past the '\n' */
        char *key = d + i + 1;
        char *eq = memchr(key, '=', (size_t)(d + end - 1 - key));
        if (d[end - 1] != '\n' || !eq || eq == key || memchr(key, '\0', (size_t)(eq - key)))
            return err_set(AFSP_E_FORMAT, "tar: bad pax record");
        *eq = '\0';
        d[end - 1] = '\0';
        int rc = pax_apply(s, key, eq + 1, (size_t)(d + end - 1 - (eq + 1)));
        if (rc)
            return rc;
        pos = end;
    }
    return 0;
}
