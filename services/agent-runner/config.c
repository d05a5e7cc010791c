/* config.c — reads the agent-runner's environment variables into a runner_config (see
 * config.h for the provider rules and docs/operations.md for the table of variables). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "kx/config.h"
#include "kx/log.h"

#define DEFAULT_OPENAI_URL "https://api.openai.com/v1"
#define DEFAULT_DEMO_URL "http://127.0.0.1:8089/v1"
#define DEFAULT_DEMO_MODEL "kortix/demo"
#define DEFAULT_OPENAI_MODEL "gpt-4o-mini"

/* Copies the variable (or def) into dst; refuses values that do not fit. */
static kx_err copy_env(const char *name, const char *def, char *dst, size_t cap)
{
    const char *v = kx_env_str(name, def);
    if (strlen(v) >= cap) {
        kx_error("config: %s is too long (%zu bytes, at most %zu)", name, strlen(v), cap - 1);
        return KX_ERR_INVALID;
    }
    snprintf(dst, cap, "%s", v);
    return KX_OK;
}

static kx_err load_provider(runner_config *cfg)
{
    const char *openai_key = kx_env_str("OPENAI_API_KEY", NULL);
    const char *openai_url = kx_env_str("OPENAI_BASE_URL", NULL);
    const char *anthropic_key = kx_env_str("ANTHROPIC_API_KEY", NULL);
    kx_err err = KX_OK;
    if (openai_key != NULL || openai_url != NULL) {
        cfg->provider = PROVIDER_OPENAI;
        cfg->provider_name = "openai";
        err = copy_env("OPENAI_BASE_URL", DEFAULT_OPENAI_URL, cfg->llm_base_url,
                       sizeof cfg->llm_base_url);
        if (err == KX_OK)
            err = copy_env("OPENAI_API_KEY", "", cfg->api_key, sizeof cfg->api_key);
        if (err == KX_OK)
            err = copy_env("KX_MODEL", DEFAULT_OPENAI_MODEL, cfg->model, sizeof cfg->model);
    } else if (anthropic_key != NULL) {
        cfg->provider = PROVIDER_ANTHROPIC;
        cfg->provider_name = "anthropic";
        cfg->llm_base_url[0] = '\0';
        err = copy_env("KX_MODEL", "", cfg->model, sizeof cfg->model);
    } else {
        cfg->provider = PROVIDER_DEMO;
        cfg->provider_name = "demo";
        err = copy_env("KX_MODEL_URL", DEFAULT_DEMO_URL, cfg->llm_base_url,
                       sizeof cfg->llm_base_url);
        if (err == KX_OK)
            err = copy_env("KX_MODEL", DEFAULT_DEMO_MODEL, cfg->model, sizeof cfg->model);
    }
    if (err != KX_OK)
        return err;
    size_t n = strlen(cfg->llm_base_url);
    while (n > 0 && cfg->llm_base_url[n - 1] == '/')
        cfg->llm_base_url[--n] = '\0';
    if (cfg->provider != PROVIDER_ANTHROPIC && strncmp(cfg->llm_base_url, "http://", 7) != 0 &&
        strncmp(cfg->llm_base_url, "https://", 8) != 0) {
        kx_error("config: the LLM base URL \"%s\" (%s) must start with http:// or https://",
                 cfg->llm_base_url,
                 cfg->provider == PROVIDER_OPENAI ? "OPENAI_BASE_URL" : "KX_MODEL_URL");
        return KX_ERR_INVALID;
    }
    return KX_OK;
}

kx_err runner_config_load(runner_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    kx_err err = copy_env("KX_DATABASE_URL", KX_DEFAULT_DATABASE_URL, cfg->database_url,
                          sizeof cfg->database_url);
    if (err != KX_OK)
        return err;
    if ((err = load_provider(cfg)) != KX_OK)
        return err;
    struct {
        const char *name;
        int64_t def, min, max;
        int64_t *out;
    } ints[] = {
        {"KX_LLM_TIMEOUT_S", 120, 1, 3600, &cfg->llm_timeout_s},
        {"KX_LLM_RETRIES", 2, 0, 10, &cfg->llm_retries},
        {"KX_MAX_ITERATIONS", 100, 1, 10000, &cfg->max_iterations},
        {"KX_HEARTBEAT_MS", 1000, 50, 60000, &cfg->heartbeat_ms},
        {"KX_LEASE_TTL_MS", 10000, 100, 3600000, &cfg->lease_ttl_ms},
        {"KX_RUNNER_CAPACITY", 1000, 1, 100000, &cfg->capacity},
        {"KX_TOOL_TIMEOUT_S", 120, 1, 86400, &cfg->tool_timeout_s},
        {"KX_DRAIN_TIMEOUT_MS", 10000, 0, 3600000, &cfg->drain_timeout_ms},
        {"KX_RUN_WALL_TIME_S", 3600, 1, 7 * 86400, &cfg->wall_time_s},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (kx_env_int(ints[i].name, ints[i].def, ints[i].min, ints[i].max, ints[i].out) != KX_OK)
            return KX_ERR_INVALID;
    }
    return KX_OK;
}
