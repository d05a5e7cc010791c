/* project_store.c — the SQL of projects and threads as rows (see project_store.h). */
#include "project_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kx_err gw_threads_page(kx_db *db, const char *account, int limit, int offset, char **json,
                       long long *total)
{
    char l[16], o[16];
    snprintf(l, sizeof l, "%d", limit);
    snprintf(o, sizeof o, "%d", offset);
    const char *p[] = {account, l, o};
    PGresult *res = NULL;
    *json = NULL;
    kx_err err = kx_db_exec_row(db, "gw_threads_list", 3, p, &res);
    if (err != KX_OK)
        return err == KX_ERR_NOT_FOUND ? KX_ERR_INTERNAL : err;
    *total = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    *json = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return *json != NULL ? KX_OK : KX_ERR_NOMEM;
}

kx_err gw_thread_detail(kx_db *db, const char *thread_id, char **json)
{
    const char *p[] = {thread_id};
    return kx_db_exec_text(db, "gw_thread_detail", 1, p, json);
}

kx_err gw_thread_create(kx_db *db, const char *account, const char *name,
                        char thread_id[KX_UUID_LEN + 1], char project_id[KX_UUID_LEN + 1])
{
    const char *p[] = {account, name};
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_thread_create", 2, p, &res);
    if (err != KX_OK)
        return err == KX_ERR_NOT_FOUND ? KX_ERR_INTERNAL : err;
    snprintf(thread_id, KX_UUID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
    snprintf(project_id, KX_UUID_LEN + 1, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return KX_OK;
}

kx_err gw_thread_update(kx_db *db, const char *thread_id, const char *account,
                        const char *is_public, const char *metadata)
{
    const char *p[] = {thread_id, account, is_public, metadata};
    return kx_db_exec_text(db, "gw_thread_update", 4, p, NULL);
}

/* In one transaction: lock (account's, not deleted), forget the content (the threads marked
 * deleted: their rows locked, so a start on one waits for this commit and then finds it
 * deleted, store.c's gw_start), then stop the runs — after the forget, so that the stop also
 * sees a run that a start which locked a thread before the forget committed meanwhile.
 * forgot (may be NULL) gets the forget statement's first column. */
static kx_err delete_tx(kx_db *db, const char *lock, const char *stop, const char *forget,
                        const char *id, const char *account, gw_stopped_run **stopped,
                        size_t *nstopped, char **forgot)
{
    *stopped = NULL;
    *nstopped = 0;
    kx_err err = kx_db_begin(db);
    if (err != KX_OK)
        return err;
    const char *p[] = {id, account};
    err = kx_db_exec_text(db, lock, 2, p, NULL);
    if (err == KX_OK)
        err = kx_db_exec_text(db, forget, 1, p, forgot);
    PGresult *res = NULL;
    if (err == KX_OK) {
        err = kx_db_exec_row(db, stop, 1, p, &res);
        if (err == KX_OK) {
            int n = PQntuples(res);
            *stopped = calloc((size_t)n, sizeof **stopped);
            if (*stopped == NULL) {
                err = KX_ERR_NOMEM;
            } else {
                for (int i = 0; i < n; i++) {
                    snprintf((*stopped)[i].id, sizeof(*stopped)[i].id, "%s",
                             PQgetvalue(res, i, 0));
                    (*stopped)[i].epoch = strtoll(PQgetvalue(res, i, 1), NULL, 10);
                }
                *nstopped = (size_t)n;
            }
            PQclear(res);
        } else if (err == KX_ERR_NOT_FOUND) {
            err = KX_OK; /* no active run */
        }
    }
    if (err == KX_OK)
        err = kx_db_commit(db);
    else
        kx_db_rollback(db);
    if (err != KX_OK) {
        free(*stopped);
        *stopped = NULL;
        *nstopped = 0;
        if (forgot != NULL) {
            free(*forgot);
            *forgot = NULL;
        }
    }
    return err;
}

kx_err gw_thread_delete(kx_db *db, const char *thread_id, const char *account,
                        gw_stopped_run **stopped, size_t *nstopped)
{
    return delete_tx(db, "gw_thread_lock", "gw_thread_stop_runs", "gw_thread_forget", thread_id,
                     account, stopped, nstopped, NULL);
}

kx_err gw_message_delete(kx_db *db, const char *thread_id, const char *message_id)
{
    const char *p[] = {thread_id, message_id};
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_message_delete", 2, p, &res);
    if (err != KX_OK)
        return err == KX_ERR_NOT_FOUND ? KX_ERR_INTERNAL : err;
    bool deleted = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    bool exists = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    return deleted ? KX_OK : exists ? KX_ERR_INVALID : KX_ERR_NOT_FOUND;
}

kx_err gw_projects_list(kx_db *db, const char *account, const gw_page *page, char **json)
{
    gw_page_args a;
    gw_page_args_of(page, &a);
    const char *p[] = {account, a.limit, a.offset, page->before};
    return kx_db_exec_text(db, "gw_projects_list", 4, p, json);
}

kx_err gw_project_get(kx_db *db, const char *project_id, char account[KX_UUID_LEN + 1],
                      bool *is_public, char **json)
{
    const char *p[] = {project_id};
    PGresult *res = NULL;
    *json = NULL;
    kx_err err = kx_db_exec_row(db, "gw_project_get", 1, p, &res);
    if (err != KX_OK)
        return err;
    snprintf(account, KX_UUID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
    *is_public = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    *json = strdup(PQgetvalue(res, 0, 2));
    PQclear(res);
    return *json != NULL ? KX_OK : KX_ERR_NOMEM;
}

kx_err gw_project_create(kx_db *db, const char *account, const char *name, const char *description,
                         const char *is_public, char **json)
{
    const char *p[] = {account, name, description, is_public};
    kx_err err = kx_db_exec_text(db, "gw_project_create", 4, p, json);
    return err == KX_ERR_NOT_FOUND ? KX_ERR_INTERNAL : err;
}

kx_err gw_project_update(kx_db *db, const char *project_id, const char *account, const char *name,
                         bool set_description, const char *description, const char *is_public,
                         char **json)
{
    const char *p[] = {project_id, account, name, description, set_description ? "true" : "false",
                       is_public};
    return kx_db_exec_text(db, "gw_project_update", 6, p, json);
}

kx_err gw_project_delete(kx_db *db, const char *project_id, const char *account,
                         gw_stopped_run **stopped, size_t *nstopped, bool *had_sandbox)
{
    char *forgot = NULL;
    kx_err err = delete_tx(db, "gw_project_lock", "gw_project_stop_runs", "gw_project_forget",
                           project_id, account, stopped, nstopped, &forgot);
    *had_sandbox = forgot != NULL && strcmp(forgot, "true") == 0;
    free(forgot);
    return err;
}
