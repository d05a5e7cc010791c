/* llm_route.c — model name -> provider endpoint (see llm_route.h and config.h). */
#include "llm_route.h"

#include <stdio.h>
#include <string.h>

#define MAX_ALIAS_HOPS 4

static const char *alias_of(const runner_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->naliases; i++)
        if (strcmp(cfg->aliases[i].name, name) == 0)
            return cfg->aliases[i].target;
    return NULL;
}

static kx_err set_route(llm_route *out, llm_wire wire, const char *provider, const char *base,
                        const char *path, const char *key, const char *model, char *why,
                        size_t whylen)
{
    out->wire = wire;
    out->provider = provider;
    out->api_key = key;
    if (model[0] == '\0') {
        snprintf(why, whylen, "the model name \"%s\" names no model after the provider prefix",
                 out->name);
        return KX_ERR_INVALID;
    }
    if (strlen(model) >= sizeof out->model) {
        snprintf(why, whylen, "the model name \"%.60s...\" is too long (at most %zu bytes)", model,
                 sizeof out->model - 1);
        return KX_ERR_INVALID;
    }
    snprintf(out->model, sizeof out->model, "%s", model);
    snprintf(out->url, sizeof out->url, "%s%s", base, path);
    return KX_OK;
}

kx_err llm_route_resolve(const runner_config *cfg, const char *name, llm_route *out, char *why,
                         size_t whylen)
{
    memset(out, 0, sizeof *out);
    why[0] = '\0';
    const char *n = name != NULL && name[0] != '\0' ? name : cfg->model;
    for (int hop = 0; hop < MAX_ALIAS_HOPS; hop++) {
        const char *t = alias_of(cfg, n);
        if (t == NULL)
            break;
        n = t;
    }
    if (strlen(n) >= sizeof out->name) {
        snprintf(why, whylen, "the model name \"%.60s...\" is too long (at most %zu bytes)", n,
                 sizeof out->name - 1);
        return KX_ERR_INVALID;
    }
    snprintf(out->name, sizeof out->name, "%s", n);
    if (strncmp(n, "anthropic/", 10) == 0) {
        if (!cfg->anthropic_set) {
            snprintf(why, whylen,
                     "the model \"%s\" needs the Anthropic provider, which is not configured "
                     "(set ANTHROPIC_API_KEY)",
                     n);
            return KX_ERR_INVALID;
        }
        return set_route(out, LLM_WIRE_ANTHROPIC, "anthropic", cfg->anthropic_base_url,
                         "/v1/messages", cfg->anthropic_api_key, n + 10, why, whylen);
    }
    if (strncmp(n, "openai/", 7) == 0) {
        if (!cfg->openai_set) {
            snprintf(why, whylen,
                     "the model \"%s\" needs an OpenAI-compatible provider, which is not "
                     "configured (set OPENAI_API_KEY and/or OPENAI_BASE_URL)",
                     n);
            return KX_ERR_INVALID;
        }
        return set_route(out, LLM_WIRE_OPENAI, "openai", cfg->openai_base_url, "/chat/completions",
                         cfg->openai_api_key, n + 7, why, whylen);
    }
    switch (cfg->provider) {
    case PROVIDER_OPENAI:
        return set_route(out, LLM_WIRE_OPENAI, "openai", cfg->openai_base_url, "/chat/completions",
                         cfg->openai_api_key, n, why, whylen);
    case PROVIDER_ANTHROPIC:
        return set_route(out, LLM_WIRE_ANTHROPIC, "anthropic", cfg->anthropic_base_url,
                         "/v1/messages", cfg->anthropic_api_key, n, why, whylen);
    case PROVIDER_DEMO: break;
    }
    return set_route(out, LLM_WIRE_OPENAI, "demo", cfg->demo_url, "/chat/completions", "", n, why,
                     whylen);
}
