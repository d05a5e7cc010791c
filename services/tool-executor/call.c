/* call.c — kx.tool.exec (queue group "tool-executor"): one kx.v1.ToolCall in, exactly one
 * kx.v1.ToolResult out, always before the caller's Kx-Deadline.
 *
 * Checks made here, before any tool runs: the body is a ToolCall, Kx-Deadline is present
 * (invalid_argument otherwise) and not already past (deadline_exceeded), call_id is set, the
 * tool exists ("Tool function '<name>' not found", not_found). Then the tool's start function
 * owns the call until it calls te_call_finish. Also here: metrics and the SIGTERM drain: stop
 * taking calls, let the ones in flight finish, then exit; calls still running
 * DRAIN_ABORT_MARGIN_MS before the drain timeout (KX_DRAIN_TIMEOUT_MS) are aborted — their
 * commands killed — and answered "tool-executor shutting down" (unavailable), so no caller is
 * left waiting for an executor that is gone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "kx/jsonschema.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "registry.h"
#include "result_cap.h"
#include "runs.h"

#define DRAIN_ABORT_MARGIN_MS 500

/* ---- metrics -------------------------------------------------------------------------- */

/* The outcome label: success / failure (the tool ran and failed) / timed_out / an error code
 * from the closed set of kx.v1.Error codes. */
static const char *outcome_label(const te_outcome *o)
{
    static const char *const codes[] = {"invalid_argument", "not_found", "deadline_exceeded",
                                        "unavailable",      "internal",  "cancelled"};
    if (o->timed_out)
        return "timed_out";
    if (o->error_code[0] == '\0')
        return o->success ? "success" : "failure";
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (strcmp(o->error_code, codes[i]) == 0)
            return codes[i];
    }
    return "error";
}

static void record_metrics(const te_call *c, const te_outcome *o, double seconds)
{
    /* Only registered tool names become label values; anything else is "unknown". */
    const char *tool = c->tool != NULL ? c->tool->name : "unknown";
    char labels[160];
    snprintf(labels, sizeof labels, "tool=\"%s\",outcome=\"%s\"", tool, outcome_label(o));
    kx_counter_add(kx_metrics_counter("kx_tool_calls_total", labels,
                                      "Tool calls answered, by tool and outcome"),
                   1);
    snprintf(labels, sizeof labels, "tool=\"%s\"", tool);
    kx_histogram_observe(kx_metrics_histogram("kx_tool_call_duration_seconds", labels,
                                              "Time from receiving a tool call to answering it",
                                              kx_metrics_latency_buckets,
                                              kx_metrics_latency_nbuckets),
                         seconds);
}

/* ---- the list of calls in flight -------------------------------------------------------- */

static void track(te_executor *ex, te_call *c)
{
    c->prev = NULL;
    c->next = ex->calls;
    if (ex->calls != NULL)
        ex->calls->prev = c;
    ex->calls = c;
    ex->ncalls++;
}

static void untrack(te_executor *ex, te_call *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ex->calls = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    ex->ncalls--;
}

static void drain_check(te_executor *ex)
{
    if (ex->draining && ex->ncalls == 0) {
        kx_timer_cancel(ex->abort_timer);
        ex->abort_timer = NULL;
        kx_info("tool-executor: drained");
        kx_svc_exit(ex->svc);
    }
}

static void on_drain_abort(kx_loop *loop, void *arg)
{
    te_executor *ex = arg;
    ex->abort_timer = NULL;
    kx_warn("tool-executor: %zu call(s) still running at the end of the drain: aborting them",
            ex->ncalls);
    while (ex->calls != NULL) { /* each abort finishes (and unlinks) its call */
        te_call *c = ex->calls;
        te_outcome o;
        te_outcome_init(&o);
        te_outcome_error(&o, KX_ERR_UNAVAILABLE, "tool-executor shutting down");
        /* False positive: a finished call is untracked before it is
         * freed; the head's prev is always NULL (track), so ex->calls moves past it */
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): safe, see the comment above
        if (c->tool != NULL && c->tool->abort != NULL)
            c->tool->abort(c, &o);
        else
            te_call_finish(c, &o);
    }
}

/* ---- finishing ------------------------------------------------------------------------ */

const char *te_outcome_status(const te_outcome *o)
{
    if (o->success)
        return "ok";
    if (o->timed_out || strcmp(o->error_code, "deadline_exceeded") == 0)
        return "timeout";
    if (strcmp(o->error_code, "cancelled") == 0)
        return "cancelled";
    if (strcmp(o->error_code, "unavailable") == 0)
        return "unavailable";
    return "error";
}

