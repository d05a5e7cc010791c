/* tz.c — IANA time zones from TZif files and POSIX TZ rules (see kx/tz.h).
 *
 * A zone is its transitions (ascending unix times, each with the offset in effect from it on),
 * the offset before the first one, and the footer's rule for the instants after the last one.
 * Reading a TZif file: the header (RFC 8536 3.1), then for version 2 and later the second,
 * 64-bit data block (the first, 32-bit one is skipped), else the first; every count and index
 * is checked against the file before it is used. */
#include "kx/tz.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/file.h"
#include "kx/time.h"

#define ZONEINFO_DIR "/usr/share/zoneinfo"
#define MAX_TRANSITIONS 100000
#define MAX_OFFSET (26 * 3600) /* RFC 8536: utoff within -25:59:59 .. +25:59:59 */
#define HOUR 3600
#define DAY 86400
/* 400 Gregorian years: 146097 days, a whole number of weeks, so the calendar and every rule
 * day (Jn, n, Mm.w.d) repeat after it exactly. */
#define CYCLE (INT64_C(146097) * DAY)

/* A POSIX rule's day: Jn (1-365, February 29 never counted), n (0-365) or Mm.w.d. */
typedef struct rule_day {
    char kind; /* 'J', 'D' (zero-based n) or 'M' */
    int n, m, w, d;
    int32_t time; /* seconds after the day's local midnight (-167h..167h, RFC 8536 3.3.1) */
} rule_day;

typedef struct tz_rule {
    int32_t std_off, dst_off; /* seconds east of UTC */
    bool has_dst;
    rule_day start, end; /* DST starts (local standard time), ends (local DST) */
} tz_rule;

struct kx_tz {
    size_t n;
    int64_t *at;  /* transition times, ascending */
    int32_t *off; /* the offset from at[i] on */
    int32_t first_off;
    bool has_rule;
    tz_rule rule;
};

/* ---- POSIX TZ rules ---------------------------------------------------------------------- */

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A zone abbreviation: 3+ letters, or <...> of letters, digits, '+' and '-'. */
static bool parse_abbr(const char **p)
{
    const char *s = *p;
    size_t n = 0;
    if (*s == '<') {
        for (s++; is_alpha(*s) || is_digit(*s) || *s == '+' || *s == '-'; s++)
            n++;
        if (*s != '>' || n < 3)
            return false;
        *p = s + 1;
        return true;
    }
    while (is_alpha(*s)) {
        s++;
        n++;
    }
    *p = s;
    return n >= 3;
}

/* [+-]hh[:mm[:ss]] with hh <= max_h, in seconds (signed as written). */
static bool parse_hms(const char **p, int max_h, int32_t *out)
{
    const char *s = *p;
    int sign = 1;
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    int part[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        if (i > 0) {
            if (*s != ':')
                break;
            s++;
        }
        if (!is_digit(*s))
            return false;
        int v = 0;
        for (int k = 0; is_digit(*s); k++, s++) {
            if (k == 3)
                return false;
            v = v * 10 + (*s - '0');
        }
        part[i] = v;
    }
    if (part[0] > max_h || part[1] > 59 || part[2] > 59)
        return false;
    *out = sign * (part[0] * HOUR + part[1] * 60 + part[2]);
    *p = s;
    return true;
}

static bool parse_int(const char **p, int lo, int hi, int *out)
{
    const char *s = *p;
    int v = 0, k = 0;
    for (; is_digit(*s); s++, k++) {
        if (k == 3)
            return false;
        v = v * 10 + (*s - '0');
    }
    if (k == 0 || v < lo || v > hi)
        return false;
    *out = v;
    *p = s;
    return true;
}

static bool parse_day(const char **p, rule_day *d)
{
    const char *s = *p;
    memset(d, 0, sizeof *d);
    bool ok;
    if (*s == 'J') {
        s++;
        d->kind = 'J';
        ok = parse_int(&s, 1, 365, &d->n);
    } else if (*s == 'M') {
        s++;
        d->kind = 'M';
        ok = parse_int(&s, 1, 12, &d->m) && *s++ == '.' && parse_int(&s, 1, 5, &d->w) &&
            *s++ == '.' && parse_int(&s, 0, 6, &d->d);
    } else {
        d->kind = 'D';
        ok = parse_int(&s, 0, 365, &d->n);
    }
    if (!ok)
        return false;
    d->time = 2 * HOUR;
    if (*s == '/') {
        s++;
        if (!parse_hms(&s, 167, &d->time))
            return false;
    }
    *p = s;
    return true;
}

