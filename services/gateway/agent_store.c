/* agent_store.c — the agent and version statements (see agent_store.h; the statements are its
 * GW_AGENT_STATEMENTS, the rules the functions of migration 007). */
#include "agent_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How a statement may be run again after a lost answer. */
typedef enum {
    READ,
    WRITE_IDEM,
    WRITE_ONCE
} run_kind;

/* The first column of the first row (malloc'd) — KX_ERR_NOT_FOUND when there is no row or it
 * is NULL; *keep (when not NULL) gets the result for more columns (the caller PQclears it). */
static kx_err one_value(kx_db *db, const char *stmt, run_kind kind, int n,
                        const char *const *params, char **out, PGresult **keep)
{
    *out = NULL;
    kx_err err = KX_OK;
    PGresult *res = kind == WRITE_IDEM ? kx_db_exec_idem(db, stmt, n, params, &err)
                                       : kx_db_exec(db, stmt, n, params, &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        PQclear(res);
        return KX_ERR_NOT_FOUND;
    }
    *out = strdup(PQgetvalue(res, 0, 0));
    if (*out == NULL) {
        PQclear(res);
        return KX_ERR_NOMEM;
    }
    if (keep != NULL)
        *keep = res;
    else
        PQclear(res);
    return KX_OK;
}

static const char *tri(int v)
{
    return v < 0 ? NULL : (v ? "true" : "false");
}

kx_err gw_agents_list(kx_db *db, const char *account, const gw_agent_query *q, char **json)
{
    char limit[16], page[16];
    snprintf(limit, sizeof limit, "%d", q->limit);
    snprintf(page, sizeof page, "%d", q->page);
    const char *params[] = {account,
                            q->search,
                            tri(q->has_default),
                            tri(q->has_mcp_tools),
                            tri(q->has_agentpress_tools),
                            q->tools,
                            q->sort_by,
                            q->sort_order,
                            limit,
                            page};
    /* it may create the default agent, once: a repeat finds it */
    kx_err err = one_value(db, "gw_agents_list", WRITE_IDEM, 10, params, json, NULL);
    return err == KX_ERR_NOT_FOUND ? KX_ERR_INTERNAL : err;
}

kx_err gw_agent_get(kx_db *db, const char *agent, const char *account, char **json)
{
    const char *params[] = {agent, account};
    return one_value(db, "gw_agent_get", READ, 2, params, json, NULL);
}

kx_err gw_agent_create(kx_db *db, const char *account, const char *fields, const char *idem_key,
                       const char *change, char **json)
{
    const char *params[] = {account, fields, idem_key, change};
    /* with a key, a repeat answers the agent the first run made */
    kx_err err = one_value(db, "gw_agent_create", idem_key ? WRITE_IDEM : WRITE_ONCE, 4, params,
                           json, NULL);
    return err == KX_ERR_NOT_FOUND ? KX_ERR_INTERNAL : err;
}

kx_err gw_agent_update(kx_db *db, const char *agent, const char *account, const char *patch,
                       char **json, char **refused)
{
    *refused = NULL;
    const char *params[] = {agent, account, patch};
    /* the same patch twice: the second changes nothing (no new version for the same config) */
    kx_err err = one_value(db, "gw_agent_update", WRITE_IDEM, 3, params, json, NULL);
    if (err == KX_ERR_CONFLICT && strcmp(kx_db_last_sqlstate(db), "KX403") == 0) {
        const char *m = kx_db_last_error(db);
        if (strncmp(m, "ERROR:", 6) == 0)
            m += 6;
        m += strspn(m, " ");
        *refused = strdup(m);
    }
    return err;
}

kx_err gw_agent_delete(kx_db *db, const char *agent, const char *account, bool *is_default)
{
    *is_default = false;
    const char *params[] = {agent, account};
    char *what = NULL;
    kx_err err = one_value(db, "gw_agent_delete", WRITE_ONCE, 2, params, &what, NULL);
    if (err == KX_OK)
        *is_default = strcmp(what, "default") == 0;
    free(what);
    return err;
}

