/* run.c — the agent loop of one run, as a state machine on the loop thread (see run.h for the
 * states). The exact order of saved rows and published events follows the table in
 * docs/architecture.md ("The run event stream"):
 *
 *   turn:  thread_run_start, assistant_response_start, chunks...,
 *          [per tool call, in order: tool_started, (first call only: assistant message),
 *           tool result row (saved), tool_completed|tool_failed, tool event]
 *          | [assistant message],
 *          finish, assistant_response_end (saved only), thread_run_end
 *   end:   terminal status (completed | failed, the latter preceded by a saved error status)
 *
 * Rule for every function below that writes: if it returns false, the run has been failed or
 * dropped and may already be queued for freeing — the caller returns at once. */
#include "run.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "context.h"
#include "context_budget.h"
#include "image_fetch.h"
#include "project_name.h"
#include "prompt.h"
#include "tool_schemas.h"
#include "tools_text.h"
#include "events.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/utf8.h"
#include "kx/uuid.h"

static void begin_iteration(kx_loop *loop, void *arg);
static void run_fail(run *r, const char *error);
static void run_release(run *r, const char *why);
static void on_tool_done(void *arg, tool_outcome *o);
static void advance_tools(run *r);
static void continue_answer(run *r);
static void continue_loaded(run *r, run_loaded *l);
static void iteration_loaded(run *r, run_loaded *l);
static void queued_turn_loaded(run *r, run_loaded *l);
static bool open_turn(run *r);
static void await_tools(kx_loop *loop, void *arg);
static bool on_llm_content(void *arg, const char *delta, size_t len);
static void on_llm_done(void *arg, llm_call *call, kx_err err, const char *message);
static bool run_tool_known(const run *r, const char *name);

const char *run_state_name(run_state s)
{
    switch (s) {
    case RUN_CLAIMED: return "claimed";
    case RUN_LOADING: return "loading";
    case RUN_LLM_STREAMING: return "llm_streaming";
    case RUN_TOOL_RUNNING: return "tool_running";
    case RUN_FINISHING: return "finishing";
    case RUN_DEAD: return "dead";
    }
    return "?";
}

