/*
 * run.c - `afsp run`, `jobs`, `logs`, `kill` and `wait`: jobs on the node of the data directory
 * (docs/exec.md). The node runs them; these ask it (node_ask) and show its answers. A job's
 * output is in DATA/jobs/ID/out and err, which `run` (in front) and `logs -f` follow until the
 * node says the job has ended.
 */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const struct command cmd_run_def = {
    "run", cmd_run, "run a program on an image, on this node (runc, a lazy mount)",
    "[-d] [--name NAME] [--cpus N] [--memory N] [--scratch-size N] [--devices N]\n"
    "       [--env NAME=VALUE]... [--workdir DIR] [--user USER[:GROUP]]\n"
    "       [--volume HOST:PATH[:ro]]... [--publish PORT]... [--net none|host] [--queue]\n"
    "       [--platform P] [--insecure-registry HOST]... IMAGE [--] [COMMAND [ARG...]]\n"
    "\n"
    "Asks the node on the data directory to run COMMAND (else the image's own) on IMAGE,\n"
    "pulled lazily if this node lacks it: only the chunks the program reads are fetched.\n"
    "The job runs in a container (the OCI runtime, runc) whose root is the image, read-only\n"
    "and shared by every job on it, under a writable layer of the job's own. Its stdout and\n"
    "stderr are shown as they come, and afsp run exits with its status: the program's, or\n"
    "128 + the signal that ended it (137 for a job killed for its memory), or 125 when the\n"
    "job could not run (why, on stderr). Ctrl-C is passed to the job.\n"
    "\n"
    "  -d, --detach         print the job's id and return; see afsp logs, wait, jobs\n"
    "  --name NAME          a name for the job (letters, digits, '_', '.', '-')\n"
    "  --cpus N             cpus, e.g. 0.5 (default 1): its cpu time is capped at that\n"
    "  --memory N           memory, e.g. 4G (default 1G): past it, the kernel kills it\n"
    "  --scratch-size N     bytes it may write (default 1G): a tmpfs, which counts against\n"
    "                       --memory too; past it, writes fail with ENOSPC\n"
    "  --devices N          device slots (the node's --devices), in its *_VISIBLE_DEVICES\n"
    "  --env NAME=VALUE     set a variable (over the image's)\n"
    "  --workdir DIR        its working directory (default: the image's, else /)\n"
    "  --user U[:G]         who it runs as: names from the image's /etc/passwd, or ids\n"
    "                       (default: the image's user, else root)\n"
    "  --volume HOST:PATH[:ro]\n"
    "                       bind HOST's directory or file at PATH (read-only with :ro);\n"
    "                       never the node's data directory or keys\n"
    "  --publish PORT       reach the job's PORT (on its loopback) through a port of the\n"
    "                       node, given from its --publish-range and shown by afsp run\n"
    "                       and afsp jobs\n"
    "  --net none|host      none (default): only its own loopback; host: the node's network\n"
    "  --queue              wait for room if the node is full, first in, first out\n"
    "                       (else a job that does not fit now is refused)\n"
    "\n"
    "A job never sees the node's data directory, keys or control socket; it runs with\n"
    "Docker's default capabilities and no new privileges.\n",
    false};

const struct command cmd_jobs_def = {"jobs", cmd_jobs, "list this node's jobs",
                                     "[--json]\n"
                                     "\n"
                                     "Lists the jobs the node on the data directory runs, "
                                     "queues, or ran (the newest\n"
                                     "256 ended ones): id, name, state, image, cpus, memory, cpu "
                                     "seconds, memory peak,\n"
                                     "and the exit status.\n"
                                     "\n"
                                     "  --json   {\"jobs\": [{\"id\", \"name\", \"image\", "
                                     "\"state\", \"limits\", \"at\",\n"
                                     "           \"status\", \"cpu_s\", \"memory_peak\", "
                                     "\"oom_kills\", \"error\", ...}]}\n",
                                     false};

