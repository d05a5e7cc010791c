/* runs.h — what the executor remembers about runs: the newest lease epoch it saw from each run
 * and which runs were STOPped (and up to which epoch), so that
 *   - a STOP that arrives before its run's call (the bus does not order kx.run.ctl against
 *     kx.tool.exec) still cancels that call when it comes: it is answered "cancelled" at once;
 *   - a call from a stale epoch (a runner whose lease was taken over: a newer epoch of the same
 *     run has called here, or a STOP fenced its epoch off) is refused and runs nothing.
 * A STOP with lease_epoch 0 fences every epoch of the run; with lease_epoch E, epochs <= E.
 *
 * Bounded: at most `capacity` runs, each forgotten `ttl_ms` after it was last touched (the
 * oldest is dropped first when full). Lookups are O(1) (a chained hash by run id; a list in
 * order of last use for expiry and eviction). Pure (times are passed in); one thread.
 * Ownership: te_runs_new returns a table the caller frees with te_runs_free; run ids are
 * copied. Unit tested in tests/unit/test_tool_executor_runs.c. */
#ifndef TE_RUNS_H
#define TE_RUNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct te_runs te_runs;

typedef enum te_run_verdict {
    TE_RUN_OK,      /* the call may run */
    TE_RUN_STOPPED, /* its run (this epoch) was stopped: answer "cancelled" */
    TE_RUN_STALE,   /* a newer epoch of the run has been seen: refuse */
} te_run_verdict;

te_runs *te_runs_new(size_t capacity, int64_t ttl_ms); /* NULL on OOM */
void te_runs_free(te_runs *t);

/* A call of run_id with epoch arrives at now: records the epoch (when newer) and says whether
 * it may run. *why (may be NULL) gets the STOP's reason or a description of the staleness
 * (points into the table; valid until the next call on it). Without memory for a new entry the
 * call may run (fails open: the deadline still bounds it). */
te_run_verdict te_runs_check(te_runs *t, const char *run_id, int64_t epoch, int64_t now,
                             const char **why);
/* A STOP of run_id fencing epochs <= epoch (0 = all), with its reason, at now. */
void te_runs_stop(te_runs *t, const char *run_id, int64_t epoch, const char *reason, int64_t now);
/* Whether a call of that run and epoch falls under a recorded STOP (no change). */
bool te_runs_stopped(te_runs *t, const char *run_id, int64_t epoch, int64_t now);
size_t te_runs_count(const te_runs *t);

#endif
