/* tests/unit/test_json_scan.c — the tree-less JSON pieces of kx/json_scan.h that the demo
 * model's body scan and the agent-runner's chunk scan share: white space, literals and numbers
 * (signs, leading zeros, fractions, exponents, text cut short, integers out of range of a long
 * long), each number compared with what jansson makes of the same text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <string.h>

#include "kx/json_scan.h"

#define U(s) ((const unsigned char *)(s))

/* Scans the number in the first len bytes of text: how many bytes it took, or -1 (NULL). */
static long number_n(const char *text, size_t len, kx_json_number *n)
{
    const unsigned char *after = kx_json_scan_number(U(text), U(text) + len, n);
    return after == NULL ? -1 : (long)(after - U(text));
}

static long number(const char *text, kx_json_number *n)
{
    return number_n(text, strlen(text), n);
}

static void test_skip_ws(void **state)
{
    (void)state;
    const char *t = " \t\n\r x";
    assert_ptr_equal(kx_json_skip_ws(U(t), U(t) + strlen(t)), U(t) + 5);
    assert_ptr_equal(kx_json_skip_ws(U(t), U(t) + 2), U(t) + 2); /* stops at end */
    assert_ptr_equal(kx_json_skip_ws(U(t), U(t)), U(t));
    const char *other = "\f\v\xc2\xa0"; /* not JSON white space */
    for (size_t i = 0; i < strlen(other); i++)
        assert_ptr_equal(kx_json_skip_ws(U(other) + i, U(other) + 4), U(other) + i);
}

static void test_scan_literal(void **state)
{
    (void)state;
    const char *t = "true, false null";
    assert_ptr_equal(kx_json_scan_literal(U(t), U(t) + 16, "true"), U(t) + 4);
    assert_ptr_equal(kx_json_scan_literal(U(t) + 6, U(t) + 16, "false"), U(t) + 11);
    assert_ptr_equal(kx_json_scan_literal(U(t) + 12, U(t) + 16, "null"), U(t) + 16);
    assert_null(kx_json_scan_literal(U(t) + 12, U(t) + 15, "null")); /* cut short */
    assert_null(kx_json_scan_literal(U(t), U(t), "true"));
    assert_null(kx_json_scan_literal(U(t), U(t) + 16, "false"));
    const char *caps = "True";
    assert_null(kx_json_scan_literal(U(caps), U(caps) + 4, "true"));
    /* what follows the word is the caller's to judge */
    const char *more = "nullx";
    assert_ptr_equal(kx_json_scan_literal(U(more), U(more) + 5, "null"), U(more) + 4);
}

static void test_number_shapes(void **state)
{
    (void)state;
    kx_json_number n;
    assert_int_equal(number("0", &n), 1);
    assert_true(n.in_range);
    assert_int_equal(n.value, 0);
    assert_int_equal(n.int_digits, 1);
    assert_int_equal(number("-0", &n), 2);
    assert_true(n.in_range);
    assert_int_equal(n.value, 0);
    assert_int_equal(number("-42", &n), 3);
    assert_int_equal(n.value, -42);
    assert_int_equal(number("12.340e+10", &n), 10);
    assert_int_equal(n.int_digits, 2);
    assert_int_equal(n.frac_digits, 3);
    assert_true(n.has_exp);
    assert_int_equal(n.exp_digits, 2);
    assert_false(n.in_range);
    assert_int_equal(n.value, 0);
    assert_int_equal(number("1E-07", &n), 5);
    assert_int_equal(n.exp_digits, 2);
    assert_int_equal(number("1e5", &n), 3);
    assert_false(n.in_range);
    assert_int_equal(number("0.5", &n), 3);
    assert_int_equal(n.frac_digits, 1);
    assert_false(n.in_range);
    /* the number ends where its grammar does: the rest is the caller's */
    assert_int_equal(number("42,", &n), 2);
    assert_int_equal(n.value, 42);
    assert_int_equal(number("7]", &n), 1);
    assert_int_equal(number("3abc", &n), 1);
    assert_int_equal(number("0x1F", &n), 1);
    /* cut short: only the bytes before end count */
    assert_int_equal(number_n("12345", 2, &n), 2);
    assert_int_equal(n.value, 12);
    assert_int_equal(number_n("1.5", 2, &n), -1); /* "1." */
    assert_int_equal(number_n("1e5", 2, &n), -1); /* "1e" */
    assert_int_equal(number_n("-1", 1, &n), -1);  /* "-" */
    assert_int_equal(number_n("1", 0, &n), -1);   /* nothing */
}

