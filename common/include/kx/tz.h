/* kx/tz.h — IANA time zones: the offset from UTC a zone has at an instant, and the instant a
 * zone's wall-clock time stands for (scheduled runs read their cron expressions in a zone).
 *
 * A zone is read from the system's time zone database, a TZif file (RFC 8536, versions 1 to 4)
 * under KX_ZONEINFO_DIR (default /usr/share/zoneinfo: Debian's tzdata), by its name
 * ("Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"). "UTC" needs no file.
 * Instants after the file's last transition follow its footer, a POSIX TZ rule
 * ("CET-1CEST,M3.5.0,M10.5.0/3"), so slim files and dates past 2037 are right; instants before
 * the first transition have the zone's first local time type (RFC 8536 3.2). Zones with leap
 * seconds ("right/...") are refused: their times are not unix times.
 *
 * Names: 1..KX_TZ_NAME_MAX bytes of letters, digits and "_+-/", components not starting with
 * '.', no leading or doubled '/': a name never leaves the database's directory.
 *
 * Ownership: kx_tz_load, kx_tz_parse and kx_tz_from_rule return a kx_tz the caller frees with
 * kx_tz_free; a kx_tz is read-only after that and may be shared between threads. `why` is the
 * caller's buffer. */
#ifndef KX_TZ_H
#define KX_TZ_H

#include <stddef.h>
#include <stdint.h>

#include "kx/err.h"

#define KX_TZ_NAME_MAX 64
#define KX_TZ_FILE_MAX (256 * 1024) /* the largest TZif file read (the biggest zone is ~4 KB) */

typedef struct kx_tz kx_tz;

/* The zone called name. KX_ERR_INVALID (a malformed name, a file that is not TZif, a leap
 * second zone) or KX_ERR_NOT_FOUND (no such zone) with why saying so (why may be NULL). */
kx_err kx_tz_load(const char *name, kx_tz **out, char *why, size_t whylen);
/* The zone in the TZif bytes buf[0..len) (what kx_tz_load reads from the file; buf is only read
 * during the call, it need not be NUL-terminated). KX_ERR_INVALID when they are not a TZif file
 * this reader takes (malformed, truncated, leap seconds), with why saying what (may be NULL);
 * KX_ERR_NOMEM. Bytes after the footer (or a version 1 file's data) are ignored. */
kx_err kx_tz_parse(const unsigned char *buf, size_t len, kx_tz **out, char *why, size_t whylen);
/* The zone of a POSIX TZ rule alone ("EST5EDT,M3.2.0,M11.1.0"), as a TZif footer; for tests
 * and zones given as rules. The same errors. */
kx_err kx_tz_from_rule(const char *rule, kx_tz **out, char *why, size_t whylen);
void kx_tz_free(kx_tz *tz); /* NULL is a no-op */

/* Seconds east of UTC the zone's clocks show at unix time t (e.g. 3600 for CET); any t. */
int32_t kx_tz_offset(const kx_tz *tz, int64_t t);

/* kx_tz_to_utc reads a wall-clock time beyond +-KX_TZ_WALL_MAX (2^62 s, some 146 billion years)
 * as that bound: the instants it answers are then never further than a day from it. */
#define KX_TZ_WALL_MAX (INT64_C(1) << 62)

/* The unix times the zone's wall-clock time `wall` (seconds since 1970-01-01 00:00 of the wall
 * clock) stands for, earliest first, into out; returns how many: 2 when the clocks went back
 * over it (it occurs twice), else 1 — a time that does not occur (the clocks went forward over
 * it) is read with the offset before the change, as RFC 5545 reads it, i.e. moved forward by
 * the gap (02:30 on a spring-forward night of Europe/Berlin is 03:30 CEST). */
int kx_tz_to_utc(const kx_tz *tz, int64_t wall, int64_t out[2]);

#endif
