/*
 * addr.c - node addresses: "HOST:PORT" text (resolved) and socket addresses into and out of
 * struct dht_addr, the form the core and the DHT use. For the daemon and the CLI, not the core.
 *
 * Owns: nothing. Must not: be called from the core (it resolves names: blocking).
 */
#include "node.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void node_addr_from_sockaddr(const struct sockaddr *sa, struct dht_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa;
        out->family = 4;
        memcpy(out->ip, &a->sin_addr, 4);
        out->port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)sa;
        bool v4 = IN6_IS_ADDR_V4MAPPED(&a->sin6_addr);
        out->family = v4 ? 4 : 6;
        memcpy(out->ip, (const uint8_t *)&a->sin6_addr + (v4 ? 12 : 0), v4 ? 4 : 16);
        out->port = ntohs(a->sin6_port);
    }
}

void node_addr_to_sockaddr(const struct dht_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == 4) {
        struct sockaddr_in *s4 = (void *)ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a->ip, 4);
        s4->sin_port = htons(a->port);
    } else {
        struct sockaddr_in6 *s6 = (void *)ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a->ip, 16);
        s6->sin6_port = htons(a->port);
    }
}

int node_addr_parse(const char *text, const char *default_host, struct dht_addr *out)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text + strlen(text) - 1)
        return AFSP_E_USAGE;
    size_t hl = (size_t)(colon - text);
    if (hl >= sizeof host)
        return AFSP_E_USAGE;
    memcpy(host, text, hl);
    host[hl] = 0;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return AFSP_E_USAGE;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int e = getaddrinfo(host[0] ? host : default_host, colon + 1, &hints, &res);
    if (e != 0)
        return err_set(AFSP_E_NET, "cannot resolve %s: %s", host, gai_strerror(e));
    node_addr_from_sockaddr(res->ai_addr, out);
    freeaddrinfo(res);
    return 0;
}
