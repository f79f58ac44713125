/*
 * tar.c - the streaming tar header parser: ustar, old v7, GNU (long names and links, base-256
 * numbers) and POSIX pax ('x' per-file and 'g' global headers, xattrs): the state machine over
 * 512-byte blocks, the header fields, GNU long names and links, and the member handed on, with
 * the pax attributes that apply to it. The pax records themselves are parsed in pax.c.
 *
 * Owns only what it buffers: one 512-byte header, pax payloads (at most TAR_PAX_MAX each), GNU
 * long name and link payloads, and the global pax attributes. It must never copy or look at file
 * data (it skips it by counting: layers go through here at inflate speed), never trust a length
 * from the stream beyond those bounds, and never read past what it was given.
 *
 * Where readers disagree, this one does what Go's archive/tar does, since that is how Docker and
 * containerd unpack the same layer: hardlinks, symlinks, devices, fifos and directories have no
 * data area whatever their size field says; a zero block followed by a non-zero one is an error.
 */
#include "tar_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 512

/* Header field offsets (POSIX ustar; GNU and v7 share the first 257 bytes). */
#define H_NAME 0
#define H_MODE 100
#define H_UID 108
#define H_GID 116
#define H_SIZE 124
#define H_MTIME 136
#define H_CHKSUM 148
#define H_TYPE 156
#define H_LINK 157
#define H_MAGIC 257
#define H_DEVMAJOR 329
#define H_DEVMINOR 337
#define H_PREFIX 345
#define H_STAR_TRAILER 508

enum state {
    ST_HEADER, /* collecting a 512-byte header */
    ST_EXT,    /* collecting the payload of a pax or GNU long name/link header */
    ST_SKIP,   /* skipping file data or padding */
    ST_END,    /* after the end-of-archive blocks: everything is ignored */
};

struct tar_parser {
    tar_entry_cb cb;
    void *arg;
    int err; /* sticky */
    enum state st;
    uint64_t off; /* stream offset of the next byte */

    uint8_t hdr[BLOCK];
    size_t hdr_len;
    unsigned zeros; /* zero blocks seen in a row */
    uint64_t skip;  /* ST_SKIP: bytes left */

    /* ST_EXT */
    char ext_type;
    uint64_t ext_left, ext_pad;
    struct buf *ext_dst;

    /* Extension headers that apply to the next member. */
    bool pending, have_x, have_longname, have_longlink;
    struct buf paxx, paxg, longname, longlink;
    struct pax_set x, g;

    /* The entry handed to cb. */
    char path[TAR_PATH_MAX + 1], link[TAR_PATH_MAX + 1];
    struct tar_xattr xattrs[TAR_XATTR_MAX];
};

static int fail(struct tar_parser *p, int rc)
{
    p->err = rc;
    return rc;
}

/* ---- numbers ------------------------------------------------------------------------------ */

/* A numeric header field: octal, padded with spaces and NULs, or GNU base-256 (first byte's high
 * bit set; two's complement when the next bit is set too). */
static int parse_num(const uint8_t *f, size_t len, int64_t *out)
{
    uint64_t x = 0;
    size_t i = 0;

    if (f[0] & 0x80) {
        uint8_t inv = (f[0] & 0x40) ? 0xff : 0;
        for (i = 0; i < len; i++) {
            uint8_t c = f[i] ^ inv;
            if (i == 0)
                c &= 0x7f;
            if (x >> 56)
                return -1;
            x = x << 8 | c;
        }
        if (x >> 63)
            return -1;
        *out = inv ? ~(int64_t)x : (int64_t)x;
        return 0;
    }
    while (i < len && (f[i] == ' ' || f[i] == '\0'))
        i++;
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++)
        x = x << 3 | (uint64_t)(f[i] - '0'); /* at most 12 digits: no overflow */
    for (; i < len && f[i] != '\0'; i++)
        if (f[i] != ' ')
            return -1;
    *out = (int64_t)x;
    return 0;
}

/* ---- entries ------------------------------------------------------------------------------- */