void te_call_finish(te_call *c, te_outcome *o)
{
    te_executor *ex = c->ex;
    int64_t ms = kx_mono_ms() - c->started_mono;
    const char *call_id = c->call != NULL && c->call->call_id ? c->call->call_id : "";

    if (te_result_cap(&o->output_json, ex->result_budget)) {
        kx_log(KX_LOG_WARN, c->call ? c->call->run_id : NULL, c->trace_id,
               "tool-executor: call %s: output cut to fit the bus (head and tail kept)", call_id);
        kx_counter_add(kx_metrics_counter("kx_tool_results_capped_total", "",
                                          "Tool results cut (head and tail kept) to fit the bus"),
                       1);
    }
    Kx__V1__Error err = KX__V1__ERROR__INIT;
    Kx__V1__ToolResult res = KX__V1__TOOL_RESULT__INIT;
    res.call_id = (char *)call_id;
    res.success = o->success;
    res.output_json = o->output_json != NULL ? o->output_json : "";
    res.timed_out = o->timed_out;
    res.duration_ms = ms;
    res.status = (char *)te_outcome_status(o);
    if (o->error_code[0] != '\0') {
        err.code = o->error_code;
        err.message = o->error_message;
        res.error = &err;
    }
    if (natsMsg_GetReply(c->req) != NULL) {
        kx_err rerr = kx_bus_respond_pb(ex->svc->bus, c->req, &res.base);
        if (rerr != KX_OK)
            kx_log(KX_LOG_WARN, c->call ? c->call->run_id : NULL, c->trace_id,
                   "tool-executor: could not send the result of call %s: %s", call_id,
                   kx_err_str(rerr));
    }
    kx_log(o->success ? KX_LOG_INFO : KX_LOG_WARN, c->call ? c->call->run_id : NULL, c->trace_id,
           "tool-executor: call %s (%s) answered in %lld ms: %s%s%s", call_id,
           c->tool ? c->tool->name : "?", (long long)ms, outcome_label(o),
           o->error_message[0] ? " — " : "", o->error_message);
    record_metrics(c, o, (double)ms / 1000.0);
    te_outcome_free(o);
    if (c->state_free != NULL)
        c->state_free(c);
    json_decref(c->args);

    untrack(ex, c);
    kx_bus_msg_free(c->req);
    kx_pb_free(c->call);
    free(c);
    drain_check(ex);
}

/* ---- receiving ------------------------------------------------------------------------ */

/* Parses the arguments and validates them against the tool's schema (with the coercions of
 * XML calls, kx/jsonschema.h) into c->args: false with o set when they are refused. */
static bool args_valid(te_call *c, te_outcome *o)
{
    const char *text = c->call->arguments_json;
    json_error_t jerr;
    c->args = kx_pb_str_empty(text) ? json_object() : json_loads(text, JSON_DECODE_ANY, &jerr);
    if (c->args == NULL) {
        te_outcome_error(o, KX_ERR_INVALID, "%s: the arguments are not JSON: %s", c->tool->name,
                         jerr.text);
        return false;
    }
    char why[400];
    kx_err err = kx_jsonschema_validate(te_registry_parameters(c->tool), &c->args, KX_JS_COERCE,
                                        why, sizeof why);
    if (err != KX_OK) {
        te_outcome_error(o, err == KX_ERR_NOMEM ? KX_ERR_NOMEM : KX_ERR_INVALID, "%s: %s",
                         c->tool->name, err == KX_ERR_NOMEM ? "out of memory" : why);
        return false;
    }
    return true;
}

/* An MCP tool's arguments: a JSON object (its schema is the server's). */
static bool mcp_args(te_call *c, te_outcome *o)
{
    const char *text = c->call->arguments_json;
    c->args = kx_pb_str_empty(text) ? json_object() : json_loads(text, 0, NULL);
    if (!json_is_object(c->args)) {
        te_outcome_error(o, KX_ERR_INVALID, "%s: the arguments must be a JSON object",
                         c->call->tool_name ? c->call->tool_name : "?");
        return false;
    }
    return true;
}

/* Whether the tool is offered here (configured) and, when the call carries the agent's
 * agentpress_tools, whether the agent has it: false with o set (not_found) otherwise. */
static bool tool_allowed(te_call *c, te_outcome *o)
{
    const te_tool *t = c->tool;
    if (!te_tool_offered(t)) {
        te_outcome_error(o, KX_ERR_NOT_FOUND,
                         "Tool function '%s' is not available: it is not configured on this "
                         "executor (see docs/operations.md)",
                         t->name);
        return false;
    }
    const char *text = c->call->agentpress_tools_json;
    if (kx_pb_str_empty(text))
        return true;
    json_t *cfg = json_loads(text, 0, NULL);
    bool ok = json_is_object(cfg);
    if (!ok)
        te_outcome_error(o, KX_ERR_INVALID, "agentpress_tools_json must be a JSON object");
    else if (!(ok = te_registry_agent_has(t, cfg)))
        te_outcome_error(o, KX_ERR_NOT_FOUND,
                         "Tool function '%s' is not enabled for this agent (its group '%s' is "
                         "not enabled in agentpress_tools)",
                         t->name, t->group != NULL ? t->group : "");
    json_decref(cfg);
    return ok;
}

