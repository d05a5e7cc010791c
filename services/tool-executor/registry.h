/* registry.h — the table of tools the executor knows.
 *
 * A tool is a name, a kind (where it runs, which sets its time limit), a start function and
 * an abort function. start() validates the call's arguments and either finishes the call at
 * once (te_call_finish) or starts asynchronous work that finishes it later — exactly once,
 * and never after the call's deadline. abort() (shutdown, or a STOP of the call's run) stops
 * that work — killing what it started — and finishes the call at once with the given outcome. Today: execute_command (sandbox). MCP tools come with the
 * mcp-proxy issue (kx.mcp.call). */
#ifndef TE_REGISTRY_H
#define TE_REGISTRY_H

#include "executor.h"

typedef enum te_tool_kind {
    TE_TOOL_SANDBOX, /* runs in the project's sandbox: KX_SANDBOX_TOOL_TIMEOUT_S */
    TE_TOOL_MCP,     /* an MCP server through the mcp-proxy: KX_TOOL_TIMEOUT_S */
} te_tool_kind;

struct te_tool {
    const char *name; /* as the model calls it, e.g. "execute_command" */
    te_tool_kind kind;
    void (*start)(te_call *c);
    void (*abort)(te_call *c, te_outcome *o);
};

/* The tool with that name, or NULL. */
const te_tool *te_registry_find(const char *name);

/* tool_execute_command.c */
void te_execute_command_start(te_call *c);
void te_execute_command_abort(te_call *c, te_outcome *o);

#endif