static void test_number_refused(void **state)
{
    (void)state;
    const char *bad[] = {"-",   "+1",  "-x",  "01",   "-01", "00",  "1.",
                         "1.x", ".5",  "-.5", "1e",   "1e+", "1E-", "1ex",
                         "--1", "NaN", "inf", "-inf", "",    "x",   "0.e1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kx_json_number n;
        if (number(bad[i], &n) != -1)
            fail_msg("\"%s\" was taken as a number", bad[i]);
        /* jansson refuses each as a whole document too */
        json_t *v = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        if (v != NULL)
            fail_msg("jansson took \"%s\"", bad[i]);
    }
}

/* Integers at and past the ends of a long long: in range exactly where jansson parses them
 * with the same value; past them jansson refuses ("too big"), the scan says out of range. */
static void test_number_range(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool in_range;
        long long value;
        int digits;
    } cases[] = {
        {"9223372036854775807", true, LLONG_MAX, 19},
        {"9223372036854775808", false, 0, 19},
        {"-9223372036854775808", true, LLONG_MIN, 19},
        {"-9223372036854775809", false, 0, 19},
        {"18446744073709551616", false, 0, 20}, /* 2^64: no wrap-around */
        {"99999999999999999999999", false, 0, 23},
        {"999999999999999999", true, 999999999999999999LL, 18},
        {"-1000000000000000000", true, -1000000000000000000LL, 19},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kx_json_number n;
        assert_int_equal(number(cases[i].text, &n), (long)strlen(cases[i].text));
        assert_int_equal(n.int_digits, cases[i].digits);
        if (n.in_range != cases[i].in_range)
            fail_msg("\"%s\": in_range %d", cases[i].text, n.in_range);
        assert_int_equal(n.value, cases[i].value);
        json_t *v = json_loads(cases[i].text, JSON_DECODE_ANY, NULL);
        if (cases[i].in_range) {
            assert_true(json_is_integer(v));
            assert_int_equal(json_integer_value(v), cases[i].value);
        } else {
            assert_null(v);
        }
        json_decref(v);
    }
}

/* Every number the scan takes is one jansson takes too, and an integer in range has the value
 * jansson gives it. */
static void test_number_agrees_with_jansson(void **state)
{
    (void)state;
    const char *good[] = {"0",
                          "-0",
                          "7",
                          "-7",
                          "10",
                          "123456789",
                          "0.0",
                          "-0.25",
                          "3.14159",
                          "1e0",
                          "1E+2",
                          "2e-3",
                          "-1.5e7",
                          "0e0",
                          "1.000000000000001",
                          "1e99",
                          "-1e-99",
                          "5E05",
                          "4611686018427387904"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        kx_json_number n;
        assert_int_equal(number(good[i], &n), (long)strlen(good[i]));
        json_t *v = json_loads(good[i], JSON_DECODE_ANY, NULL);
        if (v == NULL)
            fail_msg("jansson refused \"%s\"", good[i]);
        if (n.in_range)
            assert_int_equal(json_integer_value(v), n.value);
        else
            assert_true(json_is_real(v));
        json_decref(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skip_ws),       cmocka_unit_test(test_scan_literal),
        cmocka_unit_test(test_number_shapes), cmocka_unit_test(test_number_refused),
        cmocka_unit_test(test_number_range),  cmocka_unit_test(test_number_agrees_with_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
