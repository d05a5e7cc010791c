/* test_db_worker.c — kx/db_worker against a real PostgreSQL: jobs run in FIFO order on the
 * worker thread while the loop keeps running (a pg_sleep job does not hold up a timer),
 * completions come on the loop thread, the queue is bounded, shutdown fails the jobs that
 * never ran (done called once each, with KX_ERR_UNAVAILABLE), and kx_db_worker_flush waits
 * (bounded) for the queue to run. kx/db_lanes over several workers: a key's jobs stay on one
 * thread, in order, and a slow job holds up only its own lane. Group commit: groupable jobs
 * queued together commit in one transaction and hear of it only after COMMIT; a job that
 * fails in a group gets its own error while the others land; a COMMIT that fails, a lost
 * connection and a deadlock between two groups make every job run alone, nothing written
 * twice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "kx/db.h"
#include "kx/db_lanes.h"
#include "kx/db_worker.h"
#include "kx/log.h"
#include "kx/loop.h"
#include "kx/metrics.h"
#include "kx/time.h"

static char *g_tmp;
static kx_th_pg g_pg;

static const kx_db_stmt STMTS[] = {
    {"sleep", "SELECT pg_sleep($1::float8 / 1000.0)"},
    {"echo", "SELECT $1::text"},
    {"ins", "INSERT INTO gt (id, v) VALUES ($1::int, $2) ON CONFLICT (id) DO NOTHING"},
    {"insd", "INSERT INTO gd (k) VALUES ($1)"},
    {"lock", "UPDATE glock SET n = n + 1 WHERE k = $1"},
    {"count", "SELECT count(*) FROM gt WHERE id = $1::int"},
    {"kill", "SELECT pg_terminate_backend(pg_backend_pid())"},
    KX_DB_STMT_END,
};

typedef struct tjob {
    int id;
    int sleep_ms;
    char got[32];
    bool on_loop;
    int done_calls;
    kx_err err;
    pthread_t runner;
} tjob;

static kx_loop *g_loop;
static int g_order[64];
static int g_norder;
static int g_expected;

static void job_run(kx_db *db, void *arg)
{
    tjob *j = arg;
    j->runner = pthread_self();
    char ms[16], id[16];
    snprintf(ms, sizeof ms, "%d", j->sleep_ms);
    snprintf(id, sizeof id, "job-%d", j->id);
    kx_err err = KX_OK;
    if (j->sleep_ms > 0) {
        const char *p[] = {ms};
        PQclear(kx_db_exec(db, "sleep", 1, p, &err));
    }
    const char *p[] = {id};
    PGresult *r = kx_db_exec(db, "echo", 1, p, &err);
    if (r != NULL && PQntuples(r) == 1)
        snprintf(j->got, sizeof j->got, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

static void job_done(void *arg, kx_err err)
{
    tjob *j = arg;
    j->done_calls++;
    j->err = err;
    j->on_loop = g_loop != NULL && kx_loop_in_loop_thread(g_loop);
    if (g_norder < 64)
        g_order[g_norder++] = j->id;
    if (g_norder == g_expected)
        kx_loop_stop(g_loop);
}

static int g_ticks;
static void on_tick(kx_loop *loop, void *arg)
{
    (void)arg;
    g_ticks++;
    if (g_norder < g_expected)
        kx_loop_timer(loop, 10, on_tick, NULL);
}

static int setup(void **state)
{
    (void)state;
    kx_log_init("test_db_worker", "test");
    g_tmp = kx_th_tmpdir("kx-test-dbw");
    if (g_tmp == NULL || kx_th_pg_start(g_tmp, &g_pg) != KX_OK)
        return -1;
    kx_db *db = NULL;
    if (kx_db_connect(g_pg.url, STMTS, &db) != KX_OK)
        return -1;
    kx_err err = KX_OK;
    PQclear(kx_db_exec_sql(db,
                           "CREATE TABLE gt (id int PRIMARY KEY, v text CHECK (v <> 'bad'));"
                           "CREATE TABLE gd (k text UNIQUE DEFERRABLE INITIALLY DEFERRED);"
                           "CREATE TABLE glock (k text PRIMARY KEY, n int NOT NULL);"
                           "INSERT INTO glock VALUES ('x', 0), ('y', 0)",
                           &err));
    kx_db_close(db);
    return err == KX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kx_th_pg_stop(&g_pg);
    kx_th_rmrf(g_tmp);
    free(g_tmp);
    return 0;
}

static void test_fifo_on_the_loop_without_blocking_it(void **state)
{
    (void)state;
    g_loop = kx_loop_new();
    kx_db_worker *w = NULL;
    assert_int_equal(kx_db_worker_new(g_pg.url, STMTS, g_loop, 16, &w), KX_OK);
    tjob jobs[5];
    memset(jobs, 0, sizeof jobs);
    g_norder = 0;
    g_expected = 5;
    g_ticks = 0;
    for (int i = 0; i < 5; i++) {
        jobs[i].id = i;
        jobs[i].sleep_ms = i == 0 ? 300 : 0;
        assert_int_equal(kx_db_worker_submit(w, job_run, job_done, &jobs[i]), KX_OK);
    }
    kx_loop_timer(g_loop, 10, on_tick, NULL);
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_loop_run(g_loop), KX_OK);
    assert_true(kx_mono_ms() - t0 >= 300);
    assert_true(g_ticks >= 10); /* the loop ran its timers while the job slept */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(g_order[i], i); /* FIFO */
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].err, KX_OK);
        assert_true(jobs[i].on_loop);
        assert_false(pthread_equal(jobs[i].runner, pthread_self()));
        char want[16];
        snprintf(want, sizeof want, "job-%d", i);
        assert_string_equal(jobs[i].got, want);
    }
    kx_db_worker_free(w);
    kx_loop_free(g_loop);
    g_loop = NULL;
}