const struct command cmd_logs_def = {"logs", cmd_logs, "show a job's output",
                                     "[-f] JOB\n"
                                     "\n"
                                     "Prints what job JOB (its id or name) wrote: its stdout "
                                     "to stdout, its stderr to\n"
                                     "stderr.\n"
                                     "\n"
                                     "  -f, --follow   go on printing as it writes, until it "
                                     "ends\n",
                                     false};

const struct command cmd_kill_def = {"kill", cmd_kill, "end a job",
                                     "[--signal S] JOB\n"
                                     "\n"
                                     "Sends S (default KILL) to every process of job JOB; a "
                                     "queued job is cancelled.\n"
                                     "\n"
                                     "  --signal S   a number or a name: TERM, INT, HUP, KILL, "
                                     "USR1, USR2, QUIT\n",
                                     false};

const struct command cmd_wait_def = {"wait", cmd_wait, "wait for a job to end",
                                     "JOB\n"
                                     "\n"
                                     "Waits until job JOB ends, prints how, and exits with its "
                                     "status as afsp run does.\n",
                                     false};

/* ---- following a job's output ---------------------------------------------------------------- */

struct tail {
    const char *name;
    int out; /* where its bytes go */
    int fd;  /* the file, once it exists */
};

/* Copies what the job's files hold past what was copied. */
static void tail_copy(const char *dir, struct tail *t, size_t n)
{
    char buf[64 << 10], path[4200];
    for (size_t i = 0; i < n; i++) {
        if (t[i].fd < 0) {
            snprintf(path, sizeof path, "%s/%s", dir, t[i].name);
            t[i].fd = open(path, O_RDONLY | O_CLOEXEC);
        }
        ssize_t k;
        while (t[i].fd >= 0 && (k = read(t[i].fd, buf, sizeof buf)) > 0)
            for (ssize_t off = 0; off < k;) {
                ssize_t w = write(t[i].out, buf + off, (size_t)(k - off));
                if (w <= 0)
                    break; /* the reader went away: its bytes are in the file still */
                off += w;
            }
    }
}

static volatile sig_atomic_t got_signal;
static void on_signal(int sig)
{
    got_signal = sig;
}

static json_t *job_ref(const char *job)
{
    return json_pack("{s:s}", "job", job);
}

/* The job's end from the node, following its output meanwhile (follow: copy it as it comes;
 * forward: a SIGINT or SIGTERM to this process is sent to the job). NULL after saying why. */
