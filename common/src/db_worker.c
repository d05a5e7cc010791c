/* db_worker.c — one thread, one kx_db, a bounded FIFO of jobs, completions posted to the
 * loop, and the group commit of groupable jobs (see kx/db_worker.h). */
#include "kx/db_worker.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kx/config.h"
#include "kx/log.h"
#include "kx/metrics.h"

#define GROUP_MAX_DEFAULT 64
#define GROUP_MAX_LIMIT 1024

typedef struct job {
    struct job *next;
    kx_db_job_run run;   /* for a groupable job: its solo run */
    kx_db_job_step step; /* NULL: not groupable */
    kx_db_job_done done;
    void *arg;
    kx_err err;
} job;

struct kx_db_worker {
    kx_loop *loop;
    kx_db *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_cond_t idle_cv; /* signalled when a job ends (kx_db_worker_flush) */
    bool running;           /* a job is running */
    job *head, *tail;
    size_t queued, max_queue;
    bool stopping;
    bool started;
    size_t group_max;        /* >= 1 */
    job **group;             /* the jobs taken together: group_max slots, worker thread only */
    kx_db_group_stats stats; /* under mu */
    /* the same counts, process-wide, on /metrics (handles looked up once) */
    kx_counter *m_groups, *m_grouped, *m_rollbacks, *m_solo;
};

static void job_done_on_loop(kx_loop *loop, void *arg)
{
    (void)loop;
    job *j = arg;
    j->done(j->arg, j->err);
    free(j);
}

static void job_dispose(void *arg)
{
    job *j = arg; /* the loop was freed before the completion ran */
    j->done(j->arg, j->err);
    free(j);
}

static void post_completion(kx_db_worker *w, job *j)
{
    j->err = KX_OK;
    if (kx_loop_post_owned(w->loop, job_done_on_loop, j, job_dispose) != KX_OK) {
        kx_error("db worker: could not post a completion (out of memory): calling it here");
        job_dispose(j);
    }
}

static void count(kx_db_worker *w, uint64_t groups, uint64_t grouped, uint64_t rollbacks,
                  uint64_t solo)
{
    pthread_mutex_lock(&w->mu);
    w->stats.groups += groups;
    w->stats.grouped += grouped;
    w->stats.rollbacks += rollbacks;
    w->stats.solo += solo;
    pthread_mutex_unlock(&w->mu);
    kx_counter_add(w->m_groups, groups);
    kx_counter_add(w->m_grouped, grouped);
    kx_counter_add(w->m_rollbacks, rollbacks);
    kx_counter_add(w->m_solo, solo);
}

/* How a group's transaction ended. */
typedef enum group_end {
    GROUP_COMMITTED,
    GROUP_STEP_FAILED,    /* job *failed_at failed on its own: the others may go on together */
    GROUP_STEP_TIMED_OUT, /* the same, after a statement timeout: its outcome stands */
    GROUP_BROKEN          /* connection lost, deadlock, serialization failure, COMMIT failed */
} group_end;

static bool whole_group_error(kx_db *db, kx_err err)
{
    const char *st = kx_db_last_sqlstate(db);
    return err == KX_ERR_UNAVAILABLE || strcmp(st, "40P01") == 0 || strcmp(st, "40001") == 0;
}

/* One transaction over g[0..n). */
static group_end try_group(kx_db *db, job **g, size_t n, size_t *failed_at)
{
    kx_err err = kx_db_begin(db);
    if (err != KX_OK) {
        kx_db_rollback(db);
        return GROUP_BROKEN;
    }
    for (size_t i = 0; i < n; i++) {
        err = g[i]->step(db, g[i]->arg);
        if (err != KX_OK) {
            bool whole = whole_group_error(db, err);
            kx_db_rollback(db);
            *failed_at = i;
            return whole                ? GROUP_BROKEN
                : err == KX_ERR_TIMEOUT ? GROUP_STEP_TIMED_OUT
                                        : GROUP_STEP_FAILED;
        }
    }
    if (kx_db_commit(db) != KX_OK) {
        kx_db_rollback(db); /* if it is still open; a lost answer may have committed */
        return GROUP_BROKEN;
    }
    return GROUP_COMMITTED;
}

static void run_solo(kx_db_worker *w, job **g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        g[i]->run(w->db, g[i]->arg);
    count(w, 0, 0, 0, n);
}

/* g[0..n), n >= 1, in FIFO order; on return every job has its final outcome in its arg. */
static void run_group(kx_db_worker *w, job **g, size_t n)
{
    while (n > 0) {
        if (n == 1) {
            g[0]->run(w->db, g[0]->arg);
            return;
        }
        size_t k = 0;
        group_end end = try_group(w->db, g, n, &k);
        switch (end) {
        case GROUP_COMMITTED: count(w, 1, n, 0, 0); return;
        case GROUP_BROKEN:
            kx_warn("db worker: a group of %zu jobs was rolled back (%s); running each alone", n,
                    kx_db_last_error(w->db));
            count(w, 0, 0, 1, 0);
            run_solo(w, g, n);
            return;
        case GROUP_STEP_FAILED:
        case GROUP_STEP_TIMED_OUT:
            count(w, 0, 0, 1, 0);
            if (k > 0)
                run_group(w, g, k); /* the jobs before it, together again */
            /* The failing one alone: its own error, or success. Not after a statement timeout
             * (a lock held elsewhere, most likely): it would hold up the lane as long again;
             * its step recorded the timeout, and nothing of it was written (rolled back). */
            if (end == GROUP_STEP_FAILED)
                run_solo(w, g + k, 1);
            g += k + 1;
            n -= k + 1;
            break;
        }
    }
}

