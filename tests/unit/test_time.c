/* test_time.c — clocks, deadline arithmetic (0 = none), absolute timespecs for timed waits
 * and the ISO-8601 timestamp format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kx/time.h"

static void test_clocks_agree_and_advance(void **state)
{
    int64_t wall_ms = kx_now_ms(), wall_us = kx_now_us();
    assert_true(wall_ms > 1700000000000LL); /* after 2023 */
    assert_true(wall_us / 1000 - wall_ms >= 0 && wall_us / 1000 - wall_ms < 50);
    int64_t m0 = kx_mono_ms(), u0 = kx_mono_us();
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
    assert_true(kx_mono_ms() - m0 >= 20);
    assert_true(kx_mono_us() - u0 >= 20000);
}

static void test_deadlines(void **state)
{
    kx_deadline d = kx_deadline_in(1000);
    int64_t left = kx_deadline_remaining(d);
    assert_true(left > 900 && left <= 1000);
    assert_false(kx_deadline_expired(d));
    assert_true(kx_deadline_expired(kx_deadline_in(-1)));
    assert_true(kx_deadline_expired(kx_deadline_in(0)));
    assert_int_equal(kx_deadline_remaining(KX_NO_DEADLINE), INT64_MAX);
    assert_false(kx_deadline_expired(KX_NO_DEADLINE));
    assert_int_equal(kx_deadline_min(KX_NO_DEADLINE, 5), 5);
    assert_int_equal(kx_deadline_min(7, KX_NO_DEADLINE), 7);
    assert_int_equal(kx_deadline_min(7, 5), 5);
    assert_int_equal(kx_deadline_min(5, 7), 5);
    assert_int_equal(kx_deadline_min(KX_NO_DEADLINE, KX_NO_DEADLINE), KX_NO_DEADLINE);
}

static int64_t ts_ns(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* kx_abs_timespec_in_ms: now on the given clock plus ms, normalised (0 <= tv_nsec < 1 s) for
 * every remainder, also across a second and for a negative ms (an instant already past). */
static void test_abs_timespec(void **state)
{
    (void)state;
    const clockid_t clocks[] = {CLOCK_REALTIME, CLOCK_MONOTONIC};
    const int64_t offsets[] = {0, 1, 999, 1000, 1001, 2500, 86400001, -1, -999, -1000, -1501};
    for (size_t c = 0; c < 2; c++) {
        for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
            struct timespec before;
            clock_gettime(clocks[c], &before);
            struct timespec got = kx_abs_timespec_in_ms(clocks[c], offsets[i]);
            struct timespec after;
            clock_gettime(clocks[c], &after);
            assert_true(got.tv_nsec >= 0 && got.tv_nsec < 1000000000L);
            int64_t want_lo = ts_ns(before) + offsets[i] * 1000000;
            int64_t want_hi = ts_ns(after) + offsets[i] * 1000000;
            assert_true(ts_ns(got) >= want_lo && ts_ns(got) <= want_hi);
        }
    }
}

static void test_iso_format(void **state)
{
    char buf[48];
    kx_time_iso(buf, sizeof buf, 0);
    assert_string_equal(buf, "1970-01-01T00:00:00.000000+00:00");
    /* 2026-11-21T19:40:13.123456Z */
    kx_time_iso(buf, sizeof buf, 1795290013123456LL);
    assert_string_equal(buf, "2026-11-21T19:40:13.123456+00:00");
    kx_time_iso(buf, sizeof buf, 1795290013000001LL);
    assert_string_equal(buf, "2026-11-21T19:40:13.000001+00:00");
    kx_time_iso(buf, 10, 0); /* truncated, still NUL-terminated */
    assert_int_equal(strlen(buf), 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clocks_agree_and_advance),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_abs_timespec),
        cmocka_unit_test(test_iso_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
