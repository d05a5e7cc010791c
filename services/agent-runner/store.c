/* store.c — the agent-runner's SQL (exact statements below) and its wrappers. See store.h for
 * the fencing rules. */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kx/buf.h"
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

/* The run's agent, joined to the run row r (agent_runs' columns, or the claim's w below):
 * agent_runs.agent_id, else the account's default agent (is_default); its version:
 * agent_runs.agent_version_id, else the agent's current_version_id — only a version of that
 * agent, and only an agent of the run's account (or a public one). NULLs when there is no agent
 * or no version. Each is an index probe: the agent by agents_pkey, or (no agent_id: the
 * one-time filter r.agent_id IS NULL picks the second branch) by the account's agents; the
 * version by agent_versions_pkey, in a LATERAL with LIMIT 1 so that it stays a probe per run
 * row (its agent test written "(…) IS TRUE": as "=" the planner took agent_versions_agent_id_idx
 * and read every version of the agent). Written as one CASE over agents, no index could serve
 * the condition: every claim read agents whole (to the first match; all of it for an account
 * without a default agent), and the version as a plain join was a hash join over every row of
 * agent_versions in the generic plan made on a young database, kept by the runner's
 * connections (tests/unit/test_runner_store.c, test_the_agent_of_a_run_is_probed_by_index;
 * docs/performance.md, "Sequential scans per run"). */
#define SQL_AGENT_OF_R                                                           \
    "LEFT JOIN LATERAL (SELECT * FROM agents x WHERE x.agent_id = r.agent_id "   \
    "    AND (x.account_id = r.account_id OR x.is_public) "                      \
    "  UNION ALL SELECT * FROM agents x WHERE r.agent_id IS NULL "               \
    "    AND x.account_id = r.account_id AND x.is_default LIMIT 1) a ON true "   \
    "LEFT JOIN LATERAL (SELECT * FROM agent_versions y "                         \
    "  WHERE y.version_id = COALESCE(r.agent_version_id, a.current_version_id) " \
    "    AND (y.agent_id = a.agent_id) IS TRUE LIMIT 1) v ON true "

/* queued -> running for this runner; $4 is the claim id the runner made for this claim. The
 * second branch recognises the claim's own earlier success (a retry after a lost answer): it
 * reads the row as it was before this statement, so on a first try it never matches. Either
 * branch's row comes back with the run's agent and version (SQL_AGENT_OF_R, the four last
 * columns: what runner_agent reads), so the first turn needs no statement of its own for them:
 * a retry reads them again, as a read after the claim would. */
#define SQL_CLAIM                                                                               \
    "WITH c AS (UPDATE agent_runs SET status='running', lease_owner=$2, "                       \
    "  lease_epoch=lease_epoch+1, claim_id=$4::uuid, "                                          \
    "  lease_expires_at=now()+($3::bigint * interval '1 millisecond'), heartbeat_at=now(), "    \
    "  attempt=attempt+1, started_at=now(), updated_at=clock_timestamp() "                      \
    "  WHERE id=$1::uuid AND status IS NOT DISTINCT FROM 'queued' "                             \
    "  RETURNING lease_epoch, thread_id, account_id, project_id, metadata, started_at, "        \
    "    agent_id, agent_version_id), "                                                         \
    "w AS (SELECT * FROM c "                                                                    \
    "  UNION ALL "                                                                              \
    "  SELECT lease_epoch, thread_id, account_id, project_id, metadata, started_at, agent_id, " \
    "    agent_version_id FROM agent_runs "                                                     \
    "  WHERE id=$1::uuid AND claim_id=$4::uuid AND lease_owner=$2 "                             \
    "    AND status IS NOT DISTINCT FROM 'running' AND NOT EXISTS (SELECT 1 FROM c)) "          \
    "SELECT r.lease_epoch, r.thread_id, r.account_id, r.project_id, r.metadata::text, "         \
    "  (extract(epoch FROM r.started_at) * 1000)::bigint, "                                     \
    "  a.agent_id::text, v.version_id::text, v.config::text, a.metadata::text "                 \
    "FROM w r " SQL_AGENT_OF_R

