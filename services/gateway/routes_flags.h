/* routes_flags.h — feature flags (Kortix's backend/flags): the table feature_flags of
 * migration 007, set by an operator with SQL (docs/operations.md, "Feature flags"). A flag
 * without a row is off, as in Kortix.
 *   GET /api/feature-flags          {"flags": {"<name>": true|false, ...}}
 *   GET /api/feature-flags/{name}   {"flag_name", "enabled", "details": {"enabled",
 *                                   "description", "updated_at"} | null}
 * No auth, as Kortix (a flag is the deployment's, not an account's). A name that is not 1..64
 * of [a-z0-9_] is a 400 naming flag_name. */
#ifndef GW_ROUTES_FLAGS_H
#define GW_ROUTES_FLAGS_H

#include <stdbool.h>

#include "gateway.h"
#include "kx/db.h"
#include "kx/err.h"

/* clang-format off */
/* The statements, spliced into gw_store_statements (store.c; no trailing comma). */
#define GW_FLAG_STATEMENTS                                                                     \
    {"gw_flag_enabled",                                                                        \
     "SELECT coalesce((SELECT enabled FROM feature_flags WHERE name = $1::text), false)"},     \
    {"gw_flags_list",                                                                          \
     "SELECT json_build_object('flags', coalesce(json_object_agg(name, enabled ORDER BY name), "\
     "'{}'::json))::text FROM feature_flags"},                                                 \
    {"gw_flag_get",                                                                            \
     "SELECT json_build_object('flag_name', x.n, 'enabled', coalesce(f.enabled, false), "      \
     "'details', CASE WHEN f.name IS NULL THEN NULL ELSE json_build_object('enabled', "        \
     "f.enabled, 'description', f.description, 'updated_at', kx_iso(f.updated_at)) END)::text "\
     "FROM (SELECT $1::text AS n) x LEFT JOIN feature_flags f ON f.name = x.n"}
/* clang-format on */

/* Whether the flag is on (false when it has no row). */
kx_err gw_flag_enabled(kx_db *db, const char *name, bool *on);

void gw_route_flags_list(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_flag_get(gw_app *app, gw_request *req, gw_reply *reply);

#endif
