/* test_loop.c — kx_loop: timer order (ties fire in creation order), many timers through the
 * heap, cancel (also of other timers from inside a callback), posts from another thread in FIFO
 * order, fd watching through a pipe (incl. unwatch from the fd's own callback and silent
 * watches), stop from another thread and before run, in-loop-thread detection, posts waking a
 * loop asleep on a far timer each time, a stop inside a task keeping the tasks behind it. */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cmocka.h>

#include "kx/loop.h"
#include "kx/time.h"

/* ---- timers ---- */

typedef struct order_log {
    int seen[512];
    int64_t at[512];
    int n;
    int stop_after;
} order_log;

typedef struct rec {
    order_log *log;
    int id;
} rec;

static void record(kx_loop *loop, void *arg)
{
    rec *r = arg;
    r->log->at[r->log->n] = kx_mono_ms();
    r->log->seen[r->log->n++] = r->id;
    if (r->log->n == r->log->stop_after)
        kx_loop_stop(loop);
}

static void test_timers_fire_in_deadline_then_creation_order(void **state)
{
    kx_loop *loop = kx_loop_new();
    assert_non_null(loop);
    order_log log = {.stop_after = 5};
    rec r[5] = {{&log, 0}, {&log, 1}, {&log, 2}, {&log, 3}, {&log, 4}};
    /* 1 and 3 share a due time (30 ms), 4 and 2 share one (0 ms): creation order breaks ties */
    int64_t t0 = kx_mono_ms();
    assert_non_null(kx_loop_timer(loop, 60, record, &r[0]));
    assert_non_null(kx_loop_timer(loop, 30, record, &r[1]));
    assert_non_null(kx_loop_timer(loop, 0, record, &r[4]));
    assert_non_null(kx_loop_timer(loop, 30, record, &r[3]));
    assert_non_null(kx_loop_timer(loop, 0, record, &r[2]));
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(log.n, 5);
    int want[5] = {4, 2, 1, 3, 0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(log.seen[i], want[i]);
    assert_true(log.at[2] - t0 >= 30); /* not early */
    assert_true(log.at[4] - t0 >= 60);
    assert_true(log.at[4] - t0 < 500); /* not much late */
    kx_loop_free(loop);
}

static void test_many_timers_come_out_sorted(void **state)
{
    enum {
        N = 300
    };
    kx_loop *loop = kx_loop_new();
    order_log *log = calloc(1, sizeof *log);
    rec *r = calloc(N, sizeof *r);
    int due[N];
    kx_timer *timers[N];
    log->stop_after = N - N / 3;
    unsigned seed = 12345;
    int64_t created_from = kx_mono_ms();
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        due[i] = (int)((seed >> 16) % 40);
        r[i] = (rec){log, i};
        timers[i] = kx_loop_timer(loop, due[i], record, &r[i]);
        assert_non_null(timers[i]);
    }
    /* Each timer is due `due` ms after its own creation: creating them all may take several
     * ms on a slow (or sanitized, or busy) machine, and that span is how far apart in due
     * time two timers may fire out of order. */
    int64_t slack = kx_mono_ms() - created_from + 1;
    for (int i = 0; i < N; i += 3) /* cancel every third one (from the middle of the heap) */
        kx_timer_cancel(timers[i]);
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(log->n, N - N / 3);
    for (int k = 0; k < log->n; k++) {
        assert_true(log->seen[k] % 3 != 0);
        if (k > 0) {
            int a = log->seen[k - 1], b = log->seen[k];
            /* by due time, then creation order (timers were created in id order); the clock
             * may tick while creating them, so due times up to `slack` ms apart may swap */
            assert_true(due[a] <= due[b] + slack);
            if (due[a] == due[b])
                assert_true(a < b);
        }
    }
    kx_loop_free(loop);
    free(r);
    free(log);
}

typedef struct cancel_other {
    kx_timer *victim;
    int fired_victim;
} cancel_other;

static void victim_cb(kx_loop *loop, void *arg)
{
    ((cancel_other *)arg)->fired_victim++;
}

static void canceller_cb(kx_loop *loop, void *arg)
{
    cancel_other *c = arg;
    kx_timer_cancel(c->victim); /* due in the same pass: must not fire */
    c->victim = NULL;
}

static void stop_cb(kx_loop *loop, void *arg)
{
    kx_loop_stop(loop);
}

