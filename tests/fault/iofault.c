/*
 * iofault.c - an LD_PRELOAD shim for fault injection into the store's writes (docs/faults.md).
 *
 * Intercepts the calls that change files (open for writing or creating, write, pwrite, writev,
 * pwritev, fsync, fdatasync, sync_file_range, msync, ftruncate, fallocate, rename, link, unlink,
 * mkdir, rmdir, close of a file opened for writing; their *at and *64 forms) on paths under
 * $AFSP_FAULT_DIR, an absolute path without symlinks. Everything else passes through untouched.
 *
 *   AFSP_FAULT_COUNT=FILE    appends "N OP PATH" for every counted call (the driver learns the
 *                            last N from it, and which call N is)
 *   AFSP_FAULT_FAIL_AT=N     the N-th counted call of the process fails: it does nothing and
 *                            returns -1 with ENOSPC (writes, ftruncate, fallocate) or EIO (the
 *                            rest; a failing close still closes the descriptor). A failing
 *                            fsync or fdatasync also loses what it should have made durable:
 *                            the ranges written to the file since its last sync get back what
 *                            they held before the first of those writes (punched out, zeros,
 *                            where that was zeros or past the end of the file), as on a disk
 *                            that never got them; so a program that goes on as if the sync had
 *                            worked is caught by the next check of the file.
 *                            The other descriptors of the file open at that time fail their
 *                            next sync with EIO, once, as on Linux
 *   AFSP_FAULT_KILL_AT=N     the process kills itself with SIGKILL when it reaches the N-th
 *                            counted call, before making it (kill -9 at an exact point)
 *   AFSP_FAULT_SYNC_SLEEP_MS=N  every fsync and fdatasync of a tracked file first sleeps N ms
 *                            (a slow disk: what a program does while its syncs are under way)
 *   AFSP_FAULT_LOG=FILE      mode B: logs every mutating call, one tab-separated line each, with
 *                            the bytes written appended to FILE.data (for tests/fault/replay.py):
 *                              open INO CREATED TRUNC SYNC PATH | write INO OFF LEN DATAOFF SYNC
 *                              fsync INO | trunc INO LEN | rename PATH PATH | link PATH PATH
 *                              unlink PATH | mkdir PATH | rmdir PATH | msync | syncall
 *                            Several processes may log at once: each line is written together
 *                            with the call it logs, under a lock of the log file.
 *
 * Must not call what it intercepts through the interposed names (only through the real_* ones),
 * nor allocate in a path that a failing malloc would break more than the program it runs in.
 * Paths are made absolute (the cwd, or the path of the directory descriptor), not canonical: the
 * store builds every path from the --data argument, which the tests pass absolute and canonical.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536

struct fdinfo {
    char *path; /* absolute, under the fault dir; NULL if the fd is not tracked */
    ino_t ino;
    bool writable, sync;
    bool wb_err; /* a sync of the file failed through another descriptor since this one was
                    opened: its next sync fails too (see do_sync) */
};

static struct fdinfo fds[MAX_FDS];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char dir[PATH_MAX];
static size_t dirlen;
static long fail_at, kill_at, count, sync_sleep_ms;
static int count_fd = -1, log_fd = -1, data_fd = -1;
static bool ready;

/* Ranges written since the last sync, per file, with what they held before the first write to
 * them since that sync (with AFSP_FAULT_FAIL_AT only). */
#define DIRTY_FILES 1024
struct seg {
    off_t a, b;
    uint8_t *pre; /* the bytes [a, b) held; NULL: zeros (a hole, or past the end of the file) */
};
struct dirty {
    ino_t ino; /* 0: free */
    int n, cap;
    struct seg *s;
};
static struct dirty dirty[DIRTY_FILES];

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_sync_file_range)(int, off_t, off_t, unsigned);
static int (*real_msync)(void *, size_t, int);
static int (*real_ftruncate)(int, off_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned);
static int (*real_link)(const char *, const char *);
static int (*real_linkat)(int, const char *, int, const char *, int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_mkdir)(const char *, mode_t);
static int (*real_mkdirat)(int, const char *, mode_t);
static int (*real_rmdir)(const char *);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static void (*real_sync)(void);
static int (*real_syncfs)(int);

