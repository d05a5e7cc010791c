/* dispatch.h — taking runs from the queue: a fetcher THREAD pulls kx.v1.RunDispatch messages
 * from the JetStream work queue (stream KX_RUN_DISPATCH, durable pull consumer "agent-runners",
 * AckWait 30 s) in batches of at most the runner's free capacity (max 64, 1 s fetch timeout;
 * kx/js_pull.h, never more than asked for) and posts each message to the loop. On the loop each dispatch is unpacked (malformed:
 * terminated and logged) and its claim queued to a database thread (rdb.h) — with the run's
 * first reads, its agent and the thread the dispatch names, in the same round trip
 * (dispatch_claim); when the claim is back the dispatch is acknowledged and the run started
 * from those reads — or dropped when the claim found the run not queued (someone else has it,
 * or it was stopped). The slot stays reserved meanwhile.
 *
 * The fetcher is the only blocking wait in the runner, and it has a thread of its own. */
#ifndef RUNNER_DISPATCH_H
#define RUNNER_DISPATCH_H

#include "kx/db.h"
#include "kx/err.h"
#include "run_ops.h"
#include "runner.h"
#include "store.h"

typedef struct dispatch dispatch;

/* What a claim found (dispatch_claim). */
typedef struct dispatch_claimed {
    bool claimed; /* the run is ours: claim is filled */
    store_claim claim;
    bool preloaded;   /* first holds the run's agent and thread (run_start) */
    run_loaded first; /* run_loaded_clear it */
} dispatch_claimed;

/* The claim of run_id for owner with its first reads (the agent, the thread the dispatch names:
 * thread_id, "" for none; read_bytes its bound, store.h) in ONE round trip: see dispatch.c. claim_id is the claim's id (the
 * same on every try). KX_OK (claimed or not) or why the claim could not be made. A database
 * thread (blocks on libpq). */
kx_err dispatch_claim(kx_db *db, const char *run_id, const char *thread_id, const char *owner,
                      int64_t ttl_ms, int64_t read_bytes, const char *claim_id,
                      dispatch_claimed *out);

/* Starts the fetcher thread. The runner must outlive it. */
kx_err dispatch_start(runner *r, dispatch **out);
/* Asks the fetcher to stop after its current fetch (thread-safe, returns at once). */
void dispatch_stop(dispatch *d);
/* Stops, joins the thread (at most one fetch timeout) and frees. NULL is a no-op. Call before
 * the bus is closed. */
void dispatch_free(dispatch *d);

#endif