/* The fenced insert of a run's rows, one statement for up to STORE_INSERT_MAX_ROWS of them:
 * $3..$7 are parallel arrays (message ids the runner generated, types, is_llm, contents,
 * metadata), unnested in order WITH ORDINALITY. FOR SHARE OF r locks the run row it checks: a
 * reap or a STOP (an UPDATE of that row) either waits for this insert to commit, or commits
 * first and this statement re-reads the row, sees the new epoch/status and inserts nothing.
 *
 * Order: the thread reads back ORDER BY created_at, so the rows get created_at = base + (k - 1)
 * microseconds for the k-th one, with base = greatest(clock_timestamp(), the newest created_at
 * of the thread this statement sees + 1 microsecond), computed once (the MATERIALIZED CTE b):
 * strictly increasing in the order given, and strictly after every earlier statement's rows
 * (committed, or of this transaction) even when the clock stood still or stepped back. The
 * newest row is one backward step of messages_thread_created_idx (thread_id, created_at).
 *
 * Retry: a second try after a lost answer inserts nothing (ON CONFLICT) and the second branch
 * returns the rows the first try wrote — it reads the table as it was before this statement,
 * so it never returns a row ins wrote, and it runs only when ins wrote fewer rows than asked
 * (the one-time filter on the count), one primary-key probe per id (the LIMIT keeps it a
 * probe: as "message_id = ANY($3)" the generic plan read the table whole while it was small).
 * The caller counts: fewer rows than ids means fenced.
 *
 * Usage (migration 015): u adds the tokens of the assistant_response_end rows ins inserted
 * (kx_turn_tokens, the rule of migration 005) to the run, one HOT update of the row ins holds
 * FOR SHARE, and none when the batch has no usage (the sum is a one-time filter: the row is not
 * even probed) or when nothing was inserted (a retry: so a batch counts once). Only the
 * statement for a batch with an assistant_response_end row (runner_insert_messages_usage) has
 * u: an UPDATE in the plan, even one that never runs, makes every call open agent_runs for
 * writing (its indexes, constraints, triggers), so a batch that cannot carry usage goes by
 * runner_insert_messages, without it (docs/performance.md, "Triggers of agent_runs"). b sets
 * kx.usage_counted_ids to the batch's message ids for the transaction, and the usage trigger
 * skips a row whose id is in it: the rows this statement inserts are counted here, not twice.
 *
 * The arrays are unnested from the CTE b, not from the parameters themselves: unnest($3) of a
 * custom plan knows the array's length (a constant), of the generic plan it does not (10), so
 * their costs differed by the row count and Postgres kept making a custom plan — planning the
 * statement anew at every call, which cost more server CPU than the round trips it saved
 * (tests/bench/bench_rows.c; unit_runner_store checks that the generic plan is taken). */
#define SQL_INSERT_MESSAGES_HEAD                                                                 \
    "WITH b AS MATERIALIZED (SELECT greatest(clock_timestamp(), "                                \
    "  (SELECT x.created_at FROM messages x WHERE x.thread_id = "                                \
    "    (SELECT t.thread_id FROM agent_runs t WHERE t.id=$1::uuid) "                            \
    "   ORDER BY x.created_at DESC LIMIT 1) + interval '1 microsecond') AS at, "                 \
    "  $3::uuid[] AS ids, $4::text[] AS types, $5::boolean[] AS llm, $6::jsonb[] AS contents, "  \
    "  $7::jsonb[] AS metas, "                                                                   \
    "  set_config('kx.usage_counted_ids', $3::uuid[]::text, true) AS counting), "                \
    "ins AS (INSERT INTO messages (message_id, thread_id, account_id, type, "                    \
    "  is_llm_message, content, metadata, agent_run_id, created_at, updated_at) "                \
    "  SELECT m.id, r.thread_id, r.account_id, m.type, m.llm, m.content, m.meta, r.id, "         \
    "    b.at + (m.ord - 1) * interval '1 microsecond', "                                        \
    "    b.at + (m.ord - 1) * interval '1 microsecond' "                                         \
    "  FROM agent_runs r CROSS JOIN b CROSS JOIN LATERAL unnest(b.ids, b.types, b.llm, "         \
    "    b.contents, b.metas) WITH ORDINALITY AS m(id, type, llm, content, meta, ord) "          \
    "  WHERE r.id=$1::uuid AND r.lease_epoch=$2::bigint AND "                                    \
    "    r.status IS NOT DISTINCT FROM 'running' AND b.counting IS NOT NULL FOR SHARE OF r "     \
    "  ON CONFLICT (message_id) DO NOTHING "                                                     \
    "  RETURNING message_id, created_at, updated_at, CASE WHEN type = 'assistant_response_end' " \
    "    THEN kx_turn_tokens(content) ELSE 0 END AS tokens) "

