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
    kx_db_job_run run;   /* a plain job; NULL: a groupable one (how) */
    kx_db_group_job how; /* step, or send + recv */
    kx_db_job_done done;
    void *arg;
    kx_err err; /* what done gets: KX_OK, or a groupable job's outcome */
} job;

static bool groupable(const job *j)
{
    return j->run == NULL;
}

static bool piped(const job *j)
{
    return j->how.send != NULL;
}

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
    size_t *ends;            /* per job of a pipeline: results sent up to its last (group_max) */
    kx_db_group_stats stats; /* under mu */
    /* the same counts, process-wide, on /metrics (handles looked up once) */
    kx_counter *m_groups, *m_grouped, *m_rollbacks, *m_solo, *m_pipelines;
};

/* Completions go to the loop as one task per taken group: the jobs chained through next, in
 * FIFO order (one allocation, one lock and at most one wake-up of the loop for all of them). */
static void jobs_done(job *j)
{
    while (j != NULL) {
        job *next = j->next;
        j->done(j->arg, j->err);
        free(j);
        j = next;
    }
}

static void jobs_done_on_loop(kx_loop *loop, void *arg)
{
    (void)loop;
    jobs_done(arg);
}

static void jobs_dispose(void *arg)
{
    jobs_done(arg); /* the loop was freed before the completions ran */
}

static void post_completions(kx_db_worker *w, job **g, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        g[i]->next = g[i + 1];
    g[n - 1]->next = NULL;
    if (kx_loop_post_owned(w->loop, jobs_done_on_loop, g[0], jobs_dispose) != KX_OK) {
        kx_error("db worker: could not post completions (out of memory): calling them here");
        jobs_dispose(g[0]);
    }
}

static void count(kx_db_worker *w, kx_db_group_stats d)
{
    pthread_mutex_lock(&w->mu);
    w->stats.groups += d.groups;
    w->stats.grouped += d.grouped;
    w->stats.rollbacks += d.rollbacks;
    w->stats.solo += d.solo;
    w->stats.pipelines += d.pipelines;
    pthread_mutex_unlock(&w->mu);
    kx_counter_add(w->m_groups, d.groups);
    kx_counter_add(w->m_grouped, d.grouped);
    kx_counter_add(w->m_rollbacks, d.rollbacks);
    kx_counter_add(w->m_solo, d.solo);
    kx_counter_add(w->m_pipelines, d.pipelines);
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
    /* CANCELLED: a job heard "not run" with no failure before it: the pipeline is out of step */
    return err == KX_ERR_UNAVAILABLE || err == KX_ERR_CANCELLED || strcmp(st, "40P01") == 0 ||
        strcmp(st, "40001") == 0;
}

/* How job g[k] failing with err ends the group. */
static group_end job_failed(kx_db *db, job **g, size_t k, kx_err err, size_t *failed_at)
{
    g[k]->err = err;
    *failed_at = k;
    return whole_group_error(db, err) ? GROUP_BROKEN
        : err == KX_ERR_TIMEOUT       ? GROUP_STEP_TIMED_OUT
                                      : GROUP_STEP_FAILED;
}

/* One pipeline of m send/recv jobs, with BEGIN in front and COMMIT at the end when asked.
 * GROUP_COMMITTED here means: every statement of it succeeded (and COMMIT, if it was in it). */
