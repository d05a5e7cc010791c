/* test_runner_usage_hot.c — a run's token usage (agent_runs.tokens_used) as the runner's
 * fenced insert counts it, and the updates of a run that change no indexed column stay HOT
 * (heap-only: no index entry written; migrations 012 and 015, docs/performance.md "Per-row
 * write cost of a run" and "Message writes: usage in the insert"), against a real PostgreSQL
 * with the migrations:
 *   - the usage UPDATE of the runner's own fenced insert of an assistant_response_end message
 *     (services/agent-runner/store.c) is one HOT update, and it adds the turn's usage to
 *     tokens_used and moves updated_at;
 *   - a batch adds the usage of all its rows in one update (migration 015; before it, the
 *     trigger made one per row), a batch without usage makes none, a retried batch and a
 *     fenced one add nothing, and the trigger still counts every other writer's rows, also in
 *     the transaction of a runner's insert;
 *   - the scheduler's dispatch_seq update is HOT;
 *   - the runner's usage update, claim and finish call no PL/pgSQL
 *     for a run of an account without limits (migration 017: they set updated_at themselves,
 *     so the touch trigger is skipped; the run is not counted, so the token counting trigger
 *     is), while an UPDATE that leaves updated_at alone still gets it touched;
 *   - no index of agent_runs names a column those updates write (tokens_used, dispatch_seq,
 *     updated_at, heartbeat_at) in its key, expressions or predicate, and agent_runs keeps
 *     room on its pages for the new versions (fillfactor).
 * The HOT counts are this connection's own (pg_stat_xact_user_tables, before and after the
 * statement in one transaction), so nothing else running on the server moves them. Before migration 012 every update of a run was non-HOT: the touch
 * trigger writes updated_at, which two indexes had as a key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kx/db.h"
#include "kx/log.h"
#include "kx/uuid.h"
#include "pgdb.h"
#include "pgdb_assert.h"
#include "pgplans.h"
#include "store.h"

static kx_th_pgdb g_db; /* its sql: direct, for setup and assertions */

static PGresult *q(const char *sql, int n, const char *const *params)
{
    return kx_th_sql_q(g_db.sql, sql, n, params);
}

static void exec(const char *sql, int n, const char *const *params)
{
    kx_th_sql_exec(g_db.sql, sql, n, params);
}

/* The first value of a one-row answer, malloc'd. */
static char *value1(const char *sql, int n, const char *const *params)
{
    PGresult *r = q(sql, n, params);
    if (PQntuples(r) != 1)
        fail_msg("expected one row from %s, got %d", sql, PQntuples(r));
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    assert_non_null(v);
    return v;
}

/* The updates and HOT updates of agent_runs this backend counted and has not reported yet
 * (pg_stat_xact_user_tables: the current transaction's, and possibly some of the previous
 * ones', so callers take a difference within one transaction). */
