/* project_store.h — the SQL of projects and threads as rows of their own (routes_projects.c,
 * routes_threads.c): list, read, create, edit and delete, always filtered by the owner's
 * account (another account's row is "not found"), or readable by anyone when public.
 *
 * Deleting a thread or a project (one transaction each): its rows are marked deleted_at
 * (migration 008), from then on absent for every route, and its threads queued for the purger,
 * which deletes their messages later (purge.h); then its active runs are stopped (the stop
 * compare-and-set: status 'stopped', lease_epoch + 1, so a runner's fenced writes fail) — in
 * this order, the threads' rows locked first, so that a start racing the delete either waits
 * and finds the thread deleted or made a run the stop sees (store.c's gw_start); the
 * agent_runs rows stay as the account's usage. The caller publishes STOP and the terminal
 * event of each stopped run (gw_publish_stop).
 *
 * Errors: kx_err from kx_db; KX_ERR_NOT_FOUND when no row of this account matched.
 * Ownership: char ** outputs and *stopped are malloc'd and the caller's. The kx_db is
 * borrowed. */
#ifndef GW_PROJECT_STORE_H
#define GW_PROJECT_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "kx/db.h"
#include "kx/err.h"
#include "store.h"

/* clang-format off */ /* SQL laid out by hand */
#define GW_PROJECT_FIELDS(p)                                                                   \
    "'project_id', " p ".project_id, 'name', " p ".name, 'description', " p ".description, "   \
    "'account_id', " p ".account_id, 'sandbox', " p ".sandbox, 'is_public', " p ".is_public, " \
    "'created_at', " GW_SQL_ISO(p ".created_at") ", 'updated_at', " GW_SQL_ISO(p ".updated_at")

#define GW_THREAD_FIELDS                                                                       \
    "'thread_id', t.thread_id, 'account_id', t.account_id, 'project_id', t.project_id, "       \
    "'metadata', t.metadata, 'is_public', t.is_public, "                                       \
    "'created_at', " GW_SQL_ISO("t.created_at") ", 'updated_at', " GW_SQL_ISO("t.updated_at") \
    ", 'project', CASE WHEN p.project_id IS NULL THEN NULL ELSE json_build_object("           \
    GW_PROJECT_FIELDS("p") ") END"

/* "(x) IS TRUE": the test x, hidden from the partial-index proof (see store.c). */
#define GW_THREAD_FROM                                                                         \
    " FROM threads t LEFT JOIN projects p ON p.project_id = t.project_id "                     \
    "AND (p.deleted_at IS NULL) IS TRUE "

/* Runs stopped by a delete: the stop compare-and-set of docs/architecture.md. */
#define GW_STOP_SET                                                                            \
    "UPDATE agent_runs SET status = 'stopped', completed_at = now(), "                         \
    "lease_epoch = lease_epoch + 1, lease_expires_at = NULL, "                                 \
    "error = coalesce(error, 'stopped: its thread was deleted') "

/* Deleting a project (gw_project_stop_runs, gw_project_forget): its runs are found by their
 * project_id (a run's project is its thread's: every statement that creates one copies it from
 * the thread, and threads never move) on agent_runs_project_created_idx; its threads are
 * marked deleted and queued for the purger, which deletes their messages later (purge.h).
 * Joined to the project's threads, the generic plans made on a never-analyzed database read
 * agent_runs whole (tests/unit/test_gateway_plans.c). */
