/* test_utf8.c — libkx's UTF-8 check and in-place repair (common/src/utf8.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kx/utf8.h"

static void test_scrub(void **state)
{
    char s[] = "ok \xc3\xa9 cut \xc3 bad \xff\xfe end \xf0\x9f\x98\x80";
    kx_utf8_scrub(s);
    assert_string_equal(s, "ok \xc3\xa9 cut ? bad ?? end \xf0\x9f\x98\x80");
    assert_true(kx_utf8_valid(s, strlen(s)));
    char t[] = "\xed\xa0\x80"; /* a surrogate: three bytes, none of them valid */
    kx_utf8_scrub(t);
    assert_string_equal(t, "???");
    assert_false(kx_utf8_valid("a\0b", 3));
    assert_false(kx_utf8_valid("\xc0\xaf", 2)); /* overlong '/' */
    assert_true(kx_utf8_valid("", 0));
}

static void test_seq_len(void **state)
{
    assert_int_equal(kx_utf8_seq_len((const unsigned char *)"a", 1), 1);
    assert_int_equal(kx_utf8_seq_len((const unsigned char *)"\xc3\xa9", 2), 2);
    assert_int_equal(kx_utf8_seq_len((const unsigned char *)"\xc3\xa9", 1), 0); /* cut */
    assert_int_equal(kx_utf8_seq_len((const unsigned char *)"\xe2\x82\xac", 3), 3);
    assert_int_equal(kx_utf8_seq_len((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
    assert_int_equal(kx_utf8_seq_len((const unsigned char *)"\xf4\x90\x80\x80", 4), 0);
    assert_int_equal(kx_utf8_seq_len((const unsigned char *)"\x80", 1), 0);
    assert_int_equal(kx_utf8_seq_len((const unsigned char *)"", 1), 0); /* NUL */
    assert_int_equal(kx_utf8_seq_len((const unsigned char *)"a", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scrub),
        cmocka_unit_test(test_seq_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
