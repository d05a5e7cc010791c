/* routes_mcp.c — custom MCP servers' tools (Kortix's routes, docs/api.md):
 *   GET  /api/agents/{id}/custom-mcp-tools   headers X-MCP-URL (required), X-MCP-Type ("sse" by
 *        default, or "http"), X-MCP-Headers (a JSON object of strings); answers
 *        {"tools": [{"name", "description", "enabled"}], "has_mcp_config", "server_type",
 *        "server_url"}. "enabled": the tool is in the enabledTools of the agent's current
 *        version's custom_mcps entry with the same URL (has_mcp_config says whether there is one).
 *   POST /api/agents/{id}/custom-mcp-tools   body {"url", "type" ("sse" default, or "http"),
 *        "enabled_tools": [names]}: saves the chosen tools as Kortix does — in the current
 *        version's custom_mcps, the entry with that type and URL gets enabledTools (an entry
 *        {"name": "Custom MCP (HTTP)", "customType", "type", "config": {"url"}} is added when
 *        there is none), and the result becomes a new active version ("v<n>", change_description
 *        "Auto-updated MCP tools", previous_version_id the old one; agents.current_version_id and
 *        version_count follow). Answers {"success": true, "enabled_tools", "total_tools",
 *        "version_id", "created"}; when the entry already has exactly these tools nothing is
 *        written (created false), so a retried POST makes no second version. One statement
 *        (agent_store.h, kx_agent_save_mcp_tools of migration 007) with the agent's row locked:
 *        concurrent saves take turns, and no SQL text is built from the request.
 *   POST /api/mcp/discover-custom-tools      body {"type": "http"|"sse", "config": {"url",
 *        "headers"?}}: a server's tools before it is saved on any agent. Answers Kortix's
 *        {"success": true, "qualified_name", "display_name", "tools": [{"name", "description",
 *        "inputSchema"}], "config", "url", "message"}.
 * Both listings go through list_server below: the mcp-proxy lists the server
 * (kx.mcp.agent_tools, the server given as one custom_mcps entry, so the proxy's guards apply:
 * no loopback or link-local targets, its cache, its 15 s limit). A server that cannot be read is
 * 502, one too slow 504, the proxy absent 503 — each {"detail": …} naming why.
 * Access: GET — the agent's owner, or anyone when the agent is public; 404 "Agent not found"
 * for an unknown or malformed id and for another account's private agent. POST — the owner
 * only (404 "Agent not found" for anyone else). Discovery reads no stored object: any
 * authenticated account. Handlers run on libmicrohttpd's pool threads, so the bus request may
 * block this thread (up to MCP_LIST_TIMEOUT_MS). */
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "agent_store.h"
#include "body.h"
#include "gateway.h"
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/uuid.h"
#include "reply.h"

#define MCP_LIST_TIMEOUT_MS 20000 /* the proxy gives a server 15 s to open and list */

/* The agent's current version's {"custom_mcps": [...]} (malloc'd). false with the reply set when
 * the account may not read the agent (404: another account's private agent is "not found"). */
static bool load_agent(gw_app *app, gw_request *req, char **config, gw_reply *reply)
{
    *config = NULL;
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found");
        return false;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return false;
    kx_err err = gw_agent_mcp_config(db, req->id, req->account, config);
    gw_db_put(app, db);
    if (err == KX_ERR_NOT_FOUND)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found");
    else if (err != KX_OK)
        gw_reply_db_error(reply, err, "Failed to load agent");
    return err == KX_OK;
}

/* Whether config has a custom_mcps entry whose config.url is url; *enabled gets its
 * enabledTools (borrowed; NULL when absent). */
static bool find_entry(const json_t *config, const char *url, const json_t **enabled)
{
    size_t i;
    const json_t *e;
    *enabled = NULL;
    json_array_foreach(json_object_get(config, "custom_mcps"), i, e)
    {
        const char *u = json_string_value(json_object_get(json_object_get(e, "config"), "url"));
        if (u != NULL && strcmp(u, url) == 0) {
            *enabled = json_object_get(e, "enabledTools");
            return true;
        }
    }
    return false;
}

/* The server's own description: the proxy's " (MCP Server: custom)" suffix removed. */
static json_t *own_description(const char *d)
{
    static const char suffix[] = " (MCP Server: custom)";
    size_t n = strlen(d), sl = sizeof suffix - 1;
    if (n >= sl && strcmp(d + n - sl, suffix) == 0)
        n -= sl;
    return json_stringn(d, n);
}

static bool listed(const json_t *list, const char *name)
{
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v) if (json_is_string(v) &&
                                       strcmp(json_string_value(v), name) == 0) return true;
    return false;
}

/* ---- what a request may name as a server ---- */

