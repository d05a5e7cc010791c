/* routes_threads.c — threads and their messages (docs/api.md):
 *   GET    /api/threads?page=1&limit=1000       the account's threads, newest first, paginated
 *   POST   /api/threads                         form {name}: a project and its thread, no run
 *   GET    /api/threads/{id}                    the thread, its project, message_count and
 *                                               recent_agent_runs (public: anyone)
 *   PATCH  /api/threads/{id}                    JSON {is_public?, metadata?}
 *   DELETE /api/threads/{id}                    stops its active runs, deletes it
 *   GET    /api/threads/{id}/messages?order=desc   {"messages": [rows]}, desc by default (Kortix;
 *                                               public: anyone)
 *   POST   /api/threads/{id}/messages           JSON {"type", "content", "is_llm_message"};
 *        stores content {"role": "user" if type == "user" else "assistant", "content": ...}
 *        and answers the inserted row.
 *   POST   /api/threads/{id}/messages/add?message=…   a user message (Kortix's query form)
 *   DELETE /api/threads/{id}/messages/{mid}     an LLM message (Kortix keeps the others)
 * Another account's thread is 404, as one that does not exist (Kortix answered 403). */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "body.h"
#include "form.h"
#include "gateway.h"
#include "kx/utf8.h"
#include "kx/uuid.h"
#include "project_store.h"
#include "purge.h"
#include "publish.h"
#include "reply.h"
#include "sandbox_routes.h"
#include "text.h"
#include "store.h"

/* A page of a thread's messages: at most MESSAGES_MAX_LIMIT rows (Supabase's default row cap,
 * which bounded what Kortix's frontend read) and MESSAGES_PAGE_BYTES of content: without a
 * bound, anyone could make the gateway hold a public thread of any size several times over,
 * once per request. */
#define MESSAGES_MAX_LIMIT 1000
#define MESSAGES_PAGE_BYTES (8LL * 1024 * 1024)

void gw_route_messages_list(gw_app *app, gw_request *req, gw_reply *reply)
{
    const char *order = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "order");
    bool ascending = false;
    if (order != NULL && strcmp(order, "asc") == 0) {
        ascending = true;
    } else if (order != NULL && strcmp(order, "desc") != 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "order must be 'asc' or 'desc'");
        return;
    }
    long limit = MESSAGES_MAX_LIMIT;
    if (!gw_query_int(req, "limit", MESSAGES_MAX_LIMIT, 1, MESSAGES_MAX_LIMIT, &limit, reply))
        return;
    const char *after = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "after");
    if (after != NULL && !kx_uuid_valid(after)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "after must be a message_id");
        return;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char *page = NULL;
    if (gw_access_thread_read(db, req, req->id, reply)) {
        kx_err err = gw_store_messages(db, req->id, ascending, (int)limit, after,
                                       MESSAGES_PAGE_BYTES, &page);
        if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to get messages");
    }
    gw_db_put(app, db);
    if (page == NULL)
        return;
    json_t *v = gw_json_from_sql(page);
    free(page);
    if (v != NULL && !json_is_true(json_object_get(v, "cursor_found"))) {
        json_decref(v);
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "after: no message %s in this thread", after);
        return;
    }
    json_t *rows = json_object_get(v, "rows");
    bool more = json_integer_value(json_object_get(v, "more")) > 0;
    json_t *out =
        json_is_array(rows) ? json_pack("{s:O, s:b}", "messages", rows, "has_more", more) : NULL;
    json_decref(v);
    gw_reply_json(reply, MHD_HTTP_OK, out);
}

/* Adds a message to the account's thread req->id and answers the row. The ownership check is
 * the insert's own statement (gw_store_message_add: the live thread locked FOR SHARE), not a
 * look-up before it: a delete and its purge falling between the two left the message on a
 * deleted thread that no purge would remove. Not the account's, deleted or none: 404. */
static void message_add(gw_app *app, const gw_request *req, gw_reply *reply, const char *type,
                        bool is_llm, const char *role, const char *content)
{
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
        return;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char *row = NULL;
    kx_err err =
        gw_store_message_add(db, req->id, req->account, type, is_llm, role, content, &row);
    gw_db_put(app, db);
    if (err == KX_ERR_NOT_FOUND)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
    else if (err != KX_OK)
        gw_reply_db_error(reply, err, "Failed to add message");
    if (row == NULL)
        return;
    gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(row));
    free(row);
}

