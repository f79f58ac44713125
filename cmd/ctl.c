/*
 * ctl.c - the CLI's calls to the node on the data directory, through the control client
 * (node.h): an error answer, or no node at all, becomes one line on stderr.
 */
#include "cmd.h"

#include <jansson.h>
#include <unistd.h>

json_t *node_ask(int fd, enum node_ctl_verb verb, json_t *fields, const char *what)
{
    if (fd < 0 && (fd = node_client_connect(data_dir())) < 0) {
        die("no node runs on %s (start one with: afsp node)", data_dir());
        return NULL;
    }
    json_t *ans = NULL;
    int rc = node_client_call(fd, verb, fields, &ans);
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