#define GW_PROJECT_STATEMENTS                                                                  \
    {"gw_threads_list",                                                                        \
     "SELECT (SELECT coalesce(json_agg(j ORDER BY created_at DESC, thread_id DESC), "          \
     "'[]'::json) FROM (SELECT json_build_object(" GW_THREAD_FIELDS ") AS j, t.created_at, "   \
     "t.thread_id" GW_THREAD_FROM "WHERE t.account_id = $1::uuid AND t.deleted_at IS NULL "    \
     "ORDER BY t.created_at DESC, t.thread_id DESC LIMIT $2::int OFFSET $3::int) s)::text, "   \
     "(SELECT count(*) FROM threads WHERE account_id = $1::uuid AND deleted_at IS NULL)"},     \
    {"gw_thread_detail",                                                                       \
     "SELECT json_build_object(" GW_THREAD_FIELDS ", 'message_count', "                        \
     "(SELECT count(*) FROM messages m WHERE m.thread_id = t.thread_id), "                     \
     "'recent_agent_runs', (SELECT coalesce(json_agg(json_build_object('id', r.id, "           \
     "'status', r.status, 'started_at', " GW_SQL_ISO("r.started_at") ", "                      \
     "'completed_at', " GW_SQL_ISO("r.completed_at") ", 'error', r.error, "                    \
     "'agent_id', r.agent_id, 'agent_version_id', r.agent_version_id, "                        \
     "'created_at', " GW_SQL_ISO("r.created_at") ") ORDER BY r.created_at DESC), '[]'::json) " \
     "FROM (SELECT * FROM agent_runs WHERE thread_id = t.thread_id "                           \
     "ORDER BY created_at DESC LIMIT 10) r))::text" GW_THREAD_FROM                             \
     "WHERE t.thread_id = $1::uuid AND t.deleted_at IS NULL"},                                 \
    {"gw_thread_create",                                                                       \
     "WITH p AS (INSERT INTO projects (account_id, name) VALUES ($1::uuid, $2::text) "         \
     "RETURNING project_id), "                                                                 \
     "t AS (INSERT INTO threads (account_id, project_id) SELECT $1::uuid, project_id FROM p "  \
     "RETURNING thread_id, project_id) SELECT thread_id::text, project_id::text FROM t"},      \
    {"gw_thread_update",                                                                       \
     "UPDATE threads SET is_public = coalesce($3::boolean, is_public), "                       \
     "metadata = coalesce($4::jsonb, metadata) "                                               \
     "WHERE thread_id = $1::uuid AND account_id = $2::uuid AND deleted_at IS NULL RETURNING 1"}, \
    {"gw_thread_stop_runs",                                                                    \
     GW_STOP_SET "WHERE thread_id = $1::uuid AND (status IN ('queued', 'running')) IS TRUE "   \
     "RETURNING id::text, lease_epoch"},                                                       \
    /* the messages go later, a batch at a time (purge.h, migration 023) */                   \
    {"gw_thread_forget",                                                                       \
     "WITH q AS (INSERT INTO message_purges (thread_id) VALUES ($1::uuid) "                    \
     "ON CONFLICT DO NOTHING) "                                                                \
     "UPDATE threads SET deleted_at = now() WHERE thread_id = $1::uuid RETURNING 1"},          \
    {"gw_message_delete",                                                                      \
     "WITH d AS (DELETE FROM messages WHERE message_id = $2::uuid AND thread_id = $1::uuid "   \
     "AND is_llm_message RETURNING 1) SELECT (SELECT count(*) FROM d), "                       \
     "EXISTS (SELECT 1 FROM messages WHERE message_id = $2::uuid AND thread_id = $1::uuid)"},  \
    /* $1 account, $2 rows at most, $3 rows skipped, $4 the project the page starts after     \
     * (NULL: from the newest; a deleted one still places the page): {"rows": [...], "more":   \
     * <more follow>, "unknown_before": <$4 is none of the account's projects>} */              \
    {"gw_projects_list",                                                                       \
     "SELECT json_build_object('rows', coalesce(json_agg(j ORDER BY n) FILTER (WHERE n <= "    \
     "$2::int), '[]'::json), 'more', count(*) > $2::int, 'unknown_before', "                   \
     GW_SQL_CURSOR_UNKNOWN("projects", "project_id", "$4::uuid", "account_id = $1::uuid")      \
     ")::text FROM (SELECT j, row_number() "                                                   \
     "OVER (ORDER BY created_at DESC, project_id) AS n FROM (SELECT json_build_object("        \
     GW_PROJECT_FIELDS("p") ") AS j, p.created_at, p.project_id FROM projects p "              \
     "WHERE p.account_id = $1::uuid AND p.deleted_at IS NULL AND "                             \
     GW_SQL_BEFORE("p", "projects", "project_id", "$4::uuid", "account_id = $1::uuid") " "    \
     "ORDER BY p.created_at DESC, p.project_id LIMIT $2::int + 1 OFFSET $3::int) q) s"},       \
    {"gw_project_get",                                                                         \
     "SELECT p.account_id::text, p.is_public, json_build_object(" GW_PROJECT_FIELDS("p")       \
     ")::text FROM projects p WHERE p.project_id = $1::uuid AND p.deleted_at IS NULL"},        \
    {"gw_project_create",                                                                      \
     "INSERT INTO projects AS p (account_id, name, description, is_public) "                   \
     "VALUES ($1::uuid, $2::text, $3::text, $4::boolean) "                                     \
     "RETURNING json_build_object(" GW_PROJECT_FIELDS("p") ")::text"},                         \
    {"gw_project_update",                                                                      \
     "UPDATE projects AS p SET name = coalesce($3::text, name), "                              \
     "description = CASE WHEN $5::boolean THEN $4::text ELSE description END, "                \
     "is_public = coalesce($6::boolean, is_public) "                                           \
     "WHERE project_id = $1::uuid AND account_id = $2::uuid AND deleted_at IS NULL "           \
     "RETURNING json_build_object(" GW_PROJECT_FIELDS("p") ")::text"},                         \
    {"gw_project_lock",                                                                        \
     "SELECT 1 FROM projects WHERE project_id = $1::uuid AND account_id = $2::uuid "           \
     "AND deleted_at IS NULL FOR UPDATE"},                                                     \
    {"gw_project_stop_runs",                                                                   \
     GW_STOP_SET "WHERE project_id = $1::uuid AND (status IN ('queued', 'running')) IS TRUE "  \
     "RETURNING id::text, lease_epoch"},                                                       \
    {"gw_project_forget",                                                                      \
     "WITH th AS MATERIALIZED (SELECT ARRAY(SELECT thread_id FROM threads "                    \
     "WHERE project_id = $1::uuid) AS ids), "                                                  \
     "q AS (INSERT INTO message_purges (thread_id) SELECT unnest(th.ids) FROM th "             \
     "ON CONFLICT DO NOTHING), "                                                               \
     "t AS (UPDATE threads SET deleted_at = now() WHERE project_id = $1::uuid "                \
     "AND (deleted_at IS NULL) IS TRUE) "                                                      \
     "UPDATE projects SET deleted_at = now() WHERE project_id = $1::uuid "                     \
     "RETURNING (sandbox ? 'id' AND coalesce(sandbox->>'state', '') <> 'deleted')::text"}