static void rlog(run *r, kx_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rlog(run *r, kx_log_level level, const char *fmt, ...)
{
    if (level < kx_log_get_level())
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    kx_log(level, r->id, r->trace_id[0] ? r->trace_id : NULL, "%s", buf);
}

/* ---- lifecycle helpers ------------------------------------------------------------------ */

static void free_calls(run *r)
{
    for (size_t i = 0; i < r->ncalls; i++) {
        run_call *c = r->calls[i];
        free(c->name);
        free(c->arguments_text);
        json_decref(c->arguments);
        free(c->error);
        json_decref(c->raw_parameters);
        free(c->raw_xml);
        tools_cancel(&c->pending);
        tool_outcome_clear(&c->outcome);
        free(c);
    }
    free(r->calls);
    r->calls = NULL;
    r->ncalls = r->next_call = 0;
    r->early = 0;
    args_scan_reset(&r->early_args);
}

/* Forgets everything of the previous turn. */
static void clear_turn(run *r)
{
    free(r->text);
    r->text = NULL;
    json_decref(r->tool_calls);
    r->tool_calls = NULL;
    free_calls(r);
    memset(&r->xml_scan, 0, sizeof r->xml_scan);
    r->finish_reason[0] = '\0';
    r->llm_model[0] = '\0';
    r->have_usage = false;
    r->prompt_tokens = r->completion_tokens = r->total_tokens = 0;
    r->response_ms = 0;
    r->request_bytes = 0;
    r->xml_call = false;
    r->assistant_message_id[0] = '\0';
    r->launched = 0;
    r->launching = false;
    free(r->continued);
    r->continued = NULL;
    r->auto_continues = 0;
}

/* Cancels whatever is in flight: the LLM transfer, the tool request, the next step. */
static void cancel_work(run *r)
{
    llm_call_free(r->llm);
    r->llm = NULL;
    for (size_t i = 0; i < r->ncalls; i++)
        tools_cancel(&r->calls[i]->pending);
    kx_timer_cancel(r->step_timer);
    r->step_timer = NULL;
    image_fetch_cancel(r->image_fetch);
    r->image_fetch = NULL;
    json_decref(r->image_wait);
    r->image_wait = NULL;
    json_decref(r->image_msg);
    r->image_msg = NULL;
}

static void schedule_step(run *r, kx_timer_cb step)
{
    r->step_timer = kx_loop_timer(r->owner->loop, 0, step, r);
    if (r->step_timer == NULL)
        run_fail(r, "internal error: out of memory scheduling the next step");
}

/* Ends our part without writing anything more (fenced, stopped, or the database is gone). */
static void run_drop(run *r, const char *why)
{
    if (r->state == RUN_DEAD)
        return;
    rlog(r, KX_LOG_WARN, "run: dropped in state %s: %s", run_state_name(r->state), why);
    kx_counter_add(kx_metrics_counter("kx_runner_runs_dropped_total", "",
                                      "Runs let go without a final write (fenced, stopped)"),
                   1);
    cancel_work(r);
    chunks_clear(&r->chunks);
    run_ops_clear(r); /* nothing queued is written; a batch in flight is ignored */
    r->state = RUN_DEAD;
    runner_release(r->owner, r);
}

/* Postgres is unreachable (a restart, a failover): the run cannot go on, but it must not be
 * lost. It is dropped here and handed back to the queue as soon as Postgres answers again
 * (runner_handback_later retries the fenced hand-back), so another attempt continues the
 * thread; without this the run would stay `running` under a runner whose lease stays alive. */
static void run_park(run *r, const char *why)
{
    if (r->state == RUN_DEAD)
        return;
    runner_handback_later(r->owner, r->id, r->epoch);
    run_drop(r, why);
}

/* Postgres gone: the connection lost, the server unreachable or shutting down. Not a statement
 * timeout: that is Postgres answering (run_db_failed). */
static bool db_gone(kx_err err)
{
    return err == KX_ERR_UNAVAILABLE;
}

/* Publishes an event, after whatever of the run is still being written (run_ops.h); takes
 * payload (NULL = out of memory building it: logged). */
static void publish(run *r, Kx__V1__RunEventKind kind, bool terminal, char *payload)
{
    if (payload != NULL && kind != KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_CHUNK)
        chunks_flush(&r->chunks); /* the text streamed so far goes before the next event */
    run_ops_publish(r, (int)kind, terminal, payload);
}

/* Queues a messages row (fenced by the epoch; written by the next batch, run_ops.h) and, if
 * publish_it, its MESSAGE event once it is committed. Takes content and metadata. id_out (may
 * be NULL) gets the row's id at once. false: out of memory, and the run was failed. */
static bool save_row(run *r, const char *type, bool is_llm, json_t *content, json_t *metadata,
                     bool publish_it, char id_out[40])
{
    json_t *ev_content = publish_it ? json_incref(content) : NULL;
    json_t *ev_metadata = publish_it ? json_incref(metadata) : NULL;
    if (content != NULL && metadata != NULL &&
        run_ops_insert(r, type, is_llm, content, metadata, ev_content, ev_metadata, false, id_out))
        return true;
    if (content == NULL || metadata == NULL) {
        json_decref(content);
        json_decref(metadata);
        json_decref(ev_content);
        json_decref(ev_metadata);
    }
    char why[200];
    snprintf(why, sizeof why, "internal error: out of memory saving a %s message", type);
    if (r->failing)
        run_release(r, why);
    else
        run_fail(r, why);
    return false;
}

/* The run's end cannot be written (its failure could not be either): it is let go to the
 * scheduler's reaper (run_ops_handback, store.c SQL_RELEASE), which ends it within a pass or
 * two — queued again while attempts remain, else failed with why. Never dropped silently: the
 * runner's own lease would keep the run `running` until its wall time. */
static void run_release(run *r, const char *why)
{
    if (r->state == RUN_DEAD)
        return;
    if (r->released) { /* the release itself could not be sent (out of memory): no loop */
        rlog(r, KX_LOG_ERROR, "run: %s; let go (the reaper ends it at its wall time)", why);
        run_handed_back(r, NULL);
        return;
    }
    r->released = true;
    rlog(r, KX_LOG_ERROR, "run: its end cannot be written (%s); releasing it to the reaper", why);
    kx_counter_add(kx_metrics_counter("kx_runner_runs_released_total", "",
                                      "Runs let go to the reaper: their end could not be written"),
                   1);
    cancel_work(r);
    chunks_clear(&r->chunks);
    r->state = RUN_FINISHING;
    run_ops_handback(r, why, true);
}

/* A batch of the run's database work failed (run_ops.c): fenced -> dropped; Postgres gone
 * (the connection lost, unreachable) -> parked (handed back once it answers: the attempt is
 * given back); a statement timeout (Postgres answered: overloaded, or a lock held elsewhere)
 * -> released to the reaper at once (run_release), mid-run or at the end: the attempt counts,
 * so a write that always times out ends the run after max_attempts instead of running it again
 * and again, and no failure is written first (it would hold the lane up as long again);
 * otherwise (a server error: run_ops.c already sent a batch that lost a race again) the run
 * fails with why — also when the batch held its end (at_finish): the finish is written anew
 * as 'failed', after the error status — and a run whose failure cannot be written either is
 * released to the reaper. Only the fence is KX_ERR_CONFLICT here: store.c reports a server's
 * conflict as internal. So a run's end costs at most: the finish, the failure, the release
 * (each sent again at most RUN_OPS_RETRIES times when it lost a race), and the reaper's
 * attempts bound the rest. */
void run_db_failed(run *r, kx_err err, bool at_finish, bool at_handback, const char *why)
{
    if (r->state == RUN_DEAD)
        return;
    if (r->turn_queued) { /* its start rows were in the failed batch (or queued behind it) */
        r->turn_queued = false;
        r->turn_open = false;
    }
    if (at_handback && r->released && (db_gone(err) || err == KX_ERR_TIMEOUT)) {
        /* the release found Postgres gone (or timed out): this runner stays alive and keeps
         * its lease, so letting go would leave the run `running` until its wall time; the
         * hand-back is retried once Postgres answers (it gives the attempt back: once per
         * outage) */
        run_park(r, why);
        return;
    }
    if (at_handback) {
        rlog(r, KX_LOG_ERROR,
             "run: %s; let go (a hand-back: the reaper takes it when this runner's lease "
             "expires; a release: at its wall time)",
             why);
        run_handed_back(r, NULL);
        return;
    }
    if (err == KX_ERR_CONFLICT) {
        run_drop(r,
                 at_finish ? "fenced: the rows before the end found the run no longer "
                             "running with our epoch (stopped, reaped or claimed again)"
                           : "fenced: a message insert found the run no longer running with "
                             "our epoch (stopped, reaped or claimed again)");
        return;
    }
    if (db_gone(err))
        run_park(r, why);
    else if (err == KX_ERR_TIMEOUT || r->failing)
        run_release(r, why);
    else
        run_fail(r, why);
}

static json_t *turn_metadata(run *r)
{
    if (r->thread_run_id[0] == '\0')
        return json_object();
    return json_pack("{s:s}", "thread_run_id", r->thread_run_id);
}

/* A status row ({"status_type", ...}, not for the LLM) with metadata {"thread_run_id"}. */
static bool save_status(run *r, json_t *content)
{
    return save_row(r, "status", false, content, turn_metadata(r), true, NULL);
}

static bool save_simple_status(run *r, const char *status_type)
{
    return save_status(r, json_pack("{s:s}", "status_type", status_type));
}

/* The end: a fenced compare-and-set (queued behind the run's rows), then (only if we won it)
 * the terminal event: run_finished. */
static void run_finish(run *r, const char *status, const char *error)
{
    r->state = RUN_FINISHING;
    cancel_work(r);
    run_ops_finish(r, status, error);
}

void run_finished(run *r, const char *status, const char *error, bool won)
{
    if (!won) {
        run_drop(r, "fenced at finish: the run was stopped or reaped meanwhile");
        return;
    }
    bool ok = strcmp(status, "completed") == 0;
    publish(r, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS, true,
            ok ? events_status_json("completed", "Agent run completed successfully")
               : events_status_json("failed", error ? error : "Agent run failed"));
    char labels[64];
    snprintf(labels, sizeof labels, "status=\"%s\"", status);
    kx_counter_add(kx_metrics_counter("kx_runner_runs_finished_total", labels,
                                      "Runs this runner ended, by final status"),
                   1);
    rlog(r, ok ? KX_LOG_INFO : KX_LOG_WARN, "run: %s after %lld turn(s)%s%s", status,
         (long long)r->iterations, error ? ": " : "", error ? error : "");
    cancel_work(r);
    r->state = RUN_DEAD;
    if (r->iterations > 0) /* after the first run of a new project: its name (never fails) */
        project_name_after_run(r->owner, r->id, r->model);
    runner_release(r->owner, r);
}

/* Fails the run: a saved error status, thread_run_end if a turn is open, then the finish. */
static void run_fail(run *r, const char *error)
{
    if (r->state == RUN_DEAD || r->failing)
        return;
    r->failing = true;
    cancel_work(r);
    r->state = RUN_FINISHING;
    if (!save_status(r,
                     json_pack("{s:s, s:s, s:s}", "role", "system", "status_type", "error",
                               "message", error)))
        return;
    if (r->turn_open) {
        r->turn_open = false;
        if (!save_simple_status(r, "thread_run_end"))
            return;
    }
    run_finish(r, "failed", error);
}

/* ---- the turn's rows -------------------------------------------------------------------- */

static json_t *tool_calls_or_null(run *r)
{
    return r->tool_calls ? json_incref(r->tool_calls) : json_null();
}

/* The assistant message of the turn (complete), published. */
static bool save_assistant(run *r)
{
    json_t *content = json_pack("{s:s, s:s, s:o}", "role", "assistant", "content",
                                r->text ? r->text : "", "tool_calls", tool_calls_or_null(r));
    json_t *metadata =
        json_pack("{s:s, s:s}", "stream_status", "complete", "thread_run_id", r->thread_run_id);
    return save_row(r, "assistant", true, content, metadata, true, r->assistant_message_id);
}

/* assistant_response_end: saved, not streamed. */
static bool save_response_end(run *r)
{
    if (!r->have_usage) { /* the provider sent none: a rough estimate, as Kortix does */
        r->prompt_tokens = (long long)(r->request_bytes + 3) / 4;
        r->completion_tokens = (long long)((r->text ? strlen(r->text) : 0) + 3) / 4;
        r->total_tokens = r->prompt_tokens + r->completion_tokens;
    }
    const char *fr = r->finish_reason[0] ? r->finish_reason : "stop";
    json_t *content =
        json_pack("{s:[{s:s, s:i, s:{s:s, s:s, s:o}}], s:I, s:s, s:{s:I, s:I, s:I}, s:b, s:I}",
                  "choices", "finish_reason", fr, "index", 0, "message", "role", "assistant",
                  "content", r->text ? r->text : "", "tool_calls", tool_calls_or_null(r),
                  "created", (json_int_t)(kx_now_ms() / 1000), "model",
                  r->llm_model[0] ? r->llm_model : r->model, "usage", "prompt_tokens",
                  (json_int_t)r->prompt_tokens, "completion_tokens",
                  (json_int_t)r->completion_tokens, "total_tokens", (json_int_t)r->total_tokens,
                  "streaming", 1, "response_ms", (json_int_t)r->response_ms);
    return save_row(r, "assistant_response_end", false, content, turn_metadata(r), false, NULL);
}

/* finish (already saved by the caller), assistant_response_end, thread_run_end; then the next
 * iteration on a fresh loop iteration — or, when the model answered without a tool call, the
 * run's end: the next iteration would read the thread only to find that answer the newest
 * LLM message and finish; the finish checks that itself (run_ops_finish_answered), in the
 * same batch as the turn's rows, and the run goes on only if a newer message came. */
static void end_turn(run *r)
{
    if (!save_response_end(r))
        return;
    r->turn_open = false;
    if (!save_simple_status(r, "thread_run_end"))
        return;
    bool late = r->wall_deadline != KX_NO_DEADLINE && kx_deadline_expired(r->wall_deadline);
    if (r->ncalls == 0 && !late) { /* (late: begin_iteration fails the run, as before) */
        r->state = RUN_FINISHING;
        cancel_work(r);
        run_ops_finish_answered(r);
        return;
    }
    r->state = RUN_LOADING;
    if (!late && r->agent_loaded && r->iterations < r->owner->cfg->max_iterations) {
        /* The next turn's start rows go now, behind this turn's end: one insert statement for
         * both, and the read of the thread behind them in the same batch (run_ops.h) — not
         * an insert, a read and another insert in up to three batches. */
        r->turn_queued = true;
        if (open_turn(r))
            run_ops_load(r, false, queued_turn_loaded);
        return;
    }
    schedule_step(r, begin_iteration);
}

void run_answer_not_last(run *r)
{
    if (r->state == RUN_DEAD)
        return;
    if (r->owner->draining) { /* it would have ended here: let another runner go on */
        run_handback(r,
                     "handed back: the agent-runner is draining and the thread got a "
                     "newer message after the answer");
        return;
    }
    rlog(r, KX_LOG_INFO, "run: a newer message came after the answer; another turn");
    r->state = RUN_LOADING;
    schedule_step(r, begin_iteration);
}

/* A turn begins: thread_run_start (a new thread_run_id) and assistant_response_start. */
static bool open_turn(run *r)
{
    r->iterations++;
    kx_uuid_new(r->thread_run_id);
    if (!save_status(r,
                     json_pack("{s:s, s:s}", "status_type", "thread_run_start", "thread_run_id",
                               r->thread_run_id)))
        return false;
    r->turn_open = true;
    return save_simple_status(r, "assistant_response_start");
}

static bool save_finish(run *r, const char *reason)
{
    return save_status(r,
                       json_pack("{s:s, s:s}", "status_type", "finish", "finish_reason", reason));
}

/* ---- tool calls ------------------------------------------------------------------------- */

static char *xml_tag_name(const char *name)
{
    char *t = strdup(name);
    if (t != NULL)
        for (char *p = t; *p; p++)
            if (*p == '_')
                *p = '-';
    return t;
}

/* {"role": "assistant", "status_type", "function_name", "xml_tag_name", "message",
 *  "tool_index", "tool_call_id"} */
static json_t *tool_status(const run_call *c, const char *status_type, const char *message)
{
    char *tag = xml_tag_name(c->name);
    json_t *s =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o}", "role", "assistant", "status_type",
                  status_type, "function_name", c->name, "xml_tag_name", tag ? tag : "", "message",
                  message, "tool_index", (json_int_t)c->index, "tool_call_id",
                  c->tool_call_id[0] ? json_string(c->tool_call_id) : json_null());
    free(tag);
    return s;
}

