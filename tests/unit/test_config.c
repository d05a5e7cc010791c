/* test_config.c — environment getters: defaults, valid values, and refusal (KX_ERR_INVALID,
 * default kept) of malformed or out-of-range values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "kx/config.h"

static void test_str(void **state)
{
    unsetenv("KX_T_STR");
    assert_string_equal(kx_env_str("KX_T_STR", "def"), "def");
    assert_int_equal(setenv("KX_T_STR", "", 1), 0);
    assert_string_equal(kx_env_str("KX_T_STR", "def"), "def"); /* empty = unset */
    assert_int_equal(setenv("KX_T_STR", "nats://x:1", 1), 0);
    assert_string_equal(kx_env_str("KX_T_STR", "def"), "nats://x:1");
    assert_null(kx_env_str("KX_T_UNSET_XYZ", NULL));
}

static void test_int(void **state)
{
    int64_t v = -1;
    unsetenv("KX_T_INT");
    assert_int_equal(kx_env_int("KX_T_INT", 42, 0, 100, &v), KX_OK);
    assert_int_equal(v, 42);
    assert_int_equal(setenv("KX_T_INT", "77", 1), 0);
    assert_int_equal(kx_env_int("KX_T_INT", 42, 0, 100, &v), KX_OK);
    assert_int_equal(v, 77);
    assert_int_equal(setenv("KX_T_INT", "-5", 1), 0);
    assert_int_equal(kx_env_int("KX_T_INT", 42, -10, 100, &v), KX_OK);
    assert_int_equal(v, -5);
    const char *bad[] = {"101", "-1", "12abc", "abc", " 5x", "99999999999999999999999", "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(setenv("KX_T_INT", bad[i], 1), 0);
        v = -1;
        assert_int_equal(kx_env_int("KX_T_INT", 42, 0, 100, &v), KX_ERR_INVALID);
        assert_int_equal(v, 42);
    }
    assert_int_equal(setenv("KX_T_INT", "0", 1), 0);
    assert_int_equal(kx_env_int("KX_T_INT", 42, 0, 100, &v), KX_OK);
    assert_int_equal(v, 0);
    assert_int_equal(setenv("KX_T_INT", "100", 1), 0);
    assert_int_equal(kx_env_int("KX_T_INT", 42, 0, 100, &v), KX_OK);
    assert_int_equal(v, 100);
}

static void test_parse_int(void **state)
{
    (void)state;
    int64_t v = 7;
    assert_int_equal(kx_parse_int("--n", "42", 1, 100, &v), KX_OK);
    assert_int_equal(v, 42);
    assert_int_equal(kx_parse_int("--n", "-3", -5, 5, &v), KX_OK);
    assert_int_equal(v, -3);
    const char *bad[] = {"", "x", "12x", "0", "101", "99999999999999999999", " 4x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 7;
        assert_int_equal(kx_parse_int("--n", bad[i], 1, 100, &v), KX_ERR_INVALID);
        assert_int_equal(v, 7);
    }
}

static void test_bool(void **state)
{
    bool b = false;
    unsetenv("KX_T_BOOL");
    assert_int_equal(kx_env_bool("KX_T_BOOL", true, &b), KX_OK);
    assert_true(b);
    const char *yes[] = {"1", "true", "TRUE", "Yes", "on"};
    const char *no[] = {"0", "false", "False", "NO", "off"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(setenv("KX_T_BOOL", yes[i], 1), 0);
        assert_int_equal(kx_env_bool("KX_T_BOOL", false, &b), KX_OK);
        assert_true(b);
        assert_int_equal(setenv("KX_T_BOOL", no[i], 1), 0);
        assert_int_equal(kx_env_bool("KX_T_BOOL", true, &b), KX_OK);
        assert_false(b);
    }
    assert_int_equal(setenv("KX_T_BOOL", "maybe", 1), 0);
    assert_int_equal(kx_env_bool("KX_T_BOOL", true, &b), KX_ERR_INVALID);
    assert_true(b);
}

static void test_port(void **state)
{
    uint16_t p = 1;
    unsetenv("KX_T_PORT");
    assert_int_equal(kx_env_port("KX_T_PORT", 9100, &p), KX_OK);
    assert_int_equal(p, 9100);
    assert_int_equal(setenv("KX_T_PORT", "65535", 1), 0);
    assert_int_equal(kx_env_port("KX_T_PORT", 9100, &p), KX_OK);
    assert_int_equal(p, 65535);
    assert_int_equal(setenv("KX_T_PORT", "0", 1), 0); /* any free port */
    assert_int_equal(kx_env_port("KX_T_PORT", 9100, &p), KX_OK);
    assert_int_equal(p, 0);
    const char *bad[] = {"65536", "-1", "http", "80x"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(setenv("KX_T_PORT", bad[i], 1), 0);
        assert_int_equal(kx_env_port("KX_T_PORT", 9100, &p), KX_ERR_INVALID);
        assert_int_equal(p, 9100);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_str),  cmocka_unit_test(test_int),  cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_bool), cmocka_unit_test(test_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