#define RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)

__attribute__((constructor)) static void init(void)
{
    RESOLVE(open);
    RESOLVE(openat);
    RESOLVE(write);
    RESOLVE(pwrite);
    RESOLVE(writev);
    RESOLVE(pwritev);
    RESOLVE(fsync);
    RESOLVE(fdatasync);
    RESOLVE(sync_file_range);
    RESOLVE(msync);
    RESOLVE(ftruncate);
    RESOLVE(fallocate);
    RESOLVE(rename);
    RESOLVE(renameat);
    RESOLVE(renameat2);
    RESOLVE(link);
    RESOLVE(linkat);
    RESOLVE(unlink);
    RESOLVE(unlinkat);
    RESOLVE(mkdir);
    RESOLVE(mkdirat);
    RESOLVE(rmdir);
    RESOLVE(close);
    RESOLVE(dup);
    RESOLVE(dup2);
    RESOLVE(dup3);
    RESOLVE(sync);
    RESOLVE(syncfs);
    const char *d = getenv("AFSP_FAULT_DIR"), *s;
    if (!d || d[0] != '/' || strlen(d) >= sizeof dir - 1)
        return;
    snprintf(dir, sizeof dir, "%s", d);
    dirlen = strlen(dir);
    while (dirlen > 1 && dir[dirlen - 1] == '/')
        dir[--dirlen] = 0;
    if ((s = getenv("AFSP_FAULT_FAIL_AT")))
        fail_at = strtol(s, NULL, 10);
    if ((s = getenv("AFSP_FAULT_KILL_AT")))
        kill_at = strtol(s, NULL, 10);
    if ((s = getenv("AFSP_FAULT_SYNC_SLEEP_MS")))
        sync_sleep_ms = strtol(s, NULL, 10);
    if ((s = getenv("AFSP_FAULT_COUNT")))
        count_fd = real_open(s, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if ((s = getenv("AFSP_FAULT_LOG"))) {
        char p[PATH_MAX + 8];
        log_fd = real_open(s, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        snprintf(p, sizeof p, "%s.data", s);
        data_fd = real_open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log_fd < 0 || data_fd < 0) {
            fprintf(stderr, "iofault: cannot open the log %s\n", s);
            abort();
        }
    }
    ready = true;
}

/* ---- paths and descriptors ----------------------------------------------------------------- */

static bool under_dir(const char *abs)
{
    return ready && !strncmp(abs, dir, dirlen) && (abs[dirlen] == '/' || abs[dirlen] == 0);
}

/* The absolute form of path relative to dirfd, in out (PATH_MAX); false if it cannot be made. */
static bool absolute(int dirfd, const char *path, char *out)
{
    char base[PATH_MAX];
    if (!path)
        return false;
    if (path[0] == '/') {
        snprintf(out, PATH_MAX, "%s", path);
        return true;
    }
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base))
            return false;
    } else if (dirfd >= 0 && dirfd < MAX_FDS && fds[dirfd].path) {
        snprintf(base, sizeof base, "%s", fds[dirfd].path);
    } else {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(proc, base, sizeof base - 1);
        if (n < 0)
            return false;
        base[n] = 0;
    }
    return snprintf(out, PATH_MAX, "%s/%s", base, path) < PATH_MAX;
}

static bool tracked_path(int dirfd, const char *path, char *abs)
{
    return ready && absolute(dirfd, path, abs) && under_dir(abs);
}

static struct fdinfo *tracked_fd(int fd)
{
    return ready && fd >= 0 && fd < MAX_FDS && fds[fd].path ? &fds[fd] : NULL;
}

static void fd_forget(int fd)
{
    if (fd >= 0 && fd < MAX_FDS && fds[fd].path) {
        free(fds[fd].path);
        fds[fd].path = NULL;
    }
}

/* ---- counting, failing, logging ------------------------------------------------------------ */

