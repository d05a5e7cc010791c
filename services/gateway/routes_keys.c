/* routes_keys.c — API keys (docs/api.md, "API keys"), as Kortix serves them:
 *   POST   /api/api-keys                  {"title", "description"?, "expires_in_days"?}: a new
 *          key; the answer is the only time secret_key is shown
 *   GET    /api/api-keys                  the account's keys, newest first (no secrets)
 *   PATCH  /api/api-keys/{id}/revoke      the key stops working at once
 *   DELETE /api/api-keys/{id}             the key is gone
 * Requests sent with "X-API-Key: pk_…:sk_…" act as the key's account (auth.c) on every other
 * route; these four need a session token (JWT): a leaked key must not be able to mint a
 * successor that outlives its revocation, nor revoke the owner's other keys (403). Another
 * account's key is 404. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "apikey.h"
#include "body.h"
#include "gateway.h"
#include "key_store.h"
#include "kx/utf8.h"
#include "reply.h"

#define TITLE_MAX_CHARS 255

/* API keys are managed with a session token only (see above). */
static bool session_only(const gw_request *req, gw_reply *reply)
{
    if (!req->via_api_key)
        return true;
    gw_reply_error(reply, MHD_HTTP_FORBIDDEN,
                   "API keys cannot manage API keys: sign in with a session token");
    return false;
}
#define DESCRIPTION_MAX_CHARS 1000
#define EXPIRES_MAX_DAYS 3650

/* Characters (not bytes) of UTF-8 text. */
static size_t chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* row with "secret_key" after "public_key" (the create answer's order). Steals row. */
static json_t *with_secret(json_t *row, const char *secret)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(row, k, v)
    {
        json_object_set(out, k, v);
        if (strcmp(k, "public_key") == 0)
            json_object_set_new(out, "secret_key", json_string(secret));
    }
    json_decref(row);
    return out;
}

void gw_route_key_create(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (!session_only(req, reply))
        return;
    json_t *body = gw_body_json_object(req, false, reply);
    if (body == NULL)
        return;
    const char *title = NULL, *description = NULL;
    int days = 0;
    json_t *d = json_object_get(body, "expires_in_days");
    if (!gw_body_str(body, "title", NULL, &title, reply) ||
        !gw_body_str(body, "description", NULL, &description, reply)) {
        json_decref(body);
        return;
    }
    if (title == NULL || title[0] == '\0' || !kx_utf8_valid(title, strlen(title)) ||
        chars(title) > TITLE_MAX_CHARS) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "title is required: a string of 1 to %d characters", TITLE_MAX_CHARS);
    } else if (description != NULL &&
               (!kx_utf8_valid(description, strlen(description)) ||
                chars(description) > DESCRIPTION_MAX_CHARS)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "description must be a string of at most %d characters",
                       DESCRIPTION_MAX_CHARS);
    } else if (d != NULL && !json_is_null(d) &&
               (!json_is_integer(d) || json_integer_value(d) < 1 ||
                json_integer_value(d) > EXPIRES_MAX_DAYS)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "expires_in_days must be an integer from 1 to %d (or null: never)",
                       EXPIRES_MAX_DAYS);
    } else {
        days = json_is_integer(d) ? (int)json_integer_value(d) : 0;
        char pub[GW_APIKEY_PUBLIC_LEN + 1], secret[GW_APIKEY_SECRET_LEN + 1];
        char digest[GW_APIKEY_DIGEST_LEN + 1];
        if (!gw_apikey_generate(pub, secret) ||
            !gw_apikey_digest(app->cfg.api_key_secret, app->cfg.api_key_secret_len, secret,
                              digest)) {
            gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR,
                           "Failed to create API key: no random bytes");
        } else {
            kx_db *db = gw_db_get(app, reply);
            char *row = NULL;
            if (db != NULL) {
                kx_err err =
                    gw_key_create(db, req->account, pub, digest, title, description, days, &row);
                gw_db_put(app, db);
                if (err != KX_OK)
                    gw_reply_db_error(reply, err, "Failed to create API key");
            }
            if (row != NULL) {
                json_t *v = gw_json_from_sql(row);
                free(row);
                gw_reply_json(reply, MHD_HTTP_OK, v ? with_secret(v, secret) : NULL);
            }
        }
        memset(secret, 0, sizeof secret);
    }
    json_decref(body);
}

void gw_route_keys_list(gw_app *app, gw_request *req, gw_reply *reply)
{
    gw_page page;
    if (!session_only(req, reply) || !gw_query_page(req, &page, reply))
        return;
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char *rows = NULL;
    kx_err err = gw_keys_list(db, req->account, &page, &rows);
    gw_db_put(app, db);
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to list API keys");
        return;
    }
    if (rows[0] == '\0') { /* NULL: the cursor is none of the account's keys */
        free(rows);
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "before is not one of the listed keys");
        return;
    }
    gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(rows));
    free(rows);
}

/* revoke or delete: 404 unless the key is the account's. */
static void key_change(gw_app *app, gw_request *req, gw_reply *reply, bool delete)
{
    if (!session_only(req, reply))
        return;
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "API key not found");
        return;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    kx_err err = delete ? gw_key_delete(db, req->id, req->account)
                        : gw_key_revoke(db, req->id, req->account);
    gw_db_put(app, db);
    if (err == KX_ERR_NOT_FOUND)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "API key not found");
    else if (err != KX_OK)
        gw_reply_db_error(reply, err,
                          delete ? "Failed to delete API key" : "Failed to revoke API key");
    else
        gw_reply_json(reply, MHD_HTTP_OK,
                      json_pack("{s:s}", "message",
                                delete ? "API key deleted successfully"
                                       : "API key revoked successfully"));
}

void gw_route_key_revoke(gw_app *app, gw_request *req, gw_reply *reply)
{
    key_change(app, req, reply, false);
}

void gw_route_key_delete(gw_app *app, gw_request *req, gw_reply *reply)
{
    key_change(app, req, reply, true);
}
