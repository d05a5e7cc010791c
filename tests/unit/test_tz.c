/* test_tz.c — kx_tz (common/src/tz.c) and kx_cron_next_tz (common/src/cron.c): zone offsets
 * from Debian's TZif files and from POSIX rules, checked against the C library's localtime_r
 * from 1900 to 2100 (past 2037 the files' footers decide) and at every transition; wall-clock
 * times that occur twice or not at all; names that must not leave the zone directory; zones
 * read from memory (kx_tz_parse), whole and cut short; cron expressions read on a zone's wall
 * clock across its clock changes; and kx_cron_next_fire's answers and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kx/cron.h"
#include "kx/file.h"
#include "kx/time.h"
#include "kx/tz.h"

/* "YYYY-MM-DD HH:MM" of a wall clock as seconds since 1970-01-01 00:00 of that clock. */
static int64_t wall_of(const char *s)
{
    int y = 0, mo = 0, d = 0, h = 0, mi = 0;
    assert_int_equal(sscanf(s, "%d-%d-%d %d:%d", &y, &mo, &d, &h, &mi), 5); /* NOLINT */
    return kx_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

/* The C library's offset of zone (a TZ value) at t. */
static long libc_offset(const char *zone, int64_t t)
{
    static char current[300];
    if (strcmp(current, zone) != 0) {
        snprintf(current, sizeof current, "%s", zone);
        assert_int_equal(setenv("TZ", zone, 1), 0);
        tzset();
    }
    time_t tt = (time_t)t;
    struct tm tm;
    assert_non_null(localtime_r(&tt, &tm));
    return tm.tm_gmtoff;
}

/* kx_tz against the C library every 11 hours from `from` to 2100 and at each second where
 * kx_tz's offset changes (and the one before); wall clock and back for every fifth instant. */
static void compare(const kx_tz *tz, const char *libc_zone, int64_t from)
{
    int64_t to = 4102444800LL; /* 2100 */
    int32_t prev = kx_tz_offset(tz, from);
    size_t changes = 0;
    for (int64_t t = from; t < to; t += 11 * 3600) {
        int32_t o = kx_tz_offset(tz, t);
        if (o != libc_offset(libc_zone, t))
            fail_msg("%s at %lld: %d, the C library %ld", libc_zone, (long long)t, o,
                     libc_offset(libc_zone, t));
        if (o != prev) { /* the change is within the last 11 hours: find it to the second */
            changes++;
            int64_t lo = t - 11 * 3600, hi = t; /* offset(lo) == prev, offset(hi) == o */
            while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                *(kx_tz_offset(tz, mid) == prev ? &lo : &hi) = mid;
            }
            if (libc_offset(libc_zone, lo) != prev || libc_offset(libc_zone, hi) != o)
                fail_msg("%s: a change at %lld from %d to %d; the C library: %ld, %ld", libc_zone,
                         (long long)hi, prev, o, libc_offset(libc_zone, lo),
                         libc_offset(libc_zone, hi));
        }
        prev = o;
        if ((t - from) % (55 * 3600) != 0)
            continue;
        int64_t back[2];
        int n = kx_tz_to_utc(tz, t + o, back);
        assert_true(n >= 1 && n <= 2);
        assert_true(back[0] == t || (n == 2 && back[1] == t));
    }
    print_message("[ tz       ] %s: %zu clock changes 1900-2100 as the C library has them\n",
                  libc_zone, changes);
}

static void test_zones_match_the_c_library(void **state)
{
    (void)state;
    const char *zones[] = {
        "Europe/Berlin",     "America/New_York", "Australia/Sydney",  "Australia/Lord_Howe",
        "Asia/Kolkata",      "Pacific/Chatham",  "America/Sao_Paulo", "Europe/Dublin",
        "Africa/Casablanca", "Antarctica/Troll", "America/St_Johns",  "Etc/GMT+5",
    };
    for (size_t i = 0; i < sizeof zones / sizeof zones[0]; i++) {
        kx_tz *tz = NULL;
        char why[200] = "";
        if (kx_tz_load(zones[i], &tz, why, sizeof why) != KX_OK)
            fail_msg("%s: %s", zones[i], why);
        char libc_zone[100];
        snprintf(libc_zone, sizeof libc_zone, ":%s", zones[i]);
        compare(tz, libc_zone, -2208988800LL); /* 1900 */
        kx_tz_free(tz);
    }
}

