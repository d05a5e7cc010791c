/* store.c — the gateway's SQL: the prepared statements table and one function per query.
 *
 * Why JSON is built in SQL: json_build_object keeps the key order written here, and the client
 * sees exactly the columns listed (Kortix's names), whatever else the tables carry. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "quota.h"
#include "key_store.h"
#include "project_store.h"
#include "purge.h"
#include "trigger_store.h"
#include "agent_store.h"
#include "routes_flags.h"
#include "routes_limits.h"
#include "sandbox_routes.h"

/* A timestamptz as Python's isoformat() in UTC: "2026-11-21T19:40:13.123456+00:00" (NULL stays
 * NULL). Independent of the session's TimeZone. */
#define ISO(col) GW_SQL_ISO(col)

/* A status or deleted_at test written "(status IN ('queued', 'running')) IS TRUE" or
 * "(deleted_at IS NULL) IS TRUE" is the plain test (neither column's test can be NULL) in a form
 * the planner cannot prove a partial index's predicate from. Written plainly, it let the plan
 * take agent_runs_account_active_idx / agent_runs_thread_active_idx (WHERE status IN ('queued',
 * 'running'); both since dropped, migration 014) or projects_account_live_idx /
 * threads_account_live_idx (WHERE deleted_at IS NULL) with the row's key as a mere filter,
 * walking every active run (or live project) on
 * each call once the statistics said there were none (every run ended, analyzed) or none were
 * known (an empty database, generic plan): docs/performance.md, issue 12;
 * tests/unit/test_gateway_plans.c checks every statement's plan. */

/* clang-format off: SQL laid out by hand */
/* agent_runs.metadata from the parameters $4..$7 of the run-creating statements. */
#define RUN_METADATA                                                              \
    "jsonb_build_object('model_name', $4::text, 'enable_thinking', $5::boolean, " \
    "'reasoning_effort', $6::text, 'enable_context_manager', $7::boolean)"

/* clang-format off */
/* The run's agent ($8, an agent of the account; NULL: the account's default agent, if any)
 * and its current version, joined to the thread row t. */
#define RUN_AGENT(account)                                                                \
    "LEFT JOIN LATERAL (SELECT agent_id, current_version_id FROM agents "                 \
    "WHERE account_id = " account "::uuid AND (agent_id = $8::uuid OR "                   \
    "($8::uuid IS NULL AND is_default)) LIMIT 1) a ON true "

/* An agent as Kortix's AgentResponse (its current version's config spread out). */
#define AGENT_JSON                                                                        \
    "json_build_object('agent_id', a.agent_id, 'account_id', a.account_id, "              \
    "'name', a.name, 'description', a.description, "                                      \
    "'system_prompt', coalesce(v.config ->> 'system_prompt', ''), "                       \
    "'configured_mcps', coalesce(v.config -> 'tools' -> 'mcp', '[]'::jsonb), "            \
    "'custom_mcps', coalesce(v.config -> 'tools' -> 'custom_mcp', '[]'::jsonb), "         \
    "'agentpress_tools', coalesce(v.config -> 'tools' -> 'agentpress', '{}'::jsonb), "    \
    "'is_default', a.is_default, 'avatar', a.avatar, 'avatar_color', a.avatar_color, "    \
    "'created_at', " ISO("a.created_at") ", 'updated_at', " ISO("a.updated_at") ", "      \
    "'is_public', a.is_public, 'tags', a.tags, 'current_version_id', "                    \
    "a.current_version_id, 'version_count', a.version_count, 'current_version', NULL, "   \
    "'metadata', a.metadata)"
/* clang-format on */
#define RUN_AGENT_OF_1 RUN_AGENT("$1") /* the account is $1 (gw_initiate) */
#define RUN_AGENT_OF_2 RUN_AGENT("$2") /* the account is $2 (gw_start) */

/* A messages row as Kortix's `select *` shows it. */
#define MESSAGE_JSON                                                                     \
    "json_build_object('message_id', message_id, 'thread_id', thread_id, 'type', type, " \
    "'is_llm_message', is_llm_message, 'content', content, 'metadata', metadata, "       \
    "'agent_id', agent_id, 'agent_version_id', agent_version_id, "                       \
    "'created_at', " ISO("created_at") ", 'updated_at', " ISO("updated_at") ")"