/* {"tool_execution": {"function_name", "xml_tag_name", "tool_call_id", "arguments",
 *  "result": {"success", "output", "error"}}} */
static json_t *tool_execution(const run_call *c, const tool_outcome *o)
{
    char *tag = xml_tag_name(c->name);
    json_t *te =
        json_pack("{s:{s:s, s:s, s:o, s:o, s:{s:b, s:O, s:o}}}", "tool_execution", "function_name",
                  c->name, "xml_tag_name", tag ? tag : "", "tool_call_id",
                  c->tool_call_id[0] ? json_string(c->tool_call_id) : json_null(), "arguments",
                  c->arguments ? json_incref(c->arguments) : json_object(), "result", "success",
                  o->success, "output", o->output ? o->output : json_null(), "error",
                  o->error ? json_string(o->error) : json_null());
    free(tag);
    return te;
}

/* Sends call c to the tool-executor, or fails it at once (unparseable, unknown, disabled). */
static void launch_call(run *r, run_call *c)
{
    c->launched = true;
    r->launched++;
    char msg[400];
    const char *fail_why = c->error;
    const json_t *route = json_object_get(r->mcp_routes, c->name); /* one of its MCP tools */
    Kx__V1__McpRoute mcp = KX__V1__MCP_ROUTE__INIT;
    if (route != NULL) {
        mcp.server = (char *)kx_json_str(route, "server", "");
        mcp.tool = (char *)kx_json_str(route, "tool", "");
        mcp.server_json = (char *)kx_json_str(route, "server_json", "");
        mcp.custom = json_is_true(json_object_get(route, "custom"));
    } else if (fail_why == NULL && !agent_config_tool_enabled(&r->agent, c->name)) {
        snprintf(msg, sizeof msg,
                 "Tool function '%s' is not enabled for this agent (its tool family is off in "
                 "agentpress_tools)",
                 c->name);
        fail_why = msg;
    } else if (fail_why == NULL && !run_tool_known(r, c->name)) {
        snprintf(msg, sizeof msg, "Tool function '%s' not found", c->name);
        fail_why = msg;
    }
    if (fail_why != NULL) { /* the model gets the reason as the result */
        tool_outcome o = {0};
        tool_outcome_fail(&o, fail_why);
        on_tool_done(c, &o);
        return;
    }
    tools_request req = {
        .call_id = c->exec_id,
        .run_id = r->id,
        .lease_epoch = r->epoch,
        .account_id = r->account_id,
        .project_id = r->project_id,
        .thread_id = r->thread_id,
        .tool_name = c->name,
        .arguments_json = c->arguments_text,
        .meta = &r->meta,
        .wall_deadline = r->wall_deadline,
        .tool_timeout_s = r->owner->cfg->tool_timeout_s,
        .mcp = route != NULL ? &mcp : NULL,
    };
    /* the executor checks the groups too; an agent with no family on is sent as an object
     * that enables none ("{}" would mean every tool there, as in Kortix's config) */
    char *groups = r->agent.agentpress == NULL       ? NULL
        : json_object_size(r->agent.agentpress) == 0 ? strdup("{\"none\": false}")
                                                     : kx_json_dumps_compact(r->agent.agentpress);
    req.agentpress_tools_json = groups;
    kx_err err = tools_call(r->owner->async, &req, &c->pending, on_tool_done, c);
    free(groups);
    if (err != KX_OK) {
        tool_outcome o = {0};
        snprintf(msg, sizeof msg, "could not send the call to the tool-executor: %s",
                 kx_err_str(err));
        tool_outcome_fail(&o, msg);
        on_tool_done(c, &o);
        return;
    }
    rlog(r, KX_LOG_DEBUG, "run: tool call %s (%s) sent", c->exec_id, c->name);
}

