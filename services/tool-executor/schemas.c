/* schemas.c — kx.tool.schemas (queue group "tool-executor"): the OpenAI-format schemas of the
 * tools an agent has, from its agentpress_tools config (registry.c decides which), and the
 * tools of its MCP servers. The runner asks once per agent config and caches the answer
 * (services/agent-runner/tool_schemas.c).
 *
 * A request without MCP servers is answered on the loop from the parsed catalogue: no I/O.
 * With some (custom_mcps_json / configured_mcps_json, Kortix's shapes), one asynchronous
 * kx.mcp.agent_tools request to the mcp-proxy lists them — each server's own tools/list is
 * the one description of its tools — with every name of the catalogue reserved, so an MCP tool
 * never takes a built-in's name (the proxy makes it unique: `_2`, `_3`, ...). Each MCP tool
 * comes back as McpToolSchema: its OpenAI schema and the McpRoute the runner puts in the
 * ToolCall. The proxy gets the caller's deadline less REPLY_MARGIN_MS; when it fails (down,
 * too slow, a bad entry) the built-ins are still answered and the failure is reported in
 * mcp_servers, as is each server that could not be listed (skipped, as Kortix skipped it).
 * The reply fits the bus: MCP tools past max_payload less SLACK are left out (mcp_truncated).
 *
 * Ownership: a request waiting for the proxy is held in g_pending (its message and the
 * built-ins' schemas) until its reply; te_schemas_free releases what kx_bus_async_free left. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "registry.h"

#define REPLY_MARGIN_MS 500       /* the proxy answers this long before our caller's deadline */
#define DEFAULT_WAIT_MS 20000     /* a request without Kx-Deadline */
#define SLACK ((size_t)16 * 1024) /* headers and protobuf framing */

typedef struct sch_req {
    struct sch_req *prev, *next;
    te_executor *ex;
    natsMsg *msg;  /* the caller's request, answered by answer() */
    json_t *tools; /* the built-ins the agent has */
    char trace_id[33];
} sch_req;

static sch_req *g_pending;

/* {"type": "function", "function": {name, description, parameters}} for one MCP tool; the
 * server's inputSchema when it is a JSON object, else an empty object schema. */
static json_t *mcp_schema(const Kx__V1__McpAgentTool *t)
{
    json_t *params =
        kx_pb_str_empty(t->input_schema_json) ? NULL : json_loads(t->input_schema_json, 0, NULL);
    if (!json_is_object(params)) {
        json_decref(params);
        params = json_pack("{s:s, s:{}}", "type", "object", "properties");
    }
    return json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "function", "function", "name",
                     t->name ? t->name : "", "description", t->description ? t->description : "",
                     "parameters", params);
}

/* Replies with the built-ins (tools, NULL: error set) and, when mcp is given, its tools;
 * mcp_code/mcp_message: the proxy itself failed. */