#define MCP_MAX_URL 2048 /* the proxy's own limit */
#define MCP_MAX_HEADERS 32
#define MCP_MAX_HEADER_NAME 128
#define MCP_MAX_HEADER_VALUE 8192

/* url (the request's field `what`) is an http:// or https:// URL of at most MCP_MAX_URL bytes
 * without spaces or control characters; false with a 400 naming `what` otherwise. */
static bool url_ok(const char *what, const char *url, gw_reply *reply)
{
    if (url == NULL || url[0] == '\0') {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "MCP URL is required (%s: a string)", what);
        return false;
    }
    bool bad = strlen(url) > MCP_MAX_URL ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0);
    for (const char *c = url; !bad && *c; c++)
        bad = (unsigned char)*c <= ' ' || *c == 0x7f;
    if (bad)
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "%s must be an http:// or https:// URL of at most %d bytes, without "
                       "spaces or control characters",
                       what, MCP_MAX_URL);
    return !bad;
}

static bool token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* headers (the request's field `what`; NULL or null: none) is an object of at most
 * MCP_MAX_HEADERS HTTP header names to string values without line breaks; false with a 400
 * naming `what` (and the header) otherwise. */
static bool headers_ok(const char *what, const json_t *headers, gw_reply *reply)
{
    if (headers == NULL || json_is_null(headers))
        return true;
    if (!json_is_object(headers)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be a JSON object of strings", what);
        return false;
    }
    if (json_object_size(headers) > MCP_MAX_HEADERS) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s has %zu headers; at most %d", what,
                       json_object_size(headers), MCP_MAX_HEADERS);
        return false;
    }
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)headers, name, v)
    {
        size_t n = strlen(name);
        bool ok = n > 0 && n <= MCP_MAX_HEADER_NAME;
        for (size_t i = 0; ok && i < n; i++)
            ok = token_char((unsigned char)name[i]);
        const char *value = json_string_value(v);
        size_t len = json_string_length(v);
        if (!ok || value == NULL || len > MCP_MAX_HEADER_VALUE || strlen(value) != len ||
            strpbrk(value, "\r\n") != NULL) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "%s: header \"%.80s\" needs a token name of at most %d bytes and a "
                           "string value of at most %d bytes without line breaks",
                           what, name, MCP_MAX_HEADER_NAME, MCP_MAX_HEADER_VALUE);
            return false;
        }
    }
    return true;
}

/* ---- POST: saving the enabled tools as a new version ---- */

#define SAVE_MAX_TOOLS 1000

/* The body's {url, type, enabled_tools}, checked. false with the reply set (400 naming the
 * field) when it is not acceptable. *tools is a new reference (strings, no duplicates). */
static bool save_body(const gw_request *req, const char **url, const char **type, json_t **tools,
                      json_t **body, gw_reply *reply)
{
    *tools = NULL;
    *body = req->body ? json_loads(req->body, 0, NULL) : NULL;
    if (!json_is_object(*body)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "The body must be a JSON object {\"url\", \"type\", \"enabled_tools\"}");
        return false;
    }
    *url = json_string_value(json_object_get(*body, "url"));
    if (!url_ok("\"url\"", *url, reply))
        return false;
    const json_t *t = json_object_get(*body, "type");
    *type = t == NULL || json_is_null(t) ? "sse" : json_string_value(t);
    if (*type == NULL || (strcmp(*type, "sse") != 0 && strcmp(*type, "http") != 0)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "\"type\" must be 'sse' or 'http'");
        return false;
    }
    const json_t *list = json_object_get(*body, "enabled_tools");
    if (list != NULL && !json_is_array(list)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "\"enabled_tools\" must be an array of tool names");
        return false;
    }
    if (json_array_size(list) > SAVE_MAX_TOOLS) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "\"enabled_tools\" has %zu entries; at most %d", json_array_size(list),
                       SAVE_MAX_TOOLS);
        return false;
    }
    *tools = json_array();
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *name = json_string_value(v);
        if (name == NULL || name[0] == '\0' || strlen(name) > 255) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "\"enabled_tools\"[%zu] must be a tool name (1..255 bytes)", i);
            json_decref(*tools);
            *tools = NULL;
            return false;
        }
        if (!listed(*tools, name))
            json_array_append_new(*tools, json_string(name));
    }
    return true;
}

