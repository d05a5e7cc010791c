/* cron.c — the cron expression parser and next-fire-time search of kx/cron.h.
 *
 * Parsing turns each field into a bit set of the values it matches. The search walks the
 * calendar from the minute after `after`, skipping a whole month, day or hour at a time when
 * that unit does not match, so it costs at most a few thousand steps even for an expression
 * that never fires. Calendar arithmetic is proleptic Gregorian on day numbers (days since
 * 1970-01-01), independent of the C library's time zone functions. kx_cron_next_fire is the
 * step the gateway and the scheduler both take for a trigger (text and zone name to next fire),
 * here once so that they differ only in what they do with its three kinds of error. */
#include "kx/cron.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "kx/time.h"
#include "kx/tz.h"

/* ---- fields ---- */

typedef struct field_spec {
    const char *name;
    int min, max;
    const char *const *names; /* 3-letter names for min.., or NULL */
} field_spec;

static const char *const MONTHS[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const DAYS[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const field_spec FIELDS[5] = {
    {"minute", 0, 59, NULL},  {"hour", 0, 23, NULL},       {"day-of-month", 1, 31, NULL},
    {"month", 1, 12, MONTHS}, {"day-of-week", 0, 7, DAYS}, /* 7 is Sunday again */
};

/* A value at *p (digits, or a name of the field): advances *p. */
static bool parse_value(const field_spec *f, const char **p, const char *end, int *out, char *why,
                        size_t whylen)
{
    const char *s = *p;
    if (s < end && isdigit((unsigned char)*s)) {
        long v = 0;
        int digits = 0;
        while (s < end && isdigit((unsigned char)*s)) {
            if (++digits > 2) {
                kx_why(why, whylen, "%s: the number %.*s is out of range %d-%d", f->name,
                       (int)(end - *p), *p, f->min, f->max);
                return false;
            }
            v = v * 10 + (*s - '0');
            s++;
        }
        if (v < f->min || v > f->max) {
            kx_why(why, whylen, "%s: %ld is out of range %d-%d", f->name, v, f->min, f->max);
            return false;
        }
        *out = (int)v;
        *p = s;
        return true;
    }
    if (f->names != NULL && end - s >= 3 && isalpha((unsigned char)s[0])) {
        int n = f->max - f->min + 1;
        if (f->names == DAYS)
            n = 7;
        for (int i = 0; i < n; i++) {
            if (strncasecmp(s, f->names[i], 3) == 0 &&
                (end - s == 3 || !isalpha((unsigned char)s[3]))) {
                *out = f->min + i;
                *p = s + 3;
                return true;
            }
        }
    }
    kx_why(why, whylen, "%s: \"%.*s\" is not a %s", f->name, (int)(end - s > 16 ? 16 : end - s), s,
           f->names != NULL ? "number or a 3-letter name" : "number");
    return false;
}

/* One comma-free item [start, end) into *bits. */
static bool parse_item(const field_spec *f, const char *start, const char *end, uint64_t *bits,
                       char *why, size_t whylen)
{
    int lo = f->min, hi = f->max, step = 1;
    const char *p = start;
    if (p < end && *p == '*') {
        p++;
        if (f->max == 7) /* "*" in day-of-week is 0-6: 7 would only repeat Sunday */
            hi = 6;
    } else {
        if (!parse_value(f, &p, end, &lo, why, whylen))
            return false;
        hi = lo;
        if (p < end && *p == '-') {
            p++;
            if (!parse_value(f, &p, end, &hi, why, whylen))
                return false;
            if (hi < lo) {
                kx_why(why, whylen, "%s: the range %.*s runs backwards", f->name,
                       (int)(end - start), start);
                return false;
            }
        } else if (p < end && *p == '/') {
            hi = f->max; /* "V/N": from V to the end (day-of-week: to 7, Sunday) */
        }
    }
    if (p < end && *p == '/') {
        p++;
        int span = f->max == 7 ? 7 : f->max - f->min + 1;
        long v = 0;
        int digits = 0;
        while (p < end && isdigit((unsigned char)*p) && digits < 3) {
            v = v * 10 + (*p - '0');
            p++;
            digits++;
        }
        if (digits == 0 || (p < end && isdigit((unsigned char)*p)) || v < 1 || v > span) {
            kx_why(why, whylen, "%s: the step in \"%.*s\" must be a number from 1 to %d", f->name,
                   (int)(end - start), start, span);
            return false;
        }
        step = (int)v;
    }
    if (p != end) {
        kx_why(why, whylen, "%s: unexpected \"%.*s\" in \"%.*s\"", f->name, (int)(end - p), p,
               (int)(end - start), start);
        return false;
    }
    for (int v = lo; v <= hi; v += step)
        *bits |= UINT64_C(1) << (f->max == 7 && v == 7 ? 0 : v);
    return true;
}

static bool parse_field(const field_spec *f, const char *start, const char *end, uint64_t *bits,
                        char *why, size_t whylen)
{
    *bits = 0;
    const char *p = start;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma != NULL ? comma : end;
        if (item_end == p) {
            kx_why(why, whylen, "%s: empty item in \"%.*s\"", f->name, (int)(end - start), start);
            return false;
        }
        if (!parse_item(f, p, item_end, bits, why, whylen))
            return false;
        if (comma == NULL)
            return true;
        p = comma + 1;
    }
}

static const struct {
    const char *name, *expr;
} MACROS[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

kx_err kx_cron_parse(const char *expr, kx_cron *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (why != NULL && whylen > 0)
        why[0] = '\0';
    if (expr == NULL) {
        kx_why(why, whylen, "no cron expression");
        return KX_ERR_INVALID;
    }
    size_t len = strnlen(expr, KX_CRON_MAX_LEN + 1);
    if (len > KX_CRON_MAX_LEN) {
        kx_why(why, whylen, "the cron expression is longer than %d characters", KX_CRON_MAX_LEN);
        return KX_ERR_INVALID;
    }
    const char *s = expr, *e = expr + len;
    while (s < e && is_blank(*s))
        s++;
    while (e > s && is_blank(e[-1]))
        e--;
    if (s < e && *s == '@') {
        for (size_t i = 0; i < sizeof MACROS / sizeof MACROS[0]; i++) {
            size_t n = strlen(MACROS[i].name);
            if ((size_t)(e - s) == n && strncasecmp(s, MACROS[i].name, n) == 0)
                return kx_cron_parse(MACROS[i].expr, out, why, whylen);
        }
        kx_why(why, whylen,
               "unknown macro \"%.*s\" (use @yearly, @monthly, @weekly, @daily or "
               "@hourly)",
               (int)(e - s > 16 ? 16 : e - s), s);
        return KX_ERR_INVALID;
    }
    uint64_t bits[5];
    bool star[5];
    int n = 0;
    const char *p = s;
    while (p < e) {
        const char *f = p;
        while (p < e && !is_blank(*p))
            p++;
        if (n == 5) {
            kx_why(why, whylen, "more than 5 fields (minute hour day-of-month month day-of-week)");
            return KX_ERR_INVALID;
        }
        for (const char *c = f; c < p; c++) {
            if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e) {
                kx_why(why, whylen, "%s: a character that is not printable ASCII (byte 0x%02x)",
                       FIELDS[n].name, (unsigned char)*c);
                return KX_ERR_INVALID;
            }
        }
        if (!parse_field(&FIELDS[n], f, p, &bits[n], why, whylen))
            return KX_ERR_INVALID;
        star[n] = *f == '*';
        n++;
        while (p < e && is_blank(*p))
            p++;
    }
    if (n != 5) {
        kx_why(why, whylen, "%d field%s, want 5 (minute hour day-of-month month day-of-week)", n,
               n == 1 ? "" : "s");
        return KX_ERR_INVALID;
    }
    out->minute = bits[0];
    out->hour = (uint32_t)bits[1];
    out->dom = (uint32_t)bits[2];
    out->month = (uint16_t)bits[3];
    out->dow = (uint8_t)bits[4];
    out->dom_star = star[2];
    out->dow_star = star[4];
    return KX_OK;
}

/* ---- calendar ---- */

static int days_in_month(int64_t y, int m)
{
    static const int DIM[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return DIM[m - 1];
}

static bool day_matches(const kx_cron *c, int64_t day, int d)
{
    int wd = (int)((day % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
    bool dom = (c->dom >> d) & 1u, dow = (c->dow >> wd) & 1u;
    return (c->dom_star || c->dow_star) ? (dom && dow) : (dom || dow);
}

/* The lowest set bit of mask at or above `from`, or -1. */
static int next_bit(uint64_t mask, int from, int top)
{
    for (int i = from; i <= top; i++)
        if ((mask >> i) & 1u)
            return i;
    return -1;
}

kx_err kx_cron_next(const kx_cron *c, int64_t after, int64_t *next)
{
    *next = 0;
    if (after < 0 || after > KX_CRON_MAX_TIME)
        return KX_ERR_INVALID;
    int64_t t = after / 60 * 60 + 60; /* the first whole minute strictly after */
    int64_t day = t / 86400;
    int minute = (int)(t % 86400 / 60);
    int hour = minute / 60;
    minute %= 60;
    int64_t y;
    int m, d;
    kx_civil_from_days(day, &y, &m, &d);
    int64_t last_year = y + KX_CRON_HORIZON_YEARS;

    while (y <= last_year) {
        if (!((c->month >> m) & 1u)) { /* next month, from its first minute */
            if (++m > 12) {
                m = 1;
                y++;
            }
            d = 1;
            hour = minute = 0;
            day = kx_days_from_civil(y, m, d);
            continue;
        }
        if (!day_matches(c, day, d)) { /* next day */
            day++;
            if (++d > days_in_month(y, m)) {
                d = 1;
                if (++m > 12) {
                    m = 1;
                    y++;
                }
            }
            hour = minute = 0;
            continue;
        }
        int h = next_bit(c->hour, hour, 23);
        if (h != hour)
            minute = 0;
        int mi = h < 0 ? -1 : next_bit(c->minute, minute, 59);
        while (h >= 0 && mi < 0) { /* no minute left in this hour: the next matching hour */
            h = next_bit(c->hour, h + 1, 23);
            mi = h < 0 ? -1 : next_bit(c->minute, 0, 59);
        }
        if (h < 0) { /* nothing left today */
            day++;
            if (++d > days_in_month(y, m)) {
                d = 1;
                if (++m > 12) {
                    m = 1;
                    y++;
                }
            }
            hour = minute = 0;
            continue;
        }
        *next = day * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60;
        return KX_OK;
    }
    return KX_ERR_NOT_FOUND;
}

kx_err kx_cron_next_tz(const kx_cron *c, const kx_tz *tz, int64_t after, int64_t *next)
{
    if (tz == NULL)
        return kx_cron_next(c, after, next);
    if (after < 0 || after > KX_CRON_MAX_TIME)
        return KX_ERR_INVALID;
    /* Walk the matching wall-clock times from after's; the first whose instant is after
     * `after` is it. An instant behind `after` (the wall clock went back meanwhile: a repeated
     * time already fired) moves the walk on; that ends within the offsets' difference. */
    int64_t wall = after + kx_tz_offset(tz, after);
    for (int i = 0; i < 4096; i++) {
        int64_t w = 0, at[2];
        kx_err err = kx_cron_next(c, wall < 0 ? 0 : wall, &w);
        if (err != KX_OK)
            return err;
        int n = kx_tz_to_utc(tz, w, at);
        for (int k = 0; k < n; k++)
            if (at[k] > after) {
                *next = at[k];
                return KX_OK;
            }
        wall = w;
    }
    return KX_ERR_NOT_FOUND;
}

kx_err kx_cron_next_fire(const char *expr, const char *zone, int64_t after, int64_t *next,
                         char *why, size_t whylen)
{
    *next = 0;
    kx_cron c;
    if (kx_cron_parse(expr, &c, why, whylen) != KX_OK)
        return KX_ERR_INVALID;
    kx_tz *tz = NULL;
    kx_err err = kx_tz_load(zone != NULL ? zone : "UTC", &tz, why, whylen);
    if (err == KX_ERR_INVALID || err == KX_ERR_NOT_FOUND)
        return KX_ERR_NOT_FOUND; /* the zone's fault, whichever way it is wrong */
    if (err != KX_OK)
        return err;
    if (kx_cron_next_tz(&c, tz, after, next) != KX_OK)
        *next = 0;
    kx_tz_free(tz);
    return KX_OK;
}
