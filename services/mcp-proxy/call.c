/* call.c — the kx.mcp.call responder (McpCallRequest -> McpCallReply) and kx.mcp.cancel
 * (McpCancelRequest -> McpCancelReply).
 *
 * A call names an operator server (`server`, from KX_MCP_SERVERS) or carries an agent's server
 * entry (`server_json`, a custom_mcps item when `custom`, else a configured_mcps item): its
 * session comes from the pool. The deadline is min(Kx-Deadline, now + KX_MCP_TIMEOUT_S); past
 * it the caller gets deadline_exceeded (timed_out) and the server a notifications/cancelled.
 * Progress notifications go to `progress_subject` as McpCallProgress. The result is mapped by
 * result_map.c within the reply budget (NATS max_payload minus slack), so every reply fits the
 * bus. Calls in flight are kept by call_id for kx.mcp.cancel, which every replica hears; only
 * the replica holding the call answers (cancelled = true), after the call itself was answered
 * with error "cancelled". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/bus.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "proxy.h"
#include "result_map.h"

struct mcp_call {
    mcp_proxy *p;
    mcp_call *prev, *next;
    natsMsg *msg; /* the request: replied to, then destroyed */
    mcp_op *op;   /* while in flight */
    char call_id[128];
    char server[160];
    char tool[160];
    char progress_subject[256];
    char trace_id[33];
    int64_t start_ms;
};

static void link_call(mcp_proxy *p, mcp_call *c)
{
    c->next = p->calls;
    if (p->calls)
        p->calls->prev = c;
    p->calls = c;
}

