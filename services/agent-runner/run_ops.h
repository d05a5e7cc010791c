/* run_ops.h — a run's database work, queued on the loop and done on a database thread (rdb.h).
 *
 * The run never waits for a write: run.c queues its rows (fenced inserts), the events that
 * follow them, its end (the fenced finish) or its hand-back, and goes on. What was queued while
 * nothing of the run is in flight leaves together on the next loop iteration as ONE batch: one
 * transaction that its database thread opens (BEGIN, the statements, COMMIT — one commit for a
 * turn's rows, shared with the other runs' batches queued there, and sent as one libpq pipeline,
 * its load's reads too: kx/db_worker.h), run again whole once if the connection was
 * lost (every statement in it is idempotent: client-made message
 * ids, compare-and-set ends). A run has at most one batch in flight; what it queues meanwhile
 * forms the next. Reads (the agent and the thread, run_ops_load) are queued behind the writes,
 * in the same pipeline and transaction, so they see them, and continue the run from their
 * completion (the first turn's were read with the claim: dispatch.c, run_start). The rows a batch holds one after
 * the other (events between them run no SQL) are written by ONE fenced multi-row insert
 * (store_insert_messages, up to its caps), in op order; each op still gets its own row back.
 * run.c queues so that rows meet: a turn that goes on (a tool turn) queues the next turn's
 * start rows right behind its end rows, and that turn's read of the thread behind them
 * (end_turn), so a tool run of two turns writes its 15 rows in at most 4 batches of one insert
 * each: the turn's start | tool_started and the answer (while the tool runs; still queued when
 * a fast tool's result comes, they go with it) | the tool's result, the turn's end, the next
 * turn's start and its read | the answer, the turn's end and the finish (docs/performance.md,
 * "A turn's end and the next turn's start in one batch"). A finish right behind rows goes in
 * their insert statement (store_insert_finish; that of an answered run only when the batch's
 * last LLM row is the answer, run_ops.c), so that last batch is one statement.
 * kx_runner_db_batches_total, kx_runner_db_insert_statements_total and
 * kx_runner_db_message_rows_total count what the batches send (at debug level each batch is
 * logged: "run: batch: insert[types] load finish").
 *
 * Events keep their order: a row's MESSAGE event is published only after its batch committed,
 * and every other event of the run (chunks, too) that was asked for after a queued row waits
 * behind it. So nothing is ever published for a row that is not in Postgres, and the stream
 * shows the rows in the order they were written.
 *
 * The events a batch's completion publishes (its rows' MESSAGE events, the events queued
 * behind them, and what the run publishes while the completion runs: the terminal status
 * after the finish) go out as ONE kx.run.ev message (events.h, events_batch: split only before
 * NATS' size cap), with one JetStream ack, instead of one message each. Events published
 * while nothing is queued (chunks, mostly) still go out one by one, at once — except the text
 * a row's queueing flushes (chunks_flush in run_ops_insert: the end of a streamed answer): it
 * is queued right ahead of that row and leaves in its batch's message, before the row's event,
 * one commit later than alone, one message and one ack fewer per answer (docs/performance.md,
 * "Messages per run"). If that batch fails for any reason but the fence, such held events are
 * still published (before the failure's own events), as they would have been; if the fence
 * failed the run is no longer ours and nothing more of it is published.
 *
 * Fences are unchanged (store.c): the first fenced statement of a batch that finds the run no
 * longer ours (its lease epoch moved: stopped, reaped, claimed again) rolls the batch back and
 * the run is dropped without writing or publishing anything more; an insert that passed the
 * fence holds the run row (FOR SHARE) until the commit, so the rest of the batch passes too.
 * Postgres unreachable: the run is parked (runner_handback_later), as before.
 *
 * A batch that failed with a transient server error (SQLSTATE 40001 serialization failure,
 * 40P01 deadlock: a race lost, nothing written) is sent again whole, its events still held,
 * after 20, 40, 80 ms: up to RUN_OPS_RETRIES times in a row (every statement in it is
 * idempotent, as above). Any other failure goes to run_db_failed (run.h), with the server's
 * message in the reason: the batch of a run that ends then makes the run fail, and a run whose
 * failure cannot be written either is released to the reaper (run_ops_handback).
 *
 * Ownership: the queue and the batch in flight belong to the run; run_ops_clear (run_free)
 * frees the queue and detaches the batch in flight, which frees itself when it comes back.
 * Loop thread only. */
