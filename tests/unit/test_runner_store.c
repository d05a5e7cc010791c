/* test_runner_store.c — the agent-runner's fenced, idempotent writes (services/agent-runner/
 * store.c) against a real PostgreSQL, with the exact SQL the runner prepares:
 *   - the message fence locks what it checks: an insert racing a reap either commits before
 *     the reap or inserts nothing — no row ever lands after the reap committed;
 *   - Postgres' answer lost after a write committed (a cutting TCP proxy, tests/harness/
 *     pgproxy.h): the retried claim recognises its own success (running, epoch 1, attempt 1),
 *     the retried message insert writes one row, the retried finish reports the win;
 *   - a write kx_db cannot know to be idempotent is not blindly run again;
 *   - the claim with the run's first reads in one pipeline (dispatch_claim): the reads come
 *     back with a won claim of the thread they read, are dropped otherwise, a lost answer is
 *     recognised, and a read that fails never takes a claim with it; the claim returns the
 *     run's agent as runner_agent reads it, on its retry too;
 *   - the finish of an answered run ends it only while its answer is the thread's newest LLM
 *     message;
 *   - a run's last rows with its finish in one statement: fenced, retried and counted as the
 *     insert and the finish are apart. */
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
#include "pgdb_assert.h"
#include "pgplans.h"
#include "pgproxy.h"
#include "dispatch.h"
#include "store.h"

static kx_th_pgdb g_db; /* its sql: direct, for setup and assertions */
static kx_th_pgproxy *g_proxy;

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *params)
{
    return kx_th_sql_q(c, sql, n, params);
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

static char *run_state(const char *run);

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
 * is held up after its fence check (ON CONFLICT waits for an uncommitted row of the same
 * message id; until migration 019 the foreign-key check on the thread row was the wait) while
 * the reap runs. With the fence locking the run row, the reap must wait for the insert;
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
    /* 1. Something holds the message id (a row of it, not yet committed): the insert, past
     * its fence, waits on it to know whether it conflicts. */
    char mid[KX_UUID_LEN + 1];
    kx_uuid_new(mid);
    const char *hp[] = {mid, thread};
    PQclear(q(holder, "BEGIN", 0, NULL));
    PQclear(q(holder,
              "INSERT INTO messages (message_id, thread_id, account_id, type, content) "
              "SELECT $1::uuid, thread_id, account_id, 'status', '{}' FROM threads "
              "WHERE thread_id=$2::uuid",
              2, hp));
    /* 2. The runner's insert, with the runner's SQL, as epoch 1. */
    PGresult *pr =
        PQprepare(writer, "ins", kx_th_stmt_sql(store_statements(), "runner_insert_messages"), 0,
                  NULL);
    assert_int_equal(PQresultStatus(pr), PGRES_COMMAND_OK);
    PQclear(pr);
    char ids[KX_UUID_LEN + 3];
    snprintf(ids, sizeof ids, "{%s}", mid);
    const char *ip[] = {run,        "1",   ids,
                        "{status}", "{f}", "{\"{\\\"status_type\\\": \\\"x\\\"}\"}",
                        "{\"{}\"}"};
    assert_int_equal(PQsendQueryPrepared(writer, "ins", 7, ip, NULL, NULL, 0), 1);
    sleep_ms(300);
    assert_true(busy(writer)); /* waiting for the holder's row */
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
    kx_th_pgproxy_arm(g_proxy, "runner_insert_messages");
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

/* A running run of our own (claimed through db): its thread and id, the claim's epoch. */
static int64_t claimed_run(kx_db *db, char thread[KX_UUID_LEN + 1], char run[KX_UUID_LEN + 1])
{
    new_run(thread, run);
    bool claimed = false;
    store_claim c;
    assert_int_equal(store_claim_run(db, run, "r1", 60000, &claimed, &c), KX_OK);
    assert_true(claimed);
    return c.epoch;
}

/* n rows of type "assistant" with fresh ids into ids (content names its index). */
static void new_rows(size_t n, char ids[][KX_UUID_LEN + 1], char content[][64],
                     store_new_row *rows)
{
    for (size_t i = 0; i < n; i++) {
        kx_uuid_new(ids[i]);
        snprintf(content[i], 64, "{\"role\": \"assistant\", \"content\": \"row \\\"%zu\\\"\"}", i);
        rows[i] = (store_new_row){ids[i], "assistant", true, content[i], "{\"k\": \"\\\\\"}"};
    }
}

/* The thread's rows in the order it is read back (ORDER BY created_at), with whether any two
 * share a created_at: "id,id,...|ties". malloc'd. */
static char *thread_order(const char *thread)
{
    return value1("SELECT string_agg(message_id::text, ',' ORDER BY created_at, message_id) || "
                  "'|' || (count(DISTINCT created_at) < count(*)) FROM messages "
                  "WHERE thread_id=$1::uuid",
                  thread);
}

/* The expected thread_order answer for ids in this order, without ties. */
static void expected_order(char *out, size_t cap, size_t n, char ids[][KX_UUID_LEN + 1])
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *sep = i + 1 < n ? "," : "|false";
        size_t len = strlen(ids[i]), seplen = strlen(sep);
        assert_true(at + len + seplen < cap);
        memcpy(out + at, ids[i], len);
        memcpy(out + at + len, sep, seplen + 1);
        at += len + seplen;
    }
}

/* Rows of one statement, and of two statements in one transaction, read back in the order
 * they were given, never tied — even when the clock stands still or stepped back: here the
 * thread already holds a row stamped an hour ahead (a clock that was stepped back since), and
 * every new row must still come after it. With created_at = clock_timestamp() per row (before
 * the multi-row insert) the new rows sorted before that row. */
static void test_rows_keep_their_order(void **state)
{
    (void)state;
    kx_db *db = proxied();
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], ahead[KX_UUID_LEN + 1];
    int64_t epoch = claimed_run(db, thread, run);
    kx_uuid_new(ahead);
    const char *tp[] = {thread, ahead};
    PQclear(q(g_db.sql,
              "INSERT INTO messages (message_id, thread_id, account_id, type, content, "
              "created_at) SELECT $2::uuid, thread_id, account_id, 'user', '{}', "
              "clock_timestamp() + interval '1 hour' FROM threads WHERE thread_id=$1::uuid",
              2, tp));
    enum {
        N = 12
    };
    char ids[N + 1][KX_UUID_LEN + 1], content[N][64];
    store_new_row rows[N];
    store_row out[N];
    snprintf(ids[0], sizeof ids[0], "%s", ahead);
    new_rows(N, ids + 1, content, rows);
    /* 5 rows in one statement, then in one transaction 4 and 3 in two statements */
    assert_int_equal(store_insert_messages(db, run, epoch, rows, 5, out), KX_OK);
    assert_int_equal(kx_db_begin(db), KX_OK);
    assert_int_equal(store_insert_messages(db, run, epoch, rows + 5, 4, out + 5), KX_OK);
    assert_int_equal(store_insert_messages(db, run, epoch, rows + 9, 3, out + 9), KX_OK);
    assert_int_equal(kx_db_commit(db), KX_OK);
    for (size_t i = 0; i < N; i++) {
        assert_string_equal(out[i].message_id, ids[i + 1]);
        assert_string_equal(out[i].updated_at, out[i].created_at);
    }
    char want[(N + 1) * (KX_UUID_LEN + 1) + 16];
    expected_order(want, sizeof want, N + 1, ids);
    char *got = thread_order(thread);
    if (strcmp(got, want) != 0)
        fail_msg("the thread reads back out of order or tied:\n got %s\nwant %s", got, want);
    free(got);
    /* the returned created_at is the stored one, and strictly increasing */
    for (size_t i = 1; i < N; i++) {
        const char *pp[] = {out[i - 1].created_at, out[i].created_at};
        PGresult *r = q(g_db.sql, "SELECT $1::timestamptz < $2::timestamptz", 2, pp);
        assert_string_equal(PQgetvalue(r, 0, 0), "t");
        PQclear(r);
    }
    /* the contents went through the array literal unchanged (quotes, backslashes) */
    char *c = value1("SELECT (content->>'content') || (metadata->>'k') FROM messages "
                     "WHERE message_id=$1::uuid",
                     ids[3]);
    assert_string_equal(c, "row \"2\"\\");
    free(c);
    kx_db_close(db);
}

