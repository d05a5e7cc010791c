/* test_utf8.c — libkx's UTF-8 check, in-place repair and repairing copy (common/src/utf8.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
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

static void expect_sanitized(const char *in, size_t len, const char *want)
{
    size_t out_len = 0;
    char *out = kx_utf8_sanitize(in, len, &out_len);
    assert_non_null(out);
    assert_int_equal(out_len, strlen(want));
    assert_memory_equal(out, want, out_len);
    assert_true(kx_utf8_valid(out, out_len));
    free(out);
}

#define FFFD "\xef\xbf\xbd"

static void test_sanitize(void **state)
{
    assert_true(kx_utf8_valid("hello", 5));
    const char *mixed = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    assert_true(kx_utf8_valid(mixed, strlen(mixed)));
    assert_false(kx_utf8_valid("\xc3", 1));             /* cut in half */
    assert_false(kx_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    assert_false(kx_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(kx_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    assert_false(kx_utf8_valid("\xff", 1));

    expect_sanitized("plain text\n", 11, "plain text\n");
    expect_sanitized("caf\xc3\xa9", 5, "caf\xc3\xa9");
    expect_sanitized("ab\xc3", 3, "ab" FFFD); /* the cap cut a character */
    expect_sanitized("\xff\xfe"
                     "x",
                     3, FFFD FFFD "x");
    expect_sanitized("a\0b", 3, "a" FFFD "b"); /* NUL would end the string */
    expect_sanitized("\xe2\x82", 2, FFFD FFFD);
    expect_sanitized("", 0, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scrub),
        cmocka_unit_test(test_seq_len),
        cmocka_unit_test(test_sanitize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
