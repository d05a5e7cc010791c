/* test_utf8.c — libkx's UTF-8 check, in-place repair, repairing copy and cut at a character
 * boundary (common/src/utf8.c). */
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

static void test_floor(void **state)
{
    /* n = 0 and n = len: always boundaries */
    assert_int_equal(kx_utf8_floor("abc", 3, 0), 0);
    assert_int_equal(kx_utf8_floor("abc", 3, 3), 3);
    assert_int_equal(kx_utf8_floor("abc", 3, 99), 3); /* past the end: the end */
    assert_int_equal(kx_utf8_floor("", 0, 0), 0);
    assert_int_equal(kx_utf8_floor(NULL, 0, 5), 0); /* nothing is read when n >= len */
    /* ASCII: every n is a boundary */
    for (size_t n = 0; n <= 5; n++)
        assert_int_equal(kx_utf8_floor("hello", 5, n), n);

    /* "a" é(2) "b" €(3) "c" 😀(4) "d": boundaries 0 1 3 4 7 8 12 13 */
    const char *s = "a\xc3\xa9"
                    "b\xe2\x82\xac"
                    "c\xf0\x9f\x98\x80"
                    "d";
    size_t len = strlen(s);
    assert_int_equal(len, 13);
    const size_t want[14] = {0, 1, 1, 3, 4, 4, 4, 7, 8, 8, 8, 8, 12, 13};
    for (size_t n = 0; n <= len; n++)
        assert_int_equal(kx_utf8_floor(s, len, n), want[n]);

    /* the byte at len is never read: a continuation byte there does not move a cut at len */
    assert_int_equal(kx_utf8_floor("ab\x80", 2, 2), 2);
    /* a cut inside a character at the end of a buffer without NUL */
    const char buf[3] = {'x', (char)0xe2, (char)0x82};
    assert_int_equal(kx_utf8_floor(buf, sizeof buf, 2), 1);

    /* stray continuation bytes at the start: no boundary before them but 0 */
    const char *stray = "\x80\x80\xbf"
                        "ab";
    assert_int_equal(kx_utf8_floor(stray, 5, 1), 0);
    assert_int_equal(kx_utf8_floor(stray, 5, 2), 0);
    assert_int_equal(kx_utf8_floor(stray, 5, 3), 3);
    assert_int_equal(kx_utf8_floor(stray, 5, 4), 4);
}

static void test_ceil(void **state)
{
    assert_int_equal(kx_utf8_ceil("abc", 3, 0), 0);
    assert_int_equal(kx_utf8_ceil("abc", 3, 3), 3);
    assert_int_equal(kx_utf8_ceil("abc", 3, 99), 3); /* past the end: the end */
    assert_int_equal(kx_utf8_ceil(NULL, 0, 0), 0);   /* nothing is read when n >= len */
    for (size_t n = 0; n <= 5; n++)
        assert_int_equal(kx_utf8_ceil("hello", 5, n), n);

    /* "a" é(2) "b" €(3) "c" 😀(4) "d": boundaries 0 1 3 4 7 8 12 13 */
    const char *s = "a\xc3\xa9"
                    "b\xe2\x82\xac"
                    "c\xf0\x9f\x98\x80"
                    "d";
    size_t len = strlen(s);
    const size_t want[14] = {0, 1, 3, 3, 4, 7, 7, 7, 8, 12, 12, 12, 12, 13};
    for (size_t n = 0; n <= len; n++)
        assert_int_equal(kx_utf8_ceil(s, len, n), want[n]);

    /* a character cut at the end of a buffer without NUL: the end */
    const char buf[3] = {'x', (char)0xe2, (char)0x82};
    assert_int_equal(kx_utf8_ceil(buf, sizeof buf, 2), 3);
    /* stray continuation bytes at the start: stepped over */
    const char *stray = "\x80\x80\xbf"
                        "ab";
    assert_int_equal(kx_utf8_ceil(stray, 5, 0), 3); /* unlike the floor, 0 is not special */
    assert_int_equal(kx_utf8_ceil(stray, 5, 1), 3);
    assert_int_equal(kx_utf8_ceil(stray, 5, 2), 3);
    assert_int_equal(kx_utf8_ceil("\x80\x80", 2, 1), 2); /* nothing but continuation bytes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scrub),    cmocka_unit_test(test_seq_len),
        cmocka_unit_test(test_sanitize), cmocka_unit_test(test_floor),
        cmocka_unit_test(test_ceil),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