static void *worker_main(void *arg)
{
    kx_db_worker *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->head == NULL && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stopping) { /* queued jobs are failed by kx_db_worker_free */
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        size_t n = 0;
        do { /* the head, and the groupable jobs right behind a groupable head */
            job *j = w->head;
            w->head = j->next;
            j->next = NULL;
            w->queued--;
            w->group[n++] = j;
        } while (w->group[0]->step != NULL && n < w->group_max && w->head != NULL &&
                 w->head->step != NULL);
        if (w->head == NULL)
            w->tail = NULL;
        w->running = true;
        pthread_mutex_unlock(&w->mu);

        run_group(w, w->group, n);
        for (size_t i = 0; i < n; i++) /* after the outcome is known: COMMIT returned */
            post_completion(w, w->group[i]);
        pthread_mutex_lock(&w->mu);
        w->running = false;
        pthread_cond_broadcast(&w->idle_cv);
        pthread_mutex_unlock(&w->mu);
    }
}

kx_err kx_db_worker_new(const char *conninfo, const kx_db_stmt *stmts, kx_loop *loop,
                        size_t max_queue, kx_db_worker **out)
{
    *out = NULL;
    kx_db_worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return KX_ERR_NOMEM;
    w->loop = loop;
    w->max_queue = max_queue > 0 ? max_queue : 1;
    int64_t group_max = GROUP_MAX_DEFAULT;
    kx_err err = kx_env_int("KX_DB_GROUP_MAX", GROUP_MAX_DEFAULT, 1, GROUP_MAX_LIMIT, &group_max);
    if (err != KX_OK) {
        free(w);
        return err;
    }
    w->group_max = (size_t)group_max;
    w->m_groups = kx_metrics_counter("kx_db_groups_total", "",
                                     "Transactions that committed several groupable jobs");
    w->m_grouped =
        kx_metrics_counter("kx_db_grouped_jobs_total", "", "Jobs committed as part of a group");
    w->m_rollbacks = kx_metrics_counter("kx_db_group_rollbacks_total", "",
                                        "Group transactions rolled back (a job failed, or the "
                                        "group did)");
    w->m_solo = kx_metrics_counter("kx_db_group_solo_runs_total", "",
                                   "Jobs of a rolled-back group run again alone");
    w->group = calloc(w->group_max, sizeof *w->group);
    if (w->group == NULL) {
        free(w);
        return KX_ERR_NOMEM;
    }
    err = kx_db_connect(conninfo, stmts, &w->db);
    if (w->db == NULL) { /* UNAVAILABLE still gives a handle that reconnects */
        free(w->group);
        free(w);
        return err != KX_OK ? err : KX_ERR_NOMEM;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->idle_cv, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        kx_db_close(w->db);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        pthread_cond_destroy(&w->idle_cv);
        free(w->group);
        free(w);
        return KX_ERR_IO;
    }
    w->started = true;
    *out = w;
    return KX_OK;
}

static kx_err submit(kx_db_worker *w, kx_db_job_run run, kx_db_job_step step, kx_db_job_done done,
                     void *arg)
{
    job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return KX_ERR_NOMEM;
    j->run = run;
    j->step = step;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&w->mu);
    kx_err err = KX_OK;
    if (w->stopping || w->queued >= w->max_queue) {
        err = KX_ERR_UNAVAILABLE;
    } else {
        if (w->tail != NULL)
            w->tail->next = j;
        else
            w->head = j;
        w->tail = j;
        w->queued++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    if (err != KX_OK)
        free(j);
    return err;
}

kx_err kx_db_worker_submit(kx_db_worker *w, kx_db_job_run run, kx_db_job_done done, void *arg)
{
    return submit(w, run, NULL, done, arg);
}

kx_err kx_db_worker_submit_group(kx_db_worker *w, kx_db_job_step step, kx_db_job_run solo,
                                 kx_db_job_done done, void *arg)
{
    return submit(w, solo, step, done, arg);
}

kx_db_group_stats kx_db_worker_group_stats(kx_db_worker *w)
{
    pthread_mutex_lock(&w->mu);
    kx_db_group_stats s = w->stats;
    pthread_mutex_unlock(&w->mu);
    return s;
}

size_t kx_db_worker_queued(kx_db_worker *w)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->queued;
    pthread_mutex_unlock(&w->mu);
    return n;
}

bool kx_db_worker_flush(kx_db_worker *w, int64_t timeout_ms)
{
    struct timespec until = kx_abs_timespec_in_ms(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&w->mu);
    while ((w->head != NULL || w->running) && !w->stopping)
        if (pthread_cond_timedwait(&w->idle_cv, &w->mu, &until) != 0)
            break; /* ETIMEDOUT */
    bool idle = w->head == NULL && !w->running;
    pthread_mutex_unlock(&w->mu);
    return idle;
}

void kx_db_worker_free(kx_db_worker *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    job *left = w->head;
    w->head = w->tail = NULL;
    w->queued = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->started)
        pthread_join(w->thread, NULL); /* after the job that runs, if any */
    while (left != NULL) {             /* never ran: failed here */
        job *next = left->next;
        left->done(left->arg, KX_ERR_UNAVAILABLE);
        free(left);
        left = next;
    }
    kx_db_close(w->db);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->idle_cv);
    free(w->group);
    free(w);
}
