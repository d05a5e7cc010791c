/* routes_limits.h — the account's limits and usage, in the place of Kortix's billing check:
 *   GET /api/billing/check-status   {"can_run", "message", "subscription": {"price_id":
 *        "self_hosted", "plan_name": "Self-hosted", "minutes_limit": "no limit"}, "limits":
 *        {"runs_per_day": {"limit", "used", "resets_at"}, "tokens_per_month": {...},
 *        "allowed_models", "active_runs"}, "has_limits"}
 * There is no billing: the quotas are the account's row of account_limits (migration 005, set by
 * an operator), and can_run is false exactly when a run created now would be refused for a
 * quota (the same rule as the run insert's, kx_account_refusal). */
#ifndef GW_ROUTES_LIMITS_H
#define GW_ROUTES_LIMITS_H

#include "gateway.h"

/* The statement, spliced into gw_store_statements (store.c; no trailing comma). */
#define GW_LIMITS_STATEMENTS                                            \
    {                                                                   \
        "gw_account_status", "SELECT kx_account_status($1::uuid)::text" \
    }

void gw_route_billing_status(gw_app *app, gw_request *req, gw_reply *reply);

#endif
