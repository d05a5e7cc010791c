/* agent_config.h — the configuration a run works with: the run's agent (agent_runs.agent_id, or
 * the account's default agent) and its version (agent_runs.agent_version_id, else the agent's
 * current_version_id), read as deploy/migrations/001 defines them (kortix-behaviour.md §7,
 * §8.4, §12):
 *
 *   agent_versions.config  {"system_prompt", "tools": {"agentpress": {...}, "mcp": [...],
 *                           "custom_mcp": [...]}, ...} — Kortix's versioned shape — or the flat
 *                          shape of the agents API: "agentpress_tools", "configured_mcps",
 *                          "custom_mcps" at the top level (both are read; flat keys win).
 *                          Our extensions: "model", "tool_execution_strategy"
 *                          ("sequential" | "parallel"), "max_xml_tool_calls".
 *   agents.metadata        "is_suna_default"; "model" and "tool_execution_strategy" as above
 *                          when the version has none.
 *
 * No agent (or an agent with no version) is Kortix's default behaviour: the default system
 * prompt and every tool. `agentpress_tools` turns tool families on ({"sb_shell_tool":
 * {"enabled": true}} or {"sb_shell_tool": true}); `message` (ask, complete,
 * web_browser_takeover), `expand_message` and `task_list` are always on; the Suna default agent
 * with no families listed gets them all (as Kortix's register_all_tools).
 *
 * Pure functions apart from agent_config_load (one SQL statement through store.h). Ownership:
 * an agent_config owns its strings and JSON; agent_config_clear frees them. */
#ifndef RUNNER_AGENT_CONFIG_H
#define RUNNER_AGENT_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <time.h>
#include "kx/db.h"
#include "kx/err.h"
#include "store.h"

typedef enum agent_strategy {
    AGENT_STRATEGY_PARALLEL = 0, /* Kortix's default: all calls of a turn at once */
    AGENT_STRATEGY_SEQUENTIAL,   /* one after the other; stops after ask / complete */
} agent_strategy;

typedef struct agent_config {
    bool found;              /* an agent with a version was resolved */
    char agent_id[40];       /* "" when none */
    char version_id[40];     /* "" when none */
    char *system_prompt;     /* the version's prompt as written (not rendered); NULL: default */
    json_t *agentpress;      /* object of enabled families; NULL: every tool */
    json_t *configured_mcps; /* array (never NULL after a successful parse) */
    json_t *custom_mcps;     /* array (never NULL after a successful parse) */
    char model[128];         /* "" : the run's or KX_MODEL */
    agent_strategy strategy;
    bool strategy_set;      /* the agent chose one (else the runner's default applies) */
    int max_xml_tool_calls; /* 0: the runner's default (KX_MAX_XML_TOOL_CALLS) */
} agent_config;

/* The default (no agent): every tool, the default prompt. */
void agent_config_default(agent_config *out);

/* Parses a version's config (JSON text) and the agent's metadata (JSON text or NULL) into *out
 * (agent_config_clear it either way). KX_ERR_INVALID with why filled when the config is not a
 * JSON object or a field has the wrong type (a string for agentpress_tools, ...). */
kx_err agent_config_parse(const char *agent_id, const char *version_id, const char *config_json,
                          const char *agent_metadata_json, agent_config *out, char *why,
                          size_t whylen);

/* Reads the run's agent and version (see the top of this file). KX_OK with out->found false
 * when the run has no agent and the account no default one. KX_ERR_INVALID (why says what) when
 * the agent's stored config cannot be read. A database thread (one short statement). */
kx_err agent_config_load(kx_db *db, const char *run_id, agent_config *out, char *why,
                         size_t whylen);
/* The same from the row already read (store_load_agent, or its pipelined halves); clears row.
 * out is set either way (agent_config_clear it). */
kx_err agent_config_from_row(store_agent *row, agent_config *out, char *why, size_t whylen);

void agent_config_clear(agent_config *c);

/* The template with Kortix's dynamic date/time variables rendered for now (UTC):
 * {{current_date}} 2026-11-30, {{current_time}} 22:45:07, {{current_datetime}}
 * 2026-11-30 22:45:07 UTC, {{current_year}}, {{current_month}} 11, {{current_day}} 30,
 * {{current_weekday}} Monday, {{timezone}} UTC. Other text, unknown {{...}} included, is kept.
 * malloc'd; NULL on OOM. */
char *agent_config_render(const char *tmpl, time_t now);

/* The tool family (an agentpress_tools key) a function belongs to: "sb_shell_tool", ...;
 * "always" for ask/complete/web_browser_takeover/expand_message/task list functions; NULL for a
 * name of no family (MCP tools: their list is the agent's own already). */
const char *agent_config_family(const char *function_name);

/* Whether the agent may call this function. */
bool agent_config_tool_enabled(const agent_config *c, const char *function_name);

/* The schemas (OpenAI "tools" form) of the functions the agent may call: a new array. NULL on
 * OOM. */
json_t *agent_config_filter_tools(const agent_config *c, const json_t *schemas);

/* Whether calling this function ends the run (Kortix: ask and complete). */
bool agent_config_is_terminating(const char *function_name);

#endif