static void test_bounded_queue_and_shutdown(void **state)
{
    (void)state;
    g_loop = kx_loop_new();
    kx_db_worker *w = NULL;
    assert_int_equal(kx_db_worker_new(g_pg.url, STMTS, g_loop, 3, &w), KX_OK);
    tjob jobs[6];
    memset(jobs, 0, sizeof jobs);
    g_norder = 0;
    g_expected = 100; /* the loop is not run: completions stay posted */
    jobs[0].sleep_ms = 400;
    assert_int_equal(kx_db_worker_submit(w, job_run, job_done, &jobs[0]), KX_OK);
    while (kx_db_worker_queued(w) > 0) /* the worker took job 0 */
        usleep(5000);
    for (int i = 1; i <= 3; i++) {
        jobs[i].id = i;
        assert_int_equal(kx_db_worker_submit(w, job_run, job_done, &jobs[i]), KX_OK);
    }
    assert_int_equal(kx_db_worker_queued(w), 3);
    /* full: refused at once, done never called */
    assert_int_equal(kx_db_worker_submit(w, job_run, job_done, &jobs[4]), KX_ERR_UNAVAILABLE);
    kx_db_worker_free(w); /* job 0 finishes; 1..3 never ran */
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].err, KX_ERR_UNAVAILABLE);
        assert_string_equal(jobs[i].got, "");
    }
    assert_int_equal(jobs[4].done_calls, 0);
    assert_int_equal(jobs[0].done_calls, 0); /* its completion waits on the loop ... */
    kx_loop_free(g_loop);                    /* ... which disposes of it: done, once */
    g_loop = NULL;
    assert_int_equal(jobs[0].done_calls, 1);
    assert_int_equal(jobs[0].err, KX_OK);
    assert_string_equal(jobs[0].got, "job-0");
}

/* kx_db_worker_flush: a short timeout while a job sleeps says "busy"; a long one returns once
 * every queued job ran (their completions are posted, not yet run: the loop does not run). */
static void test_flush_waits_for_the_queue(void **state)
{
    (void)state;
    g_loop = kx_loop_new();
    kx_db_worker *w = NULL;
    assert_int_equal(kx_db_worker_new(g_pg.url, STMTS, g_loop, 8, &w), KX_OK);
    tjob jobs[3];
    memset(jobs, 0, sizeof jobs);
    g_norder = 0;
    g_expected = 100;
    for (int i = 0; i < 3; i++) {
        jobs[i].id = i;
        jobs[i].sleep_ms = 200;
        assert_int_equal(kx_db_worker_submit(w, job_run, job_done, &jobs[i]), KX_OK);
    }
    assert_false(kx_db_worker_flush(w, 50)); /* 600 ms of work queued */
    int64_t t0 = kx_mono_ms();
    assert_true(kx_db_worker_flush(w, 30000));
    assert_true(kx_mono_ms() - t0 >= 300); /* it waited for the rest */
    assert_int_equal(kx_db_worker_queued(w), 0);
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "job-%d", i);
        assert_string_equal(jobs[i].got, want);  /* every job ran */
        assert_int_equal(jobs[i].done_calls, 0); /* completions wait on the loop */
    }
    assert_true(kx_db_worker_flush(w, 0)); /* idle: at once */
    kx_db_worker_free(w);
    kx_loop_free(g_loop); /* disposes of the completions: done once each */
    g_loop = NULL;
    for (int i = 0; i < 3; i++)
        assert_int_equal(jobs[i].done_calls, 1);
}

