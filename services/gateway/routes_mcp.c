/* routes_mcp.c — an agent's custom MCP server's tools (Kortix's route, docs/api.md):
 *   GET  /api/agents/{id}/custom-mcp-tools   headers X-MCP-URL (required), X-MCP-Type ("sse" by
 *        default, or "http"), X-MCP-Headers (a JSON object of strings); answers
 *        {"tools": [{"name", "description", "enabled"}], "has_mcp_config", "server_type",
 *        "server_url"}. The tools are listed by the mcp-proxy (kx.mcp.agent_tools, the server
 *        given as one custom_mcps entry, so the proxy's guards apply: no loopback or link-local
 *        targets). "enabled": the tool is in the enabledTools of the agent's current version's
 *        custom_mcps entry with the same URL (has_mcp_config says whether there is one).
 *   POST /api/agents/{id}/custom-mcp-tools   body {"url", "type" ("sse" default, or "http"),
 *        "enabled_tools": [names]}: saves the chosen tools as Kortix does — in the current
 *        version's custom_mcps, the entry with that type and URL gets enabledTools (an entry
 *        {"name": "Custom MCP (HTTP)", "customType", "type", "config": {"url"}} is added when
 *        there is none), and the result becomes a new active version ("v<n>", change_description
 *        "Auto-updated MCP tools", previous_version_id the old one; agents.current_version_id and
 *        version_count follow). Answers {"success": true, "enabled_tools", "total_tools",
 *        "version_id", "created"}; when the entry already has exactly these tools nothing is
 *        written (created false), so a retried POST makes no second version. All in one
 *        transaction with the agent's row locked (FOR UPDATE): concurrent saves take turns.
 * Access: GET — the agent's owner, or anyone when the agent is public; 404 "Agent not found"
 * for an unknown or malformed id, 403 "Access denied" otherwise. POST — the owner only (as
 * Kortix, 404 "Agent not found" for anyone else). Handlers run on libmicrohttpd's pool threads,
 * so the bus request may block this thread (up to MCP_LIST_TIMEOUT_MS). */
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "gateway.h"
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/uuid.h"
#include "reply.h"

#define MCP_LIST_TIMEOUT_MS 20000 /* the proxy gives a server 15 s to open and list */

/* The agent's owner, is_public and current version config (JSON, malloc'd, "{}" if none).
 * false with the reply set when the agent cannot be read by this account. */
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
    /* The id was checked to be a UUID: embedding it cannot inject SQL. */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT a.account_id::text, a.is_public, COALESCE(v.config::text, '{}') "
             "FROM agents a LEFT JOIN agent_versions v ON v.version_id = a.current_version_id "
             "WHERE a.agent_id = '%s'::uuid",
             req->id);
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(db, sql, &err);
    bool ok = false;
    if (r == NULL) {
        gw_reply_db_error(reply, err, "Failed to load agent");
    } else if (PQntuples(r) == 0) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found");
    } else if (strcmp(PQgetvalue(r, 0, 0), req->account) != 0 &&
               strcmp(PQgetvalue(r, 0, 1), "t") != 0) {
        gw_reply_error(reply, MHD_HTTP_FORBIDDEN, "Access denied");
    } else {
        *config = strdup(PQgetvalue(r, 0, 2));
        ok = *config != NULL;
        if (!ok)
            gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
    }
    PQclear(r);
    gw_db_put(app, db);
    return ok;
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

/* ---- POST: saving the enabled tools as a new version ---- */

#define SAVE_MAX_TOOLS 1000
#define SAVE_MAX_URL 2048

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
    const json_t *u = json_object_get(*body, "url");
    *url = json_string_value(u);
    if (*url == NULL || (*url)[0] == '\0') {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "MCP URL is required (\"url\": a string)");
        return false;
    }
    if (strlen(*url) > SAVE_MAX_URL ||
        (strncmp(*url, "http://", 7) != 0 && strncmp(*url, "https://", 8) != 0)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "\"url\" must be an http:// or https:// URL of at most %d bytes",
                       SAVE_MAX_URL);
        return false;
    }
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

/* The entry of config's custom_mcps with this type (type or customType) and URL, or NULL. */
static json_t *entry_for(json_t *custom, const char *type, const char *url)
{
    size_t i;
    json_t *e;
    json_array_foreach(custom, i, e)
    {
        const char *t = json_string_value(json_object_get(e, "customType"));
        if (t == NULL)
            t = json_string_value(json_object_get(e, "type"));
        const char *u = json_string_value(json_object_get(json_object_get(e, "config"), "url"));
        if (t != NULL && u != NULL && strcmp(t, type) == 0 && strcmp(u, url) == 0)
            return e;
    }
    return NULL;
}

