/*
 * test_tar.c - the streaming tar parser. Archives written by GNU tar (v7, ustar, gnu, pax) and by
 * Python's tarfile are checked field by field against tarfile reading the same bytes, their
 * data_off against the content each file was given, and every archive is fed whole, a byte at a
 * time and in random pieces with identical results. Hand-made headers cover the rest: checksums,
 * numbers, types, normalisation, pax precedence, truncation, malformed input and the bounds.
 */
#include "test.h"

#include "../../store/layer/layer.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#define PY "/usr/bin/python3"

/* tarfile as a second reader: one line per member in the format of fmt_entry(). */
static const char py_oracle[] =
    "import sys, tarfile, base64, urllib.parse\n"
    "def esc(b):\n"
    "    return ''.join(chr(c) if 0x20 <= c < 0x7f and c not in (0x5c, 0x7c) else '\\\\x%02x' % c "
    "for c in b)\n"
    "def norm(b):\n"
    "    while True:\n"
    "        if b.startswith(b'/'): b = b[1:]\n"
    "        elif b.startswith(b'./'): b = b[2:]\n"
    "        elif b == b'.': b = b''\n"
    "        else: break\n"
    "    return b.rstrip(b'/')\n"
    "def enc(s):\n"
    "    return s.encode('utf-8', 'surrogateescape')\n"
    "def ptime(s):\n"
    "    neg = s.startswith('-')\n"
    "    sec, _, frac = s.lstrip('-').partition('.')\n"
    "    sec, ns = int(sec), int((frac + '000000000')[:9])\n"
    "    if neg:\n"
    "        return (-sec - 1, 10**9 - ns) if ns else (-sec, 0)\n"
    "    return sec, ns\n"
    "for m in tarfile.open(sys.argv[1], encoding='utf-8', errors='surrogateescape'):\n"
    "    ty = m.type\n"
    "    if ty in (b'0', b'\\0', b'7') or ty not in (b'1', b'2', b'3', b'4', b'5', b'6'):\n"
    "        ty = b'0'\n"
    "    xs = {}\n"
    "    for k, v in m.pax_headers.items():\n"
    "        if k.startswith('SCHILY.xattr.'):\n"
    "            xs[enc(k[13:])] = enc(v)\n"
    "    for k, v in m.pax_headers.items():\n"
    "        if k.startswith('LIBARCHIVE.xattr.'):\n"
    "            xs[urllib.parse.unquote_to_bytes(k[17:])] = base64.b64decode(v + '=' * (-len(v) % "
    "4))\n"
    "    mt = m.pax_headers.get('mtime')\n"
    "    sec, ns = ptime(mt) if mt is not None else (int(m.mtime), 0)\n"
    "    link = norm(enc(m.linkname)) if ty == b'1' else enc(m.linkname) if ty == b'2' else b''\n"
    "    dev = (m.devmajor, m.devminor) if ty in (b'3', b'4') else (0, 0)\n"
    "    print('%s|%s|%s|%04o|%d|%d|%d.%09d|%d|%d|%d,%d|%s' % (\n"
    "        esc(norm(enc(m.name))), esc(link), ty.decode(), m.mode & 0o7777, m.uid, m.gid, sec, "
    "ns,\n"
    "        m.size if ty == b'0' else 0, m.offset_data, dev[0], dev[1],\n"
    "        ','.join(esc(k) + '=' + v.hex() for k, v in sorted(xs.items()))))\n";

/* A tree of files whose content is content_pattern(path); level 0 suits v7, 1 ustar, 2 gnu/pax. */
static const char py_mktree[] =
    "import os, sys\n"
    "d, level = sys.argv[1], int(sys.argv[2])\n"
    "def pat(p, n):\n"
    "    s = (p + '\\n').encode()\n"
    "    return (s * (n // len(s) + 1))[:n]\n"
    "def f(p, n, mode=0o644):\n"
    "    full = os.path.join(d, p)\n"
    "    os.makedirs(os.path.dirname(full), exist_ok=True)\n"
    "    with open(full, 'wb') as o:\n"
    "        o.write(pat(p, n))\n"
    "    os.chmod(full, mode)\n"
    "os.makedirs(d + '/empty')\n"
    "for n in (0, 1, 511, 512, 513, 1000, 70000, 1 << 20):\n"
    "    f('f%d' % n, n)\n"
    "f('sub/x', 10, 0o751)\n"
    "f('exec', 3, 0o4755)\n"
    "os.symlink('f1', d + '/sl')\n"
    "os.link(d + '/f1', d + '/hl')\n"
    "os.utime(d + '/f1', ns=(1234567890123456789, 1234567890123456789))\n"
    "if level >= 1:\n"
    "    os.mkfifo(d + '/fifo')\n"
    "    f('m' * 90 + '/' + 'n' * 90 + '/file', 600)\n"
    "if level >= 2:\n"
    "    p = '/'.join(['L' * 200] * 3) + '/deep'\n"
    "    f(p, 1234)\n"
    "    os.symlink('T' * 300, d + '/longsl')\n"
    "    os.link(d + '/' + p, d + '/hl_long')\n";

/* Python-written archives: argv[2] "pax" (with a global header) or "gnu". */
static const char py_mkpy[] =
    "import sys, tarfile, io, base64\n"
    "out, fmt = sys.argv[1], sys.argv[2]\n"
    "pax = fmt == 'pax'\n"
    "def pat(p, n):\n"
    "    s = (p + '\\n').encode('utf-8', 'surrogateescape')\n"
    "    return (s * (n // len(s) + 1))[:n]\n"
    "def norm(p):\n"
    "    while True:\n"
    "        if p.startswith('/'): p = p[1:]\n"
    "        elif p.startswith('./'): p = p[2:]\n"
    "        elif p == '.': p = ''\n"
    "        else: break\n"
    "    return p.rstrip('/')\n"
    "g = {'SCHILY.xattr.user.global': 'G', 'uid': '77', 'comment': 'x' * 600} if pax else {}\n"
    "t = tarfile.open(out, 'w', format=tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT,\n"
    "                 pax_headers=g, encoding='utf-8', errors='surrogateescape')\n"
    "def add(name, ty=tarfile.REGTYPE, size=0, ph=None, **kw):\n"
    "    ti = tarfile.TarInfo(name)\n"
    "    ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = ty, 0o644, 1600000000, 5, 6\n"
    "    for k, v in kw.items():\n"
    "        setattr(ti, k, v)\n"
    "    if ph and pax:\n"
    "        ti.pax_headers = ph\n"
    "    data = None\n"
    "    if ty in (tarfile.REGTYPE, tarfile.CONTTYPE):\n"
    "        ti.size = size\n"
    "        data = io.BytesIO(pat(norm(name), size))\n"
    "    t.addfile(ti, data)\n"
    "long1 = 'a' * 150 + '/x'\n"
    "long2 = '/'.join(['b' * 100] * 5)\n"
    "add('./', tarfile.DIRTYPE, mode=0o755)\n"
    "add('./etc/', tarfile.DIRTYPE, mode=0o700)\n"
    "for n in (0, 1, 511, 512, 513, 4096, 70000):\n"
    "    add('etc/f%d' % n, size=n)\n"
    "add('etc/cont', tarfile.CONTTYPE, size=100)\n"
    "add(long1, size=10)\n"
    "add(long2, size=1000, mode=0o6755)\n"
    "add('sl', tarfile.SYMTYPE, linkname='t' * 300)\n"
    "add('sl2', tarfile.SYMTYPE, linkname='./rel/../x/')\n"
    "add('hl', tarfile.LNKTYPE, linkname='./etc/f1')\n"
    "add('hl2', tarfile.LNKTYPE, linkname='/' + long2)\n"
    "add('dev/null', tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)\n"
    "add('dev/sda', tarfile.BLKTYPE, devmajor=2097151, devminor=7, mode=0o660)\n"
    "add('run/fifo', tarfile.FIFOTYPE)\n"
    "add('bigid', size=3, uid=4194304, gid=4194305)\n"
    "if pax:\n"
    "    cap = bytes([1, 0, 0, 2, 0, 0x30, 0, 0] + [0] * 12)\n"
    "    add('ns', size=5, ph={'mtime': '1700000000.123456789'})\n"
    "    add('negns', size=5, ph={'mtime': '-1.25'})\n"
    "    add('caps', size=7, ph={\n"
    "        'SCHILY.xattr.security.capability': cap.decode('utf-8', 'surrogateescape'),\n"
    "        'SCHILY.xattr.user.nl': 'a\\nb=c\\0d\\n',\n"
    "        'SCHILY.xattr.user.global': 'override',\n"
    "        'SCHILY.xattr.user.empty': '',\n"
    "        'LIBARCHIVE.xattr.user.a%3Db': "
    "base64.b64encode(b'\\0\\xff\\n').decode().rstrip('='),\n"
    "        'LIBARCHIVE.xattr.user.both': base64.b64encode(b'same').decode(),\n"
    "        'SCHILY.xattr.user.both': 'same'})\n"
    "    add('many', size=1, ph={'SCHILY.xattr.user.%02d' % i: 'v%d' % i for i in range(63)})\n"
    "    add('uname', size=2, uname='u' * 40, gname='g' * 40)\n"
    "    add('bin\\udcff\\udcfe', size=4)\n"
    "    add('bigsize', size=600, ph={'size': '600'})\n"
    "else:\n"
    "    add('negtime', size=5, mtime=-1000000000)\n"
    "    add('bigtime', size=5, mtime=8 ** 11 + 5)\n"
    "add('last', size=0)\n"
    "t.close()\n";