static void test_lanes_keep_a_key_in_order_and_spread(void **state)
{
    (void)state;
    g_loop = kx_loop_new();
    kx_db_lanes *l = NULL;
    assert_int_equal(kx_db_lanes_new(g_pg.url, STMTS, g_loop, 3, 16, &l), KX_OK);
    assert_int_equal(kx_db_lanes_count(l), 3);
    tjob jobs[9];
    memset(jobs, 0, sizeof jobs);
    g_norder = 0;
    g_expected = 9;
    /* key "a": a slow first job, then two more; six other keys, one job each */
    for (int i = 0; i < 9; i++) {
        jobs[i].id = i;
        jobs[i].sleep_ms = i == 0 ? 1000 : 0;
        char key[8];
        snprintf(key, sizeof key, "k%d", i - 3);
        assert_int_equal(kx_db_lanes_submit(l, i < 3 ? "a" : key, job_run, job_done, &jobs[i]),
                         KX_OK);
    }
    kx_loop_run(g_loop);
    assert_int_equal(g_norder, 9);
    /* a's jobs: one thread, in order */
    int pos[9];
    for (int i = 0; i < 9; i++)
        pos[g_order[i]] = i;
    assert_true(pos[0] < pos[1] && pos[1] < pos[2]);
    assert_true(pthread_equal(jobs[0].runner, jobs[1].runner));
    assert_true(pthread_equal(jobs[0].runner, jobs[2].runner));
    /* other keys landed on other lanes and did not wait for a's slow job */
    int elsewhere = 0, before_slow = 0;
    for (int i = 3; i < 9; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].err, KX_OK);
        assert_true(jobs[i].on_loop);
        if (!pthread_equal(jobs[i].runner, jobs[0].runner)) {
            elsewhere++;
            before_slow += pos[i] < pos[0];
        }
    }
    assert_true(elsewhere >= 1);
    assert_int_equal(before_slow, elsewhere);
    assert_true(kx_db_lanes_flush(l, 1000));
    kx_db_lanes_free(l);
    kx_loop_free(g_loop);
    g_loop = NULL;
}

/* ---- group commit --------------------------------------------------------------------------- */

typedef struct gjob {
    int id;
    const char *v;     /* 'bad' fails the CHECK: the step's own error */
    const char *dkey;  /* also a row of gd, whose UNIQUE is checked at COMMIT */
    const char *lock1; /* rows of glock to update, with a pause between (deadlock) */
    const char *lock2;
    int pause_ms;
    bool kill_once;        /* the first step ends its own connection */
    bool piped;            /* send/recv (pipelined) rather than step */
    bool one_write;        /* submitted as one write (alone: no transaction) */
    int steps, done_calls; /* steps: step or send calls */
    kx_err err;
    char got[32];         /* piped: what its echo read back (results matched to jobs) */
    bool visible_at_done; /* its row could be read by another connection when done came */
} gjob;

static kx_db *g_check;
static int g_gdone, g_gexpected, g_gorder[64];

static kx_err g_step(kx_db *db, void *arg)
{
    gjob *j = arg;
    j->steps++;
    kx_err err = KX_OK;
    if (j->kill_once) {
        j->kill_once = false;
        PQclear(kx_db_exec_sql(db, "SELECT pg_terminate_backend(pg_backend_pid())", &err));
        return j->err = err != KX_OK ? err : KX_ERR_UNAVAILABLE;
    }
    if (j->lock1 != NULL) {
        const char *p[] = {j->lock1};
        if ((err = kx_db_exec_cmd(db, "lock", 1, p, NULL)) != KX_OK)
            return j->err = err;
        char ms[16];
        snprintf(ms, sizeof ms, "%d", j->pause_ms);
        const char *q[] = {ms};
        PQclear(kx_db_exec(db, "sleep", 1, q, &err));
        const char *r[] = {j->lock2};
        if (err != KX_OK || (err = kx_db_exec_cmd(db, "lock", 1, r, NULL)) != KX_OK)
            return j->err = err;
    }
    if (j->dkey != NULL) {
        const char *p[] = {j->dkey};
        if ((err = kx_db_exec_cmd(db, "insd", 1, p, NULL)) != KX_OK)
            return j->err = err;
    }
    char id[16];
    snprintf(id, sizeof id, "%d", j->id);
    const char *p[] = {id, j->v != NULL ? j->v : "ok"};
    return j->err = kx_db_exec_cmd_idem(db, "ins", 2, p, NULL);
}

