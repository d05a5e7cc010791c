/* llm_route.h — which provider, endpoint, key and model id a model name means (the rules are
 * in config.h: aliases first, then the "openai/" and "anthropic/" prefixes, then the default
 * provider). Pure: reads the configuration only. */
#ifndef RUNNER_LLM_ROUTE_H
#define RUNNER_LLM_ROUTE_H

#include <stddef.h>

#include "config.h"
#include "kx/err.h"

typedef enum llm_wire {
    LLM_WIRE_OPENAI = 0, /* Chat Completions, streamed as chat.completion.chunk events */
    LLM_WIRE_ANTHROPIC,  /* Messages, streamed as message_start ... message_stop events */
} llm_wire;

typedef struct llm_route {
    llm_wire wire;
    const char *provider; /* static: "demo", "openai", "anthropic" (for messages) */
    char url[640];        /* the endpoint the request is POSTed to */
    const char *api_key;  /* borrowed from the configuration; "" when none */
    char model[128];      /* the model id sent to the provider */
    char name[160];       /* the name asked for, after aliases, for messages */
} llm_route;

/* Resolves name (NULL or "" = cfg->model). KX_ERR_INVALID with why[] when the name needs a
 * provider that is not configured (e.g. "anthropic/..." with no ANTHROPIC_API_KEY), is empty
 * after its prefix, or is too long. */
kx_err llm_route_resolve(const runner_config *cfg, const char *name, llm_route *out, char *why,
                         size_t whylen);

#endif
