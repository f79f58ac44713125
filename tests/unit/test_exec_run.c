/*
 * test_exec_run.c - one job from start to end (exec/run.c) with the real runtime (runc) and real
 * cgroups: its output and exit status, its writes kept out of the image, a job over its memory
 * reported OOM from the kernel's count and one killed by SIGKILL not, and nothing left behind
 * (mounts, container, job directory contents). The image is this machine's root file system, read
 * through the job's overlay (an afsp mount is the lower in the integration tests of `afsp run`).
 */
#include "../../exec/exec.h"
#include "../../util/util.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct run {
    char dir[300], state[300], out[300], err[300], cg[128], id[64];
    struct exec_result r;
    int rc;
};

static bool file_has(const char *path, const char *text)
{
    char buf[4096];
    return test_slurp(path, buf, sizeof buf) && strstr(buf, text);
}

static void run_job(struct run *x, const char *name, uint64_t memory, char **args,
                    const char *runtime)
{
    const char *t = test_tmpdir();
    snprintf(x->id, sizeof x->id, "afsp-test-%d-%s", (int)getpid(), name);
    snprintf(x->dir, sizeof x->dir, "%s/%s", t, name);
    snprintf(x->state, sizeof x->state, "%s/runc", t);
    snprintf(x->out, sizeof x->out, "%s/%s.out", t, name);
    snprintf(x->err, sizeof x->err, "%s/%s.err", t, name);
    snprintf(x->cg, sizeof x->cg, "afsp-test-%d/%s", (int)getpid(), name);
    CHECK(mkdir(x->dir, 0700) == 0);
    int out = open(x->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(x->err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(out >= 0 && err >= 0);
    struct exec_job j = {.id = x->id,
                         .dir = x->dir,
                         .lower = "/",
                         .runtime = runtime,
                         .state = x->state,
                         .scratch = 16u << 20,
                         .out_fd = out,
                         .err_fd = err,
                         .spec = {.args = args,
                                  .uid = 1000,
                                  .gid = 1000,
                                  .res = {.millicpus = 1000, .memory = memory},
                                  .hostname = "job",
                                  .cgroups_path = x->cg}};
    x->rc = exec_job_run(&j, &x->r);
    close(out);
    close(err);
}

/* Nothing of job x left: no mount under its directory, its directory empty, no container. */
static void check_clean(const struct run *x)
{
    char p[400];
    CHECK(!test_mounted_under(x->dir));
    const char *left[] = {"rootfs", "scratch", "config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", x->dir, left[i]);
        CHECK(access(p, F_OK) < 0 && errno == ENOENT);
    }
    snprintf(p, sizeof p, "%s/%s", x->state, x->id);
    CHECK(access(p, F_OK) < 0 && errno == ENOENT);
}

/* Removes the empty cgroups named name (a glob) in every hierarchy; find's status. */
static int cgroups_rmdir(const char *name)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd,
             "find /sys/fs/cgroup -maxdepth 6 -depth -type d -name '%s' -exec rmdir {} +", name);
    return system(cmd);
}

TEST(exec_a_job_runs_to_its_end_with_its_status_output_and_usage)
{
    cgroups_rmdir("afsp-test-*"); /* empty ones a failed run of this test left (a check that
                                     fails ends the test at once) */
    char *ok[] = {"/usr/bin/python3", "-c",
                  "import os, sys\n"
                  "print('out', os.getuid(), os.getgid())\n"
                  "print('err', file=sys.stderr)\n"
                  "open('/tmp/afsp-job-wrote-this', 'w').write('x')\n"
                  "sum(range(2000000))\n"
                  "sys.exit(3)",
                  NULL};
    struct run a;
    run_job(&a, "ok", 256u << 20, ok, "runc");
    CHECK_INT(a.rc, ==, 0);
    CHECK_INT(a.r.status, ==, 3);
    CHECK(!a.r.oom && a.r.usage.oom_kills == 0);
    CHECK(a.r.usage.cpu_ns > 0 && a.r.usage.mem_peak > 0);
    CHECK(file_has(a.out, "out 1000 1000"));
    CHECK(file_has(a.err, "err"));
    CHECK(access("/tmp/afsp-job-wrote-this", F_OK) < 0 && errno == ENOENT); /* not in the image */
    check_clean(&a);

    /* over its memory: OOM, from the kernel's count */
    char *big[] = {"/usr/bin/python3", "-c", "b = bytearray(256 << 20)", NULL};
    struct run b;
    run_job(&b, "oom", 64u << 20, big, "runc");
    CHECK_INT(b.rc, ==, 0);
    CHECK_INT(b.r.status, ==, 137);
    CHECK(b.r.oom && b.r.usage.oom_kills >= 1);
    CHECK_INT(b.r.usage.mem_peak, <=, 64u << 20);
    check_clean(&b);

    /* killed by SIGKILL (a child of the job's first process: the first ignores it): 137, but
     * not OOM */
    char *kill9[] = {"/bin/sh", "-c", "python3 -c 'import os; os.kill(os.getpid(), 9)'", NULL};
    struct run c;
    run_job(&c, "kill", 256u << 20, kill9, "runc");
    CHECK_INT(c.rc, ==, 0);
    CHECK_INT(c.r.status, ==, 137);
    CHECK(!c.r.oom && c.r.usage.oom_kills == 0);
    check_clean(&c);

    /* no runtime: an error, nothing left */
    struct run d;
    run_job(&d, "noruntime", 256u << 20, ok, "/nonexistent/runc");
    CHECK(d.rc == -ENOENT);
    check_clean(&d);

    /* the parents runc leaves in each hierarchy */
    char name[64];
    snprintf(name, sizeof name, "afsp-test-%d", (int)getpid());
    CHECK(cgroups_rmdir(name) == 0);
}

/* A helper that does not end is killed at its time limit and reaped; one that ends is waited
 * for, its status kept. */
TEST(exec_a_helper_past_its_time_is_killed)
{
    char *hang[] = {"sleep", "30", NULL}, *ok[] = {"sh", "-c", "exit 3", NULL};
    int st = 0;
    uint64_t t0 = time_mono_ns();
    CHECK_INT(exec_spawn_wait(hang, -1, -1, &st, 200), ==, -ETIMEDOUT);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    CHECK_INT((time_mono_ns() - t0) / 1000000, <, 20000); /* not the helper's own 30 s */
    CHECK_INT(exec_spawn_wait(ok, -1, -1, &st, 10000), ==, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    CHECK_INT(exec_spawn_wait(ok, -1, -1, &st, 0), ==, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
}
