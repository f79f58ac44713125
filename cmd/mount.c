/*
 * mount.c - `afsp mount IMAGE DIR` and `afsp umount DIR`.
 *
 * mount checks DIR and the image first (pulling it if the store lacks it, with progress), then
 * starts the mount process: a child in its own session that opens the store, builds the tree,
 * mounts, and tells the waiting parent "ok" through a pipe, so that `afsp mount` returns once
 * the mount is ready and the mount outlives it. The child's output goes to
 * DATA/mounts/ID.log and its pid to DATA/mounts/ID.pid (ID: a hash of the mount point), which
 * `afsp umount` uses to wait for it to finish. With --foreground the command is the mount
 * process. Either way SIGTERM, SIGINT and SIGHUP unmount and exit cleanly.
 */
#include "cmd.h"

#include "../fs/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

const struct command cmd_mount_def = {
    "mount", cmd_mount, "show an image as a read-only root filesystem (FUSE)",
    "[--foreground] [--prefetch FILE] [--preload] [--verified] [--no-trace]\n"
    "       [--cache-mem N] [--node-wait SECONDS] [--platform P]\n"
    "       [--insecure-registry HOST]... IMAGE DIR\n"
    "\n"
    "Mounts IMAGE on DIR (an existing, empty directory) as a read-only filesystem equal to\n"
    "the image unpacked, and returns once the mount is ready. Only the bytes programs read\n"
    "are decompressed. If the store lacks IMAGE it is pulled first (options as for pull).\n"
    "\n"
    "  --foreground     stay in front and serve until unmounted or signalled\n"
    "  --prefetch FILE  read the files listed in FILE (one path per line) ahead, in order\n"
    "  --preload        fetch and verify every chunk of the image in the background\n"
    "  --no-trace       neither fetch ahead what the image's first cold start in the\n"
    "                   cluster read (its start trace), nor record one\n"
    "  --verified       mount only once every layer is whole and checked against its\n"
    "                   digest (no lazy reads: nothing shown is a peer's word)\n"
    "  --cache-mem N    memory for decompressed data, e.g. 512M (default 256M)\n"
    "  --node-wait SECONDS\n"
    "                   how long a read that needs the node waits for it, if it is\n"
    "                   stopped or restarting, before it fails with EIO (default 120)\n"
    "\n"
    "The mount process logs to DATA/mounts/. Unmount with `afsp umount DIR`.\n",
    false};

const struct command cmd_umount_def = {
    "umount", cmd_umount, "unmount an image mounted by afsp mount",
    "DIR\n"
    "\n"
    "Unmounts the afsp mount on DIR and waits for its mount process to exit.\n",
    false};

struct mount_args {
    const char *ref, *dir, *prefetch;
    bool foreground, preload, verified, no_trace;
    uint64_t cache_mem;
    unsigned long long node_wait_s;
    struct pull_args pa;
    char mountpoint[PATH_MAX];
    int dir_fd; /* the directory checked, mounted on through /proc/self/fd: never by path */
};

/* Whether something is mounted on path; its filesystem type goes into fstype. */
static bool mounted_at(const char *path, char fstype[static 64])
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char *line = NULL;
    size_t n = 0;
    bool found = false;
    if (!f)
        return false;
    while (getline(&line, &n, f) > 0) {
        /* id parent major:minor root mountpoint options [optional...] - fstype source super */
        char mp[PATH_MAX], *dash = strstr(line, " - ");
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 || !dash)
            continue;
        /* the kernel escapes space, tab, newline and backslash as \ooo */
        char un[PATH_MAX];
        size_t j = 0;
        for (size_t i = 0; mp[i] && j < sizeof un - 1; i++) {
            if (mp[i] == '\\' && mp[i + 1] && mp[i + 2] && mp[i + 3]) {
                un[j++] = (char)strtol((char[]){mp[i + 1], mp[i + 2], mp[i + 3], 0}, NULL, 8);
                i += 3;
            } else {
                un[j++] = mp[i];
            }
        }
        un[j] = 0;
        if (!strcmp(un, path)) {
            found = true;
            sscanf(dash + 3, "%63s", fstype);
        }
    }
    free(line);
    fclose(f);
    return found;
}

/* The mount point is opened once, checked through that descriptor, and mounted on through it
 * (/proc/self/fd/N): a user who can write its parent cannot swap it for a symlink between the
 * check and root's mount. Not close-on-exec: fusermount3, for a mount that is not root's, must
 * see it too. */