/* ---- helpers -------------------------------------------------------------------------------- */

static const char *tmp(const char *name)
{
    static char paths[8][4096];
    static unsigned next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", test_tmpdir(), name);
    return p;
}

static int sh_rc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh_rc(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return st == -1 ? -1 : WEXITSTATUS(st);
}

#define SH(...)                                                                                    \
    do {                                                                                           \
        int rc_ = sh_rc(__VA_ARGS__);                                                              \
        if (rc_)                                                                                   \
            test_fail(__FILE__, __LINE__, "command failed (%d)", rc_);                             \
    } while (0)

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(p, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b = {0};
    uint8_t tmpb[65536];
    size_t k;
    CHECK(f);
    while ((k = fread(tmpb, 1, sizeof tmpb, f)) > 0)
        CHECK(buf_append(&b, tmpb, k) == 0);
    fclose(f);
    CHECK(buf_append(&b, "", 1) == 0); /* a NUL after the bytes, for text */
    *len = b.len - 1;
    return b.p;
}

static const char *script(const char *name, const char *text)
{
    const char *p = tmp(name);
    spit(p, text, strlen(text));
    return p;
}

/* Byte i of the content the generators give the file at (normalised) path. */
static uint8_t content_at(const char *path, uint64_t i)
{
    size_t n = strlen(path) + 1;
    return i % n == n - 1 ? '\n' : (uint8_t)path[i % n];
}

/* ---- collecting what the parser reports ------------------------------------------------------ */

struct rec {
    char *path, *link;
    int type;
    uint32_t mode, uid, gid, devmajor, devminor;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint64_t size, data_off;
    size_t nxattrs;
    char *line;
};

struct result {
    struct rec *v;
    size_t n;
    struct buf lines;
    size_t stop_at; /* the callback returns stop_rc for entry number stop_at (1-based) */
    int stop_rc;
};

static void esc(struct buf *b, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' && s[i] != '|')
            CHECK(buf_append(b, &s[i], 1) == 0);
        else
            CHECK(buf_printf(b, "\\x%02x", s[i]) == 0);
    }
}

static int cmp_xattr(const void *a, const void *b)
{
    return strcmp(((const struct tar_xattr *)a)->name, ((const struct tar_xattr *)b)->name);
}

/* The line the oracle prints for the same member. */
static void fmt_entry(struct buf *b, const struct tar_entry *e)
{
    struct tar_xattr *x = calloc(e->nxattrs + 1, sizeof *x);
    CHECK(x);
    if (e->nxattrs)
        memcpy(x, e->xattrs, e->nxattrs * sizeof *x);
    qsort(x, e->nxattrs, sizeof *x, cmp_xattr);
    esc(b, (const uint8_t *)e->path, strlen(e->path));
    CHECK(buf_printf(b, "|") == 0);
    esc(b, (const uint8_t *)e->link, strlen(e->link));
    CHECK(buf_printf(b, "|%c|%04o|%u|%u|%lld.%09u|%llu|%llu|%u,%u|", (char)e->type, e->mode, e->uid,
                     e->gid, (long long)e->mtime_sec, e->mtime_nsec, (unsigned long long)e->size,
                     (unsigned long long)e->data_off, e->devmajor, e->devminor) == 0);
    for (size_t i = 0; i < e->nxattrs; i++) {
        if (i)
            CHECK(buf_printf(b, ",") == 0);
        esc(b, (const uint8_t *)x[i].name, strlen(x[i].name));
        CHECK(buf_printf(b, "=") == 0);
        for (size_t j = 0; j < x[i].len; j++)
            CHECK(buf_printf(b, "%02x", x[i].value[j]) == 0);
    }
    CHECK(buf_printf(b, "\n") == 0);
    free(x);
}

static int collect(void *arg, const struct tar_entry *e)
{
    struct result *r = arg;
    struct buf line = {0};

    CHECK(e->path && e->link && (e->nxattrs == 0 || e->xattrs));
    fmt_entry(&line, e);
    CHECK(buf_append(&r->lines, line.p, line.len) == 0);
    CHECK(buf_append(&line, "", 1) == 0);
    r->v = realloc(r->v, (r->n + 1) * sizeof *r->v);
    CHECK(r->v);
    r->v[r->n++] = (struct rec){
        .path = strdup(e->path),
        .link = strdup(e->link),
        .type = e->type,
        .mode = e->mode,
        .uid = e->uid,
        .gid = e->gid,
        .devmajor = e->devmajor,
        .devminor = e->devminor,
        .mtime_sec = e->mtime_sec,
        .mtime_nsec = e->mtime_nsec,
        .size = e->size,
        .data_off = e->data_off,
        .nxattrs = e->nxattrs,
        .line = (char *)line.p,
    };
    if (r->stop_at && r->n == r->stop_at)
        return r->stop_rc;
    return 0;
}

static void result_free(struct result *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].path);
        free(r->v[i].link);
        free(r->v[i].line);
    }
    free(r->v);
    buf_release(&r->lines);
    memset(r, 0, sizeof *r);
}

static const char *lines_of(struct result *r)
{
    CHECK(buf_append(&r->lines, "", 1) == 0);
    r->lines.len--;
    return (const char *)r->lines.p;
}

enum { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_SMALL, SPLIT_LARGE, SPLIT_511, NSPLIT };

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* Feeds d in pieces chosen by mode, then finishes. After an error, checks that it sticks. */
static int parse_split(const uint8_t *d, size_t n, int mode, struct result *r)
{
    struct tar_parser *p;
    uint64_t seed = 0x9e3779b97f4a7c15ull + (uint64_t)mode;
    size_t off = 0;
    int rc = 0;

    CHECK(tar_parser_new(&p, collect, r) == 0);
    while (off < n && rc == 0) {
        size_t k = n;
        switch (mode) {
        case SPLIT_BYTES:
            k = 1;
            break;
        case SPLIT_SMALL:
            k = (size_t)(rnd(&seed) % 700);
            break;
        case SPLIT_LARGE:
            k = (size_t)(rnd(&seed) % 100000);
            break;
        case SPLIT_511:
            k = 511;
            break;
        }
        k = MIN(k, n - off);
        rc = tar_parser_push(p, d + off, k);
        off += k;
    }
    if (rc == 0) {
        rc = tar_parser_finish(p);
    } else {
        size_t seen = r->n;
        CHECK_INT(tar_parser_push(p, d, n), ==, rc);
        CHECK_INT(tar_parser_push(p, (const uint8_t *)"", 0), ==, rc);
        CHECK_INT(tar_parser_finish(p), ==, rc);
        CHECK_INT(r->n, ==, seen);
    }
    tar_parser_free(p);
    return rc;
}

/* Parses d whole into r, then in every other split, which must report the same. */
static int parse_all(const uint8_t *d, size_t n, struct result *r)
{
    int rc = parse_split(d, n, SPLIT_WHOLE, r);
    for (int mode = 1; mode < NSPLIT; mode++) {
        struct result r2 = {.stop_at = r->stop_at, .stop_rc = r->stop_rc};
        int rc2 = parse_split(d, n, mode, &r2);
        if (rc2 != rc)
            test_fail(__FILE__, __LINE__, "split %d: rc %d, whole: %d", mode, rc2, rc);
        CHECK_STR(lines_of(&r2), lines_of(r));
        result_free(&r2);
    }
    return rc;
}

