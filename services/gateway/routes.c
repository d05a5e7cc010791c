/* routes.c — the route table (see route.h for how to add one) and path matching. */
#include "route.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "kx/uuid.h"
#include "routes_agents.h"
#include "routes_flags.h"
#include "routes_limits.h"
#include "routes_triggers.h"
#include "run_cache.h"
#include "sandbox_routes.h"

/* clang-format off */
const gw_route gw_routes[] = {
    ROUTE("GET",  "/api/health",                    AUTH_NONE,   BODY_NONE, gw_route_health),
    /* Kortix's container health check: the same checks (it pinged Redis and the database) */
    ROUTE("GET",  "/api/health-docker",             AUTH_NONE,   BODY_NONE, gw_route_health),
    ROUTE("POST", "/api/agent/initiate",            AUTH_BEARER, BODY_FORM, gw_route_initiate),
    ROUTE("POST", "/api/thread/{id}/agent/start",   AUTH_BEARER, BODY_JSON, gw_route_thread_start),
    ROUTE("GET",  "/api/thread/{id}/agent-runs",    AUTH_BEARER, BODY_NONE, gw_route_thread_runs),
    ROUTE_CACHED("GET", "/api/agent-run/{id}", AUTH_BEARER, BODY_NONE, gw_route_run_get,
                 gw_route_run_get_cached),
    ROUTE("POST", "/api/agent-run/{id}/stop",       AUTH_BEARER, BODY_NONE, gw_route_run_stop),
    ROUTE("GET",  "/api/agent-run/{id}/stream",     AUTH_BEARER_OR_QUERY, BODY_NONE,
          gw_route_run_stream),
    ROUTE("GET",  "/api/threads/{id}/messages",     AUTH_OPTIONAL, BODY_NONE, gw_route_messages_list),
    ROUTE("POST", "/api/threads/{id}/messages",     AUTH_BEARER, BODY_JSON, gw_route_messages_add),
    ROUTE("GET",  "/api/agents/{id}/custom-mcp-tools", AUTH_BEARER, BODY_NONE,
          gw_route_custom_mcp_tools),
    ROUTE("POST", "/api/agents/{id}/custom-mcp-tools", AUTH_BEARER, BODY_JSON,
          gw_route_custom_mcp_tools),
    ROUTE("POST", "/api/mcp/discover-custom-tools", AUTH_BEARER, BODY_JSON,
          gw_route_mcp_discover),
    ROUTE("GET",    "/api/thread/{id}/agent",       AUTH_BEARER, BODY_NONE, gw_route_thread_agent),
    ROUTE("GET",    "/api/threads",                 AUTH_BEARER, BODY_NONE, gw_route_threads_list),
    ROUTE("POST",   "/api/threads",                 AUTH_BEARER, BODY_FORM, gw_route_thread_create),
    ROUTE("GET",    "/api/threads/{id}",            AUTH_OPTIONAL, BODY_NONE, gw_route_thread_get),
    ROUTE("PATCH",  "/api/threads/{id}",            AUTH_BEARER, BODY_JSON, gw_route_thread_update),
    ROUTE("DELETE", "/api/threads/{id}",            AUTH_BEARER, BODY_NONE, gw_route_thread_delete),
    ROUTE("POST",   "/api/threads/{id}/messages/add", AUTH_BEARER, BODY_NONE,
          gw_route_message_add_query),
    ROUTE("DELETE", "/api/threads/{id}/messages/{*}", AUTH_BEARER, BODY_NONE,
          gw_route_message_delete),
    ROUTE("GET",    "/api/projects",                AUTH_BEARER, BODY_NONE, gw_route_projects_list),
    ROUTE("POST",   "/api/projects",                AUTH_BEARER, BODY_JSON, gw_route_project_create),
    ROUTE("GET",    "/api/projects/{id}",           AUTH_OPTIONAL, BODY_NONE, gw_route_project_get),
    ROUTE("PATCH",  "/api/projects/{id}",           AUTH_BEARER, BODY_JSON, gw_route_project_update),
    ROUTE("DELETE", "/api/projects/{id}",           AUTH_BEARER, BODY_NONE, gw_route_project_delete),
    ROUTE("POST",   "/api/api-keys",                AUTH_BEARER, BODY_JSON, gw_route_key_create),
    ROUTE("GET",    "/api/api-keys",                AUTH_BEARER, BODY_NONE, gw_route_keys_list),
    ROUTE("PATCH",  "/api/api-keys/{id}/revoke",    AUTH_BEARER, BODY_NONE, gw_route_key_revoke),
    ROUTE("DELETE", "/api/api-keys/{id}",           AUTH_BEARER, BODY_NONE, gw_route_key_delete),
    ROUTE("GET",    "/api/agents",                  AUTH_BEARER, BODY_NONE, gw_route_agents_list),
    ROUTE("POST",   "/api/agents",                  AUTH_BEARER, BODY_JSON, gw_route_agent_create),
    ROUTE("POST",   "/api/agents/import",           AUTH_BEARER, BODY_JSON, gw_route_agent_import),
    ROUTE("GET",    "/api/agents/{id}",             AUTH_BEARER, BODY_NONE, gw_route_agent_get),
    ROUTE("PUT",    "/api/agents/{id}",             AUTH_BEARER, BODY_JSON, gw_route_agent_update),
    ROUTE("DELETE", "/api/agents/{id}",             AUTH_BEARER, BODY_NONE, gw_route_agent_delete),
    ROUTE("GET",    "/api/agents/{id}/export",      AUTH_BEARER, BODY_NONE, gw_route_agent_export),
    ROUTE("GET",    "/api/agents/{id}/tools",       AUTH_BEARER, BODY_NONE, gw_route_agent_tools),
    ROUTE("GET",    "/api/agents/{id}/versions",    AUTH_BEARER, BODY_NONE, gw_route_versions_list),
    ROUTE("POST",   "/api/agents/{id}/versions",    AUTH_BEARER, BODY_JSON, gw_route_version_create),
    ROUTE("GET",    "/api/agents/{id}/versions/{*}", AUTH_BEARER, BODY_NONE, gw_route_version_action),
    ROUTE("PUT",    "/api/agents/{id}/versions/{*}", AUTH_BEARER, BODY_JSON, gw_route_version_action),
    ROUTE("POST",   "/api/agents/{id}/versions/{*}", AUTH_BEARER, BODY_NONE, gw_route_version_action),
    ROUTE("GET",    "/api/feature-flags",           AUTH_NONE,   BODY_NONE, gw_route_flags_list),
    ROUTE("GET",    "/api/feature-flags/{id}",      AUTH_NONE,   BODY_NONE, gw_route_flag_get),
    ROUTE("GET",    "/api/billing/check-status",    AUTH_BEARER, BODY_NONE, gw_route_billing_status),
    ROUTE("POST",   "/api/triggers",                AUTH_BEARER, BODY_JSON, gw_route_trigger_create),
    ROUTE("GET",    "/api/triggers",                AUTH_BEARER, BODY_NONE, gw_route_triggers_list),
    ROUTE("GET",    "/api/triggers/{id}",           AUTH_BEARER, BODY_NONE, gw_route_trigger_get),
    ROUTE("PATCH",  "/api/triggers/{id}",           AUTH_BEARER, BODY_JSON, gw_route_trigger_update),
    ROUTE("DELETE", "/api/triggers/{id}",           AUTH_BEARER, BODY_NONE, gw_route_trigger_delete),
    ROUTE("GET",    "/api/sandboxes/{id}/files",    AUTH_BEARER, BODY_NONE, gw_route_sandbox_files_list),
    ROUTE("POST",   "/api/sandboxes/{id}/files",    AUTH_BEARER, BODY_FORM, gw_route_sandbox_files_upload),
    ROUTE("DELETE", "/api/sandboxes/{id}/files",    AUTH_BEARER, BODY_NONE, gw_route_sandbox_files_delete),
    ROUTE("GET",    "/api/sandboxes/{id}/files/content", AUTH_BEARER, BODY_NONE,
          gw_route_sandbox_file_content),
    ROUTE("DELETE", "/api/sandboxes/{id}",          AUTH_BEARER, BODY_NONE, gw_route_sandbox_delete),
    ROUTE("GET",    "/api/sandboxes/{id}/preview/{*}", AUTH_BEARER_OR_QUERY, BODY_NONE,
          gw_route_sandbox_preview),
    ROUTE("POST",   "/api/sandboxes/{id}/preview/{*}", AUTH_BEARER_OR_QUERY, BODY_RAW,
          gw_route_sandbox_preview),
    ROUTE("PUT",    "/api/sandboxes/{id}/preview/{*}", AUTH_BEARER_OR_QUERY, BODY_RAW,
          gw_route_sandbox_preview),
    ROUTE("PATCH",  "/api/sandboxes/{id}/preview/{*}", AUTH_BEARER_OR_QUERY, BODY_RAW,
          gw_route_sandbox_preview),
    ROUTE("DELETE", "/api/sandboxes/{id}/preview/{*}", AUTH_BEARER_OR_QUERY, BODY_RAW,
          gw_route_sandbox_preview),
    ROUTE("POST",   "/api/project/{id}/sandbox/ensure-active", AUTH_BEARER, BODY_NONE,
          gw_route_sandbox_ensure_active),
};
/* clang-format on */
const size_t gw_nroutes = sizeof gw_routes / sizeof gw_routes[0];

