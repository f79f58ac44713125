/*
 * fuse.c - the FUSE low-level frontend: the merged tree and the piece cache as a read-only
 * filesystem.
 *
 * Inode numbers are the tree's (1 is the root). The tree never changes, so entries, attributes
 * (including negative lookups), symlinks and directory listings are cached by the kernel for a
 * long time, and file pages are kept across opens (keep_cache). Reads are answered
 * asynchronously: the handler returns at once and the reply is sent by whichever thread has the
 * last piece the read needs (fs_cache_read_async). Everything that would write answers EROFS.
 * The kernel checks permissions (default_permissions) against the image's own modes and owners;
 * as root the mount allows other users, setuid programs and device nodes, like a root
 * filesystem on disk.
 */
#define FUSE_USE_VERSION 312
#include "fs.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define TIMEOUT (365.0 * 86400) /* the tree never changes */
#define MAX_REQUEST (1u << 20)

struct mnt {
    struct fs_tree *t;
    struct fs_cache *c;
    struct store_layer *const *layers;
    size_t nlayers;
    uint64_t total_bytes;
    uint64_t *next;           /* per inode: where a sequential reader reads next */
    bool no_open, no_opendir; /* the kernel can do without open/opendir requests */
    bool acls;                /* some file in the image carries a POSIX ACL */
    bool labels;              /* some file in the image carries an SELinux label */
};