static int parse_buf(const struct buf *b, struct result *r)
{
    return parse_all(b->p, b->len, r);
}

/* Parses an archive file that must be valid; checks it against the oracle and the content. */
static uint8_t *parse_file(const char *path, struct result *r, size_t *len)
{
    uint8_t *d = slurp(path, len);
    int rc = parse_all(d, *len, r);
    if (rc)
        test_fail(__FILE__, __LINE__, "%s: %s", path, err_msg(rc));

    const char *oracle = script("oracle.py", py_oracle);
    const char *out = tmp("oracle.out");
    SH(PY " %s %s > %s", oracle, path, out);
    size_t olen;
    char *wbuf = (char *)slurp(out, &olen);
    const char *got = lines_of(r), *want = wbuf;
    for (size_t line = 1;; line++) {
        const char *ge = strchr(got, '\n'), *we = strchr(want, '\n');
        if (!ge || !we) {
            if (ge || we || *got || *want)
                test_fail(__FILE__, __LINE__, "%s: line %zu: parser \"%.300s\", tarfile \"%.300s\"",
                          path, line, got, want);
            break;
        }
        if (ge - got != we - want || memcmp(got, want, (size_t)(ge - got)))
            test_fail(__FILE__, __LINE__, "%s: line %zu:\n  parser  %.*s\n  tarfile %.*s", path,
                      line, (int)(ge - got), got, (int)(we - want), want);
        got = ge + 1, want = we + 1;
    }
    free(wbuf);
    CHECK(r->n > 0);

    /* the content of every regular file is where data_off says */
    for (size_t i = 0; i < r->n; i++) {
        const struct rec *e = &r->v[i];
        CHECK_INT(e->data_off % 512, ==, 0);
        if (e->type != TAR_REG)
            continue;
        CHECK(e->data_off + e->size <= *len);
        for (uint64_t j = 0; j < e->size; j++)
            if (d[e->data_off + j] != content_at(e->path, j))
                test_fail(__FILE__, __LINE__, "%s: %s: byte %llu of the data differs", path,
                          e->path, (unsigned long long)j);
    }
    return d;
}

static const struct rec *find(const struct result *r, const char *path)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->v[i].path, path))
            return &r->v[i];
    test_fail(__FILE__, __LINE__, "no entry \"%.200s\"", path);
}

static const char *find_xattr(const struct rec *e, const char *name)
{
    /* from the line: "name=hex" after the 10th '|', then ",name=hex"... */
    const char *s = e->line;
    for (int i = 0; i < 10; i++)
        s = strchr(s, '|') + 1;
    size_t nl = strlen(name);
    while (*s && *s != '\n') {
        if (!strncmp(s, name, nl) && s[nl] == '=')
            return s + nl + 1;
        s = strpbrk(s, ",\n");
        if (*s == ',')
            s++;
    }
    return NULL;
}

#define CHECK_XATTR(e, name, hex)                                                                  \
    do {                                                                                           \
        const char *v_ = find_xattr(e, name);                                                      \
        size_t hl_ = strlen(hex);                                                                  \
        if (!v_ || strncmp(v_, hex, hl_) || (v_[hl_] != ',' && v_[hl_] != '\n'))                   \
            test_fail(__FILE__, __LINE__, "xattr %s of %s: want %s in %s", name, (e)->path, hex,   \
                      (e)->line);                                                                  \
    } while (0)

/* ---- writing archives by hand --------------------------------------------------------------- */

static void octal(uint8_t *f, size_t len, uint64_t v)
{
    char t[32];
    snprintf(t, sizeof t, "%0*llo", (int)len - 1, (unsigned long long)v);
    memcpy(f, t, len - 1);
    f[len - 1] = '\0';
}

/* A ustar header with mode 0644, uid 1000, gid 1001, mtime 1600000000. */
static void hdr_init(uint8_t h[512], const char *name, char type, uint64_t size)
{
    memset(h, 0, 512);
    memcpy(h, name, MIN(strlen(name), 100));
    octal(h + 100, 8, 0644);
    octal(h + 108, 8, 1000);
    octal(h + 116, 8, 1001);
    octal(h + 124, 12, size);
    octal(h + 136, 12, 1600000000);
    h[156] = (uint8_t)type;
    memcpy(h + 257,
           "ustar\0"
           "00",
           8);
}

static void hdr_sum(uint8_t h[512])
{
    unsigned s = 0;
    memset(h + 148, ' ', 8);
    for (int i = 0; i < 512; i++)
        s += h[i];
    char t[16];
    snprintf(t, sizeof t, "%06o", s);
    memcpy(h + 148, t, 7);
}

static void put_block(struct buf *b, const uint8_t h[512])
{
    CHECK(buf_append(b, h, 512) == 0);
}

static void put_data(struct buf *b, const void *p, size_t n)
{
    static const uint8_t zero[512];
    CHECK(buf_append(b, p, n) == 0);
    CHECK(buf_append(b, zero, (512 - n % 512) % 512) == 0);
}

/* A member with content_at(name) as its n data bytes (for types that have data). */
static void put_entry(struct buf *b, const char *name, char type, size_t n)
{
    uint8_t h[512];
    hdr_init(h, name, type, n);
    hdr_sum(h);
    put_block(b, h);
    uint8_t *d = malloc(n + 1);
    CHECK(d);
    for (size_t i = 0; i < n; i++)
        d[i] = content_at(name, i);
    put_data(b, d, n);
    free(d);
}

static void put_ext(struct buf *b, char type, const void *p, size_t n)
{
    uint8_t h[512];
    hdr_init(h, type == 'L' || type == 'K' ? "././@LongLink" : "PaxHeader/x", type, n);
    hdr_sum(h);
    put_block(b, h);
    put_data(b, p, n);
}

static void put_end(struct buf *b)
{
    static const uint8_t zero[1024];
    CHECK(buf_append(b, zero, sizeof zero) == 0);
}

/* Appends the pax record "LEN key=value\n". */
static void rec_add(struct buf *r, const char *key, const void *val, size_t vlen)
{
    size_t body = 1 + strlen(key) + 1 + vlen + 1, len = body + 1;
    while (len != body + (size_t)snprintf(NULL, 0, "%zu", len))
        len = body + (size_t)snprintf(NULL, 0, "%zu", len);
    CHECK(buf_printf(r, "%zu %s=", len, key) == 0);
    CHECK(buf_append(r, val, vlen) == 0);
    CHECK(buf_append(r, "\n", 1) == 0);
}

static void rec_str(struct buf *r, const char *key, const char *val)
{
    rec_add(r, key, val, strlen(val));
}

/* An archive of one pax header with the given records, then file "f" of 3 bytes. */
static int parse_pax(const void *recs, size_t n, struct result *r)
{
    struct buf b = {0};
    put_ext(&b, 'x', recs, n);
    put_entry(&b, "f", '0', 3);
    put_end(&b);
    int rc = parse_buf(&b, r);
    buf_release(&b);
    return rc;
}

/* ---- archives written by GNU tar ------------------------------------------------------------ */

