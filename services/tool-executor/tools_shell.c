/* tools_shell.c — Kortix's sb_shell_tool besides execute_command (tool_execute_command.c):
 * check_command_output, terminate_command and list_commands, over the sandbox-broker's
 * kx.sandbox.output, kx.sandbox.terminate and kx.sandbox.list. Outputs keep Kortix's shapes
 * (kortix-behaviour.md §12): check_command_output {output, session_name, status}, plus what
 * the broker knows beyond tmux (how much of the log was shown). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "executor.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "registry.h"

/* ---- shared ------------------------------------------------------------------------------ */

static void finish_json(te_call *c, json_t *obj)
{
    te_outcome o;
    te_outcome_init(&o);
    te_outcome_json(&o, obj, c->tool->name);
    te_call_finish(c, &o);
}

/* Common handling of a broker reply's transport error: true when the call was finished. */
static bool transport_failed(te_call *c, kx_err err)
{
    if (err == KX_OK)
        return false;
    te_outcome o;
    te_outcome_init(&o);
    if (err == KX_ERR_TIMEOUT) {
        o.timed_out = true;
        te_outcome_error(&o, KX_ERR_TIMEOUT, "%s timed out after %lld s", c->tool->name,
                         (long long)c->req_timeout_s);
    } else if (err == KX_ERR_UNAVAILABLE) {
        te_outcome_error(&o, KX_ERR_UNAVAILABLE,
                         "%s: the sandbox is not available (no sandbox-broker answers)",
                         c->tool->name);
    } else {
        te_outcome_error(&o, KX_ERR_INTERNAL, "%s: request to the sandbox failed: %s",
                         c->tool->name, kx_err_str(err));
    }
    te_call_finish(c, &o);
    return true;
}

/* A reply that is not the expected message, or carries an error: true when finished. */
static bool reply_failed(te_call *c, const void *msg, const Kx__V1__Error *error)
{
    te_outcome o;
    te_outcome_init(&o);
    if (msg == NULL) {
        te_breaker_record(c->ex, c->req_dep, false);
        te_outcome_error(&o, KX_ERR_INTERNAL, "%s: the sandbox-broker's reply does not decode",
                         c->tool->name);
        te_call_finish(c, &o);
        return true;
    }
    if (error != NULL) {
        te_breaker_record(c->ex, c->req_dep, !te_dep_error_counts(error->code));
        te_outcome_error_code(&o, kx_pb_str_empty(error->code) ? "internal" : error->code,
                              kx_pb_str_empty(error->message) ? "sandbox error" : error->message);
        te_call_finish(c, &o);
        return true;
    }
    te_breaker_record(c->ex, c->req_dep, true);
    return false;
}

static const char *arg_str(const te_call *c, const char *key)
{
    return kx_json_str(c->args, key, "");
}

/* ---- check_command_output ---------------------------------------------------------------- */