static void test_timer_cancel(void **state)
{
    kx_loop *loop = kx_loop_new();
    order_log log = {.stop_after = 2};
    rec r[4] = {{&log, 0}, {&log, 1}, {&log, 2}, {&log, 3}};
    kx_timer *t0 = kx_loop_timer(loop, 10, record, &r[0]);
    assert_non_null(kx_loop_timer(loop, 20, record, &r[1]));
    kx_timer *t2 = kx_loop_timer(loop, 5, record, &r[2]);
    assert_non_null(kx_loop_timer(loop, 40, record, &r[3]));
    kx_timer_cancel(t0);
    kx_timer_cancel(t2);
    kx_timer_cancel(NULL); /* no-op */
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.seen[0], 1);
    assert_int_equal(log.seen[1], 3);

    /* a callback cancels a timer that is due in the same pass */
    cancel_other c = {0};
    assert_non_null(kx_loop_timer(loop, 5, canceller_cb, &c));
    c.victim = kx_loop_timer(loop, 5, victim_cb, &c);
    assert_non_null(kx_loop_timer(loop, 30, stop_cb, NULL));
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(c.fired_victim, 0);
    kx_loop_free(loop);
}

/* A pending timer and queued tasks are freed by kx_loop_free (checked by ASan). */
static void never_cb(kx_loop *loop, void *arg)
{
    fail_msg("must not run");
}

static void test_free_with_pending_timer_and_task(void **state)
{
    kx_loop *loop = kx_loop_new();
    assert_non_null(kx_loop_timer(loop, 100000, never_cb, NULL));
    assert_int_equal(kx_loop_post(loop, never_cb, NULL), KX_OK);
    kx_loop_free(loop);
}

/* A task that owns its argument and never ran is disposed of by kx_loop_free (a message
 * posted by a bus callback during shutdown leaked before: LSan failed the runner's drain). */
static void dispose_count(void *arg)
{
    (*(int *)arg)++;
}

static void test_free_disposes_owned_tasks(void **state)
{
    int disposed = 0;
    kx_loop *loop = kx_loop_new();
    assert_int_equal(kx_loop_post_owned(loop, never_cb, &disposed, dispose_count), KX_OK);
    assert_int_equal(kx_loop_post_owned(loop, never_cb, &disposed, dispose_count), KX_OK);
    assert_int_equal(kx_loop_post(loop, never_cb, NULL), KX_OK);
    kx_loop_free(loop);
    assert_int_equal(disposed, 2);
}

/* ---- posts ---- */

typedef struct post_state {
    kx_loop *loop;
    int next_expected;
    int total;
    int errors;
    bool in_loop_thread_ok;
} post_state;

static void posted(kx_loop *loop, void *arg)
{
    post_state *ps = *(post_state **)arg;
    int id = *(int *)((char *)arg + sizeof(post_state *));
    if (id != ps->next_expected)
        ps->errors++;
    if (!kx_loop_in_loop_thread(loop))
        ps->in_loop_thread_ok = false;
    ps->next_expected++;
    free(arg);
    if (ps->next_expected == ps->total)
        kx_loop_stop(loop);
}

static void *poster_thread(void *arg)
{
    post_state *ps = arg;
    for (int i = 0; i < ps->total; i++) {
        /* The pointer's own bytes go first (not what it points to), then i. */
        // cppcheck-suppress pointerSize
        char *a = malloc(sizeof(post_state *) + sizeof(int));
        if (a == NULL)
            abort(); /* not a cmocka assert: this is not the test's thread */
        memcpy(a, &ps, sizeof ps);
        memcpy(a + sizeof ps, &i, sizeof i);
        if (kx_loop_post(ps->loop, posted, a) != KX_OK)
            abort();
        if (i % 100 == 0)
            usleep(100);
    }
    return NULL;
}

static void test_post_from_another_thread_is_fifo_on_loop_thread(void **state)
{
    kx_loop *loop = kx_loop_new();
    post_state ps = {.loop = loop, .total = 2000, .in_loop_thread_ok = true};
    assert_false(kx_loop_in_loop_thread(loop)); /* nobody runs it yet */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, poster_thread, &ps), 0);
    assert_int_equal(kx_loop_run(loop), KX_OK);
    pthread_join(th, NULL);
    assert_int_equal(ps.next_expected, 2000);
    assert_int_equal(ps.errors, 0);
    assert_true(ps.in_loop_thread_ok);
    assert_true(kx_loop_in_loop_thread(loop)); /* this thread ran it */
    kx_loop_free(loop);
}

/* Posts that come while the loop blocks on a far timer wake it every time: the eventfd is
 * written for the first post after each sleep, not only for the first post ever. */
typedef struct wake_state {
    kx_loop *loop;
    atomic_int ran;
} wake_state;

static void count_and_maybe_stop(kx_loop *loop, void *arg)
{
    wake_state *ws = arg;
    if (atomic_fetch_add(&ws->ran, 1) + 1 == 5)
        kx_loop_stop(loop);
}

