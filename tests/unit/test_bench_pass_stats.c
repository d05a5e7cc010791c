/* test_bench_pass_stats.c — the statistics bench_run --passes prints (tests/bench/
 * pass_stats.c): quartiles of a few passes, and the goal and baseline/candidate verdicts, whose
 * wording must say when the noise decides. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pass_stats.h"

static void quartiles_of_nine(void **state)
{
    (void)state;
    /* unsorted on purpose: the lead's three passes of 2026-12-02 and six more */
    const double v[] = {445, 394, 542, 480, 410, 500, 463, 512, 430};
    kx_ps_summary s = kx_ps_summarize(v, 9);
    assert_int_equal(s.n, 9);
    assert_true(s.min == 394 && s.max == 542);
    assert_true(s.median == 463);            /* 5th of 9 */
    assert_true(s.p25 == 430);               /* 3rd */
    assert_true(s.p75 == 500);               /* 7th */
    assert_true(v[0] == 445 && v[2] == 542); /* the input is not sorted in place */
}

static void interpolates_between_passes(void **state)
{
    (void)state;
    const double v[] = {4, 1, 3, 2};
    kx_ps_summary s = kx_ps_summarize(v, 4);
    assert_true(s.median == 2.5);
    assert_true(s.p25 == 1.75 && s.p75 == 3.25);
    assert_true(kx_ps_quantile(v, 4, 0) == 1 && kx_ps_quantile(v, 4, 1) == 4);
    const double one[] = {7};
    s = kx_ps_summarize(one, 1);
    assert_true(s.median == 7 && s.p25 == 7 && s.p75 == 7);
    s = kx_ps_summarize(NULL, 0);
    assert_int_equal(s.n, 0);
    assert_true(kx_ps_quantile(v, 0, 0.5) == 0);
}

static void goal_verdicts(void **state)
{
    (void)state;
    char line[512];
    const double below[] = {445, 394, 542, 480, 410, 500, 463, 512, 430};
    kx_ps_summary s = kx_ps_summarize(below, 9);
    assert_false(kx_ps_goal_verdict(line, sizeof line, 500, "runs/s", &s));
    assert_non_null(strstr(line, "goal 500 runs/s: median 463, p25 430, p75 500"));
    assert_non_null(strstr(line, "not met by the median (p75 reaches it: within the noise)"));

    const double far_below[] = {300, 310, 320};
    s = kx_ps_summarize(far_below, 3);
    assert_false(kx_ps_goal_verdict(line, sizeof line, 500, "runs/s", &s));
    assert_non_null(strstr(line, "not met (even p75 is below)"));

    const double marginal[] = {480, 505, 510};
    s = kx_ps_summarize(marginal, 3);
    assert_true(kx_ps_goal_verdict(line, sizeof line, 500, "runs/s", &s));
    assert_non_null(strstr(line, "met by the median, not by p25"));

    const double above[] = {520, 530, 600};
    s = kx_ps_summarize(above, 3);
    assert_true(kx_ps_goal_verdict(line, sizeof line, 500, "runs/s", &s));
    assert_non_null(strstr(line, "met (even p25 reaches it)"));

    s = kx_ps_summarize(NULL, 0);
    assert_false(kx_ps_goal_verdict(line, sizeof line, 500, "runs/s", &s));
    assert_non_null(strstr(line, "no passes"));
}

static void sign_test(void **state)
{
    (void)state;
    /* exact two-sided binomial tails: 9 pairs, 8 on one side: 2 * 10/512 */
    assert_true(fabs(kx_ps_sign_test(8, 9) - 20.0 / 512.0) < 1e-12);
    assert_true(fabs(kx_ps_sign_test(1, 9) - 20.0 / 512.0) < 1e-12);
    assert_true(fabs(kx_ps_sign_test(7, 9) - 92.0 / 512.0) < 1e-12);
    assert_true(fabs(kx_ps_sign_test(9, 9) - 2.0 / 512.0) < 1e-12);
    assert_true(kx_ps_sign_test(5, 10) == 1.0); /* capped */
    assert_true(kx_ps_sign_test(5, 5) > 0.05);  /* 5 pairs can never call it */
    assert_true(kx_ps_sign_test(0, 0) == 1.0);
}

static void ratio_verdicts(void **state)
{
    (void)state;
    char line[512];
    /* the A/A run of 2026-12-02 07:26 (main on both sides), runs/s per pair: noise */
    const double noise[] = {1.181, 1.045, 0.846, 1.357, 0.889, 1.218, 0.646, 0.664, 1.172};
    assert_int_equal(kx_ps_ratio_verdict(line, sizeof line, "runs/s", true, noise, 9), 0);
    assert_non_null(strstr(line, "runs/s candidate/baseline: median ratio 1.045"));
    assert_non_null(strstr(line, "over 9 pairs, 5 above 1 and 4 below (sign test p = 1.00)"));
    assert_non_null(strstr(line, "within the noise"));

    /* 7 of 9 on one side is not enough (p = 0.18): the middle half of these is past 1 */
    const double seven[] = {1.041, 1.055, 1.301, 0.769, 1.116, 1.012, 1.128, 1.074, 0.898};
    assert_int_equal(kx_ps_ratio_verdict(line, sizeof line, "stack CPU ms/run", false, seven, 9),
                     0);
    assert_non_null(strstr(line, "7 above 1 and 2 below (sign test p = 0.18)"));

    /* the A/A run of 07:18, whose two stacks had not gone through the same steps: 8 of 9 */
    const double biased[] = {0.569, 1.042, 1.111, 1.151, 1.157, 1.057, 1.297, 1.042, 1.068};
    assert_int_equal(kx_ps_ratio_verdict(line, sizeof line, "runs/s", true, biased, 9), 1);
    assert_non_null(strstr(line, "(sign test p = 0.04) — the candidate is better"));
    /* the same ratios of CPU ms/run: more CPU per run is worse */
    assert_int_equal(kx_ps_ratio_verdict(line, sizeof line, "stack CPU ms/run", false, biased, 9),
                     -1);
    assert_non_null(strstr(line, "the candidate is worse"));

    const double less_cpu[] = {0.90, 0.92, 0.95, 0.97, 0.93, 0.99};
    assert_int_equal(kx_ps_ratio_verdict(line, sizeof line, "stack CPU ms/run", false, less_cpu,
                                         6),
                     1);

    const double ties[] = {1.0, 1.0, 1.0};
    assert_int_equal(kx_ps_ratio_verdict(line, sizeof line, "runs/s", true, ties, 3), 0);
    assert_non_null(strstr(line, "0 above 1 and 0 below"));
    assert_int_equal(kx_ps_ratio_verdict(line, sizeof line, "runs/s", true, NULL, 0), 0);
    assert_non_null(strstr(line, "no pairs"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quartiles_of_nine), cmocka_unit_test(interpolates_between_passes),
        cmocka_unit_test(goal_verdicts),     cmocka_unit_test(sign_test),
        cmocka_unit_test(ratio_verdicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
