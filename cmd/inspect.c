/*
 * inspect.c - `afsp inspect`: look inside stored layers through their indexes.
 *
 *   afsp inspect files DIGEST        the file table of a layer, one JSON object per line
 *   afsp inspect extract IMAGE DIR   write the image's root filesystem into DIR, read through
 *                                    the layer indexes (the OCI layer rules: whiteouts, opaque
 *                                    directories, hardlinks, devices, xattrs, owners, mtimes)
 *
 * extract writes the merged tree a mount shows (fs_tree_build: the OCI layer rules are applied
 * there, once), walking it from the root with directory fds, creating every entry exclusively
 * and never following a symlink, so nothing can be written outside DIR. It exists to check the
 * tree and the index against an independent unpacker (tests) and to export an image.
 */
#include "cmd.h"

#include "../fs/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

const struct command cmd_inspect_def = {
    "inspect", cmd_inspect, "look inside stored layers (files, extract)",
    "files LAYER-DIGEST | extract IMAGE DIR\n"
    "\n"
    "  files DIGEST       print the layer's file table, one JSON object per line\n"
    "  extract IMAGE DIR  write IMAGE's root filesystem into DIR (created; must be empty),\n"
    "                     reading every byte through the layer indexes\n",
    false};

static int cmd_files(struct store *s, const char *dgs)
{
    uint8_t d[DIGEST_LEN];
    struct store_layer *l;
    int rc = digest_parse(dgs, d);
    if (rc < 0)
        return die("'%s' is not a layer digest (sha256:...)", dgs);
    if ((rc = store_layer_open(s, d, &l)) < 0)
        return die("cannot open layer %s: %s", dgs, err_msg(rc));
    for (uint32_t i = 0; i < store_layer_nfiles(l); i++) {
        struct layer_file f;
        store_layer_file(l, i, &f);
        json_t *x = json_object();
        for (uint32_t j = 0; j < f.nxattrs; j++) {
            const char *name;
            const uint8_t *val;
            size_t len;
            char *hex = malloc(2 * 65536 + 1);
            if (!hex || store_layer_xattr(l, i, j, &name, &val, &len) < 0 || len > 65536) {
                free(hex);
                continue;
            }
            json_object_set_new(x, name, json_string(hex_fmt(val, len, hex)));
            free(hex);
        }
        char type[2] = {f.type, 0};
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:I, s:i, s:I, s:I, s:i, s:i, s:o}", "path",
                      f.path, "type", type, "link", f.link, "mode", f.mode, "uid", f.uid, "gid",
                      f.gid, "mtime", (json_int_t)f.mtime_sec, "mtimeNsec", f.mtime_nsec, "size",
                      (json_int_t)f.size, "dataOffset", (json_int_t)f.data_off, "devMajor",
                      f.devmajor, "devMinor", f.devminor, "xattrs", x);
        char *line = json_dumps(o, JSON_COMPACT);
        puts(line);
        free(line);
        json_decref(o);
    }
    store_layer_close(l);
    return 0;
}

/* Writes inode ino as name in directory pfd, then (for a directory) everything below it.
 * Metadata goes last, directory mtimes after their contents. links[ino] remembers the first
 * path of an inode with more than one name, so that the others become hardlinks to it. */
struct extract {
    const struct fs_tree *t;
    struct store_layer *const *layers;
    char **links;
    int root;
    char path[PATH_MAX]; /* of the entry being written, relative to root */
};

static int write_data(struct extract *x, int fd, uint64_t ino)
{
    static uint8_t buf[1 << 20];
    uint32_t layer;
    uint64_t off, size;
    if (fs_tree_data(x->t, ino, &layer, &off, &size) < 0)
        return AFSP_E_FORMAT;
    for (uint64_t done = 0; done < size;) {
        size_t want = (size_t)MIN(sizeof buf, size - done);
        ssize_t n = store_layer_read(x->layers[layer], off + done, buf, want);
        if (n <= 0)
            return n < 0 ? (int)n : AFSP_E_TRUNCATED;
        if (write(fd, buf, (size_t)n) != n)
            return -errno;
        done += (uint64_t)n;
    }
    return 0;
}