static void save_tools(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found");
        return;
    }
    const char *url, *type;
    json_t *tools, *body;
    if (!save_body(req, &url, &type, &tools, &body, reply)) {
        json_decref(body);
        return;
    }
    char *text = json_dumps(tools, JSON_COMPACT);
    kx_db *db = text != NULL ? gw_db_get(app, reply) : NULL;
    if (text == NULL)
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
    if (db != NULL) {
        /* one statement: the agent's row locked, the entry found or added, the version made
         * (or nothing written when the entry already has these tools) — agent_store.h */
        char version[KX_UUID_LEN + 1] = "";
        bool created = false;
        kx_err err =
            gw_agent_mcp_save(db, req->id, req->account, type, url, text, version, &created);
        gw_db_put(app, db);
        if (err == KX_ERR_NOT_FOUND)
            gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found");
        else if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to save the MCP tools");
        else
            gw_reply_json(reply, MHD_HTTP_OK,
                          json_pack("{s:b, s:O, s:I, s:s, s:b}", "success", 1, "enabled_tools",
                                    tools, "total_tools", (json_int_t)json_array_size(tools),
                                    "version_id", version, "created", created));
    }
    free(text);
    json_decref(tools);
    json_decref(body);
}

/* ---- listing one server's tools through the mcp-proxy (the GET and discovery share it) ---- */

/* type (the request's field `what`) is "sse" or "http"; false with a 400 naming it otherwise.
 * ("json", a command the proxy would start, is not taken from a request: Kortix's discovery
 * did not take it either.) */
static bool type_ok(const char *what, const char *type, gw_reply *reply)
{
    if (type != NULL && (strcmp(type, "sse") == 0 || strcmp(type, "http") == 0))
        return true;
    gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be 'sse' or 'http'", what);
    return false;
}

/* The tools of the server of this type at url (headers: a checked object or NULL) as the
 * mcp-proxy lists them for account: the reply (kx_pb_free) when the server answered, else NULL
 * with the reply set — 400 when the proxy found the entry bad, 502 when the server could not
 * be read, 504 when it (or the proxy) did not answer in time, 503 when no proxy answered. */
static Kx__V1__McpAgentToolsReply *list_server(gw_app *app, const char *account, const char *type,
                                               const char *url, const json_t *headers,
                                               gw_reply *reply)
{
    json_t *h = headers != NULL && json_is_object(headers) ? json_incref((json_t *)headers)
                                                           : json_object();
    json_t *entry = json_pack("[{s:s, s:s, s:{s:s, s:o}, s:[]}]", "name", "custom", "type", type,
                              "config", "url", url, "headers", h, "enabledTools");
    char *custom = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);
    if (custom == NULL) {
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        return NULL;
    }
    Kx__V1__McpAgentToolsRequest mreq = KX__V1__MCP_AGENT_TOOLS_REQUEST__INIT;
    mreq.custom_mcps_json = custom;
    mreq.account_id = (char *)account;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(MCP_LIST_TIMEOUT_MS), account);
    natsMsg *msg = NULL;
    kx_err err =
        kx_bus_request_pb(app->svc->bus, KX_SUBJ_MCP_AGENT_TOOLS, &mreq.base, &meta, &msg);
    free(custom);
    Kx__V1__McpAgentToolsReply *r = err == KX_OK
        ? kx_pb_unpack(&kx__v1__mcp_agent_tools_reply__descriptor, natsMsg_GetData(msg),
                       (size_t)natsMsg_GetDataLength(msg))
        : NULL;
    natsMsg_Destroy(msg);
    const Kx__V1__Error *e = r == NULL ? NULL
        : r->error != NULL             ? r->error
        : r->n_servers > 0             ? r->servers[0]->error
                                       : NULL;
    if (r == NULL && err == KX_ERR_TIMEOUT)
        gw_reply_error(reply, MHD_HTTP_GATEWAY_TIMEOUT, "The MCP proxy did not answer within %d s",
                       MCP_LIST_TIMEOUT_MS / 1000);
    else if (r == NULL)
        gw_reply_error(reply, MHD_HTTP_SERVICE_UNAVAILABLE, "The MCP proxy did not answer: %s",
                       kx_err_str(err == KX_OK ? KX_ERR_PROTOCOL : err));
    else if (e == NULL)
        return r;
    else if (r->error != NULL || strcmp(e->code ? e->code : "", "invalid_argument") == 0)
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s", e->message ? e->message : "bad server");
    else if (strcmp(e->code ? e->code : "", "deadline_exceeded") == 0)
        gw_reply_error(reply, MHD_HTTP_GATEWAY_TIMEOUT,
                       "The MCP server did not list its tools in time: %s",
                       e->message ? e->message : "deadline exceeded");
    else
        gw_reply_error(reply, MHD_HTTP_BAD_GATEWAY, "Failed to list the MCP server's tools: %s",
                       e->message ? e->message : "unknown error");
    kx_pb_free(r);
    return NULL;
}

/* ---- GET: the server's tools with their enabled flags ---- */