/* The multi-row statement's fence: a stale epoch, or a run that is no longer running, writes
 * none of the rows. */
static void test_rows_fenced_write_nothing(void **state)
{
    (void)state;
    kx_db *db = proxied();
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    int64_t epoch = claimed_run(db, thread, run);
    char ids[3][KX_UUID_LEN + 1], content[3][64];
    store_new_row rows[3];
    store_row out[3];
    new_rows(3, ids, content, rows);
    assert_int_equal(store_insert_messages(db, run, epoch + 1, rows, 3, out), KX_ERR_CONFLICT);
    assert_int_equal(store_insert_messages(db, run, epoch - 1, rows, 3, out), KX_ERR_CONFLICT);
    const char *rp[] = {run};
    PQclear(q(g_db.sql, "UPDATE agent_runs SET status='completed' WHERE id=$1::uuid", 1, rp));
    assert_int_equal(store_insert_messages(db, run, epoch, rows, 3, out), KX_ERR_CONFLICT);
    assert_string_equal(out[0].message_id, "");
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", thread), 0);
    assert_int_equal(store_insert_messages(db, run, epoch, rows, 0, out), KX_ERR_INVALID);
    kx_db_close(db);
}

/* A server error that kx_db calls a conflict (here a deadlock, raised by a test trigger) is not
 * the fence: the insert reports KX_ERR_INTERNAL, not KX_ERR_CONFLICT, so the runner fails the
 * run with the reason instead of dropping it as "no longer ours" while its lease lives on
 * (the run stayed `running` until its wall time). */
static void test_server_conflict_is_not_the_fence(void **state)
{
    (void)state;
    PQclear(q(g_db.sql,
              "CREATE FUNCTION kx_test_deadlock() RETURNS trigger LANGUAGE plpgsql AS $$ "
              "BEGIN IF NEW.content->>'content' = 'kx-test-deadlock' THEN "
              "RAISE EXCEPTION USING ERRCODE = 'deadlock_detected', MESSAGE = 'test deadlock'; "
              "END IF; RETURN NEW; END $$",
              0, NULL));
    PQclear(q(g_db.sql,
              "CREATE TRIGGER kx_test_deadlock BEFORE INSERT ON messages FOR EACH ROW "
              "EXECUTE FUNCTION kx_test_deadlock()",
              0, NULL));
    kx_db *db = proxied();
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    int64_t epoch = claimed_run(db, thread, run);
    char ids[2][KX_UUID_LEN + 1], content[2][64];
    store_new_row rows[2];
    store_row out[2];
    new_rows(2, ids, content, rows);
    snprintf(content[1], 64, "{\"role\": \"assistant\", \"content\": \"kx-test-deadlock\"}");
    kx_err err = store_insert_messages(db, run, epoch, rows, 2, out);
    PQclear(q(g_db.sql, "DROP TRIGGER kx_test_deadlock ON messages", 0, NULL));
    PQclear(q(g_db.sql, "DROP FUNCTION kx_test_deadlock()", 0, NULL));
    assert_int_equal(err, KX_ERR_INTERNAL);
    assert_string_equal(out[0].message_id, "");
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", thread), 0);
    /* the run is still ours: the same rows without the trigger go in */
    assert_int_equal(store_insert_messages(db, run, epoch, rows, 1, out), KX_OK);
    kx_db_close(db);
}

/* The finish statements as the inserts: a server error kx_db calls a conflict (here a KX rule,
 * raised by a test trigger whenever a running run's status would change) is not the fence.
 * Reported as KX_ERR_CONFLICT, the runner took it for "no longer ours" and dropped the run
 * while its lease kept it `running` until its wall time. The release (runner_release_to_reaper)
 * changes no status, so it still goes through: the run stays running but names no runner and
 * its lease has expired, with the reason in error (what the scheduler's reaper ends). */
static kx_err finish_answered(kx_db *db, const char *run, int64_t epoch, bool *won, bool *ours);

static void test_finish_server_conflict_is_not_the_fence(void **state)
{
    (void)state;
    PQclear(q(g_db.sql,
              "CREATE FUNCTION kx_test_no_end() RETURNS trigger LANGUAGE plpgsql AS $$ "
              "BEGIN IF OLD.status = 'running' AND NEW.status <> 'running' THEN "
              "RAISE EXCEPTION USING ERRCODE = 'KX042', MESSAGE = 'test: no end'; "
              "END IF; RETURN NEW; END $$",
              0, NULL));
    PQclear(q(g_db.sql,
              "CREATE TRIGGER kx_test_no_end BEFORE UPDATE ON agent_runs FOR EACH ROW "
              "EXECUTE FUNCTION kx_test_no_end()",
              0, NULL));
    kx_db *db = proxied();
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    int64_t epoch = claimed_run(db, thread, run);
    bool won = true, ours = true;
    kx_err finish = store_finish_run(db, run, epoch, "completed", NULL, &won);
    char answer[KX_UUID_LEN + 1];
    kx_uuid_new(answer);
    store_row row; /* the answer: the finish of an answered run updates the row */
    assert_int_equal(store_insert_message(db, run, epoch, answer, "assistant", true, "{}", "{}",
                                          &row),
                     KX_OK);
    kx_err answered = finish_answered(db, run, epoch, &won, &ours);
    char ids[1][KX_UUID_LEN + 1], content[1][64];
    store_new_row rows[1];
    store_row out[1];
    new_rows(1, ids, content, rows);
    kx_err folded = store_insert_finish(db, run, epoch, rows, 1, "failed", "x", out, &won);
    assert_int_equal(kx_db_pipe_begin(db), KX_OK);
    (void)store_release_run_send(db, run, epoch, "could not record the end of the run: test");
    kx_err released = store_let_go_recv(db);
    kx_db_pipe_end(db);
    PQclear(q(g_db.sql, "DROP TRIGGER kx_test_no_end ON agent_runs", 0, NULL));
    PQclear(q(g_db.sql, "DROP FUNCTION kx_test_no_end()", 0, NULL));
    assert_int_equal(finish, KX_ERR_INTERNAL);
    assert_int_equal(answered, KX_ERR_INTERNAL);
    assert_int_equal(folded, KX_ERR_INTERNAL);
    assert_false(won);
    assert_int_equal(released, KX_OK);
    char *v = value1("SELECT status || ' ' || coalesce(lease_owner, '-') || ' ' || "
                     "(lease_expires_at <= now())::text || ' ' || lease_epoch || ' ' || error "
                     "FROM agent_runs WHERE id=$1::uuid",
                     run);
    char want[200];
    snprintf(want, sizeof want, "running - true %lld could not record the end of the run: test",
             (long long)epoch);
    assert_string_equal(v, want);
    free(v);
    kx_db_close(db);
}

/* A retry returns the same rows with the same created_at; a call that mixes rows already
 * written with new ones writes the new ones (after the others) and returns every row; a mix
 * under a stale epoch writes nothing and fails. The lost answer itself: the retried statement
 * writes each row once. */
