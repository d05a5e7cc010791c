/* routes_flags.c — the feature flag routes and the check other routes make (see
 * routes_flags.h). */
#include "routes_flags.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "reply.h"

#define FLAG_NAME_MAX 64

kx_err gw_flag_enabled(kx_db *db, const char *name, bool *on)
{
    *on = false;
    const char *params[] = {name};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "gw_flag_enabled", 1, params, &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    *on = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return KX_OK;
}

/* The first column of the statement's one row, as the 200 answer. */
static void answer_one(gw_app *app, const char *stmt, int n, const char *const *params,
                       gw_reply *reply)
{
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, stmt, n, params, &err);
    gw_db_put(app, db);
    if (res == NULL) {
        gw_reply_db_error(reply, err, "Failed to read feature flags");
        return;
    }
    if (PQntuples(res) == 1)
        gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(PQgetvalue(res, 0, 0)));
    else
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Failed to read feature flags");
    PQclear(res);
}

void gw_route_flags_list(gw_app *app, gw_request *req, gw_reply *reply)
{
    (void)req;
    answer_one(app, "gw_flags_list", 0, NULL, reply);
}

void gw_route_flag_get(gw_app *app, gw_request *req, gw_reply *reply)
{
    size_t n = strlen(req->id);
    bool ok = n > 0 && n <= FLAG_NAME_MAX &&
        strspn(req->id,
               "abcdefghijklmnopqrstuvwxyz"
               "0123456789_") == n;
    if (!ok) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "flag_name must be 1 to %d characters of a-z, 0-9 and _", FLAG_NAME_MAX);
        return;
    }
    const char *params[] = {req->id};
    answer_one(app, "gw_flag_get", 1, params, reply);
}