static void answer(te_executor *ex, natsMsg *msg, json_t *tools, Kx__V1__Error *error,
                   const Kx__V1__McpAgentToolsReply *mcp, const char *mcp_code,
                   const char *mcp_message)
{
    Kx__V1__ToolSchemasReply rep = KX__V1__TOOL_SCHEMAS_REPLY__INIT;
    Kx__V1__Error oom = KX__V1__ERROR__INIT;
    char *text = NULL;
    size_t nt = mcp != NULL ? mcp->n_tools : 0, ns = mcp != NULL ? mcp->n_servers : 0;
    Kx__V1__McpToolSchema *ts = calloc(nt + 1, sizeof *ts);
    Kx__V1__McpToolSchema **tp = calloc(nt + 1, sizeof *tp);
    Kx__V1__McpRoute *routes = calloc(nt + 1, sizeof *routes);
    char **schemas = calloc(nt + 1, sizeof *schemas);
    Kx__V1__McpToolsServer *sv = calloc(ns + 1, sizeof *sv);
    Kx__V1__McpToolsServer **sp = calloc(ns + 1, sizeof *sp);
    Kx__V1__Error *sv_err = calloc(ns + 1, sizeof *sv_err);
    if (error == NULL && tools != NULL)
        text = kx_json_dumps_compact(tools);
    if (error == NULL &&
        (text == NULL || !ts || !tp || !routes || !schemas || !sv || !sp || !sv_err)) {
        oom.code = "internal";
        oom.message = "out of memory";
        error = &oom;
    }
    if (error != NULL) {
        rep.error = error;
    } else {
        rep.tools_json = text;
        int64_t mp = natsConnection_GetMaxPayload(kx_bus_conn(ex->svc->bus));
        size_t budget = (mp > 0 ? (size_t)mp : (size_t)1024 * 1024) - SLACK;
        size_t used = strlen(text);
        for (size_t i = 0; i < nt; i++) {
            const Kx__V1__McpAgentTool *t = mcp->tools[i];
            json_t *s = mcp_schema(t);
            char *st = s != NULL ? kx_json_dumps_compact(s) : NULL;
            json_decref(s);
            size_t need = (st ? strlen(st) : 0) + strlen(t->name ? t->name : "") +
                strlen(t->server ? t->server : "") + strlen(t->tool ? t->tool : "") +
                strlen(t->server_json ? t->server_json : "") + 64;
            if (st == NULL || used + need > budget) {
                free(st);
                rep.mcp_truncated = true;
                continue;
            }
            used += need;
            size_t k = rep.n_mcp_tools++;
            schemas[k] = st;
            kx__v1__mcp_route__init(&routes[k]);
            routes[k].server = t->server;
            routes[k].tool = t->tool;
            routes[k].server_json = t->server_json;
            routes[k].custom = t->custom;
            kx__v1__mcp_tool_schema__init(&ts[k]);
            ts[k].name = t->name;
            ts[k].schema_json = st;
            ts[k].route = &routes[k];
            tp[k] = &ts[k];
        }
        rep.mcp_tools = tp;
        for (size_t i = 0; i < ns; i++) {
            const Kx__V1__McpServerStatus *s = mcp->servers[i];
            kx__v1__mcp_tools_server__init(&sv[i]);
            sv[i].server = s->server;
            sv[i].tools = s->tools;
            if (s->error != NULL) {
                kx__v1__error__init(&sv_err[i]);
                sv_err[i].code = s->error->code;
                sv_err[i].message = s->error->message;
                sv[i].error = &sv_err[i];
            }
            sp[i] = &sv[i];
        }
        rep.n_mcp_servers = ns;
        if (mcp_code != NULL && ns == 0) {
            kx__v1__mcp_tools_server__init(&sv[0]);
            kx__v1__error__init(&sv_err[0]);
            sv[0].server = "";
            sv_err[0].code = (char *)mcp_code;
            sv_err[0].message = (char *)mcp_message;
            sv[0].error = &sv_err[0];
            sp[0] = &sv[0];
            rep.n_mcp_servers = 1;
        }
        rep.mcp_servers = sp;
        if (mcp != NULL && mcp->truncated)
            rep.mcp_truncated = true;
    }
    if (natsMsg_GetReply(msg) != NULL)
        kx_bus_respond_pb(ex->svc->bus, msg, &rep.base);
    for (size_t i = 0; i < rep.n_mcp_tools; i++)
        free(schemas[i]);
    free(schemas);
    free(ts);
    free(tp);
    free(routes);
    free(sv);
    free(sp);
    free(sv_err);
    free(text);
}

static void unlink_req(sch_req *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        g_pending = q->next;
    if (q->next)
        q->next->prev = q->prev;
}

static void req_free(sch_req *q)
{
    json_decref(q->tools);
    natsMsg_Destroy(q->msg);
    free(q);
}

static void on_agent_tools(kx_err err, natsMsg *reply, void *arg)
{
    sch_req *q = arg;
    unlink_req(q);
    Kx__V1__McpAgentToolsReply *r = NULL;
    char why[300];
    const char *code = NULL;
    if (err != KX_OK) {
        code = err == KX_ERR_TIMEOUT ? "deadline_exceeded" : "unavailable";
        snprintf(why, sizeof why, "the mcp-proxy did not list the agent's MCP servers: %s",
                 err == KX_ERR_TIMEOUT ? "no answer before the deadline" : kx_err_str(err));
    } else {
        r = kx_pb_unpack(&kx__v1__mcp_agent_tools_reply__descriptor, natsMsg_GetData(reply),
                         (size_t)natsMsg_GetDataLength(reply));
        if (r == NULL) {
            code = "internal";
            snprintf(why, sizeof why, "the mcp-proxy's reply is not a McpAgentToolsReply");
        } else if (r->error != NULL) {
            code = kx_pb_str_empty(r->error->code) ? "internal" : r->error->code;
            snprintf(why, sizeof why, "the mcp-proxy refused the agent's MCP servers: %s",
                     r->error->message ? r->error->message : "");
        }
    }
    if (reply != NULL)
        natsMsg_Destroy(reply);
    if (code != NULL)
        kx_log(KX_LOG_WARN, NULL, q->trace_id[0] ? q->trace_id : NULL, "tool-executor: %s", why);
    answer(q->ex, q->msg, q->tools, NULL, code == NULL ? r : NULL, code, why);
    kx_pb_free(r);
    req_free(q);
}

/* Whether text is "" or an empty JSON array. */
static bool no_servers(const char *text)
{
    if (kx_pb_str_empty(text))
        return true;
    json_t *v = json_loads(text, 0, NULL);
    bool none = json_is_array(v) && json_array_size(v) == 0;
    json_decref(v);
    return none;
}

/* Whether text is "" or a JSON array. */
static bool array_or_empty(const char *text)
{
    if (kx_pb_str_empty(text))
        return true;
    json_t *v = json_loads(text, 0, NULL);
    bool ok = json_is_array(v);
    json_decref(v);
    return ok;
}