TEST(tar_gnu_formats)
{
    static const struct {
        const char *fmt;
        int level;
    } fm[] = {{"v7", 0}, {"ustar", 1}, {"gnu", 2}, {"pax", 2}};
    const char *mk = script("mktree.py", py_mktree);
    char longp[700]; /* the level-2 path of mktree.py */
    memset(longp, 'L', 602);
    longp[200] = longp[401] = '/';
    strcpy(longp + 602, "/deep");

    for (int lv = 0; lv <= 2; lv++)
        SH(PY " %s %s/src%d %d", mk, test_tmpdir(), lv, lv);
    for (size_t i = 0; i < ARRAY_SIZE(fm); i++) {
        struct result r = {0};
        size_t len;
        const char *ar = tmp("a.tar");
        SH("tar --format=%s --sort=name -cf %s -C %s/src%d . %s", fm[i].fmt, ar, test_tmpdir(),
           fm[i].level, fm[i].level ? "-C / dev/null" : "");
        uint8_t *d = parse_file(ar, &r, &len);
        bool pax = !strcmp(fm[i].fmt, "pax");

        const struct rec *e = find(&r, "");
        CHECK_INT(e->type, ==, TAR_DIR);
        CHECK_INT(e->size, ==, 0);
        e = find(&r, "f1");
        CHECK_INT(e->type, ==, TAR_REG);
        CHECK_INT(e->size, ==, 1);
        CHECK_INT(d[e->data_off], ==, 'f');
        CHECK_INT(e->mtime_sec, ==, 1234567890);
        CHECK_INT(e->mtime_nsec, ==, pax ? 123456789 : 0);
        CHECK_INT(e->uid, ==, getuid());
        CHECK_INT(find(&r, "f1048576")->size, ==, 1 << 20);
        CHECK_INT(find(&r, "f513")->size, ==, 513);
        CHECK_INT(find(&r, "f0")->size, ==, 0);
        CHECK_INT(find(&r, "sub/x")->mode, ==, 0751);
        CHECK_INT(find(&r, "exec")->mode, ==, 04755);
        CHECK_INT(find(&r, "empty")->type, ==, TAR_DIR);
        e = find(&r, "hl");
        CHECK_INT(e->type, ==, TAR_HARDLINK);
        CHECK_STR(e->link, "f1");
        CHECK_INT(e->size, ==, 0);
        e = find(&r, "sl");
        CHECK_INT(e->type, ==, TAR_SYMLINK);
        CHECK_STR(e->link, "f1");
        if (fm[i].level >= 1) {
            CHECK_INT(find(&r, "fifo")->type, ==, TAR_FIFO);
            e = find(&r, "dev/null");
            CHECK_INT(e->type, ==, TAR_CHR);
            CHECK_INT(e->devmajor, ==, 1);
            CHECK_INT(e->devminor, ==, 3);
            CHECK_INT(find(&r,
                           "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm"
                           "mmmmmmmmmmmmmmmmmmmmm/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
                           "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn/file")
                          ->size,
                      ==, 600);
        }
        if (fm[i].level >= 2) {
            CHECK_INT(find(&r, longp)->size, ==, 1234);
            e = find(&r, "longsl");
            CHECK_INT(strlen(e->link), ==, 300);
            e = find(&r, "hl_long");
            CHECK_INT(e->type, ==, TAR_HARDLINK);
            CHECK_STR(e->link, longp);
        }
        free(d);
        result_free(&r);
    }
}

TEST(tar_gnu_big_ids)
{
    SH("mkdir %s/s && printf 'f\\nf\\nf' > %s/s/f && ln -s f %s/s/l", test_tmpdir(), test_tmpdir(),
       test_tmpdir());
    static const char *fmts[] = {"gnu", "pax"};
    for (size_t i = 0; i < ARRAY_SIZE(fmts); i++) {
        struct result r = {0};
        size_t len;
        const char *ar = tmp("a.tar");
        SH("tar --format=%s --owner=u:4194304 --group=g:4294967294 --mtime=@-1000000000 "
           "-cf %s -C %s/s .",
           fmts[i], ar, test_tmpdir());
        free(parse_file(ar, &r, &len));
        CHECK_INT(r.n, ==, 3);
        for (size_t j = 0; j < r.n; j++) {
            CHECK_INT(r.v[j].uid, ==, 4194304);
            CHECK_INT(r.v[j].gid, ==, 4294967294u);
            CHECK_INT(r.v[j].mtime_sec, ==, -1000000000);
        }
        result_free(&r);
    }
}

/* setfattr (attr, installed by scripts/deps.sh) is needed: without it, or on a file system that
 * refuses user xattrs, the test fails; security.capability needs root, as the whole suite does. */
TEST(tar_gnu_xattrs)
{
    const char *f = tmp("s/f");
    SH("mkdir %s/s && printf 'f\\nf' > %s", test_tmpdir(), f);
    int rc = sh_rc("setfattr -n user.foo -v 'bar baz' %s", f);
    if (rc == 127)
        test_fail(__FILE__, __LINE__, "setfattr not found: install attr (scripts/deps.sh)");
    if (rc)
        test_fail(__FILE__, __LINE__, "setfattr failed (%d): %s refuses user xattrs", rc,
                  test_tmpdir());
    /* a binary value with a NUL and a newline */
    SH("setfattr -n user.bin -v 0x0100000a0200 %s", f);
    if (sh_rc("setfattr -n security.capability -v 0sAQAAAgAwAAAAAAAAAAAAAAAAAAA= %s", f))
        test_fail(__FILE__, __LINE__, "cannot set security.capability (not root?)");
    struct result r = {0};
    size_t len;
    const char *ar = tmp("a.tar");
    SH("tar --format=pax --xattrs --xattrs-include='*' -cf %s -C %s/s .", ar, test_tmpdir());
    free(parse_file(ar, &r, &len));
    const struct rec *e = find(&r, "f");
    CHECK_INT(e->nxattrs, ==, 3);
    CHECK_XATTR(e, "user.foo", "6261722062617a");
    CHECK_XATTR(e, "user.bin", "0100000a0200");
    CHECK_XATTR(e, "security.capability", "0100000200300000000000000000000000000000");
    result_free(&r);
}

TEST(tar_gnu_sparse_unsupported)
{
    static const char *opts[] = {"--format=gnu", "--format=pax --sparse-version=0.1",
                                 "--format=pax --sparse-version=1.0"};
    const char *f = tmp("sp");
    SH("truncate -s 4M %s && printf data >> %s", f, f);
    for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
        struct result r = {0};
        size_t len;
        const char *ar = tmp("a.tar");
        SH("tar %s --sparse -cf %s -C %s sp", opts[i], ar, test_tmpdir());
        uint8_t *d = slurp(ar, &len);
        CHECK(len < (1u << 20)); /* it was stored sparse */
        CHECK_INT(parse_all(d, len, &r), ==, AFSP_E_UNSUPPORTED);
        CHECK_INT(r.n, ==, 0);
        free(d);
        result_free(&r);
    }
}

/* ---- archives written by Python's tarfile ---------------------------------------------------- */

TEST(tar_python_pax)
{
    struct result r = {0};
    size_t len;
    const char *ar = tmp("p.tar");
    SH(PY " %s %s pax", script("mkpy.py", py_mkpy), ar);
    uint8_t *d = parse_file(ar, &r, &len);

    CHECK_INT(r.n, ==, 28);
    const struct rec *e = find(&r, "");
    CHECK_INT(e->type, ==, TAR_DIR);
    CHECK_INT(e->mode, ==, 0755);
    CHECK_INT(e->uid, ==, 77); /* from the global header */
    CHECK_INT(e->gid, ==, 6);
    CHECK_XATTR(e, "user.global", "47");
    CHECK_INT(find(&r, "etc")->mode, ==, 0700);
    e = find(&r, "etc/f513");
    CHECK_INT(e->size, ==, 513);
    CHECK_INT(find(&r, "etc/cont")->type, ==, TAR_REG);
    char long2[505];
    for (int i = 0; i < 504; i++)
        long2[i] = i % 101 == 100 ? '/' : 'b';
    long2[504] = '\0';
    e = find(&r, long2);
    CHECK_INT(e->size, ==, 1000);
    CHECK_INT(e->mode, ==, 06755);
    CHECK_INT(strlen(find(&r, "sl")->link), ==, 300);
    CHECK_STR(find(&r, "sl2")->link, "./rel/../x/");
    e = find(&r, "hl");
    CHECK_INT(e->type, ==, TAR_HARDLINK);
    CHECK_STR(e->link, "etc/f1");
    CHECK_STR(find(&r, "hl2")->link, long2);
    e = find(&r, "dev/sda");
    CHECK_INT(e->type, ==, TAR_BLK);
    CHECK_INT(e->devmajor, ==, 2097151);
    CHECK_INT(e->devminor, ==, 7);
    CHECK_INT(find(&r, "run/fifo")->type, ==, TAR_FIFO);
    e = find(&r, "bigid");
    CHECK_INT(e->uid, ==, 4194304);
    CHECK_INT(e->gid, ==, 4194305);
    e = find(&r, "ns");
    CHECK_INT(e->mtime_sec, ==, 1700000000);
    CHECK_INT(e->mtime_nsec, ==, 123456789);
    e = find(&r, "negns");
    CHECK_INT(e->mtime_sec, ==, -2);
    CHECK_INT(e->mtime_nsec, ==, 750000000);
    e = find(&r, "caps");
    CHECK_INT(e->nxattrs, ==, 6);
    CHECK_XATTR(e, "security.capability", "0100000200300000000000000000000000000000");
    CHECK_XATTR(e, "user.nl", "610a623d6300640a");
    CHECK_XATTR(e, "user.global", "6f76657272696465");
    CHECK_XATTR(e, "user.empty", "");
    CHECK_XATTR(e, "user.a=b", "00ff0a");
    CHECK_XATTR(e, "user.both", "73616d65");
    CHECK_INT(find(&r, "many")->nxattrs, ==, TAR_XATTR_MAX);
    CHECK_INT(find(&r, "bin\xff\xfe")->size, ==, 4);
    e = find(&r, "last");
    CHECK_INT(e->size, ==, 0);
    CHECK_INT(e->data_off + 1024, <=, len);
    free(d);
    result_free(&r);
}