/* One page of a thread's messages in order dir: {"rows": [...], "more": <rows left out>,
 * "cursor_found": <$3 is NULL or one of the thread's messages>}. cmp is the row comparison
 * that means "after $3 in this order". LIMIT $2 + 1 tells whether more follow. A row's size
 * is an LLM message's stored llm_bytes (migration 021: octet_length(content::text), computed
 * at insert), made here only for the other rows: computed for all, it read the content of
 * every row up to the limit, whatever the page kept (a public thread of a thousand 1 MB tool
 * results: a GB detoasted per request). */
#define MESSAGES_PAGE(dir, cmp)                                                                 \
    "WITH c AS (SELECT created_at, message_id FROM messages "                                   \
    "           WHERE message_id = $3::uuid AND thread_id = $1::uuid), "                        \
    "page AS (SELECT m.*, coalesce(m.llm_bytes, octet_length(m.content::text)) + "              \
    "                coalesce(octet_length(m.metadata::text), 0) AS size FROM messages m "      \
    "         WHERE m.thread_id = $1::uuid AND ($3::uuid IS NULL OR "                           \
    "               (m.created_at, m.message_id) " cmp                                          \
    " (SELECT created_at, message_id FROM c)) "                                                 \
    "         ORDER BY m.created_at " dir ", m.message_id " dir " LIMIT $2::int + 1), "         \
    "numbered AS (SELECT page.*, row_number() OVER w AS n, sum(size) OVER w AS upto FROM page " \
    "             WINDOW w AS (ORDER BY created_at " dir ", message_id " dir ")) "              \
    "SELECT json_build_object('rows', COALESCE(json_agg(" MESSAGE_JSON " ORDER BY n) "          \
    "  FILTER (WHERE n <= $2::int AND (n = 1 OR upto <= $4::bigint)), '[]'::json), "            \
    "  'more', count(*) FILTER (WHERE n > $2::int OR (n > 1 AND upto > $4::bigint)), "          \
    "  'cursor_found', $3::uuid IS NULL OR EXISTS (SELECT 1 FROM c))::text FROM numbered"

