/*
 * util.h - the one public header of util/: errors, logging, digests, buffers, time, one RNG type.
 *
 * Every module may include this. Nothing here does I/O beyond writing log lines to stderr.
 */
#ifndef AFSP_UTIL_H
#define AFSP_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors -------------------------------------------------------------------------------
 * Functions return int: 0 (or a count) on success, a negative errno or one of the project codes
 * below on failure. err_str() names every code. A function that fails may record a detailed
 * message with err_set(); a caller that knows the subject prepends it with err_ctx(). The whole
 * chain is read with err_msg(). The message is per thread.
 */
#define AFSP_ERRORS(X)                                                                             \
    X(AFSP_E_DIGEST, "digest mismatch")                                                            \
    X(AFSP_E_SIZE, "size mismatch")                                                                \
    X(AFSP_E_FORMAT, "malformed data")                                                             \
    X(AFSP_E_UNSUPPORTED, "unsupported format")                                                    \
    X(AFSP_E_NOTFOUND, "not found")                                                                \
    X(AFSP_E_AUTH, "authentication failed")                                                        \
    X(AFSP_E_HTTP, "registry error")                                                               \
    X(AFSP_E_NET, "network error")                                                                 \
    X(AFSP_E_TRUNCATED, "truncated")                                                               \
    X(AFSP_E_TOOBIG, "does not fit in the cache limit")                                            \
    X(AFSP_E_PLATFORM, "no manifest for this platform")                                            \
    X(AFSP_E_STORE, "store error")                                                                 \
    X(AFSP_E_REF, "invalid image reference")                                                       \
    X(AFSP_E_USAGE, "invalid usage")                                                               \
    X(AFSP_E_PROTO, "peer protocol violation")

enum afsp_err {
    AFSP_E_FIRST_ = -2000,
#define X(name, text) name,
    AFSP_ERRORS(X)
#undef X
        AFSP_E_LAST_
};

/* Returns a static string naming rc (a project code or a negative errno). Never NULL. */
const char *err_str(int rc);

/* Records "<formatted>: <err_str(rc)>" (or just err_str(rc) when fmt is NULL) as this thread's
 * error message and returns rc, so that `return err_set(AFSP_E_DIGEST, NULL);` works. */
int err_set(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "<formatted>: " to this thread's message (setting it to err_str(rc) first if no
 * message for rc was recorded) and returns rc. */
int err_ctx(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* This thread's message for rc: the recorded chain if it was recorded for rc, else err_str(rc).
 * Valid until the next err_* call on this thread. */
const char *err_msg(int rc);

/* Forgets this thread's message. */
void err_clear(void);

/* ---- logging ------------------------------------------------------------------------------ */
enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
extern int log_level; /* messages above this level are not formatted; default LOG_WARN */

void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define LOG_AT(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= log_level)                                                                    \
            log_write((lvl), __VA_ARGS__);                                                         \
    } while (0)
#define log_error(...) LOG_AT(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_WARN, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_DEBUG, __VA_ARGS__)

/* Tracing, for the timeline of a cold start (bench/timeline.py, docs/benchmarks.md): with
 * AFSP_TRACE=FILE in its environment, every afsp process appends one line per event to FILE:
 * "SECONDS PID WHO EVENT...", SECONDS on CLOCK_MONOTONIC (one clock for all processes of the
 * machine). trace_open reads the variable once (the process's start); off, TRACE costs a branch.
 * A developer's tool: FILE is created 0600, and no event carries a key or a chunk's bytes. */