static void put_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = real_write(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            fprintf(stderr, "iofault: cannot write its log: %s\n", strerror(errno));
            abort();
        }
        c += k;
        n -= (size_t)k;
    }
}

/* Counts a call; true if it is the one to fail. Under mu. */
static bool counted(const char *op, const char *path)
{
    long n = ++count;
    if (count_fd >= 0) {
        char line[PATH_MAX + 64];
        int k = snprintf(line, sizeof line, "%ld\t%s\t%s\n", n, op, path ? path + dirlen : "");
        if (k >= (int)sizeof line)
            k = (int)sizeof line - 1;
        put_all(count_fd, line, (size_t)k);
    }
    if (n == kill_at)
        raise(SIGKILL);
    return n == fail_at;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    char line[2 * PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k >= (int)sizeof line)
        k = (int)sizeof line - 1;
    put_all(log_fd, line, (size_t)k);
}

static const char *rel(const char *abs)
{
    return abs[dirlen] ? abs + dirlen + 1 : ".";
}

/* Takes mu, and the log's lock when logging (other processes log into the same file). */
static void lock(void)
{
    pthread_mutex_lock(&mu);
    if (log_fd >= 0)
        flock(log_fd, LOCK_EX);
}

static void unlock(void)
{
    if (log_fd >= 0)
        flock(log_fd, LOCK_UN);
    pthread_mutex_unlock(&mu);
}

static int fail(int e)
{
    errno = e;
    return -1;
}

/* Logs the bytes of a successful write of n bytes at off (iov, or p if iov is NULL). */
static void log_write(struct fdinfo *f, off_t off, const void *p, const struct iovec *iov,
                      int iovcnt, size_t n)
{
    struct stat st;
    if (log_fd < 0 || n == 0)
        return;
    if (fstat(data_fd, &st) < 0)
        abort();
    size_t left = n;
    if (iov) {
        for (int i = 0; i < iovcnt && left; i++) {
            size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
            put_all(data_fd, iov[i].iov_base, k);
            left -= k;
        }
    } else {
        put_all(data_fd, p, n);
    }
    logf_("write\t%lu\t%lld\t%zu\t%lld\t%d\n", (unsigned long)f->ino, (long long)off, n,
          (long long)st.st_size, f->sync);
}

/* ---- ranges written since the last sync ------------------------------------------------------ */

static struct dirty *dirty_of(ino_t ino, bool add)
{
    struct dirty *free_slot = NULL;
    for (int i = 0; i < DIRTY_FILES; i++) {
        if (dirty[i].ino == ino)
            return &dirty[i];
        if (!dirty[i].ino && !free_slot)
            free_slot = &dirty[i];
    }
    if (!add)
        return NULL;
    if (!free_slot) {
        fprintf(stderr, "iofault: more than %d files written and not synced\n", DIRTY_FILES);
        abort();
    }
    free_slot->ino = ino;
    free_slot->n = 0;
    return free_slot;
}

/* Under mu: adds [a, b) of fd's file, which holds pre (NULL: zeros), to d. */
static void seg_add(struct dirty *d, off_t a, off_t b, uint8_t *pre)
{
    struct seg *l = d->n ? &d->s[d->n - 1] : NULL;
    if (l && l->b == a && !l->pre && !pre) { /* the common case: appends, or a sparse file */
        l->b = b;
        return;
    }
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 64;
        struct seg *s = realloc(d->s, (size_t)cap * sizeof *s);
        if (!s) {
            fprintf(stderr, "iofault: out of memory\n");
            abort();
        }
        d->s = s;
        d->cap = cap;
    }
    d->s[d->n++] = (struct seg){a, b, pre};
}

/* Under mu: saves what [a, b) of the file holds now, but for the parts that segments from
 * index i on cover already (their first write since the last sync came earlier). */
