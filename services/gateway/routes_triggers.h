/* routes_triggers.h — the scheduled-run routes (Kortix's triggers; docs/api.md, "Scheduled
 * runs"), handlers of the route table (server.c):
 *   POST   /api/triggers        create: {agent_id, cron_expression, prompt, timezone?, name?,
 *                               model_name?}
 *   GET    /api/triggers        the account's triggers, newest first
 *   GET    /api/triggers/{id}   one trigger
 *   PATCH  /api/triggers/{id}   pause / resume ({"is_active": false|true}) and edits of name,
 *                               prompt, cron_expression
 *   DELETE /api/triggers/{id}   delete (runs it made stay)
 * Another account's trigger, or an id that is not a UUID, is 404 "Trigger not found". */
#ifndef GW_ROUTES_TRIGGERS_H
#define GW_ROUTES_TRIGGERS_H

#include "gateway.h"

void gw_route_trigger_create(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_triggers_list(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_trigger_get(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_trigger_update(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_trigger_delete(gw_app *app, gw_request *req, gw_reply *reply);

#endif