/* "std offset [dst [offset] ,start[/time],end[/time]]" (POSIX; offsets are west of UTC). */
static bool parse_rule(const char *text, tz_rule *r)
{
    const char *s = text;
    memset(r, 0, sizeof *r);
    int32_t west = 0;
    if (!parse_abbr(&s) || !parse_hms(&s, 24, &west))
        return false;
    r->std_off = -west;
    if (*s == '\0')
        return true;
    if (!parse_abbr(&s))
        return false;
    r->has_dst = true;
    r->dst_off = r->std_off + HOUR;
    if (*s != ',' && *s != '\0') {
        if (!parse_hms(&s, 24, &west))
            return false;
        r->dst_off = -west;
    }
    /* A DST name without a rule leaves the rule to the implementation: refused. */
    if (*s++ != ',' || !parse_day(&s, &r->start) || *s++ != ',' || !parse_day(&s, &r->end))
        return false;
    return *s == '\0';
}

static bool leap_year(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
    static const int DIM[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap_year(y) ? 29 : DIM[m - 1];
}

/* The local wall-clock second (since 1970-01-01 of the wall clock) of rule day d in year y. */
static int64_t rule_wall(const rule_day *d, int64_t y)
{
    int64_t jan1 = kx_days_from_civil(y, 1, 1), day;
    if (d->kind == 'J')
        day = jan1 + d->n - 1 + (leap_year(y) && d->n >= 60 ? 1 : 0);
    else if (d->kind == 'D')
        day = jan1 + d->n;
    else {
        int64_t first = kx_days_from_civil(y, d->m, 1);
        int wday = (int)(((first + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
        day = first + (d->d - wday + 7) % 7 + (int64_t)(d->w - 1) * 7;
        while (day - first >= month_days(y, d->m))
            day -= 7; /* week 5: the last such day */
    }
    return day * DAY + d->time;
}

static int32_t rule_offset(const tz_rule *r, int64_t t)
{
    if (!r->has_dst)
        return r->std_off;
    /* The same offset whole cycles nearer 1970 (the rule repeats), so that the local time and
     * the year's day numbers below stay far from int64's ends (t + std_off overflowed there). */
    t %= CYCLE;
    int64_t y = 0;
    int m = 0, d = 0;
    kx_civil_from_days((t + r->std_off) / DAY - ((t + r->std_off) % DAY < 0), &y, &m, &d);
    int64_t start = rule_wall(&r->start, y) - r->std_off;
    int64_t end = rule_wall(&r->end, y) - r->dst_off;
    bool dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
    return dst ? r->dst_off : r->std_off;
}

/* ---- TZif ---------------------------------------------------------------------------------- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct tzif_counts {
    uint32_t isut, isstd, leap, time, type, chars;
} tzif_counts;

static bool header(const unsigned char *p, size_t len, char *version, tzif_counts *c)
{
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return false;
    *version = (char)p[4];
    c->isut = be32(p + 20);
    c->isstd = be32(p + 24);
    c->leap = be32(p + 28);
    c->time = be32(p + 32);
    c->type = be32(p + 36);
    c->chars = be32(p + 40);
    return c->type >= 1 && c->type <= 256 && c->time <= MAX_TRANSITIONS && c->chars <= 65536 &&
        c->leap <= 65536 && (c->isstd == 0 || c->isstd == c->type) &&
        (c->isut == 0 || c->isut == c->type);
}

static size_t block_len(const tzif_counts *c, size_t tsize)
{
    return (size_t)c->time * (tsize + 1) + (size_t)c->type * 6 + c->chars +
        (size_t)c->leap * (tsize + 4) + c->isstd + c->isut;
}

static kx_err parse_tzif(const unsigned char *p, size_t len, kx_tz *tz, char *why, size_t whylen)
{
    char version = 0;
    tzif_counts c;
    if (!header(p, len, &version, &c)) {
        kx_why(why, whylen, "not a TZif file");
        return KX_ERR_INVALID;
    }
    size_t tsize = 4, off = 44;
    if (version >= '2') { /* skip the 32-bit block; the 64-bit one has its own header */
        off += block_len(&c, 4);
        if (off > len || !header(p + off, len - off, &version, &c)) {
            kx_why(why, whylen, "not a TZif file (its second header)");
            return KX_ERR_INVALID;
        }
        off += 44;
        tsize = 8;
    }
    if (block_len(&c, tsize) > len - off) {
        kx_why(why, whylen, "a truncated TZif file");
        return KX_ERR_INVALID;
    }
    if (c.leap > 0) {
        kx_why(why, whylen, "a zone with leap seconds (its times are not unix times)");
        return KX_ERR_INVALID;
    }
    const unsigned char *times = p + off;
    const unsigned char *idx = times + (size_t)c.time * tsize;
    const unsigned char *types = idx + c.time;
    int32_t utoff[256] = {0}; /* c.type >= 1: header() */
    for (uint32_t i = 0; i < c.type; i++) {
        utoff[i] = (int32_t)be32(types + (size_t)i * 6);
        if (utoff[i] <= -MAX_OFFSET || utoff[i] >= MAX_OFFSET || types[(size_t)i * 6 + 4] > 1) {
            kx_why(why, whylen, "a TZif file with a malformed local time type");
            return KX_ERR_INVALID;
        }
    }
    tz->first_off = utoff[0];
    tz->n = c.time;
    tz->at = calloc(c.time ? c.time : 1, sizeof *tz->at);
    tz->off = calloc(c.time ? c.time : 1, sizeof *tz->off);
    if (tz->at == NULL || tz->off == NULL)
        return KX_ERR_NOMEM;
    for (uint32_t i = 0; i < c.time; i++) {
        tz->at[i] = tsize == 8 ? be64(times + (size_t)i * 8)
                               : (int64_t)(int32_t)be32(times + (size_t)i * 4);
        if (idx[i] >= c.type || (i > 0 && tz->at[i] <= tz->at[i - 1])) {
            kx_why(why, whylen, "a TZif file with a malformed transition");
            return KX_ERR_INVALID;
        }
        tz->off[i] = utoff[idx[i]];
    }
    if (tsize == 8) { /* the footer: "\n" rule "\n" (an empty rule: none) */
        const char *f = (const char *)p + off + block_len(&c, tsize);
        size_t left = len - off - block_len(&c, tsize);
        const char *nl = left >= 2 && f[0] == '\n' ? memchr(f + 1, '\n', left - 1) : NULL;
        size_t rl = nl != NULL ? (size_t)(nl - f - 1) : 0;
        if (nl == NULL || rl > 255 || memchr(f + 1, '\0', rl) != NULL) {
            kx_why(why, whylen, "a TZif file without its footer");
            return KX_ERR_INVALID;
        }
        char rule[256];
        memcpy(rule, f + 1, rl);
        rule[rl] = '\0';
        if (rl > 0 && !parse_rule(rule, &tz->rule)) {
            kx_why(why, whylen, "a TZif file whose footer rule '%s' cannot be read", rule);
            return KX_ERR_INVALID;
        }
        tz->has_rule = rl > 0;
    }
    return KX_OK;
}

/* ---- names and files ----------------------------------------------------------------------- */

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > KX_TZ_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool start = i == 0 || name[i - 1] == '/';
        if (start && (c == '.' || c == '/'))
            return false; /* "..", hidden files, "//" */
        if (!is_alpha(c) && !is_digit(c) && c != '_' && c != '+' && c != '-' && c != '/' &&
            c != '.')
            return false;
    }
    return true;
}

