/* run.h — one agent run as a state machine on the loop (docs/architecture.md, "A run's life"
 * and "The run event stream"). No thread per run: every transition is a callback (a timer, the
 * LLM transfer, a tool reply, a STOP) on the loop thread.
 *
 *   CLAIMED -> LOADING --(newest LLM message is the assistant's)--> FINISHING (completed)
 *                 |
 *                 v
 *           LLM_STREAMING --(text only)--> LOADING (next iteration)
 *                 |   \--(error after retries)--> FINISHING (failed)
 *                 v
 *           TOOL_RUNNING --(each call in order; then finish/thread_run_end)--> LOADING
 *
 * Any state -> DEAD: finished, fenced (a write matched no row), or STOP (no more writes or
 * events: whoever sent STOP fenced the run and published its terminal event).
 *
 * Ownership: the runner's table holds the run; runner_release queues it for freeing. */
#ifndef RUNNER_RUN_H
#define RUNNER_RUN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "agent_config.h"
#include "args_scan.h"
#include "chunks.h"
#include "kx/bus.h"
#include "kx/time.h"
#include "llm.h"
#include "run_ops.h"
#include "runner.h"
#include "store.h"
#include "tools.h"
#include "xml_calls.h"

typedef enum run_state {
    RUN_CLAIMED = 0,   /* claimed; the first step is queued */
    RUN_LOADING,       /* reading the thread, deciding the next turn */
    RUN_LLM_STREAMING, /* an LLM call (or its retry wait) is in flight */
    RUN_TOOL_RUNNING,  /* a tool call is in flight */
    RUN_FINISHING,     /* writing the end of the run */
    RUN_DEAD,          /* ended: waiting to be freed; nothing may touch the world */
} run_state;

/* One tool call of a turn (native or XML). */
typedef struct run_call {
    run *owner;
    size_t index;          /* tool_index */
    tools_pending pending; /* the request in flight (the calls array is not resized then) */
    tool_outcome outcome;  /* valid once done */
    bool launched, done;
    bool early;            /* started while the answer was still streaming (execute-on-stream) */
    char tool_call_id[80]; /* the model's id for native calls, "" for XML */
    char exec_id[80];      /* ToolCall.call_id: the native id, or a fresh uuid */
    char *name;
    char *arguments_text;   /* the JSON text sent to the executor */
    json_t *arguments;      /* shown in tool_execution.arguments */
    char *error;            /* set: the call could not be parsed; it fails without running */
    json_t *raw_parameters; /* XML only: parsing_details */
    char *raw_xml;          /* XML only */
} run_call;

struct run {
    runner *owner;
    run *hnext; /* runner table chain / graveyard list */
    run_state state;
    char id[40];
    char thread_id[40];
    char account_id[40];
    char project_id[40];
    int64_t epoch; /* lease epoch from the claim: fences every write */
    kx_deadline wall_deadline;
    char model[128];
    kx_bus_meta meta; /* trace context and account for what the run sends */
    char trace_id[33];
    uint64_t ev_seq;      /* RunEvent.seq, per run */
    uint64_t chunk_seq;   /* "sequence" of chunk events, per run, from 0 */
    int64_t iterations;   /* LLM turns started */
    bool failing;         /* writing a failure: another write error releases the run */
    bool released;        /* a release to the reaper was queued: never a second one */
    kx_timer *step_timer; /* the next step, on a fresh loop iteration */

