/* test_scheduler_admit_sql.c — the scheduler's admission statement (store.c "sched_admit",
 * index-driven since migration 011) against its specification, on a real PostgreSQL.
 *
 * The specification is the statement admission used before (kept here, not in the service):
 * it reads every active and every waiting run and ranks all eligible runs — only a thread's
 * oldest waiting run, only while none of the thread's runs is active, at most `limit` active
 * runs per account, round robin between accounts (each account's 1st run, then 2nd, ...,
 * oldest first within a round). For random sets of runs (deterministic seeds), the new
 * statement must
 *   - admit exactly a prefix of the specification's order (so never a run the rules forbid,
 *     never out of the fair order), and the whole of it when the batch does not bind;
 *   - repeated with a small batch until it admits nothing, admit exactly the runs the
 *     specification admits with an unbounded batch; and when a short batch says no run is left
 *     (its column "more"), the next one admits nothing.
 * And it records the dispatch sequences an earlier pass held on the runs still queued only, and
 * sets updated_at itself (no call of the touch trigger's function: migration 017). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kx/db.h"
#include "kx/log.h"
#include "sched.h"

#define SCENARIOS 60
#define MAX_RUNS 120

static char *g_tmp;
static kx_th_pg g_pg;
static kx_db *g_db;

/* The specification: the eligible runs in fair order (limit %d, batch %d). */
static const char SPEC[] =
    "WITH act AS (SELECT account_id, thread_id FROM agent_runs WHERE status = 'running' "
    "  OR (status = 'queued' AND dispatched_at IS NOT NULL)), "
    "per_account AS (SELECT account_id, count(*) AS n FROM act GROUP BY account_id), "
    "waiting AS (SELECT id, account_id, thread_id, created_at, row_number() OVER "
    "  (PARTITION BY thread_id ORDER BY created_at, id) AS tn FROM agent_runs "
    "  WHERE status = 'queued' AND dispatched_at IS NULL), "
    "eligible AS (SELECT w.id, w.account_id, w.created_at, row_number() OVER "
    "  (PARTITION BY w.account_id ORDER BY w.created_at, w.id) AS rn FROM waiting w "
    "  WHERE w.tn = 1 AND NOT EXISTS (SELECT 1 FROM act WHERE act.thread_id = w.thread_id)) "
    "SELECT e.id::text FROM eligible e LEFT JOIN per_account p ON p.account_id = e.account_id "
    "  WHERE e.rn <= %d - coalesce(p.n, 0) ORDER BY e.rn, e.created_at LIMIT %d";

static uint64_t g_rng;
static unsigned rnd(unsigned n)
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)((g_rng >> 33) % n);
}

static void sql(const char *q)
{
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(g_db, q, &err);
    if (r == NULL)
        fail_msg("SQL failed (%s): %s\n%s", kx_err_str(err), kx_db_last_error(g_db), q);
    PQclear(r);
}

/* A random set of runs: 2..7 accounts, 3..40 threads, up to MAX_RUNS runs, mostly waiting,
 * some running, some dispatched, some finished, created in random order. */
static void scenario(unsigned seed)
{
    g_rng = seed * 7919ULL + 17;
    unsigned accounts = 2 + rnd(6), threads = 3 + rnd(38), runs = 10 + rnd(MAX_RUNS - 10);
    char q[1024];
    /* One transaction per scenario. DELETE, not TRUNCATE: a TRUNCATE (CASCADE reaches every
     * table that refers to these) makes and unlinks dozens of files and took ~80 ms of a
     * loaded machine's disk per scenario, most of the test's time; these are a few hundred
     * rows. */
    sql("BEGIN");
    /* the runs are replaced outside admission: its bounds (migration 014) go with them */
    sql("DELETE FROM admission_bounds");
    sql("DELETE FROM agent_runs");
    sql("DELETE FROM threads");
    sql("DELETE FROM projects");
    snprintf(q, sizeof q,
             "INSERT INTO projects (project_id, name, account_id) SELECT md5('p' || a)::uuid, "
             "'p', md5('a' || a)::uuid FROM generate_series(0, %u) a",
             accounts - 1);
    sql(q);
    snprintf(q, sizeof q,
             "INSERT INTO threads (thread_id, account_id, project_id) SELECT md5('t' || i)::uuid, "
             "md5('a' || (i %% %u))::uuid, md5('p' || (i %% %u))::uuid "
             "FROM generate_series(0, %u) i",
             accounts, accounts, threads - 1);
    sql(q);
    for (unsigned i = 0; i < runs; i++) {
        unsigned t = rnd(threads), kind = rnd(20);
        const char *status = kind < 2 ? "running" : kind < 3 ? "completed" : "queued";
        bool dispatched = kind >= 3 && kind < 5;
        snprintf(q, sizeof q,
                 "INSERT INTO agent_runs (thread_id, account_id, project_id, status, "
                 "dispatched_at, created_at) VALUES (md5('t%u')::uuid, md5('a%u')::uuid, "
                 "md5('p%u')::uuid, '%s', %s, now() - interval '%u ms')",
                 t, t % accounts, t % accounts, status, dispatched ? "now()" : "NULL",
                 rnd(100000));
        sql(q);
    }
    sql("COMMIT");
    sql("ANALYZE agent_runs");
}

