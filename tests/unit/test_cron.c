/* test_cron.c — kx_cron (common/src/cron.c): the 5-field syntax (ranges, steps, lists, names,
 * macros), its error messages, the day-of-month/day-of-week rule, and next fire times, checked
 * against known dates and against a minute-by-minute search with the C library's gmtime_r. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kx/cron.h"

/* "YYYY-MM-DD HH:MM" (UTC) as unix seconds. */
static int64_t at(const char *s)
{
    int v[5];
    const char *p = s;
    for (int i = 0; i < 5; i++) {
        char *end = NULL;
        v[i] = (int)strtol(p, &end, 10);
        assert_true(end != p && (i == 4 ? *end == '\0' : *end == "-- :"[i]));
        p = end + 1;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    return (int64_t)timegm(&tm);
}

static kx_cron parse_ok(const char *expr)
{
    kx_cron c;
    char why[200];
    kx_err err = kx_cron_parse(expr, &c, why, sizeof why);
    if (err != KX_OK)
        fail_msg("\"%s\" refused: %s", expr, why);
    return c;
}

static void assert_refused(const char *expr, const char *needle)
{
    kx_cron c;
    char why[200];
    assert_int_equal(kx_cron_parse(expr, &c, why, sizeof why), KX_ERR_INVALID);
    if (strstr(why, needle) == NULL)
        fail_msg("\"%s\": why is \"%s\", want it to mention \"%s\"", expr, why, needle);
}

static void assert_next(const char *expr, const char *after, const char *want)
{
    kx_cron c = parse_ok(expr);
    int64_t next = 0;
    assert_int_equal(kx_cron_next(&c, at(after), &next), KX_OK);
    if (next != at(want)) {
        time_t t = (time_t)next;
        struct tm tm;
        gmtime_r(&t, &tm);
        fail_msg("\"%s\" after %s: got %04d-%02d-%02d %02d:%02d, want %s", expr, after,
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, want);
    }
}

/* The reference: does c fire at minute t? (by gmtime_r) */
static bool fires_at(const kx_cron *c, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    bool dom = (c->dom >> tm.tm_mday) & 1u, dow = (c->dow >> tm.tm_wday) & 1u;
    bool day = (c->dom_star || c->dow_star) ? (dom && dow) : (dom || dow);
    return ((c->minute >> tm.tm_min) & 1u) && ((c->hour >> tm.tm_hour) & 1u) &&
        ((c->month >> (tm.tm_mon + 1)) & 1u) && day;
}

static void test_fields_become_bit_sets(void **state)
{
    kx_cron c = parse_ok("*/15 9-17 1,15 * MON-FRI");
    assert_int_equal(c.minute, (1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45));
    assert_int_equal(c.hour, 0x3fe00u); /* 9..17 */
    assert_int_equal(c.dom, (1u << 1) | (1u << 15));
    assert_int_equal(c.month, 0x1ffeu); /* 1..12 */
    assert_int_equal(c.dow, 0x3eu);     /* 1..5 */
    assert_false(c.dom_star);
    assert_false(c.dow_star);

    c = parse_ok("  5/20\t0  * jan,Jul sun  ");
    assert_int_equal(c.minute, (1ull << 5) | (1ull << 25) | (1ull << 45));
    assert_int_equal(c.hour, 1u);
    assert_int_equal(c.month, (1u << 1) | (1u << 7));
    assert_int_equal(c.dow, 1u);
    assert_true(c.dom_star);

    /* 7 is Sunday too; 5-7 is Fri, Sat, Sun; ranges with steps */
    c = parse_ok("0 0 * * 7");
    assert_int_equal(c.dow, 1u);
    c = parse_ok("0 0 * * 5-7");
    assert_int_equal(c.dow, (1u << 5) | (1u << 6) | 1u);
    /* "V/N" runs to the field's end: for day-of-week that is 7, Sunday (the fuzzer found "7/6"
     * matching no day at all when the end was taken as 6) */
    c = parse_ok("0 0 * * 7/6");
    assert_int_equal(c.dow, 1u);
    c = parse_ok("0 0 * * 5/1");
    assert_int_equal(c.dow, (1u << 5) | (1u << 6) | 1u);
    c = parse_ok("10-50/20 */6 2-31/10 FEB-DEC/3 *");
    assert_int_equal(c.minute, (1ull << 10) | (1ull << 30) | (1ull << 50));
    assert_int_equal(c.hour, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
    assert_int_equal(c.dom, (1u << 2) | (1u << 12) | (1u << 22));
    assert_int_equal(c.month, (1u << 2) | (1u << 5) | (1u << 8) | (1u << 11));

    kx_cron m = parse_ok("@daily"), d = parse_ok("0 0 * * *");
    assert_memory_equal(&m, &d, sizeof m);
    m = parse_ok("@HOURLY");
    d = parse_ok("0 * * * *");
    assert_memory_equal(&m, &d, sizeof m);
    m = parse_ok("@weekly");
    assert_int_equal(m.dow, 1u);
}

static void test_bad_expressions_name_what_is_wrong(void **state)
{
    assert_refused("", "0 fields");
    assert_refused("* * * *", "4 fields");
    assert_refused("* * * * * *", "more than 5 fields");
    assert_refused("60 * * * *", "minute: 60 is out of range 0-59");
    assert_refused("* 24 * * *", "hour: 24 is out of range 0-23");
    assert_refused("* * 0 * *", "day-of-month: 0 is out of range 1-31");
    assert_refused("* * * 13 *", "month: 13 is out of range 1-12");
    assert_refused("* * * * 8", "day-of-week: 8 is out of range 0-7");
    assert_refused("5-1 * * * *", "minute: the range 5-1 runs backwards");
    assert_refused("*/0 * * * *", "minute: the step in \"*/0\" must be a number from 1 to 60");
    assert_refused("*/61 * * * *", "must be a number from 1 to 60");
    assert_refused("* * * * */8", "from 1 to 7");
    assert_refused("1,,2 * * * *", "minute: empty item");
    assert_refused("1, * * * *", "minute: empty item");
    assert_refused("* * * foo *", "month: \"foo\" is not a number or a 3-letter name");
    assert_refused("* * * * monday", "day-of-week: \"monday\" is not a number");
    assert_refused("mon * * * *", "minute: \"mon\" is not a number");
    assert_refused("1-2-3 * * * *", "minute: unexpected \"-3\"");
    assert_refused("*1 * * * *", "minute: unexpected \"1\"");
    assert_refused("1/2/3 * * * *", "unexpected \"/3\"");
    assert_refused("100 * * * *", "out of range");
    assert_refused("@reboot", "unknown macro");
    assert_refused("* * * * \x01", "not printable ASCII");
    char longer[KX_CRON_MAX_LEN + 10];
    memset(longer, '1', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_refused(longer, "longer than 256");
    kx_cron c;
    assert_int_equal(kx_cron_parse(NULL, &c, NULL, 0), KX_ERR_INVALID);
    assert_int_equal(kx_cron_parse("x", &c, NULL, 0), KX_ERR_INVALID); /* why may be NULL */
}

static void test_next_fire_times(void **state)
{
    assert_next("* * * * *", "2026-11-30 19:20", "2026-11-30 19:21");
    assert_next("*/5 * * * *", "2026-11-30 19:20", "2026-11-30 19:25");
    assert_next("0 * * * *", "2026-11-30 23:59", "2026-12-01 00:00");
    assert_next("30 9 * * MON-FRI", "2026-11-27 10:00", "2026-11-30 09:30"); /* Fri -> Mon */
    assert_next("0 0 1 1 *", "2026-06-15 12:00", "2027-01-01 00:00");
    assert_next("0 12 31 * *", "2026-11-01 00:00", "2026-12-31 12:00"); /* skips Nov (30 d) */
    assert_next("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00");  /* leap day */
    assert_next("0 0 29 2 *", "2096-03-01 00:00", "2104-02-29 00:00");  /* 2100 is not leap */
    assert_next("15 10 * * 0", "2026-11-30 00:00", "2026-12-06 10:15"); /* next Sunday */
    /* both day fields restricted: either matches (the 13th, or any Friday) */
    assert_next("0 0 13 * 5", "2026-11-30 00:00", "2026-12-04 00:00");
    assert_next("0 0 13 * 5", "2026-12-11 12:00", "2026-12-13 00:00");
    /* day-of-month "*" with a step still counts as "*": then both must match */
    assert_next("0 0 */2 * 1", "2026-11-30 00:00", "2026-12-07 00:00");
    /* the next minute, strictly after a time inside a matching minute */
    kx_cron c = parse_ok("* * * * *");
    int64_t next = 0;
    assert_int_equal(kx_cron_next(&c, at("2026-11-30 19:20") + 59, &next), KX_OK);
    assert_int_equal(next, at("2026-11-30 19:21"));
    assert_int_equal(kx_cron_next(&c, at("2026-11-30 19:20"), &next), KX_OK);
    assert_int_equal(next, at("2026-11-30 19:21"));
}

static void test_never_and_out_of_range(void **state)
{
    kx_cron c = parse_ok("0 0 30 2 *"); /* February 30th */
    int64_t next = 1;
    assert_int_equal(kx_cron_next(&c, at("2026-01-01 00:00"), &next), KX_ERR_NOT_FOUND);
    assert_int_equal(next, 0);
    c = parse_ok("0 0 31 4,6,9,11 *");
    assert_int_equal(kx_cron_next(&c, at("2026-01-01 00:00"), &next), KX_ERR_NOT_FOUND);
    c = parse_ok("* * * * *");
    assert_int_equal(kx_cron_next(&c, -1, &next), KX_ERR_INVALID);
    assert_int_equal(kx_cron_next(&c, KX_CRON_MAX_TIME + 1, &next), KX_ERR_INVALID);
    assert_int_equal(kx_cron_next(&c, 0, &next), KX_OK);
    assert_int_equal(next, 60);
    assert_int_equal(kx_cron_next(&c, KX_CRON_MAX_TIME, &next), KX_OK);
    assert_int_equal(next, KX_CRON_MAX_TIME + 1); /* 10000-01-01T00:00:00Z */
}

/* Against the reference: the answer fires, and no minute between `after` and it does. */
static void test_matches_a_minute_by_minute_search(void **state)
{
    static const char *const exprs[] = {
        "*/7 * * * *",      "0,30 8-18/2 * * 1-5", "59 23 * * *",      "0 0 1,15 * *",
        "15 3 * * sat,sun", "0 12 10-20 * 2",      "*/13 */5 */3 * *", "0 0 * 2 *",
        "5 4 31 * *",       "0 6 * jun-aug mon",   "@monthly",         "1-5/2 0 1 * 0",
    };
    unsigned seed = 12345;
    for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
        kx_cron c = parse_ok(exprs[i]);
        for (int k = 0; k < 20; k++) {
            seed = seed * 1103515245u + 12345u;
            /* a time in 2024..2031 */
            int64_t after = at("2024-01-01 00:00") + (int64_t)(seed % (8u * 365u * 86400u));
            int64_t next = 0;
            assert_int_equal(kx_cron_next(&c, after, &next), KX_OK);
            assert_true(next > after);
            assert_int_equal(next % 60, 0);
            if (!fires_at(&c, next))
                fail_msg("\"%s\": %lld does not fire", exprs[i], (long long)next);
            for (int64_t t = after / 60 * 60 + 60; t < next; t += 60)
                if (fires_at(&c, t))
                    fail_msg("\"%s\" after %lld: %lld fires before the answer %lld", exprs[i],
                             (long long)after, (long long)t, (long long)next);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_become_bit_sets),
        cmocka_unit_test(test_bad_expressions_name_what_is_wrong),
        cmocka_unit_test(test_next_fire_times),
        cmocka_unit_test(test_never_and_out_of_range),
        cmocka_unit_test(test_matches_a_minute_by_minute_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
