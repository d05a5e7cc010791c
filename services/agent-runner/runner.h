/* runner.h — the agent-runner instance: everything its runs share (configuration, the loop,
 * the bus, the database threads, the curl multi, the LLM client, the async-request context)
 * and the table of the runs it holds, by run id.
 *
 * Threads: the loop thread owns the runner and every run. The dispatch fetcher thread only
 * reads runner_free_slots() and adjusts `reserved` (atomics); the heartbeat thread reads
 * `held`; the database threads (rdb.h) touch only the jobs given to them. */
#ifndef RUNNER_RUNNER_H
#define RUNNER_RUNNER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include "config.h"
#include "kx/bus.h"
#include "kx/curlm.h"
#include "kx/db.h"
#include "kx/loop.h"
#include "kx/svc.h"
#include "llm.h"
#include "publisher.h"

typedef struct run run;

typedef struct runner {
    const runner_config *cfg; /* borrowed */
    kx_svc *svc;              /* borrowed: loop, bus, instance id, drain */
    kx_loop *loop;
    kx_bus *bus;
    struct kx_db_lanes *dbl; /* owned: Postgres connections, a thread each (rdb.h) */
    struct rdb_job *jobs;    /* database jobs in flight (rdb.c orphans them at runner_free) */
    bool probing;            /* a /readyz probe is in flight */
    size_t parked_inflight;  /* hand-backs in flight (rdb_handback) */
    bool loop_over;          /* the loop stopped: nothing waits for completions any more */
    kx_curlm *curlm;         /* borrowed */
    kx_bus_async *async;     /* owned: tool-call requests */
    llm_client *llm;         /* owned */
    publisher *events;       /* owned: run events (bounded, never silent: publisher.h) */
    const char *instance_id; /* lease owner and heartbeat runner_id */

    run **buckets; /* held runs, chained by run->hnext */
    size_t nbuckets;
    size_t nheld;
    atomic_int held;     /* == nheld, readable from other threads */
    atomic_int reserved; /* dispatches fetched but not handled yet (fetcher adds) */
    atomic_bool db_ok;   /* last known Postgres reachability, for /readyz */

    run *graveyard; /* ended runs waiting to be freed (by bury_timer) */
    kx_timer *bury_timer;
    kx_timer *drain_timer;        /* hands back what is still held before the drain ends */
    struct runner_parked *parked; /* runs dropped while Postgres was unreachable: handed back
                                   * (fenced) once it answers again; parked_timer retries */
    size_t nparked, capparked;
    kx_timer *parked_timer;
    bool draining;
} runner;

/* Also starts the database threads (rdb.h). */
kx_err runner_new(const runner_config *cfg, kx_svc *svc, kx_curlm *curlm, runner **out);
/* Frees the runner and any run it still holds, without writes (see runner_shutdown). Call
 * after the loop stopped, before the loop is freed. */
void runner_free(runner *r);

run *runner_find(runner *r, const char *run_id);
void runner_hold(runner *r, run *run);
/* Removes the run from the table and queues it for freeing on a later loop iteration (so a
 * callback that ended it may still read it until it returns). Ends a drain when the last run
 * goes. */
void runner_release(runner *r, run *run);

/* How many more runs this instance takes now (0 while draining). Thread-safe. */
int runner_free_slots(runner *r);

/* Loop thread: stop taking runs; kx_svc_exit once none is held. Runs still held 500 ms before
 * KX_DRAIN_TIMEOUT_MS are handed back to the queue (run_handback), so a rolling deploy loses
 * no run and the runner exits 0. */
void runner_drain(runner *r);

/* Hands (run_id, epoch) back to the queue as soon as Postgres answers (retried every 500 ms on
 * the loop; the hand-back is fenced by the epoch, so it is harmless if the run ended or was
 * taken meanwhile). Loop thread. */
void runner_handback_later(runner *r, const char *run_id, int64_t epoch);

typedef void (*runner_each_fn)(run *run, void *arg);
/* Calls fn for every held run; fn may release the run it gets. */
void runner_each(runner *r, runner_each_fn fn, void *arg);

/* On exit, after the loop stopped: hands each run still held back to the queue (fenced) with
 * the reason, so they do not wait for the reaper, and waits (bounded) for the database threads
 * to write what was queued. */
void runner_shutdown(runner *r, const char *why);

#endif
