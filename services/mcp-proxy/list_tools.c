/* list_tools.c — the kx.mcp.list responder: McpListToolsRequest{server} ->
 * McpListToolsReply{server, tools[{name, description, input_schema_json}], server_name,
 * protocol_version, error}.
 *
 * The request is checked (Kx-Deadline header, a decodable body, a configured server), its
 * deadline capped at now + KX_MCP_TIMEOUT_S; the list comes from the shared cache
 * (tool_cache.c) or, on a miss, from the server's session (and is then cached); the reply is
 * sent when the session calls back — on the loop, never blocking it. Errors travel in the
 * reply's `error` (codes: invalid_argument, not_found, deadline_exceeded, unavailable, internal).
 * One log line per request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/bus.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "proxy.h"

/* One request waiting for its session. */
typedef struct list_call {
    mcp_proxy *p;
    natsMsg *msg; /* the request: replied to, then destroyed */
    char server[80];
    char trace_id[33];
    int64_t start_ms;
    mcp_session *s; /* the server's session */
    kx_deadline deadline;
} list_call;

static void count(const char *code, double seconds)
{
    char labels[64];
    snprintf(labels, sizeof labels, "code=\"%s\"", code);
    kx_counter_add(kx_metrics_counter("kx_mcp_list_total", labels,
                                      "kx.mcp.list requests by result"),
                   1);
    kx_histogram_observe(kx_metrics_histogram("kx_mcp_list_seconds", "", "kx.mcp.list latency",
                                              kx_metrics_latency_buckets,
                                              kx_metrics_latency_nbuckets),
                         seconds);
}

/* Sends the reply and ends the call. result is NULL when code says what went wrong. */
static void finish(list_call *c, const mcp_tools_result *result, const char *code,
                   const char *message)
{
    Kx__V1__McpListToolsReply reply = KX__V1__MCP_LIST_TOOLS_REPLY__INIT;
    Kx__V1__Error error = KX__V1__ERROR__INIT;
    char too_big[300];
    reply.server = c->server;
    size_t n = result ? json_array_size(result->tools) : 0;
    Kx__V1__McpTool *tools = n ? calloc(n, sizeof *tools) : NULL;
    Kx__V1__McpTool **tool_ptrs = n ? calloc(n, sizeof *tool_ptrs) : NULL;
    char **schemas = n ? calloc(n, sizeof *schemas) : NULL;
    if (n > 0 && (tools == NULL || tool_ptrs == NULL || schemas == NULL)) {
        result = NULL;
        code = "internal";
        message = "out of memory building the reply";
        n = 0;
    }
    if (result != NULL) {
        reply.server_name = (char *)result->server_name;
        reply.protocol_version = (char *)result->protocol_version;
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            const json_t *t = json_array_get(result->tools, i);
            const char *name = json_string_value(json_object_get(t, "name"));
            if (name == NULL || name[0] == '\0') {
                kx_log(KX_LOG_WARN, NULL, c->trace_id[0] ? c->trace_id : NULL,
                       "mcp server '%s': tools[%zu] has no name; skipped", c->server, i);
                continue;
            }
            const char *desc = json_string_value(json_object_get(t, "description"));
            const json_t *schema = json_object_get(t, "inputSchema");
            schemas[kept] = schema ? json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY)
                                   : strdup("{\"type\":\"object\"}");
            kx__v1__mcp_tool__init(&tools[kept]);
            tools[kept].name = (char *)name;
            tools[kept].description = (char *)(desc ? desc : "");
            tools[kept].input_schema_json = schemas[kept] ? schemas[kept] : (char *)"{}";
            tool_ptrs[kept] = &tools[kept];
            kept++;
        }
        reply.tools = tool_ptrs;
        reply.n_tools = kept;
        n = kept;
        /* A reply NATS refuses is never sent: the caller would wait for its deadline. The
         * whole list or a clear error (kx.mcp.agent_tools offers what fits). */
        size_t size = protobuf_c_message_get_packed_size(&reply.base);
        size_t budget = mcp_proxy_reply_budget(c->p);
        if (size > budget) {
            snprintf(too_big, sizeof too_big,
                     "MCP server '%s' lists %zu tools in %zu bytes, more than a reply carries "
                     "(%zu bytes)",
                     c->server, kept, size, budget);
            reply.tools = NULL;
            reply.n_tools = 0;
            result = NULL;
            code = "internal";
            message = too_big;
            error.code = (char *)code;
            error.message = too_big;
            reply.error = &error;
        }
    } else {
        error.code = (char *)code;
        error.message = (char *)message;
        reply.error = &error;
    }

    kx_err err = kx_bus_respond_pb(c->p->svc->bus, c->msg, &reply.base);
    int64_t ms = kx_mono_ms() - c->start_ms;
    const char *tid = c->trace_id[0] ? c->trace_id : NULL;
    if (err != KX_OK)
        kx_log(KX_LOG_ERROR, NULL, tid, "kx.mcp.list '%s': replying failed: %s", c->server,
               kx_err_str(err));
    if (result != NULL)
        kx_log(KX_LOG_INFO, NULL, tid, "kx.mcp.list '%s': %zu tools in %lld ms", c->server, n,
               (long long)ms);
    else
        kx_log(KX_LOG_WARN, NULL, tid, "kx.mcp.list '%s': %s: %s (%lld ms)", c->server, code,
               message, (long long)ms);
    count(result ? "ok" : code, (double)ms / 1000.0);

    for (size_t i = 0; schemas && i < n; i++)
        free(schemas[i]);
    free(schemas);
    free(tool_ptrs);
    free(tools);
    natsMsg_Destroy(c->msg);
    free(c);
}

