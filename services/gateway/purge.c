/* purge.c — the purger of deleted threads' messages (see purge.h). */
#include "purge.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/time.h"

#define PURGE_RUN_MS \
    1000 /* one run of the purger, then the connection goes back (and a stop
                           * waits at most this long) */

/* After a failed run (Postgres restarting, a batch past the statement timeout) the next comes
 * after PURGE_RETRY_FIRST_MS, then twice as long per failure in a row, at most the interval; a
 * run that succeeds goes back to the interval. Waiting the whole interval (60 s by default),
 * a Postgres restart left the queue untouched a minute after the database was back. */
#define PURGE_RETRY_FIRST_MS 1000

struct gw_purger {
    gw_app *app;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stopping, kicked;
    kx_counter *deleted; /* kx_gateway_purged_messages_total */
    kx_counter *failed;  /* kx_gateway_purge_failures_total */
};

/* One queued thread's messages (mutex-free: the caller's connection). The messages deleted
 * and *done (none left), or -1. */
static int64_t purge_one(kx_db *db, const char *thread_id, int64_t deadline_ms, bool *done)
{
    char batch[16];
    snprintf(batch, sizeof batch, "%d", GW_PURGE_BATCH);
    const char *params[] = {thread_id, batch};
    int64_t total = 0;
    *done = false;
    while (!*done && kx_mono_ms() < deadline_ms) {
        kx_err err = KX_OK;
        PGresult *res = kx_db_exec(db, "gw_purge_batch", 2, params, &err);
        if (res == NULL) {
            kx_warn("gateway: purging the messages of deleted thread %s: %s", thread_id,
                    kx_err_str(err));
            return -1;
        }
        long n = PQntuples(res) == 1 ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
        PQclear(res);
        total += n;
        *done = n < GW_PURGE_BATCH;
    }
    return total;
}

int64_t gw_purge_run(kx_db *db, int64_t deadline_ms)
{
    int64_t total = 0;
    while (kx_mono_ms() < deadline_ms) {
        if (kx_db_begin(db) != KX_OK)
            return -1;
        PGresult *res = NULL;
        kx_err err = kx_db_exec_row(db, "gw_purge_next", 0, NULL, &res);
        if (err != KX_OK) { /* KX_ERR_NOT_FOUND: the queue is empty (or the rest taken) */
            kx_db_rollback(db);
            return err == KX_ERR_NOT_FOUND ? total : -1;
        }
        char thread_id[64];
        snprintf(thread_id, sizeof thread_id, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        bool done = false;
        int64_t n = purge_one(db, thread_id, deadline_ms, &done);
        const char *params[] = {thread_id};
        if (n < 0 || (done && kx_db_exec_cmd(db, "gw_purge_done", 1, params, NULL) != KX_OK) ||
            kx_db_commit(db) != KX_OK) {
            kx_db_rollback(db);
            return -1;
        }
        total += n;
        if (done)
            kx_debug("gateway: deleted thread %s: its messages are gone", thread_id);
    }
    return total;
}

/* The wait after a failed run, given the one before it (0: the run before succeeded). */
static int64_t purge_retry_ms(int64_t last_ms, int64_t interval_ms)
{
    int64_t next = last_ms > 0 ? last_ms * 2 : PURGE_RETRY_FIRST_MS;
    return next < interval_ms ? next : interval_ms;
}

static void *purger_main(void *arg)
{
    gw_purger *p = arg;
    const int64_t interval_ms = p->app->cfg.purge_interval_ms;
    int64_t retry_ms = 0; /* > 0: the last run failed, the next comes after this */
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        if (!p->kicked) {
            struct timespec until =
                kx_abs_timespec_in_ms(CLOCK_REALTIME, retry_ms > 0 ? retry_ms : interval_ms);
            int rc = 0;
            while (!p->stopping && !p->kicked && rc != ETIMEDOUT)
                rc = pthread_cond_timedwait(&p->cond, &p->mu, &until);
            if (p->stopping)
                break;
        }
        p->kicked = false;
        pthread_mutex_unlock(&p->mu);
        kx_db *db = kx_db_pool_get(p->app->pool, kx_deadline_in(p->app->cfg.db_wait_ms));
        int64_t n = -1;
        if (db != NULL) {
            n = gw_purge_run(db, kx_mono_ms() + PURGE_RUN_MS);
            kx_db_pool_put(p->app->pool, db);
        } else {
            kx_warn("gateway: the purger had no database connection within %lld ms",
                    (long long)p->app->cfg.db_wait_ms);
        }
        if (n < 0) { /* what is left waits for the retry (the queue keeps it) */
            kx_counter_add(p->failed, 1);
            retry_ms = purge_retry_ms(retry_ms, interval_ms);
            kx_info("gateway: the purger tries again in %lld ms", (long long)retry_ms);
        } else {
            retry_ms = 0;
        }
        if (n > 0)
            kx_counter_add(p->deleted, (uint64_t)n);
        pthread_mutex_lock(&p->mu);
        /* a run that deleted something may have ended on its time (a slow batch deletes fewer
         * than GW_PURGE_BATCH in it): go on at once; the run that finds nothing ends it */
        if (n > 0)
            p->kicked = true;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

gw_purger *gw_purger_start(gw_app *app)
{
    gw_purger *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->app = app;
    p->kicked = true; /* what a stopped gateway left */
    p->deleted = kx_metrics_counter("kx_gateway_purged_messages_total", "",
                                    "Messages of deleted threads removed by the purger");
    p->failed = kx_metrics_counter("kx_gateway_purge_failures_total", "",
                                   "Purger runs that ended on an error (Postgres unreachable or "
                                   "a statement failed); the queue keeps what is left");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (pthread_create(&p->thread, NULL, purger_main, p) != 0) {
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    return p;
}

void gw_purger_kick(gw_purger *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->kicked = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

void gw_purger_stop(gw_purger *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
