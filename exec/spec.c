/*
 * spec.c - a job's config.json for the OCI runtime (runtime spec 1.0, as runc reads it): the
 * image's process (Entrypoint, Cmd, Env, WorkingDir) with the job's options over it, the user
 * the caller resolved, Docker's default capabilities, no new privileges and a seccomp filter
 * refusing what Docker's default profile refuses such a container, the cgroup limits,
 * the namespaces (a network one of its own unless the host's is asked for), the usual /proc,
 * /dev and /sys mounts with the kernel's sensitive files masked, and the job's volumes.
 *
 * Owns nothing past a call. Must not: do I/O, give a job more than the 14 capabilities, or a
 * volume it did not ask for.
 */
#include "exec.h"

#include "../store/oci/oci.h"
#include "../util/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

const char *const exec_caps[EXEC_CAPS_N] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE",
};

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define PIDS_MAX 4096 /* processes and threads of one job */

static const char *const masked[] = {
    "/proc/acpi",          "/proc/asound",     "/proc/kcore",       "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi",          "/sys/firmware",
};
static const char *const readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                       "/proc/sysrq-trigger"};

/*
 * The system calls a job is refused (EPERM) by its seccomp filter: those Docker's default profile
 * refuses a container without CAP_SYS_ADMIN and the other capabilities it withholds (keys, BPF,
 * perf, modules, kexec, mounts, namespaces, clocks, swap, NUMA policy, handles, userfaultfd,
 * io_uring), plus the newer mount API. Docker lists what it allows; this lists what it refuses,
 * so a system call newer than this list is allowed (its capability check still holds). A name
 * the runtime's libseccomp does not know on an architecture is skipped by runc.
 */
static const char *const seccomp_refused[] = {
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
};
#define CLONE_NEWUSER_FLAG 0x10000000 /* <sched.h>'s CLONE_NEWUSER, as the filter compares it */

