/* run_nats.h — runs over NATS for internal services (docs/subjects.md, "Runs over NATS"):
 * kx.run.start (RunStartRequest -> RunStartReply) and kx.run.stop (RunStopRequest ->
 * RunStopReply), core request/reply in the queue group "gateway", so any number of gateway
 * replicas share them. Followed by the run's events on kx.run.ev.<id> (KX_RUN_EVENTS), which
 * any JetStream client can read.
 *
 * Why the gateway serves them: they are the HTTP routes' operations (run_ops.c), with the
 * same checks, limits and refusals; a second service would duplicate the gateway's database
 * access and its publishing of RunSubmit / STOP.
 *
 * Threads: a request arrives on a cnats thread, which only queues it on this module's own
 * worker pool (2 threads; a full queue is answered "busy" at once), so neither the loop nor
 * the HTTP threads nor cnats' threads wait on Postgres. The account is the Kx-Account header
 * (the bus is internal: whoever may publish on kx.run.start may act for any account — restrict
 * it with NATS permissions in a shared deployment); a Kx-Deadline already passed is refused
 * and creates nothing.
 *
 * Ownership: gw_run_nats_start allocates (main.c keeps it in gw_app.run_nats);
 * gw_run_nats_stop (at drain, and before the database pool is freed) finishes the queued
 * requests, after which new ones are answered 503 at once; the subscriptions are destroyed by
 * kx_bus_close; gw_run_nats_free after that. */
#ifndef GW_RUN_NATS_H
#define GW_RUN_NATS_H

#include "gateway.h"

typedef struct gw_run_nats gw_run_nats;

/* *out is set whenever it was allocated (free it with gw_run_nats_free even on failure: a
 * subscription made may call back until the bus is closed). Failure is logged. */
kx_err gw_run_nats_start(gw_app *app, gw_run_nats **out);
void gw_run_nats_stop(gw_run_nats *rn); /* NULL: no-op; idempotent */
void gw_run_nats_free(gw_run_nats *rn); /* NULL: no-op */

#endif
