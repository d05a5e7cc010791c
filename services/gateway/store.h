/* store.h — every SQL statement the gateway runs, one function per query.
 *
 * The statements are prepared per connection (kx/db.h) from gw_store_statements. Rows that go
 * back to clients are built in SQL with json_build_object(...)::text, so key order is the
 * query's and timestamps are ISO-8601 UTC strings with microseconds
 * ("2026-11-21T19:40:13.123456+00:00", like Python's isoformat).
 *
 * Errors: kx_err from kx_db_exec (UNAVAILABLE, TIMEOUT, INVALID, CONFLICT, INTERNAL), and
 * KX_ERR_NOT_FOUND when the row asked for does not exist. Ids must already be valid UUIDs.
 *
 * Ownership: char ** outputs are malloc'd and the caller's (free); gw_run_info_free releases a
 * gw_run_info. The kx_db is borrowed. */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include "kx/db.h"
#include "kx/err.h"
#include "kx/uuid.h"

extern const kx_db_stmt gw_store_statements[];

/* A timestamptz column as Python's isoformat() in UTC: "2026-11-21T19:40:13.123456+00:00" (NULL
 * stays NULL), independent of the session's TimeZone. For SQL text built with macros. */
#define GW_SQL_ISO(col) \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"

/* A list's page as the request asks for it (body.c's gw_query_page): at most limit rows,
 * offset skipped, after the row whose id is before (NULL: from the newest). */
typedef struct gw_page {
    long limit, offset;
    const char *before; /* borrowed from the request */
} gw_page;
/* The page's limit and offset as statement parameters. */
typedef struct gw_page_args {
    char limit[24], offset[24];
} gw_page_args;
void gw_page_args_of(const gw_page *page, gw_page_args *out);

/* Keyset pages of a list newest first (created_at DESC, idcol) by a cursor: the id (a
 * parameter, NULL for the first page) of the last row of the previous page, one of table's
 * rows within scope (a condition on its columns, e.g. "account_id = $1::uuid").
 * GW_SQL_CURSOR_AT: the cursor row's created_at, NULL when it is none of the list's (created_at
 * is NOT NULL in every listed table). GW_SQL_CURSOR_UNKNOWN: a cursor was given and is none of
 * the list's (a 400). GW_SQL_BEFORE: the rows of table alias t after the cursor row (a NULL or
 * unknown cursor: every row); the created_at bound is an index condition, so a page costs its
 * own rows, not its depth as an OFFSET does. */
#define GW_SQL_CURSOR_AT(table, idcol, cursor, scope) \
    "(SELECT created_at FROM " table " WHERE " idcol " = " cursor " AND " scope ")"
#define GW_SQL_CURSOR_UNKNOWN(table, idcol, cursor, scope) \
    cursor " IS NOT NULL AND " GW_SQL_CURSOR_AT(table, idcol, cursor, scope) " IS NULL"
#define GW_SQL_BEFORE(t, table, idcol, cursor, scope)                                            \
    t ".created_at <= coalesce(" GW_SQL_CURSOR_AT(                                               \
        table, idcol, cursor,                                                                    \
        scope) ", 'infinity') AND (" t                                                           \
               ".created_at < coalesce(" GW_SQL_CURSOR_AT(table, idcol, cursor,                  \
                                                          scope) ", 'infinity') OR " t "." idcol \
                                                                 " > " cursor ")"

/* The options a run is started with; stored as agent_runs.metadata. */
typedef struct gw_run_options {
    const char *model_name; /* NULL: the runner's default model */
    bool enable_thinking;
    const char *reasoning_effort; /* "low" unless the client said otherwise */
    bool enable_context_manager;
    const char *agent_id; /* an agent of the account (checked first: gw_store_agent_owned);
                             NULL: the account's default agent, or none */
} gw_run_options;

/* KX_OK when agent_id is one of account's agents, else KX_ERR_NOT_FOUND. */
kx_err gw_store_agent_owned(kx_db *db, const char *agent_id, const char *account);
/* The agent (AgentResponse JSON) of the thread's newest run that had one; KX_ERR_NOT_FOUND
 * when none did. */
kx_err gw_store_thread_agent(kx_db *db, const char *thread_id, char **json);

typedef struct gw_run_info {
    char account[KX_UUID_LEN + 1];
    char thread_id[KX_UUID_LEN + 1];
    char status[16];      /* queued, running, completed, failed, stopped */
    char *error;          /* agent_runs.error or NULL */
    char *json;           /* {"id", "threadId", "status", "startedAt", "completedAt", "error"} */
    int64_t ended_ago_ms; /* now - completed_at by Postgres' clock; -1 while not ended */
} gw_run_info;

kx_err gw_store_ping(kx_db *db);

/* The owner of a (not deleted) thread, and whether anyone may read it (its project or the
 * thread is public); is_public may be NULL. */
kx_err gw_store_thread_account(kx_db *db, const char *thread_id, char account[KX_UUID_LEN + 1],
                               bool *is_public);
/* A run's owner, thread, status, error and its GET /api/agent-run/{id} JSON. */
kx_err gw_store_run_info(kx_db *db, const char *run_id, gw_run_info *out);
void gw_store_run_info_free(gw_run_info *info);