/* The architectures the filter names: the native one and those its processes can also call as. */
#if defined(__x86_64__)
static const char *const seccomp_arches[] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};
#elif defined(__aarch64__)
static const char *const seccomp_arches[] = {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
#else
#error "name this architecture's seccomp architectures"
#endif

static json_t *strs(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static size_t strv_len(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

/* Sets NAME=VALUE in env (a JSON array): over an entry of the same NAME, else appended. */
static int env_set(json_t *env, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return err_set(AFSP_E_USAGE, "--env %s: not NAME=VALUE", kv);
    size_t nl = (size_t)(eq - kv) + 1;
    size_t i;
    json_t *e;
    json_array_foreach(env, i, e)
    {
        if (!strncmp(json_string_value(e), kv, nl))
            return json_array_set_new(env, i, json_string(kv)) ? -ENOMEM : 0;
    }
    return json_array_append_new(env, json_string(kv)) ? -ENOMEM : 0;
}

static bool env_has(json_t *env, const char *name)
{
    size_t i, nl = strlen(name);
    json_t *e;
    json_array_foreach(env, i, e)
    {
        const char *s = json_string_value(e);
        if (!strncmp(s, name, nl) && s[nl] == '=')
            return true;
    }
    return false;
}

static json_t *process_env(const struct exec_spec *s, int *rc)
{
    json_t *env = json_array();
    char buf[32 + 3 * EXEC_DEVICES_MAX];
    *rc = env ? 0 : -ENOMEM;
    for (size_t i = 0; *rc == 0 && s->img && s->img->env && s->img->env[i]; i++)
        *rc = env_set(env, s->img->env[i]);
    for (size_t i = 0; *rc == 0 && s->env && s->env[i]; i++)
        *rc = env_set(env, s->env[i]);
    if (*rc == 0 && !env_has(env, "PATH"))
        *rc = env_set(env, DEFAULT_PATH);
    if (*rc == 0 && s->slots_env) {
        size_t n = (size_t)snprintf(buf, sizeof buf, "%.31s=", s->slots_env);
        for (unsigned i = 0; i < EXEC_DEVICES_MAX; i++)
            if (s->slots >> i & 1)
                n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%u", buf[n - 1] == '=' ? "" : ",",
                                      i);
        *rc = env_set(env, buf);
    }
    if (*rc < 0) {
        json_decref(env);
        return NULL;
    }
    return env;
}

static json_t *process_args(const struct exec_spec *s)
{
    char *const *ep = s->img ? s->img->entrypoint : NULL;
    char *const *cmd = strv_len(s->args) ? s->args : s->img ? s->img->cmd : NULL;
    json_t *a = json_array();
    for (size_t i = 0; a && ep && ep[i]; i++)
        json_array_append_new(a, json_string(ep[i]));
    for (size_t i = 0; a && cmd && cmd[i]; i++)
        json_array_append_new(a, json_string(cmd[i]));
    return a;
}

static json_t *mount(const char *dst, const char *type, const char *src, const char *opts)
{
    json_t *o = json_array();
    char *copy = strdup(opts), *save = NULL;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(o, json_string(t));
    free(copy);
    return json_pack("{s:s, s:s, s:s, s:o}", "destination", dst, "type", type, "source", src,
                     "options", o);
}

static json_t *mounts(const struct exec_spec *s)
{
    json_t *m = json_array();
    json_array_append_new(m, mount("/proc", "proc", "proc", "nosuid,noexec,nodev"));
    json_array_append_new(
        m, mount("/dev", "tmpfs", "tmpfs", "nosuid,strictatime,mode=755,size=65536k"));
    json_array_append_new(m, mount("/dev/pts", "devpts", "devpts",
                                   "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5"));
    json_array_append_new(
        m, mount("/dev/shm", "tmpfs", "shm", "nosuid,noexec,nodev,mode=1777,size=65536k"));
    json_array_append_new(m, mount("/dev/mqueue", "mqueue", "mqueue", "nosuid,noexec,nodev"));
    /* sysfs can only be mounted in a network namespace of the job's own; else the host's, bound.
     * A bind's ro, nosuid, nodev and noexec hold only for its top mount: the r-forms (runc's
     * mount_setattr with AT_RECURSIVE) hold for the mounts beneath it too. */
    if (s->net_host)
        json_array_append_new(m, mount("/sys", "none", "/sys",
                                       "rbind,nosuid,noexec,nodev,ro,rro,rnosuid,rnoexec,rnodev"));
    else
        json_array_append_new(m, mount("/sys", "sysfs", "sysfs", "nosuid,noexec,nodev,ro"));
    json_array_append_new(
        m, mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid,noexec,nodev,relatime,ro"));
    for (size_t i = 0; i < s->nvolumes; i++)
        json_array_append_new(m, mount(s->volumes[i].dst, "none", s->volumes[i].src,
                                       s->volumes[i].ro
                                           ? "rbind,rprivate,nosuid,nodev,ro,rro,rnosuid,rnodev"
                                           : "rbind,rprivate,nosuid,nodev,rw,rnosuid,rnodev"));
    return m;
}

/* Allows all but seccomp_refused (EPERM), clone with a new user namespace (EPERM) and clone3,
 * whose flags sit in memory the filter cannot read (ENOSYS: libc falls back to clone). */
static json_t *seccomp(void)
{
    json_t *refused = strs(seccomp_refused, sizeof seccomp_refused / sizeof seccomp_refused[0]);
    return json_pack("{s:s, s:o, s:[{s:o, s:s, s:I}, {s:[s], s:s, s:I, s:[{s:I, s:I, s:I, s:s}]}, "
                     "{s:[s], s:s, s:I}]}",
                     "defaultAction", "SCMP_ACT_ALLOW", "architectures",
                     strs(seccomp_arches, sizeof seccomp_arches / sizeof seccomp_arches[0]),
                     "syscalls", "names", refused, "action", "SCMP_ACT_ERRNO", "errnoRet",
                     (json_int_t)EPERM, "names", "clone", "action", "SCMP_ACT_ERRNO", "errnoRet",
                     (json_int_t)EPERM, "args", "index", (json_int_t)0, "value",
                     (json_int_t)CLONE_NEWUSER_FLAG, "valueTwo", (json_int_t)CLONE_NEWUSER_FLAG,
                     "op", "SCMP_CMP_MASKED_EQ", "names", "clone3", "action", "SCMP_ACT_ERRNO",
                     "errnoRet", (json_int_t)ENOSYS);
}

static json_t *linux_section(const struct exec_spec *s)
{
    json_t *ns = json_array();
    static const char *const kinds[] = {"pid", "ipc", "uts", "mount", "network"};
    for (size_t i = 0; i < 5u - s->net_host; i++)
        json_array_append_new(ns, json_pack("{s:s}", "type", kinds[i]));
    json_int_t quota = (json_int_t)((uint64_t)s->res.millicpus * EXEC_CPU_PERIOD / EXEC_MILLI);
    json_t *res = json_pack("{s:{s:I, s:I}, s:{s:I, s:I}, s:{s:I}, s:[{s:b, s:s}]}", "memory",
                            "limit", (json_int_t)s->res.memory, "swap", (json_int_t)s->res.memory,
                            "cpu", "quota", quota, "period", (json_int_t)EXEC_CPU_PERIOD, "pids",
                            "limit", (json_int_t)PIDS_MAX, "devices", "allow", 0, "access", "rwm");
    /* the job's device slots' nodes: made in its /dev, and allowed by its device cgroup */
    json_t *devs = json_array(), *allow = json_object_get(res, "devices");
    for (size_t i = 0; i < s->ndevices; i++) {
        const struct exec_device *d = &s->devices[i];
        const char type[2] = {d->block ? 'b' : 'c', 0};
        json_array_append_new(devs, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "path",
                                              d->path, "type", type, "major", (json_int_t)d->major,
                                              "minor", (json_int_t)d->minor, "fileMode",
                                              (json_int_t)(d->mode & 07777), "uid", (json_int_t)0,
                                              "gid", (json_int_t)0));
        json_array_append_new(allow, json_pack("{s:b, s:s, s:I, s:I, s:s}", "allow", 1, "type",
                                               type, "major", (json_int_t)d->major, "minor",
                                               (json_int_t)d->minor, "access", "rwm"));
    }
    return json_pack("{s:o, s:o, s:o, s:s, s:o, s:o, s:o}", "namespaces", ns, "devices", devs,
                     "resources", res, "cgroupsPath", s->cgroups_path, "maskedPaths",
                     strs(masked, sizeof masked / sizeof masked[0]), "readonlyPaths",
                     strs(readonly, sizeof readonly / sizeof readonly[0]), "seccomp", seccomp());
}

static int check(const struct exec_spec *s, const char *cwd)
{
    if (!s->hostname || !*s->hostname || !s->cgroups_path || !*s->cgroups_path)
        return err_set(AFSP_E_USAGE, "a job needs a hostname and a cgroups path");
    if (*cwd != '/')
        return err_set(AFSP_E_USAGE, "the working directory %s is not an absolute path", cwd);
    if (s->res.memory > INT64_MAX || !s->res.millicpus || !s->res.memory)
        return err_set(AFSP_E_USAGE, "a job needs some cpu and some memory");
    for (size_t i = 0; i < s->nvolumes; i++)
        if (!s->volumes[i].src || !s->volumes[i].dst || *s->volumes[i].src != '/' ||
            *s->volumes[i].dst != '/')
            return err_set(AFSP_E_USAGE, "volume %zu: both paths must be absolute", i + 1);
    for (size_t i = 0; i < s->ndevices; i++)
        if (!s->devices[i].path || strncmp(s->devices[i].path, "/dev/", 5))
            return err_set(AFSP_E_USAGE, "device %zu: its path must be under /dev/", i + 1);
    return 0;
}

int exec_spec_json(const struct exec_spec *s, char **out)
{
    const char *cwd = s->workdir                                      ? s->workdir
                      : s->img && s->img->workdir && *s->img->workdir ? s->img->workdir
                                                                      : "/";
    int rc = check(s, cwd);
    *out = NULL;
    if (rc < 0)
        return rc;
    json_t *args = process_args(s), *env = process_env(s, &rc);
    if (rc == 0 && (!args || !env))
        rc = -ENOMEM;
    if (rc == 0 && !json_array_size(args))
        rc = err_set(AFSP_E_USAGE, "the image has no command, and none was given");
    if (rc < 0) {
        json_decref(args);
        json_decref(env);
        return rc;
    }
    json_t *caps = strs(exec_caps, EXEC_CAPS_N);
    json_t *spec = json_pack(
        "{s:s, s:{s:b, s:{s:I, s:I}, s:o, s:o, s:s, s:{s:O, s:O, s:o}, s:[{s:s, s:I, s:I}], "
        "s:b}, s:{s:s, s:b}, s:s, s:o, s:o}",
        "ociVersion", "1.0.2", "process", "terminal", 0, "user", "uid", (json_int_t)s->uid, "gid",
        (json_int_t)s->gid, "args", args, "env", env, "cwd", cwd, "capabilities", "bounding", caps,
        "effective", caps, "permitted", caps, "rlimits", "type", "RLIMIT_NOFILE", "hard",
        (json_int_t)1024, "soft", (json_int_t)1024, "noNewPrivileges", 1, "root", "path", "rootfs",
        "readonly", 0, "hostname", s->hostname, "mounts", mounts(s), "linux", linux_section(s));
    *out = spec ? json_dumps(spec, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(spec);
    return *out ? 0 : -ENOMEM;
}
