/*
 * inspect.c - `afsp inspect`: look inside stored layers through their indexes.
 *
 *   afsp inspect files DIGEST        the file table of a layer, one JSON object per line
 *   afsp inspect extract IMAGE DIR   write the image's root filesystem into DIR, read through
 *                                    the layer indexes (the OCI layer rules: whiteouts, opaque
 *                                    directories, hardlinks, devices, xattrs, owners, mtimes)
 *
 * extract exists to check the index against an independent unpacker (tests) and to export an
 * image. It never follows a symlink while writing: every path is walked one component at a
 * time with O_NOFOLLOW, so a layer cannot write outside DIR.
 */
#include "cmd.h"

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

/* Opens the directory holding path's last component, walking from root without following
 * symlinks and, if create, creating missing directories (0755, fixed up later by their own
 * entries). Sets *base to the last component. Returns an fd or a negative errno. */
static int open_parent(int root, const char *path, bool create, char *buf, const char **base)
{
    snprintf(buf, PATH_MAX, "%s", path);
    char *slash = strrchr(buf, '/');
    int fd = dup(root);
    if (fd < 0)
        return -errno;
    if (!slash) {
        *base = buf;
        return fd;
    }
    *slash = 0;
    *base = slash + 1;
    for (char *comp = buf, *next; comp; comp = next) {
        next = strchr(comp, '/');
        if (next)
            *next++ = 0;
        if (!*comp || !strcmp(comp, "."))
            continue;
        if (!strcmp(comp, "..")) {
            close(fd);
            return -EINVAL;
        }
        int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0 && errno == ENOENT && create && mkdirat(fd, comp, 0755) == 0)
            nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(fd);
        if (nfd < 0)
            return -e;
        fd = nfd;
    }
    return fd;
}

static int clear_dir_at(int dirfd, const char *name);