static void test_rows_retry_and_mix(void **state)
{
    (void)state;
    kx_db *db = proxied();
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    int64_t epoch = claimed_run(db, thread, run);
    enum {
        N = 6
    };
    char ids[N][KX_UUID_LEN + 1], content[N][64];
    store_new_row rows[N];
    store_row first[N], again[N];
    new_rows(N, ids, content, rows);
    int cuts = kx_th_pgproxy_cuts(g_proxy);
    kx_th_pgproxy_arm(g_proxy, "runner_insert_messages");
    assert_int_equal(store_insert_messages(db, run, epoch, rows, 2, first), KX_OK);
    assert_int_equal(kx_th_pgproxy_cuts(g_proxy), cuts + 1); /* the answer was lost */
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", thread), 2);
    assert_int_equal(store_insert_messages(db, run, epoch, rows, 2, again), KX_OK);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(again[i].message_id, first[i].message_id);
        assert_string_equal(again[i].created_at, first[i].created_at);
        assert_string_equal(again[i].updated_at, first[i].updated_at);
    }
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", thread), 2);
    /* a mix: 2 (new), 0 (written), 3 (new), 1 (written) */
    store_new_row mix[4] = {rows[2], rows[0], rows[3], rows[1]};
    store_row got[4];
    assert_int_equal(store_insert_messages(db, run, epoch, mix, 4, got), KX_OK);
    assert_string_equal(got[1].created_at, first[0].created_at);
    assert_string_equal(got[3].created_at, first[1].created_at);
    assert_string_equal(got[0].message_id, ids[2]);
    assert_string_equal(got[2].message_id, ids[3]);
    char want[4 * (KX_UUID_LEN + 1) + 16];
    expected_order(want, sizeof want, 4, ids);
    char *order = thread_order(thread);
    assert_string_equal(order, want);
    free(order);
    /* a mix under a stale epoch: nothing new, and the call fails */
    store_new_row stale[2] = {rows[0], rows[4]};
    assert_int_equal(store_insert_messages(db, run, epoch + 1, stale, 2, got), KX_ERR_CONFLICT);
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", thread), 4);
    kx_db_close(db);
}

/* A batch that cannot carry usage (no assistant_response_end row) goes by the statement
 * without the usage update (runner_insert_messages); one that can by
 * runner_insert_messages_usage, which counts its usage once even when its answer is lost and it
 * is retried. */
static void test_usage_statement_only_for_usage_batches(void **state)
{
    (void)state;
    kx_db *db = proxied();
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    int64_t epoch = claimed_run(db, thread, run);
    char ids[3][KX_UUID_LEN + 1], content[3][64];
    store_new_row rows[3];
    store_row out[3];
    new_rows(3, ids, content, rows);
    int cuts = kx_th_pgproxy_cuts(g_proxy);
    kx_th_pgproxy_arm(g_proxy, "runner_insert_messages_usage");
    assert_int_equal(store_insert_messages(db, run, epoch, rows, 2, out), KX_OK);
    assert_int_equal(kx_th_pgproxy_cuts(g_proxy), cuts); /* not the usage statement */
    rows[2].type = "assistant_response_end";
    rows[2].is_llm = false;
    rows[2].content_json = "{\"usage\": {\"total_tokens\": 15}}";
    assert_int_equal(store_insert_messages(db, run, epoch, rows + 2, 1, out), KX_OK);
    assert_int_equal(kx_th_pgproxy_cuts(g_proxy), cuts + 1); /* lost once, retried */
    kx_th_pgproxy_arm(g_proxy, "");
    assert_int_equal(count1("SELECT tokens_used FROM agent_runs WHERE id=$1::uuid", run), 15);
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", thread), 3);
    kx_db_close(db);
}

/* A run's last rows and its finish in one statement (runner_insert_messages_finish): the rows
 * written, the run ended with its usage; the answer lost after the commit, the retry returns
 * the same rows and still reports the win, and counts the usage once; a stale epoch writes and
 * ends nothing. */
static void test_insert_finish_answer_lost_wins_once(void **state)
{
    (void)state;
    kx_db *db = proxied();
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    int64_t epoch = claimed_run(db, thread, run);
    char ids[3][KX_UUID_LEN + 1], content[3][64];
    store_new_row rows[3];
    store_row out[3], again[3];
    new_rows(3, ids, content, rows);
    rows[1].type = "assistant_response_end";
    rows[1].is_llm = false;
    rows[1].content_json = "{\"usage\": {\"total_tokens\": 15}}";
    int cuts = kx_th_pgproxy_cuts(g_proxy);
    kx_th_pgproxy_arm(g_proxy, "runner_insert_messages_finish");
    bool won = false;
    assert_int_equal(store_insert_finish(db, run, epoch, rows, 2, "completed", NULL, out, &won),
                     KX_OK);
    assert_int_equal(kx_th_pgproxy_cuts(g_proxy), cuts + 1); /* lost once, retried */
    assert_true(won); /* so the runner publishes the terminal event */
    assert_string_equal(out[0].message_id, ids[0]);
    assert_string_equal(out[1].message_id, ids[1]);
    assert_true(out[0].created_at[0] != '\0');
    char *v = value1("SELECT status || ' ' || coalesce(error, '-') || ' ' || tokens_used || ' ' "
                     "|| (completed_at IS NOT NULL) || ' ' || (lease_expires_at IS NULL) "
                     "FROM agent_runs WHERE id=$1::uuid",
                     run);
    assert_string_equal(v, "completed - 15 true true");
    free(v);
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", thread), 2);
    /* once more (a second retry): the same rows, as they were, still won; nothing counted */
    assert_int_equal(store_insert_finish(db, run, epoch, rows, 2, "completed", NULL, again, &won),
                     KX_OK);
    assert_true(won);
    assert_string_equal(again[0].created_at, out[0].created_at);
    assert_string_equal(again[1].created_at, out[1].created_at);
    assert_int_equal(count1("SELECT tokens_used FROM agent_runs WHERE id=$1::uuid", run), 15);
    /* a new row now (the run is over), or at a stale epoch: fenced, nothing written */
    assert_int_equal(store_insert_finish(db, run, epoch, rows + 2, 1, "failed", "x", out, &won),
                     KX_ERR_CONFLICT);
    assert_false(won);
    assert_int_equal(store_insert_finish(db, run, epoch + 1, rows + 2, 1, "completed", NULL, out,
                                         &won),
                     KX_ERR_CONFLICT);
    assert_false(won);
    /* the rows already written, at a stale epoch: returned as they are (as the insert alone
     * returns them), but the finish is not won (the runner drops the run: fenced at finish) */
    assert_int_equal(store_insert_finish(db, run, epoch + 1, rows, 2, "completed", NULL, again,
                                         &won),
                     KX_OK);
    assert_false(won);
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", thread), 2);
    v = value1("SELECT status FROM agent_runs WHERE id=$1::uuid", run);
    assert_string_equal(v, "completed");
    free(v);
    kx_db_close(db);
}

/* The fence of runner_insert_messages_finish locks what it checks: the statement waits for a
 * transaction that holds the run row (a reap, a STOP); once that one moved the epoch and
 * committed, the statement writes no row and ends nothing — the run keeps the reap's state. */
