/* registry.h — the catalogue: every tool the executor serves, with its JSON Schema in OpenAI
 * function format, the agentpress_tools key that enables it, its class (which sets its time
 * limit) and the functions that run it.
 *
 * A tool is a name, a group (Kortix's config key, e.g. "sb_shell_tool"; NULL = always on:
 * message, task list, expand_message), a kind, its schema and start/abort. call.c validates
 * the call's arguments against the schema (kx/jsonschema.h, with the XML coercions) before
 * start() runs, and hands them over in c->args. start() either finishes the call at once
 * (te_call_finish) or starts asynchronous work that finishes it later — exactly once, and
 * never after the call's deadline. abort() (shutdown, or a STOP of the call's run) stops that
 * work — killing what it started — and finishes the call at once with the given outcome.
 *
 * One file per family: tool_execute_command.c and tools_shell.c (sb_shell_tool), tools_files.c
 * (sb_files_tool), tools_message.c (ask, complete, web_browser_takeover). */
#ifndef TE_REGISTRY_H
#define TE_REGISTRY_H

#include <jansson.h>

#include "executor.h"

typedef enum te_tool_kind {
    TE_TOOL_SANDBOX, /* runs in the project's sandbox: KX_SANDBOX_TOOL_TIMEOUT_S */
    TE_TOOL_MCP,     /* an MCP server through the mcp-proxy: KX_TOOL_TIMEOUT_S */
    TE_TOOL_BUILTIN, /* in the executor itself: KX_TOOL_TIMEOUT_S */
} te_tool_kind;

struct te_tool {
    const char *name;  /* as the model calls it, e.g. "execute_command" */
    const char *group; /* agentpress_tools key, or NULL: always on */
    te_tool_kind kind;
    const char *schema; /* {"type": "function", "function": {name, description, parameters}} */
    void (*start)(te_call *c);
    void (*abort)(te_call *c, te_outcome *o);
};

/* Parses and checks every schema (kx_jsonschema_check; the name must match). KX_OK or
 * KX_ERR_INVALID with the tool named in the log: a broken catalogue refuses to start. */
kx_err te_registry_init(void);
void te_registry_free(void);

/* The tool with that name, or NULL. */
const te_tool *te_registry_find(const char *name);
/* Its parsed "parameters" schema (borrowed; valid after te_registry_init). */
const json_t *te_registry_parameters(const te_tool *t);

/* The tools an agent has, as an OpenAI "tools" array (a new reference), from its
 * agentpress_tools config ({"<group>": true | {"enabled": bool, ...}}): NULL or {} = every
 * tool (Kortix's register_all_tools); otherwise the enabled groups plus the always-on tools. */
json_t *te_registry_schemas(const json_t *agentpress_tools);

/* The tools of each family (their files). */
extern const te_tool te_shell_tools[];
extern const size_t te_shell_tools_n;
extern const te_tool te_files_tools[];
extern const size_t te_files_tools_n;
extern const te_tool te_message_tools[];
extern const size_t te_message_tools_n;
extern const te_tool te_task_tools[]; /* tools_tasks.c: task list, expand_message */
extern const size_t te_task_tools_n;

extern const te_tool te_web_tools[]; /* tools_web.c: web_search, scrape_webpage */
extern const size_t te_web_tools_n;
extern const te_tool te_expose_tools[]; /* tools_expose.c: expose_port */
extern const size_t te_expose_tools_n;
extern const te_tool te_vision_tools[]; /* tools_vision.c: see_image */
extern const size_t te_vision_tools_n;

/* tools_web.c: reads TAVILY_API_KEY, TAVILY_API_URL, FIRECRAWL_API_KEY, FIRECRAWL_URL once
 * at start (before the loop runs; read-only afterwards). */
void te_web_config_load(void);

/* Whether t is configured here: false for a web tool without its API key (tools_web.c); a
 * tool not offered is left out of kx.tool.schemas and its calls are refused (not_found). */
bool te_tool_offered(const te_tool *t);

/* Whether an agent with this agentpress_tools config (NULL or {} = every tool) has t, and t is
 * offered. */
bool te_registry_agent_has(const te_tool *t, const json_t *agentpress_tools);

/* tools_vision.c: "image/png", "image/jpeg", "image/gif" or "image/webp" by the first n bytes
 * of a file (16 are enough), or NULL. Pure. */
const char *te_image_mime(const unsigned char *b, size_t n);

/* tools_files.c: a kx.sandbox.files reply, or NULL with the call finished (transport error,
 * undecodable reply, an error reply: its code and message); records the breaker. */
Kx__V1__SandboxFilesReply *te_files_take_reply(te_call *c, kx_err err, natsMsg *reply);

/* tool_mcp.c: every call that carries an McpRoute (not in the catalogue: its schema is the
 * MCP server's) */
extern const te_tool te_mcp_tool;

/* tool_execute_command.c */
void te_execute_command_start(te_call *c);
void te_execute_command_abort(te_call *c, te_outcome *o);
extern const char te_execute_command_schema[];

/* A tool without work of its own to stop: cancels its pending request (c->req_active) and
 * finishes the call with o. */
void te_tool_abort_request(te_call *c, te_outcome *o);

#endif
