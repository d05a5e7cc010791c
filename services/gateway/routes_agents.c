/* routes_agents.c — the agent routes (see routes_agents.h): query and body checks here, the
 * rules (versions, the default agent, restrictions) in the database (agent_store.h). */
#include "routes_agents.h"

#include <ctype.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "access.h"
#include "agent_fields.h"
#include "agent_store.h"
#include "body.h"
#include "kx/utf8.h"
#include "kx/uuid.h"
#include "reply.h"
#include "routes_flags.h"
#include "text.h"

#define SEARCH_CHARS_MAX 200
#define TOOLS_FILTER_MAX 20
#define TOOLS_FILTER_BYTES 300
#define IDEM_KEY_MAX 200

kx_db *gw_agents_db(gw_app *app, const gw_request *req, bool check_id, gw_reply *reply)
{
    if (check_id && !kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found");
        return NULL;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return NULL;
    bool on = false;
    kx_err err = gw_flag_enabled(db, "custom_agents", &on);
    if (err != KX_OK || !on) {
        gw_db_put(app, db);
        if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to read feature flags");
        else
            gw_reply_error(reply, MHD_HTTP_FORBIDDEN,
                           "Custom agents currently disabled. This feature is not available at "
                           "the moment.");
        return NULL;
    }
    return db;
}

void gw_agents_answer(gw_reply *reply, kx_err err, char *json, const char *not_found,
                      const char *what)
{
    if (err == KX_OK)
        gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(json));
    else if (err == KX_ERR_NOT_FOUND)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "%s", not_found);
    else
        gw_reply_db_error(reply, err, what);
    free(json);
}

/* ---- GET /api/agents ---- */

static const char *query(const gw_request *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

/* An integer query parameter in [min, max]; absent gives def. */
static bool query_int(const gw_request *req, const char *key, int def, int min, int max, int *out,
                      gw_reply *reply)
{
    const char *v = query(req, key);
    *out = def;
    if (v == NULL)
        return true;
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || n < min || n > max) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be an integer from %d to %d", key,
                       min, max);
        return false;
    }
    *out = (int)n;
    return true;
}

/* A boolean query parameter as FastAPI reads one; absent: -1. */
static bool query_bool(const gw_request *req, const char *key, int *out, gw_reply *reply)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    const char *v = query(req, key);
    *out = -1;
    if (v == NULL)
        return true;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
            *out = strcasecmp(v, yes[i]) == 0;
            return true;
        }
    }
    gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be a boolean (true or false)", key);
    return false;
}

/* One of the allowed values; absent gives def. */
static bool query_enum(const gw_request *req, const char *key, const char *const *allowed,
                       const char *def, const char **out, gw_reply *reply)
{
    const char *v = query(req, key);
    *out = def;
    if (v == NULL)
        return true;
    for (size_t i = 0; allowed[i] != NULL; i++) {
        if (strcmp(v, allowed[i]) == 0) {
            *out = allowed[i];
            return true;
        }
    }
    char list[160] = "";
    for (size_t i = 0; allowed[i] != NULL; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", allowed[i]);
    }
    gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be one of %s", key, list);
    return false;
}

/* tools=mcp:<name>,agentpress:<tool>,... as a Postgres array literal (malloc'd in *out; NULL
 * when absent). */
static bool tools_filter(const gw_request *req, char **out, gw_reply *reply)
{
    *out = NULL;
    const char *v = query(req, "tools");
    if (v == NULL || v[0] == '\0')
        return true;
    if (!kx_utf8_valid(v, strlen(v))) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "tools is not valid UTF-8 text");
        return false;
    }
    size_t cap = 2 * strlen(v) + 3 * TOOLS_FILTER_MAX + 4, len = 0;
    char *lit = malloc(cap);
    if (lit == NULL) {
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        return false;
    }
    lit[len++] = '{';
    size_t count = 0;
    const char *p = v;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && isspace((unsigned char)*p)) {
            p++;
            n--;
        }
        while (n > 0 && isspace((unsigned char)p[n - 1]))
            n--;
        bool kind_ok = (n > 4 && strncmp(p, "mcp:", 4) == 0) ||
            (n > 11 && strncmp(p, "agentpress:", 11) == 0);
        if (!kind_ok || n > TOOLS_FILTER_BYTES || ++count > TOOLS_FILTER_MAX) {
            free(lit);
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "tools must be a comma-separated list of at most %d entries "
                           "mcp:<server> or agentpress:<tool> (each at most %d bytes)",
                           TOOLS_FILTER_MAX, TOOLS_FILTER_BYTES);
            return false;
        }
        if (count > 1)
            lit[len++] = ',';
        lit[len++] = '"';
        for (size_t i = 0; i < n; i++) {
            if (p[i] == '"' || p[i] == '\\')
                lit[len++] = '\\';
            lit[len++] = p[i];
        }
        lit[len++] = '"';
        p += n;
        p += strspn(p, " \t");
        if (*p == ',')
            p++;
    }
    lit[len++] = '}';
    lit[len] = '\0';
    *out = lit;
    return true;
}

