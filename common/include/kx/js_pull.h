/* kx/js_pull.h — pulling a durable JetStream pull consumer, without cnats' Fetch.
 *
 * Why not natsSubscription_Fetch: in cnats before 3.9.0 (Debian bookworm ships 3.4.1) its
 * _fetch writes past the array it allocated for `batch` messages when the subscription already
 * held more than half a batch when Fetch began and another pull request (an earlier Fetch's,
 * still live on the server after that Fetch gave up at its timeout) keeps delivering into the
 * same inbox: the batch it asks the server for shrinks by what was pending, the loop runs until
 * the count equals the shrunk batch, which it has already passed, so every further message is
 * stored one slot further (cnats fix 8099b5c9, "Fix heap buffer overflow in _fetch"). The
 * agent-runner hit it while claiming bursts of dispatches: glibc "malloc(): unaligned tcache
 * chunk detected" / "double free or corruption (!prev)" (docs/performance.md).
 *
 * Here the messages are taken one by one from a plain subscription on an inbox and copied into
 * the caller's array, never more than it asked for; the rest stay queued for the next call.
 * At most one pull request is live at a time (its batch is the max of the call that sent it):
 * a new one is sent only when the last one is over (all its messages came, or its 404/408/409
 * status), or KX_JS_PULL_GRACE_MS after its expiry (nats-server 2.9 does not always send the
 * 408), so a runner asks for at most its free slots plus about one batch. A pull request to a
 * consumer that does not exist is dropped without a word: when requests lapse silently, the
 * consumer is looked up (at most every KX_JS_PULL_CHECK_MS) and, gone, KX_ERR_UNAVAILABLE
 * says so: the caller makes it again.
 *
 * Acknowledging: the messages came through a plain subscription, so natsMsg_Ack (which needs
 * cnats' JetStream subscription) does not apply; kx_js_ack/nak/term publish the protocol's
 * "+ACK" / "-NAK" / "+TERM" to the message's reply subject, as natsMsg_Ack does.
 *
 * Threads: one thread uses a kx_js_pull (the agent-runner's fetcher); the ack functions are
 * thread-safe. Ownership: messages put in out[] are the caller's (natsMsg_Destroy them). */
#ifndef KX_JS_PULL_H
#define KX_JS_PULL_H

#include <stdint.h>
#include <nats/nats.h>

#include "kx/bus.h"
#include "kx/err.h"

#define KX_JS_PULL_GRACE_MS 100  /* after a request's expiry: taken as over */
#define KX_JS_PULL_CHECK_MS 5000 /* at most this often: does the consumer still exist? */

typedef struct kx_js_pull kx_js_pull;

/* Binds to the durable pull consumer `consumer` of `stream` (it must exist:
 * kx_bus_ensure_consumer). */
kx_err kx_js_pull_new(kx_bus *bus, const char *stream, const char *consumer, kx_js_pull **out);
void kx_js_pull_free(kx_js_pull *p); /* NULL is a no-op; the durable stays */

/* Up to max (>= 1) messages into out[0..*n), waiting at most timeout_ms for them; returns as
 * soon as one came and nothing more is queued, or max came. KX_OK (also with *n == 0: nothing
 * in time); KX_ERR_UNAVAILABLE when the consumer or JetStream is not there or the
 * subscription failed, the error of the send (kx_bus_status_err: KX_ERR_UNAVAILABLE when NATS
 * is not connected) when a pull request could not go out. On any error the caller frees this
 * puller and makes the consumer and a new puller again, after a pause. */
kx_err kx_js_pull_fetch(kx_js_pull *p, int max, int64_t timeout_ms, natsMsg **out, int *n);

/* The pull request's JSON for a batch and an expiry, as the server wants it (for the tests). */
int kx_js_pull_request_json(char *out, size_t cap, int batch, int64_t expires_ms);

kx_err kx_js_ack(kx_bus *bus, natsMsg *m);  /* done: not redelivered */
kx_err kx_js_nak(kx_bus *bus, natsMsg *m);  /* redeliver now (to any puller) */
kx_err kx_js_term(kx_bus *bus, natsMsg *m); /* never redeliver (a message nobody can use) */

#endif
