/*
 * test.h - the unit test harness: TEST(name) { ... } registers a test; the runner
 * (tests/runner.c) runs each in its own forked child with a timeout. A failed CHECK ends the
 * child with a message naming the file, line and expression.
 */
#ifndef AFSP_TEST_H
#define AFSP_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test {
    const char *name;
    void (*fn)(void);
    struct test *next;
};

void test_register(struct test *t);
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
/* A fresh empty directory for this test, removed by the runner afterwards. */
const char *test_tmpdir(void);

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    static struct test test_rec_##name = {#name, test_##name, NULL};                               \
    __attribute__((constructor)) static void test_reg_##name(void)                                 \
    {                                                                                              \
        test_register(&test_rec_##name);                                                           \
    }                                                                                              \
    static void test_##name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test_fail(__FILE__, __LINE__, "%s", #cond);                                            \
    } while (0)

#define CHECK_INT(a, op, b)                                                                        \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (!(a_ op b_))                                                                           \
            test_fail(__FILE__, __LINE__, "%s %s %s (%lld vs %lld)", #a, #op, #b, a_, b_);         \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_))                                                          \
            test_fail(__FILE__, __LINE__, "%s == %s (\"%s\" vs \"%s\")", #a, #b,                   \
                      a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                     \
    } while (0)

/* Writes text to the file at dir/name (name NULL: dir is the file's path), made or truncated. */
static inline void test_put(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", dir, name ? "/" : "", name ? name : "");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    CHECK(fclose(f) == 0);
}

/* The file at path into buf (n bytes, NUL-terminated, cut to fit); false if it cannot be read. */
static inline bool test_slurp(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t k = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[k] = 0;
    return true;
}

/* Whether anything is mounted at or under dir (/proc/self/mountinfo names it). */
static inline bool test_mounted_under(const char *dir)
{
    char line[4096];
    FILE *f = fopen("/proc/self/mountinfo", "r");
    bool found = false;
    CHECK(f != NULL);
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, dir) != NULL;
    fclose(f);
    return found;
}

#endif
