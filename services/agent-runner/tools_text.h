/* tools_text.h — the compact JSON text of a run's tool schemas (what the context budget counts
 * and the OpenAI request body carries), put together from a cache of each schema's text.
 *
 * A run's tools are an array of schema objects shared across runs (tool_schemas.h's cache,
 * filtered per agent by agent_config_filter_tools, which keeps the same objects), so each
 * schema is printed once, not once per run: the text of the array is "[" + the schemas' texts
 * joined by "," + "]", byte for byte kx_json_dumps_compact of the array. The cache keys on the
 * schema object and holds a reference to it, so a key cannot be freed and its address reused
 * while cached; schemas are never changed once shared. Bounded (TOOLS_TEXT_CACHE entries;
 * emptied when half full).
 *
 * Loop thread only (a static cache, no lock). */
#ifndef RUNNER_TOOLS_TEXT_H
#define RUNNER_TOOLS_TEXT_H

#include <jansson.h>

#define TOOLS_TEXT_CACHE 512

/* kx_json_dumps_compact(tools) for an array of schemas (malloc'd; NULL on OOM or when tools is
 * not an array). */
char *tools_text_print(const json_t *tools);
/* Empties the cache (drops its references). */
void tools_text_clear(void);

#endif