#define SQL_INSERT_MESSAGES_U                                                                   \
    ", u AS (UPDATE agent_runs SET tokens_used = tokens_used + (SELECT sum(tokens) FROM ins), " \
    "  updated_at = clock_timestamp() "                                                         \
    "  WHERE id=$1::uuid AND (SELECT sum(tokens) FROM ins) > 0) "

/* The rows' answer: ins's rows, and on a retry the rows the first try wrote; x adds columns
 * (uncorrelated: the same in every row). */
#define SQL_INSERT_MESSAGES_TAIL_WITH(x)                                                      \
    "SELECT message_id::text, to_json(created_at)#>>'{}', to_json(updated_at)#>>'{}'" x       \
    " FROM ins "                                                                              \
    "UNION ALL "                                                                              \
    "SELECT x.message_id::text, to_json(x.created_at)#>>'{}', to_json(x.updated_at)#>>'{}'" x \
    " FROM b CROSS JOIN LATERAL unnest(b.ids) AS k(id) CROSS JOIN LATERAL (SELECT * "         \
    "  FROM messages y WHERE y.message_id = k.id AND y.agent_run_id=$1::uuid LIMIT 1) x "     \
    "WHERE (SELECT count(*) FROM ins) < cardinality(b.ids)"
#define SQL_INSERT_MESSAGES_TAIL SQL_INSERT_MESSAGES_TAIL_WITH("")

#define SQL_INSERT_MESSAGES SQL_INSERT_MESSAGES_HEAD SQL_INSERT_MESSAGES_TAIL
#define SQL_INSERT_MESSAGES_USAGE \
    SQL_INSERT_MESSAGES_HEAD SQL_INSERT_MESSAGES_U SQL_INSERT_MESSAGES_TAIL

/* A run's last rows and its fenced end in ONE statement (runner_insert_messages_finish): the
 * insert above, and f, the finish of runner_finish ($8 status, $9 error) with the usage of u
 * (the tokens of the assistant_response_end rows ins inserted, 0 when none): one update of the
 * run row ins holds FOR SHARE (a statement may not update a row twice: u and the finish are
 * one). f runs only when ins inserted rows, so it passed the same fence (the row cannot change
 * in between: ins holds it), and a retry after a lost answer (ins inserts nothing) neither
 * finishes nor counts the tokens again. Every row of the answer carries, as a fourth column,
 * runner_finish's boolean "this run ended as asked with our epoch": f did it, or a first try
 * whose answer was lost had (read as before the statement). The rows come first in the
 * thread as they always do (created_at after every row the statement sees), so "the answer is
 * the thread's newest LLM message" (runner_finish_answered) holds by construction when the
 * batch's last LLM row is the answer: run_ops.c folds that finish only then. */
#define SQL_INSERT_MESSAGES_F                                                                 \
    ", f AS (UPDATE agent_runs SET status=$8, completed_at=now(), error=$9, "                 \
    "  lease_expires_at=NULL, tokens_used = tokens_used + coalesce((SELECT sum(tokens) FROM " \
    "    ins), 0), updated_at=clock_timestamp() "                                             \
    "  WHERE id=$1::uuid AND lease_epoch=$2::bigint "                                         \
    "  AND status IS NOT DISTINCT FROM 'running' AND (SELECT count(*) FROM ins) > 0 "         \
    "  RETURNING 1) "
#define SQL_INSERT_MESSAGES_FINISH                                                  \
    SQL_INSERT_MESSAGES_HEAD SQL_INSERT_MESSAGES_F SQL_INSERT_MESSAGES_TAIL_WITH(   \
        ", (SELECT EXISTS (SELECT 1 FROM f) OR EXISTS (SELECT 1 FROM agent_runs z " \
        "  WHERE z.id=$1::uuid AND z.lease_epoch=$2::bigint AND z.status=$8 "       \
        "  AND z.error IS NOT DISTINCT FROM $9))")

/* The fenced end. Returns one boolean, "this run ended as asked with our epoch": true when
 * this statement did it, or when a first try whose answer was lost already had (the second
 * EXISTS reads the row as it was before this statement). */
