/* test_runner_db.c — the agent-runner's Postgres is off its loop thread (services/agent-runner
 * rdb.h, run_ops.h), through the whole stack:
 *  - a run whose write waits for a row lock (the test holds its agent_runs row FOR UPDATE while
 *    the run's LLM answer is in flight, then waits until a backend waits for that lock) stalls
 *    no other run: runs submitted then are
 *    claimed and complete while the lock is held (KX_RUNNER_DB_CONNS=4: a run shares the
 *    blocked connection with probability 1/4, so of 8 runs admitted together some always get
 *    through — KX_MAX_PARALLEL_RUNS=16 lets all 8 be admitted at once); once the
 *    lock is released the blocked run completes too, its rows and events intact. When the
 *    runner did its statements on its loop, that one insert stopped every run of the process.
 *  - the rows of a run with a tool step are written in their order and the stream shows them
 *    in that order (events are published only after their batch committed).
 *  - many runs at once, their batches group-committed several runs per transaction
 *    (kx/db_worker.h): every run completes with the same rows as a run alone, none twice.
 *  - a message that lands in the thread between the model's answer and the run's finish gets
 *    another turn (the finish of an answered run checks the thread itself).
 *  - a run whose end cannot be written (a server error, neither the fence nor Postgres gone)
 *    fails with the reason; if its failure cannot be written either, it is released to the
 *    reaper, which ends it within seconds (tests with a trigger that refuses the end); a
 *    release that finds Postgres gone hands the run back once it answers; an end that hits
 *    the statement timeout releases the run (the attempt counts): it does not cycle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_client.h"
#include "harness.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "stack.h"

#define RUN_TIMEOUT_MS 60000
#define NB 8

static kx_th_stack g_stack;

static int setup(void **state)
{
    (void)state;
    /* the blocked statement must outlive the lock (the default statement_timeout is 5 s).
     * KX_MAX_PARALLEL_RUNS=16: the other runs are the same account's, and they must all be
     * admitted at once. With the default limit (3) run A and two others filled the account:
     * the next run was admitted only when one of them ended, and a run whose jobs hash to A's
     * blocked connection (1 in 4) holds its slot until the lock goes — so when the first two
     * both did (1 in 16), nothing else was admitted and 0 of 8 completed (the flake seen under
     * ctest -j3; reproduced by the lane of each run id against its dispatch and end times).
     * Debug level: the runner logs each batch it sends (test_a_tool_run_writes_few_statements). */
    const char *env[] = {"KX_RUNNER_DB_CONNS=4", "KX_DB_STATEMENT_TIMEOUT_MS=30000",
                         "KX_MAX_PARALLEL_RUNS=16", "KX_LOG_LEVEL=debug", NULL};
    kx_th_stack_opts o = {.env = env};
    return kx_th_stack_start(&o, &g_stack) == KX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return kx_th_stack_stop(&g_stack, false) == 0 ? 0 : -1;
}

static char *run_status(const char *run)
{
    const char *p[] = {run};
    return kx_th_sql_value(&g_stack, "SELECT status FROM agent_runs WHERE id = $1::uuid", 1, p);
}

static bool status_is(const char *run, const char *want)
{
    char *s = run_status(run);
    bool is = s != NULL && strcmp(s, want) == 0;
    free(s);
    return is;
}

/* Waits until the run is no longer queued/running; its final status (malloc'd) or NULL. */
static char *wait_end(const char *run, int64_t timeout_ms)
{
    int64_t until = kx_mono_ms() + timeout_ms;
    while (kx_mono_ms() < until) {
        char *s = run_status(run);
        if (s != NULL && strcmp(s, "queued") != 0 && strcmp(s, "running") != 0)
            return s;
        free(s);
        usleep(50 * 1000);
    }
    return NULL;
}

static void initiate(const char *token, const char *prompt, char run[KX_UUID_LEN + 1])
{
    char thread[KX_UUID_LEN + 1];
    long st = kx_th_initiate(&g_stack, token, prompt, run, thread);
    if (st != 200 || run[0] == '\0')
        fail_msg("initiate \"%s\": HTTP %ld", prompt, st);
}

