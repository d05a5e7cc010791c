/* tools.h — tool calls from a run to the tool-executor: kx.v1.ToolCall on kx.tool.exec as a
 * loop-bound asynchronous request (kx_bus_async_request_pb) whose deadline is what is left of
 * the run: min(the run's wall deadline, now + TOOLS_CALL_MAX_S + 5 s). The executor applies
 * the one deadline rule (services/tool-executor/README.md, "Deadlines"): min(the tool's own
 * `timeout` argument, the tool's class timeout, this deadline). The runner does not cut a
 * call shorter itself: before, its KX_TOOL_TIMEOUT_S + 5 s (125 s) made the executor's 180 s
 * sandbox class and a `timeout` above 125 unreachable. The executor answers with
 * kx.v1.ToolResult by then even when the tool hangs; if it does not answer at all (timeout,
 * nobody listening) the caller still gets a failed result ("tool-executor did not answer: ...")
 * to give to the model, and the run goes on. */
#ifndef RUNNER_TOOLS_H
#define RUNNER_TOOLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "kx/bus.h"
#include "kx/err.h"
#include "kx/pb.h"
#include "kx/time.h"

/* What a tool call produced, as the run records it. */
typedef struct tool_outcome {
    bool success;
    json_t *output; /* the ToolResult output (parsed JSON, or a string); a new reference */
    char *error;    /* malloc'd, NULL on success */
} tool_outcome;

void tool_outcome_clear(tool_outcome *o);
/* A failed outcome with this message as output and error. */
void tool_outcome_fail(tool_outcome *o, const char *message);

/* Called on the loop thread exactly once per started request (unless cancelled); the outcome
 * is the callee's to clear. */
typedef void (*tools_done_cb)(void *arg, tool_outcome *outcome);

typedef struct tools_request {
    const char *call_id;
    const char *run_id;
    int64_t lease_epoch;
    const char *account_id;
    const char *project_id;
    const char *thread_id;
    const char *tool_name;
    const char *arguments_json; /* a JSON object */
    const kx_bus_meta *meta;    /* trace context and account; its deadline is replaced */
    kx_deadline wall_deadline;
    int64_t tool_timeout_s; /* unused: the executor's class timeouts decide (see above) */
    /* Set for one of the agent's MCP tools (tool_schemas.h gave its route): the executor sends
     * the call to the mcp-proxy. Borrowed; NULL for a built-in. */
    const Kx__V1__McpRoute *mcp;
    /* the agent's agentpress_tools as JSON, or NULL/"" (every tool): the executor refuses a
     * tool of a group the agent does not have */
    const char *agentpress_tools_json;
} tools_request;

/* The longest any tool may take (the largest `timeout` a tool accepts): a bound on the wait
 * for an executor that died with the call. */
#define TOOLS_CALL_MAX_S 3600

/* The Kx-Deadline of a call sent at now_ms (unix ms) by a run that must end by wall_deadline. */
kx_deadline tools_call_deadline(int64_t now_ms, kx_deadline wall_deadline);

/* A call in flight, in storage the caller owns (e.g. inside its run) until the callback ran or
 * tools_cancel returned. */
typedef struct tools_pending {
    kx_bus_async *ab;
    uint64_t req_id;
    bool active; /* sent, no callback yet */
    tools_done_cb cb;
    void *arg;
} tools_pending;

/* Sends the call. On an error return no callback will come: the caller records a failed
 * outcome itself. Loop thread. */
kx_err tools_call(kx_bus_async *ab, const tools_request *req, tools_pending *slot,
                  tools_done_cb cb, void *arg);
/* Cancels a call in flight (its callback will not run); no-op when none. Loop thread. */
void tools_cancel(tools_pending *slot);

/* Turns a ToolResult (or the absence of one) into an outcome. reply may be NULL. Exposed so the
 * reply path can be reasoned about on its own. */
void tools_outcome_from_reply(kx_err err, natsMsg *reply, tool_outcome *out);

#endif
