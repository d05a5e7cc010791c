/* rdb.h — the agent-runner's Postgres, off its loop thread: KX_RUNNER_DB_CONNS connections,
 * each owned by a thread of its own (kx/db_lanes.h). The loop submits jobs; a job's run
 * function executes on a database thread (it may block on libpq, bounded by statement_timeout,
 * and reconnects there), its done function on the loop. Nothing on the loop ever waits for
 * Postgres: claims (dispatch.c), a run's writes and reads (run_ops.h), hand-backs, project
 * naming and the /readyz probe all go through here.
 *
 * A job is chosen a connection by its key (the run id): the jobs of one run go to one
 * connection in order (a run also never has two jobs in flight: run_ops.c). The queue of each
 * connection holds 2 x capacity + 64 jobs, more than the runner can have in flight.
 *
 * Group commit (kx/db_worker.h): a run's batches (run_ops.c) and the fenced ends of runs
 * (rdb_handback, rdb_fail_run) are submitted groupable — the jobs queued on one connection are
 * committed together, several runs per transaction, in a transaction the worker opens (a job
 * brings only its statements). They come as send/recv pairs (the ends; a batch, its load's
 * reads included) and go out in one libpq pipeline with their group. Their writes are fenced
 * and find their own earlier success, so a rolled-back group (or a COMMIT whose answer was
 * lost) can run them again alone. Claims (dispatch.c) are plain jobs: a claim and the run's
 * first reads go out as one pipeline of their own, in one implicit transaction, the reads
 * first (a read that fails skips the claim, which then runs alone: dispatch_claim). Reads (the
 * probe, project naming) have nothing to commit.
 *
 * Ownership: a job struct embeds rdb_job first and is the caller's; done(j, live) is called
 * exactly once per accepted job and must free it. live is false when the job never ran
 * (shutdown) or the runner is being freed (runner_free orphans the jobs in flight): then done
 * may only release what the job holds — no runner, no run, no loop. Loop thread only, except
 * rdb_flush (after the loop stopped). */
#ifndef RUNNER_RDB_H
#define RUNNER_RDB_H

#include <stdbool.h>
#include <stdint.h>
#include "kx/db.h"
#include "kx/err.h"
#include "runner.h"

typedef struct rdb_job rdb_job;
typedef void (*rdb_run_fn)(kx_db *db, rdb_job *j);
typedef void (*rdb_done_fn)(rdb_job *j, bool live);
/* A groupable job's statements inside the transaction its connection's worker opened (no
 * BEGIN/COMMIT): step runs them blocking; or send queues them in the worker's pipeline and
 * recv reads their answers (kx/db_worker.h). KX_OK or why not. */
typedef kx_err (*rdb_step_fn)(kx_db *db, rdb_job *j);
typedef kx_err (*rdb_send_fn)(kx_db *db, rdb_job *j);
typedef kx_err (*rdb_recv_fn)(kx_db *db, rdb_job *j);
typedef struct rdb_group_job {
    rdb_step_fn step; /* or send + recv, not both */
    rdb_send_fn send;
    rdb_recv_fn recv;
    bool one_write; /* at most one write: alone it needs no transaction */
} rdb_group_job;

struct rdb_job {
    runner *owner;
    rdb_job *prev, *next; /* the runner's jobs in flight */
    rdb_run_fn run;       /* a plain job; NULL: groupable (how) */
    rdb_group_job how;
    rdb_done_fn done;
    kx_err err;  /* a groupable job's outcome: KX_OK when its writes committed (done reads it) */
    bool orphan; /* the runner let go of it (runner_free) */
};

/* Starts the connections' threads (connections are made lazily and re-made on failure). */
kx_err rdb_open(runner *r);
/* Queues j (its fields are set here). KX_ERR_UNAVAILABLE when the queue is full or the
 * runner shuts down: then done is not called and j is still the caller's. */
kx_err rdb_submit(runner *r, const char *key, rdb_job *j, rdb_run_fn run, rdb_done_fn done);
/* The same for a groupable job: the worker runs its statements in a transaction of its own
 * (kx/db_worker.h), idempotent, recording what they read in j afresh on each run; done finds
 * the outcome in j->err. */
kx_err rdb_submit_group(runner *r, const char *key, rdb_job *j, const rdb_group_job *how,
                        rdb_done_fn done);
/* Waits (at most timeout_ms in all) until every connection finished what was queued. */
void rdb_flush(runner *r, int64_t timeout_ms);
/* Orphans the jobs in flight, fails the queued ones, joins the threads. */
void rdb_close(runner *r);

/* /readyz: probes Postgres on a database thread and updates r->db_ok (one probe at a time). */
void rdb_probe(runner *r);

/* Fenced hand-back of (run_id, epoch) to the queue (store_handback_run) on a database thread;
 * when Postgres is unreachable the run is parked again (runner_handback_later). */
void rdb_handback(runner *r, const char *run_id, int64_t epoch, const char *why);
/* Fenced finish (store_finish_run) of a run the runner claimed but could not start. */
void rdb_fail_run(runner *r, const char *run_id, int64_t epoch, const char *why);

#endif
