/* tool_execute_command.c — the execute_command tool: a shell command in the project's
 * sandbox, through the sandbox-broker (kx.sandbox.exec).
 *
 * Timing (deadline.h): the broker gets the request with Kx-Deadline = T + TE_BROKER_GRACE_MS
 * and timeout_s = the call's timeout (blocking calls); it kills the command's process group at
 * T (it keeps a 200 ms reply margin before its Kx-Deadline) and answers with the output so
 * far. The async request gives up at T + TE_BROKER_GRACE_MS (<= D - 50 ms): then this side
 * answers "timed out" itself and asks every broker to kill the exec (kx.sandbox.kill), in
 * case the command is still running somewhere. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "executor.h"
#include <jansson.h>

#include "kx/log.h"
#include "kx/uuid.h"
#include "registry.h"
#include "tool_args.h"

#define KILL_REQUEST_MS 2000 /* how long a kill request may take; nobody waits on it */

typedef struct exec_state {
    te_exec_args args;
    uint64_t req_id;   /* the pending kx.sandbox.exec request */
    int64_t timeout_s; /* T - start, rounded up: for "timed out after N s" */
} exec_state;

static void state_free(te_call *c)
{
    exec_state *st = c->state;
    if (st != NULL) {
        te_exec_args_free(&st->args);
        free(st);
        c->state = NULL;
    }
}

static void finish(te_call *c, te_outcome *o)
{
    state_free(c);
    te_call_finish(c, o);
}

/* ---- kill after a lost reply ---------------------------------------------------------- */

/* A kill request in flight: the exec id for the log line, kept on ex->kills so that what is
 * still pending at shutdown can be freed. */
typedef struct te_kill {
    struct te_kill *prev, *next;
    te_executor *ex;
    char exec_id[];
} te_kill;

static void kill_unlink(te_kill *k)
{
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        k->ex->kills = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
}

void te_kills_free(te_executor *ex)
{
    while (ex->kills != NULL) {
        te_kill *k = ex->kills;
        /* False positive: the head's prev is always NULL (calloc,
         * linked at the head), so kill_unlink moves ex->kills past k before it is freed */
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): safe, see the comment above
        kill_unlink(k);
        free(k);
    }
}

static void on_kill_reply(kx_err err, natsMsg *reply, void *arg)
{
    te_kill *k = arg;
    bool killed = false;
    if (err == KX_OK) {
        Kx__V1__SandboxKillReply *r =
            kx_pb_unpack(&kx__v1__sandbox_kill_reply__descriptor, natsMsg_GetData(reply),
                         (size_t)natsMsg_GetDataLength(reply));
        killed = r != NULL && r->killed;
        kx_pb_free(r);
        natsMsg_Destroy(reply);
    }
    kx_info("tool-executor: kill of exec %s after its deadline: %s", k->exec_id,
            err != KX_OK ? kx_err_str(err) : (killed ? "killed" : "not running"));
    kill_unlink(k);
    free(k);
}

static void send_kill(te_call *c)
{
    te_executor *ex = c->ex;
    size_t idlen = strlen(c->call->call_id);
    te_kill *k = calloc(1, sizeof *k + idlen + 1);
    if (k == NULL)
        return;
    k->ex = ex;
    memcpy(k->exec_id, c->call->call_id, idlen + 1);
    Kx__V1__SandboxKillRequest kr = KX__V1__SANDBOX_KILL_REQUEST__INIT;
    kr.exec_id = k->exec_id;
    kr.project_id = c->call->project_id;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(KILL_REQUEST_MS), c->call->account_id);
    if (c->meta.traceparent[0] != '\0')
        memcpy(meta.traceparent, c->meta.traceparent, sizeof meta.traceparent);
    kx_err err = kx_bus_async_request_pb(ex->async, KX_SUBJ_SANDBOX_KILL, &kr.base, &meta,
                                         on_kill_reply, k, NULL);
    if (err != KX_OK) {
        kx_warn("tool-executor: could not send the kill of exec %s: %s", k->exec_id,
                kx_err_str(err));
        free(k);
        return;
    }
    k->next = ex->kills;
    if (ex->kills != NULL)
        ex->kills->prev = k;
    ex->kills = k;
}

/* ---- the sandbox's answer ------------------------------------------------------------- */

static void on_exec_reply(kx_err err, natsMsg *reply, void *arg)
{
    te_call *c = arg;
    exec_state *st = c->state;
    te_outcome o;
    te_outcome_init(&o);
    /* the sandbox's breaker: no answer, no broker, or a broker that failed count */
    te_breaker_record(c->ex, "sandbox",
                      err != KX_ERR_TIMEOUT && err != KX_ERR_UNAVAILABLE && err != KX_ERR_IO);
    if (err == KX_OK) {
        Kx__V1__SandboxExecResult *r =
            kx_pb_unpack(&kx__v1__sandbox_exec_result__descriptor, natsMsg_GetData(reply),
                         (size_t)natsMsg_GetDataLength(reply));
        if (r == NULL)
            te_outcome_error(&o, KX_ERR_INTERNAL,
                             "execute_command: the sandbox-broker's reply is not a "
                             "kx.v1.SandboxExecResult");
        else
            te_outcome_from_exec(&o, r, st->args.blocking, st->timeout_s);
        kx_pb_free(r);
        natsMsg_Destroy(reply);
    } else if (err == KX_ERR_TIMEOUT) {
        send_kill(c);
        o.timed_out = true;
        te_outcome_error(&o, KX_ERR_TIMEOUT, "execute_command timed out after %lld s",
                         (long long)st->timeout_s);
    } else if (err == KX_ERR_UNAVAILABLE) {
        te_outcome_error(&o, KX_ERR_UNAVAILABLE,
                         "execute_command: the sandbox is not "
                         "available (no sandbox-broker answers on %s)",
                         KX_SUBJ_SANDBOX_EXEC);
    } else {
        te_outcome_error(&o, KX_ERR_INTERNAL,
                         "execute_command: request to the sandbox failed: "
                         "%s",
                         kx_err_str(err));
    }
    finish(c, &o);
}

