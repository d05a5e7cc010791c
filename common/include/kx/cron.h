/* kx/cron.h — standard 5-field cron expressions: parse one, and find its next fire time.
 *
 * Syntax (Vixie cron's): "minute hour day-of-month month day-of-week", fields separated by
 * spaces or tabs. Each field is a comma-separated list of items; an item is `*`, a value `V`,
 * a range `A-B`, each optionally followed by a step `/N` (`*` + step: the whole range;
 * `V/N`: from V to the field's maximum). Ranges are inclusive and must not run backwards.
 *   minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-7 or
 *   SUN-SAT (0 and 7 are Sunday). Names are 3 letters, any case, and may bound ranges.
 * Also the macros @yearly (@annually), @monthly, @weekly, @daily (@midnight) and @hourly.
 * Day rule (as Vixie cron): when both day-of-month and day-of-week are restricted (neither
 * field starts with `*`), a day matches if EITHER matches; otherwise both must.
 * kx_cron_next reads the expression in UTC; kx_cron_next_tz in a time zone (kx/tz.h);
 * kx_cron_next_fire is a trigger's whole step: expression text and zone name to next fire.
 *
 * Limits: an expression of at most KX_CRON_MAX_LEN bytes; steps 1..the field's span.
 *
 * Ownership: kx_cron is a plain value (no allocation); `why` is the caller's buffer. */
#ifndef KX_CRON_H
#define KX_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kx/err.h"
#include "kx/tz.h"

#define KX_CRON_MAX_LEN 256
/* kx_cron_next searches this many years ahead (Feb 29 recurs within 8). */
#define KX_CRON_HORIZON_YEARS 10
/* The latest time kx_cron_next accepts: 9999-12-31T23:59:59Z. */
#define KX_CRON_MAX_TIME INT64_C(253402300799)

typedef struct kx_cron {
    uint64_t minute; /* bit m set: minute m matches (0-59) */
    uint32_t hour;   /* bits 0-23 */
    uint32_t dom;    /* bits 1-31 */
    uint16_t month;  /* bits 1-12 */
    uint8_t dow;     /* bits 0-6, Sunday = 0 */
    bool dom_star;   /* the day-of-month field started with '*' */
    bool dow_star;   /* the day-of-week field started with '*' */
} kx_cron;

/* Parses expr into *out. KX_ERR_INVALID with `why` naming the field and the token that was
 * wrong ("hour: 24 is out of range 0-23"); why may be NULL. */
kx_err kx_cron_parse(const char *expr, kx_cron *out, char *why, size_t whylen);

/* The first minute strictly after `after` (unix seconds, UTC) at which c fires, in *next (unix
 * seconds, a multiple of 60). KX_ERR_NOT_FOUND when it does not fire within
 * KX_CRON_HORIZON_YEARS (e.g. "0 0 30 2 *": never); KX_ERR_INVALID when after is below 0 or
 * above KX_CRON_MAX_TIME. */
kx_err kx_cron_next(const kx_cron *c, int64_t after, int64_t *next);

/* The same with the expression read on the wall clock of tz (NULL: UTC): the first instant
 * strictly after `after` whose wall-clock time matches. A wall-clock time that occurs twice
 * (clocks went back) fires once, at its first occurrence; one that does not occur (clocks went
 * forward) fires moved forward by the gap (kx_tz_to_utc): "30 2 * * *" in Europe/Berlin fires
 * at 03:30 CEST on the spring-forward day, once at 02:30 CEST on the fall-back day. */
kx_err kx_cron_next_tz(const kx_cron *c, const kx_tz *tz, int64_t after, int64_t *next);

/* A scheduled run's next fire (the gateway when a trigger is made or edited, the scheduler when
 * it fires): expr parsed, the zone called zone loaded (kx_tz_load; NULL: "UTC"), and the first
 * instant strictly after `after` whose wall-clock time there matches (kx_cron_next_tz) into
 * *next; 0 when it fires no more (no match within KX_CRON_HORIZON_YEARS, or after outside
 * 0..KX_CRON_MAX_TIME). The errors tell the caller whose fault it is, why says what (may be
 * NULL; the bare reason, without the field's name):
 *   KX_ERR_INVALID     expr cannot be read (kx_cron_parse's reason); the zone is not looked at
 *   KX_ERR_NOT_FOUND   zone is not a zone of the database: a malformed name, no such zone, a
 *                      file that is not one (kx_tz_load's KX_ERR_INVALID or KX_ERR_NOT_FOUND)
 *   anything else      the zone database could not be read (KX_ERR_IO, KX_ERR_NOMEM): try
 *                      again later */
kx_err kx_cron_next_fire(const char *expr, const char *zone, int64_t after, int64_t *next,
                         char *why, size_t whylen);

#endif