static struct mnt *M(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static void to_stat(const struct fs_attr *a, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = a->ino;
    st->st_mode = a->mode;
    st->st_nlink = a->nlink;
    st->st_uid = a->uid;
    st->st_gid = a->gid;
    st->st_rdev = makedev(a->rdev_major, a->rdev_minor);
    st->st_size = (off_t)a->size;
    st->st_blksize = 4096;
    /* what ext4 would report, so that du and ls -s match an unpacked tree: whole 4 KiB blocks
     * for data and directories, none for devices, fifos and short ("fast") symlinks */
    if (S_ISREG(a->mode) || S_ISDIR(a->mode) || (S_ISLNK(a->mode) && a->size >= 60))
        st->st_blocks = (blkcnt_t)((a->size + 4095) / 4096 * 8);
    st->st_mtim = (struct timespec){a->mtime_sec, a->mtime_nsec};
    st->st_atim = st->st_ctim = st->st_mtim;
}

/* Whether what the tree shows of ino is the word of an index since shown false
 * (store_layer_check: an atomic flag, and a look at the store at most every STORE_CHECK_NS).
 * Then every request that would show the entry (its attributes, link target, xattrs, listing)
 * fails with EIO, as its reads do; while the layer is merely unverified it is shown. The root is
 * spared: the mount point must stay reachable (stat, realpath) to be unmounted. */
static bool shown_false(struct mnt *m, uint64_t ino)
{
    uint32_t layer;
    return ino != FS_ROOT_INO && fs_tree_layer(m->t, ino, &layer) == 0 &&
           store_layer_check(m->layers[layer]) < 0;
}

static int entry_of(struct mnt *m, uint64_t ino, struct fuse_entry_param *e)
{
    struct fs_attr a;
    memset(e, 0, sizeof *e);
    e->attr_timeout = e->entry_timeout = TIMEOUT;
    if (fs_tree_getattr(m->t, ino, &a) < 0)
        return -ENOENT;
    e->ino = ino;
    e->generation = 1;
    to_stat(&a, &e->attr);
    return 0;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct mnt *m = userdata;
    /* Opens carry no state here (a read names its inode), so the kernel may skip open,
     * opendir and their releases: the first one answers ENOSYS and the kernel then keeps the
     * page cache and caches listings by itself (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR), two round
     * trips fewer for every file and directory opened. */
    m->no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
    m->no_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
    conn->max_write = MAX_REQUEST; /* this sets the largest read request too (max_pages) */
    conn->max_readahead = MAX_REQUEST;
    if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
        conn->want |= FUSE_CAP_CACHE_SYMLINKS;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    /* With ACLs in the image the kernel must know them: it checks permissions against them
     * (default_permissions) and caches each inode's, absent ones too. Without any, the mount
     * is a filesystem without ACLs (see op_getxattr). */
    if (m->acls && (conn->capable & FUSE_CAP_POSIX_ACL))
        conn->want |= FUSE_CAP_POSIX_ACL;
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct mnt *m = M(req);
    struct fuse_entry_param e;
    uint64_t ino;
    int rc = fs_tree_lookup(m->t, parent, name, &ino);
    if (rc == -ENOENT) { /* a negative entry, cached as long as the others */
        memset(&e, 0, sizeof e);
        e.entry_timeout = TIMEOUT;
        fuse_reply_entry(req, &e);
        return;
    }
    if (rc == 0)
        rc = shown_false(m, parent) || shown_false(m, ino) ? -EIO : entry_of(m, ino, &e);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    (void)ino, (void)nlookup; /* inodes live as long as the mount */
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    (void)count, (void)forgets;
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs_attr a;
    struct stat st;
    (void)fi;
    if (fs_tree_getattr(M(req)->t, ino, &a) < 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (shown_false(M(req), ino)) {
        fuse_reply_err(req, EIO);
        return;
    }
    to_stat(&a, &st);
    fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    const char *l = fs_tree_readlink(M(req)->t, ino);
    if (l && shown_false(M(req), ino))
        fuse_reply_err(req, EIO);
    else if (l)
        fuse_reply_readlink(req, l);
    else
        fuse_reply_err(req, EINVAL);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mnt *m = M(req);
    struct fs_attr a;
    int rc = fs_tree_getattr(m->t, ino, &a);
    if (rc < 0 || !S_ISDIR(a.mode)) {
        fuse_reply_err(req, rc < 0 ? ENOENT : ENOTDIR);
        return;
    }
    if (shown_false(m, ino)) {
        fuse_reply_err(req, EIO);
        return;
    }
    if (m->no_opendir) {
        fuse_reply_err(req, ENOSYS);
        return;
    }
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

/* Offsets: 0 is "." and 1 "..", entry i of the directory is i + 2; each entry carries the offset
 * of the one after it. */
static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
    struct mnt *m = M(req);
    if (shown_false(m, ino)) {
        fuse_reply_err(req, EIO);
        return;
    }
    char *buf = malloc(size ? size : 1);
    size_t used = 0;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    for (uint64_t i = (uint64_t)(off < 0 ? 0 : off);; i++) {
        const char *name;
        uint64_t child;
        if (i == 0) {
            name = ".";
            child = ino;
        } else if (i == 1) {
            name = "..";
            child = fs_tree_parent(m->t, ino);
        } else {
            int rc = fs_tree_dirent(m->t, ino, (uint32_t)MIN(i - 2, (uint64_t)UINT32_MAX), &name,
                                    &child);
            if (rc == -ENOENT)
                break;
            if (rc < 0) {
                free(buf);
                fuse_reply_err(req, -rc);
                return;
            }
        }
        size_t n;
        struct fuse_entry_param e;
        if (entry_of(m, child, &e) < 0)
            continue;
        if (plus) {
            /* "." and ".." are not lookups; an entry shown false is listed without the
             * attributes its index gave it (a later lookup of it fails) */
            if (i < 2 || shown_false(m, child))
                e.ino = 0, e.attr.st_ino = child;
            n = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)(i + 1));
        } else {
            n = fuse_add_direntry(req, buf + used, size - used, name, &e.attr, (off_t)(i + 1));
        }
        if (n > size - used)
            break;
        used += n;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    (void)fi;
    readdir_common(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    (void)fi;
    readdir_common(req, ino, size, off, true);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mnt *m = M(req);
    uint32_t layer;
    uint64_t off, size;
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (fs_tree_data(m->t, ino, &layer, &off, &size) < 0) {
        fuse_reply_err(req, fs_tree_count(m->t) < ino ? ENOENT : EISDIR);
        return;
    }
    if (m->no_open) {
        fuse_reply_err(req, ENOSYS);
        return;
    }
    fi->keep_cache = 1;
    TRACE("open ino=%llu size=%llu", (unsigned long long)ino, (unsigned long long)size);
    fuse_reply_open(req, fi);
}

static void read_done(void *arg, const struct iovec *iov, int iovcnt, ssize_t rc)
{
    fuse_req_t req = arg;
    TRACE("read_done %p rc=%zd", (void *)req, rc);
    if (rc < 0)
        fuse_reply_err(req, (int)-rc);
    else
        fuse_reply_iov(req, iov, iovcnt);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct mnt *m = M(req);
    uint32_t layer;
    uint64_t doff, fsize;
    (void)fi;
    if (fs_tree_data(m->t, ino, &layer, &doff, &fsize) < 0) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if (store_layer_check(m->layers[layer]) < 0) { /* its index was a peer's lie */
        fuse_reply_err(req, EIO);
        return;
    }
    uint64_t prev = __atomic_exchange_n(&m->next[ino], (uint64_t)off + size, __ATOMIC_RELAXED);
    /* sequential: near where the last read of this inode ended (the kernel's read-ahead sends
     * its requests from several threads, not always in order) */
    bool seq = off > 0 && prev && (uint64_t)off + MAX_REQUEST >= prev &&
               (uint64_t)off <= prev + 2 * (uint64_t)MAX_REQUEST;
    TRACE("read %p ino=%llu off=%lld size=%zu layer=%u doff=%llu", (void *)req,
          (unsigned long long)ino, (long long)off, size, layer, (unsigned long long)(doff + off));
    fs_cache_read_async(m->c, layer, doff, fsize, (uint64_t)off, size, seq, read_done, req);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct mnt *m = M(req);
    struct statvfs sv = {0};
    (void)ino;
    sv.f_bsize = sv.f_frsize = 4096;
    sv.f_blocks = (m->total_bytes + 4095) / 4096;
    sv.f_files = fs_tree_count(m->t);
    sv.f_namemax = 255;
    sv.f_flag = ST_RDONLY;
    fuse_reply_statfs(req, &sv);
}

static bool is_acl(const char *name)
{
    return !strcmp(name, "system.posix_acl_access") || !strcmp(name, "system.posix_acl_default");
}

/* which of the xattrs the kernel never caches for FUSE the image has at all */
static void scan_xattrs(struct mnt *m)
{
    const char *n;
    const uint8_t *v;
    size_t len;
    for (uint64_t ino = 1; ino <= fs_tree_count(m->t); ino++)
        for (uint32_t j = 0; fs_tree_xattr(m->t, ino, j, &n, &v, &len) == 0; j++) {
            m->acls |= is_acl(n);
            m->labels |= !strcmp(n, "security.selinux");
        }
}

/* An image with no ACLs, or no SELinux labels, is mounted as a filesystem that does not
 * support them: asking for one gets EOPNOTSUPP, not ENODATA. Both mean "none" to every tool, but
 * EOPNOTSUPP is remembered (ls -l, cp -a and libselinux ask once per filesystem instead of once
 * per file), and the kernel caches no xattr of a FUSE filesystem, so each ask would be a round
 * trip here. */
static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct mnt *m = M(req);
    const char *n;
    const uint8_t *v;
    size_t len;
    if (shown_false(m, ino)) {
        fuse_reply_err(req, EIO);
        return;
    }
    if ((!m->acls && is_acl(name)) || (!m->labels && !strcmp(name, "security.selinux"))) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    for (uint32_t j = 0; fs_tree_xattr(m->t, ino, j, &n, &v, &len) == 0; j++) {
        if (strcmp(n, name))
            continue;
        if (size == 0)
            fuse_reply_xattr(req, len);
        else if (size < len)
            fuse_reply_err(req, ERANGE);
        else
            fuse_reply_buf(req, (const char *)v, len);
        return;
    }
    fuse_reply_err(req, ENODATA);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct mnt *m = M(req);
    const char *n;
    const uint8_t *v;
    size_t len, total = 0;
    if (shown_false(m, ino)) {
        fuse_reply_err(req, EIO);
        return;
    }
    for (uint32_t j = 0; fs_tree_xattr(m->t, ino, j, &n, &v, &len) == 0; j++)
        total += strlen(n) + 1;
    if (size == 0) {
        fuse_reply_xattr(req, total);
        return;
    }
    if (size < total) {
        fuse_reply_err(req, ERANGE);
        return;
    }
    char *buf = malloc(total ? total : 1), *p = buf;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    for (uint32_t j = 0; fs_tree_xattr(m->t, ino, j, &n, &v, &len) == 0; j++) {
        size_t k = strlen(n) + 1;
        memcpy(p, n, k);
        p += k;
    }
    fuse_reply_buf(req, buf, total);
    free(buf);
}

/* ---- everything that would write ----------------------------------------------------------- */

static void rofs(fuse_req_t req)
{
    fuse_reply_err(req, EROFS);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    (void)ino, (void)attr, (void)to_set, (void)fi;
    rofs(req);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    (void)parent, (void)name, (void)mode, (void)rdev;
    rofs(req);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    (void)parent, (void)name, (void)mode;
    rofs(req);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    (void)parent, (void)name;
    rofs(req);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link, (void)parent, (void)name;
    rofs(req);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    (void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
    rofs(req);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    (void)ino, (void)newparent, (void)newname;
    rofs(req);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)ino, (void)buf, (void)size, (void)off, (void)fi;
    rofs(req);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    (void)ino, (void)name, (void)value, (void)size, (void)flags;
    rofs(req);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    (void)ino, (void)name;
    rofs(req);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    (void)parent, (void)name, (void)mode, (void)fi;
    rofs(req);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
    (void)ino, (void)mode, (void)offset, (void)length, (void)fi;
    rofs(req);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .open = op_open,
    .read = op_read,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .write = op_write,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
    .create = op_create,
    .fallocate = op_fallocate,
};

/* ---- serving ------------------------------------------------------------------------------- */

struct background {
    struct fs_tree *t;
    struct fs_cache *c;
    struct store_layer *const *layers;
    size_t nlayers;
    const struct fs_mount_opts *o;
    bool stop; /* atomic */
};

static bool stopping(struct background *bg)
{
    return __atomic_load_n(&bg->stop, __ATOMIC_RELAXED);
}

/* Resolves a path in the tree without following symlinks. Returns the inode or 0. */
static uint64_t resolve(const struct fs_tree *t, char *path)
{
    uint64_t ino = FS_ROOT_INO;
    for (char *save = NULL, *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, "."))
            continue;
        if (fs_tree_lookup(t, ino, c, &ino) < 0)
            return 0;
    }
    return ino;
}

