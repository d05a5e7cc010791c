/* config.h — the agent-runner's settings, read once at start from the environment
 * (docs/operations.md, "agent-runner"). After runner_config_load the struct is read-only.
 *
 * Provider choice (which LLM the runs talk to):
 *   OPENAI_API_KEY or OPENAI_BASE_URL set -> an OpenAI-compatible server at OPENAI_BASE_URL
 *                                            (default https://api.openai.com/v1), Bearer key;
 *   else ANTHROPIC_API_KEY set           -> not built yet: every run fails with a clear error;
 *   else                                 -> the demo model at KX_MODEL_URL. */
#ifndef RUNNER_CONFIG_H
#define RUNNER_CONFIG_H

#include <stdint.h>
#include "kx/err.h"

typedef enum runner_provider {
    PROVIDER_DEMO = 0,
    PROVIDER_OPENAI,
    PROVIDER_ANTHROPIC, /* placeholder: runs fail with RUNNER_ANTHROPIC_ERROR */
} runner_provider;

#define RUNNER_ANTHROPIC_ERROR                                                                \
    "the Anthropic provider is not built yet; set OPENAI_API_KEY or unset ANTHROPIC_API_KEY " \
    "to use the demo model"

typedef struct runner_config {
    char database_url[1024]; /* KX_DATABASE_URL */
    runner_provider provider;
    const char *provider_name; /* "demo", "openai", "anthropic" */
    char llm_base_url[512];    /* without a trailing '/' */
    char api_key[512];         /* "" when none */
    char model[128];           /* KX_MODEL: used when the run does not name a model */
    int64_t llm_timeout_s;     /* KX_LLM_TIMEOUT_S: one LLM attempt */
    int64_t llm_retries;       /* KX_LLM_RETRIES */
    int64_t max_iterations;    /* KX_MAX_ITERATIONS */
    int64_t heartbeat_ms;      /* KX_HEARTBEAT_MS */
    int64_t lease_ttl_ms;      /* KX_LEASE_TTL_MS: lease taken at claim */
    int64_t capacity;          /* KX_RUNNER_CAPACITY: most runs held at once */
    int64_t tool_timeout_s;    /* KX_TOOL_TIMEOUT_S */
    int64_t drain_timeout_ms;  /* KX_DRAIN_TIMEOUT_MS (for the log line; kx_svc enforces it) */
    int64_t wall_time_s;       /* KX_RUN_WALL_TIME_S: counted from the claim (started_at), the
                                  * same rule as the scheduler's reaper */
} runner_config;

/* Fills cfg from the environment. KX_ERR_INVALID (already logged, naming the variable) when a
 * value is bad or too long. */
kx_err runner_config_load(runner_config *cfg);

#endif
