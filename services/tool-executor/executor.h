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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/svc.h"
#include "outcome.h"

typedef struct te_config {
    int64_t tool_timeout_s;         /* KX_TOOL_TIMEOUT_S: general tools */
    int64_t sandbox_tool_timeout_s; /* KX_SANDBOX_TOOL_TIMEOUT_S: sandbox tools */
    int64_t stop_memory_s;          /* KX_TOOL_STOP_MEMORY_S: how long a STOP is remembered */
    int64_t stop_memory_runs;       /* KX_TOOL_STOP_MEMORY_RUNS: how many runs at most */
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
    struct te_kill *kills; /* kill requests awaiting their reply (tool_execute_command.c) */
    struct te_runs *runs;  /* epochs seen and STOPs remembered (runs.h) */
    size_t result_budget;  /* bytes an output_json may take (result_cap.h) */
    bool draining;
    kx_timer *abort_timer; /* drain: answers what is still in flight before the drain ends */
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
    void *state; /* the tool's own state while it runs */
};

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

/* control.c: subscribes kx.run.ctl.> */
kx_err te_control_start(te_executor *ex);

#endif
