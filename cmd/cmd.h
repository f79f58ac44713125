/*
 * cmd.h - what the subcommands of the afsp binary share: the dispatch table, the data directory,
 * common options, and output helpers.
 */
#ifndef AFSP_CMD_H
#define AFSP_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../node/node.h"
#include "../store/store.h"

/* Options every command accepts (before or after its name). */
struct global_opts {
    const char *data;         /* --data DIR, else $AFSP_DATA, else the default */
    uint64_t cache_max_bytes; /* --cache-max-bytes N, 0 = default */
    int verbose;              /* -v, repeatable */
};
extern struct global_opts g_opts;

struct command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *summary;
    const char *usage; /* the whole --help text after the "usage:" line */
    bool hidden;
};

/* Handles a common option at argv[*i] (and its value). Returns 1 if it was one, 0 if not, or
 * -1 after printing an error. */
int global_opt(int argc, char **argv, int *i);

/* Steps through a command's arguments (argv[0] is the command name). */
struct cmd_iter {
    const struct command *c;
    int argc, i;
    char **argv;
    int status; /* the exit status when cmd_next returns -1 */
};
#define CMD_ITER(cmd, argc, argv)                                                                  \
    {                                                                                              \
        (cmd), (argc), 0, (argv), 0                                                                \
    }
/* Handles the common options and -h/--help itself. Returns 1 with *arg set to the next argument
 * that is the command's own, 0 at the end, or -1 when the command must exit with it->status
 * (0 after printing help, 2 after a usage error). */
int cmd_next(struct cmd_iter *it, const char **arg);
/* If the current argument is option name ("--name VALUE" or "--name=VALUE"), returns its value;
 * else NULL. A missing value is a usage error reported by the next cmd_next. */
const char *cmd_value(struct cmd_iter *it, const char *name);
/* A whole number from 0 to max, in decimal. Returns 0, or -1 for anything else. */
int cmd_number(const char *v, unsigned long long max, unsigned long long *out);
/* Prints "afsp: " and the message to stderr; returns 1 (the exit status). */
int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the command's usage to stdout (for --help) and returns 0. */
int cmd_help(const struct command *c);
/* Prints the usage hint for a bad invocation to stderr; returns 2. */
int cmd_usage_error(const struct command *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const struct command *cmd_find(const char *name);

/* The data directory in effect (never NULL). */
const char *data_dir(void);
/* Opens the store at data_dir(); prints the error and returns non-zero on failure. */
int open_store(struct store **s, bool readonly);
/* For commands whose one option is --json: parses it. Returns -1 to go on, else the exit status
 * (help or usage already printed). */
int json_only_args(const struct command *c, int argc, char **argv, int *json);
/* For listings (`images`, `layers`): parses their one option, --json, and opens the store
 * read-only, or sets *s to NULL when the data directory holds none yet (nothing pulled: an
 * empty list, not an error). Returns -1 to go on, else the exit status (help, usage or error
 * already printed). */
int listing_start(const struct command *c, int argc, char **argv, int *json, struct store **s);

/* The answer of the node on data_dir() to verb (fields: borrowed, may be NULL), or NULL after
 * saying on stderr "afsp: what: why" (or that no node runs there). fd: a connection to the node
 * (closed here), or -1 to make one. The caller json_decref's the answer. */
struct json_t;
struct json_t *node_ask(int fd, enum node_ctl_verb verb, struct json_t *fields, const char *what);

/* Prints v on stdout, indented, keys in the order they were added, and a newline; consumes v. */
struct json_t;
void json_print(struct json_t *v);

/* The options of `pull` that other commands that may pull (mount) take too. */
#define PULL_MAX_INSECURE 32
struct pull_args {
    const char *platform;
    const char *insecure[PULL_MAX_INSECURE + 1]; /* NULL-terminated */
    size_t ninsecure;
};
/* Consumes --platform or --insecure-registry at the iterator: 1 if it was one, 0 if not, -1
 * on a usage error (it->status set). */
int pull_opt(struct cmd_iter *it, const char *arg, struct pull_args *pa);
/* store_pull with progress on a terminal. */
int pull_run(struct store *s, const char *ref, const struct pull_args *pa,
             uint8_t digest[DIGEST_LEN]);
/* The pull, run by the node whose control socket is fd (so that peers are asked first; lazy:
 * layers a peer has come as they are read). Returns 0 or 1 after saying why. */
int pull_via_node(int fd, const char *ref, const struct pull_args *pa, bool lazy,
                  uint8_t digest[DIGEST_LEN]);

int cmd_pull(int argc, char **argv);
int cmd_images(int argc, char **argv);
int cmd_layers(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_genkey(int argc, char **argv);
int cmd_node(int argc, char **argv);
int cmd_peers(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_providers(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_kill(int argc, char **argv);
int cmd_wait(int argc, char **argv);

extern const struct command cmd_pull_def, cmd_images_def, cmd_layers_def, cmd_prune_def,
    cmd_inspect_def, cmd_mount_def, cmd_umount_def, cmd_genkey_def, cmd_node_def, cmd_peers_def,
    cmd_stats_def, cmd_providers_def, cmd_run_def, cmd_jobs_def, cmd_logs_def, cmd_kill_def,
    cmd_wait_def;

#endif