#define MESSAGE_TYPE_MAX_CHARS 64 /* Kortix's types: user, assistant, tool, status, … */

void gw_route_messages_add(gw_app *app, gw_request *req, gw_reply *reply)
{
    json_t *body = gw_body_json_object(req, false, reply);
    if (body == NULL)
        return;
    const char *type = NULL, *content = NULL;
    bool is_llm = true;
    if (!gw_body_str(body, "type", NULL, &type, reply) ||
        !gw_body_str(body, "content", NULL, &content, reply) ||
        !gw_body_bool(body, "is_llm_message", true, &is_llm, reply)) {
        json_decref(body);
        return;
    }
    if (type == NULL || type[0] == '\0') {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "type is required (a non-empty string)");
        json_decref(body);
        return;
    }
    if (content == NULL) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "content is required (a string)");
        json_decref(body);
        return;
    }
    if (!gw_text_chars_fit("type", type, MESSAGE_TYPE_MAX_CHARS, reply) ||
        !gw_text_fits("content", content, app->cfg.max_prompt_bytes, reply)) {
        json_decref(body);
        return;
    }
    const char *role = strcmp(type, "user") == 0 ? "user" : "assistant";
    message_add(app, req, reply, type, is_llm, role, content);
    json_decref(body);
}

#define THREADS_MAX_LIMIT 1000
#define PROJECT_NAME_MAX_CHARS 255

void gw_route_threads_list(gw_app *app, gw_request *req, gw_reply *reply)
{
    long page = 1, limit = THREADS_MAX_LIMIT;
    if (!gw_query_int(req, "page", 1, 1, 1000000, &page, reply) ||
        !gw_query_int(req, "limit", THREADS_MAX_LIMIT, 1, THREADS_MAX_LIMIT, &limit, reply))
        return;
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char *rows = NULL;
    long long total = 0;
    kx_err err =
        gw_threads_page(db, req->account, (int)limit, (int)((page - 1) * limit), &rows, &total);
    gw_db_put(app, db);
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to list threads");
        return;
    }
    json_t *arr = gw_json_from_sql(rows);
    free(rows);
    long long pages = (total + limit - 1) / limit;
    gw_reply_json(reply, MHD_HTTP_OK,
                  arr ? json_pack("{s:o, s:{s:I, s:I, s:I, s:I}}", "threads", arr, "pagination",
                                  "page", (json_int_t)page, "limit", (json_int_t)limit, "total",
                                  (json_int_t)total, "pages", (json_int_t)pages)
                      : NULL);
}

void gw_route_thread_get(gw_app *app, gw_request *req, gw_reply *reply)
{
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char *row = NULL;
    if (gw_access_thread_read(db, req, req->id, reply)) {
        kx_err err = gw_thread_detail(db, req->id, &row);
        if (err == KX_ERR_NOT_FOUND)
            gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
        else if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to load thread");
    }
    gw_db_put(app, db);
    if (row == NULL)
        return;
    gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(row));
    free(row);
}

void gw_route_thread_create(gw_app *app, gw_request *req, gw_reply *reply)
{
    const char *name = NULL;
    if (req->form == NULL && req->body_len > 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "Content-Type must be multipart/form-data or "
                       "application/x-www-form-urlencoded");
        return;
    }
    if (req->form != NULL && !gw_form_text(req->form, "name", true, &name, reply))
        return;
    if (name == NULL)
        name = "New Project";
    if (!gw_text_chars_fit("name", name, PROJECT_NAME_MAX_CHARS, reply))
        return;
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char thread_id[KX_UUID_LEN + 1], project_id[KX_UUID_LEN + 1];
    kx_err err = gw_thread_create(db, req->account, name, thread_id, project_id);
    gw_db_put(app, db);
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to create thread");
        return;
    }
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:s, s:s}", "thread_id", thread_id, "project_id", project_id));
}

