/* test_runner_store.c — the agent-runner's fenced, idempotent writes (services/agent-runner/
 * store.c) against a real PostgreSQL, with the exact SQL the runner prepares:
 *   - the message fence locks what it checks: an insert racing a reap either commits before
 *     the reap or inserts nothing — no row ever lands after the reap committed;
 *   - Postgres' answer lost after a write committed (a cutting TCP proxy, tests/harness/
 *     pgproxy.h): the retried claim recognises its own success (running, epoch 1, attempt 1),
 *     the retried message insert writes one row, the retried finish reports the win;
 *   - a write kx_db cannot know to be idempotent is not blindly run again. */
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
#include <unistd.h>

#include "harness.h"
#include "kx/db.h"
#include "kx/log.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "pgdb.h"
#include "pgplans.h"
#include "pgproxy.h"
#include "store.h"

static kx_th_pgdb g_db; /* its sql: direct, for setup and assertions */
static kx_th_pgproxy *g_proxy;

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("SQL failed: %s: %s", sql, PQerrorMessage(c));
    return r;
}

static long count1(const char *sql, const char *param)
{
    const char *params[] = {param};
    PGresult *r = q(g_db.sql, sql, param ? 1 : 0, params);
    long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static char *value1(const char *sql, const char *param)
{
    const char *params[] = {param};
    PGresult *r = q(g_db.sql, sql, 1, params);
    char *v = strdup(PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return v;
}

/* A thread (and project) with one queued run; ids into thread/run. */
static void new_run(char thread[KX_UUID_LEN + 1], char run[KX_UUID_LEN + 1])
{
    char account[KX_UUID_LEN + 1], project[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    kx_uuid_new(project);
    kx_uuid_new(thread);
    kx_uuid_new(run);
    const char *p[] = {account, project, thread, run};
    PQclear(q(g_db.sql,
              "INSERT INTO projects (project_id, name, account_id) "
              "VALUES ($2::uuid, 'p', $1::uuid)",
              2, p));
    const char *t[] = {account, project, thread};
    PQclear(q(g_db.sql,
              "INSERT INTO threads (thread_id, account_id, project_id) "
              "VALUES ($3::uuid, $1::uuid, $2::uuid)",
              3, t));
    PQclear(q(g_db.sql,
              "INSERT INTO agent_runs (id, thread_id, account_id, project_id) "
              "VALUES ($4::uuid, $3::uuid, $1::uuid, $2::uuid)",
              4, p));
}

static int setup(void **state)
{
    kx_log_init("test_runner_store", "test");
    if (kx_th_pgdb_start("kx-runner-store", &g_db) != KX_OK)
        return -1;
    return kx_th_pgproxy_start(g_db.pg.port, &g_proxy) == KX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    kx_th_pgproxy_stop(g_proxy);
    kx_th_pgdb_stop(&g_db);
    return 0;
}

/* A kx_db with the runner's statements, through the proxy. */
static kx_db *proxied(void)
{
    char url[300];
    snprintf(url, sizeof url,
             "postgresql://postgres@127.0.0.1:%u/kortix?sslmode=disable&gssencmode=disable",
             kx_th_pgproxy_port(g_proxy));
    kx_db *db = NULL;
    assert_int_equal(kx_db_connect(url, store_statements(), &db), KX_OK);
    return db;
}

static bool busy(PGconn *c)
{
    PQconsumeInput(c);
    return PQisBusy(c);
}

static void finish_async(PGconn *c)
{
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            fail_msg("async statement failed: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
}

/* The hole of issue 11: an insert whose snapshot predates a reap commits after it. The insert
 * is held up after its fence check (its foreign-key check waits for a lock on the thread row)
 * while the reap runs. With the fence locking the run row, the reap must wait for the insert;
 * whatever the order, the count of messages seen right after the reap committed must be final. */
static void test_message_fence_races_a_reap(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    new_run(thread, run);
    const char *rp[] = {run};
    PQclear(q(g_db.sql,
              "UPDATE agent_runs SET status='running', lease_epoch=1, "
              "lease_owner='r1' WHERE id=$1::uuid",
              1, rp));

    PGconn *holder = PQconnectdb(g_db.pg.url), *writer = PQconnectdb(g_db.pg.url),
           *reaper = PQconnectdb(g_db.pg.url);
    assert_int_equal(PQstatus(holder), CONNECTION_OK);
    assert_int_equal(PQstatus(writer), CONNECTION_OK);
    assert_int_equal(PQstatus(reaper), CONNECTION_OK);
    /* 1. Something holds the thread row: the insert's foreign-key check will wait on it. */
    const char *tp[] = {thread};
    PQclear(q(holder, "BEGIN", 0, NULL));
    PQclear(q(holder, "SELECT 1 FROM threads WHERE thread_id=$1::uuid FOR UPDATE", 1, tp));
    /* 2. The runner's insert, with the runner's SQL, as epoch 1. */
    PGresult *pr = PQprepare(writer, "ins",
                             kx_th_stmt_sql(store_statements(), "runner_insert_message"), 0, NULL);
    assert_int_equal(PQresultStatus(pr), PGRES_COMMAND_OK);
    PQclear(pr);
    char mid[KX_UUID_LEN + 1];
    kx_uuid_new(mid);
    const char *ip[] = {run, "1", "status", "false", "{\"status_type\": \"x\"}", "{}", mid};
    assert_int_equal(PQsendQueryPrepared(writer, "ins", 7, ip, NULL, NULL, 0), 1);
    sleep_ms(300);
    assert_true(busy(writer)); /* waiting for the thread row */
    /* 3. The reap: the scheduler's transition (fail, epoch + 1), committed on its own. */
    assert_int_equal(PQsendQueryParams(reaper,
                                       "UPDATE agent_runs SET status='failed', "
                                       "lease_epoch=lease_epoch+1 WHERE id=$1::uuid AND "
                                       "status='running'",
                                       1, NULL, rp, NULL, NULL, 0),
                     1);
    int64_t until = kx_mono_ms() + 500;
    while (busy(reaper) && kx_mono_ms() < until)
        sleep_ms(10);
    bool reap_done_first = !busy(reaper);
    long at_reap = -1;
    if (reap_done_first) {
        finish_async(reaper);
        at_reap = count1("SELECT count(*) FROM messages WHERE agent_run_id=$1::uuid", run);
    }
    /* 4. Let the insert go on. */
    PQclear(q(holder, "ROLLBACK", 0, NULL));
    finish_async(writer);
    if (!reap_done_first) {
        finish_async(reaper);
        at_reap = count1("SELECT count(*) FROM messages WHERE agent_run_id=$1::uuid", run);
    }
    long final = count1("SELECT count(*) FROM messages WHERE agent_run_id=$1::uuid", run);
    if (final != at_reap)
        fail_msg("a message was inserted after the reap committed (%ld rows at the reap, %ld "
                 "after): the fence did not lock the run row",
                 at_reap, final);
    /* The fence made the reap wait for the insert, which then counts as before the reap. */
    assert_false(reap_done_first);
    assert_int_equal(final, 1);
    PQfinish(holder);
    PQfinish(writer);
    PQfinish(reaper);
}

/* The same race the other way round: the reap committed first; the insert is refused. */
static void test_message_fence_after_reap_refuses(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    new_run(thread, run);
    kx_db *db = proxied();
    bool claimed = false;
    store_claim c;
    assert_int_equal(store_claim_run(db, run, "r1", 10000, &claimed, &c), KX_OK);
    assert_true(claimed);
    const char *rp[] = {run};
    PQclear(q(g_db.sql,
              "UPDATE agent_runs SET status='failed', lease_epoch=lease_epoch+1 "
              "WHERE id=$1::uuid",
              1, rp));
    store_row row;
    char mid[KX_UUID_LEN + 1];
    kx_uuid_new(mid);
    assert_int_equal(store_insert_message(db, run, c.epoch, mid, "status", false, "{}", "{}",
                                          &row),
                     KX_ERR_CONFLICT);
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE agent_run_id=$1::uuid", run), 0);
    kx_db_close(db);
}

static void test_claim_answer_lost_recognises_itself(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    new_run(thread, run);
    kx_db *db = proxied();
    int cuts = kx_th_pgproxy_cuts(g_proxy);
    kx_th_pgproxy_arm(g_proxy, "runner_claim");
    bool claimed = false;
    store_claim c;
    assert_int_equal(store_claim_run(db, run, "runner-a", 10000, &claimed, &c), KX_OK);
    assert_int_equal(kx_th_pgproxy_cuts(g_proxy), cuts + 1); /* the cut really happened */
    assert_true(claimed);
    assert_int_equal(c.epoch, 1);
    assert_string_equal(c.thread_id, thread);
    assert_true(c.started_at_ms > 0);
    char *v = value1("SELECT status || ' ' || lease_epoch || ' ' || attempt || ' ' || "
                     "lease_owner FROM agent_runs WHERE id=$1::uuid",
                     run);
    assert_string_equal(v, "running 1 1 runner-a");
    free(v);
    /* Another runner's claim (or a later one of ours) does not take it. */
    assert_int_equal(store_claim_run(db, run, "runner-b", 10000, &claimed, &c), KX_OK);
    assert_false(claimed);
    kx_db_close(db);
}

static void test_insert_answer_lost_writes_once(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    new_run(thread, run);
    kx_db *db = proxied();
    bool claimed = false;
    store_claim c;
    assert_int_equal(store_claim_run(db, run, "r1", 10000, &claimed, &c), KX_OK);
    assert_true(claimed);
    int cuts = kx_th_pgproxy_cuts(g_proxy);
    kx_th_pgproxy_arm(g_proxy, "runner_insert_message");
    store_row row;
    char mid[KX_UUID_LEN + 1];
    kx_uuid_new(mid);
    assert_int_equal(store_insert_message(db, run, c.epoch, mid, "assistant", true,
                                          "{\"role\": \"assistant\", \"content\": \"hi\"}", "{}",
                                          &row),
                     KX_OK);
    assert_int_equal(kx_th_pgproxy_cuts(g_proxy), cuts + 1);
    assert_true(kx_uuid_valid(row.message_id));
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE agent_run_id=$1::uuid", run), 1);
    char *v = value1("SELECT message_id::text FROM messages WHERE agent_run_id=$1::uuid", run);
    assert_string_equal(v, row.message_id);
    free(v);
    kx_db_close(db);
}

static void test_finish_answer_lost_still_wins(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    new_run(thread, run);
    kx_db *db = proxied();
    bool claimed = false, won = false;
    store_claim c;
    assert_int_equal(store_claim_run(db, run, "r1", 10000, &claimed, &c), KX_OK);
    int cuts = kx_th_pgproxy_cuts(g_proxy);
    kx_th_pgproxy_arm(g_proxy, "runner_finish");
    assert_int_equal(store_finish_run(db, run, c.epoch, "completed", NULL, &won), KX_OK);
    assert_int_equal(kx_th_pgproxy_cuts(g_proxy), cuts + 1);
    assert_true(won); /* so the runner publishes the terminal event */
    char *v = value1("SELECT status FROM agent_runs WHERE id=$1::uuid", run);
    assert_string_equal(v, "completed");
    free(v);
    /* A finish with a stale epoch never wins, even though the row has that status. */
    assert_int_equal(store_finish_run(db, run, c.epoch + 1, "completed", NULL, &won), KX_OK);
    assert_false(won);
    kx_db_close(db);
}

/* kx_db itself: a write it cannot know to be idempotent fails UNAVAILABLE after a lost answer,
 * and is not run a second time. */
static const kx_db_stmt PLAIN[] = {
    {"plain_insert", "INSERT INTO projects (name, account_id) VALUES ($1, $2::uuid)"},
    KX_DB_STMT_END,
};

static void test_plain_write_is_not_retried(void **state)
{
    char url[300], account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    snprintf(url, sizeof url,
             "postgresql://postgres@127.0.0.1:%u/kortix?sslmode=disable&gssencmode=disable",
             kx_th_pgproxy_port(g_proxy));
    kx_db *db = NULL;
    assert_int_equal(kx_db_connect(url, PLAIN, &db), KX_OK);
    kx_th_pgproxy_arm(g_proxy, "plain_insert");
    const char *params[] = {"once", account};
    assert_int_equal(kx_db_exec_cmd(db, "plain_insert", 2, params, NULL), KX_ERR_UNAVAILABLE);
    assert_int_equal(count1("SELECT count(*) FROM projects WHERE account_id=$1::uuid", account),
                     1);
    kx_db_close(db);
}

/* The generic plan of every statement that finds the run row by its id must take the primary
 * key. A prepared statement's generic plan is made at its sixth call and kept by the
 * connection; made while the database holds few runs (a new one, as in bench_run), it took a
 * partial index on status instead ('running' for the fenced insert, finish and hand-back,
 * 'queued' for the claim) with the id as a mere filter, and so walked every entry of that
 * index on each call: ~1400 buffer hits per message insert at 1600 running runs, most of
 * Postgres' CPU in bench_run's throughput batch. Here the database holds the few runs of the
 * tests above, and each statement is planned generically. */
static void test_run_row_lookups_use_the_primary_key(void **state)
{
    (void)state;
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], mid[KX_UUID_LEN + 1];
    new_run(thread, run);
    kx_uuid_new(mid);
    struct {
        const char *name, *args;
    } cases[] = {
        {"runner_claim", "('%s', 'r1', 10000, '%s')"},
        {"runner_insert_message", "('%s', 1, 'status', false, '{}', '{}', '%s')"},
        {"runner_finish", "('%s', 1, 'completed', NULL)"},
        {"runner_handback", "('%s', 1, 'drain')"},
    };
    PQclear(q(g_db.sql, "SET plan_cache_mode = force_generic_plan", 0, NULL));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sql[400], args[200];
        snprintf(args, sizeof args, cases[i].args, run, mid);
        PGresult *r = PQprepare(g_db.sql, "plan_probe",
                                kx_th_stmt_sql(store_statements(), cases[i].name), 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fail_msg("prepare %s: %s", cases[i].name, PQerrorMessage(g_db.sql));
        PQclear(r);
        snprintf(sql, sizeof sql, "EXPLAIN EXECUTE plan_probe%s", args);
        r = q(g_db.sql, sql, 0, NULL);
        char plan[8192] = "";
        for (int row = 0; row < PQntuples(r); row++) {
            strncat(plan, PQgetvalue(r, row, 0), sizeof plan - strlen(plan) - 2);
            strncat(plan, "\n", sizeof plan - strlen(plan) - 1);
        }
        PQclear(r);
        PQclear(q(g_db.sql, "DEALLOCATE plan_probe", 0, NULL));
        if (strstr(plan, "agent_runs_pkey") == NULL || strstr(plan, "lease_expiry_idx") != NULL ||
            strstr(plan, "queued_idx") != NULL || strstr(plan, "Seq Scan on agent_runs") != NULL)
            fail_msg("%s: the run row is not found by its primary key:\n%s", cases[i].name, plan);
    }
    PQclear(q(g_db.sql, "RESET plan_cache_mode", 0, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_fence_races_a_reap),
        cmocka_unit_test(test_message_fence_after_reap_refuses),
        cmocka_unit_test(test_claim_answer_lost_recognises_itself),
        cmocka_unit_test(test_insert_answer_lost_writes_once),
        cmocka_unit_test(test_finish_answer_lost_still_wins),
        cmocka_unit_test(test_plain_write_is_not_retried),
        cmocka_unit_test(test_run_row_lookups_use_the_primary_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