static json_t *job_wait(const char *id, bool follow, bool forward)
{
    int fd = node_client_connect(data_dir());
    if (fd < 0) {
        die("no node runs on %s", data_dir());
        return NULL;
    }
    json_t *req = job_ref(id), *ans = NULL;
    int rc = node_client_send(fd, NODE_CTL_WAIT, req);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/jobs/%s", data_dir(), id);
    struct tail t[2] = {{"out", 1, -1}, {"err", 2, -1}};
    if (forward) {
        struct sigaction sa = {.sa_handler = on_signal};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    while (rc == 0) {
        if (follow)
            tail_copy(dir, t, 2);
        struct pollfd p = {fd, POLLIN, 0};
        int k = poll(&p, 1, follow ? 20 : -1);
        if (k > 0)
            break;
        if (got_signal) {
            int sig = got_signal;
            got_signal = 0;
            json_t *kr = json_pack("{s:s, s:i}", "job", id, "signal", sig), *ka = NULL;
            int kfd = node_client_connect(data_dir());
            if (kfd >= 0 && node_client_call(kfd, NODE_CTL_KILL, kr, &ka) == 0)
                fprintf(stderr, "afsp: sent signal %d to job %s\n", sig, id);
            if (kfd >= 0)
                close(kfd);
            json_decref(kr);
            json_decref(ka);
        }
    }
    if (rc == 0)
        rc = node_client_recv(fd, &ans);
    close(fd);
    json_decref(req);
    if (follow)
        tail_copy(dir, t, 2); /* what it wrote last */
    for (int i = 0; i < 2; i++)
        if (t[i].fd >= 0)
            close(t[i].fd);
    const char *e = json_string_value(json_object_get(ans, "error"));
    if (rc < 0 || e) {
        die("job %s: %s", id, rc < 0 ? err_msg(rc) : e);
        json_decref(ans);
        return NULL;
    }
    return ans;
}

/* The exit status that tells how job j ended (afsp run's, afsp wait's). */
static int job_status(json_t *j)
{
    const char *state = json_string_value(json_object_get(j, "state"));
    json_int_t st = json_integer_value(json_object_get(j, "status"));
    if (!state || !strcmp(state, "failed")) {
        const char *e = json_string_value(json_object_get(j, "error"));
        fprintf(stderr, "afsp: job %s could not run%s%s\n",
                json_string_value(json_object_get(j, "id")), e ? ": " : "", e ? e : "");
        return 125;
    }
    if (!strcmp(state, "oom"))
        fprintf(stderr, "afsp: job %s was killed for its memory limit\n",
                json_string_value(json_object_get(j, "id")));
    if (!strcmp(state, "killed") && st < 0)
        return 137; /* cancelled before it ran */
    return st >= 0 && st < 256 ? (int)st : 125;
}

/* ---- run ----------------------------------------------------------------------------------------
 */

static int usage_size(const char *opt, const char *v, uint64_t *out)
{
    if (bytes_parse(v, out) < 0 || *out == 0)
        return cmd_usage_error(&cmd_run_def, "bad %s %s (bytes, e.g. 512M)", opt, v);
    return 0;
}

int cmd_run(int argc, char **argv)
{
    struct cmd_iter it = CMD_ITER(&cmd_run_def, argc, argv);
    struct pull_args pa = {0};
    const char *arg, *v, *image = NULL, *name = NULL, *workdir = NULL, *user = NULL, *net = "none";
    uint32_t millicpus = EXEC_MILLI;
    uint64_t memory = 1ull << 30, scratch = 1ull << 30;
    unsigned long long devices = 0;
    bool detach = false, queue = false;
    json_t *env = json_array(), *vols = json_array(), *pub = json_array();
    int r, status = 2;
    while (!image && (r = cmd_next(&it, &arg)) > 0) {
        int k = pull_opt(&it, arg, &pa);
        if (k < 0)
            goto out_status;
        if (k > 0)
            continue;
        if (!strcmp(arg, "-d") || !strcmp(arg, "--detach"))
            detach = true;
        else if (!strcmp(arg, "--queue"))
            queue = true;
        else if ((v = cmd_value(&it, "--name")))
            name = v;
        else if ((v = cmd_value(&it, "--workdir")))
            workdir = v;
        else if ((v = cmd_value(&it, "--user")))
            user = v;
        else if ((v = cmd_value(&it, "--net"))) {
            if (strcmp(v, "none") && strcmp(v, "host")) {
                status = cmd_usage_error(&cmd_run_def, "bad --net %s (none or host)", v);
                goto out;
            }
            net = v;
        } else if ((v = cmd_value(&it, "--cpus"))) {
            if (exec_cpus_parse(v, &millicpus) < 0) {
                status = cmd_usage_error(&cmd_run_def, "bad --cpus %s (e.g. 2 or 0.5)", v);
                goto out;
            }
        } else if ((v = cmd_value(&it, "--memory"))) {
            if ((status = usage_size("--memory", v, &memory)))
                goto out;
            if (memory < EXEC_MEMORY_MIN) {
                status = cmd_usage_error(&cmd_run_def, "--memory %s: a job needs %u MiB at least",
                                         v, EXEC_MEMORY_MIN >> 20);
                goto out;
            }
        } else if ((v = cmd_value(&it, "--scratch-size"))) {
            if ((status = usage_size("--scratch-size", v, &scratch)))
                goto out;
        } else if ((v = cmd_value(&it, "--devices"))) {
            if (cmd_number(v, EXEC_DEVICES_MAX, &devices) < 0) {
                status = cmd_usage_error(&cmd_run_def, "bad --devices %s", v);
                goto out;
            }
        } else if ((v = cmd_value(&it, "--publish"))) {
            unsigned long long port;
            if (cmd_number(v, 65535, &port) < 0 || port == 0 ||
                json_array_size(pub) == NODE_EXEC_PORTS_MAX) {
                status = cmd_usage_error(&cmd_run_def, "bad --publish %s (a port; at most %d)", v,
                                         NODE_EXEC_PORTS_MAX);
                goto out;
            }
            json_array_append_new(pub, json_integer((json_int_t)port));
        } else if ((v = cmd_value(&it, "--env"))) {
            if (!strchr(v, '=') || v[0] == '=') {
                status = cmd_usage_error(&cmd_run_def, "bad --env %s (NAME=VALUE)", v);
                goto out;
            }
            json_array_append_new(env, json_string(v));
        } else if ((v = cmd_value(&it, "--volume"))) {
            char src[4096], dst[4096];
            const char *c1 = strchr(v, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            bool ro = c2 && !strcmp(c2 + 1, "ro");
            size_t sl = c1 ? (size_t)(c1 - v) : 0,
                   dl = c1 ? (c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1)) : 0;
            if (!c1 || (c2 && !ro) || !sl || !dl || sl >= sizeof src || dl >= sizeof dst ||
                v[0] != '/' || c1[1] != '/') {
                status = cmd_usage_error(&cmd_run_def,
                                         "bad --volume %s (HOST:PATH or HOST:PATH:ro, both "
                                         "absolute)",
                                         v);
                goto out;
            }
            memcpy(src, v, sl);
            src[sl] = 0;
            memcpy(dst, c1 + 1, dl);
            dst[dl] = 0;
            json_array_append_new(vols,
                                  json_pack("{s:s, s:s, s:b}", "src", src, "dst", dst, "ro", ro));
        } else if (arg[0] == '-') {
            status = cmd_usage_error(&cmd_run_def, "unknown option %s", arg);
            goto out;
        } else
            image = arg;
    }
    if (!image) {
        status = it.status ? it.status : cmd_usage_error(&cmd_run_def, "IMAGE is missing");
        goto out;
    }
    /* everything after IMAGE is the command */
    int first = it.i + 1;
    if (first < argc && !strcmp(argv[first], "--"))
        first++;
    json_t *args = json_array(), *ins = json_array();
    for (int i = first; i < argc; i++)
        json_array_append_new(args, json_string(argv[i]));
    for (size_t i = 0; i < pa.ninsecure; i++)
        json_array_append_new(ins, json_string(pa.insecure[i]));
    json_t *req =
        json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:O, s:O, s:s, s:b, s:o}", "image", image, "args",
                  args, "cpus", (json_int_t)millicpus, "memory", (json_int_t)memory, "scratch",
                  (json_int_t)scratch, "devices", (json_int_t)devices, "env", env, "volumes", vols,
                  "net", net, "queue", queue, "insecure", ins);
    if (json_array_size(pub))
        json_object_set(req, "publish", pub);
    if (name)
        json_object_set_new(req, "name", json_string(name));
    if (workdir)
        json_object_set_new(req, "workdir", json_string(workdir));
    if (user)
        json_object_set_new(req, "user", json_string(user));
    if (pa.platform)
        json_object_set_new(req, "platform", json_string(pa.platform));
    json_t *ans = node_ask(-1, NODE_CTL_RUN, req, "cannot run");
    json_decref(req);
    status = 125;
    if (!ans)
        goto out;
    const char *id = json_string_value(json_object_get(json_object_get(ans, "job"), "id"));
    if (!id) {
        die("cannot run: the node's answer names no job");
        json_decref(ans);
        goto out;
    }
    json_t *ports = json_object_get(json_object_get(ans, "job"), "ports"), *pv;
    size_t pi;
    json_array_foreach(ports, pi, pv)
    {
        if (json_integer_value(json_object_get(pv, "host")))
            fprintf(stderr, "afsp: job %s: its port %" PRId64 " is the node's port %" PRId64 "\n",
                    id, (int64_t)json_integer_value(json_object_get(pv, "job")),
                    (int64_t)json_integer_value(json_object_get(pv, "host")));
    }
    if (detach) {
        printf("%s\n", id);
        status = 0;
    } else {
        json_t *end = job_wait(id, true, true);
        if (end) {
            status = job_status(json_object_get(end, "job"));
            json_decref(end);
        }
    }
    json_decref(ans);
    goto out;
