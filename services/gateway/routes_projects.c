/* routes_projects.c — projects (docs/api.md, "Projects"; Kortix's frontend wrote these rows
 * through Supabase under row-level security, we serve them):
 *   GET    /api/projects           the account's projects, newest first
 *   POST   /api/projects           JSON {name, description?, is_public?}
 *   GET    /api/projects/{id}      the project (a public one: anyone, even without credentials)
 *   PATCH  /api/projects/{id}      JSON {name?, description?, is_public?}
 *   DELETE /api/projects/{id}      stops its threads' active runs, deletes it and its threads,
 *                                  then its sandbox (best effort, after the commit)
 * Another account's project is 404 (a public one can be read, never written). */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "body.h"
#include "gateway.h"
#include "kx/utf8.h"
#include "project_store.h"
#include "publish.h"
#include "reply.h"
#include "text.h"

#define NAME_MAX_CHARS 255
#define DESCRIPTION_MAX_CHARS 10000

/* The fields of a create or an edit; each checked, a 400 naming the first bad one. */
typedef struct project_fields {
    const char *name;        /* NULL: absent */
    bool has_description;    /* present (maybe null) */
    const char *description; /* NULL: null */
    const char *is_public;   /* "true" / "false" / NULL: absent */
} project_fields;

static bool read_fields(const json_t *body, project_fields *f, gw_reply *reply)
{
    static const char *const allowed[] = {"name", "description", "is_public", NULL};
    memset(f, 0, sizeof *f);
    if (!gw_body_only(body, allowed, reply))
        return false;
    const json_t *name = json_object_get(body, "name");
    const json_t *desc = json_object_get(body, "description");
    const json_t *pub = json_object_get(body, "is_public");
    if (name != NULL) {
        f->name = json_string_value(name);
        if (f->name == NULL || f->name[0] == '\0' || gw_utf8_chars(f->name) > NAME_MAX_CHARS) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "name must be a string of 1 to %d characters", NAME_MAX_CHARS);
            return false;
        }
    }
    if (desc != NULL) {
        f->has_description = true;
        f->description = json_string_value(desc);
        if ((!json_is_null(desc) && f->description == NULL) ||
            (f->description != NULL && gw_utf8_chars(f->description) > DESCRIPTION_MAX_CHARS)) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "description must be a string of at most %d characters, or null",
                           DESCRIPTION_MAX_CHARS);
            return false;
        }
    }
    if (pub != NULL) {
        if (!json_is_boolean(pub)) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "is_public must be a boolean");
            return false;
        }
        f->is_public = json_is_true(pub) ? "true" : "false";
    }
    return true;
}

/* Answers json (a row or an array from SQL) with 200 and frees it. */
static void reply_sql(gw_reply *reply, char *json)
{
    gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(json));
    free(json);
}

void gw_route_projects_list(gw_app *app, gw_request *req, gw_reply *reply)
{
    gw_page page;
    if (!gw_query_page(req, &page, reply))
        return;
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char *rows = NULL;
    kx_err err = gw_projects_list(db, req->account, &page, &rows);
    gw_db_put(app, db);
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to list projects");
        return;
    }
    gw_reply_page(reply, rows, "projects");
    free(rows);
}

void gw_route_project_create(gw_app *app, gw_request *req, gw_reply *reply)
{
    json_t *body = gw_body_json_object(req, false, reply);
    if (body == NULL)
        return;
    project_fields f;
    if (read_fields(body, &f, reply)) {
        if (f.name == NULL) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "name is required");
        } else {
            kx_db *db = gw_db_get(app, reply);
            char *row = NULL;
            if (db != NULL) {
                kx_err err = gw_project_create(db, req->account, f.name, f.description,
                                               f.is_public ? f.is_public : "false", &row);
                gw_db_put(app, db);
                if (err != KX_OK)
                    gw_reply_db_error(reply, err, "Failed to create project");
            }
            if (row != NULL)
                reply_sql(reply, row);
        }
    }
    json_decref(body);
}

void gw_route_project_get(gw_app *app, gw_request *req, gw_reply *reply)
{
    bool anonymous = req->account[0] == '\0';
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char owner[KX_UUID_LEN + 1];
    bool is_public = false;
    char *row = NULL;
    kx_err err = kx_uuid_valid(req->id) ? gw_project_get(db, req->id, owner, &is_public, &row)
                                        : KX_ERR_NOT_FOUND;
    gw_db_put(app, db);
    if (err == KX_OK && (is_public || strcmp(owner, req->account) == 0)) {
        reply_sql(reply, row);
        return;
    }
    free(row);
    if (anonymous && (err == KX_OK || err == KX_ERR_NOT_FOUND))
        gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED, "No valid authentication credentials found");
    else if (err == KX_OK || err == KX_ERR_NOT_FOUND)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Project not found");
    else
        gw_reply_db_error(reply, err, "Failed to load project");
}

void gw_route_project_update(gw_app *app, gw_request *req, gw_reply *reply)
{
    json_t *body = gw_body_json_object(req, false, reply);
    if (body == NULL)
        return;
    project_fields f;
    if (read_fields(body, &f, reply)) {
        kx_db *db = gw_db_get(app, reply);
        char *row = NULL;
        if (db != NULL) {
            kx_err err = kx_uuid_valid(req->id)
                ? gw_project_update(db, req->id, req->account, f.name, f.has_description,
                                    f.description, f.is_public, &row)
                : KX_ERR_NOT_FOUND;
            gw_db_put(app, db);
            if (err == KX_ERR_NOT_FOUND)
                gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Project not found");
            else if (err != KX_OK)
                gw_reply_db_error(reply, err, "Failed to update project");
        }
        if (row != NULL)
            reply_sql(reply, row);
    }
    json_decref(body);
}

void gw_route_project_delete(gw_app *app, gw_request *req, gw_reply *reply)
{
    gw_route_delete_stopping(app, req, reply, true);
}
