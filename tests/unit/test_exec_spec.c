/*
 * test_exec_spec.c - what the executor reads of an image config (store/oci/config.c's
 * config_process) and the config.json it writes for the runtime (exec/spec.c): the command,
 * environment, working directory and user, the 14 capabilities and no new privileges, the
 * limits, the namespaces, the mounts and volumes; bad configs and options refused.
 */
#include "../../exec/exec.h"
#include "../../store/oci/oci.h"
#include "../../util/util.h"
#include "test.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

static const char img_json[] =
    "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
    "\"Entrypoint\":[\"/usr/bin/python3\"],\"Cmd\":[\"-c\",\"print(1)\"],"
    "\"Env\":[\"PATH=/opt/bin:/usr/bin\",\"LANG=C.UTF-8\",\"A=1\"],"
    "\"WorkingDir\":\"/srv\",\"User\":\"1000:1000\"}}";

static int process_of(const char *json, struct config_process *p)
{
    return config_process((const uint8_t *)json, strlen(json), p);
}

/* The config.json of s, parsed back. */
static json_t *spec_of(const struct exec_spec *s)
{
    char *text = NULL;
    CHECK(exec_spec_json(s, &text) == 0 && text);
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    CHECK(j != NULL);
    return j;
}

static const char *str_at(json_t *a, size_t i)
{
    return json_string_value(json_array_get(a, i));
}

static bool has_str(json_t *a, const char *s)
{
    for (size_t i = 0; i < json_array_size(a); i++)
        if (!strcmp(str_at(a, i), s))
            return true;
    return false;
}

static json_t *at(json_t *j, const char *path)
{
    char buf[128], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok_r(buf, ".", &save); j && k; k = strtok_r(NULL, ".", &save))
        j = json_object_get(j, k);
    return j;
}

static struct exec_spec base(const struct config_process *img)
{
    return (struct exec_spec){.img = img,
                              .uid = 1000,
                              .gid = 1000,
                              .res = {.millicpus = 500, .memory = 256u << 20},
                              .hostname = "afsp-j1",
                              .cgroups_path = "afsp/j1"};
}

TEST(exec_an_image_config_gives_the_process_and_bad_ones_are_refused)
{
    struct config_process p;
    CHECK(process_of(img_json, &p) == 0);
    CHECK(p.entrypoint && !strcmp(p.entrypoint[0], "/usr/bin/python3") && !p.entrypoint[1]);
    CHECK(p.cmd && !strcmp(p.cmd[1], "print(1)") && !p.cmd[2]);
    CHECK(p.env && !strcmp(p.env[2], "A=1") && !p.env[3]);
    CHECK(!strcmp(p.workdir, "/srv") && !strcmp(p.user, "1000:1000"));
    config_process_free(&p);
    /* absent and null fields are empty */
    CHECK(process_of("{\"config\":{\"Cmd\":null,\"Env\":[]}}", &p) == 0);
    CHECK(!p.entrypoint && !p.cmd && p.env && !p.env[0] && !p.workdir && !p.user);
    config_process_free(&p);
    CHECK(process_of("{}", &p) == 0 && !p.cmd);
    config_process_free(&p);
    static const char *bad[] = {
        "[]",
        "not json",
        "{\"config\":[]}",
        "{\"config\":{\"Cmd\":\"sh\"}}",
        "{\"config\":{\"Cmd\":[\"sh\",1]}}",
        "{\"config\":{\"Env\":[\"NOEQUALS\"]}}",
        "{\"config\":{\"Env\":[\"=x\"]}}",
        "{\"config\":{\"WorkingDir\":5}}",
        "{\"config\":{\"User\":{}}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(process_of(bad[i], &p) == AFSP_E_FORMAT);
        CHECK(!p.entrypoint && !p.cmd && !p.env && !p.workdir && !p.user);
    }
    /* more entries than CONFIG_ARGS_MAX */
    struct buf b = {0};
    CHECK(buf_append(&b, "{\"config\":{\"Cmd\":[\"x\"", 21) == 0);
    for (int i = 0; i < CONFIG_ARGS_MAX; i++)
        CHECK(buf_append(&b, ",\"x\"", 4) == 0);
    CHECK(buf_append(&b, "]}}", 3) == 0);
    CHECK(config_process(b.p, b.len, &p) == AFSP_E_FORMAT);
    buf_release(&b);
}

