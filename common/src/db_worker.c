/* db_worker.c — one thread, one kx_db, a bounded FIFO of jobs, completions posted to the
 * loop (see kx/db_worker.h). */
#include "kx/db_worker.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kx/log.h"

typedef struct job {
    struct job *next;
    kx_db_job_run run;
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
        job *j = w->head;
        w->head = j->next;
        if (w->head == NULL)
            w->tail = NULL;
        w->queued--;
        w->running = true;
        pthread_mutex_unlock(&w->mu);

        j->run(w->db, j->arg);
        j->err = KX_OK;
        if (kx_loop_post_owned(w->loop, job_done_on_loop, j, job_dispose) != KX_OK) {
            kx_error("db worker: could not post a completion (out of memory): calling it here");
            job_dispose(j);
        }
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
    kx_err err = kx_db_connect(conninfo, stmts, &w->db);
    if (w->db == NULL) { /* UNAVAILABLE still gives a handle that reconnects */
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
        free(w);
        return KX_ERR_IO;
    }
    w->started = true;
    *out = w;
    return KX_OK;
}

kx_err kx_db_worker_submit(kx_db_worker *w, kx_db_job_run run, kx_db_job_done done, void *arg)
{
    job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return KX_ERR_NOMEM;
    j->run = run;
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
    free(w);
}
