/* llm_provider.h — the small interface every LLM wire protocol implements for llm.c: the
 * request (body and headers) for a model and a thread, and the parser that folds the answer's
 * server-sent events (or a whole JSON answer) into an llm_stream.
 *
 *   llm_openai.c     OpenAI-compatible Chat Completions (the demo model, OpenAI, OpenRouter,
 *                    vLLM, Ollama, llama.cpp); parser in llm_stream.c
 *   llm_anthropic.c  the Anthropic Messages API; parser in llm_anthropic_stream.c
 *
 * The messages given to body() are the thread in OpenAI's chat shape (context.h); each
 * provider converts them to its own. All functions are pure and may run on any thread. */
#ifndef RUNNER_LLM_PROVIDER_H
#define RUNNER_LLM_PROVIDER_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "llm_route.h"
#include "llm_stream.h"

typedef struct llm_provider {
    const char *wire_name; /* "openai" or "anthropic", for logs */
    /* The request body (malloc'd JSON text; NULL on OOM). system: the system prompt; tools:
     * the tool schemas in OpenAI's "tools" form (borrowed; an empty array sends none);
     * tools_text: the same printed by kx_json_dumps_compact, or NULL (a provider that sends
     * them as they are splices it instead of printing them again);
     * messages borrowed; max_tokens: the answer's cap, 0 = the provider's default
     * (KX_LLM_MAX_TOKENS for Anthropic, which requires one; none for OpenAI). */
    char *(*body)(const runner_config *cfg, const llm_route *rt, const char *system,
                  const json_t *tools, const char *tools_text, const json_t *messages,
                  int64_t max_tokens);
    /* The request's headers (a new list; NULL on OOM). */
    struct curl_slist *(*headers)(const runner_config *cfg, const llm_route *rt);
    /* Folds one SSE event's data (event: its name, or NULL), or a whole JSON answer of a
     * server that ignored "stream": true. */
    llm_feed_result (*feed)(llm_stream *s, const char *event, const char *data, size_t len,
                            size_t *content_from);
} llm_provider;

extern const llm_provider llm_openai_provider;
extern const llm_provider llm_anthropic_provider;

static inline const llm_provider *llm_provider_of(llm_wire wire)
{
    return wire == LLM_WIRE_ANTHROPIC ? &llm_anthropic_provider : &llm_openai_provider;
}

/* Appends one header line to *list; false on OOM (the list stays valid). Shared helper. */
bool llm_header_add(struct curl_slist **list, const char *line);

/* For the unit tests: the Anthropic request body from OpenAI-shaped messages. */
char *llm_anthropic_body(const char *model, int64_t max_tokens, const char *system,
                         const json_t *tools, const json_t *messages);

#endif