kx_err gw_agent_export(kx_db *db, const char *agent, const char *account, char **json)
{
    const char *params[] = {agent, account};
    return one_value(db, "gw_agent_export", READ, 2, params, json, NULL);
}

kx_err gw_agent_tools(kx_db *db, const char *agent, const char *account, char **json)
{
    const char *params[] = {agent, account};
    return one_value(db, "gw_agent_tools", READ, 2, params, json, NULL);
}

kx_err gw_versions_list(kx_db *db, const char *agent, const char *account, const char *before,
                        int limit, int64_t max_bytes, char **json)
{
    char lim[16], bytes[24];
    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(bytes, sizeof bytes, "%lld", (long long)max_bytes);
    const char *params[] = {agent, account, before, lim, bytes};
    return one_value(db, "gw_versions_list", READ, 5, params, json, NULL);
}

kx_err gw_version_get(kx_db *db, const char *agent, const char *account, const char *version,
                      char **json)
{
    const char *params[] = {agent, account, version};
    return one_value(db, "gw_version_get", READ, 3, params, json, NULL);
}

kx_err gw_version_create(kx_db *db, const char *agent, const char *account,
                         const gw_version_new *v, char **json)
{
    const char *params[] = {agent,
                            account,
                            v->system_prompt,
                            v->agentpress_tools,
                            v->configured_mcps,
                            v->custom_mcps,
                            v->model,
                            v->version_name,
                            v->description ? v->description : "Manual version"};
    /* a retry after a lost answer could make a second version: run once (503 then) */
    return one_value(db, "gw_version_create", WRITE_ONCE, 9, params, json, NULL);
}

kx_err gw_version_activate(kx_db *db, const char *agent, const char *account, const char *version,
                           bool *no_version)
{
    *no_version = false;
    const char *params[] = {agent, account, version};
    char *what = NULL;
    kx_err err = one_value(db, "gw_version_activate", WRITE_IDEM, 3, params, &what, NULL);
    if (err == KX_OK)
        *no_version = strcmp(what, "no_version") == 0;
    free(what);
    return err;
}

kx_err gw_version_compare(kx_db *db, const char *agent, const char *account, const char *v1,
                          const char *v2, char **json)
{
    const char *params[] = {agent, account, v1, v2};
    return one_value(db, "gw_version_compare", READ, 4, params, json, NULL);
}

kx_err gw_version_rollback(kx_db *db, const char *agent, const char *account, const char *version,
                           char **json)
{
    const char *params[] = {agent, account, version};
    /* a repeat finds the config already current and writes nothing */
    return one_value(db, "gw_version_rollback", WRITE_IDEM, 3, params, json, NULL);
}

kx_err gw_version_details(kx_db *db, const char *agent, const char *account, const char *version,
                          const char *name, const char *change, char **json)
{
    const char *params[] = {agent, account, version, name, change};
    /* the same names twice: the same outcome */
    return one_value(db, "gw_version_details", WRITE_IDEM, 5, params, json, NULL);
}

kx_err gw_agent_mcp_config(kx_db *db, const char *agent, const char *account, char **json)
{
    const char *params[] = {agent, account};
    return one_value(db, "gw_agent_mcp_config", READ, 2, params, json, NULL);
}

kx_err gw_agent_mcp_save(kx_db *db, const char *agent, const char *account, const char *type,
                         const char *url, const char *enabled_tools, char version[KX_UUID_LEN + 1],
                         bool *created)
{
    const char *params[] = {agent, account, type, url, enabled_tools};
    char *id = NULL;
    PGresult *res = NULL;
    /* the same tools twice: the second finds them saved and writes nothing */
    kx_err err = one_value(db, "gw_agent_mcp_save", WRITE_IDEM, 5, params, &id, &res);
    if (err == KX_OK) {
        snprintf(version, KX_UUID_LEN + 1, "%s", id);
        *created = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
        PQclear(res);
    }
    free(id);
    return err;
}