out_status:
    status = it.status;
out:
    json_decref(env);
    json_decref(vols);
    json_decref(pub);
    return status;
}

/* ---- jobs, logs, kill, wait -------------------------------------------------------------------
 */

static const char *ms_fmt(json_int_t ms, char out[32])
{
    if (ms <= 0)
        return "-";
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, 32, "%H:%M:%S", &tm);
    return out;
}

int cmd_jobs(int argc, char **argv)
{
    int json = 0, r = json_only_args(&cmd_jobs_def, argc, argv, &json);
    if (r >= 0)
        return r;
    json_t *ans = node_ask(-1, NODE_CTL_JOBS, NULL, "jobs");
    if (!ans)
        return 1;
    json_t *jobs = json_object_get(ans, "jobs"), *j;
    if (json) {
        json_print(json_pack("{s:O}", "jobs", jobs ? jobs : json_array()));
        json_decref(ans);
        return 0;
    }
    printf("%-25s %-12s %-9s %6s %8s %8s %8s %-8s %6s  %s\n", "ID", "NAME", "STATE", "CPUS",
           "MEMORY", "CPU_S", "PEAK", "STARTED", "STATUS", "IMAGE");
    size_t i;
    json_array_foreach(jobs, i, j)
    {
        json_t *lim = json_object_get(j, "limits"), *at = json_object_get(j, "at");
        char mem[16], peak[16], st[32], status[16] = "-", cpu[16] = "-";
        const char *nm = json_string_value(json_object_get(j, "name"));
        if (json_object_get(j, "status"))
            snprintf(status, sizeof status, "%" PRId64,
                     (int64_t)json_integer_value(json_object_get(j, "status")));
        if (json_object_get(j, "cpu_s"))
            snprintf(cpu, sizeof cpu, "%.2f", json_real_value(json_object_get(j, "cpu_s")));
        json_int_t started = json_integer_value(json_object_get(at, "running"));
        printf(
            "%-25s %-12s %-9s %6.3g %8s %8s %8s %-8s %6s  %s\n",
            json_string_value(json_object_get(j, "id")), nm ? nm : "-",
            json_string_value(json_object_get(j, "state")),
            json_real_value(json_object_get(lim, "cpus")),
            bytes_fmt((uint64_t)json_integer_value(json_object_get(lim, "memory")), mem), cpu,
            json_object_get(j, "memory_peak")
                ? bytes_fmt((uint64_t)json_integer_value(json_object_get(j, "memory_peak")), peak)
                : "-",
            ms_fmt(started, st), status, json_string_value(json_object_get(j, "image")));
    }
    json_decref(ans);
    return 0;
}