TEST(tar_python_gnu)
{
    struct result r = {0};
    size_t len;
    const char *ar = tmp("g.tar");
    SH(PY " %s %s gnu", script("mkpy.py", py_mkpy), ar);
    uint8_t *d = parse_file(ar, &r, &len);

    CHECK_INT(r.n, ==, 23);
    const struct rec *e = find(&r, "bigid");
    CHECK_INT(e->uid, ==, 4194304);
    CHECK_INT(e->gid, ==, 4194305);
    CHECK_INT(find(&r, "negtime")->mtime_sec, ==, -1000000000);
    CHECK_INT(find(&r, "bigtime")->mtime_sec, ==, 8589934597ll);
    CHECK_INT(strlen(find(&r, "sl")->link), ==, 300);
    CHECK_INT(strlen(find(&r, "hl2")->link), ==, 504);
    CHECK_INT(find(&r, "etc/f0")->uid, ==, 5);
    CHECK_INT(find(&r, "dev/null")->devminor, ==, 3);
    free(d);
    result_free(&r);
}

/* ---- hand-made archives --------------------------------------------------------------------- */

TEST(tar_checksum)
{
    struct result r = {0};
    struct buf b = {0};
    uint8_t h[512];

    /* high bytes: the signed and the unsigned sums differ; both are accepted */
    for (int sgn = 0; sgn < 2; sgn++) {
        hdr_init(h, "caf\xc3\xa9\xff", '0', 0);
        hdr_sum(h);
        if (sgn) {
            int s = 0;
            memset(h + 148, ' ', 8);
            for (int i = 0; i < 512; i++)
                s += (int8_t)h[i];
            octal(h + 148, 7, (uint64_t)s);
        }
        put_block(&b, h);
    }
    put_end(&b);
    CHECK_INT(parse_buf(&b, &r), ==, 0);
    CHECK_INT(r.n, ==, 2);
    CHECK_STR(r.v[1].path, "caf\xc3\xa9\xff");
    result_free(&r);

    /* one bit flipped in the second header */
    b.p[512 + 10] ^= 1;
    CHECK_INT(parse_buf(&b, &r), ==, AFSP_E_FORMAT);
    CHECK_INT(r.n, ==, 1);
    CHECK(strstr(err_msg(AFSP_E_FORMAT), "checksum"));
    result_free(&r);

    /* garbage in the checksum field */
    b.len = 0;
    hdr_init(h, "f", '0', 0);
    memcpy(h + 148, "12x4567", 8);
    put_block(&b, h);
    put_end(&b);
    CHECK_INT(parse_buf(&b, &r), ==, AFSP_E_FORMAT);
    result_free(&r);

    /* random bytes */
    b.len = 0;
    for (int i = 0; i < 512; i++)
        h[i] = (uint8_t)(i * 7 + 3);
    put_block(&b, h);
    CHECK_INT(parse_buf(&b, &r), ==, AFSP_E_FORMAT);
    result_free(&r);
    buf_release(&b);
}

TEST(tar_truncated)
{
    struct buf b = {0}, recs = {0};
    rec_str(&recs, "mtime", "1.5");
    put_entry(&b, "a", '0', 1000);      /* 0: header, 512: data, 1536: next */
    put_ext(&b, 'x', recs.p, recs.len); /* 1536: header, 2048: payload */
    put_entry(&b, "b", '0', 700);       /* 2560: header, 3072: data */
    CHECK_INT(b.len, ==, 4096);
    put_end(&b);
    CHECK(buf_append(&b, "trailing garbage is ignored", 27) == 0);
    static const struct {
        size_t cut;
        int rc;
        size_t n;
    } cases[] = {
        {0, 0, 0},
        {100, AFSP_E_TRUNCATED, 0},
        {511, AFSP_E_TRUNCATED, 0},
        {512, AFSP_E_TRUNCATED, 1},
        {1512, AFSP_E_TRUNCATED, 1}, /* the data, not its padding */
        {1536, 0, 1},
        {1800, AFSP_E_TRUNCATED, 1},
        {2048, AFSP_E_TRUNCATED, 1},
        {2100, AFSP_E_TRUNCATED, 1},
        {2560, AFSP_E_TRUNCATED, 1}, /* a pax header without its member */
        {3000, AFSP_E_TRUNCATED, 1},
        {3072, AFSP_E_TRUNCATED, 2},
        {4095, AFSP_E_TRUNCATED, 2},
        {4096, 0, 2}, /* no end-of-archive blocks */
        {4096 + 512, 0, 2},
        {4096 + 700, AFSP_E_TRUNCATED, 2},
        {5120, 0, 2},
        {5120 + 27, 0, 2},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct result r = {0};
        int rc = parse_all(b.p, cases[i].cut, &r);
        if (rc != cases[i].rc || r.n != cases[i].n)
            test_fail(__FILE__, __LINE__, "cut at %zu: rc %d (%s), %zu entries", cases[i].cut, rc,
                      err_str(rc), r.n);
        if (r.n == 2) {
            CHECK_INT(r.v[1].data_off, ==, 3072);
            CHECK_INT(r.v[1].mtime_nsec, ==, 500000000);
        }
        result_free(&r);
    }
    buf_release(&recs);
    buf_release(&b);
}

TEST(tar_end_marker)
{
    struct buf b = {0};
    struct result r = {0};
    uint8_t zero[512] = {0};

    put_entry(&b, "a", '0', 10);
    put_end(&b);
    put_entry(&b, "after", '0', 10); /* after the end: not a member */
    CHECK_INT(parse_buf(&b, &r), ==, 0);
    CHECK_INT(r.n, ==, 1);
    result_free(&r);

    /* a lone zero block followed by a header */
    b.len = 0;
    put_entry(&b, "a", '0', 10);
    put_block(&b, zero);
    put_entry(&b, "b", '0', 10);
    put_end(&b);
    CHECK_INT(parse_buf(&b, &r), ==, AFSP_E_FORMAT);
    CHECK_INT(r.n, ==, 1);
    result_free(&r);
    buf_release(&b);
}

