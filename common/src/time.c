/* time.c — wall and monotonic clocks, absolute deadlines (unix ms), absolute timespecs for
 * timed waits and ISO-8601 timestamps.
 * Deadlines are wall-clock so they can cross process boundaries in the Kx-Deadline header. */
#include <stddef.h> /* kx/time.h uses size_t */
#include <stdio.h>
#include <time.h>

#include "kx/time.h"

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts); /* cannot fail for these clock ids */
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t kx_now_us(void)
{
    return clock_us(CLOCK_REALTIME);
}
int64_t kx_now_ms(void)
{
    return clock_us(CLOCK_REALTIME) / 1000;
}
int64_t kx_mono_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}
int64_t kx_mono_ms(void)
{
    return clock_us(CLOCK_MONOTONIC) / 1000;
}

kx_deadline kx_deadline_in(int64_t ms)
{
    return kx_now_ms() + ms;
}

kx_deadline kx_deadline_min(kx_deadline a, kx_deadline b)
{
    if (a == KX_NO_DEADLINE)
        return b;
    if (b == KX_NO_DEADLINE)
        return a;
    return a < b ? a : b;
}

int64_t kx_deadline_remaining(kx_deadline d)
{
    if (d == KX_NO_DEADLINE)
        return INT64_MAX;
    return d - kx_now_ms();
}

bool kx_deadline_expired(kx_deadline d)
{
    return d != KX_NO_DEADLINE && kx_deadline_remaining(d) <= 0;
}

struct timespec kx_abs_timespec_in_ms(clockid_t clock, int64_t ms)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (ms % 1000) * 1000000;
    int64_t secs = (int64_t)ts.tv_sec + ms / 1000;
    if (ns >= 1000000000) { /* (ms % 1000 is negative for a negative ms) */
        secs++;
        ns -= 1000000000;
    } else if (ns < 0) {
        secs--;
        ns += 1000000000;
    }
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)ns;
    return ts;
}

void kx_time_iso(char *buf, size_t len, int64_t unix_us)
{
    if (buf == NULL || len == 0)
        return;
    time_t secs = (time_t)(unix_us / 1000000);
    long us = (long)(unix_us % 1000000);
    if (us < 0) { /* instants before 1970: keep the fraction positive */
        us += 1000000;
        secs -= 1;
    }
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(buf, len, "1970-01-01T00:00:00.000000+00:00");
        return;
    }
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld+00:00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us);
}

/* Howard Hinnant's days_from_civil / civil_from_days (public domain algorithms). */
int64_t kx_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                  /* [0, 399] */
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;          /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

void kx_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}
