/* access.c — pooled connections for requests, and the thread/run ownership checks. */
#include "access.h"

#include <microhttpd.h>
#include <string.h>

#include "kx/log.h"
#include "kx/time.h"
#include "reply.h"

kx_db *gw_db_get(gw_app *app, gw_reply *reply)
{
    kx_db *db = kx_db_pool_get(app->pool, kx_deadline_in(app->cfg.db_wait_ms));
    if (db == NULL)
        gw_reply_error(reply, MHD_HTTP_SERVICE_UNAVAILABLE,
                       "Database unavailable: no connection free within %lld ms",
                       (long long)app->cfg.db_wait_ms);
    return db;
}

void gw_db_put(gw_app *app, kx_db *db)
{
    if (db != NULL)
        kx_db_pool_put(app->pool, db);
}

bool gw_access_thread_read(kx_db *db, const gw_request *req, const char *thread_id,
                           gw_reply *reply)
{
    bool anonymous = req->account[0] == '\0';
    char owner[KX_UUID_LEN + 1];
    bool is_public = false;
    kx_err err = kx_uuid_valid(thread_id)
        ? gw_store_thread_account(db, thread_id, owner, &is_public)
        : KX_ERR_NOT_FOUND;
    if (err == KX_OK && (is_public || strcmp(owner, req->account) == 0))
        return true;
    if (anonymous && (err == KX_OK || err == KX_ERR_NOT_FOUND)) /* as before: no existence hint */
        gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED, "No valid authentication credentials found");
    else if (err == KX_ERR_NOT_FOUND || err == KX_OK) /* another account's: as if none */
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
    else
        gw_reply_db_error(reply, err, "Failed to load thread");
    return false;
}

bool gw_access_thread(kx_db *db, const gw_request *req, const char *thread_id, gw_reply *reply)
{
    if (!kx_uuid_valid(thread_id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
        return false;
    }
    char owner[KX_UUID_LEN + 1];
    kx_err err = gw_store_thread_account(db, thread_id, owner, NULL);
    if (err == KX_ERR_NOT_FOUND) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
        return false;
    }
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to load thread");
        return false;
    }
    if (strcmp(owner, req->account) != 0) { /* another account's: as if there were none */
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
        return false;
    }
    return true;
}

bool gw_access_run(kx_db *db, const gw_request *req, const char *run_id, gw_run_info *info,
                   gw_reply *reply)
{
    memset(info, 0, sizeof *info);
    if (!kx_uuid_valid(run_id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent run not found");
        return false;
    }
    kx_err err = gw_store_run_info(db, run_id, info);
    if (err == KX_ERR_NOT_FOUND) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent run not found");
        return false;
    }
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to load agent run");
        return false;
    }
    if (strcmp(info->account, req->account) != 0) {
        gw_store_run_info_free(info);
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent run not found"); /* not a hint */
        return false;
    }
    return true;
}
