/* routes_triggers.c — the scheduled-run routes (see routes_triggers.h).
 *
 * A trigger is validated here — the cron expression parsed (kx_cron: 5 fields, ranges, steps,
 * lists, names), its time zone found (kx_tz: an IANA name, default UTC) and its next fire time
 * computed on that zone's wall clock from the gateway's clock (kx_cron_next_fire, as the
 * scheduler does: here a bad expression or zone is a 400 naming the field, an unreadable zone
 * database a 500), the agent being one of the account's, the model allowed for the account —
 * and stored; the scheduler fires it
 * (services/scheduler/triggers.c). Pausing sets next_fire_at to NULL; resuming, re-timing or
 * moving it to another zone computes it again from now, so the time a trigger was paused is
 * not made up for. */
#include "routes_triggers.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "body.h"
#include "kx/cron.h"
#include "kx/log.h"
#include "kx/time.h"
#include "kx/tz.h"
#include "kx/uuid.h"
#include "quota.h"
#include "reply.h"
#include "text.h"
#include "trigger_store.h"

#define TRIGGER_NAME_CHARS 30 /* a trigger without a name is named after its prompt */
#define TRIGGER_NAME_MAX_CHARS 255

/* The caps of a trigger's texts (docs/api.md): prompt as a run's prompt (413), name and
 * model_name in characters (400). NULL fields are not given. */
static bool texts_fit(const gw_app *app, const char *prompt, const char *name,
                      const char *model_name, gw_reply *reply)
{
    return (prompt == NULL || gw_text_fits("prompt", prompt, app->cfg.max_prompt_bytes, reply)) &&
        gw_text_chars_fit("name", name, TRIGGER_NAME_MAX_CHARS, reply) &&
        gw_text_chars_fit("model_name", model_name, GW_MODEL_NAME_MAX_CHARS, reply);
}

/* The reply for an error of kx_cron_next_fire: 400 naming the field that cannot be read, 500
 * when the zone database itself cannot be read (not the client's fault; logged). */
static void reply_unreadable(kx_err err, const char *why, gw_reply *reply)
{
    if (err == KX_ERR_INVALID)
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "cron_expression: %s", why);
    else if (err == KX_ERR_NOT_FOUND)
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "timezone: %s", why);
    else {
        kx_warn("gateway: %s", why);
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR,
                       "the time zone database could not be read");
    }
}

/* Whether name is a zone of the database (a zone given without an expression); false with the
 * reply set, as kx_cron_next_fire's errors would have it. */
static bool zone_ok(const char *name, gw_reply *reply)
{
    kx_tz *tz = NULL;
    char why[200];
    kx_err err = kx_tz_load(name, &tz, why, sizeof why);
    kx_tz_free(tz);
    if (err == KX_OK)
        return true;
    /* kx_tz_load's refusals of the name or the file are the zone's fault: as there */
    reply_unreadable(err == KX_ERR_INVALID ? KX_ERR_NOT_FOUND : err, why, reply);
    return false;
}

/* The first time after now expr fires on the wall clock of zone, in *next (0: it fires no
 * more); false with the reply set when expr or zone cannot be read. */
static bool next_fire(const char *expr, const char *zone, int64_t *next, gw_reply *reply)
{
    char why[200];
    kx_err err = kx_cron_next_fire(expr, zone, kx_now_ms() / 1000, next, why, sizeof why);
    if (err != KX_OK)
        reply_unreadable(err, why, reply);
    return err == KX_OK;
}

/* next_fire, and a 400 when the expression never fires. */
static bool fires(const char *expr, const char *zone, int64_t *next, gw_reply *reply)
{
    if (!next_fire(expr, zone, next, reply))
        return false;
    if (*next == 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "cron_expression: \"%s\" never fires (no such date within %d years)", expr,
                       KX_CRON_HORIZON_YEARS);
        return false;
    }
    return true;
}

/* A required string field: present, not empty, valid UTF-8. */
static bool required_text(const json_t *body, const char *key, const char **out, gw_reply *reply)
{
    if (!gw_body_str(body, key, NULL, out, reply))
        return false;
    if (*out == NULL || (*out)[0] == '\0') {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s is required", key);
        return false;
    }
    return true;
}

