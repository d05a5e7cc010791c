/* run_ops.h — creating and stopping a run: the one code path behind POST /api/agent/initiate,
 * POST /api/thread/{id}/agent/start, POST /api/agent-run/{id}/stop (routes_runs.c) and
 * kx.run.start / kx.run.stop (run_nats.c).
 *
 * What it does, in order: the prompt's size cap; the agent (an agent_id must be one of the
 * account's: else 404 "Agent not found or access denied"); one transaction that writes the
 * project + thread (no thread_id) or locks the thread (multitask_strategy), the user message
 * and the queued run; the refusals of the account's limits (403 model not allowed, 429 quota:
 * Kortix's bodies, from the database's trigger) and of KX_OVER_LIMIT=reject (429); then STOP
 * for the runs an interrupt stopped and RunSubmit on the bus. Nothing is created when it
 * refuses.
 *
 * Threads: any worker thread (it blocks on Postgres). The request gives the account and the
 * trace. */
#ifndef GW_RUN_OPS_H
#define GW_RUN_OPS_H

#include <stdbool.h>

#include "gateway.h"
#include "store.h"

typedef struct gw_run_new {
    const char *thread_id;  /* NULL: a new project (named after the prompt) and thread */
    const char *project_id; /* that new project's id (a UUID), or NULL: Postgres makes one */
    const char *prompt;     /* required for a new thread; NULL on a thread: no new message */
    gw_run_options opts;
    gw_multitask strategy; /* on an existing thread */
} gw_run_new;

/* True with thread_id and run_id filled; false with the refusal in reply (status and
 * {"detail": ...}). */
bool gw_run_create(gw_app *app, const gw_request *req, const gw_run_new *n,
                   char thread_id[KX_UUID_LEN + 1], char run_id[KX_UUID_LEN + 1], gw_reply *reply);

/* The refusals gw_run_create would give a new run of the account with these options, looked
 * at now without writing anything: the agent (404), KX_OVER_LIMIT=reject's parallel runs (429,
 * Kortix's body) and the account's limits (403 model / 429 quota, quota.h). True when it may go
 * on. Advisory — gw_run_create checks again atomically — so that work costly to undo (initiate's
 * sandbox and uploads) is not done for a run that would be refused. */
bool gw_run_precheck(gw_app *app, const gw_request *req, const gw_run_options *o, gw_reply *reply);

/* The stop compare-and-set of docs/architecture.md on the account's run: if it was queued or
 * running, it is now stopped (status "stopped"; STOP and the terminal event are published);
 * else status is the one it had already ended with. False with the refusal in reply (404 no
 * such run, 403 another account's, 5xx database). */
bool gw_run_stop(gw_app *app, const gw_request *req, const char *run_id, char status[16],
                 gw_reply *reply);

#endif