/* tool_started for call c (the first one also saves the assistant message). */
static bool announce_call(run *r, run_call *c)
{
    char msg[300];
    snprintf(msg, sizeof msg, "Starting execution of %s", c->name);
    if (!save_status(r, tool_status(c, "tool_started", msg)))
        return false;
    if (c->index == 0 && !save_assistant(r))
        return false;
    return true;
}

/* Starts the turn's calls: all at once (parallel), or the first (sequential). */
static void start_calls(run *r)
{
    r->state = RUN_TOOL_RUNNING;
    r->next_call = 0;
    size_t upto = r->sequential ? 1 : r->ncalls;
    for (size_t i = 0; i < upto; i++)
        if (!announce_call(r, r->calls[i]))
            return;
    r->launching = true;
    for (size_t i = 0; i < upto; i++)
        if (!r->calls[i]->launched) /* not started from the stream already */
            launch_call(r, r->calls[i]);
    r->launching = false;
    advance_tools(r);
}

/* The text the model gets as a native tool result: the output itself when it is a string,
 * else its JSON text. malloc'd. */
static char *llm_result_text(const tool_outcome *o)
{
    if (json_is_string(o->output))
        return strdup(json_string_value(o->output));
    return kx_json_dumps_py(o->output ? o->output : json_null());
}

static void on_tool_done(void *arg, tool_outcome *o)
{
    run_call *c = arg;
    run *r = c->owner;
    c->outcome = *o;
    memset(o, 0, sizeof *o);
    c->done = true;
    if (!r->launching && r->state == RUN_TOOL_RUNNING) /* not while the answer streams */
        advance_tools(r);
}

/* Saves the result of call c: the tool row, tool_completed|tool_failed, the tool event. */
static bool record_call(run *r, run_call *c)
{
    tool_outcome *o = &c->outcome;
    kx_counter_add(kx_metrics_counter("kx_runner_tool_calls_total",
                                      o->success ? "result=\"ok\"" : "result=\"failed\"",
                                      "Tool calls made by runs, by outcome"),
                   1);
    json_t *te = tool_execution(c, o);
    json_t *content = NULL, *metadata = NULL;
    if (!r->xml_call) {
        char *text = llm_result_text(o);
        content = json_pack("{s:s, s:s, s:s, s:s}", "role", "tool", "tool_call_id",
                            c->tool_call_id, "name", c->name, "content", text ? text : "");
        free(text);
        metadata = json_pack("{s:s, s:O}", "assistant_message_id", r->assistant_message_id,
                             "frontend_content", te);
    } else {
        char *text = te ? kx_json_dumps_py(te) : NULL;
        content = json_pack("{s:s, s:s}", "role", "user", "content", text ? text : "");
        free(text);
        metadata = json_pack("{s:s, s:{s:s, s:o, s:s}, s:O}", "assistant_message_id",
                             r->assistant_message_id, "parsing_details", "function_name", c->name,
                             "raw_parameters",
                             c->raw_parameters ? json_incref(c->raw_parameters) : json_object(),
                             "raw_xml", c->raw_xml ? c->raw_xml : "", "frontend_content", te);
    }
    bool success = o->success;
    tool_outcome_clear(o);
    if (te == NULL || content == NULL || metadata == NULL) {
        json_decref(te);
        json_decref(content);
        json_decref(metadata);
        run_fail(r, "internal error: out of memory recording a tool result");
        return false;
    }
    /* the tool row; its event (content = {"tool_execution": ...}, as the frontend wants it)
     * goes out after the status row's */
    char tool_row_id[40];
    json_t *event_metadata = json_incref(metadata);
    if (!run_ops_insert(r, "tool", true, content, metadata, te, event_metadata, true,
                        tool_row_id)) {
        run_fail(r, "internal error: out of memory recording a tool result");
        return false;
    }
    bool terminating = agent_config_is_terminating(c->name);
    char msg[300];
    snprintf(msg, sizeof msg, success ? "Tool %s completed successfully" : "Tool %s failed",
             c->name);
    json_t *smeta = turn_metadata(r);
    json_object_set_new(smeta, "linked_tool_result_message_id", json_string(tool_row_id));
    if (terminating) /* a string, as Kortix */
        json_object_set_new(smeta, "agent_should_terminate", json_string("true"));
    if (!save_row(r, "status", false,
                  tool_status(c, success ? "tool_completed" : "tool_failed", msg), smeta, true,
                  NULL))
        return false;
    if (terminating)
        r->terminate = true;
    return true;
}

/* After the turn's calls: finish, and either the next iteration or (ask / complete) the end:
 * finish agent_terminated, assistant_response_end, thread_run_end, completed. */
static void end_tools(run *r)
{
    r->state = RUN_FINISHING;
    if (r->finish_reason[0] != '\0' && !save_finish(r, r->finish_reason))
        return;
    if (!r->terminate) {
        end_turn(r);
        return;
    }
    if (!save_finish(r, "agent_terminated") || !save_response_end(r))
        return;
    r->turn_open = false;
    if (!save_simple_status(r, "thread_run_end"))
        return;
    run_finish(r, "completed", NULL);
}

/* Records what is done, in index order, and starts what is next. */
static void advance_tools(run *r)
{
    if (r->state == RUN_DEAD)
        return;
    if (r->sequential) {
        while (r->next_call < r->launched && r->calls[r->next_call]->done) {
            if (!record_call(r, r->calls[r->next_call]))
                return;
            r->next_call++;
            if (r->terminate) /* sequential stops after ask / complete */
                break;
            if (r->next_call < r->ncalls && r->launched == r->next_call) {
                run_call *c = r->calls[r->next_call];
                if (!announce_call(r, c))
                    return;
                r->launching = true;
                launch_call(r, c);
                r->launching = false;
            }
        }
        if (r->terminate || r->next_call == r->ncalls)
            end_tools(r);
        return;
    }
    for (size_t i = 0; i < r->ncalls; i++)
        if (!r->calls[i]->done)
            return;
    for (size_t i = 0; i < r->ncalls; i++)
        if (!record_call(r, r->calls[i]))
            return;
    end_tools(r);
}

