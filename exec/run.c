/*
 * run.c - one job from start to end, on the thread that calls it: its root and config.json in
 * its directory, the OCI runtime run on it (`runc run --keep`, so that its cgroup outlives its
 * process and can be read), its usage and OOM kills, and the cleanup (`runc delete`, the root
 * unmounted and removed) whatever happened.
 *
 * Owns the job's directory's contents and the runtime's container while it runs.
 */
#include "exec.h"

#include "../util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Waits for child pid (argv0: its name, for the message): its wait status in *status. After
 * timeout_ms (0: none) it is killed (SIGKILL), reaped, and the wait fails with -ETIMEDOUT. The
 * time is kept with a pidfd; where the kernel has none (before 5.3), by looking every 10 ms. */
static int child_wait(pid_t pid, const char *argv0, int *status, uint64_t timeout_ms)
{
    uint64_t deadline = time_mono_ns() / 1000000 + timeout_ms;
    int pfd = timeout_ms ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    bool killed = false;
    while (timeout_ms && !killed) {
        uint64_t now = time_mono_ns() / 1000000;
        int left = now >= deadline ? 0 : (int)MIN(deadline - now, (uint64_t)INT_MAX);
        if (pfd >= 0) {
            struct pollfd p = {.fd = pfd, .events = POLLIN};
            int r = poll(&p, 1, left);
            if (r < 0 && errno == EINTR)
                continue;
            if (r != 0)
                break; /* it ended (or poll failed: wait as without a limit) */
        } else {
            pid_t w = waitpid(pid, status, WNOHANG);
            if (w == pid)
                return 0;
            if (w < 0 && errno != EINTR)
                return err_set(-errno, "waiting for %s", argv0);
            if (left > 0) {
                struct timespec d = {0, (long)MIN(left, 10) * 1000000};
                nanosleep(&d, NULL);
                continue;
            }
        }
        killed = kill(pid, SIGKILL) == 0;
        break;
    }
    if (pfd >= 0)
        close(pfd);
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR)
            return err_set(-errno, "waiting for %s", argv0);
    /* one that ended on its own just before the kill keeps its status */
    if (killed && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
        return err_set(-ETIMEDOUT, "%s did not end within %llu s: killed", argv0,
                       (unsigned long long)(timeout_ms / 1000));
    return 0;
}

/* Runs argv with stdin /dev/null and stdout, stderr to out, err (-1: /dev/null); started(arg)
 * once it runs (if not NULL); its wait status in *status; killed after timeout_ms (0: never). */
static int spawn_wait(char *const argv[], int out, int err, int *status, void (*started)(void *arg),
                      void *arg, uint64_t timeout_ms)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc)
        return -rc;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out >= 0)
        posix_spawn_file_actions_adddup2(&fa, out, 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (err >= 0)
        posix_spawn_file_actions_adddup2(&fa, err, 2);
    else
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        return err_set(-rc, "cannot start %s", argv[0]);
    if (started)
        started(arg);
    return child_wait(pid, argv[0], status, timeout_ms);
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(-errno, "cannot write %s", path);
    size_t n = strlen(text), done = 0;
    while (done < n) {
        ssize_t k = write(fd, text + done, n - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            close(fd);
            return err_set(-e, "cannot write %s", path);
        }
        done += (size_t)k;
    }
    return close(fd) < 0 ? err_set(-errno, "cannot write %s", path) : 0;
}