/* Copies s (len bytes) into out without leading "./" and "/" and trailing "/". */
static int norm_path(char out[static TAR_PATH_MAX + 1], const char *s, size_t len)
{
    for (;;) {
        if (len >= 1 && s[0] == '/')
            s++, len--;
        else if (len >= 2 && s[0] == '.' && s[1] == '/')
            s += 2, len -= 2;
        else if (len == 1 && s[0] == '.')
            s++, len--;
        else
            break;
    }
    while (len > 0 && s[len - 1] == '/')
        len--;
    if (len > TAR_PATH_MAX)
        return err_set(AFSP_E_FORMAT, "tar: path longer than %d", TAR_PATH_MAX);
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

/* A GNU long name or link payload: up to its first NUL. */
static int long_str(struct buf *b, const char **s, size_t *len)
{
    *s = (const char *)b->p;
    *len = strnlen(*s, b->len);
    if (*len > TAR_PATH_MAX)
        return err_set(AFSP_E_FORMAT, "tar: GNU long name longer than %d", TAR_PATH_MAX);
    return 0;
}

/* Which value of a field wins: the 'x' header's, else (unless 'x' deleted it) the global one,
 * else the header's (0). */
static const struct pax_set *pick(const struct tar_parser *p, unsigned bit)
{
    if (p->have_x && (p->x.have & bit))
        return &p->x;
    if (p->have_x && (p->x.del & bit))
        return NULL;
    if (p->g.have & bit)
        return &p->g;
    return NULL;
}

static void reset_pending(struct tar_parser *p)
{
    p->pending = p->have_x = p->have_longname = p->have_longlink = false;
    pax_set_clear(&p->x);
}

static int num_field(const uint8_t *h, size_t off, size_t len, const char *what, int64_t min,
                     int64_t max, int64_t *out)
{
    if (parse_num(h + off, len, out) || *out < min || *out > max)
        return err_set(AFSP_E_FORMAT, "tar: bad %s field", what);
    return 0;
}

/* A member header h, whose data starts at p->off. */
static int member(struct tar_parser *p, const uint8_t *h, char type, int64_t hsize)
{
    bool ustar = !memcmp(h + H_MAGIC, "ustar\0", 6);
    bool gnu = !memcmp(h + H_MAGIC, "ustar  \0", 8);
    struct tar_entry e = {.path = p->path, .link = p->link, .data_off = p->off};
    const struct pax_set *s;
    char hname[256 + 1 + 100 + 1];
    const char *name, *link;
    size_t name_len, link_len;
    int64_t v;
    int rc;

    if (type == 'V') { /* a GNU volume label is not a file */
        p->skip = ((uint64_t)hsize + BLOCK - 1) & ~(uint64_t)(BLOCK - 1);
        reset_pending(p);
        return 0;
    }

    if ((s = pick(p, PX_PATH))) {
        name = s->path, name_len = strlen(name);
    } else if (p->have_longname) {
        if ((rc = long_str(&p->longname, &name, &name_len)))
            return rc;
    } else {
        size_t nl = strnlen((const char *)h + H_NAME, 100);
        size_t plen = 0;
        if (ustar) {
            bool star = !memcmp(h + H_STAR_TRAILER, "tar\0", 4);
            plen = strnlen((const char *)h + H_PREFIX, star ? 131 : 155);
        }
        if (plen) {
            memcpy(hname, h + H_PREFIX, plen);
            hname[plen++] = '/';
        }
        memcpy(hname + plen, h + H_NAME, nl);
        name_len = plen + nl;
        hname[name_len] = '\0';
        name = hname;
    }
    if ((s = pick(p, PX_LINK))) {
        link = s->link, link_len = strlen(link);
    } else if (p->have_longlink) {
        if ((rc = long_str(&p->longlink, &link, &link_len)))
            return rc;
    } else {
        link = (const char *)h + H_LINK;
        link_len = strnlen(link, 100);
    }

    switch (type) {
    case '\0':
    case '0':
        /* old archives mark directories with a trailing slash */
        e.type = name_len > 0 && name[name_len - 1] == '/' ? TAR_DIR : TAR_REG;
        break;
    case TAR_HARDLINK:
    case TAR_SYMLINK:
    case TAR_CHR:
    case TAR_BLK:
    case TAR_DIR:
    case TAR_FIFO:
        e.type = (enum tar_type)type;
        break;
    case 'D': /* GNU dumpdir: a directory whose data lists its contents */
        e.type = TAR_DIR;
        break;
    default: /* '7' and unknown types: regular files (POSIX) */
        e.type = TAR_REG;
        break;
    }

    if ((rc = norm_path(p->path, name, name_len)))
        return rc;
    if (e.type == TAR_HARDLINK) {
        if ((rc = norm_path(p->link, link, link_len)))
            return rc;
    } else if (e.type == TAR_SYMLINK) {
        if (link_len > TAR_PATH_MAX)
            return err_set(AFSP_E_FORMAT, "tar: link target longer than %d", TAR_PATH_MAX);
        memcpy(p->link, link, link_len);
        p->link[link_len] = '\0';
    } else {
        p->link[0] = '\0';
    }

    if ((rc = num_field(h, H_MODE, 8, "mode", 0, INT64_MAX, &v)))
        return rc;
    e.mode = (uint32_t)(v & 07777);
    if ((s = pick(p, PX_UID)))
        e.uid = s->uid;
    else if ((rc = num_field(h, H_UID, 8, "uid", 0, UINT32_MAX, &v)))
        return rc;
    else
        e.uid = (uint32_t)v;
    if ((s = pick(p, PX_GID)))
        e.gid = s->gid;
    else if ((rc = num_field(h, H_GID, 8, "gid", 0, UINT32_MAX, &v)))
        return rc;
    else
        e.gid = (uint32_t)v;
    if ((s = pick(p, PX_MTIME))) {
        e.mtime_sec = s->mtime_sec;
        e.mtime_nsec = s->mtime_nsec;
    } else if ((rc = num_field(h, H_MTIME, 12, "mtime", INT64_MIN, INT64_MAX, &v))) {
        return rc;
    } else {
        e.mtime_sec = v;
    }
    uint64_t size = (s = pick(p, PX_SIZE)) ? s->size : (uint64_t)hsize;

    if (e.type == TAR_CHR || e.type == TAR_BLK) {
        if ((s = pick(p, PX_DEVMAJOR)))
            e.devmajor = s->devmajor;
        else if (ustar || gnu) {
            if ((rc = num_field(h, H_DEVMAJOR, 8, "devmajor", 0, UINT32_MAX, &v)))
                return rc;
            e.devmajor = (uint32_t)v;
        }
        if ((s = pick(p, PX_DEVMINOR)))
            e.devminor = s->devminor;
        else if (ustar || gnu) {
            if ((rc = num_field(h, H_DEVMINOR, 8, "devminor", 0, UINT32_MAX, &v)))
                return rc;
            e.devminor = (uint32_t)v;
        }
    }

    /* xattrs: the global ones, overridden by name by the 'x' ones */
    size_t nx = 0;
    for (size_t i = 0; i < p->g.nxattrs; i++)
        p->xattrs[nx++] =
            (struct tar_xattr){p->g.xattrs[i].name, p->g.xattrs[i].value, p->g.xattrs[i].len};
    for (size_t i = 0; p->have_x && i < p->x.nxattrs; i++) {
        const struct pax_xattr *x = &p->x.xattrs[i];
        size_t j = 0;
        while (j < nx && strcmp(p->xattrs[j].name, x->name))
            j++;
        if (j == TAR_XATTR_MAX)
            return err_set(AFSP_E_FORMAT, "tar: more than %d xattrs", TAR_XATTR_MAX);
        p->xattrs[j] = (struct tar_xattr){x->name, x->value, x->len};
        if (j == nx)
            nx++;
    }
    e.xattrs = p->xattrs;
    e.nxattrs = nx;

    /* Only regular files (and types we treat as such, and GNU dumpdirs) have a data area. */
    bool data = e.type == TAR_REG || type == 'D';
    p->skip = data ? (size + BLOCK - 1) & ~(uint64_t)(BLOCK - 1) : 0;
    e.size = e.type == TAR_REG ? size : 0;

    rc = p->cb(p->arg, &e);
    reset_pending(p);
    return rc;
}

/* The payload of an extension header is complete. */
static int ext_done(struct tar_parser *p)
{
    struct buf *b = p->ext_dst;
    int rc = 0;

    b->p[b->len] = '\0';
    switch (p->ext_type) {
    case 'g':
        rc = pax_parse(&p->g, b);
        break;
    case 'L':
        p->have_longname = true;
        break;
    case 'K':
        p->have_longlink = true;
        break;
    default: /* 'x', 'X' */
        p->have_x = true;
        rc = pax_parse(&p->x, b);
        break;
    }
    p->skip = p->ext_pad;
    p->st = p->skip ? ST_SKIP : ST_HEADER;
    return rc;
}

/* Starts reading the payload of an extension header into dst. */
static int ext_start(struct tar_parser *p, char type, int64_t size, uint64_t max, struct buf *dst)
{
    if ((uint64_t)size > max)
        return err_set(AFSP_E_FORMAT, "tar: '%c' extension header of %lld bytes", type,
                       (long long)size);
    dst->len = 0;
    if (buf_reserve(dst, (size_t)size + 1))
        return -ENOMEM;
    if (type != 'g')
        p->pending = true;
    if (type == 'x' || type == 'X') { /* a later one replaces an earlier one */
        pax_set_clear(&p->x);
        p->have_x = false;
    }
    p->ext_type = type;
    p->ext_dst = dst;
    p->ext_left = (uint64_t)size;
    p->ext_pad = (BLOCK - (uint64_t)size % BLOCK) % BLOCK;
    p->st = ST_EXT;
    return size == 0 ? ext_done(p) : 0;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* A complete header block h, just consumed: p->off is the offset after it. */
static int header(struct tar_parser *p, const uint8_t *h)
{
    uint64_t at = p->off - BLOCK;
    uint32_t usum = 0;
    int32_t ssum = 0;
    int64_t chk, size;

    if (all_zero(h, BLOCK)) {
        if (++p->zeros == 2) {
            p->st = ST_END;
            reset_pending(p);
        }
        return 0;
    }
    if (p->zeros)
        return err_set(AFSP_E_FORMAT, "tar: lone zero block before offset %llu",
                       (unsigned long long)at);

    for (size_t i = 0; i < BLOCK; i++) {
        uint8_t c = i >= H_CHKSUM && i < H_CHKSUM + 8 ? ' ' : h[i];
        usum += c;
        ssum += (int8_t)c;
    }
    if (parse_num(h + H_CHKSUM, 8, &chk) || (chk != usum && chk != ssum))
        return err_set(AFSP_E_FORMAT, "tar: bad header checksum at offset %llu",
                       (unsigned long long)at);
    if (parse_num(h + H_SIZE, 12, &size) || size < 0)
        return err_set(AFSP_E_FORMAT, "tar: bad size field at offset %llu", (unsigned long long)at);

    char type = (char)h[H_TYPE];
    switch (type) {
    case 'x':
    case 'X': /* Solaris' name for 'x' */
        return ext_start(p, type, size, TAR_PAX_MAX, &p->paxx);
    case 'g':
        return ext_start(p, type, size, TAR_PAX_MAX, &p->paxg);
    case 'L':
        return ext_start(p, type, size, TAR_PATH_MAX + 1, &p->longname);
    case 'K':
        return ext_start(p, type, size, TAR_PATH_MAX + 1, &p->longlink);
    case 'S':
        return err_set(AFSP_E_UNSUPPORTED, "tar: GNU sparse file at offset %llu",
                       (unsigned long long)at);
    case 'M':
        return err_set(AFSP_E_UNSUPPORTED, "tar: GNU multi-volume member at offset %llu",
                       (unsigned long long)at);
    }
    int rc = member(p, h, type, size);
    if (rc)
        return rc;
    p->st = p->skip ? ST_SKIP : ST_HEADER;
    return 0;
}

/* ---- the API ------------------------------------------------------------------------------- */

int tar_parser_new(struct tar_parser **out, tar_entry_cb cb, void *arg)
{
    struct tar_parser *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->cb = cb;
    p->arg = arg;
    p->g.owned = true;
    *out = p;
    return 0;
}

int tar_parser_push(struct tar_parser *p, const uint8_t *data, size_t n)
{
    int rc;

    if (p->err)
        return p->err;
    while (n > 0) {
        size_t k;
        switch (p->st) {
        case ST_HEADER:
            if (p->hdr_len == 0 && n >= BLOCK) { /* a whole header in the input: no copy */
                p->off += BLOCK;
                rc = header(p, data);
                data += BLOCK, n -= BLOCK;
            } else {
                k = MIN(n, BLOCK - p->hdr_len);
                memcpy(p->hdr + p->hdr_len, data, k);
                p->hdr_len += k, p->off += k;
                data += k, n -= k;
                if (p->hdr_len < BLOCK)
                    return 0;
                p->hdr_len = 0;
                rc = header(p, p->hdr);
            }
            if (rc)
                return fail(p, rc);
            break;
        case ST_EXT:
            k = (size_t)MIN((uint64_t)n, p->ext_left);
            memcpy(p->ext_dst->p + p->ext_dst->len, data, k);
            p->ext_dst->len += k, p->ext_left -= k, p->off += k;
            data += k, n -= k;
            if (p->ext_left == 0 && (rc = ext_done(p)))
                return fail(p, rc);
            break;
        case ST_SKIP:
            k = (size_t)MIN((uint64_t)n, p->skip);
            p->skip -= k, p->off += k;
            data += k, n -= k;
            if (p->skip == 0)
                p->st = ST_HEADER;
            break;
        case ST_END:
            p->off += n;
            return 0;
        }
    }
    return 0;
}

int tar_parser_finish(struct tar_parser *p)
{
    if (p->err)
        return p->err;
    if (p->st == ST_END)
        return 0;
    /* at a member boundary, or after a single zero block (Go accepts that as the end too) */
    if (p->st == ST_HEADER && p->hdr_len == 0 && (!p->pending || p->zeros))
        return 0;
    return fail(p, err_set(AFSP_E_TRUNCATED, "tar: stream ends inside a member at offset %llu",
                           (unsigned long long)p->off));
}

void tar_parser_free(struct tar_parser *p)
{
    if (!p)
        return;
    pax_set_clear(&p->g);
    buf_release(&p->paxx);
    buf_release(&p->paxg);
    buf_release(&p->longname);
    buf_release(&p->longlink);
    free(p);
}