/* ---- the LLM's answer ------------------------------------------------------------------- */

static run_call *add_call(run *r)
{
    run_call **n = realloc(r->calls, (r->ncalls + 1) * sizeof *n);
    if (n == NULL)
        return NULL;
    r->calls = n;
    run_call *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    r->calls[r->ncalls] = c;
    c->owner = r;
    c->index = r->ncalls++;
    return c;
}

/* Whether the provider's id of the answer's call n can be sent back as it is: 1..79 bytes of
 * [A-Za-z0-9_-] (Anthropic refuses any other tool_use id with a 400, on every later turn of
 * the thread), and none of the answer's earlier calls' (their results could not be told
 * apart: the thread's repair drops the second). */
static bool call_id_usable(const run *r, size_t n, const char *id, size_t len)
{
    if (!llm_call_id_valid(id, len, sizeof r->calls[0]->tool_call_id - 1))
        return false;
    for (size_t k = 0; k < n; k++)
        if (strcmp(r->calls[k]->tool_call_id, id) == 0)
            return false;
    return true;
}

/* Run call c, the answer's call n (r->calls[n]; the calls before it filled), from the stream's
 * native call t. false on OOM. */
static bool fill_native_call(run *r, size_t n, run_call *c, const llm_tool_call *t)
{
    if (call_id_usable(r, n, t->id.s, t->id.len)) {
        snprintf(c->tool_call_id, sizeof c->tool_call_id, "%s", t->id.s);
    } else { /* no id, one too long to keep whole (cut, it could end inside a UTF-8 character
              * or equal another's), one of other characters, or one an earlier call of this
              * answer has: make one, the next request needs it (the assistant message and the
              * tool row both carry this one) */
        char u[KX_UUID_LEN + 1];
        kx_uuid_new(u);
        snprintf(c->tool_call_id, sizeof c->tool_call_id, "call_%s", u);
    }
    /* The exec id (ToolCall.call_id: the kill handle across executor and broker) is always
     * ours: a provider's tool_call_id need not be unique across runs. */
    char eid[KX_UUID_LEN + 1];
    kx_uuid_new(eid);
    snprintf(c->exec_id, sizeof c->exec_id, "%s", eid);
    c->name = strdup(t->name.len > 0 ? t->name.s : "");
    c->arguments_text = strdup(t->arguments.len > 0 ? t->arguments.s : "{}");
    if (c->name == NULL || c->arguments_text == NULL)
        return false;
    json_error_t jerr;
    c->arguments = json_loads(c->arguments_text, JSON_DECODE_ANY, &jerr);
    char why[400];
    if (!json_is_object(c->arguments)) {
        snprintf(why, sizeof why, "the arguments of %s are not a JSON object (%s)",
                 c->name[0] ? c->name : "the tool call", c->arguments ? "wrong type" : jerr.text);
        json_decref(c->arguments);
        c->arguments = json_string(c->arguments_text);
        c->error = strdup(why);
    } else if (c->name[0] == '\0') {
        c->error = strdup("the tool call has no function name");
    }
    return true;
}

/* Native tool calls: run_calls (those started from the stream are kept) and the assistant
 * message's tool_calls array. */
static bool take_native_calls(run *r, const llm_stream *s)
{
    r->tool_calls = json_array();
    if (r->tool_calls == NULL)
        return false;
    for (size_t i = 0; i < s->ncalls; i++) {
        run_call *c = i < r->early ? r->calls[i] : add_call(r);
        if (c == NULL || (i >= r->early && !fill_native_call(r, i, c, &s->calls[i])))
            return false;
        json_t *tc =
            json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", c->tool_call_id, "type", "function",
                      "function", "name", c->name, "arguments", c->arguments_text);
        if (tc == NULL || json_array_append_new(r->tool_calls, tc) != 0)
            return false;
    }
    snprintf(r->finish_reason, sizeof r->finish_reason, "tool_calls");
    return true;
}

/* Whether native call r->early of the streaming answer is complete: a later call has begun,
 * or its arguments already form a whole JSON object (nothing can follow one's closing brace;
 * args_scan.h reads each byte of them once). Anthropic's arguments given whole at the block's
 * start may still be replaced by deltas: not complete until a later call begins. */
static bool native_call_complete(run *r, const llm_stream *s)
{
    size_t i = r->early;
    if (i + 1 < s->ncalls)
        return true;
    const llm_tool_call *t = &s->calls[i];
    if (t->args_whole || t->name.len == 0 || t->arguments.len == 0)
        return false;
    return args_scan_whole(&r->early_args, t->arguments.s, t->arguments.len);
}

/* Execute-on-stream: with the parallel strategy a native call starts as soon as it is complete
 * in the stream (its rows are written in order after the answer, as for the others). Runs
 * inside the LLM transfer's callback: it writes nothing and frees nothing. */
static void on_llm_calls(void *arg, const llm_stream *s)
{
    run *r = arg;
    if (r->sequential || s->ncalls == 0)
        return;
    while (r->early < s->ncalls && native_call_complete(r, s)) {
        const llm_tool_call *t = &s->calls[r->early];
        run_call *c = add_call(r);
        if (c == NULL || !fill_native_call(r, r->early, c, t))
            return; /* out of memory: on_llm_done reports it */
        r->early++;
        args_scan_reset(&r->early_args);
        c->early = true;
        rlog(r, KX_LOG_DEBUG, "run: tool call %zu (%s) complete in the stream; starting it",
             c->index, c->name);
        launch_call(r, c);
    }
}

/* The "function" object ({"name", "description", "parameters"}) of the agent's schema of that
 * name (built-in or MCP, as the model was offered it), or NULL. Borrowed from r->tools. */
static const json_t *run_tool_function(const run *r, const char *name)
{
    size_t i;
    const json_t *t;
    json_array_foreach(r->tools, i, t)
    {
        const json_t *fn = json_object_get(t, "function");
        if (strcmp(kx_json_str(fn, "name", ""), name) == 0)
            return fn;
    }
    return NULL;
}

/* The XML <function_calls> block of the text: its invokes, up to max_xml_tool_calls, taken in
 * one walk of the block (each with its own <invoke> as raw_xml); the text is cut after the
 * block. */