TEST(tar_types)
{
    struct buf b = {0};
    struct result r = {0};
    uint8_t h[512];

    put_entry(&b, "cont", '7', 5);
    put_entry(&b, "old", '\0', 700);
    put_entry(&b, "olddir/", '\0', 0);
    put_entry(&b, "unknown", 'Z', 700);
    /* header-only types with a size: no data area follows (as Go's archive/tar reads them) */
    hdr_init(h, "dir", '5', 1024);
    hdr_sum(h);
    put_block(&b, h);
    hdr_init(h, "sym", '2', 100);
    memcpy(h + 157, "target", 6);
    hdr_sum(h);
    put_block(&b, h);
    hdr_init(h, "chr", '3', 0);
    octal(h + 329, 8, 4);
    octal(h + 337, 8, 64);
    hdr_sum(h);
    put_block(&b, h);
    put_entry(&b, "label", 'V', 0);  /* a volume label is not a file */
    put_entry(&b, "dump", 'D', 100); /* a GNU dumpdir: a directory with data */
    /* v7: no magic, so no device numbers and no prefix */
    hdr_init(h, "v7chr", '3', 0);
    memset(h + 257, 0, 255);
    octal(h + 329, 8, 4);
    hdr_sum(h);
    put_block(&b, h);
    put_entry(&b, "end", '0', 3);
    put_end(&b);

    CHECK_INT(parse_buf(&b, &r), ==, 0);
    CHECK_INT(r.n, ==, 10);
    static const struct {
        const char *path;
        int type;
        uint64_t size, off;
    } want[] = {
        {"cont", TAR_REG, 5, 512},       {"old", TAR_REG, 700, 1536}, {"olddir", TAR_DIR, 0, 3072},
        {"unknown", TAR_REG, 700, 3584}, {"dir", TAR_DIR, 0, 5120},   {"sym", TAR_SYMLINK, 0, 5632},
        {"chr", TAR_CHR, 0, 6144},       {"dump", TAR_DIR, 0, 7168},  {"v7chr", TAR_CHR, 0, 8192},
        {"end", TAR_REG, 3, 8704},
    };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        CHECK_STR(r.v[i].path, want[i].path);
        CHECK_INT(r.v[i].type, ==, want[i].type);
        CHECK_INT(r.v[i].size, ==, want[i].size);
        CHECK_INT(r.v[i].data_off, ==, want[i].off);
        for (uint64_t j = 0; r.v[i].type == TAR_REG && j < r.v[i].size; j++)
            CHECK_INT(b.p[r.v[i].data_off + j], ==, content_at(r.v[i].path, j));
    }
    CHECK_STR(r.v[5].link, "target");
    CHECK_INT(r.v[6].devmajor, ==, 4);
    CHECK_INT(r.v[6].devminor, ==, 64);
    CHECK_INT(r.v[8].devmajor, ==, 0);
    result_free(&r);

    /* GNU sparse and multi-volume members */
    static const char unsup[] = {'S', 'M'};
    for (size_t i = 0; i < ARRAY_SIZE(unsup); i++) {
        b.len = 0;
        put_entry(&b, "ok", '0', 1);
        put_entry(&b, "x", unsup[i], 10);
        put_end(&b);
        CHECK_INT(parse_buf(&b, &r), ==, AFSP_E_UNSUPPORTED);
        CHECK_INT(r.n, ==, 1);
        result_free(&r);
    }
    buf_release(&b);
}

