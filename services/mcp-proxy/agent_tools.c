/* agent_tools.c — the kx.mcp.agent_tools responder: the tools of an agent's MCP servers
 * (McpAgentToolsRequest{custom_mcps_json, configured_mcps_json, reserved_names}) named as the
 * model sees them (McpAgentToolsReply).
 *
 * Every server is looked up in the shared cache (tool_cache.c) and, on a miss, listed through
 * its pooled session — all servers at once, each within min(Kx-Deadline, now + 15 s). A server
 * that cannot be read (bad entry, refused, down, too slow) is reported in `servers` with its
 * error and skipped, as Kortix skipped failing servers; the others' tools are registered:
 * enabledTools applied, names derived and made unique (agent_config.c), descriptions suffixed
 * " (MCP Server: <name>)". The reply stays under the reply budget: tools past it are left out
 * and `truncated` is set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/bus.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "proxy.h"

typedef struct at_req at_req;

typedef struct at_server {
    at_req *r;
    mcp_agent_server as;
    bool parsed;
    const char *code; /* error code, NULL if fine */
    char err[512];
    json_t *tools; /* the server's tools (owned) */
    bool cached;
    int registered;
} at_server;

struct at_req {
    mcp_proxy *p;
    natsMsg *msg;
    at_server *servers;
    size_t n;
    size_t pending;
    json_t *reserved; /* object used as a set of names taken */
    kx_deadline deadline;
    int64_t start_ms;
    char trace_id[33];
    char *account; /* the request's account_id: its servers' sessions are its own */
};