#define SQL_FINISH                                                                           \
    "WITH f AS (UPDATE agent_runs SET status=$3, completed_at=now(), error=$4, "             \
    "  lease_expires_at=NULL, updated_at=clock_timestamp() "                                 \
    "  WHERE id=$1::uuid AND lease_epoch=$2::bigint "                                        \
    "  AND status IS NOT DISTINCT FROM 'running' RETURNING 1) "                              \
    "SELECT EXISTS (SELECT 1 FROM f) OR EXISTS (SELECT 1 FROM agent_runs WHERE id=$1::uuid " \
    "  AND lease_epoch=$2::bigint AND status=$3 AND error IS NOT DISTINCT FROM $4)"

/* The end of a run whose model answered without a tool call: the fenced finish, only if the
 * thread's newest LLM message is still an assistant message (what a read of the thread would
 * decide: run.c) — else somebody added one after the answer (the gateway may, any time), and
 * the run goes on. Returns "ended as asked with our epoch" (as runner_finish), and "still
 * running with our epoch" as the row was before this statement (the finish was declined when
 * the first is false and the second true; fenced when both are false). The newest LLM message
 * is a backward walk of messages_thread_created_idx (thread_id, created_at, is_llm_message)
 * over the index entries of the thread's newest rows, is_llm_message tested on each entry. */
#define SQL_FINISH_ANSWERED                                                                  \
    "WITH f AS (UPDATE agent_runs r SET status=$3, completed_at=now(), error=$4, "           \
    "  lease_expires_at=NULL, updated_at=clock_timestamp() "                                 \
    "  WHERE r.id=$1::uuid AND r.lease_epoch=$2::bigint "                                    \
    "  AND r.status IS NOT DISTINCT FROM 'running' "                                         \
    "  AND (SELECT m.type FROM messages m WHERE m.thread_id = r.thread_id "                  \
    "       AND m.is_llm_message ORDER BY m.created_at DESC LIMIT 1) = 'assistant' "         \
    "  RETURNING 1) "                                                                        \
    "SELECT EXISTS (SELECT 1 FROM f) OR EXISTS (SELECT 1 FROM agent_runs WHERE id=$1::uuid " \
    "  AND lease_epoch=$2::bigint AND status=$3 AND error IS NOT DISTINCT FROM $4), "        \
    "  EXISTS (SELECT 1 FROM agent_runs WHERE id=$1::uuid AND lease_epoch=$2::bigint "       \
    "  AND status IS NOT DISTINCT FROM 'running')"

/* Drain: give a run we cannot finish back to the queue (epoch + 1, so anything of ours still in
 * flight is fenced off; the attempt does not count; notice 'retried' makes the scheduler
 * publish the status event and dispatch it again). Running it twice changes nothing more. */
#define SQL_HANDBACK                                                                   \
    "UPDATE agent_runs SET status='queued', lease_epoch=lease_epoch+1, "               \
    "  notice='retried', notice_epoch=lease_epoch+1, attempt=greatest(attempt-1, 0), " \
    "  error=$3, lease_expires_at=NULL, dispatched_at=NULL, dispatch_seq=NULL, "       \
    "  updated_at=clock_timestamp() "                                                  \
    "WHERE id=$1::uuid AND lease_epoch=$2::bigint AND status IS NOT DISTINCT FROM 'running'"

/* Release: a run whose end cannot be written (run.c, run_release) is let go to the scheduler's
 * reaper. Its status stays 'running' (the write that failed was a change of status), its claim
 * lease expires now and it no longer names a runner, so the reaper's next pass takes it as the
 * run of a dead runner: queued again while attempts remain (the attempt counts, unlike a
 * hand-back, so a permanent error cannot cycle the run forever), else failed; with the reason
 * in error, which the reaper reports for a run without a runner. The epoch is unchanged: the
 * runner forgets the run at once. */
#define SQL_RELEASE                                                              \
    "UPDATE agent_runs SET lease_owner=NULL, lease_expires_at=now(), error=$3, " \
    "  updated_at=clock_timestamp() "                                            \
    "WHERE id=$1::uuid AND lease_epoch=$2::bigint AND status IS NOT DISTINCT FROM 'running'"

/* $1 thread, $2 bytes: the thread's first LLM message (the task) and, newest first, the rows
 * until their text passes $2 bytes (the row that passes it included), in created_at order,
 * each with its place among the thread's LLM rows (the rows between are left out).
 * llm_bytes is octet_length(content::text), stored at insert (migration 021). */
