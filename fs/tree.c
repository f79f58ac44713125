/*
 * tree.c - one merged directory tree from the layer indexes, with the OCI layer rules.
 *
 * Layers apply bottom first. In each layer the whiteouts go first (they hide only what lower
 * layers hold), then the entries in archive order:
 *   - ".wh.NAME" removes NAME (and all below it); ".wh..wh..opq" empties its directory of
 *     everything lower layers put there; neither ever shows;
 *   - a directory over a directory merges: the contents stay, the metadata is the newer entry's;
 *   - anything else over an existing path replaces it (a non-directory replaces a subtree);
 *   - a hardlink names the inode its target path has at that moment, so the links share one
 *     inode, its metadata and its bytes;
 *   - missing parent directories are made (0755, root, mtime 0) and later entries fix them up.
 *
 * The build works on dentries (parent inode, name) -> inode in one open-addressing hash table;
 * removing a dentry leaves its inode and anything below it unreachable, and a directory that is
 * emptied by an opaque whiteout is replaced by a fresh inode with the same metadata. At the end
 * the reachable inodes are renumbered compactly from the root (1), each directory's entries are
 * sorted by name (lookups are binary searches, readdir offsets are positions), and st_nlink is
 * counted: the number of names of a non-directory, 2 + subdirectories for a directory.
 *
 * Names are not copied (but those of directories made implicitly): they point into the layer
 * indexes' string tables, which is why the layers must stay open while the tree is used.
 */
#include "fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NO_FILE UINT32_MAX

struct node {
    uint32_t mode; /* S_IFMT | permissions */
    uint32_t uid, gid, nlink;
    uint32_t rdev_major, rdev_minor;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint32_t layer; /* where the metadata, xattrs, link target and bytes come from */
    uint32_t file;  /* file index in that layer, NO_FILE for a directory made implicitly */
    uint64_t size, data_off;
    const char *link;      /* symlink target */
    uint32_t parent;       /* directories: the parent's inode */
    uint32_t first, count; /* directories: entries [first, first + count) of t->ents */
};

struct ent {
    const char *name;
    uint32_t len;
    uint32_t ino;
};

struct fs_tree {
    char **names; /* copies of names that are not a whole path's last component */
    size_t nnames;
    struct fs_layer_src *layers; /* copies */
    size_t nlayers;
    /* every layer is trusted: privilege only then, in all of them (a verified layer's setuid
     * program must not run as root with files an unverified layer supplies: docs/security.md) */
    bool trusted;
    struct node *nodes; /* [0] unused; 1 is the root */
    uint32_t nnodes;
    struct ent *ents;
    uint32_t nents;
};

/* ---- building ------------------------------------------------------------------------------ */

struct dentry {
    uint32_t parent;
    uint32_t len;
    const char *name;
    uint32_t ino; /* 0: removed */
};

struct builder {
    struct fs_tree *t;
    uint32_t cap_nodes;
    struct dentry *d;
    uint32_t nd, cap_d;
    uint32_t *slot; /* hash table of dentry index + 1; 0 empty */
    uint32_t nslots;
    uint32_t root;
    size_t skipped;
};