static void test_a_blocked_run_stalls_no_other(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    assert_non_null(token);
    char a[KX_UUID_LEN + 1];
    initiate(token, "sleep 1000\nsay hi", a); /* its answer comes in 1 s */

    /* its turn has begun (those rows are committed): the LLM call is in flight */
    const char *pa[] = {a};
    int64_t until = kx_mono_ms() + RUN_TIMEOUT_MS;
    char *n = NULL;
    while (kx_mono_ms() < until) {
        n = kx_th_sql_value(&g_stack,
                            "SELECT count(*) FROM messages WHERE agent_run_id = $1::uuid "
                            "AND content->>'status_type' = 'assistant_response_start'",
                            1, pa);
        if (n != NULL && strcmp(n, "1") == 0)
            break;
        free(n);
        n = NULL;
        usleep(20 * 1000);
    }
    assert_non_null(n);
    free(n);

    /* hold the run row: the answer's rows (their insert locks the row FOR SHARE) must wait */
    PGconn *lock = PQconnectdb(g_stack.pg.url);
    assert_int_equal(PQstatus(lock), CONNECTION_OK);
    PGresult *res = PQexec(lock, "BEGIN");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    const char *lp[] = {a};
    res = PQexecParams(lock, "SELECT 1 FROM agent_runs WHERE id = $1::uuid FOR UPDATE", 1, NULL,
                       lp, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    PQclear(res);
    int64_t locked_at = kx_mono_ms();

    /* A's answer arrives and its rows wait for the lock: a backend waits on it */
    char *waiting = NULL;
    while (kx_mono_ms() < locked_at + RUN_TIMEOUT_MS) {
        waiting = kx_th_sql_value(&g_stack,
                                  "SELECT count(*) FROM pg_stat_activity WHERE "
                                  "wait_event_type = 'Lock' AND datname = current_database()",
                                  0, NULL);
        if (waiting != NULL && strcmp(waiting, "0") != 0)
            break;
        free(waiting);
        waiting = NULL;
        usleep(20 * 1000);
    }
    assert_non_null(waiting);
    free(waiting);

    /* other runs, while A's write waits */
    char b[NB][KX_UUID_LEN + 1];
    for (int i = 0; i < NB; i++)
        initiate(token, "say hi", b[i]);
    int done = 0;
    int64_t deadline = kx_mono_ms() + 12000;
    while (kx_mono_ms() < deadline) {
        done = 0;
        for (int i = 0; i < NB; i++)
            done += status_is(b[i], "completed");
        if (done == NB)
            break;
        usleep(100 * 1000);
    }
    /* A really waited all along: it is still running */
    bool a_running = status_is(a, "running");
    print_message("[ blocked  ] %d of %d other runs completed while run A waited for the lock "
                  "(%lld ms); A running: %s\n",
                  done, NB, (long long)(kx_mono_ms() - locked_at), a_running ? "yes" : "no");
    res = PQexec(lock, "ROLLBACK");
    PQclear(res);
    PQfinish(lock);
    assert_true(a_running);
    assert_true(done >= 1); /* 0 when one blocked statement holds up the whole runner */

    char *s = wait_end(a, RUN_TIMEOUT_MS);
    assert_non_null(s);
    assert_string_equal(s, "completed");
    free(s);
    for (int i = 0; i < NB; i++) {
        s = wait_end(b[i], RUN_TIMEOUT_MS);
        assert_non_null(s);
        assert_string_equal(s, "completed");
        free(s);
    }
    /* A's answer is saved once, after the wait */
    n = kx_th_sql_value(&g_stack,
                        "SELECT count(*) FROM messages WHERE agent_run_id = $1::uuid "
                        "AND type = 'assistant'",
                        1, pa);
    assert_non_null(n);
    assert_string_equal(n, "1");
    free(n);
    free(token);
}

/* The SSE stream of a tool run shows its rows in the order they were written. */
static void test_events_follow_the_rows(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    assert_non_null(token);
    char r[KX_UUID_LEN + 1];
    initiate(token, "call execute_command {\"command\": \"echo hi\", \"blocking\": true}", r);
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", r);
    kx_th_sse sse;
    assert_int_equal(kx_th_sse_read(&g_stack, path, token, RUN_TIMEOUT_MS, &sse), KX_OK);
    assert_true(sse.terminal);
    /* the message ids of the MESSAGE events, in stream order */
    json_t *ids = json_array();
    for (size_t i = 0; i < sse.n; i++) {
        json_t *ev = json_loads(sse.data[i], 0, NULL);
        const char *mid = json_string_value(json_object_get(ev, "message_id"));
        if (mid != NULL && json_object_get(ev, "created_at") != NULL)
            json_array_append_new(ids, json_string(mid));
        json_decref(ev);
    }
    kx_th_sse_free(&sse);
    const char *pr[] = {r};
    PGresult *res = kx_th_sql(&g_stack,
                              "SELECT message_id::text FROM messages WHERE agent_run_id = "
                              "$1::uuid AND type <> 'assistant_response_end' ORDER BY created_at",
                              1, pr);
    assert_non_null(res);
    int rows = PQntuples(res);
    json_t *saved = json_object(); /* the run's rows (not the gateway's user message) */
    for (int i = 0; i < rows; i++)
        json_object_set_new(saved, PQgetvalue(res, i, 0), json_true());
    json_t *streamed = json_array();
    for (size_t i = 0; i < json_array_size(ids); i++) {
        const char *id = json_string_value(json_array_get(ids, i));
        if (json_object_get(saved, id) != NULL)
            json_array_append_new(streamed, json_string(id));
    }
    print_message("[ order    ] %d rows saved, %zu of them streamed\n", rows,
                  json_array_size(streamed));
    assert_true(rows >= 8);
    assert_int_equal((size_t)rows, json_array_size(streamed));
    /* a tool row's event follows its tool_completed status (allowed: that one swap) */
    for (int i = 0; i < rows; i++) {
        const char *want = PQgetvalue(res, i, 0);
        const char *got = json_string_value(json_array_get(streamed, (size_t)i));
        const char *prev =
            i > 0 ? json_string_value(json_array_get(streamed, (size_t)i - 1)) : NULL;
        const char *next = json_string_value(json_array_get(streamed, (size_t)i + 1));
        bool ok = strcmp(want, got) == 0 || (prev && strcmp(want, prev) == 0) ||
            (next && strcmp(want, next) == 0);
        if (!ok)
            fail_msg("row %d (%s) is not where the stream put it", i, want);
    }
    json_decref(saved);
    json_decref(streamed);
    PQclear(res);
    json_decref(ids);
    free(token);
}

/* NG runs of a tool step at once: their batches queue on the 4 connections and are committed
 * together. Each run ends completed with exactly the rows of a run alone, no row twice. */
#define NG 24
static void test_many_runs_group_committed(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    assert_non_null(token);
    char runs[NG][KX_UUID_LEN + 1];
    for (int i = 0; i < NG; i++)
        initiate(token, "call view_tasks {}", runs[i]);
    char *rows0 = NULL;
    for (int i = 0; i < NG; i++) {
        char *st = wait_end(runs[i], RUN_TIMEOUT_MS);
        assert_non_null(st);
        assert_string_equal(st, "completed");
        free(st);
        const char *p[] = {runs[i]};
        char *rows = kx_th_sql_value(&g_stack,
                                     "SELECT count(*) || '/' || count(DISTINCT message_id) || "
                                     "'/' || string_agg(type, ',' ORDER BY created_at) "
                                     "FROM messages WHERE agent_run_id = $1::uuid",
                                     1, p);
        assert_non_null(rows);
        if (rows0 == NULL) {
            rows0 = rows;
            print_message("[ rows     ] each run: %s\n", rows0);
            continue;
        }
        assert_string_equal(rows, rows0); /* the same rows as every other run, none twice */
        free(rows);
    }
    free(rows0);
    /* the runner's write batches and ends went out pipelined (kx/db_worker.h) */
    long long pipelines =
        kx_th_metric(kx_th_stack_proc(&g_stack, "agent-runner")->port, "kx_db_pipelines_total");
    print_message("[ pipes    ] kx_db_pipelines_total: %lld\n", pipelines);
    assert_true(pipelines >= NG);
    free(token);
}

/* Drops the test's trigger name on table, its function name() (each test names both alike)
 * and the sequences it counted in, seq1 and seq2 (NULL: none). */
static void drop_test_trigger(const char *table, const char *name, const char *seq1,
                              const char *seq2)
{
    char sql[160];
    snprintf(sql, sizeof sql, "DROP TRIGGER %s ON %s", name, table);
    PQclear(kx_th_sql(&g_stack, sql, 0, NULL));
    snprintf(sql, sizeof sql, "DROP FUNCTION %s()", name);
    PQclear(kx_th_sql(&g_stack, sql, 0, NULL));
    const char *seqs[] = {seq1, seq2};
    for (size_t i = 0; i < 2; i++) {
        if (seqs[i] == NULL)
            continue;
        snprintf(sql, sizeof sql, "DROP SEQUENCE %s", seqs[i]);
        PQclear(kx_th_sql(&g_stack, sql, 0, NULL));
    }
}

/* How many times the test's counting sequence seq was advanced (0: never); -1 when unreadable. */
static long seq_calls(const char *seq)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s",
             seq);
    char *n = kx_th_sql_value(&g_stack, sql, 0, NULL);
    long v = n != NULL ? strtol(n, NULL, 10) : -1;
    free(n);
    return v;
}