#define SQL_LLM_MESSAGES                                              \
    "SELECT type, content::text, message_id::text, m.nth FROM ("      \
    "  SELECT type, content, message_id, created_at, llm_bytes, "     \
    "    sum(llm_bytes) OVER (ORDER BY created_at DESC) AS upto, "    \
    "    row_number() OVER (ORDER BY created_at, message_id) AS nth " \
    "  FROM messages WHERE thread_id = $1 AND is_llm_message) m "     \
    "WHERE m.upto - m.llm_bytes < $2::bigint OR m.nth = 1 ORDER BY m.nth"

/* The run's agent and version (SQL_AGENT_OF_R): one row. */
#define SQL_AGENT                                                                    \
    "SELECT a.agent_id::text, v.version_id::text, v.config::text, a.metadata::text " \
    "FROM agent_runs r " SQL_AGENT_OF_R "WHERE r.id = $1::uuid"

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
    {"runner_insert_messages", SQL_INSERT_MESSAGES},
    {"runner_insert_messages_usage", SQL_INSERT_MESSAGES_USAGE},
    {"runner_insert_messages_finish", SQL_INSERT_MESSAGES_FINISH},
    {"runner_finish", SQL_FINISH},
    {"runner_finish_answered", SQL_FINISH_ANSWERED},
    {"runner_handback", SQL_HANDBACK},
    {"runner_release_to_reaper", SQL_RELEASE},
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

/* The agent's four columns from col on (row 0) into out; false when out of memory (out is
 * then empty). */
static bool agent_fields(const PGresult *res, int col, store_agent *out)
{
    bool oom = false;
    copy_field(out->agent_id, sizeof out->agent_id, res, 0, col);
    copy_field(out->version_id, sizeof out->version_id, res, 0, col + 1);
    out->config = dup_field(res, col + 2, &oom);
    out->metadata = dup_field(res, col + 3, &oom);
    if (oom)
        store_agent_clear(out);
    return !oom;
}

/* Reads the claim's answer (res may be NULL: err says why); the agent's columns into agent
 * when it is not NULL. */
static kx_err claim_answer(PGresult *res, kx_err err, bool *claimed, store_claim *out,
                           store_agent *agent)
{
    *claimed = false;
    memset(out, 0, sizeof *out);
    if (agent != NULL)
        memset(agent, 0, sizeof *agent);
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
        if (agent != NULL && !agent_fields(res, 6, agent)) {
            PQclear(res);
            return KX_ERR_NOMEM; /* the claim is ours all the same (*claimed, out) */
        }
    }
    PQclear(res);
    return KX_OK;
}

kx_err store_claim_run_as(kx_db *db, const char *run_id, const char *owner, int64_t ttl_ms,
                          const char *claim_id, bool *claimed, store_claim *out,
                          store_agent *agent)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ms);
    const char *params[] = {run_id, owner, ttl, claim_id};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec_idem(db, "runner_claim", 4, params, &err);
    return claim_answer(res, err, claimed, out, agent);
}

kx_err store_claim_run(kx_db *db, const char *run_id, const char *owner, int64_t ttl_ms,
                       bool *claimed, store_claim *out)
{
    char claim_id[KX_UUID_LEN + 1];
    kx_uuid_new(claim_id);
    return store_claim_run_as(db, run_id, owner, ttl_ms, claim_id, claimed, out, NULL);
}

kx_err store_claim_run_send(kx_db *db, const char *run_id, const char *owner, int64_t ttl_ms,
                            const char *claim_id)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ms);
    const char *params[] = {run_id, owner, ttl, claim_id};
    return kx_db_pipe_send(db, "runner_claim", 4, params);
}

kx_err store_claim_run_recv(kx_db *db, bool *claimed, store_claim *out, store_agent *agent)
{
    kx_err err = KX_OK;
    PGresult *res = kx_db_pipe_result(db, &err);
    return claim_answer(res, err, claimed, out, agent);
}

/* Appends v to the array literal being built in buf as one double-quoted element (a quote or
 * a backslash escaped with a backslash). */
static void array_elem(kx_buf *buf, const char *v)
{
    kx_buf_str(buf, buf->len > 1 ? ",\"" : "\"");
    for (const char *p = v;;) {
        size_t plain = strcspn(p, "\"\\");
        kx_buf_add(buf, p, plain);
        if (p[plain] == '\0')
            break;
        kx_buf_add(buf, "\\", 1);
        kx_buf_add(buf, p + plain, 1);
        p += plain + 1;
    }
    kx_buf_add(buf, "\"", 1);
}

/* The five array parameters of runner_insert_messages[_usage] (malloc'd into arr; false when out of
 * memory, with nothing left to free). */
