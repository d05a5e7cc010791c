/* tool_schemas.h — the tool schemas the model is offered, from the tool-executor
 * (kx.tool.schemas), so that a tool is described in one place: the executor's catalogue.
 *
 * A small cache per process, keyed by the agent's agentpress_tools config (JSON text; "" = the
 * default agent: every tool), at most TOOL_SCHEMAS_MAX_KEYS entries. tool_schemas_get never
 * waits: it answers from the cache, and when the entry is missing or older than
 * TOOL_SCHEMAS_TTL_MS it sends one asynchronous request (kx_bus_async, 5 s deadline) whose
 * reply fills the cache for the next calls. Until the first reply — or when the executor is
 * not there — the caller's fallback (the built-in execute_command schema) is used.
 * Loop thread only. Ownership: returned arrays are borrowed (valid until the next call on the
 * loop); the cache owns its entries and tool_schemas_free releases them. */
#ifndef RUNNER_TOOL_SCHEMAS_H
#define RUNNER_TOOL_SCHEMAS_H

#include <jansson.h>

#include "kx/bus.h"

#define TOOL_SCHEMAS_TTL_MS (5 * 60 * 1000)
#define TOOL_SCHEMAS_MAX_KEYS 64

/* Where requests go (the runner's loop-bound async bus). Call once at start. */
void tool_schemas_init(kx_bus_async *ab);
/* The schemas for that config (NULL = ""), or fallback while none are cached. */
json_t *tool_schemas_get(const char *agentpress_tools_json, json_t *fallback);
/* Frees the cache (after kx_bus_async_free: no reply can come any more). */
void tool_schemas_free(void);

#endif