TEST(exec_config_json_has_the_image_s_process_with_the_job_s_options_over_it)
{
    struct config_process p;
    CHECK(process_of(img_json, &p) == 0);
    struct exec_spec s = base(&p);
    json_t *j = spec_of(&s);
    json_t *args = at(j, "process.args"), *env = at(j, "process.env");
    CHECK(json_array_size(args) == 3 && !strcmp(str_at(args, 0), "/usr/bin/python3") &&
          !strcmp(str_at(args, 2), "print(1)"));
    CHECK(has_str(env, "PATH=/opt/bin:/usr/bin") && has_str(env, "LANG=C.UTF-8"));
    CHECK(!strcmp(json_string_value(at(j, "process.cwd")), "/srv"));
    CHECK(json_integer_value(at(j, "process.user.uid")) == 1000);
    CHECK(json_integer_value(at(j, "process.user.gid")) == 1000);
    CHECK(!strcmp(json_string_value(at(j, "hostname")), "afsp-j1"));
    json_decref(j);

    /* a command given replaces Cmd (not the Entrypoint); --env over Env, one name at a time;
     * --workdir; device slots named */
    char *args2[] = {"-c", "import json", NULL};
    char *env2[] = {"A=2", "NEW=x=y", NULL};
    s.args = args2;
    s.env = env2;
    s.workdir = "/w";
    s.slots = 0x5;
    s.slots_env = "CUDA_VISIBLE_DEVICES";
    j = spec_of(&s);
    args = at(j, "process.args");
    env = at(j, "process.env");
    CHECK(json_array_size(args) == 3 && !strcmp(str_at(args, 2), "import json"));
    CHECK(has_str(env, "A=2") && !has_str(env, "A=1") && has_str(env, "NEW=x=y"));
    CHECK(has_str(env, "CUDA_VISIBLE_DEVICES=0,2"));
    CHECK(json_array_size(env) == 5);
    CHECK(!strcmp(json_string_value(at(j, "process.cwd")), "/w"));
    json_decref(j);

    /* the device slots' nodes: made, and allowed (only they) */
    struct exec_device d[] = {{"/dev/nvidia2", false, 195, 2, 0666}};
    s.devices = d;
    s.ndevices = 1;
    j = spec_of(&s);
    json_t *dv = json_array_get(at(j, "linux.devices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(dv, "path")), "/dev/nvidia2"));
    CHECK(!strcmp(json_string_value(json_object_get(dv, "type")), "c"));
    CHECK(json_integer_value(json_object_get(dv, "major")) == 195);
    json_t *al = at(j, "linux.resources.devices");
    CHECK_INT(json_array_size(al), ==, 2);
    CHECK(json_is_true(json_object_get(json_array_get(al, 1), "allow")));
    CHECK(json_integer_value(json_object_get(json_array_get(al, 1), "minor")) == 2);
    json_decref(j);
    d[0].path = "/tmp/x"; /* a device node outside /dev */
    char *bad = NULL;
    CHECK(exec_spec_json(&s, &bad) == AFSP_E_USAGE && !bad);
    s.ndevices = 0;
    config_process_free(&p);

    /* no image config: the default PATH, /, the command given */
    struct exec_spec t = base(NULL);
    char *sh[] = {"/bin/true", NULL};
    t.args = sh;
    j = spec_of(&t);
    CHECK(has_str(at(j, "process.env"),
                  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    CHECK(!strcmp(json_string_value(at(j, "process.cwd")), "/"));
    json_decref(j);
}

TEST(exec_config_json_confines_the_job)
{
    struct exec_spec s = base(NULL);
    char *sh[] = {"/bin/sh", NULL};
    s.args = sh;
    json_t *j = spec_of(&s);
    /* Docker's 14 capabilities, no more, in every set; no inheritable or ambient ones */
    json_t *caps = at(j, "process.capabilities");
    const char *sets[] = {"bounding", "effective", "permitted"};
    for (int k = 0; k < 3; k++) {
        json_t *set = json_object_get(caps, sets[k]);
        CHECK_INT(json_array_size(set), ==, 14);
        for (int i = 0; i < EXEC_CAPS_N; i++)
            CHECK(has_str(set, exec_caps[i]));
        CHECK(!has_str(set, "CAP_SYS_ADMIN") && !has_str(set, "CAP_NET_ADMIN"));
    }
    CHECK(!json_object_get(caps, "inheritable") && !json_object_get(caps, "ambient"));
    CHECK(json_is_true(at(j, "process.noNewPrivileges")));
    /* limits: 0.5 cpu is half of each period; memory without swap; devices denied */
    CHECK(json_integer_value(at(j, "linux.resources.cpu.quota")) == EXEC_CPU_PERIOD / 2);
    CHECK(json_integer_value(at(j, "linux.resources.cpu.period")) == EXEC_CPU_PERIOD);
    CHECK(json_integer_value(at(j, "linux.resources.memory.limit")) == 256 << 20);
    CHECK(json_integer_value(at(j, "linux.resources.memory.swap")) == 256 << 20);
    json_t *dev = json_array_get(at(j, "linux.resources.devices"), 0);
    CHECK(json_is_false(json_object_get(dev, "allow")));
    CHECK_INT(json_array_size(at(j, "linux.resources.devices")), ==, 1);
    CHECK_INT(json_array_size(at(j, "linux.devices")), ==, 0);
    CHECK(!strcmp(json_string_value(at(j, "linux.cgroupsPath")), "afsp/j1"));
    CHECK(has_str(at(j, "linux.maskedPaths"), "/proc/kcore"));
    CHECK(has_str(at(j, "linux.readonlyPaths"), "/proc/sys"));
    /* seccomp: all allowed but what Docker refuses such a container; new user namespaces refused */
    CHECK(!strcmp(json_string_value(at(j, "linux.seccomp.defaultAction")), "SCMP_ACT_ALLOW"));
    json_t *rules = at(j, "linux.seccomp.syscalls");
    json_t *refused = json_object_get(json_array_get(rules, 0), "names");
    CHECK(has_str(refused, "unshare") && has_str(refused, "keyctl") && has_str(refused, "mount") &&
          has_str(refused, "bpf") && !has_str(refused, "read") && !has_str(refused, "clone"));
    json_t *clone = json_array_get(rules, 1);
    json_t *arg = json_array_get(json_object_get(clone, "args"), 0);
    CHECK(has_str(json_object_get(clone, "names"), "clone"));
    CHECK(json_integer_value(json_object_get(arg, "value")) == 0x10000000 &&
          json_integer_value(json_object_get(arg, "valueTwo")) == 0x10000000);
    CHECK(!strcmp(json_string_value(json_object_get(arg, "op")), "SCMP_CMP_MASKED_EQ"));
    CHECK(json_integer_value(json_object_get(json_array_get(rules, 2), "errnoRet")) == ENOSYS);
    /* --net none: a network namespace of its own */
    json_t *ns = at(j, "linux.namespaces");
    bool net = false;
    for (size_t i = 0; i < json_array_size(ns); i++)
        net = net ||
              !strcmp(json_string_value(json_object_get(json_array_get(ns, i), "type")), "network");
    CHECK(net && json_array_size(ns) == 5);
    json_decref(j);
    /* --net host: none of its own; volumes bound as asked, read-only ones ro */
    struct exec_volume v[] = {{"/data/models", "/models", true}, {"/tmp/out", "/out", false}};
    s.net_host = true;
    s.volumes = v;
    s.nvolumes = 2;
    j = spec_of(&s);
    CHECK_INT(json_array_size(at(j, "linux.namespaces")), ==, 4);
    json_t *m = at(j, "mounts");
    int seen = 0;
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *e = json_array_get(m, i);
        const char *dst = json_string_value(json_object_get(e, "destination"));
        json_t *o = json_object_get(e, "options");
        if (!strcmp(dst, "/models"))
            seen += !strcmp(json_string_value(json_object_get(e, "source")), "/data/models") &&
                    has_str(o, "ro") && has_str(o, "rro") && has_str(o, "nosuid") &&
                    has_str(o, "rnosuid") && has_str(o, "rbind");
        if (!strcmp(dst, "/out"))
            seen += has_str(o, "rw") && !has_str(o, "ro") && !has_str(o, "rro");
        if (!strcmp(dst, "/sys"))
            seen += has_str(o, "rbind") && has_str(o, "rro") && has_str(o, "rnoexec");
    }
    CHECK_INT(seen, ==, 3);
    json_decref(j);
}

TEST(exec_config_json_refuses_what_cannot_run)
{
    char *text = (char *)1;
    struct exec_spec s = base(NULL);
    CHECK(exec_spec_json(&s, &text) == AFSP_E_USAGE && !text); /* no command anywhere */
    char *sh[] = {"/bin/sh", NULL}, *badenv[] = {"NOEQUALS", NULL}, *none[] = {NULL};
    s.args = none;
    CHECK(exec_spec_json(&s, &text) == AFSP_E_USAGE);
    s.args = sh;
    s.workdir = "relative";
    CHECK(exec_spec_json(&s, &text) == AFSP_E_USAGE);
    s.workdir = NULL;
    s.env = badenv;
    CHECK(exec_spec_json(&s, &text) == AFSP_E_USAGE);
    s.env = NULL;
    struct exec_volume v = {"data", "/data", true};
    s.volumes = &v;
    s.nvolumes = 1;
    CHECK(exec_spec_json(&s, &text) == AFSP_E_USAGE);
    s.nvolumes = 0;
    s.hostname = NULL;
    CHECK(exec_spec_json(&s, &text) == AFSP_E_USAGE);
    s.hostname = "h";
    s.res.memory = 0;
    CHECK(exec_spec_json(&s, &text) == AFSP_E_USAGE);
    s.res.memory = 1;
    CHECK(exec_spec_json(&s, &text) == 0 && text);
    free(text);
}