int exec_job_run(const struct exec_job *j, struct exec_result *r)
{
    char cfg[4200], *json = NULL;
    int rc, st = 0;
    memset(r, 0, sizeof *r);
    r->status = -1;
    if (snprintf(cfg, sizeof cfg, "%s/config.json", j->dir) >= (int)sizeof cfg)
        return AFSP_E_USAGE;
    if ((rc = exec_spec_json(&j->spec, &json)) < 0)
        return rc;
    if ((rc = exec_root_make(j->dir, j->lower, j->scratch)) < 0) {
        free(json);
        return rc;
    }
    rc = write_file(cfg, json);
    free(json);
    if (rc == 0) {
        char *run[] = {(char *)j->runtime,
                       "--root",
                       (char *)j->state,
                       "run",
                       "--keep",
                       "--bundle",
                       (char *)j->dir,
                       (char *)j->id,
                       NULL,
                       NULL,
                       NULL};
        if (j->pid_file) {
            run[7] = "--pid-file";
            run[8] = (char *)j->pid_file;
            run[9] = (char *)j->id;
        }
        rc = spawn_wait(run, j->out_fd, j->err_fd, &st, j->started, j->arg, 0);
        int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        /* the runtime writes the pid file once the job's process exists: without it, the status
         * is the runtime's own failure (its words are in the job's stderr), not the job's */
        if (rc == 0 && j->pid_file && access(j->pid_file, F_OK) < 0 && errno == ENOENT)
            rc = err_set(AFSP_E_USAGE,
                         "the runtime %s failed before the job's process started (status %d; "
                         "its message is in the job's stderr)",
                         j->runtime, status);
        if (rc == 0) {
            r->status = status;
            /* the cgroup is gone if the runtime failed before making it: usage unknown */
            if (exec_cgroup_usage("/sys/fs/cgroup", "/proc/self/cgroup", j->spec.cgroups_path,
                                  &r->usage) == 0)
                r->oom = r->usage.oom_kills > 0;
            if (j->ended)
                j->ended(j->arg, r);
        }
        char *del[] = {(char *)j->runtime, "--root", (char *)j->state, "delete", "--force",
                       (char *)j->id,      NULL};
        int dst;
        spawn_wait(del, -1, -1, &dst, NULL, NULL,
                   EXEC_HELPER_MS); /* none made: nothing to delete */
    }
    unlink(cfg);
    if (j->pid_file)
        unlink(j->pid_file);
    int rc2 = exec_root_remove(j->dir);
    return rc ? rc : rc2;
}

int exec_spawn_wait(char *const argv[], int out, int err, int *status, uint64_t timeout_ms)
{
    return spawn_wait(argv, out, err, status, NULL, NULL, timeout_ms);
}

/* Runs `runtime --root state VERB [args] id` and says whether it exited 0. */
static int runtime_call(const char *runtime, const char *state, const char *verb, const char *a1,
                        const char *id, const char *a2)
{
    char *argv[] = {(char *)runtime, "--root",   (char *)state, (char *)verb,
                    (char *)a1,      (char *)id, (char *)a2,    NULL};
    if (!a1) { /* no option: the id comes next */
        argv[4] = (char *)id;
        argv[5] = (char *)a2;
        argv[6] = NULL;
    }
    int st = 0, rc = spawn_wait(argv, -1, -1, &st, NULL, NULL, EXEC_HELPER_MS);
    if (rc < 0)
        return rc;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -ESRCH;
}

int exec_job_kill(const char *runtime, const char *state, const char *id, int sig)
{
    char s[16];
    snprintf(s, sizeof s, "%d", sig);
    return runtime_call(runtime, state, "kill", "--all", id, s);
}

int exec_job_delete(const char *runtime, const char *state, const char *id)
{
    return runtime_call(runtime, state, "delete", "--force", id, NULL);
}

int exec_runtime_check(const char *runtime)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return err_set(-errno, "cannot check the runtime %s", runtime);
    char *argv[] = {(char *)runtime, "run", "--help", NULL};
    int st = 0, rc = spawn_wait(argv, p[1], -1, &st, NULL, NULL, EXEC_HELPER_MS);
    close(p[1]);
    char help[16384];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof help - 1 && (k = read(p[0], help + n, sizeof help - 1 - n)) > 0)
        n += (size_t)k;
    close(p[0]);
    help[n] = 0;
    if (rc < 0)
        return rc;
    if (!strstr(help, "--keep"))
        return err_set(AFSP_E_USAGE,
                       "the runtime %s cannot keep a container after its end (`run --keep`): "
                       "a job's usage and OOM kills could not be read",
                       runtime);
    return 0;
}