/* Text as a SQL expression that cannot inject: convert_from(decode('<hex>', 'hex'), 'UTF8'). */
static char *sql_text(const char *text)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(text);
    char *out = malloc(2 * n + 64);
    if (out == NULL)
        return NULL;
    char *p = out + sprintf(out, "convert_from(decode('");
    for (size_t i = 0; i < n; i++) {
        *p++ = hex[(unsigned char)text[i] >> 4];
        *p++ = hex[(unsigned char)text[i] & 15];
    }
    static const char tail[] = "', 'hex'), 'UTF8')";
    memcpy(p, tail, sizeof tail); /* with its NUL; out has room for 63 more bytes */
    return out;
}

/* Runs sql in the open transaction; NULL with the reply set (and the transaction rolled back)
 * on failure. */
static PGresult *tx_exec(kx_db *db, const char *sql, gw_reply *reply)
{
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(db, sql, &err);
    if (r == NULL) {
        kx_db_rollback(db);
        gw_reply_db_error(reply, err, "Failed to save the MCP tools");
    }
    return r;
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
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL) {
        json_decref(tools);
        json_decref(body);
        return;
    }
    json_t *config = NULL;
    char *config_text = NULL, *config_sql = NULL, *sql = NULL;
    PGresult *r = NULL;
    kx_err err = kx_db_begin(db);
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to save the MCP tools");
        goto done;
    }
    /* The ids were checked to be UUIDs: embedding them cannot inject SQL. The agent's row is
     * locked until the commit, so the version number read below stays the next one. */
    sql = malloc(1024);
    if (sql == NULL)
        goto oom;
    snprintf(sql, 1024,
             "SELECT a.account_id::text, COALESCE(a.current_version_id::text, ''), "
             "COALESCE(v.config::text, '{\"system_prompt\": \"\", \"tools\": {}}'), "
             "(SELECT COALESCE(max(version_number), 0) + 1 FROM agent_versions "
             "WHERE agent_id = a.agent_id) "
             "FROM agents a LEFT JOIN agent_versions v ON v.version_id = a.current_version_id "
             "WHERE a.agent_id = '%s'::uuid FOR UPDATE OF a",
             req->id);
    if ((r = tx_exec(db, sql, reply)) == NULL)
        goto done;
    if (PQntuples(r) == 0 || strcmp(PQgetvalue(r, 0, 0), req->account) != 0) {
        kx_db_rollback(db);
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found");
        goto done;
    }
    char previous[KX_UUID_LEN + 1];
    snprintf(previous, sizeof previous, "%s", PQgetvalue(r, 0, 1));
    long number = strtol(PQgetvalue(r, 0, 3), NULL, 10);
    config = json_loads(PQgetvalue(r, 0, 2), 0, NULL);
    PQclear(r);
    r = NULL;
    if (!json_is_object(config)) {
        kx_db_rollback(db);
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR,
                       "The agent's current version has no readable config");
        goto done;
    }
    json_t *custom = json_object_get(config, "custom_mcps");
    if (!json_is_array(custom)) {
        custom = json_array();
        json_object_set_new(config, "custom_mcps", custom);
    }
    json_t *entry = entry_for(custom, type, url);
    if (entry != NULL && json_equal(json_object_get(entry, "enabledTools"), tools)) {
        kx_db_rollback(db); /* nothing to change: no new version */
        gw_reply_json(reply, MHD_HTTP_OK,
                      json_pack("{s:b, s:O, s:I, s:s, s:b}", "success", 1, "enabled_tools", tools,
                                "total_tools", (json_int_t)json_array_size(tools), "version_id",
                                previous, "created", 0));
        goto done;
    }
    if (entry != NULL) {
        json_object_set(entry, "enabledTools", tools);
    } else {
        char name[64];
        snprintf(name, sizeof name, "Custom MCP (%s)", strcmp(type, "http") == 0 ? "HTTP" : "SSE");
        json_array_append_new(custom,
                              json_pack("{s:s, s:s, s:s, s:{s:s}, s:O}", "name", name,
                                        "customType", type, "type", type, "config", "url", url,
                                        "enabledTools", tools));
    }
    config_text = json_dumps(config, JSON_COMPACT);
    config_sql = config_text ? sql_text(config_text) : NULL;
    free(sql);
    sql = config_sql ? malloc(strlen(config_sql) + 2048) : NULL;
    if (sql == NULL)
        goto oom;
    char prev_sql[KX_UUID_LEN + 16];
    snprintf(prev_sql, sizeof prev_sql, previous[0] ? "'%s'::uuid" : "NULL", previous);
    sprintf(
        sql,
        "WITH nv AS (INSERT INTO agent_versions (agent_id, account_id, version_number, "
        "version_name, is_active, created_by, change_description, previous_version_id, "
        "config) VALUES ('%s'::uuid, '%s'::uuid, %ld, 'v%ld', true, '%s'::uuid, "
        "'Auto-updated MCP tools', %s, %s::jsonb) RETURNING version_id), "
        "old AS (UPDATE agent_versions SET is_active = false, updated_at = clock_timestamp() "
        "WHERE agent_id = '%s'::uuid AND is_active AND version_id NOT IN "
        "(SELECT version_id FROM nv)) "
        "UPDATE agents SET current_version_id = (SELECT version_id FROM nv), "
        "version_count = (SELECT count(*) FROM agent_versions WHERE agent_id = '%s'::uuid) + 1, "
        "updated_at = clock_timestamp() WHERE agent_id = '%s'::uuid "
        "RETURNING current_version_id::text",
        req->id, req->account, number, number, req->account, prev_sql, config_sql, req->id,
        req->id, req->id);
    if ((r = tx_exec(db, sql, reply)) == NULL)
        goto done;
    if (PQntuples(r) != 1) {
        kx_db_rollback(db);
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Failed to save the MCP tools");
        goto done;
    }
    char version[KX_UUID_LEN + 1];
    snprintf(version, sizeof version, "%s", PQgetvalue(r, 0, 0));
    if ((err = kx_db_commit(db)) != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to save the MCP tools");
        goto done;
    }
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:b, s:O, s:I, s:s, s:b}", "success", 1, "enabled_tools", tools,
                            "total_tools", (json_int_t)json_array_size(tools), "version_id",
                            version, "created", 1));
    goto done;