static void unlink_call(mcp_proxy *p, mcp_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (p->calls == c)
        p->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void count(const char *code, double seconds)
{
    char labels[64];
    snprintf(labels, sizeof labels, "code=\"%s\"", code);
    kx_counter_add(kx_metrics_counter("kx_mcp_call_total", labels,
                                      "kx.mcp.call requests by result"),
                   1);
    kx_histogram_observe(kx_metrics_histogram("kx_mcp_call_seconds", "", "kx.mcp.call latency",
                                              kx_metrics_latency_buckets,
                                              kx_metrics_latency_nbuckets),
                         seconds);
}

/* Replies and frees c. result (tools/call result) or code + message. */
static void finish(mcp_call *c, const json_t *result, const char *code, const char *message)
{
    mcp_proxy *p = c->p;
    unlink_call(p, c);
    Kx__V1__McpCallReply reply = KX__V1__MCP_CALL_REPLY__INIT;
    Kx__V1__ToolResult tr = KX__V1__TOOL_RESULT__INIT;
    Kx__V1__Error error = KX__V1__ERROR__INIT;
    int64_t ms = kx_mono_ms() - c->start_ms;
    reply.call_id = c->call_id;
    tr.call_id = c->call_id;
    tr.duration_ms = ms;
    reply.result = &tr;
    mcp_mapped m = {0};
    char *output = NULL;
    if (result != NULL) {
        if (mcp_result_map(result, mcp_proxy_reply_budget(p), &m) != 0 && m.text == NULL) {
            code = "internal";
            message = "out of memory mapping the result";
            result = NULL;
        }
    }
    if (result != NULL) {
        json_t *str = json_string(m.text);
        output = str ? json_dumps(str, JSON_ENCODE_ANY) : NULL;
        json_decref(str);
        reply.is_error = m.is_error;
        reply.content_json = m.content_json;
        reply.structured_json = m.structured_json ? m.structured_json : (char *)"";
        reply.truncated = m.truncated;
        tr.success = !m.is_error;
        tr.output_json = output ? output : (char *)"\"\"";
    } else {
        error.code = (char *)code;
        error.message = (char *)message;
        reply.error = &error;
        reply.is_error = true;
        tr.success = false;
        tr.error = &error;
        tr.timed_out = strcmp(code, "deadline_exceeded") == 0;
        json_t *str = json_string(message);
        output = str ? json_dumps(str, JSON_ENCODE_ANY) : NULL;
        json_decref(str);
        tr.output_json = output ? output : (char *)"\"\"";
    }
    kx_err err = c->msg ? kx_bus_respond_pb(p->svc->bus, c->msg, &reply.base) : KX_OK;
    const char *tid = c->trace_id[0] ? c->trace_id : NULL;
    if (err != KX_OK)
        kx_log(KX_LOG_ERROR, NULL, tid, "kx.mcp.call %s '%s'/'%s': replying failed: %s",
               c->call_id, c->server, c->tool, kx_err_str(err));
    if (result != NULL)
        kx_log(KX_LOG_INFO, NULL, tid, "kx.mcp.call %s '%s'/'%s': %s in %lld ms%s", c->call_id,
               c->server, c->tool, m.is_error ? "tool error" : "ok", (long long)ms,
               m.truncated ? " (truncated)" : "");
    else
        kx_log(KX_LOG_WARN, NULL, tid, "kx.mcp.call %s '%s'/'%s': %s: %s (%lld ms)", c->call_id,
               c->server, c->tool, code, message, (long long)ms);
    count(result ? (m.is_error ? "tool_error" : "ok") : code, (double)ms / 1000.0);
    mcp_mapped_free(&m);
    free(output);
    natsMsg_Destroy(c->msg);
    free(c);
}

static void on_result(const json_t *result, const char *code, const char *message, void *arg)
{
    mcp_call *c = arg;
    c->op = NULL;
    finish(c, result, code, message);
}

static void on_progress(double progress, double total, const char *message, void *arg)
{
    mcp_call *c = arg;
    if (c->progress_subject[0] == '\0')
        return;
    Kx__V1__McpCallProgress ev = KX__V1__MCP_CALL_PROGRESS__INIT;
    ev.call_id = c->call_id;
    ev.progress = progress;
    ev.total = total;
    ev.message = (char *)(message ? message : "");
    kx_err err = kx_bus_publish_pb(c->p->svc->bus, c->progress_subject, &ev.base, NULL);
    if (err != KX_OK)
        kx_debug("kx.mcp.call %s: progress to %s not published: %s", c->call_id,
                 c->progress_subject, kx_err_str(err));
}

static mcp_call *find_call(mcp_proxy *p, const char *call_id)
{
    for (mcp_call *c = p->calls; c; c = c->next)
        if (strcmp(c->call_id, call_id) == 0)
            return c;
    return NULL;
}

/* The session for the request, or NULL with why (code in *code). */
static mcp_session *resolve(mcp_proxy *p, const Kx__V1__McpCallRequest *req, mcp_call *c,
                            const char **code, char *why, size_t whylen)
{
    if (!kx_pb_str_empty(req->server_json)) {
        json_error_t jerr;
        json_t *entry = json_loads(req->server_json, 0, &jerr);
        if (entry == NULL) {
            *code = "invalid_argument";
            snprintf(why, whylen, "server_json is not valid JSON: %s", jerr.text);
            return NULL;
        }
        mcp_agent_server as;
        int rc = mcp_agent_server_parse(entry, req->custom, &as, why, whylen);
        json_decref(entry);
        if (rc != 0) {
            *code = "invalid_argument";
            return NULL;
        }
        snprintf(c->server, sizeof c->server, "%s", as.cfg.name);
        mcp_session *s = NULL;
        if (!mcp_agent_tool_enabled(&as, req->tool)) {
            *code = "invalid_argument";
            snprintf(why, whylen,
                     "tool '%.80s' is not enabled for MCP server '%s' "
                     "(enabledTools)",
                     req->tool, as.cfg.name);
        } else if ((s = mcp_proxy_pooled(p, &as.cfg, req->account_id)) == NULL) {
            *code = "internal";
            snprintf(why, whylen, "out of memory");
        }
        mcp_agent_server_free(&as);
        return s;
    }
    if (kx_pb_str_empty(req->server)) {
        *code = "invalid_argument";
        snprintf(why, whylen, "the request names no server (give server or server_json)");
        return NULL;
    }
    mcp_session *s = mcp_proxy_session(p, req->server);
    if (s == NULL) {
        char names[400];
        mcp_config_names(&p->config, names, sizeof names);
        *code = "not_found";
        snprintf(why, whylen, "no MCP server named '%.80s' is configured (configured: %s)",
                 req->server, names);
    }
    return s;
}

void mcp_call_on_request(natsMsg *msg, void *arg)
{
    mcp_proxy *p = arg;
    const char *reply_to = natsMsg_GetReply(msg);
    if (reply_to == NULL || reply_to[0] == '\0') {
        kx_warn("kx.mcp.call: a message without a reply subject; ignored");
        natsMsg_Destroy(msg);
        return;
    }
    mcp_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        kx_error("kx.mcp.call: out of memory; request dropped (the caller times out)");
        natsMsg_Destroy(msg);
        return;
    }
    c->p = p;
    c->msg = msg;
    c->start_ms = kx_mono_ms();
    snprintf(c->server, sizeof c->server, "?");
    snprintf(c->tool, sizeof c->tool, "?");

    kx_bus_meta meta;
    kx_err err = kx_bus_meta_read(msg, &meta);
    if (err == KX_OK)
        kx_bus_trace_id(&meta, c->trace_id);
    Kx__V1__McpCallRequest *req =
        kx_pb_unpack(&kx__v1__mcp_call_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (req != NULL) {
        snprintf(c->call_id, sizeof c->call_id, "%s", req->call_id ? req->call_id : "");
        snprintf(c->server, sizeof c->server, "%s", req->server ? req->server : "");
        snprintf(c->tool, sizeof c->tool, "%s", req->tool ? req->tool : "");
        snprintf(c->progress_subject, sizeof c->progress_subject, "%s",
                 req->progress_subject ? req->progress_subject : "");
    }
    char why[1024];
    const char *code = NULL;
    json_t *args = NULL;
    mcp_session *s = NULL;
    if (err != KX_OK || meta.deadline == KX_NO_DEADLINE) {
        code = "invalid_argument";
        snprintf(why, sizeof why, "the Kx-Deadline header is %s (want unix milliseconds)",
                 err != KX_OK ? "malformed" : "missing");
    } else if (req == NULL) {
        code = "invalid_argument";
        snprintf(why, sizeof why, "the request is not a kx.v1.McpCallRequest");
    } else if (kx_pb_str_empty(req->call_id) || strlen(req->call_id) >= sizeof c->call_id) {
        code = "invalid_argument";
        snprintf(why, sizeof why, "call_id must be 1 to %zu characters", sizeof c->call_id - 1);
    } else if (kx_pb_str_empty(req->tool)) {
        code = "invalid_argument";
        snprintf(why, sizeof why, "the request names no tool");
    } else if (find_call(p, req->call_id) != NULL) {
        code = "invalid_argument";
        snprintf(why, sizeof why, "a call with id '%s' is already in flight", req->call_id);
    } else if ((req->progress_subject &&
                strlen(req->progress_subject) >= sizeof c->progress_subject) ||
               strpbrk(c->progress_subject, " \t\r\n*>") != NULL) {
        code = "invalid_argument";
        snprintf(why, sizeof why, "progress_subject is not a valid NATS subject for publishing");
    } else {
        if (!kx_pb_str_empty(req->arguments_json)) {
            json_error_t jerr;
            args = json_loads(req->arguments_json, 0, &jerr);
            if (!json_is_object(args)) {
                code = "invalid_argument";
                snprintf(why, sizeof why, "arguments_json must be a JSON object%s%s",
                         args ? "" : ": ", args ? "" : jerr.text);
            }
        }
        if (code == NULL)
            s = resolve(p, req, c, &code, why, sizeof why);
    }
    if (code != NULL || s == NULL) {
        json_decref(args);
        link_call(p, c);
        finish(c, NULL, code ? code : "internal", code ? why : "no session");
        kx_pb_free(req);
        return;
    }
    link_call(p, c);
    kx_deadline d = mcp_proxy_deadline(p, meta.deadline);
    /* on_result may run inside (a refused start): then op is NULL and c is gone. */
    mcp_op *op = mcp_session_call(s, req->tool, args, d,
                                  c->progress_subject[0] ? on_progress : NULL, on_result, c);
    if (op != NULL)
        c->op = op;
    kx_pb_free(req);
}

void mcp_cancel_on_request(natsMsg *msg, void *arg)
{
    mcp_proxy *p = arg;
    Kx__V1__McpCancelRequest *req =
        kx_pb_unpack(&kx__v1__mcp_cancel_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    mcp_call *c = (req && !kx_pb_str_empty(req->call_id)) ? find_call(p, req->call_id) : NULL;
    if (c == NULL || c->op == NULL) {
        /* Not ours (another replica holds it, or it finished): stay silent. */
        kx_pb_free(req);
        natsMsg_Destroy(msg);
        return;
    }
    kx_info("kx.mcp.cancel %s: cancelling the call to '%s'/'%s'", c->call_id, c->server, c->tool);
    Kx__V1__McpCancelReply reply = KX__V1__MCP_CANCEL_REPLY__INIT;
    reply.call_id = req->call_id;
    reply.cancelled = true;
    mcp_op *op = c->op;
    c->op = NULL;
    mcp_session_cancel(op, "cancelled by the caller"); /* answers the call (finish) */
    const char *reply_to = natsMsg_GetReply(msg);
    if (reply_to != NULL && reply_to[0] != '\0')
        kx_bus_respond_pb(p->svc->bus, msg, &reply.base);
    kx_pb_free(req);
    natsMsg_Destroy(msg);
}