/* Does url match pattern? Fills id and rest when it does. */
static bool path_match(const char *pattern, const char *url, gw_request *req)
{
    const char *p = pattern, *u = url;
    while (*p != '\0') {
        if (strcmp(p, "{*}") == 0) {
            req->rest = u;
            return true;
        }
        if (*u == '\0')
            return false;
        if (strncmp(p, "{id}", 4) == 0) {
            const char *end = strchr(u, '/');
            size_t n = end ? (size_t)(end - u) : strlen(u);
            if (n == 0)
                return false;
            if (n < sizeof req->id) {
                memcpy(req->id, u, n);
                req->id[n] = '\0';
            } else {
                req->id[0] = '\0'; /* too long to be an id: the handler answers 404 */
            }
            p += 4;
            u += n;
            continue;
        }
        if (*p != *u)
            return false;
        p++;
        u++;
    }
    return *u == '\0';
}

const gw_route *gw_route_find(const char *method, const char *url, gw_request *req,
                              bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < gw_nroutes; i++) {
        req->id[0] = '\0';
        req->rest = NULL;
        if (!path_match(gw_routes[i].pattern, url, req))
            continue;
        *path_known = true;
        if (strcmp(gw_routes[i].method, method) != 0)
            continue;
        /* One spelling per id: an upper-case UUID names the same run as its lower-case form
         * (Postgres compares uuids by value, subjects and logs by text). */
        if (kx_uuid_valid(req->id))
            for (char *c = req->id; *c; c++)
                *c = (char)tolower((unsigned char)*c);
        return &gw_routes[i];
    }
    req->id[0] = '\0';
    req->rest = NULL;
    return NULL;
}

void gw_route_methods(const char *url, char *out, size_t cap)
{
    gw_request scratch;
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < gw_nroutes; i++) {
        if (!path_match(gw_routes[i].pattern, url, &scratch))
            continue;
        const char *m = gw_routes[i].method;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(gw_routes[j].method, m) == 0 &&
                path_match(gw_routes[j].pattern, url, &scratch);
        if (seen)
            continue;
        int n = snprintf(out + len, cap - len, "%s%s", len > 0 ? ", " : "", m);
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
}
