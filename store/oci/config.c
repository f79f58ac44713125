/*
 * config.c - OCI / Docker image configs (jansson): what afsp reads of them: the platform they
 * name, and the process the executor runs (Entrypoint, Cmd, Env, WorkingDir, User).
 *
 * Owns nothing past a call. A config comes from a registry or a peer (verified against its
 * digest, but written by anyone): every field is type-checked before use. Must not do I/O.
 */
#include "oci.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int config_platform(const uint8_t *body, size_t len, char *out, size_t n)
{
    json_t *c = json_loadb((const char *)body, len, 0, NULL);
    const char *os = json_string_value(json_object_get(c, "os"));
    const char *arch = json_string_value(json_object_get(c, "architecture"));
    const char *var = json_string_value(json_object_get(c, "variant"));
    if (!c || !json_is_object(c)) {
        json_decref(c);
        return err_set(AFSP_E_FORMAT, "config is not a JSON object");
    }
    if (os && arch)
        snprintf(out, n, "%.31s/%.31s%s%.31s", os, arch, var ? "/" : "", var ? var : "");
    json_decref(c);
    return 0;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

void config_process_free(struct config_process *p)
{
    strv_free(p->entrypoint);
    strv_free(p->cmd);
    strv_free(p->env);
    free(p->workdir);
    free(p->user);
    memset(p, 0, sizeof *p);
}

/* A JSON array of strings (or null, or absent) into a NULL-terminated copy. */
static int strv_get(json_t *o, const char *key, bool env, char ***out)
{
    json_t *a = json_object_get(o, key);
    *out = NULL;
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a) || json_array_size(a) > CONFIG_ARGS_MAX)
        return err_set(AFSP_E_FORMAT, "config: %s is not an array of at most %d strings", key,
                       CONFIG_ARGS_MAX);
    size_t n = json_array_size(a);
    char **v = calloc(n + 1, sizeof *v);
    if (!v)
        return -ENOMEM;
    *out = v;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!s)
            return err_set(AFSP_E_FORMAT, "config: %s[%zu] is not a string", key, i);
        if (env && (!strchr(s, '=') || *s == '='))
            return err_set(AFSP_E_FORMAT, "config: Env[%zu] is not NAME=VALUE", i);
        if (!(v[i] = strdup(s)))
            return -ENOMEM;
    }
    return 0;
}

static int str_get(json_t *o, const char *key, char **out)
{
    json_t *s = json_object_get(o, key);
    *out = NULL;
    if (!s || json_is_null(s))
        return 0;
    if (!json_is_string(s))
        return err_set(AFSP_E_FORMAT, "config: %s is not a string", key);
    return (*out = strdup(json_string_value(s))) ? 0 : -ENOMEM;
}

int config_process(const uint8_t *body, size_t len, struct config_process *out)
{
    json_t *c = json_loadb((const char *)body, len, 0, NULL);
    int rc = 0;
    memset(out, 0, sizeof *out);
    if (!c || !json_is_object(c)) {
        json_decref(c);
        return err_set(AFSP_E_FORMAT, "config is not a JSON object");
    }
    json_t *p = json_object_get(c, "config");
    if (p && !json_is_null(p) && !json_is_object(p))
        rc = err_set(AFSP_E_FORMAT, "config: config is not an object");
    if (rc == 0 && json_is_object(p) &&
        (rc = strv_get(p, "Entrypoint", false, &out->entrypoint)) == 0 &&
        (rc = strv_get(p, "Cmd", false, &out->cmd)) == 0 &&
        (rc = strv_get(p, "Env", true, &out->env)) == 0 &&
        (rc = str_get(p, "WorkingDir", &out->workdir)) == 0)
        rc = str_get(p, "User", &out->user);
    json_decref(c);
    if (rc < 0)
        config_process_free(out);
    return rc;
}