/* The one argument JOB (and the command's flag, if it takes one). */
static int job_args(const struct command *c, int argc, char **argv, const char *flag,
                    const char *flag2, bool *flag_set, const char **value_opt, const char **value,
                    const char **job)
{
    struct cmd_iter it = CMD_ITER(c, argc, argv);
    const char *arg, *v;
    int r;
    *job = NULL;
    while ((r = cmd_next(&it, &arg)) > 0) {
        if (flag && (!strcmp(arg, flag) || (flag2 && !strcmp(arg, flag2))))
            *flag_set = true;
        else if (value_opt && (v = cmd_value(&it, *value_opt)))
            *value = v;
        else if (arg[0] == '-')
            return cmd_usage_error(c, "unknown option %s", arg);
        else if (*job)
            return cmd_usage_error(c, "one JOB at a time");
        else
            *job = arg;
    }
    if (r < 0)
        return it.status;
    if (!*job)
        return cmd_usage_error(c, "JOB is missing");
    return -1;
}

/* The job JOB names (its id, the node's answer); NULL after saying why. */
static json_t *job_get(const char *job, const char **id)
{
    json_t *ref = job_ref(job), *ans = node_ask(-1, NODE_CTL_JOBS, ref, "no such job");
    json_decref(ref);
    *id = ans ? json_string_value(json_object_get(json_object_get(ans, "job"), "id")) : NULL;
    return ans;
}

