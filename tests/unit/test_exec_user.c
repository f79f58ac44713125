/*
 * test_exec_user.c - who a job runs as (exec/user.c): --user against an image's own
 * /etc/passwd and /etc/group; bad specs and unknown names refused; the image's files read
 * beneath its root (a link out of it resolves inside), to a bound, a FIFO without a hang.
 */
#include "../../exec/exec.h"
#include "../../util/util.h"
#include "test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh image root with etc/ in it; its path in dir (256 bytes), its fd returned. */
static int image_root(char *dir)
{
    snprintf(dir, 256, "%s/image", test_tmpdir());
    CHECK(mkdir(dir, 0755) == 0);
    char etc[300];
    snprintf(etc, sizeof etc, "%s/etc", dir);
    CHECK(mkdir(etc, 0755) == 0);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0);
    return fd;
}

static bool user_is(int root, const char *spec, uint32_t uid, uint32_t gid)
{
    uint32_t u = 77, g = 77;
    return exec_user_resolve(root, spec, &u, &g) == 0 && u == uid && g == gid;
}

TEST(exec_a_user_is_resolved_in_the_image_s_own_accounts)
{
    char dir[256], etc[300];
    int root = image_root(dir);
    snprintf(etc, sizeof etc, "%s/etc", dir);
    test_put(etc, "passwd",
             "root:x:0:0:root:/root:/bin/bash\n"
             "daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
             "broken:x:notanumber:5::/:/bin/sh\n"
             "app:x:1000:1001:App:/home/app:/bin/sh");
    test_put(etc, "group", "root:x:0:\nstaff:x:50:app\napp:x:1001:\nbad:x:-3:\n");
    CHECK(user_is(root, "", 0, 0));
    CHECK(user_is(root, "app", 1000, 1001));  /* its passwd group */
    CHECK(user_is(root, "1000", 1000, 1001)); /* the same, by number */
    CHECK(user_is(root, "2000", 2000, 0));    /* a number the image does not know */
    CHECK(user_is(root, "app:staff", 1000, 50));
    CHECK(user_is(root, "app:7", 1000, 7));
    CHECK(user_is(root, "4242:4343", 4242, 4343));
    CHECK(user_is(root, "daemon", 1, 1));
    CHECK(user_is(root, "4294967294", 4294967294u, 0));
    static const char *bad[] = {"nobody", "app:nogroup", "broken", "app:bad",     ":50", "app:",
                                "a:b:c",  "4294967295",  "-1",     "app:staff:x", "ap",  "app\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t u = 77, g = 77;
        CHECK(exec_user_resolve(root, bad[i], &u, &g) == AFSP_E_USAGE);
        CHECK(u == 77 && g == 77);
    }
    close(root);
}

TEST(exec_an_image_s_accounts_are_read_beneath_its_root_and_bounded)
{
    char dir[256], etc[300], out[300], path[400];
    int root = image_root(dir);
    snprintf(etc, sizeof etc, "%s/etc", dir);
    /* a file outside the image names "evil"; the image's passwd links to it by .. and by an
     * absolute path: both resolve inside the image, where there is no such file */
    snprintf(out, sizeof out, "%s-outside", dir);
    FILE *f = fopen(out, "w");
    CHECK(f != NULL);
    fputs("evil:x:0:0::/:/bin/sh\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/passwd", etc);
    char target[400];
    snprintf(target, sizeof target, "../../../../../../../..%s", out);
    CHECK(symlink(target, path) == 0);
    uint32_t u, g;
    CHECK(exec_user_resolve(root, "evil", &u, &g) == AFSP_E_USAGE);
    CHECK(unlink(path) == 0 && symlink(out, path) == 0);
    CHECK(exec_user_resolve(root, "evil", &u, &g) == AFSP_E_USAGE);
    /* a link that stays inside is followed */
    test_put(etc, "accounts", "app:x:1000:1000::/:/bin/sh\n");
    CHECK(unlink(path) == 0 && symlink("/etc/accounts", path) == 0);
    CHECK(user_is(root, "app", 1000, 1000));
    /* a FIFO: read as empty, no hang */
    CHECK(unlink(path) == 0 && mkfifo(path, 0644) == 0);
    CHECK(exec_user_resolve(root, "app", &u, &g) == AFSP_E_USAGE);
    CHECK(user_is(root, "5", 5, 0));
    /* past EXEC_ACCOUNTS_MAX bytes, nothing is read */
    CHECK(unlink(path) == 0);
    f = fopen(path, "w");
    CHECK(f != NULL);
    for (long n = 0; n <= (long)EXEC_ACCOUNTS_MAX; n = ftell(f))
        fputs("filler:x:1:1:0123456789012345\n", f);
    fputs("late:x:9:9::/:/bin/sh\n", f);
    fclose(f);
    CHECK(exec_user_resolve(root, "late", &u, &g) == AFSP_E_USAGE);
    /* no accounts at all: numbers only */
    CHECK(unlink(path) == 0);
    CHECK(user_is(root, "33:44", 33, 44));
    CHECK(exec_user_resolve(root, "app", &u, &g) == AFSP_E_USAGE);
    close(root);
    CHECK(unlink(out) == 0);
}
