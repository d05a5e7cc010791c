/* kx/db_lanes.h — a service's Postgres off its loop: n database threads (kx/db_worker.h), each
 * owning one connection, and jobs routed to them by a key. Jobs with the same key go to the
 * same lane, in the order they were submitted (a run's work stays in order); different keys
 * spread over the lanes, so one slow statement holds up only its own lane.
 *
 * A job is run(db, arg) on the lane's thread and done(arg, err) on the loop, exactly as in
 * kx/db_worker.h (err KX_OK when run ran, KX_ERR_UNAVAILABLE when it never did). Groupable
 * jobs (kx_db_lanes_submit_group) are committed several at a time per lane, as
 * kx_db_worker_submit_group says; the jobs of one key stay in order either way.
 *
 * Lifecycle: kx_db_lanes_new (starts the threads; connections are made lazily and re-made on
 * failure) -> kx_db_lanes_submit (loop thread) -> kx_db_lanes_flush (optional, at exit) ->
 * kx_db_lanes_free (finishes what runs, fails what is queued, joins the threads).
 * Ownership: the lanes own their workers and connections; arg is the caller's. Used by the
 * agent-runner (rdb.h) and the scheduler (sched_db.c). */
#ifndef KX_DB_LANES_H
#define KX_DB_LANES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kx/db.h"
#include "kx/db_worker.h"
#include "kx/err.h"
#include "kx/loop.h"

typedef struct kx_db_lanes kx_db_lanes;

/* n lanes (>= 1), each queueing at most max_queue jobs. On failure *out is NULL. */
kx_err kx_db_lanes_new(const char *conninfo, const kx_db_stmt *stmts, kx_loop *loop, size_t n,
                       size_t max_queue, kx_db_lanes **out);
size_t kx_db_lanes_count(const kx_db_lanes *l);
/* Queues a job on the lane of key (NULL: lane 0). KX_ERR_UNAVAILABLE when that lane's queue is
 * full or shutdown began, KX_ERR_NOMEM: then done will not be called. */
kx_err kx_db_lanes_submit(kx_db_lanes *l, const char *key, kx_db_job_run run, kx_db_job_done done,
                          void *arg);
/* The same for a groupable job (kx_db_worker_submit_group: its statements inside the lane's
 * transaction; done gets their outcome). */
kx_err kx_db_lanes_submit_group(kx_db_lanes *l, const char *key, const kx_db_group_job *how,
                                kx_db_job_done done, void *arg);
/* The group counters summed over the lanes. */
kx_db_group_stats kx_db_lanes_group_stats(kx_db_lanes *l);
/* Waits (at most timeout_ms in all) until every lane finished what was queued; true if so.
 * Not on the thread of a running loop. */
bool kx_db_lanes_flush(kx_db_lanes *l, int64_t timeout_ms);
void kx_db_lanes_free(kx_db_lanes *l); /* NULL is a no-op */

#endif