static void test_insert_finish_waits_for_a_reap_and_is_fenced(void **state)
{
    (void)state;
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], mid[KX_UUID_LEN + 1];
    new_run(thread, run);
    const char *rp[] = {run};
    kx_th_sql_exec(g_db.sql,
                   "UPDATE agent_runs SET status='running', lease_epoch=1, lease_owner='r1' "
                   "WHERE id=$1::uuid",
                   1, rp);
    PGconn *reaper = PQconnectdb(g_db.pg.url), *writer = PQconnectdb(g_db.pg.url);
    assert_int_equal(PQstatus(reaper), CONNECTION_OK);
    assert_int_equal(PQstatus(writer), CONNECTION_OK);
    PQclear(q(reaper, "BEGIN", 0, NULL));
    PGresult *res = q(reaper, "SELECT 1 FROM agent_runs WHERE id=$1::uuid FOR UPDATE", 1, rp);
    assert_int_equal(PQntuples(res), 1);
    PQclear(res);
    PGresult *pr =
        PQprepare(writer, "insfin",
                  kx_th_stmt_sql(store_statements(), "runner_insert_messages_finish"), 0, NULL);
    assert_int_equal(PQresultStatus(pr), PGRES_COMMAND_OK);
    PQclear(pr);
    kx_uuid_new(mid);
    char ids[KX_UUID_LEN + 3];
    snprintf(ids, sizeof ids, "{%s}", mid);
    const char *ip[] = {run,        "1",        ids,         "{assistant}", "{t}",
                        "{\"{}\"}", "{\"{}\"}", "completed", NULL};
    assert_int_equal(PQsendQueryPrepared(writer, "insfin", 9, ip, NULL, NULL, 0), 1);
    sleep_ms(300);
    assert_true(busy(writer)); /* waiting for the run row */
    PQclear(q(reaper,
              "UPDATE agent_runs SET status='failed', lease_epoch=lease_epoch+1 "
              "WHERE id=$1::uuid",
              1, rp));
    PQclear(q(reaper, "COMMIT", 0, NULL));
    PGresult *r = PQgetResult(writer);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 0); /* fenced: no row back */
    PQclear(r);
    finish_async(writer);
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", thread), 0);
    char *v = run_state(run);
    assert_string_equal(v, "failed 2 0");
    free(v);
    PQfinish(reaper);
    PQfinish(writer);
}

/* Migration 019: the rows of the runner's fenced insert queue no reference check (their thread
 * is the run row's, which the insert holds FOR SHARE), every other insert of messages runs it.
 * Counted in one transaction with track_functions (pg_stat_get_xact_function_calls). */
static void test_fenced_rows_skip_the_reference_check(void **state)
{
    (void)state;
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    new_run(thread, run);
    const char *rp[] = {run};
    kx_th_sql_exec(g_db.sql,
                   "UPDATE agent_runs SET status='running', lease_epoch=1, lease_owner='r1' "
                   "WHERE id=$1::uuid",
                   1, rp);
    char a[KX_UUID_LEN + 1], b[KX_UUID_LEN + 1], ids[2 * KX_UUID_LEN + 8];
    kx_uuid_new(a);
    kx_uuid_new(b);
    snprintf(ids, sizeof ids, "{%s,%s}", a, b);
    const char *ip[] = {
        run, "1", ids, "{status,status}", "{f,f}", "{\"{}\",\"{}\"}", "{\"{}\",\"{}\"}"};
    const char *calls = "SELECT coalesce(pg_stat_get_xact_function_calls("
                        "'kx_message_refs_check'::regproc), 0)";
    kx_th_sql_exec(g_db.sql, "BEGIN", 0, NULL);
    kx_th_sql_exec(g_db.sql, "SET LOCAL track_functions = 'pl'", 0, NULL);
    PGresult *r = q(g_db.sql, kx_th_stmt_sql(store_statements(), "runner_insert_messages"), 7, ip);
    assert_int_equal(PQntuples(r), 2);
    PQclear(r);
    assert_int_equal(count1(calls, NULL), 0);
    const char *tp[] = {thread};
    kx_th_sql_exec(g_db.sql,
                   "INSERT INTO messages (thread_id, account_id, type, content) "
                   "SELECT thread_id, account_id, 'user', '{}' FROM threads "
                   "WHERE thread_id=$1::uuid",
                   1, tp);
    assert_int_equal(count1(calls, NULL), 1);
    kx_th_sql_exec(g_db.sql, "COMMIT", 0, NULL);
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", thread), 3);
}

/* The SQLSTATE of sql (run with params) on the direct connection: "" when it succeeded. */
static void expect_state(const char *sql, int n, const char *const *params, const char *state,
                         const char *constraint)
{
    PGresult *r = PQexecParams(g_db.sql, sql, n, NULL, params, NULL, NULL, 0);
    const char *got = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *con = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    if (strcmp(got ? got : "", state) != 0 || strcmp(con ? con : "", constraint) != 0)
        fail_msg("%s: SQLSTATE %s constraint %s, expected %s %s (%s)", sql, got ? got : "-",
                 con ? con : "-", state, constraint, PQresultErrorMessage(r));
    PQclear(r);
}

/* Migration 019: what the foreign keys of messages did, the triggers do — a missing thread,
 * agent or version refuses the row (23503, the key's name); a deleted thread takes its
 * messages; a deleted agent or version leaves NULL; a referenced key cannot change. */
static void test_message_references_hold(void **state)
{
    (void)state;
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], nobody[KX_UUID_LEN + 1];
    new_run(thread, run);
    kx_uuid_new(nobody);
    const char *np[] = {nobody, thread};
    const char *ins = "INSERT INTO messages (thread_id, account_id, type, content, agent_id, "
                      "agent_version_id) SELECT $1::uuid, account_id, 'user', '{}', %s, %s "
                      "FROM threads WHERE thread_id=$2::uuid";
    char sql[512];
    snprintf(sql, sizeof sql, ins, "NULL::uuid", "NULL::uuid");
    expect_state(sql, 2, np, "23503", "messages_thread_id_fkey");
    const char *tp[] = {thread, thread};
    snprintf(sql, sizeof sql, ins, "gen_random_uuid()", "NULL::uuid");
    expect_state(sql, 2, tp, "23503", "messages_agent_id_fkey");
    snprintf(sql, sizeof sql, ins, "NULL::uuid", "gen_random_uuid()");
    expect_state(sql, 2, tp, "23503", "messages_agent_version_id_fkey");
    /* an agent with a version, and a message naming both */
    char agent[KX_UUID_LEN + 1], version[KX_UUID_LEN + 1];
    kx_uuid_new(agent);
    kx_uuid_new(version);
    const char *ap[] = {agent, version, thread};
    kx_th_sql_exec(g_db.sql,
                   "INSERT INTO agents (agent_id, account_id, name) "
                   "SELECT $1::uuid, account_id, 'a' FROM threads WHERE thread_id=$2::uuid",
                   2, (const char *[]){agent, thread});
    kx_th_sql_exec(g_db.sql,
                   "INSERT INTO agent_versions (version_id, agent_id, account_id, "
                   "version_number, version_name) "
                   "SELECT $2::uuid, $1::uuid, account_id, 1, 'v1' FROM threads "
                   "WHERE thread_id=$3::uuid",
                   3, ap);
    const char *mp[] = {agent, version, thread};
    expect_state("INSERT INTO messages (thread_id, account_id, type, content, agent_id, "
                 "agent_version_id) SELECT thread_id, account_id, 'user', '{}', $1::uuid, "
                 "$2::uuid FROM threads WHERE thread_id=$3::uuid",
                 3, mp, "", "");
    const char *vp[] = {version};
    kx_th_sql_exec(g_db.sql, "DELETE FROM agent_versions WHERE version_id=$1::uuid", 1, vp);
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid "
                            "AND agent_id IS NOT NULL AND agent_version_id IS NULL",
                            thread),
                     1);
    const char *gp[] = {agent};
    expect_state("UPDATE agents SET agent_id=gen_random_uuid() WHERE agent_id=$1::uuid", 1, gp,
                 "23503", "messages_agent_id_fkey");
    kx_th_sql_exec(g_db.sql, "DELETE FROM agents WHERE agent_id=$1::uuid", 1, gp);
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid "
                            "AND agent_id IS NULL AND agent_version_id IS NULL",
                            thread),
                     1);
    /* a thread without runs: its key cannot change under a message; deleted, it takes them */
    char t2[KX_UUID_LEN + 1];
    kx_uuid_new(t2);
    const char *t2p[] = {t2, thread};
    kx_th_sql_exec(g_db.sql,
                   "INSERT INTO threads (thread_id, account_id, project_id) "
                   "SELECT $1::uuid, account_id, project_id FROM threads WHERE thread_id=$2::uuid",
                   2, t2p);
    snprintf(sql, sizeof sql, ins, "NULL::uuid", "NULL::uuid");
    const char *t2m[] = {t2, t2};
    expect_state(sql, 2, t2m, "", "");
    expect_state("UPDATE threads SET thread_id=gen_random_uuid() WHERE thread_id=$1::uuid", 1, t2p,
                 "23503", "messages_thread_id_fkey");
    kx_th_sql_exec(g_db.sql, "DELETE FROM threads WHERE thread_id=$1::uuid", 1, t2p);
    assert_int_equal(count1("SELECT count(*) FROM messages WHERE thread_id=$1::uuid", t2), 0);
}

