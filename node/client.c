/*
 * client.c - the control client: the CLI's and the mount process's side of DATA/afsp.sock
 * (node.h, NODE_CTL_VERBS). Blocking: connect, send one request line, read one answer line.
 *
 * Owns: the client's socket for the length of a call. Must not: build a request a verb of the
 * table does not name.
 */
#include "node.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int node_client_connect(const char *dir)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (snprintf(a.sun_path, sizeof a.sun_path, "%s/" NODE_CTL_SOCK, dir) >= (int)sizeof a.sun_path)
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

static int send_all(int fd, const char *p, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t k = write(fd, p + off, n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return err_set(-errno, "cannot talk to the node");
        off += (size_t)k;
    }
    return 0;
}

int node_client_send(int fd, enum node_ctl_verb verb, json_t *fields)
{
    struct buf in = {0};
    const char *name = node_ctl_verb_name(verb);
    json_t *req = name ? json_pack("{s:s}", "cmd", name) : NULL;
    if (!req)
        return name ? -ENOMEM : AFSP_E_USAGE;
    if (fields && json_object_update(req, fields) < 0) {
        json_decref(req);
        return -ENOMEM;
    }
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    int rc = text ? 0 : -ENOMEM;
    if (rc == 0 && (rc = buf_printf(&in, "%s\n", text)) == 0)
        rc = send_all(fd, (const char *)in.p, in.len);
    free(text);
    buf_release(&in);
    return rc;
}

int node_client_recv(int fd, json_t **ans)
{
    struct buf in = {0};
    int rc = 0;
    *ans = NULL;
    while (rc == 0) {
        if ((rc = buf_reserve(&in, 64 << 10)) < 0)
            break;
        ssize_t k = read(fd, in.p + in.len, 64 << 10);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rc = err_set(-ETIMEDOUT, "the node did not answer in time");
            break;
        }
        if (k < 0) {
            rc = err_set(-errno, "cannot talk to the node");
            break;
        }
        in.len += (size_t)k;
        if (k == 0 || memchr(in.p + in.len - k, '\n', (size_t)k))
            break;
        if (in.len > NODE_CTL_MAX_ANSWER)
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

int node_client_call(int fd, enum node_ctl_verb verb, json_t *fields, json_t **ans)
{
    *ans = NULL;
    int rc = node_client_send(fd, verb, fields);
    return rc < 0 ? rc : node_client_recv(fd, ans);
}