static int set_meta(struct extract *x, int pfd, const char *name, const struct fs_attr *a)
{
    struct timespec ts[2] = {{a->mtime_sec, a->mtime_nsec}, {a->mtime_sec, a->mtime_nsec}};
    if (fchownat(pfd, name, a->uid, a->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (!S_ISLNK(a->mode) && fchmodat(pfd, name, a->mode & 07777, 0) < 0)
        return -errno;
    const char *xn;
    const uint8_t *xv;
    size_t xl;
    char p[PATH_MAX + 64];
    /* *xattr on a path: through /proc/self/fd, to stay below the parent */
    snprintf(p, sizeof p, "/proc/self/fd/%d/%s", pfd, name);
    for (uint32_t j = 0; fs_tree_xattr(x->t, a->ino, j, &xn, &xv, &xl) == 0; j++)
        if (lsetxattr(p, xn, xv, xl, 0) < 0)
            return -errno;
    if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

static int extract_dir(struct extract *x, int dfd, uint64_t dir);

static int extract_one(struct extract *x, int pfd, const char *name, uint64_t ino)
{
    struct fs_attr a;
    int rc = 0;
    fs_tree_getattr(x->t, ino, &a);
    if (a.nlink > 1 && !S_ISDIR(a.mode)) {
        if (x->links[ino]) /* a later name of an inode already written */
            return linkat(x->root, x->links[ino], pfd, name, 0) < 0 ? -errno : 0;
        if (!(x->links[ino] = strdup(x->path)))
            return -ENOMEM;
    }
    switch (a.mode & S_IFMT) {
    case S_IFDIR: {
        if (mkdirat(pfd, name, 0700) < 0)
            return -errno;
        int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        rc = extract_dir(x, fd, ino);
        close(fd);
        break;
    }
    case S_IFREG: {
        int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        rc = write_data(x, fd, ino);
        close(fd);
        break;
    }
    case S_IFLNK:
        rc = symlinkat(fs_tree_readlink(x->t, ino), pfd, name) < 0 ? -errno : 0;
        break;
    default:
        rc = mknodat(pfd, name, (a.mode & S_IFMT) | 0600, makedev(a.rdev_major, a.rdev_minor)) < 0
                 ? -errno
                 : 0;
    }
    if (rc == 0)
        rc = set_meta(x, pfd, name, &a);
    return rc;
}

static int extract_dir(struct extract *x, int dfd, uint64_t dir)
{
    const char *name;
    uint64_t ino;
    size_t plen = strlen(x->path);
    for (uint32_t i = 0; fs_tree_dirent(x->t, dir, i, &name, &ino) == 0; i++) {
        if (plen + 1 + strlen(name) >= sizeof x->path)
            return err_set(-ENAMETOOLONG, "%s/%s", x->path, name);
        snprintf(x->path + plen, sizeof x->path - plen, "%s%s", plen ? "/" : "", name);
        int rc = extract_one(x, dfd, name, ino);
        if (rc < 0)
            return err_ctx(rc, "%s", x->path);
        x->path[plen] = 0;
    }
    return 0;
}

static int cmd_extract(struct store *s, const char *ref, const char *dir)
{
    struct image_info ii;
    struct store_layer **ls = NULL;
    struct fs_tree *t = NULL;
    struct extract x = {0};
    int rc = store_image_find(s, ref, &ii), ret = 1;
    if (rc < 0)
        return die("cannot extract %s: %s", ref, err_msg(rc));
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        die("cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    x.root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ls = calloc(ii.nlayers + 1, sizeof *ls);
    if (x.root < 0 || !ls) {
        die("cannot open %s: %s", dir, strerror(errno));
        goto out;
    }
    for (size_t k = 0; k < ii.nlayers; k++) {
        char dg[DIGEST_STR_LEN + 1];
        if ((rc = store_layer_open(s, ii.layers[k], &ls[k])) < 0) {
            die("cannot extract %s: layer %s: %s", ref, digest_fmt(ii.layers[k], dg), err_msg(rc));
            goto out;
        }
    }
    if ((rc = fs_tree_build(&t, ls, ii.nlayers, NULL)) < 0 ||
        !(x.links = calloc(fs_tree_count(t) + 1, sizeof *x.links))) {
        die("cannot extract %s: %s", ref, err_msg(rc < 0 ? rc : -ENOMEM));
        goto out;
    }
    x.t = t;
    x.layers = ls;
    struct fs_attr ra;
    fs_tree_getattr(t, FS_ROOT_INO, &ra);
    if ((rc = extract_dir(&x, x.root, FS_ROOT_INO)) < 0 ||
        (rc = set_meta(&x, x.root, ".", &ra)) < 0) {
        die("cannot extract %s: %s", ref, err_msg(rc));
        goto out;
    }
    ret = 0;
out:
    for (uint64_t i = 0; x.links && t && i <= fs_tree_count(t); i++)
        free(x.links[i]);
    free(x.links);
    fs_tree_free(t);
    for (size_t k = 0; ls && k < ii.nlayers; k++)
        store_layer_close(ls[k]);
    free(ls);
    free(ii.layers);
    if (x.root > 0)
        close(x.root);
    return ret;
}

int cmd_inspect(int argc, char **argv)
{
    const char *pos[3];
    int npos = 0;
    struct store *s;
    struct cmd_iter it = CMD_ITER(&cmd_inspect_def, argc, argv);
    const char *arg;
    int r;
    while ((r = cmd_next(&it, &arg)) > 0) {
        if (arg[0] == '-' || npos == 3)
            return cmd_usage_error(&cmd_inspect_def, "unexpected argument %s", arg);
        pos[npos++] = arg;
    }
    if (r < 0)
        return it.status;
    int files = npos == 2 && !strcmp(pos[0], "files");
    int extract = npos == 3 && !strcmp(pos[0], "extract");
    if (!files && !extract)
        return cmd_usage_error(&cmd_inspect_def, "expected 'files DIGEST' or 'extract IMAGE DIR'");
    if (open_store(&s, true))
        return 1;
    int rc = files ? cmd_files(s, pos[1]) : cmd_extract(s, pos[1], pos[2]);
    store_close(s);
    return rc;
}