/* The run's STOPs and epochs (runs.h): false with o set when the call must not run. */
static bool run_may_call(te_executor *ex, te_call *c, te_outcome *o)
{
    const char *why = "";
    switch (te_runs_check(ex->runs, c->call->run_id, c->call->lease_epoch, kx_mono_ms(), &why)) {
    case TE_RUN_OK: return true;
    case TE_RUN_STOPPED:
        te_outcome_error(o, KX_ERR_CANCELLED, "the run was stopped: %s", why);
        kx_counter_add(kx_metrics_counter("kx_tool_calls_cancelled_total", "",
                                          "Tool calls aborted because their run was stopped"),
                       1);
        return false;
    case TE_RUN_STALE: te_outcome_error(o, KX_ERR_CONFLICT, "%s", why); return false;
    }
    return true;
}

static void on_tool_call(natsMsg *msg, void *arg)
{
    te_executor *ex = arg;
    te_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        kx_error("tool-executor: out of memory for a tool call; it goes unanswered");
        kx_bus_msg_free(msg);
        return;
    }
    c->ex = ex;
    c->req = msg;
    c->started_mono = kx_mono_ms();
    track(ex, c);

    te_outcome o;
    te_outcome_init(&o);
    kx_err merr = kx_bus_meta_read(msg, &c->meta);
    kx_bus_trace_id(&c->meta, c->trace_id);
    c->call = kx_pb_unpack(&kx__v1__tool_call__descriptor, natsMsg_GetData(msg),
                           (size_t)natsMsg_GetDataLength(msg));
    if (c->call == NULL) {
        te_outcome_error(&o, KX_ERR_INVALID, "request is not a valid kx.v1.ToolCall");
    } else if (ex->draining) {
        te_outcome_error(&o, KX_ERR_UNAVAILABLE, "tool-executor shutting down");
    } else if (merr != KX_OK || c->meta.deadline == KX_NO_DEADLINE) {
        te_outcome_error(&o, KX_ERR_INVALID,
                         "the Kx-Deadline header (absolute unix ms) is required");
    } else if (kx_deadline_expired(c->meta.deadline)) {
        te_outcome_error(&o, KX_ERR_TIMEOUT, "the call's deadline has already passed");
    } else if (kx_pb_str_empty(c->call->call_id)) {
        te_outcome_error(&o, KX_ERR_INVALID, "call_id is required");
    } else if (c->call->mcp != NULL &&
               (!kx_pb_str_empty(c->call->mcp->server) ||
                !kx_pb_str_empty(c->call->mcp->server_json))) {
        c->tool = &te_mcp_tool; /* an agent's MCP tool: tool_mcp.c */
        if (run_may_call(ex, c, &o) && mcp_args(c, &o)) {
            c->tool->start(c);
            return;
        }
    } else if ((c->tool = te_registry_find(c->call->tool_name)) == NULL) {
        te_outcome_error(&o, KX_ERR_NOT_FOUND, "Tool function '%s' not found",
                         c->call->tool_name ? c->call->tool_name : "");
    } else if (!tool_allowed(c, &o)) {
        /* o says why: not configured here, or not the agent's */
    } else if (!run_may_call(ex, c, &o)) {
        /* o says why: the run was stopped, or the call's epoch is stale */
    } else if (!args_valid(c, &o)) {
        /* o names the argument and what was expected */
    } else {
        c->tool->start(c); /* the tool finishes the call, now or later */
        return;
    }
    te_call_finish(c, &o);
}

kx_err te_calls_start(te_executor *ex)
{
    kx_err err = kx_bus_subscribe_loop(ex->svc->bus, ex->svc->loop, KX_SUBJ_TOOL_EXEC,
                                       "tool-executor", on_tool_call, ex, &ex->sub);
    if (err != KX_OK)
        kx_error("tool-executor: cannot subscribe to %s: %s", KX_SUBJ_TOOL_EXEC, kx_err_str(err));
    return err;
}

void te_drain(kx_svc *svc, void *arg)
{
    te_executor *ex = arg;
    ex->draining = true;
    kx_info("tool-executor: draining: %zu call(s) in flight", ex->ncalls);
    if (ex->sub != NULL) {
        natsSubscription_Unsubscribe(ex->sub);
        natsSubscription_Destroy(ex->sub);
        ex->sub = NULL;
    }
    if (ex->schemas_sub != NULL) {
        natsSubscription_Unsubscribe(ex->schemas_sub);
        natsSubscription_Destroy(ex->schemas_sub);
        ex->schemas_sub = NULL;
    }
    if (ex->ncalls > 0) {
        int64_t ms = svc->drain_timeout_ms - DRAIN_ABORT_MARGIN_MS;
        ex->abort_timer = kx_loop_timer(svc->loop, ms > 0 ? ms : 0, on_drain_abort, ex);
        if (ex->abort_timer == NULL)
            on_drain_abort(svc->loop, ex);
    }
    drain_check(ex);
}
