/* kx/db_worker.h — Postgres for a service whose loop must never block: one thread owns a kx_db
 * and runs jobs from a bounded FIFO; each job's completion is posted back to the kx_loop (the
 * completions of the jobs taken together as one task: one wake-up of the loop, in FIFO order).
 *
 * A job is two functions: run(db, arg) on the worker thread (it may block on libpq: each
 * statement is bounded by the connection's statement_timeout) and done(arg, err) on the loop
 * thread, with err = KX_OK when run ran (run records its own outcome in arg) or
 * KX_ERR_UNAVAILABLE when the job never ran (the worker was shut down first). done is called
 * exactly once per accepted job: on the loop, or — for jobs still queued or completions not
 * yet run when the worker or the loop is freed — from kx_db_worker_free or kx_loop_free's
 * thread (then the loop no longer runs: done must only release what it holds).
 *
 * Groupable jobs: the transaction is the worker's. A job submitted with
 * kx_db_worker_submit_group brings only its statements — either a step(db, arg) that runs
 * them one at a time (blocking), or a send(db, arg) that queues them in a pipeline
 * (kx_db_pipe_send, kx/db.h) and a recv(db, arg) that reads their results back in the same
 * order (kx_db_pipe_result; it may stop at its first failure: the worker drops the rest of the
 * job's results). Neither opens, commits or rolls back a transaction. When the worker takes a
 * groupable job and more groupable jobs wait right behind it, it takes up to KX_DB_GROUP_MAX of
 * them (default 64; 1 turns grouping off) and runs them in ONE transaction, in FIFO order:
 * BEGIN, each job's statements, COMMIT. Consecutive jobs with send/recv go out as ONE pipeline
 * (BEGIN and COMMIT inside it when they are at its ends): one round trip for all of them; a
 * step job in between runs blocking between two pipelines. Only once COMMIT returned are the
 * completions posted, so done never hears of a write that is not committed.
 *
 * A lone groupable job is a group of one: BEGIN, its statements, COMMIT (pipelined when it has
 * send/recv: one round trip), or no transaction at all when it was submitted one_write (a
 * single write needs none); after a lost connection it runs once more, whole.
 *
 * When a job fails (its own error: a fenced write, a bad row) the group is rolled back, the
 * jobs before it run again as a group, the failing job runs alone and the jobs after it go on
 * as a group: one bad job never fails another. After a statement timeout the failing job is
 * not run again (it would hold the others up as long once more): its timeout is its outcome.
 * When the group as a whole fails — the connection is lost, a deadlock or serialization
 * failure (40P01/40001: a group holds the row locks of several jobs until COMMIT), or COMMIT
 * itself fails — every job of the group runs alone, in order. A job may thus run several
 * times, and a COMMIT whose answer was lost may have committed: a job's statements must be
 * idempotent (every write finds its own earlier success), and step/recv must record what they
 * read in arg afresh on each call. done(arg, err) of a groupable job gets the job's outcome:
 * KX_OK when its statements committed, else the error that kept them out (its own, or its
 * transaction's: BEGIN/COMMIT failed, connection lost), KX_ERR_UNAVAILABLE also when it never
 * ran (shutdown). A job submitted with kx_db_worker_submit is never grouped (it runs alone and
 * ends a group: FIFO order is kept across both kinds). The counts (kx_db_worker_group_stats)
 * are also added to process-wide counters on /metrics: kx_db_groups_total,
 * kx_db_grouped_jobs_total, kx_db_group_rollbacks_total, kx_db_group_solo_runs_total,
 * kx_db_pipelines_total.
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
/* A groupable job's statements inside a transaction the worker opened: no BEGIN/COMMIT/
 * ROLLBACK of their own. step runs them (blocking), send queues them in the worker's pipeline,
 * recv reads their results; each returns KX_OK or the job's error (the first that failed). */
typedef kx_err (*kx_db_job_step)(kx_db *db, void *arg);
typedef kx_err (*kx_db_job_send)(kx_db *db, void *arg);
typedef kx_err (*kx_db_job_recv)(kx_db *db, void *arg);

/* How a groupable job runs: step, or send and recv (not both). Copied at submit. */
typedef struct kx_db_group_job {
    kx_db_job_step step;
    kx_db_job_send send;
    kx_db_job_recv recv;
    bool one_write; /* at most one write: alone, it needs no transaction */
} kx_db_group_job;

/* What the worker did with groupable jobs since it started (tests, metrics). */
typedef struct kx_db_group_stats {
    uint64_t groups;    /* transactions of >= 2 jobs that committed */
    uint64_t grouped;   /* jobs committed in such a transaction */
    uint64_t rollbacks; /* groups rolled back (a step failed, or the group as a whole) */
    uint64_t solo;      /* groupable jobs that ran alone after a rollback */
    uint64_t pipelines; /* pipelines sent (a group's run of send/recv jobs, or one job alone) */
} kx_db_group_stats;

/* max_queue: jobs that may wait (>= 1); a submit beyond is refused. */
kx_err kx_db_worker_new(const char *conninfo, const kx_db_stmt *stmts, kx_loop *loop,
                        size_t max_queue, kx_db_worker **out);
/* Queues a job. KX_ERR_UNAVAILABLE when the queue is full or after shutdown
 * began, KX_ERR_NOMEM: then done will not be called. Any thread. */
kx_err kx_db_worker_submit(kx_db_worker *w, kx_db_job_run run, kx_db_job_done done, void *arg);
/* Queues a groupable job (see above). KX_ERR_INVALID when how gives neither step nor both
 * send and recv, or both kinds; otherwise refused as kx_db_worker_submit. Any thread. */
kx_err kx_db_worker_submit_group(kx_db_worker *w, const kx_db_group_job *how, kx_db_job_done done,
                                 void *arg);
/* The group counters so far. Any thread. */
kx_db_group_stats kx_db_worker_group_stats(kx_db_worker *w);
/* Jobs waiting (not counting the one running). */
size_t kx_db_worker_queued(kx_db_worker *w);
/* Waits until no job is queued or running, at most timeout_ms; true when idle. For a service
 * that ends: its last jobs (a hand-back) reach Postgres before kx_db_worker_free fails the rest.
 * Their completions are posted as usual (to a loop that may not run any more). Not on the loop
 * thread of a running loop. */
bool kx_db_worker_flush(kx_db_worker *w, int64_t timeout_ms);
void kx_db_worker_free(kx_db_worker *w); /* NULL is a no-op */

#endif
