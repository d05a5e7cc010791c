/* routes_runs.c — the agent-run routes of docs/api.md:
 *   POST /api/agent/initiate               new project + thread + user message + queued run
 *   POST /api/thread/{id}/agent/start      a queued run on an existing thread (+ optional prompt)
 *   GET  /api/agent-run/{id}               the run, camelCase as Kortix
 *   POST /api/agent-run/{id}/stop          the stop compare-and-set, STOP, terminal event
 *   GET  /api/thread/{id}/agent-runs       a thread's runs, newest first
 * Runs are created in Postgres first (one statement each) and only then submitted on the bus;
 * a failed submit is logged, not fatal (the scheduler sweeps queued runs). */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "body.h"
#include "form.h"
#include "gateway.h"
#include "kx/log.h"
#include "publish.h"
#include "quota.h"
#include "reply.h"
#include "store.h"
#include "text.h"

#define PROJECT_NAME_CHARS 30 /* Kortix: the prompt's first 30 characters + "..." */

/* The run options of the initiate form. */
static bool form_options(const gw_form *form, gw_run_options *o, gw_reply *reply)
{
    bool stream_unused;
    o->reasoning_effort = "low";
    const char *effort = NULL;
    if (!gw_form_text(form, "model_name", true, &o->model_name, reply) ||
        !gw_form_text(form, "reasoning_effort", true, &effort, reply) ||
        !gw_form_bool(form, "enable_thinking", false, &o->enable_thinking, reply) ||
        !gw_form_bool(form, "enable_context_manager", false, &o->enable_context_manager, reply) ||
        !gw_form_bool(form, "stream", true, &stream_unused, reply))
        return false;
    if (effort != NULL)
        o->reasoning_effort = effort;
    return true;
}

/* The run options of the start body (all optional). */
static bool json_options(const json_t *body, gw_run_options *o, gw_reply *reply)
{
    bool stream_unused;
    const char *effort = NULL;
    if (!gw_body_str(body, "model_name", NULL, &o->model_name, reply) ||
        !gw_body_str(body, "reasoning_effort", NULL, &effort, reply) ||
        !gw_body_bool(body, "enable_thinking", false, &o->enable_thinking, reply) ||
        !gw_body_bool(body, "enable_context_manager", false, &o->enable_context_manager, reply) ||
        !gw_body_bool(body, "stream", true, &stream_unused, reply))
        return false;
    if (o->model_name != NULL && o->model_name[0] == '\0')
        o->model_name = NULL;
    o->reasoning_effort = (effort != NULL && effort[0] != '\0') ? effort : "low";
    return true;
}

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

void gw_route_initiate(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (req->form == NULL) {
        if (req->body_len == 0)
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "prompt is required");
        else
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "Content-Type must be multipart/form-data or "
                           "application/x-www-form-urlencoded");
        return;
    }
    const char *prompt = NULL;
    if (!gw_form_text(req->form, "prompt", true, &prompt, reply))
        return;
    if (prompt == NULL) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "prompt is required");
        return;
    }
    if (!gw_text_fits("prompt", prompt, app->cfg.max_prompt_bytes, reply))
        return;
    gw_run_options opts = {0};
    if (!form_options(req->form, &opts, reply))
        return;

    char *name = gw_project_name(prompt, PROJECT_NAME_CHARS);
    if (name == NULL) {
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL) {
        free(name);
        return;
    }
    char thread_id[KX_UUID_LEN + 1], run_id[KX_UUID_LEN + 1];
    gw_limit_info over;
    kx_err err = gw_store_initiate_limited(db, req->account, name, prompt, &opts,
                                           reject_limit(app), &over, thread_id, run_id);
    bool refused = !over.over && gw_quota_refused(db, err, reply); /* account_limits */
    gw_db_put(app, db);
    free(name);
    if (refused)
        return;
    if (over.over) {
        reply_over_limit(reply, &over);
        return;
    }
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to initiate agent session");
        return;
    }
    gw_publish_submit(app, req, run_id, thread_id);
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:s, s:s}", "thread_id", thread_id, "agent_run_id", run_id));
}

