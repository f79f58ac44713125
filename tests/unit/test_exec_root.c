/*
 * test_exec_root.c - a job's root (exec/root.c) with real mounts: the image's files read through
 * the overlay, the job's writes in its own scratch and never in the image, a write past the
 * scratch's size refused with ENOSPC, two jobs not seeing each other's files, and nothing left
 * mounted or on disk once removed.
 */
#include "../../exec/exec.h"
#include "../../util/util.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool reads(const char *path, const char *text)
{
    char buf[256];
    return test_slurp(path, buf, sizeof buf) && !strcmp(buf, text);
}

/* Writes n bytes to path; returns 0 or the errno of the write or close that failed. */
static int write_bytes(const char *path, size_t n)
{
    static char block[65536];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return errno;
    int err = 0;
    for (size_t done = 0; !err && done < n;) {
        ssize_t k = write(fd, block, MIN(sizeof block, n - done));
        if (k < 0)
            err = errno;
        else
            done += (size_t)k;
    }
    if (close(fd) < 0 && !err)
        err = errno;
    return err;
}

TEST(exec_a_job_s_root_is_the_image_under_its_own_bounded_scratch)
{
    char top[256], img[300], j1[300], j2[300], p[400], q[400];
    snprintf(top, sizeof top, "%s", test_tmpdir());
    snprintf(img, sizeof img, "%s/image", top);
    snprintf(j1, sizeof j1, "%s/job1", top);
    snprintf(j2, sizeof j2, "%s/job2", top);
    CHECK(mkdir(img, 0755) == 0 && mkdir(j1, 0700) == 0 && mkdir(j2, 0700) == 0);
    snprintf(p, sizeof p, "%s/etc", img);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/etc/os-release", img);
    test_put(p, NULL, "image");
    CHECK(chmod(img, 0555) == 0); /* as a read-only mount is */

    CHECK(exec_root_make(j1, img, 1u << 20) == 0);
    CHECK(exec_root_make(j2, img, 1u << 20) == 0);
    snprintf(p, sizeof p, "%s/rootfs/etc/os-release", j1);
    CHECK(reads(p, "image"));
    /* a job changes an image file and adds one: in its scratch, not in the image */
    test_put(p, NULL, "job1");
    CHECK(reads(p, "job1"));
    snprintf(q, sizeof q, "%s/etc/os-release", img);
    CHECK(reads(q, "image"));
    snprintf(q, sizeof q, "%s/scratch/up/etc/os-release", j1);
    CHECK(reads(q, "job1"));
    snprintf(p, sizeof p, "%s/rootfs/new", j1);
    test_put(p, NULL, "mine");
    snprintf(q, sizeof q, "%s/new", img);
    CHECK(access(q, F_OK) < 0 && errno == ENOENT);
    /* the other job sees the image, not job 1's files */
    snprintf(q, sizeof q, "%s/rootfs/etc/os-release", j2);
    CHECK(reads(q, "image"));
    snprintf(q, sizeof q, "%s/rootfs/new", j2);
    CHECK(access(q, F_OK) < 0 && errno == ENOENT);
    /* past its scratch: ENOSPC, and the other job can still write */
    snprintf(p, sizeof p, "%s/rootfs/big", j1);
    CHECK_INT(write_bytes(p, 2u << 20), ==, ENOSPC);
    snprintf(q, sizeof q, "%s/rootfs/small", j2);
    CHECK_INT(write_bytes(q, 512u << 10), ==, 0);

    /* removed: nothing mounted, nothing left but the empty job directories */
    CHECK(exec_root_remove(j1) == 0 && exec_root_remove(j2) == 0);
    CHECK(!test_mounted_under(top));
    snprintf(p, sizeof p, "%s/rootfs", j1);
    CHECK(access(p, F_OK) < 0 && errno == ENOENT);
    snprintf(p, sizeof p, "%s/scratch", j2);
    CHECK(access(p, F_OK) < 0 && errno == ENOENT);
    CHECK(exec_root_remove(j1) == 0); /* again: harmless */
    snprintf(q, sizeof q, "%s/etc/os-release", img);
    CHECK(reads(q, "image"));

    /* paths overlayfs cannot take, no scratch, a lower that is not there: refused, nothing
     * left behind */
    CHECK(exec_root_make(j1, "relative/image", 1u << 20) == AFSP_E_USAGE);
    CHECK(exec_root_make(j1, "/a,lowerdir=/etc", 1u << 20) == AFSP_E_USAGE);
    CHECK(exec_root_make(j1, "/a:b", 1u << 20) == AFSP_E_USAGE);
    CHECK(exec_root_make(j1, img, 0) == AFSP_E_USAGE);
    snprintf(q, sizeof q, "%s/missing", top);
    CHECK(exec_root_make(j1, q, 1u << 20) == -ENOENT);
    CHECK(!test_mounted_under(top));
    snprintf(p, sizeof p, "%s/rootfs", j1);
    CHECK(access(p, F_OK) < 0 && errno == ENOENT);

    CHECK(chmod(img, 0755) == 0); /* for the runner's removal */
}

TEST(exec_a_volume_never_shows_the_node_s_own_data)
{
    const char *t = test_tmpdir();
    char data[300], keys[300], models[300], p[400], q[400], r[PATH_MAX];
    snprintf(data, sizeof data, "%s/data", t);
    snprintf(keys, sizeof keys, "%s/keys", t);
    snprintf(models, sizeof models, "%s/models", t);
    CHECK(mkdir(data, 0700) == 0 && mkdir(keys, 0700) == 0 && mkdir(models, 0755) == 0);
    snprintf(p, sizeof p, "%s/blobs", data);
    CHECK(mkdir(p, 0700) == 0);
    const char *private[] = {data, keys};
    CHECK(exec_volume_allowed(models, private, 2, r) == 0);
    CHECK_STR(r, models);
    /* the data directory, inside it, or holding it (its parent, /) */
    CHECK(exec_volume_allowed(data, private, 2, r) == AFSP_E_USAGE);
    CHECK(exec_volume_allowed(p, private, 2, r) == AFSP_E_USAGE);
    CHECK(exec_volume_allowed(t, private, 2, r) == AFSP_E_USAGE);
    CHECK(exec_volume_allowed("/", private, 2, r) == AFSP_E_USAGE);
    /* by a link, or by "..": resolved first */
    snprintf(q, sizeof q, "%s/models/innocent", t);
    CHECK(symlink(data, q) == 0);
    CHECK(exec_volume_allowed(q, private, 2, r) == AFSP_E_USAGE);
    snprintf(q, sizeof q, "%s/models/../keys", t);
    CHECK(exec_volume_allowed(q, private, 2, r) == AFSP_E_USAGE);
    /* a name that only starts like it is not inside it; a link to it resolves to it, and the
     * resolved path is the one to bind */
    snprintf(q, sizeof q, "%s/data-public", t);
    CHECK(mkdir(q, 0755) == 0);
    CHECK(exec_volume_allowed(q, private, 2, r) == 0);
    snprintf(p, sizeof p, "%s/models/public", t);
    CHECK(symlink(q, p) == 0);
    CHECK(exec_volume_allowed(p, private, 2, r) == 0);
    CHECK_STR(r, q);
    /* what does not exist cannot be checked */
    snprintf(q, sizeof q, "%s/missing", t);
    CHECK(exec_volume_allowed(q, private, 2, r) == -ENOENT);
}
