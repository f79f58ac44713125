/*
 * err.c - error names and the per-thread error message chain.
 *
 * Owns: err_str() for every project code and errno, and the thread-local message that err_set()
 * records and err_ctx() prefixes. Must not allocate: the message lives in a fixed buffer, and a
 * message that does not fit is cut, never lost entirely.
 */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERR_MSG_MAX 1024

static _Thread_local char err_buf[ERR_MSG_MAX];
static _Thread_local int err_rc;

const char *err_str(int rc)
{
    switch (rc) {
#define X(name, text)                                                                              \
    case name:                                                                                     \
        return text;
        AFSP_ERRORS(X)
#undef X
    case 0:
        return "success";
    default:
        if (rc < 0 && rc > -4096)
            return strerror(-rc);
        return "unknown error";
    }
}

static void err_vset(int rc, const char *fmt, va_list ap)
{
    int n = 0;
    if (fmt) {
        n = vsnprintf(err_buf, sizeof err_buf, fmt, ap);
        if (n < 0)
            n = 0;
        if ((size_t)n >= sizeof err_buf)
            n = sizeof err_buf - 1;
        n += snprintf(err_buf + n, sizeof err_buf - n, ": ");
        if ((size_t)n >= sizeof err_buf)
            n = sizeof err_buf - 1;
    }
    snprintf(err_buf + n, sizeof err_buf - n, "%s", err_str(rc));
    err_rc = rc;
}

int err_set(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(rc, fmt, ap);
    va_end(ap);
    return rc;
}

int err_ctx(int rc, const char *fmt, ...)
{
    char old[ERR_MSG_MAX];
    va_list ap;

    if (err_rc != rc || !err_buf[0])
        err_set(rc, NULL);
    memcpy(old, err_buf, sizeof old);
    va_start(ap, fmt);
    int n = vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n < sizeof err_buf - 2) {
        memcpy(err_buf + n, ": ", 2);
        n += 2;
        size_t room = sizeof err_buf - (size_t)n - 1, len = strlen(old);
        memcpy(err_buf + n, old, len < room ? len : room);
        err_buf[n + (len < room ? len : room)] = 0;
    }
    return rc;
}

const char *err_msg(int rc)
{
    if (err_rc == rc && err_buf[0])
        return err_buf;
    return err_str(rc);
}

void err_clear(void)
{
    err_buf[0] = 0;
    err_rc = 0;
}