static bool insert_arrays(const store_new_row *rows, size_t n, char *arr[5])
{
    kx_buf bufs[5] = {KX_BUF_INIT, KX_BUF_INIT, KX_BUF_INIT, KX_BUF_INIT, KX_BUF_INIT};
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(rows[i].content_json) * 9 / 8 + 4;
    kx_buf_reserve(&bufs[3], bytes + 2);
    for (int k = 0; k < 5; k++)
        kx_buf_add(&bufs[k], "{", 1);
    for (size_t i = 0; i < n; i++) {
        array_elem(&bufs[0], rows[i].message_id);
        array_elem(&bufs[1], rows[i].type);
        array_elem(&bufs[2], rows[i].is_llm ? "t" : "f");
        array_elem(&bufs[3], rows[i].content_json);
        array_elem(&bufs[4], rows[i].metadata_json);
    }
    bool ok = true;
    for (int k = 0; k < 5; k++) {
        kx_buf_add(&bufs[k], "}", 1);
        ok = (arr[k] = kx_buf_take(&bufs[k])) != NULL && ok;
    }
    if (!ok)
        for (int k = 0; k < 5; k++) {
            free(arr[k]);
            arr[k] = NULL;
        }
    return ok;
}

/* Reads the fenced insert's answer (res may be NULL: err says why): out[k] is rows[k]'s row;
 * *won (when not NULL) the fourth column of runner_insert_messages_finish. */
static kx_err insert_answer(PGresult *res, kx_err err, const store_new_row *rows, size_t n,
                            store_row *out, bool *won)
{
    memset(out, 0, n * sizeof *out);
    if (won != NULL)
        *won = false;
    /* The fence is ONLY "fewer rows than ids" below. A server error that kx_db maps to
     * KX_ERR_CONFLICT (a deadlock or serialization failure, an integrity error, one of our
     * KXnnn rules) is not the fence: reported as such, the run was dropped as "no longer
     * ours" while its runner's lease kept it `running` until its wall time. It is reported as
     * KX_ERR_INTERNAL, so the run fails with the server's reason (run.c, run_db_failed). */
    if (res == NULL)
        return err != KX_OK && err != KX_ERR_CONFLICT ? err : KX_ERR_INTERNAL;
    if (won != NULL && PQntuples(res) > 0 && PQnfields(res) > 3)
        *won = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
    /* each id's row, found by its id (the two branches come back in no particular order) */
    size_t found = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        for (size_t k = 0; k < n; k++) {
            if (out[k].message_id[0] != '\0' || strcasecmp(id, rows[k].message_id) != 0)
                continue;
            copy_field(out[k].message_id, sizeof out[k].message_id, res, i, 0);
            copy_field(out[k].created_at, sizeof out[k].created_at, res, i, 1);
            copy_field(out[k].updated_at, sizeof out[k].updated_at, res, i, 2);
            found++;
            break;
        }
    }
    PQclear(res);
    if (found != n) {
        memset(out, 0, n * sizeof *out);
        if (won != NULL)
            *won = false;
        return KX_ERR_CONFLICT; /* fenced: the run is no longer ours */
    }
    return KX_OK;
}

/* The seven parameters of runner_insert_messages[_usage] (nine with the finish's status and
 * error: runner_insert_messages_finish); insert_params_free frees what it holds. */
typedef struct {
    char ep[24];
    char *arr[5];
    const char *params[9];
} insert_params;

/* KX_ERR_INVALID (no rows, or too many) or KX_ERR_NOMEM with nothing to free, else KX_OK. */
static kx_err insert_params_make(insert_params *p, const char *run_id, int64_t epoch,
                                 const store_new_row *rows, size_t n)
{
    if (n == 0 || n > STORE_INSERT_MAX_ROWS)
        return KX_ERR_INVALID;
    if (!insert_arrays(rows, n, p->arr))
        return KX_ERR_NOMEM;
    snprintf(p->ep, sizeof p->ep, "%" PRId64, epoch);
    const char *params[] = {run_id,    p->ep,     p->arr[0], p->arr[1], p->arr[2],
                            p->arr[3], p->arr[4], NULL,      NULL};
    memcpy(p->params, params, sizeof params);
    return KX_OK;
}

/* The insert statement for rows: with the usage update only when a row can carry usage. */
static const char *insert_statement(const store_new_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].type != NULL && strcmp(rows[i].type, "assistant_response_end") == 0)
            return "runner_insert_messages_usage";
    return "runner_insert_messages";
}