static void save_uncovered(struct dirty *d, int rfd, off_t a, off_t b, int i)
{
    for (; i < d->n; i++) {
        off_t sa = d->s[i].a, sb = d->s[i].b;
        if (sa < b && a < sb) {
            if (a < sa)
                save_uncovered(d, rfd, a, sa, i + 1);
            if (sb < b)
                save_uncovered(d, rfd, sb, b, i + 1);
            return;
        }
    }
    size_t n = (size_t)(b - a), got = 0;
    uint8_t *pre = calloc(n, 1);
    if (!pre) {
        fprintf(stderr, "iofault: out of memory\n");
        abort();
    }
    while (rfd >= 0 && got < n) {
        ssize_t k = pread(rfd, pre + got, n - got, a + (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break; /* past the end: zeros */
        got += (size_t)k;
    }
    size_t z = 0;
    while (z < got && !pre[z])
        z++;
    if (z == got) {
        free(pre);
        pre = NULL;
    }
    seg_add(d, a, b, pre);
}

/* Under mu, before a write of n bytes at off through f (fd): what the range holds now. */
static void dirty_before(struct fdinfo *f, int fd, off_t off, size_t n)
{
    if (fail_at <= 0 || f->sync || n == 0 || off < 0)
        return;
    struct dirty *d = dirty_of(f->ino, true);
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd); /* fd may be write-only */
    int rfd = real_open(proc, O_RDONLY | O_CLOEXEC);
    save_uncovered(d, rfd, off, off + (off_t)n, 0);
    if (rfd >= 0)
        real_close(rfd);
}

/* Under mu: after a sync (lost: the ranges get back what they held first). */
static void dirty_synced(int fd, ino_t ino, bool lost)
{
    struct dirty *d = dirty_of(ino, false);
    if (!d)
        return;
    for (int i = 0; i < d->n; i++) {
        struct seg *g = &d->s[i];
        for (size_t done = 0; lost && g->pre && done < (size_t)(g->b - g->a);) {
            ssize_t k =
                real_pwrite(fd, g->pre + done, (size_t)(g->b - g->a) - done, g->a + (off_t)done);
            if (k <= 0 && errno != EINTR)
                break;
            done += k > 0 ? (size_t)k : 0;
        }
        if (lost && !g->pre)
            real_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, g->a, g->b - g->a);
        free(g->pre);
    }
    d->ino = 0;
    d->n = 0;
}

/* ---- open and close ------------------------------------------------------------------------ */

