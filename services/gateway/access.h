/* access.h — a request's way into the database: a pooled connection, and the ownership checks
 * every route that names a thread or a run makes before touching it.
 *
 * Rules (docs/api.md): an id that is not a UUID or names no row is 404 ("Thread not found",
 * "Agent run not found"), and so is a row of another account: the answer never tells whether
 * another account's id exists (Kortix answered 403 "Not authorized to access this thread").
 * Account isolation is by agent_runs/threads.account_id == the JWT sub. */
#ifndef GW_ACCESS_H
#define GW_ACCESS_H

#include <stdbool.h>
#include "gateway.h"
#include "store.h"

/* A connection from the pool, waiting at most KX_DB_STATEMENT_TIMEOUT_MS; NULL with a 503
 * reply if none is free or Postgres is unreachable. Give it back with gw_db_put. */
kx_db *gw_db_get(gw_app *app, gw_reply *reply);
void gw_db_put(gw_app *app, kx_db *db);

/* Checks the thread `thread_id` exists and is req->account's; else sets the reply (404 or a
 * database error) and returns false. */
bool gw_access_thread(kx_db *db, const gw_request *req, const char *thread_id, gw_reply *reply);
/* For reads: also allowed when the thread's project (or the thread) is public, to anyone,
 * even without credentials (req->account ""). Refusals: anonymous -> 401 (whether or not the
 * thread exists); another account's private thread -> 404. */
bool gw_access_thread_read(kx_db *db, const gw_request *req, const char *thread_id,
                           gw_reply *reply);
/* The same for the run `run_id`; on success *info is filled (gw_store_run_info_free it). */
bool gw_access_run(kx_db *db, const gw_request *req, const char *run_id, gw_run_info *info,
                   gw_reply *reply);

#endif
