/* dispatch.h — taking runs from the queue: a fetcher THREAD pulls kx.v1.RunDispatch messages
 * from the JetStream work queue (stream KX_RUN_DISPATCH, durable pull consumer "agent-runners",
 * AckWait 30 s) in batches of at most the runner's free capacity (max 64, 1 s fetch timeout;
 * kx/js_pull.h, never more than asked for) and posts each message to the loop. On the loop each dispatch is unpacked (malformed:
 * terminated and logged) and its claim queued to a database thread (rdb.h); when the claim is
 * back the dispatch is acknowledged and the run started — or dropped when the claim found the
 * run not queued (someone else has it, or it was stopped). The slot stays reserved meanwhile.
 *
 * The fetcher is the only blocking wait in the runner, and it has a thread of its own. */
#ifndef RUNNER_DISPATCH_H
#define RUNNER_DISPATCH_H

#include "kx/err.h"
#include "runner.h"

typedef struct dispatch dispatch;

/* Starts the fetcher thread. The runner must outlive it. */
kx_err dispatch_start(runner *r, dispatch **out);
/* Asks the fetcher to stop after its current fetch (thread-safe, returns at once). */
void dispatch_stop(dispatch *d);
/* Stops, joins the thread (at most one fetch timeout) and frees. NULL is a no-op. Call before
 * the bus is closed. */
void dispatch_free(dispatch *d);

#endif
