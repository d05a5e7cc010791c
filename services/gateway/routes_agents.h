/* routes_agents.h — Kortix's agent and version routes (docs/api.md, "Agents and versions"),
 * handlers of the route table (routes.c):
 *   GET    /api/agents                     list: page, limit, search, sort_by, sort_order,
 *                                          has_default, has_mcp_tools, has_agentpress_tools,
 *                                          tools (the default agent is made on first need)
 *   POST   /api/agents                     create (and v1); Idempotency-Key: one per key
 *   POST   /api/agents/import              create from an export
 *   GET    /api/agents/{id}                one agent (the account's, or a public one)
 *   PUT    /api/agents/{id}                update; a config change makes a new version
 *   DELETE /api/agents/{id}                delete (not the default agent)
 *   GET    /api/agents/{id}/export         the agent as an export
 *   GET    /api/agents/{id}/tools          its agentpress and MCP tools
 *   GET    /api/agents/{id}/versions       the versions, newest first      (routes_versions.c)
 *   POST   /api/agents/{id}/versions       a new active version
 *   GET    /api/agents/{id}/versions/{vid}                 one version
 *   GET    /api/agents/{id}/versions/{vid}/compare/{vid2}  the differences
 *   PUT    /api/agents/{id}/versions/{vid}/activate        make it the current version
 *   POST   /api/agents/{id}/versions/{vid}/rollback        a new version with vid's config
 *   PUT    /api/agents/{id}/versions/{vid}/details         rename it, set its description
 * All are behind the feature flag custom_agents (403 when it is off, as Kortix). Another
 * account's private agent, or an id that is not a UUID, is 404 "Agent not found". */
#ifndef GW_ROUTES_AGENTS_H
#define GW_ROUTES_AGENTS_H

#include "gateway.h"
#include "kx/db.h"
#include "kx/err.h"

void gw_route_agents_list(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_agent_create(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_agent_import(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_agent_get(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_agent_update(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_agent_delete(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_agent_export(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_agent_tools(gw_app *app, gw_request *req, gw_reply *reply);
/* routes_versions.c */
void gw_route_versions_list(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_version_create(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_version_action(gw_app *app, gw_request *req, gw_reply *reply);

/* Shared by both files. A connection for an agent route: NULL with the reply set when the id is
 * not a UUID (404; skipped when check_id is false), no connection is free (503), or
 * custom_agents is off (403). */
kx_db *gw_agents_db(gw_app *app, const gw_request *req, bool check_id, gw_reply *reply);
/* The answer for a store call: json (freed here) as the 200 body when err is KX_OK,
 * 404 not_found for KX_ERR_NOT_FOUND, else the database error naming what. */
void gw_agents_answer(gw_reply *reply, kx_err err, char *json, const char *not_found,
                      const char *what);

#endif