static group_end pipe_jobs(kx_db_worker *w, job **g, size_t m, bool with_begin, bool with_commit,
                           size_t *failed_at, kx_err *why)
{
    kx_db *db = w->db;
    (void)kx_db_pipe_begin(db); /* a failure comes back as every result's error */
    if (with_begin)
        (void)kx_db_pipe_send_sql(db, "BEGIN");
    size_t nsent = m;
    kx_err send_err = KX_OK;
    for (size_t k = 0; k < m; k++) {
        send_err = g[k]->how.send(db, g[k]->arg);
        w->ends[k] = kx_db_pipe_sent(db);
        if (send_err != KX_OK) { /* the job could not send all: the rest stays unsent */
            nsent = k;
            break;
        }
    }
    if (with_commit && send_err == KX_OK)
        (void)kx_db_pipe_send_sql(db, "COMMIT");
    (void)kx_db_pipe_sync(db);
    count(w, (kx_db_group_stats){.pipelines = 1});
    group_end end = GROUP_COMMITTED;
    kx_err err = with_begin ? kx_db_pipe_result_cmd(db, NULL) : KX_OK;
    if (err != KX_OK) {
        *why = err;
        end = GROUP_BROKEN;
        goto out;
    }
    for (size_t k = 0; k < nsent; k++) {
        err = g[k]->how.recv(db, g[k]->arg);
        kx_err rest = kx_db_pipe_skip(db, w->ends[k]); /* what recv left unread */
        if (err == KX_OK && rest != KX_OK) {
            kx_error("db worker: a job's recv missed a failed statement of its own (%s)",
                     kx_err_str(rest));
            err = rest;
        }
        if (err != KX_OK) {
            *why = err;
            end = job_failed(db, g, k, err, failed_at);
            goto out;
        }
        g[k]->err = KX_OK;
    }
    if (send_err != KX_OK) {
        *why = send_err;
        end = job_failed(db, g, nsent, send_err, failed_at);
        goto out;
    }
    if (with_commit) {
        PGresult *r = kx_db_pipe_result(db, &err);
        /* COMMIT of a failed transaction "succeeds" with the tag ROLLBACK */
        if (r == NULL || strcmp(PQcmdStatus(r), "ROLLBACK") == 0) {
            *why = err != KX_OK ? err : KX_ERR_INTERNAL;
            end = GROUP_BROKEN;
        }
        PQclear(r);
    }
out:
    kx_db_pipe_end(db);
    return end;
}

/* g[0..n) in ONE transaction (or none when tx is false: a lone one-write job). Consecutive
 * send/recv jobs go out as one pipeline. On failure *why is the error; for a job's own failure
 * *failed_at is the job and its err is set. */
static group_end try_group(kx_db_worker *w, job **g, size_t n, bool tx, size_t *failed_at,
                           kx_err *why)
{
    kx_db *db = w->db;
    group_end end = GROUP_COMMITTED;
    for (size_t i = 0; i < n && end == GROUP_COMMITTED;) {
        if (piped(g[i])) {
            size_t j = i;
            while (j < n && piped(g[j]))
                j++;
            size_t k = 0;
            end = pipe_jobs(w, g + i, j - i, tx && i == 0, tx && j == n, &k, why);
            *failed_at = i + k;
            i = j;
            continue;
        }
        kx_err err = tx && i == 0 ? kx_db_begin(db) : KX_OK;
        if (err != KX_OK) {
            *why = err;
            end = GROUP_BROKEN;
            break;
        }
        err = g[i]->how.step(db, g[i]->arg);
        if (err != KX_OK) {
            *why = err;
            end = job_failed(db, g, i, err, failed_at);
            break;
        }
        g[i]->err = KX_OK;
        if (++i == n && tx && (err = kx_db_commit(db)) != KX_OK) {
            *why = err;
            end = GROUP_BROKEN;
        }
    }
    if (end != GROUP_COMMITTED && tx)
        kx_db_rollback(db); /* if it is still open; a lost COMMIT answer may have committed */
    return end;
}

/* A groupable job alone: a group of one (no transaction for a one-write job), once more after
 * a lost connection. */
static void run_alone(kx_db_worker *w, job *j)
{
    for (int tries = 0;; tries++) {
        size_t k = 0;
        kx_err why = KX_OK;
        group_end end = try_group(w, &j, 1, !j->how.one_write, &k, &why);
        j->err = end == GROUP_COMMITTED ? KX_OK : why;
        if (j->err != KX_ERR_UNAVAILABLE || tries > 0)
            return;
        kx_info("db worker: the connection was lost under a job; running it once more");
    }
}