static void xact_updates(long *upd, long *hot)
{
    PGresult *r = q("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                    "WHERE relname = 'agent_runs'",
                    0, NULL);
    assert_int_equal(PQntuples(r), 1);
    *upd = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    *hot = strtol(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
}

/* The calls of PL/pgSQL function fn made in this transaction (SET LOCAL track_functions =
 * 'pl' first; pg_stat_xact_user_functions counts the transaction's calls). */
static long plpgsql_calls(const char *fn)
{
    const char *p[] = {fn};
    char *v = value1("SELECT coalesce(sum(calls), 0)::text FROM pg_stat_xact_user_functions "
                     "WHERE funcname = $1",
                     1, p);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

/* A running run (epoch 1) on a thread of its own; its id into run. */
static void new_running_run(char run[KX_UUID_LEN + 1])
{
    char account[KX_UUID_LEN + 1], project[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    kx_uuid_new(project);
    kx_uuid_new(thread);
    kx_uuid_new(run);
    const char *p[] = {account, project, thread, run};
    exec("WITH p AS (INSERT INTO projects (project_id, name, account_id) "
         "  VALUES ($2::uuid, 'p', $1::uuid)), "
         "t AS (INSERT INTO threads (thread_id, account_id, project_id) "
         "  VALUES ($3::uuid, $1::uuid, $2::uuid) RETURNING thread_id) "
         "INSERT INTO agent_runs (id, thread_id, account_id, project_id, status, lease_epoch, "
         "  lease_owner, metadata) SELECT $4::uuid, thread_id, $1::uuid, $2::uuid, 'running', 1, "
         "  'r1', '{\"model_name\": \"demo\", \"enable_thinking\": false}' FROM t",
         4, p);
}

/* agent_runs.tokens_used of run. */
static long long tokens_of(const char *run)
{
    const char *rp[] = {run};
    char *v = value1("SELECT tokens_used::text FROM agent_runs WHERE id = $1::uuid", 1, rp);
    long long n = strtoll(v, NULL, 10);
    free(v);
    return n;
}

static int setup(void **state)
{
    (void)state;
    kx_log_init("test_runner_usage_hot", "test");
    if (kx_th_pgdb_start("kx-usage-hot", &g_db) != KX_OK)
        return -1;
    PGresult *r =
        PQprepare(g_db.sql, "ins",
                  kx_th_stmt_sql(store_statements(), "runner_insert_messages_usage"), 0, NULL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kx_th_pgdb_stop(&g_db);
    return 0;
}

static void test_usage_update_is_hot(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1], mid[KX_UUID_LEN + 1];
    new_running_run(run);
    kx_uuid_new(mid);
    const char *rp[] = {run};
    char *before = value1("SELECT updated_at::text FROM agent_runs WHERE id = $1::uuid", 1, rp);

    exec("BEGIN", 0, NULL);
    exec("SET LOCAL track_functions = 'pl'", 0, NULL);
    long upd0, hot0, upd1, hot1;
    xact_updates(&upd0, &hot0);
    /* the runner's arrays of one row: its usage as a jsonb[] element */
    static const char usage[] = "{\"{\\\"usage\\\": {\\\"prompt_tokens\\\": 30, "
                                "\\\"completion_tokens\\\": 12, \\\"total_tokens\\\": 42}}\"}";
    char ids[KX_UUID_LEN + 3];
    snprintf(ids, sizeof ids, "{%s}", mid);
    const char *ip[] = {run, "1", ids, "{assistant_response_end}", "{f}", usage, "{\"{}\"}"};
    PGresult *r = PQexecPrepared(g_db.sql, "ins", 7, ip, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("the runner's insert failed: %s", PQerrorMessage(g_db.sql));
    PQclear(r);
    xact_updates(&upd1, &hot1);
    if (upd1 - upd0 != 1 || hot1 - hot0 != 1)
        fail_msg(
            "the runner's usage update made %ld update(s) of agent_runs, %ld of them HOT, not 1 "
            "HOT: an index names a column it writes, or the page had no room",
            upd1 - upd0, hot1 - hot0);
    /* the statement sets updated_at (no touch trigger), the account has no limits (no
     * counting trigger) */
    assert_int_equal(plpgsql_calls("kx_touch_updated_at"), 0);
    assert_int_equal(plpgsql_calls("kx_count_run_tokens"), 0);
    exec("COMMIT", 0, NULL);

    /* the usage is counted, and updated_at still moves with it */
    char *after = value1("SELECT tokens_used || '|' || (updated_at > $2::timestamptz) "
                         "FROM agent_runs WHERE id = $1::uuid",
                         2, (const char *const[]){run, before});
    assert_string_equal(after, "42|true");
    free(after);
    free(before);
}

/* Rows of one multi-row statement (store_insert_messages): each turn's usage counts once, all
 * of them in one HOT update of the run (migration 015: the trigger made one update per row). */
static void test_usage_of_rows_in_one_statement(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1], a[KX_UUID_LEN + 1], b[KX_UUID_LEN + 1], c[KX_UUID_LEN + 1];
    new_running_run(run);
    kx_uuid_new(a);
    kx_uuid_new(b);
    kx_uuid_new(c);
    char ids[3 * (KX_UUID_LEN + 1) + 4];
    snprintf(ids, sizeof ids, "{%s,%s,%s}", a, b, c);
    static const char contents[] = "{\"{\\\"usage\\\": {\\\"total_tokens\\\": 5}}\","
                                   "\"{\\\"role\\\": \\\"assistant\\\"}\","
                                   "\"{\\\"usage\\\": {\\\"total_tokens\\\": 7}}\"}";
    const char *ip[] = {run,
                        "1",
                        ids,
                        "{assistant_response_end,assistant,assistant_response_end}",
                        "{f,t,f}",
                        contents,
                        "{\"{}\",\"{}\",\"{}\"}"};
    exec("BEGIN", 0, NULL);
    long upd0, hot0, upd1, hot1;
    xact_updates(&upd0, &hot0);
    PGresult *r = PQexecPrepared(g_db.sql, "ins", 7, ip, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 3)
        fail_msg("the runner's insert failed: %s", PQerrorMessage(g_db.sql));
    PQclear(r);
    xact_updates(&upd1, &hot1);
    if (upd1 - upd0 != 1 || hot1 - hot0 != 1)
        fail_msg("a batch of two turns made %ld update(s) of its run (%ld HOT), not 1 HOT",
                 upd1 - upd0, hot1 - hot0);
    exec("COMMIT", 0, NULL);
    assert_int_equal(tokens_of(run), 12);

    /* the same batch again (a retry after a lost answer): its rows back, nothing counted */
    exec("BEGIN", 0, NULL);
    xact_updates(&upd0, &hot0);
    r = PQexecPrepared(g_db.sql, "ins", 7, ip, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 3)
        fail_msg("the retried insert did not return the batch's rows: %s",
                 PQerrorMessage(g_db.sql));
    PQclear(r);
    xact_updates(&upd1, &hot1);
    assert_int_equal(upd1 - upd0, 0);
    exec("COMMIT", 0, NULL);
    assert_int_equal(tokens_of(run), 12);
}

/* Runs the runner's insert of one row (type, content as a jsonb[] literal) for run at epoch;
 * the number of rows it returned. */
static int insert_one(const char *run, const char *epoch, const char *type,
                      const char *content_array)
{
    char mid[KX_UUID_LEN + 1], ids[KX_UUID_LEN + 3], types[64];
    kx_uuid_new(mid);
    snprintf(ids, sizeof ids, "{%s}", mid);
    snprintf(types, sizeof types, "{%s}", type);
    const char *ip[] = {run, epoch, ids, types, "{f}", content_array, "{\"{}\"}"};
    PGresult *r = PQexecPrepared(g_db.sql, "ins", 7, ip, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("the runner's insert failed: %s", PQerrorMessage(g_db.sql));
    int n = PQntuples(r);
    PQclear(r);
    return n;
}

/* A batch without usage does not touch its run; a fenced batch (a stale epoch) inserts and
 * counts nothing; usage of a type other than assistant_response_end does not count. */
static void test_usage_only_of_inserted_turns(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1];
    new_running_run(run);
    static const char usage9[] = "{\"{\\\"usage\\\": {\\\"total_tokens\\\": 9}}\"}";
    exec("BEGIN", 0, NULL);
    long upd0, hot0, upd1, hot1;
    xact_updates(&upd0, &hot0);
    assert_int_equal(insert_one(run, "1", "status", "{\"{}\"}"), 1);
    assert_int_equal(insert_one(run, "1", "assistant", usage9), 1);
    xact_updates(&upd1, &hot1);
    assert_int_equal(upd1 - upd0, 0);
    assert_int_equal(insert_one(run, "2", "assistant_response_end", usage9), 0);
    exec("COMMIT", 0, NULL);
    assert_int_equal(tokens_of(run), 0);
    assert_int_equal(insert_one(run, "1", "assistant_response_end", usage9), 1);
    assert_int_equal(tokens_of(run), 9);
}

/* Another writer's assistant_response_end row is still counted by the trigger (migration
 * 005), also in the transaction of a runner's insert, which marks only its own rows counted;
 * the trigger's rule is the runner's (not a number: 0; clamped to 10^12). */
static void test_trigger_counts_other_writers(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1];
    new_running_run(run);
    static const char plain[] =
        "INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, "
        "agent_run_id) SELECT thread_id, account_id, 'assistant_response_end', false, "
        "$2::jsonb, id FROM agent_runs WHERE id = $1::uuid";
    static const char usage5[] = "{\"{\\\"usage\\\": {\\\"total_tokens\\\": 5}}\"}";
    exec(plain, 2, (const char *const[]){run, "{\"usage\": {\"total_tokens\": 1000}}"});
    assert_int_equal(tokens_of(run), 1000);
    exec("BEGIN", 0, NULL);
    assert_int_equal(insert_one(run, "1", "assistant_response_end", usage5), 1);
    exec(plain, 2, (const char *const[]){run, "{\"usage\": {\"total_tokens\": 300}}"});
    exec(plain, 2, (const char *const[]){run, "{\"usage\": {\"total_tokens\": \"7\"}}"});
    exec("COMMIT", 0, NULL);
    assert_int_equal(tokens_of(run), 1305);
    exec(plain, 2, (const char *const[]){run, "{\"usage\": {\"total_tokens\": 1e15}}"});
    assert_int_equal(tokens_of(run), 1000000001305LL);
}

static void test_dispatch_seq_update_is_hot(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1];
    new_running_run(run);
    const char *rp[] = {run};
    exec("UPDATE agent_runs SET status = 'queued', dispatched_at = now() WHERE id = $1::uuid", 1,
         rp);
    exec("BEGIN", 0, NULL);
    long upd0, hot0, upd1, hot1;
    xact_updates(&upd0, &hot0);
    /* the scheduler's sched_set_dispatch_seq (services/scheduler/store.c) */
    exec("UPDATE agent_runs SET dispatch_seq = 7 "
         "WHERE id = $1::uuid AND status IS NOT DISTINCT FROM 'queued'",
         1, rp);
    xact_updates(&upd1, &hot1);
    assert_int_equal(upd1 - upd0, 1);
    assert_int_equal(hot1 - hot0, 1);
    exec("COMMIT", 0, NULL);
}

/* The runner's claim and finish call no PL/pgSQL (migration 017), and updated_at moves with
 * each; an UPDATE that does not set updated_at still gets it touched by the trigger (the
 * scheduler's statements: unit_scheduler_admit_sql). */
static void test_hot_updates_call_no_plpgsql(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1], claim[KX_UUID_LEN + 1];
    new_running_run(run);
    kx_uuid_new(claim);
    const char *rp[] = {run};
    exec("UPDATE agent_runs SET status = 'queued', lease_epoch = 0, lease_owner = NULL "
         "WHERE id = $1::uuid",
         1, rp);
    static const char moved[] = "SELECT (updated_at > $2::timestamptz)::text FROM agent_runs "
                                "WHERE id = $1::uuid";
    const struct {
        const char *name;
        int n;
        const char *params[4];
    } steps[] = {
        {"runner_claim", 4, {run, "r1", "60000", claim}},
        {"runner_finish", 4, {run, "1", "completed", NULL}},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char *before =
            value1("SELECT updated_at::text FROM agent_runs WHERE id = $1::uuid", 1, rp);
        exec("BEGIN", 0, NULL);
        exec("SET LOCAL track_functions = 'pl'", 0, NULL);
        PGresult *r = PQexecParams(g_db.sql, kx_th_stmt_sql(store_statements(), steps[i].name),
                                   steps[i].n, NULL, steps[i].params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
            fail_msg("%s failed: %s", steps[i].name, PQerrorMessage(g_db.sql));
        PQclear(r);
        if (plpgsql_calls("kx_touch_updated_at") != 0)
            fail_msg("%s called the touch trigger's function: it does not set updated_at",
                     steps[i].name);
        exec("COMMIT", 0, NULL);
        char *m = value1(moved, 2, (const char *const[]){run, before});
        assert_string_equal(m, "true");
        free(m);
        free(before);
    }
    char *st = value1("SELECT status FROM agent_runs WHERE id = $1::uuid", 1, rp);
    assert_string_equal(st, "completed"); /* every step did what it does */
    free(st);
    /* any other writer: the trigger touches updated_at */
    char *before = value1("SELECT updated_at::text FROM agent_runs WHERE id = $1::uuid", 1, rp);
    exec("BEGIN", 0, NULL);
    exec("SET LOCAL track_functions = 'pl'", 0, NULL);
    exec("UPDATE agent_runs SET error = 'x' WHERE id = $1::uuid", 1, rp);
    assert_int_equal(plpgsql_calls("kx_touch_updated_at"), 1);
    exec("COMMIT", 0, NULL);
    char *m = value1(moved, 2, (const char *const[]){run, before});
    assert_string_equal(m, "true");
    free(m);
    free(before);
}

/* The property behind both, on the schema: the columns those updates write are in no index. */
static void test_no_index_names_the_hot_columns(void **state)
{
    (void)state;
    char *bad = value1("SELECT coalesce(string_agg(indexrelid::regclass::text, ', '), '') "
                       "FROM pg_index WHERE indrelid = 'agent_runs'::regclass AND "
                       "pg_get_indexdef(indexrelid) ~ "
                       "'\\m(tokens_used|dispatch_seq|updated_at|heartbeat_at)\\M'",
                       0, NULL);
    if (bad[0] != '\0')
        fail_msg("these indexes of agent_runs name a column of the HOT updates: %s", bad);
    free(bad);
    char *opts = value1("SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class "
                        "WHERE oid = 'agent_runs'::regclass",
                        0, NULL);
    assert_string_equal(opts, "fillfactor=70");
    free(opts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_update_is_hot),
        cmocka_unit_test(test_usage_of_rows_in_one_statement),
        cmocka_unit_test(test_usage_only_of_inserted_turns),
        cmocka_unit_test(test_trigger_counts_other_writers),
        cmocka_unit_test(test_dispatch_seq_update_is_hot),
        cmocka_unit_test(test_hot_updates_call_no_plpgsql),
        cmocka_unit_test(test_no_index_names_the_hot_columns),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
