/* kx/bus.h — the NATS connection and the conventions every service uses on it.
 *
 * A kx_bus wraps one natsConnection (and its JetStream context) configured the Kortix way:
 *  - it reconnects forever, with backoff (100 ms doubling to 2 s, plus jitter), and starts even
 *    when NATS is not up yet (retry on failed connect);
 *  - SendAsap is on, so replies and publishes are not held back by cnats' flusher (~1 ms);
 *    a connection made with KX_BUS_BUFFERED leaves it off instead: publishes are buffered and
 *    cnats' flusher thread writes what gathered ~1 ms after the first one, in one write (for
 *    streams of messages nobody waits on one by one, e.g. the runner's run events);
 *  - every request carries headers: Kx-Deadline (absolute unix ms), traceparent (W3C) and
 *    Kx-Account (see docs/subjects.md).
 *
 * Ownership: kx_bus_connect returns a bus the caller frees with kx_bus_close. natsMsg pointers
 * handed to callbacks belong to the callback (kx_bus_msg_free or natsMsg_Destroy them) unless
 * stated otherwise.
 * All functions are thread-safe unless marked "loop thread".
 */
#ifndef KX_BUS_H
#define KX_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <nats/nats.h>
#include <protobuf-c/protobuf-c.h>
#include "kx/err.h"
#include "kx/loop.h"
#include "kx/time.h"

#define KX_HDR_DEADLINE "Kx-Deadline"
#define KX_HDR_TRACEPARENT "traceparent"
#define KX_HDR_ACCOUNT "Kx-Account"
#define KX_HDR_ERROR "Kx-Error" /* set on replies that carry only an error code */

/* Subjects and streams (docs/subjects.md is the reference). */
#define KX_SUBJ_RUN_SUBMIT "kx.run.submit"
#define KX_SUBJ_RUN_DISPATCH "kx.run.dispatch"
#define KX_SUBJ_RUN_HB "kx.run.hb"
#define KX_SUBJ_RUN_CTL_PREFIX "kx.run.ctl." /* + run_id */
#define KX_SUBJ_RUN_EV_PREFIX "kx.run.ev."   /* + run_id */
#define KX_SUBJ_RUN_START "kx.run.start"     /* request/reply, served by the gateway */
#define KX_SUBJ_RUN_STOP "kx.run.stop"       /* request/reply, served by the gateway */
#define KX_SUBJ_TOOL_EXEC "kx.tool.exec"
#define KX_SUBJ_TOOL_SCHEMAS "kx.tool.schemas"
#define KX_SUBJ_SANDBOX_EXEC "kx.sandbox.exec"
#define KX_SUBJ_SANDBOX_KILL "kx.sandbox.kill"
#define KX_SUBJ_SANDBOX_OUTPUT "kx.sandbox.output"
#define KX_SUBJ_SANDBOX_TERMINATE "kx.sandbox.terminate"
#define KX_SUBJ_SANDBOX_LIST "kx.sandbox.list"
#define KX_SUBJ_SANDBOX_FILES "kx.sandbox.files"
#define KX_SUBJ_SANDBOX_LIFECYCLE_PREFIX \
    "kx.sandbox." /* + create|get|start|stop|archive|delete|ensure_active */
#define KX_SUBJ_SANDBOX_STATE "kx.sandbox.state" /* publish: SandboxInfo on every change */
#define KX_SUBJ_SANDBOX_PREVIEW "kx.sandbox.preview"
#define KX_SUBJ_MCP_LIST "kx.mcp.list"
#define KX_SUBJ_MCP_CALL "kx.mcp.call"
#define KX_SUBJ_MCP_CANCEL "kx.mcp.cancel"
#define KX_SUBJ_MCP_AGENT_TOOLS "kx.mcp.agent_tools"
#define KX_SUBJ_HEALTH_PREFIX "kx.svc.health." /* + service name */

/* Retired: kx.run.submit was stored there until issue 12 (now core); kx_bus_ensure_streams
 * deletes a KX_RUN_SUBMIT left by an older version, so that nothing piles up in it. */
#define KX_STREAM_SUBMIT "KX_RUN_SUBMIT"
#define KX_STREAM_DISPATCH "KX_RUN_DISPATCH" /* work queue, subject kx.run.dispatch */
#define KX_STREAM_EVENTS "KX_RUN_EVENTS"     /* limits, kx.run.ev.>, max age 24 h, direct gets */
#define KX_CONSUMER_SCHEDULER "scheduler"    /* queue group on kx.run.submit, kx.run.hb */
#define KX_CONSUMER_RUNNERS "agent-runners"  /* durable pull consumer on KX_RUN_DISPATCH */

