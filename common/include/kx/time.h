/* kx/time.h — clocks and absolute deadlines.
 *
 * A deadline is an absolute wall-clock instant in unix milliseconds, so that it can travel
 * between processes (the Kx-Deadline header). 0 means "no deadline". Durations inside one
 * process use the monotonic clock. */
#ifndef KX_TIME_H
#define KX_TIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef int64_t kx_deadline; /* unix ms; 0 = none */
#define KX_NO_DEADLINE ((kx_deadline)0)

int64_t kx_now_ms(void);  /* wall clock, unix ms */
int64_t kx_mono_ms(void); /* monotonic ms, for durations */
int64_t kx_mono_us(void);

kx_deadline kx_deadline_in(int64_t ms);                    /* now + ms */
kx_deadline kx_deadline_min(kx_deadline a, kx_deadline b); /* the earlier; 0 counts as infinite */
/* Milliseconds left (<= 0: expired). INT64_MAX when d == KX_NO_DEADLINE. */
int64_t kx_deadline_remaining(kx_deadline d);
bool kx_deadline_expired(kx_deadline d);

/* The instant ms milliseconds from now on clock (CLOCK_REALTIME, CLOCK_MONOTONIC), as the
 * absolute timespec pthread_cond_timedwait wants: use the clock its condition variable waits
 * on (CLOCK_REALTIME unless pthread_condattr_setclock said otherwise). */
struct timespec kx_abs_timespec_in_ms(clockid_t clock, int64_t ms);

/* ISO-8601 UTC with microseconds ("2026-11-21T19:40:13.123456+00:00") into buf (>= 40 bytes). */
void kx_time_iso(char *buf, size_t len, int64_t unix_us);
int64_t kx_now_us(void);

/* Proleptic Gregorian calendar on day numbers, independent of the C library's time zones:
 * days since 1970-01-01 of y-m-d (m 1-12, d 1-31), and back. */
int64_t kx_days_from_civil(int64_t y, int m, int d);
void kx_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

#endif
