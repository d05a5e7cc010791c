/* store.c — the agent-runner's SQL (exact statements below) and its wrappers. See store.h for
 * the fencing rules. */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"

#define SQL_CLAIM                                                                              \
    "UPDATE agent_runs SET status='running', lease_owner=$2, lease_epoch=lease_epoch+1, "      \
    "lease_expires_at=now()+($3::bigint * interval '1 millisecond'), heartbeat_at=now(), "     \
    "attempt=attempt+1, started_at=coalesce(started_at, now()) "                               \
    "WHERE id=$1::uuid AND status='queued' "                                                   \
    "RETURNING lease_epoch, thread_id, account_id, project_id, metadata::text"

#define SQL_INSERT_MESSAGE                                                                     \
    "INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, metadata, "   \
    "agent_run_id) "                                                                           \
    "SELECT r.thread_id, r.account_id, $3, $4::boolean, $5::jsonb, $6::jsonb, r.id "           \
    "FROM agent_runs r WHERE r.id=$1::uuid AND r.lease_epoch=$2::bigint AND "                  \
    "r.status='running' "                                                                      \
    "RETURNING message_id, to_json(created_at)#>>'{}', to_json(updated_at)#>>'{}'"

#define SQL_FINISH                                                                             \
    "UPDATE agent_runs SET status=$3, completed_at=now(), error=$4, lease_expires_at=NULL "    \
    "WHERE id=$1::uuid AND lease_epoch=$2::bigint AND status='running'"

#define SQL_LLM_MESSAGES                                                                       \
    "SELECT type, content::text FROM messages WHERE thread_id=$1 AND is_llm_message "          \
    "ORDER BY created_at"

static const kx_db_stmt STATEMENTS[] = {
    {"runner_claim", SQL_CLAIM},
    {"runner_insert_message", SQL_INSERT_MESSAGE},
    {"runner_finish", SQL_FINISH},
    {"runner_llm_messages", SQL_LLM_MESSAGES},
    KX_DB_STMT_END,
};

const kx_db_stmt *store_statements(void) { return STATEMENTS; }

static void copy_field(char *dst, size_t cap, const PGresult *res, int row, int col)
{
    snprintf(dst, cap, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

kx_err store_claim_run(kx_db *db, const char *run_id, const char *owner, int64_t ttl_ms,
                       bool *claimed, store_claim *out)
{
    *claimed = false;
    memset(out, 0, sizeof *out);
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ms);
    const char *params[] = {run_id, owner, ttl};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "runner_claim", 3, params, &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    if (PQntuples(res) == 1) {
        out->epoch = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        copy_field(out->thread_id, sizeof out->thread_id, res, 0, 1);
        copy_field(out->account_id, sizeof out->account_id, res, 0, 2);
        copy_field(out->project_id, sizeof out->project_id, res, 0, 3);
        json_t *meta = json_loads(PQgetvalue(res, 0, 4), 0, NULL);
        const json_t *model = json_object_get(meta, "model_name");
        if (json_is_string(model))
            snprintf(out->model_name, sizeof out->model_name, "%s", json_string_value(model));
        json_decref(meta);
        *claimed = true;
    }
    PQclear(res);
    return KX_OK;
}

kx_err store_insert_message(kx_db *db, const char *run_id, int64_t epoch, const char *type,
                            bool is_llm, const char *content_json, const char *metadata_json,
                            store_row *out)
{
    memset(out, 0, sizeof *out);
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRId64, epoch);
    const char *params[] = {run_id, ep, type, is_llm ? "true" : "false", content_json,
                            metadata_json};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "runner_insert_message", 6, params, &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return KX_ERR_CONFLICT;   /* fenced: the run is no longer ours */
    }
    copy_field(out->message_id, sizeof out->message_id, res, 0, 0);
    copy_field(out->created_at, sizeof out->created_at, res, 0, 1);
    copy_field(out->updated_at, sizeof out->updated_at, res, 0, 2);
    PQclear(res);
    return KX_OK;
}

kx_err store_finish_run(kx_db *db, const char *run_id, int64_t epoch, const char *status,
                        const char *error, bool *won)
{
    *won = false;
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRId64, epoch);
    const char *params[] = {run_id, ep, status, error};
    long rows = 0;
    kx_err err = kx_db_exec_cmd(db, "runner_finish", 4, params, &rows);
    if (err != KX_OK)
        return err;
    *won = rows == 1;
    return KX_OK;
}

kx_err store_load_llm_messages(kx_db *db, const char *thread_id, store_msg **msgs, size_t *n)
{
    *msgs = NULL;
    *n = 0;
    const char *params[] = {thread_id};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "runner_llm_messages", 1, params, &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    int rows = PQntuples(res);
    store_msg *out = calloc(rows > 0 ? (size_t)rows : 1, sizeof *out);
    if (out == NULL) {
        PQclear(res);
        return KX_ERR_NOMEM;
    }
    for (int i = 0; i < rows; i++) {
        copy_field(out[i].type, sizeof out[i].type, res, i, 0);
        out[i].content = strdup(PQgetisnull(res, i, 1) ? "null" : PQgetvalue(res, i, 1));
        if (out[i].content == NULL) {
            store_msgs_free(out, (size_t)i);
            PQclear(res);
            return KX_ERR_NOMEM;
        }
    }
    PQclear(res);
    *msgs = out;
    *n = (size_t)rows;
    return KX_OK;
}

void store_msgs_free(store_msg *msgs, size_t n)
{
    if (msgs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(msgs[i].content);
    free(msgs);
}
