/*
 * runner.c - the daemon's jobs, each on a thread of its own (docs/exec.md, "The node's jobs"):
 * the image found in the store (pulled lazily through the node if it is not), its mount (one per
 * image, shared by its jobs, counted, and kept for mount_keep_ms after the last one ends), its
 * config's process, the user, the volumes checked, then exec_job_run with the job's output in
 * DATA/jobs/ID/out and err. Kills go through the runtime (`kill --all`). At start it removes
 * what a node that died left: containers, job roots, mounts, cgroups, job directories. The
 * mounts are runner_mount.c's, a job's output copy logcopy.c's (runner_int.h). Not part of the
 * sans-IO core.
 *
 * Owns: the job threads, DATA/jobs and the runtime's state (DATA/runc). Must not:
 * touch the core from a job's thread (reports go through poll, on the loop's thread).
 */
#include "runner_int.h"

#include "../store/oci/oci.h"
#include "../store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

/* Wakes the loop (r->mu held: runner_stop_wakes then knows no wake is under way). */
static void wake_locked(struct runner *r)
{
    if (r->wake)
        r->wake(r->wake_arg);
}

/* ---- one job -----------------------------------------------------------------------------------
 */

/* The image in the store, pulled through the node (lazily) if it is not there in full. */
static int image_find(struct runner *r, const struct node_exec *x, struct image_info *ii)
{
    int rc = store_image_find(r->s, x->image, ii);
    if (rc == 0 && ii->nlayers_present == ii->nlayers)
        return 0;
    if (rc == 0)
        free(ii->layers);
    int fd = node_client_connect(r->data);
    if (fd < 0)
        return err_set(-ECONNREFUSED, "the node's control socket does not answer");
    json_t *ins = json_array(), *ans = NULL;
    for (size_t i = 0; x->insecure[i]; i++)
        json_array_append_new(ins, json_string(x->insecure[i]));
    json_t *f = json_pack("{s:s, s:b, s:o}", "ref", x->image, "lazy", 1, "insecure", ins);
    if (x->platform)
        json_object_set_new(f, "platform", json_string(x->platform));
    rc = node_client_call(fd, NODE_CTL_PULL, f, &ans);
    close(fd);
    json_decref(f);
    const char *e = json_string_value(json_object_get(ans, "error"));
    if (rc == 0 && e)
        rc = err_set(AFSP_E_NOTFOUND, "cannot pull %s: %s", x->image, e);
    json_decref(ans);
    if (rc == 0 && (rc = store_image_find(r->s, x->image, ii)) < 0)
        rc = err_set(rc, "cannot find %s after its pull", x->image);
    return rc;
}

/* The image config's process. */
static int image_process(struct runner *r, const struct image_info *ii, struct config_process *p)
{
    struct buf b = {0};
    struct manifest m;
    int rc = store_small_get(r->s, ii->manifest_digest, &b);
    if (rc == 0 && (rc = manifest_parse(b.p, b.len, NULL, &m)) == 0) {
        uint8_t cfg[DIGEST_LEN];
        memcpy(cfg, m.config.digest, DIGEST_LEN);
        bool image = m.kind == MANIFEST_IMAGE;
        manifest_release(&m);
        b.len = 0;
        rc = !image ? AFSP_E_FORMAT : store_small_get(r->s, cfg, &b);
        if (rc == 0)
            rc = config_process(b.p, b.len, p);
    }
    buf_release(&b);
    return rc < 0 ? err_set(rc, "the image's config: %s", err_str(rc)) : 0;
}

static void on_started(void *arg)
{
    struct xrun *xr = arg;
    xr->t_started = time_mono_ns();
    pthread_mutex_lock(&xr->r->mu);
    xr->started = true;
    wake_locked(xr->r);
    pthread_mutex_unlock(&xr->r->mu);
}

static void close_writers(struct xrun *xr)
{
    for (int i = 0; i < 2; i++)
        if (xr->wfd[i] >= 0) {
            close(xr->wfd[i]);
            xr->wfd[i] = -1;
        }
}

