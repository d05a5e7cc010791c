/* outcome.c — tool outcomes and the execute_command result mapping (see outcome.h). */
#include "outcome.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/json.h"

void te_outcome_init(te_outcome *o)
{
    memset(o, 0, sizeof *o);
}

void te_outcome_error_code(te_outcome *o, const char *code, const char *message)
{
    o->success = false;
    snprintf(o->error_code, sizeof o->error_code, "%s", code);
    snprintf(o->error_message, sizeof o->error_message, "%s", message);
}

void te_outcome_error(te_outcome *o, kx_err err, const char *fmt, ...)
{
    char msg[sizeof o->error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    te_outcome_error_code(o, kx_err_code(err), msg);
}

void te_outcome_free(te_outcome *o)
{
    free(o->output_json);
    o->output_json = NULL;
}

/* json_string that survives bytes that are not UTF-8 (the broker repairs output, but this
 * side does not trust a peer it cannot see). */
static json_t *jstr(const char *s)
{
    json_t *v = json_string(s != NULL ? s : "");
    return v != NULL ? v : json_string("<output is not valid UTF-8>");
}

/* Sets a key, taking the reference; false on allocation failure. */
static bool put(json_t *obj, const char *key, json_t *v)
{
    return v != NULL && json_object_set_new(obj, key, v) == 0;
}

void te_outcome_json(te_outcome *o, json_t *obj, const char *tool)
{
    o->output_json = obj != NULL ? kx_json_dumps_py(obj) : NULL;
    json_decref(obj);
    if (o->output_json == NULL)
        te_outcome_error(o, KX_ERR_NOMEM, "%s: out of memory building the result", tool);
    else
        o->success = true;
}

static void finish_json(te_outcome *o, json_t *obj, bool ok)
{
    if (ok)
        o->output_json = kx_json_dumps_py(obj);
    json_decref(obj);
    if (!ok || o->output_json == NULL) {
        free(o->output_json);
        o->output_json = NULL;
        te_outcome_error(o, KX_ERR_NOMEM, "execute_command: out of memory building the result");
    }
}

void te_outcome_from_exec(te_outcome *o, const Kx__V1__SandboxExecResult *r, bool blocking,
                          int64_t timeout_s)
{
    te_outcome_init(o);
    if (r->error != NULL) {
        te_outcome_error_code(o, kx_pb_str_empty(r->error->code) ? "internal" : r->error->code,
                              kx_pb_str_empty(r->error->message) ? "sandbox error"
                                                                 : r->error->message);
        return;
    }
    json_t *obj = json_object();
    bool ok = obj != NULL;

    if (r->timed_out) {
        ok = ok && put(obj, "output", jstr(r->stdout)) && put(obj, "stderr", jstr(r->stderr)) &&
            put(obj, "cwd", jstr(r->cwd)) && put(obj, "session_name", jstr(r->session_name)) &&
            put(obj, "completed", json_false()) && put(obj, "timed_out", json_true()) &&
            (!r->truncated || put(obj, "truncated", json_true()));
        finish_json(o, obj, ok);
        if (o->output_json != NULL) {
            o->timed_out = true;
            te_outcome_error(o, KX_ERR_TIMEOUT,
                             "execute_command timed out after %lld s (process group killed)",
                             (long long)timeout_s);
        }
        return;
    }
    if (!blocking) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "Command sent to session '%s'. Its output is written to the session log.",
                 r->session_name ? r->session_name : "");
        ok = ok && put(obj, "session_name", jstr(r->session_name)) &&
            put(obj, "cwd", jstr(r->cwd)) && put(obj, "message", jstr(msg)) &&
            put(obj, "completed", json_false());
        finish_json(o, obj, ok);
        if (o->output_json != NULL)
            o->success = r->started;
        if (o->output_json != NULL && !r->started)
            te_outcome_error(o, KX_ERR_INTERNAL,
                             "execute_command: the sandbox did not start "
                             "the command");
        return;
    }
    if (!r->completed) {
        json_decref(obj);
        te_outcome_error(o, KX_ERR_INTERNAL,
                         "execute_command: the sandbox answered without a completed command");
        return;
    }
    ok = ok && put(obj, "output", jstr(r->stdout)) && put(obj, "stderr", jstr(r->stderr)) &&
        put(obj, "exit_code", json_integer(r->exit_code)) && put(obj, "cwd", jstr(r->cwd)) &&
        put(obj, "session_name", jstr(r->session_name)) && put(obj, "completed", json_true()) &&
        (!r->truncated || put(obj, "truncated", json_true()));
    finish_json(o, obj, ok);
    if (o->output_json != NULL)
        o->success = r->exit_code == 0;
}