static uint64_t hash_de(uint32_t parent, const char *name, uint32_t len)
{
    uint64_t h = 1469598103934665603ull ^ parent;
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static int grow_slots(struct builder *b)
{
    uint32_t n = b->nslots ? b->nslots * 2 : 1024;
    uint32_t *s = calloc(n, sizeof *s);
    if (!s)
        return -ENOMEM;
    for (uint32_t i = 0; i < b->nd; i++) {
        uint64_t h = hash_de(b->d[i].parent, b->d[i].name, b->d[i].len);
        uint32_t j = (uint32_t)h & (n - 1);
        while (s[j])
            j = (j + 1) & (n - 1);
        s[j] = i + 1;
    }
    free(b->slot);
    b->slot = s;
    b->nslots = n;
    return 0;
}

/* The dentry (parent, name), or NULL. */
static struct dentry *de_find(struct builder *b, uint32_t parent, const char *name, uint32_t len)
{
    if (!b->nslots)
        return NULL;
    uint32_t j = (uint32_t)hash_de(parent, name, len) & (b->nslots - 1);
    for (; b->slot[j]; j = (j + 1) & (b->nslots - 1)) {
        struct dentry *d = &b->d[b->slot[j] - 1];
        if (d->parent == parent && d->len == len && !memcmp(d->name, name, len))
            return d;
    }
    return NULL;
}

/* Points (parent, name) at ino, adding the dentry if needed. */
static int de_set(struct builder *b, uint32_t parent, const char *name, uint32_t len, uint32_t ino)
{
    struct dentry *d = de_find(b, parent, name, len);
    if (d) {
        d->ino = ino;
        return 0;
    }
    if ((uint64_t)(b->nd + 1) * 2 > b->nslots && grow_slots(b) < 0)
        return -ENOMEM;
    if (b->nd == b->cap_d) {
        uint32_t cap = b->cap_d ? b->cap_d * 2 : 1024;
        struct dentry *v = realloc(b->d, (size_t)cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        b->d = v;
        b->cap_d = cap;
    }
    b->d[b->nd] = (struct dentry){parent, len, name, ino};
    uint32_t j = (uint32_t)hash_de(parent, name, len) & (b->nslots - 1);
    while (b->slot[j])
        j = (j + 1) & (b->nslots - 1);
    b->slot[j] = ++b->nd;
    return 0;
}

/* Room for n inodes and dentries, made at once: growing by doubling copied the arrays and
 * rehashed the dentries five times for an image of 8,000 files, in memory touched for the first
 * time (costly here: docs/benchmarks.md). Past TREE_PRESIZE_MAX they grow as needed. */
#define TREE_PRESIZE_MAX (1u << 20)
static int reserve(struct builder *b, uint32_t n)
{
    uint32_t slots = 1024;
    while (slots < 2 * n)
        slots *= 2;
    struct fs_tree *t = b->t;
    struct node *v = realloc(t->nodes, (size_t)n * sizeof *v);
    if (v) {
        t->nodes = v;
        b->cap_nodes = n;
    }
    struct dentry *d = realloc(b->d, (size_t)n * sizeof *d);
    if (d) {
        b->d = d;
        b->cap_d = n;
    }
    uint32_t *sl = calloc(slots, sizeof *sl);
    if (!v || !d || !sl) {
        free(sl);
        return -ENOMEM;
    }
    free(b->slot);
    b->slot = sl;
    b->nslots = slots;
    return 0;
}

/* A new inode; 0 when out of memory. */
static uint32_t node_new(struct builder *b)
{
    struct fs_tree *t = b->t;
    if (t->nnodes == b->cap_nodes) {
        if (b->cap_nodes >= UINT32_MAX / 2)
            return 0;
        uint32_t cap = b->cap_nodes ? b->cap_nodes * 2 : 1024;
        struct node *v = realloc(t->nodes, (size_t)cap * sizeof *v);
        if (!v)
            return 0;
        t->nodes = v;
        b->cap_nodes = cap;
    }
    memset(&t->nodes[t->nnodes], 0, sizeof t->nodes[0]);
    return t->nnodes++;
}

static uint32_t dir_new(struct builder *b, uint32_t parent)
{
    uint32_t ino = node_new(b);
    if (ino) {
        struct node *n = &b->t->nodes[ino];
        n->mode = S_IFDIR | 0755;
        n->file = NO_FILE;
        n->parent = parent ? parent : ino;
    }
    return ino;
}

static bool is_dir(const struct builder *b, uint32_t ino)
{
    return S_ISDIR(b->t->nodes[ino].mode);
}

/* Walks the directories of path[0..len) from the root, making missing ones. Returns the inode of
 * the last, 0 when a component is not a directory (or is ".."), or -ENOMEM. */
static int64_t walk(struct builder *b, const char *path, size_t len, bool create)
{
    uint32_t dir = b->root;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        const char *c = path + i;
        uint32_t cl = (uint32_t)(j - i);
        i = j + 1;
        if (cl == 0 || (cl == 1 && c[0] == '.'))
            continue;
        if (cl == 2 && c[0] == '.' && c[1] == '.')
            return 0;
        struct dentry *d = de_find(b, dir, c, cl);
        if (d && d->ino) {
            if (!is_dir(b, d->ino))
                return 0;
            dir = d->ino;
            continue;
        }
        if (!create)
            return 0;
        /* the component is not NUL-terminated in the path: keep a copy of it */
        char **v = realloc(b->t->names, (b->t->nnames + 1) * sizeof *v);
        if (!v)
            return -ENOMEM;
        b->t->names = v;
        if (!(c = v[b->t->nnames] = strndup(c, cl)))
            return -ENOMEM;
        b->t->nnames++;
        uint32_t nd = dir_new(b, dir);
        if (!nd || de_set(b, dir, c, cl, nd) < 0)
            return -ENOMEM;
        dir = nd;
    }
    return dir;
}

/* Splits a normalised path into its parent part and last component. */
static void split(const char *path, size_t *plen, const char **base)
{
    const char *s = strrchr(path, '/');
    *base = s ? s + 1 : path;
    *plen = s ? (size_t)(s - path) : 0;
}

static void set_meta(struct node *n, const struct layer_file *f, uint32_t layer, uint32_t file)
{
    n->uid = f->uid;
    n->gid = f->gid;
    n->mtime_sec = f->mtime_sec;
    n->mtime_nsec = f->mtime_nsec;
    n->layer = layer;
    n->file = file;
    n->mode = (n->mode & S_IFMT) | (f->mode & 07777);
}

static void skip(struct builder *b, const char *path, const char *why)
{
    b->skipped++;
    log_warn("image tree: %s: %s; left out", path, why);
}

static int apply_whiteout(struct builder *b, const char *path)
{
    size_t plen;
    const char *base;
    split(path, &plen, &base);
    int64_t dir = walk(b, path, plen, false);
    if (dir <= 0)
        return dir < 0 ? (int)dir : 0; /* nothing below to hide */
    if (!strcmp(base, ".wh..wh..opq")) {
        /* empty dir: a fresh inode with the same metadata takes its place */
        struct node *old = &b->t->nodes[dir];
        uint32_t parent = old->parent;
        uint32_t nd = node_new(b);
        if (!nd)
            return -ENOMEM;
        b->t->nodes[nd] = b->t->nodes[dir];
        if ((uint32_t)dir == b->root) {
            b->root = nd;
            b->t->nodes[nd].parent = nd;
            return 0;
        }
        /* find the dentry naming dir: its parent part of the path */
        const char *pb;
        size_t pplen;
        char *ppath = strndup(path, plen);
        if (!ppath)
            return -ENOMEM;
        split(ppath, &pplen, &pb);
        struct dentry *d = de_find(b, parent, pb, (uint32_t)strlen(pb));
        free(ppath);
        if (d)
            d->ino = nd;
        return 0;
    }
    const char *name = base + 4;
    struct dentry *d = de_find(b, (uint32_t)dir, name, (uint32_t)strlen(name));
    if (d)
        d->ino = 0;
    return 0;
}

static int apply_entry(struct builder *b, uint32_t layer, uint32_t i, const struct layer_file *f)
{
    struct fs_tree *t = b->t;
    size_t plen;
    const char *base;

    if (!*f->path) { /* the root itself */
        if (f->type == '5')
            set_meta(&t->nodes[b->root], f, layer, i);
        return 0;
    }
    split(f->path, &plen, &base);
    if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) {
        /* "/" or "a/" (an index from a peer need not be normalised): no name to give it */
        skip(b, f->path, "an empty name, or . or ..");
        return 0;
    }
    int64_t dir = walk(b, f->path, plen, true);
    if (dir < 0)
        return (int)dir;
    if (dir == 0) {
        skip(b, f->path, "a parent is not a directory");
        return 0;
    }
    uint32_t blen = (uint32_t)strlen(base);
    struct dentry *d = de_find(b, (uint32_t)dir, base, blen);
    uint32_t cur = d ? d->ino : 0;

    if (f->type == '1') { /* hardlink: the inode its target names now */
        size_t tlen;
        const char *tbase;
        split(f->link, &tlen, &tbase);
        int64_t tdir = walk(b, f->link, tlen, false);
        struct dentry *td =
            tdir > 0 ? de_find(b, (uint32_t)tdir, tbase, (uint32_t)strlen(tbase)) : NULL;
        if (tdir < 0)
            return (int)tdir;
        if (!td || !td->ino) {
            skip(b, f->path, "a hardlink to a path that does not exist");
            return 0;
        }
        if (is_dir(b, td->ino)) {
            skip(b, f->path, "a hardlink to a directory");
            return 0;
        }
        return de_set(b, (uint32_t)dir, base, blen, td->ino);
    }
    if (f->type == '5' && cur && is_dir(b, cur)) { /* merge */
        set_meta(&t->nodes[cur], f, layer, i);
        return 0;
    }
    uint32_t ino = f->type == '5' ? dir_new(b, (uint32_t)dir) : node_new(b);
    if (!ino)
        return -ENOMEM;
    struct node *n = &t->nodes[ino];
    switch (f->type) {
    case '0':
        n->mode = S_IFREG;
        n->size = f->size;
        n->data_off = f->data_off;
        break;
    case '2':
        n->mode = S_IFLNK;
        n->link = f->link;
        n->size = strlen(f->link);
        break;
    case '3':
    case '4':
        n->mode = f->type == '3' ? S_IFCHR : S_IFBLK;
        n->rdev_major = f->devmajor;
        n->rdev_minor = f->devminor;
        break;
    case '5':
        break;
    case '6':
        n->mode = S_IFIFO;
        break;
    default:
        t->nnodes--; /* not kept */
        skip(b, f->path, "an entry type that has no place in a filesystem");
        return 0;
    }
    set_meta(n, f, layer, i);
    return de_set(b, (uint32_t)dir, base, blen, ino);
}

