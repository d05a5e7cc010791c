/* rdb.c — the runner's database threads and its small stand-alone jobs (see rdb.h). */
#include "rdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/db_lanes.h"
#include "kx/log.h"
#include "store.h"

kx_err rdb_open(runner *r)
{
    size_t n = r->cfg->db_conns > 0 ? (size_t)r->cfg->db_conns : 1;
    size_t max_queue = (size_t)r->cfg->capacity * 2 + 64;
    return kx_db_lanes_new(r->cfg->database_url, store_statements(), r->loop, n, max_queue,
                           &r->dbl);
}

static void job_done(void *arg, kx_err err)
{
    rdb_job *j = arg;
    bool groupable = j->run == NULL;
    /* a groupable job's err is its outcome (it ran); a plain job's says it never ran */
    bool live = !j->orphan && (groupable || err == KX_OK);
    j->err = err;
    if (!j->orphan) { /* unlink: the runner still lives */
        runner *r = j->owner;
        if (j->prev != NULL)
            j->prev->next = j->next;
        else
            r->jobs = j->next;
        if (j->next != NULL)
            j->next->prev = j->prev;
    }
    j->done(j, live);
}

static void job_run(kx_db *db, void *arg)
{
    rdb_job *j = arg;
    j->run(db, j);
}

static kx_err job_step(kx_db *db, void *arg)
{
    rdb_job *j = arg;
    return j->how.step(db, j);
}

static kx_err job_send(kx_db *db, void *arg)
{
    rdb_job *j = arg;
    return j->how.send(db, j);
}

static kx_err job_recv(kx_db *db, void *arg)
{
    rdb_job *j = arg;
    return j->how.recv(db, j);
}

static kx_err submit(runner *r, const char *key, rdb_job *j, rdb_run_fn run,
                     const rdb_group_job *how, rdb_done_fn done)
{
    if (r->dbl == NULL)
        return KX_ERR_UNAVAILABLE;
    j->owner = r;
    j->run = run;
    j->how = how != NULL ? *how : (rdb_group_job){0};
    j->done = done;
    j->err = KX_OK;
    j->orphan = false;
    j->prev = NULL;
    j->next = r->jobs;
    kx_err err = KX_OK;
    if (how != NULL) {
        kx_db_group_job g = {.step = how->step != NULL ? job_step : NULL,
                             .send = how->send != NULL ? job_send : NULL,
                             .recv = how->recv != NULL ? job_recv : NULL,
                             .one_write = how->one_write};
        err = kx_db_lanes_submit_group(r->dbl, key, &g, job_done, j);
    } else {
        err = kx_db_lanes_submit(r->dbl, key, job_run, job_done, j);
    }
    if (err != KX_OK)
        return err == KX_ERR_NOMEM ? err : KX_ERR_UNAVAILABLE;
    if (r->jobs != NULL)
        r->jobs->prev = j;
    r->jobs = j;
    return KX_OK;
}

kx_err rdb_submit(runner *r, const char *key, rdb_job *j, rdb_run_fn run, rdb_done_fn done)
{
    return submit(r, key, j, run, NULL, done);
}

kx_err rdb_submit_group(runner *r, const char *key, rdb_job *j, const rdb_group_job *how,
                        rdb_done_fn done)
{
    return submit(r, key, j, NULL, how, done);
}

void rdb_flush(runner *r, int64_t timeout_ms)
{
    (void)kx_db_lanes_flush(r->dbl, timeout_ms);
}

void rdb_close(runner *r)
{
    for (rdb_job *j = r->jobs; j != NULL; j = j->next)
        j->orphan = true; /* their completions may still come (kx_loop_free): release only */
    r->jobs = NULL;
    kx_db_lanes_free(r->dbl);
    r->dbl = NULL;
}

/* ---- /readyz ------------------------------------------------------------------------------ */

typedef struct probe_job {
    rdb_job base;
    bool ok;
} probe_job;