static void on_listed(const mcp_tools_result *result, const char *code, const char *message,
                      void *arg)
{
    list_call *c = arg;
    if (result != NULL) {
        json_t *v =
            json_pack("{s:s, s:s, s:O}", "server_name", result->server_name, "protocol_version",
                      result->protocol_version, "tools", result->tools);
        if (v != NULL)
            mcp_tool_cache_put(&c->p->cache, mcp_session_config(c->s)->hash, v);
        json_decref(v);
    }
    finish(c, result, code, message);
}

/* The shared cache answered: a hit is the reply; a miss asks the server. */
static void on_cached(json_t *value, void *arg)
{
    list_call *c = arg;
    if (value == NULL) {
        mcp_session_list_tools(c->s, c->deadline, on_listed, c); /* finished by on_listed */
        return;
    }
    const char *sn = json_string_value(json_object_get(value, "server_name"));
    const char *pv = json_string_value(json_object_get(value, "protocol_version"));
    mcp_tools_result r = {.tools = json_object_get(value, "tools"),
                          .server_name = sn ? sn : "",
                          .protocol_version = pv ? pv : ""};
    finish(c, &r, NULL, NULL);
    json_decref(value);
}

void mcp_list_on_request(natsMsg *msg, void *arg)
{
    mcp_proxy *p = arg;
    const char *reply_to = natsMsg_GetReply(msg);
    if (reply_to == NULL || reply_to[0] == '\0') {
        kx_warn("kx.mcp.list: a message without a reply subject; ignored");
        natsMsg_Destroy(msg);
        return;
    }
    list_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        kx_error("kx.mcp.list: out of memory; request dropped (the caller times out)");
        natsMsg_Destroy(msg);
        return;
    }
    c->p = p;
    c->msg = msg;
    c->start_ms = kx_mono_ms();
    snprintf(c->server, sizeof c->server, "?");

    kx_bus_meta meta;
    kx_err err = kx_bus_meta_read(msg, &meta);
    if (err == KX_OK)
        kx_bus_trace_id(&meta, c->trace_id);
    Kx__V1__McpListToolsRequest *req =
        kx_pb_unpack(&kx__v1__mcp_list_tools_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (req != NULL)
        snprintf(c->server, sizeof c->server, "%s", req->server ? req->server : "");
    char why[1024];

    if (err != KX_OK || meta.deadline == KX_NO_DEADLINE) {
        finish(c, NULL, "invalid_argument",
               err != KX_OK ? "the Kx-Deadline header is malformed (want unix milliseconds)"
                            : "the Kx-Deadline header is missing (want unix milliseconds)");
    } else if (req == NULL) {
        finish(c, NULL, "invalid_argument", "the request is not a kx.v1.McpListToolsRequest");
    } else if (kx_pb_str_empty(req->server)) {
        char names[400];
        mcp_config_names(&p->config, names, sizeof names);
        snprintf(why, sizeof why, "the request names no server (configured: %s)", names);
        finish(c, NULL, "invalid_argument", why);
    } else {
        mcp_session *s = mcp_proxy_session(p, req->server);
        if (s == NULL) {
            char names[400];
            mcp_config_names(&p->config, names, sizeof names);
            snprintf(why, sizeof why,
                     "no MCP server named '%.80s' is configured (configured: "
                     "%s)",
                     req->server, names);
            finish(c, NULL, "not_found", why);
        } else {
            kx_deadline d = mcp_proxy_deadline(p, meta.deadline);
            c->s = s;
            c->deadline = d;
            mcp_tool_cache_get(&p->cache, mcp_session_config(s)->hash, d, on_cached, c);
        }
    }
    kx_pb_free(req);
}
