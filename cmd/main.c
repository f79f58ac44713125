/*
 * main.c - the afsp binary: global options, the dispatch table, help, and the pieces every
 * subcommand shares (data directory, store opening, messages). One file per subcommand.
 */
#include "cmd.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct global_opts g_opts;

static const struct command *const commands[] = {
    &cmd_pull_def,   &cmd_images_def,    &cmd_layers_def, &cmd_prune_def, &cmd_mount_def,
    &cmd_umount_def, &cmd_inspect_def,   &cmd_genkey_def, &cmd_node_def,  &cmd_peers_def,
    &cmd_stats_def,  &cmd_providers_def, &cmd_run_def,    &cmd_jobs_def,  &cmd_logs_def,
    &cmd_kill_def,   &cmd_wait_def,
};

static const char main_usage[] =
    "usage: afsp [--data DIR] [--cache-max-bytes N] [-v] COMMAND [ARGS...]\n"
    "\n"
    "afsp keeps container image layers in a local store and makes them readable lazily.\n"
    "\n"
    "Options (also accepted after COMMAND):\n"
    "  --data DIR             data directory (default: $AFSP_DATA, else /var/lib/afsp for\n"
    "                         root, else ~/.local/share/afsp)\n"
    "  --cache-max-bytes N    cache limit, e.g. 20G (default: min(1 TiB, 60% of the free\n"
    "                         space of the data directory's filesystem))\n"
    "  -v, --verbose          more log output (repeat for debug)\n"
    "  -h, --help             this help; `afsp COMMAND --help` for a command's\n"
    "\n"
    "Commands:\n";

static int print_main_usage(FILE *f)
{
    fputs(main_usage, f);
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (!commands[i]->hidden)
            fprintf(f, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
    return 0;
}

int die(const char *fmt, ...)
{
    va_list ap;
    fputs("afsp: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cmd_help(const struct command *c)
{
    printf("usage: afsp %s %s", c->name, c->usage);
    return 0;
}

int cmd_usage_error(const struct command *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "afsp %s: ", c->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'afsp %s --help'.\n", c->name);
    return 2;
}

const struct command *cmd_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (!strcmp(commands[i]->name, name))
            return commands[i];
    return NULL;
}

int global_opt(int argc, char **argv, int *i)
{
    const char *a = argv[*i], *val = NULL;
    size_t n;
    if (!strcmp(a, "--verbose")) {
        g_opts.verbose++;
        return 1;
    }
    if (a[0] == '-' && a[1] == 'v' && strspn(a + 1, "v") == strlen(a + 1)) { /* -v, -vv */
        g_opts.verbose += (int)strlen(a + 1);
        return 1;
    }
    if (!strncmp(a, "--data", n = 6) || !strncmp(a, "--cache-max-bytes", n = 17)) {
        if (a[n] == '=')
            val = a + n + 1;
        else if (a[n] == 0 && *i + 1 < argc)
            val = argv[++*i];
        else if (a[n] == 0)
            return die("%s needs a value", a), -1;
        else
            return 0;
        if (n == 6) {
            if (!*val)
                return die("--data needs a directory"), -1;
            g_opts.data = val;
        } else if (bytes_parse(val, &g_opts.cache_max_bytes) < 0 || !g_opts.cache_max_bytes) {
            return die("--cache-max-bytes: '%s' is not a byte count (e.g. 500M, 20G)", val), -1;
        }
        return 1;
    }
    return 0;
}

int cmd_next(struct cmd_iter *it, const char **arg)
{
    if (it->status)
        return -1;
    while (++it->i < it->argc) {
        int r = global_opt(it->argc, it->argv, &it->i);
        if (r < 0) {
            it->status = 2;
            return -1;
        }
        if (r)
            continue;
        const char *a = it->argv[it->i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            it->status = cmd_help(it->c);
            return -1;
        }
        *arg = a;
        return 1;
    }
    return 0;
}

int cmd_number(const char *v, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno || x > max || v[0] == '-')
        return -1;
    *out = x;
    return 0;
}

const char *cmd_value(struct cmd_iter *it, const char *name)
{
    const char *a = it->argv[it->i];
    size_t n = strlen(name);
    if (strncmp(a, name, n))
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n])
        return NULL;
    if (it->i + 1 < it->argc)
        return it->argv[++it->i];
    it->status = cmd_usage_error(it->c, "%s needs a value", name);
    return "";
}

const char *data_dir(void)
{
    static char buf[4096];
    const char *e;
    if (g_opts.data)
        return g_opts.data;
    if ((e = getenv("AFSP_DATA")) && *e)
        return e;
    if (geteuid() == 0)
        return "/var/lib/afsp";
    e = getenv("HOME");
    snprintf(buf, sizeof buf, "%s/.local/share/afsp", e && *e ? e : ".");
    return buf;
}

static int mkdir_p(const char *path)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    }
    return mkdir(p, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

int open_store(struct store **s, bool readonly)
{
    struct store_opts o = {data_dir(), g_opts.cache_max_bytes, readonly, 0};
    int rc;
    /* Options after the command name may have raised the verbosity. */
    if (g_opts.verbose > (log_level == LOG_DEBUG ? 2 : log_level == LOG_INFO ? 1 : 0))
        log_level = g_opts.verbose >= 2 ? LOG_DEBUG : LOG_INFO;
    if (!readonly && (rc = mkdir_p(o.dir)) < 0)
        return die("cannot create data directory %s: %s", o.dir, err_str(rc));
    rc = store_open(s, &o);
    if (rc < 0)
        return die("cannot open the store in %s: %s", o.dir, err_msg(rc));
    return 0;
}

void json_print(json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(v);
}

int json_only_args(const struct command *c, int argc, char **argv, int *json)
{
    struct cmd_iter it = CMD_ITER(c, argc, argv);
    const char *arg;
    int r;
    *json = 0;
    while ((r = cmd_next(&it, &arg)) > 0) {
        if (strcmp(arg, "--json"))
            return cmd_usage_error(c, "unexpected argument %s", arg);
        *json = 1;
    }
    return r < 0 ? it.status : -1;
}

int listing_start(const struct command *c, int argc, char **argv, int *json, struct store **s)
{
    *s = NULL;
    int r = json_only_args(c, argc, argv, json);
    if (r >= 0)
        return r;
    if (store_exists(data_dir()) && open_store(s, true))
        return 1;
    return -1;
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc; i++) {
        int r = global_opt(argc, argv, &i);
        if (r < 0)
            return 2;
        if (r)
            continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return print_main_usage(stdout);
        if (argv[i][0] == '-') {
            fprintf(stderr, "afsp: unknown option %s\n", argv[i]);
            return print_main_usage(stderr), 2;
        }
        break;
    }
    if (i >= argc) {
        print_main_usage(stderr);
        return 2;
    }
    if (!strcmp(argv[i], "help")) {
        const struct command *c = i + 1 < argc ? cmd_find(argv[i + 1]) : NULL;
        return c ? cmd_help(c) : print_main_usage(stdout);
    }
    const struct command *c = cmd_find(argv[i]);
    if (!c) {
        fprintf(stderr, "afsp: unknown command '%s'\n", argv[i]);
        return print_main_usage(stderr), 2;
    }
    log_level = g_opts.verbose >= 2 ? LOG_DEBUG : g_opts.verbose ? LOG_INFO : LOG_WARN;
    if (getenv("AFSP_LOG") && !strcmp(getenv("AFSP_LOG"), "debug"))
        log_level = LOG_DEBUG;
    trace_open(c->name);
    TRACE("start");
    return c->run(argc - i, argv + i);
}