kx_err kx_tz_parse(const unsigned char *buf, size_t len, kx_tz **out, char *why, size_t whylen)
{
    *out = NULL;
    kx_tz *tz = calloc(1, sizeof *tz);
    if (tz == NULL)
        return KX_ERR_NOMEM;
    kx_err err = parse_tzif(buf, len, tz, why, whylen);
    if (err != KX_OK) {
        if (err == KX_ERR_NOMEM)
            kx_why(why, whylen, "%s", kx_err_str(err));
        kx_tz_free(tz);
        return err;
    }
    *out = tz;
    return KX_OK;
}

kx_err kx_tz_load(const char *name, kx_tz **out, char *why, size_t whylen)
{
    *out = NULL;
    if (name == NULL || !name_ok(name)) {
        kx_why(why, whylen,
               "'%.80s' is not a time zone name (e.g. Europe/Berlin, America/New_York)",
               name ? name : "");
        return KX_ERR_INVALID;
    }
    if (strcmp(name, "UTC") == 0) {
        *out = calloc(1, sizeof **out);
        return *out != NULL ? KX_OK : KX_ERR_NOMEM;
    }
    const char *dir = getenv("KX_ZONEINFO_DIR");
    char path[PATH_MAX];
    int pl = snprintf(path, sizeof path, "%s/%s",
                      dir != NULL && dir[0] != '\0' ? dir : ZONEINFO_DIR, name);
    char *buf = NULL;
    size_t len = 0;
    kx_err err = pl > 0 && (size_t)pl < sizeof path
        ? kx_file_read(path, KX_TZ_FILE_MAX, &buf, &len)
        : KX_ERR_NOT_FOUND;
    if (err == KX_ERR_INVALID)
        err = KX_ERR_NOT_FOUND; /* larger than any zone: none */
    if (err == KX_ERR_NOT_FOUND)
        kx_why(why, whylen, "unknown time zone '%s'", name);
    else if (err != KX_OK)
        kx_why(why, whylen, "time zone '%s' could not be read: %s", name, kx_err_str(err));
    else {
        char detail[200] = "";
        err = kx_tz_parse((const unsigned char *)buf, len, out, detail, sizeof detail);
        if (err != KX_OK)
            kx_why(why, whylen, "time zone '%s': %s", name, detail[0] ? detail : kx_err_str(err));
    }
    free(buf);
    return err;
}