static bool is_whiteout(const char *path)
{
    const char *b = strrchr(path, '/');
    return !strncmp(b ? b + 1 : path, ".wh.", 4);
}

static int apply_layer(struct builder *b, const struct fs_layer_src *l, uint32_t layer)
{
    uint32_t n = l->nfiles(l->arg);
    struct layer_file f;
    int rc;
    for (uint32_t i = 0; i < n; i++) {
        if (l->file(l->arg, i, &f) < 0)
            return err_set(AFSP_E_FORMAT, "layer %u: entry %u", layer, i);
        if (is_whiteout(f.path) && (rc = apply_whiteout(b, f.path)) < 0)
            return rc;
    }
    for (uint32_t i = 0; i < n; i++) {
        l->file(l->arg, i, &f);
        if (!b->t->trusted && (f.type == '3' || f.type == '4')) { /* chr, blk */
            skip(b, f.path, "a device node while a layer's index is a peer's");
            continue;
        }
        if (!b->t->trusted)
            f.mode &= ~(uint32_t)(S_ISUID | S_ISGID);
        if (!is_whiteout(f.path) && (rc = apply_entry(b, layer, i, &f)) < 0)
            return rc;
    }
    return 0;
}

/* ---- finishing: renumber what is reachable, sort entries, count links ---------------------- */