static void *slow_poster(void *arg)
{
    wake_state *ws = arg;
    for (int i = 0; i < 5; i++) {
        usleep(20 * 1000); /* the loop is asleep again by then */
        if (kx_loop_post(ws->loop, count_and_maybe_stop, ws) != KX_OK)
            abort();
        if (i == 2 && kx_loop_post(ws->loop, count_and_maybe_stop, ws) != KX_OK)
            abort(); /* two in a row: one wake-up for both */
    }
    return NULL;
}

static void test_posts_wake_a_sleeping_loop_each_time(void **state)
{
    wake_state ws = {.loop = kx_loop_new()};
    atomic_init(&ws.ran, 0);
    kx_timer *far = kx_loop_timer(ws.loop, 10000, never_cb, NULL);
    pthread_t th;
    int64_t t0 = kx_mono_ms();
    assert_int_equal(pthread_create(&th, NULL, slow_poster, &ws), 0);
    assert_int_equal(kx_loop_run(ws.loop), KX_OK);
    int64_t took = kx_mono_ms() - t0;
    pthread_join(th, NULL);
    assert_true(atomic_load(&ws.ran) >= 5);
    assert_true(took < 5000);
    kx_timer_cancel(far);
    kx_loop_free(ws.loop);
}

/* A task that stops the loop: the tasks queued behind it stay queued, in order, for the next
 * kx_loop_run (or kx_loop_free's dispose). */
static void record_id(kx_loop *loop, void *arg)
{
    int *order = arg;
    int n = ++order[0];
    order[n] = 10 + n;
    if (n == 1 || n == 3)
        kx_loop_stop(loop);
}

static void test_stop_in_a_task_keeps_the_rest_queued(void **state)
{
    int order[8] = {0};
    kx_loop *loop = kx_loop_new();
    for (int i = 0; i < 3; i++)
        assert_int_equal(kx_loop_post(loop, record_id, order), KX_OK);
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(order[0], 1);                                 /* the first stopped the loop */
    assert_int_equal(kx_loop_post(loop, record_id, order), KX_OK); /* behind the two left */
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(order[0], 3); /* the 2nd and the 3rd (which stopped it) */
    int disposed = 0;
    assert_int_equal(kx_loop_post_owned(loop, never_cb, &disposed, dispose_count), KX_OK);
    kx_loop_free(loop); /* the 4th and the owned one: never run, the owned one disposed */
    assert_int_equal(disposed, 1);
}

/* ---- stop ---- */

static void *stopper_thread(void *arg)
{
    usleep(50 * 1000);
    kx_loop_stop(arg);
    return NULL;
}

static void test_stop_from_another_thread_and_before_run(void **state)
{
    kx_loop *loop = kx_loop_new();
    /* stop before run: run returns at once */
    kx_loop_stop(loop);
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_true(kx_mono_ms() - t0 < 50);

    /* idle loop (nothing watched, no timers) woken by a stop from another thread */
    pthread_t th;
    t0 = kx_mono_ms();
    assert_int_equal(pthread_create(&th, NULL, stopper_thread, loop), 0);
    assert_int_equal(kx_loop_run(loop), KX_OK);
    int64_t took = kx_mono_ms() - t0;
    pthread_join(th, NULL);
    assert_true(took >= 45);
    assert_true(took < 1000);
    kx_loop_free(loop);
}

/* ---- fds ---- */

static void write_lo(kx_loop *loop, void *arg);

typedef struct pipe_state {
    int rfd;
    int *wfd; /* the write end: "lo" is written once "hel" has been read */
    int reads;
    char buf[64];
    size_t len;
    uint32_t last_events;
} pipe_state;

static void on_readable(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    pipe_state *ps = arg;
    ps->last_events = events;
    ssize_t n = read(fd, ps->buf + ps->len, sizeof ps->buf - 1 - ps->len);
    if (n > 0)
        ps->len += (size_t)n;
    ps->reads++;
    /* the second write only after the first read, so that it is a second readiness event
     * however late the loop thread runs (two timers 20 ms apart could fire in one batch) */
    if (ps->reads == 1 && ps->len < 5 && ps->wfd != NULL)
        assert_non_null(kx_loop_timer(loop, 10, write_lo, ps->wfd));
    if (ps->len >= 5) {
        kx_loop_unwatch(loop, fd); /* from inside its own callback */
        kx_loop_stop(loop);
    }
}

static void write_hello(kx_loop *loop, void *arg)
{
    int wfd = *(int *)arg;
    assert_int_equal(write(wfd, "hel", 3), 3);
}

static void write_lo(kx_loop *loop, void *arg)
{
    int wfd = *(int *)arg;
    assert_int_equal(write(wfd, "lo", 2), 2);
}

