/*
 * test_exec_admit.c - admission (exec/admit.c): cpu counts parsed, requests against a node's
 * capacity (now, later, never), device slots handed out and back, and the queue of waiting
 * jobs, first in, first out and bounded.
 */
#include "../../exec/exec.h"
#include "../../util/util.h"
#include "test.h"

#include <errno.h>

#define GIB (1ull << 30)

TEST(exec_cpu_counts_parse_to_thousandths_and_bad_ones_are_refused)
{
    static const struct {
        const char *s;
        uint32_t m;
    } good[] = {{"1", 1000},   {"0.5", 500},      {"2.25", 2250}, {"0.001", 1},
                {"16", 16000}, {"4096", 4096000}, {"007", 7000},  {"1.0", 1000}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint32_t m = 0;
        CHECK(exec_cpus_parse(good[i].s, &m) == 0);
        CHECK_INT(m, ==, good[i].m);
    }
    static const char *bad[] = {
        "",     "0",  "0.0", "0.0001", "4097", "4096.001", "-1",   "1e3",
        ".5",   "1.", "1,5", " 1",     "1 ",   "abc",      "0x10", "99999999999999999999",
        "1.2.3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t m = 77;
        CHECK(exec_cpus_parse(bad[i], &m) == AFSP_E_USAGE);
        CHECK_INT(m, ==, 77);
    }
    CHECK(exec_cpus_parse(NULL, &(uint32_t){0}) == AFSP_E_USAGE);
}

