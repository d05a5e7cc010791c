/* events.h — the run event stream (docs/architecture.md, "The run event stream"): builders of
 * the exact payload texts and the publisher of kx.v1.RunEvent on kx.run.ev.<run_id>.
 *
 * Payloads are printed like Python's json.dumps (kx_json_dumps_py), because Kortix's frontend
 * matches substrings of them. Inside DB-row events, "content" and "metadata" are JSON *strings*
 * (the row's jsonb printed the same way), not objects. All builders return malloc'd text
 * (free()) or NULL when out of memory. */
#ifndef RUNNER_EVENTS_H
#define RUNNER_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/bus.h"
#include "kx/pb.h"
#include "publisher.h"

/* {"message_id", "thread_id", "type", "is_llm_message", "content": "<content as JSON text>",
 *  "metadata": "<metadata as JSON text>", "created_at", "updated_at"} — a saved messages row.
 * A row too large for the bus (over EVENTS_INLINE_MAX: a 900 KB tool output is in both its
 * content and metadata.frontend_content) is streamed with its long strings cut to their head
 * and tail around a note naming the saved message (events_cap_strings), halving the length
 * kept until the event fits; the saved row keeps everything. */
char *events_row_json(const char *message_id, const char *thread_id, const char *type, bool is_llm,
                      const json_t *content, const json_t *metadata, const char *created_at,
                      const char *updated_at);

/* {"sequence": n, "message_id": null, "thread_id", "type": "assistant", "is_llm_message": true,
 *  "content": "{\"role\": \"assistant\", \"content\": \"<delta>\"}",
 *  "metadata": "{\"stream_status\": \"chunk\", \"thread_run_id\": \"T\"}",
 *  "created_at", "updated_at"} — an unsaved text delta; timestamps are now. */
char *events_chunk_json(uint64_t sequence, const char *thread_id, const char *delta, size_t len,
                        const char *thread_run_id);

/* {"type": "status", "status": "<status>", "message": "<message>"} — the terminal status. */
char *events_status_json(const char *status, const char *message);

/* The most payload bytes an event carries inline: NATS' max_payload is 1 MB and the RunEvent
 * around the payload, the headers and the JetStream overhead need room too. */
#define EVENTS_INLINE_MAX (768u * 1024u)

/* What a payload too large for the bus is replaced with, by reference rather than dropped:
 * {"type": "status", "status": "too_large", "message": "message <seq> too large to stream
 * (<n> bytes), fetch it", "message_id": <the row's id or null>, "thread_id": <... or null>,
 * "size": <n>} (Kortix's frontend ignores statuses it does not know; the saved row is fetched
 * with GET /api/threads/{thread_id}/messages). NULL on OOM. */
char *events_too_large_json(uint64_t seq, const char *payload, size_t len);

/* A deep copy of v in which every string longer than max bytes keeps its first and last
 * max / 2 bytes (cut at UTF-8 boundaries) around "\n\n[… N bytes cut from the middle to fit
 * the event stream; message <message_id> has all of it …]\n\n". NULL on OOM. */
json_t *events_cap_strings(const json_t *v, size_t max, const char *message_id);

/* The most packed bytes of a batch message's events (RunEvent.events): a single event whose
 * payload is at EVENTS_INLINE_MAX always fits alone, and NATS' 1 MB leaves room for headers. */
#define EVENTS_BATCH_MAX (EVENTS_INLINE_MAX + 16u * 1024u)

/* The events of one run gathered to go out together: ONE kx.run.ev message with one ack for
 * all of them (proto/kx/v1/run.proto, RunEvent.events), in the order they were added. A batch
 * of one event goes in the single-event form. A batch is split before an event that would
 * take its packed size over EVENTS_BATCH_MAX: the events gathered so far go out first, and
 * the new one starts the next message. A payload over EVENTS_INLINE_MAX is replaced by
 * events_too_large_json, as for a single event.
 *
 * send (publisher_publish, or a test's capture) gets each message to publish; it must not
 * keep m. Ownership: begin ... end on the caller's stack; add takes the payload. Loop thread. */
#define EVENTS_BATCH_INLINE 8 /* entries held without a heap allocation */
typedef kx_err (*events_send_fn)(void *arg, const Kx__V1__RunEvent *m, const kx_bus_meta *meta);
typedef struct events_batch {
    events_send_fn send;
    void *send_arg;
    char run_id[40];
    int64_t epoch;
    kx_bus_meta meta;
    bool has_meta;
    Kx__V1__RunEvent *evs; /* entries (payload_json owned), cap of them: inline at first */
    Kx__V1__RunEvent **ptrs;
    Kx__V1__RunEvent inline_evs[EVENTS_BATCH_INLINE];
    Kx__V1__RunEvent *inline_ptrs[EVENTS_BATCH_INLINE];
    size_t n, cap;
    size_t bytes;    /* the entries' packed size as fields of the batch */
    size_t messages; /* sent so far (tests, logs) */
} events_batch;

/* Starts an empty batch of run_id's events (epoch: the writer's lease epoch; meta may be
 * NULL) that send() publishes. */
void events_batch_begin(events_batch *b, events_send_fn send, void *send_arg, const char *run_id,
                        int64_t epoch, const kx_bus_meta *meta);
/* The same, through the runner's publisher. */
void events_batch_begin_pub(events_batch *b, publisher *pub, const char *run_id, int64_t epoch,
                            const kx_bus_meta *meta);
/* Adds an event (takes payload_json; NULL is an error logged by the caller). Sends what is
 * gathered first if this event would not fit with it. KX_ERR_NOMEM: the event is lost
 * (logged). */
kx_err events_batch_add(events_batch *b, uint64_t seq, Kx__V1__RunEventKind kind, bool terminal,
                        char *payload_json);
/* Sends what is gathered (nothing when empty); the batch stays usable. */
kx_err events_batch_flush(events_batch *b);
/* Sends what is gathered and frees the batch's memory. */
kx_err events_batch_end(events_batch *b);

/* Publishes RunEvent{run_id, lease_epoch, seq, kind, terminal, payload_json} on
 * kx.run.ev.<run_id> alone (a batch of one) through the runner's publisher (asynchronous,
 * bounded, order kept; a publish that fails is retried or replaced by an error event:
 * publisher.h). meta may be NULL. A payload over EVENTS_INLINE_MAX goes as
 * events_too_large_json. */
kx_err events_publish(publisher *pub, const char *run_id, int64_t epoch, uint64_t seq,
                      Kx__V1__RunEventKind kind, bool terminal, const char *payload_json,
                      const kx_bus_meta *meta);

#endif