/* POSIX rules alone (a TZif footer; what a slim file has for every year after its last
 * listed change): northern, southern, negative DST (Dublin), half-hour DST, Jn and n days,
 * times past 24 h (RFC 8536), all-year DST. */
static void test_rules_match_the_c_library(void **state)
{
    (void)state;
    const char *rules[] = {
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "EST5EDT,M3.2.0,M11.1.0",
        "AEST-10AEDT,M10.1.0,M4.1.0/3",
        "IST-1GMT0,M10.5.0,M3.5.0/1",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
        "NST3:30NDT,M3.2.0,M11.1.0",
        "XXX3YYY,J60/2,J300/2",
        "XXX3YYY,59/2,299/2",
        "<-03>3<-02>,M3.5.0/-2,M10.5.0/-1",
        "<+0330>-3:30",
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        kx_tz *tz = NULL;
        char why[200] = "";
        if (kx_tz_from_rule(rules[i], &tz, why, sizeof why) != KX_OK)
            fail_msg("%s: %s", rules[i], why);
        compare(tz, rules[i], 0); /* a footer is for times after a file's last change */
        kx_tz_free(tz);
    }
}

/* All-year DST (RFC 8536 3.3.1's example): at every instant, the turn of the year included
 * (where the C library reads the rule of the UTC year and says EST). */
static void test_all_year_dst(void **state)
{
    (void)state;
    kx_tz *tz = NULL;
    assert_int_equal(kx_tz_from_rule("EST5EDT,0/0,J365/25", &tz, NULL, 0), KX_OK);
    for (int64_t t = 0; t < 4102444800LL; t += 86400 * 7 + 3599)
        assert_int_equal(kx_tz_offset(tz, t), -4 * 3600);
    assert_int_equal(kx_tz_offset(tz, wall_of("2027-01-01 00:00")), -4 * 3600);
    assert_int_equal(kx_tz_offset(tz, wall_of("2026-12-31 23:59")), -4 * 3600);
    assert_int_equal(kx_tz_offset(tz, wall_of("2027-01-01 05:00")), -4 * 3600);
    kx_tz_free(tz);
}

static void test_wall_clock_to_utc(void **state)
{
    (void)state;
    kx_tz *tz = NULL;
    assert_int_equal(kx_tz_load("Europe/Berlin", &tz, NULL, 0), KX_OK);
    int64_t at[2];
    /* 2026-03-29: 02:00 CET became 03:00 CEST; 02:30 does not occur: 03:30 CEST */
    assert_int_equal(kx_tz_to_utc(tz, wall_of("2026-03-29 02:30"), at), 1);
    assert_int_equal(at[0], wall_of("2026-03-29 01:30"));
    /* 2026-10-25: 03:00 CEST became 02:00 CET; 02:30 occurs twice */
    assert_int_equal(kx_tz_to_utc(tz, wall_of("2026-10-25 02:30"), at), 2);
    assert_int_equal(at[0], wall_of("2026-10-25 00:30"));
    assert_int_equal(at[1], wall_of("2026-10-25 01:30"));
    assert_int_equal(kx_tz_to_utc(tz, wall_of("2026-07-01 12:00"), at), 1);
    assert_int_equal(at[0], wall_of("2026-07-01 10:00"));
    kx_tz_free(tz);
}