static void list_agent_tools(gw_app *app, gw_request *req, gw_reply *reply)
{
    const char *url = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-MCP-URL");
    const char *type = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-MCP-Type");
    const char *hdrs = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-MCP-Headers");
    if (url == NULL || url[0] == '\0') {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "X-MCP-URL header is required");
        return;
    }
    if (type == NULL || type[0] == '\0')
        type = "sse";
    if (!url_ok("X-MCP-URL", url, reply) || !type_ok("X-MCP-Type", type, reply))
        return;
    json_t *headers = NULL;
    if (hdrs != NULL && hdrs[0] != '\0') {
        headers = json_loads(hdrs, 0, NULL);
        if (headers == NULL)
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "X-MCP-Headers must be a JSON object");
        if (headers == NULL || !headers_ok("X-MCP-Headers", headers, reply)) {
            json_decref(headers);
            return;
        }
    }
    char *config_text = NULL;
    Kx__V1__McpAgentToolsReply *r = NULL;
    if (load_agent(app, req, &config_text, reply))
        r = list_server(app, req->account, type, url, headers, reply);
    json_decref(headers);
    json_t *config = r != NULL ? json_loads(config_text, 0, NULL) : NULL;
    free(config_text);
    if (r == NULL)
        return;
    const json_t *enabled = NULL;
    bool has_config = find_entry(config, url, &enabled);
    json_t *tools = json_array();
    for (size_t i = 0; i < r->n_tools; i++)
        json_array_append_new(tools,
                              json_pack("{s:s, s:o, s:b}", "name", r->tools[i]->tool,
                                        "description", own_description(r->tools[i]->description),
                                        "enabled", listed(enabled, r->tools[i]->tool)));
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:o, s:b, s:s, s:s}", "tools", tools, "has_mcp_config", has_config,
                            "server_type", type, "server_url", url));
    json_decref(config);
    kx_pb_free(r);
}

void gw_route_custom_mcp_tools(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (strcmp(req->method, "POST") == 0)
        save_tools(app, req, reply);
    else
        list_agent_tools(app, req, reply);
}

/* ---- POST /api/mcp/discover-custom-tools ---- */

/* Kortix's qualified_name for a discovered server: "custom_<type>_<the URL's last segment>". */
static json_t *discovered_name(const char *type, const char *url)
{
    const char *slash = strrchr(url, '/');
    char name[MCP_MAX_URL + 32];
    snprintf(name, sizeof name, "custom_%s_%s", type, slash != NULL ? slash + 1 : url);
    return json_string(name);
}

void gw_route_mcp_discover(gw_app *app, gw_request *req, gw_reply *reply)
{
    json_t *body = gw_body_json_object(req, false, reply);
    if (body == NULL)
        return;
    const char *type = json_string_value(json_object_get(body, "type"));
    json_t *config = json_object_get(body, "config");
    const json_t *headers = json_object_get(config, "headers");
    const char *url = json_string_value(json_object_get(config, "url"));
    Kx__V1__McpAgentToolsReply *r = NULL;
    if (json_object_get(body, "type") == NULL)
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "\"type\" is required: 'sse' or 'http'");
    else if (!json_is_object(config))
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "\"config\" is required: an object {\"url\", \"headers\"?}");
    else if (type_ok("\"type\"", type, reply) && url_ok("\"config.url\"", url, reply) &&
             headers_ok("\"config.headers\"", headers, reply))
        r = list_server(app, req->account, type, url, headers, reply);
    if (r == NULL) {
        json_decref(body);
        return;
    }
    json_t *tools = json_array();
    for (size_t i = 0; i < r->n_tools; i++) {
        const char *schema = r->tools[i]->input_schema_json;
        json_t *s = schema != NULL && schema[0] != '\0' ? json_loads(schema, 0, NULL) : NULL;
        json_array_append_new(tools,
                              json_pack("{s:s, s:o, s:o}", "name", r->tools[i]->tool,
                                        "description", own_description(r->tools[i]->description),
                                        "inputSchema", s ? s : json_null()));
    }
    bool http = strcmp(type, "http") == 0;
    char display[MCP_MAX_URL + 40], message[160];
    snprintf(display, sizeof display, "Custom %s MCP (%s)", http ? "HTTP" : "SSE", url);
    snprintf(message, sizeof message, "Connected via %s (%zu tools)%s", http ? "HTTP" : "SSE",
             r->n_tools, r->truncated ? "; the list was cut to fit one bus message" : "");
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:b, s:o, s:s, s:o, s:O, s:s, s:s}", "success", 1, "qualified_name",
                            discovered_name(type, url), "display_name", display, "tools", tools,
                            "config", config, "url", url, "message", message));
    kx_pb_free(r);
    json_decref(body);
}