static void reply_and_free(at_req *r, const char *code, const char *message)
{
    mcp_proxy *p = r->p;
    Kx__V1__McpAgentToolsReply reply = KX__V1__MCP_AGENT_TOOLS_REPLY__INIT;
    Kx__V1__Error rerr = KX__V1__ERROR__INIT;
    size_t total_tools = 0;
    for (size_t i = 0; i < r->n; i++)
        total_tools += json_array_size(r->servers[i].tools);
    Kx__V1__McpAgentTool *tools = calloc(total_tools + 1, sizeof *tools);
    Kx__V1__McpAgentTool **tool_ptrs = calloc(total_tools + 1, sizeof *tool_ptrs);
    char **owned = calloc(3 * total_tools + 1, sizeof *owned); /* name, desc, schema */
    Kx__V1__McpServerStatus *st = calloc(r->n + 1, sizeof *st);
    Kx__V1__McpServerStatus **st_ptrs = calloc(r->n + 1, sizeof *st_ptrs);
    Kx__V1__Error *st_err = calloc(r->n + 1, sizeof *st_err);
    size_t nowned = 0, kept = 0, used = 0, budget = mcp_proxy_reply_budget(p);
    if (!tools || !tool_ptrs || !owned || !st || !st_ptrs || !st_err) {
        code = "internal";
        message = "out of memory building the reply";
    }
    if (code != NULL) {
        rerr.code = (char *)code;
        rerr.message = (char *)message;
        reply.error = &rerr;
    } else {
        for (size_t i = 0; i < r->n; i++) {
            at_server *sv = &r->servers[i];
            size_t j;
            json_t *t;
            json_array_foreach(sv->tools, j, t)
            {
                const char *tname = json_string_value(json_object_get(t, "name"));
                if (tname == NULL || tname[0] == '\0' || !mcp_agent_tool_enabled(&sv->as, tname))
                    continue;
                char base[MCP_MODEL_NAME_MAX + 1], name[MCP_MODEL_NAME_MAX + 1];
                mcp_model_name(sv->as.display, tname, sv->as.custom, base, sizeof base);
                const char *d = json_string_value(json_object_get(t, "description"));
                const json_t *schema = json_object_get(t, "inputSchema");
                char *desc = NULL, *sch = NULL;
                size_t dl = (d ? strlen(d) : 0) + strlen(sv->as.display) + 32;
                if ((desc = malloc(dl)) != NULL)
                    snprintf(desc, dl, "%s (MCP Server: %s)", d ? d : "", sv->as.display);
                sch = schema ? json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY)
                             : strdup("{\"type\":\"object\"}");
                size_t need = strlen(base) + dl + (sch ? strlen(sch) : 0) + strlen(tname) +
                    strlen(sv->as.cfg.name) + strlen(sv->as.entry_json) + 64;
                if (desc == NULL || sch == NULL || used + need > budget) {
                    free(desc);
                    free(sch);
                    reply.truncated = true;
                    continue;
                }
                mcp_names_claim(r->reserved, base, name, sizeof name);
                char *nm = strdup(name);
                if (nm == NULL) {
                    free(desc);
                    free(sch);
                    reply.truncated = true;
                    continue;
                }
                used += need;
                owned[nowned++] = nm;
                owned[nowned++] = desc;
                owned[nowned++] = sch;
                Kx__V1__McpAgentTool *at = &tools[kept];
                kx__v1__mcp_agent_tool__init(at);
                at->name = nm;
                at->description = desc;
                at->input_schema_json = sch;
                at->server = sv->as.cfg.name ? sv->as.cfg.name : (char *)"";
                at->tool = (char *)tname;
                at->server_json = sv->as.entry_json ? sv->as.entry_json : (char *)"";
                at->custom = sv->as.custom;
                tool_ptrs[kept++] = at;
                sv->registered++;
            }
        }
        reply.tools = tool_ptrs;
        reply.n_tools = kept;
        for (size_t i = 0; i < r->n; i++) {
            at_server *sv = &r->servers[i];
            kx__v1__mcp_server_status__init(&st[i]);
            st[i].server = sv->parsed ? sv->as.cfg.name : (char *)"";
            st[i].tools = sv->registered;
            st[i].cached = sv->cached;
            if (sv->code != NULL) {
                kx__v1__error__init(&st_err[i]);
                st_err[i].code = (char *)sv->code;
                st_err[i].message = sv->err;
                st[i].error = &st_err[i];
            }
            st_ptrs[i] = &st[i];
        }
        reply.servers = st_ptrs;
        reply.n_servers = r->n;
    }
    kx_err err = kx_bus_respond_pb(p->svc->bus, r->msg, &reply.base);
    const char *tid = r->trace_id[0] ? r->trace_id : NULL;
    if (err != KX_OK)
        kx_log(KX_LOG_ERROR, NULL, tid, "kx.mcp.agent_tools: replying failed: %s",
               kx_err_str(err));
    if (code != NULL)
        kx_log(KX_LOG_WARN, NULL, tid, "kx.mcp.agent_tools: %s: %s", code, message);
    else
        kx_log(KX_LOG_INFO, NULL, tid, "kx.mcp.agent_tools: %zu servers, %zu tools%s in %lld ms",
               r->n, kept, reply.truncated ? " (truncated)" : "",
               (long long)(kx_mono_ms() - r->start_ms));
    for (size_t i = 0; i < nowned; i++)
        free(owned[i]);
    free(owned);
    free(tools);
    free(tool_ptrs);
    free(st);
    free(st_ptrs);
    free(st_err);
    for (size_t i = 0; i < r->n; i++) {
        mcp_agent_server_free(&r->servers[i].as);
        json_decref(r->servers[i].tools);
    }
    free(r->servers);
    json_decref(r->reserved);
    free(r->account);
    natsMsg_Destroy(r->msg);
    free(r);
}

static void server_done(at_req *r)
{
    if (--r->pending == 0)
        reply_and_free(r, NULL, NULL);
}

static void on_listed(const mcp_tools_result *result, const char *code, const char *message,
                      void *arg)
{
    at_server *sv = arg;
    if (result == NULL) {
        sv->code = code;
        snprintf(sv->err, sizeof sv->err, "%s", message);
    } else {
        sv->tools = json_incref((json_t *)result->tools);
        json_t *v =
            json_pack("{s:s, s:s, s:O}", "server_name", result->server_name, "protocol_version",
                      result->protocol_version, "tools", result->tools);
        if (v != NULL)
            mcp_tool_cache_put(&sv->r->p->cache, sv->as.cfg.hash, v);
        json_decref(v);
    }
    server_done(sv->r);
}

static void on_cached(json_t *value, void *arg)
{
    at_server *sv = arg;
    at_req *r = sv->r;
    if (value != NULL) {
        sv->tools = json_incref(json_object_get(value, "tools"));
        sv->cached = true;
        json_decref(value);
        server_done(r);
        return;
    }
    mcp_session *s = mcp_proxy_pooled(r->p, &sv->as.cfg, r->account);
    if (s == NULL) {
        sv->code = "internal";
        snprintf(sv->err, sizeof sv->err, "out of memory");
        server_done(r);
        return;
    }
    kx_deadline d = kx_deadline_min(r->deadline, kx_deadline_in(MCP_OPEN_TIMEOUT_MS));
    mcp_session_list_tools(s, d, on_listed, sv);
}