/* The same statements pipelined: send queues them, recv reads them back in order. */
static kx_err g_send(kx_db *db, void *arg)
{
    gjob *j = arg;
    j->steps++;
    kx_err err = KX_OK;
    if (j->kill_once) {
        j->kill_once = false;
        return kx_db_pipe_send(db, "kill", 0, NULL);
    }
    char id[16], echo[32];
    snprintf(id, sizeof id, "%d", j->id);
    snprintf(echo, sizeof echo, "job-%d", j->id);
    const char *e[] = {echo};
    if ((err = kx_db_pipe_send(db, "echo", 1, e)) != KX_OK)
        return err;
    if (j->lock1 != NULL) {
        char ms[16];
        snprintf(ms, sizeof ms, "%d", j->pause_ms);
        const char *p[] = {j->lock1}, *q[] = {ms}, *r[] = {j->lock2};
        if ((err = kx_db_pipe_send(db, "lock", 1, p)) != KX_OK ||
            (err = kx_db_pipe_send(db, "sleep", 1, q)) != KX_OK ||
            (err = kx_db_pipe_send(db, "lock", 1, r)) != KX_OK)
            return err;
    }
    if (j->dkey != NULL) {
        const char *p[] = {j->dkey};
        if ((err = kx_db_pipe_send(db, "insd", 1, p)) != KX_OK)
            return err;
    }
    const char *p[] = {id, j->v != NULL ? j->v : "ok"};
    return kx_db_pipe_send(db, "ins", 2, p);
}