/* Appends a then b to the string in buf (of cap bytes). */
static void append(char *buf, size_t cap, const char *a, const char *b)
{
    size_t at = strlen(buf), la = strlen(a), lb = strlen(b);
    assert_true(at + la + lb < cap);
    memcpy(buf + at, a, la + 1);
    memcpy(buf + at + la, b, lb + 1);
}

/* The multi-row insert runs its generic plan once it has one (the sixth call on), whatever
 * the number of rows: when unnest() read the array parameters directly, a custom plan knew the
 * length and the generic one did not, their costs differed, and Postgres made a custom plan at
 * every call (planning the whole statement again: more server CPU than the round trips saved,
 * tests/bench/bench_rows.c). pg_prepared_statements counts the plans of each kind. */
static void test_rows_statement_keeps_its_generic_plan(void **state)
{
    (void)state;
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    new_run(thread, run);
    const char *rp[] = {run};
    PQclear(q(g_db.sql, "UPDATE agent_runs SET status='running', lease_epoch=1 WHERE id=$1::uuid",
              1, rp));
    PGresult *pr =
        PQprepare(g_db.sql, "ins_plans",
                  kx_th_stmt_sql(store_statements(), "runner_insert_messages"), 0, NULL);
    assert_int_equal(PQresultStatus(pr), PGRES_COMMAND_OK);
    PQclear(pr);
    for (int call = 0; call < 12; call++) {
        size_t n = 1 + (size_t)call % 4; /* 1, 2, 3, 4 rows */
        char ids[4 * (KX_UUID_LEN + 1) + 4] = "{", types[64] = "{", llm[32] = "{",
                                         contents[64] = "{";
        for (size_t i = 0; i < n; i++) {
            char id[KX_UUID_LEN + 1];
            kx_uuid_new(id);
            const char *sep = i + 1 < n ? "," : "}";
            append(ids, sizeof ids, id, sep);
            append(types, sizeof types, "status", sep);
            append(llm, sizeof llm, "f", sep);
            append(contents, sizeof contents, "\"{}\"", sep);
        }
        const char *ip[] = {run, "1", ids, types, llm, contents, contents};
        PGresult *r = PQexecPrepared(g_db.sql, "ins_plans", 7, ip, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != (int)n)
            fail_msg("call %d: %s", call, PQerrorMessage(g_db.sql));
        PQclear(r);
    }
    char *plans = value1("SELECT generic_plans || ' generic, ' || custom_plans || ' custom' "
                         "FROM pg_prepared_statements WHERE name = $1",
                         "ins_plans");
    if (strcmp(plans, "7 generic, 5 custom") != 0)
        fail_msg("12 calls of runner_insert_messages made %s plans, not 7 generic, 5 custom: "
                 "Postgres plans the statement anew at each call",
                 plans);
    free(plans);
    PQclear(q(g_db.sql, "DEALLOCATE ins_plans", 0, NULL));
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
        const char *name, *args, *also; /* also: an index the plan must use too, or NULL */
    } cases[] = {
        {"runner_claim", "('%s', 'r1', 10000, '%s')", NULL},
        {"runner_insert_messages",
         "('%s', 1, '{%s}', '{status}', '{f}', '{\"{}\"}', "
         "'{\"{}\"}')",
         /* the thread's newest row (the order of the rows): one step of this index */
         "messages_thread_created_idx"},
        {"runner_insert_messages_usage",
         "('%s', 1, '{%s}', '{status}', '{f}', '{\"{}\"}', "
         "'{\"{}\"}')",
         "messages_thread_created_idx"},
        {"runner_insert_messages_finish",
         "('%s', 1, '{%s}', '{status}', '{f}', '{\"{}\"}', "
         "'{\"{}\"}', 'completed', NULL)",
         "messages_thread_created_idx"},
        {"runner_finish", "('%s', 1, 'completed', NULL)", NULL},
        /* the thread's newest LLM row: a backward step of this index */
        {"runner_finish_answered", "('%s', 1, 'completed', NULL)", "messages_thread_created_idx"},
        {"runner_handback", "('%s', 1, 'drain')", NULL},
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
        char plan[16384] = "";
        for (int row = 0; row < PQntuples(r); row++) {
            strncat(plan, PQgetvalue(r, row, 0), sizeof plan - strlen(plan) - 2);
            strncat(plan, "\n", sizeof plan - strlen(plan) - 1);
        }
        PQclear(r);
        PQclear(q(g_db.sql, "DEALLOCATE plan_probe", 0, NULL));
        if (strstr(plan, "agent_runs_pkey") == NULL || strstr(plan, "lease_expiry_idx") != NULL ||
            strstr(plan, "queued_idx") != NULL || strstr(plan, "Seq Scan on agent_runs") != NULL)
            fail_msg("%s: the run row is not found by its primary key:\n%s", cases[i].name, plan);
        if (cases[i].also != NULL && strstr(plan, cases[i].also) == NULL)
            fail_msg("%s: the plan does not use %s:\n%s", cases[i].name, cases[i].also, plan);
        if (strstr(plan, "Seq Scan on messages") != NULL) {
            fprintf(stderr, "%s", plan);
            fail_msg("%s: the plan reads messages whole (above)", cases[i].name);
        }
    }
    PQclear(q(g_db.sql, "RESET plan_cache_mode", 0, NULL));
}

/* ---- the claim with the run's first reads (dispatch.c, dispatch_claim) ------------------- */

static void add_user_message(const char *thread, const char *text)
{
    const char *p[] = {thread, text};
    PQclear(q(g_db.sql,
              "INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, "
              "metadata) SELECT thread_id, account_id, 'user', true, "
              "jsonb_build_object('role', 'user', 'content', $2::text), '{}'::jsonb "
              "FROM threads WHERE thread_id = $1::uuid",
              2, p));
}

static char *run_state(const char *run)
{
    return value1("SELECT status || ' ' || lease_epoch || ' ' || attempt FROM agent_runs "
                  "WHERE id=$1::uuid",
                  run);
}

/* The claim and the first turn's reads ride one round trip: the run is claimed and the thread
 * and the agent (none: the default) come back with it. */