    /* the current turn */
    bool turn_open;   /* thread_run_start saved, thread_run_end not yet */
    bool turn_queued; /* the turn's start rows were queued with the last turn's end (end_turn)
                       * before its read of the thread: queued_turn_loaded goes on from there */
    char thread_run_id[40];
    llm_call *llm;
    xml_scan xml_scan; /* streaming: how far the text was searched for an XML block */
    int64_t turn_started_ms;
    char *text;         /* the assistant's text (cut after the XML block) */
    json_t *tool_calls; /* native calls for the assistant message, or NULL */
    char finish_reason[40];
    char llm_model[128];
    bool have_usage;
    long long prompt_tokens, completion_tokens, total_tokens;
    int64_t response_ms;
    size_t request_bytes; /* for a usage estimate when the provider sends none */
    run_call **calls;     /* each allocated on its own: a call in flight never moves */
    size_t ncalls, next_call;
    bool xml_call;
    char assistant_message_id[40];
    size_t launched;      /* calls started (sequential: one at a time) */
    size_t early;         /* native calls already taken from the stream (execute-on-stream) */
    args_scan early_args; /* how far the arguments of call `early` were read */
    bool launching;       /* starting calls: completions wait for the loop to end */
    bool terminate;       /* ask or complete ran: the run ends after this turn */
    char *continued;      /* text of earlier answers of this turn that stopped at "length" */
    int64_t auto_continues;

    /* the agent (loaded at the first iteration) */
    bool agent_loaded;
    agent_config agent;
    bool model_from_run; /* agent_runs.metadata.model_name chose the model */
    char *system;        /* the rendered system prompt */
    json_t *tools;       /* the schemas of the agent's tools */
    bool sequential;
    int64_t max_xml_calls;
    chunks chunks; /* the text deltas not yet published (run_chunks.c) */
    run_ops ops;   /* database work queued or in flight (run_ops.h) */

    /* the agent's MCP tools (tool_schemas.h) */
    json_t *mcp_routes;       /* name -> route; NULL: none */
    bool agent_read;          /* its config is read (its MCP tools may still be awaited) */
    int64_t tools_wait_until; /* kx_mono_ms: how long to wait for them */

    /* see_image: the image the last tool results asked for, read before the LLM call */
    struct image_fetch *image_fetch; /* reading it (image_fetch.h), or NULL */
    json_t *image_wait;              /* the thread's messages, waiting for it */
    json_t *image_msg;               /* the message carrying it, for start_llm */

    run_loaded *first; /* read with the claim, for the first turn (run_start); NULL once used */
};

/* Creates the run for a successful claim, holds it in the runner and queues its first step.
 * meta (may be NULL) carries the dispatch's trace context. first (may be NULL): the run's
 * agent and thread, read in the claim's round trip (dispatch.c); the first turn starts from
 * them instead of reading them again (what it holds is moved out: the caller still clears
 * it). */
kx_err run_start(runner *owner, const char *run_id, const store_claim *claim,
                 kx_deadline wall_deadline, const kx_bus_meta *meta, run_loaded *first);

/* STOP: cancels the LLM transfer and the tool request now and releases the run, with no
 * further writes or events. */
void run_stop(run *r, const char *reason);

/* Drain with the run still going: cancels its work and hands it back to the queue (fenced,
 * behind the rows it already queued): another runner continues the thread; nothing more is
 * written or published. The run is released when the hand-back is back (or at once after the
 * loop stopped). */
void run_handback(run *r, const char *why);

/* For run_ops.c: a batch failed (err; at the finish or at the hand-back, why says what),
 * the fenced finish came back (won: it ended the run), the hand-back came back (why NULL: it
 * failed, already logged). */
void run_db_failed(run *r, kx_err err, bool at_finish, bool at_handback, const char *why);
void run_finished(run *r, const char *status, const char *error, bool won);
/* ... or the finish of an answered run (run_ops_finish_answered) was declined: a newer
 * message is in the thread; the run reads it and goes on. */
void run_answer_not_last(run *r);
void run_handed_back(run *r, const char *why);

/* Frees a released run (runner only). */
void run_free(run *r);

const char *run_state_name(run_state s);

/* run_chunks.c: the run's text deltas, coalesced (chunks.h) into chunk events with the run's
 * "sequence"; the coalescer holds text back while the publisher is busy. */
void run_chunks_init(run *r);
void run_stream_text(run *r, const char *delta, size_t len);

#endif