static bool take_xml_calls(run *r)
{
    size_t block_end = 0, len = strlen(r->text);
    xml_walk walk = {0};
    for (size_t i = 0; i < (size_t)r->max_xml_calls; i++) {
        xml_call x;
        xml_calls_result res = xml_calls_next(&walk, r->text, len, &x);
        if (res == XML_CALLS_NONE)
            break;
        run_call *c = add_call(r);
        if (c == NULL) {
            xml_call_clear(&x);
            return false;
        }
        char u[KX_UUID_LEN + 1];
        kx_uuid_new(u);
        snprintf(c->exec_id, sizeof c->exec_id, "%s", u);
        c->name = strdup(x.function_name && x.function_name[0] ? x.function_name : "unknown");
        /* A string parameter gets the text the model wrote, not the parser's guess of a type
         * ("007" stays "007"). Here and not in the executor: only the runner has that text
         * (ToolCall carries JSON arguments, where 7 no longer says it was "007"), and it holds
         * the schemas the model was offered; tool_execution.arguments then show what ran. */
        if (res == XML_CALLS_FOUND &&
            !xml_calls_apply_schema(&x,
                                    json_object_get(run_tool_function(r, x.function_name),
                                                    "parameters"))) {
            xml_call_clear(&x);
            return false;
        }
        c->arguments = json_incref(x.arguments);
        c->arguments_text = kx_json_dumps_compact(x.arguments);
        c->raw_parameters = json_incref(x.raw_parameters);
        c->raw_xml = strdup(x.raw_xml ? x.raw_xml : "");
        if (res == XML_CALLS_ERROR) {
            char why[400];
            snprintf(why, sizeof why, "could not parse the <function_calls> block: %s", x.error);
            c->error = strdup(why);
        }
        block_end = x.block_end;
        xml_call_clear(&x);
        if (c->name == NULL || c->arguments_text == NULL || c->raw_xml == NULL)
            return false;
        if (res == XML_CALLS_ERROR)
            break;
    }
    if (r->ncalls == 0)
        return true;
    if (block_end < len)
        r->text[block_end] = '\0';
    r->xml_call = true;
    snprintf(r->finish_reason, sizeof r->finish_reason, "xml_tool_limit_reached");
    return true;
}

static bool on_llm_content(void *arg, const char *delta, size_t len)
{
    run *r = arg;
    run_stream_text(r, delta, len); /* coalesced into chunk events (run_chunks.c) */
    /* Kortix runs one XML call per turn and stops reading the model once its block closed */
    const llm_stream *s = llm_call_result(r->llm);
    if (s->ncalls == 0 && xml_calls_scan(&r->xml_scan, s->content.s, s->content.len)) {
        rlog(r, KX_LOG_DEBUG, "run: XML tool call complete; not reading the rest of the answer");
        return false;
    }
    return true;
}

static void on_llm_done(void *arg, llm_call *call, kx_err err, const char *message)
{
    run *r = arg;
    if (err != KX_OK) {
        char why[2600];
        snprintf(why, sizeof why, "LLM request failed: %s", message);
        kx_utf8_scrub(why); /* the cut above may split a character */
        run_fail(r, why);   /* frees the call (cancel_work) */
        return;
    }
    const llm_stream *s = llm_call_result(call);
    r->text = strndup(s->content.s ? s->content.s : "", s->content.len);
    snprintf(r->llm_model, sizeof r->llm_model, "%s",
             s->model[0] ? s->model : llm_call_model(call));
    r->request_bytes = llm_call_request_bytes(call); /* the fallback's body, if it answered */
    snprintf(r->finish_reason, sizeof r->finish_reason, "%s", s->finish_reason);
    r->have_usage = s->have_usage;
    r->prompt_tokens = s->prompt_tokens;
    r->completion_tokens = s->completion_tokens;
    r->total_tokens = s->total_tokens;
    int64_t first = llm_call_first_chunk_ms(call), last = llm_call_last_chunk_ms(call);
    r->response_ms = first > 0 ? last - first : kx_now_ms() - r->turn_started_ms;
    bool ok = r->text != NULL && (s->ncalls == 0 || take_native_calls(r, s));
    llm_call_free(call);
    r->llm = NULL;
    if (ok && r->ncalls == 0 && strcmp(r->finish_reason, "length") == 0 &&
        r->auto_continues < r->owner->cfg->max_auto_continues) {
        continue_answer(r); /* the same turn goes on from where the model stopped */
        return;
    }
    if (ok && r->continued != NULL) { /* the text of this turn's earlier answers first */
        size_t a = strlen(r->continued), b = strlen(r->text);
        char *all = malloc(a + b + 80);
        if (all != NULL) {
            memcpy(all, r->continued, a);
            memcpy(all + a, r->text, b + 1);
            if (strcmp(r->finish_reason, "length") == 0 && r->ncalls == 0)
                snprintf(all + a + b, 80, "\n[Agent reached maximum auto-continue limit of %lld]",
                         (long long)r->owner->cfg->max_auto_continues);
        }
        free(r->text);
        r->text = all;
        ok = all != NULL;
    }
    if (ok && r->ncalls == 0)
        ok = take_xml_calls(r);
    if (!ok) {
        run_fail(r, "internal error: out of memory reading the model's answer");
        return;
    }
    rlog(r, KX_LOG_DEBUG, "run: turn %lld answered: %zu chars, %zu tool call(s), finish %s",
         (long long)r->iterations, strlen(r->text), r->ncalls, r->finish_reason);
    if (r->ncalls > 0) {
        start_calls(r);
        return;
    }
    r->state = RUN_FINISHING;
    if (!save_assistant(r))
        return;
    if (!save_finish(r, r->finish_reason[0] ? r->finish_reason : "stop"))
        return;
    end_turn(r);
}

/* ---- iterations --------------------------------------------------------------------------- */

/* The schemas of the agent's tools: the one seam through which the loop gets them — the
 * tool-executor's built-ins (tool_schemas.h, cached; filtered to the agent's families here),
 * or prompt.h's execute_command until the executor answered; then the tools of the agent's MCP
 * servers (their routes kept in r->mcp_routes). A new reference, NULL on OOM. *ready is false
 * while the first answer about the agent's MCP servers is still awaited. */
static json_t *run_tool_schemas(run *r, bool *ready)
{
    json_t *builtin = prompt_tools();
    char *custom = json_array_size(r->agent.custom_mcps) > 0
        ? kx_json_dumps_compact(r->agent.custom_mcps)
        : NULL;
    char *configured = json_array_size(r->agent.configured_mcps) > 0
        ? kx_json_dumps_compact(r->agent.configured_mcps)
        : NULL;
    tool_schemas_view v;
    *ready = tool_schemas_lookup(r->account_id, custom, configured, builtin, &v); /* borrowed */
    json_t *tools = v.tools != NULL ? agent_config_filter_tools(&r->agent, v.tools) : NULL;
    if (tools != NULL && v.mcp_tools != NULL && json_array_extend(tools, v.mcp_tools) != 0) {
        json_decref(tools);
        tools = NULL;
    }
    json_decref(r->mcp_routes);
    r->mcp_routes = json_incref(v.mcp_routes);
    free(custom);
    free(configured);
    json_decref(builtin);
    return tools;
}

/* Whether the model may name this function: one of the agent's schemas, or a function of a
 * known family (its executor answers for it). */
static bool run_tool_known(const run *r, const char *name)
{
    return run_tool_function(r, name) != NULL || agent_config_family(name) != NULL;
}

/* The run's agent, model, strategy, tools and system prompt, from the agent the first load
 * read (taken from l). */
