/* agent_config.h — an agent's MCP servers in Kortix's shapes (reference §13), read into
 * mcp_server_config, and the names the model sees for their tools.
 *
 *   custom_mcps[i]:     {name, type|customType: "json"|"http"|"sse", config: {command, args,
 *                        env} | {url, headers}, enabledTools: [...]}
 *                       json = stdio, http = Streamable HTTP, sse = legacy HTTP+SSE;
 *                       qualified name custom_{type}_{name lowercased, spaces -> _};
 *                       empty enabledTools = every tool. "pipedream" is refused (it needs
 *                       Pipedream credentials the suite does not hold).
 *   configured_mcps[i]: {name, qualifiedName, config: {url, headers}, enabledTools: [...]}
 *                       Streamable HTTP; only the listed tools (empty = none), as Kortix.
 *
 * Every server read here has user = true: its stdio command runs only inside the sandbox
 * (user_stdio.c) and its URL is checked against the suite's own addresses (url_guard.c).
 *
 * Model-visible names (mcp_model_name): custom tools as Kortix derives them — the key
 * custom_{server_lower_underscored}_{tool} split on '_', the first two parts dropped, '-'
 * replaced by '_' (so for a one-word server it is the tool's own name; "My Srv" + "search" is
 * "srv_search"); standard tools: the part of mcp_{server}_{tool} after the second '_'. Then
 * anything outside [A-Za-z0-9_-] becomes '_', at most 64 characters. mcp_names_claim makes
 * a name unique against names already taken (built-ins, earlier tools) by appending _2, _3, ...:
 * a collision never overwrites a tool (Kortix overwrote built-ins).
 *
 * Pure. Ownership: mcp_agent_server owns its fields; mcp_agent_server_free frees them. */
#ifndef KX_MCP_AGENT_CONFIG_H
#define KX_MCP_AGENT_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "mcp_config.h"

#define MCP_MODEL_NAME_MAX 64

typedef struct mcp_agent_server {
    mcp_server_config cfg; /* cfg.name is the qualified name */
    char *display;         /* the entry's "name" */
    bool custom;
    char **enabled;   /* enabledTools, NULL-terminated (maybe empty) */
    char *entry_json; /* the entry as compact JSON (handed back for calls) */
} mcp_agent_server;

/* Reads one entry (custom: a custom_mcps item, else a configured_mcps item). 0, or -1 with a
 * message naming what was wrong. */
int mcp_agent_server_parse(const json_t *entry, bool custom, mcp_agent_server *out, char *why,
                           size_t whylen);
void mcp_agent_server_free(mcp_agent_server *s);
/* Whether the server's enabledTools lets tool through. */
bool mcp_agent_tool_enabled(const mcp_agent_server *s, const char *tool);

/* The name the model sees (before de-duplication), into out (>= MCP_MODEL_NAME_MAX + 1). */
void mcp_model_name(const char *server, const char *tool, bool custom, char *out, size_t len);
/* Makes name unique against taken (a JSON object used as a set), adds it, and writes the
 * result to out. 0, or -1 on OOM. */
int mcp_names_claim(json_t *taken, const char *name, char *out, size_t len);

#endif