/* --prefetch: the listed files, in order, into the prefetch zone; waits whenever half the zone
 * is queued so that later files do not push out earlier ones before they are read. */
static void prefetch_list(struct background *bg)
{
    FILE *f = fopen(bg->o->prefetch_file, "r");
    char line[4096];
    uint64_t queued = 0, total = 0, files = 0;
    struct fs_cache_stats st;
    if (!f) {
        log_warn("prefetch: cannot open %s: %s", bg->o->prefetch_file, strerror(errno));
        return;
    }
    fs_cache_stats(bg->c, &st);
    uint64_t zone =
        st.mem_max * (bg->o->cache.prefetch_share ? bg->o->cache.prefetch_share : 25) / 100;
    while (!stopping(bg) && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        uint64_t ino = resolve(bg->t, line), off, size;
        uint32_t layer;
        if (!ino || fs_tree_data(bg->t, ino, &layer, &off, &size) < 0)
            continue; /* not a regular file in this image */
        if (total + size > zone)
            break; /* the rest would only push out what was prefetched */
        fs_cache_prefetch(bg->c, layer, off, size);
        files++;
        queued += size;
        total += size;
        if (queued > zone / 2) {
            fs_cache_drain(bg->c);
            queued = 0;
        }
    }
    fclose(f);
    fs_cache_drain(bg->c);
    log_info("prefetch: %llu files, %llu bytes decoded ahead", (unsigned long long)files,
             (unsigned long long)total);
}