kx_err kx_tz_from_rule(const char *rule, kx_tz **out, char *why, size_t whylen)
{
    *out = NULL;
    kx_tz *tz = calloc(1, sizeof *tz);
    if (tz == NULL)
        return KX_ERR_NOMEM;
    if (rule == NULL || strlen(rule) > 255 || !parse_rule(rule, &tz->rule)) {
        kx_why(why, whylen, "'%.80s' is not a POSIX TZ rule", rule ? rule : "");
        free(tz);
        return KX_ERR_INVALID;
    }
    tz->has_rule = true;
    tz->first_off = tz->rule.std_off;
    *out = tz;
    return KX_OK;
}

void kx_tz_free(kx_tz *tz)
{
    if (tz == NULL)
        return;
    free(tz->at);
    free(tz->off);
    free(tz);
}

/* ---- offsets --------------------------------------------------------------------------------- */

int32_t kx_tz_offset(const kx_tz *tz, int64_t t)
{
    if (tz->n == 0 || t >= tz->at[tz->n - 1])
        return tz->has_rule ? rule_offset(&tz->rule, t)
                            : (tz->n == 0 ? tz->first_off : tz->off[tz->n - 1]);
    if (t < tz->at[0])
        return tz->first_off;
    size_t lo = 0, hi = tz->n - 1; /* at[lo] <= t < at[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->at[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return tz->off[lo];
}

int kx_tz_to_utc(const kx_tz *tz, int64_t wall, int64_t out[2])
{
    /* The bound (kx/tz.h): the window below and wall - offset stay inside int64. */
    wall = wall > KX_TZ_WALL_MAX ? KX_TZ_WALL_MAX
        : wall < -KX_TZ_WALL_MAX ? -KX_TZ_WALL_MAX
                                 : wall;
    /* The offsets in effect within a day and more either side (an instant for wall is within
     * MAX_OFFSET of it); clocks change at most once in such a window in every real zone, and
     * each candidate is checked. */
    int32_t offs[8] = {kx_tz_offset(tz, wall)};
    int no = 1;
    for (int64_t t = wall - MAX_OFFSET - HOUR; t <= wall + MAX_OFFSET + HOUR; t += HOUR / 2) {
        int32_t o = kx_tz_offset(tz, t);
        bool seen = false;
        for (int i = 0; i < no; i++)
            seen = seen || offs[i] == o;
        if (!seen && no < 8)
            offs[no++] = o;
    }
    int n = 0;
    for (int i = 0; i < no; i++) {
        int64_t u = wall - offs[i];
        if (kx_tz_offset(tz, u) == offs[i] && n < 2) /* the offsets differ: so do the u */
            out[n++] = u;
    }
    if (n == 2 && out[1] < out[0]) {
        int64_t t = out[0];
        out[0] = out[1];
        out[1] = t;
    }
    if (n == 0) { /* in a gap: the offset before the change (the one in effect before it) */
        int32_t hi = offs[0];
        for (int i = 1; i < no; i++)
            hi = offs[i] > hi ? offs[i] : hi;
        out[0] = wall - kx_tz_offset(tz, wall - hi);
        n = 1;
    }
    return n;
}
