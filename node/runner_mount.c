/*
 * runner_mount.c - the images' mounts the runner's jobs run on (docs/exec.md, "The node's
 * jobs"): one per image, made by this program's own `afsp mount`, shared by its jobs and
 * counted, kept for mount_keep_ms after the last one ends, then unmounted by the reaper's
 * thread. Not part of the sans-IO core.
 *
 * Owns: the mounts (under the runner's lock). Must not: hold the lock while a mount is made or
 * checked.
 */
#include "runner_int.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SELF_ARGS (8 + 2 * NODE_TASK_INSECURE_MAX) /* what runner_self_run passes on, at most */

/* `afsp --data DATA ARGS...` (this program), waited for; its stderr to err (-1: /dev/null). */
int runner_self_run(struct runner *r, const char *const *args, int err)
{
    char *argv[3 + SELF_ARGS + 1];
    size_t n = 0;
    argv[n++] = (char *)r->cfg.self;
    argv[n++] = "--data";
    argv[n++] = r->data;
    while (*args && n < 3 + SELF_ARGS)
        argv[n++] = (char *)*args++;
    argv[n] = NULL;
    int st = 0, rc = exec_spawn_wait(argv, -1, err, &st, EXEC_HELPER_MS);
    if (rc < 0)
        return rc;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

bool runner_is_mounted(const char *dir)
{
    struct stat a, b;
    char up[PATH_LEN + 4];
    snprintf(up, sizeof up, "%s/..", dir);
    if (stat(dir, &a) < 0)
        return errno == ENOTCONN; /* a FUSE mount whose process died */
    return stat(up, &b) == 0 && a.st_dev != b.st_dev;
}

void runner_unmount(struct runner *r, const char *dir)
{
    if (runner_is_mounted(dir)) {
        const char *um[] = {"umount", dir, NULL};
        if (runner_self_run(r, um, -1) < 0)
            umount2(dir, MNT_DETACH); /* busy, or not afsp's: it goes once unused */
    }
    rmdir(dir);
}

/* ---- mounts: one per image, shared ------------------------------------------------------------
 */

/* The image's mount, made if need be (its reference counted): its directory in out. A mount
 * whose process died (ENOTCONN) is mounted again; the jobs on it keep their references. */
int runner_mount_acquire(struct runner *r, const struct image_info *ii, const struct node_exec *x,
                         char out[static PATH_LEN], int err_fd)
{
    pthread_mutex_lock(&r->mu);
    struct rmount *m;
    bool again = false;
    for (;;) {
        for (m = r->mounts; m && memcmp(m->digest, ii->manifest_digest, DIGEST_LEN); m = m->next)
            ;
        if (!m)
            break;
        if (m->state != M_READY) {
            pthread_cond_wait(&r->cv, &r->mu); /* being mounted, or unmounted: wait for its end */
            continue;
        }
        m->refs++; /* held: the reaper leaves it be while it is looked at, unlocked */
        pthread_mutex_unlock(&r->mu);
        struct statfs sf; /* statfs always asks the mount's process (stat may answer from cache) */
        if (statfs(m->dir, &sf) == 0 || errno != ENOTCONN) {
            snprintf(out, PATH_LEN, "%s", m->dir);
            return 0;
        }
        pthread_mutex_lock(&r->mu);
        if (m->state == M_READY) {
            m->state = M_MOUNTING;
            again = true;
            break;
        }
        m->refs--; /* another job mounts it again: wait for that */
    }
    if (again) {
        pthread_mutex_unlock(&r->mu);
        log_warn("event=mount_lost dir=%s", m->dir);
        umount2(m->dir, MNT_DETACH); /* the jobs on it keep what they have open */
    } else if (!(m = calloc(1, sizeof *m))) {
        pthread_mutex_unlock(&r->mu);
        return -ENOMEM;
    } else {
        char hex[2 * DIGEST_LEN + 1];
        memcpy(m->digest, ii->manifest_digest, DIGEST_LEN);
        snprintf(m->dir, sizeof m->dir, "%s/mnt/%.24s", r->jobs, hex_fmt(m->digest, 12, hex));
        m->refs = 1;
        m->next = r->mounts;
        r->mounts = m;
        pthread_mutex_unlock(&r->mu);
    }

    /* the manifest by digest: what the store holds, even if the tag has moved since */
    char ref[sizeof ii->ref + DIGEST_STR_LEN + 2], dg[DIGEST_STR_LEN + 1];
    snprintf(ref, sizeof ref, "%s%s%s", ii->ref, strchr(ii->ref, '@') ? "" : "@",
             strchr(ii->ref, '@') ? "" : digest_fmt(ii->manifest_digest, dg));
    const char *args[SELF_ARGS] = {"mount"};
    size_t na = 1;
    for (size_t i = 0; x->insecure[i]; i++) {
        args[na++] = "--insecure-registry";
        args[na++] = x->insecure[i];
    }
    args[na++] = ref;
    args[na++] = m->dir;
    args[na] = NULL;
    int rc = 0;
    if (mkdir(m->dir, 0700) < 0 && errno != EEXIST)
        rc = err_set(-errno, "cannot make %s", m->dir);
    else if ((rc = runner_self_run(r, args, err_fd)) < 0)
        rc = err_set(rc, "cannot mount %s", ref);
    /* a helper killed at its time limit may have left its serving process behind, mounted */
    if (rc < 0 && !again && runner_is_mounted(m->dir))
        umount2(m->dir, MNT_DETACH);
    pthread_mutex_lock(&r->mu);
    if (rc < 0 && again) { /* kept, dead, for the jobs on it: the next job tries again */
        m->refs--;
        m->state = M_READY;
        m->idle_since = runner_mono_ms();
    } else if (rc < 0) {
        for (struct rmount **pp = &r->mounts; *pp; pp = &(*pp)->next)
            if (*pp == m) {
                *pp = m->next;
                break;
            }
        rmdir(m->dir);
        free(m);
    } else {
        m->state = M_READY;
        snprintf(out, PATH_LEN, "%s", m->dir);
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void runner_mount_release(struct runner *r, const char *dir)
{
    pthread_mutex_lock(&r->mu);
    for (struct rmount *m = r->mounts; m; m = m->next)
        if (!strcmp(m->dir, dir) && m->refs && --m->refs == 0) {
            m->idle_since = runner_mono_ms();
            pthread_cond_broadcast(&r->cv); /* the reaper's clock starts */
        }
    pthread_mutex_unlock(&r->mu);
}

/* Unmounts the mounts idle for mount_keep_ms (all idle ones when stopping). */
void *runner_reaper_main(void *arg)
{
    struct runner *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        uint64_t now = runner_mono_ms(), next = UINT64_MAX;
        struct rmount *due = NULL;
        for (struct rmount *m = r->mounts; m && !due; m = m->next) {
            if (m->state != M_READY || m->refs)
                continue;
            uint64_t at = m->idle_since + r->cfg.mount_keep_ms;
            if (r->stopping || at <= now)
                due = m;
            else if (at < next)
                next = at;
        }
        if (due) {
            due->state = M_UNMOUNTING;
            pthread_mutex_unlock(&r->mu);
            runner_unmount(r, due->dir);
            log_info("event=unmounted dir=%s", due->dir);
            pthread_mutex_lock(&r->mu);
            for (struct rmount **pp = &r->mounts; *pp; pp = &(*pp)->next)
                if (*pp == due) {
                    *pp = due->next;
                    break;
                }
            free(due);
            pthread_cond_broadcast(&r->cv);
            continue;
        }
        if (r->stopping)
            break;
        if (next == UINT64_MAX) {
            pthread_cond_wait(&r->cv, &r->mu);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t wait = next - now;
            ts.tv_sec += (time_t)(wait / 1000);
            ts.tv_nsec += (long)(wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}
