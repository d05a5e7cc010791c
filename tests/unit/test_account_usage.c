/* test_account_usage.c — an account's quota counters (migration 016, account_usage;
 * docs/performance.md "Account quotas: counters, not counts"), against a real PostgreSQL with
 * the migrations:
 *   - creating a run in an account with limits reads no row of agent_runs, however many runs
 *     the account has today (before 016 the check counted and summed them all: issue 12);
 *   - the counters equal the counts they replace: after an account_limits row is added to an
 *     account that has runs (recount), after runs are created and tokens added (an UPDATE of
 *     tokens_used, the usage trigger of a message row), and in GET billing's
 *     kx_account_status; deleting the row deletes them, adding it again recounts;
 *   - the quotas refuse at the limit as before (KX429, "used" from the counters), and a refused
 *     run adds nothing;
 *   - concurrency, on two connections: two creations racing for the last slot (the second
 *     waits for the first's creation lock and is refused); a limits row added while a creation
 *     or a usage change of the account is in flight waits for it and counts it;
 *   - only the runs of accounts with limits are counted (migration 017, usage_counted): a run of
 *     an account without limits calls no function when its usage changes; a limits row added
 *     marks the month's runs, and counts each usage change exactly once whether it committed
 *     before the marking, waited for it (on the run's row), or came after; a run created while
 *     the row is added is marked too; after the row is deleted a marked run adds nothing;
 *   - two transactions adding usage to runs of one account never deadlock on its counters
 *     (migration 018: a transaction adds to the shard of its backend, not of each run). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kx/log.h"
#include "kx/uuid.h"
#include "pgdb.h"
#include "pgdb_assert.h"

static kx_th_pgdb g_db;

typedef struct account {
    char id[KX_UUID_LEN + 1], project[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
} account;

static PGresult *q(const char *sql, int n, const char *const *params)
{
    return kx_th_sql_q(g_db.sql, sql, n, params);
}

static void exec(const char *sql, int n, const char *const *params)
{
    kx_th_sql_exec(g_db.sql, sql, n, params);
}

static long long int1(const char *sql, int n, const char *const *params)
{
    PGresult *r = q(sql, n, params);
    assert_int_equal(PQntuples(r), 1);
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static void new_account(account *a)
{
    kx_uuid_new(a->id);
    kx_uuid_new(a->project);
    kx_uuid_new(a->thread);
    const char *p[] = {a->id, a->project, a->thread};
    exec("WITH p AS (INSERT INTO projects (project_id, name, account_id) "
         "  VALUES ($2::uuid, 'p', $1::uuid)) "
         "INSERT INTO threads (thread_id, account_id, project_id) "
         "VALUES ($3::uuid, $1::uuid, $2::uuid)",
         3, p);
}

/* n completed runs of a, each with tokens tokens. */
static void add_runs(const account *a, int n, int tokens)
{
    char ns[16], ts[16];
    snprintf(ns, sizeof ns, "%d", n);
    snprintf(ts, sizeof ts, "%d", tokens);
    const char *p[] = {a->id, a->project, a->thread, ns, ts};
    exec("INSERT INTO agent_runs (thread_id, account_id, project_id, status, tokens_used) "
         "SELECT $3::uuid, $1::uuid, $2::uuid, 'completed', $5::bigint "
         "FROM generate_series(1, $4::int)",
         5, p);
}

/* Counters and counts of a agree (runs today, tokens this month), and kx_account_status
 * reports them; returns the run count. */
static long long check_counters(const account *a)
{
    const char *p[] = {a->id};
    long long runs = int1("SELECT count(*) FROM agent_runs WHERE account_id = $1::uuid "
                          "AND created_at >= kx_day_start(now())",
                          1, p);
    long long tokens = int1("SELECT coalesce(sum(tokens_used), 0) FROM agent_runs "
                            "WHERE account_id = $1::uuid AND created_at >= kx_month_start(now())",
                            1, p);
    assert_int_equal(int1("SELECT kx_usage_get($1::uuid, 'runs_day', kx_day_start(now()))", 1, p),
                     runs);
    assert_int_equal(int1("SELECT kx_usage_get($1::uuid, 'tokens_month', kx_month_start(now()))",
                          1, p),
                     tokens);
    assert_int_equal(int1("SELECT kx_account_status($1::uuid) #>> "
                          "'{limits,runs_per_day,used}'",
                          1, p),
                     runs);
    assert_int_equal(int1("SELECT kx_account_status($1::uuid) #>> "
                          "'{limits,tokens_per_month,used}'",
                          1, p),
                     tokens);
    return runs;
}