/* One statement (so one transaction): project (named project_name; its id project_id, or a new
 * one when NULL), thread, the user message {"role": "user", "content": prompt} and a queued
 * run. */
kx_err gw_store_initiate(kx_db *db, const char *account, const char *project_id,
                         const char *project_name, const char *prompt, const gw_run_options *opts,
                         char thread_id[KX_UUID_LEN + 1], char run_id[KX_UUID_LEN + 1]);
/* One statement: a queued run on the account's thread and, when prompt is not NULL, the user
 * message. KX_ERR_NOT_FOUND if the thread is not (or no longer) the account's. */
kx_err gw_store_start(kx_db *db, const char *thread_id, const char *account, const char *prompt,
                      const gw_run_options *opts, char run_id[KX_UUID_LEN + 1]);

/* POST /api/thread/{id}/agent/start's multitask_strategy: what a new run does to the thread's
 * active (queued or running) run. */
typedef enum gw_multitask {
    GW_MULTITASK_ENQUEUE = 0, /* default: waits its turn (the scheduler admits one per thread) */
    GW_MULTITASK_REJECT,      /* refused while the thread has an active run */
    GW_MULTITASK_INTERRUPT,   /* the active runs are stopped, then the new one is queued */
} gw_multitask;

/* A run stopped by an interrupt, with its epoch after the stop. */
typedef struct gw_stopped_run {
    char id[KX_UUID_LEN + 1];
    int64_t epoch;
} gw_stopped_run;

/* KX_OVER_LIMIT=reject: the account's active (queued or running) runs. */
typedef struct gw_limit_info {
    bool over; /* count >= limit: the new run is refused */
    long long count;
    int64_t limit;
    char *thread_ids_json; /* when over: JSON array of the active runs' threads (malloc'd) */
} gw_limit_info;
/* Inside a transaction: takes the account's creation lock, then counts. */
kx_err gw_store_limit_check(kx_db *db, const char *account, int64_t limit, gw_limit_info *out);
/* gw_store_initiate, refused (KX_ERR_CONFLICT, over->over) when the account already has limit
 * active runs; limit 0: no check. */
kx_err gw_store_initiate_limited(kx_db *db, const char *account, const char *project_id,
                                 const char *project_name, const char *prompt,
                                 const gw_run_options *opts, int64_t limit, gw_limit_info *over,
                                 char thread_id[KX_UUID_LEN + 1], char run_id[KX_UUID_LEN + 1]);

/* gw_store_start with a strategy, in one transaction that first locks the thread row (so
 * concurrent starts on a thread are serialised). limit > 0: refused (KX_ERR_CONFLICT,
 * over->over) when the account already has limit active runs. REJECT with an active run:
 * KX_ERR_CONFLICT and busy_run = that run. INTERRUPT: *stopped (malloc'd, caller frees) lists
 * the runs it stopped; the caller publishes their STOP. */
kx_err gw_store_start_strategy(kx_db *db, const char *thread_id, const char *account,
                               const char *prompt, const gw_run_options *o, gw_multitask strategy,
                               int64_t limit, gw_limit_info *over, char run_id[KX_UUID_LEN + 1],
                               char busy_run[KX_UUID_LEN + 1], gw_stopped_run **stopped,
                               size_t *nstopped);

/* The stop compare-and-set (queued|running -> stopped, epoch + 1). *stopped is false when the
 * run had already ended; otherwise *new_epoch is the epoch after the bump. */
kx_err gw_store_run_stop(kx_db *db, const char *run_id, bool *stopped, int64_t *new_epoch);

/* A run that has ended, as gw_store_runs_ended reports it. */
typedef struct gw_ended_run {
    char id[KX_UUID_LEN + 1];
    char status[16];
    char *error; /* or NULL */
} gw_ended_run;
/* Of the runs in id_array (a Postgres array literal "{id,id,...}"), those that ended more than
 * grace_s seconds ago. *out is malloc'd (gw_store_ended_free). */
kx_err gw_store_runs_ended(kx_db *db, const char *id_array, int grace_s, gw_ended_run **out,
                           size_t *n);
void gw_store_ended_free(gw_ended_run *runs, size_t n);

/* A page of a thread's runs, newest first: {"rows": [...], "more": <more follow>}. */
kx_err gw_store_thread_runs(kx_db *db, const char *thread_id, const gw_page *page, char **json);
/* One page of a thread's messages (order asc or desc), as JSON {"rows": [...], "more": n,
 * "cursor_found": bool}: at most limit rows, starting after the message `after` (NULL: from
 * the first), and no more rows than fit max_bytes of content and metadata (the first row
 * always); "more" counts what the page left out of the next limit + 1 rows (0: the last
 * page). */
kx_err gw_store_messages(kx_db *db, const char *thread_id, bool ascending, int limit,
                         const char *after, long long max_bytes, char **json);
/* Inserts a message with content {"role": role, "content": content} into the account's
 * thread; *row_json is the row. KX_ERR_NOT_FOUND when the thread is not the account's or is
 * deleted (checked in the insert's statement, the thread row locked: see gw_message_add). */
kx_err gw_store_message_add(kx_db *db, const char *thread_id, const char *account,
                            const char *type, bool is_llm_message, const char *role,
                            const char *content, char **row_json);

#endif