/* Removes name (a file, or a directory and everything below it) without following symlinks. */
static int rm_rf_at(int dirfd, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
    int rc = clear_dir_at(dirfd, name);
    if (rc < 0)
        return rc;
    return unlinkat(dirfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

/* Removes everything below directory name (an opaque whiteout). */
static int clear_dir_at(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            rm_rf_at(fd, e->d_name);
    closedir(d);
    return 0;
}

static int set_meta(int pfd, const char *base, struct store_layer *l, uint32_t i,
                    const struct layer_file *f)
{
    struct timespec ts[2] = {{f->mtime_sec, f->mtime_nsec}, {f->mtime_sec, f->mtime_nsec}};
    if (fchownat(pfd, base, f->uid, f->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (f->type != '2' && fchmodat(pfd, base, f->mode, 0) < 0)
        return -errno;
    if (f->nxattrs) {
        /* *xattr on a path: go through /proc/self/fd to stay below the parent fd. */
        char p[PATH_MAX];
        snprintf(p, sizeof p, "/proc/self/fd/%d/%s", pfd, base);
        for (uint32_t j = 0; j < f->nxattrs; j++) {
            const char *name;
            const uint8_t *val;
            size_t len;
            if (store_layer_xattr(l, i, j, &name, &val, &len) == 0 &&
                lsetxattr(p, name, val, len, 0) < 0)
                return -errno;
        }
    }
    if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

static int write_file(int pfd, const char *base, struct store_layer *l, const struct layer_file *f)
{
    int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    static uint8_t buf[1 << 20];
    uint64_t off = 0;
    int rc = 0;
    while (off < f->size) {
        size_t want = (size_t)MIN(sizeof buf, f->size - off);
        ssize_t n = store_layer_read(l, f->data_off + off, buf, want);
        if (n <= 0) {
            rc = n < 0 ? (int)n : AFSP_E_TRUNCATED;
            break;
        }
        if (write(fd, buf, (size_t)n) != n) {
            rc = -errno;
            break;
        }
        off += (uint64_t)n;
    }
    close(fd);
    return rc;
}

/* Applies one layer to root: whiteouts first (they apply to lower layers only), then entries. */
static int apply_layer(int root, struct store_layer *l)
{
    char buf[PATH_MAX];
    const char *base;
    int rc = 0;
    uint32_t n = store_layer_nfiles(l);

    for (uint32_t i = 0; i < n && rc == 0; i++) {
        struct layer_file f;
        store_layer_file(l, i, &f);
        const char *b = strrchr(f.path, '/');
        b = b ? b + 1 : f.path;
        if (strncmp(b, ".wh.", 4))
            continue;
        int pfd = open_parent(root, f.path, false, buf, &base);
        if (pfd == -ENOENT)
            continue; /* nothing below to white out */
        if (pfd < 0)
            return pfd;
        if (!strcmp(base, ".wh..wh..opq"))
            rc = clear_dir_at(pfd, ".");
        else
            rc = rm_rf_at(pfd, base + 4);
        close(pfd);
    }
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        struct layer_file f;
        struct stat st;
        store_layer_file(l, i, &f);
        const char *b = strrchr(f.path, '/');
        if (!strncmp(b ? b + 1 : f.path, ".wh.", 4))
            continue;
        if (!*f.path) { /* the root itself */
            rc = set_meta(root, ".", l, i, &f);
            continue;
        }
        int pfd = open_parent(root, f.path, true, buf, &base);
        if (pfd < 0)
            return pfd;
        int exists = fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (exists && !(f.type == '5' && S_ISDIR(st.st_mode)))
            rm_rf_at(pfd, base);
        switch (f.type) {
        case '5':
            if (mkdirat(pfd, base, 0700) < 0 && errno != EEXIST)
                rc = -errno;
            break;
        case '0':
            rc = write_file(pfd, base, l, &f);
            break;
        case '2':
            rc = symlinkat(f.link, pfd, base) < 0 ? -errno : 0;
            break;
        case '1': {
            char tbuf[PATH_MAX];
            const char *tbase;
            int tfd = open_parent(root, f.link, false, tbuf, &tbase);
            if (tfd < 0) {
                rc = tfd;
                break;
            }
            rc = linkat(tfd, tbase, pfd, base, 0) < 0 ? -errno : 0;
            close(tfd);
            close(pfd);
            continue; /* a hardlink shares its target's metadata */
        }
        case '3':
        case '4':
        case '6': {
            mode_t m = f.type == '3' ? S_IFCHR : f.type == '4' ? S_IFBLK : S_IFIFO;
            rc = mknodat(pfd, base, m | 0600, makedev(f.devmajor, f.devminor)) < 0 ? -errno : 0;
            break;
        }
        default:
            rc = err_set(AFSP_E_UNSUPPORTED, "entry type %c", f.type);
        }
        if (rc == 0)
            rc = set_meta(pfd, base, l, i, &f);
        if (rc < 0)
            err_ctx(rc, "%s", f.path);
        close(pfd);
    }
    return rc;
}

/* Directory mtimes last (creating and removing entries changed them), in layer order so that
 * the last layer to name a directory decides. */
static int fix_dirs(int root, struct store_layer **ls, size_t nl)
{
    char buf[PATH_MAX];
    const char *base;
    for (size_t k = 0; k < nl; k++) {
        for (uint32_t i = 0; i < store_layer_nfiles(ls[k]); i++) {
            struct layer_file f;
            store_layer_file(ls[k], i, &f);
            if (f.type != '5')
                continue;
            struct timespec ts[2] = {{f.mtime_sec, f.mtime_nsec}, {f.mtime_sec, f.mtime_nsec}};
            int pfd = *f.path ? open_parent(root, f.path, false, buf, &base) : dup(root);
            struct stat st;
            if (pfd < 0)
                continue; /* whited out by a later layer */
            const char *name = *f.path ? base : ".";
            if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
                utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW);
            close(pfd);
        }
    }
    return 0;
}

static int cmd_extract(struct store *s, const char *ref, const char *dir)
{
    struct image_info ii;
    struct store_layer **ls = NULL;
    int rc = store_image_find(s, ref, &ii), root = -1, ret = 1;
    if (rc < 0)
        return die("cannot extract %s: %s", ref, err_msg(rc));
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        die("cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ls = calloc(ii.nlayers + 1, sizeof *ls);
    if (root < 0 || !ls) {
        die("cannot open %s: %s", dir, strerror(errno));
        goto out;
    }
    for (size_t k = 0; k < ii.nlayers; k++) {
        char dg[DIGEST_STR_LEN + 1];
        if ((rc = store_layer_open(s, ii.layers[k], &ls[k])) < 0 ||
            (rc = apply_layer(root, ls[k])) < 0) {
            die("cannot extract %s: layer %s: %s", ref, digest_fmt(ii.layers[k], dg), err_msg(rc));
            goto out;
        }
    }
    fix_dirs(root, ls, ii.nlayers);
    ret = 0;
out:
    for (size_t k = 0; ls && k < ii.nlayers; k++)
        store_layer_close(ls[k]);
    free(ls);
    free(ii.layers);
    if (root >= 0)
        close(root);
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