static void test_names(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "/etc/passwd",
                         "../../etc/passwd",
                         "Europe/../../etc/shadow",
                         ".hidden",
                         "Europe//Berlin",
                         "Europe/Berlin/",
                         "Europe/Ber lin",
                         "Europe/Ber\nlin",
                         "a-name-longer-than-sixty-four-bytes-is-never-a-zone-name-at-all-x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kx_tz *tz = NULL;
        char why[200] = "";
        assert_int_equal(kx_tz_load(bad[i], &tz, why, sizeof why), KX_ERR_INVALID);
        assert_null(tz);
        assert_non_null(strstr(why, "is not a time zone name"));
    }
    kx_tz *tz = NULL;
    char why[200] = "";
    assert_int_equal(kx_tz_load("Mars/Olympus_Mons", &tz, why, sizeof why), KX_ERR_NOT_FOUND);
    assert_string_equal(why, "unknown time zone 'Mars/Olympus_Mons'");
    assert_int_equal(kx_tz_load("America", &tz, why, sizeof why), KX_ERR_NOT_FOUND); /* a dir */
    /* files that are not zones, in a zone directory of our own (KX_ZONEINFO_DIR) */
    char dir[] = "/tmp/kx-tz-XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* a version 1 TZif with one type (UTC) and one leap second record */
    unsigned char leap[62] = {'T', 'Z', 'i', 'f'};
    leap[31] = 1; /* leapcnt */
    leap[39] = 1; /* typecnt */
    leap[43] = 4; /* charcnt */
    memcpy(leap + 50, "UTC", 4);
    const struct {
        const char *name;
        const void *bytes;
        size_t len;
        const char *why;
    } files[] = {
        {"Leap", leap, sizeof leap, "leap seconds"},
        {"Short", leap, 50, "a truncated TZif file"},
        {"Text", "# zone1970.tab\n", 15, "not a TZif file"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[300];
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(files[i].bytes, 1, files[i].len, f), files[i].len);
        assert_int_equal(fclose(f), 0);
    }
    assert_int_equal(setenv("KX_ZONEINFO_DIR", dir, 1), 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        assert_int_equal(kx_tz_load(files[i].name, &tz, why, sizeof why), KX_ERR_INVALID);
        if (strstr(why, files[i].why) == NULL)
            fail_msg("%s: \"%s\", want \"%s\"", files[i].name, why, files[i].why);
        char path[300];
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        assert_int_equal(unlink(path), 0);
    }
    assert_int_equal(kx_tz_load("Europe/Berlin", &tz, why, sizeof why), KX_ERR_NOT_FOUND);
    assert_int_equal(unsetenv("KX_ZONEINFO_DIR"), 0);
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(kx_tz_load("UTC", &tz, why, sizeof why), KX_OK);
    assert_int_equal(kx_tz_offset(tz, 1780000000), 0);
    kx_tz_free(tz);
    const char *bad_rules[] = {"",
                               "CET",
                               "CET-1CEST",
                               "CET-25",
                               "CET-1CEST,M13.1.0,M10.5.0",
                               "CET-1CEST,M3.5.0",
                               "CET-1CEST,M3.5.0,M10.5.0/168",
                               "C-1"};
    for (size_t i = 0; i < sizeof bad_rules / sizeof bad_rules[0]; i++) {
        assert_int_equal(kx_tz_from_rule(bad_rules[i], &tz, why, sizeof why), KX_ERR_INVALID);
        assert_null(tz);
    }
}

/* kx_tz_parse on a zone file's bytes: the zone kx_tz_load reads from the file, bytes after the
 * footer ignored; every shorter prefix (a file cut anywhere, the footer's last newline
 * included) refused with a reason. Each prefix is an exact-size copy, so an ASan build sees a
 * read past it. */