static void on_output(te_call *c, kx_err err, natsMsg *reply)
{
    if (transport_failed(c, err))
        return;
    Kx__V1__SandboxOutputReply *r =
        kx_pb_unpack(&kx__v1__sandbox_output_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    if (reply_failed(c, r, r != NULL ? r->error : NULL)) {
        kx_pb_free(r);
        return;
    }
    json_t *obj =
        json_pack("{s:s, s:s, s:s}", "output", r->output ? r->output : "", "session_name",
                  arg_str(c, "session_name"), "status", r->running ? "running" : "completed");
    if (obj != NULL && r->next_offset < r->size) {
        char note[200];
        snprintf(note, sizeof note,
                 "showing bytes 0..%lld of the session's %lld-byte log (the bus carries no more "
                 "in one reply)",
                 (long long)r->next_offset, (long long)r->size);
        json_object_set_new(obj, "note", json_string(note));
    }
    if (obj != NULL && json_is_true(json_object_get(c->args, "kill_session")))
        json_object_set_new(obj, "killed", json_integer(r->killed));
    kx_pb_free(r);
    finish_json(c, obj);
}

static void check_output_start(te_call *c)
{
    Kx__V1__SandboxOutputRequest rq = KX__V1__SANDBOX_OUTPUT_REQUEST__INIT;
    rq.project_id = c->call->project_id;
    rq.session_name = (char *)arg_str(c, "session_name");
    rq.kill = json_is_true(json_object_get(c->args, "kill_session"));
    te_request(c, "sandbox", KX_SUBJ_SANDBOX_OUTPUT, &rq.base, te_call_deadline(c, 0), on_output);
}

/* ---- terminate_command ------------------------------------------------------------------- */

static void on_terminate(te_call *c, kx_err err, natsMsg *reply)
{
    if (transport_failed(c, err))
        return;
    Kx__V1__SandboxTerminateReply *r =
        kx_pb_unpack(&kx__v1__sandbox_terminate_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    if (reply_failed(c, r, r != NULL ? r->error : NULL)) {
        kx_pb_free(r);
        return;
    }
    char msg[200];
    snprintf(msg, sizeof msg, "Session '%.64s' terminated: %d command(s) killed.",
             arg_str(c, "session_name"), r->killed);
    json_t *obj = json_pack("{s:s, s:s, s:i}", "message", msg, "session_name",
                            arg_str(c, "session_name"), "killed", r->killed);
    kx_pb_free(r);
    finish_json(c, obj);
}

static void terminate_start(te_call *c)
{
    Kx__V1__SandboxTerminateRequest rq = KX__V1__SANDBOX_TERMINATE_REQUEST__INIT;
    rq.project_id = c->call->project_id;
    rq.session_name = (char *)arg_str(c, "session_name");
    te_request(c, "sandbox", KX_SUBJ_SANDBOX_TERMINATE, &rq.base, te_call_deadline(c, 0),
               on_terminate);
}

/* ---- list_commands ----------------------------------------------------------------------- */

static void on_list(te_call *c, kx_err err, natsMsg *reply)
{
    if (transport_failed(c, err))
        return;
    Kx__V1__SandboxListReply *r =
        kx_pb_unpack(&kx__v1__sandbox_list_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    if (reply_failed(c, r, r != NULL ? r->error : NULL)) {
        kx_pb_free(r);
        return;
    }
    json_t *sessions = json_array(), *commands = json_array();
    for (size_t i = 0; sessions != NULL && commands != NULL && i < r->n_commands; i++) {
        const Kx__V1__SandboxCommand *cmd = r->commands[i];
        const char *s = cmd->session_name ? cmd->session_name : "";
        bool seen = false;
        for (size_t j = 0; j < json_array_size(sessions); j++)
            seen = seen || strcmp(json_string_value(json_array_get(sessions, j)), s) == 0;
        if (!seen)
            json_array_append_new(sessions, json_string(s));
        json_array_append_new(commands,
                              json_pack("{s:s, s:s, s:s, s:b, s:I}", "session_name", s, "command",
                                        cmd->command ? cmd->command : "", "cwd",
                                        cmd->cwd ? cmd->cwd : "", "blocking", cmd->blocking,
                                        "started_unix_ms", (json_int_t)cmd->started_unix_ms));
    }
    char msg[100];
    snprintf(msg, sizeof msg, "Found %zu active session(s).", json_array_size(sessions));
    json_t *obj = sessions != NULL && commands != NULL
        ? json_pack("{s:s, s:o, s:o}", "message", msg, "sessions", sessions, "commands", commands)
        : NULL;
    if (obj == NULL) {
        json_decref(sessions);
        json_decref(commands);
    }
    kx_pb_free(r);
    finish_json(c, obj);
}

static void list_start(te_call *c)
{
    Kx__V1__SandboxListRequest rq = KX__V1__SANDBOX_LIST_REQUEST__INIT;
    rq.project_id = c->call->project_id;
    te_request(c, "sandbox", KX_SUBJ_SANDBOX_LIST, &rq.base, te_call_deadline(c, 0), on_list);
}

/* ---- the table --------------------------------------------------------------------------- */

#define SESSION_PROP                                                                          \
    "\"session_name\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 64, "          \
    "\"description\": \"The session's name (letters, digits, '_', '.', '-'), as given to or " \
    "returned by execute_command.\"}"

const te_tool te_shell_tools[] = {
    {"check_command_output", "sb_shell_tool", TE_TOOL_SANDBOX,
     "{\"type\": \"function\", \"function\": {\"name\": \"check_command_output\", "
     "\"description\": \"Read the output of a session's commands (those started with "
     "blocking=false), and whether one is still running. Optionally terminate the session "
     "after reading.\", \"parameters\": {\"type\": \"object\", \"properties\": {" SESSION_PROP
     ", \"kill_session\": {\"type\": \"boolean\", \"default\": false, \"description\": "
     "\"Terminate the session's commands after reading.\"}}, \"required\": [\"session_name\"]}}}",
     check_output_start, te_tool_abort_request},
    {"terminate_command", "sb_shell_tool", TE_TOOL_SANDBOX,
     "{\"type\": \"function\", \"function\": {\"name\": \"terminate_command\", "
     "\"description\": \"Kill every command running in a session.\", \"parameters\": "
     "{\"type\": \"object\", \"properties\": {" SESSION_PROP "}, \"required\": "
     "[\"session_name\"]}}}",
     terminate_start, te_tool_abort_request},
    {"list_commands", "sb_shell_tool", TE_TOOL_SANDBOX,
     "{\"type\": \"function\", \"function\": {\"name\": \"list_commands\", \"description\": "
     "\"List the sessions that have commands running in the sandbox, and those commands.\", "
     "\"parameters\": {\"type\": \"object\", \"properties\": {}}}}",
     list_start, te_tool_abort_request},
};
const size_t te_shell_tools_n = sizeof te_shell_tools / sizeof te_shell_tools[0];