static void on_ended(void *arg, const struct exec_result *res)
{
    struct xrun *xr = arg;
    (void)res; /* xr->result itself */
    /* what it wrote is in its files before its end is told (a process of it that has not
     * died yet may hold the pipes: not waited for past a second; the copy goes on) */
    close_writers(xr);
    logcopy_wait(xr->lc, 1000);
    xr->t_ended = time_mono_ns();
    pthread_mutex_lock(&xr->r->mu);
    xr->exited = true;
    wake_locked(xr->r);
    pthread_mutex_unlock(&xr->r->mu);
}

static int open_log(const char *dir, const char *name)
{
    char p[PATH_LEN + 16];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

/* The device nodes of the job's slots (devices_path with "%u" replaced by each slot's number),
 * as the node has them. */
static int job_devices(struct runner *r, uint64_t slots, struct exec_device *d, size_t *n,
                       char paths[][256])
{
    *n = 0;
    const char *pat = r->cfg.devices_path, *at = pat ? strstr(pat, "%u") : NULL;
    for (unsigned i = 0; at && i < EXEC_DEVICES_MAX; i++) {
        if (!(slots >> i & 1))
            continue;
        char *p = paths[*n];
        snprintf(p, 256, "%.*s%u%s", (int)(at - pat), pat, i, at + 2);
        struct stat st;
        if (stat(p, &st) < 0)
            return err_set(-errno, "device slot %u: %s", i, p);
        if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
            return err_set(AFSP_E_USAGE, "device slot %u: %s is not a device", i, p);
        d[*n] = (struct exec_device){.path = p,
                                     .block = S_ISBLK(st.st_mode),
                                     .major = major(st.st_rdev),
                                     .minor = minor(st.st_rdev),
                                     .mode = st.st_mode & 07777};
        (*n)++;
    }
    return 0;
}

/* Everything a job needs, then its run: rc and msg say why it could not be run. */
static int job_run(struct xrun *xr, const char *jdir, int out, int err)
{
    struct runner *r = xr->r;
    struct node_exec *x = xr->x;
    struct image_info ii;
    struct config_process cp = {0};
    char mnt[PATH_LEN], root[PATH_LEN + 8], cg[64 + EXEC_ID_LEN];
    int rc = image_find(r, x, &ii);
    if (rc < 0)
        return rc;
    free(ii.layers);
    xr->t_found = time_mono_ns();
    if ((rc = runner_mount_acquire(r, &ii, x, mnt, err)) < 0)
        return rc;
    xr->t_mounted = time_mono_ns();
    const char *private[] = {r->data, r->key_file};
    /* each volume's source as checked (links resolved) is what the runtime binds: a link put
     * in its path after the check leads nowhere new */
    struct exec_volume vols[NODE_EXEC_VOLUMES_MAX];
    char vsrc[NODE_EXEC_VOLUMES_MAX][PATH_MAX];
    for (size_t i = 0; rc == 0 && i < x->nvolumes; i++) {
        rc = exec_volume_allowed(x->volumes[i].src, private, r->key_file ? 2 : 1, vsrc[i]);
        vols[i] = (struct exec_volume){vsrc[i], x->volumes[i].dst, x->volumes[i].ro};
    }
    uint32_t uid = 0, gid = 0;
    struct exec_device devs[EXEC_DEVICES_MAX];
    char dpaths[EXEC_DEVICES_MAX][256];
    size_t ndevs = 0;
    if (rc == 0)
        rc = job_devices(r, x->slots, devs, &ndevs, dpaths);
    if (rc == 0)
        rc = image_process(r, &ii, &cp);
    if (rc == 0) {
        int rfd = open(mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
        rc = rfd < 0 ? err_set(-errno, "cannot open the image's mount")
                     : exec_user_resolve(rfd,
                                         x->user   ? x->user
                                         : cp.user ? cp.user
                                                   : "",
                                         &uid, &gid);
        if (rc == AFSP_E_USAGE)
            err_ctx(rc, "user %s", x->user ? x->user : cp.user);
        if (rfd >= 0)
            close(rfd);
    }
    snprintf(root, sizeof root, "%s/root", jdir);
    snprintf(cg, sizeof cg, "afsp/%s", x->st.id);
    pthread_mutex_lock(&r->mu);
    bool killed = xr->kill_asked;
    pthread_mutex_unlock(&r->mu);
    if (rc == 0 && !killed && mkdir(root, 0700) < 0)
        rc = err_set(-errno, "cannot make %s", root);
    char pidf[PATH_LEN + 16];
    snprintf(pidf, sizeof pidf, "%s/pid", jdir);
    struct exec_publish *pub = NULL;
    if (rc == 0 && !killed && x->nports)
        rc = exec_publish_start(&pub, r->cfg.publish_host, x->host_ports, x->ports, x->nports, pidf,
                                NULL);
    xr->t_ready = time_mono_ns();
    if (rc == 0 && !killed) {
        struct exec_job j = {.id = x->st.id,
                             .dir = root,
                             .lower = mnt,
                             .runtime = r->cfg.runtime,
                             .state = r->state,
                             .scratch = x->res.scratch,
                             .out_fd = out,
                             .err_fd = err,
                             .started = on_started,
                             .ended = on_ended,
                             .arg = xr,
                             .pid_file = pidf,
                             .spec = {.img = &cp,
                                      .args = x->args,
                                      .env = x->env,
                                      .workdir = x->workdir,
                                      .uid = uid,
                                      .gid = gid,
                                      .res = x->res,
                                      .slots = x->slots,
                                      .slots_env = r->cfg.devices_env,
                                      .devices = devs,
                                      .ndevices = ndevs,
                                      .net_host = x->net_host,
                                      .hostname = x->name ? x->name : x->st.id,
                                      .cgroups_path = cg,
                                      .volumes = vols,
                                      .nvolumes = x->nvolumes}};
        rc = exec_job_run(&j, &xr->result);
        rmdir(root);
    }
    exec_publish_stop(pub);
    config_process_free(&cp);
    runner_mount_release(r, mnt);
    return rc;
}

static void *job_main(void *arg)
{
    struct xrun *xr = arg;
    struct runner *r = xr->r;
    struct node_exec *x = xr->x;
    char jdir[PATH_LEN];
    snprintf(jdir, sizeof jdir, "%s/%s", r->jobs, x->st.id);
    xr->result.status = -1;
    xr->t_begin = time_mono_ns();
    int out = -1, err = -1, rc = 0;
    xr->wfd[0] = xr->wfd[1] = -1;
    if (mkdir(jdir, 0700) < 0 || (out = open_log(jdir, "out")) < 0 ||
        (err = open_log(jdir, "err")) < 0)
        rc = err_set(-errno, "cannot make the job's directory %s", jdir);
    else if ((rc = logcopy_start(&xr->lc, out, err, xr->wfd)) < 0)
        rc = err_set(rc, "cannot copy the job's output");
    else
        rc = job_run(xr, jdir, xr->wfd[0], xr->wfd[1]);
    x->rc = rc < 0 ? rc : 0;
    if (rc < 0) {
        snprintf(x->msg, sizeof x->msg, "%s", err_msg(rc));
        if (xr->wfd[1] >= 0)
            dprintf(xr->wfd[1], "afsp: %s\n", x->msg);
        else if (err >= 0)
            dprintf(err, "afsp: %s\n", x->msg);
    }
    close_writers(xr);
    if (xr->lc)
        logcopy_end(xr->lc); /* every writer is gone: the runtime deleted the container */
    if (out >= 0)
        close(out);
    if (err >= 0)
        close(err);
    xr->t_done = time_mono_ns();
#define MS(a, b) (xr->a && xr->b ? (double)(xr->b - xr->a) / 1e6 : -1.0)
    log_info("event=job_timeline id=%s find_ms=%.1f mount_ms=%.1f prepare_ms=%.1f "
             "runtime_ms=%.1f run_ms=%.1f cleanup_ms=%.1f",
             x->st.id, MS(t_begin, t_found), MS(t_found, t_mounted), MS(t_mounted, t_ready),
             MS(t_ready, t_started), MS(t_started, t_ended), MS(t_ended, t_done));
#undef MS
    pthread_mutex_lock(&r->mu);
    xr->done = true;
    wake_locked(r);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int runner_start(struct runner *r, struct node_exec *x)
{
    struct xrun *xr = calloc(1, sizeof *xr);
    if (!xr)
        return -ENOMEM;
    xr->r = r;
    xr->x = x;
    pthread_mutex_lock(&r->mu);
    int rc = -pthread_create(&xr->th, NULL, job_main, xr);
    if (rc == 0) {
        xr->next = r->runs;
        r->runs = xr;
    }
    pthread_mutex_unlock(&r->mu);
    if (rc < 0)
        free(xr);
    return rc;
}

/* ---- kills ------------------------------------------------------------------------------------
 */

struct kill_req {
    struct runner *r;
    struct xrun *xr;
    char id[EXEC_ID_LEN];
    int sig;
};

/* Signals the job through the runtime; the container may not exist yet (the runtime is
 * making it): asked again every 10 ms until it does or the job has ended, 30 s at most. */
#define KILL_THREADS_MAX 4 /* of one run */

void runner_stop_wakes(struct runner *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->wake = NULL;
    while (r->kill_threads) /* they use their runs, which the loop frees */
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void *kill_main(void *arg)
{
    struct kill_req *k = arg;
    struct runner *r = k->r;
    for (int i = 0; i < 3000; i++) {
        pthread_mutex_lock(&r->mu);
        bool done = k->xr->done;
        pthread_mutex_unlock(&r->mu);
        if (done || exec_job_kill(r->cfg.runtime, r->state, k->id, k->sig) == 0)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&r->mu);
    k->xr->kill_threads--; /* this thread is done with the run */
    r->kill_threads--;
    wake_locked(r);
    pthread_cond_broadcast(&r->cv); /* for runner_stop_wakes */
    pthread_mutex_unlock(&r->mu);
    free(k);
    return NULL;
}

void runner_kill(struct runner *r, struct node_exec *x, int sig)
{
    pthread_mutex_lock(&r->mu);
    struct xrun *xr = r->runs;
    while (xr && xr->x != x)
        xr = xr->next;
    if (xr && !xr->done)
        xr->kill_asked = true; /* if the runtime does not run it yet, it never will */
    /* a few kills at once at most (each retries until the runtime has the job): more add
     * nothing but threads */
    struct kill_req *k =
        xr && !xr->done && xr->kill_threads < KILL_THREADS_MAX ? calloc(1, sizeof *k) : NULL;
    pthread_t th;
    if (k) {
        *k = (struct kill_req){.r = r, .xr = xr, .sig = sig};
        snprintf(k->id, sizeof k->id, "%s", x->st.id);
        if (pthread_create(&th, NULL, kill_main, k) == 0) {
            pthread_detach(th);
            xr->kill_threads++;
            r->kill_threads++;
        } else
            free(k);
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- the loop's side ---------------------------------------------------------------------------
 */

void runner_poll(struct runner *r, struct node *n, uint64_t now)
{
    for (;;) {
        struct node_exec *started = NULL, *exited = NULL;
        struct xrun *fin = NULL;
        pthread_mutex_lock(&r->mu);
        for (struct xrun **pp = &r->runs; *pp; pp = &(*pp)->next) {
            struct xrun *xr = *pp;
            if (xr->started && !xr->reported_start) {
                xr->reported_start = true;
                started = xr->x;
            } else if (xr->exited && !xr->reported_exit && !xr->done) {
                xr->reported_exit = true;
                exited = xr->x;
                exited->result = xr->result; /* no longer written: exec_job_run has it all */
            } else if (xr->done && !xr->kill_threads) {
                *pp = xr->next; /* no kill's thread starts for it now: it is not found */
                fin = xr;
            }
            if (started || exited || fin)
                break; /* one report at a time: the core may act on each */
        }
        pthread_mutex_unlock(&r->mu);
        if (started) {
            node_exec_running(n, started, now);
        } else if (exited) {
            node_exec_exited(n, exited, now);
        } else if (fin) {
            pthread_join(fin->th, NULL);
            fin->x->result = fin->result;
            if (fin->started && !fin->reported_start)
                node_exec_running(n, fin->x, now);
            node_exec_done(n, fin->x, now);
            free(fin);
        } else
            return;
    }
}

size_t runner_running(struct runner *r)
{
    size_t k = 0;
    pthread_mutex_lock(&r->mu);
    for (struct xrun *xr = r->runs; xr; xr = xr->next)
        k++;
    pthread_mutex_unlock(&r->mu);
    return k;
}

/* Removes a directory tree (a job's logs), not following links. */
static void rm_tree(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                rm_tree(dirfd(d), e->d_name);
        closedir(d);
    } else if (fd >= 0)
        close(fd);
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0)
        unlinkat(dfd, name, 0);
}

void runner_forget(struct runner *r, struct node_exec *x)
{
    char jdir[PATH_LEN + EXEC_ID_LEN];
    snprintf(jdir, sizeof jdir, "%s/%s", r->jobs, x->st.id);
    rm_tree(AT_FDCWD, jdir);
    node_exec_free(x);
}

/* ---- start and end -----------------------------------------------------------------------------
 */

/* What a node that died left (docs/exec.md, "A restart"): its containers deleted (their
 * processes killed), the jobs' roots unmounted, the images' mounts unmounted, the job cgroups
 * removed, the job directories (logs) removed. Nothing is re-adopted: a job's record and its
 * waiting client died with the node. */
static void orphans_remove(struct runner *r)
{
    unsigned containers = 0, roots = 0, mounts = 0;
    DIR *d = opendir(r->state);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && exec_job_delete(r->cfg.runtime, r->state, e->d_name) == 0)
            containers++;
    if (d)
        closedir(d);
    char p[2 * PATH_LEN];
    if ((d = opendir(r->jobs))) {
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || !strcmp(e->d_name, "mnt"))
                continue;
            snprintf(p, sizeof p, "%s/%s/root", r->jobs, e->d_name);
            if (access(p, F_OK) == 0) {
                exec_root_remove(p);
                rmdir(p);
                roots++;
            }
        }
        closedir(d);
    }
    snprintf(p, sizeof p, "%s/mnt", r->jobs);
    if ((d = opendir(p))) {
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                char m[3 * PATH_LEN];
                snprintf(m, sizeof m, "%s/%s", p, e->d_name);
                mounts += runner_is_mounted(m);
                runner_unmount(r, m);
            }
        closedir(d);
    }
    /* only this node's (its jobs' ids start with its own): other nodes may run on the machine */
    int cgroups =
        exec_cgroup_sweep("/sys/fs/cgroup", "/proc/self/cgroup", "afsp", r->id_prefix, false);
    if ((d = opendir(r->jobs))) {
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' && strcmp(e->d_name, "mnt"))
                rm_tree(dirfd(d), e->d_name);
        closedir(d);
    }
    if (containers || roots || mounts || cgroups > 0)
        log_warn("event=orphans_removed containers=%u roots=%u mounts=%u cgroups=%d", containers,
                 roots, mounts, cgroups);
}