static void reply_trigger(gw_reply *reply, char *json)
{
    gw_reply_json(reply, MHD_HTTP_OK, json != NULL ? gw_json_from_sql(json) : NULL);
    free(json);
}

void gw_route_trigger_create(gw_app *app, gw_request *req, gw_reply *reply)
{
    json_t *body = gw_body_json_object(req, false, reply);
    if (body == NULL)
        return;
    gw_trigger_new t = {0};
    char *default_name = NULL;
    if (!required_text(body, "agent_id", &t.agent_id, reply) ||
        !required_text(body, "cron_expression", &t.cron_expression, reply) ||
        !required_text(body, "prompt", &t.prompt, reply) ||
        !gw_body_str(body, "name", NULL, &t.name, reply) ||
        !gw_body_str(body, "model_name", NULL, &t.model_name, reply) ||
        !gw_body_str(body, "timezone", NULL, &t.timezone, reply) ||
        !texts_fit(app, t.prompt, t.name, t.model_name, reply) ||
        !fires(t.cron_expression, t.timezone ? t.timezone : "UTC", &t.next_fire_at, reply))
        goto out;
    if (t.model_name != NULL && t.model_name[0] == '\0')
        t.model_name = NULL;
    if (t.timezone == NULL)
        t.timezone = "UTC";
    if (t.name == NULL || t.name[0] == '\0') {
        t.name = default_name = gw_project_name(t.prompt, TRIGGER_NAME_CHARS);
        if (t.name == NULL) {
            gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
            goto out;
        }
    }
    if (!kx_uuid_valid(t.agent_id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found or access denied");
        goto out;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        goto out;
    char *json = NULL;
    if (gw_quota_model_allowed(db, req->account, t.model_name, reply)) {
        kx_err err = gw_trigger_create(db, req->account, &t, &json);
        if (err == KX_ERR_NOT_FOUND)
            gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Agent not found or access denied");
        else if (err != KX_OK)
            gw_reply_db_error(reply, err, "Failed to create trigger");
    }
    gw_db_put(app, db);
    if (json != NULL)
        reply_trigger(reply, json);
out:
    free(default_name);
    json_decref(body);
}

/* A page of triggers holds at most this much of their prompts (each up to KX_MAX_PROMPT_BYTES),
 * the first trigger always: the next page starts at offset + the triggers received. */
#define TRIGGERS_PAGE_BYTES (8LL * 1024 * 1024)

void gw_route_triggers_list(gw_app *app, gw_request *req, gw_reply *reply)
{
    gw_page page;
    if (!gw_query_page(req, &page, reply))
        return;
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    char *json = NULL;
    kx_err err = gw_triggers_list(db, req->account, &page, TRIGGERS_PAGE_BYTES, &json);
    gw_db_put(app, db);
    if (err != KX_OK) {
        gw_reply_db_error(reply, err, "Failed to list triggers");
        return;
    }
    gw_reply_page(reply, json, "triggers");
    free(json);
}

/* 404 for anything that is not one of the account's triggers. */
static bool trigger_id_ok(const gw_request *req, gw_reply *reply)
{
    if (kx_uuid_valid(req->id))
        return true;
    gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Trigger not found");
    return false;
}

void gw_route_trigger_get(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (!trigger_id_ok(req, reply))
        return;
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    gw_trigger_row row;
    kx_err err = gw_trigger_get(db, req->id, req->account, &row);
    gw_db_put(app, db);
    if (err == KX_ERR_NOT_FOUND)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Trigger not found");
    else if (err != KX_OK)
        gw_reply_db_error(reply, err, "Failed to load trigger");
    else
        reply_trigger(reply, row.json);
    if (err == KX_OK)
        row.json = NULL;
    gw_trigger_row_free(&row);
}

/* The edit a PATCH body asks for; false with a 400. */
static bool parse_edit(const json_t *body, gw_trigger_edit *e, gw_reply *reply)
{
    static const char *const KEYS[] = {"is_active", "name", "prompt", "cron_expression",
                                       "timezone"};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
            known = known || strcmp(key, KEYS[i]) == 0;
        if (!known) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "unknown field \"%.64s\" (a trigger's editable fields: is_active, "
                           "name, prompt, cron_expression, timezone)",
                           key);
            return false;
        }
    }
    if (json_object_size(body) == 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "nothing to change: give is_active, name, prompt, cron_expression or "
                       "timezone");
        return false;
    }
    e->is_active = -1;
    const json_t *active = json_object_get(body, "is_active");
    if (active != NULL && !json_is_null(active)) {
        if (!json_is_boolean(active)) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "is_active must be a boolean");
            return false;
        }
        e->is_active = json_is_true(active);
    }
    if (!gw_body_str(body, "name", NULL, &e->name, reply) ||
        !gw_body_str(body, "prompt", NULL, &e->prompt, reply) ||
        !gw_body_str(body, "cron_expression", NULL, &e->cron_expression, reply) ||
        !gw_body_str(body, "timezone", NULL, &e->timezone, reply))
        return false;
    const char *empty = e->name != NULL && e->name[0] == '\0'         ? "name"
        : e->prompt != NULL && e->prompt[0] == '\0'                   ? "prompt"
        : e->cron_expression != NULL && e->cron_expression[0] == '\0' ? "cron_expression"
        : e->timezone != NULL && e->timezone[0] == '\0'               ? "timezone"
                                                                      : NULL;
    if (empty != NULL) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must not be empty", empty);
        return false;
    }
    return true;
}