static kx_err g_recv(kx_db *db, void *arg)
{
    gjob *j = arg;
    j->got[0] = '\0';
    kx_err err = KX_OK;
    PGresult *r = kx_db_pipe_result(db, &err); /* the echo (or the kill) */
    if (r != NULL && PQntuples(r) == 1 && PQnfields(r) == 1)
        snprintf(j->got, sizeof j->got, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (err != KX_OK)
        return j->err = err;
    int more = (j->lock1 != NULL ? 3 : 0) + (j->dkey != NULL ? 1 : 0) + 1;
    for (int i = 0; i < more; i++)
        if ((err = kx_db_pipe_result_cmd(db, NULL)) != KX_OK)
            return j->err = err;
    return j->err = KX_OK;
}

static int rows_of(int id)
{
    char s[16];
    snprintf(s, sizeof s, "%d", id);
    const char *p[] = {s};
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec(g_check, "count", 1, p, &err);
    int n = r != NULL ? (int)strtol(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return n;
}

static void g_done(void *arg, kx_err err)
{
    gjob *j = arg;
    j->done_calls++;
    j->err = err; /* the job's outcome: KX_OK once committed */
    j->visible_at_done = rows_of(j->id) == 1;
    if (g_gdone < 64)
        g_gorder[g_gdone] = j->id;
    if (++g_gdone == g_gexpected)
        kx_loop_stop(g_loop);
}

static void clear_tables(void)
{
    kx_err err = KX_OK;
    PQclear(
        kx_db_exec_sql(g_check, "DELETE FROM gt; DELETE FROM gd; UPDATE glock SET n = 0", &err));
    assert_int_equal(err, KX_OK);
}

/* A plain job that holds the worker while the group's jobs queue up behind it. */
static tjob g_blocker;

static void submit_blocker(kx_db_worker *w, int ms)
{
    memset(&g_blocker, 0, sizeof g_blocker);
    g_blocker.id = 99;
    g_blocker.sleep_ms = ms;
    assert_int_equal(kx_db_worker_submit(w, job_run, job_done, &g_blocker), KX_OK);
}

static kx_err submit_gjob(kx_db_worker *w, gjob *j)
{
    kx_db_group_job how = {.one_write = j->one_write};
    if (j->piped) {
        how.send = g_send;
        how.recv = g_recv;
    } else {
        how.step = g_step;
    }
    return kx_db_worker_submit_group(w, &how, g_done, j);
}

static kx_db_worker *group_setup(gjob *jobs, int n, int expected)
{
    g_loop = kx_loop_new();
    assert_int_equal(kx_db_connect(g_pg.url, STMTS, &g_check), KX_OK);
    clear_tables();
    kx_db_worker *w = NULL;
    assert_int_equal(kx_db_worker_new(g_pg.url, STMTS, g_loop, 64, &w), KX_OK);
    g_norder = 0;
    g_expected = 1000; /* the blocker's done does not stop the loop */
    g_gdone = 0;
    g_gexpected = expected;
    submit_blocker(w, 300);
    for (int i = 0; i < n; i++)
        assert_int_equal(submit_gjob(w, &jobs[i]), KX_OK);
    return w;
}

static void group_teardown(kx_db_worker *w)
{
    kx_db_worker_free(w);
    kx_loop_free(g_loop);
    g_loop = NULL;
    kx_db_close(g_check);
    g_check = NULL;
}

static void assert_stats(kx_db_worker *w, uint64_t groups, uint64_t grouped, uint64_t rollbacks,
                         uint64_t solo)
{
    kx_db_group_stats st = kx_db_worker_group_stats(w);
    assert_int_equal(st.groups, groups);
    assert_int_equal(st.grouped, grouped);
    assert_int_equal(st.rollbacks, rollbacks);
    assert_int_equal(st.solo, solo);
}

/* A counter's value in the process's /metrics text (0 when absent). */
static uint64_t metric(const char *name)
{
    size_t len = 0;
    char *text = kx_metrics_render(&len);
    assert_non_null(text);
    uint64_t v = 0;
    size_t n = strlen(name);
    for (const char *l = text; l != NULL && *l != '\0';) {
        if (strncmp(l, name, n) == 0 && l[n] == ' ')
            v = strtoull(l + n + 1, NULL, 10);
        l = strchr(l, '\n');
        if (l != NULL)
            l++;
    }
    free(text);
    return v;
}

/* ---- groups: each scenario with step jobs (test_group_*) and with pipelined send/recv jobs
 * (test_pipe_*: one pipeline per transaction, BEGIN, every statement, COMMIT) -------------- */

/* n jobs, pipelined or not. */
static void init_group_jobs(gjob *jobs, int n, bool piped)
{
    memset(jobs, 0, (size_t)n * sizeof *jobs);
    for (int i = 0; i < n; i++) {
        jobs[i].id = i + 1;
        jobs[i].piped = piped;
    }
}

/* A pipelined job read back its own results (matched to it, not to a neighbour). */
static void assert_got_own_echo(const gjob *j)
{
    if (!j->piped)
        return;
    char want[32];
    snprintf(want, sizeof want, "job-%d", j->id);
    assert_string_equal(j->got, want);
}

/* 8 jobs: one transaction (piped: ONE pipeline, BEGIN, 16 statements, COMMIT), FIFO
 * completions after the commit. */
static void group_commits_together(bool piped)
{
    gjob jobs[8];
    init_group_jobs(jobs, 8, piped);
    uint64_t p0 = metric("kx_db_pipelines_total");
    kx_db_worker *w = group_setup(jobs, 8, 8);
    assert_int_equal(kx_loop_run(g_loop), KX_OK);
    assert_stats(w, 1, 8, 0, 0);
    assert_int_equal(kx_db_worker_group_stats(w).pipelines, piped ? 1 : 0);
    assert_int_equal(metric("kx_db_pipelines_total") - p0, piped ? 1 : 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(g_gorder[i], i + 1); /* FIFO */
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].err, KX_OK);
        assert_int_equal(jobs[i].steps, 1);
        assert_got_own_echo(&jobs[i]);
        assert_true(jobs[i].visible_at_done); /* done only after COMMIT */
    }
    group_teardown(w);
}

/* Job 4 of 7 fails on its own: 1..3 commit together again, 4 runs alone and gets its error,
 * 5..7 commit together. Piped, the server skips the rest of the pipeline after 4's failure
 * (reported as not run, never as success), so every job was sent twice. */
