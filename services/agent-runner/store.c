/* store.c — the agent-runner's SQL (exact statements below) and its wrappers. See store.h for
 * the fencing rules. */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/uuid.h"

/* Every statement below finds the run row by its primary key and tests its status with
 * "status IS NOT DISTINCT FROM '...'" rather than "status = '...'". The two mean the same here
 * (status is NOT NULL), but only "=" lets the planner take a partial index on status
 * (agent_runs_lease_expiry_idx: status = 'running'; agent_runs_queued_idx, since dropped: 'queued')
 * with the id as a mere filter. A prepared statement's generic plan, made while the database
 * holds few runs, did exactly that and then walked every entry of the index on each call
 * (~1400 buffer hits per message insert at 1600 running runs: docs/performance.md, issue 12;
 * tests/unit/test_runner_store.c checks the plans). */

/* queued -> running for this runner; $4 is the claim id the runner made for this claim. The
 * second branch recognises the claim's own earlier success (a retry after a lost answer): it
 * reads the row as it was before this statement, so on a first try it never matches. */
#define SQL_CLAIM                                                                            \
    "WITH c AS (UPDATE agent_runs SET status='running', lease_owner=$2, "                    \
    "  lease_epoch=lease_epoch+1, claim_id=$4::uuid, "                                       \
    "  lease_expires_at=now()+($3::bigint * interval '1 millisecond'), heartbeat_at=now(), " \
    "  attempt=attempt+1, started_at=now() "                                                 \
    "  WHERE id=$1::uuid AND status IS NOT DISTINCT FROM 'queued' "                          \
    "  RETURNING lease_epoch, thread_id, account_id, project_id, metadata, started_at) "     \
    "SELECT lease_epoch, thread_id, account_id, project_id, metadata::text, "                \
    "  (extract(epoch FROM started_at) * 1000)::bigint FROM c "                              \
    "UNION ALL "                                                                             \
    "SELECT lease_epoch, thread_id, account_id, project_id, metadata::text, "                \
    "  (extract(epoch FROM started_at) * 1000)::bigint FROM agent_runs "                     \
    "WHERE id=$1::uuid AND claim_id=$4::uuid AND lease_owner=$2 "                            \
    "  AND status IS NOT DISTINCT FROM 'running' AND NOT EXISTS (SELECT 1 FROM c)"

/* The fenced insert. FOR SHARE OF r locks the run row it checks: a reap or a STOP (an UPDATE
 * of that row) either waits for this insert to commit, or commits first and this statement
 * re-reads the row, sees the new epoch/status and inserts nothing. $7 is the message id the
 * runner generated: a retry after a lost answer inserts nothing (ON CONFLICT) and the second
 * branch returns the row the first try wrote. */
#define SQL_INSERT_MESSAGE                                                                     \
    "WITH ins AS (INSERT INTO messages (message_id, thread_id, account_id, type, "             \
    "  is_llm_message, content, metadata, agent_run_id) "                                      \
    "  SELECT $7::uuid, r.thread_id, r.account_id, $3, $4::boolean, $5::jsonb, $6::jsonb, "    \
    "    r.id FROM agent_runs r WHERE r.id=$1::uuid AND r.lease_epoch=$2::bigint AND "         \
    "    r.status IS NOT DISTINCT FROM 'running' FOR SHARE OF r "                              \
    "  ON CONFLICT (message_id) DO NOTHING "                                                   \
    "  RETURNING message_id, created_at, updated_at) "                                         \
    "SELECT message_id, to_json(created_at)#>>'{}', to_json(updated_at)#>>'{}' FROM ins "      \
    "UNION ALL "                                                                               \
    "SELECT message_id, to_json(created_at)#>>'{}', to_json(updated_at)#>>'{}' FROM messages " \
    "WHERE message_id=$7::uuid AND agent_run_id=$1::uuid AND NOT EXISTS (SELECT 1 FROM ins)"

/* The fenced end. Returns one boolean, "this run ended as asked with our epoch": true when
 * this statement did it, or when a first try whose answer was lost already had (the second
 * EXISTS reads the row as it was before this statement). */
#define SQL_FINISH                                                                           \
    "WITH f AS (UPDATE agent_runs SET status=$3, completed_at=now(), error=$4, "             \
    "  lease_expires_at=NULL "                                                               \
    "  WHERE id=$1::uuid AND lease_epoch=$2::bigint "                                        \
    "  AND status IS NOT DISTINCT FROM 'running' RETURNING 1) "                              \
    "SELECT EXISTS (SELECT 1 FROM f) OR EXISTS (SELECT 1 FROM agent_runs WHERE id=$1::uuid " \
    "  AND lease_epoch=$2::bigint AND status=$3 AND error IS NOT DISTINCT FROM $4)"

/* Drain: give a run we cannot finish back to the queue (epoch + 1, so anything of ours still in
 * flight is fenced off; the attempt does not count; notice 'retried' makes the scheduler
 * publish the status event and dispatch it again). Running it twice changes nothing more. */