static void *background_main(void *arg)
{
    struct background *bg = arg;
    if (bg->o->prefetch_file)
        prefetch_list(bg);
    if (bg->o->preload) {
        /* in slices, so that an unmount does not wait for a whole layer */
        for (size_t k = 0; k < bg->nlayers && !stopping(bg); k++) {
            uint64_t size = store_layer_size(bg->layers[k]);
            for (uint64_t off = 0; off < size && !stopping(bg); off += 64u << 20) {
                int rc = store_layer_fetch(bg->layers[k], off, MIN(64ull << 20, size - off));
                if (rc < 0) {
                    log_error("preload: layer %zu: %s", k, err_msg(rc));
                    break;
                }
            }
        }
        log_info("preload: done");
    }
    return NULL;
}

/* Layers whose index was a peer's are watched: once one is shown false (completed and replaced
 * with the index its blob gives), the kernel forgets what it cached of every entry the layer
 * gives (attributes, pages, symlink targets, listings), so that every later getattr, readlink
 * and read of them comes here and fails (shown_false, op_read). The root is spared, as in
 * shown_false. */
struct watch {
    struct mnt *m;
    struct fuse_session *se;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

static void *watch_main(void *arg)
{
    struct watch *w = arg;
    bool *dead = calloc(w->m->nlayers, sizeof *dead);
    pthread_mutex_lock(&w->mu);
    while (!w->stop && dead) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->stop)
            break;
        pthread_mutex_unlock(&w->mu);
        for (size_t k = 0; k < w->m->nlayers; k++) {
            if (dead[k] || store_layer_check(w->m->layers[k]) == 0)
                continue;
            dead[k] = true;
            log_error("layer %zu: %s; its entries now fail with EIO", k, err_msg(AFSP_E_DIGEST));
            for (uint64_t ino = FS_ROOT_INO + 1; ino <= fs_tree_count(w->m->t); ino++) {
                uint32_t layer;
                if (fs_tree_layer(w->m->t, ino, &layer) == 0 && layer == k)
                    fuse_lowlevel_notify_inval_inode(w->se, ino, 0, 0);
            }
        }
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    free(dead);
    return NULL;
}

