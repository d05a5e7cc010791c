/* executor.h — the tool-executor's state and the life of one tool call.
 *
 * A call (te_call) is created when a kx.v1.ToolCall arrives on kx.tool.exec, handed to its
 * tool (registry.c), and ended exactly once with te_call_finish(), which replies with a
 * kx.v1.ToolResult, records metrics and frees the call. Everything runs on the loop thread;
 * a tool that waits (for the sandbox, say) does so with an async bus request, so one hung
 * call never holds up another.
 *
 * Modules:
 *   te_config.c        KX_TOOL_TIMEOUT_S, KX_SANDBOX_TOOL_TIMEOUT_S
 *   tool_args.c        argument validation (pure)
 *   deadline.c         the tool deadline T (pure)
 *   outcome.c          ToolResult contents, execute_command result mapping (pure)
 *   registry.c         the table of tools
 *   call.c             kx.tool.exec: receive, check, dispatch, reply; drain
 *   control.c          kx.run.ctl.>: STOP aborts the run's calls and kills their commands
 *   tool_execute_command.c   execute_command via the sandbox-broker */
#ifndef TE_EXECUTOR_H
#define TE_EXECUTOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/svc.h"
#include "kx/time.h"
#include "outcome.h"
#include <jansson.h>

typedef struct te_config {
    int64_t tool_timeout_s;         /* KX_TOOL_TIMEOUT_S: general tools */
    int64_t sandbox_tool_timeout_s; /* KX_SANDBOX_TOOL_TIMEOUT_S: sandbox tools */
    int64_t stop_memory_s;          /* KX_TOOL_STOP_MEMORY_S: how long a STOP is remembered */
    int64_t stop_memory_runs;       /* KX_TOOL_STOP_MEMORY_RUNS: how many runs at most */
    int64_t breaker_failures;       /* KX_TOOL_BREAKER_FAILURES: in a row before it opens (5) */
    int64_t breaker_open_ms;        /* KX_TOOL_BREAKER_OPEN_MS: open before a probe (60000) */
} te_config;

typedef struct te_call te_call;

typedef struct te_executor {
    kx_svc *svc;
    te_config cfg;
    kx_bus_async *async;       /* loop-bound requests to the sandbox-broker */
    natsSubscription *sub;     /* kx.tool.exec */
    natsSubscription *ctl_sub; /* kx.run.ctl.>: STOP aborts a run's calls (control.c) */
    te_call *calls;            /* calls in flight (doubly linked) */
    size_t ncalls;
    struct te_kill *kills;        /* kill requests awaiting their reply (tool_execute_command.c) */
    struct te_runs *runs;         /* epochs seen and STOPs remembered (runs.h) */
    struct te_breakers *breakers; /* one circuit breaker per dependency (breakers.c) */
    struct kx_db_worker *db;      /* Postgres on its own thread (db_call.c); NULL: none */
    natsSubscription *schemas_sub; /* kx.tool.schemas (schemas.c) */
    struct kx_curlm *curlm;        /* HTTP transfers of the web tools on the loop (tools_web.c) */
    size_t result_budget;          /* bytes an output_json may take (result_cap.h) */
    bool draining;
    atomic_bool subscribed; /* every subscription made: /readyz says ready (main.c) */
    kx_timer *abort_timer;  /* drain: answers what is still in flight before the drain ends */
} te_executor;

typedef struct te_tool te_tool;

struct te_call {
    te_call *prev, *next;
    te_executor *ex;
    natsMsg *req;           /* the caller's request; replied to by te_call_finish */
    Kx__V1__ToolCall *call; /* unpacked request */
    kx_bus_meta meta;       /* its headers: deadline D, traceparent, account */
    char trace_id[33];
    const te_tool *tool;
    int64_t started_mono;
    json_t *args; /* the arguments, validated against the tool's schema (coerced); owned */
    void *state;  /* the tool's own state while it runs */
    void (*state_free)(te_call *c); /* frees state; te_call_finish calls it (NULL: none) */
    /* One request at a time to a dependency (te_request): */
    uint64_t req_id;
    bool req_active;
    void (*reply_fn)(te_call *c, kx_err err, natsMsg *reply);
    const char *req_dep;   /* the dependency's breaker name (static or the breaker's) */
    int64_t req_timeout_s; /* for "timed out after N s" */
};

/* rpc.c — a request from a tool to a dependency (sandbox-broker, mcp-proxy) within the call's
 * deadline, through the dependency's circuit breaker. */
typedef void (*te_reply_fn)(te_call *c, kx_err err, natsMsg *reply);
/* The call's tool deadline T (deadline.h) for its tool's kind; timeout_s > 0 is the tool's own
 * `timeout` argument. */
kx_deadline te_call_deadline(const te_call *c, int timeout_s);
/* Sends msg on subject with Kx-Deadline = deadline; fn runs on the loop with the reply (to
 * destroy) or an error: KX_ERR_TIMEOUT when none came by the deadline. dep names the breaker
 * (e.g. "sandbox"). When the breaker is open, or sending fails, the call is finished here
 * (unavailable) and false returned; fn is then never called. */
bool te_request(te_call *c, const char *dep, const char *subject, const ProtobufCMessage *msg,
                kx_deadline deadline, te_reply_fn fn);
/* Whether a reply error code counts as the dependency failing (for its breaker). */
bool te_dep_error_counts(const char *code);
void te_breaker_record(te_executor *ex, const char *dep, bool ok);
/* A request allowed by te_breaker_allow ended without a verdict (aborted: STOP, shutdown):
 * a half-open breaker's probe slot is freed, nothing is counted. */
void te_breaker_release(te_executor *ex, const char *dep);

kx_err te_config_load(te_config *cfg);

/* tool_execute_command.c: frees what kill requests still pending hold (after
 * kx_bus_async_free, which drops their callbacks). */
void te_kills_free(te_executor *ex);

/* call.c */
kx_err te_calls_start(te_executor *ex); /* subscribes kx.tool.exec */
/* Replies with o (o is consumed: te_outcome_free is called), counts, frees the call. */
void te_call_finish(te_call *c, te_outcome *o);
/* "ok", "error", "timeout", "cancelled" or "unavailable" (ToolResult.status). */
const char *te_outcome_status(const te_outcome *o);
void te_drain(kx_svc *svc, void *arg); /* kx_svc drain callback (arg = executor) */

/* schemas.c: serves kx.tool.schemas */
kx_err te_schemas_start(te_executor *ex);
/* Frees the requests still waiting for the mcp-proxy (after kx_bus_async_free). */
void te_schemas_free(void);

/* breakers.c */
struct te_breakers *te_breakers_new(int failures, int64_t open_ms);
void te_breakers_free(struct te_breakers *b);
/* Whether a request to dep may go now; if not, why says so (the breaker is open). */
bool te_breaker_allow(te_executor *ex, const char *dep, char *why, size_t whylen);

/* control.c: subscribes kx.run.ctl.> */
kx_err te_control_start(te_executor *ex);

#endif