static int cmp_dentry(const void *a, const void *b)
{
    const struct dentry *x = a, *y = b;
    if (x->parent != y->parent)
        return x->parent < y->parent ? -1 : 1;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int finish(struct builder *b)
{
    struct fs_tree *t = b->t;
    uint32_t nold = t->nnodes;
    uint32_t *newno = NULL, *first = NULL, *queue = NULL;
    struct node *nodes = NULL;
    struct ent *ents = NULL;
    int rc = -ENOMEM;

    /* live dentries grouped by parent, sorted by name */
    uint32_t nd = 0;
    for (uint32_t i = 0; i < b->nd; i++)
        if (b->d[i].ino)
            b->d[nd++] = b->d[i];
    b->nd = nd;
    free(b->slot);
    b->slot = NULL;
    b->nslots = 0;
    qsort(b->d, nd, sizeof *b->d, cmp_dentry);
    /* first[p]: index of p's first dentry; first[p + 1] its end */
    first = calloc((size_t)nold + 1, sizeof *first);
    newno = calloc(nold, sizeof *newno);
    queue = malloc((size_t)nold * sizeof *queue);
    if (!first || !newno || !queue)
        goto out;
    for (uint32_t i = 0; i < nd; i++)
        first[b->d[i].parent + 1]++;
    for (uint32_t p = 0; p < nold; p++)
        first[p + 1] += first[p];

    /* breadth first from the root: new numbers, in the order inodes are reached */
    uint32_t nnew = 1, head = 0, tail = 0, nents = 0;
    newno[b->root] = nnew++;
    queue[tail++] = b->root;
    while (head < tail) {
        uint32_t p = queue[head++];
        for (uint32_t i = first[p]; i < first[p + 1]; i++) {
            uint32_t c = b->d[i].ino;
            nents++;
            if (!newno[c]) {
                newno[c] = nnew++;
                if (is_dir(b, c))
                    queue[tail++] = c;
            }
        }
    }
    nodes = calloc(nnew, sizeof *nodes);
    ents = malloc((size_t)(nents ? nents : 1) * sizeof *ents);
    if (!nodes || !ents)
        goto out;
    for (uint32_t o = 1; o < nold; o++)
        if (newno[o]) {
            nodes[newno[o]] = t->nodes[o];
            nodes[newno[o]].nlink = S_ISDIR(t->nodes[o].mode) ? 2 : 0;
        }
    /* entries, directory by directory in queue order; a directory's parent is the one that
     * reached it first (a directory has only one name) */
    uint32_t k = 0;
    for (uint32_t q = 0; q < tail; q++) {
        uint32_t p = queue[q];
        struct node *pn = &nodes[newno[p]];
        pn->first = k;
        pn->count = first[p + 1] - first[p];
        for (uint32_t i = first[p]; i < first[p + 1]; i++) {
            uint32_t c = b->d[i].ino;
            struct node *cn = &nodes[newno[c]];
            ents[k++] = (struct ent){b->d[i].name, b->d[i].len, newno[c]};
            if (S_ISDIR(cn->mode)) {
                cn->parent = newno[p];
                pn->nlink++;
            } else {
                cn->nlink++;
            }
        }
    }
    nodes[FS_ROOT_INO].parent = FS_ROOT_INO;
    free(t->nodes);
    t->nodes = nodes;
    t->nnodes = nnew;
    t->ents = ents;
    t->nents = nents;
    nodes = NULL;
    ents = NULL;
    rc = 0;
out:
    free(nodes);
    free(ents);
    free(first);
    free(newno);
    free(queue);
    return rc;
}

int fs_tree_build_src(struct fs_tree **out, const struct fs_layer_src *layers, size_t n,
                      size_t *skipped)
{
    struct fs_tree *t = calloc(1, sizeof *t);
    struct builder b = {.t = t};
    int rc = -ENOMEM;
    if (!t)
        return -ENOMEM;
    if (n > UINT32_MAX) {
        free(t);
        return err_set(AFSP_E_UNSUPPORTED, "too many layers");
    }
    if (!(t->layers = malloc((n ? n : 1) * sizeof *t->layers)))
        goto fail;
    memcpy(t->layers, layers, n * sizeof *layers);
    t->nlayers = n;
    t->trusted = true;
    for (size_t k = 0; k < n; k++)
        t->trusted &= layers[k].trusted;
    uint64_t want = 64; /* the root and directories no entry names (rare), for a start */
    for (size_t k = 0; k < n; k++)
        want += layers[k].nfiles(layers[k].arg);
    if (reserve(&b, (uint32_t)MIN(want, (uint64_t)TREE_PRESIZE_MAX)) < 0)
        goto fail;
    node_new(&b); /* inode 0 is never used */
    if (t->nnodes != 1 || !(b.root = dir_new(&b, 0)))
        goto fail;
    for (size_t k = 0; k < n; k++)
        if ((rc = apply_layer(&b, &layers[k], (uint32_t)k)) < 0)
            goto fail;
    if ((rc = finish(&b)) < 0)
        goto fail;
    free(b.d);
    if (skipped)
        *skipped = b.skipped;
    *out = t;
    return 0;
fail:
    free(b.d);
    free(b.slot);
    fs_tree_free(t);
    return rc;
}

static uint32_t sl_nfiles(void *arg)
{
    return store_layer_nfiles(arg);
}

static int sl_file(void *arg, uint32_t i, struct layer_file *out)
{
    return store_layer_file(arg, i, out);
}

static int sl_xattr(void *arg, uint32_t i, uint32_t j, const char **name, const uint8_t **value,
                    size_t *len)
{
    return store_layer_xattr(arg, i, j, name, value, len);
}

int fs_tree_build(struct fs_tree **out, struct store_layer *const *layers, size_t n,
                  size_t *skipped)
{
    struct fs_layer_src *src = calloc(n ? n : 1, sizeof *src);
    if (!src)
        return -ENOMEM;
    for (size_t k = 0; k < n; k++)
        src[k] = (struct fs_layer_src){layers[k], sl_nfiles, sl_file, sl_xattr,
                                       store_layer_index_built(layers[k])};
    int rc = fs_tree_build_src(out, src, n, skipped);
    free(src);
    return rc;
}

void fs_tree_free(struct fs_tree *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nnames; i++)
        free(t->names[i]);
    free(t->names);
    free(t->layers);
    free(t->nodes);
    free(t->ents);
    free(t);
}

