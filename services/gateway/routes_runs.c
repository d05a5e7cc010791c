/* routes_runs.c — the agent-run routes of docs/api.md:
 *   POST /api/agent/initiate               new project + thread + user message + queued run;
 *                                          files[] first into the project's sandbox
 *                                          (initiate_files.h)
 *   POST /api/thread/{id}/agent/start      a queued run on an existing thread (+ optional prompt)
 *   GET  /api/agent-run/{id}               the run, camelCase as Kortix
 *   POST /api/agent-run/{id}/stop          the stop compare-and-set, STOP, terminal event
 *   GET  /api/thread/{id}/agent-runs       a thread's runs, newest first
 *   GET  /api/thread/{id}/agent            the agent of the thread's newest run (Kortix's shape)
 * Creating a run is run_ops.c's (the path kx.run.start shares).
 * Runs are created in Postgres first (one statement each) and only then submitted on the bus;
 * a failed submit is logged, not fatal (the scheduler sweeps queued runs). */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "body.h"
#include "form.h"
#include "gateway.h"
#include "initiate_files.h"
#include "kx/log.h"
#include "publish.h"
#include "reply.h"
#include "run_cache.h"
#include "run_ops.h"
#include "sandbox_routes.h"
#include "store.h"
#include "text.h"
#include "kx/uuid.h"

/* reasoning_effort: Kortix's values (its default "low"); model_name: at most
 * GW_MODEL_NAME_MAX_CHARS characters. */
static bool options_ok(const gw_run_options *o, gw_reply *reply)
{
    const char *effort = o->reasoning_effort;
    if (strcmp(effort, "low") != 0 && strcmp(effort, "medium") != 0 &&
        strcmp(effort, "high") != 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "reasoning_effort must be low, medium or high");
        return false;
    }
    return gw_text_chars_fit("model_name", o->model_name, GW_MODEL_NAME_MAX_CHARS, reply);
}

/* The run options of the initiate form. */
static bool form_options(const gw_form *form, gw_run_options *o, gw_reply *reply)
{
    bool stream_unused;
    o->reasoning_effort = "low";
    const char *effort = NULL;
    if (!gw_form_text(form, "model_name", true, &o->model_name, reply) ||
        !gw_form_text(form, "reasoning_effort", true, &effort, reply) ||
        !gw_form_text(form, "agent_id", true, &o->agent_id, reply) ||
        !gw_form_bool(form, "enable_thinking", false, &o->enable_thinking, reply) ||
        !gw_form_bool(form, "enable_context_manager", false, &o->enable_context_manager, reply) ||
        !gw_form_bool(form, "stream", true, &stream_unused, reply))
        return false;
    if (effort != NULL)
        o->reasoning_effort = effort;
    return options_ok(o, reply);
}

/* The run options of the start body (all optional). */
static bool json_options(const json_t *body, gw_run_options *o, gw_reply *reply)
{
    bool stream_unused;
    const char *effort = NULL;
    if (!gw_body_str(body, "model_name", NULL, &o->model_name, reply) ||
        !gw_body_str(body, "reasoning_effort", NULL, &effort, reply) ||
        !gw_body_str(body, "agent_id", NULL, &o->agent_id, reply) ||
        !gw_body_bool(body, "enable_thinking", false, &o->enable_thinking, reply) ||
        !gw_body_bool(body, "enable_context_manager", false, &o->enable_context_manager, reply) ||
        !gw_body_bool(body, "stream", true, &stream_unused, reply))
        return false;
    if (o->model_name != NULL && o->model_name[0] == '\0')
        o->model_name = NULL;
    if (o->agent_id != NULL && o->agent_id[0] == '\0')
        o->agent_id = NULL;
    o->reasoning_effort = (effort != NULL && effort[0] != '\0') ? effort : "low";
    return options_ok(o, reply);
}

static void initiate(gw_app *app, gw_request *req, const gw_run_new *in,
                     const gw_upload_plan *plan, gw_reply *reply);

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
    gw_run_new n = {0};
    if (!gw_form_text(req->form, "prompt", true, &n.prompt, reply))
        return;
    if (n.prompt == NULL) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "prompt is required");
        return;
    }
    if (!form_options(req->form, &n.opts, reply))
        return;
    /* on the worker's stack and not zeroed (~15 KiB): gw_upload_plan_make sets n and writes
     * the files below it before anything reads them. A malloc of this size made glibc
     * consolidate its fast bins at every initiate (~2 % of the gateway's CPU per run). */
    gw_upload_plan plan;
    if (gw_upload_plan_make(req->form, app->cfg.upload_file_max, app->cfg.upload_total_max, &plan,
                            reply))
        initiate(app, req, &n, &plan, reply);
}