void gw_route_agents_list(gw_app *app, gw_request *req, gw_reply *reply)
{
    static const char *const SORTS[] = {"name", "created_at", "updated_at", "tools_count", NULL};
    static const char *const ORDERS[] = {"asc", "desc", NULL};
    gw_agent_query q = {0};
    char *tools = NULL;
    q.search = query(req, "search");
    if (q.search != NULL &&
        (!kx_utf8_valid(q.search, strlen(q.search)) || strlen(q.search) > 4 * SEARCH_CHARS_MAX)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "search must be UTF-8 text of at most %d characters", SEARCH_CHARS_MAX);
        return;
    }
    if (!query_int(req, "page", 1, 1, 1000000, &q.page, reply) ||
        !query_int(req, "limit", 20, 1, 100, &q.limit, reply) ||
        !query_enum(req, "sort_by", SORTS, "created_at", &q.sort_by, reply) ||
        !query_enum(req, "sort_order", ORDERS, "desc", &q.sort_order, reply) ||
        !query_bool(req, "has_default", &q.has_default, reply) ||
        !query_bool(req, "has_mcp_tools", &q.has_mcp_tools, reply) ||
        !query_bool(req, "has_agentpress_tools", &q.has_agentpress_tools, reply) ||
        !tools_filter(req, &tools, reply))
        return;
    q.tools = tools;
    kx_db *db = gw_agents_db(app, req, false, reply);
    if (db != NULL) {
        char *json = NULL;
        kx_err err = gw_agents_list(db, req->account, &q, &json);
        gw_db_put(app, db);
        gw_agents_answer(reply, err, json, "Agent not found", "Failed to list agents");
    }
    free(tools);
}

/* ---- one agent ---- */

void gw_route_agent_get(gw_app *app, gw_request *req, gw_reply *reply)
{
    kx_db *db = gw_agents_db(app, req, true, reply);
    if (db == NULL)
        return;
    char *json = NULL;
    kx_err err = gw_agent_get(db, req->id, req->account, &json);
    gw_db_put(app, db);
    gw_agents_answer(reply, err, json, "Agent not found", "Failed to load agent");
}

/* The Idempotency-Key header (NULL when absent); false with a 400 when malformed. */
static bool idem_key(const gw_request *req, const char **out, gw_reply *reply)
{
    *out = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Idempotency-Key");
    if (*out == NULL)
        return true;
    size_t n = strlen(*out);
    bool ok = n > 0 && n <= IDEM_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (*out)[i] > 0x20 && (*out)[i] < 0x7f;
    if (!ok)
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "Idempotency-Key must be 1 to %d visible ASCII characters", IDEM_KEY_MAX);
    return ok;
}

/* Creates the agent of fields (stolen). */
static void create(gw_app *app, gw_request *req, json_t *fields, const char *change,
                   gw_reply *reply)
{
    const char *key = NULL;
    char *text = NULL;
    if (!idem_key(req, &key, reply))
        goto out;
    text = json_dumps(fields, JSON_COMPACT);
    if (text == NULL) {
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        goto out;
    }
    kx_db *db = gw_agents_db(app, req, false, reply);
    if (db == NULL)
        goto out;
    char *json = NULL;
    kx_err err = gw_agent_create(db, req->account, text, key, change, &json);
    gw_db_put(app, db);
    if (err == KX_ERR_CONFLICT) {
        free(json);
        gw_reply_error(reply, MHD_HTTP_CONFLICT,
                       "The agent conflicts with another agent of the account; try again");
    } else {
        gw_agents_answer(reply, err, json, "Agent not found", "Failed to create agent");
    }
out:
    free(text);
    json_decref(fields);
}

