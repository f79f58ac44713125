/*
 * runner.c - the one test runner: every unit test registered with TEST(), then every executable
 * integration script in the directory given with --scripts, each in its own child process group
 * with a timeout. Prints one line per test and, last, "N passed, N failed".
 *
 * usage: test-runner [--scripts DIR] [--timeout SECS] [--script-timeout SECS] [FILTER...]
 * A FILTER is a substring of the test or script name; with filters, only matching tests run.
 */
#include "unit/test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct test *tests, **tests_tail = &tests;
static char tmpdir_path[4096];

void test_register(struct test *t)
{
    *tests_tail = t;
    tests_tail = &t->next;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "  %s:%d: check failed: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

const char *test_tmpdir(void)
{
    return tmpdir_path;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    remove(p);
    return 0;
}

static volatile sig_atomic_t got_alarm;
static void on_alarm(int sig)
{
    (void)sig;
    got_alarm = 1;
}

/* Runs fn (a unit test) or argv (a script) in a child with its own process group. Returns 0 if
 * it passed. Output of a script goes to logpath and is printed only on failure. */
static int run_child(const char *name, void (*fn)(void), char *const argv[], unsigned timeout,
                     const char *logpath)
{
    char tmpl[] = "/tmp/afsp-test.XXXXXX";
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(tmpdir_path, sizeof tmpdir_path, "%s", tmpl);
    uint64_t t0 = (uint64_t)time(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (fn) {
            alarm(timeout);
            fn();
            _exit(0);
        }
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        setenv("TEST_TMPDIR", tmpl, 1);
        execv(argv[0], argv);
        perror("execv");
        _exit(127);
    }
    setpgid(pid, pid);
    int status = 0;
    got_alarm = 0;
    alarm(timeout + 5);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno == EINTR && got_alarm) {
            kill(-pid, SIGTERM);
            usleep(500000);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        if (errno != EINTR)
            break;
    }
    alarm(0);
    kill(-pid, SIGKILL); /* anything the test left behind in its group */
    nftw(tmpl, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    unsigned secs = (unsigned)((uint64_t)time(NULL) - t0);
    if (ok) {
        printf("ok   %s (%us)\n", name, secs);
    } else {
        if (got_alarm || (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM))
            printf("FAIL %s: timed out after %us\n", name, timeout);
        else if (WIFSIGNALED(status))
            printf("FAIL %s: killed by signal %d\n", name, WTERMSIG(status));
        else
            printf("FAIL %s: exit status %d\n", name, WEXITSTATUS(status));
        if (logpath) {
            fflush(stdout);
            FILE *f = fopen(logpath, "r");
            if (f) {
                char line[4096];
                while (fgets(line, sizeof line, f))
                    printf("    | %s", line);
                fclose(f);
            }
        }
    }
    fflush(stdout);
    return ok ? 0 : 1;
}

static int matches(const char *name, int nfilters, char **filters)
{
    if (nfilters == 0)
        return 1;
    for (int i = 0; i < nfilters; i++)
        if (strstr(name, filters[i]))
            return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    const char *scripts = NULL;
    unsigned timeout = 60, script_timeout = 900;
    int i = 1, passed = 0, failed = 0;

    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--scripts") && i + 1 < argc)
            scripts = argv[++i];
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
            timeout = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--script-timeout") && i + 1 < argc)
            script_timeout = (unsigned)atoi(argv[++i]);
        else
            break;
    }
    int nfilters = argc - i;
    char **filters = argv + i;
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    for (struct test *t = tests; t; t = t->next) {
        if (!matches(t->name, nfilters, filters))
            continue;
        if (run_child(t->name, t->fn, NULL, timeout, NULL))
            failed++;
        else
            passed++;
    }

    if (scripts) {
        DIR *d = opendir(scripts);
        char *names[512];
        size_t n = 0;
        if (!d) {
            printf("FAIL cannot open %s: %s\n", scripts, strerror(errno));
            failed++;
        }
        for (struct dirent *e; d && (e = readdir(d)) && n < 512;) {
            size_t l = strlen(e->d_name);
            if (l > 3 && !strcmp(e->d_name + l - 3, ".sh") && strncmp(e->d_name, "lib", 3))
                names[n++] = strdup(e->d_name);
        }
        if (d)
            closedir(d);
        qsort(names, n, sizeof *names, cmp_str);
        char logdir[] = "/tmp/afsp-testlogs.XXXXXX";
        if (n && !mkdtemp(logdir))
            return 2;
        for (size_t k = 0; k < n; k++) {
            char path[4096], log[4096], name[512];
            snprintf(name, sizeof name, "%.*s", (int)strlen(names[k]) - 3, names[k]);
            if (matches(name, nfilters, filters)) {
                snprintf(path, sizeof path, "%s/%s", scripts, names[k]);
                snprintf(log, sizeof log, "%s/%s.log", logdir, name);
                char *av[] = {"/bin/bash", path, NULL};
                char *argv2[] = {av[0], av[1], NULL};
                if (run_child(name, NULL, argv2, script_timeout, log))
                    failed++;
                else
                    passed++;
                unlink(log);
            }
            free(names[k]);
        }
        if (n)
            rmdir(logdir);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
