/* auth.c — authenticates a request from its bearer token (see auth.h). */
#include "auth.h"

#include <ctype.h>
#include <microhttpd.h>
#include <string.h>
#include <strings.h>

#include "kx/jwt.h"
#include "kx/log.h"
#include "kx/time.h"
#include "reply.h"

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

    kx_jwt_claims claims;
    const char *why = NULL;
    kx_err err =
        kx_jwt_verify(token, app->cfg.jwt_secret, app->cfg.jwt_secret_len, kx_now_ms() / 1000,
                      app->cfg.jwt_audience[0] != '\0' ? app->cfg.jwt_audience : NULL, &claims,
                      &why);
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
    return true;
}