/* The kernel's read-ahead for a FUSE mount is its backing device's, 128 KiB by default: raise it
 * to the request size so that a sequential reader costs a quarter of the round trips (root
 * only; without it reads still work). The device number comes from the mount table: a stat of
 * the mount point would be a request to this very process, which is not serving yet. */
static void raise_readahead(const char *mountpoint)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096], mp[4096], dev[32] = "";
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%*s %*s %31s %*s %4095s", dev, mp) == 2 && !strcmp(mp, mountpoint))
            break;
        else
            dev[0] = 0;
    fclose(f);
    if (!dev[0] || strchr(dev, '/'))
        return;
    snprintf(line, sizeof line, "/sys/class/bdi/%s/read_ahead_kb", dev);
    if ((f = fopen(line, "w"))) {
        fprintf(f, "%u\n", MAX_REQUEST >> 10);
        fclose(f);
    }
}

/* As root, the mount is a root filesystem like any other: other users, setuid and devices. */
static int make_args(struct fuse_args *args, const struct fs_mount_opts *o)
{
    char opts[1024], name[256];
    size_t j = 0;
    for (const char *p = o->fsname ? o->fsname : "afsp"; *p && j < sizeof name - 1; p++)
        if (*p != ',' && *p != '\\' && (unsigned char)*p > ' ')
            name[j++] = *p; /* the option string's separators cannot be in it */
    name[j] = 0;
    snprintf(opts, sizeof opts, "ro,default_permissions,fsname=%s,subtype=afsp%s", name,
             geteuid() == 0 ? ",allow_other,suid,dev" : "");
    if (fuse_opt_add_arg(args, "afsp") || fuse_opt_add_arg(args, "-o") ||
        fuse_opt_add_arg(args, opts))
        return -ENOMEM;
    return 0;
}

