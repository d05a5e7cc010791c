/* run_ops.c — creating and stopping runs, shared by HTTP and NATS (see run_ops.h). */
#include "run_ops.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "publish.h"
#include "quota.h"
#include "reply.h"
#include "text.h"

#define PROJECT_NAME_CHARS 30 /* Kortix: the prompt's first 30 characters + "..." */

/* 429 with Kortix's body (KX_OVER_LIMIT=reject). Frees over->thread_ids_json. */
static void reply_over_limit(gw_reply *reply, gw_limit_info *over)
{
    char message[200];
    snprintf(message, sizeof message,
             "Maximum of %lld parallel agent runs allowed within 24 "
             "hours. You currently have %lld running.",
             (long long)over->limit, over->count);
    json_t *threads = over->thread_ids_json ? json_loads(over->thread_ids_json, 0, NULL) : NULL;
    free(over->thread_ids_json);
    over->thread_ids_json = NULL;
    gw_reply_json(reply, MHD_HTTP_TOO_MANY_REQUESTS,
                  json_pack("{s:{s:s, s:o, s:I, s:I}}", "detail", "message", message,
                            "running_thread_ids", threads ? threads : json_array(),
                            "running_count", (json_int_t)over->count, "limit",
                            (json_int_t)over->limit));
}

static int64_t reject_limit(const gw_app *app)
{
    return app->cfg.over_limit_reject ? app->cfg.max_parallel_runs : 0;
}

/* The agent named by the options must be the account's. */
static bool agent_ok(kx_db *db, const gw_request *req, const gw_run_options *o, gw_reply *reply)
{
    if (o->agent_id == NULL)
        return true;
    kx_err err = kx_uuid_valid(o->agent_id) ? gw_store_agent_owned(db, o->agent_id, req->account)
                                            : KX_ERR_NOT_FOUND;
    if (err == KX_ERR_NOT_FOUND)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found or access denied");
    else if (err != KX_OK)
        gw_reply_db_error(reply, err, "Failed to load agent");
    return err == KX_OK;
}

static bool create_new_thread(gw_app *app, const gw_request *req, const gw_run_new *n, kx_db *db,
                              char thread_id[KX_UUID_LEN + 1], char run_id[KX_UUID_LEN + 1],
                              gw_reply *reply)
{
    char *name = gw_project_name(n->prompt, PROJECT_NAME_CHARS);
    if (name == NULL) {
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return false;
    }
    gw_limit_info over;
    kx_err err = gw_store_initiate_limited(db, req->account, n->project_id, name, n->prompt,
                                           &n->opts, reject_limit(app), &over, thread_id, run_id);
    free(name);
    if (over.over) {
        reply_over_limit(reply, &over);
        return false;
    }
    if (err != KX_OK && !gw_quota_refused(db, err, reply)) /* account_limits: 403 / 429 */
        gw_reply_db_error(reply, err, "Failed to initiate agent session");
    return err == KX_OK;
}

static bool create_on_thread(gw_app *app, const gw_request *req, const gw_run_new *n, kx_db *db,
                             char run_id[KX_UUID_LEN + 1], gw_stopped_run **stopped,
                             size_t *nstopped, gw_reply *reply)
{
    if (!gw_access_thread(db, req, n->thread_id, reply))
        return false;
    char busy[KX_UUID_LEN + 1];
    gw_limit_info over;
    kx_err err =
        gw_store_start_strategy(db, n->thread_id, req->account, n->prompt, &n->opts, n->strategy,
                                reject_limit(app), &over, run_id, busy, stopped, nstopped);
    if (over.over)
        reply_over_limit(reply, &over);
    else if (err == KX_ERR_NOT_FOUND) /* deleted since the access check */
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
    else if (err == KX_ERR_CONFLICT && busy[0] != '\0')
        gw_reply_error(reply, MHD_HTTP_CONFLICT,
                       "Thread %s already has an active agent run "
                       "%s (multitask_strategy reject)",
                       n->thread_id, busy);
    else if (err != KX_OK && !gw_quota_refused(db, err, reply)) /* limits: 403 / 429 */
        gw_reply_db_error(reply, err, "Failed to start agent run");
    return err == KX_OK && !over.over;
}

bool gw_run_create(gw_app *app, const gw_request *req, const gw_run_new *n,
                   char thread_id[KX_UUID_LEN + 1], char run_id[KX_UUID_LEN + 1], gw_reply *reply)
{
    if (n->thread_id == NULL && n->prompt == NULL) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "prompt is required");
        return false;
    }
    if ((n->prompt != NULL &&
         !gw_text_fits("prompt", n->prompt, app->cfg.max_prompt_bytes, reply)) ||
        !gw_text_chars_fit("model_name", n->opts.model_name, GW_MODEL_NAME_MAX_CHARS, reply))
        return false;
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return false;
    gw_stopped_run *stopped = NULL;
    size_t nstopped = 0;
    bool created = agent_ok(db, req, &n->opts, reply);
    if (created && n->thread_id == NULL) {
        created = create_new_thread(app, req, n, db, thread_id, run_id, reply);
    } else if (created) {
        created = create_on_thread(app, req, n, db, run_id, &stopped, &nstopped, reply);
        snprintf(thread_id, KX_UUID_LEN + 1, "%s", n->thread_id);
    }
    gw_db_put(app, db);
    gw_publish_stops(app, req, stopped, nstopped); /* interrupt: tell their runners, streams */
    if (created)
        gw_publish_submit(app, req, run_id, thread_id);
    return created;
}

bool gw_run_precheck(gw_app *app, const gw_request *req, const gw_run_options *o, gw_reply *reply)
{
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return false;
    bool ok = agent_ok(db, req, o, reply);
    if (ok && reject_limit(app) > 0) {
        /* the count as gw_store_initiate_limited takes it (in a transaction: the account's
         * creation lock), then nothing kept */
        gw_limit_info over = {0};
        kx_err err = kx_db_begin(db);
        if (err == KX_OK)
            err = gw_store_limit_check(db, req->account, reject_limit(app), &over);
        kx_db_rollback(db);
        if (err != KX_OK) {
            free(over.thread_ids_json);
            gw_reply_db_error(reply, err, "Failed to count the account's active runs");
            ok = false;
        } else if (over.over) {
            reply_over_limit(reply, &over);
            ok = false;
        }
    }
    ok = ok && gw_quota_run_allowed(db, req->account, o->model_name, reply);
    gw_db_put(app, db);
    return ok;
}

bool gw_run_stop(gw_app *app, const gw_request *req, const char *run_id, char status[16],
                 gw_reply *reply)
{
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return false;
    gw_run_info info;
    if (!gw_access_run(db, req, run_id, &info, reply)) {
        gw_db_put(app, db);
        return false;
    }
    gw_store_run_info_free(&info);

    bool stopped = false;
    int64_t epoch = 0;
    kx_err err = gw_store_run_stop(db, run_id, &stopped, &epoch);
    if (err == KX_OK && !stopped) {
        /* The run had already ended (or someone else ended it just now): report its status. */
        err = gw_store_run_info(db, run_id, &info);
    }
    gw_db_put(app, db);
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to update agent run status in database");
        return false;
    }
    if (stopped) {
        gw_publish_stop(app, req, run_id, epoch > 0 ? epoch - 1 : 0);
        snprintf(status, 16, "stopped");
    } else {
        snprintf(status, 16, "%s", info.status);
        gw_store_run_info_free(&info);
    }
    return true;
}