static void test_parse_from_memory(void **state)
{
    (void)state;
    char *file = NULL;
    size_t len = 0;
    assert_int_equal(kx_file_read("/usr/share/zoneinfo/Europe/Berlin", KX_TZ_FILE_MAX, &file,
                                  &len),
                     KX_OK);
    kx_tz *loaded = NULL, *parsed = NULL, *padded = NULL;
    assert_int_equal(kx_tz_load("Europe/Berlin", &loaded, NULL, 0), KX_OK);
    assert_int_equal(kx_tz_parse((const unsigned char *)file, len, &parsed, NULL, 0), KX_OK);
    unsigned char *more = malloc(len + 5);
    assert_non_null(more);
    memcpy(more, file, len);
    static const unsigned char junk[5] = {'j', 'u', 'n', 'k', '\n'};
    memcpy(more + len, junk, sizeof junk);
    assert_int_equal(kx_tz_parse(more, len + 5, &padded, NULL, 0), KX_OK);
    free(more);
    for (int64_t t = -2208988800LL; t < 4102444800LL; t += 86400 * 5 + 3607) {
        assert_int_equal(kx_tz_offset(parsed, t), kx_tz_offset(loaded, t));
        assert_int_equal(kx_tz_offset(padded, t), kx_tz_offset(loaded, t));
    }
    kx_tz_free(loaded);
    kx_tz_free(parsed);
    kx_tz_free(padded);
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *part = malloc(cut ? cut : 1);
        assert_non_null(part);
        memcpy(part, file, cut);
        kx_tz *tz = NULL;
        char why[200] = "";
        if (kx_tz_parse(part, cut, &tz, why, sizeof why) != KX_ERR_INVALID)
            fail_msg("Europe/Berlin cut to %zu of %zu bytes was read", cut, len);
        assert_null(tz);
        assert_true(why[0] != '\0');
        free(part);
    }
    free(file);
}

/* The ends of int64 (signed overflows the fuzz target found as it was written). After a zone's
 * last change its rule decides, and a rule repeats every 400 years (146097 days, whole weeks):
 * the offset at any instant is the C library's that many cycles nearer 1970. A wall-clock time
 * beyond KX_TZ_WALL_MAX is read as that bound. */
static void test_ends_of_time(void **state)
{
    (void)state;
    const int64_t cycle = 146097LL * 86400;
    const char *rule = "CET-1CEST,M3.5.0,M10.5.0/3";
    kx_tz *file = NULL, *alone = NULL;
    assert_int_equal(kx_tz_load("Europe/Berlin", &file, NULL, 0), KX_OK);
    assert_int_equal(kx_tz_from_rule(rule, &alone, NULL, 0), KX_OK);
    for (int64_t k = 0; k < 12; k++) { /* a month apart: summer and winter */
        int64_t hi = INT64_MAX - k * 30 * 86400, lo = INT64_MIN + k * 30 * 86400;
        long want_hi = libc_offset(rule, hi % cycle),
             want_lo = libc_offset(rule, lo % cycle + cycle);
        if (kx_tz_offset(file, hi) != want_hi || kx_tz_offset(alone, hi) != want_hi ||
            kx_tz_offset(alone, lo) != want_lo)
            fail_msg("at INT64_MAX - %lld months: %d and %d, want %ld; at INT64_MIN + %lld: %d, "
                     "want %ld",
                     (long long)k, kx_tz_offset(file, hi), kx_tz_offset(alone, hi), want_hi,
                     (long long)k, kx_tz_offset(alone, lo), want_lo);
    }
    const int64_t walls[] = {INT64_MIN, INT64_MIN + 1, -KX_TZ_WALL_MAX - 1, INT64_MAX - 1,
                             INT64_MAX};
    const kx_tz *zones[] = {file, alone};
    for (size_t z = 0; z < 2; z++)
        for (size_t i = 0; i < sizeof walls / sizeof walls[0]; i++) {
            int64_t at[2] = {0, 0}, bound = walls[i] < 0 ? -KX_TZ_WALL_MAX : KX_TZ_WALL_MAX;
            int n = kx_tz_to_utc(zones[z], walls[i], at);
            assert_true(n == 1 || n == 2);
            for (int k = 0; k < n; k++)
                if (at[k] < bound - 26 * 3600 || at[k] > bound + 26 * 3600)
                    fail_msg("zone %zu: wall %lld read as %lld", z, (long long)walls[i],
                             (long long)at[k]);
        }
    kx_tz_free(file);
    kx_tz_free(alone);
}

/* "30 2 * * *" in Europe/Berlin over both clock changes of 2026, and every fire of
 * "*\/30 * * * *" through a year: strictly increasing, each on a matching wall-clock minute,
 * no wall-clock time twice. */