/* The specification's ids, in order. */
static PGresult *spec(int limit, int batch)
{
    char q[sizeof SPEC + 64];
    snprintf(q, sizeof q, SPEC, limit, batch);
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(g_db, q, &err);
    assert_non_null(r);
    return r;
}

static bool in_result(const PGresult *r, int upto, const char *id)
{
    for (int i = 0; i < upto; i++)
        if (strcmp(PQgetvalue(r, i, 0), id) == 0)
            return true;
    return false;
}

static PGresult *admit(scheduler *s, int batch)
{
    kx_err err = KX_OK;
    PGresult *r = sched_store_admit(s, g_db, batch, 0, NULL, &err);
    if (r == NULL)
        fail_msg("sched_admit failed (%s): %s", kx_err_str(err), kx_db_last_error(g_db));
    return r;
}

static void test_one_pass_is_a_prefix_of_the_fair_order(void **state)
{
    (void)state;
    scheduler s;
    memset(&s, 0, sizeof s);
    int bound = 0;
    for (unsigned seed = 1; seed <= SCENARIOS; seed++) {
        scenario(seed);
        int limit = 1 + (int)rnd(6), batch = 1 + (int)rnd(12);
        s.cfg.max_parallel_runs = limit;
        PGresult *want = spec(limit, 100000);
        PGresult *got = admit(&s, batch);
        int nw = PQntuples(want), ng = PQntuples(got);
        /* a prefix of the fair order: never more than the batch, something when something
         * may start, everything when the batch does not bind */
        assert_true(ng <= batch && ng <= nw);
        if (nw > 0)
            assert_true(ng > 0);
        if (nw <= batch)
            assert_int_equal(ng, nw);
        else
            bound++;
        for (int i = 0; i < ng; i++)
            if (!in_result(want, ng, PQgetvalue(got, i, 0)))
                fail_msg("seed %u (limit %d, batch %d): run %s admitted, not among the first "
                         "%d of the fair order",
                         seed, limit, batch, PQgetvalue(got, i, 0), ng);
        PQclear(got);
        PQclear(want);
    }
    print_message("[ admit    ] %d scenarios, %d where the batch bound\n", SCENARIOS, bound);
    assert_true(bound > 0); /* the random sets do exercise the per-account quota */
}

static void test_passes_until_empty_admit_what_the_rules_allow(void **state)
{
    (void)state;
    scheduler s;
    memset(&s, 0, sizeof s);
    for (unsigned seed = 100; seed < 100 + SCENARIOS; seed++) {
        scenario(seed);
        /* limits above the batch's per-account share, so that short batches cut by it (and
         * their column "more") occur */
        int limit = 1 + (int)rnd(12), batch = 2 + (int)rnd(8);
        s.cfg.max_parallel_runs = limit;
        PGresult *want = spec(limit, 100000);
        int nw = PQntuples(want), total = 0, passes = 0;
        bool said_done = false;
        for (;;) {
            PGresult *got = admit(&s, batch);
            int ng = PQntuples(got);
            if (said_done && ng > 0)
                fail_msg("seed %u: the last batch said no run was left, %d were", seed, ng);
            /* "more" false on a short batch: nothing is left to admit now */
            said_done = ng > 0 && ng < batch &&
                strcmp(PQgetvalue(got, 0, PQfnumber(got, "more")), "f") == 0;
            for (int i = 0; i < ng; i++)
                if (!in_result(want, nw, PQgetvalue(got, i, 0)))
                    fail_msg("seed %u: run %s admitted, which the rules do not allow", seed,
                             PQgetvalue(got, i, 0));
            total += ng;
            PQclear(got);
            if (ng == 0)
                break;
            assert_true(++passes <= MAX_RUNS);
        }
        assert_int_equal(total, nw);
        PQclear(want);
    }
}