/* Asks the proxy for the agent's MCP tools; takes msg and tools (answered either way). */
static void ask_proxy(te_executor *ex, natsMsg *msg, const Kx__V1__ToolSchemasRequest *rq,
                      json_t *tools)
{
    sch_req *q = calloc(1, sizeof *q);
    json_t *all = te_registry_schemas(NULL); /* every name of the catalogue is reserved */
    size_t nres = json_array_size(all);
    char **reserved = calloc(nres + 1, sizeof *reserved);
    if (q == NULL || all == NULL || reserved == NULL) {
        answer(ex, msg, tools, NULL, NULL, "internal", "out of memory");
        json_decref(tools);
        natsMsg_Destroy(msg);
        json_decref(all);
        free(reserved);
        free(q);
        return;
    }
    q->ex = ex;
    q->msg = msg;
    q->tools = tools;
    for (size_t i = 0; i < nres; i++)
        reserved[i] =
            (char *)kx_json_str(json_object_get(json_array_get(all, i), "function"), "name", "");
    kx_bus_meta in;
    int64_t now = kx_now_ms();
    kx_deadline deadline = now + DEFAULT_WAIT_MS;
    if (kx_bus_meta_read(msg, &in) == KX_OK) {
        kx_bus_trace_id(&in, q->trace_id);
        if (in.deadline != KX_NO_DEADLINE)
            deadline = in.deadline - REPLY_MARGIN_MS;
    }
    Kx__V1__McpAgentToolsRequest ar = KX__V1__MCP_AGENT_TOOLS_REQUEST__INIT;
    ar.custom_mcps_json = rq->custom_mcps_json;
    ar.configured_mcps_json = rq->configured_mcps_json;
    ar.reserved_names = reserved;
    ar.n_reserved_names = nres;
    ar.account_id = rq->account_id;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, deadline, kx_pb_str_empty(rq->account_id) ? NULL : rq->account_id);
    if (q->trace_id[0] != '\0')
        memcpy(meta.traceparent, in.traceparent, sizeof meta.traceparent);
    q->next = g_pending; /* linked first: on_agent_tools unlinks */
    if (g_pending)
        g_pending->prev = q;
    g_pending = q;
    kx_err err = deadline <= now + 100
        ? KX_ERR_TIMEOUT
        : kx_bus_async_request_pb(ex->async, KX_SUBJ_MCP_AGENT_TOOLS, &ar.base, &meta,
                                  on_agent_tools, q, NULL);
    free(reserved);
    json_decref(all);
    if (err != KX_OK)
        on_agent_tools(err, NULL, q); /* answers with the built-ins and the failure */
}

static void on_schemas(natsMsg *msg, void *arg)
{
    te_executor *ex = arg;
    Kx__V1__ToolSchemasRequest *rq =
        kx_pb_unpack(&kx__v1__tool_schemas_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    Kx__V1__Error err = KX__V1__ERROR__INIT;
    json_t *cfg = NULL, *tools = NULL;
    /* parsed once, before json_is_object: that macro names its argument twice (an assignment
     * inside it parsed the text twice and leaked the first) */
    if (rq != NULL && !kx_pb_str_empty(rq->agentpress_tools_json))
        cfg = json_loads(rq->agentpress_tools_json, 0, NULL);
    if (rq == NULL) {
        err.code = "invalid_argument";
        err.message = "request is not a valid kx.v1.ToolSchemasRequest";
    } else if (!kx_pb_str_empty(rq->agentpress_tools_json) && !json_is_object(cfg)) {
        err.code = "invalid_argument";
        err.message = "agentpress_tools_json must be a JSON object";
    } else if (!array_or_empty(rq->custom_mcps_json)) {
        err.code = "invalid_argument";
        err.message = "custom_mcps_json must be a JSON array";
    } else if (!array_or_empty(rq->configured_mcps_json)) {
        err.code = "invalid_argument";
        err.message = "configured_mcps_json must be a JSON array";
    } else {
        tools = te_registry_schemas(cfg);
        if (tools == NULL) {
            err.code = "internal";
            err.message = "out of memory";
        }
    }
    json_decref(cfg);
    bool bad = !kx_pb_str_empty(err.code); /* protobuf-c's INIT: "" strings, never NULL */
    if (!bad && natsMsg_GetReply(msg) != NULL &&
        (!no_servers(rq->custom_mcps_json) || !no_servers(rq->configured_mcps_json))) {
        ask_proxy(ex, msg, rq, tools); /* takes msg and tools */
        kx_pb_free(rq);
        return;
    }
    answer(ex, msg, tools, bad ? &err : NULL, NULL, NULL, NULL);
    json_decref(tools);
    kx_pb_free(rq);
    natsMsg_Destroy(msg);
}

kx_err te_schemas_start(te_executor *ex)
{
    kx_err err = kx_bus_subscribe_loop(ex->svc->bus, ex->svc->loop, KX_SUBJ_TOOL_SCHEMAS,
                                       "tool-executor", on_schemas, ex, &ex->schemas_sub);
    if (err != KX_OK)
        kx_error("tool-executor: cannot subscribe to %s: %s", KX_SUBJ_TOOL_SCHEMAS,
                 kx_err_str(err));
    return err;
}

void te_schemas_free(void)
{
    sch_req *q = g_pending;
    g_pending = NULL;
    while (q != NULL) {
        sch_req *next = q->next;
        req_free(q);
        q = next;
    }
}
