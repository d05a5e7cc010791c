/* tool_mcp.c — an agent's MCP tool: a ToolCall that carries an McpRoute goes to the
 * mcp-proxy (kx.mcp.call) instead of the catalogue, with the call's deadline
 * (min(KX_TOOL_TIMEOUT_S, what is left of the run)); the server's own schema is checked by the
 * server. A call that is answered without the proxy's reply — its deadline passed, its run was
 * STOPped, the executor shuts down — is cancelled at the proxy too (kx.mcp.cancel: the
 * replica holding it tells the server). Each server has its own circuit breaker
 * ("mcp:<server>"). The result is the proxy's mapping of the MCP content (McpCallReply.result:
 * Kortix's ToolResult — the text parts joined), else the raw content. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "registry.h"

typedef struct mcp_state {
    char dep[112]; /* "mcp:<server>" */
} mcp_state;

static void state_free(te_call *c)
{
    free(c->state);
    c->state = NULL;
}

static void send_cancel(te_call *c)
{
    Kx__V1__McpCancelRequest rq = KX__V1__MCP_CANCEL_REQUEST__INIT;
    rq.call_id = c->call->call_id;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(2000), c->call->account_id);
    kx_err err = kx_bus_publish_pb(c->ex->svc->bus, KX_SUBJ_MCP_CANCEL, &rq.base, &meta);
    if (err != KX_OK)
        kx_warn("tool-executor: could not send the cancel of MCP call %s: %s", rq.call_id,
                kx_err_str(err));
}

static void on_reply(te_call *c, kx_err err, natsMsg *reply)
{
    te_outcome o;
    te_outcome_init(&o);
    const char *server = c->call->mcp->server != NULL ? c->call->mcp->server : "";
    if (err == KX_ERR_TIMEOUT) {
        send_cancel(c);
        o.timed_out = true;
        te_outcome_error(&o, KX_ERR_TIMEOUT, "%s timed out after %lld s (MCP server %s)",
                         c->call->tool_name, (long long)c->req_timeout_s, server);
    } else if (err != KX_OK) {
        te_outcome_error(&o, KX_ERR_UNAVAILABLE, "%s: the mcp-proxy is not available: %s",
                         c->call->tool_name, kx_err_str(err));
    } else {
        Kx__V1__McpCallReply *r =
            kx_pb_unpack(&kx__v1__mcp_call_reply__descriptor, natsMsg_GetData(reply),
                         (size_t)natsMsg_GetDataLength(reply));
        natsMsg_Destroy(reply);
        if (r == NULL) {
            te_breaker_record(c->ex, c->req_dep, false);
            te_outcome_error(&o, KX_ERR_INTERNAL, "%s: the mcp-proxy's reply does not decode",
                             c->call->tool_name);
        } else if (r->error != NULL) {
            te_breaker_record(c->ex, c->req_dep, !te_dep_error_counts(r->error->code));
            char msg[sizeof o.error_message];
            if (r->error->code != NULL && strcmp(r->error->code, "deadline_exceeded") == 0) {
                /* the proxy gave up at our deadline (less its margin): the call's timeout */
                o.timed_out = true;
                snprintf(msg, sizeof msg, "%s timed out after %lld s: %s", c->call->tool_name,
                         (long long)c->req_timeout_s,
                         r->error->message ? r->error->message : "MCP error");
            } else {
                snprintf(msg, sizeof msg, "%s: %s", c->call->tool_name,
                         r->error->message ? r->error->message : "MCP error");
            }
            te_outcome_error_code(&o,
                                  kx_pb_str_empty(r->error->code) ? "internal" : r->error->code,
                                  msg);
        } else {
            te_breaker_record(c->ex, c->req_dep, true);
            const char *out = r->result != NULL ? r->result->output_json : r->content_json;
            o.output_json = strdup(out != NULL ? out : "");
            o.success = r->result != NULL ? r->result->success : !r->is_error;
            if (o.output_json == NULL)
                te_outcome_error(&o, KX_ERR_NOMEM, "%s: out of memory", c->call->tool_name);
        }
        kx_pb_free(r);
    }
    te_call_finish(c, &o);
}

static void mcp_start(te_call *c)
{
    const Kx__V1__McpRoute *route = c->call->mcp;
    te_outcome o;
    te_outcome_init(&o);
    if (!json_is_object(c->args)) {
        te_outcome_error(&o, KX_ERR_INVALID, "%s: the arguments must be a JSON object",
                         c->call->tool_name);
        te_call_finish(c, &o);
        return;
    }
    mcp_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        te_outcome_error(&o, KX_ERR_NOMEM, "%s: out of memory", c->call->tool_name);
        te_call_finish(c, &o);
        return;
    }
    snprintf(st->dep, sizeof st->dep, "mcp:%.100s",
             !kx_pb_str_empty(route->server) ? route->server : "agent");
    c->state = st;
    c->state_free = state_free;
    Kx__V1__McpCallRequest rq = KX__V1__MCP_CALL_REQUEST__INIT;
    rq.call_id = c->call->call_id;
    rq.server = route->server;
    rq.tool = kx_pb_str_empty(route->tool) ? c->call->tool_name : route->tool;
    rq.arguments_json = c->call->arguments_json;
    rq.account_id = c->call->account_id;
    rq.server_json = route->server_json;
    rq.custom = route->custom;
    te_request(c, st->dep, KX_SUBJ_MCP_CALL, &rq.base, te_call_deadline(c, 0), on_reply);
}

static void mcp_abort(te_call *c, te_outcome *o)
{
    if (c->req_active) {
        kx_bus_async_cancel(c->ex->async, c->req_id);
        c->req_active = false;
        send_cancel(c);
    }
    te_call_finish(c, o);
}

const te_tool te_mcp_tool = {"mcp", NULL, TE_TOOL_MCP, NULL, mcp_start, mcp_abort};
