/* publish.h — what the gateway tells the bus (docs/subjects.md):
 *   RunSubmit on kx.run.submit (a core publish, not stored, no ack) after a run row was
 *   committed as queued;
 *   on a successful stop, RunControl{STOP} on kx.run.ctl.<id> (core) and the run's terminal
 *   RunEvent on kx.run.ev.<id> (JetStream).
 * Every message carries Kx-Deadline (now + KX_BUS_TIMEOUT_MS), traceparent (the request's, if it
 * sent a valid one, else a fresh trace) and Kx-Account.
 *
 * Failures are logged and returned; callers answer the client anyway, because Postgres is the
 * truth: the scheduler's sweep dispatches queued runs that were never submitted (or whose
 * submit the stream did not store: without an ack the gateway does not know). */
#ifndef GW_PUBLISH_H
#define GW_PUBLISH_H

#include <stdint.h>
#include "gateway.h"
#include "store.h"

/* The terminal event the gateway publishes when a user stops a run (exact Kortix text). */
#define GW_STOPPED_PAYLOAD \
    "{\"type\": \"status\", \"status\": \"stopped\", \"message\": \"Agent run stopped by user\"}"

kx_err gw_publish_submit(gw_app *app, const gw_request *req, const char *run_id,
                         const char *thread_id);
/* fenced_epoch: the lease epoch the stop took away (the new epoch - 1; 0 = any). */
kx_err gw_publish_stop(gw_app *app, const gw_request *req, const char *run_id,
                       int64_t fenced_epoch);

/* gw_publish_stop for each run a delete stopped (the epochs after the stop); frees stopped. */
void gw_publish_stops(gw_app *app, const gw_request *req, gw_stopped_run *stopped, size_t n);

#endif