/* The calls of kx_count_run_tokens made by sql (run in a transaction of its own). */
static long long counting_calls(const char *sql, int n, const char *const *params)
{
    /* pg_stat_xact_user_functions shows this backend's counts not yet sent to the statistics,
     * which on PostgreSQL 15 may still hold calls of its earlier transactions (pending counts
     * are flushed at most once a second): the statement's calls are the difference. */
    static const char *CALLS = "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
                               "WHERE funcname = 'kx_count_run_tokens'";
    exec("BEGIN", 0, NULL);
    exec("SET LOCAL track_functions = 'pl'", 0, NULL);
    long long before = int1(CALLS, 0, NULL);
    exec(sql, n, params);
    long long calls = int1(CALLS, 0, NULL) - before;
    exec("COMMIT", 0, NULL);
    return calls;
}

/* The answer of the statement kx_th_sql_send_blocked sent: its SQLSTATE, "" when it succeeded. */
static char *finish_sent(PGconn *c)
{
    char *state = NULL;
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        if (state == NULL)
            state = strdup(PQresultStatus(r) == PGRES_FATAL_ERROR
                               ? PQresultErrorField(r, PG_DIAG_SQLSTATE)
                               : "");
        PQclear(r);
    }
    assert_non_null(state);
    return state;
}

static int setup(void **state)
{
    (void)state;
    kx_log_init("test_account_usage", "test");
    return kx_th_pgdb_start("kx-account-usage", &g_db) == KX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kx_th_pgdb_stop(&g_db);
    return 0;
}

static void test_check_reads_no_runs(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    const char *p[] = {a.id};
    exec("INSERT INTO account_limits (account_id, runs_per_day, tokens_per_month) "
         "VALUES ($1::uuid, 1000000, 1000000000)",
         1, p);
    add_runs(&a, 500, 7);
    /* this transaction's scans of agent_runs and rows read, around one more run */
    exec("BEGIN", 0, NULL);
    const char *reads = "SELECT seq_scan + seq_tup_read + coalesce(idx_scan, 0) + "
                        "coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
                        "WHERE relname = 'agent_runs'";
    long long before = int1(reads, 0, NULL);
    add_runs(&a, 1, 7);
    long long after = int1(reads, 0, NULL);
    exec("COMMIT", 0, NULL);
    assert_int_equal(after - before, 0); /* before 016: two scans, > 500 rows (the sum) */
    assert_int_equal(check_counters(&a), 501);
}

static void test_counters_equal_counts(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    const char *p[] = {a.id};
    add_runs(&a, 40, 11); /* before the limits: no counters */
    assert_int_equal(int1("SELECT count(*) FROM account_usage WHERE account_id = $1::uuid", 1, p),
                     0);
    exec("INSERT INTO account_limits (account_id, runs_per_day, tokens_per_month) "
         "VALUES ($1::uuid, 1000, 1000000)",
         1, p);
    assert_int_equal(check_counters(&a), 40); /* recounted */
    add_runs(&a, 10, 3);
    exec("UPDATE agent_runs SET tokens_used = tokens_used + 5 WHERE account_id = $1::uuid", 1, p);
    assert_int_equal(check_counters(&a), 50);
    /* the usage trigger of a turn's row (another writer than the runner) */
    exec("INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, "
         "agent_run_id) SELECT thread_id, account_id, 'assistant_response_end', false, "
         "'{\"usage\": {\"total_tokens\": 123}}', id FROM agent_runs "
         "WHERE account_id = $1::uuid LIMIT 1",
         1, p);
    check_counters(&a);
    /* an UPDATE that leaves tokens_used alone adds nothing */
    exec("UPDATE agent_runs SET error = 'x' WHERE account_id = $1::uuid", 1, p);
    check_counters(&a);
    exec("DELETE FROM account_limits WHERE account_id = $1::uuid", 1, p);
    assert_int_equal(int1("SELECT count(*) FROM account_usage WHERE account_id = $1::uuid", 1, p),
                     0);
    add_runs(&a, 5, 2); /* not counted while unlimited, and counted at the next recount */
    exec("INSERT INTO account_limits (account_id, runs_per_day) VALUES ($1::uuid, 1000)", 1, p);
    assert_int_equal(check_counters(&a), 55);
}