TEST(tar_numbers)
{
    struct buf b = {0};
    struct result r = {0};
    uint8_t h[512];

    /* base-256 size, uid and gid; negative base-256 mtime; octal padded with spaces */
    hdr_init(h, "b256", '0', 0);
    memset(h + 124, 0, 12);
    h[124] = 0x80, h[135] = 5;
    memset(h + 108, 0, 8);
    h[108] = 0x80, h[112] = 0xff, h[113] = 0xff, h[114] = 0xff, h[115] = 0xff;
    memset(h + 116, 0, 8);
    h[116] = 0x80, h[122] = 0x40;
    memset(h + 136, 0xff, 12);
    memcpy(h + 100, "  100755", 8); /* type bits above 07777 are dropped */
    hdr_sum(h);
    put_block(&b, h);
    put_data(&b, "hello", 5);
    hdr_init(h, "spaces", '0', 0);
    memcpy(h + 108, " 1750 \0", 8);
    memcpy(h + 136, "     12345 ", 12);
    hdr_sum(h);
    put_block(&b, h);
    put_end(&b);
    CHECK_INT(parse_buf(&b, &r), ==, 0);
    CHECK_INT(r.n, ==, 2);
    CHECK_INT(r.v[0].size, ==, 5);
    CHECK_INT(r.v[0].uid, ==, 4294967295u);
    CHECK_INT(r.v[0].gid, ==, 0x4000);
    CHECK_INT(r.v[0].mtime_sec, ==, -1);
    CHECK_INT(r.v[0].mode, ==, 0755);
    CHECK_INT(r.v[1].data_off, ==, 512 * 3);
    CHECK_INT(r.v[1].uid, ==, 01750);
    CHECK_INT(r.v[1].mtime_sec, ==, 012345);
    result_free(&r);

    /* fields that are not numbers or do not fit */
    static const struct {
        int off, len;
        const char *val;
    } bad[] = {
        {108, 8, "\x80\x00\x00\x01\x00\x00\x00\x00"},                  /* uid 2^32 */
        {116, 8, "\xff\xff\xff\xff\xff\xff\xff\xfe"},                  /* gid -2 */
        {124, 12, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"}, /* size -1 */
        {124, 12, "\x80\x00\x00\x00\x80\x00\x00\x00\x00\x00\x00\x00"}, /* size 2^63 */
        {124, 12, "\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00"}, /* size 2^64 */
        {100, 8, "0644x\0\0"},
        {100, 8, "06 44\0\0"},
        {108, 8, "-1\0\0\0\0\0"},
        {124, 12, "9\0\0\0\0\0\0\0\0\0\0"},
        {136, 12, "1 x\0\0\0\0\0\0\0\0"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        b.len = 0;
        hdr_init(h, "f", '0', 0);
        memcpy(h + bad[i].off, bad[i].val, (size_t)bad[i].len);
        hdr_sum(h);
        put_block(&b, h);
        put_end(&b);
        int rc = parse_buf(&b, &r);
        if (rc != AFSP_E_FORMAT)
            test_fail(__FILE__, __LINE__, "bad field %zu: rc %d", i, rc);
        CHECK_INT(r.n, ==, 0);
        result_free(&r);
    }

    /* pax numbers */
    static const struct {
        const char *mtime;
        int64_t sec;
        uint32_t nsec;
    } times[] = {
        {"5", 5, 0},
        {"1.1234567891", 1, 123456789},
        {"1.5", 1, 500000000},
        {"-1.5", -2, 500000000},
        {"-0.000000001", -1, 999999999},
        {"-7", -7, 0},
        {"9223372036854775807", INT64_MAX, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(times); i++) {
        struct buf recs = {0};
        rec_str(&recs, "mtime", times[i].mtime);
        rec_str(&recs, "uid", "4294967295");
        rec_str(&recs, "gid", "0");
        CHECK_INT(parse_pax(recs.p, recs.len, &r), ==, 0);
        CHECK_INT(r.v[0].mtime_sec, ==, times[i].sec);
        CHECK_INT(r.v[0].mtime_nsec, ==, times[i].nsec);
        CHECK_INT(r.v[0].uid, ==, 4294967295u);
        CHECK_INT(r.v[0].gid, ==, 0);
        result_free(&r);
        buf_release(&recs);
    }
    buf_release(&b);
}

TEST(tar_normalise)
{
    static const struct {
        const char *name;
        char type;
        const char *link, *path, *want_link;
    } c[] = {
        {"./", '5', "", "", ""},
        {".", '5', "", "", ""},
        {"/", '5', "", "", ""},
        {"./a/b/", '5', "", "a/b", ""},
        {"//abs//", '5', "", "abs", ""},
        {"././x", '0', "", "x", ""},
        {".//y", '0', "", "y", ""},
        {"...", '0', "", "...", ""},
        {".hidden", '0', "", ".hidden", ""},
        {"../up", '0', "", "../up", ""},
        {"hl", '1', "./a/b/", "hl", "a/b"},
        {"hl2", '1', "/x", "hl2", "x"},
        {"sl", '2', "./t/", "sl", "./t/"},
        {"sl2", '2', "/abs/", "sl2", "/abs/"},
    };
    struct buf b = {0};
    struct result r = {0};
    uint8_t h[512];

    for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
        hdr_init(h, c[i].name, c[i].type, 0);
        memcpy(h + 157, c[i].link, strlen(c[i].link));
        hdr_sum(h);
        put_block(&b, h);
    }
    /* ustar prefix: "prefix/name" */
    hdr_init(h, "fix/", '5', 0);
    memcpy(h + 345, "./pre", 5);
    hdr_sum(h);
    put_block(&b, h);
    put_end(&b);
    CHECK_INT(parse_buf(&b, &r), ==, 0);
    CHECK_INT(r.n, ==, ARRAY_SIZE(c) + 1);
    for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
        CHECK_STR(r.v[i].path, c[i].path);
        CHECK_STR(r.v[i].link, c[i].want_link);
    }
    CHECK_STR(r.v[ARRAY_SIZE(c)].path, "pre/fix");
    result_free(&r);
    buf_release(&b);
}

TEST(tar_pax_precedence)
{
    struct buf b = {0}, x = {0};
    struct result r = {0};

    rec_str(&x, "uid", "77");
    rec_str(&x, "mtime", "5.5");
    rec_str(&x, "SCHILY.xattr.user.g", "1");
    put_ext(&b, 'g', x.p, x.len);
    x.len = 0;
    put_entry(&b, "a", '0', 3); /* uid 77, mtime 5.5, user.g=1 */
    rec_str(&x, "uid", "9");
    put_ext(&b, 'x', x.p, x.len);
    x.len = 0;
    put_entry(&b, "b", '0', 3); /* uid 9 */
    rec_str(&x, "uid", "");
    rec_str(&x, "mtime", "");
    put_ext(&b, 'x', x.p, x.len);
    x.len = 0;
    put_entry(&b, "c", '0', 3); /* the header's uid 1000 and mtime */
    rec_str(&x, "uid", "");
    rec_str(&x, "SCHILY.xattr.user.g2", "2");
    put_ext(&b, 'g', x.p, x.len);
    x.len = 0;
    put_entry(&b, "d", '0', 3); /* uid 1000, user.g=1, user.g2=2 */
    rec_str(&x, "SCHILY.xattr.user.g", "override");
    rec_str(&x, "size", "600"); /* overrides the header's 3 */
    put_ext(&b, 'x', x.p, x.len);
    x.len = 0;
    put_entry(&b, "e", '0', 600);
    put_ext(&b, 'L', "gnu-long-name", 14);
    rec_str(&x, "path", "pax-path");
    put_ext(&b, 'x', x.p, x.len);
    x.len = 0;
    put_entry(&b, "f", '0', 0); /* pax-path */
    put_ext(&b, 'L', "gnu-long-name", 14);
    put_ext(&b, 'K', "gnu-long-link", 13); /* without a NUL */
    put_entry(&b, "g", '2', 0);            /* gnu-long-name -> gnu-long-link */
    rec_str(&x, "path", "first");
    put_ext(&b, 'x', x.p, x.len);
    x.len = 0;
    rec_str(&x, "comment", "a second 'x' replaces the first");
    put_ext(&b, 'x', x.p, x.len);
    x.len = 0;
    put_entry(&b, "h", '0', 0);
    rec_str(&x, "path", "global/path");
    rec_str(&x, "linkpath", "./global/link/");
    put_ext(&b, 'g', x.p, x.len);
    x.len = 0;
    put_entry(&b, "i", '1', 0);
    put_entry(&b, "j", '0', 0);
    put_ext(&b, 'x', "", 0); /* empty, and right before the end */
    put_end(&b);

    CHECK_INT(parse_buf(&b, &r), ==, 0);
    CHECK_INT(r.n, ==, 10);
    const struct rec *e = &r.v[0];
    CHECK_STR(e->path, "a");
    CHECK_INT(e->uid, ==, 77);
    CHECK_INT(e->gid, ==, 1001);
    CHECK_INT(e->mtime_sec, ==, 5);
    CHECK_INT(e->mtime_nsec, ==, 500000000);
    CHECK_STR(e->line + strlen(e->line) - 11, "|user.g=31\n");
    CHECK_INT(r.v[1].uid, ==, 9);
    CHECK_INT(r.v[1].mtime_sec, ==, 5);
    CHECK_INT(r.v[2].uid, ==, 1000);
    CHECK_INT(r.v[2].mtime_sec, ==, 1600000000);
    CHECK_INT(r.v[2].mtime_nsec, ==, 0);
    e = &r.v[3];
    CHECK_INT(e->uid, ==, 1000);
    CHECK_INT(e->nxattrs, ==, 2);
    CHECK_XATTR(e, "user.g", "31");
    CHECK_XATTR(e, "user.g2", "32");
    e = &r.v[4];
    CHECK_INT(e->nxattrs, ==, 2);
    CHECK_XATTR(e, "user.g", "6f76657272696465");
    CHECK_INT(e->size, ==, 600);
    for (int j = 0; j < 600; j++)
        CHECK_INT(b.p[e->data_off + j], ==, content_at("e", j));
    CHECK_STR(r.v[5].path, "pax-path");
    CHECK_STR(r.v[6].path, "gnu-long-name");
    CHECK_STR(r.v[6].link, "gnu-long-link");
    CHECK_STR(r.v[7].path, "h");
    CHECK_STR(r.v[8].path, "global/path");
    CHECK_STR(r.v[8].link, "global/link");
    CHECK_STR(r.v[9].path, "global/path");
    CHECK_STR(r.v[9].link, "");
    result_free(&r);
    buf_release(&x);
    buf_release(&b);
}

TEST(tar_bad_pax)
{
    static const struct {
        const char *recs;
        size_t len;
    } bad[] = {
#define R(s) {s, sizeof s - 1}
        R("abc path=x\n"),        /* not a number */
        R(" 9 path=x\n"),         /* no number */
        R("5 path=x\n"),          /* shorter than the record */
        R("3 \n"),                /* shorter than any record */
        R("99 path=x\n"),         /* beyond the header */
        R("10 pathxx\n"),         /* no '=' */
        R("9 =value\n"),          /* no key */
        R("10 path=x\r"),         /* no newline */
        R("10 path=x\nX"),        /* garbage after the records */
        R("10 path=x\n\0\0X"),    /* garbage after padding */
        R("10path=xx\n"),         /* no space */
        R("0000000018 path=x\n"), /* absurdly many digits */
        R("10 pa\0h=x\n"),        /* NUL in the key */
        R("10 path=\0\n"),        /* NUL in a path */
#undef R
    };
    struct result r = {0};

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        int rc = parse_pax(bad[i].recs, bad[i].len, &r);
        if (rc != AFSP_E_FORMAT || r.n != 0)
            test_fail(__FILE__, __LINE__, "record %zu \"%s\": rc %d, %zu entries", i, bad[i].recs,
                      rc, r.n);
        result_free(&r);
    }
    /* well-formed records with bad values */
    static const struct {
        const char *key, *val;
        size_t vlen;
    } badv[] = {
#define V(k, v) {k, v, sizeof v - 1}
        V("path", "a\0b"),
        V("linkpath", "\0"),
        V("size", "abc"),
        V("size", "-1"),
        V("size", "+1"),
        V("size", "99999999999999999999"),
        V("size", "9223372036854775808"),
        V("uid", "4294967296"),
        V("uid", " 1"),
        V("gid", "1x"),
        V("mtime", "1.2.3"),
        V("mtime", "1."),
        V("mtime", "-"),
        V("mtime", ".5"),
        V("mtime", "1e5"),
        V("mtime", "9223372036854775808.5"),
        V("SCHILY.devmajor", "4294967296"),
        V("SCHILY.xattr.", "v"),
        V("LIBARCHIVE.xattr.user.x", "!!"),
        V("LIBARCHIVE.xattr.user.x", "Y"),
        V("LIBARCHIVE.xattr.user.x", "Y==="),
        V("LIBARCHIVE.xattr.user.%zz", "YQ"),
        V("LIBARCHIVE.xattr.user.%0", "YQ"),
        V("LIBARCHIVE.xattr.user.%00", "YQ"),
        V("LIBARCHIVE.xattr.", "YQ"),
#undef V
    };
    for (size_t i = 0; i < ARRAY_SIZE(badv); i++) {
        struct buf recs = {0};
        rec_add(&recs, badv[i].key, badv[i].val, badv[i].vlen);
        int rc = parse_pax(recs.p, recs.len, &r);
        if (rc != AFSP_E_FORMAT || r.n != 0)
            test_fail(__FILE__, __LINE__, "%s=%s: rc %d, %zu entries", badv[i].key, badv[i].val, rc,
                      r.n);
        result_free(&r);
        buf_release(&recs);
    }
    /* the same in a global header */
    struct buf b = {0};
    put_ext(&b, 'g', "10 pathxx\n", 10);
    put_entry(&b, "f", '0', 3);
    put_end(&b);
    CHECK_INT(parse_buf(&b, &r), ==, AFSP_E_FORMAT);
    result_free(&r);
    buf_release(&b);

    /* good ones around those: NUL padding, unknown keys, leading zeros in the length */
    static const char good[] = "012 path=ok\n"
                               "19 unknown.key=a=b\n"
                               "15 hdrcharset=\n"
                               "19 atime=1.2345678\n"
                               "\0\0\0";
    CHECK_INT(parse_pax(good, sizeof good - 1, &r), ==, 0);
    CHECK_STR(r.v[0].path, "ok");
    result_free(&r);

    /* GNU sparse in pax */
    CHECK_INT(parse_pax("22 GNU.sparse.major=1\n", 22, &r), ==, AFSP_E_UNSUPPORTED);
    result_free(&r);
}

