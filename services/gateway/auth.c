/* auth.c — authenticates a request from its bearer token (see auth.h). */
#include "auth.h"

#include <ctype.h>
#include <stdio.h>
#include <microhttpd.h>
#include <string.h>
#include <strings.h>

#include "access.h"
#include "apikey.h"
#include "key_store.h"
#include "kx/jwt.h"
#include "kx/log.h"
#include "kx/time.h"
#include "reply.h"
#include "token_cache.h"

/* The token of "Authorization: Bearer <token>", or NULL. */
static const char *bearer_token(struct MHD_Connection *conn)
{
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h != '\0' ? h : NULL;
}

bool gw_auth(const gw_app *app, gw_request *req, bool allow_query_token, gw_reply *reply)
{
    /* Kortix's order: an X-API-Key header, when present, decides. Only its form is checked
     * here (this is an HTTP thread); the key itself on the worker (gw_auth_api_key). */
    const char *key = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-API-Key");
    if (key != NULL) {
        char pub[GW_APIKEY_PUBLIC_LEN + 1], secret[GW_APIKEY_SECRET_LEN + 1];
        if (!gw_apikey_parse(key, pub, secret)) {
            gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED,
                           "Invalid API key format. Expected format: pk_xxx:sk_xxx");
            return false;
        }
        memset(secret, 0, sizeof secret);
        snprintf(req->api_key, sizeof req->api_key, "%s", key);
        req->account[0] = '\0';
        return true;
    }
    const char *token = bearer_token(req->conn);
    if (token == NULL && allow_query_token) {
        token = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "token");
        if (token != NULL && token[0] == '\0')
            token = NULL;
    }
    if (token == NULL) {
        gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED, "No valid authentication credentials found");
        return false;
    }

    int64_t now_s = kx_now_ms() / 1000;
    if (gw_token_cache_get(app->tokens, token, now_s, req->account))
        return true; /* verified before, still within its exp (token_cache.h) */
    kx_jwt_claims claims;
    const char *why = NULL;
    kx_err err = kx_jwt_verify(token, app->cfg.jwt_secret, app->cfg.jwt_secret_len, now_s,
                               app->cfg.jwt_audience[0] != '\0' ? app->cfg.jwt_audience : NULL,
                               &claims, &why);
    if (err != KX_OK && why != NULL && strcmp(why, "missing sub") == 0) {
        gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED, "Invalid token payload");
        return false;
    }
    if (err != KX_OK) {
        gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED, "Invalid token: %s",
                       why != NULL ? why : kx_err_str(err));
        return false;
    }
    if (!kx_uuid_valid(claims.sub)) {
        gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED, "Invalid token payload");
        return false;
    }
    for (size_t i = 0; i < KX_UUID_LEN; i++)
        req->account[i] = (char)tolower((unsigned char)claims.sub[i]);
    req->account[KX_UUID_LEN] = '\0';
    gw_token_cache_put(app->tokens, token, now_s, claims.exp, req->account);
    return true;
}

bool gw_auth_optional(const gw_app *app, gw_request *req, gw_reply *reply)
{
    if (MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-API-Key") == NULL &&
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION) ==
            NULL) {
        req->account[0] = '\0';
        return true;
    }
    return gw_auth(app, req, false, reply);
}

bool gw_auth_api_key(gw_app *app, gw_request *req, gw_reply *reply)
{
    char pub[GW_APIKEY_PUBLIC_LEN + 1], secret[GW_APIKEY_SECRET_LEN + 1];
    char digest[GW_APIKEY_DIGEST_LEN + 1];
    bool parsed = gw_apikey_parse(req->api_key, pub, secret);
    memset(req->api_key, 0, sizeof req->api_key);
    if (!parsed) { /* checked on the HTTP thread already */
        gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED,
                       "Invalid API key format. Expected format: pk_xxx:sk_xxx");
        return false;
    }
    bool digested =
        gw_apikey_digest(app->cfg.api_key_secret, app->cfg.api_key_secret_len, secret, digest);
    memset(secret, 0, sizeof secret);
    if (!digested) {
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "API key validation failed");
        return false;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return false;
    gw_key_row row;
    kx_err err = gw_key_lookup(db, pub, &row);
    /* An unknown public key still costs a digest comparison, so that timing does not tell
     * "no such key" from "wrong secret" any more than the answer does (both are 401). */
    bool match =
        gw_apikey_digest_equal(err == KX_OK ? row.secret_hash : digest, digest) && err == KX_OK;
    if (match && row.usable && row.touch_due) {
        kx_err terr = gw_key_touch(db, row.key_id); /* at most once a minute per key */
        if (terr != KX_OK)
            kx_warn("gateway: api key %s: last_used_at not updated (%s)", row.key_id,
                    kx_err_str(terr));
    }
    gw_db_put(app, db);
    if (err != KX_OK && err != KX_ERR_NOT_FOUND) {
        gw_reply_db_error(reply, err, "API key validation failed");
        return false;
    }
    if (!match) {
        gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED,
                       "Invalid API key: unknown key or wrong secret");
        return false;
    }
    if (!row.usable) {
        gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED, "Invalid API key: revoked or expired");
        return false;
    }
    snprintf(req->account, sizeof req->account, "%s", row.account);
    req->via_api_key = true;
    return true;
}
