/* routes_threads.c — a thread's messages (docs/api.md):
 *   GET  /api/threads/{id}/messages?order=desc   {"messages": [rows]}, desc by default (Kortix)
 *   POST /api/threads/{id}/messages              JSON {"type", "content", "is_llm_message"};
 *        stores content {"role": "user" if type == "user" else "assistant", "content": ...}
 *        and answers the inserted row. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "body.h"
#include "gateway.h"
#include "reply.h"
#include "text.h"
#include "store.h"

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
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char *rows = NULL;
    if (gw_access_thread(db, req, req->id, reply)) {
        kx_err err = gw_store_messages(db, req->id, ascending, &rows);
        if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to get messages");
    }
    gw_db_put(app, db);
    if (rows == NULL)
        return;
    json_t *arr = gw_json_from_sql(rows);
    free(rows);
    gw_reply_json(reply, MHD_HTTP_OK, arr ? json_pack("{s:o}", "messages", arr) : NULL);
}

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
    if (!gw_text_fits("content", content, app->cfg.max_prompt_bytes, reply)) {
        json_decref(body);
        return;
    }
    const char *role = strcmp(type, "user") == 0 ? "user" : "assistant";

    kx_db *db = gw_db_get(app, reply);
    if (db == NULL) {
        json_decref(body);
        return;
    }
    char *row = NULL;
    if (gw_access_thread(db, req, req->id, reply)) {
        kx_err err =
            gw_store_message_add(db, req->id, req->account, type, is_llm, role, content, &row);
        if (err == KX_ERR_CONFLICT) /* the thread was deleted in between (foreign key) */
            gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
        else if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to add message");
    }
    gw_db_put(app, db);
    json_decref(body);
    if (row == NULL)
        return;
    gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(row));
    free(row);
}