#define SQL_HANDBACK                                                                   \
    "UPDATE agent_runs SET status='queued', lease_epoch=lease_epoch+1, "               \
    "  notice='retried', notice_epoch=lease_epoch+1, attempt=greatest(attempt-1, 0), " \
    "  error=$3, lease_expires_at=NULL, dispatched_at=NULL, dispatch_seq=NULL "        \
    "WHERE id=$1::uuid AND lease_epoch=$2::bigint AND status IS NOT DISTINCT FROM 'running'"

#define SQL_LLM_MESSAGES                                                                                \
    "SELECT type, content::text, message_id::text FROM messages WHERE thread_id=$1 AND is_llm_message " \
    "ORDER BY created_at"

/* The run's agent: agent_runs.agent_id, else the account's default agent (is_default); its
 * version: agent_runs.agent_version_id, else the agent's current_version_id — only a version
 * of that agent, and only an agent of the run's account (or a public one). One row, with NULLs
 * when there is no agent or no version. */
#define SQL_AGENT                                                                        \
    "SELECT a.agent_id::text, v.version_id::text, v.config::text, a.metadata::text "     \
    "FROM agent_runs r "                                                                 \
    "LEFT JOIN LATERAL (SELECT * FROM agents x WHERE CASE WHEN r.agent_id IS NOT NULL "  \
    "    THEN x.agent_id = r.agent_id AND (x.account_id = r.account_id OR x.is_public) " \
    "    ELSE x.account_id = r.account_id AND x.is_default END LIMIT 1) a ON true "      \
    "LEFT JOIN agent_versions v ON v.agent_id = a.agent_id "                             \
    "    AND v.version_id = COALESCE(r.agent_version_id, a.current_version_id) "         \
    "WHERE r.id = $1::uuid"

/* Project naming: $1 run. The project's name, and whether this run is its first (no run of
 * the project was created before it). */
#define SQL_PROJECT_FIRST_RUN                                                                   \
    "SELECT p.project_id::text, p.name, NOT EXISTS (SELECT 1 FROM agent_runs o "                \
    "    WHERE o.project_id = r.project_id AND o.id <> r.id AND o.created_at <= r.created_at) " \
    "FROM agent_runs r JOIN projects p ON p.project_id = r.project_id WHERE r.id = $1::uuid"

/* $1 project, $2 the new name, $3 the name it had when read (nobody renamed it meanwhile). */
#define SQL_PROJECT_RENAME                                           \
    "UPDATE projects SET name = $2, updated_at = clock_timestamp() " \
    "WHERE project_id = $1::uuid AND name = $3"

/* The first user message of the run's thread (the project's first request), as text. */
#define SQL_FIRST_USER_MESSAGE                                                               \
    "SELECT m.content::text FROM agent_runs r JOIN messages m ON m.thread_id = r.thread_id " \
    "WHERE r.id = $1::uuid AND m.type = 'user' ORDER BY m.created_at LIMIT 1"

static const kx_db_stmt STATEMENTS[] = {
    {"runner_agent", SQL_AGENT},
    {"runner_project_first_run", SQL_PROJECT_FIRST_RUN},
    {"runner_project_rename", SQL_PROJECT_RENAME},
    {"runner_first_user_message", SQL_FIRST_USER_MESSAGE},
    {"runner_claim", SQL_CLAIM},
    {"runner_insert_message", SQL_INSERT_MESSAGE},
    {"runner_finish", SQL_FINISH},
    {"runner_handback", SQL_HANDBACK},
    {"runner_llm_messages", SQL_LLM_MESSAGES},
    KX_DB_STMT_END,
};

const kx_db_stmt *store_statements(void)
{
    return STATEMENTS;
}

static void copy_field(char *dst, size_t cap, const PGresult *res, int row, int col)
{
    snprintf(dst, cap, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

kx_err store_claim_run(kx_db *db, const char *run_id, const char *owner, int64_t ttl_ms,
                       bool *claimed, store_claim *out)
{
    *claimed = false;
    memset(out, 0, sizeof *out);
    char ttl[24], claim_id[KX_UUID_LEN + 1];
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ms);
    kx_uuid_new(claim_id);
    const char *params[] = {run_id, owner, ttl, claim_id};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec_idem(db, "runner_claim", 4, params, &err);
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
        out->started_at_ms = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
        *claimed = true;
    }
    PQclear(res);
    return KX_OK;
}

/* Reads the fenced insert's answer (res may be NULL: err says why) into out. */
static kx_err insert_answer(PGresult *res, kx_err err, store_row *out)
{
    memset(out, 0, sizeof *out);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return KX_ERR_CONFLICT; /* fenced: the run is no longer ours */
    }
    copy_field(out->message_id, sizeof out->message_id, res, 0, 0);
    copy_field(out->created_at, sizeof out->created_at, res, 0, 1);
    copy_field(out->updated_at, sizeof out->updated_at, res, 0, 2);
    PQclear(res);
    return KX_OK;
}

kx_err store_insert_message(kx_db *db, const char *run_id, int64_t epoch, const char *message_id,
                            const char *type, bool is_llm, const char *content_json,
                            const char *metadata_json, store_row *out)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRId64, epoch);
    const char *params[] = {run_id,       ep,
                            type,         is_llm ? "true" : "false",
                            content_json, metadata_json,
                            message_id};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec_idem(db, "runner_insert_message", 7, params, &err);
    return insert_answer(res, err, out);
}