static void insert_params_free(insert_params *p)
{
    for (int k = 0; k < 5; k++)
        free(p->arr[k]);
}

kx_err store_insert_messages(kx_db *db, const char *run_id, int64_t epoch,
                             const store_new_row *rows, size_t n, store_row *out)
{
    insert_params p;
    kx_err err = insert_params_make(&p, run_id, epoch, rows, n);
    if (err != KX_OK)
        return err;
    PGresult *res = kx_db_exec_idem(db, insert_statement(rows, n), 7, p.params, &err);
    insert_params_free(&p);
    return insert_answer(res, err, rows, n, out, NULL);
}

kx_err store_insert_messages_send(kx_db *db, const char *run_id, int64_t epoch,
                                  const store_new_row *rows, size_t n)
{
    insert_params p;
    kx_err err = insert_params_make(&p, run_id, epoch, rows, n);
    if (err != KX_OK)
        return err;
    err = kx_db_pipe_send(db, insert_statement(rows, n), 7, p.params);
    insert_params_free(&p);
    return err;
}

kx_err store_insert_messages_recv(kx_db *db, const store_new_row *rows, size_t n, store_row *out)
{
    kx_err err = KX_OK;
    PGresult *res = kx_db_pipe_result(db, &err);
    return insert_answer(res, err, rows, n, out, NULL);
}

/* The nine parameters of runner_insert_messages_finish: the insert's, then status ($8) and
 * error ($9); as insert_params_make. */
static kx_err finish_params_make(insert_params *p, const char *run_id, int64_t epoch,
                                 const store_new_row *rows, size_t n, const char *status,
                                 const char *error)
{
    kx_err err = insert_params_make(p, run_id, epoch, rows, n);
    if (err == KX_OK) {
        p->params[7] = status;
        p->params[8] = error;
    }
    return err;
}

kx_err store_insert_finish(kx_db *db, const char *run_id, int64_t epoch, const store_new_row *rows,
                           size_t n, const char *status, const char *error, store_row *out,
                           bool *won)
{
    *won = false;
    insert_params p;
    kx_err err = finish_params_make(&p, run_id, epoch, rows, n, status, error);
    if (err != KX_OK)
        return err;
    PGresult *res = kx_db_exec_idem(db, "runner_insert_messages_finish", 9, p.params, &err);
    insert_params_free(&p);
    return insert_answer(res, err, rows, n, out, won);
}

kx_err store_insert_finish_send(kx_db *db, const char *run_id, int64_t epoch,
                                const store_new_row *rows, size_t n, const char *status,
                                const char *error)
{
    insert_params p;
    kx_err err = finish_params_make(&p, run_id, epoch, rows, n, status, error);
    if (err != KX_OK)
        return err;
    err = kx_db_pipe_send(db, "runner_insert_messages_finish", 9, p.params);
    insert_params_free(&p);
    return err;
}

kx_err store_insert_finish_recv(kx_db *db, const store_new_row *rows, size_t n, store_row *out,
                                bool *won)
{
    kx_err err = KX_OK;
    PGresult *res = kx_db_pipe_result(db, &err);
    return insert_answer(res, err, rows, n, out, won);
}

kx_err store_insert_message(kx_db *db, const char *run_id, int64_t epoch, const char *message_id,
                            const char *type, bool is_llm, const char *content_json,
                            const char *metadata_json, store_row *out)
{
    const store_new_row row = {message_id, type, is_llm, content_json, metadata_json};
    return store_insert_messages(db, run_id, epoch, &row, 1, out);
}

/* Reads the fenced finish's answer (res may be NULL: err says why). Its fence is its answer
 * (won false), never an error: a server error kx_db maps to KX_ERR_CONFLICT (a deadlock, a
 * serialization failure, an integrity error, a KXnnn rule) is reported as KX_ERR_INTERNAL, as
 * insert_answer does, so run_ops.c never takes it for the fence (the run would be dropped
 * while its runner's lease kept it `running`). */
static kx_err finish_answer(PGresult *res, kx_err err, bool *won)
{
    *won = false;
    if (res == NULL)
        return err != KX_OK && err != KX_ERR_CONFLICT ? err : KX_ERR_INTERNAL;
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

kx_err store_finish_answered_send(kx_db *db, const char *run_id, int64_t epoch)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%" PRId64, epoch);
    const char *params[] = {run_id, ep, "completed", NULL};
    return kx_db_pipe_send(db, "runner_finish_answered", 4, params);
}

