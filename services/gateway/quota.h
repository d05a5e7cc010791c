/* quota.h — per-account quotas and model allow-lists at the gateway (docs/api.md, "Account
 * limits"; the rule itself lives in the database: deploy/migrations/005_account_limits_triggers.sql).
 *
 * Creating a run (initiate, thread start) is refused by the database when the account's row
 * of account_limits says so: SQLSTATE KX403 (a model outside the allow-list) or KX429 (runs
 * per day or tokens per month used up), with the client's error body as JSON in the error's
 * DETAIL. gw_quota_refused turns such a failure into the answer: 403 / 429 with
 * {"detail": {"message", ...}} — Kortix's shape ({"message", "allowed_models"} for a model).
 *
 * Ownership: the kx_db is borrowed; replies own what they hold. */
#ifndef GW_QUOTA_H
#define GW_QUOTA_H

#include <stdbool.h>

#include "gateway.h"
#include "kx/db.h"
#include "kx/err.h"

/* The quota statements, spliced into gw_store_statements (store.c; no trailing comma). */
#define GW_QUOTA_STATEMENTS                                                         \
    {                                                                               \
        "gw_account_refusal", "SELECT kx_account_refusal($1::uuid, $2::text)::text" \
    }

/* After a run-creating statement on db failed with err: true (and the 403/429 reply set) when
 * the failure was an account limit's refusal; false otherwise (reply untouched). Call it right
 * after the failed statement, before the connection goes back to the pool (the SQLSTATE and
 * detail are the connection's last failure's), and only when err came from the database (a
 * KX_ERR_CONFLICT the caller made up itself would find a stale SQLSTATE). */
bool gw_quota_refused(kx_db *db, kx_err err, gw_reply *reply);

/* Would a run of account naming model (NULL: the default model) be refused for its model
 * right now? true when it may go on; false with a 403 reply (not allowed) or a database error
 * reply. Quotas are not looked at: they apply when a run is created. */
bool gw_quota_model_allowed(kx_db *db, const char *account, const char *model, gw_reply *reply);

/* Would a run of account naming model (NULL: the default model) be refused right now, for its
 * model or for a quota used up? true when it may go on; false with the reply the run's creation
 * would give (403 / 429, the same bodies) or a database error reply. Advisory: the creation
 * checks again under the account's lock. For work that is costly to undo before a run exists
 * (initiate's sandbox and uploads). */
bool gw_quota_run_allowed(kx_db *db, const char *account, const char *model, gw_reply *reply);

#endif
