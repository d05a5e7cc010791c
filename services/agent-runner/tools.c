/* tools.c — ToolCall requests to the tool-executor and the outcomes they give the run (see
 * tools.h). */
#include "tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/pb.h"
#include "kx/utf8.h"

#define REPLY_GRACE_MS 5000 /* the executor answers at its deadline; give the answer time */

void tool_outcome_clear(tool_outcome *o)
{
    json_decref(o->output);
    free(o->error);
    memset(o, 0, sizeof *o);
}

void tool_outcome_fail(tool_outcome *o, const char *message)
{
    tool_outcome_clear(o);
    o->success = false;
    /* The message may quote bytes from outside (the Kx-Error header) or have been cut to fit a
     * buffer inside a character: repaired, so that it can go into JSON. */
    o->error = strdup(message);
    if (o->error != NULL)
        kx_utf8_scrub(o->error);
    o->output = json_string(o->error != NULL ? o->error : "");
}

void tools_outcome_from_reply(kx_err err, natsMsg *reply, tool_outcome *out)
{
    memset(out, 0, sizeof *out);
    char msg[600];
    if (err != KX_OK || reply == NULL) {
        if (err == KX_ERR_UNAVAILABLE)
            snprintf(msg, sizeof msg,
                     "tool-executor did not answer: no tool-executor is "
                     "running (no responders on %s)",
                     KX_SUBJ_TOOL_EXEC);
        else if (err == KX_ERR_TIMEOUT)
            snprintf(msg, sizeof msg,
                     "tool-executor did not answer: no reply before the "
                     "call's deadline");
        else
            snprintf(msg, sizeof msg, "tool-executor did not answer: %s", kx_err_str(err));
        tool_outcome_fail(out, msg);
        return;
    }
    const char *hdr_err = NULL;
    if (natsMsgHeader_Get(reply, KX_HDR_ERROR, &hdr_err) == NATS_OK && hdr_err != NULL &&
        hdr_err[0] != '\0') {
        snprintf(msg, sizeof msg, "tool-executor refused the call: %s", hdr_err);
        tool_outcome_fail(out, msg);
        return;
    }
    Kx__V1__ToolResult *res =
        kx_pb_unpack(&kx__v1__tool_result__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    if (res == NULL) {
        tool_outcome_fail(out, "tool-executor sent a reply that is not a kx.v1.ToolResult");
        return;
    }
    json_t *output = NULL;
    if (!kx_pb_str_empty(res->output_json)) {
        output = json_loads(res->output_json, JSON_DECODE_ANY, NULL);
        if (output == NULL) { /* not JSON after all: keep the text, repaired if need be */
            char *text = strdup(res->output_json);
            if (text != NULL) {
                kx_utf8_scrub(text);
                output = json_string(text);
                free(text);
            }
        }
    }
    const char *emsg =
        res->error != NULL && !kx_pb_str_empty(res->error->message) ? res->error->message : NULL;
    out->success = res->success;
    if (!res->success) {
        if (emsg == NULL)
            emsg = res->timed_out ? "the tool timed out" : "the tool failed";
        out->error = strdup(emsg);
        if (out->error != NULL)
            kx_utf8_scrub(out->error); /* the bytes came over the bus: maybe not UTF-8 */
        if (output == NULL)
            output = json_string(out->error != NULL ? out->error : "");
    }
    out->output = output ? output : json_string("");
    kx_pb_free(res);
}

kx_deadline tools_call_deadline(int64_t now_ms, kx_deadline wall_deadline)
{
    return kx_deadline_min(now_ms + (int64_t)TOOLS_CALL_MAX_S * 1000 + REPLY_GRACE_MS,
                           wall_deadline);
}

static void on_reply(kx_err err, natsMsg *reply, void *arg)
{
    tools_pending *slot = arg;
    slot->active = false;
    tool_outcome o;
    tools_outcome_from_reply(err, reply, &o);
    if (reply != NULL)
        kx_bus_msg_free(reply);
    slot->cb(slot->arg, &o); /* may free the storage of slot: nothing after this */
}

kx_err tools_call(kx_bus_async *ab, const tools_request *req, tools_pending *slot,
                  tools_done_cb cb, void *arg)
{
    memset(slot, 0, sizeof *slot);
    slot->ab = ab;
    slot->cb = cb;
    slot->arg = arg;
    Kx__V1__ToolCall call = KX__V1__TOOL_CALL__INIT;
    call.call_id = (char *)req->call_id;
    call.run_id = (char *)req->run_id;
    call.lease_epoch = req->lease_epoch;
    call.account_id = (char *)req->account_id;
    call.project_id = (char *)req->project_id;
    call.thread_id = (char *)req->thread_id;
    call.tool_name = (char *)req->tool_name;
    call.arguments_json = (char *)req->arguments_json;
    call.mcp = (Kx__V1__McpRoute *)req->mcp;
    call.agentpress_tools_json =
        (char *)(req->agentpress_tools_json != NULL ? req->agentpress_tools_json : "");
    kx_bus_meta meta = *req->meta;
    meta.deadline = tools_call_deadline(kx_now_ms(), req->wall_deadline);
    kx_err err = kx_bus_async_request_pb(ab, KX_SUBJ_TOOL_EXEC, &call.base, &meta, on_reply, slot,
                                         &slot->req_id);
    slot->active = err == KX_OK;
    return err;
}

void tools_cancel(tools_pending *slot)
{
    if (slot == NULL || !slot->active)
        return;
    kx_bus_async_cancel(slot->ab, slot->req_id);
    slot->active = false;
}