TEST(tar_limits)
{
    struct result r = {0};
    struct buf b = {0}, recs = {0};
    char *path = malloc(TAR_PATH_MAX + 2);
    CHECK(path);
    for (int i = 0; i < TAR_PATH_MAX + 1; i++)
        path[i] = i % 100 == 99 ? '/' : 'p';
    path[TAR_PATH_MAX + 1] = '\0';
    path[TAR_PATH_MAX - 1] = 'q'; /* not a trailing '/' */

    /* a pax path of TAR_PATH_MAX bytes, and one byte more */
    rec_add(&recs, "path", path, TAR_PATH_MAX);
    CHECK_INT(parse_pax(recs.p, recs.len, &r), ==, 0);
    CHECK_INT(strlen(r.v[0].path), ==, TAR_PATH_MAX);
    result_free(&r);
    recs.len = 0;
    rec_add(&recs, "path", path, TAR_PATH_MAX + 1);
    CHECK_INT(parse_pax(recs.p, recs.len, &r), ==, AFSP_E_FORMAT);
    result_free(&r);
    recs.len = 0;
    rec_add(&recs, "linkpath", path, TAR_PATH_MAX + 1);
    CHECK_INT(parse_pax(recs.p, recs.len, &r), ==, AFSP_E_FORMAT);
    result_free(&r);

    /* GNU long names: with a NUL, without one, too long before normalisation, far too long */
    static const struct {
        char type;
        size_t len, size;
        bool slash;
        int rc;
    } gl[] = {
        {'L', TAR_PATH_MAX, TAR_PATH_MAX + 1, false, 0},
        {'L', TAR_PATH_MAX, TAR_PATH_MAX, false, 0},
        {'L', TAR_PATH_MAX + 1, TAR_PATH_MAX + 1, false, AFSP_E_FORMAT},
        {'L', TAR_PATH_MAX + 1, TAR_PATH_MAX + 1, true, AFSP_E_FORMAT},
        {'L', 10, 100000, false, AFSP_E_FORMAT},
        {'K', TAR_PATH_MAX, TAR_PATH_MAX + 1, false, 0},
        {'K', TAR_PATH_MAX + 1, TAR_PATH_MAX + 1, false, AFSP_E_FORMAT},
    };
    for (size_t i = 0; i < ARRAY_SIZE(gl); i++) {
        uint8_t *p = calloc(1, gl[i].size);
        CHECK(p);
        memcpy(p, path, gl[i].len);
        if (gl[i].slash)
            p[0] = '/';
        b.len = 0;
        put_ext(&b, gl[i].type, p, gl[i].size);
        put_entry(&b, "f", '2', 0);
        put_end(&b);
        int rc = parse_buf(&b, &r);
        if (rc != gl[i].rc)
            test_fail(__FILE__, __LINE__, "GNU long name %zu: rc %d", i, rc);
        if (rc == 0)
            CHECK_INT(strlen(gl[i].type == 'L' ? r.v[0].path : r.v[0].link), ==, TAR_PATH_MAX);
        result_free(&r);
        free(p);
    }

    /* a symlink target from a pax header */
    recs.len = 0;
    rec_add(&recs, "linkpath", path, TAR_PATH_MAX);
    b.len = 0;
    put_ext(&b, 'x', recs.p, recs.len);
    put_entry(&b, "sl", '2', 0);
    put_end(&b);
    CHECK_INT(parse_buf(&b, &r), ==, 0);
    CHECK_INT(strlen(r.v[0].link), ==, TAR_PATH_MAX);
    result_free(&r);

    /* a pax header of TAR_PAX_MAX bytes (one big xattr) and one over */
    for (int over = 0; over < 2; over++) {
        size_t vlen = TAR_PAX_MAX - 40 + (size_t)over;
        uint8_t *v = malloc(vlen);
        CHECK(v);
        for (size_t i = 0; i < vlen; i++)
            v[i] = (uint8_t)(i * 13);
        recs.len = 0;
        rec_add(&recs, "SCHILY.xattr.user.big", v, vlen);
        while (recs.len < TAR_PAX_MAX + (size_t)over)
            CHECK(buf_append(&recs, "", 1) == 0);
        CHECK_INT(recs.len, ==, TAR_PAX_MAX + over);
        CHECK_INT(parse_pax(recs.p, recs.len, &r), ==, over ? AFSP_E_FORMAT : 0);
        if (!over)
            CHECK_INT(r.v[0].nxattrs, ==, 1);
        result_free(&r);
        free(v);
    }

    /* TAR_XATTR_MAX xattrs, in one header and merged from global and per-file ones */
    static const struct {
        int global, own, shared;
        int rc;
    } xc[] = {
        {0, TAR_XATTR_MAX, 0, 0},
        {0, TAR_XATTR_MAX + 1, 0, AFSP_E_FORMAT},
        {TAR_XATTR_MAX + 1, 0, 0, AFSP_E_FORMAT},
        {40, 24, 0, 0},
        {40, 25, 0, AFSP_E_FORMAT},
        {40, 40, 30, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(xc); i++) {
        char key[64];
        b.len = 0;
        if (xc[i].global) {
            recs.len = 0;
            for (int j = 0; j < xc[i].global; j++) {
                snprintf(key, sizeof key, "SCHILY.xattr.user.g%d", j);
                rec_str(&recs, key, "v");
            }
            put_ext(&b, 'g', recs.p, recs.len);
        }
        recs.len = 0;
        for (int j = 0; j < xc[i].own; j++) {
            if (j < xc[i].shared)
                snprintf(key, sizeof key, "SCHILY.xattr.user.g%d", j);
            else
                snprintf(key, sizeof key, "SCHILY.xattr.user.x%d", j);
            rec_str(&recs, key, "w");
        }
        put_ext(&b, 'x', recs.p, recs.len);
        put_entry(&b, "f", '0', 1);
        put_end(&b);
        int rc = parse_buf(&b, &r);
        if (rc != xc[i].rc)
            test_fail(__FILE__, __LINE__, "xattrs %zu: rc %d", i, rc);
        if (rc == 0)
            CHECK_INT(r.v[0].nxattrs, ==, xc[i].global + xc[i].own - xc[i].shared);
        result_free(&r);
    }

    /* an xattr name over XATTR_NAME_MAX (255) */
    char key[300];
    memset(key, 'n', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    memcpy(key, "SCHILY.xattr.user.", 18);
    recs.len = 0;
    rec_str(&recs, key, "v");
    CHECK_INT(parse_pax(recs.p, recs.len, &r), ==, AFSP_E_FORMAT);
    result_free(&r);

    free(path);
    buf_release(&recs);
    buf_release(&b);
}

TEST(tar_callback_error)
{
    struct buf b = {0};
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%d", i);
        put_entry(&b, name, '0', (size_t)i * 300);
    }
    put_end(&b);

    struct result r = {.stop_at = 2, .stop_rc = -1234};
    CHECK_INT(parse_buf(&b, &r), ==, -1234);
    CHECK_INT(r.n, ==, 2);
    result_free(&r);
    r = (struct result){.stop_at = 5, .stop_rc = 7}; /* positive returns stop it too */
    CHECK_INT(parse_buf(&b, &r), ==, 7);
    CHECK_INT(r.n, ==, 5);
    result_free(&r);

    /* after an error, a valid stream still gets the error */
    struct tar_parser *p;
    CHECK(tar_parser_new(&p, collect, &r) == 0);
    uint8_t junk[512];
    memset(junk, 'j', sizeof junk);
    CHECK_INT(tar_parser_push(p, junk, sizeof junk), ==, AFSP_E_FORMAT);
    CHECK_INT(tar_parser_push(p, b.p, b.len), ==, AFSP_E_FORMAT);
    CHECK_INT(tar_parser_finish(p), ==, AFSP_E_FORMAT);
    CHECK_INT(r.n, ==, 0);
    tar_parser_free(p);
    tar_parser_free(NULL);
    result_free(&r);
    buf_release(&b);
}
