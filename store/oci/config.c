/*
 * config.c - OCI / Docker image configs (jansson): what afsp reads of them. Today that is the
 * platform they name; the executor's fields (Env, Entrypoint, Cmd, WorkingDir, User) belong
 * here too when it reads them.
 *
 * Owns nothing past a call. A config comes from a registry or a peer (verified against its
 * digest, but written by anyone): every field is type-checked before use. Must not do I/O.
 */
#include "oci.h"

#include <jansson.h>
#include <stdio.h>

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
