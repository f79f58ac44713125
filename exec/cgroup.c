/*
 * cgroup.c - what a job used, read from its cgroup after it ends (the runtime keeps the cgroup
 * until the job is deleted): cpu time, peak memory, and OOM kills counted by the kernel (not
 * guessed from an exit status of 137). Both hierarchies: v1 (this machine: hybrid, the
 * controllers on v1) and v2 (unified; only its file formats are tested here, on a copy).
 *
 * v1: cpuacct/PATH/cpuacct.usage (ns), memory/PATH/memory.max_usage_in_bytes,
 *     memory/PATH/memory.oom_control's "oom_kill N" (kernels since 4.13).
 * v2: PATH/cpu.stat's "usage_usec N", PATH/memory.peak, PATH/memory.events's "oom_kill N".
 */
#include "exec.h"

#include "../util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_MAX 4096 /* the cgroup files read are a few lines */

/* The whole of file p (at most n - 1 bytes) into buf, NUL-terminated. */
static int read_small(const char *p, char *buf, size_t n)
{
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : err_set(-errno, "cannot open %s", p);
    ssize_t k = read(fd, buf, n - 1);
    int e = errno;
    close(fd);
    if (k < 0)
        return err_set(-e, "cannot read %s", p);
    buf[k] = 0;
    return 0;
}

static int number(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return AFSP_E_FORMAT;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || (*end && *end != '\n' && *end != ' '))
        return AFSP_E_FORMAT;
    *out = v;
    return 0;
}

/* The value of "key N" in a file of such lines. */
static int keyed(const char *text, const char *key, uint64_t *out)
{
    size_t kn = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, key, kn) && p[kn] == ' ')
            return number(p + kn + 1, out);
    return AFSP_E_FORMAT;
}

/* Where the cgroup of controller ctl (NULL: v2's unified one) for path is: base/ctl/PREFIX/path,
 * PREFIX the starting process's cgroup in that hierarchy when path is relative (self's line
 * "N:ctl[,ctl...]:PREFIX", or "0::PREFIX" for v2). */
static int locate(const char *base, const char *self, const char *ctl, const char *path,
                  char out[static 4096])
{
    char text[FILE_MAX], prefix[1024] = "";
    int rc;
    if (*path != '/') {
        bool found = false;
        if ((rc = read_small(self, text, sizeof text)) < 0)
            return rc;
        for (char *l = text, *save = NULL; !found && (l = strtok_r(l, "\n", &save)); l = NULL) {
            char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *s2 = NULL;
            if (!c2)
                return AFSP_E_FORMAT;
            *c2 = 0;
            found = !ctl && c2 == c1 + 1;
            for (char *t = strtok_r(c1 + 1, ",", &s2); ctl && !found && t;
                 t = strtok_r(NULL, ",", &s2))
                found = !strcmp(t, ctl);
            if (found && snprintf(prefix, sizeof prefix, "%s", c2 + 1) >= (int)sizeof prefix)
                return AFSP_E_FORMAT;
        }
        if (!found)
            return AFSP_E_FORMAT;
    }
    size_t pl = strlen(prefix);
    while (pl && prefix[pl - 1] == '/')
        prefix[--pl] = 0;
    if (snprintf(out, 4096, "%s%s%s%s%s%s", base, ctl ? "/" : "", ctl ? ctl : "", prefix,
                 *path == '/' ? "" : "/", path) >= 4096)
        return AFSP_E_FORMAT;
    return 0;
}

static int file_number(const char *dir, const char *file, uint64_t *out)
{
    char p[4200], buf[FILE_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int rc = read_small(p, buf, sizeof buf);
    return rc < 0 ? rc : number(buf, out);
}

static int file_keyed(const char *dir, const char *file, const char *key, uint64_t *out)
{
    char p[4200], buf[FILE_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int rc = read_small(p, buf, sizeof buf);
    return rc < 0 ? rc : keyed(buf, key, out);
}

int exec_cgroup_usage(const char *base, const char *self, const char *path, struct exec_usage *u)
{
    char probe[4096], cpu[4096], mem[4096];
    uint64_t us = 0;
    int rc;
    memset(u, 0, sizeof *u);
    snprintf(probe, sizeof probe, "%s/cgroup.controllers", base);
    if (access(probe, F_OK) == 0) { /* v2 */
        if ((rc = locate(base, self, NULL, path, cpu)) < 0 ||
            (rc = file_keyed(cpu, "cpu.stat", "usage_usec", &us)) < 0 ||
            (rc = file_number(cpu, "memory.peak", &u->mem_peak)) < 0 ||
            (rc = file_keyed(cpu, "memory.events", "oom_kill", &u->oom_kills)) < 0)
            return rc;
        u->cpu_ns = us * 1000;
        return 0;
    }
    if ((rc = locate(base, self, "cpuacct", path, cpu)) < 0 ||
        (rc = locate(base, self, "memory", path, mem)) < 0 ||
        (rc = file_number(cpu, "cpuacct.usage", &u->cpu_ns)) < 0 ||
        (rc = file_number(mem, "memory.max_usage_in_bytes", &u->mem_peak)) < 0 ||
        (rc = file_keyed(mem, "memory.oom_control", "oom_kill", &u->oom_kills)) < 0)
        return rc;
    return 0;
}

/* Kills what is left in cgroup dir and removes it: its processes die asynchronously, so the
 * removal is tried again for up to a second. Returns 0 or a negative errno. */
static int cgroup_remove(const char *dir)
{
    char p[4500], buf[FILE_MAX];
    snprintf(p, sizeof p, "%s/cgroup.procs", dir);
    for (int tries = 0; tries < 100; tries++) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return -errno;
        if (read_small(p, buf, sizeof buf) == 0)
            for (char *l = buf, *save = NULL; (l = strtok_r(l, "\n", &save)); l = NULL) {
                uint64_t pid;
                if (number(l, &pid) == 0 && pid > 1)
                    kill((pid_t)pid, SIGKILL);
            }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -EBUSY;
}

int exec_cgroup_sweep(const char *base, const char *self, const char *parent, const char *prefix,
                      bool remove_parent)
{
    char text[FILE_MAX], dir[4096], probe[4096];
    int rc, removed = 0;
    if ((rc = read_small(self, text, sizeof text)) < 0)
        return rc;
    snprintf(probe, sizeof probe, "%s/cgroup.controllers", base);
    bool v2 = access(probe, F_OK) == 0;
    for (char *l = text, *save = NULL; (l = strtok_r(l, "\n", &save)); l = NULL) {
        char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || (v2 != (c2 == c1 + 1)))
            continue; /* v2: only the unified line; v1: only the controllers' */
        *c2 = 0;
        char *ctl = c1 + 1, *comma = strchr(ctl, ',');
        if (comma)
            *comma = 0; /* the hierarchy's directory is named after any of its controllers */
        if (!strncmp(ctl, "name=", 5))
            ctl += 5;
        const char *own = strcmp(c2 + 1, "/") ? c2 + 1 : ""; /* this process's cgroup */
        if (snprintf(dir, sizeof dir, "%s%s%s%s/%s", base, v2 ? "" : "/", v2 ? "" : ctl, own,
                     parent) >= (int)sizeof dir)
            continue;
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_type == DT_DIR && e->d_name[0] != '.' &&
                !strncmp(e->d_name, prefix, strlen(prefix))) {
                char sub[4400];
                snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
                removed += cgroup_remove(sub) == 0;
            }
        closedir(d);
        if (remove_parent)
            rmdir(dir); /* EBUSY while another node's jobs are below it */
    }
    return removed;
}
