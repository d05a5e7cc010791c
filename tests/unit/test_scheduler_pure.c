/* test_scheduler_pure.c — the scheduler's pure parts: the reaper's event payloads (printed
 * like Python's json.dumps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "terminal.h"

static void test_terminal_payload(void **state)
{
    char *p = sched_terminal_payload("lease expired: runner r1 stopped heartbeating");
    assert_non_null(p);
    assert_string_equal(p,
                        "{\"type\": \"status\", \"status\": \"failed\", \"message\": "
                        "\"Agent run failed: lease expired: runner r1 stopped "
                        "heartbeating\"}");
    free(p);
    p = sched_terminal_payload("quote \" and \\ and caf\xc3\xa9");
    assert_non_null(p);
    assert_non_null(strstr(p, "\"Agent run failed: quote \\\" and \\\\ and caf\xc3\xa9\"}"));
    free(p);
}

static void test_retried_payload(void **state)
{
    char *p = sched_retried_payload("reaped: runner r1 stopped heartbeating at "
                                    "2026-11-30T16:00:00.000Z",
                                    2, 2);
    assert_non_null(p);
    assert_string_equal(p,
                        "{\"type\": \"status\", \"status\": \"running\", \"message\": "
                        "\"Agent run retried (attempt 2 of 2): reaped: runner r1 stopped "
                        "heartbeating at 2026-11-30T16:00:00.000Z\"}");
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retried_payload),
        cmocka_unit_test(test_terminal_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