typedef struct kx_bus kx_bus;

/* Request metadata carried in headers. traceparent/account are NUL-terminated ("" = absent). */
typedef struct kx_bus_meta {
    kx_deadline deadline;
    char traceparent[56]; /* "00-<32 hex>-<16 hex>-01" */
    char account[40];
} kx_bus_meta;

/* Connects to url (e.g. "nats://127.0.0.1:4222") as client `name`. Returns at once even if the
 * server is not reachable yet; the connection keeps trying in the background. */
kx_err kx_bus_connect(const char *url, const char *name, kx_bus **out);
/* kx_bus_connect's flags. */
#define KX_BUS_BUFFERED 1u /* SendAsap off: publishes leave in batches, up to ~1 ms later */
/* kx_bus_connect with flags (0: the same as kx_bus_connect). */
kx_err kx_bus_connect_ex(const char *url, const char *name, unsigned flags, kx_bus **out);
/* A second connection to bus's server(s) (the same url), named bus's name + suffix, with
 * flags: e.g. a buffered one for a stream of publishes beside a SendAsap one for replies.
 * The caller frees it with kx_bus_close, independently of bus. */
kx_err kx_bus_connect_sibling(kx_bus *bus, const char *suffix, unsigned flags, kx_bus **out);
/* Drains subscriptions (bounded by timeout_ms), then closes and frees. NULL is a no-op.
 * Returns false when cnats callbacks were still running after the grace period: the bus is
 * then leaked on purpose, and so must be whatever those callbacks use (a loop they post to). */
bool kx_bus_close(kx_bus *bus, int64_t timeout_ms);

bool kx_bus_connected(kx_bus *bus);
/* A PING/PONG round trip (bounded by timeout_ms): on KX_OK the server has read everything sent
 * before, so the subscriptions made so far are known to it. A service calls this before its
 * /readyz says ready, else a request sent right after may find no responders. */
kx_err kx_bus_flush(kx_bus *bus, int64_t timeout_ms);
/* For a shutdown: when the bus is not connected (nats-server gone, reconnecting), closes the
 * connection now, so that requests and JetStream calls blocked in other threads return at once
 * (closed) instead of waiting out their timeouts, and threads joined next do not hold the exit.
 * A connected bus is left as it is. The bus stays valid for kx_bus_close, which then destroys
 * the subscriptions made with kx_bus_subscribe[_loop] that were open: do not destroy those
 * yourself after this call. No new subscription can be made after it. Returns true when it
 * closed the connection. */
bool kx_bus_close_if_down(kx_bus *bus);
natsConnection *kx_bus_conn(kx_bus *bus);
jsCtx *kx_bus_js(kx_bus *bus);
/* The kx_err of a cnats status, the one mapping of libkx: NATS_OK -> KX_OK, NATS_TIMEOUT ->
 * KX_ERR_TIMEOUT, NATS_NO_MEMORY -> KX_ERR_NOMEM, a bad argument or subject -> KX_ERR_INVALID,
 * no connection (closed, disconnected, not yet connected, no server) or no responders ->
 * KX_ERR_UNAVAILABLE, anything else -> KX_ERR_IO. Logs nothing. */
kx_err kx_bus_status_err(natsStatus s);

/* Frees m (NULL: nothing) at once, on this thread. natsMsg_Destroy does not free: it hands
 * every message to cnats' garbage-collector thread, which costs a futex wake and that thread's
 * wake-up (two context switches) per message whenever it sleeps — most of the time at our
 * rates (docs/performance.md, "cnats' garbage collector"). This calls the library's own free
 * of a message (natsMsg_free, exported by cnats 3.x though not in its header; found at build
 * time, else natsMsg_Destroy), which is what that thread would call later.
 * Only for a message the caller owns outright: one delivered on a core subscription (every
 * kx_bus subscription, svc handlers, kx_js_pull), a request's reply, the message an
 * asynchronous JetStream publish hands back to its ack handler, or one the caller made and
 * still holds. Never inside the callback of a JetStream push subscription without ManualAck:
 * cnats marks that message not to be destroyed and destroys it itself after the callback. */
void kx_bus_msg_free(natsMsg *m);

/* Creates the JetStream streams KX_RUN_DISPATCH and KX_RUN_EVENTS if missing, and deletes the
 * retired KX_RUN_SUBMIT if an older version left it (idempotent; replicas may race). */