static bool apply_agent(run *r, run_loaded *l)
{
    if (r->agent_loaded)
        return true;
    runner *o = r->owner;
    if (!r->agent_read) {
        if (!l->agent_loaded)
            return true;
        agent_config_clear(&r->agent);
        r->agent = l->agent; /* ours now */
        l->agent_loaded = false;
        r->agent_read = true;
        r->tools_wait_until = kx_mono_ms() + TOOL_SCHEMAS_MCP_WAIT_MS;
    }
    bool ready = true;
    json_t *tools = run_tool_schemas(r, &ready);
    if (!ready && kx_mono_ms() < r->tools_wait_until) { /* its MCP servers are being listed */
        json_decref(tools);
        r->step_timer = kx_loop_timer(o->loop, 50, await_tools, r);
        if (r->step_timer == NULL)
            run_fail(r, "internal error: out of memory scheduling the next step");
        return false;
    }
    if (!ready)
        rlog(r, KX_LOG_WARN,
             "run: the agent's MCP servers were not listed within %d s; going on without their "
             "tools",
             TOOL_SCHEMAS_MCP_WAIT_MS / 1000);
    r->agent_loaded = true;
    if (!r->model_from_run && r->agent.model[0] != '\0')
        snprintf(r->model, sizeof r->model, "%s", r->agent.model);
    r->sequential = r->agent.strategy_set ? r->agent.strategy == AGENT_STRATEGY_SEQUENTIAL
                                          : o->cfg->sequential_tools;
    r->max_xml_calls =
        r->agent.max_xml_tool_calls > 0 ? r->agent.max_xml_tool_calls : o->cfg->max_xml_tool_calls;
    r->tools = tools;
    if (r->agent.system_prompt != NULL) {
        char *rendered = agent_config_render(r->agent.system_prompt, time(NULL));
        r->system = rendered ? prompt_with_tools(rendered, r->tools) : NULL;
        free(rendered);
    } else {
        r->system = strdup(prompt_system());
    }
    if (r->tools == NULL || r->system == NULL) {
        run_fail(r, "internal error: out of memory building the agent's prompt");
        return false;
    }
    if (r->agent.found)
        rlog(r, KX_LOG_INFO, "run: agent %s version %s, model %s, %zu tool(s), %s",
             r->agent.agent_id, r->agent.version_id, r->model, json_array_size(r->tools),
             r->sequential ? "sequential" : "parallel");
    return true;
}

/* The thread as the model gets it: cut to the model's budget, the partial answer of a length
 * continuation last; then the LLM call. Takes msgs. */
static void start_llm(run *r, json_t *msgs)
{
    runner *o = r->owner;
    /* The tools' text, from each schema's cached text (tools_text.h): held only while the call
     * starts (the call keeps its own copy), not for the run's life — a held run's memory. */
    char *tools_text = tools_text_print(r->tools);
    if (tools_text == NULL) {
        json_decref(msgs);
        run_fail(r, "internal error: out of memory printing the agent's tools");
        return;
    }
    if (r->continued != NULL)
        json_array_append_new(msgs,
                              json_pack("{s:s, s:s}", "role", "assistant", "content",
                                        r->continued));
    int64_t budget = context_budget_for(o->cfg->context_budgets, r->model);
    int64_t fixed = context_text_tokens(strlen(r->system) + strlen(tools_text));
    context_fit_report rep;
    if (context_fit(msgs, budget, fixed, &rep) != 0) {
        free(tools_text);
        json_decref(msgs);
        run_fail(r, "internal error: out of memory fitting the thread into the context");
        return;
    }
    if (rep.truncated > 0 || rep.dropped > 0)
        rlog(r, KX_LOG_INFO,
             "run: context over the budget of %s (%lld tokens): %zu message(s) cut, %zu dropped; "
             "estimate %lld -> %lld tokens",
             r->model, (long long)budget, rep.truncated, rep.dropped, (long long)rep.tokens_before,
             (long long)rep.tokens_after);
    context_strip_ids(msgs);
    if (r->image_msg != NULL) { /* see_image: after the fit (its bytes are not text tokens) */
        json_array_append_new(msgs, r->image_msg);
        r->image_msg = NULL;
    }
    r->state = RUN_LLM_STREAMING;
    /* the provider is chosen by the model name (llm_route.h); the call keeps msgs */
    llm_opts opts = {.system = r->system,
                     .tools = r->tools,
                     .tools_text = tools_text,
                     .on_calls = on_llm_calls};
    r->llm = llm_call_start_opts(o->llm, r->model, msgs, &opts, r->wall_deadline, r->id,
                                 on_llm_content, on_llm_done, r);
    free(tools_text);
    json_decref(msgs);
    if (r->llm == NULL) {
        run_fail(r, "internal error: out of memory starting the LLM request");
        return;
    }
    r->request_bytes = llm_call_request_bytes(r->llm);
}

#define IMAGE_FETCH_MS 30000

static void on_image(void *arg, kx_err err, unsigned char *data, size_t len, const char *why)
{
    run *r = arg;
    r->image_fetch = NULL;
    context_image_ref ref;
    json_t *msgs = r->image_wait;
    r->image_wait = NULL;
    if (!context_pending_image(msgs, &ref)) { /* cannot happen: it was found before */
        free(data);
        start_llm(r, msgs);
        return;
    }
    if (err == KX_OK) {
        r->image_msg = context_image_message(&ref, data, len);
        rlog(r, KX_LOG_DEBUG, "run: see_image: %s (%s, %zu bytes) goes to the model",
             ref.file_path, ref.mime_type, len);
    } else {
        rlog(r, KX_LOG_WARN, "run: see_image: %s could not be read: %s", ref.file_path, why);
        r->image_msg = context_image_failed_message(&ref, why ? why : kx_err_str(err));
    }
    free(data);
    start_llm(r, msgs);
}

/* start_llm, after reading the image a see_image result among the newest tool results asked
 * for (image_fetch.h: through the sandbox-broker, off the loop's back). Takes msgs. */
static void start_llm_with_image(run *r, json_t *msgs)
{
    context_image_ref ref;
    if (!context_pending_image(msgs, &ref)) {
        start_llm(r, msgs);
        return;
    }
    kx_deadline d = kx_deadline_in(IMAGE_FETCH_MS);
    if (r->wall_deadline != KX_NO_DEADLINE && r->wall_deadline < d)
        d = r->wall_deadline;
    r->image_wait = msgs;
    r->image_fetch =
        image_fetch_start(r->owner->async, r->project_id, &r->meta, d, &ref, on_image, r);
    if (r->image_fetch == NULL) {
        r->image_wait = NULL;
        r->image_msg = context_image_failed_message(&ref, "the sandbox could not be asked");
        start_llm(r, msgs);
    }
}

/* finish "length": the answer so far is kept and the model asked to go on (Kortix's
 * auto-continue, up to KX_MAX_AUTO_CONTINUES); nothing is saved until the answer ends. */
static void continue_answer(run *r)
{
    size_t a = r->continued ? strlen(r->continued) : 0, b = strlen(r->text);
    char *all = realloc(r->continued, a + b + 1);
    if (all == NULL) {
        run_fail(r, "internal error: out of memory continuing the answer");
        return;
    }
    memcpy(all + a, r->text, b + 1);
    r->continued = all;
    free(r->text);
    r->text = NULL;
    r->finish_reason[0] = '\0';
    r->auto_continues++;
    rlog(r, KX_LOG_DEBUG, "run: answer cut at the length limit; continuing (%lld of %lld)",
         (long long)r->auto_continues, (long long)r->owner->cfg->max_auto_continues);
    run_ops_load(r, false, continue_loaded);
}

/* continue_answer's read of the thread is back. */
static void continue_loaded(run *r, run_loaded *l)
{
    json_t *msgs = l->msgs;
    l->msgs = NULL;
    start_llm(r, msgs);
}