static void test_cron_on_a_wall_clock(void **state)
{
    (void)state;
    kx_tz *tz = NULL;
    assert_int_equal(kx_tz_load("Europe/Berlin", &tz, NULL, 0), KX_OK);
    kx_cron c;
    assert_int_equal(kx_cron_parse("30 2 * * *", &c, NULL, 0), KX_OK);
    int64_t next = 0;
    assert_int_equal(kx_cron_next_tz(&c, tz, wall_of("2026-03-28 12:00"), &next), KX_OK);
    assert_int_equal(next, wall_of("2026-03-29 01:30")); /* 03:30 CEST: 02:30 does not occur */
    assert_int_equal(kx_cron_next_tz(&c, tz, next, &next), KX_OK);
    assert_int_equal(next, wall_of("2026-03-30 00:30")); /* 02:30 CEST */
    assert_int_equal(kx_cron_next_tz(&c, tz, wall_of("2026-10-24 12:00"), &next), KX_OK);
    assert_int_equal(next, wall_of("2026-10-25 00:30")); /* 02:30 CEST, the first one */
    assert_int_equal(kx_cron_next_tz(&c, tz, next, &next), KX_OK);
    assert_int_equal(next, wall_of("2026-10-26 01:30")); /* not 02:30 CET: once a day */
    assert_int_equal(kx_cron_next_tz(&c, NULL, wall_of("2026-10-24 12:00"), &next), KX_OK);
    assert_int_equal(next, wall_of("2026-10-25 02:30")); /* NULL: UTC */

    kx_tz *ny = NULL;
    assert_int_equal(kx_tz_load("America/New_York", &ny, NULL, 0), KX_OK);
    assert_int_equal(kx_cron_parse("0 9 * * 1-5", &c, NULL, 0), KX_OK);
    assert_int_equal(kx_cron_next_tz(&c, ny, wall_of("2026-07-04 00:00"), &next), KX_OK);
    assert_int_equal(next, wall_of("2026-07-06 13:00")); /* Monday 09:00 EDT */
    assert_int_equal(kx_cron_next_tz(&c, ny, wall_of("2026-12-05 00:00"), &next), KX_OK);
    assert_int_equal(next, wall_of("2026-12-07 14:00")); /* Monday 09:00 EST */
    kx_tz_free(ny);

    assert_int_equal(kx_cron_parse("*/30 * * * *", &c, NULL, 0), KX_OK);
    int64_t t = wall_of("2026-01-01 00:00"), last_wall = -1;
    size_t fires = 0;
    while (t < wall_of("2027-01-01 00:00")) {
        int64_t n = 0;
        assert_int_equal(kx_cron_next_tz(&c, tz, t, &n), KX_OK);
        assert_true(n > t);
        int64_t w = n + kx_tz_offset(tz, n);
        assert_int_equal(w % 1800, 0);
        assert_true(w > last_wall); /* a wall-clock time never fires twice */
        last_wall = w;
        t = n;
        fires++;
    }
    /* a year of half hours, less the spring-forward hour's two (moved onto 03:00 and 03:30,
     * which then fire once), less the fall-back hour's repeat */
    print_message("[ cron     ] */30 in Europe/Berlin over 2026: %zu fires\n", fires);
    assert_int_equal(fires, 365 * 48 - 2);
    kx_tz_free(tz);
}

/* kx_cron_next_fire: expression and zone name to next fire, and its three kinds of error (the
 * expression, the zone, the zone database), each with the reason its callers pass on. */