static void test_claim_brings_the_first_reads(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], claim_id[KX_UUID_LEN + 1];
    new_run(thread, run);
    add_user_message(thread, "hello there");
    kx_uuid_new(claim_id);
    kx_db *db = proxied();
    dispatch_claimed got = {0};
    assert_int_equal(dispatch_claim(db, run, thread, "r1", 10000, 8 << 20, claim_id, &got), KX_OK);
    assert_true(got.claimed);
    assert_int_equal(got.claim.epoch, 1);
    assert_string_equal(got.claim.thread_id, thread);
    assert_true(got.preloaded);
    assert_true(got.first.agent_loaded);
    assert_false(got.first.agent.found);
    assert_int_equal(json_array_size(got.first.msgs), 1);
    json_t *m = json_array_get(got.first.msgs, 0);
    assert_string_equal(json_string_value(json_object_get(m, "content")), "hello there");
    assert_string_equal(got.first.last_type, "user");
    char *v = run_state(run);
    assert_string_equal(v, "running 1 1");
    free(v);
    run_loaded_clear(&got.first);
    /* a second dispatch of the same run claims nothing and keeps no reads */
    kx_uuid_new(claim_id);
    assert_int_equal(dispatch_claim(db, run, thread, "r2", 10000, 8 << 20, claim_id, &got), KX_OK);
    assert_false(got.claimed);
    assert_false(got.preloaded);
    assert_null(got.first.msgs);
    kx_db_close(db);
}

/* A dispatch naming another thread (or none): the run is claimed, what was read is dropped
 * (the run reads its own thread later). */
static void test_claim_keeps_no_reads_of_another_thread(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], claim_id[KX_UUID_LEN + 1];
    char other[KX_UUID_LEN + 1];
    kx_uuid_new(other);
    const char *names[] = {other, "", "not-a-uuid"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        new_run(thread, run);
        add_user_message(thread, "hi");
        kx_uuid_new(claim_id);
        kx_db *db = proxied();
        dispatch_claimed got = {0};
        assert_int_equal(dispatch_claim(db, run, names[i], "r1", 10000, 8 << 20, claim_id, &got),
                         KX_OK);
        assert_true(got.claimed);
        assert_string_equal(got.claim.thread_id, thread);
        assert_false(got.preloaded);
        assert_null(got.first.msgs);
        assert_false(got.first.agent_loaded);
        kx_db_close(db);
    }
}

/* The claim's answer lost in the pipeline: the pipeline runs again with the same claim id,
 * which recognises its own success (one claim: epoch 1, attempt 1), the reads with it. */
static void test_claim_pipeline_answer_lost(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], claim_id[KX_UUID_LEN + 1];
    new_run(thread, run);
    add_user_message(thread, "hi");
    kx_db *db = proxied();
    dispatch_claimed got = {0};
    /* the statements are prepared on this connection first (a cut mid-PREPARE is not the
     * point): a claim of another run, then the cut one */
    char other_thread[KX_UUID_LEN + 1], other_run[KX_UUID_LEN + 1];
    new_run(other_thread, other_run);
    kx_uuid_new(claim_id);
    assert_int_equal(dispatch_claim(db, other_run, other_thread, "r1", 10000, 8 << 20, claim_id,
                                    &got),
                     KX_OK);
    run_loaded_clear(&got.first);
    int cuts = kx_th_pgproxy_cuts(g_proxy);
    kx_th_pgproxy_arm(g_proxy, "runner_claim");
    kx_uuid_new(claim_id);
    assert_int_equal(dispatch_claim(db, run, thread, "r1", 10000, 8 << 20, claim_id, &got), KX_OK);
    assert_int_equal(kx_th_pgproxy_cuts(g_proxy), cuts + 1); /* the cut really happened */
    assert_true(got.claimed);
    assert_int_equal(got.claim.epoch, 1);
    assert_true(got.preloaded);
    assert_int_equal(json_array_size(got.first.msgs), 1);
    char *v = run_state(run);
    assert_string_equal(v, "running 1 1");
    free(v);
    run_loaded_clear(&got.first);
    kx_db_close(db);
}

/* The account's default agent with one version (its config: system_prompt as given, JSON text
 * of a string), current; the agent's id into agent. */
static void new_default_agent(const char *thread, const char *prompt, char agent[KX_UUID_LEN + 1])
{
    char version[KX_UUID_LEN + 1];
    kx_uuid_new(agent);
    kx_uuid_new(version);
    kx_th_sql_exec(g_db.sql,
                   "INSERT INTO agents (agent_id, account_id, name, is_default, metadata) "
                   "SELECT $1::uuid, account_id, 'a', true, '{\"k\": 1}' FROM threads "
                   "WHERE thread_id=$2::uuid",
                   2, (const char *[]){agent, thread});
    kx_th_sql_exec(g_db.sql,
                   "INSERT INTO agent_versions (version_id, agent_id, account_id, "
                   "version_number, version_name, config) "
                   "SELECT $2::uuid, $1::uuid, account_id, 1, 'v1', jsonb_build_object("
                   "'system_prompt', $4::jsonb, 'tools', '{}'::jsonb) FROM threads "
                   "WHERE thread_id=$3::uuid",
                   4, (const char *[]){agent, version, thread, prompt});
    kx_th_sql_exec(g_db.sql,
                   "UPDATE agents SET current_version_id=$2::uuid WHERE agent_id=$1::uuid", 2,
                   (const char *[]){agent, version});
}

static void assert_same_agent(const store_agent *a, const store_agent *b)
{
    assert_string_equal(a->agent_id, b->agent_id);
    assert_string_equal(a->version_id, b->version_id);
    assert_non_null(a->config);
    assert_non_null(b->config);
    assert_string_equal(a->config, b->config);
    assert_non_null(a->metadata);
    assert_non_null(b->metadata);
    assert_string_equal(a->metadata, b->metadata);
}

/* The claim returns the run's agent and version, as runner_agent reads them (the first turn
 * reads no agent of its own), and a claim whose answer was lost returns them the same on its
 * retry (its second branch). */
static void test_claim_returns_the_agent(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], claim_id[KX_UUID_LEN + 1];
    char agent[KX_UUID_LEN + 1];
    new_run(thread, run);
    new_default_agent(thread, "\"be brief\"", agent);
    kx_db *db = proxied();
    store_agent want;
    assert_int_equal(store_load_agent(db, run, &want), KX_OK);
    assert_string_equal(want.agent_id, agent);
    assert_true(want.version_id[0] != '\0');
    int cuts = kx_th_pgproxy_cuts(g_proxy);
    kx_th_pgproxy_arm(g_proxy, "runner_claim");
    kx_uuid_new(claim_id);
    bool claimed = false;
    store_claim c;
    store_agent got;
    assert_int_equal(store_claim_run_as(db, run, "r1", 10000, claim_id, &claimed, &c, &got),
                     KX_OK);
    assert_int_equal(kx_th_pgproxy_cuts(g_proxy), cuts + 1); /* the retry's answer */
    assert_true(claimed);
    assert_int_equal(c.epoch, 1);
    assert_same_agent(&got, &want);
    store_agent_clear(&got);
    char *v = run_state(run);
    assert_string_equal(v, "running 1 1");
    free(v);
    /* the same claim id once more (a second retry): the same run, the same agent */
    assert_int_equal(store_claim_run_as(db, run, "r1", 10000, claim_id, &claimed, &c, &got),
                     KX_OK);
    assert_true(claimed);
    assert_int_equal(c.epoch, 1);
    assert_same_agent(&got, &want);
    store_agent_clear(&got);
    /* another claim: not claimed, no agent */
    kx_uuid_new(claim_id);
    assert_int_equal(store_claim_run_as(db, run, "r2", 10000, claim_id, &claimed, &c, &got),
                     KX_OK);
    assert_false(claimed);
    assert_string_equal(got.agent_id, "");
    assert_null(got.config);
    store_agent_clear(&want);
    kx_db_close(db);
}

/* The generic plans of the run's agent look-ups (the claim's and runner_agent's) probe agents
 * and agent_versions by index: the named agent by its key, the default one by the account, the
 * version by its key. Before, the agent was chosen by one CASE that no index could
 * serve (a read of agents to its first match, all of it for an account without a default
 * agent, on every claim) and the version was a plain join, planned on this young database as a
 * hash join over every row of agent_versions: two sequential scans per run, and per claim
 * O(every agent version of every account) (docs/performance.md, "Sequential scans per run"). */
