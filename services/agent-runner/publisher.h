/* publisher.h — the runner's publisher of run events: asynchronous JetStream publishes with a
 * bound on what is in flight, back-pressure instead of blocking, and no silent loss.
 *
 * - Its own JetStream context, with an ack handler that sees every publish's outcome (the
 *   shared context of kx_bus only logged failures). By default on the runner's connection
 *   (SendAsap: each publish is written in the call). With own_conn (KX_EVENTS_BUFFERED=1) on a
 *   NATS connection of its own made without SendAsap (kx_bus_connect_sibling,
 *   KX_BUS_BUFFERED): publishes are buffered and cnats' flusher thread writes what gathered
 *   ~1 ms after the first, so events published together reach nats-server in one write; an
 *   event leaves up to ~1 ms later. Measured (docs/performance.md, "Run events on a buffered
 *   connection"): nats-server -0..-20 % per event in bench_evpub, but the runner pays a
 *   flusher wake-up per write and the whole stack came out slower, so it is off by default.
 *   One connection either way: a run's events keep their order.
 * - A publish is one message: a single event or a batch (a run's events of one database
 *   batch, events.h); everything below counts messages, except kx_runner_events_published_total
 *   (events stored).
 * - At most KX_EVENTS_MAX_PENDING (4096) publishes wait for their ack at once. Past that, events
 *   wait in a FIFO on the loop (order kept) and go out as acks come back; nothing blocks the
 *   loop thread (cnats' own MaxPending would stall the caller up to 200 ms). publisher_busy()
 *   tells the chunk coalescer to hold text back meanwhile (chunks.h): a slow JetStream gets
 *   fewer, larger chunk events.
 * - Every publish has an ack deadline (KX_EVENTS_ACK_WAIT_MS, 10 000). A publish that fails for
 *   a reason that says it was not stored (no JetStream, a server error) is retried twice
 *   (200 ms, 400 ms later); one that timed out (it may have been stored: a retry could duplicate
 *   it) or failed three times is replaced by an error event on the same run,
 *   {"type": "status", "status": "error", "message": "event <seq> could not be streamed: …"} (a
 *   batch: "events <first seq>-<last seq> could not be streamed: …") —
 *   never silence. Counters: kx_runner_events_{published,retried,failed}_total; gauges
 *   kx_runner_events_inflight, kx_runner_events_queued.
 *
 * Threads: publisher_publish and publisher_busy on the loop thread; acks arrive on cnats' threads
 * and are handed to the loop with kx_loop_post. Ownership: publisher_new returns a publisher
 * the runner frees with publisher_free (after the loop stopped, before the bus closes). */
#ifndef RUNNER_PUBLISHER_H
#define RUNNER_PUBLISHER_H

#include <stdbool.h>
#include <stdint.h>
#include "kx/bus.h"
#include "kx/loop.h"
#include "kx/pb.h"

typedef struct publisher publisher;

kx_err publisher_new(kx_bus *bus, kx_loop *loop, int64_t max_pending, int64_t ack_wait_ms,
                     bool own_conn, publisher **out);
/* Waits up to wait_ms for the acks still due, then frees. NULL is a no-op. */
void publisher_free(publisher *p, int64_t wait_ms);

/* Publishes m — one RunEvent, or a batch of them (events.h builds it) — on
 * kx.run.ev.<m->run_id> as ONE message with one ack: retried, or replaced by one error event,
 * as a whole. Never blocks. KX_OK once it is sent or queued; an error only when the message
 * cannot even be built (out of memory). Loop thread. */
kx_err publisher_publish(publisher *p, const Kx__V1__RunEvent *m, const kx_bus_meta *meta);

/* True while publishes are at the bound or queued behind it. Loop thread. */
bool publisher_busy(const publisher *p);
/* The connection events go out on: the publisher's own, or the runner's. */
natsConnection *publisher_conn(const publisher *p);
/* In flight (sent, ack not yet back) and queued now. Any thread. */
int64_t publisher_inflight(const publisher *p);
int64_t publisher_queued(const publisher *p);

#endif