TEST(exec_a_request_fits_now_later_or_never)
{
    struct exec_capacity c;
    struct exec_res node = {.millicpus = 4000, .memory = 8 * GIB, .scratch = 20 * GIB};
    CHECK(exec_capacity_init(&c, &node) == 0);
    struct exec_res big = {.millicpus = 3000, .memory = 6 * GIB, .scratch = 10 * GIB};
    struct exec_res small = {.millicpus = 1000, .memory = 1 * GIB};
    uint64_t slots = 1;
    CHECK(exec_fit(&c, &big) == EXEC_FITS);
    CHECK(exec_take(&c, &big, &slots) == 0 && slots == 0);
    /* what is left: 1 cpu, 2 GiB, 10 GiB of scratch */
    CHECK(exec_fit(&c, &small) == EXEC_FITS);
    CHECK(exec_fit(&c, &big) == EXEC_WAIT);
    CHECK(exec_take(&c, &big, &slots) == -EAGAIN);
    CHECK_INT(c.used.millicpus, ==, 3000); /* nothing taken by the refusal */
    struct exec_res each[] = {
        {.millicpus = 1001, .memory = 1},                       /* cpu over what is free */
        {.millicpus = 1, .memory = 2 * GIB + 1},                /* memory */
        {.millicpus = 1, .memory = 1, .scratch = 10 * GIB + 1}, /* scratch */
    };
    for (size_t i = 0; i < 3; i++)
        CHECK(exec_fit(&c, &each[i]) == EXEC_WAIT);
    /* more than the node has at all, of any one resource, or no cpu or memory: never */
    struct exec_res never[] = {
        {.millicpus = 4001, .memory = 1},
        {.millicpus = 1, .memory = 8 * GIB + 1},
        {.millicpus = 1, .memory = 1, .scratch = 20 * GIB + 1},
        {.millicpus = 1, .memory = 1, .devices = 1},
        {.millicpus = 0, .memory = 1},
        {.millicpus = 1, .memory = 0},
        {.millicpus = UINT32_MAX, .memory = UINT64_MAX, .scratch = UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        CHECK(exec_fit(&c, &never[i]) == EXEC_NEVER);
    /* given back, it fits again; exactly the whole node fits */
    exec_give(&c, &big, slots);
    CHECK(c.used.millicpus == 0 && c.used.memory == 0 && c.used.scratch == 0);
    CHECK(exec_fit(&c, &node) == EXEC_FITS);
    /* a node must offer some cpu and memory, and at most the maxima */
    struct exec_capacity d;
    CHECK(exec_capacity_init(&d, &(struct exec_res){.millicpus = 0, .memory = 1}) == AFSP_E_USAGE);
    CHECK(exec_capacity_init(&d, &(struct exec_res){.millicpus = 1, .memory = 0}) == AFSP_E_USAGE);
    CHECK(exec_capacity_init(&d, &(struct exec_res){.millicpus = 1, .memory = 1, .devices = 65}) ==
          AFSP_E_USAGE);
    CHECK(exec_capacity_init(&d, &(struct exec_res){.millicpus = 4096001, .memory = 1}) ==
          AFSP_E_USAGE);
}

TEST(exec_device_slots_are_handed_out_lowest_first_and_never_twice)
{
    struct exec_capacity c;
    CHECK(exec_capacity_init(
              &c, &(struct exec_res){.millicpus = 64000, .memory = 64 * GIB, .devices = 4}) == 0);
    struct exec_res two = {.millicpus = 1000, .memory = GIB, .devices = 2};
    struct exec_res one = {.millicpus = 1000, .memory = GIB, .devices = 1};
    uint64_t a, b, x;
    CHECK(exec_take(&c, &two, &a) == 0 && a == 0x3);
    CHECK(exec_take(&c, &one, &b) == 0 && b == 0x4);
    CHECK(exec_fit(&c, &two) == EXEC_WAIT); /* one slot left */
    exec_give(&c, &two, a);
    CHECK(exec_take(&c, &two, &x) == 0 && x == 0x3); /* the freed ones, not slot 2 again */
    CHECK_INT(c.used.devices, ==, 3);
    CHECK((x & b) == 0);
    /* every slot of a 64-slot node, one job each, then none */
    struct exec_capacity m;
    CHECK(exec_capacity_init(
              &m, &(struct exec_res){.millicpus = 64000, .memory = 64 * GIB, .devices = 64}) == 0);
    uint64_t all = 0;
    for (int i = 0; i < 64; i++) {
        CHECK(exec_take(&m, &one, &x) == 0);
        CHECK((all & x) == 0 && x && !(x & (x - 1)));
        all |= x;
    }
    CHECK(all == UINT64_MAX && exec_fit(&m, &one) == EXEC_WAIT);
}

TEST(exec_the_queue_is_first_in_first_out_and_bounded)
{
    struct exec_capacity c;
    struct exec_queue q = {0};
    CHECK(exec_capacity_init(&c, &(struct exec_res){.millicpus = 2000, .memory = 4 * GIB}) == 0);
    struct exec_res big = {.millicpus = 2000, .memory = 1 * GIB};
    struct exec_res small = {.millicpus = 500, .memory = 1 * GIB};
    uint64_t slots, id;
    struct exec_res r;
    CHECK(exec_take(&c, &small, &slots) == 0); /* a running job */
    CHECK(exec_queue_push(&q, 1, &big) == 0);
    CHECK(exec_queue_push(&q, 2, &small) == 0);
    /* the small one would fit, but the big one came first: nothing starts */
    CHECK(!exec_queue_ready(&q, &c, &id, &r));
    CHECK(exec_queue_position(&q, 2) == 1);
    exec_give(&c, &small, slots); /* the running job ends */
    CHECK(exec_queue_ready(&q, &c, &id, &r) && id == 1 && r.millicpus == 2000);
    exec_queue_pop(&q);
    CHECK(exec_take(&c, &r, &slots) == 0);
    CHECK(!exec_queue_ready(&q, &c, &id, &r)); /* job 2 waits for job 1 */
    /* cancelled while waiting */
    CHECK(exec_queue_remove(&q, 2) && !exec_queue_remove(&q, 2) && q.n == 0);
    CHECK(exec_queue_position(&q, 2) == -1);
    /* bounded; order kept across the ring's end and removals in the middle */
    for (uint64_t i = 0; i < EXEC_QUEUE_MAX; i++)
        CHECK(exec_queue_push(&q, 100 + i, &small) == 0);
    CHECK(exec_queue_push(&q, 999, &small) == -ENOSPC);
    CHECK(exec_queue_remove(&q, 100 + 7));
    CHECK(exec_queue_push(&q, 999, &small) == 0);
    exec_give(&c, &big, slots);
    for (uint64_t i = 0; i < EXEC_QUEUE_MAX; i++) {
        uint64_t want = i < 7 ? 100 + i : i + 1 < EXEC_QUEUE_MAX ? 100 + i + 1 : 999;
        CHECK(exec_queue_ready(&q, &c, &id, &r));
        CHECK_INT(id, ==, want);
        exec_queue_pop(&q);
    }
    CHECK(q.n == 0 && !exec_queue_ready(&q, &c, &id, &r));
}