void gw_route_thread_start(gw_app *app, gw_request *req, gw_reply *reply)
{
    json_t *body = gw_body_json_object(req, true, reply);
    if (body == NULL)
        return;
    gw_run_options opts = {0};
    const char *prompt = NULL, *strategy_s = NULL;
    if (!json_options(body, &opts, reply) || !gw_body_str(body, "prompt", NULL, &prompt, reply) ||
        !gw_body_str(body, "multitask_strategy", "enqueue", &strategy_s, reply)) {
        json_decref(body);
        return;
    }
    if (prompt != NULL && prompt[0] == '\0')
        prompt = NULL; /* an empty prompt adds no message */
    gw_multitask strategy = GW_MULTITASK_ENQUEUE;
    if (strcmp(strategy_s, "reject") == 0) {
        strategy = GW_MULTITASK_REJECT;
    } else if (strcmp(strategy_s, "interrupt") == 0) {
        strategy = GW_MULTITASK_INTERRUPT;
    } else if (strcmp(strategy_s, "enqueue") != 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "multitask_strategy must be enqueue, reject or interrupt");
        json_decref(body);
        return;
    }
    if (prompt != NULL && !gw_text_fits("prompt", prompt, app->cfg.max_prompt_bytes, reply)) {
        json_decref(body);
        return;
    }

    kx_db *db = gw_db_get(app, reply);
    if (db == NULL) {
        json_decref(body);
        return;
    }
    char run_id[KX_UUID_LEN + 1], busy[KX_UUID_LEN + 1];
    gw_stopped_run *stopped = NULL;
    size_t nstopped = 0;
    bool created = false;
    if (gw_access_thread(db, req, req->id, reply)) {
        gw_limit_info over;
        kx_err err =
            gw_store_start_strategy(db, req->id, req->account, prompt, &opts, strategy,
                                    reject_limit(app), &over, run_id, busy, &stopped, &nstopped);
        if (over.over)
            reply_over_limit(reply, &over);
        else if (err == KX_ERR_NOT_FOUND) /* deleted since the access check */
            gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
        else if (err == KX_ERR_CONFLICT && busy[0] != '\0')
            gw_reply_error(reply, MHD_HTTP_CONFLICT,
                           "Thread %s already has an active agent run "
                           "%s (multitask_strategy reject)",
                           req->id, busy);
        else if (err != KX_OK && !gw_quota_refused(db, err, reply)) /* limits: 403 / 429 */
            gw_reply_db_error(reply, err, "Failed to start agent run");
        created = err == KX_OK;
    }
    gw_db_put(app, db);
    json_decref(body); /* prompt and the options point into it: not used below */
    for (size_t i = 0; i < nstopped; i++) /* interrupt: tell their runners and streams */
        gw_publish_stop(app, req, stopped[i].id, stopped[i].epoch > 0 ? stopped[i].epoch - 1 : 0);
    free(stopped);
    if (!created)
        return;
    gw_publish_submit(app, req, run_id, req->id);
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:s, s:s}", "agent_run_id", run_id, "status", "queued"));
}

void gw_route_run_get(gw_app *app, gw_request *req, gw_reply *reply)
{
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    gw_run_info info;
    bool ok = gw_access_run(db, req, req->id, &info, reply);
    gw_db_put(app, db);
    if (!ok)
        return;
    gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(info.json));
    gw_store_run_info_free(&info);
}

void gw_route_run_stop(gw_app *app, gw_request *req, gw_reply *reply)
{
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    gw_run_info info;
    if (!gw_access_run(db, req, req->id, &info, reply)) {
        gw_db_put(app, db);
        return;
    }
    gw_store_run_info_free(&info);

    bool stopped = false;
    int64_t epoch = 0;
    kx_err err = gw_store_run_stop(db, req->id, &stopped, &epoch);
    if (err == KX_OK && !stopped) {
        /* The run had already ended (or someone else ended it just now): report its status. */
        err = gw_store_run_info(db, req->id, &info);
    }
    gw_db_put(app, db);
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to update agent run status in database");
        return;
    }
    if (stopped) {
        gw_publish_stop(app, req, req->id, epoch > 0 ? epoch - 1 : 0);
        gw_reply_json(reply, MHD_HTTP_OK, json_pack("{s:s}", "status", "stopped"));
    } else {
        gw_reply_json(reply, MHD_HTTP_OK, json_pack("{s:s}", "status", info.status));
        gw_store_run_info_free(&info);
    }
}

void gw_route_thread_runs(gw_app *app, gw_request *req, gw_reply *reply)
{
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char *runs = NULL;
    kx_err err = KX_OK;
    if (gw_access_thread(db, req, req->id, reply)) {
        err = gw_store_thread_runs(db, req->id, &runs);
        if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to list agent runs");
    }
    gw_db_put(app, db);
    if (runs == NULL)
        return;
    json_t *arr = gw_json_from_sql(runs);
    free(runs);
    gw_reply_json(reply, MHD_HTTP_OK, arr ? json_pack("{s:o}", "agent_runs", arr) : NULL);
}