const kx_db_stmt gw_store_statements[] = {
    {"gw_ping", "SELECT 1"},

    {"gw_thread_account",
     "SELECT account_id::text, coalesce((SELECT p.is_public FROM projects p "
     "WHERE p.project_id = threads.project_id AND p.deleted_at IS NULL), false) OR is_public "
     "FROM threads WHERE thread_id = $1::uuid AND deleted_at IS NULL"},

    {"gw_run_info",
     "SELECT account_id::text, thread_id::text, status, error, "
     "json_build_object('id', id, 'threadId', thread_id, 'status', status, "
     "'startedAt', " ISO("started_at") ", 'completedAt', " ISO(
         "completed_at") ", "
                         "'error', error)::text, "
                         "coalesce((extract(epoch FROM now() - completed_at) * 1000)::bigint, -1) "
                         "FROM agent_runs WHERE id = $1::uuid"},

    /* $1 account, $2 project name, $3 prompt, $4..$7 run options, $8 agent, $9 the project's id
     * (NULL: a new one) */
    {"gw_initiate",
     "WITH p AS (INSERT INTO projects (project_id, account_id, name) "
     "           VALUES (COALESCE($9::uuid, gen_random_uuid()), $1::uuid, $2::text) "
     "           RETURNING project_id), "
     "t AS (INSERT INTO threads (account_id, project_id) SELECT $1::uuid, project_id FROM p "
     "      RETURNING thread_id, project_id), "
     "m AS (INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, metadata) "
     "      SELECT thread_id, $1::uuid, 'user', true, "
     "             jsonb_build_object('role', 'user', 'content', $3::text), '{}'::jsonb FROM t "
     "      RETURNING message_id), "
     "r AS (INSERT INTO agent_runs (thread_id, account_id, project_id, status, metadata, "
     "                        agent_id, agent_version_id) "
     "      SELECT thread_id, $1::uuid, project_id, 'queued', " RUN_METADATA ", "
     "             a.agent_id, a.current_version_id FROM t " RUN_AGENT_OF_1
     "      RETURNING id, thread_id) "
     "SELECT r.thread_id::text, r.id::text FROM r, m"},

    /* $1 thread, $2 account, $3 prompt or NULL, $4..$7 run options. The thread row is
     * locked FOR SHARE: a delete under way (it locks the thread before it stops the thread's
     * runs, project_store.c) makes the start wait and then find the thread deleted; a start
     * that locked it first is seen by the delete's stop. Unlocked, a start racing a delete
     * committed a queued run on the deleted thread after its runs were stopped. */
    {"gw_start",
     "WITH t AS (SELECT thread_id, project_id FROM threads "
     "           WHERE thread_id = $1::uuid AND account_id = $2::uuid AND deleted_at IS NULL "
     "           FOR SHARE), "
     "m AS (INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, metadata) "
     "      SELECT thread_id, $2::uuid, 'user', true, "
     "             jsonb_build_object('role', 'user', 'content', $3::text), '{}'::jsonb "
     "      FROM t WHERE $3::text IS NOT NULL RETURNING message_id), "
     "r AS (INSERT INTO agent_runs (thread_id, account_id, project_id, status, metadata, "
     "                        agent_id, agent_version_id) "
     "      SELECT thread_id, $2::uuid, project_id, 'queued', " RUN_METADATA ", "
     "             a.agent_id, a.current_version_id FROM t " RUN_AGENT_OF_2 "      RETURNING id) "
     "SELECT id::text FROM r"},

    /* multitask_strategy (gw_store_start_strategy): inside one transaction, the thread row is
     * locked first, so the statements after it see every run a concurrent start committed. */
    {"gw_thread_lock",
     "SELECT 1 FROM threads WHERE thread_id = $1::uuid AND account_id = $2::uuid "
     "AND deleted_at IS NULL FOR UPDATE"},
    {"gw_thread_active",
     "SELECT id::text FROM agent_runs WHERE thread_id = $1::uuid "
     "AND (status IN ('queued', 'running')) IS TRUE ORDER BY created_at LIMIT 1"},
    {"gw_thread_interrupt",
     "UPDATE agent_runs SET status = 'stopped', completed_at = now(), "
     "lease_epoch = lease_epoch + 1, lease_expires_at = NULL "
     "WHERE thread_id = $1::uuid AND (status IN ('queued', 'running')) IS TRUE "
     "RETURNING id::text, lease_epoch"},

    /* KX_OVER_LIMIT=reject: one creation per account at a time (transaction-scoped lock), so
     * the count after it sees every run a concurrent creation committed. The account's runs
     * queued or running, read as the two sets the scheduler's indexes hold (migration 011):
     * active (running, or dispatched) and waiting (queued, never dispatched); migration 014
     * dropped the index of exactly "queued or running" that only this statement read. */
    {"gw_account_lock", "SELECT pg_advisory_xact_lock(hashtext($1::text))"},
    {"gw_account_active",
     "SELECT count(*), coalesce(json_agg(DISTINCT thread_id)::text, '[]') FROM ("
     "SELECT thread_id FROM agent_runs WHERE account_id = $1::uuid AND (status = 'running' "
     "OR (status = 'queued' AND dispatched_at IS NOT NULL)) "
     "UNION ALL SELECT thread_id FROM agent_runs WHERE account_id = $1::uuid "
     "AND status = 'queued' AND dispatched_at IS NULL) a"},

    /* The stop compare-and-set of docs/architecture.md. */
    {"gw_run_stop",
     "UPDATE agent_runs SET status = 'stopped', completed_at = now(), "
     "lease_epoch = lease_epoch + 1, lease_expires_at = NULL "
     "WHERE id = $1::uuid AND (status IN ('queued', 'running')) IS TRUE RETURNING lease_epoch"},

    /* For SSE streams that wait for a terminal event that may never come (its publish failed). */
    {"gw_runs_ended",
     "SELECT id::text, status, error FROM agent_runs "
     "WHERE id = ANY($1::uuid[]) AND status IN ('completed', 'failed', 'stopped') "
     "AND COALESCE(completed_at, updated_at) < now() - make_interval(secs => $2::int)"},

    /* $1 thread, $2 rows at most, $3 rows skipped, $4 the run the page starts after (NULL: from
     * the newest): {"rows": [...], "more": <more follow>, "unknown_before": <$4 is none of the
     * thread's runs>} */
    /* clang-format off */
    {"gw_thread_runs",
     "SELECT json_build_object('rows', COALESCE(json_agg(j ORDER BY n) FILTER (WHERE n <= "
     "$2::int), '[]'::json), 'more', count(*) > $2::int, 'unknown_before', "
     GW_SQL_CURSOR_UNKNOWN("agent_runs", "id", "$4::uuid", "thread_id = $1::uuid")
     ")::text FROM ("
     "  SELECT j, row_number() OVER (ORDER BY created_at DESC, id) AS n FROM ("
     "    SELECT json_build_object('id', id, 'thread_id', thread_id, 'status', status, "
     "      'started_at', " ISO("started_at") ", 'completed_at', " ISO("completed_at") ", "
     "      'error', error, 'created_at', " ISO("created_at") ", "
     "      'updated_at', " ISO("updated_at") ") AS j, created_at, id "
     "    FROM agent_runs r WHERE thread_id = $1::uuid AND "
     GW_SQL_BEFORE("r", "agent_runs", "id", "$4::uuid", "thread_id = $1::uuid") " "
     "    ORDER BY created_at DESC, id LIMIT $2::int + 1 OFFSET $3::int) p) s"},
    /* clang-format on */

    /* $1 thread, $2 rows at most, $3 the message the page starts after (NULL: from the
     * first), $4 bytes at most (content and metadata as text; the first row always) */
    {"gw_messages_desc", MESSAGES_PAGE("DESC", "<")},
    {"gw_messages_asc", MESSAGES_PAGE("ASC", ">")},

    /* $1 thread, $2 account, $3 type, $4 is_llm_message, $5 role, $6 content. The check
     * (the account's live thread) and the insert are one statement holding the thread row
     * FOR SHARE until the commit, as gw_start: a delete under way (its FOR UPDATE first) makes
     * the insert wait and then find the thread deleted (no row); a delete that comes after
     * waits for the insert's commit, so the purge it queues sees the row. Checked by an
     * earlier statement, a delete and its whole purge could fall between the check and the
     * insert, leaving a message on a deleted, purged thread that nothing removes. */
    {"gw_message_add",
     "WITH t AS (SELECT thread_id FROM threads "
     "           WHERE thread_id = $1::uuid AND account_id = $2::uuid AND deleted_at IS NULL "
     "           FOR SHARE) "
     "INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, metadata) "
     "SELECT thread_id, $2::uuid, $3::text, $4::boolean, "
     "       jsonb_build_object('role', $5::text, 'content', $6::text), '{}'::jsonb FROM t "
     "RETURNING " MESSAGE_JSON "::text"},

    {"gw_agent_owned", "SELECT 1 FROM agents WHERE agent_id = $1::uuid AND account_id = $2::uuid"},

    /* GET /api/thread/{id}/agent: the agent of the thread's newest run that had one (that run
     * found first, on the thread's index: joined to agents, a never-analyzed database's
     * generic plan walked migration 024's agent_runs_agent_idx — every run with an agent) */
    {"gw_thread_agent",
     "SELECT " AGENT_JSON "::text FROM (SELECT agent_id FROM agent_runs "
     "WHERE thread_id = $1::uuid AND (agent_id IS NOT NULL) IS TRUE "
     "ORDER BY created_at DESC LIMIT 1) r JOIN agents a ON a.agent_id = r.agent_id "
     "LEFT JOIN agent_versions v ON v.version_id = a.current_version_id"},

    GW_QUOTA_STATEMENTS,   /* quota.h */
    GW_TRIGGER_STATEMENTS, /* trigger_store.h */
    GW_KEY_STATEMENTS,     /* key_store.h */
    GW_PROJECT_STATEMENTS, /* project_store.h */
    GW_PURGE_STATEMENTS,   /* purge.h */
    GW_AGENT_STATEMENTS,   /* agent_store.h */
    GW_FLAG_STATEMENTS,    /* routes_flags.h */
    GW_LIMITS_STATEMENTS,  /* routes_limits.h */
    GW_SANDBOX_STATEMENTS, /* sandbox_routes.h */
    KX_DB_STMT_END,
};
/* clang-format on */