static int do_open(int dirfd, const char *path, int flags, mode_t mode)
{
    char abs[PATH_MAX];
    bool wr = (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0;
    if (!wr || !tracked_path(dirfd, path, abs)) {
        int fd = real_openat(dirfd, path, flags, mode);
        if (fd >= 0 && fd < MAX_FDS) {
            lock();
            fd_forget(fd);
            /* directories are tracked to log their fsync */
            if ((flags & O_DIRECTORY) && tracked_path(dirfd, path, abs)) {
                struct stat st;
                if (fstat(fd, &st) == 0) {
                    fds[fd] = (struct fdinfo){strdup(abs), st.st_ino, false, false, false};
                    if (log_fd >= 0)
                        logf_("open\t%lu\t0\t0\t0\t%s\n", (unsigned long)st.st_ino, rel(abs));
                }
            }
            unlock();
        }
        return fd;
    }
    lock();
    if (counted("open", abs)) {
        unlock();
        return fail(EIO);
    }
    struct stat st;
    bool existed = lstat(abs, &st) == 0;
    int fd = real_openat(dirfd, path, flags, mode);
    if (fd >= 0 && fd < MAX_FDS && fstat(fd, &st) == 0) {
        fd_forget(fd);
        bool sync = (flags & O_DSYNC) != 0; /* O_SYNC includes O_DSYNC */
        fds[fd] =
            (struct fdinfo){strdup(abs), st.st_ino, (flags & O_ACCMODE) != O_RDONLY, sync, false};
        if (!existed || (flags & O_TRUNC)) /* a new file, maybe on the inode of a deleted one */
            dirty_synced(fd, st.st_ino, false);
        if (log_fd >= 0)
            logf_("open\t%lu\t%d\t%d\t%d\t%s\n", (unsigned long)st.st_ino, !existed,
                  (flags & O_TRUNC) != 0, sync, rel(abs));
    }
    unlock();
    return fd;
}

static mode_t va_mode(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_mode(flags, ap);
    va_end(ap);
    return do_open(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_mode(flags, ap);
    va_end(ap);
    return do_open(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int creat(const char *path, mode_t mode)
{
    return do_open(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

int creat64(const char *path, mode_t mode) __attribute__((alias("creat")));

int close(int fd)
{
    struct fdinfo *f = tracked_fd(fd);
    if (!f)
        return real_close(fd);
    lock();
    bool failing = f->writable && counted("close", f->path);
    fd_forget(fd);
    int rc = real_close(fd);
    unlock();
    return failing ? fail(EIO) : rc;
}

static int after_dup(int old, int fd)
{
    if (fd < 0 || fd >= MAX_FDS)
        return fd;
    lock();
    fd_forget(fd);
    struct fdinfo *f = tracked_fd(old);
    if (f) {
        fds[fd] = *f;
        fds[fd].path = strdup(f->path);
    }
    unlock();
    return fd;
}

int dup(int old)
{
    return after_dup(old, real_dup(old));
}

int dup2(int old, int fd)
{
    return old == fd ? real_dup2(old, fd) : after_dup(old, real_dup2(old, fd));
}

int dup3(int old, int fd, int flags)
{
    return after_dup(old, real_dup3(old, fd, flags));
}

/* ---- writes -------------------------------------------------------------------------------- */

/* Where a write through fd goes: its offset, or the end of the file with O_APPEND. */
static off_t write_pos(int fd)
{
    struct stat st;
    if (fcntl(fd, F_GETFL) & O_APPEND)
        return fstat(fd, &st) == 0 ? st.st_size : -1;
    return lseek(fd, 0, SEEK_CUR);
}

static size_t iov_len(const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    return n;
}

ssize_t write(int fd, const void *p, size_t n)
{
    struct fdinfo *f = tracked_fd(fd);
    if (!f)
        return real_write(fd, p, n);
    lock();
    if (counted("write", f->path)) {
        unlock();
        return fail(ENOSPC);
    }
    off_t off = write_pos(fd);
    dirty_before(f, fd, off, n);
    ssize_t k = real_write(fd, p, n);
    if (k > 0) {
        if (off < 0)
            off = lseek(fd, 0, SEEK_CUR) - k;
        log_write(f, off, p, NULL, 0, (size_t)k);
    }
    unlock();
    return k;
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
    struct fdinfo *f = tracked_fd(fd);
    if (!f)
        return real_pwrite(fd, p, n, off);
    lock();
    if (counted("pwrite", f->path)) {
        unlock();
        return fail(ENOSPC);
    }
    dirty_before(f, fd, off, n);
    ssize_t k = real_pwrite(fd, p, n, off);
    if (k > 0)
        log_write(f, off, p, NULL, 0, (size_t)k);
    unlock();
    return k;
}

ssize_t pwrite64(int fd, const void *p, size_t n, off_t off) __attribute__((alias("pwrite")));

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    struct fdinfo *f = tracked_fd(fd);
    if (!f)
        return real_writev(fd, iov, iovcnt);
    lock();
    if (counted("writev", f->path)) {
        unlock();
        return fail(ENOSPC);
    }
    off_t off = write_pos(fd);
    dirty_before(f, fd, off, iov_len(iov, iovcnt));
    ssize_t k = real_writev(fd, iov, iovcnt);
    if (k > 0) {
        if (off < 0)
            off = lseek(fd, 0, SEEK_CUR) - k;
        log_write(f, off, NULL, iov, iovcnt, (size_t)k);
    }
    unlock();
    return k;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    struct fdinfo *f = tracked_fd(fd);
    if (!f)
        return real_pwritev(fd, iov, iovcnt, off);
    lock();
    if (counted("pwritev", f->path)) {
        unlock();
        return fail(ENOSPC);
    }
    dirty_before(f, fd, off, iov_len(iov, iovcnt));
    ssize_t k = real_pwritev(fd, iov, iovcnt, off);
    if (k > 0)
        log_write(f, off, NULL, iov, iovcnt, (size_t)k);
    unlock();
    return k;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off)
    __attribute__((alias("pwritev")));

int ftruncate(int fd, off_t len)
{
    struct fdinfo *f = tracked_fd(fd);
    if (!f)
        return real_ftruncate(fd, len);
    lock();
    if (counted("ftruncate", f->path)) {
        unlock();
        return fail(ENOSPC);
    }
    int rc = real_ftruncate(fd, len);
    if (rc == 0 && log_fd >= 0)
        logf_("trunc\t%lu\t%lld\n", (unsigned long)f->ino, (long long)len);
    unlock();
    return rc;
}

int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));

int fallocate(int fd, int mode, off_t off, off_t len)
{
    struct fdinfo *f = tracked_fd(fd);
    if (!f)
        return real_fallocate(fd, mode, off, len);
    lock();
    if (counted("fallocate", f->path)) {
        unlock();
        return fail(ENOSPC);
    }
    struct stat st;
    int rc = real_fallocate(fd, mode, off, len);
    /* only the size is modelled: the modes that punch or collapse are not used by the store */
    if (rc == 0 && log_fd >= 0 && fstat(fd, &st) == 0)
        logf_("%s\t%lu\t%lld\n", mode ? "unmodelled fallocate" : "trunc", (unsigned long)f->ino,
              (long long)st.st_size);
    unlock();
    return rc;
}

int fallocate64(int fd, int mode, off_t off, off_t len) __attribute__((alias("fallocate")));

/* ---- syncs --------------------------------------------------------------------------------- */

static int do_sync(int fd, int (*fn)(int), const char *op)
{
    struct fdinfo *f = tracked_fd(fd);
    if (!f)
        return fn(fd);
    if (sync_sleep_ms > 0) {
        struct timespec ts = {sync_sleep_ms / 1000, sync_sleep_ms % 1000 * 1000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
    lock();
    if (counted(op, f->path)) {
        /* The ranges are lost whoever wrote them, and, as Linux does (a writeback error is
         * recorded in the file's errseq and reported once to every open file description that
         * has not seen it), every other descriptor of the file learns it at its next sync: a
         * program that syncs what it wrote through its own descriptor must not be told that
         * bytes another descriptor's failed sync lost are durable. (A dup of this descriptor is
         * told again, which Linux would not do: the store makes none.) */
        dirty_synced(fd, f->ino, true);
        for (int i = 0; i < MAX_FDS; i++)
            if (i != fd && fds[i].path && fds[i].ino == f->ino)
                fds[i].wb_err = true;
        unlock();
        return fail(EIO);
    }
    int rc = fn(fd);
    if (rc == 0)
        dirty_synced(fd, f->ino, false);
    if (rc == 0 && log_fd >= 0)
        logf_("fsync\t%lu\n", (unsigned long)f->ino);
    if (rc == 0 && f->wb_err) {
        f->wb_err = false;
        unlock();
        return fail(EIO);
    }
    unlock();
    return rc;
}

int fsync(int fd)
{
    return do_sync(fd, real_fsync, "fsync");
}

int fdatasync(int fd)
{
    return do_sync(fd, real_fdatasync, "fdatasync");
}

/* Starts writeback: no durability, so nothing to log; it can fail, though. */
int sync_file_range(int fd, off_t off, off_t n, unsigned flags)
{
    struct fdinfo *f = tracked_fd(fd);
    if (!f)
        return real_sync_file_range(fd, off, n, flags);
    lock();
    bool failing = counted("sync_file_range", f->path);
    unlock();
    return failing ? fail(EIO) : real_sync_file_range(fd, off, n, flags);
}

/* A shared mapping of a file cannot be told from here: logged as not modelled (LMDB calls it
 * only with MDB_WRITEMAP, which the store does not use). */
int msync(void *p, size_t n, int flags)
{
    if (ready && log_fd >= 0) {
        lock();
        logf_("msync\n");
        unlock();
    }
    return real_msync(p, n, flags);
}

void sync(void)
{
    if (ready && log_fd >= 0) {
        lock();
        real_sync();
        logf_("syncall\n");
        unlock();
        return;
    }
    real_sync();
}

int syncfs(int fd)
{
    int rc = real_syncfs(fd);
    if (rc == 0 && ready && log_fd >= 0) {
        lock();
        logf_("syncall\n");
        unlock();
    }
    return rc;
}

/* ---- names --------------------------------------------------------------------------------- */

static int do_rename(int ofd, const char *old, int nfd, const char *new, unsigned flags,
                     bool is_link, int lflags)
{
    char a[PATH_MAX], b[PATH_MAX];
    bool ta = tracked_path(ofd, old, a), tb = tracked_path(nfd, new, b);
    if (!ta && !tb)
        return is_link ? real_linkat(ofd, old, nfd, new, lflags)
                       : real_renameat2(ofd, old, nfd, new, flags);
    lock();
    if (counted(is_link ? "link" : "rename", ta ? a : b)) {
        unlock();
        return fail(EIO);
    }
    int rc = is_link ? real_linkat(ofd, old, nfd, new, lflags)
                     : real_renameat2(ofd, old, nfd, new, flags);
    if (rc == 0 && log_fd >= 0) {
        if (ta && tb)
            logf_("%s\t%s\t%s\n", is_link ? "link" : "rename", rel(a), rel(b));
        else
            logf_("unmodelled %s across the fault dir\t%s\t%s\n", is_link ? "link" : "rename", a,
                  b);
    }
    unlock();
    return rc;
}

int rename(const char *old, const char *new)
{
    return do_rename(AT_FDCWD, old, AT_FDCWD, new, 0, false, 0);
}

int renameat(int ofd, const char *old, int nfd, const char *new)
{
    return do_rename(ofd, old, nfd, new, 0, false, 0);
}

int renameat2(int ofd, const char *old, int nfd, const char *new, unsigned flags)
{
    return do_rename(ofd, old, nfd, new, flags, false, 0);
}

int link(const char *old, const char *new)
{
    return do_rename(AT_FDCWD, old, AT_FDCWD, new, 0, true, 0);
}

int linkat(int ofd, const char *old, int nfd, const char *new, int flags)
{
    return do_rename(ofd, old, nfd, new, 0, true, flags);
}

static int do_unlink(int dirfd, const char *path, int flags)
{
    char abs[PATH_MAX];
    if (!tracked_path(dirfd, path, abs))
        return real_unlinkat(dirfd, path, flags);
    bool isdir = flags & AT_REMOVEDIR;
    lock();
    if (counted(isdir ? "rmdir" : "unlink", abs)) {
        unlock();
        return fail(EIO);
    }
    int rc = real_unlinkat(dirfd, path, flags);
    if (rc == 0 && log_fd >= 0)
        logf_("%s\t%s\n", isdir ? "rmdir" : "unlink", rel(abs));
    unlock();
    return rc;
}

int unlink(const char *path)
{
    return do_unlink(AT_FDCWD, path, 0);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    return do_unlink(dirfd, path, flags);
}

int rmdir(const char *path)
{
    return do_unlink(AT_FDCWD, path, AT_REMOVEDIR);
}

static int do_mkdir(int dirfd, const char *path, mode_t mode)
{
    char abs[PATH_MAX];
    if (!tracked_path(dirfd, path, abs))
        return real_mkdirat(dirfd, path, mode);
    lock();
    if (counted("mkdir", abs)) {
        unlock();
        return fail(EIO);
    }
    int rc = real_mkdirat(dirfd, path, mode);
    if (rc == 0 && log_fd >= 0)
        logf_("mkdir\t%s\n", rel(abs));
    unlock();
    return rc;
}

int mkdir(const char *path, mode_t mode)
{
    return do_mkdir(AT_FDCWD, path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
    return do_mkdir(dirfd, path, mode);
}
