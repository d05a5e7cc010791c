/* quota.c — answers for the database's account-limit refusals (see quota.h). */
#include "quota.h"

#include <jansson.h>
#include <microhttpd.h>
#include <string.h>

#include "kx/log.h"
#include "reply.h"

/* {"detail": <detail JSON>} with status, or {"detail": message} when the detail is not JSON. */
static void reply_refusal(gw_reply *reply, unsigned int status, const char *detail_json,
                          const char *message)
{
    json_t *detail =
        detail_json != NULL && detail_json[0] != '\0' ? json_loads(detail_json, 0, NULL) : NULL;
    if (json_is_object(detail)) {
        gw_reply_json(reply, status, json_pack("{s:o}", "detail", detail));
        return;
    }
    json_decref(detail);
    gw_reply_error(reply, status, "%s", message);
}

bool gw_quota_refused(kx_db *db, kx_err err, gw_reply *reply)
{
    /* the class KX maps to KX_ERR_CONFLICT; any other error cannot be a refusal (and the
     * connection's SQLSTATE may then be a stale one of an earlier request) */
    if (err != KX_ERR_CONFLICT || db == NULL)
        return false;
    const char *st = kx_db_last_sqlstate(db);
    unsigned int status;
    if (strcmp(st, "KX403") == 0)
        status = MHD_HTTP_FORBIDDEN;
    else if (strcmp(st, "KX429") == 0)
        status = MHD_HTTP_TOO_MANY_REQUESTS;
    else
        return false;
    reply_refusal(reply, status, kx_db_last_detail(db), "Refused by the account's limits");
    return true;
}

/* kx_account_refusal for account and model: true when the run may go on, or when the refusal
 * is a quota's and quotas is false; false with the refusal (403 / 429 {"detail": …}) or a
 * database error in reply. */
static bool account_allows(kx_db *db, const char *account, const char *model, bool quotas,
                           gw_reply *reply)
{
    const char *params[] = {account, model};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "gw_account_refusal", 2, params, &err);
    if (res == NULL) {
        gw_reply_db_error(reply, err, "Failed to read the account's limits");
        return false;
    }
    bool allowed = true;
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
        json_t *v = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        json_int_t status = json_integer_value(json_object_get(v, "status"));
        if (status == MHD_HTTP_FORBIDDEN || (quotas && status == MHD_HTTP_TOO_MANY_REQUESTS)) {
            allowed = false;
            json_t *detail = json_object_get(v, "detail");
            gw_reply_json(reply, (unsigned int)status,
                          json_pack("{s:O}", "detail", detail ? detail : json_null()));
        }
        json_decref(v);
    }
    PQclear(res);
    return allowed;
}

bool gw_quota_model_allowed(kx_db *db, const char *account, const char *model, gw_reply *reply)
{
    return account_allows(db, account, model, false, reply);
}

bool gw_quota_run_allowed(kx_db *db, const char *account, const char *model, gw_reply *reply)
{
    return account_allows(db, account, model, true, reply);
}