/* Appends the entries of the JSON array text (custom or configured) to r->servers. */
static int add_entries(at_req *r, const char *text, bool custom, char *why, size_t whylen)
{
    if (text == NULL || text[0] == '\0')
        return 0;
    json_error_t jerr;
    json_t *arr = json_loads(text, 0, &jerr);
    if (!json_is_array(arr)) {
        snprintf(why, whylen, "%s_json must be a JSON array%s%s",
                 custom ? "custom_mcps" : "configured_mcps", arr ? "" : ": ",
                 arr ? "" : jerr.text);
        json_decref(arr);
        return -1;
    }
    size_t n = json_array_size(arr);
    if (r->n + n > 256) {
        snprintf(why, whylen, "at most 256 MCP servers per agent");
        json_decref(arr);
        return -1;
    }
    at_server *grown = realloc(r->servers, (r->n + n + 1) * sizeof *grown);
    if (grown == NULL) {
        json_decref(arr);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    r->servers = grown;
    for (size_t i = 0; i < n; i++) {
        at_server *sv = &r->servers[r->n++];
        memset(sv, 0, sizeof *sv);
        sv->r = r;
        if (mcp_agent_server_parse(json_array_get(arr, i), custom, &sv->as, sv->err,
                                   sizeof sv->err) != 0) {
            sv->code = "invalid_argument";
            continue;
        }
        sv->parsed = true;
        for (size_t k = 0; k + 1 < r->n; k++)
            if (r->servers[k].parsed && strcmp(r->servers[k].as.cfg.name, sv->as.cfg.name) == 0) {
                sv->code = "invalid_argument";
                snprintf(sv->err, sizeof sv->err,
                         "two MCP servers are both named '%s'; the "
                         "second was skipped",
                         sv->as.cfg.name);
                break;
            }
    }
    json_decref(arr);
    return 0;
}

void mcp_agent_tools_on_request(natsMsg *msg, void *arg)
{
    mcp_proxy *p = arg;
    const char *reply_to = natsMsg_GetReply(msg);
    if (reply_to == NULL || reply_to[0] == '\0') {
        natsMsg_Destroy(msg);
        return;
    }
    at_req *r = calloc(1, sizeof *r);
    if (r == NULL || (r->reserved = json_object()) == NULL) {
        free(r);
        kx_error("kx.mcp.agent_tools: out of memory; request dropped");
        natsMsg_Destroy(msg);
        return;
    }
    r->p = p;
    r->msg = msg;
    r->start_ms = kx_mono_ms();
    r->pending = 1; /* held until every server has been started */
    kx_bus_meta meta;
    kx_err err = kx_bus_meta_read(msg, &meta);
    if (err == KX_OK)
        kx_bus_trace_id(&meta, r->trace_id);
    Kx__V1__McpAgentToolsRequest *req =
        kx_pb_unpack(&kx__v1__mcp_agent_tools_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    char why[512];
    if (err != KX_OK || meta.deadline == KX_NO_DEADLINE) {
        reply_and_free(r, "invalid_argument",
                       "the Kx-Deadline header is missing or malformed "
                       "(want unix milliseconds)");
    } else if (req == NULL) {
        reply_and_free(r, "invalid_argument", "the request is not a kx.v1.McpAgentToolsRequest");
    } else if (add_entries(r, req->custom_mcps_json, true, why, sizeof why) != 0 ||
               add_entries(r, req->configured_mcps_json, false, why, sizeof why) != 0) {
        reply_and_free(r, "invalid_argument", why);
    } else if ((r->account = strdup(req->account_id != NULL ? req->account_id : "")) == NULL) {
        reply_and_free(r, "internal", "out of memory");
    } else {
        for (size_t i = 0; i < req->n_reserved_names; i++)
            json_object_set_new(r->reserved, req->reserved_names[i], json_true());
        r->deadline = mcp_proxy_deadline(p, meta.deadline);
        size_t n = r->n;
        for (size_t i = 0; i < n; i++)
            if (r->servers[i].code == NULL)
                r->pending++;
        for (size_t i = 0; i < n; i++)
            if (r->servers[i].code == NULL)
                mcp_tool_cache_get(&p->cache, r->servers[i].as.cfg.hash, r->deadline, on_cached,
                                   &r->servers[i]);
        server_done(r);
    }
    kx_pb_free(req);
}
