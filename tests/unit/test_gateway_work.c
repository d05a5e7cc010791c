/* test_gateway_work.c — the gateway's worker pool (services/gateway/work.h): every job queued
 * runs exactly once, whether the workers were idle (each submit must wake one) or busy (they
 * take the next job themselves, without a wake-up); a full queue refuses; freeing runs what is
 * still queued with stopping = true. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

#include "kx/time.h"
#include "work.h"

#define HANG_GUARD_MS 30000 /* not a timing assertion: a lost wake-up would wait forever */

typedef struct counts {
    atomic_int started, ran, stopping;
    atomic_int block; /* while 1, jobs spin (to keep the workers busy) */
} counts;

static void job(void *arg, bool stopping)
{
    counts *c = arg;
    atomic_fetch_add(&c->started, 1);
    while (atomic_load(&c->block) != 0)
        usleep(100);
    if (stopping)
        atomic_fetch_add(&c->stopping, 1);
    atomic_fetch_add(&c->ran, 1);
}

static void wait_ran(counts *c, int n)
{
    int64_t until = kx_mono_ms() + HANG_GUARD_MS;
    while (atomic_load(&c->ran) < n && kx_mono_ms() < until)
        usleep(200);
    assert_int_equal(atomic_load(&c->ran), n);
}

/* One job at a time on idle workers: each submit finds them all waiting and must wake one. */
static void test_each_job_on_idle_workers_runs(void **state)
{
    (void)state;
    gw_work *w = gw_work_new(4, 16);
    assert_non_null(w);
    counts c = {0};
    for (int i = 1; i <= 500; i++) {
        assert_true(gw_work_submit(w, job, &c));
        wait_ran(&c, i);
    }
    gw_work_free(w);
    assert_int_equal(atomic_load(&c.stopping), 0);
}

typedef struct submitter {
    gw_work *w;
    counts *c;
    int n;
} submitter;

static void *submit_many(void *arg)
{
    submitter *s = arg;
    for (int i = 0; i < s->n; i++)
        while (!gw_work_submit(s->w, job, s->c))
            usleep(50); /* the queue is full: the workers are behind */
    return NULL;
}

/* Bursts from two threads while workers come and go between busy and idle: none is lost. */
static void test_bursts_from_two_threads_all_run(void **state)
{
    (void)state;
    gw_work *w = gw_work_new(3, 64);
    assert_non_null(w);
    counts c = {0};
    for (int round = 1; round <= 20; round++) {
        submitter s = {w, &c, 500};
        pthread_t a, b;
        assert_int_equal(pthread_create(&a, NULL, submit_many, &s), 0);
        assert_int_equal(pthread_create(&b, NULL, submit_many, &s), 0);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        wait_ran(&c, round * 1000);
    }
    gw_work_free(w);
}

/* Busy workers: the queue fills, then refuses; freeing runs every queued job. */
static void test_full_queue_refuses_and_free_runs_the_rest(void **state)
{
    (void)state;
    gw_work *w = gw_work_new(2, 4);
    assert_non_null(w);
    counts c = {0};
    atomic_store(&c.block, 1);
    assert_true(gw_work_submit(w, job, &c));
    assert_true(gw_work_submit(w, job, &c));
    int64_t until = kx_mono_ms() + HANG_GUARD_MS; /* both workers hold a job */
    while (atomic_load(&c.started) < 2 && kx_mono_ms() < until)
        usleep(200);
    assert_int_equal(atomic_load(&c.started), 2);
    for (int i = 0; i < 4; i++)
        assert_true(gw_work_submit(w, job, &c));
    assert_false(gw_work_submit(w, job, &c)); /* full */
    atomic_store(&c.block, 0);
    gw_work_free(w);
    assert_int_equal(atomic_load(&c.ran), 2 + 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_job_on_idle_workers_runs),
        cmocka_unit_test(test_bursts_from_two_threads_all_run),
        cmocka_unit_test(test_full_queue_refuses_and_free_runs_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
