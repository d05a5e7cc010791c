/* test_breaker.c — kx_breaker: opens after the threshold, backoff doubles up to the cap,
 * half-open trial, success closes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "kx/breaker.h"

static void test_opens_after_threshold_and_backs_off(void **state)
{
    (void)state;
    kx_breaker b;
    kx_breaker_init(&b, 3, 100, 350);
    int64_t retry = 0;
    assert_true(kx_breaker_allow(&b, 0, &retry));
    kx_breaker_failure(&b, 0);
    kx_breaker_failure(&b, 0);
    assert_true(kx_breaker_allow(&b, 0, &retry)); /* 2 < threshold: still closed */
    kx_breaker_failure(&b, 10);                   /* 3rd: open for 100 ms */
    assert_false(kx_breaker_allow(&b, 50, &retry));
    assert_int_equal(retry, 60);
    assert_true(kx_breaker_allow(&b, 110, &retry)); /* half-open trial */
    kx_breaker_failure(&b, 110);                    /* open for 200 */
    assert_false(kx_breaker_allow(&b, 309, &retry));
    assert_true(kx_breaker_allow(&b, 310, &retry));
    kx_breaker_failure(&b, 310); /* 400 capped to 350 */
    assert_false(kx_breaker_allow(&b, 659, &retry));
    assert_int_equal(retry, 1);
    assert_true(kx_breaker_allow(&b, 660, &retry));
    kx_breaker_success(&b);
    assert_int_equal(b.failures, 0);
    kx_breaker_failure(&b, 700); /* count starts over */
    assert_true(kx_breaker_allow(&b, 700, &retry));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_after_threshold_and_backs_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
