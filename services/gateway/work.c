/* work.c — the handlers' worker pool (see work.h): a mutex, a condition and a ring of jobs. */
#include "work.h"

#include <pthread.h>
#include <stdlib.h>

#include "kx/log.h"

typedef struct job {
    gw_work_fn fn;
    void *arg;
} job;

struct gw_work {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *ring;
    int cap, head, count;
    bool stopping;
    int idle; /* workers waiting on cv */
    int nthreads;
    pthread_t *threads;
};

static void *worker(void *arg)
{
    gw_work *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->count == 0 && !w->stopping) {
            w->idle++;
            pthread_cond_wait(&w->cv, &w->mu);
            w->idle--;
        }
        if (w->count == 0)
            break; /* stopping and nothing left */
        job j = w->ring[w->head];
        w->head = (w->head + 1) % w->cap;
        w->count--;
        bool stopping = w->stopping;
        pthread_mutex_unlock(&w->mu);
        j.fn(j.arg, stopping);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

gw_work *gw_work_new(int threads, int queue_max)
{
    gw_work *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->cap = queue_max;
    w->ring = calloc((size_t)queue_max, sizeof *w->ring);
    w->threads = calloc((size_t)threads, sizeof *w->threads);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (w->ring == NULL || w->threads == NULL) {
        gw_work_free(w);
        return NULL;
    }
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&w->threads[i], NULL, worker, w) != 0) {
            kx_error("http: cannot start worker thread %d", i);
            gw_work_free(w);
            return NULL;
        }
        w->nthreads++;
    }
    return w;
}

bool gw_work_submit(gw_work *w, gw_work_fn fn, void *arg)
{
    pthread_mutex_lock(&w->mu);
    bool ok = !w->stopping && w->count < w->cap;
    /* a wake-up only when a worker waits (busy ones take the job when they loop), and after the
     * unlock, so that the woken worker does not block on the mutex this thread still holds */
    bool wake = false;
    if (ok) {
        w->ring[(w->head + w->count) % w->cap] = (job){fn, arg};
        w->count++;
        wake = w->idle >= w->count;
    }
    pthread_mutex_unlock(&w->mu);
    if (wake)
        pthread_cond_signal(&w->cv);
    return ok;
}

void gw_work_free(gw_work *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->ring);
    free(w->threads);
    free(w);
}