static void run_each_alone(kx_db_worker *w, job **g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        run_alone(w, g[i]);
    count(w, (kx_db_group_stats){.solo = n});
}

/* g[0..n), n >= 1, in FIFO order; on return every job has its outcome in err. */
static void run_group(kx_db_worker *w, job **g, size_t n)
{
    while (n > 0) {
        if (n == 1) {
            run_alone(w, g[0]);
            return;
        }
        size_t k = 0;
        kx_err why = KX_OK;
        group_end end = try_group(w, g, n, true, &k, &why);
        switch (end) {
        case GROUP_COMMITTED: count(w, (kx_db_group_stats){.groups = 1, .grouped = n}); return;
        case GROUP_BROKEN:
            kx_warn("db worker: a group of %zu jobs was rolled back (%s: %s); running each alone",
                    n, kx_err_str(why), kx_db_last_error(w->db));
            count(w, (kx_db_group_stats){.rollbacks = 1});
            run_each_alone(w, g, n);
            return;
        case GROUP_STEP_FAILED:
        case GROUP_STEP_TIMED_OUT:
            count(w, (kx_db_group_stats){.rollbacks = 1});
            if (k > 0)
                run_group(w, g, k); /* the jobs before it, together again */
            /* The failing one alone: its own error, or success. Not after a statement timeout
             * (a lock held elsewhere, most likely): it would hold up the lane as long again;
             * its timeout is its outcome, and nothing of it was written (rolled back). */
            if (end == GROUP_STEP_FAILED)
                run_each_alone(w, g + k, 1);
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
        } while (groupable(w->group[0]) && n < w->group_max && w->head != NULL &&
                 groupable(w->head));
        if (w->head == NULL)
            w->tail = NULL;
        w->running = true;
        pthread_mutex_unlock(&w->mu);

        if (groupable(w->group[0])) {
            run_group(w, w->group, n);
        } else {
            w->group[0]->run(w->db, w->group[0]->arg);
            w->group[0]->err = KX_OK;
        }
        post_completions(w, w->group, n); /* after the outcome is known: COMMIT returned */
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
    w->m_pipelines = kx_metrics_counter("kx_db_pipelines_total", "",
                                        "Pipelines of groupable jobs sent (one round trip each)");
    w->group = calloc(w->group_max, sizeof *w->group);
    w->ends = calloc(w->group_max, sizeof *w->ends);
    if (w->group == NULL || w->ends == NULL) {
        free(w->group);
        free(w->ends);
        free(w);
        return KX_ERR_NOMEM;
    }
    err = kx_db_connect(conninfo, stmts, &w->db);
    if (w->db == NULL) { /* UNAVAILABLE still gives a handle that reconnects */
        free(w->group);
        free(w->ends);
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
        free(w->ends);
        free(w);
        return KX_ERR_IO;
    }
    w->started = true;
    *out = w;
    return KX_OK;
}

static kx_err submit(kx_db_worker *w, kx_db_job_run run, const kx_db_group_job *how,
                     kx_db_job_done done, void *arg)
{
    job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return KX_ERR_NOMEM;
    j->run = run;
    if (how != NULL)
        j->how = *how;
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
    if (run == NULL) {
        kx_error("db worker: a job without a run function");
        return KX_ERR_INVALID;
    }
    return submit(w, run, NULL, done, arg);
}

kx_err kx_db_worker_submit_group(kx_db_worker *w, const kx_db_group_job *how, kx_db_job_done done,
                                 void *arg)
{
    bool step = how != NULL && how->step != NULL;
    bool pipe = how != NULL && how->send != NULL && how->recv != NULL;
    bool half = how != NULL && (how->send != NULL) != (how->recv != NULL);
    if (step == pipe || half) {
        kx_error("db worker: a groupable job needs a step, or a send and a recv (not both)");
        return KX_ERR_INVALID;
    }
    return submit(w, NULL, how, done, arg);
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
    free(w->ends);
    free(w);
}