void gw_route_trigger_update(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (!trigger_id_ok(req, reply))
        return;
    json_t *body = gw_body_json_object(req, false, reply);
    if (body == NULL)
        return;
    gw_trigger_edit e = {0};
    /* What is given is checked before the row is read, so that a bad expression or zone, or one
     * that never fires, is a 400 whatever the row (missing, paused) and with Postgres away. The
     * expression is read in the given zone, else in UTC: whether it fires at all does not
     * depend on the zone. The next fire itself is computed once the row is read, in the zone
     * that applies then. */
    int64_t early_next = 0;
    if (!parse_edit(body, &e, reply) || !texts_fit(app, e.prompt, e.name, NULL, reply) ||
        (e.cron_expression != NULL &&
         !fires(e.cron_expression, e.timezone ? e.timezone : "UTC", &early_next, reply)) ||
        (e.cron_expression == NULL && e.timezone != NULL && !zone_ok(e.timezone, reply))) {
        json_decref(body);
        return;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL) {
        json_decref(body);
        return;
    }
    gw_trigger_row cur;
    char *json = NULL;
    kx_err err = gw_trigger_get(db, req->id, req->account, &cur);
    if (err == KX_OK) {
        bool active = e.is_active < 0 ? cur.is_active : e.is_active == 1;
        e.set_next = !active || e.cron_expression != NULL || e.timezone != NULL || !cur.is_active;
        /* paused: nothing is due; re-timed, moved to another zone or resumed: from now (the
         * paused time is not made up; an expression that fires no more gets no next time) */
        if (active && e.set_next &&
            !next_fire(e.cron_expression ? e.cron_expression : cur.cron_expression,
                       e.timezone ? e.timezone : cur.timezone, &e.next, reply))
            err = KX_ERR_INVALID; /* the stored zone is gone from the database: said */
        gw_trigger_row_free(&cur);
        if (err == KX_OK)
            err = gw_trigger_update(db, req->id, req->account, &e, &json);
    }
    gw_db_put(app, db);
    json_decref(body); /* e's strings pointed into it */
    if (err == KX_ERR_INVALID)
        return; /* the reply says why */
    if (err == KX_ERR_NOT_FOUND)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Trigger not found");
    else if (err != KX_OK)
        gw_reply_db_error(reply, err, "Failed to update trigger");
    else
        reply_trigger(reply, json);
}

void gw_route_trigger_delete(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (!trigger_id_ok(req, reply))
        return;
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    kx_err err = gw_trigger_delete(db, req->id, req->account);
    gw_db_put(app, db);
    if (err == KX_ERR_NOT_FOUND)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Trigger not found");
    else if (err != KX_OK)
        gw_reply_db_error(reply, err, "Failed to delete trigger");
    else
        gw_reply_json(reply, MHD_HTTP_OK,
                      json_pack("{s:s}", "message", "Trigger deleted successfully"));
}