static void test_the_agent_of_a_run_is_probed_by_index(void **state)
{
    (void)state;
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], agent[KX_UUID_LEN + 1];
    new_run(thread, run);
    new_default_agent(thread, "\"be brief\"", agent);
    const char *names[] = {"runner_claim", "runner_agent"};
    PQclear(q(g_db.sql, "SET plan_cache_mode = force_generic_plan", 0, NULL));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char why[200];
        char *plan = kx_th_generic_plan(g_db.sql, kx_th_stmt_sql(store_statements(), names[i]),
                                        why, sizeof why);
        if (plan == NULL)
            fail_msg("%s: %s", names[i], why);
        bool bad = strstr(plan, "Seq Scan on agents") != NULL ||
            strstr(plan, "Seq Scan on agent_versions") != NULL ||
            strstr(plan, "agents_pkey") == NULL ||
            strstr(plan, "Index Cond: (account_id = ") == NULL ||
            strstr(plan, "agent_versions_pkey") == NULL;
        if (bad)
            fprintf(stderr, "%s", plan);
        free(plan);
        if (bad)
            fail_msg("%s: the agent or its version is not one index probe (plan above)", names[i]);
    }
    PQclear(q(g_db.sql, "RESET plan_cache_mode", 0, NULL));
}

/* A run's agent by each rule of runner_agent (the claim's is the same join): the agent the
 * run names, of its account or public, with the version the run names (only one of that
 * agent) or else the agent's current one; without a named agent the account's default. */
static void test_the_agent_of_a_run_by_each_rule(void **state)
{
    (void)state;
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], own[KX_UUID_LEN + 1];
    char other_thread[KX_UUID_LEN + 1], other_run[KX_UUID_LEN + 1], other[KX_UUID_LEN + 1];
    new_run(thread, run);
    new_default_agent(thread, "\"mine\"", own);
    new_run(other_thread, other_run);
    new_default_agent(other_thread, "\"theirs\"", other);
    kx_db *db = proxied();
    store_agent got;
    /* no agent named: the account's default, its current version */
    assert_int_equal(store_load_agent(db, run, &got), KX_OK);
    assert_string_equal(got.agent_id, own);
    assert_non_null(strstr(got.config, "mine"));
    store_agent_clear(&got);
    /* another account's agent named, not public: none */
    kx_th_sql_exec(g_db.sql, "UPDATE agent_runs SET agent_id = $2::uuid WHERE id = $1::uuid", 2,
                   (const char *[]){run, other});
    assert_int_equal(store_load_agent(db, run, &got), KX_OK);
    assert_string_equal(got.agent_id, "");
    assert_null(got.config);
    store_agent_clear(&got);
    /* public: that agent, its current version */
    kx_th_sql_exec(g_db.sql, "UPDATE agents SET is_public = true WHERE agent_id = $1::uuid", 1,
                   (const char *[]){other});
    assert_int_equal(store_load_agent(db, run, &got), KX_OK);
    assert_string_equal(got.agent_id, other);
    assert_non_null(strstr(got.config, "theirs"));
    store_agent_clear(&got);
    /* a version of another agent named: the agent, no version */
    kx_th_sql_exec(g_db.sql,
                   "UPDATE agent_runs SET agent_id = $2::uuid, agent_version_id = (SELECT "
                   "current_version_id FROM agents WHERE agent_id = $3::uuid) WHERE id = $1::uuid",
                   3, (const char *[]){run, other, own});
    assert_int_equal(store_load_agent(db, run, &got), KX_OK);
    assert_string_equal(got.agent_id, other);
    assert_string_equal(got.version_id, "");
    assert_null(got.config);
    store_agent_clear(&got);
    /* its own agent and that agent's version named */
    kx_th_sql_exec(g_db.sql, "UPDATE agent_runs SET agent_id = $2::uuid WHERE id = $1::uuid", 2,
                   (const char *[]){run, own});
    assert_int_equal(store_load_agent(db, run, &got), KX_OK);
    assert_string_equal(got.agent_id, own);
    assert_non_null(strstr(got.config, "mine"));
    store_agent_clear(&got);
    /* no agent named and no default agent: none */
    kx_th_sql_exec(g_db.sql,
                   "UPDATE agent_runs SET agent_id = NULL, agent_version_id = NULL "
                   "WHERE id = $1::uuid",
                   1, (const char *[]){run});
    kx_th_sql_exec(g_db.sql, "UPDATE agents SET is_default = false WHERE agent_id = $1::uuid", 1,
                   (const char *[]){own});
    assert_int_equal(store_load_agent(db, run, &got), KX_OK);
    assert_string_equal(got.agent_id, "");
    assert_null(got.config);
    store_agent_clear(&got);
    kx_db_close(db);
}

/* dispatch_claim: the agent the claim returned is the first turn's (parsed); a stored config
 * that cannot be read is not kept (the run reads again and fails with the reason), the claim
 * is won all the same. */
static void test_dispatch_claim_parses_the_agent(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], claim_id[KX_UUID_LEN + 1];
    char agent[KX_UUID_LEN + 1];
    new_run(thread, run);
    add_user_message(thread, "hi");
    new_default_agent(thread, "\"be brief\"", agent);
    kx_db *db = proxied();
    dispatch_claimed got = {0};
    kx_uuid_new(claim_id);
    assert_int_equal(dispatch_claim(db, run, thread, "r1", 10000, 8 << 20, claim_id, &got), KX_OK);
    assert_true(got.claimed);
    assert_true(got.preloaded);
    assert_true(got.first.agent_loaded);
    assert_true(got.first.agent.found);
    assert_string_equal(got.first.agent.agent_id, agent);
    assert_string_equal(got.first.agent.system_prompt, "be brief");
    assert_int_equal(json_array_size(got.first.msgs), 1);
    run_loaded_clear(&got.first);
    /* system_prompt not a string: not kept */
    new_run(thread, run);
    add_user_message(thread, "hi");
    new_default_agent(thread, "42", agent);
    kx_uuid_new(claim_id);
    assert_int_equal(dispatch_claim(db, run, thread, "r1", 10000, 8 << 20, claim_id, &got), KX_OK);
    assert_true(got.claimed);
    assert_false(got.preloaded);
    assert_false(got.first.agent_loaded);
    assert_null(got.first.msgs);
    char *v = run_state(run);
    assert_string_equal(v, "running 1 1");
    free(v);
    kx_db_close(db);
}

/* What dispatch_claim relies on: in the pipeline, a read that fails before the claim makes
 * Postgres skip the claim (not run, so nothing to undo: the run stays queued), and the claim
 * then made alone takes it. */
static void test_claim_after_a_failed_read_is_not_run(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], claim_id[KX_UUID_LEN + 1];
    new_run(thread, run);
    kx_uuid_new(claim_id);
    kx_db *db = proxied();
    assert_int_equal(kx_db_pipe_begin(db), KX_OK);
    (void)store_load_llm_messages_send(db, "not-a-uuid", 8 << 20);
    (void)store_claim_run_send(db, run, "r1", 10000, claim_id);
    store_msg *rows = NULL;
    size_t n = 0;
    assert_int_not_equal(store_load_llm_messages_recv(db, &rows, &n), KX_OK);
    bool claimed = true;
    store_claim c;
    assert_int_equal(store_claim_run_recv(db, &claimed, &c, NULL), KX_ERR_CANCELLED);
    assert_false(claimed);
    kx_db_pipe_end(db);
    char *v = run_state(run);
    assert_string_equal(v, "queued 0 0");
    free(v);
    assert_int_equal(store_claim_run_as(db, run, "r1", 10000, claim_id, &claimed, &c, NULL),
                     KX_OK);
    assert_true(claimed);
    v = run_state(run);
    assert_string_equal(v, "running 1 1");
    free(v);
    kx_db_close(db);
}

