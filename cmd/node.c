/*
 * node.c - `afsp node`: parses the options, loads the node's keys, opens the store and runs the
 * daemon (node_run, node/node_uv.c). The node lives in node/.
 */
#include "cmd.h"

#include "../node/node.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <unistd.h>

const struct command cmd_node_def = {
    "node", cmd_node, "run the node daemon: peers, chunk exchange, the control socket",
    "[--listen HOST:PORT] [--seed HOST:PORT]... [--cluster-key-file FILE]\n"
    "       [--idle-timeout SECONDS] [--verify-rate N] [--cpus N] [--memory N] [--scratch N]\n"
    "       [--devices N] [--devices-env NAME] [--devices-path PATTERN] [--runtime PROGRAM]\n"
    "       [--mount-keep SECONDS] [--publish-range LO-HI] [--publish-host ADDRESS]\n"
    "\n"
    "Runs this data directory's node until SIGTERM or SIGINT. It listens for peers on\n"
    "--listen (default 0.0.0.0:" NODE_DEFAULT_PORT_STR
    "), connects to every --seed, and serves the\n"
    "layers it holds to cluster members only: every connection starts with a Noise\n"
    "handshake keyed by the cluster key, and a peer without it gets nothing but a closed\n"
    "connection. While it runs, `afsp pull` on this data directory goes through it:\n"
    "manifests, configs and layers come from peers when they hold them (every chunk\n"
    "checked against the layer digest), else from the registry.\n"
    "\n"
    "  --listen HOST:PORT       where peers connect (port 0: do not listen)\n"
    "  --seed HOST:PORT         a node to connect to (repeatable)\n"
    "  --cluster-key-file FILE  the cluster key (afsp genkey); default DATA/cluster.key,\n"
    "                           created on first start\n"
    "  --idle-timeout SECONDS   close a connection nothing used for this long (default 120;\n"
    "                           0: never); connections to seeds stay open\n"
    "  --verify-rate N          bytes a second the node takes (from peers, else the registry)\n"
    "                           to complete the layers mounts read lazily, e.g. 64M (default\n"
    "                           32M; 0: never): until a layer is complete, what it holds is\n"
    "                           the word of the peer that sent its index\n"
    "\n"
    "What the node offers to jobs (afsp run; docs/exec.md), each job admitted only if what\n"
    "it asks for is free:\n"
    "  --cpus N                 cpus, e.g. 16 or 7.5 (default: the cpus this process may\n"
    "                           use; 0 with --memory 0: the node runs no jobs)\n"
    "  --memory N               memory, e.g. 64G (default: the machine's)\n"
    "  --scratch N              jobs' writable layers together (default: as --memory; a\n"
    "                           job's scratch is a tmpfs and counts against its memory too)\n"
    "  --devices N              device slots (e.g. GPUs), numbered 0 to N-1 (default 0)\n"
    "  --devices-env NAME       the variable that tells a job its slots (default\n"
    "                           CUDA_VISIBLE_DEVICES)\n"
    "  --devices-path PATTERN   slot N's device node, %u standing for N (e.g.\n"
    "                           /dev/nvidia%u): a job gets its slots' nodes and no other\n"
    "  --publish-range LO-HI    the node's ports jobs' ports are published on (afsp run\n"
    "                           --publish), each given to one job until it ends (default\n"
    "                           40000-40999)\n"
    "  --publish-host ADDRESS   where they listen (default 127.0.0.1; 0.0.0.0: everywhere)\n"
    "  --runtime PROGRAM        the OCI runtime (default runc): one with runc's command line,\n"
    "                           `run --keep` included (Debian 12's crun lacks it)\n"
    "  --mount-keep SECONDS     an image's mount stays this long after its last job ends,\n"
    "                           for the next job on it (default 60)\n"
    "A node not run as root runs no jobs unless --cpus and --memory are given (and then\n"
    "its jobs fail unless the runtime can make containers as that user); nor does one\n"
    "whose runtime is missing, unless one of those, or --runtime, was given: it refuses\n"
    "to start then.\n"
    "\n"
    "Nodes form a Kademlia DHT over these connections: a node announces the layers and\n"
    "manifests it holds in full, and finds who holds one by its digest, so one --seed is\n"
    "enough to reach every node of the cluster.\n"
    "\n"
    "The node's identity is DATA/node.key (created on first start); its control socket is\n"
    "DATA/afsp.sock (mode 0600). Log lines go to stderr; -v for connections and fetches.\n"
    "For tests only: AFSP_TEST_TIME_DIVISOR=N divides every duration of the node by N.\n",
    false};

