/* tool_schemas.h — the tool schemas the model is offered, from the tool-executor
 * (kx.tool.schemas), so that a tool is described in one place: the executor's catalogue for
 * the built-ins, the MCP server's own tools/list (through the executor and the mcp-proxy) for
 * an agent's MCP tools.
 *
 * A small cache per process, keyed by the agent's MCP servers (its custom_mcps and
 * configured_mcps as compact JSON; both empty = the built-ins only) and, with any, the run's
 * account: the request names it (ToolSchemasRequest.account_id), so that the mcp-proxy lists
 * the servers in the account's own sessions and counts them against the account's
 * KX_MCP_JAIL_MAX_SERVERS — a server's answer (its tool descriptions) may depend on its state,
 * which is its account's. At most TOOL_SCHEMAS_MAX_KEYS entries. The built-ins are always every tool (the caller filters them
 * by agentpress_tools); the MCP tools come named as the model sees them (unique among all
 * tools: the executor reserves every built-in name) with the route of each call.
 * tool_schemas_lookup never waits: it answers from the cache, and when the entry is missing or
 * older than its time to live (TOOL_SCHEMAS_TTL_MS for the built-ins, TOOL_SCHEMAS_MCP_TTL_MS
 * for an agent's MCP servers, TOOL_SCHEMAS_MCP_ERROR_TTL_MS when one of them failed) it sends
 * one asynchronous request (kx_bus_async: 5 s deadline, 25 s with MCP servers, which the
 * mcp-proxy may have to start) whose reply fills the cache for the next calls; a stale entry
 * is used meanwhile. Until the first reply — or when the executor is not there — the built-ins
 * fall back to the caller's fallback (the built-in execute_command schema).
 * Loop thread only. Ownership: everything in a view is borrowed (valid until the next call on
 * the loop: take references to keep it); the cache owns its entries and tool_schemas_free
 * releases them. */
#ifndef RUNNER_TOOL_SCHEMAS_H
#define RUNNER_TOOL_SCHEMAS_H

#include <jansson.h>
#include <stdbool.h>

#include "kx/bus.h"

#define TOOL_SCHEMAS_TTL_MS (5 * 60 * 1000)
#define TOOL_SCHEMAS_MCP_TTL_MS (60 * 1000)
#define TOOL_SCHEMAS_MCP_ERROR_TTL_MS (10 * 1000)
#define TOOL_SCHEMAS_MAX_KEYS 256
/* How long a run waits for the first answer about its agent's MCP servers before it goes on
 * with the built-ins only (the request's deadline plus a margin). */
#define TOOL_SCHEMAS_MCP_WAIT_MS 26000

typedef struct tool_schemas_view {
    json_t *tools;      /* the built-ins (every tool), or the fallback */
    json_t *mcp_tools;  /* OpenAI schemas of the agent's MCP tools; NULL: none */
    json_t *mcp_routes; /* {name: {"server", "tool", "server_json", "custom"}}; NULL: none */
} tool_schemas_view;

/* Where requests go (the runner's loop-bound async bus). Call once at start. */
void tool_schemas_init(kx_bus_async *ab);
/* The schemas for a run of account whose agent's MCP servers are custom_mcps / configured_mcps
 * (compact JSON arrays; NULL or "" = none), with fallback for the built-ins while none are
 * cached. Returns
 * false while the first answer about those MCP servers is still awaited (the view then has the
 * built-ins only); true otherwise — also when that answer was a failure. */
bool tool_schemas_lookup(const char *account, const char *custom_mcps, const char *configured_mcps,
                         json_t *fallback, tool_schemas_view *out);
/* Frees the cache (after kx_bus_async_free: no reply can come any more). */
void tool_schemas_free(void);

#endif
