/* sandbox_routes.h — the sandbox routes (routes_sandbox.c) and the recorder of the
 * sandbox-broker's state events (sandbox_state.c): what the gateway knows of sandboxes.
 *
 * projects.sandbox is written only here (the broker holds no database URL): by
 * gw_sandbox_record, from kx.sandbox.state events and from the replies of ensure-active and
 * delete. A value older (updated_unix_ms) than the row's is dropped, so replays are harmless.
 * A deleted project (deleted_at set) has no sandbox for these routes: its id is not found and
 * ensure-active answers 404; DELETE /api/projects/{id} discards the sandbox after its commit.
 * Ownership: the SandboxInfo passed in is borrowed. */
#ifndef GW_SANDBOX_ROUTES_H
#define GW_SANDBOX_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway.h"
#include "kx/err.h"
#include "kx/pb.h"

/* The statements of routes_sandbox.c, in the gateway's table (store.c). */
/* clang-format off */
#define GW_SANDBOX_STATEMENTS                                                                  \
    {"gw_sandbox_find",                                                                        \
     "SELECT project_id::text, account_id::text, is_public, "                                  \
     "COALESCE(sandbox->>'state', '') FROM projects "                                          \
     "WHERE sandbox ? 'id' AND sandbox->>'id' = $1::text AND deleted_at IS NULL LIMIT 1"},     \
    {"gw_sandbox_record",                                                                      \
     "UPDATE projects SET sandbox = sandbox || jsonb_build_object('id', $2::text, "            \
     "'state', $3::text, 'provider', $4::text, 'broker', $5::text, "                           \
     "'created_unix_ms', $6::bigint, 'updated_unix_ms', $7::bigint) "                          \
     "WHERE project_id = $1::uuid AND (NOT (sandbox ? 'updated_unix_ms') OR "                  \
     "(sandbox->>'updated_unix_ms')::bigint <= $7::bigint)"},                                  \
    {"gw_sandbox_project_owner",                                                               \
     "SELECT account_id::text FROM projects WHERE project_id = $1::uuid "                      \
     "AND deleted_at IS NULL"}
/* clang-format on */

/* Records info on its project's projects.sandbox (see above); any thread. */
kx_err gw_sandbox_record(gw_app *app, const Kx__V1__SandboxInfo *info);

/* sandbox_state.c: subscribes kx.sandbox.state (queue group gateway-sandbox-state). */
kx_err gw_sandbox_state_start(gw_app *app);
/* Drains that subscription (before the pool is freed); a no-op when not started. */
void gw_sandbox_state_stop(void);

/* What routes_sandbox.c lends to other routes (POST /api/agent/initiate's files[]); each is one
 * or more bus requests to the broker, blocking the calling worker within the sandbox deadlines.
 * gw_sandbox_write: len bytes of data into path (relative or /workspace/...) in project's
 * sandbox, in chunks of one bus message (WRITE OVERWRITE, then WRITE AT); a failed chunk deletes
 * the partial file. False with the broker's refusal in reply (e.g. 413 resource_exhausted).
 * gw_sandbox_ensure: kx.sandbox.ensure_active for project (made when missing); its SandboxInfo
 * (the caller kx_pb_free's it) or NULL with the reply set.
 * gw_sandbox_discard: kx.sandbox.delete for project, best effort (a failure is logged). */
bool gw_sandbox_write(gw_app *app, const gw_request *req, const char *project, const char *path,
                      const char *data, size_t len, gw_reply *reply);
Kx__V1__SandboxInfo *gw_sandbox_ensure(gw_app *app, const gw_request *req, const char *project,
                                       gw_reply *reply);
void gw_sandbox_discard(gw_app *app, const gw_request *req, const char *project);

void gw_route_sandbox_files_list(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_sandbox_file_content(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_sandbox_files_upload(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_sandbox_files_delete(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_sandbox_delete(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_sandbox_ensure_active(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_sandbox_preview(gw_app *app, gw_request *req, gw_reply *reply);

#endif
