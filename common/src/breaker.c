/* breaker.c — circuit breaker with exponential backoff (see kx/breaker.h). */
#include "kx/breaker.h"

void kx_breaker_init(kx_breaker *b, int threshold, int64_t base_ms, int64_t max_ms)
{
    b->threshold = threshold < 1 ? 1 : threshold;
    b->base_ms = base_ms < 1 ? 1 : base_ms;
    b->max_ms = max_ms < b->base_ms ? b->base_ms : max_ms;
    b->failures = 0;
    b->open_until = 0;
    b->trial = false;
}

bool kx_breaker_open(const kx_breaker *b, int64_t now)
{
    return b->open_until != 0 && now < b->open_until;
}

bool kx_breaker_allow(kx_breaker *b, int64_t now, int64_t *retry_in_ms)
{
    if (kx_breaker_open(b, now)) {
        if (retry_in_ms)
            *retry_in_ms = b->open_until - now;
        return false;
    }
    if (b->open_until != 0)
        b->trial = true; /* half-open: this attempt decides */
    return true;
}

void kx_breaker_success(kx_breaker *b)
{
    b->failures = 0;
    b->open_until = 0;
    b->trial = false;
}

void kx_breaker_failure(kx_breaker *b, int64_t now)
{
    if (b->failures < 1000)
        b->failures++;
    b->trial = false;
    if (b->failures < b->threshold)
        return;
    int64_t d = b->base_ms;
    for (int i = b->threshold; i < b->failures && d < b->max_ms; i++)
        d *= 2;
    if (d > b->max_ms)
        d = b->max_ms;
    b->open_until = now + d;
}