/* ---- queries ------------------------------------------------------------------------------- */

static const struct node *get(const struct fs_tree *t, uint64_t ino)
{
    return ino >= 1 && ino < t->nnodes ? &t->nodes[ino] : NULL;
}

uint64_t fs_tree_count(const struct fs_tree *t)
{
    return t->nnodes - 1;
}

int fs_tree_getattr(const struct fs_tree *t, uint64_t ino, struct fs_attr *a)
{
    const struct node *n = get(t, ino);
    if (!n)
        return -ENOENT;
    *a = (struct fs_attr){.ino = ino,
                          .mode = n->mode,
                          .nlink = n->nlink,
                          .uid = n->uid,
                          .gid = n->gid,
                          .rdev_major = n->rdev_major,
                          .rdev_minor = n->rdev_minor,
                          .size = S_ISDIR(n->mode) ? 4096 : n->size,
                          .mtime_sec = n->mtime_sec,
                          .mtime_nsec = n->mtime_nsec};
    return 0;
}

int fs_tree_lookup(const struct fs_tree *t, uint64_t dir, const char *name, uint64_t *ino)
{
    const struct node *d = get(t, dir);
    if (!d)
        return -ENOENT;
    if (!S_ISDIR(d->mode))
        return -ENOTDIR;
    size_t len = strlen(name);
    uint32_t lo = d->first, hi = d->first + d->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct ent *e = &t->ents[mid];
        size_t n = e->len < len ? e->len : len;
        int c = memcmp(e->name, name, n);
        if (!c)
            c = (e->len > len) - (e->len < len);
        if (!c) {
            *ino = e->ino;
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -ENOENT;
}

int fs_tree_dirent(const struct fs_tree *t, uint64_t dir, uint32_t i, const char **name,
                   uint64_t *ino)
{
    const struct node *d = get(t, dir);
    if (!d)
        return -ENOENT;
    if (!S_ISDIR(d->mode))
        return -ENOTDIR;
    if (i >= d->count)
        return -ENOENT;
    *name = t->ents[d->first + i].name;
    *ino = t->ents[d->first + i].ino;
    return 0;
}

uint64_t fs_tree_parent(const struct fs_tree *t, uint64_t dir)
{
    const struct node *d = get(t, dir);
    return d && S_ISDIR(d->mode) ? d->parent : FS_ROOT_INO;
}

const char *fs_tree_readlink(const struct fs_tree *t, uint64_t ino)
{
    const struct node *n = get(t, ino);
    return n && S_ISLNK(n->mode) ? n->link : NULL;
}

int fs_tree_xattr(const struct fs_tree *t, uint64_t ino, uint32_t j, const char **name,
                  const uint8_t **value, size_t *len)
{
    const struct node *n = get(t, ino);
    if (!n || n->file == NO_FILE)
        return -ENOENT;
    const struct fs_layer_src *l = &t->layers[n->layer];
    if (t->trusted)
        return l->xattr(l->arg, n->file, j, name, value, len) < 0 ? -ENOENT : 0;
    /* the j-th of those that are shown: security.capability is withheld */
    for (uint32_t k = 0; l->xattr(l->arg, n->file, k, name, value, len) >= 0; k++)
        if (strcmp(*name, "security.capability") && j-- == 0)
            return 0;
    return -ENOENT;
}

int fs_tree_layer(const struct fs_tree *t, uint64_t ino, uint32_t *layer)
{
    const struct node *n = get(t, ino);
    if (!n || n->file == NO_FILE)
        return -ENOENT;
    *layer = n->layer;
    return 0;
}

int fs_tree_data(const struct fs_tree *t, uint64_t ino, uint32_t *layer, uint64_t *off,
                 uint64_t *size)
{
    const struct node *n = get(t, ino);
    if (!n || !S_ISREG(n->mode))
        return -EINVAL;
    *layer = n->layer;
    *off = n->data_off;
    *size = n->size;
    return 0;
}