static void begin_iteration(kx_loop *loop, void *arg)
{
    (void)loop;
    run *r = arg;
    r->step_timer = NULL; /* the loop freed it */
    clear_turn(r);
    r->state = RUN_LOADING;
    if (r->wall_deadline != KX_NO_DEADLINE && kx_deadline_expired(r->wall_deadline)) {
        run_fail(r, "the run exceeded its wall time");
        return;
    }
    run_loaded *first = r->first;
    r->first = NULL;
    if (first != NULL && r->iterations == 0 && !run_ops_busy(r)) {
        /* the first turn: the agent and the thread came with the claim (dispatch.c) */
        iteration_loaded(r, first);
        run_loaded_clear(first);
        free(first);
        return;
    }
    if (first != NULL) {
        run_loaded_clear(first);
        free(first);
    }
    /* behind the rows of the last turn, in the same batch: the read sees them */
    run_ops_load(r, !r->agent_read, iteration_loaded);
}

/* The agent's MCP tools are awaited (apply_agent): once the runner's cache has them, or the
 * wait is over, the iteration starts again (its thread read afresh; the agent is kept). */
static void await_tools(kx_loop *loop, void *arg)
{
    run *r = arg;
    r->step_timer = NULL; /* the loop freed it */
    bool ready = true;
    json_decref(run_tool_schemas(r, &ready));
    if (!ready && kx_mono_ms() < r->tools_wait_until) {
        r->step_timer = kx_loop_timer(r->owner->loop, 50, await_tools, r);
        if (r->step_timer == NULL)
            run_fail(r, "internal error: out of memory scheduling the next step");
        return;
    }
    begin_iteration(loop, r);
}

/* begin_iteration's read of the agent (first iteration) and of the thread is back. */
static void iteration_loaded(run *r, run_loaded *l)
{
    runner *o = r->owner;
    if (!apply_agent(r, l))
        return;
    json_t *msgs = l->msgs;
    l->msgs = NULL;
    if (strcmp(l->last_type, "assistant") == 0) { /* the model answered without a tool call */
        json_decref(msgs);
        run_finish(r, "completed", NULL);
        return;
    }
    if (r->iterations >= o->cfg->max_iterations) {
        json_decref(msgs);
        char why[100];
        snprintf(why, sizeof why, "reached max iterations (%lld)",
                 (long long)o->cfg->max_iterations);
        run_fail(r, why);
        return;
    }
    if (!open_turn(r)) {
        json_decref(msgs);
        return;
    }
    r->turn_started_ms = kx_now_ms();
    start_llm_with_image(r, msgs);
}

/* The read of the thread for a turn whose start rows were queued with the last turn's end
 * (end_turn) is back: the model is called — unless the thread's newest LLM message is an
 * answer (another writer added one after our tool results): then the opened turn is closed
 * and the run completed, as begin_iteration's read would have decided. */
static void queued_turn_loaded(run *r, run_loaded *l)
{
    r->turn_queued = false;
    clear_turn(r); /* the last turn's calls (safe here: no tool callback is on the stack) */
    json_t *msgs = l->msgs;
    l->msgs = NULL;
    if (strcmp(l->last_type, "assistant") == 0) {
        json_decref(msgs);
        r->turn_open = false;
        if (save_simple_status(r, "thread_run_end"))
            run_finish(r, "completed", NULL);
        return;
    }
    r->turn_started_ms = kx_now_ms();
    start_llm_with_image(r, msgs);
}

/* ---- public --------------------------------------------------------------------------- */

kx_err run_start(runner *owner, const char *run_id, const store_claim *claim,
                 kx_deadline wall_deadline, const kx_bus_meta *meta, run_loaded *first)
{
    run *r = calloc(1, sizeof *r);
    if (r == NULL)
        return KX_ERR_NOMEM;
    if (first != NULL && (r->first = malloc(sizeof *r->first)) != NULL) {
        *r->first = *first; /* moved: first keeps nothing to free */
        *first = (run_loaded){0};
    }
    r->owner = owner;
    snprintf(r->id, sizeof r->id, "%s", run_id);
    snprintf(r->thread_id, sizeof r->thread_id, "%s", claim->thread_id);
    snprintf(r->account_id, sizeof r->account_id, "%s", claim->account_id);
    snprintf(r->project_id, sizeof r->project_id, "%s", claim->project_id);
    snprintf(r->model, sizeof r->model, "%s",
             claim->model_name[0] ? claim->model_name : owner->cfg->model);
    r->model_from_run = claim->model_name[0] != '\0';
    r->epoch = claim->epoch;
    r->wall_deadline = wall_deadline;
    if (meta != NULL && meta->traceparent[0] != '\0')
        r->meta = *meta;
    else
        kx_bus_meta_init(&r->meta, KX_NO_DEADLINE, claim->account_id);
    r->meta.deadline = KX_NO_DEADLINE;
    snprintf(r->meta.account, sizeof r->meta.account, "%s", claim->account_id);
    kx_bus_trace_id(&r->meta, r->trace_id);
    r->state = RUN_CLAIMED;
    run_chunks_init(r);
    runner_hold(owner, r);
    rlog(r, KX_LOG_INFO, "run: claimed (epoch %lld, thread %s, model %s)", (long long)r->epoch,
         r->thread_id, r->model);
    schedule_step(r, begin_iteration);
    return KX_OK;
}

void run_stop(run *r, const char *reason)
{
    if (r->state == RUN_DEAD)
        return;
    if (r->ops.finishing) { /* the fenced finish decides: won, we publish the end; lost, dropped */
        rlog(r, KX_LOG_INFO, "run: STOP (%s) while the end is being written",
             reason && reason[0] ? reason : "no reason");
        return;
    }
    char why[300];
    snprintf(why, sizeof why, "STOP received (%s)", reason && reason[0] ? reason : "no reason");
    run_drop(r, why);
}

void run_handback(run *r, const char *why)
{
    if (r->state == RUN_DEAD)
        return;
    if (!r->ops.finishing && !r->ops.handing_back) {
        cancel_work(r);
        chunks_clear(&r->chunks);
        r->state = RUN_FINISHING;
        run_ops_handback(r, why, false); /* behind the rows still queued: they are kept */
    }
    if (r->state != RUN_DEAD && r->owner->loop_over) {
        /* shutdown: nothing will read the answers; send what is queued and let go */
        run_ops_send_now(r);
        run_handed_back(r, why);
    }
}

void run_handed_back(run *r, const char *why)
{
    if (r->state == RUN_DEAD)
        return;
    if (why != NULL)
        rlog(r, KX_LOG_INFO, "run: handed back to the queue: %s", why);
    cancel_work(r);
    chunks_clear(&r->chunks);
    r->state = RUN_DEAD;
    runner_release(r->owner, r);
}

void run_free(run *r)
{
    if (r == NULL)
        return;
    cancel_work(r);
    chunks_clear(&r->chunks);
    run_ops_clear(r);
    clear_turn(r);
    agent_config_clear(&r->agent);
    if (r->first != NULL)
        run_loaded_clear(r->first);
    free(r->first);
    free(r->system);
    json_decref(r->tools);
    json_decref(r->mcp_routes);
    free(r);
}
