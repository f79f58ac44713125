/*
 * exec_start.c - what a job's start and end cost over the runtime's own (docs/exec.md): a
 * trivial job (/bin/true) run by exec_job_run (the root made: a tmpfs scratch and an overlay of
 * the image; config.json; `runc run --keep`; the cgroup read; `runc delete`; the root removed)
 * against bare `runc run` of a bundle made once (its overlay mounted beforehand, its config.json
 * written), round by round, interleaved. The image is this machine's root file system, read
 * through the overlay as an afsp mount would be.
 *
 *   exec_start DIR [ROUNDS (20)]     DIR: an empty directory on a disk
 *
 * Prints a markdown table: median and best of each, and the difference.
 */
#include "../exec/exec.h"
#include "../util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: exec_start DIR [ROUNDS]\n");
        return 2;
    }
    const char *top = argv[1];
    int rounds = argc > 2 ? atoi(argv[2]) : 20;
    if (rounds < 1 || rounds > 1000)
        return 2;
    char state[512], bare[512], cmd[2048], dir[512];
    snprintf(state, sizeof state, "%s/runc", top);
    snprintf(bare, sizeof bare, "%s/bare", top);
    char *args[] = {"/bin/true", NULL};
    struct exec_spec spec = {.args = args,
                             .res = {.millicpus = 1000, .memory = 256u << 20},
                             .hostname = "bench",
                             .cgroups_path = "afsp-bench/bare"};
    char *json = NULL;
    int rc = mkdir(bare, 0700) < 0 && errno != EEXIST ? -errno : 0;
    if (rc == 0 && (rc = exec_root_make(bare, "/", 64u << 20)) == 0)
        rc = exec_spec_json(&spec, &json);
    if (rc < 0) {
        fprintf(stderr, "exec_start: %s: %s\n", bare, err_msg(rc));
        return 1;
    }
    snprintf(cmd, sizeof cmd, "%s/config.json", bare);
    FILE *f = fopen(cmd, "w");
    if (!f || fputs(json, f) < 0 || fclose(f) != 0)
        return 1;
    free(json);
    double *tb = calloc((size_t)rounds, sizeof *tb), *tj = calloc((size_t)rounds, sizeof *tj);
    int failed = 0;
    for (int r = 0; r <= rounds; r++) { /* round 0 warms up */
        for (int k = 0; k < 2; k++) {
            bool job = (r + k) % 2; /* odd rounds: the bare runtime first */
            double t0 = now_s();
            if (job) {
                snprintf(dir, sizeof dir, "%s/j%d", top, r);
                mkdir(dir, 0700);
                char id[64], cg[64];
                snprintf(id, sizeof id, "afsp-bench-j%d", r);
                snprintf(cg, sizeof cg, "afsp-bench/j%d", r);
                struct exec_job j = {.id = id,
                                     .dir = dir,
                                     .lower = "/",
                                     .runtime = "runc",
                                     .state = state,
                                     .scratch = 64u << 20,
                                     .out_fd = -1,
                                     .err_fd = -1,
                                     .spec = spec};
                j.spec.cgroups_path = cg;
                struct exec_result res;
                failed += exec_job_run(&j, &res) < 0 || res.status != 0;
                rmdir(dir);
            } else {
                snprintf(cmd, sizeof cmd,
                         "runc --root %s run --bundle %s afsp-bench-bare >/dev/null 2>&1", state,
                         bare);
                failed += system(cmd) != 0;
            }
            if (r)
                (job ? tj : tb)[r - 1] = now_s() - t0;
        }
    }
    snprintf(cmd, sizeof cmd, "%s/config.json", bare);
    unlink(cmd);
    exec_root_remove(bare);
    rmdir(bare);
    snprintf(cmd, sizeof cmd,
             "find /sys/fs/cgroup -maxdepth 6 -depth -type d -name afsp-bench -exec rmdir {} +");
    if (system(cmd) != 0)
        failed++;
    double bb, jb;
    double *sb = malloc((size_t)rounds * sizeof *sb), *sj = malloc((size_t)rounds * sizeof *sj);
    memcpy(sb, tb, (size_t)rounds * sizeof *sb);
    memcpy(sj, tj, (size_t)rounds * sizeof *sj);
    double mb = median(sb, rounds), mj = median(sj, rounds);
    bb = sb[0];
    jb = sj[0];
    printf("| | median, s | best, s |\n|---|---|---|\n");
    printf("| bare `runc run` of a bundle made once | %.4f | %.4f |\n", mb, bb);
    printf("| `exec_job_run` (root, config.json, run --keep, cgroup, delete, cleanup) | %.4f | "
           "%.4f |\n",
           mj, jb);
    printf("\nexec_job_run over bare runc: %+.1f ms (median against median), %+.1f ms (median "
           "against the bare runtime's best round); %d rounds each, interleaved%s.\n",
           (mj - mb) * 1e3, (mj - bb) * 1e3, rounds, failed ? "; SOME RUNS FAILED" : "");
    free(tb);
    free(tj);
    free(sb);
    free(sj);
    return failed ? 1 : 0;
}
