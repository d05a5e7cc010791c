/* routes_limits.c — GET /api/billing/check-status (see routes_limits.h). */
#include "routes_limits.h"

#include <microhttpd.h>

#include "access.h"
#include "reply.h"

void gw_route_billing_status(gw_app *app, gw_request *req, gw_reply *reply)
{
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    const char *params[] = {req->account};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "gw_account_status", 1, params, &err);
    gw_db_put(app, db);
    if (res == NULL) {
        gw_reply_db_error(reply, err, "Failed to read the account's limits");
        return;
    }
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(PQgetvalue(res, 0, 0)));
    else
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR,
                       "Failed to read the account's limits");
    PQclear(res);
}
