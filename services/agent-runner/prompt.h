/* prompt.h — what the runner tells the model besides the thread: the default system prompt
 * (which names the execute_command tool and explains Kortix's XML calling format, kortix-
 * behaviour.md §9) and the JSON schema of execute_command in OpenAI's "tools" form. */
#ifndef RUNNER_PROMPT_H
#define RUNNER_PROMPT_H

#include <jansson.h>

/* Static text. */
const char *prompt_system(void);

/* The array with the one tool schema, [{"type": "function", "function": {...}}]: a new
 * reference to one array built on the first call (each run asked for it, and json_pack built it
 * anew every time); the caller must not modify it (json_deep_copy for that). NULL on OOM. */
json_t *prompt_tools(void);

/* An agent's own (rendered) prompt followed by the tool section Kortix appends: the XML calling
 * format with its rules and, per tool, its name and description. malloc'd; NULL on OOM. */
char *prompt_with_tools(const char *agent_prompt, const json_t *tools);

#endif