/* The dispatch sequences a pass holds (admit.c, "Sequences") are recorded by the next admit
 * statement, on the runs still queued only: a run claimed meanwhile (its row version is not
 * the one admission returned) and a note for a version that is not the run's are skipped,
 * and the statement admits as it would without them. */
static void test_admit_records_held_sequences(void **state)
{
    (void)state;
    scheduler s;
    memset(&s, 0, sizeof s);
    s.cfg.max_parallel_runs = 10;
    sql("TRUNCATE agent_runs, threads, projects, admission_bounds CASCADE");
    sql("INSERT INTO projects (project_id, name, account_id) VALUES "
        "(md5('p')::uuid, 'p', md5('a')::uuid)");
    sql("INSERT INTO threads (thread_id, account_id, project_id) SELECT md5('t' || i)::uuid, "
        "md5('a')::uuid, md5('p')::uuid FROM generate_series(0, 3) i");
    sql("INSERT INTO agent_runs (thread_id, account_id, project_id, status) SELECT "
        "md5('t' || i)::uuid, md5('a')::uuid, md5('p')::uuid, 'queued' "
        "FROM generate_series(0, 2) i");
    PGresult *got = admit(&s, 10);
    assert_int_equal(PQntuples(got), 3);
    sched_seq_note notes[4];
    memset(notes, 0, sizeof notes);
    for (int i = 0; i < 3; i++) {
        sched_run_row row;
        sched_store_row(got, i, &row);
        assert_true(row.tid[0] == '(');
        snprintf(notes[i].run_id, sizeof notes[i].run_id, "%s", row.run_id);
        snprintf(notes[i].tid, sizeof notes[i].tid, "%s", row.tid);
        notes[i].seq = 100 + (uint64_t)i;
    }
    PQclear(got);
    /* the first is claimed before the next pass; the fourth note names the second run's
     * version for another run id */
    char q[256];
    snprintf(q, sizeof q, "UPDATE agent_runs SET status = 'running' WHERE id = '%s'",
             notes[0].run_id);
    sql(q);
    snprintf(notes[3].run_id, sizeof notes[3].run_id, "%s", notes[2].run_id);
    snprintf(notes[3].tid, sizeof notes[3].tid, "%s", notes[1].tid);
    notes[3].seq = 999;
    /* a new waiting run on a fourth thread: admitted by the same statement */
    sql("INSERT INTO agent_runs (thread_id, account_id, project_id, status) VALUES "
        "(md5('t3')::uuid, md5('a')::uuid, md5('p')::uuid, 'queued')");
    kx_err err = KX_OK;
    /* its two updates of agent_runs set updated_at: no PL/pgSQL call (migration 017) */
    sql("BEGIN");
    sql("SET LOCAL track_functions = 'pl'");
    got = sched_store_admit(&s, g_db, 10, 4, notes, &err);
    assert_non_null(got);
    assert_int_equal(PQntuples(got), 1);
    PQclear(got);
    got = kx_db_exec_sql(g_db,
                         "SELECT count(*) FROM pg_stat_xact_user_functions "
                         "WHERE funcname = 'kx_touch_updated_at'",
                         &err);
    assert_non_null(got);
    assert_string_equal(PQgetvalue(got, 0, 0), "0");
    PQclear(got);
    sql("COMMIT");
    got = kx_db_exec_sql(g_db,
                         "SELECT coalesce(dispatch_seq, 0) FROM agent_runs "
                         "ORDER BY thread_id = md5('t0')::uuid DESC, thread_id = md5('t1')::uuid "
                         "DESC, thread_id = md5('t2')::uuid DESC",
                         &err);
    assert_non_null(got);
    assert_int_equal(PQntuples(got), 4);
    assert_string_equal(PQgetvalue(got, 0, 0), "0");   /* claimed: skipped */
    assert_string_equal(PQgetvalue(got, 1, 0), "101"); /* still queued: recorded */
    assert_string_equal(PQgetvalue(got, 2, 0), "102"); /* not 999 (another run's version) */
    assert_string_equal(PQgetvalue(got, 3, 0), "0");   /* just admitted: none yet */
    PQclear(got);
}

