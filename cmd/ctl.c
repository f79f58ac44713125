/*
 * ctl.c - the CLI's side of the control socket (ctl.h): connect, send one request, read one
 * answer line.
 */
#include "ctl.h"
#include "cmd.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ctl_connect(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", data_dir(), CTL_SOCK) >=
        (int)sizeof a.sun_path)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int ctl_call(int fd, json_t *req, json_t **ans)
{
    char *text = json_dumps(req, JSON_COMPACT);
    struct buf in = {0};
    int rc = 0;
    *ans = NULL;
    if (!text)
        return -ENOMEM;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room for nothing: write the NUL's place separately */
    for (size_t off = 0; off <= n && rc == 0;) {
        ssize_t k = write(fd, text + off, n + 1 - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            rc = err_set(-errno, "cannot talk to the node");
        else
            off += (size_t)k;
    }
    free(text);
    while (rc == 0) {
        if ((rc = buf_reserve(&in, 64 << 10)) < 0)
            break;
        ssize_t k = read(fd, in.p + in.len, 64 << 10);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            rc = err_set(-errno, "cannot talk to the node");
            break;
        }
        if (k == 0 || memchr(in.p + in.len, '\n', (size_t)k)) {
            in.len += (size_t)k;
            break;
        }
        in.len += (size_t)k;
        if (in.len > CTL_MAX_LINE)
            rc = err_set(AFSP_E_FORMAT, "the node's answer is too long");
    }
    if (rc == 0) {
        *ans = json_loadb((const char *)in.p, in.len, JSON_DISABLE_EOF_CHECK, NULL);
        if (!*ans || !json_is_object(*ans)) {
            json_decref(*ans);
            *ans = NULL;
            rc = err_set(AFSP_E_FORMAT, "the node ended the connection without an answer");
        }
    }
    buf_release(&in);
    return rc;
}

json_t *ctl_exchange(int fd, json_t *req, const char *what)
{
    json_t *ans = NULL;
    int rc = ctl_call(fd, req, &ans);
    close(fd);
    if (rc < 0) {
        die("%s: %s", what, err_msg(rc));
        return NULL;
    }
    const char *e = json_string_value(json_object_get(ans, "error"));
    if (e) {
        die("%s: %s", what, e);
        json_decref(ans);
        return NULL;
    }
    return ans;
}

json_t *ctl_ask(const char *name)
{
    int fd = ctl_connect();
    if (fd < 0) {
        die("no node runs on %s (start one with: afsp node)", data_dir());
        return NULL;
    }
    json_t *req = json_pack("{s:s}", "cmd", name);
    json_t *ans = ctl_exchange(fd, req, name);
    json_decref(req);
    return ans;
}