kx_err kx_bus_ensure_streams(kx_bus *bus);
/* KX_RUN_EVENTS_MAX_BYTES (the event stream's byte limit, 1 GiB; 0 = none) into *out;
 * KX_ERR_INVALID (logged, naming it) for a bad value. kx_svc_init checks it, so a service
 * refuses to start with it instead of retrying kx_bus_ensure_streams for ever. */
kx_err kx_bus_events_max_bytes(int64_t *out);
/* Creates the durable consumer cc->Durable on stream if it is missing; an existing one (made
 * by a replica, or by an older version with another configuration) is used as it is.
 * Subscribe by binding to it (jsSubOptions.Stream + .Consumer): cnats deletes a consumer that
 * the subscribe call itself created when the subscription is unsubscribed or drained, even a
 * durable one. */
kx_err kx_bus_ensure_consumer(kx_bus *bus, const char *stream, jsConsumerConfig *cc);
/* Whether the durable consumer `durable` of stream exists: KX_OK when it does,
 * KX_ERR_NOT_FOUND when JetStream says it (or its stream) does not, else the error of the
 * lookup (KX_ERR_TIMEOUT, KX_ERR_UNAVAILABLE, ...: JetStream did not tell). Logs nothing. */
kx_err kx_bus_consumer_exists(kx_bus *bus, const char *stream, const char *durable);

/* A fresh trace: random trace id, random span id. */
void kx_bus_meta_init(kx_bus_meta *meta, kx_deadline deadline, const char *account);
/* Reads the headers of m into out (missing ones become 0 / ""). A malformed Kx-Deadline is
 * KX_ERR_INVALID. */
kx_err kx_bus_meta_read(natsMsg *m, kx_bus_meta *out);
kx_err kx_bus_meta_write(natsMsg *m, const kx_bus_meta *meta);
/* The 32-hex trace id inside a traceparent, into out (33 bytes); "" if none. */
void kx_bus_trace_id(const kx_bus_meta *meta, char out[33]);

/* Core publish of bytes / of a protobuf message. meta may be NULL. */
kx_err kx_bus_publish(kx_bus *bus, const char *subject, const void *data, size_t len,
                      const kx_bus_meta *meta);
kx_err kx_bus_publish_pb(kx_bus *bus, const char *subject, const ProtobufCMessage *msg,
                         const kx_bus_meta *meta);
/* JetStream publish, waiting for the stream's ack at most KX_BUS_TIMEOUT_MS (5 s), or until
 * meta->deadline if that is sooner. KX_ERR_UNAVAILABLE at once when NATS is not connected. */
kx_err kx_bus_js_publish_pb(kx_bus *bus, const char *subject, const ProtobufCMessage *msg,
                            const kx_bus_meta *meta);
/* The same with an optional Nats-Msg-Id (msg_id, may be NULL: JetStream drops a second
 * message with the same id within the stream's duplicate window) and the stream sequence the
 * message got (seq, may be NULL; 0 on failure). */
kx_err kx_bus_js_publish_pb_ex(kx_bus *bus, const char *subject, const ProtobufCMessage *msg,
                               const kx_bus_meta *meta, const char *msg_id, uint64_t *seq);
/* Whether the message with sequence seq is still in stream (a work queue drops a message once
 * it is acknowledged). KX_OK with *has; KX_ERR_UNAVAILABLE / TIMEOUT when NATS cannot tell. */
kx_err kx_bus_js_stream_has(kx_bus *bus, const char *stream, uint64_t seq, bool *has);
/* A new natsMsg on subject carrying msg packed, with meta's headers (meta may be NULL), for
 * callers that publish it themselves (e.g. on a JetStream context of their own). The caller
 * owns *out (natsMsg_Destroy). */
kx_err kx_bus_pb_msg(const char *subject, const ProtobufCMessage *msg, const kx_bus_meta *meta,
                     natsMsg **out);
/* JetStream publish without waiting (order is kept per connection; failures are logged). */
kx_err kx_bus_js_publish_pb_async(kx_bus *bus, const char *subject, const ProtobufCMessage *msg,
                                  const kx_bus_meta *meta);

/* Most messages kx_bus_js_publish_many keeps unacknowledged at a time. */
#define KX_BUS_MANY_MAX_PENDING 256
/* JetStream publish of n prepared messages (kx_bus_pb_msg), pipelined (bus_batch.c): all are
 * sent before any ack is waited for (at most KX_BUS_MANY_MAX_PENDING unacknowledged at a
 * time), then the call waits for every ack, each at most ack_wait_ms. Blocking: for worker
 * threads, never a loop thread. Takes the messages (msgs[i] is NULL on return). seqs[i] gets
 * message i's stream sequence, 0 when it was not acknowledged (refused, not sent, or no ack in
 * time: then it may or may not be in the stream). KX_OK when every message was acknowledged,
 * else the first failure (KX_ERR_UNAVAILABLE: not connected; KX_ERR_TIMEOUT: no ack in time).
 * When acks do not come (a stalled stream, a subject nobody acknowledges) the call returns
 * about ack_wait_ms after the messages left (cnats times each one out), at worst ack_wait_ms
 * plus 1 s (then what cnats still holds is taken back and counted as not acknowledged).
 * One batch per bus is in flight at a time: concurrent calls on one bus wait for each other. */