static int check_mountpoint(struct mount_args *a)
{
    struct stat st, pst;
    a->dir_fd = open(a->dir, O_RDONLY | O_DIRECTORY);
    if (a->dir_fd < 0)
        return die("cannot mount on %s: %s", a->dir,
                   errno == ENOTDIR ? "not a directory" : strerror(errno));
    if (fstat(a->dir_fd, &st) < 0)
        return die("cannot mount on %s: %s", a->dir, strerror(errno));
    /* gone from its path since it was opened (renamed, say, on the way to a symlink) is a
     * change too */
    bool gone = !realpath(a->dir, a->mountpoint) || stat(a->mountpoint, &pst) < 0;
    if (gone && errno != ENOENT && errno != ENOTDIR)
        return die("cannot mount on %s: %s", a->dir, strerror(errno));
    if (gone || pst.st_dev != st.st_dev || pst.st_ino != st.st_ino)
        return die("cannot mount on %s: it changed while it was checked", a->dir);
    char fstype[64];
    if (mounted_at(a->mountpoint, fstype))
        return die("cannot mount on %s: something is already mounted there", a->dir);
    int dfd = dup(a->dir_fd);
    DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return die("cannot mount on %s: %s", a->dir, strerror(errno));
    }
    struct dirent *e;
    while ((e = readdir(d)) && (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")))
        ;
    closedir(d);
    if (e)
        return die("cannot mount on %s: the directory is not empty", a->dir);
    return 0;
}

/* DATA/mounts/ID.EXT for the mount point. */
static void state_path(const char *mountpoint, const char *ext, char *out, size_t cap)
{
    uint8_t h[DIGEST_LEN];
    char hex[2 * DIGEST_LEN + 1];
    sha256_buf(mountpoint, strlen(mountpoint), h);
    hex_fmt(h, 8, hex);
    snprintf(out, cap, "%s/mounts/%s.%s", data_dir(), hex, ext);
}

/* Finds the image in the store, pulling it if it is not there. With a node on the data
 * directory the pull is the node's and lazy: layers a peer has are added in part, and their
 * chunks come as they are read. Without one every layer must be whole. */
static int find_image(struct mount_args *a, struct image_info *ii)
{
    struct store *s;
    int fd = node_client_connect(data_dir());
    if (open_store(&s, false)) {
        if (fd >= 0)
            close(fd);
        return 1;
    }
    int rc = store_image_find(s, a->ref, ii);
    size_t have = rc < 0        ? 0
                  : a->verified ? ii->nlayers_verified
                  : fd >= 0     ? ii->nlayers_present
                                : ii->nlayers_complete;
    if (rc == 0 && have < ii->nlayers) {
        free(ii->layers); /* some layers were evicted, or are partial, or not verified */
        rc = AFSP_E_NOTFOUND;
    }
    if (rc == AFSP_E_NOTFOUND && fd >= 0) {
        uint8_t d[DIGEST_LEN];
        int st = pull_via_node(fd, a->ref, &a->pa, !a->verified, d); /* closes fd */
        fd = -1;
        if (st) {
            store_close(s);
            return 1;
        }
        rc = store_image_find(s, a->ref, ii);
    } else if (rc == AFSP_E_NOTFOUND) {
        uint8_t d[DIGEST_LEN];
        if ((rc = pull_run(s, a->ref, &a->pa, d)) == 0)
            rc = store_image_find(s, a->ref, ii);
    }
    if (fd >= 0)
        close(fd);
    store_close(s);
    if (rc < 0)
        return die("cannot mount %s: %s", a->ref, err_msg(rc));
    if (a->verified && ii->nlayers_verified < ii->nlayers) {
        free(ii->layers);
        return die("cannot mount %s --verified: %zu of its %zu layers are not verified", a->ref,
                   ii->nlayers - ii->nlayers_verified, ii->nlayers);
    }
    return 0;
}

/* The mount process: opens the store and the image (its partial layers' chunks asked of the
 * node on the data directory) and serves until unmounted. */
static int serve(struct mount_args *a, int ready_fd)
{
    struct store *s;
    struct fs_image im = {0};
    struct node_fetcher *nf = NULL;
    struct node_prefetch *pre = NULL;
    char pidf[PATH_MAX + 64];
    int ret = 1;

    TRACE("mount serving");
    if (open_store(&s, false))
        return 1;
    TRACE("mount store open");
    struct image_info ii;
    char ref[sizeof ii.ref + DIGEST_STR_LEN + 2], dg[DIGEST_STR_LEN + 1];
    int rc = store_image_find(s, a->ref, &ii);
    if (rc == 0) {
        /* the manifest mounted, by digest: the node's registry fallback and verification get
         * these layers even if the tag has moved since */
        snprintf(ref, sizeof ref, "%s%s%s", ii.ref, strchr(ii.ref, '@') ? "" : "@",
                 strchr(ii.ref, '@') ? "" : digest_fmt(ii.manifest_digest, dg));
        rc = node_fetcher_new(&nf, data_dir(), ref, a->pa.insecure, a->node_wait_s * 1000);
        free(ii.layers);
    }
    if (rc == 0) {
        store_set_fetcher(s, node_fetcher_fetch, nf);
        rc = fs_image_open(s, a->ref, &im);
        TRACE("image open rc=%d", rc);
    }
    if (rc < 0) {
        die("cannot mount %s: %s", a->ref, err_msg(rc));
        goto out;
    }
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/mounts", data_dir());
    mkdir(dir, 0700);
    state_path(a->mountpoint, "pid", pidf, sizeof pidf);
    FILE *pf = fopen(pidf, "w");
    if (pf) {
        fprintf(pf, "%d %s\n", (int)getpid(), a->mountpoint);
        fclose(pf);
    }
    char at[64];
    snprintf(at, sizeof at, "/proc/self/fd/%d", a->dir_fd);
    struct fs_mount_opts o = {.mountpoint = a->mountpoint,
                              .mount_at = at,
                              .fsname = im.info.ref,
                              .prefetch_file = a->prefetch,
                              .preload = a->preload,
                              .ready_fd = ready_fd,
                              .cache = {.mem_bytes = a->cache_mem}};
    if (log_level < LOG_INFO)
        log_level = LOG_INFO;
    /* the start trace: fetched ahead, or recorded (a mount with no node gets no answer) */
    if (!a->no_trace && !a->verified &&
        (rc = node_prefetch_start(&pre, nf, s, data_dir(), im.info.manifest_digest, im.layers,
                                  (const uint8_t(*)[DIGEST_LEN])im.info.layers, im.info.nlayers)) <
            0)
        log_warn("no start trace: %s", err_str(rc));
    rc = fs_serve(im.layers, im.info.nlayers, &o);
    node_prefetch_stop(pre);
    unlink(pidf);
    if (rc < 0)
        die("cannot mount %s on %s: %s", a->ref, a->dir, err_msg(rc));
    else
        ret = 0;
out:
    fs_image_close(&im);
    store_close(s);
    node_fetcher_free(nf);
    return ret;
}

static int daemonize(struct mount_args *a)
{
    char logf[PATH_MAX + 64], dir[PATH_MAX + 16];
    int p[2];
    snprintf(dir, sizeof dir, "%s/mounts", data_dir());
    mkdir(dir, 0700);
    state_path(a->mountpoint, "log", logf, sizeof logf);
    if (pipe2(p, O_CLOEXEC) < 0)
        return die("cannot mount: %s", strerror(errno));
    struct stat lst;
    off_t log_start = stat(logf, &lst) == 0 ? lst.st_size : 0; /* this run's lines come after */
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return die("cannot mount: fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        setsid();
        /* stdin and stdout from /dev/null, stderr to the log (the parent shows the reason for
         * a failure before the mount is ready from there) */
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        int lf = open(logf, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
        }
        if (lf >= 0)
            dup2(lf, 2);
        signal(SIGPIPE, SIG_IGN);
        int rc = serve(a, p[1]);
        fflush(NULL);
        _exit(rc);
    }
    close(p[1]);
    char buf[4] = {0};
    ssize_t n;
    while ((n = read(p[0], buf, 3)) < 0 && errno == EINTR)
        ;
    close(p[0]);
    if (n == 3 && !memcmp(buf, "ok\n", 3))
        return 0;
    /* the mount process failed before it was ready: its reason is the last line of its log */
    int status;
    waitpid(pid, &status, 0);
    FILE *f = fopen(logf, "r");
    char line[1024], last[1024] = "";
    if (f && fseeko(f, log_start, SEEK_SET) < 0) {
        fclose(f);
        f = NULL;
    }
    while (f && fgets(line, sizeof line, f))
        snprintf(last, sizeof last, "%s", line);
    if (f)
        fclose(f);
    if (last[0])
        fputs(last, stderr);
    else
        die("cannot mount %s on %s: the mount process failed", a->ref, a->dir);
    return 1;
}

int cmd_mount(int argc, char **argv)
{
    struct mount_args a = {0};
    struct image_info ii;
    struct cmd_iter it = CMD_ITER(&cmd_mount_def, argc, argv);
    const char *arg, *v;
    int r;
    while ((r = cmd_next(&it, &arg)) > 0) {
        int k = pull_opt(&it, arg, &a.pa);
        if (k < 0)
            return it.status;
        if (k > 0)
            continue;
        if (!strcmp(arg, "--foreground"))
            a.foreground = true;
        else if (!strcmp(arg, "--preload"))
            a.preload = true;
        else if (!strcmp(arg, "--verified"))
            a.verified = true;
        else if (!strcmp(arg, "--no-trace"))
            a.no_trace = true;
        else if ((v = cmd_value(&it, "--prefetch")))
            a.prefetch = v;
        else if ((v = cmd_value(&it, "--cache-mem"))) {
            if (bytes_parse(v, &a.cache_mem) < 0 || a.cache_mem < (1u << 20))
                return cmd_usage_error(&cmd_mount_def,
                                       "--cache-mem: '%s' is not a size of at "
                                       "least 1M",
                                       v);
        } else if ((v = cmd_value(&it, "--node-wait"))) {
            if (cmd_number(v, 86400, &a.node_wait_s) < 0 || a.node_wait_s == 0)
                return cmd_usage_error(&cmd_mount_def,
                                       "--node-wait: '%s' is not a number of seconds from 1 to "
                                       "86400",
                                       v);
        } else if (arg[0] == '-')
            return cmd_usage_error(&cmd_mount_def, "unknown option %s", arg);
        else if (!a.ref)
            a.ref = arg;
        else if (!a.dir)
            a.dir = arg;
        else
            return cmd_usage_error(&cmd_mount_def, "unexpected argument %s", arg);
    }
    if (r < 0)
        return it.status;
    if (!a.dir)
        return cmd_usage_error(&cmd_mount_def, "expected IMAGE DIR");
    char prefetch_abs[PATH_MAX];
    if (a.prefetch) {
        if (!realpath(a.prefetch, prefetch_abs))
            return die("cannot read --prefetch %s: %s", a.prefetch, strerror(errno));
        a.prefetch = prefetch_abs;
    }
    TRACE("mount find_image");
    if (check_mountpoint(&a) || find_image(&a, &ii))
        return 1;
    TRACE("mount image found");
    free(ii.layers);
    if (a.foreground)
        return serve(&a, -1);
    return daemonize(&a);
}

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int cmd_umount(int argc, char **argv)
{
    const char *dir = NULL, *arg;
    struct cmd_iter it = CMD_ITER(&cmd_umount_def, argc, argv);
    int r;
    while ((r = cmd_next(&it, &arg)) > 0) {
        if (arg[0] == '-')
            return cmd_usage_error(&cmd_umount_def, "unknown option %s", arg);
        if (dir)
            return cmd_usage_error(&cmd_umount_def, "one DIR at a time");
        dir = arg;
    }
    if (r < 0)
        return it.status;
    if (!dir)
        return cmd_usage_error(&cmd_umount_def, "DIR is missing");
    char mp[PATH_MAX], fstype[64] = "";
    if (!realpath(dir, mp)) {
        /* a mount whose process died answers ENOTCONN: unmount it by name */
        if (errno != ENOTCONN)
            return die("cannot unmount %s: %s", dir, strerror(errno));
        snprintf(mp, sizeof mp, "%s", dir);
    }
    if (!mounted_at(mp, fstype))
        return die("cannot unmount %s: nothing is mounted there", dir);
    if (strcmp(fstype, "fuse.afsp"))
        return die("cannot unmount %s: not an afsp mount (%s)", dir, fstype);

    /* the mount process, to wait for */
    char pidf[PATH_MAX + 64];
    int pidfd = -1;
    state_path(mp, "pid", pidf, sizeof pidf);
    FILE *f = fopen(pidf, "r");
    int pid = 0;
    char pmp[PATH_MAX];
    if (f && fscanf(f, "%d %4095s", &pid, pmp) == 2 && !strcmp(pmp, mp) && pid > 1)
        pidfd = pidfd_open_(pid);
    if (f)
        fclose(f);

    if (geteuid() == 0) {
        if (umount2(mp, 0) < 0) {
            int e = errno;
            if (pidfd >= 0)
                close(pidfd);
            return die("cannot unmount %s: %s", dir, e == EBUSY ? "it is in use" : strerror(e));
        }
    } else {
        pid_t c = fork();
        if (c == 0) {
            execlp("fusermount3", "fusermount3", "-u", "-q", mp, (char *)NULL);
            _exit(127);
        }
        int st = 0;
        if (c < 0 || waitpid(c, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
            if (pidfd >= 0)
                close(pidfd);
            return die("cannot unmount %s: fusermount3 -u failed", dir);
        }
    }
    if (pidfd >= 0) { /* it exits once the kernel has let go of the mount */
        struct pollfd pfd = {pidfd, POLLIN, 0};
        int n;
        while ((n = poll(&pfd, 1, 30000)) < 0 && errno == EINTR)
            ;
        close(pidfd);
        if (n == 0)
            return die("unmounted %s, but its mount process %d has not exited", dir, pid);
    }
    return 0;
}
