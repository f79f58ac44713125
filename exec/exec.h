/*
 * exec.h - the executor (docs/exec.md): jobs run on a mounted image. This first part is
 * admission: what a job asks for (cpus, memory, scratch, device slots), what a node offers, and
 * whether the one fits the other now, later, or never; and the queue of jobs waiting for room,
 * first in, first out.
 *
 * Admission is pure: no I/O, no clock, no allocation; its caller (the node) owns the capacity
 * and the queue and serialises calls on them.
 */
#ifndef AFSP_EXEC_H
#define AFSP_EXEC_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXEC_CPUS_MAX 4096         /* cpus a node may offer, or a job ask for */
#define EXEC_DEVICES_MAX 64        /* device slots a node may offer (one kind) */
#define EXEC_QUEUE_MAX 256         /* jobs waiting for room on one node */
#define EXEC_MILLI 1000u           /* millicpus per cpu */
#define EXEC_MEMORY_MIN (6u << 20) /* a job's memory at least: the runtime's start needs it */

/* Resources, as a job asks for them or a node offers them. */
struct exec_res {
    uint32_t millicpus; /* thousandths of a cpu */
    uint64_t memory;    /* bytes */
    uint64_t scratch;   /* bytes of the job's writable layer */
    uint32_t devices;   /* device slots (a count) */
};

/* A node's capacity: what it offers (total), what its running jobs hold (used), and which of
 * its device slots they hold (bit i: slot i). */
struct exec_capacity {
    struct exec_res total, used;
    uint64_t devices_used;
};

/* "0.5", "2", "1.25": a count of cpus with at most three decimals, more than 0 and at most
 * EXEC_CPUS_MAX, as millicpus. Returns 0 or AFSP_E_USAGE. */
int exec_cpus_parse(const char *s, uint32_t *millicpus);

/* A node's capacity offering total, with nothing used. Returns 0, or AFSP_E_USAGE (more cpus or
 * device slots than the maxima, or no cpu or memory at all). */
int exec_capacity_init(struct exec_capacity *c, const struct exec_res *total);

enum exec_fit {
    EXEC_FITS = 0,  /* the node's free capacity covers it now */
    EXEC_WAIT = 1,  /* it fits the node, once running jobs have ended */
    EXEC_NEVER = 2, /* more than the node offers at all (or it asks for no cpu or no memory) */
};
/* Whether request r fits capacity c. */
enum exec_fit exec_fit(const struct exec_capacity *c, const struct exec_res *r);

/* Takes r from c's free capacity, and its device slots: the lowest free ones, their bits in
 * *slots. Returns 0, or -EAGAIN (it does not fit now: nothing taken). */
int exec_take(struct exec_capacity *c, const struct exec_res *r, uint64_t *slots);
/* Gives back what exec_take took (r, slots). */
void exec_give(struct exec_capacity *c, const struct exec_res *r, uint64_t slots);

/* The jobs waiting for room, first in, first out: only the first may start, so that a large
 * job is not passed over for ever by smaller ones. */
struct exec_queue {
    struct exec_queued {
        uint64_t id;
        struct exec_res r;
    } q[EXEC_QUEUE_MAX];
    unsigned head, n;
};
/* Appends job id asking for r. Returns 0, or -ENOSPC (EXEC_QUEUE_MAX wait already). */
int exec_queue_push(struct exec_queue *q, uint64_t id, const struct exec_res *r);
/* The first waiting job if it fits c now (*id, *r set; it stays queued until popped), else
 * false (none waits, or the first does not fit yet). */
bool exec_queue_ready(const struct exec_queue *q, const struct exec_capacity *c, uint64_t *id,
                      struct exec_res *r);
/* Removes the first waiting job (it starts). */
void exec_queue_pop(struct exec_queue *q);
/* Removes job id wherever it waits (it was cancelled). Returns whether it was there. */
bool exec_queue_remove(struct exec_queue *q, uint64_t id);
/* Where job id waits: 0 for the first, or -1. */
int exec_queue_position(const struct exec_queue *q, uint64_t id);

/* ---- user.c: who a job runs as ------------------------------------------------------------- */

#define EXEC_ACCOUNTS_MAX (1u << 20) /* bytes of an image's /etc/passwd or /etc/group read */