static void copy_col(PGresult *res, int col, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s", PQgetisnull(res, 0, col) ? "" : PQgetvalue(res, 0, col));
}

kx_err gw_store_ping(kx_db *db)
{
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_ping", 0, NULL, &res);
    PQclear(res);
    return err;
}

kx_err gw_store_thread_account(kx_db *db, const char *thread_id, char account[KX_UUID_LEN + 1],
                               bool *is_public)
{
    const char *params[] = {thread_id};
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_thread_account", 1, params, &res);
    if (err != KX_OK)
        return err;
    copy_col(res, 0, account, KX_UUID_LEN + 1);
    if (is_public != NULL)
        *is_public = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    return KX_OK;
}

kx_err gw_store_run_info(kx_db *db, const char *run_id, gw_run_info *out)
{
    memset(out, 0, sizeof *out);
    const char *params[] = {run_id};
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_run_info", 1, params, &res);
    if (err != KX_OK)
        return err;
    copy_col(res, 0, out->account, sizeof out->account);
    copy_col(res, 1, out->thread_id, sizeof out->thread_id);
    copy_col(res, 2, out->status, sizeof out->status);
    if (!PQgetisnull(res, 0, 3))
        out->error = strdup(PQgetvalue(res, 0, 3));
    out->json = strdup(PQgetvalue(res, 0, 4));
    out->ended_ago_ms = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
    bool oom = out->json == NULL || (!PQgetisnull(res, 0, 3) && out->error == NULL);
    PQclear(res);
    if (oom) {
        gw_store_run_info_free(out);
        return KX_ERR_NOMEM;
    }
    return KX_OK;
}