/* ---- the finish of an answered run (runner_finish_answered) ---------------------------- */

static kx_err finish_answered(kx_db *db, const char *run, int64_t epoch, bool *won, bool *ours)
{
    assert_int_equal(kx_db_pipe_begin(db), KX_OK);
    (void)store_finish_answered_send(db, run, epoch);
    kx_err err = store_finish_answered_recv(db, won, ours);
    kx_db_pipe_end(db);
    return err;
}

static void save_row(kx_db *db, const char *run, int64_t epoch, const char *type, bool llm)
{
    char mid[KX_UUID_LEN + 1];
    kx_uuid_new(mid);
    store_row row;
    assert_int_equal(store_insert_message(db, run, epoch, mid, type, llm, "{}", "{}", &row),
                     KX_OK);
}

/* The run ends when its answer is the thread's newest LLM message (status rows after it do
 * not count); a newer LLM message declines the finish (the run goes on, still ours); a moved
 * epoch fences it; a lost answer is recognised. */
static void test_finish_answered_decides_as_a_read_would(void **state)
{
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    new_run(thread, run);
    kx_db *db = proxied();
    bool claimed = false, won = true, ours = false;
    store_claim c;
    assert_int_equal(store_claim_run(db, run, "r1", 10000, &claimed, &c), KX_OK);
    save_row(db, run, c.epoch, "assistant", true);
    add_user_message(thread, "say again"); /* after the answer: another turn is due */
    save_row(db, run, c.epoch, "status", false);
    assert_int_equal(finish_answered(db, run, c.epoch, &won, &ours), KX_OK);
    assert_false(won);
    assert_true(ours);
    char *v = run_state(run);
    assert_string_equal(v, "running 1 1");
    free(v);
    /* the next answer is the newest again: the run ends, even with its answer lost */
    save_row(db, run, c.epoch, "assistant", true);
    save_row(db, run, c.epoch, "status", false);
    int cuts = kx_th_pgproxy_cuts(g_proxy);
    kx_th_pgproxy_arm(g_proxy, "runner_finish_answered");
    kx_err err = finish_answered(db, run, c.epoch, &won, &ours);
    assert_int_equal(kx_th_pgproxy_cuts(g_proxy), cuts + 1);
    assert_int_equal(err, KX_ERR_UNAVAILABLE); /* kx_db_pipe_* retries nothing: run_ops does */
    assert_int_equal(finish_answered(db, run, c.epoch, &won, &ours), KX_OK);
    assert_true(won);
    v = run_state(run);
    assert_string_equal(v, "completed 1 1");
    free(v);
    /* fenced: another epoch */
    new_run(thread, run);
    assert_int_equal(store_claim_run(db, run, "r1", 10000, &claimed, &c), KX_OK);
    save_row(db, run, c.epoch, "assistant", true);
    assert_int_equal(finish_answered(db, run, c.epoch + 1, &won, &ours), KX_OK);
    assert_false(won);
    assert_false(ours);
    kx_db_close(db);
}

/* The runner's LLM history (runner_llm_messages, 3 loads per run) reads a thread's LLM rows
 * from the heap and tests is_llm_message on the index entries: migration 015 folded the
 * partial index of the LLM rows into messages_thread_created_idx (thread_id, created_at,
 * is_llm_message). As a filter, the test would read and drop every non-LLM row of the thread
 * (most of a thread's rows: statuses, turn ends) on each load. Generic plan, as the runner's
 * prepared statement gets at its sixth call; the thread holds rows of both kinds. */
static void test_llm_history_tests_the_index_entries(void **state)
{
    (void)state;
    char thread[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    new_run(thread, run);
    const char *tp[] = {thread};
    PQclear(q(g_db.sql,
              "INSERT INTO messages (thread_id, account_id, type, is_llm_message, content) "
              "SELECT $1::uuid, gen_random_uuid(), CASE WHEN g % 4 = 0 THEN 'assistant' "
              "ELSE 'status' END, g % 4 = 0, '{}' FROM generate_series(1, 40) g",
              1, tp));
    PQclear(q(g_db.sql, "SET plan_cache_mode = force_generic_plan", 0, NULL));
    PGresult *r = PQprepare(g_db.sql, "llm_probe",
                            kx_th_stmt_sql(store_statements(), "runner_llm_messages"), 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("prepare runner_llm_messages: %s", PQerrorMessage(g_db.sql));
    PQclear(r);
    char sql[128];
    snprintf(sql, sizeof sql, "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE llm_probe('%s', 8388608)",
             thread);
    r = q(g_db.sql, sql, 0, NULL);
    char plan[8192] = "";
    bool cond = false;
    for (int row = 0; row < PQntuples(r); row++) {
        const char *line = PQgetvalue(r, row, 0);
        strncat(plan, line, sizeof plan - strlen(plan) - 2);
        strncat(plan, "\n", sizeof plan - strlen(plan) - 1);
        cond = cond ||
            (strstr(line, "Index Cond") != NULL && strstr(line, "is_llm_message = true") != NULL);
    }
    PQclear(r);
    PQclear(q(g_db.sql, "DEALLOCATE llm_probe", 0, NULL));
    PQclear(q(g_db.sql, "RESET plan_cache_mode", 0, NULL));
    if (!cond || strstr(plan, "messages_thread_created_idx") == NULL ||
        strstr(plan, "Rows Removed by Filter") != NULL)
        fail_msg("runner_llm_messages does not test is_llm_message on the entries of "
                 "messages_thread_created_idx:\n%s",
                 plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_fence_races_a_reap),
        cmocka_unit_test(test_message_fence_after_reap_refuses),
        cmocka_unit_test(test_claim_answer_lost_recognises_itself),
        cmocka_unit_test(test_insert_answer_lost_writes_once),
        cmocka_unit_test(test_finish_answer_lost_still_wins),
        cmocka_unit_test(test_rows_keep_their_order),
        cmocka_unit_test(test_rows_fenced_write_nothing),
        cmocka_unit_test(test_server_conflict_is_not_the_fence),
        cmocka_unit_test(test_finish_server_conflict_is_not_the_fence),
        cmocka_unit_test(test_rows_retry_and_mix),
        cmocka_unit_test(test_rows_statement_keeps_its_generic_plan),
        cmocka_unit_test(test_plain_write_is_not_retried),
        cmocka_unit_test(test_run_row_lookups_use_the_primary_key),
        cmocka_unit_test(test_claim_brings_the_first_reads),
        cmocka_unit_test(test_claim_keeps_no_reads_of_another_thread),
        cmocka_unit_test(test_claim_pipeline_answer_lost),
        cmocka_unit_test(test_claim_after_a_failed_read_is_not_run),
        cmocka_unit_test(test_claim_returns_the_agent),
        cmocka_unit_test(test_dispatch_claim_parses_the_agent),
        cmocka_unit_test(test_the_agent_of_a_run_is_probed_by_index),
        cmocka_unit_test(test_the_agent_of_a_run_by_each_rule),
        cmocka_unit_test(test_finish_answered_decides_as_a_read_would),
        cmocka_unit_test(test_llm_history_tests_the_index_entries),
        cmocka_unit_test(test_usage_statement_only_for_usage_batches),
        cmocka_unit_test(test_insert_finish_answer_lost_wins_once),
        cmocka_unit_test(test_insert_finish_waits_for_a_reap_and_is_fenced),
        cmocka_unit_test(test_fenced_rows_skip_the_reference_check),
        cmocka_unit_test(test_message_references_hold),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