/* The uid and gid of user spec ("", "name", "uid", "name:group", "uid:gid", and mixes; "" is
 * root) in the image whose root is the directory fd root: names are looked up in its
 * /etc/passwd and /etc/group (read through root, at most EXEC_ACCOUNTS_MAX bytes each, never
 * following a link out of it); a user without a group given gets its passwd entry's group (a
 * bare uid not in passwd: gid 0). Returns 0, AFSP_E_USAGE (a malformed spec, a name the image
 * does not know, an id past 2^32 - 2), or a negative errno (a file unreadable but present). */
int exec_user_resolve(int root, const char *spec, uint32_t *uid, uint32_t *gid);

/* ---- root.c: a job's root file system ------------------------------------------------------ */

/* Makes the root of a job in directory dir (which must exist, empty): a tmpfs of scratch bytes
 * at dir/scratch holding the overlay's upper and work directories, and at dir/rootfs an overlay
 * of lower (the image's read-only mount: it is never written) under that upper. Returns 0,
 * AFSP_E_USAGE (a path overlayfs cannot take: relative, or with ',', ':' or '\\'; scratch 0), or
 * a negative errno (nothing is left mounted then). */
int exec_root_make(const char *dir, const char *lower, uint64_t scratch);
/* Unmounts dir/rootfs and dir/scratch and removes what exec_root_make made (the overlay first;
 * lazily if busy). Returns 0 or the first error; goes on past errors. Harmless on a root half
 * made or already removed. */
int exec_root_remove(const char *dir);

/* Whether a job may have src (a --volume's source on the node) bound in: it must exist, and
 * neither lie inside nor hold any of the n directories of private (the node's data directory,
 * its keys), both compared after resolving links and "..". Returns 0, AFSP_E_USAGE (it would
 * expose one of them), or a negative errno (src or a private directory cannot be resolved).
 * The resolved src, the one to bind, in resolved. */
int exec_volume_allowed(const char *src, const char *const *private, size_t n,
                        char resolved[static PATH_MAX]);

/* ---- cgroup.c: what a job used ------------------------------------------------------------- */

struct exec_usage {
    uint64_t cpu_ns;    /* cpu time of all its processes */
    uint64_t mem_peak;  /* the most memory it held at once (bytes) */
    uint64_t oom_kills; /* processes the kernel killed for its memory limit */
};
/* The usage of cgroup path (as config.json's cgroupsPath: "afsp/j1" is under the cgroup of the
 * process that started the runtime, in each hierarchy, as runc places it; "/afsp/j1" under the
 * hierarchy's root) under the cgroup file system mounted at base ("/sys/fs/cgroup"): cgroup v1
 * (base/memory and base/cpuacct: hybrid or legacy) or v2 (base/cgroup.controllers: unified).
 * self: that process's cgroup file ("/proc/self/cgroup"). Returns 0, -ENOENT (no such cgroup),
 * or AFSP_E_FORMAT (a file that does not read as the kernel writes it). */
int exec_cgroup_usage(const char *base, const char *self, const char *path, struct exec_usage *u);

/* ---- spec.c: the runtime's config.json ---------------------------------------------------- */

struct config_process; /* store/oci/oci.h: what the image config says of its process */

struct exec_volume {
    const char *src, *dst; /* absolute paths: on the node, in the job */
    bool ro;
};

/* A device node a job is given (one of its device slots'): made at path in its /dev. */
struct exec_device {
    const char *path; /* "/dev/nvidia0" */
    bool block;       /* else a character device */
    uint32_t major, minor, mode;
};

