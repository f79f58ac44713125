/*
 * tcp_copy.c - the baselines of the peer-pull benchmark: FILE sent over one loopback TCP
 * connection and written to OUT (then fdatasync'ed, as a store does), by two processes, as
 * `nc` into a file would; with --sha256 the receiver also hashes what it gets (OpenSSL's
 * SHA-256, the code afsp uses). What moving, storing and checking the bytes costs at all.
 *
 *   tcp_copy FILE OUT [--sha256]
 *
 * Prints "RESULT seconds sender_cpu_s receiver_cpu_s" (wall time from the sender's first read
 * to the receiver's sync; CPU from getrusage of each process).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF (256u << 10)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu(const struct rusage *r)
{
    return (double)(r->ru_utime.tv_sec + r->ru_stime.tv_sec) +
           (double)(r->ru_utime.tv_usec + r->ru_stime.tv_usec) / 1e6;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void send_file(const char *path, const struct sockaddr_in *a)
{
    int fd = open(path, O_RDONLY), s = socket(AF_INET, SOCK_STREAM, 0);
    char *b = malloc(BUF);
    if (fd < 0 || s < 0 || !b || connect(s, (const struct sockaddr *)a, sizeof *a) < 0)
        die("sender");
    for (;;) {
        ssize_t n = read(fd, b, BUF);
        if (n < 0)
            die("read");
        if (n == 0)
            break;
        for (ssize_t o = 0; o < n;) {
            ssize_t k = write(s, b + o, (size_t)(n - o));
            if (k < 0)
                die("send");
            o += k;
        }
    }
    close(s);
    close(fd);
    free(b);
}

int main(int argc, char **argv)
{
    if (argc < 3 || (argc == 4 && strcmp(argv[3], "--sha256")) || argc > 4) {
        fprintf(stderr, "usage: tcp_copy FILE OUT [--sha256]\n");
        return 2;
    }
    int hash = argc == 4;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) < 0)
        die("listen");
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0)
        die(argv[2]);
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        send_file(argv[1], &a);
        _exit(0);
    }
    int s = accept(l, NULL, NULL);
    char *b = malloc(BUF);
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned mdlen;
    if (s < 0 || !b || !h || !EVP_DigestInit_ex(h, EVP_sha256(), NULL))
        die("receiver");
    for (;;) {
        ssize_t n = read(s, b, BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("recv");
        if (n == 0)
            break;
        if (hash)
            EVP_DigestUpdate(h, b, (size_t)n);
        for (ssize_t o = 0; o < n;) {
            ssize_t k = write(out, b + o, (size_t)(n - o));
            if (k < 0)
                die("write");
            o += k;
        }
    }
    EVP_DigestFinal_ex(h, md, &mdlen);
    if (fdatasync(out) < 0)
        die("fdatasync");
    double t1 = now();
    int st;
    struct rusage rs, rr;
    if (wait4(pid, &st, 0, &rs) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
        die("sender failed");
    getrusage(RUSAGE_SELF, &rr);
    printf("RESULT %.3f %.3f %.3f\n", t1 - t0, cpu(&rs), cpu(&rr));
    if (hash) {
        printf("sha256 ");
        for (unsigned i = 0; i < mdlen; i++)
            printf("%02x", md[i]);
        printf("\n");
    }
    EVP_MD_CTX_free(h);
    free(b);
    return 0;
}
