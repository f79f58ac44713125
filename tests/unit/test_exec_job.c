/*
 * test_exec_job.c - a job's states (exec/job.c): ids, the steps a job may take and those it may
 * not, each state's time, and how a run's result becomes EXITED, KILLED, OOM or FAILED.
 */
#include "../../exec/exec.h"
#include "../../util/util.h"
#include "test.h"

#include <errno.h>

static const uint8_t node_id[4] = {0xab, 0x01, 0xcd, 0xef};

TEST(exec_a_job_moves_through_its_states_only_forward)
{
    struct exec_status j;
    exec_status_init(&j, node_id, 17, EXEC_QUEUED, 1000);
    CHECK_STR(j.id, "ab01cdef-17");
    CHECK(j.state == EXEC_QUEUED && j.at[EXEC_QUEUED] == 1000 && j.status == -1);
    CHECK_STR(exec_state_name(j.state), "queued");
    CHECK(exec_status_to(&j, EXEC_RUNNING, 1001) == -EINVAL); /* not prepared */
    CHECK(exec_status_to(&j, EXEC_EXITED, 1001) == -EINVAL);
    CHECK(exec_status_to(&j, EXEC_PREPARING, 1100) == 0);
    CHECK(exec_status_to(&j, EXEC_QUEUED, 1101) == -EINVAL); /* never back */
    CHECK(exec_status_to(&j, EXEC_RUNNING, 1200) == 0);
    CHECK(exec_status_to(&j, EXEC_PREPARING, 1201) == -EINVAL);
    CHECK(exec_status_to(&j, EXEC_EXITED, 1300) == 0);
    CHECK(exec_state_final(j.state));
    for (int s = 0; s < EXEC_STATES; s++) /* an end is the end */
        CHECK(exec_status_to(&j, (enum exec_state)s, 1400) == -EINVAL);
    CHECK(j.at[EXEC_QUEUED] == 1000 && j.at[EXEC_PREPARING] == 1100 && j.at[EXEC_RUNNING] == 1200 &&
          j.at[EXEC_EXITED] == 1300 && j.at[EXEC_OOM] == 0);
    /* a queued job cancelled; a preparing one that fails; ids from a counter */
    struct exec_status q, p;
    exec_status_init(&q, node_id, 18, EXEC_QUEUED, 5);
    CHECK(exec_status_to(&q, EXEC_KILLED, 6) == 0);
    exec_status_init(&p, node_id, 19, EXEC_PREPARING, 5);
    CHECK_STR(p.id, "ab01cdef-19");
    CHECK(exec_status_to(&p, EXEC_OOM, 6) == -EINVAL); /* it never ran */
    CHECK(exec_status_to(&p, EXEC_FAILED, 6) == 0);
    CHECK_STR(exec_state_name(EXEC_OOM), "oom");
    CHECK_STR(exec_state_name((enum exec_state)99), "unknown");
}

TEST(exec_a_run_s_result_becomes_its_end_state)
{
    struct {
        int rc, status;
        bool oom, kill_asked, no_result;
        enum exec_state want;
    } cases[] = {
        {0, 0, false, false, false, EXEC_EXITED},
        {0, 3, false, false, false, EXEC_EXITED},
        {0, 137, true, false, false, EXEC_OOM},     /* the kernel's count, not the 137 */
        {0, 137, false, false, false, EXEC_EXITED}, /* killed by SIGKILL, not by us: not OOM */
        {0, 137, false, true, false, EXEC_KILLED},
        {0, 143, true, true, false, EXEC_OOM},      /* OOM first */
        {0, 0, false, true, false, EXEC_EXITED},    /* asked, but it ended by itself */
        {-2, -1, false, false, false, EXEC_FAILED}, /* the runtime did not start */
        {-5, 1, false, false, false, EXEC_EXITED},  /* cleanup failed after it ran */
        {-2, 0, false, false, true, EXEC_FAILED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct exec_status j;
        exec_status_init(&j, node_id, i, EXEC_PREPARING, 1);
        CHECK(exec_status_to(&j, EXEC_RUNNING, 2) == 0);
        j.kill_asked = cases[i].kill_asked;
        struct exec_result r = {.status = cases[i].status,
                                .oom = cases[i].oom,
                                .usage = {.cpu_ns = 5, .mem_peak = 6, .oom_kills = cases[i].oom}};
        exec_status_end(&j, cases[i].rc, cases[i].no_result ? NULL : &r, 3);
        CHECK_INT(j.state, ==, cases[i].want);
        CHECK(j.at[cases[i].want] == 3);
        if (!cases[i].no_result)
            CHECK(j.status == cases[i].status && j.usage.mem_peak == 6);
    }
}
