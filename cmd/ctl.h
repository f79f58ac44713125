/*
 * ctl.h - the control socket between the CLI and a running node (`afsp node`): DATA/afsp.sock,
 * mode 0600, one JSON request per connection ({"cmd": "peers" | "stats" | "pull", ...}) and one
 * JSON answer line ({"ok": true, ...} or {"error": "..."}). docs/cli.md lists the fields.
 */
#ifndef AFSP_CTL_H
#define AFSP_CTL_H

#include <jansson.h>

#define CTL_DEFAULT_PORT_STR "7070"
#define CTL_SOCK "afsp.sock"
#define CTL_MAX_LINE (16u << 20) /* the longest answer a client reads */

/* Connects to the node running on data_dir(). Returns a socket, or -1 when none runs there (no
 * socket, or no one listening on it). */
int ctl_connect(void);
/* Sends req and reads the answer (*ans owned by the caller; an {"error": ...} answer is an
 * answer too). Returns 0, or a negative code with err_msg set. */
int ctl_call(int fd, json_t *req, json_t **ans);

/* ctl_call on fd (closed here) with the answer's "error" turned into a failure: returns the
 * answer (the caller json_decref's it), or NULL after printing "afsp: what: why". */
json_t *ctl_exchange(int fd, json_t *req, const char *what);
/* {"cmd": name} to the node on data_dir(): ctl_exchange, or NULL after saying that no node
 * runs there. */
json_t *ctl_ask(const char *name);

#endif
