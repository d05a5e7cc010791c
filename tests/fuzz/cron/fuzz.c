/* fuzz.c — the cron expression parser and next-fire search of libkx (common/src/cron.c): the
 * cron_expression of POST /api/triggers, and what the scheduler reads back from run_triggers.
 *
 * Input: a cron expression, optionally followed by "\n" and a decimal unix time to search
 * after (default 2026-01-01). Properties:
 *   - a refusal is KX_ERR_INVALID with a non-empty reason;
 *   - an accepted expression matches something in every field, and only values in range;
 *   - blanks around it change nothing;
 *   - a next fire time is a whole minute strictly after `after` at which the expression fires
 *     (checked with the C library's gmtime_r), and no minute in the first two days between
 *     them fires; "not found" only for expressions with no matching day at all in the next
 *     KX_CRON_HORIZON_YEARS (checked by a day-by-day search). */
#include <time.h>

#include "fuzz_util.h"
#include "kx/cron.h"

static bool fires_at(const kx_cron *c, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    FUZZ_CHECK(gmtime_r(&tt, &tm) != NULL);
    bool dom = (c->dom >> tm.tm_mday) & 1u, dow = (c->dow >> tm.tm_wday) & 1u;
    bool day = (c->dom_star || c->dow_star) ? (dom && dow) : (dom || dow);
    return ((c->minute >> tm.tm_min) & 1u) && ((c->hour >> tm.tm_hour) & 1u) &&
        ((c->month >> (tm.tm_mon + 1)) & 1u) && day;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    int64_t after = 1767225600;
    char *nl = strchr(text, '\n');
    if (nl != NULL) {
        *nl = '\0';
        after = strtoll(nl + 1, NULL, 10);
    }
    kx_cron c;
    char why[200];
    kx_err err = kx_cron_parse(text, &c, why, sizeof why);
    if (err != KX_OK) {
        FUZZ_CHECK(err == KX_ERR_INVALID && why[0] != '\0');
        free(text);
        return 0;
    }
    FUZZ_CHECK(c.minute != 0 && (c.minute >> 60) == 0);
    FUZZ_CHECK(c.hour != 0 && (c.hour >> 24) == 0);
    FUZZ_CHECK(c.dom != 0 && (c.dom & 1u) == 0);
    FUZZ_CHECK(c.month != 0 && (c.month & 1u) == 0 && (c.month >> 13) == 0);
    FUZZ_CHECK(c.dow != 0 && (c.dow >> 7) == 0);

    if (strlen(text) + 4 <= KX_CRON_MAX_LEN) { /* blanks around it change nothing */
        char padded[KX_CRON_MAX_LEN + 8];
        snprintf(padded, sizeof padded, " \t%s  ", text);
        kx_cron c2;
        FUZZ_CHECK(kx_cron_parse(padded, &c2, NULL, 0) == KX_OK);
        FUZZ_CHECK(c.minute == c2.minute && c.hour == c2.hour && c.dom == c2.dom &&
                   c.month == c2.month && c.dow == c2.dow && c.dom_star == c2.dom_star &&
                   c.dow_star == c2.dow_star);
    }

    int64_t next = 0;
    err = kx_cron_next(&c, after, &next);
    if (after < 0 || after > KX_CRON_MAX_TIME) {
        FUZZ_CHECK(err == KX_ERR_INVALID);
    } else if (err == KX_OK) {
        FUZZ_CHECK(next > after && next % 60 == 0);
        FUZZ_CHECK(fires_at(&c, next));
        int64_t first = after / 60 * 60 + 60;
        for (int64_t t = first; t < next && t < first + 2 * 86400; t += 60)
            FUZZ_CHECK(!fires_at(&c, t));
    } else {
        FUZZ_CHECK(err == KX_ERR_NOT_FOUND);
        /* no day within the horizon matches month and day fields (hours always exist) */
        int64_t day0 = after / 86400 + 1;
        for (int64_t d = day0; d < day0 + 365 * (KX_CRON_HORIZON_YEARS - 1); d++) {
            time_t tt = (time_t)(d * 86400);
            struct tm tm;
            FUZZ_CHECK(gmtime_r(&tt, &tm) != NULL);
            bool dom = (c.dom >> tm.tm_mday) & 1u, dow = (c.dow >> tm.tm_wday) & 1u;
            bool day = (c.dom_star || c.dow_star) ? (dom && dow) : (dom || dow);
            FUZZ_CHECK(!(((c.month >> (tm.tm_mon + 1)) & 1u) && day));
        }
    }
    free(text);
    return 0;
}