int fs_serve(struct store_layer *const *layers, size_t n, const struct fs_mount_opts *o)
{
    struct mnt m = {0};
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_session *se = NULL;
    struct fuse_loop_config *cfg = NULL;
    struct background bg = {.layers = layers, .nlayers = n, .o = o};
    pthread_t bgt;
    bool bg_running = false, mounted = false, handlers = false;
    size_t skipped = 0;
    int rc;

    struct watch wa = {.m = &m, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t wt;
    bool watching = false;
    m.layers = layers;
    m.nlayers = n;
    for (size_t k = 0; k < n; k++)
        m.total_bytes += store_layer_size(layers[k]);
    if ((rc = fs_tree_build(&m.t, layers, n, &skipped)) < 0) {
        err_ctx(rc, "building the image tree");
        goto out;
    }
    scan_xattrs(&m);
    TRACE("tree built");
    if ((rc = fs_cache_new(&m.c, layers, n, &o->cache)) < 0)
        goto out;
    if (!(m.next = calloc(fs_tree_count(m.t) + 1, sizeof *m.next))) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = make_args(&args, o)) < 0)
        goto out;
    if (!(se = fuse_session_new(&args, &ops, sizeof ops, &m))) {
        rc = err_set(AFSP_E_USAGE, "cannot start a FUSE session");
        goto out;
    }
    if (fuse_set_signal_handlers(se) != 0) {
        rc = err_set(-errno, "cannot set signal handlers");
        goto out;
    }
    handlers = true;
    TRACE("session made");
    /* unmounting the same path works too: umount2 follows a magic link, then the mount on it */
    if (fuse_session_mount(se, o->mount_at ? o->mount_at : o->mountpoint) != 0) {
        rc = err_set(-EIO, "cannot mount on %s (is /dev/fuse there, and fusermount3?)",
                     o->mountpoint);
        goto out;
    }
    mounted = true;
    raise_readahead(o->mountpoint);
    TRACE("mount ready");
    if (o->ready_fd >= 0) {
        ssize_t w = write(o->ready_fd, "ok\n", 3);
        (void)w;
        close(o->ready_fd);
    }
    bg.t = m.t;
    bg.c = m.c;
    if ((o->prefetch_file || o->preload) && pthread_create(&bgt, NULL, background_main, &bg) == 0)
        bg_running = true;
    wa.se = se;
    for (size_t k = 0; k < n && !watching; k++)
        if (!store_layer_index_built(layers[k]))
            watching = pthread_create(&wt, NULL, watch_main, &wa) == 0;
    if (!(cfg = fuse_loop_cfg_create())) {
        rc = -ENOMEM;
        goto out;
    }
    fuse_loop_cfg_set_clone_fd(cfg, 1);
    fuse_loop_cfg_set_idle_threads(cfg, 4);
    fuse_loop_cfg_set_max_threads(cfg, 16);
    rc = fuse_session_loop_mt(se, cfg);
    if (rc > 0) /* a signal ended it: a clean exit */
        rc = 0;
    else if (rc < 0)
        rc = err_set(rc, "serving the mount");
out:
    __atomic_store_n(&bg.stop, true, __ATOMIC_RELAXED);
    if (bg_running)
        pthread_join(bgt, NULL);
    if (watching) {
        pthread_mutex_lock(&wa.mu);
        wa.stop = true;
        pthread_cond_signal(&wa.cv);
        pthread_mutex_unlock(&wa.mu);
        pthread_join(wt, NULL);
    }
    /* reads still being decoded reply on the session: let them finish before it goes */
    if (m.c)
        fs_cache_drain(m.c);
    if (mounted)
        fuse_session_unmount(se);
    if (handlers)
        fuse_remove_signal_handlers(se);
    if (se)
        fuse_session_destroy(se);
    if (cfg)
        fuse_loop_cfg_destroy(cfg);
    fuse_opt_free_args(&args);
    if (m.c) {
        struct fs_cache_stats st;
        fs_cache_stats(m.c, &st);
        log_info("unmounted %s: %llu reads (%llu bytes), %llu pieces hit, %llu missed, "
                 "%llu bytes decoded (%.1f%% of the image), %llu pieces prefetched, %llu evicted, "
                 "%llu errors",
                 o->mountpoint, (unsigned long long)st.reads, (unsigned long long)st.read_bytes,
                 (unsigned long long)st.hits, (unsigned long long)st.misses,
                 (unsigned long long)st.decoded_bytes,
                 m.total_bytes ? 100.0 * (double)st.decoded_bytes / (double)m.total_bytes : 0.0,
                 (unsigned long long)st.prefetched, (unsigned long long)st.evicted,
                 (unsigned long long)st.errors);
    }
    fs_cache_free(m.c);
    fs_tree_free(m.t);
    free(m.next);
    return rc;
}
