/* test_buf.c — kx_buf: growth, NUL termination, printf, consume, limit, take/free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kx/buf.h"

static void test_grows_and_stays_terminated(void **state)
{
    kx_buf b = KX_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(kx_buf_add(&b, "abc", 3), KX_OK);
    assert_int_equal(b.len, 3000);
    assert_true(b.cap > 3000);
    assert_int_equal(b.s[3000], '\0');
    assert_int_equal(strlen(b.s), 3000);
    assert_memory_equal(b.s + 2997, "abc", 3);
    kx_buf_free(&b);
    assert_null(b.s);
    assert_int_equal(b.len, 0);
}

static void test_binary_and_empty_appends(void **state)
{
    kx_buf b = KX_BUF_INIT;
    assert_int_equal(kx_buf_add(&b, "a\0b", 3), KX_OK);
    assert_int_equal(kx_buf_add(&b, "", 0), KX_OK);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.s, "a\0b", 4);
    kx_buf_free(&b);
}

static void test_printf(void **state)
{
    kx_buf b = KX_BUF_INIT;
    assert_int_equal(kx_buf_str(&b, "n="), KX_OK);
    assert_int_equal(kx_buf_printf(&b, "%d/%s", 42, "x"), KX_OK);
    assert_string_equal(b.s, "n=42/x");
    char big[5000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(kx_buf_printf(&b, "[%s]", big), KX_OK);
    assert_int_equal(b.len, 6 + 5001);
    assert_int_equal(b.s[b.len - 1], ']');
    kx_buf_free(&b);
}

static void test_consume_and_clear(void **state)
{
    kx_buf b = KX_BUF_INIT;
    kx_buf_str(&b, "line1\nline2\n");
    kx_buf_consume(&b, 6);
    assert_string_equal(b.s, "line2\n");
    kx_buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.s, "");
    kx_buf_str(&b, "again");
    kx_buf_clear(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.s, "");
    kx_buf_free(&b);
}

static void test_limit_refuses_without_changing(void **state)
{
    kx_buf b = KX_BUF_INIT;
    b.max = 8;
    assert_int_equal(kx_buf_str(&b, "12345"), KX_OK);
    assert_int_equal(kx_buf_str(&b, "6789"), KX_ERR_INVALID);
    assert_string_equal(b.s, "12345");
    assert_false(b.oom);
    assert_int_equal(kx_buf_printf(&b, "%s", "6789"), KX_ERR_INVALID);
    assert_int_equal(kx_buf_str(&b, "678"), KX_OK);
    assert_string_equal(b.s, "12345678");
    kx_buf_free(&b);
    assert_int_equal(b.max, 8);
}

static void test_oom_is_sticky(void **state)
{
    kx_buf b = KX_BUF_INIT;
    kx_buf_str(&b, "ok");
    assert_int_equal(kx_buf_reserve(&b, SIZE_MAX), KX_ERR_NOMEM);
    assert_true(b.oom);
    assert_int_equal(kx_buf_str(&b, "more"), KX_ERR_NOMEM);
    assert_string_equal(b.s, "ok");
    assert_null(kx_buf_take(&b));
    assert_null(b.s);
}

static void test_take(void **state)
{
    kx_buf b = KX_BUF_INIT;
    char *empty = kx_buf_take(&b);
    assert_non_null(empty);
    assert_string_equal(empty, "");
    free(empty);
    kx_buf_str(&b, "hello");
    char *s = kx_buf_take(&b);
    assert_string_equal(s, "hello");
    assert_null(b.s);
    assert_int_equal(b.len, 0);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_and_stays_terminated),
        cmocka_unit_test(test_binary_and_empty_appends),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_consume_and_clear),
        cmocka_unit_test(test_limit_refuses_without_changing),
        cmocka_unit_test(test_oom_is_sticky),
        cmocka_unit_test(test_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