#define LINKS_FD_SPARE 128 /* descriptors kept for the store, pulls and the CLI */

static int node_keys(struct p2p_identity *id, uint8_t ckey[P2P_KEY_LEN], const char *key_file)
{
    char path[4200];
    bool created;
    int rc;
    snprintf(path, sizeof path, "%s/node.key", data_dir());
    if ((rc = p2p_identity_load(id, path, &created)) < 0)
        return err_ctx(rc, "node identity %s", path);
    if (key_file) {
        if ((rc = p2p_cluster_key_load(ckey, key_file)) < 0)
            return err_ctx(rc, "cluster key %s", key_file);
        return 0;
    }
    snprintf(path, sizeof path, "%s/cluster.key", data_dir());
    rc = p2p_cluster_key_load(ckey, path);
    if (rc == -ENOENT) {
        if ((rc = p2p_cluster_key_create(ckey, path)) < 0)
            return err_ctx(rc, "cluster key %s", path);
        fprintf(stderr,
                "afsp: created a new cluster key in %s; give other nodes a copy of it\n"
                "      (--cluster-key-file) so that they can join this one\n",
                path);
        return 0;
    }
    return rc < 0 ? err_ctx(rc, "cluster key %s", path) : 0;
}

/* How many links the node keeps at once: NODE_LINKS_MAX, or fewer when the descriptor limit
 * (raised to its hard limit first) leaves less room. */
static size_t links_max(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 256;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (up.rlim_cur > NODE_LINKS_MAX + LINKS_FD_SPARE)
            up.rlim_cur = NODE_LINKS_MAX + LINKS_FD_SPARE;
        if (up.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = up.rlim_cur;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= NODE_LINKS_MAX + LINKS_FD_SPARE)
        return NODE_LINKS_MAX;
    return rl.rlim_cur > 2 * LINKS_FD_SPARE ? rl.rlim_cur - LINKS_FD_SPARE : rl.rlim_cur / 2;
}

static void rng(void *arg, uint8_t *buf, size_t n)
{
    (void)arg;
    randombytes_buf(buf, n);
}

