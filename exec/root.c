/*
 * root.c - a job's root file system (docs/exec.md, "The root"): the image's read-only mount as
 * an overlay's lower layer, and the job's writes in an upper layer on a tmpfs of the size the
 * job asked for (--scratch-size), so that jobs write freely, each in its own layer, and the
 * image stays shared and unchanged. Checked by hand first: overlayfs takes afsp's FUSE mount as
 * a lower layer, and a write past the tmpfs's size fails with ENOSPC inside the job.
 *
 * Owns the mounts under the job's directory until exec_root_remove.
 */
#include "exec.h"

#include "../util/util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_LEN 4096

/* A path overlayfs's option string can carry as it is. */
static bool plain_path(const char *p)
{
    return p && *p == '/' && !strpbrk(p, ",:\\") && strlen(p) < PATH_LEN - 64;
}

static int sub(char out[static PATH_LEN], const char *dir, const char *name)
{
    return snprintf(out, PATH_LEN, "%s/%s", dir, name) < PATH_LEN ? 0 : AFSP_E_USAGE;
}

int exec_root_make(const char *dir, const char *lower, uint64_t scratch)
{
    char s[PATH_LEN], up[PATH_LEN], wk[PATH_LEN], root[PATH_LEN], opts[4 * PATH_LEN];
    if (!plain_path(dir) || !plain_path(lower) || !scratch)
        return err_set(AFSP_E_USAGE, "a job's root: %s or %s is not a path overlayfs takes", dir,
                       lower);
    if (sub(s, dir, "scratch") || sub(up, s, "up") || sub(wk, s, "work") ||
        sub(root, dir, "rootfs"))
        return AFSP_E_USAGE;
    snprintf(opts, sizeof opts, "size=%llu,mode=0755", (unsigned long long)scratch);
    int rc = 0;
    if (mkdir(s, 0700) < 0 || mkdir(root, 0755) < 0)
        rc = err_set(-errno, "cannot make %s's directories", dir);
    else if (mount("tmpfs", s, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        rc = err_set(-errno, "cannot mount a %llu-byte tmpfs for a job's scratch",
                     (unsigned long long)scratch);
    else if (mkdir(up, 0755) < 0 || mkdir(wk, 0700) < 0)
        rc = err_set(-errno, "cannot make the overlay's directories in %s", s);
    if (rc == 0) {
        snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, up, wk);
        if (mount("overlay", root, "overlay", MS_NOSUID | MS_NODEV, opts) < 0)
            rc = err_set(-errno, "cannot mount the overlay of %s for a job", lower);
    }
    if (rc < 0)
        exec_root_remove(dir);
    return rc;
}

/* Unmounts path if it is a mount point (lazily if busy); then removes the directory. */
static int unmount_rmdir(const char *path)
{
    int rc = 0;
    if (umount2(path, 0) < 0 && errno == EBUSY && umount2(path, MNT_DETACH) < 0)
        rc = err_set(-errno, "cannot unmount %s", path);
    if (rmdir(path) < 0 && errno != ENOENT && rc == 0)
        rc = err_set(-errno, "cannot remove %s", path);
    return rc;
}

int exec_root_remove(const char *dir)
{
    char s[PATH_LEN], root[PATH_LEN];
    if (sub(s, dir, "scratch") || sub(root, dir, "rootfs"))
        return AFSP_E_USAGE;
    int rc = unmount_rmdir(root); /* the overlay first: it holds the scratch's directories */
    int rc2 = unmount_rmdir(s);   /* with the tmpfs go the upper and work directories */
    return rc ? rc : rc2;
}

/* Whether path a is b or below it (both resolved). */
static bool within(const char *a, const char *b)
{
    size_t n = strlen(b);
    if (n == 1) /* "/" holds everything */
        return true;
    return !strncmp(a, b, n) && (a[n] == 0 || a[n] == '/');
}

int exec_volume_allowed(const char *src, const char *const *private, size_t n,
                        char s[static PATH_MAX])
{
    char p[PATH_MAX];
    if (!realpath(src, s))
        return err_set(-errno, "volume %s", src);
    for (size_t i = 0; i < n; i++) {
        if (!realpath(private[i], p))
            return err_set(-errno, "%s", private[i]);
        if (within(s, p) || within(p, s))
            return err_set(AFSP_E_USAGE, "volume %s: it would show the node's own %s to the job",
                           src, p);
    }
    return 0;
}
