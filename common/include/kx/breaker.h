/* kx/breaker.h — a circuit breaker with exponential backoff, for a dependency that keeps
 * failing (an MCP server that crashes at start, a tool backend that is down).
 *
 * Closed: attempts are allowed. Each failure in a row counts; from the threshold-th on, the
 * breaker is open for a backoff that doubles per further failure (base_ms, 2*base_ms, ... up
 * to max_ms): attempts are refused (fail fast) until it has passed. Then one attempt is let
 * through (half-open): its success closes the breaker (count reset), its failure re-opens it
 * for the next, longer backoff. Times are monotonic ms passed in by the caller, so the
 * breaker is pure and testable without clocks.
 *
 * Ownership: a plain struct the caller embeds. Not thread-safe (one loop thread). */
#ifndef KX_BREAKER_H
#define KX_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kx_breaker {
    int threshold;      /* failures in a row before it opens (>= 1) */
    int64_t base_ms;    /* first open period */
    int64_t max_ms;     /* longest open period */
    int failures;       /* in a row */
    int64_t open_until; /* monotonic ms; 0 = closed */
    bool trial;         /* half-open: one attempt is out */
} kx_breaker;

void kx_breaker_init(kx_breaker *b, int threshold, int64_t base_ms, int64_t max_ms);
/* Whether an attempt may start at now; if not, *retry_in_ms (may be NULL) says when. */
bool kx_breaker_allow(kx_breaker *b, int64_t now, int64_t *retry_in_ms);
void kx_breaker_success(kx_breaker *b);
void kx_breaker_failure(kx_breaker *b, int64_t now);
bool kx_breaker_open(const kx_breaker *b, int64_t now);

#endif