int runner_new(struct runner **out, const struct node_runner_cfg *cfg, const char *data_dir,
               const uint8_t node_id[4], struct store *s, void (*wake)(void *arg), void *arg)
{
    struct runner *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    snprintf(r->id_prefix, sizeof r->id_prefix, "%02x%02x%02x%02x-", node_id[0], node_id[1],
             node_id[2], node_id[3]);
    r->cfg = *cfg;
    r->s = s;
    r->key_file = cfg->key_file;
    r->wake = wake;
    r->wake_arg = arg;
    if (strlen(data_dir) >= sizeof r->data) {
        free(r);
        return err_set(AFSP_E_USAGE, "the data directory's path is too long");
    }
    snprintf(r->data, sizeof r->data, "%s", data_dir);
    snprintf(r->jobs, sizeof r->jobs, "%s/jobs", data_dir);
    snprintf(r->state, sizeof r->state, "%s/runc", data_dir);
    char mnt[sizeof r->jobs + 8];
    snprintf(mnt, sizeof mnt, "%s/mnt", r->jobs);
    if ((mkdir(r->jobs, 0700) < 0 && errno != EEXIST) ||
        (mkdir(mnt, 0700) < 0 && errno != EEXIST) ||
        (mkdir(r->state, 0700) < 0 && errno != EEXIST)) {
        int rc = err_set(-errno, "cannot make %s", r->jobs);
        free(r);
        return rc;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    orphans_remove(r);
    r->reaper_on = pthread_create(&r->reaper, NULL, runner_reaper_main, r) == 0;
    *out = r;
    return 0;
}

void runner_free(struct runner *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true; /* every mount goes now */
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->reaper_on)
        pthread_join(r->reaper, NULL);
    while (r->mounts) { /* a mount being made when the reaper ended (none: every job is done) */
        struct rmount *m = r->mounts;
        r->mounts = m->next;
        runner_unmount(r, m->dir);
        free(m);
    }
    /* the parent cgroups too, unless another node's jobs are below them */
    exec_cgroup_sweep("/sys/fs/cgroup", "/proc/self/cgroup", "afsp", r->id_prefix, true);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