/* clang-format on */

/* ---- threads ---- */
/* A page of the account's threads (newest first) as a JSON array, and how many there are. */
kx_err gw_threads_page(kx_db *db, const char *account, int limit, int offset, char **json,
                       long long *total);
/* A thread with its project, message_count and recent_agent_runs; no account check (the
 * caller's access check came first). */
kx_err gw_thread_detail(kx_db *db, const char *thread_id, char **json);
/* A new project (named name) and its thread, no run. */
kx_err gw_thread_create(kx_db *db, const char *account, const char *name,
                        char thread_id[KX_UUID_LEN + 1], char project_id[KX_UUID_LEN + 1]);
/* is_public: "true"/"false" or NULL (unchanged); metadata: JSON object text or NULL. */
kx_err gw_thread_update(kx_db *db, const char *thread_id, const char *account,
                        const char *is_public, const char *metadata);
/* Deletes the account's thread (see above); *stopped lists the runs it stopped. */
kx_err gw_thread_delete(kx_db *db, const char *thread_id, const char *account,
                        gw_stopped_run **stopped, size_t *nstopped);
/* Deletes an LLM message of the thread. KX_ERR_NOT_FOUND: no such message in the thread;
 * KX_ERR_INVALID: the message exists but is not an LLM message (Kortix keeps those). */
kx_err gw_message_delete(kx_db *db, const char *thread_id, const char *message_id);

/* ---- projects ---- */
/* A page of the account's projects, newest first: {"rows": [...], "more": <more follow>}. */
kx_err gw_projects_list(kx_db *db, const char *account, const gw_page *page, char **json);
/* The project's owner, whether it is public, and its JSON. */
kx_err gw_project_get(kx_db *db, const char *project_id, char account[KX_UUID_LEN + 1],
                      bool *is_public, char **json);
/* is_public: "true"/"false". */
kx_err gw_project_create(kx_db *db, const char *account, const char *name, const char *description,
                         const char *is_public, char **json);
/* NULL name / is_public: unchanged; set_description: description = description (NULL
 * clears it). */
kx_err gw_project_update(kx_db *db, const char *project_id, const char *account, const char *name,
                         bool set_description, const char *description, const char *is_public,
                         char **json);
/* *had_sandbox: the project had a sandbox not yet deleted (the caller discards it after the
 * commit: a deleted project's sandbox must not outlive it). */
kx_err gw_project_delete(kx_db *db, const char *project_id, const char *account,
                         gw_stopped_run **stopped, size_t *nstopped, bool *had_sandbox);

#endif
