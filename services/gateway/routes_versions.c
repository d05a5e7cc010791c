/* routes_versions.c — an agent's versions (see routes_agents.h): list, create, and the routes
 * under /api/agents/{id}/versions/{vid} (one version, compare, activate, rollback, details), whose
 * second id the route table hands over as the rest of the path. */
#include <jansson.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_fields.h"
#include "agent_store.h"
#include "access.h"
#include "body.h"
#include "kx/uuid.h"
#include "reply.h"
#include "routes_agents.h"

/* A list of versions: at most VERSIONS_MAX_LIMIT and VERSIONS_PAGE_BYTES of config (the newest
 * always), newest first. Kortix answered every version at once; an agent edited thousands of
 * times made that a response of a GB for each reader. ?before=<version_number> pages back. */
#define VERSIONS_MAX_LIMIT 1000
#define VERSIONS_PAGE_BYTES (8LL * 1024 * 1024)

void gw_route_versions_list(gw_app *app, gw_request *req, gw_reply *reply)
{
    long limit = VERSIONS_MAX_LIMIT, before = 0;
    if (!gw_query_int(req, "limit", VERSIONS_MAX_LIMIT, 1, VERSIONS_MAX_LIMIT, &limit, reply) ||
        !gw_query_int(req, "before", 0, 1, INT32_MAX, &before, reply))
        return;
    char before_text[16];
    snprintf(before_text, sizeof before_text, "%ld", before);
    kx_db *db = gw_agents_db(app, req, true, reply);
    if (db == NULL)
        return;
    char *json = NULL;
    kx_err err = gw_versions_list(db, req->id, req->account, before > 0 ? before_text : NULL,
                                  (int)limit, VERSIONS_PAGE_BYTES, &json);
    gw_db_put(app, db);
    gw_agents_answer(reply, err, json, "Agent not found", "Failed to list versions");
}

/* fields[key] as compact JSON text (malloc'd), or NULL when absent. */
static char *dump(const json_t *fields, const char *key)
{
    const json_t *v = json_object_get(fields, key);
    return v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

void gw_route_version_create(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found");
        return;
    }
    json_t *fields = gw_agent_body_fields(app, req, GW_FIELDS_VERSION, reply);
    if (fields == NULL)
        return;
    char *agentpress = dump(fields, "agentpress_tools"), *mcps = dump(fields, "configured_mcps"),
         *custom = dump(fields, "custom_mcps");
    gw_version_new v = {
        .system_prompt = json_string_value(json_object_get(fields, "system_prompt")),
        .agentpress_tools = agentpress,
        .configured_mcps = mcps,
        .custom_mcps = custom,
        .model = json_string_value(json_object_get(fields, "model")),
        .version_name = json_string_value(json_object_get(fields, "version_name")),
        .description = json_string_value(json_object_get(fields, "description")),
    };
    kx_db *db = gw_agents_db(app, req, true, reply);
    if (db != NULL) {
        char *json = NULL;
        kx_err err = gw_version_create(db, req->id, req->account, &v, &json);
        gw_db_put(app, db);
        if (err == KX_ERR_CONFLICT) {
            free(json);
            gw_reply_error(reply, MHD_HTTP_CONFLICT,
                           "version_name \"%s\" is already used by a version of this agent",
                           v.version_name ? v.version_name : "");
        } else {
            gw_agents_answer(reply, err, json, "Agent not found", "Failed to create version");
        }
    }
    free(agentpress);
    free(mcps);
    free(custom);
    json_decref(fields);
}

/* ---- /api/agents/{id}/versions/{vid}[/...] ---- */

/* The UUID at the start of *p (lower-cased into out) and the '/' after it skipped. */
static bool take_id(const char **p, char out[KX_UUID_LEN + 1])
{
    size_t n = strcspn(*p, "/");
    if (n != KX_UUID_LEN)
        return false;
    memcpy(out, *p, n);
    out[n] = '\0';
    if (!kx_uuid_valid(out))
        return false;
    for (char *c = out; *c; c++)
        if (*c >= 'A' && *c <= 'F')
            *c = (char)(*c - 'A' + 'a');
    *p += n;
    if (**p == '/')
        (*p)++;
    return true;
}

static void version_get(kx_db *db, const gw_request *req, const char *vid, gw_reply *reply)
{
    char *json = NULL;
    kx_err err = gw_version_get(db, req->id, req->account, vid, &json);
    if (err == KX_OK && json[0] == '\0') {
        free(json);
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Version not found");
        return;
    }
    gw_agents_answer(reply, err, json, "Agent not found", "Failed to load version");
}