kx_err kx_bus_js_publish_many(kx_bus *bus, size_t n, natsMsg **msgs, int64_t ack_wait_ms,
                              uint64_t *seqs);
/* Internal to libkx: a bus's batch publisher (bus_batch.c), made by kx_bus_connect and freed
 * by kx_bus_close; one batch of kx_bus_js_publish_many is in flight at a time per bus. */
typedef struct kx_bus_batcher kx_bus_batcher;
kx_bus_batcher *kx_bus_batcher_new(void);
void kx_bus_batcher_free(kx_bus_batcher *bt);
kx_bus_batcher *kx_bus_batcher_of(kx_bus *bus);

/* Blocking request; meta->deadline is required (KX_ERR_INVALID without it). On KX_OK *reply is
 * the caller's (natsMsg_Destroy). KX_ERR_TIMEOUT when the deadline passes, KX_ERR_UNAVAILABLE
 * when nobody listens (no responders). */
kx_err kx_bus_request(kx_bus *bus, const char *subject, const void *data, size_t len,
                      const kx_bus_meta *meta, natsMsg **reply);
kx_err kx_bus_request_pb(kx_bus *bus, const char *subject, const ProtobufCMessage *msg,
                         const kx_bus_meta *meta, natsMsg **reply);

/* Replies to req (which must have a reply subject) with bytes / a protobuf message. */
kx_err kx_bus_respond(kx_bus *bus, natsMsg *req, const void *data, size_t len);
kx_err kx_bus_respond_pb(kx_bus *bus, natsMsg *req, const ProtobufCMessage *msg);

/* ---- Asynchronous, loop-bound requests (services that must never block) ----
 *
 * The reply (or the deadline) is delivered on the loop thread: cb(err, reply, arg), where
 * reply is non-NULL only when err == KX_OK and belongs to cb. Exactly one callback per request
 * unless it is cancelled first. Internally: one wildcard inbox subscription per (bus, loop),
 * a table of pending requests owned by the loop thread, and a loop timer at the deadline.
 */
typedef void (*kx_bus_reply_cb)(kx_err err, natsMsg *reply, void *arg);
typedef struct kx_bus_async kx_bus_async; /* per-loop request context */

kx_err kx_bus_async_new(kx_bus *bus, kx_loop *loop, kx_bus_async **out);
/* Cancels every pending request without calling back; loop thread. */
void kx_bus_async_free(kx_bus_async *ab);
/* Loop thread. meta->deadline required. *req_id (may be NULL) can cancel it. */
kx_err kx_bus_async_request(kx_bus_async *ab, const char *subject, const void *data, size_t len,
                            const kx_bus_meta *meta, kx_bus_reply_cb cb, void *arg,
                            uint64_t *req_id);
kx_err kx_bus_async_request_pb(kx_bus_async *ab, const char *subject, const ProtobufCMessage *msg,
                               const kx_bus_meta *meta, kx_bus_reply_cb cb, void *arg,
                               uint64_t *req_id);
/* Loop thread; the callback will not be called. Unknown ids are ignored. */
void kx_bus_async_cancel(kx_bus_async *ab, uint64_t req_id);
size_t kx_bus_async_pending(const kx_bus_async *ab);

/* ---- Subscriptions ----
 * kx_bus_subscribe: cb runs on a cnats thread (must not block long).
 * kx_bus_subscribe_loop: the message is posted to the loop and cb runs on the loop thread.
 * queue may be NULL (no queue group). The subscription is freed by kx_bus_close or
 * natsSubscription_Destroy. */
typedef void (*kx_bus_msg_cb)(natsMsg *msg, void *arg);
kx_err kx_bus_subscribe(kx_bus *bus, const char *subject, const char *queue, kx_bus_msg_cb cb,
                        void *arg, natsSubscription **out);
kx_err kx_bus_subscribe_loop(kx_bus *bus, kx_loop *loop, const char *subject, const char *queue,
                             kx_bus_msg_cb cb, void *arg, natsSubscription **out);

#endif