void gw_route_agent_create(gw_app *app, gw_request *req, gw_reply *reply)
{
    json_t *fields = gw_agent_body_fields(app, req, GW_FIELDS_CREATE, reply);
    if (fields != NULL)
        create(app, req, fields, "Initial version", reply);
}

void gw_route_agent_import(gw_app *app, gw_request *req, gw_reply *reply)
{
    json_t *body = gw_body_json_object(req, false, reply);
    if (body == NULL)
        return;
    const json_t *data = json_object_get(body, "import_data");
    bool as_new = true;
    json_t *fields = NULL;
    if (!json_is_object(data)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "import_data is required (an object, as GET /api/agents/{id}/export "
                       "answers)");
    } else if (gw_body_bool(body, "import_as_new", true, &as_new, reply) && !as_new) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "import_as_new: only true is supported (an import makes a new agent)");
    } else if (as_new) {
        fields = gw_agent_fields(data, GW_FIELDS_IMPORT, app->cfg.max_prompt_bytes, reply);
    }
    json_decref(body);
    if (fields == NULL)
        return;
    /* what marks an agent as the managed default is not the importer's to set */
    json_t *meta = json_object_get(fields, "metadata");
    static const char *const MANAGED[] = {"is_suna_default",     "centrally_managed",
                                          "restrictions",        "installation_date",
                                          "last_central_update", "management_version"};
    for (size_t i = 0; meta != NULL && i < sizeof MANAGED / sizeof MANAGED[0]; i++)
        json_object_del(meta, MANAGED[i]);
    create(app, req, fields, "Imported agent", reply);
}

void gw_route_agent_update(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found");
        return;
    }
    json_t *fields = gw_agent_body_fields(app, req, GW_FIELDS_UPDATE, reply);
    if (fields == NULL)
        return;
    char *text = json_dumps(fields, JSON_COMPACT);
    json_decref(fields);
    if (text == NULL) {
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        return;
    }
    kx_db *db = gw_agents_db(app, req, true, reply);
    if (db != NULL) {
        char *json = NULL, *refused = NULL;
        kx_err err = gw_agent_update(db, req->id, req->account, text, &json, &refused);
        gw_db_put(app, db);
        if (refused != NULL) {
            free(json);
            gw_reply_error(reply, MHD_HTTP_FORBIDDEN, "%s", refused);
        } else if (err == KX_ERR_CONFLICT) {
            free(json);
            gw_reply_error(reply, MHD_HTTP_CONFLICT,
                           "The change conflicts with a concurrent change; try again");
        } else {
            gw_agents_answer(reply, err, json, "Agent not found", "Failed to update agent");
        }
        free(refused);
    }
    free(text);
}

void gw_route_agent_delete(gw_app *app, gw_request *req, gw_reply *reply)
{
    kx_db *db = gw_agents_db(app, req, true, reply);
    if (db == NULL)
        return;
    bool is_default = false;
    kx_err err = gw_agent_delete(db, req->id, req->account, &is_default);
    gw_db_put(app, db);
    if (err == KX_OK && is_default)
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "Cannot delete default agent");
    else if (err == KX_OK)
        gw_reply_json(reply, MHD_HTTP_OK,
                      json_pack("{s:s}", "message", "Agent deleted successfully"));
    else
        gw_agents_answer(reply, err, NULL, "Agent not found", "Failed to delete agent");
}

void gw_route_agent_export(gw_app *app, gw_request *req, gw_reply *reply)
{
    kx_db *db = gw_agents_db(app, req, true, reply);
    if (db == NULL)
        return;
    char *json = NULL;
    kx_err err = gw_agent_export(db, req->id, req->account, &json);
    gw_db_put(app, db);
    gw_agents_answer(reply, err, json, "Agent not found", "Failed to export agent");
}

void gw_route_agent_tools(gw_app *app, gw_request *req, gw_reply *reply)
{
    kx_db *db = gw_agents_db(app, req, true, reply);
    if (db == NULL)
        return;
    char *json = NULL;
    kx_err err = gw_agent_tools(db, req->id, req->account, &json);
    gw_db_put(app, db);
    gw_agents_answer(reply, err, json, "Agent not found", "Failed to load the agent's tools");
}