static void group_failing_job_harms_no_other(bool piped)
{
    gjob jobs[7];
    init_group_jobs(jobs, 7, piped);
    jobs[3].v = "bad";
    uint64_t m0[] = {metric("kx_db_groups_total"), metric("kx_db_grouped_jobs_total"),
                     metric("kx_db_group_rollbacks_total"), metric("kx_db_group_solo_runs_total")};
    kx_db_worker *w = group_setup(jobs, 7, 7);
    assert_int_equal(kx_loop_run(g_loop), KX_OK);
    assert_stats(w, 2, 6, 1, 1);
    /* all 7; 1..3; 4 alone; 5..7 */
    assert_int_equal(kx_db_worker_group_stats(w).pipelines, piped ? 4 : 0);
    /* the same counts on /metrics */
    assert_int_equal(metric("kx_db_groups_total") - m0[0], 2);
    assert_int_equal(metric("kx_db_grouped_jobs_total") - m0[1], 6);
    assert_int_equal(metric("kx_db_group_rollbacks_total") - m0[2], 1);
    assert_int_equal(metric("kx_db_group_solo_runs_total") - m0[3], 1);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(g_gorder[i], i + 1);
        assert_int_equal(jobs[i].done_calls, 1);
        /* 1..4: in the group, then again; 5..7: piped, sent in the first pipeline too */
        assert_int_equal(jobs[i].steps, piped || i <= 3 ? 2 : 1);
        assert_got_own_echo(&jobs[i]);
        assert_int_equal(jobs[i].err, i == 3 ? KX_ERR_CONFLICT : KX_OK); /* 23514: its own */
        assert_int_equal(rows_of(jobs[i].id), i == 3 ? 0 : 1);
        assert_int_equal(jobs[i].visible_at_done, i != 3);
    }
    group_teardown(w);
}

/* Jobs 2 and 3 insert the same key of a constraint checked at COMMIT: the group's COMMIT
 * fails, every job runs alone (piped: each its own pipeline); only job 3's own COMMIT fails
 * then, and done hears it. */
static void group_commit_failure_runs_each_alone(bool piped)
{
    gjob jobs[4];
    init_group_jobs(jobs, 4, piped);
    jobs[1].dkey = jobs[2].dkey = "same";
    kx_db_worker *w = group_setup(jobs, 4, 4);
    assert_int_equal(kx_loop_run(g_loop), KX_OK);
    assert_stats(w, 0, 0, 1, 4);
    assert_int_equal(kx_db_worker_group_stats(w).pipelines, piped ? 5 : 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].steps, 2); /* once in the group, once alone */
        assert_int_equal(jobs[i].err, i == 2 ? KX_ERR_CONFLICT : KX_OK);
        assert_int_equal(rows_of(jobs[i].id), i == 2 ? 0 : 1);
    }
    group_teardown(w);
}

/* Job 3 of 5 outlives statement_timeout (300 ms here): its timeout stands, it is not run
 * again (that would hold the lane up as long once more); 1..2 and 4..5 commit together. */
static void group_statement_timeout_is_not_run_again(bool piped)
{
    gjob jobs[5];
    init_group_jobs(jobs, 5, piped);
    jobs[2].lock1 = jobs[2].lock2 = "x";
    jobs[2].pause_ms = 2000;
    assert_int_equal(setenv("KX_DB_STATEMENT_TIMEOUT_MS", "300", 1), 0);
    kx_db_worker *w = group_setup(jobs, 5, 5);
    unsetenv("KX_DB_STATEMENT_TIMEOUT_MS");
    assert_int_equal(kx_loop_run(g_loop), KX_OK);
    assert_stats(w, 2, 4, 1, 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
        /* 1, 2: in both groups; 4, 5: piped, sent in the first pipeline too */
        assert_int_equal(jobs[i].steps, i == 2 ? 1 : piped || i < 2 ? 2 : 1);
        assert_int_equal(jobs[i].err, i == 2 ? KX_ERR_TIMEOUT : KX_OK);
        assert_int_equal(rows_of(jobs[i].id), i == 2 ? 0 : 1);
    }
    group_teardown(w);
}

/* The connection dies in the middle of a group (piped: of its pipeline): nothing of the group
 * was written, every job runs alone on a new connection (statements prepared again), each row
 * exactly once. */
static void group_connection_loss_runs_each_alone(bool piped)
{
    gjob jobs[5];
    init_group_jobs(jobs, 5, piped);
    jobs[2].kill_once = true;
    kx_db_worker *w = group_setup(jobs, 5, 5);
    assert_int_equal(kx_loop_run(g_loop), KX_OK);
    assert_stats(w, 0, 0, 1, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].err, KX_OK);
        assert_true(jobs[i].visible_at_done);
        assert_int_equal(rows_of(jobs[i].id), 1);
        assert_got_own_echo(&jobs[i]);
    }
    group_teardown(w);
}

#define GROUP_SCENARIO(name, scenario)          \
    static void test_group_##name(void **state) \
    {                                           \
        (void)state;                            \
        scenario(false);                        \
    }                                           \
    static void test_pipe_##name(void **state)  \
    {                                           \
        (void)state;                            \
        scenario(true);                         \
    }

