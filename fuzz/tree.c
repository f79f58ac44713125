/*
 * fuzz/tree.c - libFuzzer target for the merged tree (fs_tree_build_src): layer file tables come
 * from indexes that peers will send, so any paths, types and hardlinks must build a sane tree.
 *
 * Input: layers separated by a 0xff byte; in a layer, entries separated by '\n', each
 * "T PATH" or "T PATH\tLINK" with T one of 0 1 2 3 4 5 6 (tar types). Paths are taken as they
 * come ("/", "a//b/", "./x": an index from a peer need not be normalised as the tar parser's
 * are), or normalised as the tar parser does when the line starts with 'n'. Then every inode is
 * checked: names are non-empty, without '/', not "." or ".."; lookup of each name finds its inode;
 * a directory's entries are sorted and unique; a subdirectory's parent is the directory; every
 * inode is reachable from the root exactly once per name, and its link count says so.
 */
#include "../fs/fs.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ENTRIES 4096

struct flayer {
    struct layer_file *f;
    uint32_t n;
};

static uint32_t f_nfiles(void *arg)
{
    return ((struct flayer *)arg)->n;
}

static int f_file(void *arg, uint32_t i, struct layer_file *out)
{
    struct flayer *l = arg;
    if (i >= l->n)
        return -1;
    *out = l->f[i];
    return 0;
}

static int f_xattr(void *arg, uint32_t i, uint32_t j, const char **name, const uint8_t **value,
                   size_t *len)
{
    (void)arg, (void)i;
    if (j > 0)
        return -1;
    *name = "user.fuzz";
    *value = (const uint8_t *)"v";
    *len = 1;
    return 0;
}

static char *norm(char *p)
{
    for (;;) {
        if (p[0] == '/')
            p++;
        else if (p[0] == '.' && p[1] == '/')
            p += 2;
        else if (p[0] == '.' && p[1] == 0)
            p++;
        else
            break;
    }
    size_t n = strlen(p);
    while (n && p[n - 1] == '/')
        p[--n] = 0;
    return p;
}

static void check(const struct fs_tree *t, uint32_t *names)
{
    uint64_t count = fs_tree_count(t);
    for (uint64_t ino = 1; ino <= count; ino++) {
        struct fs_attr a;
        if (fs_tree_getattr(t, ino, &a) != 0 || a.ino != ino)
            abort();
        if (!S_ISDIR(a.mode))
            continue;
        const char *name, *prev = NULL;
        uint64_t child, found;
        for (uint32_t i = 0; fs_tree_dirent(t, ino, i, &name, &child) == 0; i++) {
            if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
                abort();
            if (prev && strcmp(prev, name) >= 0)
                abort(); /* sorted, unique */
            if (fs_tree_lookup(t, ino, name, &found) != 0 || found != child)
                abort();
            if (child < 1 || child > count)
                abort();
            struct fs_attr ca;
            fs_tree_getattr(t, child, &ca);
            if (S_ISDIR(ca.mode) && fs_tree_parent(t, child) != ino)
                abort();
            if (S_ISLNK(ca.mode) && !fs_tree_readlink(t, child))
                abort();
            names[child]++;
            prev = name;
        }
    }
    for (uint64_t ino = 2; ino <= count; ino++) {
        struct fs_attr a;
        fs_tree_getattr(t, ino, &a);
        if (!names[ino])
            abort(); /* unreachable inodes are not kept */
        if (!S_ISDIR(a.mode) && a.nlink != names[ino])
            abort();
        if (S_ISDIR(a.mode) && names[ino] != 1)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    struct flayer layers[8];
    struct fs_layer_src src[8];
    struct layer_file *files = calloc(MAX_ENTRIES, sizeof *files);
    size_t nl = 0, nf = 0;
    if (!buf || !files)
        abort();
    memcpy(buf, data, size);
    buf[size] = 0;
    char *p = buf, *end = buf + size;
    layers[0] = (struct flayer){files, 0};
    while (p < end && nf < MAX_ENTRIES) {
        char *e = p;
        while (e < end && *e != '\n' && (uint8_t)*e != 0xff)
            e++;
        int next_layer = e < end && (uint8_t)*e == 0xff;
        *e = 0;
        bool n = *p == 'n';
        p += n;
        if (e - p >= 2 && p[0] >= '0' && p[0] <= '6' && p[1] == ' ') {
            char *path = p + 2, *link = strchr(path, '\t');
            if (link)
                *link++ = 0;
            struct layer_file *f = &files[nf++];
            *f = (struct layer_file){.path = n ? norm(path) : path,
                                     .link = !link ? ""
                                             : n   ? norm(link)
                                                   : link,
                                     .type = p[0],
                                     .mode = 0755,
                                     .size = 1,
                                     .nxattrs = 1};
            layers[nl].n++;
        }
        p = e + 1;
        if (next_layer && nl < 7) {
            nl++;
            layers[nl] = (struct flayer){files + nf, 0};
        }
    }
    nl++;
    for (size_t k = 0; k < nl; k++)
        src[k] = (struct fs_layer_src){&layers[k], f_nfiles, f_file, f_xattr, k % 2 == 0};
    struct fs_tree *t;
    log_level = -1; /* entries left out are expected here */
    if (fs_tree_build_src(&t, src, nl, NULL) == 0) {
        uint32_t *names = calloc(fs_tree_count(t) + 1, sizeof *names);
        if (!names)
            abort();
        check(t, names);
        free(names);
        fs_tree_free(t);
    }
    free(files);
    free(buf);
    return 0;
}