void gw_route_thread_update(gw_app *app, gw_request *req, gw_reply *reply)
{
    static const char *const allowed[] = {"is_public", "metadata", NULL};
    json_t *body = gw_body_json_object(req, false, reply);
    if (body == NULL)
        return;
    const json_t *pub = json_object_get(body, "is_public");
    const json_t *meta = json_object_get(body, "metadata");
    char *meta_text = NULL;
    if (!gw_body_only(body, allowed, reply)) {
        json_decref(body);
        return;
    }
    if (pub != NULL && !json_is_boolean(pub)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "is_public must be a boolean");
    } else if (meta != NULL && !json_is_object(meta)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "metadata must be a JSON object");
    } else if (meta != NULL && (meta_text = json_dumps(meta, JSON_COMPACT)) == NULL) {
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    } else if (meta_text != NULL && strlen(meta_text) > app->cfg.max_prompt_bytes) {
        gw_reply_error(reply, MHD_HTTP_CONTENT_TOO_LARGE, "metadata is larger than %zu bytes",
                       app->cfg.max_prompt_bytes);
    } else {
        kx_db *db = gw_db_get(app, reply);
        char *row = NULL;
        if (db != NULL) {
            kx_err err = !kx_uuid_valid(req->id)
                ? KX_ERR_NOT_FOUND
                : gw_thread_update(db, req->id, req->account,
                                   pub ? (json_is_true(pub) ? "true" : "false") : NULL, meta_text);
            if (err == KX_OK)
                err = gw_thread_detail(db, req->id, &row);
            if (err == KX_ERR_NOT_FOUND)
                gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
            else if (err != KX_OK)
                gw_reply_db_error(reply, err, "Failed to update thread");
            gw_db_put(app, db);
        }
        if (row != NULL) {
            gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(row));
            free(row);
        }
    }
    free(meta_text);
    json_decref(body);
}

void gw_route_delete_stopping(gw_app *app, gw_request *req, gw_reply *reply, bool project)
{
    const char *what = project ? "Project" : "Thread";
    char text[64];
    snprintf(text, sizeof text, "%s not found", what);
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "%s", text);
        return;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    gw_stopped_run *stopped = NULL;
    size_t n = 0;
    bool had_sandbox = false;
    kx_err err = project ? gw_project_delete(db, req->id, req->account, &stopped, &n, &had_sandbox)
                         : gw_thread_delete(db, req->id, req->account, &stopped, &n);
    gw_db_put(app, db);
    if (err == KX_ERR_NOT_FOUND) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "%s", text);
        return;
    }
    if (err != KX_OK) {
        snprintf(text, sizeof text, "Failed to delete %s", project ? "project" : "thread");
        gw_reply_db_error(reply, err, text);
        return;
    }
    gw_publish_stops(app, req, stopped, n);
    gw_purger_kick(app->purger); /* the thread's messages: queued by the delete */
    if (had_sandbox) /* after the commit, best effort: the project is gone either way */
        gw_sandbox_discard(app, req, req->id);
    snprintf(text, sizeof text, "%s deleted successfully", what);
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:s, s:I}", "message", text, "stopped_runs", (json_int_t)n));
}

void gw_route_thread_delete(gw_app *app, gw_request *req, gw_reply *reply)
{
    gw_route_delete_stopping(app, req, reply, false);
}

void gw_route_message_delete(gw_app *app, gw_request *req, gw_reply *reply)
{
    const char *mid = req->rest != NULL ? req->rest : "";
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
        return;
    }
    if (!kx_uuid_valid(mid)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Message not found");
        return;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    bool ok = false;
    char owner[KX_UUID_LEN + 1];
    kx_err err = gw_store_thread_account(db, req->id, owner, NULL);
    if (err == KX_OK && strcmp(owner, req->account) != 0)
        err = KX_ERR_NOT_FOUND; /* another account's thread: not found */
    if (err == KX_ERR_NOT_FOUND) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
    } else if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to load thread");
    } else {
        err = gw_message_delete(db, req->id, mid);
        if (err == KX_ERR_NOT_FOUND)
            gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Message not found");
        else if (err == KX_ERR_INVALID)
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "Message %s is not an LLM message and cannot be deleted", mid);
        else if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to delete message");
        ok = err == KX_OK;
    }
    gw_db_put(app, db);
    if (ok)
        gw_reply_json(reply, MHD_HTTP_OK,
                      json_pack("{s:s}", "message", "Message deleted successfully"));
}

void gw_route_message_add_query(gw_app *app, gw_request *req, gw_reply *reply)
{
    const char *message = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "message");
    if (message == NULL || message[0] == '\0') {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "message is required (a query parameter)");
        return;
    }
    if (!kx_utf8_valid(message, strlen(message))) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "message must be UTF-8 text");
        return;
    }
    if (!gw_text_fits("message", message, app->cfg.max_prompt_bytes, reply))
        return;
    message_add(app, req, reply, "user", true, "user", message);
}
