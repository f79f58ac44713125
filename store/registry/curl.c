/*
 * curl.c - libcurl loaded when a registry is first asked (registry_int.h, CURL_FNS): dlopen of
 * libcurl.so.4 (Debian's libcurl4 or libcurl4-openssl), each function looked up, then
 * curl_global_init, once for the process.
 *
 * Owns: the library handle (never closed) and the function table.
 */
#include "registry_int.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

struct curl_api curl_api;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_err[256];

static void load(void)
{
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_err, sizeof load_err, "cannot load libcurl: %s", dlerror());
        return;
    }
    struct curl_api api;
#define X(name, ret, params)                                                                       \
    if (!(*(void **)&api.name = dlsym(h, "curl_" #name))) {                                        \
        snprintf(load_err, sizeof load_err, "libcurl has no curl_%s", #name);                      \
        return;                                                                                    \
    }
    CURL_FNS(X)
#undef X
    CURLcode rc = api.global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(load_err, sizeof load_err, "cannot initialise libcurl: %s", api.easy_strerror(rc));
        return;
    }
    curl_api = api;
}

int curl_load(void)
{
    pthread_once(&once, load);
    return curl_api.easy_init ? 0 : err_set(AFSP_E_NET, "%s", load_err);
}
