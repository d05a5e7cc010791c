/* chunks.h — coalescing of a run's streamed text deltas before they become chunk events.
 *
 * A provider streams a few characters per delta, tens of deltas per second per run; one
 * JetStream message per delta is what made event volume grow with the runs held (issue: "event
 * volume"). A run's deltas are gathered here and emitted as one chunk when the oldest waited
 * KX_EVENT_COALESCE_MS (50) or when KX_EVENT_COALESCE_BYTES (4096) are gathered — whichever
 * comes first. Kortix's framing is unchanged: a chunk event still carries
 * {"role": "assistant", "content": "<text>"} with its own "sequence"; it just carries more text.
 * ms = 0 and bytes = 0 disable coalescing (each delta is emitted at once).
 *
 * Back-pressure: while the event publisher is saturated (publisher_busy), the timer does not
 * emit; text keeps gathering (the run holds the whole answer anyway) up to CHUNKS_MAX_EVENT
 * bytes, which is emitted regardless — so a slow JetStream means fewer, larger chunk events,
 * not an unbounded queue. An emitted chunk is at most CHUNKS_MAX_EVENT bytes (cut at a UTF-8
 * boundary), far under NATS' max_payload.
 *
 * Ordering: the owner calls chunks_flush before publishing any other event of the run, so no
 * chunk is overtaken by the row that follows it.
 *
 * Loop thread only. Ownership: a chunks lives inside its owner (a run); chunks_clear releases
 * what it holds (the pending text and the timer) without emitting. */
#ifndef RUNNER_CHUNKS_H
#define RUNNER_CHUNKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/buf.h"
#include "kx/err.h"
#include "kx/loop.h"

#define CHUNKS_MAX_EVENT \
    (64u * 1024u) /* even all escaped (\\u0001 twice: 7 bytes each), < 768 KiB */

/* Emits text[0..len) as one chunk event (len > 0). */
typedef void (*chunks_emit_fn)(void *arg, const char *text, size_t len);
/* True while the publisher wants no more chunk events for now. May be NULL. */
typedef bool (*chunks_busy_fn)(void *arg);

typedef struct chunks {
    kx_loop *loop;
    int64_t ms;
    size_t bytes;
    chunks_emit_fn emit;
    chunks_busy_fn busy;
    void *arg;
    kx_buf pending;
    kx_timer *timer;
} chunks;

void chunks_init(chunks *c, kx_loop *loop, int64_t ms, size_t bytes, chunks_emit_fn emit,
                 chunks_busy_fn busy, void *arg);
/* Adds a delta; emits now when the gathered text reaches `bytes`, else arms the timer.
 * KX_ERR_NOMEM when it cannot be kept (then it is emitted at once, as it is). */
kx_err chunks_add(chunks *c, const char *delta, size_t len);
/* Emits what is gathered (if anything) and disarms the timer. */
void chunks_flush(chunks *c);
/* Drops what is gathered and disarms the timer (a stopped or fenced run). */
void chunks_clear(chunks *c);

/* Exposed for the unit tests: the largest n <= max such that s[0..n) ends on a UTF-8 boundary
 * (n == len when len <= max). When no boundary is found in (0, max] (text that is not UTF-8:
 * a run of continuation bytes), max itself, so that every cut makes progress. */
size_t chunks_utf8_cut(const char *s, size_t len, size_t max);

#endif