void gw_store_run_info_free(gw_run_info *info)
{
    free(info->error);
    free(info->json);
    info->error = NULL;
    info->json = NULL;
}

kx_err gw_store_initiate(kx_db *db, const char *account, const char *project_id,
                         const char *project_name, const char *prompt, const gw_run_options *o,
                         char thread_id[KX_UUID_LEN + 1], char run_id[KX_UUID_LEN + 1])
{
    const char *params[] = {
        account,
        project_name,
        prompt,
        o->model_name,
        o->enable_thinking ? "true" : "false",
        o->reasoning_effort,
        o->enable_context_manager ? "true" : "false",
        o->agent_id,
        project_id,
    };
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_initiate", 9, params, &res);
    if (err == KX_ERR_NOT_FOUND)
        return KX_ERR_INTERNAL; /* an INSERT chain that returned nothing: cannot happen */
    if (err != KX_OK)
        return err;
    copy_col(res, 0, thread_id, KX_UUID_LEN + 1);
    copy_col(res, 1, run_id, KX_UUID_LEN + 1);
    PQclear(res);
    return KX_OK;
}

kx_err gw_store_start(kx_db *db, const char *thread_id, const char *account, const char *prompt,
                      const gw_run_options *o, char run_id[KX_UUID_LEN + 1])
{
    const char *params[] = {
        thread_id,
        account,
        prompt,
        o->model_name,
        o->enable_thinking ? "true" : "false",
        o->reasoning_effort,
        o->enable_context_manager ? "true" : "false",
        o->agent_id,
    };
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_start", 8, params, &res);
    if (err != KX_OK)
        return err;
    copy_col(res, 0, run_id, KX_UUID_LEN + 1);
    PQclear(res);
    return KX_OK;
}