static void test_quota_refuses_at_limit(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    const char *p[] = {a.id, a.project, a.thread};
    add_runs(&a, 2, 0);
    exec("INSERT INTO account_limits (account_id, runs_per_day, tokens_per_month) "
         "VALUES ($1::uuid, 3, 100)",
         1, p);
    add_runs(&a, 1, 0); /* the third of 3 */
    const char *ins = "INSERT INTO agent_runs (thread_id, account_id, project_id, status) "
                      "VALUES ($3::uuid, $1::uuid, $2::uuid, 'completed')";
    PGresult *r = PQexecParams(g_db.sql, ins, 3, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "KX429");
    assert_non_null(strstr(PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL), "\"used\" : 3"));
    PQclear(r);
    assert_int_equal(check_counters(&a), 3); /* the refused run added nothing */
    /* tokens: the day's quota raised, the month's reached */
    exec("UPDATE account_limits SET runs_per_day = NULL WHERE account_id = $1::uuid", 1, p);
    exec("UPDATE agent_runs SET tokens_used = 100 WHERE id = (SELECT id FROM agent_runs "
         "WHERE account_id = $1::uuid LIMIT 1)",
         1, p);
    r = PQexecParams(g_db.sql, ins, 3, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "KX429");
    assert_non_null(strstr(PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL), "tokens_per_month"));
    PQclear(r);
    check_counters(&a);
}

/* Two creations of one account at once, one slot left: the second waits for the first's
 * creation lock and then reads the counter the first committed (refused). */
static void test_concurrent_creations_take_one_slot(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    const char *p[] = {a.id, a.project, a.thread};
    add_runs(&a, 1, 0);
    exec("INSERT INTO account_limits (account_id, runs_per_day) VALUES ($1::uuid, 2)", 1, p);
    const char *ins = "INSERT INTO agent_runs (thread_id, account_id, project_id, status) "
                      "VALUES ($3::uuid, $1::uuid, $2::uuid, 'completed')";
    PGconn *b = kx_th_sql_connect(g_db.pg.url);
    exec("BEGIN", 0, NULL);
    exec(ins, 3, p);
    kx_th_sql_send_blocked(b, ins, 3, p);
    exec("COMMIT", 0, NULL);
    char *got = finish_sent(b);
    assert_string_equal(got, "KX429");
    free(got);
    PQfinish(b);
    assert_int_equal(check_counters(&a), 2);
}

/* An account's limits row added while one of its runs is being created without limits: the
 * recount waits for that creation and counts it (else the counter would miss it all day). */
static void test_limits_added_during_a_creation(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    const char *p[] = {a.id};
    add_runs(&a, 3, 4);
    PGconn *b = kx_th_sql_connect(g_db.pg.url);
    exec("BEGIN", 0, NULL);
    add_runs(&a, 2, 4); /* no limits row yet: nothing counted */
    kx_th_sql_send_blocked(
        b, "INSERT INTO account_limits (account_id, runs_per_day) VALUES ($1::uuid, 100)", 1, p);
    exec("COMMIT", 0, NULL);
    char *got = finish_sent(b);
    assert_string_equal(got, "");
    free(got);
    PQfinish(b);
    assert_int_equal(check_counters(&a), 5);
    /* and a usage change in flight likewise */
    exec("DELETE FROM account_limits WHERE account_id = $1::uuid", 1, p);
    b = kx_th_sql_connect(g_db.pg.url);
    exec("BEGIN", 0, NULL);
    exec("UPDATE agent_runs SET tokens_used = tokens_used + 10 WHERE account_id = $1::uuid", 1, p);
    kx_th_sql_send_blocked(b,
                           "INSERT INTO account_limits (account_id, tokens_per_month) "
                           "VALUES ($1::uuid, 100000)",
                           1, p);
    exec("COMMIT", 0, NULL);
    got = finish_sent(b);
    assert_string_equal(got, "");
    free(got);
    PQfinish(b);
    check_counters(&a);
    assert_int_equal(int1("SELECT kx_usage_get($1::uuid, 'tokens_month', kx_month_start(now()))",
                          1, p),
                     5 * 14);
}

