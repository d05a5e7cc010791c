/* trigger_store.h — the SQL of the scheduled-run routes (routes_triggers.c): the rows of
 * run_triggers (deploy/migrations/005_account_limits_triggers.sql), always filtered by the
 * owner's account, so another account's trigger is "not found".
 *
 * A trigger goes back to the client as json_build_object(...)::text (key order as written,
 * timestamps ISO-8601 UTC like the other routes). The scheduler fires triggers; the gateway
 * only creates, lists, edits and deletes them, and computes next_fire_at (kx_cron_next_fire, on
 * the trigger's time zone) when a trigger is created, re-timed, moved to another zone or
 * resumed.
 *
 * Errors: kx_err from kx_db; KX_ERR_NOT_FOUND when no row of this account matched.
 * Ownership: char ** outputs are malloc'd and the caller's. The kx_db is borrowed. */
#ifndef GW_TRIGGER_STORE_H
#define GW_TRIGGER_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "kx/db.h"
#include "kx/err.h"
#include "store.h"

/* clang-format off */
/* A run_triggers row as the API shows it (SQL laid out by hand). */
#define GW_TRIGGER_JSON                                                                       \
    "json_build_object('trigger_id', trigger_id, 'agent_id', agent_id, 'name', name, "        \
    "'cron_expression', cron_expression, 'timezone', timezone, 'prompt', prompt, "            \
    "'model_name', model_name, 'is_active', is_active, "                                      \
    "'next_fire_at', " GW_SQL_ISO("next_fire_at") ", "                                        \
    "'last_fired_at', " GW_SQL_ISO("last_fired_at") ", 'last_run_id', last_run_id, "          \
    "'last_error', last_error, 'fire_count', fire_count, "                                    \
    "'created_at', " GW_SQL_ISO("created_at") ", 'updated_at', " GW_SQL_ISO("updated_at") ")"

/* The statements, spliced into gw_store_statements (store.c; no trailing comma). next_fire_at
 * parameters are unix seconds, or NULL. */
#define GW_TRIGGER_STATEMENTS                                                                  \
    {"gw_trigger_create",                                                                      \
     "INSERT INTO run_triggers (account_id, agent_id, name, cron_expression, timezone, "       \
     "prompt, model_name, next_fire_at) "                                                      \
     "SELECT $1::uuid, a.agent_id, $3::text, $4::text, $8::text, $5::text, $6::text, "         \
     "to_timestamp($7::bigint) FROM agents a "                                                 \
     "WHERE a.agent_id = $2::uuid AND a.account_id = $1::uuid "                                \
     "RETURNING " GW_TRIGGER_JSON "::text"},                                                   \
    /* $1 account, $2 rows at most, $3 rows skipped, $4 bytes of prompts at most (the first   \
     * row always), $5 the trigger the page starts after (NULL: from the newest):              \
     * {"rows": [...], "more": <more follow>, "unknown_before": <$5 is none of the account's>} */ \
    {"gw_triggers_list",                                                                       \
     "SELECT json_build_object('rows', coalesce(json_agg(" GW_TRIGGER_JSON " ORDER BY n) "     \
     "FILTER (WHERE keep), '[]'::json), 'more', coalesce(bool_or(NOT keep), false), "          \
     "'unknown_before', "                                                                      \
     GW_SQL_CURSOR_UNKNOWN("run_triggers", "trigger_id", "$5::uuid", "account_id = $1::uuid")  \
     ")::text "                                                                                \
     "FROM (SELECT t.*, n <= $2::int AND (n = 1 OR upto <= $4::bigint) AS keep FROM ("         \
     "  SELECT r.*, row_number() OVER w AS n, sum(octet_length(r.prompt)) OVER w AS upto "     \
     "  FROM (SELECT * FROM run_triggers c WHERE account_id = $1::uuid AND "                   \
     GW_SQL_BEFORE("c", "run_triggers", "trigger_id", "$5::uuid", "account_id = $1::uuid")    \
     " "                                                                                       \
     "        ORDER BY created_at DESC, trigger_id LIMIT $2::int + 1 OFFSET $3::int) r "       \
     "  WINDOW w AS (ORDER BY created_at DESC, trigger_id)) t) s"},                            \
    {"gw_trigger_get",                                                                         \
     "SELECT " GW_TRIGGER_JSON "::text, cron_expression, is_active, timezone "                 \
     "FROM run_triggers "                                                                      \
     "WHERE trigger_id = $1::uuid AND account_id = $2::uuid"},                                 \
    {"gw_trigger_update",                                                                      \
     "UPDATE run_triggers SET name = coalesce($3::text, name), "                               \
     "prompt = coalesce($4::text, prompt), "                                                   \
     "cron_expression = coalesce($5::text, cron_expression), "                                 \
     "timezone = coalesce($9::text, timezone), "                                               \
     "is_active = coalesce($6::boolean, is_active), "                                          \
     "next_fire_at = CASE WHEN $7::boolean THEN to_timestamp($8::bigint) "                     \
     "ELSE next_fire_at END "                                                                  \
     "WHERE trigger_id = $1::uuid AND account_id = $2::uuid "                                  \
     "RETURNING " GW_TRIGGER_JSON "::text"},                                                   \
    {"gw_trigger_delete",                                                                      \
     "DELETE FROM run_triggers WHERE trigger_id = $1::uuid AND account_id = $2::uuid "         \
     "RETURNING 1"}
/* clang-format on */

/* What a new trigger is made of. model_name may be NULL (the default model); timezone is an
 * IANA name kx_tz_load accepted. */
typedef struct gw_trigger_new {
    const char *agent_id, *name, *cron_expression, *prompt, *model_name, *timezone;
    int64_t next_fire_at; /* unix seconds */
} gw_trigger_new;

/* Inserts the trigger; KX_ERR_NOT_FOUND when agent_id is not one of account's agents. */
kx_err gw_trigger_create(kx_db *db, const char *account, const gw_trigger_new *t, char **json);
/* The account's triggers, newest first, as a JSON array. */
kx_err gw_triggers_list(kx_db *db, const char *account, const gw_page *page, int64_t max_bytes,
                        char **json);

/* One trigger of the account, with the fields an edit needs. */
typedef struct gw_trigger_row {
    char *json;
    char *cron_expression;
    char *timezone;
    bool is_active;
} gw_trigger_row;
kx_err gw_trigger_get(kx_db *db, const char *id, const char *account, gw_trigger_row *out);
void gw_trigger_row_free(gw_trigger_row *row);

/* An edit: NULL fields stay; is_active < 0 stays; set_next: next_fire_at = next (or NULL when
 * next is 0). */
typedef struct gw_trigger_edit {
    const char *name, *prompt, *cron_expression, *timezone;
    int is_active;
    bool set_next;
    int64_t next;
} gw_trigger_edit;
kx_err gw_trigger_update(kx_db *db, const char *id, const char *account, const gw_trigger_edit *e,
                         char **json);
kx_err gw_trigger_delete(kx_db *db, const char *id, const char *account);

#endif