kx_err store_finish_answered_recv(kx_db *db, bool *won, bool *ours)
{
    kx_err err = KX_OK;
    PGresult *res = kx_db_pipe_result(db, &err);
    *ours = res != NULL && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    return finish_answer(res, err, won);
}

/* The parameters of a hand-back or a release (the same for both): run id, epoch, reason. ep
 * is the caller's buffer that params[1] points into. */
static void let_go_params(const char *params[3], char ep[24], const char *run_id, int64_t epoch,
                          const char *why)
{
    snprintf(ep, 24, "%" PRId64, epoch);
    params[0] = run_id;
    params[1] = ep;
    params[2] = why;
}

/* The fenced update of the run row by the statement named stmt, pipelined. */
static kx_err send_let_go(kx_db *db, const char *stmt, const char *run_id, int64_t epoch,
                          const char *why)
{
    char ep[24];
    const char *params[3];
    let_go_params(params, ep, run_id, epoch, why);
    return kx_db_pipe_send(db, stmt, 3, params);
}

kx_err store_handback_run(kx_db *db, const char *run_id, int64_t epoch, const char *why)
{
    char ep[24];
    const char *params[3];
    let_go_params(params, ep, run_id, epoch, why);
    return kx_db_exec_cmd_idem(db, "runner_handback", 3, params, NULL);
}

kx_err store_handback_run_send(kx_db *db, const char *run_id, int64_t epoch, const char *why)
{
    return send_let_go(db, "runner_handback", run_id, epoch, why);
}

kx_err store_release_run_send(kx_db *db, const char *run_id, int64_t epoch, const char *why)
{
    return send_let_go(db, "runner_release_to_reaper", run_id, epoch, why);
}

kx_err store_let_go_recv(kx_db *db)
{
    kx_err err = kx_db_pipe_result_cmd(db, NULL);
    return err == KX_ERR_CONFLICT ? KX_ERR_INTERNAL : err; /* a server error, not a fence */
}

/* Reads the thread's rows from the answer (res may be NULL: err says why). */
static kx_err msgs_answer(PGresult *res, kx_err err, store_msg **msgs, size_t *n)
{
    *msgs = NULL;
    *n = 0;
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
        out[i].nth = strtoll(PQgetvalue(res, i, 3), NULL, 10);
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

kx_err store_load_llm_messages(kx_db *db, const char *thread_id, int64_t max_bytes,
                               store_msg **msgs, size_t *n)
{
    char bytes[24];
    snprintf(bytes, sizeof bytes, "%lld", (long long)max_bytes);
    const char *params[] = {thread_id, bytes};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "runner_llm_messages", 2, params, &err);
    return msgs_answer(res, err, msgs, n);
}

kx_err store_load_llm_messages_send(kx_db *db, const char *thread_id, int64_t max_bytes)
{
    char bytes[24];
    snprintf(bytes, sizeof bytes, "%lld", (long long)max_bytes);
    const char *params[] = {thread_id, bytes};
    return kx_db_pipe_send(db, "runner_llm_messages", 2, params);
}

kx_err store_load_llm_messages_recv(kx_db *db, store_msg **msgs, size_t *n)
{
    kx_err err = KX_OK;
    PGresult *res = kx_db_pipe_result(db, &err);
    return msgs_answer(res, err, msgs, n);
}

void store_msgs_free(store_msg *msgs, size_t n)
{
    if (msgs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(msgs[i].content);
    free(msgs);
}

/* Reads the agent's answer (res may be NULL: err says why). */
static kx_err agent_answer(PGresult *res, kx_err err, store_agent *out)
{
    memset(out, 0, sizeof *out);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    bool oom = PQntuples(res) == 1 && !agent_fields(res, 0, out);
    PQclear(res);
    return oom ? KX_ERR_NOMEM : KX_OK;
}

kx_err store_load_agent(kx_db *db, const char *run_id, store_agent *out)
{
    const char *params[] = {run_id};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "runner_agent", 1, params, &err);
    return agent_answer(res, err, out);
}

kx_err store_load_agent_send(kx_db *db, const char *run_id)
{
    const char *params[] = {run_id};
    return kx_db_pipe_send(db, "runner_agent", 1, params);
}

kx_err store_load_agent_recv(kx_db *db, store_agent *out)
{
    kx_err err = KX_OK;
    PGresult *res = kx_db_pipe_result(db, &err);
    return agent_answer(res, err, out);
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