kx_err gw_store_limit_check(kx_db *db, const char *account, int64_t limit, gw_limit_info *out)
{
    memset(out, 0, sizeof *out);
    const char *p[] = {account};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "gw_account_lock", 1, p, &err);
    PQclear(res);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    res = kx_db_exec(db, "gw_account_active", 1, p, &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    out->count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    out->limit = limit;
    out->over = out->count >= limit;
    if (out->over && (out->thread_ids_json = strdup(PQgetvalue(res, 0, 1))) == NULL)
        err = KX_ERR_NOMEM;
    PQclear(res);
    return err;
}

kx_err gw_store_initiate_limited(kx_db *db, const char *account, const char *project_id,
                                 const char *project_name, const char *prompt,
                                 const gw_run_options *opts, int64_t limit, gw_limit_info *over,
                                 char thread_id[KX_UUID_LEN + 1], char run_id[KX_UUID_LEN + 1])
{
    memset(over, 0, sizeof *over);
    if (limit <= 0)
        return gw_store_initiate(db, account, project_id, project_name, prompt, opts, thread_id,
                                 run_id);
    kx_err err = kx_db_begin(db);
    if (err != KX_OK)
        return err;
    err = gw_store_limit_check(db, account, limit, over);
    if (err == KX_OK && over->over)
        err = KX_ERR_CONFLICT;
    if (err == KX_OK)
        err = gw_store_initiate(db, account, project_id, project_name, prompt, opts, thread_id,
                                run_id);
    if (err == KX_OK)
        return kx_db_commit(db);
    kx_db_rollback(db);
    return err;
}

kx_err gw_store_start_strategy(kx_db *db, const char *thread_id, const char *account,
                               const char *prompt, const gw_run_options *o, gw_multitask strategy,
                               int64_t limit, gw_limit_info *over, char run_id[KX_UUID_LEN + 1],
                               char busy_run[KX_UUID_LEN + 1], gw_stopped_run **stopped,
                               size_t *nstopped)
{
    *stopped = NULL;
    *nstopped = 0;
    busy_run[0] = '\0';
    memset(over, 0, sizeof *over);
    /* enqueue without a limit to check: the scheduler runs the thread's runs in turn */
    if (strategy == GW_MULTITASK_ENQUEUE && limit <= 0)
        return gw_store_start(db, thread_id, account, prompt, o, run_id);
    kx_err err = kx_db_begin(db);
    if (err != KX_OK)
        return err;
    const char *tp[] = {thread_id, account};
    PGresult *res = NULL;
    err = kx_db_exec_row(db, "gw_thread_lock", 2, tp, &res);
    PQclear(res);
    if (err == KX_OK && limit > 0) {
        err = gw_store_limit_check(db, account, limit, over);
        if (err == KX_OK && over->over)
            err = KX_ERR_CONFLICT;
    }
    if (err == KX_OK && strategy == GW_MULTITASK_REJECT) {
        err = kx_db_exec_row(db, "gw_thread_active", 1, tp, &res);
        if (err == KX_OK) {
            copy_col(res, 0, busy_run, KX_UUID_LEN + 1);
            PQclear(res);
            err = KX_ERR_CONFLICT;
        } else if (err == KX_ERR_NOT_FOUND) {
            err = KX_OK;
        }
    }
    if (err == KX_OK && strategy == GW_MULTITASK_INTERRUPT) { /* stop the thread's runs first */
        err = kx_db_exec_row(db, "gw_thread_interrupt", 1, tp, &res);
        if (err == KX_OK) {
            int n = PQntuples(res);
            *stopped = calloc((size_t)n, sizeof **stopped);
            if (*stopped == NULL) {
                err = KX_ERR_NOMEM;
            } else {
                for (int i = 0; i < n; i++) {
                    copy_col(res, i, (*stopped)[i].id, sizeof(*stopped)[i].id);
                    (*stopped)[i].epoch = strtoll(PQgetvalue(res, i, 1), NULL, 10);
                }
                *nstopped = (size_t)n;
            }
            PQclear(res);
        } else if (err == KX_ERR_NOT_FOUND) {
            err = KX_OK;
        }
    }
    if (err == KX_OK)
        err = gw_store_start(db, thread_id, account, prompt, o, run_id);
    if (err == KX_OK)
        err = kx_db_commit(db);
    else
        kx_db_rollback(db);
    if (err != KX_OK) {
        free(*stopped);
        *stopped = NULL;
        *nstopped = 0;
    }
    return err;
}

