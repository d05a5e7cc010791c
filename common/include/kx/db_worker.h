/* kx/db_worker.h — Postgres for a service whose loop must never block: one thread owns a kx_db
 * and runs jobs from a bounded FIFO; each job's completion is posted back to the kx_loop.
 *
 * A job is two functions: run(db, arg) on the worker thread (it may block on libpq: each
 * statement is bounded by the connection's statement_timeout) and done(arg, err) on the loop
 * thread, with err = KX_OK when run ran (run records its own outcome in arg) or
 * KX_ERR_UNAVAILABLE when the job never ran (the worker was shut down first). done is called
 * exactly once per accepted job: on the loop, or — for jobs still queued or completions not
 * yet run when the worker or the loop is freed — from kx_db_worker_free or kx_loop_free's
 * thread (then the loop no longer runs: done must only release what it holds).
 *
 * Lifecycle: kx_db_worker_new (starts the thread; the connection is made lazily and
 * re-made by kx_db) -> kx_db_worker_submit* (loop thread) -> kx_db_worker_free (finishes the
 * job that runs, fails what is queued, joins the thread, closes the connection).
 * Ownership: the worker owns its kx_db; arg is the caller's. */
#ifndef KX_DB_WORKER_H
#define KX_DB_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kx/db.h"
#include "kx/err.h"
#include "kx/loop.h"

typedef struct kx_db_worker kx_db_worker;
typedef void (*kx_db_job_run)(kx_db *db, void *arg);
typedef void (*kx_db_job_done)(void *arg, kx_err err);

/* max_queue: jobs that may wait (>= 1); a submit beyond is refused. */
kx_err kx_db_worker_new(const char *conninfo, const kx_db_stmt *stmts, kx_loop *loop,
                        size_t max_queue, kx_db_worker **out);
/* Queues a job. KX_ERR_UNAVAILABLE when the queue is full or after shutdown
 * began, KX_ERR_NOMEM: then done will not be called. Any thread. */
kx_err kx_db_worker_submit(kx_db_worker *w, kx_db_job_run run, kx_db_job_done done, void *arg);
/* Jobs waiting (not counting the one running). */
size_t kx_db_worker_queued(kx_db_worker *w);
/* Waits until no job is queued or running, at most timeout_ms; true when idle. For a service
 * that ends: its last jobs (a hand-back) reach Postgres before kx_db_worker_free fails the rest.
 * Their completions are posted as usual (to a loop that may not run any more). Not on the loop
 * thread of a running loop. */
bool kx_db_worker_flush(kx_db_worker *w, int64_t timeout_ms);
void kx_db_worker_free(kx_db_worker *w); /* NULL is a no-op */

#endif
