/* trigger_store.c — run_triggers rows for the trigger routes (see trigger_store.h; the
 * statements themselves are in its GW_TRIGGER_STATEMENTS). */
#include "trigger_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kx_err gw_trigger_create(kx_db *db, const char *account, const gw_trigger_new *t, char **json)
{
    char next[24];
    snprintf(next, sizeof next, "%" PRId64, t->next_fire_at);
    const char *params[] = {account,   t->agent_id,   t->name, t->cron_expression,
                            t->prompt, t->model_name, next,    t->timezone};
    return kx_db_exec_text(db, "gw_trigger_create", 8, params, json);
}

kx_err gw_triggers_list(kx_db *db, const char *account, const gw_page *page, int64_t max_bytes,
                        char **json)
{
    gw_page_args a;
    gw_page_args_of(page, &a);
    char bytes[24];
    snprintf(bytes, sizeof bytes, "%" PRId64, max_bytes);
    const char *params[] = {account, a.limit, a.offset, bytes, page->before};
    kx_err err = kx_db_exec_text(db, "gw_triggers_list", 5, params, json);
    return err == KX_ERR_NOT_FOUND ? KX_ERR_INTERNAL : err; /* an aggregate: always one row */
}

kx_err gw_trigger_get(kx_db *db, const char *id, const char *account, gw_trigger_row *out)
{
    memset(out, 0, sizeof *out);
    const char *params[] = {id, account};
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_trigger_get", 2, params, &res);
    if (err != KX_OK)
        return err;
    out->json = strdup(PQgetvalue(res, 0, 0));
    out->cron_expression = strdup(PQgetvalue(res, 0, 1));
    out->is_active = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    out->timezone = strdup(PQgetvalue(res, 0, 3));
    PQclear(res);
    if (out->json == NULL || out->cron_expression == NULL || out->timezone == NULL) {
        gw_trigger_row_free(out);
        return KX_ERR_NOMEM;
    }
    return KX_OK;
}

void gw_trigger_row_free(gw_trigger_row *row)
{
    free(row->json);
    free(row->cron_expression);
    free(row->timezone);
    row->json = row->cron_expression = row->timezone = NULL;
}

kx_err gw_trigger_update(kx_db *db, const char *id, const char *account, const gw_trigger_edit *e,
                         char **json)
{
    char next[24];
    snprintf(next, sizeof next, "%" PRId64, e->next);
    const char *params[] = {
        id,
        account,
        e->name,
        e->prompt,
        e->cron_expression,
        e->is_active < 0 ? NULL : (e->is_active ? "true" : "false"),
        e->set_next ? "true" : "false",
        e->next > 0 ? next : NULL,
        e->timezone,
    };
    return kx_db_exec_text(db, "gw_trigger_update", 9, params, json);
}

kx_err gw_trigger_delete(kx_db *db, const char *id, const char *account)
{
    const char *params[] = {id, account};
    return kx_db_exec_text(db, "gw_trigger_delete", 2, params, NULL);
}