/* ---- schema ----------------------------------------------------------------------------- */

const char te_execute_command_schema[] =
    "{\"type\": \"function\", \"function\": {\"name\": \"execute_command\", \"description\": "
    "\"Run a shell command in the project's sandbox workspace (/bin/sh -c), in a named session "
    "that keeps its working directory and exported environment between commands. Non-blocking "
    "by default (read its output with check_command_output); set blocking to true to wait for "
    "the command and get its output.\", \"parameters\": {\"type\": \"object\", "
    "\"properties\": {\"command\": {\"type\": \"string\", \"minLength\": 1, "
    "\"description\": \"The shell command to run.\"}, \"folder\": {\"type\": \"string\", "
    "\"description\": \"Sub-directory of /workspace to run the command in (default: the "
    "session's directory).\"}, \"session_name\": {\"type\": \"string\", \"maxLength\": 64, "
    "\"description\": \"The session to use (created if new; default: a new one).\"}, "
    "\"blocking\": {\"type\": \"boolean\", \"default\": false, \"description\": \"Wait for "
    "the command to finish and return its output.\"}, \"timeout\": {\"type\": \"integer\", "
    "\"minimum\": 1, \"maximum\": 3600, \"default\": 60, \"description\": \"Seconds a "
    "blocking command may run before it is killed (the sandbox tool limit and the run's end "
    "still apply).\"}}, \"required\": [\"command\"]}}}";

/* ---- start ---------------------------------------------------------------------------- */

void te_execute_command_start(te_call *c)
{
    te_executor *ex = c->ex;
    te_outcome o;
    te_outcome_init(&o);
    exec_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        te_outcome_error(&o, KX_ERR_NOMEM, "execute_command: out of memory");
        finish(c, &o);
        return;
    }
    c->state = st;

    char why[256];
    /* the arguments passed the schema (call.c) and were coerced: read them from there */
    char *args_text = json_dumps(c->args, JSON_COMPACT);
    kx_err err = args_text != NULL ? te_exec_args_parse(args_text, &st->args, why, sizeof why)
                                   : KX_ERR_NOMEM;
    free(args_text);
    if (err == KX_ERR_NOMEM)
        snprintf(why, sizeof why, "execute_command: out of memory");
    if (err != KX_OK) {
        te_outcome_error(&o, err, "%s", why);
        finish(c, &o);
        return;
    }
    if (!kx_uuid_valid(c->call->project_id)) {
        te_outcome_error(&o, KX_ERR_INVALID,
                         "execute_command: the call's project_id '%.64s' "
                         "is not a valid UUID",
                         c->call->project_id ? c->call->project_id : "");
        finish(c, &o);
        return;
    }

    int64_t now = kx_now_ms();
    kx_deadline t = te_tool_deadline(c->meta.deadline, now, ex->cfg.sandbox_tool_timeout_s,
                                     st->args.blocking, st->args.timeout_s);
    if (t <= now) {
        te_outcome_error(&o, KX_ERR_TIMEOUT,
                         "execute_command: no time left before the call's "
                         "deadline");
        finish(c, &o);
        return;
    }
    st->timeout_s = te_seconds_for_message(t - now);
    if (!te_breaker_allow(ex, "sandbox", why, sizeof why)) {
        te_outcome_error(&o, KX_ERR_UNAVAILABLE, "execute_command: %s", why);
        finish(c, &o);
        return;
    }

    Kx__V1__SandboxExecRequest rq = KX__V1__SANDBOX_EXEC_REQUEST__INIT;
    rq.exec_id = c->call->call_id;
    rq.project_id = c->call->project_id;
    rq.account_id = c->call->account_id;
    rq.command = st->args.command;
    rq.folder = st->args.folder;
    rq.session_name = st->args.session_name;
    rq.blocking = st->args.blocking;
    rq.timeout_s = st->args.blocking ? st->args.timeout_s : 0;

    kx_bus_meta meta;
    kx_bus_meta_init(&meta, t + TE_BROKER_GRACE_MS, c->call->account_id);
    if (c->meta.traceparent[0] != '\0') /* stay in the caller's trace */
        memcpy(meta.traceparent, c->meta.traceparent, sizeof meta.traceparent);
    err = kx_bus_async_request_pb(ex->async, KX_SUBJ_SANDBOX_EXEC, &rq.base, &meta, on_exec_reply,
                                  c, &st->req_id);
    if (err != KX_OK) {
        te_outcome_error(&o, err == KX_ERR_NOMEM ? KX_ERR_NOMEM : KX_ERR_UNAVAILABLE,
                         "execute_command: could not send the request to the sandbox: %s",
                         kx_err_str(err));
        finish(c, &o);
        return;
    }
    kx_log(KX_LOG_DEBUG, c->call->run_id, c->trace_id,
           "tool-executor: call %s: execute_command sent to the sandbox (%s, deadline in %lld "
           "ms)",
           c->call->call_id, st->args.blocking ? "blocking" : "background", (long long)(t - now));
}

void te_execute_command_abort(te_call *c, te_outcome *o)
{
    exec_state *st = c->state;
    if (st != NULL) { /* the request was sent: stop waiting, stop the command */
        kx_bus_async_cancel(c->ex->async, st->req_id);
        send_kill(c);
    }
    finish(c, o);
}