int cmd_logs(int argc, char **argv)
{
    bool follow = false;
    const char *job, *id;
    int r = job_args(&cmd_logs_def, argc, argv, "-f", "--follow", &follow, NULL, NULL, &job);
    if (r >= 0)
        return r;
    json_t *ans = job_get(job, &id);
    if (!id) {
        json_decref(ans);
        return 1;
    }
    int status = 0;
    if (follow) {
        json_t *end = job_wait(id, true, false);
        status = end ? 0 : 1;
        json_decref(end);
    } else {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/jobs/%s", data_dir(), id);
        struct tail t[2] = {{"out", 1, -1}, {"err", 2, -1}};
        tail_copy(dir, t, 2);
        for (int i = 0; i < 2; i++)
            if (t[i].fd >= 0)
                close(t[i].fd);
    }
    json_decref(ans);
    return status;
}

static int signal_parse(const char *s)
{
    static const struct {
        const char *name;
        int sig;
    } names[] = {{"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},  {"KILL", SIGKILL},
                 {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"QUIT", SIGQUIT}};
    unsigned long long n;
    if (cmd_number(s, 64, &n) == 0 && n >= 1)
        return (int)n;
    if (!strncmp(s, "SIG", 3))
        s += 3;
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (!strcasecmp(s, names[i].name))
            return names[i].sig;
    return -1;
}

int cmd_kill(int argc, char **argv)
{
    const char *job, *sigtext = NULL, *opt = "--signal";
    int r = job_args(&cmd_kill_def, argc, argv, NULL, NULL, NULL, &opt, &sigtext, &job);
    if (r >= 0)
        return r;
    int sig = sigtext ? signal_parse(sigtext) : SIGKILL;
    if (sig < 0)
        return cmd_usage_error(&cmd_kill_def, "bad --signal %s", sigtext);
    json_t *req = json_pack("{s:s, s:i}", "job", job, "signal", sig);
    json_t *ans = node_ask(-1, NODE_CTL_KILL, req, "cannot kill");
    json_decref(req);
    if (!ans)
        return 1;
    json_decref(ans);
    return 0;
}

int cmd_wait(int argc, char **argv)
{
    const char *job, *id;
    int r = job_args(&cmd_wait_def, argc, argv, NULL, NULL, NULL, NULL, NULL, &job);
    if (r >= 0)
        return r;
    json_t *ans = job_get(job, &id);
    if (!id) {
        json_decref(ans);
        return 1;
    }
    json_t *end = job_wait(id, false, false);
    json_decref(ans);
    if (!end)
        return 1;
    json_t *j = json_object_get(end, "job");
    printf("%s %s %" PRId64 "\n", json_string_value(json_object_get(j, "id")),
           json_string_value(json_object_get(j, "state")),
           (int64_t)json_integer_value(json_object_get(j, "status")));
    int status = job_status(j);
    json_decref(end);
    return status;
}