kx_err store_insert_message_send(kx_db *db, const char *run_id, int64_t epoch,
                                 const char *message_id, const char *type, bool is_llm,
                                 const char *content_json, const char *metadata_json)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRId64, epoch);
    const char *params[] = {run_id,       ep,
                            type,         is_llm ? "true" : "false",
                            content_json, metadata_json,
                            message_id};
    return kx_db_pipe_send(db, "runner_insert_message", 7, params);
}

kx_err store_insert_message_recv(kx_db *db, store_row *out)
{
    kx_err err = KX_OK;
    PGresult *res = kx_db_pipe_result(db, &err);
    return insert_answer(res, err, out);
}

/* Reads the fenced finish's answer (res may be NULL: err says why). */
static kx_err finish_answer(PGresult *res, kx_err err, bool *won)
{
    *won = false;
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    *won = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return KX_OK;
}

kx_err store_finish_run(kx_db *db, const char *run_id, int64_t epoch, const char *status,
                        const char *error, bool *won)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRId64, epoch);
    const char *params[] = {run_id, ep, status, error};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec_idem(db, "runner_finish", 4, params, &err);
    return finish_answer(res, err, won);
}

kx_err store_finish_run_send(kx_db *db, const char *run_id, int64_t epoch, const char *status,
                             const char *error)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRId64, epoch);
    const char *params[] = {run_id, ep, status, error};
    return kx_db_pipe_send(db, "runner_finish", 4, params);
}

kx_err store_finish_run_recv(kx_db *db, bool *won)
{
    kx_err err = KX_OK;
    PGresult *res = kx_db_pipe_result(db, &err);
    return finish_answer(res, err, won);
}

kx_err store_handback_run(kx_db *db, const char *run_id, int64_t epoch, const char *why)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRId64, epoch);
    const char *params[] = {run_id, ep, why};
    return kx_db_exec_cmd_idem(db, "runner_handback", 3, params, NULL);
}

kx_err store_handback_run_send(kx_db *db, const char *run_id, int64_t epoch, const char *why)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRId64, epoch);
    const char *params[] = {run_id, ep, why};
    return kx_db_pipe_send(db, "runner_handback", 3, params);
}

kx_err store_handback_run_recv(kx_db *db)
{
    return kx_db_pipe_result_cmd(db, NULL);
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
        copy_field(out[i].message_id, sizeof out[i].message_id, res, i, 2);
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

/* A nullable text column, malloc'd (NULL when SQL NULL); *oom set on failure. */
static char *dup_field(const PGresult *res, int col, bool *oom)
{
    if (PQgetisnull(res, 0, col))
        return NULL;
    char *s = strdup(PQgetvalue(res, 0, col));
    if (s == NULL)
        *oom = true;
    return s;
}

kx_err store_load_agent(kx_db *db, const char *run_id, store_agent *out)
{
    memset(out, 0, sizeof *out);
    const char *params[] = {run_id};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "runner_agent", 1, params, &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    bool oom = false;
    if (PQntuples(res) == 1) {
        copy_field(out->agent_id, sizeof out->agent_id, res, 0, 0);
        copy_field(out->version_id, sizeof out->version_id, res, 0, 1);
        out->config = dup_field(res, 2, &oom);
        out->metadata = dup_field(res, 3, &oom);
    }
    PQclear(res);
    if (oom) {
        store_agent_clear(out);
        return KX_ERR_NOMEM;
    }
    return KX_OK;
}

void store_agent_clear(store_agent *a)
{
    free(a->config);
    free(a->metadata);
    memset(a, 0, sizeof *a);
}

kx_err store_project_first_run(kx_db *db, const char *run_id, char *project_id, size_t pid_len,
                               char **name, bool *first)
{
    *name = NULL;
    *first = false;
    project_id[0] = '\0';
    const char *params[] = {run_id};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "runner_project_first_run", 1, params, &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    bool oom = false;
    if (PQntuples(res) == 1) {
        copy_field(project_id, pid_len, res, 0, 0);
        *name = dup_field(res, 1, &oom);
        *first = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    }
    PQclear(res);
    return oom ? KX_ERR_NOMEM : KX_OK;
}

kx_err store_project_rename(kx_db *db, const char *project_id, const char *name,
                            const char *old_name, bool *renamed)
{
    const char *params[] = {project_id, name, old_name};
    long rows = 0;
    kx_err err = kx_db_exec_cmd_idem(db, "runner_project_rename", 3, params, &rows);
    *renamed = err == KX_OK && rows == 1;
    return err;
}

kx_err store_first_user_message(kx_db *db, const char *run_id, char **content)
{
    *content = NULL;
    const char *params[] = {run_id};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "runner_first_user_message", 1, params, &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    bool oom = false;
    if (PQntuples(res) == 1)
        *content = dup_field(res, 0, &oom);
    PQclear(res);
    return oom ? KX_ERR_NOMEM : KX_OK;
}
