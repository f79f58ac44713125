/*
 * tar_int.h - interfaces between the tar parser's files in store/layer/ (tar.c, pax.c): the
 * attributes of pax extended headers. No other file includes this.
 */
#ifndef AFSP_STORE_LAYER_TAR_INT_H
#define AFSP_STORE_LAYER_TAR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layer.h"

/* Which fields of a pax set are present (have) or deleted by an empty value (del). */
enum {
    PX_PATH = 1 << 0,
    PX_LINK = 1 << 1,
    PX_SIZE = 1 << 2,
    PX_UID = 1 << 3,
    PX_GID = 1 << 4,
    PX_MTIME = 1 << 5,
    PX_DEVMAJOR = 1 << 6,
    PX_DEVMINOR = 1 << 7,
};

struct pax_xattr {
    char *name;
    uint8_t *value;
    size_t len;
};

/* The attributes of one pax header ('x'), or the accumulated global ones ('g'). Strings of an
 * 'x' set point into its payload buffer; those of the global set are owned. */
struct pax_set {
    bool owned;
    unsigned have, del;
    char *path, *link;
    uint64_t size;
    uint32_t uid, gid, devmajor, devminor;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    struct pax_xattr xattrs[TAR_XATTR_MAX];
    size_t nxattrs;
};

/* Forgets every attribute of s (freeing them if it owns them); s->owned stays. */
void pax_set_clear(struct pax_set *s);
/* Parses the records "LEN key=value\n" of a pax payload b (with a spare byte after it) into s, in
 * place: the '=' and '\n' of each record become NULs, and the strings of a set that does not own
 * them point into b. Returns 0, AFSP_E_FORMAT (a malformed record, a value out of its range, a
 * name or path over its bound, more than TAR_XATTR_MAX xattrs), AFSP_E_UNSUPPORTED (GNU sparse)
 * or -ENOMEM. */
int pax_parse(struct pax_set *s, struct buf *b);

#endif
