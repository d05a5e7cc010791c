/* test_db_worker.c — kx/db_worker against a real PostgreSQL: jobs run in FIFO order on the
 * worker thread while the loop keeps running (a pg_sleep job does not hold up a timer),
 * completions come on the loop thread, the queue is bounded, shutdown fails the jobs that
 * never ran (done called once each, with KX_ERR_UNAVAILABLE), and kx_db_worker_flush waits
 * (bounded) for the queue to run. kx/db_lanes over several workers: a key's jobs stay on one
 * thread, in order, and a slow job holds up only its own lane. */
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
#include "kx/time.h"

static char *g_tmp;
static kx_th_pg g_pg;

static const kx_db_stmt STMTS[] = {
    {"sleep", "SELECT pg_sleep($1::float8 / 1000.0)"},
    {"echo", "SELECT $1::text"},
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
    return g_tmp != NULL && kx_th_pg_start(g_tmp, &g_pg) == KX_OK ? 0 : -1;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_on_the_loop_without_blocking_it),
        cmocka_unit_test(test_bounded_queue_and_shutdown),
        cmocka_unit_test(test_flush_waits_for_the_queue),
        cmocka_unit_test(test_lanes_keep_a_key_in_order_and_spread),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
