/* test_scheduler_pure.c — the scheduler's pure parts: the array literals of the heartbeat
 * UPDATE (only validated run ids and epochs get in) and the reaper's terminal event payload
 * (printed like Python's json.dumps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hb_arrays.h"
#include "terminal.h"

static void test_hb_arrays(void **state)
{
    Kx__V1__RunLease a = KX__V1__RUN_LEASE__INIT, b = KX__V1__RUN_LEASE__INIT,
                     bad1 = KX__V1__RUN_LEASE__INIT, bad2 = KX__V1__RUN_LEASE__INIT,
                     bad3 = KX__V1__RUN_LEASE__INIT;
    a.run_id = "0a1b2c3d-0000-4000-8000-00000000000f";
    a.lease_epoch = 1;
    b.run_id = "FFFFFFFF-0000-4000-8000-000000000001";
    b.lease_epoch = INT64_MAX;
    bad1.run_id = "x'}, {1'; DROP TABLE agent_runs; --";
    bad1.lease_epoch = 1;
    bad2.run_id = "0a1b2c3d-0000-4000-8000-00000000000f";
    bad2.lease_epoch = -1;
    bad3.run_id = "0a1b2c3d-0000-4000-8000-00000000000";    /* one digit short */
    Kx__V1__RunLease *runs[] = {&a, &bad1, &b, &bad2, &bad3};
    Kx__V1__RunnerHeartbeat hb = KX__V1__RUNNER_HEARTBEAT__INIT;
    hb.runs = runs;
    hb.n_runs = 5;
    char *ids = NULL, *epochs = NULL;
    size_t n = 0, skipped = 0;
    assert_int_equal(sched_hb_arrays(&hb, &ids, &epochs, &n, &skipped), KX_OK);
    assert_int_equal(n, 2);
    assert_int_equal(skipped, 3);
    assert_string_equal(ids, "{0a1b2c3d-0000-4000-8000-00000000000f,"
                             "FFFFFFFF-0000-4000-8000-000000000001}");
    assert_string_equal(epochs, "{1,9223372036854775807}");
    free(ids);
    free(epochs);

    hb.n_runs = 0;
    assert_int_equal(sched_hb_arrays(&hb, &ids, &epochs, &n, &skipped), KX_OK);
    assert_int_equal(n, 0);
    assert_string_equal(ids, "{}");
    assert_string_equal(epochs, "{}");
    free(ids);
    free(epochs);
}

static void test_terminal_payload(void **state)
{
    char *p = sched_terminal_payload("lease expired: runner r1 stopped heartbeating");
    assert_non_null(p);
    assert_string_equal(p, "{\"type\": \"status\", \"status\": \"failed\", \"message\": "
                           "\"Agent run failed: lease expired: runner r1 stopped "
                           "heartbeating\"}");
    free(p);
    p = sched_terminal_payload("quote \" and \\ and caf\xc3\xa9");
    assert_non_null(p);
    assert_non_null(strstr(p, "\"Agent run failed: quote \\\" and \\\\ and caf\xc3\xa9\"}"));
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hb_arrays),
        cmocka_unit_test(test_terminal_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