static void version_compare(kx_db *db, const gw_request *req, const char *v1, const char *v2,
                            gw_reply *reply)
{
    char *json = NULL;
    kx_err err = gw_version_compare(db, req->id, req->account, v1, v2, &json);
    if (err == KX_OK && json[0] == '\0') {
        free(json);
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Version not found");
        return;
    }
    gw_agents_answer(reply, err, json, "Agent not found", "Failed to compare versions");
}

static void version_activate(kx_db *db, const gw_request *req, const char *vid, gw_reply *reply)
{
    bool no_version = false;
    kx_err err = gw_version_activate(db, req->id, req->account, vid, &no_version);
    if (err == KX_OK && no_version)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Version not found");
    else if (err == KX_OK)
        gw_reply_json(reply, MHD_HTTP_OK,
                      json_pack("{s:s}", "message", "Version activated successfully"));
    else
        gw_agents_answer(reply, err, NULL, "Agent not found", "Failed to activate version");
}

static void version_rollback(kx_db *db, const gw_request *req, const char *vid, gw_reply *reply)
{
    char *json = NULL;
    kx_err err = gw_version_rollback(db, req->id, req->account, vid, &json);
    if (err != KX_OK) {
        gw_agents_answer(reply, err, json, "Agent not found", "Failed to roll back");
        return;
    }
    json_t *r = gw_json_from_sql(json);
    free(json);
    json_t *version = json_object_get(r, "version");
    if (version == NULL) {
        json_decref(r);
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Version not found");
        return;
    }
    /* the new version (Kortix's answer), and whether one was made */
    json_object_set(version, "created", json_object_get(r, "created"));
    json_incref(version);
    json_decref(r);
    gw_reply_json(reply, MHD_HTTP_OK, version);
}

static void version_details(kx_db *db, const gw_request *req, const char *vid,
                            const json_t *fields, gw_reply *reply)
{
    char *json = NULL;
    const char *name = json_string_value(json_object_get(fields, "version_name"));
    kx_err err =
        gw_version_details(db, req->id, req->account, vid, name,
                           json_string_value(json_object_get(fields, "change_description")),
                           &json);
    if (err == KX_ERR_CONFLICT) {
        free(json);
        gw_reply_error(reply, MHD_HTTP_CONFLICT,
                       "version_name \"%s\" is already used by a version of this agent",
                       name ? name : "");
        return;
    }
    if (err != KX_OK) {
        gw_agents_answer(reply, err, json, "Agent not found", "Failed to update the version");
        return;
    }
    json_t *r = gw_json_from_sql(json);
    free(json);
    json_t *version = json_object_get(r, "version");
    if (version == NULL)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Version not found");
    else
        gw_reply_json(reply, MHD_HTTP_OK, json_incref(version));
    json_decref(r);
}

void gw_route_version_action(gw_app *app, gw_request *req, gw_reply *reply)
{
    const char *p = req->rest != NULL ? req->rest : "";
    char v1[KX_UUID_LEN + 1], v2[KX_UUID_LEN + 1];
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found");
        return;
    }
    if (!take_id(&p, v1)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Version not found");
        return;
    }
    enum {
        GET,
        COMPARE,
        ACTIVATE,
        ROLLBACK,
        DETAILS
    } what;
    json_t *fields = NULL;
    bool get = strcmp(req->method, "GET") == 0;
    if (get && p[0] == '\0')
        what = GET;
    else if (get && strncmp(p, "compare/", 8) == 0) {
        p += 8;
        if (!take_id(&p, v2) || p[0] != '\0') {
            gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Version not found");
            return;
        }
        what = COMPARE;
    } else if (strcmp(req->method, "PUT") == 0 && strcmp(p, "activate") == 0)
        what = ACTIVATE;
    else if (strcmp(req->method, "POST") == 0 && strcmp(p, "rollback") == 0)
        what = ROLLBACK;
    else if (strcmp(req->method, "PUT") == 0 && strcmp(p, "details") == 0) {
        fields = gw_agent_body_fields(app, req, GW_FIELDS_DETAILS, reply);
        if (fields == NULL)
            return;
        what = DETAILS;
    } else {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Not Found");
        return;
    }
    kx_db *db = gw_agents_db(app, req, true, reply);
    if (db == NULL) {
        json_decref(fields);
        return;
    }
    switch (what) {
    case GET: version_get(db, req, v1, reply); break;
    case COMPARE: version_compare(db, req, v1, v2, reply); break;
    case ACTIVATE: version_activate(db, req, v1, reply); break;
    case ROLLBACK: version_rollback(db, req, v1, reply); break;
    case DETAILS: version_details(db, req, v1, fields, reply); break;
    }
    gw_db_put(app, db);
    json_decref(fields);
}
