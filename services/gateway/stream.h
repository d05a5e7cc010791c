/* stream.h — GET /api/agent-run/{id}/stream: a run's events as server-sent events.
 *
 * After auth and the access check, a stream starts at the run's first event, or just after the
 * event a reconnecting client names (Last-Event-ID, or ?after=<id>; neither "<seq>" nor
 * "<seq>.<index>": 400). Each event is written "id: <seq>\ndata: <payload_json>\n\n" (seq: the
 * JetStream stream sequence of its message, increasing along a run), or "id: <seq>.<index>"
 * for the event at index of a message that carries a batch (kx/run_events.h); Kortix's
 * "data:" framing is unchanged, clients that ignore ids see Kortix's stream. Two sources, one
 * after the other:
 *   - history: what KX_RUN_EVENTS holds after the stream's position is read with direct gets
 *     by a job on the registry's worker pool, at most 64 KiB ahead of what the client has
 *     taken (the reader queues the next job when the buffer drains), so a replay costs no more
 *     memory for a slow client than for a fast one;
 *   - live: once the stream has everything up to its run's feed's last sequence it attaches to
 *     the feed (feed.h: one JetStream subscription per run, shared by the run's streams), which
 *     appends each new event to every attached stream and resumes its connection.
 * Once libmicrohttpd has sent the headers, the socket is written by the gateway's writer
 * threads (sse_writer.h) while libmicrohttpd keeps the connection suspended; the writer hands
 * it back to end the response (docs/architecture.md, "SSE sockets"). The stream ends after the terminal event. A run that ended more than
 * 10 s ago is replayed without a feed up to its last stored event, then closed with the status
 * from Postgres if that event was not the terminal one; a run whose events expired (24 h after
 * they were published), or whose events the client has all seen, gets one terminal status built
 * from Postgres (without an id).
 *
 * Bounded memory: at most KX_SSE_BUFFER_BYTES (1 MiB) pending per live stream, plus one event.
 * A client further behind is cut cleanly: what is buffered (whole events only) is sent, the
 * stream ends, and the client resumes after the last event it got. A client that stops reading
 * altogether is closed after KX_HTTP_TIMEOUT_S without progress (the writer's tick); one that
 * goes away is noticed at once (EPOLLRDHUP). A history read that NATS does
 * not answer in 2 s ends the stream the same way.
 *
 * Caps: KX_SSE_MAX_STREAMS_PER_ACCOUNT (100) and KX_SSE_MAX_STREAMS (2 000) open streams; over
 * either the answer is 429 with a {"detail": ...} naming which.
 *
 * Keep-alive: every KX_SSE_PING_S a ": ping" comment goes to every idle open stream (a timer
 * on the service loop); it is also how a vanished client is noticed. The same tick queues, on
 * the worker pool, the check that ends (with the status from Postgres) the streams of runs that
 * ended more than 10 s ago without their terminal event ever arriving (its publish failed), so
 * no stream waits forever, and the teardown of feeds unused for KX_SSE_FEED_LINGER_MS. Drain:
 * gw_streams_close_all ends every stream and refuses new ones.
 *
 * Lifetime of one stream: it is freed when libmicrohttpd is done with it (the response's free
 * callback) and neither a catch-up job nor a writer (its socket, a queued kick) holds it; it is detached from its feed before (no delivery
 * reaches a freed stream) and releases the feed then.
 *
 * Ownership: main() creates the registry (gw_streams_new) and frees it after the HTTP server
 * stopped (gw_streams_free). */
#ifndef GW_STREAM_H
#define GW_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include "gateway.h"
#include "kx/loop.h"

gw_streams *gw_streams_new(gw_app *app);
/* Starts the keep-alive timer on loop (loop thread). */
void gw_streams_start_pings(gw_streams *reg, kx_loop *loop);
/* Ends every open stream (after what it has buffered) and refuses new ones. Thread-safe. */
void gw_streams_close_all(gw_streams *reg);
/* Hands every connection the writer threads hold back to libmicrohttpd with an error (it
 * closes them) and makes the reader refuse new hand-overs; waits (bounded) until none is held.
 * Call before the HTTP server stops: libmicrohttpd must not stop with suspended connections.
 * Thread-safe. */
void gw_streams_abort_all(gw_streams *reg);
/* Streams libmicrohttpd still holds. */
size_t gw_streams_open(gw_streams *reg);
/* Cancels the keep-alive timer (loop thread). */
void gw_streams_stop_pings(gw_streams *reg);
/* Waits (bounded) for the last streams and jobs, tears the feeds down, then frees. Call after
 * the HTTP server stopped and the pings were stopped (NATS still connected). NULL: no-op. */
void gw_streams_free(gw_streams *reg);

#endif
