/* test_sandbox_broker_daytona.c — the daytona provider's pure pieces: query escaping of
 * workspace paths and labels (daytona_http.c) and Daytona's ISO 8601 times (daytona.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "daytona.h"

static void test_escape(void **state)
{
    (void)state;
    char out[128];
    sb_dt_escape("/workspace/a b/c.txt", out, sizeof out);
    assert_string_equal(out, "/workspace/a%20b/c.txt");
    sb_dt_escape("{\"id\":\"x\"}", out, sizeof out);
    assert_string_equal(out, "%7B%22id%22%3A%22x%22%7D");
    sb_dt_escape("a&b=c?d#e%", out, sizeof out);
    assert_string_equal(out, "a%26b%3Dc%3Fd%23e%25");
    sb_dt_escape("\xc3\xa9", out, sizeof out); /* UTF-8 bytes one by one */
    assert_string_equal(out, "%C3%A9");
    sb_dt_escape("-_.~", out, sizeof out);
    assert_string_equal(out, "-_.~");
    /* a small buffer: cut, never a partial %XX, always terminated */
    char small[6];
    sb_dt_escape("     ", small, sizeof small);
    assert_string_equal(small, "%20");
}

static void test_iso_ms(void **state)
{
    (void)state;
    assert_int_equal(sb_dt_iso_ms("1970-01-01T00:00:01Z"), 1000);
    assert_int_equal(sb_dt_iso_ms("2025-06-01T10:00:00.123Z"), 1748772000123LL);
    assert_int_equal(sb_dt_iso_ms("2025-06-01T10:00:00Z"), 1748772000000LL);
    assert_int_equal(sb_dt_iso_ms("2025-06-01T10:00:00.5Z"), 1748772000500LL); /* not 5 */
    assert_int_equal(sb_dt_iso_ms("2025-06-01T10:00:00.123456Z"), 1748772000123LL);
    assert_int_equal(sb_dt_iso_ms("not a time"), 0);
    assert_int_equal(sb_dt_iso_ms(""), 0);
    assert_int_equal(sb_dt_iso_ms(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_iso_ms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