kx_err gw_store_run_stop(kx_db *db, const char *run_id, bool *stopped, int64_t *new_epoch)
{
    const char *params[] = {run_id};
    PGresult *res = NULL;
    *stopped = false;
    *new_epoch = 0;
    kx_err err = kx_db_exec_row(db, "gw_run_stop", 1, params, &res);
    if (err == KX_ERR_NOT_FOUND)
        return KX_OK; /* the run had already ended: nothing changed */
    if (err != KX_OK)
        return err;
    *stopped = true;
    *new_epoch = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return KX_OK;
}

kx_err gw_store_runs_ended(kx_db *db, const char *id_array, int grace_s, gw_ended_run **out,
                           size_t *n)
{
    char grace[16];
    snprintf(grace, sizeof grace, "%d", grace_s);
    const char *params[] = {id_array, grace};
    *out = NULL;
    *n = 0;
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_runs_ended", 2, params, &res);
    if (err == KX_ERR_NOT_FOUND)
        return KX_OK;
    if (err != KX_OK)
        return err;
    int rows = PQntuples(res);
    gw_ended_run *runs = calloc((size_t)rows, sizeof *runs);
    if (runs == NULL) {
        PQclear(res);
        return KX_ERR_NOMEM;
    }
    for (int i = 0; i < rows; i++) {
        snprintf(runs[i].id, sizeof runs[i].id, "%s", PQgetvalue(res, i, 0));
        snprintf(runs[i].status, sizeof runs[i].status, "%s", PQgetvalue(res, i, 1));
        if (!PQgetisnull(res, i, 2))
            runs[i].error = strdup(PQgetvalue(res, i, 2)); /* NULL on OOM: a generic text */
    }
    PQclear(res);
    *out = runs;
    *n = (size_t)rows;
    return KX_OK;
}

void gw_store_ended_free(gw_ended_run *runs, size_t n)
{
    for (size_t i = 0; i < n && runs != NULL; i++)
        free(runs[i].error);
    free(runs);
}

void gw_page_args_of(const gw_page *page, gw_page_args *out)
{
    snprintf(out->limit, sizeof out->limit, "%ld", page->limit);
    snprintf(out->offset, sizeof out->offset, "%ld", page->offset);
}

kx_err gw_store_thread_runs(kx_db *db, const char *thread_id, const gw_page *page, char **json)
{
    gw_page_args a;
    gw_page_args_of(page, &a);
    const char *params[] = {thread_id, a.limit, a.offset, page->before};
    return kx_db_exec_text(db, "gw_thread_runs", 4, params, json);
}

kx_err gw_store_messages(kx_db *db, const char *thread_id, bool ascending, int limit,
                         const char *after, long long max_bytes, char **json)
{
    char lim[16], bytes[24];
    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(bytes, sizeof bytes, "%lld", max_bytes);
    const char *params[] = {thread_id, lim, after, bytes};
    return kx_db_exec_text(db, ascending ? "gw_messages_asc" : "gw_messages_desc", 4, params,
                           json);
}

kx_err gw_store_message_add(kx_db *db, const char *thread_id, const char *account,
                            const char *type, bool is_llm_message, const char *role,
                            const char *content, char **row_json)
{
    const char *params[] = {
        thread_id, account, type, is_llm_message ? "true" : "false", role, content,
    };
    return kx_db_exec_text(db, "gw_message_add", 6, params, row_json);
}

kx_err gw_store_agent_owned(kx_db *db, const char *agent_id, const char *account)
{
    const char *params[] = {agent_id, account};
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_agent_owned", 2, params, &res);
    PQclear(res);
    return err;
}

kx_err gw_store_thread_agent(kx_db *db, const char *thread_id, char **json)
{
    const char *params[] = {thread_id};
    return kx_db_exec_text(db, "gw_thread_agent", 1, params, json);
}