GROUP_SCENARIO(commits_together, group_commits_together)
GROUP_SCENARIO(failing_job_harms_no_other, group_failing_job_harms_no_other)
GROUP_SCENARIO(commit_failure_runs_each_alone, group_commit_failure_runs_each_alone)
GROUP_SCENARIO(statement_timeout_is_not_run_again, group_statement_timeout_is_not_run_again)
GROUP_SCENARIO(connection_loss_runs_each_alone, group_connection_loss_runs_each_alone)

/* Two workers' groups lock the same two rows in opposite orders: Postgres breaks the deadlock
 * by failing one group, whose jobs then run alone; every job succeeds, each update once. */
static void test_group_deadlock_falls_back_to_each_alone(void **state)
{
    (void)state;
    g_loop = kx_loop_new();
    assert_int_equal(kx_db_connect(g_pg.url, STMTS, &g_check), KX_OK);
    clear_tables();
    kx_db_worker *wa = NULL, *wb = NULL;
    assert_int_equal(kx_db_worker_new(g_pg.url, STMTS, g_loop, 8, &wa), KX_OK);
    assert_int_equal(kx_db_worker_new(g_pg.url, STMTS, g_loop, 8, &wb), KX_OK);
    gjob jobs[4];
    init_group_jobs(jobs, 4, false);
    /* a's group: x (then a pause), y; b's group: y (then a pause), x. Each job updates its
     * row twice, the pause between. */
    const char *rows[4] = {"x", "y", "y", "x"};
    for (int i = 0; i < 4; i++) {
        jobs[i].lock1 = jobs[i].lock2 = rows[i];
        jobs[i].pause_ms = i % 2 == 0 ? 400 : 0; /* both hold their first row, then cross */
    }
    g_norder = 0;
    g_expected = 1000;
    g_gdone = 0;
    g_gexpected = 4;
    tjob blockers[2];
    memset(blockers, 0, sizeof blockers);
    blockers[0].sleep_ms = blockers[1].sleep_ms = 100;
    assert_int_equal(kx_db_worker_submit(wa, job_run, job_done, &blockers[0]), KX_OK);
    assert_int_equal(kx_db_worker_submit(wb, job_run, job_done, &blockers[1]), KX_OK);
    assert_int_equal(submit_gjob(wa, &jobs[0]), KX_OK);
    assert_int_equal(submit_gjob(wa, &jobs[1]), KX_OK);
    assert_int_equal(submit_gjob(wb, &jobs[2]), KX_OK);
    assert_int_equal(submit_gjob(wb, &jobs[3]), KX_OK);
    assert_int_equal(kx_loop_run(g_loop), KX_OK);
    kx_db_group_stats a = kx_db_worker_group_stats(wa), b = kx_db_worker_group_stats(wb);
    assert_int_equal(a.rollbacks + b.rollbacks, 1); /* one group lost */
    assert_int_equal(a.groups + b.groups, 1);       /* the other committed */
    assert_int_equal(a.solo + b.solo, 2);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].err, KX_OK);
        assert_int_equal(rows_of(jobs[i].id), 1);
    }
    kx_err err = KX_OK;
    PGresult *r =
        kx_db_exec_sql(g_check, "SELECT string_agg(k || n, ',' ORDER BY k) FROM glock", &err);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "x4,y4"); /* 2 updates per job, once each */
    PQclear(r);
    kx_db_worker_free(wa);
    kx_db_worker_free(wb);
    kx_loop_free(g_loop);
    g_loop = NULL;
    kx_db_close(g_check);
    g_check = NULL;
}

/* Blocking and pipelined jobs in one group: one transaction, the step job between two
 * pipelines. */
static void test_pipe_mixed_with_step_jobs_in_one_transaction(void **state)
{
    (void)state;
    gjob jobs[5];
    init_group_jobs(jobs, 5, true);
    jobs[2].piped = false;
    kx_db_worker *w = group_setup(jobs, 5, 5);
    assert_int_equal(kx_loop_run(g_loop), KX_OK);
    kx_db_group_stats st = kx_db_worker_group_stats(w);
    assert_int_equal(st.groups, 1);
    assert_int_equal(st.grouped, 5);
    assert_int_equal(st.pipelines, 2);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(g_gorder[i], i + 1);
        assert_int_equal(jobs[i].err, KX_OK);
        assert_true(jobs[i].visible_at_done);
    }
    group_teardown(w);
}

/* A lone groupable job is a group of one: its statements commit together or not at all (its
 * COMMIT's failure is its outcome), it runs once more after a lost connection, and a
 * one-write job runs without a transaction. Step and pipelined alike. */