oom:
    kx_db_rollback(db);
    gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
done:
    PQclear(r);
    gw_db_put(app, db);
    free(sql);
    free(config_sql);
    free(config_text);
    json_decref(config);
    json_decref(tools);
    json_decref(body);
}

/* ---- GET: the server's tools with their enabled flags ---- */

void gw_route_custom_mcp_tools(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (strcmp(req->method, "POST") == 0) {
        save_tools(app, req, reply);
        return;
    }
    const char *url = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-MCP-URL");
    const char *type = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-MCP-Type");
    const char *hdrs = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-MCP-Headers");
    if (url == NULL || url[0] == '\0') {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "X-MCP-URL header is required");
        return;
    }
    if (type == NULL || type[0] == '\0')
        type = "sse";
    if (strcmp(type, "sse") != 0 && strcmp(type, "http") != 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "X-MCP-Type must be 'sse' or 'http'");
        return;
    }
    json_t *headers = NULL;
    if (hdrs != NULL && hdrs[0] != '\0') {
        headers = json_loads(hdrs, 0, NULL);
        if (!json_is_object(headers)) {
            json_decref(headers);
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "X-MCP-Headers must be a JSON object");
            return;
        }
    }
    char *config_text = NULL;
    if (!load_agent(app, req, &config_text, reply)) {
        json_decref(headers);
        return;
    }
    json_t *entry =
        json_pack("[{s:s, s:s, s:{s:s, s:o}, s:[]}]", "name", "custom", "type", type, "config",
                  "url", url, "headers", headers ? headers : json_object(), "enabledTools");
    char *custom = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);

    Kx__V1__McpAgentToolsRequest mreq = KX__V1__MCP_AGENT_TOOLS_REQUEST__INIT;
    mreq.custom_mcps_json = custom ? custom : (char *)"";
    mreq.account_id = req->account;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(MCP_LIST_TIMEOUT_MS), req->account);
    natsMsg *msg = NULL;
    kx_err err = custom
        ? kx_bus_request_pb(app->svc->bus, KX_SUBJ_MCP_AGENT_TOOLS, &mreq.base, &meta, &msg)
        : KX_ERR_NOMEM;
    free(custom);
    Kx__V1__McpAgentToolsReply *r = err == KX_OK
        ? kx_pb_unpack(&kx__v1__mcp_agent_tools_reply__descriptor, natsMsg_GetData(msg),
                       (size_t)natsMsg_GetDataLength(msg))
        : NULL;
    natsMsg_Destroy(msg);
    json_t *config = json_loads(config_text, 0, NULL);
    free(config_text);
    if (r == NULL) {
        gw_reply_error(reply, MHD_HTTP_SERVICE_UNAVAILABLE, "The MCP proxy did not answer: %s",
                       kx_err_str(err == KX_OK ? KX_ERR_PROTOCOL : err));
    } else if (r->error != NULL) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s", r->error->message);
    } else if (r->n_servers > 0 && r->servers[0]->error != NULL) {
        gw_reply_error(reply, MHD_HTTP_BAD_GATEWAY, "Failed to list the MCP server's tools: %s",
                       r->servers[0]->error->message);
    } else {
        const json_t *enabled = NULL;
        bool has_config = find_entry(config, url, &enabled);
        json_t *tools = json_array();
        for (size_t i = 0; i < r->n_tools; i++)
            json_array_append_new(tools,
                                  json_pack("{s:s, s:o, s:b}", "name", r->tools[i]->tool,
                                            "description",
                                            own_description(r->tools[i]->description), "enabled",
                                            listed(enabled, r->tools[i]->tool)));
        gw_reply_json(reply, MHD_HTTP_OK,
                      json_pack("{s:o, s:b, s:s, s:s}", "tools", tools, "has_mcp_config",
                                has_config, "server_type", type, "server_url", url));
    }
    json_decref(config);
    kx_pb_free(r);
}