/* One account, project and `threads` threads; `running` running runs on threads 0.., then
 * `waiting` waiting runs on the next threads (one run per thread). */
static void one_account(int threads, int running, int waiting)
{
    char q[512];
    sql("TRUNCATE agent_runs, threads, projects, admission_bounds CASCADE");
    sql("INSERT INTO projects (project_id, name, account_id) VALUES "
        "(md5('p')::uuid, 'p', md5('a')::uuid)");
    snprintf(q, sizeof q,
             "INSERT INTO threads (thread_id, account_id, project_id) SELECT md5('t' || i)::uuid, "
             "md5('a')::uuid, md5('p')::uuid FROM generate_series(0, %d) i",
             threads - 1);
    sql(q);
    snprintf(q, sizeof q,
             "INSERT INTO agent_runs (thread_id, account_id, project_id, status, created_at) "
             "SELECT md5('t' || i)::uuid, md5('a')::uuid, md5('p')::uuid, "
             "CASE WHEN i < %d THEN 'running' ELSE 'queued' END, now() - i * interval '1 ms' "
             "FROM generate_series(0, %d) i",
             running, running + waiting - 1);
    sql(q);
}

/* The account's bound: active_max, and whether counted_at is after `since` (a timestamptz). */
static long long bound_of(const char *since, bool *recounted)
{
    char q[256];
    snprintf(q, sizeof q,
             "SELECT active_max, counted_at > '%s'::timestamptz FROM admission_bounds "
             "WHERE account_id = md5('a')::uuid",
             since);
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(g_db, q, &err);
    assert_non_null(r);
    assert_int_equal(PQntuples(r), 1);
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *recounted = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    PQclear(r);
    return v;
}

static char *now_text(void)
{
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(g_db, "SELECT clock_timestamp()::text", &err);
    assert_non_null(r);
    char *t = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    assert_non_null(t);
    return t;
}

/* How many times one admit statement (limit, batch) read agent_runs_active_idx, the index its
 * count of an account's active runs reads: from EXPLAIN ANALYZE of the prepared statement, in
 * a transaction rolled back. */
static int active_index_loops(int limit, int batch)
{
    char q[256];
    snprintf(q, sizeof q,
             "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE sched_admit(%d, %d, '{}', '{}', '{}', %d)",
             limit, batch, SCHED_BOUND_MAX_AGE_MS);
    sql("BEGIN");
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(g_db, q, &err);
    if (r == NULL)
        fail_msg("EXPLAIN failed: %s", kx_db_last_error(g_db));
    const char *plan = PQgetvalue(r, 0, 0);
    const char *at = strstr(plan, "\"Index Name\": \"agent_runs_active_idx\"");
    assert_non_null(at); /* the count is in the plan */
    at = strstr(at, "\"Actual Loops\": ");
    assert_non_null(at);
    int loops = (int)strtol(at + strlen("\"Actual Loops\": "), NULL, 10);
    PQclear(r);
    sql("ROLLBACK");
    return loops;
}

/* Counting (migration 014, admit.c): an account's active runs were counted by every pass, up
 * to the limit: with a limit in the thousands, every active run of the account each pass. A
 * pass now counts only when the account's bound says it might lack room for a whole batch, or
 * when the count the bound started from is older than SCHED_BOUND_MAX_AGE_MS; otherwise it
 * adds its admissions to the bound. */