/* A job's process and limits, for its bundle's config.json (OCI runtime spec 1.0). */
struct exec_spec {
    const struct config_process *img;  /* may be NULL: no image config */
    char *const *args;                 /* the command given (NULL-terminated; NULL or empty: the
                                          image's Cmd), after the image's Entrypoint */
    char *const *env;                  /* NAME=VALUE (NULL-terminated, may be NULL): over the
                                          image's Env, one NAME at a time */
    const char *workdir;               /* NULL: the image's WorkingDir, or / */
    uint32_t uid, gid;                 /* the user, resolved by the caller */
    struct exec_res res;               /* cpus, memory: the cgroup's limits */
    uint64_t slots;                    /* the device slots exec_take gave the job */
    const char *slots_env;             /* NULL, or the variable that names them ("0,2") */
    const struct exec_device *devices; /* the slots' device nodes (the caller's stat), or none */
    size_t ndevices;
    bool net_host; /* the node's network namespace; else a new one (lo only) */
    const char *hostname;
    const char *cgroups_path;
    const struct exec_volume *volumes;
    size_t nvolumes;
};
/* The CPU period of the quota (microseconds): millicpus * EXEC_CPU_PERIOD / 1000 a period. */
#define EXEC_CPU_PERIOD 100000
/* Docker's default capability set: the job's bounding, effective and permitted sets. */
#define EXEC_CAPS_N 14
extern const char *const exec_caps[EXEC_CAPS_N];

/* The config.json of s: a malloc'd NUL-terminated JSON text in *out. Returns 0, AFSP_E_USAGE
 * (no command: neither given nor in the image; a relative workdir or volume path; a bad
 * --env; a hostname or cgroups path missing), or -ENOMEM. */
int exec_spec_json(const struct exec_spec *s, char **out);

struct exec_result; /* run.c */

/* ---- job.c: a job's states ----------------------------------------------------------------- */

enum exec_state {
    EXEC_QUEUED = 0,    /* admitted later: waiting for room (--queue) */
    EXEC_PREPARING = 1, /* its image mounted, its root made */
    EXEC_RUNNING = 2,
    EXEC_EXITED = 3, /* it ended by itself (its status says how) */
    EXEC_KILLED = 4, /* it ended by a signal it was sent (afsp kill), or was cancelled queued */
    EXEC_OOM = 5,    /* the kernel killed a process of it for its memory limit */
    EXEC_FAILED = 6, /* it could not be started, or the runtime failed it */
};
#define EXEC_STATES 7
#define EXEC_ID_LEN 32 /* "NODEID8-COUNTER" and its NUL, at most */

struct exec_status {
    char id[EXEC_ID_LEN];
    enum exec_state state;
    uint64_t at[EXEC_STATES]; /* wall clock (ms) of each state reached; 0: not reached */
    bool kill_asked;          /* a kill was asked while it ran */
    int status;               /* EXITED, KILLED, OOM: the runtime's status; else -1 */
    struct exec_usage usage;
};
/* "queued", "preparing", "running", "exited", "killed", "oom", "failed". */
const char *exec_state_name(enum exec_state s);
/* Whether a job in state s has ended. */
bool exec_state_final(enum exec_state s);
/* A new job's status: id from the node's id (its first 4 bytes, in hex) and a counter the node
 * never reuses (so unique in the cluster while node ids are), in state first (QUEUED or
 * PREPARING) since now. */
void exec_status_init(struct exec_status *j, const uint8_t node_id[4], uint64_t counter,
                      enum exec_state first, uint64_t now);
/* Moves j to state to at now. Returns 0, or -EINVAL (not a step a job takes: back, from an
 * end, or skipping RUNNING into EXITED or OOM). */
int exec_status_to(struct exec_status *j, enum exec_state to, uint64_t now);
/* Ends a job that was RUNNING with exec_job_run's rc and r: FAILED (rc < 0 before it ran),
 * OOM (the kernel's count), KILLED (a kill was asked and a signal ended it), else EXITED. */
void exec_status_end(struct exec_status *j, int rc, const struct exec_result *r, uint64_t now);

/* ---- run.c: one job, start to end ------------------------------------------------------------ */