#ifndef RUNNER_RUN_OPS_H
#define RUNNER_RUN_OPS_H

#include <jansson.h>
#include <stdbool.h>
#include "agent_config.h"
#include "kx/db.h"
#include "kx/loop.h"

typedef struct run run;
typedef struct run_op run_op;
typedef struct run_batch run_batch;

typedef struct events_batch events_batch;

typedef struct run_ops {
    run_op *head, *tail; /* queued, not yet sent */
    events_batch *evb;   /* while a batch's completion publishes: its events gather here */
    run_batch *inflight; /* sent, not yet back */
    kx_timer *kick;      /* sends the queue on the next loop iteration */
    bool finishing;      /* the fenced finish is queued or in flight */
    bool handing_back;   /* the hand-back is queued or in flight */
    bool hold;           /* run_ops_insert: a publish now queues ahead of the row (see there) */
    int retries;         /* the failed batch sent again (a transient server error), in a row */
} run_ops;

/* What a load read (run_ops_load's continuation gets it; it takes msgs and agent). */
typedef struct run_loaded {
    json_t *msgs;       /* the thread as chat messages (context.h) */
    char last_type[32]; /* the newest LLM row's type, "" for none */
    bool agent_loaded;  /* the agent was asked for and read */
    agent_config agent;
} run_loaded;
typedef void (*run_load_then)(run *r, run_loaded *l);
/* Releases what l holds (it may be reused). */
void run_loaded_clear(run_loaded *l);

/* A load's reads in the open pipeline of a database thread (kx/db.h): the agent's row (when
 * with_agent) and the thread's LLM rows, two statements; then their answers, read back in the
 * same order, into l (afresh: what l held is released first). recv reads both answers even
 * after a failure (the pipeline stays in step); on one, why says what failed and l is empty.
 * Database thread only (run_ops.c's batches; the claim, dispatch.c). */
kx_err run_ops_load_send(kx_db *db, const char *run_id, const char *thread_id, bool with_agent,
                         int64_t read_bytes);
kx_err run_ops_load_recv(kx_db *db, bool with_agent, run_loaded *l, char *why, size_t whylen);

/* Queues a fenced insert of a messages row; takes content and metadata. ev_content (taken;
 * NULL: no event) is what the row's MESSAGE event shows as content, with ev_metadata (taken);
 * event_after_next: that event goes out after the next queued row's event (a tool row's event
 * follows its tool_completed status). The row's id is made here (message_id_out, may be
 * NULL). false when out of memory (nothing queued; the caller fails the run). */
bool run_ops_insert(run *r, const char *type, bool is_llm, json_t *content, json_t *metadata,
                    json_t *ev_content, json_t *ev_metadata, bool event_after_next,
                    char message_id_out[40]);
/* Publishes an event now, or after what is queued (takes payload; NULL is logged). */
void run_ops_publish(run *r, int kind, bool terminal, char *payload);
/* Queues the fenced finish; its completion calls run_finished. */
void run_ops_finish(run *r, const char *status, const char *error);
/* Queues the fenced finish "completed" of a run whose model answered without a tool call, only
 * if that answer is still the thread's newest LLM message (store.h: the read of the thread the
 * next turn would make to decide so, folded into the finish); its completion calls
 * run_finished, or run_answer_not_last when a newer message came (the run goes on). */
void run_ops_finish_answered(run *r);
/* Queues the fenced hand-back (drain: store_handback_run_send); release: the fenced release to
 * the reaper of a run whose end cannot be written instead (store.h, store_release_run_send).
 * Its completion lets the run go (run_handed_back); its failure: run_db_failed. */
void run_ops_handback(run *r, const char *why, bool release);
/* Queues the read of the thread (and of the agent when with_agent); then runs on the loop. */
void run_ops_load(run *r, bool with_agent, run_load_then then);
/* Whether something of the run is queued or in flight. */
bool run_ops_busy(const run *r);
/* After the loop stopped (shutdown): sends what is queued at once. */
void run_ops_send_now(run *r);
/* Drops the queue and detaches the batch in flight (run_free, run_drop). */
void run_ops_clear(run *r);

#endif