/* A run of an account without limits is not counted: its usage changes call no function (the
 * trigger's WHEN); a run of an account with limits is, one call per change. */
static void test_unlimited_runs_call_no_function(void **state)
{
    (void)state;
    account a, b;
    new_account(&a);
    new_account(&b);
    const char *pa[] = {a.id}, *pb[] = {b.id};
    exec("INSERT INTO account_limits (account_id, tokens_per_month) VALUES ($1::uuid, 1000000)", 1,
         pb);
    add_runs(&a, 1, 0);
    add_runs(&b, 1, 0);
    static const char usage[] = "UPDATE agent_runs SET tokens_used = tokens_used + 9 "
                                "WHERE account_id = $1::uuid";
    assert_int_equal(counting_calls(usage, 1, pa), 0);
    assert_int_equal(int1("SELECT count(*) FROM agent_runs WHERE account_id = $1::uuid "
                          "AND usage_counted",
                          1, pa),
                     0);
    assert_int_equal(counting_calls(usage, 1, pb), 1);
    check_counters(&b);
    assert_int_equal(int1("SELECT kx_usage_get($1::uuid, 'tokens_month', kx_month_start(now()))",
                          1, pb),
                     9);
    /* limits deleted: the run stays marked, its changes add nothing (no counters) */
    exec("DELETE FROM account_limits WHERE account_id = $1::uuid", 1, pb);
    exec(usage, 1, pb);
    assert_int_equal(int1("SELECT count(*) FROM account_usage WHERE account_id = $1::uuid", 1, pb),
                     0);
}

/* A limits row added while the account's runs are in flight: a usage change that waits for the
 * operator (on the row of a run it marked) is added by the trigger after the operator's count;
 * runs created while the operator waits for them are marked by its second pass, and their
 * later changes counted. Each change exactly once. */
static void test_limits_added_while_runs_in_flight(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    const char *p[] = {a.id};
    add_runs(&a, 4, 5);
    /* the operator's transaction has marked the runs; usage changes wait for its commit */
    PGconn *b = kx_th_sql_connect(g_db.pg.url);
    exec("BEGIN", 0, NULL);
    exec("INSERT INTO account_limits (account_id, tokens_per_month) VALUES ($1::uuid, 100000)", 1,
         p);
    assert_int_equal(int1("SELECT count(*) FROM agent_runs WHERE account_id = $1::uuid "
                          "AND NOT usage_counted",
                          1, p),
                     0);
    kx_th_sql_send_blocked(b,
                           "UPDATE agent_runs SET tokens_used = tokens_used + 100 "
                           "WHERE account_id = $1::uuid",
                           1, p);
    exec("COMMIT", 0, NULL);
    char *got = finish_sent(b);
    assert_string_equal(got, "");
    free(got);
    check_counters(&a);
    assert_int_equal(int1("SELECT kx_usage_get($1::uuid, 'tokens_month', kx_month_start(now()))",
                          1, p),
                     4 * 105);
    /* runs created (without limits) while the row is added: the operator waits for them,
     * marks them and counts them; their usage after it counts once more */
    exec("DELETE FROM account_limits WHERE account_id = $1::uuid", 1, p);
    exec("BEGIN", 0, NULL);
    add_runs(&a, 2, 1);
    kx_th_sql_send_blocked(b,
                           "INSERT INTO account_limits (account_id, tokens_per_month) "
                           "VALUES ($1::uuid, 100000)",
                           1, p);
    exec("COMMIT", 0, NULL);
    got = finish_sent(b);
    assert_string_equal(got, "");
    free(got);
    PQfinish(b);
    assert_int_equal(int1("SELECT count(*) FROM agent_runs WHERE account_id = $1::uuid "
                          "AND NOT usage_counted",
                          1, p),
                     0);
    exec("UPDATE agent_runs SET tokens_used = tokens_used + 1 WHERE account_id = $1::uuid", 1, p);
    assert_int_equal(check_counters(&a), 6);
    assert_int_equal(int1("SELECT kx_usage_get($1::uuid, 'tokens_month', kx_month_start(now()))",
                          1, p),
                     4 * 106 + 2 * 2);
}