struct exec_job {
    const char *id;      /* unique on the node: the runtime's container id */
    const char *dir;     /* the job's directory: made by the caller, empty, absolute */
    const char *lower;   /* the image's read-only root (its mount) */
    const char *runtime; /* the OCI runtime's program ("runc") */
    const char *state;   /* the runtime's state directory (runc --root) */
    uint64_t scratch;    /* bytes of the job's writable layer */
    int out_fd, err_fd;  /* the job's stdout and stderr go there; its stdin is /dev/null */
    struct exec_spec spec;
    void (*started)(void *arg); /* may be NULL: called once the runtime runs (from its thread) */
    /* may be NULL: called once the job's processes have ended, with what it got and used,
     * before the runtime's delete and the root's removal */
    void (*ended)(void *arg, const struct exec_result *r);
    void *arg;
    /* may be NULL: where the runtime writes the job's first process's pid. Given, a runtime that
     * ends without writing it failed before the job ran: AFSP_E_USAGE, its status not the job's */
    const char *pid_file;
};
struct exec_result {
    int status; /* the runtime's: the job's exit status, or 128 + the signal that ended it */
    bool oom;   /* the kernel killed a process of it for its memory limit */
    struct exec_usage usage;
};
/* Runs job j to its end and cleans up after it (blocks: for a thread of its own): its root
 * (exec_root_make), its config.json, the runtime (`run --keep`), its usage and OOM kills from
 * its cgroup, the runtime's `delete`, its root removed. Returns 0 (r set), or an error before
 * the job could start (nothing left behind), or after it (r set as far as known). */
int exec_job_run(const struct exec_job *j, struct exec_result *r);
/* Sends sig to every process of container id (`runtime --root state kill --all id sig`).
 * Returns 0, -ESRCH (the runtime refused: no such container, or not yet made), or an error
 * starting it. */
int exec_job_kill(const char *runtime, const char *state, const char *id, int sig);
/* Whether runtime takes what exec_job_run asks of it (runc's command line: `run --keep`,
 * `--pid-file`, `kill --all`, `delete --force`): it is run with `run --help`. Returns 0,
 * AFSP_E_USAGE (it cannot: crun 1.8 has no `run --keep`), or an error starting it. */
int exec_runtime_check(const char *runtime);
/* `runtime --root state delete --force id`: its processes killed, its cgroup removed. */
int exec_job_delete(const char *runtime, const char *state, const char *id);
/* ---- publish.c: a job's published ports ------------------------------------------------------ */

#define EXEC_PUBLISH_MAX 8             /* ports of one job */
#define EXEC_PUBLISH_CONNS 64          /* connections relayed at once, for one job */
#define EXEC_PUBLISH_CONNECT_MS 10000u /* a connect to the job unfinished after this: closed */
#define EXEC_PUBLISH_IDLE_MS 600000u   /* a connection with no byte moved for this: closed */
struct exec_publish;
struct exec_publish_times {
    unsigned connect_ms, idle_ms;
};
/* Listens on host (an IPv4 address) at host_ports[i] and relays each connection to 127.0.0.1 at
 * job_ports[i] in the network namespace of the process whose pid the runtime wrote to pid_file
 * (a connection that comes before it is closed), with times' limits (NULL: the defaults above).
 * Returns 0, AFSP_E_USAGE, or a negative errno (a port taken: nothing is left listening). */
int exec_publish_start(struct exec_publish **out, const char *host, const uint16_t *host_ports,
                       const uint16_t *job_ports, unsigned n, const char *pid_file,
                       const struct exec_publish_times *times);
/* Stops listening and closes every connection (the job ended). */
void exec_publish_stop(struct exec_publish *p);

/* Runs argv (a program on PATH) with stdin /dev/null and stdout, stderr to out, err (-1:
 * /dev/null), and waits: its wait status in *status. Returns 0, an error starting it, or
 * -ETIMEDOUT once it has run timeout_ms (0: no limit): then it was killed (SIGKILL) and reaped. */
int exec_spawn_wait(char *const argv[], int out, int err, int *status, uint64_t timeout_ms);
/* How long a helper may run before it is killed: the runtime's `delete`, `kill` and `--help`,
 * and this program's `mount` and `umount` of a job's image (the runner's). A stuck one costs a
 * job an error, not the runner's thread for good. */
#define EXEC_HELPER_MS 300000u
/* Removes every cgroup below parent whose name starts with prefix (parent a path as
 * cgroups_path takes it: "afsp" is below the cgroup of the process self names), in each
 * hierarchy under base: the processes still in one are killed (SIGKILL) first. With
 * remove_parent, parent too if nothing else is below it. Returns how many were removed, or a
 * negative errno. */
int exec_cgroup_sweep(const char *base, const char *self, const char *parent, const char *prefix,
                      bool remove_parent);

#endif