static void test_next_fire(void **state)
{
    (void)state;
    int64_t next = -1;
    char why[200] = "";
    assert_int_equal(kx_cron_next_fire("30 2 * * *", "Europe/Berlin", wall_of("2026-03-28 12:00"),
                                       &next, why, sizeof why),
                     KX_OK);
    assert_int_equal(next, wall_of("2026-03-29 01:30")); /* 03:30 CEST: 02:30 does not occur */
    assert_int_equal(kx_cron_next_fire("30 2 * * *", NULL, wall_of("2026-03-28 12:00"), &next, why,
                                       sizeof why),
                     KX_OK);
    assert_int_equal(next, wall_of("2026-03-29 02:30")); /* NULL: UTC */
    assert_int_equal(kx_cron_next_fire("30 2 * * *", "UTC", wall_of("2026-03-28 12:00"), &next,
                                       NULL, 0),
                     KX_OK);
    assert_int_equal(next, wall_of("2026-03-29 02:30"));
    /* fires no more: 0, not an error (the gateway's 400, the scheduler's last fire) */
    next = -1;
    assert_int_equal(kx_cron_next_fire("0 0 30 2 *", "Europe/Berlin", 0, &next, NULL, 0), KX_OK);
    assert_int_equal(next, 0);
    next = -1;
    assert_int_equal(kx_cron_next_fire("@daily", "UTC", -1, &next, NULL, 0), KX_OK);
    assert_int_equal(next, 0);

    /* the expression first, with kx_cron_parse's reason; the zone is not looked at */
    char want[200] = "";
    kx_cron c;
    assert_int_equal(kx_cron_parse("0 24 * * *", &c, want, sizeof want), KX_ERR_INVALID);
    next = -1;
    assert_int_equal(kx_cron_next_fire("0 24 * * *", "Mars/Olympus_Mons", 0, &next, why,
                                       sizeof why),
                     KX_ERR_INVALID);
    assert_string_equal(why, want);
    assert_int_equal(next, 0);
    assert_int_equal(kx_cron_next_fire(NULL, "UTC", 0, &next, why, sizeof why), KX_ERR_INVALID);

    /* the zone: no such zone, not a name, not a zone file: all KX_ERR_NOT_FOUND */
    assert_int_equal(kx_cron_next_fire("@daily", "Mars/Olympus_Mons", 0, &next, why, sizeof why),
                     KX_ERR_NOT_FOUND);
    assert_string_equal(why, "unknown time zone 'Mars/Olympus_Mons'");
    assert_int_equal(kx_cron_next_fire("@daily", "../etc/passwd", 0, &next, why, sizeof why),
                     KX_ERR_NOT_FOUND);
    assert_non_null(strstr(why, "is not a time zone name"));
    char dir[] = "/tmp/kx-tz-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char text[300], loop[300];
    snprintf(text, sizeof text, "%s/Text", dir);
    snprintf(loop, sizeof loop, "%s/Loop", dir);
    FILE *f = fopen(text, "wb");
    assert_non_null(f);
    assert_int_equal(fputs("# zone1970.tab\n", f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(symlink("Loop", loop), 0); /* opening it fails (ELOOP): an I/O error */
    assert_int_equal(setenv("KX_ZONEINFO_DIR", dir, 1), 0);
    assert_int_equal(kx_cron_next_fire("@daily", "Text", 0, &next, why, sizeof why),
                     KX_ERR_NOT_FOUND);
    assert_non_null(strstr(why, "not a TZif file"));

    /* the database: anything else, here an I/O error */
    next = -1;
    kx_err err = kx_cron_next_fire("@daily", "Loop", 0, &next, why, sizeof why);
    assert_true(err != KX_OK && err != KX_ERR_INVALID && err != KX_ERR_NOT_FOUND);
    assert_non_null(strstr(why, "time zone 'Loop' could not be read"));
    assert_int_equal(next, 0);
    assert_int_equal(unsetenv("KX_ZONEINFO_DIR"), 0);
    assert_int_equal(unlink(text), 0);
    assert_int_equal(unlink(loop), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zones_match_the_c_library),
        cmocka_unit_test(test_rules_match_the_c_library),
        cmocka_unit_test(test_all_year_dst),
        cmocka_unit_test(test_wall_clock_to_utc),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_parse_from_memory),
        cmocka_unit_test(test_ends_of_time),
        cmocka_unit_test(test_cron_on_a_wall_clock),
        cmocka_unit_test(test_next_fire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