/* The first error's SQLSTATE among the answers of what was sent on c ("" when none failed). */
static char *first_error(PGconn *c)
{
    char *state = strdup("");
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        if (state[0] == '\0' && PQresultStatus(r) == PGRES_FATAL_ERROR) {
            free(state);
            state = strdup(PQresultErrorField(r, PG_DIAG_SQLSTATE));
        }
        PQclear(r);
    }
    assert_non_null(state);
    return state;
}

/* Two transactions that each add usage to two counted runs of one account (the runner's group
 * transactions do, for the runs of a busy account on its connections) never deadlock on the
 * account's token counters (migration 018: a transaction adds to its backend's shard). With
 * the shard chosen by the run (016, 017), A held shard p and waited for q while B held q and
 * waited for p: "deadlock detected", a rolled-back group, and 2 000 runs of an account with
 * limits at a quarter of the runs per second (bench_run --limited). */
static void test_two_writers_never_deadlock_on_counters(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    const char *p[] = {a.id};
    exec("INSERT INTO account_limits (account_id, tokens_per_month) "
         "VALUES ($1::uuid, 1000000000)",
         1, p);
    add_runs(&a, 64, 0);
    /* two runs in each of two shards of the run hash: A takes x1 (shard sp) then x2 (sq), B
     * takes y1 (sq) then y2 (sp) */
    PGresult *r = q("SELECT id::text, hashtext(id::text) & 7 FROM agent_runs "
                    "WHERE account_id = $1::uuid ORDER BY 2, 1",
                    1, p);
    int n = PQntuples(r), found = 0;
    char x1[KX_UUID_LEN + 1] = "", y2[KX_UUID_LEN + 1] = "", x2[KX_UUID_LEN + 1] = "",
                          y1[KX_UUID_LEN + 1] = "";
    for (int i = 0; i + 1 < n && found < 2; i++) {
        if (strcmp(PQgetvalue(r, i, 1), PQgetvalue(r, i + 1, 1)) != 0)
            continue;
        snprintf(found == 0 ? x1 : x2, KX_UUID_LEN + 1, "%s", PQgetvalue(r, i, 0));
        snprintf(found == 0 ? y2 : y1, KX_UUID_LEN + 1, "%s", PQgetvalue(r, i + 1, 0));
        found++;
        while (i + 1 < n && strcmp(PQgetvalue(r, i, 1), PQgetvalue(r, i + 1, 1)) == 0)
            i++; /* the next shard */
    }
    PQclear(r);
    assert_int_equal(found, 2); /* 64 runs over 8 shards */
    char sa[600], sb[600];
    const char *fmt =
        "BEGIN; UPDATE agent_runs SET tokens_used = tokens_used + 1 WHERE id = '%s'; "
        "SELECT pg_sleep(0.5); "
        "UPDATE agent_runs SET tokens_used = tokens_used + 1 WHERE id = '%s'; COMMIT";
    snprintf(sa, sizeof sa, fmt, x1, x2);
    snprintf(sb, sizeof sb, fmt, y1, y2);
    PGconn *ca = kx_th_sql_connect(g_db.pg.url), *cb = kx_th_sql_connect(g_db.pg.url);
    assert_int_equal(PQsendQuery(ca, sa), 1);
    assert_int_equal(PQsendQuery(cb, sb), 1);
    char *ea = first_error(ca), *eb = first_error(cb);
    if (ea[0] != '\0' || eb[0] != '\0')
        fail_msg("A: '%s', B: '%s' (40P01: deadlock detected)", ea, eb);
    free(ea);
    free(eb);
    PQfinish(ca);
    PQfinish(cb);
    check_counters(&a);
    assert_int_equal(int1("SELECT kx_usage_get($1::uuid, 'tokens_month', kx_month_start(now()))",
                          1, p),
                     4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_reads_no_runs),
        cmocka_unit_test(test_counters_equal_counts),
        cmocka_unit_test(test_quota_refuses_at_limit),
        cmocka_unit_test(test_concurrent_creations_take_one_slot),
        cmocka_unit_test(test_limits_added_during_a_creation),
        cmocka_unit_test(test_unlimited_runs_call_no_function),
        cmocka_unit_test(test_limits_added_while_runs_in_flight),
        cmocka_unit_test(test_two_writers_never_deadlock_on_counters),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
