/* kx/run_events.h — reading kx.run.ev messages, which carry one run event or a batch of them
 * (proto/kx/v1/run.proto, RunEvent; docs/subjects.md).
 *
 * A reader unpacks the message as a RunEvent as before and walks its events with
 * kx_run_events_n / kx_run_events_at: a single event is its own only entry, a batch has its
 * entries (complete events, in order). Nothing here allocates; the entries belong to the
 * unpacked message. */
#ifndef KX_RUN_EVENTS_H
#define KX_RUN_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include "kx/pb.h"

/* How many events m carries: its batch entries, or 1 for a single event. */
static inline size_t kx_run_events_n(const Kx__V1__RunEvent *m)
{
    return m->n_events > 0 ? m->n_events : 1;
}

/* Event i of m (i < kx_run_events_n(m)): a batch entry, or m itself for a single event. */
static inline const Kx__V1__RunEvent *kx_run_events_at(const Kx__V1__RunEvent *m, size_t i)
{
    return m->n_events > 0 ? m->events[i] : m;
}

/* How many events the packed RunEvent in data carries, read from its wire form without
 * unpacking it (a count of the top-level `events` fields; 1 when there are none). For the
 * publisher's counters on cnats' ack thread. 0 when data is not well-formed. */
size_t kx_run_events_count_packed(const void *data, size_t len);

#endif