static void test_fd_watch_via_pipe(void **state)
{
    kx_loop *loop = kx_loop_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    pipe_state ps = {.rfd = p[0], .wfd = &p[1]};
    assert_int_equal(kx_loop_watch(loop, p[0], EPOLLIN, on_readable, &ps), KX_OK);
    assert_non_null(kx_loop_timer(loop, 10, write_hello, &p[1]));
    assert_int_equal(kx_loop_run(loop), KX_OK);
    ps.buf[ps.len] = '\0';
    assert_string_equal(ps.buf, "hello");
    assert_int_equal(ps.reads, 2);
    assert_true(ps.last_events & EPOLLIN);

    /* unwatched: more data does not call back */
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_non_null(kx_loop_timer(loop, 30, stop_cb, NULL));
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(ps.reads, 2);

    /* a silent watch (events 0) stays registered but quiet, even with data pending and the
     * writer closed; re-enabling it delivers */
    assert_int_equal(kx_loop_watch(loop, p[0], 0, on_readable, &ps), KX_OK);
    close(p[1]);
    assert_non_null(kx_loop_timer(loop, 30, stop_cb, NULL));
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(ps.reads, 2);
    assert_int_equal(kx_loop_watch(loop, p[0], EPOLLIN, on_readable, &ps), KX_OK);
    assert_non_null(kx_loop_timer(loop, 30, stop_cb, NULL));
    kx_loop_run(loop);
    assert_true(ps.reads >= 3);
    kx_loop_unwatch(loop, p[0]);
    kx_loop_unwatch(loop, p[0]); /* twice: ignored */
    close(p[0]);
    kx_loop_free(loop);
}

/* Two fds ready in the same batch; the first callback unwatches and closes the second: its
 * pending event must be ignored, not delivered to freed memory. */
typedef struct pair_state {
    int fds[2];
    int calls[2];
} pair_state;

static void on_pair(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    pair_state *ps = arg;
    int me = fd == ps->fds[0] ? 0 : 1;
    ps->calls[me]++;
    int other = ps->fds[1 - me];
    kx_loop_unwatch(loop, fd);
    kx_loop_unwatch(loop, other);
    kx_loop_stop(loop);
}

static void test_unwatch_other_fd_in_same_batch(void **state)
{
    kx_loop *loop = kx_loop_new();
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    pair_state ps = {.fds = {a[0], b[0]}};
    assert_int_equal(kx_loop_watch(loop, a[0], EPOLLIN, on_pair, &ps), KX_OK);
    assert_int_equal(kx_loop_watch(loop, b[0], EPOLLIN, on_pair, &ps), KX_OK);
    assert_int_equal(write(a[1], "1", 1), 1);
    assert_int_equal(write(b[1], "1", 1), 1);
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(ps.calls[0] + ps.calls[1], 1);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    kx_loop_free(loop);
}

/* An fd closed without an unwatch and its number reused: watching the new one works. */
static void count_and_stop(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    (*(int *)arg)++;
    kx_loop_stop(loop);
}

static void test_watch_after_fd_number_reuse(void **state)
{
    kx_loop *loop = kx_loop_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    int calls = 0;
    assert_int_equal(kx_loop_watch(loop, p[0], EPOLLIN, count_and_stop, &calls), KX_OK);
    int old_r = p[0];
    close(p[0]);
    close(p[1]);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(p[0], old_r); /* the kernel hands out the lowest free number */
    assert_int_equal(kx_loop_watch(loop, p[0], EPOLLIN, count_and_stop, &calls), KX_OK);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_non_null(kx_loop_timer(loop, 2000, stop_cb, NULL));
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(calls, 1);
    kx_loop_unwatch(loop, p[0]);
    close(p[0]);
    close(p[1]);
    kx_loop_free(loop);
}

static void test_watch_rejects_bad_fd(void **state)
{
    kx_loop *loop = kx_loop_new();
    assert_int_equal(kx_loop_watch(loop, -1, EPOLLIN, on_pair, NULL), KX_ERR_INVALID);
    assert_int_equal(kx_loop_watch(loop, 1000, EPOLLIN, on_pair, NULL), KX_ERR_IO); /* not open */
    kx_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_then_creation_order),
        cmocka_unit_test(test_many_timers_come_out_sorted),
        cmocka_unit_test(test_timer_cancel),
        cmocka_unit_test(test_free_with_pending_timer_and_task),
        cmocka_unit_test(test_free_disposes_owned_tasks),
        cmocka_unit_test(test_post_from_another_thread_is_fifo_on_loop_thread),
        cmocka_unit_test(test_stop_from_another_thread_and_before_run),
        cmocka_unit_test(test_posts_wake_a_sleeping_loop_each_time),
        cmocka_unit_test(test_stop_in_a_task_keeps_the_rest_queued),
        cmocka_unit_test(test_fd_watch_via_pipe),
        cmocka_unit_test(test_unwatch_other_fd_in_same_batch),
        cmocka_unit_test(test_watch_after_fd_number_reuse),
        cmocka_unit_test(test_watch_rejects_bad_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