/* A message added to the thread while the model's answer is written (here by a trigger on the
 * answer's row, so that it is stamped after the answer and committed with it — the gateway may
 * add one at any time). The answer's rows and the run's finish are ONE statement
 * (runner_insert_messages_finish), which sees the thread as it was before it: the answer is
 * its newest LLM message there, so the run ends with it, and the message stays for the next
 * run. Before, the finish was a statement of its own behind the insert (runner_finish_answered,
 * still used when the answer's row went in an earlier statement), which saw the message and
 * declined: the run took another turn. Both are the same race with a concurrent writer (a
 * message committed while the deciding statement runs is not seen by either), moved to the
 * answer's own statement; the finish's check stays covered by unit_runner_store
 * (test_finish_answered_decides_as_a_read_would). */
static void test_a_message_with_the_answer_is_for_the_next_run(void **state)
{
    (void)state;
    PQclear(kx_th_sql(&g_stack,
                      "CREATE FUNCTION kx_test_inject() RETURNS trigger LANGUAGE plpgsql AS $$ "
                      "BEGIN IF NEW.type = 'assistant' AND EXISTS (SELECT 1 FROM messages "
                      "WHERE thread_id = NEW.thread_id AND content->>'content' = 'say first') "
                      "AND NOT EXISTS (SELECT 1 FROM messages WHERE thread_id = NEW.thread_id "
                      "AND content->>'content' = 'say again') THEN "
                      "INSERT INTO messages (thread_id, account_id, type, is_llm_message, "
                      "content, metadata, created_at) VALUES (NEW.thread_id, NEW.account_id, "
                      "'user', true, '{\"role\": \"user\", \"content\": \"say again\"}', "
                      "'{}', NEW.created_at + interval '1 millisecond'); END IF; "
                      "RETURN NULL; END $$",
                      0, NULL));
    PQclear(kx_th_sql(&g_stack,
                      "CREATE TRIGGER kx_test_inject AFTER INSERT ON messages FOR EACH ROW "
                      "EXECUTE FUNCTION kx_test_inject()",
                      0, NULL));
    char account[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    assert_non_null(token);
    char r[KX_UUID_LEN + 1];
    initiate(token, "say first", r);
    char *st = wait_end(r, RUN_TIMEOUT_MS);
    drop_test_trigger("messages", "kx_test_inject", NULL, NULL);
    assert_non_null(st);
    assert_string_equal(st, "completed");
    free(st);
    const char *p[] = {r};
    char *llm =
        kx_th_sql_value(&g_stack,
                        "SELECT string_agg(m.type || ':' || coalesce(m.content->>'content', "
                        "''), ',' ORDER BY m.created_at) FROM messages m JOIN agent_runs "
                        "a ON a.thread_id = m.thread_id WHERE a.id = $1::uuid AND "
                        "m.is_llm_message",
                        1, p);
    assert_non_null(llm);
    print_message("[ thread   ] %s\n", llm);
    assert_string_equal(llm, "user:say first,assistant:first,user:say again");
    free(llm);
    char *turns = kx_th_sql_value(&g_stack,
                                  "SELECT count(*) FROM messages WHERE agent_run_id = $1::uuid "
                                  "AND content->>'status_type' = 'thread_run_start'",
                                  1, p);
    assert_non_null(turns);
    assert_string_equal(turns, "1");
    free(turns);
    free(token);
}

/* The runner's batch counters (/metrics, run_ops.c). */
typedef struct batch_counts {
    long long batches, inserts, rows;
} batch_counts;

static batch_counts counts_now(void)
{
    uint16_t port = kx_th_stack_proc(&g_stack, "agent-runner")->port;
    return (batch_counts){kx_th_metric(port, "kx_runner_db_batches_total"),
                          kx_th_metric(port, "kx_runner_db_insert_statements_total"),
                          kx_th_metric(port, "kx_runner_db_message_rows_total")};
}

/* The run's rows as "type[:status_type],..." in their order (malloc'd). */
static char *run_rows(const char *run)
{
    const char *p[] = {run};
    return kx_th_sql_value(&g_stack,
                           "SELECT string_agg(type || coalesce(':' || (content->>'status_type'), "
                           "''), ',' ORDER BY created_at) FROM messages WHERE agent_run_id = "
                           "$1::uuid",
                           1, p);
}

/* The rows of a run with one tool call (two model turns), as every test below expects them. */
#define TOOL_RUN_ROWS                                                                        \
    "status:thread_run_start,status:assistant_response_start,status:tool_started,assistant," \
    "tool,status:tool_completed,status:finish,assistant_response_end,status:thread_run_end," \
    "status:thread_run_start,status:assistant_response_start,assistant,status:finish,"       \
    "assistant_response_end,status:thread_run_end"

/* A run with one tool call alone: its 15 rows in at most 4 insert statements and 4 batches —
 * the turn's start rows; the tool call's start (tool_started and the answer, while the tool
 * runs; with a fast tool it is often still waiting behind the first batch and goes with the
 * next); the tool's result and the turn's end together with the next turn's start rows and its
 * read of the thread (one insert and one read in one batch); the answer's rows with the finish,
 * in one statement.
 * Before, the next turn's start rows were queued only once its read was back: a batch and an
 * insert of their own (4-5 batches and inserts; the check of the merged batch fails there). */
static void test_a_tool_run_writes_few_statements(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    assert_non_null(token);
    batch_counts before = counts_now();
    assert_true(before.batches >= 0 && before.inserts >= 0 && before.rows >= 0);
    char r[KX_UUID_LEN + 1];
    initiate(token, "call view_tasks {}", r);
    char *st = wait_end(r, RUN_TIMEOUT_MS);
    assert_non_null(st);
    assert_string_equal(st, "completed");
    free(st);
    batch_counts after = counts_now();
    char *rows = run_rows(r);
    assert_non_null(rows);
    print_message("[ batches  ] one tool run: %lld batch(es), %lld insert statement(s), %lld "
                  "row(s): %s\n",
                  after.batches - before.batches, after.inserts - before.inserts,
                  after.rows - before.rows, rows);
    /* the batches (logged at debug level): the turn's end, the next turn's start rows in the
     * same insert, the read behind them */
    FILE *f = fopen(kx_th_stack_proc(&g_stack, "agent-runner")->log, "r");
    assert_non_null(f);
    char line[8192];
    bool merged = false, ended = false;
    while (fgets(line, sizeof line, f) != NULL) {
        const char *m = strstr(line, "run: batch:");
        if (m == NULL || strstr(line, r) == NULL)
            continue;
        print_message("[ batch    ] %.*s\n", (int)strcspn(m, "\"\n"), m);
        merged = merged ||
            strstr(m, "thread_run_end,thread_run_start,assistant_response_start] load") != NULL;
        /* the answer's rows and the finish: one statement (store_insert_finish) */
        ended = ended || strstr(m, "assistant_response_end,thread_run_end]+finish") != NULL;
    }
    fclose(f);
    assert_true(merged);
    assert_true(ended);
    assert_string_equal(rows, TOOL_RUN_ROWS);
    free(rows);
    assert_int_equal(after.rows - before.rows, 15);
    assert_true(after.inserts - before.inserts <= 4);
    assert_true(after.batches - before.batches <= 4);
    free(token);
}

/* Whether the file holds both strings on one line. */
static bool log_has(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, a) != NULL && strstr(line, b) != NULL;
    fclose(f);
    return found;
}

