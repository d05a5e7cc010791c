/* config.h — the agent-runner's settings, read once at start from the environment
 * (docs/operations.md, "agent-runner"). After runner_config_load the struct is read-only.
 *
 * Providers (which LLM a run talks to; llm_route.h turns a model name into one):
 *   openai/<model>     an OpenAI-compatible Chat Completions server at OPENAI_BASE_URL
 *                      (default https://api.openai.com/v1), "Authorization: Bearer
 *                      $OPENAI_API_KEY" (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp);
 *   anthropic/<model>  the Anthropic Messages API at ANTHROPIC_BASE_URL (default
 *                      https://api.anthropic.com), "x-api-key: $ANTHROPIC_API_KEY";
 *   any other name     the default provider: OpenAI-compatible when OPENAI_API_KEY or
 *                      OPENAI_BASE_URL is set, else Anthropic when ANTHROPIC_API_KEY is set,
 *                      else the demo model at KX_MODEL_URL (an OpenAI-compatible server).
 * KX_MODEL_ALIASES ("sonnet=anthropic/claude-sonnet-4-20250514,fast=openai/gpt-4o-mini") maps
 * short names to these; KX_LLM_FALLBACK_MODEL is tried when the primary model stays down. */
#ifndef RUNNER_CONFIG_H
#define RUNNER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/err.h"

typedef enum runner_provider {
    PROVIDER_DEMO = 0,
    PROVIDER_OPENAI,
    PROVIDER_ANTHROPIC,
} runner_provider;

#define RUNNER_MAX_ALIASES 32

typedef struct runner_model_alias {
    char name[64];
    char target[128];
} runner_model_alias;

typedef struct runner_config {
    char database_url[1024];   /* KX_DATABASE_URL */
    runner_provider provider;  /* the default provider, for names without a prefix */
    const char *provider_name; /* "demo", "openai", "anthropic" */
    char demo_url[512];        /* KX_MODEL_URL, without a trailing '/' */
    bool openai_set;           /* OPENAI_API_KEY or OPENAI_BASE_URL is set */
    char openai_base_url[512]; /* OPENAI_BASE_URL, without a trailing '/' */
    char openai_api_key[512];  /* "" when none */
    bool anthropic_set;        /* ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL is set */
    char anthropic_base_url[512];
    char anthropic_api_key[512];
    char anthropic_version[64]; /* ANTHROPIC_VERSION: the anthropic-version header */
    char model[128];            /* KX_MODEL: used when the run does not name a model */
    char fallback_model[128];   /* KX_LLM_FALLBACK_MODEL, "" for none */
    runner_model_alias aliases[RUNNER_MAX_ALIASES]; /* KX_MODEL_ALIASES */
    int naliases;
    int64_t llm_ttfb_ms;      /* KX_LLM_TTFB_MS: request sent -> first byte of the answer */
    int64_t llm_idle_ms;      /* KX_LLM_IDLE_MS: the longest gap between two chunks */
    int64_t llm_retries;      /* KX_LLM_RETRIES: per model */
    int64_t llm_max_tokens;   /* KX_LLM_MAX_TOKENS: Anthropic's required max_tokens */
    int64_t max_iterations;   /* KX_MAX_ITERATIONS */
    int64_t heartbeat_ms;     /* KX_HEARTBEAT_MS */
    int64_t lease_ttl_ms;     /* KX_LEASE_TTL_MS: lease taken at claim */
    int64_t capacity;         /* KX_RUNNER_CAPACITY: most runs held at once */
    int64_t db_conns;         /* KX_RUNNER_DB_CONNS: Postgres connections, a thread each (rdb.h) */
    int64_t tool_timeout_s;   /* KX_TOOL_TIMEOUT_S */
    int64_t drain_timeout_ms; /* KX_DRAIN_TIMEOUT_MS (for the log line; kx_svc enforces it) */
    int64_t wall_time_s;      /* KX_RUN_WALL_TIME_S: counted from the claim (started_at), the
                                  * same rule as the scheduler's reaper */
    /* the loop (agent_config.h, context_budget.h) */
    int64_t max_auto_continues; /* KX_MAX_AUTO_CONTINUES: continuations after finish "length" */
    int64_t max_xml_tool_calls; /* KX_MAX_XML_TOOL_CALLS: invokes run per turn (Kortix: 1) */
    bool sequential_tools;      /* KX_TOOL_STRATEGY=sequential (default parallel) */
    char context_budgets[512];  /* KX_CONTEXT_BUDGETS: "substring=tokens,..." */
    int64_t context_read_bytes; /* KX_CONTEXT_READ_MAX_MB: a turn reads at most about this much
                                 * of its thread's newest LLM messages (store.h) */
    bool project_naming;        /* KX_PROJECT_NAMING (1): name new projects from the model */
    char naming_model[128];     /* KX_NAMING_MODEL: "" = the run's model */

    /* run events (chunks.h, publisher.h) */
    int64_t event_coalesce_ms;    /* KX_EVENT_COALESCE_MS: text deltas gathered this long */
    int64_t event_coalesce_bytes; /* KX_EVENT_COALESCE_BYTES: ... or until this many bytes */
    int64_t events_max_pending;   /* KX_EVENTS_MAX_PENDING: event publishes awaiting acks */
    int64_t events_ack_wait_ms;   /* KX_EVENTS_ACK_WAIT_MS: an event publish's ack deadline */
    int64_t events_buffered;      /* KX_EVENTS_BUFFERED (0): 1 = events on a connection of their
                                   * own without SendAsap (publisher.h); 0: on the runner's */
} runner_config;

/* Fills cfg from the environment. KX_ERR_INVALID (already logged, naming the variable) when a
 * value is bad or too long. */
kx_err runner_config_load(runner_config *cfg);

/* Descriptors a runner of this capacity needs: one LLM connection per held run plus
 * RUNNER_FD_BASE for everything else (NATS, Postgres, the ops HTTP server, libcurl's own). */
#define RUNNER_FD_BASE 256
/* Raises RLIMIT_NOFILE to capacity + RUNNER_FD_BASE. KX_ERR_INVALID (logged: the capacity, the
 * limit that stops it and how to fix it) when the limits cannot serve the capacity: the runner
 * refuses to start rather than fail runs one by one with EMFILE once it holds ~1 000. */
kx_err runner_config_check_fds(const runner_config *cfg);

/* Parses KX_MODEL_ALIASES-style text ("name=target,name2=target2"; spaces around items are
 * ignored; an empty text is no alias) into cfg->aliases. KX_ERR_INVALID with why[] naming the
 * bad item. Exposed for the unit tests. */
kx_err runner_config_parse_aliases(runner_config *cfg, const char *text, char *why, size_t whylen);

#endif
