/*
 * test_exec_cgroup.c - what a job used, from its cgroup (exec/cgroup.c): the kernel's own files
 * of a fresh cgroup made here on this machine's hierarchy, and copies of v1 and v2 trees (v2 is
 * not mounted here: its formats are tested on a copy only), with bad files refused.
 */
#include "../../exec/exec.h"
#include "../../util/util.h"
#include "test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void mkdirs(const char *base, const char *sub)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", base, sub);
    for (char *s = p + strlen(base) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        mkdir(p, 0755);
        *s = '/';
    }
    CHECK(mkdir(p, 0755) == 0 || errno == EEXIST);
}

TEST(exec_usage_is_read_from_copies_of_v1_and_v2_cgroups)
{
    char base[256], d[600];
    struct exec_usage u;
    snprintf(base, sizeof base, "%s", test_tmpdir());
    /* the process that starts the runtime: its memory cgroup is /node/x (v1), its unified one
     * /node/y (v2); a relative path is under those, as runc places it */
    char self[300];
    test_put(base, "self", "9:name=systemd:/\n4:memory:/node/x/\n2:cpu,cpuacct:/\n0::/node/y\n");
    snprintf(self, sizeof self, "%s/self", base);
    /* v1 */
    mkdirs(base, "cpuacct/afsp/j1");
    mkdirs(base, "memory/node/x/afsp/j1");
    snprintf(d, sizeof d, "%s/cpuacct/afsp/j1", base);
    test_put(d, "cpuacct.usage", "1500000000\n");
    snprintf(d, sizeof d, "%s/memory/node/x/afsp/j1", base);
    test_put(d, "memory.max_usage_in_bytes", "67108864\n");
    test_put(d, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
    CHECK(exec_cgroup_usage(base, self, "afsp/j1", &u) == 0);
    CHECK(u.cpu_ns == 1500000000ull && u.mem_peak == 64u << 20 && u.oom_kills == 2);
    /* an absolute path is from the hierarchy's root: there is no /afsp/j1 in memory/ */
    CHECK(exec_cgroup_usage(base, self, "/afsp/j1", &u) == -ENOENT);
    /* a process file without the controller, or garbled */
    char other[300];
    test_put(base, "other", "2:cpu,cpuacct:/\n");
    snprintf(other, sizeof other, "%s/other", base);
    CHECK(exec_cgroup_usage(base, other, "afsp/j1", &u) == AFSP_E_FORMAT);
    test_put(base, "other", "garbage\n");
    CHECK(exec_cgroup_usage(base, other, "afsp/j1", &u) == AFSP_E_FORMAT);
    CHECK(exec_cgroup_usage(base, self, "afsp/j2", &u) == -ENOENT);
    test_put(d, "memory.oom_control",
             "oom_kill_disable 0\nunder_oom 0\n"); /* a kernel before 4.13 */
    CHECK(exec_cgroup_usage(base, self, "afsp/j1", &u) == AFSP_E_FORMAT);
    test_put(d, "memory.oom_control", "oom_kill x\n");
    CHECK(exec_cgroup_usage(base, self, "afsp/j1", &u) == AFSP_E_FORMAT);
    test_put(d, "memory.oom_control", "oom_kill 0\n");
    test_put(d, "memory.max_usage_in_bytes", "-5\n");
    CHECK(exec_cgroup_usage(base, self, "afsp/j1", &u) == AFSP_E_FORMAT);
    test_put(d, "memory.max_usage_in_bytes", "99999999999999999999999\n");
    CHECK(exec_cgroup_usage(base, self, "afsp/j1", &u) == AFSP_E_FORMAT);
    /* v2: the unified tree has cgroup.controllers at its top */
    test_put(base, "cgroup.controllers", "cpu memory pids\n");
    mkdirs(base, "node/y/afsp/j1");
    snprintf(d, sizeof d, "%s/node/y/afsp/j1", base);
    test_put(d, "cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n");
    test_put(d, "memory.peak", "1048576\n");
    test_put(d, "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n");
    CHECK(exec_cgroup_usage(base, self, "afsp/j1", &u) == 0);
    CHECK(u.cpu_ns == 2500000 && u.mem_peak == 1u << 20 && u.oom_kills == 1);
    test_put(d, "cpu.stat", "user_usec 2000\n");
    CHECK(exec_cgroup_usage(base, self, "afsp/j1", &u) == AFSP_E_FORMAT);
}

TEST(exec_usage_is_read_from_a_real_cgroup_of_this_machine)
{
    /* cgroups made here at the hierarchies' roots, empty: all zero (v1 controllers, as on this
     * machine; on a unified hierarchy, one cgroup) */
    char name[64], p[256];
    snprintf(name, sizeof name, "/afsp-test-%d", (int)getpid());
    bool v2 = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
    const char *ctl[] = {v2 ? "." : "cpuacct", "memory"};
    int nctl = v2 ? 1 : 2;
    for (int i = 0; i < nctl; i++) {
        snprintf(p, sizeof p, "/sys/fs/cgroup/%s%s", ctl[i], name);
        CHECK(mkdir(p, 0755) == 0);
    }
    struct exec_usage u = {1, 1, 1};
    int rc = exec_cgroup_usage("/sys/fs/cgroup", "/proc/self/cgroup", name, &u);
    for (int i = 0; i < nctl; i++) {
        snprintf(p, sizeof p, "/sys/fs/cgroup/%s%s", ctl[i], name);
        CHECK(rmdir(p) == 0);
    }
    CHECK_INT(rc, ==, 0);
    CHECK(u.cpu_ns == 0 && u.mem_peak == 0 && u.oom_kills == 0);
}

TEST(exec_sweep_removes_only_this_nodes_cgroups_and_then_the_parent)
{
    /* a copy of a v1 tree (empty directories: rmdir takes them as the kernel's would): two
     * nodes' jobs below afsp in two hierarchies; this process's memory cgroup is /node/x */
    char base[256], self[300], p[700];
    snprintf(base, sizeof base, "%s", test_tmpdir());
    test_put(base, "self", "4:memory:/node/x\n2:cpu,cpuacct:/\n1:name=systemd:/\n");
    snprintf(self, sizeof self, "%s/self", base);
    mkdirs(base, "memory/node/x/afsp/aaaa0001-1");
    mkdirs(base, "memory/node/x/afsp/aaaa0001-7");
    mkdirs(base, "memory/node/x/afsp/bbbb0002-1");
    mkdirs(base, "cpu/afsp/aaaa0001-1");
    mkdirs(base, "cpu/afsp/bbbb0002-1");
    mkdirs(base, "systemd/afsp/aaaa0001-1");
    CHECK_INT(exec_cgroup_sweep(base, self, "afsp", "aaaa0001-", true), ==, 4);
    snprintf(p, sizeof p, "%s/memory/node/x/afsp/aaaa0001-7", base);
    CHECK(access(p, F_OK) < 0);
    snprintf(p, sizeof p, "%s/memory/node/x/afsp/bbbb0002-1", base);
    CHECK(access(p, F_OK) == 0); /* another node's job */
    snprintf(p, sizeof p, "%s/systemd/afsp", base);
    CHECK(access(p, F_OK) < 0); /* emptied: the parent went too */
    snprintf(p, sizeof p, "%s/cpu/afsp", base);
    CHECK(access(p, F_OK) == 0); /* the other node's job is below it */
    CHECK_INT(exec_cgroup_sweep(base, self, "afsp", "bbbb0002-", true), ==, 2);
    snprintf(p, sizeof p, "%s/memory/node/x/afsp", base);
    CHECK(access(p, F_OK) < 0);
    CHECK_INT(exec_cgroup_sweep(base, self, "afsp", "bbbb0002-", true), ==, 0);
}