extern int trace_fd; /* -1: off */
void trace_open(const char *who);
void trace_write(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define TRACE(...)                                                                                 \
    do {                                                                                           \
        if (__builtin_expect(trace_fd >= 0, 0))                                                    \
            trace_write(__VA_ARGS__);                                                              \
    } while (0)

/* ---- digests (SHA-256 via OpenSSL libcrypto) -------------------------------------------- */
#define DIGEST_LEN 32
#define DIGEST_STR_LEN 71 /* "sha256:" + 64 hex, without the NUL */

struct sha256 {
    void *ctx; /* EVP_MD_CTX, owned */
};

/* Returns 0 or -ENOMEM. */
int sha256_init(struct sha256 *h);
void sha256_update(struct sha256 *h, const void *p, size_t n);
/* Writes the digest and resets the context for reuse. */
void sha256_final(struct sha256 *h, uint8_t out[static DIGEST_LEN]);
void sha256_release(struct sha256 *h);
/* One-shot. */
void sha256_buf(const void *p, size_t n, uint8_t out[static DIGEST_LEN]);

/* SHA-256 that can stop at any multiple of 64 bytes and resume there from the chaining value
 * alone: a blob's digest computed piece by piece, each piece on its own, in any order, by
 * whoever holds the chaining value where it starts (the layer index stores one per chunk). The
 * same compression function as sha256_*, so a chain that ends in the blob's digest proves every
 * piece. No allocation; the state is plain memory. */
struct sha256c {
    uint64_t st[14]; /* OpenSSL's SHA256_CTX (112 bytes) */
};
/* Starts at byte off (a multiple of 64) of a message whose chaining value there is cv, or at
 * the start (off 0, cv NULL). */
void sha256c_start(struct sha256c *c, const uint8_t cv[DIGEST_LEN], uint64_t off);
void sha256c_update(struct sha256c *c, const void *p, size_t n);
/* The chaining value after the bytes so far. Returns 0, or -EINVAL when they do not end at a
 * multiple of 64. */
int sha256c_cv(const struct sha256c *c, uint8_t out[static DIGEST_LEN]);
/* The digest of the whole message (the state is spent). */
void sha256c_final(struct sha256c *c, uint8_t out[static DIGEST_LEN]);

/* Parses "sha256:<64 lowercase hex>". Returns 0 or AFSP_E_FORMAT (AFSP_E_UNSUPPORTED for
 * another algorithm). */
int digest_parse(const char *s, uint8_t out[static DIGEST_LEN]);
/* Writes "sha256:<hex>" and a NUL into out; returns out. */
char *digest_fmt(const uint8_t d[static DIGEST_LEN], char out[static DIGEST_STR_LEN + 1]);
/* Writes the 64 hex characters and a NUL. */
char *hex_fmt(const uint8_t *p, size_t n, char *out);

/* ---- growable arrays and buffers ---------------------------------------------------------- */
/* Array p of *cap elements of elem bytes, full: returns it reallocated to twice the elements
 * (first, the first time) with *cap updated, or NULL (p and *cap unchanged). */
void *array_grow(void *p, size_t *cap, size_t elem, size_t first);

struct buf {
    uint8_t *p; /* owned; NULL while empty */
    size_t len, cap;
};
/* Each returns 0 or -ENOMEM; on failure the buffer is unchanged. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_release(struct buf *b);

/* a + b, or UINT64_MAX where that would wrap: for byte counts a registry or a peer names (a
 * manifest's layer sizes add up past 2^64), which must then be too big, not small. */
static inline uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- little-endian encoding --------------------------------------------------------------- */
static inline void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = v, p[1] = v >> 8, p[2] = v >> 16, p[3] = v >> 24;
}
static inline void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v), put_le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t get_le32(const uint8_t *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_le64(const uint8_t *p)
{
    return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}
static inline void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static inline uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* ---- misc --------------------------------------------------------------------------------- */
/* Wall-clock time in nanoseconds since the epoch (for access times shown to users). */
uint64_t time_now_ns(void);
/* Monotonic time in nanoseconds (for durations and rates). */
uint64_t time_mono_ns(void);

/* fsync of directory dir, so that the names made or removed in it survive a power loss. Returns 0
 * or a negative errno with err_msg set. */
int dir_sync(const char *dir);
/* ... of the directory that holds path. */
int dir_sync_parent(const char *path);
/* "2026-11-21T15:16:30Z" into out (at least 32 bytes); "-" for 0. */
char *time_fmt(uint64_t ns, char *out);
/* Formats a byte count as "12.3 MB" (SI units) into out (at least 16 bytes); returns out. */
char *bytes_fmt(uint64_t n, char *out);
/* Parses a byte count: "123", or with a binary suffix "10K", "5M", "2G", "1T" (also "5MiB").
 * Returns 0 or AFSP_E_USAGE. */
int bytes_parse(const char *s, uint64_t *out);

/* A token bucket: *tokens refill at per_s a second (from *t, in ms) up to burst; takes one
 * token and returns true if there is one. Start a bucket full: *tokens = burst, *t = now. */
bool tokens_take(double *tokens, uint64_t *t, uint64_t now_ms, double per_s, double burst);

/* ---- randomness ----------------------------------------------------------------------------
 * The one RNG type: sans-IO cores (p2p/, dht/) draw every random byte through an rng_fn their
 * caller injects. Production passes one over libsodium's randombytes_buf; tests, fuzz targets,
 * benchmarks and the simulator pass rng_fill over a seed, so that a run is a function of it.
 */
/* Fills buf with n random bytes; arg is the caller's (the generator's state). */
typedef void (*rng_fn)(void *arg, uint8_t *buf, size_t n);
/* The next number of the deterministic generator (splitmix64) whose state *state is (any
 * value, the seed; advanced). Never for keys. */
uint64_t rng_next64(uint64_t *state);
/* An rng_fn over rng_next64: state is a uint64_t. Bytes are the successive numbers in
 * little-endian order, the last one cut short. */
void rng_fill(void *state, uint8_t *buf, size_t n);

/* Frees *p; for __attribute__((cleanup(freep))). */
void freep(void *p);
#define _cleanup_free_ __attribute__((cleanup(freep)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