static void test_lone_job_is_a_group_of_one(void **state)
{
    (void)state;
    for (int piped = 0; piped < 2; piped++) {
        g_loop = kx_loop_new();
        assert_int_equal(kx_db_connect(g_pg.url, STMTS, &g_check), KX_OK);
        clear_tables();
        kx_err err = KX_OK;
        PQclear(kx_db_exec_sql(g_check, "INSERT INTO gd VALUES ('taken')", &err));
        assert_int_equal(err, KX_OK);
        kx_db_worker *w = NULL;
        assert_int_equal(kx_db_worker_new(g_pg.url, STMTS, g_loop, 64, &w), KX_OK);
        gjob jobs[3];
        init_group_jobs(jobs, 3, piped == 1);
        jobs[0].dkey = "taken"; /* its COMMIT fails: its row must not stay either */
        jobs[1].kill_once = true;
        jobs[2].one_write = true;
        g_expected = 1000;
        g_gdone = 0;
        g_gexpected = 1;
        for (int i = 0; i < 3; i++) { /* one at a time: each alone */
            g_gdone = 0;
            assert_int_equal(submit_gjob(w, &jobs[i]), KX_OK);
            assert_int_equal(kx_loop_run(g_loop), KX_OK);
        }
        assert_int_equal(jobs[0].err, KX_ERR_CONFLICT);
        assert_int_equal(rows_of(1), 0);
        assert_int_equal(jobs[1].err, KX_OK); /* killed, then once more */
        assert_int_equal(jobs[1].steps, 2);
        assert_int_equal(rows_of(2), 1);
        assert_int_equal(jobs[2].err, KX_OK);
        assert_int_equal(rows_of(3), 1);
        kx_db_group_stats st = kx_db_worker_group_stats(w);
        assert_int_equal(st.groups + st.rollbacks + st.solo, 0); /* not groups */
        assert_int_equal(st.pipelines, piped == 1 ? 4 : 0);
        group_teardown(w);
    }
}

/* The worker's connection is lost between jobs: the next pipeline reconnects and prepares its
 * statements again inside the pipeline. */
static void kill_own_backend(kx_db *db, void *arg)
{
    (void)arg;
    kx_err err = KX_OK;
    PQclear(kx_db_exec(db, "kill", 0, NULL, &err));
}

static void test_pipe_after_reconnect_prepares_again(void **state)
{
    (void)state;
    gjob jobs[6];
    init_group_jobs(jobs, 6, true);
    kx_db_worker *w = group_setup(jobs, 3, 3); /* prepares echo and ins */
    assert_int_equal(kx_loop_run(g_loop), KX_OK);
    tjob killer;
    memset(&killer, 0, sizeof killer);
    assert_int_equal(kx_db_worker_submit(w, kill_own_backend, job_done, &killer), KX_OK);
    submit_blocker(w, 200);
    g_gdone = 0;
    for (int i = 3; i < 6; i++)
        assert_int_equal(submit_gjob(w, &jobs[i]), KX_OK);
    assert_int_equal(kx_loop_run(g_loop), KX_OK);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(jobs[i].err, KX_OK);
        assert_int_equal(jobs[i].steps, 1);
        assert_got_own_echo(&jobs[i]);
        assert_int_equal(rows_of(jobs[i].id), 1);
    }
    group_teardown(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_on_the_loop_without_blocking_it),
        cmocka_unit_test(test_bounded_queue_and_shutdown),
        cmocka_unit_test(test_flush_waits_for_the_queue),
        cmocka_unit_test(test_lanes_keep_a_key_in_order_and_spread),
        cmocka_unit_test(test_group_commits_together),
        cmocka_unit_test(test_pipe_commits_together),
        cmocka_unit_test(test_group_failing_job_harms_no_other),
        cmocka_unit_test(test_pipe_failing_job_harms_no_other),
        cmocka_unit_test(test_group_commit_failure_runs_each_alone),
        cmocka_unit_test(test_pipe_commit_failure_runs_each_alone),
        cmocka_unit_test(test_group_statement_timeout_is_not_run_again),
        cmocka_unit_test(test_pipe_statement_timeout_is_not_run_again),
        cmocka_unit_test(test_group_connection_loss_runs_each_alone),
        cmocka_unit_test(test_pipe_connection_loss_runs_each_alone),
        cmocka_unit_test(test_group_deadlock_falls_back_to_each_alone),
        cmocka_unit_test(test_pipe_mixed_with_step_jobs_in_one_transaction),
        cmocka_unit_test(test_lone_job_is_a_group_of_one),
        cmocka_unit_test(test_pipe_after_reconnect_prepares_again),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
