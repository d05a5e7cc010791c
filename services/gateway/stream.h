/* stream.h — GET /api/agent-run/{id}/stream: a run's events as server-sent events.
 *
 * After auth and the access check, each stream gets a JetStream ordered push consumer on
 * KX_RUN_EVENTS filtered to kx.run.ev.<id>, delivering from the first event (replay, then
 * live), or from just after the event a reconnecting client names (Last-Event-ID, or
 * ?after=<seq>; not a decimal number: 400). The consumer's callback (a cnats thread) appends
 * "id: <seq>\ndata: <payload_json>\n\n" to the stream's buffer (seq: the event's JetStream
 * stream sequence, increasing along a run; Kortix's "data:" framing is unchanged, clients that
 * ignore ids see Kortix's stream) and resumes the suspended connection; libmicrohttpd's content
 * reader copies the buffer out and suspends the connection when it is empty (it never blocks).
 * The stream ends after the terminal event. A run that has ended and whose events expired
 * (24 h after they were published), or whose events the client has all seen, gets one terminal
 * status built from Postgres (without an id).
 *
 * Bounded memory: at most KX_SSE_BUFFER_BYTES (1 MiB) pending per stream, plus one event. A
 * client further behind is cut cleanly: what is buffered (whole events only) is sent, the
 * stream ends, and the client resumes after the last event it got. A client that stops reading
 * altogether is closed after KX_HTTP_TIMEOUT_S without progress.
 *
 * Caps: KX_SSE_MAX_STREAMS_PER_ACCOUNT (100) and KX_SSE_MAX_STREAMS (2 000) open streams; over
 * either the answer is 429 with a {"detail": ...} naming which.
 *
 * Keep-alive: every KX_SSE_PING_S a ": ping" comment goes to every idle open stream (a timer
 * on the service loop); it is also how a vanished client is noticed. The same tick ends, with
 * the status from Postgres, the streams of runs that ended more than 10 s ago without their
 * terminal event ever arriving (its publish failed), so no stream waits forever. Drain:
 * gw_streams_close_all ends every stream and refuses new ones.
 *
 * Lifetime of one stream: it is freed only when both libmicrohttpd is done with it (the
 * response's free callback) and its subscription has completed (natsSubscription's on-complete
 * callback, which runs after the last message callback returned).
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
/* Streams libmicrohttpd still holds. */
size_t gw_streams_open(gw_streams *reg);
/* Cancels the keep-alive timer (loop thread). */
void gw_streams_stop_pings(gw_streams *reg);
/* Waits (bounded) for the last subscription callbacks, then frees. Call after the HTTP server
 * stopped and the pings were stopped. NULL is a no-op. */
void gw_streams_free(gw_streams *reg);

#endif