int cmd_node(int argc, char **argv)
{
    const char *listen = "0.0.0.0:" NODE_DEFAULT_PORT_STR, *key_file = NULL, *v, *arg;
    const char *seed_texts[NODE_SEEDS_MAX];
    struct dht_addr seeds[NODE_SEEDS_MAX];
    size_t nseeds = 0;
    unsigned long long idle_s = 0, divisor = 1;
    uint64_t verify_rate = 0;
    bool idle_given = false;
    struct exec_res cap = {0};
    bool cpus_given = false, mem_given = false, scratch_given = false, runtime_given = false;
    const char *runtime = "runc", *devices_env = "CUDA_VISIBLE_DEVICES", *devices_path = NULL;
    unsigned long long devices = 0, keep_s = 60, pub_lo = 40000, pub_hi = 40999;
    const char *publish_host = "127.0.0.1";
    struct cmd_iter it = CMD_ITER(&cmd_node_def, argc, argv);
    int r, rc;
    while ((r = cmd_next(&it, &arg)) > 0) {
        if ((v = cmd_value(&it, "--listen")))
            listen = v;
        else if ((v = cmd_value(&it, "--cluster-key-file")))
            key_file = v;
        else if ((v = cmd_value(&it, "--idle-timeout"))) {
            if (cmd_number(v, 86400ull * 365, &idle_s) < 0)
                return cmd_usage_error(&cmd_node_def, "bad --idle-timeout %s (seconds)", v);
            idle_given = true;
        } else if ((v = cmd_value(&it, "--verify-rate"))) {
            if (bytes_parse(v, &verify_rate) < 0)
                return cmd_usage_error(&cmd_node_def, "bad --verify-rate %s (bytes a second)", v);
            if (verify_rate == 0)
                verify_rate = UINT64_MAX; /* never */
        } else if ((v = cmd_value(&it, "--cpus"))) {
            cpus_given = true;
            if (strcmp(v, "0") && exec_cpus_parse(v, &cap.millicpus) < 0)
                return cmd_usage_error(&cmd_node_def, "bad --cpus %s (e.g. 4 or 0.5; at most %d)",
                                       v, EXEC_CPUS_MAX);
        } else if ((v = cmd_value(&it, "--memory"))) {
            mem_given = true;
            if (bytes_parse(v, &cap.memory) < 0)
                return cmd_usage_error(&cmd_node_def, "bad --memory %s (bytes, e.g. 64G)", v);
        } else if ((v = cmd_value(&it, "--scratch"))) {
            scratch_given = true;
            if (bytes_parse(v, &cap.scratch) < 0)
                return cmd_usage_error(&cmd_node_def, "bad --scratch %s (bytes, e.g. 100G)", v);
        } else if ((v = cmd_value(&it, "--devices"))) {
            if (cmd_number(v, EXEC_DEVICES_MAX, &devices) < 0)
                return cmd_usage_error(&cmd_node_def, "bad --devices %s (0 to %d)", v,
                                       EXEC_DEVICES_MAX);
        } else if ((v = cmd_value(&it, "--devices-env"))) {
            devices_env = v;
        } else if ((v = cmd_value(&it, "--devices-path"))) {
            const char *u = strstr(v, "%u");
            if (strncmp(v, "/dev/", 5) || !u || strchr(u + 2, '%') || strchr(v, '%') != u ||
                strlen(v) > 200)
                return cmd_usage_error(
                    &cmd_node_def, "bad --devices-path %s (a path under /dev/ with one %%u)", v);
            devices_path = v;
        } else if ((v = cmd_value(&it, "--publish-range"))) {
            char lo[8] = "", hi[8] = "";
            const char *dash = strchr(v, '-');
            if (!dash || dash - v >= (int)sizeof lo || strlen(dash + 1) >= sizeof hi)
                return cmd_usage_error(&cmd_node_def, "bad --publish-range %s (LO-HI)", v);
            memcpy(lo, v, (size_t)(dash - v));
            snprintf(hi, sizeof hi, "%s", dash + 1);
            if (cmd_number(lo, 65535, &pub_lo) < 0 || cmd_number(hi, 65535, &pub_hi) < 0 ||
                pub_lo == 0 || pub_hi < pub_lo)
                return cmd_usage_error(&cmd_node_def, "bad --publish-range %s (LO-HI, 1-65535)", v);
        } else if ((v = cmd_value(&it, "--publish-host"))) {
            struct in_addr ia;
            if (inet_pton(AF_INET, v, &ia) != 1)
                return cmd_usage_error(&cmd_node_def, "bad --publish-host %s (an IPv4 address)", v);
            publish_host = v;
        } else if ((v = cmd_value(&it, "--runtime"))) {
            runtime = v;
            runtime_given = true;
        } else if ((v = cmd_value(&it, "--mount-keep"))) {
            if (cmd_number(v, 86400, &keep_s) < 0)
                return cmd_usage_error(&cmd_node_def, "bad --mount-keep %s (seconds)", v);
        } else if ((v = cmd_value(&it, "--seed"))) {
            if (nseeds == NODE_SEEDS_MAX)
                return cmd_usage_error(&cmd_node_def, "at most %d --seed", NODE_SEEDS_MAX);
            seed_texts[nseeds++] = v;
        } else
            return cmd_usage_error(&cmd_node_def, "unexpected argument %s", arg);
    }
    if (r < 0)
        return it.status;
    const char *dv = getenv("AFSP_TEST_TIME_DIVISOR");
    if (dv && (cmd_number(dv, 1000000, &divisor) < 0 || divisor == 0))
        return die("bad AFSP_TEST_TIME_DIVISOR %s (a whole number from 1)", dv);
    /* what jobs may use: the machine's, unless said; nothing for a node that is not root */
    bool root = geteuid() == 0;
    cpu_set_t cs;
    if (!cpus_given && root && sched_getaffinity(0, sizeof cs, &cs) == 0)
        cap.millicpus = (uint32_t)MIN(CPU_COUNT(&cs), EXEC_CPUS_MAX) * EXEC_MILLI;
    struct sysinfo si;
    if (!mem_given && root && sysinfo(&si) == 0)
        cap.memory = (uint64_t)si.totalram * si.mem_unit;
    if (!scratch_given)
        cap.scratch = cap.memory;
    cap.devices = (uint32_t)devices;
    if ((cap.millicpus == 0) != (cap.memory == 0))
        return cmd_usage_error(&cmd_node_def, "--cpus and --memory: both 0 (no jobs) or neither");
    /* the runtime: a node asked for jobs must have one; else without it the node runs none */
    if (cap.millicpus && (rc = exec_runtime_check(runtime)) < 0) {
        if (cpus_given || mem_given || runtime_given)
            return die("%s", err_msg(rc));
        fprintf(stderr, "afsp: this node runs no jobs: %s\n", err_msg(rc));
        cap = (struct exec_res){0};
    }
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
        return die("cannot find this program: /proc/self/exe: %s", strerror(errno));
    self[sl] = 0;
    struct dht_addr la;
    if ((rc = node_addr_parse(listen, "0.0.0.0", &la)) < 0)
        return cmd_usage_error(&cmd_node_def, "bad --listen %s: %s", listen, err_msg(rc));
    for (size_t i = 0; i < nseeds; i++)
        if ((rc = node_addr_parse(seed_texts[i], "127.0.0.1", &seeds[i])) < 0)
            return cmd_usage_error(&cmd_node_def, "bad --seed %s: %s", seed_texts[i], err_msg(rc));
    if (sodium_init() < 0)
        return die("libsodium cannot start");
    if (log_level < LOG_INFO && g_opts.verbose == 0)
        log_level = LOG_WARN;

    char ctl_path[4200];
    snprintf(ctl_path, sizeof ctl_path, "%s/" NODE_CTL_SOCK, data_dir());
    if (strlen(ctl_path) >= 108)
        return die("the data directory's path is too long for a socket: %s", ctl_path);
    struct node_durations t;
    node_durations_init(&t, (unsigned)divisor);
    if (idle_given)
        t.idle = idle_s * 1000 / divisor;
    struct p2p_identity id;
    uint8_t ckey[P2P_KEY_LEN];
    struct store *s = NULL;
    int status = 1;
    if (open_store(&s, false))
        return 1;
    int fd = node_client_connect(data_dir());
    if (fd >= 0) {
        close(fd);
        store_close(s);
        return die("a node already runs on %s", data_dir());
    }
    if ((rc = node_keys(&id, ckey, key_file)) < 0) {
        die("%s", err_msg(rc));
        goto out;
    }
    struct node_run_cfg cfg = {.core = {.id = &id,
                                        .cluster_key = ckey,
                                        .rng = rng,
                                        .listen_port = la.port,
                                        .listen_text = listen,
                                        .seeds = seeds,
                                        .seed_texts = seed_texts,
                                        .nseeds = nseeds,
                                        .links_max = links_max(),
                                        .t = &t,
                                        .verify_rate = verify_rate,
                                        .capacity = cap,
                                        .publish_lo = (uint16_t)pub_lo,
                                        .publish_hi = (uint16_t)pub_hi},
                               .listen = la,
                               .store = s,
                               .ctl_path = ctl_path,
                               .data_dir = data_dir(),
                               .runner = {.runtime = runtime,
                                          .self = self,
                                          .devices_env = devices ? devices_env : NULL,
                                          .devices_path = devices_path,
                                          .publish_host = publish_host,
                                          .key_file = key_file,
                                          .mount_keep_ms = keep_s * 1000 / divisor}};
    if ((rc = node_run(&cfg)) < 0)
        die("%s", err_msg(rc));
    else
        status = 0;
out:
    store_close(s);
    p2p_identity_wipe(&id);
    sodium_memzero(ckey, sizeof ckey);
    return status;
}