/* The run of an initiate and, with files, its project's sandbox first (initiate_files.h). */
static void initiate(gw_app *app, gw_request *req, const gw_run_new *in,
                     const gw_upload_plan *plan, gw_reply *reply)
{
    char project[KX_UUID_LEN + 1], thread_id[KX_UUID_LEN + 1], run_id[KX_UUID_LEN + 1];
    char *prompt = NULL;
    Kx__V1__SandboxInfo *sandbox = NULL;
    gw_run_new run = *in; /* with files: the project id and prompt below (this frame's) */
    if (plan->n > 0) {
        kx_uuid_new(project);
        prompt = gw_upload_prompt(in->prompt, plan);
        if (prompt == NULL) {
            gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
            return;
        }
        /* the refusals before a sandbox is made (gw_run_create checks them again): the
         * prompt's size, the agent, the account's run limits and quotas */
        if (!gw_text_fits("prompt", prompt, app->cfg.max_prompt_bytes, reply) ||
            !gw_run_precheck(app, req, &in->opts, reply) ||
            !gw_upload_put(app, req, project, plan, &sandbox, reply)) {
            free(prompt);
            return;
        }
        run.project_id = project;
        run.prompt = prompt;
    }
    if (gw_run_create(app, req, &run, thread_id, run_id, reply)) {
        if (sandbox != NULL)
            (void)gw_sandbox_record(app, sandbox); /* the project row exists now */
        gw_reply_json(reply, MHD_HTTP_OK,
                      json_pack("{s:s, s:s}", "thread_id", thread_id, "agent_run_id", run_id));
    } else if (sandbox != NULL) {
        gw_sandbox_discard(app, req, project); /* refused (limits, agent, …): nothing stays */
    }
    kx_pb_free(sandbox);
    free(prompt);
}

/* multitask_strategy's names. */
static bool multitask_parse(const char *s, gw_multitask *out, gw_reply *reply)
{
    if (strcmp(s, "enqueue") == 0)
        *out = GW_MULTITASK_ENQUEUE;
    else if (strcmp(s, "reject") == 0)
        *out = GW_MULTITASK_REJECT;
    else if (strcmp(s, "interrupt") == 0)
        *out = GW_MULTITASK_INTERRUPT;
    else {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "multitask_strategy must be enqueue, reject or interrupt");
        return false;
    }
    return true;
}

void gw_route_thread_start(gw_app *app, gw_request *req, gw_reply *reply)
{
    json_t *body = gw_body_json_object(req, true, reply);
    if (body == NULL)
        return;
    gw_run_new n = {.thread_id = req->id};
    const char *strategy_s = NULL;
    char thread_id[KX_UUID_LEN + 1], run_id[KX_UUID_LEN + 1];
    bool created = json_options(body, &n.opts, reply) &&
        gw_body_str(body, "prompt", NULL, &n.prompt, reply) &&
        gw_body_str(body, "multitask_strategy", "enqueue", &strategy_s, reply) &&
        multitask_parse(strategy_s, &n.strategy, reply);
    if (created && n.prompt != NULL && n.prompt[0] == '\0')
        n.prompt = NULL; /* an empty prompt adds no message */
    created = created && gw_run_create(app, req, &n, thread_id, run_id, reply);
    json_decref(body); /* prompt and the options point into it: not used below */
    if (!created)
        return;
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:s, s:s}", "agent_run_id", run_id, "status", "queued"));
}

void gw_route_thread_agent(gw_app *app, gw_request *req, gw_reply *reply)
{
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char owner[KX_UUID_LEN + 1];
    char *agent = NULL;
    kx_err err = kx_uuid_valid(req->id) ? gw_store_thread_account(db, req->id, owner, NULL)
                                        : KX_ERR_NOT_FOUND;
    if (err == KX_OK && strcmp(owner, req->account) != 0)
        err = KX_ERR_NOT_FOUND; /* another account's thread */
    if (err == KX_ERR_NOT_FOUND) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Thread not found");
    } else if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to load thread");
    } else {
        err = gw_store_thread_agent(db, req->id, &agent);
        if (err == KX_ERR_NOT_FOUND)
            gw_reply_json(reply, MHD_HTTP_OK,
                          json_pack("{s:n, s:s, s:s}", "agent", "source", "none", "message",
                                    "No agent has been used in this thread"));
        else if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to load the thread's agent");
    }
    gw_db_put(app, db);
    if (agent == NULL)
        return;
    json_t *a = gw_json_from_sql(agent);
    free(agent);
    gw_reply_json(reply, MHD_HTTP_OK,
                  a ? json_pack("{s:o, s:s, s:s}", "agent", a, "source", "recent", "message",
                                "Using the agent of the thread's most recent run")
                    : NULL);
}

void gw_route_run_get(gw_app *app, gw_request *req, gw_reply *reply)
{
    gw_run_cache_ticket ticket = gw_run_cache_begin(app->run_cache, req->id); /* before the read */
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    gw_run_info info;
    bool ok = gw_access_run(db, req, req->id, &info, reply);
    gw_db_put(app, db);
    if (!ok)
        return;
    gw_reply_json(reply, MHD_HTTP_OK, gw_json_from_sql(info.json));
    if (reply->status == MHD_HTTP_OK)
        gw_run_cache_put(app->run_cache, &ticket, req->id, info.account, reply->body);
    gw_store_run_info_free(&info);
}

void gw_route_run_stop(gw_app *app, gw_request *req, gw_reply *reply)
{
    char status[16];
    if (gw_run_stop(app, req, req->id, status, reply))
        gw_reply_json(reply, MHD_HTTP_OK, json_pack("{s:s}", "status", status));
}

void gw_route_thread_runs(gw_app *app, gw_request *req, gw_reply *reply)
{
    gw_page page;
    if (!gw_query_page(req, &page, reply))
        return;
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char *runs = NULL;
    kx_err err = KX_OK;
    if (gw_access_thread(db, req, req->id, reply)) {
        err = gw_store_thread_runs(db, req->id, &page, &runs);
        if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to list agent runs");
    }
    gw_db_put(app, db);
    if (runs == NULL)
        return;
    gw_reply_page(reply, runs, "agent_runs");
    free(runs);
}