static void probe_run(kx_db *db, rdb_job *j)
{
    ((probe_job *)j)->ok = kx_db_ok(db);
}

static void probe_done(rdb_job *j, bool live)
{
    probe_job *p = (probe_job *)j;
    if (live) {
        atomic_store(&j->owner->db_ok, p->ok);
        j->owner->probing = false;
    }
    free(p);
}

void rdb_probe(runner *r)
{
    if (r->probing)
        return;
    probe_job *p = calloc(1, sizeof *p);
    if (p == NULL)
        return;
    if (rdb_submit(r, "probe", &p->base, probe_run, probe_done) != KX_OK) {
        free(p);
        return;
    }
    r->probing = true;
}

/* ---- fenced ends of runs the runner no longer holds ---------------------------------------- */

typedef struct end_job {
    rdb_job base;
    bool handback; /* else: finish failed */
    char run_id[40];
    int64_t epoch;
    char why[300];
    kx_err err;
    bool won;
} end_job;

/* One fenced statement, pipelined: inside a group's transaction, or alone (autocommit). */
static kx_err end_send(kx_db *db, rdb_job *j)
{
    end_job *e = (end_job *)j;
    return e->handback ? store_handback_run_send(db, e->run_id, e->epoch, e->why)
                       : store_finish_run_send(db, e->run_id, e->epoch, "failed", e->why);
}

static kx_err end_recv(kx_db *db, rdb_job *j)
{
    end_job *e = (end_job *)j;
    e->won = false;
    return e->handback ? store_let_go_recv(db) : store_finish_run_recv(db, &e->won);
}

static void end_done(rdb_job *j, bool live)
{
    end_job *e = (end_job *)j;
    e->err = j->err; /* the statement's outcome, its COMMIT's when it was grouped */
    if (live) {
        runner *r = j->owner;
        if (e->handback)
            r->parked_inflight--;
        bool gone = e->err == KX_ERR_UNAVAILABLE || e->err == KX_ERR_TIMEOUT;
        if (gone)
            atomic_store(&r->db_ok, false);
        if (e->handback && gone) {
            runner_handback_later(r, e->run_id, e->epoch);
        } else if (e->handback) {
            kx_log(e->err == KX_OK ? KX_LOG_INFO : KX_LOG_WARN, e->run_id, NULL,
                   "runner: run handed back to the queue (%s): %s", kx_err_str(e->err), e->why);
        } else if (e->err == KX_OK && e->won) {
            kx_log(KX_LOG_ERROR, e->run_id, NULL, "dispatch: %s", e->why);
        }
    }
    free(e);
}

static void submit_end(runner *r, bool handback, const char *run_id, int64_t epoch,
                       const char *why)
{
    end_job *e = calloc(1, sizeof *e);
    if (e == NULL) {
        kx_log(KX_LOG_ERROR, run_id, NULL, "runner: out of memory ending run %s; the reaper will",
               run_id);
        return;
    }
    e->handback = handback;
    snprintf(e->run_id, sizeof e->run_id, "%s", run_id);
    e->epoch = epoch;
    snprintf(e->why, sizeof e->why, "%s", why);
    static const rdb_group_job how = {.send = end_send, .recv = end_recv, .one_write = true};
    if (rdb_submit_group(r, run_id, &e->base, &how, end_done) != KX_OK) {
        kx_log(KX_LOG_WARN, run_id, NULL,
               "runner: could not queue the end of run %s (shutting down); the reaper will",
               run_id);
        free(e);
        return;
    }
    if (handback)
        r->parked_inflight++;
}

void rdb_handback(runner *r, const char *run_id, int64_t epoch, const char *why)
{
    submit_end(r, true, run_id, epoch, why);
}

void rdb_fail_run(runner *r, const char *run_id, int64_t epoch, const char *why)
{
    submit_end(r, false, run_id, epoch, why);
}