/* The run's lease moves on (another claim, as the reaper or a STOP would make it) while the
 * batch that holds the tool's result, the turn's end, the next turn's start rows and its read
 * waits for the run row (the test holds it FOR UPDATE from the moment tool_started is
 * committed and the tool — 1 s — still runs, and bumps the epoch once that batch waits): the
 * batch is fenced as a whole — none of its rows is written — and the run is dropped. */
static void test_a_merged_batch_is_fenced(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    assert_non_null(token);
    char r[KX_UUID_LEN + 1];
    initiate(token, "call execute_command {\"command\": \"sleep 1; echo hi\", \"blocking\": true}",
             r);
    const char *p[] = {r};
    int64_t until = kx_mono_ms() + RUN_TIMEOUT_MS;
    bool started = false;
    while (!started && kx_mono_ms() < until) {
        char *n = kx_th_sql_value(&g_stack,
                                  "SELECT count(*) FROM messages WHERE agent_run_id = $1::uuid "
                                  "AND content->>'status_type' = 'tool_started'",
                                  1, p);
        started = n != NULL && strcmp(n, "1") == 0;
        free(n);
        if (!started)
            usleep(10 * 1000);
    }
    assert_true(started);
    PGconn *lock = PQconnectdb(g_stack.pg.url);
    assert_int_equal(PQstatus(lock), CONNECTION_OK);
    /* The epoch is bumped with the triggers off (replica role, this transaction only): the
     * revocation trigger would otherwise record it, and the runner's next heartbeat answer
     * could drop the run before the batch's own fence does (the race this test once lost). */
    PQclear(PQexec(lock, "BEGIN"));
    PQclear(PQexec(lock, "SET LOCAL session_replication_role = replica"));
    PGresult *res = PQexecParams(lock, "SELECT 1 FROM agent_runs WHERE id = $1::uuid FOR UPDATE",
                                 1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQntuples(res), 1);
    PQclear(res);
    bool waits = false; /* the tool's batch waits for the row */
    while (!waits && kx_mono_ms() < until) {
        char *n = kx_th_sql_value(&g_stack,
                                  "SELECT count(*) FROM pg_stat_activity WHERE "
                                  "wait_event_type = 'Lock' AND datname = current_database()",
                                  0, NULL);
        waits = n != NULL && strcmp(n, "0") != 0;
        free(n);
        if (!waits)
            usleep(10 * 1000);
    }
    res = PQexecParams(lock,
                       "UPDATE agent_runs SET lease_epoch = lease_epoch + 1 WHERE id = $1::uuid",
                       1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQclear(PQexec(lock, "COMMIT"));
    PQfinish(lock);
    assert_true(waits);
    kx_th_proc *runner = kx_th_stack_proc(&g_stack, "agent-runner");
    while (kx_mono_ms() < until && !log_has(runner->log, r, "dropped"))
        usleep(50 * 1000);
    usleep(300 * 1000); /* nothing more comes */
    char *rows = run_rows(r);
    assert_non_null(rows);
    print_message("[ fenced   ] %s\n", rows);
    assert_string_equal(rows,
                        "status:thread_run_start,status:assistant_response_start,"
                        "status:tool_started,assistant");
    free(rows);
    /* by the fence of that batch, not by a heartbeat's answer */
    assert_true(log_has(runner->log, r, "fenced: a message insert"));
    PQclear(kx_th_sql(&g_stack, /* not left running for the reaper */
                      "UPDATE agent_runs SET status = 'stopped', completed_at = now() "
                      "WHERE id = $1::uuid",
                      1, p));
    free(token);
}

/* The connection is lost in the middle of the batch that holds the tool's result, the turn's
 * end and the next turn's start rows (a trigger ends its own backend once, at the tool row):
 * the batch runs again whole and the run ends with every row once, in order, and its stream
 * shows each row once. */
static void test_a_merged_batch_survives_a_lost_connection(void **state)
{
    (void)state;
    PQclear(kx_th_sql(&g_stack, "CREATE SEQUENCE kx_test_once", 0, NULL));
    PQclear(kx_th_sql(&g_stack,
                      "CREATE FUNCTION kx_test_cut() RETURNS trigger LANGUAGE plpgsql AS $$ "
                      "BEGIN IF NEW.type = 'tool' THEN IF nextval('kx_test_once') = 1 THEN "
                      "PERFORM pg_terminate_backend(pg_backend_pid()); END IF; END IF; "
                      "RETURN NULL; END $$",
                      0, NULL));
    PQclear(kx_th_sql(&g_stack,
                      "CREATE TRIGGER kx_test_cut AFTER INSERT ON messages FOR EACH ROW "
                      "EXECUTE FUNCTION kx_test_cut()",
                      0, NULL));
    char account[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    assert_non_null(token);
    char r[KX_UUID_LEN + 1];
    initiate(token, "call view_tasks {}", r);
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", r);
    kx_th_sse sse;
    kx_err err = kx_th_sse_read(&g_stack, path, token, RUN_TIMEOUT_MS, &sse);
    char *st = wait_end(r, RUN_TIMEOUT_MS);
    char *cut = kx_th_sql_value(&g_stack, "SELECT last_value FROM kx_test_once", 0, NULL);
    drop_test_trigger("messages", "kx_test_cut", "kx_test_once", NULL);
    assert_int_equal(err, KX_OK);
    assert_non_null(st);
    assert_string_equal(st, "completed");
    free(st);
    assert_non_null(cut);
    print_message("[ cut      ] the tool row's trigger ran %s time(s)\n", cut);
    assert_true(strtol(cut, NULL, 10) >= 2); /* it cut the connection once, the batch ran again */
    free(cut);
    char *rows = run_rows(r);
    assert_non_null(rows);
    assert_string_equal(rows, TOOL_RUN_ROWS);
    free(rows);
    /* every saved row streamed once */
    const char *pr[] = {r};
    PGresult *res = kx_th_sql(&g_stack,
                              "SELECT message_id::text FROM messages WHERE agent_run_id = "
                              "$1::uuid AND type <> 'assistant_response_end'",
                              1, pr);
    assert_non_null(res);
    for (int i = 0; i < PQntuples(res); i++) {
        int seen = 0;
        for (size_t k = 0; k < sse.n; k++) {
            json_t *ev = json_loads(sse.data[k], 0, NULL);
            const char *mid = json_string_value(json_object_get(ev, "message_id"));
            seen += mid != NULL && json_object_get(ev, "created_at") != NULL &&
                strcmp(mid, PQgetvalue(res, i, 0)) == 0;
            json_decref(ev);
        }
        if (seen != 1)
            fail_msg("row %s streamed %d time(s)", PQgetvalue(res, i, 0), seen);
    }
    PQclear(res);
    kx_th_sse_free(&sse);
    free(token);
}

/* A test trigger on the runner's end of the runs of the threads whose first message is prompt:
 * a change of their status to one of statuses (an SQL list: "'completed'") made by their
 * runner (while the run names one) runs action (plpgsql: a RAISE refuses it, a pg_sleep slows
 * it); the first upto times only (0: always). Each time counts in the sequence kx_test_ends
 * (not rolled back). */
static void on_ends(const char *prompt, const char *statuses, const char *action, int upto)
{
    PQclear(kx_th_sql(&g_stack, "CREATE SEQUENCE kx_test_ends", 0, NULL));
    char sql[1400];
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION kx_test_no_end() RETURNS trigger LANGUAGE plpgsql AS $$ "
             "BEGIN IF OLD.status = 'running' AND NEW.status IN (%s) "
             "AND OLD.lease_owner IS NOT NULL AND EXISTS (SELECT 1 FROM messages m "
             "WHERE m.thread_id = NEW.thread_id AND m.content->>'content' = '%s') "
             "AND (%d = 0 OR (SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
             "FROM kx_test_ends) < %d) THEN PERFORM nextval('kx_test_ends'); %s; "
             "END IF; RETURN NEW; END $$",
             statuses, prompt, upto, upto, action);
    PQclear(kx_th_sql(&g_stack, sql, 0, NULL));
    PQclear(kx_th_sql(&g_stack,
                      "CREATE TRIGGER kx_test_no_end BEFORE UPDATE ON agent_runs FOR EACH ROW "
                      "EXECUTE FUNCTION kx_test_no_end()",
                      0, NULL));
}

#define REFUSE_KX "RAISE EXCEPTION USING ERRCODE = 'KX042', MESSAGE = 'test: no end'"
#define REFUSE_DEADLOCK "RAISE EXCEPTION USING ERRCODE = '40P01', MESSAGE = 'test: no end'"
#define ANY_END "'completed', 'failed'"

/* How many ends the trigger met; drops it. */
static long ends_met(void)
{
    long v = seq_calls("kx_test_ends");
    drop_test_trigger("agent_runs", "kx_test_no_end", "kx_test_ends", NULL);
    return v;
}

/* A run of a new account with prompt, under the trigger on_ends set: waits up to timeout_ms
 * for its end, then settle_ms more (nothing more tries), and counts the ends the trigger met
 * (*ends; the trigger is dropped). The run's id in run; its final status (malloc'd) or NULL. */
static char *run_against_ends(const char *prompt, int64_t timeout_ms, int64_t settle_ms,
                              char run[KX_UUID_LEN + 1], long *ends)
{
    char account[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    assert_non_null(token);
    initiate(token, prompt, run);
    char *st = wait_end(run, timeout_ms);
    if (settle_ms > 0)
        usleep((useconds_t)settle_ms * 1000);
    *ends = ends_met();
    free(token);
    return st;
}

static char *run_field(const char *run, const char *expr)
{
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT %s FROM agent_runs WHERE id = $1::uuid", expr);
    const char *p[] = {run};
    return kx_th_sql_value(&g_stack, sql, 1, p);
}

/* A run whose end cannot be written as 'completed' (a server error that is neither the fence
 * nor Postgres gone) fails, with a reason naming what could not be written and the server's
 * error, at once. It was dropped: its runner's lease kept it `running` until its wall time. */
static void test_an_end_refused_fails_the_run(void **state)
{
    (void)state;
    on_ends("kx end refused", "'completed'", REFUSE_KX, 0);
    char r[KX_UUID_LEN + 1];
    long refused = 0;
    char *st = run_against_ends("kx end refused", 15000, 0, r, &refused);
    char *error = run_field(r, "coalesce(error, '')");
    print_message("[ end      ] %s after %ld refusal(s): %s\n", st ? st : "still running", refused,
                  error ? error : "?");
    assert_non_null(st);
    assert_string_equal(st, "failed");
    assert_int_equal(refused, 1);
    assert_non_null(error);
    /* the finish went with the answer's rows: the reason names them both (R2) */
    assert_non_null(strstr(error, "could not save the run's last rows and its end"));
    assert_non_null(strstr(error, "test: no end"));
    const char *p[] = {r};
    char *saved = kx_th_sql_value(&g_stack,
                                  "SELECT count(*) FROM messages WHERE agent_run_id = $1::uuid "
                                  "AND content->>'status_type' = 'error'",
                                  1, p);
    assert_non_null(saved);
    assert_string_equal(saved, "1"); /* the failure is in the thread */
    free(saved);
    free(error);
    free(st);
}

/* An end that lost a race (a deadlock, twice) is written again: the run completes, with its
 * rows. It failed at the first deadlock ("could not save a assistant message"). */
static void test_an_end_that_lost_a_race_is_tried_again(void **state)
{
    (void)state;
    on_ends("kx end deadlocked", "'completed'", REFUSE_DEADLOCK, 2);
    char r[KX_UUID_LEN + 1];
    long refused = 0;
    char *st = run_against_ends("kx end deadlocked", 15000, 0, r, &refused);
    print_message("[ end      ] %s after %ld deadlock(s)\n", st ? st : "still running", refused);
    assert_non_null(st);
    assert_string_equal(st, "completed");
    assert_int_equal(refused, 2);
    const char *p[] = {r};
    char *answers = kx_th_sql_value(&g_stack,
                                    "SELECT count(*) FROM messages WHERE agent_run_id = "
                                    "$1::uuid AND type = 'assistant'",
                                    1, p);
    assert_non_null(answers);
    assert_string_equal(answers, "1");
    free(answers);
    free(st);
}

/* A run none of whose ends its runner can write (completed, then failed) is released to the
 * reaper, which runs it again while attempts remain and then fails it with the runner's
 * reason: it ends within seconds, each attempt costs two refused ends, and nothing loops. */
static void test_an_end_never_written_is_reaped(void **state)
{
    (void)state;
    on_ends("kx end never", ANY_END, REFUSE_KX, 0);
    char r[KX_UUID_LEN + 1];
    long refused = 0;
    char *st = run_against_ends("kx end never", 20000, 1000, r, &refused);
    char *attempt = run_field(r, "attempt::text || ' ' || coalesce(error, '')");
    print_message("[ end      ] %s after %ld refusal(s); attempt, error: %s\n",
                  st ? st : "still running", refused, attempt ? attempt : "?");
    assert_non_null(st);
    assert_string_equal(st, "failed");
    assert_non_null(attempt);
    assert_int_equal(strtol(attempt, NULL, 10), 2); /* max_attempts: run again once */
    assert_int_equal(refused, 4);                   /* completed, failed: per attempt */
    assert_non_null(strstr(attempt, "test: no end"));
    free(attempt);
    free(st);
}

/* A run whose every end is refused and whose release loses its connection until the run was
 * handed back (a trigger on the release's update ends its own backend; the database thread
 * runs a job whose connection was lost once more, so it is cut twice at least): the release
 * found Postgres gone, so the run is parked and handed back once Postgres answers (the attempt
 * given back), and then goes the way of test_an_end_never_written_is_reaped: it ends `failed`
 * within seconds. It was let go while the runner's lease kept it `running` until its wall
 * time (1 h). */
static void test_a_release_that_lost_postgres_is_handed_back(void **state)
{
    (void)state;
    PQclear(kx_th_sql(&g_stack, "CREATE SEQUENCE kx_test_releases", 0, NULL));
    PQclear(kx_th_sql(&g_stack, "CREATE SEQUENCE kx_test_handbacks", 0, NULL));
    PQclear(kx_th_sql(
        &g_stack,
        "CREATE FUNCTION kx_test_cut_release() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF OLD.status = 'running' AND NEW.status = 'queued' AND OLD.lease_owner IS NOT NULL "
        "THEN PERFORM nextval('kx_test_handbacks'); END IF; "
        "IF OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL AND NEW.status = 'running' "
        "THEN PERFORM nextval('kx_test_releases'); "
        "IF NOT (SELECT is_called FROM kx_test_handbacks) THEN "
        "PERFORM pg_terminate_backend(pg_backend_pid()); END IF; END IF; "
        "RETURN NULL; END $$",
        0, NULL));
    PQclear(kx_th_sql(&g_stack,
                      "CREATE TRIGGER kx_test_cut_release AFTER UPDATE ON agent_runs "
                      "FOR EACH ROW EXECUTE FUNCTION kx_test_cut_release()",
                      0, NULL));
    on_ends("kx release cut", ANY_END, REFUSE_KX, 0);
    char r[KX_UUID_LEN + 1];
    long refused = 0;
    char *st = run_against_ends("kx release cut", 30000, 1000, r, &refused);
    long handbacks = seq_calls("kx_test_handbacks");
    long releases = seq_calls("kx_test_releases");
    drop_test_trigger("agent_runs", "kx_test_cut_release", "kx_test_handbacks",
                      "kx_test_releases");
    char *attempt = run_field(r, "attempt::text || ' ' || coalesce(error, '')");
    print_message("[ release  ] %s after %ld refusal(s); hand-backs, releases: %ld %ld; "
                  "attempt, error: %s\n",
                  st ? st : "still running", refused, handbacks, releases,
                  attempt ? attempt : "?");
    const char *p[] = {r};
    if (st == NULL) /* not left running for the reaper's wall-time check */
        PQclear(kx_th_sql(&g_stack,
                          "UPDATE agent_runs SET status = 'stopped', completed_at = now() "
                          "WHERE id = $1::uuid",
                          1, p));
    assert_non_null(st);
    assert_string_equal(st, "failed");
    assert_int_equal(handbacks, 1); /* handed back once, after the cut */
    assert_int_equal(refused, 6);   /* completed, failed: per claim (3: the attempt given back) */
    assert_non_null(attempt);
    assert_int_equal(strtol(attempt, NULL, 10), 2);
    assert_non_null(strstr(attempt, "test: no end"));
    free(attempt);
    free(st);
}

/* The agent-runner again, with pair ("KX_DB_STATEMENT_TIMEOUT_MS=N") in its environment; NULL:
 * with the suite's value again. The rest of the stack keeps its own. The stack's env holds
 * malloc'd strings it frees: so does this. */
static void runner_statement_timeout(const char *pair)
{
    static char *saved;
    static const char key[] = "KX_DB_STATEMENT_TIMEOUT_MS=";
    size_t i = 0;
    while (g_stack.env[i] != NULL && strncmp(g_stack.env[i], key, sizeof key - 1) != 0)
        i++;
    assert_non_null(g_stack.env[i]); /* setup sets it */
    char *now = pair != NULL ? strdup(pair) : saved;
    assert_non_null(now);
    if (pair != NULL)
        saved = g_stack.env[i];
    else
        free(g_stack.env[i]);
    g_stack.env[i] = now;
    kx_th_proc *runner = kx_th_stack_proc(&g_stack, "agent-runner");
    assert_int_equal(kx_th_stack_proc_stop(&g_stack, runner), 0);
    assert_int_equal(kx_th_stack_proc_start(&g_stack, runner, 15000), KX_OK);
}

/* A statement timeout at the end (a trigger makes every end sleep 5 s; the runner's
 * statement_timeout is 2 s: its other statements are far from it, even under ctest -j) is Postgres answering, not Postgres gone: the run is released to
 * the reaper (the attempt counts) and fails after max_attempts with the timeout as its reason.
 * It was parked and handed back (the attempt given back): claimed, run and timed out again,
 * forever. */
static void test_an_end_that_times_out_does_not_cycle(void **state)
{
    (void)state;
    runner_statement_timeout("KX_DB_STATEMENT_TIMEOUT_MS=2000");
    on_ends("kx end slow", ANY_END, "PERFORM pg_sleep(5)", 0);
    char r[KX_UUID_LEN + 1];
    long slowed = 0;
    char *st = run_against_ends("kx end slow", 20000, 1500, r, &slowed);
    char *attempt = run_field(r, "attempt::text || ' ' || coalesce(error, '')");
    const char *p[] = {r};
    print_message("[ timeout  ] %s after %ld slowed end(s); attempt, error: %s\n",
                  st ? st : "still running", slowed, attempt ? attempt : "?");
    if (st == NULL) /* not left cycling */
        PQclear(kx_th_sql(&g_stack,
                          "UPDATE agent_runs SET status = 'stopped', completed_at = now() "
                          "WHERE id = $1::uuid",
                          1, p));
    runner_statement_timeout(NULL);
    assert_non_null(st);
    assert_string_equal(st, "failed");
    assert_int_equal(slowed, 2); /* one end per attempt, nothing more */
    assert_non_null(attempt);
    assert_int_equal(strtol(attempt, NULL, 10), 2);
    assert_non_null(strstr(attempt, "statement timeout"));
    free(attempt);
    free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_blocked_run_stalls_no_other),
        cmocka_unit_test(test_events_follow_the_rows),
        cmocka_unit_test(test_many_runs_group_committed),
        cmocka_unit_test(test_a_message_with_the_answer_is_for_the_next_run),
        cmocka_unit_test(test_a_tool_run_writes_few_statements),
        cmocka_unit_test(test_a_merged_batch_is_fenced),
        cmocka_unit_test(test_a_merged_batch_survives_a_lost_connection),
        cmocka_unit_test(test_an_end_refused_fails_the_run),
        cmocka_unit_test(test_an_end_that_lost_a_race_is_tried_again),
        cmocka_unit_test(test_an_end_never_written_is_reaped),
        cmocka_unit_test(test_a_release_that_lost_postgres_is_handed_back),
        cmocka_unit_test(test_an_end_that_times_out_does_not_cycle),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