static void test_admission_counts_only_near_the_limit(void **state)
{
    (void)state;
    scheduler s;
    memset(&s, 0, sizeof s);
    s.cfg.max_parallel_runs = 50;
    one_account(80, 30, 40);
    char *t0 = now_text();
    bool recounted = false;
    /* no bound yet: counted (30 running), 5 admitted */
    PGresult *got = admit(&s, 5);
    assert_int_equal(PQntuples(got), 5);
    PQclear(got);
    assert_int_equal(bound_of(t0, &recounted), 35);
    assert_true(recounted);
    char *t1 = now_text();
    /* 35 + 5 < 50: the bound is trusted, nothing counted */
    assert_int_equal(active_index_loops(50, 5), 0);
    got = admit(&s, 5);
    assert_int_equal(PQntuples(got), 5);
    PQclear(got);
    assert_int_equal(bound_of(t1, &recounted), 40);
    assert_false(recounted);
    /* 20 runs end: the bound (40) is now above the 30 active runs, still an upper bound */
    sql("UPDATE agent_runs SET status = 'completed' WHERE id IN (SELECT id FROM agent_runs "
        "WHERE status = 'running' ORDER BY id LIMIT 20)");
    got = admit(&s, 5);
    assert_int_equal(PQntuples(got), 5);
    PQclear(got);
    assert_int_equal(bound_of(t1, &recounted), 45);
    assert_false(recounted);
    /* 45 + 5 is not below 50: counted again (10 running + 15 dispatched), 5 admitted */
    assert_int_equal(active_index_loops(50, 5), 1);
    got = admit(&s, 5);
    assert_int_equal(PQntuples(got), 5);
    PQclear(got);
    assert_int_equal(bound_of(t1, &recounted), 30);
    assert_true(recounted);
    /* a count older than SCHED_BOUND_MAX_AGE_MS is not trusted */
    sql("UPDATE admission_bounds SET counted_at = now() - interval '1 hour'");
    assert_int_equal(active_index_loops(50, 5), 1);
    free(t1);
    free(t0);
}

/* The limit holds exactly: a bound that is too low (runs made active outside admission, here
 * by hand) is trusted only while it is fresh and far from the limit; near the limit, or once
 * it is old, the pass counts and admits exactly up to the limit. */
static void test_admission_limit_exact_near_the_limit(void **state)
{
    (void)state;
    scheduler s;
    memset(&s, 0, sizeof s);
    s.cfg.max_parallel_runs = 12;
    one_account(40, 9, 20);
    /* a bound of 0 that claims room for a whole batch, but counted an hour ago */
    sql("INSERT INTO admission_bounds (account_id, active_max, counted_at) VALUES "
        "(md5('a')::uuid, 0, now() - interval '1 hour')");
    PGresult *got = admit(&s, 5);
    assert_int_equal(PQntuples(got), 3); /* 12 - 9 running */
    PQclear(got);
    /* a fresh bound that is too low but within a batch of the limit: counted, none admitted */
    sql("UPDATE admission_bounds SET active_max = 7, counted_at = now()");
    got = admit(&s, 5);
    assert_int_equal(PQntuples(got), 0);
    PQclear(got);
    /* a pass that counted and left less than a batch of room writes no bound (the next pass
     * counts anyway): an account at a small limit costs admission no write */
    kx_err err = KX_OK;
    got = kx_db_exec_sql(g_db, "SELECT active_max FROM admission_bounds", &err);
    assert_non_null(got);
    assert_string_equal(PQgetvalue(got, 0, 0), "7");
    PQclear(got);
    sql("TRUNCATE admission_bounds");
    s.cfg.max_parallel_runs = 3;
    got = admit(&s, 5);
    assert_int_equal(PQntuples(got), 0); /* 12 active, limit 3 */
    PQclear(got);
    got = kx_db_exec_sql(g_db, "SELECT count(*) FROM admission_bounds", &err);
    assert_non_null(got);
    assert_string_equal(PQgetvalue(got, 0, 0), "0");
    PQclear(got);
}

static int setup(void **state)
{
    (void)state;
    kx_log_init("test_scheduler_admit_sql", "test");
    g_tmp = kx_th_tmpdir("kx-test-admit");
    if (g_tmp == NULL || kx_th_pg_start(g_tmp, &g_pg) != KX_OK)
        return -1;
    if (kx_db_connect(g_pg.url, sched_statements, &g_db) != KX_OK)
        return -1;
    return kx_db_migrate(g_db, kx_db_migrations_dir()) == KX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kx_db_close(g_db);
    kx_th_pg_stop(&g_pg);
    kx_th_rmrf(g_tmp);
    free(g_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_pass_is_a_prefix_of_the_fair_order),
        cmocka_unit_test(test_passes_until_empty_admit_what_the_rules_allow),
        cmocka_unit_test(test_admit_records_held_sequences),
        cmocka_unit_test(test_admission_counts_only_near_the_limit),
        cmocka_unit_test(test_admission_limit_exact_near_the_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
